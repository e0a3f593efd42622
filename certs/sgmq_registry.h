/*  =========================================================================
    sgmq_registry - who each admitted key is: the broker's table of
    principals, loaded from a directory of public certificates

    The CURVE key is the principal. A client never tells the broker who it
    is; the broker looks its authenticated key up here and takes the name,
    agency, roles and groups from the certificate an operator admitted.

    Loading is per file: a cert with missing or invalid metadata (unknown
    role, unknown group, bad key, over-long name...) is rejected with a
    message naming the file and the problem, and the others still load.
    A registry is immutable once loaded; the broker loads a new one when
    the directory changes (see sgmq_registry_signature) and swaps.

    Rotation: two certs may carry the same name only when their agency,
    roles and groups are identical (an old and a new key of one principal
    during a key change); otherwise the later file (in name order) is
    rejected.
    =========================================================================
*/
#ifndef SGMQ_REGISTRY_H_INCLUDED
#define SGMQ_REGISTRY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Roles, as bits. Their names in certs: "publisher", "member",
//  "auditor", "admin" (comma-separated in the `roles` property).
#define SGMQ_ROLE_PUBLISHER 0x1u
#define SGMQ_ROLE_MEMBER    0x2u
#define SGMQ_ROLE_AUDITOR   0x4u
#define SGMQ_ROLE_ADMIN     0x8u
#define SGMQ_ROLE_ALL       0xfu

//  Names and agencies are free text of at most this many bytes (UTF-8,
//  no control characters); group ids are [a-z0-9-], at most this long.
#define SGMQ_REGISTRY_MAX_NAME    64
#define SGMQ_REGISTRY_MAX_GROUPS  16
//  A certs directory with more files than this is not a partnership's.
#define SGMQ_REGISTRY_MAX_CERTS   10000
#define SGMQ_REGISTRY_SIG_SIZE    32
//  The name on messages the broker publishes itself (reminders): no
//  principal may have it, or it would pass for the broker.
#define SGMQ_REGISTRY_BROKER_NAME "sgmq-broker"

typedef struct _sgmq_registry_t sgmq_registry_t;
typedef struct _sgmq_principal_t sgmq_principal_t;

//  Load every public cert in `dir` (files whose names do not start with
//  "." or end in "_secret"). `groups` lists the deployment's group ids
//  (NULL: accept any well-formed id). Returns the registry (possibly
//  empty, with problems), or NULL with the reason in `error` (512 bytes)
//  if the directory itself cannot be read.
sgmq_registry_t *
    sgmq_registry_load (const char *dir, const char *const *groups,
                        size_t group_count, char *error);

//  A registry with no principals: what a certs directory that is gone
//  admits. NULL if out of memory.
sgmq_registry_t *
    sgmq_registry_new_empty (void);

//  A copy holding only the principals whose cert file is still in the
//  certs directory open as `dir_fd`, unchanged since it was loaded (same
//  inode, size and time): what can be known when no file can be opened
//  (every descriptor taken). Removed or changed certs are out (fail
//  closed) until a whole load reads them; nothing is added. NULL if out
//  of memory.
sgmq_registry_t *
    sgmq_registry_keep (const sgmq_registry_t *self, int dir_fd);

void
    sgmq_registry_destroy (sgmq_registry_t **self_p);

//  Principals loaded, and the i-th in file name order.
size_t
    sgmq_registry_size (const sgmq_registry_t *self);
const sgmq_principal_t *
    sgmq_registry_at (const sgmq_registry_t *self, size_t index);

//  Files rejected, each as "path: problem".
size_t
    sgmq_registry_problem_count (const sgmq_registry_t *self);
const char *
    sgmq_registry_problem (const sgmq_registry_t *self, size_t index);

//  The principal with this public key (Z85 text), or NULL. Borrowed:
//  valid while the registry lives.
const sgmq_principal_t *
    sgmq_registry_lookup (const sgmq_registry_t *self, const char *key_txt);

//  Names of the members of `group`: principals with the member role in
//  that group, each name once, sorted. Sets *count; the array is borrowed.
const char *const *
    sgmq_registry_members (const sgmq_registry_t *self, const char *group,
                           size_t *count);

//  A principal by name (any of its keys), or NULL.
const sgmq_principal_t *
    sgmq_registry_find (const sgmq_registry_t *self, const char *name);

//  Principal accessors. Strings are borrowed from the registry.
const char *sgmq_principal_name   (const sgmq_principal_t *self);
const char *sgmq_principal_agency (const sgmq_principal_t *self);
const char *sgmq_principal_key    (const sgmq_principal_t *self);
const char *sgmq_principal_file   (const sgmq_principal_t *self);
uint32_t    sgmq_principal_roles  (const sgmq_principal_t *self);
bool        sgmq_principal_has_role (const sgmq_principal_t *self, uint32_t role);
size_t      sgmq_principal_group_count (const sgmq_principal_t *self);
const char *sgmq_principal_group  (const sgmq_principal_t *self, size_t index);
const char *const *sgmq_principal_groups (const sgmq_principal_t *self);
bool        sgmq_principal_in_group (const sgmq_principal_t *self,
                                     const char *group);

//  Role names <-> bits. _roles_parse takes "publisher,member"; returns 0
//  and sets *roles, or -1 naming the bad role in `error` (128 bytes).
const char *sgmq_registry_role_name (uint32_t role);
int         sgmq_registry_roles_parse (const char *text, uint32_t *roles,
                                       char *error);
//  Comma-separated role names of `roles` into buf (size >= 64).
char       *sgmq_registry_roles_format (uint32_t roles, char *buf, size_t size);

//  True if `text` is a valid principal name or agency: 1..64 bytes of
//  UTF-8 without control characters, storable in a cert.
bool        sgmq_registry_name_ok (const char *text);
//  True if `id` is a well-formed group id.
bool        sgmq_registry_group_ok (const char *id);

//  A digest of the directory's state that changes whenever a cert is
//  added, removed, replaced or rewritten, even within the same second and
//  with the same size (files changed in the last two seconds are hashed
//  by content, since timestamps alone cannot tell such edits apart).
//  0, or -1 if the directory cannot be read.
int
    sgmq_registry_signature (const char *dir, uint8_t *signature);

#ifdef __cplusplus
}
#endif

#endif
