#!/bin/bash
# Builds every fuzz target of fuzz/ for ClusterFuzzLite or OSS-Fuzz, and packs what each needs
# into $OUT:
#   $OUT/<target>                  the libFuzzer binary (cargo fuzz build -O)
#   $OUT/<target>_seed_corpus.zip  fuzz/corpus/<target>/, flat
#   $OUT/<target>.dict             fuzz/amqp.dict
#   $OUT/<target>.options          libFuzzer options: the dictionary and CI's memory limit
#
# In the builder image the repository is $SRC/amqpwire (the working directory) and this
# script is $SRC/build.sh. It also runs from a checkout, outside Docker:
#   OUT=/tmp/cflite .clusterfuzzlite/build.sh
# With $SRC, $SANITIZER, $CARGO_BUILD_TARGET and $RUSTUP_TOOLCHAIN unset, it builds the
# checkout it is in with `cargo +nightly`, AddressSanitizer and the host's target triple.
# The build is the one CI's fuzz step makes (cargo +nightly fuzz build -O in fuzz/), so
# after that step it costs no second compilation.
set -euo pipefail

: "${OUT:?set OUT to the folder that receives the fuzzers}"
mkdir -p "$OUT"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -f "$here/../fuzz/Cargo.toml" ]]; then
  root=$(cd "$here/.." && pwd)          # .clusterfuzzlite/build.sh in a checkout
elif [[ -f "$PWD/fuzz/Cargo.toml" ]]; then
  root=$PWD                             # $SRC/build.sh, run from WORKDIR $SRC/amqpwire
elif [[ -n "${SRC:-}" && -f "$SRC/amqpwire/fuzz/Cargo.toml" ]]; then
  root="$SRC/amqpwire"
else
  echo "build.sh: cannot find the repository (no fuzz/Cargo.toml here, in \$PWD or \$SRC/amqpwire)" >&2
  exit 1
fi
fuzz="$root/fuzz"

# The builder image pins its nightly with RUSTUP_TOOLCHAIN; elsewhere ask for nightly.
cargo=(cargo)
rustc=(rustc)
if [[ -z "${RUSTUP_TOOLCHAIN:-}" ]] && ! cargo --version 2>/dev/null | grep -q nightly; then
  cargo=(cargo +nightly)
  rustc=(rustc +nightly)
fi

flags=(-O)
case "${SANITIZER:-address}" in
  address) ;;
  # The builder's cargo wrapper turns `cargo fuzz build` into a coverage build by itself.
  coverage) ;;
  memory | thread | leak) flags+=(--sanitizer "$SANITIZER") ;;
  *) echo "build.sh: sanitizer '$SANITIZER' is not one cargo fuzz builds" >&2; exit 1 ;;
esac

# The targets are the [[bin]] entries of fuzz/Cargo.toml. (Not `cargo fuzz list`: the
# builder's cargo wrapper answers every `cargo fuzz` command with a build when
# SANITIZER=coverage.)
mapfile -t targets < <(awk '
  /^\[\[bin\]\]/ { inbin = 1; next }
  /^\[/ { inbin = 0 }
  inbin && /^name[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*/, "", v); print v }
' "$fuzz/Cargo.toml")
if ((${#targets[@]} == 0)); then
  echo "build.sh: no [[bin]] targets in $fuzz/Cargo.toml" >&2
  exit 1
fi

triple=${CARGO_BUILD_TARGET:-$("${rustc[@]}" -vV | sed -n 's/^host: //p')}
echo "build.sh: building ${targets[*]} for $triple (${cargo[*]} fuzz build ${flags[*]})" >&2
(cd "$fuzz" && "${cargo[@]}" fuzz build "${flags[@]}")

zip_folder() { # zip_folder DIR ZIP: the files of DIR, without folders, into ZIP
  rm -f "$2"
  if command -v zip >/dev/null 2>&1; then
    find "$1" -maxdepth 1 -type f -print0 | xargs -0 -r zip -q -X -j "$2"
  else
    python3 - "$1" "$2" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            z.write(path, name)
PY
  fi
}

for t in "${targets[@]}"; do
  bin="$fuzz/target/$triple/release/$t"
  if [[ ! -x "$bin" ]]; then
    echo "build.sh: $bin was not built" >&2
    exit 1
  fi
  cp "$bin" "$OUT/$t"
  if [[ -d "$fuzz/corpus/$t" ]] && [[ -n "$(ls -A "$fuzz/corpus/$t")" ]]; then
    zip_folder "$fuzz/corpus/$t" "$OUT/${t}_seed_corpus.zip"
  fi
  cp "$fuzz/amqp.dict" "$OUT/$t.dict"
  # ASan keeps the allocation stack of every allocation; the decoders' recursion makes new
  # stacks without end, and a long run's memory grew past the limit (the value target:
  # 2 GB in 14 minutes, flat at about 0.5 GB with 8 frames kept).
  printf '[libfuzzer]\ndict = %s.dict\nrss_limit_mb = 2048\n\n[asan]\nmalloc_context_size = 8\n' \
    "$t" >"$OUT/$t.options"
done
echo "build.sh: ${#targets[@]} targets in $OUT" >&2
