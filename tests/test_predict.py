import gc
import tracemalloc

import numpy as np
import pytest

from pipeline.data.video import load_frames
from pipeline.inference.predict import Predictor, StreamingPredictor, make_segments

from conftest import long_video


@pytest.mark.slow
def test_segments_recover_order_and_boundaries_of_a_long_video(tmp_path, trained_ckpt):
    """Concatenate three clips of known classes (from the model's training split: the point here is
    the timeline and the segment logic on a real decoded long video, not accuracy on new clips)."""
    import csv

    from conftest import write_video

    rows = list(csv.DictReader(open(trained_ckpt.parent / "split.csv")))
    pick = {lbl: [r["path"] for r in rows if r["split"] == "train" and r["label"] == lbl] for lbl in ("jump", "squat")}
    def part(paths):  # two clips of one class back to back: a 4-6 s stretch of that action
        return np.concatenate([load_frames(p, sampling="all")[0] for p in paths])
    parts = [part(pick["jump"][:2]), part(pick["squat"][:2]), part(pick["jump"][2:4])]
    video = write_video(tmp_path / "long.mp4", np.concatenate(parts), fps=25.0)
    cuts = np.cumsum([len(p) / 25.0 for p in parts])
    pred = Predictor.from_checkpoint(trained_ckpt, window=2.0, stride=0.5).predict(video)
    labels = [s.label for s in pred.segments]
    assert labels == ["jump", "squat", "jump"], pred.segments
    assert pred.segments[0].start == 0 and abs(pred.segments[-1].end - cuts[-1]) < 0.1
    for seg, true_end in zip(pred.segments[:-1], cuts[:2]):
        assert abs(seg.end - true_end) <= 2.0, (seg, true_end)  # within one window
    # each sampled frame is encoded once, however many windows overlap it
    n = sum(len(p) for p in parts)
    assert pred.timing["frames_encoded"] == pred.frames == len(pred.step_times) == len(np.arange(0, n / 25, 1 / 8))
    W = len(pred.window_times)
    assert W == int((cuts[-1] - 2.0) // 0.5) + 1 and pred.window_probs.shape == (W, 4)
    assert np.allclose(pred.window_probs.sum(1), 1, atol=1e-4)
    d = pred.to_dict()
    assert d["label"] == d["topk"][0]["label"] and d["duration"] == round(cuts[-1], 3) and len(d["segments"]) == 3


def test_timeline_encodes_each_frame_once_and_covers_the_video(tmp_path, tiny_ckpt):
    video = long_video(tmp_path / "t.mp4", ["jump", "squat", "wave"], seconds=2.0)  # 6 s at 25 fps
    pred = Predictor.from_checkpoint(tiny_ckpt, window=2.0, stride=0.5).predict(video)
    assert pred.timing["frames_encoded"] == pred.frames == len(pred.step_times) == 48  # 6 s at the model's 8 fps
    assert len(pred.window_times) == 9 and pred.window_probs.shape == (9, 4)  # starts 0, 0.5, ..., 4.0
    assert np.allclose(pred.window_probs.sum(1), 1, atol=1e-4)
    assert pred.segments[0].start == 0 and pred.segments[-1].end == pytest.approx(6.0)
    assert all(a.end == b.start for a, b in zip(pred.segments, pred.segments[1:]))
    d = pred.to_dict()
    assert d["label"] == d["topk"][0]["label"] and d["duration"] == 6.0 and len(d["timeline"]["times"]) == 9


def test_make_segments_merges_short_runs():
    classes = ["a", "b"]
    probs = np.array([[0.9, 0.1]] * 6 + [[0.2, 0.8]] + [[0.9, 0.1]] * 6 + [[0.1, 0.9]] * 8)
    times = np.arange(len(probs)) * 0.5
    segs = make_segments(times, probs, classes, 2.0, 0.5, duration=times[-1] + 2.0, smooth=1, min_duration=1.0)
    assert [s.label for s in segs] == ["a", "b"]  # the 0.5 s blip of "b" is absorbed
    assert segs[0].start == 0 and segs[-1].end == pytest.approx(times[-1] + 2.0)


def test_streaming_equals_offline_pass(tmp_path, tiny_ckpt):
    video = long_video(tmp_path / "s.mp4", ["jump", "wave"], seconds=3.0)
    offline = Predictor.from_checkpoint(tiny_ckpt).predict(video)
    sp = StreamingPredictor.from_checkpoint(tiny_ckpt)
    frames, ts = load_frames(video, sampling="all")  # every frame; the streamer picks by timestamp
    results = [sp.push(f, t) for f, t in zip(frames, ts)]
    enc = [r for r in results if r.encoded]
    assert np.allclose([r.timestamp for r in enc], offline.step_times)
    assert np.abs(np.stack([r.probs for r in enc]) - offline.step_probs).max() < 1e-4
    clip = dict(offline.topk)  # 4 classes <= top-5: every class is there
    assert np.abs(enc[-1].clip_probs - np.array([clip[c] for c in sp.classes])).max() < 1e-4
    sp.reset()
    again = [sp.push(f, t) for f, t in zip(frames[:10], ts[:10])]
    assert np.abs(again[0].probs - enc[0].probs).max() < 1e-5  # reset starts a fresh sequence


def test_streaming_every_nth_frame_and_flat_memory(tiny_ckpt):
    sp = StreamingPredictor.from_checkpoint(tiny_ckpt, every=3)
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    res = [sp.push(frame, i / 25) for i in range(9)]
    assert [r.encoded for r in res] == [True, False, False] * 3 and sp.n_steps == 3
    for i in range(50):  # warm up allocators
        sp.push(frame, i / 25)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(600):
        sp.push(frame, i / 25)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 200_000, f"memory grew by {grown} bytes over 600 frames"


def test_vap_stream_on_a_file_prints_steps_and_latency(tmp_path, tiny_ckpt):
    import json

    from conftest import run_vap

    video = long_video(tmp_path / "s.mp4", ["squat", "jump"], seconds=2.0)
    code, out, err = run_vap("stream", "--checkpoint", tiny_ckpt, "--source", video)
    assert code == 0, err
    steps = [json.loads(x) for x in out.splitlines()]
    assert len(steps) == 32  # 4 s sampled at the model's 8 fps
    assert all(s["label"] in ("jump", "squat", "walk_right", "wave") and s["latency_ms"] > 0 for s in steps)
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["frames"] == 100 and summary["steps"] == 32 and summary["fps"] > 0
    assert summary["latency_ms_p95"] >= summary["latency_ms_p50"] > 0
    code, out, err = run_vap("stream", "--checkpoint", tiny_ckpt, "--source", tmp_path / "missing.mp4")
    assert code == 2 and "missing.mp4: no such file" in err


def test_prediction_time_settings_are_accepted_and_training_ones_refused(tmp_path, tiny_ckpt):
    """Overrides of how features are computed or frames decoded; never of what the head was trained on."""
    from pipeline.errors import ConfigError

    video = long_video(tmp_path / "o.mp4", ["jump", "wave"], seconds=2.0)
    default = Predictor.from_checkpoint(tiny_ckpt)  # trained with the default backbone.runtime=auto
    assert default.backbone.numerics in ("torch-fp32", "torch-fp32-cl", "onnxruntime-fp32")  # fp32: the same features
    eager = Predictor.from_checkpoint(tiny_ckpt, overrides=["backbone.runtime=torch"])
    ort = Predictor.from_checkpoint(tiny_ckpt, overrides={"backbone.runtime": "onnxruntime", "backbone.batch_size": 4})
    assert eager.backbone.numerics == "torch-fp32" and ort.backbone.numerics == "onnxruntime-fp32"
    assert ort.backbone.batch_size == 4 and ort.cfg.backbone.batch_size == 4
    a, b = eager.predict(video), ort.predict(video)
    assert np.abs(a.step_probs - b.step_probs).max() < 1e-4 and a.topk[0][0] == b.topk[0][0]
    assert Predictor.from_checkpoint(tiny_ckpt, overrides=["video.decoder=opencv"]).cfg.video.decoder == "opencv"
    for refused in ["views.streams=[frame]", "backbone.input_size=128", "video.fps=5", "backbone.name=resnet18",
                    "head.hidden_size=8"]:
        with pytest.raises(ConfigError, match=rf"{refused.split('=')[0]}: cannot change after training"):
            Predictor.from_checkpoint(tiny_ckpt, overrides=[refused])
    with pytest.raises(ConfigError, match="'backbone.runtime' must be one of"):
        StreamingPredictor.from_checkpoint(tiny_ckpt, overrides=["backbone.runtime=tensorrt"])


def test_cli_prediction_time_settings(tmp_path, tiny_ckpt, synth_test):
    import json

    from conftest import run_vap

    video = next(synth_test.rglob("*.mp4"))
    code, out, err = run_vap("predict", "--checkpoint", tiny_ckpt, video, "backbone.runtime=onnxruntime",
                             "video.decoder=opencv", "--out", tmp_path / "p.jsonl", "--quiet")
    assert code == 0, err
    assert json.loads(out)["done"] == 1 and len((tmp_path / "p.jsonl").read_text().splitlines()) == 1
    code, out, err = run_vap("stream", "--checkpoint", tiny_ckpt, "--source", video, "backbone.runtime=torch")
    assert code == 0 and out.strip(), err
    code, out, err = run_vap("eval", "--checkpoint", tiny_ckpt, "--data", synth_test, "--out", tmp_path / "e",
                             "--quiet", "backbone.batch_size=8")
    assert code == 0 and json.loads(out)["num_clips"] == 16, err
    code, out, err = run_vap("predict", "--checkpoint", tiny_ckpt, video, "views.streams=[frame]",
                             "--out", tmp_path / "q.jsonl")
    assert code == 2 and err.startswith("error: views.streams: cannot change after training")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "q.jsonl").exists()
