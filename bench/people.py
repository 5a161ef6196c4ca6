"""Per-person results on synthetic multi-person videos, against the generator's truth, with the defaults.

    python bench/people.py [--videos 8] [--seconds 8] [--out bench/results-people.json]

1. training data: one-actor synthetic clips (`vap synth`, the 6 actions, 12 clips each, seed 0); the model:
   `vap train --data DIR` with the default config (nothing else);
2. test data: `vap synth --people 2..3 --videos N --seed 1` (scenes, figures and action sequences the model
   and the shipped detector never saw; the first two people of each video cross);
3. `vap predict --per-person` (the shipped offline detector, ByteTrack) and the plain single-label
   `vap predict --timeline` on the same videos, timed in this process;
4. scores (training/people_metrics.py): detection recall and precision at IoU 0.5, ID switches per minute,
   per-person top-1 (each true person at each sampled frame: the label of its matched track), and the
   single-label path scored the same way (one label for everybody: what per-person adds); cost per frame as
   a ratio to the single-label path;
5. per_person_trained_on_people: the same scores for a model trained (`vap train --data people.csv`, defaults)
   on the per-person rows of other multi-person scenes (`vap synth --people 2..3 --videos 24 --seed 2`: each
   person's actions with their boxes, data/tracks.py) instead of one-actor clips.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.capabilities import describe  # noqa: E402
from pipeline.data.people import make_people_videos  # noqa: E402
from pipeline.data.synthetic import make_dataset  # noqa: E402
from pipeline.inference.predict import Predictor  # noqa: E402
from pipeline.training.people_metrics import label_at, match_people, read_truth, score_people  # noqa: E402


def single_label_counts(pred, truth_boxes: dict, truth_segs: dict) -> dict:
    """The single-label path scored as per-person: every true person at each sampled step gets the video's
    per-step label (causal) and its segment label."""
    c = dict(truth=0, step_right=0, segment_right=0)
    for i, t in enumerate(pred.step_times):
        seg = next((s.label for s in pred.segments if s.start - 1e-6 <= t < s.end), pred.segments[-1].label)
        step = pred.classes[int(pred.step_probs[i].argmax())]
        for k, (times, _) in truth_boxes.items():
            if np.min(np.abs(times - t)) < 0.05:
                truth = label_at(truth_segs.get(k, []), float(t))
                c["truth"] += 1
                c["step_right"] += step == truth
                c["segment_right"] += seg == truth
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--train-videos", type=int, default=24, help="multi-person training scenes (step 5)")
    ap.add_argument("--work", default=None, help="data, cache and run folder (default: a temporary one)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results-people.json"))
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="prediction-time settings, e.g. "
                                                                      "detector.weights=yolo11n-pose.pt")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="vap-bench-people-"))
    env = dict(os.environ, VAP_CACHE=str(work / "cache"))
    train = make_dataset(work / "single", 12, seed=0)
    run = work / "run"
    if not (run / "best.pt").exists():
        subprocess.run([sys.executable, "-m", "pipeline", "train", "--data", str(train), "--out", str(run), "--quiet"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
    test = make_people_videos(work / "people", videos=a.videos, seconds=a.seconds, seed=1)
    videos = sorted(test.glob("people_*.mp4"))
    truth_boxes, truth_segs = read_truth(test)

    single = Predictor.from_checkpoint(run / "best.pt")
    people = Predictor.from_checkpoint(run / "best.pt", per_person=True, overrides=a.overrides)
    for p in (single, people):  # warm-up: first-call costs (ONNX session, tracker import) out of the timing
        p.predict(videos[0])
    counts, base, t_people, t_single, frames, tracks = [], [], 0.0, 0.0, 0, []
    for v in videos:
        t0 = time.perf_counter()
        pp = people.predict(v)
        t_people += time.perf_counter() - t0
        t0 = time.perf_counter()
        sp = single.predict(v)
        t_single += time.perf_counter() - t0
        frames += pp.frames
        tracks.append(len(pp.people))
        counts.append(match_people(pp, truth_boxes[v.name], truth_segs[v.name]))
        base.append(single_label_counts(sp, truth_boxes[v.name], truth_segs[v.name]))
    minutes = len(videos) * a.seconds / 60
    # 5. the same, with a model trained on per-person rows of other scenes (their people.csv + boxes.csv)
    scenes = make_people_videos(work / "people-train", videos=a.train_videos, seconds=a.seconds, seed=2)
    run_people = work / "run-people"
    if not (run_people / "best.pt").exists():
        subprocess.run([sys.executable, "-m", "pipeline", "train", "--data", str(scenes / "people.csv"), "--out",
                        str(run_people), "--quiet"], cwd=ROOT, env=env, check=True, capture_output=True)
    trained = Predictor.from_checkpoint(run_people / "best.pt", per_person=True, overrides=a.overrides)
    counts_trained = [match_people(trained.predict(v), truth_boxes[v.name], truth_segs[v.name]) for v in videos]
    b = {k: sum(c[k] for c in base) for k in base[0]}
    res = dict(
        command="python bench/people.py " + " ".join(sys.argv[1:]),
        machine=describe(), videos=len(videos), seconds_each=a.seconds,
        people_per_video=[len(truth_boxes[v.name]) for v in videos],
        detector={k: v for k, v in people.cfg.detector.__dict__.items()},
        per_person=score_people(counts, minutes),
        per_person_trained_on_people=dict(score_people(counts_trained, minutes), train_videos=a.train_videos,
                                          train_rows=sum(1 for _ in open(scenes / "people.csv")) - 1),
        single_label=dict(step_top1=round(b["step_right"] / b["truth"], 4),
                          segment_top1=round(b["segment_right"] / b["truth"], 4)),
        seconds_per_frame=dict(per_person=round(t_people / frames, 5), single_label=round(t_single / frames, 5)),
        cost_ratio=round(t_people / t_single, 3),
        tracks_per_video=tracks,
    )
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
