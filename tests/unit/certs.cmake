sgmq_test(test_certs SOURCES unit/test_certs.c LIBS sgmq_certs LABELS unit)
