/*  =========================================================================
    sgmq_zpl - strict ZPL (ZeroMQ RFC 4) reader and writer

    ZPL is line-based: each line is blank, a comment, or a name with an
    optional "= value", indented by four spaces per level of nesting. We
    read the whole text once, line by line, keeping a stack of the last
    node at each depth so that a line finds its parent in O(1). Every
    limit (file, line, depth, node count) is checked before anything is
    allocated for it, because config and cert files may be hostile.
    =========================================================================
*/
#include "sgmq_zpl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  ZPL indents by exactly this many spaces per level.
#define S_INDENT 4

struct _sgmq_zpl_t {
    char *name;                 //  one allocation holds name and value
    char *value;
    int line;
    const char *origin;         //  owned by the root
    sgmq_zpl_t *child, *last_child, *next;
};

typedef struct {
    const char *origin;
    char *error;
    int line;
    size_t nodes;
} s_parser_t;

static void
__attribute__ ((format (printf, 2, 3)))
s_fail (s_parser_t *parser, const char *format, ...)
{
    if (!parser->error)
        return;
    int used = parser->line
             ? snprintf (parser->error, SGMQ_ZPL_ERROR_SIZE, "%s:%d: ",
                         parser->origin, parser->line)
             : snprintf (parser->error, SGMQ_ZPL_ERROR_SIZE, "%s: ", parser->origin);
    if (used < 0 || used >= SGMQ_ZPL_ERROR_SIZE)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (parser->error + used, SGMQ_ZPL_ERROR_SIZE - (size_t) used,
               format, args);
    va_end (args);
}

static bool
s_is_namechar (char c)
{
    return isalnum ((unsigned char) c) || strchr ("$-_@.&+/", c) != NULL;
}

static sgmq_zpl_t *
s_node_new (const char *name, size_t name_len, const char *value,
            size_t value_len, int line)
{
    sgmq_zpl_t *node = calloc (1, sizeof *node);
    if (!node)
        return NULL;
    node->name = malloc (name_len + value_len + 2);
    if (!node->name) {
        free (node);
        return NULL;
    }
    memcpy (node->name, name, name_len);
    node->name [name_len] = 0;
    node->value = node->name + name_len + 1;
    if (value_len)
        memcpy (node->value, value, value_len);
    node->value [value_len] = 0;
    node->line = line;
    return node;
}

static void
s_node_free (sgmq_zpl_t *node)
{
    //  Iterative over siblings, recursive over children: depth is bounded
    //  by SGMQ_ZPL_MAX_DEPTH, so the recursion is too.
    while (node) {
        sgmq_zpl_t *next = node->next;
        s_node_free (node->child);
        //  Key files and secret certs are ZPL: leave no key in freed memory.
        sodium_memzero (node->name, strlen (node->name) + 1 + strlen (node->value));
        free (node->name);
        free (node);
        node = next;
    }
}

static void
s_append (sgmq_zpl_t *parent, sgmq_zpl_t *child)
{
    if (parent->last_child)
        parent->last_child->next = child;
    else
        parent->child = child;
    parent->last_child = child;
}

//  Parse one line (without its newline) into `stack`. Returns 0 or -1.
static int
s_parse_line (s_parser_t *parser, const char *line, size_t len,
              sgmq_zpl_t **stack, int *depth)
{
    //  Trailing white space (including a CR from CRLF files) is not content.
    while (len && isspace ((unsigned char) line [len - 1]))
        len--;
    size_t pos = 0;
    while (pos < len && line [pos] == ' ')
        pos++;
    if (pos == len || line [pos] == '#')
        return 0;               //  blank or comment
    if (line [pos] == '\t') {
        s_fail (parser, "tab in indentation; indent with %d spaces", S_INDENT);
        return -1;
    }
    if (pos % S_INDENT) {
        s_fail (parser, "indent by %d spaces per level", S_INDENT);
        return -1;
    }
    int level = (int) (pos / S_INDENT);
    if (level > *depth) {
        s_fail (parser, "indented deeper than its parent");
        return -1;
    }
    if (level >= SGMQ_ZPL_MAX_DEPTH) {
        s_fail (parser, "nested more than %d levels", SGMQ_ZPL_MAX_DEPTH);
        return -1;
    }
    size_t name_start = pos;
    while (pos < len && s_is_namechar (line [pos]))
        pos++;
    size_t name_len = pos - name_start;
    if (name_len == 0) {
        s_fail (parser, "expected a name, found '%c'", line [pos]);
        return -1;
    }
    if (line [name_start] == '/' || line [pos - 1] == '/') {
        s_fail (parser, "'/' not valid at the start or end of a name");
        return -1;
    }
    while (pos < len && (line [pos] == ' ' || line [pos] == '\t'))
        pos++;

    const char *value = "";
    size_t value_len = 0;
    if (pos < len && line [pos] == '=') {
        pos++;
        while (pos < len && (line [pos] == ' ' || line [pos] == '\t'))
            pos++;
        if (pos < len && (line [pos] == '"' || line [pos] == '\'')) {
            char quote = line [pos];
            const char *end = memchr (line + pos + 1, quote, len - pos - 1);
            if (!end) {
                s_fail (parser, "missing closing %c", quote);
                return -1;
            }
            value = line + pos + 1;
            value_len = (size_t) (end - value);
            pos = (size_t) (end - line) + 1;
            while (pos < len && (line [pos] == ' ' || line [pos] == '\t'))
                pos++;
            if (pos < len && line [pos] != '#') {
                s_fail (parser, "unexpected text after the quoted value");
                return -1;
            }
        }
        else {
            value = line + pos;
            const char *comment = memchr (value, '#', len - pos);
            value_len = comment ? (size_t) (comment - value) : len - pos;
            while (value_len && isspace ((unsigned char) value [value_len - 1]))
                value_len--;
        }
    }
    else
    if (pos < len && line [pos] != '#') {
        s_fail (parser, "unexpected '%c' after name", line [pos]);
        return -1;
    }
    if (memchr (value, 0, value_len)) {
        s_fail (parser, "NUL byte in value");
        return -1;
    }
    if (++parser->nodes > SGMQ_ZPL_MAX_NODES) {
        s_fail (parser, "more than %d entries", SGMQ_ZPL_MAX_NODES);
        return -1;
    }
    sgmq_zpl_t *node = s_node_new (line + name_start, name_len, value,
                                   value_len, parser->line);
    if (!node) {
        s_fail (parser, "out of memory");
        return -1;
    }
    node->origin = stack [0]->origin;
    s_append (stack [level], node);
    stack [level + 1] = node;
    *depth = level + 1;
    return 0;
}

sgmq_zpl_t *
sgmq_zpl_parse (const char *text, size_t size, const char *origin,
                char *error)
{
    s_parser_t parser = { .origin = origin ? origin : "(text)", .error = error };
    if (error)
        error [0] = 0;
    if (size > SGMQ_ZPL_MAX_FILE) {
        s_fail (&parser, "larger than %d bytes", SGMQ_ZPL_MAX_FILE);
        return NULL;
    }
    sgmq_zpl_t *root = s_node_new ("", 0, "", 0, 0);
    char *origin_copy = strdup (parser.origin);
    if (!root || !origin_copy) {
        free (origin_copy);
        s_node_free (root);
        s_fail (&parser, "out of memory");
        return NULL;
    }
    root->origin = origin_copy;
    sgmq_zpl_t *stack [SGMQ_ZPL_MAX_DEPTH + 1] = { root };
    int depth = 0;
    size_t pos = 0;
    while (pos < size) {
        parser.line++;
        const char *eol = memchr (text + pos, '\n', size - pos);
        size_t len = eol ? (size_t) (eol - (text + pos)) : size - pos;
        if (len > SGMQ_ZPL_MAX_LINE) {
            s_fail (&parser, "line longer than %d bytes", SGMQ_ZPL_MAX_LINE);
            goto out_free_root;
        }
        if (s_parse_line (&parser, text + pos, len, stack, &depth))
            goto out_free_root;
        pos += len + (eol ? 1 : 0);
    }
    return root;

out_free_root:
    sgmq_zpl_destroy (&root);
    return NULL;
}

sgmq_zpl_t *
sgmq_zpl_load (const char *path, char *error)
{
    s_parser_t parser = { .origin = path, .error = error };
    //  read(2), not stdio, whose buffer would keep a copy of a secret.
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s_fail (&parser, "cannot open: %s", strerror (errno));
        return NULL;
    }
    //  One byte more than the limit tells "too big" from "exactly at it".
    char *text = malloc (SGMQ_ZPL_MAX_FILE + 1);
    size_t size = 0;
    bool failed = false;
    while (text && size < SGMQ_ZPL_MAX_FILE + 1) {
        ssize_t got = read (fd, text + size, SGMQ_ZPL_MAX_FILE + 1 - size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            failed = got < 0;
            break;
        }
        size += (size_t) got;
    }
    int saved = errno;
    close (fd);
    errno = saved;
    sgmq_zpl_t *root = NULL;
    if (!text)
        s_fail (&parser, "out of memory");
    else
    if (failed)
        s_fail (&parser, "cannot read: %s", strerror (errno));
    else
        root = sgmq_zpl_parse (text, size, path, error);
    if (text)
        sodium_memzero (text, size);
    free (text);
    return root;
}

void
sgmq_zpl_destroy (sgmq_zpl_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_zpl_t *root = *self_p;
    free ((char *) root->origin);
    s_node_free (root);
    *self_p = NULL;
}

const char *
sgmq_zpl_name (const sgmq_zpl_t *self)
{
    return self->name;
}

const char *
sgmq_zpl_value (const sgmq_zpl_t *self)
{
    return self->value;
}

int
sgmq_zpl_line (const sgmq_zpl_t *self)
{
    return self->line;
}

const char *
sgmq_zpl_origin (const sgmq_zpl_t *self)
{
    return self->origin;
}

sgmq_zpl_t *
sgmq_zpl_child (const sgmq_zpl_t *self)
{
    return self->child;
}

sgmq_zpl_t *
sgmq_zpl_next (const sgmq_zpl_t *self)
{
    return self->next;
}

sgmq_zpl_t *
sgmq_zpl_locate (const sgmq_zpl_t *self, const char *path)
{
    const sgmq_zpl_t *node = self;
    while (node && *path) {
        const char *slash = strchr (path, '/');
        size_t len = slash ? (size_t) (slash - path) : strlen (path);
        const sgmq_zpl_t *child = node->child;
        while (child && !(strlen (child->name) == len
                          && memcmp (child->name, path, len) == 0))
            child = child->next;
        node = child;
        path += len + (slash ? 1 : 0);
    }
    return (sgmq_zpl_t *) node;
}

const char *
sgmq_zpl_get (const sgmq_zpl_t *self, const char *path, const char *fallback)
{
    const sgmq_zpl_t *node = sgmq_zpl_locate (self, path);
    return node ? node->value : fallback;
}

bool
sgmq_zpl_value_ok (const char *value)
{
    return !strpbrk (value, "\r\n")
        && !(strchr (value, '"') && strchr (value, '\''));
}

bool
sgmq_zpl_name_ok (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || name [0] == '/' || name [len - 1] == '/')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!s_is_namechar (name [i]))
            return false;
    return true;
}

int
sgmq_zpl_write (FILE *file, int level, const char *name, const char *value)
{
    if (!sgmq_zpl_name_ok (name) || (value && !sgmq_zpl_value_ok (value)))
        return -1;
    int rc;
    if (value) {
        char quote = strchr (value, '"') ? '\'' : '"';
        rc = fprintf (file, "%*s%s = %c%s%c\n", level * S_INDENT, "", name,
                      quote, value, quote);
    }
    else
        rc = fprintf (file, "%*s%s\n", level * S_INDENT, "", name);
    return rc < 0 ? -1 : 0;
}
