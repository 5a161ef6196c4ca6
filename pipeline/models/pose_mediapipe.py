"""Real people's poses offline: MediaPipe's BlazePose, up to two people per frame.

detector.weights=mediapipe. The mediapipe 0.10.21 wheel ships BlazePose's person detector and full
landmark model inside it (mediapipe/modules/pose_*), so nothing is downloaded at run time - unlike
Ultralytics' pose weights or MediaPipe's newer tasks API. That wheel pins protobuf<5 and numpy<2,
which would break onnx and torch here, so scripts/install.sh installs it without its dependencies (README,
"Real people offline"); it runs with protobuf 6 once MessageFactory.GetPrototype is put back.

BlazePose tracks one person. The second is the one it finds once the first one's column of the frame
is painted grey: two people side by side (an interaction) are both found, two people one behind the
other are not.

    poses = MediaPipePoses()
    for frame in frames:          # RGB uint8 (H, W, 3), consecutive sampled frames of one video
        people = poses.update(frame)   # [models.person.Person], keypoints (17, 3) in COCO's order
    poses.reset()                 # before the next video
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import warnings

import numpy as np

from pipeline.errors import ConfigError
from pipeline.models.person import Person

MEDIAPIPE = "mediapipe"
VERSION = "0.10.21"  # the last wheel with the legacy solutions and their models inside
# BlazePose's 33 landmarks -> COCO's 17 keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles), the order of every other pose model in vap
BLAZE_TO_COCO = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
PEOPLE = 2  # poses per frame at most: an interaction's two people
CONFIDENCE = 0.3  # BlazePose's detection and tracking confidence: lower than its 0.5, for people seen small
MASK_MARGIN = 0.15  # the first person's column grows by this share of its width on each side before it is painted
VISIBLE = 0.5  # landmarks at least this visible make the person's box


def _import_mediapipe():
    try:
        from google.protobuf import message_factory

        if not hasattr(message_factory.MessageFactory, "GetPrototype"):  # removed in protobuf 5
            message_factory.MessageFactory.GetPrototype = lambda self, d: message_factory.GetMessageClass(d)
        import mediapipe as mp

        return mp.solutions.pose
    except Exception as e:  # not installed, or a wheel without the legacy solutions
        raise ConfigError(f"detector.weights=mediapipe needs mediapipe {VERSION} with its pose models: "
                          f"pip install --no-deps mediapipe=={VERSION} absl-py, then pip install 'protobuf>=6.31,<7' "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None


_LIBC = ctypes.CDLL(None)


@contextlib.contextmanager
def _native_output_muted():
    """Mute file descriptors 1 and 2 around MediaPipe's calls: its graphs log through absl and TFLite's printf
    before anything configures them (when a graph starts or stops, when its detector first runs), which no
    environment variable turns off. C's buffers are flushed inside, so nothing comes out later. What another
    thread writes to them meanwhile is lost too: the decoder's thread only logs a broken file, which is also
    an error of its own."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        yield
    finally:
        _LIBC.fflush(None)
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)


def mediapipe_people(views) -> int:
    """Poses per frame that the views read: two for views.pose_people=2 or views.region=people (the pair's
    union), else one - the second pass, which on a one-person clip runs the person detector on every frame
    and finds nobody, is not paid for."""
    return PEOPLE if getattr(views, "pose_people", 1) == 2 or getattr(views, "region", "motion") == "people" else 1


def mediapipe_id(people: int = PEOPLE) -> str:
    """What the poses depend on, for the feature cache."""
    return f"{MEDIAPIPE}-{VERSION}-full-tracked-people{people}-conf{CONFIDENCE}-mask{MASK_MARGIN}"


class MediaPipePoses:
    """update(frame RGB) -> up to `people` (1 or 2) models.person.Person (ids 1, 2: the order found, not
    tracked)."""

    pose = True

    def __init__(self, people: int = PEOPLE, conf: float = CONFIDENCE):
        self.solution = _import_mediapipe()
        self.people, self.conf = people, conf
        self.reset()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit
            pass

    def close(self) -> None:
        with _native_output_muted():
            for model in getattr(self, "models", []):
                model.close()
        self.models = []

    def reset(self) -> None:
        self.close()
        # tracking mode: each model runs the detector only when it lost its person, else the landmark
        # model on the region of the previous frame's landmarks; a fresh model per video
        with _native_output_muted(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its options code reads protobuf's label()
            self.models = [self.solution.Pose(static_image_mode=False, model_complexity=1,
                                              min_detection_confidence=self.conf, min_tracking_confidence=self.conf)
                           for _ in range(self.people)]

    def update(self, frame: np.ndarray) -> list[Person]:
        H, W = frame.shape[:2]
        image, out = np.ascontiguousarray(frame), []
        for i, model in enumerate(self.models):
            with _native_output_muted():  # a graph logs when it starts, and its detector when it first runs
                res = model.process(image)
            if res.pose_landmarks is None:
                break
            lm = res.pose_landmarks.landmark
            k33 = np.array([[p.x * W, p.y * H, p.visibility] for p in lm], np.float32)  # (33, 3) pixels
            seen = k33[k33[:, 2] >= VISIBLE] if (k33[:, 2] >= VISIBLE).sum() >= 4 else k33
            box = np.array([seen[:, 0].min(), seen[:, 1].min(), seen[:, 0].max(), seen[:, 1].max()], np.float32)
            box = np.clip(box, 0, [W, H, W, H])
            out.append(Person(i + 1, box, float(k33[:, 2].mean()), k33[BLAZE_TO_COCO]))
            if i + 1 < len(self.models):  # paint this person's column grey for the next model
                m = MASK_MARGIN * (box[2] - box[0])
                x1, x2 = int(max(0, box[0] - m)), int(min(W, box[2] + m + 1))
                image = image.copy()
                image[:, x1:x2] = 128
        return out
