"""Synthetic multi-person videos (`vap synth --people`): the ground truth that per-person detection,
tracking and labels are checked against - boxes that hold every painted pixel, segments that tile the
video, people who cross, the same files from the same seed."""
from __future__ import annotations

import csv
import json
from collections import defaultdict

import cv2
import numpy as np
import pytest

from pipeline.data.people import render_people
from pipeline.data.synthetic import background

from conftest import run_vap


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_synth_people_writes_videos_segments_and_boxes(tmp_path):
    code, out, err = run_vap("synth", "--people", "2..3", "--videos", "3", "--seconds", "6", "--out", tmp_path / "p")
    assert code == 0, err
    s = json.loads(out)
    assert s["videos"] == 3 and s["people"] == [2, 3]
    segs, boxes = _rows(tmp_path / "p" / "people.csv"), _rows(tmp_path / "p" / "boxes.csv")
    by_track = defaultdict(list)
    for r in segs:
        by_track[(r["video"], r["track"])].append((float(r["start"]), float(r["end"]), r["label"]))
    for v in range(3):
        name = f"people_{v:03d}.mp4"
        tracks = sorted(t for (vid, t) in by_track if vid == name)
        assert 2 <= len(tracks) <= 3 and tracks == [str(k) for k in range(len(tracks))]
        n = _frames(tmp_path / "p" / name)  # the real decoder's count: 6 s at 25 fps
        assert n == 150
        for t in tracks:
            seg = by_track[(name, t)]
            assert seg[0][0] == 0 and abs(seg[-1][1] - 6.0) < 1e-6  # the segments tile the video
            assert all(abs(a[1] - b[0]) < 1e-6 for a, b in zip(seg, seg[1:]))
            assert all(a[2] != b[2] for a, b in zip(seg, seg[1:]))  # every boundary is a new action
            assert len([r for r in boxes if r["video"] == name and r["track"] == t]) == n
        # the first two walk towards each other first (the crossing)
        assert by_track[(name, "0")][0][2] == "walk_right" and by_track[(name, "1")][0][2] == "walk_left"
    # the same seed writes the same annotations
    code, out, err = run_vap("synth", "--people", "2..3", "--videos", "3", "--seconds", "6", "--out", tmp_path / "q")
    assert (tmp_path / "p" / "people.csv").read_text() == (tmp_path / "q" / "people.csv").read_text()
    assert (tmp_path / "p" / "boxes.csv").read_text() == (tmp_path / "q" / "boxes.csv").read_text()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_hold_every_painted_pixel_and_people_cross(seed):
    frames, people = render_people(np.random.default_rng(seed), people=3, seconds=4.0)
    bg = background(np.random.default_rng(seed), frames.shape[2], frames.shape[1])  # its first draw
    inside = total = 0
    for i in range(0, len(frames), 5):
        painted = (np.abs(frames[i].astype(np.float32) - bg).max(-1) > 45)  # noise is at most 6 grey levels sd
        mask = np.zeros_like(painted)
        for p in people:
            x1, y1, x2, y2 = p.boxes[i]
            mask[int(np.floor(y1)):int(np.ceil(y2)) + 1, int(np.floor(x1)):int(np.ceil(x2)) + 1] = True
        inside += int((painted & mask).sum())
        total += int(painted.sum())
    assert total > 0 and inside / total > 0.995  # every figure's pixels lie in its box
    a, b = np.array(people[0].boxes), np.array(people[1].boxes)
    ca, cb = (a[:, 0] + a[:, 2]) / 2, (b[:, 0] + b[:, 2]) / 2
    assert ca[0] < cb[0] and (ca > cb).any()  # person 0 starts left of person 1 and passes them
    overlap = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    assert (overlap > 0).any()  # their boxes overlap while they pass: a tracker must keep the ids apart


def test_synth_people_says_what_is_wrong_with_the_count(tmp_path):
    for bad in ("two", "3..2", "0..2", "2..9"):
        code, out, err = run_vap("synth", "--people", bad, "--out", tmp_path / "x")
        assert code == 2 and f"--people {bad}" in err, (bad, err)
