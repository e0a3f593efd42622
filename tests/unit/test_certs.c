/*  Unit tests for certs/: ZPL, UTC times and working days, secret key
    files, CURVE certificates, the registry of principals and the
    deployment config, good and bad files. */
#define _GNU_SOURCE                     //  memmem
#include "testutil.h"
#include "sgmq_cert.h"
#include "sgmq_config.h"
#include "sgmq_keyfile.h"
#include "sgmq_registry.h"
#include "sgmq_time.h"
#include "sgmq_zpl.h"

#include <czmq.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

static char *s_dir;

static char *
s_path (const char *name)
{
    char *path = malloc (strlen (s_dir) + strlen (name) + 2);
    sprintf (path, "%s/%s", s_dir, name);
    return path;
}

static void
s_write (const char *name, const char *text)
{
    char *path = s_path (name);
    assert_int_equal (testutil_write_file (path, text, strlen (text)), 0);
    free (path);
}

//  --------------------------------------------------------------------------
//  ZPL

static void
test_zpl_reads_nested_values (void **state)
{
    (void) state;
    const char *text =
        "#   a comment\n"
        "section\n"
        "    name = \"quoted # not a comment\"   # a comment\n"
        "    other = bare value  # trailing\n"
        "    nested\n"
        "        deep = 'it\"s'\n"
        "empty\n";
    char error [SGMQ_ZPL_ERROR_SIZE];
    sgmq_zpl_t *root = sgmq_zpl_parse (text, strlen (text), "t.cfg", error);
    assert_non_null (root);
    assert_string_equal (sgmq_zpl_get (root, "section/name", NULL), "quoted # not a comment");
    assert_string_equal (sgmq_zpl_get (root, "section/other", NULL), "bare value");
    assert_string_equal (sgmq_zpl_get (root, "section/nested/deep", NULL), "it\"s");
    assert_string_equal (sgmq_zpl_get (root, "empty", "x"), "");
    assert_string_equal (sgmq_zpl_get (root, "missing", "fallback"), "fallback");
    assert_int_equal (sgmq_zpl_line (sgmq_zpl_locate (root, "section/nested/deep")), 6);
    sgmq_zpl_destroy (&root);
    assert_null (root);
}

static void
test_zpl_errors_name_file_and_line (void **state)
{
    (void) state;
    struct { const char *text; const char *expect; } cases [] = {
        { "a\n  b = 1\n", "t.cfg:2: indent by 4 spaces" },
        { "a\n        b = 1\n", "t.cfg:2: indented deeper" },
        { "a\n\tb = 1\n", "t.cfg:2: tab" },
        { "a = \"open\n", "t.cfg:1: missing closing \"" },
        { "a = \"x\" junk\n", "t.cfg:1: unexpected text" },
        { "/a = 1\n", "t.cfg:1: '/' not valid" },
        { "= 1\n", "t.cfg:1: expected a name" },
        { "a ! 1\n", "t.cfg:1: unexpected '!'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char error [SGMQ_ZPL_ERROR_SIZE];
        sgmq_zpl_t *root = sgmq_zpl_parse (cases [i].text, strlen (cases [i].text),
                                           "t.cfg", error);
        assert_null (root);
        if (strncmp (error, cases [i].expect, strlen (cases [i].expect)))
            fprintf (stderr, "case %zu: '%s'\n", i, error);
        assert_memory_equal (error, cases [i].expect, strlen (cases [i].expect));
    }
    //  Limits: a long line and deep nesting are refused, not cut.
    char *long_line = malloc (SGMQ_ZPL_MAX_LINE + 16);
    memset (long_line, 'a', SGMQ_ZPL_MAX_LINE + 8);
    long_line [SGMQ_ZPL_MAX_LINE + 8] = 0;
    char error [SGMQ_ZPL_ERROR_SIZE];
    assert_null (sgmq_zpl_parse (long_line, strlen (long_line), "t.cfg", error));
    assert_non_null (strstr (error, "line longer"));
    free (long_line);
    char deep [1024] = "";
    for (int level = 0; level <= SGMQ_ZPL_MAX_DEPTH; level++)
        sprintf (deep + strlen (deep), "%*sx\n", level * 4, "");
    assert_null (sgmq_zpl_parse (deep, strlen (deep), "t.cfg", error));
    assert_non_null (strstr (error, "nested more than"));
    assert_null (sgmq_zpl_load ("/nonexistent/x.cfg", error));
    assert_non_null (strstr (error, "/nonexistent/x.cfg: cannot open"));
}

static void
test_zpl_writes_what_zconfig_reads (void **state)
{
    (void) state;
    char *path = s_path ("written.zpl");
    FILE *file = fopen (path, "w");
    assert_int_equal (sgmq_zpl_write (file, 0, "metadata", NULL), 0);
    assert_int_equal (sgmq_zpl_write (file, 1, "name", "St Mary's \"school\" # 1"), -1);
    assert_int_equal (sgmq_zpl_write (file, 1, "name", "St Mary's school # 1"), 0);
    assert_int_equal (sgmq_zpl_write (file, 1, "quote", "a \"quoted\" word"), 0);
    assert_int_equal (sgmq_zpl_write (file, 1, "bad name!", "x"), -1);
    assert_int_equal (sgmq_zpl_write (file, 1, "line", "two\nlines"), -1);
    fclose (file);
    zconfig_t *config = zconfig_load (path);
    assert_non_null (config);
    assert_string_equal (zconfig_get (config, "metadata/name", ""), "St Mary's school # 1");
    assert_string_equal (zconfig_get (config, "metadata/quote", ""), "a \"quoted\" word");
    zconfig_destroy (&config);
    free (path);
}

//  --------------------------------------------------------------------------
//  Time

static void
test_time_parses_and_formats_utc_and_uk (void **state)
{
    (void) state;
    uint64_t ms;
    char text [SGMQ_TIME_TEXT_SIZE];
    assert_int_equal (sgmq_time_parse ("2026-12-01T09:00:00Z", false, &ms), 0);
    assert_int_equal (ms, 1796115600000ULL);
    assert_string_equal (sgmq_time_format (ms, text), "2026-12-01T09:00:00Z");
    assert_int_equal (sgmq_time_parse ("2026-12-01T09:00Z", false, &ms), 0);
    assert_int_equal (sgmq_time_parse ("2026-12-01 09:00:00.250+00:00", false, &ms), 0);
    assert_string_equal (sgmq_time_format (ms, text), "2026-12-01T09:00:00.250Z");
    assert_int_equal (sgmq_time_parse ("2026-12-01", false, &ms), 0);
    assert_string_equal (sgmq_time_format (ms, text), "2026-12-01T00:00:00Z");
    assert_int_equal (sgmq_time_parse ("2026-12-01", true, &ms), 0);
    assert_string_equal (sgmq_time_format (ms, text), "2026-12-01T23:59:59.999Z");
    assert_int_equal (sgmq_time_parse ("2024-02-29", false, &ms), 0);
    //  People in the UK write UK times and dates: without a zone, a time
    //  is UK time, and a date is a UK day (in summer, from 23:00 UTC the
    //  day before to 22:59:59.999 UTC).
    const struct { const char *in; bool eod; const char *utc; } uk [] = {
        { "2026-07-01", false, "2026-06-30T23:00:00Z" },
        { "2026-07-10", true, "2026-07-10T22:59:59.999Z" },
        { "2026-07-01T00:30", false, "2026-06-30T23:30:00Z" },
        { "2026-12-04 17:00:00", false, "2026-12-04T17:00:00Z" },
        { "2026-12-04T17:00:00+01:00", false, "2026-12-04T16:00:00Z" },
        { "2026-12-04T17:00:00-05:30", false, "2026-12-04T22:30:00Z" },
        //  the day summer time starts (29 March 2026, 01:00 UTC)
        { "2026-03-29", false, "2026-03-29T00:00:00Z" },
        { "2026-03-29", true, "2026-03-29T22:59:59.999Z" },
        { "2026-03-29T03:00", false, "2026-03-29T02:00:00Z" },
        { "1970-01-01", false, "1970-01-01T00:00:00Z" },
    };
    for (size_t i = 0; i < sizeof uk / sizeof uk [0]; i++) {
        assert_int_equal (sgmq_time_parse (uk [i].in, uk [i].eod, &ms), 0);
        if (strcmp (sgmq_time_format (ms, text), uk [i].utc) != 0)
            fail_msg ("%s: %s, wanted %s", uk [i].in, text, uk [i].utc);
    }
    //  And read them: "2026-07-01 00:30 BST", "2026-12-04 17:00 GMT".
    assert_int_equal (sgmq_time_parse ("2026-06-30T23:30:00Z", false, &ms), 0);
    assert_string_equal (sgmq_time_format_uk (ms, text), "2026-07-01 00:30 BST");
    assert_int_equal (sgmq_time_parse ("2026-12-04T17:00:59Z", false, &ms), 0);
    assert_string_equal (sgmq_time_format_uk (ms, text), "2026-12-04 17:00 GMT");
    //  Any uint from the wire: a far year still reads as one.
    assert_string_equal (sgmq_time_format_uk (UINT64_MAX, text), "584556019-04-03 14:25 GMT");
    const char *bad [] = { "2026-02-29", "2026-13-01", "2026-12-01T24:00Z",
                           "2026-12-01T09:00:00+1:00", "2026-12-01T09:00:00+15:00",
                           "2026-12-01T09:00:00+01:00x", "1970-01-01T00:30+01:00",
                           "9999-12-31T23:59-14:00",
                           "1969-12-31", "26-12-01", "2026-12-01x", "", "tomorrow" };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        assert_int_equal (sgmq_time_parse (bad [i], false, &ms), -1);
}

static void
test_time_counts_working_days (void **state)
{
    (void) state;
    uint64_t friday;
    char text [SGMQ_TIME_TEXT_SIZE];
    assert_int_equal (sgmq_time_parse ("2026-12-18T10:00:00Z", false, &friday), 0);
    assert_false (sgmq_time_weekend (sgmq_time_day (friday)));
    //  No holidays: Friday + 1 working day is Monday.
    uint64_t due = sgmq_time_add_working_days (friday, 1, NULL, 0);
    assert_string_equal (sgmq_time_format (due, text), "2026-12-21T10:00:00Z");
    //  Christmas and Boxing Day (substitute, Monday 28th) do not count.
    int64_t holidays [] = { sgmq_time_parse_day ("2026-12-25"),
                            sgmq_time_parse_day ("2026-12-28") };
    due = sgmq_time_add_working_days (friday, 5, holidays, 2);
    //  Mon 21, Tue 22, Wed 23, Thu 24, (Fri 25 holiday), (28 holiday), Tue 29.
    assert_string_equal (sgmq_time_format (due, text), "2026-12-29T10:00:00Z");
    assert_int_equal (sgmq_time_add_working_days (friday, 0, NULL, 0), friday);

    //  In summer time the days are UK dates (a second review found UTC
    //  ones): Friday 1 May 2026 00:30 BST is 23:30 UTC on Thursday; one
    //  working day on, past the weekend and the bank holiday of Monday 4
    //  May, is Tuesday 5 May 00:30 BST.
    int64_t may [] = { sgmq_time_parse_day ("2026-05-04") };
    uint64_t from;
    assert_int_equal (sgmq_time_parse ("2026-04-30T23:30:00Z", false, &from), 0);
    due = sgmq_time_add_working_days (from, 1, may, 1);
    assert_string_equal (sgmq_time_format (due, text), "2026-05-04T23:30:00Z");
    //  Saturday 00:30 BST (Friday 23:30 UTC) is a weekend day: the count
    //  starts from Monday, which counts whole: Tuesday 00:30 BST (not
    //  Monday 00:30, which left half an hour of working time).
    assert_int_equal (sgmq_time_parse ("2026-05-01T23:30:00Z", false, &from), 0);
    due = sgmq_time_add_working_days (from, 1, NULL, 0);
    assert_string_equal (sgmq_time_format (due, text), "2026-05-04T23:30:00Z");
    //  Sunday 01:00 GMT + 1: Tuesday 01:00. Saturday 10:00 + 5, with
    //  Christmas: from Monday 21, Tue 22 .. Thu 24, (25), (28), Tue 29,
    //  Wed 30.
    assert_int_equal (sgmq_time_parse ("2026-12-06T01:00:00Z", false, &from), 0);
    due = sgmq_time_add_working_days (from, 1, NULL, 0);
    assert_string_equal (sgmq_time_format (due, text), "2026-12-08T01:00:00Z");
    assert_int_equal (sgmq_time_parse ("2026-12-19T10:00:00Z", false, &from), 0);
    due = sgmq_time_add_working_days (from, 5, holidays, 2);
    assert_string_equal (sgmq_time_format (due, text), "2026-12-30T10:00:00Z");
    //  A holiday itself (Christmas Day): from Tuesday 29, so Wednesday 30.
    assert_int_equal (sgmq_time_parse ("2026-12-25T15:00:00Z", false, &from), 0);
    due = sgmq_time_add_working_days (from, 1, holidays, 2);
    assert_string_equal (sgmq_time_format (due, text), "2026-12-30T15:00:00Z");
    //  Working hours for reminders, 9 to 17 UK time on working days.
    const struct { const char *at; const char *out; } hours [] = {
        { "2026-12-04T10:00:00Z", "2026-12-04T10:00:00Z" },     //  Friday, in hours
        { "2026-12-04T17:00:00Z", "2026-12-07T09:00:00Z" },     //  Friday 17:00: Monday
        { "2026-12-05T00:00:00Z", "2026-12-07T09:00:00Z" },     //  Saturday midnight
        { "2026-12-07T08:00:00Z", "2026-12-07T09:00:00Z" },     //  Monday early
        { "2026-12-24T17:30:00Z", "2026-12-29T09:00:00Z" },     //  past Christmas
        { "2026-07-01T07:30:00Z", "2026-07-01T08:00:00Z" },     //  08:30 BST: 09:00 BST
        { "2026-07-01T15:59:00Z", "2026-07-01T15:59:00Z" },     //  16:59 BST
        { "2026-07-01T16:00:00Z", "2026-07-02T08:00:00Z" },     //  17:00 BST
    };
    for (size_t i = 0; i < sizeof hours / sizeof hours [0]; i++) {
        assert_int_equal (sgmq_time_parse (hours [i].at, false, &from), 0);
        due = sgmq_time_in_hours (from, 9, 17, holidays, 2);
        if (strcmp (sgmq_time_format (due, text), hours [i].out) != 0)
            fail_msg ("%s in hours: %s, wanted %s", hours [i].at, text, hours [i].out);
    }
    //  0 to 24: any time, any day.
    assert_int_equal (sgmq_time_parse ("2026-12-05T00:00:00Z", false, &from), 0);
    assert_int_equal (sgmq_time_in_hours (from, 0, 24, holidays, 2), from);
    //  Across the end of summer time (25 October 2026): Friday 23 October
    //  09:00 BST is 08:00 UTC; Monday 26 October 09:00 GMT is 09:00 UTC.
    assert_int_equal (sgmq_time_parse ("2026-10-23T08:00:00Z", false, &from), 0);
    due = sgmq_time_add_working_days (from, 1, NULL, 0);
    assert_string_equal (sgmq_time_format (due, text), "2026-10-26T09:00:00Z");
    //  And across its start (29 March 2026): Friday 27 March 09:00 GMT to
    //  Monday 30 March 09:00 BST, 08:00 UTC.
    assert_int_equal (sgmq_time_parse ("2026-03-27T09:00:00Z", false, &from), 0);
    due = sgmq_time_add_working_days (from, 1, NULL, 0);
    assert_string_equal (sgmq_time_format (due, text), "2026-03-30T08:00:00Z");
}

//  A year after publication (the reflection session) is the same date,
//  not 365 days: those fall a day early across 29 February. And a learning
//  session "14d" after publication is on the UK date 14 days on at the
//  same UK time, not 336 hours (an hour off across a change of clocks).
static void
test_time_adds_calendar_years_and_days (void **state)
{
    (void) state;
    const struct { const char *from; uint32_t years; int32_t days; const char *due; } cases [] = {
        //  across 29 February 2028: 366 days
        { "2027-06-01T10:00:00Z", 1, 0, "2028-06-01T10:00:00Z" },
        { "2027-01-15T10:00:00Z", 1, 0, "2028-01-15T10:00:00Z" },
        //  from 29 February: 28 February of a common year, 29 of a leap one
        { "2028-02-29T12:00:00Z", 1, 0, "2029-02-28T12:00:00Z" },
        { "2028-02-29T12:00:00Z", 4, 0, "2032-02-29T12:00:00Z" },
        //  UK dates and times: 27 March 2027 12:00 GMT (summer time starts
        //  on the 28th), a year on summer time has begun (26 March 2028):
        //  12:00 BST is 11:00 UTC
        { "2027-03-27T12:00:00Z", 1, 0, "2028-03-27T11:00:00Z" },
        //  00:30 BST on 1 June 2027 is 23:30 UTC on 31 May: counted from
        //  the UK date, 1 June 2028 00:30 BST
        { "2027-05-31T23:30:00Z", 1, 0, "2028-05-31T23:30:00Z" },
        { "2026-11-27T09:00:00Z", 10, 0, "2036-11-27T09:00:00Z" },
        //  Friday 27 March 2026 10:00 GMT: summer time starts on the 29th,
        //  so 10 April 10:00 BST, 09:00 UTC (336 hours would be 11:00 BST)
        { "2026-03-27T10:00:00Z", 0, 14, "2026-04-10T09:00:00Z" },
        //  and back: 20 October 10:00 BST to 3 November 10:00 GMT
        { "2026-10-20T09:00:00Z", 0, 14, "2026-11-03T10:00:00Z" },
        //  00:30 BST on 1 July (30 June 23:30 UTC) to 15 July 00:30 BST
        { "2026-06-30T23:30:00Z", 0, 14, "2026-07-14T23:30:00Z" },
        //  across 29 February and a year end
        { "2028-02-20T12:00:00Z", 0, 14, "2028-03-05T12:00:00Z" },
        { "2026-12-25T12:00:00Z", 0, 14, "2027-01-08T12:00:00Z" },
        //  and back (a notice a week ahead): 3 April 10:00 BST to 27 March
        //  10:00 GMT
        { "2026-04-03T09:00:00Z", 0, -7, "2026-03-27T10:00:00Z" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        uint64_t from;
        char text [SGMQ_TIME_TEXT_SIZE];
        assert_int_equal (sgmq_time_parse (cases [i].from, false, &from), 0);
        sgmq_time_format (cases [i].years ? sgmq_time_add_years (from, cases [i].years)
                                          : sgmq_time_add_days (from, cases [i].days), text);
        if (strcmp (text, cases [i].due) != 0)
            fail_msg ("%s + %uy %dd: %s, wanted %s", cases [i].from, cases [i].years,
                      cases [i].days, text, cases [i].due);
    }
}

//  A publisher may send any uint as a date (respond_by, session_by): what
//  is computed from one near the end of a uint64 never wraps to 1970 (a
//  hostile review set respond_by to 2^64-1 with working hours 9-12: the
//  reminder timer came out in 1970 and fired at once, every working day).
static void
test_time_saturates_at_the_end_of_time (void **state)
{
    (void) state;
    assert_int_equal (sgmq_time_uk_local (UINT64_MAX), UINT64_MAX);
    //  2^64-1 ms is a weekday at 14:25: after hours ending at 12, the next
    //  working hours are past the end.
    assert_int_equal (sgmq_time_in_hours (UINT64_MAX, 9, 12, NULL, 0), UINT64_MAX);
    assert_int_equal (sgmq_time_add_working_days (UINT64_MAX - 1000, 1, NULL, 0),
                      UINT64_MAX);
    assert_int_equal (sgmq_time_add_years (UINT64_MAX - 1000, 1), UINT64_MAX);
    assert_int_equal (sgmq_time_add_days (UINT64_MAX, 1), UINT64_MAX);
    //  Every hour of the last ten days: working hours never come earlier
    //  than asked for.
    uint64_t hour = 3600 * 1000;
    for (uint64_t back = 0; back < 240; back++) {
        uint64_t at = UINT64_MAX - back * hour;
        uint64_t due = sgmq_time_in_hours (at, 9, 12, NULL, 0);
        if (due < at)
            fail_msg ("in hours from %llu: %llu, earlier", (unsigned long long) at,
                      (unsigned long long) due);
        due = sgmq_time_add_working_days (at, 1, NULL, 0);
        if (due < at)
            fail_msg ("a working day on from %llu: %llu, earlier",
                      (unsigned long long) at, (unsigned long long) due);
    }
}

//  --------------------------------------------------------------------------
//  Key files

//  Copies of `needle` in the process's [heap] (the brk heap, where small
//  allocations and stdio buffers live).
static int
s_heap_copies (const char *needle)
{
    FILE *maps = fopen ("/proc/self/maps", "r");
    assert_non_null (maps);
    char line [512];
    int hits = 0;
    while (fgets (line, sizeof line, maps))
        if (strstr (line, "[heap]")) {
            unsigned long lo, hi;
            assert_int_equal (sscanf (line, "%lx-%lx", &lo, &hi), 2);
            const char *p = (const char *) lo, *end = (const char *) hi;
            while ((p = memmem (p, (size_t) (end - p), needle, strlen (needle)))) {
                hits++;
                p++;
            }
        }
    fclose (maps);
    return hits;
}

//  SECURITY.md: secret keys are wiped from memory after use. Reading a
//  key file leaves no copy of its text in the heap (a second review found
//  one, in stdio's buffer and the parsed file's nodes).
static void
test_secrets_leave_no_copy_in_the_heap (void **state)
{
    (void) state;
    char error [SGMQ_KEYFILE_ERROR_SIZE];
    char *path = s_path ("heap-storage.key");
    assert_int_equal (sgmq_keyfile_new_storage (path, 9, error), 0);
    //  The key's hex text, read with read(2) onto the stack.
    char text [1024] = "", hex [SGMQ_KEYFILE_STORAGE_KEY_SIZE * 2 + 1] = "";
    int fd = open (path, O_RDONLY);
    assert_true (fd >= 0);
    ssize_t got = read (fd, text, sizeof text - 1);
    close (fd);
    assert_true (got > 0);
    const char *at = strstr (text, "key = \"");
    assert_non_null (at);
    memcpy (hex, at + 7, sizeof hex - 1);
    uint32_t id;
    uint8_t key [SGMQ_KEYFILE_STORAGE_KEY_SIZE];
    assert_int_equal (sgmq_keyfile_read_storage (path, &id, key, error), 0);
    sodium_memzero (key, sizeof key);
    assert_int_equal (s_heap_copies (hex), 0);
    sodium_memzero (text, sizeof text);
    sodium_memzero (hex, sizeof hex);
    free (path);
}

static void
test_keyfiles_are_private_and_checked (void **state)
{
    (void) state;
    char error [SGMQ_KEYFILE_ERROR_SIZE];
    char *storage = s_path ("storage.key");
    char *signing = s_path ("signing.key");
    char *signing_pub = s_path ("signing.pub");
    assert_int_equal (sgmq_keyfile_new_storage (storage, 7, error), 0);
    assert_int_equal (sgmq_keyfile_new_storage (storage, 7, error), -1);
    assert_non_null (strstr (error, "already exists"));
    struct stat st;
    assert_int_equal (stat (storage, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0600);
    uint32_t id = 0;
    uint8_t key [SGMQ_KEYFILE_STORAGE_KEY_SIZE];
    assert_int_equal (sgmq_keyfile_read_storage (storage, &id, key, error), 0);
    assert_int_equal (id, 7);
    assert_int_equal (chmod (storage, 0640), 0);
    assert_int_equal (sgmq_keyfile_read_storage (storage, &id, key, error), -1);
    assert_non_null (strstr (error, "storage.key: readable by group or others"));

    assert_int_equal (sgmq_keyfile_new_signing (signing, signing_pub, error), 0);
    uint8_t sk [SGMQ_KEYFILE_SIGN_SK_SIZE], pk [SGMQ_KEYFILE_SIGN_PK_SIZE];
    assert_int_equal (sgmq_keyfile_read_signing (signing, sk, error), 0);
    assert_int_equal (sgmq_keyfile_read_signing_public (signing_pub, pk, error), 0);
    uint8_t signature [crypto_sign_BYTES];
    crypto_sign_detached (signature, NULL, (const uint8_t *) "x", 1, sk);
    assert_int_equal (crypto_sign_verify_detached (signature, (const uint8_t *) "x", 1, pk), 0);
    assert_int_equal (stat (signing_pub, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0644);

    //  A hand-edited key that is not a key.
    s_write ("bad.key", "storage-key\n    id = 1\n    key = \"abc\"\n");
    char *bad = s_path ("bad.key");
    assert_int_equal (sgmq_keyfile_read_storage (bad, &id, key, error), -1);
    assert_non_null (strstr (error, "not 64 hex digits"));
    s_write ("bad.key", "storage-key\n    key = \"0000000000000000000000000000000000000000000000000000000000000000\"\n");
    assert_int_equal (sgmq_keyfile_read_storage (bad, &id, key, error), -1);
    assert_non_null (strstr (error, "storage-key/id"));
    free (bad);
    free (storage);
    free (signing);
    free (signing_pub);
}

//  --------------------------------------------------------------------------
//  Certificates

static void
test_cert_round_trip_in_zcert_format (void **state)
{
    (void) state;
    char error [SGMQ_CERT_ERROR_SIZE];
    char *path = s_path ("principal.cert");
    sgmq_cert_t *cert = sgmq_cert_new ();
    assert_non_null (cert);
    assert_int_equal (sgmq_cert_set_meta (cert, "name", "Executive member (police)", error), 0);
    assert_int_equal (sgmq_cert_set_meta (cert, "agency", "Metropolitan Police", error), 0);
    assert_int_equal (sgmq_cert_set_meta (cert, "roles", "member", error), 0);
    assert_int_equal (sgmq_cert_save (cert, path, error), 0);
    assert_int_equal (sgmq_cert_save (cert, path, error), -1);      //  no overwrite
    char secret [1024];
    snprintf (secret, sizeof secret, "%s_secret", path);
    struct stat st;
    assert_int_equal (stat (secret, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0600);

    //  CZMQ reads both files as its own.
    zcert_t *zcert = zcert_load (secret);
    assert_non_null (zcert);
    assert_string_equal (zcert_public_txt (zcert), sgmq_cert_public_txt (cert));
    assert_string_equal (zcert_meta (zcert, "agency"), "Metropolitan Police");
    zcert_destroy (&zcert);

    sgmq_cert_t *loaded = sgmq_cert_load (secret, error);
    assert_non_null (loaded);
    assert_memory_equal (sgmq_cert_secret_key (loaded), sgmq_cert_secret_key (cert),
                         SGMQ_CERT_KEY_SIZE);
    assert_string_equal (sgmq_cert_meta (loaded, "name"), "Executive member (police)");
    sgmq_cert_destroy (&loaded);
    loaded = sgmq_cert_load (path, error);
    assert_non_null (loaded);
    assert_null (sgmq_cert_secret_key (loaded));
    sgmq_cert_destroy (&loaded);

    //  A secret file others can read is refused.
    assert_int_equal (chmod (secret, 0644), 0);
    assert_null (sgmq_cert_load (secret, error));
    assert_non_null (strstr (error, "readable by group or others"));
    sgmq_cert_destroy (&cert);
    free (path);
}

static void
test_cert_metadata_is_capped (void **state)
{
    (void) state;
    //  zauth's fixed 512-byte metadata buffer: never make a cert that
    //  could overflow it, and never load one.
    char error [SGMQ_CERT_ERROR_SIZE];
    sgmq_cert_t *cert = sgmq_cert_new ();
    char big [300];
    memset (big, 'x', sizeof big - 1);
    big [sizeof big - 1] = 0;
    assert_int_equal (sgmq_cert_set_meta (cert, "a", big, error), 0);
    assert_int_equal (sgmq_cert_set_meta (cert, "b", big, error), -1);
    assert_non_null (strstr (error, "over the limit"));
    sgmq_cert_destroy (&cert);

    //  A hand-made file with 600 bytes of metadata.
    char text [2048];
    snprintf (text, sizeof text, "metadata\n    a = \"%s\"\n    b = \"%s\"\ncurve\n"
              "    public-key = \"%s\"\n", big, big,
              "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    s_write ("fat.cert", text);
    char *path = s_path ("fat.cert");
    assert_null (sgmq_cert_load (path, error));
    assert_non_null (strstr (error, "over the limit"));
    free (path);
}

//  --------------------------------------------------------------------------
//  Registry

static const char *s_groups [] = { "executive", "exploitation", "rapid-review-panel", NULL };

static void
s_make_cert (const char *dir, const char *file, const char *name, const char *agency,
             const char *roles, const char *groups)
{
    char path [1024], error [SGMQ_CERT_ERROR_SIZE];
    snprintf (path, sizeof path, "%s/%s", dir, file);
    sgmq_cert_t *cert = sgmq_cert_new ();
    if (name)
        assert_int_equal (sgmq_cert_set_meta (cert, "name", name, error), 0);
    if (agency)
        assert_int_equal (sgmq_cert_set_meta (cert, "agency", agency, error), 0);
    if (roles)
        assert_int_equal (sgmq_cert_set_meta (cert, "roles", roles, error), 0);
    if (groups)
        assert_int_equal (sgmq_cert_set_meta (cert, "groups", groups, error), 0);
    assert_int_equal (sgmq_cert_save_public (cert, path, true, error), 0);
    sgmq_cert_destroy (&cert);
}

static bool
s_problem_mentions (sgmq_registry_t *registry, const char *file, const char *what)
{
    for (size_t i = 0; i < sgmq_registry_problem_count (registry); i++) {
        const char *problem = sgmq_registry_problem (registry, i);
        if (strstr (problem, file) && strstr (problem, what))
            return true;
    }
    return false;
}

static void
test_registry_loads_good_and_rejects_bad (void **state)
{
    (void) state;
    char *dir = s_path ("certs");
    assert_int_equal (mkdir (dir, 0700), 0);
    s_make_cert (dir, "a-chair.cert", "Executive member", "Integrated Care Board",
                 "member", "executive");
    s_make_cert (dir, "b-police.cert", "Police case system", "Metropolitan Police",
                 "publisher,member", "exploitation,executive");
    s_make_cert (dir, "c-norole.cert", "No role", "X", NULL, NULL);
    s_make_cert (dir, "d-badrole.cert", "Bad role", "X", "boss", NULL);
    s_make_cert (dir, "e-badgroup.cert", "Bad group", "X", "member", "nowhere");
    s_make_cert (dir, "f-noname.cert", NULL, "X", "member", NULL);
    s_make_cert (dir, "g-clash.cert", "Executive member", "Another agency", "member",
                 "executive");
    s_make_cert (dir, "h-rotated.cert", "Executive member", "Integrated Care Board",
                 "member", "executive");
    char bad_key [1024];
    snprintf (bad_key, sizeof bad_key, "%s/i-badkey.cert", dir);
    const char *text = "metadata\n    name = \"K\"\n    agency = \"X\"\n    roles = \"member\"\n"
                       "curve\n    public-key = \"too short\"\n";
    assert_int_equal (testutil_write_file (bad_key, text, strlen (text)), 0);
    snprintf (bad_key, sizeof bad_key, "%s/j-leaked.cert_secret", dir);
    assert_int_equal (testutil_write_file (bad_key, "x", 1), 0);
    //  The broker's own name would let a principal pass for the broker.
    s_make_cert (dir, "k-broker.cert", "sgmq-broker", "X", "publisher", NULL);

    char error [512];
    sgmq_registry_t *registry = sgmq_registry_load (dir, s_groups, 3, error);
    assert_non_null (registry);
    //  Loaded: the chair, the police system, the chair's second key.
    assert_int_equal (sgmq_registry_size (registry), 3);
    assert_true (s_problem_mentions (registry, "c-norole.cert", "missing metadata 'roles'"));
    assert_true (s_problem_mentions (registry, "d-badrole.cert", "unknown role 'boss'"));
    assert_true (s_problem_mentions (registry, "e-badgroup.cert", "unknown group 'nowhere'"));
    assert_true (s_problem_mentions (registry, "f-noname.cert", "missing metadata 'name'"));
    assert_true (s_problem_mentions (registry, "g-clash.cert", "already belongs"));
    assert_true (s_problem_mentions (registry, "i-badkey.cert", "Z85"));
    assert_true (s_problem_mentions (registry, "j-leaked.cert_secret", "secret"));
    assert_true (s_problem_mentions (registry, "k-broker.cert", "the broker's own"));
    assert_int_equal (sgmq_registry_problem_count (registry), 8);

    const sgmq_principal_t *police = sgmq_registry_find (registry, "Police case system");
    assert_non_null (police);
    assert_true (sgmq_principal_has_role (police, SGMQ_ROLE_PUBLISHER));
    assert_true (sgmq_principal_in_group (police, "exploitation"));
    assert_ptr_equal (sgmq_registry_lookup (registry, sgmq_principal_key (police)), police);
    assert_null (sgmq_registry_lookup (registry, "not a key"));

    //  Members of executive: one name per person, whatever its keys.
    size_t count = 0;
    const char *const *members = sgmq_registry_members (registry, "executive", &count);
    assert_int_equal (count, 2);
    assert_string_equal (members [0], "Executive member");
    assert_string_equal (members [1], "Police case system");
    sgmq_registry_members (registry, "rapid-review-panel", &count);
    assert_int_equal (count, 0);
    sgmq_registry_destroy (&registry);
    assert_null (sgmq_registry_load ("/nonexistent", s_groups, 3, error));
    assert_non_null (strstr (error, "/nonexistent"));
    registry = sgmq_registry_new_empty ();
    assert_non_null (registry);
    assert_int_equal (sgmq_registry_size (registry), 0);
    assert_null (sgmq_registry_lookup (registry, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"));
    sgmq_registry_members (registry, "executive", &count);
    assert_int_equal (count, 0);
    sgmq_registry_destroy (&registry);
    free (dir);
}

static void
test_registry_signature_sees_same_size_rewrites (void **state)
{
    (void) state;
    char *dir = s_path ("sig");
    assert_int_equal (mkdir (dir, 0700), 0);
    s_make_cert (dir, "one.cert", "Someone", "X", "member", NULL);
    uint8_t before [SGMQ_REGISTRY_SIG_SIZE], after [SGMQ_REGISTRY_SIG_SIZE];
    assert_int_equal (sgmq_registry_signature (dir, before), 0);
    assert_int_equal (sgmq_registry_signature (dir, after), 0);
    assert_memory_equal (before, after, sizeof before);
    //  Rewrite in place, same length, same second: one byte differs.
    char path [1024];
    snprintf (path, sizeof path, "%s/one.cert", dir);
    size_t size;
    char *text = testutil_read_file (path, &size);
    char *key = strstr (text, "public-key = \"") + 14;
    key [0] = key [0] == 'a' ? 'b' : 'a';
    FILE *file = fopen (path, "r+");
    assert_int_equal (fwrite (text, 1, size, file), size);
    fclose (file);
    assert_int_equal (sgmq_registry_signature (dir, after), 0);
    assert_memory_not_equal (before, after, sizeof before);
    free (text);
    free (dir);
}

//  --------------------------------------------------------------------------
//  Config

static sgmq_config_t *
s_config (const char *text, char *error)
{
    return sgmq_config_parse (text, strlen (text), "sgmq.cfg", "/deploy", error);
}

static void
test_config_default_is_the_partnership (void **state)
{
    (void) state;
    char error [SGMQ_CONFIG_ERROR_SIZE];
    char *text = sgmq_config_default_text ("tcp://127.0.0.1:9999");
    assert_non_null (strstr (text, "\"tcp://127.0.0.1:9999\""));
    sgmq_config_t *config = s_config (text, error);
    if (!config)
        fprintf (stderr, "%s\n", error);
    assert_non_null (config);
    assert_string_equal (sgmq_config_str (config, SGMQ_OPT_ENDPOINT), "tcp://127.0.0.1:9999");
    assert_string_equal (sgmq_config_str (config, SGMQ_OPT_CERTS), "/deploy/certs");
    assert_string_equal (sgmq_config_str (config, SGMQ_OPT_DATA), "/deploy/data");
    const char *groups [] = { "executive", "qa-performance", "exploitation",
                              "domestic-abuse", "online-safety", "rapid-review-panel",
                              "rapid-review-working-group", "education-forum" };
    assert_int_equal (sgmq_config_group_count (config), 8);
    for (size_t i = 0; i < 8; i++)
        assert_string_equal (sgmq_config_group_id (config, i), groups [i]);
    assert_string_equal (sgmq_config_group_display (config, "rapid-review-panel"),
                         "Rapid Review Panel");
    assert_true (sgmq_config_learning_group (config, "rapid-review-working-group"));
    assert_false (sgmq_config_learning_group (config, "executive"));
    assert_int_equal (sgmq_config_int (config, SGMQ_OPT_WINDOW), 100);
    assert_int_equal (sgmq_config_duration (config, SGMQ_OPT_HEARTBEAT).amount, 5000);
    sgmq_duration_t ack = sgmq_config_duration (config, SGMQ_OPT_ESCALATION_ACK_BY);
    assert_true (ack.working_days);
    assert_int_equal (ack.amount, 1);
    //  Thursday 24 December 2026 + 1 working day: Christmas and the
    //  weekend and the Boxing Day substitute pass; Tuesday 29th.
    uint64_t from, due;
    char when [SGMQ_TIME_TEXT_SIZE];
    assert_int_equal (sgmq_time_parse ("2026-12-24T15:00:00Z", false, &from), 0);
    due = sgmq_config_deadline (config, SGMQ_OPT_ESCALATION_ACK_BY, from);
    assert_string_equal (sgmq_time_format (due, when), "2026-12-29T15:00:00Z");
    due = sgmq_config_deadline (config, SGMQ_OPT_LEARNING_SESSION, from);
    assert_string_equal (sgmq_time_format (due, when), "2027-01-07T15:00:00Z");
    //  Reminders go out 9 to 17 on working days by default: one due on
    //  Christmas Eve at 17:30 waits for Tuesday 29th, 09:00.
    assert_int_equal (sgmq_time_parse ("2026-12-24T17:30:00Z", false, &from), 0);
    due = sgmq_config_remind_at (config, from);
    assert_string_equal (sgmq_time_format (due, when), "2026-12-29T09:00:00Z");
    //  "14d" is 14 UK dates on: 27 March 10:00 GMT to 10 April 10:00 BST.
    assert_true (sgmq_config_duration (config, SGMQ_OPT_LEARNING_SESSION).days);
    assert_int_equal (sgmq_time_parse ("2026-03-27T10:00:00Z", false, &from), 0);
    due = sgmq_config_deadline (config, SGMQ_OPT_LEARNING_SESSION, from);
    assert_string_equal (sgmq_time_format (due, when), "2026-04-10T09:00:00Z");
    //  The reflection session, a calendar year on by default.
    sgmq_duration_t reflection = sgmq_config_duration (config, SGMQ_OPT_REFLECTION);
    assert_true (reflection.years && !reflection.working_days);
    assert_int_equal (reflection.amount, 1);
    assert_int_equal (sgmq_time_parse ("2027-06-01T09:00:00Z", false, &from), 0);
    due = sgmq_config_deadline (config, SGMQ_OPT_REFLECTION, from);
    assert_string_equal (sgmq_time_format (due, when), "2028-06-01T09:00:00Z");
    sgmq_config_destroy (&config);
    free (text);
}

static void
test_config_rejects_bad_files_with_their_line (void **state)
{
    (void) state;
    const char *groups = "groups\n    executive\n        name = \"Exec\"\n";
    //  line: where the error must point (0: the file as a whole).
    struct { const char *text; const char *expect; int line; } cases [] = {
        { "sgmq\n    endpoint = \"tcp://x:1\"\n", "no groups section", 0 },
        { "groups\n    exploitation\n", "must include 'executive'", 0 },
        { "groups\n    Executive\n", "group id 'Executive'", 2 },
        { "groups\n    executive\n        colour = \"red\"\n", "group executive: unknown option 'colour'", 3 },
        { "bogus\n", "unknown section 'bogus'", 1 },
        { "limits\n    window = 0\n", "limits/window must be from 1", 2 },
        { "limits\n    window = ten\n", "limits/window must be a whole number", 2 },
        { "limits\n    heartbeat = \"2wd\"\n", "limits/heartbeat cannot be in working days", 2 },
        { "deadlines\n    checkpoint = \"1y\"\n", "deadlines/checkpoint cannot be in years", 2 },
        { "deadlines\n    reflection = \"11y\"\n", "deadlines/reflection must be a duration like 30s, 15m, 2h, 14d, 3wd or 1y", 2 },
        { "deadlines\n    ack-by = \"soon\"\n", "deadlines/ack-by must be a duration", 2 },
        { "deadlines\n    ack-by = \"1d\"\n    ack-by = \"2d\"\n", "deadlines/ack-by given twice", 3 },
        { "sgmq\n    log-level = loud\n", "sgmq/log-level must be one of", 2 },
        { "rules\n    learning-groups = \"nobody\"\n", "learning-groups: unknown group 'nobody'", 2 },
        { "rules\n    escalate-for\n        x\n            agency = \"A\"\n", "escalate-for/x needs both", 3 },
        { "holidays\n    2026-02-30 = \"no such day\"\n", "holiday '2026-02-30'", 2 },
        { "limits\n    heartbeat = 10s\n    session-timeout = 5s\n", "session-timeout must be longer", 0 },
        { "deadlines\n    remind-hours = \"17-9\"\n", "remind-hours must be two whole hours", 0 },
        { "deadlines\n    remind-hours = \"9-25\"\n", "remind-hours must be two whole hours", 0 },
        { "deadlines\n    remind-hours = \"9-x\"\n", "remind-hours must be two whole hours", 0 },
        { "deadlines\n    remind-hours = \"a-17\"\n", "remind-hours must be two whole hours", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char text [1024], error [SGMQ_CONFIG_ERROR_SIZE];
        //  The first four define groups themselves; the rest get good ones.
        snprintf (text, sizeof text, "%s%s", i < 4 ? "" : groups, cases [i].text);
        sgmq_config_t *config = s_config (text, error);
        if (config || !strstr (error, cases [i].expect))
            fprintf (stderr, "case %zu: got '%s'\n", i, config ? "(loaded)" : error);
        assert_null (config);
        assert_non_null (strstr (error, cases [i].expect));
        char where [32];
        snprintf (where, sizeof where, "sgmq.cfg:%d: ", cases [i].line + (i < 4 ? 0 : 3));
        if (cases [i].line)
            assert_memory_equal (error, where, strlen (where));
    }
    char error [SGMQ_CONFIG_ERROR_SIZE];
    assert_null (sgmq_config_load ("/nonexistent/sgmq.cfg", error));
    assert_non_null (strstr (error, "/nonexistent/sgmq.cfg: cannot open"));
}

static void
test_config_rules_and_durations (void **state)
{
    (void) state;
    const char *text =
        "groups\n    executive\n    online-safety\n        name = \"Online\"\n"
        "rules\n    learning-groups = \"online-safety\"\n    escalate-for\n"
        "        police\n            agency = \"Metropolitan Police\"\n"
        "            groups = \"online-safety\"\n"
        "deadlines\n    escalation-ack-by = 90s\n";
    char error [SGMQ_CONFIG_ERROR_SIZE];
    sgmq_config_t *config = s_config (text, error);
    if (!config)
        fprintf (stderr, "%s\n", error);
    assert_non_null (config);
    assert_true (sgmq_config_may_escalate_for (config, "Metropolitan Police", "online-safety"));
    assert_false (sgmq_config_may_escalate_for (config, "Metropolitan Police", "executive"));
    assert_false (sgmq_config_may_escalate_for (config, "Other", "online-safety"));
    assert_true (sgmq_config_learning_group (config, "online-safety"));
    assert_string_equal (sgmq_config_group_display (config, "executive"), "executive");
    assert_int_equal (sgmq_config_deadline (config, SGMQ_OPT_ESCALATION_ACK_BY, 1000), 91000);
    sgmq_config_destroy (&config);
    sgmq_duration_t d;
    assert_int_equal (sgmq_config_parse_duration ("250ms", &d), 0);
    assert_int_equal (d.amount, 250);
    assert_int_equal (sgmq_config_parse_duration ("3wd", &d), 0);
    assert_true (d.working_days);
    assert_int_equal (sgmq_config_parse_duration ("0s", &d), -1);
    assert_int_equal (sgmq_config_parse_duration ("-1s", &d), -1);
    assert_int_equal (sgmq_config_parse_duration ("1y", &d), 0);
    assert_true (d.years && !d.working_days);
    assert_int_equal (d.amount, 1);
    assert_int_equal (sgmq_config_parse_duration ("10y", &d), 0);
    assert_int_equal (sgmq_config_parse_duration ("11y", &d), -1);
    assert_int_equal (sgmq_config_parse_duration ("0y", &d), -1);
    assert_int_equal (sgmq_config_parse_duration ("1yr", &d), -1);
    assert_int_equal (sgmq_config_parse_duration ("99999999999999999999d", &d), -1);
}

//  --------------------------------------------------------------------------
//  The libzmq behaviour the broker's admission rests on: a CURVE server
//  with ZAP_ENFORCE_DOMAIN (option 93) and no ZAP handler refuses.

static void
test_zmq_curve_without_zap_handler_refuses (void **state)
{
    (void) state;
    zcert_t *server = zcert_new (), *client = zcert_new ();
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zcert_apply (server, router);
    zsock_set_curve_server (router, 1);
    zsock_set_zap_domain (router, "sgmq");
    int one = 1;
    assert_int_equal (zmq_setsockopt (zsock_resolve (router), 93, &one, sizeof one), 0);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zcert_apply (client, dealer);
    zsock_set_curve_serverkey (dealer, zcert_public_txt (server));
    assert_int_equal (zsock_connect (dealer, "tcp://127.0.0.1:%d", port), 0);
    zstr_send (dealer, "hello");
    zpoller_t *poller = zpoller_new (router, NULL);
    //  Nothing arrives: without a handler, enforcement refuses the key.
    assert_null (zpoller_wait (poller, (int) testutil_ms (1000)));
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    zcert_destroy (&server);
    zcert_destroy (&client);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_zpl_reads_nested_values),
        cmocka_unit_test (test_zpl_errors_name_file_and_line),
        cmocka_unit_test (test_zpl_writes_what_zconfig_reads),
        cmocka_unit_test (test_time_parses_and_formats_utc_and_uk),
        cmocka_unit_test (test_time_counts_working_days),
        cmocka_unit_test (test_time_adds_calendar_years_and_days),
        cmocka_unit_test (test_time_saturates_at_the_end_of_time),
        cmocka_unit_test (test_keyfiles_are_private_and_checked),
        cmocka_unit_test (test_secrets_leave_no_copy_in_the_heap),
        cmocka_unit_test (test_cert_round_trip_in_zcert_format),
        cmocka_unit_test (test_cert_metadata_is_capped),
        cmocka_unit_test (test_registry_loads_good_and_rejects_bad),
        cmocka_unit_test (test_registry_signature_sees_same_size_rewrites),
        cmocka_unit_test (test_config_default_is_the_partnership),
        cmocka_unit_test (test_config_rejects_bad_files_with_their_line),
        cmocka_unit_test (test_config_rules_and_durations),
        cmocka_unit_test (test_zmq_curve_without_zap_handler_refuses),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    s_dir = testutil_tmpdir ("certs");
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    testutil_rmtree (s_dir);
    free (s_dir);
    zsys_shutdown ();
    return failed;
}
