#!/usr/bin/env bash
# Installs the package `make package PG=N` built into PostgreSQL N's Debian root the way a DBA
# would, and checks it works and goes away cleanly:
#   1. the root is entered bare (scripts/pg-root.sh N bare): neither the repository nor any cargo
#      output is reachable, and every embedstack file an earlier `make install` of the matrix put
#      into the root is removed first, so only the package can provide the extension;
#   2. `dpkg -i` with its dependencies checked against the root's real Debian packages
#      (postgresql-N, postgresql-N-pgvector), never forced;
#   3. a fresh cluster: the pg_regress suite (CREATE EXTENSION embedstack CASCADE, the documented
#      SQL and the README walk-through, against the suite's expected output), then CREATE EXTENSION at the oldest release
#      and ALTER EXTENSION UPDATE to the packaged version (every upgrade script shipped);
#   4. the WordSim fit on that server equals scikit-learn's weights to 1e-9 (the client test
#      model_sets_wordsim, run from this machine against the root's server);
#   5. `dpkg --purge`: every file the package installed is gone, dpkg no longer knows it.
#   scripts/package-test.sh N
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:?usage: package-test.sh N}"
. "$here/scripts/env.sh"
log() { printf '[package-test %s] %s\n' "$N" "$*"; }
version="$ES_VERSION"
deb="$here/target/packages/postgresql-$N-embedstack_$version-1_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "package-test: no $deb; run: make package PG=$N" >&2; exit 1; }
(cd "$(dirname "$deb")" && sha256sum -c --quiet "$(basename "$deb").sha256")
root="$(bash "$here/scripts/pg-root.sh" "$N" path)"
work=/tmp/embedstack-package-test
rm -rf "$root$work"
mkdir -p "$root$work/regress/sql" "$root$work/regress/expected"
cp "$deb" "$root$work/"
cp "$here"/tests/pg_regress/sql/*.sql "$root$work/regress/sql/"
cp "$here"/tests/pg_regress/expected/*.out "$root$work/regress/expected/"
tests="$(sed -e 's/#.*//' "$here/tests/pg_regress/schedule" | xargs)"
oldest="$(ls "$here"/sql/releases/embedstack--*.sql | sed 's/.*embedstack--\(.*\)\.sql/\1/' | sort -V | head -n1)"

bash "$here/scripts/pg-root.sh" "$N" bare bash -s -- "$N" "$work" "$(basename "$deb")" "$version" "$oldest" "$tests" <<'IN_ROOT'
set -euo pipefail
N="$1" work="$2" deb="$3" version="$4" oldest="$5" tests="$6"
log() { printf '[package-test %s] %s\n' "$N" "$*"; }
bin=/usr/lib/postgresql/$N/bin
libdir="$($bin/pg_config --pkglibdir)"; extdir="$($bin/pg_config --sharedir)/extension"
port=$((55000 + N))
rm -f "$libdir/embedstack.so" "$extdir"/embedstack.control "$extdir"/embedstack--*.sql
dpkg-query -W "postgresql-$N-embedstack" >/dev/null 2>&1 && dpkg --purge "postgresql-$N-embedstack" >/dev/null
[ ! -e "$libdir/embedstack.so" ] || { echo "embedstack.so still present before the install" >&2; exit 1; }

log "dpkg -i $deb"
export DEBIAN_FRONTEND=noninteractive
dpkg -i "$work/$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 1; }
[ "$(dpkg-query -W -f='${Status} ${Version}' "postgresql-$N-embedstack")" = "install ok installed $version-1" ]
dpkg -L "postgresql-$N-embedstack" | while read -r f; do if [ -f "$f" ]; then echo "$f"; fi; done >"$work/files"
log "installed $(wc -l <"$work/files") files, $(grep -c '\.sql$' "$work/files") SQL scripts"

log "fresh cluster on port $port"
data="$work/data"
mkdir -p "$data" && chown postgres:postgres "$data" "$work" "$work/regress" && chmod 700 "$data"
runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$work/server.log" -w -t 60 \
  -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work" start >/dev/null
stop() { runuser -u postgres -- "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; }
trap stop EXIT

log "the pg_regress suite (CREATE EXTENSION embedstack CASCADE, the documented SQL, the walk-through)"
mkdir -p "$work/regress/out" && chown -R postgres:postgres "$work/regress"
if ! runuser -u postgres -- "$libdir/pgxs/src/test/regress/pg_regress" --bindir="$bin" --host=127.0.0.1 \
     --port="$port" --user=postgres --inputdir="$work/regress" --outputdir="$work/regress/out" \
     --dbname=embedstack_pkg $tests; then
  cat "$work/regress/out/regression.diffs" >&2 || true
  exit 1
fi

log "CREATE EXTENSION embedstack VERSION '$oldest', then ALTER EXTENSION UPDATE"
psql() { "$bin/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }
psql -d postgres -c 'CREATE DATABASE embedstack_upgrade'
got="$(psql -d embedstack_upgrade -c 'CREATE EXTENSION vector' \
  -c "CREATE EXTENSION embedstack VERSION '$oldest'" -c 'ALTER EXTENSION embedstack UPDATE' \
  -c "SELECT extversion FROM pg_extension WHERE extname = 'embedstack'")"
[ "$got" = "$version" ] || { echo "after ALTER EXTENSION UPDATE from $oldest: version $got, want $version" >&2; exit 1; }
trap - EXIT   # the server stays up for the WordSim test; the second part stops it
IN_ROOT

# The WordSim fixture's fit on this server must equal scikit-learn's weights to 1e-9, as on every
# other install: the client test runs here (the client side; the server has only the package).
port=$((55000 + N))
stop_server() {
  bash "$here/scripts/pg-root.sh" "$N" bare runuser -u postgres -- /usr/lib/postgresql/"$N"/bin/pg_ctl \
    -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop_server EXIT
log "the WordSim fit against scikit-learn's weights (client test model_sets_wordsim, port $port)"
# (This machine's build of the client, whatever major PG names: the roots' builds need their glibc.)
(cd "$here" && env -u PG -u PG_CONFIG -u PG_BIN -u CARGO_TARGET_DIR ES_PGPORT=$port \
  bash -c '. scripts/env.sh && cargo test -q -p embedstack-client-tests --test model_sets_wordsim') \
  >"$root$work/wordsim.log" 2>&1 || { cat "$root$work/wordsim.log" >&2; exit 1; }
grep -E '^test result' "$root$work/wordsim.log"
stop_server
trap - EXIT

bash "$here/scripts/pg-root.sh" "$N" bare bash -s -- "$N" "$work" <<'IN_ROOT'
set -euo pipefail
N="$1" work="$2"
log() { printf '[package-test %s] %s\n' "$N" "$*"; }
log "dpkg --purge"
DEBIAN_FRONTEND=noninteractive dpkg --purge "postgresql-$N-embedstack" >/dev/null
if dpkg-query -W "postgresql-$N-embedstack" >/dev/null 2>&1; then
  echo "dpkg still knows postgresql-$N-embedstack" >&2; exit 1
fi
left="$(while read -r f; do if [ -e "$f" ]; then echo "$f"; fi; done <"$work/files")"
[ -z "$left" ] || { echo "files left after the purge:" >&2; echo "$left" >&2; exit 1; }
log "removed cleanly; postgresql-$N-pgvector $(dpkg-query -W -f='${Version}' "postgresql-$N-pgvector") still installed"
IN_ROOT
rm -rf "$root$work"
log "ok: $(basename "$deb") installed, pg_regress suite passed, WordSim weights = scikit-learn's, updated from $oldest, purged cleanly"
