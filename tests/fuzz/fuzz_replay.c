/*  fuzz_replay - main() for a fuzz target built without libFuzzer.

    Each argument is a file or a directory of files; every file is one
    input, handed to the target in a buffer of exactly its size, so a
    sanitizer sees any read past the end. Fails when nothing was replayed
    (a wrong corpus path must not pass as "no failure").
*/
#include "fuzz.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static size_t s_replayed;

static void
s_replay_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    CHECK (file);
    uint8_t *data = malloc (fuzz_target.max_input ? fuzz_target.max_input : 1);
    CHECK (data);
    size_t size = fread (data, 1, fuzz_target.max_input, file);
    fclose (file);
    uint8_t *exact = malloc (size ? size : 1);
    CHECK (exact);
    memcpy (exact, data, size);
    free (data);
    LLVMFuzzerTestOneInput (exact, size);
    free (exact);
    s_replayed++;
}

static void
s_replay (const char *path)
{
    struct stat st;
    if (stat (path, &st) != 0) {
        fprintf (stderr, "%s: cannot read %s\n", fuzz_target.name, path);
        exit (EXIT_FAILURE);
    }
    if (!S_ISDIR (st.st_mode)) {
        s_replay_file (path);
        return;
    }
    DIR *dir = opendir (path);
    CHECK (dir);
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (entry->d_name [0] == '.')
            continue;
        size_t length = strlen (path) + strlen (entry->d_name) + 2;
        char *child = malloc (length);
        CHECK (child);
        snprintf (child, length, "%s/%s", path, entry->d_name);
        s_replay (child);
        free (child);
    }
    closedir (dir);
}

int
main (int argc, char *argv [])
{
    if (argc < 2) {
        fprintf (stderr, "usage: %s FILE|DIR...\n", argv [0]);
        return EXIT_FAILURE;
    }
    if (fuzz_target.before_replay)
        fuzz_target.before_replay ();
    for (int arg = 1; arg < argc; arg++)
        s_replay (argv [arg]);
    printf ("%s: %zu inputs replayed, no failure\n", fuzz_target.name, s_replayed);
    return s_replayed ? EXIT_SUCCESS : EXIT_FAILURE;
}
