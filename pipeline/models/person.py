"""One person found in one frame: what every person detector gives (models.detector's Ultralytics tracker,
models.pose_mediapipe's BlazePose) and what the views and per-person results read."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Person:
    """One tracked person in one frame."""
    track_id: int
    box: np.ndarray                  # (4,) x1, y1, x2, y2 in frame pixels
    score: float
    keypoints: np.ndarray | None     # (17, 3) x, y (pixels), confidence in COCO's order; None for detect-only weights
