#!/usr/bin/env bash
# The project-local PostgreSQL 15 cluster used by `make demo`, pg_regress and the client tests.
# Runs as the `postgres` OS user (Postgres refuses root) in $ES_PGDATA on port $ES_PGPORT.
#   cluster.sh start   -- initdb if needed, start if not running (re-uses a running server)
#   cluster.sh stop | status | psql [args]
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"

as_pg() { runuser -u postgres -- "$@"; }

start() {
  mkdir -p "$ES_PGRUN"
  chown postgres:postgres "$ES_PGRUN"
  if [ ! -f "$ES_PGDATA/PG_VERSION" ]; then
    mkdir -p "$ES_PGDATA"
    chown postgres:postgres "$ES_PGDATA"
    chmod 700 "$ES_PGDATA"
    if ! as_pg test -w "$ES_PGDATA"; then
      echo "the postgres OS user cannot write $ES_PGDATA (a parent directory is not traversable);" \
           "set ES_PGDATA and ES_PGRUN to a directory it can use" >&2
      exit 1
    fi
    as_pg "$PG_BIN/initdb" -D "$ES_PGDATA" -U postgres --auth=trust --encoding=UTF8 \
      --locale=C.UTF-8 >/dev/null
    cat >> "$ES_PGDATA/postgresql.conf" <<CONF
# embedstack development cluster
listen_addresses = '127.0.0.1'
port = $ES_PGPORT
unix_socket_directories = '$ES_PGRUN'
max_parallel_workers_per_gather = 2
max_worker_processes = 16
shared_buffers = 256MB
CONF
  fi
  # pg_cron (scheduled refits). Added to clusters created before it was part of the set-up too;
  # it is loaded at server start, so a running server without it is restarted.
  if ! grep -q '^# embedstack: pg_cron' "$ES_PGDATA/postgresql.conf"; then
    cat >> "$ES_PGDATA/postgresql.conf" <<CONF
# embedstack: pg_cron
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 24
CONF
    if as_pg "$PG_BIN/pg_ctl" -D "$ES_PGDATA" status >/dev/null 2>&1; then
      as_pg env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$ES_PGDATA" -l "$ES_PGRUN/server.log" -w -t 60 -m fast restart >/dev/null
      echo "[cluster] restarted to load pg_cron"
    fi
  fi
  if as_pg "$PG_BIN/pg_ctl" -D "$ES_PGDATA" status >/dev/null 2>&1; then
    echo "[cluster] running on port $ES_PGPORT ($ES_PGDATA)"
  else
    # No Rust backtraces in the server's environment: pgrx would put them in error DETAILs.
    as_pg env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$ES_PGDATA" -l "$ES_PGRUN/server.log" -w -t 60 start >/dev/null
    echo "[cluster] started on port $ES_PGPORT ($ES_PGDATA)"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) as_pg "$PG_BIN/pg_ctl" -D "$ES_PGDATA" -m fast stop || true ;;
  status) as_pg "$PG_BIN/pg_ctl" -D "$ES_PGDATA" status ;;
  psql) shift; exec "$PG_BIN/psql" -X -h 127.0.0.1 -p "$ES_PGPORT" -U postgres "$@" ;;
  *) echo "usage: $0 start|stop|status|psql [args]" >&2; exit 2 ;;
esac
