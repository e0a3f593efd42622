/*  =========================================================================
    sgmq_proto - the sgmq wire protocol, version 1: encode, decode, validate

    The codec turns frames into commands and commands into frames. It does
    no I/O and knows nothing of sockets, stores or principals: bytes in,
    structs out (and back). proto/PROTOCOL.md is the normative spec; this
    header is its C binding.

    A frame is one msgpack array:

        [ "SGMQ", 1, command, *command ]      ; signature, version, 1..1024
        command = [ name, id, body ]           ; str, uint, map

    Decoding is strict and allocation-bounded: an unknown command or kind,
    a wrong type, a missing or unknown field, an over-long or non-UTF-8
    string, too many items, nesting too deep, trailing bytes or a truncated
    buffer each give their own status code and name the field. The decoder
    never reads outside the buffer and allocates at most a fixed multiple of
    the frame size for what it decodes, plus a slot and an error record per
    command (about 530 bytes each, 1,024 commands at most), whatever the
    input.

    Ownership: decoded commands live in an sgmq_proto_frame_t and every
    pointer in them (strings, lists, body bytes) stays valid until the
    frame is decoded into again or destroyed. All strings are copied out of
    the input and NUL-terminated, so the input may go as soon as decode
    returns.

    Thread-safety: none needed; objects are not shared between threads.
    =========================================================================
*/
#ifndef SGMQ_PROTO_H_INCLUDED
#define SGMQ_PROTO_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SGMQ_PROTO_SIGNATURE     "SGMQ"
#define SGMQ_PROTO_VERSION       1

//  Largest frame either side sends or accepts. Big enough for a batch of
//  a few hundred 1 KiB publishes; the broker also sets ZMQ_MAXMSGSIZE to it
//  so libzmq drops a bigger frame before it reaches us.
#define SGMQ_PROTO_MAX_FRAME     (1024 * 1024)
//  The largest command a client sends: a learning alert with every list
//  full is about 41 KiB. A broker never announces a max_frame below this,
//  and a client batching commands sends its frame once it is within this
//  of the broker's max_frame, so the next command always fits.
#define SGMQ_PROTO_MAX_REQUEST   (64 * 1024)
//  Commands in one frame: enough to amortise CURVE per frame, small enough
//  that one frame cannot monopolise a broker turn.
#define SGMQ_PROTO_MAX_COMMANDS  1024
//  Deepest nesting a valid frame has (frame / command / body / list /
//  item / item's list, as in a REPORT-LEARNING recipient's groups):
//  anything deeper is hostile.
#define SGMQ_PROTO_MAX_DEPTH     6

//  Field limits, in bytes of UTF-8 (strings) or items (lists). Each is as
//  long as the partnership's paper forms allow, and no longer.
#define SGMQ_PROTO_MAX_NAME      64     //  principal, agency, group, refs
#define SGMQ_PROTO_MAX_TITLE     200
#define SGMQ_PROTO_MAX_TEXT      4000   //  summary
#define SGMQ_PROTO_MAX_SHORTTEXT 2000   //  requested, decision, notes
#define SGMQ_PROTO_MAX_ITEM      1000   //  one action, recommendation
#define SGMQ_PROTO_MAX_THEME     100
#define SGMQ_PROTO_MAX_REASON    256    //  error reason
#define SGMQ_PROTO_MAX_LIST      32     //  actions, themes, recommendations
#define SGMQ_PROTO_MAX_GROUPS    16     //  groups addressed or held
#define SGMQ_PROTO_MAX_ROLES     4
#define SGMQ_PROTO_MAX_ITEMS     1000   //  pending items per answer
#define SGMQ_PROTO_MAX_ACKS      4096   //  ack events in one replay item
#define SGMQ_PROTO_MAX_RECIPIENTS 4096  //  recipients in one report-learning
//  Keys in one map: the largest, REPORT-ESCALATION's body, has 19, and a
//  few more leave room for a later command. A longer map is refused before
//  any key is read. At most 32: the decoder keeps seen keys in a mask.
#define SGMQ_PROTO_MAX_FIELDS    24
#define SGMQ_PROTO_MAX_WINDOW    10000  //  deliveries in flight per session
#define SGMQ_PROTO_DEFAULT_WINDOW 100
#define SGMQ_PROTO_HASH_SIZE     32     //  BLAKE2b-256
#define SGMQ_PROTO_SIG_SIZE      64     //  Ed25519
#define SGMQ_PROTO_KEY_TEXT      40     //  Z85 public key

//  --------------------------------------------------------------------------
//  Status codes. 2xx ok, 4xx the request is wrong (do not retry unchanged),
//  5xx the broker could not do it now (retrying later may work). The codec
//  returns the 41x-43x codes; the broker uses all of them on the wire.

typedef enum {
    SGMQ_OK                  = 200,
    SGMQ_E_BAD_REQUEST       = 400, //  valid command, wrong moment (e.g. before hello)
    SGMQ_E_NOT_AUTHORISED    = 401, //  key not (or no longer) admitted
    SGMQ_E_FORBIDDEN         = 403, //  roles or groups do not allow it; reason names the rule
    SGMQ_E_NOT_FOUND         = 404, //  no such message, or not one of yours
    SGMQ_E_UNKNOWN_COMMAND   = 405, //  command name not in this version
    SGMQ_E_BAD_VERSION       = 406, //  frame version not supported
    SGMQ_E_CONFLICT          = 409, //  client ref reused for a different message
    SGMQ_E_MALFORMED         = 410, //  not msgpack, or not a frame array
    SGMQ_E_TRUNCATED         = 411, //  buffer ends inside an object
    SGMQ_E_TRAILING          = 412, //  bytes after the frame array
    SGMQ_E_SIGNATURE         = 413, //  first element is not "SGMQ"
    SGMQ_E_TOO_LARGE         = 414, //  frame over SGMQ_PROTO_MAX_FRAME
    SGMQ_E_TOO_MANY          = 415, //  list, map or frame has too many items
    SGMQ_E_TOO_DEEP          = 416, //  nesting over SGMQ_PROTO_MAX_DEPTH
    SGMQ_E_MISSING_FIELD     = 420, //  required field absent
    SGMQ_E_WRONG_TYPE        = 421, //  field of the wrong msgpack type
    SGMQ_E_TOO_LONG          = 422, //  string or binary over its limit
    SGMQ_E_BAD_UTF8          = 423, //  string not valid UTF-8 (or holds NUL)
    SGMQ_E_UNKNOWN_FIELD     = 424, //  key not defined for this command or kind
    SGMQ_E_BAD_VALUE         = 425, //  out of range, empty, or not in the enum
    SGMQ_E_UNKNOWN_KIND      = 426, //  message kind not in this version
    SGMQ_E_DUPLICATE_FIELD   = 427, //  a map key appears twice
    SGMQ_E_BUSY              = 429, //  too many requests in flight; slow down
    SGMQ_E_INTERNAL          = 500,
    SGMQ_E_UNAVAILABLE       = 503, //  broker shutting down or store broken
    SGMQ_E_STORAGE_FULL      = 507, //  the disk is full: nothing was stored
} sgmq_status_t;

//  Short, stable name of a status ("forbidden", "storage-full"); never NULL.
const char *
    sgmq_proto_status_name (int status);

//  --------------------------------------------------------------------------
//  Enumerations. Each has a wire name; 0 is never a valid value, so a
//  zeroed struct is "absent".

typedef enum {
    SGMQ_CMD_HELLO = 1,     //  C: open a session
    SGMQ_CMD_WELCOME,       //  S: who the broker says you are
    SGMQ_CMD_PUBLISH,       //  C: store and fan out a message
    SGMQ_CMD_CONFIRM,       //  S: it is on disk; here is its sequence number
    SGMQ_CMD_SUBSCRIBE,     //  C: start receiving deliveries
    SGMQ_CMD_SUBSCRIBED,    //  S: subscription open; backlog size
    SGMQ_CMD_DELIVER,       //  S: a message for you
    SGMQ_CMD_ACK,           //  C: I have read this message
    SGMQ_CMD_ACKED,         //  S: your ack is on disk
    SGMQ_CMD_PENDING,       //  C: what is not yet acknowledged?
    SGMQ_CMD_PENDING_ANSWER,//  S: one page of pending items
    SGMQ_CMD_REPLAY,        //  C: stream history (auditors)
    SGMQ_CMD_REPLAY_ITEM,   //  S: one stored message, with its hash and acks
    SGMQ_CMD_REPLAY_END,    //  S: end of the stream, chain head, checkpoint
    SGMQ_CMD_PING,          //  C: heartbeat
    SGMQ_CMD_PONG,          //  S: heartbeat answer
    SGMQ_CMD_BYE,           //  C: end the session now
    SGMQ_CMD_ERROR,         //  S: a request failed
    //  Added within version 1 (PROTOCOL.md, Versioning): new commands go
    //  at the end, so no earlier value moves.
    SGMQ_CMD_REPORT,        //  C: the Escalation Tracker report
    SGMQ_CMD_REPORT_ESCALATION, //  S: one escalation of the report
    SGMQ_CMD_REPORT_LEARNING,   //  S: one learning alert of the report
    SGMQ_CMD_REPORT_END,    //  S: end of the report, with its counts
    SGMQ_CMD_COUNT_         //  not a command: one past the last
} sgmq_cmd_id_t;

typedef enum {
    SGMQ_KIND_ESCALATION = 1,
    SGMQ_KIND_RESPONSE,
    SGMQ_KIND_LEARNING,
    SGMQ_KIND_LEARNING_UPDATE,
    SGMQ_KIND_REMINDER,
    SGMQ_KIND_COUNT_
} sgmq_kind_t;

typedef enum {
    SGMQ_SEVERITY_LOW = 1, SGMQ_SEVERITY_MEDIUM, SGMQ_SEVERITY_HIGH,
    SGMQ_SEVERITY_CRITICAL, SGMQ_SEVERITY_COUNT_
} sgmq_severity_t;

typedef enum {
    SGMQ_REVIEW_CSPR = 1, SGMQ_REVIEW_RAPID_REVIEW, SGMQ_REVIEW_AUDIT,
    SGMQ_REVIEW_OTHER, SGMQ_REVIEW_COUNT_
} sgmq_review_type_t;

typedef enum {
    SGMQ_HELD_SESSION = 1, SGMQ_HELD_REFLECTION, SGMQ_HELD_COUNT_
} sgmq_held_t;

typedef enum {
    SGMQ_REASON_ACK_OVERDUE = 1,      //  "ack-overdue"
    SGMQ_REASON_RESPONSE_OVERDUE,     //  "response-overdue"
    SGMQ_REASON_SESSION_DUE,          //  "learning-session-due"
    SGMQ_REASON_REFLECTION_DUE,       //  "reflection-due"
    SGMQ_REASON_COUNT_
} sgmq_reason_t;

typedef enum {
    SGMQ_SCOPE_MINE = 1,    //  "mine": my own unacknowledged deliveries
    SGMQ_SCOPE_PUBLISHED,   //  "published": who has/has not acked what I sent
    SGMQ_SCOPE_ALL,         //  "all": everyone's (executive, auditor, admin)
    SGMQ_SCOPE_COUNT_
} sgmq_scope_t;

typedef enum {
    SGMQ_STATE_PENDING = 1, //  "pending": not yet sent to the recipient
    SGMQ_STATE_DELIVERED,   //  "delivered": sent, not acknowledged
    SGMQ_STATE_FLAGGED,     //  "flagged": sent max-tries times, still no ack
    SGMQ_STATE_ACKNOWLEDGED,//  "acknowledged"
    SGMQ_STATE_COUNT_
} sgmq_dstate_t;

//  Where an escalation stands in the Escalation Tracker.
typedef enum {
    SGMQ_ESC_RAISED = 1,        //  "raised": no Executive member has acked it
    SGMQ_ESC_ACKNOWLEDGED,      //  "acknowledged": acked, no response yet
    SGMQ_ESC_RESPONDED,         //  "responded": a response refers to it
    SGMQ_ESC_COUNT_
} sgmq_esc_status_t;

//  Wire names and back. _name returns NULL for a value out of range;
//  _parse returns 0 for a name it does not know. `len` is the name length
//  (names need not be NUL-terminated).
const char *sgmq_proto_cmd_name        (int cmd);
int         sgmq_proto_cmd_parse       (const char *name, size_t len);
const char *sgmq_proto_kind_name       (int kind);
int         sgmq_proto_kind_parse      (const char *name, size_t len);
const char *sgmq_proto_severity_name   (int severity);
int         sgmq_proto_severity_parse  (const char *name, size_t len);
const char *sgmq_proto_review_name     (int review_type);
int         sgmq_proto_review_parse    (const char *name, size_t len);
const char *sgmq_proto_held_name       (int held);
int         sgmq_proto_held_parse      (const char *name, size_t len);
const char *sgmq_proto_reason_name     (int reason);
int         sgmq_proto_reason_parse    (const char *name, size_t len);
const char *sgmq_proto_scope_name      (int scope);
int         sgmq_proto_scope_parse     (const char *name, size_t len);
const char *sgmq_proto_state_name      (int state);
int         sgmq_proto_state_parse     (const char *name, size_t len);
const char *sgmq_proto_esc_status_name  (int status);
int         sgmq_proto_esc_status_parse (const char *name, size_t len);

//  --------------------------------------------------------------------------
//  Values. These are plain data, like struct tm: they hold no resources, so
//  they are not opaque. Times are milliseconds since 1970-01-01T00:00:00Z
//  (UTC, leap seconds ignored); 0 means "absent" for optional times.

typedef struct {
    uint32_t count;
    const char *const *items;           //  NUL-terminated UTF-8
} sgmq_strlist_t;

typedef struct {
    const char *group;                  //  raising group
    const char *title;
    const char *summary;
    sgmq_severity_t severity;
    const char *requested;              //  the decision or help requested
    uint64_t respond_by;
    const char *case_ref;               //  pseudonymous; NULL if absent
} sgmq_escalation_t;

typedef struct {
    uint64_t to;                        //  seq of the escalation answered
    const char *decision;
    const char *summary;
    sgmq_strlist_t action;              //  0..MAX_LIST actions
} sgmq_response_t;

typedef struct {
    sgmq_review_type_t review_type;
    const char *review_ref;
    const char *title;
    const char *summary;
    sgmq_strlist_t theme;               //  1..MAX_LIST
    sgmq_strlist_t recommendation;      //  1..MAX_LIST
    sgmq_strlist_t groups;              //  target groups, 1..MAX_GROUPS
    uint64_t session_by;                //  0: broker default (+14 days)
    uint64_t reflection_by;             //  0: broker default (+1 year)
} sgmq_learning_t;

typedef struct {
    uint64_t alert;                     //  seq of the learning alert
    sgmq_held_t held;
    uint64_t on;                        //  when it was held; 0: now
    const char *notes;                  //  NULL if absent
} sgmq_learning_update_t;

typedef struct {
    sgmq_reason_t reason;
    uint64_t about;                     //  seq of the message it is about
    sgmq_kind_t about_kind;
    const char *title;                  //  of the message it is about
    const char *group;                  //  raising or target group; may be NULL
    uint64_t due;                       //  the deadline that passed or nears
    uint32_t count;                     //  1 for the first reminder, 2...
} sgmq_reminder_t;

typedef struct {
    sgmq_kind_t kind;
    union {
        sgmq_escalation_t escalation;
        sgmq_response_t response;
        sgmq_learning_t learning;
        sgmq_learning_update_t learning_update;
        sgmq_reminder_t reminder;
    } u;
} sgmq_body_t;

typedef struct {
    uint64_t seq;
    uint64_t time;
    sgmq_kind_t kind;
    const char *recipient;
    sgmq_dstate_t state;
    uint32_t attempts;                  //  deliveries so far
    uint64_t last_delivered;            //  0 if never
    uint64_t acked_at;                  //  0 unless acknowledged
    uint64_t deadline;                  //  ack-by; 0 if none
    bool overdue;
    const char *from;                   //  publisher
    const char *title;                  //  NULL if the kind has none
} sgmq_pending_item_t;

typedef struct {
    const char *by;                     //  principal name
    const char *key;                    //  its public key, Z85
    uint64_t time;
} sgmq_ack_event_t;

//  One recipient of a learning alert, in a REPORT-LEARNING.
typedef struct {
    const char *name;                   //  principal name
    const char *agency;
    sgmq_strlist_t groups;              //  its groups (0..16)
    uint64_t acked_at;                  //  0: not acknowledged
} sgmq_recipient_t;

typedef struct {
    uint64_t seq;                       //  chain position signed
    uint64_t time;                      //  when it was signed
    uint8_t hash [SGMQ_PROTO_HASH_SIZE];
    uint8_t signature [SGMQ_PROTO_SIG_SIZE];
} sgmq_checkpoint_t;

//  One command. `id` is the request id: chosen by the client for requests
//  and echoed by the broker in the answer (0 for unsolicited DELIVER).
typedef struct {
    sgmq_cmd_id_t cmd;
    uint64_t id;
    union {
        struct { const char *client; } hello;           //  client: may be NULL
        struct {
            const char *name, *agency, *broker;
            sgmq_strlist_t roles, groups;
            uint32_t heartbeat;         //  ms between client pings
            uint32_t max_frame;
        } welcome;
        struct { const char *ref; sgmq_body_t body; } publish;
        struct { uint64_t seq, time; bool duplicate; } confirm;
        struct { uint32_t window; } subscribe;          //  0: default
        struct { uint64_t backlog; } subscribed;
        struct {
            uint64_t seq, time;
            const char *from, *agency;
            sgmq_strlist_t groups;
            uint32_t attempt;
            //  The body, decoded; and its canonical bytes (the msgpack map
            //  as sent). To write a DELIVER, set `body_bytes` to bytes from
            //  sgmq_proto_encode_body (the store's copy) and the writer
            //  embeds them as they are; else it encodes `body`.
            sgmq_body_t body;
            const uint8_t *body_bytes;
            size_t body_size;
        } deliver;
        struct { uint64_t seq; } ack;
        struct { uint64_t seq, time; bool duplicate; } acked;
        struct {
            sgmq_scope_t scope;
            bool overdue;
            uint64_t after;             //  seq cursor; 0 from the start
            uint32_t limit;             //  0: MAX_ITEMS
        } pending;
        struct {
            uint32_t count;
            const sgmq_pending_item_t *items;
            uint64_t next;              //  pass as `after`; 0: no more
        } pending_answer;
        struct {
            uint64_t from, to;          //  seq range, inclusive; 0: open
            uint64_t since, until;      //  time range, inclusive; 0: open
            const char *group;          //  NULL: any
            sgmq_kind_t kind;           //  0: any
        } replay;
        struct {
            uint64_t seq, time;
            sgmq_kind_t kind;
            const char *from, *from_key, *agency;
            sgmq_strlist_t groups;
            const uint8_t *body;        //  canonical body bytes (msgpack map)
            size_t body_size;
            uint8_t hash [SGMQ_PROTO_HASH_SIZE];
            uint8_t prev [SGMQ_PROTO_HASH_SIZE];
            uint32_t ack_count;
            const sgmq_ack_event_t *acks;
        } replay_item;
        struct {
            uint64_t count;             //  items sent
            uint64_t head_seq;          //  newest stored seq
            uint8_t head_hash [SGMQ_PROTO_HASH_SIZE];
            bool has_checkpoint;
            sgmq_checkpoint_t checkpoint;   //  newest signed checkpoint
        } replay_end;
        struct { uint64_t since, until; } report;       //  time range of raising/publishing; 0: open
        struct {
            uint64_t seq, time;                         //  the escalation; when raised
            const char *from, *agency;                  //  who raised it
            const char *group, *title;                  //  raising group, title
            sgmq_severity_t severity;
            uint64_t respond_by, ack_by;                //  deadlines
            sgmq_esc_status_t status;
            uint64_t acked_at;                          //  0: not acknowledged
            const char *acked_by;                       //  NULL if not acknowledged
            uint64_t responded_at, response_seq;        //  0: no response
            const char *decision, *response_summary;    //  NULL if no response
            bool overdue_ack, overdue_response;         //  a deadline was missed (even if met later)
            uint32_t reminders;                         //  reminders the broker sent about it
        } report_escalation;
        struct {
            uint64_t seq, time;
            const char *from, *agency, *title, *review_ref;
            sgmq_review_type_t review_type;
            sgmq_strlist_t groups;                      //  target groups
            uint64_t session_by, session_held;          //  held: 0 = not yet
            uint64_t reflection_by, reflection_held;
            uint32_t recipient_count;
            const sgmq_recipient_t *recipients;
        } report_learning;
        struct { uint64_t escalations, learning; } report_end;   //  items sent
        struct {
            uint32_t code;              //  sgmq_status_t
            const char *reason;         //  human-readable, never NULL
            const char *field;          //  offending field, or NULL
        } error;
        //  PING, PONG and BYE have an empty body.
    } u;
} sgmq_cmd_t;

//  --------------------------------------------------------------------------
//  Errors: what went wrong, where. `index` is the command's position in the
//  frame (0-based; -1 if the frame itself is bad), `id` its request id if
//  it was read (else 0), `field` a path such as "body.title" or
//  "body.theme[2]", `reason` a sentence fit for a log or a user.

typedef struct {
    int code;                           //  sgmq_status_t
    int index;
    uint64_t id;
    char field [64];
    char reason [SGMQ_PROTO_MAX_REASON];
} sgmq_proto_error_t;

//  --------------------------------------------------------------------------
//  Decoding

typedef struct _sgmq_proto_frame_t sgmq_proto_frame_t;

//  New, empty decoded frame. NULL only if out of memory.
sgmq_proto_frame_t *
    sgmq_proto_frame_new (void);

//  Destroy; NULL-safe; sets *self_p to NULL.
void
    sgmq_proto_frame_destroy (sgmq_proto_frame_t **self_p);

//  Decode a frame. Returns 0 when the frame envelope is sound; every
//  command in it is then either decoded or carries its own error (see
//  _cmd). Returns -2 when the frame as a whole is malformed (signature,
//  version, truncation, trailing bytes, too big...): `error` says why and
//  no command can be read. Earlier contents of `self` are discarded.
int __attribute__ ((warn_unused_result))
    sgmq_proto_decode (sgmq_proto_frame_t *self,
                       const uint8_t *data, size_t size,
                       sgmq_proto_error_t *error);

//  Number of commands in the last decoded frame (0 after a failed decode).
size_t
    sgmq_proto_count (sgmq_proto_frame_t *self);

//  Bytes of memory this decoded frame holds (it keeps its buffers for the
//  next decode), so a pool of them can be kept within a budget.
size_t
    sgmq_proto_frame_memory (sgmq_proto_frame_t *self);

//  Command `index` of the last decoded frame. Returns it, or NULL with
//  `error` filled (code, field, reason and, when it could be read, `id`)
//  when that command is malformed. Pointers stay valid until `self` is
//  decoded into again or destroyed.
const sgmq_cmd_t *
    sgmq_proto_cmd (sgmq_proto_frame_t *self, size_t index,
                    sgmq_proto_error_t *error);

//  Decode a canonical body (the `body` bytes of a REPLAY_ITEM, or what the
//  store holds) of the given kind into `body`. The body's strings live in
//  `self` until it is decoded into again or destroyed, so use a frame of
//  its own. Returns 0, or -2 with `error` filled.
int __attribute__ ((warn_unused_result))
    sgmq_proto_decode_body (sgmq_proto_frame_t *self, sgmq_kind_t kind,
                            const uint8_t *data, size_t size,
                            sgmq_body_t *body, sgmq_proto_error_t *error);

//  Check a body against every limit and enum of its kind (the decoder does
//  this for every body it reads; encoders do it before writing). Whether a
//  kind may be published by a client is the broker's rule, not the codec's.
//  Returns 0, or -2 with `error` filled.
int
    sgmq_proto_check_body (const sgmq_body_t *body,
                           sgmq_proto_error_t *error);

//  --------------------------------------------------------------------------
//  Encoding. A writer builds one frame of one or more commands.

typedef struct _sgmq_proto_writer_t sgmq_proto_writer_t;

sgmq_proto_writer_t *
    sgmq_proto_writer_new (void);

void
    sgmq_proto_writer_destroy (sgmq_proto_writer_t **self_p);

//  Start a new, empty frame (keeps the buffer for reuse).
void
    sgmq_proto_writer_reset (sgmq_proto_writer_t *self);

//  Append one command. Returns 0; or -1 (frame unchanged) if adding it
//  would pass SGMQ_PROTO_MAX_FRAME or SGMQ_PROTO_MAX_COMMANDS, in which case
//  send what you have, reset, and add it again; or -2 if the command itself
//  is invalid (a string over its limit, an enum out of range...), with
//  `error` filled (may be NULL). A command too big for even an empty frame
//  is -2 with SGMQ_E_TOO_LARGE (so "reset and add it again" cannot loop);
//  out of memory is -2 with SGMQ_E_INTERNAL. The writer never emits a frame
//  the decoder would reject.
int __attribute__ ((warn_unused_result))
    sgmq_proto_write (sgmq_proto_writer_t *self, const sgmq_cmd_t *cmd,
                      sgmq_proto_error_t *error);

//  Promise that every `body_bytes` given to this writer is the output of
//  sgmq_proto_encode_body, as is or read back from storage that
//  authenticates it: the writer then embeds them without decoding them
//  again, the larger part of the cost of writing a DELIVER or REPLAY-ITEM.
//  Release builds only; with assertions on, the writer still checks.
void
    sgmq_proto_writer_trust_bodies (sgmq_proto_writer_t *self);

//  The bytes of the command added last (NULL when the frame is empty),
//  valid until the next call on this writer: copy them to send the same
//  command again later, say after a reconnect.
const uint8_t *
    sgmq_proto_writer_last (sgmq_proto_writer_t *self, size_t *size);

//  Append a command as bytes taken from _writer_last (of any writer): the
//  caller vouches for them, as the writer checked them when it encoded
//  them. Returns 0; -1 (frame unchanged) if the frame is full, as _write;
//  -2 when out of memory.
int __attribute__ ((warn_unused_result))
    sgmq_proto_write_encoded (sgmq_proto_writer_t *self, const uint8_t *cmd,
                              size_t size);

//  Commands in the current frame.
size_t
    sgmq_proto_writer_count (sgmq_proto_writer_t *self);

//  The frame so far (valid while no other writer call is made). A frame
//  with no commands is not valid: check _count first.
const uint8_t *
    sgmq_proto_writer_data (sgmq_proto_writer_t *self);
size_t
    sgmq_proto_writer_size (sgmq_proto_writer_t *self);

//  Encode a body canonically: a msgpack map with the kind's fields in the
//  order PROTOCOL.md lists them, optional fields left out when absent,
//  integers in their shortest form. Equal bodies give equal bytes; this is
//  what the store keeps and the audit chain hashes. Returns a buffer the
//  caller frees with free(), with its size in *size_p, or NULL with `error`
//  filled if the body is invalid.
uint8_t *
    sgmq_proto_encode_body (const sgmq_body_t *body, size_t *size_p,
                            sgmq_proto_error_t *error);

#ifdef __cplusplus
}
#endif

#endif
