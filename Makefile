# embedstack — the README's two commands are `make demo` and `make test`.
# Both set everything up first (idempotent), so they work on a fresh machine as root.
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CLUSTER := bash $(ROOT)/scripts/cluster.sh

.PHONY: setup install cluster demo test test-core test-pg test-regress test-client \
        bench-primitives bench-fit bench-model-sets stop clean fmt

setup:
	bash scripts/setup.sh

# Build (release) and install the extension into the system PostgreSQL 15.
install: setup
	cargo pgrx install --release --pg-config $$(bash -c '. scripts/env.sh; echo $$PG_CONFIG')

cluster: install
	$(CLUSTER) start

# The main job on the built-in sample.
demo: cluster
	$(CLUSTER) psql -v ON_ERROR_STOP=1 -d postgres -c 'DROP DATABASE IF EXISTS embedstack_demo' -c 'CREATE DATABASE embedstack_demo'
	$(CLUSTER) psql -v ON_ERROR_STOP=1 -d embedstack_demo -f demo/sample.sql -f demo/demo.sql

# Every test layer, cheapest first.
test: setup test-core test-pg cluster test-regress test-client

# Pure numerical core: unit and property tests, no Postgres.
test-core:
	cargo test -p embedstack-math --tests

# #[pg_test]s inside a backend (pgrx runs its own cluster as the postgres OS user).
test-pg:
	. scripts/env.sh && mkdir -p "$$ES_PGRX_TESTDATA" && chown postgres:postgres "$$ES_PGRX_TESTDATA" \
	  && cargo pgrx test pg15 --runas postgres --pgdata "$$ES_PGRX_TESTDATA"

# pg_regress golden files against the project cluster (needs `make cluster`).
test-regress:
	bash scripts/regress.sh

# Client-side integration tests against the project cluster (needs `make cluster`).
test-client:
	. scripts/env.sh && cargo test -p embedstack-client-tests --tests -- --test-threads=2

bench-primitives: cluster
	$(CLUSTER) psql -q -d postgres -c 'DROP DATABASE IF EXISTS es_bench' -c 'CREATE DATABASE es_bench'
	$(CLUSTER) psql -v ON_ERROR_STOP=1 -d es_bench -f bench/cosine_features.sql

bench-fit: cluster
	$(CLUSTER) psql -q -d postgres -c 'DROP DATABASE IF EXISTS es_bench' -c 'CREATE DATABASE es_bench'
	$(CLUSTER) psql -v ON_ERROR_STOP=1 -d es_bench -f bench/fit_aggregate.sql

# fit from stored columns vs plain SQL, materialise vs CREATE TABLE AS (scale: ENTITIES, PAIRS).
ENTITIES ?= 200000
PAIRS ?= 1000000
bench-model-sets: cluster
	$(CLUSTER) psql -q -d postgres -c 'DROP DATABASE IF EXISTS es_bench_ms' -c 'CREATE DATABASE es_bench_ms'
	$(CLUSTER) psql -v ON_ERROR_STOP=1 -v entities=$(ENTITIES) -v pairs=$(PAIRS) -d es_bench_ms -f bench/model_sets.sql

stop:
	$(CLUSTER) stop

fmt:
	cargo fmt --all

clean: stop
	. scripts/env.sh && rm -rf "$$ES_PGDATA" "$$ES_PGRUN" "$$ES_PGRX_TESTDATA" target
