"""Prediction on ONNX Runtime alone: no torch import (deploy the files `vap export` wrote).

    m = OnnxModel("runs/x/onnx")                       # backbone.onnx, head_step.onnx, model.json
    OnnxPredictor(m).predict("video.mp4")              # dict: label, prob, topk, per-step outputs
    sp = OnnxStreamingPredictor(m); sp.push(frame_rgb, timestamp)   # dict per frame, state carried

Decoding is pipeline.video (decord / OpenCV); preprocessing is OpenCV / Pillow + NumPy (resize the
whole frame to the input size with the same filters as PyTorch's, normalise as model.json says), so
features match PyTorch's to float rounding (tests check cosine similarity and top-1). This module
must not import torch.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from .video import RateLimiter, iter_frames


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


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
        self.backbone = ort.InferenceSession(str(folder / self.meta["files"]["backbone"]), opts, providers=providers)
        self.head = ort.InferenceSession(str(folder / self.meta["files"]["head"]), opts, providers=providers)
        self.outputs = [o.name for o in self.head.get_outputs()]
        b = self.meta["backbone"]
        self.size = self.input_size = int(b["input_size"])  # input_size, dim: what FrameEncoder reads
        self.dim = int(b["dim"])
        self.mean = np.array(b["mean"], np.float32).reshape(1, 1, 3)
        self.std = np.array(b["std"], np.float32).reshape(1, 1, 3)
        self.batch_size = 32
        from .config import ViewsConfig  # plain dataclasses, no torch
        from .views import FrameEncoder

        self.views = ViewsConfig(**self.meta.get("views", {"streams": ["frame"]}))  # older model.json: whole frame
        self.frames = FrameEncoder(self, self.views)  # the views through this ONNX backbone, as PyTorch's

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


class OnnxPredictor:
    """Offline prediction of one video: clip top-k and the per-step (causal) outputs."""

    def __init__(self, model: OnnxModel, topk: int = 5):
        self.m = model
        self.topk = min(topk, len(model.classes))

    def predict(self, video: str | Path) -> dict:
        v = self.m.meta["video"]
        t0 = time.perf_counter()
        feats, times = [], []
        self.m.reset_views()
        for frames, ts in iter_frames(video, v["sampling"], v["fps"], v["num_frames"], v["decoder"], v["max_side"],
                                      v["chunk_mb"]):
            feats.append(self.m.encode_views(frames))
            times.append(ts)
        f, t = np.concatenate(feats), np.concatenate(times)
        state = self.m.init_state(1)
        steps = []
        for i in range(len(f)):
            out, state = self.m.step(f[i:i + 1], state)
            steps.append(out)
        clip = _softmax(steps[-1]["clip_logits"][0])
        order = np.argsort(-clip)[: self.topk]
        d = dict(path=str(video), label=self.m.classes[order[0]], prob=float(clip[order[0]]),
                 topk=[dict(label=self.m.classes[i], prob=float(clip[i])) for i in order], frames=len(t),
                 step_times=t, step_probs=_softmax(np.concatenate([s["step_logits"] for s in steps])),
                 seconds=time.perf_counter() - t0)
        if "next_logits" in steps[0]:
            d["next_probs"] = _softmax(np.concatenate([s["next_logits"] for s in steps]))
            j = int(d["next_probs"][-1].argmax())
            d["next"] = dict(label=self.m.classes[j], prob=float(d["next_probs"][-1, j]))
            if "time" in steps[0]:
                d["time_to_end"] = np.concatenate([s["time"] for s in steps])
                d["next"]["in_s"] = float(d["time_to_end"][-1])
        return d


class OnnxStreamingPredictor:
    """push(frame_rgb, timestamp) -> dict per frame; frames are encoded at the model's sampling rate
    by timestamp (or every n-th with every=n), the state is carried between pushes."""

    def __init__(self, model: OnnxModel, every: int = 0, topk: int = 5):
        self.m = model
        v = model.meta["video"]
        self.fps = v["fps"] if v["sampling"] == "fps" else 0.0
        self.every = every
        self.topk = min(topk, len(model.classes))
        self.reset()

    def reset(self) -> None:
        self.state = self.m.init_state(1)
        self.m.reset_views()
        self.rate = RateLimiter(self.fps, self.every)
        self.last = None

    def push(self, frame_rgb: np.ndarray, timestamp: float) -> dict:
        if not self.rate.take(float(timestamp)) and self.last is not None:
            return dict(self.last, timestamp=float(timestamp), encoded=False, latency_ms=0.0)
        t0 = time.perf_counter()
        out, self.state = self.m.step(self.m.encode_views(frame_rgb[None]), self.state)
        probs = _softmax(out["step_logits"][0])
        order = np.argsort(-probs)[: self.topk]
        r = dict(timestamp=float(timestamp), encoded=True, probs=probs,
                 topk=[(self.m.classes[i], float(probs[i])) for i in order],
                 clip_probs=_softmax(out["clip_logits"][0]), latency_ms=(time.perf_counter() - t0) * 1000)
        if "next_logits" in out:
            r["next_probs"] = _softmax(out["next_logits"][0])
            r["next_topk"] = [(self.m.classes[i], float(r["next_probs"][i]))
                              for i in np.argsort(-r["next_probs"])[: self.topk]]
            if "time" in out:
                r["time_to_end"] = float(out["time"][0])
        self.last = r
        return r
