"""Writing RGB frames to a video file, atomically (a temporary name, renamed when complete):
.mp4 as H.264 through PyAV (the FFmpeg libraries in its wheel include libx264; browsers play H.264,
not OpenCV's mp4v), OpenCV's mp4v when PyAV is missing; .avi as MJPG through OpenCV. The one video
writer of the project: synthetic data, composed sequences, annotated videos and benchmark inputs."""
from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path


class VideoWriter:
    """with VideoWriter(path, fps, width, height) as w: w.write(rgb_frame) ... - the file appears,
    complete, when the block ends; an error inside the block leaves no file."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int, crf: int = 23,
                 preset: str = "veryfast"):
        import cv2

        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(path))
        self.size = (width, height)
        self.c = None
        if Path(path).suffix.lower() == ".avi":
            self._opencv(cv2, tmp, fps, "MJPG")
            return
        try:
            import av

            self.c = av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"})
            self.s = self.c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            self.s.width, self.s.height, self.s.pix_fmt = width, height, "yuv420p"
            self.s.options = {"crf": str(crf), "preset": preset}
            self.av, self.codec = av, "h264"
        except Exception:  # no PyAV, or no libx264 in it
            self.c = None
            self._opencv(cv2, tmp, fps, "mp4v")

    def _opencv(self, cv2, tmp: str, fps: float, fourcc: str) -> None:
        self.cv = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), fps, self.size)
        if not self.cv.isOpened():
            self._stack.close()
            raise RuntimeError(f"{tmp}: OpenCV cannot write {fourcc} video here (install PyAV: pip install av)")
        self.codec = fourcc.lower()

    def write(self, rgb: np.ndarray) -> None:
        """One uint8 (H, W, 3) RGB frame of the writer's size."""
        if self.c is not None:
            for pk in self.s.encode(self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                self.c.mux(pk)
        else:
            import cv2

            self.cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def _finish(self) -> None:
        if self.c is not None:
            for pk in self.s.encode():
                self.c.mux(pk)
            self.c.close()
        else:
            self.cv.release()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._finish()
        finally:
            self._stack.__exit__(*exc)  # renamed into place, or removed when the block raised


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0, crf: int = 12) -> None:
    """Write RGB frames (T,H,W,3) in one go; .mp4 at near-lossless CRF 12 by default (synthetic data:
    the sensor noise is part of the data), odd sizes cropped to even (yuv420p needs them)."""
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    with VideoWriter(path, fps, w, h, crf=crf) as wr:
        for f in frames:
            wr.write(f[:h, :w])
