/*  testutil - helpers shared by the tests; see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double
testutil_scale (void)
{
    static double scale = 0;
    if (scale == 0) {
        const char *env = getenv ("SGMQ_TEST_SCALE");
        double value = env ? strtod (env, NULL) : 1.0;
        scale = value >= 1.0 ? value : 1.0;
    }
    return scale;
}

int64_t
testutil_ms (int64_t ms)
{
    return (int64_t) ((double) ms * testutil_scale ());
}

int64_t
testutil_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *
testutil_tmpdir (const char *tag)
{
    const char *base = getenv ("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t size = strlen (base) + strlen (tag) + 32;
    char *path = malloc (size);
    if (!path)
        return NULL;
    snprintf (path, size, "%s/sgmq-%s-XXXXXX", base, tag);
    if (!mkdtemp (path)) {
        free (path);
        return NULL;
    }
    return path;
}

int
testutil_rmtree (const char *path)
{
    struct stat st;
    if (lstat (path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR (st.st_mode))
        return unlink (path);
    DIR *dir = opendir (path);
    if (!dir)
        return -1;
    int rc = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (strcmp (entry->d_name, ".") == 0 || strcmp (entry->d_name, "..") == 0)
            continue;
        size_t size = strlen (path) + strlen (entry->d_name) + 2;
        char *child = malloc (size);
        if (!child) {
            rc = -1;
            break;
        }
        snprintf (child, size, "%s/%s", path, entry->d_name);
        if (testutil_rmtree (child) != 0)
            rc = -1;
        free (child);
    }
    closedir (dir);
    if (rmdir (path) != 0)
        rc = -1;
    return rc;
}

int
testutil_write_file (const char *path, const void *data, size_t size)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    const char *cursor = data;
    while (size > 0) {
        ssize_t written = write (fd, cursor, size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0) {
            close (fd);
            return -1;
        }
        cursor += written;
        size -= (size_t) written;
    }
    return close (fd);
}

char *
testutil_read_file (const char *path, size_t *size_p)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    size_t capacity = 4096, size = 0;
    char *data = malloc (capacity + 1);
    while (data) {
        size_t got = fread (data + size, 1, capacity - size, file);
        size += got;
        if (size < capacity)
            break;
        capacity *= 2;
        char *bigger = realloc (data, capacity + 1);
        if (!bigger) {
            free (data);
            data = NULL;
        }
        else
            data = bigger;
    }
    fclose (file);
    if (data) {
        data [size] = 0;
        if (size_p)
            *size_p = size;
    }
    return data;
}
