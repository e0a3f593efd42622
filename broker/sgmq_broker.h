/*  =========================================================================
    sgmq_broker - the sgmq daemon: sessions, routing, group commit, timers

    One thread owns everything: the CURVE ROUTER socket, the ZAP handler
    that admits keys, the registry of principals and the store (the only
    LMDB writer). Each turn of the loop drains the ready frames (bounded),
    validates and authorizes every command, applies all the writes in ONE
    store transaction, commits once (fsync), and only then sends the
    confirms and deliveries. Under load many publishes share one fsync;
    at low load a publish waits for no one. Timers (redelivery, reminders,
    registry rescans, session expiry, checkpoints) run on the same loop.

    The broker owns the calling thread while it runs; there are no locks
    because nothing is shared.
    =========================================================================
*/
#ifndef SGMQ_BROKER_H_INCLUDED
#define SGMQ_BROKER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SGMQ_BROKER_ERROR_SIZE 600
#define SGMQ_BROKER_VERSION    "sgmq/0.1.0"

typedef struct _sgmq_broker_t sgmq_broker_t;

//  Check a deployment without starting it: the config, the broker cert,
//  the key files, the certs directory and the store. If a broker is
//  running on it, the store is left alone and *running is set. With
//  `verify`, also walk the whole store's message and acknowledgement
//  chains and check every checkpoint (sgmq_store_verify; printed on
//  stdout; an error if a broker is running). 0, or -1 with a one-line
//  reason naming the file and the problem in `error`.
int
    sgmq_broker_check (const char *config_path, bool verify, bool *running,
                       char *error);

//  Load the deployment named by `config_path`, open the store, install
//  the SIGINT/SIGTERM handlers, start the ZAP handler and bind. NULL with
//  a one-line reason in `error`. Call sodium_init() first.
sgmq_broker_t *
    sgmq_broker_new (const char *config_path, char *error);

//  The endpoint actually bound (a "*" port resolved), e.g.
//  "tcp://127.0.0.1:7800".
const char *
    sgmq_broker_endpoint (sgmq_broker_t *self);

//  Serve until SIGINT or SIGTERM or sgmq_broker_stop. Returns 0 on a clean stop, -1 if the store broke.
int
    sgmq_broker_run (sgmq_broker_t *self);

//  Ask a running broker to stop after its current turn (signal-safe).
void
    sgmq_broker_stop (sgmq_broker_t *self);

//  Sign a final checkpoint, close the store and sockets, wipe keys.
//  NULL-safe; sets *self_p to NULL.
void
    sgmq_broker_destroy (sgmq_broker_t **self_p);

#ifdef __cplusplus
}
#endif

#endif
