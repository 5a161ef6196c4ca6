"""What a prediction gives, whichever engine computed it (PyTorch: predict.py; ONNX Runtime without
torch: onnx_predict.py), and the code both share: the timeline over windows, segments, and the
bookkeeping of streaming (rate limit, smoothing, top-k). NumPy only: no torch import here.

An engine implements two small methods and inherits the rest:
    VideoPredictorBase._outputs(feats (T,D)) -> Outputs of the whole video, step by step
    VideoPredictorBase._window_clip_logits([(T_i,D) ...]) -> (W,C) clip logits of each window
    StreamPredictorBase._step(frame) -> Outputs of one step (shapes (1,C)), the state carried inside
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.data.video import RateLimiter, decode_warning, open_frames, prefetch, video_kwargs


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def topk_of(probs: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    """[(label, prob)] of the k most probable classes, best first."""
    return [(classes[i], float(probs[i])) for i in np.argsort(-probs)[:k]]


class Outputs(NamedTuple):
    """Logits of a head, per step: steps (T,C), clip (C,) of the steps so far (at the last step),
    next (T,C) and time (T,) for next-event models (None otherwise)."""
    steps: np.ndarray
    clip: np.ndarray
    next: np.ndarray | None = None
    time: np.ndarray | None = None


# ----------------------------------------------------------------------------- timeline

def window_starts(duration: float, window: float, stride: float) -> np.ndarray:
    """Start times of windows of `window` s every `stride` s covering [0, duration]."""
    last = max(duration - window, 0.0)
    return np.arange(0.0, last + 1e-9, stride) if last > 0 else np.zeros(1)


def window_steps(ts: np.ndarray, starts: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """(first, last + 1) sampled step of each window [start, start + window); empty windows have lo == hi."""
    lo = np.searchsorted(ts, starts - 1e-9, side="left")
    hi = np.searchsorted(ts, starts + window - 1e-9, side="left")
    return lo, hi


def step_at(step_times: np.ndarray, t: float) -> int:
    """Index of the last sampled step at or before time t (the first step before any): what a live stream
    would be showing at t."""
    return min(max(0, int(np.searchsorted(step_times, t + 1e-9, side="right")) - 1), max(0, len(step_times) - 1))


def smooth_probs(probs: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average over k windows along time (k <= 1: unchanged)."""
    if k <= 1 or len(probs) < 2:
        return probs
    kernel = np.ones(k) / k
    pad = np.pad(probs, ((k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(pad[:, c], kernel, mode="valid") for c in range(probs.shape[1])], 1)


@dataclass
class Segment:
    start: float   # seconds
    end: float     # seconds
    label: str
    prob: float    # mean probability of `label` over the segment's windows

    def to_dict(self) -> dict:
        return dict(start=round(self.start, 3), end=round(self.end, 3), label=self.label, prob=round(self.prob, 4))


def make_segments(times: np.ndarray, probs: np.ndarray, classes: list[str], window: float, stride: float,
                  duration: float, smooth: int = 3, min_duration: float = 1.0) -> list[Segment]:
    """Merge consecutive windows with the same (smoothed) top label into segments.

    Window i stands for the stride-long span around its centre; segments shorter than min_duration
    are absorbed by a neighbour, so a long video reads as a handful of lines.
    """
    if len(times) == 0:
        return []
    sm = smooth_probs(probs, smooth)
    labels = sm.argmax(1)
    centres = times + min(window, duration) / 2
    bounds = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [duration]])
    runs = []  # [start_window, end_window_exclusive, label]
    for i, lab in enumerate(labels):
        if runs and runs[-1][2] == lab:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, lab])
    changed = True
    while changed and len(runs) > 1:  # absorb the shortest too-short run into its longer neighbour
        changed = False
        lengths = [bounds[b] - bounds[a] for a, b, _ in runs]
        i = int(np.argmin(lengths))
        if lengths[i] < min_duration:
            j = i - 1 if i == len(runs) - 1 or (i > 0 and lengths[i - 1] >= lengths[i + 1]) else i + 1
            lo, hi = min(i, j), max(i, j)
            runs[lo] = [runs[lo][0], runs[hi][1], runs[j][2]]
            del runs[hi]
            # neighbours that now share a label become one run
            k = 0
            while k < len(runs) - 1:
                if runs[k][2] == runs[k + 1][2]:
                    runs[k][1] = runs[k + 1][1]
                    del runs[k + 1]
                else:
                    k += 1
            changed = True
    return [Segment(float(bounds[a]), float(bounds[b]), classes[lab], float(sm[a:b, lab].mean()))
            for a, b, lab in runs]


# ----------------------------------------------------------------------------- results

@dataclass
class VideoPrediction:
    path: str
    classes: list[str]
    topk: list[tuple[str, float]]          # clip-level, best first
    duration: float                        # seconds
    frames: int                            # frames decoded (sampled)
    fps: float                             # the video's own frame rate
    window_times: np.ndarray               # (W,) window start times, seconds
    window_probs: np.ndarray               # (W, C) class probabilities per window
    segments: list[Segment]
    timing: dict                           # frames_decoded, frames_encoded, decode_wait_s, backbone_s, head_s
    step_times: np.ndarray = field(default_factory=lambda: np.zeros(0))       # (T,) sampled timestamps
    step_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (T, C) causal per-step probs
    next_probs: np.ndarray | None = None    # (T, C) next-event probabilities per step (next-event models)
    time_to_end: np.ndarray | None = None   # (T,) predicted seconds until the current action ends
    frames_expected: int = 0                # sampled frames the container's frame count implies
    warning: str = ""                       # decoding fell short (video.decode_warning); '' when it did not

    def next_event(self, i: int = -1) -> dict | None:
        """The predicted next event at step i (default: the last step, i.e. after the whole video)."""
        if self.next_probs is None or not len(self.next_probs):
            return None
        j = int(self.next_probs[i].argmax())
        d = dict(label=self.classes[j], prob=round(float(self.next_probs[i, j]), 4),
                 current=self.classes[int(self.step_probs[i].argmax())])
        if self.time_to_end is not None:
            d["in_s"] = round(float(self.time_to_end[i]), 3)  # expected time until it starts
        return d

    def to_dict(self, timeline: bool = True) -> dict:
        d = dict(path=self.path, label=self.topk[0][0], prob=round(self.topk[0][1], 4),
                 topk=[dict(label=lbl, prob=round(p, 4)) for lbl, p in self.topk],
                 duration=round(self.duration, 3), frames=self.frames, fps=round(self.fps, 3),
                 frames_expected=self.frames_expected, frames_decoded=self.frames, warning=self.warning,
                 timing={k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.timing.items()})
        if self.next_probs is not None:
            d["next"] = self.next_event()
        if timeline:
            d["segments"] = [s.to_dict() for s in self.segments]
            d["timeline"] = dict(times=[round(float(t), 3) for t in self.window_times], classes=self.classes,
                                 probs=np.round(self.window_probs, 4).tolist())
            if self.next_probs is not None:  # what the model expects next, at every sampled step
                d["next_timeline"] = [dict(t=round(float(t), 3), **self.next_event(i))
                                      for i, t in enumerate(self.step_times)]
        return d


@dataclass
class StepResult:
    timestamp: float
    encoded: bool                      # False when this frame was skipped by the rate limit
    topk: list[tuple[str, float]]      # current (optionally smoothed) top-k of the per-step output
    probs: np.ndarray                  # (C,) per-step probabilities (smoothed when smoothing is on)
    clip_probs: np.ndarray             # (C,) probabilities of the clip seen so far
    latency_ms: float                  # backbone + head time for this frame
    steps: int                         # encoded frames since the last reset
    next_topk: list[tuple[str, float]] | None = None  # next-event models: what happens next, best first
    next_probs: np.ndarray | None = None              # (C,) next-event probabilities (unsmoothed)
    time_to_end: float | None = None                  # predicted seconds until the current action ends


# ----------------------------------------------------------------------------- engines' shared part

class VideoPredictorBase:
    """predict(video) -> VideoPrediction. Subclasses set classes, vcfg (decoding), encoder (a
    views.FrameEncoder), window, stride, topk, smooth, min_segment, and implement _outputs and
    _window_clip_logits; _clip_probs may differ (multi-clip testing)."""

    classes: list[str]

    def encode(self, video: str | Path) -> tuple[np.ndarray, np.ndarray, object, dict]:
        """Decode (prefetched, chunked) and encode: features (T,D), timestamps (T,), info, timing."""
        info, chunks = open_frames(video, **video_kwargs(self.vcfg))
        self.encoder.reset()
        feats, times = [], []
        t_dec = t_bb = 0.0
        t0 = time.perf_counter()
        for frames, ts in prefetch(chunks):
            t1 = time.perf_counter()
            t_dec += t1 - t0  # time spent waiting for decoded frames (hidden when prefetch keeps up)
            feats.append(self.encoder.encode(frames))
            times.append(ts)
            t0 = time.perf_counter()
            t_bb += t0 - t1
        f, t = np.concatenate(feats), np.concatenate(times)
        return f, t, info, dict(frames_decoded=len(t), frames_encoded=len(f), decode_wait_s=t_dec,
                                backbone_s=t_bb)

    def _outputs(self, feats: np.ndarray) -> Outputs:
        raise NotImplementedError

    def _window_clip_logits(self, windows: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _clip_probs(self, feats: np.ndarray, out: Outputs) -> np.ndarray:
        return softmax(out.clip)

    def predict_features(self, feats: np.ndarray, ts: np.ndarray, duration: float, path: str = "",
                         fps: float = 0.0, timing: dict | None = None, info=None) -> VideoPrediction:
        """info: the video's VideoInfo, for frames_expected and the decoding warning."""
        t0 = time.perf_counter()
        out = self._outputs(feats)
        clip = self._clip_probs(feats, out)
        starts = window_starts(duration, self.window, self.stride)
        lo, hi = window_steps(ts, starts, self.window)  # each window reuses the already-encoded frames
        keep = np.flatnonzero(hi > lo)
        probs = np.zeros((0, len(self.classes)), np.float32)
        if len(keep):  # windows built batch by batch: memory flat in the video's length
            probs = np.concatenate([softmax(self._window_clip_logits([feats[lo[i]:hi[i]] for i in keep[b:b + 256]]))
                                    for b in range(0, len(keep), 256)])
        starts = starts[keep]
        segments = make_segments(starts, probs, self.classes, self.window, self.stride, duration,
                                 self.smooth, self.min_segment)
        timing = dict(timing or {}, head_s=time.perf_counter() - t0)
        return VideoPrediction(str(path), self.classes, topk_of(clip, self.classes, self.topk), duration, len(ts),
                               fps, starts, probs, segments, timing, ts, softmax(out.steps),
                               None if out.next is None else softmax(out.next), out.time,
                               frames_expected=info.frames_expected if info else 0,
                               warning=decode_warning(info, len(ts)) if info else "")

    def predict(self, video: str | Path) -> VideoPrediction:
        feats, ts, info, timing = self.encode(video)
        return self.predict_features(feats, ts, info.duration, str(video), info.fps, timing, info)


class StreamPredictorBase:
    """push(frame_rgb, timestamp) -> StepResult with the state carried across pushes. Frames are
    encoded at the model's sampling rate (fps) by timestamp, or every n-th frame with every=n; the
    others return the last result with encoded=False. Subclasses implement _step and _reset_state."""

    def _setup(self, classes: list[str], fps: float, every: int, smooth: float, topk: int) -> None:
        self.classes = list(classes)
        self.fps, self.every, self.smooth = fps, every, smooth
        self.topk = min(topk, len(self.classes))
        self.latencies = deque(maxlen=1000)
        self.reset()

    def _step(self, frame_rgb: np.ndarray) -> Outputs:
        raise NotImplementedError

    def _reset_state(self) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Start a new sequence: clear the head's state, smoothing and the rate limiter."""
        self._reset_state()
        self.n_pushed = 0
        self.n_steps = 0
        self.rate = RateLimiter(self.fps, self.every)
        self.ema = None
        self.last = None

    def push(self, frame_rgb: np.ndarray, timestamp: float) -> StepResult:
        self.n_pushed += 1
        ts = float(timestamp)
        if not self.rate.take(ts) and self.last is not None:
            return self._skipped(ts)
        t0 = time.perf_counter()
        result = self._encode_step(frame_rgb, ts)
        latency = (time.perf_counter() - t0) * 1000
        self.latencies.append(latency)
        self.n_steps += 1
        self.last = self._finish(result, ts, latency)
        return self.last

    def _skipped(self, ts: float):
        """What a frame the rate limit skips gives: the last result, marked not encoded."""
        r = self.last
        return StepResult(ts, False, r.topk, r.probs, r.clip_probs, 0.0, r.steps, r.next_topk, r.next_probs,
                          r.time_to_end)

    def _encode_step(self, frame_rgb: np.ndarray, ts: float):
        """The work of one encoded frame (timed as its latency)."""
        return self._step(frame_rgb)

    def _finish(self, out: Outputs, ts: float, latency: float):
        """The result of one encoded frame from what _encode_step returned."""
        r, self.ema = self.step_result(out, ts, latency, self.n_steps, self.ema)
        return r

    def step_result(self, out: Outputs, timestamp: float, latency: float, steps: int,
                    ema: np.ndarray | None) -> tuple[StepResult, np.ndarray | None]:
        """(the StepResult of one step's Outputs, the new moving average of its probabilities)."""
        probs = softmax(out.steps)[0]
        next_probs = None if out.next is None else softmax(out.next)[0]
        if self.smooth > 0:  # exponential moving average of the per-step probabilities
            ema = probs if ema is None else self.smooth * ema + (1 - self.smooth) * probs
            probs = ema
        return StepResult(float(timestamp), True, topk_of(probs, self.classes, self.topk), probs,
                          softmax(out.clip)[0], latency, steps,
                          None if next_probs is None else topk_of(next_probs, self.classes, self.topk),
                          next_probs, None if out.time is None else float(out.time[0])), ema
