/*  =========================================================================
    sgmq_config - a deployment's configuration (DIR/sgmq.cfg, ZPL)

    One table in sgmq_config.c lists every option: section, name, type,
    default, bounds. Parsing, validation, defaults and the documented
    example config (broker/sgmq.cfg, shipped and used by `sgmq init`) all
    follow from it. The whole file is checked before anything uses it;
    every error names file:line and the problem, in one line.

    Paths in the file are relative to the file's own folder.

    Durations are written "<n><unit>": ms, s, m, h, d (calendar days) or
    wd (working days: Monday to Friday, less the holidays listed in the
    config). Safeguarding timescales are set in working days.
    =========================================================================
*/
#ifndef SGMQ_CONFIG_H_INCLUDED
#define SGMQ_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SGMQ_CONFIG_ERROR_SIZE  512
#define SGMQ_CONFIG_MAX_GROUPS  64
#define SGMQ_CONFIG_MAX_HOLIDAYS 1000
#define SGMQ_CONFIG_MAX_RULES   64

//  Options with a value. Paths are returned resolved; durations in ms or
//  working days (see sgmq_config_deadline).
typedef enum {
    //  section "sgmq"
    SGMQ_OPT_ENDPOINT,          //  string: where the broker binds
    SGMQ_OPT_CERT,              //  path: broker secret cert
    SGMQ_OPT_CERTS,             //  path: folder of admitted public certs
    SGMQ_OPT_DATA,              //  path: LMDB store folder
    SGMQ_OPT_STORAGE_KEY,       //  path
    SGMQ_OPT_SIGNING_KEY,       //  path
    SGMQ_OPT_LOG_LEVEL,         //  enum: error, warning, info, debug
    //  section "limits"
    SGMQ_OPT_MAX_FRAME,         //  int: bytes
    SGMQ_OPT_SESSIONS_PER_KEY,  //  int
    SGMQ_OPT_MAX_SESSIONS,      //  int
    SGMQ_OPT_WINDOW,            //  int: default and largest delivery window
    SGMQ_OPT_HEARTBEAT,         //  duration: client ping interval
    SGMQ_OPT_SESSION_TIMEOUT,   //  duration: silence that ends a session
    SGMQ_OPT_MAP_SIZE_MAX,      //  int: bytes the store may grow to
    SGMQ_OPT_MAX_MEMORY,        //  int: heap growth (bytes) past which every connection goes
    //  section "deadlines"
    SGMQ_OPT_ACK_BY,            //  duration: any delivery is overdue after
    SGMQ_OPT_ESCALATION_ACK_BY, //  duration: Executive must ack an escalation
    SGMQ_OPT_REPEAT,            //  duration: between repeated reminders
    SGMQ_OPT_LEARNING_SESSION,  //  duration: learning session due after
    SGMQ_OPT_REFLECTION,        //  duration: reflection session due after
    SGMQ_OPT_LEARNING_NOTICE,   //  duration: a session's first reminder before
    SGMQ_OPT_REMIND_HOURS,      //  string: "9-17", the hours reminders go out
    SGMQ_OPT_REDELIVER_FIRST,   //  duration: first redelivery
    SGMQ_OPT_REDELIVER_MAX,     //  duration: backoff ceiling
    SGMQ_OPT_MAX_TRIES,         //  int: deliveries before flagging
    SGMQ_OPT_CHECKPOINT,        //  duration: sign the chain head this often
    //  section "rules"
    SGMQ_OPT_LEARNING_GROUPS,   //  list: groups whose members publish learning
    SGMQ_OPT_COUNT_
} sgmq_opt_t;

typedef struct {
    uint64_t amount;            //  ms, working days, or calendar years
    bool working_days;
    bool years;                 //  the same UK date and time, years on
    bool days;                  //  written in days (amount in ms): as a
                                //  deadline, the same UK time, dates on
} sgmq_duration_t;

typedef struct _sgmq_config_t sgmq_config_t;

//  Load and check `path`. NULL with "path:line: problem" in `error`
//  (SGMQ_CONFIG_ERROR_SIZE bytes).
sgmq_config_t *
    sgmq_config_load (const char *path, char *error);

//  Parse config text; `origin` names it in errors and `base` is the folder
//  relative paths resolve against. For tests and the fuzzer.
sgmq_config_t *
    sgmq_config_parse (const char *text, size_t size, const char *origin,
                       const char *base, char *error);

void
    sgmq_config_destroy (sgmq_config_t **self_p);

//  The file it was loaded from.
const char *
    sgmq_config_origin (const sgmq_config_t *self);

//  String, path, enum or list option as text (lists comma-separated).
const char *
    sgmq_config_str (const sgmq_config_t *self, sgmq_opt_t option);

//  Integer option.
int64_t
    sgmq_config_int (const sgmq_config_t *self, sgmq_opt_t option);

//  Duration option. For ms-only options (heartbeat...), use .amount.
sgmq_duration_t
    sgmq_config_duration (const sgmq_config_t *self, sgmq_opt_t option);

//  `from` plus the duration option, counting working days and holidays
//  when it is given in working days, calendar years when in years and
//  calendar days (UK dates) when in days.
uint64_t
    sgmq_config_deadline (const sgmq_config_t *self, sgmq_opt_t option,
                          uint64_t from);

//  The time the duration option (in ms or days, not working days or
//  years) before `due`: UK calendar days when in days; 0 if before 1970.
uint64_t
    sgmq_config_before (const sgmq_config_t *self, sgmq_opt_t option,
                        uint64_t due);

//  Groups: ids in file order, display names.
size_t      sgmq_config_group_count (const sgmq_config_t *self);
const char *sgmq_config_group_id    (const sgmq_config_t *self, size_t index);
const char *sgmq_config_group_name  (const sgmq_config_t *self, size_t index);
const char *const *sgmq_config_group_ids (const sgmq_config_t *self);
bool        sgmq_config_group_known (const sgmq_config_t *self, const char *id);
//  Display name of a group id, or the id itself if unknown.
const char *sgmq_config_group_display (const sgmq_config_t *self, const char *id);

//  True if `group` is one of the learning-groups.
bool
    sgmq_config_learning_group (const sgmq_config_t *self, const char *group);

//  True if the rules let a publisher of `agency` raise escalations on
//  behalf of `group` without being in it (rules/escalate-for).
bool
    sgmq_config_may_escalate_for (const sgmq_config_t *self,
                                  const char *agency, const char *group);

//  Holidays as sorted day numbers (days since the epoch).
const int64_t *
    sgmq_config_holidays (const sgmq_config_t *self, size_t *count);

//  When a reminder due at `at` goes out: `at` within deadlines/remind-hours
//  on a working day, else the start of the next such hours (UTC ms).
uint64_t
    sgmq_config_remind_at (const sgmq_config_t *self, uint64_t at);

//  Parse a duration ("30s", "2wd", "1y"). 0, or -1 if malformed.
int
    sgmq_config_parse_duration (const char *text, sgmq_duration_t *duration);

//  The default config text shipped with sgmq (broker/sgmq.cfg), with
//  `endpoint` substituted when not NULL. Caller frees.
char *
    sgmq_config_default_text (const char *endpoint);

#ifdef __cplusplus
}
#endif

#endif
