"""Ultralytics YOLO models (classification, detection, pose) as frame embedders."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from pipeline import capabilities
from pipeline.models.backbones.base import Backbone, BackboneError, register, register_pattern, resolve_weights


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
    if not capabilities.online("github.com"):
        raise BackboneError(f"{stem}: no local {stem}.pt and no internet to download it; pass "
                            f"backbone.weights=PATH/{stem}.pt, or backbone.weights=none to build it "
                            f"from {stem}.yaml with random weights")
    from ultralytics.utils.downloads import attempt_download_asset

    return attempt_download_asset(f"{stem}.pt")


register_pattern(lambda n: n.lower().startswith("yolo"), YOLOBackbone)
for _name in ["yolo26n-cls", "yolo11n-cls", "yolov8n-cls", "yolo26n", "yolo11n", "yolo26n-pose", "yolo11n-pose"]:
    register(_name)(YOLOBackbone)
