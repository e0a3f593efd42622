/*  =========================================================================
    sgmq_keyfile - secret files: the storage key, the signing key, and the
    rules every secret file follows

    A secret file is a regular file that only its owner can read or write
    (no group or other permission bits). We refuse to read one that is
    looser, because a key that others could read must be assumed leaked,
    and we create them 0600 atomically (temp file, fsync, rename), so a
    crash never leaves a half-written key. Key bytes are wiped from every
    buffer we own after use.

    Formats (ZPL, so that operators can read what they hold):
        storage-key                 signing-key
            id = 1                      secret = "<128 hex digits>"
            key = "<64 hex digits>"
    and signing.pub:
        signing-key
            public = "<64 hex digits>"
    =========================================================================
*/
#ifndef SGMQ_KEYFILE_H_INCLUDED
#define SGMQ_KEYFILE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SGMQ_KEYFILE_STORAGE_KEY_SIZE 32    //  XChaCha20-Poly1305
#define SGMQ_KEYFILE_SIGN_SK_SIZE     64    //  Ed25519, libsodium form
#define SGMQ_KEYFILE_SIGN_PK_SIZE     32
//  Room for "path: problem" messages.
#define SGMQ_KEYFILE_ERROR_SIZE       512

//  0 if `path` is a regular file with no group/other permission bits;
//  else -1 with "path: problem" in `error`.
int
    sgmq_keyfile_check_private (const char *path, char *error);

//  Write `size` bytes to `path` atomically (temp file in the same folder,
//  fsync, rename, fsync the folder) with mode `mode`. With `exclusive`,
//  refuse if `path` exists. 0, or -1 with the reason in `error`.
int
    sgmq_keyfile_write (const char *path, const void *data, size_t size,
                        int mode, bool exclusive, char *error);

//  Read a storage key file (must be private). 0, or -1 with the reason.
int
    sgmq_keyfile_read_storage (const char *path, uint32_t *key_id,
                               uint8_t *key, char *error);

//  Make a new random storage key file with id `key_id` (0600, exclusive).
int
    sgmq_keyfile_new_storage (const char *path, uint32_t key_id, char *error);

//  Read the Ed25519 signing key (must be private) / its public half.
int
    sgmq_keyfile_read_signing (const char *path, uint8_t *secret_key,
                               char *error);
int
    sgmq_keyfile_read_signing_public (const char *path, uint8_t *public_key,
                                      char *error);

//  Make a new signing key pair: `secret_path` 0600, `public_path` 0644,
//  both exclusive.
int
    sgmq_keyfile_new_signing (const char *secret_path, const char *public_path,
                              char *error);

#ifdef __cplusplus
}
#endif

#endif
