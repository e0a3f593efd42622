/*  =========================================================================
    sgmq_time - ISO 8601 UTC times and working days

    Calendar arithmetic uses the civil-from-days algorithm (proleptic
    Gregorian), so no timezone database or locale is involved: every time
    is UTC, which is what the wire and the store carry. Working days are
    counted on UK dates (UTC, or UTC + 1 hour in summer time, from 01:00 UTC
    on the last Sunday of March to the last Sunday of October).
    =========================================================================
*/
#include "sgmq_time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_MS_PER_SECOND 1000ULL
#define S_SECONDS_PER_DAY 86400ULL
#define S_YEAR_MIN 1970
#define S_YEAR_MAX 9999

uint64_t
sgmq_time_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * S_MS_PER_SECOND
         + (uint64_t) ts.tv_nsec / 1000000;
}

//  Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
static int64_t
s_days_from_civil (int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned) (y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t) doe - 719468;
}

static void
s_civil_from_days (int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned) (z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t) yoe + era * 400 + (*m <= 2);
}

static bool
s_leap (int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
s_month_days (int64_t y, unsigned m)
{
    static const unsigned days [12] = { 31, 28, 31, 30, 31, 30,
                                        31, 31, 30, 31, 30, 31 };
    return m == 2 && s_leap (y) ? 29 : days [m - 1];
}

//  Read exactly `width` digits at *p; -1 if they are not all digits.
static int
s_digits (const char **p, int width)
{
    int value = 0;
    for (int i = 0; i < width; i++) {
        char c = (*p) [i];
        if (c < '0' || c > '9')
            return -1;
        value = value * 10 + (c - '0');
    }
    *p += width;
    return value;
}

static int64_t
s_parse_date (const char **p)
{
    const char *s = *p;
    int y = s_digits (&s, 4);
    if (y < 0 || *s++ != '-')
        return -1;
    int m = s_digits (&s, 2);
    if (m < 0 || *s++ != '-')
        return -1;
    int d = s_digits (&s, 2);
    if (d < 0 || y < S_YEAR_MIN || y > S_YEAR_MAX || m < 1 || m > 12
    ||  d < 1 || (unsigned) d > s_month_days (y, (unsigned) m))
        return -1;
    *p = s;
    return s_days_from_civil (y, (unsigned) m, (unsigned) d);
}

int64_t
sgmq_time_parse_day (const char *text)
{
    const char *p = text;
    int64_t day = s_parse_date (&p);
    return day >= 0 && *p == 0 ? day : -1;
}

static uint64_t s_uk_offset (uint64_t ms);
static uint64_t s_uk_to_utc (uint64_t local);

//  A zone: "Z", "+HH:MM" or "-HH:MM" (sets *offset_ms, east positive),
//  or nothing (*local: UK time). 0, or -1 for anything else.
static int
s_parse_zone (const char *p, int64_t *offset_ms, bool *local)
{
    *offset_ms = 0;
    *local = *p == 0;
    if (*local || ((*p == 'Z' || *p == 'z') && p [1] == 0))
        return 0;
    if (*p != '+' && *p != '-')
        return -1;
    int sign = *p++ == '-' ? -1 : 1;
    int hours = s_digits (&p, 2);
    if (hours < 0 || hours > 14 || *p++ != ':')
        return -1;
    int minutes = s_digits (&p, 2);
    if (minutes < 0 || minutes > 59 || *p)
        return -1;
    *offset_ms = sign * ((int64_t) hours * 3600 + minutes * 60) * S_MS_PER_SECOND;
    return 0;
}

int
sgmq_time_parse (const char *text, bool end_of_day, uint64_t *ms)
{
    const char *p = text;
    int64_t day = s_parse_date (&p);
    if (day < 0)
        return -1;
    if (*p == 0) {
        //  A UK date: from its first to its last millisecond in UK time.
        *ms = s_uk_to_utc ((uint64_t) day * SGMQ_TIME_MS_PER_DAY
                           + (end_of_day ? SGMQ_TIME_MS_PER_DAY - 1 : 0));
        return 0;
    }
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    int hour = s_digits (&p, 2);
    if (hour < 0 || hour > 23 || *p++ != ':')
        return -1;
    int minute = s_digits (&p, 2);
    if (minute < 0 || minute > 59)
        return -1;
    int second = 0, milli = 0;
    if (*p == ':') {
        p++;
        second = s_digits (&p, 2);
        if (second < 0 || second > 59)
            return -1;
        if (*p == '.') {
            p++;
            milli = s_digits (&p, 3);
            if (milli < 0)
                return -1;
        }
    }
    int64_t offset;
    bool local;
    if (s_parse_zone (p, &offset, &local))
        return -1;
    uint64_t wall = ((uint64_t) day * S_SECONDS_PER_DAY
                     + (uint64_t) hour * 3600 + (uint64_t) minute * 60 + (uint64_t) second)
                  * S_MS_PER_SECOND + (uint64_t) milli;
    if (local)
        *ms = s_uk_to_utc (wall);
    else {
        if (offset > 0 && wall < (uint64_t) offset)
            return -1;          //  before 1970 in UTC
        *ms = wall - (uint64_t) offset;
    }
    //  An offset west of 9999-12-31 would be year 10000 in UTC.
    uint64_t end = (uint64_t) s_days_from_civil (S_YEAR_MAX + 1, 1, 1) * SGMQ_TIME_MS_PER_DAY;
    return *ms < end ? 0 : -1;
}

char *
sgmq_time_format (uint64_t ms, char *buf)
{
    int64_t day = (int64_t) (ms / SGMQ_TIME_MS_PER_DAY);
    uint64_t rest = ms % SGMQ_TIME_MS_PER_DAY;
    int64_t y;
    unsigned m, d;
    s_civil_from_days (day, &y, &m, &d);
    unsigned seconds = (unsigned) (rest / S_MS_PER_SECOND);
    unsigned milli = (unsigned) (rest % S_MS_PER_SECOND);
    int len = snprintf (buf, SGMQ_TIME_TEXT_SIZE, "%04lld-%02u-%02uT%02u:%02u:%02u",
                        (long long) y, m, d, seconds / 3600,
                        seconds / 60 % 60, seconds % 60);
    if (milli && len > 0)
        snprintf (buf + len, SGMQ_TIME_TEXT_SIZE - (size_t) len, ".%03uZ", milli);
    else
    if (len > 0)
        snprintf (buf + len, SGMQ_TIME_TEXT_SIZE - (size_t) len, "Z");
    return buf;
}

char *
sgmq_time_format_uk (uint64_t ms, char *buf)
{
    //  (Any uint a client sent may come here: years past 9999 too.)
    bool summer = ms < UINT64_MAX - 3600 * S_MS_PER_SECOND && s_uk_offset (ms) != 0;
    sgmq_time_format (ms + (summer ? 3600 * S_MS_PER_SECOND : 0), buf);
    char *t = strchr (buf, 'T');
    if (t && strlen (t) >= 6) {
        *t = ' ';
        snprintf (t + 6, SGMQ_TIME_TEXT_SIZE - (size_t) (t + 6 - buf), " %s",
                  summer ? "BST" : "GMT");
    }
    return buf;
}

uint64_t
sgmq_time_uk_local (uint64_t ms)
{
    //  A client may send any uint as a date: the end of time stays there.
    uint64_t offset = s_uk_offset (ms);
    return ms > UINT64_MAX - offset ? UINT64_MAX : ms + offset;
}

int64_t
sgmq_time_day (uint64_t ms)
{
    return (int64_t) (ms / SGMQ_TIME_MS_PER_DAY);
}

bool
sgmq_time_weekend (int64_t day)
{
    //  1970-01-01 was a Thursday: day % 7 == 2 is Saturday, 3 Sunday.
    int64_t weekday = ((day % 7) + 7) % 7;
    return weekday == 2 || weekday == 3;
}

static bool
s_holiday (int64_t day, const int64_t *holidays, size_t count)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (holidays [mid] < day)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < count && holidays [lo] == day;
}

//  The UTC ms at 01:00 UTC on the last Sunday of month `m` of year `y`:
//  when UK summer time starts (March) or ends (October).
static uint64_t
s_uk_switch (int64_t y, unsigned m)
{
    int64_t last = s_days_from_civil (y, m, s_month_days (y, m));
    //  1970-01-01 was a Thursday: (day + 4) % 7 is 0 on a Sunday.
    int64_t sunday = last - ((last % 7 + 7 + 4) % 7);
    //  October of the last year a uint64 of ms reaches is past its end.
    if ((uint64_t) sunday > (UINT64_MAX - 3600 * S_MS_PER_SECOND) / SGMQ_TIME_MS_PER_DAY)
        return UINT64_MAX;
    return (uint64_t) sunday * SGMQ_TIME_MS_PER_DAY + 3600 * S_MS_PER_SECOND;
}

//  UK time's offset from UTC at `ms` (UTC): an hour in summer time.
static uint64_t
s_uk_offset (uint64_t ms)
{
    int64_t y;
    unsigned m, d;
    s_civil_from_days (sgmq_time_day (ms), &y, &m, &d);
    return ms >= s_uk_switch (y, 3) && ms < s_uk_switch (y, 10)
         ? 3600 * S_MS_PER_SECOND : 0;
}

//  A UK wall-clock time (as ms, read as if UTC) back to UTC, with the
//  offset of the day it falls on.
static uint64_t
s_uk_to_utc (uint64_t local)
{
    if (local < 3600 * S_MS_PER_SECOND)
        return local;           //  1 January 1970: winter
    uint64_t summer = local - 3600 * S_MS_PER_SECOND;
    return s_uk_offset (summer) ? summer : local;
}

//  s_uk_to_utc of `time_of_day` on UK day `day`; UINT64_MAX (never) if
//  that is past what a uint64 of ms holds, rather than wrapping to 1970.
static uint64_t
s_uk_day_to_utc (int64_t day, uint64_t time_of_day)
{
    if ((uint64_t) day > (UINT64_MAX - time_of_day) / SGMQ_TIME_MS_PER_DAY)
        return UINT64_MAX;
    return s_uk_to_utc ((uint64_t) day * SGMQ_TIME_MS_PER_DAY + time_of_day);
}

static bool
s_working_day (int64_t day, const int64_t *holidays, size_t holiday_count)
{
    return !sgmq_time_weekend (day) && !s_holiday (day, holidays, holiday_count);
}

uint64_t
sgmq_time_add_working_days (uint64_t from, uint32_t count,
                            const int64_t *holidays, size_t holiday_count)
{
    if (count == 0)
        return from;
    //  Counted on the partnership's calendar: UK dates, not UTC ones (in
    //  summer 00:30 on a Saturday in the UK is 23:30 on Friday in UTC).
    uint64_t local = sgmq_time_uk_local (from);
    int64_t day = sgmq_time_day (local);
    uint64_t time_of_day = local % SGMQ_TIME_MS_PER_DAY;
    //  Raised on a weekend or holiday, the count starts from the next
    //  working day, which counts whole: one working day from Sunday 01:00
    //  is Tuesday 01:00, not Monday 01:00 (an hour of working time). The
    //  time of day stays, so reminders keep the hour things were raised.
    while (!s_working_day (day, holidays, holiday_count))
        day++;
    while (count) {
        day++;
        if (s_working_day (day, holidays, holiday_count))
            count--;
    }
    return s_uk_day_to_utc (day, time_of_day);
}

//  The same UK time of day on the UK date `days` on from `from`'s, with
//  the date clamped into its month (for years from 29 February).
static uint64_t
s_uk_date_add (uint64_t from, uint32_t years, int32_t days)
{
    uint64_t local = sgmq_time_uk_local (from);
    int64_t y;
    unsigned m, d;
    s_civil_from_days (sgmq_time_day (local), &y, &m, &d);
    y += years;
    if (d > s_month_days (y, m))
        d = s_month_days (y, m);
    int64_t day = s_days_from_civil (y, m, d) + days;
    if (day < 0)
        return 0;               //  before 1970
    return s_uk_day_to_utc (day, local % SGMQ_TIME_MS_PER_DAY);
}

uint64_t
sgmq_time_in_hours (uint64_t at, int from_hour, int until_hour,
                    const int64_t *holidays, size_t holiday_count)
{
    if (from_hour <= 0 && until_hour >= 24)
        return at;              //  any time, any day
    uint64_t local = sgmq_time_uk_local (at);
    int64_t day = sgmq_time_day (local);
    uint64_t hour_ms = 3600 * S_MS_PER_SECOND;
    uint64_t time_of_day = local % SGMQ_TIME_MS_PER_DAY;
    if (s_working_day (day, holidays, holiday_count)) {
        if (time_of_day >= (uint64_t) from_hour * hour_ms
        &&  time_of_day < (uint64_t) until_hour * hour_ms)
            return at;
        if (time_of_day >= (uint64_t) until_hour * hour_ms)
            day++;
    }
    while (!s_working_day (day, holidays, holiday_count))
        day++;
    return s_uk_day_to_utc (day, (uint64_t) from_hour * hour_ms);
}

uint64_t
sgmq_time_add_years (uint64_t from, uint32_t years)
{
    return s_uk_date_add (from, years, 0);
}

uint64_t
sgmq_time_add_days (uint64_t from, int32_t days)
{
    return s_uk_date_add (from, 0, days);
}
