/*  A library preloaded into the broker by one test (LD_PRELOAD): it moves
    the wall clock (CLOCK_REALTIME) by SGMQ_TEST_CLOCK_SHIFT_S seconds, as
    a host whose clock was wrong would. The monotonic clock is left alone. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int
clock_gettime (clockid_t clock, struct timespec *ts)
{
    static int (*real) (clockid_t, struct timespec *);
    if (!real) {
        void *symbol = dlsym (RTLD_NEXT, "clock_gettime");
        memcpy (&real, &symbol, sizeof real);   //  (ISO C: no pointer cast)
    }
    int rc = real (clock, ts);
    const char *shift = getenv ("SGMQ_TEST_CLOCK_SHIFT_S");
    if (rc == 0 && shift && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE))
        ts->tv_sec += atol (shift);
    return rc;
}
