"""Cached features of annotated people (per-person training rows: data/tracks.py), one entry per (row,
stream): the views of views.streams rendered around the person's annotated box (views.PersonBox, as
per-person prediction renders them around tracked boxes) at the sampled frames between the row's start and
end. One decode per video serves every row of that video; entries are written atomically like cache.py's,
keyed by the video's bytes, the backbone, the sampling, the stream and the row's person (PersonSpan.ident).
"""
from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from pipeline.config import ViewsConfig
from pipeline.data.video import open_frames, prefetch, video_kwargs
from pipeline.data.views import POSE, FrameEncoder, ViewRenderer
from pipeline.models.cache import ExtractResult, FeatureCache, failure_line, sampling_id, stream_views, versions_label
from pipeline.models.detector import pose_tracker

log = logging.getLogger(__name__)
SHORT_ROW_S = 0.5  # a row between two sampled frames takes the next one if it comes within this many seconds
MATCH_IOU = 0.3  # the pose stream reads the detected person whose box overlaps the annotated one at least this much


def _iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matching_person(people: list, box):
    """The detected person (models.person.Person) who is the annotated one (box), or None."""
    best = max(people, key=lambda p: _iou(p.box, box), default=None)
    return best if best is not None and _iou(best.box, box) >= MATCH_IOU else None


def encode_people(path: str, samples: list, backbone, vcfg, views=None, flip: bool = False, streams=None,
                  tracker=None) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """Decode one video once and encode each sample's person (datasets.Sample with a PersonSpan) at the sampled
    frames of its span: {sample.key: ({stream: (T, D) float32}, timestamps (T,))}. A row shorter than one
    sampling step takes the next sampled frame (up to SHORT_ROW_S after its end), or the video's last one; a row
    that starts after the video's end is left out. streams: the subset to encode (default views.streams)."""
    return encode_people_versions(path, samples, backbone, vcfg, views, (flip,), streams, tracker)[flip]


def encode_people_versions(path: str, samples: list, backbone, vcfg, views=None, flips=(False, True), streams=None,
                           tracker=None) -> dict[bool, dict[str, tuple[dict[str, np.ndarray], np.ndarray]]]:
    """encode_people as they are and mirrored (flip augmentation) in one decode: {flip: {sample.key: ({stream: (T, D)},
    timestamps (T,))}} for each of flips; each person's views are rendered once and mirrored (views.FrameEncoder.
    encode_people_versions)."""
    vc = views if views is not None else ViewsConfig(streams=["frame"])
    enc = FrameEncoder(backbone, vc, False, streams, tracker if streams is None or POSE in streams else None)
    pose = POSE in enc.streams
    renderers = {s.key: ViewRenderer(enc.image_streams, vc, backbone.input_size) for s in samples}
    feats: dict[bool, dict[str, dict[str, list]]] = {f: {s.key: defaultdict(list) for s in samples} for f in flips}
    times: dict[str, list] = defaultdict(list)

    def encode(jobs: list[tuple]) -> None:
        """jobs: [(sample, t, frame, box in its pixels, detected people)] -> features appended per sample."""
        if not jobs:
            return
        out = enc.encode_people_versions([(renderers[s.key], f, box, matching_person(p, box) if pose else None)
                                          for s, t, f, box, p in jobs], flips)  # pose: the annotated one's keypoints
        for i, (s, t, *_) in enumerate(jobs):
            for flip in flips:
                for k in enc.streams:
                    feats[flip][s.key][k].append(out[flip][k][i])
            times[s.key].append(t)

    info, chunks = open_frames(path, **video_kwargs(vcfg))
    if pose:
        enc.people.reset()
    last = None
    for frames, ts in prefetch(chunks):
        scale = np.array([frames.shape[2] / info.width, frames.shape[1] / info.height] * 2, np.float32)
        jobs = []
        for f, t in zip(frames, ts):
            t = float(t)
            people = enc.people.update(f) if pose else []
            for s in samples:
                inside = s.person.start - 1e-6 <= t < s.person.end
                first = s.key not in times and not any(j[0] is s for j in jobs) \
                    and s.person.start - 1e-6 <= t < s.person.end + SHORT_ROW_S
                if inside or first:
                    box = s.person.box_at(t) * scale  # decoded-frame pixels (video.max_side)
                    jobs.append((s, t, f, box, people))
            last = (t, f, people, scale)
        encode(jobs)
    if last is not None:  # rows after the last sampled frame that start before the video's end
        t, f, people, scale = last
        encode([(s, t, f, s.person.box_at(t) * scale, people) for s in samples
                if s.key not in times and s.person.start < info.duration])
    return {flip: {key: ({k: np.stack(v) for k, v in fs[key].items()}, np.array(times[key])) for key in times}
            for flip, fs in feats.items()}


def extract_people(samples: list, backbone, vcfg, cache: FeatureCache, progress: bool = True, flip: bool = False,
                   views=None, detector=None) -> ExtractResult:
    """Fill the cache for per-person samples (cache.extract's counterpart): result.keys maps each sample's key
    (Sample.key) to its cache keys in stream order; a video that cannot be read, or a row without a sampled
    frame, is recorded in result.failures (by sample key), never fatal."""
    return extract_people_versions({flip: samples}, backbone, vcfg, cache, progress, views, detector)[flip]


def extract_people_versions(wanted: dict[bool, list], backbone, vcfg, cache: FeatureCache, progress: bool = True,
                            views=None, detector=None) -> dict[bool, ExtractResult]:
    """extract_people for the views as they are and mirrored (flip augmentation) at once: wanted {flip: samples} ->
    {flip: ExtractResult}; each video is decoded once for every row of it that either version lacks
    (cache.extract_versions' counterpart)."""
    from tqdm import tqdm

    out = {flip: ExtractResult() for flip in wanted}
    todo: dict[str, dict[bool, list]] = defaultdict(lambda: defaultdict(list))  # video -> {flip: its rows to encode}
    sv = {flip: stream_views(views, flip, detector) for flip in wanted}
    cid = getattr(backbone, "cache_id", backbone.fingerprint)
    for flip, samples in wanted.items():
        res = out[flip]
        for s in samples:
            try:
                keys = [cache.key(s.path, cid, vcfg, f"{v}:person-{s.person.ident}".lstrip(":")) for _, v in sv[flip]]
            except OSError as e:
                res.failures[s.key] = f"{s.path}: cannot read file ({e.strerror})"
                continue
            res.keys[s.key] = keys
            if all(cache.has(k) for k in keys):
                res.reused += 1
            else:
                todo[s.path][flip].append(s)
    tracker = pose_tracker(views, detector, str(getattr(backbone, "device", "cpu"))) if todo else None
    bar = tqdm(list(todo.items()), desc=f"extract people {backbone.name}{versions_label(wanted)}", unit="video", disable=not progress or not todo, dynamic_ncols=True)
    for path, rows in bar:
        group = list({s.key: s for ss in rows.values() for s in ss}.values())  # each row once, whichever versions
        try:
            encoded = encode_people_versions(path, group, backbone, vcfg, views, tuple(rows), None, tracker)
        except Exception as e:  # one bad file must not end the run
            for flip, ss in rows.items():
                for s in ss:
                    out[flip].failures[s.key] = failure_line(path, e)
                    out[flip].keys.pop(s.key, None)
            continue
        for flip, ss in rows.items():
            res = out[flip]
            for s in ss:
                if s.key not in encoded[flip]:
                    res.failures[s.key] = (f"{s.person.row}: no sampled frame of {path} between {s.person.start:g} "
                                           f"and {s.person.end:g} s (the video is shorter)")
                    res.keys.pop(s.key, None)
                    continue
                feats, ts = encoded[flip][s.key]
                for (k, view), key in zip(sv[flip], res.keys[s.key]):
                    cache.save(key, feats[k], ts, dict(video=path, track=s.person.track, start=s.person.start,
                                                       end=s.person.end, backbone=backbone.name,
                                                       fingerprint=backbone.fingerprint, sampling=sampling_id(vcfg),
                                                       numerics=getattr(backbone, "numerics", "torch-fp32"),
                                                       stream=k, view=view))
                res.frames += len(ts)
            res.extracted += 1
    return out
