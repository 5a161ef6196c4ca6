"""Fine-tuning the backbone. train.finetune_backbone=true trains all of it on decoded frames held in
memory (load_frame_clips; GPU advised); train.finetune_blocks=n trains only its last n stages
(BackboneTail) on the cached feature maps of the frozen trunk (TrunkEncoder), so an epoch needs no
decoding and no trunk pass."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from pipeline.config import Config
from pipeline.data.video import VideoError, load_frames, video_kwargs
from pipeline.data.views import ViewRenderer
from pipeline.errors import BackboneError
from pipeline.models.backbones import Backbone
from pipeline.training.clips import Clip


class TrunkEncoder:
    """The frozen part of a backbone under train.finetune_blocks=n: encode(frames) -> float32 (T,C,h,w)
    feature maps before the last n stages. It quacks like a backbone for the feature cache (name,
    input_size, fingerprint, cache_id, numerics, encode), so trunk maps are cached and reused like features."""

    def __init__(self, backbone: Backbone, n: int):
        if not 1 <= n <= backbone.num_stages():
            raise BackboneError(f"train.finetune_blocks={n}: {backbone.name} has {backbone.num_stages()} stages")
        self.backbone, self.n = backbone, n
        self.name, self.input_size, self.dim = backbone.name, backbone.input_size, backbone.dim
        self.fingerprint = backbone.fingerprint
        self.cache_id = f"{backbone.fingerprint}-trunk{n}"
        self.numerics = "torch-fp32"

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        self.backbone.eval()
        out = [self.backbone.trunk(x, self.n).float().cpu() for x in self.backbone.batches(frames)]
        return torch.cat(out).numpy() if out else np.zeros((0,), np.float32)


class BackboneTail(nn.Module):
    """The trainable last n stages: forward(maps (N, streams*C, h, w)) -> (N, streams*D), each stream's
    map through the same tail. Its parameters are the backbone's own (shared), so after training
    backbone.state_dict() is the fine-tuned backbone that prediction rebuilds."""

    def __init__(self, backbone: Backbone, n: int, streams: int):
        super().__init__()
        self.parts = nn.ModuleList(backbone.tail_modules(n))  # registered for parameters() and train()
        object.__setattr__(self, "bb", backbone)  # not a submodule: its frozen trunk must stay out
        self.n, self.streams = n, streams

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        N = len(z)
        f = self.bb.tail(z.unflatten(1, (self.streams, -1)).flatten(0, 1), self.n)  # (N * streams, D)
        return f.view(N, -1)


def load_frame_clips(ds, classes, cfg: Config, progress=True) -> tuple[list[Clip], dict]:
    """Decode every clip into memory as the backbone's input images of each stream (fine-tuning only):
    frames (T, len(views.streams), S, S, 3) uint8."""
    index = {c: i for i, c in enumerate(classes)}
    size = cfg.backbone.input_size
    renderer = ViewRenderer(cfg.views.streams, cfg.views, size)
    clips, failures = [], {}
    for s in tqdm(ds.samples, desc="decode", unit="video", disable=not progress):
        try:
            frames, _ = load_frames(s.path, **video_kwargs(cfg.video))
        except VideoError as e:
            failures[s.path] = str(e)
            continue
        renderer.reset()
        views = renderer.render(frames)
        if "frame" in views:
            views["frame"] = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
        stacked = np.stack([views[k] for k in cfg.views.streams], 1)  # (T, streams, S, S, 3)
        clips.append(Clip(s.path, index[s.label], frames=torch.from_numpy(stacked)))
    return clips, failures
