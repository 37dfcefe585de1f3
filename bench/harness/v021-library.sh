#!/usr/bin/env bash
# The embedstack 0.2.1 library for the harness's refit-under-load comparison (bench/harness/refit_load.py),
# built by bench/harness/build-library.sh from the commit whose install script is frozen as
# sql/releases/embedstack--0.2.1.sql (the last commit before the 0.3.0 storage work). Prints its path.
#   bench/harness/v021-library.sh            # build if needed (a few minutes, once)
#   bench/harness/v021-library.sh --path     # print the path only (no build)
set -euo pipefail
COMMIT="${ES_V021_COMMIT:-b7a23f7a067efba8afe9ca84f602719bd94df250}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../../scripts/env.sh"
git -C "$ROOT" show "$COMMIT:Cargo.toml" | grep -q '^version = "0.2.1"$' \
  || { echo "v021-library: $COMMIT is not version 0.2.1" >&2; exit 1; }
exec bash "$HERE/build-library.sh" "$COMMIT" "$@"
