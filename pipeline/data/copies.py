"""Rewritten copies of training clips (train.copies): each clip as another camera and another file would give it.

A model trained on the clips as filmed reads the same clips worse once they come as other files: on
UT-Interaction's held-out sequences re-encoding alone costs ~2 points, a 1.05x zoom ~5, a camera shaken on a
windy tripod ~5, half the size 7, and both shake and zoom 9 (docs/results.md). Training and validating on
copies rewritten that way as well wins back 3 points over eight kinds of file (10 on a hand-held camera's), for
about one clip in 60 as filmed. The copies are real files, H.264 through the project's writer and read back
through the real decoder like any video, so the features the head trains on are the ones such a file gives.

    shaken   the camera on a tripod in the wind: every frame turned and shifted at random (up to ~1 % of the
             frame; the strength drawn per clip), zoomed 1-1.1x, at the clip's own rate
    smaller  resampled to 25 frames per second and scaled to 0.5-0.8 of its size

Each copy is drawn from a seed of the clip's bytes, written once under the feature cache
(`<cache.dir>/copies/`, atomically; the first of two writers at once wins) and reused: a rerun extracts nothing new, and the copies' features are
cached under their own bytes like any video's.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.video import open_frames
from pipeline.io import content_hash

log = logging.getLogger(__name__)

KINDS = ("shaken", "smaller")  # train.copies=n uses the first n
VERSION = 1                    # in the copies' names: a change of how they are drawn writes new ones
SOURCE_SIDE = 640              # copies are made from the clip decoded with its longer side at most this:
                               # above the views' 320, so the copy is still scaled down when it is read
SMALLER_FPS = 25.0


def copies_root(cfg) -> Path:
    return Path(cfg.cache.dir).expanduser() / "copies"


def copy_path(path: str | Path, kind: str, root: Path) -> Path:
    return root / f"{content_hash(path)}-{kind}-v{VERSION}.mp4"


def write_copies(paths: list[str], n: int, root: Path, decoder: str = "auto") -> dict[str, list[str]]:
    """{path: [its copies' paths]} for the first n KINDS, written where missing. A clip whose copy cannot be
    made (unreadable, or nothing can write H.264 here) gets fewer copies and a warning; training goes on."""
    out: dict[str, list[str]] = {}
    for p in paths:
        out[p] = []
        for kind in KINDS[:n]:
            try:
                dst = copy_path(p, kind, root)
                if not dst.is_file():
                    _write_once(p, kind, dst, decoder)
                out[p].append(str(dst))
            except Exception as e:  # a copy is extra training data, never a reason to stop
                log.warning("%s: no %s copy for train.copies (%s: %s)", p, kind, type(e).__name__,
                            str(e).splitlines()[0] if str(e) else "")
    return out


def _write_once(path: str, kind: str, dst: Path, decoder: str) -> None:
    """write_copy to a name of this process's, then linked to dst unless another process got there first: H.264
    encodes are not the same bytes twice, and a copy's cache entries are keyed by its bytes, so the first file
    stays the one every reader sees (two extractions of one cache at once, a pool's workers)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    mine = dst.with_name(f".{dst.stem}.{os.getpid()}.{threading.get_ident()}.mp4")
    try:
        write_copy(path, kind, mine, decoder, seed=dst.name)
        os.link(mine, dst)
    except FileExistsError:
        pass
    finally:
        mine.unlink(missing_ok=True)


def write_copy(path: str | Path, kind: str, dst: Path, decoder: str = "auto", seed: str = "") -> None:
    """One copy of the clip at path (KINDS), written to dst as H.264 (pipeline.data.writer: atomically); its
    random draws seeded by the string seed (default dst's name, which names the clip's bytes and the kind)."""
    from pipeline.data.writer import VideoWriter

    info, chunks = open_frames(str(path), sampling="all", decoder=decoder, max_side=SOURCE_SIDE)
    fps = info.fps if info.fps and info.fps > 0 else 25.0
    rng = np.random.default_rng([zlib.crc32((seed or dst.name).encode()), VERSION])
    first, _ = next(chunks)  # (t, h, w, 3): the size and the draws are settled before the writer opens
    h, w = first.shape[1:3]
    if kind == "shaken":
        amp, zoom = rng.uniform(0, 0.01), rng.uniform(1.0, 1.1)  # shift std (share of the frame), zoom
        size, rate = (w // 2 * 2, h // 2 * 2), fps
    elif kind == "smaller":
        s = rng.uniform(0.5, 0.8)
        size, rate = (max(2, int(w * s) // 2 * 2), max(2, int(h * s) // 2 * 2)), SMALLER_FPS
    else:
        raise ValueError(f"unknown copy kind {kind!r} (one of {', '.join(KINDS)})")
    done = 0  # output frames written
    with VideoWriter(dst, rate, *size, crf=12) as writer:  # a decoding error on the way leaves no file
        frames = itertools.chain([first], (c for c, _ in chunks))
        for src_i, f in enumerate(f for chunk in frames for f in chunk):
            if kind == "shaken":
                M = cv2.getRotationMatrix2D((w / 2, h / 2), rng.normal(0, amp * 30), zoom)
                M[:, 2] += rng.normal(0, amp, 2) * (w, h)
                writer.write(cv2.warpAffine(f, M, (w, h), flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REFLECT)[:size[1], :size[0]])
                continue
            small = None  # the output frames whose nearest earlier source frame is this one (25 fps from any rate)
            while np.floor(done / rate * fps + 1e-6) <= src_i:
                small = small if small is not None else cv2.resize(f, size, interpolation=cv2.INTER_AREA)
                writer.write(small)
                done += 1
