/*  End-to-end: the online backup and its restore, as docs/operations.md
    tells an operator to do them.

    A police case system raises escalations (the broker is restarted once
    on the way, so the store holds a signed checkpoint). Then, while the
    same system keeps the broker committing with pipelined publishes,
    `sgmq-broker --backup DEST` copies the store from another process. The
    broker is stopped; the deployment (config, keys, certs, broker cert)
    is copied to a new folder whose data/ holds only the backup's data.mdb
    (mode 0600). A broker started there must pass --check-config, verify
    its chain and the signed checkpoint for an auditor, and serve every
    message confirmed before the backup began, each with its body; the
    Executive's deliveries are there, and new publishes continue the chain.
*/
#define _GNU_SOURCE
#include "e2e.h"
#include "sgmq_keyfile.h"
#include "sgmq_time.h"

#include <czmq.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

//  Escalations confirmed before the restart, after it, and per pipelined
//  batch while the backup runs; the most sent during the backup.
#define S_BEFORE_RESTART 200
#define S_AFTER_RESTART  100
#define S_LOAD_BATCH     25
#define S_LOAD_MAX       50000
//  How long the backup (and the load beside it) may take, ms (scaled).
#define S_BACKUP_MS      60000
//  One confirm, ms (scaled).
#define S_CONFIRM_MS     10000
//  Bytes of each escalation's summary (the protocol allows 4000).
#define S_SUMMARY_SIZE   3000

static void
s_title (char *title, size_t size, const char *ref)
{
    snprintf (title, size, "Missing episodes, escalation %s", ref);
}

//  Queue one escalation (pipelined); its ref and title name it. A long
//  summary makes the store big enough (a few MiB) for the copy to take a
//  while beside the broker's commits.
static void
s_send (sgmq_client_t *police, e2e_ledger_t *ledger)
{
    static char summary [S_SUMMARY_SIZE + 1];
    if (!summary [0])
        for (size_t i = 0; i < S_SUMMARY_SIZE; i++)
            summary [i] = "A summary of the concern, without names. " [i % 41];
    char ref [32], title [96];
    snprintf (ref, sizeof ref, "backup-%06llu",
              (unsigned long long) ++ledger->next_ref);
    s_title (title, sizeof title, ref);
    sgmq_body_t body = { .kind = SGMQ_KIND_ESCALATION };
    body.u.escalation.group = "exploitation";
    body.u.escalation.title = title;
    body.u.escalation.summary = summary;
    body.u.escalation.severity = SGMQ_SEVERITY_HIGH;
    body.u.escalation.requested = "A lead agency named by the Executive";
    body.u.escalation.respond_by = sgmq_time_now () + 7ULL * 86400000;
    sgmq_error_t error;
    int rc = sgmq_client_publish_send (police, ref, &body, &error);
    if (rc)
        fprintf (stderr, "publish_send: %d %s\n", error.code, error.reason);
    assert_int_equal (rc, 0);
}

//  Wait for the next confirm of a queued publish.
static void
s_confirm (sgmq_client_t *police, e2e_ledger_t *ledger)
{
    sgmq_confirm_t confirm;
    sgmq_error_t error;
    int rc = sgmq_client_publish_wait (police, (int) testutil_ms (S_CONFIRM_MS),
                                       &confirm, &error);
    if (rc || error.code)
        fprintf (stderr, "no confirm: %d %s\n", error.code, error.reason);
    assert_int_equal (rc, 0);
    assert_int_equal (error.code, 0);
    assert_false (confirm.duplicate);
    e2e_ledger_confirm (ledger, &confirm);
}

static void
s_publish_confirmed (sgmq_client_t *police, e2e_ledger_t *ledger, int count)
{
    for (int i = 0; i < count; i++)
        s_send (police, ledger);
    while (sgmq_client_in_flight (police))
        s_confirm (police, ledger);
}

static char *
s_path (const char *dir, const char *name)
{
    char *path = NULL;
    assert_true (asprintf (&path, "%s/%s", dir, name) > 0);
    return path;
}

//  Start a program with stdout and stderr into files; its pid.
static pid_t
s_spawn (const char *const *argv, const char *out_path, const char *err_path)
{
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen (&actions, STDOUT_FILENO, out_path,
                                      O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen (&actions, STDERR_FILENO, err_path,
                                      O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawn (&pid, argv [0], &actions, NULL, (char *const *) argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    assert_int_equal (rc, 0);
    return pid;
}

static void
s_expect_mode (const char *path, mode_t mode)
{
    struct stat st;
    assert_int_equal (stat (path, &st), 0);
    if ((st.st_mode & 07777) != mode)
        fail_msg ("%s: mode %o, wanted %o", path, st.st_mode & 07777, mode);
}

//  `sgmq-broker ARGS...`: its exit code, with stdout and stderr.
static int
s_broker (char **out, char **err, const char *a1, const char *a2,
          const char *a3, const char *a4, const char *a5)
{
    const char *argv [] = { e2e_broker_bin, a1, a2, a3, a4, a5, NULL };
    return e2e_run (argv, NULL, NULL, out, err, 30000);
}

static void
test_backup_under_load_restores (void **state)
{
    (void) state;
    e2e_t *e2e = e2e_new ("backup", NULL);
    char *police_cert = e2e_principal (e2e, "police.cert", "Police case system",
                                       "Metropolitan Police", "publisher", "exploitation");
    char *exec_cert = e2e_principal (e2e, "exec.cert", "Executive member (ICB)",
                                     "Integrated Care Board", "member", "executive");
    char *auditor_cert = e2e_principal (e2e, "auditor.cert", "Independent scrutineer",
                                        "Safeguarding Partnership", "auditor", NULL);
    char *base = testutil_tmpdir ("backup-dest");
    assert_non_null (base);
    char *dest = s_path (base, "backup");
    char *full = s_path (base, "full");
    char *out = NULL, *err = NULL;

    //  Refused, before anything is copied: no config, a backup with
    //  --check-config, a destination that is not empty.
    assert_int_equal (s_broker (NULL, &err, "--backup", dest, NULL, NULL, NULL), 2);
    free (err);
    assert_int_equal (s_broker (NULL, &err, "--config", e2e->config, "--check-config",
                                "--backup", dest), 2);
    free (err);
    assert_int_equal (mkdir (full, 0700), 0);
    char *stray = s_path (full, "notes.txt");
    assert_int_equal (testutil_write_file (stray, "x", 1), 0);
    assert_int_equal (s_broker (&out, &err, "--config", e2e->config, "--backup", full,
                                NULL), 1);
    assert_non_null (strstr (err, "not an empty directory"));
    assert_null (strstr (out, "backed up"));
    free (out);
    free (err);
    char *stray_copy = s_path (full, "data.mdb");
    assert_int_not_equal (access (stray_copy, F_OK), 0);
    free (stray_copy);
    free (stray);

    //  A history with a signed checkpoint: a clean stop signs the head.
    e2e_ledger_t ledger = { 0 };
    assert_int_equal (e2e_start (e2e, NULL), 0);
    sgmq_client_t *police = e2e_connect (e2e, police_cert);
    s_publish_confirmed (police, &ledger, S_BEFORE_RESTART);
    sgmq_client_destroy (&police);
    assert_int_equal (e2e_stop (e2e), 0);
    uint64_t signed_seq = ledger.highest;
    assert_int_equal (e2e_start (e2e, NULL), 0);
    police = e2e_connect (e2e, police_cert);
    s_publish_confirmed (police, &ledger, S_AFTER_RESTART);

    //  The backup, from another process, while publishes keep the broker
    //  committing: some are in flight before it starts, and more are sent
    //  until it ends.
    uint64_t recorded = ledger.highest;
    for (int i = 0; i < S_LOAD_BATCH; i++)
        s_send (police, &ledger);
    char *out_path = s_path (base, "backup.out");
    char *err_path = s_path (base, "backup.err");
    const char *argv [] = { e2e_broker_bin, "--config", e2e->config, "--backup", dest, NULL };
    pid_t backup = s_spawn (argv, out_path, err_path);
    int64_t deadline = testutil_now_ms () + testutil_ms (S_BACKUP_MS);
    int status = 0;
    uint64_t during = 0;
    bool running = true;
    while (running) {
        assert_true (testutil_now_ms () < deadline);
        //  Keep a batch in flight while the copy runs.
        while (sgmq_client_in_flight (police)) {
            s_confirm (police, &ledger);
            during++;
        }
        pid_t done = waitpid (backup, &status, WNOHANG);
        assert_true (done >= 0);
        running = done == 0;
        if (running && ledger.next_ref < S_LOAD_MAX)
            for (int i = 0; i < S_LOAD_BATCH; i++)
                s_send (police, &ledger);
        else
        if (running) {
            assert_int_equal (waitpid (backup, &status, 0), backup);
            running = false;
        }
    }
    sgmq_client_destroy (&police);
    char *backup_out = testutil_read_file (out_path, NULL);
    char *backup_err = testutil_read_file (err_path, NULL);
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
        fail_msg ("--backup failed (status %d): %s", status, backup_err);
    assert_non_null (strstr (backup_out, "backed up"));
    assert_non_null (strstr (backup_out, "Restore:"));
    assert_non_null (strstr (backup_out, "NOT in it"));
    fprintf (stderr, "backup: %llu confirmed before, %llu confirmed while it ran\n",
             (unsigned long long) recorded, (unsigned long long) during);
    free (backup_out);
    free (backup_err);
    free (out_path);
    free (err_path);
    char *backup_file = s_path (dest, "data.mdb");
    s_expect_mode (dest, 0700);
    s_expect_mode (backup_file, 0600);
    assert_int_equal (e2e_stop (e2e), 0);

    //  The restore, as docs/operations.md says: the deployment's config,
    //  keys and certs (kept apart from the backup), and in a new data/
    //  only the backup's data.mdb, mode 0600.
    e2e_t *restored = e2e_new ("restored", NULL);
    char *from = s_path (e2e->dir, ".");
    const char *copy [] = { "/bin/cp", "-a", from, restored->dir, NULL };
    assert_int_equal (e2e_run (copy, NULL, NULL, NULL, NULL, 30000), 0);
    free (from);
    char *data = s_path (restored->dir, "data");
    assert_int_equal (testutil_rmtree (data), 0);
    assert_int_equal (mkdir (data, 0700), 0);
    char *restored_file = s_path (data, "data.mdb");
    const char *install [] = { "/usr/bin/install", "-m", "0600", backup_file,
                               restored_file, NULL };
    assert_int_equal (e2e_run (install, NULL, NULL, NULL, NULL, 30000), 0);
    s_expect_mode (restored_file, 0600);
    free (restored_file);
    free (data);
    assert_int_equal (s_broker (&out, &err, "--config", restored->config,
                                "--check-config", NULL, NULL), 0);
    free (out);
    free (err);
    assert_int_equal (e2e_start (restored, NULL), 0);

    //  The auditor verifies the chain and the broker's signed checkpoint.
    uint8_t signing_pk [SGMQ_KEYFILE_SIGN_PK_SIZE];
    char key_error [SGMQ_KEYFILE_ERROR_SIZE];
    char *pub = s_path (restored->dir, "signing.pub");
    assert_int_equal (sgmq_keyfile_read_signing_public (pub, signing_pk, key_error), 0);
    free (pub);
    sgmq_client_t *auditor = e2e_connect (restored, auditor_cert);
    sgmq_verify_t report;
    sgmq_error_t error;
    int rc = sgmq_client_verify (auditor, signing_pk, &report, NULL, NULL, &error);
    if (rc)
        fprintf (stderr, "verify: %d %s\n", error.code, error.reason);
    assert_int_equal (rc, 0);
    if (!report.intact)
        fail_msg ("restored chain not intact at %llu: %s",
                  (unsigned long long) report.bad_seq, report.reason);
    assert_true (report.checkpoint_checked);
    assert_true (report.checkpoint_seq >= signed_seq);
    assert_true (report.head_seq >= recorded);
    assert_true (report.head_seq <= ledger.highest);
    assert_int_equal (report.count, report.head_seq);

    //  Every message confirmed before the backup began, with its body.
    sgmq_replay_query_t query = { .from = 1, .to = recorded };
    sgmq_replay_t *replay = sgmq_client_replay (auditor, &query, &error);
    assert_non_null (replay);
    const sgmq_replay_item_t *item;
    uint64_t expected = 1;
    while ((rc = sgmq_replay_next (replay, &item, &error)) == 1) {
        assert_int_equal (item->seq, expected);
        assert_true (item->seq < ledger.size && ledger.refs [item->seq][0]);
        assert_int_equal (item->body.kind, SGMQ_KIND_ESCALATION);
        char title [96];
        s_title (title, sizeof title, ledger.refs [item->seq]);
        assert_string_equal (item->body.u.escalation.title, title);
        assert_string_equal (item->body.u.escalation.group, "exploitation");
        assert_int_equal (strlen (item->body.u.escalation.summary), S_SUMMARY_SIZE);
        assert_string_equal (item->from, "Police case system");
        expected++;
    }
    if (rc)
        fprintf (stderr, "replay: %d %s\n", error.code, error.reason);
    assert_int_equal (rc, 0);
    assert_int_equal (expected - 1, recorded);
    sgmq_replay_destroy (&replay);
    sgmq_client_destroy (&auditor);

    //  The Executive member's deliveries came back with the messages, all
    //  still unacknowledged; and the chain goes on from the restored head.
    sgmq_client_t *exec = e2e_connect (restored, exec_cert);
    uint64_t backlog = 0;
    assert_int_equal (sgmq_client_subscribe (exec, 1, &backlog, &error), 0);
    assert_int_equal (backlog, report.head_seq);
    const sgmq_delivery_t *delivery = e2e_recv (exec, 5000);
    assert_int_equal (delivery->seq, 1);
    sgmq_client_destroy (&exec);
    police = e2e_connect (restored, police_cert);
    assert_int_equal (e2e_escalate (police, "exploitation", "After the restore"),
                      report.head_seq + 1);
    sgmq_client_destroy (&police);
    assert_int_equal (e2e_stop (restored), 0);

    e2e_destroy (&restored);
    e2e_destroy (&e2e);
    testutil_rmtree (base);
    free (backup_file);
    free (base);
    free (dest);
    free (full);
    e2e_ledger_free (&ledger);
    free (police_cert);
    free (exec_cert);
    free (auditor_cert);
}

//  Set every "format" record in a data file to `from` -> `to` (LMDB has
//  no page checksums, so an older build's store is one byte away); the
//  number of records changed.
static int
s_set_format (const char *file, uint8_t from, uint8_t to)
{
    size_t size = 0;
    char *data = testutil_read_file (file, &size);
    assert_non_null (data);
    const char key [] = "format\0\0\0";
    int changed = 0;
    for (char *at = data; (at = memmem (at, size - (size_t) (at - data), key,
                                         sizeof key - 1)); at++)
        if ((uint8_t) at [sizeof key - 1] == from) {
            at [sizeof key - 1] = (char) to;
            changed++;
        }
    assert_int_equal (testutil_write_file (file, data, size), 0);
    free (data);
    return changed;
}

//  A store an older build left (format 1): this build's --check-config
//  leaves it so, since the check must not lock the older build out; the
//  first start marks it 2 (a second review found the check marked it).
static void
test_check_leaves_an_older_store_as_it_is (void **state)
{
    (void) state;
    e2e_t *e2e = e2e_new ("format", NULL);
    assert_int_equal (e2e_start (e2e, NULL), 0);
    assert_int_equal (e2e_stop (e2e), 0);
    char *data = s_path (e2e->dir, "data");
    char *file = s_path (data, "data.mdb");
    assert_true (s_set_format (file, 2, 1) >= 1);
    char *out = NULL, *err = NULL;
    assert_int_equal (s_broker (&out, &err, "--config", e2e->config, "--check-config",
                                NULL, NULL), 0);
    free (out);
    free (err);
    assert_int_equal (s_set_format (file, 2, 2), 0);       //  none says 2
    assert_int_equal (e2e_start (e2e, NULL), 0);
    assert_int_equal (e2e_stop (e2e), 0);
    assert_true (s_set_format (file, 2, 2) >= 1);          //  marked now
    free (file);
    free (data);
    e2e_destroy (&e2e);
}

//  A store that goes missing (a data volume not mounted, a restore to the
//  wrong place) is not replaced by a new, empty one numbered from 1 again:
//  the broker and its check refuse; only `sgmq init`'s marker (or one an
//  operator makes) lets a new store be made, and the first start removes it.
static void
test_missing_store_is_not_replaced (void **state)
{
    (void) state;
    e2e_t *e2e = e2e_new ("missing", NULL);
    char *data = s_path (e2e->dir, "data");
    char *file = s_path (data, "data.mdb");
    char *marker = s_path (data, "new-store");
    char *aside = s_path (e2e->dir, "data.mdb.aside");
    struct stat st;
    assert_int_equal (stat (marker, &st), 0);
    //  A check before the first start makes the store: the marker goes
    //  then (a review found it stayed, and a later loss was replaced).
    char *out = NULL, *err = NULL;
    assert_int_equal (s_broker (&out, &err, "--config", e2e->config, "--check-config",
                                NULL, NULL), 0);
    free (out);
    free (err);
    out = err = NULL;
    assert_int_equal (stat (marker, &st), -1);              //  used up
    assert_int_equal (e2e_start (e2e, NULL), 0);
    assert_int_equal (e2e_stop (e2e), 0);
    assert_int_equal (rename (file, aside), 0);
    assert_int_equal (s_broker (&out, &err, "--config", e2e->config, "--check-config",
                                NULL, NULL), 1);
    assert_non_null (strstr (err, "no store here (data.mdb is missing)"));
    free (out);
    free (err);
    out = err = NULL;
    assert_int_equal (s_broker (&out, &err, "--config", e2e->config, NULL, NULL, NULL), 1);
    assert_non_null (strstr (err, "restore it from a backup"));
    free (out);
    free (err);
    assert_int_equal (stat (file, &st), -1);                //  nothing made
    //  Put back, it starts; and an operator's marker makes a new one.
    assert_int_equal (rename (aside, file), 0);
    assert_int_equal (e2e_start (e2e, NULL), 0);
    assert_int_equal (e2e_stop (e2e), 0);
    assert_int_equal (unlink (file), 0);
    assert_int_equal (testutil_write_file (marker, "", 0), 0);
    assert_int_equal (e2e_start (e2e, NULL), 0);
    assert_int_equal (e2e_stop (e2e), 0);
    assert_int_equal (stat (file, &st), 0);
    free (aside);
    free (marker);
    free (file);
    free (data);
    e2e_destroy (&e2e);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_backup_under_load_restores),
        cmocka_unit_test (test_check_leaves_an_older_store_as_it_is),
        cmocka_unit_test (test_missing_store_is_not_replaced),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return failed;
}
