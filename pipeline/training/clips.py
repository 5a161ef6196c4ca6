"""Trimmed clips for classification training and evaluation: one label each, their cached features
(and those of the mirrored frames for train.flip_aug) loaded into memory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import Config
from pipeline.data.datasets import Dataset
from pipeline.models.cache import FeatureCache, extract


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
    flip=True also caches the features of the mirrored frames (horizontal-flip augmentation)."""
    paths = [s.path for s in ds.samples]
    res = extract(paths, backbone, cfg.video, cache, progress, failures_file, views=cfg.views,
                  detector=cfg.detector)
    flipped = extract([p for p in paths if p in res.keys], backbone, cfg.video, cache, progress,
                      flip=True, views=cfg.views, detector=cfg.detector) if flip else None
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for s in ds.samples:
        if s.path in res.keys:
            feats, _ = cache.load_streams(res.keys[s.path])  # (T, len(views.streams) * D), or trunk maps
            small = feats.ndim > 2  # trunk maps (train.finetune_blocks) stay float16 in memory: 2x less
            clip = Clip(s.path, index[s.label], feats=_tensor(feats, small))
            if flipped is not None and s.path in flipped.keys:
                clip.feats_flip = _tensor(cache.load_streams(flipped.keys[s.path])[0], small)
            clips.append(clip)
    return clips, res.failures


def _tensor(a: np.ndarray, half: bool) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float16) if half else a)
