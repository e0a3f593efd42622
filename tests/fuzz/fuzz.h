/*  fuzz.h - what every fuzz target shares.

    A target (tests/fuzz/fuzz_NAME.c) defines LLVMFuzzerTestOneInput and
    fuzz_target. Built for libFuzzer (SGMQ_FUZZING) that is all; built as
    a plain program it is linked with fuzz_replay.c, whose main() replays
    the files and directories named on the command line, each as one
    input: the fuzz_NAME_corpus test, so every checked-in crasher stays
    fixed.
*/
#ifndef SGMQ_FUZZ_H
#define SGMQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

//  A failed check aborts, which libFuzzer reports as a crash.
#define CHECK(condition) \
    do { \
        if (!(condition)) { \
            fprintf (stderr, "%s:%d: check failed: %s\n", \
                     __FILE__, __LINE__, #condition); \
            abort (); \
        } \
    } while (0)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

typedef struct {
    const char *name;               //  for messages: "fuzz_proto"
    size_t max_input;               //  longer files are cut to this
    void (*before_replay) (void);   //  replay only: checks of fixed inputs
} fuzz_target_t;

extern const fuzz_target_t fuzz_target;

#endif
