/*  =========================================================================
    sgmq_client - libsgmq, the C client of the sgmq broker

    Connects over CurveZMQ with the principal's own certificate, says
    HELLO, and then publishes, receives and acknowledges deliveries, asks
    what is pending, and replays and verifies the history (auditors).

    Every call that talks to the broker takes a timeout (the client's,
    from sgmq_client_options_t) and fills an sgmq_error_t on failure:
    `code` is a protocol status (SGMQ_E_*, e.g. 403 forbidden, 507 storage
    full) when the broker refused, or one of the SGMQ_CLIENT_E_* codes
    below when the broker could not be asked.

    Reconnection is automatic: when the broker restarts or the connection
    drops, the client reconnects, says HELLO again and re-subscribes.
    Publishes are retried with the same client reference, so a retried
    publish is stored once; acks are idempotent. Deliveries not yet
    acknowledged come again after a reconnect (dedupe by seq if needed).

    Thread-safety: a client is not thread-safe; use each from one thread
    at a time (several clients in several threads are fine).

    Memory: pointers returned by _recv, _replay_next and the identity
    accessors stay valid until the next call on the same object, unless
    a comment says otherwise.
    =========================================================================
*/
#ifndef SGMQ_CLIENT_H_INCLUDED
#define SGMQ_CLIENT_H_INCLUDED

#include "sgmq_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Errors on this side of the connection (not sent by the broker).
#define SGMQ_CLIENT_E_UNREACHABLE  601  //  no CURVE handshake within the timeout
#define SGMQ_CLIENT_E_TIMEOUT      602  //  no answer within the timeout
#define SGMQ_CLIENT_E_PROTOCOL     603  //  the broker sent what we cannot read
#define SGMQ_CLIENT_E_CERT         604  //  own or broker certificate unusable
#define SGMQ_CLIENT_E_USAGE        605  //  a bad argument to this library
#define SGMQ_CLIENT_E_INTERNAL     606  //  out of memory, socket failure

#define SGMQ_CLIENT_DEFAULT_TIMEOUT 5000    //  ms
#define SGMQ_CLIENT_REASON_SIZE     256

typedef struct {
    int code;                           //  SGMQ_E_* or SGMQ_CLIENT_E_*; 0: none
    char reason [SGMQ_CLIENT_REASON_SIZE];
    char field [64];                    //  offending field, or ""
} sgmq_error_t;

//  True if the broker itself refused (a protocol status code).
bool
    sgmq_error_refused (const sgmq_error_t *error);

typedef struct {
    const char *broker;                 //  endpoint, e.g. tcp://127.0.0.1:7800
    const char *cert;                   //  own SECRET cert (mode 0600)
    const char *server_cert;            //  the broker's PUBLIC cert
    int timeout;                        //  ms; 0: SGMQ_CLIENT_DEFAULT_TIMEOUT
    const char *client;                 //  software name for HELLO; may be NULL
} sgmq_client_options_t;

typedef struct _sgmq_client_t sgmq_client_t;

//  Connect, complete the CURVE handshake and the HELLO. Returns the client,
//  or NULL with `error` set: SGMQ_E_NOT_AUTHORISED when the broker refused
//  the key, SGMQ_CLIENT_E_UNREACHABLE when no handshake completed in time,
//  SGMQ_CLIENT_E_CERT for unusable certificate files. Call sodium_init()
//  before the first client.
sgmq_client_t *
    sgmq_client_new (const sgmq_client_options_t *options, sgmq_error_t *error);

//  Say BYE and disconnect. NULL-safe; sets *self_p to NULL.
void
    sgmq_client_destroy (sgmq_client_t **self_p);

//  Who the broker says we are (from WELCOME).
const char *sgmq_client_name   (sgmq_client_t *self);
const char *sgmq_client_agency (sgmq_client_t *self);
const sgmq_strlist_t *sgmq_client_roles  (sgmq_client_t *self);
const sgmq_strlist_t *sgmq_client_groups (sgmq_client_t *self);
bool sgmq_client_has_role (sgmq_client_t *self, const char *role);
const char *sgmq_client_broker_version (sgmq_client_t *self);

//  --------------------------------------------------------------------------
//  Publishing

typedef struct {
    uint64_t seq;                       //  the broker's sequence number
    uint64_t time;                      //  when it was stored, ms UTC
    bool duplicate;                     //  an earlier publish with this ref
    char ref [SGMQ_PROTO_MAX_NAME + 1]; //  the client reference used
} sgmq_confirm_t;

//  Publish and wait for the confirm (which the broker sends only after
//  the message is on disk). `ref` names this message for idempotency
//  (NULL: a random one is made and returned in the confirm). A lost
//  confirm is retried with the same ref, reconnecting if needed. 0 or -1.
int
    sgmq_client_publish (sgmq_client_t *self, const char *ref,
                         const sgmq_body_t *body, sgmq_confirm_t *confirm,
                         sgmq_error_t *error);

//  Pipelined publishing, for throughput: queue a publish (sent in batches
//  of many per frame), and collect confirms as they come. _publish_send
//  returns 0 once the publish is queued, or -1 when it is not (an invalid
//  body; or a full batch that could not be sent, the broker unreachable);
//  it sends the batch once it holds 128 publishes or the frame is nearly
//  as big as the broker accepts, so the broker stores one batch while the
//  next is on its way; with about 2 MiB of requests unanswered it first
//  waits for answers (up to the client's timeout; if none come, as long
//  again after sending them all again on a new connection; then -1), so
//  that the broker need not drop a frame of this connection. _publish_wait sends what is queued when it has no
//  answer to hand back, then waits up to `timeout` ms for the next confirm
//  or refusal of a queued publish: 0 with `confirm` filled (and
//  `error->code` 0), or 0 with `error` set when the broker refused that
//  publish (confirm->ref says which), or -1 on timeout, or when the broker
//  stays unreachable. A lost connection or session (the broker restarted,
//  or a link that went silent, found by ZMTP heartbeats) is repaired on
//  the way: the client connects again and sends every unanswered publish
//  again, in order, with its ref; one the broker had stored already is
//  confirmed with its first seq (`duplicate` set), so each is stored
//  exactly once. Repairing may block past `timeout`: up to 3 attempts,
//  each up to a few client timeouts (handshake, HELLO, SUBSCRIBE). Any
//  call that reconnects (these, _recv, the synchronous requests) sends
//  the unanswered publishes and acks again. An open replay or report does
//  not survive a reconnect. _in_flight counts queued publishes not yet
//  answered.
int
    sgmq_client_publish_send (sgmq_client_t *self, const char *ref,
                              const sgmq_body_t *body, sgmq_error_t *error);
int
    sgmq_client_publish_wait (sgmq_client_t *self, int timeout,
                              sgmq_confirm_t *confirm, sgmq_error_t *error);
size_t
    sgmq_client_in_flight (sgmq_client_t *self);

//  --------------------------------------------------------------------------
//  Receiving

typedef struct {
    uint64_t seq;
    uint64_t time;
    sgmq_kind_t kind;
    const char *from;                   //  publisher's name
    const char *agency;                 //  publisher's agency
    sgmq_strlist_t groups;              //  groups it was addressed to
    uint32_t attempt;                   //  1 first time, 2... redelivery
    sgmq_body_t body;
} sgmq_delivery_t;

//  Start receiving: everything unacknowledged, oldest first, then live
//  messages, at most `window` unacknowledged at a time (0: broker's
//  default). Sets *backlog (may be NULL). 0 or -1.
int
    sgmq_client_subscribe (sgmq_client_t *self, uint32_t window,
                           uint64_t *backlog, sgmq_error_t *error);

//  Next delivery, waiting up to `timeout` ms (-1: forever; 0: only what is
//  already here). Returns 0 with *delivery set (valid until the next
//  call), or -1 with error->code SGMQ_CLIENT_E_TIMEOUT when none came, or
//  another error. Keeps the session alive (pings) and reconnects while it
//  waits; reconnecting may block past `timeout`, as for _publish_wait (a
//  handshake, HELLO and SUBSCRIBE of up to the client's timeout each),
//  since a budget shorter than a handshake would never reconnect. A
//  reconnect refused for good ends the wait: SGMQ_E_NOT_AUTHORISED (the
//  key was revoked) or SGMQ_E_FORBIDDEN (its cert no longer makes it a
//  member: the broker ends a key's sessions when its rights change).
int
    sgmq_client_recv (sgmq_client_t *self, int timeout,
                      const sgmq_delivery_t **delivery, sgmq_error_t *error);

//  Acknowledge message `seq` and wait until the ack is on disk. Sets
//  *duplicate if it was already acknowledged (may be NULL). 0 or -1
//  (SGMQ_E_NOT_FOUND: you are not one of its recipients).
int
    sgmq_client_ack (sgmq_client_t *self, uint64_t seq, bool *duplicate,
                     sgmq_error_t *error);

//  Pipelined acknowledgement, for throughput (the counterpart of
//  _publish_send): _ack_send queues an ack and returns 0 (or -1 when it
//  could not be queued); queued acks leave many per frame, when 128 are
//  queued, when _recv is about to wait, or at _ack_flush or any other
//  request. _ack_flush sends what is queued and waits up to `timeout` ms
//  until the broker has answered every queued ack (each is then on
//  disk): 0; or -1 on timeout or when the broker stays unreachable; or -1
//  with the first refusal since the last _ack_flush, its reason starting
//  "ack of SEQ: " (SGMQ_E_NOT_FOUND: not one of your messages;
//  SGMQ_E_UNAVAILABLE or SGMQ_E_STORAGE_FULL: not stored, ack it again
//  later), the other acks standing. A lost connection or session is
//  repaired as for publishes: unanswered acks go again (acking twice is
//  harmless); and like _publish_send, _ack_send first waits for answers
//  when about 2 MiB of requests are unanswered. _acks_in_flight counts
//  the unanswered ones.
int
    sgmq_client_ack_send (sgmq_client_t *self, uint64_t seq, sgmq_error_t *error);
int
    sgmq_client_ack_flush (sgmq_client_t *self, int timeout, sgmq_error_t *error);
size_t
    sgmq_client_acks_in_flight (sgmq_client_t *self);

//  For event loops: the socket (a zsock_t *) and its file descriptor
//  (ZMQ_FD semantics: edge-triggered; when it signals, call _recv with
//  timeout 0 until it times out).
void *
    sgmq_client_socket (sgmq_client_t *self);
int
    sgmq_client_fd (sgmq_client_t *self);

//  --------------------------------------------------------------------------
//  Questions

//  Call `fn` for each pending item (all pages), in the broker's order.
//  `fn` returns 0 to go on, non-zero to stop. 0 or -1.
typedef int (sgmq_pending_fn) (const sgmq_pending_item_t *item, void *arg);
int
    sgmq_client_pending (sgmq_client_t *self, sgmq_scope_t scope, bool overdue,
                         sgmq_pending_fn *fn, void *arg, sgmq_error_t *error);

//  Round trip to the broker. 0 or -1.
int
    sgmq_client_ping (sgmq_client_t *self, sgmq_error_t *error);

//  --------------------------------------------------------------------------
//  Replay and verification (auditors)

typedef struct {
    uint64_t from, to;                  //  seq range; 0: open
    uint64_t since, until;              //  time range (ms UTC); 0: open
    const char *group;                  //  NULL: any
    sgmq_kind_t kind;                   //  0: any
} sgmq_replay_query_t;

typedef struct {
    uint64_t seq, time;
    sgmq_kind_t kind;
    const char *from, *from_key, *agency;
    sgmq_strlist_t groups;
    const uint8_t *body_bytes;          //  canonical body (what is hashed)
    size_t body_size;
    sgmq_body_t body;                   //  decoded
    uint8_t hash [SGMQ_PROTO_HASH_SIZE];
    uint8_t prev [SGMQ_PROTO_HASH_SIZE];
    uint32_t ack_count;
    const sgmq_ack_event_t *acks;
} sgmq_replay_item_t;

typedef struct {
    uint64_t count;
    uint64_t head_seq;
    uint8_t head_hash [SGMQ_PROTO_HASH_SIZE];
    bool has_checkpoint;
    sgmq_checkpoint_t checkpoint;
} sgmq_replay_end_t;

typedef struct _sgmq_replay_t sgmq_replay_t;

//  Start a replay. The iterator borrows the client: use no other call on
//  the client until the replay is destroyed. NULL with `error` set.
sgmq_replay_t *
    sgmq_client_replay (sgmq_client_t *self, const sgmq_replay_query_t *query,
                        sgmq_error_t *error);

//  Next item: 1 with *item set (valid until the next call), 0 at the end
//  (see _replay_end), -1 on error.
int
    sgmq_replay_next (sgmq_replay_t *self, const sgmq_replay_item_t **item,
                      sgmq_error_t *error);

//  After _next returned 0: what the broker said at the end.
const sgmq_replay_end_t *
    sgmq_replay_end (sgmq_replay_t *self);

void
    sgmq_replay_destroy (sgmq_replay_t **self_p);

//  --------------------------------------------------------------------------
//  The Escalation Tracker report (Executive members, auditors, admins)

typedef struct _sgmq_report_t sgmq_report_t;

//  Ask for the report of escalations raised and learning alerts published
//  in [since, until] (ms UTC; 0: open). Like a replay, the iterator
//  borrows the client until destroyed. NULL with `error` set.
sgmq_report_t *
    sgmq_client_report (sgmq_client_t *self, uint64_t since, uint64_t until,
                        sgmq_error_t *error);

//  Next item: 1 with *item set to a REPORT-ESCALATION or REPORT-LEARNING
//  command (valid until the next call), 0 at the end, -1 on error (e.g.
//  SGMQ_E_FORBIDDEN for a principal who may not read the tracker).
int
    sgmq_report_next (sgmq_report_t *self, const sgmq_cmd_t **item,
                      sgmq_error_t *error);

void
    sgmq_report_destroy (sgmq_report_t **self_p);

//  The audit chain hash of an item given the previous item's hash
//  (PROTOCOL.md, "Audit chain"): BLAKE2b-256 over prev and the item's
//  canonical bytes. Auditors can check items without this library.
void
    sgmq_chain_hash (const uint8_t *prev, const sgmq_replay_item_t *item,
                     uint8_t *hash);

//  True if `cp` is signed by the broker's Ed25519 public key `signing_pk`.
bool
    sgmq_checkpoint_valid (const sgmq_checkpoint_t *cp, const uint8_t *signing_pk);

typedef struct {
    uint64_t count;                     //  messages checked
    uint64_t head_seq;
    bool intact;
    uint64_t bad_seq;                   //  first seq where it breaks; 0: none
    bool checkpoint_checked;            //  a signing key was given and used
    uint64_t checkpoint_seq;
    char reason [SGMQ_CLIENT_REASON_SIZE];
} sgmq_verify_t;

//  Replay everything from seq 1 and check it as PROTOCOL.md 11.4 says:
//  each item's hash from its canonical bytes and its predecessor's hash, no
//  gaps, times that do not go back, bodies in their canonical encoding, the
//  count and the head hash of REPLAY-END; and, when `signing_pk` is not
//  NULL, the newest signed checkpoint's signature and that it matches the
//  chain. `progress`, if
//  not NULL, is called every few thousand items. Returns 0 when checked
//  (see report->intact), -1 when the replay itself failed.
typedef void (sgmq_progress_fn) (uint64_t done, uint64_t total, void *arg);
int
    sgmq_client_verify (sgmq_client_t *self, const uint8_t *signing_pk,
                        sgmq_verify_t *report, sgmq_progress_fn *progress,
                        void *arg, sgmq_error_t *error);

#ifdef __cplusplus
}
#endif

#endif
