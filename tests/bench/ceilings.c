/*  sgmq-ceilings - what this machine can do at best, and the peers' drivers
    (a program, not a test; tests/bench/compare.sh runs it).

    Ceilings (no broker at all):
      disk DIR SECS                 synced 4 KiB writes: pwrite + fdatasync,
                                    overwriting a preallocated file, and
                                    appending to a growing one; rate, p50, p99
      disk-lat DIR RATE SECS        the same overwriting write, open loop at
                                    RATE a second: p50/p99/p99.9 from each
                                    write's scheduled time (what a publish at
                                    that rate waits for at least)
      lmdb DIR PUTS SECS            LMDB synced commits/s with PUTS 1 KiB
                                    puts (MDB_APPEND) per transaction
      curve SIZE WINDOW SECS        raw CZMQ DEALER -> ROUTER echo with CURVE,
                                    one message per frame, WINDOW in flight

    Peers (their servers started by compare.sh on loopback, no TLS):
      redis-pub PORT SIZE CONNS WINDOW SECS    XADD, acked/s
      redis-lat PORT SIZE RATE SECS            XADD open loop: p50/p99/p99.9
      redis-fanout PORT SIZE MEMBERS SECS      1 XADD publisher (window 1000),
                                    MEMBERS consumer groups of one consumer
                                    each (so each gets everything), each
                                    XREADGROUP COUNT 1000 then XACK: acks/s
      redis-replay PORT SIZE COUNT             load COUNT, then XRANGE pages
      nats-pub PORT SIZE CONNS WINDOW SECS     JetStream publish with ack, acked/s
      nats-lat PORT SIZE RATE SECS             the same, open loop

    Every command prints one JSON object on one line. Latency runs are open
    loop: sends follow a fixed schedule and latency counts from the
    scheduled time. The Redis and NATS clients are written here on plain
    sockets (hiredis's reader parses Redis replies), with the same
    pipelining as sgmq's client, so the client is not the bottleneck
    (compare.sh prints their CPU use).
*/
#define _GNU_SOURCE
#include "bench_util.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *bench_program = "sgmq-ceilings";

#define WARMUP_NS   1000000000LL

static double
s_cpu_self (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6
         + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}

//  The cores this client and the whole machine (servers included) used
//  over a measured window.
typedef struct {
    double self0, machine0;
    double client, machine;
} cpu_t;

static void
s_cpu_start (cpu_t *cpu)
{
    cpu->self0 = s_cpu_self ();
    cpu->machine0 = bench_machine_cpu ();
}

static void
s_cpu_stop (cpu_t *cpu, double secs)
{
    cpu->client = (s_cpu_self () - cpu->self0) / secs;
    cpu->machine = (bench_machine_cpu () - cpu->machine0) / secs;
}

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double p50, p99, p999, max;
} pct_t;

static pct_t
s_pct (int64_t *lat, size_t count)
{
    pct_t p = { 0 };
    if (!count)
        return p;
    qsort (lat, count, sizeof lat [0], s_cmp_i64);
    p.p50 = (double) lat [(size_t) ((double) count * 0.50)] / 1e6;
    p.p99 = (double) lat [(size_t) ((double) count * 0.99)] / 1e6;
    p.p999 = (double) lat [(size_t) ((double) count * 0.999)] / 1e6;
    p.max = (double) lat [count - 1] / 1e6;
    return p;
}

//  --------------------------------------------------------------------------
//  disk

#define DISK_BLOCKS 16384        //  64 MiB, overwritten round robin

static uint8_t s_block [4096];

//  A file for synced 4 KiB writes in dir; preallocated unless appending.
static int
s_disk_file (const char *dir, bool append, char *path, size_t path_size)
{
    snprintf (path, path_size, "%s/sgmq-ceiling-disk-%d", dir, (int) getpid ());
    int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | (append ? O_APPEND : 0), 0600);
    if (fd < 0)
        bench_die ("%s: %s", path, strerror (errno));
    randombytes_buf (s_block, sizeof s_block);
    if (!append) {
        for (size_t i = 0; i < DISK_BLOCKS; i++)
            if (pwrite (fd, s_block, sizeof s_block, (off_t) (i * sizeof s_block))
                != sizeof s_block)
                bench_die ("write: %s", strerror (errno));
        fsync (fd);
    }
    return fd;
}

//  The n-th synced 4 KiB write.
static void
s_disk_write (int fd, bool append, size_t n)
{
    ssize_t done = append ? write (fd, s_block, sizeof s_block)
                          : pwrite (fd, s_block, sizeof s_block,
                                    (off_t) ((n % DISK_BLOCKS) * sizeof s_block));
    if (done != (ssize_t) sizeof s_block || fdatasync (fd))
        bench_die ("write: %s", strerror (errno));
}

static void
s_disk_one (const char *dir, double secs, bool append)
{
    char path [4096];
    int fd = s_disk_file (dir, append, path, sizeof path);
    size_t cap = 1 << 20, count = 0;
    int64_t *lat = malloc (sizeof (int64_t) * cap);
    int64_t t0 = bench_now_ns (), end = t0 + (int64_t) (secs * 1e9);
    while (bench_now_ns () < end && count < cap) {
        int64_t a = bench_now_ns ();
        s_disk_write (fd, append, count);
        lat [count++] = bench_now_ns () - a;
    }
    double elapsed = (double) (bench_now_ns () - t0) / 1e9;
    pct_t p = s_pct (lat, count);
    printf ("{\"shape\": \"disk\", \"case\": \"%s\", \"rate\": %.1f, \"p50_ms\": %.4f, "
            "\"p99_ms\": %.4f, \"p999_ms\": %.4f}\n", append ? "append" : "overwrite",
            (double) count / elapsed, p.p50, p.p99, p.p999);
    fflush (stdout);
    close (fd);
    unlink (path);
    free (lat);
}

static void
s_disk (const char *dir, double secs)
{
    s_disk_one (dir, secs, false);
    s_disk_one (dir, secs, true);
}

//  Open loop, like the latency shapes: the writes follow a fixed schedule
//  (sleeping between them, as a broker at that rate idles), and a write
//  that is late makes the next ones late, counted from their scheduled
//  times. Back to back (s_disk_one) the disk and the CPUs never idle; at
//  a low rate each write also pays for waking them, and a slow stretch of
//  the disk holds many writes instead of a few.
static void
s_disk_lat (const char *dir, double rate, double secs)
{
    if (!(rate > 0 && rate <= 1e6 && secs > 0 && secs <= 3600))
        bench_die ("disk-lat: RATE in (0, 10^6], SECS in (0, 3600]");
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    char path [4096];
    int fd = s_disk_file (dir, false, path, sizeof path);
    uint64_t warm = (uint64_t) rate, total = warm + (uint64_t) (rate * secs);
    int64_t *lat = malloc (sizeof (int64_t) * total);
    if (!lat)
        bench_die ("out of memory");
    int64_t start = bench_now_ns () + 10000000;
    size_t count = 0;
    for (uint64_t i = 0; i < total; i++) {
        int64_t due = start + (int64_t) ((double) i * 1e9 / rate);
        bench_sleep_ns (due - bench_now_ns ());
        s_disk_write (fd, false, i);
        if (i >= warm)
            lat [count++] = bench_now_ns () - due;
    }
    pct_t p = s_pct (lat, count);
    printf ("{\"shape\": \"disk-lat\", \"case\": \"%.0f/s offered\", \"p50_ms\": %.4f, "
            "\"p99_ms\": %.4f, \"p999_ms\": %.4f, \"max_ms\": %.4f}\n",
            rate, p.p50, p.p99, p.p999, p.max);
    fflush (stdout);
    close (fd);
    unlink (path);
    free (lat);
}

//  --------------------------------------------------------------------------
//  lmdb

static void
s_lmdb (const char *parent, size_t puts, double secs)
{
    char dir [4096];
    snprintf (dir, sizeof dir, "%s/sgmq-ceiling-lmdb-%d", parent, (int) getpid ());
    if (mkdir (dir, 0700))
        bench_die ("%s: %s", dir, strerror (errno));
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    mdb_env_create (&env);
    mdb_env_set_mapsize (env, (size_t) 8 << 30);
    if (mdb_env_open (env, dir, 0, 0600))
        bench_die ("mdb_env_open %s", dir);
    mdb_txn_begin (env, NULL, 0, &txn);
    mdb_dbi_open (txn, NULL, 0, &dbi);
    mdb_txn_commit (txn);
    static uint8_t value [1024];
    randombytes_buf (value, sizeof value);
    uint64_t key_no = 0, commits = 0;
    //  Each commit's time (begin to synced), for its percentiles: what a
    //  lone publish waits for at least, however fast the rest.
    size_t cap = 1 << 20;
    int64_t *lat = malloc (sizeof (int64_t) * cap);
    if (!lat)
        bench_die ("out of memory");
    int64_t t0 = bench_now_ns (), end = t0 + (int64_t) (secs * 1e9);
    while (bench_now_ns () < end) {
        int64_t begun = bench_now_ns ();
        if (mdb_txn_begin (env, NULL, 0, &txn))
            bench_die ("txn");
        for (size_t i = 0; i < puts; i++) {
            uint8_t key_bytes [8];
            uint64_t k = ++key_no;
            for (int b = 0; b < 8; b++)
                key_bytes [b] = (uint8_t) (k >> (56 - 8 * b));
            MDB_val key = { 8, key_bytes }, data = { sizeof value, value };
            int rc = mdb_put (txn, dbi, &key, &data, MDB_APPEND);
            if (rc)
                bench_die ("mdb_put: %s", mdb_strerror (rc));
        }
        int rc = mdb_txn_commit (txn);
        if (rc)
            bench_die ("commit: %s", mdb_strerror (rc));
        if (commits < cap)
            lat [commits] = bench_now_ns () - begun;
        commits++;
    }
    double elapsed = (double) (bench_now_ns () - t0) / 1e9;
    pct_t p = s_pct (lat, commits < cap ? commits : cap);
    printf ("{\"shape\": \"lmdb\", \"case\": \"%zu puts/txn\", \"commits\": %.1f, "
            "\"puts\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"p999_ms\": %.4f}\n",
            puts, (double) commits / elapsed, (double) key_no / elapsed,
            p.p50, p.p99, p.p999);
    free (lat);
    fflush (stdout);
    mdb_env_close (env);
    char path [4200];
    snprintf (path, sizeof path, "%s/data.mdb", dir);
    unlink (path);
    snprintf (path, sizeof path, "%s/lock.mdb", dir);
    unlink (path);
    rmdir (dir);
}

//  --------------------------------------------------------------------------
//  curve: DEALER -> ROUTER echo over CURVE on loopback

typedef struct {
    zsock_t *router;
    atomic_int stop;
} echo_t;

static void *
s_echo_thread (void *arg)
{
    echo_t *e = arg;
    void *handle = zsock_resolve (e->router);
    while (!atomic_load (&e->stop)) {
        zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        for (int n = 0; n < 1000; n++) {
            zmq_msg_t id, body;
            zmq_msg_init (&id);
            if (zmq_msg_recv (&id, handle, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&id);
                break;
            }
            zmq_msg_init (&body);
            zmq_msg_recv (&body, handle, 0);
            zmq_msg_send (&id, handle, ZMQ_SNDMORE);
            zmq_msg_send (&body, handle, 0);
        }
    }
    return NULL;
}

static void
s_curve (size_t size, int window, double secs)
{
    zcert_t *server = zcert_new (), *client = zcert_new ();
    echo_t echo = { .router = zsock_new (ZMQ_ROUTER) };
    zsock_set_curve_server (echo.router, 1);
    zcert_apply (server, echo.router);
    zsock_set_sndhwm (echo.router, 0);
    zsock_set_rcvhwm (echo.router, 0);
    int port = zsock_bind (echo.router, "tcp://127.0.0.1:*");
    if (port < 0)
        bench_die ("bind");
    pthread_t thread;
    pthread_create (&thread, NULL, s_echo_thread, &echo);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zcert_apply (client, dealer);
    zsock_set_curve_serverkey (dealer, zcert_public_txt (server));
    zsock_set_sndhwm (dealer, 0);
    zsock_set_rcvhwm (dealer, 0);
    zsock_connect (dealer, "tcp://127.0.0.1:%d", port);
    void *handle = zsock_resolve (dealer);
    uint8_t *payload = malloc (size);
    randombytes_buf (payload, size);
    //  First round trip: the handshake.
    zmq_send (handle, payload, size, 0);
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    zmq_msg_recv (&msg, handle, 0);
    for (int i = 0; i < window; i++)
        zmq_send (handle, payload, size, 0);
    uint64_t done = 0, counted_from = 0;
    int64_t t0 = bench_now_ns (), measure = t0 + WARMUP_NS, end = measure + (int64_t) (secs * 1e9);
    double cpu0 = 0;
    bool measuring = false;
    int64_t now = t0;
    while (now < end) {
        if (zmq_msg_recv (&msg, handle, 0) < 0)
            bench_die ("recv");
        done++;
        zmq_send (handle, payload, size, 0);
        if ((done & 255) == 0) {
            now = bench_now_ns ();
            if (!measuring && now >= measure) {
                measuring = true;
                counted_from = done;
                measure = now;
                cpu0 = s_cpu_self ();
            }
        }
    }
    double elapsed = (double) (now - measure) / 1e9;
    printf ("{\"shape\": \"curve\", \"size\": %zu, \"case\": \"1 DEALER, %d in flight\", "
            "\"rate\": %.1f, \"cpu\": %.2f}\n", size, window,
            (double) (done - counted_from) / elapsed, (s_cpu_self () - cpu0) / elapsed);
    fflush (stdout);
    zmq_msg_close (&msg);
    atomic_store (&echo.stop, 1);
    pthread_join (thread, NULL);
    zsock_destroy (&dealer);
    zsock_destroy (&echo.router);
    zcert_destroy (&server);
    zcert_destroy (&client);
    free (payload);
}

//  --------------------------------------------------------------------------
//  A plain TCP connection with buffers

typedef struct {
    int fd;
    char *out;
    size_t out_len, out_cap;
    char *in;
    size_t in_len, in_cap, in_pos;
} conn_t;

static conn_t *
s_conn (int port)
{
    conn_t *c = calloc (1, sizeof *c);
    c->fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                .sin_addr.s_addr = htonl (0x7f000001) };
    if (connect (c->fd, (struct sockaddr *) &addr, sizeof addr))
        bench_die ("connect 127.0.0.1:%d: %s", port, strerror (errno));
    int one = 1;
    setsockopt (c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->out_cap = c->in_cap = 1 << 20;
    c->out = malloc (c->out_cap);
    c->in = malloc (c->in_cap);
    return c;
}

static void
s_conn_put (conn_t *c, const void *data, size_t size)
{
    if (c->out_len + size > c->out_cap) {
        while (c->out_len + size > c->out_cap)
            c->out_cap *= 2;
        c->out = realloc (c->out, c->out_cap);
    }
    memcpy (c->out + c->out_len, data, size);
    c->out_len += size;
}

static void
__attribute__ ((format (printf, 2, 3)))
s_conn_printf (conn_t *c, const char *format, ...)
{
    char line [1024];
    va_list args;
    va_start (args, format);
    int len = vsnprintf (line, sizeof line, format, args);
    va_end (args);
    s_conn_put (c, line, (size_t) len);
}

static void
s_conn_flush (conn_t *c)
{
    size_t done = 0;
    while (done < c->out_len) {
        ssize_t n = write (c->fd, c->out + done, c->out_len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            bench_die ("write: %s", strerror (errno));
        done += (size_t) n;
    }
    c->out_len = 0;
}

//  Read what is there (blocking for at least one byte). Bytes before
//  in_pos are dropped first.
static void
s_conn_fill (conn_t *c)
{
    if (c->in_pos) {
        memmove (c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    if (c->in_len == c->in_cap) {
        c->in_cap *= 2;
        c->in = realloc (c->in, c->in_cap);
    }
    ssize_t n;
    do
        n = read (c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        bench_die ("read: %s", n == 0 ? "connection closed" : strerror (errno));
    c->in_len += (size_t) n;
}

static bool
s_conn_readable (conn_t *c, int64_t timeout_ns)
{
    struct pollfd p = { c->fd, POLLIN, 0 };
    struct timespec ts = { (time_t) (timeout_ns / 1000000000), (long) (timeout_ns % 1000000000) };
    return ppoll (&p, 1, timeout_ns < 0 ? NULL : &ts, NULL) > 0;
}

//  --------------------------------------------------------------------------
//  Redis (RESP, parsed by hiredis's reader)

typedef struct {
    conn_t *conn;
    redisReader *reader;
} redis_t;

static redis_t *
s_redis (int port)
{
    redis_t *r = calloc (1, sizeof *r);
    r->conn = s_conn (port);
    r->reader = redisReaderCreate ();
    return r;
}

static void
s_redis_cmd (redis_t *r, int argc, const char **argv, const size_t *lens)
{
    s_conn_printf (r->conn, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t len = lens ? lens [i] : strlen (argv [i]);
        s_conn_printf (r->conn, "$%zu\r\n", len);
        s_conn_put (r->conn, argv [i], len);
        s_conn_put (r->conn, "\r\n", 2);
    }
}

//  Next reply, reading as needed; `block` false: NULL if none is complete.
static redisReply *
s_redis_reply (redis_t *r, bool block)
{
    while (true) {
        void *reply = NULL;
        if (redisReaderGetReply (r->reader, &reply) != REDIS_OK)
            bench_die ("redis: protocol error");
        if (reply) {
            redisReply *rr = reply;
            if (rr->type == REDIS_REPLY_ERROR)
                bench_die ("redis: %s", rr->str);
            return rr;
        }
        if (!block && !s_conn_readable (r->conn, 0))
            return NULL;
        char chunk [65536];
        ssize_t n = read (r->conn->fd, chunk, sizeof chunk);
        if (n <= 0)
            bench_die ("redis: read: %s", n == 0 ? "closed" : strerror (errno));
        redisReaderFeed (r->reader, chunk, (size_t) n);
    }
}

static void
s_redis_call (redis_t *r, int argc, const char **argv)
{
    s_redis_cmd (r, argc, argv, NULL);
    s_conn_flush (r->conn);
    freeReplyObject (s_redis_reply (r, true));
}

static uint8_t *s_payload;

typedef struct {
    int port;
    size_t size;
    int window;
    char key [64];
    atomic_int *stop;
    atomic_uint_fast64_t *acked;
    uint64_t limit;
} rpub_t;

static void
s_xadd (redis_t *r, const char *key, size_t size)
{
    const char *argv [] = { "XADD", key, "*", "d", (const char *) s_payload };
    size_t lens [] = { 4, strlen (key), 1, 1, size };
    s_redis_cmd (r, 5, argv, lens);
}

static void *
s_redis_pub_thread (void *arg)
{
    rpub_t *p = arg;
    redis_t *r = s_redis (p->port);
    int in_flight = 0;
    uint64_t sent = 0;
    while (!atomic_load (p->stop)) {
        while (in_flight < p->window && (!p->limit || sent < p->limit)) {
            s_xadd (r, p->key, p->size);
            in_flight++;
            sent++;
        }
        if (!in_flight)
            break;
        s_conn_flush (r->conn);
        redisReply *reply = s_redis_reply (r, true);
        int got = 0;
        while (reply) {
            freeReplyObject (reply);
            got++;
            reply = s_redis_reply (r, false);
        }
        in_flight -= got;
        atomic_fetch_add (p->acked, (uint64_t) got);
    }
    while (in_flight-- > 0)
        freeReplyObject (s_redis_reply (r, true));
    close (r->conn->fd);
    return NULL;
}

//  Run `conns` publishers for warmup + secs; acked per second measured.
static double
s_rate_run (void *(*fn) (void *), void *args, size_t arg_size, int conns,
            atomic_int *stop, atomic_uint_fast64_t *acked, double secs, cpu_t *cpu)
{
    pthread_t threads [64];
    for (int i = 0; i < conns; i++)
        pthread_create (&threads [i], NULL, fn, (char *) args + (size_t) i * arg_size);
    bench_sleep_ns (WARMUP_NS);
    uint64_t a0 = atomic_load (acked);
    s_cpu_start (cpu);
    int64_t t0 = bench_now_ns ();
    bench_sleep_ns ((int64_t) (secs * 1e9));
    uint64_t a1 = atomic_load (acked);
    int64_t t1 = bench_now_ns ();
    s_cpu_stop (cpu, (double) (t1 - t0) / 1e9);
    atomic_store (stop, 1);
    for (int i = 0; i < conns; i++)
        pthread_join (threads [i], NULL);
    return (double) (a1 - a0) / ((double) (t1 - t0) / 1e9);
}

static void
s_redis_pub (int port, size_t size, int conns, int window, double secs)
{
    atomic_int stop = 0;
    atomic_uint_fast64_t acked = 0;
    rpub_t args [64];
    for (int i = 0; i < conns; i++) {
        args [i] = (rpub_t) { .port = port, .size = size, .window = window,
                              .stop = &stop, .acked = &acked };
        snprintf (args [i].key, sizeof args [i].key, "bench:%d:%d", (int) getpid (), i);
    }
    cpu_t cpu;
    double rate = s_rate_run (s_redis_pub_thread, args, sizeof args [0], conns, &stop,
                              &acked, secs, &cpu);
    printf ("{\"shape\": \"throughput\", \"peer\": \"redis\", \"size\": %zu, "
            "\"case\": \"%d conn x window %d\", \"rate\": %.1f, \"client_cpu\": %.2f, "
            "\"machine_cpu\": %.2f}\n", size, conns, window, rate, cpu.client, cpu.machine);
    fflush (stdout);
}

//  Open loop: send on schedule, replies in order.
static void
s_redis_lat (int port, size_t size, double rate, double secs)
{
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    redis_t *r = s_redis (port);
    char key [64];
    snprintf (key, sizeof key, "lat:%d", (int) getpid ());
    uint64_t warm = (uint64_t) rate, total = warm + (uint64_t) (rate * secs);
    int64_t *sched = malloc (sizeof (int64_t) * total);
    int64_t *lat = malloc (sizeof (int64_t) * total);
    int64_t start = bench_now_ns () + 10000000;
    for (uint64_t i = 0; i < total; i++)
        sched [i] = start + (int64_t) ((double) i * 1e9 / rate);
    uint64_t next = 0, answered = 0, count = 0;
    while (answered < total) {
        int64_t now = bench_now_ns ();
        while (next < total && sched [next] <= now) {
            s_xadd (r, key, size);
            next++;
        }
        s_conn_flush (r->conn);
        redisReply *reply;
        while ((reply = s_redis_reply (r, false))) {
            freeReplyObject (reply);
            int64_t at = bench_now_ns ();
            if (answered >= warm)
                lat [count++] = at - sched [answered];
            answered++;
        }
        int64_t wait = next < total ? sched [next] - bench_now_ns () : 5000000;
        if (wait > 0)
            s_conn_readable (r->conn, wait);
    }
    pct_t p = s_pct (lat, count);
    printf ("{\"shape\": \"latency\", \"peer\": \"redis\", \"size\": %zu, \"case\": "
            "\"%.0f/s offered\", \"p50\": %.4f, \"p99\": %.4f, \"p99.9\": %.4f, "
            "\"max\": %.4f}\n", size, rate, p.p50, p.p99, p.p999, p.max);
    fflush (stdout);
    free (sched);
    free (lat);
}

typedef struct {
    int port;
    char key [64], group [32];
    atomic_int *stop;
    atomic_uint_fast64_t *acked;
} rmember_t;

static void *
s_redis_member_thread (void *arg)
{
    rmember_t *m = arg;
    redis_t *r = s_redis (m->port);
    const char *read_argv [] = { "XREADGROUP", "GROUP", m->group, "c", "COUNT", "1000",
                                 "BLOCK", "100", "STREAMS", m->key, ">" };
    s_redis_cmd (r, 11, read_argv, NULL);
    s_conn_flush (r->conn);
    const char **ack_argv = malloc (sizeof (char *) * 1004);
    char (*ids) [48] = malloc (48 * 1000);
    while (!atomic_load (m->stop)) {
        redisReply *reply = s_redis_reply (r, true);
        size_t n = 0;
        //  [[key, [[id, [f, v]], ...]]] or nil on timeout
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
            redisReply *entries = reply->element [0]->element [1];
            for (size_t i = 0; i < entries->elements && n < 1000; i++) {
                redisReply *id = entries->element [i]->element [0];
                snprintf (ids [n++], 48, "%s", id->str);
            }
        }
        freeReplyObject (reply);
        if (n) {
            ack_argv [0] = "XACK";
            ack_argv [1] = m->key;
            ack_argv [2] = m->group;
            for (size_t i = 0; i < n; i++)
                ack_argv [3 + i] = ids [i];
            s_redis_cmd (r, (int) (3 + n), ack_argv, NULL);
        }
        s_redis_cmd (r, 11, read_argv, NULL);
        s_conn_flush (r->conn);
        if (n) {
            redisReply *acked = s_redis_reply (r, true);
            atomic_fetch_add (m->acked, (uint64_t) acked->integer);
            freeReplyObject (acked);
        }
    }
    free (ack_argv);
    free (ids);
    close (r->conn->fd);
    return NULL;
}

static void
s_redis_fanout (int port, size_t size, int members, double secs)
{
    char key [64];
    snprintf (key, sizeof key, "fan:%d", (int) getpid ());
    redis_t *admin = s_redis (port);
    rmember_t margs [64];
    atomic_int stop = 0, pub_stop = 0;
    atomic_uint_fast64_t acked = 0, published = 0;
    for (int i = 0; i < members; i++) {
        margs [i] = (rmember_t) { .port = port, .stop = &stop, .acked = &acked };
        snprintf (margs [i].key, sizeof margs [i].key, "%s", key);
        snprintf (margs [i].group, sizeof margs [i].group, "g%d", i + 1);
        const char *argv [] = { "XGROUP", "CREATE", key, margs [i].group, "$", "MKSTREAM" };
        s_redis_call (admin, 6, argv);
    }
    pthread_t threads [64], pub_thread;
    for (int i = 0; i < members; i++)
        pthread_create (&threads [i], NULL, s_redis_member_thread, &margs [i]);
    rpub_t pub = { .port = port, .size = size, .window = 1000, .stop = &pub_stop,
                   .acked = &published };
    snprintf (pub.key, sizeof pub.key, "%s", key);
    pthread_create (&pub_thread, NULL, s_redis_pub_thread, &pub);
    bench_sleep_ns (WARMUP_NS);
    uint64_t a0 = atomic_load (&acked), p0 = atomic_load (&published);
    cpu_t cpu;
    s_cpu_start (&cpu);
    int64_t t0 = bench_now_ns ();
    bench_sleep_ns ((int64_t) (secs * 1e9));
    uint64_t a1 = atomic_load (&acked), p1 = atomic_load (&published);
    int64_t t1 = bench_now_ns ();
    double elapsed = (double) (t1 - t0) / 1e9;
    s_cpu_stop (&cpu, elapsed);
    atomic_store (&pub_stop, 1);
    pthread_join (pub_thread, NULL);
    atomic_store (&stop, 1);
    for (int i = 0; i < members; i++)
        pthread_join (threads [i], NULL);
    printf ("{\"shape\": \"fanout\", \"peer\": \"redis\", \"size\": %zu, \"case\": "
            "\"1 pub -> %d groups\", \"rate\": %.1f, \"published\": %.1f, "
            "\"client_cpu\": %.2f, \"machine_cpu\": %.2f}\n", size, members,
            (double) (a1 - a0) / elapsed, (double) (p1 - p0) / elapsed, cpu.client,
            cpu.machine);
    fflush (stdout);
    const char *del [] = { "DEL", key };
    s_redis_call (admin, 2, del);
}

static void
s_redis_replay (int port, size_t size, uint64_t count)
{
    char key [64];
    snprintf (key, sizeof key, "replay:%d", (int) getpid ());
    atomic_int stop = 0;
    atomic_uint_fast64_t acked = 0;
    rpub_t pub = { .port = port, .size = size, .window = 1000, .stop = &stop,
                   .acked = &acked, .limit = count };
    snprintf (pub.key, sizeof pub.key, "%s", key);
    int64_t t0 = bench_now_ns ();
    s_redis_pub_thread (&pub);
    double load = (double) count / ((double) (bench_now_ns () - t0) / 1e9);
    redis_t *r = s_redis (port);
    char from [64] = "-";
    uint64_t got = 0;
    t0 = bench_now_ns ();
    while (true) {
        const char *argv [] = { "XRANGE", key, from, "+", "COUNT", "1000" };
        s_redis_cmd (r, 6, argv, NULL);
        s_conn_flush (r->conn);
        redisReply *reply = s_redis_reply (r, true);
        size_t n = reply->elements;
        if (n)
            snprintf (from, sizeof from, "(%s", reply->element [n - 1]->element [0]->str);
        got += n;
        freeReplyObject (reply);
        if (n < 1000)
            break;
    }
    double rate = (double) got / ((double) (bench_now_ns () - t0) / 1e9);
    printf ("{\"shape\": \"replay\", \"peer\": \"redis\", \"size\": %zu, \"case\": "
            "\"%llu msgs, XRANGE COUNT 1000, not verified\", \"rate\": %.1f, "
            "\"load\": %.1f}\n", size, (unsigned long long) got, rate, load);
    fflush (stdout);
    const char *del [] = { "DEL", key };
    s_redis_call (r, 2, del);
}

//  --------------------------------------------------------------------------
//  NATS JetStream (text protocol)

typedef struct {
    conn_t *conn;
    char stream [32];
    char inbox [32];
} nats_t;

//  One protocol line or message from the server: the MSG's subject and
//  payload, or NULL subject for other lines (PING answered here). Returns
//  false if nothing complete is buffered and `block` is false.
typedef struct {
    char subject [128];
    const char *payload;
    size_t size;
} nats_msg_t;

static bool
s_nats_next (nats_t *n, nats_msg_t *msg, bool block)
{
    conn_t *c = n->conn;
    while (true) {
        char *start = c->in + c->in_pos;
        size_t avail = c->in_len - c->in_pos;
        char *eol = avail ? memmem (start, avail, "\r\n", 2) : NULL;
        if (eol) {
            size_t line_len = (size_t) (eol - start);
            if (line_len >= 4 && strncmp (start, "MSG ", 4) == 0) {
                //  MSG <subject> <sid> [reply] <#bytes>
                char line [512];
                snprintf (line, sizeof line, "%.*s", (int) line_len, start);
                char *last = strrchr (line, ' ');
                size_t size = (size_t) strtoul (last + 1, NULL, 10);
                if (avail >= line_len + 2 + size + 2) {
                    sscanf (line + 4, "%127s", msg->subject);
                    msg->payload = eol + 2;
                    msg->size = size;
                    c->in_pos += line_len + 2 + size + 2;
                    return true;
                }
            }
            else {
                if (line_len >= 4 && strncmp (start, "PING", 4) == 0) {
                    s_conn_put (c, "PONG\r\n", 6);
                    s_conn_flush (c);
                }
                else
                if (line_len >= 4 && strncmp (start, "-ERR", 4) == 0)
                    bench_die ("nats: %.*s", (int) line_len, start);
                c->in_pos += line_len + 2;
                msg->subject [0] = 0;
                msg->payload = start;
                msg->size = line_len;
                return true;
            }
        }
        if (!block && !s_conn_readable (c, 0))
            return false;
        s_conn_fill (c);
    }
}

static nats_t *
s_nats (int port, const char *stream, int index)
{
    nats_t *n = calloc (1, sizeof *n);
    n->conn = s_conn (port);
    snprintf (n->stream, sizeof n->stream, "%s", stream);
    snprintf (n->inbox, sizeof n->inbox, "_I.%d.%d", (int) getpid (), index);
    nats_msg_t msg;
    s_nats_next (n, &msg, true);         //  INFO
    s_conn_printf (n->conn, "CONNECT {\"verbose\":false,\"pedantic\":false,"
                   "\"headers\":false,\"name\":\"sgmq-bench\"}\r\nSUB %s.* 1\r\nPING\r\n",
                   n->inbox);
    s_conn_flush (n->conn);
    while (s_nats_next (n, &msg, true))
        if (!msg.subject [0] && msg.size >= 4 && strncmp (msg.payload, "PONG", 4) == 0)
            break;
    return n;
}

//  A JetStream API request; the answer's text.
static void
s_nats_api (nats_t *n, const char *subject, const char *json)
{
    s_conn_printf (n->conn, "PUB %s %s.api %zu\r\n%s\r\n", subject, n->inbox, strlen (json), json);
    s_conn_flush (n->conn);
    nats_msg_t msg;
    while (s_nats_next (n, &msg, true))
        if (msg.subject [0])
            break;
    if (memmem (msg.payload, msg.size, "\"error\"", 7))
        bench_die ("nats: %s: %.*s", subject, (int) msg.size, msg.payload);
}

static void
s_nats_stream (nats_t *n, bool create)
{
    char subject [128], json [512];
    if (create) {
        snprintf (subject, sizeof subject, "$JS.API.STREAM.CREATE.%s", n->stream);
        snprintf (json, sizeof json, "{\"name\":\"%s\",\"subjects\":[\"%s.>\"],"
                  "\"storage\":\"file\",\"retention\":\"limits\",\"num_replicas\":1}",
                  n->stream, n->stream);
    }
    else {
        snprintf (subject, sizeof subject, "$JS.API.STREAM.DELETE.%s", n->stream);
        snprintf (json, sizeof json, "{}");
    }
    s_nats_api (n, subject, json);
}

static void
s_nats_pub1 (nats_t *n, uint64_t index, size_t size)
{
    s_conn_printf (n->conn, "PUB %s.x %s.%llu %zu\r\n", n->stream, n->inbox,
                   (unsigned long long) index, size);
    s_conn_put (n->conn, s_payload, size);
    s_conn_put (n->conn, "\r\n", 2);
}

//  An ack: its index, or -1 if not an ack (or a JetStream error).
static int64_t
s_nats_ack (nats_t *n, const nats_msg_t *msg)
{
    size_t prefix = strlen (n->inbox);
    if (!msg->subject [0] || strncmp (msg->subject, n->inbox, prefix) != 0)
        return -1;
    if (memmem (msg->payload, msg->size, "\"error\"", 7))
        bench_die ("nats: publish refused: %.*s", (int) msg->size, msg->payload);
    return (int64_t) strtoull (msg->subject + prefix + 1, NULL, 10);
}

typedef struct {
    int port;
    size_t size;
    int window;
    int index;
    char stream [32];
    atomic_int *stop;
    atomic_uint_fast64_t *acked;
} npub_t;

static void *
s_nats_pub_thread (void *arg)
{
    npub_t *p = arg;
    nats_t *n = s_nats (p->port, p->stream, p->index);
    int in_flight = 0;
    uint64_t sent = 0;
    while (!atomic_load (p->stop)) {
        while (in_flight < p->window) {
            s_nats_pub1 (n, sent++, p->size);
            in_flight++;
        }
        s_conn_flush (n->conn);
        nats_msg_t msg;
        int got = 0;
        bool block = true;
        while (s_nats_next (n, &msg, block)) {
            if (s_nats_ack (n, &msg) >= 0) {
                got++;
                block = false;
            }
        }
        in_flight -= got;
        atomic_fetch_add (p->acked, (uint64_t) got);
    }
    //  Drain (bounded).
    int64_t deadline = bench_now_ns () + 10000000000LL;
    nats_msg_t msg;
    while (in_flight > 0 && bench_now_ns () < deadline)
        if (s_conn_readable (n->conn, 100000000) && s_nats_next (n, &msg, true)
        &&  s_nats_ack (n, &msg) >= 0)
            in_flight--;
    close (n->conn->fd);
    return NULL;
}

static void
s_nats_pub (int port, size_t size, int conns, int window, double secs)
{
    char stream [32];
    snprintf (stream, sizeof stream, "B%d", (int) getpid ());
    nats_t *admin = s_nats (port, stream, 999);
    s_nats_stream (admin, true);
    atomic_int stop = 0;
    atomic_uint_fast64_t acked = 0;
    npub_t args [64];
    for (int i = 0; i < conns; i++) {
        args [i] = (npub_t) { .port = port, .size = size, .window = window, .index = i,
                              .stop = &stop, .acked = &acked };
        snprintf (args [i].stream, sizeof args [i].stream, "%s", stream);
    }
    cpu_t cpu;
    double rate = s_rate_run (s_nats_pub_thread, args, sizeof args [0], conns, &stop,
                              &acked, secs, &cpu);
    printf ("{\"shape\": \"throughput\", \"peer\": \"nats\", \"size\": %zu, "
            "\"case\": \"%d conn x window %d\", \"rate\": %.1f, \"client_cpu\": %.2f, "
            "\"machine_cpu\": %.2f}\n", size, conns, window, rate, cpu.client, cpu.machine);
    fflush (stdout);
    s_nats_stream (admin, false);
}

static void
s_nats_lat (int port, size_t size, double rate, double secs)
{
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    char stream [32];
    snprintf (stream, sizeof stream, "L%d", (int) getpid ());
    nats_t *n = s_nats (port, stream, 0);
    s_nats_stream (n, true);
    uint64_t warm = (uint64_t) rate, total = warm + (uint64_t) (rate * secs);
    int64_t *sched = malloc (sizeof (int64_t) * total);
    int64_t *lat = malloc (sizeof (int64_t) * total);
    int64_t start = bench_now_ns () + 10000000;
    for (uint64_t i = 0; i < total; i++)
        sched [i] = start + (int64_t) ((double) i * 1e9 / rate);
    uint64_t next = 0, answered = 0, count = 0;
    int64_t give_up = sched [total - 1] + 30000000000LL;
    while (answered < total && bench_now_ns () < give_up) {
        int64_t now = bench_now_ns ();
        while (next < total && sched [next] <= now)
            s_nats_pub1 (n, next++, size);
        s_conn_flush (n->conn);
        nats_msg_t msg;
        while (s_nats_next (n, &msg, false)) {
            int64_t index = s_nats_ack (n, &msg);
            if (index < 0)
                continue;
            int64_t at = bench_now_ns ();
            if ((uint64_t) index >= warm && (uint64_t) index < total)
                lat [count++] = at - sched [index];
            answered++;
        }
        int64_t wait = next < total ? sched [next] - bench_now_ns () : 5000000;
        if (wait > 0)
            s_conn_readable (n->conn, wait);
    }
    pct_t p = s_pct (lat, count);
    printf ("{\"shape\": \"latency\", \"peer\": \"nats\", \"size\": %zu, \"case\": "
            "\"%.0f/s offered\", \"p50\": %.4f, \"p99\": %.4f, \"p99.9\": %.4f, "
            "\"max\": %.4f, \"lost\": %llu}\n", size, rate, p.p50, p.p99, p.p999, p.max,
            (unsigned long long) (total - answered));
    fflush (stdout);
    s_nats_stream (n, false);
    free (sched);
    free (lat);
}

//  --------------------------------------------------------------------------

static void
s_usage (void)
{
    fprintf (stderr,
"Usage: sgmq-ceilings COMMAND ARGS (each prints one JSON line)\n"
"  disk DIR SECS | disk-lat DIR RATE SECS | lmdb DIR PUTS SECS\n"
"  curve SIZE WINDOW SECS\n"
"  redis-pub PORT SIZE CONNS WINDOW SECS | redis-lat PORT SIZE RATE SECS\n"
"  redis-fanout PORT SIZE MEMBERS SECS | redis-replay PORT SIZE COUNT\n"
"  nats-pub PORT SIZE CONNS WINDOW SECS | nats-lat PORT SIZE RATE SECS\n");
    exit (2);
}

int
main (int argc, char **argv)
{
    if (argc < 2 || sodium_init () < 0)
        s_usage ();
    signal (SIGPIPE, SIG_IGN);
    zsys_handler_set (NULL);
    const char *cmd = argv [1];
    size_t max_size = 1 << 20;
    s_payload = malloc (max_size);
    for (size_t i = 0; i < max_size; i++)
        s_payload [i] = (uint8_t) ('a' + i % 26);
#define ARG(i) (argc > (i) ? argv [i] : (s_usage (), ""))
    if (strcmp (cmd, "disk") == 0)
        s_disk (ARG (2), atof (ARG (3)));
    else
    if (strcmp (cmd, "disk-lat") == 0)
        s_disk_lat (ARG (2), atof (ARG (3)), atof (ARG (4)));
    else
    if (strcmp (cmd, "lmdb") == 0)
        s_lmdb (ARG (2), (size_t) atoi (ARG (3)), atof (ARG (4)));
    else
    if (strcmp (cmd, "curve") == 0)
        s_curve ((size_t) atoi (ARG (2)), atoi (ARG (3)), atof (ARG (4)));
    else
    if (strcmp (cmd, "redis-pub") == 0)
        s_redis_pub (atoi (ARG (2)), (size_t) atoi (ARG (3)), atoi (ARG (4)),
                     atoi (ARG (5)), atof (ARG (6)));
    else
    if (strcmp (cmd, "redis-lat") == 0)
        s_redis_lat (atoi (ARG (2)), (size_t) atoi (ARG (3)), atof (ARG (4)), atof (ARG (5)));
    else
    if (strcmp (cmd, "redis-fanout") == 0)
        s_redis_fanout (atoi (ARG (2)), (size_t) atoi (ARG (3)), atoi (ARG (4)), atof (ARG (5)));
    else
    if (strcmp (cmd, "redis-replay") == 0)
        s_redis_replay (atoi (ARG (2)), (size_t) atoi (ARG (3)),
                        (uint64_t) strtod (ARG (4), NULL));
    else
    if (strcmp (cmd, "nats-pub") == 0)
        s_nats_pub (atoi (ARG (2)), (size_t) atoi (ARG (3)), atoi (ARG (4)),
                    atoi (ARG (5)), atof (ARG (6)));
    else
    if (strcmp (cmd, "nats-lat") == 0)
        s_nats_lat (atoi (ARG (2)), (size_t) atoi (ARG (3)), atof (ARG (4)), atof (ARG (5)));
    else
        s_usage ();
    free (s_payload);
    return 0;
}
