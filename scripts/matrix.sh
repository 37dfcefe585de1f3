#!/usr/bin/env bash
# The test matrix for one PostgreSQL major other than 15 (`make test-matrix` runs it for each of
# MATRIX): inside that major's Debian root (scripts/pg-root.sh), the build and #[pg_test]s, the
# release install, every pg_regress file, the client tests named in MATRIX_TESTS (hostile and
# shadow-object tests, serving, the WordSim fit that must equal scikit-learn's weights to 1e-9),
# then the .deb built and installed with dpkg in the bare root (scripts/package-test.sh).
#   scripts/matrix.sh N
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:?usage: matrix.sh N}"
tests="${MATRIX_TESTS:?MATRIX_TESTS: the client test files to run (set by the Makefile)}"
t0=$SECONDS
phase() { printf '[matrix %s] %s (%ds)\n' "$N" "$*" $((SECONDS - t0)); }
root() { bash "$here/scripts/pg-root.sh" "$N" "$@"; }
# The root starts commands with an empty environment: CI's CARGO_INCREMENTAL=0 is passed on.
inc=""
[ -n "${CARGO_INCREMENTAL:-}" ] && inc="export CARGO_INCREMENTAL=$CARGO_INCREMENTAL &&"

phase "Debian root"
root setup
phase "clippy (this major's cfg arms), build and #[pg_test]s"
root shell "$inc export PG=$N && bash scripts/setup.sh && . scripts/env.sh && cargo clippy -q --lib \$ES_FEATURES -- -D warnings \
  && make --no-print-directory test-pg"
phase "install, cluster, pg_regress, client tests: $tests"
args=""
for t in $tests; do args="$args --test $t"; done
set +e
root shell "$inc export PG=$N && bash scripts/install.sh && bash scripts/cluster.sh start && bash scripts/regress.sh \
  && . scripts/env.sh && cargo test -q -p embedstack-client-tests $args -- --test-threads=2"
rc=$?
set -e
root stop
[ $rc -eq 0 ] || { phase "FAILED"; exit $rc; }
phase "package"
root shell "$inc export PG=$N && bash scripts/package.sh"
bash "$here/scripts/package-test.sh" "$N"
phase "PostgreSQL $N: all passed"
# ES_PRUNE=1 (set by .ci/run): this major's build output and Debian root are deleted once it has
# passed (~4 GB + ~2 GB), so a CI machine with ~15 GB free holds the whole run; the .deb stays in
# target/packages. A developer's run keeps both for the next, incremental, run.
if [ "${ES_PRUNE:-0}" = 1 ]; then
  phase "prune: target/pg$N and the Debian root"
  rm -rf "$here/target/pg$N"
  root remove
fi
