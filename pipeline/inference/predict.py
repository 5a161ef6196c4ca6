"""Inference with PyTorch: `Predictor` for files (clip top-k, a timeline over long videos, segments)
and `StreamingPredictor` for webcams and streams (one backbone frame + one LSTM step per push).

Everything is rebuilt from the checkpoint alone (its saved config and backbone spec). The timeline
encodes each sampled frame once and runs only the cheap head over overlapping windows. Results,
the timeline and the streaming bookkeeping are results.py's, shared with the ONNX Runtime engine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data.views import FrameEncoder
from pipeline.errors import CheckpointError
from pipeline.inference.results import (  # noqa: F401 (API)
    Outputs,
    Segment,
    StepResult,
    StreamPredictorBase,
    VideoPrediction,
    VideoPredictorBase,
    make_segments,
    smooth_probs,
    window_starts,
)
from pipeline.models.checkpoint import backbone_of, config_of, head_of, load_checkpoint, with_overrides
from pipeline.models.heads import crop_average, pad_batch


def _np(x: torch.Tensor | None) -> np.ndarray | None:
    return None if x is None else x.float().cpu().numpy()


class _Model:
    """What both predictors rebuild from a checkpoint: config, classes, backbone (on its runtime),
    the views through it, and the head."""

    def _load(self, ckpt: dict, device: str, overrides=()) -> None:
        """overrides: prediction-time settings (key=value strings or a dict), e.g. backbone.runtime=onnxruntime."""
        ckpt, device = with_overrides(ckpt, overrides, device)
        self.ckpt = ckpt
        self.cfg = config_of(ckpt)
        self.vcfg = self.cfg.video
        self.classes = list(ckpt["classes"])
        self.backbone = backbone_of(ckpt, device)
        self.encoder = FrameEncoder(self.backbone, self.cfg.views)  # views.streams through the backbone
        self.device = self.backbone.device
        self.head = head_of(ckpt, self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", **kwargs):
        """kwargs: the constructor's, e.g. overrides=["backbone.runtime=onnxruntime"]."""
        return cls(load_checkpoint(path), device, **kwargs)


class Predictor(_Model, VideoPredictorBase):
    """Offline prediction on video files. `Predictor.from_checkpoint("runs/x/best.pt").predict("a.mp4")`."""

    def __init__(self, ckpt: dict, device: str = "auto", window: float = 2.0, stride: float = 0.5,
                 topk: int = 5, smooth: int = 3, min_segment: float = 1.0, overrides=()):
        self._load(ckpt, device, overrides)
        self.window, self.stride, self.topk = window, stride, min(topk, len(self.classes))
        self.smooth, self.min_segment = smooth, min_segment

    @torch.no_grad()
    def _outputs(self, feats: np.ndarray) -> Outputs:
        out = self.head(torch.from_numpy(feats).float().to(self.device)[None])  # (1, T, D) in
        return Outputs(_np(out.steps[0]), _np(out.clip[0]), _np(None if out.next is None else out.next[0]),
                       _np(None if out.time is None else out.time[0]))

    @torch.no_grad()
    def _clip_probs(self, feats: np.ndarray, out: Outputs) -> np.ndarray:
        if self.cfg.train.test_clips <= 1:
            return super()._clip_probs(feats, out)
        x = torch.from_numpy(feats).float().to(self.device)[None]  # the clip top-k as in evaluation
        lengths = torch.tensor([len(feats)], device=self.device)
        return np.exp(_np(crop_average(self.head, x, lengths, self.cfg.train.max_len, self.cfg.train.test_clips)))[0]

    @torch.no_grad()
    def _window_clip_logits(self, windows: list[np.ndarray]) -> np.ndarray:
        xb, lb = pad_batch([torch.from_numpy(w).float() for w in windows])
        return _np(self.head(xb.to(self.device), lb.to(self.device)).clip)


class StreamingPredictor(_Model, StreamPredictorBase):
    """push(frame_rgb, timestamp) -> StepResult. The LSTM state is carried across pushes.

    Frames are encoded at the checkpoint's sampling rate (video.fps) by timestamp, or every n-th frame
    with every=n; the others return the last result with encoded=False. Memory stays flat: the state
    is (h, c) plus a running sum, whatever the number of frames.
    """

    def __init__(self, ckpt: dict, device: str = "auto", every: int = 0, fps: float | None = None,
                 smooth: float = 0.0, topk: int = 5, overrides=()):
        self._load(ckpt, device, overrides)
        if not getattr(self.head, "can_stream", False):
            raise CheckpointError("this checkpoint's head is bidirectional and cannot stream; "
                                  "retrain with head.bidirectional=false")
        fps = fps if fps is not None else (self.vcfg.fps if self.vcfg.sampling == "fps" else 0.0)
        self._setup(self.classes, fps, every, smooth, topk)

    def _reset_state(self) -> None:
        self.state = None
        self.encoder.reset()

    @torch.no_grad()
    def _step(self, frame_rgb: np.ndarray) -> Outputs:
        x = torch.from_numpy(self.encoder.encode(frame_rgb[None])).to(self.device)  # (1, streams * D)
        out, self.state = self.head.step(x, self.state)
        return Outputs(_np(out.steps), _np(out.clip), _np(out.next), _np(out.time))
