# libsgmq unit tests: the client against a fake broker.
sgmq_test(test_client_verify SOURCES unit/test_client_verify.c LIBS sgmq_client LABELS unit)
# The CLI's JSON and CSV writers.
sgmq_test(test_json SOURCES unit/test_json.c LIBS sgmq_cli LABELS unit)
