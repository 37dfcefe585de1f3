#!/usr/bin/env bash
# Builds the embedstack library of a git commit (release profile, as `make install` builds it)
# into a directory of its own, for the harness: bench/harness/v021-library.sh (0.2.1 for the
# refit-under-load comparison) and `run.py --library` (a release build of the work tree's commit
# when the installed library is not one, e.g. after `cargo pgrx test` installed a debug build).
# Installs nothing: the harness points the C functions of its scratch databases at the file
# (pg_proc.probin). Cached: does nothing when the library of that commit is there. Prints the
# library's path on its last line.
#   bench/harness/build-library.sh COMMIT            # build if needed, print the path
#   bench/harness/build-library.sh COMMIT --path     # print the path only (no build)
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/env.sh"
COMMIT="$(git -C "$ROOT" rev-parse --verify "${1:?usage: build-library.sh COMMIT [--path]}^{commit}")"
DIR="${ES_BENCH_LIBS:-/var/tmp/embedstack-bench-libs}"
VERSION="$(git -C "$ROOT" show "$COMMIT:Cargo.toml" | sed -n 's/^version = "\(.*\)"$/\1/p' | head -n1)"
SO="$DIR/embedstack-$VERSION-${COMMIT:0:12}.so"
if [ "${2:-}" = "--path" ]; then
  echo "$SO"
  exit 0
fi
if [ ! -s "$SO" ]; then
  src="$DIR/src-${COMMIT:0:12}"
  rm -rf "$src"
  mkdir -p "$src"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$src"
  echo "[build-library] building embedstack $VERSION ($COMMIT) in $src (a few minutes)" >&2
  # One target directory for every commit: the dependencies are compiled once.
  (cd "$src" && PGRX_PG_CONFIG_PATH="$PG_CONFIG" CARGO_TARGET_DIR="$DIR/target" \
     cargo build --release --lib -p embedstack --features pg15 >&2)
  install -m 755 "$DIR/target/release/libembedstack.so" "$SO.tmp"
  mv -f "$SO.tmp" "$SO"
  chmod 755 "$DIR"
fi
echo "$SO"
