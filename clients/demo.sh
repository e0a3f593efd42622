#!/usr/bin/env bash
# The sgmq demo: a partnership at work on a real broker, with the real
# command line. Run by `./run.sh demo` (after the build); usable alone as
# clients/demo.sh BUILD_DIR.
#
# First run: makes a deployment and the principals' certificates under
# $SGMQ_DEMO_DIR (default ~/.local/share/sgmq-demo). Later runs reuse
# them, so the history (and its audit chain) grows run by run.
# Ends with the broker stopped by its PID and exit code 0.
set -euo pipefail

BUILD=$(cd "${1:-build}" && pwd)
SGMQ=$BUILD/clients/sgmq
BROKER=$BUILD/broker/sgmq-broker
DATA=${SGMQ_DEMO_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/sgmq-demo}
DEPLOY=$DATA/deployment
KEYS=$DATA/principals

step() { printf '\n\033[1m-- %s\033[0m\n' "$*"; }
show() { printf '$ sgmq'; printf ' %q' "$@"; printf '\n'; "$SGMQ" "$@"; }

# as WHO sgmq-args...: run sgmq with WHO's secret cert
as() {
    local who=$1
    shift
    printf '[%s] ' "$who"
    SGMQ_CERT=$KEYS/$who.cert_secret show "$@"
}

mkdir -p "$DATA"
if [ ! -f "$DEPLOY/sgmq.cfg" ]; then
    step "first run: a new deployment in $DEPLOY"
    show init "$DEPLOY" --endpoint 'tcp://127.0.0.1:*'
    mkdir -p "$KEYS"
    chmod 700 "$KEYS"
    # principal file, name, agency, roles, groups
    while IFS='|' read -r file name agency roles groups; do
        "$SGMQ" cert new --name "$name" --agency "$agency" --role "$roles" \
            ${groups:+--groups "$groups"} --out "$KEYS/$file.cert" --admit "$DEPLOY" >/dev/null
    done <<'EOF'
police|Police case system|Metropolitan Police|publisher|exploitation
exploitation-chair|Exploitation sub-group chair|Local Authority Exploitation Service|member,publisher|exploitation
executive-cs|Executive member (Children's Services)|Local Authority Children's Services|member|executive
executive-icb|Executive member (ICB)|Integrated Care Board|member|executive
rrwg-chair|Rapid Review Working Group chair|Local Authority Safeguarding and QA|member,publisher|rapid-review-working-group
scrutineer|Independent scrutineer|Safeguarding Partnership|auditor|
EOF
    # A laptop with a certificate that was never admitted.
    "$SGMQ" cert new --name "Unadmitted laptop" --agency "Unknown" --role member \
        --out "$KEYS/stranger.cert" >/dev/null
    show cert list "$DEPLOY/certs" --config "$DEPLOY/sgmq.cfg"
else
    step "reusing the deployment in $DEPLOY"
fi

step "starting the broker"
: > "$DATA/broker.out"
"$BROKER" --config "$DEPLOY/sgmq.cfg" >"$DATA/broker.out" 2>"$DATA/broker.log" &
BROKER_PID=$!
stop_broker() {
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID"
        wait "$BROKER_PID" || true
    fi
}
trap stop_broker EXIT
# Wait (bounded) for its "ready on ENDPOINT" line.
for _ in $(seq 200); do
    grep -q 'ready on' "$DATA/broker.out" && break
    kill -0 "$BROKER_PID" 2>/dev/null || { cat "$DATA/broker.log"; exit 1; }
    sleep 0.05
done
ENDPOINT=$(sed -n 's/.*ready on //p' "$DATA/broker.out")
[ -n "$ENDPOINT" ] || { echo "the broker did not start" >&2; exit 1; }
echo "sgmq-broker (pid $BROKER_PID) ready on $ENDPOINT"
export SGMQ_BROKER=$ENDPOINT SGMQ_SERVER_CERT=$DEPLOY/broker.cert

step "who the broker says each key is (CURVE keys admitted from certs/)"
as police whoami
as executive-cs whoami --json
step "a key that was never admitted is refused (exit code 3)"
set +e
as stranger whoami
echo "exit code $?"
set -e

step "the police system escalates to the Executive on behalf of the exploitation sub-group"
ESC=$(SGMQ_CERT=$KEYS/police.cert_secret "$SGMQ" publish escalation \
    --group exploitation --title "Return interviews not reaching MACE" \
    --summary "Return-home interviews for children missing from care are not shared with the MACE panel in time." \
    --severity high --requested "Agree a data-sharing protocol between police and children's services" \
    --respond-by "$(date -u -d '+10 days' +%Y-%m-%d)" --case-ref "MACE-2026-014")
echo "stored as message $ESC (confirmed after it was on disk)"

step "an Executive member receives it and acknowledges"
as executive-icb listen --count 1 --timeout 10 --ack

step "the police system asks who has and has not acknowledged"
as police pending --mine

step "the Executive responds"
RESP=$(SGMQ_CERT=$KEYS/executive-cs.cert_secret "$SGMQ" publish response --to "$ESC" \
    --decision "Protocol agreed" --summary "Children's services will share return interviews within 72 hours." \
    --action "Children's services to circulate the protocol" --action "Police to confirm MACE attendance")
echo "response stored as message $RESP"

step "the raising group (exploitation) receives the Executive's response"
as exploitation-chair listen --count 1 --timeout 10 --ack

step "the Rapid Review Working Group publishes learning from a CSPR"
LEARN=$(SGMQ_CERT=$KEYS/rrwg-chair.cert_secret "$SGMQ" publish learning --review-type cspr \
    --review-ref "CSPR-2026-03" --title "Infant neglect: professional curiosity" \
    --summary "Learning from a child safeguarding practice review about an infant." \
    --theme "professional curiosity" --theme "information sharing" \
    --recommendation "Health visitors to record who else lives in the home" \
    --groups executive,exploitation)
echo "learning alert stored as message $LEARN (learning session due in 14 days, reflection in a year)"
as executive-cs listen --timeout 3 --ack --json

step "what is still outstanding, for the Executive"
as executive-cs pending --all

step "the learning session was held"
as rrwg-chair publish learning-update --alert "$LEARN" --held session

step "the independent scrutineer replays the escalations and verifies the audit chain"
as scrutineer replay --kind escalation --format csv
as scrutineer verify --signing-pub "$DEPLOY/signing.pub"

step "the Escalation Tracker for the papers of the next Executive meeting"
as executive-cs tracker --since "$(date -u -d '-31 days' +%Y-%m-%d)" \
    --out "$DATA/escalation-tracker.html" --csv "$DATA/escalation-tracker.csv"
echo "open $DATA/escalation-tracker.html in a browser (it prints on A4)"

# Leave nothing unacknowledged for the next run.
for who in executive-cs executive-icb exploitation-chair; do
    SGMQ_CERT=$KEYS/$who.cert_secret "$SGMQ" listen --ack --timeout 1 >/dev/null 2>&1 || true
done

step "stopping the broker"
stop_broker
trap - EXIT
echo "sgmq-broker stopped; its log is in $DATA/broker.log"
echo "demo finished: data in $DATA"
