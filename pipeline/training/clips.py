"""Trimmed clips for classification training and evaluation: one label each, their cached features
(and those of the mirrored frames for train.flip_aug) loaded into memory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import Config
from pipeline.data.datasets import Dataset
from pipeline.models.cache import ExtractResult, FeatureCache, extract
from pipeline.models.person_cache import extract_people


@dataclass
class Clip:
    path: str
    target: int
    feats: torch.Tensor | None = None   # (T, D) float32 cached features (head-only training)
    feats_flip: torch.Tensor | None = None  # (T, D) features of the mirrored frames (train.flip_aug)
    frames: torch.Tensor | None = None  # (T, S, S, 3) uint8 decoded frames (fine-tuning)

    def __len__(self):
        return len(self.feats) if self.feats is not None else len(self.frames)


def load_feature_clips(ds: Dataset, classes: list[str], backbone, cfg: Config,
                       cache: FeatureCache, progress: bool = True, failures_file=None,
                       flip: bool = False) -> tuple[list[Clip], dict]:
    """Extract (or reuse) cached features for every clip; bad videos are skipped and returned.
    flip=True also caches the features of the mirrored frames (horizontal-flip augmentation).
    Per-person samples (Sample.person) get the features of their person's views (person_cache.py)."""
    paths = [s.path for s in ds.samples if s.person is None]
    people = [s for s in ds.samples if s.person is not None]
    kw = dict(views=cfg.views, detector=cfg.detector)
    res = extract(paths, backbone, cfg.video, cache, progress, failures_file, **kw) if paths else ExtractResult()
    flipped = extract([p for p in paths if p in res.keys], backbone, cfg.video, cache, progress, flip=True, **kw) \
        if flip and paths else ExtractResult()
    if people:
        pres = extract_people(people, backbone, cfg.video, cache, progress, **kw)
        res.keys.update(pres.keys)
        res.failures.update(pres.failures)
        if flip:
            flipped.keys.update(extract_people([s for s in people if s.key in pres.keys], backbone, cfg.video,
                                               cache, progress, flip=True, **kw).keys)
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for s in ds.samples:
        if s.key in res.keys:
            feats, _ = cache.load_streams(res.keys[s.key])  # (T, len(views.streams) * D), or trunk maps
            small = feats.ndim > 2  # trunk maps (train.finetune_blocks) stay float16 in memory: 2x less
            clip = Clip(s.key, index[s.label], feats=_tensor(feats, small))
            if flip and s.key in flipped.keys:
                clip.feats_flip = _tensor(cache.load_streams(flipped.keys[s.key])[0], small)
            clips.append(clip)
    return clips, res.failures


def _tensor(a: np.ndarray, half: bool) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float16) if half else a)
