# Benchmarks: built (SGMQ_BENCH=ON), never registered as tests. Run them by
# hand and record the figures in BENCHMARKS.md.

# store_bench: synced appends/s and acks/s at batch sizes 1..1000, plus the
# raw LMDB ceiling on the same disk.
add_executable(store_bench bench/store_bench.c)
target_link_libraries(store_bench PRIVATE sgmq_store sgmq_testutil)

# sgmq-bench: the real broker end to end (publish -> confirm throughput and
# latency, fan-out, replay, RSS, scaling). See BENCHMARKS.md, "Broker".
find_package(Threads REQUIRED)
add_executable(sgmq-bench bench/sgmq_bench.c bench/bench_util.c)
target_link_libraries(sgmq-bench PRIVATE sgmq_client sgmq_certs Threads::Threads m)
target_compile_definitions(sgmq-bench PRIVATE
    SGMQ_BROKER_BIN="$<TARGET_FILE:sgmq-broker>" SGMQ_CLI_BIN="$<TARGET_FILE:sgmq>")
add_dependencies(sgmq-bench sgmq-broker sgmq)

# sgmq-ceilings: this machine's ceilings (synced 4 KiB writes, LMDB synced
# commits, raw CURVE round trips) and the Redis / NATS drivers that
# tests/bench/compare.sh runs. Needs hiredis (libhiredis-dev) for the Redis
# reply parser; compare.sh installs it.
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
if(HIREDIS_FOUND)
    add_executable(sgmq-ceilings bench/ceilings.c bench/bench_util.c)
    target_link_libraries(sgmq-ceilings PRIVATE PkgConfig::HIREDIS PkgConfig::LMDB
                          PkgConfig::CZMQ PkgConfig::ZMQ PkgConfig::SODIUM Threads::Threads)
endif()
