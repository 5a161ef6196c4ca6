"""Exporting torch modules to ONNX: shared by the runtime (the backbone on ONNX Runtime) and by
`vap export` (backbone + streaming head step). Needs the onnx package (pip install "vap[onnx]")."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from pipeline.io import atomic_path


class BackboneFeatures(nn.Module):
    """backbone.features as a module to export: normalised pixels (N,3,S,S) -> features (N,D)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, pixels):  # (N, 3, S, S) -> (N, D)
        return self.backbone.features(pixels)


def onnx_export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                dynamic: dict) -> None:
    """Write module to path (atomically), opset 17, with the given input/output names and dynamic axes."""
    # the exporter puts the module back into the mode it found it in, children included: a fresh
    # wrapper is in training mode, which would leave dropout and BatchNorm training afterwards
    module.eval()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about control flow that these modules lack
        torch.onnx.export(module, args, tmp, input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)


def export_backbone(backbone, path: Path) -> None:
    """backbone.onnx: pixels (N,3,S,S) -> features (N,D), exported on the CPU."""
    S = backbone.input_size
    onnx_export(BackboneFeatures(backbone), (torch.zeros(2, 3, S, S),), path, ["pixels"], ["features"],
                {"pixels": {0: "n"}, "features": {0: "n"}})
