"""Feature cache: one entry per (video content, backbone fingerprint, sampling).

Entries are .npz files (features float16 by default, timestamps float64, a JSON meta string)
written atomically, so a killed extraction leaves only complete entries and a rerun resumes where
it stopped. The key hashes the video's bytes, so an edited video never reuses a stale entry, and
the backbone fingerprint, so changed weights or preprocessing never do either.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import atomic_write_bytes, atomic_write_text
from .video import VideoError, iter_frames, video_kwargs

log = logging.getLogger(__name__)

FORMAT = 1
_hash_memo: dict[tuple, str] = {}


def content_hash(path: str | Path) -> str:
    """blake2b of the file's bytes, memoised per (path, size, mtime) within the process."""
    st = os.stat(path)
    memo_key = (str(path), st.st_size, st.st_mtime_ns)
    if memo_key not in _hash_memo:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _hash_memo[memo_key] = h.hexdigest()
    return _hash_memo[memo_key]


def sampling_id(vcfg) -> dict:
    """The parts of the video config that change which frames (and pixels) the backbone sees."""
    d = dict(sampling=vcfg.sampling, max_side=vcfg.max_side, decoder=vcfg.decoder)
    if vcfg.sampling == "fps":
        d["fps"] = vcfg.fps
    elif vcfg.sampling == "count":
        d["num_frames"] = vcfg.num_frames
    return d


class FeatureCache:
    def __init__(self, root: str | Path, dtype: str = "float16"):
        root = os.environ.get("VAP_CACHE") or str(root)
        self.root = Path(root).expanduser()
        self.dtype = dtype

    @classmethod
    def from_config(cls, cfg) -> "FeatureCache":
        return cls(cfg.cache.dir, cfg.cache.dtype)

    def key(self, video: str | Path, fingerprint: str, vcfg, view: str = "") -> str:
        """view: "" for the frames as they are, "hflip" for mirrored frames (flip augmentation)."""
        parts = [FORMAT, content_hash(video), fingerprint, sampling_id(vcfg), self.dtype] + ([view] if view else [])
        ident = json.dumps(parts, sort_keys=True)
        return hashlib.sha1(ident.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, features: np.ndarray, timestamps: np.ndarray, meta: dict) -> None:
        buf = io.BytesIO()
        np.savez(buf, features=features.astype(self.dtype), timestamps=timestamps.astype(np.float64),
                 meta=np.array(json.dumps(meta)))
        atomic_write_bytes(self.path(key), buf.getvalue())

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray, dict]:
        """(features float32 (T,D), timestamps float64 (T,), meta)."""
        with np.load(self.path(key)) as z:
            return z["features"].astype(np.float32), z["timestamps"], json.loads(str(z["meta"]))


@dataclass
class ExtractResult:
    keys: dict[str, str] = field(default_factory=dict)        # video path -> cache key
    failures: dict[str, str] = field(default_factory=dict)    # video path -> one-line error
    extracted: int = 0                                        # newly encoded videos
    reused: int = 0                                           # entries already in the cache
    frames: int = 0                                           # frames newly encoded


def prefetch(gen, depth: int = 2):
    """Run a generator in a background thread, `depth` items ahead: decoding overlaps encoding.
    If the consumer stops early (an error while encoding), the thread is told to stop too."""
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
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def encode_video(path: str, backbone, vcfg, view: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Decode (chunked, prefetched) and encode one video: (features (T,D) float32, timestamps (T,))."""
    feats, times = [], []
    for frames, ts in prefetch(iter_frames(path, **video_kwargs(vcfg))):
        if view == "hflip":
            frames = frames[:, :, ::-1]
        feats.append(backbone.encode(frames))
        times.append(ts)
    return np.concatenate(feats), np.concatenate(times)


def extract(paths: list[str], backbone, vcfg, cache: FeatureCache, progress: bool = True,
            failures_file: str | Path | None = None, view: str = "") -> ExtractResult:
    """Fill the cache for `paths`. A bad video is recorded in result.failures, never fatal."""
    from tqdm import tqdm

    res = ExtractResult()
    todo = []
    for p in paths:
        try:
            key = cache.key(p, getattr(backbone, "cache_id", backbone.fingerprint), vcfg, view)
        except OSError as e:
            res.failures[p] = f"{p}: cannot read file ({e.strerror})"
            continue
        res.keys[p] = key
        if cache.has(key):
            res.reused += 1
        else:
            todo.append(p)
    desc = f"extract {backbone.name}" + (f" ({view})" if view else "")
    bar = tqdm(todo, desc=desc, unit="video", disable=not progress or not todo, dynamic_ncols=True)
    for p in bar:
        try:
            feats, ts = encode_video(p, backbone, vcfg, view)
        except VideoError as e:
            res.failures[p] = str(e)
            res.keys.pop(p, None)
            continue
        except Exception as e:  # an unexpected library error on one file must not end the run
            res.failures[p] = f"{p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            res.keys.pop(p, None)
            continue
        cache.save(res.keys[p], feats, ts, dict(video=p, backbone=backbone.name,
                                                fingerprint=backbone.fingerprint, sampling=sampling_id(vcfg),
                                                numerics=getattr(backbone, "numerics", "torch-fp32"),
                                                view=view))
        res.extracted += 1
        res.frames += len(feats)
        bar.set_postfix(frames=res.frames)
    if failures_file is not None and res.failures:
        atomic_write_text(failures_file, "".join(f"{e}\n" for e in res.failures.values()))
    return res
