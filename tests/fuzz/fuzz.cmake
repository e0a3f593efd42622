# Fuzz targets. Each tests/fuzz/fuzz_<name>.c is a libFuzzer target that,
# built without SGMQ_FUZZING, is also a plain program replaying its corpus
# in tests/fuzz/corpus/<name>/: that replay is a ctest (label unit), so every
# checked-in crasher stays fixed.
#
#   cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DSGMQ_FUZZ=ON
#   cmake --build build-fuzz --target fuzz_proto
#   tests/fuzz/run-fuzz.sh build-fuzz/tests/fuzz_proto tests/fuzz/corpus/proto 300

set(SGMQ_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

sgmq_test(fuzz_proto_corpus
    SOURCES ${SGMQ_FUZZ_DIR}/fuzz_proto.c
    LIBS sgmq_proto
    LABELS unit
    ARGS ${SGMQ_FUZZ_DIR}/corpus/proto
    TIMEOUT 120)

if(SGMQ_FUZZ)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
        message(FATAL_ERROR "SGMQ_FUZZ needs clang (-DCMAKE_C_COMPILER=clang)")
    endif()
    set(SGMQ_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined
                        -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

    # sgmq_fuzz_library (TARGET): an instrumented copy of a library, so the
    # fuzzer sees coverage inside the code under test, not just the driver.
    function(sgmq_fuzz_library target)
        get_target_property(sources ${target} SOURCES)
        get_target_property(dir ${target} SOURCE_DIR)
        set(absolute "")
        foreach(source ${sources})
            if(IS_ABSOLUTE ${source})
                list(APPEND absolute ${source})
            else()
                list(APPEND absolute ${dir}/${source})
            endif()
        endforeach()
        add_library(${target}_fuzz STATIC ${absolute})
        target_include_directories(${target}_fuzz PUBLIC ${dir})
        target_link_libraries(${target}_fuzz PUBLIC
            $<TARGET_PROPERTY:${target},INTERFACE_LINK_LIBRARIES>)
        target_compile_options(${target}_fuzz PRIVATE
            -fsanitize=fuzzer-no-link,address,undefined
            -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
    endfunction()

    # sgmq_fuzz_target (NAME LIBRARY): tests/fuzz/fuzz_NAME.c against LIBRARY.
    function(sgmq_fuzz_target name library)
        if(NOT TARGET ${library}_fuzz)
            sgmq_fuzz_library(${library})
        endif()
        add_executable(fuzz_${name} ${SGMQ_FUZZ_DIR}/fuzz_${name}.c)
        target_compile_definitions(fuzz_${name} PRIVATE SGMQ_FUZZING)
        target_compile_options(fuzz_${name} PRIVATE ${SGMQ_FUZZ_FLAGS})
        target_link_options(fuzz_${name} PRIVATE ${SGMQ_FUZZ_FLAGS})
        target_link_libraries(fuzz_${name} PRIVATE ${library}_fuzz)
    endfunction()

    sgmq_fuzz_target(proto sgmq_proto)
endif()
