# Crash tests: kill a writer with SIGKILL at random moments and check that
# nothing confirmed is lost (tests/crash/crash_store.c). Runs in the
# normal ctest run (about 10 s); label "slow" so `ctest -L unit` skips it.
# SGMQ_CRASH_SEED=<n> in the environment replays a run.
sgmq_test(crash_store
    SOURCES crash/crash_store.c
    LIBS sgmq_store
    LABELS slow
    TIMEOUT 120)
