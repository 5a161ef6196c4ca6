#!/usr/bin/env bash
# Create .venv and install vap with its dependencies. Idempotent: a second run is quick.
# torch/torchvision are pinned first (these exact versions; CI installs them from local files),
# so that resolving the other dependencies never pulls a different multi-GB torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
python -m pip install --quiet -e ".[dev]"
python -c "import pipeline, torch, cv2; print('vap', pipeline.__version__, 'torch', torch.__version__, 'opencv', cv2.__version__)"
