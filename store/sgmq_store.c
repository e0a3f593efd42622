/*  =========================================================================
    sgmq_store - the broker's durable memory, on LMDB

    What it is for: everything the broker must not forget. A publish is
    confirmed only after the transaction holding it committed here, fully
    synced; the history carries a hash chain and signed checkpoints so an
    auditor can prove it was not edited; bodies are sealed so a copy of the
    file alone reveals no content. This is the only .c that includes lmdb.h.

    Databases (all keys big-endian, so LMDB's byte order is numeric order):

      meta    "format"   -> u32 SGMQ_STORE_FORMAT (2; a format 1 store,
                            whose message records are all version 1, is
                            read and marked 2 at its first open)
              "keycheck" -> u32 key_id, nonce, AEAD("sgmq-keycheck-v1"):
                            proves at open that the key opens this store
              "head"     -> u64 seq, u64 time, hash: the message chain head
              "ackhead"  -> u64 event, u64 time, hash: the ack chain head
      msgs    u64 seq -> message record (layout at S_MSG_FIXED_SIZE)
      time    u64 time || u64 first_seq -> empty: ONE entry per write
              transaction that appended, since every message of a
              transaction shares its time; time is monotone in seq, so a
              time range maps exactly onto a seq range
      tags    "k:"kind / "g:"group / "s:"sender -> u64 seq (DUPSORT,
              DUPFIXED: a sorted list of 8-byte seqs per tag, appended with
              MDB_APPENDDUP since seqs only grow)
      idem    sender \0 ref -> u64 seq, digest (refs stay in clear, like
              names: PROTOCOL.md forbids personal names in them, and a
              client's refs usually grow, so clear keys keep its inserts
              together in the tree where hashed ones would scatter them
              over a page each)
      pend    recipient \0 u64 seq -> delivery state; deleted on ack, so a
              recipient's unacknowledged deliveries are one contiguous,
              ordered key range that no other recipient's records touch
      ackd    recipient \0 u64 seq -> delivery state, ack time, event, key
      acklog  u64 event -> seq, time, hash, recipient, key (append-only,
              hash-chained like messages)
      esc     u64 seq -> escalation tracking record
      learn   u64 seq -> learning tracking record
      tdue    u64 due || u64 seq || u32 what -> empty: timers by due time
      tkey    u64 seq || u32 what -> u64 due: find a timer to move it
      ckpt    u64 seq -> time, hash, Ed25519 signature

    Why so: one append costs one MDB_APPEND put (msgs), one append-dup per
    tag and one put per recipient; the chain heads and the time index are
    written once per transaction. Sealing the body and hashing it into the
    chain, over half an append's CPU time, run on the store's own thread
    while the writer goes on (see s_sealer_t); the msgs records go in
    together when the txn next reads them or ends. Queries drive from the
    most selective index (the smallest tag list, else the seq range
    narrowed by the time index) and never visit a message that index rules
    out. The chain heads live in meta, not only in the last record, so
    deleting the newest records is detected too.

    Message record (msgs value): u8 version, u64 time, hash, prev hash,
    then the canonical region, exactly as hashed: u16 len sender, u16 len
    sender_key, u16 len kind, u16 group_count and each u16 len group; then
    u32 recipient_count and each u16 len recipient, u32 key_id, 24-byte
    nonce, u32 sealed size and the sealed body. Storing the canonical
    region as it is hashed means a verifier hashes the stored bytes, with
    no re-encoding that could disagree with the writer. The recipient list
    is not hashed (an auditor's replay does not carry it) but, from record
    version 2, its digest is in the body's associated data: an edited list
    makes the body fail to open, which verify reports.

    Time: a write transaction's time is max(now, newest message time,
    newest ack time), so sequence order is time order. If the wall clock
    steps back, new messages keep the newest stored time (time stands still)
    until the clock catches up; nothing is refused.

    Errors: inside sgmq_store_write, every LMDB error other than
    MDB_NOTFOUND (and any failure once a call started writing) is sticky:
    later calls return it and the transaction is aborted whatever fn
    returns. MDB_MAP_FULL grows the map and reruns fn. ENOSPC and EDQUOT
    (and EIO when the filesystem is out of space, which is how LMDB reports
    a short write) give SGMQ_STORE_E_FULL. LMDB's MDB_PANIC (its meta page
    write failed) reopens the environment transparently at the next call.
    MDB_CORRUPTED or MDB_PAGE_NOTFOUND mark the handle broken. An
    MDB_APPEND put that finds a larger key gives SGMQ_STORE_E_ORDER: the
    stored data and the chain head disagree.
    =========================================================================
*/
#include "sgmq_store.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Constants

//  Named databases in use (13) plus room for a later format to add some
//  without touching mdb_env_set_maxdbs.
#define S_MAX_DBS           20
//  Owner-only: the file holds names and sealed bodies of child-protection
//  messages.
#define S_FILE_MODE         0600
//  Version byte at the start of every record we write, so a later format
//  can tell old records apart (and a stray byte is caught early); message
//  records have their own (S_MSG_VERSION).
#define S_REC_VERSION       1
//  Hash and signature sizes come from the header (SGMQ_STORE_*_SIZE).
#define S_HASH              SGMQ_STORE_HASH_SIZE
#define S_NONCE_SIZE        crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define S_MAC_SIZE          crypto_aead_xchacha20poly1305_ietf_ABYTES
//  Nonces are random; drawing them 128 at a time turns one getrandom()
//  call per message into one per 128 messages on the hot path.
#define S_NONCE_POOL        (128 * S_NONCE_SIZE)
//  Milliseconds per second and nanoseconds per millisecond.
#define S_MS_PER_S          1000
#define S_NS_PER_MS         1000000
//  LMDB reports a short write (disk full mid-write) as EIO. We call an
//  EIO "full" only when the filesystem has less than this left: a real
//  full disk leaves less than one commit chunk (64 pages) free.
#define S_FULL_EIO_SLACK    ((unsigned long long) 1 << 20)
//  Grow the map before a write once it is this full (numerator /
//  denominator), while no read transaction is open, so that a MAP_FULL
//  in the middle of a write (which needs no reader open) stays rare.
#define S_GROW_AHEAD_NUM    3
#define S_GROW_AHEAD_DEN    4
//  MDB_PANIC or MDB_MAP_RESIZED at txn begin: reopen/resize and retry
//  this many times before giving up (one retry is always enough unless
//  something else is wrong).
#define S_BEGIN_RETRIES     2
//  The sealer thread is woken once this many appends wait for it: waking
//  it per append would cost the writer a syscall per message, and a batch
//  smaller than this is sealed by the writer itself when it flushes.
#define S_SEAL_WAKE         32
//  Most jobs one claim takes (a run's copy of them is on the stack).
#define S_SEAL_RUN          64
//  Duplicate recipients: pairwise compare up to this many, sort above.
#define S_DUP_LINEAR        8
//  Idempotency key: sender \0 ref (255 + 1 + 255 = 511, which is also
//  LMDB's default maximum key size).
#define S_IKEY_MAX          (SGMQ_STORE_MAX_NAME + 1 + SGMQ_STORE_MAX_REF)
//  A tag key: two-byte prefix ("k:", "g:", "s:") + name.
#define S_TAG_PREFIX        2
#define S_TAG_MAX           (S_TAG_PREFIX + SGMQ_STORE_MAX_NAME)
//  A delivery key: recipient \0 u64 seq.
#define S_DKEY_MAX          (SGMQ_STORE_MAX_NAME + 1 + 8)

//  Domain-separation tags, ASCII without NUL (sizes via sizeof - 1).
static const char s_msg_tag [] = "sgmq-msg-v1";
static const char s_ack_tag [] = "sgmq-ack-v1";
static const char s_ckpt_tag [] = "sgmq-checkpoint-v1";
static const char s_body_tag [] = "sgmq-body-v1";
static const char s_body2_tag [] = "sgmq-body-v2";
static const char s_keycheck_tag [] = "sgmq-keycheck-v1";
#define S_TAG_LEN(t)        (sizeof (t) - 1)

//  Fixed parts of records (see the layout above).
//  msgs: version, time, hash, prev, 4 x u16 (sender, key, kind, groups),
//  u32 recipients, u32 key_id, nonce, u32 sealed size, MAC.
#define S_MSG_FIXED_SIZE    (1 + 8 + 2 * S_HASH + 4 * 2 + 4 + 4 \
                             + S_NONCE_SIZE + 4 + S_MAC_SIZE)
//  Offset of the hash and prev in a msgs record.
#define S_MSG_HASH_AT       (1 + 8)
//  Body associated data: tag, u64 seq, u32 key id; from message record
//  version 2 on, also the BLAKE2b-256 of the recipient list (see s_body_ad).
#define S_BODY_AD_SIZE      (S_TAG_LEN (s_body2_tag) + 8 + 4 + S_HASH)
//  Message records are written as version 2; version 1 (format 1 stores)
//  is still read.
#define S_MSG_VERSION       2
//  Key check: u32 key_id, nonce, sealed tag.
#define S_KEYCHECK_SIZE     (4 + S_NONCE_SIZE + S_TAG_LEN (s_keycheck_tag) \
                             + S_MAC_SIZE)
//  Chain heads in meta: u64 seq (or event), u64 time, hash.
#define S_HEAD_SIZE         (8 + 8 + S_HASH)
//  idem: u64 seq, digest.
#define S_IDEM_SIZE         (8 + S_HASH)
//  pend: version, state, flags, u32 count, u64 first, u64 last.
#define S_PEND_SIZE         (1 + 1 + 1 + 4 + 8 + 8)
//  ackd: version, flags, u32 count, u64 first, last, acked_at, event,
//  then u16 len key.
#define S_ACKD_FIXED        (1 + 1 + 4 + 8 + 8 + 8 + 8 + 2)
//  acklog: version, u64 seq, u64 time, hash, then u16 len recipient,
//  u16 len key.
#define S_EVENT_FIXED       (1 + 8 + 8 + S_HASH + 2 + 2)
//  ckpt: version, u64 time, hash, signature.
#define S_CKPT_SIZE         (1 + 8 + S_HASH + SGMQ_STORE_SIG_SIZE)
//  esc: version, status, u32 overdue, 7 x u64, u32 reminders, then
//  u16 len group, u16 len acked_by.
#define S_ESC_FIXED         (1 + 1 + 4 + 7 * 8 + 4 + 2 + 2)
//  learn: version, 6 x u64, u32 reminders.
#define S_LEARN_SIZE        (1 + 6 * 8 + 4)
//  Timer keys.
#define S_TDUE_SIZE         (8 + 8 + 4)
#define S_TKEY_SIZE         (8 + 4)
//  Time index key.
#define S_TIME_KEY_SIZE     (8 + 8)

//  pend flag bit: max tries reached without ack.
#define S_FLAG_FLAGGED      1u

typedef enum {
    S_DB_META, S_DB_MSGS, S_DB_TIME, S_DB_TAGS, S_DB_IDEM, S_DB_PEND,
    S_DB_ACKD, S_DB_ACKLOG, S_DB_ESC, S_DB_LEARN, S_DB_TDUE, S_DB_TKEY,
    S_DB_CKPT, S_DB_COUNT
} s_db_t;

static const struct {
    const char *name;
    unsigned int flags;
} s_dbs [S_DB_COUNT] = {
    [S_DB_META]   = { "meta", 0 },
    [S_DB_MSGS]   = { "msgs", 0 },
    [S_DB_TIME]   = { "time", 0 },
    [S_DB_TAGS]   = { "tags", MDB_DUPSORT | MDB_DUPFIXED },
    [S_DB_IDEM]   = { "idem", 0 },
    [S_DB_PEND]   = { "pend", 0 },
    [S_DB_ACKD]   = { "ackd", 0 },
    [S_DB_ACKLOG] = { "acklog", 0 },
    [S_DB_ESC]    = { "esc", 0 },
    [S_DB_LEARN]  = { "learn", 0 },
    [S_DB_TDUE]   = { "tdue", 0 },
    [S_DB_TKEY]   = { "tkey", 0 },
    [S_DB_CKPT]   = { "ckpt", 0 },
};

//  Meta keys.
static const char s_meta_format [] = "format";
static const char s_meta_keycheck [] = "keycheck";
static const char s_meta_head [] = "head";
static const char s_meta_ackhead [] = "ackhead";

//  --------------------------------------------------------------------------
//  Structures

//  A growable buffer, reused across calls so the hot path does not malloc.
typedef struct {
    uint8_t *data;
    size_t size;
} s_buf_t;

typedef struct {
    uint8_t storage [SGMQ_STORE_KEY_SIZE];
    uint8_t sign_sk [SGMQ_STORE_SIGN_SK_SIZE];
} s_keys_t;

//  An append whose record waits to be sealed and chain-hashed. `rec` is
//  the whole msgs record, its body still in clear at `body_at` until the
//  job runs (then the sealed body and MAC), its hash and prev unset.
typedef struct {
    uint8_t *rec;
    size_t size;
    uint64_t seq;
    uint64_t time;
    size_t canon_at, canon_size;
    size_t body_at, body_size;
} s_seal_t;

//  Sealing and chain hashing are over half an append's CPU time and
//  need nothing from LMDB, so they run beside the writer: it queues each
//  record (s_seal_queue), a thread seals and hashes them in seq order,
//  and the records go into msgs when the write txn next reads the chain
//  (s_seal_flush). Jobs run in runs: whoever claims (the sealer thread,
//  or the writer while it waits at a flush) takes every queued job and
//  runs them in order, and nobody claims while a run is going, so the
//  chain needs no other ordering and the lock is taken once per run.
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;                //  sealer thread: jobs to claim
    pthread_cond_t done;                //  writer: a run finished
    pthread_t thread;
    bool tried;                         //  thread started lazily, once
    bool started;                       //  thread runs
    bool stop;                          //  thread: leave
    bool idle;                          //  thread waits on `wake`
    bool waiting;                       //  writer waits on `done`
    bool busy;                          //  a claimed run is going
    s_seal_t *jobs;                     //  this write txn's, in seq order
    size_t count, alloc;
    size_t next;                        //  first job not claimed
    size_t finished;                    //  jobs run
    uint8_t chain [S_HASH];             //  hash of the last job run
} s_sealer_t;

struct _sgmq_store_t {
    char *dir;
    char *data_path;                    //  dir/data.mdb, for messages
    MDB_env *env;
    MDB_dbi dbi [S_DB_COUNT];
    s_keys_t *keys;                     //  sodium_malloc'd: guarded, wiped
    uint32_t key_id;
    bool can_sign;
    size_t map_size_max;
    uint32_t checkpoint_every;
    bool keep_format;                   //  options->keep_format
    uint32_t format;                    //  as marked on disk
    int broken;                         //  0, or the error that broke it
    bool in_write;                      //  inside sgmq_store_write's fn
    uint32_t live_reads;                //  read txns not yet ended
    sgmq_store_txn_t *wtxn;             //  the one write txn, reused
    sgmq_store_txn_t *spare;            //  a reset read txn, to renew
    uint8_t nonces [S_NONCE_POOL];
    size_t nonce_at;                    //  next unused byte of `nonces`
    s_sealer_t sealer;
};

struct _sgmq_store_txn_t {
    sgmq_store_t *store;
    MDB_txn *txn;
    bool write;
    int fatal;                          //  sticky error (write txns)
    uint64_t time;
    //  Chain heads as this write txn moves them (loaded at begin).
    uint64_t head_seq, head_time;
    uint8_t head_hash [S_HASH];
    uint64_t ack_event, ack_time;
    uint8_t ack_hash [S_HASH];
    uint64_t first_seq;                 //  first appended here; 0: none
    bool ack_dirty;
    uint32_t iters;                     //  live iterators (programmer check)
    MDB_cursor *pend;                   //  write txns: see s_pend_find
    //  Memory behind the structs filled by reads (see the header's
    //  ownership rule): one set per struct type.
    s_buf_t rec_strs, rec_ptrs, rec_body;
    size_t rec_body_used;               //  high-water mark, wiped at end
    s_buf_t sort;                       //  duplicate check of recipients
    char del_recipient [SGMQ_STORE_MAX_NAME + 1];
    char del_key [SGMQ_STORE_MAX_NAME + 1];
    char ev_recipient [SGMQ_STORE_MAX_NAME + 1];
    char ev_key [SGMQ_STORE_MAX_NAME + 1];
};

struct _sgmq_store_iter_t {
    sgmq_store_txn_t *txn;
    MDB_cursor *cursor;
    enum { S_ITER_NEW, S_ITER_SEQ, S_ITER_TAG, S_ITER_DONE } state;
    int error;                          //  reported at the first next
    bool positioned;                    //  cursor sits on an unread item
    uint64_t lo, hi, since, until;
    char group [SGMQ_STORE_MAX_NAME + 1];
    char kind [SGMQ_STORE_MAX_KIND + 1];
    char sender [SGMQ_STORE_MAX_NAME + 1];
    size_t group_len, kind_len, sender_len;     //  0: any
    uint8_t tag [S_TAG_MAX];
    size_t tag_len;
    size_t looked, bound;               //  messages looked at; 0: no bound
    uint64_t last;                      //  the last seq looked at
};

//  A parsed message record; every pointer is into the record's bytes.
typedef struct {
    uint8_t version;                    //  1 or S_MSG_VERSION
    uint64_t time;
    const uint8_t *hash, *prev;
    const uint8_t *canon;
    size_t canon_size;
    const uint8_t *sender, *sender_key, *kind;
    size_t sender_len, sender_key_len, kind_len;
    uint32_t group_count;
    const uint8_t *groups;
    uint32_t recipient_count;
    const uint8_t *recipients;
    size_t strings_size;                //  sum of (len + 1) of all strings
    uint32_t key_id;
    const uint8_t *nonce;
    const uint8_t *sealed;
    size_t sealed_size;
} s_msg_t;

//  --------------------------------------------------------------------------
//  Byte helpers

static inline void
s_be16 (uint8_t *p, uint16_t v)
{
    p [0] = (uint8_t) (v >> 8);
    p [1] = (uint8_t) v;
}

static inline void
s_be32 (uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p [i] = (uint8_t) v;
}

static inline void
s_be64 (uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p [i] = (uint8_t) v;
}

static inline uint16_t
s_ld16 (const uint8_t *p)
{
    return (uint16_t) ((p [0] << 8) | p [1]);
}

static inline uint32_t
s_ld32 (const uint8_t *p)
{
    return ((uint32_t) p [0] << 24) | ((uint32_t) p [1] << 16)
         | ((uint32_t) p [2] << 8) | p [3];
}

static inline uint64_t
s_ld64 (const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p [i];
    return v;
}

//  A bounds-checked reader over untrusted bytes: any overrun sets `bad`
//  and every later read returns zero, so callers check once at the end.
typedef struct {
    const uint8_t *p;
    size_t left;
    bool bad;
} s_rd_t;

static const uint8_t *
s_rd_bytes (s_rd_t *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint8_t
s_rd_u8 (s_rd_t *r)
{
    const uint8_t *p = s_rd_bytes (r, 1);
    return p ? p [0] : 0;
}

static uint16_t
s_rd_u16 (s_rd_t *r)
{
    const uint8_t *p = s_rd_bytes (r, 2);
    return p ? s_ld16 (p) : 0;
}

static uint32_t
s_rd_u32 (s_rd_t *r)
{
    const uint8_t *p = s_rd_bytes (r, 4);
    return p ? s_ld32 (p) : 0;
}

static uint64_t
s_rd_u64 (s_rd_t *r)
{
    const uint8_t *p = s_rd_bytes (r, 8);
    return p ? s_ld64 (p) : 0;
}

//  A u16-length string of min..max bytes with no NUL inside.
static const uint8_t *
s_rd_str (s_rd_t *r, size_t min, size_t max, size_t *len)
{
    size_t n = s_rd_u16 (r);
    if (!r->bad && (n < min || n > max))
        r->bad = true;
    const uint8_t *p = s_rd_bytes (r, n);
    if (p && memchr (p, 0, n))
        r->bad = true;
    *len = r->bad ? 0 : n;
    return r->bad ? NULL : p;
}

static uint8_t *
s_wr_str (uint8_t *p, const char *s, size_t n)
{
    s_be16 (p, (uint16_t) n);
    if (n)
        memcpy (p + 2, s, n);
    return p + 2 + n;
}

//  Copy a validated (no NUL) string into a fixed char array.
static void
s_copy_name (char *dest, const uint8_t *src, size_t n)
{
    if (n)
        memcpy (dest, src, n);
    dest [n] = 0;
}

static int
s_buf_reserve (s_buf_t *buf, size_t size)
{
    if (size <= buf->size)
        return 0;
    size_t want = buf->size ? buf->size : 64;
    while (want < size)
        want *= 2;
    uint8_t *data = realloc (buf->data, want);
    if (!data)
        return ENOMEM;
    buf->data = data;
    buf->size = want;
    return 0;
}

static void
s_buf_free (s_buf_t *buf)
{
    free (buf->data);
    buf->data = NULL;
    buf->size = 0;
}

static uint64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * S_MS_PER_S
         + (uint64_t) ts.tv_nsec / S_NS_PER_MS;
}

static void __attribute__ ((format (printf, 3, 4)))
s_why (char *why, size_t why_size, const char *format, ...)
{
    if (!why || why_size == 0)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (why, why_size, format, args);
    va_end (args);
}

//  Bounded strlen: n, or max + 1 when longer than max.
static size_t
s_len (const char *s, size_t max)
{
    return strnlen (s, max + 1);
}

static inline MDB_val
s_val (const void *data, size_t size)
{
    MDB_val val = { size, (void *) data };
    return val;
}

//  --------------------------------------------------------------------------
//  Status codes

const char *
sgmq_store_strerror (int rc)
{
    switch (rc) {
        case SGMQ_STORE_OK:
            return "success";
        case SGMQ_STORE_E_NOT_FOUND:
            return "no such record";
        case SGMQ_STORE_E_CONFLICT:
            return "client reference reused with different content";
        case SGMQ_STORE_E_FULL:
            return "store full: the disk (or the map size cap) has no room; "
                   "nothing of the batch was written";
        case SGMQ_STORE_E_CORRUPT:
            return "store record damaged or tampered with";
        case SGMQ_STORE_E_VERSION:
            return "store format not readable by this build";
        case SGMQ_STORE_E_KEY:
            return "the storage key does not open this store";
        case SGMQ_STORE_E_INVALID:
            return "invalid argument";
        case SGMQ_STORE_E_BROKEN:
            return "store handle broken by an earlier fatal error; reopen it";
        case SGMQ_STORE_E_READONLY:
            return "write call on a read transaction";
        case SGMQ_STORE_E_ORDER:
            return "time or sequence would go backwards";
        case SGMQ_STORE_E_BUSY:
            return "the map must grow (or the store reopen) while a read "
                   "transaction of this process is open; end it and retry";
        case SGMQ_STORE_E_AGAIN:
            return "the iterator looked at as many messages as it may; go on "
                   "after the last one";
        default:
            //  mdb_strerror covers MDB_* codes and errno values alike.
            return mdb_strerror (rc);
    }
}

//  --------------------------------------------------------------------------
//  Error handling

static bool
s_disk_low (sgmq_store_t *self)
{
    struct statvfs st;
    if (statvfs (self->dir, &st) != 0)
        return false;
    //  f_bavail for root too: f_bfree counts blocks ext4 keeps back from
    //  everyone, so a full disk's short write (LMDB's EIO) read as
    //  "unavailable" (503) instead of "full" (507) for a broker run as root.
    return (unsigned long long) st.f_bavail * st.f_frsize < S_FULL_EIO_SLACK;
}

//  Map an LMDB or system error to what the caller sees, marking the
//  handle broken when the file itself is damaged.
static int
s_map_error (sgmq_store_t *self, int rc)
{
    switch (rc) {
        case 0:
            return 0;
        case MDB_NOTFOUND:
            return SGMQ_STORE_E_NOT_FOUND;
        case ENOSPC:
        case EDQUOT:
            return SGMQ_STORE_E_FULL;
        case EIO:
            return s_disk_low (self) ? SGMQ_STORE_E_FULL : EIO;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
            self->broken = rc;
            return rc;
        default:
            return rc;
    }
}

//  A fatal error inside a write transaction: remember it (sticky) and
//  return it. Read transactions just get it mapped.
static int
s_fatal (sgmq_store_txn_t *txn, int rc)
{
    rc = s_map_error (txn->store, rc);
    if (txn->write && !txn->fatal)
        txn->fatal = rc;
    return rc;
}

//  An MDB_APPEND put's error: MDB_KEYEXIST means a key at or past ours is
//  already stored.
static int
s_fatal_append (sgmq_store_txn_t *txn, int rc)
{
    return s_fatal (txn, rc == MDB_KEYEXIST ? SGMQ_STORE_E_ORDER : rc);
}

//  May this txn be used to read?
static int
s_usable (sgmq_store_txn_t *txn)
{
    if (txn->store->broken)
        return SGMQ_STORE_E_BROKEN;
    return txn->fatal;
}

//  May this txn be used to write?
static int
s_writable (sgmq_store_txn_t *txn)
{
    if (!txn->write)
        return SGMQ_STORE_E_READONLY;
    return s_usable (txn);
}

//  mdb_get mapping NOTFOUND to E_NOT_FOUND and other errors to fatal.
static int
s_get (sgmq_store_txn_t *txn, s_db_t db, const void *key, size_t key_size,
       MDB_val *val)
{
    MDB_val k = s_val (key, key_size);
    int rc = mdb_get (txn->txn, txn->store->dbi [db], &k, val);
    if (rc == MDB_NOTFOUND)
        return SGMQ_STORE_E_NOT_FOUND;
    return rc ? s_fatal (txn, rc) : 0;
}

static int
s_put (sgmq_store_txn_t *txn, s_db_t db, const void *key, size_t key_size,
       const void *data, size_t size, unsigned int flags)
{
    MDB_val k = s_val (key, key_size), v = s_val (data, size);
    int rc = mdb_put (txn->txn, txn->store->dbi [db], &k, &v, flags);
    if (rc)
        return (flags & (MDB_APPEND | MDB_APPENDDUP))
             ? s_fatal_append (txn, rc) : s_fatal (txn, rc);
    return 0;
}

//  Put a record keyed by something that mostly grows (a seq): try
//  MDB_APPEND, which skips the tree search and keeps pages full, and fall
//  back to a normal put when the key is not the largest (an update). A
//  refused MDB_APPEND changes nothing.
static int
s_put_mostly_last (sgmq_store_txn_t *txn, s_db_t db, const void *key,
                   size_t key_size, const void *data, size_t size)
{
    MDB_val k = s_val (key, key_size), v = s_val (data, size);
    int rc = mdb_put (txn->txn, txn->store->dbi [db], &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST)
        rc = mdb_put (txn->txn, txn->store->dbi [db], &k, &v, 0);
    return rc ? s_fatal (txn, rc) : 0;
}

static int
s_del (sgmq_store_txn_t *txn, s_db_t db, const void *key, size_t key_size)
{
    MDB_val k = s_val (key, key_size);
    int rc = mdb_del (txn->txn, txn->store->dbi [db], &k, NULL);
    if (rc == MDB_NOTFOUND)
        return SGMQ_STORE_E_NOT_FOUND;
    return rc ? s_fatal (txn, rc) : 0;
}

static int
s_cursor (sgmq_store_txn_t *txn, s_db_t db, MDB_cursor **cursor)
{
    int rc = mdb_cursor_open (txn->txn, txn->store->dbi [db], cursor);
    return rc ? s_fatal (txn, rc) : 0;
}

//  mdb_cursor_get with the same mapping as s_get.
static int
s_cursor_get (sgmq_store_txn_t *txn, MDB_cursor *cursor, MDB_val *key,
              MDB_val *val, MDB_cursor_op op)
{
    int rc = mdb_cursor_get (cursor, key, val, op);
    if (rc == MDB_NOTFOUND)
        return SGMQ_STORE_E_NOT_FOUND;
    return rc ? s_fatal (txn, rc) : 0;
}

//  Find a pending delivery through the write txn's cursor on them (opened
//  once per txn), so that updating or removing it needs no second search:
//  mdb_cursor_put (MDB_CURRENT) or mdb_cursor_del on txn->pend.
static int
s_pend_find (sgmq_store_txn_t *txn, const uint8_t *dkey, size_t dsize,
             MDB_val *val)
{
    if (!txn->pend) {
        int rc = s_cursor (txn, S_DB_PEND, &txn->pend);
        if (rc)
            return rc;
    }
    MDB_val k = s_val (dkey, dsize);
    return s_cursor_get (txn, txn->pend, &k, val, MDB_SET_KEY);
}

//  --------------------------------------------------------------------------
//  Crypto helpers

//  The associated data that binds a sealed body to its record; returns its
//  size. Version 2 adds a digest of the recipient list (u32 count and each
//  u16 len name, as stored), which is in neither the chain hash nor the
//  body: without it an edit of who was addressed would pass verify. A
//  record turned back to version 1 gets the shorter data, and fails to open.
static size_t
s_body_ad (uint8_t *ad, uint8_t version, uint64_t seq, uint32_t key_id,
           const uint8_t *recipients, size_t recipients_size)
{
    _Static_assert (sizeof s_body_tag == sizeof s_body2_tag, "one tag size");
    const size_t n = S_TAG_LEN (s_body_tag);
    memcpy (ad, version == 1 ? s_body_tag : s_body2_tag, n);
    s_be64 (ad + n, seq);
    s_be32 (ad + n + 8, key_id);
    if (version == 1)
        return n + 12;
    crypto_generichash (ad + n + 12, S_HASH, recipients, recipients_size,
                        NULL, 0);
    return n + 12 + S_HASH;
}

static const uint8_t *
s_nonce (sgmq_store_t *self)
{
    if (self->nonce_at + S_NONCE_SIZE > S_NONCE_POOL) {
        randombytes_buf (self->nonces, S_NONCE_POOL);
        self->nonce_at = 0;
    }
    const uint8_t *nonce = self->nonces + self->nonce_at;
    self->nonce_at += S_NONCE_SIZE;
    return nonce;
}

//  BLAKE2b-256 over prev || "sgmq-msg-v1" || u64 seq || u64 time ||
//  canonical region || u32 body size || body (see the header).
static void
s_msg_hash (const uint8_t *prev, uint64_t seq, uint64_t time,
            const uint8_t *canon, size_t canon_size,
            const uint8_t *body, size_t body_size, uint8_t *out)
{
    uint8_t head [S_HASH + S_TAG_LEN (s_msg_tag) + 8 + 8];
    memcpy (head, prev, S_HASH);
    memcpy (head + S_HASH, s_msg_tag, S_TAG_LEN (s_msg_tag));
    s_be64 (head + S_HASH + S_TAG_LEN (s_msg_tag), seq);
    s_be64 (head + S_HASH + S_TAG_LEN (s_msg_tag) + 8, time);
    uint8_t size [4];
    s_be32 (size, (uint32_t) body_size);

    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, S_HASH);
    crypto_generichash_update (&state, head, sizeof head);
    crypto_generichash_update (&state, canon, canon_size);
    crypto_generichash_update (&state, size, sizeof size);
    if (body_size)
        crypto_generichash_update (&state, body, body_size);
    crypto_generichash_final (&state, out, S_HASH);
}

//  BLAKE2b-256 over prev || "sgmq-ack-v1" || u64 event || u64 seq ||
//  u64 time || u16 len recipient || recipient || u16 len key || key.
//  `names` is that last part, as the acklog record stores it.
static void
s_ack_hash (const uint8_t *prev, uint64_t event, uint64_t seq,
            uint64_t time, const uint8_t *names, size_t names_size,
            uint8_t *out)
{
    uint8_t head [S_HASH + S_TAG_LEN (s_ack_tag) + 8 + 8 + 8];
    uint8_t *p = head;
    memcpy (p, prev, S_HASH);
    p += S_HASH;
    memcpy (p, s_ack_tag, S_TAG_LEN (s_ack_tag));
    p += S_TAG_LEN (s_ack_tag);
    s_be64 (p, event);
    s_be64 (p + 8, seq);
    s_be64 (p + 16, time);

    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, S_HASH);
    crypto_generichash_update (&state, head, sizeof head);
    crypto_generichash_update (&state, names, names_size);
    crypto_generichash_final (&state, out, S_HASH);
}

void
sgmq_store_checkpoint_message (const sgmq_store_checkpoint_t *cp,
                               uint8_t *out)
{
    assert (cp && out);
    memcpy (out, s_ckpt_tag, S_TAG_LEN (s_ckpt_tag));
    s_be64 (out + S_TAG_LEN (s_ckpt_tag), cp->seq);
    s_be64 (out + S_TAG_LEN (s_ckpt_tag) + 8, cp->time);
    memcpy (out + S_TAG_LEN (s_ckpt_tag) + 16, cp->hash, S_HASH);
}

//  --------------------------------------------------------------------------
//  Sealing beside the writer (see s_sealer_t)

//  Hash and seal one queued record, `prev` being the hash before it.
static void
s_seal_run (sgmq_store_t *self, const s_seal_t *job, const uint8_t *prev)
{
    uint8_t *rec = job->rec;
    uint8_t *hash = rec + S_MSG_HASH_AT;
    uint8_t *body = rec + job->body_at;
    memcpy (hash + S_HASH, prev, S_HASH);
    s_msg_hash (prev, job->seq, job->time, rec + job->canon_at,
                job->canon_size, body, job->body_size, hash);
    //  The recipient list runs from the canonical region's end to the
    //  key id, nonce and sealed size before the body.
    const uint8_t *recipients = rec + job->canon_at + job->canon_size;
    const uint8_t *nonce = body - 4 - S_NONCE_SIZE;
    uint8_t ad [S_BODY_AD_SIZE];
    size_t ad_size = s_body_ad (ad, S_MSG_VERSION, job->seq, self->key_id,
                                recipients, (size_t) (nonce - 4 - recipients));
    //  In place: the clear body becomes the sealed body and its MAC.
    crypto_aead_xchacha20poly1305_ietf_encrypt (
        body, NULL, body, job->body_size, ad, ad_size, NULL, nonce,
        self->keys->storage);
}

//  Claim every queued job and run them, with the lock held on entry and
//  exit. Only when no run is going, so jobs run in order. The writer may
//  grow (move) `jobs` meanwhile, so the run works on a copy of its slice.
static void
s_seal_claim (sgmq_store_t *self, s_seal_t *run, size_t run_max)
{
    s_sealer_t *sealer = &self->sealer;
    assert (!sealer->busy && sealer->next < sealer->count);
    size_t n = sealer->count - sealer->next;
    if (n > run_max)
        n = run_max;
    memcpy (run, sealer->jobs + sealer->next, n * sizeof *run);
    sealer->next += n;
    uint8_t prev [S_HASH];
    memcpy (prev, sealer->chain, S_HASH);
    sealer->busy = true;
    pthread_mutex_unlock (&sealer->lock);
    for (size_t i = 0; i < n; i++) {
        s_seal_run (self, &run [i], prev);
        memcpy (prev, run [i].rec + S_MSG_HASH_AT, S_HASH);
    }
    pthread_mutex_lock (&sealer->lock);
    memcpy (sealer->chain, prev, S_HASH);
    sealer->busy = false;
    sealer->finished += n;
    if (sealer->waiting)
        pthread_cond_signal (&sealer->done);
}

static void *
s_sealer_thread (void *arg)
{
    sgmq_store_t *self = arg;
    s_sealer_t *sealer = &self->sealer;
    s_seal_t run [S_SEAL_RUN];
    pthread_mutex_lock (&sealer->lock);
    while (!sealer->stop) {
        if (!sealer->busy && sealer->next < sealer->count)
            s_seal_claim (self, run, S_SEAL_RUN);
        else {
            sealer->idle = true;
            pthread_cond_wait (&sealer->wake, &sealer->lock);
            sealer->idle = false;       //  also after a spurious wakeup
        }
    }
    pthread_mutex_unlock (&sealer->lock);
    return NULL;
}

//  Start the thread with every signal blocked: signals are the broker's
//  loop's business. If it cannot start, the writer seals at each flush.
static void
s_sealer_start (sgmq_store_t *self)
{
    s_sealer_t *sealer = &self->sealer;
    sigset_t all, old;
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &old);
    sealer->tried = true;
    sealer->started = pthread_create (&sealer->thread, NULL,
                                      s_sealer_thread, self) == 0;
    pthread_sigmask (SIG_SETMASK, &old, NULL);
}

static void
s_sealer_init (sgmq_store_t *self)
{
    s_sealer_t *sealer = &self->sealer;
    pthread_mutex_init (&sealer->lock, NULL);
    pthread_cond_init (&sealer->wake, NULL);
    pthread_cond_init (&sealer->done, NULL);
}

static void
s_sealer_destroy (sgmq_store_t *self)
{
    s_sealer_t *sealer = &self->sealer;
    if (sealer->started) {
        pthread_mutex_lock (&sealer->lock);
        sealer->stop = true;
        pthread_cond_signal (&sealer->wake);
        pthread_mutex_unlock (&sealer->lock);
        pthread_join (sealer->thread, NULL);
    }
    assert (sealer->count == 0);
    free (sealer->jobs);
    pthread_cond_destroy (&sealer->done);
    pthread_cond_destroy (&sealer->wake);
    pthread_mutex_destroy (&sealer->lock);
}

//  Queue an append's record (the caller has filled all but hash, prev and
//  the sealed body). The first job of a txn chains from its head. On
//  ENOMEM the caller still owns `rec`.
static int
s_seal_queue (sgmq_store_txn_t *txn, const s_seal_t *job)
{
    sgmq_store_t *self = txn->store;
    s_sealer_t *sealer = &self->sealer;
    pthread_mutex_lock (&sealer->lock);
    int rc = 0;
    if (sealer->count == sealer->alloc) {
        size_t alloc = sealer->alloc ? sealer->alloc * 2 : 64;
        s_seal_t *jobs = realloc (sealer->jobs, alloc * sizeof *jobs);
        if (jobs) {
            sealer->jobs = jobs;
            sealer->alloc = alloc;
        }
        else
            rc = ENOMEM;
    }
    if (!rc) {
        if (sealer->count == 0)
            memcpy (sealer->chain, txn->head_hash, S_HASH);
        sealer->jobs [sealer->count++] = *job;
        if (sealer->count - sealer->next >= S_SEAL_WAKE) {
            if (!sealer->tried)
                s_sealer_start (self);      //  it claims at once
            else
            if (sealer->idle) {
                sealer->idle = false;       //  one signal is enough
                pthread_cond_signal (&sealer->wake);
            }
        }
    }
    pthread_mutex_unlock (&sealer->lock);
    return rc;
}

//  Writer: wait for the run going to finish.
static void
s_seal_wait (s_sealer_t *sealer)
{
    sealer->waiting = true;
    pthread_cond_wait (&sealer->done, &sealer->lock);
    sealer->waiting = false;
}

//  Wait until no job runs, then stop the rest from being claimed. Returns
//  the number of jobs that ran.
static size_t
s_seal_settle (s_sealer_t *sealer)
{
    while (sealer->busy)
        s_seal_wait (sealer);
    sealer->next = sealer->count;
    return sealer->finished;
}

//  Forget this txn's jobs (the records that did not reach msgs), wiping
//  any still in clear. Every write txn ends with this.
static void
s_seal_discard (sgmq_store_t *self)
{
    s_sealer_t *sealer = &self->sealer;
    if (sealer->count == 0)             //  nothing queued: none running
        return;                         //  (an ack-only turn, a flushed one)
    pthread_mutex_lock (&sealer->lock);
    size_t ran = s_seal_settle (sealer);
    for (size_t i = 0; i < sealer->count; i++) {
        if (i >= ran)
            sodium_memzero (sealer->jobs [i].rec, sealer->jobs [i].size);
        free (sealer->jobs [i].rec);
    }
    sealer->count = sealer->next = sealer->finished = 0;
    pthread_mutex_unlock (&sealer->lock);
}

//  Seal what is still queued (with the thread, or alone if it sleeps),
//  then put every record into msgs and move the txn's chain head. After
//  this the txn reads msgs and its head as if each append had written
//  them itself.
static int
s_seal_flush (sgmq_store_txn_t *txn)
{
    sgmq_store_t *self = txn->store;
    s_sealer_t *sealer = &self->sealer;
    if (sealer->count == 0)             //  only the writer adds jobs
        return 0;
    if (txn->fatal)
        return txn->fatal;              //  the txn's end discards the jobs
    s_seal_t run [S_SEAL_RUN];
    pthread_mutex_lock (&sealer->lock);
    while (sealer->finished < sealer->count) {
        if (!sealer->busy && sealer->next < sealer->count)
            s_seal_claim (self, run, S_SEAL_RUN);
        else
            s_seal_wait (sealer);
    }
    memcpy (txn->head_hash, sealer->chain, S_HASH);
    pthread_mutex_unlock (&sealer->lock);

    int rc = 0;
    for (size_t i = 0; i < sealer->count && !rc; i++) {
        const s_seal_t *job = &sealer->jobs [i];
        uint8_t seq_be [8];
        s_be64 (seq_be, job->seq);
        MDB_val key = s_val (seq_be, 8), val = s_val (job->rec, job->size);
        rc = mdb_put (txn->txn, self->dbi [S_DB_MSGS], &key, &val,
                      MDB_APPEND);
        if (rc)
            rc = s_fatal_append (txn, rc);
    }
    s_seal_discard (self);              //  stored (or the txn is dead)
    return rc;
}

//  --------------------------------------------------------------------------
//  Message records

static int
s_msg_parse (const MDB_val *val, s_msg_t *m)
{
    s_rd_t r = { val->mv_data, val->mv_size, false };
    memset (m, 0, sizeof *m);
    m->version = s_rd_u8 (&r);
    if (m->version != 1 && m->version != S_MSG_VERSION)
        return SGMQ_STORE_E_CORRUPT;
    m->time = s_rd_u64 (&r);
    m->hash = s_rd_bytes (&r, S_HASH);
    m->prev = s_rd_bytes (&r, S_HASH);
    m->canon = r.p;
    m->sender = s_rd_str (&r, 1, SGMQ_STORE_MAX_NAME, &m->sender_len);
    m->sender_key = s_rd_str (&r, 0, SGMQ_STORE_MAX_NAME, &m->sender_key_len);
    m->kind = s_rd_str (&r, 1, SGMQ_STORE_MAX_KIND, &m->kind_len);
    size_t strings = m->sender_len + m->sender_key_len + m->kind_len + 3;
    m->group_count = s_rd_u16 (&r);
    if (m->group_count < 1 || m->group_count > SGMQ_STORE_MAX_GROUPS)
        return SGMQ_STORE_E_CORRUPT;
    m->groups = r.p;
    for (uint32_t i = 0; i < m->group_count && !r.bad; i++) {
        size_t n;
        s_rd_str (&r, 1, SGMQ_STORE_MAX_NAME, &n);
        strings += n + 1;
    }
    if (r.bad)
        return SGMQ_STORE_E_CORRUPT;
    m->canon_size = (size_t) (r.p - m->canon);
    m->recipient_count = s_rd_u32 (&r);
    if (m->recipient_count > SGMQ_STORE_MAX_RECIPIENTS)
        return SGMQ_STORE_E_CORRUPT;
    m->recipients = r.p;
    for (uint32_t i = 0; i < m->recipient_count && !r.bad; i++) {
        size_t n;
        s_rd_str (&r, 1, SGMQ_STORE_MAX_NAME, &n);
        strings += n + 1;
    }
    m->key_id = s_rd_u32 (&r);
    m->nonce = s_rd_bytes (&r, S_NONCE_SIZE);
    m->sealed_size = s_rd_u32 (&r);
    if (m->sealed_size < S_MAC_SIZE
    ||  m->sealed_size > SGMQ_STORE_MAX_BODY + S_MAC_SIZE)
        return SGMQ_STORE_E_CORRUPT;
    m->sealed = s_rd_bytes (&r, m->sealed_size);
    if (r.bad || r.left != 0)
        return SGMQ_STORE_E_CORRUPT;
    m->strings_size = strings;
    return 0;
}

//  Is `name` one of the record's groups?
static bool
s_msg_has_group (const s_msg_t *m, const char *name, size_t len)
{
    s_rd_t r = { m->groups, m->canon_size, false };
    for (uint32_t i = 0; i < m->group_count; i++) {
        size_t n;
        const uint8_t *g = s_rd_str (&r, 1, SGMQ_STORE_MAX_NAME, &n);
        if (g && n == len && memcmp (g, name, n) == 0)
            return true;
    }
    return false;
}

static int
s_body_open (sgmq_store_t *self, uint64_t seq, const s_msg_t *m,
             uint8_t *plain)
{
    if (m->key_id != self->key_id)
        return SGMQ_STORE_E_KEY;
    const uint8_t *recipients = m->canon + m->canon_size;
    uint8_t ad [S_BODY_AD_SIZE];
    size_t ad_size = s_body_ad (ad, m->version, seq, m->key_id, recipients,
                                (size_t) (m->nonce - 4 - recipients));
    unsigned long long size;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt (
            plain, &size, NULL, m->sealed, m->sealed_size, ad, ad_size,
            m->nonce, self->keys->storage) != 0)
        return SGMQ_STORE_E_CORRUPT;
    return 0;
}

//  Decrypt the body of a parsed record into the txn's body buffer.
static int
s_msg_body (sgmq_store_txn_t *txn, uint64_t seq, const s_msg_t *m,
            const uint8_t **body, size_t *body_size)
{
    size_t size = m->sealed_size - S_MAC_SIZE;
    int rc = s_buf_reserve (&txn->rec_body, size ? size : 1);
    if (rc)
        return rc;
    if (size > txn->rec_body_used)
        txn->rec_body_used = size;
    rc = s_body_open (txn->store, seq, m, txn->rec_body.data);
    *body = txn->rec_body.data;
    *body_size = size;
    return rc;
}

static char *
s_out_str (char **at, const uint8_t *src, size_t n)
{
    char *start = *at;
    s_copy_name (start, src, n);
    *at += n + 1;
    return start;
}

//  Fill a public record from a parsed one: strings copied into the txn,
//  body decrypted.
static int
s_msg_fill (sgmq_store_txn_t *txn, uint64_t seq, const s_msg_t *m,
            sgmq_store_record_t *rec)
{
    size_t pointers = (size_t) m->group_count + m->recipient_count;
    int rc = s_buf_reserve (&txn->rec_ptrs, pointers * sizeof (char *));
    if (!rc)
        rc = s_buf_reserve (&txn->rec_strs, m->strings_size);
    if (!rc)
        rc = s_msg_body (txn, seq, m, &rec->body, &rec->body_size);
    if (rc)
        return rc;

    char *at = (char *) txn->rec_strs.data;
    const char **ptrs = (const char **) (void *) txn->rec_ptrs.data;
    rec->seq = seq;
    rec->time = m->time;
    rec->sender = s_out_str (&at, m->sender, m->sender_len);
    rec->sender_key = s_out_str (&at, m->sender_key, m->sender_key_len);
    rec->kind = s_out_str (&at, m->kind, m->kind_len);
    //  The regions were validated by s_msg_parse; read them again.
    s_rd_t r = { m->groups, SIZE_MAX, false };
    for (uint32_t i = 0; i < m->group_count; i++) {
        size_t n;
        const uint8_t *s = s_rd_str (&r, 1, SGMQ_STORE_MAX_NAME, &n);
        ptrs [i] = s_out_str (&at, s, n);
    }
    r.p = m->recipients;
    for (uint32_t i = 0; i < m->recipient_count; i++) {
        size_t n;
        const uint8_t *s = s_rd_str (&r, 1, SGMQ_STORE_MAX_NAME, &n);
        ptrs [m->group_count + i] = s_out_str (&at, s, n);
    }
    rec->group_count = m->group_count;
    rec->groups = ptrs;
    rec->recipient_count = m->recipient_count;
    rec->recipients = ptrs + m->group_count;
    memcpy (rec->hash, m->hash, S_HASH);
    memcpy (rec->prev, m->prev, S_HASH);
    return 0;
}

static int
s_msg_lookup (sgmq_store_txn_t *txn, uint64_t seq, MDB_val *val, s_msg_t *m)
{
    //  Only a queued message needs the queue in msgs: the broker reads
    //  older ones (an alert a reminder is about) in busy turns too.
    const s_sealer_t *sealer = &txn->store->sealer;
    int rc = 0;
    if (txn->write && sealer->count && seq >= sealer->jobs [0].seq)
        rc = s_seal_flush (txn);
    if (rc)
        return rc;
    uint8_t key [8];
    s_be64 (key, seq);
    rc = s_get (txn, S_DB_MSGS, key, sizeof key, val);
    if (!rc)
        rc = s_msg_parse (val, m);
    return rc;
}

//  --------------------------------------------------------------------------
//  Chain heads in meta

static int
s_head_load (sgmq_store_txn_t *txn, const char *name, uint64_t *seq,
             uint64_t *time, uint8_t *hash)
{
    MDB_val val;
    int rc = s_get (txn, S_DB_META, name, strlen (name), &val);
    if (rc == SGMQ_STORE_E_NOT_FOUND)
        return SGMQ_STORE_E_CORRUPT;    //  written at creation, never removed
    if (rc)
        return rc;
    if (val.mv_size != S_HEAD_SIZE)
        return SGMQ_STORE_E_CORRUPT;
    const uint8_t *p = val.mv_data;
    *seq = s_ld64 (p);
    *time = s_ld64 (p + 8);
    if (hash)
        memcpy (hash, p + 16, S_HASH);
    return 0;
}

static int
s_head_store (sgmq_store_txn_t *txn, const char *name, uint64_t seq,
              uint64_t time, const uint8_t *hash)
{
    uint8_t head [S_HEAD_SIZE];
    s_be64 (head, seq);
    s_be64 (head + 8, time);
    memcpy (head + 16, hash, S_HASH);
    return s_put (txn, S_DB_META, name, strlen (name), head, sizeof head, 0);
}

//  --------------------------------------------------------------------------
//  Environment: open, check, close

static void
s_txn_free_buffers (sgmq_store_txn_t *txn)
{
    if (txn->rec_body.data)
        sodium_memzero (txn->rec_body.data, txn->rec_body_used);
    txn->rec_body_used = 0;
    s_buf_free (&txn->rec_strs);
    s_buf_free (&txn->rec_ptrs);
    s_buf_free (&txn->rec_body);
    s_buf_free (&txn->sort);
}

static void
s_env_close (sgmq_store_t *self)
{
    if (self->spare) {
        mdb_txn_abort (self->spare->txn);
        s_txn_free_buffers (self->spare);
        free (self->spare);
        self->spare = NULL;
    }
    if (self->env) {
        mdb_env_close (self->env);
        self->env = NULL;
    }
}

//  The storage key check record: proves at open that this key, and not
//  another, sealed this store.
static void
s_keycheck_make (sgmq_store_t *self, uint8_t *out)
{
    uint8_t ad [S_TAG_LEN (s_keycheck_tag) + 4];
    memcpy (ad, s_keycheck_tag, S_TAG_LEN (s_keycheck_tag));
    s_be32 (ad + S_TAG_LEN (s_keycheck_tag), self->key_id);
    s_be32 (out, self->key_id);
    randombytes_buf (out + 4, S_NONCE_SIZE);
    crypto_aead_xchacha20poly1305_ietf_encrypt (
        out + 4 + S_NONCE_SIZE, NULL, (const uint8_t *) s_keycheck_tag,
        S_TAG_LEN (s_keycheck_tag), ad, sizeof ad, NULL, out + 4,
        self->keys->storage);
}

static int
s_keycheck_verify (sgmq_store_t *self, const MDB_val *val, char *why,
                   size_t why_size)
{
    if (val->mv_size != S_KEYCHECK_SIZE) {
        s_why (why, why_size, "%s: key check record is damaged", self->dir);
        return SGMQ_STORE_E_CORRUPT;
    }
    const uint8_t *p = val->mv_data;
    uint32_t key_id = s_ld32 (p);
    if (key_id != self->key_id) {
        s_why (why, why_size,
               "%s: store is sealed with storage key id %u, but key id %u "
               "was given", self->dir, key_id, self->key_id);
        return SGMQ_STORE_E_KEY;
    }
    uint8_t ad [S_TAG_LEN (s_keycheck_tag) + 4];
    memcpy (ad, s_keycheck_tag, S_TAG_LEN (s_keycheck_tag));
    s_be32 (ad + S_TAG_LEN (s_keycheck_tag), key_id);
    uint8_t plain [S_TAG_LEN (s_keycheck_tag)];
    if (crypto_aead_xchacha20poly1305_ietf_decrypt (
            plain, NULL, NULL, p + 4 + S_NONCE_SIZE,
            S_TAG_LEN (s_keycheck_tag) + S_MAC_SIZE, ad, sizeof ad, p + 4,
            self->keys->storage) != 0
    ||  sodium_memcmp (plain, s_keycheck_tag, sizeof plain) != 0) {
        s_why (why, why_size,
               "%s: the storage key does not open this store (wrong "
               "storage.key for this data directory?)", self->dir);
        return SGMQ_STORE_E_KEY;
    }
    return 0;
}

//  Check the format record in `meta`: a store this build can read. 0,
//  SGMQ_STORE_E_CORRUPT or SGMQ_STORE_E_VERSION (with the reason in
//  `why`), or an LMDB error (the caller words it).
//  Format 1 differs only in its message records (version 1, see
//  s_body_ad), which this build still reads; `format` (may be NULL) gets
//  the stored one.
static int
s_format_check (MDB_txn *txn, MDB_dbi meta, const char *dir, char *why,
                size_t why_size, uint32_t *format)
{
    MDB_val key = s_val (s_meta_format, strlen (s_meta_format)), val;
    int rc = mdb_get (txn, meta, &key, &val);
    if (rc == MDB_NOTFOUND || (!rc && val.mv_size != 4)) {
        s_why (why, why_size,
               "%s: store has no valid format record; damaged?", dir);
        return SGMQ_STORE_E_CORRUPT;
    }
    if (rc)
        return rc;
    uint32_t stored = s_ld32 (val.mv_data);
    if (stored != 1 && stored != SGMQ_STORE_FORMAT) {
        s_why (why, why_size, "%s: store format %u, this build reads 1 "
               "and %u", dir, stored, SGMQ_STORE_FORMAT);
        return SGMQ_STORE_E_VERSION;
    }
    if (format)
        *format = stored;
    return 0;
}

//  A meta row put with a plain LMDB txn (before our txn wrapper exists).
static int
s_put_raw (MDB_txn *txn, MDB_dbi dbi, const char *name, void *data,
           size_t size)
{
    MDB_val k = s_val (name, strlen (name)), v = s_val (data, size);
    return mdb_put (txn, dbi, &k, &v, 0);
}

//  The first transaction of an open: check (or write) the format and the
//  key check, and open every database.
static int
s_env_init_txn (sgmq_store_t *self, char *why, size_t why_size)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc) {
        s_why (why, why_size, "%s: cannot start a transaction: %s",
               self->dir, mdb_strerror (rc));
        return s_map_error (self, rc);
    }
    bool fresh = false;
    uint32_t stored_format = SGMQ_STORE_FORMAT;
    MDB_dbi meta;
    rc = mdb_dbi_open (txn, s_dbs [S_DB_META].name, 0, &meta);
    if (rc == MDB_NOTFOUND) {
        //  No meta: a new store, if the environment is empty.
        MDB_dbi main_db;
        MDB_stat st;
        rc = mdb_dbi_open (txn, NULL, 0, &main_db);
        if (!rc)
            rc = mdb_stat (txn, main_db, &st);
        if (!rc && st.ms_entries != 0) {
            s_why (why, why_size,
                   "%s: an LMDB environment, but not an sgmq store (it has "
                   "no meta database)", self->dir);
            rc = SGMQ_STORE_E_CORRUPT;
            goto out_abort;
        }
        fresh = true;
    }
    else
    if (!rc) {
        rc = s_format_check (txn, meta, self->dir, why, why_size,
                             &stored_format);
        if (rc == SGMQ_STORE_E_CORRUPT || rc == SGMQ_STORE_E_VERSION)
            goto out_abort;
    }
    if (rc) {
        s_why (why, why_size, "%s: cannot read the store's meta data: %s",
               self->dir, mdb_strerror (rc));
        rc = s_map_error (self, rc);
        goto out_abort;
    }
    for (int db = 0; db < S_DB_COUNT && !rc; db++)
        rc = mdb_dbi_open (txn, s_dbs [db].name, s_dbs [db].flags | MDB_CREATE,
                           &self->dbi [db]);
    if (rc) {
        s_why (why, why_size, "%s: cannot open the store's databases: %s",
               self->dir, mdb_strerror (rc));
        rc = s_map_error (self, rc);
        goto out_abort;
    }
    MDB_val key = s_val (s_meta_keycheck, strlen (s_meta_keycheck)), val;
    if (fresh) {
        uint8_t check [S_KEYCHECK_SIZE], head [S_HEAD_SIZE];
        s_keycheck_make (self, check);
        memset (head, 0, sizeof head);
        const struct { const char *name; void *data; size_t size; } rows [] = {
            { s_meta_keycheck, check, sizeof check },
            { s_meta_head, head, sizeof head },
            { s_meta_ackhead, head, sizeof head },
        };
        for (size_t i = 0; i < sizeof rows / sizeof rows [0] && !rc; i++)
            rc = s_put_raw (txn, self->dbi [S_DB_META], rows [i].name,
                            rows [i].data, rows [i].size);
    }
    else {
        rc = mdb_get (txn, self->dbi [S_DB_META], &key, &val);
        if (rc == MDB_NOTFOUND) {
            s_why (why, why_size, "%s: store has no key check record",
                   self->dir);
            rc = SGMQ_STORE_E_CORRUPT;
            goto out_abort;
        }
        if (!rc) {
            rc = s_keycheck_verify (self, &val, why, why_size);
            if (rc)
                goto out_abort;
        }
    }
    if (!rc && (fresh || (stored_format != SGMQ_STORE_FORMAT && !self->keep_format))) {
        //  New records will be of this build's format: mark the store so,
        //  which keeps an older build from misreading them.
        uint8_t format [4];
        s_be32 (format, SGMQ_STORE_FORMAT);
        rc = s_put_raw (txn, self->dbi [S_DB_META], s_meta_format, format,
                        sizeof format);
        stored_format = SGMQ_STORE_FORMAT;
    }
    self->format = stored_format;
    if (!rc) {
        rc = mdb_txn_commit (txn);
        txn = NULL;
    }
    if (rc) {
        s_why (why, why_size, "%s: cannot initialise the store: %s",
               self->dir, sgmq_store_strerror (s_map_error (self, rc)));
        rc = s_map_error (self, rc);
    }
out_abort:
    if (txn)
        mdb_txn_abort (txn);
    return rc;
}

//  LMDB does not check the data file's length against its meta page: a
//  truncated file would fault (SIGBUS) on the first read past its end.
static int
s_env_check_size (MDB_env *env, const char *data_path, char *why,
                  size_t why_size)
{
    MDB_envinfo info;
    MDB_stat st;
    int fd;
    struct stat fst;
    int rc = mdb_env_info (env, &info);
    if (!rc)
        rc = mdb_env_stat (env, &st);
    if (!rc)
        rc = mdb_env_get_fd (env, &fd);
    if (!rc && fstat (fd, &fst) != 0)
        rc = errno;
    if (rc) {
        s_why (why, why_size, "%s: cannot check the store's size: %s",
               data_path, mdb_strerror (rc));
        return rc;
    }
    unsigned long long need =
        ((unsigned long long) info.me_last_pgno + 1) * st.ms_psize;
    if ((unsigned long long) fst.st_size < need) {
        s_why (why, why_size,
               "%s: truncated: %llu bytes, but the store needs %llu",
               data_path, (unsigned long long) fst.st_size, need);
        return SGMQ_STORE_E_CORRUPT;
    }
    return 0;
}

//  Why mdb_env_open failed, in words; a damaged header or a foreign LMDB
//  version becomes our code for it.
static int
s_env_open_error (int rc, const char *dir, const char *data_path, char *why,
                  size_t why_size)
{
    if (rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND) {
        s_why (why, why_size,
               "%s: not an LMDB data file, or its header is damaged (%s)",
               data_path, mdb_strerror (rc));
        return SGMQ_STORE_E_CORRUPT;
    }
    if (rc == MDB_VERSION_MISMATCH) {
        s_why (why, why_size,
               "%s: written by an LMDB version this build cannot read",
               data_path);
        return SGMQ_STORE_E_VERSION;
    }
    if (rc == ENOENT)
        s_why (why, why_size, "%s: no such directory (create it first)", dir);
    else
        s_why (why, why_size, "%s: cannot open the store: %s", dir,
               mdb_strerror (rc));
    return rc;
}

static int
s_env_open (sgmq_store_t *self, size_t map_size, char *why, size_t why_size)
{
    struct stat st;
    //  LMDB takes an empty data file for a new store: a real store is never
    //  empty, so starting afresh would silently discard it.
    if (stat (self->data_path, &st) == 0 && st.st_size == 0) {
        s_why (why, why_size,
               "%s: empty file (a store is never empty; if no store was "
               "ever written here, remove it)", self->data_path);
        return SGMQ_STORE_E_CORRUPT;
    }
    int rc = mdb_env_create (&self->env);
    if (rc) {
        s_why (why, why_size, "%s: cannot create an LMDB environment: %s",
               self->dir, mdb_strerror (rc));
        self->env = NULL;
        return rc;
    }
    rc = mdb_env_set_maxdbs (self->env, S_MAX_DBS);
    if (!rc)
        rc = mdb_env_set_mapsize (self->env, map_size);
    if (rc) {
        s_why (why, why_size, "%s: cannot configure LMDB: %s", self->dir,
               mdb_strerror (rc));
        goto out_close_env;
    }
    //  MDB_NOTLS: read txns belong to their handle, not the thread, so one
    //  thread may hold several (a replay and a verify) at once.
    rc = mdb_env_open (self->env, self->dir, MDB_NOTLS, S_FILE_MODE);
    if (rc) {
        rc = s_env_open_error (rc, self->dir, self->data_path, why, why_size);
        goto out_close_env;
    }
    rc = s_env_check_size (self->env, self->data_path, why, why_size);
    if (rc)
        goto out_close_env;
    //  Reader slots left by dead processes pin old pages forever.
    int dead = 0;
    rc = mdb_reader_check (self->env, &dead);
    if (rc) {
        s_why (why, why_size, "%s: cannot check stale readers: %s",
               self->dir, mdb_strerror (rc));
        goto out_close_env;
    }
    rc = s_env_init_txn (self, why, why_size);
    if (rc)
        goto out_close_env;
    return 0;

out_close_env:
    mdb_env_close (self->env);
    self->env = NULL;
    return rc;
}

//  After MDB_PANIC: LMDB refuses every txn until the env is reopened.
static int
s_env_reopen (sgmq_store_t *self)
{
    MDB_envinfo info;
    size_t map_size = mdb_env_info (self->env, &info) == 0
                    ? info.me_mapsize : SGMQ_STORE_MAP_INITIAL;
    s_env_close (self);
    int rc = s_env_open (self, map_size, NULL, 0);
    if (rc)
        self->broken = rc;
    return rc;
}

//  mdb_env_set_mapsize, which unmaps the old map before it maps the new
//  one: when that fails (no address space), the environment is left with
//  no map at all. Reopen it at its old size rather than touch it again.
static int
s_set_mapsize (sgmq_store_t *self, size_t size)
{
    MDB_envinfo info;
    size_t old = mdb_env_info (self->env, &info) == 0
               ? info.me_mapsize : SGMQ_STORE_MAP_INITIAL;
    int rc = mdb_env_set_mapsize (self->env, size);
    if (rc == 0 || rc == EINVAL)        //  EINVAL: refused, map untouched
        return rc;
    s_env_close (self);
    int reopened = s_env_open (self, old, NULL, 0);
    if (reopened)
        self->broken = reopened;
    return rc;
}

//  Begin an LMDB txn, reopening after MDB_PANIC and adopting a map grown
//  by another process (MDB_MAP_RESIZED). Both remap: no read txn of ours
//  may be open then.
static int
s_begin (sgmq_store_t *self, unsigned int flags, MDB_txn **txn)
{
    if (!self->env)                     //  closed by a reopen that failed
        return SGMQ_STORE_E_BROKEN;
    for (int tries = 0; ; tries++) {
        int rc = mdb_txn_begin (self->env, NULL, flags, txn);
        if ((rc != MDB_PANIC && rc != MDB_MAP_RESIZED)
        ||  tries == S_BEGIN_RETRIES)
            return rc ? s_map_error (self, rc) : 0;
        if (self->live_reads)
            return SGMQ_STORE_E_BUSY;
        rc = rc == MDB_PANIC ? s_env_reopen (self) : s_set_mapsize (self, 0);
        if (rc)
            return self->broken ? SGMQ_STORE_E_BROKEN : rc;
    }
}

//  Double the map, up to the cap. No txn may be open in this process.
static int
s_grow (sgmq_store_t *self)
{
    if (self->live_reads)
        return SGMQ_STORE_E_BUSY;
    MDB_envinfo info;
    int rc = mdb_env_info (self->env, &info);
    if (rc)
        return rc;
    if (info.me_mapsize >= self->map_size_max)
        return SGMQ_STORE_E_FULL;
    size_t size = info.me_mapsize > self->map_size_max / 2
                ? self->map_size_max : info.me_mapsize * 2;
    return s_set_mapsize (self, size);
}

//  Grow ahead of need while nothing pins the map.
static void
s_grow_ahead (sgmq_store_t *self)
{
    MDB_envinfo info;
    MDB_stat st;
    if (self->live_reads
    ||  mdb_env_info (self->env, &info) != 0
    ||  mdb_env_stat (self->env, &st) != 0)
        return;
    size_t used = (info.me_last_pgno + 1) * st.ms_psize;
    if (used / S_GROW_AHEAD_NUM >= info.me_mapsize / S_GROW_AHEAD_DEN
    &&  info.me_mapsize < self->map_size_max) {
        int rc = s_grow (self);
        (void) rc;                      //  MAP_FULL handling still applies
    }
}

//  --------------------------------------------------------------------------
//  Opening and closing

sgmq_store_t *
sgmq_store_open (const char *dir, const sgmq_store_options_t *options,
                 int *rc_p, char *why, size_t why_size)
{
    int dummy;
    if (!rc_p)
        rc_p = &dummy;
    if (why && why_size)
        why [0] = 0;
    if (!dir || !options || !options->storage_key) {
        s_why (why, why_size, "%s: no storage key given",
               dir ? dir : "(no directory)");
        *rc_p = SGMQ_STORE_E_INVALID;
        return NULL;
    }
    if (sodium_init () < 0) {
        s_why (why, why_size, "%s: libsodium failed to initialise", dir);
        *rc_p = SGMQ_STORE_E_INVALID;
        return NULL;
    }
    size_t map_size = options->map_size ? options->map_size
                                        : SGMQ_STORE_MAP_INITIAL;
    size_t map_max = options->map_size_max ? options->map_size_max
                                           : SGMQ_STORE_MAP_MAX;
    //  A cap below the default start (limits/map-size-max may be 1 MiB):
    //  start at the cap.
    if (!options->map_size && map_size > map_max)
        map_size = map_max;
    if (map_size > map_max) {
        s_why (why, why_size, "%s: map size %zu is above its cap %zu",
               dir, map_size, map_max);
        *rc_p = SGMQ_STORE_E_INVALID;
        return NULL;
    }
    int rc = ENOMEM;
    sgmq_store_t *self = calloc (1, sizeof *self);
    if (!self)
        goto out_nomem;
    self->dir = strdup (dir);
    self->data_path = malloc (strlen (dir) + sizeof "/data.mdb");
    self->keys = sodium_malloc (sizeof (s_keys_t));
    self->wtxn = calloc (1, sizeof (sgmq_store_txn_t));
    if (!self->dir || !self->data_path || !self->keys || !self->wtxn)
        goto out_free_self;
    sprintf (self->data_path, "%s/data.mdb", dir);
    memcpy (self->keys->storage, options->storage_key, SGMQ_STORE_KEY_SIZE);
    sodium_memzero (self->keys->sign_sk, SGMQ_STORE_SIGN_SK_SIZE);
    if (options->signing_key) {
        //  A libsodium Ed25519 secret key is seed || public key: check they
        //  belong together, so a damaged key file cannot sign junk.
        uint8_t pk [SGMQ_STORE_SIGN_PK_SIZE], sk [SGMQ_STORE_SIGN_SK_SIZE];
        crypto_sign_seed_keypair (pk, sk, options->signing_key);
        bool same = sodium_memcmp (sk, options->signing_key, sizeof sk) == 0;
        sodium_memzero (sk, sizeof sk);
        if (!same) {
            s_why (why, why_size,
                   "%s: the signing key is not a valid Ed25519 secret key",
                   dir);
            rc = SGMQ_STORE_E_KEY;
            goto out_free_self;
        }
        memcpy (self->keys->sign_sk, options->signing_key,
                SGMQ_STORE_SIGN_SK_SIZE);
        self->can_sign = true;
    }
    sodium_mprotect_readonly (self->keys);
    self->key_id = options->key_id;
    self->map_size_max = map_max;
    self->checkpoint_every = options->checkpoint_every
                           ? options->checkpoint_every
                           : SGMQ_STORE_CHECKPOINT_EVERY;
    self->keep_format = options->keep_format;
    self->nonce_at = S_NONCE_POOL;      //  empty: fill on first use
    self->wtxn->store = self;
    self->wtxn->write = true;

    rc = s_env_open (self, map_size, why, why_size);
    if (rc)
        goto out_free_self;
    s_sealer_init (self);
    *rc_p = 0;
    return self;

out_free_self:
    if (self->keys)
        sodium_free (self->keys);
    free (self->wtxn);
    free (self->data_path);
    free (self->dir);
    free (self);
out_nomem:
    if (rc == ENOMEM)
        s_why (why, why_size, "%s: out of memory", dir);
    *rc_p = rc;
    return NULL;
}

void
sgmq_store_close (sgmq_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_store_t *self = *self_p;
    assert (!self->in_write);
    assert (self->live_reads == 0);
    if (self->env && !self->broken && self->can_sign) {
        //  Best effort: close cannot report, and an unsigned tail is
        //  signed at the next checkpoint anyway.
        int rc = sgmq_store_checkpoint (self);
        (void) rc;
    }
    s_sealer_destroy (self);
    s_env_close (self);
    s_txn_free_buffers (self->wtxn);
    free (self->wtxn);
    sodium_free (self->keys);           //  wipes the keys
    sodium_memzero (self->nonces, sizeof self->nonces);
    free (self->data_path);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

size_t
sgmq_store_map_size (sgmq_store_t *self)
{
    assert (self);
    MDB_envinfo info;
    if (!self->env || mdb_env_info (self->env, &info) != 0)
        return 0;
    return info.me_mapsize;
}

//  --------------------------------------------------------------------------
//  Transactions

static int
s_ckpt_last (sgmq_store_txn_t *txn, uint64_t *seq)
{
    MDB_cursor *cursor;
    MDB_val key, val;
    int rc = s_cursor (txn, S_DB_CKPT, &cursor);
    if (rc)
        return rc;
    rc = s_cursor_get (txn, cursor, &key, &val, MDB_LAST);
    mdb_cursor_close (cursor);
    *seq = 0;
    if (rc == SGMQ_STORE_E_NOT_FOUND)
        return 0;
    if (!rc && key.mv_size != 8)
        rc = SGMQ_STORE_E_CORRUPT;
    if (!rc)
        *seq = s_ld64 (key.mv_data);
    return rc;
}

//  Sign the head of this write txn and store the checkpoint.
static int
s_ckpt_put (sgmq_store_txn_t *txn)
{
    sgmq_store_t *self = txn->store;
    sgmq_store_checkpoint_t cp = { .seq = txn->head_seq, .time = txn->time };
    memcpy (cp.hash, txn->head_hash, S_HASH);
    uint8_t msg [SGMQ_STORE_CHECKPOINT_MSG_SIZE];
    sgmq_store_checkpoint_message (&cp, msg);
    crypto_sign_detached (cp.signature, NULL, msg, sizeof msg,
                          self->keys->sign_sk);
    uint8_t key [8], val [S_CKPT_SIZE];
    s_be64 (key, cp.seq);
    val [0] = S_REC_VERSION;
    s_be64 (val + 1, cp.time);
    memcpy (val + 9, cp.hash, S_HASH);
    memcpy (val + 9 + S_HASH, cp.signature, SGMQ_STORE_SIG_SIZE);
    return s_put (txn, S_DB_CKPT, key, sizeof key, val, sizeof val,
                  MDB_APPEND);
}

static int
s_wtxn_begin (sgmq_store_t *self)
{
    sgmq_store_txn_t *txn = self->wtxn;
    int rc = s_begin (self, 0, &txn->txn);
    if (rc) {
        txn->txn = NULL;
        return rc;
    }
    txn->fatal = 0;
    txn->first_seq = 0;
    txn->ack_dirty = false;
    txn->iters = 0;
    txn->pend = NULL;                   //  LMDB closed it with the last txn
    rc = s_head_load (txn, s_meta_head, &txn->head_seq, &txn->head_time,
                      txn->head_hash);
    if (!rc)
        rc = s_head_load (txn, s_meta_ackhead, &txn->ack_event,
                          &txn->ack_time, txn->ack_hash);
    if (rc) {
        mdb_txn_abort (txn->txn);
        txn->txn = NULL;
        return rc;
    }
    uint64_t now = s_now_ms ();
    txn->time = now > txn->head_time ? now : txn->head_time;
    if (txn->ack_time > txn->time)
        txn->time = txn->ack_time;
    return 0;
}

//  What every write txn adds after fn: chain heads, the time index entry,
//  and a checkpoint when one is due.
static int
s_wtxn_finish (sgmq_store_txn_t *txn)
{
    sgmq_store_t *self = txn->store;
    int rc = s_seal_flush (txn);
    if (!rc && txn->first_seq) {
        uint8_t key [S_TIME_KEY_SIZE];
        s_be64 (key, txn->time);
        s_be64 (key + 8, txn->first_seq);
        rc = s_put (txn, S_DB_TIME, key, sizeof key, NULL, 0, MDB_APPEND);
        if (!rc)
            rc = s_head_store (txn, s_meta_head, txn->head_seq,
                               txn->head_time, txn->head_hash);
        uint64_t last = 0;
        if (!rc && self->can_sign)
            rc = s_ckpt_last (txn, &last);
        if (!rc && self->can_sign
        &&  txn->head_seq - last >= self->checkpoint_every)
            rc = s_ckpt_put (txn);
    }
    if (!rc && txn->ack_dirty)
        rc = s_head_store (txn, s_meta_ackhead, txn->ack_event,
                           txn->ack_time, txn->ack_hash);
    return rc;
}

int
sgmq_store_write (sgmq_store_t *self, sgmq_store_write_fn *fn, void *arg)
{
    assert (self && fn);
    assert (!self->in_write);           //  sgmq_store_write is not reentrant
    if (self->broken)
        return SGMQ_STORE_E_BROKEN;
    s_grow_ahead (self);
    if (self->broken)                   //  a failed growth could not reopen
        return SGMQ_STORE_E_BROKEN;
    sgmq_store_txn_t *txn = self->wtxn;
    for (;;) {
        int rc = s_wtxn_begin (self);
        if (rc)
            return rc;
        self->in_write = true;
        int user = fn (txn, arg);
        self->in_write = false;
        assert (txn->iters == 0);       //  iterators die before their txn
        rc = txn->fatal;
        if (!rc && user == 0)
            rc = s_wtxn_finish (txn);
        s_seal_discard (self);          //  what finish did not store dies
        if (!rc && user != 0) {
            mdb_txn_abort (txn->txn);
            txn->txn = NULL;
            return user;
        }
        if (!rc) {
            rc = mdb_txn_commit (txn->txn);
            txn->txn = NULL;
            if (!rc)
                return 0;
        }
        else {
            mdb_txn_abort (txn->txn);
            txn->txn = NULL;
        }
        if (rc == MDB_MAP_FULL) {
            //  Nothing of this run was kept: grow and run fn afresh.
            rc = s_grow (self);
            if (rc == 0)
                continue;
            return rc;
        }
        return s_map_error (self, rc);
    }
}

sgmq_store_txn_t *
sgmq_store_read (sgmq_store_t *self, int *rc_p)
{
    assert (self);
    int dummy;
    if (!rc_p)
        rc_p = &dummy;
    if (self->broken) {
        *rc_p = SGMQ_STORE_E_BROKEN;
        return NULL;
    }
    sgmq_store_txn_t *txn = self->spare;
    self->spare = NULL;
    if (txn && mdb_txn_renew (txn->txn) != 0) {
        mdb_txn_abort (txn->txn);
        txn->txn = NULL;
    }
    if (!txn) {
        txn = calloc (1, sizeof *txn);
        if (!txn) {
            *rc_p = ENOMEM;
            return NULL;
        }
        txn->store = self;
    }
    if (!txn->txn) {
        int rc = s_begin (self, MDB_RDONLY, &txn->txn);
        if (rc) {
            s_txn_free_buffers (txn);
            free (txn);
            *rc_p = rc;
            return NULL;
        }
    }
    txn->fatal = 0;
    txn->iters = 0;
    txn->time = s_now_ms ();
    self->live_reads++;
    *rc_p = 0;
    return txn;
}

void
sgmq_store_read_end (sgmq_store_txn_t **txn_p)
{
    if (!txn_p || !*txn_p)
        return;
    sgmq_store_txn_t *txn = *txn_p;
    sgmq_store_t *self = txn->store;
    assert (!txn->write);
    assert (txn->iters == 0);           //  iterators die before their txn
    assert (self->live_reads > 0);
    self->live_reads--;
    if (txn->rec_body.data)
        sodium_memzero (txn->rec_body.data, txn->rec_body_used);
    txn->rec_body_used = 0;
    if (!self->spare && !self->broken) {
        //  Keep it (and its reader slot) for the next read.
        mdb_txn_reset (txn->txn);
        self->spare = txn;
    }
    else {
        mdb_txn_abort (txn->txn);
        s_txn_free_buffers (txn);
        free (txn);
    }
    *txn_p = NULL;
}

uint64_t
sgmq_store_txn_time (sgmq_store_txn_t *txn)
{
    assert (txn);
    return txn->time;
}

//  --------------------------------------------------------------------------
//  Messages

static int
s_cmp_str (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

//  Validate a message before anything is written; returns the record size.
static int
s_msg_validate (sgmq_store_txn_t *txn, const sgmq_store_msg_t *msg,
                size_t *record_size)
{
    size_t size = S_MSG_FIXED_SIZE;
    if (!msg->sender || !msg->kind || !msg->groups
    ||  (msg->recipient_count && !msg->recipients)
    ||  (msg->body_size && !msg->body))
        return SGMQ_STORE_E_INVALID;
    size_t n = s_len (msg->sender, SGMQ_STORE_MAX_NAME);
    if (n < 1 || n > SGMQ_STORE_MAX_NAME)
        return SGMQ_STORE_E_INVALID;
    size += n;
    n = msg->sender_key ? s_len (msg->sender_key, SGMQ_STORE_MAX_NAME) : 0;
    if (n > SGMQ_STORE_MAX_NAME)
        return SGMQ_STORE_E_INVALID;
    size += n;
    n = s_len (msg->kind, SGMQ_STORE_MAX_KIND);
    if (n < 1 || n > SGMQ_STORE_MAX_KIND)
        return SGMQ_STORE_E_INVALID;
    size += n;
    if (msg->group_count < 1 || msg->group_count > SGMQ_STORE_MAX_GROUPS
    ||  msg->recipient_count > SGMQ_STORE_MAX_RECIPIENTS
    ||  msg->body_size > SGMQ_STORE_MAX_BODY)
        return SGMQ_STORE_E_INVALID;
    if (msg->ref) {
        n = s_len (msg->ref, SGMQ_STORE_MAX_REF);
        if (n < 1 || n > SGMQ_STORE_MAX_REF)
            return SGMQ_STORE_E_INVALID;
    }
    for (uint32_t i = 0; i < msg->group_count; i++) {
        const char *g = msg->groups [i];
        n = g ? s_len (g, SGMQ_STORE_MAX_NAME) : 0;
        if (n < 1 || n > SGMQ_STORE_MAX_NAME)
            return SGMQ_STORE_E_INVALID;
        size += 2 + n;
        //  A group twice would index the message twice under one tag.
        for (uint32_t j = 0; j < i; j++)
            if (strcmp (msg->groups [j], g) == 0)
                return SGMQ_STORE_E_INVALID;
    }
    for (uint32_t i = 0; i < msg->recipient_count; i++) {
        const char *r = msg->recipients [i];
        n = r ? s_len (r, SGMQ_STORE_MAX_NAME) : 0;
        if (n < 1 || n > SGMQ_STORE_MAX_NAME)
            return SGMQ_STORE_E_INVALID;
        size += 2 + n;
    }
    //  A recipient twice would get one delivery record counted twice.
    if (msg->recipient_count <= S_DUP_LINEAR) {
        for (uint32_t i = 0; i < msg->recipient_count; i++)
            for (uint32_t j = 0; j < i; j++)
                if (strcmp (msg->recipients [i], msg->recipients [j]) == 0)
                    return SGMQ_STORE_E_INVALID;
    }
    else {
        size_t bytes = msg->recipient_count * sizeof (char *);
        int rc = s_buf_reserve (&txn->sort, bytes);
        if (rc)
            return rc;
        const char **sorted = (const char **) (void *) txn->sort.data;
        memcpy (sorted, msg->recipients, bytes);
        qsort (sorted, msg->recipient_count, sizeof (char *), s_cmp_str);
        for (uint32_t i = 1; i < msg->recipient_count; i++)
            if (strcmp (sorted [i - 1], sorted [i]) == 0)
                return SGMQ_STORE_E_INVALID;
    }
    *record_size = size + msg->body_size;
    return 0;
}

static size_t
s_tag_key (uint8_t *key, char type, const char *name, size_t len)
{
    key [0] = (uint8_t) type;
    key [1] = ':';
    memcpy (key + S_TAG_PREFIX, name, len);
    return S_TAG_PREFIX + len;
}

static int
s_tag_put (sgmq_store_txn_t *txn, char type, const char *name,
           const uint8_t *seq_be)
{
    uint8_t key [S_TAG_MAX];
    size_t size = s_tag_key (key, type, name, strlen (name));
    return s_put (txn, S_DB_TAGS, key, size, seq_be, 8, MDB_APPENDDUP);
}

static void
s_pend_encode (const sgmq_store_delivery_t *d, uint8_t *p)
{
    p [0] = S_REC_VERSION;
    p [1] = (uint8_t) d->state;
    p [2] = d->flagged ? S_FLAG_FLAGGED : 0;
    s_be32 (p + 3, d->count);
    s_be64 (p + 7, d->first);
    s_be64 (p + 15, d->last);
}

static size_t
s_dkey (uint8_t *key, const char *recipient, size_t len, uint64_t seq)
{
    memcpy (key, recipient, len);
    key [len] = 0;
    s_be64 (key + len + 1, seq);
    return len + 1 + 8;
}

//  The idempotency key of (sender, ref): sender NUL ref. Its size, or 0
//  when either is empty or too long.
static size_t
s_ikey (uint8_t *ikey, const char *sender, const char *ref)
{
    size_t sn = s_len (sender, SGMQ_STORE_MAX_NAME), rn = s_len (ref, SGMQ_STORE_MAX_REF);
    if (!sn || sn > SGMQ_STORE_MAX_NAME || !rn || rn > SGMQ_STORE_MAX_REF)
        return 0;
    memcpy (ikey, sender, sn);
    ikey [sn] = 0;
    memcpy (ikey + sn + 1, ref, rn);
    return sn + 1 + rn;
}

int
sgmq_store_ref_find (sgmq_store_txn_t *txn, const char *sender, const char *ref,
                     uint64_t *seq)
{
    assert (txn && sender && ref && seq);
    int rc = s_usable (txn);
    if (rc)
        return rc;
    uint8_t ikey [S_IKEY_MAX];
    size_t ikey_size = s_ikey (ikey, sender, ref);
    if (!ikey_size)
        return SGMQ_STORE_E_NOT_FOUND;
    MDB_val val;
    rc = s_get (txn, S_DB_IDEM, ikey, ikey_size, &val);
    if (rc)
        return rc;
    if (val.mv_size != S_IDEM_SIZE)
        return SGMQ_STORE_E_CORRUPT;
    *seq = s_ld64 (val.mv_data);
    return 0;
}

int
sgmq_store_append (sgmq_store_txn_t *txn, const sgmq_store_msg_t *msg,
                   sgmq_store_appended_t *out)
{
    assert (txn && msg && out);
    memset (out, 0, sizeof *out);
    int rc = s_writable (txn);
    if (rc)
        return rc;
    if (txn->store->format != SGMQ_STORE_FORMAT)
        return SGMQ_STORE_E_VERSION;    //  opened with keep_format
    size_t size;
    rc = s_msg_validate (txn, msg, &size);
    if (rc)
        return rc;
    sgmq_store_t *self = txn->store;
    static const uint8_t no_digest [S_HASH];
    const uint8_t *digest = msg->ref_digest ? msg->ref_digest : no_digest;

    //  Idempotency: a (sender, ref) stored before answers with its seq.
    uint8_t ikey [S_IKEY_MAX];
    size_t ikey_size = 0;
    if (msg->ref) {
        ikey_size = s_ikey (ikey, msg->sender, msg->ref);
        MDB_val val;
        rc = s_get (txn, S_DB_IDEM, ikey, ikey_size, &val);
        if (rc == 0) {
            if (val.mv_size != S_IDEM_SIZE)
                return SGMQ_STORE_E_CORRUPT;
            const uint8_t *p = val.mv_data;
            bool same = sodium_memcmp (p + 8, digest, S_HASH) == 0;
            s_msg_t m;
            out->seq = s_ld64 (p);
            out->duplicate = true;
            rc = s_msg_lookup (txn, out->seq, &val, &m);
            if (rc)
                return rc == SGMQ_STORE_E_NOT_FOUND
                     ? SGMQ_STORE_E_CORRUPT : rc;
            out->time = m.time;
            return same ? 0 : SGMQ_STORE_E_CONFLICT;
        }
        if (rc != SGMQ_STORE_E_NOT_FOUND)
            return rc;
    }

    //  The record, but for its hash, prev and sealing: the sealer does
    //  those (s_seal_queue) and s_seal_flush puts it into msgs.
    uint64_t seq = txn->head_seq + 1;
    uint8_t seq_be [8];
    s_be64 (seq_be, seq);
    uint8_t *rec = malloc (size), *p = rec;
    if (!rec)
        return s_fatal (txn, ENOMEM);
    *p++ = S_MSG_VERSION;
    s_be64 (p, txn->time);
    p += 8 + 2 * S_HASH;
    uint8_t *canon = p;
    const char *sender_key = msg->sender_key ? msg->sender_key : "";
    p = s_wr_str (p, msg->sender, strlen (msg->sender));
    p = s_wr_str (p, sender_key, strlen (sender_key));
    p = s_wr_str (p, msg->kind, strlen (msg->kind));
    s_be16 (p, (uint16_t) msg->group_count);
    p += 2;
    for (uint32_t i = 0; i < msg->group_count; i++)
        p = s_wr_str (p, msg->groups [i], strlen (msg->groups [i]));
    size_t canon_size = (size_t) (p - canon);
    s_be32 (p, msg->recipient_count);
    p += 4;
    for (uint32_t i = 0; i < msg->recipient_count; i++)
        p = s_wr_str (p, msg->recipients [i], strlen (msg->recipients [i]));
    s_be32 (p, self->key_id);
    p += 4;
    const uint8_t *nonce = s_nonce (self);
    memcpy (p, nonce, S_NONCE_SIZE);
    p += S_NONCE_SIZE;
    s_be32 (p, (uint32_t) (msg->body_size + S_MAC_SIZE));
    p += 4;
    if (msg->body_size)
        memcpy (p, msg->body, msg->body_size);
    assert ((size_t) (p - rec) + msg->body_size + S_MAC_SIZE == size);
    s_seal_t job = {
        .rec = rec, .size = size, .seq = seq, .time = txn->time,
        .canon_at = (size_t) (canon - rec), .canon_size = canon_size,
        .body_at = (size_t) (p - rec), .body_size = msg->body_size
    };
    rc = s_seal_queue (txn, &job);
    if (rc) {
        sodium_memzero (rec, size);
        free (rec);
        return s_fatal (txn, rc);
    }

    //  Indices: MDB_APPENDDUP since this seq is the largest under any tag.
    rc = s_tag_put (txn, 'k', msg->kind, seq_be);
    if (!rc)
        rc = s_tag_put (txn, 's', msg->sender, seq_be);
    for (uint32_t i = 0; i < msg->group_count && !rc; i++)
        rc = s_tag_put (txn, 'g', msg->groups [i], seq_be);
    uint8_t pend [S_PEND_SIZE] = { S_REC_VERSION, SGMQ_STORE_PENDING, 0 };
    for (uint32_t i = 0; i < msg->recipient_count && !rc; i++) {
        uint8_t dkey [S_DKEY_MAX], sent [S_PEND_SIZE];
        const char *r = msg->recipients [i];
        size_t dsize = s_dkey (dkey, r, strlen (r), seq);
        const uint8_t *state = pend;
        if (msg->delivered && msg->delivered [i]) {
            sgmq_store_delivery_t d = {
                .state = SGMQ_STORE_DELIVERED, .count = msg->delivered [i],
                .first = txn->time, .last = txn->time,
                .flagged = msg->max_tries && msg->delivered [i] >= msg->max_tries
            };
            s_pend_encode (&d, sent);
            state = sent;
        }
        rc = s_put (txn, S_DB_PEND, dkey, dsize, state, S_PEND_SIZE, 0);
    }
    if (!rc && msg->ref) {
        uint8_t idem [S_IDEM_SIZE];
        memcpy (idem, seq_be, 8);
        memcpy (idem + 8, digest, S_HASH);
        rc = s_put (txn, S_DB_IDEM, ikey, ikey_size, idem, sizeof idem,
                    MDB_NOOVERWRITE);
    }
    if (rc)
        return s_fatal (txn, rc);       //  half an append: txn must die

    txn->head_seq = seq;
    txn->head_time = txn->time;
    if (!txn->first_seq)
        txn->first_seq = seq;
    out->seq = seq;
    out->time = txn->time;
    return 0;
}

int
sgmq_store_get (sgmq_store_txn_t *txn, uint64_t seq,
                sgmq_store_record_t *record)
{
    assert (txn && record);
    int rc = s_usable (txn);
    if (rc)
        return rc;
    MDB_val val;
    s_msg_t m;
    rc = s_msg_lookup (txn, seq, &val, &m);
    if (!rc)
        rc = s_msg_fill (txn, seq, &m, record);
    return rc;
}

int
sgmq_store_head (sgmq_store_txn_t *txn, uint64_t *seq, uint8_t *hash)
{
    assert (txn);
    int rc = s_usable (txn);
    if (rc)
        return rc;
    uint64_t head_seq, time;
    uint8_t head_hash [S_HASH];
    if (txn->write) {
        rc = s_seal_flush (txn);
        if (rc)
            return rc;
        head_seq = txn->head_seq;
        memcpy (head_hash, txn->head_hash, S_HASH);
    }
    else {
        rc = s_head_load (txn, s_meta_head, &head_seq, &time, head_hash);
        if (rc)
            return rc;
    }
    if (seq)
        *seq = head_seq;
    if (hash)
        memcpy (hash, head_hash, S_HASH);
    return 0;
}

//  --------------------------------------------------------------------------
//  Iteration

sgmq_store_iter_t *
sgmq_store_iter_new (sgmq_store_txn_t *txn, const sgmq_store_query_t *query)
{
    assert (txn);
    sgmq_store_iter_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    static const sgmq_store_query_t all;
    if (!query)
        query = &all;
    self->txn = txn;
    self->lo = query->from_seq ? query->from_seq : 1;
    self->hi = query->to_seq ? query->to_seq : UINT64_MAX;
    self->since = query->since;
    self->until = query->until ? query->until : UINT64_MAX;
    const struct {
        const char *in;
        char *out;
        size_t max;
        size_t *len;
    } f [] = {
        { query->group, self->group, SGMQ_STORE_MAX_NAME, &self->group_len },
        { query->kind, self->kind, SGMQ_STORE_MAX_KIND, &self->kind_len },
        { query->sender, self->sender, SGMQ_STORE_MAX_NAME, &self->sender_len },
    };
    for (size_t i = 0; i < sizeof f / sizeof f [0]; i++) {
        if (!f [i].in || !*f [i].in)
            continue;
        size_t n = s_len (f [i].in, f [i].max);
        if (n > f [i].max)
            self->error = SGMQ_STORE_E_INVALID;
        else {
            memcpy (f [i].out, f [i].in, n + 1);
            *f [i].len = n;
        }
    }
    txn->iters++;
    return self;
}

void
sgmq_store_iter_destroy (sgmq_store_iter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_store_iter_t *self = *self_p;
    if (self->cursor)
        mdb_cursor_close (self->cursor);
    assert (self->txn->iters > 0);
    self->txn->iters--;
    free (self);
    *self_p = NULL;
}

//  Narrow [lo, hi] with the time index: entries are (txn time, first seq
//  of that txn) and time never decreases with seq.
static int
s_iter_time_bounds (sgmq_store_iter_t *self)
{
    sgmq_store_txn_t *txn = self->txn;
    if (self->since == 0 && self->until == UINT64_MAX)
        return 0;
    //  A write txn's own appends have their time entry only at its finish:
    //  they are the last entry, (txn->time, first_seq), in all but name.
    bool pending = txn->write && txn->first_seq;
    MDB_cursor *cursor;
    int rc = s_cursor (txn, S_DB_TIME, &cursor);
    if (rc)
        return rc;
    uint8_t k [S_TIME_KEY_SIZE] = { 0 };
    MDB_val key, val;
    if (self->since) {
        s_be64 (k, self->since);
        key = s_val (k, sizeof k);
        rc = s_cursor_get (txn, cursor, &key, &val, MDB_SET_RANGE);
        if (rc == SGMQ_STORE_E_NOT_FOUND && pending && txn->time >= self->since) {
            if (txn->first_seq > self->lo)
                self->lo = txn->first_seq;
        }
        else
        if (rc == SGMQ_STORE_E_NOT_FOUND)
            self->state = S_ITER_DONE;  //  nothing that recent
        else
        if (!rc && key.mv_size != S_TIME_KEY_SIZE)
            rc = SGMQ_STORE_E_CORRUPT;
        else
        if (!rc) {
            uint64_t first = s_ld64 ((uint8_t *) key.mv_data + 8);
            if (first > self->lo)
                self->lo = first;
        }
    }
    if ((!rc || rc == SGMQ_STORE_E_NOT_FOUND) && self->state != S_ITER_DONE
    &&  self->until != UINT64_MAX) {
        s_be64 (k, self->until + 1);
        key = s_val (k, sizeof k);
        rc = s_cursor_get (txn, cursor, &key, &val, MDB_SET_RANGE);
        if (rc == SGMQ_STORE_E_NOT_FOUND && pending && txn->time > self->until) {
            if (txn->first_seq - 1 < self->hi)
                self->hi = txn->first_seq - 1;
        }
        else
        if (!rc && key.mv_size != S_TIME_KEY_SIZE)
            rc = SGMQ_STORE_E_CORRUPT;
        else
        if (!rc) {
            //  First txn past `until`: everything before it qualifies.
            uint64_t first = s_ld64 ((uint8_t *) key.mv_data + 8);
            if (first - 1 < self->hi)
                self->hi = first - 1;
        }
    }
    mdb_cursor_close (cursor);
    return rc == SGMQ_STORE_E_NOT_FOUND ? 0 : rc;
}

static int
s_iter_start (sgmq_store_iter_t *self)
{
    sgmq_store_txn_t *txn = self->txn;
    if (self->lo > self->hi) {
        self->state = S_ITER_DONE;
        return 0;
    }
    int rc = s_iter_time_bounds (self);
    if (rc || self->state == S_ITER_DONE || self->lo > self->hi) {
        self->state = S_ITER_DONE;
        return rc;
    }
    //  Drive from the smallest tag list, if any tag was asked for.
    const struct { char type; const char *name; size_t len; } tags [] = {
        { 'g', self->group, self->group_len },
        { 'k', self->kind, self->kind_len },
        { 's', self->sender, self->sender_len },
    };
    size_t best = SIZE_MAX;
    MDB_val key, val;
    for (size_t i = 0; i < sizeof tags / sizeof tags [0]; i++) {
        if (!tags [i].len)
            continue;
        if (!self->cursor) {
            rc = s_cursor (txn, S_DB_TAGS, &self->cursor);
            if (rc)
                return rc;
        }
        uint8_t k [S_TAG_MAX];
        size_t ksize = s_tag_key (k, tags [i].type, tags [i].name,
                                  tags [i].len);
        key = s_val (k, ksize);
        rc = s_cursor_get (txn, self->cursor, &key, &val, MDB_SET);
        size_t count = 0;
        if (!rc)
            rc = mdb_cursor_count (self->cursor, &count);
        if (rc == SGMQ_STORE_E_NOT_FOUND) {
            self->state = S_ITER_DONE;  //  no message has this tag
            return 0;
        }
        if (rc)
            return s_fatal (txn, rc);
        if (count < best) {
            best = count;
            memcpy (self->tag, k, ksize);
            self->tag_len = ksize;
        }
    }
    uint8_t lo [8];
    s_be64 (lo, self->lo);
    if (self->tag_len) {
        key = s_val (self->tag, self->tag_len);
        val = s_val (lo, 8);
        rc = s_cursor_get (txn, self->cursor, &key, &val,
                           MDB_GET_BOTH_RANGE);
        self->state = S_ITER_TAG;
    }
    else {
        rc = s_cursor (txn, S_DB_MSGS, &self->cursor);
        if (rc)
            return rc;
        key = s_val (lo, 8);
        rc = s_cursor_get (txn, self->cursor, &key, &val, MDB_SET_RANGE);
        self->state = S_ITER_SEQ;
    }
    if (rc == SGMQ_STORE_E_NOT_FOUND) {
        self->state = S_ITER_DONE;
        return 0;
    }
    self->positioned = rc == 0;
    return rc;
}

int
sgmq_store_iter_next (sgmq_store_iter_t *self, sgmq_store_record_t *record)
{
    assert (self && record);
    sgmq_store_txn_t *txn = self->txn;
    int rc = self->error ? self->error : s_usable (txn);
    if (!rc && txn->write)
        rc = s_seal_flush (txn);        //  msgs must hold this txn's appends
    if (rc)
        return rc;
    if (self->state == S_ITER_NEW) {
        rc = s_iter_start (self);
        if (rc) {
            self->state = S_ITER_DONE;
            return rc;
        }
    }
    while (self->state != S_ITER_DONE) {
        if (self->bound && self->looked >= self->bound)
            return SGMQ_STORE_E_AGAIN;
        MDB_val key, val;
        if (self->positioned) {
            rc = s_cursor_get (txn, self->cursor, &key, &val,
                               MDB_GET_CURRENT);
            self->positioned = false;
        }
        else
            rc = s_cursor_get (txn, self->cursor, &key, &val,
                               self->state == S_ITER_TAG ? MDB_NEXT_DUP
                                                         : MDB_NEXT);
        if (rc == SGMQ_STORE_E_NOT_FOUND)
            break;
        if (rc)
            return rc;
        const MDB_val *seq_val = self->state == S_ITER_TAG ? &val : &key;
        if (seq_val->mv_size != 8)
            return SGMQ_STORE_E_CORRUPT;
        uint64_t seq = s_ld64 (seq_val->mv_data);
        if (seq > self->hi)
            break;
        self->looked++;
        self->last = seq;
        s_msg_t m;
        if (self->state == S_ITER_TAG) {
            rc = s_msg_lookup (txn, seq, &val, &m);
            if (rc == SGMQ_STORE_E_NOT_FOUND)
                rc = SGMQ_STORE_E_CORRUPT;  //  index names a missing message
        }
        else
            rc = s_msg_parse (&val, &m);
        if (rc)
            return rc;                  //  the next call goes on past it
        if (m.time < self->since || m.time > self->until)
            continue;
        if (self->kind_len && (m.kind_len != self->kind_len
                               || memcmp (m.kind, self->kind, m.kind_len)))
            continue;
        if (self->sender_len && (m.sender_len != self->sender_len
                                 || memcmp (m.sender, self->sender,
                                            m.sender_len)))
            continue;
        if (self->group_len
        &&  !s_msg_has_group (&m, self->group, self->group_len))
            continue;
        return s_msg_fill (txn, seq, &m, record);
    }
    self->state = S_ITER_DONE;
    return SGMQ_STORE_E_NOT_FOUND;
}

void
sgmq_store_iter_bound (sgmq_store_iter_t *self, size_t count)
{
    assert (self);
    self->bound = count;
}

uint64_t
sgmq_store_iter_seq (const sgmq_store_iter_t *self)
{
    assert (self);
    return self->last;
}

//  --------------------------------------------------------------------------
//  Deliveries and acknowledgements

static int
s_name_check (const char *name, size_t min, size_t *len)
{
    if (!name)
        return SGMQ_STORE_E_INVALID;
    *len = s_len (name, SGMQ_STORE_MAX_NAME);
    return *len < min || *len > SGMQ_STORE_MAX_NAME ? SGMQ_STORE_E_INVALID : 0;
}

static int
s_pend_decode (const MDB_val *val, sgmq_store_delivery_t *out)
{
    const uint8_t *p = val->mv_data;
    if (val->mv_size != S_PEND_SIZE || p [0] != S_REC_VERSION
    ||  (p [1] != SGMQ_STORE_PENDING && p [1] != SGMQ_STORE_DELIVERED))
        return SGMQ_STORE_E_CORRUPT;
    out->state = (sgmq_store_dstate_t) p [1];
    out->flagged = (p [2] & S_FLAG_FLAGGED) != 0;
    out->count = s_ld32 (p + 3);
    out->first = s_ld64 (p + 7);
    out->last = s_ld64 (p + 15);
    out->acked_at = 0;
    out->acked_key = "";
    return 0;
}

//  `key_buf` (MAX_NAME + 1 bytes) receives the acking key.
static int
s_ackd_decode (char *key_buf, const MDB_val *val, sgmq_store_delivery_t *out,
               uint64_t *event)
{
    s_rd_t r = { val->mv_data, val->mv_size, false };
    if (s_rd_u8 (&r) != S_REC_VERSION)
        return SGMQ_STORE_E_CORRUPT;
    out->state = SGMQ_STORE_ACKED;
    out->flagged = (s_rd_u8 (&r) & S_FLAG_FLAGGED) != 0;
    out->count = s_rd_u32 (&r);
    out->first = s_rd_u64 (&r);
    out->last = s_rd_u64 (&r);
    out->acked_at = s_rd_u64 (&r);
    *event = s_rd_u64 (&r);
    size_t n;
    const uint8_t *key = s_rd_str (&r, 0, SGMQ_STORE_MAX_NAME, &n);
    if (r.bad || r.left != 0)
        return SGMQ_STORE_E_CORRUPT;
    s_copy_name (key_buf, key, n);
    out->acked_key = key_buf;
    return 0;
}

//  Look a delivery up in pend, then ackd. Fills `out` (recipient not set).
static int
s_delivery_find (sgmq_store_txn_t *txn, const uint8_t *dkey, size_t dsize,
                 sgmq_store_delivery_t *out, uint64_t *event)
{
    MDB_val val;
    int rc = s_get (txn, S_DB_PEND, dkey, dsize, &val);
    if (!rc)
        return s_pend_decode (&val, out);
    if (rc != SGMQ_STORE_E_NOT_FOUND)
        return rc;
    rc = s_get (txn, S_DB_ACKD, dkey, dsize, &val);
    return rc ? rc : s_ackd_decode (txn->del_key, &val, out, event);
}

int
sgmq_store_delivered (sgmq_store_txn_t *txn, const char *recipient,
                      uint64_t seq, bool flag, sgmq_store_delivery_t *out)
{
    assert (txn);
    size_t rlen;
    int rc = s_writable (txn);
    if (!rc)
        rc = s_name_check (recipient, 1, &rlen);
    if (rc)
        return rc;
    uint8_t dkey [S_DKEY_MAX];
    size_t dsize = s_dkey (dkey, recipient, rlen, seq);
    MDB_val val;
    sgmq_store_delivery_t d;
    rc = s_pend_find (txn, dkey, dsize, &val);
    if (!rc)
        rc = s_pend_decode (&val, &d);
    if (rc)
        return rc;
    d.state = SGMQ_STORE_DELIVERED;
    if (d.count < UINT32_MAX)
        d.count++;
    if (!d.first)
        d.first = txn->time;
    d.last = txn->time;
    d.flagged = d.flagged || flag;
    uint8_t pend [S_PEND_SIZE];
    s_pend_encode (&d, pend);
    MDB_val k = s_val (dkey, dsize), v = s_val (pend, sizeof pend);
    rc = mdb_cursor_put (txn->pend, &k, &v, MDB_CURRENT);
    if (rc)
        return s_fatal (txn, rc);
    if (out) {
        *out = d;
        s_copy_name (txn->del_recipient, (const uint8_t *) recipient, rlen);
        out->seq = seq;
        out->recipient = txn->del_recipient;
    }
    return 0;
}

int
sgmq_store_ack (sgmq_store_txn_t *txn, const char *recipient,
                const char *key, uint64_t seq, sgmq_store_acked_t *out)
{
    assert (txn && out);
    memset (out, 0, sizeof *out);
    size_t rlen, klen;
    int rc = s_writable (txn);
    if (!rc)
        rc = s_name_check (recipient, 1, &rlen);
    if (!rc)
        rc = s_name_check (key ? key : "", 0, &klen);
    if (rc)
        return rc;
    if (!key)
        key = "";
    uint8_t dkey [S_DKEY_MAX];
    size_t dsize = s_dkey (dkey, recipient, rlen, seq);
    MDB_val val;
    sgmq_store_delivery_t d;
    rc = s_pend_find (txn, dkey, dsize, &val);
    if (rc == SGMQ_STORE_E_NOT_FOUND) {
        //  Already acked: say so, write nothing. (Decode the key into a
        //  scratch buffer: a delivery filled earlier keeps its strings.)
        uint64_t event = 0;
        char scratch [SGMQ_STORE_MAX_NAME + 1];
        rc = s_get (txn, S_DB_ACKD, dkey, dsize, &val);
        if (!rc)
            rc = s_ackd_decode (scratch, &val, &d, &event);
        if (!rc) {
            out->time = d.acked_at;
            out->event = event;
            out->duplicate = true;
        }
        return rc;
    }
    if (!rc)
        rc = s_pend_decode (&val, &d);
    if (rc)
        return rc;

    uint64_t event = txn->ack_event + 1;
    uint8_t ackd [S_ACKD_FIXED + SGMQ_STORE_MAX_NAME];
    uint8_t *p = ackd;
    *p++ = S_REC_VERSION;
    *p++ = d.flagged ? S_FLAG_FLAGGED : 0;
    s_be32 (p, d.count);
    s_be64 (p + 4, d.first);
    s_be64 (p + 12, d.last);
    s_be64 (p + 20, txn->time);
    s_be64 (p + 28, event);
    p = s_wr_str (p + 36, key, klen);

    uint8_t ev [S_EVENT_FIXED + 2 * SGMQ_STORE_MAX_NAME];
    uint8_t *names = ev + 1 + 8 + 8 + S_HASH;
    uint8_t *end = s_wr_str (s_wr_str (names, recipient, rlen), key, klen);
    uint8_t hash [S_HASH];
    s_ack_hash (txn->ack_hash, event, seq, txn->time, names,
                (size_t) (end - names), hash);
    ev [0] = S_REC_VERSION;
    s_be64 (ev + 1, seq);
    s_be64 (ev + 9, txn->time);
    memcpy (ev + 17, hash, S_HASH);
    uint8_t ekey [8];
    s_be64 (ekey, event);

    rc = mdb_cursor_del (txn->pend, 0);
    if (!rc)
        rc = s_put (txn, S_DB_ACKD, dkey, dsize, ackd, (size_t) (p - ackd), 0);
    if (!rc)
        rc = s_put (txn, S_DB_ACKLOG, ekey, 8, ev, (size_t) (end - ev),
                    MDB_APPEND);
    if (rc)
        return s_fatal (txn, rc);
    txn->ack_event = event;
    txn->ack_time = txn->time;
    memcpy (txn->ack_hash, hash, S_HASH);
    txn->ack_dirty = true;
    out->time = txn->time;
    out->event = event;
    return 0;
}

int
sgmq_store_delivery (sgmq_store_txn_t *txn, const char *recipient,
                     uint64_t seq, sgmq_store_delivery_t *out)
{
    assert (txn && out);
    size_t rlen;
    int rc = s_usable (txn);
    if (!rc)
        rc = s_name_check (recipient, 1, &rlen);
    if (rc)
        return rc;
    uint8_t dkey [S_DKEY_MAX];
    size_t dsize = s_dkey (dkey, recipient, rlen, seq);
    uint64_t event;
    rc = s_delivery_find (txn, dkey, dsize, out, &event);
    if (rc)
        return rc;
    s_copy_name (txn->del_recipient, (const uint8_t *) recipient, rlen);
    out->recipient = txn->del_recipient;
    out->seq = seq;
    return 0;
}

//  Split a delivery key into recipient and seq; false if malformed.
static bool
s_dkey_split (const MDB_val *key, size_t *rlen, uint64_t *seq)
{
    const uint8_t *p = key->mv_data;
    if (key->mv_size < 1 + 1 + 8 || key->mv_size > S_DKEY_MAX)
        return false;
    size_t n = key->mv_size - 9;
    if (p [n] != 0 || memchr (p, 0, n))
        return false;
    *rlen = n;
    *seq = s_ld64 (p + n + 1);
    return true;
}

//  Position on the first pend key >= `start` and decode it.
static int
s_pend_seek (sgmq_store_txn_t *txn, const uint8_t *start, size_t size,
             const char *only, size_t only_len, sgmq_store_delivery_t *out)
{
    MDB_cursor *cursor;
    int rc = s_cursor (txn, S_DB_PEND, &cursor);
    if (rc)
        return rc;
    MDB_val key = s_val (start, size), val;
    rc = s_cursor_get (txn, cursor, &key, &val, MDB_SET_RANGE);
    size_t rlen;
    uint64_t seq;
    if (!rc && !s_dkey_split (&key, &rlen, &seq))
        rc = SGMQ_STORE_E_CORRUPT;
    if (!rc && only && (rlen != only_len || memcmp (key.mv_data, only, rlen)))
        rc = SGMQ_STORE_E_NOT_FOUND;    //  past this recipient's range
    if (!rc)
        rc = s_pend_decode (&val, out);
    if (!rc) {
        s_copy_name (txn->del_recipient, key.mv_data, rlen);
        out->recipient = txn->del_recipient;
        out->seq = seq;
    }
    mdb_cursor_close (cursor);
    return rc;
}

int
sgmq_store_unacked_next (sgmq_store_txn_t *txn, const char *recipient,
                         uint64_t after, sgmq_store_delivery_t *out)
{
    assert (txn && out);
    size_t rlen;
    int rc = s_usable (txn);
    if (!rc)
        rc = s_name_check (recipient, 1, &rlen);
    if (rc)
        return rc;
    if (after == UINT64_MAX)
        return SGMQ_STORE_E_NOT_FOUND;
    uint8_t dkey [S_DKEY_MAX];
    size_t dsize = s_dkey (dkey, recipient, rlen, after + 1);
    return s_pend_seek (txn, dkey, dsize, recipient, rlen, out);
}

int
sgmq_store_unacked_count (sgmq_store_txn_t *txn, const char *recipient,
                          uint64_t *count)
{
    assert (txn && count);
    *count = 0;
    size_t rlen;
    int rc = s_usable (txn);
    if (!rc)
        rc = s_name_check (recipient, 1, &rlen);
    if (rc)
        return rc;
    //  O(this recipient's unacked deliveries): they are one key range.
    MDB_cursor *cursor;
    rc = s_cursor (txn, S_DB_PEND, &cursor);
    if (rc)
        return rc;
    uint8_t dkey [S_DKEY_MAX];
    size_t dsize = s_dkey (dkey, recipient, rlen, 0);
    MDB_val key = s_val (dkey, dsize), val;
    rc = s_cursor_get (txn, cursor, &key, &val, MDB_SET_RANGE);
    while (rc == 0) {
        if (key.mv_size != rlen + 9
        ||  memcmp (key.mv_data, dkey, rlen + 1) != 0)
            break;
        (*count)++;
        rc = s_cursor_get (txn, cursor, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close (cursor);
    return rc == SGMQ_STORE_E_NOT_FOUND ? 0 : rc;
}

int
sgmq_store_unacked_all_next (sgmq_store_txn_t *txn,
                             const char *after_recipient, uint64_t after_seq,
                             sgmq_store_delivery_t *out)
{
    assert (txn && out);
    if (!after_recipient)
        after_recipient = "";
    size_t rlen;
    int rc = s_usable (txn);
    if (!rc)
        rc = s_name_check (after_recipient, 0, &rlen);
    if (rc)
        return rc;
    uint8_t start [S_DKEY_MAX];
    size_t size;
    if (after_seq == UINT64_MAX) {
        //  Past every key of this recipient: its name then \x01.
        memcpy (start, after_recipient, rlen);
        start [rlen] = 1;
        size = rlen + 1;
    }
    else
        size = s_dkey (start, after_recipient, rlen, after_seq + 1);
    return s_pend_seek (txn, start, size, NULL, 0, out);
}

int
sgmq_store_ack_log_next (sgmq_store_txn_t *txn, uint64_t after,
                         sgmq_store_ack_event_t *out)
{
    assert (txn && out);
    int rc = s_usable (txn);
    if (rc)
        return rc;
    if (after == UINT64_MAX)
        return SGMQ_STORE_E_NOT_FOUND;
    MDB_cursor *cursor;
    rc = s_cursor (txn, S_DB_ACKLOG, &cursor);
    if (rc)
        return rc;
    uint8_t k [8];
    s_be64 (k, after + 1);
    MDB_val key = s_val (k, 8), val;
    rc = s_cursor_get (txn, cursor, &key, &val, MDB_SET_RANGE);
    if (!rc && key.mv_size != 8)
        rc = SGMQ_STORE_E_CORRUPT;
    if (!rc) {
        s_rd_t r = { val.mv_data, val.mv_size, false };
        size_t rn, kn;
        bool version_ok = s_rd_u8 (&r) == S_REC_VERSION;
        out->event = s_ld64 (key.mv_data);
        out->seq = s_rd_u64 (&r);
        out->time = s_rd_u64 (&r);
        const uint8_t *hash = s_rd_bytes (&r, S_HASH);
        const uint8_t *rname = s_rd_str (&r, 1, SGMQ_STORE_MAX_NAME, &rn);
        const uint8_t *kname = s_rd_str (&r, 0, SGMQ_STORE_MAX_NAME, &kn);
        if (!version_ok || r.bad || r.left != 0)
            rc = SGMQ_STORE_E_CORRUPT;
        else {
            memcpy (out->hash, hash, S_HASH);
            s_copy_name (txn->ev_recipient, rname, rn);
            s_copy_name (txn->ev_key, kname, kn);
            out->recipient = txn->ev_recipient;
            out->key = txn->ev_key;
        }
    }
    mdb_cursor_close (cursor);
    return rc;
}

//  --------------------------------------------------------------------------
//  Tracking records

//  The record of `*seq` (exact), or the first with seq > `*seq`, which
//  then updates `*seq`.
static int
s_seq_record (sgmq_store_txn_t *txn, s_db_t db, uint64_t *seq, bool exact,
              MDB_val *val)
{
    uint8_t k [8];
    if (exact) {
        s_be64 (k, *seq);
        return s_get (txn, db, k, 8, val);
    }
    if (*seq == UINT64_MAX)
        return SGMQ_STORE_E_NOT_FOUND;
    s_be64 (k, *seq + 1);
    MDB_cursor *cursor;
    int rc = s_cursor (txn, db, &cursor);
    if (rc)
        return rc;
    MDB_val key = s_val (k, 8);
    rc = s_cursor_get (txn, cursor, &key, val, MDB_SET_RANGE);
    if (!rc && key.mv_size != 8)
        rc = SGMQ_STORE_E_CORRUPT;
    if (!rc)
        *seq = s_ld64 (key.mv_data);
    mdb_cursor_close (cursor);
    return rc;
}

//  A NUL-terminated string inside a fixed array of `size` bytes.
static int
s_field_len (const char *field, size_t size, size_t *len)
{
    *len = strnlen (field, size);
    return *len < size ? 0 : SGMQ_STORE_E_INVALID;
}

int
sgmq_store_escalation_put (sgmq_store_txn_t *txn,
                           const sgmq_store_escalation_t *e)
{
    assert (txn && e);
    size_t glen, alen;
    int rc = s_writable (txn);
    if (!rc)
        rc = s_field_len (e->group, sizeof e->group, &glen);
    if (!rc)
        rc = s_field_len (e->acked_by, sizeof e->acked_by, &alen);
    if (rc)
        return rc;
    if (e->status < SGMQ_STORE_ESC_RAISED
    ||  e->status > SGMQ_STORE_ESC_RESPONDED)
        return SGMQ_STORE_E_INVALID;
    uint8_t val [S_ESC_FIXED + 2 * SGMQ_STORE_MAX_NAME];
    uint8_t *p = val;
    *p++ = S_REC_VERSION;
    *p++ = (uint8_t) e->status;
    s_be32 (p, e->overdue);
    p += 4;
    const uint64_t times [] = { e->raised, e->ack_by, e->respond_by,
                                e->acked_at, e->responded_at, e->response_seq,
                                e->last_reminder };
    for (size_t i = 0; i < sizeof times / sizeof times [0]; i++, p += 8)
        s_be64 (p, times [i]);
    s_be32 (p, e->reminders);
    p += 4;
    p = s_wr_str (p, e->group, glen);
    p = s_wr_str (p, e->acked_by, alen);
    uint8_t key [8];
    s_be64 (key, e->seq);
    return s_put_mostly_last (txn, S_DB_ESC, key, 8, val, (size_t) (p - val));
}

static int
s_esc_decode (uint64_t seq, const MDB_val *val, sgmq_store_escalation_t *e)
{
    s_rd_t r = { val->mv_data, val->mv_size, false };
    memset (e, 0, sizeof *e);
    bool version_ok = s_rd_u8 (&r) == S_REC_VERSION;
    uint8_t status = s_rd_u8 (&r);
    e->seq = seq;
    e->status = (sgmq_store_esc_status_t) status;
    e->overdue = s_rd_u32 (&r);
    uint64_t *times [] = { &e->raised, &e->ack_by, &e->respond_by,
                           &e->acked_at, &e->responded_at, &e->response_seq,
                           &e->last_reminder };
    for (size_t i = 0; i < sizeof times / sizeof times [0]; i++)
        *times [i] = s_rd_u64 (&r);
    e->reminders = s_rd_u32 (&r);
    size_t glen, alen;
    const uint8_t *g = s_rd_str (&r, 0, SGMQ_STORE_MAX_NAME, &glen);
    const uint8_t *a = s_rd_str (&r, 0, SGMQ_STORE_MAX_NAME, &alen);
    if (!version_ok || r.bad || r.left != 0
    ||  status < SGMQ_STORE_ESC_RAISED || status > SGMQ_STORE_ESC_RESPONDED)
        return SGMQ_STORE_E_CORRUPT;
    s_copy_name (e->group, g, glen);
    s_copy_name (e->acked_by, a, alen);
    return 0;
}

int
sgmq_store_escalation_get (sgmq_store_txn_t *txn, uint64_t seq,
                           sgmq_store_escalation_t *e)
{
    assert (txn && e);
    MDB_val val;
    int rc = s_usable (txn);
    if (!rc)
        rc = s_seq_record (txn, S_DB_ESC, &seq, true, &val);
    return rc ? rc : s_esc_decode (seq, &val, e);
}

int
sgmq_store_escalation_next (sgmq_store_txn_t *txn, uint64_t after,
                            sgmq_store_escalation_t *e)
{
    assert (txn && e);
    MDB_val val;
    int rc = s_usable (txn);
    if (!rc)
        rc = s_seq_record (txn, S_DB_ESC, &after, false, &val);
    return rc ? rc : s_esc_decode (after, &val, e);
}

int
sgmq_store_learning_put (sgmq_store_txn_t *txn,
                         const sgmq_store_learning_t *l)
{
    assert (txn && l);
    int rc = s_writable (txn);
    if (rc)
        return rc;
    uint8_t val [S_LEARN_SIZE];
    uint8_t *p = val;
    *p++ = S_REC_VERSION;
    const uint64_t times [] = { l->session_by, l->reflection_by,
                                l->session_held, l->reflection_held,
                                l->session_update, l->reflection_update };
    for (size_t i = 0; i < sizeof times / sizeof times [0]; i++, p += 8)
        s_be64 (p, times [i]);
    s_be32 (p, l->reminders);
    uint8_t key [8];
    s_be64 (key, l->seq);
    return s_put_mostly_last (txn, S_DB_LEARN, key, 8, val, sizeof val);
}

static int
s_learn_decode (uint64_t seq, const MDB_val *val, sgmq_store_learning_t *l)
{
    const uint8_t *p = val->mv_data;
    if (val->mv_size != S_LEARN_SIZE || p [0] != S_REC_VERSION)
        return SGMQ_STORE_E_CORRUPT;
    l->seq = seq;
    p++;
    uint64_t *times [] = { &l->session_by, &l->reflection_by,
                           &l->session_held, &l->reflection_held,
                           &l->session_update, &l->reflection_update };
    for (size_t i = 0; i < sizeof times / sizeof times [0]; i++, p += 8)
        *times [i] = s_ld64 (p);
    l->reminders = s_ld32 (p);
    return 0;
}

int
sgmq_store_learning_get (sgmq_store_txn_t *txn, uint64_t seq,
                         sgmq_store_learning_t *l)
{
    assert (txn && l);
    MDB_val val;
    int rc = s_usable (txn);
    if (!rc)
        rc = s_seq_record (txn, S_DB_LEARN, &seq, true, &val);
    return rc ? rc : s_learn_decode (seq, &val, l);
}

int
sgmq_store_learning_next (sgmq_store_txn_t *txn, uint64_t after,
                          sgmq_store_learning_t *l)
{
    assert (txn && l);
    MDB_val val;
    int rc = s_usable (txn);
    if (!rc)
        rc = s_seq_record (txn, S_DB_LEARN, &after, false, &val);
    return rc ? rc : s_learn_decode (after, &val, l);
}

//  --------------------------------------------------------------------------
//  Timers

static void
s_tkey (uint8_t *key, uint64_t seq, uint32_t what)
{
    s_be64 (key, seq);
    s_be32 (key + 8, what);
}

static void
s_tdue (uint8_t *key, uint64_t due, uint64_t seq, uint32_t what)
{
    s_be64 (key, due);
    s_tkey (key + 8, seq, what);
}

//  The due time of timer (seq, what): 0 found, NOT_FOUND, or an error.
static int
s_timer_due (sgmq_store_txn_t *txn, const uint8_t *tkey, uint64_t *due)
{
    MDB_val val;
    int rc = s_get (txn, S_DB_TKEY, tkey, S_TKEY_SIZE, &val);
    if (!rc && val.mv_size != 8)
        rc = SGMQ_STORE_E_CORRUPT;
    if (!rc)
        *due = s_ld64 (val.mv_data);
    return rc;
}

int
sgmq_store_timer_set (sgmq_store_txn_t *txn, uint64_t seq, uint32_t what,
                      uint64_t due)
{
    assert (txn);
    int rc = s_writable (txn);
    if (rc)
        return rc;
    uint8_t tkey [S_TKEY_SIZE], tdue [S_TDUE_SIZE], due_be [8];
    s_tkey (tkey, seq, what);
    s_be64 (due_be, due);
    s_tdue (tdue, due, seq, what);
    //  The common case: the first timer of the newest message. Its key
    //  sorts after every other, so an append succeeds exactly when there is
    //  no timer to move, and saves looking for one.
    MDB_val k = s_val (tkey, sizeof tkey), v = s_val (due_be, sizeof due_be);
    rc = mdb_put (txn->txn, txn->store->dbi [S_DB_TKEY], &k, &v, MDB_APPEND);
    if (rc == 0)
        return s_put (txn, S_DB_TDUE, tdue, sizeof tdue, NULL, 0, 0);
    if (rc != MDB_KEYEXIST)
        return s_fatal (txn, rc);
    uint64_t old;
    rc = s_timer_due (txn, tkey, &old);
    if (rc == 0 && old == due)
        return 0;
    if (rc == 0) {
        s_tdue (tdue, old, seq, what);
        rc = s_del (txn, S_DB_TDUE, tdue, sizeof tdue);
        if (rc == SGMQ_STORE_E_NOT_FOUND)
            rc = 0;                     //  index lost it; rewrite below
    }
    else
    if (rc == SGMQ_STORE_E_NOT_FOUND)
        rc = 0;
    if (rc)
        return rc;
    s_tdue (tdue, due, seq, what);
    rc = s_put (txn, S_DB_TDUE, tdue, sizeof tdue, NULL, 0, 0);
    if (!rc)
        rc = s_put (txn, S_DB_TKEY, tkey, sizeof tkey, due_be, 8, 0);
    return rc ? s_fatal (txn, rc) : 0;
}

int
sgmq_store_timer_cancel (sgmq_store_txn_t *txn, uint64_t seq, uint32_t what)
{
    assert (txn);
    int rc = s_writable (txn);
    if (rc)
        return rc;
    uint8_t tkey [S_TKEY_SIZE], tdue [S_TDUE_SIZE];
    s_tkey (tkey, seq, what);
    uint64_t due;
    rc = s_timer_due (txn, tkey, &due);
    if (rc)
        return rc;
    s_tdue (tdue, due, seq, what);
    rc = s_del (txn, S_DB_TDUE, tdue, sizeof tdue);
    if (rc == SGMQ_STORE_E_NOT_FOUND)
        rc = 0;
    if (!rc)
        rc = s_del (txn, S_DB_TKEY, tkey, sizeof tkey);
    return rc ? s_fatal (txn, rc) : 0;
}

int
sgmq_store_timer_first (sgmq_store_txn_t *txn, uint64_t until,
                        sgmq_store_timer_t *out)
{
    assert (txn && out);
    int rc = s_usable (txn);
    if (rc)
        return rc;
    MDB_cursor *cursor;
    rc = s_cursor (txn, S_DB_TDUE, &cursor);
    if (rc)
        return rc;
    MDB_val key, val;
    rc = s_cursor_get (txn, cursor, &key, &val, MDB_FIRST);
    if (!rc && key.mv_size != S_TDUE_SIZE)
        rc = SGMQ_STORE_E_CORRUPT;
    if (!rc) {
        const uint8_t *p = key.mv_data;
        out->due = s_ld64 (p);
        out->seq = s_ld64 (p + 8);
        out->what = s_ld32 (p + 16);
        if (until && out->due > until)
            rc = SGMQ_STORE_E_NOT_FOUND;
    }
    mdb_cursor_close (cursor);
    return rc;
}

int
sgmq_store_timer_get (sgmq_store_txn_t *txn, uint64_t seq, uint32_t what,
                      sgmq_store_timer_t *out)
{
    assert (txn && out);
    int rc = s_usable (txn);
    if (rc)
        return rc;
    uint8_t tkey [S_TKEY_SIZE];
    s_tkey (tkey, seq, what);
    rc = s_timer_due (txn, tkey, &out->due);
    if (!rc) {
        out->seq = seq;
        out->what = what;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Checkpoints

static int
s_ckpt_fn (sgmq_store_txn_t *txn, void *arg)
{
    (void) arg;
    uint64_t last;
    int rc = s_ckpt_last (txn, &last);
    if (!rc && txn->head_seq > last)
        rc = s_ckpt_put (txn);
    return rc;
}

int
sgmq_store_reader_check (sgmq_store_t *self, int *cleared)
{
    assert (self && cleared);
    *cleared = 0;
    return self->env ? mdb_reader_check (self->env, cleared) : 0;
}

int
sgmq_store_checkpoint (sgmq_store_t *self)
{
    assert (self);
    if (!self->can_sign)
        return SGMQ_STORE_E_INVALID;
    return sgmq_store_write (self, s_ckpt_fn, NULL);
}

static int
s_ckpt_decode (const MDB_val *key, const MDB_val *val,
               sgmq_store_checkpoint_t *out)
{
    const uint8_t *p = val->mv_data;
    if (key->mv_size != 8 || val->mv_size != S_CKPT_SIZE
    ||  p [0] != S_REC_VERSION)
        return SGMQ_STORE_E_CORRUPT;
    out->seq = s_ld64 (key->mv_data);
    out->time = s_ld64 (p + 1);
    memcpy (out->hash, p + 9, S_HASH);
    memcpy (out->signature, p + 9 + S_HASH, SGMQ_STORE_SIG_SIZE);
    return 0;
}

int
sgmq_store_checkpoint_get (sgmq_store_txn_t *txn, uint64_t at_or_before,
                           sgmq_store_checkpoint_t *out)
{
    assert (txn && out);
    int rc = s_usable (txn);
    if (rc)
        return rc;
    MDB_cursor *cursor;
    rc = s_cursor (txn, S_DB_CKPT, &cursor);
    if (rc)
        return rc;
    MDB_val key, val;
    if (at_or_before == 0 || at_or_before == UINT64_MAX)
        rc = s_cursor_get (txn, cursor, &key, &val, MDB_LAST);
    else {
        uint8_t k [8];
        s_be64 (k, at_or_before + 1);
        key = s_val (k, 8);
        rc = s_cursor_get (txn, cursor, &key, &val, MDB_SET_RANGE);
        rc = s_cursor_get (txn, cursor, &key, &val,
                           rc == 0 ? MDB_PREV : MDB_LAST);
    }
    if (!rc)
        rc = s_ckpt_decode (&key, &val, out);
    mdb_cursor_close (cursor);
    return rc;
}

//  --------------------------------------------------------------------------
//  Verification

static void __attribute__ ((format (printf, 2, 3)))
s_report (sgmq_store_verify_t *report, const char *format, ...)
{
    if (report->reason [0])
        return;                         //  keep the first
    va_list args;
    va_start (args, format);
    vsnprintf (report->reason, sizeof report->reason, format, args);
    va_end (args);
}

//  A chain ends where its head record in meta says: its last record is
//  next - 1 and hashes to prev. Otherwise *bad is the first event in doubt.
static int
s_verify_head (sgmq_store_txn_t *txn, sgmq_store_verify_t *report,
               const char *head_name, uint64_t next, const uint8_t *prev,
               uint64_t *bad, const char *event, const char *chain)
{
    uint64_t head, head_time;
    uint8_t head_hash [S_HASH];
    int rc = s_head_load (txn, head_name, &head, &head_time, head_hash);
    if (rc == SGMQ_STORE_E_CORRUPT) {
        *bad = next;
        s_report (report, "the %s head record is missing or damaged", chain);
        return 0;
    }
    if (rc)
        return rc;
    if (head > next - 1) {
        *bad = next;
        s_report (report, "%s %llu is missing (the head is %llu)", event,
                  (unsigned long long) next, (unsigned long long) head);
    }
    else
    if (head < next - 1) {
        *bad = head + 1;
        s_report (report, "%s %llu lies beyond the recorded head", event,
                  (unsigned long long) head + 1);
    }
    else
    if (sodium_memcmp (head_hash, prev, S_HASH) != 0) {
        *bad = head;
        s_report (report, "%s %llu: hash differs from the recorded %s head",
                  event, (unsigned long long) head, chain);
    }
    return 0;
}

//  Walk the message chain; sets bad_seq at the first break.
static int
s_verify_messages (sgmq_store_txn_t *txn, sgmq_store_verify_t *report,
                   uint64_t *last_good)
{
    MDB_cursor *cursor;
    int rc = s_cursor (txn, S_DB_MSGS, &cursor);
    if (rc)
        return rc;
    uint8_t prev [S_HASH] = { 0 };
    uint64_t expect = 1, prev_time = 0;
    MDB_val key, val;
    for (rc = s_cursor_get (txn, cursor, &key, &val, MDB_FIRST);
         rc == 0 && !report->bad_seq;
         rc = s_cursor_get (txn, cursor, &key, &val, MDB_NEXT)) {
        uint64_t seq = key.mv_size == 8 ? s_ld64 (key.mv_data) : 0;
        if (seq != expect) {
            report->bad_seq = expect;
            s_report (report, "message %llu is missing",
                      (unsigned long long) expect);
            break;
        }
        s_msg_t m;
        const uint8_t *body;
        size_t body_size;
        uint8_t hash [S_HASH];
        rc = s_msg_parse (&val, &m);
        if (!rc)
            rc = s_msg_body (txn, seq, &m, &body, &body_size);
        if (rc == ENOMEM)
            break;
        report->bad_seq = seq;
        if (rc == SGMQ_STORE_E_KEY)
            s_report (report, "message %llu: sealed under storage key id "
                      "%u, which this store was not given",
                      (unsigned long long) seq, m.key_id);
        else
        if (rc)
            s_report (report, "message %llu: record is malformed or its "
                      "body does not open", (unsigned long long) seq);
        else
        if (sodium_memcmp (m.prev, prev, S_HASH) != 0)
            s_report (report, "message %llu: previous hash does not match "
                      "message %llu", (unsigned long long) seq,
                      (unsigned long long) seq - 1);
        else
        if (m.time < prev_time)
            s_report (report, "message %llu: time goes backwards",
                      (unsigned long long) seq);
        else {
            s_msg_hash (prev, seq, m.time, m.canon, m.canon_size, body,
                        body_size, hash);
            if (sodium_memcmp (hash, m.hash, S_HASH) != 0)
                s_report (report, "message %llu: hash does not match its "
                          "content", (unsigned long long) seq);
            else {
                report->bad_seq = 0;
                memcpy (prev, hash, S_HASH);
                prev_time = m.time;
                report->messages++;
                expect++;
            }
        }
        rc = 0;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != SGMQ_STORE_E_NOT_FOUND)
        return rc;
    *last_good = expect - 1;
    if (report->bad_seq)
        return 0;
    return s_verify_head (txn, report, s_meta_head, expect, prev,
                          &report->bad_seq, "message", "chain");
}

//  The acked record of (recipient, seq): 0 if it is ack event `event`, at
//  `time`, with `key`; SGMQ_STORE_E_CORRUPT if not (or missing); or an
//  error.
static int
s_verify_ackd (sgmq_store_txn_t *txn, uint64_t event, uint64_t seq, uint64_t time,
               const uint8_t *recipient, size_t rn, const uint8_t *key, size_t kn)
{
    char name [SGMQ_STORE_MAX_NAME + 1], stored_key [SGMQ_STORE_MAX_NAME + 1];
    s_copy_name (name, recipient, rn);
    uint8_t dkey [S_DKEY_MAX];
    size_t dsize = s_dkey (dkey, name, rn, seq);
    MDB_val val;
    int rc = s_get (txn, S_DB_ACKD, dkey, dsize, &val);
    if (rc == SGMQ_STORE_E_NOT_FOUND)
        return SGMQ_STORE_E_CORRUPT;
    sgmq_store_delivery_t d;
    uint64_t ackd_event = 0;
    if (!rc)
        rc = s_ackd_decode (stored_key, &val, &d, &ackd_event);
    if (rc)
        return rc;
    bool same = ackd_event == event && d.acked_at == time
             && strlen (stored_key) == kn && memcmp (stored_key, key, kn) == 0;
    return same ? 0 : SGMQ_STORE_E_CORRUPT;
}

static int
s_verify_acks (sgmq_store_txn_t *txn, sgmq_store_verify_t *report,
               uint64_t msg_head)
{
    MDB_cursor *cursor;
    int rc = s_cursor (txn, S_DB_ACKLOG, &cursor);
    if (rc)
        return rc;
    uint8_t prev [S_HASH] = { 0 };
    uint64_t expect = 1;
    MDB_val key, val;
    for (rc = s_cursor_get (txn, cursor, &key, &val, MDB_FIRST);
         rc == 0;
         rc = s_cursor_get (txn, cursor, &key, &val, MDB_NEXT)) {
        uint64_t event = key.mv_size == 8 ? s_ld64 (key.mv_data) : 0;
        if (event != expect) {
            report->bad_ack = expect;
            s_report (report, "ack event %llu is missing",
                      (unsigned long long) expect);
            break;
        }
        s_rd_t r = { val.mv_data, val.mv_size, false };
        size_t rn, kn;
        bool version_ok = s_rd_u8 (&r) == S_REC_VERSION;
        uint64_t seq = s_rd_u64 (&r), time = s_rd_u64 (&r);
        const uint8_t *stored = s_rd_bytes (&r, S_HASH);
        const uint8_t *names = r.p;
        const uint8_t *recipient = s_rd_str (&r, 1, SGMQ_STORE_MAX_NAME, &rn);
        const uint8_t *ack_key = s_rd_str (&r, 0, SGMQ_STORE_MAX_NAME, &kn);
        uint8_t hash [S_HASH];
        if (!version_ok || r.bad || r.left != 0) {
            report->bad_ack = event;
            s_report (report, "ack event %llu: record is malformed",
                      (unsigned long long) event);
            break;
        }
        s_ack_hash (prev, event, seq, time, names, (size_t) (r.p - names),
                    hash);
        if (sodium_memcmp (hash, stored, S_HASH) != 0) {
            report->bad_ack = event;
            s_report (report, "ack event %llu: hash does not match its "
                      "content", (unsigned long long) event);
            break;
        }
        if (seq == 0 || seq > msg_head) {
            report->bad_ack = event;
            s_report (report, "ack event %llu acknowledges message %llu, "
                      "which does not exist", (unsigned long long) event,
                      (unsigned long long) seq);
            break;
        }
        //  The delivery's acked record must say what the event says (what
        //  REPLAY and PENDING show comes from it).
        rc = s_verify_ackd (txn, event, seq, time, recipient, rn, ack_key, kn);
        if (rc == SGMQ_STORE_E_CORRUPT) {
            report->bad_ack = event;
            s_report (report, "ack event %llu: the acknowledgement of message "
                      "%llu it records is not stored as it says",
                      (unsigned long long) event, (unsigned long long) seq);
            rc = 0;
            break;
        }
        if (rc)
            break;
        memcpy (prev, hash, S_HASH);
        report->acks++;
        expect++;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != SGMQ_STORE_E_NOT_FOUND)
        return rc;
    if (report->bad_ack)
        return 0;
    //  Each event matched its own acked record (one per recipient and seq):
    //  any record more is an acknowledgement no event records.
    MDB_stat st;
    rc = mdb_stat (txn->txn, txn->store->dbi [S_DB_ACKD], &st);
    if (rc)
        return s_fatal (txn, rc);
    if (st.ms_entries != report->acks) {
        report->bad_ack = expect;
        s_report (report, "%llu acknowledgements are stored but the ack chain "
                  "records %llu", (unsigned long long) st.ms_entries,
                  (unsigned long long) report->acks);
        return 0;
    }
    return s_verify_head (txn, report, s_meta_ackhead, expect, prev,
                          &report->bad_ack, "ack event", "ack chain");
}

static int
s_verify_checkpoints (sgmq_store_txn_t *txn, sgmq_store_verify_t *report,
                      const uint8_t *signing_pk, uint64_t last_good)
{
    MDB_cursor *cursor;
    int rc = s_cursor (txn, S_DB_CKPT, &cursor);
    if (rc)
        return rc;
    MDB_val key, val;
    for (rc = s_cursor_get (txn, cursor, &key, &val, MDB_FIRST);
         rc == 0 && !report->bad_checkpoint;
         rc = s_cursor_get (txn, cursor, &key, &val, MDB_NEXT)) {
        sgmq_store_checkpoint_t cp;
        uint8_t msg [SGMQ_STORE_CHECKPOINT_MSG_SIZE];
        if (s_ckpt_decode (&key, &val, &cp) != 0) {
            report->bad_checkpoint = key.mv_size == 8
                                   ? s_ld64 (key.mv_data) : UINT64_MAX;
            s_report (report, "a checkpoint record is malformed");
            break;
        }
        sgmq_store_checkpoint_message (&cp, msg);
        if (signing_pk && crypto_sign_verify_detached (
                cp.signature, msg, sizeof msg, signing_pk) != 0) {
            report->bad_checkpoint = cp.seq;
            s_report (report, "checkpoint at message %llu: the signature "
                      "does not verify", (unsigned long long) cp.seq);
            break;
        }
        if (cp.seq > last_good) {
            //  Past the verified chain: if the chain broke, that is already
            //  reported; if not, history was cut after it was signed.
            if (!report->bad_seq) {
                report->bad_checkpoint = cp.seq;
                s_report (report, "checkpoint signs message %llu, but the "
                          "chain ends at %llu", (unsigned long long) cp.seq,
                          (unsigned long long) last_good);
                break;
            }
        }
        else
        if (cp.seq > 0) {
            MDB_val mval;
            s_msg_t m;
            rc = s_msg_lookup (txn, cp.seq, &mval, &m);
            if (rc)
                break;
            if (sodium_memcmp (m.hash, cp.hash, S_HASH) != 0) {
                report->bad_checkpoint = cp.seq;
                s_report (report, "checkpoint at message %llu: the chain "
                          "there has another hash (history rewritten)",
                          (unsigned long long) cp.seq);
                break;
            }
        }
        report->checkpoints++;
    }
    mdb_cursor_close (cursor);
    return rc == SGMQ_STORE_E_NOT_FOUND ? 0 : rc;
}

int
sgmq_store_verify (sgmq_store_t *self, const uint8_t *signing_pk,
                   sgmq_store_verify_t *report)
{
    assert (self && report);
    memset (report, 0, sizeof *report);
    int rc;
    //  One snapshot for the whole walk, so the chains are consistent.
    sgmq_store_txn_t *txn = sgmq_store_read (self, &rc);
    if (!txn)
        return rc;
    uint64_t last_good = 0;
    rc = s_verify_messages (txn, report, &last_good);
    //  Acks may name any message the chain holds; past a break we cannot
    //  tell, and the break is reported already.
    if (!rc)
        rc = s_verify_acks (txn, report,
                            report->bad_seq ? UINT64_MAX : last_good);
    if (!rc)
        rc = s_verify_checkpoints (txn, report, signing_pk, last_good);
    sgmq_store_read_end (&txn);
    if (rc)
        return rc;
    return report->bad_seq || report->bad_ack || report->bad_checkpoint
         ? SGMQ_STORE_E_CORRUPT : 0;
}

//  --------------------------------------------------------------------------
//  Backup

static int
s_fsync_path (const char *path, int flags)
{
    int fd = open (path, flags);
    if (fd < 0)
        return errno;
    int rc = fsync (fd) == 0 ? 0 : errno;
    close (fd);
    return rc;
}

//  0 if `dir` is an empty directory, SGMQ_STORE_E_INVALID if it holds
//  anything, or the errno of opening it.
static int
s_dir_empty (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d)
        return errno;
    struct dirent *entry;
    bool empty = true;
    while ((entry = readdir (d)))
        if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, ".."))
            empty = false;
    closedir (d);
    return empty ? 0 : SGMQ_STORE_E_INVALID;
}

//  Copy `env` (one consistent snapshot), compacted, into the empty
//  directory `dest`, then make the copy owner-only and durable. A failed
//  copy leaves `dest` empty, so it can be tried again. 0,
//  SGMQ_STORE_E_INVALID when `dest` is not empty, an errno or an MDB_*
//  code.
static int
s_copy_env (MDB_env *env, const char *dest)
{
    int rc = s_dir_empty (dest);
    if (rc)
        return rc;
    char *path = malloc (strlen (dest) + sizeof "/data.mdb");
    if (!path)
        return ENOMEM;
    sprintf (path, "%s/data.mdb", dest);
    //  Made here, owner-only from the start (mdb_env_copy2 would make it
    //  0666 & umask: readable by others until a chmod), and removed on any
    //  failure, so that a failed copy leaves `dest` empty.
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, S_FILE_MODE);
    if (fd < 0) {
        rc = errno;
        goto out_free_path;
    }
    rc = mdb_env_copyfd2 (env, fd, MDB_CP_COMPACT);
    if (!rc && fsync (fd) != 0)
        rc = errno;
    if (close (fd) != 0 && !rc)
        rc = errno;
    if (!rc)
        rc = s_fsync_path (dest, O_RDONLY | O_DIRECTORY);
    if (rc)
        unlink (path);
out_free_path:
    free (path);
    return rc;
}

int
sgmq_store_backup (sgmq_store_t *self, const char *dir)
{
    assert (self && dir);
    if (self->broken)
        return SGMQ_STORE_E_BROKEN;
    return s_map_error (self, s_copy_env (self->env, dir));
}

//  sgmq_store_copy's check before copying: an sgmq store of this format.
//  Adopts a map another process grew meanwhile (MDB_MAP_RESIZED: none of
//  our transactions is open, so the map may move).
static int
s_copy_check (MDB_env *env, const char *dir, char *why, size_t why_size)
{
    MDB_txn *txn = NULL;
    int rc = 0;
    for (int tries = 0; ; tries++) {
        rc = mdb_txn_begin (env, NULL, MDB_RDONLY, &txn);
        if (rc != MDB_MAP_RESIZED || tries == S_BEGIN_RETRIES)
            break;
        rc = mdb_env_set_mapsize (env, 0);
        if (rc)
            break;
    }
    if (rc) {
        s_why (why, why_size, "%s: cannot start a read transaction: %s", dir,
               mdb_strerror (rc));
        return rc;
    }
    MDB_dbi meta;
    rc = mdb_dbi_open (txn, s_dbs [S_DB_META].name, 0, &meta);
    if (rc == MDB_NOTFOUND) {
        s_why (why, why_size, "%s: an LMDB environment, but not an sgmq "
               "store (it has no meta database)", dir);
        rc = SGMQ_STORE_E_CORRUPT;
    }
    else
    if (!rc) {
        rc = s_format_check (txn, meta, dir, why, why_size, NULL);
        if (rc && rc != SGMQ_STORE_E_CORRUPT && rc != SGMQ_STORE_E_VERSION)
            s_why (why, why_size, "%s: cannot read the store's meta data: "
                   "%s", dir, mdb_strerror (rc));
    }
    else
        s_why (why, why_size, "%s: cannot read the store's meta data: %s",
               dir, mdb_strerror (rc));
    mdb_txn_abort (txn);
    return rc;
}

int
sgmq_store_copy (const char *dir, const char *dest, char *why,
                 size_t why_size)
{
    if (why && why_size)
        why [0] = 0;
    if (!dir || !dest) {
        s_why (why, why_size, "%s: no directory to copy %s",
               dir ? dir : "(no directory)", dir ? "to" : "from");
        return SGMQ_STORE_E_INVALID;
    }
    //  The destination first: a mistake there is the likelier one.
    int rc = s_dir_empty (dest);
    if (rc == SGMQ_STORE_E_INVALID) {
        s_why (why, why_size, "%s: not an empty directory (a backup goes "
               "into a new one)", dest);
        return rc;
    }
    if (rc) {
        s_why (why, why_size, "%s: cannot copy the store into it: %s", dest,
               strerror (rc));
        return rc;
    }
    char *data_path = malloc (strlen (dir) + sizeof "/data.mdb");
    if (!data_path) {
        s_why (why, why_size, "%s: out of memory", dir);
        return ENOMEM;
    }
    sprintf (data_path, "%s/data.mdb", dir);
    MDB_env *env = NULL;
    struct stat st;
    //  Read-only, LMDB would fail on a missing file with a bare ENOENT and
    //  take an empty one for a new store; say what is wrong instead.
    if (stat (data_path, &st) != 0) {
        rc = errno;
        s_why (why, why_size, "%s: no store here: %s", data_path,
               strerror (rc));
        goto out_free_path;
    }
    if (st.st_size == 0) {
        s_why (why, why_size, "%s: empty file (a store is never empty)",
               data_path);
        rc = SGMQ_STORE_E_CORRUPT;
        goto out_free_path;
    }
    rc = mdb_env_create (&env);
    if (rc) {
        s_why (why, why_size, "%s: cannot create an LMDB environment: %s",
               dir, mdb_strerror (rc));
        env = NULL;
        goto out_free_path;
    }
    rc = mdb_env_set_maxdbs (env, S_MAX_DBS);
    if (rc) {
        s_why (why, why_size, "%s: cannot configure LMDB: %s", dir,
               mdb_strerror (rc));
        goto out_close_env;
    }
    //  MDB_RDONLY: the data file is opened read-only and never written;
    //  LMDB only takes a reader slot in lock.mdb, which is what keeps a
    //  running broker (another process) from reusing the snapshot's pages
    //  while we copy them. No mdb_reader_check: clearing other processes'
    //  slots is the broker's business. MDB_NOTLS as the store opens it.
    rc = mdb_env_open (env, dir, MDB_RDONLY | MDB_NOTLS, S_FILE_MODE);
    if (rc) {
        rc = s_env_open_error (rc, dir, data_path, why, why_size);
        goto out_close_env;
    }
    rc = s_env_check_size (env, data_path, why, why_size);
    if (!rc)
        rc = s_copy_check (env, dir, why, why_size);
    if (rc)
        goto out_close_env;
    for (int tries = 0; ; tries++) {
        rc = s_copy_env (env, dest);
        if (rc != MDB_MAP_RESIZED || tries == S_BEGIN_RETRIES)
            break;
        //  The broker grew the map since our check: adopt its size.
        rc = mdb_env_set_mapsize (env, 0);
        if (rc)
            break;
    }
    if (rc == SGMQ_STORE_E_INVALID)
        s_why (why, why_size, "%s: not an empty directory (a backup goes "
               "into a new one)", dest);
    else
    if (rc)
        s_why (why, why_size, "%s: cannot copy the store to %s: %s", dir,
               dest, rc == ENOSPC || rc == EDQUOT
                     ? "the disk is full" : mdb_strerror (rc));
    if (rc == ENOSPC || rc == EDQUOT)
        rc = SGMQ_STORE_E_FULL;
out_close_env:
    if (env)
        mdb_env_close (env);
out_free_path:
    free (data_path);
    return rc;
}
