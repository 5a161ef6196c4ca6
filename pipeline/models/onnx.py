"""Exporting torch modules to ONNX: shared by the runtime (the backbone on ONNX Runtime) and by
`vap export` (backbone + streaming head step). Needs the onnx package (pip install "vap[onnx]")."""
from __future__ import annotations

import contextlib
import logging
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


@contextlib.contextmanager
def _root_logging_kept():
    """onnxruntime.quantization calls logging.basicConfig(level=INFO) when parts of it load (inside
    quantize_static too): every library's INFO log would reach stderr afterwards. Undo that."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)


def quantize_backbone(fp32_path: Path, path: Path, pixels) -> None:
    """int8 copy of an exported backbone (ONNX Runtime static quantization, QDQ, per-channel int8
    weights, uint8 activations): activation ranges calibrated on `pixels`, preprocessed frames
    float32 (N,3,S,S). Written atomically."""
    with _root_logging_kept():
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Frames(CalibrationDataReader):
            def __init__(self):
                self.batches = iter([{"pixels": pixels[i:i + 8]} for i in range(0, len(pixels), 8)])

            def get_next(self):
                return next(self.batches, None)

        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prep = Path(str(tmp) + ".prep.onnx")
            try:
                quant_pre_process(str(fp32_path), str(prep))  # shape inference + graph folding, as ORT advises
                quantize_static(str(prep), str(tmp), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            finally:
                prep.unlink(missing_ok=True)
