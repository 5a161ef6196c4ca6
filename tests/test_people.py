"""Synthetic multi-person videos (`vap synth --people`): the ground truth that per-person detection,
tracking and labels are checked against - boxes that hold every painted pixel, segments that tile the
video, people who cross, the same files from the same seed."""
from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections import defaultdict

import cv2
import numpy as np
import pytest

from pipeline.data.people import render_people
from pipeline.data.synthetic import background

from conftest import UT1, run_vap


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


# ----------------------------------------------------------------------------- per-person prediction
# The shipped offline detector (models/weights/people-pose.pt, trained on synthetic figures of other seeds)
# and Ultralytics' ByteTrack, through the real decoder, views, backbone and LSTM of the tiny model; the
# videos: conftest.people_videos.


def _person_rows(path):
    return [json.loads(line) for line in open(path)]


def test_per_person_tracks_each_person_through_the_crossing(people_videos, tiny_ckpt):
    from pipeline.inference.predict import Predictor
    from pipeline.training.people_metrics import match_people, read_truth, score_people

    truth_boxes, truth_segs = read_truth(people_videos)
    pred = Predictor.from_checkpoint(tiny_ckpt, per_person=True)
    counts, crossing = [], []
    for v in sorted(people_videos.glob("people_*.mp4")):
        pp = pred.predict(v)
        assert pp.people and pp.size == (320, 180)
        for p in pp.people:  # boxes in the video's own pixels, steps in order
            assert np.all(p.boxes[:, :2] >= -1) and np.all(p.boxes[:, 2] <= 321) and np.all(np.diff(p.times) > 0)
            assert p.prediction.step_probs.shape == (len(p.times), 4)
        counts.append(match_people(pp, truth_boxes[v.name], truth_segs[v.name]))
        # the first two people walk towards each other and pass: up to the end of that walk
        t_cross = truth_segs[v.name][0][0][1]
        cut = dataclasses.replace(pp, step_times=pp.step_times[pp.step_times <= t_cross])
        ids: dict = {}
        c = match_people(cut, {k: truth_boxes[v.name][k] for k in (0, 1)}, truth_segs[v.name], ids=ids)
        crossing.append((c, ids))
    s = score_people(counts, minutes=2 * 6.0 / 60)
    assert s["recall"] >= 0.85 and s["precision"] >= 0.9, s
    assert s["id_switches"] <= 16, s  # measured 14 before detector.relink: a person hidden behind another came
    # back under a new id
    # through the crossing both people are found most of the way, each under at most three ids. Not yet reached:
    # one id per person - when one stick figure fully hides the other, the tracker (no appearance model) may
    # give the two ids back swapped or start a new one (measured: 2-3 id changes per crossing; docs/people.md)
    for c, ids in crossing:
        assert c["matched"] >= 0.75 * c["truth"] and c["id_switches"] <= 3, crossing
        assert 1 <= len(ids[0]) <= 3 and 1 <= len(ids[1]) <= 3, crossing


def test_relink_gives_people_their_ids_back_after_a_crossing(people_videos):
    """detector.relink: a person the tracker lost in a crossing and found again as a new track takes back their
    id - as many ids as people here (without it, the 3-person video gets a 4th), never one id twice in a frame."""
    from pipeline.config import load_config
    from pipeline.data.video import iter_frames
    from pipeline.models.detector import PersonTracker
    from pipeline.training.people_metrics import read_truth

    truth = read_truth(people_videos)[0]
    found = {}
    for relink in (0, 30):
        tracker = PersonTracker(load_config(None, [f"detector.relink={relink}"]).detector)
        for v in sorted(people_videos.glob("people_*.mp4")):
            tracker.reset()
            ids = set()
            for frames, _ in iter_frames(v, fps=8):
                for f in frames:
                    here = [p.track_id for p in tracker.update(f)]
                    assert len(here) == len(set(here))
                    ids |= set(here)
            found[relink, v.name] = ids
    names = sorted(v.name for v in people_videos.glob("people_*.mp4"))
    assert all(len(found[30, n]) <= len(truth[n]) + 1 for n in names), found  # measured: exactly len(truth[n])
    assert sum(len(found[30, n]) for n in names) < sum(len(found[0, n]) for n in names), found


def test_vap_predict_per_person_rows_resume_and_csv(people_videos, tiny_ckpt, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    out = tmp_path / "rows.jsonl"
    args = ["predict", "--checkpoint", tiny_ckpt, "--per-person", "--timeline", "--quiet", "--out", out,
            people_videos, bad]
    code, stdout, err = run_vap(*args)
    assert code == 1, err  # the broken file failed; the others were predicted
    rows = _person_rows(out)
    by_video = defaultdict(list)
    for r in rows:
        by_video[r["path"]].append(r)
    assert [r["error"] for r in by_video[str(bad)]] and "broken.mp4" in by_video[str(bad)][0]["error"]
    videos = sorted(str(p) for p in people_videos.glob("people_*.mp4"))
    for v in videos:
        rs = by_video[v]
        assert len(rs) == rs[0]["tracks"] >= 2 and len({r["track_id"] for r in rs}) == len(rs)
        for r in rs:
            assert 0 <= r["start"] < r["end"] <= 6.0 and r["steps"] >= 5
            assert r["label"] == r["topk"][0]["label"] and len(r["topk"]) == 4
            assert r["segments"] and r["segments"][0]["start"] >= r["start"] - 1e-6
            assert r["boxes"][0]["t"] == r["start"] and all(len(b["box"]) == 4 for b in r["boxes"])
            gaps = np.diff([b["t"] for b in r["boxes"]])
            assert np.all(gaps > 0) and np.all(gaps[:-1] >= 0.5 - 1e-6)  # sampled every detector.box_every s
    # rerun: nothing to do (the broken file's error row kept: --no-retry)
    args.insert(1, "--no-retry")
    code, stdout, _ = run_vap(*args)
    assert json.loads(stdout)["skipped"] == 3 and json.loads(stdout)["done"] == 0
    # a kill that left a video's rows short: that video (only) is predicted again, the file stays readable
    lines = out.read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if json.loads(line)["path"] == videos[0])
    out.write_text("".join(lines[:last] + lines[last + 1:]))
    code, stdout, _ = run_vap(*args[:-1])
    s = json.loads(stdout)
    assert s["done"] == 1 and s["skipped"] == 1, s
    from pipeline.inference.batch import read_done

    assert all(len(r["_track_ids"]) == int(r["tracks"]) for r in read_done(out).values() if not r.get("error"))
    # CSV: one line per track, its boxes as JSON
    code, _, err = run_vap("predict", "--checkpoint", tiny_ckpt, "--per-person", "--quiet", "--out",
                           tmp_path / "rows.csv", people_videos)
    assert code == 0, err
    csv_rows = _rows(tmp_path / "rows.csv")
    assert len(csv_rows) == sum(len(by_video[v]) for v in videos)
    assert {"track_id", "tracks", "start", "end", "boxes", "top1_label"} <= set(csv_rows[0])
    assert all(json.loads(r["boxes"]) for r in csv_rows)


def test_streaming_per_person_equals_offline_and_drops_ended_tracks(people_videos, tiny_ckpt):
    from pipeline.data.video import iter_frames
    from pipeline.inference.predict import Predictor, StreamingPredictor

    video = sorted(people_videos.glob("people_*.mp4"))[0]
    offline = {p.track_id: p for p in Predictor.from_checkpoint(tiny_ckpt, per_person=True).predict(video).people}
    sp = StreamingPredictor.from_checkpoint(tiny_ckpt, per_person=True)
    steps = defaultdict(list)
    last = None
    for frames, ts in iter_frames(video, sampling="all"):
        for f, t in zip(frames, ts):
            r = sp.push(f, t)
            if r.encoded:
                for p in r.people:
                    steps[p.track_id].append(p.result.probs)
            last = f
    assert offline
    for tid, p in offline.items():  # each person's own LSTM state: the same per-step outputs as offline
        np.testing.assert_allclose(np.stack(steps[tid]), p.prediction.step_probs, atol=2e-4)
    assert sp.streams.state  # people still in view hold their state
    empty = np.full_like(last, 128)
    t = float(ts[-1])
    for i in range(40):  # nobody for 40 steps > the tracker's track_buffer (30): every track ends, every state goes
        r = sp.push(empty, t + 0.1 * (i + 1))
    assert r.people == [] and not sp.streams.state and not sp.people.renderers


def test_per_person_refuses_whole_frame_models_and_missing_weights(tiny_ckpt, people_videos, tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.inference.predict import Predictor
    from pipeline.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tiny_ckpt)
    ckpt = dict(ckpt, config=dict(ckpt["config"], views=dict(ckpt["config"]["views"], streams=["frame"])))
    with pytest.raises(ConfigError, match="per-person prediction needs"):
        Predictor(ckpt, per_person=True)
    code, _, err = run_vap("predict", "--checkpoint", tiny_ckpt, "--per-person", "--out", tmp_path / "r.jsonl",
                           people_videos, "detector.weights=/nowhere/people.pt")
    assert code == 2 and "detector.weights: /nowhere/people.pt: no such file" in err and "Traceback" not in err


def test_pose_features_are_box_relative_and_mirror():
    from pipeline.data.synthetic import figure_keypoints, pose
    from pipeline.data.views import mirror_pose, pose_features

    kp = figure_keypoints(100, 150, 80, pose("wave", 0.3, 1.0, 0.0))  # right arm (image right: its left) up
    k3 = np.concatenate([kp, np.ones((17, 1))], 1)
    box = (kp[:, 0].min(), kp[:, 1].min(), kp[:, 0].max(), kp[:, 1].max())
    f = pose_features(k3, box, 64, (180, 320))
    xy = f[:51].reshape(17, 3)[:, :2]
    assert f.shape == (64,) and np.all(f[55:] == 0) and np.all(np.abs(xy) <= 0.5 + 1e-6)
    np.testing.assert_allclose(f[51:55], [(box[0] + box[2]) / 640, (box[1] + box[3]) / 360,
                                          (box[2] - box[0]) / 320, (box[3] - box[1]) / 180], atol=1e-5)
    shifted = pose_features(k3 + [40, -10, 0], np.add(box, [40, -10, 40, -10]), 64, (180, 320))
    np.testing.assert_allclose(f[:51], shifted[:51], atol=1e-5)  # where the person stands: only in the box part
    assert shifted[51] > f[51]
    m = mirror_pose(f[None])[0].reshape(-1)[:51].reshape(17, 3)
    k = f[:51].reshape(17, 3)
    np.testing.assert_allclose(m[9], k[10] * [-1, 1, 1], atol=1e-6)  # left wrist <- the right one, x mirrored
    np.testing.assert_allclose(mirror_pose(mirror_pose(f[None]))[0], f, atol=1e-6)
    assert abs(mirror_pose(f[None])[0, 51] - (1 - f[51])) < 1e-6
    assert k[9, 1] < k[5, 1]  # the waving (left) wrist is above the shoulder
    assert not pose_features(None, None, 64).any()


def test_pose_of_two_people_keeps_who_stands_where_and_mirrors():
    from pipeline.data.synthetic import figure_keypoints, pose
    from pipeline.data.views import POSE_DIM, mirror_pose, pair_pose_features, pose_features
    from pipeline.models.detector import Person

    def person(x, act, size=80):
        kp = figure_keypoints(x, 150, size, pose(act, 0.3, 1.0, 0.0))
        box = np.array([kp[:, 0].min(), kp[:, 1].min(), kp[:, 0].max(), kp[:, 1].max()], np.float32)
        return Person(0, box, 1.0, np.concatenate([kp, np.ones((17, 1))], 1))

    left, right, far = person(80, "wave"), person(220, "squat"), person(300, "jump", 30)
    hw = (180, 320)
    f = pair_pose_features([right, far, left], 256, hw, slots=2)  # the smallest of three is left out
    np.testing.assert_allclose(f[:POSE_DIM], pose_features(left.keypoints, left.box, POSE_DIM, hw), atol=1e-6)
    np.testing.assert_allclose(f[POSE_DIM:2 * POSE_DIM], pose_features(right.keypoints, right.box, POSE_DIM, hw),
                               atol=1e-6)
    assert not f[2 * POSE_DIM:].any()
    lone = pair_pose_features([right], 256, hw, slots=2)  # a lone person takes the first slot, wherever they stand
    np.testing.assert_allclose(lone[:POSE_DIM], f[POSE_DIM:2 * POSE_DIM], atol=1e-6)
    assert not lone[POSE_DIM:].any()
    np.testing.assert_allclose(pair_pose_features([far, right], 256, hw, slots=1)[:POSE_DIM],
                               f[POSE_DIM:2 * POSE_DIM], atol=1e-6)  # one slot: the largest person

    m = mirror_pose(f[None], slots=2)[0]
    # mirrored, the right person stands on the left: the first slot holds them, mirrored as one person is
    np.testing.assert_allclose(m[:POSE_DIM], mirror_pose(f[None, POSE_DIM:2 * POSE_DIM])[0], atol=1e-6)
    np.testing.assert_allclose(m[POSE_DIM:2 * POSE_DIM], mirror_pose(f[None, :POSE_DIM])[0], atol=1e-6)
    assert m[51] < m[POSE_DIM + 51]  # still ordered left to right
    np.testing.assert_allclose(mirror_pose(m[None], slots=2)[0], f, atol=1e-6)
    ml = mirror_pose(lone[None], slots=2)[0]  # a lone person stays in the first slot
    np.testing.assert_allclose(ml[:POSE_DIM], mirror_pose(lone[None, :POSE_DIM])[0], atol=1e-6)
    assert not ml[POSE_DIM:].any()


# scripts/install.sh installs MediaPipe where its wheels exist (Python <= 3.12; CI runs 3.11)
needs_mediapipe = pytest.mark.skipif(sys.version_info >= (3, 13), reason="mediapipe 0.10.21 has no wheel for this "
                                     "Python: scripts/install.sh leaves it out")


@needs_mediapipe
@pytest.mark.skipif(not UT1.is_dir(), reason=f"{UT1} not present: real-data test skipped")
def test_mediapipe_finds_both_people_of_a_real_interaction():
    """detector.weights=mediapipe on real video: both people of a UT-Interaction punch, side by side, frame by
    frame, through the decoder's frames as the pose stream gets them (no download: the models are in the wheel)."""
    from pipeline.config import DetectorConfig, ViewsConfig
    from pipeline.data.video import iter_frames
    from pipeline.models.detector import pose_tracker

    frames = np.concatenate([f for f, _ in iter_frames(str(UT1 / "punch" / "0_1_4.avi"), fps=10, max_side=320)])
    poses = pose_tracker(ViewsConfig(streams=["crop", "pose"], pose_people=2), DetectorConfig(weights="mediapipe"))
    found = [poses.update(f) for f in frames]
    two = [p for p in found if len(p) == 2]
    assert len(two) >= 0.7 * len(frames), [len(p) for p in found]
    H = frames.shape[1]
    for a, b in two:
        (left, right) = sorted([a, b], key=lambda p: p.box[0])
        assert left.box[2] <= right.box[0] + 0.1 * (right.box[2] - right.box[0])  # side by side, not one twice
        assert left.keypoints.shape == (17, 3)
    heights = [p.box[3] - p.box[1] for pair in two for p in pair]
    assert np.median(heights) > 0.4 * H  # whole people, not a hand or a head
    poses.reset()
    assert len(poses.update(frames[0])) >= 1  # a fresh video starts again


@needs_mediapipe
@pytest.mark.skipif(not UT1.is_dir(), reason=f"{UT1} not present: real-data test skipped")
def test_people_region_keeps_both_people_in_the_crop_whoever_moves():
    """views.region=people: the crop frames both people of a real interaction in every frame; the region that
    moves (the default) frames the one who moves - here the puncher alone, or his head, for a while."""
    from pipeline.config import DetectorConfig, ViewsConfig
    from pipeline.data.video import iter_frames
    from pipeline.data.views import ViewRenderer, stream_id, union_box
    from pipeline.errors import ConfigError
    from pipeline.models.detector import PersonTracker, detector_id, pose_tracker

    frames = np.concatenate([f for f, _ in iter_frames(str(UT1 / "punch" / "12_3_4.avi"), fps=10, max_side=320)])
    det = DetectorConfig(weights="mediapipe")
    people = pose_tracker(ViewsConfig(region="people"), det)
    unions = [union_box(people.update(f)) for f in frames]
    assert sum(u is not None for u in unions) >= 0.9 * len(frames)

    def covered(region: str) -> float:
        """share of the frames whose crop square holds the people's union (a 10 % slack on each side)"""
        r, held, n = ViewRenderer(["crop"], ViewsConfig(region=region), 224), 0, 0
        for f, u in zip(frames, unions):
            r.render(f[None], [u] if region == "people" else None)
            if u is None:
                continue
            box = r.person.box if region == "people" else r.tracker.box
            n += 1
            if box is None:  # nothing moved yet: the whole frame
                held += 1
                continue
            cx, _, side = box
            slack = 0.1 * (u[2] - u[0])
            held += (cx - side / 2 <= u[0] + slack and u[2] - slack <= cx + side / 2)
        return held / n

    assert covered("people") >= 0.95
    assert covered("motion") <= 0.8  # what the people region is for
    did = detector_id(det, ViewsConfig(region="people"))
    assert stream_id("crop", ViewsConfig(region="people"), did) != stream_id("crop", ViewsConfig(), did)
    one = ViewsConfig(streams=["crop", "pose"])  # the largest person's keypoints: one pass, not two
    assert pose_tracker(one, det).people == 1 and detector_id(det, one) != did
    assert max(len(pose_tracker(one, det).update(f)) for f in frames[::8]) == 1
    with pytest.raises(ConfigError, match="not people with ids"):
        PersonTracker(det)  # per-person results need ids that last


def test_mediapipe_missing_is_a_config_error_that_says_how_to_install(monkeypatch, tmp_path):
    from pipeline.config import DetectorConfig, ViewsConfig
    from pipeline.errors import ConfigError
    from pipeline.models.detector import pose_tracker

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe -> ImportError
    with pytest.raises(ConfigError, match=r"pip install --no-deps mediapipe==0\.10\.21"):
        pose_tracker(ViewsConfig(region="people"), DetectorConfig(weights="mediapipe"))
    assert pose_tracker(ViewsConfig(), DetectorConfig(weights="mediapipe")) is None  # nothing reads people


# ----------------------------------------------------------------------------- the pose stream

@pytest.mark.slow
def test_pose_stream_trains_and_predicts_through_the_cli(synth_data, people_videos, tmp_path):
    from conftest import TINY

    cache = tmp_path / "cache"
    run = tmp_path / "pose"
    # keypoints alone: 55 numbers a step, learnt by the small head in 60 epochs (on cached features: seconds)
    code, out, err = run_vap("train", "--data", synth_data, "--out", run, "--cache", cache, "--quiet", *TINY,
                             "views.streams=[pose]", "train.epochs=60", "train.lr=0.003", "train.patience=0",
                             "data.val_fraction=0.25")
    assert code == 0, err
    m = json.loads((run / "metrics.json").read_text())
    assert m["val_top1"] >= 0.75, m  # keypoints alone tell wave, squat, jump and walk apart (chance 0.25)
    code, out, err = run_vap("extract", "--data", synth_data, "--cache", cache, "--quiet", *TINY, "views.streams=[pose]")
    assert code == 0 and json.loads(out)["extracted"] == 0 and json.loads(out)["reused"] == 48, out + err
    # the pose stream beside the crop, predicted per person and for the whole video
    run2 = tmp_path / "crop_pose"
    code, _, err = run_vap("train", "--data", synth_data, "--out", run2, "--cache", cache, "--quiet", *TINY,
                           "views.streams=[crop,pose]", "train.epochs=2")
    assert code == 0, err
    for extra in ([], ["--per-person"]):
        out_rows = tmp_path / f"rows{len(extra)}.jsonl"
        code, _, err = run_vap("predict", "--checkpoint", run2 / "best.pt", *extra, "--quiet", "--out", out_rows,
                               people_videos)
        assert code == 0, err
        rows = _person_rows(out_rows)
        assert rows and all(r.get("label") for r in rows) and not any(r.get("error") for r in rows)
        assert bool(extra) == all("track_id" in r for r in rows)


@pytest.mark.slow
def test_per_person_labels_with_a_real_model(trained_ckpt, people_videos):
    """A real model (EfficientNet-Lite0 + LSTM trained on one-actor clips of 4 actions) per person on videos of
    2-3 people doing different things, scored on the actions it knows: each person is found and their own
    segment label is right most of the time (measured with five heads, train.seed 0-4: by segment 0.82 for
    each, by step 0.71-0.77; bench/people.py compares it with one label for everybody on 8 videos and 6
    actions: 0.46 against 0.36)."""
    from pipeline.inference.predict import Predictor
    from pipeline.training.people_metrics import match_people, read_truth, score_people

    truth_boxes, truth_segs = read_truth(people_videos)
    people = Predictor.from_checkpoint(trained_ckpt, per_person=True)
    counts = [match_people(people.predict(v), truth_boxes[v.name], truth_segs[v.name], labels=set(people.classes))
              for v in sorted(people_videos.glob("people_*.mp4"))]
    s = score_people(counts, minutes=2 * 6.0 / 60)
    assert s["recall"] >= 0.8 and s["segment_top1"] >= 0.6 and s["step_top1"] >= 0.5, s



def test_vap_stream_per_person_prints_every_person(people_videos, tiny_ckpt):
    video = sorted(people_videos.glob("people_*.mp4"))[0]
    code, out, err = run_vap("stream", "--checkpoint", tiny_ckpt, "--source", video, "--per-person")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 48  # 6 s at the model's 8 fps
    ids = {p["track_id"] for line in lines for p in line["people"]}
    assert 2 <= len(ids) <= 6 and max(len(line["people"]) for line in lines) >= 2
    assert all(len(p["box"]) == 4 and p["label"] in {"jump", "squat", "walk_right", "wave"}
               for line in lines for p in line["people"])
