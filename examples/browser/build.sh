#!/bin/sh
# Builds the browser folder: examples/browser/build.sh OUTDIR
#
# OUTDIR gets seed000.html, inspector.html, amqpwire-browser.js (the WebSocket driver and
# promise API), amqpwire.js (wasm-bindgen's glue) and amqpwire_bg.wasm (the client's
# module), amqpwire-trace.js and amqpwire-trace_bg.wasm (the trace records' module, which
# amqpwire-browser.js loads for a connection made with onframe), amqpwire-azure.js and
# amqpwire-azure_bg.wasm (the Azure pieces, which its loadAzure() loads),
# amqpwire-inspector.js and amqpwire-inspector_bg.wasm (the inspector's): a
# self-contained folder to serve (or open the inspector from file:// in browsers that
# allow module scripts there). Needs the wasm32-unknown-unknown target and
# wasm-bindgen-cli at the version of the wasm-bindgen crate in Cargo.lock; wasm-opt
# (binaryen) is used when it is version 116 or later (see below). With a nightly toolchain
# that has rust-src (rustup component add rust-src --toolchain nightly), the standard
# library is built with the modules, for size and with panics that trap at once: about 9 %
# smaller. AMQPWIRE_WASM_STD=prebuilt uses the stable toolchain's standard library.
set -eu
out=${1:?usage: examples/browser/build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

want=$(awk '/^name = "wasm-bindgen"$/ { getline; sub(/^version = "/, ""); sub(/"$/, ""); print; exit }' Cargo.lock)
if [ -z "$want" ]; then
    echo "build.sh: no wasm-bindgen in Cargo.lock" >&2
    exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
    echo "build.sh: wasm-bindgen-cli $want is needed (found: ${have:-none}); install it with" >&2
    echo "  cargo install --locked --version $want wasm-bindgen-cli" >&2
    exit 1
fi

# Four modules, each built for size (the crate's own release profile is left as it is),
# as a cdylib without making every native build link one: the client's (feature wasm:
# amqpwire.js and amqpwire_bg.wasm) for the seed page and any page that connects; the
# Azure pieces' (feature wasm-azure: SAS tokens, CBS, cloud-to-device messages and their
# feedback), loaded only by a page that talks to IoT Hub or Event Hubs; the trace's
# (feature wasm-trace: the --trace-json records of a connection's frames), loaded only by
# a page that shows them; and the inspector's (feature wasm-inspector: the decoder
# and the capture readers, no engine: amqpwire-inspector.js and
# amqpwire-inspector_bg.wasm).
target_dir=${CARGO_TARGET_DIR:-$root/target}
mkdir -p "$out"
# wasm-opt (binaryen) shrinks a module by about 5 % more, run after wasm-bindgen with
# reference types enabled. Binaryen before 116 (Debian 12 has 108) breaks wasm-bindgen's
# reference-types table (the page fails with "WebAssembly.Table.set(): Argument 1 is
# invalid for table"), so an older one is not used (116 is a guess at the first that keeps
# the table; 108 and 132 were tried). Taken from $WASM_OPT, else from PATH, else from npm's
# `binaryen` package that tests/peers/install.sh installs (tests/peers/node_modules).
opt=
for candidate in "${WASM_OPT:-}" wasm-opt "$root/tests/peers/node_modules/.bin/wasm-opt"; do
    [ -n "$candidate" ] || continue
    version=$("$candidate" --version 2>/dev/null | awk '{ print $3 }' || true)
    [ -n "$version" ] || continue
    if [ "$version" -ge 116 ] 2>/dev/null; then
        opt=$candidate
        echo "build.sh: wasm-opt $version ($candidate)" >&2
        break
    fi
    echo "build.sh: wasm-opt $version ($candidate) is older than 116: not used" >&2
done
[ -n "$opt" ] || echo "build.sh: no wasm-opt 116 or later: the modules are about 5 % larger (npm's binaryen: tests/peers/install.sh)" >&2
# Panic locations name source files. The crates' sources are named from the registry
# down, and the project's from its root, not by this machine's paths: the modules are the
# same wherever they are built and carry nothing of the builder's home. (Cargo's encoded
# flags are separated by 0x1f, so a path with spaces stays one argument.)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
us=$(printf '\037')
flags="--remap-path-prefix=$root=amqpwire"
for d in "$cargo_home"/registry/src/*/; do
    [ -d "$d" ] && flags="$flags$us--remap-path-prefix=${d%/}=crates"
done
for f in ${RUSTFLAGS:-}; do
    flags="$flags$us$f"
done
# The standard library: the stable toolchain's prebuilt one (its panics format a message
# no one sees, since a module has no console to print it to, and its sorting and
# formatting are built for speed), or, where a nightly toolchain has the library's
# sources, one built with the modules: optimize_for_size picks std's smaller sorting and
# formatting code, and panic=immediate-abort makes a panic trap at once (the page sees
# "unreachable" either way) with no message or location strings.
toolchain=
std_flags=
# (A nightly from before the immediate-abort panic strategy, mid-2025, has no such
# strategy: it is asked for, and the prebuilt library used without it.)
if [ "${AMQPWIRE_WASM_STD:-}" != prebuilt ] &&
    sysroot=$(rustc +nightly --print sysroot 2>/dev/null) &&
    [ -d "$sysroot/lib/rustlib/src/rust/library/std" ] &&
    rustc +nightly -Zunstable-options -Cpanic=immediate-abort --print cfg \
        --target wasm32-unknown-unknown >/dev/null 2>&1; then
    toolchain=+nightly
    std_flags="-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size"
    flags="$flags$us-Zunstable-options$us-Cpanic=immediate-abort"
    echo "build.sh: the standard library is built for size (nightly, rust-src)" >&2
else
    echo "build.sh: the prebuilt standard library (for a module about 9 % smaller: rustup component add rust-src --toolchain nightly)" >&2
fi
module() { # FEATURE NAME
    # shellcheck disable=SC2086 # $toolchain and $std_flags are empty or words to split
    CARGO_ENCODED_RUSTFLAGS="$flags" CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=true \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
        cargo $toolchain rustc --lib --release --target wasm32-unknown-unknown --no-default-features \
        --features "$1" --crate-type cdylib $std_flags
    # A float formatted with `{}` anywhere the client or the trace reaches pulls in core's
    # float formatting (about 10 KB; it came back once through a settle error's text): their
    # floats are written by inspect::f64_text. The symbol names say if it is there.
    if [ "$1" != wasm-inspector ] &&
        grep -q -a 'core3fmt5float' "$target_dir/wasm32-unknown-unknown/release/amqpwire.wasm"; then
        echo "build.sh: core's float formatting is in the $2 module: some code formats a float with Display or Debug (use inspect::f64_text)" >&2
        exit 1
    fi
    wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
        --out-dir "$out" --out-name "$2" \
        "$target_dir/wasm32-unknown-unknown/release/amqpwire.wasm"
    if [ -n "$opt" ]; then
        # -Oz, then the control flow flattened and rebuilt by binaryen's relooper, then
        # -Oz twice: about 1 % smaller than -Oz alone (2.3 KB of the client's module),
        # for about 10 s more per module.
        "$opt" -Oz --flatten --rereloop -Oz -Oz --enable-reference-types --enable-bulk-memory --enable-multivalue \
            --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
            -o "$out/$2_bg.opt.wasm" "$out/$2_bg.wasm"
        mv "$out/$2_bg.opt.wasm" "$out/$2_bg.wasm"
    fi
    raw=$(wc -c < "$out/$2_bg.wasm")
    gz=$(gzip -9 -c "$out/$2_bg.wasm" | wc -c)
    echo "build.sh: $out/$2_bg.wasm: $raw bytes, $gz gzipped"
}
module wasm amqpwire
module wasm-azure amqpwire-azure
module wasm-trace amqpwire-trace
module wasm-inspector amqpwire-inspector
cp "$here/seed000.html" "$here/inspector.html" "$here/amqpwire-browser.js" "$out/"
