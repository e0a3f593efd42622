/*  fuzz_config - libFuzzer target for the deployment config loader.

    For any input: parse it as a config (sgmq_config_parse, the loader's
    whole path after reading the file). A refusal must be one line that
    starts with the origin and fits the error buffer. A config that loads
    must hold together: every option has a value within what the option
    table allows, paths are resolved against the base, the groups include
    the Executive and each is known by its id, holidays are sorted, and
    every deadline (sgmq_config_deadline) lies after its start, counting
    working days and holidays; every accessor answers without reading out
    of bounds. Also parse the input as a duration. Any failed check aborts,
    which libFuzzer reports as a crash; the sanitizers catch the rest
    (leaks included).

    Built with -DSGMQ_FUZZING and -fsanitize=fuzzer when SGMQ_FUZZ=ON.
    Otherwise it is linked with fuzz_replay.c: that is the fuzz_config_corpus
    test.
*/
#include "fuzz.h"
#include "sgmq_config.h"
#include "sgmq_time.h"
#include "sgmq_zpl.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_ORIGIN "fuzz.cfg"
#define S_BASE   "/srv/sgmq"
//  Starts for the deadlines: a Friday afternoon before Christmas 2026, a
//  bank holiday, and the epoch (ms UTC).
static const uint64_t s_starts [] = { 1798124400000ULL, 1798156800000ULL, 0 };
//  A config is a few KiB; the loader reads files up to SGMQ_ZPL_MAX_FILE.
#define S_MAX_INPUT (SGMQ_ZPL_MAX_FILE + 1)
#define S_DAY_MS 86400000ULL
//  The longest duration text worth trying.
#define S_MAX_DURATION 64

static const sgmq_opt_t s_durations [] = {
    SGMQ_OPT_HEARTBEAT, SGMQ_OPT_SESSION_TIMEOUT, SGMQ_OPT_ACK_BY,
    SGMQ_OPT_ESCALATION_ACK_BY, SGMQ_OPT_REPEAT, SGMQ_OPT_LEARNING_SESSION,
    SGMQ_OPT_REFLECTION, SGMQ_OPT_REDELIVER_FIRST, SGMQ_OPT_REDELIVER_MAX,
    SGMQ_OPT_CHECKPOINT
};
static const sgmq_opt_t s_paths [] = {
    SGMQ_OPT_CERT, SGMQ_OPT_CERTS, SGMQ_OPT_DATA, SGMQ_OPT_STORAGE_KEY,
    SGMQ_OPT_SIGNING_KEY
};

static void
s_check_loaded (const sgmq_config_t *config)
{
    CHECK (strcmp (sgmq_config_origin (config), S_ORIGIN) == 0);
    for (int option = 0; option < SGMQ_OPT_COUNT_; option++)
        CHECK (sgmq_config_str (config, (sgmq_opt_t) option));
    CHECK (sgmq_config_str (config, SGMQ_OPT_COUNT_));
    for (size_t i = 0; i < sizeof s_paths / sizeof s_paths [0]; i++) {
        const char *path = sgmq_config_str (config, s_paths [i]);
        CHECK (path [0] == '/');
    }
    const char *level = sgmq_config_str (config, SGMQ_OPT_LOG_LEVEL);
    CHECK (strcmp (level, "error") == 0 || strcmp (level, "warning") == 0
           || strcmp (level, "info") == 0 || strcmp (level, "debug") == 0);
    CHECK (strlen (sgmq_config_str (config, SGMQ_OPT_ENDPOINT)) >= 6);
    CHECK (sgmq_config_int (config, SGMQ_OPT_MAX_FRAME) > 0);
    CHECK (sgmq_config_int (config, SGMQ_OPT_SESSIONS_PER_KEY) >= 1);
    CHECK (sgmq_config_int (config, SGMQ_OPT_MAX_SESSIONS) >= 1);
    CHECK (sgmq_config_int (config, SGMQ_OPT_WINDOW) >= 1);
    CHECK (sgmq_config_int (config, SGMQ_OPT_MAX_TRIES) >= 1);
    CHECK (sgmq_config_int (config, SGMQ_OPT_MAP_SIZE_MAX) >= 1 << 20);
    CHECK (sgmq_config_duration (config, SGMQ_OPT_SESSION_TIMEOUT).amount
           > sgmq_config_duration (config, SGMQ_OPT_HEARTBEAT).amount);
    CHECK (sgmq_config_duration (config, SGMQ_OPT_REDELIVER_MAX).amount
           >= sgmq_config_duration (config, SGMQ_OPT_REDELIVER_FIRST).amount);

    for (size_t i = 0; i < sizeof s_durations / sizeof s_durations [0]; i++) {
        sgmq_duration_t duration = sgmq_config_duration (config, s_durations [i]);
        CHECK (duration.amount > 0);
        for (size_t s = 0; s < sizeof s_starts / sizeof s_starts [0]; s++) {
            uint64_t due = sgmq_config_deadline (config, s_durations [i], s_starts [s]);
            CHECK (due > s_starts [s]);
            if (duration.years) {
                //  The same UK date and time, years on: 365 or 366 days a
                //  year, a day less from 29 February, an hour either way
                //  across a change of the clocks.
                uint64_t apart = due - s_starts [s], hour = S_DAY_MS / 24;
                CHECK (apart + S_DAY_MS + hour >= duration.amount * 365 * S_DAY_MS);
                CHECK (apart <= duration.amount * 366 * S_DAY_MS + hour);
            }
            else
            if (duration.days) {
                //  The same UK time, n dates on: n days but for an hour
                //  either way across a change of the clocks.
                uint64_t apart = due - s_starts [s], hour = S_DAY_MS / 24;
                CHECK (apart + hour >= duration.amount && apart <= duration.amount + hour);
                CHECK (apart == duration.amount || apart % hour == 0);
            }
            else
            if (!duration.working_days)
                CHECK (due == s_starts [s] + duration.amount);
            else {
                //  The same UK time of day, n working days on (from the
                //  next working day when it starts on another): at least n
                //  calendar days, whole days in UTC too but for an hour
                //  either way across a change of the clocks.
                uint64_t apart = due - s_starts [s];
                uint64_t hour = S_DAY_MS / 24, rest = apart % S_DAY_MS;
                CHECK (rest == 0 || rest == hour || rest == S_DAY_MS - hour);
                CHECK (apart + hour >= duration.amount * S_DAY_MS);
            }
        }
    }

    size_t groups = sgmq_config_group_count (config);
    CHECK (groups >= 1 && groups <= SGMQ_CONFIG_MAX_GROUPS);
    CHECK (sgmq_config_group_known (config, "executive"));
    const char *const *ids = sgmq_config_group_ids (config);
    for (size_t i = 0; i < groups; i++) {
        const char *id = sgmq_config_group_id (config, i);
        const char *name = sgmq_config_group_name (config, i);
        CHECK (id && name && ids [i] && strcmp (ids [i], id) == 0);
        CHECK (sgmq_config_group_known (config, id));
        CHECK (strcmp (sgmq_config_group_display (config, id), name) == 0);
        (void) sgmq_config_learning_group (config, id);
        (void) sgmq_config_may_escalate_for (config, name, id);
    }
    CHECK (ids [groups] == NULL);
    CHECK (sgmq_config_group_id (config, groups) == NULL);
    CHECK (sgmq_config_group_name (config, groups) == NULL);
    //  Not a valid group id (a space), so no input can define it: "no-such"
    //  could be, and the fuzzer found one that did.
    const char *unknown = "no such group";
    CHECK (!sgmq_config_group_known (config, unknown));
    CHECK (strcmp (sgmq_config_group_display (config, unknown), unknown) == 0);
    CHECK (!sgmq_config_learning_group (config, unknown));

    size_t holidays = 0;
    const int64_t *days = sgmq_config_holidays (config, &holidays);
    CHECK (holidays <= SGMQ_CONFIG_MAX_HOLIDAYS);
    for (size_t i = 1; i < holidays; i++)
        CHECK (days [i - 1] <= days [i]);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char error [SGMQ_CONFIG_ERROR_SIZE];
    memset (error, 0, sizeof error);
    sgmq_config_t *config = sgmq_config_parse ((const char *) data, size, S_ORIGIN,
                                               S_BASE, error);
    if (config) {
        s_check_loaded (config);
        sgmq_config_destroy (&config);
        CHECK (config == NULL);
    }
    else {
        //  One line, naming where.
        CHECK (memchr (error, 0, sizeof error));
        CHECK (strncmp (error, S_ORIGIN ":", strlen (S_ORIGIN ":")) == 0);
        CHECK (strchr (error, '\n') == NULL);
    }
    sgmq_config_destroy (&config);      //  NULL-safe

    //  The input as a duration ("30s", "2wd").
    char text [S_MAX_DURATION + 1];
    size_t length = size < S_MAX_DURATION ? size : S_MAX_DURATION;
    memcpy (text, data, length);
    text [length] = 0;
    sgmq_duration_t duration;
    if (sgmq_config_parse_duration (text, &duration) == 0)
        CHECK (duration.amount > 0);
    return 0;
}

//  Replay only: the shipped default config must load and hold together.
static void
s_before_replay (void)
{
    char *text = sgmq_config_default_text (NULL);
    CHECK (text);
    char error [SGMQ_CONFIG_ERROR_SIZE];
    sgmq_config_t *config = sgmq_config_parse (text, strlen (text), S_ORIGIN, S_BASE,
                                               error);
    if (!config)
        fprintf (stderr, "fuzz_config: default config: %s\n", error);
    CHECK (config);
    s_check_loaded (config);
    sgmq_config_destroy (&config);
    free (text);
}

const fuzz_target_t fuzz_target = { "fuzz_config", S_MAX_INPUT, s_before_replay };
