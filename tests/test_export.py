"""Fast backbone paths and ONNX export: every path is checked against fp32 eager PyTorch on real
(synthetic) video frames and through a trained model's predictions."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from pipeline.models.backbones import create_backbone
from pipeline.models.runtime import (
    MIN_COSINE_INT8,
    Runtime,
    _cache_dir,
    candidates,
    cosine,
    ort_available,
    pick_fastest,
    probe_frames,
    with_runtime,
)

from conftest import ROOT, WEIZMANN, run_vap

pytestmark = pytest.mark.skipif(not ort_available(), reason="onnxruntime/onnx not installed (pip install vap[onnx])")


def _videos(root):
    return sorted(str(p) for p in root.rglob("*.mp4"))


def test_every_fast_path_matches_fp32(synth_test):
    from pipeline.data.video import load_frames

    bb = create_backbone("efficientnet_lite0", input_size=128, device="auto", batch_size=16)  # fp16 paths on a GPU
    frames = np.concatenate([load_frames(v, fps=2)[0] for v in _videos(synth_test)[:6]])  # real decoded frames
    ref = bb.encode(frames)
    root = (list(logging.getLogger().handlers), logging.getLogger().level)
    paths = candidates(bb)
    assert ("onnxruntime", "fp32", False) in paths and ("torch", "fp32", True) in paths
    for path in paths:
        rt = Runtime(bb, *path)
        assert rt.numerics.startswith(f"{path[0]}-{path[1]}")
        c = cosine(rt.encode(frames), ref)
        if path[1] == "int8":  # a few frames of these tiny synthetic clips at 128 px lose more (0.93)
            assert np.median(c) > 0.99 and c.min() > 0.9, (path, c.min(), np.median(c))
        else:
            assert c.min() > (0.99999 if path[1] == "fp32" else 0.99), (path, c.min())
        # fp32 paths share the reference's cache entries; low precision is cached apart
        assert (rt.cache_id == bb.fingerprint) == (path[1] == "fp32")
    assert bb.numerics == "torch-fp32" and bb.cache_id == bb.fingerprint  # the plain backbone is the reference
    # quantizing (onnxruntime.quantization calls logging.basicConfig) leaves the root logger as it was
    assert (list(logging.getLogger().handlers), logging.getLogger().level) == root


@pytest.mark.slow
@pytest.mark.skipif(not WEIZMANN.is_dir(), reason="needs ../shared/data/weizmann")
def test_int8_features_match_fp32_on_real_video():
    """int8 (calibrated on synthetic probe frames) against fp32 eager at the default input size, on
    frames of real people: one clip of each Weizmann action, every actor; and it is really int8."""
    import onnx

    from pipeline.data.video import load_frames

    clips = [sorted(d.glob("*.avi"))[i % 9] for i, d in enumerate(sorted(p for p in WEIZMANN.iterdir() if p.is_dir()))]
    frames = np.concatenate([load_frames(str(c), fps=3)[0] for c in clips])
    bb = create_backbone("efficientnet_lite0", device="cpu")
    rt = Runtime(bb, "onnxruntime", "int8")
    c = cosine(rt.encode(frames), bb.encode(frames))
    assert len(frames) > 60 and c.min() > MIN_COSINE_INT8 and c.mean() > 0.98, (c.min(), c.mean())
    (path,) = (_cache_dir() / "onnx").glob(f"*{bb.fingerprint}-224-int8.onnx")  # quantized once, kept
    assert sum(n.op_type == "QuantizeLinear" for n in onnx.load(path).graph.node) > 40
    assert rt.cache_id != bb.fingerprint  # int8 features are cached apart from fp32 ones


def test_auto_picks_a_correct_path_once(tmp_path, monkeypatch):
    monkeypatch.setenv("VAP_HOME", str(tmp_path))
    bb = create_backbone("efficientnet_lite0", input_size=96, device="cpu", batch_size=8)
    choice = pick_fastest(bb)
    saved = json.loads((tmp_path / "runtime.json").read_text())
    (entry,) = saved.values()
    assert entry["choice"] == list(choice)
    chosen = next(r for r in entry["measured"] if r["choice"] == list(choice))
    int8 = next(r for r in entry["measured"] if r["choice"][1] == "int8")  # competes with precision=auto,
    assert int8["ok"] == (int8["min_cosine"] > 0.99)  # held to the same bar as every path
    assert chosen["ok"] and chosen["seconds"] == min(r["seconds"] for r in entry["measured"] if r["ok"])
    assert pick_fastest(bb) == choice  # cached: no second measurement
    rt = with_runtime(create_backbone("efficientnet_lite0", input_size=96, device="cpu", batch_size=8), "auto", "auto")
    assert (rt.runtime, rt.precision, rt.channels_last) == choice


def test_prediction_does_not_wait_for_the_measurement(tmp_path, monkeypatch):
    """measure=False (what a prediction asks): the usual path, checked on probe frames, kept as provisional;
    the next measuring call times every path and replaces it."""
    monkeypatch.setenv("VAP_HOME", str(tmp_path))
    bb = create_backbone("efficientnet_lite0", input_size=96, device="cpu", batch_size=8)
    assert pick_fastest(bb, "auto", "fp32", measure=False) == ("onnxruntime", "fp32", False)
    (entry,) = json.loads((tmp_path / "runtime.json").read_text()).values()
    assert entry == {"choice": ["onnxruntime", "fp32", False], "provisional": True}  # nothing timed
    choice = pick_fastest(bb, "auto", "fp32")  # a long job measures
    (entry,) = json.loads((tmp_path / "runtime.json").read_text()).values()
    assert "provisional" not in entry and len(entry["measured"]) == len(candidates(bb, "auto", "fp32"))
    assert pick_fastest(bb, "auto", "fp32", measure=False) == choice  # the measured choice from now on
    # int8 asked of auto: int8 when it is close enough (cosine >= 0.979 here), else the fp32 reference
    assert pick_fastest(bb, "auto", "int8", measure=False, use_cache=False) == ("onnxruntime", "int8", False)
    monkeypatch.setattr("pipeline.models.runtime.MIN_COSINE_INT8", 0.9999)
    assert pick_fastest(bb, "auto", "int8", measure=False, use_cache=False) == ("torch", "fp32", False)


@pytest.mark.slow
def test_fast_paths_give_identical_top1(trained_ckpt, synth_test):
    """Same top-1 on every test clip with each fast path as with fp32 eager (vap predict's code); int8
    within one clip."""
    from pipeline.inference.predict import Predictor
    from pipeline.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(trained_ckpt)
    ckpt["config"]["backbone"].update(runtime="torch", precision="fp32", channels_last=False)  # the reference
    videos = _videos(synth_test)
    ref = Predictor(ckpt, "auto")
    want = [ref.predict(v).topk[0][0] for v in videos]
    for path in candidates(ref.backbone):
        if path == ("torch", "fp32", False):
            continue
        ckpt["config"]["backbone"].update(runtime=path[0], precision=path[1], channels_last=path[2])
        p = Predictor(ckpt, "auto")
        assert p.backbone.numerics.startswith(f"{path[0]}-{path[1]}")
        got = [p.predict(v).topk[0][0] for v in videos]
        if path[1] == "int8":  # not the same numbers: at most one clip of the 16 may change its label
            assert sum(a != b for a, b in zip(got, want)) <= 1, (path, got, want)
        else:
            assert got == want, path


def test_export_cli_and_onnx_predictor(tiny_ckpt, synth_test, tmp_path):
    from pipeline.data.video import load_frames
    from pipeline.inference.onnx_predict import OnnxModel, OnnxPredictor, OnnxStreamingPredictor
    from pipeline.inference.predict import Predictor

    code, stdout, err = run_vap("export", "--checkpoint", tiny_ckpt, "--out", tmp_path / "onnx")
    assert code == 0, err
    s = json.loads(stdout)
    for f in ("backbone.onnx", "head_step.onnx", "model.json"):
        assert (tmp_path / "onnx" / f).is_file()
    assert s["check"]["feature_min_cosine"] > 0.9999 and s["check"]["step_prob_max_diff"] < 1e-4, s
    m = OnnxModel(tmp_path / "onnx")
    # an ensemble (train.ensemble, as by default): the refit's heads, exported as one step with their states
    # side by side
    from pipeline.models.checkpoint import load_checkpoint
    from pipeline.models.heads import ensemble_members

    heads = ensemble_members(load_checkpoint(tiny_ckpt)["head_state"])
    assert heads > 1 and m.meta["head"]["layers"] == heads  # one LSTM layer a head
    pt = Predictor.from_checkpoint(tiny_ckpt, "cpu")
    for v in _videos(synth_test)[:4]:  # one result type: the same VideoPrediction from both engines
        a, b = OnnxPredictor(m).predict(v), pt.predict(v)
        assert type(a) is type(b) and a.topk[0][0] == b.topk[0][0]
        np.testing.assert_allclose(a.step_probs, b.step_probs, atol=1e-3)
        np.testing.assert_allclose(a.window_probs, b.window_probs, atol=1e-3)  # the timeline too
        assert [s.label for s in a.segments] == [s.label for s in b.segments]
    # streaming on ONNX Runtime picks the same frames and gives the same outputs as the offline pass
    v = _videos(synth_test)[0]
    frames, ts = load_frames(v, sampling="all")
    sp = OnnxStreamingPredictor(m)
    enc = [r for r in (sp.push(f, t) for f, t in zip(frames, ts)) if r.encoded]
    off = OnnxPredictor(m).predict(v)
    np.testing.assert_allclose([r.timestamp for r in enc], off.step_times, atol=1e-6)
    np.testing.assert_allclose(np.stack([r.probs for r in enc]), off.step_probs, atol=1e-5)
    assert [r.topk[0][0] for r in enc] == [off.classes[i] for i in off.step_probs.argmax(1)]
    # a model whose views read people (the pose stream, or a crop around the people) needs a person detector,
    # which the torch-free engine cannot run: one clear error, not a failure at its first frame
    from pipeline.errors import CheckpointError

    meta_path = tmp_path / "onnx" / "model.json"
    meta = json.loads(meta_path.read_text())
    for views in ({"region": "people"}, {"streams": ["crop", "pose"]}):
        meta_path.write_text(json.dumps(dict(meta, views={**meta.get("views", {}), **views})))
        with pytest.raises(CheckpointError, match="cannot run the person detector"):
            OnnxModel(tmp_path / "onnx")


def test_onnx_predictor_does_not_import_torch(tiny_ckpt, synth_test, tmp_path):
    code, _, err = run_vap("export", "--checkpoint", tiny_ckpt, "--out", tmp_path / "onnx")
    assert code == 0, err
    script = (f"import sys\nfrom pipeline.inference.onnx_predict import OnnxModel, OnnxPredictor\n"
              f"r = OnnxPredictor(OnnxModel({str(tmp_path / 'onnx')!r})).predict({_videos(synth_test)[0]!r})\n"
              f"assert 'torch' not in sys.modules, 'torch was imported'\nprint(r.topk[0][0])\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() in {"wave", "squat", "jump", "walk_right"}


def test_export_of_a_bidirectional_head_is_refused(tmp_path):
    import torch

    from pipeline.config import load_config
    from pipeline.inference.export import ExportError, export_onnx
    from pipeline.models.checkpoint import make_checkpoint
    from pipeline.models.heads import build_head

    cfg = load_config(None, ["backbone.name=tiny_cnn", "backbone.input_size=64", "head.bidirectional=true",
                             "views.streams=[frame]"])  # one stream: the head below takes bb.dim features
    bb = create_backbone("tiny_cnn", input_size=64, device="cpu")
    head = build_head(cfg.head, bb.dim, 3)
    ckpt = make_checkpoint("classification", cfg, ["a", "b", "c"], bb.dim, head, bb.fingerprint)
    torch.save(ckpt, tmp_path / "bi.pt")
    with pytest.raises(ExportError, match="bidirectional"):
        export_onnx(tmp_path / "bi.pt", tmp_path / "o")
    assert probe_frames(2, 64).shape == (2, 64, 64, 3)
