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
from pathlib import Path

import numpy as np

from pipeline.data.views import reads_people
from pipeline.errors import ConfigError
from pipeline.models.person import Person
from pipeline.models.pose_mediapipe import MEDIAPIPE, MediaPipePoses, mediapipe_id, mediapipe_people

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "people-pose.pt"


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


def detector_id(dcfg, views=None) -> str:
    """What pose features depend on, for the feature cache: the weights (their content when a local file,
    else the name) and the settings that change which people are found and how they are tracked."""
    import hashlib
    import json

    if dcfg.weights == MEDIAPIPE:  # views: how many people it looks for
        return mediapipe_id(mediapipe_people(views))
    path = Path(weights_path(dcfg.weights))
    what = hashlib.sha1(path.read_bytes()).hexdigest()[:16] if path.is_file() else str(dcfg.weights)
    return json.dumps(dict(weights=what, tracker=dcfg.tracker, conf=dcfg.conf, iou=dcfg.iou, imgsz=dcfg.imgsz,
                           classes=list(dcfg.classes)), sort_keys=True)


def pose_tracker(views, dcfg, device: str = "cpu"):
    """The person finder of views.FrameEncoder when views.streams has the pose stream or views.region=people,
    else None: a PersonTracker, or with detector.weights=mediapipe MediaPipe's BlazePose (models.pose_mediapipe,
    one or two people per frame: mediapipe_people)."""
    if views is None or not reads_people(views):
        return None
    return MediaPipePoses(mediapipe_people(views)) if dcfg.weights == MEDIAPIPE else PersonTracker(dcfg, device)


class PersonTracker:
    """update(frame RGB) -> the people tracked in it. One video (or stream) at a time: reset() between."""

    def __init__(self, dcfg, device: str = "cpu"):
        if dcfg.weights == MEDIAPIPE:
            raise ConfigError("detector.weights=mediapipe gives the pose stream's keypoints, not people with ids "
                              "that last: per-person results need Ultralytics detect or pose weights")
        self.cfg = dcfg
        self.model = load_detector(dcfg.weights)
        self.pose = self.model.task == "pose"
        self.device = "cpu" if device in ("auto", "") else device
        args = getattr(self.model, "overrides", {}) or {}
        self.imgsz = dcfg.imgsz or int(args.get("imgsz") or 640)
        self.relink = Relinker(dcfg.relink)
        self.reset()

    def reset(self) -> None:
        self.fresh = True  # the next update starts a new tracker: ids from 1 again
        self.relink.reset()

    def alive(self) -> set[int]:
        """Ids the tracker still holds: tracked now, or lost but still looked for (Ultralytics keeps a lost
        track for the tracker's track_buffer frames, then removes it; detector.relink keeps a person's id for
        that many frames after)."""
        trackers = getattr(getattr(self.model, "predictor", None), "trackers", None)
        if self.fresh or not trackers:
            return set()
        t = trackers[0]
        return self.relink.alive({int(s.track_id) for s in [*t.tracked_stracks, *t.lost_stracks]})

    def update(self, frame: np.ndarray) -> list[Person]:
        """The people in a frame (RGB), with ids that last (the tracker's, re-linked: Relinker)."""
        return self.relink.update(frame, self._track(frame))

    def _track(self, frame: np.ndarray) -> list[Person]:
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


def appearance(frame: np.ndarray, box) -> np.ndarray:
    """(72,) unit vector: the hue-saturation histogram (18 x 4 bins, square-rooted) of a box of an RGB frame."""
    import cv2

    H, W = frame.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(W, max(int(round(box[2])), x1 + 2)), min(H, max(int(round(box[3])), y1 + 2))
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[y1:y2, x1:x2]), cv2.COLOR_RGB2HSV)
    h = np.sqrt(cv2.calcHist([hsv], [0, 1], None, [18, 4], [0, 180, 0, 256]).ravel())
    return h / (np.linalg.norm(h) + 1e-9)


class Relinker:
    """Gives a person back their id when the tracker loses them and starts a new track for them (two people
    crossing: one box for both for a while): a new track that starts within RELINK_DISTANCE box heights of
    where a person not in view was last seen, at most `steps` sampled frames ago, and whose colour histogram
    is at least RELINK_SIMILARITY alike, takes that person's id. Causal (streaming equals offline); ids it
    hands out count from 1 per video. steps=0: the tracker's own ids."""
    RELINK_DISTANCE = 1.5
    RELINK_SIMILARITY = 0.5

    def __init__(self, steps: int):
        self.steps = steps
        self.reset()

    def reset(self) -> None:
        self.ids: dict[int, int] = {}     # the tracker's id -> the person's id
        self.seen: dict[int, tuple] = {}  # the person's id -> (step last seen, box, appearance)
        self.step = 0

    def alive(self, tracker_ids: set[int]) -> set[int]:
        """The people's ids of the tracker's live ids, and of people seen within the last `steps` frames."""
        if not self.steps:
            return tracker_ids
        return {self.ids[i] for i in tracker_ids if i in self.ids} | \
            {pid for pid, (st, _, _) in self.seen.items() if self.step - st <= self.steps}

    def update(self, frame: np.ndarray, people: list[Person]) -> list[Person]:
        self.step += 1
        if not self.steps:
            return people
        now, used = {p.track_id for p in people}, set()
        for p in people:
            look = appearance(frame, p.box)
            if p.track_id not in self.ids:
                taken = {self.ids[i] for i in now if i in self.ids}  # people in view under another track
                self.ids[p.track_id] = self._match(p.box, look, taken)
            if self.ids[p.track_id] in used:  # a lost track the tracker found again beside its re-link
                self.ids[p.track_id] = max(self.ids.values()) + 1
            pid = self.ids[p.track_id]
            used.add(pid)
            old = self.seen.get(pid)
            mean = look if old is None else 0.8 * old[2] + 0.2 * look  # the look of the last few frames
            self.seen[pid] = (self.step, np.asarray(p.box, np.float32), mean / (np.linalg.norm(mean) + 1e-9))
            p.track_id = pid
        # people gone for longer than `steps` can be neither re-linked nor alive: forget them, or a stream that
        # runs for hours would look through everyone it ever saw at each new track
        self.seen = {pid: v for pid, v in self.seen.items() if self.step - v[0] <= self.steps}
        return people

    def _match(self, box, look: np.ndarray, taken: set[int]) -> int:
        """The id of the lost person this new track is, or a new id."""
        best, score = None, self.RELINK_SIMILARITY
        centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
        for pid, (st, b, a) in self.seen.items():
            if pid in taken or st == self.step or self.step - st > self.steps:
                continue
            if np.linalg.norm(np.array([b[0] + b[2], b[1] + b[3]]) / 2 - centre) > self.RELINK_DISTANCE * (b[3] - b[1]):
                continue
            s = float(a @ look)
            if s > score:
                best, score = pid, s
        return best if best is not None else max([0, *self.ids.values()]) + 1

