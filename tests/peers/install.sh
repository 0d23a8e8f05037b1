#!/usr/bin/env bash
# install.sh - install every third-party AMQP 1.0 peer used by amqpwire's interop
# tests. Idempotent: what is already in place is only checked (a few seconds).
# Meant for Debian 12, run as root (or as a user with sudo); .ci/run calls it.
#
#   tests/peers/install.sh
#
# Installs:
#   RabbitMQ     the Debian package rabbitmq-server, pinned to $RABBITMQ_DEB_VERSION
#                (override from the environment), with the rabbitmq_amqp1_0 plugin
#                enabled (offline, system-wide). tests/peers/rabbitmq.sh runs nodes
#                of it without touching /etc.
#   Qpid Proton  python-qpid-proton from requirements.txt in the virtualenv
#                tests/peers/.venv (built from sdist: gcc, pkg-config, the OpenSSL and
#                Python headers and Cyrus SASL are apt-installed when missing); SSL
#                and Cyrus SASL support checked.
#   azure-eventhub  the Python Event Hubs client and its dependencies, pinned in
#                requirements-eventhub.txt, into the same virtualenv (pure Python, a few
#                seconds); every pinned version is checked.
#   rhea and the Azure IoT Node SDKs  `npm ci` into tests/peers/node_modules when it is
#                missing or does not match package-lock.json (node and npm apt-installed
#                when missing; the SDKs' @azure/* packages need node 20 or later): rhea,
#                ws, azure-iothub, azure-iot-device, azure-iot-device-amqp,
#                azure-iot-device-http and
#                azure-iot-common, each checked against its exact version in package.json.
#   Chromium     Debian's chromium, run headless by tests/ladder.rs, and by
#                tests/browser.rs through playwright-core (an npm package above, which
#                downloads no browser of its own).
#   binaryen     npm's binaryen (an npm package above): its wasm-opt shrinks the browser
#                modules that examples/browser/build.sh makes.
#   wasm tools   the wasm32-unknown-unknown target (rustup) and wasm-bindgen-cli at the
#                version of the wasm-bindgen crate in Cargo.lock (cargo install, once:
#                several minutes), for examples/browser/build.sh and tests/browser.rs;
#                rust-src for the nightly toolchain, so build.sh builds std for size.
#   tshark       Wireshark's command-line dissector (and editcap, mergecap), the Debian
#                package, for tests/capture.rs: its AMQP dissector must read amqpwire's
#                pcapng files as amqpwire does. Installed non-interactively; non-root
#                users are not allowed to capture (the package's debconf question).
#
# Environment: RABBITMQ_DEB_VERSION (see above), PEERS_PYTHON (the Python the venv is
# made from; default python3).
#
# apt-get update runs only when a package is not known to apt. Any failure stops the
# script with "install.sh: <peer> failed to install: <why>" on stderr and exit status 1.
# At the end one line per peer gives its version.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RABBITMQ_DEB_VERSION="${RABBITMQ_DEB_VERSION:-3.10.8-1.1+deb12u1}"
VENV="$HERE/.venv"
PYTHON="${PEERS_PYTHON:-python3}" # the interpreter the venv is made from

LOGDIR="$(mktemp -d)"
trap 'rm -rf "$LOGDIR"' EXIT

fail() {
    local peer="$1"
    shift
    echo "install.sh: $peer failed to install: $*" >&2
    exit 1
}
note() { echo "install.sh: $*"; }

# The tail of a log, indented, on stderr (before a fail).
show_log() {
    echo "---- last 30 lines of $2" >&2
    tail -n 30 "$1" | sed 's/^/    /' >&2
}

# ------------------------------------------------------------------------ apt

SUDO=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
fi

# Version of an installed Debian package, empty when not installed.
deb_version() {
    { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null || true; } |
        awk '$1 == "install" && $3 == "installed" { print $4 }'
}

# True when apt knows package $1 (NAME or NAME=VERSION).
apt_knows() {
    local name="${1%%=*}" cand
    if [[ "$1" == *=* ]]; then
        apt-cache show "$1" >/dev/null 2>&1
    else
        cand="$(apt-cache policy "$name" 2>/dev/null | awk '/Candidate:/ { print $2 }')"
        [ -n "$cand" ] && [ "$cand" != "(none)" ]
    fi
}

APT_UPDATED=0
# apt_install PEER PACKAGE... : install the packages (NAME or NAME=VERSION).
apt_install() {
    local peer="$1" p missing=()
    shift
    [ $# -gt 0 ] || return 0
    command -v apt-get >/dev/null 2>&1 ||
        fail "$peer" "apt-get not found (this script expects Debian 12); install $* by hand"
    if [ "$(id -u)" != 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        fail "$peer" "$* must be apt-installed: run this script as root (or install sudo)"
    fi
    for p in "$@"; do apt_knows "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ] && [ $APT_UPDATED = 0 ]; then
        note "apt-get update (apt does not know ${missing[*]})"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q \
            >"$LOGDIR/apt-update.log" 2>&1 || {
            show_log "$LOGDIR/apt-update.log" "apt-get update"
            fail "$peer" "apt-get update failed"
        }
        APT_UPDATED=1
        missing=()
        for p in "$@"; do apt_knows "$p" || missing+=("$p"); done
    fi
    for p in "${missing[@]}"; do
        if [[ "$p" == *=* ]]; then
            fail "$peer" "apt has no ${p%%=*} version ${p#*=} (candidate: $(apt-cache policy "${p%%=*}" 2>/dev/null | awk '/Candidate:/ { print $2 }')); update RABBITMQ_DEB_VERSION in tests/peers/install.sh or set it in the environment"
        fi
        fail "$peer" "apt knows no package $p, even after apt-get update"
    done
    note "apt-get install $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
        --no-install-recommends "$@" >"$LOGDIR/apt-install.log" 2>&1 || {
        show_log "$LOGDIR/apt-install.log" "apt-get install $*"
        fail "$peer" "apt-get install $* failed"
    }
}

# ------------------------------------------------------------------- RabbitMQ

install_rabbitmq() {
    local peer=rabbitmq-server v plugins=/etc/rabbitmq/enabled_plugins
    v="$(deb_version rabbitmq-server)"
    if [ -z "$v" ]; then
        apt_install "$peer" "rabbitmq-server=$RABBITMQ_DEB_VERSION"
        v="$(deb_version rabbitmq-server)"
        [ "$v" = "$RABBITMQ_DEB_VERSION" ] ||
            fail "$peer" "after apt-get install, dpkg reports version '${v:-none}', not $RABBITMQ_DEB_VERSION"
    elif [ "$v" != "$RABBITMQ_DEB_VERSION" ]; then
        echo "install.sh: warning: rabbitmq-server $v is installed; the tests were written against $RABBITMQ_DEB_VERSION" >&2
    fi
    # rabbitmq.sh makes the TLS listener's certificates with the openssl command.
    command -v openssl >/dev/null 2>&1 || apt_install "$peer" openssl
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] ||
        fail "$peer" "/usr/lib/rabbitmq/bin/rabbitmq-server is missing although the package is installed"
    if ! grep -qs 'rabbitmq_amqp1_0' "$plugins"; then
        note "enabling the rabbitmq_amqp1_0 plugin (offline)"
        "${SUDO[@]}" env RABBITMQ_CTL_ERL_ARGS="-start_epmd false" \
            /usr/sbin/rabbitmq-plugins enable --offline rabbitmq_amqp1_0 >"$LOGDIR/plugins.log" 2>&1 || {
            show_log "$LOGDIR/plugins.log" "rabbitmq-plugins enable --offline rabbitmq_amqp1_0"
            fail "$peer" "rabbitmq-plugins enable --offline rabbitmq_amqp1_0 failed"
        }
        grep -qs 'rabbitmq_amqp1_0' "$plugins" ||
            fail "$peer" "rabbitmq_amqp1_0 is still not listed in $plugins"
    fi
    RABBITMQ_VERSION="$v"
}

# ---------------------------------------------------------------- Qpid Proton

PROTON_WANT="$(sed -n 's/^python-qpid-proton==\([0-9.]*\).*/\1/p' "$HERE/requirements.txt")"

# Exit 0 when the venv has proton $PROTON_WANT with SSL and Cyrus SASL; 3 without SSL;
# 4 without Cyrus SASL (the built-in SASL serves only ANONYMOUS and EXTERNAL); else other.
proton_check() {
    [ -x "$VENV/bin/python" ] || return 1
    "$VENV/bin/python" - "$PROTON_WANT" <<'EOF' 2>/dev/null
import sys
import proton
from proton import SSL
if ".".join(map(str, proton.VERSION)) != sys.argv[1]:
    sys.exit(2)
from proton import SASL
if not SSL.present():
    sys.exit(3)
sys.exit(0 if SASL.extended() else 4)
EOF
}

install_proton() {
    local peer=python-qpid-proton pkgs=() st=0 inc
    [ -n "$PROTON_WANT" ] || fail "$peer" "no python-qpid-proton==VERSION line in $HERE/requirements.txt"
    proton_check || st=$?
    if [ $st != 0 ]; then
        # A Python with venv/ensurepip (Debian splits them into python3-venv).
        if ! command -v "$PYTHON" >/dev/null 2>&1; then
            apt_install "$peer" python3 python3-venv
        elif ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            apt_install "$peer" python3-venv
        fi
        if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
            note "creating the virtualenv $VENV"
            "$PYTHON" -m venv --clear "$VENV" >"$LOGDIR/venv.log" 2>&1 || {
                show_log "$LOGDIR/venv.log" "$PYTHON -m venv"
                fail "$peer" "$PYTHON -m venv $VENV failed"
            }
        fi
        # Build dependencies of the sdist: a C compiler, pkg-config, OpenSSL and Python headers.
        command -v gcc >/dev/null 2>&1 || pkgs+=(build-essential)
        command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
        if ! { pkg-config --exists openssl 2>/dev/null || [ -f /usr/include/openssl/ssl.h ]; }; then
            pkgs+=(libssl-dev)
        fi
        # Cyrus SASL, so Proton's server can check PLAIN and SCRAM passwords: its headers
        # for the build, saslpasswd2 for the test's user database, and the mechanism plugins.
        if ! { pkg-config --exists libsasl2 2>/dev/null || [ -f /usr/include/sasl/sasl.h ]; }; then
            pkgs+=(libsasl2-dev)
        fi
        command -v saslpasswd2 >/dev/null 2>&1 || pkgs+=(sasl2-bin)
        ls /usr/lib/*/sasl2/libscram.so* >/dev/null 2>&1 || pkgs+=(libsasl2-modules)
        inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
        [ -f "$inc/Python.h" ] || pkgs+=(python3-dev)
        apt_install "$peer" "${pkgs[@]}"
        [ -f "$inc/Python.h" ] || fail "$peer" "no Python.h in $inc (the Python headers of $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])') are missing)"

        # Always past the wheel cache: a cached wheel may have been built before the OpenSSL
        # or Cyrus SASL headers were installed, and pip would reuse it without them.
        local pipargs=(install --disable-pip-version-check --no-cache-dir -r "$HERE/requirements.txt")
        case $st in 3 | 4) pipargs+=(--force-reinstall) ;; esac
        note "pip install -r requirements.txt (python-qpid-proton $PROTON_WANT builds from source, 20-60 s)"
        "$VENV/bin/python" -m pip "${pipargs[@]}" >"$LOGDIR/pip.log" 2>&1 || {
            show_log "$LOGDIR/pip.log" "pip install"
            fail "$peer" "pip install -r $HERE/requirements.txt failed"
        }
        st=0
        proton_check || st=$?
        case $st in
        0) ;;
        3) fail "$peer" "proton $PROTON_WANT was built without SSL support (OpenSSL headers not found by its build?)" ;;
        4) fail "$peer" "proton $PROTON_WANT was built without Cyrus SASL (libsasl2 not found by pkg-config during its build?)" ;;
        2) fail "$peer" "the venv has proton $("$VENV/bin/python" -c 'import proton; print(".".join(map(str, proton.VERSION)))'), not $PROTON_WANT" ;;
        *) fail "$peer" "$VENV/bin/python cannot import proton after pip install" ;;
        esac
    fi
    PROTON_VERSION="$("$VENV/bin/python" -c 'import proton; print(".".join(map(str, proton.VERSION)))')"
}

# -------------------------------------------------------------- azure-eventhub

EVENTHUB_REQ="$HERE/requirements-eventhub.txt"

# Exit 0 when the venv holds every NAME==VERSION of requirements-eventhub.txt and
# azure.eventhub imports; else print what differs.
eventhub_check() {
    [ -x "$VENV/bin/python" ] || { echo "no virtualenv at $VENV"; return 1; }
    "$VENV/bin/python" - "$EVENTHUB_REQ" <<'EOF'
import re
import sys
from importlib import metadata
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line)
    if not m:
        print("requirements-eventhub.txt: not NAME==VERSION: " + line)
        sys.exit(1)
    try:
        have = metadata.version(m.group(1))
    except metadata.PackageNotFoundError:
        have = None
    if have != m.group(2):
        bad.append("%s %s (want %s)" % (m.group(1), have or "missing", m.group(2)))
if bad:
    print("; ".join(bad))
    sys.exit(1)
try:
    import azure.eventhub  # noqa: F401
except Exception as e:  # pylint: disable=broad-except
    print("import azure.eventhub: %s" % e)
    sys.exit(1)
EOF
}

install_eventhub() {
    local peer=azure-eventhub why
    [ -f "$EVENTHUB_REQ" ] || fail "$peer" "$EVENTHUB_REQ is missing"
    if ! eventhub_check >/dev/null 2>&1; then
        "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 ||
            fail "$peer" "no working virtualenv at $VENV (the python-qpid-proton step makes it)"
        note "pip install -r requirements-eventhub.txt (azure-eventhub and its dependencies, a few seconds)"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$EVENTHUB_REQ" \
            >"$LOGDIR/pip-eventhub.log" 2>&1 || {
            show_log "$LOGDIR/pip-eventhub.log" "pip install -r requirements-eventhub.txt"
            fail "$peer" "pip install -r $EVENTHUB_REQ failed"
        }
        why="$(eventhub_check 2>&1)" || fail "$peer" "after pip install: $why"
    fi
    EVENTHUB_VERSION="$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("azure-eventhub"))')"
}

# ------------------------------------------------- rhea and the Azure IoT Node SDKs

# True when node_modules holds exactly what package-lock.json lists.
node_modules_fresh() {
    [ -f "$HERE/node_modules/.package-lock.json" ] || return 1
    node - "$HERE" <<'EOF' 2>/dev/null
const fs = require('fs');
const path = require('path');
const dir = process.argv[2];
const read = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')).packages || {};
const want = read('package-lock.json');
const have = read('node_modules/.package-lock.json');
delete want['']; // the root package appears in the lockfile only
const canon = (v) => Array.isArray(v) ? '[' + v.map(canon).join(',') + ']'
    : v && typeof v === 'object'
        ? '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}'
        : JSON.stringify(v);
if (canon(want) !== canon(have)) process.exit(1);
for (const [p, meta] of Object.entries(want)) {
    const pj = path.join(dir, p, 'package.json');
    if (!fs.existsSync(pj) || JSON.parse(fs.readFileSync(pj, 'utf8')).version !== meta.version) process.exit(1);
}
EOF
}

install_rhea() {
    local peer="the npm packages (rhea, the Azure IoT SDKs)" pkgs=()
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
    apt_install "$peer" "${pkgs[@]}"
    command -v node >/dev/null 2>&1 || fail "$peer" "node is not on PATH"
    command -v npm >/dev/null 2>&1 || fail "$peer" "npm is not on PATH"
    # The Azure SDKs' @azure/* dependencies declare node >= 20.
    [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] ||
        fail "$peer" "node $(node --version) is too old: the Azure IoT SDKs' @azure/* packages need node 20 or later"
    if ! node_modules_fresh; then
        note "npm ci in $HERE"
        (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >"$LOGDIR/npm.log" 2>&1 || {
            show_log "$LOGDIR/npm.log" "npm ci"
            fail "$peer" "npm ci failed"
        }
        node_modules_fresh || fail "$peer" "node_modules still does not match package-lock.json after npm ci"
    fi
    # Each dependency of package.json at exactly its pinned version.
    NODE_PACKAGES="$(node - "$HERE" <<'EOF'
const fs = require('fs');
const path = require('path');
const dir = process.argv[2];
const deps = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).dependencies;
const out = [];
for (const [name, want] of Object.entries(deps)) {
    let have = 'missing';
    try {
        have = JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
    } catch (e) { /* missing */ }
    if (have !== want) {
        console.error(name + ' ' + have + ' is installed, package.json pins ' + want);
        process.exit(1);
    }
    out.push(name + ' ' + have);
}
console.log(out.join('\n'));
EOF
)" || fail "$peer" "node_modules does not hold the versions package.json pins (see above)"
    RHEA_VERSION="$(node -p 'require(process.argv[1]).version' "$HERE/node_modules/rhea/package.json")" ||
        fail "$peer" "cannot read $HERE/node_modules/rhea/package.json"
    NODE_VERSION="$(node --version)"
}

# Headless Chromium: tests/ladder.rs loads the ladder view (decode --html) in a real
# browser. Debian's package; checked by running it.
install_chromium() {
    local peer=chromium
    command -v chromium >/dev/null 2>&1 || apt_install "$peer" chromium
    CHROMIUM_VERSION="$(chromium --version 2>/dev/null)" || fail "$peer" "chromium --version failed"
}

# The browser build (examples/browser/build.sh, tests/browser.rs): the wasm32 target,
# wasm-bindgen-cli at the version of the wasm-bindgen crate in Cargo.lock, and the
# standard library's sources for the nightly toolchain where there is one.
install_wasm_tools() {
    local peer="wasm-bindgen-cli" want have
    command -v rustup >/dev/null 2>&1 || fail "$peer" "rustup is not on PATH (the wasm32 target comes from it)"
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        note "rustup target add wasm32-unknown-unknown"
        rustup target add wasm32-unknown-unknown >"$LOGDIR/rustup.log" 2>&1 || {
            show_log "$LOGDIR/rustup.log" "rustup target add"
            fail "$peer" "rustup target add wasm32-unknown-unknown failed"
        }
    fi
    # With a nightly toolchain (the fuzz targets need one), build.sh builds the standard
    # library for size from its sources: about 9 % off each module.
    # Only a size optimisation: without it build.sh uses the prebuilt standard library, so a
    # failure here is said, not fatal.
    if rustc +nightly -V >/dev/null 2>&1; then
        if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
            note "rustup component add rust-src --toolchain nightly"
            rustup component add rust-src --toolchain nightly >"$LOGDIR/rustup-src.log" 2>&1 || {
                show_log "$LOGDIR/rustup-src.log" "rustup component add rust-src"
                note "rust-src for nightly did not install: build.sh uses the prebuilt standard library (modules about 9 % larger)"
            }
        fi
    else
        note "no nightly toolchain: build.sh uses the prebuilt standard library (modules about 9 % larger)"
    fi
    want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/^version = "|"$/, ""); print; exit }' "$HERE/../../Cargo.lock")"
    [ -n "$want" ] || fail "$peer" "no wasm-bindgen in Cargo.lock"
    have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
    if [ "$have" != "$want" ]; then
        note "cargo install --locked --version $want wasm-bindgen-cli (several minutes)"
        # --locked first; a registry that lacks one of its locked versions gets a fresh
        # resolution of the same wasm-bindgen-cli version instead.
        cargo install --locked --version "$want" wasm-bindgen-cli >"$LOGDIR/wasm-bindgen.log" 2>&1 ||
            cargo install --version "$want" wasm-bindgen-cli >"$LOGDIR/wasm-bindgen.log" 2>&1 || {
            show_log "$LOGDIR/wasm-bindgen.log" "cargo install wasm-bindgen-cli"
            fail "$peer" "cargo install wasm-bindgen-cli $want failed"
        }
        have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
        [ "$have" = "$want" ] || fail "$peer" "wasm-bindgen --version says ${have:-nothing}, not $want (is ~/.cargo/bin on PATH?)"
    fi
    WASM_BINDGEN_VERSION="$have"
}

# tshark: tests/capture.rs checks amqpwire's pcapng files with Wireshark's own AMQP
# dissector, and rewrites them with editcap and mergecap.
install_tshark() {
    local peer=tshark
    if ! command -v tshark >/dev/null 2>&1 || ! command -v editcap >/dev/null 2>&1; then
        # wireshark-common asks whether non-root users may capture packets: no.
        echo "wireshark-common wireshark-common/install-setuid boolean false" |
            "${SUDO[@]}" debconf-set-selections >/dev/null 2>&1 || true
        apt_install "$peer" tshark
    fi
    command -v tshark >/dev/null 2>&1 || fail "$peer" "tshark is not on PATH after apt-get install tshark"
    command -v editcap >/dev/null 2>&1 || fail "$peer" "editcap (wireshark-common) is not on PATH"
    TSHARK_VERSION="$(tshark --version 2>/dev/null | awk 'NR == 1 { print $3 }')"
    [ -n "$TSHARK_VERSION" ] || fail "$peer" "tshark --version says nothing"
}

install_rabbitmq
install_proton
install_eventhub
install_rhea
install_chromium
install_wasm_tools
install_tshark

echo "rabbitmq-server $RABBITMQ_VERSION"
echo "python-qpid-proton $PROTON_VERSION (SSL, Cyrus SASL)"
echo "azure-eventhub $EVENTHUB_VERSION"
echo "$NODE_PACKAGES" | grep -v -e '^rhea ' -e '^ws '
echo "rhea $RHEA_VERSION"
echo "node $NODE_VERSION"
echo "$CHROMIUM_VERSION"
echo "wasm-bindgen-cli $WASM_BINDGEN_VERSION"
echo "tshark $TSHARK_VERSION"
