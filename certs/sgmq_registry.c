/*  =========================================================================
    sgmq_registry - the table of principals, from a directory of certs

    Loaded once per change of the directory and then read-only, so lookups
    need no locking and a half-loaded table is never seen: the broker
    swaps whole registries. Lookups by key go through a hash table; group
    membership lists are built at load time, because fan-out asks for them
    on every publish.
    =========================================================================
*/
#include "sgmq_registry.h"
#include "sgmq_cert.h"

#include <czmq.h>
#include <dirent.h>
#include <sodium.h>
#include <stdarg.h>
#include <sys/stat.h>

#define S_ERROR_SIZE 512
//  A file changed less than this long ago is hashed by content: coarse
//  file timestamps cannot tell two writes in the same tick apart.
#define S_RECENT_MS 2000
#define S_SECRET_SUFFIX "_secret"

struct _sgmq_principal_t {
    char *file;
    struct stat st;             //  of the file as it was loaded
    char *name;
    char *agency;
    char key [SGMQ_CERT_KEY_TEXT + 1];
    uint32_t roles;
    size_t group_count;
    char *groups [SGMQ_REGISTRY_MAX_GROUPS + 1];    //  NULL-terminated
};

typedef struct {
    char *group;
    size_t count;
    char **names;           //  borrowed from principals, sorted
} s_membership_t;

struct _sgmq_registry_t {
    sgmq_principal_t **principals;
    size_t count;
    char **problems;
    size_t problem_count;
    zhashx_t *by_key;       //  key text -> principal
    zhashx_t *by_name;      //  name -> first principal of that name
    s_membership_t *memberships;
    size_t membership_count;
};

static const char *s_role_names [] = { "publisher", "member", "auditor", "admin" };
#define S_ROLE_COUNT (sizeof s_role_names / sizeof s_role_names [0])

static bool
s_utf8_ok (const char *text)
{
    const unsigned char *p = (const unsigned char *) text;
    while (*p) {
        unsigned c = *p;
        size_t extra;
        unsigned min;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;       //  control characters
            p++;
            continue;
        }
        else if ((c & 0xe0) == 0xc0) { extra = 1; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { extra = 2; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { extra = 3; min = 0x10000; c &= 0x07; }
        else
            return false;
        for (size_t i = 1; i <= extra; i++) {
            if ((p [i] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (p [i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)
        ||  (c >= 0x80 && c < 0xa0))
            return false;           //  overlong, out of range, surrogate, C1
        p += extra + 1;
    }
    return true;
}

bool
sgmq_registry_name_ok (const char *text)
{
    size_t len = strlen (text);
    return len > 0 && len <= SGMQ_REGISTRY_MAX_NAME && s_utf8_ok (text)
        && !(strchr (text, '"') && strchr (text, '\''));
}

bool
sgmq_registry_group_ok (const char *id)
{
    size_t len = strlen (id);
    if (len == 0 || len > SGMQ_REGISTRY_MAX_NAME || id [0] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((id [i] >= 'a' && id [i] <= 'z') || (id [i] >= '0' && id [i] <= '9')
              || id [i] == '-'))
            return false;
    return true;
}

const char *
sgmq_registry_role_name (uint32_t role)
{
    for (size_t i = 0; i < S_ROLE_COUNT; i++)
        if (role == (1u << i))
            return s_role_names [i];
    return NULL;
}

int
sgmq_registry_roles_parse (const char *text, uint32_t *roles, char *error)
{
    *roles = 0;
    const char *p = text;
    while (true) {
        const char *comma = strchr (p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen (p);
        while (len && *p == ' ') {
            p++;
            len--;
        }
        while (len && p [len - 1] == ' ')
            len--;
        size_t i = 0;
        while (i < S_ROLE_COUNT && !(strlen (s_role_names [i]) == len
                                     && memcmp (s_role_names [i], p, len) == 0))
            i++;
        if (i == S_ROLE_COUNT) {
            if (error)
                snprintf (error, 128, "unknown role '%.*s' (roles are publisher, "
                          "member, auditor, admin)", (int) (len > 40 ? 40 : len), p);
            return -1;
        }
        *roles |= 1u << i;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

char *
sgmq_registry_roles_format (uint32_t roles, char *buf, size_t size)
{
    buf [0] = 0;
    size_t used = 0;
    for (size_t i = 0; i < S_ROLE_COUNT; i++)
        if (roles & (1u << i)) {
            int n = snprintf (buf + used, size - used, "%s%s", used ? "," : "",
                              s_role_names [i]);
            if (n < 0 || (size_t) n >= size - used)
                break;
            used += (size_t) n;
        }
    return buf;
}

static void
s_principal_free (sgmq_principal_t *principal)
{
    if (!principal)
        return;
    free (principal->file);
    free (principal->name);
    free (principal->agency);
    for (size_t i = 0; i < principal->group_count; i++)
        free (principal->groups [i]);
    free (principal);
}

static void
__attribute__ ((format (printf, 2, 3)))
s_problem (sgmq_registry_t *self, const char *format, ...)
{
    char text [S_ERROR_SIZE];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    char **bigger = realloc (self->problems,
                             (self->problem_count + 1) * sizeof *bigger);
    if (!bigger)
        return;
    self->problems = bigger;
    self->problems [self->problem_count] = strdup (text);
    if (self->problems [self->problem_count])
        self->problem_count++;
}

static bool
s_group_known (const char *group, const char *const *groups, size_t count)
{
    if (!groups)
        return true;
    for (size_t i = 0; i < count; i++)
        if (strcmp (groups [i], group) == 0)
            return true;
    return false;
}

//  Build a principal from a loaded cert; NULL with the problem in `why`.
static sgmq_principal_t *
s_principal_new (const sgmq_cert_t *cert, const char *path,
                 const char *const *groups, size_t group_count, char *why)
{
    const char *name = sgmq_cert_meta (cert, "name");
    const char *agency = sgmq_cert_meta (cert, "agency");
    const char *roles = sgmq_cert_meta (cert, "roles");
    const char *member_of = sgmq_cert_meta (cert, "groups");
    if (!name || !agency || !roles) {
        snprintf (why, S_ERROR_SIZE, "missing metadata '%s'",
                  !name ? "name" : !agency ? "agency" : "roles");
        return NULL;
    }
    if (!sgmq_registry_name_ok (name)) {
        snprintf (why, S_ERROR_SIZE, "name must be 1 to %d bytes of text "
                  "without control characters", SGMQ_REGISTRY_MAX_NAME);
        return NULL;
    }
    if (!sgmq_registry_name_ok (agency)) {
        snprintf (why, S_ERROR_SIZE, "agency must be 1 to %d bytes of text "
                  "without control characters", SGMQ_REGISTRY_MAX_NAME);
        return NULL;
    }
    if (strcmp (name, SGMQ_REGISTRY_BROKER_NAME) == 0) {
        snprintf (why, S_ERROR_SIZE, "the name '%s' is the broker's own",
                  SGMQ_REGISTRY_BROKER_NAME);
        return NULL;
    }
    sgmq_principal_t *principal = calloc (1, sizeof *principal);
    if (!principal) {
        snprintf (why, S_ERROR_SIZE, "out of memory");
        return NULL;
    }
    char role_error [128];
    if (sgmq_registry_roles_parse (roles, &principal->roles, role_error)) {
        snprintf (why, S_ERROR_SIZE, "%s", role_error);
        goto out_free;
    }
    principal->file = strdup (path);
    principal->name = strdup (name);
    principal->agency = strdup (agency);
    memcpy (principal->key, sgmq_cert_public_txt (cert), SGMQ_CERT_KEY_TEXT);
    const char *p = member_of ? member_of : "";
    while (*p) {
        const char *comma = strchr (p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen (p);
        char group [SGMQ_REGISTRY_MAX_NAME + 1];
        if (len == 0 || len > SGMQ_REGISTRY_MAX_NAME) {
            snprintf (why, S_ERROR_SIZE, "empty or over-long group in '%s'", member_of);
            goto out_free;
        }
        memcpy (group, p, len);
        group [len] = 0;
        if (!sgmq_registry_group_ok (group) || !s_group_known (group, groups, group_count)) {
            snprintf (why, S_ERROR_SIZE, "unknown group '%s'", group);
            goto out_free;
        }
        if (principal->group_count == SGMQ_REGISTRY_MAX_GROUPS) {
            snprintf (why, S_ERROR_SIZE, "more than %d groups", SGMQ_REGISTRY_MAX_GROUPS);
            goto out_free;
        }
        if (!sgmq_principal_in_group (principal, group))
            principal->groups [principal->group_count++] = strdup (group);
        p += len + (comma ? 1 : 0);
        if (comma && !*p) {
            snprintf (why, S_ERROR_SIZE, "trailing comma in groups");
            goto out_free;
        }
    }
    if (!principal->file || !principal->name || !principal->agency) {
        snprintf (why, S_ERROR_SIZE, "out of memory");
        goto out_free;
    }
    return principal;

out_free:
    s_principal_free (principal);
    return NULL;
}

static bool
s_same_identity (const sgmq_principal_t *a, const sgmq_principal_t *b)
{
    if (strcmp (a->agency, b->agency) || a->roles != b->roles
    ||  a->group_count != b->group_count)
        return false;
    for (size_t i = 0; i < a->group_count; i++)
        if (!sgmq_principal_in_group (b, a->groups [i]))
            return false;
    return true;
}

static int
s_strcmp_p (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

//  Sorted list of cert file names in `dir`; NULL on error.
static char **
s_list_dir (const char *dir, size_t *count, char *error)
{
    DIR *handle = opendir (dir);
    if (!handle) {
        if (error)
            snprintf (error, S_ERROR_SIZE, "%s: cannot read certs directory: %s",
                      dir, strerror (errno));
        return NULL;
    }
    char **names = NULL;
    size_t used = 0, capacity = 0;
    struct dirent *entry;
    bool failed = false;
    while ((entry = readdir (handle)) && !failed) {
        if (entry->d_name [0] == '.')
            continue;
        if (used == SGMQ_REGISTRY_MAX_CERTS) {
            if (error)
                snprintf (error, S_ERROR_SIZE, "%s: more than %d files",
                          dir, SGMQ_REGISTRY_MAX_CERTS);
            failed = true;
            break;
        }
        if (used == capacity) {
            capacity = capacity ? capacity * 2 : 64;
            char **bigger = realloc (names, capacity * sizeof *bigger);
            if (!bigger) {
                failed = true;
                break;
            }
            names = bigger;
        }
        names [used] = strdup (entry->d_name);
        if (!names [used])
            failed = true;
        else
            used++;
    }
    closedir (handle);
    if (failed) {
        for (size_t i = 0; i < used; i++)
            free (names [i]);
        free (names);
        return NULL;
    }
    if (used)
        qsort (names, used, sizeof *names, s_strcmp_p);
    *count = used;
    return names ? names : calloc (1, sizeof *names);
}

static bool
s_is_secret_name (const char *name)
{
    size_t len = strlen (name), suffix = strlen (S_SECRET_SUFFIX);
    return len >= suffix && strcmp (name + len - suffix, S_SECRET_SUFFIX) == 0;
}

static int
s_build_memberships (sgmq_registry_t *self)
{
    zhashx_t *lists = zhashx_new ();     //  group -> zlistx of names
    if (!lists)
        return -1;
    zhashx_set_destructor (lists, (zhashx_destructor_fn *) zlistx_destroy);
    for (size_t i = 0; i < self->count; i++) {
        sgmq_principal_t *principal = self->principals [i];
        if (!(principal->roles & SGMQ_ROLE_MEMBER))
            continue;
        for (size_t g = 0; g < principal->group_count; g++) {
            zlistx_t *names = zhashx_lookup (lists, principal->groups [g]);
            if (!names) {
                names = zlistx_new ();
                zlistx_set_comparator (names, (zlistx_comparator_fn *) strcmp);
                zhashx_insert (lists, principal->groups [g], names);
            }
            //  One name per person even with several keys (rotation).
            if (!zlistx_find (names, principal->name))
                zlistx_add_end (names, principal->name);
        }
    }
    self->membership_count = zhashx_size (lists);
    self->memberships = calloc (self->membership_count + 1, sizeof *self->memberships);
    size_t index = 0;
    for (zlistx_t *names = zhashx_first (lists); names && self->memberships;
         names = zhashx_next (lists)) {
        s_membership_t *m = &self->memberships [index++];
        m->group = strdup (zhashx_cursor (lists));
        m->count = zlistx_size (names);
        m->names = calloc (m->count + 1, sizeof *m->names);
        if (!m->group || !m->names) {
            zhashx_destroy (&lists);
            return -1;
        }
        size_t n = 0;
        for (char *name = zlistx_first (names); name; name = zlistx_next (names))
            m->names [n++] = name;
        qsort (m->names, m->count, sizeof *m->names, s_strcmp_p);
    }
    zhashx_destroy (&lists);
    return self->memberships ? 0 : -1;
}

static sgmq_registry_t *
s_registry_new (size_t capacity)
{
    sgmq_registry_t *self = calloc (1, sizeof *self);
    if (self) {
        self->principals = calloc (capacity + 1, sizeof *self->principals);
        self->by_key = zhashx_new ();
        self->by_name = zhashx_new ();
    }
    if (self && (!self->principals || !self->by_key || !self->by_name))
        sgmq_registry_destroy (&self);
    return self;
}

sgmq_registry_t *
sgmq_registry_new_empty (void)
{
    return s_registry_new (0);
}

//  Whether a cert file is no longer the one loaded.
static bool
s_changed (const struct stat *now, const struct stat *was)
{
    return now->st_ino != was->st_ino || now->st_dev != was->st_dev
        || now->st_size != was->st_size || now->st_mtim.tv_sec != was->st_mtim.tv_sec
        || now->st_mtim.tv_nsec != was->st_mtim.tv_nsec;
}

static sgmq_principal_t *
s_principal_copy (const sgmq_principal_t *from)
{
    sgmq_principal_t *copy = calloc (1, sizeof *copy);
    if (!copy)
        return NULL;
    *copy = *from;
    copy->file = strdup (from->file);
    copy->name = strdup (from->name);
    copy->agency = strdup (from->agency);
    bool ok = copy->file && copy->name && copy->agency;
    for (size_t g = 0; g < from->group_count; g++)
        ok &= (copy->groups [g] = strdup (from->groups [g])) != NULL;
    if (!ok) {
        s_principal_free (copy);
        return NULL;
    }
    return copy;
}

sgmq_registry_t *
sgmq_registry_keep (const sgmq_registry_t *self, int dir_fd)
{
    assert (self);
    sgmq_registry_t *copy = s_registry_new (self->count);
    for (size_t i = 0; copy && i < self->count; i++) {
        const sgmq_principal_t *principal = self->principals [i];
        const char *base = strrchr (principal->file, '/');
        base = base ? base + 1 : principal->file;
        //  fstatat opens nothing: it works with every descriptor taken.
        //  Another error (the folder unreadable) keeps the principal, as a
        //  failed load does.
        struct stat st;
        int rc = fstatat (dir_fd, base, &st, 0);
        bool unknown = rc != 0 && errno != ENOENT && errno != ENOTDIR;
        if (!unknown && (rc != 0 || s_changed (&st, &principal->st)))
            continue;           //  gone or changed: out until it can be read
        sgmq_principal_t *kept = s_principal_copy (principal);
        if (!kept) {
            sgmq_registry_destroy (&copy);
            break;
        }
        copy->principals [copy->count++] = kept;
        zhashx_insert (copy->by_key, kept->key, kept);
        if (!zhashx_lookup (copy->by_name, kept->name))
            zhashx_insert (copy->by_name, kept->name, kept);
    }
    if (copy && s_build_memberships (copy))
        sgmq_registry_destroy (&copy);
    return copy;
}

sgmq_registry_t *
sgmq_registry_load (const char *dir, const char *const *groups,
                    size_t group_count, char *error)
{
    size_t file_count = 0;
    char **files = s_list_dir (dir, &file_count, error);
    if (!files)
        return NULL;
    sgmq_registry_t *self = s_registry_new (file_count);
    if (!self) {
        if (error)
            snprintf (error, S_ERROR_SIZE, "%s: out of memory", dir);
        goto out_free_files;
    }
    for (size_t i = 0; i < file_count; i++) {
        size_t path_size = strlen (dir) + strlen (files [i]) + 2;
        char *path = malloc (path_size);
        if (!path)
            continue;
        snprintf (path, path_size, "%s/%s", dir, files [i]);
        struct stat st;
        if (stat (path, &st) != 0 || !S_ISREG (st.st_mode)) {
            free (path);
            continue;           //  sub-folders and vanished files
        }
        if (s_is_secret_name (files [i])) {
            s_problem (self, "%s: a secret certificate must not be in the certs "
                       "directory; move it to its owner and remove it here", path);
            free (path);
            continue;
        }
        char why [S_ERROR_SIZE];
        sgmq_cert_t *cert = sgmq_cert_load (path, why);
        sgmq_principal_t *principal = NULL;
        if (!cert)
            s_problem (self, "%s", why);
        else
        if (sgmq_cert_secret_key (cert))
            s_problem (self, "%s: holds a secret key; admit only the public "
                       "certificate", path);
        else
        if (!(principal = s_principal_new (cert, path, groups, group_count, why)))
            s_problem (self, "%s: %s", path, why);
        else
            principal->st = st;
        sgmq_cert_destroy (&cert);
        if (principal) {
            sgmq_principal_t *same_key = zhashx_lookup (self->by_key, principal->key);
            sgmq_principal_t *same_name = zhashx_lookup (self->by_name, principal->name);
            if (same_key) {
                s_problem (self, "%s: same key as %s", path, same_key->file);
                s_principal_free (principal);
                principal = NULL;
            }
            else
            if (same_name && !s_same_identity (same_name, principal)) {
                s_problem (self, "%s: name '%s' already belongs to %s with other "
                           "agency, roles or groups", path, principal->name,
                           same_name->file);
                s_principal_free (principal);
                principal = NULL;
            }
        }
        if (principal) {
            self->principals [self->count++] = principal;
            zhashx_insert (self->by_key, principal->key, principal);
            if (!zhashx_lookup (self->by_name, principal->name))
                zhashx_insert (self->by_name, principal->name, principal);
        }
        free (path);
    }
    if (s_build_memberships (self)) {
        if (error)
            snprintf (error, S_ERROR_SIZE, "%s: out of memory", dir);
        sgmq_registry_destroy (&self);
    }
out_free_files:
    for (size_t i = 0; i < file_count; i++)
        free (files [i]);
    free (files);
    return self;
}

void
sgmq_registry_destroy (sgmq_registry_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_registry_t *self = *self_p;
    for (size_t i = 0; i < self->membership_count && self->memberships; i++) {
        free (self->memberships [i].group);
        free (self->memberships [i].names);
    }
    free (self->memberships);
    for (size_t i = 0; i < self->count; i++)
        s_principal_free (self->principals [i]);
    free (self->principals);
    for (size_t i = 0; i < self->problem_count; i++)
        free (self->problems [i]);
    free (self->problems);
    zhashx_destroy (&self->by_key);
    zhashx_destroy (&self->by_name);
    free (self);
    *self_p = NULL;
}

size_t
sgmq_registry_size (const sgmq_registry_t *self)
{
    return self->count;
}

const sgmq_principal_t *
sgmq_registry_at (const sgmq_registry_t *self, size_t index)
{
    return index < self->count ? self->principals [index] : NULL;
}

size_t
sgmq_registry_problem_count (const sgmq_registry_t *self)
{
    return self->problem_count;
}

const char *
sgmq_registry_problem (const sgmq_registry_t *self, size_t index)
{
    return index < self->problem_count ? self->problems [index] : NULL;
}

const sgmq_principal_t *
sgmq_registry_lookup (const sgmq_registry_t *self, const char *key_txt)
{
    return key_txt ? zhashx_lookup (self->by_key, key_txt) : NULL;
}

const sgmq_principal_t *
sgmq_registry_find (const sgmq_registry_t *self, const char *name)
{
    return name ? zhashx_lookup (self->by_name, name) : NULL;
}

const char *const *
sgmq_registry_members (const sgmq_registry_t *self, const char *group,
                       size_t *count)
{
    static const char *const none [] = { NULL };
    for (size_t i = 0; i < self->membership_count; i++)
        if (strcmp (self->memberships [i].group, group) == 0) {
            *count = self->memberships [i].count;
            return (const char *const *) self->memberships [i].names;
        }
    *count = 0;
    return none;
}

const char *sgmq_principal_name (const sgmq_principal_t *self) { return self->name; }
const char *sgmq_principal_agency (const sgmq_principal_t *self) { return self->agency; }
const char *sgmq_principal_key (const sgmq_principal_t *self) { return self->key; }
const char *sgmq_principal_file (const sgmq_principal_t *self) { return self->file; }
uint32_t sgmq_principal_roles (const sgmq_principal_t *self) { return self->roles; }
size_t sgmq_principal_group_count (const sgmq_principal_t *self) { return self->group_count; }

bool
sgmq_principal_has_role (const sgmq_principal_t *self, uint32_t role)
{
    return (self->roles & role) != 0;
}

const char *
sgmq_principal_group (const sgmq_principal_t *self, size_t index)
{
    return index < self->group_count ? self->groups [index] : NULL;
}

const char *const *
sgmq_principal_groups (const sgmq_principal_t *self)
{
    return (const char *const *) self->groups;
}

bool
sgmq_principal_in_group (const sgmq_principal_t *self, const char *group)
{
    for (size_t i = 0; i < self->group_count; i++)
        if (strcmp (self->groups [i], group) == 0)
            return true;
    return false;
}

//  Hash a file's bytes into `state`; a read error just hashes less, which
//  still differs from the last signature if the file is changing.
static void
s_hash_content (crypto_generichash_state *state, const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return;
    uint8_t buffer [SGMQ_CERT_MAX_FILE];
    size_t got = fread (buffer, 1, sizeof buffer, file);
    fclose (file);
    crypto_generichash_update (state, buffer, got);
}

int
sgmq_registry_signature (const char *dir, uint8_t *signature)
{
    size_t count = 0;
    char **files = s_list_dir (dir, &count, NULL);
    if (!files)
        return -1;
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, SGMQ_REGISTRY_SIG_SIZE);
    for (size_t i = 0; i < count; i++) {
        size_t path_size = strlen (dir) + strlen (files [i]) + 2;
        char *path = malloc (path_size);
        struct stat st;
        if (path) {
            snprintf (path, path_size, "%s/%s", dir, files [i]);
            if (stat (path, &st) == 0) {
                int64_t fields [] = {
                    (int64_t) st.st_ino, (int64_t) st.st_size, (int64_t) st.st_mode,
                    (int64_t) st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                    (int64_t) st.st_ctim.tv_sec, st.st_ctim.tv_nsec
                };
                crypto_generichash_update (&state, (const uint8_t *) files [i],
                                           strlen (files [i]) + 1);
                crypto_generichash_update (&state, (const uint8_t *) fields,
                                           sizeof fields);
                int64_t changed_ms = (int64_t) st.st_ctim.tv_sec * 1000
                                   + st.st_ctim.tv_nsec / 1000000;
                if (S_ISREG (st.st_mode) && now_ms - changed_ms < S_RECENT_MS)
                    s_hash_content (&state, path);
            }
            free (path);
        }
        free (files [i]);
    }
    free (files);
    crypto_generichash_final (&state, signature, SGMQ_REGISTRY_SIG_SIZE);
    return 0;
}
