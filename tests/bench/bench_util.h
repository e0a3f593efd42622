/*  bench_util.h - what the benchmark programs share.

    Time on the monotonic clock, sleeping through signals, and dying with
    the program's name (bench_program, which each program defines).
*/
#ifndef SGMQ_BENCH_UTIL_H
#define SGMQ_BENCH_UTIL_H

#include <stdint.h>

extern const char *bench_program;

//  Nanoseconds on CLOCK_MONOTONIC.
int64_t
    bench_now_ns (void);

//  Sleep ns (nothing if ns <= 0), resuming after signals.
void
    bench_sleep_ns (int64_t ns);

//  CPU seconds the whole machine has been busy since boot: every CPU,
//  every process and the kernel (user, nice, system, irq, softirq of
//  /proc/stat; not idle, iowait or steal, the host's). A difference over a
//  measured window, divided by its length, is the cores in use, servers
//  and clients together: what the machine spent on a shape. 0 if
//  /proc/stat cannot be read.
double
    bench_machine_cpu (void);

//  Print "PROGRAM: message" on stderr and exit 1.
void __attribute__ ((format (printf, 1, 2), noreturn))
    bench_die (const char *format, ...);

#endif
