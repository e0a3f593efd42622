/*  End-to-end: hostile and broken clients (issue 7, item 2).

    One deployment, one broker, and a well-behaved "canary" pair (the
    police system publishing, an Executive member subscribed) that must
    get one message end to end, within a deadline, after every attack:

    * an admitted client sends random bytes (seeded: SGMQ_HOSTILE_SEED
      replays a run), frames with one element corrupted at every position,
      every truncation of a valid frame, trailing garbage, deep nesting,
      huge declared counts and a catalogue of field errors; each gets the
      ERROR that PROTOCOL.md gives (id 0 for the frame, the command's id
      for a command), and the reference codec agrees;
    * frames over the maximum size lose their connection; one of exactly
      the maximum is answered;
    * a flood of unknown keys and of half-finished handshakes: nobody is
      admitted, the canary works during the flood, and the broker drops the
      half-open connections after its handshake timeout;
    * a client that never reads while thousands of messages go to its
      group: the broker's memory stays bounded (regression: it used to hold
      up to 256 frames of 1 MiB for such a peer), the canary gets
      everything, the publisher keeps its pace;
    * one key opening many sessions: beyond limits/sessions-per-key, 429;
      BYE frees a session at once (a command after it gets 400);
    * subscribers that vanish without BYE while deliveries go to them free
      their sessions (regression: they used to hold them for good);
    * at the end the log holds no message text and no secret key, names
      the malformed frames without their bytes, the broker's memory is
      back near where it started, and SIGTERM stops it with exit 0. */
#include "e2e.h"
#include "sgmq_cert.h"
#include "sgmq_proto.h"
#include "sgmq_time.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

//  Text that must never reach the broker's log: it is in every body the
//  test publishes and in the strings of the malformed frames.
#define S_MARKER        "HOSTILE-BODY-MARKER-q7Zx3"
//  A canary round trip (publish, receive, ack) takes at most this (scaled).
#define S_CANARY_MS     10000
//  An answer to a raw request comes within this (scaled).
#define S_ANSWER_MS     5000
//  Random frames, and their longest length.
#define S_RANDOM_FRAMES 3000
#define S_RANDOM_MAX    4096
//  The flood: unknown keys, and half-finished handshakes.
#define S_FLOOD_KEYS    200
#define S_FLOOD_TCP     200
//  The stalled reader: messages published to its group, per chunk.
#define S_STALL_MESSAGES 12000
#define S_STALL_CHUNK   500
//  Memory the broker may gain over an attack (and over the whole run).
//  Not checked under AddressSanitizer, whose quarantine and shadow memory
//  make the resident set say nothing about the broker's own use.
#define S_RSS_SLACK_KB  (64 * 1024)
#define S_RSS_CHECKED   (!TESTUTIL_ASAN)
#define S_RSS_BOUNDED(grown) (!S_RSS_CHECKED || (grown) < S_RSS_SLACK_KB)
//  Sessions one key asks for (the default limit is 16).
#define S_MANY_SESSIONS 50
#define S_SESSIONS_PER_KEY 16
//  Ids the raw client uses for its barrier PINGs: far from any other.
#define S_BARRIER_BASE  (UINT64_C (1) << 62)

//  Frames the test sent that the codec refuses whole: the broker logs
//  each and counts them all.
static uint64_t s_frame_errors;

typedef struct {
    e2e_t *e2e;
    char *police, *exec1, *exec2, *many, *vanisher;
    sgmq_client_t *publisher;           //  the canary pair
    sgmq_client_t *receiver;
    long rss_start_kb;
    char *flood_secrets;                //  Z85 secret keys of the unknown certs
    size_t flood_secrets_size;
} s_fixture_t;

//  --------------------------------------------------------------------------
//  The broker process

static long
s_proc_status_kb (pid_t pid, const char *field)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    assert_non_null (file);
    char line [256];
    long value = -1;
    size_t len = strlen (field);
    while (fgets (line, sizeof line, file))
        if (strncmp (line, field, len) == 0 && line [len] == ':') {
            value = strtol (line + len + 1, NULL, 10);
            break;
        }
    fclose (file);
    assert_true (value >= 0);
    return value;
}

//  The broker's own memory: its resident set less the pages of files it
//  maps (LMDB maps the store: those pages are the kernel's page cache,
//  grow with the store, whoever reads, and can be dropped at any time).
static long
s_rss_kb (s_fixture_t *f)
{
    return s_proc_status_kb (f->e2e->pid, "VmRSS")
         - s_proc_status_kb (f->e2e->pid, "RssFile");
}

static void
s_print_memory (s_fixture_t *f, const char *when)
{
    pid_t pid = f->e2e->pid;
    printf ("    broker memory %s: VmRSS %ld KiB (RssAnon %ld, RssFile %ld, RssShmem %ld)\n",
            when, s_proc_status_kb (pid, "VmRSS"), s_proc_status_kb (pid, "RssAnon"),
            s_proc_status_kb (pid, "RssFile"), s_proc_status_kb (pid, "RssShmem"));
}

//  --------------------------------------------------------------------------
//  The canary: one message end to end, within a deadline.

static sgmq_body_t
s_escalation (const char *group, const char *title, const char *summary)
{
    sgmq_body_t body = { .kind = SGMQ_KIND_ESCALATION };
    body.u.escalation.group = group;
    body.u.escalation.title = title;
    body.u.escalation.summary = summary;
    body.u.escalation.severity = SGMQ_SEVERITY_HIGH;
    body.u.escalation.requested = "A decision from the Executive " S_MARKER;
    body.u.escalation.respond_by = sgmq_time_now () + 7ULL * 86400000;
    return body;
}

static void
s_canary (s_fixture_t *f, const char *after)
{
    int64_t start = testutil_now_ms ();
    int64_t deadline = start + testutil_ms (S_CANARY_MS);
    sgmq_body_t body = s_escalation ("exploitation", "Canary " S_MARKER,
                                     "The canary is alive. " S_MARKER);
    sgmq_confirm_t confirm;
    sgmq_error_t error;
    if (sgmq_client_publish (f->publisher, NULL, &body, &confirm, &error))
        fail_msg ("canary after %s: publish refused: %d %s", after, error.code,
                  error.reason);
    int64_t published = testutil_now_ms ();
    //  Whatever else is waiting (messages the attacks published) comes
    //  first, in order: acknowledge it on the way.
    while (true) {
        int64_t left = deadline - testutil_now_ms ();
        if (left <= 0)
            fail_msg ("canary after %s: seq %llu not received in time", after,
                      (unsigned long long) confirm.seq);
        const sgmq_delivery_t *d;
        if (sgmq_client_recv (f->receiver, (int) left, &d, &error))
            fail_msg ("canary after %s: no delivery: %d %s", after, error.code,
                      error.reason);
        uint64_t seq = d->seq;
        if (sgmq_client_ack (f->receiver, seq, NULL, &error))
            fail_msg ("canary after %s: ack %llu: %d %s", after,
                      (unsigned long long) seq, error.code, error.reason);
        if (seq == confirm.seq)
            break;
    }
    int64_t now = testutil_now_ms ();
    printf ("    canary after %-34s publish %4lld ms, end to end %4lld ms\n", after,
            (long long) (published - start), (long long) (now - start));
    assert_true (now - start < testutil_ms (S_CANARY_MS));
}

//  --------------------------------------------------------------------------
//  A raw CURVE client with an admitted key, speaking frames by hand.

typedef struct {
    zsock_t *sock;
    sgmq_proto_frame_t *frame;          //  current incoming frame
    size_t next, count;
    sgmq_proto_writer_t *writer;
    uint64_t barrier;
} s_raw_t;

//  One answer, copied out of its frame.
typedef struct {
    int cmd;
    uint64_t id;
    uint32_t code;
    char field [64];
    char reason [SGMQ_PROTO_MAX_REASON];
} s_ans_t;

#define S_ANS_MAX 2048

static void
s_raw_send (s_raw_t *raw, const void *data, size_t size)
{
    int rc = zmq_send (zsock_resolve (raw->sock), data, size, 0);
    assert_int_equal (rc, (int) size);
}

static void
s_raw_send_cmd (s_raw_t *raw, const sgmq_cmd_t *cmd)
{
    sgmq_proto_writer_reset (raw->writer);
    assert_int_equal (sgmq_proto_write (raw->writer, cmd, NULL), 0);
    s_raw_send (raw, sgmq_proto_writer_data (raw->writer),
                sgmq_proto_writer_size (raw->writer));
}

//  Next command from the broker before `deadline`: 0, or -1 on timeout.
//  The broker must never send a frame our codec refuses.
static int
s_raw_next (s_raw_t *raw, int64_t deadline, const sgmq_cmd_t **cmd)
{
    while (true) {
        while (raw->next < raw->count) {
            sgmq_proto_error_t error;
            *cmd = sgmq_proto_cmd (raw->frame, raw->next++, &error);
            if (!*cmd)
                fail_msg ("the broker sent a bad command: %d %s", error.code, error.reason);
            return 0;
        }
        int64_t left = deadline - testutil_now_ms ();
        if (left <= 0)
            return -1;
        zmq_pollitem_t item = { zsock_resolve (raw->sock), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) left) <= 0)
            continue;
        zframe_t *frame = zframe_recv (raw->sock);
        if (!frame)
            continue;
        sgmq_proto_error_t error;
        if (sgmq_proto_decode (raw->frame, zframe_data (frame), zframe_size (frame), &error))
            fail_msg ("the broker sent a bad frame: %d %s", error.code, error.reason);
        zframe_destroy (&frame);
        raw->next = 0;
        raw->count = sgmq_proto_count (raw->frame);
    }
}

static void
s_ans_copy (s_ans_t *ans, const sgmq_cmd_t *cmd)
{
    memset (ans, 0, sizeof *ans);
    ans->cmd = cmd->cmd;
    ans->id = cmd->id;
    if (cmd->cmd == SGMQ_CMD_ERROR) {
        ans->code = cmd->u.error.code;
        snprintf (ans->field, sizeof ans->field, "%s",
                  cmd->u.error.field ? cmd->u.error.field : "");
        snprintf (ans->reason, sizeof ans->reason, "%s", cmd->u.error.reason);
    }
}

//  The answer to request `id` (skipping anything else), within the limit.
static void
s_raw_answer (s_raw_t *raw, uint64_t id, s_ans_t *ans)
{
    int64_t deadline = testutil_now_ms () + testutil_ms (S_ANSWER_MS);
    const sgmq_cmd_t *cmd;
    while (s_raw_next (raw, deadline, &cmd) == 0)
        if (cmd->id == id && cmd->cmd != SGMQ_CMD_DELIVER) {
            s_ans_copy (ans, cmd);
            return;
        }
    fail_msg ("no answer to request %llu", (unsigned long long) id);
}

static void
s_raw_hello (s_raw_t *raw)
{
    sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = ++raw->barrier };
    s_raw_send_cmd (raw, &hello);
    s_ans_t ans;
    s_raw_answer (raw, hello.id, &ans);
    if (ans.cmd != SGMQ_CMD_WELCOME)
        fail_msg ("HELLO answered by %s %u %s", sgmq_proto_cmd_name (ans.cmd), ans.code,
                  ans.reason);
}

//  A raw DEALER with this secret cert (an admitted one, or any cert);
//  `rcvhwm` > 0 sets a receive high-water mark (and a small kernel
//  buffer) before connecting.
static s_raw_t *
s_raw_open (s_fixture_t *f, const char *cert_path, int rcvhwm)
{
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *cert = sgmq_cert_load (cert_path, error);
    sgmq_cert_t *server = sgmq_cert_load (f->e2e->server_cert, error);
    assert_non_null (cert);
    assert_non_null (server);
    s_raw_t *raw = calloc (1, sizeof *raw);
    raw->sock = zsock_new (ZMQ_DEALER);
    raw->frame = sgmq_proto_frame_new ();
    raw->writer = sgmq_proto_writer_new ();
    raw->barrier = S_BARRIER_BASE;
    assert_int_equal (sgmq_cert_apply_client (cert, zsock_resolve (raw->sock),
                                              sgmq_cert_public_key (server)), 0);
    zsock_set_linger (raw->sock, 0);
    if (rcvhwm > 0) {
        zsock_set_rcvhwm (raw->sock, rcvhwm);
        zsock_set_rcvbuf (raw->sock, 4096);
    }
    assert_int_equal (zsock_connect (raw->sock, "%s", f->e2e->endpoint), 0);
    sgmq_cert_destroy (&cert);
    sgmq_cert_destroy (&server);
    return raw;
}

static s_raw_t *
s_raw_new (s_fixture_t *f, const char *cert_path)
{
    s_raw_t *raw = s_raw_open (f, cert_path, 0);
    s_raw_hello (raw);
    return raw;
}

static void
s_raw_destroy (s_raw_t **raw_p)
{
    s_raw_t *raw = *raw_p;
    if (!raw)
        return;
    zsock_destroy (&raw->sock);
    sgmq_proto_frame_destroy (&raw->frame);
    sgmq_proto_writer_destroy (&raw->writer);
    free (raw);
    *raw_p = NULL;
}

//  Send `data` (if any), then a PING as a barrier: collect every answer
//  that comes before its PONG. The broker answers frame and decoding
//  errors at once, and PONG at the end of its turn, so whatever `data`
//  caused is in the list. A session the frame ended (a BYE) is opened
//  again. Returns the number of answers.
static size_t
s_raw_exchange (s_raw_t *raw, const void *data, size_t size, s_ans_t *out, size_t max)
{
    if (data)
        s_raw_send (raw, data, size);
    sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = ++raw->barrier };
    s_raw_send_cmd (raw, &ping);
    int64_t deadline = testutil_now_ms () + testutil_ms (S_ANSWER_MS);
    size_t count = 0;
    const sgmq_cmd_t *cmd;
    while (true) {
        if (s_raw_next (raw, deadline, &cmd))
            fail_msg ("no PONG to the barrier %llu", (unsigned long long) ping.id);
        if (cmd->id == ping.id) {
            if (cmd->cmd == SGMQ_CMD_ERROR && cmd->u.error.code == SGMQ_E_BAD_REQUEST)
                s_raw_hello (raw);
            else
                assert_int_equal (cmd->cmd, SGMQ_CMD_PONG);
            return count;
        }
        if (cmd->cmd == SGMQ_CMD_DELIVER)
            continue;
        if (count < max)
            s_ans_copy (&out [count], cmd);
        count++;
    }
}

//  Exactly one answer to `data`: an ERROR with this code and id (and
//  field, when given).
static void
s_expect_error (s_raw_t *raw, const char *label, const void *data, size_t size,
                uint32_t code, uint64_t id, const char *field)
{
    s_ans_t ans [8];
    size_t count = s_raw_exchange (raw, data, size, ans, 8);
    bool ok = count == 1 && ans [0].cmd == SGMQ_CMD_ERROR && ans [0].code == code
           && ans [0].id == id && (!field || strcmp (ans [0].field, field) == 0);
    printf ("    %-44s -> %s %u id=%llu field=%s%s\n", label,
            count ? sgmq_proto_cmd_name (ans [0].cmd) : "nothing", count ? ans [0].code : 0,
            count ? (unsigned long long) ans [0].id : 0ULL, count ? ans [0].field : "",
            ok ? "" : "   <-- WRONG");
    if (!ok)
        fail_msg ("%s: expected one ERROR %u id=%llu field=%s, got %zu answers (first: %s "
                  "%u id=%llu field=%s: %s)", label, code, (unsigned long long) id,
                  field ? field : "*", count,
                  count ? sgmq_proto_cmd_name (ans [0].cmd) : "-", count ? ans [0].code : 0,
                  count ? (unsigned long long) ans [0].id : 0ULL, count ? ans [0].field : "",
                  count ? ans [0].reason : "");
    //  The reference codec says the same of its own codes (405, 406,
    //  410-427); the others are the broker's decisions.
    if (code < SGMQ_E_UNKNOWN_COMMAND || code > SGMQ_E_DUPLICATE_FIELD)
        return;
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    sgmq_proto_error_t error;
    if (sgmq_proto_decode (frame, data, size, &error) == 0) {
        assert_true (sgmq_proto_count (frame) >= 1);
        assert_null (sgmq_proto_cmd (frame, 0, &error));
    }
    else
        s_frame_errors++;
    assert_int_equal (error.code, code);
    assert_int_equal (error.id, id);
    sgmq_proto_frame_destroy (&frame);
}

//  What the reference codec says about `data`: the errors the broker
//  must send, in order (id, code), and the ids of commands that decode
//  (the broker may refuse those on its own grounds). -1: the frame itself
//  is bad (one error).
typedef struct {
    size_t count;
    uint64_t id [SGMQ_PROTO_MAX_COMMANDS];
    uint32_t code [SGMQ_PROTO_MAX_COMMANDS];
    size_t valid_count;
    uint64_t valid [SGMQ_PROTO_MAX_COMMANDS];
    bool frame_bad;
} s_expect_t;

static void
s_expect_codec (const void *data, size_t size, s_expect_t *expect)
{
    static sgmq_proto_frame_t *frame;
    if (!frame)
        frame = sgmq_proto_frame_new ();
    memset (expect, 0, sizeof *expect);
    sgmq_proto_error_t error;
    if (sgmq_proto_decode (frame, data, size, &error)) {
        expect->frame_bad = true;
        expect->count = 1;
        expect->id [0] = 0;
        expect->code [0] = (uint32_t) error.code;
        return;
    }
    for (size_t i = 0; i < sgmq_proto_count (frame); i++) {
        const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, i, &error);
        if (cmd)
            expect->valid [expect->valid_count++] = cmd->id;
        else {
            expect->id [expect->count] = error.id;
            expect->code [expect->count++] = (uint32_t) error.code;
        }
    }
}

//  Ids of commands that decoded: the broker answers those after its
//  commit, which may be after the barrier, so their answers (a CONFIRM,
//  or an ERROR such as 409 or 425) may come during a later exchange.
static uint64_t s_valid_ids [4096];
static size_t s_valid_count;

static bool
s_valid_id (uint64_t id)
{
    for (size_t i = 0; i < s_valid_count; i++)
        if (s_valid_ids [i] == id)
            return true;
    return false;
}

//  Send `data` and check the broker's errors against the reference
//  codec's verdict. Returns true if the frame as a whole was bad.
static bool
s_expect_as_codec (s_raw_t *raw, const char *label, const void *data, size_t size)
{
    static s_expect_t expect;
    static s_ans_t ans [S_ANS_MAX];
    s_expect_codec (data, size, &expect);
    for (size_t v = 0; v < expect.valid_count; v++)
        if (!s_valid_id (expect.valid [v]) && s_valid_count < 4096)
            s_valid_ids [s_valid_count++] = expect.valid [v];
    size_t count = s_raw_exchange (raw, data, size, ans, S_ANS_MAX);
    assert_true (count <= S_ANS_MAX);
    size_t matched = 0;
    for (size_t i = 0; i < count; i++) {
        if (ans [i].cmd != SGMQ_CMD_ERROR)
            continue;           //  an answer to a command that decoded
        if (matched < expect.count && ans [i].id == expect.id [matched]
        &&  ans [i].code == expect.code [matched]) {
            matched++;
            continue;
        }
        if (!s_valid_id (ans [i].id))
            fail_msg ("%s: unexpected ERROR %u id=%llu (%s); the codec expects %zu errors, "
                      "%zu matched", label, ans [i].code, (unsigned long long) ans [i].id,
                      ans [i].reason, expect.count, matched);
    }
    if (matched != expect.count)
        fail_msg ("%s: %zu of %zu errors came (next expected: %u id=%llu)", label, matched,
                  expect.count, expect.code [matched],
                  (unsigned long long) expect.id [matched]);
    //  (A frame refused whole has exactly one error; anything else that
    //  came is a late answer to an earlier command that decoded.)
    s_frame_errors += expect.frame_bad;
    return expect.frame_bad;
}

//  --------------------------------------------------------------------------
//  Building frames by hand (msgpack-c)

typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} s_mp_t;

static void
s_mp_init (s_mp_t *m)
{
    msgpack_sbuffer_init (&m->sbuf);
    msgpack_packer_init (&m->pk, &m->sbuf, msgpack_sbuffer_write);
}

static void
s_mp_reset (s_mp_t *m)
{
    msgpack_sbuffer_clear (&m->sbuf);
}

static void
s_mp_destroy (s_mp_t *m)
{
    msgpack_sbuffer_destroy (&m->sbuf);
}

static void
s_mp_strn (s_mp_t *m, const char *s, size_t len)
{
    msgpack_pack_str (&m->pk, len);
    msgpack_pack_str_body (&m->pk, s, len);
}

static void
s_mp_str (s_mp_t *m, const char *s)
{
    s_mp_strn (m, s, strlen (s));
}

static void
s_mp_raw (s_mp_t *m, const void *data, size_t size)
{
    msgpack_sbuffer_write (&m->sbuf, data, size);
}

//  [ "SGMQ", 1, ... `commands` commands follow
static void
s_mp_frame (s_mp_t *m, uint32_t commands)
{
    msgpack_pack_array (&m->pk, 2 + commands);
    s_mp_str (m, "SGMQ");
    msgpack_pack_uint8 (&m->pk, 1);
}

//  [ name, id, { ... `entries` entries follow
static void
s_mp_cmd (s_mp_t *m, const char *name, uint64_t id, uint32_t entries)
{
    msgpack_pack_array (&m->pk, 3);
    s_mp_str (m, name);
    msgpack_pack_uint64 (&m->pk, id);
    msgpack_pack_map (&m->pk, entries);
}

//  One field of a hand-built body: a string, or a uint when `text` is NULL.
typedef struct {
    const char *key;
    const char *text;
    uint64_t number;
} s_kv_t;

static const s_kv_t s_esc_fields [] = {
    { "group", "exploitation", 0 },
    { "title", "Hand-built " S_MARKER, 0 },
    { "summary", "Built field by field. " S_MARKER, 0 },
    { "severity", "medium", 0 },
    { "requested", "A decision", 0 },
    { "respond_by", NULL, UINT64_C (4102444800000) },
};
#define S_ESC_FIELDS (sizeof s_esc_fields / sizeof s_esc_fields [0])

static void
s_mp_kv (s_mp_t *m, const s_kv_t *kv)
{
    s_mp_str (m, kv->key);
    if (kv->text)
        s_mp_str (m, kv->text);
    else
        msgpack_pack_uint64 (&m->pk, kv->number);
}

//  An escalation body map, without field `drop`, with field `dup` twice
//  and with an unknown field `extra` (each may be NULL).
static void
s_mp_esc_body (s_mp_t *m, const char *drop, const char *dup, const char *extra)
{
    uint32_t entries = (uint32_t) S_ESC_FIELDS - (drop != NULL) + (dup != NULL)
                     + (extra != NULL);
    msgpack_pack_map (&m->pk, entries);
    for (size_t i = 0; i < S_ESC_FIELDS; i++) {
        if (drop && strcmp (drop, s_esc_fields [i].key) == 0)
            continue;
        s_mp_kv (m, &s_esc_fields [i]);
        if (dup && strcmp (dup, s_esc_fields [i].key) == 0)
            s_mp_kv (m, &s_esc_fields [i]);
    }
    if (extra) {
        s_mp_str (m, extra);
        s_mp_str (m, "value " S_MARKER);
    }
}

//  A whole publish frame of an escalation, with the same knobs for the
//  publish map (`drop`, `dup`, `extra`) and for the body (`body_*`).
static void
s_mp_publish (s_mp_t *m, uint64_t id, const char *drop, const char *dup,
              const char *extra, const char *body_drop, const char *body_dup,
              const char *body_extra)
{
    static const char *keys [] = { "ref", "kind", "body" };
    s_mp_frame (m, 1);
    uint32_t entries = 3 - (drop != NULL) + (dup != NULL) + (extra != NULL);
    s_mp_cmd (m, "publish", id, entries);
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < 3; i++) {
            bool twice = dup && strcmp (dup, keys [i]) == 0;
            if ((drop && strcmp (drop, keys [i]) == 0) || (round == 1 && !twice))
                continue;
            s_mp_str (m, keys [i]);
            if (i == 0)
                s_mp_str (m, "hand-built-ref");
            else
            if (i == 1)
                s_mp_str (m, "escalation");
            else
                s_mp_esc_body (m, body_drop, body_dup, body_extra);
        }
    if (extra) {
        s_mp_str (m, extra);
        s_mp_str (m, "red");
    }
}

//  A valid frame of one command from the reference writer (caller frees).
static uint8_t *
s_frame_of (const sgmq_cmd_t *cmd, size_t *size)
{
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_proto_error_t error;
    if (sgmq_proto_write (writer, cmd, &error))
        fail_msg ("cannot write %s: %s", sgmq_proto_cmd_name (cmd->cmd), error.reason);
    *size = sgmq_proto_writer_size (writer);
    uint8_t *data = malloc (*size);
    memcpy (data, sgmq_proto_writer_data (writer), *size);
    sgmq_proto_writer_destroy (&writer);
    return data;
}

static const char *s_themes [] = { "neglect", "professional curiosity " S_MARKER };
static const char *s_recommendations [] = { "Record who lives in the home " S_MARKER };
static const char *s_groups [] = { "exploitation", "online-safety" };
static const char *s_actions [] = { "Circulate the protocol " S_MARKER, "Report back" };

static uint8_t *
s_publish_frame (uint64_t id, sgmq_kind_t kind, size_t *size)
{
    sgmq_cmd_t cmd = { .cmd = SGMQ_CMD_PUBLISH, .id = id };
    cmd.u.publish.ref = "walk-ref-0001";
    sgmq_body_t *body = &cmd.u.publish.body;
    if (kind == SGMQ_KIND_ESCALATION) {
        *body = s_escalation ("exploitation", "Walked " S_MARKER, "Walked. " S_MARKER);
        body->u.escalation.case_ref = "MACE-2026-014";
    }
    else
    if (kind == SGMQ_KIND_LEARNING) {
        body->kind = SGMQ_KIND_LEARNING;
        body->u.learning.review_type = SGMQ_REVIEW_CSPR;
        body->u.learning.review_ref = "CSPR-2026-03";
        body->u.learning.title = "Infant neglect " S_MARKER;
        body->u.learning.summary = "Learning from a review. " S_MARKER;
        body->u.learning.theme = (sgmq_strlist_t) { 2, s_themes };
        body->u.learning.recommendation = (sgmq_strlist_t) { 1, s_recommendations };
        body->u.learning.groups = (sgmq_strlist_t) { 2, s_groups };
        body->u.learning.session_by = UINT64_C (4102444800000);
    }
    else {
        body->kind = SGMQ_KIND_RESPONSE;
        body->u.response.to = 1;
        body->u.response.decision = "Agreed " S_MARKER;
        body->u.response.summary = "The Executive agrees. " S_MARKER;
        body->u.response.action = (sgmq_strlist_t) { 2, s_actions };
    }
    return s_frame_of (&cmd, size);
}

//  --------------------------------------------------------------------------
//  One element replaced: walk a frame's msgpack tree in pre-order.

typedef enum {
    S_ROLE_FRAME, S_ROLE_SIGNATURE, S_ROLE_VERSION, S_ROLE_COMMAND, S_ROLE_NAME,
    S_ROLE_ID, S_ROLE_BODY, S_ROLE_DEEP
} s_role_t;

static const char *s_role_names [] = {
    "frame", "signature", "version", "command", "name", "id", "body", "in body"
};

typedef struct {
    const msgpack_object *obj;
    s_role_t role;
} s_node_t;

#define S_NODES_MAX 512

static void
s_nodes (const msgpack_object *obj, s_role_t role, s_node_t *nodes, size_t *count)
{
    assert_true (*count < S_NODES_MAX);
    nodes [(*count)++] = (s_node_t) { obj, role };
    if (obj->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            s_role_t child = S_ROLE_DEEP;
            if (role == S_ROLE_FRAME)
                child = i == 0 ? S_ROLE_SIGNATURE : i == 1 ? S_ROLE_VERSION : S_ROLE_COMMAND;
            else
            if (role == S_ROLE_COMMAND)
                child = i == 0 ? S_ROLE_NAME : i == 1 ? S_ROLE_ID : S_ROLE_BODY;
            s_nodes (&obj->via.array.ptr [i], child, nodes, count);
        }
    else
    if (obj->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < obj->via.map.size; i++) {
            s_nodes (&obj->via.map.ptr [i].key, S_ROLE_DEEP, nodes, count);
            s_nodes (&obj->via.map.ptr [i].val, S_ROLE_DEEP, nodes, count);
        }
}

//  Pack `obj`, writing `with` (raw msgpack) in place of node `target`.
static void
s_pack_replaced (s_mp_t *m, const msgpack_object *obj, const msgpack_object *target,
                 const s_mp_t *with)
{
    if (obj == target) {
        s_mp_raw (m, with->sbuf.data, with->sbuf.size);
        return;
    }
    if (obj->type == MSGPACK_OBJECT_ARRAY) {
        msgpack_pack_array (&m->pk, obj->via.array.size);
        for (uint32_t i = 0; i < obj->via.array.size; i++)
            s_pack_replaced (m, &obj->via.array.ptr [i], target, with);
    }
    else
    if (obj->type == MSGPACK_OBJECT_MAP) {
        msgpack_pack_map (&m->pk, obj->via.map.size);
        for (uint32_t i = 0; i < obj->via.map.size; i++) {
            s_pack_replaced (m, &obj->via.map.ptr [i].key, target, with);
            s_pack_replaced (m, &obj->via.map.ptr [i].val, target, with);
        }
    }
    else
        msgpack_pack_object (&m->pk, *obj);
}

//  The value of `key` in map `map` (NULL if absent).
static const msgpack_object *
s_map_get (const msgpack_object *map, const char *key)
{
    assert_int_equal (map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key)
        &&  memcmp (k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

//  The node at a path in command 0's body map: "ref", "body.title",
//  "body.theme.1" (list item).
static const msgpack_object *
s_path (const msgpack_object *frame, const char *path)
{
    const msgpack_object *node = &frame->via.array.ptr [2].via.array.ptr [2];
    char copy [128];
    snprintf (copy, sizeof copy, "%s", path);
    char *save = NULL;
    for (char *part = strtok_r (copy, ".", &save); part; part = strtok_r (NULL, ".", &save)) {
        if (node->type == MSGPACK_OBJECT_ARRAY)
            node = &node->via.array.ptr [atoi (part)];
        else
            node = s_map_get (node, part);
        assert_non_null (node);
    }
    return node;
}

//  A valid frame, parsed for editing.
typedef struct {
    uint8_t *data;
    size_t size;
    msgpack_unpacked unpacked;
    const msgpack_object *root;
} s_tree_t;

static void
s_tree_init (s_tree_t *tree, uint8_t *data, size_t size)
{
    tree->data = data;
    tree->size = size;
    msgpack_unpacked_init (&tree->unpacked);
    size_t offset = 0;
    assert_int_equal (msgpack_unpack_next (&tree->unpacked, (const char *) data, size,
                                           &offset), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal (offset, size);
    tree->root = &tree->unpacked.data;
}

static void
s_tree_destroy (s_tree_t *tree)
{
    msgpack_unpacked_destroy (&tree->unpacked);
    free (tree->data);
}

//  The frame with the node at `path` replaced by `with`; the broker must
//  answer ERROR `code` with the command's id and field `field`.
static void
s_expect_replaced (s_raw_t *raw, s_tree_t *tree, const char *path, const s_mp_t *with,
                   uint32_t code, uint64_t id, const char *field, const char *label)
{
    s_mp_t m;
    s_mp_init (&m);
    s_pack_replaced (&m, tree->root, s_path (tree->root, path), with);
    s_expect_error (raw, label, m.sbuf.data, m.sbuf.size, code, id, field);
    s_mp_destroy (&m);
}

//  --------------------------------------------------------------------------
//  A seeded generator (xorshift64*): the same seed gives the same frames
//  on any libc.

static uint64_t s_rand_state;

static uint64_t
s_rand (void)
{
    s_rand_state ^= s_rand_state >> 12;
    s_rand_state ^= s_rand_state << 25;
    s_rand_state ^= s_rand_state >> 27;
    return s_rand_state * UINT64_C (2685821657736338717);
}

static size_t
s_rand_below (size_t n)
{
    return n ? (size_t) (s_rand () % n) : 0;
}

//  --------------------------------------------------------------------------
//  Setup

//  The value of `field = "..."` in a key or cert file (caller frees).
static char *
s_secret_of (const char *path, const char *field, size_t len)
{
    char *text = testutil_read_file (path, NULL);
    assert_non_null (text);
    char pattern [64];
    snprintf (pattern, sizeof pattern, "    %s = \"", field);
    char *at = strstr (text, pattern);
    assert_non_null (at);
    char *value = strndup (at + strlen (pattern), len);
    assert_int_equal (strlen (value), len);
    sodium_memzero (text, strlen (text));
    free (text);
    return value;
}

static int
s_setup (void **state)
{
    s_fixture_t *f = calloc (1, sizeof *f);
    //  Debug logging: every malformed frame gets a line, so the check that
    //  no bytes or secrets reach the log covers the most text. Redelivery
    //  is pushed out of the way of the canary's counting.
    f->e2e = e2e_new ("hostile", "sgmq/log-level", "debug",
                      "deadlines/redeliver-first", "1h", "deadlines/redeliver-max", "1h",
                      NULL);
    f->police = e2e_principal (f->e2e, "police.cert", "Police case system",
                               "Metropolitan Police", "publisher", "exploitation");
    f->exec1 = e2e_principal (f->e2e, "exec1.cert", "Executive member (police)",
                              "Metropolitan Police", "member", "executive");
    f->exec2 = e2e_principal (f->e2e, "exec2.cert", "Executive member (ICB)",
                              "Integrated Care Board", "member", "executive");
    f->many = e2e_principal (f->e2e, "many.cert", "Education forum member",
                             "A primary school", "member", "education-forum");
    f->vanisher = e2e_principal (f->e2e, "vanisher.cert", "Executive member (laptop)",
                                 "Children's Services", "member", "executive");
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    f->publisher = e2e_connect (f->e2e, f->police);
    f->receiver = e2e_connect (f->e2e, f->exec1);
    sgmq_error_t error;
    assert_int_equal (sgmq_client_subscribe (f->receiver, SGMQ_PROTO_MAX_WINDOW, NULL,
                                             &error), 0);
    s_canary (f, "start");
    f->rss_start_kb = s_rss_kb (f);
    printf ("    broker pid %d\n", (int) f->e2e->pid);
    s_print_memory (f, "at start");
    *state = f;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fixture_t *f = *state;
    sgmq_client_destroy (&f->publisher);
    sgmq_client_destroy (&f->receiver);
    e2e_destroy (&f->e2e);
    free (f->police);
    free (f->exec1);
    free (f->exec2);
    free (f->many);
    free (f->vanisher);
    free (f->flood_secrets);
    free (f);
    return 0;
}

//  --------------------------------------------------------------------------
//  Attacks on the frame

static void
test_frame_errors_are_answered_exactly (void **state)
{
    s_fixture_t *f = *state;
    s_raw_t *raw = s_raw_new (f, f->police);
    s_mp_t m;
    s_mp_init (&m);
    //  Seeded for the trailing garbage below.
    s_rand_state = 7;

    //  The frame as a whole: one ERROR, id 0.
    s_expect_error (raw, "empty frame", "", 0, SGMQ_E_TRUNCATED, 0, "frame");
    s_expect_error (raw, "0xc1 (never used)", "\xc1", 1, SGMQ_E_MALFORMED, 0, "frame");
    s_expect_error (raw, "a map, not an array", "\x80", 1, SGMQ_E_MALFORMED, 0, "frame");
    s_expect_error (raw, "a string, not an array", "\xa4SGMQ", 5, SGMQ_E_MALFORMED, 0,
                    "frame");
    s_expect_error (raw, "array of 3 holding 1", "\x93\xa4SGMQ", 6, SGMQ_E_TRUNCATED, 0,
                    "frame");
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ping", 1, 0);
    size_t ping_size = m.sbuf.size;
    uint8_t ping [64];
    memcpy (ping, m.sbuf.data, ping_size);
    memcpy (ping + ping_size, "\x00", 1);
    s_expect_error (raw, "a ping and one byte more", ping, ping_size + 1,
                    SGMQ_E_TRAILING, 0, "frame");
    memcpy (ping + ping_size, ping, ping_size);
    s_expect_error (raw, "two frames in one", ping, 2 * ping_size, SGMQ_E_TRAILING, 0,
                    "frame");

    s_mp_reset (&m);
    msgpack_pack_array (&m.pk, 3);
    s_mp_str (&m, "SGMX");
    msgpack_pack_uint8 (&m.pk, 1);
    s_mp_cmd (&m, "ping", 2, 0);
    s_expect_error (raw, "signature SGMX", m.sbuf.data, m.sbuf.size, SGMQ_E_SIGNATURE, 0,
                    "signature");
    s_mp_reset (&m);
    msgpack_pack_array (&m.pk, 3);
    msgpack_pack_bin (&m.pk, 4);
    msgpack_pack_bin_body (&m.pk, "SGMQ", 4);
    msgpack_pack_uint8 (&m.pk, 1);
    s_mp_cmd (&m, "ping", 2, 0);
    s_expect_error (raw, "signature as bin", m.sbuf.data, m.sbuf.size, SGMQ_E_SIGNATURE,
                    0, "signature");
    s_mp_reset (&m);
    msgpack_pack_array (&m.pk, 1);
    s_mp_str (&m, "SGMQ");
    s_expect_error (raw, "no version", m.sbuf.data, m.sbuf.size, SGMQ_E_MALFORMED, 0,
                    "version");
    s_mp_reset (&m);
    msgpack_pack_array (&m.pk, 3);
    s_mp_str (&m, "SGMQ");
    s_mp_str (&m, "1");
    s_mp_cmd (&m, "ping", 2, 0);
    s_expect_error (raw, "version \"1\"", m.sbuf.data, m.sbuf.size, SGMQ_E_MALFORMED, 0,
                    "version");
    s_mp_reset (&m);
    msgpack_pack_array (&m.pk, 3);
    s_mp_str (&m, "SGMQ");
    msgpack_pack_uint8 (&m.pk, 2);
    s_mp_cmd (&m, "ping", 2, 0);
    s_expect_error (raw, "version 2", m.sbuf.data, m.sbuf.size, SGMQ_E_BAD_VERSION, 0,
                    "version");
    s_mp_reset (&m);
    s_mp_frame (&m, 0);
    s_expect_error (raw, "no command", m.sbuf.data, m.sbuf.size, SGMQ_E_MALFORMED, 0,
                    "frame");
    s_mp_reset (&m);
    s_mp_frame (&m, SGMQ_PROTO_MAX_COMMANDS + 1);
    for (uint32_t i = 0; i <= SGMQ_PROTO_MAX_COMMANDS; i++)
        s_mp_cmd (&m, "ping", i + 1, 0);
    s_expect_error (raw, "1025 commands", m.sbuf.data, m.sbuf.size, SGMQ_E_TOO_MANY, 0,
                    "frame");

    //  Nesting: six levels are the protocol's; seven are refused whole.
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ping", 3, 1);
    s_mp_str (&m, "x");
    msgpack_pack_array (&m.pk, 1);
    msgpack_pack_array (&m.pk, 1);
    msgpack_pack_array (&m.pk, 0);
    s_expect_error (raw, "depth 6 (an unknown key)", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_UNKNOWN_FIELD, 3, "x");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ping", 3, 1);
    s_mp_str (&m, "x");
    msgpack_pack_array (&m.pk, 1);
    msgpack_pack_array (&m.pk, 1);
    msgpack_pack_array (&m.pk, 1);
    msgpack_pack_array (&m.pk, 0);
    s_expect_error (raw, "depth 7", m.sbuf.data, m.sbuf.size, SGMQ_E_TOO_DEEP, 0, "frame");
    //  100,000 nested arrays: refused at the seventh, without recursion.
    size_t deep = 100000;
    uint8_t *nested = malloc (deep + 1);
    memset (nested, 0x91, deep);
    nested [deep] = 0x90;
    s_expect_error (raw, "depth 100000", nested, deep + 1, SGMQ_E_TOO_DEEP, 0, "frame");
    free (nested);

    //  Huge declared counts: more than the bytes that follow.
    s_expect_error (raw, "array32 of 4G elements", "\xdd\xff\xff\xff\xff\xa4SGMQ\x01", 11,
                    SGMQ_E_TRUNCATED, 0, "frame");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    msgpack_pack_array (&m.pk, 3);
    s_mp_str (&m, "publish");
    msgpack_pack_uint8 (&m.pk, 4);
    s_mp_raw (&m, "\xdf\xff\xff\xff\xff\xa3ref", 9);
    s_expect_error (raw, "map32 of 4G entries", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_TRUNCATED, 0, "frame");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "publish", 5, 1);
    s_mp_str (&m, "ref");
    s_mp_raw (&m, "\xdb\xff\xff\xff\xf0" S_MARKER, 5 + strlen (S_MARKER));
    s_expect_error (raw, "str32 of 4G bytes", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_TRUNCATED, 0, "frame");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "publish", 5, 1);
    s_mp_str (&m, "ref");
    s_mp_raw (&m, "\xc6\x7f\xff\xff\xff\x00", 6);
    s_expect_error (raw, "bin32 of 2G bytes", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_TRUNCATED, 0, "frame");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "publish", 5, 1);
    s_mp_str (&m, "ref");
    s_mp_raw (&m, "\xc1", 1);
    s_expect_error (raw, "0xc1 inside a body", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MALFORMED, 0, "frame");

    //  A multipart message: one ERROR 410, none of its parts processed.
    zmq_send (zsock_resolve (raw->sock), ping, ping_size, ZMQ_SNDMORE);
    s_ans_t ans [4];
    size_t count = s_raw_exchange (raw, ping, ping_size, ans, 4);
    assert_int_equal (count, 1);
    assert_int_equal (ans [0].cmd, SGMQ_CMD_ERROR);
    assert_int_equal (ans [0].code, SGMQ_E_MALFORMED);
    assert_int_equal (ans [0].id, 0);
    printf ("    %-44s -> ERROR 410 id=0\n", "multipart (two pings)");

    //  Truncations of a valid publish at every length: 411, id 0.
    size_t size;
    uint8_t *valid = s_publish_frame (41, SGMQ_KIND_ESCALATION, &size);
    for (size_t len = 0; len < size; len++) {
        count = s_raw_exchange (raw, valid, len, ans, 4);
        if (count != 1 || ans [0].code != SGMQ_E_TRUNCATED || ans [0].id != 0)
            fail_msg ("truncated to %zu of %zu bytes: %zu answers, first %u id=%llu",
                      len, size, count, count ? ans [0].code : 0,
                      count ? (unsigned long long) ans [0].id : 0ULL);
        s_frame_errors++;
    }
    printf ("    %-44s -> ERROR 411 id=0 each\n", "every truncation of a publish");
    //  Trailing garbage after a valid publish: 412, and nothing stored.
    uint8_t *longer = malloc (size + 64);
    memcpy (longer, valid, size);
    for (size_t extra = 1; extra <= 64; extra++) {
        for (size_t i = 0; i < extra; i++)
            longer [size + i] = (uint8_t) s_rand ();
        count = s_raw_exchange (raw, longer, size + extra, ans, 4);
        if (count != 1 || ans [0].code != SGMQ_E_TRAILING || ans [0].id != 0)
            fail_msg ("publish + %zu bytes: %zu answers, first %u", extra, count,
                      count ? ans [0].code : 0);
        s_frame_errors++;
    }
    printf ("    %-44s -> ERROR 412 id=0 each\n", "a publish + 1..64 bytes of garbage");
    free (longer);
    free (valid);
    s_mp_destroy (&m);
    s_raw_destroy (&raw);
    s_canary (f, "frame-level errors");
}

static void
test_command_errors_carry_the_command_id (void **state)
{
    s_fixture_t *f = *state;
    s_raw_t *raw = s_raw_new (f, f->police);
    s_mp_t m, with;
    s_mp_init (&m);
    s_mp_init (&with);

    //  The command itself.
    s_mp_frame (&m, 1);
    s_mp_str (&m, "ping");
    s_expect_error (raw, "command is a string", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MALFORMED, 0, "command");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    msgpack_pack_array (&m.pk, 2);
    s_mp_str (&m, "ping");
    msgpack_pack_uint8 (&m.pk, 51);
    s_expect_error (raw, "command of 2 elements", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MALFORMED, 51, "command");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    msgpack_pack_array (&m.pk, 4);
    s_mp_str (&m, "ping");
    msgpack_pack_uint8 (&m.pk, 52);
    msgpack_pack_map (&m.pk, 0);
    msgpack_pack_nil (&m.pk);
    s_expect_error (raw, "command of 4 elements", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MALFORMED, 52, "command");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    msgpack_pack_array (&m.pk, 3);
    msgpack_pack_uint8 (&m.pk, 7);
    msgpack_pack_uint8 (&m.pk, 53);
    msgpack_pack_map (&m.pk, 0);
    s_expect_error (raw, "name is a number", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_WRONG_TYPE, 53, "name");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "subscribe-all-" S_MARKER, 54, 0);
    s_expect_error (raw, "unknown command", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_UNKNOWN_COMMAND, 54, "name");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "PING", 55, 0);
    s_expect_error (raw, "PING in capitals", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_UNKNOWN_COMMAND, 55, "name");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    msgpack_pack_array (&m.pk, 3);
    s_mp_str (&m, "ping");
    s_mp_str (&m, "56");
    msgpack_pack_map (&m.pk, 0);
    s_expect_error (raw, "id is a string", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_WRONG_TYPE, 0, "id");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    msgpack_pack_array (&m.pk, 3);
    s_mp_str (&m, "ping");
    msgpack_pack_int8 (&m.pk, -1);
    msgpack_pack_map (&m.pk, 0);
    s_expect_error (raw, "id is -1", m.sbuf.data, m.sbuf.size, SGMQ_E_WRONG_TYPE, 0, "id");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    msgpack_pack_array (&m.pk, 3);
    s_mp_str (&m, "ping");
    msgpack_pack_uint8 (&m.pk, 57);
    msgpack_pack_array (&m.pk, 0);
    s_expect_error (raw, "body is a list", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_WRONG_TYPE, 57, "body");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ping", UINT64_MAX, 1);
    s_mp_str (&m, "x");
    msgpack_pack_uint8 (&m.pk, 1);
    s_expect_error (raw, "ping with a key, id 2^64-1", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_UNKNOWN_FIELD, UINT64_MAX, "x");

    //  Each field of a publish, and of its body.
    s_mp_reset (&m);
    s_mp_publish (&m, 60, "ref", NULL, NULL, NULL, NULL, NULL);
    s_expect_error (raw, "publish without ref", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MISSING_FIELD, 60, "ref");
    s_mp_reset (&m);
    s_mp_publish (&m, 61, "body", NULL, NULL, NULL, NULL, NULL);
    s_expect_error (raw, "publish without body", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MISSING_FIELD, 61, "body");
    s_mp_reset (&m);
    s_mp_publish (&m, 62, NULL, "ref", NULL, NULL, NULL, NULL);
    s_expect_error (raw, "publish with ref twice", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_DUPLICATE_FIELD, 62, "ref");
    s_mp_reset (&m);
    s_mp_publish (&m, 63, NULL, NULL, "colour", NULL, NULL, NULL);
    s_expect_error (raw, "publish with an unknown field", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_UNKNOWN_FIELD, 63, "colour");
    s_mp_reset (&m);
    s_mp_publish (&m, 64, NULL, NULL, NULL, "title", NULL, NULL);
    s_expect_error (raw, "escalation without title", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MISSING_FIELD, 64, "body.title");
    s_mp_reset (&m);
    s_mp_publish (&m, 65, NULL, NULL, NULL, "respond_by", NULL, NULL);
    s_expect_error (raw, "escalation without respond_by", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MISSING_FIELD, 65, "body.respond_by");
    s_mp_reset (&m);
    s_mp_publish (&m, 66, NULL, NULL, NULL, NULL, "severity", NULL);
    s_expect_error (raw, "escalation with severity twice", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_DUPLICATE_FIELD, 66, "body.severity");
    s_mp_reset (&m);
    s_mp_publish (&m, 67, NULL, NULL, NULL, NULL, NULL, "child_name");
    s_expect_error (raw, "escalation with an unknown field", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_UNKNOWN_FIELD, 67, "body.child_name");
    //  A map of 25 entries is refused before any key is read.
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ping", 68, SGMQ_PROTO_MAX_FIELDS + 1);
    for (int i = 0; i <= SGMQ_PROTO_MAX_FIELDS; i++) {
        char key [16];
        snprintf (key, sizeof key, "k%d", i);
        s_mp_str (&m, key);
        msgpack_pack_nil (&m.pk);
    }
    s_expect_error (raw, "a map of 25 entries", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_TOO_MANY, 68, NULL);

    //  Values, replaced one at a time in valid frames.
    size_t size;
    s_tree_t esc, learning, response;
    uint8_t *data = s_publish_frame (70, SGMQ_KIND_ESCALATION, &size);
    s_tree_init (&esc, data, size);
    data = s_publish_frame (71, SGMQ_KIND_LEARNING, &size);
    s_tree_init (&learning, data, size);
    data = s_publish_frame (72, SGMQ_KIND_RESPONSE, &size);
    s_tree_init (&response, data, size);

    char text [SGMQ_PROTO_MAX_TEXT + 2];
    memset (text, 'a', sizeof text);
    s_mp_reset (&with);
    msgpack_pack_uint8 (&with.pk, 7);
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_WRONG_TYPE, 70, "ref", "ref is 7");
    s_mp_reset (&with);
    s_mp_strn (&with, text, SGMQ_PROTO_MAX_NAME + 1);
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_TOO_LONG, 70, "ref", "ref of 65 bytes");
    s_mp_reset (&with);
    s_mp_strn (&with, "ref-\xff\xfe", 6);
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_BAD_UTF8, 70, "ref", "ref not UTF-8");
    s_mp_reset (&with);
    s_mp_strn (&with, "ref\0nul", 7);
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_BAD_UTF8, 70, "ref", "ref holds NUL");
    s_mp_reset (&with);
    s_mp_strn (&with, "\xed\xa0\x80", 3);
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_BAD_UTF8, 70, "ref",
                       "ref is a surrogate");
    s_mp_reset (&with);
    s_mp_strn (&with, "\xc0\xaf", 2);
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_BAD_UTF8, 70, "ref",
                       "ref is an overlong '/'");
    s_mp_reset (&with);
    s_mp_str (&with, "ref\x01");
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_BAD_VALUE, 70, "ref",
                       "ref holds a control");
    s_mp_reset (&with);
    s_mp_str (&with, "");
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_BAD_VALUE, 70, "ref", "ref is empty");
    s_mp_reset (&with);
    s_mp_raw (&with, "\xd4\x01\x00", 3);
    s_expect_replaced (raw, &esc, "ref", &with, SGMQ_E_WRONG_TYPE, 70, "ref",
                       "ref is an extension");
    s_mp_reset (&with);
    s_mp_str (&with, "gossip");
    s_expect_replaced (raw, &esc, "kind", &with, SGMQ_E_UNKNOWN_KIND, 70, "kind",
                       "kind gossip");
    s_mp_reset (&with);
    s_mp_str (&with, "Escalation");
    s_expect_replaced (raw, &esc, "kind", &with, SGMQ_E_UNKNOWN_KIND, 70, "kind",
                       "kind Escalation");
    s_mp_reset (&with);
    s_mp_strn (&with, text, SGMQ_PROTO_MAX_TITLE + 1);
    s_expect_replaced (raw, &esc, "body.title", &with, SGMQ_E_TOO_LONG, 70, "body.title",
                       "title of 201 bytes");
    s_mp_reset (&with);
    s_mp_strn (&with, text, SGMQ_PROTO_MAX_TEXT + 1);
    s_expect_replaced (raw, &esc, "body.summary", &with, SGMQ_E_TOO_LONG, 70,
                       "body.summary", "summary of 4001 bytes");
    s_mp_reset (&with);
    s_mp_str (&with, "Line one\tand\r\ntwo\x07");
    s_expect_replaced (raw, &esc, "body.summary", &with, SGMQ_E_BAD_VALUE, 70,
                       "body.summary", "summary holds BEL");
    s_mp_reset (&with);
    s_mp_str (&with, "tab\tin a title");
    s_expect_replaced (raw, &esc, "body.title", &with, SGMQ_E_BAD_VALUE, 70, "body.title",
                       "title holds TAB");
    s_mp_reset (&with);
    s_mp_str (&with, "extreme");
    s_expect_replaced (raw, &esc, "body.severity", &with, SGMQ_E_BAD_VALUE, 70,
                       "body.severity", "severity extreme");
    s_mp_reset (&with);
    msgpack_pack_uint8 (&with.pk, 0);
    s_expect_replaced (raw, &esc, "body.respond_by", &with, SGMQ_E_BAD_VALUE, 70,
                       "body.respond_by", "respond_by 0");
    s_mp_reset (&with);
    msgpack_pack_int64 (&with.pk, -86400000);
    s_expect_replaced (raw, &esc, "body.respond_by", &with, SGMQ_E_WRONG_TYPE, 70,
                       "body.respond_by", "respond_by negative");
    s_mp_reset (&with);
    msgpack_pack_double (&with.pk, 4102444800000.0);
    s_expect_replaced (raw, &esc, "body.respond_by", &with, SGMQ_E_WRONG_TYPE, 70,
                       "body.respond_by", "respond_by a float");
    s_mp_reset (&with);
    s_mp_str (&with, "4102444800000");
    s_expect_replaced (raw, &esc, "body.respond_by", &with, SGMQ_E_WRONG_TYPE, 70,
                       "body.respond_by", "respond_by a string");
    //  Nested lists.
    s_mp_reset (&with);
    msgpack_pack_array (&with.pk, SGMQ_PROTO_MAX_LIST + 1);
    for (int i = 0; i <= SGMQ_PROTO_MAX_LIST; i++)
        s_mp_str (&with, "neglect");
    s_expect_replaced (raw, &learning, "body.theme", &with, SGMQ_E_TOO_MANY, 71,
                       "body.theme", "33 themes");
    s_mp_reset (&with);
    msgpack_pack_array (&with.pk, 0);
    s_expect_replaced (raw, &learning, "body.theme", &with, SGMQ_E_BAD_VALUE, 71,
                       "body.theme", "no theme");
    s_mp_reset (&with);
    msgpack_pack_uint8 (&with.pk, 7);
    s_expect_replaced (raw, &learning, "body.theme.1", &with, SGMQ_E_WRONG_TYPE, 71,
                       "body.theme[1]", "theme[1] is 7");
    s_mp_reset (&with);
    msgpack_pack_array (&with.pk, 1);
    s_mp_str (&with, "nested");
    s_expect_replaced (raw, &learning, "body.theme.1", &with, SGMQ_E_WRONG_TYPE, 71,
                       "body.theme[1]", "theme[1] is a list");
    s_mp_reset (&with);
    s_mp_strn (&with, text, SGMQ_PROTO_MAX_THEME + 1);
    s_expect_replaced (raw, &learning, "body.theme.0", &with, SGMQ_E_TOO_LONG, 71,
                       "body.theme[0]", "theme[0] of 101 bytes");
    s_mp_reset (&with);
    s_mp_strn (&with, "online-\xe2\x82", 9);
    s_expect_replaced (raw, &learning, "body.groups.1", &with, SGMQ_E_BAD_UTF8, 71,
                       "body.groups[1]", "groups[1] cut mid-character");
    s_mp_reset (&with);
    msgpack_pack_array (&with.pk, SGMQ_PROTO_MAX_GROUPS + 1);
    for (int i = 0; i <= SGMQ_PROTO_MAX_GROUPS; i++)
        s_mp_str (&with, "executive");
    s_expect_replaced (raw, &learning, "body.groups", &with, SGMQ_E_TOO_MANY, 71,
                       "body.groups", "17 groups");
    s_mp_reset (&with);
    s_mp_str (&with, "inquest");
    s_expect_replaced (raw, &learning, "body.review_type", &with, SGMQ_E_BAD_VALUE, 71,
                       "body.review_type", "review_type inquest");
    s_mp_reset (&with);
    s_mp_strn (&with, text, SGMQ_PROTO_MAX_ITEM + 1);
    s_expect_replaced (raw, &response, "body.action.0", &with, SGMQ_E_TOO_LONG, 72,
                       "body.action[0]", "action[0] of 1001 bytes");
    s_mp_reset (&with);
    msgpack_pack_map (&with.pk, 0);
    s_expect_replaced (raw, &response, "body.action.1", &with, SGMQ_E_WRONG_TYPE, 72,
                       "body.action[1]", "action[1] is a map");
    s_mp_reset (&with);
    msgpack_pack_uint8 (&with.pk, 0);
    s_expect_replaced (raw, &response, "body.to", &with, SGMQ_E_BAD_VALUE, 72, "body.to",
                       "response to 0");

    //  Other commands' fields.
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "subscribe", 80, 1);
    s_mp_str (&m, "window");
    msgpack_pack_uint16 (&m.pk, SGMQ_PROTO_MAX_WINDOW + 1);
    s_expect_error (raw, "window 10001", m.sbuf.data, m.sbuf.size, SGMQ_E_BAD_VALUE, 80,
                    "window");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ack", 81, 0);
    s_expect_error (raw, "ack without seq", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_MISSING_FIELD, 81, "seq");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ack", 82, 1);
    s_mp_str (&m, "seq");
    msgpack_pack_true (&m.pk);
    s_expect_error (raw, "ack seq true", m.sbuf.data, m.sbuf.size, SGMQ_E_WRONG_TYPE, 82,
                    "seq");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "pending", 83, 1);
    s_mp_str (&m, "scope");
    s_mp_str (&m, "everyone");
    s_expect_error (raw, "pending scope everyone", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_BAD_VALUE, 83, "scope");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "pending", 84, 2);
    s_mp_str (&m, "scope");
    s_mp_str (&m, "mine");
    s_mp_str (&m, "overdue");
    msgpack_pack_uint8 (&m.pk, 1);
    s_expect_error (raw, "pending overdue 1 (not a bool)", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_WRONG_TYPE, 84, "overdue");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "replay", 85, 1);
    s_mp_str (&m, "group");
    s_mp_strn (&m, text, SGMQ_PROTO_MAX_NAME + 1);
    s_expect_error (raw, "replay group of 65 bytes", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_TOO_LONG, 85, "group");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "hello", 86, 1);
    s_mp_str (&m, "client");
    s_mp_str (&m, "sgmq\x1b[31m");
    s_expect_error (raw, "hello client with ESC", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_BAD_VALUE, 86, "client");
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "pong", 87, 0);
    s_expect_error (raw, "pong (the broker's to send)", m.sbuf.data, m.sbuf.size,
                    SGMQ_E_BAD_REQUEST, 87, NULL);

    //  One bad command among good ones: each answered, in order.
    s_mp_reset (&m);
    s_mp_frame (&m, 4);
    s_mp_cmd (&m, "ping", 91, 0);
    s_mp_cmd (&m, "ping", 92, 1);
    s_mp_str (&m, "x");
    msgpack_pack_nil (&m.pk);
    s_mp_cmd (&m, "frobnicate", 93, 0);
    s_mp_cmd (&m, "ping", 94, 0);
    s_ans_t ans [8];
    size_t count = s_raw_exchange (raw, m.sbuf.data, m.sbuf.size, ans, 8);
    assert_int_equal (count, 4);
    size_t pongs = 0, errors = 0;
    for (size_t i = 0; i < count; i++) {
        if (ans [i].cmd == SGMQ_CMD_PONG) {
            assert_true (ans [i].id == 91 || ans [i].id == 94);
            pongs++;
        }
        else {
            assert_int_equal (ans [i].cmd, SGMQ_CMD_ERROR);
            assert_true ((ans [i].id == 92 && ans [i].code == SGMQ_E_UNKNOWN_FIELD)
                      || (ans [i].id == 93 && ans [i].code == SGMQ_E_UNKNOWN_COMMAND));
            errors++;
        }
    }
    assert_int_equal (pongs, 2);
    assert_int_equal (errors, 2);
    printf ("    %-44s -> PONG 91, ERROR 92 and 93, PONG 94\n", "ping, bad, unknown, ping");
    //  1,024 commands: every one answered.
    s_mp_reset (&m);
    s_mp_frame (&m, SGMQ_PROTO_MAX_COMMANDS);
    for (uint32_t i = 0; i < SGMQ_PROTO_MAX_COMMANDS; i++)
        s_mp_cmd (&m, "ping", 1000 + i, 0);
    static s_ans_t many [S_ANS_MAX];
    count = s_raw_exchange (raw, m.sbuf.data, m.sbuf.size, many, S_ANS_MAX);
    assert_int_equal (count, SGMQ_PROTO_MAX_COMMANDS);
    for (size_t i = 0; i < count; i++)
        assert_int_equal (many [i].cmd, SGMQ_CMD_PONG);
    printf ("    %-44s -> 1024 PONGs\n", "1024 pings in one frame");

    //  Before HELLO: valid commands get 400, bad frames their own error.
    s_raw_t *fresh = s_raw_open (f, f->police, 0);
    s_mp_reset (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ack", 95, 1);
    s_mp_str (&m, "seq");
    msgpack_pack_uint8 (&m.pk, 1);
    s_ans_t one;
    s_raw_send (fresh, m.sbuf.data, m.sbuf.size);
    s_raw_answer (fresh, 95, &one);
    assert_int_equal (one.cmd, SGMQ_CMD_ERROR);
    assert_int_equal (one.code, SGMQ_E_BAD_REQUEST);
    s_raw_send (fresh, "\x93", 1);
    s_raw_answer (fresh, 0, &one);
    assert_int_equal (one.code, SGMQ_E_TRUNCATED);
    s_frame_errors++;
    s_raw_destroy (&fresh);

    s_tree_destroy (&esc);
    s_tree_destroy (&learning);
    s_tree_destroy (&response);
    s_mp_destroy (&m);
    s_mp_destroy (&with);
    s_raw_destroy (&raw);
    s_canary (f, "command-level errors");
}

//  Every element of valid frames, replaced by each value of the wrong
//  type: the error the position calls for, and the reference codec's.
static void
test_every_position_corrupted (void **state)
{
    s_fixture_t *f = *state;
    s_raw_t *raw = s_raw_new (f, f->police);
    sgmq_cmd_t pending = { .cmd = SGMQ_CMD_PENDING, .id = 33 };
    pending.u.pending.scope = SGMQ_SCOPE_PUBLISHED;
    pending.u.pending.overdue = true;
    pending.u.pending.limit = 10;
    sgmq_cmd_t ack = { .cmd = SGMQ_CMD_ACK, .id = 34 };
    ack.u.ack.seq = 1;
    size_t sizes [5];
    uint8_t *frames [5] = {
        s_publish_frame (30, SGMQ_KIND_ESCALATION, &sizes [0]),
        s_publish_frame (31, SGMQ_KIND_LEARNING, &sizes [1]),
        s_publish_frame (32, SGMQ_KIND_RESPONSE, &sizes [2]),
        s_frame_of (&pending, &sizes [3]),
        s_frame_of (&ack, &sizes [4]),
    };
    //  Wrong-type values: nil, -1, a bin, true, a float.
    s_mp_t values [5];
    for (int v = 0; v < 5; v++)
        s_mp_init (&values [v]);
    msgpack_pack_nil (&values [0].pk);
    msgpack_pack_int8 (&values [1].pk, -1);
    msgpack_pack_bin (&values [2].pk, 1);
    msgpack_pack_bin_body (&values [2].pk, "x", 1);
    msgpack_pack_true (&values [3].pk);
    msgpack_pack_double (&values [4].pk, 1.5);
    const msgpack_object_type types [5] = {
        MSGPACK_OBJECT_NIL, MSGPACK_OBJECT_NEGATIVE_INTEGER, MSGPACK_OBJECT_BIN,
        MSGPACK_OBJECT_BOOLEAN, MSGPACK_OBJECT_FLOAT64
    };
    size_t checked = 0, by_code [600] = { 0 };
    for (int i = 0; i < 5; i++) {
        s_tree_t tree;
        s_tree_init (&tree, frames [i], sizes [i]);
        uint64_t id = tree.root->via.array.ptr [2].via.array.ptr [1].via.u64;
        static s_node_t nodes [S_NODES_MAX];
        size_t count = 0;
        s_nodes (tree.root, S_ROLE_FRAME, nodes, &count);
        for (size_t n = 0; n < count; n++)
            for (int v = 0; v < 5; v++) {
                if (nodes [n].obj->type == types [v])
                    continue;       //  not a corruption
                s_role_t role = nodes [n].role;
                uint32_t code = role == S_ROLE_FRAME || role == S_ROLE_VERSION
                             || role == S_ROLE_COMMAND ? SGMQ_E_MALFORMED
                              : role == S_ROLE_SIGNATURE ? SGMQ_E_SIGNATURE
                              : SGMQ_E_WRONG_TYPE;
                uint64_t expect_id = role <= S_ROLE_COMMAND || role == S_ROLE_ID ? 0 : id;
                s_mp_t m;
                s_mp_init (&m);
                s_pack_replaced (&m, tree.root, nodes [n].obj, &values [v]);
                s_ans_t ans [4];
                size_t got = s_raw_exchange (raw, m.sbuf.data, m.sbuf.size, ans, 4);
                s_expect_t expect;
                s_expect_codec (m.sbuf.data, m.sbuf.size, &expect);
                if (got != 1 || ans [0].code != code || ans [0].id != expect_id
                ||  expect.count != 1 || expect.code [0] != code || expect.id [0] != expect_id)
                    fail_msg ("frame %d node %zu (%s) := value %d: expected ERROR %u id=%llu; "
                              "broker: %zu answers, first %u id=%llu (%s); codec %u id=%llu",
                              i, n, s_role_names [role], v, code,
                              (unsigned long long) expect_id, got, got ? ans [0].code : 0,
                              got ? (unsigned long long) ans [0].id : 0ULL,
                              got ? ans [0].reason : "",
                              expect.count ? expect.code [0] : 0,
                              expect.count ? (unsigned long long) expect.id [0] : 0ULL);
                s_frame_errors += expect.frame_bad;
                by_code [code]++;
                checked++;
                s_mp_destroy (&m);
            }
        s_tree_destroy (&tree);
    }
    printf ("    %zu corrupted frames: %zu x 410, %zu x 413, %zu x 421, each as expected\n",
            checked, by_code [410], by_code [413], by_code [421]);
    for (int v = 0; v < 5; v++)
        s_mp_destroy (&values [v]);
    s_raw_destroy (&raw);
    s_canary (f, "every position corrupted");
}

static void
test_random_bytes (void **state)
{
    s_fixture_t *f = *state;
    uint64_t seed = getenv ("SGMQ_HOSTILE_SEED")
                  ? strtoull (getenv ("SGMQ_HOSTILE_SEED"), NULL, 0)
                  : (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 32);
    if (!seed)
        seed = 1;
    s_rand_state = seed;
    printf ("    random frames: seed %llu (SGMQ_HOSTILE_SEED=%llu replays it)\n",
            (unsigned long long) seed, (unsigned long long) seed);
    s_raw_t *raw = s_raw_new (f, f->police);
    size_t size;
    uint8_t *valid = s_publish_frame (20, SGMQ_KIND_ESCALATION, &size);
    uint8_t *buffer = malloc (S_RANDOM_MAX + size);
    size_t bad_frames = 0, kinds [3] = { 0 };
    for (int i = 0; i < S_RANDOM_FRAMES; i++) {
        size_t len = s_rand_below (S_RANDOM_MAX + 1);
        int kind = (int) s_rand_below (3);
        for (size_t b = 0; b < len; b++)
            buffer [b] = (uint8_t) s_rand ();
        if (kind == 1 && len >= 7)
            //  A valid preamble, then noise: the commands' decoder is hit.
            memcpy (buffer, "\x93\xa4SGMQ\x01", 7);
        else
        if (kind == 2) {
            //  A valid publish with a few bytes flipped.
            len = size;
            memcpy (buffer, valid, size);
            for (size_t flips = 1 + s_rand_below (8); flips; flips--)
                buffer [s_rand_below (size)] ^= (uint8_t) (1 + s_rand_below (255));
        }
        kinds [kind]++;
        char label [64];
        snprintf (label, sizeof label, "random frame %d (%zu bytes)", i, len);
        bad_frames += s_expect_as_codec (raw, label, buffer, len);
        //  The canary, now and then, during the attack.
        if (i % 1000 == 999) {
            char when [64];
            snprintf (when, sizeof when, "%d random frames", i + 1);
            s_canary (f, when);
        }
    }
    printf ("    %d random frames (%zu noise, %zu preamble + noise, %zu flipped publishes): "
            "%zu refused whole, every answer as the codec says\n", S_RANDOM_FRAMES,
            kinds [0], kinds [1], kinds [2], bad_frames);
    free (buffer);
    free (valid);
    s_raw_destroy (&raw);
    s_canary (f, "random bytes");
}

//  --------------------------------------------------------------------------
//  Frames over the maximum size

//  True if the raw socket's connection was replaced (a new connection has
//  no session: PING gets 400).
static bool
s_connection_lost (s_raw_t *raw)
{
    int64_t deadline = testutil_now_ms () + testutil_ms (S_ANSWER_MS);
    while (testutil_now_ms () < deadline) {
        sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = ++raw->barrier };
        s_raw_send_cmd (raw, &ping);
        const sgmq_cmd_t *cmd;
        int64_t wait = testutil_now_ms () + 300;
        while (s_raw_next (raw, wait, &cmd) == 0)
            if (cmd->cmd == SGMQ_CMD_ERROR && cmd->u.error.code == SGMQ_E_BAD_REQUEST)
                return true;
            else
            if (cmd->cmd == SGMQ_CMD_PONG)
                return false;
    }
    return false;
}

static void
test_oversized_frames_lose_their_connection (void **state)
{
    s_fixture_t *f = *state;
    long rss_before = s_rss_kb (f);
    s_raw_t *raw = s_raw_new (f, f->police);
    //  Exactly the maximum is a frame like any other: here a PING padded
    //  with trailing bytes, answered 412.
    s_mp_t m;
    s_mp_init (&m);
    s_mp_frame (&m, 1);
    s_mp_cmd (&m, "ping", 9, 0);
    size_t big = 8 * 1024 * 1024;
    uint8_t *data = calloc (1, big);
    memcpy (data, m.sbuf.data, m.sbuf.size);
    s_mp_destroy (&m);
    s_expect_error (raw, "exactly 1 MiB (a ping and padding)", data, SGMQ_PROTO_MAX_FRAME,
                    SGMQ_E_TRAILING, 0, "frame");

    //  One byte over: refused, as too large (414) or by libzmq dropping
    //  the connection before the broker sees it.
    s_raw_send (raw, data, SGMQ_PROTO_MAX_FRAME + 1);
    const sgmq_cmd_t *cmd;
    if (s_raw_next (raw, testutil_now_ms () + 1000, &cmd) == 0) {
        assert_int_equal (cmd->cmd, SGMQ_CMD_ERROR);
        assert_int_equal (cmd->u.error.code, SGMQ_E_TOO_LARGE);
        assert_int_equal (cmd->id, 0);
        printf ("    %-44s -> ERROR 414 id=0\n", "1 MiB + 1 byte");
    }
    else {
        assert_true (s_connection_lost (raw));
        s_raw_hello (raw);
        printf ("    %-44s -> connection dropped\n", "1 MiB + 1 byte");
    }
    //  8 MiB: the connection goes; a new one (libzmq reconnects) has no
    //  session.
    s_raw_send (raw, data, big);
    assert_true (s_connection_lost (raw));
    printf ("    %-44s -> connection dropped, no answer\n", "8 MiB");
    //  A burst of them on several connections: each loses its connection
    //  four times (libzmq reconnects), then a PING finds no session.
    s_raw_t *burst [4];
    for (int i = 0; i < 4; i++) {
        burst [i] = s_raw_new (f, f->police);
        for (int j = 0; j < 4; j++)
            s_raw_send (burst [i], data, big);
    }
    for (int i = 0; i < 4; i++) {
        assert_true (s_connection_lost (burst [i]));
        s_raw_destroy (&burst [i]);
    }
    free (data);
    s_raw_destroy (&raw);
    s_canary (f, "oversized frames");
    long rss_after = s_rss_kb (f);
    printf ("    broker memory %ld KiB -> %ld KiB after 17 frames of 8 MiB\n", rss_before,
            rss_after);
    assert_true (S_RSS_BOUNDED (rss_after - rss_before));
}

//  --------------------------------------------------------------------------
//  Floods

static int
s_tcp_port (const char *endpoint)
{
    const char *colon = strrchr (endpoint, ':');
    assert_non_null (colon);
    return atoi (colon + 1);
}

static void
test_flood_of_unknown_keys_and_half_handshakes (void **state)
{
    s_fixture_t *f = *state;
    pid_t pid = f->e2e->pid;
    int fds_before = e2e_fd_count (pid);
    long rss_before = s_rss_kb (f);
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *server = sgmq_cert_load (f->e2e->server_cert, error);
    assert_non_null (server);

    //  Unknown keys: fresh certs that were never admitted, each saying
    //  HELLO into a handshake that must fail.
    FILE *secrets = open_memstream (&f->flood_secrets, &f->flood_secrets_size);
    zsock_t *strangers [S_FLOOD_KEYS];
    static char publics [S_FLOOD_KEYS][SGMQ_CERT_KEY_TEXT + 1];
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = 1 };
    assert_int_equal (sgmq_proto_write (writer, &hello, NULL), 0);
    for (int i = 0; i < S_FLOOD_KEYS; i++) {
        sgmq_cert_t *cert = sgmq_cert_new ();
        char z85 [SGMQ_CERT_KEY_TEXT + 1];
        zmq_z85_encode (z85, sgmq_cert_secret_key (cert), SGMQ_CERT_KEY_SIZE);
        fprintf (secrets, "%s\n", z85);
        snprintf (publics [i], sizeof publics [i], "%s", sgmq_cert_public_txt (cert));
        strangers [i] = zsock_new (ZMQ_DEALER);
        assert_int_equal (sgmq_cert_apply_client (cert, zsock_resolve (strangers [i]),
                                                  sgmq_cert_public_key (server)), 0);
        zsock_set_linger (strangers [i], 0);
        assert_int_equal (zsock_connect (strangers [i], "%s", f->e2e->endpoint), 0);
        zmq_send (zsock_resolve (strangers [i]), sgmq_proto_writer_data (writer),
                  sgmq_proto_writer_size (writer), ZMQ_DONTWAIT);
        sgmq_cert_destroy (&cert);
    }
    fclose (secrets);
    sgmq_proto_writer_destroy (&writer);
    sgmq_cert_destroy (&server);

    //  Half-finished handshakes: TCP connections that send nothing, part
    //  of a ZMTP greeting, a whole greeting and nothing more, or a
    //  greeting and garbage.
    static const uint8_t greeting [64] = {
        0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0, 'C', 'U', 'R', 'V', 'E'
    };
    int sockets [S_FLOOD_TCP];
    int64_t flood_start = testutil_now_ms ();
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons ((uint16_t) s_tcp_port (f->e2e->endpoint)) };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    for (int i = 0; i < S_FLOOD_TCP; i++) {
        sockets [i] = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true (sockets [i] >= 0);
        assert_int_equal (connect (sockets [i], (struct sockaddr *) &addr, sizeof addr), 0);
        size_t part = (size_t) (i % 4 == 0 ? 0 : i % 4 == 1 ? 1 + i % 10 : 64);
        if (part && send (sockets [i], greeting, part, MSG_NOSIGNAL) != (ssize_t) part)
            fail_msg ("cannot send a greeting");
        if (i % 4 == 3)
            send (sockets [i], "\x04\x19\x05HELLO garbage garbage", 24, MSG_NOSIGNAL);
    }
    printf ("    %d unknown keys and %d half-open connections (broker fds %d -> %d)\n",
            S_FLOOD_KEYS, S_FLOOD_TCP, fds_before, e2e_fd_count (pid));

    //  The canary, during the flood, twice.
    s_canary (f, "flood (1)");
    s_canary (f, "flood (2)");
    //  Every unknown key was refused at its handshake (the broker logs
    //  each refusal), none got a session, nobody unknown got an answer.
    int64_t wait_until = testutil_now_ms () + testutil_ms (10000);
    int refused = 0;
    while (true) {
        char *log = e2e_log (f->e2e);
        refused = 0;
        for (int i = 0; i < S_FLOOD_KEYS; i++) {
            char line [128];
            snprintf (line, sizeof line, "refused (key not admitted) key=%.40s", publics [i]);
            refused += strstr (log, line) != NULL;
            snprintf (line, sizeof line, "key=%.40s", publics [i]);
            for (const char *at = log; (at = strstr (at, "session opened")); at++) {
                const char *eol = strchr (at, '\n');
                const char *key = strstr (at, line);
                if (key && (!eol || key < eol))
                    fail_msg ("unknown key %s got a session", publics [i]);
            }
        }
        free (log);
        if (refused == S_FLOOD_KEYS || testutil_now_ms () > wait_until)
            break;
        s_canary (f, "flood (more handshakes)");
    }
    printf ("    %d of %d unknown keys refused at the handshake, none admitted\n", refused,
            S_FLOOD_KEYS);
    assert_int_equal (refused, S_FLOOD_KEYS);
    int answered = 0;
    for (int i = 0; i < S_FLOOD_KEYS; i++) {
        zmq_pollitem_t item = { zsock_resolve (strangers [i]), 0, ZMQ_POLLIN, 0 };
        answered += zmq_poll (&item, 1, 0) > 0;
    }
    assert_int_equal (answered, 0);
    for (int i = 0; i < S_FLOOD_KEYS; i++)
        zsock_destroy (&strangers [i]);

    //  The broker drops every half-open connection after its handshake
    //  timeout (5 s), and its descriptors come back.
    int64_t deadline = testutil_now_ms () + testutil_ms (15000);
    int open_count = S_FLOOD_TCP;
    while (open_count && testutil_now_ms () < deadline) {
        struct pollfd fds [S_FLOOD_TCP];
        for (int i = 0; i < S_FLOOD_TCP; i++)
            fds [i] = (struct pollfd) { sockets [i], POLLIN, 0 };
        if (poll (fds, S_FLOOD_TCP, 200) <= 0)
            continue;
        for (int i = 0; i < S_FLOOD_TCP; i++) {
            if (sockets [i] < 0 || !fds [i].revents)
                continue;
            char chunk [512];
            ssize_t got = recv (sockets [i], chunk, sizeof chunk, MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                close (sockets [i]);
                sockets [i] = -1;
                open_count--;
            }
        }
    }
    for (int i = 0; i < S_FLOOD_TCP; i++)
        if (sockets [i] >= 0)
            close (sockets [i]);
    if (open_count)
        fail_msg ("%d half-open connections still open after 15 s", open_count);
    int64_t dropped_after = testutil_now_ms () - flood_start;
    deadline = testutil_now_ms () + testutil_ms (5000);
    while (e2e_fd_count (pid) > fds_before + 4 && testutil_now_ms () < deadline)
        zclock_sleep (50);
    int fds_after = e2e_fd_count (pid);
    long rss_after = s_rss_kb (f);
    printf ("    every half-open connection dropped by the broker %lld ms after it opened; "
            "fds back to %d, memory %ld -> %ld KiB\n", (long long) dropped_after, fds_after,
            rss_before, rss_after);
    assert_true (fds_after <= fds_before + 4);
    assert_true (S_RSS_BOUNDED (rss_after - rss_before));
    s_canary (f, "flood");
}

//  --------------------------------------------------------------------------
//  A client that never reads

static void
test_client_that_never_reads (void **state)
{
    s_fixture_t *f = *state;
    //  exec2 subscribes with the largest window, then never reads: its
    //  receive queue is one frame deep and its kernel buffer small, so
    //  whatever the broker sends it stays on the broker's side.
    s_raw_t *stalled = s_raw_open (f, f->exec2, 1);
    sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = 1 };
    s_raw_send_cmd (stalled, &hello);
    sgmq_cmd_t subscribe = { .cmd = SGMQ_CMD_SUBSCRIBE, .id = 2 };
    subscribe.u.subscribe.window = SGMQ_PROTO_MAX_WINDOW;
    s_raw_send_cmd (stalled, &subscribe);
    //  The canary's acks go in batches on a second exec1 session, so it
    //  keeps up with thousands of messages.
    s_raw_t *acker = s_raw_new (f, f->exec1);
    s_canary (f, "a stalled reader subscribed");
    long rss_before = s_rss_kb (f), rss_peak = rss_before;

    //  Bodies near their largest: about 6 KiB each.
    static char summary [SGMQ_PROTO_MAX_TEXT + 1], requested [SGMQ_PROTO_MAX_SHORTTEXT + 1];
    static char title [SGMQ_PROTO_MAX_TITLE + 1];
    memset (summary, 's', SGMQ_PROTO_MAX_TEXT);
    memcpy (summary, S_MARKER, strlen (S_MARKER));
    memset (requested, 'r', SGMQ_PROTO_MAX_SHORTTEXT);
    memset (title, 't', SGMQ_PROTO_MAX_TITLE);
    memcpy (title, S_MARKER, strlen (S_MARKER));
    sgmq_body_t body = s_escalation ("exploitation", title, summary);
    body.u.escalation.requested = requested;
    uint8_t *encoded;
    size_t body_size;
    sgmq_proto_error_t perror;
    encoded = sgmq_proto_encode_body (&body, &body_size, &perror);
    assert_non_null (encoded);
    free (encoded);

    int64_t start = testutil_now_ms (), slowest = 0;
    uint64_t received = 0;
    static uint64_t seqs [S_STALL_CHUNK];
    for (int chunk = 0; chunk < S_STALL_MESSAGES / S_STALL_CHUNK; chunk++) {
        int64_t chunk_start = testutil_now_ms ();
        sgmq_error_t error;
        for (int i = 0; i < S_STALL_CHUNK; i++)
            assert_int_equal (sgmq_client_publish_send (f->publisher, NULL, &body, &error), 0);
        for (int i = 0; i < S_STALL_CHUNK; i++) {
            sgmq_confirm_t confirm;
            if (sgmq_client_publish_wait (f->publisher, (int) testutil_ms (10000), &confirm,
                                          &error) || error.code)
                fail_msg ("chunk %d publish %d: %d %s", chunk, i, error.code, error.reason);
        }
        int64_t confirmed = testutil_now_ms () - chunk_start;
        if (confirmed > slowest)
            slowest = confirmed;
        //  The canary receives the whole chunk, then acks it in one frame.
        for (int i = 0; i < S_STALL_CHUNK; i++) {
            const sgmq_delivery_t *d;
            if (sgmq_client_recv (f->receiver, (int) testutil_ms (10000), &d, &error))
                fail_msg ("chunk %d: the canary got %d of %d: %d %s", chunk, i,
                          S_STALL_CHUNK, error.code, error.reason);
            seqs [i] = d->seq;
            received++;
        }
        sgmq_proto_writer_reset (acker->writer);
        for (int i = 0; i < S_STALL_CHUNK; i++) {
            sgmq_cmd_t ack = { .cmd = SGMQ_CMD_ACK, .id = 100000 + (uint64_t) i };
            ack.u.ack.seq = seqs [i];
            assert_int_equal (sgmq_proto_write (acker->writer, &ack, NULL), 0);
        }
        s_raw_send (acker, sgmq_proto_writer_data (acker->writer),
                    sgmq_proto_writer_size (acker->writer));
        //  ACKED come after the commit: count them.
        size_t ok = 0;
        int64_t deadline = testutil_now_ms () + testutil_ms (S_ANSWER_MS);
        const sgmq_cmd_t *cmd;
        while (ok < S_STALL_CHUNK && s_raw_next (acker, deadline, &cmd) == 0) {
            if (cmd->cmd != SGMQ_CMD_ACKED)
                fail_msg ("chunk %d: an ack answered %s", chunk, sgmq_proto_cmd_name (cmd->cmd));
            ok++;
        }
        if (ok != S_STALL_CHUNK)
            fail_msg ("chunk %d: %zu of %d acks confirmed", chunk, ok, S_STALL_CHUNK);
        //  The stalled client stays alive: it writes, it never reads.
        sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = 3 + (uint64_t) chunk };
        s_raw_send_cmd (stalled, &ping);
        long rss = s_rss_kb (f);
        if (rss > rss_peak)
            rss_peak = rss;
    }
    int64_t elapsed = testutil_now_ms () - start;
    double mib = (double) S_STALL_MESSAGES * (double) body_size / (1024.0 * 1024.0);
    printf ("    %d messages (%.0f MiB of bodies) to a group with a stalled reader in "
            "%lld ms; slowest chunk of %d confirmed in %lld ms; the canary got all %llu\n",
            S_STALL_MESSAGES, mib, (long long) elapsed, S_STALL_CHUNK, (long long) slowest,
            (unsigned long long) received);
    printf ("    broker memory (VmRSS - RssFile) %ld KiB before, peak %ld KiB (%+ld KiB)\n",
            rss_before, rss_peak, rss_peak - rss_before);
    s_print_memory (f, "after the stalled reader");
    assert_int_equal (received, S_STALL_MESSAGES);
    assert_true (S_RSS_BOUNDED (rss_peak - rss_before));
    //  Publishers keep their pace: no chunk waits on the stalled reader.
    assert_true (slowest < testutil_ms (5000));
    s_raw_destroy (&stalled);
    s_raw_destroy (&acker);
    s_canary (f, "a stalled reader");
}

//  --------------------------------------------------------------------------
//  One key, many sessions

static void
test_many_sessions_of_one_key (void **state)
{
    s_fixture_t *f = *state;
    s_raw_t *raws [S_MANY_SESSIONS];
    for (int i = 0; i < S_MANY_SESSIONS; i++)
        raws [i] = s_raw_open (f, f->many, 0);
    //  Every connection says HELLO; the first 16 to arrive are welcome.
    for (int i = 0; i < S_MANY_SESSIONS; i++) {
        sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = 500 + (uint64_t) i };
        s_raw_send_cmd (raws [i], &hello);
    }
    bool welcome [S_MANY_SESSIONS];
    int welcomed = 0, busy = 0;
    for (int i = 0; i < S_MANY_SESSIONS; i++) {
        s_ans_t ans;
        s_raw_answer (raws [i], 500 + (uint64_t) i, &ans);
        welcome [i] = ans.cmd == SGMQ_CMD_WELCOME;
        welcomed += welcome [i];
        if (!welcome [i]) {
            assert_int_equal (ans.cmd, SGMQ_CMD_ERROR);
            assert_int_equal (ans.code, SGMQ_E_BUSY);
            busy++;
        }
    }
    printf ("    %d connections of one key say HELLO: %d WELCOME, %d ERROR 429\n",
            S_MANY_SESSIONS, welcomed, busy);
    assert_int_equal (welcomed, S_SESSIONS_PER_KEY);
    assert_int_equal (busy, S_MANY_SESSIONS - S_SESSIONS_PER_KEY);
    //  A refused connection has no session; a welcome one does.
    for (int i = 0; i < S_MANY_SESSIONS; i++) {
        sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = 600 + (uint64_t) i };
        s_raw_send_cmd (raws [i], &ping);
        s_ans_t ans;
        s_raw_answer (raws [i], ping.id, &ans);
        assert_int_equal (ans.cmd, welcome [i] ? SGMQ_CMD_PONG : SGMQ_CMD_ERROR);
    }
    s_canary (f, "16 sessions of one key");
    //  BYE closes a session at once: its slot is free for another.
    int closed = 0;
    for (int i = 0; i < S_MANY_SESSIONS && closed < 4; i++)
        if (welcome [i]) {
            sgmq_cmd_t bye = { .cmd = SGMQ_CMD_BYE, .id = 700 };
            s_raw_send_cmd (raws [i], &bye);
            sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = 701 };
            s_raw_send_cmd (raws [i], &ping);
            s_ans_t ans;
            s_raw_answer (raws [i], 701, &ans);
            assert_int_equal (ans.code, SGMQ_E_BAD_REQUEST);
            welcome [i] = false;
            closed++;
        }
    //  BYE and HELLO in one frame: the old session is not resurrected (it
    //  goes at the end of the turn); HELLO is to be said again, and then
    //  opens a new one.
    for (int i = 0; i < S_MANY_SESSIONS; i++)
        if (welcome [i]) {
            sgmq_proto_writer_reset (raws [i]->writer);
            sgmq_cmd_t bye = { .cmd = SGMQ_CMD_BYE, .id = 710 };
            sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = 711 };
            assert_int_equal (sgmq_proto_write (raws [i]->writer, &bye, NULL), 0);
            assert_int_equal (sgmq_proto_write (raws [i]->writer, &hello, NULL), 0);
            s_raw_send (raws [i], sgmq_proto_writer_data (raws [i]->writer),
                        sgmq_proto_writer_size (raws [i]->writer));
            s_ans_t ans;
            s_raw_answer (raws [i], 711, &ans);
            printf ("    BYE and HELLO in one frame: HELLO -> %s %u\n",
                    sgmq_proto_cmd_name (ans.cmd), ans.code);
            assert_int_equal (ans.code, SGMQ_E_BUSY);
            //  429 says: again, after a pause (the broker's turn must end).
            int64_t deadline = testutil_now_ms () + testutil_ms (S_ANSWER_MS);
            do {
                zclock_sleep (10);
                hello.id++;
                s_raw_send_cmd (raws [i], &hello);
                s_raw_answer (raws [i], hello.id, &ans);
            } while (ans.cmd != SGMQ_CMD_WELCOME && ans.code == SGMQ_E_BUSY
                     && testutil_now_ms () < deadline);
            assert_int_equal (ans.cmd, SGMQ_CMD_WELCOME);
            break;
        }
    int again = 0;
    for (int i = 0; i < S_MANY_SESSIONS; i++)
        if (!welcome [i]) {
            sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = 800 + (uint64_t) i };
            s_raw_send_cmd (raws [i], &hello);
            s_ans_t ans;
            s_raw_answer (raws [i], hello.id, &ans);
            again += ans.cmd == SGMQ_CMD_WELCOME;
            welcome [i] |= ans.cmd == SGMQ_CMD_WELCOME;
        }
    printf ("    after 4 BYEs, HELLO again on the other %d: %d WELCOME\n",
            S_MANY_SESSIONS - S_SESSIONS_PER_KEY + 4, again);
    assert_int_equal (again, 4);
    //  Everyone says BYE and goes.
    for (int i = 0; i < S_MANY_SESSIONS; i++) {
        if (welcome [i]) {
            sgmq_cmd_t bye = { .cmd = SGMQ_CMD_BYE, .id = 900 };
            s_raw_send_cmd (raws [i], &bye);
            sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = 901 };
            s_raw_send_cmd (raws [i], &ping);
            s_ans_t ans;
            s_raw_answer (raws [i], 901, &ans);
            assert_int_equal (ans.code, SGMQ_E_BAD_REQUEST);
        }
        s_raw_destroy (&raws [i]);
    }
    //  And the key may open its sessions again.
    sgmq_client_t *client = e2e_connect (f->e2e, f->many);
    sgmq_client_destroy (&client);
    s_canary (f, "many sessions");
}

//  Subscribers whose connection goes without a BYE while the broker has
//  deliveries for them: the broker finds the peer gone when it sends
//  (EHOSTUNREACH) and must forget the session then, or each one would
//  hold one of the key's sessions for good (they used to: marked
//  "closing" but never destroyed, not even by the session timeout, so
//  after 16 such drops the key was refused with 429 until a restart).
static void
test_vanished_subscribers_free_their_sessions (void **state)
{
    s_fixture_t *f = *state;
    pid_t pid = f->e2e->pid;
    int rounds = S_SESSIONS_PER_KEY + 4;
    for (int round = 0; round < rounds; round++) {
        int fds_before = e2e_fd_count (pid);
        s_raw_t *raw = s_raw_open (f, f->vanisher, 0);
        sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = 1 };
        s_raw_send_cmd (raw, &hello);
        s_ans_t ans;
        s_raw_answer (raw, 1, &ans);
        if (ans.cmd != SGMQ_CMD_WELCOME && getenv ("SGMQ_HOSTILE_DEBUG")) {
            char *log = e2e_log (f->e2e);
            for (char *line = log, *save = NULL; (line = strtok_r (line, "\n", &save));
                 line = NULL)
                if (strstr (line, "laptop") || strstr (line, "not reading"))
                    fprintf (stderr, "%s\n", line);
            free (log);
        }
        if (ans.cmd != SGMQ_CMD_WELCOME)
            fail_msg ("round %d: HELLO answered %s %u (%s): sessions of vanished peers "
                      "were not freed", round, sgmq_proto_cmd_name (ans.cmd), ans.code,
                      ans.reason);
        //  A window wider than its backlog (this test runs first), so every
        //  new message goes to the session at once.
        sgmq_cmd_t subscribe = { .cmd = SGMQ_CMD_SUBSCRIBE, .id = 2 };
        subscribe.u.subscribe.window = SGMQ_PROTO_MAX_WINDOW;
        s_raw_send_cmd (raw, &subscribe);
        s_raw_answer (raw, 2, &ans);
        assert_int_equal (ans.cmd, SGMQ_CMD_SUBSCRIBED);
        //  Gone, without a BYE; wait until the broker has seen the
        //  connection close, so that its next delivery finds no peer.
        s_raw_destroy (&raw);
        int64_t deadline = testutil_now_ms () + testutil_ms (S_ANSWER_MS);
        while (e2e_fd_count (pid) > fds_before && testutil_now_ms () < deadline)
            zclock_sleep (5);
        //  A message for the Executive: a delivery to the vanished peer.
        char when [64];
        snprintf (when, sizeof when, "a subscriber vanished (%d)", round + 1);
        s_canary (f, when);
    }
    printf ("    %d subscribers of one key vanished without BYE; each time the key was "
            "welcome again\n", rounds);
}

//  --------------------------------------------------------------------------
//  The log, the memory, the exit

static void
s_log_lacks (const char *log, const char *secret, const char *what)
{
    if (strstr (log, secret))
        fail_msg ("the broker's log holds %s", what);
}

static void
test_log_memory_and_exit (void **state)
{
    s_fixture_t *f = *state;
    long rss_end = s_rss_kb (f);
    printf ("    broker memory (VmRSS - RssFile) %ld KiB at start, %ld KiB at the end "
            "(%+ld KiB)\n", f->rss_start_kb, rss_end, rss_end - f->rss_start_kb);
    s_print_memory (f, "at the end");
    assert_true (S_RSS_BOUNDED (rss_end - f->rss_start_kb));
    //  The canary pair says BYE before the broker goes.
    sgmq_client_destroy (&f->publisher);
    sgmq_client_destroy (&f->receiver);
    assert_int_equal (e2e_stop (f->e2e), 0);

    char *log = e2e_log (f->e2e);
    assert_non_null (log);
    size_t lines = 0;
    for (const char *c = log; *c; c++)
        lines += *c == '\n';
    //  No message text.
    s_log_lacks (log, S_MARKER, "message text (the marker)");
    s_log_lacks (log, "The canary is alive", "a summary");
    s_log_lacks (log, "subscribe-all", "an unknown command's name");
    //  No secret key: the principals', the broker's, the key files', nor
    //  the unknown certs'.
    const char *certs [] = { f->police, f->exec1, f->exec2, f->many, f->vanisher };
    for (size_t i = 0; i < 5; i++) {
        char *secret = s_secret_of (certs [i], "secret-key", SGMQ_CERT_KEY_TEXT);
        s_log_lacks (log, secret, "a principal's secret key");
        free (secret);
    }
    char path [1024];
    snprintf (path, sizeof path, "%s/broker.cert_secret", f->e2e->dir);
    char *secret = s_secret_of (path, "secret-key", SGMQ_CERT_KEY_TEXT);
    s_log_lacks (log, secret, "the broker's secret key");
    free (secret);
    snprintf (path, sizeof path, "%s/storage.key", f->e2e->dir);
    secret = s_secret_of (path, "key", 64);
    s_log_lacks (log, secret, "the storage key");
    secret [16] = 0;            //  nor any part of it
    s_log_lacks (log, secret, "part of the storage key");
    free (secret);
    snprintf (path, sizeof path, "%s/signing.key", f->e2e->dir);
    secret = s_secret_of (path, "secret", 128);
    s_log_lacks (log, secret, "the signing key");
    secret [16] = 0;
    s_log_lacks (log, secret, "part of the signing key");
    free (secret);
    size_t flood_keys = 0;
    for (char *line = f->flood_secrets, *save = NULL;
         (line = strtok_r (line, "\n", &save)); line = NULL) {
        s_log_lacks (log, line, "an unknown cert's secret key");
        flood_keys++;
    }
    assert_int_equal (flood_keys, S_FLOOD_KEYS);
    //  Not vacuous: the log names keys (public ones).
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *police = sgmq_cert_load (f->police, error);
    assert_non_null (strstr (log, sgmq_cert_public_txt (police)));
    //  Malformed frames are logged, by size and code, not by content.
    char expected [160];
    snprintf (expected, sizeof expected, "bad frame key=%s size=%d code=%d",
              sgmq_cert_public_txt (police), SGMQ_PROTO_MAX_FRAME, SGMQ_E_TRAILING);
    assert_non_null (strstr (log, expected));
    sgmq_cert_destroy (&police);
    size_t bad_lines = 0;
    for (const char *at = log; (at = strstr (at, "bad frame key=")); at++)
        bad_lines++;
    size_t refused = 0;
    for (const char *at = log; (at = strstr (at, "refused (key not admitted)")); at++)
        refused++;
    const char *stopping = strstr (log, "stopping: frames=");
    assert_non_null (stopping);
    const char *counter = strstr (stopping, "bad-frames=");
    assert_non_null (counter);
    unsigned long long counted = strtoull (counter + strlen ("bad-frames="), NULL, 10);
    printf ("    log: %zu lines; %zu 'bad frame' lines, the broker counted %llu, the test "
            "caused %llu; %zu refused handshakes; no text, no secret\n", lines, bad_lines,
            counted, (unsigned long long) s_frame_errors, refused);
    assert_true (counted >= s_frame_errors);
    assert_true (bad_lines >= s_frame_errors);
    assert_true (refused >= S_FLOOD_KEYS);
    free (log);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_vanished_subscribers_free_their_sessions),
        cmocka_unit_test (test_frame_errors_are_answered_exactly),
        cmocka_unit_test (test_command_errors_carry_the_command_id),
        cmocka_unit_test (test_every_position_corrupted),
        cmocka_unit_test (test_random_bytes),
        cmocka_unit_test (test_oversized_frames_lose_their_connection),
        cmocka_unit_test (test_flood_of_unknown_keys_and_half_handshakes),
        cmocka_unit_test (test_client_that_never_reads),
        cmocka_unit_test (test_many_sessions_of_one_key),
        cmocka_unit_test (test_log_memory_and_exit),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    //  The flood opens a few hundred sockets in this process.
    zsys_set_max_sockets (4096);
    setvbuf (stdout, NULL, _IOLBF, 0);
    int failed = cmocka_run_group_tests (tests, s_setup, s_teardown);
    zsys_shutdown ();
    return failed;
}
