# Store unit tests (tests/unit/test_store.c): every public function of
# store/sgmq_store.h, tamper and damaged-file cases, map and disk full.
# The disk-full case mounts a 2 MiB tmpfs when run as root; otherwise it
# is skipped with a message.
sgmq_test(test_store
    SOURCES unit/test_store.c
    LIBS sgmq_store
    LABELS unit
    TIMEOUT 120)
