"""Gradio web app: thin UI wiring over Predictor and StreamingPredictor (no model logic here).

Tabs: Upload (top-5 bars, timeline plot with segments shaded, annotated H.264 video, JSON/CSV
download), Webcam (live predictions with the LSTM state carried across frames, a reset button,
per-frame latency), Model (checkpoint, classes, backbone, training metrics, confusion matrix;
switch between checkpoints under runs/).
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import csv
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import VapError, VideoError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing is sent anywhere at start
os.environ.setdefault("YOLO_OFFLINE", "True")


@dataclass
class Limits:
    max_upload_mb: float = 200.0     # larger uploads are refused with a message
    max_duration_s: float = 600.0    # longer videos are refused with a message


def find_checkpoints(runs_dir: str | Path = "runs") -> list[Path]:
    """best.pt files under runs_dir, newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return sorted(root.rglob("best.pt"), key=lambda p: p.stat().st_mtime, reverse=True)


class Models:
    """Loaded predictors per checkpoint, shared by all sessions, with the app's prediction-time settings
    (backbone.runtime=..., see models.checkpoint.INFERENCE_KEYS). A Predictor carries one video's
    moving-region tracker while it predicts, so two analyses never share one: each takes a free one
    from the checkpoint's pool (made when none is free: at most as many as run at once)."""

    def __init__(self, overrides=()):
        self._lock = threading.Lock()
        self._free: dict[str, list] = {}
        self.overrides = list(overrides)

    @contextlib.contextmanager
    def predictor(self, ckpt: str, per_person: bool = False):
        from pipeline.inference.predict import Predictor

        key = (ckpt, per_person)
        with self._lock:
            pool = self._free.setdefault(key, [])
            pred = pool.pop() if pool else None
        if pred is None:
            pred = Predictor.from_checkpoint(ckpt, overrides=self.overrides, per_person=per_person)
        try:
            yield pred
        finally:
            with self._lock:
                self._free[key].append(pred)

    def streamer(self, ckpt: str, per_person: bool = False):
        """A new StreamingPredictor (one per webcam session: it holds that session's LSTM state, or with
        per_person one state per tracked person)."""
        from pipeline.inference.predict import StreamingPredictor

        return StreamingPredictor.from_checkpoint(ckpt, every=1, smooth=0.5, overrides=self.overrides,
                                                  per_person=per_person)


def timeline_figure(pred, top: int = 4):
    """Probability of the likeliest classes over time, with the segments shaded. A plain Figure, not
    pyplot's: pyplot keeps every figure it made until closed, which grew the server by ~6 MB per
    analysis (bench/app_memory.py); this one goes when Gradio has drawn it."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    times, probs = pred.window_times + min(2.0, pred.duration) / 2, pred.window_probs  # window centres
    if len(probs) < 3 and len(pred.step_probs) > len(probs):
        times, probs = pred.step_times, pred.step_probs  # shorter than a few windows: the per-step outputs
    if len(probs):
        order = np.argsort(-probs.max(0))[:top]
        colors = {}
        for c in order:
            (line,) = ax.plot(times, probs[:, c], label=pred.classes[c], lw=2, marker="o" if len(times) < 30 else None)
            colors[pred.classes[c]] = line.get_color()
        for s in pred.segments:
            ax.axvspan(s.start, s.end, color=colors.get(s.label, "grey"), alpha=0.12)
            ax.text((s.start + s.end) / 2, 1.02, s.label, ha="center", va="bottom", fontsize=8)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, max(pred.duration, 1e-3))
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    fig.tight_layout()
    return fig


def analyse_video(models: Models, ckpt: str, video: str | None, limits: Limits, workdir: Path,
                  per_person: bool = False):
    """Upload handler. Returns (label dict, figure, annotated video path, summary markdown, files)."""
    import gradio as gr

    from pipeline.data.video import probe
    from pipeline.inference.render import render_video

    if not video:
        raise gr.Error("Choose a video first.")
    name = Path(video).name
    size_mb = os.path.getsize(video) / 1e6
    if size_mb > limits.max_upload_mb:
        raise gr.Error(f"{name}: {size_mb:.0f} MB is larger than the {limits.max_upload_mb:.0f} MB limit.")
    try:
        info = probe(video)
        if info.num_frames <= 0:
            raise VideoError(name, "video has no frames")
        if info.duration > limits.max_duration_s:
            raise gr.Error(f"{name}: {info.duration:.0f} s is longer than the {limits.max_duration_s:.0f} s limit.")
        with models.predictor(ckpt, per_person) as predictor:
            pred = predictor.predict(video)
            box_every = predictor.cfg.detector.box_every
    except VapError as e:  # a user's file or model, never a bug: say what is wrong in the page
        if isinstance(e, VideoError):
            raise gr.Error(f"{name}: {e.problem}. Upload a video file (mp4, avi, mov, webm, ...).") from None
        raise gr.Error(f"{name}: {e}") from None
    out = scratch(workdir)
    annotated = render_video(video, pred, out)
    if per_person:
        return _people_results(pred, name, out, str(annotated), box_every)
    d = pred.to_dict(timeline=True)
    d["path"] = name
    (out / "prediction.json").write_text(json.dumps(d, indent=1))
    with open(out / "segments.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start", "end", "label", "prob"])
        w.writerows([s.start, s.end, s.label, round(s.prob, 4)] for s in pred.segments)
    lines = [f"**{pred.topk[0][0]}** ({pred.topk[0][1]:.2f}) over {pred.duration:.1f} s, "
             f"{pred.frames} frames analysed in {sum(v for k, v in pred.timing.items() if k.endswith('_s')):.1f} s",
             "", "| start | end | action | prob |", "|---|---|---|---|"]
    lines += [f"| {s.start:.1f} | {s.end:.1f} | {s.label} | {s.prob:.2f} |" for s in pred.segments]
    if pred.warning:  # decoding fell short: the prediction rests on part of the video
        lines[1:1] = ["", f"**Warning:** {pred.warning}"]
    nxt = pred.next_event()
    if nxt:  # next-event model: what it expects after the end of the video
        when = f" in about {nxt['in_s']:.1f} s" if "in_s" in nxt else ""
        lines[1:1] = ["", f"Next event: **{nxt['label']}** ({nxt['prob']:.2f}){when}, after {nxt['current']}"]
    fig = timeline_figure(pred)
    label = {lbl: p for lbl, p in pred.topk}
    return label, fig, str(annotated), "\n".join(lines), [str(out / "prediction.json"), str(out / "segments.csv")]


def _people_results(pred, name: str, out: Path, annotated: str, box_every: float):
    """The upload tab's outputs for a PeoplePrediction: each person's label, the timeline of the longest
    track, and the rows of vap predict --per-person (JSON) with a table of segments per person (CSV)."""
    rows = pred.rows(box_every=box_every)
    for r in rows:
        r["path"] = name
    (out / "prediction.json").write_text(json.dumps(rows, indent=1))
    with open(out / "segments.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "start", "end", "label", "prob"])
        w.writerows([p.track_id, s.start, s.end, s.label, round(s.prob, 4)]
                     for p in pred.people for s in p.prediction.segments)
    files = [str(out / "prediction.json"), str(out / "segments.csv")]
    if not pred.people:
        return {}, None, annotated, f"No person tracked in {pred.duration:.1f} s ({pred.frames} frames).", files
    lines = [f"**{len(pred.people)} people** tracked over {pred.duration:.1f} s, {pred.frames} frames analysed in "
             f"{sum(v for k, v in pred.timing.items() if k.endswith('_s')):.1f} s", "",
             "| person | from | to | action | prob | segments |", "|---|---|---|---|---|---|"]
    lines += [f"| #{p.track_id} | {p.start:.1f} | {p.end:.1f} | {p.prediction.topk[0][0]} | "
              f"{p.prediction.topk[0][1]:.2f} | " + ", ".join(f"{s.label} {s.start:.1f}-{s.end:.1f}"
                                                              for s in p.prediction.segments) + " |"
              for p in pred.people]
    longest = max(pred.people, key=lambda p: len(p.times))
    fig = timeline_figure(longest.prediction)
    fig.axes[0].set_xlim(longest.start, max(longest.end, longest.start + 1e-3))  # the track's times, video clock
    fig.axes[0].set_title(f"person #{longest.track_id}", fontsize=9)
    label = {f"#{p.track_id} {p.prediction.topk[0][0]}": p.prediction.topk[0][1] for p in pred.people}
    return label, fig, annotated, "\n".join(lines), files


def stream_frame(models: Models, ckpt: str, frame, state, per_person: bool = False):
    """Webcam handler: one frame in, live top-k out (per person: each person's label, and the frame with
    their boxes); the StreamingPredictor lives in the session state."""
    if frame is None:
        return None, "", state, None
    if state is None or state.get("ckpt") != ckpt or state.get("per_person") != per_person:
        state = dict(ckpt=ckpt, per_person=per_person, sp=models.streamer(ckpt, per_person), t0=time.time())
    r = state["sp"].push(frame, time.time() - state["t0"])
    if per_person:
        from pipeline.inference.render import draw_people

        info = f"{r.latency_ms:.0f} ms per frame, {r.steps} steps, {len(r.people)} people"
        img = draw_people(frame, [(p.track_id, p.box, *p.result.topk[0]) for p in r.people])
        return {f"#{p.track_id} {p.result.topk[0][0]}": p.result.topk[0][1] for p in r.people}, info, state, img
    info = f"{r.latency_ms:.0f} ms per frame, {r.steps} steps"
    if r.next_topk:
        when = f" in ~{r.time_to_end:.1f} s" if r.time_to_end is not None else ""
        info = f"next: {r.next_topk[0][0]} ({r.next_topk[0][1]:.2f}){when}; " + info
    return {lbl: p for lbl, p in r.topk}, info, state, None


def model_card(ckpt: str) -> tuple[str, str | None]:
    """Markdown about the checkpoint, and its confusion-matrix image if the run has one."""
    from pipeline.models.checkpoint import load_checkpoint

    c = load_checkpoint(ckpt)
    m = c.get("metrics", {})
    run = Path(ckpt).parent
    metrics = {}
    if (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text())
    lines = [f"**Checkpoint** `{ckpt}`", "",
             f"**Classes** ({len(c['classes'])}): {', '.join(c['classes'])}", "",
             f"**Backbone** {c['backbone']['name']} (weights: {c['backbone']['weights']}, "
             f"{c['backbone']['input_size']} px) - **head** {c['config']['head']['type']}", "",
             f"**Validation** top-1 {metrics.get('val_top1', m.get('val_top1', float('nan'))):.3f}, "
             f"mean-class {metrics.get('val_mean_class_accuracy', m.get('val_mean_class_accuracy', float('nan'))):.3f}"
             f" (epoch {metrics.get('best_epoch', m.get('epoch', '?'))})"]
    cm = run / "confusion_val.png"
    return "\n".join(lines), (str(cm) if cm.is_file() else None)


KEEP_RESULTS = 8  # result folders kept in the app's temp folder; Gradio has copied older ones long since
CACHE_AGE = 3600.0  # seconds an upload or result is kept (app.py --cache-age)


def scratch(workdir: Path) -> Path:
    """A new folder for one result under the app's temp folder; the oldest beyond KEEP_RESULTS go
    (Gradio copies what a function returns into its own cache before the next requests come)."""
    results = workdir / "results"
    results.mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(dir=results))
    old = sorted((d for d in results.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)[:-KEEP_RESULTS]
    for d in old:
        shutil.rmtree(d, ignore_errors=True)
    return out


def sweep_results(workdir: Path, age: float) -> int:
    """Remove result folders older than `age` seconds (Gradio has long copied them into its cache, whose
    own copies and the uploads delete_cache removes at the same age); the number removed."""
    results = workdir / "results"
    if not results.is_dir():
        return 0
    now, n = time.time(), 0
    for d in results.iterdir():
        try:
            if d.is_dir() and now - d.stat().st_mtime > age:
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        except FileNotFoundError:  # removed meanwhile by scratch() of another request
            pass
    return n


def start_sweeper(workdir: Path, age: float) -> threading.Thread:
    """A daemon thread that runs sweep_results every min(age, 600) s while the app runs, so that an idle
    app's temp folder goes back to its size at start."""
    def loop():
        while True:
            time.sleep(min(age, 600.0))
            sweep_results(workdir, age)
    t = threading.Thread(target=loop, name="vap-sweep-results", daemon=True)
    t.start()
    return t


def served_copy(path: str | None, workdir: Path) -> str | None:
    """A copy of a file the page shows, in the app's own temp folder: the app serves nothing from the
    runs folder itself (it holds checkpoints, configs and logs), which launch() blocks."""
    if path is None:
        return None
    shown = workdir / "shown"  # example clips and model cards: small, few, kept while the app runs
    shown.mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(dir=shown)) / Path(path).name
    shutil.copyfile(path, out)
    return str(out)


def build_app(checkpoint: str, runs_dir: str = "runs", limits: Limits | None = None, examples=(), overrides=(),
              cache_age: float = CACHE_AGE):
    import gradio as gr

    limits = limits or Limits()
    models = Models(overrides)
    workdir = Path(tempfile.mkdtemp(prefix="vap-app-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    start_sweeper(workdir, cache_age)
    choices = sorted({str(checkpoint), *map(str, find_checkpoints(runs_dir))})

    # uploads and the copies of results in Gradio's cache: files older than cache_age go (an hour by
    # default), checked every min(cache_age, 10 min); the app's own result folders follow (start_sweeper)
    with gr.Blocks(title="vap: action recognition",
                   delete_cache=(max(1, int(min(cache_age, 600))), max(1, int(cache_age)))) as demo:
        gr.Markdown("# Action recognition\nPer-frame CNN features + LSTM. Upload a video or use the webcam.")
        ckpt = gr.State(str(checkpoint))
        with gr.Tab("Upload"):
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(label="video", sources=["upload"], elem_id="upload")
                    per_person = gr.Checkbox(False, label="per person (detect and track people; config detector.*)",
                                             elem_id="per_person")
                    run_btn = gr.Button("Analyse", variant="primary")
                    if examples:
                        gr.Examples([[served_copy(str(e), workdir)] for e in examples], inputs=[video_in],
                                    label="example videos")
                with gr.Column():
                    top5 = gr.Label(num_top_classes=5, label="top-5 actions")
                    summary = gr.Markdown()
            timeline = gr.Plot(label="timeline")
            with gr.Row():
                annotated = gr.Video(label="annotated video", autoplay=True, elem_id="annotated")
                files = gr.File(label="download (JSON, CSV)", file_count="multiple")
            run_btn.click(lambda c, v, pp: analyse_video(models, c, v, limits, workdir, pp), [ckpt, video_in, per_person],
                          [top5, timeline, annotated, summary, files], api_name="analyse")
        with gr.Tab("Webcam"):
            cam_state = gr.State(None)
            with gr.Row():
                # the frames as the camera sees them: a mirrored preview also mirrors what the browser sends,
                # which swaps every left/right action (walk_left, swipes) and the people's places
                unmirrored = dict(webcam_options=gr.WebcamOptions(mirror=False)) if hasattr(gr, "WebcamOptions") \
                    else dict(mirror_webcam=False)
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="webcam", **unmirrored)
                with gr.Column():
                    live = gr.Label(num_top_classes=3, label="now")
                    latency = gr.Markdown()
                    cam_people = gr.Checkbox(False, label="per person", elem_id="cam_per_person")
                    people_img = gr.Image(label="people", type="numpy", elem_id="people_frame")
                    reset = gr.Button("Reset (new sequence)")
            cam.stream(lambda c, f, s, pp: stream_frame(models, c, f, s, pp), [ckpt, cam, cam_state, cam_people],
                       [live, latency, cam_state, people_img], stream_every=0.1, concurrency_limit=4,
                       api_name="stream")
            reset.click(lambda: (None, None, "state reset"), None, [cam_state, live, latency], api_name="reset")
        with gr.Tab("Model"):
            pick = gr.Dropdown(choices, value=str(checkpoint), label="checkpoint (runs/**/best.pt)")
            card = gr.Markdown(model_card(str(checkpoint))[0])
            cm = gr.Image(served_copy(model_card(str(checkpoint))[1], workdir), label="validation confusion matrix",
                          type="filepath")

            def switch(path):
                text, img = model_card(path)
                return path, text, served_copy(img, workdir)
            pick.change(switch, pick, [ckpt, card, cm], api_name="switch_model")
    return demo


# What the demo took on the project's 2-core CPU (python bench/first_run.py; docs/benchmarks.md).
DEMO_TIME = "about 40 s on a 2-core CPU"


def ensure_checkpoint(checkpoint: str | None, runs_dir: str = "runs") -> str:
    """The given checkpoint, else the newest under runs/, else train the demo model first."""
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise SystemExit(f"error: {checkpoint}: checkpoint not found")
        return checkpoint
    found = find_checkpoints(runs_dir)
    if found:
        return str(found[0])
    print(f"No checkpoint under runs/: training the demo model on synthetic videos first ({DEMO_TIME})...",
          file=sys.stderr)
    from pipeline.cli import main as vap

    if vap(["demo", "--out", str(Path(runs_dir) / "demo")]) != 0:
        raise SystemExit("error: the demo training failed")
    return str(Path(runs_dir) / "demo" / "run" / "best.pt")


def example_videos(runs_dir: str = "runs", n: int = 4) -> list[Path]:
    """A few synthetic clips to try: the demo's test clips, or freshly generated ones."""
    found = sorted((Path(runs_dir) / "demo" / "data" / "test").glob("*/*_000.mp4"))[:n]
    if found:
        return found
    from pipeline.data.synthetic import ACTIONS, make_dataset

    out = make_dataset(Path(tempfile.mkdtemp(prefix="vap-examples-")), 1, ACTIONS[:n], seed=123)
    return sorted(out.glob("*/*.mp4"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="app.py", description="vap web app (Gradio)")
    ap.add_argument("--checkpoint", help="a best.pt; default: the newest under runs/, or train the demo")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--runs", default="runs", help="folder searched for checkpoints")
    ap.add_argument("--max-upload-mb", type=float, default=200.0)
    ap.add_argument("--max-duration", type=float, default=600.0, help="seconds")
    ap.add_argument("--concurrency", type=int, default=0, help="analyses at once (default: from the CPU count)")
    ap.add_argument("--queue-size", type=int, default=32, help="requests waiting at most; more are refused")
    ap.add_argument("--cache-age", type=float, default=CACHE_AGE,
                    help="seconds uploads and results stay in the temp folder (checked every min(age, 600) s)")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="prediction-time settings, e.g. backbone.runtime=onnxruntime video.decoder=opencv")
    args = ap.parse_args(argv)
    from pipeline.models.checkpoint import inference_overrides

    try:
        inference_overrides(args.overrides)
    except VapError as e:
        ap.error(str(e))
    ckpt = ensure_checkpoint(args.checkpoint, args.runs)
    examples = example_videos(args.runs)
    if args.cache_age <= 0:
        ap.error("--cache-age must be > 0")
    demo = build_app(ckpt, args.runs, Limits(args.max_upload_mb, args.max_duration), examples, args.overrides,
                     args.cache_age)
    import torch

    # the backbone already uses every core; more than a couple of analyses at once only adds memory
    conc = args.concurrency or (4 if torch.cuda.is_available() else max(1, min(2, (os.cpu_count() or 2) // 2)))
    demo.queue(default_concurrency_limit=conc, max_size=args.queue_size)
    print(f"vap app on http://{args.host}:{args.port} with {ckpt}", file=sys.stderr)
    # Serve only what a page shows: outputs and examples are copied into Gradio's cache when shown, so
    # no folder is allowed; the runs folder (checkpoints, configs, logs, splits) and the feature cache
    # are blocked outright, even where they lie inside the working directory or the temp dir.
    from pipeline.config import load_config

    blocked = [str(Path(args.runs).resolve()), str(Path(load_config(None, []).cache.dir).expanduser().resolve())]
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=f"{int(args.max_upload_mb)}mb",
                show_error=True, allowed_paths=[], blocked_paths=blocked, ssr_mode=False)
