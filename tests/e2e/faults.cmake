# Storage faults (issue 7, item 4): a full disk (a tmpfs the test mounts
# in its own mount namespace when it runs as root; else a map size cap)
# and a damaged data file, against the real broker. About 10 s.
sgmq_test(e2e_faults SOURCES e2e/test_faults.c LIBS sgmq_e2e LABELS e2e TIMEOUT 300)
# It edits a stopped broker's store as someone with the disk would.
target_link_libraries(e2e_faults PRIVATE PkgConfig::LMDB)
