#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian bookworm machine (run as root) for building, installing
# and testing embedstack: apt packages, pgvector 0.8.0 from Debian's source package,
# cargo-pgrx at the version pinned in Cargo.toml, and `cargo pgrx init` against the system PG15.
# Every step checks whether it is already done, so CI and every session can call it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$here/scripts/env.sh"

log() { printf '[setup] %s\n' "$*"; }

# Other majors run inside their Debian root (scripts/pg-root.sh), which has the server, headers,
# pgvector and pg_cron as Debian packages already: only pgrx needs to learn their pg_config.
if [ "$PG" != 15 ]; then
  [ -x "$PG_CONFIG" ] || { echo "setup: no $PG_CONFIG; PostgreSQL $PG is set up by scripts/pg-root.sh $PG setup and used inside that root (make test-matrix)" >&2; exit 1; }
  cargo pgrx --version 2>/dev/null | grep -qx "cargo-pgrx $PGRX_VERSION" || { echo "setup: cargo-pgrx $PGRX_VERSION missing (run scripts/setup.sh outside the root first)" >&2; exit 1; }
  if ! grep -q "pg$PG = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    log "cargo pgrx init --pg$PG $PG_CONFIG"
    cargo pgrx init "--pg$PG" "$PG_CONFIG" >/dev/null
  fi
  log "set-up complete for PostgreSQL $PG ($("$PG_CONFIG" --version))"
  exit 0
fi

# ---------------------------------------------------------------- apt packages
# postgresql-15-cron: pg_cron, the scheduler the README's refit recipe and its test use.
# debootstrap: the Debian roots of the other PostgreSQL majors and of the package tests (pg-root.sh).
apt_pkgs=(postgresql-15 postgresql-server-dev-15 postgresql-contrib postgresql-15-cron libclang-dev clang
          sudo pkg-config make gcc dpkg-dev ca-certificates debootstrap)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# ---------------------------------------------------------------- pgvector from Debian source
PGVECTOR_VERSION="${PGVECTOR_DEB%-*}"   # PGVECTOR_DEB: env.sh
PGVECTOR_SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
ext_dir="$($PG_CONFIG --sharedir)/extension"
lib_dir="$($PG_CONFIG --pkglibdir)"
if [ -f "$lib_dir/vector.so" ] && grep -q "default_version = '$PGVECTOR_VERSION'" "$ext_dir/vector.control" 2>/dev/null; then
  log "pgvector $PGVECTOR_VERSION present"
else
  log "building pgvector $PGVECTOR_VERSION from Debian's source package"
  src_list=/etc/apt/sources.list.d/embedstack-trixie-src.sources
  if [ ! -f "$src_list" ]; then
    cat > "$src_list" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  apt-get update -qq
  work="$(mktemp -d)"
  (
    cd "$work"
    apt-get source --download-only "pgvector=$PGVECTOR_DEB" >/dev/null
    echo "$PGVECTOR_SHA256  pgvector_$PGVECTOR_VERSION.orig.tar.gz" | sha256sum -c - >/dev/null
    tar xzf "pgvector_$PGVECTOR_VERSION.orig.tar.gz"
    cd "pgvector-$PGVECTOR_VERSION"
    # OPTFLAGS="" avoids -march=native, so the build runs on any x86-64 machine.
    make -s OPTFLAGS="" PG_CONFIG="$PG_CONFIG" >/dev/null
    make -s OPTFLAGS="" PG_CONFIG="$PG_CONFIG" install >/dev/null
  )
  rm -rf "$work"
  [ -f "$lib_dir/vector.so" ] || { echo "pgvector install failed" >&2; exit 1; }
fi

# ---------------------------------------------------------------- cargo-pgrx (pinned)
if cargo pgrx --version 2>/dev/null | grep -qx "cargo-pgrx $PGRX_VERSION"; then
  log "cargo-pgrx $PGRX_VERSION present"
else
  log "installing cargo-pgrx $PGRX_VERSION from crates.io (slow: 6-20 minutes on 2 cores)"
  cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
fi

# ---------------------------------------------------------------- pgxn_meta (pinned)
# PGXN's META.json validator, used by every package build (scripts/package.sh), also the ones
# inside a Debian root, which reach ~/.cargo/bin but cannot fetch crates themselves.
PGXN_META_VERSION=0.7.0
if pgxn_meta --version 2>/dev/null | grep -q " $PGXN_META_VERSION\$"; then
  log "pgxn_meta $PGXN_META_VERSION present"
else
  log "installing pgxn_meta $PGXN_META_VERSION (PGXN's META.json validator) from crates.io"
  cargo install pgxn_meta --version "=$PGXN_META_VERSION" --locked
fi

# ---------------------------------------------------------------- cargo pgrx init (local pg_config only)
pgrx_home="${PGRX_HOME:-$HOME/.pgrx}"
if grep -q "pg15 = \"$PG_CONFIG\"" "$pgrx_home/config.toml" 2>/dev/null; then
  log "cargo pgrx already initialised for $PG_CONFIG"
else
  log "cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi

# The pgrx test runner and our clusters run as the postgres OS user; it must be able to
# read the repository (CI clones under /work or /tmp as root).
log "set-up complete"
