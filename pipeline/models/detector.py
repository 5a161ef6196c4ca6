"""People in a frame, with ids that last: an Ultralytics YOLO detector (detect or pose weights) and
Ultralytics' own trackers (ByteTrack, BoT-SORT), frame by frame.

    tracker = PersonTracker(cfg.detector)
    for frame in frames:               # RGB uint8 (H, W, 3), consecutive sampled frames of one video
        people = tracker.update(frame)  # [Person(track_id, box, score, keypoints)]
    tracker.reset()                     # before the next video

detector.weights=default is the file shipped in models/weights/ (training/detector.py made it from the
synthetic scenes; it knows stick figures, not real people); any Ultralytics weights name or path switches
to it, e.g. yolo11n-pose.pt for real footage. Ultralytics reads arrays as BGR (OpenCV's order): this
module converts, so the rest of vap stays RGB.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "people-pose.pt"


@dataclass
class Person:
    """One tracked person in one frame."""
    track_id: int
    box: np.ndarray                  # (4,) x1, y1, x2, y2 in frame pixels
    score: float
    keypoints: np.ndarray | None     # (17, 3) x, y (pixels), confidence; None for detect-only weights


def weights_path(weights: str) -> str:
    """The file (or Ultralytics name) that detector.weights names."""
    return str(DEFAULT_WEIGHTS) if weights in ("", "default") else weights


def load_detector(weights: str):
    """An ultralytics.YOLO of detector.weights; a clear error when a named file is missing offline."""
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from ultralytics import YOLO

    path = weights_path(weights)
    looks_local = os.sep in path or Path(path).exists()
    if looks_local and not Path(path).is_file():
        raise ConfigError(f"detector.weights: {path}: no such file")
    try:
        model = YOLO(path)
    except Exception as e:  # a download that failed offline, a file that is no Ultralytics checkpoint
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"detector.weights={weights}: cannot load ({first[:200]}); offline, use a local .pt file "
                          f"or detector.weights=default") from None
    if model.task not in ("detect", "pose"):
        raise ConfigError(f"detector.weights={weights}: a '{model.task}' model; person tracking needs detect "
                          f"or pose weights")
    return model


def detector_id(dcfg) -> str:
    """What pose features depend on, for the feature cache: the weights (their content when a local file,
    else the name) and the settings that change which people are found and how they are tracked."""
    import hashlib
    import json

    path = Path(weights_path(dcfg.weights))
    what = hashlib.sha1(path.read_bytes()).hexdigest()[:16] if path.is_file() else str(dcfg.weights)
    return json.dumps(dict(weights=what, tracker=dcfg.tracker, conf=dcfg.conf, iou=dcfg.iou, imgsz=dcfg.imgsz,
                           classes=list(dcfg.classes)), sort_keys=True)


def pose_tracker(views, dcfg, device: str = "cpu"):
    """A PersonTracker when views.streams has the pose stream (for views.FrameEncoder), else None."""
    return PersonTracker(dcfg, device) if views is not None and "pose" in views.streams else None


class PersonTracker:
    """update(frame RGB) -> the people tracked in it. One video (or stream) at a time: reset() between."""

    def __init__(self, dcfg, device: str = "cpu"):
        self.cfg = dcfg
        self.model = load_detector(dcfg.weights)
        self.pose = self.model.task == "pose"
        self.device = "cpu" if device in ("auto", "") else device
        args = getattr(self.model, "overrides", {}) or {}
        self.imgsz = dcfg.imgsz or int(args.get("imgsz") or 640)
        self.fresh = True

    def reset(self) -> None:
        self.fresh = True  # the next update starts a new tracker: ids from 1 again

    def alive(self) -> set[int]:
        """Ids the tracker still holds: tracked now, or lost but still looked for (Ultralytics keeps a lost
        track for the tracker's track_buffer frames, then removes it)."""
        trackers = getattr(getattr(self.model, "predictor", None), "trackers", None)
        if self.fresh or not trackers:
            return set()
        t = trackers[0]
        return {int(s.track_id) for s in [*t.tracked_stracks, *t.lost_stracks]}

    def update(self, frame: np.ndarray) -> list[Person]:
        c = self.cfg
        res = self.model.track(np.ascontiguousarray(frame[..., ::-1]), persist=not self.fresh, tracker=c.tracker,
                               conf=c.conf, iou=c.iou, imgsz=self.imgsz, classes=list(c.classes),
                               device=self.device, verbose=False)[0]
        self.fresh = False
        b = res.boxes
        if b is None or b.id is None or not len(b):
            return []
        ids = b.id.int().cpu().numpy()
        boxes = b.xyxy.float().cpu().numpy()
        scores = b.conf.float().cpu().numpy()
        kps = None
        if self.pose and res.keypoints is not None:
            kps = res.keypoints.data.float().cpu().numpy()  # (N, 17, 3)
        return [Person(int(ids[i]), boxes[i], float(scores[i]), None if kps is None else kps[i])
                for i in range(len(ids))]
