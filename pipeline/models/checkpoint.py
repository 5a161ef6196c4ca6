"""Checkpoints are plain dicts (DESIGN.md), loaded with torch.load(weights_only=True):

format_version, kind, config (full resolved), classes, feature_dim, head_state (an ensemble's: members.N.*, see
models.heads.ensemble_members), backbone (spec),
backbone_fingerprint, backbone_state (only when fine-tuned), metrics, and for --resume: epoch,
optimizer, scheduler, history, best, stale.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from pipeline.config import VIEWS_BEFORE_KEYS, Config, load_config, parse_override
from pipeline.errors import CheckpointError, ConfigError
from pipeline.models.backbones import backbone_spec, create_backbone
from pipeline.models.backbones.base import BUILD_LOCK
from pipeline.models.heads import build_head, ensemble_members
from pipeline.models.runtime import runtime_args, with_runtime

FORMAT_VERSION = 1


def make_checkpoint(kind: str, cfg: Config, classes: list[str], feature_dim: int, head, fingerprint: str,
                    backbone_state: dict | None = None, metrics: dict | None = None, **training_state) -> dict:
    """The one place a checkpoint dict is made. kind: classification | next_event; fingerprint: of
    the backbone as built from the config (before any fine-tuning); backbone_state: the fine-tuned
    backbone's weights; training_state (--resume): epoch, optimizer, scheduler (history, best and
    stale are added by the training loop)."""
    return dict(format_version=FORMAT_VERSION, kind=kind, config=cfg.to_dict(), classes=list(classes),
                feature_dim=feature_dim, head_state=head.state_dict(), backbone=backbone_spec(cfg.backbone),
                backbone_fingerprint=fingerprint, backbone_state=backbone_state, metrics=metrics or {},
                **training_state)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights only load failed" in first.lower():  # never pass on PyTorch's advice to turn the check off
            raise CheckpointError(f"{path}: not a vap checkpoint, or an unsafe one (it holds Python objects a plain "
                                  f"checkpoint does not); refused: vap never runs code from a checkpoint") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"{path}: not a vap checkpoint (no format_version)")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this "
                              f"version of vap understands ({FORMAT_VERSION}); upgrade vap")
    return ckpt


def saved_config(ckpt: dict) -> dict:
    """The checkpoint's config dict, with what older versions did implicitly made explicit: the views keys
    a model was saved without mean what it was trained with (config.VIEWS_BEFORE_KEYS)."""
    cfg = dict(ckpt["config"])
    cfg["views"] = {**copy.deepcopy(VIEWS_BEFORE_KEYS), **cfg.get("views", {})}
    return cfg


def config_of(ckpt: dict, overrides=()) -> Config:
    return load_config(None, overrides, base=saved_config(ckpt))


# What may change between training and prediction: how features are computed and frames decoded,
# never what the head was trained on (views, input size, sampling rate, the backbone itself).
INFERENCE_KEYS = ("backbone.runtime", "backbone.precision", "backbone.channels_last", "backbone.device",
                  "backbone.batch_size", "video.decoder", "video.max_side", "video.chunk_mb", "video.decode_timeout",
                  *(f"detector.{k}" for k in ("weights", "tracker", "conf", "iou", "imgsz", "classes", "relink",
                                              "min_steps", "box_every")))


def inference_overrides(overrides) -> dict:
    """{key: value} of prediction-time settings from key=value strings (or a dict), checked: a key that
    would change what the model was trained on is a ConfigError naming it."""
    items = dict(overrides) if isinstance(overrides, dict) else dict(parse_override(o) for o in overrides)
    refused = [k for k in items if k not in INFERENCE_KEYS]
    if refused:
        raise ConfigError(f"{', '.join(refused)}: cannot change after training (the model was trained with its "
                          f"value); at prediction time only {', '.join(INFERENCE_KEYS)} can be set")
    return items


def with_overrides(ckpt: dict, overrides, device: str = "auto") -> tuple[dict, str]:
    """(the checkpoint with prediction-time settings changed, the device to use): see
    inference_overrides; types and ranges checked as for training; backbone.device, when given,
    replaces `device`. The checkpoint on disk is untouched."""
    items = inference_overrides(overrides)
    if not items:
        return ckpt, device
    cfg = load_config(None, [f"{k}={v}" for k, v in items.items()], base=saved_config(ckpt))
    return dict(ckpt, config=cfg.to_dict()), items.get("backbone.device", device)


def backbone_of(ckpt: dict, device: str = "auto", batch_size: int | None = None, runtime: bool = True):
    """Rebuild the backbone from the checkpoint's spec (and fine-tuned weights, if any), on the
    runtime its config names (runtime=False: the plain PyTorch module, e.g. to export it)."""
    spec, cfg = ckpt["backbone"], ckpt["config"]
    # the runtime is how features are computed, not what they are: a fine-tuned backbone stays on torch
    rt = runtime_args(cfg["backbone"]) if runtime and not ckpt.get("backbone_state") else {}
    bb = create_backbone(spec["name"], spec["weights"], spec["input_size"], device,
                         batch_size or cfg["backbone"]["batch_size"], grid=spec.get("grid", 1))
    if ckpt.get("backbone_state"):
        bb.load_state_dict(ckpt["backbone_state"])
        bb._fingerprint = None  # recomputed from the fine-tuned weights
    elif bb.fingerprint != ckpt["backbone_fingerprint"]:
        raise CheckpointError(
            f"backbone '{spec['name']}' (weights={spec['weights']}) does not match the one this model "
            f"was trained with (fingerprint {bb.fingerprint} != {ckpt['backbone_fingerprint']}); "
            f"the weights file or the library version changed")
    # prediction does not wait for the once-per-machine measurement (models/runtime.py: pick_fastest)
    return with_runtime(bb, **rt, measure=False) if rt else bb


def head_of(ckpt: dict, device="cpu"):
    cfg = config_of(ckpt)
    with BUILD_LOCK:  # its random init draws from the global generator a backbone build may be seeding
        head = build_head(cfg.head, ckpt["feature_dim"], len(ckpt["classes"]),
                          next_event=ckpt.get("kind") == "next_event", groups=len(cfg.views.streams),
                          members=ensemble_members(ckpt["head_state"]))
    head.load_state_dict(ckpt["head_state"])
    return head.to(device).eval()
