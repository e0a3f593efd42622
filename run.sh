#!/usr/bin/env bash
# sgmq: set up, build and run, from nothing. The README's two commands:
#
#   ./run.sh demo    install what is missing, build, and show the partnership
#                    at work on a real broker (exits 0, leaves nothing running)
#   ./run.sh test    install what is missing, build, and run the whole test
#                    pipeline (what CI runs, .ci/run), stage by stage, each
#                    timed, stopping at the first failure:
#                    1. Release build, unit and end-to-end tests (ctest -LE
#                       slow); Debug build (warnings are errors there too)
#                    2. crash and fault tests (ctest -L slow)
#                    3. each fuzzer for SGMQ_FUZZ_SECONDS (default 60)
#                    4. unit and end-to-end tests again, built with ASan +
#                       UBSan (LeakSanitizer included: zero leaks, in the
#                       tests and in every broker and CLI they start)
#                    5. a subset of end-to-end tests with the broker under
#                       valgrind memcheck (zero errors, zero definite leaks)
#
# Packages come from Debian with apt-get (skipped quickly when present).
# Builds go to build*/ in the source tree; demo data to $SGMQ_DEMO_DIR
# (default ~/.local/share/sgmq-demo), never to the source tree.
#
# Knobs for the test pipeline: SGMQ_FUZZ_SECONDS (per fuzzer),
# SGMQ_SANITIZE_SCALE and SGMQ_VALGRIND_SCALE (SGMQ_TEST_SCALE, the factor
# on every time limit inside the tests, for those stages; default 3 and
# 10), SGMQ_VALGRIND_TESTS (a ctest -R regex), SGMQ_CRASH_CYCLES (broker
# kills in the crash test).
set -euo pipefail
cd "$(dirname "$0")"

BUILD_PACKAGES="pkg-config libzmq3-dev libczmq-dev libsodium-dev libmsgpack-dev
    liblmdb-dev libcmocka-dev"
TEST_PACKAGES="clang libclang-rt-14-dev llvm python3 python3-zmq python3-msgpack
    valgrind"
JOBS=$(nproc 2>/dev/null || echo 2)

say() { printf '\n== %s\n' "$*"; }

# Install the Debian packages that are not installed yet.
install_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    say "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# configure DIR TYPE [cmake options...]
configure() {
    local dir=$1 type=$2
    shift 2
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
}

# build DIR TYPE [cmake options...]: configure and build everything.
build() {
    configure "$@"
    # Progress to /dev/null; compiler errors (stderr) still show.
    cmake --build "$1" -j"$JOBS" >/dev/null
}

stage_start=0
stage_name=""
stage_times=()
stage() { say "$*"; stage_name=$*; stage_start=$SECONDS; }
stage_end() {
    local took=$((SECONDS - stage_start))
    printf -- '-- %s took %ds\n' "$1" "$took"
    stage_times+=("$(printf '%-34s %5ds' "$1" "$took")")
}

# The end-to-end tests that run with the broker under valgrind: chosen for
# what they reach (CURVE and ZAP, every CLI command, access rules, the
# backup, a full disk and damaged files) within about 3 minutes on 2 cores.
# Left out: e2e_workflow (its reminder tests count timers of 1 to 2 s that
# valgrind's slowdown makes fire more often), e2e_hostile (it bounds the
# broker's RSS, which under valgrind is valgrind's), and the tests that
# start no broker through the harness (e2e_python, e2e_install).
VALGRIND_TESTS='^e2e_(auth|access|cli|backup|faults)$'

run_demo() {
    # shellcheck disable=SC2086
    install_packages $BUILD_PACKAGES
    stage "building sgmq"
    build build Release
    stage_end build
    exec clients/demo.sh build
}

run_tests() {
    # shellcheck disable=SC2086
    install_packages $BUILD_PACKAGES $TEST_PACKAGES
    local total_start=$SECONDS
    # On a failure, say where, with the times of the stages that ran.
    trap 'status=$?; if [ $status -ne 0 ]; then
              printf -- "-- FAILED in stage \"%s\" after %ds\n" "$stage_name" $((SECONDS - stage_start))
              printf "   %s\n" "${stage_times[@]}"
          fi' EXIT

    stage "1. build (Release) and the unit and end-to-end tests; build (Debug)"
    build build Release
    (cd build && ctest --output-on-failure -j"$JOBS" --timeout 600 -LE slow)
    # Debug: warnings are errors here too; valgrind (stage 5) runs it.
    build build-debug Debug -DSGMQ_BENCH=ON
    stage_end "1. build and tests"

    stage "2. crash and fault tests (ctest -L slow)"
    (cd build && ctest --output-on-failure -j"$JOBS" --timeout 900 -L slow)
    stage_end "2. crash and fault tests"

    stage "3. fuzzing (${SGMQ_FUZZ_SECONDS:-60}s per target)"
    # run-all.sh builds only the fuzz targets.
    configure build-fuzz Debug -DCMAKE_C_COMPILER=clang -DSGMQ_FUZZ=ON -DSGMQ_BENCH=OFF
    tests/fuzz/run-all.sh build-fuzz "${SGMQ_FUZZ_SECONDS:-60}"
    stage_end "3. fuzzing"

    stage "4. unit and end-to-end tests under ASan + UBSan + LSan"
    build build-asan Debug -DSGMQ_SANITIZE=ON -DSGMQ_BENCH=OFF
    # Every process the tests start (brokers, the CLI) is built sanitized
    # and inherits these: any report fails its test (a broker that aborts
    # does not exit 0; a CLI that does gives the wrong exit code).
    (cd build-asan \
        && SGMQ_TEST_SCALE="${SGMQ_SANITIZE_SCALE:-3}" \
           ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
           UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
           ctest --output-on-failure -j"$JOBS" --timeout 900 -LE slow)
    stage_end "4. sanitizers"

    stage "5. end-to-end subset with the broker under valgrind memcheck"
    # --error-exitcode: a broker with any error (or a definite leak) exits
    # 99, which the test sees as a failed stop. Each broker also logs to
    # its own file, so errors in a broker the test killed are found too.
    # (The harness splits the wrapper at spaces: no spaces in this path.)
    local vglogs=$PWD/build-debug/valgrind
    rm -rf "$vglogs"
    mkdir -p "$vglogs"
    (cd build-debug \
        && SGMQ_TEST_SCALE="${SGMQ_VALGRIND_SCALE:-10}" \
           SGMQ_BROKER_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-fds=no --log-file=$vglogs/broker.%p.log" \
           ctest --output-on-failure -j"$JOBS" --timeout 900 \
                 -R "${SGMQ_VALGRIND_TESTS:-$VALGRIND_TESTS}")
    local reports report
    reports=$(find "$vglogs" -type f -size +0)
    if [ -n "$reports" ]; then
        for report in $reports; do
            printf '\n%s:\n' "$report"
            cat "$report"
        done
        echo "valgrind found errors in a broker (above)" >&2
        exit 1
    fi
    echo "valgrind: $(find "$vglogs" -type f | wc -l) broker runs, no errors"
    stage_end "5. valgrind"

    say "all passed in $((SECONDS - total_start))s"
    printf '   %s\n' "${stage_times[@]}"
    printf '   %-34s %5ds\n' "total" $((SECONDS - total_start))
}

case "${1:-}" in
    demo) run_demo ;;
    test) run_tests ;;
    *)
        echo "usage: ./run.sh demo | test" >&2
        exit 2
        ;;
esac
