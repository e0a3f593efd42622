# proto: the wire codec's unit tests (round trips, canonical bodies,
# hostile input). Included from tests/CMakeLists.txt.
sgmq_test(test_proto
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_proto.c
    LIBS sgmq_proto PkgConfig::MSGPACK
    LABELS unit
    TIMEOUT 120)
