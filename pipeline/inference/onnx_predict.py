"""Prediction on ONNX Runtime alone: no torch import (deploy the files `vap export` wrote).

    m = OnnxModel("runs/x/onnx")                       # backbone.onnx, head_step.onnx, model.json
    OnnxPredictor(m).predict("video.mp4")              # VideoPrediction, as Predictor's
    sp = OnnxStreamingPredictor(m); sp.push(frame_rgb, timestamp)   # StepResult, state carried

Decoding is pipeline.data.video (decord / OpenCV); preprocessing is OpenCV / Pillow + NumPy (resize the
whole frame to the input size with the same filters as PyTorch's, normalise as model.json says), so
features match PyTorch's to float rounding (tests check cosine similarity and top-1). This module
must not import torch.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import VIEWS_BEFORE_KEYS, VideoConfig, ViewsConfig  # plain dataclasses, no torch
from pipeline.data.views import FrameEncoder, reads_people, stream_size
from pipeline.errors import CheckpointError
from pipeline.inference.results import Outputs, StreamPredictorBase, VideoPredictorBase


class OnnxModel:
    """The exported backbone and head step, with the preprocessing and sampling they were trained with."""

    def __init__(self, folder: str | Path, threads: int = 0, providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError('ONNX Runtime is not installed: pip install "vap[onnx]"') from None
        folder = Path(folder)
        if not (folder / "model.json").is_file():
            raise FileNotFoundError(f"{folder}: no model.json (write it with vap export)")
        self.meta = json.loads((folder / "model.json").read_text())
        self.classes = self.meta["classes"]
        self.kind = self.meta["kind"]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        avail = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        files = self.meta["files"]
        self.backbone = ort.InferenceSession(str(folder / files["backbone"]), opts, providers=providers)
        # the motion streams' backbone at views.motion_size (exported when it differs from input_size)
        self.motion_backbone = ort.InferenceSession(str(folder / files["motion_backbone"]), opts,
                                                    providers=providers) if "motion_backbone" in files else None
        self.head = ort.InferenceSession(str(folder / self.meta["files"]["head"]), opts, providers=providers)
        self.outputs = [o.name for o in self.head.get_outputs()]
        b = self.meta["backbone"]
        self.size = self.input_size = int(b["input_size"])  # input_size, dim: what FrameEncoder reads
        self.dim = int(b["dim"])
        self.mean = np.array(b["mean"], np.float32).reshape(1, 1, 3)
        self.std = np.array(b["std"], np.float32).reshape(1, 1, 3)
        self.batch_size = 32
        self.views = ViewsConfig(**{**copy.deepcopy(VIEWS_BEFORE_KEYS), **self.meta.get("views", {})})  # older model.json too
        self.motion_size = stream_size("diff", self.views, self.size)  # as FrameEncoder will ask for it
        if reads_people(self.views):  # a person detector: Ultralytics (torch) or MediaPipe
            raise CheckpointError("this model reads people (views.streams has pose, or views.region=people): the "
                                  "ONNX engine runs without torch and cannot run the person detector; use the "
                                  "PyTorch engine")
        self.frames = FrameEncoder(self, self.views)  # the views through this ONNX backbone, as PyTorch's

    def at_size(self, size: int) -> "OnnxModel":
        """The backbone at the motion streams' side (FrameEncoder asks for it), sharing everything else."""
        if size == self.size:
            return self
        if size != self.motion_size or self.motion_backbone is None:
            raise ValueError(f"this export has a backbone at {self.size} px and none at {size} px")
        other = copy.copy(self)
        other.size = other.input_size = size
        other.backbone = self.motion_backbone
        return other

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (T,H,W,3) RGB -> float32 (T,3,S,S): the whole frame resized (area when shrinking)."""
        S = self.size
        out = np.empty((len(frames), S, S, 3), np.float32)
        for i, f in enumerate(frames):
            f = f.astype(np.float32)  # resizing uint8 would round to whole levels
            if f.shape[0] > S or f.shape[1] > S:
                # shrinking: PIL's bilinear filter widens with the scale, as torch's antialias=True does
                from PIL import Image

                planes = [Image.fromarray(np.ascontiguousarray(f[..., k])) for k in range(3)]  # float "F" images
                out[i] = np.stack([np.asarray(pl.resize((S, S), Image.BILINEAR)) for pl in planes], -1)
            else:
                out[i] = cv2.resize(f, (S, S), interpolation=cv2.INTER_LINEAR) if f.shape[:2] != (S, S) else f
        return np.ascontiguousarray(((out - self.mean) / self.std).transpose(0, 3, 1, 2))

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (T,H,W,3) RGB -> float32 (T,D) features."""
        feats = [self.backbone.run(None, {"pixels": self.preprocess(frames[i:i + self.batch_size])})[0]
                 for i in range(0, len(frames), self.batch_size)]
        return np.concatenate(feats) if feats else np.zeros((0, self.dim), np.float32)

    def reset_views(self) -> None:
        """A new video or stream: the moving-region tracker of the crop/diff/flow views starts afresh."""
        self.frames.reset()

    def encode_views(self, frames: np.ndarray) -> np.ndarray:
        """Consecutive uint8 (T,H,W,3) RGB frames of one video -> float32 (T, streams * D): the
        model's views.streams, each through the backbone, side by side (as pipeline.views.FrameEncoder)."""
        return self.frames.encode(frames)

    def init_state(self, batch: int = 1) -> dict:
        h = self.meta["head"]
        z = np.zeros((h["layers"], batch, h["hidden"]), np.float32)
        return dict(h=z, c=z.copy(), acc=np.zeros((batch, h["acc"]), np.float32), n=np.zeros((batch, 1), np.float32))

    def step(self, x: np.ndarray, state: dict) -> tuple[dict, dict]:
        """One head step: x (B,D) -> {step_logits, clip_logits[, next_logits][, time]}, new state."""
        res = dict(zip(self.outputs, self.head.run(None, dict(x=x.astype(np.float32), **state))))
        new = dict(h=res.pop("h_out"), c=res.pop("c_out"), acc=res.pop("acc_out"), n=res.pop("n_out"))
        return res, new


class OnnxPredictor(VideoPredictorBase):
    """Offline prediction of one video on ONNX Runtime: the same VideoPrediction as Predictor's
    (clip top-k, per-step outputs, the timeline over windows and its segments)."""

    def __init__(self, model: OnnxModel, topk: int = 5, window: float = 2.0, stride: float = 0.5,
                 smooth: int = 3, min_segment: float = 1.0):
        self.m = model
        self.classes = model.classes
        self.vcfg = VideoConfig(**{k: v for k, v in model.meta["video"].items()
                                   if k in VideoConfig.__dataclass_fields__})
        self.encoder = model.frames
        self.window, self.stride, self.topk = window, stride, min(topk, len(model.classes))
        self.smooth, self.min_segment = smooth, min_segment

    def _run(self, feats: np.ndarray) -> list[dict]:
        """The head step over every step of one sequence, from a zero state: one output dict per step."""
        state, steps = self.m.init_state(1), []
        for i in range(len(feats)):
            out, state = self.m.step(feats[i:i + 1], state)
            steps.append(out)
        return steps

    def _outputs(self, feats: np.ndarray) -> Outputs:
        steps = self._run(feats)
        cat = lambda k: np.concatenate([s[k] for s in steps]) if k in steps[0] else None  # noqa: E731
        return Outputs(cat("step_logits"), steps[-1]["clip_logits"][0], cat("next_logits"), cat("time"))

    def _window_clip_logits(self, windows: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([self._run(w)[-1]["clip_logits"] for w in windows])


class OnnxStreamingPredictor(StreamPredictorBase):
    """push(frame_rgb, timestamp) -> StepResult (as StreamingPredictor's); frames are encoded at the
    model's sampling rate by timestamp (or every n-th with every=n), the state is carried between pushes."""

    def __init__(self, model: OnnxModel, every: int = 0, smooth: float = 0.0, topk: int = 5):
        self.m = model
        v = model.meta["video"]
        self._setup(model.classes, v["fps"] if v["sampling"] == "fps" else 0.0, every, smooth, topk)

    def _reset_state(self) -> None:
        self.state = self.m.init_state(1)
        self.m.reset_views()

    def _step(self, frame_rgb: np.ndarray) -> Outputs:
        out, self.state = self.m.step(self.m.encode_views(frame_rgb[None]), self.state)
        return Outputs(out["step_logits"], out["clip_logits"], out.get("next_logits"), out.get("time"))
