"""Scale-out costs, measured in one run on this machine: the Ray engine against the local one, and
2-process DDP training against one process. Every figure is a wall-clock time of the real command
(`python -m pipeline ...`, what the console script runs), so start-up costs count as a user pays them.

    python bench/scale.py [--data DIR] [--videos 90] [--workers 2] [--out bench/results-scale.json]

1. extraction: `vap extract` (local) and `vap extract --engine ray --workers W` into two fresh caches;
2. training on those features: `vap train` and `vap train --nproc 2`, the default config, same seed:
   seconds per epoch (mean of log.csv's), validation top-1 of each;
3. prediction with that model: `vap predict` (local) and `--engine ray` with 1 worker and with W
   workers on the same videos: frames/s of the whole command and the engine's own figure (the
   summary's frames_per_second: from the first video scheduled to the last row, the Ray instance's
   start excluded); per-worker throughput = the 1-worker run's.

Ratios are against the local engine (and one process) of the same run. Expected throughput of N workers
on N machines = N x per-worker, under the stated assumption that each worker has its own cores, the videos
are read from a shared filesystem that keeps up, and the driver (which only writes rows) is not the limit.
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
from pipeline.data.datasets import load_dataset  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def vap(*args, env=None) -> tuple[dict, float]:
    """Run `python -m pipeline ARGS`: (its JSON output, wall seconds)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, capture_output=True,
                       text=True, env=dict(os.environ, **(env or {})))
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        sys.exit(f"vap {' '.join(map(str, args))} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout), wall


def subset(root: Path, n: int) -> list[tuple[str, str]]:
    """n clips spread over the classes: the first n / classes of each (path, label)."""
    ds = load_dataset(root)
    per = max(1, n // len(ds.classes))
    out = []
    for c in ds.classes:
        out += [(s.path, s.label) for s in ds.samples if s.label == c][:per]
    return out


def epoch_seconds(run: Path) -> float:
    rows = (run / "log.csv").read_text().splitlines()
    col = rows[0].split(",").index("seconds")
    vals = [float(r.split(",")[col]) for r in rows[1:]]
    return sum(vals) / len(vals)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(SHARED / "weizmann"), help="class-folder dataset (default: Weizmann)")
    ap.add_argument("--videos", type=int, default=90, help="clips to use, spread over the classes")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (default: one per core here)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results-scale.json"))
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="vap-bench-scale-"))
    rows = subset(Path(args.data), args.videos)
    data = work / "clips.csv"
    data.write_text("path,label\n" + "".join(f"{p},{lbl}\n" for p, lbl in rows))
    res: dict = dict(machine=describe(), videos=len(rows), data=args.data, workers=args.workers)

    # 1. extraction (the default views, and the mirrored frames that training will read)
    ext_local, w_local = vap("extract", "--data", data, "--cache", work / "cache-local", "--quiet")
    ext_ray, w_ray = vap("extract", "--engine", "ray", "--workers", args.workers, "--data", data,
                         "--cache", work / "cache", "--quiet")
    res["extract"] = dict(local_s=round(w_local, 2), ray_s=round(w_ray, 2),
                          ray_vs_local_speed=round(w_local / w_ray, 3),
                          frames=ext_local["frames_encoded"], videos_local=ext_local["extracted"],
                          videos_ray=ext_ray["extracted"])

    # 2. training on the Ray-filled cache: one process and two
    train = {}
    for n in (1, 2):
        run = work / f"train-{n}"
        m, wall = vap("train", "--nproc", n, "--data", data, "--out", run, "--cache", work / "cache", "--quiet")
        train[n] = dict(wall_s=round(wall, 2), epoch_s=round(epoch_seconds(run), 4), val_top1=m["val_top1"],
                        best_epoch=m["best_epoch"], processes=m["processes"])
    res["train"] = dict(one_process=train[1], two_processes=train[2],
                        epoch_time_ratio_2_vs_1=round(train[2]["epoch_s"] / train[1]["epoch_s"], 3),
                        train_clips=m["train_clips"], val_clips=m["val_clips"])

    # 3. prediction with the one-process model
    ckpt = work / "train-1" / "best.pt"
    videos = work / "videos.txt"
    videos.write_text("".join(f"{p}\n" for p, _ in rows))
    pred = {}
    for name, extra in (("local", []), ("ray_1", ["--engine", "ray", "--workers", 1]),
                        (f"ray_{args.workers}", ["--engine", "ray", "--workers", args.workers])):
        s, wall = vap("predict", "--checkpoint", ckpt, videos, "--out", work / f"{name}.jsonl", "--quiet", *extra)
        pred[name] = dict(wall_s=round(wall, 2), frames=s["frames"], frames_per_s_wall=round(s["frames"] / wall, 2),
                          frames_per_s_engine=s["frames_per_second"], failed=s["failed"])
    rw = pred[f"ray_{args.workers}"]
    res["predict"] = dict(
        **pred,
        ray_vs_local_wall=round(rw["frames_per_s_wall"] / pred["local"]["frames_per_s_wall"], 3),
        ray_vs_local_engine=round(rw["frames_per_s_engine"] / pred["local"]["frames_per_s_engine"], 3),
        per_worker_frames_per_s=pred["ray_1"]["frames_per_s_engine"],
        expected_frames_per_s={str(n): round(n * pred["ray_1"]["frames_per_s_engine"], 1) for n in (2, 4, 8, 16)},
        assumption="N workers, each on its own core(s) as here, videos on a shared filesystem that keeps up; "
                   "the driver only writes rows")
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
