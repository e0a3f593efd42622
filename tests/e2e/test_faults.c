/*  End-to-end: storage faults (issue 7, item 4), through the real broker.

    Disk full: the data directory sits on a tmpfs of a few MiB that this
    test mounts, most of it taken by a filler file. A police case system
    publishes (pipelined and one at a time) until the broker refuses with
    507 "storage full"; the CLI says so too. Then, with the disk still
    full: every stored message is one that was confirmed and every
    confirmed one is stored (an auditor's replay against the ledger of
    confirms, and the hash chain verifies), the Executive member's pending
    view and deliveries work, and the broker restarts. Once the filler is
    deleted, publishing resumes where the chain left off, and every refused
    reference publishes as new (so none of them was stored).

    The mount lives in a private mount namespace of this process (and the
    brokers it starts), so it vanishes with the test even if the test is
    killed; teardown also detaches it. Without the right to mount (not
    root), the same checks run against a map size cap instead (said in
    the output); the cap variant also runs on its own, always.

    Damaged data file: with a store of a few hundred messages, the broker
    is started on the file truncated (to half, to nothing, to a size that
    is not a whole number of pages), with its first pages overwritten, and
    with one byte of its meta page changed. Each time it must exit 1
    quickly (not die of a signal) with one line naming the data file and
    the problem, and --check-config must say the same. A byte changed in
    the middle of a message record is found by the auditor's verify,
    naming the message, while the broker keeps serving.
*/
#define _GNU_SOURCE
#include "e2e.h"
#include "sgmq_cli.h"
#include "sgmq_keyfile.h"
#include "sgmq_time.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

//  The small disk: its size, and the filler that leaves the store about
//  1.5 MiB (some hundreds of the messages below) before it is full.
#define S_DISK_OPTIONS   "size=4m,mode=0700"
#define S_FILLER_SIZE    ((size_t) 2560 << 10)
//  The map cap of the fallback (bytes): the config's minimum is 1 MiB.
#define S_CAP_SMALL      "2097152"
#define S_CAP_LARGE      "67108864"
//  Publishes per pipelined batch; consecutive refusals that show the
//  store is full (a whole batch); the most we send before calling the
//  disk bottomless.
#define S_BATCH          20
#define S_SEND_MAX       20000
//  Bytes of each summary (the protocol allows 4000): a few KiB per message
//  fills the disk quickly.
#define S_SUMMARY_SIZE   3000
//  One confirm or refusal, ms (scaled).
#define S_CONFIRM_MS     10000
//  A broker that cannot open its store exits within this, ms (scaled).
#define S_QUICK_MS       10000
//  Messages in the store the damage tests start from.
#define S_HISTORY        300
//  LMDB's page size on this platform, and where its first meta page's
//  magic number sits (after the 16-byte page header).
#define S_PAGE           4096
#define S_META_MAGIC_AT  16

//  Mounts made by this process stay in its own namespace (see main).
static bool s_private_mounts;

static void
s_title (char *title, size_t size, const char *ref)
{
    snprintf (title, size, "Missing episodes, escalation %s", ref);
}

static sgmq_body_t
s_body (const char *title)
{
    static char summary [S_SUMMARY_SIZE + 1];
    if (!summary [0])
        for (size_t i = 0; i < S_SUMMARY_SIZE; i++)
            summary [i] = "A summary of the concern, without names. " [i % 41];
    sgmq_body_t body = { .kind = SGMQ_KIND_ESCALATION };
    body.u.escalation.group = "exploitation";
    body.u.escalation.title = title;
    body.u.escalation.summary = summary;
    body.u.escalation.severity = SGMQ_SEVERITY_HIGH;
    body.u.escalation.requested = "A lead agency named by the Executive";
    body.u.escalation.respond_by = sgmq_time_now () + 7ULL * 86400000;
    return body;
}

//  A new reference for the next publish.
static void
s_new_ref (e2e_ledger_t *ledger, char *ref, size_t size)
{
    snprintf (ref, size, "fault-%06llu", (unsigned long long) ++ledger->next_ref);
}

static void
s_send (sgmq_client_t *police, const char *ref)
{
    char title [96];
    s_title (title, sizeof title, ref);
    sgmq_body_t body = s_body (title);
    sgmq_error_t error;
    int rc = sgmq_client_publish_send (police, ref, &body, &error);
    if (rc)
        fprintf (stderr, "publish_send: %d %s\n", error.code, error.reason);
    assert_int_equal (rc, 0);
}

//  A refusal must be 507 with a reason that says the storage is full.
static void
s_expect_full (const sgmq_error_t *error)
{
    if (error->code != SGMQ_E_STORAGE_FULL || !strstr (error->reason, "storage full"))
        fail_msg ("expected 507 storage full, got %d %s", error->code, error->reason);
}

//  Collect the answers to every queued publish; the number refused.
static size_t
s_collect (sgmq_client_t *police, e2e_ledger_t *ledger)
{
    size_t refused = 0;
    while (sgmq_client_in_flight (police)) {
        sgmq_confirm_t confirm;
        sgmq_error_t error;
        int rc = sgmq_client_publish_wait (police, (int) testutil_ms (S_CONFIRM_MS),
                                           &confirm, &error);
        if (rc)
            fail_msg ("no answer to a publish: %d %s", error.code, error.reason);
        if (error.code == 0) {
            assert_false (confirm.duplicate);
            e2e_ledger_confirm (ledger, &confirm);
        }
        else {
            s_expect_full (&error);
            e2e_ledger_refuse (ledger, confirm.ref);
            refused++;
        }
    }
    return refused;
}

//  ---------------------------------------------------------------------
//  The deployment on a small disk

typedef struct {
    e2e_t *e2e;
    char *police, *exec, *auditor;
    char *base;                 //  holds the mount point
    char *disk;                 //  the mount point
    char *filler;
    bool mounted;
    bool cap;                   //  full by the map size cap, not the disk
} s_fix_t;

static char *
s_path (const char *dir, const char *name)
{
    char *path = NULL;
    assert_true (asprintf (&path, "%s/%s", dir, name) > 0);
    return path;
}

static s_fix_t *
s_fix_new (const char *tag)
{
    s_fix_t *f = calloc (1, sizeof *f);
    assert_non_null (f);
    f->e2e = e2e_new (tag, NULL);
    f->police = e2e_principal (f->e2e, "police.cert", "Police case system",
                               "Metropolitan Police", "publisher", "exploitation");
    f->exec = e2e_principal (f->e2e, "exec.cert", "Executive member (ICB)",
                             "Integrated Care Board", "member", "executive");
    f->auditor = e2e_principal (f->e2e, "auditor.cert", "Independent scrutineer",
                                "Safeguarding Partnership", "auditor", NULL);
    return f;
}

//  Never leave a mount behind: detach it even if something still uses it.
static void
s_unmount (s_fix_t *f)
{
    if (f->mounted && umount2 (f->disk, MNT_DETACH) != 0)
        fprintf (stderr, "faults: cannot unmount %s: %s\n", f->disk, strerror (errno));
    f->mounted = false;
}

static int
s_teardown (void **state)
{
    s_fix_t *f = *state;
    if (!f)
        return 0;
    //  After a failure the broker may still run: kill it (a passing test
    //  stopped it and checked its exit code itself).
    if (f->e2e)
        e2e_kill (f->e2e);
    e2e_destroy (&f->e2e);
    s_unmount (f);
    if (f->base)
        testutil_rmtree (f->base);
    free (f->base);
    free (f->disk);
    free (f->filler);
    free (f->police);
    free (f->exec);
    free (f->auditor);
    free (f);
    *state = NULL;
    return 0;
}

//  The disk-full deployment: a tmpfs when we may mount one, else the map
//  size cap (with `cap`, always the cap).
static void
s_full_setup (s_fix_t *f, bool cap)
{
    f->base = testutil_tmpdir ("faults-disk");
    assert_non_null (f->base);
    f->disk = s_path (f->base, "disk");
    assert_int_equal (mkdir (f->disk, 0700), 0);
    if (!cap) {
        if (mount ("sgmq-faults", f->disk, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   S_DISK_OPTIONS) == 0)
            f->mounted = true;
        else
            fprintf (stderr, "faults: cannot mount a tmpfs (%s): testing the map "
                     "size cap (limits/map-size-max) instead of a full disk\n",
                     strerror (errno));
    }
    f->cap = !f->mounted;
    char *data = s_path (f->disk, "data");
    assert_int_equal (mkdir (data, 0700), 0);
    e2e_config_set (f->e2e, "sgmq/data", data);
    //  A new data folder: marked for a new store, as `sgmq init` does.
    char *marker = s_path (data, "new-store");
    assert_int_equal (testutil_write_file (marker, "", 0), 0);
    free (marker);
    free (data);
    if (f->cap)
        e2e_config_set (f->e2e, "limits/map-size-max", S_CAP_SMALL);
    else {
        f->filler = s_path (f->disk, "filler");
        char *zeros = calloc (1, S_FILLER_SIZE);
        assert_non_null (zeros);
        assert_int_equal (testutil_write_file (f->filler, zeros, S_FILLER_SIZE), 0);
        free (zeros);
    }
}

static void
s_read_signing_pk (s_fix_t *f, uint8_t *pk)
{
    char *pub = s_path (f->e2e->dir, "signing.pub");
    char error [SGMQ_KEYFILE_ERROR_SIZE];
    if (sgmq_keyfile_read_signing_public (pub, pk, error))
        fail_msg ("%s", error);
    free (pub);
}

//  The auditor: the chain verifies, and the history is exactly what was
//  confirmed: every stored seq was confirmed with this title, and none is
//  missing.
static void
s_audit (s_fix_t *f, const e2e_ledger_t *ledger)
{
    uint8_t pk [SGMQ_KEYFILE_SIGN_PK_SIZE];
    s_read_signing_pk (f, pk);
    sgmq_client_t *auditor = e2e_connect (f->e2e, f->auditor);
    sgmq_verify_t report;
    sgmq_error_t error;
    if (sgmq_client_verify (auditor, pk, &report, NULL, NULL, &error))
        fail_msg ("verify: %d %s", error.code, error.reason);
    if (!report.intact)
        fail_msg ("chain broken at %llu: %s", (unsigned long long) report.bad_seq,
                  report.reason);
    assert_int_equal (report.head_seq, ledger->highest);
    assert_int_equal (report.count, ledger->count);

    sgmq_replay_query_t query = { .from = 1 };
    sgmq_replay_t *replay = sgmq_client_replay (auditor, &query, &error);
    assert_non_null (replay);
    const sgmq_replay_item_t *item;
    uint64_t seen = 0;
    int rc;
    while ((rc = sgmq_replay_next (replay, &item, &error)) == 1) {
        if (item->seq >= ledger->size || !ledger->refs [item->seq][0])
            fail_msg ("seq %llu is stored but was never confirmed",
                      (unsigned long long) item->seq);
        char title [96];
        s_title (title, sizeof title, ledger->refs [item->seq]);
        assert_string_equal (item->body.u.escalation.title, title);
        assert_int_equal (strlen (item->body.u.escalation.summary), S_SUMMARY_SIZE);
        seen++;
    }
    if (rc)
        fail_msg ("replay: %d %s", error.code, error.reason);
    assert_int_equal (seen, ledger->count);
    sgmq_replay_destroy (&replay);
    sgmq_client_destroy (&auditor);
}

//  The Executive member's pending view: one item per confirmed message.
static void
s_expect_pending (s_fix_t *f, uint64_t expected)
{
    sgmq_client_t *exec = e2e_connect (f->e2e, f->exec);
    size_t count = 0;
    sgmq_error_t error;
    if (sgmq_client_pending (exec, SGMQ_SCOPE_MINE, false, e2e_count_item, &count, &error))
        fail_msg ("pending: %d %s", error.code, error.reason);
    assert_int_equal (count, expected);
    sgmq_client_destroy (&exec);
}

//  Publish until the store is full; then check that it says so, that
//  nothing unconfirmed is stored, that reads work, and that publishing
//  resumes once there is room.
static void
s_fill_and_recover (s_fix_t *f)
{
    e2e_ledger_t ledger = { 0 };
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    sgmq_client_t *police = e2e_connect (f->e2e, f->police);

    //  Pipelined, until a whole batch is refused.
    size_t refused = 0;
    while (refused < S_BATCH) {
        assert_true (ledger.next_ref < S_SEND_MAX);
        char ref [32];
        for (int i = 0; i < S_BATCH; i++) {
            s_new_ref (&ledger, ref, sizeof ref);
            s_send (police, ref);
        }
        size_t batch = s_collect (police, &ledger);
        refused = batch == S_BATCH ? S_BATCH : 0;
    }
    fprintf (stderr, "faults: %s full after %llu confirmed (%zu refused)\n",
             f->cap ? "map cap" : "disk", (unsigned long long) ledger.count,
             ledger.refused_count);
    assert_true (ledger.count > 0);
    //  Refused batches use no seq: the confirmed ones have no gaps.
    assert_int_equal (ledger.highest, ledger.count);

    //  One at a time, as most integrations publish: a single message needs
    //  fewer pages than a batch, so a few may still fit.
    char ref [32], title [96];
    sgmq_confirm_t confirm;
    sgmq_error_t error;
    sgmq_body_t body;
    for (int tries = 0; ; tries++) {
        assert_true (tries < S_SEND_MAX);
        s_new_ref (&ledger, ref, sizeof ref);
        s_title (title, sizeof title, ref);
        body = s_body (title);
        if (sgmq_client_publish (police, ref, &body, &confirm, &error) == 0) {
            e2e_ledger_confirm (&ledger, &confirm);
            continue;
        }
        s_expect_full (&error);
        e2e_ledger_refuse (&ledger, ref);
        break;
    }
    //  And from the command line: refused (exit 4), saying why.
    for (int tries = 0; ; tries++) {
        assert_true (tries < S_SEND_MAX);
        s_new_ref (&ledger, ref, sizeof ref);
        s_title (title, sizeof title, ref);
        char *out = NULL, *err = NULL;
        int code = e2e_cli (f->e2e, f->police, NULL, &out, &err, "publish", "escalation",
                            "--group", "exploitation", "--severity", "high",
                            "--title", title, "--summary", body.u.escalation.summary,
                            "--requested", "A decision", "--respond-by", "2099-12-31",
                            "--ref", ref, NULL);
        if (code == 0) {
            confirm = (sgmq_confirm_t) { .seq = strtoull (out, NULL, 10) };
            snprintf (confirm.ref, sizeof confirm.ref, "%s", ref);
            e2e_ledger_confirm (&ledger, &confirm);
        }
        else
        if (code != SGMQ_EXIT_REFUSED || !strstr (err, "storage full"))
            fail_msg ("sgmq publish while full: exit %d, stderr %s", code, err);
        free (out);
        free (err);
        if (code) {
            e2e_ledger_refuse (&ledger, ref);
            break;
        }
    }
    fprintf (stderr, "faults: then %llu confirmed, %zu refused in all\n",
             (unsigned long long) ledger.count, ledger.refused_count);
    assert_int_equal (ledger.highest, ledger.count);

    //  Reads while full: pending, replay and verify, a subscription.
    s_expect_pending (f, ledger.count);
    s_audit (f, &ledger);
    sgmq_client_t *exec = e2e_connect (f->e2e, f->exec);
    uint64_t backlog = 0;
    if (sgmq_client_subscribe (exec, 5, &backlog, &error))
        fail_msg ("subscribe while full: %d %s", error.code, error.reason);
    assert_int_equal (backlog, ledger.count);
    const sgmq_delivery_t *delivery = e2e_recv (exec, 5000);
    assert_int_equal (delivery->seq, 1);
    s_title (title, sizeof title, ledger.refs [1]);
    assert_string_equal (delivery->body.u.escalation.title, title);
    //  An ack needs room too: stored, or refused as full, nothing else.
    bool duplicate = false, acked = true;
    if (sgmq_client_ack (exec, 1, &duplicate, &error) != 0) {
        s_expect_full (&error);
        acked = false;
    }
    fprintf (stderr, "faults: while full, an ack was %s\n", acked ? "stored" : "refused");
    sgmq_client_destroy (&exec);

    //  A clean stop and a start on the full disk (the stop's checkpoint
    //  may not fit: the broker still stops cleanly).
    assert_int_equal (e2e_stop (f->e2e), 0);
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    s_audit (f, &ledger);

    //  Make room: delete the filler, or raise the cap (a restart).
    if (f->cap) {
        assert_int_equal (e2e_stop (f->e2e), 0);
        e2e_config_set (f->e2e, "limits/map-size-max", S_CAP_LARGE);
        assert_int_equal (e2e_start (f->e2e, NULL), 0);
    }
    else
        assert_int_equal (unlink (f->filler), 0);

    //  Publishing resumes where the chain stopped (the client reconnected
    //  by itself if the broker restarted).
    s_new_ref (&ledger, ref, sizeof ref);
    s_title (title, sizeof title, ref);
    body = s_body (title);
    if (sgmq_client_publish (police, ref, &body, &confirm, &error))
        fail_msg ("publish after making room: %d %s", error.code, error.reason);
    assert_int_equal (confirm.seq, ledger.highest + 1);
    e2e_ledger_confirm (&ledger, &confirm);
    //  Every refused reference publishes as new: none was stored.
    for (size_t i = 0; i < ledger.refused_count; i++)
        s_send (police, ledger.refused [i]);
    assert_int_equal (s_collect (police, &ledger), 0);
    s_audit (f, &ledger);
    s_expect_pending (f, ledger.count - (acked ? 1 : 0));
    sgmq_client_destroy (&police);
    assert_int_equal (e2e_stop (f->e2e), 0);
    e2e_ledger_free (&ledger);
}

static int
s_setup_disk (void **state)
{
    s_fix_t *f = s_fix_new ("faults-full");
    *state = f;
    s_full_setup (f, false);
    return 0;
}

static int
s_setup_cap (void **state)
{
    s_fix_t *f = s_fix_new ("faults-cap");
    *state = f;
    s_full_setup (f, true);
    return 0;
}

static void
test_disk_full_refuses_then_resumes (void **state)
{
    s_fill_and_recover (*state);
}

static void
test_map_cap_full_refuses_then_resumes (void **state)
{
    s_fill_and_recover (*state);
}

//  ---------------------------------------------------------------------
//  A damaged data file

static char *
s_data_file (s_fix_t *f)
{
    char *data = s_path (f->e2e->dir, "data");
    char *file = s_path (data, "data.mdb");
    free (data);
    return file;
}

static int
s_setup_history (void **state)
{
    s_fix_t *f = s_fix_new ("faults-damage");
    *state = f;
    e2e_ledger_t ledger = { 0 };
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    sgmq_client_t *police = e2e_connect (f->e2e, f->police);
    char ref [32];
    for (int i = 0; i < S_HISTORY; i++) {
        s_new_ref (&ledger, ref, sizeof ref);
        s_send (police, ref);
    }
    assert_int_equal (s_collect (police, &ledger), 0);
    sgmq_client_destroy (&police);
    assert_int_equal (e2e_stop (f->e2e), 0);
    e2e_ledger_free (&ledger);
    return 0;
}

//  The broker refuses to start on the damaged file, quickly and without
//  dying of a signal, with one line naming the file and `problem`; and
//  --check-config says the same.
static void
s_expect_refused (s_fix_t *f, const char *damage, const char *problem)
{
    char *file = s_data_file (f);
    int64_t started = testutil_now_ms ();
    int status = 0;
    if (e2e_start (f->e2e, &status) == 0)
        fail_msg ("%s: the broker started", damage);
    int64_t took = testutil_now_ms () - started;
    char *log = e2e_log (f->e2e);
    assert_non_null (log);
    //  -1: it died of a signal (a crash).
    if (status != 1)
        fail_msg ("%s: broker exit %d, not 1; its log:\n%s", damage, status, log);
    assert_true (took < testutil_ms (S_QUICK_MS));
    assert_null (strstr (log, "Sanitizer"));
    assert_null (strstr (log, "runtime error"));
    //  The error is one line that names the file and the problem.
    char *line = strstr (log, "sgmq-broker: ");
    if (!line || !strstr (line, file) || !strstr (line, problem))
        fail_msg ("%s: no line naming %s and \"%s\" in the log:\n%s", damage, file,
                  problem, log);
    line = strndup (line, strcspn (line, "\n"));
    assert_non_null (strstr (line, file));
    assert_non_null (strstr (line, problem));
    fprintf (stderr, "faults: %s: %s (exit %d, %lld ms)\n", damage, line, status,
             (long long) took);

    char *err = NULL;
    const char *argv [] = { e2e_broker_bin, "--config", f->e2e->config, "--check-config",
                            NULL };
    int code = e2e_run (argv, NULL, NULL, NULL, &err, S_QUICK_MS);
    if (code != 1 || !strstr (err, line))
        fail_msg ("%s: --check-config exit %d, stderr %s", damage, code, err);
    free (err);
    free (line);
    free (log);
    free (file);
}

//  The auditor's verify: intact, `count` messages.
static void
s_expect_intact (s_fix_t *f, uint64_t count)
{
    uint8_t pk [SGMQ_KEYFILE_SIGN_PK_SIZE];
    s_read_signing_pk (f, pk);
    sgmq_client_t *auditor = e2e_connect (f->e2e, f->auditor);
    sgmq_verify_t report;
    sgmq_error_t error;
    if (sgmq_client_verify (auditor, pk, &report, NULL, NULL, &error))
        fail_msg ("verify: %d %s", error.code, error.reason);
    assert_true (report.intact);
    assert_int_equal (report.count, count);
    sgmq_client_destroy (&auditor);
}

//  Put back the undamaged file.
static void
s_restore (const char *file, const char *copy, size_t size)
{
    assert_int_equal (testutil_write_file (file, copy, size), 0);
}

static void
s_truncate (const char *file, off_t size)
{
    assert_int_equal (truncate (file, size), 0);
}

//  Write `size` bytes at `offset` of the file.
static void
s_overwrite (const char *file, off_t offset, const void *data, size_t size)
{
    int fd = open (file, O_WRONLY);
    assert_true (fd >= 0);
    assert_int_equal (pwrite (fd, data, size, offset), (ssize_t) size);
    assert_int_equal (close (fd), 0);
}

//  Change the sender's name in every copy of a message record in the file:
//  the canonical region starts with u16 length and the name, then u16
//  length 40 and the sender's key. Index keys hold the name too, but never
//  in this frame. Every copy, since the free pages LMDB keeps for reuse
//  hold stale copies of records, and which copy is live depends on how the
//  history fell into transactions. 'P' becomes 'Q': still a valid name,
//  but no longer what was hashed. Returns how many copies it changed.
static size_t
s_damage_records (char *data, size_t size)
{
    static const char name [] = "Police case system";
    char pattern [sizeof name + 4];
    pattern [0] = 0;
    pattern [1] = (char) (sizeof name - 1);
    memcpy (pattern + 2, name, sizeof name - 1);
    pattern [sizeof name + 1] = 0;
    pattern [sizeof name + 2] = 40;
    size_t length = sizeof name + 3, changed = 0;
    char *at = data;
    while ((at = memmem (at, size - (size_t) (at - data), pattern, length))) {
        at [2] ^= 0x01;
        at += length;
        changed++;
    }
    return changed;
}

static void
test_damaged_data_file_refused_at_start (void **state)
{
    s_fix_t *f = *state;
    char *file = s_data_file (f);
    size_t size = 0;
    char *copy = testutil_read_file (file, &size);
    assert_non_null (copy);
    assert_true (size >= 16 * S_PAGE);

    s_truncate (file, (off_t) size / 2);
    s_expect_refused (f, "truncated to half", "truncated");
    s_restore (file, copy, size);

    s_truncate (file, 0);
    s_expect_refused (f, "truncated to 0 bytes", "empty file");
    s_restore (file, copy, size);

    s_truncate (file, (off_t) (size / 2 + S_PAGE / 2 + 1));
    s_expect_refused (f, "truncated off a page boundary", "truncated");
    s_restore (file, copy, size);

    uint8_t garbage [2 * S_PAGE];
    randombytes_buf (garbage, sizeof garbage);
    s_overwrite (file, 0, garbage, sizeof garbage);
    s_expect_refused (f, "first pages overwritten", "header is damaged");
    s_restore (file, copy, size);

    uint8_t byte = (uint8_t) (copy [S_META_MAGIC_AT] ^ 0x20);
    s_overwrite (file, S_META_MAGIC_AT, &byte, 1);
    s_expect_refused (f, "one byte of the meta page changed", "header is damaged");
    s_restore (file, copy, size);

    //  Undamaged again: it starts, and its history is intact.
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    s_expect_intact (f, S_HISTORY);
    assert_int_equal (e2e_stop (f->e2e), 0);
    free (copy);
    free (file);
}

static void
test_damaged_record_found_by_verify (void **state)
{
    s_fix_t *f = *state;
    char *file = s_data_file (f);
    size_t size = 0;
    char *copy = testutil_read_file (file, &size);
    assert_non_null (copy);
    assert_true (s_damage_records (copy, size) > 0);
    s_overwrite (file, 0, copy, size);
    free (copy);

    int status = 0;
    if (e2e_start (f->e2e, &status) != 0) {
        //  Refusing is also right, if it says why in one line.
        char *log = e2e_log (f->e2e);
        if (status != 1 || !strstr (log, "sgmq-broker: "))
            fail_msg ("broker exit %d on a damaged record; its log:\n%s", status, log);
        free (log);
        free (file);
        return;
    }
    //  The auditor's verify names the damaged message; the broker serves on.
    uint8_t pk [SGMQ_KEYFILE_SIGN_PK_SIZE];
    s_read_signing_pk (f, pk);
    sgmq_client_t *auditor = e2e_connect (f->e2e, f->auditor);
    sgmq_verify_t report;
    sgmq_error_t error;
    int rc = sgmq_client_verify (auditor, pk, &report, NULL, NULL, &error);
    if (rc == 0) {
        assert_false (report.intact);
        assert_true (report.bad_seq >= 1 && report.bad_seq <= S_HISTORY);
        fprintf (stderr, "faults: a byte changed in each record: verify: broken at "
                 "%llu: %s\n", (unsigned long long) report.bad_seq, report.reason);
    }
    else {
        //  Or the broker refused to send a record it found damaged.
        assert_true (sgmq_error_refused (&error));
        fprintf (stderr, "faults: a byte changed in each record: verify refused: "
                 "%d %s\n", error.code, error.reason);
    }
    sgmq_client_destroy (&auditor);
    char *out = NULL;
    int code = e2e_cli (f->e2e, f->auditor, NULL, &out, NULL, "verify", NULL);
    assert_int_not_equal (code, 0);
    free (out);
    sgmq_client_t *police = e2e_connect (f->e2e, f->police);
    assert_int_equal (sgmq_client_ping (police, &error), 0);
    sgmq_client_destroy (&police);
    assert_int_equal (e2e_stop (f->e2e), 0);
    free (file);
}

//  An acknowledgement record edited on the disk (who acknowledged when)
//  leaves the message chain whole: an auditor's verify cannot see it, and
//  nothing the broker runs at start checks the ack chain. sgmq-broker
//  --check-config --verify does, naming the broken event (a review forged
//  and removed acks that every shipped check passed).
static int
s_setup_acked (void **state)
{
    s_fix_t *f = s_fix_new ("faults-ack");
    *state = f;
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    sgmq_client_t *police = e2e_connect (f->e2e, f->police);
    e2e_ledger_t ledger = { 0 };
    char ref [32];
    for (int i = 0; i < 3; i++) {
        s_new_ref (&ledger, ref, sizeof ref);
        s_send (police, ref);
    }
    assert_int_equal (s_collect (police, &ledger), 0);
    sgmq_client_destroy (&police);
    e2e_ledger_free (&ledger);
    sgmq_client_t *exec = e2e_connect (f->e2e, f->exec);
    sgmq_error_t error;
    for (uint64_t seq = 1; seq <= 3; seq++)
        assert_int_equal (sgmq_client_ack (exec, seq, NULL, &error), 0);
    sgmq_client_destroy (&exec);
    assert_int_equal (e2e_stop (f->e2e), 0);
    return 0;
}

//  Flip a bit of byte `at` (from the end if negative) of the record of
//  big-endian u64 key `seq` (0: the first record) in the stopped broker's
//  named database `db`, as someone with the store's files can.
static void
s_flip_byte (s_fix_t *f, const char *db, uint64_t seq, long at)
{
    char *data = s_path (f->e2e->dir, "data");
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cursor;
    uint8_t seq_be [8];
    for (int i = 0; i < 8; i++)
        seq_be [i] = (uint8_t) (seq >> (56 - 8 * i));
    MDB_val key = { sizeof seq_be, seq_be }, val;
    assert_int_equal (mdb_env_create (&env), 0);
    assert_int_equal (mdb_env_set_maxdbs (env, 32), 0);
    assert_int_equal (mdb_env_set_mapsize (env, (size_t) 1 << 30), 0);
    assert_int_equal (mdb_env_open (env, data, 0, 0600), 0);
    assert_int_equal (mdb_txn_begin (env, NULL, 0, &txn), 0);
    assert_int_equal (mdb_dbi_open (txn, db, 0, &dbi), 0);
    assert_int_equal (mdb_cursor_open (txn, dbi, &cursor), 0);
    assert_int_equal (mdb_cursor_get (cursor, &key, &val, seq ? MDB_SET : MDB_FIRST), 0);
    uint8_t *record = malloc (val.mv_size);
    assert_non_null (record);
    memcpy (record, val.mv_data, val.mv_size);
    size_t offset = at < 0 ? val.mv_size - (size_t) -at : (size_t) at;
    assert_true (offset < val.mv_size);
    record [offset] ^= 0x01;
    MDB_val edited = { val.mv_size, record };
    assert_int_equal (mdb_cursor_put (cursor, &key, &edited, MDB_CURRENT), 0);
    mdb_cursor_close (cursor);
    assert_int_equal (mdb_txn_commit (txn), 0);
    mdb_env_close (env);
    free (record);
    free (data);
}

//  `--check-config --verify`'s exit code, with its stdout and stderr.
static int
s_verify_store (s_fix_t *f, char **out, char **err)
{
    const char *argv [] = { e2e_broker_bin, "--config", f->e2e->config, "--check-config",
                            "--verify", NULL };
    return e2e_run (argv, NULL, NULL, out, err, testutil_ms (30000));
}

static void
test_forged_ack_found_by_the_store_verify (void **state)
{
    s_fix_t *f = *state;
    char *out = NULL, *err = NULL;
    assert_int_equal (s_verify_store (f, &out, &err), 0);
    assert_non_null (strstr (out, "3 messages, 3 acknowledgements"));
    free (out);
    free (err);
    //  Move the first acknowledgement back in time, as someone with the
    //  disk (and no key) can: its acked_at (ackd: version, flags, u32
    //  count, u64 first, u64 last, then u64 acked_at; byte 27 moves it by
    //  2^16 ms).
    s_flip_byte (f, "ackd", 0, 27);
    assert_int_equal (s_verify_store (f, &out, &err), 1);
    fprintf (stderr, "faults: an acknowledgement's time edited: %s", err);
    assert_non_null (strstr (err, "store verify: "));
    free (out);
    free (err);
}

//  `sgmq tracker` as the Executive member: its exit code and stderr.
static int
s_tracker (s_fix_t *f, char **err)
{
    char *out = NULL, *html = s_path (f->e2e->dir, "tracker.html");
    int code = e2e_cli (f->e2e, f->exec, NULL, &out, err, "tracker", "--out", html,
                        NULL);
    free (html);
    free (out);
    return code;
}

//  With the store as it now is, the broker's report fails, saying `says`.
static void
s_expect_report_fails (s_fix_t *f, const char *what, const char *says)
{
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    char *err = NULL;
    int code = s_tracker (f, &err);
    fprintf (stderr, "faults: %s: tracker exit %d: %s", what, code, err);
    assert_int_not_equal (code, 0);
    assert_non_null (strstr (err, says));
    free (err);
    assert_int_equal (e2e_stop (f->e2e), 0);
}

//  A message whose sealed body no longer opens (a bit flipped in its
//  MAC) was left out of the Escalation Tracker with only a log line, the
//  report looking whole (a tamper review): the report now fails, naming
//  it, and `sgmq tracker` exits non-zero.
static void
test_unreadable_escalation_fails_the_report (void **state)
{
    s_fix_t *f = *state;
    s_flip_byte (f, "msgs", 2, -1);
    s_expect_report_fails (f, "message 2 unreadable",
                           "message 2 cannot be read from the store");
}

//  The tracking records are in no chain, but the messages they describe
//  are: a date to respond by moved, or another message made an
//  escalation's response, on the disk (a tamper review set a critical
//  escalation "responded: Approved" with another's response) ends the
//  report with an error naming it instead of reaching the papers.
static void
test_edited_tracking_record_fails_the_report (void **state)
{
    s_fix_t *f = *state;
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    sgmq_client_t *exec = e2e_connect (f->e2e, f->exec);
    static const char *actions [] = { "Circulate the protocol" };
    sgmq_body_t response = { .kind = SGMQ_KIND_RESPONSE };
    response.u.response.to = 1;
    response.u.response.decision = "Agreed";
    response.u.response.summary = "The Executive agrees the protocol.";
    response.u.response.action = (sgmq_strlist_t) { 1, actions };
    sgmq_confirm_t confirm;
    sgmq_error_t error;
    assert_int_equal (sgmq_client_publish (exec, NULL, &response, &confirm, &error), 0);
    assert_int_equal (confirm.seq, 4);
    sgmq_client_destroy (&exec);
    char *err = NULL;
    assert_int_equal (s_tracker (f, &err), 0);
    free (err);
    assert_int_equal (e2e_stop (f->e2e), 0);

    //  esc: version, status, u32 overdue, then u64 raised, ack_by,
    //  respond_by (bytes 22-29), acked_at, responded_at, response_seq
    //  (bytes 46-53), ...
    s_flip_byte (f, "esc", 2, 27);
    s_expect_report_fails (f, "escalation 2's date moved",
                           "tracking record of escalation 2 does not match");
    s_flip_byte (f, "esc", 2, 27);          //  back as it was
    s_flip_byte (f, "esc", 1, 53);          //  response 4 -> message 5
    s_expect_report_fails (f, "escalation 1's response moved",
                           "escalation 1 names message 5 as its response");
}

int
main (void)
{
    //  Our own mount namespace, before any thread exists (unshare refuses
    //  a multithreaded process), with private propagation: the tmpfs this
    //  test mounts is then invisible outside it and disappears with the
    //  last process in it, even if the test is killed.
    if (unshare (CLONE_NEWNS) == 0
    &&  mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
        s_private_mounts = true;
    if (!s_private_mounts)
        fprintf (stderr, "faults: no private mount namespace (%s): mounts are "
                 "undone in teardown\n", strerror (errno));
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_disk_full_refuses_then_resumes,
                                         s_setup_disk, s_teardown),
        cmocka_unit_test_setup_teardown (test_map_cap_full_refuses_then_resumes,
                                         s_setup_cap, s_teardown),
        cmocka_unit_test_setup_teardown (test_damaged_data_file_refused_at_start,
                                         s_setup_history, s_teardown),
        cmocka_unit_test_setup_teardown (test_damaged_record_found_by_verify,
                                         s_setup_history, s_teardown),
        cmocka_unit_test_setup_teardown (test_forged_ack_found_by_the_store_verify,
                                         s_setup_acked, s_teardown),
        cmocka_unit_test_setup_teardown (test_unreadable_escalation_fails_the_report,
                                         s_setup_acked, s_teardown),
        cmocka_unit_test_setup_teardown (test_edited_tracking_record_fails_the_report,
                                         s_setup_acked, s_teardown),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return failed;
}
