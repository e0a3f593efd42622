/*  e2e - deployments, the real broker process and the real CLI for tests.
    See e2e.h. */
#define _GNU_SOURCE
#include "e2e.h"
#include "sgmq_cert.h"
#include "sgmq_time.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const char *e2e_broker_bin = SGMQ_BROKER_BIN;
const char *e2e_cli_bin = SGMQ_CLI_BIN;

//  How long the broker may take to start or stop, and a CLI run to end.
#define S_START_MS 10000
#define S_STOP_MS  10000
#define S_RUN_MS   30000

static char *
s_join (const char *a, const char *b)
{
    size_t size = strlen (a) + strlen (b) + 2;
    char *path = malloc (size);
    assert_non_null (path);
    snprintf (path, size, "%s/%s", a, b);
    return path;
}

static int
s_pidfd_open (pid_t pid)
{
    return (int) syscall (SYS_pidfd_open, pid, 0);
}

//  Read from fds until both close or the deadline passes.
static int
s_collect (int out_fd, int err_fd, char **out, char **err, int64_t deadline)
{
    char *buffers [2] = { NULL, NULL };
    size_t sizes [2] = { 0, 0 };
    FILE *streams [2] = { open_memstream (&buffers [0], &sizes [0]),
                          open_memstream (&buffers [1], &sizes [1]) };
    struct pollfd fds [2] = { { out_fd, POLLIN, 0 }, { err_fd, POLLIN, 0 } };
    int open_count = 2, rc = 0;
    while (open_count) {
        int64_t left = deadline - testutil_now_ms ();
        if (left <= 0) {
            rc = -1;
            break;
        }
        if (poll (fds, 2, (int) left) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds [i].fd < 0 || !fds [i].revents)
                continue;
            char chunk [4096];
            ssize_t got = read (fds [i].fd, chunk, sizeof chunk);
            if (got > 0)
                fwrite (chunk, 1, (size_t) got, streams [i]);
            else
            if (got == 0 || errno != EINTR) {
                close (fds [i].fd);
                fds [i].fd = -1;
                open_count--;
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        if (fds [i].fd >= 0)
            close (fds [i].fd);
        fclose (streams [i]);
    }
    if (out)
        *out = buffers [0];
    else
        free (buffers [0]);
    if (err)
        *err = buffers [1];
    else
        free (buffers [1]);
    return rc;
}

int
e2e_run (const char *const *argv, const char *const *env, const char *input,
         char **out, char **err, int timeout_ms)
{
    int out_pipe [2], err_pipe [2], in_pipe [2];
    if (pipe2 (out_pipe, O_CLOEXEC) || pipe2 (err_pipe, O_CLOEXEC) || pipe2 (in_pipe, O_CLOEXEC))
        return -1;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, in_pipe [0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2 (&actions, out_pipe [1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2 (&actions, err_pipe [1], STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawn (&pid, argv [0], &actions, NULL, (char *const *) argv,
                          (char *const *) (env ? env : (const char *const *) environ));
    posix_spawn_file_actions_destroy (&actions);
    close (in_pipe [0]);
    close (out_pipe [1]);
    close (err_pipe [1]);
    if (rc != 0) {
        close (in_pipe [1]);
        close (out_pipe [0]);
        close (err_pipe [0]);
        return -1;
    }
    if (input) {
        //  Inputs in tests are small: one write fits the pipe buffer.
        ssize_t written = write (in_pipe [1], input, strlen (input));
        (void) written;
    }
    close (in_pipe [1]);
    int64_t deadline = testutil_now_ms () + testutil_ms (timeout_ms);
    bool timed_out = s_collect (out_pipe [0], err_pipe [0], out, err, deadline) != 0;
    if (timed_out)
        kill (pid, SIGKILL);
    int status = 0;
    waitpid (pid, &status, 0);
    if (timed_out)
        return -1;
    return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
}

//  Apply one override ("section/option") to config text: replace the
//  option's line in its section, or add it right under the section line,
//  or add the section at the end.
static void
s_config_edit (char **text, const char *path, const char *value)
{
    const char *slash = strchr (path, '/');
    assert_non_null (slash);
    size_t section_len = (size_t) (slash - path);
    const char *option = slash + 1;
    char *result = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&result, &size);
    bool in_section = false, done = false;
    char *cursor = *text;
    while (*cursor) {
        char *eol = strchr (cursor, '\n');
        size_t len = eol ? (size_t) (eol - cursor) : strlen (cursor);
        bool top = len && cursor [0] != ' ' && cursor [0] != '#';
        if (in_section && top && !done) {
            fprintf (out, "    %s = \"%s\"\n", option, value);
            done = true;
        }
        if (top)
            in_section = len == section_len && strncmp (cursor, path, section_len) == 0;
        size_t option_len = strlen (option);
        bool match = in_section && !done && len > 4 + option_len
                  && strncmp (cursor, "    ", 4) == 0
                  && strncmp (cursor + 4, option, option_len) == 0
                  && (cursor [4 + option_len] == ' ' || cursor [4 + option_len] == '=');
        if (match) {
            fprintf (out, "    %s = \"%s\"\n", option, value);
            done = true;
        }
        else
            fprintf (out, "%.*s\n", (int) len, cursor);
        cursor += len + (eol ? 1 : 0);
    }
    if (!done && !in_section)
        fprintf (out, "%.*s\n", (int) section_len, path);
    if (!done)
        fprintf (out, "    %s = \"%s\"\n", option, value);
    fclose (out);
    free (*text);
    *text = result;
}

void
e2e_config_set (e2e_t *self, const char *path, const char *value)
{
    char *text = testutil_read_file (self->config, NULL);
    assert_non_null (text);
    s_config_edit (&text, path, value);
    assert_int_equal (testutil_write_file (self->config, text, strlen (text)), 0);
    free (text);
}

void
e2e_config_insert (e2e_t *self, const char *section, const char *lines)
{
    char *text = testutil_read_file (self->config, NULL);
    assert_non_null (text);
    char header [80];
    snprintf (header, sizeof header, "\n%s\n", section);
    char *at = strstr (text, header);
    assert_non_null (at);
    at += strlen (header);
    char *result = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&result, &size);
    fprintf (out, "%.*s%s%s", (int) (at - text), text, lines, at);
    fclose (out);
    assert_int_equal (testutil_write_file (self->config, result, size), 0);
    free (result);
    free (text);
}

//  A loopback endpoint on a port the kernel picked as free and unused
//  (an ephemeral port, random), or "*" if it cannot pick one.
static void
s_free_endpoint (char *endpoint, size_t size)
{
    snprintf (endpoint, size, "tcp://127.0.0.1:*");
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = { .sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t length = sizeof address;
    if (fd >= 0
    &&  bind (fd, (struct sockaddr *) &address, sizeof address) == 0
    &&  getsockname (fd, (struct sockaddr *) &address, &length) == 0)
        snprintf (endpoint, size, "tcp://127.0.0.1:%u", ntohs (address.sin_port));
    if (fd >= 0)
        close (fd);
}

e2e_t *
e2e_new (const char *tag, ...)
{
    e2e_t *self = calloc (1, sizeof *self);
    assert_non_null (self);
    char *base = testutil_tmpdir (tag);
    assert_non_null (base);
    self->dir = s_join (base, "deploy");
    free (base);
    //  A port of its own, kept across restarts. With "*" every broker
    //  took the lowest free port from 49152 (CZMQ's "!" repeats its
    //  random choice within a second), so a broker of a parallel test
    //  could take the port of one that was restarting, and its clients
    //  reconnected to the wrong broker.
    char endpoint [64];
    s_free_endpoint (endpoint, sizeof endpoint);
    const char *argv [] = { e2e_cli_bin, "init", self->dir, "--endpoint",
                            endpoint, NULL };
    char *err = NULL;
    int rc = e2e_run (argv, NULL, NULL, NULL, &err, S_RUN_MS);
    if (rc != 0)
        fprintf (stderr, "sgmq init failed (%d): %s\n", rc, err ? err : "");
    assert_int_equal (rc, 0);
    free (err);
    self->config = s_join (self->dir, "sgmq.cfg");
    self->server_cert = s_join (self->dir, "broker.cert");
    self->log = s_join (self->dir, "broker.log");
    self->pidfd = -1;
    //  Reminders at any hour: the tests run at night and at weekends too
    //  (test_certs checks the working hours themselves).
    e2e_config_set (self, "deadlines/remind-hours", "0-24");
    va_list args;
    va_start (args, tag);
    const char *path;
    while ((path = va_arg (args, const char *))) {
        const char *value = va_arg (args, const char *);
        e2e_config_set (self, path, value);
    }
    va_end (args);
    return self;
}

char *
e2e_principal (e2e_t *self, const char *file, const char *name, const char *agency,
               const char *roles, const char *groups)
{
    char *path = s_join (self->dir, file);
    char *certs = s_join (self->dir, "certs");
    char *admitted = s_join (certs, file);
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *cert = sgmq_cert_new ();
    assert_non_null (cert);
    assert_int_equal (sgmq_cert_set_meta (cert, "name", name, error), 0);
    assert_int_equal (sgmq_cert_set_meta (cert, "agency", agency, error), 0);
    assert_int_equal (sgmq_cert_set_meta (cert, "roles", roles, error), 0);
    if (groups)
        assert_int_equal (sgmq_cert_set_meta (cert, "groups", groups, error), 0);
    //  The secret file lives beside the deployment, not in certs/.
    int rc = sgmq_cert_save (cert, path, error);
    if (rc)
        fprintf (stderr, "%s\n", error);
    assert_int_equal (rc, 0);
    assert_int_equal (sgmq_cert_save_public (cert, admitted, true, error), 0);
    sgmq_cert_destroy (&cert);
    free (certs);
    free (admitted);
    char *secret = malloc (strlen (path) + 8);
    sprintf (secret, "%s_secret", path);
    free (path);
    return secret;
}

//  Brokers started and not yet reaped. A failed test leaves cmocka's
//  test function early, without e2e_destroy: at exit, these are killed,
//  so that no broker outlives its test process.
#define S_LIVE_MAX 64
static pid_t s_live [S_LIVE_MAX];

static void
s_live_kill (void)
{
    for (int i = 0; i < S_LIVE_MAX; i++)
        if (s_live [i]) {
            kill (s_live [i], SIGKILL);
            waitpid (s_live [i], NULL, 0);
            s_live [i] = 0;
        }
}

static void
s_live_add (pid_t pid)
{
    static bool registered;
    if (!registered)
        registered = atexit (s_live_kill) == 0;
    for (int i = 0; i < S_LIVE_MAX; i++)
        if (!s_live [i]) {
            s_live [i] = pid;
            return;
        }
}

static void
s_live_remove (pid_t pid)
{
    for (int i = 0; i < S_LIVE_MAX; i++)
        if (s_live [i] == pid)
            s_live [i] = 0;
}

int
e2e_start (e2e_t *self, int *status)
{
    assert_int_equal (self->pid, 0);
    int out_pipe [2];
    assert_int_equal (pipe2 (out_pipe, O_CLOEXEC), 0);
    int log_fd = open (self->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true (log_fd >= 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2 (&actions, out_pipe [1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2 (&actions, log_fd, STDERR_FILENO);
    //  SGMQ_BROKER_WRAPPER (e.g. "valgrind --error-exitcode=99") runs the
    //  broker under a tool.
    const char *argv [16];
    int argc = 0;
    char *wrapper = getenv ("SGMQ_BROKER_WRAPPER") ? strdup (getenv ("SGMQ_BROKER_WRAPPER")) : NULL;
    char *save = NULL;
    for (char *word = wrapper ? strtok_r (wrapper, " ", &save) : NULL; word && argc < 10;
         word = strtok_r (NULL, " ", &save))
        argv [argc++] = word;
    argv [argc++] = e2e_broker_bin;
    argv [argc++] = "--config";
    argv [argc++] = self->config;
    argv [argc] = NULL;
    pid_t pid;
    int rc = posix_spawnp (&pid, argv [0], &actions, NULL, (char *const *) argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    free (wrapper);
    close (out_pipe [1]);
    close (log_fd);
    assert_int_equal (rc, 0);
    self->pid = pid;
    self->pidfd = s_pidfd_open (pid);
    s_live_add (pid);
    //  Wait for "sgmq-broker: ready on ENDPOINT\n", or for the exit.
    char line [256] = "";
    size_t used = 0;
    int64_t deadline = testutil_now_ms () + testutil_ms (S_START_MS);
    bool ready = false;
    while (!ready) {
        int64_t left = deadline - testutil_now_ms ();
        assert_true (left > 0);
        struct pollfd fd = { out_pipe [0], POLLIN, 0 };
        if (poll (&fd, 1, (int) left) <= 0)
            continue;
        ssize_t got = read (out_pipe [0], line + used, sizeof line - 1 - used);
        if (got <= 0)
            break;              //  it closed stdout: it exited
        used += (size_t) got;
        line [used] = 0;
        ready = strchr (line, '\n') != NULL;
    }
    close (out_pipe [0]);
    const char *marker = "ready on ";
    char *at = strstr (line, marker);
    if (!ready || !at) {
        int wstatus = 0;
        waitpid (pid, &wstatus, 0);
        s_live_remove (pid);
        close (self->pidfd);
        self->pidfd = -1;
        self->pid = 0;
        if (status)
            *status = WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : -1;
        return -1;
    }
    at += strlen (marker);
    at [strcspn (at, "\n")] = 0;
    snprintf (self->endpoint, sizeof self->endpoint, "%s", at);
    //  A restart listens where the clients already are.
    e2e_config_set (self, "sgmq/endpoint", self->endpoint);
    return 0;
}

//  Wait for the broker to exit; its status, or -1 on timeout.
static int
s_reap (e2e_t *self, int timeout_ms)
{
    struct pollfd fd = { self->pidfd, POLLIN, 0 };
    if (self->pidfd >= 0 && poll (&fd, 1, testutil_ms (timeout_ms)) <= 0)
        return -1;
    int wstatus = 0;
    waitpid (self->pid, &wstatus, 0);
    s_live_remove (self->pid);
    close (self->pidfd);
    self->pidfd = -1;
    self->pid = 0;
    return WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : 128 + WTERMSIG (wstatus);
}

int
e2e_stop (e2e_t *self)
{
    if (!self->pid)
        return 0;
    kill (self->pid, SIGTERM);
    int status = s_reap (self, S_STOP_MS);
    if (status < 0) {
        e2e_kill (self);
        return -1;
    }
    return status;
}

void
e2e_kill (e2e_t *self)
{
    if (!self->pid)
        return;
    kill (self->pid, SIGKILL);
    s_reap (self, S_STOP_MS);
}

void
e2e_destroy (e2e_t **self_p)
{
    e2e_t *self = *self_p;
    if (!self)
        return;
    if (self->pid) {
        int status = e2e_stop (self);
        if (status != 0) {
            char *log = e2e_log (self);
            fprintf (stderr, "broker exited %d; its log:\n%s\n", status, log ? log : "");
            free (log);
        }
        assert_int_equal (status, 0);
    }
    char *parent = strdup (self->dir);
    char *slash = strrchr (parent, '/');
    *slash = 0;
    testutil_rmtree (parent);
    free (parent);
    free (self->dir);
    free (self->config);
    free (self->server_cert);
    free (self->log);
    free (self);
    *self_p = NULL;
}

sgmq_client_t *
e2e_client (e2e_t *self, const char *cert, sgmq_error_t *error)
{
    sgmq_client_options_t options = {
        .broker = self->endpoint, .cert = cert, .server_cert = self->server_cert,
        .timeout = (int) testutil_ms (5000), .client = "sgmq-e2e"
    };
    return sgmq_client_new (&options, error);
}

sgmq_client_t *
e2e_connect (e2e_t *self, const char *cert)
{
    sgmq_error_t error;
    sgmq_client_t *client = e2e_client (self, cert, &error);
    if (!client)
        fprintf (stderr, "cannot connect with %s: %d %s\n", cert, error.code, error.reason);
    assert_non_null (client);
    return client;
}

//  The environment the CLI runs with: broker, server cert, own cert (none
//  when `cert` is NULL), and its connect timeout scaled like the test's.
typedef struct {
    char broker [200], server [4200], own [4200], scale [64], timeout [64];
    const char *env [7];
} s_cli_env_t;

static const char *const *
s_cli_env (e2e_t *self, const char *cert, s_cli_env_t *e)
{
    snprintf (e->broker, sizeof e->broker, "SGMQ_BROKER=%s", self->endpoint);
    snprintf (e->server, sizeof e->server, "SGMQ_SERVER_CERT=%s", self->server_cert);
    snprintf (e->own, sizeof e->own, "SGMQ_CERT=%s", cert ? cert : "");
    snprintf (e->scale, sizeof e->scale, "SGMQ_TEST_SCALE=%g", testutil_scale ());
    snprintf (e->timeout, sizeof e->timeout, "SGMQ_CONNECT_TIMEOUT=%lld",
              (long long) (testutil_ms (SGMQ_CLIENT_DEFAULT_TIMEOUT) + 999) / 1000);
    size_t n = 0;
    e->env [n++] = e->broker;
    e->env [n++] = e->server;
    if (cert)
        e->env [n++] = e->own;
    e->env [n++] = e->scale;
    e->env [n++] = e->timeout;
    e->env [n++] = "PATH=/usr/bin:/bin";
    e->env [n] = NULL;
    return e->env;
}

int
e2e_cli (e2e_t *self, const char *cert, const char *input, char **out, char **err, ...)
{
    const char *argv [64] = { e2e_cli_bin };
    int argc = 1;
    va_list args;
    va_start (args, err);
    const char *arg;
    while ((arg = va_arg (args, const char *)) && argc < 62)
        argv [argc++] = arg;
    va_end (args);
    argv [argc] = NULL;
    s_cli_env_t e;
    return e2e_run (argv, s_cli_env (self, cert, &e), input, out, err, S_RUN_MS);
}

pid_t
e2e_cli_start (e2e_t *self, const char *cert, int *out_fd, ...)
{
    const char *argv [64] = { e2e_cli_bin };
    int argc = 1;
    va_list args;
    va_start (args, out_fd);
    const char *arg;
    while ((arg = va_arg (args, const char *)) && argc < 62)
        argv [argc++] = arg;
    va_end (args);
    argv [argc] = NULL;
    s_cli_env_t e;
    int out_pipe [2];
    assert_int_equal (pipe2 (out_pipe, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2 (&actions, out_pipe [1], STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawn (&pid, argv [0], &actions, NULL, (char *const *) argv,
                          (char *const *) s_cli_env (self, cert, &e));
    posix_spawn_file_actions_destroy (&actions);
    close (out_pipe [1]);
    assert_int_equal (rc, 0);
    *out_fd = out_pipe [0];
    return pid;
}

char *
e2e_read_lines (int fd, int count, int ms)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    int lines = 0;
    int64_t deadline = testutil_now_ms () + testutil_ms (ms);
    while (lines < count) {
        int64_t left = deadline - testutil_now_ms ();
        struct pollfd p = { fd, POLLIN, 0 };
        if (left <= 0 || poll (&p, 1, (int) left) <= 0)
            break;
        char c;
        if (read (fd, &c, 1) != 1)
            break;
        fputc (c, out);
        lines += c == '\n';
    }
    fclose (out);
    return text;
}

int
e2e_wait (pid_t pid, int ms)
{
    int fd = s_pidfd_open (pid);
    struct pollfd p = { fd, POLLIN, 0 };
    bool done = fd >= 0 && poll (&p, 1, testutil_ms (ms)) > 0;
    if (!done)
        kill (pid, SIGKILL);
    int status = 0;
    waitpid (pid, &status, 0);
    if (fd >= 0)
        close (fd);
    if (!done)
        return -1;
    return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
}

char *
e2e_log (e2e_t *self)
{
    return testutil_read_file (self->log, NULL);
}

void
e2e_ledger_confirm (e2e_ledger_t *ledger, const sgmq_confirm_t *confirm)
{
    if (confirm->seq >= ledger->size) {
        uint64_t size = ledger->size ? ledger->size * 2 : 1024;
        while (size <= confirm->seq)
            size *= 2;
        ledger->refs = realloc (ledger->refs, size * sizeof *ledger->refs);
        assert_non_null (ledger->refs);
        memset (ledger->refs + ledger->size, 0,
                (size - ledger->size) * sizeof *ledger->refs);
        ledger->size = size;
    }
    assert_int_equal (ledger->refs [confirm->seq][0], 0);
    snprintf (ledger->refs [confirm->seq], sizeof ledger->refs [0], "%s", confirm->ref);
    ledger->count++;
    if (confirm->seq > ledger->highest)
        ledger->highest = confirm->seq;
}

void
e2e_ledger_refuse (e2e_ledger_t *ledger, const char *ref)
{
    ledger->refused = realloc (ledger->refused,
                               (ledger->refused_count + 1) * sizeof *ledger->refused);
    assert_non_null (ledger->refused);
    snprintf (ledger->refused [ledger->refused_count++], sizeof ledger->refused [0],
              "%s", ref);
}

void
e2e_ledger_free (e2e_ledger_t *ledger)
{
    free (ledger->refs);
    free (ledger->refused);
    memset (ledger, 0, sizeof *ledger);
}

sgmq_body_t
e2e_escalation (const char *group, const char *title)
{
    sgmq_body_t body = { .kind = SGMQ_KIND_ESCALATION };
    body.u.escalation.group = group;
    body.u.escalation.title = title;
    body.u.escalation.summary = "A summary of the concern, without names.";
    body.u.escalation.severity = SGMQ_SEVERITY_HIGH;
    body.u.escalation.requested = "A decision from the Executive";
    body.u.escalation.respond_by = sgmq_time_now () + 7ULL * 86400000;
    return body;
}

static int
s_escalate (sgmq_client_t *client, const char *group, const char *title,
            sgmq_confirm_t *confirm, sgmq_error_t *error)
{
    sgmq_body_t body = e2e_escalation (group, title);
    return sgmq_client_publish (client, NULL, &body, confirm, error);
}

uint64_t
e2e_escalate (sgmq_client_t *client, const char *group, const char *title)
{
    sgmq_confirm_t confirm;
    sgmq_error_t error;
    int rc = s_escalate (client, group, title, &confirm, &error);
    if (rc)
        fprintf (stderr, "escalation refused: %d %s\n", error.code, error.reason);
    assert_int_equal (rc, 0);
    return confirm.seq;
}

int
e2e_escalate_code (sgmq_client_t *client, const char *group)
{
    sgmq_confirm_t confirm;
    sgmq_error_t error;
    return s_escalate (client, group, "A title", &confirm, &error) ? error.code : 0;
}

const sgmq_delivery_t *
e2e_recv (sgmq_client_t *client, int ms)
{
    const sgmq_delivery_t *delivery = NULL;
    sgmq_error_t error;
    int rc = sgmq_client_recv (client, (int) testutil_ms (ms), &delivery, &error);
    if (rc)
        fprintf (stderr, "no delivery: %d %s\n", error.code, error.reason);
    assert_int_equal (rc, 0);
    return delivery;
}

bool
e2e_quiet (sgmq_client_t *client, int ms)
{
    const sgmq_delivery_t *delivery = NULL;
    sgmq_error_t error;
    return sgmq_client_recv (client, (int) testutil_ms (ms), &delivery, &error) != 0
        && error.code == SGMQ_CLIENT_E_TIMEOUT;
}

int
e2e_count_item (const sgmq_pending_item_t *item, void *arg)
{
    (void) item;
    (*(size_t *) arg)++;
    return 0;
}

int
e2e_fd_count (pid_t pid)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/fd", (int) pid);
    DIR *dir = opendir (path);
    assert_non_null (dir);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)))
        count += entry->d_name [0] != '.';
    closedir (dir);
    return count;
}

long
e2e_cpu_ticks (pid_t pid)
{
    char path [64], buf [2048];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    assert_non_null (file);
    size_t got = fread (buf, 1, sizeof buf - 1, file);
    fclose (file);
    buf [got] = 0;
    //  After the ")" that ends the name, utime and stime are the 12th and
    //  13th fields.
    char *p = strrchr (buf, ')');
    assert_non_null (p);
    long ticks = 0;
    int field = 0;
    for (char *save = NULL, *tok = strtok_r (p + 1, " ", &save); tok && field < 13;
         tok = strtok_r (NULL, " ", &save))
        if (++field >= 12)
            ticks += atol (tok);
    return ticks;
}
