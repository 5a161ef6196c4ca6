#!/usr/bin/env bash
# The one command: install (if needed), then start the web app on http://127.0.0.1:7860.
# With no model under runs/ yet, it first trains the demo model on synthetic videos (about 40 s
# on a 2-core CPU: bench/first_run.py) and prints its metrics. Extra arguments go to app.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
exec python app.py "$@"
