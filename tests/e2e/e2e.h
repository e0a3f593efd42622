/*  e2e - what end-to-end tests need: a real deployment in a temporary
    folder (made by the real `sgmq init`), principals, the real
    `sgmq-broker` process on a free loopback port, and the real `sgmq`
    command line.

    The broker listens on a loopback port the kernel picked as free (kept
    across restarts) and the test reads the endpoint from its "ready on
    ENDPOINT" line, so there is no sleeping: every wait is a poll with a
    deadline scaled by SGMQ_TEST_SCALE. It is stopped by its PID (SIGTERM,
    then its exit code is checked) or killed (SIGKILL) when a test wants a
    crash; a broker still running when the test process exits (a failed
    test) is killed then.
*/
#ifndef SGMQ_E2E_H_INCLUDED
#define SGMQ_E2E_H_INCLUDED

#include "testutil.h"
#include "sgmq_client.h"

#include <stdbool.h>
#include <sys/types.h>

//  A deployment on disk, and its broker process when running.
typedef struct {
    char *dir;                  //  the deployment folder (removed at the end)
    char *config;               //  dir/sgmq.cfg
    char *server_cert;          //  dir/broker.cert
    char endpoint [128];        //  set once the broker is ready
    pid_t pid;                  //  0 when not running
    int pidfd;
    char *log;                  //  the broker's stderr since its last start
} e2e_t;

//  A new deployment (sgmq init) whose config has these overrides applied:
//  pairs of "section/option", "value", then NULL. The endpoint is always
//  on 127.0.0.1 (see above). Fails the test on any problem.
e2e_t *
    e2e_new (const char *tag, ...);

//  Stop the broker if running, check it exited 0, remove the folder.
void
    e2e_destroy (e2e_t **self_p);

//  Rewrite one option of the config (section/option = value).
void
    e2e_config_set (e2e_t *self, const char *path, const char *value);

//  Insert raw config lines right under the line of `section` (which
//  must exist), for nested options.
void
    e2e_config_insert (e2e_t *self, const char *section, const char *lines);

//  Make and admit a principal; returns the path of its secret cert
//  (caller frees). `groups` may be NULL.
char *
    e2e_principal (e2e_t *self, const char *file, const char *name,
                   const char *agency, const char *roles, const char *groups);

//  Start the broker and wait for its ready line. Returns 0, or -1 if it
//  exited first (its exit code in *status, stderr in the log).
int
    e2e_start (e2e_t *self, int *status);

//  SIGTERM and wait; returns the exit status (or -1 on timeout, after
//  which the broker is killed).
int
    e2e_stop (e2e_t *self);

//  SIGKILL and reap.
void
    e2e_kill (e2e_t *self);

//  Connect a client with this secret cert. NULL with `error` on failure.
sgmq_client_t *
    e2e_client (e2e_t *self, const char *cert, sgmq_error_t *error);

//  Like e2e_client but fails the test if it cannot connect.
sgmq_client_t *
    e2e_connect (e2e_t *self, const char *cert);

//  Run the sgmq command line with these arguments (NULL-terminated), the
//  broker and server cert set through SGMQ_* variables and SGMQ_CERT to
//  `cert` (may be NULL). Captures stdout and stderr (caller frees; may
//  pass NULL), feeds `input` on stdin (NULL: /dev/null). Returns the exit
//  code.
int
    e2e_cli (e2e_t *self, const char *cert, const char *input, char **out,
             char **err, ...);

//  Start the sgmq command line in the background (like e2e_cli); its
//  stdout is readable from *out_fd (caller closes). Returns its pid.
pid_t
    e2e_cli_start (e2e_t *self, const char *cert, int *out_fd, ...);

//  Read from `fd` until `count` lines have come or the deadline passes;
//  returns what was read (caller frees).
char *
    e2e_read_lines (int fd, int count, int ms);

//  Wait for a process to exit; its exit code, or -1 on timeout (it is then
//  killed).
int
    e2e_wait (pid_t pid, int ms);

//  Run a program (argv NULL-terminated) with optional input; capture as
//  above. Returns its exit code, or -1 if it could not run or timed out.
int
    e2e_run (const char *const *argv, const char *const *env, const char *input,
             char **out, char **err, int timeout_ms);

//  CPU time (user + system) a process has used so far, in clock ticks
//  (sysconf (_SC_CLK_TCK) a second).
long
    e2e_cpu_ticks (pid_t pid);

//  File descriptors a process has open (the entries of /proc/PID/fd).
int
    e2e_fd_count (pid_t pid);

//  The broker's log so far (caller frees).
char *
    e2e_log (e2e_t *self);

//  An escalation body raised by `group` (strings are the caller's; the
//  respond-by time is a week from now).
sgmq_body_t
    e2e_escalation (const char *group, const char *title);

//  Publish an escalation raised by `group`; returns its seq (fails the
//  test if refused).
uint64_t
    e2e_escalate (sgmq_client_t *client, const char *group, const char *title);

//  Publish an escalation; 0 or the error code of the refusal.
int
    e2e_escalate_code (sgmq_client_t *client, const char *group);

//  Receive one delivery within `ms` (scaled); fails the test if none.
const sgmq_delivery_t *
    e2e_recv (sgmq_client_t *client, int ms);

//  True if no delivery arrives within `ms` (scaled).
bool
    e2e_quiet (sgmq_client_t *client, int ms);

//  A sgmq_client_pending callback that counts the items into the size_t
//  at `arg`.
int
    e2e_count_item (const sgmq_pending_item_t *item, void *arg);

//  What a publisher was told: the client reference confirmed at each seq
//  and the references refused. A seq confirmed twice fails the test: it
//  would be two publishes stored as one.
typedef struct {
    char (*refs) [SGMQ_PROTO_MAX_NAME + 1];   //  by seq; "": not confirmed
    uint64_t size;
    uint64_t count;             //  confirmed
    uint64_t highest;           //  highest seq confirmed
    char (*refused) [SGMQ_PROTO_MAX_NAME + 1];
    size_t refused_count;
    uint64_t next_ref;          //  for the caller's numbering of refs
} e2e_ledger_t;

void
    e2e_ledger_confirm (e2e_ledger_t *ledger, const sgmq_confirm_t *confirm);
void
    e2e_ledger_refuse (e2e_ledger_t *ledger, const char *ref);
void
    e2e_ledger_free (e2e_ledger_t *ledger);

//  Paths of the binaries under test.
extern const char *e2e_broker_bin;
extern const char *e2e_cli_bin;

#endif
