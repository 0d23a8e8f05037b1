#!/usr/bin/env bash
# rabbitmq.sh - start and stop a throwaway RabbitMQ node (AMQP 1.0 plugin on)
# for one interop test run. Nothing under /etc or /var is read or written:
# all state (config, cookie, data, logs, pid files) lives in DIR.
#
# Usage:
#   tests/peers/rabbitmq.sh start DIR PORT [TLS_PORT]
#   tests/peers/rabbitmq.sh stop DIR
#
#   start  wipes DIR's previous data and logs, starts a node named
#          amqpwire-PORT@localhost listening for AMQP (0-9-1 and 1.0) on
#          127.0.0.1:PORT, and returns once it accepts connections (at most
#          60 s; on failure the last 40 log lines go to stderr, the node is
#          torn down and the exit status is 1). With TLS_PORT it also
#          listens for AMQP over TLS on 127.0.0.1:TLS_PORT with a fresh
#          self-signed certificate for localhost/127.0.0.1; clients trust
#          DIR/tls/ca.pem.
#   stop   stops the node started in DIR and its private epmd, and waits
#          until both processes are gone. Stopping a node that is not
#          running is not an error. Logs stay in DIR/log.
#
# Ports (all on 127.0.0.1): PORT (AMQP), PORT+10000 (a private epmd for
# this node), PORT+20000 (Erlang distribution). PORT must be below 45536;
# nodes with different PORTs do not clash unless their PORTs differ by
# exactly 10000 or 20000. Override with RMQ_EPMD_PORT / RMQ_DIST_PORT.
#
# Users: guest/guest (loopback only, which is all this node listens on).
# SASL PLAIN, AMQPLAIN and ANONYMOUS are offered; ANONYMOUS and clients
# without a SASL layer act as guest.
#
# Needs the Debian package rabbitmq-server (tests/peers/install.sh). Runs
# as root or as any user who can write DIR; the Debian wrappers in
# /usr/sbin (which switch to the rabbitmq user) are bypassed.
set -euo pipefail

RMQ_SBIN="${RMQ_SBIN:-/usr/lib/rabbitmq/bin}"
START_TIMEOUT="${RMQ_START_TIMEOUT:-60}"

die() { echo "rabbitmq.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,33p' "$0" >&2
    exit 2
}

port_ok() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

# True when something accepts TCP connections on 127.0.0.1:$1.
listening() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# True while process $1 runs (a zombie waiting to be reaped counts as gone).
alive() {
    local stat
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}

# pid stored in file $1 if that process still runs and its command name is $2.
live_pid() {
    local pid comm
    [ -s "$1" ] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [ -n "$pid" ] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    case "$comm" in $2) echo "$pid" ;; *) return 1 ;; esac
}

# Wait up to $2 seconds for pid $1 to exit.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        alive "$1" || return 0
        sleep 0.1
    done
    ! alive "$1"
}

kill_pid() { # pid, name: TERM, then KILL after 10 s
    alive "$1" || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait_gone "$1" 10 && return 0
    echo "rabbitmq.sh: $2 (pid $1) ignored SIGTERM, sending SIGKILL" >&2
    kill -KILL "$1" 2>/dev/null || true
    wait_gone "$1" 5 || echo "rabbitmq.sh: $2 (pid $1) is still there" >&2
}

# Sets the environment for the server and the CLI tools of the node in $DIR.
node_env() {
    local v
    # Start from a clean slate: no RABBITMQ_* setting from the caller leaks in.
    for v in $(compgen -e); do
        case "$v" in RABBITMQ_*) unset "$v" ;; esac
    done
    unset ERL_EPMD_PORT ERL_EPMD_ADDRESS ERL_LIBS
    export HOME="$DIR" # the Erlang cookie is DIR/.erlang.cookie
    export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
    export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf"
    export RABBITMQ_CONFIG_FILES="$DIR/conf.d"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
    export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
    export RABBITMQ_LOG_BASE="$DIR/log"
    export RABBITMQ_PID_FILE="$DIR/rabbitmq.pid"
    export RABBITMQ_MOTD_FILE="$DIR/motd"
    export RABBITMQ_NODENAME="$NODENAME"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$PORT"
    export RABBITMQ_DIST_PORT="$DIST_PORT"
    export ERL_EPMD_PORT="$EPMD_PORT"
    export ERL_EPMD_ADDRESS=127.0.0.1
    # CLI tools: no listening socket of their own, never spawn an epmd.
    export RABBITMQ_CTL_ERL_ARGS="-dist_listen false -start_epmd false"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-start_epmd false"
}

ctl() { "$RMQ_SBIN/rabbitmqctl" -n "$NODENAME" "$@"; }

show_logs() {
    local f
    for f in "$DIR/log/$NODENAME.log" "$DIR/log/stdout.log" "$DIR/log/epmd.log"; do
        [ -s "$f" ] || continue
        echo "---- last 40 lines of $f" >&2
        tail -n 40 "$f" >&2
    done
}

load_state() {
    [ -f "$DIR/node.env" ] || return 1
    # shellcheck disable=SC1091
    . "$DIR/node.env"
}

# Stop whatever runs from $DIR. Quiet when nothing runs.
do_stop() {
    local beam wrapper epmd names
    load_state || return 0
    node_env
    beam=$(live_pid "$DIR/rabbitmq.pid" 'beam*') || beam=""
    wrapper=$(live_pid "$DIR/wrapper.pid" 'rabbitmq-server') || wrapper=""
    epmd=$(live_pid "$DIR/epmd.pid" epmd) || epmd=""
    if [ -n "$beam" ]; then
        # `stop PIDFILE` waits until that process has exited.
        if ! timeout 60 "$RMQ_SBIN/rabbitmqctl" -n "$NODENAME" stop "$DIR/rabbitmq.pid" >"$DIR/log/stop.log" 2>&1; then
            echo "rabbitmq.sh: rabbitmqctl stop failed (see $DIR/log/stop.log); killing pid $beam" >&2
        fi
        kill_pid "$beam" "$NODENAME"
    fi
    if [ -n "$wrapper" ]; then
        # Without a VM pid (a start that failed early) SIGTERM makes the
        # script stop its VM; otherwise it ends by itself once the VM is gone.
        if [ -n "$beam" ]; then wait_gone "$wrapper" 5 || true; fi
        kill_pid "$wrapper" "rabbitmq-server script"
    fi
    if [ -n "$epmd" ]; then
        names=$(epmd -port "$EPMD_PORT" -names 2>/dev/null | grep -c '^name ' || true)
        if [ "${names:-0}" -gt 0 ]; then
            echo "rabbitmq.sh: epmd on port $EPMD_PORT (pid $epmd) still serves other nodes; left running:" >&2
            epmd -port "$EPMD_PORT" -names >&2 || true
        else
            kill_pid "$epmd" "epmd"
        fi
    fi
    rm -f "$DIR/rabbitmq.pid" "$DIR/wrapper.pid" "$DIR/epmd.pid"
}

write_config() {
    local tls_port="$1"
    mkdir -p "$DIR/conf.d" "$DIR/mnesia" "$DIR/log"
    : >"$DIR/rabbitmq-env.conf"
    echo '[rabbitmq_amqp1_0].' >"$DIR/enabled_plugins"
    cat >"$DIR/rabbitmq.conf" <<EOF
# generated by tests/peers/rabbitmq.sh
listeners.tcp.default = 127.0.0.1:$PORT
distribution.listener.interface = 127.0.0.1
# guest may only log in from loopback (the default); all we listen on is loopback
loopback_users.guest = true
log.console = false
log.file.level = info
# AMQP 1.0 clients using ANONYMOUS, or no SASL at all, act as this user (the default)
amqp1_0.default_user = guest
EOF
    if [ -n "$tls_port" ]; then
        make_cert
        cat >>"$DIR/rabbitmq.conf" <<EOF
listeners.ssl.default = 127.0.0.1:$tls_port
ssl_options.cacertfile = $DIR/tls/ca.pem
ssl_options.certfile = $DIR/tls/server.pem
ssl_options.keyfile = $DIR/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
    fi
}

# A CA and a server certificate for localhost / 127.0.0.1, in DIR/tls.
make_cert() {
    local t="$DIR/tls"
    command -v openssl >/dev/null || die "openssl is needed for TLS_PORT"
    rm -rf "$t"
    mkdir -p "$t"
    {
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=amqpwire test CA" \
            -keyout "$t/ca.key" -out "$t/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
                -keyout "$t/server.key" -out "$t/server.csr" &&
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$t/ext.cnf" &&
            openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
                -days 30 -extfile "$t/ext.cnf" -out "$t/server.pem"
    } >"$t/openssl.log" 2>&1 || { cat "$t/openssl.log" >&2; die "could not make a TLS certificate"; }
    chmod 644 "$t/server.key"
}

do_start() {
    local tls_port="${1:-}" t0 deadline beam wrapper epmd p left
    port_ok "$PORT" || die "bad PORT '$PORT'"
    [ -x "$RMQ_SBIN/rabbitmq-server" ] ||
        die "$RMQ_SBIN/rabbitmq-server not found: install the Debian package rabbitmq-server (tests/peers/install.sh)"
    command -v epmd >/dev/null || die "epmd not found (it comes with erlang-base)"
    EPMD_PORT="${RMQ_EPMD_PORT:-$((PORT + 10000))}"
    DIST_PORT="${RMQ_DIST_PORT:-$((PORT + 20000))}"
    port_ok "$EPMD_PORT" || die "epmd port $EPMD_PORT out of range: PORT must be below 45536 (or set RMQ_EPMD_PORT)"
    port_ok "$DIST_PORT" || die "distribution port $DIST_PORT out of range: PORT must be below 45536 (or set RMQ_DIST_PORT)"
    if [ -n "$tls_port" ]; then port_ok "$tls_port" || die "bad TLS_PORT '$tls_port'"; fi
    NODENAME="amqpwire-$PORT@localhost"

    # A node left over in DIR (a test run that did not stop it) goes first.
    (do_stop)

    for p in "$PORT" "$EPMD_PORT" "$DIST_PORT" $tls_port; do
        listening "$p" && die "port $p on 127.0.0.1 is already in use (node $NODENAME needs $PORT, $EPMD_PORT, $DIST_PORT${tls_port:+, $tls_port})"
    done

    t0=$SECONDS
    deadline=$((SECONDS + START_TIMEOUT))
    rm -rf "$DIR/mnesia" "$DIR/log" "$DIR/conf.d" "$DIR/.erlang.cookie"
    write_config "$tls_port"
    (umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/.erlang.cookie")
    chmod 400 "$DIR/.erlang.cookie"
    cat >"$DIR/node.env" <<EOF
PORT=$PORT
NODENAME=$NODENAME
EPMD_PORT=$EPMD_PORT
DIST_PORT=$DIST_PORT
TLS_PORT=$tls_port
EOF
    node_env

    # A private epmd, so stopping this node never disturbs another one.
    setsid epmd -port "$EPMD_PORT" -address 127.0.0.1 </dev/null >"$DIR/log/epmd.log" 2>&1 &
    echo $! >"$DIR/epmd.pid"
    until epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; do
        if ! alive "$(cat "$DIR/epmd.pid")" || [ $SECONDS -ge $deadline ]; then
            show_logs
            do_stop
            die "epmd did not start on 127.0.0.1:$EPMD_PORT"
        fi
        sleep 0.1
    done

    setsid "$RMQ_SBIN/rabbitmq-server" </dev/null >"$DIR/log/stdout.log" 2>&1 &
    wrapper=$!
    echo "$wrapper" >"$DIR/wrapper.pid"

    fail_start() {
        echo "rabbitmq.sh: node $NODENAME did not start: $1" >&2
        show_logs
        do_stop
        exit 1
    }
    # 1. the AMQP port listens (the VM is up, the node is registered in epmd)
    until listening "$PORT"; do
        alive "$wrapper" || fail_start "the server process exited"
        [ $SECONDS -lt $deadline ] || fail_start "port $PORT not listening after ${START_TIMEOUT} s"
        sleep 0.2
    done
    # 2. every boot step and plugin (amqp1_0) has started
    left=$((deadline - SECONDS))
    [ $left -ge 1 ] || left=1
    if ! ctl await_startup --timeout "$left" >"$DIR/log/await_startup.log" 2>&1; then
        cat "$DIR/log/await_startup.log" >&2
        fail_start "rabbitmqctl await_startup failed"
    fi
    # "Server startup complete; N plugins started." is followed by the list
    if ! grep -qF '* rabbitmq_amqp1_0' "$DIR/log/$NODENAME.log" &&
        ! ctl list_amqp10_connections >/dev/null 2>&1; then
        fail_start "the rabbitmq_amqp1_0 plugin is not running"
    fi
    for p in $tls_port; do
        listening "$p" || fail_start "TLS port $p not listening"
    done
    echo "rabbitmq.sh: $NODENAME ready on 127.0.0.1:$PORT${tls_port:+ (TLS on $tls_port, CA $DIR/tls/ca.pem)} after $((SECONDS - t0)) s"
}

[ $# -ge 2 ] || usage
cmd="$1"
case "$cmd" in
start)
    [ $# -ge 3 ] && [ $# -le 4 ] || usage
    mkdir -p "$2"
    DIR="$(cd "$2" && pwd)"
    PORT="$3"
    do_start "${4:-}"
    ;;
stop)
    [ $# -eq 2 ] || usage
    [ -d "$2" ] || exit 0
    DIR="$(cd "$2" && pwd)"
    do_stop
    ;;
*) usage ;;
esac
