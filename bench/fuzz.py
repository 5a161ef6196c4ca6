"""A seeded mutation fuzzer for `vap predict`: small real clips in several containers, damaged at
random, predicted by the real CLI in a process of its own.

    python bench/fuzz.py [--mutants 300] [--seed 0] [--checkpoint CKPT] [--out DIR]

Seeds: synthetic clips written as mp4/H.264 (PyAV), avi/MJPEG and avi/MPEG-4 (OpenCV), mkv/H.264
and webm/VP9 (PyAV, where its FFmpeg has the encoder). Mutations, one or two per mutant: truncation
at a random offset, random byte flips, a duplicated chunk, a damaged header (the first bytes
zeroed or scrambled). Every mutant must end within its time budget as a prediction or an error row;
the process must exit 0 or 1 (never crash) and stay within a memory bound. Prints JSON: how many
mutants of each container and mutation, rows predicted / predicted with a warning / error rows (by
kind), timeouts, the exit status, seconds and peak RSS. Without --checkpoint a tiny random-init
model is trained on a few synthetic clips first (the decoding path is what is fuzzed, not accuracy).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.capabilities import describe  # noqa: E402

CONTAINERS = ("mp4", "avi-mjpeg", "avi-mpeg4", "mkv", "webm")
MUTATIONS = ("truncate", "flip", "duplicate", "header")


def write_seed(path: Path, kind: str, frames: np.ndarray, fps: float = 25.0) -> Path | None:
    """One clip in a container; None where this machine's libraries cannot write it."""
    import cv2

    if kind.startswith("avi"):
        fourcc = "MJPG" if kind == "avi-mjpeg" else "mp4v"
        h, w = frames.shape[1:3]
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
        for f in frames:
            vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        vw.release()
        return path if path.is_file() and path.stat().st_size > 0 else None
    import av

    codec = {"mp4": "libx264", "mkv": "libx264", "webm": "libvpx-vp9"}[kind]
    try:
        with av.open(str(path), "w") as c:
            st = c.add_stream(codec, rate=int(fps))
            st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            for f in frames:
                for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(pkt)
            for pkt in st.encode():
                c.mux(pkt)
    except Exception:  # e.g. no VP9 encoder in this FFmpeg build
        path.unlink(missing_ok=True)
        return None
    return path


def mutate(data: bytes, how: str, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    n = len(b)
    if how == "truncate":
        return bytes(b[:int(rng.integers(0, n))])
    if how == "flip":
        for i in rng.integers(0, n, int(rng.integers(1, 64))):
            b[i] ^= int(rng.integers(1, 256))
        return bytes(b)
    if how == "duplicate":
        a = int(rng.integers(0, n))
        k = int(rng.integers(1, max(2, n // 4)))
        at = int(rng.integers(0, n))
        return bytes(b[:at] + b[a:a + k] + b[at:])
    if how == "header":
        k = int(rng.integers(4, 512))
        b[:k] = bytes(k) if rng.random() < 0.5 else rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        return bytes(b)
    raise ValueError(how)


def make_seeds(out: Path, seed: int = 0) -> dict[str, bytes]:
    """The clean clips, one per container this machine can write: {container: file bytes}. (The bytes
    of two runs can differ - encoder threads, Matroska's random segment id - the frames do not.)"""
    from pipeline.data.synthetic import ACTIONS, render_clip

    out.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for i, kind in enumerate(CONTAINERS):
        frames = render_clip(ACTIONS[i % len(ACTIONS)], np.random.default_rng([seed, i]), 96, 72, duration=1.5)
        p = write_seed(out / f"seed-{kind}.{kind.split('-')[0]}", kind, frames)
        if p is not None:
            seeds[kind] = p.read_bytes()
            p.unlink()
    return seeds


def make_mutants(out: Path, n: int, seed: int = 0, seeds: dict[str, bytes] | None = None) -> list[dict]:
    """n damaged copies of the seed clips in out/, named by index, container and mutations; the same
    seeds and seed give the same mutants, byte for byte."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = seeds or make_seeds(out, seed)
    rng = np.random.default_rng(seed)
    made = []
    kinds = sorted(seeds)
    for j in range(n):
        kind = kinds[j % len(kinds)]
        hows = list(rng.choice(MUTATIONS, size=int(rng.integers(1, 3)), replace=False))
        data = seeds[kind]
        for how in hows:
            data = mutate(data, how, rng)
        path = out / f"m{j:04d}-{kind}-{'+'.join(hows)}.{kind.split('-')[0]}"
        path.write_bytes(data)
        made.append(dict(path=str(path), container=kind, mutations=hows, damaged=data != seeds[kind]))
    return made


def tiny_checkpoint(work: Path) -> Path:
    """A tiny_cnn model trained for one epoch on a few synthetic clips (seconds)."""
    from pipeline.config import load_config
    from pipeline.data.synthetic import make_dataset
    from pipeline.training.run import main

    data = make_dataset(work / "data", 3, seed=0)
    cfg = load_config(None, [f"data.train={data}", "backbone.name=tiny_cnn", "backbone.input_size=64",
                             "views.motion_size=48", "video.fps=8", "train.epochs=1", "head.hidden_size=16",
                             "head.proj_dim=16", "backbone.runtime=torch", "train.copies=0"])
    cfg.cache.dir = str(work / "cache")
    main(cfg, work / "run", progress=False)
    return work / "run" / "best.pt"


def _run_measured(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run cmd to its end, output captured: (the completed process, its own peak RSS in MB). Reaped with wait4,
    which reports that child's usage alone; RUSAGE_CHILDREN would report the largest of every child this process
    ever reaped (a test worker's earlier training processes among them)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
                            errors="replace", env=env)
    text = {}
    readers = [threading.Thread(target=lambda k=k, f=f: text.__setitem__(k, f.read()))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(cmd, proc.returncode, text["out"], text["err"]), usage.ru_maxrss / 1024


def run(mutants: int, seed: int, checkpoint: str | None, out: Path, timeout_s: float = 20.0) -> dict:
    made = make_mutants(out / "mutants", mutants, seed)
    ckpt = Path(checkpoint) if checkpoint else tiny_checkpoint(out / "model")
    rows_path = out / "rows.jsonl"
    rows_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    # errors="replace": FFmpeg echoes bytes of the damaged files into stderr
    p, peak_mb = _run_measured([sys.executable, "-m", "pipeline", "predict", "--checkpoint", str(ckpt),
                                str(out / "mutants"), f"video.decode_timeout={timeout_s}", "--out", str(rows_path),
                                "--quiet"], env=dict(os.environ, VAP_CACHE=str(out / "cache")))
    seconds = time.perf_counter() - t0
    rows = {r["path"]: r for r in map(json.loads, rows_path.read_text().splitlines())} if rows_path.is_file() else {}
    kinds = Counter()
    for r in rows.values():
        if "error" in r:
            why = r["error"].split(": ", 1)[-1]
            kinds["timeout" if "timed out" in why else why.split(" (")[0][:60]] += 1
    missing = [m["path"] for m in made if m["path"] not in rows]
    return dict(
        mutants=len(made), containers=dict(Counter(m["container"] for m in made)),
        mutations=dict(Counter("+".join(m["mutations"]) for m in made)),
        predicted=sum("label" in r and not r.get("warning") for r in rows.values()),
        predicted_with_warning=sum("label" in r and bool(r.get("warning")) for r in rows.values()),
        error_rows=sum("error" in r for r in rows.values()), errors_by_kind=dict(kinds.most_common()),
        timeouts=kinds.get("timeout", 0), without_row=missing, exit_status=p.returncode,
        crashed=p.returncode not in (0, 1), stderr_tail=p.stderr[-600:] if p.returncode not in (0, 1) else "",
        seconds=round(seconds, 1), decode_timeout_s=timeout_s, peak_rss_mb=round(peak_mb),
    )


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutants", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", help="a best.pt (default: a tiny model trained first)")
    ap.add_argument("--out", help="work folder (default: temporary)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.mutants, args.seed, args.checkpoint, Path(args.out or tmp))
    res = dict(machine=describe(), benchmark="fuzz", seed=args.seed, **res)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
