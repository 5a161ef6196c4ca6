"""A small random-init CNN for tests and smoke runs."""
from __future__ import annotations

import torch
import torch.nn as nn

from pipeline.models.backbones.base import Backbone, register, resolve_weights


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
