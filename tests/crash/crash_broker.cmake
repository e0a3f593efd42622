# Crash under load (issue 7, item 1): publishers and members, each its own
# process, work against the real broker while the test kills it with
# SIGKILL at random moments and restarts it (SGMQ_CRASH_CYCLES times,
# default 30), then checks that every confirmed message is stored exactly
# once, in confirm order, every confirmed ack is kept, and the chain
# verifies (tests/crash/crash_broker.c). About 30 s in Release.
# SGMQ_CRASH_SEED=<n> replays the random delays of a run.
sgmq_test(crash_broker
    SOURCES crash/crash_broker.c
    LIBS sgmq_e2e
    LABELS "slow;e2e"
    TIMEOUT 600)
