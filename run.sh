#!/usr/bin/env bash
# sgmq: set up, build and run, from nothing. The README's two commands:
#
#   ./run.sh demo    install what is missing, build, and show the partnership
#                    at work on a real broker (exits 0, leaves nothing running)
#   ./run.sh test    install what is missing, build, and run the whole test
#                    suite: unit and end-to-end tests, then the fuzzers
#
# Packages come from Debian with apt-get (skipped quickly when present).
# Builds go to build/ in the source tree; demo data to $SGMQ_DEMO_DIR
# (default ~/.local/share/sgmq-demo), never to the source tree.
set -euo pipefail
cd "$(dirname "$0")"

BUILD_PACKAGES="pkg-config libzmq3-dev libczmq-dev libsodium-dev libmsgpack-dev
    liblmdb-dev libcmocka-dev"
TEST_PACKAGES="clang libclang-rt-14-dev llvm python3 python3-zmq python3-msgpack"
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
stage() { say "$*"; stage_start=$SECONDS; }
stage_end() { printf -- '-- %s took %ds\n' "$1" $((SECONDS - stage_start)); }

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

    stage "build (Release) and all tests"
    build build Release
    (cd build && ctest --output-on-failure -j"$JOBS" --timeout 600)
    stage_end "build and tests"

    stage "build (Debug): warnings are errors here too"
    build build-debug Debug -DSGMQ_BENCH=ON
    stage_end "debug build"

    stage "fuzzing (bounded time per target)"
    # run-all.sh builds only the fuzz targets.
    configure build-fuzz Debug -DCMAKE_C_COMPILER=clang -DSGMQ_FUZZ=ON -DSGMQ_BENCH=OFF
    tests/fuzz/run-all.sh build-fuzz "${SGMQ_FUZZ_SECONDS:-60}"
    stage_end fuzzing

    say "all passed in $((SECONDS - total_start))s"
}

case "${1:-}" in
    demo) run_demo ;;
    test) run_tests ;;
    *)
        echo "usage: ./run.sh demo | test" >&2
        exit 2
        ;;
esac
