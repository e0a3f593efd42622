/*  End-to-end: the sgmq command line against the real broker. Every
    subcommand, its output (text, --json, CSV) and its error paths with
    their exit codes (2 usage, 3 not authorised, 4 refused, 5 unreachable,
    6 verification failed); a listener that carries on across a broker
    restart without losing or repeating an alert; the Escalation Tracker's
    figures on a known history. */
#define _GNU_SOURCE
#include "e2e.h"
#include "sgmq_cli.h"
#include "sgmq_time.h"

#include <czmq.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    e2e_t *e2e;
    char *police, *exec1, *exec2, *chair, *rrwg, *auditor, *stranger;
} s_fixture_t;

static s_fixture_t *
s_fixture (const char *tag)
{
    s_fixture_t *f = calloc (1, sizeof *f);
    f->e2e = e2e_new (tag, NULL);
    f->police = e2e_principal (f->e2e, "police.cert", "Police case system",
                               "Metropolitan Police", "publisher", "exploitation");
    f->exec1 = e2e_principal (f->e2e, "exec1.cert", "Executive member (ICB)",
                              "Integrated Care Board", "member", "executive");
    f->exec2 = e2e_principal (f->e2e, "exec2.cert", "Executive member (police)",
                              "Metropolitan Police", "member", "executive");
    f->chair = e2e_principal (f->e2e, "chair.cert", "Exploitation sub-group chair",
                              "Local Authority", "member", "exploitation");
    f->rrwg = e2e_principal (f->e2e, "rrwg.cert", "Rapid Review Working Group chair",
                             "Local Authority", "member,publisher",
                             "rapid-review-working-group");
    f->auditor = e2e_principal (f->e2e, "auditor.cert", "Independent scrutineer",
                                "Safeguarding Partnership", "auditor", NULL);
    //  A cert that exists but was never admitted.
    f->stranger = e2e_principal (f->e2e, "stranger.cert", "Stranger", "Nowhere",
                                 "member", NULL);
    char admitted [1024];
    snprintf (admitted, sizeof admitted, "%s/certs/stranger.cert", f->e2e->dir);
    assert_int_equal (unlink (admitted), 0);
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    return f;
}

static void
s_fixture_destroy (s_fixture_t **f_p)
{
    s_fixture_t *f = *f_p;
    e2e_destroy (&f->e2e);
    free (f->police);
    free (f->exec1);
    free (f->exec2);
    free (f->chair);
    free (f->rrwg);
    free (f->auditor);
    free (f->stranger);
    free (f);
    *f_p = NULL;
}

//  Run the CLI; check the exit code; return stdout (and stderr in *err if
//  not NULL), caller frees.
#define s_cli(f, cert, input, expect, err, ...) \
    s_cli_check ((f), (cert), (input), (expect), (err), __FILE__, __LINE__, __VA_ARGS__, NULL)

static char *
s_cli_check (s_fixture_t *f, const char *cert, const char *input, int expect,
             char **err_p, const char *file, int line, ...)
{
    const char *argv [40];
    int argc = 0;
    va_list args;
    va_start (args, line);
    const char *arg;
    while ((arg = va_arg (args, const char *)) && argc < 39)
        argv [argc++] = arg;
    va_end (args);
    argv [argc] = NULL;
    char *out = NULL, *err = NULL;
    //  e2e_cli takes varargs; pass up to 16.
    int rc = e2e_cli (f->e2e, cert, input, &out, &err,
                      argv [0], argv [1], argv [2], argv [3], argv [4], argv [5],
                      argv [6], argv [7], argv [8], argv [9], argv [10], argv [11],
                      argv [12], argv [13], argv [14], argv [15], argv [16], argv [17],
                      argv [18], argv [19], argv [20], NULL);
    if (rc != expect)
        fprintf (stderr, "%s:%d: sgmq %s: exit %d, expected %d\nstdout: %s\nstderr: %s\n",
                 file, line, argv [0], rc, expect, out, err);
    assert_int_equal (rc, expect);
    if (err_p)
        *err_p = err;
    else
        free (err);
    return out;
}

static uint64_t
s_publish_escalation (s_fixture_t *f, const char *severity, const char *title)
{
    char *out = s_cli (f, f->police, NULL, 0, NULL, "publish", "escalation",
                       "--group", "exploitation", "--title", title, "--summary",
                       "A concern, without names.", "--severity", severity,
                       "--requested", "A decision", "--respond-by", "2099-12-31");
    uint64_t seq = strtoull (out, NULL, 10);
    assert_true (seq > 0);
    free (out);
    return seq;
}

//  --------------------------------------------------------------------------

static void
test_help_and_usage_errors (void **state)
{
    (void) state;
    s_fixture_t *f = s_fixture ("cli-usage");
    char *out = s_cli (f, NULL, NULL, 0, NULL, "help");
    for (const char *c = "init cert whoami status publish listen ack pending replay "
                         "verify tracker"; *c; ) {
        char word [16];
        size_t len = strcspn (c, " ");
        snprintf (word, sizeof word, "%.*s", (int) len, c);
        assert_non_null (strstr (out, word));
        c += len + (c [len] == ' ');
    }
    free (out);
    out = s_cli (f, NULL, NULL, 0, NULL, "publish", "--help");
    assert_non_null (strstr (out, "--respond-by"));
    assert_non_null (strstr (out, "exit codes"));
    free (out);
    char *err = NULL;
    free (s_cli (f, NULL, NULL, SGMQ_EXIT_USAGE, &err, "teleport"));
    assert_non_null (strstr (err, "unknown command"));
    free (err);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "whoami", "--colour"));
    assert_non_null (strstr (err, "unknown option --colour"));
    free (err);
    //  Missing field, bad enum, bad time, field of another kind.
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "publish", "escalation",
                 "--group", "exploitation", "--title", "T", "--summary", "S",
                 "--severity", "high", "--respond-by", "2099-01-01"));
    assert_non_null (strstr (err, "--requested is required"));
    free (err);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "publish", "escalation",
                 "--severity", "urgent"));
    assert_non_null (strstr (err, "low, medium, high or critical"));
    free (err);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "publish", "escalation",
                 "--respond-by", "next week"));
    assert_non_null (strstr (err, "2026-12-01T09:00 (UK time)"));
    free (err);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "publish", "response",
                 "--severity", "high"));
    assert_non_null (strstr (err, "not a field of a response"));
    free (err);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "publish", "escalation",
                 "--group", "exploitation", "--severity", "high"));
    assert_non_null (strstr (err, "is required for an escalation"));
    free (err);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "nosuch"));
    assert_non_null (strstr (err, "(see: sgmq --help)"));
    free (err);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "publish", "reminder"));
    assert_non_null (strstr (err, "only from the broker"));
    free (err);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_USAGE, &err, "ack", "twelve"));
    free (err);
    //  Options after positional arguments work as well as before.
    char certs [1024];
    snprintf (certs, sizeof certs, "%s/certs", f->e2e->dir);
    out = s_cli (f, NULL, NULL, 0, NULL, "cert", "list", "--config", f->e2e->config,
                 "--json", "--", certs);
    assert_non_null (strstr (out, "\"name\":\"Police case system\""));
    free (out);
    //  As text, each column starts where its heading does, whatever the
    //  names' lengths.
    out = s_cli (f, NULL, NULL, 0, NULL, "cert", "list", certs);
    char *line = strstr (out, "\nRapid Review Working Group chair ");
    assert_non_null (line);
    line++;
    assert_int_equal (strstr (line, "Local Authority") - line,
                      strstr (out, "AGENCY") - out);
    free (out);
    s_fixture_destroy (&f);
}

static void
test_connection_errors_have_their_codes (void **state)
{
    (void) state;
    s_fixture_t *f = s_fixture ("cli-conn");
    char *err = NULL;
    free (s_cli (f, f->stranger, NULL, SGMQ_EXIT_NOT_AUTHORISED, &err, "whoami"));
    assert_non_null (strstr (err, "not authorised"));
    free (err);
    //  No broker there.
    char endpoint [128];
    snprintf (endpoint, sizeof endpoint, "%s", f->e2e->endpoint);
    e2e_stop (f->e2e);
    free (s_cli (f, f->police, NULL, SGMQ_EXIT_UNREACHABLE, &err, "whoami",
                 "--connect-timeout", "1"));
    assert_non_null (strstr (err, "no CURVE handshake"));
    free (err);
    //  Nothing to connect with.
    free (s_cli (f, NULL, NULL, SGMQ_EXIT_USAGE, &err, "whoami"));
    assert_non_null (strstr (err, "SGMQ_CERT"));
    free (err);
    //  A connect timeout from the environment: a bad one is a usage error,
    //  a good one is used (no broker: unreachable within it).
    char broker [200], server [4200], cert [4200];
    snprintf (broker, sizeof broker, "SGMQ_BROKER=%s", endpoint);
    snprintf (server, sizeof server, "SGMQ_SERVER_CERT=%s", f->e2e->server_cert);
    snprintf (cert, sizeof cert, "SGMQ_CERT=%s", f->police);
    const char *argv [] = { e2e_cli_bin, "whoami", NULL };
    const char *bad [] = { broker, server, cert, "SGMQ_CONNECT_TIMEOUT=soon", NULL };
    assert_int_equal (e2e_run (argv, bad, NULL, NULL, &err, 20000), SGMQ_EXIT_USAGE);
    assert_non_null (strstr (err, "SGMQ_CONNECT_TIMEOUT must be"));
    free (err);
    const char *good [] = { broker, server, cert, "SGMQ_CONNECT_TIMEOUT=1", NULL };
    assert_int_equal (e2e_run (argv, good, NULL, NULL, &err, 20000), SGMQ_EXIT_UNREACHABLE);
    assert_non_null (strstr (err, "within 1000 ms"));
    free (err);
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    s_fixture_destroy (&f);
}

static void
test_publish_listen_ack_pending (void **state)
{
    (void) state;
    s_fixture_t *f = s_fixture ("cli-flow");
    //  Flags.
    uint64_t first = s_publish_escalation (f, "high", "By flags");
    //  --json, --ref and a retry.
    char *out = s_cli (f, f->police, NULL, 0, NULL, "publish", "escalation", "--json",
                       "--ref", "cms-42", "--group", "exploitation", "--title", "Ref",
                       "--summary", "S", "--severity", "low", "--requested", "R",
                       "--respond-by", "2099-01-01T09:00:00Z");
    assert_non_null (strstr (out, "\"seq\":2"));
    assert_non_null (strstr (out, "\"duplicate\":false"));
    free (out);
    out = s_cli (f, f->police, NULL, 0, NULL, "publish", "escalation", "--json",
                 "--ref", "cms-42", "--group", "exploitation", "--title", "Ref",
                 "--summary", "S", "--severity", "low", "--requested", "R",
                 "--respond-by", "2099-01-01T09:00:00Z");
    assert_non_null (strstr (out, "\"seq\":2"));
    assert_non_null (strstr (out, "\"duplicate\":true"));
    free (out);
    //  A JSON document on stdin; keys are the flags with underscores.
    const char *doc = "{\"group\": \"exploitation\", \"title\": \"From a file\", "
                      "\"summary\": \"Line one\\nline two\", \"severity\": \"critical\", "
                      "\"requested\": \"Help\", \"respond_by\": \"2099-02-01\", "
                      "\"case_ref\": \"C-9\"}";
    out = s_cli (f, f->police, doc, 0, NULL, "publish", "escalation", "--file", "-");
    assert_int_equal (strtoull (out, NULL, 10), 3);
    free (out);
    char *err = NULL;
    free (s_cli (f, f->police, "{\"colour\": \"red\"}", SGMQ_EXIT_USAGE, &err, "publish",
                 "escalation", "--file", "-"));
    assert_non_null (strstr (err, "unknown key \"colour\""));
    free (err);
    free (s_cli (f, f->police, "{\"title\": ", SGMQ_EXIT_USAGE, &err, "publish",
                 "escalation", "--file", "-"));
    free (err);
    //  Wrong role: refused by the broker, with the rule.
    free (s_cli (f, f->chair, NULL, SGMQ_EXIT_REFUSED, &err, "publish", "escalation",
                 "--group", "exploitation", "--title", "T", "--summary", "S",
                 "--severity", "low", "--requested", "R", "--respond-by", "2099-01-01"));
    assert_non_null (strstr (err, "rule escalation-publisher"));
    free (err);

    //  The Executive member listens: the backlog, readable and as JSON.
    out = s_cli (f, f->exec1, NULL, 0, NULL, "listen", "--count", "1", "--timeout", "10");
    assert_non_null (strstr (out, "By flags"));
    assert_non_null (strstr (out, "escalation from Police case system"));
    free (out);
    out = s_cli (f, f->exec1, NULL, 0, NULL, "listen", "--json", "--count", "3",
                 "--timeout", "10", "--ack");
    assert_non_null (strstr (out, "\"seq\":1,\"kind\":\"escalation\",\"from\":\"Police case system\""));
    assert_non_null (strstr (out, "\"groups\":[\"executive\"]"));
    assert_non_null (strstr (out, "\"severity\":\"critical\""));
    assert_non_null (strstr (out, "\"summary\":\"Line one\\nline two\""));
    assert_non_null (strstr (out, "\"case_ref\":\"C-9\""));
    assert_non_null (strstr (out, "\"time\":\""));
    free (out);
    //  Nothing left for exec1; exec2 acks by number.
    out = s_cli (f, f->exec1, NULL, 0, NULL, "pending", "--json");
    assert_string_equal (out, "");
    free (out);
    out = s_cli (f, f->exec2, NULL, 0, NULL, "ack", "1", "2");
    assert_non_null (strstr (out, "1 acknowledged"));
    free (out);
    out = s_cli (f, f->exec2, NULL, 0, NULL, "ack", "2");
    assert_non_null (strstr (out, "(already)"));
    free (out);
    free (s_cli (f, f->chair, NULL, SGMQ_EXIT_REFUSED, &err, "ack", "1"));
    assert_non_null (strstr (err, "not a recipient"));
    free (err);

    //  The publisher's view: who has and has not acknowledged.
    out = s_cli (f, f->police, NULL, 0, NULL, "pending", "--mine", "--json");
    assert_non_null (strstr (out, "{\"seq\":3,\"kind\":\"escalation\",\"recipient\":\"Executive member (police)\",\"state\":\"pending\""));
    assert_non_null (strstr (out, "{\"seq\":3,\"kind\":\"escalation\",\"recipient\":\"Executive member (ICB)\",\"state\":\"acknowledged\""));
    free (out);
    out = s_cli (f, f->exec2, NULL, 0, NULL, "pending", "--all");
    assert_non_null (strstr (out, "Executive member (police)"));
    //  For people: UK times, in columns under their headings.
    const char *sent = strstr (out, "SENT"), *row = strchr (out, '\n') + 1;
    assert_non_null (sent);
    size_t column = (size_t) (sent - out);
    assert_true (strlen (row) > column + 20);
    assert_true (strncmp (row + column + 16, " GMT", 4) == 0
                 || strncmp (row + column + 16, " BST", 4) == 0);
    assert_int_equal (row [column + 20], ' ');
    free (out);
    free (s_cli (f, f->chair, NULL, SGMQ_EXIT_REFUSED, &err, "pending", "--all"));
    free (err);
    out = s_cli (f, f->exec2, NULL, 0, NULL, "pending", "--overdue", "--json");
    assert_string_equal (out, "");          //  nothing is past its deadline
    free (out);
    out = s_cli (f, f->exec1, NULL, 0, NULL, "status", "--json");
    assert_non_null (strstr (out, "\"broker\":\"reachable\""));
    assert_non_null (strstr (out, "\"pending\":0"));
    assert_non_null (strstr (out, "\"pending_all\":1"));
    free (out);
    (void) first;
    s_fixture_destroy (&f);
}

//  What people read is what was written: a publisher's title with a
//  right-to-left override, a C1 control (an escape sequence to some
//  terminals), a CR and a second line in a summary are shown as such in
//  `listen` and `pending`, not obeyed (a hostile review).
static void
test_listen_shows_hidden_characters (void **state)
{
    (void) state;
    s_fixture_t *f = s_fixture ("cli-hidden");
    const char *doc = "{\"group\": \"exploitation\", \"title\": \"Safe \\u202ekcatta\", "
                      "\"summary\": \"Line one\\nline two\\r\\u009b31m\", "
                      "\"severity\": \"high\", \"requested\": \"Help\", "
                      "\"respond_by\": \"2099-02-01\"}";
    char *out = s_cli (f, f->police, doc, 0, NULL, "publish", "escalation", "--file", "-");
    assert_int_equal (strtoull (out, NULL, 10), 1);
    free (out);
    out = s_cli (f, f->exec1, NULL, 0, NULL, "pending");
    assert_non_null (strstr (out, "Safe <U+202E>kcatta\n"));
    free (out);
    out = s_cli (f, f->exec1, NULL, 0, NULL, "listen", "--count", "1", "--timeout", "10");
    assert_non_null (strstr (out, "Safe <U+202E>kcatta\n"));
    //  The second line lines up under the first, a field's value.
    assert_non_null (strstr (out, "Line one\n                    line two\\r<U+009B>31m\n"));
    assert_null (strstr (out, "\xe2\x80\xae"));
    assert_null (strstr (out, "\r"));
    free (out);
    s_fixture_destroy (&f);
}

static void
test_replay_and_verify (void **state)
{
    (void) state;
    s_fixture_t *f = s_fixture ("cli-audit");
    s_publish_escalation (f, "high", "One");
    s_publish_escalation (f, "low", "Two");
    char *out = s_cli (f, f->exec1, NULL, 0, NULL, "ack", "2");
    free (out);
    out = s_cli (f, f->auditor, NULL, 0, NULL, "replay");
    assert_non_null (strstr (out, "{\"seq\":1,\"time\":\""));
    assert_non_null (strstr (out, "\"hash\":\""));
    assert_non_null (strstr (out, "\"acks\":[{\"by\":\"Executive member (ICB)\""));
    free (out);
    out = s_cli (f, f->auditor, NULL, 0, NULL, "replay", "--format", "csv", "--from", "2");
    assert_non_null (strstr (out, "seq,time,kind,from,agency,groups,hash,acks,body\n2,"));
    assert_null (strstr (out, "\n1,"));
    free (out);
    out = s_cli (f, f->auditor, NULL, 0, NULL, "replay", "--kind", "learning");
    assert_string_equal (out, "");
    free (out);
    char *err = NULL;
    free (s_cli (f, f->exec1, NULL, SGMQ_EXIT_REFUSED, &err, "replay"));
    assert_non_null (strstr (err, "rule replay-auditors"));
    free (err);
    char pub [1024];
    snprintf (pub, sizeof pub, "%s/signing.pub", f->e2e->dir);
    //  The broker signs its head when a replay starts: a checkpoint at once.
    out = s_cli (f, f->auditor, NULL, 0, NULL, "verify", "--signing-pub", pub);
    assert_non_null (strstr (out, "intact: 2 messages"));
    assert_non_null (strstr (out, "signed checkpoint at 2 matches"));
    //  The head to keep for the next audit, which must still find it.
    char *keep = strstr (out, "--expect 2:");
    assert_non_null (keep);
    char expect [128];
    snprintf (expect, sizeof expect, "%.*s", 2 + 64, keep + 9);
    free (out);
    s_publish_escalation (f, "medium", "Three");
    out = s_cli (f, f->auditor, NULL, 0, NULL, "verify", "--expect", expect);
    assert_non_null (strstr (out, "intact: 3 messages"));
    //  Without --signing-pub, it says what it did not check.
    assert_non_null (strstr (out, "signed checkpoint not checked: give --signing-pub"));
    free (out);
    char wrong [128];
    snprintf (wrong, sizeof wrong, "%s", expect);
    wrong [2] = wrong [2] == '0' ? '1' : '0';
    out = s_cli (f, f->auditor, NULL, SGMQ_EXIT_VERIFY_FAILED, NULL, "verify",
                 "--expect", wrong);
    assert_non_null (strstr (out, "BROKEN at 2: message 2 is not what an earlier verify saw"));
    free (out);
    out = s_cli (f, f->auditor, NULL, SGMQ_EXIT_VERIFY_FAILED, NULL, "verify",
                 "--expect", "9:0000000000000000000000000000000000000000000000000000000000000000");
    assert_non_null (strstr (out, "message 9 is missing"));
    free (out);
    free (s_cli (f, f->auditor, NULL, SGMQ_EXIT_USAGE, NULL, "verify", "--expect", "2:zz"));
    //  After a restart the closing checkpoint is signed and checked.
    assert_int_equal (e2e_stop (f->e2e), 0);
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    out = s_cli (f, f->auditor, NULL, 0, NULL, "verify", "--json", "--signing-pub", pub);
    assert_non_null (strstr (out, "\"intact\":true,\"count\":3,\"head\":3,\"head_hash\":\""));
    assert_non_null (strstr (out, "\"checkpoint\":3"));
    free (out);

    //  Tamper with the stored hash of message 1 while the broker is
    //  stopped (found in the file by its value): the chain no longer
    //  verifies, and verify says where.
    out = s_cli (f, f->auditor, NULL, 0, NULL, "replay", "--to", "1");
    char *hash_at = strstr (out, "\"hash\":\"");
    assert_non_null (hash_at);
    uint8_t hash [32];
    assert_int_equal (sodium_hex2bin (hash, sizeof hash, hash_at + 8, 64, NULL, NULL, NULL), 0);
    free (out);
    assert_int_equal (e2e_stop (f->e2e), 0);
    char data [1024];
    snprintf (data, sizeof data, "%s/data/data.mdb", f->e2e->dir);
    size_t size;
    uint8_t *bytes = (uint8_t *) testutil_read_file (data, &size);
    //  Every copy: LMDB leaves old page versions in the file, and the next
    //  record repeats it as its `prev`.
    int copies = 0;
    for (uint8_t *at = bytes; (at = memmem (at, size - (size_t) (at - bytes), hash,
                                            sizeof hash)); at += sizeof hash) {
        at [0] ^= 1;
        copies++;
    }
    assert_true (copies > 0);
    assert_int_equal (testutil_write_file (data, bytes, size), 0);
    free (bytes);
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    out = s_cli (f, f->auditor, NULL, SGMQ_EXIT_VERIFY_FAILED, NULL, "verify");
    assert_non_null (strstr (out, "BROKEN at 1"));
    free (out);
    s_fixture_destroy (&f);
}

static void
test_listener_carries_on_across_a_restart (void **state)
{
    (void) state;
    s_fixture_t *f = s_fixture ("cli-restart");
    //  Pin the port, so the listener's endpoint stays valid over a restart.
    e2e_config_set (f->e2e, "sgmq/endpoint", f->e2e->endpoint);
    int fd;
    pid_t listener = e2e_cli_start (f->e2e, f->exec1, &fd, "listen", "--json", "--ack",
                                    "--count", "3", "--timeout", "60", NULL);
    s_publish_escalation (f, "high", "Before the restart");
    char *first = e2e_read_lines (fd, 1, 10000);
    assert_non_null (strstr (first, "\"seq\":1,"));
    free (first);
    //  The listener's ack of 1 is on disk before we pull the broker: it
    //  shows as acknowledged.
    int64_t deadline = testutil_now_ms () + testutil_ms (10000);
    while (testutil_now_ms () < deadline) {
        char *pending = s_cli (f, f->police, NULL, 0, NULL, "pending", "--mine", "--json");
        bool acked = strstr (pending, "\"recipient\":\"Executive member (ICB)\",\"state\":\"acknowledged\"");
        free (pending);
        if (acked)
            break;
    }
    assert_int_equal (e2e_stop (f->e2e), 0);
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    s_publish_escalation (f, "low", "After the restart");
    s_publish_escalation (f, "medium", "And another");
    char *rest = e2e_read_lines (fd, 2, 30000);
    //  Exactly 2 and 3 follow: 1 is not shown again, nothing is lost.
    assert_null (strstr (rest, "\"seq\":1,"));
    assert_non_null (strstr (rest, "\"seq\":2,"));
    assert_non_null (strstr (rest, "\"seq\":3,"));
    free (rest);
    assert_int_equal (e2e_wait (listener, 10000), 0);
    close (fd);
    s_fixture_destroy (&f);
}

//  The CSV's rows of one kind, as arrays of fields (simple: no quoted
//  commas in the test's data).
static char *
s_csv_row (const char *csv, const char *prefix)
{
    const char *at = strstr (csv, prefix);
    assert_non_null (at);
    size_t len = strcspn (at, "\n");
    return strndup (at, len);
}

static void
test_tracker_figures_on_a_known_history (void **state)
{
    (void) state;
    s_fixture_t *f = s_fixture ("cli-tracker");
    //  Three escalations: critical, high, low.
    uint64_t a = s_publish_escalation (f, "critical", "Critical one");
    uint64_t b = s_publish_escalation (f, "high", "High one");
    //  A title a spreadsheet would run as a formula (CSV injection).
    uint64_t c = s_publish_escalation (f, "low", "=SUM(1+1)");
    char num [24];
    snprintf (num, sizeof num, "%llu", (unsigned long long) a);
    free (s_cli (f, f->exec1, NULL, 0, NULL, "ack", num));
    free (s_cli (f, f->exec2, NULL, 0, NULL, "publish", "response", "--to", num,
                 "--decision", "Agreed", "--summary", "Resources found",
                 "--action", "Circulate"));
    //  b: the Executive responds before anyone acknowledges it, which
    //  meets its acknowledgement deadline too.
    snprintf (num, sizeof num, "%llu", (unsigned long long) b);
    free (s_cli (f, f->exec2, NULL, 0, NULL, "publish", "response", "--to", num,
                 "--decision", "Noted", "--summary", "In hand", "--action", "None"));
    (void) c;
    //  A learning alert to the Executive and the exploitation sub-group:
    //  three recipients in two agencies; two acknowledge.
    char *out = s_cli (f, f->rrwg, NULL, 0, NULL, "publish", "learning", "--review-type",
                       "cspr", "--review-ref", "CSPR-7", "--title", "Neglect", "--summary",
                       "S", "--theme", "curiosity", "--recommendation", "Ask",
                       "--groups", "executive,exploitation");
    uint64_t alert = strtoull (out, NULL, 10);
    free (out);
    snprintf (num, sizeof num, "%llu", (unsigned long long) alert);
    free (s_cli (f, f->exec1, NULL, 0, NULL, "ack", num));
    free (s_cli (f, f->chair, NULL, 0, NULL, "ack", num));
    free (s_cli (f, f->rrwg, NULL, 0, NULL, "publish", "learning-update", "--alert", num,
                 "--held", "session"));

    char html [1024], csv [1024];
    snprintf (html, sizeof html, "%s/tracker.html", f->e2e->dir);
    snprintf (csv, sizeof csv, "%s/tracker.csv", f->e2e->dir);
    char *err = NULL;
    free (s_cli (f, f->chair, NULL, SGMQ_EXIT_REFUSED, &err, "tracker", "--out", html));
    assert_non_null (strstr (err, "rule tracker-readers"));
    free (err);
    out = s_cli (f, f->exec1, NULL, 0, NULL, "tracker", "--out", html, "--csv", csv,
                 "--since", "2020-01-01");
    assert_non_null (strstr (out, "3 escalations, 1 learning alert\n"));
    free (out);

    char *text = testutil_read_file (csv, NULL);
    char *row = s_csv_row (text, "escalation,1,");
    assert_non_null (strstr (row, "\"Critical one\",critical,responded,"));
    assert_non_null (strstr (row, "\"Executive member (ICB)\""));
    assert_non_null (strstr (row, "\"Agreed\",\"Resources found\""));
    assert_non_null (strstr (row, ",no,no,,0,"));
    //  Who raised it, and not carried from before the period.
    assert_non_null (strstr (row, ",0,\"Metropolitan Police\",,,,,,,no"));
    free (row);
    row = s_csv_row (text, "escalation,2,");
    assert_non_null (strstr (row, "high,responded,"));
    free (row);
    row = s_csv_row (text, "escalation,3,");
    assert_non_null (strstr (row, "\"'=SUM(1+1)\",low,"));
    free (row);
    row = s_csv_row (text, "learning,");
    assert_non_null (strstr (row, "\"executive;exploitation\",\"Neglect\",\"cspr CSPR-7\""));
    assert_non_null (strstr (row, ",,\"Local Authority\",3,2,"));
    //  Recipients: both Executive members and the chair; 2 acknowledged.
    assert_non_null (strstr (row, ",3,2,"));
    free (row);
    assert_non_null (strstr (text, "\"Integrated Care Board\",1,1,"));
    assert_non_null (strstr (text, "\"Metropolitan Police\",1,0,"));
    assert_non_null (strstr (text, "\"Local Authority\",1,1,"));
    row = s_csv_row (text, "learning-group,");
    assert_non_null (strstr (row, "\"executive\",,,,,,,,,,,,,,,,2,1,"));
    free (row);
    free (text);

    //  Only its owner may read it: it holds the Executive's decisions.
    struct stat st;
    assert_int_equal (stat (html, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0600);
    text = testutil_read_file (html, NULL);
    assert_non_null (strstr (text, "<td>3 (1 critical, 1 high, 0 medium, 1 low)</td>"));
    assert_non_null (strstr (text, "Responded to</th><td>2 of 3 (67%)"));
    //  Of those due (c's deadlines have not come): a acknowledged, b
    //  responded, both in time.
    assert_non_null (strstr (text, "within the deadline, of those due in the period</th><td>2 of 2 (100%)"));
    assert_non_null (strstr (text, "by the date requested, of those due in the period</th><td>2 of 2 (100%)"));
    assert_non_null (strstr (text, "no separate acknowledgement: responded"));
    assert_non_null (strstr (text, "Learning acknowledged by its recipients</th><td>2 of 3 (67%)"));
    assert_non_null (strstr (text, "Learning sessions held on time, of those due in the period</th><td>1 of 1 (100%)"));
    assert_non_null (strstr (text, "<svg class=\"chart\""));
    //  Months with their whole year ("Nov 26" reads as a date).
    char label [32];
    time_t now = time (NULL);
    strftime (label, sizeof label, ">%b %Y</text>", gmtime (&now));
    assert_non_null (strstr (text, label));
    assert_non_null (strstr (text, "@page { size: A4"));
    //  Self-contained: no scripts, no fetches.
    assert_null (strstr (text, "<script"));
    assert_null (strstr (text, "http://"));
    assert_null (strstr (text, "https://"));
    assert_null (strstr (text, "<link"));
    free (text);
    s_fixture_destroy (&f);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_help_and_usage_errors),
        cmocka_unit_test (test_connection_errors_have_their_codes),
        cmocka_unit_test (test_publish_listen_ack_pending),
        cmocka_unit_test (test_listen_shows_hidden_characters),
        cmocka_unit_test (test_replay_and_verify),
        cmocka_unit_test (test_listener_carries_on_across_a_restart),
        cmocka_unit_test (test_tracker_figures_on_a_known_history),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    signal (SIGPIPE, SIG_IGN);
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return failed;
}
