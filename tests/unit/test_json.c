/*  The command line's output writers: JSON strings that are always valid
    JSON (whatever bytes a name holds), CSV fields that no spreadsheet runs
    as a formula, text for people that shows what a publisher hid in it,
    and the Escalation Tracker's figures for a period. */
#include "testutil.h"
#include "sgmq_json.h"
#include "sgmq_tracker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  What a writer made of `text`, as a string (caller frees).
static char *
s_written (void (*writer) (FILE *, const char *), const char *text)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *file = open_memstream (&buf, &size);
    assert_non_null (file);
    writer (file, text);
    assert_int_equal (fclose (file), 0);
    return buf;
}

static void
test_json_strings_are_valid_json (void **state)
{
    (void) state;
    const struct { const char *in, *out; } cases [] = {
        { "plain", "\"plain\"" },
        { "caf\xc3\xa9 \xe2\x82\xac", "\"caf\xc3\xa9 \xe2\x82\xac\"" },    //  UTF-8 as is
        { "caf\xe9.cert", "\"caf\\ufffd.cert\"" },                         //  Latin-1 byte
        { "\xc3", "\"\\ufffd\"" },                                         //  cut short
        { "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },                   //  a surrogate
        { "a\"b\\c\n\x01", "\"a\\\"b\\\\c\\n\\u0001\"" },
        //  What would change a reader's display, escaped (sgmq_text_hidden)
        { "Safe \xe2\x80\xae" "kcatta \xc2\x9b" "31m \xe2\x80\xa8", "\"Safe \\u202ekcatta \\u009b31m \\u2028\"" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char *out = s_written (sgmq_json_write_string, cases [i].in);
        assert_string_equal (out, cases [i].out);
        //  Our own strict reader takes it.
        char error [SGMQ_JSON_ERROR_SIZE];
        sgmq_json_t *json = sgmq_json_parse (out, strlen (out), error);
        if (!json)
            fail_msg ("case %zu: %s is not JSON: %s", i, out, error);
        sgmq_json_destroy (&json);
        free (out);
    }
}

static void
test_csv_fields_are_not_formulas (void **state)
{
    (void) state;
    const struct { const char *in, *out; } cases [] = {
        { "Missing from care", "\"Missing from care\"" },
        { "=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\"" },
        { "+1", "\"'+1\"" },
        { "-2+3", "\"'-2+3\"" },
        { "@SUM(A1)", "\"'@SUM(A1)\"" },
        { "\tx", "\"'\tx\"" },
        { "a=b", "\"a=b\"" },
        { "", "\"\"" },
        { NULL, "\"\"" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char *out = s_written (sgmq_csv_write_field, cases [i].in);
        assert_string_equal (out, cases [i].out);
        free (out);
    }
}

static void
s_write_indented (FILE *file, const char *text)
{
    sgmq_text_write (file, text, "    ");
}

//  A title with a right-to-left override reads backwards from there on,
//  and a C1 control is an escape sequence to some terminals (a hostile
//  review): shown, not obeyed. Other scripts, and the marks that only set
//  a direction, pass as they are.
static void
test_text_for_people_shows_hidden_characters (void **state)
{
    (void) state;
    const struct { const char *in, *out; } cases [] = {
        { "Missing from care", "Missing from care" },
        { "caf\xc3\xa9 \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85", "caf\xc3\xa9 \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85" },
        { "left\xe2\x80\x8emark", "left\xe2\x80\x8emark" },           //  U+200E LRM
        { "Invoice \xe2\x80\xae" "fdp.exe", "Invoice <U+202E>fdp.exe" },     //  RLO
        { "\xe2\x80\xaa\xe2\x80\xac\xe2\x81\xa6\xe2\x81\xa9", "<U+202A><U+202C><U+2066><U+2069>" },
        { "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xe2\x80\xa7", "a<U+2028>b<U+2029>c\xe2\x80\xa7" },
        { "\xc2\x9b" "31m red", "<U+009B>31m red" },                    //  C1 CSI
        { "\xc2\x80\xc2\xa0", "<U+0080>\xc2\xa0" },                  //  NBSP is seen
        { "done\rfrom Police", "done\\rfrom Police" },
        { "line one\nline two", "line one\n    line two" },
        { "", "" },
        { NULL, "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char *out = s_written (s_write_indented, cases [i].in);
        if (strcmp (out, cases [i].out) != 0)
            fail_msg ("case %zu: %s", i, out);
        free (out);
    }
}

//  The tracker page for `items`, as a string (caller frees).
static char *
s_tracker_html (uint64_t since, uint64_t until, uint64_t now, const sgmq_cmd_t *items,
                size_t count)
{
    sgmq_tracker_t *tracker = sgmq_tracker_new (since, until, now);
    assert_non_null (tracker);
    for (size_t i = 0; i < count; i++)
        assert_int_equal (sgmq_tracker_add (tracker, &items [i]), 0);
    char *buf = NULL;
    size_t size = 0;
    FILE *file = open_memstream (&buf, &size);
    assert_non_null (file);
    assert_int_equal (sgmq_tracker_write_html (tracker, file), 0);
    assert_int_equal (fclose (file), 0);
    sgmq_tracker_destroy (&tracker);
    return buf;
}

//  A period's rates count the deadlines that fell in it, once: an item
//  carried in from before is listed, but what it met or missed before the
//  period was in that period's papers (a review saw one session held in
//  September count in every month's papers for a year).
static void
test_tracker_counts_each_deadline_in_its_period (void **state)
{
    (void) state;
    const uint64_t day = 86400000, since = 100 * day, until = 130 * day, now = 140 * day;
    sgmq_cmd_t items [3];
    memset (items, 0, sizeof items);
    //  Raised before the period, acknowledged late before it, answered in
    //  it, on time.
    items [0].cmd = SGMQ_CMD_REPORT_ESCALATION;
    items [0].u.report_escalation = (__typeof__ (items [0].u.report_escalation)) {
        .seq = 1, .time = 90 * day, .from = "A case system", .group = "exploitation",
        .title = "Carried", .severity = SGMQ_SEVERITY_HIGH, .status = SGMQ_ESC_RESPONDED,
        .ack_by = 91 * day, .acked_at = 95 * day, .acked_by = "An Executive member",
        .respond_by = 120 * day, .responded_at = 110 * day, .overdue_ack = true };
    //  Raised in the period, acknowledged in time, not answered yet.
    items [1].cmd = SGMQ_CMD_REPORT_ESCALATION;
    items [1].u.report_escalation = (__typeof__ (items [1].u.report_escalation)) {
        .seq = 2, .time = 105 * day, .from = "A case system", .group = "exploitation",
        .title = "New", .severity = SGMQ_SEVERITY_LOW, .status = SGMQ_ESC_ACKNOWLEDGED,
        .ack_by = 106 * day, .acked_at = 105 * day + 1, .acked_by = "An Executive member",
        .respond_by = 150 * day };
    //  A learning alert published before the period, its session held on
    //  time before it; its reflection a year on.
    items [2].cmd = SGMQ_CMD_REPORT_LEARNING;
    items [2].u.report_learning = (__typeof__ (items [2].u.report_learning)) {
        .seq = 3, .time = 80 * day, .from = "A review group", .title = "Lessons",
        .review_ref = "CSPR-1", .review_type = SGMQ_REVIEW_CSPR,
        .session_by = 94 * day, .session_held = 93 * day, .reflection_by = 445 * day };
    char *html = s_tracker_html (since, until, now, items, 3);
    assert_non_null (strstr (html, "raised in the period</th><td>1 (0 critical, 0 high, "
                                   "0 medium, 1 low)"));
    assert_non_null (strstr (html, "still open at its start</th><td>1</td>"));
    //  Acknowledgements due in the period: only the new one (the carried
    //  one's was missed before the period).
    assert_non_null (strstr (html, "within the deadline, of those due in the period"
                                   "</th><td>1 of 1 (100%)"));
    assert_non_null (strstr (html, "Responded to</th><td>0 of 1 (0%)"));
    //  The carried one's response was due, and came, in the period.
    assert_non_null (strstr (html, "by the date requested, of those due in the period"
                                   "</th><td>1 of 1 (100%)"));
    //  The session held before the period is not this period's.
    assert_non_null (strstr (html, "Learning sessions held on time, of those due in the "
                                   "period</th><td>none"));
    assert_non_null (strstr (html, "(before the period)"));
    free (html);
    //  Without a start, everything is the period's own.
    html = s_tracker_html (0, 0, now, items, 3);
    assert_non_null (strstr (html, "within the deadline, of those due in the period"
                                   "</th><td>1 of 2 (50%)"));
    assert_non_null (strstr (html, "Learning sessions held on time, of those due in the "
                                   "period</th><td>1 of 1 (100%)"));
    assert_null (strstr (html, "(before the period)"));
    free (html);
    //  A title that would reorder the page around it is shown, escaped.
    items [1].u.report_escalation.title = "Safe \xe2\x80\xae<b>";
    html = s_tracker_html (since, until, now, items, 3);
    assert_non_null (strstr (html, "Safe &lt;U+202E&gt;&lt;b&gt;"));
    assert_null (strstr (html, "\xe2\x80\xae"));
    free (html);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_json_strings_are_valid_json),
        cmocka_unit_test (test_csv_fields_are_not_formulas),
        cmocka_unit_test (test_text_for_people_shows_hidden_characters),
        cmocka_unit_test (test_tracker_counts_each_deadline_in_its_period),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
