/*  =========================================================================
    sgmq_store - the broker's durable memory, on LMDB

    Holds every message (body sealed with XChaCha20-Poly1305 under the
    storage key), its place in a BLAKE2b-256 hash chain, the delivery and
    acknowledgement state of every (message, recipient), an append-only,
    hash-chained log of acknowledgements, escalation and learning-alert
    tracking records, reminder timers indexed by due time, and Ed25519-signed
    checkpoints of the chain head.

    Durability: all changes happen inside sgmq_store_write(), which runs the
    caller's function in ONE LMDB write transaction and commits it fully
    synced (never with LMDB's no-sync flags). When it returns 0, every
    change is on disk. Many publishes share one commit: that is the broker's
    group commit.

    The store knows nothing of the wire format or of principals: senders,
    recipients, kinds and groups are opaque strings, bodies opaque bytes.

    Ownership: every struct filled by a read (records, deliveries...) points
    into memory owned by the transaction; it stays valid until the next call
    that fills a struct of the same type on the same transaction, or the end
    of the transaction, whichever comes first. Copy what you keep.

    Thread-safety: one sgmq_store_t per process and one thread using it
    (the broker thread). Transactions are not shared. Never use a store
    across fork().
    =========================================================================
*/
#ifndef SGMQ_STORE_H_INCLUDED
#define SGMQ_STORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  On-disk format written by this build. Format 2 binds each message's
//  recipient list to its sealed body. A format 1 store is read and marked
//  2 at its first open (its records stay as they are); any other format is
//  refused at open (SGMQ_STORE_E_VERSION).
#define SGMQ_STORE_FORMAT         2
#define SGMQ_STORE_KEY_SIZE       32    //  XChaCha20-Poly1305 key
#define SGMQ_STORE_HASH_SIZE      32    //  BLAKE2b-256
#define SGMQ_STORE_SIGN_SK_SIZE   64    //  Ed25519 secret key (libsodium form)
#define SGMQ_STORE_SIGN_PK_SIZE   32
#define SGMQ_STORE_SIG_SIZE       64
//  Longest sender, recipient, group or key string: principal names are
//  at most 64 bytes on the wire; this leaves room and bounds every record.
#define SGMQ_STORE_MAX_NAME       255
#define SGMQ_STORE_MAX_KIND       32
#define SGMQ_STORE_MAX_REF        255
#define SGMQ_STORE_MAX_GROUPS     64
//  A message's recipients: every member of its groups. Bounds one record.
#define SGMQ_STORE_MAX_RECIPIENTS 65536
//  Largest body. The wire caps a frame at 1 MiB; a body is less.
#define SGMQ_STORE_MAX_BODY       (1024 * 1024)
//  Map size to start with, and the default cap. The map grows by doubling
//  when full; the file only takes the disk it uses.
#define SGMQ_STORE_MAP_INITIAL    ((size_t) 64 << 20)
#define SGMQ_STORE_MAP_MAX        ((size_t) 1 << 40)
//  Sign the chain head after this many new messages (and at every clean
//  close).
#define SGMQ_STORE_CHECKPOINT_EVERY 10000

//  --------------------------------------------------------------------------
//  Status codes. Functions return 0 for success, one of these, a positive
//  errno, or an LMDB code (MDB_*); sgmq_store_strerror covers them all.
//  The range cannot collide with errno or LMDB's (-30800..-30780).

typedef enum {
    SGMQ_STORE_OK            = 0,
    SGMQ_STORE_E_NOT_FOUND   = -31001,  //  no such record; end of iteration
    SGMQ_STORE_E_CONFLICT    = -31002,  //  ref reused with a different digest
    SGMQ_STORE_E_FULL        = -31003,  //  disk (or map cap) full: nothing written
    SGMQ_STORE_E_CORRUPT     = -31004,  //  a record fails its checks or won't open
    SGMQ_STORE_E_VERSION     = -31005,  //  store format this build cannot read
    SGMQ_STORE_E_KEY         = -31006,  //  storage key does not open this store
    SGMQ_STORE_E_INVALID     = -31007,  //  bad argument (too long, too many...)
    SGMQ_STORE_E_BROKEN      = -31008,  //  earlier fatal error; reopen the store
    SGMQ_STORE_E_READONLY    = -31009,  //  write call on a read transaction
    SGMQ_STORE_E_ORDER       = -31010,  //  time or sequence would go backwards
    //  The map must grow (or LMDB's environment be reopened after
    //  MDB_PANIC), which remaps the file, while a read transaction of this
    //  process is open and points into the map. End it and retry.
    SGMQ_STORE_E_BUSY        = -31011,
    //  An iterator looked at as many messages as sgmq_store_iter_bound
    //  allows without finding a match; go on after sgmq_store_iter_seq.
    SGMQ_STORE_E_AGAIN       = -31012,
} sgmq_store_status_t;

//  Message for any status above, errno value or MDB_* code. Never NULL.
const char *
    sgmq_store_strerror (int rc);

//  --------------------------------------------------------------------------
//  Opening

typedef struct _sgmq_store_t sgmq_store_t;
typedef struct _sgmq_store_txn_t sgmq_store_txn_t;

typedef struct {
    //  The storage key (required) and its id, which each record carries so
    //  that keys can be rotated later.
    const uint8_t *storage_key;         //  SGMQ_STORE_KEY_SIZE bytes
    uint32_t key_id;
    //  Ed25519 secret key for checkpoints; NULL: write no checkpoints.
    const uint8_t *signing_key;         //  SGMQ_STORE_SIGN_SK_SIZE bytes
    size_t map_size;                    //  0: SGMQ_STORE_MAP_INITIAL
    size_t map_size_max;                //  0: SGMQ_STORE_MAP_MAX
    uint32_t checkpoint_every;          //  0: SGMQ_STORE_CHECKPOINT_EVERY
    //  Leave a format 1 store marked 1 (a check that must not change what
    //  an older build can read); appends to it then fail with
    //  SGMQ_STORE_E_VERSION.
    bool keep_format;
} sgmq_store_options_t;

//  Open (creating if needed) the store in directory `dir` (which must
//  exist). Checks the format version and that the storage key opens the
//  store, clears stale reader slots, and copies the keys (wiped at close).
//  Returns the store, or NULL with *rc set and a one-line reason in `why`
//  (which names the directory and the problem) when `why` is not NULL.
sgmq_store_t *
    sgmq_store_open (const char *dir, const sgmq_store_options_t *options,
                     int *rc, char *why, size_t why_size);

//  Write a checkpoint if the chain moved since the last one, close, wipe
//  the keys. NULL-safe; sets *self_p to NULL.
void
    sgmq_store_close (sgmq_store_t **self_p);

//  --------------------------------------------------------------------------
//  Transactions

//  The caller's batch. It runs inside one write transaction and returns 0
//  to commit or non-zero to abort (that value is then returned by
//  sgmq_store_write). It may run MORE THAN ONCE (after the map grows, the
//  transaction is retried from the start), so it must reset its own
//  outputs each time it starts. A fatal error inside any store call (I/O,
//  map full) makes the transaction fail whatever the function returns.
typedef int (sgmq_store_write_fn) (sgmq_store_txn_t *txn, void *arg);

//  Run `fn` in one write transaction and commit it, synced. On MDB_MAP_FULL
//  grows the map and runs `fn` again; when the disk or the map cap is full,
//  returns SGMQ_STORE_E_FULL and nothing of the batch is stored. Returns 0
//  when committed (everything is durable), else the error:
//  SGMQ_STORE_E_BUSY (nothing stored) if the map had to grow while a read
//  transaction of this process was open.
int __attribute__ ((warn_unused_result))
    sgmq_store_write (sgmq_store_t *self, sgmq_store_write_fn *fn, void *arg);

//  Start a read-only snapshot (never blocks the writer). Returns NULL with
//  *rc set on failure. Keep it short: a long-lived reader stops the file
//  from reusing pages, and a write that must grow the map while one is
//  open fails with SGMQ_STORE_E_BUSY.
sgmq_store_txn_t *
    sgmq_store_read (sgmq_store_t *self, int *rc);

//  End a read transaction. NULL-safe; sets *txn_p to NULL. (Write
//  transactions are ended by sgmq_store_write, never by this.)
void
    sgmq_store_read_end (sgmq_store_txn_t **txn_p);

//  Time of this transaction, ms since the epoch (UTC). In a write
//  transaction it is the time every change is stamped with: never less
//  than the newest stored message's, so sequence order is time order.
uint64_t
    sgmq_store_txn_time (sgmq_store_txn_t *txn);

//  --------------------------------------------------------------------------
//  Messages

typedef struct {
    const char *sender;                 //  principal name; required
    const char *sender_key;             //  Z85 public key; "" for the broker
    const char *kind;                   //  required, 1..MAX_KIND bytes
    const char *const *groups;          //  addressed groups (indexed)
    uint32_t group_count;               //  1..MAX_GROUPS
    const char *const *recipients;      //  each gets a pending delivery
    uint32_t recipient_count;           //  0..MAX_RECIPIENTS (no duplicates)
    //  Optional, one per recipient: how many sessions the caller delivers
    //  the message to at once (0: none). Non-zero stores the delivery as
    //  sgmq_store_delivered would, without a second write per recipient,
    //  flagged (its last try) when the count is `max_tries` or more.
    const uint32_t *delivered;
    uint32_t max_tries;                 //  0: never flagged here
    const uint8_t *body;                //  plaintext; sealed at rest
    size_t body_size;                   //  0..MAX_BODY
    //  Idempotency: a (sender, ref) pair is stored once. NULL: no ref.
    const char *ref;
    //  Digest of what the client sent under `ref` (NULL: all zero). A
    //  repeat with the same digest is a duplicate, with another a conflict.
    const uint8_t *ref_digest;          //  SGMQ_STORE_HASH_SIZE bytes
} sgmq_store_msg_t;

//  The seq stored under (sender, ref), without appending: 0, or
//  SGMQ_STORE_E_NOT_FOUND (also for a sender or ref too long to store).
int __attribute__ ((warn_unused_result))
    sgmq_store_ref_find (sgmq_store_txn_t *txn, const char *sender,
                         const char *ref, uint64_t *seq);

typedef struct {
    uint64_t seq;                       //  assigned (or original, if duplicate)
    uint64_t time;
    bool duplicate;                     //  (sender, ref) was already stored
} sgmq_store_appended_t;

//  Append a message: the next sequence number, the transaction's time, its
//  chain hash, its tag indices (kind, each group, sender), a pending (or,
//  per `delivered`, delivered) delivery per recipient and its idempotency
//  record. Returns 0 (check
//  `duplicate`); SGMQ_STORE_E_CONFLICT with out->seq set to the original;
//  SGMQ_STORE_E_INVALID (nothing written); or a fatal error. Write only.
//  The body is copied: the caller may free it on return. Sealing and the
//  chain hash run on the store's own thread while fn goes on; anything
//  that reads messages or the head in this txn (sgmq_store_get, _head,
//  iterators) first waits for them, so reads see the append at once. The
//  message record itself is written then or at the commit, so an error
//  writing it (the map full, stored data past the head) comes from that
//  read or from sgmq_store_write, fatal like any other.
int __attribute__ ((warn_unused_result))
    sgmq_store_append (sgmq_store_txn_t *txn, const sgmq_store_msg_t *msg,
                       sgmq_store_appended_t *out);

typedef struct {
    uint64_t seq;
    uint64_t time;
    const char *sender;
    const char *sender_key;
    const char *kind;
    uint32_t group_count;
    const char *const *groups;
    uint32_t recipient_count;
    const char *const *recipients;
    const uint8_t *body;                //  decrypted
    size_t body_size;
    uint8_t hash [SGMQ_STORE_HASH_SIZE];
    uint8_t prev [SGMQ_STORE_HASH_SIZE];    //  previous message's hash
} sgmq_store_record_t;

//  Read message `seq`. Returns 0, SGMQ_STORE_E_NOT_FOUND or
//  SGMQ_STORE_E_CORRUPT (record malformed or its body does not open).
int __attribute__ ((warn_unused_result))
    sgmq_store_get (sgmq_store_txn_t *txn, uint64_t seq,
                    sgmq_store_record_t *record);

//  Newest message's sequence number and hash (0 and all-zero when empty).
int
    sgmq_store_head (sgmq_store_txn_t *txn, uint64_t *seq, uint8_t *hash);

//  A query over messages, all conditions ANDed; zero fields are open.
typedef struct {
    uint64_t from_seq, to_seq;          //  inclusive
    uint64_t since, until;              //  time, inclusive
    const char *group;                  //  addressed to this group
    const char *kind;
    const char *sender;
} sgmq_store_query_t;

typedef struct _sgmq_store_iter_t sgmq_store_iter_t;

//  Iterate matching messages in sequence order. Uses the tag and time
//  indices: never scans messages that cannot match. The iterator belongs
//  to `txn` and must be destroyed before it ends.
sgmq_store_iter_t *
    sgmq_store_iter_new (sgmq_store_txn_t *txn,
                         const sgmq_store_query_t *query);

//  Next match: 0, SGMQ_STORE_E_NOT_FOUND at the end, SGMQ_STORE_E_AGAIN
//  past the iterator's bound, or an error.
int __attribute__ ((warn_unused_result))
    sgmq_store_iter_next (sgmq_store_iter_t *self,
                          sgmq_store_record_t *record);

//  Bound the messages the iterator looks at, over all its calls, to
//  `count` (0, the default: no bound). A query of two filters that seldom
//  meet (a group and a kind) walks one's index and skips what the other
//  refuses: unbounded, one call could walk a whole large store. Past the
//  bound sgmq_store_iter_next returns SGMQ_STORE_E_AGAIN.
void
    sgmq_store_iter_bound (sgmq_store_iter_t *self, size_t count);

//  The last seq the iterator looked at, matching or not (0 before the
//  first): a new iterator from the next seq goes on where it stopped.
uint64_t
    sgmq_store_iter_seq (const sgmq_store_iter_t *self);

void
    sgmq_store_iter_destroy (sgmq_store_iter_t **self_p);

//  --------------------------------------------------------------------------
//  Deliveries and acknowledgements

typedef enum {
    SGMQ_STORE_PENDING = 1,             //  never sent
    SGMQ_STORE_DELIVERED,               //  sent `count` times, no ack
    SGMQ_STORE_ACKED
} sgmq_store_dstate_t;

typedef struct {
    uint64_t seq;
    const char *recipient;
    sgmq_store_dstate_t state;
    bool flagged;                       //  max tries reached without ack
    uint32_t count;                     //  deliveries
    uint64_t first, last;               //  first and last delivery times
    uint64_t acked_at;                  //  0 unless ACKED
    const char *acked_key;              //  key that acked; "" unless ACKED
} sgmq_store_delivery_t;

//  Record one more delivery of `seq` to `recipient` (count+1, first/last
//  stamped with the transaction time) and set the flag if `flag`. Returns
//  0 with the new state in `out` (may be NULL), or SGMQ_STORE_E_NOT_FOUND
//  if it is not an unacknowledged delivery. Write only.
int __attribute__ ((warn_unused_result))
    sgmq_store_delivered (sgmq_store_txn_t *txn, const char *recipient,
                          uint64_t seq, bool flag,
                          sgmq_store_delivery_t *out);

typedef struct {
    uint64_t time;                      //  when it was (first) acked
    uint64_t event;                     //  ack log position
    bool duplicate;                     //  it was already acked
} sgmq_store_acked_t;

//  Acknowledge `seq` for `recipient`, by public key `key`: moves the
//  delivery to ACKED and appends an event to the ack log. Acking twice is
//  harmless (duplicate set, original time returned). Returns 0, or
//  SGMQ_STORE_E_NOT_FOUND if `recipient` is not a recipient of `seq`.
int __attribute__ ((warn_unused_result))
    sgmq_store_ack (sgmq_store_txn_t *txn, const char *recipient,
                    const char *key, uint64_t seq, sgmq_store_acked_t *out);

//  State of one (message, recipient). 0 or SGMQ_STORE_E_NOT_FOUND.
int __attribute__ ((warn_unused_result))
    sgmq_store_delivery (sgmq_store_txn_t *txn, const char *recipient,
                         uint64_t seq, sgmq_store_delivery_t *out);

//  The recipient's first unacknowledged delivery with seq > `after`, in
//  sequence order, without touching other recipients' records. 0, or
//  SGMQ_STORE_E_NOT_FOUND when there is none.
int __attribute__ ((warn_unused_result))
    sgmq_store_unacked_next (sgmq_store_txn_t *txn, const char *recipient,
                             uint64_t after, sgmq_store_delivery_t *out);

//  Number of unacknowledged deliveries for `recipient`.
int __attribute__ ((warn_unused_result))
    sgmq_store_unacked_count (sgmq_store_txn_t *txn, const char *recipient,
                              uint64_t *count);

//  Every unacknowledged delivery in the store, ordered by (recipient, seq),
//  starting after (`after_recipient`, `after_seq`) ("" and 0: from the
//  start). 0 or SGMQ_STORE_E_NOT_FOUND at the end.
int __attribute__ ((warn_unused_result))
    sgmq_store_unacked_all_next (sgmq_store_txn_t *txn,
                                 const char *after_recipient,
                                 uint64_t after_seq,
                                 sgmq_store_delivery_t *out);

typedef struct {
    uint64_t event;                     //  1, 2, 3... in ack order
    uint64_t seq;
    uint64_t time;
    const char *recipient;
    const char *key;
    uint8_t hash [SGMQ_STORE_HASH_SIZE];    //  chained like messages
} sgmq_store_ack_event_t;

//  The ack log, in order: the first event after `after`. 0 or NOT_FOUND.
int __attribute__ ((warn_unused_result))
    sgmq_store_ack_log_next (sgmq_store_txn_t *txn, uint64_t after,
                             sgmq_store_ack_event_t *out);

//  --------------------------------------------------------------------------
//  Tracking: escalations and learning alerts

typedef enum {
    SGMQ_STORE_ESC_RAISED = 1,
    SGMQ_STORE_ESC_ACKNOWLEDGED,
    SGMQ_STORE_ESC_RESPONDED
} sgmq_store_esc_status_t;

//  Overdue bits: each is set once the deadline passes unmet, and stays set
//  (the tracker reports "was overdue").
#define SGMQ_STORE_OVERDUE_ACK       1u
#define SGMQ_STORE_OVERDUE_RESPONSE  2u

typedef struct {
    uint64_t seq;                       //  the escalation
    sgmq_store_esc_status_t status;
    uint32_t overdue;                   //  SGMQ_STORE_OVERDUE_* bits
    char group [SGMQ_STORE_MAX_NAME + 1];   //  raising group
    uint64_t raised;
    uint64_t ack_by;                    //  deadline for the first ack
    uint64_t respond_by;
    uint64_t acked_at;                  //  first Executive ack; 0: none
    char acked_by [SGMQ_STORE_MAX_NAME + 1];
    uint64_t responded_at;
    uint64_t response_seq;
    uint32_t reminders;                 //  reminders sent so far
    uint64_t last_reminder;
} sgmq_store_escalation_t;

//  Create or replace the tracking record of escalation `e->seq`. Write only.
int __attribute__ ((warn_unused_result))
    sgmq_store_escalation_put (sgmq_store_txn_t *txn,
                               const sgmq_store_escalation_t *e);
//  0 or SGMQ_STORE_E_NOT_FOUND.
int __attribute__ ((warn_unused_result))
    sgmq_store_escalation_get (sgmq_store_txn_t *txn, uint64_t seq,
                               sgmq_store_escalation_t *e);
//  First escalation with seq > `after`. 0 or SGMQ_STORE_E_NOT_FOUND.
int __attribute__ ((warn_unused_result))
    sgmq_store_escalation_next (sgmq_store_txn_t *txn, uint64_t after,
                                sgmq_store_escalation_t *e);

typedef struct {
    uint64_t seq;                       //  the learning alert
    uint64_t session_by, reflection_by;
    uint64_t session_held, reflection_held;     //  0: not yet
    uint64_t session_update, reflection_update; //  seq of the update
    uint32_t reminders;
} sgmq_store_learning_t;

int __attribute__ ((warn_unused_result))
    sgmq_store_learning_put (sgmq_store_txn_t *txn,
                             const sgmq_store_learning_t *l);
int __attribute__ ((warn_unused_result))
    sgmq_store_learning_get (sgmq_store_txn_t *txn, uint64_t seq,
                             sgmq_store_learning_t *l);
int __attribute__ ((warn_unused_result))
    sgmq_store_learning_next (sgmq_store_txn_t *txn, uint64_t after,
                              sgmq_store_learning_t *l);

//  --------------------------------------------------------------------------
//  Timers: at most one per (seq, what); `what` is the caller's own code
//  (the broker uses reminder reasons). Indexed by due time, so finding what
//  is due never scans.

typedef struct {
    uint64_t due;
    uint64_t seq;
    uint32_t what;
} sgmq_store_timer_t;

//  Set (or move) the timer (seq, what) to `due`. Write only.
int __attribute__ ((warn_unused_result))
    sgmq_store_timer_set (sgmq_store_txn_t *txn, uint64_t seq,
                          uint32_t what, uint64_t due);
//  Remove it. 0, or SGMQ_STORE_E_NOT_FOUND if there was none. Write only.
int __attribute__ ((warn_unused_result))
    sgmq_store_timer_cancel (sgmq_store_txn_t *txn, uint64_t seq,
                             uint32_t what);
//  The earliest timer (due <= `until` when until != 0). 0 or NOT_FOUND.
int __attribute__ ((warn_unused_result))
    sgmq_store_timer_first (sgmq_store_txn_t *txn, uint64_t until,
                            sgmq_store_timer_t *out);
//  The timer (seq, what), if set. 0 or NOT_FOUND.
int __attribute__ ((warn_unused_result))
    sgmq_store_timer_get (sgmq_store_txn_t *txn, uint64_t seq,
                          uint32_t what, sgmq_store_timer_t *out);

//  --------------------------------------------------------------------------
//  Audit: chain verification and signed checkpoints

typedef struct {
    uint64_t seq;
    uint64_t time;
    uint8_t hash [SGMQ_STORE_HASH_SIZE];
    uint8_t signature [SGMQ_STORE_SIG_SIZE];
} sgmq_store_checkpoint_t;

//  Sign the current head now (in its own synced transaction), unless it is
//  already signed. 0 or an error; SGMQ_STORE_E_INVALID without a signing key.
int __attribute__ ((warn_unused_result))
    sgmq_store_checkpoint (sgmq_store_t *self);

//  Newest checkpoint with seq <= `at_or_before` (0: the newest of all).
//  0 or NOT_FOUND.
int __attribute__ ((warn_unused_result))
    sgmq_store_checkpoint_get (sgmq_store_txn_t *txn, uint64_t at_or_before,
                               sgmq_store_checkpoint_t *out);

//  The bytes a checkpoint signs: "sgmq-checkpoint-v1" || u64be seq ||
//  u64be time || hash. Fills `out` (SGMQ_STORE_CHECKPOINT_MSG_SIZE bytes).
#define SGMQ_STORE_CHECKPOINT_MSG_SIZE (18 + 8 + 8 + SGMQ_STORE_HASH_SIZE)
void
    sgmq_store_checkpoint_message (const sgmq_store_checkpoint_t *cp,
                                   uint8_t *out);

typedef struct {
    uint64_t messages;                  //  messages checked
    uint64_t bad_seq;                   //  first message that breaks; 0: none
    uint64_t acks;                      //  ack events checked
    uint64_t bad_ack;                   //  first ack event that breaks; 0: none
    uint64_t checkpoints;               //  checkpoints checked
    uint64_t bad_checkpoint;            //  seq of first bad one; 0: none
    char reason [256];                  //  what broke first, if anything
} sgmq_store_verify_t;

//  Walk both chains from the start: recompute each message's hash from its
//  canonical bytes and the previous hash (a missing sequence number is a
//  break), each ack event's likewise (and that the delivery's acked record,
//  which REPLAY and PENDING read, says what its event says, with no acked
//  record outside the chain), and check every checkpoint's
//  signature with `signing_pk` (NULL: skip signatures) and that it matches
//  the chain. Returns 0 when all is intact, SGMQ_STORE_E_CORRUPT with the
//  report saying where it first breaks, or another error.
int __attribute__ ((warn_unused_result))
    sgmq_store_verify (sgmq_store_t *self, const uint8_t *signing_pk,
                       sgmq_store_verify_t *report);

//  Copy the environment, compacted, to directory `dir` (must exist and be
//  empty) while the store stays in use: a consistent snapshot.
int __attribute__ ((warn_unused_result))
    sgmq_store_backup (sgmq_store_t *self, const char *dir);

//  Copy the store in directory `dir`, compacted, into directory `dest`
//  (must exist and be empty), without the storage key (the store is not
//  sgmq_store_open'd): the bodies stay sealed in the copy. For an online
//  backup taken by another process while a broker keeps writing: the
//  environment is opened read-only (nothing in `dir` is written but
//  LMDB's reader slot in its lock file), its format version checked, and
//  one consistent snapshot copied; the copy is mode 0600 and synced (file
//  and folder) before this returns. A failed copy leaves `dest` empty.
//  Never call it on a store this process has open: LMDB forbids opening
//  an environment twice in one process (its locks are per process).
//  Returns 0, or an error with a one-line reason naming the directory in
//  `why` (may be NULL): SGMQ_STORE_E_INVALID (`dest` not empty),
//  SGMQ_STORE_E_CORRUPT (not an sgmq store, or damaged),
//  SGMQ_STORE_E_VERSION, SGMQ_STORE_E_FULL (no room for the copy), an
//  errno (ENOENT: no store, or no `dest`) or an MDB_* code.
int __attribute__ ((warn_unused_result))
    sgmq_store_copy (const char *dir, const char *dest, char *why,
                     size_t why_size);

//  The map size now in use (grows on demand). (The number of messages is
//  the head's sequence number: sgmq_store_head.)
size_t
    sgmq_store_map_size (sgmq_store_t *self);

//  Free the reader slots of processes that have died (a backup killed in
//  the middle of its copy): each pins the pages of its snapshot, so no page
//  freed since could be reused and the file would grow without end. Sets
//  *cleared to the number freed. 0 or an LMDB error.
int __attribute__ ((warn_unused_result))
    sgmq_store_reader_check (sgmq_store_t *self, int *cleared);

#ifdef __cplusplus
}
#endif

#endif
