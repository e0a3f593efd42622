/*  =========================================================================
    sgmq_zpl - a strict reader and writer for ZPL (ZeroMQ RFC 4), the
    format of CZMQ's zconfig and zcert files

    Why not zconfig: zconfig_load silently cuts lines at 1024 bytes, logs
    its syntax errors to the console without the file name, and returns
    NULL with no reason. Config and cert errors must name file:line and
    the problem in one line, and the reader is fed hostile files by the
    fuzzer, so we parse ZPL ourselves with hard limits. Files we write are
    read back by zconfig/zcert unchanged (tested).

    A tree: each node has a name, a value (possibly ""), a line number and
    children. The root node is nameless.
    =========================================================================
*/
#ifndef SGMQ_ZPL_H_INCLUDED
#define SGMQ_ZPL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Limits: a config or cert is a few KiB; anything near these is not one.
#define SGMQ_ZPL_MAX_FILE   (1024 * 1024)
#define SGMQ_ZPL_MAX_LINE   4096
#define SGMQ_ZPL_MAX_DEPTH  8
#define SGMQ_ZPL_MAX_NODES  20000
//  Room for "file:line: reason" messages.
#define SGMQ_ZPL_ERROR_SIZE 512

typedef struct _sgmq_zpl_t sgmq_zpl_t;

//  Parse `size` bytes of ZPL text. `origin` names the text in errors (a
//  file path). Returns the root, or NULL with "origin:line: problem" in
//  `error` (SGMQ_ZPL_ERROR_SIZE bytes; may be NULL).
sgmq_zpl_t *
    sgmq_zpl_parse (const char *text, size_t size, const char *origin,
                    char *error);

//  Read and parse a file (at most SGMQ_ZPL_MAX_FILE bytes). NULL with the
//  reason in `error` on any failure, I/O included.
sgmq_zpl_t *
    sgmq_zpl_load (const char *path, char *error);

//  Destroy a tree (root only). NULL-safe; sets *self_p to NULL.
void
    sgmq_zpl_destroy (sgmq_zpl_t **self_p);

//  Accessors. Name and value are never NULL ("" if absent).
const char *sgmq_zpl_name  (const sgmq_zpl_t *self);
const char *sgmq_zpl_value (const sgmq_zpl_t *self);
int         sgmq_zpl_line  (const sgmq_zpl_t *self);
//  Name of the text the node came from (as given to _parse).
const char *sgmq_zpl_origin (const sgmq_zpl_t *self);

//  First child, next sibling; NULL at the end.
sgmq_zpl_t *sgmq_zpl_child (const sgmq_zpl_t *self);
sgmq_zpl_t *sgmq_zpl_next  (const sgmq_zpl_t *self);

//  The node at a "/"-separated path below `self` ("curve/public-key"),
//  following the first child of each name; NULL if absent.
sgmq_zpl_t *
    sgmq_zpl_locate (const sgmq_zpl_t *self, const char *path);

//  Value at `path`, or `fallback` if the node is absent.
const char *
    sgmq_zpl_get (const sgmq_zpl_t *self, const char *path,
                  const char *fallback);

//  True if `value` can be written as a ZPL value (no line breaks, no NUL,
//  not both kinds of quote) and `name` as a ZPL name.
bool sgmq_zpl_value_ok (const char *value);
bool sgmq_zpl_name_ok  (const char *name);

//  Write "<indent>name = "value"\n" (or "name\n" when value is NULL) at
//  nesting `level`, quoting so that zconfig reads the value back intact.
//  Returns 0 or -1 (bad name/value or I/O error).
int
    sgmq_zpl_write (FILE *file, int level, const char *name,
                    const char *value);

#ifdef __cplusplus
}
#endif

#endif
