# End-to-end tests: the real sgmq-broker process and the real sgmq CLI.
add_library(sgmq_e2e STATIC e2e/e2e.c)
target_include_directories(sgmq_e2e PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/e2e)
target_link_libraries(sgmq_e2e PUBLIC sgmq_testutil sgmq_client sgmq_certs)
target_compile_definitions(sgmq_e2e PRIVATE
    SGMQ_BROKER_BIN="$<TARGET_FILE:sgmq-broker>" SGMQ_CLI_BIN="$<TARGET_FILE:sgmq>")
add_dependencies(sgmq_e2e sgmq-broker sgmq)

sgmq_test(e2e_auth SOURCES e2e/test_auth.c LIBS sgmq_e2e LABELS e2e TIMEOUT 300)
sgmq_test(e2e_workflow SOURCES e2e/test_workflow.c LIBS sgmq_e2e LABELS e2e TIMEOUT 600)
