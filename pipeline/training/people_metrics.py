"""Per-person results against ground truth (the files of `vap synth --people`, or your own in the same
columns): detection, tracking and labels, at the sampled frames the prediction saw.

    boxes.csv   video,frame,t,track,x1,y1,x2,y2   every person's box in every frame (t in seconds)
    people.csv  video,start,end,label,track       each person's action segments

At each sampled time the predicted people are matched to the true ones by box overlap (IoU >= 0.5; as in
CLEAR-MOT, a match of the previous step that still overlaps is kept, the rest are paired by the Hungarian
method). Then, over the true person-steps:
    recall       share matched to a predicted track; precision: share of predicted person-steps matched
    id_switches  times a true person's matched track id changes from one matched step to the next (CLEAR-MOT)
    step_top1    share of matched person-steps whose track's causal per-step label is the true action
    segment_top1 the same with the label of the track's segment (windows + smoothing) at that time
    top1         share of all true person-steps labelled right by their segment label (unmatched ones
                 count as wrong)
(label scores count only the person-steps whose true action the model knows, when `labels` is given)
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np


def read_truth(folder: str | Path) -> tuple[dict, dict]:
    """({video: {track: (times (N,), boxes (N,4))}}, {video: {track: [(start, end, label)]}}) from boxes.csv
    and people.csv."""
    folder = Path(folder)
    boxes: dict = defaultdict(lambda: defaultdict(list))
    with open(folder / "boxes.csv", newline="") as f:
        for r in csv.DictReader(f):
            boxes[r["video"]][int(r["track"])].append([float(r["t"])] + [float(r[k]) for k in ("x1", "y1", "x2", "y2")])
    segs: dict = defaultdict(lambda: defaultdict(list))
    with open(folder / "people.csv", newline="") as f:
        for r in csv.DictReader(f):
            segs[r["video"]][int(r["track"])].append((float(r["start"]), float(r["end"]), r["label"]))
    out = {v: {k: (np.array(rows)[:, 0], np.array(rows)[:, 1:]) for k, rows in tr.items()} for v, tr in boxes.items()}
    return out, {v: dict(tr) for v, tr in segs.items()}


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) boxes -> (N, M) intersection over union."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def label_at(segments: list[tuple], t: float) -> str:
    for s, e, lbl in segments:
        if s - 1e-6 <= t < e:
            return lbl
    return segments[-1][2] if segments else ""


def match_people(pred, truth_boxes: dict, truth_segs: dict, min_iou: float = 0.5, labels=None,
                 ids: dict | None = None) -> dict:
    """Counts for one video: pred is a PeoplePrediction (inference/people.py); truth_* one video's entries of
    read_truth; labels: the actions the model knows (the others are left out of the label scores; None: all);
    ids: a dict to fill with {true track: set of the predicted track ids matched to it}.
    Returns the sums that score_people turns into rates."""
    from scipy.optimize import linear_sum_assignment

    c = dict(truth=0, predicted=0, matched=0, id_switches=0, labelled=0, scored=0, step_right=0, segment_right=0)
    last_id: dict[int, int] = {}
    tracks = list(truth_boxes)
    for t in pred.step_times:
        gt = []
        for k in tracks:  # the true box at the frame nearest to t
            times, boxes = truth_boxes[k]
            i = int(np.argmin(np.abs(times - t)))
            if abs(times[i] - t) < 0.05:
                gt.append((k, boxes[i]))
        here = [(p, p.box_index(t)) for p in pred.people]
        here = [(p, i) for p, i in here if i is not None]
        c["truth"] += len(gt)
        c["labelled"] += sum(labels is None or label_at(truth_segs.get(k, []), float(t)) in labels for k, _ in gt)
        c["predicted"] += len(here)
        if not gt or not here:
            continue
        m = iou(np.stack([b for _, b in gt]), np.stack([p.boxes[i] for p, i in here]))
        # CLEAR-MOT: a correspondence of the previous step that still overlaps enough is kept; the Hungarian
        # assignment (on overlap) pairs the rest, so two people who cross are not swapped by the scorer
        pairs, present = [], [p.track_id for p, _ in here]
        for r, (k, _) in enumerate(gt):
            q = present.index(last_id[k]) if last_id.get(k) in present else None
            if q is not None and m[r, q] >= min_iou and q not in {b for _, b in pairs}:
                pairs.append((r, q))
        free_r = [r for r in range(len(gt)) if r not in {a for a, _ in pairs}]
        free_q = [q for q in range(len(here)) if q not in {b for _, b in pairs}]
        if free_r and free_q:
            rr, qq = linear_sum_assignment(-m[np.ix_(free_r, free_q)])
            pairs += [(free_r[a], free_q[b]) for a, b in zip(rr, qq)]
        for r, q in pairs:
            if m[r, q] < min_iou:
                continue
            k, (p, i) = gt[r][0], here[q]
            c["matched"] += 1
            if k in last_id and last_id[k] != p.track_id:
                c["id_switches"] += 1
            last_id[k] = p.track_id
            if ids is not None:
                ids.setdefault(k, set()).add(p.track_id)
            truth = label_at(truth_segs.get(k, []), float(t))
            if labels is not None and truth not in labels:
                continue
            c["scored"] += 1
            c["step_right"] += p.label_at(float(t))[0] == truth
            c["segment_right"] += p.segment_label_at(float(t)) == truth
    return c


def score_people(counts: list[dict], minutes: float) -> dict:
    """Rates over the videos' counts (match_people); minutes: the videos' total length."""
    s = {k: sum(c[k] for c in counts) for k in counts[0]} if counts else {}
    if not s or not s["truth"]:
        return dict(person_steps=0)
    m = max(1, s["scored"])
    return dict(person_steps=s["truth"], recall=round(s["matched"] / s["truth"], 4),
                precision=round(s["matched"] / max(1, s["predicted"]), 4),
                id_switches=s["id_switches"], id_switches_per_min=round(s["id_switches"] / max(minutes, 1e-9), 2),
                step_top1=round(s["step_right"] / m, 4), segment_top1=round(s["segment_right"] / m, 4),
                top1=round(s["segment_right"] / max(1, s["labelled"]), 4))
