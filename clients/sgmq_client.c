/*  =========================================================================
    sgmq_client - libsgmq

    One DEALER socket with CURVE, one current incoming frame read command
    by command, and two queues: deliveries (deep-copied, because they may
    arrive while we wait for some other answer and must outlive the frame)
    and answers to pipelined publishes. Synchronous calls send one request
    and read commands until the answer with their id comes, queueing what
    else arrives on the way.

    The handshake is watched through a socket monitor so that a refused
    key is reported as "not authorised" at once, and a broker that is not
    there as "unreachable" after the timeout, instead of a silent hang.
    =========================================================================
*/
#include "sgmq_client.h"
#include "sgmq_cert.h"

#include <czmq.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>

//  Publishes retried after a lost confirm before giving up.
#define S_PUBLISH_TRIES     3
//  A connection silent for this many heartbeats is presumed dead.
#define S_DEAD_HEARTBEATS   3
//  Random bytes in made-up client references (see s_make_ref).
#define S_REF_RANDOM_BYTES  8
//  libzmq reconnect backoff while the broker is away.
#define S_RECONNECT_IVL     100
#define S_RECONNECT_MAX     2000
//  How long BYE may take to leave when the client closes.
#define S_LINGER_MS         500
//  How much a frame's array header can grow with one more command.
#define S_HEAD_GROWTH       3
//  Pipelined publishes per frame: enough to amortise CURVE and a broker
//  turn, few enough that a window of them is several frames in flight.
#define S_BATCH_SEND        128
//  Encoded pipelined requests unanswered at most: past it, queueing one
//  waits for answers first. The broker reads everything a connection
//  sends and drops frames past what it holds for one connection (4 MiB
//  waiting; PROTOCOL.md 3.5), so a client that pipelines more would have
//  frames dropped, where TCP once made it wait.
#define S_IN_FLIGHT_BYTES   (2 * 1024 * 1024)
//  Verify reports progress this often.
#define S_PROGRESS_EVERY    4096
//  After a 429, the first pause (ms) before asking again; it doubles.
#define S_BUSY_PAUSE        10
//  After dropped frames the pause before reconnecting doubles up to this.
#define S_DROP_PAUSE_MAX    1000

typedef struct {
    uint64_t seq, time;
    sgmq_kind_t kind;
    uint32_t attempt;
    char *from, *agency;
    uint32_t group_count;
    const char **groups;
    uint8_t *body;
    size_t body_size;
} s_delivery_t;

//  A pipelined publish or ack not yet answered, with its encoded command,
//  sent again (same id, same ref) on a new connection.
typedef struct {
    uint64_t id;
    bool ack;                   //  an ACK; else a PUBLISH
    uint64_t seq;               //  what an ACK acknowledges
    char ref [SGMQ_PROTO_MAX_NAME + 1];
    size_t cmd_size;
    uint8_t cmd [];
} s_async_t;

typedef struct {
    sgmq_confirm_t confirm;
    sgmq_error_t error;
} s_answer_t;

struct _sgmq_client_t {
    char *broker, *client_name;
    int timeout;
    sgmq_cert_t *cert;
    uint8_t server_key [SGMQ_CERT_KEY_SIZE];
    zsock_t *dealer;
    zsock_t *monitor;
    sgmq_proto_writer_t *writer;
    sgmq_proto_writer_t *batch; //  pipelined publishes not yet sent
    sgmq_proto_frame_t *frame;  //  current incoming frame
    size_t frame_next, frame_count;
    sgmq_proto_frame_t *body_frame;
    uint64_t next_id;
    //  Identity
    char name [SGMQ_PROTO_MAX_NAME + 1];
    char agency [SGMQ_PROTO_MAX_NAME + 1];
    char version [SGMQ_PROTO_MAX_NAME + 1];
    char role_text [SGMQ_PROTO_MAX_ROLES][SGMQ_PROTO_MAX_NAME + 1];
    const char *role_items [SGMQ_PROTO_MAX_ROLES];
    char group_text [SGMQ_PROTO_MAX_GROUPS][SGMQ_PROTO_MAX_NAME + 1];
    const char *group_items [SGMQ_PROTO_MAX_GROUPS];
    sgmq_strlist_t roles, groups;
    uint32_t heartbeat;
    uint32_t max_frame;         //  the broker's, from WELCOME
    int64_t last_in, last_out;
    //  Subscription
    bool subscribed;
    uint32_t window;
    zlistx_t *deliveries;       //  s_delivery_t *, owned
    s_delivery_t *current;
    sgmq_delivery_t delivery;
    //  Pipelined publishes and acks
    zlistx_t *in_flight;        //  s_async_t *, in the order sent
    size_t acks_in_flight;      //  of which acks
    size_t bytes_in_flight;     //  their encoded size
    int drop_pause;             //  ms before reconnecting after dropped frames
    int64_t reconnect_after;    //  zclock_mono; 0: at once
    zlistx_t *answers;          //  s_answer_t *, for publishes
    sgmq_error_t ack_error;     //  first refusal of a pipelined ack
    bool session_lost;          //  the broker answered "no session"
    //  Replay
    bool replaying;
};

struct _sgmq_replay_t {
    sgmq_client_t *client;
    uint64_t id;
    bool ended;
    sgmq_replay_item_t item;
    sgmq_replay_end_t end;
};

//  --------------------------------------------------------------------------
//  Errors

static int
__attribute__ ((format (printf, 4, 5)))
s_fail (sgmq_error_t *error, int code, const char *field, const char *format, ...)
{
    if (!error)
        return -1;
    error->code = code;
    snprintf (error->field, sizeof error->field, "%s", field ? field : "");
    va_list args;
    va_start (args, format);
    vsnprintf (error->reason, sizeof error->reason, format, args);
    va_end (args);
    return -1;
}

static void
s_clear (sgmq_error_t *error)
{
    if (error) {
        error->code = 0;
        error->reason [0] = error->field [0] = 0;
    }
}

bool
sgmq_error_refused (const sgmq_error_t *error)
{
    return error->code >= 400 && error->code < 600;
}

//  A reconnect that failed this way will fail again: the key is not
//  admitted, the cert is unusable, or the key may no longer subscribe
//  (its roles or groups changed; the broker ended its session for that).
static bool
s_final (const sgmq_error_t *error)
{
    return error->code == SGMQ_E_NOT_AUTHORISED || error->code == SGMQ_E_FORBIDDEN
        || error->code == SGMQ_CLIENT_E_CERT;
}

//  An ERROR command as an sgmq_error_t.
static int
s_fail_cmd (sgmq_error_t *error, const sgmq_cmd_t *cmd)
{
    return s_fail (error, (int) cmd->u.error.code, cmd->u.error.field, "%s",
                   cmd->u.error.reason);
}

//  --------------------------------------------------------------------------
//  Connection

static void
s_disconnect (sgmq_client_t *self)
{
    //  Stop the monitor before closing its reader. libzmq sends monitor
    //  events from its I/O thread with a blocking send: an event with no
    //  reader left (say, the handshake of a reconnect still under way)
    //  would block that thread, and with it every connection of the
    //  process, for good.
    if (self->dealer)
        zmq_socket_monitor (zsock_resolve (self->dealer), NULL, 0);
    zsock_destroy (&self->monitor);
    zsock_destroy (&self->dealer);
    self->frame_next = self->frame_count = 0;
}

//  Read one event from the socket monitor. 0, or -1 if none could be read.
static int
s_monitor_event (sgmq_client_t *self, uint16_t *event, uint32_t *value)
{
    void *monitor = zsock_resolve (self->monitor);
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    if (zmq_msg_recv (&msg, monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&msg);
        return -1;
    }
    *event = 0;
    *value = 0;
    if (zmq_msg_size (&msg) >= 6) {
        memcpy (event, zmq_msg_data (&msg), sizeof *event);
        memcpy (value, (uint8_t *) zmq_msg_data (&msg) + 2, sizeof *value);
    }
    bool more = zmq_msg_more (&msg);
    zmq_msg_close (&msg);
    while (more) {              //  the endpoint part
        zmq_msg_init (&msg);
        more = zmq_msg_recv (&msg, monitor, 0) >= 0 && zmq_msg_more (&msg);
        zmq_msg_close (&msg);
    }
    return 0;
}

//  Wait for the handshake's outcome on the monitor. 0 on success.
static int
s_await_handshake (sgmq_client_t *self, sgmq_error_t *error)
{
    int64_t deadline = zclock_mono () + self->timeout;
    void *monitor = zsock_resolve (self->monitor);
    while (true) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            return s_fail (error, SGMQ_CLIENT_E_UNREACHABLE, NULL,
                           "no CURVE handshake with %s within %d ms: is the broker "
                           "running there, and is the server cert its own?",
                           self->broker, self->timeout);
        zmq_pollitem_t item = { monitor, 0, ZMQ_POLLIN, 0 };
        uint16_t event;
        uint32_t value;
        if (zmq_poll (&item, 1, (long) left) <= 0 || s_monitor_event (self, &event, &value))
            continue;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            return 0;
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            return s_fail (error, SGMQ_E_NOT_AUTHORISED, NULL, "not authorised: "
                           "the broker at %s does not admit this key (ZAP status "
                           "%u): ask its operator to admit your public cert",
                           self->broker, value);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
            return s_fail (error, SGMQ_CLIENT_E_UNREACHABLE, NULL, "the CURVE "
                           "handshake with %s failed (protocol error %u)",
                           self->broker, value);
    }
}

static int s_hello (sgmq_client_t *self, sgmq_error_t *error);
static int s_subscribe (sgmq_client_t *self, uint64_t *backlog, sgmq_error_t *error);

static int s_resend (sgmq_client_t *self, sgmq_error_t *error);

//  Connect, handshake, HELLO, send what is unanswered, SUBSCRIBE again.
//  On any failure, no half-made connection is left: the next call starts
//  over (and sends everything unanswered then).
static int s_connect_once (sgmq_client_t *self, sgmq_error_t *error);

static int
s_connect (sgmq_client_t *self, sgmq_error_t *error)
{
    //  After dropped frames, a pause (doubling) before everything goes
    //  again: the broker is overloaded, maybe by someone else.
    int64_t wait = self->reconnect_after - zclock_mono ();
    if (wait > 0)
        zclock_sleep ((int) wait);
    if (s_connect_once (self, error) == 0)
        return 0;
    s_disconnect (self);
    return -1;
}

static int
s_connect_once (sgmq_client_t *self, sgmq_error_t *error)
{
    s_disconnect (self);
    //  What was queued goes after the HELLO, with everything unanswered.
    sgmq_proto_writer_reset (self->batch);
    self->dealer = zsock_new (ZMQ_DEALER);
    self->monitor = zsock_new (ZMQ_PAIR);
    if (!self->dealer || !self->monitor)
        return s_fail (error, SGMQ_CLIENT_E_INTERNAL, NULL, "cannot create sockets");
    void *handle = zsock_resolve (self->dealer);
    if (sgmq_cert_apply_client (self->cert, handle, self->server_key))
        return s_fail (error, SGMQ_CLIENT_E_CERT, NULL, "cannot apply the CURVE keys");
    zsock_set_linger (self->dealer, S_LINGER_MS);
    //  ZMTP heartbeats: a link that died silently (no FIN) is dropped by
    //  libzmq, and the monitor's DISCONNECTED wakes a caller waiting for
    //  answers, which then reconnects and sends them again.
    zsock_set_heartbeat_ivl (self->dealer, self->timeout);
    zsock_set_heartbeat_timeout (self->dealer, S_DEAD_HEARTBEATS * self->timeout);
    zsock_set_sndtimeo (self->dealer, self->timeout);
    zsock_set_reconnect_ivl (self->dealer, S_RECONNECT_IVL);
    zsock_set_reconnect_ivl_max (self->dealer, S_RECONNECT_MAX);
    //  Queue nothing for a connection that is not up: a request sent into
    //  the void would be answered by nobody.
    zsock_set_immediate (self->dealer, 1);
    //  Unique in the process: a closed socket's monitor endpoint may stay
    //  bound for a moment after the socket is gone.
    static unsigned connections;
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "inproc://sgmq-client-monitor-%u",
              __atomic_add_fetch (&connections, 1, __ATOMIC_RELAXED));
    if (zmq_socket_monitor (handle, endpoint, ZMQ_EVENT_HANDSHAKE_SUCCEEDED
                            | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                            | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                            | ZMQ_EVENT_DISCONNECTED) != 0
    ||  zsock_connect (self->monitor, "%s", endpoint) != 0)
        return s_fail (error, SGMQ_CLIENT_E_INTERNAL, NULL, "cannot monitor the socket");
    if (zsock_connect (self->dealer, "%s", self->broker) != 0)
        return s_fail (error, SGMQ_CLIENT_E_USAGE, NULL, "bad broker endpoint '%s'",
                       self->broker);
    if (s_await_handshake (self, error))
        return -1;
    //  Unanswered acks before SUBSCRIBE: the broker then applies them
    //  first and does not deliver those messages again.
    if (s_hello (self, error) || s_resend (self, error))
        return -1;
    return self->subscribed ? s_subscribe (self, NULL, error) : 0;
}

//  Send the writer's frame now. 0 or -1.
static int
s_send_writer (sgmq_client_t *self, sgmq_proto_writer_t *writer, sgmq_error_t *error)
{
    if (sgmq_proto_writer_count (writer) == 0)
        return 0;
    if (!self->dealer)
        return s_fail (error, SGMQ_CLIENT_E_UNREACHABLE, NULL, "not connected to %s",
                       self->broker);
    zframe_t *frame = zframe_new (sgmq_proto_writer_data (writer),
                                  sgmq_proto_writer_size (writer));
    sgmq_proto_writer_reset (writer);
    //  Blocks up to the client's timeout (ZMQ_SNDTIMEO) while the queue to
    //  the broker is full or, with ZMQ_IMMEDIATE, while it is not connected.
    if (!frame || zframe_send (&frame, self->dealer, 0) != 0) {
        int why = zmq_errno ();
        zframe_destroy (&frame);
        //  What was in the frame is lost with it: drop the connection too,
        //  so that the next call connects again and sends every request
        //  still unanswered (pipelined ones included) on the new session.
        s_disconnect (self);
        return s_fail (error, SGMQ_CLIENT_E_UNREACHABLE, NULL,
                       "cannot send to %s: %s", self->broker,
                       why == EAGAIN ? "not connected" : zmq_strerror (why));
    }
    self->last_out = zclock_mono ();
    return 0;
}

//  Send every unanswered pipelined request again, in order, on a new
//  session: the broker stores a ref once, so a publish stored before the
//  connection went is confirmed again with its original seq; acking twice
//  is harmless.
static int
s_resend (sgmq_client_t *self, sgmq_error_t *error)
{
    self->session_lost = false;
    sgmq_proto_writer_reset (self->batch);
    for (s_async_t *a = zlistx_first (self->in_flight); a; a = zlistx_next (self->in_flight)) {
        //  (+ S_HEAD_GROWTH: the frame's array header may grow by a byte
        //  or two with one more command.)
        if ((sgmq_proto_writer_count (self->batch) >= S_BATCH_SEND
             || sgmq_proto_writer_size (self->batch) + a->cmd_size + S_HEAD_GROWTH
                > self->max_frame)
        &&  s_send_writer (self, self->batch, error))
            return -1;
        if (sgmq_proto_write_encoded (self->batch, a->cmd, a->cmd_size))
            return s_fail (error, SGMQ_CLIENT_E_INTERNAL, NULL,
                           "cannot queue request %llu again",
                           (unsigned long long) a->id);
    }
    return s_send_writer (self, self->batch, error);
}

//  Encode one request and send it at once (after any queued publishes).
static int
s_send (sgmq_client_t *self, sgmq_cmd_t *cmd, sgmq_error_t *error)
{
    if (s_send_writer (self, self->batch, error))
        return -1;
    sgmq_proto_error_t perror;
    sgmq_proto_writer_reset (self->writer);
    if (sgmq_proto_write (self->writer, cmd, &perror))
        return s_fail (error, perror.code, perror.field, "%s", perror.reason);
    return s_send_writer (self, self->writer, error);
}

static uint64_t
s_new_id (sgmq_client_t *self)
{
    return ++self->next_id;
}

//  --------------------------------------------------------------------------
//  Reading

static void
s_delivery_free (s_delivery_t **delivery_p)
{
    free (*delivery_p);
    *delivery_p = NULL;
}

//  A deep copy of a DELIVER in one allocation.
static s_delivery_t *
s_delivery_copy (const sgmq_cmd_t *cmd)
{
    size_t from = strlen (cmd->u.deliver.from) + 1;
    size_t agency = strlen (cmd->u.deliver.agency) + 1;
    size_t size = sizeof (s_delivery_t) + from + agency + cmd->u.deliver.body_size
                + cmd->u.deliver.groups.count * sizeof (char *);
    for (uint32_t i = 0; i < cmd->u.deliver.groups.count; i++)
        size += strlen (cmd->u.deliver.groups.items [i]) + 1;
    s_delivery_t *d = malloc (size);
    if (!d)
        return NULL;
    //  Pointers first (aligned), then bytes.
    uint8_t *cursor = (uint8_t *) (d + 1);
    d->groups = (const char **) cursor;
    cursor += cmd->u.deliver.groups.count * sizeof (char *);
    d->seq = cmd->u.deliver.seq;
    d->time = cmd->u.deliver.time;
    d->kind = cmd->u.deliver.body.kind;
    d->attempt = cmd->u.deliver.attempt;
    d->from = memcpy (cursor, cmd->u.deliver.from, from);
    cursor += from;
    d->agency = memcpy (cursor, cmd->u.deliver.agency, agency);
    cursor += agency;
    d->group_count = cmd->u.deliver.groups.count;
    for (uint32_t i = 0; i < d->group_count; i++) {
        size_t len = strlen (cmd->u.deliver.groups.items [i]) + 1;
        d->groups [i] = memcpy (cursor, cmd->u.deliver.groups.items [i], len);
        cursor += len;
    }
    d->body = cursor;
    d->body_size = cmd->u.deliver.body_size;
    memcpy (d->body, cmd->u.deliver.body_bytes, d->body_size);
    return d;
}

//  The pipelined request with this id, taken out of in_flight if `take`;
//  NULL if none. Answers come in order: the first is nearly always it.
static s_async_t *
s_async_find (sgmq_client_t *self, uint64_t id, bool take)
{
    for (s_async_t *a = zlistx_first (self->in_flight); a; a = zlistx_next (self->in_flight))
        if (a->id == id) {
            if (take) {
                zlistx_detach_cur (self->in_flight);
                self->bytes_in_flight -= a->cmd_size;
                if (a->ack)
                    self->acks_in_flight--;
            }
            return a;
        }
    return NULL;
}

//  Something arrived that nobody is waiting for right now: keep what
//  matters (deliveries, pipelined answers), drop the rest (answers to
//  requests that timed out).
static void
s_stash (sgmq_client_t *self, const sgmq_cmd_t *cmd)
{
    if (cmd->cmd == SGMQ_CMD_DELIVER) {
        s_delivery_t *d = s_delivery_copy (cmd);
        if (d)
            zlistx_add_end (self->deliveries, d);
        return;
    }
    if (cmd->cmd != SGMQ_CMD_CONFIRM && cmd->cmd != SGMQ_CMD_ACKED
    &&  cmd->cmd != SGMQ_CMD_ERROR)
        return;
    //  Frames dropped unread (ERROR 429 with id 0): what they held will
    //  not be answered; everything unanswered goes again on a new
    //  connection (the broker stores a ref once).
    if (cmd->cmd == SGMQ_CMD_ERROR && cmd->id == 0 && cmd->u.error.code == SGMQ_E_BUSY) {
        self->session_lost = true;
        self->drop_pause = !self->drop_pause ? S_BUSY_PAUSE
                         : self->drop_pause < S_DROP_PAUSE_MAX ? self->drop_pause * 2
                         : self->drop_pause;
        self->reconnect_after = zclock_mono () + self->drop_pause;
        return;
    }
    if (cmd->cmd == SGMQ_CMD_CONFIRM || cmd->cmd == SGMQ_CMD_ACKED)
        self->drop_pause = 0;
    //  "No session" (the broker restarted under this connection): the
    //  request was not processed; it goes again after a new HELLO.
    bool lost = cmd->cmd == SGMQ_CMD_ERROR && cmd->u.error.code == SGMQ_E_BAD_REQUEST;
    s_async_t *async = s_async_find (self, cmd->id, !lost);
    if (!async)
        return;
    if (lost) {
        self->session_lost = true;
        return;
    }
    if (async->ack) {
        if (cmd->cmd == SGMQ_CMD_ERROR && !self->ack_error.code) {
            s_fail_cmd (&self->ack_error, cmd);
            char reason [sizeof self->ack_error.reason];
            snprintf (reason, sizeof reason, "%s", self->ack_error.reason);
            snprintf (self->ack_error.reason, sizeof self->ack_error.reason,
                      "ack of %llu: %.200s", (unsigned long long) async->seq, reason);
        }
        free (async);
        return;
    }
    s_answer_t *answer = calloc (1, sizeof *answer);
    if (answer) {
        snprintf (answer->confirm.ref, sizeof answer->confirm.ref, "%s", async->ref);
        if (cmd->cmd == SGMQ_CMD_CONFIRM) {
            answer->confirm.seq = cmd->u.confirm.seq;
            answer->confirm.time = cmd->u.confirm.time;
            answer->confirm.duplicate = cmd->u.confirm.duplicate;
        }
        else
            s_fail_cmd (&answer->error, cmd);
        zlistx_add_end (self->answers, answer);
    }
    free (async);
}

//  Next command from the broker, waiting until `deadline` (monotonic ms;
//  -1: forever). 0 with *cmd set (valid until the next call), or -1 with
//  SGMQ_CLIENT_E_TIMEOUT.
static int
s_next (sgmq_client_t *self, int64_t deadline, const sgmq_cmd_t **cmd,
        sgmq_error_t *error)
{
    while (true) {
        while (self->frame_next < self->frame_count) {
            sgmq_proto_error_t perror;
            *cmd = sgmq_proto_cmd (self->frame, self->frame_next++, &perror);
            if (*cmd)
                return 0;
        }
        //  A deadline already passed still gets one look at the socket
        //  without waiting: a timeout of 0 means "what has arrived", not
        //  "only what was decoded before".
        long wait = -1;
        bool last = false;
        if (deadline >= 0) {
            int64_t left = deadline - zclock_mono ();
            last = left <= 0;
            wait = last ? 0 : (long) left;
        }
        if (!self->dealer)
            return s_fail (error, SGMQ_CLIENT_E_UNREACHABLE, NULL, "not connected");
        //  The monitor too: a lost connection (a broker restart) loses the
        //  session and any answer in flight, so say so at once rather than
        //  after the timeout; the callers reconnect.
        zmq_pollitem_t items [] = {
            { zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->monitor), 0, ZMQ_POLLIN, 0 }
        };
        int rc = zmq_poll (items, 2, wait);
        if (rc < 0 && errno == EINTR)
            return s_fail (error, SGMQ_CLIENT_E_TIMEOUT, NULL, "interrupted");
        if (rc <= 0 && last)
            return s_fail (error, SGMQ_CLIENT_E_TIMEOUT, NULL, "no answer from "
                           "%s in time", self->broker);
        if (rc <= 0)
            continue;
        uint16_t event;
        uint32_t value;
        if ((items [1].revents & ZMQ_POLLIN) && s_monitor_event (self, &event, &value) == 0
        &&  event == ZMQ_EVENT_DISCONNECTED)
            return s_fail (error, SGMQ_CLIENT_E_UNREACHABLE, NULL,
                           "the connection to %s was lost", self->broker);
        if (!(items [0].revents & ZMQ_POLLIN))
            continue;
        zframe_t *frame = zframe_recv (self->dealer);
        if (!frame)
            continue;
        self->last_in = zclock_mono ();
        sgmq_proto_error_t perror;
        if (sgmq_proto_decode (self->frame, zframe_data (frame), zframe_size (frame),
                               &perror) == 0) {
            self->frame_next = 0;
            self->frame_count = sgmq_proto_count (self->frame);
        }
        zframe_destroy (&frame);
    }
}

//  Wait for the answer to request `id`. 0 with *answer set (an ERROR
//  answer is returned as -1 with `error` filled).
static int
s_wait (sgmq_client_t *self, uint64_t id, int64_t deadline,
        const sgmq_cmd_t **answer, sgmq_error_t *error)
{
    while (true) {
        const sgmq_cmd_t *cmd = NULL;
        if (s_next (self, deadline, &cmd, error))
            return -1;
        if (cmd->id == id && cmd->cmd != SGMQ_CMD_DELIVER) {
            if (cmd->cmd == SGMQ_CMD_ERROR)
                return s_fail_cmd (error, cmd);
            *answer = cmd;
            return 0;
        }
        s_stash (self, cmd);
    }
}

//  Send a request and wait for its answer, within the client's timeout.
static int
s_call (sgmq_client_t *self, sgmq_cmd_t *cmd, const sgmq_cmd_t **answer,
        sgmq_error_t *error)
{
    cmd->id = s_new_id (self);
    if (s_send (self, cmd, error))
        return -1;
    return s_wait (self, cmd->id, zclock_mono () + self->timeout, answer, error);
}

//  A call that survives a broker restart: on a timeout or a lost session,
//  reconnect once and ask again. Only for idempotent requests.
static int
s_call_again (sgmq_client_t *self, sgmq_cmd_t *cmd, const sgmq_cmd_t **answer,
              sgmq_error_t *error)
{
    if (s_call (self, cmd, answer, error) == 0)
        return 0;
    bool lost = error->code == SGMQ_CLIENT_E_TIMEOUT
             || error->code == SGMQ_CLIENT_E_UNREACHABLE
             || error->code == SGMQ_E_BAD_REQUEST;
    if (!lost || s_connect (self, error))
        return -1;
    return s_call (self, cmd, answer, error);
}

static void
s_copy_list (char text [][SGMQ_PROTO_MAX_NAME + 1], const char **items,
             sgmq_strlist_t *list, const sgmq_strlist_t *from, uint32_t max)
{
    list->count = from->count < max ? from->count : max;
    for (uint32_t i = 0; i < list->count; i++) {
        snprintf (text [i], SGMQ_PROTO_MAX_NAME + 1, "%s", from->items [i]);
        items [i] = text [i];
    }
    list->items = items;
}

static int
s_hello (sgmq_client_t *self, sgmq_error_t *error)
{
    sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO };
    hello.u.hello.client = self->client_name;
    const sgmq_cmd_t *welcome = NULL;
    if (s_call (self, &hello, &welcome, error))
        return -1;
    if (welcome->cmd != SGMQ_CMD_WELCOME)
        return s_fail (error, SGMQ_CLIENT_E_PROTOCOL, NULL, "expected WELCOME, got %s",
                       sgmq_proto_cmd_name (welcome->cmd));
    snprintf (self->name, sizeof self->name, "%s", welcome->u.welcome.name);
    snprintf (self->agency, sizeof self->agency, "%s", welcome->u.welcome.agency);
    snprintf (self->version, sizeof self->version, "%s", welcome->u.welcome.broker);
    s_copy_list (self->role_text, self->role_items, &self->roles,
                 &welcome->u.welcome.roles, SGMQ_PROTO_MAX_ROLES);
    s_copy_list (self->group_text, self->group_items, &self->groups,
                 &welcome->u.welcome.groups, SGMQ_PROTO_MAX_GROUPS);
    self->heartbeat = welcome->u.welcome.heartbeat;
    self->max_frame = welcome->u.welcome.max_frame;
    return 0;
}

sgmq_client_t *
sgmq_client_new (const sgmq_client_options_t *options, sgmq_error_t *error)
{
    s_clear (error);
    if (!options || !options->broker || !options->cert || !options->server_cert) {
        s_fail (error, SGMQ_CLIENT_E_USAGE, NULL, "the broker endpoint, own "
                "certificate and broker certificate are all needed");
        return NULL;
    }
    sgmq_client_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_fail (error, SGMQ_CLIENT_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    self->timeout = options->timeout > 0 ? options->timeout : SGMQ_CLIENT_DEFAULT_TIMEOUT;
    self->broker = strdup (options->broker);
    self->client_name = options->client ? strdup (options->client) : NULL;
    self->writer = sgmq_proto_writer_new ();
    self->batch = sgmq_proto_writer_new ();
    self->frame = sgmq_proto_frame_new ();
    self->body_frame = sgmq_proto_frame_new ();
    self->deliveries = zlistx_new ();
    self->in_flight = zlistx_new ();
    self->answers = zlistx_new ();
    if (!self->broker || !self->writer || !self->batch || !self->frame
    ||  !self->body_frame || !self->deliveries || !self->in_flight || !self->answers) {
        s_fail (error, SGMQ_CLIENT_E_INTERNAL, NULL, "out of memory");
        goto out_destroy;
    }
    zlistx_set_destructor (self->deliveries, (zlistx_destructor_fn *) s_delivery_free);
    char why [SGMQ_CERT_ERROR_SIZE];
    self->cert = sgmq_cert_load (options->cert, why);
    if (!self->cert) {
        s_fail (error, SGMQ_CLIENT_E_CERT, NULL, "%s", why);
        goto out_destroy;
    }
    if (!sgmq_cert_secret_key (self->cert)) {
        s_fail (error, SGMQ_CLIENT_E_CERT, NULL, "%s: not a secret certificate; "
                "give the _secret file", options->cert);
        goto out_destroy;
    }
    sgmq_cert_t *server = sgmq_cert_load (options->server_cert, why);
    if (!server) {
        s_fail (error, SGMQ_CLIENT_E_CERT, NULL, "%s", why);
        goto out_destroy;
    }
    memcpy (self->server_key, sgmq_cert_public_key (server), sizeof self->server_key);
    sgmq_cert_destroy (&server);
    if (s_connect (self, error))
        goto out_destroy;
    return self;

out_destroy:
    sgmq_client_destroy (&self);
    return NULL;
}

void
sgmq_client_destroy (sgmq_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_client_t *self = *self_p;
    if (self->dealer && self->name [0]) {
        sgmq_cmd_t bye = { .cmd = SGMQ_CMD_BYE, .id = s_new_id (self) };
        s_send (self, &bye, NULL);
    }
    s_disconnect (self);
    sgmq_cert_destroy (&self->cert);
    sgmq_proto_writer_destroy (&self->writer);
    sgmq_proto_writer_destroy (&self->batch);
    sgmq_proto_frame_destroy (&self->frame);
    sgmq_proto_frame_destroy (&self->body_frame);
    zlistx_destroy (&self->deliveries);
    if (self->in_flight)
        for (s_async_t *a = zlistx_first (self->in_flight); a; a = zlistx_next (self->in_flight))
            free (a);
    zlistx_destroy (&self->in_flight);
    if (self->answers)
        for (s_answer_t *a = zlistx_first (self->answers); a; a = zlistx_next (self->answers))
            free (a);
    zlistx_destroy (&self->answers);
    s_delivery_free (&self->current);
    free (self->broker);
    free (self->client_name);
    free (self);
    *self_p = NULL;
}

const char *sgmq_client_name (sgmq_client_t *self) { return self->name; }
const char *sgmq_client_agency (sgmq_client_t *self) { return self->agency; }
const sgmq_strlist_t *sgmq_client_roles (sgmq_client_t *self) { return &self->roles; }
const sgmq_strlist_t *sgmq_client_groups (sgmq_client_t *self) { return &self->groups; }
const char *sgmq_client_broker_version (sgmq_client_t *self) { return self->version; }

bool
sgmq_client_has_role (sgmq_client_t *self, const char *role)
{
    for (uint32_t i = 0; i < self->roles.count; i++)
        if (strcmp (self->roles.items [i], role) == 0)
            return true;
    return false;
}

void *
sgmq_client_socket (sgmq_client_t *self)
{
    return self->dealer;
}

int
sgmq_client_fd (sgmq_client_t *self)
{
    return self->dealer ? zsock_fd (self->dealer) : -1;
}

int
sgmq_client_ping (sgmq_client_t *self, sgmq_error_t *error)
{
    s_clear (error);
    sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING };
    const sgmq_cmd_t *pong = NULL;
    return s_call_again (self, &ping, &pong, error);
}

//  --------------------------------------------------------------------------
//  Publishing

//  A reference for a caller that gave none: "r" + ms time + a counter +
//  random bits. They grow over time, which keeps the broker's idempotency
//  index appending in place (random refs scatter its pages: about 3x
//  slower per publish), and the random part keeps two clients apart.
static void
s_make_ref (char *ref, size_t size)
{
    static unsigned counter;
    uint8_t random [S_REF_RANDOM_BYTES];
    char hex [S_REF_RANDOM_BYTES * 2 + 1];
    randombytes_buf (random, sizeof random);
    sodium_bin2hex (hex, sizeof hex, random, sizeof random);
    unsigned n = __atomic_add_fetch (&counter, 1, __ATOMIC_RELAXED);
    snprintf (ref, size, "r%012llx.%08x.%s",
              (unsigned long long) zclock_time (), n, hex);
}

int
sgmq_client_publish (sgmq_client_t *self, const char *ref, const sgmq_body_t *body,
                     sgmq_confirm_t *confirm, sgmq_error_t *error)
{
    s_clear (error);
    sgmq_confirm_t local;
    if (!confirm)
        confirm = &local;
    memset (confirm, 0, sizeof *confirm);
    if (ref)
        snprintf (confirm->ref, sizeof confirm->ref, "%s", ref);
    else
        s_make_ref (confirm->ref, sizeof confirm->ref);
    sgmq_cmd_t publish = { .cmd = SGMQ_CMD_PUBLISH };
    publish.u.publish.ref = confirm->ref;
    publish.u.publish.body = *body;
    for (int attempt = 1; ; attempt++) {
        const sgmq_cmd_t *answer = NULL;
        if (s_call (self, &publish, &answer, error) == 0) {
            confirm->seq = answer->u.confirm.seq;
            confirm->time = answer->u.confirm.time;
            confirm->duplicate = answer->u.confirm.duplicate;
            return 0;
        }
        //  Only a lost answer is worth another try; the same ref makes the
        //  retry safe: the broker stores it once.
        bool lost = error->code == SGMQ_CLIENT_E_TIMEOUT
                 || error->code == SGMQ_CLIENT_E_UNREACHABLE
                 || error->code == SGMQ_E_BAD_REQUEST
                 || error->code == SGMQ_E_UNAVAILABLE;
        if (!lost || attempt == S_PUBLISH_TRIES)
            return -1;
        sgmq_error_t connect_error;
        if (error->code != SGMQ_E_UNAVAILABLE && s_connect (self, &connect_error)) {
            *error = connect_error;
            return -1;
        }
    }
}

//  The connection (or the session) behind pipelined requests was lost:
//  connect again, a few times, which sends every unanswered one again.
static int
s_recover (sgmq_client_t *self, sgmq_error_t *error)
{
    for (int attempt = 1; ; attempt++) {
        if (s_connect (self, error) == 0)
            return 0;
        if (s_final (error) || attempt == S_PUBLISH_TRIES)
            return -1;
    }
}

//  Send what is queued; on connection trouble, recover. 0 or -1.
static int
s_flush (sgmq_client_t *self, sgmq_error_t *error)
{
    if (self->session_lost)
        return s_recover (self, error);
    return s_send_writer (self, self->batch, error) ? s_recover (self, error) : 0;
}

//  Wait for the next command from the broker and stash it, recovering a
//  lost connection or session on the way. 0, or -1 on timeout or when the
//  broker stays unreachable.
static int
s_await_async (sgmq_client_t *self, int64_t deadline, sgmq_error_t *error)
{
    const sgmq_cmd_t *cmd = NULL;
    int rc = self->session_lost ? -1 : s_next (self, deadline, &cmd, error);
    if (rc == 0) {
        s_stash (self, cmd);
        return 0;
    }
    if (!self->session_lost && error->code != SGMQ_CLIENT_E_UNREACHABLE)
        return -1;                      //  the caller's timeout
    return s_recover (self, error);
}

//  Send what is queued and wait until answers leave room for one more
//  request under S_IN_FLIGHT_BYTES: up to the client's timeout, and as
//  long again after sending everything again on a new connection when
//  nothing came (the broker may have dropped frames, and its 429 with
//  them: a full queue to us). 0 or -1.
static int
s_wait_for_room (sgmq_client_t *self, sgmq_error_t *error)
{
    if (s_flush (self, error))
        return -1;
    int64_t deadline = zclock_mono () + self->timeout;
    bool again = false;
    while (self->bytes_in_flight + SGMQ_PROTO_MAX_REQUEST > S_IN_FLIGHT_BYTES) {
        //  The deadline holds even while other commands keep coming.
        int rc = zclock_mono () < deadline
               ? s_await_async (self, deadline, error)
               : s_fail (error, SGMQ_CLIENT_E_TIMEOUT, NULL, "no answer from %s in time",
                         self->broker);
        if (rc == 0)
            continue;
        if (again || error->code != SGMQ_CLIENT_E_TIMEOUT)
            return -1;
        again = true;
        self->session_lost = true;
        deadline = zclock_mono () + self->timeout;
    }
    return 0;
}

//  Queue a request to be answered later: into the batch, and, encoded,
//  into in_flight, to go again as it is if the connection is lost. The
//  batch goes once it is worth a frame (so that the broker commits one
//  batch while the next is on its way), and always before it could outgrow
//  what this broker accepts. With S_IN_FLIGHT_BYTES unanswered, answers
//  are awaited first (s_wait_for_room). 0 once queued, or -1 (not
//  queued).
static int
s_queue (sgmq_client_t *self, sgmq_cmd_t *cmd, const char *ref, sgmq_error_t *error)
{
    if (self->bytes_in_flight + SGMQ_PROTO_MAX_REQUEST > S_IN_FLIGHT_BYTES
    &&  s_wait_for_room (self, error))
        return -1;
    cmd->id = s_new_id (self);
    sgmq_proto_error_t perror;
    int rc = sgmq_proto_write (self->batch, cmd, &perror);
    if (rc == -1) {
        if (s_send_writer (self, self->batch, error) && s_recover (self, error))
            return -1;
        rc = sgmq_proto_write (self->batch, cmd, &perror);
    }
    if (rc)
        return s_fail (error, perror.code, perror.field, "%s", perror.reason);
    size_t size;
    const uint8_t *bytes = sgmq_proto_writer_last (self->batch, &size);
    s_async_t *async = malloc (sizeof *async + size);
    if (!async || !zlistx_add_end (self->in_flight, async)) {
        //  In the batch but not tracked: drop the batch and the connection;
        //  everything tracked goes again on the next one.
        free (async);
        sgmq_proto_writer_reset (self->batch);
        s_disconnect (self);
        return s_fail (error, SGMQ_CLIENT_E_INTERNAL, NULL, "out of memory");
    }
    async->id = cmd->id;
    async->ack = cmd->cmd == SGMQ_CMD_ACK;
    async->seq = async->ack ? cmd->u.ack.seq : 0;
    snprintf (async->ref, sizeof async->ref, "%s", ref ? ref : "");
    async->cmd_size = size;
    memcpy (async->cmd, bytes, size);
    self->bytes_in_flight += size;
    if (async->ack)
        self->acks_in_flight++;
    //  Queued now, whatever happens to the connection: a send that fails
    //  is repaired here or by the next call that waits.
    if (sgmq_proto_writer_count (self->batch) >= S_BATCH_SEND
    ||  sgmq_proto_writer_size (self->batch) + SGMQ_PROTO_MAX_REQUEST > self->max_frame) {
        sgmq_error_t ignored;
        if (s_send_writer (self, self->batch, &ignored))
            s_recover (self, &ignored);
    }
    return 0;
}

int
sgmq_client_publish_send (sgmq_client_t *self, const char *ref,
                          const sgmq_body_t *body, sgmq_error_t *error)
{
    s_clear (error);
    char own_ref [SGMQ_PROTO_MAX_NAME + 1];
    if (!ref) {
        s_make_ref (own_ref, sizeof own_ref);
        ref = own_ref;
    }
    sgmq_cmd_t publish = { .cmd = SGMQ_CMD_PUBLISH };
    publish.u.publish.ref = ref;
    publish.u.publish.body = *body;
    return s_queue (self, &publish, ref, error);
}

int
sgmq_client_publish_wait (sgmq_client_t *self, int timeout, sgmq_confirm_t *confirm,
                          sgmq_error_t *error)
{
    s_clear (error);
    //  Send the batch only when there is no answer to hand back already:
    //  publishes queued while the caller consumes a burst of confirms then
    //  leave together, many per frame.
    if (zlistx_size (self->answers) == 0 && s_flush (self, error))
        return -1;
    int64_t deadline = timeout < 0 ? -1 : zclock_mono () + timeout;
    while (zlistx_size (self->answers) == 0) {
        if (sgmq_client_in_flight (self) == 0)
            return s_fail (error, SGMQ_CLIENT_E_USAGE, NULL, "no publish in flight");
        if (s_await_async (self, deadline, error))
            return -1;
    }
    s_answer_t *answer = zlistx_first (self->answers);
    zlistx_detach_cur (self->answers);
    *confirm = answer->confirm;
    if (error)
        *error = answer->error;
    free (answer);
    return 0;
}

size_t
sgmq_client_in_flight (sgmq_client_t *self)
{
    return zlistx_size (self->in_flight) - self->acks_in_flight;
}

//  --------------------------------------------------------------------------
//  Receiving

static int
s_subscribe (sgmq_client_t *self, uint64_t *backlog, sgmq_error_t *error)
{
    sgmq_cmd_t subscribe = { .cmd = SGMQ_CMD_SUBSCRIBE };
    subscribe.u.subscribe.window = self->window;
    const sgmq_cmd_t *answer = NULL;
    if (s_call (self, &subscribe, &answer, error))
        return -1;
    //  The stream starts over: what we queued comes again, in order.
    zlistx_purge (self->deliveries);
    if (backlog)
        *backlog = answer->u.subscribed.backlog;
    return 0;
}

int
sgmq_client_subscribe (sgmq_client_t *self, uint32_t window, uint64_t *backlog,
                       sgmq_error_t *error)
{
    s_clear (error);
    self->window = window;
    if (s_subscribe (self, backlog, error))
        return -1;
    self->subscribed = true;
    return 0;
}

int
sgmq_client_recv (sgmq_client_t *self, int timeout, const sgmq_delivery_t **delivery,
                  sgmq_error_t *error)
{
    s_clear (error);
    int64_t deadline = timeout < 0 ? -1 : zclock_mono () + timeout;
    int64_t heartbeat = self->heartbeat ? self->heartbeat : SGMQ_CLIENT_DEFAULT_TIMEOUT;
    while (zlistx_size (self->deliveries) == 0) {
        int64_t now = zclock_mono ();
        //  Past the deadline (at once for timeout 0): take what has
        //  arrived, without waiting or reconnecting.
        bool last = deadline >= 0 && now >= deadline;
        if (last && !self->dealer)
            return s_fail (error, SGMQ_CLIENT_E_TIMEOUT, NULL, "no delivery in time");
        //  Silence for several heartbeats means the connection is gone
        //  (the broker restarted, or the network failed): reconnect, and
        //  the new subscription brings everything unacknowledged again.
        if (!last && (now - self->last_in > S_DEAD_HEARTBEATS * heartbeat || !self->dealer)) {
            sgmq_error_t connect_error;
            if (s_connect (self, &connect_error)) {
                s_disconnect (self);
                if (s_final (&connect_error)) {
                    if (error)
                        *error = connect_error;
                    return -1;
                }
                //  The broker is away: try again after a heartbeat (the
                //  handshake wait above already took up to the timeout).
                int64_t pause = heartbeat;
                if (deadline >= 0 && deadline - zclock_mono () < pause)
                    pause = deadline - zclock_mono ();
                if (pause > 0)
                    zclock_sleep ((int) pause);
                continue;
            }
        }
        if (!last && now - self->last_out >= heartbeat) {
            sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = s_new_id (self) };
            s_send (self, &ping, NULL);
        }
        //  Acks queued by _ack_send leave before we wait.
        if (sgmq_proto_writer_count (self->batch) && self->dealer)
            s_send_writer (self, self->batch, NULL);
        int64_t wake = self->last_out + heartbeat;
        if (deadline >= 0 && deadline < wake)
            wake = deadline;
        const sgmq_cmd_t *cmd = NULL;
        sgmq_error_t next_error;
        int next = s_next (self, wake, &cmd, &next_error);
        if (next && next_error.code == SGMQ_CLIENT_E_UNREACHABLE)
            s_disconnect (self);        //  reconnect at the top of the loop
        if (next && last)
            return s_fail (error, SGMQ_CLIENT_E_TIMEOUT, NULL, "no delivery in time");
        if (next == 0) {
            if (cmd->cmd == SGMQ_CMD_ERROR && cmd->u.error.code == SGMQ_E_NOT_AUTHORISED) {
                s_disconnect (self);
                return s_fail_cmd (error, cmd);
            }
            //  A lost session (broker restarted under the same connection).
            if (cmd->cmd == SGMQ_CMD_ERROR && cmd->u.error.code == SGMQ_E_BAD_REQUEST)
                s_disconnect (self);
            else {
                s_stash (self, cmd);
                //  Frames dropped (429, id 0): the queued acks go again.
                if (self->session_lost)
                    s_disconnect (self);
            }
        }
    }
    s_delivery_free (&self->current);
    self->current = zlistx_first (self->deliveries);
    zlistx_detach_cur (self->deliveries);
    s_delivery_t *d = self->current;
    sgmq_delivery_t *out = &self->delivery;
    memset (out, 0, sizeof *out);
    out->seq = d->seq;
    out->time = d->time;
    out->kind = d->kind;
    out->from = d->from;
    out->agency = d->agency;
    out->groups = (sgmq_strlist_t) { d->group_count, d->groups };
    out->attempt = d->attempt;
    sgmq_proto_error_t perror;
    if (sgmq_proto_decode_body (self->body_frame, d->kind, d->body, d->body_size,
                                &out->body, &perror))
        return s_fail (error, SGMQ_CLIENT_E_PROTOCOL, perror.field, "delivery %llu: %s",
                       (unsigned long long) d->seq, perror.reason);
    *delivery = out;
    return 0;
}

int
sgmq_client_ack (sgmq_client_t *self, uint64_t seq, bool *duplicate, sgmq_error_t *error)
{
    s_clear (error);
    sgmq_cmd_t ack = { .cmd = SGMQ_CMD_ACK };
    ack.u.ack.seq = seq;
    const sgmq_cmd_t *answer = NULL;
    if (s_call_again (self, &ack, &answer, error))
        return -1;
    if (duplicate)
        *duplicate = answer->u.acked.duplicate;
    return 0;
}

int
sgmq_client_ack_send (sgmq_client_t *self, uint64_t seq, sgmq_error_t *error)
{
    s_clear (error);
    sgmq_cmd_t ack = { .cmd = SGMQ_CMD_ACK };
    ack.u.ack.seq = seq;
    return s_queue (self, &ack, NULL, error);
}

int
sgmq_client_ack_flush (sgmq_client_t *self, int timeout, sgmq_error_t *error)
{
    s_clear (error);
    if (s_flush (self, error))
        return -1;
    int64_t deadline = timeout < 0 ? -1 : zclock_mono () + timeout;
    while (self->acks_in_flight > 0)
        if (s_await_async (self, deadline, error))
            return -1;
    if (self->ack_error.code) {
        if (error)
            *error = self->ack_error;
        s_clear (&self->ack_error);
        return -1;
    }
    return 0;
}

size_t
sgmq_client_acks_in_flight (sgmq_client_t *self)
{
    return self->acks_in_flight;
}

//  --------------------------------------------------------------------------
//  Questions

int
sgmq_client_pending (sgmq_client_t *self, sgmq_scope_t scope, bool overdue,
                     sgmq_pending_fn *fn, void *arg, sgmq_error_t *error)
{
    s_clear (error);
    uint64_t after = 0;
    int backoff = 0, waited = 0;
    while (true) {
        sgmq_cmd_t pending = { .cmd = SGMQ_CMD_PENDING };
        pending.u.pending.scope = scope;
        pending.u.pending.overdue = overdue;
        pending.u.pending.after = after;
        const sgmq_cmd_t *answer = NULL;
        int rc = s_call_again (self, &pending, &answer, error);
        //  429: the broker bounds the PENDING work of a turn; ask again
        //  after a growing pause, the pauses of one page adding up to the
        //  client's timeout at most.
        if (rc && error->code == SGMQ_E_BUSY && waited < self->timeout) {
            backoff = !backoff ? S_BUSY_PAUSE : backoff < INT_MAX / 2 ? backoff * 2 : backoff;
            if (backoff > self->timeout - waited)
                backoff = self->timeout - waited;
            zclock_sleep (backoff);
            waited += backoff;
            s_clear (error);
            continue;
        }
        if (rc)
            return -1;
        backoff = waited = 0;
        for (uint32_t i = 0; i < answer->u.pending_answer.count; i++)
            if (fn (&answer->u.pending_answer.items [i], arg))
                return 0;
        after = answer->u.pending_answer.next;
        if (!after)
            return 0;
    }
}

//  --------------------------------------------------------------------------
//  Replay and verification

//  Before a stream is asked for: a round trip that says HELLO again when
//  the session was lost (a broker restart, a long pause), as every other
//  request does; the stream's request itself is not answered at once.
static int
s_session_alive (sgmq_client_t *self, sgmq_error_t *error)
{
    sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING };
    const sgmq_cmd_t *pong = NULL;
    return s_call_again (self, &ping, &pong, error);
}

sgmq_replay_t *
sgmq_client_replay (sgmq_client_t *self, const sgmq_replay_query_t *query,
                    sgmq_error_t *error)
{
    s_clear (error);
    if (self->replaying) {
        s_fail (error, SGMQ_CLIENT_E_USAGE, NULL, "a replay is already open");
        return NULL;
    }
    sgmq_replay_t *replay = calloc (1, sizeof *replay);
    if (!replay) {
        s_fail (error, SGMQ_CLIENT_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    if (s_session_alive (self, error)) {
        free (replay);
        return NULL;
    }
    sgmq_cmd_t cmd = { .cmd = SGMQ_CMD_REPLAY, .id = s_new_id (self) };
    if (query) {
        cmd.u.replay.from = query->from;
        cmd.u.replay.to = query->to;
        cmd.u.replay.since = query->since;
        cmd.u.replay.until = query->until;
        cmd.u.replay.group = query->group;
        cmd.u.replay.kind = query->kind;
    }
    if (s_send (self, &cmd, error)) {
        free (replay);
        return NULL;
    }
    replay->client = self;
    replay->id = cmd.id;
    self->replaying = true;
    return replay;
}

int
sgmq_replay_next (sgmq_replay_t *self, const sgmq_replay_item_t **item,
                  sgmq_error_t *error)
{
    s_clear (error);
    if (self->ended)
        return 0;
    sgmq_client_t *client = self->client;
    const sgmq_cmd_t *cmd = NULL;
    sgmq_error_t local;
    if (!error)
        error = &local;
    //  Items stream in; each must come within the timeout of the last.
    if (s_wait (client, self->id, zclock_mono () + client->timeout, &cmd, error)) {
        //  A refusal ends the stream; nothing more will come for it.
        self->ended = sgmq_error_refused (error);
        return -1;
    }
    if (cmd->cmd == SGMQ_CMD_REPLAY_END) {
        self->ended = true;
        self->end.count = cmd->u.replay_end.count;
        self->end.head_seq = cmd->u.replay_end.head_seq;
        memcpy (self->end.head_hash, cmd->u.replay_end.head_hash, SGMQ_PROTO_HASH_SIZE);
        self->end.has_checkpoint = cmd->u.replay_end.has_checkpoint;
        self->end.checkpoint = cmd->u.replay_end.checkpoint;
        return 0;
    }
    if (cmd->cmd != SGMQ_CMD_REPLAY_ITEM)
        return s_fail (error, SGMQ_CLIENT_E_PROTOCOL, NULL, "unexpected %s in a replay",
                       sgmq_proto_cmd_name (cmd->cmd));
    sgmq_replay_item_t *out = &self->item;
    memset (out, 0, sizeof *out);
    out->seq = cmd->u.replay_item.seq;
    out->time = cmd->u.replay_item.time;
    out->kind = cmd->u.replay_item.kind;
    out->from = cmd->u.replay_item.from;
    out->from_key = cmd->u.replay_item.from_key;
    out->agency = cmd->u.replay_item.agency;
    out->groups = cmd->u.replay_item.groups;
    out->body_bytes = cmd->u.replay_item.body;
    out->body_size = cmd->u.replay_item.body_size;
    memcpy (out->hash, cmd->u.replay_item.hash, SGMQ_PROTO_HASH_SIZE);
    memcpy (out->prev, cmd->u.replay_item.prev, SGMQ_PROTO_HASH_SIZE);
    out->ack_count = cmd->u.replay_item.ack_count;
    out->acks = cmd->u.replay_item.acks;
    sgmq_proto_error_t perror;
    if (sgmq_proto_decode_body (client->body_frame, out->kind, out->body_bytes,
                                out->body_size, &out->body, &perror))
        //  The hash still covers the bytes; only the view is missing.
        out->body.kind = 0;
    *item = out;
    return 1;
}

const sgmq_replay_end_t *
sgmq_replay_end (sgmq_replay_t *self)
{
    return self->ended ? &self->end : NULL;
}

void
sgmq_replay_destroy (sgmq_replay_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_replay_t *self = *self_p;
    sgmq_client_t *client = self->client;
    //  An unfinished replay still streams to us: read it off (bounded by
    //  the timeout), so the next request does not wade through it.
    const sgmq_replay_item_t *item;
    while (!self->ended && sgmq_replay_next (self, &item, NULL) == 1)
        ;
    client->replaying = false;
    free (self);
    *self_p = NULL;
}

struct _sgmq_report_t {
    sgmq_client_t *client;
    uint64_t id;
    bool ended;
};

sgmq_report_t *
sgmq_client_report (sgmq_client_t *self, uint64_t since, uint64_t until,
                    sgmq_error_t *error)
{
    s_clear (error);
    if (self->replaying) {
        s_fail (error, SGMQ_CLIENT_E_USAGE, NULL, "a replay or report is already open");
        return NULL;
    }
    sgmq_report_t *report = calloc (1, sizeof *report);
    if (!report) {
        s_fail (error, SGMQ_CLIENT_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    if (s_session_alive (self, error)) {
        free (report);
        return NULL;
    }
    sgmq_cmd_t cmd = { .cmd = SGMQ_CMD_REPORT, .id = s_new_id (self) };
    cmd.u.report.since = since;
    cmd.u.report.until = until;
    if (s_send (self, &cmd, error)) {
        free (report);
        return NULL;
    }
    report->client = self;
    report->id = cmd.id;
    self->replaying = true;
    return report;
}

int
sgmq_report_next (sgmq_report_t *self, const sgmq_cmd_t **item, sgmq_error_t *error)
{
    s_clear (error);
    if (self->ended)
        return 0;
    sgmq_client_t *client = self->client;
    const sgmq_cmd_t *cmd = NULL;
    sgmq_error_t local;
    if (!error)
        error = &local;
    if (s_wait (client, self->id, zclock_mono () + client->timeout, &cmd, error)) {
        //  A refusal ends the stream; nothing more will come for it.
        self->ended = sgmq_error_refused (error);
        return -1;
    }
    if (cmd->cmd == SGMQ_CMD_REPORT_END) {
        self->ended = true;
        return 0;
    }
    if (cmd->cmd != SGMQ_CMD_REPORT_ESCALATION && cmd->cmd != SGMQ_CMD_REPORT_LEARNING)
        return s_fail (error, SGMQ_CLIENT_E_PROTOCOL, NULL, "unexpected %s in a report",
                       sgmq_proto_cmd_name (cmd->cmd));
    *item = cmd;
    return 1;
}

void
sgmq_report_destroy (sgmq_report_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_report_t *self = *self_p;
    //  Read off what is still coming (bounded by the timeout).
    const sgmq_cmd_t *item;
    while (!self->ended && sgmq_report_next (self, &item, NULL) == 1)
        ;
    self->client->replaying = false;
    free (self);
    *self_p = NULL;
}

static void
s_hash_u16 (crypto_generichash_state *state, size_t value)
{
    uint8_t bytes [2] = { (uint8_t) (value >> 8), (uint8_t) value };
    crypto_generichash_update (state, bytes, sizeof bytes);
}

static void
s_hash_u64 (crypto_generichash_state *state, uint64_t value)
{
    uint8_t bytes [8];
    for (int i = 0; i < 8; i++)
        bytes [i] = (uint8_t) (value >> (56 - 8 * i));
    crypto_generichash_update (state, bytes, sizeof bytes);
}

static void
s_hash_str (crypto_generichash_state *state, const char *text)
{
    size_t len = strlen (text);
    s_hash_u16 (state, len);
    crypto_generichash_update (state, (const uint8_t *) text, len);
}

void
sgmq_chain_hash (const uint8_t *prev, const sgmq_replay_item_t *item, uint8_t *hash)
{
    //  PROTOCOL.md, "Audit chain": written from the spec, not shared with
    //  the store, so an auditor's check is independent of the writer.
    static const char domain [] = "sgmq-msg-v1";
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, SGMQ_PROTO_HASH_SIZE);
    crypto_generichash_update (&state, prev, SGMQ_PROTO_HASH_SIZE);
    crypto_generichash_update (&state, (const uint8_t *) domain, sizeof domain - 1);
    s_hash_u64 (&state, item->seq);
    s_hash_u64 (&state, item->time);
    s_hash_str (&state, item->from);
    s_hash_str (&state, item->from_key);
    s_hash_str (&state, sgmq_proto_kind_name (item->kind));
    s_hash_u16 (&state, item->groups.count);
    for (uint32_t i = 0; i < item->groups.count; i++)
        s_hash_str (&state, item->groups.items [i]);
    uint8_t size [4] = {
        (uint8_t) (item->body_size >> 24), (uint8_t) (item->body_size >> 16),
        (uint8_t) (item->body_size >> 8), (uint8_t) item->body_size
    };
    crypto_generichash_update (&state, size, sizeof size);
    crypto_generichash_update (&state, item->body_bytes, item->body_size);
    crypto_generichash_final (&state, hash, SGMQ_PROTO_HASH_SIZE);
}

bool
sgmq_checkpoint_valid (const sgmq_checkpoint_t *cp, const uint8_t *signing_pk)
{
    static const char domain [] = "sgmq-checkpoint-v1";
    uint8_t message [sizeof domain - 1 + 8 + 8 + SGMQ_PROTO_HASH_SIZE];
    memcpy (message, domain, sizeof domain - 1);
    for (int i = 0; i < 8; i++) {
        message [sizeof domain - 1 + i] = (uint8_t) (cp->seq >> (56 - 8 * i));
        message [sizeof domain - 1 + 8 + i] = (uint8_t) (cp->time >> (56 - 8 * i));
    }
    memcpy (message + sizeof domain - 1 + 16, cp->hash, SGMQ_PROTO_HASH_SIZE);
    return crypto_sign_verify_detached (cp->signature, message, sizeof message,
                                        signing_pk) == 0;
}

//  The newest checkpoint and head, from an empty replay past the head.
static int
s_verify_probe (sgmq_client_t *self, sgmq_replay_end_t *end, sgmq_error_t *error)
{
    sgmq_replay_query_t query = { .from = UINT64_MAX };
    sgmq_replay_t *replay = sgmq_client_replay (self, &query, error);
    if (!replay)
        return -1;
    const sgmq_replay_item_t *item;
    int rc;
    while ((rc = sgmq_replay_next (replay, &item, error)) == 1)
        ;
    if (rc == 0)
        *end = *sgmq_replay_end (replay);
    sgmq_replay_destroy (&replay);
    return rc;
}

//  PROTOCOL.md 11.4: the body decodes as its kind and re-encodes to the
//  same bytes.
static bool
s_canonical_body (const sgmq_replay_item_t *item)
{
    if (!item->body.kind || item->body.kind != item->kind)
        return false;
    size_t size = 0;
    uint8_t *again = sgmq_proto_encode_body (&item->body, &size, NULL);
    bool same = again && size == item->body_size
             && memcmp (again, item->body_bytes, size) == 0;
    free (again);
    return same;
}

int
sgmq_client_verify (sgmq_client_t *self, const uint8_t *signing_pk,
                    sgmq_verify_t *report, sgmq_progress_fn *progress, void *arg,
                    sgmq_error_t *error)
{
    s_clear (error);
    memset (report, 0, sizeof *report);
    sgmq_replay_end_t probe;
    if (s_verify_probe (self, &probe, error))
        return -1;
    sgmq_replay_t *replay = sgmq_client_replay (self, NULL, error);
    if (!replay)
        return -1;
    uint8_t prev [SGMQ_PROTO_HASH_SIZE] = { 0 };
    uint8_t at_checkpoint [SGMQ_PROTO_HASH_SIZE] = { 0 };
    uint64_t expected = 1, last_time = 0;
    report->intact = true;
    const sgmq_replay_item_t *item;
    int rc;
    while ((rc = sgmq_replay_next (replay, &item, error)) == 1) {
        report->count++;
        if (!report->intact)
            continue;           //  read the rest off; the break is found
        uint8_t hash [SGMQ_PROTO_HASH_SIZE];
        sgmq_chain_hash (prev, item, hash);
        if (item->seq != expected) {
            report->intact = false;
            report->bad_seq = expected;
            snprintf (report->reason, sizeof report->reason, "message %llu is "
                      "missing (the history jumps to %llu)",
                      (unsigned long long) expected, (unsigned long long) item->seq);
        }
        else
        if (sodium_memcmp (item->prev, prev, sizeof prev) != 0
        ||  sodium_memcmp (item->hash, hash, sizeof hash) != 0) {
            report->intact = false;
            report->bad_seq = item->seq;
            snprintf (report->reason, sizeof report->reason, "message %llu does not "
                      "match its hash: it was changed, or one before it was",
                      (unsigned long long) item->seq);
        }
        else
        if (item->time < last_time) {
            report->intact = false;
            report->bad_seq = item->seq;
            snprintf (report->reason, sizeof report->reason, "message %llu is dated "
                      "before the one before it", (unsigned long long) item->seq);
        }
        else
        if (!s_canonical_body (item)) {
            report->intact = false;
            report->bad_seq = item->seq;
            snprintf (report->reason, sizeof report->reason, "message %llu's body is "
                      "not the canonical encoding of a valid %s",
                      (unsigned long long) item->seq, sgmq_proto_kind_name (item->kind));
        }
        memcpy (prev, hash, sizeof prev);
        last_time = item->time;
        if (probe.has_checkpoint && item->seq == probe.checkpoint.seq)
            memcpy (at_checkpoint, hash, sizeof hash);
        expected = item->seq + 1;
        if (progress && report->count % S_PROGRESS_EVERY == 0)
            progress (report->count, probe.head_seq, arg);
    }
    sgmq_replay_end_t end = rc == 0 ? *sgmq_replay_end (replay) : probe;
    sgmq_replay_destroy (&replay);
    if (rc < 0)
        return -1;
    report->head_seq = end.head_seq;
    uint64_t last = expected - 1;
    if (report->intact && last < probe.head_seq) {
        report->intact = false;
        report->bad_seq = expected;
        snprintf (report->reason, sizeof report->reason, "the history ends at %llu "
                  "but the broker's head is %llu", (unsigned long long) last,
                  (unsigned long long) probe.head_seq);
    }
    else
    if (report->intact && end.count != report->count) {
        report->intact = false;
        report->bad_seq = last;
        snprintf (report->reason, sizeof report->reason, "the broker counted %llu "
                  "messages but sent %llu", (unsigned long long) end.count,
                  (unsigned long long) report->count);
    }
    else                                //  (newer messages may be stored by now)
    if (report->intact && end.head_seq == last
    &&  sodium_memcmp (end.head_hash, prev, sizeof prev) != 0) {
        report->intact = false;
        report->bad_seq = last;
        snprintf (report->reason, sizeof report->reason, "the broker's head hash is "
                  "not the hash of message %llu", (unsigned long long) last);
    }
    if (signing_pk && report->intact) {
        report->checkpoint_checked = probe.has_checkpoint;
        report->checkpoint_seq = probe.checkpoint.seq;
        if (!probe.has_checkpoint)
            snprintf (report->reason, sizeof report->reason,
                      "no signed checkpoint yet; the chain is intact but unsigned");
        else
        if (!sgmq_checkpoint_valid (&probe.checkpoint, signing_pk)) {
            report->intact = false;
            report->bad_seq = probe.checkpoint.seq;
            snprintf (report->reason, sizeof report->reason, "the checkpoint at %llu "
                      "is not signed by this signing key",
                      (unsigned long long) probe.checkpoint.seq);
        }
        else
        if (sodium_memcmp (at_checkpoint, probe.checkpoint.hash, SGMQ_PROTO_HASH_SIZE)) {
            report->intact = false;
            report->bad_seq = probe.checkpoint.seq;
            snprintf (report->reason, sizeof report->reason, "the signed checkpoint "
                      "at %llu does not match the history: it was rewritten",
                      (unsigned long long) probe.checkpoint.seq);
        }
    }
    return 0;
}
