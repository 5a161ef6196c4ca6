"""ONNX export (`vap export`): the backbone and one streaming step of the head, plus model.json.

    backbone.onnx   pixels (N,3,S,S) float32, normalised as model.json says -> features (N,D)
    head_step.onnx  x (B,D), h (L,B,H), c (L,B,H), acc (B,A), n (B,1)
                    -> step_logits (B,C), clip_logits (B,C)[, next_logits (B,C)][, time (B,)],
                       h, c, acc, n (the new state)
    model.json      classes, task, preprocessing, sampling, state sizes, file names

The head step carries its state explicitly, so a stream runs entirely in ONNX Runtime; a zero
state starts a sequence. `pipeline.inference.onnx_predict` runs these files without importing torch.
Optional dependencies: pip install "vap[onnx]" (onnx, onnxruntime).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from pipeline.data.views import MOTION_STREAMS, stream_size
from pipeline.errors import ExportError
from pipeline.inference.onnx_predict import OnnxModel
from pipeline.inference.results import softmax
from pipeline.io import atomic_write_text
from pipeline.models.checkpoint import backbone_of, config_of, head_of, load_checkpoint
from pipeline.models.heads import EnsembleHead, MeanPoolHead, head_members
from pipeline.models.onnx import export_backbone, onnx_export
from pipeline.models.runtime import cosine, probe_frames

FORMAT = 1


class _HeadStep(nn.Module):
    """head.step with the state as plain tensors: (h, c) of the RNN (c unused by a GRU, both unused
    by mean-pool), the running sum of step states `acc` and the step count `n` (B, 1). An EnsembleHead's
    members' states lie side by side: h and c (L * members, B, H), acc (B, A * members); n is shared."""

    def __init__(self, head):
        super().__init__()
        self.head = head
        self.members = head_members(head)

    @staticmethod
    def _step(head, x, h, c, acc, n):
        if isinstance(head, MeanPoolHead):
            out, (acc2, n2) = head.step(x, (acc, n))
            return out, h, c, acc2, n2
        lstm = head.rnn_type == "lstm"
        out, (rnn2, acc2, n2) = head.step(x, ((h, c) if lstm else h, acc, n))
        h2, c2 = rnn2 if lstm else (rnn2, c)
        return out, h2, c2, acc2, n2

    def forward(self, x, h, c, acc, n):
        k = len(self.members)
        steps = [self._step(m, x, hi, ci, ai, n)
                 for m, hi, ci, ai in zip(self.members, h.chunk(k, 0), c.chunk(k, 0), acc.chunk(k, 1))]
        out = steps[0][0] if k == 1 else EnsembleHead.mean([s[0] for s in steps])
        h2, c2 = torch.cat([s[1] for s in steps], 0), torch.cat([s[2] for s in steps], 0)
        acc2, n2 = torch.cat([s[3] for s in steps], 1), steps[0][4]
        outs = [out.steps, out.clip]
        if out.next is not None:
            outs.append(out.next)
        if out.time is not None:
            outs.append(out.time)
        return (*outs, h2, c2, acc2, n2)


def state_sizes(head) -> dict:
    """layers, hidden (H) and acc (A) sizes of the head's streaming state (an ensemble's: its members' side by
    side, layers and acc times their number)."""
    if isinstance(head, EnsembleHead):
        one = state_sizes(head.members[0])
        return dict(one, layers=one["layers"] * len(head.members), acc=one["acc"] * len(head.members))
    if isinstance(head, MeanPoolHead):
        return dict(layers=1, hidden=1, acc=head.inp.out_dim)
    return dict(layers=head.rnn.num_layers, hidden=head.rnn.hidden_size, acc=head.readout_dim)


def export_onnx(checkpoint: str | Path, out: str | Path | None = None) -> dict:
    """Write backbone.onnx, head_step.onnx and model.json into `out` (default: beside the checkpoint,
    in <run>/onnx). Returns a summary dict with the paths."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ExportError('ONNX export needs the onnx package: pip install "vap[onnx]"') from None
    ckpt = load_checkpoint(checkpoint)
    cfg = config_of(ckpt)
    out = Path(out) if out else Path(checkpoint).parent / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    backbone = backbone_of(ckpt, "cpu", runtime=False).eval()
    head = head_of(ckpt, "cpu").eval()
    if not getattr(head, "can_stream", False):
        raise ExportError(f"{checkpoint}: a bidirectional head cannot run step by step; retrain with "
                          f"head.bidirectional=false")
    S = backbone.input_size
    export_backbone(backbone, out / "backbone.onnx")
    files = dict(backbone="backbone.onnx", head="head_step.onnx")
    motion = stream_size("diff", cfg.views, S) if set(cfg.views.streams) & set(MOTION_STREAMS) else S
    if motion != S:  # the motion streams' own input side: the same weights exported at that size
        export_backbone(backbone.at_size(motion), out / "backbone_motion.onnx")
        files["motion_backbone"] = "backbone_motion.onnx"
    sz = state_sizes(head)
    B, L, H, A = 1, sz["layers"], sz["hidden"], sz["acc"]
    args = (torch.zeros(B, ckpt["feature_dim"]), torch.zeros(L, B, H), torch.zeros(L, B, H), torch.zeros(B, A),
            torch.zeros(B, 1))
    next_event = ckpt.get("kind") == "next_event"
    has_time = next_event and getattr(head_members(head)[0], "time_regressor", None) is not None
    outputs = ["step_logits", "clip_logits"] + (["next_logits"] if next_event else []) + (
        ["time"] if has_time else []) + ["h_out", "c_out", "acc_out", "n_out"]
    dyn = {"x": {0: "b"}, "acc": {0: "b"}, "n": {0: "b"}, "h": {1: "b"}, "c": {1: "b"},
           **{o: ({1: "b"} if o in ("h_out", "c_out") else {0: "b"}) for o in outputs}}
    onnx_export(_HeadStep(head), args, out / "head_step.onnx", ["x", "h", "c", "acc", "n"], outputs, dyn)
    meta = dict(format=FORMAT, kind=ckpt.get("kind", "classification"), classes=list(ckpt["classes"]),
                backbone=dict(name=backbone.name, input_size=S, mean=list(backbone.mean), std=list(backbone.std),
                              dim=backbone.dim, fingerprint=ckpt["backbone_fingerprint"]),
                video=dict(sampling=cfg.video.sampling, fps=cfg.video.fps, num_frames=cfg.video.num_frames,
                           decoder=cfg.video.decoder, max_side=cfg.video.max_side, chunk_mb=cfg.video.chunk_mb),
                views=dataclasses.asdict(cfg.views),  # streams side by side: pipeline.views renders them
                head=dict(type=cfg.head.type, **sz, outputs=outputs),
                files=files, checkpoint=str(checkpoint))
    atomic_write_text(out / "model.json", json.dumps(meta, indent=1) + "\n")
    return dict(out=str(out), backbone=str(out / "backbone.onnx"), head=str(out / "head_step.onnx"),
                model=str(out / "model.json"), kind=meta["kind"], classes=meta["classes"],
                check=verify(out, backbone, head))


@torch.no_grad()
def verify(folder: Path, backbone, head, steps: int = 12) -> dict:
    """Run the exported files on ONNX Runtime beside PyTorch: the features' minimum cosine similarity
    on probe frames and the largest difference of the streamed step probabilities."""
    try:
        m = OnnxModel(folder)
    except ImportError:
        return dict(skipped="onnxruntime not installed")
    frames = probe_frames(8, backbone.input_size)
    f_ort, f_pt = m.encode(frames), backbone.encode(frames)
    if "motion_backbone" in m.meta["files"]:  # the motion streams' backbone too, at its own size
        small = m.motion_size
        f_ort = np.concatenate([f_ort, m.at_size(small).encode(frames)])
        f_pt = np.concatenate([f_pt, backbone.at_size(small).encode(frames)])
    streams = head_members(head)[0].inp.groups  # the streams' features side by side: probe the head with copies
    x = torch.from_numpy(f_pt).repeat(2, streams)[:steps]  # (steps, streams * D)
    state, pt_state, worst = m.init_state(1), None, 0.0
    for t in range(len(x)):
        o, state = m.step(x[t:t + 1].numpy(), state)
        p, pt_state = head.step(x[t:t + 1], pt_state)
        worst = max(worst, float(np.abs(softmax(o["step_logits"]) - torch.softmax(p.steps, -1).numpy()).max()))
    return dict(feature_min_cosine=round(float(cosine(f_ort, f_pt).min()), 6), step_prob_max_diff=worst)
