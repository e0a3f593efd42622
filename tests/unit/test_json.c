/*  The command line's output writers: JSON strings that are always valid
    JSON (whatever bytes a name holds), and CSV fields that no spreadsheet
    runs as a formula. */
#include "testutil.h"
#include "sgmq_json.h"

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

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_json_strings_are_valid_json),
        cmocka_unit_test (test_csv_fields_are_not_formulas),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
