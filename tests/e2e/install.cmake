# Operators' and integrators' paths, end to end: libsgmq installed by
# `cmake --install` and used by clients/examples through pkg-config
# (e2e_install), and the online backup restored into a new deployment
# (e2e_backup).
add_test(NAME e2e_install
         COMMAND /bin/bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_install.sh
                 ${CMAKE_COMMAND} ${PROJECT_BINARY_DIR}
                 $<TARGET_FILE:sgmq-broker> $<TARGET_FILE:sgmq>
                 ${PROJECT_SOURCE_DIR}/clients/examples
                 $<IF:$<BOOL:${SGMQ_SANITIZE}>,ON,OFF>)
set_tests_properties(e2e_install PROPERTIES LABELS e2e TIMEOUT 300)

sgmq_test(e2e_backup SOURCES e2e/test_backup.c LIBS sgmq_e2e LABELS e2e TIMEOUT 300)
