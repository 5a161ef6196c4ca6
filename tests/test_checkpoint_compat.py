"""Checkpoints written by earlier versions keep working (tests/fixtures/README.md says how these were made)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.data.synthetic import make_dataset
from pipeline.inference.predict import Predictor, StreamingPredictor
from pipeline.models.checkpoint import backbone_of, head_of, load_checkpoint

from conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
EXPECTED = json.loads((FIXTURES / "ckpt_v1_expected.json").read_text())


@pytest.mark.parametrize("kind", ["classification", "next_event"])
def test_flat_layout_checkpoint_gives_the_same_outputs(kind):
    ckpt = load_checkpoint(FIXTURES / f"ckpt_v1_{kind}.pt")
    want = EXPECTED[kind]
    assert ckpt["kind"] == kind and ckpt["classes"] == want["classes"]
    assert backbone_of(ckpt, "cpu").fingerprint == want["fingerprint"]  # the backbone rebuilds identically
    head = head_of(ckpt)
    x = torch.randn(1, 10, ckpt["feature_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = head(x, torch.tensor([10]))
    np.testing.assert_allclose(torch.softmax(out.clip, -1)[0].numpy(), want["clip_probs"], atol=1e-5)
    np.testing.assert_allclose(torch.softmax(out.steps, -1)[0, -1].numpy(), want["step_probs_last"], atol=1e-5)
    if kind == "next_event":
        np.testing.assert_allclose(torch.softmax(out.next, -1)[0, -1].numpy(), want["next_probs_last"], atol=1e-5)


def test_flat_layout_checkpoint_predicts_and_streams(tmp_path):
    video = sorted(make_dataset(tmp_path / "d", 1, actions=("wave",), seed=3).rglob("*.mp4"))[0]
    path = FIXTURES / "ckpt_v1_classification.pt"
    r = Predictor.from_checkpoint(path, "cpu").predict(video)
    assert r.topk[0][0] in EXPECTED["classification"]["classes"] and len(r.step_probs) > 0
    sp = StreamingPredictor.from_checkpoint(path, "cpu")
    from pipeline.data.video import load_frames

    frames, ts = load_frames(video, sampling="all")
    steps = [s for s in (sp.push(f, t) for f, t in zip(frames, ts)) if s.encoded]
    np.testing.assert_allclose(np.stack([s.probs for s in steps]), r.step_probs, atol=1e-4)
