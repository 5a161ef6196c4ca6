"""Benchmark inputs, generated once and kept in ~/.cache/vap/bench (or $VAP_BENCH): deterministic
videos (a moving scene with texture, H.264) and a random-init checkpoint for timing runs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data.writer import VideoWriter  # noqa: E402

BENCH_DIR = Path(os.environ.get("VAP_BENCH", Path.home() / ".cache" / "vap" / "bench")).expanduser()


def scene_frame(i: int, w: int, h: int, base: np.ndarray) -> np.ndarray:
    """A textured background panning one pixel a frame, with a bright box crossing it."""
    f = np.roll(base, i * 2, axis=1).copy()
    x = int((i * 7) % max(1, w - w // 6))
    y = int(h / 3 + h / 6 * np.sin(i / 15))
    f[y:y + h // 5, x:x + w // 6] = (240, 80 + (i % 100), 40)
    return f


def make_video(path: Path, seconds: float, w: int, h: int, fps: int = 30) -> Path:
    """H.264 (libx264 ultrafast, yuv420p) of the moving scene; reused when it exists.
    Without PyAV (e.g. a bare GPU machine) OpenCV writes MPEG-4 Part 2 instead (data/writer.py)."""
    import cv2

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (h // 24, w // 24, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    with VideoWriter(path, fps, w, h, preset="ultrafast") as wr:
        for i in range(int(seconds * fps)):
            wr.write(scene_frame(i, w, h, base))
    return path


def repeat_video(src: Path, dst: Path, times: int) -> Path:
    """dst = src played `times` times, by copying packets with shifted timestamps (no re-encoding)."""
    import av

    if dst.is_file():
        return dst
    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        packets = [p for p in inp.demux(ist) if p.dts is not None]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        for k in range(times):
            for p in packets:
                p2 = av.Packet(bytes(p))
                p2.pts, p2.dts, p2.duration = p.pts + k * span, p.dts + k * span, p.duration
                p2.is_keyframe = p.is_keyframe
                p2.time_base = ist.time_base
                p2.stream = ost
                out.mux(p2)
    tmp.rename(dst)
    return dst


def clip_folder(n: int = 24) -> Path:
    """A folder of short 320x240 clips (10 s each at 25 fps) for end-to-end runs."""
    folder = BENCH_DIR / "clips"
    for i in range(n):
        make_video(folder / f"clip_{i:03d}.mp4", 10, 320, 240, fps=25)
    return folder


def timing_checkpoint(backbone: str = "efficientnet_lite0", input_size: int = 224, classes: int = 10,
                      runtime: str = "torch", streams: str = "frame") -> Path:
    """A checkpoint with a random-init LSTM head over `backbone` (timing only: the weights don't matter).
    streams: views.streams, comma-separated; the whole frame by default, so that the pipeline's overhead
    is measured against one backbone pass per frame (each further stream is one more pass)."""
    import torch

    from pipeline.config import load_config
    from pipeline.models.backbones import create_backbone
    from pipeline.models.checkpoint import make_checkpoint
    from pipeline.models.heads import build_head

    cfg = load_config(None, [f"backbone.name={backbone}", f"backbone.input_size={input_size}",
                             f"backbone.runtime={runtime}", f"views.streams=[{streams}]"])
    path = BENCH_DIR / f"ckpt-{backbone}-{input_size}-{runtime}-{streams.replace(',', '+')}.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        bb = create_backbone(backbone, cfg.backbone.weights, input_size, "cpu")
        torch.manual_seed(0)
        n = len(cfg.views.streams)
        head = build_head(cfg.head, n * bb.dim, classes, groups=n)
        torch.save(make_checkpoint("classification", cfg, [f"c{i}" for i in range(classes)], n * bb.dim, head,
                                   bb.fingerprint), path)
    return path
