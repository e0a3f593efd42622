/*  test_store - unit tests of sgmq_store: every public function, the
    on-disk guarantees (sealed bodies, chain, checkpoints, format and key
    checks) and the fault paths (map full, disk full, damaged files).

    Raw LMDB is used only to play the attacker (tamper with records) or a
    second process (stale readers), always with the store closed.
*/
#include "testutil.h"
#include "sgmq_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_OK(expr) do { \
    int rc_ = (expr); \
    if (rc_ != 0) \
        fail_msg ("%s -> %d (%s)", #expr, rc_, sgmq_store_strerror (rc_)); \
} while (0)

#define CHECK_RC(expr, want) do { \
    int rc_ = (expr); \
    if (rc_ != (want)) \
        fail_msg ("%s -> %d (%s), wanted %d (%s)", #expr, rc_, \
                  sgmq_store_strerror (rc_), (want), \
                  sgmq_store_strerror (want)); \
} while (0)

static uint8_t s_key [SGMQ_STORE_KEY_SIZE];
static uint8_t s_other_key [SGMQ_STORE_KEY_SIZE];
static uint8_t s_sign_pk [SGMQ_STORE_SIGN_PK_SIZE];
static uint8_t s_sign_sk [SGMQ_STORE_SIGN_SK_SIZE];
static uint8_t s_other_pk [SGMQ_STORE_SIGN_PK_SIZE];
static uint8_t s_other_sk [SGMQ_STORE_SIGN_SK_SIZE];

//  Deterministic PRNG so failures replay.
static uint64_t s_rand_state = 0x9E3779B97F4A7C15ull;
static uint64_t
s_rand (void)
{
    uint64_t x = s_rand_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return s_rand_state = x;
}

static uint32_t
s_rand_below (uint32_t n)
{
    return (uint32_t) (s_rand () % n);
}

//  --------------------------------------------------------------------------
//  Fixture

typedef struct {
    char *dir;
    sgmq_store_t *store;
    sgmq_store_options_t opts;
} fx_t;

static sgmq_store_options_t
s_opts (void)
{
    sgmq_store_options_t opts = {
        .storage_key = s_key, .key_id = 1, .signing_key = s_sign_sk,
    };
    return opts;
}

static sgmq_store_t *
s_open (const char *dir, const sgmq_store_options_t *opts)
{
    int rc;
    char why [512];
    sgmq_store_t *store = sgmq_store_open (dir, opts, &rc, why, sizeof why);
    if (!store)
        fail_msg ("open %s: %d %s: %s", dir, rc, sgmq_store_strerror (rc), why);
    return store;
}

static int
fx_setup (void **state)
{
    fx_t *fx = calloc (1, sizeof *fx);
    assert_non_null (fx);
    fx->dir = testutil_tmpdir ("store");
    assert_non_null (fx->dir);
    fx->opts = s_opts ();
    fx->store = s_open (fx->dir, &fx->opts);
    *state = fx;
    return 0;
}

static int
fx_teardown (void **state)
{
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);
    testutil_rmtree (fx->dir);
    free (fx->dir);
    free (fx);
    return 0;
}

static void
fx_reopen (fx_t *fx)
{
    sgmq_store_close (&fx->store);
    fx->store = s_open (fx->dir, &fx->opts);
}

//  --------------------------------------------------------------------------
//  Batches

typedef struct {
    const sgmq_store_msg_t *msgs;
    size_t count;
    sgmq_store_appended_t *out;
    int *rcs;                   //  per-append rc; NULL: stop at first error
    int runs;
    int ret;                    //  what fn returns after appending
} batch_t;

static int
s_batch_fn (sgmq_store_txn_t *txn, void *arg)
{
    batch_t *b = arg;
    b->runs++;
    for (size_t i = 0; i < b->count; i++) {
        int rc = sgmq_store_append (txn, &b->msgs [i], &b->out [i]);
        if (b->rcs)
            b->rcs [i] = rc;
        else
        if (rc)
            return rc;
    }
    return b->ret;
}

static int
s_append_batch (sgmq_store_t *store, const sgmq_store_msg_t *msgs,
                size_t count, sgmq_store_appended_t *out)
{
    batch_t b = { .msgs = msgs, .count = count, .out = out };
    return sgmq_store_write (store, s_batch_fn, &b);
}

static const char *s_groups1 [] = { "exec" };
static const char *s_rcpt3 [] = { "exec-children", "exec-health", "exec-police" };

static sgmq_store_msg_t
s_msg (const char *body)
{
    sgmq_store_msg_t msg = {
        .sender = "police", .sender_key = "Z85KEYpolice", .kind = "escalation",
        .groups = s_groups1, .group_count = 1,
        .recipients = s_rcpt3, .recipient_count = 3,
        .body = (const uint8_t *) body, .body_size = strlen (body),
    };
    return msg;
}

static uint64_t
s_append_one (sgmq_store_t *store, const sgmq_store_msg_t *msg)
{
    sgmq_store_appended_t out;
    CHECK_OK (s_append_batch (store, msg, 1, &out));
    return out.seq;
}

static uint64_t
s_head (sgmq_store_t *store)
{
    int rc;
    uint64_t seq = 0;
    sgmq_store_txn_t *txn = sgmq_store_read (store, &rc);
    assert_non_null (txn);
    CHECK_OK (sgmq_store_head (txn, &seq, NULL));
    sgmq_store_read_end (&txn);
    return seq;
}

static void
s_verify_ok (sgmq_store_t *store)
{
    sgmq_store_verify_t report;
    int rc = sgmq_store_verify (store, s_sign_pk, &report);
    if (rc)
        fail_msg ("verify: %s: %s", sgmq_store_strerror (rc), report.reason);
}

//  --------------------------------------------------------------------------
//  Independent implementations of the canonical bytes (PROTOCOL.md)

typedef struct {
    uint8_t *data;
    size_t size;
} bytes_t;

static void
s_add (bytes_t *b, const void *data, size_t size)
{
    b->data = realloc (b->data, b->size + size + 1);
    assert_non_null (b->data);
    if (size)
        memcpy (b->data + b->size, data, size);
    b->size += size;
}

static void
s_add_be (bytes_t *b, uint64_t v, int bytes)
{
    uint8_t buf [8];
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        buf [i] = (uint8_t) v;
    s_add (b, buf, (size_t) bytes);
}

static void
s_add_str16 (bytes_t *b, const char *s)
{
    s_add_be (b, strlen (s), 2);
    s_add (b, s, strlen (s));
}

static void
s_expect_msg_hash (const uint8_t *prev, uint64_t seq, uint64_t time,
                   const sgmq_store_msg_t *msg, uint8_t *out)
{
    bytes_t b = { 0 };
    s_add (&b, prev, 32);
    s_add (&b, "sgmq-msg-v1", 11);
    s_add_be (&b, seq, 8);
    s_add_be (&b, time, 8);
    s_add_str16 (&b, msg->sender);
    s_add_str16 (&b, msg->sender_key ? msg->sender_key : "");
    s_add_str16 (&b, msg->kind);
    s_add_be (&b, msg->group_count, 2);
    for (uint32_t i = 0; i < msg->group_count; i++)
        s_add_str16 (&b, msg->groups [i]);
    s_add_be (&b, msg->body_size, 4);
    s_add (&b, msg->body, msg->body_size);
    crypto_generichash (out, 32, b.data, b.size, NULL, 0);
    free (b.data);
}

static void
s_expect_ack_hash (const uint8_t *prev, uint64_t event, uint64_t seq,
                   uint64_t time, const char *recipient, const char *key,
                   uint8_t *out)
{
    bytes_t b = { 0 };
    s_add (&b, prev, 32);
    s_add (&b, "sgmq-ack-v1", 11);
    s_add_be (&b, event, 8);
    s_add_be (&b, seq, 8);
    s_add_be (&b, time, 8);
    s_add_str16 (&b, recipient);
    s_add_str16 (&b, key);
    crypto_generichash (out, 32, b.data, b.size, NULL, 0);
    free (b.data);
}

//  --------------------------------------------------------------------------
//  Raw LMDB, to play the attacker (store closed)

typedef struct {
    MDB_env *env;
    MDB_txn *txn;
} raw_t;

static void
s_raw_open (raw_t *raw, const char *dir)
{
    assert_int_equal (mdb_env_create (&raw->env), 0);
    assert_int_equal (mdb_env_set_maxdbs (raw->env, 32), 0);
    assert_int_equal (mdb_env_open (raw->env, dir, 0, 0600), 0);
    assert_int_equal (mdb_txn_begin (raw->env, NULL, 0, &raw->txn), 0);
}

static MDB_dbi
s_raw_dbi (raw_t *raw, const char *name)
{
    MDB_dbi dbi;
    assert_int_equal (mdb_dbi_open (raw->txn, name, 0, &dbi), 0);
    return dbi;
}

static void
s_raw_close (raw_t *raw)
{
    assert_int_equal (mdb_txn_commit (raw->txn), 0);
    mdb_env_close (raw->env);
}

static void
s_seq_key (uint8_t *k, uint64_t seq)
{
    for (int i = 7; i >= 0; i--, seq >>= 8)
        k [i] = (uint8_t) seq;
}

//  Rewrite the record under `key` in database `db`: `edit` changes a copy
//  of its bytes in place (`seq`: the message's, for edits that need it).
typedef void (s_edit_fn) (uint8_t *rec, size_t size, uint64_t seq, const void *arg);

static void
s_raw_edit_key (const char *dir, const char *db, const void *key_data,
                size_t key_size, uint64_t seq, s_edit_fn *edit, const void *arg)
{
    raw_t raw;
    s_raw_open (&raw, dir);
    MDB_dbi dbi = s_raw_dbi (&raw, db);
    MDB_val key = { key_size, (void *) key_data }, val;
    assert_int_equal (mdb_get (raw.txn, dbi, &key, &val), 0);
    uint8_t *copy = malloc (val.mv_size);
    memcpy (copy, val.mv_data, val.mv_size);
    edit (copy, val.mv_size, seq, arg);
    MDB_val nval = { val.mv_size, copy };
    assert_int_equal (mdb_put (raw.txn, dbi, &key, &nval, 0), 0);
    free (copy);
    s_raw_close (&raw);
}

//  The same for record `seq` of a database keyed by seq.
static void
s_raw_edit (const char *dir, const char *db, uint64_t seq, s_edit_fn *edit,
            const void *arg)
{
    uint8_t k [8];
    s_seq_key (k, seq);
    s_raw_edit_key (dir, db, k, sizeof k, seq, edit, arg);
}

static void
s_flip_at (uint8_t *rec, size_t size, uint64_t seq, const void *arg)
{
    (void) seq;
    long offset = *(const long *) arg;
    size_t at = offset >= 0 ? (size_t) offset : size - (size_t) -offset;
    assert_true (at < size);
    rec [at] ^= 0x01;
}

//  Flip one byte of a stored record at `offset` (from the end when
//  negative).
static void
s_raw_flip (const char *dir, const char *db, uint64_t seq, long offset)
{
    s_raw_edit (dir, db, seq, s_flip_at, &offset);
}

static void
s_raw_delete (const char *dir, const char *db, uint64_t seq)
{
    raw_t raw;
    s_raw_open (&raw, dir);
    MDB_dbi dbi = s_raw_dbi (&raw, db);
    uint8_t k [8];
    s_seq_key (k, seq);
    MDB_val key = { 8, k };
    assert_int_equal (mdb_del (raw.txn, dbi, &key, NULL), 0);
    s_raw_close (&raw);
}

static void
s_copy_dir (const char *from, const char *to)
{
    char src [4096], dst [4096];
    snprintf (src, sizeof src, "%s/data.mdb", from);
    snprintf (dst, sizeof dst, "%s/data.mdb", to);
    size_t size;
    char *data = testutil_read_file (src, &size);
    assert_non_null (data);
    assert_int_equal (testutil_write_file (dst, data, size), 0);
    free (data);
}

//  --------------------------------------------------------------------------
//  Status codes and arguments

static void
test_strerror (void **state)
{
    (void) state;
    for (int rc = SGMQ_STORE_E_BUSY; rc <= SGMQ_STORE_OK; rc++) {
        if (rc < SGMQ_STORE_E_BUSY || (rc < 0 && rc > SGMQ_STORE_E_NOT_FOUND))
            continue;
        const char *text = sgmq_store_strerror (rc);
        assert_non_null (text);
        assert_true (strlen (text) > 3);
    }
    assert_non_null (strstr (sgmq_store_strerror (ENOSPC), "space"));
    assert_non_null (sgmq_store_strerror (MDB_MAP_FULL));
    assert_non_null (sgmq_store_strerror (-12345678));
}

static void
test_open_errors (void **state)
{
    (void) state;
    int rc;
    char why [256];
    sgmq_store_options_t opts = s_opts ();
    //  missing directory
    assert_null (sgmq_store_open ("/nonexistent/sgmq/store", &opts, &rc, why,
                                  sizeof why));
    assert_int_equal (rc, ENOENT);
    assert_non_null (strstr (why, "/nonexistent/sgmq/store"));
    //  no key
    opts.storage_key = NULL;
    assert_null (sgmq_store_open ("/tmp", &opts, &rc, why, sizeof why));
    assert_int_equal (rc, SGMQ_STORE_E_INVALID);
    //  bad signing key (public half does not match the seed)
    char *dir = testutil_tmpdir ("store-badsk");
    uint8_t bad [SGMQ_STORE_SIGN_SK_SIZE];
    memcpy (bad, s_sign_sk, sizeof bad);
    bad [40] ^= 1;
    opts = s_opts ();
    opts.signing_key = bad;
    assert_null (sgmq_store_open (dir, &opts, &rc, why, sizeof why));
    assert_int_equal (rc, SGMQ_STORE_E_KEY);
    assert_non_null (strstr (why, "signing key"));
    //  map size above its cap
    opts = s_opts ();
    opts.map_size = 1 << 20;
    opts.map_size_max = 1 << 19;
    assert_null (sgmq_store_open (dir, &opts, &rc, why, sizeof why));
    assert_int_equal (rc, SGMQ_STORE_E_INVALID);
    testutil_rmtree (dir);
    free (dir);
}

static int
s_invalid_fn (sgmq_store_txn_t *txn, void *arg)
{
    (void) arg;
    sgmq_store_appended_t out;
    char long_name [SGMQ_STORE_MAX_NAME + 2];
    memset (long_name, 'x', sizeof long_name - 1);
    long_name [sizeof long_name - 1] = 0;
    char long_kind [SGMQ_STORE_MAX_KIND + 2];
    memset (long_kind, 'k', sizeof long_kind - 1);
    long_kind [sizeof long_kind - 1] = 0;
    const char *dup_groups [] = { "exec", "panel", "exec" };
    const char *dup_few [] = { "a", "b", "a" };
    const char *dup_many [20];
    char names [20][8];
    for (int i = 0; i < 20; i++) {
        snprintf (names [i], sizeof names [i], "r%d", i % 19);
        dup_many [i] = names [i];
    }
    const char *bad_group [] = { "" };
    sgmq_store_msg_t m;

    m = s_msg ("x"); m.sender = long_name;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.sender = "";
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.kind = long_kind;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.kind = "";
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.group_count = 0;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.group_count = SGMQ_STORE_MAX_GROUPS + 1;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.groups = bad_group;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.groups = dup_groups; m.group_count = 3;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.recipients = dup_few; m.recipient_count = 3;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.recipients = dup_many; m.recipient_count = 20;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.body_size = SGMQ_STORE_MAX_BODY + 1;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.ref = "";
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    m = s_msg ("x"); m.sender_key = long_name;
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_INVALID);
    //  none of that wrote anything, and the txn is still good
    uint64_t head;
    CHECK_OK (sgmq_store_head (txn, &head, NULL));
    assert_int_equal (head, 0);
    //  other functions' arguments
    sgmq_store_acked_t acked;
    CHECK_RC (sgmq_store_ack (txn, long_name, "k", 1, &acked),
              SGMQ_STORE_E_INVALID);
    CHECK_RC (sgmq_store_delivered (txn, "", 1, false, NULL),
              SGMQ_STORE_E_INVALID);
    sgmq_store_escalation_t e = { .seq = 1, .status = 0 };
    CHECK_RC (sgmq_store_escalation_put (txn, &e), SGMQ_STORE_E_INVALID);
    e.status = SGMQ_STORE_ESC_RAISED;
    memset (e.group, 'g', sizeof e.group);     //  not terminated
    CHECK_RC (sgmq_store_escalation_put (txn, &e), SGMQ_STORE_E_INVALID);
    //  a valid message still goes in after all that
    m = s_msg ("fine");
    CHECK_OK (sgmq_store_append (txn, &m, &out));
    assert_int_equal (out.seq, 1);
    return 0;
}

static void
test_invalid_args (void **state)
{
    fx_t *fx = *state;
    CHECK_OK (sgmq_store_write (fx->store, s_invalid_fn, NULL));
    assert_int_equal (s_head (fx->store), 1);
    s_verify_ok (fx->store);
}

static void
test_readonly (void **state)
{
    fx_t *fx = *state;
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn);
    sgmq_store_msg_t m = s_msg ("x");
    sgmq_store_appended_t out;
    sgmq_store_acked_t acked;
    sgmq_store_escalation_t e = { .seq = 1, .status = SGMQ_STORE_ESC_RAISED };
    sgmq_store_learning_t l = { .seq = 1 };
    CHECK_RC (sgmq_store_append (txn, &m, &out), SGMQ_STORE_E_READONLY);
    CHECK_RC (sgmq_store_ack (txn, "a", "k", 1, &acked),
              SGMQ_STORE_E_READONLY);
    CHECK_RC (sgmq_store_delivered (txn, "a", 1, false, NULL),
              SGMQ_STORE_E_READONLY);
    CHECK_RC (sgmq_store_escalation_put (txn, &e), SGMQ_STORE_E_READONLY);
    CHECK_RC (sgmq_store_learning_put (txn, &l), SGMQ_STORE_E_READONLY);
    CHECK_RC (sgmq_store_timer_set (txn, 1, 1, 1), SGMQ_STORE_E_READONLY);
    CHECK_RC (sgmq_store_timer_cancel (txn, 1, 1), SGMQ_STORE_E_READONLY);
    sgmq_store_read_end (&txn);
    assert_null (txn);
    sgmq_store_read_end (&txn);         //  NULL-safe
    sgmq_store_close (NULL);
}

//  --------------------------------------------------------------------------
//  Messages

static void
test_append_get_head (void **state)
{
    fx_t *fx = *state;
    int rc;
    //  empty store
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn);
    uint64_t seq = 99;
    uint8_t hash [32], zero [32] = { 0 };
    CHECK_OK (sgmq_store_head (txn, &seq, hash));
    assert_int_equal (seq, 0);
    assert_memory_equal (hash, zero, 32);
    sgmq_store_record_t rec;
    CHECK_RC (sgmq_store_get (txn, 1, &rec), SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_read_end (&txn);

    const char *groups [] = { "exec", "panel-7" };
    const char *rcpt [] = { "chair", "deputy" };
    uint8_t body [300];
    for (size_t i = 0; i < sizeof body; i++)
        body [i] = (uint8_t) i;                 //  binary, with NULs
    sgmq_store_msg_t m = {
        .sender = "school-12", .sender_key = "rq:rC7VsO?tE4{Z=",
        .kind = "learning",
        .groups = groups, .group_count = 2, .recipients = rcpt,
        .recipient_count = 2, .body = body, .body_size = sizeof body,
    };
    sgmq_store_appended_t out;
    uint64_t before = (uint64_t) time (NULL) * 1000;
    CHECK_OK (s_append_batch (fx->store, &m, 1, &out));
    assert_int_equal (out.seq, 1);
    assert_false (out.duplicate);
    assert_true (out.time >= before);

    //  a message with no recipients and an empty body, no sender key
    sgmq_store_msg_t m2 = m;
    m2.recipient_count = 0;
    m2.recipients = NULL;
    m2.body = NULL;
    m2.body_size = 0;
    m2.sender_key = NULL;
    sgmq_store_appended_t out2;
    CHECK_OK (s_append_batch (fx->store, &m2, 1, &out2));
    assert_int_equal (out2.seq, 2);

    txn = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn);
    CHECK_OK (sgmq_store_head (txn, &seq, hash));
    assert_int_equal (seq, 2);
    CHECK_OK (sgmq_store_get (txn, 1, &rec));
    assert_int_equal (rec.seq, 1);
    assert_int_equal (rec.time, out.time);
    assert_string_equal (rec.sender, "school-12");
    assert_string_equal (rec.sender_key, "rq:rC7VsO?tE4{Z=");
    assert_string_equal (rec.kind, "learning");
    assert_int_equal (rec.group_count, 2);
    assert_string_equal (rec.groups [0], "exec");
    assert_string_equal (rec.groups [1], "panel-7");
    assert_int_equal (rec.recipient_count, 2);
    assert_string_equal (rec.recipients [0], "chair");
    assert_string_equal (rec.recipients [1], "deputy");
    assert_int_equal (rec.body_size, sizeof body);
    assert_memory_equal (rec.body, body, sizeof body);
    assert_memory_equal (rec.prev, zero, 32);
    uint8_t hash1 [32], hash2 [32];
    memcpy (hash1, rec.hash, 32);
    CHECK_OK (sgmq_store_get (txn, 2, &rec));
    assert_int_equal (rec.body_size, 0);
    assert_int_equal (rec.recipient_count, 0);
    assert_string_equal (rec.sender_key, "");
    assert_memory_equal (rec.prev, hash1, 32);
    assert_memory_equal (rec.hash, hash, 32);   //  the head
    memcpy (hash2, rec.hash, 32);
    CHECK_RC (sgmq_store_get (txn, 3, &rec), SGMQ_STORE_E_NOT_FOUND);
    CHECK_RC (sgmq_store_get (txn, 0, &rec), SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_read_end (&txn);

    //  survives reopen; the chain continues from the stored head
    fx_reopen (fx);
    sgmq_store_msg_t m3 = s_msg ("third");
    sgmq_store_appended_t out3;
    CHECK_OK (s_append_batch (fx->store, &m3, 1, &out3));
    assert_int_equal (out3.seq, 3);
    txn = sgmq_store_read (fx->store, &rc);
    CHECK_OK (sgmq_store_get (txn, 3, &rec));
    assert_memory_equal (rec.prev, hash2, 32);
    sgmq_store_read_end (&txn);
    s_verify_ok (fx->store);
}

//  The chain hash is exactly the canonical bytes of PROTOCOL.md.
static void
test_canonical_hash (void **state)
{
    fx_t *fx = *state;
    const char *groups [] = { "exec", "sub-group:chairs", "x" };
    sgmq_store_msg_t msgs [3];
    for (int i = 0; i < 3; i++) {
        msgs [i] = s_msg (i == 0 ? "" : i == 1 ? "b" : "ccc");
        msgs [i].groups = groups;
        msgs [i].group_count = (uint32_t) i + 1;
        if (i == 2)
            msgs [i].sender_key = NULL;
    }
    sgmq_store_appended_t out [3];
    CHECK_OK (s_append_batch (fx->store, msgs, 3, out));
    uint8_t prev [32] = { 0 }, want [32];
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn);
    for (int i = 0; i < 3; i++) {
        s_expect_msg_hash (prev, out [i].seq, out [i].time, &msgs [i], want);
        sgmq_store_record_t rec;
        CHECK_OK (sgmq_store_get (txn, out [i].seq, &rec));
        assert_memory_equal (rec.hash, want, 32);
        assert_memory_equal (rec.prev, prev, 32);
        memcpy (prev, want, 32);
    }
    sgmq_store_read_end (&txn);
    //  checkpoint message layout
    sgmq_store_checkpoint_t cp = { .seq = 0x0102030405060708ull,
                                   .time = 0x1112131415161718ull };
    memset (cp.hash, 0xAB, 32);
    uint8_t bytes [SGMQ_STORE_CHECKPOINT_MSG_SIZE];
    sgmq_store_checkpoint_message (&cp, bytes);
    assert_int_equal (SGMQ_STORE_CHECKPOINT_MSG_SIZE, 18 + 8 + 8 + 32);
    assert_memory_equal (bytes, "sgmq-checkpoint-v1", 18);
    assert_int_equal (bytes [18], 0x01);
    assert_int_equal (bytes [25], 0x08);
    assert_int_equal (bytes [26], 0x11);
    assert_int_equal (bytes [33], 0x18);
    assert_int_equal (bytes [34], 0xAB);
}

typedef struct {
    size_t count;
    sgmq_store_appended_t *out;
    uint64_t txn_time;
    uint64_t head_in_txn;
} many_t;

static int
s_many_fn (sgmq_store_txn_t *txn, void *arg)
{
    many_t *many = arg;
    many->txn_time = sgmq_store_txn_time (txn);
    char body [64];
    for (size_t i = 0; i < many->count; i++) {
        snprintf (body, sizeof body, "message %zu", i);
        sgmq_store_msg_t m = s_msg (body);
        int rc = sgmq_store_append (txn, &m, &many->out [i]);
        if (rc)
            return rc;
    }
    return sgmq_store_head (txn, &many->head_in_txn, NULL);
}

static void
test_batch_and_time (void **state)
{
    fx_t *fx = *state;
    const size_t count = 1000;
    many_t many = { .count = count,
                    .out = calloc (count, sizeof (sgmq_store_appended_t)) };
    CHECK_OK (sgmq_store_write (fx->store, s_many_fn, &many));
    assert_int_equal (many.head_in_txn, count);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal (many.out [i].seq, i + 1);
        //  one txn, one time
        assert_int_equal (many.out [i].time, many.txn_time);
    }
    uint64_t first_time = many.txn_time;
    usleep (3000);
    CHECK_OK (sgmq_store_write (fx->store, s_many_fn, &many));
    assert_int_equal (many.out [0].seq, count + 1);
    assert_true (many.txn_time > first_time);
    assert_int_equal (s_head (fx->store), 2 * count);

    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    uint64_t last_time = 0;
    char want [64];
    for (uint64_t seq = 1; seq <= 2 * count; seq++) {
        sgmq_store_record_t rec;
        CHECK_OK (sgmq_store_get (txn, seq, &rec));
        assert_true (rec.time >= last_time);
        last_time = rec.time;
        snprintf (want, sizeof want, "message %zu", (size_t) (seq - 1) % count);
        assert_int_equal (rec.body_size, strlen (want));
        assert_memory_equal (rec.body, want, rec.body_size);
    }
    //  a read txn's time is "now"
    assert_true (sgmq_store_txn_time (txn) >= last_time);
    sgmq_store_read_end (&txn);
    free (many.out);
    s_verify_ok (fx->store);
}

//  --------------------------------------------------------------------------
//  Queries

#define Q_MSGS_MAX 1200
static const char *q_kinds [] = { "escalation", "learning", "response" };
static const char *q_senders [] = { "police", "health", "school" };
static const char *q_groups [] = { "exec", "panel", "chairs", "sub:ed" };

typedef struct {
    uint64_t time;
    int kind, sender;
    unsigned groups;            //  bit mask of q_groups
} q_msg_t;

typedef struct {
    q_msg_t *all;               //  indexed by seq
    size_t count;               //  stored so far
    size_t batch;
} q_ctx_t;

static int
s_query_fill_fn (sgmq_store_txn_t *txn, void *arg)
{
    q_ctx_t *q = arg;
    uint64_t head;
    CHECK_OK (sgmq_store_head (txn, &head, NULL));
    for (size_t i = 0; i < q->batch; i++) {
        q_msg_t *qm = &q->all [head + 1 + i];
        qm->kind = (int) s_rand_below (3);
        qm->sender = (int) s_rand_below (3);
        qm->groups = 1 + s_rand_below (15);
        const char *groups [4];
        uint32_t gc = 0;
        for (int g = 0; g < 4; g++)
            if (qm->groups & (1u << g))
                groups [gc++] = q_groups [g];
        char body [32];
        snprintf (body, sizeof body, "q%llu",
                  (unsigned long long) head + 1 + i);
        sgmq_store_msg_t m = {
            .sender = q_senders [qm->sender], .kind = q_kinds [qm->kind],
            .groups = groups, .group_count = gc,
            .body = (const uint8_t *) body, .body_size = strlen (body),
        };
        sgmq_store_appended_t out;
        int rc = sgmq_store_append (txn, &m, &out);
        if (rc)
            return rc;
        assert_int_equal (out.seq, head + 1 + i);
        qm->time = out.time;
    }
    return 0;
}

static void
test_iterate_queries (void **state)
{
    fx_t *fx = *state;
    q_ctx_t q = { .all = calloc (Q_MSGS_MAX + 1, sizeof (q_msg_t)) };
    while (q.count < 1000) {
        q.batch = 1 + s_rand_below (40);
        CHECK_OK (sgmq_store_write (fx->store, s_query_fill_fn, &q));
        q.count += q.batch;
        usleep (1000 + s_rand_below (1500));
    }
    uint64_t t_min = q.all [1].time, t_max = q.all [q.count].time;
    assert_true (t_max > t_min);

    uint64_t *want = calloc (q.count + 1, sizeof (uint64_t));
    for (int round = 0; round < 400; round++) {
        sgmq_store_query_t query = { 0 };
        if (s_rand_below (3) == 0)
            query.from_seq = 1 + s_rand_below ((uint32_t) q.count + 5);
        if (s_rand_below (3) == 0)
            query.to_seq = 1 + s_rand_below ((uint32_t) q.count + 5);
        if (s_rand_below (3) == 0)
            query.since = q.all [1 + s_rand_below ((uint32_t) q.count)].time
                        + s_rand_below (3) - 1;
        if (s_rand_below (3) == 0)
            query.until = q.all [1 + s_rand_below ((uint32_t) q.count)].time
                        + s_rand_below (3) - 1;
        int group = -1, kind = -1, sender = -1;
        if (s_rand_below (2) == 0)
            query.group = q_groups [group = (int) s_rand_below (4)];
        if (s_rand_below (2) == 0)
            query.kind = q_kinds [kind = (int) s_rand_below (3)];
        if (s_rand_below (3) == 0)
            query.sender = q_senders [sender = (int) s_rand_below (3)];
        if (round == 7)
            query.group = "nobody";     //  a tag no message has
        if (round == 8)
            query.since = t_max + 1000;
        if (round == 9)
            query.until = t_min - 1;

        //  brute force
        size_t wanted = 0;
        for (uint64_t seq = 1; seq <= q.count; seq++) {
            const q_msg_t *qm = &q.all [seq];
            if ((query.from_seq && seq < query.from_seq)
            ||  (query.to_seq && seq > query.to_seq)
            ||  (query.since && qm->time < query.since)
            ||  (query.until && qm->time > query.until)
            ||  (query.group && (round == 7 || !(qm->groups & (1u << group))))
            ||  (kind >= 0 && qm->kind != kind)
            ||  (sender >= 0 && qm->sender != sender))
                continue;
            want [wanted++] = seq;
        }
        int rc;
        sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
        assert_non_null (txn);
        sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, &query);
        assert_non_null (iter);
        sgmq_store_record_t rec;
        size_t got = 0;
        while ((rc = sgmq_store_iter_next (iter, &rec)) == 0) {
            if (got >= wanted || rec.seq != want [got])
                fail_msg ("round %d: got seq %llu, wanted %llu", round,
                          (unsigned long long) rec.seq,
                          got < wanted ? (unsigned long long) want [got] : 0);
            const q_msg_t *qm = &q.all [rec.seq];
            assert_string_equal (rec.kind, q_kinds [qm->kind]);
            assert_string_equal (rec.sender, q_senders [qm->sender]);
            char body [32];
            snprintf (body, sizeof body, "q%llu", (unsigned long long) rec.seq);
            assert_int_equal (rec.body_size, strlen (body));
            assert_memory_equal (rec.body, body, rec.body_size);
            got++;
        }
        CHECK_RC (rc, SGMQ_STORE_E_NOT_FOUND);
        //  stays at the end
        CHECK_RC (sgmq_store_iter_next (iter, &rec), SGMQ_STORE_E_NOT_FOUND);
        if (got != wanted)
            fail_msg ("round %d: got %zu results, wanted %zu", round, got,
                      wanted);
        sgmq_store_iter_destroy (&iter);
        assert_null (iter);
        //  The same in bounded steps, each new iterator going on after the
        //  last seq the one before looked at (as the broker's replay does).
        size_t bound = 1 + s_rand_below (20), again = 0;
        sgmq_store_query_t part = query;
        got = 0;
        for (;;) {
            iter = sgmq_store_iter_new (txn, &part);
            sgmq_store_iter_bound (iter, bound);
            size_t matched = 0;
            while ((rc = sgmq_store_iter_next (iter, &rec)) == 0) {
                if (got >= wanted || rec.seq != want [got])
                    fail_msg ("round %d, bound %zu: got seq %llu, wanted %llu", round,
                              bound, (unsigned long long) rec.seq,
                              got < wanted ? (unsigned long long) want [got] : 0);
                got++;
                matched++;
            }
            uint64_t last = sgmq_store_iter_seq (iter);
            sgmq_store_iter_destroy (&iter);
            if (rc == SGMQ_STORE_E_NOT_FOUND)
                break;
            CHECK_RC (rc, SGMQ_STORE_E_AGAIN);
            assert_true (matched <= bound);
            assert_true (last >= part.from_seq && last <= q.count);
            part.from_seq = last + 1;
            again++;
        }
        if (got != wanted)
            fail_msg ("round %d, bound %zu: got %zu results, wanted %zu", round, bound,
                      got, wanted);
        assert_true (again > 0 || wanted < bound);
        sgmq_store_read_end (&txn);
    }
    //  NULL query: everything; and a too-long tag is INVALID
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, NULL);
    sgmq_store_record_t rec;
    size_t count = 0;
    while (sgmq_store_iter_next (iter, &rec) == 0)
        count++;
    assert_int_equal (count, q.count);
    sgmq_store_iter_destroy (&iter);
    char long_kind [SGMQ_STORE_MAX_KIND + 2];
    memset (long_kind, 'k', sizeof long_kind - 1);
    long_kind [sizeof long_kind - 1] = 0;
    sgmq_store_query_t bad = { .kind = long_kind };
    iter = sgmq_store_iter_new (txn, &bad);
    CHECK_RC (sgmq_store_iter_next (iter, &rec), SGMQ_STORE_E_INVALID);
    sgmq_store_iter_destroy (&iter);
    sgmq_store_iter_destroy (&iter);    //  NULL-safe
    sgmq_store_read_end (&txn);
    free (want);
    free (q.all);
}

//  Iteration inside a write txn sees the txn's own appends.
static int
s_iter_in_write_fn (sgmq_store_txn_t *txn, void *arg)
{
    size_t *seen = arg;
    sgmq_store_msg_t m = s_msg ("in txn");
    m.kind = "response";
    sgmq_store_appended_t out;
    CHECK_OK (sgmq_store_append (txn, &m, &out));
    sgmq_store_query_t query = { .kind = "response" };
    sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, &query);
    sgmq_store_record_t rec;
    *seen = 0;
    while (sgmq_store_iter_next (iter, &rec) == 0)
        (*seen)++;
    sgmq_store_iter_destroy (&iter);
    return 0;
}

static void
test_iterate_in_write (void **state)
{
    fx_t *fx = *state;
    size_t seen = 0;
    CHECK_OK (sgmq_store_write (fx->store, s_iter_in_write_fn, &seen));
    assert_int_equal (seen, 1);
    CHECK_OK (sgmq_store_write (fx->store, s_iter_in_write_fn, &seen));
    assert_int_equal (seen, 2);
}

//  --------------------------------------------------------------------------
//  Idempotency

typedef struct {
    sgmq_store_msg_t msgs [4];
    sgmq_store_appended_t out [4];
    int rcs [4];
    size_t count;
} idem_t;

static int
s_idem_fn (sgmq_store_txn_t *txn, void *arg)
{
    idem_t *idem = arg;
    for (size_t i = 0; i < idem->count; i++)
        idem->rcs [i] = sgmq_store_append (txn, &idem->msgs [i],
                                           &idem->out [i]);
    return 0;
}

//  A process that died holding a read transaction (a backup killed in its
//  copy) leaves a reader slot; the check frees it, and only such slots.
static void
test_dead_readers_freed (void **state)
{
    fx_t *fx = *state;
    int cleared = -1;
    CHECK_OK (sgmq_store_reader_check (fx->store, &cleared));
    assert_int_equal (cleared, 0);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        MDB_env *env;
        MDB_txn *txn;
        if (mdb_env_create (&env) || mdb_env_set_maxdbs (env, 32)
        ||  mdb_env_open (env, fx->dir, MDB_RDONLY | MDB_NOTLS, 0600)
        ||  mdb_txn_begin (env, NULL, MDB_RDONLY, &txn))
            _exit (1);
        _exit (0);              //  dies holding it
    }
    int status;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    //  A live reader of this process is kept.
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn);
    CHECK_OK (sgmq_store_reader_check (fx->store, &cleared));
    assert_int_equal (cleared, 1);
    CHECK_OK (sgmq_store_reader_check (fx->store, &cleared));
    assert_int_equal (cleared, 0);
    sgmq_store_read_end (&txn);
}

static void
test_idempotency (void **state)
{
    fx_t *fx = *state;
    uint8_t digest_a [32], digest_b [32];
    memset (digest_a, 0xA, 32);
    memset (digest_b, 0xB, 32);

    //  within one txn: first stored, repeat a duplicate, other digest a
    //  conflict, same ref from another sender a new message
    idem_t idem = { .count = 4 };
    for (int i = 0; i < 4; i++) {
        idem.msgs [i] = s_msg ("payload");
        idem.msgs [i].ref = "client-ref-1";
        idem.msgs [i].ref_digest = digest_a;
    }
    idem.msgs [2].ref_digest = digest_b;
    idem.msgs [3].sender = "health";
    CHECK_OK (sgmq_store_write (fx->store, s_idem_fn, &idem));
    CHECK_OK (idem.rcs [0]);
    assert_int_equal (idem.out [0].seq, 1);
    assert_false (idem.out [0].duplicate);
    CHECK_OK (idem.rcs [1]);
    assert_true (idem.out [1].duplicate);
    assert_int_equal (idem.out [1].seq, 1);
    assert_int_equal (idem.out [1].time, idem.out [0].time);
    CHECK_RC (idem.rcs [2], SGMQ_STORE_E_CONFLICT);
    assert_int_equal (idem.out [2].seq, 1);
    CHECK_OK (idem.rcs [3]);
    assert_int_equal (idem.out [3].seq, 2);
    assert_false (idem.out [3].duplicate);
    assert_int_equal (s_head (fx->store), 2);
    //  Looked up without appending: each sender's own.
    int rc;
    uint64_t seq = 0;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn);
    CHECK_OK (sgmq_store_ref_find (txn, idem.msgs [0].sender, "client-ref-1", &seq));
    assert_int_equal (seq, 1);
    CHECK_OK (sgmq_store_ref_find (txn, "health", "client-ref-1", &seq));
    assert_int_equal (seq, 2);
    CHECK_RC (sgmq_store_ref_find (txn, "health", "client-ref-2", &seq),
              SGMQ_STORE_E_NOT_FOUND);
    CHECK_RC (sgmq_store_ref_find (txn, "", "client-ref-1", &seq), SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_read_end (&txn);

    //  in a later txn, after reopen: still a duplicate, nothing stored
    fx_reopen (fx);
    idem.count = 2;
    idem.msgs [0] = idem.msgs [1];
    idem.msgs [1].ref_digest = NULL;    //  all-zero digest: a conflict
    CHECK_OK (sgmq_store_write (fx->store, s_idem_fn, &idem));
    CHECK_OK (idem.rcs [0]);
    assert_true (idem.out [0].duplicate);
    assert_int_equal (idem.out [0].seq, 1);
    CHECK_RC (idem.rcs [1], SGMQ_STORE_E_CONFLICT);
    assert_int_equal (s_head (fx->store), 2);
    //  the duplicate created no deliveries
    uint64_t count;
    txn = sgmq_store_read (fx->store, &rc);
    CHECK_OK (sgmq_store_unacked_count (txn, "exec-children", &count));
    assert_int_equal (count, 2);
    sgmq_store_read_end (&txn);
    //  no ref: never deduplicated
    sgmq_store_msg_t m = s_msg ("payload");
    assert_int_equal (s_append_one (fx->store, &m), 3);
    assert_int_equal (s_append_one (fx->store, &m), 4);
    s_verify_ok (fx->store);
}

//  --------------------------------------------------------------------------
//  Deliveries and acknowledgements

typedef struct {
    const char *recipient;
    const char *key;
    uint64_t seq;
    bool flag;
    int rc;
    sgmq_store_delivery_t d;
    sgmq_store_acked_t acked;
    char recipient_copy [64];
} op_t;

static int
s_delivered_fn (sgmq_store_txn_t *txn, void *arg)
{
    op_t *op = arg;
    op->rc = sgmq_store_delivered (txn, op->recipient, op->seq, op->flag,
                                   &op->d);
    if (op->rc == 0)
        snprintf (op->recipient_copy, sizeof op->recipient_copy, "%s",
                  op->d.recipient);
    return 0;
}

static int
s_ack_fn (sgmq_store_txn_t *txn, void *arg)
{
    op_t *op = arg;
    op->rc = sgmq_store_ack (txn, op->recipient, op->key, op->seq,
                             &op->acked);
    return 0;
}

static int
s_do_delivered (sgmq_store_t *store, const char *recipient, uint64_t seq,
                bool flag, sgmq_store_delivery_t *d)
{
    op_t op = { .recipient = recipient, .seq = seq, .flag = flag };
    CHECK_OK (sgmq_store_write (store, s_delivered_fn, &op));
    if (d)
        *d = op.d;
    return op.rc;
}

static int
s_do_ack (sgmq_store_t *store, const char *recipient, const char *key,
          uint64_t seq, sgmq_store_acked_t *acked)
{
    op_t op = { .recipient = recipient, .key = key, .seq = seq };
    CHECK_OK (sgmq_store_write (store, s_ack_fn, &op));
    if (acked)
        *acked = op.acked;
    return op.rc;
}

static void
test_deliveries (void **state)
{
    fx_t *fx = *state;
    sgmq_store_msg_t m = s_msg ("please acknowledge");
    uint64_t seq = s_append_one (fx->store, &m);
    int rc;
    sgmq_store_delivery_t d;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    CHECK_OK (sgmq_store_delivery (txn, "exec-health", seq, &d));
    assert_int_equal (d.state, SGMQ_STORE_PENDING);
    assert_int_equal (d.count, 0);
    assert_int_equal (d.first, 0);
    assert_string_equal (d.recipient, "exec-health");
    assert_int_equal (d.seq, seq);
    assert_string_equal (d.acked_key, "");
    CHECK_RC (sgmq_store_delivery (txn, "outsider", seq, &d),
              SGMQ_STORE_E_NOT_FOUND);
    CHECK_RC (sgmq_store_delivery (txn, "exec-health", seq + 1, &d),
              SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_read_end (&txn);

    //  delivered twice, the second time flagged
    CHECK_OK (s_do_delivered (fx->store, "exec-health", seq, false, &d));
    assert_int_equal (d.state, SGMQ_STORE_DELIVERED);
    assert_int_equal (d.count, 1);
    assert_true (d.first > 0);
    assert_int_equal (d.first, d.last);
    assert_false (d.flagged);
    uint64_t first = d.first;
    usleep (3000);
    CHECK_OK (s_do_delivered (fx->store, "exec-health", seq, true, &d));
    assert_int_equal (d.count, 2);
    assert_int_equal (d.first, first);
    assert_true (d.last > first);
    assert_true (d.flagged);
    CHECK_OK (s_do_delivered (fx->store, "exec-health", seq, false, &d));
    assert_true (d.flagged);            //  the flag stays
    assert_int_equal (d.count, 3);
    CHECK_RC (s_do_delivered (fx->store, "outsider", seq, false, NULL),
              SGMQ_STORE_E_NOT_FOUND);

    //  ack
    sgmq_store_acked_t acked;
    CHECK_OK (s_do_ack (fx->store, "exec-health", "KEYhealth", seq, &acked));
    assert_false (acked.duplicate);
    assert_int_equal (acked.event, 1);
    assert_true (acked.time >= d.last);
    uint64_t ack_time = acked.time;
    txn = sgmq_store_read (fx->store, &rc);
    CHECK_OK (sgmq_store_delivery (txn, "exec-health", seq, &d));
    assert_int_equal (d.state, SGMQ_STORE_ACKED);
    assert_int_equal (d.acked_at, ack_time);
    assert_string_equal (d.acked_key, "KEYhealth");
    assert_int_equal (d.count, 3);      //  delivery history kept
    assert_int_equal (d.first, first);
    assert_true (d.flagged);
    sgmq_store_read_end (&txn);

    //  twice: duplicate, original time and event, nothing written
    usleep (2000);
    CHECK_OK (s_do_ack (fx->store, "exec-health", "KEYother", seq, &acked));
    assert_true (acked.duplicate);
    assert_int_equal (acked.time, ack_time);
    assert_int_equal (acked.event, 1);
    //  not a recipient
    CHECK_RC (s_do_ack (fx->store, "outsider", "K", seq, NULL),
              SGMQ_STORE_E_NOT_FOUND);
    CHECK_RC (s_do_ack (fx->store, "exec-health", "K", seq + 7, NULL),
              SGMQ_STORE_E_NOT_FOUND);
    //  delivered after ack
    CHECK_RC (s_do_delivered (fx->store, "exec-health", seq, false, NULL),
              SGMQ_STORE_E_NOT_FOUND);
    //  an ack without any delivery first (pending -> acked)
    CHECK_OK (s_do_ack (fx->store, "exec-police", "KEYpolice", seq, &acked));
    assert_int_equal (acked.event, 2);

    //  per message: who has and has not acknowledged
    txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_OK (sgmq_store_get (txn, seq, &rec));
    int acked_count = 0, waiting = 0;
    for (uint32_t i = 0; i < rec.recipient_count; i++) {
        CHECK_OK (sgmq_store_delivery (txn, rec.recipients [i], seq, &d));
        if (d.state == SGMQ_STORE_ACKED)
            acked_count++;
        else {
            waiting++;
            assert_string_equal (rec.recipients [i], "exec-children");
        }
    }
    assert_int_equal (acked_count, 2);
    assert_int_equal (waiting, 1);
    uint64_t count;
    CHECK_OK (sgmq_store_unacked_count (txn, "exec-health", &count));
    assert_int_equal (count, 0);
    CHECK_OK (sgmq_store_unacked_count (txn, "exec-children", &count));
    assert_int_equal (count, 1);
    CHECK_OK (sgmq_store_unacked_count (txn, "nobody", &count));
    assert_int_equal (count, 0);
    sgmq_store_read_end (&txn);
    s_verify_ok (fx->store);
}

//  Deliveries the caller makes at once are stored with the append, as if
//  sgmq_store_delivered had followed it; the others stay pending.
static void
test_delivered_at_append (void **state)
{
    fx_t *fx = *state;
    sgmq_store_msg_t m = s_msg ("seen at once by two of three");
    const uint32_t live [] = { 0, 2, 1 };
    m.delivered = live;
    uint64_t seq = s_append_one (fx->store, &m);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_OK (sgmq_store_get (txn, seq, &rec));
    for (uint32_t i = 0; i < 3; i++) {
        sgmq_store_delivery_t d;
        CHECK_OK (sgmq_store_delivery (txn, s_rcpt3 [i], seq, &d));
        assert_int_equal (d.state, live [i] ? SGMQ_STORE_DELIVERED : SGMQ_STORE_PENDING);
        assert_int_equal (d.count, live [i]);
        assert_int_equal (d.first, live [i] ? rec.time : 0);
        assert_int_equal (d.last, d.first);
        assert_false (d.flagged);
    }
    uint64_t count;
    CHECK_OK (sgmq_store_unacked_count (txn, "exec-health", &count));
    assert_int_equal (count, 1);        //  delivered is still unacknowledged
    sgmq_store_read_end (&txn);
    sgmq_store_delivery_t d;
    CHECK_OK (s_do_delivered (fx->store, "exec-health", seq, false, &d));
    assert_int_equal (d.count, 3);
    assert_int_equal (d.first, rec.time);
    sgmq_store_acked_t acked;
    CHECK_OK (s_do_ack (fx->store, "exec-police", "KEYpolice", seq, &acked));
    assert_false (acked.duplicate);
    s_verify_ok (fx->store);
}

//  Recipients whose names prefix each other must not see each other's
//  deliveries.
static const char *u_names [] = { "a", "ab", "a b", "b", "abc" };
#define U_NAMES 5
#define U_MSGS 60

typedef struct {
    bool to [U_MSGS + 1][U_NAMES];
    bool acked [U_MSGS + 1][U_NAMES];
} u_ctx_t;

static int
s_unacked_fill_fn (sgmq_store_txn_t *txn, void *arg)
{
    u_ctx_t *u = arg;
    for (int seq = 1; seq <= U_MSGS; seq++) {
        const char *rcpt [U_NAMES];
        uint32_t rc_count = 0;
        for (int r = 0; r < U_NAMES; r++)
            if ((u->to [seq][r] = s_rand_below (2) == 1))
                rcpt [rc_count++] = u_names [r];
        sgmq_store_msg_t m = s_msg ("u");
        m.recipients = rcpt;
        m.recipient_count = rc_count;
        sgmq_store_appended_t out;
        CHECK_OK (sgmq_store_append (txn, &m, &out));
        assert_int_equal (out.seq, (uint64_t) seq);
    }
    //  ack about a third
    for (int seq = 1; seq <= U_MSGS; seq++)
        for (int r = 0; r < U_NAMES; r++)
            if (u->to [seq][r] && s_rand_below (3) == 0) {
                sgmq_store_acked_t acked;
                CHECK_OK (sgmq_store_ack (txn, u_names [r], "k",
                                          (uint64_t) seq, &acked));
                u->acked [seq][r] = true;
            }
    return 0;
}

static int
s_name_cmp (const void *a, const void *b)
{
    return strcmp (u_names [*(const int *) a], u_names [*(const int *) b]);
}

static void
test_unacked_order (void **state)
{
    fx_t *fx = *state;
    u_ctx_t *u = calloc (1, sizeof *u);
    CHECK_OK (sgmq_store_write (fx->store, s_unacked_fill_fn, u));
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_delivery_t d;
    for (int r = 0; r < U_NAMES; r++) {
        //  from the start and from every point
        for (uint64_t after = 0; after <= U_MSGS; after += 7) {
            uint64_t at = after;
            for (uint64_t seq = after + 1; seq <= U_MSGS; seq++) {
                if (!u->to [seq][r] || u->acked [seq][r])
                    continue;
                CHECK_OK (sgmq_store_unacked_next (txn, u_names [r], at, &d));
                assert_int_equal (d.seq, seq);
                assert_string_equal (d.recipient, u_names [r]);
                assert_int_equal (d.state, SGMQ_STORE_PENDING);
                at = d.seq;
            }
            CHECK_RC (sgmq_store_unacked_next (txn, u_names [r], at, &d),
                      SGMQ_STORE_E_NOT_FOUND);
        }
        uint64_t want = 0, count;
        for (int seq = 1; seq <= U_MSGS; seq++)
            want += u->to [seq][r] && !u->acked [seq][r];
        CHECK_OK (sgmq_store_unacked_count (txn, u_names [r], &count));
        assert_int_equal (count, want);
    }
    CHECK_RC (sgmq_store_unacked_next (txn, "a", UINT64_MAX, &d),
              SGMQ_STORE_E_NOT_FOUND);
    CHECK_RC (sgmq_store_unacked_next (txn, "zzz", 0, &d),
              SGMQ_STORE_E_NOT_FOUND);

    //  everything, ordered by (recipient, seq)
    int order [U_NAMES];
    for (int r = 0; r < U_NAMES; r++)
        order [r] = r;
    qsort (order, U_NAMES, sizeof order [0], s_name_cmp);
    char after_r [SGMQ_STORE_MAX_NAME + 1] = "";
    uint64_t after_s = 0;
    for (int i = 0; i < U_NAMES; i++) {
        int r = order [i];
        for (int seq = 1; seq <= U_MSGS; seq++) {
            if (!u->to [seq][r] || u->acked [seq][r])
                continue;
            CHECK_OK (sgmq_store_unacked_all_next (txn, after_r, after_s, &d));
            assert_string_equal (d.recipient, u_names [r]);
            assert_int_equal (d.seq, (uint64_t) seq);
            snprintf (after_r, sizeof after_r, "%s", d.recipient);
            after_s = d.seq;
        }
    }
    CHECK_RC (sgmq_store_unacked_all_next (txn, after_r, after_s, &d),
              SGMQ_STORE_E_NOT_FOUND);
    //  NULL means from the very start, like ""
    CHECK_OK (sgmq_store_unacked_all_next (txn, NULL, 0, &d));
    assert_string_equal (d.recipient, u_names [order [0]]);
    //  skipping a whole recipient: ("a", max) starts at the next name
    CHECK_OK (sgmq_store_unacked_all_next (txn, "a", UINT64_MAX, &d));
    assert_string_not_equal (d.recipient, "a");
    assert_true (strcmp (d.recipient, "a") > 0);
    sgmq_store_read_end (&txn);
    free (u);
}

typedef struct {
    uint64_t seqs [8];
    const char *recipients [8];
    const char *keys [8];
    size_t count;
    sgmq_store_acked_t out [8];
} acks_t;

static int
s_acks_fn (sgmq_store_txn_t *txn, void *arg)
{
    acks_t *a = arg;
    for (size_t i = 0; i < a->count; i++) {
        int rc = sgmq_store_ack (txn, a->recipients [i], a->keys [i],
                                 a->seqs [i], &a->out [i]);
        if (rc)
            return rc;
    }
    return 0;
}

static void
test_ack_log (void **state)
{
    fx_t *fx = *state;
    sgmq_store_msg_t msgs [3] = { s_msg ("1"), s_msg ("2"), s_msg ("3") };
    sgmq_store_appended_t out [3];
    CHECK_OK (s_append_batch (fx->store, msgs, 3, out));
    acks_t a1 = { .count = 3, .seqs = { 2, 1, 2 },
                  .recipients = { "exec-children", "exec-health", "exec-health" },
                  .keys = { "KA", "KB", "" } };
    CHECK_OK (sgmq_store_write (fx->store, s_acks_fn, &a1));
    usleep (2000);
    fx_reopen (fx);
    acks_t a2 = { .count = 2, .seqs = { 3, 1 },
                  .recipients = { "exec-police", "exec-children" },
                  .keys = { "KC", "KA2" } };
    CHECK_OK (sgmq_store_write (fx->store, s_acks_fn, &a2));

    const uint64_t want_seq [] = { 2, 1, 2, 3, 1 };
    const char *want_r [] = { "exec-children", "exec-health", "exec-health", "exec-police", "exec-children" };
    const char *want_k [] = { "KA", "KB", "", "KC", "KA2" };
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_ack_event_t ev;
    uint8_t prev [32] = { 0 }, hash [32];
    uint64_t after = 0, last_time = 0;
    for (int i = 0; i < 5; i++) {
        CHECK_OK (sgmq_store_ack_log_next (txn, after, &ev));
        assert_int_equal (ev.event, (uint64_t) i + 1);
        assert_int_equal (ev.seq, want_seq [i]);
        assert_string_equal (ev.recipient, want_r [i]);
        assert_string_equal (ev.key, want_k [i]);
        assert_true (ev.time >= last_time);
        s_expect_ack_hash (prev, ev.event, ev.seq, ev.time, ev.recipient,
                           ev.key, hash);
        assert_memory_equal (ev.hash, hash, 32);
        memcpy (prev, hash, 32);
        last_time = ev.time;
        after = ev.event;
    }
    assert_int_equal (a1.out [0].time, a1.out [2].time);
    assert_true (a2.out [0].time > a1.out [0].time);
    CHECK_RC (sgmq_store_ack_log_next (txn, after, &ev),
              SGMQ_STORE_E_NOT_FOUND);
    CHECK_OK (sgmq_store_ack_log_next (txn, 3, &ev));
    assert_int_equal (ev.event, 4);
    CHECK_RC (sgmq_store_ack_log_next (txn, UINT64_MAX, &ev),
              SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_read_end (&txn);
    sgmq_store_verify_t report;
    CHECK_OK (sgmq_store_verify (fx->store, s_sign_pk, &report));
    assert_int_equal (report.acks, 5);
    assert_int_equal (report.messages, 3);
}

//  --------------------------------------------------------------------------
//  Tracking and timers

typedef struct {
    sgmq_store_escalation_t esc [3];
    sgmq_store_learning_t learn [2];
} track_t;

static int
s_track_fn (sgmq_store_txn_t *txn, void *arg)
{
    track_t *t = arg;
    for (int i = 0; i < 3; i++)
        CHECK_OK (sgmq_store_escalation_put (txn, &t->esc [i]));
    for (int i = 0; i < 2; i++)
        CHECK_OK (sgmq_store_learning_put (txn, &t->learn [i]));
    return 0;
}

static void
s_expect_esc (const sgmq_store_escalation_t *got,
              const sgmq_store_escalation_t *want)
{
    assert_int_equal (got->seq, want->seq);
    assert_int_equal (got->status, want->status);
    assert_int_equal (got->overdue, want->overdue);
    assert_string_equal (got->group, want->group);
    assert_int_equal (got->raised, want->raised);
    assert_int_equal (got->ack_by, want->ack_by);
    assert_int_equal (got->respond_by, want->respond_by);
    assert_int_equal (got->acked_at, want->acked_at);
    assert_string_equal (got->acked_by, want->acked_by);
    assert_int_equal (got->responded_at, want->responded_at);
    assert_int_equal (got->response_seq, want->response_seq);
    assert_int_equal (got->reminders, want->reminders);
    assert_int_equal (got->last_reminder, want->last_reminder);
}

static void
test_tracking (void **state)
{
    fx_t *fx = *state;
    track_t t;
    memset (&t, 0, sizeof t);
    const uint64_t esc_seqs [] = { 40, 5, 17 };
    for (int i = 0; i < 3; i++) {
        sgmq_store_escalation_t *e = &t.esc [i];
        e->seq = esc_seqs [i];
        e->status = (sgmq_store_esc_status_t) (SGMQ_STORE_ESC_RAISED + i);
        e->overdue = (uint32_t) i;
        snprintf (e->group, sizeof e->group, "group-%d", i);
        e->raised = 1000 + (uint64_t) i;
        e->ack_by = 2000 + (uint64_t) i;
        e->respond_by = 3000 + (uint64_t) i;
        e->acked_at = i ? 2500 : 0;
        if (i)
            snprintf (e->acked_by, sizeof e->acked_by, "exec-chair");
        e->responded_at = i == 2 ? 2900 : 0;
        e->response_seq = i == 2 ? 99 : 0;
        e->reminders = (uint32_t) i * 2;
        e->last_reminder = 1500;
    }
    memset (t.esc [0].group, 'g', SGMQ_STORE_MAX_NAME);    //  longest name
    t.esc [0].group [SGMQ_STORE_MAX_NAME] = 0;
    t.learn [0] = (sgmq_store_learning_t) { .seq = 8, .session_by = 1,
        .reflection_by = 2, .session_held = 3, .reflection_held = 0,
        .session_update = 11, .reflection_update = 0, .reminders = 1 };
    t.learn [1] = (sgmq_store_learning_t) { .seq = 3, .session_by = 9 };
    CHECK_OK (sgmq_store_write (fx->store, s_track_fn, &t));

    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_escalation_t e;
    for (int i = 0; i < 3; i++) {
        CHECK_OK (sgmq_store_escalation_get (txn, esc_seqs [i], &e));
        s_expect_esc (&e, &t.esc [i]);
    }
    CHECK_RC (sgmq_store_escalation_get (txn, 6, &e), SGMQ_STORE_E_NOT_FOUND);
    //  next walks in seq order
    const uint64_t order [] = { 5, 17, 40 };
    uint64_t after = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_OK (sgmq_store_escalation_next (txn, after, &e));
        assert_int_equal (e.seq, order [i]);
        after = e.seq;
    }
    CHECK_RC (sgmq_store_escalation_next (txn, after, &e),
              SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_learning_t l;
    CHECK_OK (sgmq_store_learning_get (txn, 8, &l));
    assert_int_equal (l.seq, 8);
    assert_int_equal (l.session_by, 1);
    assert_int_equal (l.reflection_by, 2);
    assert_int_equal (l.session_held, 3);
    assert_int_equal (l.reflection_held, 0);
    assert_int_equal (l.session_update, 11);
    assert_int_equal (l.reflection_update, 0);
    assert_int_equal (l.reminders, 1);
    CHECK_OK (sgmq_store_learning_next (txn, 0, &l));
    assert_int_equal (l.seq, 3);
    assert_int_equal (l.session_by, 9);
    CHECK_OK (sgmq_store_learning_next (txn, 3, &l));
    assert_int_equal (l.seq, 8);
    CHECK_RC (sgmq_store_learning_next (txn, 8, &l), SGMQ_STORE_E_NOT_FOUND);
    CHECK_RC (sgmq_store_learning_get (txn, 4, &l), SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_read_end (&txn);

    //  replace
    t.esc [1].status = SGMQ_STORE_ESC_RESPONDED;
    t.esc [1].overdue = SGMQ_STORE_OVERDUE_ACK | SGMQ_STORE_OVERDUE_RESPONSE;
    t.learn [1].reflection_held = 77;
    CHECK_OK (sgmq_store_write (fx->store, s_track_fn, &t));
    txn = sgmq_store_read (fx->store, &rc);
    CHECK_OK (sgmq_store_escalation_get (txn, 5, &e));
    assert_int_equal (e.status, SGMQ_STORE_ESC_RESPONDED);
    assert_int_equal (e.overdue, 3);
    CHECK_OK (sgmq_store_learning_get (txn, 3, &l));
    assert_int_equal (l.reflection_held, 77);
    sgmq_store_read_end (&txn);
}

typedef struct {
    int step;
    int rcs [8];
} timer_ctx_t;

static int
s_timer_fn (sgmq_store_txn_t *txn, void *arg)
{
    timer_ctx_t *t = arg;
    memset (t->rcs, 0, sizeof t->rcs);
    if (t->step == 0) {
        t->rcs [0] = sgmq_store_timer_set (txn, 10, 1, 5000);
        t->rcs [1] = sgmq_store_timer_set (txn, 10, 2, 3000);
        t->rcs [2] = sgmq_store_timer_set (txn, 7, 1, 4000);
        t->rcs [3] = sgmq_store_timer_set (txn, 12, 1, 4000);
    }
    else
    if (t->step == 1) {
        t->rcs [0] = sgmq_store_timer_set (txn, 10, 2, 9000);   //  move
        t->rcs [1] = sgmq_store_timer_set (txn, 7, 1, 4000);    //  same
    }
    else
    if (t->step == 2) {
        t->rcs [0] = sgmq_store_timer_cancel (txn, 7, 1);
        t->rcs [1] = sgmq_store_timer_cancel (txn, 7, 1);
        t->rcs [2] = sgmq_store_timer_cancel (txn, 99, 1);
    }
    return 0;
}

static void
s_expect_first (sgmq_store_t *store, uint64_t until, int want_rc,
                uint64_t due, uint64_t seq, uint32_t what)
{
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (store, &rc);
    sgmq_store_timer_t t;
    CHECK_RC (sgmq_store_timer_first (txn, until, &t), want_rc);
    if (want_rc == 0) {
        assert_int_equal (t.due, due);
        assert_int_equal (t.seq, seq);
        assert_int_equal (t.what, what);
    }
    sgmq_store_read_end (&txn);
}

typedef struct {
    uint64_t seq;
    uint32_t what;
    int rc;
} cancel_t;

static int
s_cancel_fn (sgmq_store_txn_t *txn, void *arg)
{
    cancel_t *c = arg;
    c->rc = sgmq_store_timer_cancel (txn, c->seq, c->what);
    return 0;
}

static void
test_timers (void **state)
{
    fx_t *fx = *state;
    s_expect_first (fx->store, 0, SGMQ_STORE_E_NOT_FOUND, 0, 0, 0);
    timer_ctx_t t = { .step = 0 };
    CHECK_OK (sgmq_store_write (fx->store, s_timer_fn, &t));
    for (int i = 0; i < 4; i++)
        CHECK_OK (t.rcs [i]);
    s_expect_first (fx->store, 0, 0, 3000, 10, 2);
    s_expect_first (fx->store, 3000, 0, 3000, 10, 2);
    s_expect_first (fx->store, 2999, SGMQ_STORE_E_NOT_FOUND, 0, 0, 0);

    t.step = 1;
    CHECK_OK (sgmq_store_write (fx->store, s_timer_fn, &t));
    CHECK_OK (t.rcs [0]);
    CHECK_OK (t.rcs [1]);
    //  equal due times order by (seq, what)
    s_expect_first (fx->store, 0, 0, 4000, 7, 1);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_timer_t timer;
    CHECK_OK (sgmq_store_timer_get (txn, 10, 2, &timer));
    assert_int_equal (timer.due, 9000);
    assert_int_equal (timer.seq, 10);
    assert_int_equal (timer.what, 2);
    CHECK_RC (sgmq_store_timer_get (txn, 10, 3, &timer),
              SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_read_end (&txn);

    t.step = 2;
    CHECK_OK (sgmq_store_write (fx->store, s_timer_fn, &t));
    CHECK_OK (t.rcs [0]);
    CHECK_RC (t.rcs [1], SGMQ_STORE_E_NOT_FOUND);
    CHECK_RC (t.rcs [2], SGMQ_STORE_E_NOT_FOUND);
    s_expect_first (fx->store, 0, 0, 4000, 12, 1);
    //  walk the rest in due order by cancelling the first each time
    const uint64_t want_due [] = { 4000, 5000, 9000 };
    for (int i = 0; i < 3; i++) {
        txn = sgmq_store_read (fx->store, &rc);
        CHECK_OK (sgmq_store_timer_first (txn, 0, &timer));
        sgmq_store_read_end (&txn);
        assert_int_equal (timer.due, want_due [i]);
        cancel_t cancel = { .seq = timer.seq, .what = timer.what };
        CHECK_OK (sgmq_store_write (fx->store, s_cancel_fn, &cancel));
        CHECK_OK (cancel.rc);
    }
    s_expect_first (fx->store, 0, SGMQ_STORE_E_NOT_FOUND, 0, 0, 0);
}

//  --------------------------------------------------------------------------
//  Checkpoints and verification

static void
s_append_n (sgmq_store_t *store, size_t n, size_t batch)
{
    sgmq_store_msg_t *msgs = calloc (batch, sizeof *msgs);
    sgmq_store_appended_t *out = calloc (batch, sizeof *out);
    for (size_t i = 0; i < batch; i++)
        msgs [i] = s_msg ("filler body for the chain");
    for (size_t done = 0; done < n; done += batch) {
        size_t count = n - done < batch ? n - done : batch;
        CHECK_OK (s_append_batch (store, msgs, count, out));
    }
    free (msgs);
    free (out);
}

static void
s_expect_checkpoint (sgmq_store_t *store, uint64_t at_or_before, int want_rc,
                     uint64_t want_seq)
{
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (store, &rc);
    sgmq_store_checkpoint_t cp;
    CHECK_RC (sgmq_store_checkpoint_get (txn, at_or_before, &cp), want_rc);
    if (want_rc == 0) {
        assert_int_equal (cp.seq, want_seq);
        //  an auditor's check: the broker's public key signs this
        uint8_t msg [SGMQ_STORE_CHECKPOINT_MSG_SIZE];
        sgmq_store_checkpoint_message (&cp, msg);
        assert_int_equal (crypto_sign_verify_detached (
            cp.signature, msg, sizeof msg, s_sign_pk), 0);
        assert_int_not_equal (crypto_sign_verify_detached (
            cp.signature, msg, sizeof msg, s_other_pk), 0);
        //  and it is the chain hash at that seq
        sgmq_store_record_t rec;
        CHECK_OK (sgmq_store_get (txn, cp.seq, &rec));
        assert_memory_equal (rec.hash, cp.hash, 32);
        assert_true (cp.time >= rec.time);
    }
    sgmq_store_read_end (&txn);
}

static void
test_checkpoints (void **state)
{
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);
    fx->opts.checkpoint_every = 10;
    fx->store = s_open (fx->dir, &fx->opts);
    s_expect_checkpoint (fx->store, 0, SGMQ_STORE_E_NOT_FOUND, 0);
    //  empty store: nothing to sign
    CHECK_OK (sgmq_store_checkpoint (fx->store));
    s_expect_checkpoint (fx->store, 0, SGMQ_STORE_E_NOT_FOUND, 0);

    s_append_n (fx->store, 25, 5);      //  heads 5, 10, ... 25
    s_expect_checkpoint (fx->store, 0, 0, 20);
    s_expect_checkpoint (fx->store, 25, 0, 20);
    s_expect_checkpoint (fx->store, 20, 0, 20);
    s_expect_checkpoint (fx->store, 19, 0, 10);
    s_expect_checkpoint (fx->store, 10, 0, 10);
    s_expect_checkpoint (fx->store, 9, SGMQ_STORE_E_NOT_FOUND, 0);
    //  the clean close signs the head
    fx_reopen (fx);
    s_expect_checkpoint (fx->store, 0, 0, 25);
    //  explicit checkpoint: nothing new, then a new head
    CHECK_OK (sgmq_store_checkpoint (fx->store));
    s_append_n (fx->store, 3, 3);
    CHECK_OK (sgmq_store_checkpoint (fx->store));
    s_expect_checkpoint (fx->store, 0, 0, 28);
    s_expect_checkpoint (fx->store, 27, 0, 25);
    sgmq_store_verify_t report;
    CHECK_OK (sgmq_store_verify (fx->store, s_sign_pk, &report));
    assert_int_equal (report.checkpoints, 4);
    assert_int_equal (report.messages, 28);
    //  verified against another key: every signature fails
    CHECK_RC (sgmq_store_verify (fx->store, s_other_pk, &report),
              SGMQ_STORE_E_CORRUPT);
    assert_int_equal (report.bad_checkpoint, 10);
    assert_int_equal (report.bad_seq, 0);
    assert_non_null (strstr (report.reason, "signature"));
    //  NULL key: signatures skipped, chain agreement still checked
    CHECK_OK (sgmq_store_verify (fx->store, NULL, &report));

    //  without a signing key: no checkpoints, explicit one refused
    sgmq_store_close (&fx->store);
    fx->opts.signing_key = NULL;
    fx->store = s_open (fx->dir, &fx->opts);
    s_append_n (fx->store, 30, 10);
    CHECK_RC (sgmq_store_checkpoint (fx->store), SGMQ_STORE_E_INVALID);
    fx_reopen (fx);
    s_expect_checkpoint (fx->store, 0, 0, 28);
}

static void
test_verify_intact (void **state)
{
    fx_t *fx = *state;
    sgmq_store_verify_t report;
    CHECK_OK (sgmq_store_verify (fx->store, s_sign_pk, &report));
    assert_int_equal (report.messages, 0);
    s_append_n (fx->store, 120, 40);
    CHECK_OK (s_do_ack (fx->store, "exec-children", "K", 3, NULL));
    CHECK_OK (s_do_ack (fx->store, "exec-health", "K", 3, NULL));
    fx_reopen (fx);                     //  checkpoint at close
    CHECK_OK (sgmq_store_verify (fx->store, s_sign_pk, &report));
    assert_int_equal (report.messages, 120);
    assert_int_equal (report.acks, 2);
    assert_int_equal (report.checkpoints, 1);
    assert_int_equal (report.bad_seq, 0);
    assert_int_equal (report.bad_ack, 0);
    assert_int_equal (report.bad_checkpoint, 0);
    assert_string_equal (report.reason, "");
    //  verify while a read txn is open (MDB_NOTLS: several per thread)
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_txn_t *txn2 = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn2);
    CHECK_OK (sgmq_store_verify (fx->store, s_sign_pk, &report));
    sgmq_store_read_end (&txn2);
    sgmq_store_read_end (&txn);
}

//  Flip a byte of a stored record through raw LMDB: verify names it.
static void
test_tamper_flip (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 20, 20);
    sgmq_store_close (&fx->store);
    char *pristine = testutil_tmpdir ("store-pristine");
    s_copy_dir (fx->dir, pristine);

    //  positions: time, stored hash, a group name byte, the sealed body
    const long offsets [] = { 3, 20, 90, -5 };
    for (size_t i = 0; i < sizeof offsets / sizeof offsets [0]; i++) {
        s_copy_dir (pristine, fx->dir);
        s_raw_flip (fx->dir, "msgs", 5, offsets [i]);
        fx->store = s_open (fx->dir, &fx->opts);
        sgmq_store_verify_t report;
        CHECK_RC (sgmq_store_verify (fx->store, s_sign_pk, &report),
                  SGMQ_STORE_E_CORRUPT);
        if (report.bad_seq != 5)
            fail_msg ("offset %ld: bad_seq %llu (%s)", offsets [i],
                      (unsigned long long) report.bad_seq, report.reason);
        assert_int_equal (report.messages, 4);
        assert_non_null (strstr (report.reason, "message 5"));
        //  reading the others still works; the body flip will not open
        int rc;
        sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
        sgmq_store_record_t rec;
        CHECK_OK (sgmq_store_get (txn, 4, &rec));
        CHECK_OK (sgmq_store_get (txn, 6, &rec));
        if (offsets [i] < 0)
            CHECK_RC (sgmq_store_get (txn, 5, &rec), SGMQ_STORE_E_CORRUPT);
        sgmq_store_read_end (&txn);
        sgmq_store_close (&fx->store);
    }

    //  a flipped length byte makes the record malformed: E_CORRUPT, no crash
    s_copy_dir (pristine, fx->dir);
    s_raw_flip (fx->dir, "msgs", 9, 1 + 8 + 32 + 32);     //  sender length
    fx->store = s_open (fx->dir, &fx->opts);
    sgmq_store_verify_t report;
    CHECK_RC (sgmq_store_verify (fx->store, s_sign_pk, &report),
              SGMQ_STORE_E_CORRUPT);
    assert_int_equal (report.bad_seq, 9);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_RC (sgmq_store_get (txn, 9, &rec), SGMQ_STORE_E_CORRUPT);
    sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, NULL);
    int seen = 0, corrupt = 0;
    while ((rc = sgmq_store_iter_next (iter, &rec)) != SGMQ_STORE_E_NOT_FOUND) {
        if (rc == SGMQ_STORE_E_CORRUPT)
            corrupt++;
        else {
            CHECK_OK (rc);
            seen++;
        }
    }
    assert_int_equal (seen, 19);
    assert_int_equal (corrupt, 1);
    sgmq_store_iter_destroy (&iter);
    sgmq_store_read_end (&txn);
    testutil_rmtree (pristine);
    free (pristine);
}

static void
test_tamper_delete (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 20, 10);
    sgmq_store_close (&fx->store);
    char *pristine = testutil_tmpdir ("store-pristine");
    s_copy_dir (fx->dir, pristine);

    const uint64_t victims [] = { 7, 1, 20 };
    for (size_t i = 0; i < 3; i++) {
        s_copy_dir (pristine, fx->dir);
        s_raw_delete (fx->dir, "msgs", victims [i]);
        fx->store = s_open (fx->dir, &fx->opts);
        sgmq_store_verify_t report;
        CHECK_RC (sgmq_store_verify (fx->store, s_sign_pk, &report),
                  SGMQ_STORE_E_CORRUPT);
        if (report.bad_seq != victims [i])
            fail_msg ("deleted %llu: bad_seq %llu (%s)",
                      (unsigned long long) victims [i],
                      (unsigned long long) report.bad_seq, report.reason);
        assert_non_null (strstr (report.reason, "missing"));
        sgmq_store_close (&fx->store);
    }
    testutil_rmtree (pristine);
    free (pristine);
}

static void
test_tamper_ack (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 3, 3);
    CHECK_OK (s_do_ack (fx->store, "exec-children", "KA", 1, NULL));
    CHECK_OK (s_do_ack (fx->store, "exec-health", "KB", 2, NULL));
    CHECK_OK (s_do_ack (fx->store, "exec-police", "KC", 3, NULL));
    sgmq_store_close (&fx->store);
    s_raw_flip (fx->dir, "acklog", 2, -1);      //  a byte of the key
    fx->store = s_open (fx->dir, &fx->opts);
    sgmq_store_verify_t report;
    CHECK_RC (sgmq_store_verify (fx->store, s_sign_pk, &report),
              SGMQ_STORE_E_CORRUPT);
    assert_int_equal (report.bad_ack, 2);
    assert_int_equal (report.bad_seq, 0);
    assert_int_equal (report.acks, 1);
    assert_non_null (strstr (report.reason, "ack event 2"));
}

//  A history rewritten wholesale, chain and all, cannot carry the broker's
//  checkpoints: their hashes no longer match, and new ones cannot be made
//  without the signing key.
static void
test_tamper_rewrite (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 10, 10);
    sgmq_store_close (&fx->store);      //  signs seq 10

    //  the forger's history: same storage key, other content, own key
    char *forged = testutil_tmpdir ("store-forged");
    sgmq_store_options_t opts = fx->opts;
    opts.signing_key = s_other_sk;
    sgmq_store_t *store = s_open (forged, &opts);
    for (int i = 0; i < 10; i++) {
        sgmq_store_msg_t m = s_msg ("a different story");
        s_append_one (store, &m);
    }
    CHECK_OK (sgmq_store_checkpoint (store));
    sgmq_store_verify_t report;
    //  self-consistent under the forger's key
    CHECK_OK (sgmq_store_verify (store, s_other_pk, &report));
    CHECK_RC (sgmq_store_verify (store, s_sign_pk, &report),
              SGMQ_STORE_E_CORRUPT);                           //  not ours
    assert_int_equal (report.bad_checkpoint, 10);
    sgmq_store_close (&store);

    //  now graft the genuine checkpoint onto the forged chain
    raw_t from, to;
    s_raw_open (&from, fx->dir);
    MDB_dbi ckpt_from = s_raw_dbi (&from, "ckpt");
    uint8_t k [8];
    s_seq_key (k, 10);
    MDB_val key = { 8, k }, val;
    assert_int_equal (mdb_get (from.txn, ckpt_from, &key, &val), 0);
    uint8_t copy [256];
    assert_true (val.mv_size <= sizeof copy);
    memcpy (copy, val.mv_data, val.mv_size);
    size_t size = val.mv_size;
    s_raw_close (&from);
    s_raw_open (&to, forged);
    MDB_dbi ckpt_to = s_raw_dbi (&to, "ckpt");
    MDB_val nval = { size, copy };
    assert_int_equal (mdb_put (to.txn, ckpt_to, &key, &nval, 0), 0);
    s_raw_close (&to);
    store = s_open (forged, &opts);
    CHECK_RC (sgmq_store_verify (store, s_sign_pk, &report),
              SGMQ_STORE_E_CORRUPT);
    assert_int_equal (report.bad_checkpoint, 10);
    assert_non_null (strstr (report.reason, "rewritten"));
    sgmq_store_close (&store);
    testutil_rmtree (forged);
    free (forged);

    //  and cutting the tail after it was signed is found too
    s_raw_delete (fx->dir, "msgs", 10);
    raw_t raw;
    s_raw_open (&raw, fx->dir);
    //  a careful attacker also rewinds the head record to message 9
    MDB_dbi meta = s_raw_dbi (&raw, "meta"), msgs = s_raw_dbi (&raw, "msgs");
    s_seq_key (k, 9);
    assert_int_equal (mdb_get (raw.txn, msgs, &key, &val), 0);
    uint8_t head [48];
    s_seq_key (head, 9);
    memcpy (head + 8, (uint8_t *) val.mv_data + 1, 8);
    memcpy (head + 16, (uint8_t *) val.mv_data + 9, 32);
    MDB_val hkey = { 4, "head" }, hval = { 48, head };
    assert_int_equal (mdb_put (raw.txn, meta, &hkey, &hval, 0), 0);
    s_raw_close (&raw);
    opts = fx->opts;
    opts.signing_key = NULL;            //  do not sign the cut head at close
    store = s_open (fx->dir, &opts);
    CHECK_RC (sgmq_store_verify (store, s_sign_pk, &report),
              SGMQ_STORE_E_CORRUPT);
    assert_int_equal (report.bad_seq, 0);
    assert_int_equal (report.bad_checkpoint, 10);
    sgmq_store_close (&store);
}

typedef struct {
    uint64_t seq, time_add;
} s_head_edit_t;

static void
s_edit_head (uint8_t *head, size_t size, uint64_t seq, const void *arg)
{
    (void) seq;
    const s_head_edit_t *change = arg;
    assert_int_equal (size, 48);
    if (change->seq)
        s_seq_key (head, change->seq);
    uint64_t time = 0;
    for (int i = 0; i < 8; i++)
        time = (time << 8) | head [8 + i];
    s_seq_key (head + 8, time + change->time_add);
}

//  Rewrite the meta chain head (raw LMDB, store closed).
static void
s_raw_set_head (const char *dir, uint64_t seq, uint64_t time_add)
{
    s_head_edit_t change = { seq, time_add };
    s_raw_edit_key (dir, "meta", "head", 4, 0, s_edit_head, &change);
}

//  The clock behind the newest message (a step back): time stands still
//  rather than going backwards. And a head behind the stored messages
//  (damage): appends refuse with E_ORDER instead of overwriting.
static void
test_time_clamp_and_order (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 5, 5);
    sgmq_store_close (&fx->store);
    const uint64_t hour = 3600 * 1000;
    s_raw_set_head (fx->dir, 0, hour);  //  newest message "an hour ahead"
    fx->store = s_open (fx->dir, &fx->opts);
    sgmq_store_msg_t m = s_msg ("after the clock stepped back");
    sgmq_store_appended_t out;
    CHECK_OK (s_append_batch (fx->store, &m, 1, &out));
    uint64_t now = (uint64_t) time (NULL) * 1000;
    assert_true (out.time > now + hour - 60 * 1000);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_OK (sgmq_store_get (txn, 5, &rec));
    assert_true (rec.time < out.time);
    sgmq_store_read_end (&txn);
    //  the head's time is not part of any hash; the chain still verifies
    //  because the stored times never decrease
    s_verify_ok (fx->store);

    sgmq_store_close (&fx->store);
    s_raw_set_head (fx->dir, 3, 0);     //  head says 3, messages go to 6
    fx->store = s_open (fx->dir, &fx->opts);
    CHECK_RC (s_append_batch (fx->store, &m, 1, &out), SGMQ_STORE_E_ORDER);
    txn = sgmq_store_read (fx->store, &rc);
    CHECK_OK (sgmq_store_get (txn, 6, &rec));
    assert_string_equal (rec.sender, "police");
    assert_int_equal (rec.body_size, strlen ("after the clock stepped back"));
    sgmq_store_read_end (&txn);
    sgmq_store_verify_t report;
    CHECK_RC (sgmq_store_verify (fx->store, s_sign_pk, &report),
              SGMQ_STORE_E_CORRUPT);
    assert_int_equal (report.bad_seq, 4);
    assert_non_null (strstr (report.reason, "beyond the recorded head"));
    //  the fixture's close must not sign the damaged head
    sgmq_store_close (&fx->store);
    fx->opts.signing_key = NULL;
    fx->store = s_open (fx->dir, &fx->opts);
}

//  --------------------------------------------------------------------------
//  Encryption at rest

//  A body moved to another record does not open (AD binds the seq).
static void
test_moved_record (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 5, 5);
    sgmq_store_close (&fx->store);
    raw_t raw;
    s_raw_open (&raw, fx->dir);
    MDB_dbi msgs = s_raw_dbi (&raw, "msgs");
    uint8_t k3 [8], k4 [8];
    s_seq_key (k3, 3);
    s_seq_key (k4, 4);
    MDB_val key3 = { 8, k3 }, key4 = { 8, k4 }, val;
    assert_int_equal (mdb_get (raw.txn, msgs, &key3, &val), 0);
    uint8_t *copy = malloc (val.mv_size);
    memcpy (copy, val.mv_data, val.mv_size);
    MDB_val nval = { val.mv_size, copy };
    assert_int_equal (mdb_put (raw.txn, msgs, &key4, &nval, 0), 0);
    free (copy);
    s_raw_close (&raw);

    fx->store = s_open (fx->dir, &fx->opts);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_OK (sgmq_store_get (txn, 3, &rec));
    CHECK_RC (sgmq_store_get (txn, 4, &rec), SGMQ_STORE_E_CORRUPT);
    sgmq_store_read_end (&txn);
    sgmq_store_verify_t report;
    CHECK_RC (sgmq_store_verify (fx->store, s_sign_pk, &report),
              SGMQ_STORE_E_CORRUPT);
    assert_int_equal (report.bad_seq, 4);
}

static void
test_wrong_key (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 2, 2);
    sgmq_store_close (&fx->store);
    int rc;
    char why [256];
    sgmq_store_options_t opts = fx->opts;
    opts.storage_key = s_other_key;
    assert_null (sgmq_store_open (fx->dir, &opts, &rc, why, sizeof why));
    assert_int_equal (rc, SGMQ_STORE_E_KEY);
    assert_non_null (strstr (why, fx->dir));
    assert_non_null (strstr (why, "storage key"));
    //  right key, wrong key id
    opts = fx->opts;
    opts.key_id = 2;
    assert_null (sgmq_store_open (fx->dir, &opts, &rc, why, sizeof why));
    assert_int_equal (rc, SGMQ_STORE_E_KEY);
    assert_non_null (strstr (why, "key id"));
    //  the right one still opens
    fx->store = s_open (fx->dir, &fx->opts);
    s_verify_ok (fx->store);
}

static void
test_unknown_version (void **state)
{
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);
    raw_t raw;
    s_raw_open (&raw, fx->dir);
    MDB_dbi meta = s_raw_dbi (&raw, "meta");
    uint8_t v2 [4] = { 0, 0, 0, 3 };
    MDB_val key = { 6, "format" }, val = { 4, v2 };
    assert_int_equal (mdb_put (raw.txn, meta, &key, &val, 0), 0);
    s_raw_close (&raw);
    int rc;
    char why [256];
    assert_null (sgmq_store_open (fx->dir, &fx->opts, &rc, why, sizeof why));
    assert_int_equal (rc, SGMQ_STORE_E_VERSION);
    assert_non_null (strstr (why, "store format 3, this build reads 1 and 2"));
    assert_non_null (strstr (why, fx->dir));
    //  put it back: opens again (so fx_teardown has a store)
    v2 [3] = 2;
    s_raw_open (&raw, fx->dir);
    meta = s_raw_dbi (&raw, "meta");
    assert_int_equal (mdb_put (raw.txn, meta, &key, &val, 0), 0);
    s_raw_close (&raw);
    fx->store = s_open (fx->dir, &fx->opts);
}

//  Where a msgs record's recipient list (u32 count, each u16 len name)
//  starts, and its size: after version, time, hash, prev and the
//  canonical region (sender, key, kind, u16 group count, each group).
static void
s_rec_recipients (const uint8_t *rec, size_t rec_size, size_t *at,
                  size_t *size)
{
    size_t p = 1 + 8 + 32 + 32;
    for (int i = 0; i < 3; i++)
        p += 2 + (size_t) (rec [p] << 8 | rec [p + 1]);
    size_t groups = (size_t) (rec [p] << 8 | rec [p + 1]);
    p += 2;
    for (size_t i = 0; i < groups; i++)
        p += 2 + (size_t) (rec [p] << 8 | rec [p + 1]);
    *at = p;
    size_t count = (size_t) rec [p] << 24 | (size_t) rec [p + 1] << 16
                 | (size_t) rec [p + 2] << 8 | rec [p + 3];
    p += 4;
    for (size_t i = 0; i < count; i++)
        p += 2 + (size_t) (rec [p] << 8 | rec [p + 1]);
    *size = p - *at;
    assert_true (p + 4 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + 4
                 < rec_size);
}

//  How test_recipients_bound edits message 5.
typedef enum {
    EDIT_RECIPIENT,     //  one byte of the first recipient's name
    EDIT_VERSION,       //  version byte 2 -> 1, nothing else
    EDIT_RESEAL_V1,     //  a record as format 1 wrote it: version 1, body
                        //  sealed with the version 1 associated data
} rec_edit_t;

static void
s_body_ad_test (uint8_t *ad, int version, uint64_t seq, const uint8_t *rec,
                size_t at, size_t size)
{
    memcpy (ad, version == 1 ? "sgmq-body-v1" : "sgmq-body-v2", 12);
    s_seq_key (ad + 12, seq);
    memcpy (ad + 20, "\0\0\0\1", 4);        //  key id 1 (fx's options)
    if (version == 2)
        crypto_generichash (ad + 24, 32, rec + at, size, NULL, 0);
}

static void
s_edit_msg (uint8_t *rec, size_t rec_size, uint64_t seq, const void *arg)
{
    rec_edit_t edit = *(const rec_edit_t *) arg;
    assert_int_equal (rec [0], 2);
    size_t at, size;
    s_rec_recipients (rec, rec_size, &at, &size);
    if (edit == EDIT_RECIPIENT)
        rec [at + 4 + 2] ^= 0x01;
    else
        rec [0] = 1;
    if (edit == EDIT_RESEAL_V1) {
        const size_t npub = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
        uint8_t *nonce = rec + at + size + 4;
        uint8_t *sealed = nonce + npub + 4;
        size_t sealed_size = rec_size - (size_t) (sealed - rec);
        uint8_t ad [12 + 8 + 4 + 32], plain [256];
        unsigned long long plain_size, out_size;
        assert_true (sealed_size <= sizeof plain);
        s_body_ad_test (ad, 2, seq, rec, at, size);
        assert_int_equal (crypto_aead_xchacha20poly1305_ietf_decrypt (
            plain, &plain_size, NULL, sealed, sealed_size, ad, sizeof ad,
            nonce, s_key), 0);
        s_body_ad_test (ad, 1, seq, rec, at, size);
        crypto_aead_xchacha20poly1305_ietf_encrypt (
            sealed, &out_size, plain, plain_size, ad, 12 + 8 + 4, NULL,
            nonce, s_key);
        assert_int_equal (out_size, sealed_size);
    }
}

static void
s_raw_edit_msg (const char *dir, uint64_t seq, rec_edit_t edit)
{
    s_raw_edit (dir, "msgs", seq, s_edit_msg, &edit);
}

typedef struct {
    uint32_t set;               //  0: leave it
    uint32_t was;
} s_format_edit_t;

static void
s_edit_format (uint8_t *p, size_t size, uint64_t seq, const void *arg)
{
    (void) seq;
    s_format_edit_t *change = (s_format_edit_t *) arg;
    assert_int_equal (size, 4);
    change->was = (uint32_t) p [0] << 24 | (uint32_t) p [1] << 16
                | (uint32_t) p [2] << 8 | p [3];
    if (change->set) {
        memset (p, 0, 3);
        p [3] = (uint8_t) change->set;
    }
}

//  The store's format record (raw LMDB, store closed), set to `set` unless
//  0; returns what it was.
static uint32_t
s_raw_format (const char *dir, uint32_t set)
{
    s_format_edit_t change = { set, 0 };
    s_raw_edit_key (dir, "meta", "format", 6, 0, s_edit_format, &change);
    return change.was;
}

//  Who a message was addressed to is bound to its sealed body: an edited
//  recipient, or the record turned back to version 1 to escape that,
//  fails verify and the read. A format 1 store (version 1 records) still
//  reads and verifies, and is marked format 2 when opened.
static void
test_recipients_bound (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 10, 10);
    sgmq_store_close (&fx->store);
    assert_int_equal (s_raw_format (fx->dir, 0), 2);
    char *pristine = testutil_tmpdir ("store-pristine");
    s_copy_dir (fx->dir, pristine);

    const rec_edit_t attacks [] = { EDIT_RECIPIENT, EDIT_VERSION };
    for (size_t i = 0; i < sizeof attacks / sizeof attacks [0]; i++) {
        s_copy_dir (pristine, fx->dir);
        s_raw_edit_msg (fx->dir, 5, attacks [i]);
        fx->store = s_open (fx->dir, &fx->opts);
        sgmq_store_verify_t report;
        CHECK_RC (sgmq_store_verify (fx->store, s_sign_pk, &report),
                  SGMQ_STORE_E_CORRUPT);
        assert_int_equal (report.bad_seq, 5);
        assert_int_equal (report.messages, 4);
        assert_non_null (strstr (report.reason, "message 5"));
        int rc;
        sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
        sgmq_store_record_t rec;
        CHECK_RC (sgmq_store_get (txn, 5, &rec), SGMQ_STORE_E_CORRUPT);
        CHECK_OK (sgmq_store_get (txn, 6, &rec));
        sgmq_store_read_end (&txn);
        sgmq_store_close (&fx->store);
    }

    //  Format 1, as an older build left it: the wrong key is refused and
    //  leaves it format 1; the right one reads it and marks it 2.
    s_copy_dir (pristine, fx->dir);
    s_raw_edit_msg (fx->dir, 5, EDIT_RESEAL_V1);
    s_raw_format (fx->dir, 1);
    sgmq_store_options_t other = fx->opts;
    other.storage_key = s_other_key;
    int rc;
    char why [256];
    assert_null (sgmq_store_open (fx->dir, &other, &rc, why, sizeof why));
    assert_int_equal (rc, SGMQ_STORE_E_KEY);
    assert_int_equal (s_raw_format (fx->dir, 0), 1);
    //  A check (keep_format) reads it and leaves it format 1, refusing to
    //  add version 2 records to it.
    sgmq_store_options_t keep = fx->opts;
    keep.keep_format = true;
    fx->store = s_open (fx->dir, &keep);
    s_verify_ok (fx->store);
    sgmq_store_msg_t extra = s_msg ("not into a format 1 store");
    sgmq_store_appended_t appended;
    CHECK_RC (s_append_batch (fx->store, &extra, 1, &appended), SGMQ_STORE_E_VERSION);
    sgmq_store_close (&fx->store);
    assert_int_equal (s_raw_format (fx->dir, 0), 1);
    fx->store = s_open (fx->dir, &fx->opts);
    s_verify_ok (fx->store);
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_OK (sgmq_store_get (txn, 5, &rec));
    assert_int_equal (rec.body_size, strlen ("filler body for the chain"));
    assert_memory_equal (rec.body, "filler body for the chain", rec.body_size);
    assert_int_equal (rec.recipient_count, 3);
    sgmq_store_read_end (&txn);
    s_append_n (fx->store, 1, 1);                   //  a version 2 record
    s_verify_ok (fx->store);
    sgmq_store_close (&fx->store);
    assert_int_equal (s_raw_format (fx->dir, 0), 2);
    fx->store = s_open (fx->dir, &fx->opts);
    testutil_rmtree (pristine);
    free (pristine);
}

//  memmem is a GNU extension; the build is plain C11 + POSIX.
static const void *
s_memmem (const void *hay, size_t hay_size, const void *needle, size_t size)
{
    const char *h = hay;
    for (size_t i = 0; size <= hay_size && i <= hay_size - size; i++)
        if (memcmp (h + i, needle, size) == 0)
            return h + i;
    return NULL;
}

static void
test_plaintext_not_on_disk (void **state)
{
    fx_t *fx = *state;
    const char *secret = "Child: Zebedee Quokkaworth, DOB 2016-03-04, "
                         "disclosed to teacher";
    sgmq_store_msg_t m = s_msg (secret);
    m.sender = "school-sentinel-name";
    for (int i = 0; i < 20; i++)
        s_append_one (fx->store, &m);
    sgmq_store_close (&fx->store);
    char path [4096];
    snprintf (path, sizeof path, "%s/data.mdb", fx->dir);
    size_t size;
    char *data = testutil_read_file (path, &size);
    assert_non_null (data);
    //  sanity: the file is the one we wrote (metadata is in clear)
    assert_non_null (s_memmem (data, size, "school-sentinel-name", 20));
    assert_null (s_memmem (data, size, secret, strlen (secret)));
    assert_null (s_memmem (data, size, "Zebedee", 7));
    assert_null (s_memmem (data, size, "Quokkaworth", 11));
    free (data);
    fx->store = s_open (fx->dir, &fx->opts);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_OK (sgmq_store_get (txn, 20, &rec));
    assert_int_equal (rec.body_size, strlen (secret));
    assert_memory_equal (rec.body, secret, rec.body_size);
    sgmq_store_read_end (&txn);
}

//  --------------------------------------------------------------------------
//  Capacity and faults

#define KIB 1024

typedef struct {
    size_t count;
    size_t body_size;
    int runs;
    uint64_t first_seq, last_seq;
    int first_rc;               //  first append error seen in the run
} fill_t;

static int
s_fill_fn (sgmq_store_txn_t *txn, void *arg)
{
    fill_t *f = arg;
    f->runs++;
    f->first_seq = f->last_seq = 0;     //  outputs reset on every run
    f->first_rc = 0;
    uint8_t *body = malloc (f->body_size);
    for (size_t i = 0; i < f->count; i++) {
        uint64_t head;
        int rc = sgmq_store_head (txn, &head, NULL);
        if (rc) {
            //  a careless caller goes on: the error is sticky
            if (!f->first_rc)
                f->first_rc = rc;
            continue;
        }
        //  body derived from its seq
        for (size_t j = 0; j < f->body_size; j++)
            body [j] = (uint8_t) ((head + 1) * 31 + j);
        sgmq_store_msg_t m = s_msg ("");
        m.body = body;
        m.body_size = f->body_size;
        sgmq_store_appended_t out;
        rc = sgmq_store_append (txn, &m, &out);
        if (rc) {
            if (!f->first_rc)
                f->first_rc = rc;
            continue;
        }
        if (!f->first_seq)
            f->first_seq = out.seq;
        f->last_seq = out.seq;
    }
    free (body);
    return 0;
}

static void
s_check_filled (sgmq_store_t *store, uint64_t from, uint64_t to,
                size_t body_size)
{
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (store, &rc);
    assert_non_null (txn);
    for (uint64_t seq = from; seq <= to; seq++) {
        sgmq_store_record_t rec;
        CHECK_OK (sgmq_store_get (txn, seq, &rec));
        assert_int_equal (rec.body_size, body_size);
        for (size_t j = 0; j < body_size; j++)
            if (rec.body [j] != (uint8_t) (seq * 31 + j))
                fail_msg ("seq %llu byte %zu", (unsigned long long) seq, j);
    }
    sgmq_store_read_end (&txn);
}

static void
test_map_full_grows (void **state)
{
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);
    fx->opts.map_size = 256 * KIB;
    fx->store = s_open (fx->dir, &fx->opts);
    size_t initial = sgmq_store_map_size (fx->store);
    //  one batch far beyond the map: fn runs again after each growth, and
    //  its outputs are those of the committed run
    fill_t f = { .count = 2000, .body_size = KIB };
    CHECK_OK (sgmq_store_write (fx->store, s_fill_fn, &f));
    assert_true (f.runs >= 2);
    assert_int_equal (f.first_seq, 1);
    assert_int_equal (f.last_seq, 2000);
    assert_int_equal (f.first_rc, 0);
    for (int i = 0; i < 5; i++) {
        f.count = 400;
        CHECK_OK (sgmq_store_write (fx->store, s_fill_fn, &f));
    }
    assert_int_equal (s_head (fx->store), 4000);
    assert_true (sgmq_store_map_size (fx->store) >= 4 * initial);
    s_check_filled (fx->store, 1, 4000, KIB);
    fx_reopen (fx);
    s_check_filled (fx->store, 3990, 4000, KIB);
    s_verify_ok (fx->store);
}

//  Appends (which add pending deliveries, splitting the pending tree's
//  pages) interleaved in one transaction with deliveries and acks of the
//  messages just before (which find the pending record once and update or
//  remove it in place), in a map so small that the batch runs again.
typedef struct {
    size_t count;
    int runs;
} mixed_t;

static int
s_mixed_fn (sgmq_store_txn_t *txn, void *arg)
{
    mixed_t *mx = arg;
    mx->runs++;
    uint8_t body [KIB];
    for (size_t i = 0; i < mx->count; i++) {
        uint64_t head;
        int rc = sgmq_store_head (txn, &head, NULL);
        if (rc)
            return 0;                   //  sticky: the store runs us again
        memset (body, (int) (head + 1), sizeof body);
        sgmq_store_msg_t m = s_msg ("");
        m.body = body;
        m.body_size = sizeof body;
        sgmq_store_appended_t out;
        if (sgmq_store_append (txn, &m, &out) || !head)
            continue;
        sgmq_store_acked_t acked;
        if (sgmq_store_delivered (txn, "exec-children", head, false, NULL)
        ||  sgmq_store_ack (txn, "exec-health", "KEYhealth", head, &acked)
        ||  sgmq_store_delivered (txn, "exec-health", head, false, NULL)
                != SGMQ_STORE_E_NOT_FOUND)
            return 0;
    }
    return 0;
}

static void
test_mixed_batch_grows (void **state)
{
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);
    fx->opts.map_size = 256 * KIB;
    fx->store = s_open (fx->dir, &fx->opts);
    mixed_t mx = { .count = 1500 };
    CHECK_OK (sgmq_store_write (fx->store, s_mixed_fn, &mx));
    assert_true (mx.runs >= 2);
    assert_int_equal (s_head (fx->store), 1500);

    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn);
    for (uint64_t seq = 1; seq <= 1500; seq++) {
        sgmq_store_delivery_t d;
        CHECK_OK (sgmq_store_delivery (txn, "exec-children", seq, &d));
        assert_int_equal (d.state, seq < 1500 ? SGMQ_STORE_DELIVERED : SGMQ_STORE_PENDING);
        assert_int_equal (d.count, seq < 1500 ? 1 : 0);
        CHECK_OK (sgmq_store_delivery (txn, "exec-health", seq, &d));
        assert_int_equal (d.state, seq < 1500 ? SGMQ_STORE_ACKED : SGMQ_STORE_PENDING);
        CHECK_OK (sgmq_store_delivery (txn, "exec-police", seq, &d));
        assert_int_equal (d.state, SGMQ_STORE_PENDING);
        assert_int_equal (d.count, 0);
    }
    //  One ack event per ack, in order, none from the runs thrown away.
    sgmq_store_ack_event_t ev;
    uint64_t events = 0;
    while (sgmq_store_ack_log_next (txn, events, &ev) == 0) {
        events++;
        assert_int_equal (ev.event, events);
        assert_int_equal (ev.seq, events);
        assert_string_equal (ev.recipient, "exec-health");
    }
    assert_int_equal (events, 1499);
    //  What is left to deliver to the member that acked: the last only.
    sgmq_store_delivery_t d;
    CHECK_OK (sgmq_store_unacked_next (txn, "exec-health", 0, &d));
    assert_int_equal (d.seq, 1500);
    CHECK_RC (sgmq_store_unacked_next (txn, "exec-health", d.seq, &d),
              SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_read_end (&txn);
    s_verify_ok (fx->store);
}

static void
test_map_cap_full (void **state)
{
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);
    fx->opts.map_size = 512 * KIB;
    fx->opts.map_size_max = 2048 * KIB;
    fx->store = s_open (fx->dir, &fx->opts);
    fill_t f = { .count = 100, .body_size = 4 * KIB };   //  ~0.5 MiB
    CHECK_OK (sgmq_store_write (fx->store, s_fill_fn, &f));
    assert_int_equal (f.last_seq, 100);
    //  a batch that cannot fit under the cap
    f.count = 1000;                                     //  ~5 MiB
    CHECK_RC (sgmq_store_write (fx->store, s_fill_fn, &f), SGMQ_STORE_E_FULL);
    assert_int_equal (sgmq_store_map_size (fx->store), 2048 * KIB);
    //  nothing of it was kept
    assert_int_equal (s_head (fx->store), 100);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_RC (sgmq_store_get (txn, 101, &rec), SGMQ_STORE_E_NOT_FOUND);
    uint64_t count;
    CHECK_OK (sgmq_store_unacked_count (txn, "exec-children", &count));
    assert_int_equal (count, 100);
    sgmq_store_read_end (&txn);
    s_verify_ok (fx->store);
    //  still writable
    f.count = 10;
    CHECK_OK (sgmq_store_write (fx->store, s_fill_fn, &f));
    assert_int_equal (f.first_seq, 101);
    s_check_filled (fx->store, 1, 110, 4 * KIB);
    s_verify_ok (fx->store);
}

//  The disk itself fills (a 2 MiB tmpfs): the batch fails whole with
//  E_FULL, the store stays readable, and writes work once space is freed.
static void
test_disk_full (void **state)
{
    (void) state;
    char *dir = testutil_tmpdir ("store-tmpfs");
    assert_non_null (dir);
    if (mount ("sgmq-test", dir, "tmpfs", 0, "size=2m,mode=0700") != 0) {
        print_message ("      skipped: cannot mount a tmpfs (%s); run as root "
                       "to test a full disk\n", strerror (errno));
        testutil_rmtree (dir);
        free (dir);
        skip ();
    }
    char filler [4096];
    snprintf (filler, sizeof filler, "%s/filler", dir);
    size_t filler_size = 384 * KIB;
    char *zeros = calloc (1, filler_size);
    assert_int_equal (testutil_write_file (filler, zeros, filler_size), 0);
    free (zeros);

    sgmq_store_options_t opts = s_opts ();
    sgmq_store_t *store = s_open (dir, &opts);
    uint64_t committed = 0;
    int rc = 0;
    fill_t f = { .count = 20, .body_size = 8 * KIB };
    for (int i = 0; i < 100 && rc == 0; i++) {
        rc = sgmq_store_write (store, s_fill_fn, &f);
        if (rc == 0)
            committed = f.last_seq;
    }
    CHECK_RC (rc, SGMQ_STORE_E_FULL);
    assert_true (committed >= 20);
    //  nothing partial, all readable, chain intact
    assert_int_equal (s_head (store), committed);
    s_check_filled (store, 1, committed, 8 * KIB);
    s_verify_ok (store);
    //  again full: fails the same way, still no damage
    CHECK_RC (sgmq_store_write (store, s_fill_fn, &f), SGMQ_STORE_E_FULL);
    assert_int_equal (s_head (store), committed);
    //  free space: writes work again
    assert_int_equal (unlink (filler), 0);
    CHECK_OK (sgmq_store_write (store, s_fill_fn, &f));
    assert_int_equal (f.first_seq, committed + 1);
    s_check_filled (store, 1, f.last_seq, 8 * KIB);
    sgmq_store_close (&store);
    store = s_open (dir, &opts);
    s_verify_ok (store);
    sgmq_store_close (&store);
    assert_int_equal (umount (dir), 0);
    testutil_rmtree (dir);
    free (dir);
}

static void
test_fn_abort (void **state)
{
    fx_t *fx = *state;
    sgmq_store_msg_t msgs [3] = { s_msg ("a"), s_msg ("b"), s_msg ("c") };
    sgmq_store_appended_t out [3];
    batch_t b = { .msgs = msgs, .count = 3, .out = out, .ret = 42 };
    CHECK_RC (sgmq_store_write (fx->store, s_batch_fn, &b), 42);
    assert_int_equal (b.runs, 1);
    assert_int_equal (out [2].seq, 3);  //  it did append, then aborted
    assert_int_equal (s_head (fx->store), 0);
    int rc;
    uint64_t count;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t rec;
    CHECK_RC (sgmq_store_get (txn, 1, &rec), SGMQ_STORE_E_NOT_FOUND);
    CHECK_OK (sgmq_store_unacked_count (txn, "exec-children", &count));
    assert_int_equal (count, 0);
    sgmq_store_read_end (&txn);
    //  the same seqs are handed out next time
    b.ret = 0;
    CHECK_OK (sgmq_store_write (fx->store, s_batch_fn, &b));
    assert_int_equal (out [0].seq, 1);
    s_verify_ok (fx->store);
}

//  Appends are sealed and hashed beside the writer (enough of them to wake
//  the sealer thread), and anything reading messages or the head in the
//  same txn sees them at once; a write aborted with jobs queued keeps
//  nothing, and the chain goes on from the last commit.
typedef struct {
    size_t count;               //  appends
    size_t read_at;             //  after this many, read in the txn
    int ret;
    char bodies [400][16];
    uint8_t hash_mid [32];      //  head hash read in the txn
    uint64_t seq_mid;
    bool mid_ok;
} sealed_t;

static int
s_sealed_fn (sgmq_store_txn_t *txn, void *arg)
{
    sealed_t *sd = arg;
    for (size_t i = 0; i < sd->count; i++) {
        sgmq_store_msg_t m = s_msg (sd->bodies [i]);
        sgmq_store_appended_t out;
        int rc = sgmq_store_append (txn, &m, &out);
        if (rc)
            return rc;
        if (i + 1 != sd->read_at)
            continue;
        //  The newest append reads back whole, chained to the one before.
        sgmq_store_record_t rec;
        uint8_t prev [32];
        if (sgmq_store_get (txn, out.seq - 1, &rec) != 0)
            continue;                   //  mid_ok stays false
        memcpy (prev, rec.hash, 32);
        sd->mid_ok = sgmq_store_get (txn, out.seq, &rec) == 0
                  && memcmp (rec.prev, prev, 32) == 0
                  && rec.body_size == strlen (sd->bodies [i])
                  && memcmp (rec.body, sd->bodies [i], rec.body_size) == 0
                  && sgmq_store_head (txn, &sd->seq_mid, sd->hash_mid) == 0
                  && memcmp (sd->hash_mid, rec.hash, 32) == 0;
    }
    return sd->ret;
}

static void
test_sealed_beside_writer (void **state)
{
    fx_t *fx = *state;
    sealed_t *sd = calloc (1, sizeof *sd);
    assert_non_null (sd);
    for (size_t i = 0; i < 400; i++)
        snprintf (sd->bodies [i], sizeof sd->bodies [i], "body %zu", i + 1);
    sd->count = 300;
    sd->read_at = 150;
    CHECK_OK (sgmq_store_write (fx->store, s_sealed_fn, sd));
    assert_true (sd->mid_ok);
    assert_int_equal (sd->seq_mid, 150);
    assert_int_equal (s_head (fx->store), 300);

    //  An abort with 400 queued (none read back): nothing kept.
    sd->count = 400;
    sd->read_at = 0;
    sd->ret = 42;
    CHECK_RC (sgmq_store_write (fx->store, s_sealed_fn, sd), 42);
    assert_int_equal (s_head (fx->store), 300);

    //  The next write chains from seq 300, every body as it was given.
    sd->count = 40;
    sd->ret = 0;
    CHECK_OK (sgmq_store_write (fx->store, s_sealed_fn, sd));
    assert_int_equal (s_head (fx->store), 340);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    assert_non_null (txn);
    uint8_t prev [32] = { 0 };
    for (uint64_t seq = 1; seq <= 340; seq++) {
        sgmq_store_record_t rec;
        CHECK_OK (sgmq_store_get (txn, seq, &rec));
        assert_memory_equal (rec.prev, prev, 32);
        const char *body = sd->bodies [seq <= 300 ? seq - 1 : seq - 301];
        assert_int_equal (rec.body_size, strlen (body));
        assert_memory_equal (rec.body, body, rec.body_size);
        memcpy (prev, rec.hash, 32);
    }
    sgmq_store_read_end (&txn);
    free (sd);
    s_verify_ok (fx->store);
}


//  A read txn open while the map must grow: E_BUSY, nothing stored.
static void
test_busy_reader (void **state)
{
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);
    fx->opts.map_size = 256 * KIB;
    fx->store = s_open (fx->dir, &fx->opts);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    fill_t f = { .count = 1000, .body_size = KIB };
    CHECK_RC (sgmq_store_write (fx->store, s_fill_fn, &f), SGMQ_STORE_E_BUSY);
    uint64_t head;
    CHECK_OK (sgmq_store_head (txn, &head, NULL));
    assert_int_equal (head, 0);
    sgmq_store_read_end (&txn);
    assert_int_equal (s_head (fx->store), 0);
    CHECK_OK (sgmq_store_write (fx->store, s_fill_fn, &f));
    assert_int_equal (s_head (fx->store), 1000);
}

static void
test_backup (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 50, 25);
    CHECK_OK (s_do_ack (fx->store, "exec-children", "KA", 7, NULL));
    char *dir = testutil_tmpdir ("store-backup");
    //  taken while a read txn is open: a consistent snapshot
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    CHECK_OK (sgmq_store_backup (fx->store, dir));
    sgmq_store_read_end (&txn);
    //  not into a non-empty directory
    CHECK_RC (sgmq_store_backup (fx->store, dir), SGMQ_STORE_E_INVALID);
    CHECK_RC (sgmq_store_backup (fx->store, "/nonexistent/backup"), ENOENT);
    char path [4096];
    snprintf (path, sizeof path, "%s/data.mdb", dir);
    struct stat st;
    assert_int_equal (stat (path, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0600);
    sgmq_store_t *copy = s_open (dir, &fx->opts);
    assert_int_equal (s_head (copy), 50);
    sgmq_store_verify_t report;
    CHECK_OK (sgmq_store_verify (copy, s_sign_pk, &report));
    assert_int_equal (report.messages, 50);
    assert_int_equal (report.acks, 1);
    s_check_filled (copy, 1, 0, 0);
    sgmq_store_close (&copy);
    testutil_rmtree (dir);
    free (dir);
}

//  A reader that died holding a slot: the store's open clears it (while
//  another process keeps the environment open, so LMDB cannot simply
//  reset the lock file).
static int
s_count_reader (const char *msg, void *ctx)
{
    if (!strstr (msg, "pid") && !strstr (msg, "(no active"))
        (*(int *) ctx)++;
    return 0;
}

static void
test_stale_readers (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 10, 10);
    sgmq_store_close (&fx->store);      //  never fork with a store open

    int to_a [2], from_a [2], from_b [2];
    assert_int_equal (pipe (to_a), 0);
    assert_int_equal (pipe (from_a), 0);
    assert_int_equal (pipe (from_b), 0);
    pid_t a = fork ();
    assert_true (a >= 0);
    if (a == 0) {
        //  A: keeps the environment open; lists readers on request
        MDB_env *env;
        if (mdb_env_create (&env) || mdb_env_set_maxdbs (env, 32)
        ||  mdb_env_open (env, fx->dir, 0, 0600))
            _exit (1);
        char c = 'o';
        if (write (from_a [1], &c, 1) != 1)
            _exit (1);
        while (read (to_a [0], &c, 1) == 1 && c == 'L') {
            int count = 0;
            mdb_reader_list (env, s_count_reader, &count);
            char n = (char) count;
            if (write (from_a [1], &n, 1) != 1)
                _exit (1);
        }
        mdb_env_close (env);
        _exit (0);
    }
    char c;
    assert_int_equal (read (from_a [0], &c, 1), 1);
    pid_t b = fork ();
    assert_true (b >= 0);
    if (b == 0) {
        //  B: takes a reader slot, then dies without releasing it
        MDB_env *env;
        MDB_txn *txn;
        if (mdb_env_create (&env) || mdb_env_set_maxdbs (env, 32)
        ||  mdb_env_open (env, fx->dir, 0, 0600)
        ||  mdb_txn_begin (env, NULL, MDB_RDONLY, &txn))
            _exit (1);
        c = 'r';
        if (write (from_b [1], &c, 1) != 1)
            _exit (1);
        pause ();
        _exit (0);
    }
    assert_int_equal (read (from_b [0], &c, 1), 1);
    kill (b, SIGKILL);
    waitpid (b, NULL, 0);

    c = 'L';
    assert_int_equal (write (to_a [1], &c, 1), 1);
    assert_int_equal (read (from_a [0], &c, 1), 1);
    assert_int_equal (c, 1);            //  B's stale slot
    fx->store = s_open (fx->dir, &fx->opts);
    c = 'L';
    assert_int_equal (write (to_a [1], &c, 1), 1);
    assert_int_equal (read (from_a [0], &c, 1), 1);
    assert_int_equal (c, 0);            //  cleared at open
    //  and the store works
    s_append_n (fx->store, 10, 10);
    assert_int_equal (s_head (fx->store), 20);
    s_verify_ok (fx->store);
    sgmq_store_close (&fx->store);
    c = 'q';
    assert_int_equal (write (to_a [1], &c, 1), 1);
    int status;
    waitpid (a, &status, 0);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    close (to_a [0]); close (to_a [1]);
    close (from_a [0]); close (from_a [1]);
    close (from_b [0]); close (from_b [1]);
    fx->store = s_open (fx->dir, &fx->opts);
}

static void
s_expect_open_fails (const char *dir, int want_rc, const char *want_why)
{
    int rc;
    char why [512];
    sgmq_store_options_t opts = s_opts ();
    assert_null (sgmq_store_open (dir, &opts, &rc, why, sizeof why));
    if (rc != want_rc)
        fail_msg ("open: %d (%s), wanted %d: %s", rc,
                  sgmq_store_strerror (rc), want_rc, why);
    if (!strstr (why, want_why))
        fail_msg ("open: \"%s\" does not say \"%s\"", why, want_why);
    assert_non_null (strstr (why, "data.mdb"));
}

static void
test_damaged_files (void **state)
{
    fx_t *fx = *state;
    s_append_n (fx->store, 300, 100);
    sgmq_store_close (&fx->store);
    char path [4096];
    snprintf (path, sizeof path, "%s/data.mdb", fx->dir);
    size_t size;
    char *data = testutil_read_file (path, &size);
    assert_non_null (data);
    assert_true (size > 64 * KIB);

    //  truncated to half
    assert_int_equal (truncate (path, (off_t) size / 2), 0);
    s_expect_open_fails (fx->dir, SGMQ_STORE_E_CORRUPT, "truncated");
    //  truncated to nothing
    assert_int_equal (truncate (path, 0), 0);
    s_expect_open_fails (fx->dir, SGMQ_STORE_E_CORRUPT, "empty");
    //  garbage over the whole file
    for (size_t i = 0; i < size; i++)
        data [i] = (char) s_rand ();
    assert_int_equal (testutil_write_file (path, data, size), 0);
    s_expect_open_fails (fx->dir, SGMQ_STORE_E_CORRUPT, "damaged");
    //  garbage over the first page only
    testutil_write_file (path, data, 4096);
    s_expect_open_fails (fx->dir, SGMQ_STORE_E_CORRUPT, "damaged");
    free (data);
    //  a fresh store in the fixture's place for teardown
    testutil_rmtree (fx->dir);
    assert_int_equal (mkdir (fx->dir, 0700), 0);
    fx->store = s_open (fx->dir, &fx->opts);
}

//  --------------------------------------------------------------------------
//  sgmq_store_copy: the online backup (`sgmq-broker --backup`), taken by
//  another process than the broker's. The store is held open and written
//  by a child process here, as a running broker holds it: LMDB forbids
//  opening one environment twice in a process, so the copy is never taken
//  by the process that has the store open.

#define S_COPY_BODY 100                 //  bytes per message (s_fill_fn)

//  The child: open the store, append 50 messages, say 'o'; then on 'w'
//  append batches until the parent writes again (saying 'o' after the
//  first batch), on 'q' close and exit. No cmocka here: exit codes only.
static void __attribute__ ((noreturn))
s_copy_writer (const char *dir, const sgmq_store_options_t *opts,
               int from_parent, int to_parent)
{
    int rc;
    sgmq_store_t *store = sgmq_store_open (dir, opts, &rc, NULL, 0);
    fill_t f = { .count = 50, .body_size = S_COPY_BODY };
    if (!store || sgmq_store_write (store, s_fill_fn, &f) || f.first_rc)
        _exit (1);
    char c = 'o';
    if (write (to_parent, &c, 1) != 1)
        _exit (1);
    while (read (from_parent, &c, 1) == 1 && c == 'w') {
        f.count = 10;
        for (int batches = 0; ; batches++) {
            if (sgmq_store_write (store, s_fill_fn, &f) || f.first_rc)
                _exit (1);
            if (batches == 0 && write (to_parent, "o", 1) != 1)
                _exit (1);
            struct pollfd fd = { from_parent, POLLIN, 0 };
            if (poll (&fd, 1, 0) > 0)
                break;
        }
        if (read (from_parent, &c, 1) != 1)
            _exit (1);
    }
    sgmq_store_close (&store);
    _exit (c == 'q' ? 0 : 1);
}

static void
s_expect_copy_fails (const char *dir, const char *dest, int want_rc,
                     const char *want_why)
{
    char why [512];
    int rc = sgmq_store_copy (dir, dest, why, sizeof why);
    if (rc != want_rc)
        fail_msg ("copy %s: %d (%s), wanted %d: %s", dir, rc,
                  sgmq_store_strerror (rc), want_rc, why);
    if (!strstr (why, want_why))
        fail_msg ("copy: \"%s\" does not say \"%s\"", why, want_why);
}

static bool
s_dir_is_empty (const char *dir)
{
    DIR *d = opendir (dir);
    assert_non_null (d);
    struct dirent *entry;
    bool empty = true;
    while ((entry = readdir (d)))
        if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, ".."))
            empty = false;
    closedir (d);
    return empty;
}

//  The copy's head, checked against the original's record at that seq.
static uint64_t
s_check_copy (sgmq_store_t *original, const char *dest)
{
    char path [4096];
    snprintf (path, sizeof path, "%s/data.mdb", dest);
    struct stat st;
    assert_int_equal (stat (path, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0600);
    sgmq_store_options_t opts = s_opts ();
    sgmq_store_t *copy = s_open (dest, &opts);
    int rc;
    uint64_t seq;
    uint8_t hash [SGMQ_STORE_HASH_SIZE];
    sgmq_store_txn_t *txn = sgmq_store_read (copy, &rc);
    assert_non_null (txn);
    CHECK_OK (sgmq_store_head (txn, &seq, hash));
    sgmq_store_read_end (&txn);
    sgmq_store_verify_t report;
    rc = sgmq_store_verify (copy, s_sign_pk, &report);
    if (rc)
        fail_msg ("verify the copy: %s: %s", sgmq_store_strerror (rc),
                  report.reason);
    assert_int_equal (report.messages, seq);
    s_check_filled (copy, 1, seq, S_COPY_BODY);
    sgmq_store_close (&copy);
    txn = sgmq_store_read (original, &rc);
    assert_non_null (txn);
    sgmq_store_record_t record;
    CHECK_OK (sgmq_store_get (txn, seq, &record));
    assert_memory_equal (record.hash, hash, sizeof hash);
    sgmq_store_read_end (&txn);
    return seq;
}

static void
test_copy (void **state)
{
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);      //  never fork with a store open
    int to_child [2], from_child [2];
    assert_int_equal (pipe (to_child), 0);
    assert_int_equal (pipe (from_child), 0);
    pid_t writer = fork ();
    assert_true (writer >= 0);
    if (writer == 0) {
        close (to_child [1]);
        close (from_child [0]);
        s_copy_writer (fx->dir, &fx->opts, to_child [0], from_child [1]);
    }
    //  Each side keeps only its own ends: if the other dies, reads end.
    close (to_child [0]);
    close (from_child [1]);
    char c;
    assert_int_equal (read (from_child [0], &c, 1), 1);

    char *base = testutil_tmpdir ("store-copy");
    assert_non_null (base);
    char full [4096], missing [4096], nostore [4096], idle [4096],
         busy [4096], newer [4096];
    snprintf (full, sizeof full, "%s/full", base);
    snprintf (missing, sizeof missing, "%s/missing", base);
    snprintf (nostore, sizeof nostore, "%s/nostore", base);
    snprintf (idle, sizeof idle, "%s/idle", base);
    snprintf (busy, sizeof busy, "%s/busy", base);
    snprintf (newer, sizeof newer, "%s/newer", base);
    char path [4200];
    assert_int_equal (mkdir (full, 0700), 0);
    snprintf (path, sizeof path, "%s/something", full);
    assert_int_equal (testutil_write_file (path, "x", 1), 0);
    assert_int_equal (mkdir (nostore, 0700), 0);
    assert_int_equal (mkdir (idle, 0700), 0);
    assert_int_equal (mkdir (busy, 0700), 0);
    assert_int_equal (mkdir (newer, 0700), 0);

    //  Refused: a destination that is not empty or does not exist, a
    //  folder without a store; nothing is left behind.
    s_expect_copy_fails (fx->dir, full, SGMQ_STORE_E_INVALID, full);
    s_expect_copy_fails (fx->dir, missing, ENOENT, missing);
    s_expect_copy_fails (nostore, idle, ENOENT, "no store here");
    assert_true (s_dir_is_empty (idle));
    assert_true (s_dir_is_empty (nostore));     //  no lock file made
    snprintf (path, sizeof path, "%s/data.mdb", nostore);
    assert_int_equal (testutil_write_file (path, "", 0), 0);
    s_expect_copy_fails (nostore, idle, SGMQ_STORE_E_CORRUPT, "empty file");
    assert_true (s_dir_is_empty (idle));

    //  While the writer is idle: the copy is its store exactly, and the
    //  store's data file is not written.
    snprintf (path, sizeof path, "%s/data.mdb", fx->dir);
    struct stat before, after;
    assert_int_equal (stat (path, &before), 0);
    char why [512] = "";
    int rc = sgmq_store_copy (fx->dir, idle, why, sizeof why);
    if (rc)
        fail_msg ("copy: %s: %s", sgmq_store_strerror (rc), why);
    assert_int_equal (stat (path, &after), 0);
    assert_int_equal (after.st_size, before.st_size);
    assert_int_equal (after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    assert_int_equal (after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);

    //  While the writer commits batch after batch: a consistent snapshot.
    assert_int_equal (write (to_child [1], "w", 1), 1);
    assert_int_equal (read (from_child [0], &c, 1), 1);
    rc = sgmq_store_copy (fx->dir, busy, why, sizeof why);
    if (rc)
        fail_msg ("copy under load: %s: %s", sgmq_store_strerror (rc), why);
    assert_int_equal (write (to_child [1], "s", 1), 1);
    assert_int_equal (write (to_child [1], "q", 1), 1);
    int status;
    assert_int_equal (waitpid (writer, &status, 0), writer);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    close (to_child [1]);
    close (from_child [0]);

    fx->store = s_open (fx->dir, &fx->opts);
    uint64_t head = s_head (fx->store);
    assert_int_equal (s_check_copy (fx->store, idle), 50);
    uint64_t busy_head = s_check_copy (fx->store, busy);
    assert_true (busy_head >= 60 && busy_head <= head);

    //  A store of another format is refused, and nothing is copied.
    sgmq_store_close (&fx->store);
    raw_t raw;
    s_raw_open (&raw, fx->dir);
    MDB_dbi meta = s_raw_dbi (&raw, "meta");
    uint8_t v2 [4] = { 0, 0, 0, 3 };
    MDB_val key = { 6, "format" }, val = { 4, v2 };
    assert_int_equal (mdb_put (raw.txn, meta, &key, &val, 0), 0);
    s_raw_close (&raw);
    s_expect_copy_fails (fx->dir, newer, SGMQ_STORE_E_VERSION,
                         "store format 3, this build reads 1 and 2");
    assert_true (s_dir_is_empty (newer));
    v2 [3] = 2;
    s_raw_open (&raw, fx->dir);
    meta = s_raw_dbi (&raw, "meta");
    assert_int_equal (mdb_put (raw.txn, meta, &key, &val, 0), 0);
    s_raw_close (&raw);
    fx->store = s_open (fx->dir, &fx->opts);
    testutil_rmtree (base);
    free (base);
}

//  --------------------------------------------------------------------------

#define T(name) cmocka_unit_test_setup_teardown (name, fx_setup, fx_teardown)

//  Time bounds inside a write txn see its own appends, whose time entry
//  is written only at the finish (a second review found `since` missed
//  them).
typedef struct {
    uint64_t old_time;
    size_t since_new, until_before_new, since_old;
} s_times_t;

static size_t
s_count_query (sgmq_store_txn_t *txn, const sgmq_store_query_t *query)
{
    sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, query);
    sgmq_store_record_t record;
    size_t count = 0;
    while (sgmq_store_iter_next (iter, &record) == 0)
        count++;
    sgmq_store_iter_destroy (&iter);
    return count;
}

static int
s_times_fn (sgmq_store_txn_t *txn, void *arg)
{
    s_times_t *t = arg;
    sgmq_store_msg_t m = s_msg ("fresh");
    sgmq_store_appended_t out;
    int rc = sgmq_store_append (txn, &m, &out);
    if (rc)
        return rc;
    assert_true (out.time > t->old_time);
    t->since_new = s_count_query (txn, &(sgmq_store_query_t) { .since = out.time });
    t->until_before_new = s_count_query (txn, &(sgmq_store_query_t) {
        .since = t->old_time, .until = out.time - 1 });
    t->since_old = s_count_query (txn, &(sgmq_store_query_t) { .since = t->old_time });
    return 0;
}

static void
test_time_bounds_in_a_write_txn (void **state)
{
    fx_t *fx = *state;
    sgmq_store_msg_t m = s_msg ("old");
    s_append_one (fx->store, &m);
    int rc;
    sgmq_store_txn_t *txn = sgmq_store_read (fx->store, &rc);
    sgmq_store_record_t record;
    CHECK_OK (sgmq_store_get (txn, 1, &record));
    s_times_t t = { .old_time = record.time };
    sgmq_store_read_end (&txn);
    //  The next txn must be a later millisecond: wait for the clock.
    struct timespec now;
    for (int i = 0; i < 1000000; i++) {
        clock_gettime (CLOCK_REALTIME, &now);
        if ((uint64_t) now.tv_sec * 1000 + (uint64_t) now.tv_nsec / 1000000 > t.old_time)
            break;
    }
    CHECK_OK (sgmq_store_write (fx->store, s_times_fn, &t));
    assert_int_equal (t.since_new, 1);
    assert_int_equal (t.until_before_new, 1);
    assert_int_equal (t.since_old, 2);
}

//  Acknowledgements outside the ack chain: whoever edits the file can
//  move a pending delivery to acked (an ack no event records) or change
//  who acked; REPLAY and PENDING read those records, so verify must find
//  both (a second review found it did not).
static void
s_forge (const char *dir, uint64_t seq, bool move_pending)
{
    raw_t raw;
    s_raw_open (&raw, dir);
    MDB_dbi pend = s_raw_dbi (&raw, "pend"), ackd = s_raw_dbi (&raw, "ackd");
    uint8_t k1 [64], k2 [64];
    size_t n1 = strlen ("exec-children"), n2 = strlen ("exec-health");
    memcpy (k1, "exec-children", n1 + 1);
    s_seq_key (k1 + n1 + 1, seq);
    memcpy (k2, "exec-health", n2 + 1);
    s_seq_key (k2 + n2 + 1, seq);
    MDB_val key1 = { n1 + 9, k1 }, key2 = { n2 + 9, k2 }, val;
    assert_int_equal (mdb_get (raw.txn, ackd, &key1, &val), 0);
    uint8_t rec [512];
    size_t size = val.mv_size;
    memcpy (rec, val.mv_data, size);
    memcpy (rec + size - 8, "KEY-FAKE", 8);     //  the acking key
    MDB_val forged = { size, rec };
    if (move_pending) {
        assert_int_equal (mdb_del (raw.txn, pend, &key2, NULL), 0);
        assert_int_equal (mdb_put (raw.txn, ackd, &key2, &forged, 0), 0);
    }
    else
        assert_int_equal (mdb_put (raw.txn, ackd, &key1, &forged, 0), 0);
    s_raw_close (&raw);
}

static void
test_forged_acks_fail_verify (void **state)
{
    fx_t *fx = *state;
    for (int forgery = 0; forgery < 2; forgery++) {
        sgmq_store_msg_t m = s_msg ("body");
        uint64_t seq = s_append_one (fx->store, &m);
        CHECK_OK (s_do_ack (fx->store, "exec-children", "KEY-REAL", seq, NULL));
        s_verify_ok (fx->store);
        sgmq_store_close (&fx->store);
        s_forge (fx->dir, seq, forgery == 1);
        fx->store = s_open (fx->dir, &fx->opts);
        sgmq_store_verify_t report;
        CHECK_RC (sgmq_store_verify (fx->store, s_sign_pk, &report), SGMQ_STORE_E_CORRUPT);
        print_message ("    %s: %s\n", forgery ? "an ack with no event" : "another key",
                       report.reason);
        assert_true (report.bad_ack > 0);
        //  Start again from an empty store for the next forgery.
        sgmq_store_close (&fx->store);
        fx_teardown (state);
        fx_setup (state);
        fx = *state;
    }
}

//  A map that cannot grow (no address space left: RLIMIT_AS here, a
//  container's limit in life): LMDB unmaps the old map before it fails to
//  map the new one. The store must give errors, or go on, and never touch
//  the unmapped environment (a second review found it crashed). In a
//  child, since the limit is for good; not under AddressSanitizer, which
//  needs its own address space.
static char s_grow_body [4096];

static int
s_grow_fn (sgmq_store_txn_t *txn, void *arg)
{
    (void) arg;
    sgmq_store_msg_t m = s_msg ("x");
    m.body = (const uint8_t *) s_grow_body;
    m.body_size = sizeof s_grow_body;
    sgmq_store_appended_t out;
    for (int i = 0; i < 200; i++) {
        int rc = sgmq_store_append (txn, &m, &out);
        if (rc)
            return rc;
    }
    return 0;
}

static void
test_grow_without_address_space (void **state)
{
    if (TESTUTIL_ASAN)
        skip ();
    fx_t *fx = *state;
    sgmq_store_close (&fx->store);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        signal (SIGSEGV, SIG_DFL);
        signal (SIGBUS, SIG_DFL);
        fx->opts.map_size = 1 << 20;
        int rc;
        sgmq_store_t *store = sgmq_store_open (fx->dir, &fx->opts, &rc, NULL, 0);
        FILE *file = fopen ("/proc/self/statm", "r");
        unsigned long pages = 0;
        if (!store || !file || fscanf (file, "%lu", &pages) != 1)
            _exit (3);
        fclose (file);
        struct rlimit limit;
        getrlimit (RLIMIT_AS, &limit);
        limit.rlim_cur = pages * (unsigned long) sysconf (_SC_PAGESIZE) + (48 << 20);
        setrlimit (RLIMIT_AS, &limit);
        int failed = 0;
        for (int i = 0; i < 40 && !failed; i++)
            failed = sgmq_store_write (store, s_grow_fn, NULL);
        //  After the error, more calls fail cleanly or work.
        rc = sgmq_store_write (store, s_grow_fn, NULL);
        sgmq_store_txn_t *txn = sgmq_store_read (store, &rc);
        sgmq_store_read_end (&txn);
        sgmq_store_close (&store);
        _exit (failed ? 0 : 4);
    }
    int status;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    if (WIFSIGNALED (status))
        fail_msg ("the store died of signal %d", WTERMSIG (status));
    //  Exit 4: the limit was not reached (no failure to test).
    assert_int_equal (WEXITSTATUS (status), 0);
    fx->store = s_open (fx->dir, &fx->opts);
    sgmq_store_verify_t report;
    assert_int_equal (sgmq_store_verify (fx->store, NULL, &report), 0);
    assert_true (report.messages > 0);
}

int
main (void)
{
    assert_true (sodium_init () >= 0);
    for (size_t i = 0; i < sizeof s_key; i++) {
        s_key [i] = (uint8_t) (i * 7 + 1);
        s_other_key [i] = (uint8_t) (i * 7 + 2);
    }
    crypto_sign_keypair (s_sign_pk, s_sign_sk);
    crypto_sign_keypair (s_other_pk, s_other_sk);

    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_strerror),
        cmocka_unit_test (test_open_errors),
        T (test_invalid_args),
        T (test_readonly),
        T (test_append_get_head),
        T (test_canonical_hash),
        T (test_batch_and_time),
        T (test_iterate_queries),
        T (test_iterate_in_write),
        T (test_idempotency),
        T (test_dead_readers_freed),
        T (test_deliveries),
        T (test_delivered_at_append),
        T (test_unacked_order),
        T (test_ack_log),
        T (test_tracking),
        T (test_timers),
        T (test_checkpoints),
        T (test_verify_intact),
        T (test_tamper_flip),
        T (test_tamper_delete),
        T (test_tamper_ack),
        T (test_tamper_rewrite),
        T (test_time_clamp_and_order),
        T (test_moved_record),
        T (test_wrong_key),
        T (test_unknown_version),
        T (test_recipients_bound),
        T (test_plaintext_not_on_disk),
        T (test_map_full_grows),
        T (test_mixed_batch_grows),
        T (test_map_cap_full),
        cmocka_unit_test (test_disk_full),
        T (test_fn_abort),
        T (test_sealed_beside_writer),
        T (test_busy_reader),
        T (test_backup),
        T (test_stale_readers),
        T (test_damaged_files),
        T (test_copy),
        T (test_time_bounds_in_a_write_txn),
        T (test_forged_acks_fail_verify),
        T (test_grow_without_address_space),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
