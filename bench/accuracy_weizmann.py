"""Actor-disjoint accuracy on the Weizmann clips, through the same code as `vap train` / `vap eval`.

For each fold the test actors' clips are held out; the training actors' clips are split by actor
(data.group_by) into train and validation for model selection, `pipeline.train.main` trains, and
`pipeline.evaluate.evaluate_checkpoint` scores best.pt on the held-out actors. Features are
extracted once into the cache and reused by every fold and head.

    python bench/accuracy_weizmann.py [--protocol loao|3fold] [--heads lstm,meanpool] [--seeds 0,1,2] [key=value ...]
    python bench/accuracy_weizmann.py --table [--rows rgb,crop,...]   # one row per configuration (README)
    python bench/accuracy_weizmann.py --extraction --rows crop+diff [--repeats 3]  # extraction cost vs RGB
    python bench/accuracy_weizmann.py --predict-with backbone.runtime=onnxruntime,backbone.precision=int8

Prints JSON: per head and seed, top1 mean / std / min over folds and per-fold top1; with several
seeds also the mean and std over seeds (training on ~60 clips moves by several points with the seed).
--table runs every configuration of ROWS (the views.streams of pipeline/data/views.py) with each head
and prints a Markdown table after the JSON: mean and spread over folds, seconds of training and
evaluation, and the feature extraction cost relative to the whole frame alone (RGB only).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.capabilities import describe  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.training.evaluate import evaluate_checkpoint  # noqa: E402
from pipeline.training.run import main as train_main  # noqa: E402

WEIZMANN = ROOT.parent / "shared" / "data" / "weizmann"
ACTORS = ["daria", "denis", "eli", "ido", "ira", "lena", "lyova", "moshe", "shahar"]


# configuration rows of --table: name -> overrides on top of the config (and the command line)
ROWS = {
    "rgb": ["views.streams=[frame]"],                      # the plain recipe: whole frame only
    "+crop": ["views.streams=[frame,crop]"],               # + person-centred view
    "+diff": ["views.streams=[frame,diff]"],               # + motion: frame differences
    "+flow": ["views.streams=[frame,flow]"],               # + motion: optical flow
    "crop+diff": ["views.streams=[crop,diff]"],            # person and its motion
    "crop+diff+mhi": ["views.streams=[crop,diff,mhi]"],    # and the path it swept (the default)
    "crop+mhi": ["views.streams=[crop,mhi]"],              # the path swept instead of the difference
    "crop+diff+mhi 128": ["views.streams=[crop,diff,mhi]", "views.motion_size=128"],  # motion images as before 12-01
    "crop+flow": ["views.streams=[crop,flow]"],
    "frame+crop+diff": ["views.streams=[frame,crop,diff]"],  # combined
    "crop+diff grid2": ["views.streams=[crop,diff]", "backbone.grid=2"],  # spatial detail
    "crop+diff test3": ["views.streams=[crop,diff]", "train.test_clips=3"],  # multi-clip testing
    # + fine-tuning (which trains every view at the backbone's input size)
    "crop+diff finetune1": ["views.streams=[crop,diff]", "train.finetune_blocks=1", "views.motion_size=0"],
    # real people (MediaPipe's BlazePose, two per frame): the crop around them, or their keypoints as a stream
    "crop+diff people": ["views.streams=[crop,diff]", "views.region=people", "detector.weights=mediapipe"],
    "crop+diff+pose2": ["views.streams=[crop,diff,pose]", "views.pose_people=2", "detector.weights=mediapipe"],
}


def folds(protocol: str) -> list[list[str]]:
    if protocol == "loao":
        return [[a] for a in ACTORS]
    if protocol == "3fold":  # fixed partition into three groups of three actors
        return [ACTORS[0::3], ACTORS[1::3], ACTORS[2::3]]
    if protocol == "6-3":  # one fixed split: train on 6 actors, test on 3
        return [ACTORS[0::3]]
    raise SystemExit(f"unknown protocol {protocol}")


def inner_folds(protocol: str) -> list[tuple[list[str], list[str]]]:
    """Nested validation (bench/tune_weizmann.py --select nested): per outer fold, (inner validation
    actors, the outer test actors). The two actors after the fold's test actors (in ACTORS order) are
    scored as if they were the test actors; the outer test actors are left out altogether, so a choice
    made on these scores never sees them."""
    out = []
    for test in folds(protocol):
        rest = [a for a in ACTORS if a not in test]
        i = (ACTORS.index(test[-1]) + 1) % len(ACTORS)
        order = [ACTORS[(i + j) % len(ACTORS)] for j in range(len(ACTORS))]
        out.append(([a for a in order if a in rest][:2], test))
    return out


def write_lists(root: Path, test_actors: list[str], out: Path, exclude: list[str] = ()) -> tuple[Path, Path]:
    rows = sorted(p for p in root.glob("*/*.avi") if p.name.split("_")[0] not in exclude)
    train = ["path,label"] + [f"{p},{p.parent.name}" for p in rows if p.name.split("_")[0] not in test_actors]
    test = ["path,label"] + [f"{p},{p.parent.name}" for p in rows if p.name.split("_")[0] in test_actors]
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.csv").write_text("\n".join(train) + "\n")
    (out / "test.csv").write_text("\n".join(test) + "\n")
    return out / "train.csv", out / "test.csv"


def run(data: Path, protocol: str, heads: list[str], overrides: list[str], work: Path,
        config: str | None = None, seed: int | None = None, inner: bool = False,
        predict_with: list[str] = (), only: list[str] = ()) -> dict:
    """Train and score every fold of the protocol with each head. inner=True scores the inner
    validation actors of inner_folds() instead, the outer test actors left out (model choice).
    predict_with: prediction-time settings (e.g. backbone.precision=int8) under which each fold's
    model is scored a second time (top1_with), beside its score as trained. only: run just the folds
    whose test actors include one of these (a quicker check of the protocol)."""
    results = {}
    extra = [f"train.seed={seed}"] if seed is not None else []
    plan = inner_folds(protocol) if inner else [(t, []) for t in folds(protocol)]
    if only:
        plan = [(t, x) for t, x in plan if set(t) & set(only)]
    for head in heads:
        per_fold = []
        for k, (test_actors, exclude) in enumerate(plan):
            train_csv, test_csv = write_lists(data, test_actors, work / f"fold{k}", exclude)
            cfg = load_config(config or ROOT / "configs" / "weizmann.yaml",
                              [*overrides, *extra, f"head.type={head}", f"data.train={train_csv}"])
            run_dir = work / f"fold{k}" / (head if seed is None else f"{head}-seed{seed}")
            done = run_dir / "fold_result.json"  # a rerun with the same --work resumes fold by fold
            if done.is_file() and json.loads(done.read_text())["config"] == cfg.to_dict():
                res = json.loads(done.read_text())["result"]
                if not predict_with or res.get("predict_with") == list(predict_with):
                    per_fold.append(res)
                    continue
            else:
                tf = time.time()
                m = train_main(cfg, run_dir, progress=False)
                rep = evaluate_checkpoint(run_dir / "best.pt", test_csv, run_dir / "eval", progress=False)
                res = dict(test_actors=test_actors, top1=rep["top1"], val_top1=m["val_top1"],
                           val_loss=m["val_loss"], mean_class_accuracy=rep["mean_class_accuracy"],
                           clips=rep["num_clips"], seconds=round(time.time() - tf, 1))
            if predict_with:  # the same model, its features computed another way at prediction time
                rep = evaluate_checkpoint(run_dir / "best.pt", test_csv, run_dir / "eval-with", progress=False,
                                          overrides=list(predict_with))
                res.update(predict_with=list(predict_with), top1_with=rep["top1"])
            per_fold.append(res)
            done.write_text(json.dumps(dict(config=cfg.to_dict(), result=res)))
            print(f"{head} seed {seed} fold {k} {test_actors}: top1 {res['top1']:.3f}"
                  + (f", with {' '.join(predict_with)}: {res['top1_with']:.3f}" if predict_with else ""),
                  file=sys.stderr)
        top1 = np.array([f["top1"] for f in per_fold])
        val = np.array([f["val_top1"] for f in per_fold])
        # clip-weighted overall accuracy equals the mean for equal-sized folds
        results[head] = dict(top1_mean=round(float(top1.mean()), 4), top1_std=round(float(top1.std()), 4),
                             top1_min=round(float(top1.min()), 4), folds=per_fold,
                             # model choice looks at this only: validation actors, never the test actor
                             val_top1_mean=round(float(val.mean()), 4),
                             val_loss_mean=round(float(np.mean([f["val_loss"] for f in per_fold])), 4),
                             seconds=round(sum(f.get("seconds", 0.0) for f in per_fold), 1))
        if predict_with:
            results[head].update(predict_with=list(predict_with),
                                 top1_with_mean=round(float(np.mean([f["top1_with"] for f in per_fold])), 4))
    return results


def extraction_seconds(data: Path, config: str | None, overrides: list[str], clips: int = 10) -> float:
    """Seconds to decode and encode `clips` Weizmann clips (one per action) with the views of the
    config, no cache: the extraction cost of a configuration (compared with RGB only in one process)."""
    from pipeline.models.cache import encode_video
    from pipeline.models.detector import pose_tracker
    from pipeline.models.runtime import backbone_from_config

    cfg = load_config(config or ROOT / "configs" / "weizmann.yaml", overrides)
    bb = backbone_from_config(cfg.backbone)
    people = pose_tracker(cfg.views, cfg.detector)  # the person detector, where the views read people
    paths = [sorted(d.glob("*.avi"))[0] for d in sorted(data.iterdir()) if d.is_dir()][:clips]
    encode_video(str(paths[0]), bb, cfg.video, cfg.views, people=people)  # warm-up
    t0 = time.perf_counter()
    for p in paths:
        encode_video(str(p), bb, cfg.video, cfg.views, people=people)
    return time.perf_counter() - t0


def extraction_costs(data: Path, config: str | None, rows: list[str], overrides: list[str],
                     repeats: int = 3) -> dict:
    """Extraction cost of each row relative to RGB only: every row and RGB timed `repeats` times,
    interleaved (so drifts of the machine hit all alike); the ratio of the fastest of each.
    Per-repeat ratios show the noise."""
    names = ["rgb", *[r for r in rows if r != "rgb"]]
    secs: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(repeats):
        for n in names:
            secs[n].append(extraction_seconds(data, config, [*overrides, *ROWS[n]]))
    base = min(secs["rgb"])
    return {n: dict(seconds_min=round(min(v), 2), seconds=[round(x, 2) for x in v],
                    cost_vs_rgb=round(min(v) / base, 3),
                    cost_vs_rgb_per_repeat=[round(x / b, 3) for x, b in zip(v, secs["rgb"])])
            for n, v in secs.items()}


def table(data: Path, protocol: str, heads: list[str], rows: list[str], overrides: list[str], work: Path,
          config: str | None) -> tuple[dict, str]:
    """Every configuration row with every head; (results, Markdown table)."""
    results, lines = {}, []
    costs = extraction_costs(data, config, rows, overrides, repeats=1)
    for name in rows:
        cost = costs[name]["cost_vs_rgb"]
        res = run(data, protocol, heads, [*overrides, *ROWS[name]], work / name, config)
        results[name] = dict(overrides=ROWS[name], extraction_cost_vs_rgb=round(cost, 2), heads=res)
        for h in heads:
            r = res[h]
            lines.append(f"| {name} | {h} | {r['val_top1_mean']:.3f} | {r['top1_mean']:.3f} | {r['top1_std']:.3f} | "
                         f"{r['top1_min']:.3f} | {cost:.2f} | {r['seconds']:.0f} |")
    head = ["| configuration | head | val top-1 (training actors) | test top-1 mean | std over folds | worst fold "
            "| extraction cost vs RGB | seconds |", "|---|---|---|---|---|---|---|---|"]
    return results, "\n".join(head + lines)


def parse_args(ap: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, Path | None]:
    """Both Weizmann benchmarks: add --data and --work to their own options, parse, and check the data
    folder; (args, data), data None (and a 'skipped' JSON printed) when the folder is missing."""
    ap.add_argument("--data", default=str(WEIZMANN))
    ap.add_argument("--work", help="folder for the fold runs (default: a temporary folder)")
    args = ap.parse_intermixed_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(json.dumps(dict(skipped=f"{data} not found")))
        return args, None
    return args, data


@contextlib.contextmanager
def work_folder(work: str | None):
    """--work, or a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(work) if work else Path(tmp)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="loao", choices=["loao", "3fold", "6-3"])
    ap.add_argument("--heads", default="lstm,meanpool")
    ap.add_argument("--config", help="experiment YAML (default configs/weizmann.yaml)")
    ap.add_argument("--seeds", default="", help="comma-separated train.seed values (default: the config's)")
    ap.add_argument("--table", action="store_true", help="one row per configuration (ROWS), Markdown table")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"rows of --table, of: {', '.join(ROWS)}")
    ap.add_argument("--extraction", action="store_true",
                    help="only time feature extraction of --rows against RGB (10 clips, --repeats times, interleaved)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--predict-with", default="",
                    help="comma-separated prediction-time settings under which each fold's model is scored again "
                         "(top1_with), e.g. backbone.runtime=onnxruntime,backbone.precision=int8")
    ap.add_argument("--only", default="", help="comma-separated actors: run only the folds that test them "
                                                "(a quick check; the README's figures are every fold)")
    ap.add_argument("overrides", nargs="*")
    args, data = parse_args(ap, argv)
    if data is None:
        return {}
    t0 = time.time()
    if args.extraction:
        out = dict(machine=describe(), benchmark="extraction_cost_weizmann",
                   config=args.config or "configs/weizmann.yaml",
                   overrides=args.overrides, threads=torch.get_num_threads(),
                   rows=extraction_costs(data, args.config, args.rows.split(","), args.overrides, args.repeats),
                   seconds=round(time.time() - t0, 1))
        print(json.dumps(out, indent=2))
        return out
    if args.table:
        with work_folder(args.work) as work:
            res, md = table(data, args.protocol, args.heads.split(","), args.rows.split(","), args.overrides,
                            work, args.config)
        out = dict(machine=describe(), benchmark="accuracy_weizmann_table", protocol=args.protocol,
                   config=args.config or "configs/weizmann.yaml", overrides=args.overrides, rows=res,
                   seconds=round(time.time() - t0, 1), markdown=md)
        print(json.dumps(out, indent=2))
        print(md)
        return out
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    by_seed = {}
    with work_folder(args.work) as work:
        for seed in seeds:
            by_seed[seed] = run(data, args.protocol, args.heads.split(","), args.overrides, work, args.config, seed,
                                predict_with=[x for x in args.predict_with.split(",") if x],
                                only=[x for x in args.only.split(",") if x])
    res = by_seed[seeds[0]]
    out = dict(machine=describe(), benchmark="accuracy_weizmann", protocol=args.protocol,
               config=args.config or "configs/weizmann.yaml",
               overrides=args.overrides, results=res, seconds=round(time.time() - t0, 1))
    if len(seeds) > 1:
        out["seeds"] = {str(s): r for s, r in by_seed.items()}
        out["over_seeds"] = {h: dict(top1_mean=round(float(np.mean([by_seed[s][h]["top1_mean"] for s in seeds])), 4),
                                     top1_std_over_seeds=round(float(np.std([by_seed[s][h]["top1_mean"]
                                                                             for s in seeds])), 4),
                                     per_seed=[by_seed[s][h]["top1_mean"] for s in seeds],
                                     **({"top1_with_mean": round(float(np.mean(
                                         [by_seed[s][h]["top1_with_mean"] for s in seeds])), 4),
                                         "top1_with_per_seed": [by_seed[s][h]["top1_with_mean"] for s in seeds]}
                                        if "top1_with_mean" in res[h] else {}))
                             for h in res}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
