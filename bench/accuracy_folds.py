"""Group-disjoint accuracy of the DEFAULT config, through the real `vap train` / `vap eval` commands.

A user's folder of clips as it comes: for each fold the bench writes train.csv and test.csv (the
test groups' clips held out: actors for Weizmann, sequences for UT-Interaction), then runs

    vap train --data train.csv --out FOLD/RUN [key=value ...]      # nothing else: no --config, no group_by
    vap eval --checkpoint FOLD/RUN/best.pt --data test.csv

in this process (pipeline.cli.main, the console script's code), and reads eval.json. Features are
extracted once into one cache and reused by every fold, head and seed.

    python bench/accuracy_folds.py --dataset ut1 [--seeds 0,1,2] [--heads lstm,meanpool] [--reference]
    python bench/accuracy_folds.py --dataset weizmann --seeds 0,1,2 --reference
    python bench/accuracy_folds.py --dataset ut1 --candidates "name: k=v k=v; name2: k=v"   # compare recipes
    python bench/accuracy_folds.py --dataset ut1 --heads lstm --files    # + the test clips as other files
    python bench/accuracy_folds.py --dataset ut1 --heads lstm --files shaky   # + only the hand-held copies

Datasets (../shared/data): weizmann - 3 folds of 3 actors (6 training actors each); ut1 - UT-Interaction
set 1, 5 folds of 2 sequences (8 training sequences each). --reference adds the whole-frame recipe
(`views.streams=[frame]`, the default head). Prints JSON: per candidate and head, top-1 mean over
seeds, per seed (all test clips of the folds together), per fold.

--files also scores every fold's model on its test clips written as other files would come (FILE_VARIANTS:
re-encoded to H.264 at the same rate, resampled to 25 fps, at half the resolution, centred on a frame 1.5x
their size with black around, filmed by a swaying hand-held camera): files the model never saw, of the same
people. `--files shaky,h264` scores only those. Diagnostics, not in the default set: `--files zoom` (the hand-held
copies' 1.12x zoom alone, without the sway), `--files jitter` (a camera on a tripod in the wind: a random shake of
~1 % of the frame and 0.3 degrees every frame, zoomed 1.05x).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.capabilities import describe  # noqa: E402
from pipeline.cli import main as vap  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.data.datasets import load_dataset  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
# name -> (folder, regex whose first group is the clip's group, folds of groups)
DATASETS = {
    "weizmann": (SHARED / "weizmann", r"^([a-z]+)_",
                 [["daria", "ido", "lyova"], ["denis", "ira", "moshe"], ["eli", "lena", "shahar"]]),
    "ut1": (SHARED / "ut_interaction_set1", r"^\d+_(\d+)_",
            [["1", "2"], ["3", "4"], ["5", "6"], ["7", "8"], ["9", "10"]]),
}


def clips(root: Path, group_re: str) -> list[tuple[str, str, str]]:
    """(path, label, group) of every clip, read as vap train reads the class folders."""
    out = []
    for smp in load_dataset(root).samples:
        m = re.match(group_re, Path(smp.path).name)
        if m:
            out.append((smp.path, smp.label, m.group(1)))
    return out


def _variant_frames(name: str, frames: np.ndarray, fps: float) -> tuple[np.ndarray, float]:
    from pipeline.data.compose import _fit, _segment_frames

    h, w = frames.shape[1:3]
    if name == "fps25":
        return _segment_frames(frames, fps, max(1, round(len(frames) / fps * 25)), 25.0, 0.0), 25.0
    if name == "half":
        return np.stack([cv2.resize(f, (w // 4 * 2, h // 4 * 2), interpolation=cv2.INTER_AREA) for f in frames]), fps
    if name == "canvas":
        return _fit(frames, w * 3 // 4 * 2, h * 3 // 4 * 2, enlarge=False), fps
    if name == "shaky":
        return handheld(frames, fps, seed=zlib.crc32(frames[0].tobytes()[:4096]))[0], fps
    if name in ("zoom", "zoom105"):  # the zoom alone, no motion: shaky's (zoom) or jitter's (zoom105), what
        still = np.zeros(len(frames))  # their copies lose to the picture's edge
        return film(frames, still, still, still, HANDHELD_ZOOM if name == "zoom" else JITTER_ZOOM)[0], fps
    if name in ("jitter", "shake"):  # a camera on a tripod in the wind: a small random shake every frame, zoomed
        # (jitter) or not (shake: the uncovered edge mirrored in)
        rng = np.random.default_rng(zlib.crc32(frames[0].tobytes()[:4096]))
        turn, shift = zip(*[(rng.normal(0, 0.3), rng.normal(0, 0.01, 2)) for _ in frames])  # ~1 % of the frame
        shift = np.array(shift) * (w, h)
        return film(frames, np.array(turn), shift[:, 0], shift[:, 1], JITTER_ZOOM if name == "jitter" else 1.0)[0], fps
    return frames, fps  # h264: the same frames, re-encoded


HANDHELD_ZOOM = 1.12  # the hand-held copies' zoom: the swayed picture always fills the frame
JITTER_ZOOM = 1.05    # the wind's copies' zoom (--files jitter)


def handheld(frames: np.ndarray, fps: float, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The clip as a hand-held camera would film it: the picture sways (a smooth random path of shifts up to
    5 % of the frame and turns up to 1.5 degrees, 0.3-1.5 Hz), zoomed 1.12x so that it always fills the frame.
    Returns the frames and each one's 2x3 map from the original's pixels (tests/test_views.py follows a mover)."""
    rng = np.random.default_rng(seed)
    T, h, w = frames.shape[:3]
    t = np.arange(T) / fps

    def path(amp: float) -> np.ndarray:  # (T,) within +-amp
        return amp * sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in rng.uniform(0.3, 1.5, 3)) / 3

    dx, dy, turn = path(0.05 * w), path(0.05 * h), path(1.5)
    return film(frames, turn, dx, dy, HANDHELD_ZOOM)


def film(frames: np.ndarray, turn, dx, dy, zoom: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each frame as a moved camera films it: turned turn[i] degrees about the centre, zoomed, shifted (dx[i], dy[i])
    pixels; the edge the move uncovers mirrored in. Returns the frames and each one's 2x3 map from the original's
    pixels."""
    h, w = frames.shape[1:3]
    out, maps = np.empty_like(frames), []
    for i, f in enumerate(frames):
        M = cv2.getRotationMatrix2D((w / 2, h / 2), turn[i], zoom)
        M[:, 2] += (dx[i], dy[i])
        out[i] = cv2.warpAffine(f, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        maps.append(M)
    return out, maps


# how the test clips are rewritten for --files (each an H.264 .mp4 through pipeline.data.writer); DIAGNOSTIC ones
# only when named (--files zoom)
FILE_VARIANTS = ("h264", "fps25", "half", "canvas", "shaky")
DIAGNOSTIC_VARIANTS = ("zoom", "jitter", "zoom105", "shake")


def write_variants(test_csv: Path, out: Path, variants=FILE_VARIANTS) -> dict[str, Path]:
    """{variant: test CSV of the fold's test clips rewritten that way}; files already written are kept."""
    from pipeline.data.video import frame_rate, load_frames
    from pipeline.data.writer import write_video

    rows = [line.split(",") for line in test_csv.read_text().split("\n")[1:] if line]
    csvs = {}
    for v in variants:
        lines = []
        for path, label in rows:
            dst = out / v / (Path(path).stem + ".mp4")
            if not dst.is_file():
                frames, ts = load_frames(path, sampling="all")
                dst.parent.mkdir(parents=True, exist_ok=True)
                write_video(dst, *_variant_frames(v, frames, frame_rate(ts, 25.0)))
            lines.append(f"{dst},{label}")
        csvs[v] = test_csv.with_name(f"test_{v}.csv")
        csvs[v].write_text("path,label\n" + "\n".join(lines) + "\n")
    return csvs


def score_variants(run_dir: Path, csvs: dict[str, Path]) -> dict[str, float]:
    """vap eval of the fold's best.pt on each variant's CSV: {variant: top-1} (reused when already scored)."""
    out = {}
    for v, csv in csvs.items():
        rep_file = run_dir / f"eval_{v}" / "eval.json"
        if not rep_file.is_file():
            with contextlib.redirect_stdout(sys.stderr):
                rc = vap(["eval", "--checkpoint", str(run_dir / "best.pt"), "--data", str(csv),
                          "--out", str(rep_file.parent), "--quiet"])
            if rc != 0:
                raise SystemExit(f"vap eval failed on {csv} (exit {rc})")
        out[v] = json.loads(rep_file.read_text())["top1"]
    return out


def write_fold(items, test_groups: list[str], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train", False), ("test", True)):
        rows = [f"{p},{label}" for p, label, g in items if (g in test_groups) == keep]
        (out / f"{name}.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return out / "train.csv", out / "test.csv"


def run_fold(train_csv: Path, test_csv: Path, run_dir: Path, overrides: list[str], cache: Path) -> dict:
    """vap train + vap eval of one fold; a rerun with the same --work and resulting config (the defaults may have
    changed since; a recipe that became the default reads the runs made with it as overrides) reads fold.json
    instead."""
    done = run_dir / "fold.json"
    config = load_config(None, overrides).to_dict()
    if done.is_file():
        old = json.loads(done.read_text())
        if old.get("config") == config:
            return old["result"]
    for stale in run_dir.glob("eval_*/eval.json"):  # --files scores of a model this run replaces
        stale.unlink()
    t0 = time.time()
    with contextlib.redirect_stdout(sys.stderr):  # the commands' own output; stdout is the bench's JSON
        _train_and_eval(train_csv, test_csv, run_dir, overrides, cache)
    rep = json.loads((run_dir / "eval" / "eval.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    res = dict(top1=rep["top1"], clips=rep["num_clips"], val_top1=metrics.get("val_top1"),
               seconds=round(time.time() - t0, 1))
    done.write_text(json.dumps(dict(overrides=overrides, config=config, result=res)))
    return res


def _train_and_eval(train_csv: Path, test_csv: Path, run_dir: Path, overrides: list[str], cache: Path) -> None:
    rc = vap(["train", "--data", str(train_csv), "--out", str(run_dir), "--cache", str(cache), "--quiet",
              *overrides])
    if rc != 0:
        raise SystemExit(f"vap train failed in {run_dir} (exit {rc})")
    rc = vap(["eval", "--checkpoint", str(run_dir / "best.pt"), "--data", str(test_csv),
              "--out", str(run_dir / "eval"), "--quiet"])
    if rc != 0:
        raise SystemExit(f"vap eval failed in {run_dir} (exit {rc})")


def evaluate(dataset: str, overrides: list[str], heads: list[str], seeds: list[int], work: Path,
             cache: Path, files: tuple = ()) -> dict:
    root, group_re, folds = DATASETS[dataset]
    items = clips(root, group_re)
    out = {}
    for head in heads:
        per_seed = []
        for seed in seeds:
            folds_res = []
            for k, test_groups in enumerate(folds):
                train_csv, test_csv = write_fold(items, test_groups, work / f"fold{k}")
                ov = [*overrides, f"head.type={head}", f"train.seed={seed}"]
                res = run_fold(train_csv, test_csv, work / f"fold{k}" / f"{head}-s{seed}", ov, cache)
                if files:
                    res = dict(res, files=score_variants(work / f"fold{k}" / f"{head}-s{seed}",
                                                         write_variants(test_csv, work.parent / "files", files)))
                folds_res.append(res)
                print(f"{dataset} {' '.join(overrides) or 'default'} {head} seed {seed} fold {k}: "
                      f"top1 {res['top1']:.3f}", file=sys.stderr)
            # clip-weighted: the folds differ in size by a clip or two
            correct = sum(f["top1"] * f["clips"] for f in folds_res)
            n = sum(f["clips"] for f in folds_res)
            per_seed.append(dict(seed=seed, top1=round(correct / n, 4),
                                 **({"files": {v: round(sum(f["files"][v] * f["clips"] for f in folds_res) / n, 4)
                                               for v in files}} if files else {}),
                                 folds=[f["top1"] for f in folds_res],
                                 val_top1=[f["val_top1"] for f in folds_res],
                                 seconds=round(sum(f["seconds"] for f in folds_res), 1)))
        top1 = [s["top1"] for s in per_seed]
        out[head] = dict(top1_mean=round(float(np.mean(top1)), 4), top1_std_over_seeds=round(float(np.std(top1)), 4),
                         per_seed=top1, seeds=per_seed)
        if files:  # top-1 on the rewritten test clips, mean over seeds
            out[head]["files_top1_mean"] = {v: round(float(np.mean([s["files"][v] for s in per_seed])), 4)
                                            for v in files}
    return out


def parse_candidates(text: str) -> dict[str, list[str]]:
    """'name: k=v k=v; name2: ...' -> {name: [k=v, ...]}; a name alone is the default config."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, rest = part.partition(":")
        out[name.strip()] = rest.split()
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ut1", choices=list(DATASETS))
    ap.add_argument("--heads", default="lstm,meanpool")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--reference", action="store_true", help="also the whole-frame recipe (views.streams=[frame])")
    ap.add_argument("--candidates", default="", help="';'-separated 'NAME: key=value ...' recipes to compare "
                                                     "(NAME alone: the defaults)")
    ap.add_argument("--work", help="folder for the fold runs, kept and resumed (default: temporary)")
    ap.add_argument("--cache", help="feature cache folder (default: WORK/cache)")
    ap.add_argument("--files", nargs="?", const=",".join(FILE_VARIANTS), default="",
                    help="also score the test clips rewritten as other files: every one of FILE_VARIANTS, or those "
                         "listed (--files shaky,h264); written once under WORK/files")
    ap.add_argument("overrides", nargs="*", help="key=value on every run (default: none - the default config)")
    args = ap.parse_args(argv)
    unknown = set(filter(None, args.files.split(","))) - set(FILE_VARIANTS + DIAGNOSTIC_VARIANTS)
    if unknown:
        ap.error(f"--files: unknown {', '.join(sorted(unknown))} "
                 f"(one of {', '.join(FILE_VARIANTS + DIAGNOSTIC_VARIANTS)})")
    root = DATASETS[args.dataset][0]
    if not root.is_dir():
        print(json.dumps(dict(skipped=f"{root} not found")))
        return {}
    cands = parse_candidates(args.candidates) if args.candidates else {"default": []}
    if args.reference:
        cands["whole frame"] = ["views.streams=[frame]"]
    heads, seeds = args.heads.split(","), [int(s) for s in args.seeds.split(",")]
    t0 = time.time()
    with contextlib.ExitStack() as stack:
        work = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        cache = Path(args.cache) if args.cache else work / "cache"
        results = {}
        for name, ov in cands.items():
            res = evaluate(args.dataset, [*args.overrides, *ov], heads, seeds, work / re.sub(r"\W+", "_", name),
                           cache, tuple(filter(None, args.files.split(","))))
            results[name] = dict(overrides=[*args.overrides, *ov], heads=res)
    out = dict(machine=describe(), benchmark="accuracy_folds", dataset=args.dataset,
               folds=DATASETS[args.dataset][2], seeds=seeds, results=results, seconds=round(time.time() - t0, 1))
    print(json.dumps(out, indent=2))
    for name, r in results.items():
        print(f"{name}: " + ", ".join(f"{h} {v['top1_mean']:.3f} {v['per_seed']}" + (
            f" files {v['files_top1_mean']}" if "files_top1_mean" in v else "") for h, v in r["heads"].items()),
              file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
