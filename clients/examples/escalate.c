/*  escalate - a police case system raises an escalation through libsgmq.

    The smallest complete client: connect with the system's own CURVE
    certificate, raise one escalation on behalf of a sub-group (the broker
    sends it to the Executive's members; the Executive's response goes to
    the Executive and the sub-group), and wait for the confirm,
    which the broker sends only once the escalation is on disk.

    Build it against the installed library (see the Makefile):

        make                    # cc escalate.c $(pkg-config --cflags --libs sgmq)

    and run it with the broker and certificates named as for `sgmq`:

        SGMQ_BROKER=tcp://broker.example:7800 \
        SGMQ_CERT=police.cert_secret \
        SGMQ_SERVER_CERT=/srv/sgmq/broker.cert \
        ./escalate [GROUP]      # GROUP: exploitation by default

    It prints the escalation's sequence number and exits 0; or says why
    the broker refused it, or could not be asked, and exits 1 (2 when the
    environment is incomplete).
*/
#include <sgmq_client.h>
#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DAY_MS (24ULL * 60 * 60 * 1000)

//  A required variable from the environment, or NULL (after saying so).
static const char *
s_env (const char *name)
{
    const char *value = getenv (name);
    if (value && *value)
        return value;
    fprintf (stderr, "escalate: %s is not set\n", name);
    return NULL;
}

static uint64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t) now.tv_sec * 1000 + (uint64_t) now.tv_nsec / 1000000;
}

int
main (int argc, char *argv [])
{
    const char *group = argc > 1 ? argv [1] : "exploitation";
    sgmq_client_options_t options = {
        .broker = s_env ("SGMQ_BROKER"),
        .cert = s_env ("SGMQ_CERT"),                //  our secret cert
        .server_cert = s_env ("SGMQ_SERVER_CERT"),  //  the broker's public cert
        .client = "police-case-system/escalate-example",
    };
    if (!options.broker || !options.cert || !options.server_cert)
        return 2;
    //  libsgmq's CURVE and hashing need libsodium started first.
    if (sodium_init () < 0) {
        fprintf (stderr, "escalate: libsodium failed to start\n");
        return 1;
    }
    sgmq_error_t error;
    sgmq_client_t *client = sgmq_client_new (&options, &error);
    if (!client) {
        fprintf (stderr, "escalate: cannot connect to %s: %s (%d)\n",
                 options.broker, error.reason, error.code);
        return 1;
    }
    //  Who we are comes from the broker's registry, not from us.
    printf ("connected to %s as %s (%s)\n", options.broker,
            sgmq_client_name (client), sgmq_client_agency (client));

    //  No names of children or families in a message: a pseudonymous
    //  case reference only.
    sgmq_body_t body = { .kind = SGMQ_KIND_ESCALATION };
    body.u.escalation = (sgmq_escalation_t) {
        .group = group,
        .title = "Repeated missing episodes: a lead agency is needed",
        .summary = "A young person known to the exploitation panel has been "
                   "missing three times this month; the agencies involved "
                   "disagree on who leads the safety plan.",
        .severity = SGMQ_SEVERITY_HIGH,
        .requested = "The Executive to name a lead agency",
        .respond_by = s_now_ms () + 10 * DAY_MS,
        .case_ref = "MPS-CASE-0042",
    };
    //  NULL ref: the library makes one, and keeps it for retries, so a
    //  lost confirm never stores the escalation twice.
    sgmq_confirm_t confirm;
    int rc = sgmq_client_publish (client, NULL, &body, &confirm, &error);
    if (rc == 0)
        printf ("escalation raised for %s: seq %llu (ref %s)\n", group,
                (unsigned long long) confirm.seq, confirm.ref);
    else
    if (sgmq_error_refused (&error))
        fprintf (stderr, "escalate: the broker refused it: %s (%d%s%s)\n",
                 error.reason, error.code, *error.field ? ", field " : "",
                 error.field);
    else
        fprintf (stderr, "escalate: no confirm from %s: %s (%d)\n",
                 options.broker, error.reason, error.code);
    sgmq_client_destroy (&client);
    return rc == 0 ? 0 : 1;
}
