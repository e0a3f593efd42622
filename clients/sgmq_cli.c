/*  =========================================================================
    sgmq - the command line for agencies, chairs, auditors and operators

    git-style subcommands. Options may come before or after positional
    arguments; "--" ends options. The broker endpoint, own cert and broker
    cert come from --broker/--cert/--server-cert or SGMQ_BROKER/SGMQ_CERT/
    SGMQ_SERVER_CERT.

    Each message kind's fields are described once, in s_kinds: the flags
    (--respond-by), the JSON keys of --file documents and of --json output
    (respond_by) and the readable listing all come from that table.

    Exit codes (distinct so scripts can tell them apart):
        0 success, 1 other failure, 2 usage error, 3 not authorised,
        4 refused by the broker, 5 broker unreachable, 6 verification failed
    =========================================================================
*/
#include "sgmq_cli.h"
#include "sgmq_cert.h"
#include "sgmq_client.h"
#include "sgmq_config.h"
#include "sgmq_json.h"
#include "sgmq_keyfile.h"
#include "sgmq_registry.h"
#include "sgmq_time.h"
#include "sgmq_tracker.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Arguments

//  Commands take a handful of options; a hundred is more than any needs.
#define S_MAX_GIVEN      128
#define S_MAX_POSITIONAL 64

typedef struct {
    const char *name;           //  without "--"
    bool value;                 //  takes a value
    const char *help;
} s_opt_t;

typedef struct {
    const char *command;
    const char *positional [S_MAX_POSITIONAL];
    size_t positional_count;
    struct { const s_opt_t *opt; const char *value; } given [S_MAX_GIVEN];
    size_t given_count;
} s_args_t;

static const s_opt_t s_client_opts [] = {
    { "broker", true, "broker endpoint (or SGMQ_BROKER)" },
    { "cert", true, "your secret cert file (or SGMQ_CERT)" },
    { "server-cert", true, "the broker's public cert (or SGMQ_SERVER_CERT)" },
    { "connect-timeout", true, "seconds to wait for the broker (default 5; or SGMQ_CONNECT_TIMEOUT)" },
    { NULL, false, NULL }
};

static int
__attribute__ ((format (printf, 2, 3)))
s_usage_error (const char *command, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "sgmq%s%s: ", command ? " " : "", command ? command : "");
    vfprintf (stderr, format, args);
    if (command)
        fprintf (stderr, "\n(see: sgmq %s --help)\n", command);
    else
        fprintf (stderr, "\n(see: sgmq --help)\n");
    va_end (args);
    return SGMQ_EXIT_USAGE;
}

//  "a" or "an" before a kind's name ("an escalation").
static const char *
s_article (const char *word)
{
    return strchr ("aeiou", word [0]) && word [0] ? "an" : "a";
}

static const s_opt_t *
s_find_opt (const s_opt_t *opts, const char *name, size_t len)
{
    for (const s_opt_t *o = opts; o && o->name; o++)
        if (strlen (o->name) == len && strncmp (o->name, name, len) == 0)
            return o;
    return NULL;
}

//  Parse argv[first..] against the command's options (and the client
//  options when `client`). Returns 0 or a usage exit code.
static int
s_parse (s_args_t *args, const char *command, int argc, char **argv, int first,
         const s_opt_t *opts, bool client)
{
    memset (args, 0, sizeof *args);
    args->command = command;
    bool options_done = false;
    for (int i = first; i < argc; i++) {
        const char *arg = argv [i];
        if (options_done || strncmp (arg, "--", 2) != 0 || arg [2] == 0) {
            if (!options_done && strcmp (arg, "--") == 0) {
                options_done = true;
                continue;
            }
            if (args->positional_count == S_MAX_POSITIONAL)
                return s_usage_error (command, "too many arguments");
            args->positional [args->positional_count++] = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *equals = strchr (name, '=');
        size_t len = equals ? (size_t) (equals - name) : strlen (name);
        const s_opt_t *opt = s_find_opt (opts, name, len);
        if (!opt && client)
            opt = s_find_opt (s_client_opts, name, len);
        if (!opt)
            return s_usage_error (command, "unknown option --%.*s", (int) len, name);
        const char *value = NULL;
        if (opt->value) {
            if (equals)
                value = equals + 1;
            else
            if (i + 1 < argc)
                value = argv [++i];
            else
                return s_usage_error (command, "--%s needs a value", opt->name);
        }
        else
        if (equals)
            return s_usage_error (command, "--%s takes no value", opt->name);
        if (args->given_count == S_MAX_GIVEN)
            return s_usage_error (command, "too many options");
        args->given [args->given_count].opt = opt;
        args->given [args->given_count++].value = value ? value : "";
    }
    return 0;
}

//  Last value of an option, or NULL if not given.
static const char *
s_get (const s_args_t *args, const char *name)
{
    const char *value = NULL;
    for (size_t i = 0; i < args->given_count; i++)
        if (strcmp (args->given [i].opt->name, name) == 0)
            value = args->given [i].value;
    return value;
}

static bool
s_has (const s_args_t *args, const char *name)
{
    return s_get (args, name) != NULL;
}

//  A whole number option within [min, max]; -1 (after a message) if bad.
static int
s_get_number (const s_args_t *args, const char *name, uint64_t min, uint64_t max,
              uint64_t *value)
{
    const char *text = s_get (args, name);
    if (!text)
        return 0;
    char *end;
    errno = 0;
    unsigned long long number = strtoull (text, &end, 10);
    if (!*text || *text == '-' || *end || errno || number < min || number > max) {
        s_usage_error (args->command, "--%s must be a whole number from %llu to %llu",
                       name, (unsigned long long) min, (unsigned long long) max);
        return -1;
    }
    *value = number;
    return 0;
}

//  --------------------------------------------------------------------------
//  Errors and exits

static int
s_exit_for (const sgmq_error_t *error)
{
    switch (error->code) {
        case SGMQ_E_NOT_AUTHORISED:
            return SGMQ_EXIT_NOT_AUTHORISED;
        case SGMQ_CLIENT_E_UNREACHABLE:
        case SGMQ_CLIENT_E_TIMEOUT:
            return SGMQ_EXIT_UNREACHABLE;
        case SGMQ_CLIENT_E_USAGE:
            return SGMQ_EXIT_USAGE;
        default:
            return sgmq_error_refused (error) ? SGMQ_EXIT_REFUSED : SGMQ_EXIT_FAILED;
    }
}

static int
s_report (const char *command, const sgmq_error_t *error)
{
    if (sgmq_error_refused (error) && error->code != SGMQ_E_NOT_AUTHORISED)
        fprintf (stderr, "sgmq %s: refused by the broker (%d %s): %s\n", command,
                 error->code, sgmq_proto_status_name (error->code), error->reason);
    else
        fprintf (stderr, "sgmq %s: %s\n", command, error->reason);
    return s_exit_for (error);
}

static sgmq_client_t *
s_connect (const s_args_t *args, int *exit_code)
{
    const char *broker = s_get (args, "broker");
    const char *cert = s_get (args, "cert");
    const char *server = s_get (args, "server-cert");
    if (!broker)
        broker = getenv ("SGMQ_BROKER");
    if (!cert)
        cert = getenv ("SGMQ_CERT");
    if (!server)
        server = getenv ("SGMQ_SERVER_CERT");
    if (!broker || !cert || !server) {
        *exit_code = s_usage_error (args->command, "say which broker and certs to use: "
                                    "--broker ENDPOINT --cert YOUR_CERT_secret "
                                    "--server-cert DIR/broker.cert (or SGMQ_BROKER, "
                                    "SGMQ_CERT, SGMQ_SERVER_CERT)");
        return NULL;
    }
    uint64_t seconds = SGMQ_CLIENT_DEFAULT_TIMEOUT / 1000;
    const char *env_seconds = getenv ("SGMQ_CONNECT_TIMEOUT");
    if (env_seconds && *env_seconds && !s_get (args, "connect-timeout")) {
        char *end;
        errno = 0;
        unsigned long long value = strtoull (env_seconds, &end, 10);
        if (errno || *end || value < 1 || value > 3600) {
            *exit_code = s_usage_error (args->command, "SGMQ_CONNECT_TIMEOUT must be "
                                        "a number of seconds, 1 to 3600 (not '%s')",
                                        env_seconds);
            return NULL;
        }
        seconds = value;
    }
    if (s_get_number (args, "connect-timeout", 1, 3600, &seconds)) {
        *exit_code = SGMQ_EXIT_USAGE;
        return NULL;
    }
    sgmq_client_options_t options = {
        .broker = broker, .cert = cert, .server_cert = server,
        .timeout = (int) seconds * 1000, .client = "sgmq-cli/0.1.0"
    };
    sgmq_error_t error;
    sgmq_client_t *client = sgmq_client_new (&options, &error);
    if (!client)
        *exit_code = s_report (args->command, &error);
    return client;
}

//  --------------------------------------------------------------------------
//  Message kinds: one table drives flags, JSON in and out, and listings.

typedef enum {
    F_TEXT, F_TIME, F_TIME_EOD, F_SEQ, F_COUNT, F_LIST, F_GROUPS,
    F_SEVERITY, F_REVIEW, F_HELD, F_REASON, F_KIND
} s_ftype_t;

typedef struct {
    const char *key;            //  JSON key and wire name; flag = key with '-'
    s_ftype_t type;
    size_t offset;              //  in sgmq_body_t
    bool publishable;           //  settable from the command line
} s_field_t;

#define S_AT(member) offsetof (sgmq_body_t, u.member)
static const s_field_t s_escalation_fields [] = {
    { "group", F_TEXT, S_AT (escalation.group), true },
    { "title", F_TEXT, S_AT (escalation.title), true },
    { "summary", F_TEXT, S_AT (escalation.summary), true },
    { "severity", F_SEVERITY, S_AT (escalation.severity), true },
    { "requested", F_TEXT, S_AT (escalation.requested), true },
    { "respond_by", F_TIME_EOD, S_AT (escalation.respond_by), true },
    { "case_ref", F_TEXT, S_AT (escalation.case_ref), true },
    { NULL, 0, 0, false }
};
static const s_field_t s_response_fields [] = {
    { "to", F_SEQ, S_AT (response.to), true },
    { "decision", F_TEXT, S_AT (response.decision), true },
    { "summary", F_TEXT, S_AT (response.summary), true },
    { "action", F_LIST, S_AT (response.action), true },
    { NULL, 0, 0, false }
};
static const s_field_t s_learning_fields [] = {
    { "review_type", F_REVIEW, S_AT (learning.review_type), true },
    { "review_ref", F_TEXT, S_AT (learning.review_ref), true },
    { "title", F_TEXT, S_AT (learning.title), true },
    { "summary", F_TEXT, S_AT (learning.summary), true },
    { "theme", F_LIST, S_AT (learning.theme), true },
    { "recommendation", F_LIST, S_AT (learning.recommendation), true },
    { "groups", F_GROUPS, S_AT (learning.groups), true },
    { "session_by", F_TIME_EOD, S_AT (learning.session_by), true },
    { "reflection_by", F_TIME_EOD, S_AT (learning.reflection_by), true },
    { NULL, 0, 0, false }
};
static const s_field_t s_update_fields [] = {
    { "alert", F_SEQ, S_AT (learning_update.alert), true },
    { "held", F_HELD, S_AT (learning_update.held), true },
    { "on", F_TIME, S_AT (learning_update.on), true },
    { "notes", F_TEXT, S_AT (learning_update.notes), true },
    { NULL, 0, 0, false }
};
static const s_field_t s_reminder_fields [] = {
    { "reason", F_REASON, S_AT (reminder.reason), false },
    { "about", F_SEQ, S_AT (reminder.about), false },
    { "about_kind", F_KIND, S_AT (reminder.about_kind), false },
    { "title", F_TEXT, S_AT (reminder.title), false },
    { "group", F_TEXT, S_AT (reminder.group), false },
    { "due", F_TIME, S_AT (reminder.due), false },
    { "count", F_COUNT, S_AT (reminder.count), false },
    { NULL, 0, 0, false }
};

static const s_field_t *
s_fields_of (sgmq_kind_t kind)
{
    switch (kind) {
        case SGMQ_KIND_ESCALATION:      return s_escalation_fields;
        case SGMQ_KIND_RESPONSE:        return s_response_fields;
        case SGMQ_KIND_LEARNING:        return s_learning_fields;
        case SGMQ_KIND_LEARNING_UPDATE: return s_update_fields;
        case SGMQ_KIND_REMINDER:        return s_reminder_fields;
        default:                        return NULL;
    }
}

static void
s_flag_name (const char *key, char *flag, size_t size)
{
    size_t i = 0;
    for (; key [i] && i + 1 < size; i++)
        flag [i] = key [i] == '_' ? '-' : key [i];
    flag [i] = 0;
}

//  Enum fields: parse and name through the codec's tables.
static int
s_enum_parse (s_ftype_t type, const char *text)
{
    size_t len = strlen (text);
    switch (type) {
        case F_SEVERITY: return sgmq_proto_severity_parse (text, len);
        case F_REVIEW:   return sgmq_proto_review_parse (text, len);
        case F_HELD:     return sgmq_proto_held_parse (text, len);
        case F_REASON:   return sgmq_proto_reason_parse (text, len);
        case F_KIND:     return sgmq_proto_kind_parse (text, len);
        default:         return 0;
    }
}

static const char *
s_enum_name (s_ftype_t type, int value)
{
    switch (type) {
        case F_SEVERITY: return sgmq_proto_severity_name (value);
        case F_REVIEW:   return sgmq_proto_review_name (value);
        case F_HELD:     return sgmq_proto_held_name (value);
        case F_REASON:   return sgmq_proto_reason_name (value);
        case F_KIND:     return sgmq_proto_kind_name (value);
        default:         return NULL;
    }
}

static const char *
s_enum_choices (s_ftype_t type)
{
    switch (type) {
        case F_SEVERITY: return "low, medium, high or critical";
        case F_REVIEW:   return "cspr, rapid-review, audit or other";
        case F_HELD:     return "session or reflection";
        default:         return "";
    }
}

//  Lists being built for a body; they must outlive the publish.
typedef struct {
    const char *items [SGMQ_PROTO_MAX_LIST + 1][SGMQ_PROTO_MAX_LIST];
    char *owned [SGMQ_PROTO_MAX_LIST * SGMQ_PROTO_MAX_LIST];
    size_t owned_count;
} s_lists_t;

static void
s_lists_free (s_lists_t *lists)
{
    for (size_t i = 0; i < lists->owned_count; i++)
        free (lists->owned [i]);
    lists->owned_count = 0;
}

static const char *
s_keep (s_lists_t *lists, const char *text)
{
    if (lists->owned_count == sizeof lists->owned / sizeof lists->owned [0])
        return NULL;
    char *copy = strdup (text);
    if (copy)
        lists->owned [lists->owned_count++] = copy;
    return copy;
}

//  Set one field from text (a flag or a JSON string). 0, or -1 with a
//  usage message.
static int
s_field_set (sgmq_body_t *body, const s_field_t *field, size_t field_index,
             const char *text, s_lists_t *lists, const char *command, const char *shown)
{
    void *at = (uint8_t *) body + field->offset;
    switch (field->type) {
        case F_TEXT:
            *(const char **) at = s_keep (lists, text);
            return 0;
        case F_TIME:
        case F_TIME_EOD:
            if (sgmq_time_parse (text, field->type == F_TIME_EOD, (uint64_t *) at))
                return s_usage_error (command, "%s must be a time like "
                                      "2026-12-01T09:00 (UK time), 2026-12-01T09:00:00Z "
                                      "or a date like 2026-12-01, not '%s'", shown, text), -1;
            return 0;
        case F_SEQ:
        case F_COUNT: {
            char *end;
            errno = 0;
            unsigned long long n = strtoull (text, &end, 10);
            if (!*text || *text == '-' || *end || errno || n == 0
            ||  (field->type == F_COUNT && n > UINT32_MAX))
                return s_usage_error (command, "%s must be a message number (1, 2, "
                                      "...), not '%s'", shown, text), -1;
            if (field->type == F_SEQ)
                *(uint64_t *) at = n;
            else
                *(uint32_t *) at = (uint32_t) n;
            return 0;
        }
        case F_LIST:
        case F_GROUPS: {
            sgmq_strlist_t *list = at;
            const char **items = lists->items [field_index];
            //  Groups come comma-separated; other lists one item a flag,
            //  since a theme or an action may itself hold a comma.
            char *copy = strdup (text);
            char *save = NULL;
            char *piece = field->type == F_GROUPS ? strtok_r (copy, ",", &save) : copy;
            while (piece) {
                if (list->count == SGMQ_PROTO_MAX_LIST) {
                    free (copy);
                    return s_usage_error (command, "%s: more than %d items", shown,
                                          SGMQ_PROTO_MAX_LIST), -1;
                }
                items [list->count++] = s_keep (lists, piece);
                piece = field->type == F_GROUPS ? strtok_r (NULL, ",", &save) : NULL;
            }
            free (copy);
            list->items = items;
            return 0;
        }
        default: {
            int value = s_enum_parse (field->type, text);
            if (!value)
                return s_usage_error (command, "%s must be %s, not '%s'", shown,
                                      s_enum_choices (field->type), text), -1;
            *(int *) at = value;
            return 0;
        }
    }
}

//  Fill a body from a --file JSON document.
static int
s_body_from_json (sgmq_body_t *body, const sgmq_json_t *doc, s_lists_t *lists,
                  const char *command, const char **ref)
{
    if (sgmq_json_type (doc) != SGMQ_JSON_OBJECT)
        return s_usage_error (command, "the --file document must be a JSON object");
    const s_field_t *fields = s_fields_of (body->kind);
    for (size_t m = 0; m < sgmq_json_size (doc); m++) {
        const char *key = sgmq_json_key (doc, m);
        const sgmq_json_t *value = sgmq_json_at (doc, m);
        char shown [80];
        snprintf (shown, sizeof shown, "\"%s\"", key);
        if (strcmp (key, "ref") == 0) {
            if (sgmq_json_type (value) != SGMQ_JSON_STRING)
                return s_usage_error (command, "\"ref\" must be a string");
            *ref = s_keep (lists, sgmq_json_string (value));
            continue;
        }
        size_t f = 0;
        while (fields [f].key && strcmp (fields [f].key, key))
            f++;
        if (!fields [f].key || !fields [f].publishable)
            return s_usage_error (command, "unknown key \"%s\" for %s %s", key,
                                  s_article (sgmq_proto_kind_name (body->kind)),
                                  sgmq_proto_kind_name (body->kind));
        const s_field_t *field = &fields [f];
        if (field->type == F_LIST || field->type == F_GROUPS) {
            if (sgmq_json_type (value) == SGMQ_JSON_STRING) {
                if (s_field_set (body, field, f, sgmq_json_string (value), lists,
                                 command, shown))
                    return SGMQ_EXIT_USAGE;
                continue;
            }
            if (sgmq_json_type (value) != SGMQ_JSON_ARRAY)
                return s_usage_error (command, "%s must be a list of strings", shown);
            for (size_t i = 0; i < sgmq_json_size (value); i++) {
                const sgmq_json_t *item = sgmq_json_at (value, i);
                if (sgmq_json_type (item) != SGMQ_JSON_STRING)
                    return s_usage_error (command, "%s must be a list of strings", shown);
                if (s_field_set (body, field, f, sgmq_json_string (item), lists,
                                 command, shown))
                    return SGMQ_EXIT_USAGE;
            }
            continue;
        }
        uint64_t number;
        if ((field->type == F_SEQ || field->type == F_TIME || field->type == F_TIME_EOD)
        &&  sgmq_json_uint (value, &number)) {
            //  Sequence numbers as numbers; times as numbers are ms UTC.
            *(uint64_t *) ((uint8_t *) body + field->offset) = number;
            continue;
        }
        if (sgmq_json_type (value) != SGMQ_JSON_STRING)
            return s_usage_error (command, "%s must be a string", shown);
        if (s_field_set (body, field, f, sgmq_json_string (value), lists, command, shown))
            return SGMQ_EXIT_USAGE;
    }
    return 0;
}

static char *
s_read_all (FILE *file, size_t *size)
{
    size_t capacity = 4096, used = 0;
    char *data = malloc (capacity);
    while (data) {
        size_t got = fread (data + used, 1, capacity - used, file);
        used += got;
        if (used < capacity)
            break;
        if (capacity >= SGMQ_JSON_MAX_SIZE) {
            free (data);
            return NULL;
        }
        capacity *= 2;
        char *bigger = realloc (data, capacity);
        if (!bigger)
            free (data);
        data = bigger;
    }
    *size = used;
    return data;
}

//  --------------------------------------------------------------------------
//  Output

//  For people: UK time. (JSON and CSV keep ISO 8601 UTC.)
static void
s_print_time (FILE *out, uint64_t ms)
{
    char text [SGMQ_TIME_TEXT_SIZE];
    fputs (sgmq_time_format_uk (ms, text), out);
}

static void
s_json_time (FILE *out, uint64_t ms)
{
    char text [SGMQ_TIME_TEXT_SIZE];
    sgmq_json_write_string (out, sgmq_time_format (ms, text));
}

static void
s_json_list (FILE *out, const sgmq_strlist_t *list)
{
    fputc ('[', out);
    for (uint32_t i = 0; i < list->count; i++) {
        if (i)
            fputc (',', out);
        sgmq_json_write_string (out, list->items [i]);
    }
    fputc (']', out);
}

static void
s_hex_json (FILE *out, const uint8_t *data, size_t size)
{
    char hex [SGMQ_PROTO_HASH_SIZE * 2 + 1];
    sodium_bin2hex (hex, sizeof hex, data, size);
    sgmq_json_write_string (out, hex);
}

//  A body as a JSON object keyed by field names; absent fields left out.
static void
s_body_json (FILE *out, const sgmq_body_t *body)
{
    fputc ('{', out);
    const s_field_t *fields = s_fields_of (body->kind);
    bool first = true;
    for (const s_field_t *f = fields; f && f->key; f++) {
        const void *at = (const uint8_t *) body + f->offset;
        bool present;
        switch (f->type) {
            case F_TEXT: present = *(const char *const *) at != NULL; break;
            case F_LIST: case F_GROUPS:
                present = ((const sgmq_strlist_t *) at)->count > 0; break;
            case F_TIME: case F_TIME_EOD: case F_SEQ:
                present = *(const uint64_t *) at != 0; break;
            case F_COUNT: present = *(const uint32_t *) at != 0; break;
            default: present = *(const int *) at != 0; break;
        }
        if (!present)
            continue;
        fprintf (out, "%s\"%s\":", first ? "" : ",", f->key);
        first = false;
        switch (f->type) {
            case F_TEXT:
                sgmq_json_write_string (out, *(const char *const *) at);
                break;
            case F_LIST: case F_GROUPS:
                s_json_list (out, at);
                break;
            case F_TIME: case F_TIME_EOD:
                s_json_time (out, *(const uint64_t *) at);
                break;
            case F_SEQ:
                fprintf (out, "%llu", (unsigned long long) *(const uint64_t *) at);
                break;
            case F_COUNT:
                fprintf (out, "%u", *(const uint32_t *) at);
                break;
            default:
                sgmq_json_write_string (out, s_enum_name (f->type, *(const int *) at));
                break;
        }
    }
    fputc ('}', out);
}

//  Where a body's values start: continuation lines of a text line up there.
#define S_VALUE_INDENT  "                    "

//  A body as indented "name: value" lines, for people (sgmq_text_write:
//  the values are publishers' words).
static void
s_body_text (FILE *out, const sgmq_body_t *body)
{
    for (const s_field_t *f = s_fields_of (body->kind); f && f->key; f++) {
        const void *at = (const uint8_t *) body + f->offset;
        char label [40];
        s_flag_name (f->key, label, sizeof label);
        for (char *p = label; *p; p++)
            if (*p == '-')
                *p = ' ';
        switch (f->type) {
            case F_TEXT:
                if (*(const char *const *) at) {
                    fprintf (out, "    %-15s ", label);
                    sgmq_text_write (out, *(const char *const *) at, S_VALUE_INDENT);
                    fputc ('\n', out);
                }
                break;
            case F_LIST: case F_GROUPS: {
                const sgmq_strlist_t *list = at;
                for (uint32_t i = 0; i < list->count; i++) {
                    fprintf (out, "    %-15s ", i ? "" : label);
                    sgmq_text_write (out, list->items [i], S_VALUE_INDENT);
                    fputc ('\n', out);
                }
                break;
            }
            case F_TIME: case F_TIME_EOD:
                if (*(const uint64_t *) at) {
                    fprintf (out, "    %-15s ", label);
                    s_print_time (out, *(const uint64_t *) at);
                    fputc ('\n', out);
                }
                break;
            case F_SEQ:
                if (*(const uint64_t *) at)
                    fprintf (out, "    %-15s %llu\n", label,
                             (unsigned long long) *(const uint64_t *) at);
                break;
            case F_COUNT:
                fprintf (out, "    %-15s %u\n", label, *(const uint32_t *) at);
                break;
            default:
                if (*(const int *) at)
                    fprintf (out, "    %-15s %s\n", label,
                             s_enum_name (f->type, *(const int *) at));
                break;
        }
    }
}

//  --------------------------------------------------------------------------
//  Commands

typedef int (s_command_fn) (s_args_t *args);

typedef struct {
    const char *name;
    s_command_fn *run;
    const s_opt_t *opts;
    bool client;                //  takes the client options
    const char *synopsis;
    const char *about;
} s_command_t;

static const s_command_t *s_command (const char *name);

static char *
s_path (const char *dir, const char *name)
{
    size_t size = strlen (dir) + strlen (name) + 2;
    char *path = malloc (size);
    if (path)
        snprintf (path, size, "%s/%s", dir, name);
    return path;
}

//  ---- init ------------------------------------------------------------------

static const s_opt_t s_init_opts [] = {
    { "endpoint", true, "where the broker will listen (default tcp://127.0.0.1:7800)" },
    { NULL, false, NULL }
};

static int
s_init (s_args_t *args)
{
    if (args->positional_count != 1)
        return s_usage_error ("init", "give exactly one folder: sgmq init DIR");
    const char *dir = args->positional [0];
    const char *endpoint = s_get (args, "endpoint");
    if (endpoint && strncmp (endpoint, "tcp://", 6) != 0)
        return s_usage_error ("init", "--endpoint must be tcp://HOST:PORT");
    struct stat st;
    if (stat (dir, &st) == 0) {
        DIR *handle = opendir (dir);
        struct dirent *entry;
        bool empty = handle != NULL;
        while (handle && (entry = readdir (handle)))
            if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, ".."))
                empty = false;
        if (handle)
            closedir (handle);
        if (!empty) {
            fprintf (stderr, "sgmq init: %s already exists and is not empty; not "
                     "overwriting a deployment\n", dir);
            return SGMQ_EXIT_FAILED;
        }
    }
    else
    if (mkdir (dir, 0750) != 0) {
        fprintf (stderr, "sgmq init: cannot create %s: %s\n", dir, strerror (errno));
        return SGMQ_EXIT_FAILED;
    }
    char error [SGMQ_KEYFILE_ERROR_SIZE] = "";
    char *config = s_path (dir, "sgmq.cfg");
    char *broker_cert = s_path (dir, "broker.cert");
    char *storage = s_path (dir, "storage.key");
    char *signing = s_path (dir, "signing.key");
    char *signing_pub = s_path (dir, "signing.pub");
    char *certs = s_path (dir, "certs");
    char *data = s_path (dir, "data");
    char *text = sgmq_config_default_text (endpoint);
    int rc = config && broker_cert && storage && signing && signing_pub && certs
          && data && text ? 0 : -1;
    if (rc == 0)
        rc = sgmq_keyfile_write (config, text, strlen (text), 0640, true, error);
    if (rc == 0) {
        sgmq_cert_t *cert = sgmq_cert_new ();
        rc = cert ? sgmq_cert_set_meta (cert, "name", "sgmq broker", error) : -1;
        if (rc == 0)
            rc = sgmq_cert_set_meta (cert, "agency", "sgmq", error);
        if (rc == 0)
            rc = sgmq_cert_save (cert, broker_cert, error);
        sgmq_cert_destroy (&cert);
    }
    if (rc == 0)
        rc = sgmq_keyfile_new_storage (storage, 1, error);
    if (rc == 0)
        rc = sgmq_keyfile_new_signing (signing, signing_pub, error);
    if (rc == 0 && (mkdir (certs, 0750) != 0 || mkdir (data, 0700) != 0)) {
        snprintf (error, sizeof error, "%s: cannot create: %s", certs, strerror (errno));
        rc = -1;
    }
    //  The broker makes a new, empty store only where this marker is
    //  (never where a store went missing).
    if (rc == 0) {
        char *marker = s_path (data, "new-store");
        int fd = marker ? open (marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
        if (fd < 0) {
            snprintf (error, sizeof error, "%s: cannot create: %s", data, strerror (errno));
            rc = -1;
        }
        else
            close (fd);
        free (marker);
    }
    if (rc == 0) {
        char config_error [SGMQ_CONFIG_ERROR_SIZE];
        sgmq_config_t *check = sgmq_config_load (config, config_error);
        if (!check) {
            snprintf (error, sizeof error, "%s", config_error);
            rc = -1;
        }
        sgmq_config_destroy (&check);
    }
    if (rc == 0)
        printf ("Made a new sgmq deployment in %s:\n"
                "  %-22s the broker's configuration (groups, deadlines, rules)\n"
                "  %-22s the broker's public certificate: give it to every client\n"
                "  %-22s the broker's secret certificate (mode 0600)\n"
                "  %-22s encrypts message bodies at rest (mode 0600; back it up)\n"
                "  %-22s signs audit checkpoints (mode 0600)\n"
                "  %-22s its public half: give it to auditors\n"
                "  %-22s admitted public certificates\n"
                "  %-22s the message store\n"
                "Next: sgmq cert new --name NAME --agency AGENCY --role ROLE "
                "--groups GROUP --out FILE --admit %s\n"
                "      sgmq-broker --config %s\n",
                dir, "sgmq.cfg", "broker.cert", "broker.cert_secret", "storage.key",
                "signing.key", "signing.pub", "certs/", "data/", dir, config);
    else
        fprintf (stderr, "sgmq init: %s\n", *error ? error : "out of memory");
    free (text);
    free (config);
    free (broker_cert);
    free (storage);
    free (signing);
    free (signing_pub);
    free (certs);
    free (data);
    return rc ? SGMQ_EXIT_FAILED : 0;
}

//  ---- cert ------------------------------------------------------------------

static const s_opt_t s_cert_opts [] = {
    { "name", true, "the principal's name (a person's role or a system)" },
    { "agency", true, "its agency (free text, at most 64 bytes)" },
    { "role", true, "publisher, member, auditor, admin (comma-separated)" },
    { "groups", true, "groups it belongs to (comma-separated)" },
    { "out", true, "where to write the cert (and OUT_secret)" },
    { "admit", true, "also admit it to this deployment folder" },
    { "config", true, "cert list: check groups against this config" },
    { "json", false, "cert list: one JSON object per line" },
    { NULL, false, NULL }
};

static sgmq_config_t *
s_deployment_config (const char *dir, char *error)
{
    char *path = s_path (dir, "sgmq.cfg");
    sgmq_config_t *config = path ? sgmq_config_load (path, error) : NULL;
    free (path);
    return config;
}

static int
s_cert_new (s_args_t *args)
{
    const char *name = s_get (args, "name"), *agency = s_get (args, "agency");
    const char *roles = s_get (args, "role"), *groups = s_get (args, "groups");
    const char *out = s_get (args, "out"), *admit = s_get (args, "admit");
    if (!name || !agency || !roles || !out)
        return s_usage_error ("cert", "cert new needs --name, --agency, --role and --out");
    if (!sgmq_registry_name_ok (name))
        return s_usage_error ("cert", "--name must be 1 to %d bytes of text without "
                              "control characters", SGMQ_REGISTRY_MAX_NAME);
    if (strcmp (name, SGMQ_REGISTRY_BROKER_NAME) == 0)
        return s_usage_error ("cert", "--name %s is the broker's own name",
                              SGMQ_REGISTRY_BROKER_NAME);
    if (!sgmq_registry_name_ok (agency))
        return s_usage_error ("cert", "--agency must be 1 to %d bytes of text without "
                              "control characters", SGMQ_REGISTRY_MAX_NAME);
    uint32_t role_bits;
    char role_error [128];
    if (sgmq_registry_roles_parse (roles, &role_bits, role_error))
        return s_usage_error ("cert", "--role: %s", role_error);
    char error [SGMQ_CONFIG_ERROR_SIZE];
    sgmq_config_t *config = NULL;
    if (admit && !(config = s_deployment_config (admit, error))) {
        fprintf (stderr, "sgmq cert: --admit %s: %s\n", admit, error);
        return SGMQ_EXIT_FAILED;
    }
    char *copy = groups ? strdup (groups) : NULL;
    char *save = NULL;
    for (char *g = copy ? strtok_r (copy, ",", &save) : NULL; g; g = strtok_r (NULL, ",", &save))
        if (!sgmq_registry_group_ok (g) || (config && !sgmq_config_group_known (config, g))) {
            int rc = s_usage_error ("cert", "unknown group '%s'%s%s", g,
                                    config ? " in " : "", config ? admit : "");
            free (copy);
            sgmq_config_destroy (&config);
            return rc;
        }
    free (copy);
    char roles_text [64];
    sgmq_registry_roles_format (role_bits, roles_text, sizeof roles_text);
    sgmq_cert_t *cert = sgmq_cert_new ();
    int rc = cert ? 0 : -1;
    if (rc == 0)
        rc = sgmq_cert_set_meta (cert, "name", name, error);
    if (rc == 0)
        rc = sgmq_cert_set_meta (cert, "agency", agency, error);
    if (rc == 0)
        rc = sgmq_cert_set_meta (cert, "roles", roles_text, error);
    if (rc == 0 && groups)
        rc = sgmq_cert_set_meta (cert, "groups", groups, error);
    if (rc == 0)
        rc = sgmq_cert_save (cert, out, error);
    char *admitted = NULL;
    if (rc == 0 && admit) {
        char *out_copy = strdup (out);
        char *certs = s_path (admit, "certs");
        admitted = out_copy && certs ? s_path (certs, basename (out_copy)) : NULL;
        rc = admitted ? sgmq_cert_save_public (cert, admitted, true, error) : -1;
        free (out_copy);
        free (certs);
        if (rc) {
            //  Not admitted: take back the pair just made (save refuses to
            //  overwrite, so they are ours), so that the command can be
            //  run again as it was.
            char secret [PATH_MAX];
            unlink (out);
            if ((size_t) snprintf (secret, sizeof secret, "%s_secret", out) < sizeof secret)
                unlink (secret);
        }
    }
    if (rc == 0) {
        printf ("%s\n  public key   %s\n  public cert  %s\n  secret cert  %s_secret "
                "(mode 0600: give it only to %s)\n", name, sgmq_cert_public_txt (cert),
                out, out, name);
        if (admitted)
            printf ("  admitted     %s (the broker picks it up within 2 seconds)\n",
                    admitted);
    }
    else
        fprintf (stderr, "sgmq cert: %s\n", *error ? error : "cannot make the cert");
    free (admitted);
    sgmq_cert_destroy (&cert);
    sgmq_config_destroy (&config);
    return rc ? SGMQ_EXIT_FAILED : 0;
}

static int
s_cert_list (s_args_t *args)
{
    if (args->positional_count != 2)
        return s_usage_error ("cert", "cert list needs one folder: sgmq cert list DIR");
    const char *dir = args->positional [1];
    char error [SGMQ_CONFIG_ERROR_SIZE];
    sgmq_config_t *config = NULL;
    if (s_has (args, "config")
    &&  !(config = sgmq_config_load (s_get (args, "config"), error))) {
        fprintf (stderr, "sgmq cert: %s\n", error);
        return SGMQ_EXIT_FAILED;
    }
    sgmq_registry_t *registry = sgmq_registry_load (dir,
        config ? sgmq_config_group_ids (config) : NULL,
        config ? sgmq_config_group_count (config) : 0, error);
    sgmq_config_destroy (&config);
    if (!registry) {
        fprintf (stderr, "sgmq cert: %s\n", error);
        return SGMQ_EXIT_FAILED;
    }
    bool json = s_has (args, "json");
    //  Columns as wide as their longest entry (bytes: names are mostly ASCII).
    int name_width = 4, agency_width = 6;
    for (size_t i = 0; i < sgmq_registry_size (registry); i++) {
        const sgmq_principal_t *p = sgmq_registry_at (registry, i);
        if ((int) strlen (sgmq_principal_name (p)) > name_width)
            name_width = (int) strlen (sgmq_principal_name (p));
        if ((int) strlen (sgmq_principal_agency (p)) > agency_width)
            agency_width = (int) strlen (sgmq_principal_agency (p));
    }
    if (!json)
        printf ("%-*s  %-*s  %-20s %-40s %s\n", name_width, "NAME", agency_width,
                "AGENCY", "ROLES", "KEY", "GROUPS");
    for (size_t i = 0; i < sgmq_registry_size (registry); i++) {
        const sgmq_principal_t *p = sgmq_registry_at (registry, i);
        char roles [64];
        sgmq_registry_roles_format (sgmq_principal_roles (p), roles, sizeof roles);
        sgmq_strlist_t groups = {
            (uint32_t) sgmq_principal_group_count (p), sgmq_principal_groups (p)
        };
        if (json) {
            printf ("{\"name\":");
            sgmq_json_write_string (stdout, sgmq_principal_name (p));
            printf (",\"agency\":");
            sgmq_json_write_string (stdout, sgmq_principal_agency (p));
            printf (",\"roles\":");
            sgmq_strlist_t role_list = { 0, NULL };
            const char *role_items [SGMQ_PROTO_MAX_ROLES];
            for (uint32_t r = 1; r <= SGMQ_ROLE_ADMIN; r <<= 1)
                if (sgmq_principal_roles (p) & r)
                    role_items [role_list.count++] = sgmq_registry_role_name (r);
            role_list.items = role_items;
            s_json_list (stdout, &role_list);
            printf (",\"groups\":");
            s_json_list (stdout, &groups);
            printf (",\"key\":\"%s\",\"file\":", sgmq_principal_key (p));
            sgmq_json_write_string (stdout, sgmq_principal_file (p));
            printf ("}\n");
        }
        else {
            printf ("%-*s  %-*s  %-20s %-40s ", name_width, sgmq_principal_name (p),
                    agency_width, sgmq_principal_agency (p), roles, sgmq_principal_key (p));
            for (uint32_t g = 0; g < groups.count; g++)
                printf ("%s%s", g ? "," : "", groups.items [g]);
            printf ("\n");
        }
    }
    size_t problems = sgmq_registry_problem_count (registry);
    for (size_t i = 0; i < problems; i++)
        fprintf (stderr, "sgmq cert: rejected: %s\n", sgmq_registry_problem (registry, i));
    sgmq_registry_destroy (&registry);
    return problems ? SGMQ_EXIT_FAILED : 0;
}

static int
s_cert (s_args_t *args)
{
    if (args->positional_count >= 1 && strcmp (args->positional [0], "new") == 0) {
        if (args->positional_count != 1)
            return s_usage_error ("cert", "cert new takes options only");
        return s_cert_new (args);
    }
    if (args->positional_count >= 1 && strcmp (args->positional [0], "list") == 0)
        return s_cert_list (args);
    return s_usage_error ("cert", "say `sgmq cert new ...` or `sgmq cert list DIR`");
}

//  ---- whoami, status --------------------------------------------------------

static const s_opt_t s_json_opts [] = {
    { "json", false, "print JSON" },
    { NULL, false, NULL }
};

static void
s_identity_json (sgmq_client_t *client)
{
    printf ("{\"name\":");
    sgmq_json_write_string (stdout, sgmq_client_name (client));
    printf (",\"agency\":");
    sgmq_json_write_string (stdout, sgmq_client_agency (client));
    printf (",\"roles\":");
    s_json_list (stdout, sgmq_client_roles (client));
    printf (",\"groups\":");
    s_json_list (stdout, sgmq_client_groups (client));
}

static void
s_identity_text (sgmq_client_t *client)
{
    const sgmq_strlist_t *roles = sgmq_client_roles (client);
    const sgmq_strlist_t *groups = sgmq_client_groups (client);
    printf ("name:   %s\nagency: %s\nroles:  ", sgmq_client_name (client),
            sgmq_client_agency (client));
    for (uint32_t i = 0; i < roles->count; i++)
        printf ("%s%s", i ? ", " : "", roles->items [i]);
    printf ("\ngroups: ");
    for (uint32_t i = 0; i < groups->count; i++)
        printf ("%s%s", i ? ", " : "", groups->items [i]);
    printf ("%s\n", groups->count ? "" : "(none)");
}

static int
s_whoami (s_args_t *args)
{
    if (args->positional_count)
        return s_usage_error ("whoami", "takes no arguments");
    int exit_code = 0;
    sgmq_client_t *client = s_connect (args, &exit_code);
    if (!client)
        return exit_code;
    if (s_has (args, "json")) {
        s_identity_json (client);
        printf ("}\n");
    }
    else
        s_identity_text (client);
    sgmq_client_destroy (&client);
    return 0;
}

typedef struct {
    uint64_t count, overdue;
} s_tally_t;

static int
s_tally (const sgmq_pending_item_t *item, void *arg)
{
    s_tally_t *tally = arg;
    tally->count++;
    tally->overdue += item->overdue;
    return 0;
}

static int
s_status (s_args_t *args)
{
    if (args->positional_count)
        return s_usage_error ("status", "takes no arguments");
    int exit_code = 0;
    int64_t start = zclock_mono ();
    sgmq_client_t *client = s_connect (args, &exit_code);
    if (!client)
        return exit_code;
    int64_t connected = zclock_mono () - start;
    sgmq_error_t error;
    s_tally_t mine = { 0, 0 }, all = { 0, 0 };
    bool wide = sgmq_client_has_role (client, "auditor")
             || sgmq_client_has_role (client, "admin");
    for (uint32_t i = 0; i < sgmq_client_groups (client)->count; i++)
        wide |= strcmp (sgmq_client_groups (client)->items [i], "executive") == 0;
    int rc = sgmq_client_pending (client, SGMQ_SCOPE_MINE, false, s_tally, &mine, &error);
    if (rc == 0 && wide)
        rc = sgmq_client_pending (client, SGMQ_SCOPE_ALL, false, s_tally, &all, &error);
    if (rc) {
        sgmq_client_destroy (&client);
        return s_report ("status", &error);
    }
    if (s_has (args, "json")) {
        printf ("{\"broker\":\"reachable\",\"version\":");
        sgmq_json_write_string (stdout, sgmq_client_broker_version (client));
        printf (",\"connect_ms\":%lld,\"identity\":", (long long) connected);
        s_identity_json (client);
        printf ("},\"pending\":%llu,\"overdue\":%llu", (unsigned long long) mine.count,
                (unsigned long long) mine.overdue);
        if (wide)
            printf (",\"pending_all\":%llu,\"overdue_all\":%llu",
                    (unsigned long long) all.count, (unsigned long long) all.overdue);
        printf ("}\n");
    }
    else {
        printf ("broker: reachable (%s, connected in %lld ms)\n",
                sgmq_client_broker_version (client), (long long) connected);
        s_identity_text (client);
        printf ("pending for you: %llu (%llu overdue)\n", (unsigned long long) mine.count,
                (unsigned long long) mine.overdue);
        if (wide)
            printf ("pending for everyone: %llu (%llu overdue)\n",
                    (unsigned long long) all.count, (unsigned long long) all.overdue);
    }
    sgmq_client_destroy (&client);
    return 0;
}

//  ---- publish ---------------------------------------------------------------

static const s_opt_t s_publish_opts [] = {
    { "file", true, "read the fields from a JSON document (- for stdin)" },
    { "ref", true, "client reference: a retry with the same ref is stored once" },
    { "json", false, "print the confirm as JSON" },
    //  escalation
    { "group", true, "escalation: the raising group" },
    { "title", true, "escalation, learning: title" },
    { "summary", true, "escalation, response, learning: summary" },
    { "severity", true, "escalation: low, medium, high or critical" },
    { "requested", true, "escalation: the decision or help requested" },
    { "respond-by", true, "escalation: respond by (UK date or time)" },
    { "case-ref", true, "escalation: pseudonymous case reference (never a name)" },
    //  response
    { "to", true, "response: the escalation's seq" },
    { "decision", true, "response: the Executive's decision" },
    { "action", true, "response: an action (repeat for more)" },
    //  learning
    { "review-type", true, "learning: cspr, rapid-review, audit or other" },
    { "review-ref", true, "learning: the review's reference" },
    { "theme", true, "learning: a theme (repeat for more)" },
    { "recommendation", true, "learning: a recommendation (repeat for more)" },
    { "groups", true, "learning: target groups (comma-separated)" },
    { "session-by", true, "learning: learning session due (CSPRs: default +14 days)" },
    { "reflection-by", true, "learning: reflection session due (CSPRs: default +1 year)" },
    //  learning-update
    { "alert", true, "learning-update: the learning alert's seq" },
    { "held", true, "learning-update: session or reflection" },
    { "on", true, "learning-update: when it was held (default now)" },
    { "notes", true, "learning-update: notes" },
    { NULL, false, NULL }
};

static int
s_publish (s_args_t *args)
{
    if (args->positional_count != 1)
        return s_usage_error ("publish", "say which kind: escalation, response, "
                              "learning or learning-update");
    const char *kind_name = args->positional [0];
    sgmq_body_t body;
    memset (&body, 0, sizeof body);
    body.kind = (sgmq_kind_t) sgmq_proto_kind_parse (kind_name, strlen (kind_name));
    if (!body.kind || body.kind == SGMQ_KIND_REMINDER)
        return s_usage_error ("publish", "unknown kind '%s' (escalation, response, "
                              "learning or learning-update; reminders come only from "
                              "the broker)", kind_name);
    s_lists_t *lists = calloc (1, sizeof *lists);
    if (!lists)
        return SGMQ_EXIT_FAILED;
    const char *ref = s_get (args, "ref");
    int rc = 0;
    const char *file = s_get (args, "file");
    if (file) {
        FILE *in = strcmp (file, "-") == 0 ? stdin : fopen (file, "rb");
        size_t size = 0;
        char *text = in ? s_read_all (in, &size) : NULL;
        if (in && in != stdin)
            fclose (in);
        char error [SGMQ_JSON_ERROR_SIZE];
        sgmq_json_t *doc = text ? sgmq_json_parse (text, size, error) : NULL;
        if (!text)
            rc = s_usage_error ("publish", "cannot read %s%s%s", file, errno ? ": " : "",
                                errno ? strerror (errno) : "");
        else
        if (!doc)
            rc = s_usage_error ("publish", "%s: %s", file, error);
        else
            rc = s_body_from_json (&body, doc, lists, "publish", &ref);
        sgmq_json_destroy (&doc);
        free (text);
    }
    //  Flags after (or instead of) the file; they win.
    const s_field_t *fields = s_fields_of (body.kind);
    for (size_t i = 0; i < args->given_count && rc == 0; i++) {
        const char *opt = args->given [i].opt->name;
        size_t f = 0;
        char flag [40];
        for (; fields [f].key; f++) {
            s_flag_name (fields [f].key, flag, sizeof flag);
            if (strcmp (flag, opt) == 0)
                break;
        }
        bool own = strcmp (opt, "file") == 0 || strcmp (opt, "ref") == 0
                || strcmp (opt, "json") == 0 || s_find_opt (s_client_opts, opt, strlen (opt));
        if (!fields [f].key && !own)
            rc = s_usage_error ("publish", "--%s is not a field of %s %s", opt,
                                s_article (kind_name), kind_name);
        else
        if (fields [f].key) {
            char shown [48];
            snprintf (shown, sizeof shown, "--%s", flag);
            if (s_field_set (&body, &fields [f], f, args->given [i].value, lists,
                             "publish", shown))
                rc = SGMQ_EXIT_USAGE;
        }
    }
    sgmq_proto_error_t check;
    if (rc == 0 && sgmq_proto_check_body (&body, &check)) {
        //  Name the flag, not the wire path ("body.respond_by").
        const char *field = strncmp (check.field, "body.", 5) == 0 ? check.field + 5
                                                                  : check.field;
        char flag [64];
        s_flag_name (field, flag, sizeof flag);
        rc = check.code == SGMQ_E_MISSING_FIELD
           ? s_usage_error ("publish", "--%s is required for %s %s", flag,
                            s_article (kind_name), kind_name)
           : s_usage_error ("publish", "--%s: %s", flag, check.reason);
    }
    if (rc == 0 && ref && (!*ref || strlen (ref) > SGMQ_PROTO_MAX_NAME))
        rc = s_usage_error ("publish", "--ref must be 1 to %d characters", SGMQ_PROTO_MAX_NAME);
    sgmq_client_t *client = rc == 0 ? s_connect (args, &rc) : NULL;
    if (client) {
        sgmq_confirm_t confirm;
        sgmq_error_t error;
        if (sgmq_client_publish (client, ref, &body, &confirm, &error))
            rc = s_report ("publish", &error);
        else
        if (s_has (args, "json")) {
            printf ("{\"seq\":%llu,\"time\":", (unsigned long long) confirm.seq);
            s_json_time (stdout, confirm.time);
            printf (",\"kind\":\"%s\",\"ref\":", kind_name);
            sgmq_json_write_string (stdout, confirm.ref);
            printf (",\"duplicate\":%s}\n", confirm.duplicate ? "true" : "false");
        }
        else
            printf ("%llu\n", (unsigned long long) confirm.seq);
        sgmq_client_destroy (&client);
    }
    s_lists_free (lists);
    free (lists);
    return rc;
}

//  ---- listen, ack -----------------------------------------------------------

static const s_opt_t s_listen_opts [] = {
    { "ack", false, "acknowledge each alert after showing it" },
    { "json", false, "one JSON object per line" },
    { "count", true, "exit after this many alerts" },
    { "timeout", true, "exit after this many seconds" },
    { "window", true, "alerts in flight at a time (default: the broker's)" },
    { NULL, false, NULL }
};

static void
s_show_delivery (const sgmq_delivery_t *d, bool json)
{
    if (json) {
        printf ("{\"seq\":%llu,\"kind\":\"%s\",\"from\":", (unsigned long long) d->seq,
                sgmq_proto_kind_name (d->kind));
        sgmq_json_write_string (stdout, d->from);
        printf (",\"agency\":");
        sgmq_json_write_string (stdout, d->agency);
        printf (",\"groups\":");
        s_json_list (stdout, &d->groups);
        printf (",\"time\":");
        s_json_time (stdout, d->time);
        printf (",\"attempt\":%u,\"body\":", d->attempt);
        s_body_json (stdout, &d->body);
        printf ("}\n");
    }
    else {
        printf ("[%llu] %s from ", (unsigned long long) d->seq,
                sgmq_proto_kind_name (d->kind));
        sgmq_text_write (stdout, d->from, "");
        printf (" (");
        sgmq_text_write (stdout, d->agency, "");
        printf (") to ");
        for (uint32_t i = 0; i < d->groups.count; i++) {
            printf ("%s", i ? ", " : "");
            sgmq_text_write (stdout, d->groups.items [i], "");
        }
        printf (" at ");
        s_print_time (stdout, d->time);
        if (d->attempt > 1)
            printf (" (delivery %u)", d->attempt);
        printf ("\n");
        s_body_text (stdout, &d->body);
    }
    fflush (stdout);
}

static int
s_listen (s_args_t *args)
{
    if (args->positional_count)
        return s_usage_error ("listen", "takes no arguments");
    uint64_t count = 0, seconds = 0, window = 0;
    if (s_get_number (args, "count", 1, UINT32_MAX, &count)
    ||  s_get_number (args, "timeout", 1, 31536000, &seconds)
    ||  s_get_number (args, "window", 1, SGMQ_PROTO_MAX_WINDOW, &window))
        return SGMQ_EXIT_USAGE;
    int rc = 0;
    sgmq_client_t *client = s_connect (args, &rc);
    if (!client)
        return rc;
    bool json = s_has (args, "json"), ack = s_has (args, "ack");
    sgmq_error_t error;
    uint64_t backlog = 0;
    if (sgmq_client_subscribe (client, (uint32_t) window, &backlog, &error)) {
        sgmq_client_destroy (&client);
        return s_report ("listen", &error);
    }
    if (!json)
        fprintf (stderr, "sgmq listen: %s; %llu waiting\n", sgmq_client_name (client),
                 (unsigned long long) backlog);
    int64_t deadline = seconds ? zclock_mono () + (int64_t) seconds * 1000 : -1;
    uint64_t shown = 0;
    //  Seen and acked: a redelivery of one of these (after a reconnect)
    //  is not shown twice.
    zhashx_t *acked = zhashx_new ();
    while (!count || shown < count) {
        int wait = deadline < 0 ? -1 : (int) (deadline - zclock_mono ());
        if (deadline >= 0 && wait <= 0)
            break;
        const sgmq_delivery_t *delivery;
        if (sgmq_client_recv (client, wait, &delivery, &error)) {
            if (error.code == SGMQ_CLIENT_E_TIMEOUT)
                break;
            rc = s_report ("listen", &error);
            break;
        }
        char key [24];
        snprintf (key, sizeof key, "%llu", (unsigned long long) delivery->seq);
        if (zhashx_lookup (acked, key))
            continue;
        s_show_delivery (delivery, json);
        shown++;
        if (ack) {
            uint64_t seq = delivery->seq;
            if (sgmq_client_ack (client, seq, NULL, &error)) {
                rc = s_report ("listen", &error);
                break;
            }
            zhashx_insert (acked, key, (void *) 1);
            if (!json)
                printf ("    acknowledged\n");
        }
    }
    zhashx_destroy (&acked);
    sgmq_client_destroy (&client);
    return rc;
}

static int
s_ack (s_args_t *args)
{
    if (args->positional_count == 0)
        return s_usage_error ("ack", "say which messages: sgmq ack SEQ...");
    uint64_t seqs [S_MAX_POSITIONAL];
    for (size_t i = 0; i < args->positional_count; i++) {
        char *end;
        errno = 0;
        seqs [i] = strtoull (args->positional [i], &end, 10);
        if (!*args->positional [i] || *end || errno || seqs [i] == 0
        ||  args->positional [i][0] == '-')
            return s_usage_error ("ack", "'%s' is not a message number",
                                  args->positional [i]);
    }
    int rc = 0;
    sgmq_client_t *client = s_connect (args, &rc);
    if (!client)
        return rc;
    for (size_t i = 0; i < args->positional_count; i++) {
        sgmq_error_t error;
        bool duplicate = false;
        if (sgmq_client_ack (client, seqs [i], &duplicate, &error)) {
            rc = s_report ("ack", &error);
            continue;
        }
        printf ("%llu acknowledged%s\n", (unsigned long long) seqs [i],
                duplicate ? " (already)" : "");
    }
    sgmq_client_destroy (&client);
    return rc;
}

//  ---- pending ---------------------------------------------------------------

static const s_opt_t s_pending_opts [] = {
    { "overdue", false, "only items past their deadline" },
    { "all", false, "everyone's (Executive members, auditors, admins)" },
    { "mine", false, "who has and has not acknowledged what you published" },
    { "json", false, "one JSON object per line" },
    { NULL, false, NULL }
};

static int
s_pending_print (const sgmq_pending_item_t *item, void *arg)
{
    bool json = *(bool *) arg;
    if (json) {
        printf ("{\"seq\":%llu,\"kind\":\"%s\",\"recipient\":",
                (unsigned long long) item->seq, sgmq_proto_kind_name (item->kind));
        sgmq_json_write_string (stdout, item->recipient);
        printf (",\"state\":\"%s\",\"time\":", sgmq_proto_state_name (item->state));
        s_json_time (stdout, item->time);
        printf (",\"from\":");
        sgmq_json_write_string (stdout, item->from);
        if (item->title) {
            printf (",\"title\":");
            sgmq_json_write_string (stdout, item->title);
        }
        printf (",\"attempts\":%u", item->attempts);
        if (item->last_delivered) {
            printf (",\"last_delivered\":");
            s_json_time (stdout, item->last_delivered);
        }
        if (item->acked_at) {
            printf (",\"acked_at\":");
            s_json_time (stdout, item->acked_at);
        }
        if (item->deadline) {
            printf (",\"deadline\":");
            s_json_time (stdout, item->deadline);
        }
        printf (",\"overdue\":%s}\n", item->overdue ? "true" : "false");
    }
    else {
        char when [SGMQ_TIME_TEXT_SIZE], due [SGMQ_TIME_TEXT_SIZE];
        sgmq_time_format_uk (item->time, when);
        sgmq_time_format_uk (item->deadline, due);
        printf ("%6llu  %-15s %-28.28s %-12s %-20s %-20s%s  ",
                (unsigned long long) item->seq, sgmq_proto_kind_name (item->kind),
                item->recipient, sgmq_proto_state_name (item->state), when,
                item->deadline ? due : "-", item->overdue ? " OVERDUE" : "");
        sgmq_text_write (stdout, item->title, "");
        putchar ('\n');
    }
    return 0;
}

static int
s_pending (s_args_t *args)
{
    if (args->positional_count)
        return s_usage_error ("pending", "takes no arguments");
    if (s_has (args, "all") && s_has (args, "mine"))
        return s_usage_error ("pending", "--all and --mine are different views; "
                              "choose one");
    sgmq_scope_t scope = s_has (args, "all") ? SGMQ_SCOPE_ALL
                       : s_has (args, "mine") ? SGMQ_SCOPE_PUBLISHED : SGMQ_SCOPE_MINE;
    int rc = 0;
    sgmq_client_t *client = s_connect (args, &rc);
    if (!client)
        return rc;
    bool json = s_has (args, "json");
    if (!json)
        printf ("%6s  %-15s %-28s %-12s %-20s %-20s  %s\n", "SEQ", "KIND", "RECIPIENT",
                "STATE", "SENT", "DEADLINE", "TITLE");
    sgmq_error_t error;
    if (sgmq_client_pending (client, scope, s_has (args, "overdue"), s_pending_print,
                             &json, &error))
        rc = s_report ("pending", &error);
    sgmq_client_destroy (&client);
    return rc;
}

//  ---- replay, verify --------------------------------------------------------

static const s_opt_t s_replay_opts [] = {
    { "from", true, "first sequence number" },
    { "to", true, "last sequence number" },
    { "since", true, "from this time (UK date or time)" },
    { "until", true, "up to this time (a date includes the whole day)" },
    { "group", true, "only messages addressed to this group" },
    { "kind", true, "only this kind" },
    { "format", true, "jsonl (default) or csv" },
    { NULL, false, NULL }
};

static void
s_replay_jsonl (const sgmq_replay_item_t *item)
{
    printf ("{\"seq\":%llu,\"time\":", (unsigned long long) item->seq);
    s_json_time (stdout, item->time);
    printf (",\"kind\":\"%s\",\"from\":", sgmq_proto_kind_name (item->kind));
    sgmq_json_write_string (stdout, item->from);
    printf (",\"from_key\":");
    sgmq_json_write_string (stdout, item->from_key);
    printf (",\"agency\":");
    sgmq_json_write_string (stdout, item->agency);
    printf (",\"groups\":");
    s_json_list (stdout, &item->groups);
    printf (",\"body\":");
    if (item->body.kind)
        s_body_json (stdout, &item->body);
    else
        printf ("null");
    printf (",\"hash\":");
    s_hex_json (stdout, item->hash, SGMQ_PROTO_HASH_SIZE);
    printf (",\"prev\":");
    s_hex_json (stdout, item->prev, SGMQ_PROTO_HASH_SIZE);
    printf (",\"acks\":[");
    for (uint32_t i = 0; i < item->ack_count; i++) {
        printf ("%s{\"by\":", i ? "," : "");
        sgmq_json_write_string (stdout, item->acks [i].by);
        printf (",\"key\":");
        sgmq_json_write_string (stdout, item->acks [i].key);
        printf (",\"time\":");
        s_json_time (stdout, item->acks [i].time);
        printf ("}");
    }
    printf ("]}\n");
}

static void
s_replay_csv (const sgmq_replay_item_t *item)
{
    char when [SGMQ_TIME_TEXT_SIZE], hash [SGMQ_PROTO_HASH_SIZE * 2 + 1];
    sodium_bin2hex (hash, sizeof hash, item->hash, SGMQ_PROTO_HASH_SIZE);
    printf ("%llu,%s,%s,", (unsigned long long) item->seq,
            sgmq_time_format (item->time, when), sgmq_proto_kind_name (item->kind));
    sgmq_csv_write_field (stdout, item->from);
    fputc (',', stdout);
    sgmq_csv_write_field (stdout, item->agency);
    fputc (',', stdout);
    char *groups = NULL;
    size_t size = 0;
    FILE *buffer = open_memstream (&groups, &size);
    for (uint32_t i = 0; buffer && i < item->groups.count; i++)
        fprintf (buffer, "%s%s", i ? ";" : "", item->groups.items [i]);
    if (buffer)
        fclose (buffer);
    sgmq_csv_write_field (stdout, groups ? groups : "");
    free (groups);
    printf (",%s,%u,", hash, item->ack_count);
    char *body = NULL;
    buffer = open_memstream (&body, &size);
    if (buffer) {
        if (item->body.kind)
            s_body_json (buffer, &item->body);
        fclose (buffer);
    }
    sgmq_csv_write_field (stdout, body ? body : "");
    free (body);
    printf ("\n");
}

static void
s_progress (uint64_t done, uint64_t total, void *arg)
{
    (void) arg;
    fprintf (stderr, "\r%llu of %llu messages", (unsigned long long) done,
             (unsigned long long) total);
}

static int
s_replay (s_args_t *args)
{
    if (args->positional_count)
        return s_usage_error ("replay", "takes no arguments");
    sgmq_replay_query_t query = { 0 };
    if (s_get_number (args, "from", 1, UINT64_MAX, &query.from)
    ||  s_get_number (args, "to", 1, UINT64_MAX, &query.to))
        return SGMQ_EXIT_USAGE;
    const char *since = s_get (args, "since"), *until = s_get (args, "until");
    if (since && sgmq_time_parse (since, false, &query.since))
        return s_usage_error ("replay", "--since must be a time or a date");
    if (until && sgmq_time_parse (until, true, &query.until))
        return s_usage_error ("replay", "--until must be a time or a date");
    const char *kind = s_get (args, "kind");
    if (kind && !(query.kind = (sgmq_kind_t) sgmq_proto_kind_parse (kind, strlen (kind))))
        return s_usage_error ("replay", "--kind must be escalation, response, learning, "
                              "learning-update or reminder");
    query.group = s_get (args, "group");
    const char *format = s_get (args, "format");
    if (format && strcmp (format, "jsonl") && strcmp (format, "csv"))
        return s_usage_error ("replay", "--format must be jsonl or csv");
    bool csv = format && strcmp (format, "csv") == 0;
    int rc = 0;
    sgmq_client_t *client = s_connect (args, &rc);
    if (!client)
        return rc;
    sgmq_error_t error;
    sgmq_replay_t *replay = sgmq_client_replay (client, &query, &error);
    if (!replay) {
        sgmq_client_destroy (&client);
        return s_report ("replay", &error);
    }
    if (csv)
        printf ("seq,time,kind,from,agency,groups,hash,acks,body\n");
    bool progress = isatty (STDERR_FILENO);
    const sgmq_replay_item_t *item;
    uint64_t count = 0;
    while ((rc = sgmq_replay_next (replay, &item, &error)) == 1) {
        if (csv)
            s_replay_csv (item);
        else
            s_replay_jsonl (item);
        if (progress && ++count % 4096 == 0)
            fprintf (stderr, "\rreplayed %llu messages", (unsigned long long) count);
    }
    if (progress && count >= 4096)
        fprintf (stderr, "\n");
    rc = rc < 0 ? s_report ("replay", &error) : 0;
    sgmq_replay_destroy (&replay);
    sgmq_client_destroy (&client);
    return rc;
}

static const s_opt_t s_verify_opts [] = {
    { "signing-pub", true, "the broker's signing.pub, to check signed checkpoints "
                           "(or SGMQ_SIGNING_PUB)" },
    { "expect", true, "SEQ:HASH printed by an earlier verify: the history must still "
                      "hold it" },
    { "json", false, "print the result as JSON" },
    { NULL, false, NULL }
};

//  The chain hash of message `seq` (a replay of that one message). 0, or
//  -1 with `error` set (SGMQ_E_NOT_FOUND: no such message).
static int
s_hash_of (sgmq_client_t *client, uint64_t seq, uint8_t *hash, sgmq_error_t *error)
{
    sgmq_replay_query_t query = { .from = seq, .to = seq };
    sgmq_replay_t *replay = sgmq_client_replay (client, &query, error);
    if (!replay)
        return -1;
    const sgmq_replay_item_t *item;
    int rc, found = 0;
    while ((rc = sgmq_replay_next (replay, &item, error)) == 1)
        if (item->seq == seq) {
            memcpy (hash, item->hash, SGMQ_PROTO_HASH_SIZE);
            found = 1;
        }
    sgmq_replay_destroy (&replay);
    if (rc == 0 && !found) {
        error->code = SGMQ_E_NOT_FOUND;
        snprintf (error->reason, sizeof error->reason, "no message %llu",
                  (unsigned long long) seq);
        return -1;
    }
    return rc < 0 ? -1 : 0;
}

//  --expect SEQ:HASH (64 hex digits). 0, or -1 if malformed.
static int
s_parse_expect (const char *text, uint64_t *seq, uint8_t *hash)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || end == text || *end != ':' || value == 0 || strlen (end + 1) != 64)
        return -1;
    *seq = value;
    return sodium_hex2bin (hash, SGMQ_PROTO_HASH_SIZE, end + 1, 64, NULL, NULL, NULL);
}

static int
s_verify (s_args_t *args)
{
    if (args->positional_count)
        return s_usage_error ("verify", "takes no arguments");
    const char *pub_path = s_get (args, "signing-pub");
    if (!pub_path)
        pub_path = getenv ("SGMQ_SIGNING_PUB");
    uint8_t signing_pk [SGMQ_KEYFILE_SIGN_PK_SIZE];
    char key_error [SGMQ_KEYFILE_ERROR_SIZE];
    if (pub_path && sgmq_keyfile_read_signing_public (pub_path, signing_pk, key_error)) {
        fprintf (stderr, "sgmq verify: %s\n", key_error);
        return SGMQ_EXIT_USAGE;
    }
    const char *expect_text = s_get (args, "expect");
    uint64_t expect_seq = 0;
    uint8_t expect_hash [SGMQ_PROTO_HASH_SIZE];
    if (expect_text && s_parse_expect (expect_text, &expect_seq, expect_hash))
        return s_usage_error ("verify", "--expect takes SEQ:HASH as verify printed them "
                              "(a seq, a colon, 64 hex digits)");
    int rc = 0;
    sgmq_client_t *client = s_connect (args, &rc);
    if (!client)
        return rc;
    sgmq_verify_t report;
    sgmq_error_t error;
    bool progress = isatty (STDERR_FILENO);
    if (sgmq_client_verify (client, pub_path ? signing_pk : NULL, &report,
                            progress ? s_progress : NULL, NULL, &error)) {
        sgmq_client_destroy (&client);
        return s_report ("verify", &error);
    }
    if (progress && report.count >= 4096)
        fprintf (stderr, "\n");
    //  The head's hash, for the auditor to keep: a later history that does
    //  not hold it (--expect) was cut or rewritten.
    uint8_t head_hash [SGMQ_PROTO_HASH_SIZE];
    bool has_head = report.intact && report.head_seq
                 && s_hash_of (client, report.head_seq, head_hash, &error) == 0;
    if (report.intact && expect_text) {
        uint8_t hash [SGMQ_PROTO_HASH_SIZE];
        bool held = s_hash_of (client, expect_seq, hash, &error) == 0;
        if (!held || sodium_memcmp (hash, expect_hash, sizeof hash) != 0) {
            report.intact = false;
            report.bad_seq = expect_seq;
            snprintf (report.reason, sizeof report.reason, "message %llu %s what an "
                      "earlier verify saw: the history was cut or rewritten since",
                      (unsigned long long) expect_seq,
                      held ? "is not" : "is missing, against");
        }
    }
    sgmq_client_destroy (&client);
    char head_hex [SGMQ_PROTO_HASH_SIZE * 2 + 1] = "";
    if (has_head)
        sodium_bin2hex (head_hex, sizeof head_hex, head_hash, sizeof head_hash);
    if (s_has (args, "json")) {
        printf ("{\"intact\":%s,\"count\":%llu,\"head\":%llu",
                report.intact ? "true" : "false", (unsigned long long) report.count,
                (unsigned long long) report.head_seq);
        if (has_head && report.intact)
            printf (",\"head_hash\":\"%s\"", head_hex);
        if (!report.intact)
            printf (",\"bad_seq\":%llu", (unsigned long long) report.bad_seq);
        if (report.checkpoint_checked)
            printf (",\"checkpoint\":%llu", (unsigned long long) report.checkpoint_seq);
        if (report.reason [0]) {
            printf (",\"reason\":");
            sgmq_json_write_string (stdout, report.reason);
        }
        printf ("}\n");
    }
    else
    if (report.intact) {
        printf ("intact: %llu messages, chain head %llu\n",
                (unsigned long long) report.count, (unsigned long long) report.head_seq);
        if (has_head)
            printf ("keep for the next audit: --expect %llu:%s\n",
                    (unsigned long long) report.head_seq, head_hex);
        if (report.checkpoint_checked)
            printf ("signed checkpoint at %llu matches, signed by the broker's key\n",
                    (unsigned long long) report.checkpoint_seq);
        else
        if (report.reason [0])
            printf ("%s\n", report.reason);
        else
        if (!pub_path)
            printf ("signed checkpoint not checked: give --signing-pub (or "
                    "SGMQ_SIGNING_PUB) to check it\n");
    }
    else
        printf ("BROKEN at %llu: %s\n", (unsigned long long) report.bad_seq, report.reason);
    return report.intact ? 0 : SGMQ_EXIT_VERIFY_FAILED;
}

//  ---- tracker ---------------------------------------------------------------

static const s_opt_t s_tracker_opts [] = {
    { "since", true, "escalations raised and learning published from (UK date or time)" },
    { "until", true, "up to (a date includes the whole day)" },
    { "out", true, "the HTML report to write" },
    { "csv", true, "also write the same figures as CSV" },
    { NULL, false, NULL }
};

//  Write `file` through `write`, via a temp file renamed into place, so a
//  half-written report never replaces a good one.
static int
s_write_report (const char *path, sgmq_tracker_t *tracker,
                int (*write) (sgmq_tracker_t *, FILE *))
{
    size_t size = strlen (path) + 16;
    char *tmp = malloc (size);
    if (!tmp)
        return -1;
    //  A name nobody can have placed (a link) before us, readable by its
    //  owner only: the report holds titles and the Executive's decisions.
    snprintf (tmp, size, "%s.XXXXXX", path);
    int fd = mkstemp (tmp);
    FILE *file = fd >= 0 ? fdopen (fd, "w") : NULL;
    if (fd >= 0 && !file)
        close (fd);
    int rc = file ? write (tracker, file) : -1;
    if (file && fclose (file) != 0)
        rc = -1;
    if (rc == 0 && rename (tmp, path) != 0)
        rc = -1;
    if (rc)
        fprintf (stderr, "sgmq tracker: cannot write %s: %s\n", path, strerror (errno));
    if (fd >= 0)
        unlink (tmp);                   //  (gone already once renamed)
    free (tmp);
    return rc;
}

static int
s_tracker (s_args_t *args)
{
    if (args->positional_count)
        return s_usage_error ("tracker", "takes no arguments");
    const char *out = s_get (args, "out"), *csv = s_get (args, "csv");
    const char *since_text = s_get (args, "since"), *until_text = s_get (args, "until");
    if (!out)
        return s_usage_error ("tracker", "say where to write it: --out report.html");
    uint64_t since = 0, until = 0;
    if (since_text && sgmq_time_parse (since_text, false, &since))
        return s_usage_error ("tracker", "--since must be a time or a date");
    if (until_text && sgmq_time_parse (until_text, true, &until))
        return s_usage_error ("tracker", "--until must be a time or a date");
    if (since && until && since > until)
        return s_usage_error ("tracker", "--since is after --until");
    int rc = 0;
    sgmq_client_t *client = s_connect (args, &rc);
    if (!client)
        return rc;
    sgmq_error_t error;
    sgmq_tracker_t *tracker = sgmq_tracker_new (since, until, sgmq_time_now ());
    sgmq_report_t *report = tracker ? sgmq_client_report (client, since, until, &error) : NULL;
    if (!report)
        rc = tracker ? s_report ("tracker", &error) : SGMQ_EXIT_FAILED;
    const sgmq_cmd_t *item;
    int more;
    while (report && (more = sgmq_report_next (report, &item, &error)) == 1)
        if (sgmq_tracker_add (tracker, item)) {
            fprintf (stderr, "sgmq tracker: out of memory\n");
            rc = SGMQ_EXIT_FAILED;
            break;
        }
    if (report && rc == 0 && more < 0)
        rc = s_report ("tracker", &error);
    sgmq_report_destroy (&report);
    sgmq_client_destroy (&client);
    if (rc == 0 && s_write_report (out, tracker, sgmq_tracker_write_html))
        rc = SGMQ_EXIT_FAILED;
    if (rc == 0 && csv && s_write_report (csv, tracker, sgmq_tracker_write_csv))
        rc = SGMQ_EXIT_FAILED;
    size_t escalations = sgmq_tracker_escalations (tracker);
    size_t learning = sgmq_tracker_learning (tracker);
    if (rc == 0)
        printf ("Escalation Tracker: %zu escalation%s, %zu learning alert%s\n"
                "written to %s%s%s\n", escalations, escalations == 1 ? "" : "s",
                learning, learning == 1 ? "" : "s", out, csv ? " and " : "",
                csv ? csv : "");
    sgmq_tracker_destroy (&tracker);
    return rc;
}

//  ---- help and dispatch -----------------------------------------------------

static int s_help (s_args_t *args);

static const s_opt_t s_no_opts [] = { { NULL, false, NULL } };

static const s_command_t s_commands [] = {
    { "init", s_init, s_init_opts, false, "init DIR [--endpoint tcp://HOST:PORT]",
      "Make a new deployment in DIR: config, broker cert, storage and signing keys." },
    { "cert", s_cert, s_cert_opts, false,
      "cert new --name N --agency A --role R[,R] [--groups G[,G]] --out PATH [--admit DIR]\n"
      "       sgmq cert list DIR [--config DIR/sgmq.cfg] [--json]",
      "Make a principal's CURVE certificate, or list the principals of a certs folder." },
    { "whoami", s_whoami, s_json_opts, true, "whoami [--json]",
      "Ask the broker who it says you are." },
    { "status", s_status, s_json_opts, true, "status [--json]",
      "Broker reachability, your identity and how much is pending." },
    { "publish", s_publish, s_publish_opts, true,
      "publish escalation --group G --title T --summary S --severity low|medium|high|critical\n"
      "                    --requested TEXT --respond-by TIME [--case-ref REF]\n"
      "       sgmq publish response --to SEQ --decision TEXT --summary S [--action TEXT]...\n"
      "       sgmq publish learning --review-type cspr|rapid-review|audit|other --review-ref REF\n"
      "                    --title T --summary S --theme T... --recommendation R...\n"
      "                    --groups G[,G] [--session-by TIME] [--reflection-by TIME]\n"
      "       sgmq publish learning-update --alert SEQ --held session|reflection [--on TIME]\n"
      "       sgmq publish KIND --file F|- [--ref REF] [--json]",
      "Raise an escalation, answer one, or publish learning.\n"
      "Prints the sequence number once the broker has it on disk.\n"
      "TIME: 2026-12-01T09:00:00Z or 2026-12-01." },
    { "listen", s_listen, s_listen_opts, true,
      "listen [--ack] [--json] [--count N] [--timeout SECONDS] [--window N]",
      "Show alerts for your groups as they arrive, the backlog first." },
    { "ack", s_ack, s_no_opts, true, "ack SEQ...", "Acknowledge messages." },
    { "pending", s_pending, s_pending_opts, true, "pending [--overdue] [--all | --mine] [--json]",
      "What is not yet acknowledged, and by whom.\n"
      "Yours; everyone's (--all); or who has and has not acknowledged what you\n"
      "published (--mine)." },
    { "replay", s_replay, s_replay_opts, true,
      "replay [--from SEQ] [--to SEQ] [--since T] [--until T] [--group G] [--kind K] "
      "[--format jsonl|csv]",
      "Auditors: stream the history with each message's hash and acknowledgements." },
    { "verify", s_verify, s_verify_opts, true, "verify [--signing-pub DIR/signing.pub] [--expect SEQ:HASH] [--json]",
      "Auditors: recompute the audit chain through a replay (exit 0 if intact)." },
    { "tracker", s_tracker, s_tracker_opts, true,
      "tracker [--since T] [--until T] --out report.html [--csv report.csv]",
      "The Escalation Tracker for the papers of an Executive meeting.\n"
      "Escalations, responses and learning in the period, and what was still\n"
      "open at its start, as a printable HTML page (and CSV). For Executive\n"
      "members, auditors and admins." },
    { "help", s_help, s_no_opts, false, "help [COMMAND]", "Show help." },
    { NULL, NULL, NULL, false, NULL, NULL }
};

static const s_command_t *
s_command (const char *name)
{
    for (const s_command_t *c = s_commands; c->name; c++)
        if (strcmp (c->name, name) == 0)
            return c;
    return NULL;
}

static void
s_command_help (const s_command_t *c)
{
    printf ("usage: sgmq %s\n\n%s\n", c->synopsis, c->about);
    bool any = c->opts && c->opts->name;
    if (any)
        printf ("\noptions:\n");
    for (const s_opt_t *o = c->opts; o && o->name; o++)
        printf ("  --%-18s %s\n", o->name, o->help);
    if (c->client) {
        printf ("\nconnection (or SGMQ_BROKER, SGMQ_CERT, SGMQ_SERVER_CERT):\n");
        for (const s_opt_t *o = s_client_opts; o->name; o++)
            printf ("  --%-18s %s\n", o->name, o->help);
    }
    printf ("\nexit codes: 0 ok, 1 failed, 2 usage, 3 not authorised, 4 refused,\n"
            "            5 unreachable, 6 verification failed\n");
}

static int
s_help (s_args_t *args)
{
    if (args->positional_count == 1) {
        const s_command_t *c = s_command (args->positional [0]);
        if (!c)
            return s_usage_error ("help", "no command '%s'", args->positional [0]);
        s_command_help (c);
        return 0;
    }
    printf ("usage: sgmq COMMAND [ARGS] [OPTIONS]   (options before or after arguments)\n\n"
            "sgmq: escalations and learning alerts for a Safeguarding Children\n"
            "Partnership, over a secure, durable, acknowledged message broker.\n\n"
            "commands:\n");
    //  Each command's first line of `about` is a whole sentence.
    for (const s_command_t *c = s_commands; c->name; c++) {
        const char *newline = strchr (c->about, '\n');
        printf ("  %-10s %.*s\n", c->name,
                (int) (newline ? (size_t) (newline - c->about) : strlen (c->about)),
                c->about);
    }
    printf ("\nsgmq COMMAND --help shows a command's options.\n");
    return 0;
}

int
sgmq_cli_main (int argc, char **argv)
{
    if (argc < 2) {
        s_args_t none = { .command = "help" };
        s_help (&none);
        return SGMQ_EXIT_USAGE;
    }
    const char *name = argv [1];
    if (strcmp (name, "--help") == 0 || strcmp (name, "-h") == 0)
        name = "help";
    if (strcmp (name, "--version") == 0) {
        printf ("sgmq 0.1.0\n");
        return 0;
    }
    const s_command_t *command = s_command (name);
    if (!command)
        return s_usage_error (NULL, "unknown command '%s'", name);
    for (int i = 2; i < argc; i++) {
        if (strcmp (argv [i], "--") == 0)
            break;
        if (strcmp (argv [i], "--help") == 0 || strcmp (argv [i], "-h") == 0) {
            s_command_help (command);
            return 0;
        }
    }
    s_args_t args;
    int rc = s_parse (&args, command->name, argc, argv, 2, command->opts, command->client);
    if (rc)
        return rc;
    if (sodium_init () < 0) {
        fprintf (stderr, "sgmq: libsodium failed to start\n");
        return SGMQ_EXIT_FAILED;
    }
    return command->run (&args);
}
