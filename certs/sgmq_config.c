/*  =========================================================================
    sgmq_config - the deployment configuration

    s_options below is the one list of options: parsing, bounds checking,
    defaults and the example config all come from it. Sections that are
    not simple name = value lists (groups, holidays, rules/escalate-for)
    have their own small readers. Every error carries file:line.
    =========================================================================
*/
#include "sgmq_config.h"
#include "sgmq_registry.h"
#include "sgmq_time.h"
#include "sgmq_zpl.h"
#include "sgmq_proto.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MS 1ULL
#define S_SECOND 1000ULL
#define S_MINUTE (60 * S_SECOND)
#define S_HOUR (60 * S_MINUTE)
#define S_DAY (24 * S_HOUR)
//  Deadlines past ten years are typos, not policy.
#define S_DEADLINE_MAX (3660 * S_DAY)
//  Working-day and year counts are bounded the same way (ten years).
#define S_WORKING_DAYS_MAX 2600
#define S_YEARS_MAX 10
//  Paths longer than this are not a deployment's.
#define S_PATH_MAX 4096

typedef enum { S_STRING, S_PATH, S_ENUM, S_INT, S_DURATION, S_LIST } s_type_t;

typedef struct {
    sgmq_opt_t id;
    const char *section;
    const char *name;
    s_type_t type;
    const char *fallback;       //  default, as written in the file
    int64_t min, max;           //  ints: value; durations: ms; strings: length
    const char *choices;        //  enums: comma-separated
    bool working_days;          //  durations: deadlines, "wd" and "y" allowed
} s_option_t;

static const s_option_t s_options [] = {
    { SGMQ_OPT_ENDPOINT, "sgmq", "endpoint", S_STRING, "tcp://127.0.0.1:7800", 6, 256, NULL, false },
    { SGMQ_OPT_CERT, "sgmq", "cert", S_PATH, "broker.cert_secret", 1, S_PATH_MAX, NULL, false },
    { SGMQ_OPT_CERTS, "sgmq", "certs", S_PATH, "certs", 1, S_PATH_MAX, NULL, false },
    { SGMQ_OPT_DATA, "sgmq", "data", S_PATH, "data", 1, S_PATH_MAX, NULL, false },
    { SGMQ_OPT_STORAGE_KEY, "sgmq", "storage-key", S_PATH, "storage.key", 1, S_PATH_MAX, NULL, false },
    { SGMQ_OPT_SIGNING_KEY, "sgmq", "signing-key", S_PATH, "signing.key", 1, S_PATH_MAX, NULL, false },
    { SGMQ_OPT_LOG_LEVEL, "sgmq", "log-level", S_ENUM, "info", 0, 0, "error,warning,info,debug", false },
    { SGMQ_OPT_MAX_FRAME, "limits", "max-frame", S_INT, "1048576", 2 * SGMQ_PROTO_MAX_REQUEST, SGMQ_PROTO_MAX_FRAME, NULL, false },
    { SGMQ_OPT_SESSIONS_PER_KEY, "limits", "sessions-per-key", S_INT, "16", 1, 1000, NULL, false },
    { SGMQ_OPT_MAX_SESSIONS, "limits", "max-sessions", S_INT, "10000", 1, 100000, NULL, false },
    { SGMQ_OPT_WINDOW, "limits", "window", S_INT, "100", 1, SGMQ_PROTO_MAX_WINDOW, NULL, false },
    { SGMQ_OPT_HEARTBEAT, "limits", "heartbeat", S_DURATION, "5s", 100 * S_MS, 10 * S_MINUTE, NULL, false },
    { SGMQ_OPT_SESSION_TIMEOUT, "limits", "session-timeout", S_DURATION, "15s", 300 * S_MS, S_HOUR, NULL, false },
    { SGMQ_OPT_MAP_SIZE_MAX, "limits", "map-size-max", S_INT, "1099511627776", 1 << 20, INT64_MAX, NULL, false },
    { SGMQ_OPT_MAX_MEMORY, "limits", "max-memory", S_INT, "1073741824", 16 << 20, INT64_MAX, NULL, false },
    { SGMQ_OPT_ACK_BY, "deadlines", "ack-by", S_DURATION, "5wd", S_SECOND, S_DEADLINE_MAX, NULL, true },
    { SGMQ_OPT_ESCALATION_ACK_BY, "deadlines", "escalation-ack-by", S_DURATION, "1wd", S_SECOND, S_DEADLINE_MAX, NULL, true },
    { SGMQ_OPT_REPEAT, "deadlines", "repeat", S_DURATION, "1wd", S_SECOND, S_DEADLINE_MAX, NULL, true },
    { SGMQ_OPT_LEARNING_SESSION, "deadlines", "learning-session", S_DURATION, "14d", S_SECOND, S_DEADLINE_MAX, NULL, true },
    { SGMQ_OPT_REFLECTION, "deadlines", "reflection", S_DURATION, "1y", S_SECOND, S_DEADLINE_MAX, NULL, true },
    { SGMQ_OPT_LEARNING_NOTICE, "deadlines", "learning-notice", S_DURATION, "7d", S_SECOND, S_DEADLINE_MAX, NULL, false },
    { SGMQ_OPT_REMIND_HOURS, "deadlines", "remind-hours", S_STRING, "9-17", 3, 5, NULL, false },
    { SGMQ_OPT_REDELIVER_FIRST, "deadlines", "redeliver-first", S_DURATION, "30s", 10 * S_MS, S_DAY, NULL, false },
    { SGMQ_OPT_REDELIVER_MAX, "deadlines", "redeliver-max", S_DURATION, "30m", 10 * S_MS, 7 * S_DAY, NULL, false },
    { SGMQ_OPT_MAX_TRIES, "deadlines", "max-tries", S_INT, "10", 1, 1000, NULL, false },
    { SGMQ_OPT_CHECKPOINT, "deadlines", "checkpoint", S_DURATION, "1h", S_SECOND, 7 * S_DAY, NULL, false },
    { SGMQ_OPT_LEARNING_GROUPS, "rules", "learning-groups", S_LIST,
      "rapid-review-panel,rapid-review-working-group", 0, SGMQ_CONFIG_MAX_GROUPS, NULL, false },
};
#define S_OPTION_COUNT (sizeof s_options / sizeof s_options [0])

static const char *s_sections [] = {
    "sgmq", "limits", "deadlines", "rules", "groups", "holidays"
};
#define S_SECTION_COUNT (sizeof s_sections / sizeof s_sections [0])

typedef struct {
    char *id;
    char *name;
} s_group_t;

typedef struct {
    char *agency;
    char **groups;
    size_t group_count;
} s_escalate_t;

typedef struct {
    char *text;                 //  as written (strings, paths resolved)
    int64_t number;             //  ints
    sgmq_duration_t duration;
} s_value_t;

struct _sgmq_config_t {
    char *origin;
    s_value_t values [SGMQ_OPT_COUNT_];
    s_group_t *groups;
    size_t group_count;
    const char **group_ids;     //  NULL-terminated, borrowed from groups
    int64_t *holidays;
    size_t holiday_count;
    int remind_from, remind_until;      //  hours, UK time
    s_escalate_t *escalate;
    size_t escalate_count;
    char **learning_groups;
    size_t learning_group_count;
};

//  The default config text, embedded at build time from broker/sgmq.cfg.
extern const char sgmq_default_cfg [];

static int
__attribute__ ((format (printf, 4, 5)))
s_fail (char *error, const sgmq_zpl_t *node, const char *origin,
        const char *format, ...)
{
    if (!error)
        return -1;
    int used = node ? snprintf (error, SGMQ_CONFIG_ERROR_SIZE, "%s:%d: ",
                                sgmq_zpl_origin (node), sgmq_zpl_line (node))
                    : snprintf (error, SGMQ_CONFIG_ERROR_SIZE, "%s: ", origin);
    if (used < 0 || used >= SGMQ_CONFIG_ERROR_SIZE)
        return -1;
    va_list args;
    va_start (args, format);
    vsnprintf (error + used, SGMQ_CONFIG_ERROR_SIZE - (size_t) used, format, args);
    va_end (args);
    return -1;
}

int
sgmq_config_parse_duration (const char *text, sgmq_duration_t *duration)
{
    static const struct { const char *unit; uint64_t ms; } units [] = {
        { "ms", S_MS }, { "s", S_SECOND }, { "m", S_MINUTE },
        { "h", S_HOUR }, { "d", S_DAY }, { "wd", 0 }, { "y", 0 }
    };
    if (*text < '0' || *text > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long amount = strtoull (text, &end, 10);
    if (errno || amount == 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units [0]; i++)
        if (strcmp (end, units [i].unit) == 0) {
            bool years = strcmp (end, "y") == 0;
            if (units [i].ms == 0) {
                if (amount > (years ? S_YEARS_MAX : S_WORKING_DAYS_MAX))
                    return -1;
                *duration = (sgmq_duration_t) { amount, !years, years, false };
            }
            else {
                if (amount > UINT64_MAX / units [i].ms)
                    return -1;
                *duration = (sgmq_duration_t) { amount * units [i].ms, false, false,
                                                units [i].ms == S_DAY };
            }
            return 0;
        }
    return -1;
}

//  Comma list -> array of copies. -1 on an empty item.
static int
s_split (const char *text, char ***items_p, size_t *count_p, size_t max)
{
    char **items = calloc (max + 1, sizeof *items);
    size_t count = 0;
    if (!items)
        return -1;
    const char *p = text;
    while (*p) {
        const char *comma = strchr (p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen (p);
        while (len && *p == ' ') {
            p++;
            len--;
        }
        while (len && p [len - 1] == ' ')
            len--;
        if (len == 0 || count == max)
            goto out_free;
        items [count] = strndup (p, len);
        if (!items [count++])
            goto out_free;
        p = comma ? comma + 1 : p + len;
        if (comma && !*p)
            goto out_free;
        while (!comma && *p == ' ')
            p++;
    }
    *items_p = items;
    *count_p = count;
    return 0;
out_free:
    for (size_t i = 0; i < count; i++)
        free (items [i]);
    free (items);
    return -1;
}

static void
s_free_list (char **items, size_t count)
{
    for (size_t i = 0; i < count && items; i++)
        free (items [i]);
    free (items);
}

static char *
s_resolve (const char *base, const char *path)
{
    if (path [0] == '/' || !base || !*base)
        return strdup (path);
    size_t size = strlen (base) + strlen (path) + 2;
    char *full = malloc (size);
    if (full)
        snprintf (full, size, "%s/%s", base, path);
    return full;
}

static const s_option_t *
s_find_option (const char *section, const char *name)
{
    for (size_t i = 0; i < S_OPTION_COUNT; i++)
        if (strcmp (s_options [i].section, section) == 0
        &&  strcmp (s_options [i].name, name) == 0)
            return &s_options [i];
    return NULL;
}

//  Set one option from its text; `node` (may be NULL for defaults) locates
//  errors.
static int
s_set_option (sgmq_config_t *self, const s_option_t *option, const char *text,
              const char *base, const sgmq_zpl_t *node, char *error)
{
    s_value_t *value = &self->values [option->id];
    const char *origin = self->origin;
    switch (option->type) {
        case S_STRING:
        case S_PATH: {
            size_t len = strlen (text);
            if ((int64_t) len < option->min || (int64_t) len > option->max)
                return s_fail (error, node, origin, "%s/%s must be %lld to %lld "
                               "characters", option->section, option->name,
                               (long long) option->min, (long long) option->max);
            break;
        }
        case S_ENUM: {
            size_t len = strlen (text);
            const char *p = option->choices;
            bool found = false;
            while (p && *p && !found) {
                const char *comma = strchr (p, ',');
                size_t item = comma ? (size_t) (comma - p) : strlen (p);
                found = item == len && strncmp (p, text, len) == 0;
                p = comma ? comma + 1 : NULL;
            }
            if (!found)
                return s_fail (error, node, origin, "%s/%s must be one of %s, not '%s'",
                               option->section, option->name, option->choices, text);
            break;
        }
        case S_INT: {
            char *end;
            errno = 0;
            long long number = strtoll (text, &end, 10);
            if (errno || end == text || *end)
                return s_fail (error, node, origin, "%s/%s must be a whole number, "
                               "not '%s'", option->section, option->name, text);
            if (number < option->min || number > option->max)
                return s_fail (error, node, origin, "%s/%s must be from %lld to %lld",
                               option->section, option->name,
                               (long long) option->min, (long long) option->max);
            value->number = number;
            break;
        }
        case S_DURATION: {
            sgmq_duration_t duration;
            if (sgmq_config_parse_duration (text, &duration))
                return s_fail (error, node, origin, "%s/%s must be a duration like "
                               "30s, 15m, 2h, 14d%s, not '%s'", option->section,
                               option->name, option->working_days ? ", 3wd or 1y" : "", text);
            if ((duration.working_days || duration.years) && !option->working_days)
                return s_fail (error, node, origin, "%s/%s cannot be in %s",
                               option->section, option->name,
                               duration.years ? "years" : "working days");
            if (!duration.working_days && !duration.years
            &&  ((int64_t) duration.amount < option->min
                 || (int64_t) duration.amount > option->max))
                return s_fail (error, node, origin, "%s/%s must be from %llums to "
                               "%llums", option->section, option->name,
                               (unsigned long long) option->min,
                               (unsigned long long) option->max);
            value->duration = duration;
            break;
        }
        case S_LIST:
            break;
    }
    free (value->text);
    value->text = option->type == S_PATH ? s_resolve (base, text) : strdup (text);
    return value->text ? 0 : s_fail (error, node, origin, "out of memory");
}

static int
s_read_groups (sgmq_config_t *self, const sgmq_zpl_t *section, char *error)
{
    size_t count = 0;
    for (sgmq_zpl_t *g = sgmq_zpl_child (section); g; g = sgmq_zpl_next (g))
        count++;
    if (count > SGMQ_CONFIG_MAX_GROUPS)
        return s_fail (error, section, NULL, "more than %d groups", SGMQ_CONFIG_MAX_GROUPS);
    self->groups = calloc (count + 1, sizeof *self->groups);
    self->group_ids = calloc (count + 1, sizeof *self->group_ids);
    if (!self->groups || !self->group_ids)
        return s_fail (error, section, NULL, "out of memory");
    for (sgmq_zpl_t *g = sgmq_zpl_child (section); g; g = sgmq_zpl_next (g)) {
        const char *id = sgmq_zpl_name (g);
        if (*sgmq_zpl_value (g))
            return s_fail (error, g, NULL, "group %s: give its display name as "
                           "'name = ...' on the next line, indented", id);
        if (!sgmq_registry_group_ok (id))
            return s_fail (error, g, NULL, "group id '%s' must be lower-case "
                           "letters, digits and '-' (at most %d)", id,
                           SGMQ_REGISTRY_MAX_NAME);
        if (sgmq_config_group_known (self, id))
            return s_fail (error, g, NULL, "group '%s' defined twice", id);
        const char *name = NULL;
        for (sgmq_zpl_t *p = sgmq_zpl_child (g); p; p = sgmq_zpl_next (p)) {
            if (strcmp (sgmq_zpl_name (p), "name") || sgmq_zpl_child (p))
                return s_fail (error, p, NULL, "group %s: unknown option '%s' "
                               "(a group has only a name)", id, sgmq_zpl_name (p));
            name = sgmq_zpl_value (p);
            if (!sgmq_registry_name_ok (name))
                return s_fail (error, p, NULL, "group %s: name must be 1 to %d "
                               "characters of text", id, SGMQ_REGISTRY_MAX_NAME);
        }
        s_group_t *group = &self->groups [self->group_count];
        group->id = strdup (id);
        group->name = strdup (name ? name : id);
        if (!group->id || !group->name)
            return s_fail (error, g, NULL, "out of memory");
        self->group_ids [self->group_count++] = group->id;
    }
    return 0;
}

static int
s_compare_days (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

static int
s_read_holidays (sgmq_config_t *self, const sgmq_zpl_t *section, char *error)
{
    self->holidays = calloc (SGMQ_CONFIG_MAX_HOLIDAYS, sizeof *self->holidays);
    if (!self->holidays)
        return s_fail (error, section, NULL, "out of memory");
    for (sgmq_zpl_t *h = sgmq_zpl_child (section); h; h = sgmq_zpl_next (h)) {
        int64_t day = sgmq_time_parse_day (sgmq_zpl_name (h));
        if (day < 0 || sgmq_zpl_child (h))
            return s_fail (error, h, NULL, "holiday '%s' must be a date "
                           "YYYY-MM-DD = \"what it is\"", sgmq_zpl_name (h));
        if (self->holiday_count == SGMQ_CONFIG_MAX_HOLIDAYS)
            return s_fail (error, h, NULL, "more than %d holidays",
                           SGMQ_CONFIG_MAX_HOLIDAYS);
        self->holidays [self->holiday_count++] = day;
    }
    qsort (self->holidays, self->holiday_count, sizeof *self->holidays, s_compare_days);
    return 0;
}

//  A comma list of known groups; -1 with the error at `node`.
static int
s_group_list (sgmq_config_t *self, const sgmq_zpl_t *node, const char *what,
              char ***items, size_t *count, char *error)
{
    if (s_split (sgmq_zpl_value (node), items, count, SGMQ_CONFIG_MAX_GROUPS))
        return s_fail (error, node, NULL, "%s must be a comma-separated list "
                       "of groups", what);
    for (size_t i = 0; i < *count; i++)
        if (!sgmq_config_group_known (self, (*items) [i]))
            return s_fail (error, node, NULL, "%s: unknown group '%s'",
                           what, (*items) [i]);
    return 0;
}

static int
s_read_escalate_for (sgmq_config_t *self, const sgmq_zpl_t *section, char *error)
{
    self->escalate = calloc (SGMQ_CONFIG_MAX_RULES, sizeof *self->escalate);
    if (!self->escalate)
        return s_fail (error, section, NULL, "out of memory");
    for (sgmq_zpl_t *rule = sgmq_zpl_child (section); rule; rule = sgmq_zpl_next (rule)) {
        if (self->escalate_count == SGMQ_CONFIG_MAX_RULES)
            return s_fail (error, rule, NULL, "more than %d escalate-for rules",
                           SGMQ_CONFIG_MAX_RULES);
        s_escalate_t *entry = &self->escalate [self->escalate_count++];
        const sgmq_zpl_t *agency = NULL, *groups = NULL;
        for (sgmq_zpl_t *p = sgmq_zpl_child (rule); p; p = sgmq_zpl_next (p)) {
            if (strcmp (sgmq_zpl_name (p), "agency") == 0 && !agency)
                agency = p;
            else
            if (strcmp (sgmq_zpl_name (p), "groups") == 0 && !groups)
                groups = p;
            else
                return s_fail (error, p, NULL, "escalate-for/%s: unknown or repeated "
                               "option '%s'", sgmq_zpl_name (rule), sgmq_zpl_name (p));
        }
        if (!agency || !groups)
            return s_fail (error, rule, NULL, "escalate-for/%s needs both agency "
                           "and groups", sgmq_zpl_name (rule));
        if (!sgmq_registry_name_ok (sgmq_zpl_value (agency)))
            return s_fail (error, agency, NULL, "agency must be 1 to %d characters",
                           SGMQ_REGISTRY_MAX_NAME);
        entry->agency = strdup (sgmq_zpl_value (agency));
        if (!entry->agency)
            return s_fail (error, agency, NULL, "out of memory");
        if (s_group_list (self, groups, "escalate-for groups", &entry->groups,
                          &entry->group_count, error))
            return -1;
    }
    return 0;
}

static int
s_read_section (sgmq_config_t *self, const sgmq_zpl_t *section, const char *base,
                bool *seen, char *error)
{
    const char *name = sgmq_zpl_name (section);
    for (sgmq_zpl_t *item = sgmq_zpl_child (section); item; item = sgmq_zpl_next (item)) {
        const char *key = sgmq_zpl_name (item);
        if (strcmp (name, "rules") == 0 && strcmp (key, "escalate-for") == 0) {
            if (self->escalate)
                return s_fail (error, item, NULL, "escalate-for given twice");
            if (s_read_escalate_for (self, item, error))
                return -1;
            continue;
        }
        const s_option_t *option = s_find_option (name, key);
        if (!option)
            return s_fail (error, item, NULL, "unknown option '%s' in section %s",
                           key, name);
        if (seen [option->id])
            return s_fail (error, item, NULL, "%s/%s given twice", name, key);
        if (sgmq_zpl_child (item))
            return s_fail (error, item, NULL, "%s/%s takes a value, not a section",
                           name, key);
        seen [option->id] = true;
        if (s_set_option (self, option, sgmq_zpl_value (item), base, item, error))
            return -1;
        if (option->id == SGMQ_OPT_LEARNING_GROUPS) {
            s_free_list (self->learning_groups, self->learning_group_count);
            self->learning_groups = NULL;
            if (s_group_list (self, item, "learning-groups", &self->learning_groups,
                              &self->learning_group_count, error))
                return -1;
        }
    }
    return 0;
}

static int
s_check (sgmq_config_t *self, const sgmq_zpl_t *root, char *error)
{
    if (!sgmq_config_group_known (self, "executive"))
        return s_fail (error, sgmq_zpl_locate (root, "groups"), self->origin,
                       "the groups must include 'executive' (escalations go to it)");
    if (self->values [SGMQ_OPT_SESSION_TIMEOUT].duration.amount
        <= self->values [SGMQ_OPT_HEARTBEAT].duration.amount)
        return s_fail (error, sgmq_zpl_locate (root, "limits/session-timeout"),
                       self->origin, "limits/session-timeout must be longer than "
                       "limits/heartbeat");
    if (self->values [SGMQ_OPT_REDELIVER_MAX].duration.amount
        < self->values [SGMQ_OPT_REDELIVER_FIRST].duration.amount)
        return s_fail (error, sgmq_zpl_locate (root, "deadlines/redeliver-max"),
                       self->origin, "deadlines/redeliver-max must not be shorter "
                       "than deadlines/redeliver-first");
    const char *hours = sgmq_config_str (self, SGMQ_OPT_REMIND_HOURS);
    char *end;
    long from = strtol (hours, &end, 10);
    long until = *end == '-' && end [1] >= '0' && end [1] <= '9' ? strtol (end + 1, &end, 10) : -1;
    if (*hours < '0' || *hours > '9' || *end || from < 0 || until > 24 || from >= until)
        return s_fail (error, sgmq_zpl_locate (root, "deadlines/remind-hours"),
                       self->origin, "deadlines/remind-hours must be two whole hours "
                       "like 9-17 (0-24: any time, any day), not '%s'", hours);
    self->remind_from = (int) from;
    self->remind_until = (int) until;
    return 0;
}

//  Build a config from a parsed tree; takes ownership of the tree.
static sgmq_config_t *
s_config_from_tree (sgmq_zpl_t *root, const char *origin, const char *base,
                    char *error)
{
    sgmq_config_t *self = calloc (1, sizeof *self);
    if (!self || !(self->origin = strdup (origin ? origin : "(config)"))) {
        free (self);
        sgmq_zpl_destroy (&root);
        s_fail (error, NULL, origin, "out of memory");
        return NULL;
    }
    bool seen [SGMQ_OPT_COUNT_] = { false };
    for (size_t i = 0; i < S_OPTION_COUNT; i++)
        if (s_options [i].type != S_LIST
        &&  s_set_option (self, &s_options [i], s_options [i].fallback, base, NULL, error))
            goto out_fail;
    //  Groups first: other sections refer to them.
    const sgmq_zpl_t *groups = sgmq_zpl_locate (root, "groups");
    if (!groups || !sgmq_zpl_child (groups)) {
        s_fail (error, NULL, self->origin, "no groups section: a partnership "
                "needs its groups");
        goto out_fail;
    }
    for (const sgmq_zpl_t *section = sgmq_zpl_child (root); section;
         section = sgmq_zpl_next (section)) {
        const char *name = sgmq_zpl_name (section);
        size_t known = 0;
        while (known < S_SECTION_COUNT && strcmp (s_sections [known], name))
            known++;
        if (known == S_SECTION_COUNT) {
            s_fail (error, section, NULL, "unknown section '%s'", name);
            goto out_fail;
        }
        if (*sgmq_zpl_value (section)) {
            s_fail (error, section, NULL, "section %s takes no value", name);
            goto out_fail;
        }
        if (strcmp (name, "groups") == 0 && section != groups) {
            s_fail (error, section, NULL, "groups given twice");
            goto out_fail;
        }
    }
    if (s_read_groups (self, groups, error))
        goto out_fail;
    const sgmq_zpl_t *holidays = sgmq_zpl_locate (root, "holidays");
    if (holidays && s_read_holidays (self, holidays, error))
        goto out_fail;
    if (!holidays && !(self->holidays = calloc (1, sizeof *self->holidays)))
        goto out_fail;
    for (const sgmq_zpl_t *section = sgmq_zpl_child (root); section;
         section = sgmq_zpl_next (section)) {
        const char *name = sgmq_zpl_name (section);
        if (strcmp (name, "groups") && strcmp (name, "holidays")
        &&  s_read_section (self, section, base, seen, error))
            goto out_fail;
    }
    if (!seen [SGMQ_OPT_LEARNING_GROUPS]) {
        //  The default names groups of the seed's partnership; a deployment
        //  without them simply has no learning publishers until it says so.
        const s_option_t *option = s_find_option ("rules", "learning-groups");
        char **items = NULL;
        size_t count = 0;
        if (s_split (option->fallback, &items, &count, SGMQ_CONFIG_MAX_GROUPS) == 0) {
            self->learning_groups = calloc (count + 1, sizeof *items);
            for (size_t i = 0; i < count && self->learning_groups; i++)
                if (sgmq_config_group_known (self, items [i]))
                    self->learning_groups [self->learning_group_count++] = strdup (items [i]);
            s_free_list (items, count);
        }
        self->values [SGMQ_OPT_LEARNING_GROUPS].text = strdup (option->fallback);
    }
    if (s_check (self, root, error))
        goto out_fail;
    sgmq_zpl_destroy (&root);
    return self;

out_fail:
    sgmq_zpl_destroy (&root);
    sgmq_config_destroy (&self);
    return NULL;
}

sgmq_config_t *
sgmq_config_parse (const char *text, size_t size, const char *origin,
                   const char *base, char *error)
{
    char zpl_error [SGMQ_ZPL_ERROR_SIZE];
    sgmq_zpl_t *root = sgmq_zpl_parse (text, size, origin, zpl_error);
    if (!root) {
        if (error)
            snprintf (error, SGMQ_CONFIG_ERROR_SIZE, "%s", zpl_error);
        return NULL;
    }
    return s_config_from_tree (root, origin, base, error);
}

sgmq_config_t *
sgmq_config_load (const char *path, char *error)
{
    char zpl_error [SGMQ_ZPL_ERROR_SIZE];
    sgmq_zpl_t *root = sgmq_zpl_load (path, zpl_error);
    if (!root) {
        if (error)
            snprintf (error, SGMQ_CONFIG_ERROR_SIZE, "%s", zpl_error);
        return NULL;
    }
    //  Relative paths in the file are relative to its folder.
    char *copy = strdup (path);
    char *slash = copy ? strrchr (copy, '/') : NULL;
    const char *base = slash ? (slash == copy ? "/" : (*slash = 0, copy)) : ".";
    sgmq_config_t *self = s_config_from_tree (root, path, base, error);
    free (copy);
    return self;
}

void
sgmq_config_destroy (sgmq_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_config_t *self = *self_p;
    for (size_t i = 0; i < SGMQ_OPT_COUNT_; i++)
        free (self->values [i].text);
    for (size_t i = 0; i < self->group_count; i++) {
        free (self->groups [i].id);
        free (self->groups [i].name);
    }
    free (self->groups);
    free (self->group_ids);
    free (self->holidays);
    for (size_t i = 0; i < self->escalate_count; i++) {
        free (self->escalate [i].agency);
        s_free_list (self->escalate [i].groups, self->escalate [i].group_count);
    }
    free (self->escalate);
    s_free_list (self->learning_groups, self->learning_group_count);
    free (self->origin);
    free (self);
    *self_p = NULL;
}

const char *
sgmq_config_origin (const sgmq_config_t *self)
{
    return self->origin;
}

const char *
sgmq_config_str (const sgmq_config_t *self, sgmq_opt_t option)
{
    return option < SGMQ_OPT_COUNT_ && self->values [option].text
         ? self->values [option].text : "";
}

int64_t
sgmq_config_int (const sgmq_config_t *self, sgmq_opt_t option)
{
    return option < SGMQ_OPT_COUNT_ ? self->values [option].number : 0;
}

sgmq_duration_t
sgmq_config_duration (const sgmq_config_t *self, sgmq_opt_t option)
{
    return option < SGMQ_OPT_COUNT_ ? self->values [option].duration
                                    : (sgmq_duration_t) { 0, false, false, false };
}

uint64_t
sgmq_config_deadline (const sgmq_config_t *self, sgmq_opt_t option, uint64_t from)
{
    sgmq_duration_t d = sgmq_config_duration (self, option);
    if (d.working_days)
        return sgmq_time_add_working_days (from, (uint32_t) d.amount,
                                           self->holidays, self->holiday_count);
    if (d.years)
        return sgmq_time_add_years (from, (uint32_t) d.amount);
    if (d.days)
        return sgmq_time_add_days (from, (int32_t) (d.amount / S_DAY));
    return from + d.amount;
}

uint64_t
sgmq_config_before (const sgmq_config_t *self, sgmq_opt_t option, uint64_t due)
{
    sgmq_duration_t d = sgmq_config_duration (self, option);
    if (d.days)
        return sgmq_time_add_days (due, -(int32_t) (d.amount / S_DAY));
    return due > d.amount ? due - d.amount : 0;
}

size_t
sgmq_config_group_count (const sgmq_config_t *self)
{
    return self->group_count;
}

const char *
sgmq_config_group_id (const sgmq_config_t *self, size_t index)
{
    return index < self->group_count ? self->groups [index].id : NULL;
}

const char *
sgmq_config_group_name (const sgmq_config_t *self, size_t index)
{
    return index < self->group_count ? self->groups [index].name : NULL;
}

const char *const *
sgmq_config_group_ids (const sgmq_config_t *self)
{
    return self->group_ids;
}

bool
sgmq_config_group_known (const sgmq_config_t *self, const char *id)
{
    for (size_t i = 0; i < self->group_count; i++)
        if (strcmp (self->groups [i].id, id) == 0)
            return true;
    return false;
}

const char *
sgmq_config_group_display (const sgmq_config_t *self, const char *id)
{
    for (size_t i = 0; i < self->group_count; i++)
        if (strcmp (self->groups [i].id, id) == 0)
            return self->groups [i].name;
    return id;
}

bool
sgmq_config_learning_group (const sgmq_config_t *self, const char *group)
{
    for (size_t i = 0; i < self->learning_group_count; i++)
        if (strcmp (self->learning_groups [i], group) == 0)
            return true;
    return false;
}

bool
sgmq_config_may_escalate_for (const sgmq_config_t *self, const char *agency,
                              const char *group)
{
    for (size_t i = 0; i < self->escalate_count; i++) {
        if (strcmp (self->escalate [i].agency, agency))
            continue;
        for (size_t g = 0; g < self->escalate [i].group_count; g++)
            if (strcmp (self->escalate [i].groups [g], group) == 0)
                return true;
    }
    return false;
}

const int64_t *
sgmq_config_holidays (const sgmq_config_t *self, size_t *count)
{
    *count = self->holiday_count;
    return self->holidays;
}

uint64_t
sgmq_config_remind_at (const sgmq_config_t *self, uint64_t at)
{
    return sgmq_time_in_hours (at, self->remind_from, self->remind_until,
                               self->holidays, self->holiday_count);
}

char *
sgmq_config_default_text (const char *endpoint)
{
    const char *marker = "\"tcp://127.0.0.1:7800\"";
    const char *at = strstr (sgmq_default_cfg, marker);
    if (!endpoint || !at)
        return strdup (sgmq_default_cfg);
    size_t size = strlen (sgmq_default_cfg) + strlen (endpoint) + 3;
    char *text = malloc (size);
    if (text)
        snprintf (text, size, "%.*s\"%s\"%s", (int) (at - sgmq_default_cfg),
                  sgmq_default_cfg, endpoint, at + strlen (marker));
    return text;
}
