#!/usr/bin/env bash
# A local Citus cluster for the Citus test layer: a coordinator and two workers on one machine,
# each a PostgreSQL 15 instance run as the `postgres` OS user, on 127.0.0.1 ports
# $CITUS_PORT (coordinator, default 9700), +1 and +2 (workers), data under $ES_STATE/.citus.
# Needs Citus installed (make setup-citus) and embedstack installed (make install).
#   citus-cluster.sh start   -- initdb if needed, start the three nodes, CREATE EXTENSION citus on
#                               each node's `postgres` database, register the workers (idempotent)
#   citus-cluster.sh stop | status | psql [args] (psql to the coordinator)
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
base="${CITUS_PORT:-9700}"
dir="$ES_STATE/.citus"
run="$dir/run"
nodes=(coord w1 w2)
as_pg() { runuser -u postgres -- "$@"; }
port_of() { case "$1" in coord) echo "$base" ;; w1) echo $((base + 1)) ;; w2) echo $((base + 2)) ;; esac; }
psql_node() { local p; p="$(port_of "$1")"; shift; "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$p" -U postgres "$@"; }

start() {
  mkdir -p "$run"
  chown postgres:postgres "$dir" "$run"
  for n in "${nodes[@]}"; do
    local d="$dir/$n" p
    p="$(port_of "$n")"
    if [ ! -f "$d/PG_VERSION" ]; then
      mkdir -p "$d"; chown postgres:postgres "$d"; chmod 700 "$d"
      as_pg "$PG_BIN/initdb" -D "$d" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
      cat >> "$d/postgresql.conf" <<CONF
# embedstack Citus test cluster: node $n
listen_addresses = '127.0.0.1'
port = $p
unix_socket_directories = '$run'
shared_preload_libraries = 'citus'
shared_buffers = 128MB
max_connections = 200
max_worker_processes = 24
max_parallel_workers_per_gather = 2
CONF
    fi
    if ! as_pg "$PG_BIN/pg_ctl" -D "$d" status >/dev/null 2>&1; then
      as_pg env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$d" -l "$run/$n.log" -w -t 60 start >/dev/null
    fi
    psql_node "$n" -d postgres -c 'CREATE EXTENSION IF NOT EXISTS citus'
  done
  psql_node coord -d postgres -v ON_ERROR_STOP=1 <<SQL
SELECT citus_set_coordinator_host('localhost', $base);
SELECT citus_add_node('localhost', $((base + 1))) WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = $((base + 1)));
SELECT citus_add_node('localhost', $((base + 2))) WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = $((base + 2)));
SQL
  echo "[citus] coordinator on port $base, workers on $((base + 1)) and $((base + 2)) ($dir)"
}

stop() {
  for n in "${nodes[@]}"; do
    [ -f "$dir/$n/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$dir/$n" -m fast stop >/dev/null 2>&1 || true
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) for n in "${nodes[@]}"; do printf '%s: ' "$n"; as_pg "$PG_BIN/pg_ctl" -D "$dir/$n" status | head -1 || true; done ;;
  psql) shift; exec "$PG_BIN/psql" -X -h 127.0.0.1 -p "$base" -U postgres "$@" ;;
  *) echo "usage: $0 start|stop|status|psql [args]" >&2; exit 2 ;;
esac
