/*  =========================================================================
    sgmq_cert - CURVE certificates in CZMQ's zcert file format

    A certificate is a CURVE key pair (or just its public key) with
    metadata: for a principal, its name, agency, roles and groups. The
    public file PATH and the secret file PATH_secret are ZPL files that
    zcert_load reads unchanged; we write and read them ourselves so that
    the secret file is created 0600 from the first byte, a secret file
    that is readable by others is refused, and metadata is capped (CZMQ's
    zauth copies metadata into a fixed 512-byte buffer without a bounds
    check: we never make or accept a cert whose metadata could overflow
    it, even though our broker answers ZAP itself).

    Secret keys are wiped when the cert is destroyed.
    =========================================================================
*/
#ifndef SGMQ_CERT_H_INCLUDED
#define SGMQ_CERT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SGMQ_CERT_KEY_SIZE      32      //  Curve25519
#define SGMQ_CERT_KEY_TEXT      40      //  Z85 of a key
//  Metadata as zauth encodes it (1-byte name length, name, 4-byte value
//  length, value, per property) must stay under its 512-byte buffer with
//  room for the User-Id it adds: 400 bytes leaves that room.
#define SGMQ_CERT_MAX_META      400
#define SGMQ_CERT_MAX_PROPS     16
//  A cert file is a few hundred bytes; anything bigger is not one.
#define SGMQ_CERT_MAX_FILE      4096
#define SGMQ_CERT_ERROR_SIZE    512

typedef struct _sgmq_cert_t sgmq_cert_t;

//  A new certificate with a fresh key pair and no metadata. NULL if the
//  random source fails.
sgmq_cert_t *
    sgmq_cert_new (void);

//  Load the certificate file `path` exactly (no "_secret" guessing). If
//  it holds a secret key, the file must be private (mode 0600) and the
//  secret must match the public key. NULL with "path: problem" in `error`.
sgmq_cert_t *
    sgmq_cert_load (const char *path, char *error);

//  Destroy, wiping the secret key. NULL-safe; sets *self_p to NULL.
void
    sgmq_cert_destroy (sgmq_cert_t **self_p);

//  Set a metadata property (replacing one of that name). -1 with the
//  reason in `error` if the name or value cannot be stored in ZPL, or the
//  metadata would pass SGMQ_CERT_MAX_META / SGMQ_CERT_MAX_PROPS.
int
    sgmq_cert_set_meta (sgmq_cert_t *self, const char *name,
                        const char *value, char *error);

//  Metadata value, or NULL if absent. Borrowed: valid while the cert lives
//  and the property is not replaced.
const char *
    sgmq_cert_meta (const sgmq_cert_t *self, const char *name);

//  Property names in file order: index 0.._meta_count-1.
size_t
    sgmq_cert_meta_count (const sgmq_cert_t *self);
const char *
    sgmq_cert_meta_name (const sgmq_cert_t *self, size_t index);

//  Public key as 32 bytes and as Z85 text (40 chars, NUL-terminated).
const uint8_t *sgmq_cert_public_key (const sgmq_cert_t *self);
const char    *sgmq_cert_public_txt (const sgmq_cert_t *self);

//  Secret key as 32 bytes, or NULL for a public-only cert.
const uint8_t *sgmq_cert_secret_key (const sgmq_cert_t *self);

//  Write PATH (public, mode 0644) and, if the cert has a secret key,
//  PATH_secret (mode 0600). Refuses to overwrite either. 0 or -1 with the
//  reason in `error`.
int
    sgmq_cert_save (const sgmq_cert_t *self, const char *path, char *error);

//  Write only the public file PATH (mode 0644); with `exclusive`, refuse
//  if it exists, else replace it atomically.
int
    sgmq_cert_save_public (const sgmq_cert_t *self, const char *path,
                           bool exclusive, char *error);

//  Apply this cert's keys to a libzmq socket (a raw void * socket or a
//  zsock_t *) as a CURVE client of the server with public key
//  `server_key` (32 bytes). Needs the secret key. 0 or -1.
int
    sgmq_cert_apply_client (const sgmq_cert_t *self, void *socket,
                            const uint8_t *server_key);

//  Apply this cert's keys as a CURVE server. Needs the secret key.
int
    sgmq_cert_apply_server (const sgmq_cert_t *self, void *socket);

#ifdef __cplusplus
}
#endif

#endif
