#!/usr/bin/env bash
#  run-fuzz.sh - run one libFuzzer target for a bounded time.
#
#  Usage: tests/fuzz/run-fuzz.sh TARGET_BINARY CORPUS_DIR SECONDS [FUZZER_ARGS...]
#
#  Fuzzes a copy of CORPUS_DIR in a temporary directory, so the checked-in
#  corpus only grows when someone copies inputs into it on purpose. Exits 0
#  if the time ran out with no failure; otherwise non-zero, after printing
#  the path of the input that failed (kept under SGMQ_FUZZ_ARTIFACTS,
#  default tests/fuzz/artifacts/<target>/). To keep what the run
#  discovered, set SGMQ_FUZZ_KEEP=1: the grown copy is then left in place
#  and its path printed.
#
#  Works for any libFuzzer binary; extra arguments go to the fuzzer
#  (e.g. -jobs=2 -workers=2, -dict=FILE, -max_len=N).

set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 TARGET_BINARY CORPUS_DIR SECONDS [FUZZER_ARGS...]" >&2
    exit 2
fi
target=$1
corpus=$2
seconds=$3
shift 3

if [ ! -x "$target" ]; then
    echo "run-fuzz: $target is not an executable" >&2
    exit 2
fi
if [ ! -d "$corpus" ]; then
    echo "run-fuzz: $corpus is not a directory" >&2
    exit 2
fi
case $seconds in
    ''|*[!0-9]*) echo "run-fuzz: SECONDS must be a whole number" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
name=$(basename "$target")
artifacts=${SGMQ_FUZZ_ARTIFACTS:-$here/artifacts/$name}
mkdir -p "$artifacts"

work=$(mktemp -d "${TMPDIR:-/tmp}/sgmq-fuzz-$name.XXXXXX")
cleanup () {
    if [ "${SGMQ_FUZZ_KEEP:-0}" = 1 ]; then
        echo "run-fuzz: grown corpus kept in $work/corpus"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

mkdir "$work/corpus"
cp -R "$corpus"/. "$work/corpus/"
before=$(find "$work/corpus" -type f | wc -l)

echo "run-fuzz: $name on a copy of $corpus ($before inputs) for ${seconds}s"
status=0
"$target" \
    -max_total_time="$seconds" \
    -rss_limit_mb=2048 \
    -timeout=25 \
    -print_final_stats=1 \
    -artifact_prefix="$artifacts/" \
    "$@" \
    "$work/corpus" 2>&1 | tee "$work/log" || status=$?

after=$(find "$work/corpus" -type f | wc -l)
echo "run-fuzz: corpus grew from $before to $after inputs"
if [ "$status" -ne 0 ]; then
    #  libFuzzer names the failing input on a line like
    #  "Test unit written to /path/crash-<sha1>".
    failing=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$work/log" | tail -n 1)
    echo "run-fuzz: FAILED (exit $status)" >&2
    if [ -n "$failing" ]; then
        echo "run-fuzz: failing input: $failing" >&2
        echo "run-fuzz: reproduce with: $target $failing" >&2
    fi
    exit 1
fi
echo "run-fuzz: no failure in ${seconds}s"
