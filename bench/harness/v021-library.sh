#!/usr/bin/env bash
# The embedstack 0.2.1 library for the harness's refit-under-load comparison (bench/harness/refit_load.py):
# built (release profile, as `make install` builds) from the git commit whose install script is frozen
# as sql/releases/embedstack--0.2.1.sql, into a directory of its own. Installs nothing: the harness
# points the C functions of its 0.2.1 scratch database at this file (pg_proc.probin), so the
# installed 0.3.0 library is never touched. Cached: does nothing when the library is there.
# Prints the library's path on its last line.
#   bench/harness/v021-library.sh            # build if needed, print the path
#   bench/harness/v021-library.sh --path     # print the path only (no build)
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/env.sh"
# 0.2.1: the last commit before the 0.3.0 storage work (its Cargo.toml says version 0.2.1).
COMMIT="${ES_V021_COMMIT:-b7a23f7a067efba8afe9ca84f602719bd94df250}"
DIR="${ES_V021_DIR:-/var/tmp/embedstack-bench-v021}"
SO="$DIR/embedstack-0.2.1-${COMMIT:0:12}.so"
if [ "${1:-}" = "--path" ]; then
  echo "$SO"
  exit 0
fi
if [ ! -s "$SO" ]; then
  src="$DIR/src-${COMMIT:0:12}"
  rm -rf "$src"
  mkdir -p "$src"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$src"
  grep -q '^version = "0.2.1"$' "$src/Cargo.toml" || { echo "v021-library: $COMMIT is not version 0.2.1" >&2; exit 1; }
  echo "[v021-library] building embedstack 0.2.1 ($COMMIT) in $src (a few minutes)" >&2
  (cd "$src" && PGRX_PG_CONFIG_PATH="$PG_CONFIG" CARGO_TARGET_DIR="$DIR/target" \
     cargo build --release --lib -p embedstack --features pg15 >&2)
  install -m 755 "$DIR/target/release/libembedstack.so" "$SO.tmp"
  mv -f "$SO.tmp" "$SO"
  chmod 755 "$DIR"
fi
echo "$SO"
