#!/bin/bash
# e2e_install: libsgmq as a program outside this tree uses it.
#
# Installs the build into a temporary prefix (`cmake --install`), checks
# what was installed (the library, its symlinks, the headers, sgmq.pc,
# and that libsgmq.so exports exactly the API its headers declare),
# builds clients/examples with its own Makefile and `pkg-config sgmq`
# against that prefix only, then runs the example against a real broker
# from the build tree in a new deployment (`sgmq init`, `sgmq cert new
# --admit`): it must print the escalation's seq and exit 0, and the broker
# must stop on SIGTERM with status 0.
#
# usage: test_install.sh CMAKE BUILD_DIR BROKER_BIN CLI_BIN EXAMPLES_DIR [SANITIZE]
# Waits are bounded and scaled by SGMQ_TEST_SCALE, like the C tests'.
set -euo pipefail

cmake_bin=$1 build_dir=$2 broker_bin=$3 cli_bin=$4 examples=$5
sanitize=${6:-OFF}

fail () {
    echo "e2e_install: FAIL: $*" >&2
    exit 1
}

# Seconds, scaled by SGMQ_TEST_SCALE (at least 1) and rounded up.
secs () {
    awk -v s="$1" -v k="${SGMQ_TEST_SCALE:-1}" \
        'BEGIN { if (k < 1) k = 1; v = s * k; print (v == int (v)) ? v : int (v) + 1 }'
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sgmq-install.XXXXXX")
broker_pid=
ready_fd=
cleanup () {
    local rc=$?
    if [[ -n $broker_pid ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -KILL "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    if [[ -n $ready_fd ]]; then
        exec {ready_fd}<&-
    fi
    if [[ $rc -ne 0 && -s $tmp/broker.log ]]; then
        echo "--- the broker's log:" >&2
        cat "$tmp/broker.log" >&2
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT

# 1. Install into a prefix of our own: nothing from the build tree is used
#    past this point except the broker and the CLI.
prefix=$tmp/prefix
"$cmake_bin" --install "$build_dir" --prefix "$prefix" > "$tmp/install.log" \
    || fail "cmake --install: $(cat "$tmp/install.log")"
pc=$(find "$prefix" -name sgmq.pc -path '*/pkgconfig/*' -print -quit)
[[ -n $pc ]] || fail "no sgmq.pc under $prefix"
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH=$libdir/pkgconfig
for header in sgmq_client.h sgmq_proto.h; do
    [[ -f $prefix/include/$header ]] || fail "$header not installed"
done
# Everything under the prefix, the systemd unit too (it once went to the
# configure-time prefix whatever --prefix said).
unit=$prefix/lib/systemd/system/sgmq-broker.service
[[ -f $unit ]] || fail "sgmq-broker.service not installed under $prefix"
grep -q "^ExecStart=$prefix/bin/sgmq-broker " "$unit" \
    || fail "the unit does not start $prefix/bin/sgmq-broker: $(grep '^ExecStart' "$unit")"
outside=$(grep -E '^-- (Installing|Up-to-date): ' "$tmp/install.log" \
          | grep -v -- " $prefix/" || true)
[[ -z $outside ]] || fail "installed outside --prefix: $outside"
[[ -L $libdir/libsgmq.so && -L $libdir/libsgmq.so.0 ]] \
    || fail "libsgmq.so and libsgmq.so.0 should be symlinks"
[[ $(readlink "$libdir/libsgmq.so") == libsgmq.so.0 ]] \
    || fail "libsgmq.so -> $(readlink "$libdir/libsgmq.so")"
soname=$(objdump -p "$libdir/libsgmq.so" | awk '$1 == "SONAME" { print $2 }')
[[ $soname == libsgmq.so.0 ]] || fail "SONAME is '$soname'"
[[ $(pkg-config --variable=prefix sgmq) == "$prefix" ]] \
    || fail "sgmq.pc names prefix $(pkg-config --variable=prefix sgmq), not $prefix"
pkg-config --exists --print-errors sgmq || fail "pkg-config cannot use sgmq.pc"

# 2. The ABI: every function the installed headers declare is exported,
#    and nothing else of ours (no certs, no internals).
nm -D --defined-only "$libdir/libsgmq.so" | awk '{ print $3 }' \
    | sed 's/@.*//' | grep '^sgmq_' | sort -u > "$tmp/exported"
sed 's|//.*||' "$prefix/include/sgmq_client.h" "$prefix/include/sgmq_proto.h" \
    | grep -v '^ *typedef' | grep -oE '\bsgmq_[a-z0-9_]+ *\(' \
    | sed 's/ *($//' | sort -u > "$tmp/declared"
[[ -s $tmp/declared ]] || fail "no functions found in the installed headers"
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
[[ -z $missing ]] || fail "declared but not exported: $missing"
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
[[ -z $extra ]] || fail "exported but not in the headers: $extra"

# 3. Build the example as its users would: its own Makefile, pkg-config.
cp -R "$examples" "$tmp/examples"
make_flags=()
if [[ $sanitize == ON ]]; then
    # libsgmq.so is built with ASan+UBSan: the program must load the
    # sanitizer runtime first, so it is built with them too.
    san="-fsanitize=address,undefined -fno-omit-frame-pointer"
    make_flags=("CFLAGS=-O1 -g $san" "LDFLAGS=$san")
fi
make -C "$tmp/examples" "${make_flags[@]}" > "$tmp/make.log" 2>&1 \
    || fail "building the example: $(cat "$tmp/make.log")"
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
ldd "$tmp/examples/escalate" | grep "$libdir/libsgmq.so.0" >/dev/null \
    || fail "the example does not use the installed libsgmq: $(ldd "$tmp/examples/escalate")"

# 4. A deployment and a broker from the build tree, on a free port.
"$cli_bin" init "$tmp/deploy" --endpoint 'tcp://127.0.0.1:*' > /dev/null
"$cli_bin" cert new --name "Police case system" --agency "Metropolitan Police" \
    --role publisher --groups exploitation --out "$tmp/police.cert" \
    --admit "$tmp/deploy" > /dev/null
# A second cert under a name already admitted is refused, and leaves no
# key pair behind: the same command can run again once the name is free.
mkdir "$tmp/other"
if "$cli_bin" cert new --name "Police case system" --agency "Metropolitan Police" \
       --role publisher --groups exploitation --out "$tmp/other/police.cert" \
       --admit "$tmp/deploy" > /dev/null 2>&1; then
    fail "cert new admitted a second police.cert"
fi
[[ -z $(ls -A "$tmp/other") ]] || fail "a refused cert new left $(ls -A "$tmp/other")"
# The ready line comes through a FIFO so that `read -t` bounds the wait.
mkfifo "$tmp/stdout"
"$broker_bin" --config "$tmp/deploy/sgmq.cfg" > "$tmp/stdout" 2> "$tmp/broker.log" &
broker_pid=$!
exec {ready_fd}< "$tmp/stdout"
line=
read -r -t "$(secs 10)" -u "$ready_fd" line || true
[[ $line == "sgmq-broker: ready on "* ]] || fail "the broker did not say it was ready: '$line'"
endpoint=${line#sgmq-broker: ready on }
[[ $endpoint =~ ^tcp://127\.0\.0\.1:[0-9]+$ ]] || fail "odd endpoint '$endpoint'"

# 5. The example raises an escalation and gets its confirm.
set +e
out=$(SGMQ_BROKER=$endpoint SGMQ_CERT=$tmp/police.cert_secret \
      SGMQ_SERVER_CERT=$tmp/deploy/broker.cert \
      timeout "$(secs 30)" "$tmp/examples/escalate" 2>&1)
status=$?
set -e
[[ $status -eq 0 ]] || fail "the example exited $status: $out"
[[ $out =~ escalation\ raised\ for\ exploitation:\ seq\ ([0-9]+) ]] \
    || fail "the example printed no seq: $out"
seq=${BASH_REMATCH[1]}
[[ $seq -ge 1 ]] || fail "seq $seq"
[[ $out == *"as Police case system (Metropolitan Police)"* ]] \
    || fail "the broker did not name the principal: $out"

# 6. SIGTERM: a clean stop, status 0, within the time limit.
kill -TERM "$broker_pid"
timeout "$(secs 10)" tail --pid="$broker_pid" -s 0.05 -f /dev/null \
    || fail "the broker did not stop within $(secs 10) s of SIGTERM"
set +e
wait "$broker_pid"
status=$?
set -e
broker_pid=
[[ $status -eq 0 ]] || fail "the broker exited $status after SIGTERM"
echo "e2e_install: ok (seq $seq, $(wc -l < "$tmp/exported") symbols exported)"
