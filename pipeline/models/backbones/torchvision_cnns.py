"""torchvision classification CNNs with their classifier removed (weights from torchvision's cache, online only)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from pipeline import capabilities
from pipeline.models.backbones.base import Backbone, BackboneError, register, resolve_weights

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

    if not capabilities.online(urlparse(enum.url).hostname):
        raise BackboneError(f"{name}: pretrained weights are not in {cache.parent} and there is no "
                            f"internet to download them; pass backbone.weights=PATH to a local file "
                            f"or backbone.weights=none for random init")
    torch.hub.load_state_dict_from_url(enum.url, progress=True, check_hash=False)
    return str(cache)


for _name in _TORCHVISION:
    register(_name)(lambda name, weights="default", input_size=224: TorchvisionBackbone(name, weights, input_size))
