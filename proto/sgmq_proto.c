/*  =========================================================================
    sgmq_proto - the sgmq wire protocol, version 1: encode, decode, validate

    Why it is shaped this way:

    - Every rule lives in one place: the field tables below (one per command,
      kind, pending item, ack event, report recipient and checkpoint). The
      decoder, the writer's validation, the writer's encoder and the
      canonical body encoder all walk the same tables, so a limit cannot be
      enforced on one side and forgotten on the other, and the writer cannot
      emit a frame the decoder rejects.

    - Decoding does not use msgpack-c's unpacker: it allocates storage for a
      container from its declared count before it has seen the items, so a
      five-byte header could make it allocate gigabytes. We read the bytes
      with a small bounds-checked cursor instead. A first structural pass
      over the whole frame (no allocation) checks bounds, depth and that
      every declared count fits in the bytes left; after it, each command is
      a known byte range, so one bad command cannot hide the others and the
      field decoder cannot run off the end of anything.

    - Decoded strings are copied, NUL-terminated, into an arena owned by the
      frame (blocks kept across decodes, so a busy broker does not malloc per
      frame). Everything the decoder allocates is proportional to the input
      bytes it has consumed: arrays of structs (pending items, ack events) are
      validated before their storage is taken, and a command that fails gives
      back what it took. sgmq_proto_arena_bound states the multiple.

    - Commands are decoded eagerly in sgmq_proto_decode (one linear pass per
      command) and kept with their errors, so sgmq_proto_cmd is an index.

    - msgpack-c's packer does the encoding: it always picks the shortest
      form, which is what makes body encoding canonical.
    =========================================================================
*/
#include "sgmq_proto.h"
#include "sgmq_proto_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#if defined (__SSE2__)
#include <emmintrin.h>
#endif
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

//  --------------------------------------------------------------------------
//  Private limits and layout constants

//  Arena blocks: big enough that a typical frame of publishes needs one or
//  two; a larger single request gets a block of its own size.
#define S_ARENA_BLOCK       (64 * 1024)
//  Arena bytes kept across decodes; above this, blocks go back to the
//  system so one huge frame does not pin memory for the broker's life.
#define S_ARENA_KEEP        (2 * SGMQ_PROTO_MAX_FRAME)
//  The arena never holds more than this multiple of the input (plus two
//  blocks): a pointer per list item where an item takes >= 1 input byte,
//  alignment, and block ends left unused. The fuzzer checks it.
#define S_ARENA_FACTOR      16
//  Elements of the frame array before the first command: signature, version.
#define S_FRAME_PREAMBLE    2
//  Elements of a command array: name, id, body.
#define S_CMD_ELEMENTS      3
//  Depth of a kind's body inside a frame: frame, command, command body,
//  body. Standalone bodies are scanned as if embedded, so bytes accepted by
//  sgmq_proto_decode_body are also accepted inside a DELIVER.
#define S_BODY_DEPTH        4
//  Nested steps in a field path ("items[3].state", "body.theme[2]").
#define S_PATH_STEPS        8
//  Characters of a peer-supplied name we quote in an error reason.
#define S_QUOTE_MAX         32
//  The writer reserves room for the largest frame array header it writes
//  (array16: the count never exceeds SGMQ_PROTO_MAX_COMMANDS + 2).
#define S_HEAD_RESERVE      3

//  msgpack format bytes (https://github.com/msgpack/msgpack/blob/master/spec.md)
enum {
    S_MP_POSFIX_MAX = 0x7f,
    S_MP_FIXMAP     = 0x80,
    S_MP_FIXARRAY   = 0x90,
    S_MP_FIXSTR     = 0xa0,
    S_MP_FIX_MASK   = 0xf0,     //  fixmap / fixarray: high nibble
    S_MP_FIXSTR_MASK = 0xe0,    //  fixstr: high three bits
    S_MP_FIX_COUNT  = 0x0f,     //  largest fixmap / fixarray count
    S_MP_FIXSTR_LEN = 0x1f,
    S_MP_NIL        = 0xc0,
    S_MP_NEVER      = 0xc1,     //  "never used": not msgpack
    S_MP_FALSE      = 0xc2,
    S_MP_TRUE       = 0xc3,
    S_MP_BIN8       = 0xc4, S_MP_BIN16 = 0xc5, S_MP_BIN32 = 0xc6,
    S_MP_EXT8       = 0xc7, S_MP_EXT16 = 0xc8, S_MP_EXT32 = 0xc9,
    S_MP_FLOAT32    = 0xca, S_MP_FLOAT64 = 0xcb,
    S_MP_UINT8      = 0xcc, S_MP_UINT16 = 0xcd, S_MP_UINT32 = 0xce,
    S_MP_UINT64     = 0xcf,
    S_MP_INT8       = 0xd0, S_MP_INT16 = 0xd1, S_MP_INT32 = 0xd2,
    S_MP_INT64      = 0xd3,
    S_MP_FIXEXT1    = 0xd4, S_MP_FIXEXT2 = 0xd5, S_MP_FIXEXT4 = 0xd6,
    S_MP_FIXEXT8    = 0xd7, S_MP_FIXEXT16 = 0xd8,
    S_MP_STR8       = 0xd9, S_MP_STR16 = 0xda, S_MP_STR32 = 0xdb,
    S_MP_ARRAY16    = 0xdc, S_MP_ARRAY32 = 0xdd,
    S_MP_MAP16      = 0xde, S_MP_MAP32 = 0xdf,
    S_MP_NEGFIX_MIN = 0xe0,
    S_MP_FLOAT32_SIZE = 4,
    S_MP_FLOAT64_SIZE = 8,
    S_MP_SIGN_BIT   = 0x80      //  top bit of a signed int's first byte
};

//  Highest status code: ERROR carries 4xx and 5xx only.
#define S_STATUS_MAX        599
#define S_BITS_PER_BYTE     8
#define S_BYTE_MASK         0xff
#define S_ASCII_LIMIT       0x80
#define S_ASCII_DEL         0x7f
//  Word-at-a-time string checks: a byte of 0x01s and of 0x80s, 8 wide.
#define S_SWAR_ONES      0x0101010101010101ULL
#define S_SWAR_HIGH      0x8080808080808080ULL

//  Enums are stored through an int; the tables rely on it.
_Static_assert (sizeof (sgmq_kind_t) == sizeof (int), "enum is not int-sized");
_Static_assert (sizeof (sgmq_dstate_t) == sizeof (int), "enum is not int-sized");
_Static_assert (sizeof (sgmq_severity_t) == sizeof (int), "enum is not int-sized");
_Static_assert (sizeof (sgmq_review_type_t) == sizeof (int), "enum is not int-sized");
_Static_assert (sizeof (sgmq_esc_status_t) == sizeof (int), "enum is not int-sized");
_Static_assert (SGMQ_PROTO_MAX_FIELDS <= 32, "field masks are 32 bits");
_Static_assert (SGMQ_PROTO_MAX_FRAME <= UINT32_MAX, "offsets are 32 bits");
_Static_assert (SGMQ_PROTO_MAX_COMMANDS + S_FRAME_PREAMBLE <= UINT16_MAX,
                "the writer's frame header is an array16");

//  --------------------------------------------------------------------------
//  Names

static const struct {
    int code;
    const char *name;
} s_status_names [] = {
    { SGMQ_OK,                "ok" },
    { SGMQ_E_BAD_REQUEST,     "bad-request" },
    { SGMQ_E_NOT_AUTHORISED,  "not-authorised" },
    { SGMQ_E_FORBIDDEN,       "forbidden" },
    { SGMQ_E_NOT_FOUND,       "not-found" },
    { SGMQ_E_UNKNOWN_COMMAND, "unknown-command" },
    { SGMQ_E_BAD_VERSION,     "bad-version" },
    { SGMQ_E_CONFLICT,        "conflict" },
    { SGMQ_E_MALFORMED,       "malformed" },
    { SGMQ_E_TRUNCATED,       "truncated" },
    { SGMQ_E_TRAILING,        "trailing" },
    { SGMQ_E_SIGNATURE,       "signature" },
    { SGMQ_E_TOO_LARGE,       "too-large" },
    { SGMQ_E_TOO_MANY,        "too-many" },
    { SGMQ_E_TOO_DEEP,        "too-deep" },
    { SGMQ_E_MISSING_FIELD,   "missing-field" },
    { SGMQ_E_WRONG_TYPE,      "wrong-type" },
    { SGMQ_E_TOO_LONG,        "too-long" },
    { SGMQ_E_BAD_UTF8,        "bad-utf8" },
    { SGMQ_E_UNKNOWN_FIELD,   "unknown-field" },
    { SGMQ_E_BAD_VALUE,       "bad-value" },
    { SGMQ_E_UNKNOWN_KIND,    "unknown-kind" },
    { SGMQ_E_DUPLICATE_FIELD, "duplicate-field" },
    { SGMQ_E_BUSY,            "busy" },
    { SGMQ_E_INTERNAL,        "internal" },
    { SGMQ_E_UNAVAILABLE,     "unavailable" },
    { SGMQ_E_STORAGE_FULL,    "storage-full" },
};

//  An enumeration on the wire: names [i] is the value i + 1.
typedef struct {
    const char *const *names;
    int count;
    int error;                  //  status when a name is not in the list
    const char *what;           //  for messages: "kind", "severity"
} s_enum_t;

#define S_COUNT_OF(array) (sizeof (array) / sizeof ((array) [0]))
#define S_ENUM(names, error, what) \
    { names, (int) S_COUNT_OF (names), error, what }

static const char *const s_cmd_names [] = {
    "hello", "welcome", "publish", "confirm", "subscribe", "subscribed",
    "deliver", "ack", "acked", "pending", "pending-answer", "replay",
    "replay-item", "replay-end", "ping", "pong", "bye", "error",
    "report", "report-escalation", "report-learning", "report-end"
};
static const char *const s_kind_names [] = {
    "escalation", "response", "learning", "learning-update", "reminder"
};
static const char *const s_severity_names [] = {
    "low", "medium", "high", "critical"
};
static const char *const s_review_names [] = {
    "cspr", "rapid-review", "audit", "other"
};
static const char *const s_held_names [] = { "session", "reflection" };
static const char *const s_reason_names [] = {
    "ack-overdue", "response-overdue", "learning-session-due",
    "reflection-due"
};
static const char *const s_scope_names [] = { "mine", "published", "all" };
static const char *const s_state_names [] = {
    "pending", "delivered", "flagged", "acknowledged"
};
static const char *const s_esc_status_names [] = {
    "raised", "acknowledged", "responded"
};
//  Roles have no C enum: WELCOME carries them as a list of names.
static const char *const s_role_names [] = {
    "publisher", "member", "auditor", "admin"
};

_Static_assert (S_COUNT_OF (s_cmd_names) == SGMQ_CMD_COUNT_ - 1, "cmd names");
_Static_assert (S_COUNT_OF (s_kind_names) == SGMQ_KIND_COUNT_ - 1, "kinds");
_Static_assert (S_COUNT_OF (s_severity_names) == SGMQ_SEVERITY_COUNT_ - 1, "sev");
_Static_assert (S_COUNT_OF (s_review_names) == SGMQ_REVIEW_COUNT_ - 1, "review");
_Static_assert (S_COUNT_OF (s_held_names) == SGMQ_HELD_COUNT_ - 1, "held");
_Static_assert (S_COUNT_OF (s_reason_names) == SGMQ_REASON_COUNT_ - 1, "reason");
_Static_assert (S_COUNT_OF (s_scope_names) == SGMQ_SCOPE_COUNT_ - 1, "scope");
_Static_assert (S_COUNT_OF (s_state_names) == SGMQ_STATE_COUNT_ - 1, "state");
_Static_assert (S_COUNT_OF (s_esc_status_names) == SGMQ_ESC_COUNT_ - 1, "esc status");

static const s_enum_t s_cmd_enum =
    S_ENUM (s_cmd_names, SGMQ_E_UNKNOWN_COMMAND, "command");
static const s_enum_t s_kind_enum =
    S_ENUM (s_kind_names, SGMQ_E_UNKNOWN_KIND, "kind");
static const s_enum_t s_severity_enum =
    S_ENUM (s_severity_names, SGMQ_E_BAD_VALUE, "severity");
static const s_enum_t s_review_enum =
    S_ENUM (s_review_names, SGMQ_E_BAD_VALUE, "review type");
static const s_enum_t s_held_enum =
    S_ENUM (s_held_names, SGMQ_E_BAD_VALUE, "held");
static const s_enum_t s_reason_enum =
    S_ENUM (s_reason_names, SGMQ_E_BAD_VALUE, "reason");
static const s_enum_t s_scope_enum =
    S_ENUM (s_scope_names, SGMQ_E_BAD_VALUE, "scope");
static const s_enum_t s_state_enum =
    S_ENUM (s_state_names, SGMQ_E_BAD_VALUE, "state");
static const s_enum_t s_esc_status_enum =
    S_ENUM (s_esc_status_names, SGMQ_E_BAD_VALUE, "status");
static const s_enum_t s_role_enum =
    S_ENUM (s_role_names, SGMQ_E_BAD_VALUE, "role");

static const char *
s_enum_name (const s_enum_t *en, int value)
{
    if (value < 1 || value > en->count)
        return NULL;
    return en->names [value - 1];
}

static int
s_enum_parse (const s_enum_t *en, const void *name, size_t len)
{
    if (!name)
        return 0;
    for (int index = 0; index < en->count; index++) {
        const char *candidate = en->names [index];
        if (strlen (candidate) == len && memcmp (candidate, name, len) == 0)
            return index + 1;
    }
    return 0;
}

const char *
sgmq_proto_status_name (int status)
{
    for (size_t index = 0; index < S_COUNT_OF (s_status_names); index++)
        if (s_status_names [index].code == status)
            return s_status_names [index].name;
    return "unknown-status";
}

const char *
sgmq_proto_cmd_name (int cmd)
{
    return s_enum_name (&s_cmd_enum, cmd);
}

int
sgmq_proto_cmd_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_cmd_enum, name, len);
}

const char *
sgmq_proto_kind_name (int kind)
{
    return s_enum_name (&s_kind_enum, kind);
}

int
sgmq_proto_kind_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_kind_enum, name, len);
}

const char *
sgmq_proto_severity_name (int severity)
{
    return s_enum_name (&s_severity_enum, severity);
}

int
sgmq_proto_severity_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_severity_enum, name, len);
}

const char *
sgmq_proto_review_name (int review_type)
{
    return s_enum_name (&s_review_enum, review_type);
}

int
sgmq_proto_review_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_review_enum, name, len);
}

const char *
sgmq_proto_held_name (int held)
{
    return s_enum_name (&s_held_enum, held);
}

int
sgmq_proto_held_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_held_enum, name, len);
}

const char *
sgmq_proto_reason_name (int reason)
{
    return s_enum_name (&s_reason_enum, reason);
}

int
sgmq_proto_reason_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_reason_enum, name, len);
}

const char *
sgmq_proto_scope_name (int scope)
{
    return s_enum_name (&s_scope_enum, scope);
}

int
sgmq_proto_scope_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_scope_enum, name, len);
}

const char *
sgmq_proto_state_name (int state)
{
    return s_enum_name (&s_state_enum, state);
}

int
sgmq_proto_state_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_state_enum, name, len);
}

const char *
sgmq_proto_esc_status_name (int status)
{
    return s_enum_name (&s_esc_status_enum, status);
}

int
sgmq_proto_esc_status_parse (const char *name, size_t len)
{
    return s_enum_parse (&s_esc_status_enum, name, len);
}

//  --------------------------------------------------------------------------
//  Arena: a chain of blocks handed out front to back. Pointers into it stay
//  put until the next reset (blocks are never moved), and a failed command
//  can give back what it took by rewinding to a mark.

typedef struct s_block_t {
    struct s_block_t *next;
    size_t size;                //  bytes in data
    size_t used;
    max_align_t data [];
} s_block_t;

typedef struct {
    s_block_t *head;
    s_block_t *cur;             //  block in use; NULL: none yet this round
    size_t total;               //  bytes in all blocks
} s_arena_t;

typedef struct {
    s_block_t *block;
    size_t used;
} s_mark_t;

static void *
s_arena_alloc (s_arena_t *self, size_t size, size_t align)
{
    s_block_t *block = self->cur;
    if (!block && self->head) {
        block = self->head;
        block->used = 0;
    }
    while (block) {
        size_t at = (block->used + align - 1) & ~(align - 1);
        if (at <= block->size && size <= block->size - at) {
            block->used = at + size;
            self->cur = block;
            return (unsigned char *) block->data + at;
        }
        //  Blocks after the current one are free; use the next if it fits.
        if (!block->next || block->next->size < size)
            break;
        block = block->next;
        block->used = 0;
    }
    size_t block_size = size > S_ARENA_BLOCK ? size : S_ARENA_BLOCK;
    s_block_t *fresh = malloc (sizeof (s_block_t) + block_size);
    if (!fresh)
        return NULL;
    fresh->size = block_size;
    fresh->used = size;
    if (block) {
        fresh->next = block->next;
        block->next = fresh;
    }
    else {
        fresh->next = self->head;
        self->head = fresh;
    }
    self->cur = fresh;
    self->total += block_size;
    return fresh->data;
}

static s_mark_t
s_arena_mark (s_arena_t *self)
{
    s_mark_t mark = { self->cur, self->cur ? self->cur->used : 0 };
    return mark;
}

static void
s_arena_rewind (s_arena_t *self, s_mark_t mark)
{
    self->cur = mark.block;
    if (mark.block)
        mark.block->used = mark.used;
}

static void
s_arena_reset (s_arena_t *self)
{
    size_t kept = 0;
    s_block_t **link = &self->head;
    while (*link) {
        s_block_t *block = *link;
        if (block != self->head && kept + block->size > S_ARENA_KEEP) {
            *link = block->next;
            self->total -= block->size;
            free (block);
        }
        else {
            kept += block->size;
            link = &block->next;
        }
    }
    self->cur = NULL;
}

static void
s_arena_free (s_arena_t *self)
{
    while (self->head) {
        s_block_t *next = self->head->next;
        free (self->head);
        self->head = next;
    }
    self->cur = NULL;
    self->total = 0;
}

//  --------------------------------------------------------------------------
//  Reader: a cursor over bytes that never reads past `end`.

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} s_reader_t;

typedef enum {
    S_T_NIL = 1, S_T_BOOL, S_T_UINT, S_T_NINT, S_T_FLOAT, S_T_STR, S_T_BIN,
    S_T_ARRAY, S_T_MAP, S_T_EXT
} s_mtype_t;

typedef struct {
    s_mtype_t type;
    uint64_t u;                 //  UINT value; STR/BIN/EXT length; ARRAY/MAP count
    bool b;                     //  BOOL value
    const uint8_t *data;        //  STR/BIN payload
} s_head_t;

static const char *
s_type_name (s_mtype_t type)
{
    switch (type) {
        case S_T_NIL:   return "nil";
        case S_T_BOOL:  return "a boolean";
        case S_T_UINT:  return "an unsigned integer";
        case S_T_NINT:  return "a negative integer";
        case S_T_FLOAT: return "a float";
        case S_T_STR:   return "a string";
        case S_T_BIN:   return "a binary";
        case S_T_ARRAY: return "an array";
        case S_T_MAP:   return "a map";
        case S_T_EXT:   return "an extension";
    }
    return "an unknown type";
}

static uint64_t
s_be (const uint8_t *p, size_t size)
{
    uint64_t value = 0;
    for (size_t index = 0; index < size; index++)
        value = (value << S_BITS_PER_BYTE) | p [index];
    return value;
}

//  Take `size` bytes from the cursor, or say the buffer ends too soon.
static int
s_take (s_reader_t *r, size_t size, const uint8_t **at)
{
    if (size > (size_t) (r->end - r->p))
        return SGMQ_E_TRUNCATED;
    *at = r->p;
    r->p += size;
    return 0;
}

//  Read one object header. Strings, binaries, extensions and scalars are
//  consumed whole; for arrays and maps only the header is (h->u is the
//  count). Returns 0, SGMQ_E_TRUNCATED or SGMQ_E_MALFORMED.
static int
s_read_head (s_reader_t *r, s_head_t *h)
{
    const uint8_t *at;
    if (s_take (r, 1, &at))
        return SGMQ_E_TRUNCATED;
    uint8_t byte = *at;
    size_t width = 0;           //  bytes of the length or value field
    h->data = NULL;
    h->u = 0;

    if (byte <= S_MP_POSFIX_MAX) {
        h->type = S_T_UINT;
        h->u = byte;
        return 0;
    }
    if (byte >= S_MP_NEGFIX_MIN) {
        h->type = S_T_NINT;
        return 0;
    }
    if ((byte & S_MP_FIX_MASK) == S_MP_FIXMAP) {
        h->type = S_T_MAP;
        h->u = byte & S_MP_FIX_COUNT;
        return 0;
    }
    if ((byte & S_MP_FIX_MASK) == S_MP_FIXARRAY) {
        h->type = S_T_ARRAY;
        h->u = byte & S_MP_FIX_COUNT;
        return 0;
    }
    if ((byte & S_MP_FIXSTR_MASK) == S_MP_FIXSTR) {
        h->type = S_T_STR;
        h->u = byte & S_MP_FIXSTR_LEN;
        return s_take (r, (size_t) h->u, &h->data);
    }
    switch (byte) {
        case S_MP_NIL:
            h->type = S_T_NIL;
            return 0;
        case S_MP_FALSE:
        case S_MP_TRUE:
            h->type = S_T_BOOL;
            h->b = byte == S_MP_TRUE;
            return 0;
        case S_MP_UINT8: case S_MP_UINT16: case S_MP_UINT32: case S_MP_UINT64:
            width = (size_t) 1 << (byte - S_MP_UINT8);
            if (s_take (r, width, &at))
                return SGMQ_E_TRUNCATED;
            h->type = S_T_UINT;
            h->u = s_be (at, width);
            return 0;
        case S_MP_INT8: case S_MP_INT16: case S_MP_INT32: case S_MP_INT64:
            //  A signed format holding a value >= 0 is a positive integer,
            //  as msgpack-c's own unpacker sees it: some libraries use these
            //  forms for every int.
            width = (size_t) 1 << (byte - S_MP_INT8);
            if (s_take (r, width, &at))
                return SGMQ_E_TRUNCATED;
            if (at [0] & S_MP_SIGN_BIT)
                h->type = S_T_NINT;
            else {
                h->type = S_T_UINT;
                h->u = s_be (at, width);
            }
            return 0;
        case S_MP_FLOAT32:
        case S_MP_FLOAT64:
            h->type = S_T_FLOAT;
            return s_take (r, byte == S_MP_FLOAT32 ? S_MP_FLOAT32_SIZE
                                                   : S_MP_FLOAT64_SIZE, &at);
        case S_MP_STR8: case S_MP_STR16: case S_MP_STR32:
            h->type = S_T_STR;
            width = (size_t) 1 << (byte - S_MP_STR8);
            break;
        case S_MP_BIN8: case S_MP_BIN16: case S_MP_BIN32:
            h->type = S_T_BIN;
            width = (size_t) 1 << (byte - S_MP_BIN8);
            break;
        case S_MP_ARRAY16: case S_MP_ARRAY32:
        case S_MP_MAP16: case S_MP_MAP32:
            h->type = byte <= S_MP_ARRAY32 ? S_T_ARRAY : S_T_MAP;
            width = byte == S_MP_ARRAY16 || byte == S_MP_MAP16 ? 2 : 4;
            if (s_take (r, width, &at))
                return SGMQ_E_TRUNCATED;
            h->u = s_be (at, width);
            return 0;
        case S_MP_FIXEXT1: case S_MP_FIXEXT2: case S_MP_FIXEXT4:
        case S_MP_FIXEXT8: case S_MP_FIXEXT16:
            h->type = S_T_EXT;
            //  One type byte, then 1, 2, 4, 8 or 16 bytes of data.
            return s_take (r, 1 + ((size_t) 1 << (byte - S_MP_FIXEXT1)), &at);
        case S_MP_EXT8: case S_MP_EXT16: case S_MP_EXT32:
            h->type = S_T_EXT;
            width = (size_t) 1 << (byte - S_MP_EXT8);
            if (s_take (r, width, &at))
                return SGMQ_E_TRUNCATED;
            //  The length counts the data only; the type byte comes first.
            return s_take (r, (size_t) s_be (at, width) + 1, &at);
        default:
            return SGMQ_E_MALFORMED;        //  0xc1
    }
    //  str / bin: length, then payload
    if (s_take (r, width, &at))
        return SGMQ_E_TRUNCATED;
    h->u = s_be (at, width);
    return s_take (r, (size_t) h->u, &h->data);
}

//  Structural pass over one object: bounds, depth, and that every declared
//  count fits in the bytes left (each element takes at least one byte).
//  `depth` is the depth of the object itself (a frame is 1). Records the
//  offsets (from r's start) of the first `child_max` elements of the
//  top-level container in `child_off` and counts them all in
//  *child_count. No allocation; linear in the bytes.
typedef struct {
    int code;
    size_t offset;
} s_scan_error_t;

static int
s_scan (s_reader_t *r, int depth, uint32_t *child_off, size_t child_max,
        size_t *child_count, s_scan_error_t *error)
{
    const uint8_t *start = r->p;
    uint64_t left [SGMQ_PROTO_MAX_DEPTH];
    int open = 0;               //  containers open, innermost last
    size_t children = 0;

    for (;;) {
        if (open == 1 && child_count) {
            if (children < child_max)
                child_off [children] = (uint32_t) (r->p - start);
            children++;
        }
        const uint8_t *at = r->p;
        s_head_t h;
        int rc = s_read_head (r, &h);
        if (rc) {
            error->code = rc;
            error->offset = (size_t) (at - start);
            return rc;
        }
        if (h.type == S_T_ARRAY || h.type == S_T_MAP) {
            if (depth + open > SGMQ_PROTO_MAX_DEPTH) {
                error->code = SGMQ_E_TOO_DEEP;
                error->offset = (size_t) (at - start);
                return error->code;
            }
            uint64_t elements = h.type == S_T_MAP ? h.u * 2 : h.u;
            if (elements > (uint64_t) (r->end - r->p)) {
                error->code = SGMQ_E_TRUNCATED;
                error->offset = (size_t) (at - start);
                return error->code;
            }
            if (elements > 0) {
                left [open++] = elements;
                continue;
            }
        }
        //  One value is complete; close every container it completes.
        while (open > 0 && --left [open - 1] == 0)
            open--;
        if (open == 0)
            break;
    }
    if (child_count)
        *child_count = children;
    return 0;
}

//  Skip one value whose structure has already been checked.
static int
s_skip (s_reader_t *r)
{
    s_scan_error_t ignored;
    return s_scan (r, 1, NULL, 0, NULL, &ignored);
}

//  --------------------------------------------------------------------------
//  Decoding context: where errors go, where strings go, and the path to the
//  field being read (kept as steps and formatted only on error, because the
//  happy path must not pay for it).

typedef struct {
    const char *key;            //  NULL: no key (a root)
    size_t len;
    int64_t index;              //  -1: not a list element
} s_step_t;

typedef struct {
    sgmq_proto_error_t *error;
    s_arena_t *arena;           //  NULL: validate only, copy nothing
    const char *root;           //  names the outermost map when no step does
    uint64_t id;                //  request id, once read
    bool trust_bodies;          //  body bytes come from encode_body
    int steps;
    s_step_t path [S_PATH_STEPS];
} s_ctx_t;

static void
s_ctx_init (s_ctx_t *ctx, sgmq_proto_error_t *error, s_arena_t *arena,
            const char *root)
{
    ctx->error = error;
    ctx->arena = arena;
    ctx->root = root;
    ctx->id = 0;
    ctx->trust_bodies = false;
    ctx->steps = 0;
}

static void
s_push (s_ctx_t *ctx, const void *key, size_t len)
{
    if (ctx->steps < S_PATH_STEPS) {
        ctx->path [ctx->steps].key = key;
        ctx->path [ctx->steps].len = len;
        ctx->path [ctx->steps].index = -1;
    }
    ctx->steps++;
}

static void
s_pop (s_ctx_t *ctx)
{
    ctx->steps--;
}

static void
s_set_index (s_ctx_t *ctx, int64_t index)
{
    if (ctx->steps > 0 && ctx->steps <= S_PATH_STEPS)
        ctx->path [ctx->steps - 1].index = index;
}

//  Copy peer-supplied bytes for a message: printable ASCII only, so that an
//  error reason or field path is always a valid ERROR reason or field.
static size_t
s_sanitize (char *dest, size_t cap, const void *src, size_t len)
{
    const uint8_t *bytes = src;
    size_t used = 0;
    for (size_t index = 0; index < len && used + 1 < cap; index++) {
        uint8_t c = bytes [index];
        dest [used++] = c >= ' ' && c < S_ASCII_DEL ? (char) c : '?';
    }
    if (cap)
        dest [used] = 0;
    return used;
}

static void
s_format_path (const s_ctx_t *ctx, char *dest, size_t cap)
{
    size_t used = 0;
    dest [0] = 0;
    int steps = ctx->steps < S_PATH_STEPS ? ctx->steps : S_PATH_STEPS;
    for (int step = 0; step < steps && used + 1 < cap; step++) {
        const s_step_t *s = &ctx->path [step];
        if (s->key) {
            if (used > 0 && used + 1 < cap)
                dest [used++] = '.';
            used += s_sanitize (dest + used, cap - used, s->key, s->len);
        }
        if (s->index >= 0 && used + 1 < cap) {
            int wrote = snprintf (dest + used, cap - used, "[%" PRId64 "]",
                                  s->index);
            used = wrote < 0 ? used
                 : used + (size_t) wrote >= cap ? cap - 1
                 : used + (size_t) wrote;
        }
    }
    dest [used] = 0;
    if (used == 0 && ctx->root)
        snprintf (dest, cap, "%s", ctx->root);
}

static int __attribute__ ((format (printf, 3, 4)))
s_fail (s_ctx_t *ctx, int code, const char *format, ...)
{
    sgmq_proto_error_t *error = ctx->error;
    error->code = code;
    s_format_path (ctx, error->field, sizeof (error->field));
    int prefix = snprintf (error->reason, sizeof (error->reason), "%s: ",
                           error->field [0] ? error->field : "frame");
    if (prefix < 0 || (size_t) prefix >= sizeof (error->reason))
        prefix = 0;
    va_list args;
    va_start (args, format);
    vsnprintf (error->reason + prefix, sizeof (error->reason) - (size_t) prefix,
               format, args);
    va_end (args);
    return code;
}

static int
s_wrong_type (s_ctx_t *ctx, const char *expected, s_mtype_t got)
{
    return s_fail (ctx, SGMQ_E_WRONG_TYPE, "expected %s, got %s",
                   expected, s_type_name (got));
}

static int
s_no_memory (s_ctx_t *ctx)
{
    return s_fail (ctx, SGMQ_E_INTERNAL, "out of memory");
}

//  "low|medium|high|critical", for messages.
static void
s_enum_list (const s_enum_t *en, char *dest, size_t cap)
{
    size_t used = 0;
    dest [0] = 0;
    for (int index = 0; index < en->count && used + 1 < cap; index++) {
        int wrote = snprintf (dest + used, cap - used, "%s%s",
                              index ? "|" : "", en->names [index]);
        if (wrote < 0)
            break;
        used += (size_t) wrote;
    }
}

static int
s_bad_enum (s_ctx_t *ctx, const s_enum_t *en, const void *name, size_t len)
{
    char quoted [S_QUOTE_MAX + 1];
    char allowed [SGMQ_PROTO_MAX_REASON / 2];
    s_sanitize (quoted, sizeof (quoted), name, len);
    s_enum_list (en, allowed, sizeof (allowed));
    return s_fail (ctx, en->error, "\"%s%s\" is not a %s (%s)", quoted,
                   len > S_QUOTE_MAX ? "..." : "", en->what, allowed);
}

//  --------------------------------------------------------------------------
//  Strings

typedef enum {
    S_NAME = 1,                 //  no control characters at all
    S_TEXT                      //  tab, newline and carriage return allowed
} s_class_t;

typedef struct {
    uint32_t min, max;          //  length in bytes; min is 0 or 1
    uint8_t cls;                //  s_class_t
} s_strspec_t;

//  Well-formed UTF-8 (Unicode 15, table 3-7). The second byte's range is
//  what excludes overlong forms, surrogates and code points past U+10FFFF.
static const struct {
    uint8_t lead_lo, lead_hi, next_lo, next_hi, length;
} s_utf8_forms [] = {
    { 0xc2, 0xdf, 0x80, 0xbf, 2 },
    { 0xe0, 0xe0, 0xa0, 0xbf, 3 },
    { 0xe1, 0xec, 0x80, 0xbf, 3 },
    { 0xed, 0xed, 0x80, 0x9f, 3 },
    { 0xee, 0xef, 0x80, 0xbf, 3 },
    { 0xf0, 0xf0, 0x90, 0xbf, 4 },
    { 0xf1, 0xf3, 0x80, 0xbf, 4 },
    { 0xf4, 0xf4, 0x80, 0x8f, 4 },
};
#define S_UTF8_CONT_MASK 0xc0
#define S_UTF8_CONT      0x80

static int
s_check_str (s_ctx_t *ctx, const uint8_t *s, size_t len,
             const s_strspec_t *spec)
{
    if (len > spec->max)
        return s_fail (ctx, SGMQ_E_TOO_LONG, "string of %zu bytes, limit %" PRIu32,
                       len, spec->max);
    if (len < spec->min)
        return s_fail (ctx, SGMQ_E_BAD_VALUE, "must not be empty");

    size_t at = 0;
    while (at < len) {
        //  Most text is printable ASCII: test many bytes at once for a high
        //  bit, a byte below 0x20 or a DEL, and only look closer at a
        //  block that has one. SSE2 is part of x86-64; elsewhere, 8 bytes
        //  in a word (the usual "has a byte below n" tricks; a false alarm
        //  only sends that byte down the slow path).
#if defined (__SSE2__)
        if (len - at >= sizeof (__m128i)) {
            __m128i x = _mm_loadu_si128 ((const __m128i *) (s + at));
            //  Signed compare: bytes >= 0x80 are negative, so "< 0x20" also
            //  catches them, as it should.
            __m128i odd = _mm_or_si128 (_mm_cmplt_epi8 (x, _mm_set1_epi8 (' ')),
                                        _mm_cmpeq_epi8 (x, _mm_set1_epi8 (S_ASCII_DEL)));
            if (_mm_movemask_epi8 (odd) == 0) {
                at += sizeof (__m128i);
                continue;
            }
        }
#endif
        if (len - at >= sizeof (uint64_t)) {
            uint64_t x;
            memcpy (&x, s + at, sizeof x);
            uint64_t del = x ^ (S_SWAR_ONES * S_ASCII_DEL);
            uint64_t odd = (x & S_SWAR_HIGH)
                         | ((x - S_SWAR_ONES * ' ') & ~x & S_SWAR_HIGH)
                         | ((del - S_SWAR_ONES) & ~del & S_SWAR_HIGH);
            if (!odd) {
                at += sizeof x;
                continue;
            }
        }
        uint8_t c = s [at];
        if (c < S_ASCII_LIMIT) {
            if (c >= ' ' && c != S_ASCII_DEL) {
                at++;
                continue;
            }
            if (c == 0)
                return s_fail (ctx, SGMQ_E_BAD_UTF8, "NUL byte at offset %zu", at);
            if (spec->cls == S_TEXT && (c == '\t' || c == '\n' || c == '\r')) {
                at++;
                continue;
            }
            return s_fail (ctx, SGMQ_E_BAD_VALUE,
                           "control character 0x%02x at offset %zu", c, at);
        }
        size_t form = 0;
        while (form < S_COUNT_OF (s_utf8_forms)
               && (c < s_utf8_forms [form].lead_lo
                   || c > s_utf8_forms [form].lead_hi))
            form++;
        if (form == S_COUNT_OF (s_utf8_forms))
            return s_fail (ctx, SGMQ_E_BAD_UTF8,
                           "invalid UTF-8 byte 0x%02x at offset %zu", c, at);
        size_t length = s_utf8_forms [form].length;
        if (len - at < length)
            return s_fail (ctx, SGMQ_E_BAD_UTF8,
                           "truncated UTF-8 sequence at offset %zu", at);
        uint8_t next = s [at + 1];
        bool ok = next >= s_utf8_forms [form].next_lo
               && next <= s_utf8_forms [form].next_hi;
        for (size_t k = 2; ok && k < length; k++)
            ok = (s [at + k] & S_UTF8_CONT_MASK) == S_UTF8_CONT;
        if (!ok)
            return s_fail (ctx, SGMQ_E_BAD_UTF8,
                           "invalid UTF-8 sequence at offset %zu", at);
        at += length;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Field tables: the protocol's rules, used in both directions.

typedef enum {
    S_F_UINT = 1,               //  uint64_t or uint32_t (`width`), range min..max
    S_F_BOOL,                   //  bool
    S_F_STR,                    //  const char *, spec `str`
    S_F_ENUM,                   //  int-sized enum, names `en`
    S_F_LIST,                   //  sgmq_strlist_t, count min..max, items `str`/`en`
    S_F_BIN,                    //  fixed: uint8_t [max]; else ptr + size_t at aux
    S_F_ITEMS,                  //  ptr to structs + uint32_t count at aux
    S_F_MAP,                    //  struct in place + bool "present" at aux
    S_F_BODY                    //  sgmq_body_t (kind set by a sibling field)
} s_ftype_t;

typedef struct s_table_t s_table_t;

typedef struct {
    const char *key;
    uint8_t key_len;
    uint8_t type;               //  s_ftype_t
    bool required;
    bool fixed;                 //  S_F_BIN: exactly `max` bytes, in place
    bool bytes;                 //  S_F_BODY: also keep the raw bytes (aux, aux2)
    uint8_t width;              //  S_F_UINT: size of the struct member
    size_t off;                 //  the value in the struct
    size_t aux;                 //  see s_ftype_t
    size_t aux2;
    uint64_t min, max;          //  value range, item count or byte size
    s_strspec_t str;
    const s_enum_t *en;
    const s_table_t *sub;       //  S_F_ITEMS / S_F_MAP: the element's map
    size_t item_size;           //  S_F_ITEMS
} s_field_t;

struct s_table_t {
    const s_field_t *fields;
    size_t count;
};

#define S_R true
#define S_O false
#define S_KEY(k)            .key = (k), .key_len = sizeof (k) - 1
#define S_MEMBER_SIZE(T, m) sizeof (((T *) 0)->m)
#define S_UINT_MAX(T, m)    (S_MEMBER_SIZE (T, m) == sizeof (uint32_t) \
                             ? (uint64_t) UINT32_MAX : UINT64_MAX)

#define F_UINT(k, req, T, m, lo, hi) \
    { S_KEY (k), .type = S_F_UINT, .required = req, \
      .width = (uint8_t) S_MEMBER_SIZE (T, m), .off = offsetof (T, m), \
      .min = (lo), .max = (hi) }
#define F_UINT_ANY(k, req, T, m, lo) F_UINT (k, req, T, m, lo, S_UINT_MAX (T, m))
#define F_BOOL(k, req, T, m) \
    { S_KEY (k), .type = S_F_BOOL, .required = req, .off = offsetof (T, m) }
#define F_STR(k, req, T, m, lo, hi, cls) \
    { S_KEY (k), .type = S_F_STR, .required = req, .off = offsetof (T, m), \
      .str = { lo, hi, cls } }
#define F_ENUM(k, req, T, m, e) \
    { S_KEY (k), .type = S_F_ENUM, .required = req, .off = offsetof (T, m), \
      .en = &(e) }
#define F_LIST(k, req, T, m, lo, hi, item_max, cls) \
    { S_KEY (k), .type = S_F_LIST, .required = req, .off = offsetof (T, m), \
      .min = (lo), .max = (hi), .str = { 1, item_max, cls } }
#define F_ENUM_LIST(k, req, T, m, lo, hi, e) \
    { S_KEY (k), .type = S_F_LIST, .required = req, .off = offsetof (T, m), \
      .min = (lo), .max = (hi), .en = &(e) }
#define F_HASH(k, req, T, m) \
    { S_KEY (k), .type = S_F_BIN, .required = req, .fixed = true, \
      .off = offsetof (T, m), .min = S_MEMBER_SIZE (T, m), \
      .max = S_MEMBER_SIZE (T, m) }
#define F_BIN(k, req, T, m, msize, lo, hi) \
    { S_KEY (k), .type = S_F_BIN, .required = req, .off = offsetof (T, m), \
      .aux = offsetof (T, msize), .min = (lo), .max = (hi) }
#define F_ITEMS(k, req, T, m, mcount, lo, hi, table, IT) \
    { S_KEY (k), .type = S_F_ITEMS, .required = req, .off = offsetof (T, m), \
      .aux = offsetof (T, mcount), .min = (lo), .max = (hi), \
      .sub = &(table), .item_size = sizeof (IT) }
#define F_MAP(k, req, T, m, mhas, table) \
    { S_KEY (k), .type = S_F_MAP, .required = req, .off = offsetof (T, m), \
      .aux = offsetof (T, mhas), .sub = &(table) }
#define F_BODY(k, T, m) \
    { S_KEY (k), .type = S_F_BODY, .required = S_R, .off = offsetof (T, m) }
#define F_BODY_BYTES(k, T, m, mbytes, msize) \
    { S_KEY (k), .type = S_F_BODY, .required = S_R, .bytes = true, \
      .off = offsetof (T, m), .aux = offsetof (T, mbytes), \
      .aux2 = offsetof (T, msize) }
#define S_TABLE(fields) { fields, S_COUNT_OF (fields) }

#define NAME    SGMQ_PROTO_MAX_NAME
#define TITLE   SGMQ_PROTO_MAX_TITLE

//  Kinds. The order of each table is the canonical encoding order.
#define B sgmq_body_t
static const s_field_t s_escalation_fields [] = {
    F_STR ("group", S_R, B, u.escalation.group, 1, NAME, S_NAME),
    F_STR ("title", S_R, B, u.escalation.title, 1, TITLE, S_NAME),
    F_STR ("summary", S_R, B, u.escalation.summary, 1, SGMQ_PROTO_MAX_TEXT, S_TEXT),
    F_ENUM ("severity", S_R, B, u.escalation.severity, s_severity_enum),
    F_STR ("requested", S_R, B, u.escalation.requested, 1,
           SGMQ_PROTO_MAX_SHORTTEXT, S_TEXT),
    F_UINT_ANY ("respond_by", S_R, B, u.escalation.respond_by, 1),
    F_STR ("case_ref", S_O, B, u.escalation.case_ref, 1, NAME, S_NAME),
};
static const s_field_t s_response_fields [] = {
    F_UINT_ANY ("to", S_R, B, u.response.to, 1),
    F_STR ("decision", S_R, B, u.response.decision, 1,
           SGMQ_PROTO_MAX_SHORTTEXT, S_TEXT),
    F_STR ("summary", S_R, B, u.response.summary, 1, SGMQ_PROTO_MAX_TEXT, S_TEXT),
    F_LIST ("action", S_O, B, u.response.action, 0, SGMQ_PROTO_MAX_LIST,
            SGMQ_PROTO_MAX_ITEM, S_TEXT),
};
static const s_field_t s_learning_fields [] = {
    F_ENUM ("review_type", S_R, B, u.learning.review_type, s_review_enum),
    F_STR ("review_ref", S_R, B, u.learning.review_ref, 1, NAME, S_NAME),
    F_STR ("title", S_R, B, u.learning.title, 1, TITLE, S_NAME),
    F_STR ("summary", S_R, B, u.learning.summary, 1, SGMQ_PROTO_MAX_TEXT, S_TEXT),
    F_LIST ("theme", S_R, B, u.learning.theme, 1, SGMQ_PROTO_MAX_LIST,
            SGMQ_PROTO_MAX_THEME, S_NAME),
    F_LIST ("recommendation", S_R, B, u.learning.recommendation, 1,
            SGMQ_PROTO_MAX_LIST, SGMQ_PROTO_MAX_ITEM, S_TEXT),
    F_LIST ("groups", S_R, B, u.learning.groups, 1, SGMQ_PROTO_MAX_GROUPS,
            NAME, S_NAME),
    F_UINT_ANY ("session_by", S_O, B, u.learning.session_by, 0),
    F_UINT_ANY ("reflection_by", S_O, B, u.learning.reflection_by, 0),
};
static const s_field_t s_learning_update_fields [] = {
    F_UINT_ANY ("alert", S_R, B, u.learning_update.alert, 1),
    F_ENUM ("held", S_R, B, u.learning_update.held, s_held_enum),
    F_UINT_ANY ("on", S_O, B, u.learning_update.on, 0),
    F_STR ("notes", S_O, B, u.learning_update.notes, 1,
           SGMQ_PROTO_MAX_SHORTTEXT, S_TEXT),
};
static const s_field_t s_reminder_fields [] = {
    F_ENUM ("reason", S_R, B, u.reminder.reason, s_reason_enum),
    F_UINT_ANY ("about", S_R, B, u.reminder.about, 1),
    F_ENUM ("about_kind", S_R, B, u.reminder.about_kind, s_kind_enum),
    F_STR ("title", S_R, B, u.reminder.title, 1, TITLE, S_NAME),
    F_STR ("group", S_O, B, u.reminder.group, 1, NAME, S_NAME),
    F_UINT_ANY ("due", S_R, B, u.reminder.due, 0),
    F_UINT_ANY ("count", S_R, B, u.reminder.count, 1),
};
#undef B

static const s_table_t s_kind_tables [SGMQ_KIND_COUNT_] = {
    [SGMQ_KIND_ESCALATION]      = S_TABLE (s_escalation_fields),
    [SGMQ_KIND_RESPONSE]        = S_TABLE (s_response_fields),
    [SGMQ_KIND_LEARNING]        = S_TABLE (s_learning_fields),
    [SGMQ_KIND_LEARNING_UPDATE] = S_TABLE (s_learning_update_fields),
    [SGMQ_KIND_REMINDER]        = S_TABLE (s_reminder_fields),
};

//  Elements of lists and maps inside command bodies.
#define P sgmq_pending_item_t
static const s_field_t s_pending_item_fields [] = {
    F_UINT_ANY ("seq", S_R, P, seq, 1),
    F_UINT_ANY ("time", S_R, P, time, 0),
    F_ENUM ("kind", S_R, P, kind, s_kind_enum),
    F_STR ("recipient", S_R, P, recipient, 1, NAME, S_NAME),
    F_ENUM ("state", S_R, P, state, s_state_enum),
    F_UINT_ANY ("attempts", S_R, P, attempts, 0),
    F_UINT_ANY ("last_delivered", S_O, P, last_delivered, 0),
    F_UINT_ANY ("acked_at", S_O, P, acked_at, 0),
    F_UINT_ANY ("deadline", S_O, P, deadline, 0),
    F_BOOL ("overdue", S_R, P, overdue),
    F_STR ("from", S_R, P, from, 1, NAME, S_NAME),
    F_STR ("title", S_O, P, title, 1, TITLE, S_NAME),
};
#undef P
static const s_table_t s_pending_item_table = S_TABLE (s_pending_item_fields);

#define A sgmq_ack_event_t
static const s_field_t s_ack_event_fields [] = {
    F_STR ("by", S_R, A, by, 1, NAME, S_NAME),
    F_STR ("key", S_R, A, key, 1, SGMQ_PROTO_KEY_TEXT, S_NAME),
    F_UINT_ANY ("time", S_R, A, time, 0),
};
#undef A
static const s_table_t s_ack_event_table = S_TABLE (s_ack_event_fields);

#define K sgmq_checkpoint_t
static const s_field_t s_checkpoint_fields [] = {
    F_UINT_ANY ("seq", S_R, K, seq, 1),
    F_UINT_ANY ("time", S_R, K, time, 0),
    F_HASH ("hash", S_R, K, hash),
    F_HASH ("signature", S_R, K, signature),
};
#undef K
static const s_table_t s_checkpoint_table = S_TABLE (s_checkpoint_fields);

#define R sgmq_recipient_t
static const s_field_t s_recipient_fields [] = {
    F_STR ("name", S_R, R, name, 1, NAME, S_NAME),
    F_STR ("agency", S_R, R, agency, 0, NAME, S_NAME),
    F_LIST ("groups", S_R, R, groups, 0, SGMQ_PROTO_MAX_GROUPS, NAME, S_NAME),
    F_UINT_ANY ("acked_at", S_O, R, acked_at, 0),
};
#undef R
static const s_table_t s_recipient_table = S_TABLE (s_recipient_fields);

//  Commands.
#define C sgmq_cmd_t
static const s_field_t s_hello_fields [] = {
    F_STR ("client", S_O, C, u.hello.client, 1, NAME, S_NAME),
};
static const s_field_t s_welcome_fields [] = {
    F_STR ("name", S_R, C, u.welcome.name, 1, NAME, S_NAME),
    F_STR ("agency", S_R, C, u.welcome.agency, 1, NAME, S_NAME),
    F_ENUM_LIST ("roles", S_R, C, u.welcome.roles, 1, SGMQ_PROTO_MAX_ROLES,
                 s_role_enum),
    F_LIST ("groups", S_R, C, u.welcome.groups, 0, SGMQ_PROTO_MAX_GROUPS,
            NAME, S_NAME),
    F_STR ("broker", S_R, C, u.welcome.broker, 1, NAME, S_NAME),
    F_UINT_ANY ("heartbeat", S_R, C, u.welcome.heartbeat, 1),
    F_UINT_ANY ("max_frame", S_R, C, u.welcome.max_frame, 1),
};
static const s_field_t s_publish_fields [] = {
    F_STR ("ref", S_R, C, u.publish.ref, 1, NAME, S_NAME),
    F_ENUM ("kind", S_R, C, u.publish.body.kind, s_kind_enum),
    F_BODY ("body", C, u.publish.body),
};
static const s_field_t s_confirm_fields [] = {
    F_UINT_ANY ("seq", S_R, C, u.confirm.seq, 1),
    F_UINT_ANY ("time", S_R, C, u.confirm.time, 0),
    F_BOOL ("duplicate", S_R, C, u.confirm.duplicate),
};
static const s_field_t s_subscribe_fields [] = {
    F_UINT ("window", S_O, C, u.subscribe.window, 1, SGMQ_PROTO_MAX_WINDOW),
};
static const s_field_t s_subscribed_fields [] = {
    F_UINT_ANY ("backlog", S_R, C, u.subscribed.backlog, 0),
};
static const s_field_t s_deliver_fields [] = {
    F_UINT_ANY ("seq", S_R, C, u.deliver.seq, 1),
    F_UINT_ANY ("time", S_R, C, u.deliver.time, 0),
    F_ENUM ("kind", S_R, C, u.deliver.body.kind, s_kind_enum),
    F_STR ("from", S_R, C, u.deliver.from, 1, NAME, S_NAME),
    //  Empty for messages the broker generates (reminders), as in REPLAY-ITEM.
    F_STR ("agency", S_R, C, u.deliver.agency, 0, NAME, S_NAME),
    F_LIST ("groups", S_R, C, u.deliver.groups, 1, SGMQ_PROTO_MAX_GROUPS,
            NAME, S_NAME),
    F_UINT_ANY ("attempt", S_R, C, u.deliver.attempt, 1),
    F_BODY_BYTES ("body", C, u.deliver.body, u.deliver.body_bytes,
                  u.deliver.body_size),
};
static const s_field_t s_ack_fields [] = {
    F_UINT_ANY ("seq", S_R, C, u.ack.seq, 1),
};
static const s_field_t s_acked_fields [] = {
    F_UINT_ANY ("seq", S_R, C, u.acked.seq, 1),
    F_UINT_ANY ("time", S_R, C, u.acked.time, 0),
    F_BOOL ("duplicate", S_R, C, u.acked.duplicate),
};
static const s_field_t s_pending_fields [] = {
    F_ENUM ("scope", S_R, C, u.pending.scope, s_scope_enum),
    F_BOOL ("overdue", S_O, C, u.pending.overdue),
    F_UINT_ANY ("after", S_O, C, u.pending.after, 0),
    F_UINT ("limit", S_O, C, u.pending.limit, 1, SGMQ_PROTO_MAX_ITEMS),
};
static const s_field_t s_pending_answer_fields [] = {
    F_ITEMS ("items", S_R, C, u.pending_answer.items, u.pending_answer.count,
             0, SGMQ_PROTO_MAX_ITEMS, s_pending_item_table, sgmq_pending_item_t),
    F_UINT_ANY ("next", S_R, C, u.pending_answer.next, 0),
};
static const s_field_t s_replay_fields [] = {
    F_UINT_ANY ("from", S_O, C, u.replay.from, 0),
    F_UINT_ANY ("to", S_O, C, u.replay.to, 0),
    F_UINT_ANY ("since", S_O, C, u.replay.since, 0),
    F_UINT_ANY ("until", S_O, C, u.replay.until, 0),
    F_STR ("group", S_O, C, u.replay.group, 1, NAME, S_NAME),
    F_ENUM ("kind", S_O, C, u.replay.kind, s_kind_enum),
};
static const s_field_t s_replay_item_fields [] = {
    F_UINT_ANY ("seq", S_R, C, u.replay_item.seq, 1),
    F_UINT_ANY ("time", S_R, C, u.replay_item.time, 0),
    F_ENUM ("kind", S_R, C, u.replay_item.kind, s_kind_enum),
    F_STR ("from", S_R, C, u.replay_item.from, 1, NAME, S_NAME),
    //  Both empty for messages the broker generates.
    F_STR ("from_key", S_R, C, u.replay_item.from_key, 0,
           SGMQ_PROTO_KEY_TEXT, S_NAME),
    F_STR ("agency", S_R, C, u.replay_item.agency, 0, NAME, S_NAME),
    F_LIST ("groups", S_R, C, u.replay_item.groups, 1, SGMQ_PROTO_MAX_GROUPS,
            NAME, S_NAME),
    F_BIN ("body", S_R, C, u.replay_item.body, u.replay_item.body_size,
           1, SGMQ_PROTO_MAX_FRAME),
    F_HASH ("hash", S_R, C, u.replay_item.hash),
    F_HASH ("prev", S_R, C, u.replay_item.prev),
    F_ITEMS ("acks", S_R, C, u.replay_item.acks, u.replay_item.ack_count,
             0, SGMQ_PROTO_MAX_ACKS, s_ack_event_table, sgmq_ack_event_t),
};
static const s_field_t s_replay_end_fields [] = {
    F_UINT_ANY ("count", S_R, C, u.replay_end.count, 0),
    F_UINT_ANY ("head_seq", S_R, C, u.replay_end.head_seq, 0),
    F_HASH ("head_hash", S_R, C, u.replay_end.head_hash),
    F_MAP ("checkpoint", S_O, C, u.replay_end.checkpoint,
           u.replay_end.has_checkpoint, s_checkpoint_table),
};
static const s_field_t s_error_fields [] = {
    F_UINT ("code", S_R, C, u.error.code, SGMQ_E_BAD_REQUEST, S_STATUS_MAX),
    F_STR ("reason", S_R, C, u.error.reason, 1, SGMQ_PROTO_MAX_REASON, S_TEXT),
    F_STR ("field", S_O, C, u.error.field, 1, NAME, S_NAME),
};
static const s_field_t s_report_fields [] = {
    F_UINT_ANY ("since", S_O, C, u.report.since, 0),
    F_UINT_ANY ("until", S_O, C, u.report.until, 0),
};
static const s_field_t s_report_escalation_fields [] = {
    F_UINT_ANY ("seq", S_R, C, u.report_escalation.seq, 1),
    F_UINT_ANY ("time", S_R, C, u.report_escalation.time, 0),
    F_STR ("from", S_R, C, u.report_escalation.from, 1, NAME, S_NAME),
    F_STR ("agency", S_R, C, u.report_escalation.agency, 0, NAME, S_NAME),
    F_STR ("group", S_R, C, u.report_escalation.group, 1, NAME, S_NAME),
    F_STR ("title", S_R, C, u.report_escalation.title, 1, TITLE, S_NAME),
    F_ENUM ("severity", S_R, C, u.report_escalation.severity, s_severity_enum),
    F_UINT_ANY ("respond_by", S_R, C, u.report_escalation.respond_by, 0),
    F_UINT_ANY ("ack_by", S_R, C, u.report_escalation.ack_by, 0),
    F_ENUM ("status", S_R, C, u.report_escalation.status, s_esc_status_enum),
    F_UINT_ANY ("acked_at", S_O, C, u.report_escalation.acked_at, 0),
    F_STR ("acked_by", S_O, C, u.report_escalation.acked_by, 1, NAME, S_NAME),
    F_UINT_ANY ("responded_at", S_O, C, u.report_escalation.responded_at, 0),
    F_UINT_ANY ("response_seq", S_O, C, u.report_escalation.response_seq, 1),
    F_STR ("decision", S_O, C, u.report_escalation.decision, 1,
           SGMQ_PROTO_MAX_SHORTTEXT, S_TEXT),
    F_STR ("response_summary", S_O, C, u.report_escalation.response_summary, 1,
           SGMQ_PROTO_MAX_TEXT, S_TEXT),
    F_BOOL ("overdue_ack", S_R, C, u.report_escalation.overdue_ack),
    F_BOOL ("overdue_response", S_R, C, u.report_escalation.overdue_response),
    F_UINT_ANY ("reminders", S_R, C, u.report_escalation.reminders, 0),
};
static const s_field_t s_report_learning_fields [] = {
    F_UINT_ANY ("seq", S_R, C, u.report_learning.seq, 1),
    F_UINT_ANY ("time", S_R, C, u.report_learning.time, 0),
    F_STR ("from", S_R, C, u.report_learning.from, 1, NAME, S_NAME),
    F_STR ("agency", S_R, C, u.report_learning.agency, 0, NAME, S_NAME),
    F_STR ("title", S_R, C, u.report_learning.title, 1, TITLE, S_NAME),
    F_STR ("review_ref", S_R, C, u.report_learning.review_ref, 1, NAME, S_NAME),
    F_ENUM ("review_type", S_R, C, u.report_learning.review_type, s_review_enum),
    F_LIST ("groups", S_R, C, u.report_learning.groups, 1, SGMQ_PROTO_MAX_GROUPS,
            NAME, S_NAME),
    F_UINT_ANY ("session_by", S_R, C, u.report_learning.session_by, 0),
    F_UINT_ANY ("session_held", S_O, C, u.report_learning.session_held, 0),
    F_UINT_ANY ("reflection_by", S_R, C, u.report_learning.reflection_by, 0),
    F_UINT_ANY ("reflection_held", S_O, C, u.report_learning.reflection_held, 0),
    F_ITEMS ("recipients", S_R, C, u.report_learning.recipients,
             u.report_learning.recipient_count, 0, SGMQ_PROTO_MAX_RECIPIENTS,
             s_recipient_table, sgmq_recipient_t),
};
static const s_field_t s_report_end_fields [] = {
    F_UINT_ANY ("escalations", S_R, C, u.report_end.escalations, 0),
    F_UINT_ANY ("learning", S_R, C, u.report_end.learning, 0),
};
#undef C

//  A map longer than SGMQ_PROTO_MAX_FIELDS is refused before its keys are
//  read, so no table may have more fields than that (the longest are here).
_Static_assert (S_COUNT_OF (s_report_escalation_fields) <= SGMQ_PROTO_MAX_FIELDS,
                "report-escalation has more keys than a map may");
_Static_assert (S_COUNT_OF (s_report_learning_fields) <= SGMQ_PROTO_MAX_FIELDS,
                "report-learning has more keys than a map may");

static const s_table_t s_cmd_tables [SGMQ_CMD_COUNT_] = {
    [SGMQ_CMD_HELLO]          = S_TABLE (s_hello_fields),
    [SGMQ_CMD_WELCOME]        = S_TABLE (s_welcome_fields),
    [SGMQ_CMD_PUBLISH]        = S_TABLE (s_publish_fields),
    [SGMQ_CMD_CONFIRM]        = S_TABLE (s_confirm_fields),
    [SGMQ_CMD_SUBSCRIBE]      = S_TABLE (s_subscribe_fields),
    [SGMQ_CMD_SUBSCRIBED]     = S_TABLE (s_subscribed_fields),
    [SGMQ_CMD_DELIVER]        = S_TABLE (s_deliver_fields),
    [SGMQ_CMD_ACK]            = S_TABLE (s_ack_fields),
    [SGMQ_CMD_ACKED]          = S_TABLE (s_acked_fields),
    [SGMQ_CMD_PENDING]        = S_TABLE (s_pending_fields),
    [SGMQ_CMD_PENDING_ANSWER] = S_TABLE (s_pending_answer_fields),
    [SGMQ_CMD_REPLAY]         = S_TABLE (s_replay_fields),
    [SGMQ_CMD_REPLAY_ITEM]    = S_TABLE (s_replay_item_fields),
    [SGMQ_CMD_REPLAY_END]     = S_TABLE (s_replay_end_fields),
    [SGMQ_CMD_PING]           = { NULL, 0 },
    [SGMQ_CMD_PONG]           = { NULL, 0 },
    [SGMQ_CMD_BYE]            = { NULL, 0 },
    [SGMQ_CMD_ERROR]          = S_TABLE (s_error_fields),
    [SGMQ_CMD_REPORT]         = S_TABLE (s_report_fields),
    [SGMQ_CMD_REPORT_ESCALATION] = S_TABLE (s_report_escalation_fields),
    [SGMQ_CMD_REPORT_LEARNING]   = S_TABLE (s_report_learning_fields),
    [SGMQ_CMD_REPORT_END]     = S_TABLE (s_report_end_fields),
};

//  Scratch space for one element of an S_F_ITEMS list while it is checked.
typedef union {
    sgmq_pending_item_t pending_item;
    sgmq_ack_event_t ack_event;
    sgmq_recipient_t recipient;
} s_item_scratch_t;

//  --------------------------------------------------------------------------
//  Typed access to struct members through the tables

static uint64_t
s_load_uint (const unsigned char *at, size_t width)
{
    if (width == sizeof (uint32_t)) {
        uint32_t value;
        memcpy (&value, at, sizeof (value));
        return value;
    }
    uint64_t value;
    memcpy (&value, at, sizeof (value));
    return value;
}

static void
s_store_uint (unsigned char *at, size_t width, uint64_t value)
{
    if (width == sizeof (uint32_t)) {
        uint32_t narrow = (uint32_t) value;
        memcpy (at, &narrow, sizeof (narrow));
    }
    else
        memcpy (at, &value, sizeof (value));
}

static int
s_load_int (const unsigned char *at)
{
    int value;
    memcpy (&value, at, sizeof (value));
    return value;
}

static void
s_store_int (unsigned char *at, int value)
{
    memcpy (at, &value, sizeof (value));
}

static const void *
s_load_ptr (const unsigned char *at)
{
    const void *value;
    memcpy (&value, at, sizeof (value));
    return value;
}

static void
s_store_ptr (unsigned char *at, const void *value)
{
    memcpy (at, &value, sizeof (value));
}

static size_t
s_load_size (const unsigned char *at)
{
    size_t value;
    memcpy (&value, at, sizeof (value));
    return value;
}

static void
s_store_size (unsigned char *at, size_t value)
{
    memcpy (at, &value, sizeof (value));
}

static bool
s_load_bool (const unsigned char *at)
{
    bool value;
    memcpy (&value, at, sizeof (value));
    return value;
}

static void
s_store_bool (unsigned char *at, bool value)
{
    memcpy (at, &value, sizeof (value));
}

static int
s_check_uint (s_ctx_t *ctx, const s_field_t *f, uint64_t value)
{
    if (value >= f->min && value <= f->max)
        return 0;
    if (f->max == UINT64_MAX)
        return s_fail (ctx, SGMQ_E_BAD_VALUE,
                       "%" PRIu64 " is out of range (at least %" PRIu64 ")",
                       value, f->min);
    return s_fail (ctx, SGMQ_E_BAD_VALUE,
                   "%" PRIu64 " is out of range %" PRIu64 "..%" PRIu64,
                   value, f->min, f->max);
}

static int
s_check_count (s_ctx_t *ctx, const s_field_t *f, uint64_t count)
{
    if (count > f->max)
        return s_fail (ctx, SGMQ_E_TOO_MANY, "%" PRIu64 " items, limit %" PRIu64,
                       count, f->max);
    if (count < f->min)
        return s_fail (ctx, SGMQ_E_BAD_VALUE,
                       "%" PRIu64 " items, at least %" PRIu64 " required",
                       count, f->min);
    return 0;
}

static int
s_check_bin_size (s_ctx_t *ctx, const s_field_t *f, uint64_t size)
{
    if (f->fixed && size != f->max)
        return s_fail (ctx, SGMQ_E_BAD_VALUE,
                       "binary of %" PRIu64 " bytes, must be exactly %" PRIu64,
                       size, f->max);
    if (size > f->max)
        return s_fail (ctx, SGMQ_E_TOO_LONG,
                       "binary of %" PRIu64 " bytes, limit %" PRIu64, size, f->max);
    if (size < f->min)
        return s_fail (ctx, SGMQ_E_BAD_VALUE, "must not be empty");
    return 0;
}

//  --------------------------------------------------------------------------
//  Decoding: bytes to structs, table by table

static int
    s_decode_map (s_ctx_t *ctx, s_reader_t *r, const s_table_t *table,
                  unsigned char *base, uint64_t entries);

//  Copy `len` bytes into the arena, NUL-terminated. In validate-only mode
//  nothing is copied and *out is NULL.
static int
s_copy (s_ctx_t *ctx, const void *data, size_t len, bool terminate,
        const void **out)
{
    *out = NULL;
    if (!ctx->arena)
        return 0;
    char *copy = s_arena_alloc (ctx->arena, len + (terminate ? 1 : 0), 1);
    if (!copy)
        return s_no_memory (ctx);
    if (len)
        memcpy (copy, data, len);
    if (terminate)
        copy [len] = 0;
    *out = copy;
    return 0;
}

//  A string field or list item: read, check, copy.
static int
s_decode_str (s_ctx_t *ctx, const s_head_t *h, const s_strspec_t *spec,
              const char **out)
{
    if (h->type != S_T_STR)
        return s_wrong_type (ctx, "a string", h->type);
    const void *copy = NULL;
    int rc = s_check_str (ctx, h->data, (size_t) h->u, spec);
    if (rc == 0)
        rc = s_copy (ctx, h->data, (size_t) h->u, true, &copy);
    *out = copy;
    return rc;
}

static int
s_decode_list (s_ctx_t *ctx, s_reader_t *r, const s_field_t *f,
               const s_head_t *h, unsigned char *base)
{
    if (h->type != S_T_ARRAY)
        return s_wrong_type (ctx, "an array of strings", h->type);
    int rc = s_check_count (ctx, f, h->u);
    if (rc)
        return rc;
    uint32_t count = (uint32_t) h->u;
    const char **items = NULL;
    if (ctx->arena && count) {
        items = s_arena_alloc (ctx->arena, count * sizeof (char *),
                               alignof (char *));
        if (!items)
            return s_no_memory (ctx);
    }
    for (uint32_t index = 0; index < count; index++) {
        s_set_index (ctx, index);
        s_head_t item;
        const char *value = NULL;
        if (s_read_head (r, &item))
            return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable item");
        if (f->en) {
            if (item.type != S_T_STR)
                return s_wrong_type (ctx, "a string", item.type);
            int parsed = s_enum_parse (f->en, item.data, (size_t) item.u);
            if (!parsed)
                return s_bad_enum (ctx, f->en, item.data, (size_t) item.u);
            value = f->en->names [parsed - 1];
        }
        else
        if ((rc = s_decode_str (ctx, &item, &f->str, &value)))
            return rc;
        if (items)
            items [index] = value;
    }
    s_set_index (ctx, -1);
    sgmq_strlist_t list = { count, items };
    memcpy (base + f->off, &list, sizeof (list));
    return 0;
}

//  One element of an S_F_ITEMS list: a map, decoded into `item`.
static int
s_decode_item (s_ctx_t *ctx, s_reader_t *r, const s_field_t *f,
               unsigned char *item)
{
    s_head_t h;
    if (s_read_head (r, &h))
        return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable item");
    if (h.type != S_T_MAP)
        return s_wrong_type (ctx, "a map", h.type);
    memset (item, 0, f->item_size);
    return s_decode_map (ctx, r, f->sub, item, h.u);
}

static int
s_decode_items (s_ctx_t *ctx, s_reader_t *r, const s_field_t *f,
                const s_head_t *h, unsigned char *base)
{
    if (h->type != S_T_ARRAY)
        return s_wrong_type (ctx, "an array of maps", h->type);
    int rc = s_check_count (ctx, f, h->u);
    if (rc)
        return rc;
    uint32_t count = (uint32_t) h->u;

    //  Check every element before taking storage for them all: an array of
    //  one-byte elements must not buy a hundred bytes of struct each.
    s_item_scratch_t scratch;
    assert (f->item_size <= sizeof (scratch));
    s_arena_t *arena = ctx->arena;
    s_reader_t first = *r;
    ctx->arena = NULL;
    for (uint32_t index = 0; index < count && rc == 0; index++) {
        s_set_index (ctx, index);
        rc = s_decode_item (ctx, r, f, (unsigned char *) &scratch);
    }
    ctx->arena = arena;
    if (rc)
        return rc;

    unsigned char *items = NULL;
    if (arena && count) {
        items = s_arena_alloc (arena, count * f->item_size,
                               alignof (max_align_t));
        if (!items)
            return s_no_memory (ctx);
        *r = first;
        for (uint32_t index = 0; index < count && rc == 0; index++) {
            s_set_index (ctx, index);
            rc = s_decode_item (ctx, r, f, items + index * f->item_size);
        }
        if (rc)
            return rc;
    }
    s_set_index (ctx, -1);
    s_store_ptr (base + f->off, items);
    s_store_uint (base + f->aux, sizeof (uint32_t), count);
    return 0;
}

//  A kind's body: a map decoded with the kind's table (set already, by the
//  sibling "kind" field or by the caller).
static int
s_decode_body_map (s_ctx_t *ctx, s_reader_t *r, const s_field_t *f,
                   unsigned char *base)
{
    const uint8_t *start = r->p;
    s_head_t h;
    if (s_read_head (r, &h))
        return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable body");
    if (h.type != S_T_MAP)
        return s_wrong_type (ctx, "a map", h.type);
    sgmq_body_t *body = (sgmq_body_t *) (base + f->off);
    if (body->kind < 1 || body->kind >= SGMQ_KIND_COUNT_)
        return s_fail (ctx, SGMQ_E_UNKNOWN_KIND, "no kind for this body");
    int rc = s_decode_map (ctx, r, &s_kind_tables [body->kind],
                           (unsigned char *) body, h.u);
    if (rc == 0 && f->bytes) {
        const void *copy;
        size_t size = (size_t) (r->p - start);
        rc = s_copy (ctx, start, size, false, &copy);
        s_store_ptr (base + f->aux, copy);
        s_store_size (base + f->aux2, copy ? size : 0);
    }
    return rc;
}

static int
s_decode_value (s_ctx_t *ctx, s_reader_t *r, const s_field_t *f,
                unsigned char *base)
{
    s_head_t h;
    if (s_read_head (r, &h))
        return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable value");
    int rc = 0;
    switch (f->type) {
        case S_F_UINT:
            if (h.type != S_T_UINT)
                return s_wrong_type (ctx, "an unsigned integer", h.type);
            if ((rc = s_check_uint (ctx, f, h.u)))
                return rc;
            s_store_uint (base + f->off, f->width, h.u);
            return 0;
        case S_F_BOOL:
            if (h.type != S_T_BOOL)
                return s_wrong_type (ctx, "a boolean", h.type);
            s_store_bool (base + f->off, h.b);
            return 0;
        case S_F_STR: {
            const char *value;
            if ((rc = s_decode_str (ctx, &h, &f->str, &value)))
                return rc;
            s_store_ptr (base + f->off, value);
            return 0;
        }
        case S_F_ENUM: {
            if (h.type != S_T_STR)
                return s_wrong_type (ctx, "a string", h.type);
            int value = s_enum_parse (f->en, h.data, (size_t) h.u);
            if (!value)
                return s_bad_enum (ctx, f->en, h.data, (size_t) h.u);
            s_store_int (base + f->off, value);
            return 0;
        }
        case S_F_LIST:
            return s_decode_list (ctx, r, f, &h, base);
        case S_F_BIN: {
            if (h.type != S_T_BIN)
                return s_wrong_type (ctx, "a binary", h.type);
            if ((rc = s_check_bin_size (ctx, f, h.u)))
                return rc;
            if (f->fixed) {
                memcpy (base + f->off, h.data, (size_t) h.u);
                return 0;
            }
            const void *copy;
            if ((rc = s_copy (ctx, h.data, (size_t) h.u, false, &copy)))
                return rc;
            s_store_ptr (base + f->off, copy);
            s_store_size (base + f->aux, (size_t) h.u);
            return 0;
        }
        case S_F_ITEMS:
            return s_decode_items (ctx, r, f, &h, base);
        case S_F_MAP:
            if (h.type != S_T_MAP)
                return s_wrong_type (ctx, "a map", h.type);
            if ((rc = s_decode_map (ctx, r, f->sub, base + f->off, h.u)))
                return rc;
            s_store_bool (base + f->aux, true);
            return 0;
        default:
            //  S_F_BODY is read by s_decode_body_map once the map is done
            return s_fail (ctx, SGMQ_E_INTERNAL, "field type %d", f->type);
    }
}

//  A map of `entries` entries whose header has been read, into `base`
//  (zeroed by the caller, so absent optional fields read as 0 / NULL).
//  Keys may come in any order; a body waits until its kind is known.
static int
s_decode_map (s_ctx_t *ctx, s_reader_t *r, const s_table_t *table,
              unsigned char *base, uint64_t entries)
{
    if (entries > SGMQ_PROTO_MAX_FIELDS)
        return s_fail (ctx, SGMQ_E_TOO_MANY, "map of %" PRIu64 " entries, limit %d",
                       entries, SGMQ_PROTO_MAX_FIELDS);
    uint32_t seen = 0;
    const uint8_t *body_at = NULL;
    const s_field_t *body_field = NULL;
    int rc;

    for (uint64_t entry = 0; entry < entries; entry++) {
        s_head_t key;
        if (s_read_head (r, &key))
            return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable key");
        if (key.type != S_T_STR)
            return s_fail (ctx, SGMQ_E_WRONG_TYPE,
                           "key of entry %" PRIu64 " is %s, expected a string",
                           entry, s_type_name (key.type));
        size_t index = 0;
        while (index < table->count
               && (table->fields [index].key_len != key.u
                   || memcmp (table->fields [index].key, key.data,
                              (size_t) key.u) != 0))
            index++;
        s_push (ctx, key.data, (size_t) key.u);
        if (index == table->count)
            return s_fail (ctx, SGMQ_E_UNKNOWN_FIELD, "unknown field");
        if (seen & (UINT32_C (1) << index))
            return s_fail (ctx, SGMQ_E_DUPLICATE_FIELD, "field appears twice");
        seen |= UINT32_C (1) << index;

        const s_field_t *f = &table->fields [index];
        if (f->type == S_F_BODY) {
            body_at = r->p;
            body_field = f;
            if (s_skip (r))
                return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable body");
        }
        else
        if ((rc = s_decode_value (ctx, r, f, base)))
            return rc;
        s_pop (ctx);
    }
    for (size_t index = 0; index < table->count; index++) {
        const s_field_t *f = &table->fields [index];
        if (f->required && !(seen & (UINT32_C (1) << index))) {
            s_push (ctx, f->key, f->key_len);
            return s_fail (ctx, SGMQ_E_MISSING_FIELD, "required field is missing");
        }
    }
    if (body_field) {
        s_reader_t body_reader = { body_at, r->p };
        s_push (ctx, body_field->key, body_field->key_len);
        if ((rc = s_decode_body_map (ctx, &body_reader, body_field, base)))
            return rc;
        s_pop (ctx);
    }
    return 0;
}

//  A standalone body (what the store keeps, REPLAY-ITEM's body, DELIVER's
//  body_bytes): exactly one map of the kind, nothing after it.
static const s_field_t s_whole_body =
    { S_KEY ("body"), .type = S_F_BODY, .required = S_R, .off = 0 };

static int
s_decode_body_bytes (s_ctx_t *ctx, int kind, const uint8_t *data, size_t size,
                     sgmq_body_t *body)
{
    memset (body, 0, sizeof (*body));
    s_push (ctx, s_whole_body.key, s_whole_body.key_len);
    if (kind < 1 || kind >= SGMQ_KIND_COUNT_)
        return s_fail (ctx, SGMQ_E_UNKNOWN_KIND, "kind %d is not known", kind);
    if (size > SGMQ_PROTO_MAX_FRAME)
        return s_fail (ctx, SGMQ_E_TOO_LARGE, "%zu bytes, limit %d", size,
                       SGMQ_PROTO_MAX_FRAME);
    if (size == 0)
        return s_fail (ctx, SGMQ_E_TRUNCATED, "no bytes");
    s_reader_t r = { data, data + size };
    s_scan_error_t scan;
    if (s_scan (&r, S_BODY_DEPTH, NULL, 0, NULL, &scan))
        return s_fail (ctx, scan.code, "%s at byte %zu",
                       scan.code == SGMQ_E_TOO_DEEP ? "nested too deep"
                       : scan.code == SGMQ_E_TRUNCATED ? "truncated"
                       : "not msgpack", scan.offset);
    if (r.p != r.end)
        return s_fail (ctx, SGMQ_E_TRAILING, "%zu bytes after the body map",
                       (size_t) (r.end - r.p));
    body->kind = (sgmq_kind_t) kind;
    r.p = data;
    int rc = s_decode_body_map (ctx, &r, &s_whole_body, (unsigned char *) body);
    if (rc == 0)
        s_pop (ctx);
    return rc;
}

//  One command [name, id, body] in a byte range checked by s_scan.
static int
s_decode_cmd (s_ctx_t *ctx, s_reader_t *r, sgmq_cmd_t *cmd)
{
    memset (cmd, 0, sizeof (*cmd));
    ctx->root = "command";
    s_head_t h;
    if (s_read_head (r, &h))
        return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable command");
    if (h.type != S_T_ARRAY)
        return s_fail (ctx, SGMQ_E_MALFORMED,
                       "is %s, expected an array [name, id, body]",
                       s_type_name (h.type));
    //  Read the id first, so that even an unknown command gets its answer:
    //  a newer client probing for a command needs its 405 matched.
    if (h.u >= S_CMD_ELEMENTS - 1) {       //  name and id are there
        s_reader_t peek = *r;
        s_head_t id;
        if (s_skip (&peek) == 0 && s_read_head (&peek, &id) == 0
            && id.type == S_T_UINT)
            ctx->id = id.u;
    }
    if (h.u != S_CMD_ELEMENTS)
        return s_fail (ctx, SGMQ_E_MALFORMED,
                       "has %" PRIu64 " elements, expected 3 [name, id, body]",
                       h.u);
    s_head_t name;
    ctx->root = "name";
    if (s_read_head (r, &name))
        return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable");
    if (name.type != S_T_STR)
        return s_wrong_type (ctx, "a string", name.type);
    int which = s_enum_parse (&s_cmd_enum, name.data, (size_t) name.u);
    if (!which) {
        char quoted [S_QUOTE_MAX + 1];
        s_sanitize (quoted, sizeof (quoted), name.data, (size_t) name.u);
        return s_fail (ctx, SGMQ_E_UNKNOWN_COMMAND,
                       "unknown command \"%s%s\"", quoted,
                       name.u > S_QUOTE_MAX ? "..." : "");
    }
    s_head_t id;
    ctx->root = "id";
    if (s_read_head (r, &id))
        return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable");
    if (id.type != S_T_UINT)
        return s_wrong_type (ctx, "an unsigned integer", id.type);
    ctx->id = id.u;
    cmd->id = id.u;
    cmd->cmd = (sgmq_cmd_id_t) which;
    if (which == SGMQ_CMD_DELIVER && id.u != 0)
        return s_fail (ctx, SGMQ_E_BAD_VALUE, "DELIVER carries id 0");

    s_head_t body;
    ctx->root = "body";
    if (s_read_head (r, &body))
        return s_fail (ctx, SGMQ_E_MALFORMED, "unreadable");
    if (body.type != S_T_MAP)
        return s_wrong_type (ctx, "a map", body.type);
    return s_decode_map (ctx, r, &s_cmd_tables [which], (unsigned char *) cmd,
                         body.u);
}

//  --------------------------------------------------------------------------
//  Validating and encoding: structs to bytes, table by table. With pk NULL
//  these only check; the checks are the decoder's (same tables, same
//  s_check_* functions).

static int
s_pack_failed (s_ctx_t *ctx)
{
    return s_no_memory (ctx);
}

static int
s_pack_str (msgpack_packer *pk, const char *s, size_t len)
{
    if (msgpack_pack_str (pk, len))
        return -1;
    return msgpack_pack_str_body (pk, s, len);
}

static int
    s_put_map (s_ctx_t *ctx, msgpack_packer *pk, const s_table_t *table,
               const unsigned char *base);

//  Whether an optional field is present (required ones always are, except
//  a NULL string or binary, which is then missing).
static bool
s_present (const s_field_t *f, const unsigned char *base)
{
    switch (f->type) {
        case S_F_UINT:
            return f->required || s_load_uint (base + f->off, f->width) != 0;
        case S_F_BOOL:
            return f->required || s_load_bool (base + f->off);
        case S_F_ENUM:
            return f->required || s_load_int (base + f->off) != 0;
        case S_F_STR:
            return s_load_ptr (base + f->off) != NULL;
        case S_F_LIST: {
            sgmq_strlist_t list;
            memcpy (&list, base + f->off, sizeof (list));
            return f->required || list.count > 0;
        }
        case S_F_BIN:
            return f->fixed || s_load_ptr (base + f->off) != NULL
                || s_load_size (base + f->aux) != 0;
        case S_F_MAP:
            return s_load_bool (base + f->aux);
        default:
            return true;
    }
}

static int
s_put_enum (s_ctx_t *ctx, msgpack_packer *pk, const s_enum_t *en, int value)
{
    const char *name = s_enum_name (en, value);
    if (!name)
        return s_fail (ctx, en->error, "%d is not a valid %s", value, en->what);
    if (pk && s_pack_str (pk, name, strlen (name)))
        return s_pack_failed (ctx);
    return 0;
}

static int
s_put_str (s_ctx_t *ctx, msgpack_packer *pk, const char *s,
           const s_strspec_t *spec)
{
    size_t len = strlen (s);
    int rc = s_check_str (ctx, (const uint8_t *) s, len, spec);
    if (rc == 0 && pk && s_pack_str (pk, s, len))
        rc = s_pack_failed (ctx);
    return rc;
}

static int
s_put_list (s_ctx_t *ctx, msgpack_packer *pk, const s_field_t *f,
            const unsigned char *base)
{
    sgmq_strlist_t list;
    memcpy (&list, base + f->off, sizeof (list));
    int rc = s_check_count (ctx, f, list.count);
    if (rc)
        return rc;
    if (list.count && !list.items)
        return s_fail (ctx, SGMQ_E_BAD_VALUE, "%" PRIu32 " items but no array",
                       list.count);
    if (pk && msgpack_pack_array (pk, list.count))
        return s_pack_failed (ctx);
    for (uint32_t index = 0; index < list.count && rc == 0; index++) {
        s_set_index (ctx, index);
        const char *item = list.items [index];
        if (!item)
            rc = s_fail (ctx, SGMQ_E_MISSING_FIELD, "item is NULL");
        else
        if (f->en) {
            int value = s_enum_parse (f->en, item, strlen (item));
            rc = value ? s_put_enum (ctx, pk, f->en, value)
                       : s_bad_enum (ctx, f->en, item, strlen (item));
        }
        else
            rc = s_put_str (ctx, pk, item, &f->str);
    }
    if (rc == 0)
        s_set_index (ctx, -1);
    return rc;
}

static int
s_put_items (s_ctx_t *ctx, msgpack_packer *pk, const s_field_t *f,
             const unsigned char *base)
{
    uint32_t count = (uint32_t) s_load_uint (base + f->aux, sizeof (uint32_t));
    const unsigned char *items = s_load_ptr (base + f->off);
    int rc = s_check_count (ctx, f, count);
    if (rc)
        return rc;
    if (count && !items)
        return s_fail (ctx, SGMQ_E_BAD_VALUE, "%" PRIu32 " items but no array",
                       count);
    if (pk && msgpack_pack_array (pk, count))
        return s_pack_failed (ctx);
    for (uint32_t index = 0; index < count && rc == 0; index++) {
        s_set_index (ctx, index);
        rc = s_put_map (ctx, pk, f->sub, items + index * f->item_size);
    }
    if (rc == 0)
        s_set_index (ctx, -1);
    return rc;
}

//  A body: the decoded struct, or (DELIVER) bytes the store already holds,
//  checked as the receiver will check them and then copied as they are.
static int
s_put_body (s_ctx_t *ctx, msgpack_packer *pk, const s_field_t *f,
            const unsigned char *base)
{
    const sgmq_body_t *body = (const sgmq_body_t *) (base + f->off);
    if (body->kind < 1 || body->kind >= SGMQ_KIND_COUNT_)
        return s_fail (ctx, SGMQ_E_UNKNOWN_KIND, "%d is not a valid kind",
                       (int) body->kind);
    const uint8_t *bytes = f->bytes ? s_load_ptr (base + f->aux) : NULL;
    if (!bytes)
        return s_put_map (ctx, pk, &s_kind_tables [body->kind],
                          (const unsigned char *) body);

    size_t size = s_load_size (base + f->aux2);
    int rc = 0;
#ifdef NDEBUG
    if (!ctx->trust_bodies)
#endif
    {
        s_ctx_t check;
        sgmq_body_t scratch;
        s_ctx_init (&check, ctx->error, NULL, "body");
        rc = s_decode_body_bytes (&check, body->kind, bytes, size, &scratch);
    }
    if (rc == 0 && pk && pk->callback (pk->data, (const char *) bytes, size))
        rc = s_pack_failed (ctx);
    return rc;
}

static int
s_put_value (s_ctx_t *ctx, msgpack_packer *pk, const s_field_t *f,
             const unsigned char *base)
{
    int rc = 0;
    switch (f->type) {
        case S_F_UINT: {
            uint64_t value = s_load_uint (base + f->off, f->width);
            if ((rc = s_check_uint (ctx, f, value)))
                return rc;
            if (pk && msgpack_pack_uint64 (pk, value))
                return s_pack_failed (ctx);
            return 0;
        }
        case S_F_BOOL: {
            bool value = s_load_bool (base + f->off);
            if (pk && (value ? msgpack_pack_true (pk) : msgpack_pack_false (pk)))
                return s_pack_failed (ctx);
            return 0;
        }
        case S_F_STR:
            return s_put_str (ctx, pk, s_load_ptr (base + f->off), &f->str);
        case S_F_ENUM:
            return s_put_enum (ctx, pk, f->en, s_load_int (base + f->off));
        case S_F_LIST:
            return s_put_list (ctx, pk, f, base);
        case S_F_BIN: {
            const void *data = f->fixed ? base + f->off : s_load_ptr (base + f->off);
            size_t size = f->fixed ? (size_t) f->max : s_load_size (base + f->aux);
            if ((rc = s_check_bin_size (ctx, f, size)))
                return rc;
            if (size && !data)
                return s_fail (ctx, SGMQ_E_BAD_VALUE, "%zu bytes but no data",
                               size);
            if (pk && (msgpack_pack_bin (pk, size)
                       || msgpack_pack_bin_body (pk, data, size)))
                return s_pack_failed (ctx);
            return 0;
        }
        case S_F_ITEMS:
            return s_put_items (ctx, pk, f, base);
        case S_F_MAP:
            return s_put_map (ctx, pk, f->sub, base + f->off);
        case S_F_BODY:
            return s_put_body (ctx, pk, f, base);
        default:
            return s_fail (ctx, SGMQ_E_INTERNAL, "field type %d", f->type);
    }
}

static int
s_put_map (s_ctx_t *ctx, msgpack_packer *pk, const s_table_t *table,
           const unsigned char *base)
{
    size_t present = 0;
    for (size_t index = 0; index < table->count; index++)
        present += s_present (&table->fields [index], base);
    if (pk && msgpack_pack_map (pk, present))
        return s_pack_failed (ctx);
    for (size_t index = 0; index < table->count; index++) {
        const s_field_t *f = &table->fields [index];
        s_push (ctx, f->key, f->key_len);
        int rc = 0;
        if (!s_present (f, base)) {
            if (f->required)
                return s_fail (ctx, SGMQ_E_MISSING_FIELD,
                               "required field is missing");
        }
        else {
            if (pk && s_pack_str (pk, f->key, f->key_len))
                return s_pack_failed (ctx);
            if ((rc = s_put_value (ctx, pk, f, base)))
                return rc;
        }
        s_pop (ctx);
    }
    return 0;
}

static int
s_put_cmd (s_ctx_t *ctx, msgpack_packer *pk, const sgmq_cmd_t *cmd)
{
    ctx->root = "command";
    ctx->id = cmd->id;
    const char *name = s_enum_name (&s_cmd_enum, cmd->cmd);
    if (!name)
        return s_fail (ctx, SGMQ_E_UNKNOWN_COMMAND, "%d is not a command",
                       (int) cmd->cmd);
    if (cmd->cmd == SGMQ_CMD_DELIVER && cmd->id != 0) {
        ctx->root = "id";
        return s_fail (ctx, SGMQ_E_BAD_VALUE, "DELIVER carries id 0");
    }
    if (pk && (msgpack_pack_array (pk, S_CMD_ELEMENTS)
               || s_pack_str (pk, name, strlen (name))
               || msgpack_pack_uint64 (pk, cmd->id)))
        return s_pack_failed (ctx);
    ctx->root = "body";
    return s_put_map (ctx, pk, &s_cmd_tables [cmd->cmd],
                      (const unsigned char *) cmd);
}

//  --------------------------------------------------------------------------
//  Decoded frames

typedef struct {
    sgmq_cmd_t cmd;
    int32_t error;              //  index in `errors`, or -1: decoded
} s_slot_t;

struct _sgmq_proto_frame_t {
    s_arena_t arena;
    size_t count;               //  commands in the last frame
    s_slot_t *slots;
    size_t slots_max;
    sgmq_proto_error_t *errors;
    size_t errors_used;
    size_t errors_max;
    //  Offsets of the frame array's elements, from the structural pass.
    uint32_t offsets [S_FRAME_PREAMBLE + SGMQ_PROTO_MAX_COMMANDS];
};

static void
s_error_clear (sgmq_proto_error_t *error)
{
    error->code = SGMQ_OK;
    error->index = -1;
    error->id = 0;
    error->field [0] = 0;
    error->reason [0] = 0;
}

sgmq_proto_frame_t *
sgmq_proto_frame_new (void)
{
    return calloc (1, sizeof (sgmq_proto_frame_t));
}

void
sgmq_proto_frame_destroy (sgmq_proto_frame_t **self_p)
{
    assert (self_p);
    sgmq_proto_frame_t *self = *self_p;
    if (!self)
        return;
    s_arena_free (&self->arena);
    free (self->slots);
    free (self->errors);
    free (self);
    *self_p = NULL;
}

static void
s_frame_reset (sgmq_proto_frame_t *self)
{
    s_arena_reset (&self->arena);
    self->count = 0;
    self->errors_used = 0;
}

//  Keep a command's error; false if there is no memory for it.
static bool
s_frame_keep_error (sgmq_proto_frame_t *self, const sgmq_proto_error_t *error)
{
    if (self->errors_used == self->errors_max) {
        size_t wanted = self->errors_max ? self->errors_max * 2 : 4;
        sgmq_proto_error_t *bigger = realloc (self->errors,
                                              wanted * sizeof (*bigger));
        if (!bigger)
            return false;
        self->errors = bigger;
        self->errors_max = wanted;
    }
    self->errors [self->errors_used++] = *error;
    return true;
}

static int __attribute__ ((format (printf, 4, 5)))
s_frame_fail (sgmq_proto_error_t *error, int code, const char *field,
              const char *format, ...)
{
    error->code = code;
    error->index = -1;
    error->id = 0;
    snprintf (error->field, sizeof (error->field), "%s", field);
    int prefix = snprintf (error->reason, sizeof (error->reason), "%s: ", field);
    if (prefix < 0 || (size_t) prefix >= sizeof (error->reason))
        prefix = 0;
    va_list args;
    va_start (args, format);
    vsnprintf (error->reason + prefix, sizeof (error->reason) - (size_t) prefix,
               format, args);
    va_end (args);
    return -2;
}

static bool
s_is_array_head (uint8_t byte)
{
    return (byte & S_MP_FIX_MASK) == S_MP_FIXARRAY
        || byte == S_MP_ARRAY16 || byte == S_MP_ARRAY32;
}

int
sgmq_proto_decode (sgmq_proto_frame_t *self, const uint8_t *data, size_t size,
                   sgmq_proto_error_t *error)
{
    assert (self);
    assert (data || size == 0);
    sgmq_proto_error_t ignored;
    if (!error)
        error = &ignored;
    s_error_clear (error);
    s_frame_reset (self);

    if (size > SGMQ_PROTO_MAX_FRAME)
        return s_frame_fail (error, SGMQ_E_TOO_LARGE, "frame",
                             "%zu bytes, limit %d", size, SGMQ_PROTO_MAX_FRAME);
    if (size == 0)
        return s_frame_fail (error, SGMQ_E_TRUNCATED, "frame", "no bytes");
    if (data [0] == S_MP_NEVER)
        return s_frame_fail (error, SGMQ_E_MALFORMED, "frame",
                             "not msgpack (first byte 0x%02x)", data [0]);
    if (!s_is_array_head (data [0]))
        return s_frame_fail (error, SGMQ_E_MALFORMED, "frame",
                             "not a msgpack array (first byte 0x%02x)", data [0]);

    //  Bounds and depth of everything first, so that every later error can
    //  be pinned on one command and the field decoder cannot overrun.
    s_reader_t r = { data, data + size };
    size_t elements = 0;
    s_scan_error_t scan;
    if (s_scan (&r, 1, self->offsets, S_COUNT_OF (self->offsets), &elements,
                &scan))
        return s_frame_fail (error, scan.code, "frame", "%s at byte %zu",
                             scan.code == SGMQ_E_TOO_DEEP
                             ? "nested too deep"
                             : scan.code == SGMQ_E_TRUNCATED
                             ? "truncated" : "not msgpack", scan.offset);
    size_t end = (size_t) (r.p - data);
    if (end < size)
        return s_frame_fail (error, SGMQ_E_TRAILING, "frame",
                             "%zu bytes after the frame array", size - end);

    s_head_t h = { .type = S_T_NIL };
    if (elements > 0) {
        r.p = data + self->offsets [0];
        if (s_read_head (&r, &h))
            h.type = S_T_NIL;
    }
    if (elements == 0 || h.type != S_T_STR
        || h.u != strlen (SGMQ_PROTO_SIGNATURE)
        || memcmp (h.data, SGMQ_PROTO_SIGNATURE, (size_t) h.u) != 0)
        return s_frame_fail (error, SGMQ_E_SIGNATURE, "signature",
                             "the frame does not start with \"%s\"",
                             SGMQ_PROTO_SIGNATURE);
    if (elements < S_FRAME_PREAMBLE)
        return s_frame_fail (error, SGMQ_E_MALFORMED, "version",
                             "the frame has no version");
    r.p = data + self->offsets [1];
    if (s_read_head (&r, &h))
        h.type = S_T_NIL;
    if (h.type != S_T_UINT)
        return s_frame_fail (error, SGMQ_E_MALFORMED, "version",
                             "expected an unsigned integer, got %s",
                             s_type_name (h.type));
    if (h.u != SGMQ_PROTO_VERSION)
        return s_frame_fail (error, SGMQ_E_BAD_VERSION, "version",
                             "version %" PRIu64 " is not supported (this "
                             "codec speaks %d)", h.u, SGMQ_PROTO_VERSION);
    if (elements == S_FRAME_PREAMBLE)
        return s_frame_fail (error, SGMQ_E_MALFORMED, "frame",
                             "the frame has no command");
    size_t count = elements - S_FRAME_PREAMBLE;
    if (count > SGMQ_PROTO_MAX_COMMANDS)
        return s_frame_fail (error, SGMQ_E_TOO_MANY, "frame",
                             "%zu commands, limit %d", count,
                             SGMQ_PROTO_MAX_COMMANDS);

    if (count > self->slots_max) {
        s_slot_t *bigger = realloc (self->slots, count * sizeof (*bigger));
        if (!bigger)
            return s_frame_fail (error, SGMQ_E_INTERNAL, "frame",
                                 "out of memory for %zu commands", count);
        self->slots = bigger;
        self->slots_max = count;
    }
    for (size_t index = 0; index < count; index++) {
        size_t start = self->offsets [S_FRAME_PREAMBLE + index];
        size_t stop = index + 1 < count
                    ? self->offsets [S_FRAME_PREAMBLE + index + 1] : end;
        s_reader_t command = { data + start, data + stop };
        sgmq_proto_error_t failure;
        s_ctx_t ctx;
        s_ctx_init (&ctx, &failure, &self->arena, "command");
        s_mark_t mark = s_arena_mark (&self->arena);
        s_slot_t *slot = &self->slots [index];
        slot->error = -1;
        if (s_decode_cmd (&ctx, &command, &slot->cmd) == 0)
            continue;
        //  Give back what the failed command took: a hostile frame cannot
        //  pile up partial copies.
        s_arena_rewind (&self->arena, mark);
        failure.index = (int) index;
        failure.id = ctx.id;
        if (!s_frame_keep_error (self, &failure))
            return s_frame_fail (error, SGMQ_E_INTERNAL, "frame",
                                 "out of memory at command %zu", index);
        slot->error = (int32_t) (self->errors_used - 1);
    }
    self->count = count;
    return 0;
}

size_t
sgmq_proto_count (sgmq_proto_frame_t *self)
{
    assert (self);
    return self->count;
}

const sgmq_cmd_t *
sgmq_proto_cmd (sgmq_proto_frame_t *self, size_t index,
                sgmq_proto_error_t *error)
{
    assert (self);
    if (index >= self->count) {
        if (error) {
            s_frame_fail (error, SGMQ_E_INTERNAL, "frame",
                          "no command %zu in this frame", index);
            error->index = index > INT32_MAX ? -1 : (int) index;
        }
        return NULL;
    }
    const s_slot_t *slot = &self->slots [index];
    if (slot->error >= 0) {
        if (error)
            *error = self->errors [slot->error];
        return NULL;
    }
    if (error)
        s_error_clear (error);
    return &slot->cmd;
}

int
sgmq_proto_decode_body (sgmq_proto_frame_t *self, sgmq_kind_t kind,
                        const uint8_t *data, size_t size, sgmq_body_t *body,
                        sgmq_proto_error_t *error)
{
    assert (self);
    assert (body);
    assert (data || size == 0);
    sgmq_proto_error_t ignored;
    if (!error)
        error = &ignored;
    s_error_clear (error);
    s_frame_reset (self);
    s_ctx_t ctx;
    s_ctx_init (&ctx, error, &self->arena, "body");
    if (s_decode_body_bytes (&ctx, kind, data, size, body)) {
        memset (body, 0, sizeof (*body));
        s_arena_reset (&self->arena);
        return -2;
    }
    return 0;
}

int
sgmq_proto_check_body (const sgmq_body_t *body, sgmq_proto_error_t *error)
{
    assert (body);
    sgmq_proto_error_t ignored;
    if (!error)
        error = &ignored;
    s_error_clear (error);
    s_ctx_t ctx;
    s_ctx_init (&ctx, error, NULL, "body");
    s_push (&ctx, s_whole_body.key, s_whole_body.key_len);
    return s_put_body (&ctx, NULL, &s_whole_body, (const unsigned char *) body)
           ? -2 : 0;
}

uint8_t *
sgmq_proto_encode_body (const sgmq_body_t *body, size_t *size_p,
                        sgmq_proto_error_t *error)
{
    assert (body);
    assert (size_p);
    sgmq_proto_error_t ignored;
    if (!error)
        error = &ignored;
    s_error_clear (error);
    *size_p = 0;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    s_ctx_t ctx;
    s_ctx_init (&ctx, error, NULL, "body");
    s_push (&ctx, s_whole_body.key, s_whole_body.key_len);
    if (s_put_body (&ctx, &pk, &s_whole_body, (const unsigned char *) body)) {
        msgpack_sbuffer_destroy (&buffer);
        return NULL;
    }
    *size_p = buffer.size;
    return (uint8_t *) msgpack_sbuffer_release (&buffer);
}

size_t
sgmq_proto_frame_memory (sgmq_proto_frame_t *self)
{
    assert (self);
    return sizeof *self + self->arena.total + self->slots_max * sizeof *self->slots
         + self->errors_max * sizeof *self->errors;
}

size_t
sgmq_proto_frame_arena_size (sgmq_proto_frame_t *self)
{
    assert (self);
    return self->arena.total;
}

size_t
sgmq_proto_arena_bound (size_t size)
{
    return S_ARENA_FACTOR * size + 2 * (size_t) S_ARENA_BLOCK;
}

//  --------------------------------------------------------------------------
//  Writer. The buffer starts with S_HEAD_RESERVE bytes kept for the frame
//  array header, whose size depends on the final command count; _data
//  writes the shortest header right-aligned in that room.

struct _sgmq_proto_writer_t {
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    size_t count;
    size_t last;                //  offset of the last command added
    bool trust_bodies;
};

static int
s_writer_start (sgmq_proto_writer_t *self)
{
    static const char reserve [S_HEAD_RESERVE] = { 0 };
    self->buffer.size = 0;
    self->count = 0;
    if (msgpack_sbuffer_write (&self->buffer, reserve, sizeof (reserve))
        || s_pack_str (&self->pk, SGMQ_PROTO_SIGNATURE,
                       strlen (SGMQ_PROTO_SIGNATURE))
        || msgpack_pack_uint64 (&self->pk, SGMQ_PROTO_VERSION))
        return -1;
    return 0;
}

static size_t
s_head_size (size_t commands)
{
    return commands + S_FRAME_PREAMBLE <= S_MP_FIX_COUNT ? 1 : S_HEAD_RESERVE;
}

sgmq_proto_writer_t *
sgmq_proto_writer_new (void)
{
    sgmq_proto_writer_t *self = calloc (1, sizeof (sgmq_proto_writer_t));
    if (!self)
        return NULL;
    msgpack_sbuffer_init (&self->buffer);
    msgpack_packer_init (&self->pk, &self->buffer, msgpack_sbuffer_write);
    if (s_writer_start (self)) {
        sgmq_proto_writer_destroy (&self);
        return NULL;
    }
    return self;
}

void
sgmq_proto_writer_destroy (sgmq_proto_writer_t **self_p)
{
    assert (self_p);
    sgmq_proto_writer_t *self = *self_p;
    if (!self)
        return;
    msgpack_sbuffer_destroy (&self->buffer);
    free (self);
    *self_p = NULL;
}

void
sgmq_proto_writer_reset (sgmq_proto_writer_t *self)
{
    assert (self);
    //  Cannot fail: the buffer already holds more than the preamble.
    int rc = s_writer_start (self);
    assert (rc == 0);
    (void) rc;
}

int
sgmq_proto_write (sgmq_proto_writer_t *self, const sgmq_cmd_t *cmd,
                  sgmq_proto_error_t *error)
{
    assert (self);
    assert (cmd);
    sgmq_proto_error_t ignored;
    if (!error)
        error = &ignored;
    s_error_clear (error);
    s_ctx_t ctx;
    s_ctx_init (&ctx, error, NULL, "command");
    ctx.trust_bodies = self->trust_bodies;

    bool full = self->count >= SGMQ_PROTO_MAX_COMMANDS;
    size_t before = self->buffer.size;
    int rc = s_put_cmd (&ctx, full ? NULL : &self->pk, cmd);
    if (rc) {
        self->buffer.size = before;
        error->index = (int) self->count;
        error->id = cmd->id;
        return -2;
    }
    if (full)
        return -1;
    size_t frame = self->buffer.size - S_HEAD_RESERVE
                 + s_head_size (self->count + 1);
    if (frame > SGMQ_PROTO_MAX_FRAME) {
        size_t alone = self->buffer.size - before;
        self->buffer.size = before;
        if (self->count == 0) {
            //  It would not fit in any frame: sending and retrying cannot help.
            ctx.root = "command";       //  the whole command, not a field
            ctx.steps = 0;
            s_fail (&ctx, SGMQ_E_TOO_LARGE,
                    "command of %zu bytes does not fit in a frame (limit %d)",
                    alone, SGMQ_PROTO_MAX_FRAME);
            error->index = 0;
            error->id = cmd->id;
            return -2;
        }
        return -1;
    }
    self->count++;
    self->last = before;
    return 0;
}

const uint8_t *
sgmq_proto_writer_last (sgmq_proto_writer_t *self, size_t *size)
{
    assert (self);
    assert (size);
    *size = self->count ? self->buffer.size - self->last : 0;
    return self->count ? (const uint8_t *) self->buffer.data + self->last : NULL;
}

int
sgmq_proto_write_encoded (sgmq_proto_writer_t *self, const uint8_t *cmd, size_t size)
{
    assert (self);
    assert (cmd && size);
    if (self->count >= SGMQ_PROTO_MAX_COMMANDS
    ||  self->buffer.size + size - S_HEAD_RESERVE + s_head_size (self->count + 1)
        > SGMQ_PROTO_MAX_FRAME)
        return -1;
    size_t before = self->buffer.size;
    if (msgpack_sbuffer_write (&self->buffer, (const char *) cmd, size))
        return -2;
    self->count++;
    self->last = before;
    return 0;
}

void
sgmq_proto_writer_trust_bodies (sgmq_proto_writer_t *self)
{
    assert (self);
    self->trust_bodies = true;
}

size_t
sgmq_proto_writer_count (sgmq_proto_writer_t *self)
{
    assert (self);
    return self->count;
}

const uint8_t *
sgmq_proto_writer_data (sgmq_proto_writer_t *self)
{
    assert (self);
    uint8_t *buffer = (uint8_t *) self->buffer.data;
    size_t elements = self->count + S_FRAME_PREAMBLE;
    if (s_head_size (self->count) == 1) {
        buffer [S_HEAD_RESERVE - 1] = (uint8_t) (S_MP_FIXARRAY | elements);
        return buffer + S_HEAD_RESERVE - 1;
    }
    buffer [0] = S_MP_ARRAY16;
    buffer [1] = (uint8_t) (elements >> S_BITS_PER_BYTE);
    buffer [2] = (uint8_t) (elements & S_BYTE_MASK);
    return buffer;
}

size_t
sgmq_proto_writer_size (sgmq_proto_writer_t *self)
{
    assert (self);
    return self->buffer.size - S_HEAD_RESERVE + s_head_size (self->count);
}
