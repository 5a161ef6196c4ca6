"""Views of each sampled frame that go through the backbone (views.streams), features concatenated.

    frame  the whole frame (the plain recipe)
    crop   a square crop around the region that moves: the person, at the backbone's full resolution
    diff   the frame difference inside that crop: a motion stream (moving edges and silhouettes), tinted
           by the way it moves horizontally (views.diff_direction): red to the right, blue to the left
    mhi    a motion history image inside that crop: the frame differences of the last second or so, each
           channel fading at its own rate (views.mhi_decay; red: the last step or two, blue: about a second),
           so that one image shows the path a limb swept and which end of it is now
    flow   dense optical flow (OpenCV DIS) inside that crop, as an image: 128 + gain * (dx, dy), gain * |v|

Whole-frame ImageNet features are dominated by the background and miss motion; on Weizmann the crop
and diff streams lift actor-disjoint top-1 by more than ten points (README, bench/accuracy_weizmann.py).

Everything here is causal, so streaming equals offline: the moving region at step t is found from the
frame differences of the last `motion_steps` sampled frames (their union, 1st-99th percentile extent,
so two people give one box around both), padded by `crop_margin`, at least `crop_min` of the frame's
shorter side, smoothed over time. When nothing has moved yet the crop is the whole frame; when motion
stops the last box is kept. A moving camera (a hand-held phone's sway, a slow pan) is taken out first
(views.stabilize: camera_motion fits each step's global shift, turn and zoom, and the previous frame is moved
onto the current one before they are compared), so that what is left is what moves in the scene.
Black bars around the picture (a letterboxed or pillarboxed file, or clips of other shapes cut together) are
left out of the moving streams (views.trim_borders). Only OpenCV and NumPy: the ONNX path (no torch) uses this
module too.
"""
from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np

STREAMS = ("frame", "crop", "diff", "mhi", "flow", "pose")
POSE = "pose"  # keypoints of a person (a pose detector's), not an image: no backbone pass
MOTION_STREAMS = ("diff", "mhi", "flow")  # rendered at views.motion_size
CROP_STREAMS = ("crop", "diff", "mhi", "flow")  # images cut around the region that moves (or a person's box)
PERSON_STREAMS = (*CROP_STREAMS, POSE)  # differ from one person to the next (the whole frame does not)
_MOTION_KEYS = ("crop_margin", "crop_min", "motion_steps", "motion_threshold", "motion_side", "box_smooth")


def reads_people(vcfg, streams=None) -> bool:
    """Whether the views need a person finder (models.detector.pose_tracker): the pose stream, or views.region=people
    with an image stream to crop. streams: the subset being encoded (default views.streams)."""
    streams = vcfg.streams if streams is None else streams
    return POSE in streams or (getattr(vcfg, "region", "motion") == "people" and
                               any(k in streams for k in CROP_STREAMS))


def stream_id(stream: str, vcfg, detector_id: str = "") -> str:
    """What a stream's images depend on, for the feature cache: '' for the whole frame (the cache
    entries of earlier versions stay valid), else the stream name and a hash of the view settings
    (the pose stream: of the detector, detector_id: models.detector.detector_id)."""
    if stream == "frame":
        return ""
    if stream == POSE:
        people = getattr(vcfg, "pose_people", 1)  # one person: ids as before
        ident = detector_id if people == 1 else f"{detector_id}|people={people}"
        return f"pose-{hashlib.sha1(ident.encode()).hexdigest()[:10]}"
    params = {k: getattr(vcfg, k) for k in _MOTION_KEYS}
    if stream in ("diff", "flow"):
        params["gain"] = getattr(vcfg, f"{stream}_gain")
    if stream == "diff" and getattr(vcfg, "diff_direction", False):  # untinted entries keep their ids
        params["direction"] = True
    if stream == "mhi":
        params["gain"] = vcfg.diff_gain
        params["decay"] = [round(float(x), 4) for x in vcfg.mhi_decay]
    if getattr(vcfg, "trim_borders", False):  # untrimmed entries keep their ids
        params["trim"] = 2  # 1 (True): the kept box only grew; 2: it shrinks to bars that stand still
    if getattr(vcfg, "region", "motion") == "people":  # motion regions keep their ids
        params["region"] = hashlib.sha1(detector_id.encode()).hexdigest()[:10]
    if getattr(vcfg, "stabilize", False):  # unstabilised entries keep their ids
        params["stabilize"] = CAMERA_FIT  # the first fit's entries said True
    if stream in MOTION_STREAMS and getattr(vcfg, "motion_size", 0):  # 0: at the backbone's size, ids as before
        params["size"] = vcfg.motion_size  # (a size capped at the backbone's input side changes its fingerprint)
    return f"{stream}-{hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]}"


STILL_PX = 0.3  # largest move (pixels at motion_side) of any frame corner that a still camera is allowed: noise
# The camera fit's settings. They change the views of every moving frame: a change here must bump
# CAMERA_FIT, which goes into the stabilised streams' cache ids (stream_id).
CAMERA_FIT = 2            # 1 (2026-11-30 morning): 300 points, 15-px window, half the points to agree
CAMERA_POINTS = 100       # points tracked; more cost more and did not fit better (docs/results.md)
CAMERA_WINDOW = 9         # Lucas-Kanade window side (pixels at motion_side), over 3 pyramid levels
CAMERA_AGREE = 0.4        # share of the tracked points that must agree on one move for it to be the camera's
CAMERA_SPACING = 16       # points at least 1/16 of the frame's longer side apart (10 px at 160)


def camera_motion(prev: np.ndarray, cur: np.ndarray, points: int = CAMERA_POINTS, window: int = CAMERA_WINDOW,
                  agree: float = CAMERA_AGREE, spacing: int = CAMERA_SPACING) -> np.ndarray | None:
    """2x3 affine map (shift, turn, zoom) that takes the picture of grey frame prev onto cur, or None for a still
    camera (no corner of the frame moves STILL_PX) or when it cannot be told.

    Points are taken all over the frame (a low corner quality, kept apart), not only the strongest corners, which
    sit on the people: the fit must follow the background, which covers most of a frame. Tracked with pyramidal
    Lucas-Kanade, fitted by RANSAC (1-px tolerance); at least CAMERA_AGREE of the tracked points must agree, else
    what moves is not the camera (or nothing can be told) and the frame is left as it is. ~0.5 ms at 160 x 120.
    The keywords are for bench/camera_fit.py, which compares settings; the views use the defaults."""
    pts = cv2.goodFeaturesToTrack(prev, maxCorners=points, qualityLevel=0.001,
                                  minDistance=max(4, max(prev.shape) // spacing))
    if pts is None or len(pts) < 20:
        return None
    nxt, ok, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None, winSize=(window, window), maxLevel=2)
    ok = ok.ravel() == 1
    if ok.sum() < 20:
        return None
    A, inliers = cv2.estimateAffinePartial2D(pts[ok], nxt[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if A is None or inliers.sum() < agree * ok.sum():
        return None
    h, w = prev.shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    if np.abs(corners @ A.T - corners[:, :2]).max() < STILL_PX:
        return None
    return A


def motion_grey(frame: np.ndarray, motion_side: int) -> tuple[np.ndarray, float]:
    """The picture motion is found on: an RGB frame (H, W, 3) scaled so that its longer side is at most
    motion_side, grey, blurred a little (uint8 (h, w)); and the scale (h / H)."""
    H, W = frame.shape[:2]
    s = min(1.0, motion_side / max(H, W))
    small = frame if s == 1.0 else cv2.resize(frame, (max(1, round(W * s)), max(1, round(H * s))),
                                              interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (3, 3), 0), s


class MotionTracker:
    """Causal moving-region finder over the sampled frames of one video (call reset() between videos).

    update(frame RGB (H,W,3)) -> box (x0, y0, side) in frame pixels, or None before anything moved.
    Keeps the small grey frames it used, for the diff and flow streams."""

    def __init__(self, vcfg, flow: bool = False):
        self.cfg = vcfg
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST) if flow else None
        self.reset()

    def reset(self) -> None:
        self.prev_small = None      # (h, w) uint8 grey frame at motion_side, previous step
        self.masks: list[np.ndarray] = []  # motion masks of the last motion_steps steps
        self.box = None             # smoothed (cx, cy, side) in frame pixels
        self.flow = None            # (h, w, 2) float32 flow prev -> current at motion_side
        self.scale = 1.0            # motion_side / the frame's longer side
        self.camera = None          # 2x3 map previous -> current frame in frame pixels (views.stabilize), or None

    def update(self, frame: np.ndarray) -> tuple[float, float, float] | None:
        c = self.cfg
        H, W = frame.shape[:2]
        grey, s = motion_grey(frame, c.motion_side)
        self.scale = s
        self.camera = None
        if self.prev_small is None or self.prev_small.shape != grey.shape:  # first frame, or a new size
            self.masks, self.box = [], None
            mask = np.zeros(grey.shape, np.uint8)
            self.flow = np.zeros(grey.shape + (2,), np.float32)
        else:
            prev, seen = self.prev_small, None
            A = camera_motion(prev, grey) if getattr(c, "stabilize", False) else None
            if A is not None:  # the camera moved: compare with the previous picture moved onto this one
                size = grey.shape[::-1]
                prev = cv2.warpAffine(prev, A, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                seen = cv2.warpAffine(np.ones_like(grey), A, size, flags=cv2.INTER_NEAREST)  # 0: not in the last frame
                self.masks = [cv2.warpAffine(m, A, size, flags=cv2.INTER_NEAREST) for m in self.masks]  # they follow
                self.camera = np.hstack([A[:, :2], A[:, 2:] / s]).astype(np.float32)  # in frame pixels
            mask = (cv2.absdiff(grey, prev) > c.motion_threshold).astype(np.uint8)
            if seen is not None:
                mask &= cv2.erode(seen, np.ones((5, 5), np.uint8))  # a border the camera just brought in is no motion
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # drop speckle noise
            if self.dis is not None:
                self.flow = self.dis.calc(self.prev_small, grey, None)  # at the previous frame's pixels
                if A is not None:  # what moves in the scene, not the camera
                    ys, xs = np.mgrid[0:grey.shape[0], 0:grey.shape[1]].astype(np.float32)
                    self.flow -= np.stack([(A[0, 0] - 1) * xs + A[0, 1] * ys + A[0, 2],
                                           A[1, 0] * xs + (A[1, 1] - 1) * ys + A[1, 2]], -1)
        self.prev_small = grey
        self.masks = (self.masks + [mask])[-c.motion_steps:]
        ys, xs = np.nonzero(np.maximum.reduce(self.masks))
        if len(xs) >= 16:  # a few pixels of noise are not a region
            x0, x1 = np.percentile(xs, [1, 99]) / s
            y0, y1 = np.percentile(ys, [1, 99]) / s
            side = max(x1 - x0, y1 - y0) * (1 + 2 * c.crop_margin)
            side = float(np.clip(side, c.crop_min * min(H, W), min(H, W)))
            new = np.array([(x0 + x1) / 2, (y0 + y1) / 2, side])
            a = c.box_smooth
            self.box = new if self.box is None else a * self.box + (1 - a) * new
        if self.box is None:
            return None
        cx, cy, side = self.box
        # keep the square inside the frame (shift, do not shrink)
        x0 = float(np.clip(cx - side / 2, 0, W - side))
        y0 = float(np.clip(cy - side / 2, 0, H - side))
        return x0, y0, float(side)


class PersonBox:
    """The crop square of one tracked person: update(box x1,y1,x2,y2 in frame pixels, frame (H, W)) -> (x0, y0,
    side), made like MotionTracker's from the moving region (crop_margin, crop_min, box_smooth), so that a
    model trained on motion crops of one-actor clips reads per-person crops of the same framing."""

    def __init__(self, vcfg):
        self.cfg = vcfg
        self.box = None  # smoothed (cx, cy, side)

    def update(self, box, frame_hw) -> tuple[float, float, float]:
        c, (H, W) = self.cfg, frame_hw
        x1, y1, x2, y2 = (float(v) for v in box)
        side = float(np.clip(max(x2 - x1, y2 - y1) * (1 + 2 * c.crop_margin), c.crop_min * min(H, W), min(H, W)))
        new = np.array([(x1 + x2) / 2, (y1 + y2) / 2, side])
        self.box = new if self.box is None else c.box_smooth * self.box + (1 - c.box_smooth) * new
        cx, cy, side = self.box
        return float(np.clip(cx - side / 2, 0, W - side)), float(np.clip(cy - side / 2, 0, H - side)), float(side)


BORDER_LEVEL = 24  # grey level (0-255) over which a row or column of a frame is picture, not a black bar
BARS_STEADY = 5    # sampled frames in a row that new bars must keep the same place before the picture shrinks


def _dark_edge(frame: np.ndarray) -> bool:
    """Whether any of the frame's outermost rows and columns (RGB (H, W, 3)) stays at or under BORDER_LEVEL in
    every channel: where a bar would begin. Four lines of pixels: cheap enough for every frame."""
    return any(int(line.max()) <= BORDER_LEVEL for line in (frame[0], frame[-1], frame[:, 0], frame[:, -1]))


def _union(a: tuple, b: tuple) -> tuple:
    """The smallest (y0, y1, x0, x1) box holding boxes a and b."""
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _moved(a: tuple, b: tuple, noise: int = 2) -> bool:
    """Whether an edge of box b lies more than `noise` pixels from a's: an encoder's noise moves a bar's edge by a
    pixel or two, which is no new bar."""
    return max(abs(p - q) for p, q in zip(a, b)) > noise


def content_box(frame: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the picture inside black bars (letterbox, pillarbox) of an RGB frame (H, W, 3): the
    rows and columns where the frame's grey image, median-filtered (a lone bright pixel of compression noise
    is not picture; unlike a blur, a median does not spread the picture's edge into the bar), reaches
    BORDER_LEVEL. None while the frame is (nearly) all dark: a fade-in tells nothing yet."""
    grey = cv2.medianBlur(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 3)  # OpenCV's SIMD paths: ~1 ms at 720p
    rows = np.flatnonzero(cv2.reduce(grey, 1, cv2.REDUCE_MAX).ravel() > BORDER_LEVEL)
    cols = np.flatnonzero(cv2.reduce(grey, 0, cv2.REDUCE_MAX).ravel() > BORDER_LEVEL)
    H, W = grey.shape
    if len(rows) < H // 4 or len(cols) < W // 4:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def stream_size(stream: str, vcfg, size: int) -> int:
    """Input side of a stream's images: views.motion_size for the motion streams (when set; never above
    size), else size."""
    return min(getattr(vcfg, "motion_size", 0) or size, size) if stream in MOTION_STREAMS else size


def _crop_matrix(box, frame_hw, size: int, scale: float = 1.0) -> np.ndarray:
    """2x3 affine map from (scaled) frame pixels to a size x size crop; box None = the whole frame."""
    if box is None:
        H, W = frame_hw
        sx, sy, x0, y0 = size / W, size / H, 0.0, 0.0
    else:
        x0, y0, side = box
        sx = sy = size / side
    return np.array([[sx / scale, 0, -x0 * sx], [0, sy / scale, -y0 * sy]], np.float32)


def _compose(M: np.ndarray, A: np.ndarray) -> np.ndarray:
    """The 2x3 affine map that applies A, then M."""
    return (np.vstack([M, [0, 0, 1]]) @ np.vstack([A, [0, 0, 1]]))[:2].astype(np.float32)


class ViewRenderer:
    """Renders the images of each stream for consecutive frames of one video, carrying the tracker.

    render(frames (T,H,W,3)) -> {stream: uint8 (T,S,S,3)} ('frame' images are the frames as they are;
    the backbone resizes them; S is views.motion_size for diff, mhi and flow, see stream_size). flip=True
    mirrors every view (flow's x component changes sign, diff's direction tint swaps)."""

    def __init__(self, streams, vcfg, size: int, flip: bool = False):
        self.streams = list(streams)
        self.size = size
        self.flip = flip
        self.cfg = vcfg
        self.tracker = MotionTracker(vcfg, flow="flow" in self.streams)
        self.person = PersonBox(vcfg)
        self.prev_grey = None  # full-size grey previous frame, for the diff and mhi streams
        self.content = None    # (y0, y1, x0, x1) of the picture inside black bars (views.trim_borders)
        self.narrower = None   # (box, sampled frames in a row) of bars inside self.content, until they count
        self.history = MotionHistory(vcfg.mhi_decay)  # the mhi stream's, in picture pixels

    def reset(self) -> None:
        self.tracker.reset()
        self.history.reset()
        self.person = PersonBox(self.cfg)
        self.prev_grey = None
        self.content = None
        self.narrower = None

    def _picture(self, f: np.ndarray) -> tuple[np.ndarray, int, int]:
        """The frame without its black bars (views.trim_borders), and the offset (x0, y0) of what is kept. The
        kept box grows at once where picture appears (a fade-in, a dark edge of the scene that lights up) and
        shrinks only where bars have stood still for BARS_STEADY sampled frames (a sequence cut together from
        clips of other shapes, each with its own bars): a dark edge that flickers does not move it. Each change
        starts the moving region afresh, as a new video would."""
        if not getattr(self.cfg, "trim_borders", False):
            return f, 0, 0
        H, W = f.shape[:2]
        if self.content == (0, H, 0, W) and not _dark_edge(f):  # no bars: the common case costs four lines
            self.narrower = None
            return f, 0, 0
        box = content_box(f)
        if box is not None:
            grown = box if self.content is None else _union(self.content, box)
            if self.content is None or _moved(self.content, grown):  # picture appeared (not an encoder's noise)
                self.content = grown
            if _moved(self.content, box):  # bars where the kept box has picture: new bars, if they stand still
                last = self.narrower
                same = last is not None and not _moved(last[0], box)
                # the same bars: the picture is what any of their frames showed
                self.narrower = (_union(last[0], box), last[1] + 1) if same else (box, 1)
                if self.narrower[1] >= BARS_STEADY:
                    self.content, self.narrower = self.narrower[0], None
            else:
                self.narrower = None
        if self.content is None:
            return f, 0, 0
        y0, y1, x0, x1 = self.content
        return f[y0:y1, x0:x1], x0, y0

    def render(self, frames: np.ndarray, boxes=None) -> dict[str, np.ndarray]:
        """boxes: one person's box (x1, y1, x2, y2) in each frame, to crop around it instead of the region
        that moves (per-person views: one renderer per tracked person; views.region=people: the people's
        union), or None in a frame for the region that moves there."""
        S, Sm = self.size, stream_size("diff", self.cfg, self.size)
        out = {k: [] for k in self.streams}
        moving = [k for k in self.streams if k != "frame"]
        for i, f in enumerate(frames if moving else []):
            f, dx, dy = self._picture(f)  # the moving streams see the picture, not the bars around it
            # a person's views (boxes given) still run the tracker for flow's field and the camera's motion
            tracked = boxes is None or boxes[i] is None or self.tracker.dis is not None or \
                getattr(self.cfg, "stabilize", False)
            box = self.tracker.update(f) if tracked else None
            if boxes is not None and boxes[i] is not None:
                x1, y1, x2, y2 = boxes[i]
                box = self.person.update((x1 - dx, y1 - dy, x2 - dx, y2 - dy), f.shape[:2])
            grey = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
            if "crop" in out:
                out["crop"].append(cv2.warpAffine(f, _crop_matrix(box, f.shape[:2], S), (S, S),
                                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
            prev = grey if self.prev_grey is None or self.prev_grey.shape != grey.shape else self.prev_grey
            M = _crop_matrix(box, f.shape[:2], Sm)  # the motion images' crop: diff and mhi cut the same square
            if "diff" in out:
                # the previous frame through the camera's move, then the crop (views.stabilize): one warp
                Mp = M if self.tracker.camera is None else _compose(M, self.tracker.camera)
                warp = dict(flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                a, b = cv2.warpAffine(grey, M, (Sm, Sm), **warp), cv2.warpAffine(prev, Mp, (Sm, Sm), **warp)
                out["diff"].append(diff_image(a, b, self.cfg.diff_gain, self.cfg.diff_direction))
            if "mhi" in out:
                self.history.update(grey, prev, self.tracker.camera, self.cfg.diff_gain)
                out["mhi"].append(self.history.cut(M, Sm))
            if "flow" in out:
                out["flow"].append(self._flow_image(box, f.shape[:2]))
            self.prev_grey = grey
        res = {}
        for k in self.streams:
            side = stream_size(k, self.cfg, S)
            imgs = frames if k == "frame" else np.stack(out[k]) if out[k] else np.zeros((0, side, side, 3), np.uint8)
            res[k] = mirror(imgs, [k])[:, 0] if self.flip else imgs
        return res

    def _flow_image(self, box, frame_hw) -> np.ndarray:
        S, s = stream_size("flow", self.cfg, self.size), self.tracker.scale
        M = _crop_matrix(box, frame_hw, S, scale=s)
        fc = cv2.warpAffine(self.tracker.flow, M, (S, S), flags=cv2.INTER_LINEAR)  # (S, S, 2) small-frame px
        fc *= M[0, 0]  # flow in crop pixels: the same motion reads the same at any distance from the camera
        g = self.cfg.flow_gain
        img = np.stack([128 + g * fc[..., 0], 128 + g * fc[..., 1], g * np.hypot(fc[..., 0], fc[..., 1])], -1)
        return np.clip(img, 0, 255).astype(np.uint8)


class MotionHistory:
    """A motion history image (Bobick and Davis's temporal template) of one video, in picture pixels: each
    sampled frame's difference (|grey - previous| * gain, in [0, 1]) is added as max(value * decay, difference),
    one channel per decay, so recent motion is bright and older motion fades. Kept in the picture's pixels, not
    the crop's, so that a crop that moves or zooms does not smear it; a moving camera's step moves it along."""

    def __init__(self, decays):
        self.decay = np.asarray(decays, np.float32)  # (C,)
        self.img = None  # (H, W, C) float32

    def reset(self) -> None:
        self.img = None

    def update(self, grey: np.ndarray, prev: np.ndarray, camera, gain: float) -> None:
        """grey, prev: (H, W) uint8 this and the previous sampled frame; camera: 2x3 map previous -> this frame
        (views.stabilize), or None."""
        h, w = grey.shape
        if self.img is None or self.img.shape[:2] != (h, w):  # first frame, or new bars: a new picture
            self.img = np.zeros((h, w, len(self.decay)), np.float32)
        if camera is not None:  # the previous frame and the history onto this frame's pixels
            prev = cv2.warpAffine(prev, camera, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            self.img = cv2.warpAffine(self.img, camera, (w, h), flags=cv2.INTER_LINEAR).reshape(h, w, -1)
        d = np.minimum(cv2.absdiff(grey, prev).astype(np.float32) * (gain / 255), 1)
        self.img *= self.decay  # in place: a stream's memory stays flat
        np.maximum(self.img, d[..., None], out=self.img)

    def cut(self, M: np.ndarray, side: int) -> np.ndarray:
        """The history through the crop's 2x3 map M: (side, side, C) uint8."""
        img = cv2.warpAffine(self.img, M, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.clip(img.reshape(side, side, -1) * 255, 0, 255).astype(np.uint8)


def diff_image(cur: np.ndarray, prev: np.ndarray, gain: float, direction: bool) -> np.ndarray:
    """Two grey (S,S) uint8 crops -> the diff stream's (S,S,3) uint8 image: |cur - prev| * gain, grey;
    with direction the red and blue channels lean by the horizontal motion at each pixel.

    The way a difference moves is the sign of the normal flow -I_t * I_x (brightness constancy), which
    does not depend on whether the figure is lighter or darker than what it passes; |cur - prev| alone
    is the same for a motion and its mirror image, and global pooling then loses the one cue that tells
    walking left from walking right."""
    d = cv2.absdiff(cur, prev).astype(np.float32) * gain
    if not direction:
        g = np.clip(d, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, 2)
    c, p = cur.astype(np.float32), prev.astype(np.float32)
    ix = cv2.Sobel(c + p, cv2.CV_32F, 1, 0, ksize=3) / 16  # horizontal gradient of the mean image
    vx = cv2.blur(-(c - p) * ix, (5, 5)) / (cv2.blur(ix * ix, (5, 5)) + 16)  # regularised normal flow, px
    lean = np.clip(vx / 2, -1, 1)  # +-2 px per step saturates
    return np.clip(np.stack([d * (1 + lean), d, d * (1 - lean)], -1), 0, 255).astype(np.uint8)


def mirror(imgs, streams: list[str]):
    """Mirror images left-right: numpy or torch uint8 (T, S, S, 3), or (T, len(streams), S, S, 3) with one
    image per stream; the flow stream's x component changes sign (128 + g*dx -> 128 - g*dx), and the diff
    stream's direction tint swaps (red <-> blue; an untinted diff is grey, which the swap leaves as it is).
    Returns (T, len(streams), S, S, 3) (a new array)."""
    is_np = isinstance(imgs, np.ndarray)
    x = imgs if imgs.ndim == 5 else imgs[:, None]
    x = x[:, :, :, ::-1] if is_np else x.flip(3)  # the width axis
    x = np.ascontiguousarray(x) if is_np else x.clone()
    for i, k in enumerate(streams):
        if k == "diff":  # mirrored motion goes the other way
            x[:, i] = x[:, i, ..., ::-1] if is_np else x[:, i].flip(-1)  # RGB -> BGR: red <-> blue
        if k == "flow":  # mirrored motion goes the other way
            ch = x[:, i, ..., 0]
            if is_np:
                x[:, i, ..., 0] = np.clip(256 - ch.astype(np.int16), 0, 255).astype(np.uint8)
            else:
                x[:, i, ..., 0] = (256 - ch.short()).clamp(0, 255).to(x.dtype)
    return x


POSE_DIM = 17 * 3 + 4  # keypoints (x, y, confidence) and the box's place and size in the frame


def pose_features(keypoints: np.ndarray | None, box, dim: int, frame_hw=None) -> np.ndarray:
    """(dim,) float32 pose stream features of one person: 17 x (x, y, confidence), x and y relative to the
    centre of the person's box in units of its longer side (about -0.5..0.5 whatever the person's size and
    place), then the box's centre and size as fractions of the frame (cx, cy, w, h: the moves that box-relative
    keypoints cannot show, a jump's rise or a walk's travel), zero-padded to dim (the backbone's feature size:
    every stream is dim wide). No person (keypoints None) gives zeros."""
    out = np.zeros(dim, np.float32)
    if keypoints is None or box is None:
        return out
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0)
    k = np.asarray(keypoints, np.float32)[:17]
    rel = np.stack([(k[:, 0] - (x1 + x2) / 2) / side, (k[:, 1] - (y1 + y2) / 2) / side, k[:, 2]], 1)  # (17, 3)
    out[:51] = rel.reshape(-1)
    if frame_hw is not None:
        H, W = frame_hw
        out[51:55] = [(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H]
    return out


def pair_pose_features(people: list, dim: int, frame_hw, slots: int) -> np.ndarray:
    """(dim,) pose stream features of up to `slots` people (models.person.Person): the largest ones, left to
    right, each slot POSE_DIM wide (pose_features); a lone person takes the first slot, missing ones are zeros.
    Who stands where is kept: two people's boxes in the frame tell the attacker's side and their distance."""
    out = np.zeros(dim, np.float32)
    for i, p in enumerate(sorted(_largest(people, slots), key=lambda p: p.box[0] + p.box[2])):
        out[i * POSE_DIM:(i + 1) * POSE_DIM] = pose_features(p.keypoints, p.box, POSE_DIM, frame_hw)
    return out


def _largest(people: list, n: int) -> list:
    """The n people (models.person.Person) with the largest boxes, largest first."""
    return sorted(people, key=lambda p: -(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))[:n]


def union_box(people: list):
    """(x1, y1, x2, y2) holding the boxes of the two largest people (models.person.Person), or None."""
    if not people:
        return None
    b = np.array([p.box for p in _largest(people, 2)], np.float32)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def mirror_pose(feats: np.ndarray, slots: int = 1) -> np.ndarray:
    """Pose stream features (..., dim) of the mirrored frame: x changes sign, left and right swap, the box's
    centre goes to the other side; with two people (slots=2) each is mirrored and the two change places
    (a lone person stays in the first)."""
    from pipeline.data.synthetic import COCO_FLIP

    out = feats.copy()
    for i in range(slots):
        o = i * POSE_DIM
        k = out[..., o:o + 51].reshape(*out.shape[:-1], 17, 3)[..., COCO_FLIP, :]
        k[..., 0] *= -1
        out[..., o:o + 51] = k.reshape(*out.shape[:-1], 51)
        out[..., o + 51] = np.where(out[..., o + 53] > 0, 1 - out[..., o + 51], 0)  # no person stays zero
    if slots == 2:
        both = out[..., POSE_DIM + 53] > 0  # (...) a second person: the mirrored right one is now on the left
        first, second = out[..., :POSE_DIM].copy(), out[..., POSE_DIM:2 * POSE_DIM].copy()
        out[..., :POSE_DIM] = np.where(both[..., None], second, first)
        out[..., POSE_DIM:2 * POSE_DIM] = np.where(both[..., None], first, second)
    return out



class FrameEncoder:
    """Backbone features of every stream of each frame: encode(frames) -> float32 (T, len(streams)*D),
    streams concatenated in views.streams order (or the given subset). Frames are consecutive frames of
    one video; call reset() before the next video (the moving-region tracker is carried across calls).

    The motion streams go through backbone.at_size(views.motion_size): the same weights at a smaller
    input (a Backbone, a models.runtime.Runtime or an exported OnnxModel all provide at_size)."""

    def __init__(self, backbone, vcfg, flip: bool = False, streams=None, people=None):
        """people: the person finder of models.detector.pose_tracker (an Ultralytics PersonTracker with pose
        weights, or MediaPipe's BlazePose), for the pose stream (the keypoints of the views.pose_people largest
        people in each frame: pair_pose_features) and for views.region=people (the crop around them)."""
        self.backbone = backbone
        self.streams = list(streams or vcfg.streams)
        self.flip = flip
        self.people = people
        if POSE in self.streams and (people is None or not getattr(people, "pose", False)):
            from pipeline.errors import ConfigError

            raise ConfigError("views.streams has pose: detector.weights must be a pose model (the default, or "
                              "Ultralytics pose weights such as yolo11n-pose.pt)")
        self.pose_people = getattr(vcfg, "pose_people", 1)
        self.reads_people = reads_people(vcfg, self.streams)
        # views.region=people: the crop frames the people the tracker finds
        self.people_region = self.reads_people and getattr(vcfg, "region", "motion") == "people"
        if POSE in self.streams and backbone.dim < POSE_DIM * self.pose_people:
            from pipeline.errors import ConfigError

            raise ConfigError(f"views.streams has pose: its {POSE_DIM * self.pose_people} features need a backbone of "
                              f"at least that many ({backbone.name} has {backbone.dim})")
        self.image_streams = [k for k in self.streams if k != POSE]
        # the views as they are: encode_versions mirrors them for flip (the same images as a flipped renderer's)
        self.renderer = ViewRenderer(self.image_streams, vcfg, backbone.input_size)
        self.dim = len(self.streams) * backbone.dim
        sizes = {k: stream_size(k, vcfg, backbone.input_size) for k in self.image_streams}
        self.encoders = {k: backbone if s == backbone.input_size else backbone.at_size(s) for k, s in sizes.items()}

    def reset(self) -> None:
        self.renderer.reset()
        if self.people is not None and self.reads_people:
            self.people.reset()

    def pose(self, people_per_frame: list, frame_hw, flip: bool | None = None) -> np.ndarray:
        """(T, D) pose stream features from each frame's people (a list of models.person.Person, or one
        Person or None: that person alone), views.pose_people of them (pair_pose_features); mirrored with flip
        (default: the encoder's)."""
        f = np.stack([pair_pose_features(p if isinstance(p, list) else [] if p is None else [p], self.backbone.dim,
                                         frame_hw, self.pose_people) for p in people_per_frame]) \
            if people_per_frame else np.zeros((0, self.backbone.dim), np.float32)
        return mirror_pose(f, self.pose_people) if (self.flip if flip is None else flip) else f

    def encode_streams(self, frames: np.ndarray, boxes=None) -> dict[str, np.ndarray]:
        """{stream: float32 (T, D)}, mirrored if the encoder was made with flip; boxes: see ViewRenderer.render."""
        return self.encode_versions(frames, boxes)[self.flip]

    def encode_versions(self, frames: np.ndarray, boxes=None,
                        wanted: dict[bool, list[str]] | None = None) -> dict[bool, dict[str, np.ndarray]]:
        """{flip: {stream: float32 (T, D)}} for wanted {flip: streams} (default {the encoder's flip: its streams}):
        the streams of wanted[False] as they are and those of wanted[True] mirrored (flip augmentation), from one
        rendering - a mirrored view is the view mirrored, so the moving region is found once and each stream's
        images of both versions go through the backbone in one batch (identical features to two passes: ~12 %
        less time than decoding and tracking the video twice; docs/benchmarks.md). boxes: see ViewRenderer.render."""
        wanted = {self.flip: self.streams} if wanted is None else wanted
        people = [self.people.update(f) for f in frames] if self.people is not None and self.reads_people else None
        if boxes is None and self.people_region:
            if people is None:
                from pipeline.errors import ConfigError

                raise ConfigError("views.region=people needs a person detector (detector.weights)")
            boxes = [union_box(p) for p in people]
        imgs = self.renderer.render(frames, boxes)  # {stream: (T, S, S, 3) uint8}
        out: dict[bool, dict[str, np.ndarray]] = {flip: {} for flip in wanted}
        for k in self.image_streams:
            flips = [flip for flip, streams in wanted.items() if k in streams]
            for flip, f in zip(flips, self._encode_flips(k, imgs[k], flips)):
                out[flip][k] = f
        for flip, streams in wanted.items():
            if POSE in streams:
                out[flip][POSE] = self.pose(people, frames.shape[1:3], flip)
        return {flip: {k: out[flip][k] for k in streams} for flip, streams in wanted.items()}

    def _encode_flips(self, stream: str, imgs: np.ndarray, flips: list) -> list[np.ndarray]:
        """One stream's images (N, S, S, 3) through its encoder as they are and/or mirrored, one batch for all of
        flips: [(N, D) float32 per flip]."""
        if not flips:
            return []
        batch = [mirror(imgs, [stream])[:, 0] if flip else imgs for flip in flips]
        feats = self.encoders[stream].encode(np.concatenate(batch) if len(batch) > 1 else batch[0])  # (n*N, D)
        return [feats[i * len(imgs):(i + 1) * len(imgs)] for i in range(len(flips))]

    def encode(self, frames: np.ndarray, boxes=None) -> np.ndarray:
        feats = self.encode_streams(frames, boxes)
        return np.concatenate([feats[k] for k in self.streams], 1)

    def encode_people(self, items: list[tuple]) -> dict[str, np.ndarray]:
        """{stream: (N, D)} of N people's views: items [(their ViewRenderer, frame (H,W,3), box x1,y1,x2,y2 in its
        pixels, the detected person whose keypoints the pose stream reads, or None)], each person's views rendered
        by their own renderer (it carries their crop and previous frame; made without flip: the encoder mirrors),
        then each stream in one batch; mirrored if the encoder was made with flip."""
        return self.encode_people_versions(items, (self.flip,))[self.flip]

    def encode_people_versions(self, items: list[tuple], flips=(False, True)) -> dict[bool, dict[str, np.ndarray]]:
        """encode_people as they are and mirrored at once: {flip: {stream: (N, D)}} for each of flips, the views
        rendered once (encode_versions does the same for whole frames)."""
        images = {k: [] for k in self.image_streams}
        for renderer, frame, box, _ in items:
            for k, v in renderer.render(frame[None], [box]).items():
                images[k].append(v)  # (1, S, S, 3)
        out: dict[bool, dict[str, np.ndarray]] = {flip: {} for flip in flips}
        for k, v in images.items():
            for flip, f in zip(flips, self._encode_flips(k, np.concatenate(v), list(flips))):  # (N, S, S, 3)
                out[flip][k] = f
        if POSE in self.streams:
            for flip in flips:
                out[flip][POSE] = self.pose([person for *_, person in items], items[0][1].shape[:2], flip)
        return out
