#!/usr/bin/env bash
# Install (if needed) and run the whole test suite, slow tests included, then the runtime and decoder
# tests a second time as an AVX2-only CPU without decord would run them (VAP_CPU_FEATURES=generic
# VAP_DECORD=0), so that the branches other machines take are exercised here too.
# Extra arguments go to pytest instead, e.g. `bash scripts/test.sh -m "not slow"` for the quick tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
mkdir -p test-artifacts
# pytest exits 5 when it collects nothing; that is a failure here as anywhere (set -e stops on it).
if [ $# -gt 0 ]; then
  exec python -m pytest -v --durations=15 "$@"
fi
python -m pytest -v --durations=15
echo "== again as an AVX2-only CPU without decord: VAP_CPU_FEATURES=generic VAP_DECORD=0"
VAP_CPU_FEATURES=generic VAP_DECORD=0 python -m pytest -v -m "not slow" \
  tests/test_capabilities.py tests/test_video.py tests/test_backbones.py tests/test_export.py \
  tests/test_predict.py tests/test_views.py
