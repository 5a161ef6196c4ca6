"""`vap` command line: thin wrappers over the library API. Results go to stdout (JSON), progress
and logs to stderr, errors are one line naming the file and the problem (exit status 2).

Each command imports what it needs inside its function, so that `vap --help` and a mistyped
command answer without loading torch."""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from pipeline.config import load_config
from pipeline.errors import ClusterError, DataError, ExportError, GrammarError, VapError

# The demo: small enough for a laptop CPU in under a minute, big enough to learn motion. refit: the
# validation quarter picks the epoch count, then the head trains again on all the training clips
# (0.92-0.96 test top-1 without it, 0.98 with it over training seeds 0-2; docs/results.md). One head,
# not the default five: on the demo's synthetic clips five scored 0.958-0.979 against 0.979 for one, for
# 9 s more of a first run (docs/results.md, "Head ensembles"). No rewritten copies: the demo's clips and
# its test clips are written by one writer, so there is no other file to prepare for, only a longer first run.
# No motion history: at the demo's 128 px it would be a third full pass per frame, and the demo's coloured shapes
# are told apart by what they look like and which way they move (crop and diff); the difference at the demo's
# whole input side, as its figures were measured (the library's 96 px was chosen on real people, not on shapes).
DEMO_OVERRIDES = [
    "video.fps=8", "backbone.input_size=128", "train.epochs=40", "train.patience=12",
    "train.max_len=24", "data.val_fraction=0.25", "train.refit=true", "train.ensemble=1", "train.copies=0",
    "views.streams=[crop,diff]", "views.motion_size=128",
]


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of overrides (see configs/default.yaml)")
    p.add_argument("--cache", help="feature cache folder (overrides cache.dir)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. train.epochs=30 head.type=gru")


def _command(sub, name: str, fn, **kwargs) -> argparse.ArgumentParser:
    """A subcommand `name` that runs fn(args)."""
    p = sub.add_parser(name, **kwargs)
    p.set_defaults(fn=fn)
    return p


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


OVERRIDE = re.compile(r"^[a-z_]+\.[a-z_]+=")  # section.key=value


def _model_args(p: argparse.ArgumentParser, help: str = "a best.pt or last.pt", overrides: bool = True) -> None:
    """--checkpoint and --device, for the commands that load a trained model, and the prediction-time
    settings (backbone.runtime=..., video.decoder=...: models.checkpoint.INFERENCE_KEYS)."""
    p.add_argument("--checkpoint", required=True, help=help)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    if overrides:
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="prediction-time settings: backbone.runtime, backbone.precision, backbone.device, "
                            "backbone.batch_size, backbone.channels_last, video.decoder, video.max_side, "
                            "video.chunk_mb, detector.*")


def _config(args, extra=()):
    cfg = load_config(args.config, [*extra, *args.overrides])
    if getattr(args, "cache", None):
        cfg.cache.dir = args.cache
    return cfg


def _segment_annotations(data) -> bool:
    """Whether --data is a segment annotation file (video,start,end,label), which the next-event task reads;
    per-person rows (a track or a box) classify each row unless --task says otherwise."""
    from pipeline.data.segments import is_annotation_file
    from pipeline.data.tracks import is_people_file

    return bool(data) and is_annotation_file(data) and not is_people_file(data)


def _default_run_dir(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


# ----------------------------------------------------------------------------- subcommands

def _launch_torchrun(args, nproc: int) -> int:
    """`vap train --nproc N ...`: the same command in N processes under torchrun (one machine;
    README "Scale out" for several), which train together with DistributedDataParallel."""
    import os
    import subprocess

    argv, skip = [], False
    for a in args.argv:  # the command as typed, less --nproc
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            argv.append(a)
    if not args.out:  # every process must write (rank 0) into the same run directory: name it once
        argv += ["--out", str(_default_run_dir("train"))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "pipeline", *argv]
    print(f"launching {nproc} training processes: torchrun --standalone --nproc_per_node={nproc} -m pipeline "
          + " ".join(argv), file=sys.stderr)
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(cmd, env=env).returncode


def cmd_train(args) -> int:
    import os

    from pipeline.training.run import config_for_resume, main

    if args.nproc < 0:
        raise ClusterError(f"--nproc {args.nproc}: give the number of training processes (2 or more)")
    launch = args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1
    rank = int(os.environ.get("RANK", "0"))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not args.out:
        raise DataError("under torchrun, pass --out: every process must name the same run directory")
    out = Path(args.out) if args.out else _default_run_dir("train")
    if args.resume:
        cfg = config_for_resume(out, args.overrides)
    else:
        extra = [f"data.train={args.data}"] + ([f"data.val={args.val}"] if args.val else [])
        task = args.task or ("next_event" if _segment_annotations(args.data) else None)
        cfg = _config(args, extra + ([f"train.task={task}"] if task else []))
    if args.cache:
        cfg.cache.dir = args.cache
    if not cfg.data.train:
        raise DataError("no training data: pass --data PATH")
    if launch:  # the config and the data's path are checked above, once, before the processes start
        if not Path(cfg.data.train).exists():
            raise DataError(f"{cfg.data.train}: no such file or folder")
        return _launch_torchrun(args, args.nproc)
    metrics = main(cfg, out, resume=args.resume, progress=not args.quiet and rank == 0)
    if rank != 0:  # torchrun's other processes: rank 0 reports
        return 0
    if metrics.get("task") == "next_event":
        print(f"best val next-action top1 {metrics['val_next_top1']:.3f}, current-action per-step top1 "
              f"{metrics['val_current_top1']:.3f} (epoch {metrics['best_epoch']}); checkpoint {out / 'best.pt'}",
              file=sys.stderr)
        _print_json(metrics)
        return 0
    print(f"best val top1 {metrics['val_top1']:.3f} (epoch {metrics['best_epoch']}); "
          f"checkpoint {out / 'best.pt'}; plots {out / 'curves.png'}, {out / 'confusion_val.png'}",
          file=sys.stderr)
    _print_json({k: v for k, v in metrics.items() if k not in ("val_confusion_matrix",)})
    return 0


def cmd_eval(args) -> int:
    from pipeline.training.evaluate import evaluate_checkpoint

    rep = evaluate_checkpoint(args.checkpoint, args.data, args.out, args.device, args.cache,
                              progress=not args.quiet, overrides=args.overrides)
    for e in rep["failed"].values():
        print(f"skipped: {e}", file=sys.stderr)
    if rep.get("task") == "next_event":
        at = rep["anticipation"]
        print(f"current action per step {rep['current_top1']:.3f}; next action top1 {rep['next_top1']:.3f} "
              f"(top5 {rep['next_top5']:.3f}); at " + ", ".join(f"{k} before: {v['top1']:.3f}" for k, v in at.items())
              + f" on {rep['num_videos']} videos", file=sys.stderr)
        _print_json({k: v for k, v in rep.items() if k != "current_confusion_matrix"})
        return 1 if rep["failed"] else 0
    print(f"top1 {rep['top1']:.3f}, top5 {rep['top5']:.3f}, mean-class {rep['mean_class_accuracy']:.3f} "
          f"on {rep['num_clips']} clips; wrote {rep['outputs']['confusion_png']}", file=sys.stderr)
    _print_json(rep)
    return 1 if rep["failed"] else 0  # scored what could be read; non-zero so scripts notice


def cmd_extract(args) -> int:
    from pipeline.data.datasets import load_dataset
    from pipeline.data.segments import load_annotations
    from pipeline.data.tracks import is_people_file
    from pipeline.models.cache import FeatureCache, extract_versions
    from pipeline.models.runtime import backbone_from_config
    from pipeline.training.loop import wants_flip

    # segment annotations are read by the next-event task, at its rate (config.TASK_DEFAULTS), as vap train does
    segments = _segment_annotations(args.data)
    cfg = _config(args, [f"data.train={args.data}"] + (["train.task=next_event"] if segments else []))
    if is_people_file(args.data):
        return _extract_people(args, cfg)
    mirrored: list[str] = []  # what training will also read mirrored (train.flip_aug), filled here too
    copies: list[str] = []  # the training clips' rewritten copies (train.copies), among paths
    if segments:  # segment annotations (next-event task): every video they name
        ann = load_annotations(args.data)
        paths = [v.path for v in ann.videos]
        if wants_flip(cfg.train.flip_aug, sorted({g.label for v in ann.videos for g in v.segments})):
            mirrored = list(paths)
    else:
        ds = load_dataset(args.data, "train", tuple(cfg.data.extensions), cfg.data.ucf_split)
        paths = [s.path for s in ds.samples]
        if cfg.train.copies:  # the rewritten copies training reads beside each clip (train.copies)
            from pipeline.data.copies import copies_root, write_copies

            made = write_copies(paths, cfg.train.copies, copies_root(cfg), cfg.video.decoder)
            copies = [c for cs in made.values() for c in cs]
            paths = paths + copies
        if wants_flip(cfg.train.flip_aug, ds.classes):  # clips: what classification reads
            mirrored = list(paths)
        try:  # a split-aware source also has evaluation clips: extract those too
            paths += [s.path for s in load_dataset(args.data, "eval", tuple(cfg.data.extensions),
                                                   cfg.data.ucf_split).samples if s.path not in set(paths)]
        except DataError:
            pass
    t0 = time.time()
    if args.engine == "ray":
        from pipeline.models.ray_extract import extract_ray

        results, workers, fingerprint = extract_ray(
            paths, cfg, (False, True) if mirrored else (False,), args.address, args.workers, args.cpus_per_worker,
            args.gpus_per_worker, progress=not args.quiet)
        res, res_flip = results[False], results.get(True)
        backbone_name, cache_root = cfg.backbone.name, FeatureCache.from_config(cfg).root
    else:
        _local_only(args)
        workers = 1
        bb = backbone_from_config(cfg.backbone)
        cache = FeatureCache.from_config(cfg)
        # one decode of each video for its views as they are and mirrored
        both = extract_versions({False: paths, True: mirrored} if mirrored else {False: paths}, bb, cfg.video,
                                cache, progress=not args.quiet, views=cfg.views, detector=cfg.detector)
        res, res_flip = both[False], both.get(True)
        backbone_name, fingerprint, cache_root = bb.name, bb.fingerprint, cache.root
    line = f"{res.extracted} extracted, {res.reused} already cached, {len(res.failures)} failed" + (
        f"; mirrored frames (train.flip_aug): {res_flip.extracted} extracted, {res_flip.reused} already cached"
        if res_flip else "")
    return _report_extraction(args, cfg, res, res_flip, t0, line, dict(videos=len(paths) - len(copies)), dict(videos=len(mirrored)),
                              cache_root, backbone_name, fingerprint, workers, copies=len(copies))


def _report_extraction(args, cfg, res, res_flip, t0, line: str, head: dict, mirrored: dict, cache_root,
                       backbone_name: str, fingerprint: str, workers: int, copies: int = 0) -> int:
    """vap extract's ending, for clips and per-person rows alike: the failures file, a line per skipped video
    and the summary line on stderr, the JSON summary (head's keys first) on stdout; exit status 1 on failures."""
    if args.failures and res.failures:
        from pipeline.io import atomic_write_text

        atomic_write_text(args.failures, "".join(f"{e}\n" for e in res.failures.values()))
    for e in res.failures.values():
        print(f"skipped: {e}", file=sys.stderr)
    print(line, file=sys.stderr)
    _print_json(dict(**head, copies=copies, extracted=res.extracted, reused=res.reused, failed=len(res.failures),
                     frames_encoded=res.frames + (res_flip.frames if res_flip else 0),
                     seconds=round(time.time() - t0, 2), cache=str(cache_root), backbone=backbone_name,
                     fingerprint=fingerprint, streams=list(cfg.views.streams),
                     mirrored=dict(**mirrored, extracted=res_flip.extracted if res_flip else 0,
                                   reused=res_flip.reused if res_flip else 0),
                     engine=args.engine, workers=workers, failures=list(res.failures.values())))
    return 1 if res.failures else 0


def _extract_people(args, cfg) -> int:
    """vap extract on per-person rows (data/tracks.py): the features of each row's person, as vap train reads
    them (mirrored too unless train.flip_aug says otherwise; with train.task=next_event each person's whole
    timeline instead); the local engine only."""
    from pipeline.data.datasets import load_dataset
    from pipeline.models.cache import FeatureCache, versions
    from pipeline.models.person_cache import extract_people_versions
    from pipeline.models.runtime import backbone_from_config
    from pipeline.training.loop import wants_flip

    if args.engine != "local":
        raise ClusterError(f"{args.data}: per-person rows are extracted by the local engine (or by vap train)")
    _local_only(args)
    if cfg.train.task == "next_event":  # each person's whole timeline, as the next-event task reads it
        from pipeline.data.tracks import load_person_timelines

        ann = load_person_timelines(args.data)
        samples, classes = [v.sample for v in ann.videos], ann.labels
    else:  # each row, as classification reads it
        samples = load_dataset(args.data, "train", tuple(cfg.data.extensions)).samples
        try:  # the evaluation rows of a file with a split column too
            samples += [s for s in load_dataset(args.data, "eval").samples if s.key not in {x.key for x in samples}]
        except DataError:
            pass
        classes = sorted({s.label for s in samples})
    t0 = time.time()
    bb, cache = backbone_from_config(cfg.backbone), FeatureCache.from_config(cfg)
    kw = dict(progress=not args.quiet, views=cfg.views, detector=cfg.detector)
    flip = wants_flip(cfg.train.flip_aug, classes)
    # one decode of each video for its rows as they are and mirrored
    both = extract_people_versions(versions(samples, flip), bb, cfg.video, cache, **kw)
    res, res_flip = both[False], both.get(True)
    videos = len({s.path for s in samples})
    line = (f"{len(samples)} per-person rows in {videos} videos: {res.extracted} videos encoded, {res.reused} rows "
            f"already cached, {len(res.failures)} failed")
    return _report_extraction(args, cfg, res, res_flip, t0, line, dict(videos=videos, rows=len(samples)),
                              dict(rows=len(samples) if flip else 0), cache.root, bb.name, bb.fingerprint, 1)


def cmd_synth(args) -> int:
    from pipeline.data.synthetic import ACTIONS, make_dataset

    if args.people:  # several people per video, with their boxes and action segments
        from pipeline.data.people import make_people_videos

        lo, _, hi = args.people.partition("..")
        try:
            people = (int(lo), int(hi or lo))
        except ValueError:
            raise DataError(f"--people {args.people}: give a count or a range, e.g. 2 or 2..3") from None
        if not 1 <= people[0] <= people[1] <= 6:
            raise DataError(f"--people {args.people}: between 1 and 6 people per video")
        out = make_people_videos(args.out, args.videos, people, 8.0 if args.seconds is None else args.seconds,
                                 args.seed)
        _print_json(dict(out=str(out), videos=args.videos, people=list(people), segments=str(out / "people.csv"),
                         boxes=str(out / "boxes.csv")))
        return 0
    actions = args.actions.split(",") if args.actions else ACTIONS
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise DataError(f"unknown synthetic action(s) {unknown}; known: {', '.join(ACTIONS)}")
    if args.sequences:
        from pipeline.data.grammar import cycle_grammar, load_grammar
        from pipeline.data.synthetic import make_sequences

        g = load_grammar(args.grammar) if args.grammar else cycle_grammar(list(actions))
        bad = [a for a in g.actions if a not in ACTIONS]
        if bad:
            raise GrammarError(f"{args.grammar}: synthetic videos cannot show {bad}; known: {', '.join(ACTIONS)}")
        seconds = 30.0 if args.seconds is None else args.seconds
        out = make_sequences(args.out, g, args.sequences, seconds, args.seed)
        _print_json(dict(out=str(out), annotations=str(out / "annotations.csv"), videos=args.sequences,
                         seconds_each=seconds, grammar=g.to_dict(), bayes_next_top1=g.bayes_limit()))
        return 0
    out = make_dataset(args.out, args.clips_per_class, actions, args.seed)
    _print_json(dict(out=str(out), classes=list(actions), clips=args.clips_per_class * len(actions)))
    return 0


def _size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height), even (H.264)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DataError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 640x360") from None
    if w < 2 or h < 2:
        raise DataError(f"--size {text!r}: width and height must be at least 2")
    return w // 2 * 2, h // 2 * 2


def cmd_compose(args) -> int:
    from pipeline.data.compose import compose
    from pipeline.data.grammar import load_grammar

    g = load_grammar(args.grammar)
    summary = compose(args.clips, g, args.out, args.sequences, args.seconds, args.group_by,
                      args.groups.split(",") if args.groups else None, args.seed, args.fps,
                      _size(args.size) if args.size else None, progress=not args.quiet)
    for e in summary["failed_clips"].values():
        print(f"skipped: {e}", file=sys.stderr)
    print(f"wrote {summary['videos']} sequences and {summary['annotations']}", file=sys.stderr)
    _print_json(summary)
    return 0


def cmd_export(args) -> int:
    from pipeline.inference.export import export_onnx

    if args.format != "onnx":
        raise ExportError(f"unknown export format '{args.format}' (onnx)")
    s = export_onnx(args.checkpoint, args.out)
    print(f"wrote {s['backbone']}, {s['head']} and {s['model']}; check against PyTorch: {s['check']}",
          file=sys.stderr)
    _print_json(s)
    return 0


def cmd_demo(args) -> int:
    """Synthetic data -> features -> LSTM -> evaluation on held-out synthetic clips."""
    from pipeline.data.synthetic import make_dataset
    from pipeline.training.evaluate import evaluate_checkpoint
    from pipeline.training.run import main

    out = Path(args.out)
    n = 6 if args.quick else 16
    bars = not args.quiet
    t0 = time.perf_counter()
    print(f"[1/3] writing synthetic videos to {out / 'data'}", file=sys.stderr)
    train_dir = make_dataset(out / "data" / "train", n, seed=0, progress=bars)
    test_dir = make_dataset(out / "data" / "test", max(3, n // 2), seed=1, progress=bars)
    cfg = load_config(None, [*DEMO_OVERRIDES, f"data.train={train_dir}", *args.overrides])
    cfg.cache.dir = str(out / "cache") if not args.cache else args.cache
    if args.quick:
        cfg.train.epochs = min(cfg.train.epochs, 15)
    t1 = time.perf_counter()
    print(f"[2/3] extracting {cfg.backbone.name} features, training the {cfg.head.type} head", file=sys.stderr)
    metrics = main(cfg, out / "run", progress=bars)
    t2 = time.perf_counter()
    print("[3/3] evaluating on held-out synthetic clips", file=sys.stderr)
    rep = evaluate_checkpoint(out / "run" / "best.pt", test_dir, out / "run" / "eval", cache_dir=cfg.cache.dir,
                              progress=bars)
    t3 = time.perf_counter()
    summary = dict(
        val_top1=metrics["val_top1"], test_top1=rep["top1"], test_top5=rep["top5"],
        test_mean_class_accuracy=rep["mean_class_accuracy"], test_clips=rep["num_clips"],
        checkpoint=str(out / "run" / "best.pt"), metrics=str(out / "run" / "metrics.json"),
        seconds=dict(videos=round(t1 - t0, 1), train=round(t2 - t1, 1), evaluate=round(t3 - t2, 1),
                     total=round(t3 - t0, 1)),
        plots=[str(out / "run" / "curves.png"), str(out / "run" / "confusion_val.png"),
               rep["outputs"]["confusion_png"]],
    )
    print(f"demo done in {summary['seconds']['total']:.0f} s: test top1 {rep['top1']:.3f} on {rep['num_clips']} unseen clips; "
          f"checkpoint {summary['checkpoint']}", file=sys.stderr)
    _print_json(summary)
    return 0


def cmd_predict(args) -> int:
    from pipeline.inference.batch import run_batch
    from pipeline.inference.predict import Predictor

    sources = [a for a in args.sources if not OVERRIDE.match(a)]  # key=value among the sources: settings
    overrides = [a for a in args.sources if OVERRIDE.match(a)]
    if args.engine == "ray":
        from pipeline.inference.ray_batch import run_batch_ray

        s = run_batch_ray(args.checkpoint, sources, args.out, address=args.address, workers=args.workers,
                          cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                          device=args.device, window=args.window, stride=args.stride, topk=args.topk,
                          overrides=overrides, timeline=args.timeline, render_dir=args.render,
                          progress=not args.quiet, retry=not args.no_retry, strict=args.strict,
                          per_person=args.per_person)
    else:
        _local_only(args)
        pred = Predictor.from_checkpoint(args.checkpoint, args.device, window=args.window, stride=args.stride,
                                         topk=args.topk, overrides=overrides, per_person=args.per_person)
        s = run_batch(pred, sources, args.out, timeline=args.timeline, topk=args.topk,
                      render_dir=args.render, progress=not args.quiet, retry=not args.no_retry, strict=args.strict)
    for e in s.errors:
        print(f"failed: {e}", file=sys.stderr)
    for w in s.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{s.done} predicted ({s.retried} of them retried after an error row), {s.skipped} already in "
          f"{args.out}, {s.failed} failed; {s.to_dict()['frames_per_second']} frames/s", file=sys.stderr)
    _print_json(s.to_dict())
    return 1 if s.failed else 0


def _local_only(args) -> None:
    """The Ray flags without --engine ray: say so rather than ignore them."""
    given = [f for f, v in (("--address", args.address), ("--workers", args.workers),
                            ("--gpus-per-worker", args.gpus_per_worker)) if v]
    if given:
        raise ClusterError(f"{', '.join(given)} set the Ray engine's workers: add --engine ray")


def _engine_args(p: argparse.ArgumentParser, what: str) -> None:
    """--engine and the Ray engine's settings (README: Scale out)."""
    g = p.add_argument_group("scale out (Ray)")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help=f"local: this process; ray: a pool of Ray workers {what} (pip install \"vap[ray]\")")
    g.add_argument("--address", help="Ray cluster to join: auto, ray://HOST:10001, HOST:6379 (default: "
                                     "$RAY_ADDRESS, else a local Ray instance on this machine's CPUs)")
    g.add_argument("--workers", type=int, default=0, help="workers in the pool (default: the cluster's CPUs "
                                                          "divided by --cpus-per-worker)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0,
                   help="CPUs each worker reserves; its threads (default 1: one worker per core)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help="GPUs each worker reserves (e.g. 1, or 0.5 for two workers per GPU)")


def cmd_stream(args) -> int:
    import cv2

    from pipeline.inference.predict import StreamingPredictor

    sp = StreamingPredictor.from_checkpoint(args.checkpoint, args.device, every=args.every,
                                            smooth=args.smooth, topk=args.topk, overrides=args.overrides,
                                            per_person=args.per_person)
    src = int(args.source) if args.source.isdigit() else args.source
    if isinstance(src, str) and "://" not in src and not Path(src).exists():
        raise DataError(f"{src}: no such file")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        raise DataError(f"{args.source}: cannot open the stream")
    is_file = isinstance(src, str) and "://" not in src
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    n, t0 = 0, time.perf_counter()
    try:
        while args.max_frames <= 0 or n < args.max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            ts = n / fps if is_file else time.perf_counter() - t0  # file time, or wall-clock time live
            r = sp.push(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), ts)
            n += 1
            if r.encoded and args.per_person:  # one line per frame: every tracked person's box and action
                row = dict(t=round(ts, 3), latency_ms=round(r.latency_ms, 2), people=[
                    dict(track_id=p.track_id, box=[round(float(v), 1) for v in p.box], label=p.result.topk[0][0],
                         prob=round(p.result.topk[0][1], 4)) for p in r.people])
                sys.stdout.write(json.dumps(row) + "\n")
                sys.stdout.flush()
            elif r.encoded:
                row = dict(t=round(ts, 3), label=r.topk[0][0], prob=round(r.topk[0][1], 4),
                           topk=[[lbl, round(p, 4)] for lbl, p in r.topk], latency_ms=round(r.latency_ms, 2))
                if r.next_topk:  # next-event models: what comes next, and when the current action ends
                    row.update(next=r.next_topk[0][0], next_prob=round(r.next_topk[0][1], 4))
                    if r.time_to_end is not None:
                        row["next_in_s"] = round(r.time_to_end, 3)
                sys.stdout.write(json.dumps(row) + "\n")
                sys.stdout.flush()
            if args.show:
                from pipeline.inference.render import draw_overlay, draw_people

                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                img = draw_people(rgb, [(p.track_id, p.box, *p.result.topk[0]) for p in r.people]) \
                    if args.per_person else draw_overlay(rgb, sp.classes, r.probs)
                cv2.putText(img, f"{r.latency_ms:.0f} ms", (6, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX,
                            0.5, (255, 255, 255), 1, cv2.LINE_AA)
                cv2.imshow("vap stream", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        cap.release()
    el = time.perf_counter() - t0
    lat = sorted(sp.latencies)
    print(json.dumps(dict(frames=n, steps=sp.n_steps, seconds=round(el, 3), fps=round(n / el, 2) if el else 0,
                          latency_ms_p50=round(lat[len(lat) // 2], 2) if lat else None,
                          latency_ms_p95=round(lat[int(len(lat) * 0.95)], 2) if lat else None)), file=sys.stderr)
    return 0


def cmd_backbones(args) -> int:
    from pipeline.models.backbones import list_backbones

    _print_json(list_backbones())
    return 0


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vap", description="Video action recognition: per-frame CNN "
                                 "features + LSTM. Results on stdout (JSON), progress on stderr.")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "train", cmd_train, help="train a head on your videos",
                       description="Train on a class-folder tree, a CSV list (path,label[,split]) or "
                                   "UCF101-style split files. Without --val a stratified split is made.")
    p.add_argument("--data", help="training data: folder of class folders, CSV list, or split-file folder")
    p.add_argument("--val", help="validation data (same formats); default: a split of --data")
    p.add_argument("--out", help="run directory (default runs/train-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--nproc", type=int, default=0,
                   help="train in N processes with DistributedDataParallel (runs torchrun on this machine: "
                        "gloo on CPU, nccl with one GPU each); README: Scale out")
    p.add_argument("--task", choices=["classification", "next_event"],
                   help="classification (trimmed clips) or next_event (segment annotation CSV "
                        "video,start,end,label); default: next_event for an annotation CSV, else classification")
    _quiet(p)
    _add_config_args(p)

    p = _command(sub, "eval", cmd_eval, help="evaluate a checkpoint; JSON report on stdout",
                       description="Top-1/5, mean-class and per-class accuracy and the confusion matrix "
                                   "as JSON; also writes a confusion PNG and a per-class CSV.")
    _model_args(p)
    p.add_argument("--data", required=True, help="evaluation data (any training format)")
    p.add_argument("--out", help="folder for eval.json, confusion_eval.png, per_class_eval.csv "
                                 "(default: beside the checkpoint)")
    p.add_argument("--cache", help="feature cache folder (default: the checkpoint's cache.dir)")
    _quiet(p)

    p = _command(sub, "extract", cmd_extract, help="fill the feature cache ahead of training (resumable)")
    p.add_argument("--data", required=True, help="videos to encode (any training format, or segment annotations)")
    p.add_argument("--failures", help="also write the unreadable videos to this file")
    _quiet(p)
    _engine_args(p, "(each builds the backbone once; all write into one cache folder)")
    _add_config_args(p)

    p = _command(sub, "synth", cmd_synth, help="write a synthetic action dataset (class folders of mp4)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--clips-per-class", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--actions", help="comma-separated subset of: wave,clap,jump,squat,walk_left,walk_right")
    p.add_argument("--sequences", type=int, default=0,
                   help="instead of clips, write this many long videos whose actions follow a grammar, with "
                        "annotations.csv (next-event data)")
    p.add_argument("--grammar", help="grammar YAML for --sequences (default: a cycle over --actions, p=0.8)")
    p.add_argument("--seconds", type=float, default=None,
                   help="length of each video (--sequences: default 30; --people: default 8)")
    p.add_argument("--people", help="instead, videos of several people (a count or a range, e.g. 2..3), each "
                                    "doing actions of their own, with people.csv (video,start,end,label,track) "
                                    "and boxes.csv (video,frame,t,track,x1,y1,x2,y2)")
    p.add_argument("--videos", type=int, default=4, help="number of videos (--people)")

    p = _command(sub, "compose", cmd_compose,
                 help="compose long annotated videos from trimmed clips following a grammar "
                                       "(next-event data from a class-folder dataset)")
    p.add_argument("--clips", required=True, help="class-folder dataset of trimmed clips")
    p.add_argument("--grammar", required=True, help="grammar YAML (actions, transitions, duration)")
    p.add_argument("--out", required=True, help="output folder: videos, annotations.csv, compose.json")
    p.add_argument("--sequences", type=int, default=8, help="number of videos")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each video")
    p.add_argument("--group-by", default="", help="regex on clip file names; its first group (e.g. the actor) "
                                                   "keeps one group per sequence")
    p.add_argument("--groups", help="comma-separated groups to use (default: all, in turn)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the written videos")
    p.add_argument("--size", help="WIDTHxHEIGHT of the written videos, every clip scaled to fit with its aspect "
                                  "kept (default: the size of the folder's largest clip, clips unscaled, whichever "
                                  "--groups are composed)")
    p.add_argument("--seed", type=int, default=0)
    _quiet(p)

    p = _command(sub, "export", cmd_export,
                 help="export a checkpoint to ONNX (backbone + streaming head step + model.json)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", default="onnx", help="onnx (the only format so far)")
    p.add_argument("--out", help="output folder (default: <run>/onnx)")

    p = _command(sub, "demo", cmd_demo, help="synthetic data -> features -> LSTM -> evaluation, end to end")
    p.add_argument("--out", default="runs/demo", help="demo folder (data, cache, run)")
    p.add_argument("--quick", action="store_true", help="fewer clips and epochs (a smoke run)")
    p.add_argument("--cache", help="feature cache folder (default OUT/cache)")
    _quiet(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

    p = _command(sub, "predict", cmd_predict, help="predict many videos into a JSONL or CSV file (resumable)",
                       description="One row per video: top-k, duration, frames, fps, and with --timeline "
                                   "the segments. Rerunning with the same --out skips videos already done.")
    _model_args(p, overrides=False)  # key=value settings come among the sources (both are positional)
    p.add_argument("sources", nargs="+", help="files, folders (recursive), globs, or .txt lists of paths; "
                                              "key=value prediction-time settings may be given among them")
    p.add_argument("--out", required=True, help="preds.jsonl or preds.csv (appended to; resumable)")
    p.add_argument("--no-retry", action="store_true",
                   help="keep the error rows already in --out (by default a rerun tries those videos again)")
    p.add_argument("--strict", action="store_true",
                   help="a video whose decoding fell short (under 90%% of its frames, or decoder errors) is an "
                        "error row instead of a prediction with a warning")
    p.add_argument("--timeline", action="store_true", help="add segments (start, end, label, prob)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--window", type=float, default=2.0, help="timeline window length, seconds")
    p.add_argument("--stride", type=float, default=0.5, help="timeline window step, seconds")
    p.add_argument("--render", help="also write an annotated mp4 per video into this folder")
    p.add_argument("--per-person", action="store_true",
                   help="detect and track people (detector.* settings) and predict each one: one row per track "
                        "(track_id, start, end, label, top-k, segments, sampled boxes)")
    _quiet(p)
    _engine_args(p, "(each loads the checkpoint once; the driver writes --out)")

    p = _command(sub, "stream", cmd_stream, help="live predictions from a webcam, file or stream URL",
                       description="Prints one JSON line per encoded frame (label, top-k, latency); the "
                                   "LSTM state is carried across frames. A file runs as fast as it can.")
    _model_args(p)
    p.add_argument("--source", default="0", help="camera index, video file, or rtsp://... URL")
    p.add_argument("--show", action="store_true", help="draw the predictions in a window")
    p.add_argument("--every", type=int, default=0, help="encode every n-th frame (default: by the model's fps)")
    p.add_argument("--smooth", type=float, default=0.0, help="EMA factor for the probabilities (0 = off)")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = until the end)")
    p.add_argument("--per-person", action="store_true",
                   help="detect and track people; each line lists every person's track_id, box and action")

    p = _command(sub, "backbones", cmd_backbones, help="list the registered backbones")
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command as typed (vap train --nproc runs it again under torchrun)
    # stderr shows warnings (everything with -v); run directories get the INFO log in train.log
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, handlers=[handler],
                        force=True)  # called again in one process (tests, notebooks): the stderr of now
    try:
        return args.fn(args)
    except VapError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
