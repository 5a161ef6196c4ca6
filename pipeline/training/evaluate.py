"""Evaluate a checkpoint on a dataset: the JSON report, a confusion-matrix PNG, a per-class CSV."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.data import datasets as data_mod
from pipeline.data import segments as seg
from pipeline.data.tracks import load_timelines
from pipeline.errors import DataError
from pipeline.io import atomic_write_csv, atomic_write_text
from pipeline.models.cache import FeatureCache
from pipeline.models.checkpoint import backbone_of, config_of, head_of, load_checkpoint, with_overrides
from pipeline.training import classify, next_event
from pipeline.training.clips import load_feature_clips
from pipeline.training.metrics import classification_report, plot_confusion


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path | None = None,
                        device: str = "auto", cache_dir: str | None = None, progress: bool = True,
                        overrides=()) -> dict:
    """Top-1/5, mean-class and per-class accuracy, confusion matrix, number of clips.
    (A next-event checkpoint gets evaluate_next_checkpoint's report instead.)

    Writes eval.json, confusion_eval.png and per_class_eval.csv to `out` (default: the
    checkpoint's folder). Videos that cannot be read are listed under "failed". overrides:
    prediction-time settings (models.checkpoint.INFERENCE_KEYS), e.g. backbone.runtime=onnxruntime.
    """
    ckpt, device = with_overrides(load_checkpoint(checkpoint), overrides, device)
    out = Path(out) if out else Path(checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    if ckpt.get("kind") == "next_event":
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
    logits, targets, _ = classify.evaluate(head, None, clips, cfg, backbone.device)
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


def evaluate_next_checkpoint(ckpt: dict, checkpoint: str | Path, data: str | Path, out: Path, device="auto",
                             cache_dir: str | None = None, progress: bool = True) -> dict:
    """vap eval on a next-event checkpoint: the next_event_report on annotated videos (their test or
    val split when the CSV has a split column), eval.json and a current-action confusion PNG."""
    cfg = config_of(ckpt)
    if cache_dir:
        cfg.cache.dir = cache_dir
    if not seg.is_annotation_file(data):
        raise DataError(f"{data}: a next-event model is evaluated on a segment annotation CSV "
                        f"(video,start,end,label)")
    ann = load_timelines(data)
    splits = {v.split for v in ann.videos}
    held = next((s for s in ("test", "val") if s in splits), None)
    videos = [v for v in ann.videos if v.split == held] if held else ann.videos
    classes = list(ckpt["classes"])
    backbone = backbone_of(ckpt, device)
    head = head_of(ckpt, backbone.device)
    feats, failures = next_event.encode_videos(videos, backbone, cfg, FeatureCache.from_config(cfg), progress,
                                               ann.source)
    seqs = next_event.build_sequences(videos, feats, classes, cfg.data.background, ann.source)
    if not seqs:
        raise DataError(f"{data}: no video could be read ({len(failures)} failed)")
    rep, _ = next_event.evaluate(head, seqs, cfg, classes, backbone.device)
    rep.update(task="next_event", checkpoint=str(checkpoint), data=str(data), failed=failures)
    atomic_write_text(out / "eval.json", json.dumps(rep, indent=2) + "\n")
    plot_confusion(rep["current_confusion_matrix"], classes, out / "confusion_eval.png",
                   title=f"{Path(str(data)).name}: current action per step, top1 {rep['current_top1']:.3f}")
    rep["outputs"] = dict(json=str(out / "eval.json"), confusion_png=str(out / "confusion_eval.png"))
    return rep
