# Sourced by the scripts: one place for paths, ports and versions.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PG_CONFIG="${PG_CONFIG:-/usr/bin/pg_config}"
export PG_BIN="${PG_BIN:-$($PG_CONFIG --bindir)}"
# The pinned pgrx version is read from Cargo.toml (`pgrx = "=X.Y.Z"`), its only home.
PGRX_VERSION="$(sed -n 's/^pgrx = "=\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)"
export PGRX_VERSION
# The project-local cluster used by `make demo`, pg_regress and the client tests.
export ES_PGDATA="${ES_PGDATA:-$ROOT/.pgdata}"
export ES_PGRUN="${ES_PGRUN:-$ROOT/.pgrun}"   # socket dir and log
export ES_PGPORT="${ES_PGPORT:-54815}"
export ES_PGUSER=postgres
