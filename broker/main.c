/*  sgmq-broker: parse the command line, check the deployment, run the
    broker until SIGINT or SIGTERM. Everything else is in sgmq_broker. */
#include "sgmq_broker.h"
#include "sgmq_config.h"
#include "sgmq_store.h"

#include <czmq.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

//  Exit codes: 0 clean stop; 1 the deployment or the broker failed;
//  2 usage error.
#define S_EXIT_FAILED 1
#define S_EXIT_USAGE  2
//  A path we build from a configured one: PATH_MAX and a file name.
#define S_PATH_SIZE   4200

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: sgmq-broker --config DIR/sgmq.cfg [--check-config [--verify]]\n"
        "       sgmq-broker --config DIR/sgmq.cfg --backup DEST\n"
        "       sgmq-broker --version | --help\n"
        "Runs the sgmq broker of the deployment that DIR/sgmq.cfg describes\n"
        "(make one with `sgmq init DIR`). --check-config checks the config,\n"
        "certificates, key files and store, then exits (0: all good);\n"
        "with --verify (the broker stopped) it also walks the whole store:\n"
        "both hash chains, the acknowledgement records and every signed\n"
        "checkpoint (slow on a large store; 1: something is broken).\n"
        "--backup copies the store, compacted and consistent, into DEST (new,\n"
        "made mode 0700 in a folder that exists, or empty) while the broker\n"
        "runs or not, and says how to restore it. The keys and certificates\n"
        "are not in the copy (data.mdb is mode 0600).\n"
        "Stops cleanly on SIGINT or SIGTERM.\n");
}

//  --backup: a copy of the store taken beside the running broker, in this
//  other process. It needs neither the broker's data-directory lock (it
//  does not write the store) nor the keys (the bodies stay sealed), so it
//  loads only the config.
static int
s_backup (const char *config_path, const char *dest)
{
    char why [SGMQ_CONFIG_ERROR_SIZE];
    sgmq_config_t *config = sgmq_config_load (config_path, why);
    if (!config) {
        fprintf (stderr, "sgmq-broker: %s\n", why);
        return S_EXIT_FAILED;
    }
    int rc = S_EXIT_FAILED;
    const char *data = sgmq_config_str (config, SGMQ_OPT_DATA);
    //  Owner-only from the start: the copy names principals and holds
    //  sealed bodies. An existing DEST must be empty (the copy says so).
    bool created = mkdir (dest, 0700) == 0;
    if (!created && errno != EEXIST) {
        fprintf (stderr, "sgmq-broker: %s: cannot create the backup "
                 "directory: %s%s\n", dest, strerror (errno),
                 errno == ENOENT ? " (create the folder it goes in first, "
                 "e.g. install -d -m 0700 PARENT)" : "");
        goto out_destroy;
    }
    char store_why [SGMQ_CONFIG_ERROR_SIZE];
    if (sgmq_store_copy (data, dest, store_why, sizeof store_why)) {
        fprintf (stderr, "sgmq-broker: %s\n", store_why);
        if (created)
            rmdir (dest);               //  left empty by the failed copy
        goto out_destroy;
    }
    char copy [S_PATH_SIZE];
    snprintf (copy, sizeof copy, "%s/data.mdb", dest);
    struct stat st;
    long long size = stat (copy, &st) == 0 ? (long long) st.st_size : -1;
    //  `sgmq init` puts signing.pub beside the config.
    char folder [S_PATH_SIZE];
    snprintf (folder, sizeof folder, "%s", config_path);
    char *slash = strrchr (folder, '/');
    if (slash)
        *slash = 0;
    else
        snprintf (folder, sizeof folder, ".");
    printf ("sgmq-broker: backed up %s to %s (%lld bytes, compacted, mode "
            "0600, synced).\n"
            "It holds every message committed when it started, with "
            "deliveries, acks and signed checkpoints; bodies stay sealed by "
            "the storage key. The keys, certificates and config are NOT in "
            "it: back up %s separately and securely.\n"
            "Restore: stop the broker; move %s aside; copy %s into a new "
            "%s (mode 0600, owned by the broker's user); start the broker; "
            "as an auditor, run `sgmq verify --signing-pub %s/signing.pub`. "
            "See docs/operations.md.\n",
            data, copy, size, folder, data, copy, data, folder);
    rc = 0;
out_destroy:
    sgmq_config_destroy (&config);
    return rc;
}

int
main (int argc, char *argv [])
{
    //  No core file, whoever runs us: it would hold the storage and
    //  signing keys and plaintext bodies (systemd-coredump honours it too).
    struct rlimit no_core = { 0, 0 };
    setrlimit (RLIMIT_CORE, &no_core);
    const char *config = NULL;
    const char *backup = NULL;
    bool check = false, verify = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--config") == 0 && i + 1 < argc)
            config = argv [++i];
        else
        if (strncmp (argv [i], "--config=", 9) == 0)
            config = argv [i] + 9;
        else
        if (strcmp (argv [i], "--check-config") == 0)
            check = true;
        else
        if (strcmp (argv [i], "--verify") == 0)
            verify = true;
        else
        if (strcmp (argv [i], "--backup") == 0 && i + 1 < argc)
            backup = argv [++i];
        else
        if (strncmp (argv [i], "--backup=", 9) == 0)
            backup = argv [i] + 9;
        else
        if (strcmp (argv [i], "--version") == 0) {
            printf ("%s\n", SGMQ_BROKER_VERSION);
            return 0;
        }
        else
        if (strcmp (argv [i], "--help") == 0 || strcmp (argv [i], "-h") == 0) {
            s_usage (stdout);
            return 0;
        }
        else {
            fprintf (stderr, "sgmq-broker: unknown argument '%s'\n", argv [i]);
            s_usage (stderr);
            return S_EXIT_USAGE;
        }
    }
    if (!config) {
        fprintf (stderr, "sgmq-broker: --config FILE is required\n");
        s_usage (stderr);
        return S_EXIT_USAGE;
    }
    if (verify && !check) {
        fprintf (stderr, "sgmq-broker: --verify goes with --check-config\n");
        s_usage (stderr);
        return S_EXIT_USAGE;
    }
    if (backup && (check || !*backup)) {
        fprintf (stderr, "sgmq-broker: --backup takes a directory and goes "
                 "without --check-config\n");
        s_usage (stderr);
        return S_EXIT_USAGE;
    }
    if (sodium_init () < 0) {
        fprintf (stderr, "sgmq-broker: libsodium failed to start\n");
        return S_EXIT_FAILED;
    }
    //  We handle SIGINT/SIGTERM ourselves (a self-pipe in the loop).
    zsys_handler_set (NULL);
    if (backup)
        return s_backup (config, backup);
    char error [SGMQ_BROKER_ERROR_SIZE];
    if (check) {
        bool running = false;
        if (sgmq_broker_check (config, verify, &running, error)) {
            fprintf (stderr, "sgmq-broker: %s\n", error);
            return S_EXIT_FAILED;
        }
        printf ("sgmq-broker: %s: ok%s\n", config, running
                ? " (a broker is running on it: its store was not opened)" : "");
        return 0;
    }
    sgmq_broker_t *broker = sgmq_broker_new (config, error);
    if (!broker) {
        fprintf (stderr, "sgmq-broker: %s\n", error);
        zsys_shutdown ();
        return S_EXIT_FAILED;
    }
    //  Tests and scripts wait for this line; it carries the real port.
    printf ("sgmq-broker: ready on %s\n", sgmq_broker_endpoint (broker));
    fflush (stdout);
    int rc = sgmq_broker_run (broker);
    sgmq_broker_destroy (&broker);
    zsys_shutdown ();
    return rc ? S_EXIT_FAILED : 0;
}
