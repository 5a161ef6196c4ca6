"""Frame backbones, built by name through one registry (this module); one file per family
registers its models when the package is imported.

Contract (DESIGN.md): `.name`, `.dim`, `.fingerprint` (changes when weights or preprocessing
change; part of every cache key) and `encode(frames uint8 (T,H,W,3) RGB) -> float32 (T,D)`, plain
PyTorch fp32 (how else it can run - bf16, channels-last, ONNX Runtime - is models/runtime.py's job,
which wraps a backbone). `features(x)` is the differentiable path used when fine-tuning.

Weights always go through `resolve_weights`: a local path, "default" (the offline-pretrained file
for efficientnet_lite0, the library's download for others, which fails fast and clearly offline),
or "none" (random init). Nothing is downloaded at import time.
"""
from __future__ import annotations

import copy
import hashlib
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.errors import BackboneError

_REGISTRY: dict[str, Callable[..., "Backbone"]] = {}
# Held while a module is built from PyTorch's global random generator: create_backbone's seeded
# construction, and checkpoint.head_of's head (random init, then the saved weights). Another thread
# building at the same time would draw from the same generator in between, and a random-init backbone
# would come out different (its fingerprint no longer the checkpoint's): the app builds predictors
# for concurrent analyses in threads.
BUILD_LOCK = threading.RLock()
_PATTERNS: list[tuple[Callable[[str], bool], Callable[..., "Backbone"]]] = []


def register(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def register_pattern(match: Callable[[str], bool], fn: Callable[..., "Backbone"]) -> None:
    """Names that are not registered one by one (any Ultralytics yolo* name)."""
    _PATTERNS.append((match, fn))


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, weights: str = "default", input_size: int = 224,
                    device: str = "auto", batch_size: int = 32, grid: int = 1) -> "Backbone":
    """Build a backbone by registry name, e.g. create_backbone("yolo26n-cls", weights="none").
    grid > 1 pools the last feature map over grid x grid cells instead of one global average
    (dim x grid^2). How encode() runs is chosen apart: models.runtime.with_runtime."""
    fn = _REGISTRY.get(name)
    if fn is None:
        fn = next((f for match, f in _PATTERNS if match(name)), None)
    if fn is None:
        raise BackboneError(f"unknown backbone '{name}'; available: {', '.join(list_backbones())} "
                            f"(and any Ultralytics yolo*-cls / detect / pose name)")
    # Random-init weights come from a fixed seed, so the same spec always gives the same model
    # (and fingerprint): a checkpoint can rebuild it, and the feature cache stays valid. The seed is
    # PyTorch's global one: two threads building at once (the app's analyses) would interleave draws.
    with BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        bb = fn(name=name, weights=weights, input_size=input_size)
    if grid > 1:
        bb.set_grid(grid)
    bb.batch_size = batch_size
    bb.eval()
    return bb.to(resolve_device(device))


def backbone_spec(cfg_backbone) -> dict:
    """What a checkpoint stores to rebuild the backbone."""
    return dict(name=cfg_backbone.name, weights=cfg_backbone.weights, input_size=cfg_backbone.input_size,
                grid=cfg_backbone.grid)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackboneError(f"device '{device}' asked for but CUDA is not available; use device=cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------- base class

class Backbone(nn.Module):
    """Per-frame encoder. Subclasses set dim, mean/std (0-255 scale) and implement features()."""

    name: str = ""
    dim: int = 0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (255.0, 255.0, 255.0)

    def __init__(self, name: str, input_size: int, weights_id: str):
        super().__init__()
        self.name = name
        self.input_size = input_size
        self.weights_id = weights_id  # how the weights were obtained, for messages
        self.batch_size = 32
        self._fingerprint = None
        self.grid = 1  # pool() over grid x grid cells (set_grid)

    @property
    def numerics(self) -> str:
        """How features are computed: a plain backbone is the reference, PyTorch fp32."""
        return "torch-fp32"

    @property
    def cache_id(self) -> str:
        """What the feature cache keys on: the fingerprint (a runtime adds its numerics when they differ)."""
        return self.fingerprint

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def fingerprint(self) -> str:
        """sha1 over architecture name, preprocessing and every weight: a changed model changes it."""
        if self._fingerprint is None:
            grid = f"|grid{self.grid}" if self.grid > 1 else ""  # the 1 x 1 fingerprints of earlier versions stay
            ident = f"{type(self).__name__}|{self.name}|{self.input_size}|{self.mean}|{self.std}{grid}"
            h = hashlib.sha1(ident.encode())
            for k, v in sorted(self.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T,H,W,3) RGB -> float (T,3,S,S) normalised; the whole frame is resized (no crop)."""
        x = frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              antialias=True, align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (T,3,S,S) -> (T,D)
        raise NotImplementedError

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(T, C, h, w) last feature map -> (T, C * grid^2): the global average, or the average of each
        of grid x grid cells (channel-major), which keeps where things are (limbs above or below)."""
        if self.grid == 1:
            return fmap.mean((2, 3))
        return F.adaptive_avg_pool2d(fmap, self.grid).flatten(1)

    # Partial fine-tuning (train.finetune_blocks = n): the frozen trunk's feature maps are cached like
    # features, and only the last n stages (tail) train on top of them - no decoding, no trunk pass.
    def num_stages(self) -> int:
        raise BackboneError(f"{self.name}: train.finetune_blocks is supported for efficientnet_lite0 and "
                            f"tiny_cnn; use train.finetune_backbone=true to fine-tune {self.name} end to end")

    def trunk(self, x: torch.Tensor, n: int) -> torch.Tensor:  # (T,3,S,S) -> (T,C,h,w) before the last n stages
        raise NotImplementedError

    def tail(self, z: torch.Tensor, n: int) -> torch.Tensor:  # (T,C,h,w) -> (T,D): the last n stages, pooled
        raise NotImplementedError

    def tail_modules(self, n: int) -> list[nn.Module]:
        raise NotImplementedError

    def at_size(self, size: int) -> "Backbone":
        """This backbone at another square input side, sharing the module and its weights (the motion
        streams run smaller: views.motion_size). Its fingerprint differs, as its features do."""
        if size == self.input_size:
            return self
        made = self.__dict__.setdefault("_at_size", {})  # one per size: its fingerprint hashes every weight
        if size not in made:
            other = copy.copy(self)  # a shallow copy: the same submodules and parameters
            other.input_size, other._fingerprint, other._at_size = size, None, {}
            made[size] = other
        return made[size]

    def set_grid(self, grid: int) -> "Backbone":
        self.dim = self.dim // (self.grid * self.grid) * grid * grid
        self.grid = grid
        self._fingerprint = None
        return self

    def batches(self, frames: np.ndarray | torch.Tensor) -> Iterator[torch.Tensor]:
        """uint8 (T,H,W,3) RGB frames -> preprocessed (b,3,S,S) batches of batch_size on the model's device."""
        dev = self.device
        for i in range(0, len(frames), self.batch_size):
            chunk = torch.as_tensor(np.ascontiguousarray(frames[i:i + self.batch_size]))
            if dev.type == "cuda":
                chunk = chunk.pin_memory()  # lets the copy overlap with work already queued on the GPU
            yield self.preprocess(chunk.to(dev, non_blocking=True))

    @torch.inference_mode()
    def encode(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 (T,H,W,3) RGB frames -> float32 (T,D) features, in batches on the model's device."""
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        return torch.cat([self.features(x).float().cpu() for x in self.batches(frames)]).numpy()


# ----------------------------------------------------------------------------- weights

def resolve_weights(spec: str, default: Callable[[], str | None]) -> str | None:
    """'none' -> None (random init); 'default' -> default(); anything else is a local file path."""
    if spec in ("none", "", None):
        return None
    if spec == "default":
        return default()
    p = Path(spec).expanduser()
    if not p.is_file():
        raise BackboneError(f"{p}: weights file not found")
    return str(p)
