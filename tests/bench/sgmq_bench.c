/*  sgmq-bench - end-to-end figures of the real broker (a program, not a test).

    Starts the real `sgmq-broker` in a temporary deployment made by the real
    `sgmq init` (CURVE on, bodies encrypted at rest, every confirm after the
    fsync: the broker has no other mode) and measures, for 1 KiB and 128 B
    bodies (the canonical escalation body, exactly that many bytes):

      throughput  publish -> confirm, 1 publisher with 1000 in flight, and
                  8 publishers with 100 in flight each (libsgmq's pipelined
                  sgmq_client_publish_send / _publish_wait)
      latency     publish -> confirm at fixed offered rates (2,000/s and
                  10,000/s), open loop: each message has a scheduled send
                  time and its latency is counted from that time, so a
                  stall delays the schedule's messages, never hides them
      fanout      1 publisher to the executive group of 10 members that
                  receive everything and ack it: ACKED per second
      replay      an auditor streams the history and verifies the chain
      rss         the broker's RSS while 10 members take 200,000 messages,
                  and while one of them is stalled (subscribed, not reading)
      scale-members  throughput and latency with 1, 10, 100, 1000 connected
                  members (min(N,10) in the executive, acking; the rest
                  subscribed in another group, idle)
      scale-store throughput, latency, start-up time and a tail replay with
                  10^4, 10^6 and 10^7 messages stored

    Each figure is the median of --runs runs (default 3), printed with min
    and max; --json FILE writes everything (and the machine) for
    tests/bench/compare.sh. Members are a small raw-protocol client here,
    one thread polling them all (for the 1,000-member shapes); they batch
    acks as libsgmq's sgmq_client_ack_send does. Usage: sgmq-bench --help.

    Optional: SGMQ_BENCH_PERF=DIR records `perf record -g` of the broker
    during the measured part of the first run of each shape into DIR.
*/
#define _GNU_SOURCE
#include "sgmq_client.h"
#include "sgmq_cert.h"
#include "sgmq_keyfile.h"
#include "sgmq_proto.h"

#include "bench_util.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *bench_program = "sgmq-bench";

extern char **environ;

#ifndef SGMQ_BROKER_BIN
#define SGMQ_BROKER_BIN "sgmq-broker"
#endif
#ifndef SGMQ_CLI_BIN
#define SGMQ_CLI_BIN "sgmq"
#endif

#define MAX_RUNS     15
#define MAX_RESULTS  512
#define MAX_MEMBERS  1000

//  --------------------------------------------------------------------------
//  Options

static struct {
    int runs;
    double duration;            //  measured seconds per run
    double warmup;
    size_t sizes [4];
    int size_count;
    char only [512];
    const char *json;
    const char *tmp;
    uint32_t member_window;
    uint64_t replay_count;
    uint64_t rss_messages;
    int members [8];
    int member_points;
    uint64_t store_points [8];
    int store_point_count;
    size_t store_big_size;      //  body size for the largest store point
    bool quiet;
    uint32_t flush;             //  publishers flush every N sends (0: at the window)
} opt = {
    .runs = 3, .duration = 5, .warmup = 1,
    .sizes = { 1024, 128 }, .size_count = 2,
    .only = "throughput,latency,fanout,replay,rss",
    .tmp = "/tmp", .member_window = 1000, .replay_count = 200000,
    .rss_messages = 200000,
    .members = { 1, 10, 100, 1000 }, .member_points = 4,
    .store_points = { 10000, 1000000, 10000000 }, .store_point_count = 3,
    .store_big_size = 128,
};

static const char *s_broker_bin = SGMQ_BROKER_BIN;
static const char *s_cli_bin = SGMQ_CLI_BIN;
static const char *s_perf_dir;

//  --------------------------------------------------------------------------
//  Small things

static double
s_secs (int64_t ns)
{
    return (double) ns / 1e9;
}

static void
__attribute__ ((format (printf, 1, 2)))
s_note (const char *format, ...)
{
    if (opt.quiet)
        return;
    va_list args;
    va_start (args, format);
    vfprintf (stderr, format, args);
    va_end (args);
    fflush (stderr);
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static bool
s_wanted (const char *shape)
{
    char list [sizeof opt.only];
    snprintf (list, sizeof list, "%s", opt.only);
    char *save = NULL;
    for (char *word = strtok_r (list, ",", &save); word; word = strtok_r (NULL, ",", &save))
        if (strcmp (word, shape) == 0 || strcmp (word, "all") == 0)
            return true;
    return false;
}

static char *
s_read_text (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return NULL;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    char chunk [4096];
    size_t got;
    while ((got = fread (chunk, 1, sizeof chunk, file)) > 0)
        fwrite (chunk, 1, got, out);
    fclose (file);
    fclose (out);
    return text;
}

static int
s_rmtree (const char *path)
{
    pid_t pid;
    const char *argv [] = { "/bin/rm", "-rf", "--", path, NULL };
    if (posix_spawn (&pid, argv [0], NULL, NULL, (char *const *) argv, environ))
        return -1;
    int status;
    waitpid (pid, &status, 0);
    return WIFEXITED (status) && WEXITSTATUS (status) == 0 ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Results

typedef struct {
    char shape [32];
    size_t size;
    char param [48];
    char metric [40];
    char unit [16];
    double values [MAX_RUNS];
    int count;
} result_t;

static result_t s_results [MAX_RESULTS];
static int s_result_count;

static result_t *
s_result (const char *shape, size_t size, const char *param, const char *metric,
          const char *unit)
{
    for (int i = 0; i < s_result_count; i++) {
        result_t *r = &s_results [i];
        if (strcmp (r->shape, shape) == 0 && r->size == size
        &&  strcmp (r->param, param) == 0 && strcmp (r->metric, metric) == 0)
            return r;
    }
    if (s_result_count == MAX_RESULTS)
        bench_die ("too many results");
    result_t *r = &s_results [s_result_count++];
    memset (r, 0, sizeof *r);
    snprintf (r->shape, sizeof r->shape, "%s", shape);
    r->size = size;
    snprintf (r->param, sizeof r->param, "%s", param);
    snprintf (r->metric, sizeof r->metric, "%s", metric);
    snprintf (r->unit, sizeof r->unit, "%s", unit);
    return r;
}

static void
s_record (const char *shape, size_t size, const char *param, const char *metric,
          const char *unit, double value)
{
    result_t *r = s_result (shape, size, param, metric, unit);
    if (r->count < MAX_RUNS)
        r->values [r->count++] = value;
    s_note ("    %-13s %5zu B  %-22s %-18s %14.3f %s\n", shape, size, param, metric,
            value, unit);
}

static void
s_stats (const result_t *r, double *median, double *lo, double *hi)
{
    double sorted [MAX_RUNS];
    memcpy (sorted, r->values, sizeof (double) * (size_t) r->count);
    qsort (sorted, (size_t) r->count, sizeof (double), s_cmp_double);
    *lo = sorted [0];
    *hi = sorted [r->count - 1];
    *median = r->count % 2 ? sorted [r->count / 2]
                           : (sorted [r->count / 2 - 1] + sorted [r->count / 2]) / 2;
}

//  --------------------------------------------------------------------------
//  The machine

typedef struct {
    long nproc;
    char cpu [128];
    char kernel [256];
    char os [128];
    char fs [64];
    char mount [PATH_MAX];
    double disk_free_gib, disk_total_gib;
    double mem_gib;
    char zmq [32], sodium [32];
    char date [64];
    char load [64];             //  load average at the start (shared machines)
} machine_t;

static machine_t s_machine;

static void
s_machine_read (const char *dir)
{
    machine_t *m = &s_machine;
    m->nproc = sysconf (_SC_NPROCESSORS_ONLN);
    snprintf (m->cpu, sizeof m->cpu, "unknown");
    char *cpuinfo = s_read_text ("/proc/cpuinfo");
    char *at = cpuinfo ? strstr (cpuinfo, "model name") : NULL;
    if (at && (at = strchr (at, ':'))) {
        at += 2;
        snprintf (m->cpu, sizeof m->cpu, "%.*s", (int) strcspn (at, "\n"), at);
    }
    free (cpuinfo);
    struct utsname u;
    uname (&u);
    snprintf (m->kernel, sizeof m->kernel, "%s %s %s", u.sysname, u.release, u.machine);
    snprintf (m->os, sizeof m->os, "unknown");
    char *release = s_read_text ("/etc/os-release");
    at = release ? strstr (release, "PRETTY_NAME=\"") : NULL;
    if (at) {
        at += 13;
        snprintf (m->os, sizeof m->os, "%.*s", (int) strcspn (at, "\""), at);
    }
    free (release);
    //  Filesystem: the longest mount point that is a prefix of `dir`.
    char real [PATH_MAX];
    if (!realpath (dir, real))
        snprintf (real, sizeof real, "%s", dir);
    FILE *mounts = fopen ("/proc/self/mounts", "r");
    size_t best = 0;
    char line [4096];
    while (mounts && fgets (line, sizeof line, mounts)) {
        char dev [1024], point [1024], type [64];
        if (sscanf (line, "%1023s %1023s %63s", dev, point, type) != 3)
            continue;
        size_t len = strlen (point);
        bool prefix = strncmp (real, point, len) == 0
                   && (real [len] == '/' || real [len] == 0 || len == 1);
        if (prefix && len >= best) {
            best = len;
            snprintf (m->fs, sizeof m->fs, "%s", type);
            snprintf (m->mount, sizeof m->mount, "%s on %s", dev, point);
        }
    }
    if (mounts)
        fclose (mounts);
    struct statvfs vfs;
    if (statvfs (dir, &vfs) == 0) {
        m->disk_free_gib = (double) vfs.f_bavail * (double) vfs.f_frsize / (1024.0 * 1024 * 1024);
        m->disk_total_gib = (double) vfs.f_blocks * (double) vfs.f_frsize / (1024.0 * 1024 * 1024);
    }
    m->mem_gib = (double) sysconf (_SC_PHYS_PAGES) * (double) sysconf (_SC_PAGESIZE)
               / (1024.0 * 1024 * 1024);
    int major, minor, patch;
    zmq_version (&major, &minor, &patch);
    snprintf (m->zmq, sizeof m->zmq, "%d.%d.%d", major, minor, patch);
    snprintf (m->sodium, sizeof m->sodium, "%s", sodium_version_string ());
    char *load = s_read_text ("/proc/loadavg");
    if (load) {
        //  The three averages: up to the third space.
        char *end = load;
        for (int i = 0; i < 3 && end; i++)
            end = strchr (end + 1, ' ');
        snprintf (m->load, sizeof m->load, "%.*s", end ? (int) (end - load) : 0, load);
    }
    free (load);
    time_t now = time (NULL);
    strftime (m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", gmtime (&now));
}

//  --------------------------------------------------------------------------
//  A deployment and its broker process

typedef struct {
    char root [1024];           //  temp folder (removed at the end)
    char dir [1100];            //  root/deploy
    char config [PATH_MAX];
    char server_cert [PATH_MAX];
    char log [PATH_MAX];
    char endpoint [128];
    pid_t pid;
    int pidfd;
    double start_ms;            //  spawn to "ready on" line
    uint8_t server_key [32];
    uint8_t signing_pk [32];
    pid_t perf_pid;
} dep_t;

static int
s_run (const char *const *argv, int timeout_ms)
{
    pid_t pid;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen (&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn (&pid, argv [0], &actions, NULL, (char *const *) argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    if (rc)
        return -1;
    int64_t deadline = bench_now_ns () + (int64_t) timeout_ms * 1000000;
    int status = 0;
    while (waitpid (pid, &status, WNOHANG) == 0) {
        if (bench_now_ns () > deadline) {
            kill (pid, SIGKILL);
            waitpid (pid, &status, 0);
            return -1;
        }
        bench_sleep_ns (2000000);
    }
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static dep_t *
s_dep_new (const char *tag)
{
    dep_t *dep = calloc (1, sizeof *dep);
    dep->pidfd = -1;
    snprintf (dep->root, sizeof dep->root, "%s/sgmq-bench-%s-XXXXXX", opt.tmp, tag);
    if (!mkdtemp (dep->root))
        bench_die ("cannot make a folder under %s: %s", opt.tmp, strerror (errno));
    snprintf (dep->dir, sizeof dep->dir, "%s/deploy", dep->root);
    const char *argv [] = { s_cli_bin, "init", dep->dir, "--endpoint",
                            "tcp://127.0.0.1:*", NULL };
    if (s_run (argv, 30000) != 0)
        bench_die ("sgmq init %s failed", dep->dir);
    snprintf (dep->config, sizeof dep->config, "%s/sgmq.cfg", dep->dir);
    snprintf (dep->server_cert, sizeof dep->server_cert, "%s/broker.cert", dep->dir);
    snprintf (dep->log, sizeof dep->log, "%s/broker.log", dep->root);
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *server = sgmq_cert_load (dep->server_cert, error);
    if (!server)
        bench_die ("%s", error);
    memcpy (dep->server_key, sgmq_cert_public_key (server), 32);
    sgmq_cert_destroy (&server);
    char pub [PATH_MAX + 16];
    snprintf (pub, sizeof pub, "%s/signing.pub", dep->dir);
    char kerror [512];
    if (sgmq_keyfile_read_signing_public (pub, dep->signing_pk, kerror))
        bench_die ("%s", kerror);
    return dep;
}

//  Make and admit a principal; returns the path of its secret cert.
static char *
s_principal (dep_t *dep, const char *file, const char *name, const char *roles,
             const char *groups)
{
    char path [PATH_MAX + 64], admitted [PATH_MAX + 64];
    snprintf (path, sizeof path, "%s/%s", dep->root, file);
    snprintf (admitted, sizeof admitted, "%s/certs/%s", dep->dir, file);
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *cert = sgmq_cert_new ();
    if (!cert
    ||  sgmq_cert_set_meta (cert, "name", name, error)
    ||  sgmq_cert_set_meta (cert, "agency", "Benchmark Agency", error)
    ||  sgmq_cert_set_meta (cert, "roles", roles, error)
    ||  (groups && sgmq_cert_set_meta (cert, "groups", groups, error))
    ||  sgmq_cert_save (cert, path, error)
    ||  sgmq_cert_save_public (cert, admitted, true, error))
        bench_die ("principal %s: %s", name, error);
    sgmq_cert_destroy (&cert);
    char *secret = malloc (strlen (path) + 8);
    sprintf (secret, "%s_secret", path);
    return secret;
}

//  Brokers running now: whatever ends this program (bench_die, a signal)
//  stops them too, so an interrupted run leaves no broker behind.
#define MAX_LIVE 8
static volatile pid_t s_live [MAX_LIVE];

static void
s_live_stop (void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (s_live [i] > 0)
            kill (s_live [i], SIGTERM);
}

static void
s_live_signal (int sig)
{
    s_live_stop ();
    _exit (128 + sig);
}

static void
s_live_set (pid_t from, pid_t to)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (s_live [i] == from) {
            s_live [i] = to;
            return;
        }
}

static void
s_dep_start (dep_t *dep)
{
    int out_pipe [2];
    if (pipe2 (out_pipe, O_CLOEXEC))
        bench_die ("pipe: %s", strerror (errno));
    int log_fd = open (dep->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2 (&actions, out_pipe [1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2 (&actions, log_fd, STDERR_FILENO);
    const char *argv [] = { s_broker_bin, "--config", dep->config, NULL };
    int64_t started = bench_now_ns ();
    pid_t pid;
    int rc = posix_spawn (&pid, argv [0], &actions, NULL, (char *const *) argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    close (out_pipe [1]);
    close (log_fd);
    if (rc)
        bench_die ("cannot start %s: %s", s_broker_bin, strerror (rc));
    dep->pid = pid;
    s_live_set (0, pid);
    dep->pidfd = (int) syscall (SYS_pidfd_open, pid, 0);
    char line [512] = "";
    size_t used = 0;
    int64_t deadline = started + 300LL * 1000000000;
    while (!strchr (line, '\n')) {
        int64_t left = (deadline - bench_now_ns ()) / 1000000;
        struct pollfd fd = { out_pipe [0], POLLIN, 0 };
        if (left <= 0)
            break;
        if (poll (&fd, 1, (int) left) <= 0)
            continue;
        ssize_t got = read (out_pipe [0], line + used, sizeof line - 1 - used);
        if (got <= 0)
            break;
        used += (size_t) got;
        line [used] = 0;
    }
    dep->start_ms = (double) (bench_now_ns () - started) / 1e6;
    close (out_pipe [0]);
    char *at = strstr (line, "ready on ");
    if (!at) {
        char *log = s_read_text (dep->log);
        bench_die ("the broker did not start; its log:\n%s", log ? log : "");
    }
    at += 9;
    at [strcspn (at, "\n")] = 0;
    snprintf (dep->endpoint, sizeof dep->endpoint, "%s", at);
}

//  SIGTERM and wait; the exit status, or -1 (then killed).
static int
s_dep_stop (dep_t *dep)
{
    if (!dep->pid)
        return 0;
    kill (dep->pid, SIGTERM);
    struct pollfd fd = { dep->pidfd, POLLIN, 0 };
    bool gone = dep->pidfd < 0 || poll (&fd, 1, 60000) > 0;
    if (!gone)
        kill (dep->pid, SIGKILL);
    int status = 0;
    waitpid (dep->pid, &status, 0);
    s_live_set (dep->pid, 0);
    if (dep->pidfd >= 0)
        close (dep->pidfd);
    dep->pidfd = -1;
    dep->pid = 0;
    int code = gone && WIFEXITED (status) ? WEXITSTATUS (status) : -1;
    if (code != 0)
        s_note ("warning: the broker exited %d (log %s)\n", code, dep->log);
    return code;
}

static void
s_dep_destroy (dep_t **dep_p)
{
    dep_t *dep = *dep_p;
    if (!dep)
        return;
    s_dep_stop (dep);
    if (getenv ("SGMQ_BENCH_KEEP"))
        s_note ("kept %s\n", dep->root);
    else
        s_rmtree (dep->root);
    free (dep);
    *dep_p = NULL;
}

//  VmRSS / VmHWM of the broker in KiB; 0 if unknown.
static long
s_proc_kib (pid_t pid, const char *field)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    char *text = s_read_text (path);
    char *at = text ? strstr (text, field) : NULL;
    long kib = at ? strtol (at + strlen (field) + 1, NULL, 10) : 0;
    free (text);
    return kib;
}

//  CPU seconds (user + system) the broker has used.
static double
s_proc_cpu (pid_t pid)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    char *text = s_read_text (path);
    char *at = text ? strrchr (text, ')') : NULL;
    double secs = 0;
    if (at) {
        unsigned long utime = 0, stime = 0;
        //  Fields after ")": state(3) ... utime(14) stime(15).
        if (sscanf (at + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                    &utime, &stime) == 2)
            secs = (double) (utime + stime) / (double) sysconf (_SC_CLK_TCK);
    }
    free (text);
    return secs;
}

static double
s_self_cpu (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6
         + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}

//  perf record of the broker, if SGMQ_BENCH_PERF is set and this label has
//  not been profiled yet.
static void
s_perf_start (dep_t *dep, const char *label)
{
    if (!s_perf_dir || !dep->pid)
        return;
    char out [PATH_MAX], pid_text [32];
    snprintf (out, sizeof out, "%s/%s.data", s_perf_dir, label);
    struct stat st;
    if (stat (out, &st) == 0)
        return;
    snprintf (pid_text, sizeof pid_text, "%d", (int) dep->pid);
    const char *argv [] = { "/usr/bin/perf", "record", "-q", "-e", "cpu-clock", "-g",
                            "-p", pid_text, "-o", out, NULL };
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen (&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    if (posix_spawn (&dep->perf_pid, argv [0], &actions, NULL, (char *const *) argv, environ))
        dep->perf_pid = 0;
    posix_spawn_file_actions_destroy (&actions);
    bench_sleep_ns (200000000);     //  let it attach
}

static void
s_perf_stop (dep_t *dep)
{
    if (!dep->perf_pid)
        return;
    kill (dep->perf_pid, SIGINT);
    int status;
    waitpid (dep->perf_pid, &status, 0);
    dep->perf_pid = 0;
}

//  --------------------------------------------------------------------------
//  Bodies: an escalation whose canonical encoding is exactly `size` bytes.

typedef struct {
    sgmq_body_t body;
    char summary [SGMQ_PROTO_MAX_TEXT + 1];
} body_t;

static void
s_body_make (body_t *b, size_t size)
{
    static const char *titles [] = { "Bench", "Bench!", "Bench!!" };
    memset (b, 0, sizeof *b);
    b->body.kind = SGMQ_KIND_ESCALATION;
    b->body.u.escalation.group = "education-forum";
    b->body.u.escalation.severity = SGMQ_SEVERITY_HIGH;
    b->body.u.escalation.requested = "A decision";
    b->body.u.escalation.respond_by = (uint64_t) time (NULL) * 1000 + 7ULL * 86400000;
    b->body.u.escalation.summary = b->summary;
    static const char letters [] = "abcdefghijklmnopqrstuvwxyz ";
    char fill [SGMQ_PROTO_MAX_TEXT + 1];
    for (size_t i = 0; i < SGMQ_PROTO_MAX_TEXT; i++)
        fill [i] = letters [randombytes_uniform (sizeof letters - 1)];
    fill [0] = 'S';
    //  The summary's length header grows at 32 and 256 bytes: if one length
    //  overshoots and the next undershoots, lengthen the title by one.
    for (size_t t = 0; t < 3; t++) {
        b->body.u.escalation.title = titles [t];
        long len = 1;
        for (int tries = 0; tries < 8; tries++) {
            if (len < 1 || len > SGMQ_PROTO_MAX_TEXT)
                break;
            memcpy (b->summary, fill, (size_t) len);
            b->summary [len] = 0;
            size_t got = 0;
            sgmq_proto_error_t error;
            uint8_t *bytes = sgmq_proto_encode_body (&b->body, &got, &error);
            if (!bytes)
                bench_die ("body: %s", error.reason);
            free (bytes);
            if (got == size)
                return;
            len += (long) size - (long) got;
        }
    }
    bench_die ("no escalation body of exactly %zu bytes", size);
}

//  --------------------------------------------------------------------------
//  Publishers (libsgmq)

static sgmq_client_t *
s_client (dep_t *dep, const char *cert)
{
    sgmq_client_options_t options = {
        .broker = dep->endpoint, .cert = cert, .server_cert = dep->server_cert,
        .timeout = 30000, .client = "sgmq-bench"
    };
    sgmq_error_t error;
    sgmq_client_t *client = sgmq_client_new (&options, &error);
    if (!client)
        bench_die ("cannot connect with %s: %d %s", cert, error.code, error.reason);
    return client;
}

//  Phases shared by a shape's threads.
enum { PH_SETUP, PH_RUN, PH_STOP };

typedef struct {
    dep_t *dep;
    const char *cert;
    size_t size;
    uint32_t window;
    uint64_t limit;             //  publish this many, then stop (0: until PH_STOP)
    char prefix [24];
    atomic_int *phase;
    atomic_uint_fast64_t *confirms;
    atomic_uint_fast64_t errors;
    atomic_int ready;
    uint64_t sent;
} pub_t;

static void *
s_pub_thread (void *arg)
{
    pub_t *p = arg;
    body_t *body = malloc (sizeof *body);
    s_body_make (body, p->size);
    sgmq_client_t *client = s_client (p->dep, p->cert);
    atomic_store (&p->ready, 1);
    while (atomic_load (p->phase) == PH_SETUP)
        bench_sleep_ns (1000000);
    sgmq_error_t error;
    char ref [64];
    while (atomic_load (p->phase) == PH_RUN) {
        while (sgmq_client_in_flight (client) < p->window
               && (!p->limit || p->sent < p->limit)) {
            snprintf (ref, sizeof ref, "%s%012llu", p->prefix, (unsigned long long) p->sent);
            if (sgmq_client_publish_send (client, ref, &body->body, &error))
                bench_die ("publish: %s", error.reason);
            p->sent++;
            //  --flush N: send the queued publishes every N (libsgmq sends
            //  a frame every 128 publishes, when it is full, or at
            //  _publish_wait), and take the confirms already here.
            sgmq_confirm_t early;
            if (opt.flush && p->sent % opt.flush == 0)
                while (sgmq_client_publish_wait (client, 0, &early, &error) == 0) {
                    if (error.code)
                        atomic_fetch_add (&p->errors, 1);
                    else
                        atomic_fetch_add (p->confirms, 1);
                }
        }
        if (sgmq_client_in_flight (client) == 0)
            break;              //  limit reached and all confirmed
        sgmq_confirm_t confirm;
        int timeout = 30000;
        int got = 0;
        while (sgmq_client_publish_wait (client, timeout, &confirm, &error) == 0) {
            if (error.code)
                atomic_fetch_add (&p->errors, 1);
            else
                atomic_fetch_add (p->confirms, 1);
            timeout = 0;
            got++;
        }
        if (!got)
            bench_die ("no confirm within 30 s: %d %s", error.code, error.reason);
    }
    //  Collect what is still in flight.
    sgmq_confirm_t confirm;
    while (sgmq_client_in_flight (client)
           && sgmq_client_publish_wait (client, 30000, &confirm, &error) == 0)
        ;
    sgmq_client_destroy (&client);
    free (body);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Members: a raw protocol client (HELLO, SUBSCRIBE, DELIVER -> batched ACK)

typedef struct {
    zsock_t *sock;
    sgmq_proto_writer_t *out;
    sgmq_proto_frame_t *frame;
    uint64_t next_id;
    int64_t last_ping;
    bool active;                //  acks what it gets
    bool stalled;               //  reads nothing after SUBSCRIBED
    uint64_t delivered, acked, errors, redelivered;
} member_t;

typedef struct {
    dep_t *dep;
    int count;
    char **certs;
    member_t *members;
    uint32_t window;
    atomic_int stop;
    atomic_int ready;
    atomic_uint_fast64_t acked;     //  ACKED received, all members
    atomic_uint_fast64_t delivered;
    uint64_t errors;
    pthread_t thread;
} members_t;

static void
s_member_send (member_t *m)
{
    if (sgmq_proto_writer_count (m->out) == 0)
        return;
    zmq_send (zsock_resolve (m->sock), sgmq_proto_writer_data (m->out),
              sgmq_proto_writer_size (m->out), 0);
    sgmq_proto_writer_reset (m->out);
    m->last_ping = bench_now_ns ();
}

static void
s_member_add (member_t *m, sgmq_cmd_t *cmd)
{
    cmd->id = ++m->next_id;
    sgmq_proto_error_t error;
    int rc = sgmq_proto_write (m->out, cmd, &error);
    if (rc == -1) {
        s_member_send (m);
        rc = sgmq_proto_write (m->out, cmd, &error);
    }
    if (rc)
        bench_die ("member: cannot encode: %s", error.reason);
}

//  Wait for one answer of type `want` (reading and dropping others).
static void
s_member_expect (member_t *m, sgmq_cmd_id_t want)
{
    int64_t deadline = bench_now_ns () + 60LL * 1000000000;
    while (bench_now_ns () < deadline) {
        zmq_pollitem_t item = { zsock_resolve (m->sock), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 1000) <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, item.socket, 0) < 0) {
            zmq_msg_close (&msg);
            continue;
        }
        sgmq_proto_error_t error;
        int rc = sgmq_proto_decode (m->frame, zmq_msg_data (&msg), zmq_msg_size (&msg), &error);
        zmq_msg_close (&msg);
        if (rc)
            continue;
        for (size_t i = 0; i < sgmq_proto_count (m->frame); i++) {
            const sgmq_cmd_t *cmd = sgmq_proto_cmd (m->frame, i, &error);
            if (cmd && cmd->cmd == want)
                return;
            if (cmd && cmd->cmd == SGMQ_CMD_ERROR)
                bench_die ("member: refused: %u %s", cmd->u.error.code, cmd->u.error.reason);
        }
    }
    bench_die ("member: no %s within 60 s", sgmq_proto_cmd_name (want));
}

static void
s_member_connect (member_t *m, dep_t *dep, const char *cert_path, uint32_t window)
{
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *cert = sgmq_cert_load (cert_path, error);
    if (!cert)
        bench_die ("%s", error);
    m->sock = zsock_new (ZMQ_DEALER);
    m->out = sgmq_proto_writer_new ();
    m->frame = sgmq_proto_frame_new ();
    if (!m->sock || sgmq_cert_apply_client (cert, zsock_resolve (m->sock), dep->server_key))
        bench_die ("member: cannot make a CURVE socket");
    sgmq_cert_destroy (&cert);
    zsock_set_rcvhwm (m->sock, 0);
    zsock_set_sndhwm (m->sock, 0);
    if (zsock_connect (m->sock, "%s", dep->endpoint))
        bench_die ("member: cannot connect to %s", dep->endpoint);
    sgmq_cmd_t hello = { .cmd = SGMQ_CMD_HELLO };
    hello.u.hello.client = "sgmq-bench-member";
    s_member_add (m, &hello);
    s_member_send (m);
    s_member_expect (m, SGMQ_CMD_WELCOME);
    sgmq_cmd_t subscribe = { .cmd = SGMQ_CMD_SUBSCRIBE };
    subscribe.u.subscribe.window = window;
    s_member_add (m, &subscribe);
    s_member_send (m);
    s_member_expect (m, SGMQ_CMD_SUBSCRIBED);
}

//  Read every frame waiting on a member's socket; queue an ACK for each
//  delivery; send the acks as one frame.
static void
s_member_read (members_t *set, member_t *m)
{
    void *handle = zsock_resolve (m->sock);
    uint64_t acked = 0, delivered = 0;
    while (true) {
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&msg);
            break;
        }
        sgmq_proto_error_t error;
        int rc = sgmq_proto_decode (m->frame, zmq_msg_data (&msg), zmq_msg_size (&msg), &error);
        zmq_msg_close (&msg);
        if (rc) {
            m->errors++;
            continue;
        }
        for (size_t i = 0; i < sgmq_proto_count (m->frame); i++) {
            const sgmq_cmd_t *cmd = sgmq_proto_cmd (m->frame, i, &error);
            if (!cmd)
                continue;
            if (cmd->cmd == SGMQ_CMD_DELIVER) {
                delivered++;
                if (cmd->u.deliver.attempt > 1)
                    m->redelivered++;
                if (m->active) {
                    sgmq_cmd_t ack = { .cmd = SGMQ_CMD_ACK };
                    ack.u.ack.seq = cmd->u.deliver.seq;
                    s_member_add (m, &ack);
                }
            }
            else
            if (cmd->cmd == SGMQ_CMD_ACKED)
                acked++;
            else
            if (cmd->cmd == SGMQ_CMD_ERROR) {
                if (m->errors++ < 3)
                    s_note ("member error: %u %s\n", cmd->u.error.code, cmd->u.error.reason);
            }
        }
        s_member_send (m);
    }
    m->acked += acked;
    m->delivered += delivered;
    if (acked)
        atomic_fetch_add (&set->acked, acked);
    if (delivered)
        atomic_fetch_add (&set->delivered, delivered);
}

static void *
s_members_thread (void *arg)
{
    members_t *set = arg;
    int n = set->count;
    zmq_pollitem_t *items = calloc ((size_t) n, sizeof *items);
    int *index = calloc ((size_t) n, sizeof *index);
    int polled = 0;
    for (int i = 0; i < n; i++)
        if (!set->members [i].stalled) {
            items [polled].socket = zsock_resolve (set->members [i].sock);
            items [polled].events = ZMQ_POLLIN;
            index [polled++] = i;
        }
    atomic_store (&set->ready, 1);
    while (!atomic_load (&set->stop)) {
        int rc = zmq_poll (items, polled, 100);
        if (rc > 0)
            for (int k = 0; k < polled; k++)
                if (items [k].revents & ZMQ_POLLIN)
                    s_member_read (set, &set->members [index [k]]);
        //  Keep every session alive (the stalled one too: it sends, it
        //  just never reads).
        int64_t now = bench_now_ns ();
        for (int i = 0; i < n; i++) {
            member_t *m = &set->members [i];
            if (now - m->last_ping > 3LL * 1000000000) {
                sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING };
                s_member_add (m, &ping);
                s_member_send (m);
            }
        }
    }
    free (items);
    free (index);
    return NULL;
}

//  `count` members; the first `active` are in the executive (recipients
//  of every escalation) and ack; the others are in qa-performance, idle.
//  The last active one is stalled when `stall_last`.
static members_t *
s_members_new (dep_t *dep, int count, int active, bool stall_last, uint32_t window)
{
    members_t *set = calloc (1, sizeof *set);
    set->dep = dep;
    set->count = count;
    set->window = window;
    set->members = calloc ((size_t) count, sizeof (member_t));
    set->certs = calloc ((size_t) count, sizeof (char *));
    for (int i = 0; i < count; i++) {
        char file [64], name [64];
        bool exec = i < active;
        snprintf (file, sizeof file, "%s-%d.cert", exec ? "exec" : "idle", i + 1);
        snprintf (name, sizeof name, "%s member %d", exec ? "Executive" : "QA", i + 1);
        set->certs [i] = s_principal (dep, file, name, "member",
                                      exec ? "executive" : "qa-performance");
        set->members [i].active = exec;
        set->members [i].stalled = exec && stall_last && i == active - 1;
    }
    return set;
}

//  Connect them all (the broker must be running), then start reading.
static void
s_members_start (members_t *set)
{
    for (int i = 0; i < set->count; i++)
        s_member_connect (&set->members [i], set->dep, set->certs [i], set->window);
    atomic_store (&set->stop, 0);
    pthread_create (&set->thread, NULL, s_members_thread, set);
    while (!atomic_load (&set->ready))
        bench_sleep_ns (1000000);
}

static void
s_members_stop (members_t *set)
{
    atomic_store (&set->stop, 1);
    pthread_join (set->thread, NULL);
    for (int i = 0; i < set->count; i++) {
        member_t *m = &set->members [i];
        set->errors += m->errors;
        sgmq_cmd_t bye = { .cmd = SGMQ_CMD_BYE };
        s_member_add (m, &bye);
        s_member_send (m);
        zsock_set_linger (m->sock, 100);
        zsock_destroy (&m->sock);
        sgmq_proto_writer_destroy (&m->out);
        sgmq_proto_frame_destroy (&m->frame);
    }
    atomic_store (&set->ready, 0);
}

static void
s_members_destroy (members_t **set_p)
{
    members_t *set = *set_p;
    for (int i = 0; i < set->count; i++)
        free (set->certs [i]);
    free (set->certs);
    free (set->members);
    free (set);
    *set_p = NULL;
}

//  --------------------------------------------------------------------------
//  A deployment for a shape: publishers pub-1..pub-P in education-forum
//  (escalations go to the executive), and `offline` executive members that
//  never connect (each publish stores a pending delivery for each).

typedef struct {
    dep_t *dep;
    char *pubs [8];
    int pub_count;
    char *auditor;
} setup_t;

static setup_t
s_setup (const char *tag, int publishers, int offline, bool auditor)
{
    setup_t s = { .dep = s_dep_new (tag), .pub_count = publishers };
    for (int i = 0; i < publishers; i++) {
        char file [32], name [32];
        snprintf (file, sizeof file, "pub-%d.cert", i + 1);
        snprintf (name, sizeof name, "Agency system %d", i + 1);
        s.pubs [i] = s_principal (s.dep, file, name, "publisher", "education-forum");
    }
    for (int i = 0; i < offline; i++) {
        char file [32], name [32];
        snprintf (file, sizeof file, "offline-%d.cert", i + 1);
        snprintf (name, sizeof name, "Offline executive %d", i + 1);
        free (s_principal (s.dep, file, name, "member", "executive"));
    }
    if (auditor)
        s.auditor = s_principal (s.dep, "auditor.cert", "Independent scrutineer",
                                 "auditor", NULL);
    return s;
}

static void
s_setup_destroy (setup_t *s)
{
    s_dep_destroy (&s->dep);
    for (int i = 0; i < s->pub_count; i++)
        free (s->pubs [i]);
    free (s->auditor);
}

//  Run publishers for warmup + duration; the confirm rate in the measured
//  part. Also the broker's CPU share then.
typedef struct {
    double rate;
    double broker_cpu;          //  fraction of one core
    double bench_cpu;
    double machine_cpu;         //  cores busy, every process (bench_util.h)
    uint64_t errors;
    double acks_rate;           //  with members: ACKED/s
} tput_t;

static tput_t
s_throughput_run (setup_t *s, int publishers, uint32_t window, size_t size,
                  members_t *members, const char *perf_label)
{
    static int run_no;
    run_no++;
    atomic_int phase = PH_SETUP;
    atomic_uint_fast64_t confirms = 0;
    pub_t pubs [8];
    pthread_t threads [8];
    for (int i = 0; i < publishers; i++) {
        pubs [i] = (pub_t) { .dep = s->dep, .cert = s->pubs [i], .size = size,
                             .window = window, .phase = &phase, .confirms = &confirms };
        snprintf (pubs [i].prefix, sizeof pubs [i].prefix, "t%d.%d.", run_no, i);
        pthread_create (&threads [i], NULL, s_pub_thread, &pubs [i]);
    }
    for (int i = 0; i < publishers; i++)
        while (!atomic_load (&pubs [i].ready))
            bench_sleep_ns (1000000);
    atomic_store (&phase, PH_RUN);
    bench_sleep_ns ((int64_t) (opt.warmup * 1e9));
    if (perf_label)
        s_perf_start (s->dep, perf_label);
    uint64_t c0 = atomic_load (&confirms);
    uint64_t a0 = members ? atomic_load (&members->acked) : 0;
    double cpu0 = s_proc_cpu (s->dep->pid), self0 = s_self_cpu ();
    double machine0 = bench_machine_cpu ();
    int64_t t0 = bench_now_ns ();
    bench_sleep_ns ((int64_t) (opt.duration * 1e9));
    uint64_t c1 = atomic_load (&confirms);
    uint64_t a1 = members ? atomic_load (&members->acked) : 0;
    int64_t t1 = bench_now_ns ();
    double cpu1 = s_proc_cpu (s->dep->pid), self1 = s_self_cpu ();
    double machine1 = bench_machine_cpu ();
    s_perf_stop (s->dep);
    atomic_store (&phase, PH_STOP);
    tput_t out = { 0 };
    for (int i = 0; i < publishers; i++) {
        pthread_join (threads [i], NULL);
        out.errors += atomic_load (&pubs [i].errors);
    }
    double secs = s_secs (t1 - t0);
    out.rate = (double) (c1 - c0) / secs;
    out.acks_rate = (double) (a1 - a0) / secs;
    out.broker_cpu = (cpu1 - cpu0) / secs;
    out.bench_cpu = (self1 - self0) / secs;
    out.machine_cpu = (machine1 - machine0) / secs;
    if (out.errors)
        s_note ("warning: %llu publishes refused\n", (unsigned long long) out.errors);
    return out;
}

//  --------------------------------------------------------------------------
//  Open-loop latency: messages sent on a fixed schedule; latency from the
//  scheduled time to the confirm.

typedef struct {
    double p50, p99, p999, max, mean;
    double offered, achieved;
    uint64_t lost;
    double broker_cpu;
} lat_t;

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

static lat_t
s_latency_run (setup_t *s, double rate, size_t size, const char *perf_label)
{
    static int run_no;
    run_no++;
    body_t *body = malloc (sizeof *body);
    s_body_make (body, size);
    sgmq_client_t *client = s_client (s->dep, s->pubs [0]);
    void *sock = sgmq_client_socket (client);
    int fd = sgmq_client_fd (client);
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    uint64_t warm = (uint64_t) (rate * opt.warmup);
    uint64_t total = warm + (uint64_t) (rate * opt.duration);
    if (total < 1 || warm >= total)
        bench_die ("latency: the duration holds no message at %.0f/s", rate);
    int64_t *sched = malloc (sizeof (int64_t) * total);
    int64_t *lat = malloc (sizeof (int64_t) * total);
    uint64_t lat_count = 0, confirmed = 0;
    //  Attaching perf stalls this thread: do it before the schedule starts
    //  (it records the warm-up too).
    if (perf_label)
        s_perf_start (s->dep, perf_label);
    double interval = 1e9 / rate;
    int64_t start = bench_now_ns () + 10000000;
    for (uint64_t i = 0; i < total; i++)
        sched [i] = start + (int64_t) ((double) i * interval);
    char prefix [24];
    snprintf (prefix, sizeof prefix, "l%d.", run_no);
    size_t prefix_len = strlen (prefix);
    uint64_t next = 0;
    sgmq_error_t error;
    sgmq_confirm_t confirm;
    double cpu0 = 0;
    int64_t last_confirm = 0, first_measured = sched [warm < total ? warm : 0];
    bool perf_on = false;
    int64_t give_up = sched [total - 1] + 30LL * 1000000000;
    while (confirmed < total && bench_now_ns () < give_up) {
        int64_t now = bench_now_ns ();
        if (!perf_on && next >= warm) {
            perf_on = true;
            cpu0 = s_proc_cpu (s->dep->pid);
        }
        bool sent = false;
        while (next < total && sched [next] <= now) {
            char ref [64];
            snprintf (ref, sizeof ref, "%s%llu", prefix, (unsigned long long) next);
            if (sgmq_client_publish_send (client, ref, &body->body, &error))
                bench_die ("publish: %s", error.reason);
            next++;
            sent = true;
        }
        //  Collect confirms: _wait (0) flushes what was queued and takes
        //  what is decoded; _wait (1) reads a frame the socket has.
        int timeout = 0;
        while (sgmq_client_in_flight (client) > 0 || timeout == 0) {
            if (timeout == 1 && !(zsock_events (sock) & ZMQ_POLLIN))
                break;
            if (sgmq_client_publish_wait (client, timeout, &confirm, &error)) {
                if (timeout == 1)
                    break;
                timeout = 1;
                continue;
            }
            timeout = 0;
            int64_t at = bench_now_ns ();
            confirmed++;
            if (error.code) {
                s_note ("refused: %d %s\n", error.code, error.reason);
                continue;
            }
            uint64_t index = strtoull (confirm.ref + prefix_len, NULL, 10);
            if (index < total && index >= warm) {
                lat [lat_count++] = at - sched [index];
                last_confirm = at;
            }
        }
        (void) sent;
        //  Sleep until the next send or the socket wakes us.
        if (confirmed < total) {
            int64_t wake = next < total ? sched [next] : bench_now_ns () + 5000000;
            int64_t left = wake - bench_now_ns ();
            if (left > 0 && !(zsock_events (sock) & ZMQ_POLLIN)) {
                struct timespec ts = { (time_t) (left / 1000000000), (long) (left % 1000000000) };
                struct pollfd p = { fd, POLLIN, 0 };
                ppoll (&p, 1, &ts, NULL);
            }
        }
    }
    double cpu1 = s_proc_cpu (s->dep->pid);
    s_perf_stop (s->dep);
    lat_t out = { 0 };
    out.offered = rate;
    out.lost = total - confirmed;
    double measured_secs = s_secs ((last_confirm ? last_confirm : bench_now_ns ()) - first_measured);
    out.achieved = measured_secs > 0 ? (double) lat_count / measured_secs : 0;
    out.broker_cpu = measured_secs > 0 ? (cpu1 - cpu0) / measured_secs : 0;
    if (lat_count) {
        qsort (lat, lat_count, sizeof lat [0], s_cmp_i64);
        double sum = 0;
        for (uint64_t i = 0; i < lat_count; i++)
            sum += (double) lat [i];
        out.mean = sum / (double) lat_count / 1e6;
        out.p50 = (double) lat [(size_t) ((double) lat_count * 0.50)] / 1e6;
        out.p99 = (double) lat [(size_t) ((double) lat_count * 0.99)] / 1e6;
        out.p999 = (double) lat [(size_t) ((double) lat_count * 0.999)] / 1e6;
        out.max = (double) lat [lat_count - 1] / 1e6;
    }
    if (out.lost)
        s_note ("warning: %llu of %llu publishes not confirmed\n",
                (unsigned long long) out.lost, (unsigned long long) total);
    sgmq_client_destroy (&client);
    free (sched);
    free (lat);
    free (body);
    return out;
}

static void
s_record_latency (const char *shape, size_t size, const char *param, const lat_t *l)
{
    s_record (shape, size, param, "p50", "ms", l->p50);
    s_record (shape, size, param, "p99", "ms", l->p99);
    s_record (shape, size, param, "p99.9", "ms", l->p999);
    s_record (shape, size, param, "max", "ms", l->max);
    s_record (shape, size, param, "achieved", "msg/s", l->achieved);
    s_record (shape, size, param, "broker_cpu", "cores", l->broker_cpu);
}

//  --------------------------------------------------------------------------
//  Load N messages at full speed (2 publishers, window 1000 each).

static double
s_load (setup_t *s, uint64_t count, size_t size)
{
    atomic_int phase = PH_SETUP;
    atomic_uint_fast64_t confirms = 0;
    int publishers = s->pub_count >= 2 ? 2 : 1;
    pub_t pubs [2];
    pthread_t threads [2];
    static int load_no;
    load_no++;
    for (int i = 0; i < publishers; i++) {
        uint64_t share = count / (uint64_t) publishers + (i == 0 ? count % (uint64_t) publishers : 0);
        pubs [i] = (pub_t) { .dep = s->dep, .cert = s->pubs [i], .size = size,
                             .window = 1000, .limit = share, .phase = &phase,
                             .confirms = &confirms };
        snprintf (pubs [i].prefix, sizeof pubs [i].prefix, "load%d.%d.", load_no, i);
        pthread_create (&threads [i], NULL, s_pub_thread, &pubs [i]);
    }
    for (int i = 0; i < publishers; i++)
        while (!atomic_load (&pubs [i].ready))
            bench_sleep_ns (1000000);
    int64_t t0 = bench_now_ns ();
    atomic_store (&phase, PH_RUN);
    int64_t last_note = t0;
    while (atomic_load (&confirms) < count) {
        bench_sleep_ns (50000000);
        if (bench_now_ns () - last_note > 30LL * 1000000000) {
            last_note = bench_now_ns ();
            uint64_t done = atomic_load (&confirms);
            s_note ("    loading: %llu of %llu (%.0f/s)\n", (unsigned long long) done,
                    (unsigned long long) count, (double) done / s_secs (last_note - t0));
        }
    }
    int64_t t1 = bench_now_ns ();
    atomic_store (&phase, PH_STOP);
    for (int i = 0; i < publishers; i++)
        pthread_join (threads [i], NULL);
    return (double) count / s_secs (t1 - t0);
}

//  --------------------------------------------------------------------------
//  Shapes

static void
s_shape_throughput (size_t size)
{
    struct { int pubs; uint32_t window; const char *param; } cases [] = {
        { 1, 1000, "1 pub x window 1000" }, { 8, 100, "8 pubs x window 100" }
    };
    for (size_t c = 0; c < 2; c++) {
        for (int run = 0; run < opt.runs; run++) {
            setup_t s = s_setup ("tput", 8, 1, false);
            s_dep_start (s.dep);
            char label [64];
            snprintf (label, sizeof label, "throughput-%zu-%dpub", size, cases [c].pubs);
            tput_t t = s_throughput_run (&s, cases [c].pubs, cases [c].window, size, NULL,
                                         run == 0 ? label : NULL);
            s_record ("throughput", size, cases [c].param, "confirmed", "msg/s", t.rate);
            s_record ("throughput", size, cases [c].param, "broker_cpu", "cores", t.broker_cpu);
            s_record ("throughput", size, cases [c].param, "bench_cpu", "cores", t.bench_cpu);
            s_record ("throughput", size, cases [c].param, "machine_cpu", "cores", t.machine_cpu);
            s_record ("throughput", size, cases [c].param, "broker_peak_rss", "MiB",
                      (double) s_proc_kib (s.dep->pid, "VmHWM:") / 1024);
            s_setup_destroy (&s);
        }
    }
}

static void
s_shape_latency (size_t size)
{
    double rates [] = { 2000, 10000 };
    for (size_t r = 0; r < 2; r++) {
        char param [48];
        snprintf (param, sizeof param, "%.0f/s offered", rates [r]);
        for (int run = 0; run < opt.runs; run++) {
            setup_t s = s_setup ("lat", 1, 1, false);
            s_dep_start (s.dep);
            char label [64];
            snprintf (label, sizeof label, "latency-%zu-%.0f", size, rates [r]);
            lat_t l = s_latency_run (&s, rates [r], size, run == 0 ? label : NULL);
            s_record_latency ("latency", size, param, &l);
            s_setup_destroy (&s);
        }
    }
}

//  Closed loop: one publish at a time, each waiting for its confirm.
static void
s_shape_rtt (size_t size)
{
    for (int run = 0; run < opt.runs; run++) {
        setup_t s = s_setup ("rtt", 1, 1, false);
        s_dep_start (s.dep);
        body_t *body = malloc (sizeof *body);
        s_body_make (body, size);
        sgmq_client_t *client = s_client (s.dep, s.pubs [0]);
        size_t count = 2000;
        int64_t *lat = malloc (sizeof (int64_t) * count);
        sgmq_confirm_t confirm;
        sgmq_error_t error;
        int64_t t0 = bench_now_ns ();
        for (size_t i = 0; i < count; i++) {
            char ref [32];
            snprintf (ref, sizeof ref, "rtt.%zu", i);
            int64_t a = bench_now_ns ();
            if (sgmq_client_publish (client, ref, &body->body, &confirm, &error))
                bench_die ("publish: %s", error.reason);
            lat [i] = bench_now_ns () - a;
        }
        double secs = s_secs (bench_now_ns () - t0);
        qsort (lat, count, sizeof lat [0], s_cmp_i64);
        s_record ("rtt", size, "1 publish at a time", "p50", "ms", (double) lat [count / 2] / 1e6);
        s_record ("rtt", size, "1 publish at a time", "p99", "ms",
                  (double) lat [count * 99 / 100] / 1e6);
        s_record ("rtt", size, "1 publish at a time", "rate", "msg/s", (double) count / secs);
        sgmq_client_destroy (&client);
        free (lat);
        free (body);
        s_setup_destroy (&s);
    }
}

static void
s_shape_fanout (size_t size)
{
    for (int run = 0; run < opt.runs; run++) {
        setup_t s = s_setup ("fanout", 1, 0, false);
        members_t *members = s_members_new (s.dep, 10, 10, false, opt.member_window);
        s_dep_start (s.dep);
        s_members_start (members);
        char label [64];
        snprintf (label, sizeof label, "fanout-%zu", size);
        tput_t t = s_throughput_run (&s, 1, 1000, size, members, run == 0 ? label : NULL);
        s_record ("fanout", size, "1 pub -> 10 members", "acked", "deliveries/s", t.acks_rate);
        s_record ("fanout", size, "1 pub -> 10 members", "published", "msg/s", t.rate);
        s_record ("fanout", size, "1 pub -> 10 members", "broker_cpu", "cores", t.broker_cpu);
        s_record ("fanout", size, "1 pub -> 10 members", "machine_cpu", "cores", t.machine_cpu);
        s_members_stop (members);
        s_members_destroy (&members);
        s_setup_destroy (&s);
    }
}

//  Replay `from`..head as an auditor; messages per second. With `verify`,
//  sgmq_client_verify (the whole chain and the signed checkpoint).
static double
s_replay_run (setup_t *s, uint64_t from, uint64_t expect, bool verify)
{
    sgmq_client_t *client = s_client (s->dep, s->auditor);
    sgmq_error_t error;
    int64_t t0 = bench_now_ns ();
    uint64_t count = 0;
    if (verify) {
        sgmq_verify_t report;
        if (sgmq_client_verify (client, s->dep->signing_pk, &report, NULL, NULL, &error))
            bench_die ("verify: %d %s", error.code, error.reason);
        if (!report.intact)
            bench_die ("verify: chain NOT intact: %s", report.reason);
        count = report.count;
    }
    else {
        sgmq_replay_query_t query = { .from = from };
        sgmq_replay_t *replay = sgmq_client_replay (client, &query, &error);
        if (!replay)
            bench_die ("replay: %s", error.reason);
        const sgmq_replay_item_t *item;
        int rc;
        uint8_t prev [32], hash [32];
        bool first = true;
        while ((rc = sgmq_replay_next (replay, &item, &error)) == 1) {
            //  Check each link (the first item's predecessor is not here).
            if (!first && memcmp (item->prev, prev, 32))
                bench_die ("replay: chain broken at %llu", (unsigned long long) item->seq);
            sgmq_chain_hash (item->prev, item, hash);
            if (memcmp (hash, item->hash, 32))
                bench_die ("replay: hash mismatch at %llu", (unsigned long long) item->seq);
            memcpy (prev, hash, 32);
            first = false;
            count++;
        }
        if (rc < 0)
            bench_die ("replay: %d %s", error.code, error.reason);
        sgmq_replay_destroy (&replay);
    }
    int64_t t1 = bench_now_ns ();
    sgmq_client_destroy (&client);
    if (count < expect)
        bench_die ("replay: %llu items, expected %llu", (unsigned long long) count,
               (unsigned long long) expect);
    return (double) count / s_secs (t1 - t0);
}

static void
s_shape_replay (size_t size)
{
    setup_t s = s_setup ("replay", 2, 1, true);
    s_dep_start (s.dep);
    s_note ("  loading %llu messages of %zu B\n", (unsigned long long) opt.replay_count, size);
    double load = s_load (&s, opt.replay_count, size);
    s_record ("replay", size, "load (2 pubs x 1000)", "confirmed", "msg/s", load);
    char param [48];
    snprintf (param, sizeof param, "%llu msgs, verified", (unsigned long long) opt.replay_count);
    for (int run = 0; run < opt.runs; run++) {
        char label [64];
        snprintf (label, sizeof label, "replay-%zu", size);
        if (run == 0)
            s_perf_start (s.dep, label);
        double cpu0 = s_proc_cpu (s.dep->pid), self0 = s_self_cpu ();
        int64_t t0 = bench_now_ns ();
        double rate = s_replay_run (&s, 0, opt.replay_count, true);
        double secs = s_secs (bench_now_ns () - t0);
        double cpu = (s_proc_cpu (s.dep->pid) - cpu0) / secs;
        double self = (s_self_cpu () - self0) / secs;
        s_perf_stop (s.dep);
        s_record ("replay", size, param, "streamed", "msg/s", rate);
        s_record ("replay", size, param, "broker_cpu", "cores", cpu);
        s_record ("replay", size, param, "auditor_cpu", "cores", self);
    }
    s_record ("replay", size, param, "broker_peak_rss", "MiB",
              (double) s_proc_kib (s.dep->pid, "VmHWM:") / 1024);
    s_setup_destroy (&s);
}

//  10 members take `rss_messages` each; one of them stalled or not. The
//  highest RSS sampled while they do, and the broker's peak.
static void
s_rss_run (size_t size, bool stalled, double *rss_mib, double *anon_mib, double *hwm_mib,
           double *secs)
{
    setup_t s = s_setup ("rss", 1, 0, false);
    members_t *members = s_members_new (s.dep, 10, 10, stalled, opt.member_window);
    s_dep_start (s.dep);
    s_members_start (members);
    atomic_int phase = PH_SETUP;
    atomic_uint_fast64_t confirms = 0;
    pub_t pub = { .dep = s.dep, .cert = s.pubs [0], .size = size, .window = 1000,
                  .limit = opt.rss_messages, .phase = &phase, .confirms = &confirms };
    snprintf (pub.prefix, sizeof pub.prefix, "rss.");
    pthread_t thread;
    pthread_create (&thread, NULL, s_pub_thread, &pub);
    while (!atomic_load (&pub.ready))
        bench_sleep_ns (1000000);
    long rss_max = 0, anon_max = 0;
    uint64_t want = opt.rss_messages * 9 + (stalled ? 0 : opt.rss_messages);
    int64_t t0 = bench_now_ns ();
    atomic_store (&phase, PH_RUN);
    int64_t deadline = t0 + 1800LL * 1000000000;
    while (atomic_load (&members->acked) < want && bench_now_ns () < deadline) {
        bench_sleep_ns (100000000);
        long rss = s_proc_kib (s.dep->pid, "VmRSS:");
        if (rss > rss_max)
            rss_max = rss;
        long anon = s_proc_kib (s.dep->pid, "RssAnon:");
        if (anon > anon_max)
            anon_max = anon;
    }
    *secs = s_secs (bench_now_ns () - t0);
    if (atomic_load (&members->acked) < want)
        s_note ("warning: only %llu of %llu acks in 30 min\n",
                (unsigned long long) atomic_load (&members->acked), (unsigned long long) want);
    atomic_store (&phase, PH_STOP);
    pthread_join (thread, NULL);
    *rss_mib = (double) rss_max / 1024;
    *anon_mib = (double) anon_max / 1024;
    *hwm_mib = (double) s_proc_kib (s.dep->pid, "VmHWM:") / 1024;
    s_members_stop (members);
    s_members_destroy (&members);
    s_setup_destroy (&s);
}

static void
s_shape_rss (size_t size)
{
    char param [48];
    snprintf (param, sizeof param, "10 members, %llu msgs", (unsigned long long) opt.rss_messages);
    for (int run = 0; run < opt.runs; run++) {
        double rss, anon, hwm, secs, rss_s, anon_s, hwm_s, secs_s;
        s_rss_run (size, false, &rss, &anon, &hwm, &secs);
        s_rss_run (size, true, &rss_s, &anon_s, &hwm_s, &secs_s);
        s_record ("rss", size, param, "rss_unstalled", "MiB", rss);
        s_record ("rss", size, param, "rss_one_stalled", "MiB", rss_s);
        s_record ("rss", size, param, "rss_delta", "MiB", rss_s - rss);
        //  RSS counts the LMDB map's pages (file-backed, page cache): the
        //  anonymous part is the broker's own memory.
        s_record ("rss", size, param, "anon_unstalled", "MiB", anon);
        s_record ("rss", size, param, "anon_one_stalled", "MiB", anon_s);
        s_record ("rss", size, param, "anon_delta", "MiB", anon_s - anon);
        s_record ("rss", size, param, "peak_rss", "MiB", hwm > hwm_s ? hwm : hwm_s);
        s_record ("rss", size, param, "acked_unstalled", "deliveries/s",
                  (double) opt.rss_messages * 10 / secs);
        s_record ("rss", size, param, "acked_stalled", "deliveries/s",
                  (double) opt.rss_messages * 9 / secs_s);
    }
}

static void
s_shape_scale_members (void)
{
    size_t size = 1024;
    for (int p = 0; p < opt.member_points; p++) {
        int n = opt.members [p];
        int active = n < 10 ? n : 10;
        char param [48];
        snprintf (param, sizeof param, "%d members", n);
        s_note ("  %d connected members (%d acking)\n", n, active);
        setup_t s = s_setup ("members", 1, 0, false);
        members_t *members = s_members_new (s.dep, n, active, false, opt.member_window);
        s_dep_start (s.dep);
        int64_t t0 = bench_now_ns ();
        s_members_start (members);
        s_record ("scale-members", size, param, "connect_all", "s", s_secs (bench_now_ns () - t0));
        s_record ("scale-members", size, param, "rss_idle", "MiB",
                  (double) s_proc_kib (s.dep->pid, "VmRSS:") / 1024);
        for (int run = 0; run < opt.runs; run++) {
            tput_t t = s_throughput_run (&s, 1, 1000, size, members, NULL);
            s_record ("scale-members", size, param, "confirmed", "msg/s", t.rate);
            s_record ("scale-members", size, param, "acked", "deliveries/s", t.acks_rate);
            lat_t l = s_latency_run (&s, 2000, size, NULL);
            s_record ("scale-members", size, param, "p50 at 2000/s", "ms", l.p50);
            s_record ("scale-members", size, param, "p99 at 2000/s", "ms", l.p99);
            //  Let the members catch up before the next run.
            bench_sleep_ns (500000000);
        }
        s_record ("scale-members", size, param, "peak_rss", "MiB",
                  (double) s_proc_kib (s.dep->pid, "VmHWM:") / 1024);
        s_members_stop (members);
        s_members_destroy (&members);
        s_setup_destroy (&s);
    }
}

static void
s_shape_scale_store (void)
{
    for (int p = 0; p < opt.store_point_count; p++) {
        uint64_t n = opt.store_points [p];
        bool biggest = p == opt.store_point_count - 1 && n >= 10000000;
        size_t load_size = biggest ? opt.store_big_size : 1024;
        //  Room: about 2 KiB on disk per 1 KiB message, 1 KiB per 128 B one.
        double need_gib = (double) n * (load_size > 512 ? 2600.0 : 1200.0) / (1024.0 * 1024 * 1024);
        struct statvfs vfs;
        statvfs (opt.tmp, &vfs);
        double free_gib = (double) vfs.f_bavail * (double) vfs.f_frsize / (1024.0 * 1024 * 1024);
        char param [48];
        snprintf (param, sizeof param, "%llu stored (%zu B)", (unsigned long long) n, load_size);
        if (free_gib < need_gib * 1.5) {
            s_note ("  skipping %s: %.1f GiB free under %s, about %.1f GiB needed\n",
                    param, free_gib, opt.tmp, need_gib);
            continue;
        }
        s_note ("  %s: loading (%.1f GiB free, about %.1f GiB needed)\n", param, free_gib, need_gib);
        setup_t s = s_setup ("store", 2, 1, true);
        s_dep_start (s.dep);
        s_record ("scale-store", load_size, param, "start_empty", "ms", s.dep->start_ms);
        double load = s_load (&s, n, load_size);
        s_record ("scale-store", load_size, param, "load", "msg/s", load);
        s_dep_stop (s.dep);
        struct stat st;
        char mdb [PATH_MAX + 32];
        snprintf (mdb, sizeof mdb, "%s/data/data.mdb", s.dep->dir);
        if (stat (mdb, &st) == 0)
            s_record ("scale-store", load_size, param, "store_file", "MiB",
                      (double) st.st_blocks * 512 / (1024 * 1024));
        //  Restart: the start-up time must not grow with the store.
        for (int run = 0; run < opt.runs; run++) {
            s_dep_start (s.dep);
            s_record ("scale-store", load_size, param, "start", "ms", s.dep->start_ms);
            if (run < opt.runs - 1)
                s_dep_stop (s.dep);
        }
        s_record ("scale-store", load_size, param, "rss_after_start", "MiB",
                  (double) s_proc_kib (s.dep->pid, "VmRSS:") / 1024);
        for (int run = 0; run < opt.runs; run++) {
            tput_t t = s_throughput_run (&s, 1, 1000, 1024, NULL, NULL);
            s_record ("scale-store", load_size, param, "confirmed (1 KiB)", "msg/s", t.rate);
            lat_t l = s_latency_run (&s, 2000, 1024, NULL);
            s_record ("scale-store", load_size, param, "p50 at 2000/s", "ms", l.p50);
            s_record ("scale-store", load_size, param, "p99 at 2000/s", "ms", l.p99);
            //  The newest 100,000 (from a seq near the head: no scan).
            uint64_t tail = 100000;
            double rate = s_replay_run (&s, n > tail ? n - tail : 1, n > tail ? tail : n, false);
            s_record ("scale-store", load_size, param, "tail replay", "msg/s", rate);
        }
        s_setup_destroy (&s);
    }
}

//  --------------------------------------------------------------------------
//  Output

static void
s_print_table (FILE *out)
{
    fprintf (out, "\nsgmq-bench: medians of %d runs (min .. max); CURVE on, bodies encrypted "
             "at rest, every confirm after the fsync\n", opt.runs);
    fprintf (out, "machine: %ld CPUs, %s; %s; %s; data dir %s (%s, %s), %.1f GiB free of "
             "%.1f GiB; %.1f GiB RAM; libzmq %s, libsodium %s; load average %s; %s\n",
             s_machine.nproc, s_machine.cpu, s_machine.kernel, s_machine.os, opt.tmp,
             s_machine.fs, s_machine.mount, s_machine.disk_free_gib,
             s_machine.disk_total_gib, s_machine.mem_gib, s_machine.zmq, s_machine.sodium,
             s_machine.load, s_machine.date);
    fprintf (out, "%-13s %6s  %-24s %-18s %14s %14s %14s %s\n", "shape", "body", "case",
             "figure", "median", "min", "max", "unit");
    for (int i = 0; i < s_result_count; i++) {
        const result_t *r = &s_results [i];
        double median, lo, hi;
        s_stats (r, &median, &lo, &hi);
        fprintf (out, "%-13s %6zu  %-24s %-18s %14.3f %14.3f %14.3f %s\n", r->shape, r->size,
                 r->param, r->metric, median, lo, hi, r->unit);
    }
}

static void
s_json_str (FILE *out, const char *text)
{
    fputc ('"', out);
    for (const char *c = text; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf (out, "\\%c", *c);
        else
        if ((unsigned char) *c < 0x20)
            fprintf (out, "\\u%04x", *c);
        else
            fputc (*c, out);
    }
    fputc ('"', out);
}

static void
s_write_json (const char *path)
{
    FILE *out = strcmp (path, "-") == 0 ? stdout : fopen (path, "w");
    if (!out)
        bench_die ("cannot write %s", path);
    machine_t *m = &s_machine;
    fprintf (out, "{\n  \"machine\": {\"nproc\": %ld, \"cpu\": ", m->nproc);
    s_json_str (out, m->cpu);
    fprintf (out, ", \"kernel\": ");
    s_json_str (out, m->kernel);
    fprintf (out, ", \"os\": ");
    s_json_str (out, m->os);
    fprintf (out, ", \"data_dir\": ");
    s_json_str (out, opt.tmp);
    fprintf (out, ", \"fs\": ");
    s_json_str (out, m->fs);
    fprintf (out, ", \"mount\": ");
    s_json_str (out, m->mount);
    fprintf (out, ", \"disk_free_gib\": %.1f, \"disk_total_gib\": %.1f, \"mem_gib\": %.1f, "
             "\"libzmq\": \"%s\", \"libsodium\": \"%s\", \"load\": \"%s\", "
             "\"date\": \"%s\"},\n",
             m->disk_free_gib, m->disk_total_gib, m->mem_gib, m->zmq, m->sodium, m->load,
             m->date);
    fprintf (out, "  \"runs\": %d, \"duration\": %g, \"warmup\": %g,\n", opt.runs,
             opt.duration, opt.warmup);
    fprintf (out, "  \"results\": [\n");
    for (int i = 0; i < s_result_count; i++) {
        const result_t *r = &s_results [i];
        double median, lo, hi;
        s_stats (r, &median, &lo, &hi);
        fprintf (out, "    {\"shape\": ");
        s_json_str (out, r->shape);
        fprintf (out, ", \"size\": %zu, \"case\": ", r->size);
        s_json_str (out, r->param);
        fprintf (out, ", \"metric\": ");
        s_json_str (out, r->metric);
        fprintf (out, ", \"unit\": ");
        s_json_str (out, r->unit);
        fprintf (out, ", \"median\": %.6g, \"min\": %.6g, \"max\": %.6g, \"values\": [",
                 median, lo, hi);
        for (int v = 0; v < r->count; v++)
            fprintf (out, "%s%.6g", v ? ", " : "", r->values [v]);
        fprintf (out, "]}%s\n", i + 1 < s_result_count ? "," : "");
    }
    fprintf (out, "  ]\n}\n");
    if (out != stdout)
        fclose (out);
}

static void
s_usage (void)
{
    printf (
"Usage: sgmq-bench [options]\n"
"  --only LIST        shapes, comma-separated: throughput, latency, fanout, replay,\n"
"                     rss, scale-members, scale-store, or all\n"
"                     (default: throughput,latency,fanout,replay,rss)\n"
"  --sizes LIST       body sizes in bytes (default 1024,128)\n"
"  --runs N           runs per figure (default 3; medians printed)\n"
"  --duration S       measured seconds per run (default 5)\n"
"  --warmup S         unmeasured seconds before each run (default 1)\n"
"  --member-window N  members' SUBSCRIBE window (default 1000)\n"
"  --replay-count N   messages stored for the replay shape (default 200000)\n"
"  --rss-messages N   messages in the RSS shape (default 200000)\n"
"  --members LIST     scale-members points (default 1,10,100,1000)\n"
"  --store-points LIST  scale-store points (default 10000,1000000,10000000)\n"
"  --store-big-size N body size for the largest store point >= 10^7 (default 128)\n"
"  --flush N          publishers send their queued publishes every N sends\n"
"                     (default 0: libsgmq's own batching, a frame per 128)\n"
"  --tmp DIR          where deployments go (default /tmp)\n"
"  --json FILE        also write the results as JSON (- for stdout)\n"
"  --quiet            no progress on stderr\n"
"Environment: SGMQ_BROKER_BIN, SGMQ_CLI_BIN override the binaries;\n"
"SGMQ_BENCH_PERF=DIR profiles the broker (perf record -g) in each shape's first run;\n"
"SGMQ_BENCH_KEEP=1 keeps the deployments.\n");
}

static int
s_parse_list (const char *text, uint64_t *out, int max)
{
    int count = 0;
    char *copy = strdup (text), *save = NULL;
    for (char *w = strtok_r (copy, ",", &save); w && count < max; w = strtok_r (NULL, ",", &save))
        out [count++] = (uint64_t) strtod (w, NULL);
    free (copy);
    return count;
}

int
main (int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv [i];
        const char *v = i + 1 < argc ? argv [i + 1] : NULL;
        uint64_t list [8];
        if (strcmp (a, "--help") == 0 || strcmp (a, "-h") == 0) {
            s_usage ();
            return 0;
        }
        else
        if (strcmp (a, "--quiet") == 0) {
            opt.quiet = true;
            continue;
        }
        if (!v)
            bench_die ("%s needs a value (see --help)", a);
        i++;
        if (strcmp (a, "--only") == 0)
            snprintf (opt.only, sizeof opt.only, "%s", v);
        else
        if (strcmp (a, "--sizes") == 0) {
            opt.size_count = s_parse_list (v, list, 4);
            for (int k = 0; k < opt.size_count; k++)
                opt.sizes [k] = (size_t) list [k];
        }
        else
        if (strcmp (a, "--flush") == 0)
            opt.flush = (uint32_t) atoi (v);
        else
        if (strcmp (a, "--runs") == 0)
            opt.runs = atoi (v);
        else
        if (strcmp (a, "--duration") == 0)
            opt.duration = atof (v);
        else
        if (strcmp (a, "--warmup") == 0)
            opt.warmup = atof (v);
        else
        if (strcmp (a, "--member-window") == 0)
            opt.member_window = (uint32_t) atoi (v);
        else
        if (strcmp (a, "--replay-count") == 0)
            opt.replay_count = (uint64_t) strtod (v, NULL);
        else
        if (strcmp (a, "--rss-messages") == 0)
            opt.rss_messages = (uint64_t) strtod (v, NULL);
        else
        if (strcmp (a, "--members") == 0) {
            opt.member_points = s_parse_list (v, list, 8);
            for (int k = 0; k < opt.member_points; k++)
                opt.members [k] = (int) list [k];
        }
        else
        if (strcmp (a, "--store-points") == 0)
            opt.store_point_count = s_parse_list (v, opt.store_points, 8);
        else
        if (strcmp (a, "--store-big-size") == 0)
            opt.store_big_size = (size_t) atoi (v);
        else
        if (strcmp (a, "--tmp") == 0)
            opt.tmp = v;
        else
        if (strcmp (a, "--json") == 0)
            opt.json = v;
        else
            bench_die ("unknown option %s (see --help)", a);
    }
    if (opt.runs < 1 || opt.runs > MAX_RUNS)
        bench_die ("--runs must be 1..%d", MAX_RUNS);
    for (int k = 0; k < opt.member_points; k++)
        if (opt.members [k] < 1 || opt.members [k] > MAX_MEMBERS)
            bench_die ("--members: 1..%d", MAX_MEMBERS);
    if (getenv ("SGMQ_BROKER_BIN"))
        s_broker_bin = getenv ("SGMQ_BROKER_BIN");
    if (getenv ("SGMQ_CLI_BIN"))
        s_cli_bin = getenv ("SGMQ_CLI_BIN");
    s_perf_dir = getenv ("SGMQ_BENCH_PERF");
    if (sodium_init () < 0)
        bench_die ("libsodium");
    signal (SIGPIPE, SIG_IGN);
    atexit (s_live_stop);
    signal (SIGINT, s_live_signal);
    signal (SIGTERM, s_live_signal);
    signal (SIGHUP, s_live_signal);
    //  1,000 members: sockets and descriptors, here and in the broker
    //  (which inherits the limit).
    struct rlimit rl;
    if (getrlimit (RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit (RLIMIT_NOFILE, &rl);
    }
    zsys_set_max_sockets (0);
    zsys_set_linger (100);
    zsys_handler_set (NULL);
    s_machine_read (opt.tmp);
    s_note ("sgmq-bench: %ld CPUs, %s, %s, %s (%s), %.1f GiB free\n", s_machine.nproc,
            s_machine.cpu, s_machine.kernel, opt.tmp, s_machine.fs, s_machine.disk_free_gib);
    int64_t started = bench_now_ns ();
    for (int k = 0; k < opt.size_count; k++) {
        size_t size = opt.sizes [k];
        if (s_wanted ("throughput")) {
            s_note ("throughput, %zu B\n", size);
            s_shape_throughput (size);
        }
        if (s_wanted ("latency")) {
            s_note ("latency, %zu B\n", size);
            s_shape_latency (size);
        }
        if (s_wanted ("rtt")) {
            s_note ("rtt, %zu B\n", size);
            s_shape_rtt (size);
        }
        if (s_wanted ("fanout")) {
            s_note ("fanout, %zu B\n", size);
            s_shape_fanout (size);
        }
        if (s_wanted ("replay")) {
            s_note ("replay, %zu B\n", size);
            s_shape_replay (size);
        }
        if (s_wanted ("rss") && size == opt.sizes [0]) {
            s_note ("rss, %zu B\n", size);
            s_shape_rss (size);
        }
    }
    if (s_wanted ("scale-members")) {
        s_note ("scale-members\n");
        s_shape_scale_members ();
    }
    if (s_wanted ("scale-store")) {
        s_note ("scale-store\n");
        s_shape_scale_store ();
    }
    s_note ("done in %.0f s\n", s_secs (bench_now_ns () - started));
    s_print_table (stdout);
    if (opt.json)
        s_write_json (opt.json);
    zsys_shutdown ();
    return 0;
}
