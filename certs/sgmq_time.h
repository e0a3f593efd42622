/*  =========================================================================
    sgmq_time - times as the partnership writes them

    sgmq keeps every time as milliseconds since 1970-01-01T00:00:00Z (the
    wire's encoding). People write ISO 8601 ("2026-12-01T09:00:00Z"), a UK
    time or a plain UK date, and read UK times; safeguarding timescales are
    counted in working days (Monday to Friday, less bank holidays) on UK
    dates; so the conversions live here, shared by the broker and the
    command line. Leap seconds are ignored,
    as in POSIX time.
    =========================================================================
*/
#ifndef SGMQ_TIME_H_INCLUDED
#define SGMQ_TIME_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SGMQ_TIME_MS_PER_DAY  86400000ULL
//  "2026-12-01T09:00:00.123Z" plus NUL.
#define SGMQ_TIME_TEXT_SIZE   32

//  Now, in ms since the epoch (UTC, wall clock).
uint64_t
    sgmq_time_now (void);

//  Parse "YYYY-MM-DDTHH:MM[:SS[.mmm]]" then "Z" (UTC), an offset
//  "+HH:MM" / "-HH:MM", or nothing (UK time: GMT, or BST in summer; in the
//  repeated hour of October, the first), a space allowed for T; or a UK
//  date "YYYY-MM-DD": the start of that day in the UK, or its last
//  millisecond when `end_of_day` (so "respond by 2026-12-01" and "until
//  2026-12-01" include the whole day). Years 1970..9999. Returns 0 and
//  sets *ms, or -1 if the text is not such a time.
int
    sgmq_time_parse (const char *text, bool end_of_day, uint64_t *ms);

//  Write `ms` as "YYYY-MM-DDTHH:MM:SSZ" (".mmm" added when not zero) into
//  `buf` (SGMQ_TIME_TEXT_SIZE bytes). Returns buf.
char *
    sgmq_time_format (uint64_t ms, char *buf);

//  Write `ms` for people in the UK: "2026-07-01 00:30 BST" (GMT in
//  winter), into `buf` (SGMQ_TIME_TEXT_SIZE bytes). Returns buf.
char *
    sgmq_time_format_uk (uint64_t ms, char *buf);

//  `ms` on the UK's wall clock, as ms read as if UTC (for UK dates and
//  months: sgmq_time_day of it is the UK date); UINT64_MAX past the end of
//  what a uint64 holds. The functions below that return a time return
//  UINT64_MAX (never) for one past that end, rather than wrapping.
uint64_t
    sgmq_time_uk_local (uint64_t ms);

//  Days since the epoch of the UTC date of `ms`, and back.
int64_t  sgmq_time_day (uint64_t ms);
//  Parse "YYYY-MM-DD" into a day number; -1 if invalid.
int64_t  sgmq_time_parse_day (const char *text);

//  True if `day` is Saturday or Sunday.
bool     sgmq_time_weekend (int64_t day);

//  `from` plus `count` working days: the same UK time of day on the
//  count-th following UK date that is neither a weekend day nor one of the
//  `holidays` (day numbers of UK dates, sorted ascending), as UTC ms. From
//  a weekend day or holiday the count starts from the next working day,
//  which counts whole (Sunday 01:00 + 1: Tuesday 01:00). count 0 returns
//  `from`.
uint64_t
    sgmq_time_add_working_days (uint64_t from, uint32_t count,
                                const int64_t *holidays, size_t holiday_count);

//  `at` if it falls in working hours (from `from_hour` to `until_hour`, UK
//  time, on a working day: not a weekend day nor one of `holidays`), else
//  the start of the next working hours, as UTC ms. 0 to 24 means any time
//  of any day: `at` itself. (A reminder due at midnight, on a Saturday or
//  on a bank holiday is read at the next working hours anyway.)
uint64_t
    sgmq_time_in_hours (uint64_t at, int from_hour, int until_hour,
                        const int64_t *holidays, size_t holiday_count);

//  `from` plus `years` calendar years: the same UK time of day on the same
//  UK date (28 February for 29 February in a common year), as UTC ms.
uint64_t
    sgmq_time_add_years (uint64_t from, uint32_t years);

//  `from` plus `days` calendar days (back for a negative count): the same
//  UK time of day on the UK date `days` on (23 or 25 hours across a clock
//  change), as UTC ms; 0 if that is before 1970.
uint64_t
    sgmq_time_add_days (uint64_t from, int32_t days);

#ifdef __cplusplus
}
#endif

#endif
