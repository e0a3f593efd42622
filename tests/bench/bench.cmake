# Benchmarks: built (SGMQ_BENCH=ON), never registered as tests. Run them by
# hand and record the figures in BENCHMARKS.md.

# store_bench: synced appends/s and acks/s at batch sizes 1..1000, plus the
# raw LMDB ceiling on the same disk.
add_executable(store_bench bench/store_bench.c)
target_link_libraries(store_bench PRIVATE sgmq_store sgmq_testutil)
