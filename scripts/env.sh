# Sourced by the scripts: one place for paths, ports and versions.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# PG: the PostgreSQL major to build and test against. 15 is this machine's own server (Debian
# bookworm); 17 and 18 run inside Debian roots of their suites (scripts/pg-root.sh, `make
# test-matrix`), where Debian's layout puts pg_config at /usr/lib/postgresql/N/bin. The Cargo
# feature is pgN; other majors get their own target dir, data dirs and port so that builds and
# clusters of different majors never share state.
export PG="${PG:-15}"
if [ "$PG" = 15 ]; then
  export PG_CONFIG="${PG_CONFIG:-/usr/bin/pg_config}"
  ES_SUFFIX=""
else
  export PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/$PG/bin/pg_config}"
  ES_SUFFIX="-pg$PG"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/pg$PG}"
fi
export ES_FEATURES="--no-default-features --features pg$PG"
# (Empty where this major's pg_config is not on this machine: scripts that drive its Debian root
# from outside read the versions below and nothing else.)
export PG_BIN="${PG_BIN:-$("$PG_CONFIG" --bindir 2>/dev/null || true)}"
# The pinned pgrx version is read from Cargo.toml (`pgrx = "=X.Y.Z"`), its only home.
PGRX_VERSION="$(sed -n 's/^pgrx = "=\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)"
export PGRX_VERSION
# This build's extension version: the root package's `version` in Cargo.toml (pgrx's default_version).
ES_VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
export ES_VERSION
# pgvector where it is built from Debian's source package (this machine's PostgreSQL 15, by
# setup.sh, and the bookworm root of the 15 package test, by pg-root.sh): the Debian version.
export PGVECTOR_DEB=0.8.0-1
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
export ES_PGDATA="${ES_PGDATA:-$ES_STATE/.pgdata$ES_SUFFIX}"
export ES_PGRUN="${ES_PGRUN:-$ES_STATE/.pgrun$ES_SUFFIX}"   # socket dir and log
export ES_PGRX_TESTDATA="${ES_PGRX_TESTDATA:-$ES_STATE/.pgrx-testdata$ES_SUFFIX}"
if [ "$PG" = 15 ]; then export ES_PGPORT="${ES_PGPORT:-54815}"; else export ES_PGPORT="${ES_PGPORT:-548$PG}"; fi
export ES_PGUSER=postgres
