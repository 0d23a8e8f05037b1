#!/usr/bin/env bash
# capture.sh - regenerate the AMQP 1.0 wire fixtures in tests/fixtures/wire.
#
# Usage:
#   tests/peers/capture.sh VENV_DIR [OUT_DIR]
#
#   VENV_DIR  a Python virtualenv for the proton peer. Created with
#             `python3 -m venv` and filled from tests/peers/requirements.txt
#             if it has no proton yet (python-qpid-proton builds from sdist:
#             it needs gcc and the OpenSSL headers, e.g. libssl-dev).
#   OUT_DIR   where the .bin files and README.md go
#             (default: tests/fixtures/wire next to this script's tests/).
#
# Environment:
#   AMQPWIRE      the amqpwire binary for the captures where it is the client
#                 (default: target/release/amqpwire, built with cargo if missing)
#   BASE_PORT     first of the two loopback ports used (default 25700):
#                 BASE_PORT   = the peer acting as server (broker),
#                 BASE_PORT+1 = record_proxy.py, which the client connects to.
#                 Everything binds 127.0.0.1 only.
#   CAPTURE_DATE  date written into README.md (default: today, UTC).
#   ONLY          capture just the fixtures whose name contains this string
#                 (README.md is then not rewritten).
#
# Node packages are installed with `npm ci` into tests/peers/node_modules
# (git-ignored). Nothing is installed globally. Each scenario runs one
# fresh server, one proxy and one client connection; the proxy writes
# <client>-to-<server>-<scenario>.c2s.bin / .s2c.bin: the exact bytes of
# each direction, starting with the 8-byte protocol header.
set -euo pipefail

if [ $# -lt 1 ]; then
    sed -n '2,30p' "$0"
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$1"
OUT="${2:-$HERE/../fixtures/wire}"
BASE_PORT="${BASE_PORT:-25700}"
SERVER_PORT="$BASE_PORT"
PROXY_PORT="$((BASE_PORT + 1))"
CAPTURE_DATE="${CAPTURE_DATE:-$(date -u +%F)}"
ONLY="${ONLY:-}"

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# ------------------------------------------------------------------ install
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import proton' 2>/dev/null; then
    "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
fi
PY="$VENV/bin/python"
if [ ! -d "$HERE/node_modules/rhea" ]; then
    (cd "$HERE" && npm ci --no-audit --no-fund)
fi

RHEA_VERSION="$(cd "$HERE" && node -p 'require("rhea/package.json").version')"
PROTON_VERSION="$("$PY" -c 'import proton; print(".".join(map(str, proton.VERSION)))')"
ROOT="$(cd "$HERE/../.." && pwd)"
if [ -z "${AMQPWIRE:-}" ]; then
    AMQPWIRE="$ROOT/target/release/amqpwire"
    [ -x "$AMQPWIRE" ] || (cd "$ROOT" && cargo build --release --quiet)
fi
AMQPWIRE_VERSION="$("$AMQPWIRE" --version | awk '{ print $2 }')"
RABBITMQ_VERSION="$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo none)"
NODE_VERSION="$(node --version)"
PYTHON_VERSION="$("$PY" -c 'import platform; print(platform.python_version())')"
echo "rhea $RHEA_VERSION (node $NODE_VERSION), python-qpid-proton $PROTON_VERSION (python $PYTHON_VERSION)"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_file() {   # wait_file PATH SECONDS
    local i=0
    while [ ! -s "$1" ]; do
        sleep 0.1
        i=$((i + 1))
        if [ "$i" -ge $(($2 * 10)) ]; then
            echo "timed out waiting for $1" >&2
            return 1
        fi
    done
}

wait_pid() {    # wait_pid PID SECONDS  -> kills it if it has not exited
    local i=0
    while kill -0 "$1" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
        if [ "$i" -ge $(($2 * 10)) ]; then
            echo "process $1 still running; stopping it" >&2
            kill "$1" 2>/dev/null || true
            return 1
        fi
    done
    wait "$1" 2>/dev/null || true
}

peer_cmd() {    # peer_cmd rhea|proton
    if [ "$1" = rhea ]; then echo "node $HERE/rhea_peer.js"; else echo "$PY $HERE/proton_peer.py"; fi
}

# start_proxy FIXTURE: record_proxy.py between PROXY_PORT and SERVER_PORT, writing
# $WORK/FIXTURE.{c2s,s2c}.bin; its pid in PROXY_PID once it listens.
start_proxy() {
    rm -f "$WORK/proxy.ready"
    "$PY" "$HERE/record_proxy.py" --port "$PROXY_PORT" --upstream "$SERVER_PORT" \
        --out "$WORK/$1" --chunks --ready-file "$WORK/proxy.ready" --timeout 60 \
        > "$WORK/$1.proxy.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_file "$WORK/proxy.ready" 20
}

# keep_capture FIXTURE: copy both directions to OUT and check they parse.
keep_capture() {
    cp "$WORK/$1.c2s.bin" "$WORK/$1.s2c.bin" "$OUT/"
    "$PY" "$HERE/amqp_frames.py" --summary "$OUT/$1.c2s.bin" "$OUT/$1.s2c.bin" >/dev/null
}

# capture CLIENT SERVER SCENARIO "server args" "client args"
capture() {
    local client="$1" server="$2" name="$3" sargs="$4" cargs="$5"
    local fixture="$client-to-$server-$name"
    wanted "$fixture" || return 0
    echo "== $fixture"
    rm -f "$WORK/server.ready"
    # shellcheck disable=SC2086
    PEER_QUIET=1 $(peer_cmd "$server") server --port "$SERVER_PORT" --exit-after 1 \
        --ready-file "$WORK/server.ready" $sargs > "$WORK/$fixture.server.log" 2>&1 &
    local spid=$!
    PIDS+=("$spid")
    wait_file "$WORK/server.ready" 20
    start_proxy "$fixture"
    local ppid=$PROXY_PID
    # shellcheck disable=SC2086
    if ! PEER_QUIET=1 $(peer_cmd "$client") client --port "$PROXY_PORT" --scenario $cargs \
        > "$WORK/$fixture.client.log" 2>&1; then
        echo "client failed for $fixture:" >&2
        cat "$WORK/$fixture.client.log" "$WORK/$fixture.server.log" >&2
        exit 1
    fi
    wait_pid "$ppid" 20
    wait_pid "$spid" 20
    keep_capture "$fixture"
}

LARGE_S="--max-frame-size 16384"
LARGE_C="large --max-frame-size 16384"
HB_S="--idle-timeout 2000"
HB_C="heartbeat --idle-timeout 2000"

# wanted FIXTURE: true unless ONLY names something else.
wanted() { [ -z "$ONLY" ] || [[ "$1" == *"$ONLY"* ]]; }

# capture_amqpwire SERVER SCENARIO "amqpwire arguments"
# amqpwire's CLI is the client, through the proxy, of a server the caller has started on
# SERVER_PORT (and stops afterwards).
capture_amqpwire() {
    local server="$1" name="$2" cargs="$3"
    local fixture="amqpwire-to-$server-$name"
    wanted "$fixture" || return 0
    echo "== $fixture"
    start_proxy "$fixture"
    local ppid=$PROXY_PID
    # shellcheck disable=SC2086
    if ! "$AMQPWIRE" $cargs > "$WORK/$fixture.client.log" 2>&1; then
        echo "amqpwire failed for $fixture:" >&2
        cat "$WORK/$fixture.client.log" >&2
        exit 1
    fi
    wait_pid "$ppid" 20
    keep_capture "$fixture"
}

RABBIT_DIR="$WORK/rabbitmq"
stop_rabbitmq() { "$HERE/rabbitmq.sh" stop "$RABBIT_DIR" >/dev/null 2>&1 || true; }

# proton client -> rhea server
capture proton rhea sasl-anonymous "" "basic --count 2 --sasl anonymous"
capture proton rhea sasl-plain     "" "basic --count 2 --sasl plain --user alice --password secret"
capture proton rhea no-sasl        "" "basic --count 2 --sasl none"
capture proton rhea messages       "" "messages"
capture proton rhea large          "$LARGE_S" "$LARGE_C"
capture proton rhea dispositions   "" "dispositions"
capture proton rhea filter-dynamic "" "filter-dynamic"
capture proton rhea heartbeat      "$HB_S" "$HB_C"

# rhea client -> proton server (proton's built-in SASL serves ANONYMOUS only)
capture rhea proton sasl-anonymous "" "basic --count 2 --sasl anonymous"
capture rhea proton no-sasl        "" "basic --count 2 --sasl none"
capture rhea proton messages       "" "messages"
capture rhea proton large          "$LARGE_S" "$LARGE_C"
capture rhea proton dispositions   "" "dispositions"
capture rhea proton filter-dynamic "" "filter-dynamic"
capture rhea proton heartbeat      "$HB_S" "$HB_C"

# rhea client -> rhea server: the rhea client's PLAIN and no-SASL streams
capture rhea rhea sasl-plain "" "basic --count 2 --sasl plain --user alice --password secret"
capture rhea rhea no-sasl    "" "basic --count 2 --sasl none"

# amqpwire client -> Proton with Cyrus SASL: the server's side of SCRAM-SHA-256
if wanted amqpwire-to-proton-sasl-scram; then
    rm -f "$WORK/server.ready"
    PEER_QUIET=1 "$PY" "$HERE/proton_peer.py" server --port "$SERVER_PORT" --users alice:secret \
        --ready-file "$WORK/server.ready" > "$WORK/proton-users.server.log" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    wait_file "$WORK/server.ready" 20
    capture_amqpwire proton sasl-scram \
        "send --to q.scram --body scram --property kind=scram amqp://alice:secret@127.0.0.1:$PROXY_PORT?sasl-mechanism=SCRAM-SHA-256"
    kill "$spid" 2>/dev/null || true
fi

# amqpwire client -> RabbitMQ 3.10 (AMQP 1.0 plugin): its open, attach replies, flow,
# dispositions, and the messages as it delivers them (with what it adds). One node
# serves both captures: the queue keeps the sent messages for the receive.
if wanted amqpwire-to-rabbitmq-send || wanted amqpwire-to-rabbitmq-receive; then
    mkdir -p "$RABBIT_DIR"
    "$HERE/rabbitmq.sh" start "$RABBIT_DIR" "$SERVER_PORT" >"$WORK/rabbitmq.log" 2>&1 ||
        { cat "$WORK/rabbitmq.log" >&2; exit 1; }
    trap 'stop_rabbitmq; cleanup' EXIT
    capture_amqpwire rabbitmq send \
        "send --to /queue/capture --count 2 --body hello-rabbit --property colour=red amqp://guest:guest@127.0.0.1:$PROXY_PORT"
    capture_amqpwire rabbitmq receive \
        "receive --from /queue/capture --count 2 --timeout 10 amqp://guest:guest@127.0.0.1:$PROXY_PORT"
    stop_rabbitmq
fi

if [ -n "$ONLY" ]; then
    echo "ONLY set: README.md not rewritten"
    exit 0
fi

# ------------------------------------------------------------------- README
version_of() {
    case "$1" in
        rhea) echo "rhea $RHEA_VERSION (Node.js $NODE_VERSION)" ;;
        proton) echo "python-qpid-proton $PROTON_VERSION (Python $PYTHON_VERSION)" ;;
        amqpwire) echo "amqpwire $AMQPWIRE_VERSION (its CLI)" ;;
        rabbitmq) echo "RabbitMQ $RABBITMQ_VERSION (Debian package, rabbitmq_amqp1_0 plugin)" ;;
    esac
}

describe() {
    case "$1" in
        sasl-anonymous) echo "SASL ANONYMOUS, then one session with a sender and a receiver on q.basic; 2 amqp-value string messages sent and received back (accepted); detach x2, end, close." ;;
        sasl-plain) echo "SASL PLAIN as alice/secret, then the same basic flow on q.basic (2 messages)." ;;
        no-sasl) echo "No SASL layer at all (the AMQP protocol header comes first), then the same basic flow on q.basic (2 messages)." ;;
        messages) echo "SASL ANONYMOUS. 5 messages on q.messages: header (durable, priority, ttl); message annotations with symbol keys (x-opt-foo string, x-opt-count int, x-opt-when timestamp); properties with message-id as string / ulong / uuid, correlation-id as string / uuid / binary, to, subject, reply-to, content-type, content-encoding, creation-time, absolute-expiry-time, group-id, group-sequence; application properties of type string, int, long, double, boolean, null, timestamp, uuid, binary, symbol; bodies: data (16 bytes), amqp-value string, amqp-value map (nested map and list), amqp-value list, amqp-sequence. All received back and accepted." ;;
        large) echo "SASL ANONYMOUS. Both opens set max-frame-size 16384. One data-section message with a 327680-byte body (byte i = (31*i+7) mod 256) sent and received back, each way split over 21 transfer frames (more=true on all but the last)." ;;
        dispositions) echo "SASL ANONYMOUS. Sender 1 (unsettled) sends disp-accept, disp-reject, disp-release, which the broker accepts; sender 2 has snd-settle-mode settled and sends disp-presettled pre-settled. The receiver (manual settlement) accepts disp-accept, rejects disp-reject with error amqp:precondition-failed, releases disp-release (the broker redelivers it and it is then accepted) and accepts the broker's copy of disp-presettled. The rhea client settles one delivery per 20 ms: rhea 3.0.5 otherwise merges a release into the preceding reject's disposition range." ;;
        filter-dynamic) echo "SASL ANONYMOUS. A receiver on q.filter whose source carries a selector filter (descriptor apache.org:selector-filter:string, value \"color = 'red'\"; rhea keys it by that symbol, proton by 'selector'), a dynamic receiver (the broker names the node dynamic-1 in its attach reply), two sends to q.filter with application property color=blue and color=red (only red is delivered; blue stays queued), then a sender attached to dynamic-1 and one message through it." ;;
        heartbeat) echo "SASL ANONYMOUS. Both opens carry idle-time-out 2000 ms; one session stays idle for about 3 s so empty frames (heartbeats) flow both ways, then end and close. The number of empty frames depends on timing." ;;
        sasl-scram) echo "SASL SCRAM-SHA-256 as alice/secret against Proton built with Cyrus SASL (which checks the password from a sasldb): sasl-mechanisms, sasl-init with the client-first message, a challenge with the server-first message, a response with the client-final message, a second challenge with the server-final message (Cyrus sends it there, not as the outcome's additional-data), an empty response, and outcome ok. Then one message to q.scram, accepted, and close. Nonces differ on every run." ;;
        send) echo "SASL PLAIN as guest/guest. A sender on /queue/capture sends 2 data messages (body hello-rabbit, application property colour=red), accepted by one disposition; then close (amqpwire's CLI closes the connection without detaching or ending first)." ;;
        receive) echo "SASL PLAIN as guest/guest. A receiver on /queue/capture gets the 2 messages of the send capture as RabbitMQ delivers them and accepts each; then close. RabbitMQ writes a flow after its close." ;;
    esac
}

{
    cat <<EOF
# AMQP 1.0 wire captures

Real byte streams that two independently written AMQP 1.0 implementations
sent to each other, for amqpwire's decoder and interop tests.

- How: captured on $CAPTURE_DATE over loopback (127.0.0.1) through
  \`tests/peers/record_proxy.py\`, a TCP proxy that writes each direction of one
  connection to its own file. One connection per capture, against a freshly
  started server. Regenerate with \`tests/peers/capture.sh VENV_DIR\`.
- Names: \`<client>-to-<server>-<scenario>.c2s.bin\` holds every byte the client
  sent and \`.s2c.bin\` every byte the server sent. Each file is the exact TCP
  byte stream of one direction and starts with an 8-byte protocol header.
- Peers: \`tests/peers/rhea_peer.js\` and \`tests/peers/proton_peer.py\`. The server
  role is a small queue broker that forwards each producer's encoded message
  bytes unchanged, so the message sections inside the server's transfers
  were encoded by the client library; every frame (performative) was
  encoded by the library that sent the file. In the \`amqpwire-to-*\` captures the
  client is amqpwire's own CLI, and what matters is the server's side: Proton
  built with Cyrus SASL (\`--users\`, for SCRAM-SHA-256) and RabbitMQ's AMQP 1.0
  plugin (a node of its own from \`tests/peers/rabbitmq.sh\`).
- Versions: $(version_of rhea); $(version_of proton),
  built from its sdist with the bundled Proton-C and Proton's built-in SASL
  (which serves ANONYMOUS only, so the PLAIN captures use the rhea broker).
  The proton peer's \`--idle-timeout\` is doubled before it is handed to Proton,
  because Proton advertises half of its local idle timeout in open.
- Fixed container ids (amqpwire-rhea-client, amqpwire-rhea-broker,
  amqpwire-proton-client, amqpwire-proton-broker), link names, message ids and
  timestamps (2026-11-22T12:00:00Z). A re-capture still differs where timing
  matters: the number of heartbeats, how many deliveries one disposition
  covers, and the order of independent frames (for example a flow before or
  after an attach). Tests should decode the frames, not compare whole files
  with a fresh capture.
- Frame lists come from \`tests/peers/amqp_frames.py --summary\` ("x N" = N such
  frames in a row; a disposition is followed by its outcome); tshark 4.0
  dissects the same frames when the streams are wrapped with
  \`tests/peers/bin2pcap.py\`.

## Scenarios

EOF
    for scen in sasl-anonymous sasl-plain no-sasl messages large dispositions filter-dynamic heartbeat sasl-scram send receive; do
        echo "- **$scen**: $(describe "$scen")"
    done
    cat <<EOF

## Files

One line per file: sent by (implementation and version), direction,
scenario, capture, frames in order.

EOF
    for f in "$OUT"/*.c2s.bin "$OUT"/*.s2c.bin; do
        base="$(basename "$f")"
        stem="${base%.*.bin}"
        dir="${base%.bin}"; dir="${dir##*.}"
        client="${stem%%-to-*}"
        rest="${stem#*-to-}"
        server="${rest%%-*}"
        scen="${rest#*-}"
        if [ "$dir" = c2s ]; then sender="$client"; arrow="client to server ($client client, $server server)"
        else sender="$server"; arrow="server to client ($server server, $client client)"; fi
        frames="$("$PY" "$HERE/amqp_frames.py" --summary "$f" | sed 's/^[^:]*: //')"
        size="$(wc -c < "$f" | tr -d ' ')"
        echo "- \`$base\` ($size bytes): sent by $(version_of "$sender"); $arrow; scenario $scen; captured $CAPTURE_DATE via loopback record_proxy.py; frames: $frames."
    done | sort
} > "$OUT/README.md"

echo "wrote $(ls "$OUT"/*.bin | wc -l) files and README.md to $OUT"
