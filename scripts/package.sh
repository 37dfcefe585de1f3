#!/usr/bin/env bash
# Builds the Debian package of embedstack for one PostgreSQL major ($PG, default 15), named the
# way PostgreSQL's apt repository names extensions: postgresql-N-embedstack_VERSION-1_ARCH.deb in
# target/packages/. Runs where that major's pg_config is (this machine for 15; for 17 and 18
# inside their Debian root: `make package PG=17` does that).
#
# The package holds the library, the control file, the install script of this version, every
# upgrade script (sql/embedstack--A--B.sql) and the frozen install scripts of earlier releases
# (sql/releases/), so `CREATE EXTENSION embedstack VERSION '0.3.0'` and every update path work.
# Depends: the server major, pgvector >= 0.8.0 (the oldest pgvector the extension works with:
# halfvec, hnsw.iterative_scan), the shared libraries dpkg-shlibdeps finds; Recommends pgvector
# 0.8.7, whose HNSW fixes (parallel build, VACUUM) a served generation relies on, and pg_cron.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
log() { printf '[package %s] %s\n' "$PG" "$*"; }

version="$ES_VERSION"
major="$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')"
[ "$major" = "$PG" ] || { echo "package: $PG_CONFIG is PostgreSQL $major, not $PG" >&2; exit 1; }
arch="$(dpkg --print-architecture)"
name="postgresql-$PG-embedstack"
out="$ROOT/target/packages"
stage="${CARGO_TARGET_DIR:-$ROOT/target}/release/deb-$name"

# The PGXN distribution metadata: valid by PGXN's own validator (pgxn_meta, installed by
# scripts/setup.sh on this machine: a Debian root cannot fetch crates, it lacks the machine's CA
# certificates), and the version of this build.
command -v pgxn_meta >/dev/null || { echo "package: pgxn_meta missing; run scripts/setup.sh (outside a Debian root)" >&2; exit 1; }
pgxn_meta "$ROOT/META.json" >/dev/null
meta_versions="$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["version"], m["provides"]["embedstack"]["version"])' "$ROOT/META.json")"
[ "$meta_versions" = "$version $version" ] || { echo "package: META.json says $meta_versions, Cargo.toml $version" >&2; exit 1; }

log "cargo pgrx package (release) for $("$PG_CONFIG" --version)"
rm -rf "$stage"
# shellcheck disable=SC2086 # ES_FEATURES is a word list (env.sh)
cargo pgrx package $ES_FEATURES --pg-config "$PG_CONFIG" --out-dir "$stage" >/dev/null
libdir="$stage$("$PG_CONFIG" --pkglibdir)"
extdir="$stage$("$PG_CONFIG" --sharedir)/extension"
[ -f "$libdir/embedstack.so" ] && [ -f "$extdir/embedstack--$version.sql" ] \
  || { echo "package: cargo pgrx package did not produce the library and embedstack--$version.sql" >&2; exit 1; }
# The upgrade script into this version must restate every object that changed since the last
# release: scripts/upgrade-delta.py compares the frozen install script of that release with the
# one just built.
last_release="$(ls "$ROOT"/sql/releases/embedstack--*.sql | sed 's/.*embedstack--\(.*\)\.sql/\1/' | sort -V | tail -n1)"
if [ "$last_release" != "$version" ]; then
  upgrade="$ROOT/sql/embedstack--$last_release--$version.sql"
  [ -f "$upgrade" ] || { echo "package: no upgrade script $upgrade from the last release" >&2; exit 1; }
  log "checking $(basename "$upgrade") against the changes since $last_release"
  python3 "$ROOT/scripts/upgrade-delta.py" --check "$upgrade" --to "$extdir/embedstack--$version.sql"
fi
for f in "$ROOT"/sql/embedstack--*--*.sql "$ROOT"/sql/releases/embedstack--*.sql; do
  install -m 644 "$f" "$extdir/"
done
chmod 644 "$extdir"/* && chmod 755 "$libdir/embedstack.so"
strip --strip-debug "$libdir/embedstack.so"

# Shared-library dependencies, as dpkg-shlibdeps computes them for any Debian package.
shl="$(mktemp -d)"
mkdir "$shl/debian"
printf 'Source: embedstack\n\nPackage: %s\nArchitecture: any\n' "$name" >"$shl/debian/control"
shlibs="$(cd "$shl" && dpkg-shlibdeps -O "$libdir/embedstack.so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
rm -rf "$shl"
[ -n "$shlibs" ] || { echo "package: dpkg-shlibdeps found no dependencies for embedstack.so" >&2; exit 1; }

mkdir -p "$stage/DEBIAN" "$stage/usr/share/doc/$name"
install -m 644 "$ROOT/README.md" "$stage/usr/share/doc/$name/README.md"
gzip -9n "$stage/usr/share/doc/$name/README.md"
cat >"$stage/usr/share/doc/$name/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: embedstack
License: PostgreSQL
EOF
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
cat >"$stage/DEBIAN/control" <<EOF
Package: $name
Source: embedstack
Version: $version-1
Architecture: $arch
Maintainer: embedstack developers <embedstack@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: postgresql-$PG, postgresql-$PG-pgvector (>= 0.8.0), $shlibs
Recommends: postgresql-$PG-pgvector (>= 0.8.7), postgresql-$PG-cron
Section: database
Priority: optional
Description: learn a weighted stack of embedding models, served by pgvector HNSW
 embedstack is a PostgreSQL $PG extension that fits, inside the database, how to
 combine several embedding models of the same rows (per-model cosines, a
 regression aggregate for the weights) and serves the combined vector through
 one pgvector HNSW index, kept fresh by triggers, with refits and rollback.
EOF
mkdir -p "$out"
deb="$out/${name}_$version-1_$arch.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
(cd "$out" && sha256sum "$(basename "$deb")" >"$(basename "$deb").sha256")
log "built $deb ($(du -h "$deb" | cut -f1)): Depends: $(dpkg-deb -f "$deb" Depends)"
