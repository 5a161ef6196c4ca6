"""Video decoding and frame sampling.

Frames leave this module as RGB uint8 (T, H, W, 3) with float64 timestamps (T,) in seconds;
nothing downstream ever sees BGR. Decord is the primary decoder, OpenCV the fallback. Long videos
are read in chunks bounded in bytes, so a 10-minute 1080p file never sits in memory whole.

Decord's known problems and what we do about them:
- random access returns wrong frames on some files (dmlc/decord#54, #195), while in-order reads
  are right: indices are always requested in increasing order, chunk by chunk, and any decord error
  falls back to OpenCV for that file when decoder=auto;
- memory balloons on large frames and long reads (dmlc/decord#111): we ask decord to scale at
  decode time (width/height) when video.max_side is set, and read chunks bounded in bytes.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from pipeline.capabilities import decord_enabled
from pipeline.errors import VideoError  # noqa: F401 (importable from here as before)

log = logging.getLogger(__name__)


@dataclass
class VideoInfo:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    backend: str
    frames_expected: int = 0  # sampled frames that the container's frame count implies (open_frames)
    decode_errors: list = field(default_factory=list)  # what the decoders reported while reading

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


# ----------------------------------------------------------------------------- sampling (pure)

def sample_indices(num_frames: int, fps: float, sampling: str = "fps", target_fps: float = 10.0,
                   count: int = 16) -> np.ndarray:
    """Frame indices to decode, increasing. Pure function of the clip's length and rate.

    fps:   one frame every 1/target_fps seconds (every frame when the video is slower than that)
    count: `count` frames at the centres of equal segments over the clip (TSN-style)
    all:   every frame
    """
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if sampling == "all":
        return np.arange(num_frames, dtype=np.int64)
    if sampling == "count":
        # centre of each of `count` equal segments; repeats frames when the clip is shorter
        seg = num_frames / count
        return np.minimum((np.arange(count) * seg + seg / 2).astype(np.int64), num_frames - 1)
    if sampling == "fps":
        if fps <= 0 or target_fps >= fps:
            return np.arange(num_frames, dtype=np.int64)
        duration = num_frames / fps
        times = np.arange(0.0, duration, 1.0 / target_fps)
        idx = np.floor(times * fps + 1e-6).astype(np.int64)
        return np.unique(np.clip(idx, 0, num_frames - 1))
    raise ValueError(f"unknown sampling '{sampling}' (fps | count | all)")


def decode_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) to decode at: the longer side at most max_side, aspect kept, even numbers."""
    if max_side <= 0 or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)


def chunk_len(width: int, height: int, chunk_mb: int) -> int:
    """How many RGB frames of this size fit in chunk_mb megabytes (at least 1)."""
    return max(1, int(chunk_mb * 1024 * 1024 // max(1, width * height * 3)))


# ----------------------------------------------------------------------------- backends

def _check_file(path: str) -> None:
    """A VideoError saying what `path` is when it is no readable, non-empty file."""
    if os.path.islink(path) and not os.path.exists(path):
        raise VideoError(path, f"broken symbolic link (to {os.readlink(path)})")
    if not os.path.exists(path):
        raise VideoError(path, "file not found")
    if os.path.isdir(path):
        raise VideoError(path, "is a folder, not a video file")
    if not os.path.isfile(path):
        raise VideoError(path, "not a regular file")
    if not os.access(path, os.R_OK):
        raise VideoError(path, "cannot read file (permission denied)")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "empty file (0 bytes)")


def _decord():
    if not decord_enabled():  # VAP_DECORD=0: behave as a machine without a decord wheel
        return None
    try:
        import decord
    except ImportError:
        return None
    decord.bridge.reset_bridge()
    return decord


def decord_available() -> bool:
    return _decord() is not None


class _DecordReader:
    name = "decord"

    def __init__(self, path: str, max_side: int):
        decord = _decord()
        if decord is None:
            raise VideoError(path, "decord is not installed (pip install decord) - use video.decoder=opencv")
        try:
            probe = decord.VideoReader(path, num_threads=1)
            n, fps = len(probe), float(probe.get_avg_fps())
            if n == 0:
                raise VideoError(path, "video has no frames")
            h, w = probe[0].shape[:2]
            dw, dh = decode_size(w, h, max_side)
            self.vr = probe if (dw, dh) == (w, h) else decord.VideoReader(path, width=dw, height=dh, num_threads=1)
        except VideoError:
            raise
        except Exception as e:  # decord raises DECORDError / RuntimeError with C++ traces
            raise VideoError(path, f"decord cannot read it ({_first_line(e)})") from None
        self.info = VideoInfo(path, plausible_frames(n, path), fps, w, h, self.name)
        self.size = (dw, dh)

    def read(self, indices: np.ndarray) -> np.ndarray:  # (t, H, W, 3) RGB uint8
        return self.vr.get_batch(list(map(int, indices))).asnumpy()


class _OpenCVReader:
    name = "opencv"

    def __init__(self, path: str, max_side: int):
        import cv2

        self.cv2 = cv2
        self.path = path
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise VideoError(path, "OpenCV cannot open it (not a video, or an unsupported codec)")
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(self.cap.get(cv2.CAP_PROP_FPS))
        w = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if n <= 0:  # some containers (webm, streams) do not store a frame count: count them
            n = 0
            while self.cap.grab():
                n += 1
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        if not (0 < fps < 1000):
            fps = 25.0
        if w <= 0 or h <= 0:
            raise VideoError(path, "no picture size in its header (damaged file?)")
        self.info = VideoInfo(path, plausible_frames(n, path), fps, w, h, self.name)
        self.size = decode_size(w, h, max_side)
        self.pos = 0  # index of the next frame grab() returns

    def read(self, indices: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        out = []
        for i in indices:
            i = int(i)
            if i < self.pos or i - self.pos > 300:  # far jump: seek (exact on keyframe-indexed files)
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                self.pos = i
            while self.pos < i:  # short gap: grab without decoding to RGB, exact on every file
                if not self.cap.grab():
                    break
                self.pos += 1
            ok, frame = self.cap.read()
            if not ok:
                break  # the stored frame count was too high; stop at the real end
            self.pos += 1
            if (frame.shape[1], frame.shape[0]) != self.size:
                frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if not out:
            return np.zeros((0, self.size[1], self.size[0], 3), np.uint8)
        return np.stack(out)


def plausible_frames(n: int, path) -> int:
    """A header's frame count, at most a quarter of the file's size in bytes: no encoded frame and its
    index entry take under 4 bytes, and a damaged header can claim billions of frames (seen by the
    fuzzer: 1.46e9 in a 60 KB mp4), whose sampled indices alone would take gigabytes. Reading stops
    at the real end either way."""
    try:
        return min(n, max(1, os.path.getsize(path) // 4))
    except OSError:
        return n


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


# Above this file size, decoder=auto reads with OpenCV first: decord's memory grows with the file
# (measured: +180 MB from a 60 s to a 10 min 1080p H.264 file, where OpenCV stays flat and decodes
# as fast; bench/perf.py decode and memory).
LONG_FILE_MB = 16


def open_video(path, decoder: str = "auto", max_side: int = 0):
    """Open a reader; decoder=auto tries decord and falls back to OpenCV (OpenCV first for files
    over LONG_FILE_MB, to keep memory flat on long videos)."""
    path = str(path)
    _check_file(path)
    if decoder == "opencv" or (decoder == "auto" and not decord_available()):
        return _OpenCVReader(path, max_side)
    if decoder == "auto" and os.path.getsize(path) > LONG_FILE_MB * 1024 * 1024:
        try:
            return _OpenCVReader(path, max_side)
        except VideoError as e:
            log.debug("OpenCV failed on %s (%s); trying decord", path, e.problem)
            return _DecordReader(path, max_side)
    if decoder == "decord":
        return _DecordReader(path, max_side)
    if decoder != "auto":
        raise ValueError(f"unknown decoder '{decoder}' (auto | decord | opencv)")
    try:
        return _DecordReader(path, max_side)
    except VideoError as e:
        log.debug("decord failed on %s (%s); trying OpenCV", path, e.problem)
        return _OpenCVReader(path, max_side)


def probe(path, decoder: str = "auto") -> VideoInfo:
    return open_video(path, decoder).info


# ----------------------------------------------------------------------------- reading

def open_frames(path, sampling: str = "fps", fps: float = 10.0, num_frames: int = 16,
                decoder: str = "auto", max_side: int = 0, chunk_mb: int = 32,
                indices: np.ndarray | None = None) -> tuple[VideoInfo, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """Open the video once: its VideoInfo now (errors raise here), and the iter_frames chunks."""
    reader = open_video(path, decoder, max_side)
    info = reader.info
    if info.num_frames <= 0:
        raise VideoError(path, "video has no frames")
    if indices is None:
        indices = sample_indices(info.num_frames, info.fps, sampling, fps, num_frames)
    claimed = plausible_frames(container_frames(path), path)  # decord counts what it can index: hides a cut
    info.frames_expected = len(indices) if claimed <= info.num_frames else len(
        sample_indices(claimed, info.fps, sampling, fps, num_frames))
    return info, _read_chunks(reader, path, indices, sampling, fps, num_frames, decoder, max_side, chunk_mb)


def iter_frames(path, sampling: str = "fps", fps: float = 10.0, num_frames: int = 16,
                decoder: str = "auto", max_side: int = 0, chunk_mb: int = 32,
                indices: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (frames (t,H,W,3) RGB uint8, timestamps (t,) float64 s) chunks of the sampled frames."""
    yield from open_frames(path, sampling, fps, num_frames, decoder, max_side, chunk_mb, indices)[1]


def _read_chunks(reader, path, indices, sampling, fps, num_frames, decoder, max_side, chunk_mb):
    info = reader.info
    step = chunk_len(*reader.size, chunk_mb)
    yielded = 0
    for start in range(0, len(indices), step):
        idx = indices[start:start + step]
        try:
            frames = reader.read(idx)
        except VideoError:
            raise
        except Exception as e:
            if decoder == "auto" and reader.name == "decord":
                # decord failed mid-file (bad seek, wrong frame count): redo this file with OpenCV
                log.warning("%s: decord failed (%s); falling back to OpenCV", path, _first_line(e))
                info.decode_errors.append(f"decord failed at frame {int(idx[0])} ({_first_line(e)})")
                yield from iter_frames(path, sampling, fps, num_frames, "opencv", max_side, chunk_mb,
                                       indices=indices[start:])
                return
            raise VideoError(path, f"decoding failed at frame {int(idx[0])} ({_first_line(e)})") from None
        if len(frames) == 0:
            break
        yielded += len(frames)
        yield frames, idx[:len(frames)].astype(np.float64) / info.fps
        if len(frames) < len(idx):
            break  # file shorter than its header said
    if yielded == 0:
        raise VideoError(path, "no frame could be decoded (corrupt or empty video)")


def container_frames(path) -> int:
    """The frame count the container's header claims (PyAV; duration x rate where no count is stored);
    0 when it says nothing or cannot be opened."""
    try:
        import av

        with av.open(str(path)) as c:
            st = c.streams.video[0]
            if st.frames:
                return int(st.frames)
            if st.duration and st.time_base and st.average_rate:
                return int(round(float(st.duration * st.time_base * st.average_rate)))
    except Exception:  # any reading problem: the decoders' own errors say more
        pass
    return 0


def decode_warning(info: VideoInfo, decoded: int) -> str:
    """'' for a video read as its container describes it; else one line: fewer than 90% of the expected
    sampled frames decoded (a truncated or damaged file), or what the decoders reported."""
    problems = []
    if info.frames_expected and decoded < 0.9 * info.frames_expected:
        problems.append(f"only {decoded} of {info.frames_expected} expected frames decoded "
                        "(truncated or damaged file?)")
    problems += info.decode_errors
    return "; ".join(problems)


def load_frames(path, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """All sampled frames at once: (T,H,W,3) uint8 RGB and (T,) timestamps. For short clips."""
    chunks = list(iter_frames(path, **kwargs))
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def frame_rate(ts: np.ndarray, default: float) -> float:
    """Frames per second of consecutive decoded frames' timestamps (T,); default for a single frame or a
    clip without timing."""
    return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else default


def video_kwargs(vcfg) -> dict:
    """iter_frames keyword arguments from a VideoConfig."""
    return dict(sampling=vcfg.sampling, fps=vcfg.fps, num_frames=vcfg.num_frames,
                decoder=vcfg.decoder, max_side=vcfg.max_side, chunk_mb=vcfg.chunk_mb)


class RateLimiter:
    """Which pushed frames of a live stream to encode: every n-th (every=n), or by timestamp at `fps`.

    By timestamp, a frame stands for [ts, ts + dt) (dt from the previous frame) and is taken when
    the next due time falls inside it: the same frames that offline sampling at `fps` picks.
    fps=0 and every=0 take every frame. Shared by the PyTorch and ONNX Runtime streaming predictors.
    """

    def __init__(self, fps: float = 0.0, every: int = 0):
        self.fps, self.every = fps, every
        self.n = 0
        self.due = None
        self.prev_ts = None

    def take(self, ts: float) -> bool:
        self.n += 1
        prev, self.prev_ts = self.prev_ts, ts
        if self.every:
            return (self.n - 1) % self.every == 0
        if not self.fps:
            return True
        if self.due is None:
            self.due = ts
        dt = ts - prev if prev is not None else 0.0
        end = ts + dt * (1 - 1e-6)
        if not (self.due <= ts + 1e-9 or self.due < end):
            return False
        self.due += 1.0 / self.fps
        while self.due < end:  # the target rate is above the source rate: one frame per interval
            self.due += 1.0 / self.fps
        return True


class DecodeTimeout(Exception):
    """prefetch waited `seconds` for the next item: the producer (a decoder) is stuck."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        super().__init__(f"decode timed out after {seconds:g} s")


def prefetch(gen, depth: int = 2, timeout: float | None = None):
    """Run a generator in a background thread, `depth` items ahead: decoding overlaps encoding.
    If the consumer stops early (an error while encoding), the thread is told to stop too.
    timeout: seconds to wait for each item; past it DecodeTimeout is raised and the thread abandoned
    (a decoder stuck in native code cannot be interrupted; it stops at its next item, if ever)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker():
        try:
            for item in gen:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(e)
        put(done)

    threading.Thread(target=worker, daemon=True).start()
    try:
        while True:
            try:
                item = q.get(timeout=timeout)
            except queue.Empty:
                raise DecodeTimeout(timeout) from None
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
