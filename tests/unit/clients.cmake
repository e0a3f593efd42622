# libsgmq against a fake broker (verify's checks, pending's 429 retry).
sgmq_test(test_client SOURCES unit/test_client.c LIBS sgmq_client LABELS unit)
# The CLI's JSON and CSV writers.
sgmq_test(test_json SOURCES unit/test_json.c LIBS sgmq_cli LABELS unit)
