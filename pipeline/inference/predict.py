"""Inference with PyTorch: `Predictor` for files (clip top-k, a timeline over long videos, segments)
and `StreamingPredictor` for webcams and streams (one backbone frame + one LSTM step per push).

Everything is rebuilt from the checkpoint alone (its saved config and backbone spec). The timeline
encodes each sampled frame once and runs only the cheap head over overlapping windows. Results,
the timeline and the streaming bookkeeping are results.py's, shared with the ONNX Runtime engine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.data.video import decode_warning, open_frames, prefetch, video_kwargs
from pipeline.data.views import FrameEncoder
from pipeline.errors import CheckpointError
from pipeline.inference.people import (
    PeopleEncoder,
    PeoplePrediction,
    PeopleStreams,
    check_per_person,
    person_predictions,
)
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
from pipeline.models.detector import PersonTracker, pose_tracker
from pipeline.models.heads import crop_average, pad_batch


def _np(x: torch.Tensor | None) -> np.ndarray | None:
    return None if x is None else x.float().cpu().numpy()


class _Model:
    """What both predictors rebuild from a checkpoint: config, classes, backbone (on its runtime),
    the views through it, and the head; with per_person, the person tracker and per-track views too."""

    def _load(self, ckpt: dict, device: str, overrides=(), per_person: bool = False) -> None:
        """overrides: prediction-time settings (key=value strings or a dict), e.g. backbone.runtime=onnxruntime."""
        ckpt, device = with_overrides(ckpt, overrides, device)
        self.ckpt = ckpt
        self.cfg = config_of(ckpt)
        self.vcfg = self.cfg.video
        self.classes = list(ckpt["classes"])
        self.per_person = per_person
        if per_person:
            check_per_person(self.cfg.views.streams)
        self.backbone = backbone_of(ckpt, device)
        # people: one tracker for the pose stream's keypoints and for per-person tracks
        tracker = PersonTracker(self.cfg.detector, str(self.backbone.device)) if per_person else \
            pose_tracker(self.cfg.views, self.cfg.detector, str(self.backbone.device))
        self.encoder = FrameEncoder(self.backbone, self.cfg.views, people=tracker)  # views.streams through the backbone
        self.device = self.backbone.device
        self.head = head_of(ckpt, self.device)
        self.people = PeopleEncoder(self.encoder, tracker) if per_person else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", **kwargs):
        """kwargs: the constructor's, e.g. overrides=["backbone.runtime=onnxruntime"]."""
        return cls(load_checkpoint(path), device, **kwargs)


class Predictor(_Model, VideoPredictorBase):
    """Offline prediction on video files. `Predictor.from_checkpoint("runs/x/best.pt").predict("a.mp4")`."""

    def __init__(self, ckpt: dict, device: str = "auto", window: float = 2.0, stride: float = 0.5,
                 topk: int = 5, smooth: int = 3, min_segment: float = 1.0, overrides=(), per_person: bool = False):
        """per_person: predict() gives a PeoplePrediction (inference/people.py): people detected and tracked
        (config detector.*), each track through its own views and its own pass of the head."""
        self._load(ckpt, device, overrides, per_person)
        self.window, self.stride, self.topk = window, stride, min(topk, len(self.classes))
        self.smooth, self.min_segment = smooth, min_segment

    def predict(self, video: str | Path):
        if not self.per_person:
            return super().predict(video)
        info, chunks = open_frames(video, **video_kwargs(self.vcfg))
        self.people.reset()
        n, t0 = 0, time.perf_counter()
        for frames, ts in prefetch(chunks):
            self.people.encode(frames, ts)
            n += len(ts)
        return self.people_prediction(str(video), info, n, dict(encode_s=time.perf_counter() - t0))

    def people_prediction(self, path: str, info, frames: int, timing: dict) -> PeoplePrediction:
        """The PeoplePrediction of what self.people accumulated over a video."""
        hw = self.people.frame_hw or (info.height, info.width)
        scale = (info.width / hw[1] if hw[1] else 1.0, info.height / hw[0] if hw[0] else 1.0)
        t0 = time.perf_counter()
        people = person_predictions(self, self.people.tracks, self.cfg.detector.min_steps, scale, path)
        timing = dict(timing, detect_s=self.people.detect_s, head_s=time.perf_counter() - t0)
        return PeoplePrediction(path, self.classes, people, info.duration, frames, info.fps, timing,
                                decode_warning(info, frames), info.frames_expected, (info.width, info.height),
                                np.asarray(self.people.times))

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
                 smooth: float = 0.0, topk: int = 5, overrides=(), per_person: bool = False):
        """per_person: push() gives a PeopleStepResult: one StepResult per tracked person, each with its own
        LSTM state (created when the track appears, dropped when the tracker drops the track: Ultralytics keeps a
        lost track for its tracker config's track_buffer frames)."""
        self._load(ckpt, device, overrides, per_person)
        if not getattr(self.head, "can_stream", False):
            raise CheckpointError("this checkpoint's head is bidirectional and cannot stream; "
                                  "retrain with head.bidirectional=false")
        self.streams = PeopleStreams(self.people) if per_person else None
        fps = fps if fps is not None else (self.vcfg.fps if self.vcfg.sampling == "fps" else 0.0)
        self._setup(self.classes, fps, every, smooth, topk)

    def _reset_state(self) -> None:
        self.state = None
        self.encoder.reset()
        if self.per_person:
            self.streams.reset()

    # per_person: the same push (rate limit, latency), one head state per tracked person
    def _skipped(self, ts: float):
        if not self.per_person:
            return super()._skipped(ts)
        return PeopleStepResult(ts, False, self.last.people, 0.0, self.last.steps)

    @torch.no_grad()
    def _encode_step(self, frame_rgb: np.ndarray, ts: float):
        if not self.per_person:
            return super()._encode_step(frame_rgb, ts)
        s, people = self.streams, []
        for p, f in s.people.step_features(frame_rgb):
            x = torch.from_numpy(f[None]).to(self.device)  # (1, streams * D)
            out, s.state[p.track_id] = self.head.step(x, s.state.get(p.track_id))
            s.steps[p.track_id] = s.steps.get(p.track_id, 0) + 1
            r, s.ema[p.track_id] = self.step_result(Outputs(_np(out.steps), _np(out.clip), _np(out.next),
                                                            _np(out.time)), ts, 0.0, s.steps[p.track_id],
                                                    s.ema.get(p.track_id))
            people.append(PersonStep(p.track_id, p.box, p.score, r))
        s.drop_ended()
        return people

    def _finish(self, out, ts: float, latency: float):
        if not self.per_person:
            return super()._finish(out, ts, latency)
        return PeopleStepResult(ts, True, out, latency, self.n_steps)

    @torch.no_grad()
    def _step(self, frame_rgb: np.ndarray) -> Outputs:
        x = torch.from_numpy(self.encoder.encode(frame_rgb[None])).to(self.device)  # (1, streams * D)
        out, self.state = self.head.step(x, self.state)
        return Outputs(_np(out.steps), _np(out.clip), _np(out.next), _np(out.time))


@dataclass
class PersonStep:
    """One tracked person at one streaming step."""
    track_id: int
    box: np.ndarray      # (4,) x1, y1, x2, y2 in the pushed frame's pixels
    score: float         # detector score
    result: StepResult   # this person's own step (its LSTM state carried since the track appeared)


@dataclass
class PeopleStepResult:
    """push() of a StreamingPredictor(per_person=True)."""
    timestamp: float
    encoded: bool                   # False when this frame was skipped by the rate limit (people as before)
    people: list = field(default_factory=list)  # [PersonStep]
    latency_ms: float = 0.0         # detection + tracking + backbone + heads for this frame
    steps: int = 0                  # encoded frames since the last reset
