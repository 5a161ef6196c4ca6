"""Annotated video: the current label, its probability and a small bar chart on every frame.

The label at time t is the causal per-step output of the last sampled frame at or before t (what a
live stream would have shown). Written as H.264 (data/writer.py), to a temporary name renamed when complete.
"""
from __future__ import annotations

import colorsys
import contextlib
from pathlib import Path

import numpy as np

from pipeline.data.video import iter_frames
from pipeline.data.writer import VideoWriter
from pipeline.inference.results import step_at


def draw_overlay(frame: np.ndarray, classes: list[str], probs: np.ndarray, bars: int = 3,
                 next_event: tuple[str, float] | None = None) -> np.ndarray:
    """RGB frame -> RGB frame with the top label, its probability and a bar chart of the top `bars`."""
    import cv2

    img = frame.copy()
    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 500)
    th = max(1, int(round(scale * 2)))
    order = np.argsort(-probs)[:bars]
    line_h = int(22 * scale) + 6
    panel_h = line_h * (len(order) + 1 + (1 if next_event else 0)) + 6
    panel_w = min(w, int(260 * scale) + 20)
    overlay = img.copy()
    cv2.rectangle(overlay, (0, 0), (panel_w, panel_h), (0, 0, 0), -1)
    img = cv2.addWeighted(overlay, 0.55, img, 0.45, 0)
    top = order[0]
    cv2.putText(img, f"{classes[top]} {probs[top]:.2f}", (6, line_h - 4), cv2.FONT_HERSHEY_SIMPLEX,
                scale * 0.8, (255, 255, 255), th, cv2.LINE_AA)
    bar_max = panel_w - 12
    for r, c in enumerate(order, start=1):
        y = line_h * r + 4
        cv2.rectangle(img, (6, y), (6 + int(bar_max * float(probs[c])), y + line_h - 8),
                      (60, 200, 90) if r == 1 else (90, 140, 230), -1)
        cv2.putText(img, f"{classes[c]} {probs[c]:.2f}", (8, y + line_h - 11), cv2.FONT_HERSHEY_SIMPLEX,
                    scale * 0.55, (255, 255, 255), max(1, th - 1), cv2.LINE_AA)
    if next_event:
        y = line_h * (len(order) + 1) + 4
        cv2.putText(img, f"next: {next_event[0]} {next_event[1]:.2f}", (6, y + line_h - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, (255, 230, 120), max(1, th - 1), cv2.LINE_AA)
    return img


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per track id."""
    h = (track_id * 0.618034) % 1.0
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 1.0))


def draw_people(frame: np.ndarray, people: list[tuple]) -> np.ndarray:
    """RGB frame -> RGB frame with each person's box, id and current action: people [(track_id, box (4,) in
    this frame's pixels, label, prob)]."""
    import cv2

    img = frame.copy()
    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 700)
    th = max(1, int(round(scale * 2)))
    for tid, box, label, prob in people:
        c = track_colour(tid)
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), c, th)
        text = f"#{tid} {label} {prob:.2f}"
        (tw, tth), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, max(1, th - 1))
        ty = y1 - 4 if y1 - tth - 6 > 0 else y2 + tth + 4
        cv2.rectangle(img, (x1, ty - tth - 3), (x1 + tw + 4, ty + 3), (0, 0, 0), -1)
        cv2.putText(img, text, (x1 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, c, max(1, th - 1), cv2.LINE_AA)
    return img


def render_video(video: str | Path, pred, out_dir: Path, vcfg=None, max_side: int = 640,
                 min_side: int = 480) -> Path:
    """Write out_dir/<name>.annotated.mp4 for a VideoPrediction (the label panel) or a PeoplePrediction
    (each person's box, id and current action); returns its path. Small videos are upscaled so the longer
    side is at least min_side and the text stays readable."""
    import cv2

    out = Path(out_dir) / f"{Path(video).stem}.annotated.mp4"
    writer = None
    with contextlib.ExitStack() as stack:  # the writer opens at the first frame, when the size is known
        for frames, ts in iter_frames(video, sampling="all", max_side=max_side,
                                      decoder=vcfg.decoder if vcfg else "auto"):
            if writer is None:
                fh, fw = frames.shape[1:3]
                up = max(1.0, min_side / max(fh, fw))
                w, h = int(fw * up) // 2 * 2, int(fh * up) // 2 * 2  # yuv420p needs even sizes
                writer = stack.enter_context(VideoWriter(out, pred.fps or 25.0, w, h))
                draw = _people_drawer(pred, fw, fh, w, h) if hasattr(pred, "people") else _label_drawer(pred)
            for f, t in zip(frames, ts):
                f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) if f.shape[:2] != (h, w) else f
                writer.write(draw(f, float(t)))
    return out


def _label_drawer(pred):
    """draw(frame, t) for a VideoPrediction: the label panel of the last sampled step at or before t."""
    def draw(f, t):
        return draw_overlay(f, pred.classes, pred.step_probs[step_at(pred.step_times, t)])
    return draw


def _people_drawer(pred, fw: int, fh: int, w: int, h: int):
    """draw(frame, t) for a PeoplePrediction: each person's box, id and current action. The boxes are in the
    video's own pixels; frames here are decoded at max_side (fw x fh), then upscaled to w x h."""
    own_w, own_h = pred.size or (fw, fh)
    scale = np.array([w / max(1, own_w), h / max(1, own_h)] * 2)

    def draw(f, t):
        now = [(p.track_id, p.box_at(t) * scale, *p.label_at(t)) for p in pred.people if p.box_at(t) is not None]
        return draw_people(f, now)
    return draw
