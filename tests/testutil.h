/*  testutil - what every sgmq test needs: temporary directories, time
    limits that scale, and checks that survive Release builds.

    Tests use cmocka for structure and assertions (its assert_* macros do
    not depend on NDEBUG). Time limits are multiplied by SGMQ_TEST_SCALE
    (default 1), so a run under valgrind or sanitizers can give every wait
    more room by setting one variable, never by editing a test.
*/
#ifndef SGMQ_TESTUTIL_H_INCLUDED
#define SGMQ_TESTUTIL_H_INCLUDED

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

//  1 when built with AddressSanitizer (gcc or clang), else 0: its shadow
//  memory and allocator make resident sizes, address-space limits and
//  preloaded libraries say nothing about the code under test.
#if defined (__SANITIZE_ADDRESS__)
#   define TESTUTIL_ASAN 1
#elif defined (__has_feature)
#   if __has_feature (address_sanitizer)
#       define TESTUTIL_ASAN 1
#   endif
#endif
#ifndef TESTUTIL_ASAN
#   define TESTUTIL_ASAN 0
#endif

//  SGMQ_TEST_SCALE as a factor >= 1 (read once).
double
    testutil_scale (void);

//  `ms` milliseconds, scaled.
int64_t
    testutil_ms (int64_t ms);

//  Make a fresh directory under $TMPDIR (or /tmp) named after `tag`;
//  returns its path (caller frees), or NULL. Mode 0700.
char *
    testutil_tmpdir (const char *tag);

//  Remove a directory tree (rm -rf without the shell). 0 or -1.
int
    testutil_rmtree (const char *path);

//  Milliseconds on a monotonic clock.
int64_t
    testutil_now_ms (void);

//  Write `size` bytes to `path` (created 0600, truncated). 0 or -1.
int
    testutil_write_file (const char *path, const void *data, size_t size);

//  Read a whole file; caller frees; NULL on error. Size in *size_p.
char *
    testutil_read_file (const char *path, size_t *size_p);

#endif
