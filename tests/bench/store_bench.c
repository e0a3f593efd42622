/*  store_bench - durable throughput of sgmq_store (a program, not a test).

    Appends per second at batch sizes 1, 10, 100 and 1000 (messages per
    synced write transaction), 1 KiB bodies, one group and one recipient
    per message, each with an idempotency reference, as the broker stores
    a publish; then acknowledgements per second at the same batch sizes.
    References grow ("ref-1", "ref-2"...), as a client's outbox ids do;
    one more shape repeats batch 1000 with random 32-hex references, the
    worst case for the idempotency index (one insert per tree page).
    For comparison, the raw LMDB ceiling on the same disk: one 1 KiB put
    per synced transaction, and 1000 puts per synced transaction.

    Each shape runs RUNS times on a fresh store in a temp directory ($TMPDIR
    or /tmp) and the median is printed, with min and max. Usage:

        store_bench [scale]     (scale multiplies the operation counts)
*/
#include "testutil.h"
#include "sgmq_store.h"

#include <lmdb.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#define RUNS        5
#define BODY_SIZE   1024
//  Operations per run for each batch size: about a second or two each on
//  the reference machine, enough transactions to smooth out sync jitter.
static const size_t s_batches [] = { 1, 10, 100, 1000 };
static const size_t s_ops [] = { 3000, 20000, 100000, 300000 };
#define SHAPES (sizeof s_batches / sizeof s_batches [0])

static uint8_t s_key [SGMQ_STORE_KEY_SIZE];
static uint8_t s_sk [SGMQ_STORE_SIGN_SK_SIZE];
static uint8_t s_body [BODY_SIZE];
static double s_scale = 1.0;

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static void
s_print (const char *what, size_t batch, double *rates)
{
    qsort (rates, RUNS, sizeof rates [0], s_cmp_double);
    printf ("%-28s batch %5zu   median %10.0f /s   (min %10.0f, max %10.0f)\n",
            what, batch, rates [RUNS / 2], rates [0], rates [RUNS - 1]);
    fflush (stdout);
}

static sgmq_store_t *
s_open (const char *dir)
{
    sgmq_store_options_t opts = {
        .storage_key = s_key, .key_id = 1, .signing_key = s_sk,
    };
    int rc;
    char why [256];
    sgmq_store_t *store = sgmq_store_open (dir, &opts, &rc, why, sizeof why);
    if (!store) {
        fprintf (stderr, "store_bench: %s\n", why);
        exit (1);
    }
    return store;
}

//  --------------------------------------------------------------------------

typedef struct {
    size_t count;
    uint64_t next_ref;
    bool random_refs;
} append_t;

static const char *s_groups [] = { "exec" };
static const char *s_recipients [] = { "chair-1" };

static int
s_append_fn (sgmq_store_txn_t *txn, void *arg)
{
    append_t *a = arg;
    char ref [40];
    uint64_t ref_no = a->next_ref;      //  fn may rerun: do not advance yet
    for (size_t i = 0; i < a->count; i++) {
        if (a->random_refs) {
            uint8_t h [16];
            uint64_t n = ref_no++;
            crypto_generichash (h, sizeof h, (const uint8_t *) &n, sizeof n,
                                NULL, 0);
            sodium_bin2hex (ref, sizeof ref, h, sizeof h);
        }
        else
            snprintf (ref, sizeof ref, "ref-%llu",
                      (unsigned long long) ref_no++);
        sgmq_store_msg_t m = {
            .sender = "police-agency", .sender_key = "", .kind = "escalation",
            .groups = s_groups, .group_count = 1,
            .recipients = s_recipients, .recipient_count = 1,
            .body = s_body, .body_size = BODY_SIZE, .ref = ref,
        };
        sgmq_store_appended_t out;
        int rc = sgmq_store_append (txn, &m, &out);
        if (rc)
            return rc;
    }
    return 0;
}

static void
s_append_many (sgmq_store_t *store, size_t total, size_t batch,
               uint64_t *next_ref, bool random_refs)
{
    for (size_t done = 0; done < total; done += batch) {
        append_t a = { .count = total - done < batch ? total - done : batch,
                       .next_ref = *next_ref, .random_refs = random_refs };
        int rc = sgmq_store_write (store, s_append_fn, &a);
        if (rc) {
            fprintf (stderr, "store_bench: write: %s\n",
                     sgmq_store_strerror (rc));
            exit (1);
        }
        *next_ref += a.count;
    }
}

typedef struct {
    uint64_t from;
    size_t count;
} ack_t;

static int
s_ack_fn (sgmq_store_txn_t *txn, void *arg)
{
    ack_t *a = arg;
    for (size_t i = 0; i < a->count; i++) {
        sgmq_store_acked_t acked;
        int rc = sgmq_store_ack (txn, "chair-1", "KEYchair1", a->from + i,
                                 &acked);
        if (rc)
            return rc;
    }
    return 0;
}

static void
s_bench_store (void)
{
    for (size_t s = 0; s < SHAPES; s++) {
        size_t batch = s_batches [s];
        size_t ops = (size_t) ((double) s_ops [s] * s_scale);
        ops = ops < batch ? batch : ops - ops % batch;
        double append_rates [RUNS], ack_rates [RUNS];
        for (int run = 0; run < RUNS; run++) {
            char *dir = testutil_tmpdir ("store-bench");
            sgmq_store_t *store = s_open (dir);
            uint64_t ref = 1;
            int64_t start = testutil_now_ms ();
            s_append_many (store, ops, batch, &ref, false);
            int64_t ms = testutil_now_ms () - start;
            append_rates [run] = (double) ops * 1000.0 / (double) (ms ? ms : 1);
            start = testutil_now_ms ();
            for (size_t done = 0; done < ops; done += batch) {
                ack_t a = { .from = done + 1, .count = batch };
                int rc = sgmq_store_write (store, s_ack_fn, &a);
                if (rc) {
                    fprintf (stderr, "store_bench: ack: %s\n",
                             sgmq_store_strerror (rc));
                    exit (1);
                }
            }
            ms = testutil_now_ms () - start;
            ack_rates [run] = (double) ops * 1000.0 / (double) (ms ? ms : 1);
            sgmq_store_close (&store);
            testutil_rmtree (dir);
            free (dir);
        }
        s_print ("sgmq_store appends", batch, append_rates);
        s_print ("sgmq_store acks", batch, ack_rates);
    }
    //  The same batch-1000 appends with random references.
    size_t batch = 1000;
    size_t ops = (size_t) ((double) s_ops [SHAPES - 1] * s_scale);
    ops = ops < batch ? batch : ops - ops % batch;
    double rates [RUNS];
    for (int run = 0; run < RUNS; run++) {
        char *dir = testutil_tmpdir ("store-bench");
        sgmq_store_t *store = s_open (dir);
        uint64_t ref = 1;
        int64_t start = testutil_now_ms ();
        s_append_many (store, ops, batch, &ref, true);
        int64_t ms = testutil_now_ms () - start;
        rates [run] = (double) ops * 1000.0 / (double) (ms ? ms : 1);
        sgmq_store_close (&store);
        testutil_rmtree (dir);
        free (dir);
    }
    s_print ("appends, random refs", batch, rates);
}

//  --------------------------------------------------------------------------
//  Raw LMDB ceiling: synced txns of 1 KiB puts, nothing else.

static void
s_bench_raw (size_t batch, size_t ops)
{
    double rates [RUNS];
    for (int run = 0; run < RUNS; run++) {
        char *dir = testutil_tmpdir ("lmdb-bench");
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        if (mdb_env_create (&env) || mdb_env_set_mapsize (env, (size_t) 1 << 32)
        ||  mdb_env_open (env, dir, 0, 0600)) {
            fprintf (stderr, "store_bench: raw LMDB open failed\n");
            exit (1);
        }
        int64_t start = testutil_now_ms ();
        uint64_t key = 0;
        for (size_t done = 0; done < ops; done += batch) {
            int rc = mdb_txn_begin (env, NULL, 0, &txn);
            if (!rc)
                rc = mdb_dbi_open (txn, NULL, 0, &dbi);
            for (size_t i = 0; i < batch && !rc; i++) {
                uint8_t k [8];
                key++;
                for (int b = 0; b < 8; b++)
                    k [b] = (uint8_t) (key >> (56 - 8 * b));
                MDB_val mk = { 8, k }, mv = { BODY_SIZE, s_body };
                rc = mdb_put (txn, dbi, &mk, &mv, MDB_APPEND);
            }
            if (!rc)
                rc = mdb_txn_commit (txn);
            if (rc) {
                fprintf (stderr, "store_bench: raw: %s\n", mdb_strerror (rc));
                exit (1);
            }
        }
        int64_t ms = testutil_now_ms () - start;
        rates [run] = (double) ops * 1000.0 / (double) (ms ? ms : 1);
        mdb_env_close (env);
        testutil_rmtree (dir);
        free (dir);
    }
    s_print ("raw LMDB puts (ceiling)", batch, rates);
}

//  --------------------------------------------------------------------------

static const char *
s_fs_name (const char *path)
{
    struct statfs st;
    if (statfs (path, &st) != 0)
        return "unknown";
    switch ((unsigned long) st.f_type) {
        case 0xEF53: return "ext2/3/4";
        case 0x01021994: return "tmpfs";
        case 0x58465342: return "xfs";
        case 0x9123683E: return "btrfs";
        case 0x794C7630: return "overlayfs";
        default: return "other";
    }
}

static void
s_machine (void)
{
    char model [256] = "unknown";
    FILE *cpu = fopen ("/proc/cpuinfo", "r");
    char line [512];
    while (cpu && fgets (line, sizeof line, cpu))
        if (strncmp (line, "model name", 10) == 0) {
            char *colon = strchr (line, ':');
            if (colon)
                snprintf (model, sizeof model, "%s", colon + 2);
            model [strcspn (model, "\n")] = 0;
            break;
        }
    if (cpu)
        fclose (cpu);
    struct utsname un;
    uname (&un);
    const char *tmp = getenv ("TMPDIR");
    tmp = tmp && *tmp ? tmp : "/tmp";
    printf ("machine: %ld cpus, %s, %s %s; temp dir %s on %s\n",
            sysconf (_SC_NPROCESSORS_ONLN), model, un.sysname, un.release,
            tmp, s_fs_name (tmp));
    printf ("method: %d runs per shape on a fresh store, median (min, max); "
            "%d-byte bodies; every commit synced\n\n", RUNS, BODY_SIZE);
}

int
main (int argc, char *argv [])
{
    if (argc > 1)
        s_scale = atof (argv [1]) > 0 ? atof (argv [1]) : 1.0;
    if (sodium_init () < 0)
        return 1;
    uint8_t pk [SGMQ_STORE_SIGN_PK_SIZE];
    randombytes_buf (s_key, sizeof s_key);
    crypto_sign_keypair (pk, s_sk);
    randombytes_buf (s_body, sizeof s_body);
    s_machine ();
    s_bench_raw (1, (size_t) (3000 * s_scale));
    s_bench_raw (1000, (size_t) (300000 * s_scale));
    s_bench_store ();
    return 0;
}
