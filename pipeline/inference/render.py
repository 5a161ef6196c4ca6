"""Annotated video: the current label, its probability and a small bar chart on every frame.

The label at time t is the causal per-step output of the last sampled frame at or before t (what a
live stream would have shown). Written as H.264 (data/writer.py), to a temporary name renamed when complete.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from pipeline.data.video import iter_frames
from pipeline.data.writer import VideoWriter


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


def render_video(video: str | Path, pred, out_dir: Path, vcfg=None, max_side: int = 640,
                 min_side: int = 480) -> Path:
    """Write out_dir/<name>.annotated.mp4 for a VideoPrediction; returns its path. Small videos are
    upscaled so the longer side is at least min_side and the text stays readable."""
    import cv2

    out = Path(out_dir) / f"{Path(video).stem}.annotated.mp4"
    writer = None
    step_t, step_p = pred.step_times, pred.step_probs
    with contextlib.ExitStack() as stack:  # the writer opens at the first frame, when the size is known
        for frames, ts in iter_frames(video, sampling="all", max_side=max_side,
                                      decoder=vcfg.decoder if vcfg else "auto"):
            if writer is None:
                fh, fw = frames.shape[1:3]
                up = max(1.0, min_side / max(fh, fw))
                w, h = int(fw * up) // 2 * 2, int(fh * up) // 2 * 2  # yuv420p needs even sizes
                writer = stack.enter_context(VideoWriter(out, pred.fps or 25.0, w, h))
            for f, t in zip(frames, ts):
                i = max(0, int(np.searchsorted(step_t, t + 1e-9, side="right")) - 1)
                probs = step_p[min(i, len(step_p) - 1)]
                f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) if f.shape[:2] != (h, w) else f
                writer.write(draw_overlay(f, pred.classes, probs))
    return out
