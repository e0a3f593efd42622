/*  bench_util - see bench_util.h. */
#include "bench_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int64_t
bench_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
bench_sleep_ns (int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = { (time_t) (ns / 1000000000), (long) (ns % 1000000000) };
    while (nanosleep (&ts, &ts) && errno == EINTR)
        ;
}

double
bench_machine_cpu (void)
{
    FILE *file = fopen ("/proc/stat", "r");
    if (!file)
        return 0;
    unsigned long long user, nice, system, idle, iowait, irq, softirq;
    int fields = fscanf (file, "cpu %llu %llu %llu %llu %llu %llu %llu", &user,
                         &nice, &system, &idle, &iowait, &irq, &softirq);
    fclose (file);
    if (fields != 7)
        return 0;
    return (double) (user + nice + system + irq + softirq)
         / (double) sysconf (_SC_CLK_TCK);
}

void
bench_die (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "%s: ", bench_program);
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
    exit (1);
}
