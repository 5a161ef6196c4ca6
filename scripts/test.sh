#!/usr/bin/env bash
# Install (if needed) and run the whole test suite, slow tests included. Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -m "not slow"` for the quick part only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
mkdir -p test-artifacts
# pytest exits 5 when it collects nothing; that is a failure here as anywhere.
exec python -m pytest -v --durations=15 "$@"
