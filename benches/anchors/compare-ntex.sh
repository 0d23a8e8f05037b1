#!/usr/bin/env bash
# benches/anchors/compare-ntex.sh [RUNS] [COUNT]: unsettled 100-byte messages over loopback,
# amqpwire's `send` into `amqpwire serve` against ntex-amqp 6.3's client into its server
# (benches/anchors/ntex-amqp), in turns, RUNS times each (default 5) with COUNT messages
# (default 200,000), up to 1,000 in flight on both. Prints every rate, the medians and
# their ratio, once with each program's defaults and once with one thread on each side
# (ntex's server runs one worker, its client one thread). Needs a nightly toolchain for
# ntex-amqp (Rust 1.97) and the network to crates.io on its first build.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
count=${2:-200000}
cargo build --release --quiet --bin amqpwire
(cd benches/anchors/ntex-amqp && cargo +nightly build --release --quiet)
aw=target/release/amqpwire
nx=benches/anchors/ntex-amqp/target/release
port_a=${PORT_A:-5674}
port_n=${PORT_N:-5673}
med() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rate() { sed -n 's/.*[(: ]\([0-9][0-9]*\) msg\/s.*/\1/p' | tail -n 1; }
server=""
stop() { if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; fi; }
trap stop EXIT
# Waits until something listens on port $1 (at most 10 s).
listening() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}
compare() {
  local threads=$1 label=$2 n=() a=()
  for _ in $(seq "$runs"); do
    "$nx/ntex-server" "127.0.0.1:$port_n" >/dev/null 2>&1 & server=$!
    listening "$port_n"
    n+=("$("$nx/ntex-client" "127.0.0.1:$port_n" "$count" 100 1000 | rate)")
    stop
    # shellcheck disable=SC2086
    "$aw" serve $threads --listen "amqp://127.0.0.1:$port_a" >/dev/null 2>&1 & server=$!
    listening "$port_a"
    # shellcheck disable=SC2086
    a+=("$("$aw" send $threads "amqp://127.0.0.1:$port_a" --to bench --count "$count" --size 100 2>&1 | rate)")
    stop
  done
  local mn ma
  mn=$(med "${n[@]}")
  ma=$(med "${a[@]}")
  echo "$label"
  echo "  ntex-amqp msg/s: ${n[*]} (median $mn)"
  echo "  amqpwire  msg/s: ${a[*]} (median $ma)"
  awk -v a="$ma" -v n="$mn" 'BEGIN { printf "  amqpwire / ntex-amqp: %.2f\n", a / n }'
}
compare "" "defaults (serve: one thread per core; send: one thread)"
compare "--threads 1" "one thread on each side"
