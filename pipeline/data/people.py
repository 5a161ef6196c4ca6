"""Synthetic videos of several people, each doing actions of their own, with what the generator knows:
every person's box in every frame and their action segments. For per-person detection, tracking,
labels and next events, tested end to end on ground truth (`vap synth --people 2..3`).

A scene: one textured background, 2-3 stick figures (synthetic.py's, each with its own size, colour and
tempo) on one ground line. Each person runs through a random sequence of actions; the walking ones move
and the others stay where they are. With crossing=True the first two people first walk towards each other
and pass (their boxes overlap), the case that tests whether a tracker keeps its ids.

Files (out/): people_NNN.mp4, people.csv (video,start,end,label,track: one row per action segment of a
person), boxes.csv (video,frame,t,track,x1,y1,x2,y2: every person in every frame, pixels), people.json
(the settings). Track ids are 0..people-1 within each video.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.synthetic import ACTIONS, background, draw_figure, figure_box, figure_keypoints, pose
from pipeline.data.writer import write_video
from pipeline.io import atomic_write_csv, atomic_write_text

STILL = [a for a in ACTIONS if not a.startswith("walk_")]


@dataclass
class Person:
    track: int
    fig_h: float
    color: tuple
    thick: int
    freq: float
    phase: float
    x: float                                        # feet position now, pixels
    speed: float                                    # walking speed, pixels per second
    segments: list = field(default_factory=list)    # [(start s, end s, action)]
    boxes: list = field(default_factory=list)       # [(x1, y1, x2, y2)] per frame
    keypoints: list = field(default_factory=list)   # [(17, 2) COCO keypoints, pixels] per frame


def _plan(person: Person, rng: np.random.Generator, seconds: float, width: float, first: tuple | None) -> None:
    """person.segments: `first` (action, duration) if given, then random actions of 1.5-3 s. A random walk
    goes towards the side with more room; every walk stops at the frame's margin."""
    t, x = 0.0, person.x
    margin = 0.3 * person.fig_h
    while t < seconds - 1e-9:
        if first is not None:  # as given, direction included
            action, dur = first
            first = None
        else:
            dur = float(rng.uniform(1.5, 3.0))
            last = person.segments[-1][2] if person.segments else ""
            action = str(rng.choice([a for a in ACTIONS if a != last]))  # a new action: a next event
            if action.startswith("walk_"):
                action = "walk_right" if x < width / 2 else "walk_left"
        dur = min(dur, seconds - t)
        if action.startswith("walk_"):
            room = (width - margin - x) if action == "walk_right" else (x - margin)
            dur = min(dur, max(room, 0.0) / person.speed)
            if dur < 0.5:  # no room left to walk: stand and do something else
                last = person.segments[-1][2] if person.segments else ""
                action, dur = str(rng.choice([a for a in STILL if a != last])), min(1.5, seconds - t)
            else:
                x += person.speed * dur * (1 if action == "walk_right" else -1)
        if person.segments and person.segments[-1][2] == action:  # a walk on in the same direction: one segment
            person.segments[-1] = (person.segments[-1][0], t + dur, action)
        else:
            person.segments.append((t, t + dur, action))
        t += dur


def render_people(rng: np.random.Generator, people: int = 2, seconds: float = 8.0, width: int = 320,
                  height: int = 180, fps: float = 25.0, crossing: bool = True) -> tuple[np.ndarray, list[Person]]:
    """Frames (T, H, W, 3) uint8 RGB and the people (their segments and per-frame boxes)."""
    n = max(1, int(round(seconds * fps)))
    bg = background(rng, width, height)
    noise = float(rng.uniform(2, 6))
    ground = float(rng.uniform(0.85, 0.95)) * height
    persons = []
    for k in range(people):
        fig_h = float(rng.uniform(0.45, 0.6)) * height
        x = (k + 0.5) / people * width + float(rng.uniform(-0.05, 0.05)) * width
        persons.append(Person(k, fig_h, tuple(float(c) for c in rng.uniform(0, 255, 3)), int(rng.integers(2, 4)),
                              float(rng.uniform(0.8, 1.6)), float(rng.uniform(0, 2 * math.pi)), x,
                              float(rng.uniform(0.45, 0.7)) * fig_h))
    for k, p in enumerate(persons):
        first = None
        if crossing and people >= 2 and k < 2:  # the first two walk towards each other until they have passed
            a, b = persons[0], persons[1]
            first = ("walk_right" if k == 0 else "walk_left", 1.4 * abs(b.x - a.x) / (a.speed + b.speed))
        _plan(p, rng, seconds, width, first)
    frames = np.empty((n, height, width, 3), np.uint8)
    xs = [_positions(p, n, fps) for p in persons]
    for i in range(n):
        t = i / fps
        img = bg.copy()
        for p, x in zip(persons, xs):
            act = _action_at(p, t)
            ps = pose(act, t, p.freq, p.phase)
            draw_figure(img, x[i], ground, p.fig_h, ps, p.color, p.thick)
            x1, y1, x2, y2 = figure_box(x[i], ground, p.fig_h, ps, p.thick)
            p.boxes.append((max(0.0, x1), max(0.0, y1), min(width - 1.0, x2), min(height - 1.0, y2)))
            p.keypoints.append(figure_keypoints(x[i], ground, p.fig_h, ps))
        img += rng.normal(0, noise, img.shape).astype(np.float32)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames, persons


def _action_at(p: Person, t: float) -> str:
    for s, e, a in p.segments:
        if s <= t < e:
            return a
    return p.segments[-1][2]


def _positions(p: Person, n: int, fps: float) -> np.ndarray:
    """Feet x of each frame: walking segments move at p.speed, the others hold."""
    xs, x, i = np.empty(n), p.x, 0
    for s, e, a in p.segments:
        v = p.speed if a == "walk_right" else -p.speed if a == "walk_left" else 0.0
        while i < n and i / fps < e - 1e-9:
            xs[i] = x + v * (i / fps - s)
            i += 1
        x += v * (e - s)
    xs[i:] = x
    return xs


def make_people_videos(out: str | Path, videos: int = 4, people: tuple[int, int] = (2, 3), seconds: float = 8.0,
                       seed: int = 0, width: int = 320, height: int = 180, fps: float = 25.0,
                       crossing: bool = True) -> Path:
    """Write out/people_NNN.mp4 with people.csv, boxes.csv and people.json (see the module's doc);
    people: the (fewest, most) people per video. Deterministic given the seed; existing videos are kept
    (their annotations are rewritten from the same draws)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seg_rows, box_rows = [], []
    for v in range(videos):
        rng = np.random.default_rng([seed, 2000 + v])
        k = int(rng.integers(people[0], people[1] + 1))
        frames, persons = render_people(rng, k, seconds, width, height, fps, crossing)
        name = f"people_{v:03d}.mp4"
        if not (out / name).exists():
            write_video(out / name, frames, fps)
        for p in persons:
            seg_rows += [[name, f"{s:.3f}", f"{e:.3f}", a, p.track] for s, e, a in p.segments]
            box_rows += [[name, i, f"{i / fps:.3f}", p.track, *(f"{c:.1f}" for c in b)] for i, b in enumerate(p.boxes)]
    atomic_write_csv(out / "people.csv", ["video", "start", "end", "label", "track"], seg_rows)
    atomic_write_csv(out / "boxes.csv", ["video", "frame", "t", "track", "x1", "y1", "x2", "y2"], box_rows)
    atomic_write_text(out / "people.json", json.dumps(dict(seed=seed, videos=videos, people=list(people),
                                                           seconds=seconds, width=width, height=height, fps=fps,
                                                           crossing=crossing), indent=1))
    return out
