#!/usr/bin/env bash
# Builds and installs Citus 13.2.2 for the system PostgreSQL 15 from its source release,
# idempotently (skipped when that version is installed). No package registry reachable here
# ships Citus, so the source comes from a tarball:
#   CITUS_TARBALL=/path/to/citus-13.2.2.tar.gz   the upstream `git archive` of tag v13.2.2
#   (unset: downloaded from GitHub's release archive of the tag)
#   CITUS_SHA256=...                             expected checksum (default: the archive's)
# As released, Citus 13.2.2 does not compile against PostgreSQL 15.20: its
# src/include/pg_version_compat.h defines a static have_createdb_privilege(), which 15.20 now
# exports from commands/dbcommands.h. When the installed headers export it, the static definition
# is replaced by an include of that header (about 8 minutes to build on 2 cores).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
log() { printf '[setup-citus] %s\n' "$*"; }

CITUS_VERSION=13.2.2
CITUS_SHA256="${CITUS_SHA256:-dd2453caec20a830e5e63f1def5c5a98cb6f57ae510407cdcd800916fcdab430}"
libdir="$($PG_CONFIG --pkglibdir)"
sharedir="$($PG_CONFIG --sharedir)/extension"
if [ -f "$libdir/citus.so" ] && grep -q "default_version = '${CITUS_VERSION%.*}" "$sharedir/citus.control" 2>/dev/null; then
  log "citus $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$sharedir/citus.control") present"
  exit 0
fi

apt_pkgs=(libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev libselinux1-dev libxslt1-dev
          libpam0g-dev libreadline-dev postgresql-server-dev-15 make gcc)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tarball="${CITUS_TARBALL:-}"
if [ -z "$tarball" ]; then
  tarball="$work/citus-$CITUS_VERSION.tar.gz"
  log "downloading the v$CITUS_VERSION source archive from GitHub"
  curl -fsSL -o "$tarball" "https://github.com/citusdata/citus/archive/refs/tags/v$CITUS_VERSION.tar.gz"
fi
echo "$CITUS_SHA256  $tarball" | sha256sum -c - >/dev/null || {
  echo "setup-citus: $tarball does not have the expected sha256 (set CITUS_SHA256 to accept another)" >&2
  exit 1
}
tar -C "$work" -xzf "$tarball"
src="$work/citus-$CITUS_VERSION"
compat="$src/src/include/pg_version_compat.h"
if grep -q 'extern bool have_createdb_privilege' "$($PG_CONFIG --includedir-server)/commands/dbcommands.h" \
   && grep -q '^have_createdb_privilege(void)' "$compat"; then
  log "patching pg_version_compat.h: the server exports have_createdb_privilege()"
  python3 - "$compat" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
new, n = re.subn(r'static inline bool\nhave_createdb_privilege\(void\)\n\{.*?\n\}\n',
                 '#include "commands/dbcommands.h"  /* exported since 15.20 (embedstack setup-citus) */\n', s, count=1, flags=re.S)
assert n == 1, "have_createdb_privilege definition not found"
open(p, 'w').write(new)
PY
fi
log "building citus $CITUS_VERSION (several minutes)"
(
  cd "$src"
  ./configure --without-libcurl PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s -j"$(nproc)" >/dev/null
  make -s install >/dev/null
)
[ -f "$libdir/citus.so" ] || { echo "setup-citus: citus.so was not installed" >&2; exit 1; }
log "citus $CITUS_VERSION installed"
