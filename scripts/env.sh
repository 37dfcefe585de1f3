# Sourced by the scripts: one place for paths, ports and versions.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PG_CONFIG="${PG_CONFIG:-/usr/bin/pg_config}"
export PG_BIN="${PG_BIN:-$($PG_CONFIG --bindir)}"
# The pinned pgrx version is read from Cargo.toml (`pgrx = "=X.Y.Z"`), its only home.
PGRX_VERSION="$(sed -n 's/^pgrx = "=\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)"
export PGRX_VERSION
# The project-local cluster used by `make demo`, pg_regress and the client tests, and the data
# dir of pgrx's own test cluster. Both run as the postgres OS user, so they live in the
# repository only when that user can reach it; otherwise under /var/tmp, one dir per checkout.
if [ -z "${ES_STATE:-}" ]; then
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$ROOT" 2>/dev/null; then
    ES_STATE="$ROOT"
  else
    ES_STATE="/var/tmp/embedstack-$(printf %s "$ROOT" | md5sum | cut -c1-8)"
    mkdir -p "$ES_STATE"
  fi
fi
export ES_STATE
export ES_PGDATA="${ES_PGDATA:-$ES_STATE/.pgdata}"
export ES_PGRUN="${ES_PGRUN:-$ES_STATE/.pgrun}"   # socket dir and log
export ES_PGRX_TESTDATA="${ES_PGRX_TESTDATA:-$ES_STATE/.pgrx-testdata}"
export ES_PGPORT="${ES_PGPORT:-54815}"
export ES_PGUSER=postgres
