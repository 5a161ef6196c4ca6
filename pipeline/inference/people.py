"""Per-person results: who does what. People are detected and tracked (models/detector.py: Ultralytics YOLO
+ ByteTrack/BoT-SORT); each track gets its own views (the crop and motion streams around its box, one
views.ViewRenderer per track) through the backbone, and its own pass of the head (offline) or its own
LSTM state (streaming: created when the track appears, dropped when the tracker drops the track).

    PeopleEncoder      frames -> per-track features (what Predictor(per_person=True) and vap predict
                       --per-person accumulate over a video)
    person_predictions the head over each track -> [PersonPrediction]
    PeopleStreams      StreamingPredictor(per_person=True): one state per track, one push per frame
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.data.views import PERSON_STREAMS, ViewRenderer
from pipeline.errors import ConfigError
from pipeline.inference.results import step_at


def check_per_person(streams) -> None:
    """A model that reads only the whole frame would give every person the same answer."""
    if not any(k in PERSON_STREAMS for k in streams):
        raise ConfigError(f"per-person prediction needs a model trained on person views (views.streams with crop, "
                          f"diff, mhi, flow or pose); this one reads {list(streams)}")


@dataclass
class Track:
    """What one tracked person collected over the sampled frames of a video."""
    track_id: int
    times: list = field(default_factory=list)      # seconds
    boxes: list = field(default_factory=list)      # (4,) x1, y1, x2, y2 in decoded-frame pixels
    scores: list = field(default_factory=list)
    feats: list = field(default_factory=list)      # (D,) float32 per step


class PeopleEncoder:
    """Detect, track and encode the people of consecutive sampled frames of one video (reset() between
    videos). encode(frames (T,H,W,3), ts (T,)) accumulates into .tracks {track_id: Track}."""

    def __init__(self, encoder, tracker):
        self.encoder = encoder  # a views.FrameEncoder: its backbone per stream and its view settings
        self.tracker = tracker  # a models.detector.PersonTracker
        self.reset()

    def reset(self) -> None:
        self.tracker.reset()
        self.renderers: dict[int, ViewRenderer] = {}
        self.tracks: dict[int, Track] = {}
        self.frame_hw = None
        self.detect_s = 0.0
        self.times: list[float] = []  # every sampled timestamp of the video, people or not

    def _renderer(self, track_id: int) -> ViewRenderer:
        r = self.renderers.get(track_id)
        if r is None:
            enc = self.encoder
            r = self.renderers[track_id] = ViewRenderer(enc.image_streams, enc.renderer.cfg, enc.renderer.size)
        return r

    def step_features(self, frame: np.ndarray) -> list[tuple]:
        """[(Person, features (D,))] of the people tracked in one frame (streaming)."""
        return self._encode(frame[None])[0]

    def _encode(self, frames: np.ndarray) -> list[list[tuple]]:
        """Per frame, [(Person, features (D,))]: the views of every person of every frame rendered first, then
        each stream through the backbone in one batch."""
        self.frame_hw = frames.shape[1:3]
        found, items = [], []
        for f in frames:
            t0 = time.perf_counter()
            people = self.tracker.update(f)
            self.detect_s += time.perf_counter() - t0
            found.append(people)
            items += [(self._renderer(p.track_id), f, p.box, p) for p in people]  # pose: the same detection
        if not items:
            return [[] for _ in frames]
        feats = self.encoder.encode_people(items)  # {stream: (N, D)}
        feats = np.concatenate([feats[k] for k in self.encoder.streams], 1)  # (N, streams * D)
        out, i = [], 0
        for people in found:
            out.append([(p, feats[i + j]) for j, p in enumerate(people)])
            i += len(people)
        return out

    def encode(self, frames: np.ndarray, ts: np.ndarray) -> None:
        self.times += [float(t) for t in ts]
        for per_frame, t in zip(self._encode(frames), ts):
            for p, f in per_frame:
                tr = self.tracks.setdefault(p.track_id, Track(p.track_id))
                tr.times.append(float(t))
                tr.boxes.append(p.box)
                tr.scores.append(p.score)
                tr.feats.append(f)


@dataclass
class PersonPrediction:
    """One tracked person over a video: where (boxes) and what (a VideoPrediction of its own steps)."""
    track_id: int
    start: float                 # seconds: first and last sampled frame the track was seen on
    end: float
    times: np.ndarray            # (T,) its sampled timestamps
    boxes: np.ndarray            # (T, 4) x1, y1, x2, y2 in the video's own pixels
    scores: np.ndarray           # (T,) detector scores
    prediction: object           # VideoPrediction of the track's steps (times in the video's seconds)

    def sampled_boxes(self, every: float) -> list[dict]:
        """[{t, box}] every `every` seconds of the track (and its last box)."""
        keep, due = [], -1.0
        for i, t in enumerate(self.times):
            if t >= due - 1e-9 or i == len(self.times) - 1:
                keep.append(i)
                due = t + every
        return [dict(t=round(float(self.times[i]), 3), box=[round(float(v), 1) for v in self.boxes[i]]) for i in keep]

    def box_at(self, t: float) -> np.ndarray | None:
        """The box of the last sampled frame at or before t, while the track lasts (None outside it)."""
        if t < self.start - 1e-9 or t > self.end + 0.5:
            return None
        return self.boxes[step_at(self.times, t)]

    def box_index(self, t: float, tol: float = 1e-3) -> int | None:
        """The index of the track's step at sampled time t, or None when the track was not seen then."""
        i = int(np.searchsorted(self.times, t - tol))
        return i if i < len(self.times) and abs(self.times[i] - t) <= tol else None

    def segment_label_at(self, t: float) -> str:
        """The label of the track's segment (windows + smoothing, offline) that holds time t."""
        segs = self.prediction.segments
        for s in segs:
            if s.start - 1e-6 <= t < s.end:
                return s.label
        return segs[-1].label if segs else ""

    def label_at(self, t: float) -> tuple[str, float]:
        """The track's causal per-step label at time t (what a live stream would have shown)."""
        p = self.prediction
        probs = p.step_probs[step_at(p.step_times, t)]
        j = int(probs.argmax())
        return p.classes[j], float(probs[j])

    def to_dict(self, box_every: float = 0.5, timeline: bool = True) -> dict:
        d = self.prediction.to_dict(timeline)
        for k in ("path", "timeline", "duration", "frames", "fps", "frames_expected", "frames_decoded", "warning",
                  "timing"):
            d.pop(k, None)
        return dict(track_id=self.track_id, start=round(self.start, 3), end=round(self.end, 3),
                    steps=len(self.times), **d, boxes=self.sampled_boxes(box_every))


def _shift(pred, t0: float):
    """A track's VideoPrediction made on times from its start, moved to the video's clock."""
    pred.window_times = pred.window_times + t0
    pred.step_times = pred.step_times + t0
    for s in pred.segments:
        s.start, s.end = s.start + t0, s.end + t0
    return pred


def person_predictions(predictor, tracks: dict, min_steps: int, scale: tuple[float, float] = (1.0, 1.0),
                       path: str = "") -> list[PersonPrediction]:
    """The head over each track of at least min_steps steps, in order of appearance. scale: (sx, sy) from
    decoded-frame pixels to the video's own."""
    out = []
    for tr in sorted(tracks.values(), key=lambda t: (t.times[0], t.track_id)):
        if len(tr.times) < min_steps:
            continue
        ts = np.asarray(tr.times)
        t0 = float(ts[0])
        dt = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.1
        feats = np.stack(tr.feats).astype(np.float32)  # (T, D)
        pred = predictor.predict_features(feats, ts - t0, float(ts[-1] - t0 + dt), path)
        boxes = np.stack(tr.boxes) * np.array([scale[0], scale[1], scale[0], scale[1]], np.float32)
        out.append(PersonPrediction(tr.track_id, t0, float(ts[-1]), ts, boxes, np.asarray(tr.scores),
                                    _shift(pred, t0)))
    return out


@dataclass
class PeoplePrediction:
    """predict(video) of a Predictor(per_person=True)."""
    path: str
    classes: list[str]
    people: list[PersonPrediction]
    duration: float
    frames: int
    fps: float
    timing: dict
    warning: str = ""
    frames_expected: int = 0
    size: tuple = ()             # (width, height) of the video's own frames: the boxes' pixels
    step_times: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (T,) every sampled timestamp

    def rows(self, fingerprint: str = "", box_every: float = 0.5, timeline: bool = True) -> list[dict]:
        """vap predict --per-person rows: one per track (track_id, start, end, label, topk, segments, boxes,
        ...) with what they share (path, duration, ...); a video where nobody was tracked gets one row with
        track_id None and tracks 0, so that a rerun knows it is done."""
        common = dict(path=self.path, fingerprint=fingerprint, tracks=len(self.people),
                      duration=round(self.duration, 3), frames=self.frames, fps=round(self.fps, 3),
                      frames_expected=self.frames_expected, frames_decoded=self.frames,
                      timing={k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.timing.items()})
        if not self.people:
            return [dict(common, track_id=None, label="", prob=0.0, topk=[],
                         warning=self.warning or "no person tracked")]
        return [dict(common, **p.to_dict(box_every, timeline), warning=self.warning) for p in self.people]


class PeopleStreams:
    """The per-person state of a StreamingPredictor(per_person=True): per track, its views (inside the
    PeopleEncoder), its head state, its smoothing and its last result; dropped when the tracker drops the
    track (so a person hidden for a moment and found again under the same id continues where it was, as
    offline)."""

    def __init__(self, people: PeopleEncoder):
        self.people = people
        self.reset()

    def reset(self) -> None:
        self.people.reset()
        self.state: dict[int, object] = {}   # track_id -> head state
        self.ema: dict[int, np.ndarray] = {}
        self.steps: dict[int, int] = {}

    def drop_ended(self) -> None:
        alive = self.people.tracker.alive()
        for tid in [k for k in self.state if k not in alive]:
            for d in (self.state, self.ema, self.steps, self.people.renderers):
                d.pop(tid, None)
