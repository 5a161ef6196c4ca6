"""Unit tests of the small pure pieces: metrics, the timeline (windows, smoothing, segments), the
streaming rate limiter, prefetching and atomic writes. Hand-computed expectations, no models."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from pipeline.data.video import RateLimiter, prefetch, sample_indices
from pipeline.inference.results import make_segments, smooth_probs, softmax, topk_of, window_starts, window_steps
from pipeline.io import atomic_path, atomic_write_csv, atomic_write_text
from pipeline.training.metrics import (
    anticipation_points,
    classification_report,
    confusion_matrix,
    next_event_report,
    topk_accuracy,
)

# ----------------------------------------------------------------------------- metrics


def test_topk_accuracy_by_hand():
    logits = np.array([[3, 2, 1], [1, 3, 2], [1, 2, 3], [3, 1, 2]], float)
    targets = np.array([0, 2, 0, 1])
    assert topk_accuracy(logits, targets, 1) == 0.25   # only row 0
    assert topk_accuracy(logits, targets, 2) == 0.5    # + row 1 (2 is second)
    assert topk_accuracy(logits, targets, 5) == 1.0    # k above C: every row
    assert np.isnan(topk_accuracy(np.zeros((0, 3)), np.zeros(0, int), 1))


def test_confusion_rows_are_true_classes_columns_predictions():
    cm = confusion_matrix(np.array([1, 1, 0]), np.array([0, 1, 0]), 2)
    assert cm.tolist() == [[1, 1], [0, 1]]  # true 0 predicted 1 once: row 0, column 1
    rep = classification_report(np.array([[0, 1], [0, 1], [1, 0]], float), np.array([0, 1, 0]), ["a", "b"])
    assert rep["confusion_matrix"] == [[1, 1], [0, 1]]
    assert rep["per_class_accuracy"] == {"a": 0.5, "b": 1.0} and rep["per_class_support"] == {"a": 2, "b": 1}
    assert rep["top1"] == pytest.approx(2 / 3) and rep["mean_class_accuracy"] == pytest.approx(0.75)


def test_anticipation_points_take_the_last_step_before_start_minus_tau():
    times = np.arange(0, 5, 0.5)  # steps every 0.5 s
    idx, labels = anticipation_points(times, [(0.4, 1), (2.0, 2), (3.2, 0)], 1.0)
    # 0.4 - 1 < first step: skipped; 2.0 - 1 = 1.0 -> step 2 (t=1.0); 3.2 - 1 = 2.2 -> step 4 (t=2.0)
    assert idx == [2, 4] and labels == [2, 0]


def test_next_event_report_scores_only_defined_steps():
    C = 2
    cur_logits = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)
    next_logits = np.array([[0, 1], [1, 0], [0, 1], [0, 1]], float)
    seq = dict(times=np.arange(4.0), cur_logits=cur_logits, next_logits=next_logits, cur=np.array([0, 0, 1, -1]),
               nxt=np.array([1, 1, -1, -1]), boundaries=[(2.0, 1)])
    rep = next_event_report([seq], ["a", "b"], taus=(1.0,))
    assert rep["current_top1"] == 1.0 and rep["num_steps"] == 4       # 3 defined steps, all right
    assert rep["next_top1"] == 0.5 and rep["next_steps"] == 2          # step 0 right, step 1 wrong
    assert rep["anticipation"]["1s"]["top1"] == 0.0                    # step 1 (t=1.0) predicts a, truth b
    assert np.array(rep["current_confusion_matrix"]).sum() == 3 and len(rep["classes"]) == C

# ----------------------------------------------------------------------------- timeline


def test_window_starts_and_steps():
    assert np.allclose(window_starts(5.0, 2.0, 1.0), [0, 1, 2, 3])
    assert np.allclose(window_starts(1.0, 2.0, 0.5), [0])  # shorter than one window: one window
    ts = np.arange(0, 3, 0.5)  # 0, 0.5, ..., 2.5
    lo, hi = window_steps(ts, np.array([0.0, 1.0, 5.0]), 1.0)
    assert lo.tolist() == [0, 2, 6] and hi.tolist() == [2, 4, 6]  # [0,1): steps 0-1; [1,2): 2-3; past the end: empty


def test_smoothing_is_a_centred_moving_average_with_edges_held():
    p = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], float)
    assert np.array_equal(smooth_probs(p, 1), p)
    s = smooth_probs(p, 3)
    assert np.allclose(s[1], [2 / 3, 1 / 3]) and np.allclose(s[0], [2 / 3, 1 / 3])  # edge: first row repeated
    assert s.shape == p.shape


def test_segments_merge_runs_and_absorb_short_ones():
    classes = ["a", "b"]
    times = np.arange(10) * 1.0  # windows of 1 s every 1 s over 10 s
    probs = np.array([[0.9, 0.1]] * 4 + [[0.1, 0.9]] + [[0.9, 0.1]] * 5)  # a single 'b' window in a run of 'a'
    segs = make_segments(times, probs, classes, 1.0, 1.0, 10.0, smooth=1, min_duration=1.5)
    assert [(s.label, s.start, s.end) for s in segs] == [("a", 0.0, 10.0)]  # the 1 s blip is absorbed
    segs = make_segments(times, probs, classes, 1.0, 1.0, 10.0, smooth=1, min_duration=0.5)
    assert [s.label for s in segs] == ["a", "b", "a"] and segs[1].start == 4.0 and segs[1].end == 5.0
    assert segs[1].prob == pytest.approx(0.9)
    assert make_segments(np.zeros(0), np.zeros((0, 2)), classes, 1.0, 1.0, 1.0) == []


def test_softmax_and_topk():
    p = softmax(np.array([[0.0, np.log(3.0)]]))
    assert np.allclose(p, [[0.25, 0.75]])
    assert topk_of(np.array([0.2, 0.5, 0.3]), ["x", "y", "z"], 2) == [("y", 0.5), ("z", 0.3)]

# ----------------------------------------------------------------------------- streaming rate limit


def test_rate_limiter_picks_the_frames_offline_sampling_picks():
    fps_in, fps_out, n = 25.0, 10.0, 100
    rl = RateLimiter(fps_out)
    taken = [i for i in range(n) if rl.take(i / fps_in)]
    assert taken == list(sample_indices(n, fps_in, "fps", fps_out))


def test_rate_limiter_every_nth_and_all():
    rl = RateLimiter(every=3)
    assert [rl.take(i / 30) for i in range(7)] == [True, False, False, True, False, False, True]
    rl = RateLimiter()
    assert all(rl.take(i / 30) for i in range(5))

# ----------------------------------------------------------------------------- prefetch


def test_prefetch_keeps_order_and_raises_the_producers_error():
    assert list(prefetch(iter(range(10)), depth=2)) == list(range(10))

    def broken():
        yield 1
        raise ValueError("bad chunk")

    got = []
    with pytest.raises(ValueError, match="bad chunk"):
        for x in prefetch(broken()):
            got.append(x)
    assert got == [1]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = set(threading.enumerate())
    gen = prefetch(endless(), depth=2)
    assert next(gen) == 0
    (worker,) = set(threading.enumerate()) - before  # the prefetch thread
    gen.close()  # the consumer gives up
    worker.join(timeout=5)
    n = len(produced)
    time.sleep(0.3)
    assert not worker.is_alive() and len(produced) == n <= 5  # stopped, a few items ahead at most

# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    p = tmp_path / "out" / "a.csv"
    atomic_write_csv(p, ["x", "y"], [[1, 2], [3, 4]])
    assert p.read_text() == "x,y\n1,2\n3,4\n"

    def rows():
        yield [5, 6]
        raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError):
        atomic_write_csv(p, ["x", "y"], rows())
    assert p.read_text() == "x,y\n1,2\n3,4\n"  # the old file, untouched
    assert os.listdir(p.parent) == ["a.csv"]  # no temporary left behind
    atomic_write_text(p, "new")
    assert p.read_text() == "new"


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "v.mp4"
    with atomic_path(target) as tmp:
        assert tmp != str(target) and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "wb").write(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "w.mp4") as tmp:
            open(tmp, "wb").write(b"part")
            raise OSError("encoder died")
    assert sorted(os.listdir(tmp_path)) == ["v.mp4"]
