"""Procedural action videos with exact labels, for tests and the demo.

A stick figure performs one action per clip over a random textured background with noise, at a
random position, scale, speed, phase and colour. Several classes share their single frames
(walk_left and walk_right are mirror images; wave and clap pass through the same poses), so
a model must read the motion. Deterministic given the seed: the same call writes the same pixels.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.data.segments import write_annotations
from pipeline.data.writer import write_video  # noqa: F401 (also importable from here, as before)
from pipeline.io import atomic_write_text

ACTIONS = ("wave", "clap", "jump", "squat", "walk_left", "walk_right")


def _limb(p, length, angle):
    """End point of a limb of `length` from p at `angle` (radians, 0 = straight down, + = to the right)."""
    return (p[0] + length * math.sin(angle), p[1] + length * math.cos(angle))


def pose(action: str, t: float, freq: float, phase: float) -> dict:
    """Joint angles and body offsets (units of figure height) of `action` at time t seconds."""
    w = 2 * math.pi * freq * t + phase
    s = math.sin(w)
    p = dict(dx=0.0, dy=0.0, crouch=0.0, l_arm=-0.35, r_arm=0.35, l_fore=0.0, r_fore=0.0,
             l_leg=-0.12, r_leg=0.12, knee=0.0)
    if action == "wave":  # right arm up, forearm swings
        p.update(r_arm=2.6, r_fore=0.6 * s)
    elif action == "clap":  # both arms swing in and out in front of the body
        a = 0.35 + 1.0 * (0.5 + 0.5 * s)
        p.update(l_arm=-a, r_arm=a, l_fore=-0.5 * (0.5 + 0.5 * s), r_fore=0.5 * (0.5 + 0.5 * s))
    elif action == "jump":  # body rises and falls, arms up in flight
        h = abs(math.sin(w / 2))
        p.update(dy=-0.28 * h, l_arm=-0.35 - 1.6 * h, r_arm=0.35 + 1.6 * h, knee=0.5 * (1 - h),
                 l_leg=-0.05, r_leg=0.05)
    elif action == "squat":  # hips go down and up, arms forward
        c = 0.5 - 0.5 * math.cos(w)
        p.update(crouch=0.28 * c, knee=1.2 * c, l_arm=-0.35 - 0.9 * c, r_arm=0.35 + 0.9 * c)
    elif action in ("walk_left", "walk_right"):  # legs and arms swing in opposition, body travels
        p.update(l_leg=0.45 * s, r_leg=-0.45 * s, l_arm=-0.15 - 0.4 * s, r_arm=0.15 - 0.4 * s,
                 knee=0.3 * abs(s))
    else:
        raise ValueError(f"unknown action '{action}'; known: {ACTIONS}")
    return p


def figure_geometry(cx: float, cy: float, h: float, p: dict) -> tuple[list, tuple, int]:
    """The stick figure with feet at (cx, cy) and height h pixels in pose p: (limb segments [(a, b)],
    head centre, head radius), in pixels."""
    cx, cy = cx + p["dx"] * h, cy + p["dy"] * h
    hip = (cx, cy - (0.5 - p["crouch"]) * h)
    neck = (hip[0], hip[1] - 0.35 * h)
    head = (neck[0], neck[1] - 0.12 * h)
    pts = []
    for side, sign in (("l", -1), ("r", 1)):
        elbow = _limb(neck, 0.18 * h, p[f"{side}_arm"])
        hand = _limb(elbow, 0.16 * h, p[f"{side}_arm"] + p[f"{side}_fore"])
        knee = _limb(hip, 0.25 * h, p[f"{side}_leg"] + sign * p["knee"] * 0.5)
        foot = _limb(knee, 0.25 * h, p[f"{side}_leg"] - sign * p["knee"] * 0.5)
        pts += [(neck, elbow), (elbow, hand), (hip, knee), (knee, foot)]
    pts.append((hip, neck))
    return pts, head, max(2, int(0.09 * h))


def figure_box(cx: float, cy: float, h: float, p: dict, thick: int) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) around every pixel draw_figure paints for the same arguments."""
    segs, head, r = figure_geometry(cx, cy, h, p)
    xs = [q[0] for a, b in segs for q in (a, b)]
    ys = [q[1] for a, b in segs for q in (a, b)]
    m = thick / 2 + 1  # line width and anti-aliasing
    return (min(min(xs) - m, head[0] - r - 1), min(min(ys) - m, head[1] - r - 1),
            max(max(xs) + m, head[0] + r + 1), max(max(ys) + m, head[1] + r + 1))


# COCO's 17 keypoints (Ultralytics pose models): nose, eyes, ears, shoulders, elbows, wrists, hips, knees,
# ankles, each pair (left, right) of the person, who faces the camera: the figure's image-right limbs are its left.
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                  "left_knee", "right_knee", "left_ankle", "right_ankle")
COCO_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # each keypoint's mirror image


def figure_keypoints(cx: float, cy: float, h: float, p: dict) -> np.ndarray:
    """(17, 2) pixel positions of the stick figure's COCO keypoints (figure_geometry's joints; a stick figure
    has one neck and one hip, so both shoulders sit on the neck and both hips on the hip; the face points
    sit on the head disc)."""
    segs, (hx, hy), r = figure_geometry(cx, cy, h, p)
    (neck, l_elbow), (_, l_hand), (hip, l_knee), (_, l_foot) = segs[0:4]
    (_, r_elbow), (_, r_hand), (_, r_knee), (_, r_foot) = segs[4:8]
    face = [(hx, hy), (hx + 0.35 * r, hy - 0.25 * r), (hx - 0.35 * r, hy - 0.25 * r),
            (hx + 0.8 * r, hy), (hx - 0.8 * r, hy)]
    body = [neck, neck, r_elbow, l_elbow, r_hand, l_hand, hip, hip, r_knee, l_knee, r_foot, l_foot]
    return np.array(face + body, np.float32)


def draw_figure(img: np.ndarray, cx: float, cy: float, h: float, p: dict, color, thick: int) -> None:
    """Draw the stick figure with feet at (cx, cy) and height h pixels onto img (H,W,3) BGR/RGB."""
    import cv2

    segs, head, r = figure_geometry(cx, cy, h, p)
    ip = lambda q: (int(round(q[0])), int(round(q[1])))  # noqa: E731
    for a, b in segs:
        cv2.line(img, ip(a), ip(b), color, thick, cv2.LINE_AA)
    cv2.circle(img, ip(head), r, color, -1, cv2.LINE_AA)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth random texture: low-resolution noise upscaled, tinted."""
    import cv2

    small = rng.uniform(0, 1, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    base = rng.uniform(60, 200, 3)
    return np.clip(base + (tex - 0.5) * rng.uniform(20, 90), 0, 255).astype(np.float32)


def clip_style(rng: np.random.Generator, width: int = 160, height: int = 120) -> dict:
    """The look of one performer in one scene: kept for a whole sequence (make_sequences)."""
    return dict(fig_h=rng.uniform(0.55, 0.8) * height, color=tuple(float(c) for c in rng.uniform(0, 255, 3)),
                thick=int(rng.integers(2, 5)), noise=rng.uniform(2, 10), bg=background(rng, width, height),
                cy=rng.uniform(0.8, 0.95) * height)


def render_clip(action: str, rng: np.random.Generator, width: int = 160, height: int = 120,
                fps: float = 25.0, duration: float | None = None, style: dict | None = None) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 RGB of one clip of `action` with random nuisance parameters
    (or the performer and scene of `style`, with a random tempo, phase and position)."""
    duration = duration or float(rng.uniform(2.0, 3.0))
    n = max(1, int(round(duration * fps)))
    if style is None:  # draw order kept from the first version: existing datasets stay identical
        fig_h = rng.uniform(0.55, 0.8) * height
        freq = rng.uniform(0.8, 1.6)
        phase = rng.uniform(0, 2 * math.pi)
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        thick = int(rng.integers(2, 5))
        noise = rng.uniform(2, 10)
        bg = background(rng, width, height)
        cy = rng.uniform(0.8, 0.95) * height
    else:
        fig_h, color, thick, noise, bg, cy = (style[k] for k in ("fig_h", "color", "thick", "noise", "bg", "cy"))
        freq = rng.uniform(0.8, 1.6)
        phase = rng.uniform(0, 2 * math.pi)
    margin = 0.3 * fig_h
    if action in ("walk_left", "walk_right"):
        speed = rng.uniform(0.25, 0.5) * fig_h  # pixels per second
        travel = speed * duration
        x0 = rng.uniform(margin, max(margin + 1, width - margin - travel))
        xs = x0 + speed * np.arange(n) / fps
        if action == "walk_left":
            xs = width - xs
    else:
        xs = np.full(n, rng.uniform(margin, width - margin))
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        img = bg.copy()
        draw_figure(img, xs[i], cy, fig_h, pose(action, i / fps, freq, phase), color, thick)
        img += rng.normal(0, noise, img.shape).astype(np.float32)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def make_dataset(out: str | Path, clips_per_class: int = 12, actions=ACTIONS, seed: int = 0,
                 width: int = 160, height: int = 120, fps: float = 25.0, ext: str = ".mp4",
                 progress: bool = False) -> Path:
    """Write out/<action>/<action>_<i>.mp4 for each action; returns out. Existing files are kept."""
    from tqdm import tqdm

    out = Path(out)
    manifest = []
    todo = [(ci, action, i) for ci, action in enumerate(actions) for i in range(clips_per_class)]
    for ci, action, i in tqdm(todo, desc=f"write {out.name}", unit="video", disable=not progress,
                              dynamic_ncols=True):
        path = out / action / f"{action}_{i:03d}{ext}"
        if not path.exists():
            rng = np.random.default_rng([seed, ci, i])
            write_video(path, render_clip(action, rng, width, height, fps), fps)
        manifest.append(dict(path=str(path.relative_to(out)), label=action))
    atomic_write_text(out / "synth.json", json.dumps(dict(seed=seed, actions=list(actions),
                                                          clips_per_class=clips_per_class, clips=manifest),
                                                     indent=1))
    return out


def make_sequences(out: str | Path, grammar, videos: int = 8, seconds: float = 30.0, seed: int = 0,
                   width: int = 160, height: int = 120, fps: float = 25.0, prefix: str = "seq") -> Path:
    """Long videos whose actions follow `grammar` (a grammar.Grammar), one performer and scene per
    video, with their segment annotations: out/<prefix>_NNN.mp4 and out/annotations.csv
    (video,start,end,label). Boundaries sit on frame times. Existing videos are kept."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for v in range(videos):
        rng = np.random.default_rng([seed, 1000 + v])
        name = f"{prefix}_{v:03d}.mp4"
        plan = grammar.sample(rng, seconds)
        style = clip_style(rng, width, height)
        parts, t = [], 0
        for i, (action, dur) in enumerate(plan):
            n = max(1, int(round(dur * fps)))
            parts.append((action, n, np.random.default_rng([seed, 1000 + v, i])))
            rows.append((name, t / fps, (t + n) / fps, action))
            t += n
        if not (out / name).exists():
            frames = np.concatenate([render_clip(a, r, width, height, fps, n / fps, style) for a, n, r in parts])
            write_video(out / name, frames, fps)
    write_annotations(out / "annotations.csv", rows)
    atomic_write_text(out / "grammar.json", json.dumps(dict(seed=seed, videos=videos, seconds=seconds,
                                                            grammar=grammar.to_dict()), indent=1))
    return out
