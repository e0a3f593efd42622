/*  End-to-end: who gets in. A known key is admitted and told its identity;
    unknown keys, NULL and PLAIN clients are refused; client-supplied
    metadata changes nothing; removing a cert refuses new connections and
    every later request of an open one; a cert replaced in place (same
    size, same second) takes effect; bad deployments stop the broker at
    start with one line naming the file and the problem. */
#include "e2e.h"
#include "sgmq_cert.h"
#include "sgmq_proto.h"
#include "sgmq_registry.h"

#include <czmq.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    e2e_t *e2e;
    char *police;               //  publisher in exploitation
    char *chair;                //  member of executive
} s_fixture_t;

static int
s_setup (void **state)
{
    s_fixture_t *f = calloc (1, sizeof *f);
    f->e2e = e2e_new ("auth", NULL);
    f->police = e2e_principal (f->e2e, "police.cert", "Police case system",
                               "Metropolitan Police", "publisher", "exploitation");
    f->chair = e2e_principal (f->e2e, "chair.cert", "Executive member (ICB)",
                              "Integrated Care Board", "member", "executive");
    assert_int_equal (e2e_start (f->e2e, NULL), 0);
    *state = f;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fixture_t *f = *state;
    e2e_destroy (&f->e2e);
    free (f->police);
    free (f->chair);
    free (f);
    return 0;
}

static void
test_known_key_gets_its_identity (void **state)
{
    s_fixture_t *f = *state;
    sgmq_client_t *client = e2e_connect (f->e2e, f->police);
    assert_string_equal (sgmq_client_name (client), "Police case system");
    assert_string_equal (sgmq_client_agency (client), "Metropolitan Police");
    assert_int_equal (sgmq_client_roles (client)->count, 1);
    assert_string_equal (sgmq_client_roles (client)->items [0], "publisher");
    assert_int_equal (sgmq_client_groups (client)->count, 1);
    assert_string_equal (sgmq_client_groups (client)->items [0], "exploitation");
    sgmq_client_destroy (&client);

    char *out = NULL;
    int rc = e2e_cli (f->e2e, f->chair, NULL, &out, NULL, "whoami", "--json", NULL);
    assert_int_equal (rc, 0);
    assert_non_null (strstr (out, "\"name\":\"Executive member (ICB)\""));
    assert_non_null (strstr (out, "\"agency\":\"Integrated Care Board\""));
    assert_non_null (strstr (out, "\"roles\":[\"member\"]"));
    assert_non_null (strstr (out, "\"groups\":[\"executive\"]"));
    free (out);

    //  The broker holds keys and bodies: it never writes a core file.
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/limits", (int) f->e2e->pid);
    size_t size = 0;
    char *limits = testutil_read_file (path, &size);
    assert_non_null (limits);
    char *core = strstr (limits, "Max core file size");
    assert_non_null (core);
    unsigned long long soft = 99, hard = 99;
    assert_int_equal (sscanf (core + strlen ("Max core file size"), " %llu %llu",
                              &soft, &hard), 2);
    assert_int_equal (soft, 0);
    assert_int_equal (hard, 0);
    free (limits);
}

static void
test_unknown_key_is_refused (void **state)
{
    s_fixture_t *f = *state;
    //  A cert that exists, but was never admitted.
    char *dir = testutil_tmpdir ("stranger");
    char path [512], secret [520], error [SGMQ_CERT_ERROR_SIZE];
    snprintf (path, sizeof path, "%s/stranger.cert", dir);
    snprintf (secret, sizeof secret, "%s_secret", path);
    sgmq_cert_t *cert = sgmq_cert_new ();
    assert_int_equal (sgmq_cert_set_meta (cert, "name", "Executive member (ICB)", error), 0);
    assert_int_equal (sgmq_cert_save (cert, path, error), 0);
    sgmq_cert_destroy (&cert);

    int64_t start = testutil_now_ms ();
    sgmq_error_t err;
    sgmq_client_t *client = e2e_client (f->e2e, secret, &err);
    assert_null (client);
    assert_int_equal (err.code, SGMQ_E_NOT_AUTHORISED);
    //  Refused at the handshake, not by a timeout.
    assert_true (testutil_now_ms () - start < testutil_ms (3000));

    char *out = NULL, *errtext = NULL;
    int rc = e2e_cli (f->e2e, secret, NULL, &out, &errtext, "whoami", NULL);
    assert_int_equal (rc, 3);
    assert_non_null (strstr (errtext, "not authorised"));
    free (out);
    free (errtext);
    testutil_rmtree (dir);
    free (dir);
}

//  Send a HELLO over a socket set up by the caller; true if anything at
//  all comes back within `ms`.
static bool
s_raw_hello_answered (zsock_t *sock, const char *endpoint, int ms)
{
    assert_int_equal (zsock_connect (sock, "%s", endpoint), 0);
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = 1 };
    assert_int_equal (sgmq_proto_write (writer, &hello, NULL), 0);
    zframe_t *frame = zframe_new (sgmq_proto_writer_data (writer),
                                  sgmq_proto_writer_size (writer));
    zframe_send (&frame, sock, ZFRAME_DONTWAIT);
    sgmq_proto_writer_destroy (&writer);
    zpoller_t *poller = zpoller_new (sock, NULL);
    bool answered = zpoller_wait (poller, (int) testutil_ms (ms)) != NULL;
    zpoller_destroy (&poller);
    return answered;
}

static void
test_null_and_plain_clients_are_refused (void **state)
{
    s_fixture_t *f = *state;
    zsock_t *null_client = zsock_new (ZMQ_DEALER);
    assert_false (s_raw_hello_answered (null_client, f->e2e->endpoint, 1500));
    zsock_destroy (&null_client);

    zsock_t *plain_client = zsock_new (ZMQ_DEALER);
    zsock_set_plain_username (plain_client, "Executive member (ICB)");
    zsock_set_plain_password (plain_client, "guess");
    assert_false (s_raw_hello_answered (plain_client, f->e2e->endpoint, 1500));
    zsock_destroy (&plain_client);

    //  And the broker still serves the well-behaved.
    sgmq_client_t *client = e2e_connect (f->e2e, f->chair);
    sgmq_client_destroy (&client);
}

static void
test_client_metadata_changes_nothing (void **state)
{
    s_fixture_t *f = *state;
    //  A CURVE client with the police key that claims, in its own ZMTP
    //  metadata, to be the Executive member.
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *cert = sgmq_cert_load (f->police, error);
    sgmq_cert_t *server = sgmq_cert_load (f->e2e->server_cert, error);
    assert_non_null (cert);
    assert_non_null (server);
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    assert_int_equal (sgmq_cert_apply_client (cert, sock, sgmq_cert_public_key (server)), 0);
    zsock_set_metadata (sock, "X-name:Executive member (ICB)");
    assert_int_equal (zsock_connect (sock, "%s", f->e2e->endpoint), 0);
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO, .id = 9 };
    assert_int_equal (sgmq_proto_write (writer, &hello, NULL), 0);
    zframe_t *frame = zframe_new (sgmq_proto_writer_data (writer),
                                  sgmq_proto_writer_size (writer));
    assert_int_equal (zframe_send (&frame, sock, 0), 0);
    zsock_set_rcvtimeo (sock, (int) testutil_ms (5000));
    zframe_t *reply = zframe_recv (sock);
    assert_non_null (reply);
    sgmq_proto_frame_t *decoded = sgmq_proto_frame_new ();
    sgmq_proto_error_t perror;
    assert_int_equal (sgmq_proto_decode (decoded, zframe_data (reply), zframe_size (reply),
                                         &perror), 0);
    const sgmq_cmd_t *welcome = sgmq_proto_cmd (decoded, 0, &perror);
    assert_non_null (welcome);
    assert_int_equal (welcome->cmd, SGMQ_CMD_WELCOME);
    assert_int_equal (welcome->id, 9);
    assert_string_equal (welcome->u.welcome.name, "Police case system");
    sgmq_proto_frame_destroy (&decoded);
    zframe_destroy (&reply);
    sgmq_proto_writer_destroy (&writer);
    zsock_destroy (&sock);
    sgmq_cert_destroy (&cert);
    sgmq_cert_destroy (&server);
}

//  Keep trying to connect until the outcome is `admitted` (or the
//  deadline passes); true if it became so in time.
static bool
s_becomes (e2e_t *e2e, const char *cert, bool admitted, int ms)
{
    int64_t deadline = testutil_now_ms () + testutil_ms (ms);
    while (testutil_now_ms () < deadline) {
        sgmq_error_t error;
        sgmq_client_t *client = e2e_client (e2e, cert, &error);
        bool in = client != NULL;
        sgmq_client_destroy (&client);
        if (in == admitted)
            return true;
        assert_true (in || error.code == SGMQ_E_NOT_AUTHORISED);
    }
    return false;
}

static void
test_removed_cert_is_revoked_within_two_seconds (void **state)
{
    s_fixture_t *f = *state;
    char *revokee = e2e_principal (f->e2e, "revokee.cert", "Education forum member",
                                   "A primary school", "member,publisher",
                                   "education-forum");
    assert_true (s_becomes (f->e2e, revokee, true, 2000));
    sgmq_client_t *open = e2e_connect (f->e2e, revokee);
    sgmq_error_t error;
    assert_int_equal (sgmq_client_ping (open, &error), 0);

    char admitted [1024];
    snprintf (admitted, sizeof admitted, "%s/certs/revokee.cert", f->e2e->dir);
    int64_t removed = testutil_now_ms ();
    assert_int_equal (unlink (admitted), 0);
    assert_true (s_becomes (f->e2e, revokee, false, 2000));
    assert_true (testutil_now_ms () - removed <= testutil_ms (2000));

    //  The connection made before the removal: every request refused.
    assert_int_equal (sgmq_client_ping (open, &error), -1);
    assert_int_equal (error.code, SGMQ_E_NOT_AUTHORISED);
    assert_int_equal (e2e_escalate_code (open, "education-forum"), SGMQ_E_NOT_AUTHORISED);
    sgmq_client_destroy (&open);
    free (revokee);
}

//  Keep asking a new connection for its roles until it has (or lacks)
//  `role` within `ms`.
static bool
s_role_becomes (e2e_t *e2e, const char *cert, const char *role, bool has, int ms)
{
    int64_t deadline = testutil_now_ms () + testutil_ms (ms);
    while (testutil_now_ms () < deadline) {
        sgmq_client_t *client = e2e_connect (e2e, cert);
        bool found = sgmq_client_has_role (client, role);
        sgmq_client_destroy (&client);
        if (found == has)
            return true;
    }
    return false;
}

//  A cert rewritten in place, same key, without the member role: the
//  subscription it opened ends at once. (A second review found it went on
//  delivering the deliveries stored for it before, one per ack.)
static void
test_rights_removed_in_place_end_the_session (void **state)
{
    s_fixture_t *f = *state;
    char *member = e2e_principal (f->e2e, "demoted.cert", "Executive member (police)",
                                  "Metropolitan Police", "member", "executive");
    assert_true (s_becomes (f->e2e, member, true, 2000));
    sgmq_client_t *open = e2e_connect (f->e2e, member);
    sgmq_client_t *police = e2e_connect (f->e2e, f->police);
    sgmq_error_t error;
    assert_int_equal (sgmq_client_subscribe (open, 1, NULL, &error), 0);
    uint64_t first = e2e_escalate (police, "exploitation", "First");
    e2e_escalate (police, "exploitation", "Second");
    assert_int_equal (e2e_recv (open, 5000)->seq, first);

    char admitted [1024];
    snprintf (admitted, sizeof admitted, "%s/certs/demoted.cert", f->e2e->dir);
    size_t size = 0;
    char *text = testutil_read_file (admitted, &size);
    char *roles = strstr (text, "roles = \"member\"");
    assert_non_null (roles);
    memcpy (roles, "roles = \"admin\" ", 16);
    assert_int_equal (testutil_write_file (admitted, text, size), 0);
    free (text);
    assert_true (s_role_becomes (f->e2e, member, "member", false, 2000));

    //  The ack frees the window (window 1): the old session would be sent
    //  the second escalation in the same turn. The session is gone; the
    //  client, starting again, is refused the subscription and says so
    //  (it used to retry in silence, a new session every heartbeat).
    (void) sgmq_client_ack (open, first, NULL, &error);
    const sgmq_delivery_t *d = NULL;
    if (sgmq_client_recv (open, (int) testutil_ms (2000), &d, &error) == 0)
        fail_msg ("seq %llu delivered after the member role was removed",
                  (unsigned long long) d->seq);
    assert_int_equal (error.code, SGMQ_E_FORBIDDEN);
    assert_non_null (strstr (error.reason, "subscribe-members"));
    sgmq_client_destroy (&open);
    sgmq_client_destroy (&police);
    free (member);
}

//  Moving the certs directory away revokes everyone (it kept the old
//  principals before); putting it back admits them again.
static void
test_certs_directory_gone_admits_nobody (void **state)
{
    s_fixture_t *f = *state;
    assert_true (s_becomes (f->e2e, f->police, true, 2000));
    sgmq_client_t *open = e2e_connect (f->e2e, f->police);
    char certs [1024], moved [1024];
    snprintf (certs, sizeof certs, "%s/certs", f->e2e->dir);
    snprintf (moved, sizeof moved, "%s/certs.away", f->e2e->dir);
    assert_int_equal (rename (certs, moved), 0);
    assert_true (s_becomes (f->e2e, f->police, false, 2000));
    sgmq_error_t error;
    assert_int_equal (sgmq_client_ping (open, &error), -1);
    assert_int_equal (error.code, SGMQ_E_NOT_AUTHORISED);
    sgmq_client_destroy (&open);
    char *log = e2e_log (f->e2e);
    assert_non_null (strstr (log, "the certs directory is gone"));
    free (log);
    assert_int_equal (rename (moved, certs), 0);
    assert_true (s_becomes (f->e2e, f->police, true, 2000));
}

//  A certs directory that cannot be read for another reason (here: more
//  files than a partnership has) keeps who was admitted, and the warning
//  says which directory and why.
static void
test_unreadable_certs_keep_the_principals (void **state)
{
    s_fixture_t *f = *state;
    char certs [1024], path [1100];
    snprintf (certs, sizeof certs, "%s/certs", f->e2e->dir);
    for (int i = 0; i <= SGMQ_REGISTRY_MAX_CERTS; i++) {
        snprintf (path, sizeof path, "%s/filler-%05d", certs, i);
        int fd = open (path, O_CREAT | O_WRONLY, 0600);
        assert_true (fd >= 0);
        close (fd);
    }
    int64_t deadline = testutil_now_ms () + testutil_ms (5000);
    bool warned = false;
    while (!warned && testutil_now_ms () < deadline) {
        char *log = e2e_log (f->e2e);
        warned = strstr (log, "more than 10000 files; keeping the current principals")
              && strstr (log, certs);
        free (log);
        if (!warned)
            usleep (20000);             //  polling the log, bounded above
    }
    assert_true (warned);
    assert_true (s_becomes (f->e2e, f->police, true, 2000));
    for (int i = 0; i <= SGMQ_REGISTRY_MAX_CERTS; i++) {
        snprintf (path, sizeof path, "%s/filler-%05d", certs, i);
        assert_int_equal (unlink (path), 0);
    }
}

static void
test_cert_replaced_in_place_takes_effect (void **state)
{
    s_fixture_t *f = *state;
    char *first = e2e_principal (f->e2e, "swap.cert", "Rapid review member",
                                 "Integrated Care Board", "member", "rapid-review-panel");
    assert_true (s_becomes (f->e2e, first, true, 2000));
    //  A second key with the same metadata, written over the first in
    //  place: same inode, same size, within the same second.
    char *second = e2e_principal (f->e2e, "swap2.cert", "Rapid review member",
                                  "Integrated Care Board", "member", "rapid-review-panel");
    char admitted [1024], other [1024];
    snprintf (admitted, sizeof admitted, "%s/certs/swap.cert", f->e2e->dir);
    snprintf (other, sizeof other, "%s/certs/swap2.cert", f->e2e->dir);
    size_t size_a = 0, size_b = 0;
    char *text_a = testutil_read_file (admitted, &size_a);
    char *text_b = testutil_read_file (other, &size_b);
    assert_int_equal (unlink (other), 0);
    //  Same size unless the generation stamps fell in different seconds.
    FILE *file = fopen (admitted, "r+");
    assert_non_null (file);
    assert_int_equal (fwrite (text_b, 1, size_b, file), size_b);
    fclose (file);
    if (size_b < size_a)
        assert_int_equal (truncate (admitted, (off_t) size_b), 0);
    assert_true (s_becomes (f->e2e, first, false, 2000));
    assert_true (s_becomes (f->e2e, second, true, 2000));
    free (text_a);
    free (text_b);
    free (first);
    free (second);
}

//  Start the broker on a broken deployment: it must exit non-zero with
//  one line that names `file` and contains `problem`.
static void
s_expect_start_failure (e2e_t *e2e, const char *file, const char *problem)
{
    int status = 0;
    assert_int_equal (e2e_start (e2e, &status), -1);
    assert_int_not_equal (status, 0);
    char *log = e2e_log (e2e);
    assert_non_null (log);
    //  Exactly one line.
    char *newline = strchr (log, '\n');
    assert_non_null (newline);
    assert_int_equal (newline [1], 0);
    if (!strstr (log, file) || !strstr (log, problem))
        fprintf (stderr, "expected '%s' and '%s' in: %s", file, problem, log);
    assert_non_null (strstr (log, file));
    assert_non_null (strstr (log, problem));
    free (log);
}

static void
s_write (const char *dir, const char *name, const char *text)
{
    char path [1024];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    assert_int_equal (testutil_write_file (path, text, strlen (text)), 0);
}

static void
s_chmod (const char *dir, const char *name, mode_t mode)
{
    char path [1024];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    assert_int_equal (chmod (path, mode), 0);
}

static void
test_bad_deployments_stop_the_broker (void **state)
{
    (void) state;
    e2e_t *e2e = e2e_new ("badcfg", NULL);
    char *good = testutil_read_file (e2e->config, NULL);

    s_write (e2e->dir, "sgmq.cfg", "sgmq\n  endpoint = \"tcp://127.0.0.1:*\"\n");
    s_expect_start_failure (e2e, "sgmq.cfg:2", "indent");

    s_write (e2e->dir, "sgmq.cfg", good);
    e2e_config_set (e2e, "limits/window", "0");
    s_expect_start_failure (e2e, "sgmq.cfg", "limits/window must be from 1");

    s_write (e2e->dir, "sgmq.cfg", good);
    e2e_config_set (e2e, "limits/bogus", "1");
    s_expect_start_failure (e2e, "sgmq.cfg", "unknown option 'bogus'");

    s_write (e2e->dir, "sgmq.cfg", good);
    e2e_config_set (e2e, "rules/learning-groups", "no-such-group");
    s_expect_start_failure (e2e, "sgmq.cfg", "unknown group 'no-such-group'");

    s_write (e2e->dir, "sgmq.cfg", good);
    s_chmod (e2e->dir, "broker.cert_secret", 0644);
    s_expect_start_failure (e2e, "broker.cert_secret", "readable by group or others");
    s_chmod (e2e->dir, "broker.cert_secret", 0600);

    s_chmod (e2e->dir, "storage.key", 0640);
    s_expect_start_failure (e2e, "storage.key", "readable by group or others");
    s_chmod (e2e->dir, "storage.key", 0600);

    s_chmod (e2e->dir, "signing.key", 0604);
    s_expect_start_failure (e2e, "signing.key", "readable by group or others");
    s_chmod (e2e->dir, "signing.key", 0600);

    char cert [1024], moved [1040];
    snprintf (cert, sizeof cert, "%s/broker.cert_secret", e2e->dir);
    snprintf (moved, sizeof moved, "%s.away", cert);
    assert_int_equal (rename (cert, moved), 0);
    s_expect_start_failure (e2e, "broker.cert_secret", "cannot open");
    assert_int_equal (rename (moved, cert), 0);

    //  A missing config file.
    char missing [1024];
    snprintf (missing, sizeof missing, "%s/nothing.cfg", e2e->dir);
    const char *argv [] = { e2e_broker_bin, "--config", missing, NULL };
    char *err = NULL;
    assert_int_equal (e2e_run (argv, NULL, NULL, NULL, &err, 10000), 1);
    assert_non_null (strstr (err, "nothing.cfg"));
    assert_non_null (strstr (err, "cannot open"));
    free (err);

    //  And with everything put back, it starts.
    assert_int_equal (e2e_start (e2e, NULL), 0);
    free (good);
    e2e_destroy (&e2e);
}

static void
test_oversized_frame_does_not_stop_the_broker (void **state)
{
    s_fixture_t *f = *state;
    sgmq_client_t *client = e2e_connect (f->e2e, f->police);
    //  One byte past the largest frame: libzmq drops the connection.
    size_t size = SGMQ_PROTO_MAX_FRAME + 1;
    uint8_t *junk = calloc (1, size);
    zframe_t *frame = zframe_new (junk, size);
    free (junk);
    zframe_send (&frame, sgmq_client_socket (client), 0);
    sgmq_client_destroy (&client);
    sgmq_client_t *other = e2e_connect (f->e2e, f->chair);
    sgmq_error_t error;
    assert_int_equal (sgmq_client_ping (other, &error), 0);
    sgmq_client_destroy (&other);
}

//  Peers holding every descriptor the broker may open do not stop a
//  revocation (a review: the certs rescan failed with EMFILE, the broker
//  kept the principals it had, and the revoked key went on publishing).
static void
test_revocation_with_descriptors_exhausted (void **state)
{
    (void) state;
    e2e_t *e2e = e2e_new ("auth-fds", NULL);
    char *revokee = e2e_principal (e2e, "revokee.cert", "Education forum member",
                                   "A primary school", "member,publisher",
                                   "education-forum");
    char *flooder = e2e_principal (e2e, "flooder.cert", "Executive member (ICB)",
                                   "Integrated Care Board", "member", "executive");
    char *changed = e2e_principal (e2e, "changed.cert", "Education forum chair",
                                   "A secondary school", "member,publisher",
                                   "education-forum");
    //  The broker starts with a low descriptor limit, so a few dozen
    //  connections take them all.
    const rlim_t limit = 64;
    struct rlimit old, low;
    assert_int_equal (getrlimit (RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = limit;
    assert_int_equal (setrlimit (RLIMIT_NOFILE, &low), 0);
    int rc = e2e_start (e2e, NULL);
    assert_int_equal (setrlimit (RLIMIT_NOFILE, &old), 0);
    assert_int_equal (rc, 0);
    sgmq_client_t *open = e2e_connect (e2e, revokee);
    sgmq_client_t *other = e2e_connect (e2e, changed);
    sgmq_error_t error;
    assert_int_equal (sgmq_client_ping (open, &error), 0);
    assert_int_equal (sgmq_client_ping (other, &error), 0);

    char cert_error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *cert = sgmq_cert_load (flooder, cert_error);
    sgmq_cert_t *server = sgmq_cert_load (e2e->server_cert, cert_error);
    assert_non_null (cert);
    assert_non_null (server);
    enum { CONNECTIONS = 80 };
    zsock_t *socks [CONNECTIONS];
    for (int i = 0; i < CONNECTIONS; i++) {
        socks [i] = zsock_new (ZMQ_DEALER);
        assert_int_equal (sgmq_cert_apply_client (cert, zsock_resolve (socks [i]),
                                                  sgmq_cert_public_key (server)), 0);
        zsock_set_linger (socks [i], 0);
        assert_int_equal (zsock_connect (socks [i], "%s", e2e->endpoint), 0);
    }
    int64_t deadline = testutil_now_ms () + testutil_ms (10000);
    while (e2e_fd_count (e2e->pid) < (int) limit && testutil_now_ms () < deadline)
        zclock_sleep (20);
    printf ("    broker descriptors: %d of %d\n", e2e_fd_count (e2e->pid), (int) limit);
    assert_true (e2e_fd_count (e2e->pid) >= (int) limit);

    //  Removed, or replaced in place by another key's cert, while no
    //  descriptor is free: both old keys are refused within the rescan
    //  (through the fallback, or a whole load if one gets a descriptor).
    char admitted [1024];
    snprintf (admitted, sizeof admitted, "%s/certs/revokee.cert", e2e->dir);
    assert_int_equal (unlink (admitted), 0);
    sgmq_cert_t *replacement = sgmq_cert_new ();
    assert_non_null (replacement);
    assert_int_equal (sgmq_cert_set_meta (replacement, "name", "Education forum chair",
                                          cert_error), 0);
    assert_int_equal (sgmq_cert_set_meta (replacement, "agency", "A secondary school",
                                          cert_error), 0);
    assert_int_equal (sgmq_cert_set_meta (replacement, "roles", "member", cert_error), 0);
    char staged [1024];
    snprintf (staged, sizeof staged, "%s/replacement.cert", e2e->dir);
    assert_int_equal (sgmq_cert_save_public (replacement, staged, true, cert_error), 0);
    sgmq_cert_destroy (&replacement);
    snprintf (admitted, sizeof admitted, "%s/certs/changed.cert", e2e->dir);
    assert_int_equal (rename (staged, admitted), 0);
    sgmq_client_t *clients [2] = { open, other };
    for (int i = 0; i < 2; i++) {
        deadline = testutil_now_ms () + testutil_ms (5000);
        bool refused = false;
        while (!refused && testutil_now_ms () < deadline) {
            refused = sgmq_client_ping (clients [i], &error) == -1;
            if (!refused)
                zclock_sleep (50);
        }
        assert_true (refused);
        assert_int_equal (error.code, SGMQ_E_NOT_AUTHORISED);
    }
    for (int i = 0; i < CONNECTIONS; i++)
        zsock_destroy (&socks [i]);
    sgmq_cert_destroy (&cert);
    sgmq_cert_destroy (&server);
    sgmq_client_destroy (&other);
    sgmq_client_destroy (&open);
    e2e_destroy (&e2e);
    free (changed);
    free (flooder);
    free (revokee);
}

int
main (void)
{
    const struct CMUnitTest shared [] = {
        cmocka_unit_test (test_known_key_gets_its_identity),
        cmocka_unit_test (test_unknown_key_is_refused),
        cmocka_unit_test (test_null_and_plain_clients_are_refused),
        cmocka_unit_test (test_client_metadata_changes_nothing),
        cmocka_unit_test (test_removed_cert_is_revoked_within_two_seconds),
        cmocka_unit_test (test_rights_removed_in_place_end_the_session),
        cmocka_unit_test (test_certs_directory_gone_admits_nobody),
        cmocka_unit_test (test_unreadable_certs_keep_the_principals),
        cmocka_unit_test (test_cert_replaced_in_place_takes_effect),
        cmocka_unit_test (test_oversized_frame_does_not_stop_the_broker),
    };
    const struct CMUnitTest alone [] = {
        cmocka_unit_test (test_bad_deployments_stop_the_broker),
        cmocka_unit_test (test_revocation_with_descriptors_exhausted),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    int failed = cmocka_run_group_tests (shared, s_setup, s_teardown);
    failed += cmocka_run_group_tests (alone, NULL, NULL);
    zsys_shutdown ();
    return failed;
}
