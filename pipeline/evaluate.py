"""Evaluate a checkpoint on a dataset: the JSON report, a confusion-matrix PNG, a per-class CSV."""
from __future__ import annotations

import json
from pathlib import Path


from . import data as data_mod
from .cache import FeatureCache
from .checkpoint import backbone_of, config_of, head_of, load_checkpoint
from .io import atomic_write_csv, atomic_write_text
from .metrics import classification_report, plot_confusion
from .train import evaluate, load_feature_clips


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path | None = None,
                        device: str = "auto", cache_dir: str | None = None, progress: bool = True) -> dict:
    """Top-1/5, mean-class and per-class accuracy, confusion matrix, number of clips.
    (A next-event checkpoint gets train_next.evaluate_next_checkpoint's report instead.)

    Writes eval.json, confusion_eval.png and per_class_eval.csv to `out` (default: the
    checkpoint's folder). Videos that cannot be read are listed under "failed".
    """
    ckpt = load_checkpoint(checkpoint)
    out = Path(out) if out else Path(checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    if ckpt.get("kind") == "next_event":
        from .train_next import evaluate_next_checkpoint

        return evaluate_next_checkpoint(ckpt, checkpoint, data, out, device, cache_dir, progress)
    cfg = config_of(ckpt)
    if cache_dir:
        cfg.cache.dir = cache_dir
    classes = ckpt["classes"]
    ds = data_mod.load_dataset(data, "eval", tuple(cfg.data.extensions), cfg.data.ucf_split)
    unknown = sorted({s.label for s in ds.samples} - set(classes))
    if unknown:
        raise data_mod.DataError(f"{data}: label(s) {unknown} are not classes of this model {classes}")
    backbone = backbone_of(ckpt, device)
    head = head_of(ckpt, backbone.device)
    clips, failures = load_feature_clips(ds, classes, backbone, cfg, FeatureCache.from_config(cfg), progress)
    if not clips:
        raise data_mod.DataError(f"{data}: no clip could be read ({len(failures)} failed)")
    logits, targets, _ = evaluate(head, None, clips, cfg, backbone.device)
    rep = classification_report(logits, targets, classes)
    rep.update(checkpoint=str(checkpoint), data=str(data), failed=failures)
    atomic_write_text(out / "eval.json", json.dumps(rep, indent=2) + "\n")
    plot_confusion(rep["confusion_matrix"], classes, out / "confusion_eval.png",
                   title=f"{Path(str(data)).name}: top1 {rep['top1']:.3f}, {rep['num_clips']} clips")
    acc = rep["per_class_accuracy"]
    atomic_write_csv(out / "per_class_eval.csv", ["class", "accuracy", "support"],
                     [[c, "" if acc[c] is None else f"{acc[c]:.4f}", rep["per_class_support"][c]] for c in classes])
    rep["outputs"] = dict(json=str(out / "eval.json"), confusion_png=str(out / "confusion_eval.png"),
                          per_class_csv=str(out / "per_class_eval.csv"))
    return rep
