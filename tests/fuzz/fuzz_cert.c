/*  fuzz_cert - libFuzzer target for certificate files and their metadata.

    For any input:
    - parse it as ZPL (sgmq_zpl_parse) and walk the tree; every node whose
      name and value ZPL can carry is written (sgmq_zpl_write) and read
      back unchanged;
    - write it to a file (mode 0600, in a folder on /dev/shm made once)
      and load it with sgmq_cert_load, the path every cert takes; a cert
      that loads has a 40-character Z85 public key that decodes to its
      key, metadata within SGMQ_CERT_MAX_PROPS whose names and values read
      back, and it saves (public and, with a secret, both files) and
      loads again with the same keys and metadata;
    - load the folder holding it as the broker's registry of principals
      (sgmq_registry_load, with the default config's groups and with
      none), and read every principal's metadata through the accessors:
      each is found again by its key and name, each of its groups lists it
      when it is a member, and every rejected file is named with its
      reason. The folder's signature is taken too.
    Any failed check aborts, which libFuzzer reports as a crash; the
    sanitizers catch the rest (leaks included).

    Built with -DSGMQ_FUZZING and -fsanitize=fuzzer when SGMQ_FUZZ=ON.
    Otherwise it is linked with fuzz_replay.c: that is the fuzz_cert_corpus
    test.
*/
#include "fuzz.h"
#include "sgmq_cert.h"
#include "sgmq_config.h"
#include "sgmq_registry.h"
#include "sgmq_zpl.h"

#include <czmq.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  A cert is at most SGMQ_CERT_MAX_FILE bytes; a little more shows the
//  loader's refusal of bigger files.
#define S_MAX_INPUT   (SGMQ_CERT_MAX_FILE + 64)
//  The tree walk stops this deep (the parser allows SGMQ_ZPL_MAX_DEPTH).
#define S_MAX_DEPTH   16
//  Room for the work folder's path, and for paths inside it.
#define S_WORK_SIZE   256
#define S_PATH_SIZE   512

//  The work folder (made once, removed at exit): certs/ holds the input
//  as certs/input.cert; copies are saved beside certs/.
static char s_work [S_WORK_SIZE];
static char s_certs [S_WORK_SIZE + 16];
static char s_input [S_PATH_SIZE];
static char s_copy [S_PATH_SIZE];
static char s_copy_secret [S_PATH_SIZE];
static sgmq_config_t *s_config;

static void
s_cleanup (void)
{
    unlink (s_input);
    unlink (s_copy);
    unlink (s_copy_secret);
    rmdir (s_certs);
    rmdir (s_work);
    sgmq_config_destroy (&s_config);
}

static void
s_init (void)
{
    //  /dev/shm: a memory filesystem, so a file per input costs little.
    const char *base = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv ("TMPDIR");
    snprintf (s_work, sizeof s_work, "%s/sgmq-fuzz-cert-XXXXXX", base ? base : "/tmp");
    CHECK (mkdtemp (s_work));
    snprintf (s_certs, sizeof s_certs, "%s/certs", s_work);
    CHECK (mkdir (s_certs, 0700) == 0);
    snprintf (s_input, sizeof s_input, "%s/input.cert", s_certs);
    snprintf (s_copy, sizeof s_copy, "%s/copy.cert", s_work);
    snprintf (s_copy_secret, sizeof s_copy_secret, "%s/copy.cert_secret", s_work);
    char *text = sgmq_config_default_text (NULL);
    CHECK (text);
    char error [SGMQ_CONFIG_ERROR_SIZE];
    s_config = sgmq_config_parse (text, strlen (text), "default", "/", error);
    CHECK (s_config);
    free (text);
    atexit (s_cleanup);
}

//  Write the input as the cert file, private (a secret cert must be).
static void
s_write_input (const uint8_t *data, size_t size)
{
    int fd = open (s_input, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK (fd >= 0);
    size_t done = 0;
    while (done < size) {
        ssize_t wrote = write (fd, data + done, size - done);
        CHECK (wrote > 0);
        done += (size_t) wrote;
    }
    CHECK (close (fd) == 0);
}

//  A node ZPL can carry comes back unchanged from write and parse.
static void
s_check_node (const sgmq_zpl_t *node)
{
    const char *name = sgmq_zpl_name (node);
    const char *value = sgmq_zpl_value (node);
    CHECK (name && value && sgmq_zpl_origin (node));
    CHECK (sgmq_zpl_line (node) >= 1);
    if (!sgmq_zpl_name_ok (name) || !sgmq_zpl_value_ok (value))
        return;
    char *text = NULL;
    size_t size = 0;
    FILE *file = open_memstream (&text, &size);
    CHECK (file);
    CHECK (sgmq_zpl_write (file, 0, name, value) == 0);
    CHECK (fclose (file) == 0);
    char error [SGMQ_ZPL_ERROR_SIZE];
    sgmq_zpl_t *again = sgmq_zpl_parse (text, size, "again", error);
    if (!again)
        fprintf (stderr, "fuzz_cert: wrote [%s] and could not read it: %s\n", text, error);
    CHECK (again);
    const sgmq_zpl_t *copy = sgmq_zpl_child (again);
    CHECK (copy && !sgmq_zpl_next (copy) && !sgmq_zpl_child (copy));
    CHECK (strcmp (sgmq_zpl_name (copy), name) == 0);
    CHECK (strcmp (sgmq_zpl_value (copy), value) == 0);
    sgmq_zpl_destroy (&again);
    free (text);
}

static void
s_walk (const sgmq_zpl_t *node, int depth)
{
    CHECK (depth <= S_MAX_DEPTH);
    for (const sgmq_zpl_t *child = sgmq_zpl_child (node); child;
         child = sgmq_zpl_next (child)) {
        s_check_node (child);
        s_walk (child, depth + 1);
    }
}

static void
s_check_zpl (const uint8_t *data, size_t size)
{
    char error [SGMQ_ZPL_ERROR_SIZE];
    sgmq_zpl_t *root = sgmq_zpl_parse ((const char *) data, size, "input", error);
    if (!root) {
        CHECK (memchr (error, 0, sizeof error));
        CHECK (strncmp (error, "input", 5) == 0);
        return;
    }
    s_walk (root, 0);
    const sgmq_zpl_t *key = sgmq_zpl_locate (root, "curve/public-key");
    const char *value = sgmq_zpl_get (root, "curve/public-key", NULL);
    CHECK ((key == NULL) == (value == NULL));
    CHECK (strcmp (sgmq_zpl_get (root, "no/such/node", "x"), "x") == 0);
    sgmq_zpl_destroy (&root);
    CHECK (root == NULL);
}

//  Same keys and metadata.
static void
s_check_same (const sgmq_cert_t *a, const sgmq_cert_t *b, bool secret)
{
    CHECK (memcmp (sgmq_cert_public_key (a), sgmq_cert_public_key (b),
                   SGMQ_CERT_KEY_SIZE) == 0);
    CHECK (strcmp (sgmq_cert_public_txt (a), sgmq_cert_public_txt (b)) == 0);
    if (secret)
        CHECK (sgmq_cert_secret_key (b)
               && memcmp (sgmq_cert_secret_key (a), sgmq_cert_secret_key (b),
                          SGMQ_CERT_KEY_SIZE) == 0);
    CHECK (sgmq_cert_meta_count (a) == sgmq_cert_meta_count (b));
    for (size_t i = 0; i < sgmq_cert_meta_count (a); i++) {
        const char *name = sgmq_cert_meta_name (a, i);
        CHECK (strcmp (name, sgmq_cert_meta_name (b, i)) == 0);
        CHECK (strcmp (sgmq_cert_meta (a, name), sgmq_cert_meta (b, name)) == 0);
    }
}

static void
s_check_cert (void)
{
    char error [SGMQ_CERT_ERROR_SIZE];
    error [0] = 0;
    sgmq_cert_t *cert = sgmq_cert_load (s_input, error);
    if (!cert) {
        CHECK (error [0] && memchr (error, 0, sizeof error));
        CHECK (strchr (error, '\n') == NULL);
        return;
    }
    const char *txt = sgmq_cert_public_txt (cert);
    CHECK (strlen (txt) == SGMQ_CERT_KEY_TEXT);
    uint8_t key [SGMQ_CERT_KEY_SIZE];
    CHECK (zmq_z85_decode (key, txt));
    CHECK (memcmp (key, sgmq_cert_public_key (cert), sizeof key) == 0);
    size_t count = sgmq_cert_meta_count (cert);
    CHECK (count <= SGMQ_CERT_MAX_PROPS);
    for (size_t i = 0; i < count; i++) {
        const char *name = sgmq_cert_meta_name (cert, i);
        CHECK (name && sgmq_zpl_name_ok (name));
        const char *value = sgmq_cert_meta (cert, name);
        CHECK (value && sgmq_zpl_value_ok (value));
    }
    CHECK (sgmq_cert_meta_name (cert, count) == NULL);

    //  What loads, saves and loads again the same.
    bool secret = sgmq_cert_secret_key (cert) != NULL;
    unlink (s_copy);
    unlink (s_copy_secret);
    int saved = sgmq_cert_save (cert, s_copy, error);
    if (saved)
        fprintf (stderr, "fuzz_cert: cannot save a cert that loaded: %s\n", error);
    CHECK (saved == 0);
    CHECK (sgmq_cert_save (cert, s_copy, error) != 0);        //  never overwrites
    sgmq_cert_t *copy = sgmq_cert_load (s_copy, error);
    CHECK (copy);
    s_check_same (cert, copy, false);
    sgmq_cert_destroy (&copy);
    if (secret) {
        copy = sgmq_cert_load (s_copy_secret, error);
        CHECK (copy);
        s_check_same (cert, copy, true);
        sgmq_cert_destroy (&copy);
    }
    sgmq_cert_destroy (&cert);
    CHECK (cert == NULL);
}

static void
s_check_principal (const sgmq_registry_t *registry, const sgmq_principal_t *p)
{
    const char *name = sgmq_principal_name (p);
    CHECK (name && sgmq_registry_name_ok (name));
    CHECK (sgmq_registry_name_ok (sgmq_principal_agency (p)));
    CHECK (strlen (sgmq_principal_key (p)) == SGMQ_CERT_KEY_TEXT);
    CHECK (strcmp (sgmq_principal_file (p), s_input) == 0);
    CHECK (sgmq_registry_lookup (registry, sgmq_principal_key (p)) == p);
    CHECK (sgmq_registry_find (registry, name) == p);
    uint32_t roles = sgmq_principal_roles (p);
    CHECK (roles && (roles & ~SGMQ_ROLE_ALL) == 0);
    char text [128];
    CHECK (sgmq_registry_roles_format (roles, text, sizeof text));
    uint32_t again = 0;
    char error [SGMQ_CERT_ERROR_SIZE];
    CHECK (sgmq_registry_roles_parse (text, &again, error) == 0 && again == roles);
    for (uint32_t role = 1; role <= SGMQ_ROLE_ADMIN; role <<= 1) {
        CHECK (sgmq_principal_has_role (p, role) == ((roles & role) != 0));
        CHECK (sgmq_registry_role_name (role));
    }
    size_t groups = sgmq_principal_group_count (p);
    CHECK (groups <= SGMQ_REGISTRY_MAX_GROUPS);
    const char *const *list = sgmq_principal_groups (p);
    for (size_t g = 0; g < groups; g++) {
        const char *group = sgmq_principal_group (p, g);
        CHECK (group && sgmq_registry_group_ok (group));
        CHECK (list [g] && strcmp (list [g], group) == 0);
        CHECK (sgmq_principal_in_group (p, group));
        size_t members = 0;
        const char *const *names = sgmq_registry_members (registry, group, &members);
        bool listed = false;
        for (size_t m = 0; m < members; m++)
            listed = listed || strcmp (names [m], name) == 0;
        CHECK (listed == sgmq_principal_has_role (p, SGMQ_ROLE_MEMBER));
    }
    CHECK (!sgmq_principal_in_group (p, "Not A Group"));
}

static void
s_check_registry (const char *const *groups, size_t group_count)
{
    char error [512];
    sgmq_registry_t *registry = sgmq_registry_load (s_certs, groups, group_count, error);
    CHECK (registry);
    size_t size = sgmq_registry_size (registry);
    size_t problems = sgmq_registry_problem_count (registry);
    //  One file: loaded, or rejected with its name and the reason.
    CHECK (size + problems == 1);
    for (size_t i = 0; i < problems; i++) {
        const char *problem = sgmq_registry_problem (registry, i);
        CHECK (problem && strstr (problem, "input.cert"));
        CHECK (strchr (problem, '\n') == NULL);
    }
    for (size_t i = 0; i < size; i++)
        s_check_principal (registry, sgmq_registry_at (registry, i));
    CHECK (sgmq_registry_lookup (registry, "not a key") == NULL);
    sgmq_registry_destroy (&registry);
    CHECK (registry == NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_work [0])
        s_init ();
    s_check_zpl (data, size);
    s_write_input (data, size);
    s_check_cert ();
    s_check_registry (sgmq_config_group_ids (s_config),
                      sgmq_config_group_count (s_config));
    s_check_registry (NULL, 0);
    uint8_t signature [SGMQ_REGISTRY_SIG_SIZE];
    CHECK (sgmq_registry_signature (s_certs, signature) == 0);
    return 0;
}

const fuzz_target_t fuzz_target = { "fuzz_cert", S_MAX_INPUT, NULL };
