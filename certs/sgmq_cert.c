/*  =========================================================================
    sgmq_cert - CURVE certificates in zcert's file format

    Files look exactly like zcert_save's, so CZMQ tools read them:

        #   ZeroMQ CURVE Public Certificate
        metadata
            name = "Executive member (police)"
            ...
        curve
            public-key = "<Z85>"
            secret-key = "<Z85>"        (in PATH_secret only)
    =========================================================================
*/
#include "sgmq_cert.h"
#include "sgmq_keyfile.h"
#include "sgmq_zpl.h"

#include <czmq.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

//  zauth's per-property overhead: 1 byte of name length, 4 of value length.
#define S_PROP_OVERHEAD 5
#define S_SECRET_SUFFIX "_secret"

typedef struct {
    char *name;
    char *value;
} s_prop_t;

struct _sgmq_cert_t {
    uint8_t public_key [SGMQ_CERT_KEY_SIZE];
    uint8_t secret_key [SGMQ_CERT_KEY_SIZE];
    bool has_secret;
    char public_txt [SGMQ_CERT_KEY_TEXT + 1];
    s_prop_t props [SGMQ_CERT_MAX_PROPS];
    size_t prop_count;
};

static void
__attribute__ ((format (printf, 3, 4)))
s_error (char *error, const char *path, const char *format, ...)
{
    if (!error)
        return;
    int used = path ? snprintf (error, SGMQ_CERT_ERROR_SIZE, "%s: ", path) : 0;
    if (used < 0 || used >= SGMQ_CERT_ERROR_SIZE)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (error + used, SGMQ_CERT_ERROR_SIZE - (size_t) used, format, args);
    va_end (args);
}

sgmq_cert_t *
sgmq_cert_new (void)
{
    sgmq_cert_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    char public_txt [SGMQ_CERT_KEY_TEXT + 1], secret_txt [SGMQ_CERT_KEY_TEXT + 1];
    if (zmq_curve_keypair (public_txt, secret_txt) != 0
    ||  !zmq_z85_decode (self->public_key, public_txt)
    ||  !zmq_z85_decode (self->secret_key, secret_txt)) {
        sodium_memzero (secret_txt, sizeof secret_txt);
        sgmq_cert_destroy (&self);
        return NULL;
    }
    sodium_memzero (secret_txt, sizeof secret_txt);
    memcpy (self->public_txt, public_txt, sizeof public_txt);
    self->has_secret = true;
    return self;
}

void
sgmq_cert_destroy (sgmq_cert_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_cert_t *self = *self_p;
    for (size_t i = 0; i < self->prop_count; i++) {
        free (self->props [i].name);
        free (self->props [i].value);
    }
    sodium_memzero (self, sizeof *self);
    free (self);
    *self_p = NULL;
}

static size_t
s_meta_size (const sgmq_cert_t *self)
{
    size_t size = 0;
    for (size_t i = 0; i < self->prop_count; i++)
        size += S_PROP_OVERHEAD + strlen (self->props [i].name)
              + strlen (self->props [i].value);
    return size;
}

int
sgmq_cert_set_meta (sgmq_cert_t *self, const char *name, const char *value,
                    char *error)
{
    if (!sgmq_zpl_name_ok (name) || strlen (name) > UINT8_MAX) {
        s_error (error, NULL, "metadata name '%s' is not a valid ZPL name", name);
        return -1;
    }
    if (!sgmq_zpl_value_ok (value)) {
        s_error (error, NULL, "metadata %s: value has a line break or both "
                 "kinds of quote", name);
        return -1;
    }
    size_t index = 0;
    while (index < self->prop_count && strcmp (self->props [index].name, name))
        index++;
    if (index == SGMQ_CERT_MAX_PROPS) {
        s_error (error, NULL, "more than %d metadata properties", SGMQ_CERT_MAX_PROPS);
        return -1;
    }
    size_t old_size = index < self->prop_count
                    ? strlen (self->props [index].value) : 0;
    size_t new_size = s_meta_size (self) - old_size + strlen (value)
                    + (index < self->prop_count ? 0 : S_PROP_OVERHEAD + strlen (name));
    if (new_size > SGMQ_CERT_MAX_META) {
        s_error (error, NULL, "metadata would take %zu bytes, over the limit "
                 "of %d", new_size, SGMQ_CERT_MAX_META);
        return -1;
    }
    char *value_copy = strdup (value);
    char *name_copy = index < self->prop_count ? NULL : strdup (name);
    if (!value_copy || (index == self->prop_count && !name_copy)) {
        free (value_copy);
        free (name_copy);
        s_error (error, NULL, "out of memory");
        return -1;
    }
    if (index == self->prop_count) {
        self->props [index].name = name_copy;
        self->prop_count++;
    }
    else
        free (self->props [index].value);
    self->props [index].value = value_copy;
    return 0;
}

const char *
sgmq_cert_meta (const sgmq_cert_t *self, const char *name)
{
    for (size_t i = 0; i < self->prop_count; i++)
        if (strcmp (self->props [i].name, name) == 0)
            return self->props [i].value;
    return NULL;
}

size_t
sgmq_cert_meta_count (const sgmq_cert_t *self)
{
    return self->prop_count;
}

const char *
sgmq_cert_meta_name (const sgmq_cert_t *self, size_t index)
{
    return index < self->prop_count ? self->props [index].name : NULL;
}

const uint8_t *
sgmq_cert_public_key (const sgmq_cert_t *self)
{
    return self->public_key;
}

const char *
sgmq_cert_public_txt (const sgmq_cert_t *self)
{
    return self->public_txt;
}

const uint8_t *
sgmq_cert_secret_key (const sgmq_cert_t *self)
{
    return self->has_secret ? self->secret_key : NULL;
}

//  Decode a Z85 key field; -1 with the reason if absent or malformed.
static int
s_read_key (sgmq_zpl_t *root, const char *path, const char *field,
            uint8_t *key, char *error)
{
    const char *text = sgmq_zpl_get (root, field, NULL);
    if (!text) {
        s_error (error, path, "no %s", field);
        return -1;
    }
    if (strlen (text) != SGMQ_CERT_KEY_TEXT || !zmq_z85_decode (key, text)) {
        s_error (error, path, "%s is not a %d-character Z85 key", field,
                 SGMQ_CERT_KEY_TEXT);
        return -1;
    }
    return 0;
}

sgmq_cert_t *
sgmq_cert_load (const char *path, char *error)
{
    struct stat st;
    if (stat (path, &st) != 0) {
        s_error (error, path, "cannot open: %s", strerror (errno));
        return NULL;
    }
    if (!S_ISREG (st.st_mode) || st.st_size > SGMQ_CERT_MAX_FILE) {
        s_error (error, path, "not a certificate (not a regular file of at "
                 "most %d bytes)", SGMQ_CERT_MAX_FILE);
        return NULL;
    }
    char zpl_error [SGMQ_ZPL_ERROR_SIZE];
    sgmq_zpl_t *root = sgmq_zpl_load (path, zpl_error);
    if (!root) {
        s_error (error, NULL, "%s", zpl_error);
        return NULL;
    }
    sgmq_cert_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_error (error, path, "out of memory");
        goto out_free_root;
    }
    if (s_read_key (root, path, "curve/public-key", self->public_key, error))
        goto out_free_cert;
    memcpy (self->public_txt, sgmq_zpl_get (root, "curve/public-key", ""),
            SGMQ_CERT_KEY_TEXT);
    if (sgmq_zpl_locate (root, "curve/secret-key")) {
        if (sgmq_keyfile_check_private (path, error))
            goto out_free_cert;
        if (s_read_key (root, path, "curve/secret-key", self->secret_key, error))
            goto out_free_cert;
        uint8_t derived [SGMQ_CERT_KEY_SIZE];
        crypto_scalarmult_base (derived, self->secret_key);
        bool match = sodium_memcmp (derived, self->public_key, sizeof derived) == 0;
        if (!match) {
            s_error (error, path, "secret key does not belong to the public key");
            goto out_free_cert;
        }
        self->has_secret = true;
    }
    sgmq_zpl_t *meta = sgmq_zpl_locate (root, "metadata");
    for (sgmq_zpl_t *prop = meta ? sgmq_zpl_child (meta) : NULL; prop;
         prop = sgmq_zpl_next (prop)) {
        char meta_error [SGMQ_CERT_ERROR_SIZE];
        if (sgmq_cert_set_meta (self, sgmq_zpl_name (prop), sgmq_zpl_value (prop),
                                meta_error)) {
            s_error (error, path, "line %d: %s", sgmq_zpl_line (prop), meta_error);
            goto out_free_cert;
        }
    }
    sgmq_zpl_destroy (&root);
    return self;

out_free_cert:
    sgmq_cert_destroy (&self);
out_free_root:
    sgmq_zpl_destroy (&root);
    return NULL;
}

//  The whole file text; `with_secret` adds the secret key. Caller frees
//  (after wiping, if it holds the secret).
static char *
s_render (const sgmq_cert_t *self, bool with_secret, size_t *size_p)
{
    char *text = NULL;
    size_t size = 0;
    FILE *file = open_memstream (&text, &size);
    if (!file)
        return NULL;
    char date [32];
    time_t now = time (NULL);
    strftime (date, sizeof date, "%Y-%m-%d %H:%M:%S", gmtime (&now));
    fprintf (file, "#   ****  Generated on %s UTC by sgmq  ****\n", date);
    if (with_secret)
        fprintf (file,
            "#   ZeroMQ CURVE **Secret** Certificate\n"
            "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n");
    else
        fprintf (file,
            "#   ZeroMQ CURVE Public Certificate\n"
            "#   Exchange securely, or use a secure mechanism to verify the contents\n"
            "#   of this file after exchange. Admit it to a broker by copying it into\n"
            "#   the deployment's certs/ folder.\n\n");
    int rc = sgmq_zpl_write (file, 0, "metadata", NULL);
    for (size_t i = 0; i < self->prop_count && rc == 0; i++)
        rc = sgmq_zpl_write (file, 1, self->props [i].name, self->props [i].value);
    if (rc == 0)
        rc = sgmq_zpl_write (file, 0, "curve", NULL);
    if (rc == 0)
        rc = sgmq_zpl_write (file, 1, "public-key", self->public_txt);
    if (rc == 0 && with_secret) {
        char secret_txt [SGMQ_CERT_KEY_TEXT + 1];
        zmq_z85_encode (secret_txt, self->secret_key, SGMQ_CERT_KEY_SIZE);
        rc = sgmq_zpl_write (file, 1, "secret-key", secret_txt);
        sodium_memzero (secret_txt, sizeof secret_txt);
    }
    if (fclose (file) != 0 || rc != 0) {
        if (text)
            sodium_memzero (text, size);
        free (text);
        return NULL;
    }
    *size_p = size;
    return text;
}

int
sgmq_cert_save_public (const sgmq_cert_t *self, const char *path,
                       bool exclusive, char *error)
{
    size_t size;
    char *text = s_render (self, false, &size);
    if (!text) {
        s_error (error, path, "cannot render the certificate");
        return -1;
    }
    char keyfile_error [SGMQ_KEYFILE_ERROR_SIZE];
    int rc = sgmq_keyfile_write (path, text, size, 0644, exclusive, keyfile_error);
    if (rc)
        s_error (error, NULL, "%s", keyfile_error);
    free (text);
    return rc;
}

int
sgmq_cert_save (const sgmq_cert_t *self, const char *path, char *error)
{
    size_t secret_path_size = strlen (path) + sizeof S_SECRET_SUFFIX;
    char *secret_path = malloc (secret_path_size);
    if (!secret_path) {
        s_error (error, path, "out of memory");
        return -1;
    }
    snprintf (secret_path, secret_path_size, "%s%s", path, S_SECRET_SUFFIX);
    int rc = 0;
    if (access (path, F_OK) == 0 || access (secret_path, F_OK) == 0) {
        s_error (error, path, "certificate already exists; not overwriting it");
        rc = -1;
    }
    if (rc == 0 && self->has_secret) {
        size_t size;
        char *text = s_render (self, true, &size);
        char keyfile_error [SGMQ_KEYFILE_ERROR_SIZE];
        rc = text ? sgmq_keyfile_write (secret_path, text, size, 0600, true,
                                        keyfile_error) : -1;
        if (rc)
            s_error (error, NULL, "%s", text ? keyfile_error
                                             : "cannot render the certificate");
        if (text) {
            sodium_memzero (text, size);
            free (text);
        }
    }
    if (rc == 0)
        rc = sgmq_cert_save_public (self, path, true, error);
    free (secret_path);
    return rc;
}

int
sgmq_cert_apply_client (const sgmq_cert_t *self, void *socket,
                        const uint8_t *server_key)
{
    void *handle = zsock_resolve (socket);
    if (!self->has_secret || !handle)
        return -1;
    if (zmq_setsockopt (handle, ZMQ_CURVE_SERVERKEY, server_key, SGMQ_CERT_KEY_SIZE)
    ||  zmq_setsockopt (handle, ZMQ_CURVE_PUBLICKEY, self->public_key, SGMQ_CERT_KEY_SIZE)
    ||  zmq_setsockopt (handle, ZMQ_CURVE_SECRETKEY, self->secret_key, SGMQ_CERT_KEY_SIZE))
        return -1;
    return 0;
}

int
sgmq_cert_apply_server (const sgmq_cert_t *self, void *socket)
{
    void *handle = zsock_resolve (socket);
    int one = 1;
    if (!self->has_secret || !handle)
        return -1;
    if (zmq_setsockopt (handle, ZMQ_CURVE_SERVER, &one, sizeof one)
    ||  zmq_setsockopt (handle, ZMQ_CURVE_SECRETKEY, self->secret_key, SGMQ_CERT_KEY_SIZE))
        return -1;
    return 0;
}
