# Every test carries one of the labels the pipeline selects by (.ci/run,
# ./run.sh test): unit (quick, in-process), e2e (the real broker process),
# slow (crash and fault runs; ctest -LE slow skips them). A test without
# one would silently run in the wrong stage or in none, so configuring
# stops here, naming it. Runs last, after every area added its tests.
get_property(sgmq_all_tests DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} PROPERTY TESTS)
foreach(sgmq_test_name ${sgmq_all_tests})
    get_test_property(${sgmq_test_name} LABELS sgmq_test_labels)
    if(NOT sgmq_test_labels)
        set(sgmq_test_labels "")
    endif()
    set(sgmq_test_labelled OFF)
    foreach(sgmq_label unit e2e slow)
        if(sgmq_label IN_LIST sgmq_test_labels)
            set(sgmq_test_labelled ON)
        endif()
    endforeach()
    if(NOT sgmq_test_labelled)
        message(FATAL_ERROR "test ${sgmq_test_name} has no unit, e2e or slow "
                "label (labels: '${sgmq_test_labels}'): give it one where it is "
                "added (sgmq_test LABELS, or set_tests_properties)")
    endif()
endforeach()
