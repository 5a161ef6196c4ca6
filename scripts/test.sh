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
# One pytest-xdist worker per core, at most four (tests/conftest.py gives each its share of the cores); whole
# files go to a worker, longest first, so that a file's module fixtures (a trained model, a Ray cluster) are
# made once. `-n 0` among the arguments runs it in one process.
cores=$(nproc 2>/dev/null || echo 2)
XDIST=(-n "$(( cores < 4 ? cores : 4 ))" --dist loadfile --no-loadscope-reorder)
if [ $# -gt 0 ]; then
  exec python -m pytest -v --durations=15 "${XDIST[@]}" "$@"
fi
python -m pytest -v --durations=15 "${XDIST[@]}"
echo "== again as an AVX2-only CPU without decord: VAP_CPU_FEATURES=generic VAP_DECORD=0"
VAP_CPU_FEATURES=generic VAP_DECORD=0 python -m pytest -v -m "not slow" "${XDIST[@]}" \
  tests/test_capabilities.py tests/test_video.py tests/test_backbones.py tests/test_export.py \
  tests/test_predict.py tests/test_views.py
