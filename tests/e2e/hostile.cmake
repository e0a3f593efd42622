# Hostile and broken clients, identity and access (issue 7, items 2 and 3):
# each against the real sgmq-broker.
sgmq_test(e2e_hostile SOURCES e2e/test_hostile.c LIBS sgmq_e2e LABELS e2e TIMEOUT 600)
sgmq_test(e2e_access SOURCES e2e/test_access.c LIBS sgmq_e2e LABELS e2e TIMEOUT 300)
