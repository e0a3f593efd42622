#!/usr/bin/env bash
# compare.sh - sgmq against Redis 7 Streams and NATS JetStream, and this
# machine's ceilings, in one run on one machine. See BENCHMARKS.md, "Broker".
#
#   tests/bench/compare.sh [--runs N] [--duration S] [--sizes 1024,128]
#                          [--build DIR] [--out DIR] [--no-build] [--scale]
#                          [--skip sgmq,redis,nats,ceilings]
#
# Installs what it needs from Debian (redis-server, redis-tools, nats-server,
# libhiredis-dev), builds sgmq-bench and sgmq-ceilings (Release), starts
# each peer server on loopback by its PID and stops it by that PID, and
# writes everything under --out (default /tmp/sgmq-compare-DATE):
#   sgmq.json (sgmq-bench --json), peers.jsonl, ceilings.jsonl, machine.txt,
#   report.md (the table with ratios sgmq / peer and the targets) and,
#   with --scale, scaling.svg. Temporary data folders are removed at the end.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs=3
duration=5
sizes="1024,128"
build=/tmp/build-bench
out=""
do_build=1
scale=0
skip=","
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --sizes) sizes="$2"; shift 2 ;;
        --build) build="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --no-build) do_build=0; shift ;;
        --scale) scale=1; shift ;;
        --skip) skip=",$2,"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
out="${out:-/tmp/sgmq-compare-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
work="$(mktemp -d /tmp/sgmq-compare-work-XXXXXX)"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    chattr -R -S "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

log() { echo "compare: $*" >&2; }
skipped() { [[ "$skip" == *",$1,"* ]]; }

# ---------------------------------------------------------------------------
# Packages and build

need=()
for pkg in redis-server redis-tools nats-server libhiredis-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$do_build" = 1 ]; then
    log "building in $build"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSGMQ_BENCH=ON >/dev/null
    cmake --build "$build" -j2 --target sgmq-bench sgmq-ceilings sgmq-broker sgmq >/dev/null
fi
bench="$build/tests/sgmq-bench"
ceil="$build/tests/sgmq-ceilings"

# A free loopback port (the kernel picks it; a race with another program
# binding it in between is possible but harmless: the server would fail to
# start and the script would stop).
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    local port=$1 pid=$2
    for _ in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

peak_rss_mib() {
    awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------------------
# The machine

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel: $(uname -srm)"
    echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "data dir: /tmp on $(findmnt -n -o FSTYPE -T /tmp) ($(findmnt -n -o SOURCE -T /tmp))"
    echo "free disk: $(df -h --output=avail /tmp | tail -1 | tr -d ' ') of $(df -h --output=size /tmp | tail -1 | tr -d ' ')"
    echo "memory: $(free -g | awk '/Mem:/ { print $2 }') GiB"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "redis: $(redis-server --version | cut -d' ' -f3)"
    echo "nats-server: $(nats-server --version 2>&1 | head -1)"
    echo "busiest other processes at start:"
    ps -eo pcpu,comm --sort=-pcpu | head -4 | tail -3 | sed 's/^/  /'
} > "$out/machine.txt"
cat "$out/machine.txt" >&2

IFS=',' read -r -a size_list <<< "$sizes"
peers="$out/peers.jsonl"
ceilings="$out/ceilings.jsonl"
: > "$peers"
: > "$ceilings"

# Tag each JSON line with the peer mode.
tag() { sed "s/^{/{\"mode\": \"$1\", /"; }

# ---------------------------------------------------------------------------
# Ceilings

if ! skipped ceilings; then
    log "ceilings"
    for _ in $(seq 1 "$runs"); do
        "$ceil" disk "$work" "$duration" >> "$ceilings"
        "$ceil" disk-lat "$work" 2000 "$duration" >> "$ceilings"
        "$ceil" lmdb "$work" 1 "$duration" >> "$ceilings"
        "$ceil" lmdb "$work" 1000 "$duration" >> "$ceilings"
        for size in "${size_list[@]}"; do
            "$ceil" curve "$size" 1000 "$duration" >> "$ceilings"
        done
    done
fi

# ---------------------------------------------------------------------------
# Redis 7 Streams, AOF with appendfsync always (RDB snapshots off, so no
# fork runs during the measurement; AOF rewrite left at its defaults)

if ! skipped redis; then
    log "redis (appendonly yes, appendfsync always)"
    rdir="$work/redis"
    mkdir -p "$rdir"
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$rdir" --appendonly yes \
        --appendfsync always --save '' --protected-mode no --daemonize no \
        --logfile "$rdir/redis.log" &
    rpid=$!
    pids+=("$rpid")
    wait_port "$port" "$rpid" || { log "redis did not start"; cat "$rdir/redis.log" >&2; exit 1; }
    for size in "${size_list[@]}"; do
        data="$(head -c "$size" /dev/zero | tr '\0' a)"
        for _ in $(seq 1 "$runs"); do
            "$ceil" redis-pub "$port" "$size" 1 1000 "$duration" | tag always >> "$peers"
            "$ceil" redis-pub "$port" "$size" 8 100 "$duration" | tag always >> "$peers"
            n=$(( size > 512 ? 400000 : 800000 ))
            rps=$(redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -P 16 -n "$n" --csv \
                      XADD "rb:$size" '*' d "$data" | tail -1 | cut -d, -f2 | tr -d '"')
            echo "{\"mode\": \"always\", \"shape\": \"throughput\", \"peer\": \"redis\", \"size\": $size, \"case\": \"redis-benchmark 50 clients -P 16\", \"rate\": $rps}" >> "$peers"
            "$ceil" redis-lat "$port" "$size" 2000 "$duration" | tag always >> "$peers"
            "$ceil" redis-lat "$port" "$size" 10000 "$duration" | tag always >> "$peers"
            "$ceil" redis-fanout "$port" "$size" 10 "$duration" | tag always >> "$peers"
            "$ceil" redis-replay "$port" "$size" 200000 | tag always >> "$peers"
            redis-cli -p "$port" FLUSHALL >/dev/null
        done
    done
    echo "{\"mode\": \"always\", \"shape\": \"rss\", \"peer\": \"redis\", \"size\": 0, \"case\": \"server peak\", \"rate\": $(peak_rss_mib "$rpid")}" >> "$peers"
    stop_pid "$rpid"
fi

# ---------------------------------------------------------------------------
# NATS JetStream 2.9, file storage: its default (no fsync before the ack)
# and a data folder with ext4's synchronous flag (chattr +S: every write is
# synchronous), the strongest sync 2.9 can be given.

run_nats() {
    local mode=$1
    local ndir="$work/nats-$mode"
    mkdir -p "$ndir/js"
    if [ "$mode" = "sync" ]; then
        if ! chattr +S "$ndir/js" 2>/dev/null; then
            log "chattr +S is not supported here: no NATS sync figures"
            return 0
        fi
        chattr +S "$ndir"
        lsattr -d "$ndir/js" >&2
    fi
    local port
    port=$(free_port)
    nats-server -js -sd "$ndir/js" -a 127.0.0.1 -p "$port" > "$ndir/nats.log" 2>&1 &
    local npid=$!
    pids+=("$npid")
    wait_port "$port" "$npid" || { log "nats-server did not start"; cat "$ndir/nats.log" >&2; exit 1; }
    sleep 0.5
    for size in "${size_list[@]}"; do
        for _ in $(seq 1 "$runs"); do
            "$ceil" nats-pub "$port" "$size" 1 1000 "$duration" | tag "$mode" >> "$peers"
            "$ceil" nats-pub "$port" "$size" 8 100 "$duration" | tag "$mode" >> "$peers"
            "$ceil" nats-lat "$port" "$size" 2000 "$duration" | tag "$mode" >> "$peers"
            "$ceil" nats-lat "$port" "$size" 10000 "$duration" | tag "$mode" >> "$peers"
        done
    done
    echo "{\"mode\": \"$mode\", \"shape\": \"rss\", \"peer\": \"nats\", \"size\": 0, \"case\": \"server peak\", \"rate\": $(peak_rss_mib "$npid")}" >> "$peers"
    stop_pid "$npid"
}

if ! skipped nats; then
    log "nats jetstream (default: no fsync before the ack)"
    run_nats default
    log "nats jetstream (sync: chattr +S data folder)"
    run_nats sync
fi

# ---------------------------------------------------------------------------
# sgmq

if ! skipped sgmq; then
    log "sgmq-bench"
    only="throughput,latency,fanout,replay,rss"
    [ "$scale" = 1 ] && only="$only,scale-members,scale-store"
    "$bench" --runs "$runs" --duration "$duration" --sizes "$sizes" --only "$only" \
        --json "$out/sgmq.json" > "$out/sgmq.txt"
fi

# ---------------------------------------------------------------------------
# Report

/usr/bin/python3 "$here/report.py" --dir "$out" > "$out/report.md"
cat "$out/report.md"
log "results in $out"
