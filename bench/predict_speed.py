"""`vap predict` with no settings against the same command with the old defaults
(`backbone.runtime=torch backbone.precision=fp32`) and with int8, on the 90 Weizmann clips, through
the real CLI (each a process of its own, timed from start to exit, as a user sees it).

    python bench/predict_speed.py [--work DIR] [--data ../shared/data/weizmann]

The model is `vap train --data <weizmann>` with the default config (trained once into --work, reused
by a rerun). The default run goes first with a VAP_HOME that has never measured the runtimes (what a
first `vap predict` pays: the ONNX export and the parity check), then again warm. Prints JSON: seconds
and frames/s of each run, the speed-ups against torch fp32, and how many clips change their top-1
label against torch fp32 (the fp32 paths must change none).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.capabilities import describe  # noqa: E402

WEIZMANN = ROOT.parent / "shared" / "data" / "weizmann"
RUNS = {  # name -> prediction-time settings
    "default": [],
    "torch_fp32": ["backbone.runtime=torch", "backbone.precision=fp32"],
    "int8": ["backbone.runtime=onnxruntime", "backbone.precision=int8"],
}


def vap(args: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"vap {' '.join(args)} failed: {p.stderr[-2000:]}")
    return time.perf_counter() - t0, p.stdout


def rows(path: Path) -> dict[str, str]:
    return {r["path"]: r["label"] for r in map(json.loads, path.read_text().splitlines()) if "label" in r}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(WEIZMANN))
    ap.add_argument("--work", help="folder for the model and the outputs (default: temporary)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        env = dict(os.environ, VAP_CACHE=str(work / "cache"), VAP_HOME=str(work / "home-train"))
        ckpt = work / "run" / "best.pt"
        if not ckpt.is_file():
            vap(["train", "--data", args.data, "--out", str(work / "run"), "--quiet"], env)
        out = {}
        order = [("torch_fp32", "warm"), ("default", "first"), ("default", "warm"), ("int8", "warm")]
        first_home = str(work / "home-first")  # never measured: the first vap predict on a machine
        for name, when in order:
            e = dict(env, VAP_HOME=first_home if when == "first" else env["VAP_HOME"])
            if when == "first":
                subprocess.run(["rm", "-rf", first_home])
            res = work / f"{name}-{when}.jsonl"
            res.unlink(missing_ok=True)
            secs, stdout = vap(["predict", "--checkpoint", str(ckpt), args.data, *RUNS[name], "--out", str(res),
                                "--quiet"], e)
            summary = json.loads(stdout)
            out[f"{name}_{when}"] = dict(settings=RUNS[name], seconds=round(secs, 1),
                                         frames_per_second=summary.get("frames_per_second"),
                                         labels=rows(res))
        ref = out["torch_fp32_warm"]["labels"]
        for k, r in out.items():
            r["clips"] = len(r["labels"])
            r["top1_changed_vs_torch_fp32"] = sum(r["labels"].get(p) != lbl for p, lbl in ref.items())
            r["speedup_vs_torch_fp32"] = round(out["torch_fp32_warm"]["seconds"] / r["seconds"], 2)
            del r["labels"]
    res = dict(machine=describe(), benchmark="predict_speed", data=args.data, runs=out)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
