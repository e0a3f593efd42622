/*  =========================================================================
    sgmq_broker - the sgmq daemon

    The turn (see s_turn): wait for input or the next timer; answer ZAP
    requests; run the housekeeping timers (registry rescan, session expiry,
    checkpoints); drain up to a bounded number of frames from the ROUTER,
    decoding each and answering what needs no store write at once (HELLO,
    PING, BYE and every error); collect the rest as work. If there is
    write work (publishes, acks, subscribes, due redeliveries or due
    reminders), run it all in ONE store transaction (s_batch) and commit
    once; then answer the reads (PENDING, REPLAY) so they see the commit,
    apply the transaction's effects (confirms, deliveries, window state)
    and flush one frame per session.

    s_batch may run more than once (the store retries it after growing
    its map), so it never changes session state directly: it works on a
    per-turn scratch copy of each session (validated by a generation
    counter) and records effects that are applied only after the commit.

    Identity: the broker answers ZAP itself (inproc://zeromq.zap.01, bound
    before the ROUTER binds, with ZMQ_ZAP_ENFORCE_DOMAIN so no handler
    means no entry), admitting exactly the keys of the current registry.
    Every frame's sender is its ZeroMQ "User-Id" (the authenticated key),
    looked up again in the current registry, so a revoked key is refused
    at its next request even on a connection opened before the revocation
    (libzmq cannot drop one ROUTER peer).
    =========================================================================
*/
#include "sgmq_broker.h"
#include "sgmq_cert.h"
#include "sgmq_config.h"
#include "sgmq_keyfile.h"
#include "sgmq_proto.h"
#include "sgmq_registry.h"
#include "sgmq_store.h"
#include "sgmq_time.h"

#include <czmq.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Tuning. Each limit bounds what one turn or one peer can cost.

//  Frames, bytes and commands drained per turn: enough to fill one large
//  group commit, small enough that timers and other peers wait at most
//  one such batch.
#define S_DRAIN_FRAMES      1024
#define S_DRAIN_BYTES       (16 * 1024 * 1024)
#define S_DRAIN_COMMANDS    16384
//  Memory the decoded frames kept between turns may hold. A decoder keeps
//  the buffers of the largest frame it decoded, so keeping every one of
//  S_DRAIN_FRAMES would let a client pin gigabytes by sending large frames
//  at varying positions; making them anew each turn costs more than the
//  decoding (a decoder starts with a 64 KiB block). A budget does both.
#define S_FRAME_POOL_BYTES  (32 * 1024 * 1024)
//  Reminders generated per turn (the rest wait for the next turn).
#define S_TIMERS_PER_TURN   256
//  Replay and report items sent per turn, shared by the streams running
//  (each gets at least S_REPLAY_MIN_SHARE): one stream goes at full speed,
//  and sixteen reports (each item a body read and decode) no longer hold
//  a turn for a second. And the frame size a replay fills before sending
//  (small frames keep a slow auditor's queue small).
#define S_REPLAY_PER_TURN   2048
#define S_REPLAY_MIN_SHARE  64
//  Messages a replay looks at per item of its share, matching or not: a
//  query whose filters seldom meet (a group and a kind) skips most of the
//  index it walks, and without a bound one turn walked it all (a second
//  or more on a large store, while every other client waited).
#define S_REPLAY_LOOK       8
#define S_REPLAY_FRAME      (64 * 1024)
//  Queued frames per peer in libzmq. In: none bounded (ZMQ_RCVHWM 0).
//  libzmq 4.3.4 aborts the process (`!_io_error`, stream_engine_base.cpp
//  331) when a connection whose queue was full is reset with a ZMTP PING
//  still undecoded behind it: any admitted key could stop the broker
//  (tests/e2e/test_flood.py). So the queue never fills: each turn reads
//  every frame libzmq holds, and what the turn cannot handle is parked
//  here, in order, S_PARK_PEER_BYTES per connection at most and
//  S_PARK_BYTES in all (past that, S_PARK_SPARE_BYTES more for
//  connections with nothing parked, so that one flood does not cut off
//  every other peer). A frame past these is dropped and answered 429 once
//  a turn, and the connection's session ends there: every later request
//  of it is refused (400, no session) until it says HELLO again, so what
//  is handled has no gap (libsgmq then sends everything unanswered again,
//  in order). libzmq then holds about what its I/O thread decodes during
//  a turn (but see docs/broker-design.md: a never-ending multipart
//  message, or a connection reusing another's routing id, is held in
//  libzmq where the broker cannot see it).
//  Out: 256. A member that reads takes a window of large deliveries in
//  one burst of ~50 frames (at 64 the rest were dropped, to come again
//  30 s later); a peer that does not read loses the excess.
#define S_RCVHWM            0
#define S_SNDHWM            256
#define S_PARK_PEER_BYTES   (4 * 1024 * 1024)
#define S_PARK_BYTES        (128 * 1024 * 1024)
#define S_PARK_SPARE_BYTES  (32 * 1024 * 1024)
//  Counted per parked frame besides its bytes (libzmq's and ours).
#define S_PARK_OVERHEAD     256
//  Frames parked per turn at most: the loop ends even if the I/O thread
//  could keep up with it.
#define S_PARK_READS        65536
//  A session's frame goes out once it holds this much (not at max-frame),
//  so a peer that does not read pins about S_SNDHWM such frames (16 MiB of
//  deliveries) in libzmq, not S_SNDHWM frames of max-frame (256 MiB).
#define S_SESSION_FRAME     (64 * 1024)
//  libzmq checks ZMQ_MAXMSGSIZE against the CURVE MESSAGE on the wire,
//  which carries the frame plus its box (nonce, MAC, flags: under 64
//  bytes). Without this slack a frame of exactly max-frame bytes, valid by
//  the protocol, would drop the connection; our decoder still refuses
//  anything over max-frame with 414.
#define S_CURVE_OVERHEAD    256
//  How often the memory guard looks at the heap (a flood of 1 GB/s adds
//  at most this many MB past limits/max-memory).
#define S_MEMORY_CHECK_MS   100
//  Reopening the clients' socket after the memory guard dropped every
//  connection: tries, and the pause between them.
#define S_REOPEN_TRIES      100
#define S_REOPEN_PAUSE_MS   20
//  Half-finished CURVE handshakes are dropped after this long.
#define S_HANDSHAKE_MS      5000
//  Registry rescans: revocation takes effect within this plus one turn.
#define S_REGISTRY_SCAN_MS  500
//  How often in-flight deliveries are checked for redelivery.
#define S_REDELIVER_SCAN_MS 100
//  While a replay waits for a slow auditor, poll this often (libzmq's
//  ROUTER cannot say when one peer's pipe has room again).
#define S_BLOCKED_POLL_MS   1
//  Malformed input is logged as a warning at most this often (with a
//  count), so a hostile client cannot flood the log.
#define S_BAD_WARN_MS       10000
//  After a batch the store could not take, due timers wait this long
//  before the next try, doubling up to the max.
#define S_TIMERS_RETRY_MS      100
#define S_TIMERS_RETRY_MAX_MS  10000
//  Longest sleep when nothing is due (housekeeping still runs).
#define S_IDLE_POLL_MS      1000
//  Deliveries refilling windows per batch, across sessions: about what a
//  turn's acks free in a fan-out, far below a storm of SUBSCRIBEs with
//  the largest windows.
#define S_REFILL_PER_TURN   16384
//  Session timeouts a stream may stay blocked before its session ends.
#define S_STREAM_STALLS     4
//  A session's SUBSCRIBEs are taken at most this often (429 otherwise).
#define S_SUBSCRIBE_GAP_MS  1000
//  How often free heap goes back to the system and dead readers' slots
//  in the store are freed.
#define S_TRIM_MS           10000
//  Pending answers are computed up to this many items.
#define S_PENDING_MAX       SGMQ_PROTO_MAX_ITEMS
//  PENDING's cost is bounded: one request looks at this many deliveries at
//  most (a message with none counts as one; its page then ends early, with
//  `next` to go on); once the requests of a turn have looked at
//  S_PENDING_TURN_SCAN, the rest get 429; a session has at most
//  S_PENDING_PER_TURN of its requests taken per turn.
//  (Each item looked at is a body read and decode, about 40 us: a turn's
//  PENDING work stays under about 100 ms, however many sessions ask.)
#define S_PENDING_SCAN      1000
#define S_PENDING_TURN_SCAN 2000
#define S_PENDING_PER_TURN  2
//  A `published` page token that ends inside a message (see
//  s_pending_published): this bit, the seq above 16 bits (seqs stay below
//  2^47: 4,000 years at 1,000 a second), a recipient index.
#define S_PENDING_SPLIT     (UINT64_C (1) << 63)
//  A scope `all` page token: the session's page number above 32 bits, the
//  items given before it + 1 in these (see s_pending).
#define S_PENDING_GIVEN     UINT64_C (0xffffffff)
//  A learning-update's `on` may be this far ahead of the broker's clock.
#define S_CLOCK_LEEWAY_MS   (10 * 60 * 1000)
//  The name and key stamped on messages the broker itself publishes.
#define S_BROKER_NAME       SGMQ_REGISTRY_BROKER_NAME
#define S_BROKER_AGENCY     "sgmq"
//  ZAP (RFC 27): the inproc endpoint libzmq calls, and our domain.
#define S_ZAP_ENDPOINT      "inproc://zeromq.zap.01"
#define S_ZAP_DOMAIN        "sgmq"
//  libzmq's ZMQ_ZAP_ENFORCE_DOMAIN (a draft option in 4.3's headers):
//  without it a CURVE server with no ZAP handler admits any key.
#define S_ZMQ_ZAP_ENFORCE_DOMAIN 93
//  Routing ids are at most 255 bytes; as hex plus NUL.
#define S_ID_HEX            (255 * 2 + 1)
//  The routing ids libzmq makes for peers that chose none: a zero byte and
//  a 32-bit counter.
#define S_ZMQ_ROUTING_ID_SIZE 5
//  Shutdown: how long queued replies may take to leave.
#define S_LINGER_MS         1000
//  Timer codes stored with each reminder timer (the store's `what`).
#define S_TIMER_ACK         1u
#define S_TIMER_RESPONSE    2u
#define S_TIMER_SESSION     3u
#define S_TIMER_REFLECTION  4u
//  In the data directory: held (flock) while a broker runs.
#define S_LOCK_FILE         "broker.lock"
//  What `sgmq init` leaves in a new deployment's data folder: the broker
//  makes a new, empty store only where it finds it (and then removes it).
#define S_NEW_STORE_FILE    "new-store"
#define S_STORE_FILE        "data.mdb"

//  --------------------------------------------------------------------------
//  Logging: one line per event, level-filtered, to stderr (journald adds
//  its own timestamps; we add ours for plain terminals). Never bodies,
//  never secrets: names, public keys, sizes and codes only.

typedef enum { S_LOG_ERROR, S_LOG_WARNING, S_LOG_INFO, S_LOG_DEBUG } s_level_t;
static s_level_t s_log_level = S_LOG_INFO;
static const char *s_level_names [] = { "error", "warning", "info", "debug" };
//  syslog priorities of the levels (err, warning, info, debug), which
//  journald reads from a "<N>" prefix.
static const int s_level_priority [] = { 3, 4, 6, 7 };
//  Under systemd (JOURNAL_STREAM is set), prefix priorities and leave the
//  timestamps to journald.
static bool s_log_journal;

static void
__attribute__ ((format (printf, 2, 3)))
s_log (s_level_t level, const char *format, ...)
{
    if (level > s_log_level)
        return;
    char line [1024];
    va_list args;
    va_start (args, format);
    vsnprintf (line, sizeof line, format, args);
    va_end (args);
    if (s_log_journal)
        fprintf (stderr, "<%d>%s: %s\n", s_level_priority [level], s_level_names [level], line);
    else {
        char when [SGMQ_TIME_TEXT_SIZE];
        sgmq_time_format (sgmq_time_now () / 1000 * 1000, when);
        fprintf (stderr, "%s sgmq-broker %s: %s\n", when, s_level_names [level], line);
    }
}

//  --------------------------------------------------------------------------
//  Types

typedef struct {
    uint64_t seq;
    uint32_t attempts;
    int64_t due;                //  monotonic ms of the next redelivery
    uint64_t acked_gen;         //  batch (broker gen) that acked it, if any
} s_inflight_t;

//  A streamed answer: a REPLAY or a REPORT. Items go out frame by frame
//  across turns, pausing while the client's queue is full.
typedef struct {
    bool report;                //  REPORT (else REPLAY)
    sgmq_store_query_t query;   //  REPLAY: what to send
    char group [SGMQ_PROTO_MAX_NAME + 1];
    char kind [SGMQ_STORE_MAX_KIND + 1];
    uint64_t since, until;      //  REPORT: the period
    uint64_t first;             //  REPORT: first seq stored in the period
    int phase;                  //  REPORT: escalations, learning, end
    uint64_t request;           //  id of the request
    uint64_t next;              //  next seq to look at
    uint64_t count;             //  items sent (REPORT: escalations)
    uint64_t learning;          //  REPORT: learning items sent
    bool blocked;               //  the client is not reading
    int64_t blocked_since;      //  s_mono ms it became so
    bool ended;                 //  the end command is written
    sgmq_proto_writer_t *out;   //  frame being filled or waiting to go
} s_replay_t;

typedef struct _s_session_t s_session_t;
struct _s_session_t {
    char id [S_ID_HEX];
    uint8_t routing [256];
    size_t routing_size;
    char key [SGMQ_CERT_KEY_TEXT + 1];
    char name [SGMQ_REGISTRY_MAX_NAME + 1];
    int64_t last_seen;
    int64_t subscribed_at;      //  s_mono ms of its last SUBSCRIBE taken
    bool closing;               //  BYE or revoked: destroyed at end of turn
    //  Delivery state (applied after each commit)
    bool subscribed;
    uint32_t window;
    uint64_t cursor;            //  highest seq considered for this session
    bool behind;                //  unacked messages past cursor wait in store
    //  Sorted by seq. An acked entry stays as a tombstone (attempts 0)
    //  until tombstones are half the array: acks come oldest first, and
    //  shifting the whole window on each would cost O(window) per ack.
    s_inflight_t *inflight;
    size_t inflight_len;        //  entries in use, tombstones included
    size_t inflight_count;      //  live entries
    size_t inflight_capacity;
    int64_t next_due;           //  earliest inflight due; INT64_MAX: none
    s_replay_t *replay;
    //  PENDING: requests taken in turn `pending_turn`; where the last page
    //  of scope `all` ended (its `next`, filter and position).
    uint64_t pending_turn;
    uint32_t pending_taken;
    uint64_t all_next, all_seq;
    uint32_t all_page;
    bool all_overdue;
    char all_recipient [SGMQ_STORE_MAX_NAME + 1];
    //  Output: commands queued this turn, sent as one frame per flush
    sgmq_proto_writer_t *out;
    bool dirty;
    uint64_t dropped;           //  frames the peer did not take
    //  Scratch copy for s_batch, valid when scratch_gen == broker gen
    uint64_t scratch_gen;
    size_t s_inflight;
    uint64_t s_cursor;
    bool s_behind, s_subscribed;
    bool s_refill_cut, refill_cut;  //  the batch's refill budget ran out on it
    bool s_reset;               //  subscribed afresh in this batch
    uint32_t s_window;
};

//  Members that are behind (their windows full) are refilled from the
//  store, each reading the same messages: one lookup and one body
//  decryption per member. Stored messages never change, so the broker keeps
//  what it read for delivery, or stored while a subscribed recipient was
//  behind, by seq, direct-mapped (a slot holds the last seq that maps to
//  it), with the DELIVER encoded from it. Bodies over S_RECENT_MAX_BODY are
//  not kept: with the protocol's limits on names that bounds the memory to
//  S_RECENT_SLOTS * 2 * (S_RECENT_MAX_BODY + names), about 22 MiB at worst,
//  5 MiB with 1 KiB bodies.
#define S_RECENT_SLOTS      2048
#define S_RECENT_MAX_BODY   4096

typedef struct {
    sgmq_store_record_t record; //  seq 0: empty; pointers into `data`
    const char *groups [SGMQ_PROTO_MAX_GROUPS + 2];
    uint8_t *data;              //  body, then the names
    size_t capacity, used;
    //  The DELIVER made from it for attempt `attempt` (0: none yet), the
    //  same bytes for every member
    uint8_t *deliver;
    size_t deliver_size, deliver_capacity;
    uint32_t attempt;
} s_recent_t;

//  Acks of the same escalation from every Executive member: only the first
//  moves it on from RAISED, and a status never goes back, so the seqs known
//  past RAISED (or not escalations) save the others a lookup. Direct-mapped
//  like the recent messages; kept for good only after the commit that made
//  it true, and meanwhile for the rest of the batch.
#define S_SETTLED_SLOTS     4096

//  A command (or broker-made message) that needs the store.
typedef struct {
    s_session_t *session;       //  NULL for the broker's own messages
    const sgmq_cmd_t *cmd;
    //  What the principal was when the command arrived
    const sgmq_principal_t *principal;
    //  Outcome, set by s_batch
    int status;                 //  0 or an sgmq_status_t error
    char reason [SGMQ_PROTO_MAX_REASON];
    const char *field;
    uint64_t seq, time;
    bool duplicate;
    bool settled;               //  an ack found no RAISED escalation at seq
    bool keep_recent;           //  a subscribed recipient will read it back
    uint64_t backlog;
    //  Message content kept for live deliveries
    sgmq_kind_t kind;
    uint8_t *body;
    size_t body_size;
    const char *groups [SGMQ_PROTO_MAX_GROUPS + 2];
    uint32_t group_count;
    char group_copy [SGMQ_PROTO_MAX_GROUPS + 2][SGMQ_PROTO_MAX_NAME + 1];
    //  A broker-made reminder
    bool internal;
    sgmq_body_t reminder;
    char reminder_title [SGMQ_PROTO_MAX_TITLE + 1];
    char reminder_group [SGMQ_PROTO_MAX_NAME + 1];
} s_work_t;

typedef enum {
    S_FX_DELIVER,               //  send seq to session (work: content at hand)
    S_FX_FLAG                   //  stop redelivering seq to session
} s_fx_type_t;

typedef struct {
    s_fx_type_t type;
    s_session_t *session;
    s_work_t *work;             //  NULL: read the message from the store
    uint64_t seq;
    uint32_t attempt;
} s_effect_t;

//  A frame read from libzmq that a turn's budget left for the next turn.
typedef struct _s_parked_t s_parked_t;
struct _s_parked_t {
    s_parked_t *next;
    zmq_msg_t routing, payload;
    bool multipart;
};

//  What one connection has parked, oldest first.
typedef struct {
    s_parked_t *head, *tail;
    size_t bytes;
    uint64_t answered;          //  turn of its last 429 for a dropped frame
    bool dropping;              //  a frame was dropped: drop until drained
    void *handle;               //  in the broker's parked_ring
} s_peer_park_t;

struct _sgmq_broker_t {
    char *config_path;
    sgmq_config_t *config;
    sgmq_cert_t *cert;
    sgmq_registry_t *registry;
    uint8_t registry_sig [SGMQ_REGISTRY_SIG_SIZE];
    int64_t registry_warned;    //  when an unreadable certs dir was last logged
    sgmq_store_t *store;
    int lock;                   //  flock on the data directory
    zsock_t *router;
    zsock_t *zap;
    char endpoint [256];
    int signal_pipe [2];
    zhashx_t *sessions;         //  id -> s_session_t (owned)
    zhashx_t *by_name;          //  name -> zlistx of s_session_t (borrowed)
    //  Frames read but not handled yet (S_RCVHWM)
    zhashx_t *parked_by_peer;   //  routing id (hex) -> s_peer_park_t (owned)
    zlistx_t *parked_ring;      //  those with frames, the next to serve first
    size_t parked_bytes;
    //  Per-turn state
    sgmq_proto_frame_t **frames;    //  pool, one per frame drained
    size_t frame_count, frame_capacity;
    s_work_t *work;
    size_t work_count, work_capacity;
    s_work_t *reads;            //  PENDING and REPLAY, after the commit
    size_t read_count, read_capacity;
    zlistx_t *closing;          //  sessions to destroy at the end of the turn
    s_work_t *internal;         //  broker-made messages of this turn
    size_t internal_count, internal_capacity;
    s_effect_t *effects;
    size_t effect_count, effect_capacity;
    s_session_t **touched;      //  sessions with scratch this turn
    size_t touched_count, touched_capacity;
    s_session_t **due;          //  sessions with redeliveries due
    size_t due_count, due_capacity;
    zlistx_t *dirty;            //  sessions with output queued
    uint64_t gen;
    uint64_t turn;              //  turns taken
    size_t pending_scanned;     //  deliveries PENDING looked at this turn
    s_recent_t *recent;         //  S_RECENT_SLOTS, made at first use
    uint64_t settled [S_SETTLED_SLOTS]; //  seqs with no RAISED escalation
    struct { uint64_t seq, gen; } settling [S_SETTLED_SLOTS]; //  this batch's
    sgmq_proto_frame_t *body_frame; //  for decoding stored bodies
    sgmq_proto_writer_t *scratch_writer;
    //  Refusals to the connection whose frame is being handled gather in
    //  one frame (s_error_to): a frame of 1,024 refused commands was
    //  answered by 1,024 frames, which filled a peer's queue out.
    sgmq_proto_writer_t *refusals;
    const uint8_t *refusals_to;     //  that connection's routing id, or NULL
    size_t refusals_to_size;
    //  Timers
    int64_t next_registry_scan;
    int64_t next_redeliver_scan;
    int64_t next_checkpoint;
    int64_t next_trim;          //  s_mono ms of the next malloc_trim
    size_t heap_settled;        //  heap bytes at start or after the guard
    int64_t next_memory_check;
    uint64_t next_store_timer;  //  wall ms; 0: none
    uint64_t s_next_store_timer;
    int64_t timers_retry_at;    //  after a failed batch: mono ms; 0: at once
    int64_t timers_backoff;
    int64_t next_store_warning; //  "batch not stored": mono ms
    uint64_t store_unwarned;
    bool any_blocked;           //  a replay waits for a slow auditor
    DIR *certs_listing;         //  the certs folder, open from the start
    bool replay_more;           //  a replay has more to send right away
    size_t refill_budget;       //  deliveries refills may still take this batch
    bool refill_more;           //  a window was left part-filled: next turn
    size_t replays;             //  sessions with a replay running
    volatile sig_atomic_t stop;
    bool broken;
    bool unbound;               //  the guard could not listen again
    //  Counters (logged at shutdown)
    uint64_t frames_in, commands_in, bad_frames, commits, refused;
    uint64_t bad_commands;      //  commands refused by the codec
    uint64_t dropped;           //  frames dropped unread (over the park)
    uint64_t bad_unwarned;      //  bad input since the last warning
    int64_t next_bad_warning;
};

//  The broker whose signal handler is installed (one per process).
static sgmq_broker_t *s_signalled;

//  --------------------------------------------------------------------------
//  Small helpers

//  Grow a vector to hold `need` items; 0 or -1.
static int
s_reserve (void **items, size_t *capacity, size_t need, size_t item_size)
{
    if (need <= *capacity)
        return 0;
    size_t bigger = *capacity ? *capacity * 2 : 16;
    while (bigger < need)
        bigger *= 2;
    void *grown = realloc (*items, bigger * item_size);
    if (!grown)
        return -1;
    *items = grown;
    *capacity = bigger;
    return 0;
}
#define S_RESERVE(vec, cap, need) \
    s_reserve ((void **) &(vec), &(cap), (need), sizeof *(vec))

static int64_t
s_mono (void)
{
    return zclock_mono ();
}

static void
s_hex (const uint8_t *data, size_t size, char *out)
{
    static const char digits [] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out [2 * i] = digits [data [i] >> 4];
        out [2 * i + 1] = digits [data [i] & 15];
    }
    out [2 * size] = 0;
}

//  Copy at most size-1 bytes of UTF-8 text, cut at a character boundary
//  (names and titles are copied into fixed fields).
static void
s_copy (char *dest, size_t size, const char *src)
{
    size_t len = src ? strlen (src) : 0;
    if (len >= size) {
        len = size - 1;
        while (len && ((unsigned char) src [len] & 0xc0) == 0x80)
            len--;
    }
    if (len)
        memcpy (dest, src, len);
    dest [len] = 0;
}

//  --------------------------------------------------------------------------
//  Sessions

static s_session_t *
s_session_find (sgmq_broker_t *self, const uint8_t *routing, size_t size)
{
    char id [S_ID_HEX];
    s_hex (routing, size, id);
    return zhashx_lookup (self->sessions, id);
}

static zlistx_t *
s_sessions_of (sgmq_broker_t *self, const char *name)
{
    return zhashx_lookup (self->by_name, name);
}

//  zhashx destructors take the address of the item.
static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_session_free (void **item)
{
    s_session_t *session = *item;
    *item = NULL;
    if (!session)
        return;
    free (session->inflight);
    if (session->replay)
        sgmq_proto_writer_destroy (&session->replay->out);
    free (session->replay);
    sgmq_proto_writer_destroy (&session->out);
    free (session);
}

//  Forget a session now: its unacknowledged messages wait in the store.
static void
s_session_drop (sgmq_broker_t *self, s_session_t *session, const char *why)
{
    s_log (S_LOG_INFO, "session closed name=\"%s\" key=%s why=%s",
           session->name, session->key, why);
    zlistx_t *list = s_sessions_of (self, session->name);
    if (list) {
        void *handle = zlistx_find (list, session);
        if (handle)
            zlistx_delete (list, handle);
        if (zlistx_size (list) == 0)
            zhashx_delete (self->by_name, session->name);
    }
    if (session->dirty) {
        void *handle = zlistx_find (self->dirty, session);
        if (handle)
            zlistx_delete (self->dirty, handle);
    }
    if (session->replay)
        self->replays--;
    zhashx_delete (self->sessions, session->id);    //  frees it
}

//  Position of `seq` among the entries (tombstones keep their seq, so the
//  array stays sorted); *found if it is there and live.
static size_t
s_inflight_find (const s_session_t *session, uint64_t seq, bool *found)
{
    size_t lo = 0, hi = session->inflight_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (session->inflight [mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < session->inflight_len && session->inflight [lo].seq == seq
          && session->inflight [lo].attempts;
    return lo;
}

//  Squeeze out the tombstones.
static void
s_inflight_compact (s_session_t *session)
{
    size_t live = 0;
    for (size_t i = 0; i < session->inflight_len; i++)
        if (session->inflight [i].attempts)
            session->inflight [live++] = session->inflight [i];
    session->inflight_len = live;
}

static void
s_inflight_remove (s_session_t *session, uint64_t seq)
{
    bool found;
    size_t at = s_inflight_find (session, seq, &found);
    if (!found)
        return;
    session->inflight [at].attempts = 0;
    session->inflight_count--;
    if (2 * (session->inflight_len - session->inflight_count) > session->inflight_len)
        s_inflight_compact (session);
}

//  Forget every entry (a fresh subscription).
static void
s_inflight_clear (s_session_t *session)
{
    session->inflight_len = session->inflight_count = 0;
    session->next_due = INT64_MAX;
}

//  Record a delivery: a new inflight entry, or one more attempt.
static int
s_inflight_put (sgmq_broker_t *self, s_session_t *session, uint64_t seq,
                uint32_t attempt)
{
    bool found;
    size_t at = s_inflight_find (session, seq, &found);
    bool reuse = !found && at < session->inflight_len && session->inflight [at].seq == seq;
    if (!found && !reuse) {
        //  New deliveries come in seq order, so this is nearly always an
        //  append; an insert in the middle first squeezes the tombstones.
        if (at < session->inflight_len) {
            s_inflight_compact (session);
            at = s_inflight_find (session, seq, &found);
        }
        if (S_RESERVE (session->inflight, session->inflight_capacity,
                       session->inflight_len + 1))
            return -1;
        memmove (&session->inflight [at + 1], &session->inflight [at],
                 (session->inflight_len - at) * sizeof *session->inflight);
        session->inflight_len++;
    }
    if (!found)
        session->inflight_count++;
    //  Backoff doubles per attempt from redeliver-first, up to redeliver-max.
    uint64_t first = sgmq_config_duration (self->config, SGMQ_OPT_REDELIVER_FIRST).amount;
    uint64_t most = sgmq_config_duration (self->config, SGMQ_OPT_REDELIVER_MAX).amount;
    uint64_t backoff = first;
    for (uint32_t i = 1; i < attempt && backoff < most; i++)
        backoff *= 2;
    if (backoff > most)
        backoff = most;
    session->inflight [at] = (s_inflight_t) {
        .seq = seq, .attempts = attempt, .due = s_mono () + (int64_t) backoff
    };
    if (session->inflight [at].due < session->next_due)
        session->next_due = session->inflight [at].due;
    //  An idle broker scans once a second: not later than this is due.
    if (session->inflight [at].due < self->next_redeliver_scan)
        self->next_redeliver_scan = session->inflight [at].due;
    return 0;
}

//  Queue a command for the session's next frame; sends the frame first if
//  the command does not fit.
static void s_send_frame (sgmq_broker_t *self, s_session_t *session);
static void s_close_later (sgmq_broker_t *self, s_session_t *session);

//  A writer for frames to clients. Every body the broker sends is bytes
//  it encoded itself, or read back from the store (which authenticates
//  them), so the writer need not check them again.
static sgmq_proto_writer_t *
s_writer_new (void)
{
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    if (writer)
        sgmq_proto_writer_trust_bodies (writer);
    return writer;
}

static void
s_queued (sgmq_broker_t *self, s_session_t *session);

static void
s_reply (sgmq_broker_t *self, s_session_t *session, const sgmq_cmd_t *cmd)
{
    if (!session->out && !(session->out = s_writer_new ()))
        return;
    sgmq_proto_error_t error;
    int rc = sgmq_proto_write (session->out, cmd, &error);
    if (rc == -1) {
        s_send_frame (self, session);
        rc = sgmq_proto_write (session->out, cmd, &error);
    }
    if (rc != 0) {
        //  Our own answer failed the codec: a bug, never the peer's fault.
        s_log (S_LOG_ERROR, "cannot encode %s for \"%s\": %s",
               sgmq_proto_cmd_name (cmd->cmd), session->name, error.reason);
        return;
    }
    s_queued (self, session);
}

//  s_reply with a command already encoded (by sgmq_proto_write).
static void
s_reply_encoded (sgmq_broker_t *self, s_session_t *session,
                 const uint8_t *cmd, size_t size)
{
    if (!session->out && !(session->out = s_writer_new ()))
        return;
    int rc = sgmq_proto_write_encoded (session->out, cmd, size);
    if (rc == -1) {
        s_send_frame (self, session);
        rc = sgmq_proto_write_encoded (session->out, cmd, size);
    }
    if (rc != 0) {
        s_log (S_LOG_ERROR, "out of memory queueing a delivery for \"%s\"",
               session->name);
        return;
    }
    s_queued (self, session);
}

//  A command was added to the session's frame: send the frame when it is
//  big enough, else at the end of the turn.
static void
s_queued (sgmq_broker_t *self, s_session_t *session)
{
    if (sgmq_proto_writer_size (session->out) >= S_SESSION_FRAME)
        s_send_frame (self, session);
    else
    if (!session->dirty) {
        session->dirty = true;
        zlistx_add_end (self->dirty, session);
    }
}

//  Send raw bytes to a routing id. 0, or -1 with errno (EHOSTUNREACH:
//  peer gone; EAGAIN: peer not reading).
static int
s_send_raw (sgmq_broker_t *self, const uint8_t *routing, size_t routing_size,
            const uint8_t *data, size_t size)
{
    void *handle = zsock_resolve (self->router);
    if (zmq_send (handle, routing, routing_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    //  The first part was queued, so the pipe has room for the second.
    return zmq_send (handle, data, size, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

static void
s_send_frame (sgmq_broker_t *self, s_session_t *session)
{
    if (!session->out || sgmq_proto_writer_count (session->out) == 0)
        return;
    if (s_send_raw (self, session->routing, session->routing_size,
                    sgmq_proto_writer_data (session->out),
                    sgmq_proto_writer_size (session->out))) {
        if (errno == EHOSTUNREACH)
            //  The peer is gone: forget its session at the end of this
            //  turn (a flag alone would keep it, and its slot, for good).
            s_close_later (self, session);
        else
        if (session->dropped++ == 0)
            s_log (S_LOG_WARNING, "peer not reading name=\"%s\" key=%s: "
                   "dropping answers; its messages wait in the store",
                   session->name, session->key);
    }
    sgmq_proto_writer_reset (session->out);
}

//  Sends the refusals gathered for the connection whose frame is being
//  handled.
static void
s_refusals_flush (sgmq_broker_t *self)
{
    if (self->refusals_to && sgmq_proto_writer_count (self->refusals))
        s_send_raw (self, self->refusals_to, self->refusals_to_size,
                    sgmq_proto_writer_data (self->refusals),
                    sgmq_proto_writer_size (self->refusals));
    sgmq_proto_writer_reset (self->refusals);
}

//  An error answer straight to a routing id (no session needed).
static void
__attribute__ ((format (printf, 7, 8)))
s_error_to (sgmq_broker_t *self, const uint8_t *routing, size_t routing_size,
            uint64_t id, int code, const char *field, const char *format, ...)
{
    sgmq_cmd_t cmd = { .cmd = SGMQ_CMD_ERROR, .id = id };
    char reason [SGMQ_PROTO_MAX_REASON];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    cmd.u.error.code = (uint32_t) code;
    cmd.u.error.reason = reason;
    cmd.u.error.field = field && *field ? field : NULL;
    self->refused++;
    if (self->refusals_to && routing_size == self->refusals_to_size
    &&  memcmp (routing, self->refusals_to, routing_size) == 0) {
        int rc = sgmq_proto_write (self->refusals, &cmd, NULL);
        if (rc == -1) {
            s_refusals_flush (self);
            rc = sgmq_proto_write (self->refusals, &cmd, NULL);
        }
        if (rc != 0)
            s_log (S_LOG_ERROR, "cannot encode an ERROR %d", code);
        return;
    }
    sgmq_proto_writer_t *writer = self->scratch_writer;
    sgmq_proto_writer_reset (writer);
    if (sgmq_proto_write (writer, &cmd, NULL) == 0)
        s_send_raw (self, routing, routing_size, sgmq_proto_writer_data (writer),
                    sgmq_proto_writer_size (writer));
}

static void
__attribute__ ((format (printf, 6, 7)))
s_error (sgmq_broker_t *self, s_session_t *session, uint64_t id, int code,
         const char *field, const char *format, ...)
{
    sgmq_cmd_t cmd = { .cmd = SGMQ_CMD_ERROR, .id = id };
    char reason [SGMQ_PROTO_MAX_REASON];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    cmd.u.error.code = (uint32_t) code;
    cmd.u.error.reason = reason;
    cmd.u.error.field = field && *field ? field : NULL;
    s_reply (self, session, &cmd);
    self->refused++;
}

//  --------------------------------------------------------------------------
//  ZAP (RFC 27): admit exactly the keys in the current registry.

static void
s_zap_serve (sgmq_broker_t *self)
{
    while (true) {
        zmsg_t *request = zmsg_recv_nowait (self->zap);
        if (!request)
            break;
        char *version = zmsg_popstr (request);
        char *sequence = zmsg_popstr (request);
        char *domain = zmsg_popstr (request);
        char *address = zmsg_popstr (request);
        zframe_t *identity = zmsg_pop (request);
        char *mechanism = zmsg_popstr (request);
        zframe_t *credentials = zmsg_pop (request);
        const char *status = "400", *text = "not admitted";
        char key [SGMQ_CERT_KEY_TEXT + 1] = "";
        if (!version || strcmp (version, "1.0") || !mechanism || !domain)
            text = "malformed ZAP request";
        else
        if (strcmp (mechanism, "CURVE") != 0)
            text = "CURVE only";
        else
        if (strcmp (domain, S_ZAP_DOMAIN) != 0)
            text = "wrong domain";
        else
        if (credentials && zframe_size (credentials) == SGMQ_CERT_KEY_SIZE) {
            zmq_z85_encode (key, zframe_data (credentials), SGMQ_CERT_KEY_SIZE);
            const sgmq_principal_t *principal = sgmq_registry_lookup (self->registry, key);
            if (principal) {
                status = "200";
                text = "OK";
            }
            s_log (principal ? S_LOG_DEBUG : S_LOG_INFO, "handshake %s key=%s "
                   "address=%s", principal ? "admitted" : "refused (key not "
                   "admitted)", key, address ? address : "?");
        }
        zmsg_t *reply = zmsg_new ();
        zmsg_addstr (reply, "1.0");
        zmsg_addstr (reply, sequence ? sequence : "");
        zmsg_addstr (reply, status);
        zmsg_addstr (reply, text);
        //  User-Id: the key itself. No metadata: identity comes from our
        //  registry on every request, never from the connection.
        zmsg_addstr (reply, strcmp (status, "200") == 0 ? key : "");
        zmsg_addmem (reply, "", 0);
        zmsg_send (&reply, self->zap);
        free (version);
        free (sequence);
        free (domain);
        free (address);
        free (mechanism);
        zframe_destroy (&identity);
        zframe_destroy (&credentials);
        zmsg_destroy (&request);
    }
}

//  --------------------------------------------------------------------------
//  Registry: rescan the certs folder; swap in a new registry on change.

static const sgmq_principal_t *
s_principal (sgmq_broker_t *self, const char *key)
{
    return sgmq_registry_lookup (self->registry, key);
}

static void
s_registry_log_problems (sgmq_registry_t *registry)
{
    for (size_t i = 0; i < sgmq_registry_problem_count (registry); i++)
        s_log (S_LOG_WARNING, "certificate rejected: %s",
               sgmq_registry_problem (registry, i));
}

//  Same name, agency, roles and groups (either may be NULL: not admitted).
static bool
s_principal_same (const sgmq_principal_t *p, const sgmq_principal_t *q)
{
    if (!p || !q)
        return p == q;
    if (strcmp (sgmq_principal_name (p), sgmq_principal_name (q))
    ||  strcmp (sgmq_principal_agency (p), sgmq_principal_agency (q))
    ||  sgmq_principal_roles (p) != sgmq_principal_roles (q)
    ||  sgmq_principal_group_count (p) != sgmq_principal_group_count (q))
        return false;
    for (size_t g = 0; g < sgmq_principal_group_count (p); g++)
        if (!sgmq_principal_in_group (q, sgmq_principal_group (p, g)))
            return false;
    return true;
}

//  True if two registries admit the same keys as the same principals.
static bool
s_registry_same (const sgmq_registry_t *a, const sgmq_registry_t *b)
{
    if (sgmq_registry_size (a) != sgmq_registry_size (b)
    ||  sgmq_registry_problem_count (a) != sgmq_registry_problem_count (b))
        return false;
    for (size_t i = 0; i < sgmq_registry_size (b); i++) {
        const sgmq_principal_t *p = sgmq_registry_at (b, i);
        if (!s_principal_same (p, sgmq_registry_lookup (a, sgmq_principal_key (p))))
            return false;
    }
    return true;
}

//  The current principals but those whose cert file is gone or changed,
//  found through the certs folder held open; NULL when it is not held.
static sgmq_registry_t *
s_registry_listed (sgmq_broker_t *self)
{
    return self->certs_listing ? sgmq_registry_keep (self->registry,
                                                     dirfd (self->certs_listing))
                               : NULL;
}

//  A new registry, or NULL to keep the current one. A certs directory that
//  is gone admits nobody (revoking everyone must not fail open); one that
//  cannot be read otherwise (a disk error, too many files, no descriptor
//  left) keeps who was admitted but those whose cert is gone or changed,
//  with a warning at most once a minute.
static sgmq_registry_t *
s_registry_reload (sgmq_broker_t *self, const char *dir)
{
    uint8_t signature [SGMQ_REGISTRY_SIG_SIZE];
    char error [512] = "";
    sgmq_registry_t *registry = NULL;
    if (sgmq_registry_signature (dir, signature) == 0) {
        if (memcmp (signature, self->registry_sig, sizeof signature) == 0)
            return NULL;
        registry = sgmq_registry_load (dir, sgmq_config_group_ids (self->config),
                                       sgmq_config_group_count (self->config), error);
    }
    struct stat st;
    if (!registry && (stat (dir, &st) ? errno == ENOENT || errno == ENOTDIR
                                      : !S_ISDIR (st.st_mode))) {
        memset (signature, 0, sizeof signature);
        if (memcmp (signature, self->registry_sig, sizeof signature) == 0)
            return NULL;                //  already empty for this reason
        s_log (S_LOG_ERROR, "%s: the certs directory is gone: no principal is "
               "admitted until it is back", dir);
        registry = sgmq_registry_new_empty ();
    }
    else
    if (!registry) {
        //  Peers can hold every descriptor (each connection is one): the
        //  folder, held open from the start, still says which certs are
        //  gone or changed, and those keys are out. (The signature stays,
        //  so a whole reload follows once files can be opened again.)
        registry = s_registry_listed (self);
        if (!self->registry_warned || s_mono () - self->registry_warned >= 60000) {
            if (!*error) {
                //  The signature failed before any load: a load names why.
                sgmq_registry_t *probe = sgmq_registry_load (dir, NULL, 0, error);
                sgmq_registry_destroy (&probe);
            }
            if (!*error)
                snprintf (error, sizeof error, "%s: cannot read the certs "
                          "directory", dir);
            s_log (S_LOG_WARNING, "%s; keeping the current principals%s", error,
                   registry ? " but those whose cert file is gone or changed" : "");
            self->registry_warned = s_mono ();
        }
        return registry;
    }
    if (registry) {
        memcpy (self->registry_sig, signature, sizeof signature);
        self->registry_warned = 0;
    }
    return registry;
}

static void
s_registry_rescan (sgmq_broker_t *self)
{
    const char *dir = sgmq_config_str (self->config, SGMQ_OPT_CERTS);
    sgmq_registry_t *registry = s_registry_reload (self, dir);
    if (!registry)
        return;
    if (s_registry_same (self->registry, registry)) {
        //  Files were touched, or aged out of content hashing; nobody changed.
        sgmq_registry_destroy (&registry);
        return;
    }
    s_registry_log_problems (registry);
    s_log (S_LOG_INFO, "principals reloaded count=%zu rejected=%zu",
           sgmq_registry_size (registry), sgmq_registry_problem_count (registry));
    //  Sessions whose key is gone, or whose name, agency, roles or groups
    //  changed, end now: a subscription, replay or report was allowed by
    //  what the key was when it started. The client starts again under
    //  what it is now (libsgmq does so by itself).
    zlistx_t *gone = zlistx_new ();
    for (s_session_t *session = zhashx_first (self->sessions); session;
         session = zhashx_next (self->sessions)) {
        const sgmq_principal_t *was = sgmq_registry_lookup (self->registry, session->key);
        const sgmq_principal_t *now = sgmq_registry_lookup (registry, session->key);
        if (!now || !was || !s_principal_same (was, now))
            zlistx_add_end (gone, session);
    }
    sgmq_registry_destroy (&self->registry);
    self->registry = registry;
    //  A DELIVER names its sender's agency as the registry has it now.
    for (size_t i = 0; self->recent && i < S_RECENT_SLOTS; i++)
        self->recent [i].attempt = 0;
    for (s_session_t *session = zlistx_first (gone); session;
         session = zlistx_next (gone))
        s_session_drop (self, session, s_principal (self, session->key)
                                       ? "rights changed" : "revoked");
    zlistx_destroy (&gone);
}

//  --------------------------------------------------------------------------
//  Immediate commands: HELLO, PING, BYE

static void
s_hello (sgmq_broker_t *self, const uint8_t *routing, size_t routing_size,
         const char *key, const sgmq_principal_t *principal, uint64_t id)
{
    s_session_t *session = s_session_find (self, routing, routing_size);
    if (session && (session->closing || strcmp (session->key, key) != 0)) {
        //  This connection's earlier session ends with this turn (BYE,
        //  expiry, or another key on a reused routing id): it cannot be
        //  taken over, and a new one cannot start before it is gone.
        s_close_later (self, session);
        s_error_to (self, routing, routing_size, id, SGMQ_E_BUSY, NULL,
                    "the previous session on this connection is closing; "
                    "say HELLO again");
        return;
    }
    if (!session) {
        //  A session lives on its connection's routing id. One the client
        //  chose (ZMQ_ROUTING_ID) can be claimed by another key once the
        //  connection drops, and with it the session's deliveries; libzmq's
        //  own (a zero byte, then a counter from a random start) cannot.
        if (routing_size != S_ZMQ_ROUTING_ID_SIZE || routing [0] != 0) {
            s_error_to (self, routing, routing_size, id, SGMQ_E_BAD_REQUEST, NULL,
                        "rule routing-id: do not set ZMQ_ROUTING_ID; let ZeroMQ "
                        "choose the connection's routing id");
            return;
        }
        size_t of_key = 0;
        zlistx_t *list = s_sessions_of (self, sgmq_principal_name (principal));
        for (s_session_t *s = list ? zlistx_first (list) : NULL; s;
             s = zlistx_next (list))
            of_key += strcmp (s->key, key) == 0;
        if ((int64_t) zhashx_size (self->sessions)
            >= sgmq_config_int (self->config, SGMQ_OPT_MAX_SESSIONS)) {
            s_error_to (self, routing, routing_size, id, SGMQ_E_BUSY, NULL,
                        "the broker has its maximum number of sessions; try later");
            return;
        }
        if ((int64_t) of_key >= sgmq_config_int (self->config, SGMQ_OPT_SESSIONS_PER_KEY)) {
            s_error_to (self, routing, routing_size, id, SGMQ_E_BUSY, NULL,
                        "this key already has %zu sessions, the most allowed", of_key);
            return;
        }
        session = calloc (1, sizeof *session);
        if (!session)
            return;
        s_hex (routing, routing_size, session->id);
        memcpy (session->routing, routing, routing_size);
        session->routing_size = routing_size;
        s_copy (session->key, sizeof session->key, key);
        s_copy (session->name, sizeof session->name, sgmq_principal_name (principal));
        session->next_due = INT64_MAX;
        zhashx_insert (self->sessions, session->id, session);
        if (!list) {
            list = zlistx_new ();
            zhashx_insert (self->by_name, session->name, list);
        }
        zlistx_add_end (list, session);
        s_log (S_LOG_INFO, "session opened name=\"%s\" agency=\"%s\" key=%s",
               session->name, sgmq_principal_agency (principal), key);
    }
    session->last_seen = s_mono ();
    const char *roles [SGMQ_PROTO_MAX_ROLES];
    uint32_t role_count = 0;
    for (uint32_t role = 1; role <= SGMQ_ROLE_ADMIN; role <<= 1)
        if (sgmq_principal_has_role (principal, role))
            roles [role_count++] = sgmq_registry_role_name (role);
    sgmq_cmd_t welcome = { .cmd = SGMQ_CMD_WELCOME, .id = id };
    welcome.u.welcome.name = sgmq_principal_name (principal);
    welcome.u.welcome.agency = sgmq_principal_agency (principal);
    welcome.u.welcome.broker = SGMQ_BROKER_VERSION;
    welcome.u.welcome.roles = (sgmq_strlist_t) { role_count, roles };
    welcome.u.welcome.groups = (sgmq_strlist_t) {
        (uint32_t) sgmq_principal_group_count (principal),
        sgmq_principal_groups (principal)
    };
    welcome.u.welcome.heartbeat =
        (uint32_t) sgmq_config_duration (self->config, SGMQ_OPT_HEARTBEAT).amount;
    welcome.u.welcome.max_frame =
        (uint32_t) sgmq_config_int (self->config, SGMQ_OPT_MAX_FRAME);
    s_reply (self, session, &welcome);
}

//  --------------------------------------------------------------------------
//  Scratch state: what a session will be after this turn's commit.

static s_session_t *
s_scratch (sgmq_broker_t *self, s_session_t *session)
{
    if (session->scratch_gen != self->gen) {
        session->scratch_gen = self->gen;
        session->s_inflight = session->inflight_count;
        session->s_cursor = session->cursor;
        session->s_behind = session->behind;
        session->s_subscribed = session->subscribed;
        session->s_window = session->window;
        session->s_reset = false;
        session->s_refill_cut = false;
        if (S_RESERVE (self->touched, self->touched_capacity, self->touched_count + 1) == 0)
            self->touched [self->touched_count++] = session;
    }
    return session;
}

static int
s_effect (sgmq_broker_t *self, s_fx_type_t type, s_session_t *session,
          s_work_t *work, uint64_t seq, uint32_t attempt)
{
    if (S_RESERVE (self->effects, self->effect_capacity, self->effect_count + 1))
        return -1;
    self->effects [self->effect_count++] = (s_effect_t) {
        .type = type, .session = session, .work = work, .seq = seq,
        .attempt = attempt
    };
    return 0;
}

static void
__attribute__ ((format (printf, 4, 5)))
s_refuse (s_work_t *work, int code, const char *field, const char *format, ...)
{
    work->status = code;
    work->field = field;
    va_list args;
    va_start (args, format);
    vsnprintf (work->reason, sizeof work->reason, format, args);
    va_end (args);
}

//  A store error inside the batch: fatal ones abort the whole
//  transaction (the store makes sure of it); we only record it.
static int
s_store_failed (s_work_t *work, int rc)
{
    s_refuse (work, SGMQ_E_UNAVAILABLE, NULL, "store: %s", sgmq_store_strerror (rc));
    return rc;
}

static bool
s_is_executive (const sgmq_principal_t *principal)
{
    return sgmq_principal_in_group (principal, "executive");
}

static bool
s_learning_publisher (sgmq_broker_t *self, const sgmq_principal_t *principal)
{
    for (size_t i = 0; i < sgmq_principal_group_count (principal); i++)
        if (sgmq_config_learning_group (self->config, sgmq_principal_group (principal, i)))
            return true;
    return false;
}

static void
s_add_group (s_work_t *work, const char *group)
{
    for (uint32_t i = 0; i < work->group_count; i++)
        if (strcmp (work->groups [i], group) == 0)
            return;
    if (work->group_count == SGMQ_PROTO_MAX_GROUPS)
        return;
    s_copy (work->group_copy [work->group_count], SGMQ_PROTO_MAX_NAME + 1, group);
    work->groups [work->group_count] = work->group_copy [work->group_count];
    work->group_count++;
}

static int
s_strcmp_p (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

//  Whether a new message goes to this session now: it is subscribed, its
//  window has room and it is not catching up from the store (then the
//  message reaches it through the refill, in order).
static bool
s_takes_live (sgmq_broker_t *self, s_session_t *session)
{
    s_scratch (self, session);
    return session->s_subscribed && !session->s_behind
        && session->s_inflight < session->s_window;
}

//  Whether this publish retries a message stored under its ref: a check
//  that would refuse it now (a date passed, a group emptied) must let it
//  go on to be answered as the duplicate it is.
static bool
s_is_retry (sgmq_store_txn_t *txn, const char *sender, const char *ref)
{
    uint64_t seq;
    return ref && sgmq_store_ref_find (txn, sender, ref, &seq) == 0;
}

//  Store a message (a client's publish or the broker's reminder) whose
//  kind, groups and canonical body are in `work`, and plan its live
//  deliveries. 0, or a store error (fatal to the transaction).
static int
s_store_message (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_work_t *work,
                 const char *sender, const char *sender_key, const char *ref,
                 const uint8_t *digest)
{
    //  Recipients: every member of every addressed group, once, but not
    //  the sender (nobody acknowledges their own message).
    const char *recipients [SGMQ_PROTO_MAX_ACKS];
    size_t count = 0;
    for (uint32_t g = 0; g < work->group_count; g++) {
        size_t members = 0;
        const char *const *names = sgmq_registry_members (self->registry,
                                                          work->groups [g], &members);
        for (size_t m = 0; m < members; m++) {
            if (strcmp (names [m], sender) == 0)
                continue;
            if (count == SGMQ_PROTO_MAX_ACKS) {
                s_refuse (work, SGMQ_E_FORBIDDEN, "body", "more than %d recipients",
                          SGMQ_PROTO_MAX_ACKS);
                return 0;
            }
            recipients [count++] = names [m];
        }
    }
    qsort (recipients, count, sizeof *recipients, s_strcmp_p);
    size_t unique = 0;
    for (size_t i = 0; i < count; i++)
        if (unique == 0 || strcmp (recipients [unique - 1], recipients [i]))
            recipients [unique++] = recipients [i];
    //  Learning that reaches nobody is not learning shared: say so.
    if (!unique && work->kind == SGMQ_KIND_LEARNING && !s_is_retry (txn, sender, ref)) {
        s_refuse (work, SGMQ_E_BAD_VALUE, "body.groups", "no principal with the member "
                  "role is in %s: nobody would receive it", work->group_count == 1
                  ? "that group" : "those groups");
        return 0;
    }

    //  Who gets it live: the store records those deliveries with the
    //  append itself, one write per recipient instead of two.
    uint32_t live [SGMQ_PROTO_MAX_ACKS];
    for (size_t r = 0; r < unique; r++) {
        live [r] = 0;
        zlistx_t *list = s_sessions_of (self, recipients [r]);
        for (s_session_t *session = list ? zlistx_first (list) : NULL; session;
             session = zlistx_next (list))
            live [r] += s_takes_live (self, session);
    }
    sgmq_store_msg_t msg = {
        .sender = sender, .sender_key = sender_key,
        .kind = sgmq_proto_kind_name (work->kind),
        .groups = work->groups, .group_count = work->group_count,
        .recipients = recipients, .recipient_count = (uint32_t) unique,
        .delivered = live,
        .max_tries = (uint32_t) sgmq_config_int (self->config, SGMQ_OPT_MAX_TRIES),
        .body = work->body, .body_size = work->body_size,
        .ref = ref, .ref_digest = digest
    };
    sgmq_store_appended_t appended;
    int rc = sgmq_store_append (txn, &msg, &appended);
    if (rc == SGMQ_STORE_E_CONFLICT) {
        s_refuse (work, SGMQ_E_CONFLICT, "ref", "ref '%s' was used for a different "
                  "message (seq %llu)", ref, (unsigned long long) appended.seq);
        return 0;
    }
    if (rc == SGMQ_STORE_E_INVALID) {
        s_refuse (work, SGMQ_E_BAD_VALUE, NULL, "the store refused the message");
        return 0;
    }
    if (rc)
        return s_store_failed (work, rc);
    work->seq = appended.seq;
    work->time = appended.time;
    work->duplicate = appended.duplicate;
    if (appended.duplicate)
        return 0;

    //  Live deliveries, to the sessions counted above (same test, same
    //  state: nothing changed a window in between).
    for (size_t r = 0; r < unique; r++) {
        zlistx_t *list = s_sessions_of (self, recipients [r]);
        for (s_session_t *session = list ? zlistx_first (list) : NULL; session;
             session = zlistx_next (list)) {
            if (!s_takes_live (self, session)) {
                if (session->s_subscribed)
                    session->s_behind = work->keep_recent = true;
                continue;
            }
            if (s_effect (self, S_FX_DELIVER, session, work, work->seq, 1))
                return s_store_failed (work, ENOMEM);
            session->s_inflight++;
            session->s_cursor = work->seq;
        }
    }
    return 0;
}

//  Authorize a publish and work out where it goes. 0 when allowed (the
//  groups are in `work`), else the refusal is in `work`.
//  A learning-update's session was not held before its alert or in the
//  future (a little leeway for the publisher's clock). 0, or -1 refused.
//  (A retry of a stored update passes again: these do not depend on it.)
static int
s_check_held (sgmq_store_txn_t *txn, s_work_t *work, uint64_t published)
{
    const sgmq_learning_update_t *u = &work->cmd->u.publish.body.u.learning_update;
    uint64_t now = sgmq_store_txn_time (txn);
    if (u->on && u->on > now + S_CLOCK_LEEWAY_MS) {
        s_refuse (work, SGMQ_E_BAD_VALUE, "body.on", "a session cannot have been held "
                  "in the future");
        return -1;
    }
    if (u->on && u->on < published) {
        s_refuse (work, SGMQ_E_BAD_VALUE, "body.on", "learning alert %llu was "
                  "published after that time", (unsigned long long) u->alert);
        return -1;
    }
    return 0;
}

//  The time deadlines are counted from and judged by: the wall clock. The
//  store's time never goes back (message times stay in order), so once
//  the clock was ahead, even briefly, it stays ahead of the truth until
//  the clock catches up, and deadlines counted or judged by it would come
//  late or pass at once.
static uint64_t
s_deadline_now (sgmq_store_txn_t *txn)
{
    uint64_t wall = sgmq_time_now (), stored = sgmq_store_txn_time (txn);
    return wall < stored ? wall : stored;
}

//  A deadline the publisher gave that has already passed (beyond the clock
//  leeway) is refused: it would be overdue, and remind, from the start.
static int
s_check_due (sgmq_store_txn_t *txn, s_work_t *work, uint64_t due, const char *field,
             const char *what)
{
    uint64_t now = s_deadline_now (txn);
    if (!due || due >= now || now - due <= S_CLOCK_LEEWAY_MS
    ||  s_is_retry (txn, sgmq_principal_name (work->principal), work->cmd->u.publish.ref))
        return 0;
    char when [SGMQ_TIME_TEXT_SIZE];
    s_refuse (work, SGMQ_E_BAD_VALUE, field, "%s (%s) has already passed", what,
              sgmq_time_format_uk (due, when));
    return -1;
}

static int
s_authorize_publish (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_work_t *work)
{
    const sgmq_principal_t *principal = work->principal;
    const sgmq_body_t *body = &work->cmd->u.publish.body;
    switch (body->kind) {
        case SGMQ_KIND_ESCALATION: {
            const char *group = body->u.escalation.group;
            if (!sgmq_principal_has_role (principal, SGMQ_ROLE_PUBLISHER)) {
                s_refuse (work, SGMQ_E_FORBIDDEN, "kind", "rule escalation-publisher: "
                          "raising an escalation needs the publisher role");
                return -1;
            }
            if (!sgmq_config_group_known (self->config, group)) {
                s_refuse (work, SGMQ_E_BAD_VALUE, "body.group", "unknown group '%s'", group);
                return -1;
            }
            if (!sgmq_principal_in_group (principal, group)
            &&  !sgmq_config_may_escalate_for (self->config,
                     sgmq_principal_agency (principal), group)) {
                s_refuse (work, SGMQ_E_FORBIDDEN, "body.group", "rule escalation-group: "
                          "you may raise escalations only for groups you belong to "
                          "(not '%s')", group);
                return -1;
            }
            if (s_check_due (txn, work, body->u.escalation.respond_by, "body.respond_by",
                             "the date to respond by"))
                return -1;
            s_add_group (work, "executive");
            return 0;
        }
        case SGMQ_KIND_RESPONSE: {
            if (!s_is_executive (principal)) {
                s_refuse (work, SGMQ_E_FORBIDDEN, "kind", "rule response-executive: "
                          "only members of the executive group may respond");
                return -1;
            }
            sgmq_store_escalation_t escalation;
            int rc = sgmq_store_escalation_get (txn, body->u.response.to, &escalation);
            if (rc == SGMQ_STORE_E_NOT_FOUND) {
                s_refuse (work, SGMQ_E_NOT_FOUND, "body.to", "no escalation with seq %llu",
                          (unsigned long long) body->u.response.to);
                return -1;
            }
            if (rc)
                return s_store_failed (work, rc);
            s_add_group (work, escalation.group);
            s_add_group (work, "executive");
            return 0;
        }
        case SGMQ_KIND_LEARNING:
        case SGMQ_KIND_LEARNING_UPDATE: {
            if (!s_learning_publisher (self, principal)) {
                s_refuse (work, SGMQ_E_FORBIDDEN, "kind", "rule learning-publishers: "
                          "learning alerts and updates come only from members of %s",
                          sgmq_config_str (self->config, SGMQ_OPT_LEARNING_GROUPS));
                return -1;
            }
            if (body->kind == SGMQ_KIND_LEARNING) {
                const sgmq_strlist_t *groups = &body->u.learning.groups;
                for (uint32_t i = 0; i < groups->count; i++) {
                    if (!sgmq_config_group_known (self->config, groups->items [i])) {
                        s_refuse (work, SGMQ_E_BAD_VALUE, "body.groups",
                                  "unknown group '%s'", groups->items [i]);
                        return -1;
                    }
                    //  A set: a name twice would be stored, reported and
                    //  counted twice, though routed once. (A retry of one
                    //  stored before this rule is still its duplicate.)
                    for (uint32_t j = 0; j < i; j++)
                        if (streq (groups->items [j], groups->items [i])
                        &&  !s_is_retry (txn, sgmq_principal_name (principal),
                                         work->cmd->u.publish.ref)) {
                            s_refuse (work, SGMQ_E_BAD_VALUE, "body.groups",
                                      "group '%s' is named twice", groups->items [i]);
                            return -1;
                        }
                    s_add_group (work, groups->items [i]);
                }
                if (s_check_due (txn, work, body->u.learning.session_by, "body.session_by",
                                 "the learning session's date")
                ||  s_check_due (txn, work, body->u.learning.reflection_by,
                                 "body.reflection_by", "the reflection session's date"))
                    return -1;
                return 0;
            }
            sgmq_store_learning_t learning;
            int rc = sgmq_store_learning_get (txn, body->u.learning_update.alert, &learning);
            if (rc == SGMQ_STORE_E_NOT_FOUND) {
                s_refuse (work, SGMQ_E_NOT_FOUND, "body.alert", "no learning alert "
                          "with seq %llu", (unsigned long long) body->u.learning_update.alert);
                return -1;
            }
            sgmq_store_record_t record;
            if (rc == 0)
                rc = sgmq_store_get (txn, body->u.learning_update.alert, &record);
            if (rc)
                return s_store_failed (work, rc);
            if (s_check_held (txn, work, record.time))
                return -1;
            for (uint32_t i = 0; i < record.group_count; i++)
                s_add_group (work, record.groups [i]);
            return 0;
        }
        case SGMQ_KIND_REMINDER:
        default:
            s_refuse (work, SGMQ_E_FORBIDDEN, "kind", "rule reminders: only the broker "
                      "publishes reminders");
            return -1;
    }
}

//  A reminder timer for `seq`: at `due`, or at the start of the next
//  working hours when `due` falls outside them (deadlines/remind-hours).
static int
s_remind (sgmq_broker_t *self, sgmq_store_txn_t *txn, uint64_t seq, uint32_t what,
          uint64_t due)
{
    return sgmq_store_timer_set (txn, seq, what, sgmq_config_remind_at (self->config, due));
}

//  When a session's reminder first comes: `learning-notice` before its
//  date, or at the date when that notice is already past.
static uint64_t
s_session_timer (sgmq_broker_t *self, uint64_t due, uint64_t now)
{
    uint64_t notice = sgmq_config_before (self->config, SGMQ_OPT_LEARNING_NOTICE, due);
    return notice > now ? notice : due;
}

//  Tracking records and reminder timers of a newly stored message.
static int
s_track (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_work_t *work,
         const sgmq_body_t *body)
{
    int rc = 0;
    uint64_t now = s_deadline_now (txn);
    switch (body->kind) {
        case SGMQ_KIND_ESCALATION: {
            sgmq_store_escalation_t e = {
                .seq = work->seq, .status = SGMQ_STORE_ESC_RAISED, .raised = work->time,
                .ack_by = sgmq_config_deadline (self->config, SGMQ_OPT_ESCALATION_ACK_BY, now),
                .respond_by = body->u.escalation.respond_by
            };
            s_copy (e.group, sizeof e.group, body->u.escalation.group);
            rc = sgmq_store_escalation_put (txn, &e);
            if (rc == 0)
                rc = s_remind (self, txn, work->seq, S_TIMER_ACK, e.ack_by);
            if (rc == 0)
                rc = s_remind (self, txn, work->seq, S_TIMER_RESPONSE, e.respond_by);
            break;
        }
        case SGMQ_KIND_RESPONSE: {
            sgmq_store_escalation_t e;
            uint64_t to = body->u.response.to;
            rc = sgmq_store_escalation_get (txn, to, &e);
            if (rc)
                break;
            if (e.status != SGMQ_STORE_ESC_RESPONDED) {
                //  Its ack deadline may have passed with no timer fired
                //  yet (work goes before timers in a turn).
                if (e.status == SGMQ_STORE_ESC_RAISED && now > e.ack_by)
                    e.overdue |= SGMQ_STORE_OVERDUE_ACK;
                e.status = SGMQ_STORE_ESC_RESPONDED;
                e.responded_at = work->time;
                if (now > e.respond_by)
                    e.overdue |= SGMQ_STORE_OVERDUE_RESPONSE;
            }
            e.response_seq = work->seq;
            rc = sgmq_store_escalation_put (txn, &e);
            for (uint32_t what = S_TIMER_ACK; rc == 0 && what <= S_TIMER_RESPONSE; what++) {
                rc = sgmq_store_timer_cancel (txn, to, what);
                if (rc == SGMQ_STORE_E_NOT_FOUND)
                    rc = 0;
            }
            break;
        }
        case SGMQ_KIND_LEARNING: {
            sgmq_store_learning_t l = {
                .seq = work->seq,
                .session_by = body->u.learning.session_by,
                .reflection_by = body->u.learning.reflection_by
            };
            rc = sgmq_store_learning_put (txn, &l);
            //  Sessions without a date (reviews other than CSPRs that gave
            //  none) are not tracked.
            if (rc == 0 && l.session_by)
                rc = s_remind (self, txn, work->seq, S_TIMER_SESSION,
                               s_session_timer (self, l.session_by, now));
            if (rc == 0 && l.reflection_by)
                rc = s_remind (self, txn, work->seq, S_TIMER_REFLECTION,
                               s_session_timer (self, l.reflection_by, now));
            break;
        }
        case SGMQ_KIND_LEARNING_UPDATE: {
            const sgmq_learning_update_t *u = &body->u.learning_update;
            sgmq_store_learning_t l;
            rc = sgmq_store_learning_get (txn, u->alert, &l);
            if (rc)
                break;
            //  The first update of a session counts (the tracker's "held on
            //  time" is about it); a later one is stored and delivered only.
            uint64_t held = u->on ? u->on : now;
            bool session = u->held == SGMQ_HELD_SESSION;
            if (session && !l.session_held) {
                l.session_held = held;
                l.session_update = work->seq;
            }
            else
            if (!session && !l.reflection_held) {
                l.reflection_held = held;
                l.reflection_update = work->seq;
            }
            rc = sgmq_store_learning_put (txn, &l);
            if (rc == 0)
                rc = sgmq_store_timer_cancel (txn, u->alert,
                                              session ? S_TIMER_SESSION : S_TIMER_REFLECTION);
            if (rc == SGMQ_STORE_E_NOT_FOUND)
                rc = 0;
            break;
        }
        default:
            break;
    }
    return rc ? s_store_failed (work, rc) : 0;
}

//  Deadlines the broker fills in when a learning alert from a CSPR leaves
//  them out, counted from `time` (the alert's publication): the learning
//  session and the reflection a year on are the CSPR process's. Other
//  reviews' sessions are tracked only when the alert gives their dates.
static void
s_fill_defaults (sgmq_broker_t *self, sgmq_body_t *body, uint64_t time)
{
    if (body->kind != SGMQ_KIND_LEARNING || body->u.learning.review_type != SGMQ_REVIEW_CSPR)
        return;
    if (!body->u.learning.session_by)
        body->u.learning.session_by =
            sgmq_config_deadline (self->config, SGMQ_OPT_LEARNING_SESSION, time);
    if (!body->u.learning.reflection_by)
        body->u.learning.reflection_by =
            sgmq_config_deadline (self->config, SGMQ_OPT_REFLECTION, time);
}

//  A publish whose (sender, ref) was already stored: the same message (a
//  retry) or another one under a reused ref? Compare it with what was
//  stored, its defaults counted from the original's time. Retries are
//  rare, so this costs nothing on the common path (no digest per publish).
static int
s_check_retry (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_work_t *work)
{
    sgmq_store_record_t record;
    int rc = sgmq_store_get (txn, work->seq, &record);
    if (rc)
        return s_store_failed (work, rc);
    sgmq_body_t body = work->cmd->u.publish.body;
    s_fill_defaults (self, &body, record.time);
    sgmq_proto_error_t error;
    size_t size = 0;
    uint8_t *again = sgmq_proto_encode_body (&body, &size, &error);
    bool same = again && strcmp (record.kind, sgmq_proto_kind_name (body.kind)) == 0
             && size == record.body_size && memcmp (again, record.body, size) == 0;
    free (again);
    if (!same)
        s_refuse (work, SGMQ_E_CONFLICT, "ref", "ref '%s' was used for a different "
                  "message (seq %llu)", work->cmd->u.publish.ref,
                  (unsigned long long) work->seq);
    return 0;
}

static int
s_publish (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_work_t *work)
{
    work->group_count = 0;
    int rc = s_authorize_publish (self, txn, work);
    if (rc)
        return work->status == SGMQ_E_UNAVAILABLE ? rc : 0;
    sgmq_body_t body = work->cmd->u.publish.body;
    s_fill_defaults (self, &body, sgmq_store_txn_time (txn));
    sgmq_proto_error_t error;
    size_t size = 0;
    uint8_t *stored = sgmq_proto_encode_body (&body, &size, &error);
    if (!stored) {
        s_refuse (work, error.code, error.field, "%s", error.reason);
        return 0;
    }
    free (work->body);
    work->body = stored;
    work->body_size = size;
    work->kind = body.kind;
    //  No digest: the store stores a (sender, ref) once and says when it
    //  saw it before; s_check_retry then tells a retry from a reuse.
    rc = s_store_message (self, txn, work, sgmq_principal_name (work->principal),
                          sgmq_principal_key (work->principal),
                          work->cmd->u.publish.ref, NULL);
    if (rc || work->status)
        return rc;
    if (work->duplicate)
        return s_check_retry (self, txn, work);
    return s_track (self, txn, work, &body);
}

static int
s_ack (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_work_t *work)
{
    const char *name = sgmq_principal_name (work->principal);
    uint64_t seq = work->cmd->u.ack.seq;
    sgmq_store_acked_t acked;
    int rc = sgmq_store_ack (txn, name, sgmq_principal_key (work->principal), seq, &acked);
    if (rc == SGMQ_STORE_E_NOT_FOUND) {
        s_refuse (work, SGMQ_E_NOT_FOUND, "seq", "you are not a recipient of "
                  "message %llu", (unsigned long long) seq);
        return 0;
    }
    if (rc)
        return s_store_failed (work, rc);
    work->seq = seq;
    work->time = acked.time;
    work->duplicate = acked.duplicate;
    //  The slot this message held in each of the principal's windows frees,
    //  once: a repeated ack (even within this turn, before s_apply takes
    //  the seq out of the in-flight lists) frees nothing more.
    zlistx_t *list = acked.duplicate ? NULL : s_sessions_of (self, name);
    for (s_session_t *session = list ? zlistx_first (list) : NULL; session;
         session = zlistx_next (list)) {
        bool found;
        size_t at = s_inflight_find (session, seq, &found);
        s_scratch (self, session);
        if (found && session->s_inflight)
            session->s_inflight--;
        if (found)                      //  not to be redelivered this batch
            session->inflight [at].acked_gen = self->gen;
    }
    size_t slot = seq % S_SETTLED_SLOTS;
    if (acked.duplicate || !s_is_executive (work->principal)
    ||  self->settled [slot] == seq
    ||  (self->settling [slot].seq == seq && self->settling [slot].gen == self->gen))
        return 0;
    //  The first Executive acknowledgement moves an escalation on.
    sgmq_store_escalation_t e;
    rc = sgmq_store_escalation_get (txn, seq, &e);
    work->settled = rc == SGMQ_STORE_E_NOT_FOUND || rc == 0;
    if (work->settled) {
        self->settling [slot].seq = seq;
        self->settling [slot].gen = self->gen;
    }
    if (rc == SGMQ_STORE_E_NOT_FOUND)
        return 0;
    if (rc == 0 && e.status == SGMQ_STORE_ESC_RAISED) {
        e.status = SGMQ_STORE_ESC_ACKNOWLEDGED;
        e.acked_at = acked.time;
        s_copy (e.acked_by, sizeof e.acked_by, name);
        if (s_deadline_now (txn) > e.ack_by)
            e.overdue |= SGMQ_STORE_OVERDUE_ACK;
        rc = sgmq_store_escalation_put (txn, &e);
        if (rc == 0) {
            rc = sgmq_store_timer_cancel (txn, seq, S_TIMER_ACK);
            if (rc == SGMQ_STORE_E_NOT_FOUND)
                rc = 0;
        }
    }
    return rc ? s_store_failed (work, rc) : 0;
}

static int
s_subscribe (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_work_t *work)
{
    //  Deliveries go to members only (PROTOCOL.md 5.5): the other roles
    //  may not open a stream at all.
    if (!sgmq_principal_has_role (work->principal, SGMQ_ROLE_MEMBER)) {
        s_refuse (work, SGMQ_E_FORBIDDEN, NULL, "rule subscribe-members: only "
                  "principals with the member role receive deliveries");
        return 0;
    }
    s_session_t *session = s_scratch (self, work->session);
    uint32_t window = work->cmd->u.subscribe.window;
    //  Subscribing (again) starts the stream afresh: everything still
    //  unacknowledged comes again, oldest first.
    session->s_subscribed = true;
    session->s_window = window ? window
                      : (uint32_t) sgmq_config_int (self->config, SGMQ_OPT_WINDOW);
    session->s_inflight = 0;
    session->s_cursor = 0;
    session->s_behind = true;
    session->s_reset = true;
    int rc = sgmq_store_unacked_count (txn, session->name, &work->backlog);
    return rc ? s_store_failed (work, rc) : 0;
}

//  --------------------------------------------------------------------------
//  Reminders: due timers become broker-published messages.

//  Start a work item. Not memset: an item is about 1.6 KB (group names,
//  reminder text), set per publish, and most of it is written only when
//  used; these are the fields every path reads.
static void
s_work_init (s_work_t *work, s_session_t *session, const sgmq_cmd_t *cmd,
             const sgmq_principal_t *principal)
{
    work->session = session;
    work->cmd = cmd;
    work->principal = principal;
    work->status = 0;
    work->reason [0] = 0;
    work->field = NULL;
    work->seq = work->time = work->backlog = 0;
    work->duplicate = false;
    work->kind = 0;
    work->body = NULL;
    work->body_size = 0;
    work->group_count = 0;
    work->internal = false;
}

static s_work_t *
s_internal_new (sgmq_broker_t *self)
{
    //  Reserved at start-up for S_TIMERS_PER_TURN: never reallocated during
    //  a batch, so effects may point into it.
    if (self->internal_count == self->internal_capacity)
        return NULL;
    s_work_t *work = &self->internal [self->internal_count++];
    s_work_init (work, NULL, NULL, NULL);
    memset (&work->reminder, 0, sizeof work->reminder);
    work->internal = true;
    return work;
}

//  Title and kind of stored message `seq`, for a reminder about it.
static int
s_about (sgmq_broker_t *self, sgmq_store_txn_t *txn, uint64_t seq, s_work_t *work,
         sgmq_kind_t *kind)
{
    sgmq_store_record_t record;
    int rc = sgmq_store_get (txn, seq, &record);
    if (rc)
        return rc;
    *kind = (sgmq_kind_t) sgmq_proto_kind_parse (record.kind, strlen (record.kind));
    sgmq_body_t body;
    sgmq_proto_error_t error;
    const char *title = NULL;
    if (*kind && sgmq_proto_decode_body (self->body_frame, *kind, record.body,
                                         record.body_size, &body, &error) == 0)
        title = *kind == SGMQ_KIND_ESCALATION ? body.u.escalation.title
              : *kind == SGMQ_KIND_LEARNING ? body.u.learning.title : NULL;
    snprintf (work->reminder_title, sizeof work->reminder_title, "%s",
              title ? title : "(untitled)");
    for (uint32_t i = 0; i < record.group_count; i++)
        s_add_group (work, record.groups [i]);
    return 0;
}

static int
s_fire_timer (sgmq_broker_t *self, sgmq_store_txn_t *txn,
              const sgmq_store_timer_t *timer, uint64_t now)
{
    int rc = sgmq_store_timer_cancel (txn, timer->seq, timer->what);
    if (rc)
        return rc;
    s_work_t *work = s_internal_new (self);
    if (!work)
        return 0;               //  more next turn
    sgmq_reminder_t *r = &work->reminder.u.reminder;
    work->reminder.kind = SGMQ_KIND_REMINDER;
    r->about = timer->seq;
    uint64_t rearm = 0;
    if (timer->what == S_TIMER_ACK || timer->what == S_TIMER_RESPONSE) {
        sgmq_store_escalation_t e;
        rc = sgmq_store_escalation_get (txn, timer->seq, &e);
        bool ack = timer->what == S_TIMER_ACK;
        if (rc || (ack ? e.status != SGMQ_STORE_ESC_RAISED
                       : e.status == SGMQ_STORE_ESC_RESPONDED)) {
            self->internal_count--;
            return rc == SGMQ_STORE_E_NOT_FOUND ? 0 : rc;
        }
        e.overdue |= ack ? SGMQ_STORE_OVERDUE_ACK : SGMQ_STORE_OVERDUE_RESPONSE;
        e.reminders++;
        e.last_reminder = now;
        rc = sgmq_store_escalation_put (txn, &e);
        r->reason = ack ? SGMQ_REASON_ACK_OVERDUE : SGMQ_REASON_RESPONSE_OVERDUE;
        r->due = ack ? e.ack_by : e.respond_by;
        r->count = e.reminders;
        s_copy (work->reminder_group, sizeof work->reminder_group, e.group);
        r->group = work->reminder_group;
        //  To the Executive and the raising group, again every `repeat`
        //  until it is resolved.
        s_add_group (work, "executive");
        s_add_group (work, e.group);
        rearm = sgmq_config_deadline (self->config, SGMQ_OPT_REPEAT, now);
    }
    else {
        sgmq_store_learning_t l;
        rc = sgmq_store_learning_get (txn, timer->seq, &l);
        bool session = timer->what == S_TIMER_SESSION;
        if (rc || (session ? l.session_held : l.reflection_held)) {
            self->internal_count--;
            return rc == SGMQ_STORE_E_NOT_FOUND ? 0 : rc;
        }
        l.reminders++;
        rc = sgmq_store_learning_put (txn, &l);
        r->reason = session ? SGMQ_REASON_SESSION_DUE : SGMQ_REASON_REFLECTION_DUE;
        r->due = session ? l.session_by : l.reflection_by;
        r->count = l.reminders;
        //  The notice ahead of the date, then one when it comes.
        if (now < r->due)
            rearm = r->due;
        //  The alert's groups and those who implement the learning.
        for (const char *const *g = sgmq_config_group_ids (self->config); *g; g++)
            if (sgmq_config_learning_group (self->config, *g))
                s_add_group (work, *g);
    }
    sgmq_kind_t about_kind = SGMQ_KIND_ESCALATION;
    if (rc == 0)
        rc = s_about (self, txn, timer->seq, work, &about_kind);
    if (rc)
        return rc;
    r->about_kind = about_kind;
    r->title = work->reminder_title;
    sgmq_proto_error_t error;
    work->kind = SGMQ_KIND_REMINDER;
    work->body = sgmq_proto_encode_body (&work->reminder, &work->body_size, &error);
    if (!work->body) {
        s_log (S_LOG_ERROR, "cannot encode a reminder about %llu: %s",
               (unsigned long long) timer->seq, error.reason);
        self->internal_count--;
        return 0;
    }
    rc = s_store_message (self, txn, work, S_BROKER_NAME, "", NULL, NULL);
    if (rc == 0 && rearm)
        rc = s_remind (self, txn, timer->seq, timer->what, rearm);
    return rc;                  //  logged by s_apply, once it is on disk
}

//  --------------------------------------------------------------------------
//  Redelivery and window refill

static int
s_redeliver (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_session_t *session,
             int64_t now)
{
    uint32_t max_tries = (uint32_t) sgmq_config_int (self->config, SGMQ_OPT_MAX_TRIES);
    s_scratch (self, session);
    if (session->s_reset)
        return 0;               //  its refill sends everything again anyway
    for (size_t i = 0; i < session->inflight_len; i++) {
        s_inflight_t *entry = &session->inflight [i];
        //  An ack in this batch has freed its slot already (s_ack).
        if (!entry->attempts || entry->due > now || entry->acked_gen == self->gen)
            continue;
        if (entry->attempts >= max_tries) {
            //  Flagged at its last try; it stays pending in the store.
            if (s_effect (self, S_FX_FLAG, session, NULL, entry->seq, 0))
                return ENOMEM;
            if (session->s_inflight)
                session->s_inflight--;
            continue;
        }
        uint32_t attempt = entry->attempts + 1;
        int rc = sgmq_store_delivered (txn, session->name, entry->seq,
                                       attempt >= max_tries, NULL);
        if (rc == SGMQ_STORE_E_NOT_FOUND) {
            //  Gone from the store, though not acked in this batch (which
            //  s_ack marked): drop it, freeing its slot.
            if (s_effect (self, S_FX_FLAG, session, NULL, entry->seq, 0))
                return ENOMEM;
            if (session->s_inflight)
                session->s_inflight--;
            continue;
        }
        if (rc)
            return rc;
        if (s_effect (self, S_FX_DELIVER, session, NULL, entry->seq, attempt))
            return ENOMEM;
    }
    return 0;
}

static int
s_refill (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_session_t *session)
{
    uint32_t max_tries = (uint32_t) sgmq_config_int (self->config, SGMQ_OPT_MAX_TRIES);
    while (session->s_subscribed && session->s_behind
           && session->s_inflight < session->s_window) {
        if (!self->refill_budget) {
            session->s_refill_cut = true;       //  the next batch goes on
            break;
        }
        self->refill_budget--;
        sgmq_store_delivery_t delivery;
        int rc = sgmq_store_unacked_next (txn, session->name, session->s_cursor,
                                          &delivery);
        if (rc == SGMQ_STORE_E_NOT_FOUND) {
            session->s_behind = false;
            break;
        }
        if (rc)
            return rc;
        uint32_t attempt = delivery.count + 1;
        rc = sgmq_store_delivered (txn, session->name, delivery.seq,
                                   attempt >= max_tries, NULL);
        if (rc)
            return rc;
        if (s_effect (self, S_FX_DELIVER, session, NULL, delivery.seq, attempt))
            return ENOMEM;
        session->s_inflight++;
        session->s_cursor = delivery.seq;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  The batch: everything this turn writes, in one transaction.

static int
s_batch (sgmq_store_txn_t *txn, void *arg)
{
    sgmq_broker_t *self = (sgmq_broker_t *) arg;
    //  May run again after the store grows its map: start clean.
    self->gen++;
    self->effect_count = 0;
    self->touched_count = 0;
    for (size_t i = 0; i < self->internal_count; i++)
        free (self->internal [i].body);
    self->internal_count = 0;
    int rc = 0;
    for (size_t i = 0; i < self->work_count && rc == 0; i++) {
        s_work_t *work = &self->work [i];
        work->status = 0;
        work->field = NULL;
        work->reason [0] = 0;
        work->duplicate = work->settled = work->keep_recent = false;
        work->seq = work->time = work->backlog = 0;
        switch (work->cmd->cmd) {
            case SGMQ_CMD_PUBLISH:   rc = s_publish (self, txn, work); break;
            case SGMQ_CMD_ACK:       rc = s_ack (self, txn, work); break;
            case SGMQ_CMD_SUBSCRIBE: rc = s_subscribe (self, txn, work); break;
            default: break;
        }
    }
    uint64_t now = s_deadline_now (txn);
    for (size_t fired = 0; rc == 0 && fired < S_TIMERS_PER_TURN; fired++) {
        //  Past due only: a deadline is met at its very millisecond (an
        //  ack or response then is on time).
        sgmq_store_timer_t timer;
        int found = sgmq_store_timer_first (txn, now - 1, &timer);
        if (found == SGMQ_STORE_E_NOT_FOUND)
            break;
        rc = found ? found : s_fire_timer (self, txn, &timer, now);
    }
    int64_t mono = s_mono ();
    for (size_t i = 0; i < self->due_count && rc == 0; i++)
        rc = s_redeliver (self, txn, self->due [i], mono);
    //  Windows a turn's budget left part-filled go on now; then this
    //  turn's. (16 sessions subscribing with windows of 10,000 held a
    //  turn for 4 s before the budget.)
    self->refill_budget = S_REFILL_PER_TURN;
    for (s_session_t *session = self->refill_more ? zhashx_first (self->sessions) : NULL;
         session; session = zhashx_next (self->sessions))
        if (session->refill_cut)
            s_scratch (self, session);
    //  The touched list may grow while refilling (never for the sessions
    //  already in it), so index, not iterate.
    for (size_t i = 0; i < self->touched_count && rc == 0; i++)
        rc = s_refill (self, txn, self->touched [i]);
    if (rc == 0) {
        sgmq_store_timer_t timer;
        int found = sgmq_store_timer_first (txn, 0, &timer);
        self->s_next_store_timer = found == 0 ? timer.due : 0;
        rc = found == SGMQ_STORE_E_NOT_FOUND ? 0 : found;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  After the commit: answers, window state and deliveries

static void
s_close_later (sgmq_broker_t *self, s_session_t *session);

static const char *
s_agency_of (sgmq_broker_t *self, const char *sender, const char *sender_key)
{
    if (!*sender_key)
        return S_BROKER_AGENCY;
    const sgmq_principal_t *principal = sgmq_registry_lookup (self->registry, sender_key);
    if (!principal)
        principal = sgmq_registry_find (self->registry, sender);
    //  A publisher since removed: its messages still name it.
    return principal ? sgmq_principal_agency (principal) : "(no longer admitted)";
}

//  The DELIVER of a stored message (pointing into `record`).
static void
s_deliver_cmd (const sgmq_store_record_t *record, const char *agency,
               uint32_t attempt, sgmq_cmd_t *cmd)
{
    *cmd = (sgmq_cmd_t) { .cmd = SGMQ_CMD_DELIVER };
    cmd->u.deliver.seq = record->seq;
    cmd->u.deliver.time = record->time;
    cmd->u.deliver.from = record->sender;
    cmd->u.deliver.agency = agency;
    cmd->u.deliver.groups = (sgmq_strlist_t) { record->group_count, record->groups };
    cmd->u.deliver.attempt = attempt;
    cmd->u.deliver.body.kind = (sgmq_kind_t) sgmq_proto_kind_parse (record->kind,
                                                                    strlen (record->kind));
    cmd->u.deliver.body_bytes = record->body;
    cmd->u.deliver.body_size = record->body_size;
}

//  A message this turn stored, as the store now holds it (pointing into
//  `work`; no recipients).
static void
s_work_record (const s_work_t *work, sgmq_store_record_t *record)
{
    *record = (sgmq_store_record_t) {
        .seq = work->seq, .time = work->time,
        .sender = work->internal ? S_BROKER_NAME : sgmq_principal_name (work->principal),
        .sender_key = work->internal ? "" : sgmq_principal_key (work->principal),
        .kind = sgmq_proto_kind_name (work->kind),
        .group_count = work->group_count, .groups = work->groups,
        .body = work->body, .body_size = work->body_size
    };
}

static void
s_deliver_work (sgmq_broker_t *self, s_session_t *session, s_work_t *work,
                uint32_t attempt)
{
    sgmq_store_record_t record;
    s_work_record (work, &record);
    sgmq_cmd_t cmd;
    s_deliver_cmd (&record, work->internal ? S_BROKER_AGENCY
                                           : sgmq_principal_agency (work->principal),
                   attempt, &cmd);
    s_reply (self, session, &cmd);
}

//  Make a slot's buffer ready for `need` bytes: what it held is wiped
//  first (a plaintext body, or a DELIVER holding one). 0 or -1.
static int
s_recent_buffer (uint8_t **buffer, size_t *capacity, size_t *used, size_t need)
{
    if (*buffer)
        sodium_memzero (*buffer, *used);
    *used = 0;
    if (need > *capacity) {
        free (*buffer);
        *capacity = 0;
        if (!(*buffer = malloc (need)))
            return -1;
        *capacity = need;
    }
    *used = need;
    return 0;
}

//  Keep a copy of `record` (read for a delivery) for the members that
//  will want it next; its slot, or NULL if not kept.
static s_recent_t *
s_recent_keep (sgmq_broker_t *self, const sgmq_store_record_t *record)
{
    if (record->body_size > S_RECENT_MAX_BODY
    ||  record->group_count > SGMQ_PROTO_MAX_GROUPS + 2)
        return NULL;
    if (!self->recent
    &&  !(self->recent = calloc (S_RECENT_SLOTS, sizeof *self->recent)))
        return NULL;
    const char *names [3 + SGMQ_PROTO_MAX_GROUPS + 2] = {
        record->sender, record->sender_key, record->kind
    };
    size_t name_count = 3 + record->group_count, need = record->body_size;
    for (uint32_t i = 0; i < record->group_count; i++)
        names [3 + i] = record->groups [i];
    size_t lengths [3 + SGMQ_PROTO_MAX_GROUPS + 2];
    for (size_t i = 0; i < name_count; i++)
        need += (lengths [i] = strlen (names [i])) + 1;

    s_recent_t *slot = &self->recent [record->seq % S_RECENT_SLOTS];
    slot->record.seq = 0;
    slot->attempt = 0;
    if (s_recent_buffer (&slot->data, &slot->capacity, &slot->used, need))
        return NULL;
    memcpy (slot->data, record->body, record->body_size);
    char *at = (char *) slot->data + record->body_size;
    const char *copies [3 + SGMQ_PROTO_MAX_GROUPS + 2];
    for (size_t i = 0; i < name_count; i++) {
        memcpy (at, names [i], lengths [i] + 1);
        copies [i] = at;
        at += lengths [i] + 1;
    }
    for (uint32_t i = 0; i < record->group_count; i++)
        slot->groups [i] = copies [3 + i];
    slot->record = *record;
    slot->record.sender = copies [0];
    slot->record.sender_key = copies [1];
    slot->record.kind = copies [2];
    slot->record.groups = slot->groups;
    slot->record.recipient_count = 0;   //  not kept: a DELIVER has none
    slot->record.recipients = NULL;
    slot->record.body = slot->data;
    return slot;
}

//  Keep a message just stored, for the recipients that are behind: they
//  will read it back soon.
static void
s_recent_keep_work (sgmq_broker_t *self, const s_work_t *work)
{
    sgmq_store_record_t record;
    s_work_record (work, &record);
    s_recent_keep (self, &record);
}

static void
s_recent_destroy (sgmq_broker_t *self)
{
    for (size_t i = 0; self->recent && i < S_RECENT_SLOTS; i++) {
        s_recent_t *slot = &self->recent [i];
        s_recent_buffer (&slot->data, &slot->capacity, &slot->used, 0);
        s_recent_buffer (&slot->deliver, &slot->deliver_capacity,
                         &slot->deliver_size, 0);
        free (slot->data);
        free (slot->deliver);
    }
    free (self->recent);
    self->recent = NULL;
}

//  Encode the DELIVER of a recent copy for `attempt`, once; 0 or -1.
static int
s_recent_encode (sgmq_broker_t *self, s_recent_t *slot, uint32_t attempt)
{
    if (slot->attempt == attempt)
        return 0;
    slot->attempt = 0;
    sgmq_cmd_t cmd;
    s_deliver_cmd (&slot->record, s_agency_of (self, slot->record.sender,
                                               slot->record.sender_key),
                   attempt, &cmd);
    sgmq_proto_writer_t *writer = self->scratch_writer;
    sgmq_proto_writer_reset (writer);
    size_t size;
    const uint8_t *bytes;
    if (sgmq_proto_write (writer, &cmd, NULL)
    ||  !(bytes = sgmq_proto_writer_last (writer, &size)))
        return -1;
    if (s_recent_buffer (&slot->deliver, &slot->deliver_capacity,
                         &slot->deliver_size, size))
        return -1;
    memcpy (slot->deliver, bytes, size);
    slot->attempt = attempt;
    return 0;
}

//  Deliver stored message `seq`, from the recent copies or else the store
//  (`*txn_p`, opened here when first needed). -1 if the store cannot be read.
static int
s_deliver_stored (sgmq_broker_t *self, sgmq_store_txn_t **txn_p,
                  s_session_t *session, uint64_t seq, uint32_t attempt)
{
    s_recent_t *slot = self->recent ? &self->recent [seq % S_RECENT_SLOTS] : NULL;
    sgmq_store_record_t read;
    if (!slot || !seq || slot->record.seq != seq) {
        int rc = 0;
        if (!*txn_p && !(*txn_p = sgmq_store_read (self->store, &rc))) {
            s_log (S_LOG_ERROR, "cannot read the store: %s", sgmq_store_strerror (rc));
            return -1;
        }
        rc = sgmq_store_get (*txn_p, seq, &read);
        if (rc) {
            s_log (S_LOG_ERROR, "cannot read message %llu for delivery: %s",
                   (unsigned long long) seq, sgmq_store_strerror (rc));
            return 0;
        }
        slot = s_recent_keep (self, &read);
    }
    if (slot && s_recent_encode (self, slot, attempt) == 0) {
        s_reply_encoded (self, session, slot->deliver, slot->deliver_size);
        return 0;
    }
    const sgmq_store_record_t *record = slot ? &slot->record : &read;
    sgmq_cmd_t cmd;
    s_deliver_cmd (record, s_agency_of (self, record->sender, record->sender_key),
                   attempt, &cmd);
    s_reply (self, session, &cmd);
    return 0;
}

static void
s_apply (sgmq_broker_t *self, int rc)
{
    int64_t mono = s_mono ();
    if (rc) {
        bool full = rc == SGMQ_STORE_E_FULL;
        //  A store that fails (a full disk) fails every turn: say so once
        //  in a while, and try due timers again after a growing pause, not
        //  at once in a loop.
        self->store_unwarned++;
        if (mono >= self->next_store_warning) {
            s_log (S_LOG_ERROR, "batch not stored (%zu requests): %s (%llu batches "
                   "not stored since the last such error)", self->work_count,
                   sgmq_store_strerror (rc), (unsigned long long) self->store_unwarned);
            self->store_unwarned = 0;
            self->next_store_warning = mono + S_BAD_WARN_MS;
        }
        self->timers_backoff = self->timers_backoff
                             ? (self->timers_backoff * 2 > S_TIMERS_RETRY_MAX_MS
                                ? S_TIMERS_RETRY_MAX_MS : self->timers_backoff * 2)
                             : S_TIMERS_RETRY_MS;
        self->timers_retry_at = mono + self->timers_backoff;
        for (size_t i = 0; i < self->work_count; i++) {
            s_work_t *work = &self->work [i];
            s_error (self, work->session, work->cmd->id,
                     full ? SGMQ_E_STORAGE_FULL : SGMQ_E_UNAVAILABLE, NULL,
                     full ? "storage full: nothing was stored; try again later"
                          : "the store could not save this; nothing was stored");
        }
        if (rc == SGMQ_STORE_E_BROKEN)
            self->broken = true;
        return;
    }
    self->commits++;
    self->next_store_timer = self->s_next_store_timer;
    self->timers_backoff = self->timers_retry_at = 0;
    for (size_t i = 0; i < self->internal_count; i++) {
        const s_work_t *work = &self->internal [i];
        const sgmq_reminder_t *r = &work->reminder.u.reminder;
        if (work->kind == SGMQ_KIND_REMINDER && work->seq)
            s_log (S_LOG_INFO, "reminder seq=%llu reason=%s about=%llu count=%u",
                   (unsigned long long) work->seq, sgmq_proto_reason_name (r->reason),
                   (unsigned long long) r->about, r->count);
    }
    for (size_t i = 0; i < self->work_count; i++) {
        s_work_t *work = &self->work [i];
        s_session_t *session = work->session;
        if (work->status) {
            s_error (self, session, work->cmd->id, work->status, work->field,
                     "%s", work->reason);
            continue;
        }
        sgmq_cmd_t answer = { .id = work->cmd->id };
        if (work->cmd->cmd == SGMQ_CMD_PUBLISH) {
            answer.cmd = SGMQ_CMD_CONFIRM;
            answer.u.confirm.seq = work->seq;
            answer.u.confirm.time = work->time;
            answer.u.confirm.duplicate = work->duplicate;
            s_log (S_LOG_DEBUG, "stored seq=%llu kind=%s from=\"%s\" size=%zu%s",
                   (unsigned long long) work->seq, sgmq_proto_kind_name (work->kind),
                   session->name, work->body_size, work->duplicate ? " duplicate" : "");
            if (work->keep_recent)
                s_recent_keep_work (self, work);
        }
        else
        if (work->cmd->cmd == SGMQ_CMD_ACK) {
            answer.cmd = SGMQ_CMD_ACKED;
            answer.u.acked.seq = work->seq;
            answer.u.acked.time = work->time;
            answer.u.acked.duplicate = work->duplicate;
            if (work->settled)
                self->settled [work->seq % S_SETTLED_SLOTS] = work->seq;
            zlistx_t *list = s_sessions_of (self, session->name);
            for (s_session_t *s = list ? zlistx_first (list) : NULL; s;
                 s = zlistx_next (list))
                s_inflight_remove (s, work->seq);
        }
        else {
            answer.cmd = SGMQ_CMD_SUBSCRIBED;
            answer.u.subscribed.backlog = work->backlog;
            s_inflight_clear (session);
        }
        s_reply (self, session, &answer);
    }
    self->refill_more = false;
    for (size_t i = 0; i < self->touched_count; i++) {
        s_session_t *session = self->touched [i];
        session->subscribed = session->s_subscribed;
        session->window = session->s_window;
        session->cursor = session->s_cursor;
        session->behind = session->s_behind;
        session->refill_cut = session->s_refill_cut;
        self->refill_more |= session->refill_cut;
    }
    sgmq_store_txn_t *txn = NULL;
    for (size_t i = 0; i < self->effect_count; i++) {
        s_effect_t *fx = &self->effects [i];
        if (fx->type == S_FX_FLAG) {
            s_inflight_remove (fx->session, fx->seq);
            continue;
        }
        if (s_inflight_put (self, fx->session, fx->seq, fx->attempt))
            continue;
        if (fx->work)
            s_deliver_work (self, fx->session, fx->work, fx->attempt);
        else
        if (s_deliver_stored (self, &txn, fx->session, fx->seq, fx->attempt))
            break;
    }
    sgmq_store_read_end (&txn);
    //  Sessions that were due: their earliest redelivery has moved on.
    for (size_t i = 0; i < self->due_count; i++) {
        s_session_t *session = self->due [i];
        session->next_due = INT64_MAX;
        for (size_t j = 0; j < session->inflight_len; j++)
            if (session->inflight [j].attempts
            &&  session->inflight [j].due < session->next_due)
                session->next_due = session->inflight [j].due;
    }
}

//  --------------------------------------------------------------------------
//  Reads: PENDING and REPLAY, answered after the commit

typedef struct {
    sgmq_pending_item_t item;
    char recipient [SGMQ_PROTO_MAX_NAME + 1];
    char from [SGMQ_PROTO_MAX_NAME + 1];
    char title [SGMQ_PROTO_MAX_TITLE + 1];
} s_pitem_t;

//  Whether what a reminder asked for has since been done: the escalation
//  acknowledged (or responded to), the session held.
static bool
s_reminder_settled (sgmq_store_txn_t *txn, const sgmq_reminder_t *r)
{
    if (r->about_kind == SGMQ_KIND_ESCALATION) {
        sgmq_store_escalation_t e;
        if (sgmq_store_escalation_get (txn, r->about, &e))
            return false;
        return r->reason == SGMQ_REASON_ACK_OVERDUE ? e.status != SGMQ_STORE_ESC_RAISED
                                                    : e.status == SGMQ_STORE_ESC_RESPONDED;
    }
    sgmq_store_learning_t l;
    if (r->about_kind != SGMQ_KIND_LEARNING || sgmq_store_learning_get (txn, r->about, &l))
        return false;
    return r->reason == SGMQ_REASON_REFLECTION_DUE ? l.reflection_held != 0
                                                    : l.session_held != 0;
}

//  Fill a pending item for delivery `d`; -1 if the message is unreadable.
static int
s_pending_item (sgmq_broker_t *self, sgmq_store_txn_t *txn,
                const sgmq_store_delivery_t *d, uint64_t now, s_pitem_t *out)
{
    sgmq_store_record_t record;
    if (sgmq_store_get (txn, d->seq, &record))
        return -1;
    memset (out, 0, sizeof *out);
    sgmq_pending_item_t *item = &out->item;
    item->seq = d->seq;
    item->time = record.time;
    item->kind = (sgmq_kind_t) sgmq_proto_kind_parse (record.kind, strlen (record.kind));
    s_copy (out->recipient, sizeof out->recipient, d->recipient);
    s_copy (out->from, sizeof out->from, record.sender);
    item->recipient = out->recipient;
    item->from = out->from;
    item->state = d->state == SGMQ_STORE_ACKED ? SGMQ_STATE_ACKNOWLEDGED
                : d->flagged ? SGMQ_STATE_FLAGGED
                : d->state == SGMQ_STORE_DELIVERED ? SGMQ_STATE_DELIVERED
                : SGMQ_STATE_PENDING;
    item->attempts = d->count;
    item->last_delivered = d->last;
    item->acked_at = d->acked_at;
    item->deadline = sgmq_config_deadline (self->config, SGMQ_OPT_ACK_BY, record.time);
    bool settled = false;       //  what it asks for was done
    sgmq_body_t body;
    sgmq_proto_error_t error;
    if (item->kind && sgmq_proto_decode_body (self->body_frame, item->kind, record.body,
                                              record.body_size, &body, &error) == 0) {
        if (body.kind == SGMQ_KIND_REMINDER)
            settled = s_reminder_settled (txn, &body.u.reminder);
        char title [SGMQ_PROTO_MAX_TITLE + 1] = "";
        switch (body.kind) {
            case SGMQ_KIND_ESCALATION:
                s_copy (title, sizeof title, body.u.escalation.title);
                break;
            case SGMQ_KIND_LEARNING:
                s_copy (title, sizeof title, body.u.learning.title);
                break;
            case SGMQ_KIND_RESPONSE:
                snprintf (title, sizeof title, "Response to escalation %llu",
                          (unsigned long long) body.u.response.to);
                break;
            case SGMQ_KIND_LEARNING_UPDATE:
                snprintf (title, sizeof title, "%s held for learning alert %llu",
                          body.u.learning_update.held == SGMQ_HELD_SESSION
                          ? "Learning session" : "Reflection session",
                          (unsigned long long) body.u.learning_update.alert);
                break;
            case SGMQ_KIND_REMINDER:
                s_copy (title, sizeof title, body.u.reminder.title);
                break;
            default:
                break;
        }
        s_copy (out->title, sizeof out->title, title);
        item->title = *out->title ? out->title : NULL;
    }
    if (item->kind == SGMQ_KIND_ESCALATION) {
        sgmq_store_escalation_t e;
        if (sgmq_store_escalation_get (txn, d->seq, &e) == 0) {
            item->deadline = e.ack_by;
            settled = e.status == SGMQ_STORE_ESC_RESPONDED;
        }
    }
    //  Once the Executive has responded (or the session was held), a
    //  member's missing acknowledgement of it no longer needs chasing.
    item->overdue = item->state != SGMQ_STATE_ACKNOWLEDGED && now > item->deadline
                 && !settled;
    return 0;
}

//  PENDING `published`: the principal's messages by seq, each one's
//  recipients in order. A page ends between two messages (`next` is the
//  last seq done) unless one message alone has more recipients than the
//  page can take: then it ends inside it, and `next` is S_PENDING_SPLIT |
//  seq << 16 | the index of its first recipient not yet looked at.
static uint64_t
s_pending_published (sgmq_broker_t *self, sgmq_store_txn_t *txn, s_session_t *session,
                     uint64_t after, bool overdue_only, uint64_t now, s_pitem_t *items,
                     size_t limit, size_t *count_p, size_t *scanned_p)
{
    uint64_t split_seq = 0, done = after;
    uint32_t split_at = 0;
    if (after & S_PENDING_SPLIT) {
        split_seq = (after & ~S_PENDING_SPLIT) >> 16;
        split_at = (uint32_t) (after & 0xffff);
        done = split_seq - 1;
    }
    sgmq_store_query_t query = { .sender = session->name, .from_seq = done + 1 };
    sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, &query);
    sgmq_store_record_t record;
    size_t count = *count_p, scanned = *scanned_p;
    uint64_t next = 0;
    while (iter && sgmq_store_iter_next (iter, &record) == 0) {
        uint64_t seq = record.seq;
        uint32_t recipients = record.recipient_count;
        uint32_t r = seq == split_seq ? split_at : 0;
        uint32_t left = r < recipients ? recipients - r : 0;
        //  A message with no one to look at (a learning update to groups
        //  whose only member sent it) was still read: it counts as one,
        //  or a principal with many such could hold the loop for seconds.
        size_t cost = left ? left : 1;
        if (scanned && (count + left > limit || scanned + cost > S_PENDING_SCAN)) {
            next = done;                //  this message goes whole on the next page
            break;
        }
        if (!left)
            scanned++;
        //  Copy the names: reading deliveries and the message again for
        //  each recipient replaces `record`'s memory.
        char (*names) [SGMQ_PROTO_MAX_NAME + 1] = calloc (recipients + 1, sizeof *names);
        for (uint32_t i = 0; names && i < recipients; i++)
            s_copy (names [i], sizeof names [i], record.recipients [i]);
        for (; names && r < recipients; r++) {
            if (count == limit || scanned == S_PENDING_SCAN) {
                next = S_PENDING_SPLIT | seq << 16 | r;
                break;
            }
            scanned++;
            sgmq_store_delivery_t d;
            if (sgmq_store_delivery (txn, names [r], seq, &d) == 0
            &&  s_pending_item (self, txn, &d, now, &items [count]) == 0
            &&  (!overdue_only || items [count].item.overdue))
                count++;
        }
        free (names);
        if (next)
            break;
        done = seq;
    }
    sgmq_store_iter_destroy (&iter);
    *count_p = count;
    *scanned_p = scanned;
    return next;
}

static void
s_pending (sgmq_broker_t *self, s_session_t *session, const sgmq_cmd_t *cmd,
           const sgmq_principal_t *principal)
{
    sgmq_scope_t scope = cmd->u.pending.scope;
    if (scope == SGMQ_SCOPE_ALL && !s_is_executive (principal)
    &&  !sgmq_principal_has_role (principal, SGMQ_ROLE_AUDITOR | SGMQ_ROLE_ADMIN)) {
        s_error (self, session, cmd->id, SGMQ_E_FORBIDDEN, "scope", "rule pending-all: "
                 "only Executive members, auditors and admins see everyone's items");
        return;
    }
    if (self->pending_scanned >= S_PENDING_TURN_SCAN) {
        s_error (self, session, cmd->id, SGMQ_E_BUSY, NULL, "the broker has answered "
                 "all the PENDING it takes at a time; ask again after a pause");
        return;
    }
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (self->store, &rc);
    if (!txn) {
        s_error (self, session, cmd->id, SGMQ_E_UNAVAILABLE, NULL, "store: %s",
                 sgmq_store_strerror (rc));
        return;
    }
    size_t limit = cmd->u.pending.limit && cmd->u.pending.limit < S_PENDING_MAX
                 ? cmd->u.pending.limit : S_PENDING_MAX;
    s_pitem_t *items = calloc (limit + 1, sizeof *items);
    sgmq_pending_item_t *wire = calloc (limit + 1, sizeof *wire);
    size_t count = 0, scanned = 0;
    uint64_t next = 0, after = cmd->u.pending.after;
    uint64_t now = sgmq_time_now ();
    bool overdue_only = cmd->u.pending.overdue;
    if (!items || !wire)
        goto out_answer;
    //  Each scope stops at `limit` items or after S_PENDING_SCAN deliveries
    //  looked at, whichever comes first; `next` says where to go on.
    if (scope == SGMQ_SCOPE_MINE) {
        //  `after` and `next` are the last seq looked at.
        sgmq_store_delivery_t d;
        uint64_t cursor = after;
        while ((rc = sgmq_store_unacked_next (txn, session->name, cursor, &d)) == 0) {
            if (count == limit || scanned == S_PENDING_SCAN) {
                next = cursor;
                break;
            }
            cursor = d.seq;
            scanned++;
            if (s_pending_item (self, txn, &d, now, &items [count]) == 0
            &&  (!overdue_only || items [count].item.overdue))
                count++;
        }
    }
    else
    if (scope == SGMQ_SCOPE_PUBLISHED)
        next = s_pending_published (self, txn, session, after, overdue_only, now,
                                    items, limit, &count, &scanned);
    else {
        //  Everyone's, by (recipient, seq). `next` is the session's page
        //  number above 32 bits (never the same twice, never 0) and the
        //  items given so far + 1 below. The session goes on from where
        //  its last page ended; any other `after` is found by counting.
        sgmq_store_delivery_t d;
        char recipient [SGMQ_STORE_MAX_NAME + 1] = "";
        uint64_t seq = 0, skipped = 0;
        uint64_t given = after & S_PENDING_GIVEN ? (after & S_PENDING_GIVEN) - 1 : 0;
        if (after && after == session->all_next && overdue_only == session->all_overdue) {
            s_copy (recipient, sizeof recipient, session->all_recipient);
            seq = session->all_seq;
            skipped = given;
        }
        while ((rc = sgmq_store_unacked_all_next (txn, recipient, seq, &d)) == 0) {
            if (count == limit || scanned == S_PENDING_SCAN) {
                session->all_page = (session->all_page + 1) & S_PENDING_GIVEN;
                next = (uint64_t) session->all_page << 32 | (given + count + 1);
                break;
            }
            s_copy (recipient, sizeof recipient, d.recipient);
            seq = d.seq;
            scanned++;
            if (s_pending_item (self, txn, &d, now, &items [count])
            ||  (overdue_only && !items [count].item.overdue))
                continue;
            if (skipped < given)
                skipped++;
            else
                count++;
        }
        if (next && skipped < given) {
            s_error (self, session, cmd->id, SGMQ_E_BAD_VALUE, "after", "this "
                     "page is too far on to find again: ask from the first page");
            goto out_free;
        }
        session->all_next = next;
        session->all_overdue = overdue_only;
        s_copy (session->all_recipient, sizeof session->all_recipient, recipient);
        session->all_seq = seq;
    }
out_answer:
    for (size_t i = 0; i < count; i++)
        wire [i] = items [i].item;
    sgmq_cmd_t answer = { .cmd = SGMQ_CMD_PENDING_ANSWER, .id = cmd->id };
    answer.u.pending_answer.count = (uint32_t) count;
    answer.u.pending_answer.items = wire;
    answer.u.pending_answer.next = next;
    if (items && wire)
        s_reply (self, session, &answer);
    else
        s_error (self, session, cmd->id, SGMQ_E_INTERNAL, NULL, "out of memory");
out_free:
    self->pending_scanned += scanned;
    free (items);
    free (wire);
    sgmq_store_read_end (&txn);
}

//  Free the session's stream if it has ended and everything is sent. A
//  client that asks again right after an end (verify does: a probe, then
//  the full replay) must not find its old stream in the way.
static void
s_stream_reap (sgmq_broker_t *self, s_session_t *session)
{
    s_replay_t *stream = session->replay;
    if (stream && stream->ended
    &&  (!stream->out || sgmq_proto_writer_count (stream->out) == 0)) {
        sgmq_proto_writer_destroy (&stream->out);
        free (stream);
        session->replay = NULL;
        self->replays--;
    }
}

static void
s_replay_start (sgmq_broker_t *self, s_session_t *session, const sgmq_cmd_t *cmd,
                const sgmq_principal_t *principal)
{
    if (!sgmq_principal_has_role (principal, SGMQ_ROLE_AUDITOR)) {
        s_error (self, session, cmd->id, SGMQ_E_FORBIDDEN, NULL, "rule "
                 "replay-auditors: only auditors may replay the history");
        return;
    }
    s_stream_reap (self, session);
    if (session->replay) {
        s_error (self, session, cmd->id, SGMQ_E_BUSY, NULL,
                 "a replay is already running on this session");
        return;
    }
    //  Sign the head if it moved since the last checkpoint, so that a
    //  replay ends with a checkpoint that covers all it sent.
    int rc = sgmq_store_checkpoint (self->store);
    if (rc && rc != SGMQ_STORE_E_INVALID)
        s_log (S_LOG_WARNING, "checkpoint not written: %s", sgmq_store_strerror (rc));
    sgmq_store_txn_t *txn = sgmq_store_read (self->store, &rc);
    uint64_t head = 0;
    uint8_t hash [SGMQ_STORE_HASH_SIZE];
    if (!txn || sgmq_store_head (txn, &head, hash)) {
        sgmq_store_read_end (&txn);
        s_error (self, session, cmd->id, SGMQ_E_UNAVAILABLE, NULL, "store unavailable");
        return;
    }
    sgmq_store_read_end (&txn);
    s_replay_t *replay = calloc (1, sizeof *replay);
    if (!replay) {
        s_error (self, session, cmd->id, SGMQ_E_INTERNAL, NULL, "out of memory");
        return;
    }
    replay->request = cmd->id;
    //  A snapshot: what was stored when the request came, no more.
    replay->query.to_seq = cmd->u.replay.to && cmd->u.replay.to < head
                         ? cmd->u.replay.to : head;
    replay->query.since = cmd->u.replay.since;
    replay->query.until = cmd->u.replay.until;
    if (cmd->u.replay.group) {
        s_copy (replay->group, sizeof replay->group, cmd->u.replay.group);
        replay->query.group = replay->group;
    }
    if (cmd->u.replay.kind) {
        s_copy (replay->kind, sizeof replay->kind, sgmq_proto_kind_name (cmd->u.replay.kind));
        replay->query.kind = replay->kind;
    }
    replay->next = cmd->u.replay.from ? cmd->u.replay.from : 1;
    session->replay = replay;
    self->replays++;
    s_log (S_LOG_INFO, "replay started name=\"%s\" from=%llu to=%llu",
           session->name, (unsigned long long) replay->next,
           (unsigned long long) replay->query.to_seq);
}

//  Send the replay's frame if it has one. 0 when sent (or nothing to
//  send); -1 when the auditor's queue is full (the frame is kept).
static int
s_replay_send (sgmq_broker_t *self, s_session_t *session)
{
    s_replay_t *replay = session->replay;
    if (sgmq_proto_writer_count (replay->out) == 0)
        return 0;
    if (s_send_raw (self, session->routing, session->routing_size,
                    sgmq_proto_writer_data (replay->out),
                    sgmq_proto_writer_size (replay->out))) {
        if (errno == EAGAIN) {
            if (!replay->blocked)
                replay->blocked_since = s_mono ();
            replay->blocked = true;
            return -1;
        }
        s_close_later (self, session);  //  gone
        return -1;
    }
    replay->blocked = false;
    sgmq_proto_writer_reset (replay->out);
    return 0;
}

//  Add a command to the stream's frame, sending the frame when the command
//  does not fit or the frame is full enough. 0 when added; -1 when the
//  client's queue is full (the command was not added: write it again next
//  turn); -2 when it cannot be encoded (a bug: logged, skip it).
static int
s_stream_write (sgmq_broker_t *self, s_session_t *session, const sgmq_cmd_t *cmd)
{
    s_replay_t *stream = session->replay;
    int rc = sgmq_proto_write (stream->out, cmd, NULL);
    if (rc == -1) {
        if (s_replay_send (self, session))
            return -1;
        rc = sgmq_proto_write (stream->out, cmd, NULL);
    }
    if (rc) {
        s_log (S_LOG_ERROR, "cannot encode %s for \"%s\"",
               sgmq_proto_cmd_name (cmd->cmd), session->name);
        return -2;
    }
    if (sgmq_proto_writer_size (stream->out) >= S_REPLAY_FRAME)
        s_replay_send (self, session);      //  if blocked, it goes next turn
    return 0;
}

static void
s_replay_end (sgmq_broker_t *self, s_session_t *session, sgmq_store_txn_t *txn)
{
    s_replay_t *replay = session->replay;
    sgmq_cmd_t end = { .cmd = SGMQ_CMD_REPLAY_END, .id = replay->request };
    end.u.replay_end.count = replay->count;
    if (sgmq_store_head (txn, &end.u.replay_end.head_seq, end.u.replay_end.head_hash))
        s_log (S_LOG_WARNING, "cannot read the chain head for a replay end");
    sgmq_store_checkpoint_t checkpoint;
    if (sgmq_store_checkpoint_get (txn, 0, &checkpoint) == 0) {
        end.u.replay_end.has_checkpoint = true;
        end.u.replay_end.checkpoint.seq = checkpoint.seq;
        end.u.replay_end.checkpoint.time = checkpoint.time;
        memcpy (end.u.replay_end.checkpoint.hash, checkpoint.hash, SGMQ_STORE_HASH_SIZE);
        memcpy (end.u.replay_end.checkpoint.signature, checkpoint.signature,
                SGMQ_STORE_SIG_SIZE);
    }
    if (s_stream_write (self, session, &end) == -1)
        return;                 //  try again next turn
    replay->ended = true;
    s_log (S_LOG_INFO, "replay ended name=\"%s\" items=%llu", session->name,
           (unsigned long long) replay->count);
}

static int
s_ack_time_cmp (const void *a, const void *b)
{
    uint64_t x = ((const sgmq_ack_event_t *) a)->time;
    uint64_t y = ((const sgmq_ack_event_t *) b)->time;
    return (x > y) - (x < y);
}

//  Items each stream may send this turn.
static size_t
s_stream_share (const sgmq_broker_t *self)
{
    size_t share = self->replays ? S_REPLAY_PER_TURN / self->replays : S_REPLAY_PER_TURN;
    return share > S_REPLAY_MIN_SHARE ? share : S_REPLAY_MIN_SHARE;
}

//  Up to a share of S_REPLAY_PER_TURN replay items; 1 when the history is
//  done.
static int
s_replay_items (sgmq_broker_t *self, s_session_t *session, sgmq_store_txn_t *txn)
{
    s_replay_t *replay = session->replay;
    sgmq_store_query_t query = replay->query;
    query.from_seq = replay->next;
    if (query.to_seq == 0 || query.from_seq > query.to_seq)
        return 1;
    sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, &query);
    static sgmq_ack_event_t acks [SGMQ_PROTO_MAX_ACKS];
    static char keys [SGMQ_PROTO_MAX_ACKS][SGMQ_CERT_KEY_TEXT + 1];
    int done = 0;
    size_t share = s_stream_share (self);
    if (iter)
        sgmq_store_iter_bound (iter, share * S_REPLAY_LOOK);
    for (size_t n = 0; iter && n < share && !done; n++) {
        sgmq_store_record_t record;
        int rc = sgmq_store_iter_next (iter, &record);
        if (rc == SGMQ_STORE_E_AGAIN) {
            //  What it looked at did not match: next turn goes on past it.
            replay->next = sgmq_store_iter_seq (iter) + 1;
            done = replay->next > query.to_seq;
            break;
        }
        if (rc) {
            if (rc != SGMQ_STORE_E_NOT_FOUND) {
                uint64_t at = sgmq_store_iter_seq (iter);
                s_log (S_LOG_ERROR, "replay stopped at seq %llu: %s",
                       (unsigned long long) (at ? at : replay->next),
                       sgmq_store_strerror (rc));
            }
            done = 1;
            break;
        }
        uint32_t ack_count = 0;
        for (uint32_t r = 0; r < record.recipient_count && ack_count < SGMQ_PROTO_MAX_ACKS; r++) {
            sgmq_store_delivery_t d;
            if (sgmq_store_delivery (txn, record.recipients [r], record.seq, &d) == 0
            &&  d.state == SGMQ_STORE_ACKED) {
                s_copy (keys [ack_count], sizeof keys [ack_count], d.acked_key);
                acks [ack_count] = (sgmq_ack_event_t) {
                    .by = record.recipients [r], .key = keys [ack_count],
                    .time = d.acked_at
                };
                ack_count++;
            }
        }
        //  Oldest first, as PROTOCOL.md promises (recipients come by name).
        qsort (acks, ack_count, sizeof *acks, s_ack_time_cmp);
        sgmq_cmd_t item = { .cmd = SGMQ_CMD_REPLAY_ITEM, .id = replay->request };
        item.u.replay_item.seq = record.seq;
        item.u.replay_item.time = record.time;
        item.u.replay_item.kind = (sgmq_kind_t) sgmq_proto_kind_parse (record.kind,
                                                                       strlen (record.kind));
        item.u.replay_item.from = record.sender;
        item.u.replay_item.from_key = record.sender_key;
        item.u.replay_item.agency = s_agency_of (self, record.sender, record.sender_key);
        item.u.replay_item.groups = (sgmq_strlist_t) { record.group_count, record.groups };
        item.u.replay_item.body = record.body;
        item.u.replay_item.body_size = record.body_size;
        memcpy (item.u.replay_item.hash, record.hash, SGMQ_STORE_HASH_SIZE);
        memcpy (item.u.replay_item.prev, record.prev, SGMQ_STORE_HASH_SIZE);
        item.u.replay_item.ack_count = ack_count;
        item.u.replay_item.acks = acks;
        rc = s_stream_write (self, session, &item);
        if (rc == -1)
            break;              //  this item goes next turn
        replay->next = record.seq + 1;
        replay->count += rc == 0;
        done = replay->next > query.to_seq;
    }
    sgmq_store_iter_destroy (&iter);
    return done;
}

//  --------------------------------------------------------------------------
//  The Escalation Tracker report: escalations raised in the period or
//  still open at its start, then the learning alerts published in it or
//  with a session still open at its start, then REPORT-END.

enum { S_REPORT_ESCALATIONS, S_REPORT_LEARNING, S_REPORT_END };

static bool
s_tracker_reader (const sgmq_principal_t *principal)
{
    return s_is_executive (principal)
        || sgmq_principal_has_role (principal, SGMQ_ROLE_AUDITOR | SGMQ_ROLE_ADMIN);
}

//  First seq stored at or after `since` (1 when open), so a report of one
//  month does not walk the years before it.
static uint64_t
s_first_seq_since (sgmq_store_txn_t *txn, uint64_t since)
{
    if (!since)
        return 1;
    sgmq_store_query_t query = { .since = since };
    sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, &query);
    sgmq_store_record_t record;
    uint64_t seq = iter && sgmq_store_iter_next (iter, &record) == 0 ? record.seq
                                                                     : UINT64_MAX;
    sgmq_store_iter_destroy (&iter);
    return seq;
}

//  Whether an escalation was still waiting for its response at `since`.
static bool
s_escalation_open_at (const sgmq_store_escalation_t *e, uint64_t since)
{
    return e->status != SGMQ_STORE_ESC_RESPONDED || e->responded_at >= since;
}

//  Whether a learning alert had a session or reflection still to hold at
//  `since`.
static bool
s_learning_open_at (const sgmq_store_learning_t *l, uint64_t since)
{
    return (l->session_by && (!l->session_held || l->session_held >= since))
        || (l->reflection_by && (!l->reflection_held || l->reflection_held >= since));
}

static void
s_report_start (sgmq_broker_t *self, s_session_t *session, const sgmq_cmd_t *cmd,
                const sgmq_principal_t *principal)
{
    if (!s_tracker_reader (principal)) {
        s_error (self, session, cmd->id, SGMQ_E_FORBIDDEN, NULL, "rule "
                 "tracker-readers: only Executive members, auditors and admins "
                 "may read the Escalation Tracker");
        return;
    }
    s_stream_reap (self, session);
    if (session->replay) {
        s_error (self, session, cmd->id, SGMQ_E_BUSY, NULL,
                 "a replay or report is already running on this session");
        return;
    }
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (self->store, &rc);
    s_replay_t *report = txn ? calloc (1, sizeof *report) : NULL;
    if (!report) {
        sgmq_store_read_end (&txn);
        s_error (self, session, cmd->id, SGMQ_E_UNAVAILABLE, NULL, "store unavailable");
        return;
    }
    report->report = true;
    report->request = cmd->id;
    report->since = cmd->u.report.since;
    report->until = cmd->u.report.until;
    report->first = s_first_seq_since (txn, report->since);
    //  From the first record: what was raised before the period and is
    //  still open belongs in its papers too (the walk reads tracking
    //  records only, and turn by turn).
    report->next = 1;
    sgmq_store_read_end (&txn);
    session->replay = report;
    self->replays++;
}

//  The escalation item for tracking record `e`. 0, or -1 with `why`
//  (SGMQ_PROTO_MAX_REASON bytes) if its message cannot be read or
//  contradicts the record (the report then ends with an error).
static int
s_report_escalation (sgmq_broker_t *self, sgmq_store_txn_t *txn,
                     const sgmq_store_escalation_t *e, sgmq_cmd_t *item, char *why)
{
    //  Strings copied out: each store read and body decode below reuses
    //  the memory of the one before.
    static char from [SGMQ_PROTO_MAX_NAME + 1], title [SGMQ_PROTO_MAX_TITLE + 1];
    static char decision [SGMQ_PROTO_MAX_SHORTTEXT + 1], summary [SGMQ_PROTO_MAX_TEXT + 1];
    sgmq_store_record_t record;
    sgmq_body_t body;
    sgmq_proto_error_t error;
    if (sgmq_store_get (txn, e->seq, &record)
    ||  sgmq_proto_decode_body (self->body_frame, SGMQ_KIND_ESCALATION, record.body,
                                record.body_size, &body, &error)) {
        snprintf (why, SGMQ_PROTO_MAX_REASON, "message %llu cannot be read from the "
                  "store", (unsigned long long) e->seq);
        return -1;
    }
    //  The tracking record is in no chain; what the escalation's own
    //  message says is. Where both say something, they must agree.
    if (strcmp (e->group, body.u.escalation.group) != 0
    ||  e->respond_by != body.u.escalation.respond_by
    ||  (e->status == SGMQ_STORE_ESC_RESPONDED) != (e->response_seq != 0)) {
        snprintf (why, SGMQ_PROTO_MAX_REASON, "the tracking record of escalation %llu "
                  "does not match its message (group, date to respond by or status)",
                  (unsigned long long) e->seq);
        return -1;
    }
    s_copy (from, sizeof from, record.sender);
    s_copy (title, sizeof title, body.u.escalation.title);
    memset (item, 0, sizeof *item);
    item->cmd = SGMQ_CMD_REPORT_ESCALATION;
    item->u.report_escalation.seq = e->seq;
    item->u.report_escalation.time = record.time;
    item->u.report_escalation.from = from;
    item->u.report_escalation.agency = s_agency_of (self, record.sender, record.sender_key);
    item->u.report_escalation.group = e->group;
    item->u.report_escalation.title = title;
    item->u.report_escalation.severity = body.u.escalation.severity;
    item->u.report_escalation.respond_by = e->respond_by;
    item->u.report_escalation.ack_by = e->ack_by;
    item->u.report_escalation.status =
        e->status == SGMQ_STORE_ESC_RESPONDED ? SGMQ_ESC_RESPONDED
      : e->status == SGMQ_STORE_ESC_ACKNOWLEDGED ? SGMQ_ESC_ACKNOWLEDGED : SGMQ_ESC_RAISED;
    item->u.report_escalation.acked_at = e->acked_at;
    item->u.report_escalation.acked_by = e->acked_at ? e->acked_by : NULL;
    item->u.report_escalation.responded_at = e->responded_at;
    item->u.report_escalation.response_seq = e->response_seq;
    item->u.report_escalation.overdue_ack = (e->overdue & SGMQ_STORE_OVERDUE_ACK) != 0;
    item->u.report_escalation.overdue_response =
        (e->overdue & SGMQ_STORE_OVERDUE_RESPONSE) != 0;
    item->u.report_escalation.reminders = e->reminders;
    if (e->response_seq) {
        //  The decision shown must be a response to this escalation.
        if (sgmq_store_get (txn, e->response_seq, &record)
        ||  strcmp (record.kind, "response") != 0
        ||  sgmq_proto_decode_body (self->body_frame, SGMQ_KIND_RESPONSE, record.body,
                                    record.body_size, &body, &error)
        ||  body.u.response.to != e->seq
        ||  e->responded_at > record.time) {
            snprintf (why, SGMQ_PROTO_MAX_REASON, "the tracking record of escalation "
                      "%llu names message %llu as its response, which is not one to "
                      "it (or cannot be read)", (unsigned long long) e->seq,
                      (unsigned long long) e->response_seq);
            return -1;
        }
        s_copy (decision, sizeof decision, body.u.response.decision);
        s_copy (summary, sizeof summary, body.u.response.summary);
        item->u.report_escalation.decision = decision;
        item->u.report_escalation.response_summary = summary;
    }
    return 0;
}

//  The learning item for tracking record `l`; -1 with `why` if its
//  message cannot be read.
static int
s_report_learning (sgmq_broker_t *self, sgmq_store_txn_t *txn,
                   const sgmq_store_learning_t *l, sgmq_cmd_t *item, char *why)
{
    static sgmq_recipient_t recipients [SGMQ_PROTO_MAX_ACKS];
    sgmq_store_record_t record;
    sgmq_body_t body;
    sgmq_proto_error_t error;
    if (sgmq_store_get (txn, l->seq, &record)
    ||  sgmq_proto_decode_body (self->body_frame, SGMQ_KIND_LEARNING, record.body,
                                record.body_size, &body, &error)) {
        snprintf (why, SGMQ_PROTO_MAX_REASON, "message %llu cannot be read from the "
                  "store", (unsigned long long) l->seq);
        return -1;
    }
    memset (item, 0, sizeof *item);
    item->cmd = SGMQ_CMD_REPORT_LEARNING;
    item->u.report_learning.seq = l->seq;
    item->u.report_learning.time = record.time;
    item->u.report_learning.from = record.sender;
    item->u.report_learning.agency = s_agency_of (self, record.sender, record.sender_key);
    item->u.report_learning.title = body.u.learning.title;
    item->u.report_learning.review_ref = body.u.learning.review_ref;
    item->u.report_learning.review_type = body.u.learning.review_type;
    item->u.report_learning.groups = body.u.learning.groups;
    item->u.report_learning.session_by = l->session_by;
    item->u.report_learning.session_held = l->session_held;
    item->u.report_learning.reflection_by = l->reflection_by;
    item->u.report_learning.reflection_held = l->reflection_held;
    uint32_t count = 0;
    for (uint32_t r = 0; r < record.recipient_count && count < SGMQ_PROTO_MAX_ACKS; r++) {
        const sgmq_principal_t *p = sgmq_registry_find (self->registry, record.recipients [r]);
        sgmq_store_delivery_t d;
        bool acked = sgmq_store_delivery (txn, record.recipients [r], l->seq, &d) == 0
                  && d.state == SGMQ_STORE_ACKED;
        recipients [count++] = (sgmq_recipient_t) {
            .name = record.recipients [r],
            .agency = p ? sgmq_principal_agency (p) : "(no longer admitted)",
            .groups = { p ? (uint32_t) sgmq_principal_group_count (p) : 0,
                        p ? sgmq_principal_groups (p) : NULL },
            .acked_at = acked ? d.acked_at : 0
        };
    }
    item->u.report_learning.recipient_count = count;
    item->u.report_learning.recipients = recipients;
    return 0;
}

//  Up to a share of S_REPLAY_PER_TURN report items; 1 when REPORT-END is
//  written.
static int
s_report_items (sgmq_broker_t *self, s_session_t *session, sgmq_store_txn_t *txn)
{
    s_replay_t *report = session->replay;
    size_t share = s_stream_share (self);
    for (size_t n = 0; n < share; n++) {
        sgmq_cmd_t item;
        char why [SGMQ_PROTO_MAX_REASON];      //  set where rc becomes -1
        //  Out here: the item points into e (group, acked_by) until it is
        //  written below.
        sgmq_store_escalation_t e;
        uint64_t seq = 0, time = 0;
        int rc = SGMQ_STORE_E_NOT_FOUND;
        if (report->phase == S_REPORT_ESCALATIONS) {
            rc = report->next ? sgmq_store_escalation_next (txn, report->next - 1, &e)
                              : SGMQ_STORE_E_NOT_FOUND;
            if (rc == 0 && e.seq < report->first && !s_escalation_open_at (&e, report->since)) {
                report->next = e.seq + 1;
                continue;       //  closed before the period
            }
            if (rc == 0) {
                seq = e.seq;
                time = e.raised;
                if (!(report->until && time > report->until)
                &&  s_report_escalation (self, txn, &e, &item, why))
                    rc = -1;
            }
        }
        else
        if (report->phase == S_REPORT_LEARNING) {
            sgmq_store_learning_t l;
            rc = report->next ? sgmq_store_learning_next (txn, report->next - 1, &l)
                              : SGMQ_STORE_E_NOT_FOUND;
            if (rc == 0 && l.seq < report->first && !s_learning_open_at (&l, report->since)) {
                report->next = l.seq + 1;
                continue;       //  its sessions were held before the period
            }
            if (rc == 0) {
                seq = l.seq;
                if (s_report_learning (self, txn, &l, &item, why))
                    rc = -1;
                else
                    time = item.u.report_learning.time;
            }
        }
        else {
            sgmq_cmd_t end = { .cmd = SGMQ_CMD_REPORT_END, .id = report->request };
            end.u.report_end.escalations = report->count;
            end.u.report_end.learning = report->learning;
            if (s_stream_write (self, session, &end) == -1)
                return 0;
            s_log (S_LOG_INFO, "report sent name=\"%s\" escalations=%llu learning=%llu",
                   session->name, (unsigned long long) report->count,
                   (unsigned long long) report->learning);
            report->ended = true;
            return 1;
        }
        if (rc == -1) {
            //  Unreadable or contradicted by the chain (a damaged or edited
            //  store). Skipped, it left a critical escalation out of a
            //  report that looked whole; shown, it would say what an edit
            //  made it say (a tamper review): end the report with an error
            //  naming it.
            s_log (S_LOG_ERROR, "report: %s", why);
            char reason [SGMQ_PROTO_MAX_REASON];
            snprintf (reason, sizeof reason, "%.180s: the report stops here (verify "
                      "the store; see the broker's log)", why);
            sgmq_cmd_t error = { .cmd = SGMQ_CMD_ERROR, .id = report->request };
            error.u.error.code = SGMQ_E_INTERNAL;
            error.u.error.reason = reason;
            if (s_stream_write (self, session, &error) == -1)
                return 0;
            report->ended = true;
            return 1;
        }
        if (rc || (report->until && time > report->until)) {
            //  This phase is over: the learning alerts of the period next.
            report->phase++;
            if (report->phase == S_REPORT_LEARNING)
                report->next = 1;
            continue;
        }
        item.id = report->request;
        rc = s_stream_write (self, session, &item);
        if (rc == -1)
            return 0;           //  this item goes next turn
        report->next = seq + 1;
        if (rc == 0 && report->phase == S_REPORT_ESCALATIONS)
            report->count++;
        else
        if (rc == 0)
            report->learning++;
    }
    return 0;
}

//  One step of a session's stream: send what was waiting, then up to
//  S_REPLAY_PER_TURN items, each frame as soon as it is full enough.
static void
s_replay_step (sgmq_broker_t *self, s_session_t *session)
{
    s_replay_t *stream = session->replay;
    if (!stream->out && !(stream->out = s_writer_new ()))
        return;
    if (s_replay_send (self, session))
        return;
    if (stream->ended)
        return;                 //  s_turn reaps it
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (self->store, &rc);
    if (!txn)
        return;
    if (stream->report)
        s_report_items (self, session, txn);
    else
    if (s_replay_items (self, session, txn) && !stream->blocked)
        s_replay_end (self, session, txn);
    if (!stream->blocked)
        s_replay_send (self, session);
    sgmq_store_read_end (&txn);
}

//  --------------------------------------------------------------------------
//  Draining the ROUTER

//  Writes wait in self->work and reads in self->reads, both s_work_t.
static s_work_t *
s_queue_add (s_work_t **list, size_t *capacity, size_t *count, s_session_t *session,
             const sgmq_cmd_t *cmd, const sgmq_principal_t *principal)
{
    if (S_RESERVE (*list, *capacity, *count + 1))
        return NULL;
    s_work_t *work = &(*list) [(*count)++];
    s_work_init (work, session, cmd, principal);
    return work;
}

static sgmq_proto_frame_t *
s_frame_slot (sgmq_broker_t *self)
{
    if (self->frame_count == self->frame_capacity) {
        if (S_RESERVE (self->frames, self->frame_capacity, self->frame_count + 1))
            return NULL;
        for (size_t i = self->frame_count; i < self->frame_capacity; i++)
            self->frames [i] = NULL;
    }
    sgmq_proto_frame_t **slot = &self->frames [self->frame_count];
    if (!*slot)
        *slot = sgmq_proto_frame_new ();
    return *slot;
}

//  Count malformed or dropped input (answered already) and warn about it,
//  at most once every S_BAD_WARN_MS: names the key and the code, never the
//  bytes.
static void
s_bad_input (sgmq_broker_t *self, const char *key, size_t size, int code, bool frame)
{
    if (frame)
        self->bad_frames++;
    else
        self->bad_commands++;
    self->bad_unwarned++;
    s_log (S_LOG_DEBUG, "bad %s key=%s size=%zu code=%d", frame ? "frame" : "command",
           key ? key : "?", size, code);
    int64_t now = s_mono ();
    if (now >= self->next_bad_warning) {
        s_log (S_LOG_WARNING, "bad input key=%s code=%d (%llu frames or commands "
               "refused or dropped since the last such warning)", key ? key : "?", code,
               (unsigned long long) self->bad_unwarned);
        self->bad_unwarned = 0;
        self->next_bad_warning = now + S_BAD_WARN_MS;
    }
}

//  One frame from one peer. Returns the number of commands it held.
static size_t
s_handle_frame (sgmq_broker_t *self, const uint8_t *routing, size_t routing_size,
                const uint8_t *data, size_t size, const char *key, bool multipart)
{
    self->frames_in++;
    sgmq_proto_frame_t *frame = s_frame_slot (self);
    if (!frame)
        return 0;
    if (multipart) {
        s_error_to (self, routing, routing_size, 0, SGMQ_E_MALFORMED, NULL,
                    "send each frame as a single-part message");
        s_bad_input (self, key, size, SGMQ_E_MALFORMED, true);
        return 0;
    }
    sgmq_proto_error_t error;
    if (sgmq_proto_decode (frame, data, size, &error)) {
        s_error_to (self, routing, routing_size, 0, error.code, error.field,
                    "%s", error.reason);
        s_bad_input (self, key, size, error.code, true);
        return 0;
    }
    const sgmq_principal_t *principal = key ? s_principal (self, key) : NULL;
    s_session_t *session = s_session_find (self, routing, routing_size);
    s_session_t *ponged = NULL;
    bool retained = false;
    size_t count = sgmq_proto_count (frame);
    for (size_t i = 0; i < count; i++) {
        const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, i, &error);
        self->commands_in++;
        if (!cmd) {
            s_error_to (self, routing, routing_size, error.id, error.code, error.field,
                        "%s", error.reason);
            s_bad_input (self, key, size, error.code, false);
            continue;
        }
        if (!principal) {
            //  Revoked after this connection was made: refuse everything.
            s_error_to (self, routing, routing_size, cmd->id, SGMQ_E_NOT_AUTHORISED,
                        NULL, "your key is not admitted (revoked or unknown)");
            continue;
        }
        if (cmd->cmd == SGMQ_CMD_HELLO) {
            s_hello (self, routing, routing_size, key, principal, cmd->id);
            session = s_session_find (self, routing, routing_size);
            continue;
        }
        if (!session || session->closing || strcmp (session->key, key) != 0) {
            s_error_to (self, routing, routing_size, cmd->id, SGMQ_E_BAD_REQUEST,
                        NULL, "no session: send HELLO first");
            continue;
        }
        session->last_seen = s_mono ();
        switch (cmd->cmd) {
            case SGMQ_CMD_PING: {
                sgmq_cmd_t pong = { .cmd = SGMQ_CMD_PONG, .id = cmd->id };
                s_reply (self, session, &pong);
                ponged = session;
                break;
            }
            case SGMQ_CMD_BYE:
                s_close_later (self, session);
                break;
            case SGMQ_CMD_SUBSCRIBE:
                //  Each SUBSCRIBE starts the stream afresh: all of the
                //  backlog counted, a whole window sent again. A client
                //  that repeated it in a loop held every turn for seconds.
                if (session->subscribed_at
                &&  s_mono () - session->subscribed_at < S_SUBSCRIBE_GAP_MS) {
                    s_error (self, session, cmd->id, SGMQ_E_BUSY, NULL, "a session's "
                             "SUBSCRIBE is taken at most once a second");
                    break;
                }
                session->subscribed_at = s_mono ();
                if (s_queue_add (&self->work, &self->work_capacity, &self->work_count,
                                 session, cmd, principal))
                    retained = true;
                break;
            case SGMQ_CMD_PUBLISH:
            case SGMQ_CMD_ACK:
                if (s_queue_add (&self->work, &self->work_capacity, &self->work_count,
                                 session, cmd, principal))
                    retained = true;
                break;
            case SGMQ_CMD_PENDING:
                if (session->pending_turn != self->turn) {
                    session->pending_turn = self->turn;
                    session->pending_taken = 0;
                }
                if (session->pending_taken == S_PENDING_PER_TURN) {
                    s_error (self, session, cmd->id, SGMQ_E_BUSY, NULL, "at most %d "
                             "PENDING requests of a session are taken at a time; ask "
                             "again when their answers have come", S_PENDING_PER_TURN);
                    break;
                }
                session->pending_taken++;
                //  Fall through
            case SGMQ_CMD_REPLAY:
            case SGMQ_CMD_REPORT:
                if (s_queue_add (&self->reads, &self->read_capacity, &self->read_count,
                                 session, cmd, principal))
                    retained = true;
                break;
            default:
                s_error (self, session, cmd->id, SGMQ_E_BAD_REQUEST, NULL,
                         "%s is sent by the broker, not to it",
                         sgmq_proto_cmd_name (cmd->cmd));
                break;
        }
    }
    //  A PONG goes with this frame's other immediate answers now, not at
    //  the end of the turn: under load a turn takes long, and a client
    //  judges the link by its PINGs. (What the session's writer holds
    //  here is never a confirm: those are written after the commit.)
    if (ponged && ponged == session)
        s_send_frame (self, ponged);
    //  Commands kept for later point into this frame: keep it for the turn.
    if (retained)
        self->frame_count++;
    return count;
}

//  Reads one frame (its routing id and first part; further parts are
//  read and dropped). False when libzmq holds none.
static bool
s_recv_frame (void *handle, zmq_msg_t *routing, zmq_msg_t *payload, bool *multipart)
{
    zmq_msg_init (routing);
    zmq_msg_init (payload);
    if (zmq_msg_recv (routing, handle, ZMQ_DONTWAIT) < 0)
        return false;
    *multipart = false;
    if (zmq_msg_more (routing) && zmq_msg_recv (payload, handle, 0) >= 0) {
        *multipart = zmq_msg_more (payload);
        bool more = *multipart;
        while (more) {
            zmq_msg_t extra;
            zmq_msg_init (&extra);
            more = zmq_msg_recv (&extra, handle, 0) >= 0 && zmq_msg_more (&extra);
            zmq_msg_close (&extra);
        }
    }
    return true;
}

//  What a turn has handled so far (S_DRAIN_FRAMES...).
typedef struct {
    size_t frames, bytes, commands;
} s_drained_t;

static bool
s_drain_full (const s_drained_t *drained)
{
    return drained->frames >= S_DRAIN_FRAMES || drained->bytes >= S_DRAIN_BYTES
        || drained->commands >= S_DRAIN_COMMANDS;
}

//  Handles one frame and closes it; the refusals its commands get go
//  together, at the end.
static void
s_take_frame (sgmq_broker_t *self, zmq_msg_t *routing, zmq_msg_t *payload,
              bool multipart, s_drained_t *drained)
{
    if (zmq_msg_size (routing) <= 255) {
        const char *key = zmq_msg_gets (payload, "User-Id");
        self->refusals_to = zmq_msg_data (routing);
        self->refusals_to_size = zmq_msg_size (routing);
        drained->commands += s_handle_frame (self, zmq_msg_data (routing),
                                             zmq_msg_size (routing),
                                             zmq_msg_data (payload),
                                             zmq_msg_size (payload), key, multipart);
        s_refusals_flush (self);
        self->refusals_to = NULL;
        drained->bytes += zmq_msg_size (payload);
    }
    drained->frames++;
    zmq_msg_close (payload);
    zmq_msg_close (routing);
}

static size_t
s_park_cost (zmq_msg_t *payload)
{
    return zmq_msg_size (payload) + S_PARK_OVERHEAD;
}

//  Keeps a frame for the next turn, or drops it (closing it either way).
static void
s_park (sgmq_broker_t *self, zmq_msg_t *routing, zmq_msg_t *payload, bool multipart)
{
    char id [S_ID_HEX];
    size_t routing_size = zmq_msg_size (routing);
    s_hex (zmq_msg_data (routing), routing_size <= 255 ? routing_size : 0, id);
    s_peer_park_t *peer = zhashx_lookup (self->parked_by_peer, id);
    size_t cost = s_park_cost (payload);
    size_t held = peer ? peer->bytes : 0;
    bool room = routing_size <= 255
             && !(peer && peer->dropping)
             && held + cost <= S_PARK_PEER_BYTES
             && (self->parked_bytes + cost <= S_PARK_BYTES
                 || (held == 0 && self->parked_bytes + cost
                                  <= S_PARK_BYTES + S_PARK_SPARE_BYTES));
    s_parked_t *parked = room ? calloc (1, sizeof *parked) : NULL;
    if (parked && !peer) {
        peer = calloc (1, sizeof *peer);
        if (!peer || zhashx_insert (self->parked_by_peer, id, peer) != 0) {
            free (peer);
            peer = NULL;
            free (parked);
            parked = NULL;
        }
        else
            peer->handle = zlistx_add_end (self->parked_ring, peer);
    }
    s_session_t *session = zhashx_lookup (self->sessions, id);
    if (!parked) {
        self->dropped++;
        if (peer)
            peer->dropping = true;
        if (session)
            s_close_later (self, session);
        if (routing_size <= 255 && (!peer || peer->answered != self->turn)) {
            s_error_to (self, zmq_msg_data (routing), routing_size, 0, SGMQ_E_BUSY, NULL,
                        "frames dropped unread: too much waits from this connection; "
                        "its session ends: say HELLO, then send again what is "
                        "unanswered");
            if (peer)
                peer->answered = self->turn;
            s_bad_input (self, zmq_msg_gets (payload, "User-Id"), zmq_msg_size (payload),
                         SGMQ_E_BUSY, true);
        }
        zmq_msg_close (payload);
        zmq_msg_close (routing);
        return;
    }
    zmq_msg_init (&parked->routing);
    zmq_msg_init (&parked->payload);
    zmq_msg_move (&parked->routing, routing);
    zmq_msg_move (&parked->payload, payload);
    zmq_msg_close (payload);
    zmq_msg_close (routing);
    parked->multipart = multipart;
    if (peer->tail)
        peer->tail->next = parked;
    else
        peer->head = parked;
    peer->tail = parked;
    peer->bytes += cost;
    self->parked_bytes += cost;
    //  A sign of life: its session is not judged silent while it waits.
    if (session)
        session->last_seen = s_mono ();
}

//  Takes the oldest parked frame of the next connection in the ring (the
//  caller closes it); that connection goes to the end of the ring, as
//  libzmq serves its queues: one flooding peer delays another's frame by
//  at most one of its own.
static s_parked_t *
s_unpark (sgmq_broker_t *self)
{
    s_peer_park_t *peer = zlistx_first (self->parked_ring);
    s_parked_t *parked = peer->head;
    peer->head = parked->next;
    size_t cost = s_park_cost (&parked->payload);
    peer->bytes -= cost;
    self->parked_bytes -= cost;
    if (peer->head)
        zlistx_move_end (self->parked_ring, peer->handle);
    else {
        zlistx_delete (self->parked_ring, peer->handle);
        char id [S_ID_HEX];
        s_hex (zmq_msg_data (&parked->routing), zmq_msg_size (&parked->routing), id);
        zhashx_delete (self->parked_by_peer, id);
    }
    return parked;
}

//  Drops every parked frame.
static void
s_park_clear (sgmq_broker_t *self)
{
    while (zlistx_size (self->parked_ring)) {
        s_parked_t *parked = s_unpark (self);
        zmq_msg_close (&parked->routing);
        zmq_msg_close (&parked->payload);
        free (parked);
    }
}

//  Parked frames first (a connection's frames are handled in the order
//  they came), then new ones, up to a turn's budget; then the rest of
//  what libzmq holds is parked (S_RCVHWM).
static void
s_drain (sgmq_broker_t *self)
{
    void *handle = zsock_resolve (self->router);
    s_drained_t drained = { 0 };
    while (zlistx_size (self->parked_ring) && !s_drain_full (&drained)) {
        s_parked_t *parked = s_unpark (self);
        s_take_frame (self, &parked->routing, &parked->payload, parked->multipart, &drained);
        free (parked);
    }
    zmq_msg_t routing, payload;
    bool multipart;
    while (!zlistx_size (self->parked_ring) && !s_drain_full (&drained)) {
        if (!s_recv_frame (handle, &routing, &payload, &multipart))
            goto none;
        s_take_frame (self, &routing, &payload, multipart, &drained);
    }
    for (size_t reads = 0; reads < S_PARK_READS; reads++) {
        if (!s_recv_frame (handle, &routing, &payload, &multipart))
            goto none;
        s_park (self, &routing, &payload, multipart);
    }
    return;
none:
    zmq_msg_close (&payload);
    zmq_msg_close (&routing);
}

static void
s_close_later (sgmq_broker_t *self, s_session_t *session)
{
    if (!session->closing) {
        session->closing = true;
        zlistx_add_end (self->closing, session);
    }
}

//  --------------------------------------------------------------------------
//  Housekeeping: rescans, expiry, redelivery scan, checkpoints

//  The broker's own heap (resident pages not backed by a file: the
//  store's pages are), in bytes; 0 if unknown.
static size_t
s_heap_bytes (void)
{
    FILE *file = fopen ("/proc/self/statm", "r");
    unsigned long long size, resident, shared;
    int fields = file ? fscanf (file, "%llu %llu %llu", &size, &resident, &shared) : 0;
    if (file)
        fclose (file);
    if (fields != 3 || shared > resident)
        return 0;
    return (size_t) (resident - shared) * (size_t) sysconf (_SC_PAGESIZE);
}

static int
    s_router_open (sgmq_broker_t *self, const char *endpoint, char *error);

//  libzmq 4.3.4 holds input the broker can neither see nor bound: a
//  multipart message whose parts never end, and the input of a
//  connection that chose a routing id already in use (set aside unread).
//  One admitted key can grow the broker that way. Past limits/max-memory
//  of heap grown since it settled (at start, or after the last time) the
//  broker drops every connection: it closes its socket, which frees what
//  libzmq held, and opens it again on the same endpoint. Clients connect
//  again and send what is unanswered; nothing stored is touched. (Growth,
//  not the whole heap: what the allocator keeps after the drop must not
//  make it drop everyone again and again.)
static void
s_memory_guard (sgmq_broker_t *self)
{
    size_t heap = s_heap_bytes ();
    int64_t limit = sgmq_config_int (self->config, SGMQ_OPT_MAX_MEMORY);
    if (!self->heap_settled)
        self->heap_settled = heap;
    if (!heap || heap <= self->heap_settled
    ||  (int64_t) (heap - self->heap_settled) <= limit)
        return;
    s_log (S_LOG_ERROR, "heap %zu MiB, grown past limits/max-memory (%lld MiB): dropping "
           "every connection (libzmq holds input the broker cannot bound: a multipart "
           "message that never ends, or a reused routing id)", heap >> 20,
           (long long) (limit >> 20));
    while (zhashx_size (self->sessions))
        s_session_drop (self, zhashx_first (self->sessions), "memory");
    s_park_clear (self);
    char endpoint [sizeof self->endpoint];
    s_copy (endpoint, sizeof endpoint, self->endpoint);
    zsock_destroy (&self->router);
    //  libzmq closes the old listener in its own thread: the port may be
    //  taken for a moment.
    char error [SGMQ_BROKER_ERROR_SIZE] = "";
    for (int attempt = 0; attempt < S_REOPEN_TRIES; attempt++) {
        if (s_router_open (self, endpoint, error) == 0)
            break;
        zsock_destroy (&self->router);
        zclock_sleep (S_REOPEN_PAUSE_MS);
    }
    malloc_trim (0);
    if (!self->router) {
        //  A broker nobody can reach is no use: stop with a failure, so
        //  that systemd starts it again.
        s_log (S_LOG_ERROR, "cannot listen again: %s", error);
        self->unbound = true;
        self->stop = 1;
        return;
    }
    self->heap_settled = s_heap_bytes ();
    s_log (S_LOG_WARNING, "listening again on %s; heap %zu MiB", self->endpoint,
           self->heap_settled >> 20);
}

static void
s_housekeeping (sgmq_broker_t *self)
{
    int64_t now = s_mono ();
    if (now >= self->next_memory_check) {
        s_memory_guard (self);
        self->next_memory_check = now + S_MEMORY_CHECK_MS;
    }
    if (now >= self->next_registry_scan) {
        s_registry_rescan (self);
        self->next_registry_scan = now + S_REGISTRY_SCAN_MS;
    }
    if (now >= self->next_trim) {
        //  Give back the heap that large frames of sessions now gone left
        //  free (glibc keeps it otherwise: a review saw 577 MB stay).
        malloc_trim (0);
        //  A backup killed mid-copy leaves a reader slot that stops LMDB
        //  reusing pages: the file grew by 0.5 GB in 20 s in a review.
        int cleared = 0;
        int rc = sgmq_store_reader_check (self->store, &cleared);
        if (rc)
            s_log (S_LOG_WARNING, "cannot check the store's readers: %s",
                   sgmq_store_strerror (rc));
        else
        if (cleared)
            s_log (S_LOG_WARNING, "freed %d reader slot%s left by a process that died "
                   "(a backup killed mid-copy?)", cleared, cleared == 1 ? "" : "s");
        self->next_trim = now + S_TRIM_MS;
    }
    if (now >= self->next_checkpoint) {
        int rc = sgmq_store_checkpoint (self->store);
        if (rc && rc != SGMQ_STORE_E_INVALID)
            s_log (S_LOG_WARNING, "checkpoint not written: %s", sgmq_store_strerror (rc));
        self->next_checkpoint = now
            + (int64_t) sgmq_config_duration (self->config, SGMQ_OPT_CHECKPOINT).amount;
    }
}

//  Sessions silent too long close; those with redeliveries due are listed
//  for the batch. After the drain, so that a session's frames waiting in
//  it (a PING) count before it is judged silent.
static void
s_scan_sessions (sgmq_broker_t *self)
{
    int64_t now = s_mono ();
    self->due_count = 0;
    if (now < self->next_redeliver_scan)
        return;
    int64_t timeout = (int64_t) sgmq_config_duration (self->config,
                                                      SGMQ_OPT_SESSION_TIMEOUT).amount;
    bool busy = false;
    for (s_session_t *session = zhashx_first (self->sessions); session;
         session = zhashx_next (self->sessions)) {
        //  An auditor reading a long history sends nothing until it ends
        //  (a verify of a large store timed out at 800,000 items): a
        //  session with a stream is not judged by its silence, but by its
        //  stream: blocked for S_STREAM_STALLS timeouts, it ends, PINGs or
        //  not. (libzmq takes more only once half its queue was read, so a
        //  slow reader blocks the stream for a while.)
        const s_replay_t *stream = session->replay;
        bool stalled = stream && stream->blocked
                    && now - stream->blocked_since > S_STREAM_STALLS * timeout;
        if ((now - session->last_seen > timeout && !stream) || stalled) {
            s_close_later (self, session);
            continue;
        }
        busy |= session->inflight_count > 0;
        if (session->next_due <= now
        &&  S_RESERVE (self->due, self->due_capacity, self->due_count + 1) == 0)
            self->due [self->due_count++] = session;
    }
    self->next_redeliver_scan = now + (busy ? S_REDELIVER_SCAN_MS : S_IDLE_POLL_MS);
}

static long
s_poll_timeout (sgmq_broker_t *self)
{
    int64_t now = s_mono ();
    int64_t wake = now + S_IDLE_POLL_MS;
    if (self->next_registry_scan < wake)
        wake = self->next_registry_scan;
    if (self->next_memory_check < wake)
        wake = self->next_memory_check;
    if (self->next_redeliver_scan < wake)
        wake = self->next_redeliver_scan;
    if (self->next_checkpoint < wake)
        wake = self->next_checkpoint;
    if (self->next_store_timer) {
        //  Deadlines are any uint64 a publisher chose: compare unsigned.
        uint64_t wall = sgmq_time_now ();
        if (self->next_store_timer < wall) {
            if (self->timers_retry_at < wake)
                wake = self->timers_retry_at > now ? self->timers_retry_at : now;
        }
        else
        if (wake > now && self->next_store_timer - wall < (uint64_t) (wake - now))
            wake = now + (int64_t) (self->next_store_timer - wall) + 1;
    }
    if (self->any_blocked && now + S_BLOCKED_POLL_MS < wake)
        wake = now + S_BLOCKED_POLL_MS;
    if (self->replay_more || self->refill_more || zlistx_size (self->parked_ring))
        wake = now;
    return wake > now ? (long) (wake - now) : 0;
}

//  --------------------------------------------------------------------------
//  One turn

static void
s_flush (sgmq_broker_t *self)
{
    for (s_session_t *session = zlistx_first (self->dirty); session;
         session = zlistx_next (self->dirty)) {
        session->dirty = false;
        s_send_frame (self, session);
    }
    zlistx_purge (self->dirty);
}

static void
s_end_turn (sgmq_broker_t *self)
{
    for (size_t i = 0; i < self->work_count; i++)
        free (self->work [i].body);
    for (size_t i = 0; i < self->internal_count; i++)
        free (self->internal [i].body);
    self->work_count = self->read_count = self->internal_count = 0;
    self->effect_count = self->touched_count = self->due_count = 0;
    self->frame_count = 0;
    size_t kept = 0;
    for (size_t i = 0; i < self->frame_capacity; i++)
        if (self->frames [i]) {
            kept += sgmq_proto_frame_memory (self->frames [i]);
            if (kept > S_FRAME_POOL_BYTES)
                sgmq_proto_frame_destroy (&self->frames [i]);
        }
    for (s_session_t *session = zlistx_first (self->closing); session;
         session = zlistx_next (self->closing))
        s_session_drop (self, session, session->replay ? "closed during replay"
                                                       : "closed");
    zlistx_purge (self->closing);
}

static void
s_turn (sgmq_broker_t *self)
{
    zmq_pollitem_t items [] = {
        { zsock_resolve (self->router), 0, ZMQ_POLLIN, 0 },
        { zsock_resolve (self->zap), 0, ZMQ_POLLIN, 0 },
        { NULL, self->signal_pipe [0], ZMQ_POLLIN, 0 }
    };
    self->turn++;
    self->pending_scanned = 0;
    int rc = zmq_poll (items, 3, s_poll_timeout (self));
    if (rc < 0 && errno != EINTR) {
        s_log (S_LOG_ERROR, "poll failed: %s", zmq_strerror (errno));
        self->stop = 1;
        return;
    }
    if (self->stop)
        return;
    if (items [1].revents & ZMQ_POLLIN)
        s_zap_serve (self);
    s_housekeeping (self);
    if (self->stop)
        return;                     //  the memory guard could not listen again
    s_drain (self);
    s_scan_sessions (self);
    bool timers_due = self->next_store_timer
                   && self->next_store_timer < sgmq_time_now ()
                   && s_mono () >= self->timers_retry_at;
    if (self->work_count || self->due_count || timers_due || self->refill_more) {
        rc = self->broken ? SGMQ_STORE_E_BROKEN
                          : sgmq_store_write (self->store, s_batch, self);
        s_apply (self, rc);
    }
    for (size_t i = 0; i < self->read_count; i++) {
        s_work_t *read = &self->reads [i];
        if (read->cmd->cmd == SGMQ_CMD_PENDING)
            s_pending (self, read->session, read->cmd, read->principal);
        else
        if (read->cmd->cmd == SGMQ_CMD_REPORT)
            s_report_start (self, read->session, read->cmd, read->principal);
        else
            s_replay_start (self, read->session, read->cmd, read->principal);
    }
    //  Replays go after the answers, so a quick question is not stuck
    //  behind a long history.
    s_flush (self);
    self->any_blocked = self->replay_more = false;
    for (s_session_t *session = self->replays ? zhashx_first (self->sessions) : NULL;
         session; session = zhashx_next (self->sessions))
        if (session->replay && !session->closing) {
            s_replay_step (self, session);
            s_stream_reap (self, session);
            if (!session->replay)
                continue;
            if (session->replay->blocked)
                self->any_blocked = true;
            else
                self->replay_more = true;
        }
    s_end_turn (self);
}

//  --------------------------------------------------------------------------
//  Life cycle

static void
s_on_signal (int signum)
{
    (void) signum;
    if (s_signalled) {
        s_signalled->stop = 1;
        int saved = errno;
        ssize_t ignored = write (s_signalled->signal_pipe [1], "", 1);
        (void) ignored;
        errno = saved;
    }
}

//  Everything a deployment needs before binding, checked in order; the
//  first problem ends it with a one-line reason naming the file.
typedef struct {
    sgmq_config_t *config;
    sgmq_cert_t *cert;
    sgmq_registry_t *registry;
    uint8_t registry_sig [SGMQ_REGISTRY_SIG_SIZE];
    sgmq_store_t *store;
    int lock;                   //  flock on the data directory; -1: none
    uint8_t signing_pk [crypto_sign_PUBLICKEYBYTES];    //  checkpoints' key
} s_deployment_t;

static void
s_deployment_close (s_deployment_t *d)
{
    sgmq_store_close (&d->store);
    if (d->lock >= 0)
        close (d->lock);
    d->lock = -1;
    sgmq_registry_destroy (&d->registry);
    sgmq_cert_destroy (&d->cert);
    sgmq_config_destroy (&d->config);
}

//  The store must be there unless `sgmq init` marked the data folder for a
//  new one: a data volume that failed to mount, or a restore to the wrong
//  place, would otherwise start a new, empty history, numbered from 1
//  again, with every confirmed message gone from view. 0, or -1 with
//  `error` set.
static int
s_store_expected (const char *data, char *error)
{
    char path [4200];
    struct stat st;
    snprintf (path, sizeof path, "%s/%s", data, S_STORE_FILE);
    if (stat (path, &st) == 0)
        return 0;
    snprintf (path, sizeof path, "%s/%s", data, S_NEW_STORE_FILE);
    if (stat (path, &st) == 0)
        return 0;
    snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%.150s: no store here (%s is missing). "
              "If this deployment has stored messages, its data folder is not where "
              "the config says, was not mounted, or was lost: restore it from a "
              "backup (docs/operations.md). To begin a new, empty history on purpose, "
              "create the file %.150s/%s", data, S_STORE_FILE, data, S_NEW_STORE_FILE);
    return -1;
}

//  With `check`, a deployment whose broker is running (its data directory
//  is locked) is checked up to the store, which is left alone: *running
//  says so.
static int
s_deployment_open (s_deployment_t *d, const char *config_path, bool check,
                   bool *running, char *error)
{
    memset (d, 0, sizeof *d);
    d->lock = -1;
    char why [SGMQ_CONFIG_ERROR_SIZE];
    d->config = sgmq_config_load (config_path, why);
    if (!d->config) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%s", why);
        return -1;
    }
    const char *cert_path = sgmq_config_str (d->config, SGMQ_OPT_CERT);
    d->cert = sgmq_cert_load (cert_path, why);
    if (!d->cert) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%s", why);
        goto out_fail;
    }
    if (!sgmq_cert_secret_key (d->cert)) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%s: not a secret certificate "
                  "(it has no secret-key)", cert_path);
        goto out_fail;
    }
    uint8_t storage_key [SGMQ_KEYFILE_STORAGE_KEY_SIZE];
    uint8_t signing_key [SGMQ_KEYFILE_SIGN_SK_SIZE];
    uint32_t key_id = 0;
    if (sgmq_keyfile_read_storage (sgmq_config_str (d->config, SGMQ_OPT_STORAGE_KEY),
                                   &key_id, storage_key, why)
    ||  sgmq_keyfile_read_signing (sgmq_config_str (d->config, SGMQ_OPT_SIGNING_KEY),
                                   signing_key, why)) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%s", why);
        sodium_memzero (storage_key, sizeof storage_key);
        goto out_fail;
    }
    const char *certs = sgmq_config_str (d->config, SGMQ_OPT_CERTS);
    if (sgmq_registry_signature (certs, d->registry_sig) == 0)
        d->registry = sgmq_registry_load (certs, sgmq_config_group_ids (d->config),
                                          sgmq_config_group_count (d->config), why);
    if (!d->registry) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%s: cannot read the certs "
                  "directory: %s", certs, strerror (errno));
        goto out_wipe;
    }
    const char *data = sgmq_config_str (d->config, SGMQ_OPT_DATA);
    if (s_store_expected (data, error))
        goto out_wipe;
    //  LMDB lets two processes write one store; two brokers would both
    //  number messages. One broker per data directory, held by a lock.
    char lock_path [4200];
    snprintf (lock_path, sizeof lock_path, "%s/%s", data, S_LOCK_FILE);
    d->lock = open (lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock < 0 || flock (d->lock, LOCK_EX | LOCK_NB) != 0) {
        if (check && d->lock >= 0 && errno == EWOULDBLOCK) {
            *running = true;
            sodium_memzero (storage_key, sizeof storage_key);
            sodium_memzero (signing_key, sizeof signing_key);
            return 0;
        }
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%.400s: %s", lock_path,
                  d->lock < 0 ? strerror (errno)
                              : "another broker is using this data directory");
        goto out_wipe;
    }
    sgmq_store_options_t options = {
        .storage_key = storage_key, .key_id = key_id, .signing_key = signing_key,
        .map_size_max = (size_t) sgmq_config_int (d->config, SGMQ_OPT_MAP_SIZE_MAX),
        //  A check leaves an older build's store as it found it.
        .keep_format = check
    };
    int rc = 0;
    d->store = sgmq_store_open (data, &options, &rc, why, sizeof why);
    if (d->store) {
        //  A store exists now: the marker has done its work (left about,
        //  it would let a lost store be replaced later).
        char marker [4200];
        snprintf (marker, sizeof marker, "%s/%s", data, S_NEW_STORE_FILE);
        unlink (marker);
    }
    if (!d->store) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%s", why);
        goto out_wipe;
    }
    crypto_sign_ed25519_sk_to_pk (d->signing_pk, signing_key);
    sodium_memzero (storage_key, sizeof storage_key);
    sodium_memzero (signing_key, sizeof signing_key);
    return 0;

out_wipe:
    sodium_memzero (storage_key, sizeof storage_key);
    sodium_memzero (signing_key, sizeof signing_key);
out_fail:
    s_deployment_close (d);
    return -1;
}

//  This year, or the next, when the config lists no holiday in it (its
//  bank holidays would then count as working days); 0 when both have some.
static int
s_holidays_missing (const sgmq_config_t *config)
{
    size_t count;
    const int64_t *holidays = sgmq_config_holidays (config, &count);
    char now [SGMQ_TIME_TEXT_SIZE];
    int year = atoi (sgmq_time_format (sgmq_time_now (), now));
    for (int y = year; y <= year + 1; y++) {
        char first [32], next [32];
        snprintf (first, sizeof first, "%04d-01-01", y);
        snprintf (next, sizeof next, "%04d-01-01", y + 1);
        int64_t from = sgmq_time_parse_day (first), to = sgmq_time_parse_day (next);
        bool listed = false;
        for (size_t i = 0; i < count && !listed; i++)
            listed = holidays [i] >= from && holidays [i] < to;
        if (!listed)
            return y;
    }
    return 0;
}

#define S_HOLIDAYS_MISSING "no holidays listed for %d in [holidays]: bank holidays " \
                           "that year count as working days in deadlines"

int
sgmq_broker_check (const char *config_path, bool verify, bool *running, char *error)
{
    s_deployment_t d;
    *running = false;
    if (s_deployment_open (&d, config_path, true, running, error))
        return -1;
    for (size_t i = 0; i < sgmq_registry_problem_count (d.registry); i++)
        fprintf (stderr, "warning: certificate rejected: %s\n",
                 sgmq_registry_problem (d.registry, i));
    int year = s_holidays_missing (d.config);
    if (year)
        fprintf (stderr, "warning: " S_HOLIDAYS_MISSING "\n", year);
    int rc = 0;
    if (verify && *running) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "a broker is running on this data "
                  "directory: stop it to verify the store");
        rc = -1;
    }
    else
    if (verify) {
        //  Both chains and every checkpoint, from the start: the ack chain
        //  and the acked records that REPLAY and PENDING read are checked
        //  only here (an auditor's verify sees the message chain).
        sgmq_store_verify_t report;
        int vrc = sgmq_store_verify (d.store, d.signing_pk, &report);
        printf ("sgmq-broker: store: %llu messages, %llu acknowledgements, %llu "
                "checkpoints checked\n", (unsigned long long) report.messages,
                (unsigned long long) report.acks,
                (unsigned long long) report.checkpoints);
        if (vrc) {
            snprintf (error, SGMQ_BROKER_ERROR_SIZE, "store verify: %s",
                      vrc == SGMQ_STORE_E_CORRUPT ? report.reason
                                                  : sgmq_store_strerror (vrc));
            rc = -1;
        }
    }
    s_deployment_close (&d);
    return rc;
}

static int
s_bind (sgmq_broker_t *self, char *error)
{
    //  libzmq numbers a ROUTER's peers from a start it draws with rand(),
    //  which CZMQ seeds with the time: a client that claims the numbers
    //  coming next as its own routing ids makes libzmq abort the broker
    //  (an assertion) when a legitimate peer is given one. Seed rand()
    //  from the kernel instead, after CZMQ's own seeding in zsys_init.
    zsys_init ();
    srand (randombytes_random ());
    //  ZAP first: a CURVE socket that binds before its handler exists
    //  would meet its first clients with no one to ask.
    self->zap = zsock_new (ZMQ_REP);
    if (!self->zap || zsock_bind (self->zap, S_ZAP_ENDPOINT) != 0) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "cannot start the ZAP handler: %s",
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    return s_router_open (self, sgmq_config_str (self->config, SGMQ_OPT_ENDPOINT), error);
}

//  The clients' socket, secured, bound to `endpoint` (its resolved form
//  goes to self->endpoint). 0 or -1 with `error`.
static int
s_router_open (sgmq_broker_t *self, const char *endpoint, char *error)
{
    self->router = zsock_new (ZMQ_ROUTER);
    if (!self->router) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "cannot create the socket");
        return -1;
    }
    void *handle = zsock_resolve (self->router);
    int one = 1;
    int64_t max_frame = sgmq_config_int (self->config, SGMQ_OPT_MAX_FRAME)
                      + S_CURVE_OVERHEAD;
    int timeout = (int) sgmq_config_duration (self->config, SGMQ_OPT_SESSION_TIMEOUT).amount;
    if (sgmq_cert_apply_server (self->cert, handle)
    ||  zmq_setsockopt (handle, ZMQ_ZAP_DOMAIN, S_ZAP_DOMAIN, strlen (S_ZAP_DOMAIN))
    ||  zmq_setsockopt (handle, S_ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one)
    ||  zmq_setsockopt (handle, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame)
    ||  zmq_setsockopt (handle, ZMQ_ROUTER_MANDATORY, &one, sizeof one)) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "cannot secure the socket: %s",
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    zsock_set_rcvhwm (self->router, S_RCVHWM);
    zsock_set_sndhwm (self->router, S_SNDHWM);
    zsock_set_handshake_ivl (self->router, S_HANDSHAKE_MS);
    //  No ZMTP heartbeats from the broker: in libzmq 4.3.4 the heartbeat
    //  timer writes to a connection whose peer reset it while its input
    //  was stopped (its queue full), and asserts (!_io_error): one client
    //  could abort the broker at will. Sessions end by their own timeout
    //  (clients PING); TCP keepalive closes connections whose peer is gone.
    int idle = timeout / 1000 > 1 ? timeout / 1000 : 1;
    zsock_set_tcp_keepalive (self->router, 1);
    zsock_set_tcp_keepalive_idle (self->router, idle);
    zsock_set_tcp_keepalive_intvl (self->router, idle);
    zsock_set_tcp_keepalive_cnt (self->router, 3);
    //  Keepalive probes wait while unsent data is queued: a peer gone
    //  with a stream queued to it (its window shut) would hold that for
    //  the kernel's 15-30 minutes of retries. Give up after 4 timeouts.
    int max_rt = timeout < INT_MAX / S_STREAM_STALLS ? S_STREAM_STALLS * timeout : INT_MAX;
    zmq_setsockopt (handle, ZMQ_TCP_MAXRT, &max_rt, sizeof max_rt);
    zsock_set_linger (self->router, S_LINGER_MS);
    if (zsock_bind (self->router, "%s", endpoint) < 0) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "%s: cannot listen on %s: %s",
                  sgmq_config_origin (self->config), endpoint, zmq_strerror (zmq_errno ()));
        return -1;
    }
    char *bound = zsock_last_endpoint (self->router);
    s_copy (self->endpoint, sizeof self->endpoint, bound ? bound : endpoint);
    free (bound);
    return 0;
}

sgmq_broker_t *
sgmq_broker_new (const char *config_path, char *error)
{
    sgmq_broker_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "out of memory");
        return NULL;
    }
    self->signal_pipe [0] = self->signal_pipe [1] = -1;
    self->lock = -1;
    s_deployment_t d;
    bool running = false;
    if (s_deployment_open (&d, config_path, false, &running, error)) {
        free (self);
        return NULL;
    }
    self->config = d.config;
    self->cert = d.cert;
    self->registry = d.registry;
    self->store = d.store;
    self->lock = d.lock;
    memcpy (self->registry_sig, d.registry_sig, sizeof self->registry_sig);
    s_log_journal = getenv ("JOURNAL_STREAM") != NULL;
    const char *level = sgmq_config_str (self->config, SGMQ_OPT_LOG_LEVEL);
    for (int i = S_LOG_ERROR; i <= S_LOG_DEBUG; i++)
        if (strcmp (level, s_level_names [i]) == 0)
            s_log_level = (s_level_t) i;
    s_registry_log_problems (self->registry);
    self->certs_listing = opendir (sgmq_config_str (self->config, SGMQ_OPT_CERTS));
    int year = s_holidays_missing (self->config);
    if (year)
        s_log (S_LOG_WARNING, S_HOLIDAYS_MISSING, year);
    self->config_path = strdup (config_path);
    self->sessions = zhashx_new ();
    self->by_name = zhashx_new ();
    self->dirty = zlistx_new ();
    self->closing = zlistx_new ();
    self->parked_by_peer = zhashx_new ();
    self->parked_ring = zlistx_new ();
    self->body_frame = sgmq_proto_frame_new ();
    self->scratch_writer = s_writer_new ();
    self->refusals = s_writer_new ();
    self->internal = calloc (S_TIMERS_PER_TURN, sizeof *self->internal);
    self->internal_capacity = S_TIMERS_PER_TURN;
    if (!self->config_path || !self->sessions || !self->by_name || !self->dirty
    ||  !self->closing || !self->parked_by_peer || !self->parked_ring || !self->body_frame
    ||  !self->scratch_writer || !self->refusals || !self->internal
    ||  pipe (self->signal_pipe) != 0) {
        snprintf (error, SGMQ_BROKER_ERROR_SIZE, "out of memory");
        sgmq_broker_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->sessions, (zhashx_destructor_fn *) s_session_free);
    zhashx_set_destructor (self->by_name, (zhashx_destructor_fn *) zlistx_destroy);
    zhashx_set_destructor (self->parked_by_peer, s_free_item);
    fcntl (self->signal_pipe [0], F_SETFL, O_NONBLOCK);
    fcntl (self->signal_pipe [1], F_SETFL, O_NONBLOCK);
    //  Before binding: a SIGTERM that comes as soon as clients can connect
    //  must still stop the broker cleanly.
    s_signalled = self;
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    if (s_bind (self, error)) {
        sgmq_broker_destroy (&self);
        return NULL;
    }
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (self->store, &rc);
    sgmq_store_timer_t timer;
    uint64_t head = 0;
    uint8_t hash [SGMQ_STORE_HASH_SIZE];
    if (txn && sgmq_store_timer_first (txn, 0, &timer) == 0)
        self->next_store_timer = timer.due;
    sgmq_store_record_t newest;
    uint64_t wall = sgmq_time_now ();
    if (txn && sgmq_store_head (txn, &head, hash) == 0 && head
    &&  sgmq_store_get (txn, head, &newest) == 0 && newest.time > wall + S_CLOCK_LEEWAY_MS) {
        char when [SGMQ_TIME_TEXT_SIZE];
        s_log (S_LOG_WARNING, "the newest message is dated %s, %llu s ahead of this "
               "clock: check the clock. Messages stay in time order, so new ones carry "
               "that date until the clock passes it (deadlines follow the clock)",
               sgmq_time_format (newest.time, when),
               (unsigned long long) ((newest.time - wall) / 1000));
    }
    sgmq_store_read_end (&txn);
    int64_t now = s_mono ();
    self->next_checkpoint = now
        + (int64_t) sgmq_config_duration (self->config, SGMQ_OPT_CHECKPOINT).amount;
    self->next_registry_scan = now + S_REGISTRY_SCAN_MS;
    self->next_redeliver_scan = now;
    s_log (S_LOG_INFO, "listening on %s principals=%zu messages=%llu",
           self->endpoint, sgmq_registry_size (self->registry),
           (unsigned long long) head);
    return self;
}

const char *
sgmq_broker_endpoint (sgmq_broker_t *self)
{
    return self->endpoint;
}

void
sgmq_broker_stop (sgmq_broker_t *self)
{
    s_on_signal (0);
    self->stop = 1;
}

int
sgmq_broker_run (sgmq_broker_t *self)
{
    while (!self->stop && !self->broken)
        s_turn (self);
    s_flush (self);
    s_log (self->broken ? S_LOG_ERROR : S_LOG_INFO, "stopping%s: frames=%llu "
           "commands=%llu bad-frames=%llu bad-commands=%llu dropped=%llu commits=%llu "
           "refused=%llu",
           self->broken ? " (the store broke)" : "",
           (unsigned long long) self->frames_in, (unsigned long long) self->commands_in,
           (unsigned long long) self->bad_frames, (unsigned long long) self->bad_commands,
           (unsigned long long) self->dropped, (unsigned long long) self->commits,
           (unsigned long long) self->refused);
    return self->broken || self->unbound ? -1 : 0;
}

void
sgmq_broker_destroy (sgmq_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_broker_t *self = *self_p;
    if (s_signalled == self)
        s_signalled = NULL;
    zsock_destroy (&self->router);
    zsock_destroy (&self->zap);
    if (self->certs_listing)
        closedir (self->certs_listing);
    zhashx_destroy (&self->by_name);
    zhashx_destroy (&self->sessions);
    zlistx_destroy (&self->dirty);
    zlistx_destroy (&self->closing);
    if (self->parked_ring)
        s_park_clear (self);
    zlistx_destroy (&self->parked_ring);
    zhashx_destroy (&self->parked_by_peer);
    for (size_t i = 0; i < self->frame_capacity; i++)
        sgmq_proto_frame_destroy (&self->frames [i]);
    free (self->frames);
    free (self->work);
    free (self->reads);
    free (self->internal);
    free (self->effects);
    free (self->touched);
    free (self->due);
    sgmq_proto_frame_destroy (&self->body_frame);
    sgmq_proto_writer_destroy (&self->scratch_writer);
    sgmq_proto_writer_destroy (&self->refusals);
    s_recent_destroy (self);
    //  Closing the store signs a final checkpoint of the chain head.
    sgmq_store_close (&self->store);
    if (self->lock >= 0)
        close (self->lock);
    sgmq_registry_destroy (&self->registry);
    sgmq_cert_destroy (&self->cert);
    sgmq_config_destroy (&self->config);
    if (self->signal_pipe [0] >= 0)
        close (self->signal_pipe [0]);
    if (self->signal_pipe [1] >= 0)
        close (self->signal_pipe [1]);
    free (self->config_path);
    free (self);
    *self_p = NULL;
}
