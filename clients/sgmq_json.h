/*  =========================================================================
    sgmq_json - a small strict JSON reader, and JSON string, CSV field and
    text writers, for the sgmq command line (`--file` documents in,
    `--json` lines, CSV and lines for people out)

    Strict RFC 8259: no comments, no trailing commas, no NaN; strings must
    be valid UTF-8 (\u escapes, surrogate pairs included, are decoded);
    duplicate keys are an error. Depth and size are capped, since the input
    may come from any script.
    =========================================================================
*/
#ifndef SGMQ_JSON_H_INCLUDED
#define SGMQ_JSON_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SGMQ_JSON_MAX_SIZE   (4 * 1024 * 1024)
#define SGMQ_JSON_MAX_DEPTH  32
#define SGMQ_JSON_ERROR_SIZE 256

typedef enum {
    SGMQ_JSON_NULL, SGMQ_JSON_BOOL, SGMQ_JSON_NUMBER, SGMQ_JSON_STRING,
    SGMQ_JSON_ARRAY, SGMQ_JSON_OBJECT
} sgmq_json_type_t;

typedef struct _sgmq_json_t sgmq_json_t;

//  Parse a document. NULL with "line N: problem" in `error`.
sgmq_json_t *
    sgmq_json_parse (const char *text, size_t size, char *error);

void
    sgmq_json_destroy (sgmq_json_t **self_p);

sgmq_json_type_t sgmq_json_type (const sgmq_json_t *self);
//  String value (NUL-terminated; NULL if not a string).
const char *sgmq_json_string (const sgmq_json_t *self);
bool        sgmq_json_bool (const sgmq_json_t *self);
//  True and *value set if the value is a whole number in 0..2^53.
bool        sgmq_json_uint (const sgmq_json_t *self, uint64_t *value);
//  Items of an array or members of an object.
size_t      sgmq_json_size (const sgmq_json_t *self);
const sgmq_json_t *sgmq_json_at (const sgmq_json_t *self, size_t index);
//  Key of member `index` of an object.
const char *sgmq_json_key (const sgmq_json_t *self, size_t index);
//  Member of an object by key, or NULL.
const sgmq_json_t *sgmq_json_get (const sgmq_json_t *self, const char *key);

//  Write `text` as a JSON string (quoted, escaped) to `file`. Bytes that
//  are not valid UTF-8 are written as U+FFFD; the characters of
//  sgmq_text_hidden as \u escapes (the same string once read).
void
    sgmq_json_write_string (FILE *file, const char *text);

//  Write `text` (NULL: empty) as one quoted CSV field to `file`. A field
//  that starts with = + - @ TAB or CR gets a ' in front, so that no
//  spreadsheet takes it for a formula (OWASP's advice on CSV injection).
void
    sgmq_csv_write_field (FILE *file, const char *text);

//  The code point at `p` if it is a character people cannot see but that
//  changes what they see, with its length in bytes in *len: a C1 control
//  (U+0080..U+009F: some terminals run them as escape sequences), a line
//  or paragraph separator (U+2028, U+2029: a line break to some readers)
//  or a bidirectional embedding, override or isolate (U+202A..U+202E,
//  U+2066..U+2069: they reorder the text after them, a title reading
//  otherwise than it was written). The protocol lets publishers send
//  them; 0 for any other character (the marks U+200E, U+200F and U+061C
//  pass: they only set a direction, which text in other scripts needs).
uint32_t
    sgmq_text_hidden (const char *p, size_t *len);

//  Write `text` (NULL: nothing) for people at a terminal: a hidden
//  character as "<U+202E>", CR as "\r" (it would overwrite the line), and
//  `indent` after each LF, so that a line of a summary cannot pass for a
//  line of the output's own.
void
    sgmq_text_write (FILE *file, const char *text, const char *indent);

#ifdef __cplusplus
}
#endif

#endif
