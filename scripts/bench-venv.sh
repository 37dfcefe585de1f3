#!/usr/bin/env bash
# The Python environment of the benchmark harness (bench/harness): a venv of Debian's
# /usr/bin/python3 under the state dir, with the pinned packages of
# bench/harness/requirements.txt from PyPI. Idempotent: does nothing when the venv already
# has exactly those versions. Prints the venv's python on its last line.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
REQ="$ROOT/bench/harness/requirements.txt"
VENV="${ES_BENCH_VENV:-$ES_STATE/.venv}"
PY=/usr/bin/python3

# Every "name==version" line of the requirements is installed, with that version.
pinned_ok() {
  [ -x "$VENV/bin/python" ] || return 1
  "$VENV/bin/python" - "$REQ" <<'PY'
import re, sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split('#', 1)[0].strip()
    if not line:
        continue
    m = re.match(r'^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)$', line)
    if not m:
        sys.exit(f'bench-venv: cannot read requirement {line!r}')
    try:
        if version(m.group(1)) != m.group(3):
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

if ! pinned_ok 2>/dev/null; then
  if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "[bench-venv] installing python3-venv" >&2
    apt-get install -y python3-venv >&2 || { apt-get update >&2 && apt-get install -y python3-venv >&2; }
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[bench-venv] creating $VENV" >&2
    "$PY" -m venv "$VENV" >&2
  fi
  echo "[bench-venv] installing $(grep -v '^#' "$REQ" | tr '\n' ' ')" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ" >&2
  pinned_ok
fi
echo "$VENV/bin/python"
