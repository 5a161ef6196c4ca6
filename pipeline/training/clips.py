"""Trimmed clips for classification training and evaluation: one label each, their cached features
(and those of the mirrored frames for train.flip_aug) loaded into memory."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from pipeline.config import Config
from pipeline.data.copies import copies_root, write_copies
from pipeline.data.datasets import Dataset
from pipeline.models.cache import ExtractResult, FeatureCache, extract_versions, versions
from pipeline.models.person_cache import extract_people_versions

log = logging.getLogger(__name__)


@dataclass
class Clip:
    path: str
    target: int
    feats: torch.Tensor | None = None   # (T, D) float32 cached features (head-only training)
    feats_flip: torch.Tensor | None = None  # (T, D) features of the mirrored frames (train.flip_aug)
    frames: torch.Tensor | None = None  # (T, S, S, 3) uint8 decoded frames (fine-tuning)
    # the clip's rewritten copies (train.copies): [(feats (T', D), feats of their mirrored frames or None)],
    # made clips of their own by with_copies
    copies: list = field(default_factory=list)

    def __len__(self):
        return len(self.feats) if self.feats is not None else len(self.frames)


def load_feature_clips(ds: Dataset, classes: list[str], backbone, cfg: Config,
                       cache: FeatureCache, progress: bool = True, failures_file=None,
                       flip: bool = False, copies: int = 0) -> tuple[list[Clip], dict]:
    """Extract (or reuse) cached features for every clip; bad videos are skipped and returned.
    flip=True also caches the features of the mirrored frames (horizontal-flip augmentation).
    copies=n: each clip also carries the features of its n rewritten copies (data/copies.py; Clip.copies),
    mirrored too with flip; a copy that cannot be made or read is left out with a warning, never a failure of the
    user's clip.
    Per-person samples (Sample.person) get the features of their person's views (person_cache.py); they get
    no copies."""
    paths = [s.path for s in ds.samples if s.person is None]
    people = [s for s in ds.samples if s.person is not None]
    kw = dict(views=cfg.views, detector=cfg.detector)
    # one decode of each video for its views as they are and mirrored
    both = extract_versions(versions(paths, flip), backbone, cfg.video, cache, progress, failures_file, **kw) \
        if paths else {}
    res, flipped = both.get(False, ExtractResult()), both.get(True, ExtractResult())
    if people:
        pboth = extract_people_versions(versions(people, flip), backbone, cfg.video, cache, progress, **kw)
        res.keys.update(pboth[False].keys)
        res.failures.update(pboth[False].failures)
        if flip:
            flipped.keys.update(pboth[True].keys)
    made: dict[str, list[str]] = {}
    if copies and paths:
        made = write_copies([p for p in paths if p in res.keys], copies, copies_root(cfg), cfg.video.decoder)
        made_paths = [c for cs in made.values() for c in cs]
        cboth = extract_versions(versions(made_paths, flip), backbone, cfg.video, cache, progress, **kw)
        cres, cflip = cboth[False], cboth.get(True, ExtractResult())
        for e in cres.failures.values():
            log.warning("a copy for train.copies is left out: %s", e)
        res.keys.update(cres.keys)
        flipped.keys.update(cflip.keys)
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for s in ds.samples:
        if s.key in res.keys:
            feats, flipped_feats = _features(s.key, res, flipped, cache)  # (T, len(views.streams) * D), or maps
            clip = Clip(s.key, index[s.label], feats=feats, feats_flip=flipped_feats)
            clip.copies = [_features(c, res, flipped, cache) for c in made.get(s.key, []) if c in res.keys]
            clips.append(clip)
    return clips, res.failures


def _features(path: str, res: ExtractResult, flipped: ExtractResult, cache: FeatureCache) -> tuple:
    """(features, features of the mirrored frames or None) of one video, from the cache."""
    feats = cache.load_streams(res.keys[path])[0]
    small = feats.ndim > 2  # trunk maps (train.finetune_blocks) stay float16 in memory: 2x less
    return _tensor(feats, small), (_tensor(cache.load_streams(flipped.keys[path])[0], small)
                                   if path in flipped.keys else None)


def with_copies(clips: list[Clip]) -> list[Clip]:
    """Each clip, then each of its rewritten copies as a clip of its own (train.copies): more clips to train on,
    and to validate on (the copies of a validation clip are of its people, never of a training clip's)."""
    out = []
    for c in clips:
        out.append(replace(c, copies=[]))
        out += [Clip(f"{c.path}#copy{i + 1}", c.target, feats=f, feats_flip=g) for i, (f, g) in enumerate(c.copies)]
    return out


def _tensor(a: np.ndarray, half: bool) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float16) if half else a)
