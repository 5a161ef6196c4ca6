#!/usr/bin/env bash
# Create .venv and install vap with its dependencies. A second run with the same pyproject.toml does
# nothing (a stamp in .venv). pip's output goes to .venv/install.log and is shown only when it fails.
# torch/torchvision are pinned first (these exact versions; CI installs them from local files),
# so that resolving the other dependencies never pulls a different multi-GB torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=("torch==2.14.1" "torchvision==0.29.1")
stamp=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat .venv/.vap-installed 2>/dev/null)" = "$stamp" ] \
   && .venv/bin/python -c "import pipeline" 2>/dev/null; then
  exit 0  # installed from this very pyproject.toml
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
log=.venv/install.log
echo "installing vap into .venv (torch ${TORCH[0]#torch==}; pip's output in $log) ..." >&2
# MediaPipe's BlazePose for real people offline (detector.weights=mediapipe): the 0.10.21 wheel carries its models.
# Its own pins (numpy<2, protobuf<5, opencv-contrib-python) would break torch, onnx and opencv-python, so it goes
# in without them; it runs with protobuf 6 (pipeline/models/pose_mediapipe.py), onnx needs >= its 6.31 gencode.
# Its wheels stop at Python 3.12: on a later Python vap installs without it (detector.weights=mediapipe then says so).
MEDIAPIPE=("mediapipe==0.10.21" "absl-py>=1")
if python -c 'import sys; sys.exit(sys.version_info >= (3, 13))'; then with_mediapipe=1; else with_mediapipe=0; fi
if ! { python -m pip install --upgrade pip \
       && python -m pip install "${TORCH[@]}" \
       && python -m pip install -e ".[dev,ray]" \
       && if [ "$with_mediapipe" = 1 ]; then
            python -m pip install --no-deps "${MEDIAPIPE[@]}" && python -m pip install "protobuf>=6.31,<7"
          fi; } > "$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "error: the install failed; the whole pip output is in $log" >&2
  exit 1
fi
python -c "import pipeline, torch, cv2, onnxruntime, ray; print('vap', pipeline.__version__, 'torch', torch.__version__, 'opencv', cv2.__version__, 'onnxruntime', onnxruntime.__version__, 'ray', ray.__version__)" >&2
if [ "$with_mediapipe" = 1 ]; then  # BlazePose loads beside onnx (one protobuf for both)
  python -c "import onnx; from pipeline.models.pose_mediapipe import MediaPipePoses; MediaPipePoses().close(); print('mediapipe: BlazePose loads')" >&2
fi
echo "$stamp" > .venv/.vap-installed
