/*  =========================================================================
    sgmq_json - strict JSON for the command line

    A recursive-descent parser (depth-capped) building a small tree.
    =========================================================================
*/
#include "sgmq_json.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

//  2^53: the largest integer every JSON reader keeps exactly.
#define S_UINT_MAX 9007199254740992.0

struct _sgmq_json_t {
    sgmq_json_type_t type;
    bool boolean;
    double number;
    bool integral;
    uint64_t integer;
    char *string;
    size_t count;
    sgmq_json_t **items;
    char **keys;
};

typedef struct {
    const char *p, *end;
    int line;
    char *error;
    bool failed;
} s_parser_t;

static int
__attribute__ ((format (printf, 2, 3)))
s_fail (s_parser_t *parser, const char *format, ...)
{
    if (parser->failed)
        return -1;
    parser->failed = true;
    if (parser->error) {
        int used = snprintf (parser->error, SGMQ_JSON_ERROR_SIZE, "line %d: ",
                             parser->line);
        va_list args;
        va_start (args, format);
        if (used > 0 && used < SGMQ_JSON_ERROR_SIZE)
            vsnprintf (parser->error + used, SGMQ_JSON_ERROR_SIZE - (size_t) used,
                       format, args);
        va_end (args);
    }
    return -1;
}

static void
s_skip (s_parser_t *parser)
{
    while (parser->p < parser->end
           && (*parser->p == ' ' || *parser->p == '\t' || *parser->p == '\n'
               || *parser->p == '\r')) {
        if (*parser->p == '\n')
            parser->line++;
        parser->p++;
    }
}

static void s_free (sgmq_json_t *node);

static int
s_hex4 (s_parser_t *parser, unsigned *value)
{
    if (parser->end - parser->p < 4)
        return s_fail (parser, "short \\u escape");
    *value = 0;
    for (int i = 0; i < 4; i++) {
        char c = *parser->p++;
        unsigned digit = c >= '0' && c <= '9' ? (unsigned) (c - '0')
                       : c >= 'a' && c <= 'f' ? (unsigned) (c - 'a' + 10)
                       : c >= 'A' && c <= 'F' ? (unsigned) (c - 'A' + 10) : 16;
        if (digit == 16)
            return s_fail (parser, "bad \\u escape");
        *value = *value * 16 + digit;
    }
    return 0;
}

static size_t
s_utf8_put (char *out, unsigned code)
{
    if (code < 0x80) {
        out [0] = (char) code;
        return 1;
    }
    if (code < 0x800) {
        out [0] = (char) (0xc0 | (code >> 6));
        out [1] = (char) (0x80 | (code & 0x3f));
        return 2;
    }
    if (code < 0x10000) {
        out [0] = (char) (0xe0 | (code >> 12));
        out [1] = (char) (0x80 | ((code >> 6) & 0x3f));
        out [2] = (char) (0x80 | (code & 0x3f));
        return 3;
    }
    out [0] = (char) (0xf0 | (code >> 18));
    out [1] = (char) (0x80 | ((code >> 12) & 0x3f));
    out [2] = (char) (0x80 | ((code >> 6) & 0x3f));
    out [3] = (char) (0x80 | (code & 0x3f));
    return 4;
}

//  Length of a valid UTF-8 sequence at p (within end), or 0.
static size_t
s_utf8_len (const unsigned char *p, const unsigned char *end)
{
    unsigned c = p [0], code, min;
    size_t len;
    if (c < 0x80)
        return 1;
    else if ((c & 0xe0) == 0xc0) { len = 2; code = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; code = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; code = c & 0x07; min = 0x10000; }
    else
        return 0;
    if ((size_t) (end - p) < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p [i] & 0xc0) != 0x80)
            return 0;
        code = (code << 6) | (p [i] & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
        return 0;
    return len;
}

static char *
s_string (s_parser_t *parser)
{
    parser->p++;                //  opening quote
    //  Decoded text is never longer than the source.
    const char *start = parser->p;
    const char *close = start;
    while (close < parser->end && *close != '"') {
        if (*close == '\\')
            close++;
        close++;
    }
    if (close >= parser->end) {
        s_fail (parser, "unterminated string");
        return NULL;
    }
    char *out = malloc ((size_t) (close - start) + 1);
    size_t used = 0;
    if (!out) {
        s_fail (parser, "out of memory");
        return NULL;
    }
    while (parser->p < close) {
        unsigned char c = (unsigned char) *parser->p;
        if (c < 0x20) {
            s_fail (parser, "control character in a string");
            goto out_free;
        }
        if (c != '\\') {
            size_t len = s_utf8_len ((const unsigned char *) parser->p,
                                     (const unsigned char *) close);
            if (!len) {
                s_fail (parser, "string is not valid UTF-8");
                goto out_free;
            }
            memcpy (out + used, parser->p, len);
            used += len;
            parser->p += len;
            continue;
        }
        parser->p++;
        char e = *parser->p++;
        const char *simple = strchr ("\"\\/bfnrt", e);
        if (simple && e) {
            static const char map [] = "\"\\/\b\f\n\r\t";
            out [used++] = map [simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u') {
            s_fail (parser, "bad escape \\%c", e);
            goto out_free;
        }
        unsigned code;
        if (s_hex4 (parser, &code))
            goto out_free;
        if (code >= 0xd800 && code <= 0xdbff) {
            unsigned low;
            if (parser->end - parser->p < 2 || parser->p [0] != '\\' || parser->p [1] != 'u'
            ||  (parser->p += 2, s_hex4 (parser, &low)) || low < 0xdc00 || low > 0xdfff) {
                s_fail (parser, "unpaired surrogate in \\u escape");
                goto out_free;
            }
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        }
        else
        if (code >= 0xdc00 && code <= 0xdfff) {
            s_fail (parser, "unpaired surrogate in \\u escape");
            goto out_free;
        }
        if (code == 0) {
            s_fail (parser, "NUL character in a string");
            goto out_free;
        }
        used += s_utf8_put (out + used, code);
    }
    parser->p = close + 1;
    out [used] = 0;
    return out;
out_free:
    free (out);
    return NULL;
}

static sgmq_json_t *s_value (s_parser_t *parser, int depth);

static int
s_append (sgmq_json_t *node, sgmq_json_t *item, char *key)
{
    sgmq_json_t **items = realloc (node->items, (node->count + 1) * sizeof *items);
    if (!items)
        return -1;
    node->items = items;
    if (node->type == SGMQ_JSON_OBJECT) {
        char **keys = realloc (node->keys, (node->count + 1) * sizeof *keys);
        if (!keys)
            return -1;
        node->keys = keys;
        node->keys [node->count] = key;
    }
    node->items [node->count++] = item;
    return 0;
}

static sgmq_json_t *
s_container (s_parser_t *parser, int depth, bool object)
{
    if (depth >= SGMQ_JSON_MAX_DEPTH) {
        s_fail (parser, "nested more than %d deep", SGMQ_JSON_MAX_DEPTH);
        return NULL;
    }
    sgmq_json_t *node = calloc (1, sizeof *node);
    if (!node) {
        s_fail (parser, "out of memory");
        return NULL;
    }
    node->type = object ? SGMQ_JSON_OBJECT : SGMQ_JSON_ARRAY;
    parser->p++;
    s_skip (parser);
    char close = object ? '}' : ']';
    if (parser->p < parser->end && *parser->p == close) {
        parser->p++;
        return node;
    }
    while (true) {
        char *key = NULL;
        s_skip (parser);
        if (object) {
            if (parser->p >= parser->end || *parser->p != '"') {
                s_fail (parser, "expected a \"key\"");
                break;
            }
            if (!(key = s_string (parser)))
                break;
            if (sgmq_json_get (node, key)) {
                s_fail (parser, "duplicate key \"%s\"", key);
                free (key);
                break;
            }
            s_skip (parser);
            if (parser->p >= parser->end || *parser->p != ':') {
                s_fail (parser, "expected ':' after \"%s\"", key);
                free (key);
                break;
            }
            parser->p++;
        }
        sgmq_json_t *item = s_value (parser, depth + 1);
        if (!item || s_append (node, item, key)) {
            s_free (item);
            free (key);
            s_fail (parser, "out of memory");
            break;
        }
        s_skip (parser);
        if (parser->p < parser->end && *parser->p == ',') {
            parser->p++;
            continue;
        }
        if (parser->p < parser->end && *parser->p == close) {
            parser->p++;
            return node;
        }
        s_fail (parser, "expected ',' or '%c'", close);
        break;
    }
    s_free (node);
    return NULL;
}

static sgmq_json_t *
s_number (s_parser_t *parser)
{
    const char *start = parser->p;
    if (parser->p < parser->end && *parser->p == '-')
        parser->p++;
    const char *digits = parser->p;
    while (parser->p < parser->end && *parser->p >= '0' && *parser->p <= '9')
        parser->p++;
    if (parser->p == digits || (digits [0] == '0' && parser->p - digits > 1)) {
        s_fail (parser, "bad number");
        return NULL;
    }
    bool integral = true;
    if (parser->p < parser->end && *parser->p == '.') {
        integral = false;
        const char *fraction = ++parser->p;
        while (parser->p < parser->end && *parser->p >= '0' && *parser->p <= '9')
            parser->p++;
        if (parser->p == fraction) {
            s_fail (parser, "bad number");
            return NULL;
        }
    }
    if (parser->p < parser->end && (*parser->p == 'e' || *parser->p == 'E')) {
        integral = false;
        parser->p++;
        if (parser->p < parser->end && (*parser->p == '+' || *parser->p == '-'))
            parser->p++;
        const char *exponent = parser->p;
        while (parser->p < parser->end && *parser->p >= '0' && *parser->p <= '9')
            parser->p++;
        if (parser->p == exponent) {
            s_fail (parser, "bad number");
            return NULL;
        }
    }
    char text [64];
    size_t len = (size_t) (parser->p - start);
    if (len >= sizeof text) {
        s_fail (parser, "number too long");
        return NULL;
    }
    memcpy (text, start, len);
    text [len] = 0;
    sgmq_json_t *node = calloc (1, sizeof *node);
    if (!node) {
        s_fail (parser, "out of memory");
        return NULL;
    }
    node->type = SGMQ_JSON_NUMBER;
    node->number = strtod (text, NULL);
    node->integral = integral && start [0] != '-' && node->number <= S_UINT_MAX;
    if (node->integral)
        node->integer = strtoull (text, NULL, 10);
    return node;
}

static bool
s_word (s_parser_t *parser, const char *word)
{
    size_t len = strlen (word);
    if ((size_t) (parser->end - parser->p) >= len && memcmp (parser->p, word, len) == 0) {
        parser->p += len;
        return true;
    }
    return false;
}

static sgmq_json_t *
s_value (s_parser_t *parser, int depth)
{
    s_skip (parser);
    if (parser->p >= parser->end) {
        s_fail (parser, "unexpected end");
        return NULL;
    }
    char c = *parser->p;
    if (c == '{' || c == '[')
        return s_container (parser, depth, c == '{');
    if (c == '"') {
        char *text = s_string (parser);
        sgmq_json_t *node = text ? calloc (1, sizeof *node) : NULL;
        if (!node) {
            free (text);
            return NULL;
        }
        node->type = SGMQ_JSON_STRING;
        node->string = text;
        return node;
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return s_number (parser);
    sgmq_json_t *node = calloc (1, sizeof *node);
    if (!node)
        return NULL;
    if (s_word (parser, "true"))
        node->type = SGMQ_JSON_BOOL, node->boolean = true;
    else
    if (s_word (parser, "false"))
        node->type = SGMQ_JSON_BOOL;
    else
    if (s_word (parser, "null"))
        node->type = SGMQ_JSON_NULL;
    else {
        free (node);
        s_fail (parser, "unexpected '%c'", c);
        return NULL;
    }
    return node;
}

sgmq_json_t *
sgmq_json_parse (const char *text, size_t size, char *error)
{
    s_parser_t parser = { .p = text, .end = text + size, .line = 1, .error = error };
    if (size > SGMQ_JSON_MAX_SIZE) {
        s_fail (&parser, "document larger than %d bytes", SGMQ_JSON_MAX_SIZE);
        return NULL;
    }
    sgmq_json_t *root = s_value (&parser, 0);
    if (root) {
        s_skip (&parser);
        if (parser.p != parser.end) {
            s_fail (&parser, "text after the document");
            s_free (root);
            root = NULL;
        }
    }
    return root;
}

static void
s_free (sgmq_json_t *node)
{
    if (!node)
        return;
    for (size_t i = 0; i < node->count; i++) {
        s_free (node->items [i]);
        if (node->keys)
            free (node->keys [i]);
    }
    free (node->items);
    free (node->keys);
    free (node->string);
    free (node);
}

void
sgmq_json_destroy (sgmq_json_t **self_p)
{
    if (self_p) {
        s_free (*self_p);
        *self_p = NULL;
    }
}

sgmq_json_type_t sgmq_json_type (const sgmq_json_t *self) { return self->type; }
const char *sgmq_json_string (const sgmq_json_t *self) { return self->string; }
bool sgmq_json_bool (const sgmq_json_t *self) { return self->boolean; }

bool
sgmq_json_uint (const sgmq_json_t *self, uint64_t *value)
{
    if (self->type != SGMQ_JSON_NUMBER || !self->integral)
        return false;
    *value = self->integer;
    return true;
}

size_t
sgmq_json_size (const sgmq_json_t *self)
{
    return self->count;
}

const sgmq_json_t *
sgmq_json_at (const sgmq_json_t *self, size_t index)
{
    return index < self->count ? self->items [index] : NULL;
}

const char *
sgmq_json_key (const sgmq_json_t *self, size_t index)
{
    return self->keys && index < self->count ? self->keys [index] : NULL;
}

const sgmq_json_t *
sgmq_json_get (const sgmq_json_t *self, const char *key)
{
    if (self->type != SGMQ_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < self->count; i++)
        if (strcmp (self->keys [i], key) == 0)
            return self->items [i];
    return NULL;
}

void
sgmq_json_write_string (FILE *file, const char *text)
{
    fputc ('"', file);
    const unsigned char *p = (const unsigned char *) text;
    const unsigned char *end = p + strlen (text);
    while (p < end) {
        if (*p >= 0x80) {
            //  A character that changes what people see, escaped: the
            //  same string to a JSON reader, shown to one at a terminal.
            size_t len;
            uint32_t hidden = sgmq_text_hidden ((const char *) p, &len);
            if (hidden) {
                fprintf (file, "\\u%04x", hidden);
                p += len;
                continue;
            }
            //  Valid UTF-8 as it is; any other byte (a file name, say) as
            //  U+FFFD, so that the output is always valid JSON.
            len = s_utf8_len (p, end);
            if (len)
                fwrite (p, 1, len, file);
            else
                fputs ("\\ufffd", file);
            p += len ? len : 1;
            continue;
        }
        switch (*p) {
            case '"':  fputs ("\\\"", file); break;
            case '\\': fputs ("\\\\", file); break;
            case '\n': fputs ("\\n", file); break;
            case '\r': fputs ("\\r", file); break;
            case '\t': fputs ("\\t", file); break;
            default:
                if (*p < 0x20 || *p == 0x7f)
                    fprintf (file, "\\u%04x", *p);
                else
                    fputc (*p, file);
        }
        p++;
    }
    fputc ('"', file);
}

void
sgmq_csv_write_field (FILE *file, const char *text)
{
    if (!text)
        text = "";
    fputc ('"', file);
    //  Spreadsheets run a cell that starts with one of these as a formula,
    //  quoted or not; titles and summaries are free text from publishers.
    if (*text && strchr ("=+-@\t\r", *text))
        fputc ('\'', file);
    for (const char *p = text; *p; p++) {
        if (*p == '"')
            fputc ('"', file);
        fputc (*p, file);
    }
    fputc ('"', file);
}

uint32_t
sgmq_text_hidden (const char *p, size_t *len)
{
    const unsigned char *u = (const unsigned char *) p;
    if (u [0] == 0xc2 && u [1] >= 0x80 && u [1] <= 0x9f) {
        *len = 2;
        return u [1];
    }
    if (u [0] == 0xe2 && u [1] && ((u [1] == 0x80 && u [2] >= 0xa8 && u [2] <= 0xae)
                               ||  (u [1] == 0x81 && u [2] >= 0xa6 && u [2] <= 0xa9))) {
        *len = 3;
        return 0x2000u + ((uint32_t) (u [1] & 0x3f) << 6) + (u [2] & 0x3f);
    }
    return 0;
}

void
sgmq_text_write (FILE *file, const char *text, const char *indent)
{
    for (const char *p = text ? text : ""; *p; ) {
        size_t len;
        uint32_t hidden = sgmq_text_hidden (p, &len);
        if (hidden) {
            fprintf (file, "<U+%04X>", hidden);
            p += len;
            continue;
        }
        if (*p == '\r')
            fputs ("\\r", file);
        else {
            fputc (*p, file);
            if (*p == '\n')
                fputs (indent, file);
        }
        p++;
    }
}
