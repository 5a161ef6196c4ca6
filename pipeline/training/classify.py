"""Classification training (train.task=classification): read top to bottom (torchvision references
style) - data, train_one_epoch, evaluate, run. The loop itself is loop.fit, shared with next_event.py.

The head trains on cached frame features (fast on a CPU). With train.finetune_backbone=true the
backbone trains end to end on decoded frames held in memory instead (GPU advised); with
train.finetune_blocks=n only its last n stages train, on the cached maps of the frozen trunk
(finetune.py). Run directory: best.pt, last.pt, metrics.json, config.yaml, split.csv, log.csv,
train.log, curves.png, confusion_val.png, failures.txt (when some videos could not be read).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.config import Config
from pipeline.data import datasets as data_mod
from pipeline.data.views import PERSON_STREAMS, mirror
from pipeline.errors import TrainError
from pipeline.models.cache import FeatureCache
from pipeline.models.checkpoint import make_checkpoint
from pipeline.models.heads import build_head, crop_average, length_mask, pad_batch
from pipeline.models.runtime import backbone_from_config
from pipeline.training import loop
from pipeline.training.clips import Clip, load_feature_clips, with_copies
from pipeline.training.distributed import Dist
from pipeline.training.finetune import BackboneTail, TrunkEncoder, load_frame_clips
from pipeline.training.loop import Validation, fit, optimizer_for, start_run, write_failures, write_metrics
from pipeline.training.metrics import classification_report, plot_confusion, plot_curves

log = logging.getLogger("vap.train")


# ----------------------------------------------------------------------------- data

def temporal_indices(T: int, max_len: int, speed_min: float, speed_max: float,
                     rng: np.random.Generator | None) -> np.ndarray:
    """Augmentation as index arithmetic: speed jitter (resample at a random rate), then a random
    crop of max_len steps. rng=None gives the whole clip unchanged (evaluation)."""
    if rng is None:
        return np.arange(T)
    s = math.exp(rng.uniform(math.log(speed_min), math.log(speed_max)))
    n = max(1, int(round(T / s)))
    idx = np.minimum((np.arange(n) * s).astype(np.int64), T - 1)
    if max_len and n > max_len:
        start = int(rng.integers(0, n - max_len + 1))
        idx = idx[start:start + max_len]
    return idx


def class_weights(targets: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights with mean 1 over the classes present."""
    counts = torch.bincount(torch.tensor(targets), minlength=num_classes).float()
    w = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return w * (counts > 0).sum() / w.sum()


# ----------------------------------------------------------------------------- model step

def clip_inputs(clips: list[Clip], idxs: list[np.ndarray], backbone, device,
                flips: list[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) head inputs and lengths: cached features (of the mirrored frames where flips[i]),
    or frames through the backbone."""
    flips = flips or [False] * len(clips)
    if clips[0].feats is not None:
        seqs = [(c.feats_flip if f and c.feats_flip is not None else c.feats)[i]
                for c, i, f in zip(clips, idxs, flips)]
        if backbone is not None:  # train.finetune_blocks: cached trunk maps (T, streams*C, h, w) through the tail
            z = torch.cat(seqs).to(device).float()  # only the valid steps, not the padding
            seqs = list(backbone(z).split([len(s) for s in seqs]))  # (T_i, streams * D)
        x, lengths = pad_batch(seqs)
        return x.to(device), lengths.to(device)
    frames = torch.cat([mirror(c.frames[i], backbone.streams) if f else c.frames[i]
                        for c, i, f in zip(clips, idxs, flips)]).to(device)  # (sum T, streams, S, S, 3)
    feats = backbone.features(backbone.preprocess(frames.flatten(0, 1))).view(len(frames), -1)  # (sum T, streams*D)
    return (*[t.to(device) for t in pad_batch(list(feats.split([len(i) for i in idxs])))],)


class TrainStep(nn.Module):
    """The head and the part of the backbone that trains (None: head only on cached features) as one
    module, from a batch of clips to the head's outputs: the module DistributedDataParallel wraps."""

    def __init__(self, head: nn.Module, backbone: nn.Module | None = None):
        super().__init__()
        self.head, self.backbone = head, backbone

    def forward(self, clips: list[Clip], idxs: list[np.ndarray], flips: list[bool], device):
        x, lengths = clip_inputs(clips, idxs, self.backbone, device, flips)  # (B, T, D), (B,)
        return self.head(x, lengths), lengths


def loss_fn(out, targets, lengths, weight, cfg: Config) -> torch.Tensor:
    """Clip cross-entropy plus the mean per-step cross-entropy over valid steps (every step of a
    trimmed clip carries the clip's label), which trains the streaming outputs too."""
    ls = cfg.train.label_smoothing
    loss = F.cross_entropy(out.clip, targets, weight=weight, label_smoothing=ls)
    if cfg.train.step_loss_weight > 0:
        B, T, C = out.steps.shape
        mask = length_mask(lengths, T)
        step_t = targets[:, None].expand(B, T)
        step_loss = F.cross_entropy(out.steps[mask], step_t[mask], weight=weight, label_smoothing=ls)
        loss = loss + cfg.train.step_loss_weight * step_loss
    return loss


def train_one_epoch(head, backbone, clips, optimizer, cfg: Config, rng, weight, device, sampler_w=None,
                    dist: Dist | None = None, epoch: int = 0, model: nn.Module | None = None):
    """One pass over the clips (this process's share of them under torchrun: dist). model: TrainStep(head,
    backbone), in DistributedDataParallel under torchrun (built here when None)."""
    model = model if model is not None else TrainStep(head, backbone)
    model.train()
    if backbone is not None:
        for m in backbone.modules():  # small batches: keep the pretrained BatchNorm statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    bs = cfg.train.batch_size
    if dist is not None and dist.enabled:
        order = dist.epoch_order(len(clips), epoch, cfg.train.seed, sampler_w)
        bs = dist.batch_size(bs)
    elif sampler_w is not None:
        order = rng.choice(len(clips), size=len(clips), replace=True, p=sampler_w)
    else:
        order = rng.permutation(len(clips))
    total, correct, n = 0.0, 0, 0
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for start in range(0, len(order), bs):
        batch = [clips[i] for i in order[start:start + bs]]
        idxs = [temporal_indices(len(c), cfg.train.max_len, cfg.train.speed_min, cfg.train.speed_max, rng)
                for c in batch]
        flips = [bool(cfg.train.flip_aug == "true" and rng.random() < 0.5) for _ in batch]
        out, lengths = model(batch, idxs, flips, device)
        targets = torch.tensor([c.target for c in batch], device=device)
        loss = loss_fn(out, targets, lengths, weight, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:  # the classic remedy for exploding gradients in RNNs
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        total += float(loss.detach()) * len(batch)
        correct += int((out.clip.argmax(1) == targets).sum())
        n += len(batch)
    return total / max(n, 1), correct / max(n, 1)


@torch.no_grad()
def evaluate(head, backbone, clips, cfg: Config, device, weight=None, batch_size: int = 32):
    """Whole-clip logits (N, C) as numpy, targets (N,), and the mean clip loss."""
    head.eval()
    if backbone is not None:
        backbone.eval()
    logits, losses = [], []
    for start in range(0, len(clips), batch_size):
        batch = clips[start:start + batch_size]
        x, lengths = clip_inputs(batch, [np.arange(len(c)) for c in batch], backbone, device)
        if cfg.train.test_clips > 1:  # multi-clip testing
            clip = crop_average(head, x, lengths, cfg.train.max_len, cfg.train.test_clips)
        else:
            clip = head(x, lengths).clip
        targets = torch.tensor([c.target for c in batch], device=device)
        losses.append(float(F.cross_entropy(clip, targets, weight=weight, reduction="sum")))
        logits.append(clip.float().cpu())
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), float("nan")
    targets = np.array([c.target for c in clips])
    return torch.cat(logits).numpy(), targets, sum(losses) / len(clips)


# ----------------------------------------------------------------------------- main


# ----------------------------------------------------------------------------- run

def prepare_data(cfg: Config, out: Path) -> tuple[data_mod.Dataset, data_mod.Dataset]:
    ext = tuple(cfg.data.extensions)
    train = data_mod.load_dataset(cfg.data.train, "train", ext, cfg.data.ucf_split)
    if cfg.data.val:
        val = data_mod.load_dataset(cfg.data.val, "eval", ext, cfg.data.ucf_split)
    elif data_mod.has_own_val(cfg.data.train):
        val = data_mod.load_dataset(cfg.data.train, "val", ext, cfg.data.ucf_split)
    else:
        if cfg.data.val_fraction <= 0:
            raise TrainError("no validation data: pass --val, or set data.val_fraction > 0")
        train, val = data_mod.stratified_split(train, cfg.data.val_fraction, cfg.data.split_seed,
                                               cfg.data.group_by)
    data_mod.check_labels(train, val)
    if not val.samples:
        raise TrainError(f"{cfg.data.train}: the validation split is empty (classes with a single clip "
                         f"stay in training); pass --val or add clips")
    data_mod.write_split(out / "split.csv", train, val)
    return train, val


def balance(cfg: Config, clips: list[Clip], num_classes: int, device) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """train.class_balance: (loss weights, None) for 'loss', (None, sampling probabilities) for 'sampler'."""
    targets = [c.target for c in clips]
    if cfg.train.class_balance == "loss":
        return class_weights(targets, num_classes).to(device), None
    if cfg.train.class_balance == "sampler":
        w = class_weights(targets, num_classes)[targets].numpy().astype(np.float64)
        return None, w / w.sum()
    return None, None


def run(cfg: Config, out: Path, state: dict | None, progress: bool, dist: Dist | None = None) -> dict:
    """dist: this process's place under torchrun (distributed.py); None in one process."""
    dist = dist or Dist()
    t0 = time.time()
    rng, device = start_run(cfg, out)
    train_ds, val_ds = prepare_data(cfg, out)
    classes = train_ds.classes
    log.info("classes (%d): %s; train %d clips, val %d clips", len(classes), classes, len(train_ds), len(val_ds))
    loop.resolve_flip(cfg, classes, out)

    finetune, blocks = cfg.train.finetune_backbone, cfg.train.finetune_blocks
    trains_backbone = finetune or blocks > 0
    people = any(s.person is not None for s in train_ds.samples + val_ds.samples)
    if people and not any(k in PERSON_STREAMS for k in cfg.views.streams):
        raise TrainError(f"{cfg.data.train}: per-person rows need person views (views.streams with crop, diff, mhi, "
                         f"flow or pose: the whole frame is the same for everybody); got {list(cfg.views.streams)}")
    if trains_backbone and people:
        raise TrainError(f"{cfg.data.train}: per-person rows train the head on cached person features; "
                         f"train.finetune_backbone and train.finetune_blocks are not supported with them")
    backbone = backbone_from_config(cfg.backbone, cfg.train.device if trains_backbone else None,
                                    runtime=not trains_backbone)
    spec_fingerprint = backbone.fingerprint
    trainable = None  # what of the backbone trains: the whole of it, or its tail on cached trunk maps
    counts = dict(train_copies=0, val_copies=0)  # rewritten copies among the clips (train.copies)
    if finetune:
        train_clips, f1 = load_frame_clips(train_ds, classes, cfg, progress)
        val_clips, f2 = load_frame_clips(val_ds, classes, cfg, progress)
        backbone.to(device)
        backbone.streams = list(cfg.views.streams)  # for mirroring the flow stream (clip_inputs)
        trainable = backbone
    else:
        cache = FeatureCache.from_config(cfg)
        encoder = backbone
        if blocks:  # the frozen trunk's maps are cached; only the last `blocks` stages train
            encoder = TrunkEncoder(backbone.to(device), blocks)
            trainable = BackboneTail(backbone, blocks, len(cfg.views.streams))
        # refit trains on the validation clips too, with the same augmentation (not when fine-tuning,
        # which does not refit)
        flip_train = cfg.train.flip_aug == "true"
        flip_val = flip_train and cfg.train.refit and trainable is None
        # rewritten copies (train.copies): clips of their own beside each clip, in training and in validation (a
        # validation clip's copies are scored with it, so the epoch is chosen for other files too)
        copies = cfg.train.copies
        dist.prefill_cache([(train_ds.samples, flip_train, copies), (val_ds.samples, flip_val, copies)],
                           encoder, cfg, cache)
        train_clips, f1 = load_feature_clips(train_ds, classes, encoder, cfg, cache, progress, flip=flip_train,
                                             copies=copies)
        val_clips, f2 = load_feature_clips(val_ds, classes, encoder, cfg, cache, progress, flip=flip_val,
                                           copies=copies)
        counts.update(train_copies=sum(len(c.copies) for c in train_clips),
                      val_copies=sum(len(c.copies) for c in val_clips))
        train_clips, val_clips = with_copies(train_clips), with_copies(val_clips)
    if trainable is not None and state is not None and state.get("backbone_state"):
        backbone.load_state_dict(state["backbone_state"])
    failures = {**f1, **f2}
    write_failures(out, failures)
    if not train_clips:
        raise TrainError(f"no training clip could be read ({len(failures)} failed; see {out / 'failures.txt'})")
    if not val_clips:
        raise TrainError(f"no validation clip could be read ({len(failures)} failed; see {out / 'failures.txt'})")

    feature_dim = len(cfg.views.streams) * backbone.dim  # streams side by side (views.py)
    head = build_head(cfg.head, feature_dim, len(classes), groups=len(cfg.views.streams)).to(device)
    groups = [{"params": head.parameters(), "lr": cfg.train.lr}]
    if trainable is not None:
        groups.append({"params": trainable.parameters(), "lr": cfg.train.backbone_lr})
    optimizer, scheduler = optimizer_for(cfg, groups)
    weight, sampler_w = balance(cfg, train_clips, len(classes), device)

    model = dist.wrap(TrainStep(head, trainable))  # DDP under torchrun: gradients averaged at backward

    def train_epoch(rng, epoch):
        loss, acc = train_one_epoch(head, trainable, train_clips, optimizer, cfg, rng, weight, device, sampler_w,
                                    dist, epoch, model)
        loss, acc = dist.mean(loss, acc)  # of every process's share
        return dict(train_loss=loss, train_top1=acc)

    def validate() -> Validation:
        logits, vt, val_loss = evaluate(head, trainable, val_clips, cfg, device)
        rep = classification_report(logits, vt, classes)
        return dist.broadcast(Validation(  # rank 0's: every process takes the same decisions
            rep, val_loss, dict(val_top1=rep["top1"], val_top5=rep["top5"],
                                val_mean_class_accuracy=rep["mean_class_accuracy"]),
            score=(rep["top1"], -val_loss),  # best = highest val top1; ties go to the lower loss
            metrics=dict(val_top1=rep["top1"], val_mean_class_accuracy=rep["mean_class_accuracy"]),
            postfix=dict(val_top1=rep["top1"])))

    def checkpoint(metrics):
        return make_checkpoint("classification", cfg, classes, feature_dim, head, spec_fingerprint,
                               backbone.state_dict() if trainable is not None else None, metrics)

    history, best = fit(cfg, out, state, head, optimizer, scheduler, rng, train_epoch, validate, checkpoint,
                        "train", progress)
    if cfg.train.refit and trainable is None:
        refit(cfg, out, train_clips + val_clips, len(classes), feature_dim, best, device, progress, dist)

    plot_curves(history, out / "curves.png")
    rep = best["report"]
    plot_confusion(rep["confusion_matrix"], classes, out / "confusion_val.png",
                   title=f"validation, epoch {best['epoch']}, top1 {rep['top1']:.3f}")
    return write_metrics(out, dict(
        best_epoch=best["epoch"], epochs_run=len(history),
        val_top1=rep["top1"], val_top5=rep["top5"], val_mean_class_accuracy=rep["mean_class_accuracy"],
        val_loss=best["val_loss"], val_per_class_accuracy=rep["per_class_accuracy"],
        val_confusion_matrix=rep["confusion_matrix"], classes=classes,
        train_clips=len(train_clips) - counts["train_copies"], val_clips=len(val_clips) - counts["val_copies"],
        **counts, failed_videos=len(failures),
        refit=bool(cfg.train.refit and trainable is None),
        heads=cfg.train.ensemble if cfg.train.refit and trainable is None else 1, processes=dist.world,
        seconds=round(time.time() - t0, 2), run_dir=str(out),
        checkpoint=str(out / "best.pt"),
    ))


def refit(cfg: Config, out: Path, clips: list[Clip], num_classes: int, feature_dim: int, best: dict, device,
          progress: bool = False, dist: Dist | None = None):
    """Model selection is done: a fresh head trains on train + val for the selected number of epochs (same
    class balancing) and becomes best.pt (loop.refit). Small datasets gain the validation clips."""
    weight, sampler_w = balance(cfg, clips, num_classes, device)
    dist = dist or Dist()
    model = {}  # the head in its TrainStep (DistributedDataParallel under torchrun), once built

    def build():
        head = build_head(cfg.head, feature_dim, num_classes, groups=len(cfg.views.streams)).to(device)
        model["step"] = dist.wrap(TrainStep(head))
        return head

    def train_epoch(head, opt, rcfg, rng, epoch):
        train_one_epoch(head, None, clips, opt, rcfg, rng, weight, device, sampler_w, dist, epoch, model["step"])

    loop.refit(cfg, out, build, train_epoch, best, progress, clips=len(clips))
