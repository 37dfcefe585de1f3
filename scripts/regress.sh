#!/usr/bin/env bash
# pg_regress golden-file tests of the documented SQL surface, against the project cluster
# (with the extension freshly installed by `make install`). pg_regress drops and re-creates
# its own database, so runs are independent.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
pg_regress="$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress"
dir="$ROOT/tests/pg_regress"
out="$ROOT/target/pg_regress"
mkdir -p "$out"
tests=$(sed -e 's/#.*//' "$dir/schedule" | xargs)
set +e
"$pg_regress" --bindir="$PG_BIN" --host=127.0.0.1 --port="$ES_PGPORT" --user=postgres \
  --inputdir="$dir" --outputdir="$out" --dbname=embedstack_regress $tests
rc=$?
set -e
if [ $rc -ne 0 ] && [ -f "$out/regression.diffs" ]; then
  cat "$out/regression.diffs"
fi
exit $rc
