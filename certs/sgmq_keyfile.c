/*  =========================================================================
    sgmq_keyfile - secret files: storage key, signing key, private writes

    See the header for the rules. Hex (not Z85) keeps the key files
    readable by any tool an operator has at hand (xxd, od).
    =========================================================================
*/
#include "sgmq_keyfile.h"
#include "sgmq_zpl.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  Any group or other permission bit makes a secret file unacceptable.
#define S_LOOSE_BITS 077
//  A key file is a few hundred bytes.
#define S_KEYFILE_MAX 4096

static void
__attribute__ ((format (printf, 3, 4)))
s_error (char *error, const char *path, const char *format, ...)
{
    if (!error)
        return;
    int used = snprintf (error, SGMQ_KEYFILE_ERROR_SIZE, "%s: ", path);
    if (used < 0 || used >= SGMQ_KEYFILE_ERROR_SIZE)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (error + used, SGMQ_KEYFILE_ERROR_SIZE - (size_t) used, format, args);
    va_end (args);
}

int
sgmq_keyfile_check_private (const char *path, char *error)
{
    struct stat st;
    if (stat (path, &st) != 0) {
        s_error (error, path, "cannot open: %s", strerror (errno));
        return -1;
    }
    if (!S_ISREG (st.st_mode)) {
        s_error (error, path, "not a regular file");
        return -1;
    }
    if (st.st_mode & S_LOOSE_BITS) {
        s_error (error, path, "readable by group or others (mode %04o); "
                 "a secret file must be mode 0600 (chmod 600 it)",
                 (unsigned) (st.st_mode & 07777));
        return -1;
    }
    return 0;
}

static int
s_fsync_parent (const char *path)
{
    char *copy = strdup (path);
    if (!copy)
        return -1;
    int fd = open (dirname (copy), O_RDONLY | O_DIRECTORY);
    free (copy);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    close (fd);
    return rc;
}

int
sgmq_keyfile_write (const char *path, const void *data, size_t size,
                    int mode, bool exclusive, char *error)
{
    //  Temp file, fsync, rename: a crash leaves the old file or the new
    //  one, never a torn key.
    if (exclusive && access (path, F_OK) == 0) {
        s_error (error, path, "already exists; not overwriting it");
        return -1;
    }
    size_t tmp_size = strlen (path) + 16;
    char *tmp = malloc (tmp_size);
    if (!tmp) {
        s_error (error, path, "out of memory");
        return -1;
    }
    snprintf (tmp, tmp_size, "%s.tmp-XXXXXX", path);
    int fd = mkstemp (tmp);
    if (fd < 0) {
        s_error (error, path, "cannot create: %s", strerror (errno));
        goto out_free_tmp;
    }
    if (fchmod (fd, (mode_t) mode) != 0)
        goto out_unlink;
    const char *cursor = data;
    size_t left = size;
    while (left) {
        ssize_t written = write (fd, cursor, left);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            goto out_unlink;
        cursor += written;
        left -= (size_t) written;
    }
    if (fsync (fd) != 0)
        goto out_unlink;
    if (close (fd) != 0) {
        fd = -1;
        goto out_unlink;
    }
    fd = -1;
    //  link() fails if the target exists: exclusive even against a race.
    if (exclusive ? link (tmp, path) != 0 : rename (tmp, path) != 0)
        goto out_unlink;
    if (exclusive)
        unlink (tmp);
    s_fsync_parent (path);
    free (tmp);
    return 0;

out_unlink:
    s_error (error, path, "cannot write: %s", strerror (errno));
    if (fd >= 0)
        close (fd);
    unlink (tmp);
out_free_tmp:
    free (tmp);
    return -1;
}

//  Load a private ZPL key file; NULL with the reason on failure.
static sgmq_zpl_t *
s_load_private (const char *path, char *error)
{
    if (sgmq_keyfile_check_private (path, error))
        return NULL;
    char zpl_error [SGMQ_ZPL_ERROR_SIZE];
    sgmq_zpl_t *root = sgmq_zpl_load (path, zpl_error);
    if (!root && error)
        snprintf (error, SGMQ_KEYFILE_ERROR_SIZE, "%s", zpl_error);
    return root;
}

static int
s_hex_field (sgmq_zpl_t *root, const char *path, const char *field,
             uint8_t *out, size_t size, char *error)
{
    const char *hex = sgmq_zpl_get (root, field, NULL);
    size_t bin_len = 0;
    if (!hex) {
        s_error (error, path, "no %s", field);
        return -1;
    }
    if (strlen (hex) != size * 2
    ||  sodium_hex2bin (out, size, hex, strlen (hex), NULL, &bin_len, NULL) != 0
    ||  bin_len != size) {
        s_error (error, path, "%s is not %zu hex digits", field, size * 2);
        return -1;
    }
    return 0;
}

int
sgmq_keyfile_read_storage (const char *path, uint32_t *key_id, uint8_t *key,
                           char *error)
{
    sgmq_zpl_t *root = s_load_private (path, error);
    if (!root)
        return -1;
    int rc = s_hex_field (root, path, "storage-key/key", key,
                          SGMQ_KEYFILE_STORAGE_KEY_SIZE, error);
    const char *id = sgmq_zpl_get (root, "storage-key/id", NULL);
    char *end = NULL;
    unsigned long value = id ? strtoul (id, &end, 10) : 0;
    if (rc == 0 && (!id || !*id || *end || value == 0 || value > UINT32_MAX)) {
        s_error (error, path, "storage-key/id must be a number from 1 to %u",
                 UINT32_MAX);
        rc = -1;
    }
    if (rc == 0)
        *key_id = (uint32_t) value;
    else
        sodium_memzero (key, SGMQ_KEYFILE_STORAGE_KEY_SIZE);
    sgmq_zpl_destroy (&root);
    return rc;
}

int
sgmq_keyfile_new_storage (const char *path, uint32_t key_id, char *error)
{
    uint8_t key [SGMQ_KEYFILE_STORAGE_KEY_SIZE];
    char hex [SGMQ_KEYFILE_STORAGE_KEY_SIZE * 2 + 1];
    char text [S_KEYFILE_MAX];
    crypto_aead_xchacha20poly1305_ietf_keygen (key);
    sodium_bin2hex (hex, sizeof hex, key, sizeof key);
    int len = snprintf (text, sizeof text,
        "#   sgmq storage key: it encrypts message bodies at rest.\n"
        "#   Keep it secret (mode 0600) and back it up apart from the data:\n"
        "#   without it the stored messages cannot be read.\n"
        "storage-key\n"
        "    id = %u\n"
        "    key = \"%s\"\n", key_id, hex);
    int rc = sgmq_keyfile_write (path, text, (size_t) len, 0600, true, error);
    sodium_memzero (key, sizeof key);
    sodium_memzero (hex, sizeof hex);
    sodium_memzero (text, sizeof text);
    return rc;
}

int
sgmq_keyfile_read_signing (const char *path, uint8_t *secret_key, char *error)
{
    sgmq_zpl_t *root = s_load_private (path, error);
    if (!root)
        return -1;
    int rc = s_hex_field (root, path, "signing-key/secret", secret_key,
                          SGMQ_KEYFILE_SIGN_SK_SIZE, error);
    if (rc == 0) {
        //  The secret key holds its public half; check they agree, so a
        //  hand-edited file fails here and not at the first checkpoint.
        uint8_t seed [crypto_sign_SEEDBYTES], pk [crypto_sign_PUBLICKEYBYTES];
        uint8_t sk [crypto_sign_SECRETKEYBYTES];
        crypto_sign_ed25519_sk_to_seed (seed, secret_key);
        crypto_sign_seed_keypair (pk, sk, seed);
        if (sodium_memcmp (sk, secret_key, sizeof sk) != 0) {
            s_error (error, path, "signing-key/secret is not a valid Ed25519 key");
            rc = -1;
        }
        sodium_memzero (seed, sizeof seed);
        sodium_memzero (sk, sizeof sk);
    }
    if (rc)
        sodium_memzero (secret_key, SGMQ_KEYFILE_SIGN_SK_SIZE);
    sgmq_zpl_destroy (&root);
    return rc;
}

int
sgmq_keyfile_read_signing_public (const char *path, uint8_t *public_key,
                                  char *error)
{
    char zpl_error [SGMQ_ZPL_ERROR_SIZE];
    sgmq_zpl_t *root = sgmq_zpl_load (path, zpl_error);
    if (!root) {
        if (error)
            snprintf (error, SGMQ_KEYFILE_ERROR_SIZE, "%s", zpl_error);
        return -1;
    }
    int rc = s_hex_field (root, path, "signing-key/public", public_key,
                          SGMQ_KEYFILE_SIGN_PK_SIZE, error);
    sgmq_zpl_destroy (&root);
    return rc;
}

int
sgmq_keyfile_new_signing (const char *secret_path, const char *public_path,
                          char *error)
{
    uint8_t pk [crypto_sign_PUBLICKEYBYTES], sk [crypto_sign_SECRETKEYBYTES];
    char pk_hex [sizeof pk * 2 + 1], sk_hex [sizeof sk * 2 + 1];
    char text [S_KEYFILE_MAX];
    crypto_sign_keypair (pk, sk);
    sodium_bin2hex (pk_hex, sizeof pk_hex, pk, sizeof pk);
    sodium_bin2hex (sk_hex, sizeof sk_hex, sk, sizeof sk);
    int len = snprintf (text, sizeof text,
        "#   sgmq signing key: signs audit checkpoints of the message chain.\n"
        "#   Keep it secret (mode 0600). Its public half is in signing.pub.\n"
        "signing-key\n"
        "    secret = \"%s\"\n", sk_hex);
    int rc = sgmq_keyfile_write (secret_path, text, (size_t) len, 0600, true, error);
    sodium_memzero (sk, sizeof sk);
    sodium_memzero (sk_hex, sizeof sk_hex);
    sodium_memzero (text, sizeof text);
    if (rc == 0) {
        len = snprintf (text, sizeof text,
            "#   sgmq public signing key: give it to auditors, who check the\n"
            "#   broker's signed checkpoints with it (sgmq verify --signing-pub).\n"
            "signing-key\n"
            "    public = \"%s\"\n", pk_hex);
        rc = sgmq_keyfile_write (public_path, text, (size_t) len, 0644, true, error);
    }
    return rc;
}
