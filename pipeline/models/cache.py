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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import ViewsConfig
from pipeline.data.video import VideoError, iter_frames, prefetch, video_kwargs  # noqa: F401 (prefetch: as before)
from pipeline.data.views import FrameEncoder, reads_people, stream_id
from pipeline.io import atomic_write_bytes, atomic_write_text, content_hash
from pipeline.models.detector import detector_id, pose_tracker

log = logging.getLogger(__name__)

FORMAT = 1
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
        self.root = Path(root).expanduser()  # $VAP_CACHE is applied by config.load_config, under explicit settings
        self.dtype = dtype

    @classmethod
    def from_config(cls, cfg) -> "FeatureCache":
        return cls(cfg.cache.dir, cfg.cache.dtype)

    def key(self, video: str | Path, fingerprint: str, vcfg, view: str = "") -> str:
        """view: "" for the whole frames as they are, "hflip" for mirrored frames (flip augmentation),
        else a stream of views.py and its settings (stream_views)."""
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

    def load_streams(self, keys: list[str] | str) -> tuple[np.ndarray, np.ndarray]:
        """Features of several streams of one video side by side: (T, sum D) float32, timestamps (T,)."""
        loaded = [self.load(k) for k in ([keys] if isinstance(keys, str) else keys)]
        return np.concatenate([f for f, _, _ in loaded], 1), loaded[0][1]


@dataclass
class ExtractResult:
    keys: dict[str, list[str]] = field(default_factory=dict)  # video path -> cache keys, one per stream
    failures: dict[str, str] = field(default_factory=dict)    # video path -> one-line error
    extracted: int = 0                                        # newly encoded videos
    reused: int = 0                                           # entries already in the cache
    frames: int = 0                                           # frames newly encoded


def stream_views(views, flip: bool = False, detector=None) -> list[tuple[str, str]]:
    """[(stream, cache view string)] for views.streams (None = the whole frame only). The whole frame
    keeps the view strings of earlier versions ("" and "hflip"), so their cache entries stay valid.
    detector: the DetectorConfig the pose stream's keypoints come from."""
    streams = list(views.streams) if views is not None else ["frame"]
    did = detector_id(detector, views) if detector is not None and views is not None and reads_people(views) else ""
    out = []
    for k in streams:
        sid = stream_id(k, views, did) if views is not None else ""
        out.append((k, ":".join(x for x in (sid, "hflip" if flip else "") if x)))
    return out


def encode_video(path: str, backbone, vcfg, views=None, flip: bool = False,
                 streams: list[str] | None = None, people=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Decode (chunked, prefetched) and encode one video: ({stream: features (T,D) float32}, timestamps (T,)).
    views: a ViewsConfig (None = the whole frame only); streams: the subset to encode (default all);
    people: the PersonTracker of the pose stream or of views.region=people (models.detector.pose_tracker)."""
    vc = views if views is not None else ViewsConfig(streams=["frame"])
    feats, ts = encode_video_versions(path, backbone, vcfg, views, {flip: list(streams or vc.streams)}, people)
    return feats[flip], ts


def encode_video_versions(path: str, backbone, vcfg, views, wanted: dict[bool, list[str]],
                          people=None) -> tuple[dict[bool, dict[str, np.ndarray]], np.ndarray]:
    """encode_video for the views as they are and mirrored at once: wanted {flip: streams} ->
    ({flip: {stream: features (T,D) float32}}, timestamps (T,)), one decode and one rendering of the views for
    both (views.FrameEncoder.encode_versions)."""
    vc = views if views is not None else ViewsConfig(streams=["frame"])
    union = [k for k in vc.streams if any(k in s for s in wanted.values())]
    encoder = FrameEncoder(backbone, vc, False, union, people if reads_people(vc, union) else None)
    encoder.reset()  # the person tracker is shared between videos: no track carries over into this one
    feats: dict[bool, dict[str, list]] = {flip: {k: [] for k in s} for flip, s in wanted.items()}
    times = []
    for frames, ts in prefetch(iter_frames(path, **video_kwargs(vcfg))):
        for flip, out in encoder.encode_versions(frames, wanted=wanted).items():
            for k, f in out.items():
                feats[flip][k].append(f)
        times.append(ts)
    return {flip: {k: np.concatenate(v) for k, v in fs.items()} for flip, fs in feats.items()}, np.concatenate(times)


def plan_extract(paths: list[str], backbone, vcfg, cache: FeatureCache, views=None,
                 flip: bool = False, detector=None) -> tuple[ExtractResult, list[str]]:
    """(result with the keys of every readable video, its reused count and unreadable files; the videos
    that still lack an entry). Every engine decides what to encode with this."""
    res, todo = ExtractResult(), []
    sv = stream_views(views, flip, detector)
    for p in paths:
        try:
            keys = [cache.key(p, getattr(backbone, "cache_id", backbone.fingerprint), vcfg, v) for _, v in sv]
        except OSError as e:
            res.failures[p] = f"{p}: cannot read file ({e.strerror})"
            continue
        res.keys[p] = keys
        if all(cache.has(k) for k in keys):
            res.reused += 1
        else:
            todo.append(p)
    return res, todo


def versions(items: list, mirrored: bool) -> dict[bool, list]:
    """The `wanted` of extract_versions (and person_cache.extract_people_versions) for the same videos or rows as
    they are and, with mirrored (train.flip_aug), mirrored too."""
    return {False: items, True: items} if mirrored else {False: items}


def versions_label(wanted: dict) -> str:
    """What a progress bar adds to its name for the versions extracted: ' (mirrored)', ' (and mirrored)' or ''."""
    return " (mirrored)" if list(wanted) == [True] else " (and mirrored)" if len(wanted) > 1 else ""


def failure_line(path: str, e: Exception) -> str:
    """The one-line error of a video that could not be encoded: a VideoError names the file and the problem;
    an unexpected library error is named with its type, so that it ends one video, never the run."""
    if isinstance(e, VideoError):
        return str(e)
    return f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def extract(paths: list[str], backbone, vcfg, cache: FeatureCache, progress: bool = True,
            failures_file: str | Path | None = None, flip: bool = False, views=None, detector=None) -> ExtractResult:
    """Fill the cache for `paths`, one entry per (video, stream of views.streams). result.keys maps each
    video to its list of keys, in stream order (FeatureCache.load_streams concatenates them). One decode
    per video encodes every stream it still lacks. A bad video is recorded in result.failures, never fatal.
    flip=True: the features of the mirrored views (flip augmentation). detector: the DetectorConfig of the
    pose stream (required when views.streams has pose)."""
    return extract_versions({flip: paths}, backbone, vcfg, cache, progress, failures_file, views, detector)[flip]


def extract_versions(wanted: dict[bool, list[str]], backbone, vcfg, cache: FeatureCache, progress: bool = True,
                     failures_file: str | Path | None = None, views=None,
                     detector=None) -> dict[bool, ExtractResult]:
    """extract for the views as they are and mirrored (flip augmentation) at once: wanted {flip: paths} ->
    {flip: ExtractResult}. A video in both lists is decoded, and its views rendered, once for both
    (encode_video_versions); a video that cannot be read is a failure in the result of each list it is in."""
    from tqdm import tqdm

    plans = {flip: plan_extract(paths, backbone, vcfg, cache, views, flip, detector) for flip, paths in wanted.items()}
    out = {flip: res for flip, (res, _) in plans.items()}
    todo = list(dict.fromkeys(p for _, t in plans.values() for p in t))  # each video once, in order
    sv = {flip: stream_views(views, flip, detector) for flip in wanted}
    people = pose_tracker(views, detector, str(getattr(backbone, "device", "cpu"))) if todo else None
    bar = tqdm(todo, desc=f"extract {backbone.name}{versions_label(wanted)}", unit="video", disable=not progress or not todo, dynamic_ncols=True)
    frames = 0
    for p in bar:
        missing = {flip: [(k, key) for (k, _), key in zip(sv[flip], out[flip].keys[p]) if not cache.has(key)]
                   for flip, (_, t) in plans.items() if p in t}
        for flip in [f for f, m in missing.items() if not m]:  # written meanwhile by another process
            out[flip].reused += 1
            del missing[flip]
        try:
            feats, ts = encode_video_versions(p, backbone, vcfg, views,
                                              {flip: [k for k, _ in m] for flip, m in missing.items()}, people) \
                if missing else ({}, np.zeros(0))
        except Exception as e:  # one bad file must not end the run
            for flip in missing:
                out[flip].failures[p] = failure_line(p, e)
                out[flip].keys.pop(p, None)
            continue
        for flip, m in missing.items():
            res = out[flip]
            for (k, view), key in zip(sv[flip], res.keys[p]):
                if (k, key) in m:
                    cache.save(key, feats[flip][k], ts, dict(video=p, backbone=backbone.name,
                                                             fingerprint=backbone.fingerprint,
                                                             sampling=sampling_id(vcfg),
                                                             numerics=getattr(backbone, "numerics", "torch-fp32"),
                                                             stream=k, view=view))
            res.extracted += 1
            res.frames += len(ts)
        frames += len(ts) * len(missing)
        bar.set_postfix(frames=frames)
    failures = {p: e for res in out.values() for p, e in res.failures.items()}
    if failures_file is not None and failures:
        atomic_write_text(failures_file, "".join(f"{e}\n" for e in failures.values()))
    return out
