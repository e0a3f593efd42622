/*  sgmq-broker: parse the command line, check the deployment, run the
    broker until SIGINT or SIGTERM. Everything else is in sgmq_broker. */
#include "sgmq_broker.h"

#include <czmq.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

//  Exit codes: 0 clean stop; 1 the deployment or the broker failed;
//  2 usage error.
#define S_EXIT_FAILED 1
#define S_EXIT_USAGE  2

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: sgmq-broker --config DIR/sgmq.cfg [--check-config]\n"
        "       sgmq-broker --version | --help\n"
        "Runs the sgmq broker of the deployment that DIR/sgmq.cfg describes\n"
        "(make one with `sgmq init DIR`). --check-config checks the config,\n"
        "certificates, key files and store, then exits (0: all good).\n"
        "Stops cleanly on SIGINT or SIGTERM.\n");
}

int
main (int argc, char *argv [])
{
    const char *config = NULL;
    bool check = false;
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
    if (sodium_init () < 0) {
        fprintf (stderr, "sgmq-broker: libsodium failed to start\n");
        return S_EXIT_FAILED;
    }
    //  We handle SIGINT/SIGTERM ourselves (a self-pipe in the loop).
    zsys_handler_set (NULL);
    char error [SGMQ_BROKER_ERROR_SIZE];
    if (check) {
        if (sgmq_broker_check (config, error)) {
            fprintf (stderr, "sgmq-broker: %s\n", error);
            return S_EXIT_FAILED;
        }
        printf ("sgmq-broker: %s: ok\n", config);
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
