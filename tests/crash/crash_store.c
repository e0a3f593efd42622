/*  crash_store - SIGKILL the store's writer at random moments and prove
    that nothing it confirmed is lost and nothing half-written shows.

    A child opens the store and appends batches of 1..200 messages in a
    loop (and, every other batch, acknowledges a random range of earlier
    messages). After sgmq_store_write returns 0 it reports the batch (or
    the acked range) to the parent through a pipe: that report is the
    "confirm" a publisher would get. The parent kills the child 0..30 ms
    after it is ready, reopens the store and checks:

      - every reported message is there, with the body derived from its seq;
      - every reported ack is there;
      - the head is at least the last reported seq, every message up to the
        head opens, nothing lies beyond it, and the head closes a whole
        batch (each body names its batch: a half batch would show);
      - the hash chain, the ack chain and the checkpoints verify.

    The store is never open in the parent across fork().
*/
#include "testutil.h"
#include "sgmq_store.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  At least 50 kills (the floor), with room to spare.
#define CYCLES          60
//  Kill 0..30 ms after the child says it is ready.
#define MAX_DELAY_MS    30
#define MAX_BATCH       200
#define MAX_ACK_RANGE   50
//  Small, so that many kills land in a transaction that checkpoints.
#define CHECKPOINT_EVERY 500
//  Bodies: a header naming seq and batch, then bytes derived from seq.
#define BODY_MIN        64
#define BODY_SPREAD     960
#define READY_TIMEOUT_MS 10000

static uint8_t s_key [SGMQ_STORE_KEY_SIZE];
static uint8_t s_pk [SGMQ_STORE_SIGN_PK_SIZE];
static uint8_t s_sk [SGMQ_STORE_SIGN_SK_SIZE];

//  One report on the pipe: 17 bytes, far below PIPE_BUF, so a write is
//  atomic and a kill cannot leave half a report.
typedef struct {
    char type;                  //  'R' ready, 'M' batch, 'A' acked range
    uint64_t a, b;              //  first..last seq
} __attribute__ ((packed)) report_t;

static sgmq_store_options_t
s_opts (void)
{
    sgmq_store_options_t opts = {
        .storage_key = s_key, .key_id = 7, .signing_key = s_sk,
        .checkpoint_every = CHECKPOINT_EVERY,
    };
    return opts;
}

static size_t
s_body (uint64_t seq, uint64_t first, uint64_t count, uint8_t *body)
{
    size_t size = BODY_MIN + (size_t) ((seq * 2654435761u) % BODY_SPREAD);
    int head = snprintf ((char *) body, size, "seq=%llu first=%llu n=%llu;",
                         (unsigned long long) seq, (unsigned long long) first,
                         (unsigned long long) count);
    for (size_t i = (size_t) head; i < size; i++)
        body [i] = (uint8_t) (seq * 131 + i * 7);
    return size;
}

//  --------------------------------------------------------------------------
//  Child: the writer that gets killed

typedef struct {
    uint64_t count;
    uint64_t first, last;
    uint8_t body [BODY_MIN + BODY_SPREAD];
} child_batch_t;

static const char *s_groups [] = { "exec", "panel" };
static const char *s_recipients [] = { "r1", "r2" };

static int
s_child_append (sgmq_store_txn_t *txn, void *arg)
{
    child_batch_t *b = arg;
    uint64_t head;
    int rc = sgmq_store_head (txn, &head, NULL);
    if (rc)
        return rc;
    b->first = head + 1;
    for (uint64_t i = 0; i < b->count; i++) {
        uint64_t seq = b->first + i;
        sgmq_store_msg_t m = {
            .sender = "agency", .sender_key = "", .kind = "escalation",
            .groups = s_groups, .group_count = 2,
            .recipients = s_recipients, .recipient_count = 2,
            .body = b->body,
            .body_size = s_body (seq, b->first, b->count, b->body),
        };
        sgmq_store_appended_t out;
        rc = sgmq_store_append (txn, &m, &out);
        if (rc)
            return rc;
        if (out.seq != seq)
            return SGMQ_STORE_E_ORDER;
    }
    b->last = b->first + b->count - 1;
    return 0;
}

typedef struct {
    uint64_t lo, hi;
} child_acks_t;

static int
s_child_ack (sgmq_store_txn_t *txn, void *arg)
{
    child_acks_t *a = arg;
    for (uint64_t seq = a->lo; seq <= a->hi; seq++) {
        sgmq_store_acked_t acked;
        int rc = sgmq_store_ack (txn, "r1", "KEYr1", seq, &acked);
        if (rc)
            return rc;
    }
    return 0;
}

static void
s_report (int fd, char type, uint64_t a, uint64_t b)
{
    report_t r = { type, a, b };
    if (write (fd, &r, sizeof r) != sizeof r)
        _exit (3);
}

static void __attribute__ ((noreturn))
s_child (const char *dir, int fd, unsigned seed)
{
    srand (seed);
    sgmq_store_options_t opts = s_opts ();
    int rc;
    char why [256];
    sgmq_store_t *store = sgmq_store_open (dir, &opts, &rc, why, sizeof why);
    if (!store) {
        fprintf (stderr, "child: %s\n", why);
        _exit (2);
    }
    s_report (fd, 'R', 0, 0);
    for (unsigned n = 0; ; n++) {
        child_batch_t batch = { .count = 1 + (uint64_t) rand () % MAX_BATCH };
        rc = sgmq_store_write (store, s_child_append, &batch);
        if (rc) {
            fprintf (stderr, "child: append: %s\n", sgmq_store_strerror (rc));
            _exit (2);
        }
        s_report (fd, 'M', batch.first, batch.last);
        if (n % 2) {
            child_acks_t acks;
            acks.lo = 1 + (uint64_t) rand () % batch.last;
            acks.hi = acks.lo + (uint64_t) rand () % MAX_ACK_RANGE;
            if (acks.hi > batch.last)
                acks.hi = batch.last;
            rc = sgmq_store_write (store, s_child_ack, &acks);
            if (rc) {
                fprintf (stderr, "child: ack: %s\n", sgmq_store_strerror (rc));
                _exit (2);
            }
            s_report (fd, 'A', acks.lo, acks.hi);
        }
    }
}

//  --------------------------------------------------------------------------
//  Parent: kill, reopen, check

typedef struct {
    uint64_t confirmed;         //  highest seq reported
    uint64_t checked;           //  messages 1..checked already checked
    uint64_t batches, acks;
    uint64_t unreported;        //  committed but killed before the report
    uint64_t *acked_lo, *acked_hi;
    size_t ack_ranges, ack_alloc;
    uint64_t *batch_first, *batch_last;
    size_t batch_count, batch_alloc;
} tally_t;

static void
s_push (uint64_t **lo, uint64_t **hi, size_t *count, size_t *alloc,
        uint64_t a, uint64_t b)
{
    if (*count == *alloc) {
        *alloc = *alloc ? *alloc * 2 : 256;
        *lo = realloc (*lo, *alloc * sizeof (uint64_t));
        *hi = realloc (*hi, *alloc * sizeof (uint64_t));
        assert_non_null (*lo);
        assert_non_null (*hi);
    }
    (*lo) [*count] = a;
    (*hi) [*count] = b;
    (*count)++;
}

static void
s_check_message (sgmq_store_txn_t *txn, uint64_t seq, uint64_t head,
                 uint64_t first_known, uint64_t count_known)
{
    sgmq_store_record_t rec;
    int rc = sgmq_store_get (txn, seq, &rec);
    if (rc)
        fail_msg ("message %llu (head %llu): %s", (unsigned long long) seq,
                  (unsigned long long) head, sgmq_store_strerror (rc));
    unsigned long long s, first, count;
    char header [96];
    size_t n = rec.body_size < sizeof header - 1 ? rec.body_size
                                                 : sizeof header - 1;
    memcpy (header, rec.body, n);
    header [n] = 0;
    if (sscanf (header, "seq=%llu first=%llu n=%llu;", &s, &first, &count) != 3
    ||  s != seq)
        fail_msg ("message %llu: body header \"%.40s\"",
                  (unsigned long long) seq, header);
    if (first_known && (first != first_known || count != count_known))
        fail_msg ("message %llu: batch %llu+%llu, reported %llu+%llu",
                  (unsigned long long) seq, first, count,
                  (unsigned long long) first_known,
                  (unsigned long long) count_known);
    //  the whole batch is visible, or none of it
    if (first + count - 1 > head)
        fail_msg ("message %llu belongs to batch %llu..%llu, but the head "
                  "is %llu: half a batch is visible", (unsigned long long) seq,
                  first, first + count - 1, (unsigned long long) head);
    uint8_t want [BODY_MIN + BODY_SPREAD];
    size_t size = s_body (seq, first, count, want);
    if (rec.body_size != size || memcmp (rec.body, want, size) != 0)
        fail_msg ("message %llu: body differs", (unsigned long long) seq);
    assert_string_equal (rec.recipients [0], "r1");
}

static void
s_check_store (const char *dir, tally_t *t)
{
    sgmq_store_options_t opts = s_opts ();
    int rc;
    char why [256];
    sgmq_store_t *store = sgmq_store_open (dir, &opts, &rc, why, sizeof why);
    if (!store)
        fail_msg ("reopen after kill: %s", why);
    sgmq_store_txn_t *txn = sgmq_store_read (store, &rc);
    assert_non_null (txn);
    uint64_t head;
    assert_int_equal (sgmq_store_head (txn, &head, NULL), 0);
    if (head < t->confirmed)
        fail_msg ("LOST: head %llu, but %llu was confirmed",
                  (unsigned long long) head,
                  (unsigned long long) t->confirmed);
    if (head > t->confirmed)
        t->unreported++;
    //  every reported batch, with its exact bounds
    for (size_t i = 0; i < t->batch_count; i++) {
        uint64_t first = t->batch_first [i], last = t->batch_last [i];
        for (uint64_t seq = first; seq <= last; seq++)
            s_check_message (txn, seq, head, first, last - first + 1);
    }
    t->batch_count = 0;
    //  everything else new since the last check (e.g. committed but not
    //  yet reported when the kill came)
    for (uint64_t seq = t->checked + 1; seq <= head; seq++)
        s_check_message (txn, seq, head, 0, 0);
    t->checked = head;
    sgmq_store_record_t rec;
    assert_int_equal (sgmq_store_get (txn, head + 1, &rec),
                      SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_query_t beyond = { .from_seq = head + 1 };
    sgmq_store_iter_t *iter = sgmq_store_iter_new (txn, &beyond);
    assert_int_equal (sgmq_store_iter_next (iter, &rec),
                      SGMQ_STORE_E_NOT_FOUND);
    sgmq_store_iter_destroy (&iter);
    //  every reported ack
    for (size_t i = 0; i < t->ack_ranges; i++)
        for (uint64_t seq = t->acked_lo [i]; seq <= t->acked_hi [i]; seq++) {
            sgmq_store_delivery_t d;
            rc = sgmq_store_delivery (txn, "r1", seq, &d);
            if (rc || d.state != SGMQ_STORE_ACKED)
                fail_msg ("LOST ACK: r1 on %llu: %s",
                          (unsigned long long) seq,
                          rc ? sgmq_store_strerror (rc) : "not acked");
        }
    t->ack_ranges = 0;
    sgmq_store_read_end (&txn);
    sgmq_store_verify_t report;
    rc = sgmq_store_verify (store, s_pk, &report);
    if (rc)
        fail_msg ("verify after kill: %s: %s", sgmq_store_strerror (rc),
                  report.reason);
    assert_int_equal (report.messages, head);
    sgmq_store_close (&store);
}

static void
s_sleep_ms (unsigned ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    while (nanosleep (&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void
test_crash (void **state)
{
    (void) state;
    char *dir = testutil_tmpdir ("crash-store");
    assert_non_null (dir);
    //  create the store in the parent, then never hold it across fork
    sgmq_store_options_t opts = s_opts ();
    int rc;
    sgmq_store_t *store = sgmq_store_open (dir, &opts, &rc, NULL, 0);
    assert_non_null (store);
    sgmq_store_close (&store);

    tally_t t = { 0 };
    unsigned seed = (unsigned) time (NULL);
    const char *env = getenv ("SGMQ_CRASH_SEED");
    if (env)
        seed = (unsigned) strtoul (env, NULL, 10);
    srand (seed);
    int64_t start = testutil_now_ms ();
    int cycle;
    for (cycle = 0; cycle < CYCLES; cycle++) {
        int fds [2];
        assert_int_equal (pipe (fds), 0);
        unsigned child_seed = (unsigned) rand ();
        pid_t pid = fork ();
        assert_true (pid >= 0);
        if (pid == 0) {
            close (fds [0]);
            s_child (dir, fds [1], child_seed);
        }
        close (fds [1]);
        //  wait for ready
        struct pollfd pfd = { fds [0], POLLIN, 0 };
        if (poll (&pfd, 1, (int) testutil_ms (READY_TIMEOUT_MS)) != 1)
            fail_msg ("cycle %d: child never got ready", cycle);
        report_t r;
        assert_int_equal (read (fds [0], &r, sizeof r), sizeof r);
        assert_int_equal (r.type, 'R');
        s_sleep_ms ((unsigned) rand () % (MAX_DELAY_MS + 1));
        kill (pid, SIGKILL);
        int status;
        assert_int_equal (waitpid (pid, &status, 0), pid);
        if (!WIFSIGNALED (status) || WTERMSIG (status) != SIGKILL)
            fail_msg ("cycle %d: child exited on its own (status %d)", cycle,
                      status);
        //  collect the confirms it got out before dying
        ssize_t got;
        while ((got = read (fds [0], &r, sizeof r)) == sizeof r) {
            if (r.type == 'M') {
                s_push (&t.batch_first, &t.batch_last, &t.batch_count,
                        &t.batch_alloc, r.a, r.b);
                t.confirmed = r.b;
                t.batches++;
            }
            else
            if (r.type == 'A') {
                s_push (&t.acked_lo, &t.acked_hi, &t.ack_ranges,
                        &t.ack_alloc, r.a, r.b);
                t.acks += r.b - r.a + 1;
            }
        }
        assert_int_equal (got, 0);      //  no half report
        close (fds [0]);
        s_check_store (dir, &t);
    }
    int64_t elapsed = testutil_now_ms () - start;
    print_message ("crash_store: seed %u, %d SIGKILL cycles in %.1f s; "
                   "messages confirmed %llu in %llu batches, ack updates "
                   "confirmed %llu; kills after a commit but before its "
                   "report: %llu; lost 0\n", seed, cycle,
                   (double) elapsed / 1000.0,
                   (unsigned long long) t.confirmed,
                   (unsigned long long) t.batches,
                   (unsigned long long) t.acks,
                   (unsigned long long) t.unreported);
    assert_true (cycle >= 50);
    assert_true (t.confirmed > 0);
    free (t.acked_lo);
    free (t.acked_hi);
    free (t.batch_first);
    free (t.batch_last);
    testutil_rmtree (dir);
    free (dir);
}

int
main (void)
{
    assert_true (sodium_init () >= 0);
    randombytes_buf (s_key, sizeof s_key);
    crypto_sign_keypair (s_pk, s_sk);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_crash),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
