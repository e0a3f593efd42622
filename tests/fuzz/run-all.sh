#!/usr/bin/env bash
#  run-all.sh BUILD_DIR SECONDS: build every libFuzzer target in BUILD_DIR
#  (configured with -DSGMQ_FUZZ=ON) and run each for SECONDS on a copy of
#  its corpus, tests/fuzz/corpus/<name>/. Exits non-zero on the first
#  failure, naming the failing input.
set -euo pipefail
build=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
targets=$(cmake --build "$build" --target help | sed -n 's/^\.\.\. \(fuzz_[a-z_]*\)$/\1/p' \
          | grep -v '_corpus$' || true)
[ -n "$targets" ] || { echo "run-all: no fuzz targets in $build" >&2; exit 1; }
for target in $targets; do
    cmake --build "$build" --target "$target" -j"$(nproc)" >/dev/null
    name=${target#fuzz_}
    "$here/run-fuzz.sh" "$build/tests/$target" "$here/corpus/$name" "$seconds"
done
