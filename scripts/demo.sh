#!/usr/bin/env bash
# Install (if needed) and run the demo end to end: synthetic videos -> EfficientNet-Lite0 features
# -> LSTM -> evaluation on unseen clips. Prints the metrics and where the checkpoint and plots are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
exec vap demo "$@"
