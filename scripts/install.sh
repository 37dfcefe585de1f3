#!/usr/bin/env bash
# Builds (release, or debug with --debug) and installs the extension into the system PostgreSQL
# without ever exposing a half-written library: `cargo pgrx install` copies embedstack.so in
# place, and a backend that loads it mid-copy (a running test, a benchmark) dies with SIGSEGV.
# Here pgrx packages into a staging directory, then every file is copied to a temporary name
# next to its destination and renamed over it (rename is atomic within a file system; backends
# that already mapped the old library keep it).
#   scripts/install.sh [--debug]
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
profile=release
args=()
if [ "${1:-}" = "--debug" ]; then profile=debug; args+=(--debug); fi
stage="${CARGO_TARGET_DIR:-$ROOT/target}/$profile/embedstack-package"
rm -rf "$stage"
# shellcheck disable=SC2086 # ES_FEATURES is a word list (env.sh)
cargo pgrx package "${args[@]}" $ES_FEATURES --pg-config "$PG_CONFIG" --out-dir "$stage" >/dev/null
libdir="$($PG_CONFIG --pkglibdir)"
sharedir="$($PG_CONFIG --sharedir)/extension"
put() { # put SRC DEST_DIR MODE: copy to a temp name in DEST_DIR, then rename over the target
  local tmp
  tmp="$(mktemp "$2/.embedstack-install.XXXXXX")"
  install -m "$3" "$1" "$tmp"
  mv -f "$tmp" "$2/$(basename "$1")"
}
n=0
while IFS= read -r -d '' f; do
  case "$f" in
    *.so) put "$f" "$libdir" 755 ;;
    *.sql|*.control) put "$f" "$sharedir" 644 ;;
    *) continue ;;
  esac
  n=$((n + 1))
done < <(find "$stage" -type f -print0)
[ "$n" -ge 3 ] || { echo "install: the package in $stage has only $n files" >&2; exit 1; }
# The install scripts of earlier releases (for upgrades), the same way.
for f in "$ROOT"/sql/releases/embedstack--*.sql; do put "$f" "$sharedir" 644; done
echo "[install] embedstack ($profile) installed: $n files from $stage, $(ls "$ROOT"/sql/releases/*.sql | wc -l) earlier release scripts"
