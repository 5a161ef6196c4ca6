"""The first run, as a new user meets it: seconds from `bash scripts/run.sh` (the virtual environment
already installed, so install.sh is a no-op) to the web app answering HTTP, with no model under the
runs folder (the demo model trains first) and a VAP_HOME that has never measured the backbone
runtimes; and the demo's own seconds and test top-1, from the JSON it prints.

    python bench/first_run.py [--port 7871] [--timeout 900]

Prints JSON. The app is stopped at the end; the runs folder and VAP_HOME are temporary.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.capabilities import describe  # noqa: E402


def serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def first_json(text: str) -> dict:
    """The first JSON object in text (the demo's summary; Gradio prints lines of its own around it)."""
    i = text.find("{")
    return json.JSONDecoder().raw_decode(text[i:])[0] if i >= 0 else {}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=7871)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the app")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, VAP_HOME=str(Path(tmp) / "home"), VAP_CACHE=str(Path(tmp) / "cache"))
        out, err = open(Path(tmp) / "stdout", "w+"), open(Path(tmp) / "stderr", "w+")
        t0 = time.perf_counter()
        p = subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh"), "--runs", str(Path(tmp) / "runs"),
                              "--port", str(args.port)], cwd=ROOT, env=env, stdout=out, stderr=err,
                             start_new_session=True)
        try:
            while not serving(args.port):
                if p.poll() is not None or time.perf_counter() - t0 > args.timeout:
                    err.seek(0)
                    raise SystemExit(f"the app did not start: {err.read()[-2000:]}")
                time.sleep(0.5)
            to_serving = time.perf_counter() - t0
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)
        out.seek(0)
        demo = first_json(out.read())
    res = dict(machine=describe(), benchmark="first_run", seconds_to_serving=round(to_serving, 1),
               demo_seconds=demo.get("seconds"), demo_test_top1=demo.get("test_top1"),
               demo_test_clips=demo.get("test_clips"))
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
