# End-to-end tests: the real sgmq-broker process and the real sgmq CLI.
add_library(sgmq_e2e STATIC e2e/e2e.c)
target_include_directories(sgmq_e2e PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/e2e)
target_link_libraries(sgmq_e2e PUBLIC sgmq_testutil sgmq_client sgmq_certs)
target_compile_definitions(sgmq_e2e PRIVATE
    SGMQ_BROKER_BIN="$<TARGET_FILE:sgmq-broker>" SGMQ_CLI_BIN="$<TARGET_FILE:sgmq>")
add_dependencies(sgmq_e2e sgmq-broker sgmq)

sgmq_test(e2e_auth SOURCES e2e/test_auth.c LIBS sgmq_e2e LABELS e2e TIMEOUT 300)
sgmq_test(e2e_workflow SOURCES e2e/test_workflow.c LIBS sgmq_e2e LABELS e2e TIMEOUT 600)
# Preloaded into a broker by e2e_workflow: a wall clock that is wrong.
add_library(sgmq_clockshift MODULE e2e/clockshift.c)
target_link_libraries(sgmq_clockshift PRIVATE ${CMAKE_DL_LIBS})
add_dependencies(e2e_workflow sgmq_clockshift)
target_compile_definitions(e2e_workflow PRIVATE
    SGMQ_CLOCKSHIFT_LIB="$<TARGET_FILE:sgmq_clockshift>")
# A client in another language, from PROTOCOL.md alone: Debian's Python
# (not whatever python3 is first on PATH) with python3-zmq and python3-msgpack.
add_test(NAME e2e_python
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_python_client.py
                 $<TARGET_FILE:sgmq-broker> $<TARGET_FILE:sgmq>)
set_tests_properties(e2e_python PROPERTIES LABELS e2e TIMEOUT 120)
# One key floods the broker from many connections and resets them (a
# review aborted libzmq this way); raw frames, so Python as above.
add_test(NAME e2e_flood
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_flood.py
                 $<TARGET_FILE:sgmq-broker> $<TARGET_FILE:sgmq>)
set_tests_properties(e2e_flood PROPERTIES LABELS e2e TIMEOUT 300)
# Input libzmq holds out of the broker's sight (a reused routing id):
# past limits/max-memory the broker drops every connection and goes on.
add_test(NAME e2e_guard
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_guard.py
                 $<TARGET_FILE:sgmq-broker> $<TARGET_FILE:sgmq>)
set_tests_properties(e2e_guard PROPERTIES LABELS e2e TIMEOUT 300)
sgmq_test(e2e_cli SOURCES e2e/test_cli.c LIBS sgmq_e2e LABELS e2e TIMEOUT 600)
sgmq_test(e2e_bounds SOURCES e2e/test_bounds.c LIBS sgmq_e2e LABELS e2e TIMEOUT 300)
