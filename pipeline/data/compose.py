"""Compose untrimmed sequences from trimmed clips following a grammar (`vap compose`).

Anyone with a class-folder dataset of trimmed clips can then train and evaluate next-event
prediction: each sequence walks the grammar's Markov chain and, for every segment, plays a random
clip of that action (looped or cut to the segment's random duration, or with the grammar's `duration: clip`
played once whole: for actions that happen once in their clip), at one frame rate and on one canvas: by
default the size of the folder's largest clip, every clip centred on it unscaled (clips of one camera keep
their people's size, in training and test sequences composed apart); with `size` every clip is scaled to fit
it. Aspect ratios are kept (black bars), never stretched.
With group_by (a regex on file names whose first group names e.g. the actor) a sequence uses the
clips of one group only and its file name starts with the group, so actor-disjoint train/test
sequences come from composing different groups (`groups=`), and data.group_by still works on them.
Writes out/<group>_seq_NNN.mp4, out/annotations.csv (video,start,end,label) and out/compose.json.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.datasets import DataError, groups_of, load_class_folders
from pipeline.data.grammar import Grammar
from pipeline.data.segments import write_annotations
from pipeline.data.video import VideoError, frame_rate, load_frames, probe
from pipeline.data.writer import write_video
from pipeline.io import atomic_write_text

# how a clip is put on the sequence's canvas; a manifest written with another placement is not resumed
PLACEMENT = "fit-keep-aspect"


def _fit(frames: np.ndarray, width: int, height: int, enlarge: bool = True) -> np.ndarray:
    """(N, h, w, 3) frames on a width x height canvas: scaled with their aspect ratio kept to fit it (not
    enlarged when enlarge=False), centred, black around. Stretching clips of other shapes to one size (as
    compose did before) squashed the people in them: the UT-Interaction next-event bench's model, trained on
    such sequences, read 16 points better once they kept their shape (docs/results.md)."""
    h, w = frames.shape[1:3]
    if (h, w) == (height, width):
        return frames
    s = min(width / w, height / h, np.inf if enlarge else 1.0)
    nw, nh = min(width, max(1, round(w * s))), min(height, max(1, round(h * s)))
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out = np.zeros((len(frames), height, width, frames.shape[3]), frames.dtype)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    for i, f in enumerate(frames):
        out[i, y0:y0 + nh, x0:x0 + nw] = f if (nh, nw) == (h, w) else cv2.resize(f, (nw, nh), interpolation=interp)
    return out


def _canvas(paths: list[str]) -> tuple[int, int] | None:
    """(width, height), even, that holds the largest of the clips unscaled; None if none can be probed."""
    sizes = []
    for p in paths:
        try:
            info = probe(p)
        except VideoError:
            continue  # drawn later, recorded as a failure there
        sizes.append((info.width, info.height))
    if not sizes:
        return None
    return tuple(-(-max(s[i] for s in sizes) // 2) * 2 for i in (0, 1))


def _segment_frames(frames: np.ndarray, src_fps: float, n: int, fps: float, offset: float) -> np.ndarray:
    """n output frames at `fps` from a clip played from `offset` s and looped: nearest source frame."""
    t = offset + np.arange(n) / fps
    idx = np.floor(t * src_fps + 1e-6).astype(np.int64) % len(frames)
    return frames[idx]


def _previous_segments(manifest: Path, size: tuple[int, int] | None) -> dict[str, list]:
    """video name -> its planned segments, from an earlier compose.json in the same folder ({} if none, or
    if its videos have another size or placement)."""
    try:
        old = json.loads(manifest.read_text())
        if old.get("placement") != PLACEMENT or (size is not None and old.get("size") != list(size)):
            return {}
        return {m["video"]: m["segments"] for m in old["sequences"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _same_plan(old: list | None, new: list) -> bool:
    """The same segments (action, span, clip; the offset into the clip where the old manifest has one:
    manifests before it was recorded lack it)."""
    if old is None or len(old) != len(new):
        return False
    return all({k: v for k, v in n.items() if k in o} == o for o, n in zip(old, new))


def compose(clips: str | Path, grammar: Grammar, out: str | Path, sequences: int = 8,
            seconds: float = 30.0, group_by: str = "", groups: list[str] | None = None, seed: int = 0,
            fps: float = 25.0, size: tuple[int, int] | None = None, progress: bool = True) -> dict:
    """Write `sequences` composed videos (spread over the groups in turn) and their annotations.

    size: (width, height) of the written videos (clips scaled to fit, aspect kept); None = the folder's largest clip's.
    Returns a summary dict. Clips that cannot be decoded are skipped and listed; a group lacking a
    clip of some grammar action raises DataError naming the group and the action.
    """
    from tqdm import tqdm

    ds = load_class_folders(Path(clips))
    missing = [a for a in grammar.actions if a not in ds.classes]
    if missing:
        raise DataError(f"{clips}: grammar action(s) {missing} have no class folder (classes: {ds.classes})")
    by_group: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    paths = [s.path for s in ds.samples]
    for s, g in zip(ds.samples, groups_of(paths, group_by, str(clips)) if group_by else ["all"] * len(paths)):
        by_group[g][s.label].append(s.path)
    names = sorted(by_group)
    if groups:
        unknown = [g for g in groups if g not in by_group]
        if unknown:
            raise DataError(f"{clips}: group(s) {unknown} not found with group_by='{group_by}' (groups: {names})")
        names = list(groups)
    for g in names:
        lacking = [a for a in grammar.actions if not by_group[g].get(a)]
        if lacking:
            raise DataError(f"{clips}: group '{g}' has no clip of {lacking}; compose other groups or "
                            f"add clips")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, manifest, failures = [], [], {}
    decoded: dict[str, tuple[np.ndarray, float]] = {}
    plan = [(names[i % len(names)], i) for i in range(sequences)]
    # one canvas for every sequence: the largest clip of the folder's grammar actions, so that no clip is
    # scaled (clips of one camera keep their people's size); a clip of another shape is centred on it, not
    # stretched. Of the whole folder, not of the groups composed: training and test sequences composed from
    # other groups (two calls) then share one canvas, so their people have one size after decoding
    user_size = size is not None
    size = size or _canvas([p for clips_of in by_group.values() for a in grammar.actions for p in clips_of.get(a, [])])
    # a video already written is kept only if the last composition there planned it the same way (a
    # rerun resumes; another grammar, seed, size or set of clips rewrites it)
    before = _previous_segments(out / "compose.json", size)

    def draw(rng, group, action):
        """A readable clip of `action` for `group`, decoded once: (path, frames, fps)."""
        pool = [p for p in by_group[group][action] if p not in failures]
        while pool:  # a clip that cannot be decoded is skipped for good
            clip = pool[int(rng.integers(len(pool)))]
            if clip not in decoded:
                try:
                    f, ts = load_frames(clip, sampling="all")
                except VideoError as e:
                    failures[clip] = str(e)
                    pool.remove(clip)
                    continue
                src_fps = frame_rate(ts, fps)
                decoded[clip] = (f, src_fps)
            return (clip, *decoded[clip])
        raise DataError(f"{clips}: no readable clip of '{action}' for group '{group}' "
                        f"({len(failures)} clip(s) failed to decode)")

    for group, i in tqdm(sorted(plan), desc="compose", unit="video", disable=not progress):
        rng = np.random.default_rng([seed, i])
        name = f"{group}_seq_{i:03d}.mp4"
        parts, t = [], 0  # (action, clip, frames, fps, steps, offset s) of each segment
        total = int(round(seconds * fps))
        if grammar.duration is None:  # each segment one whole clip, played once; the last one cut
            actions = iter(grammar.walk(rng))
            while t < total:
                action = next(actions)
                clip, f, src_fps = draw(rng, group, action)
                n = min(max(1, int(round(len(f) / src_fps * fps))), total - t)
                parts.append((action, clip, f, src_fps, n, 0.0))
                t += n
        else:
            for action, dur in grammar.sample(rng, seconds):
                clip, f, src_fps = draw(rng, group, action)
                n = max(1, int(round(dur * fps)))
                offset = float(rng.uniform(0, max(len(f) / src_fps - n / fps, 0.0)))
                parts.append((action, clip, f, src_fps, n, offset))
                t += n
        if size is None:
            size = (parts[0][2].shape[2] // 2 * 2, parts[0][2].shape[1] // 2 * 2)
        t, segs = 0, []
        for action, clip, _, _, n, offset in parts:
            rows.append((name, t / fps, (t + n) / fps, action))
            segs.append(dict(action=action, start=round(t / fps, 3), end=round((t + n) / fps, 3),
                             clip=str(Path(clip).relative_to(Path(clips).resolve()))
                             if Path(clip).is_relative_to(Path(clips).resolve()) else clip,
                             offset=round(offset, 4)))
            t += n
        if not (out / name).exists() or not _same_plan(before.get(name), segs):  # render only what is written
            write_video(out / name, np.concatenate([_fit(_segment_frames(f, src_fps, n, fps, offset), *size,
                                                         enlarge=user_size)
                                                    for _, _, f, src_fps, n, offset in parts]), fps)
        manifest.append(dict(video=name, group=group, segments=segs))
        if len(decoded) > 64:  # bounded memory: clips of other groups are not needed again soon
            decoded.clear()
    write_annotations(out / "annotations.csv", sorted(rows, key=lambda r: (r[0], r[1])))
    summary = dict(out=str(out), annotations=str(out / "annotations.csv"), videos=len(manifest),
                   groups=sorted({m["group"] for m in manifest}), seconds_each=seconds, fps=fps,
                   size=list(size) if size else None, placement=PLACEMENT, grammar=grammar.to_dict(), seed=seed,
                   failed_clips=failures)
    atomic_write_text(out / "compose.json", json.dumps(dict(summary, sequences=manifest), indent=1))
    return summary
