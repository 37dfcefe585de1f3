#!/usr/bin/env bash
# The README's walk-through must be tests/pg_regress/sql/walkthrough.sql verbatim (the file the
# pg_regress suite runs): compares the fenced block between the walkthrough markers with it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
block="$(sed -n '/^<!-- walkthrough begin -->$/,/^<!-- walkthrough end -->$/p' "$root/README.md" | sed '1,2d;$d' | sed '$d')"
if ! diff -u <(printf '%s\n' "$block") "$root/tests/pg_regress/sql/walkthrough.sql"; then
  echo "README.md's walk-through differs from tests/pg_regress/sql/walkthrough.sql (diff above)" >&2
  exit 1
fi
echo "[check-readme] the README walk-through is tests/pg_regress/sql/walkthrough.sql"
