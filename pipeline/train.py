"""Training: read top to bottom (torchvision references style) - data, train_one_epoch, evaluate, main.

The head trains on cached frame features (fast on a CPU). With train.finetune_backbone=true the
backbone trains end to end on decoded frames held in memory instead (GPU advised); with
train.finetune_blocks=n only its last n stages train, on the cached maps of the frozen trunk.
Run directory: best.pt, last.pt, metrics.json, config.yaml, split.csv, log.csv, train.log,
curves.png, confusion_val.png, failures.txt (when some videos could not be read).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as data_mod
from .backbones import backbone_from_config, backbone_spec, resolve_device
from .cache import FeatureCache, extract
from .checkpoint import FORMAT_VERSION, load_checkpoint
from .config import Config, save_config
from .heads import build_head, length_mask
from .io import atomic_torch_save, atomic_write_csv, atomic_write_text
from .metrics import classification_report, plot_confusion, plot_curves
from .video import load_frames, video_kwargs

log = logging.getLogger("vap.train")


class TrainError(ValueError):
    """A training run that cannot start; the message says why."""


# ----------------------------------------------------------------------------- data

@dataclass
class Clip:
    path: str
    target: int
    feats: torch.Tensor | None = None   # (T, D) float32 cached features (head-only training)
    feats_flip: torch.Tensor | None = None  # (T, D) features of the mirrored frames (train.flip_aug)
    frames: torch.Tensor | None = None  # (T, S, S, 3) uint8 decoded frames (fine-tuning)

    def __len__(self):
        return len(self.feats) if self.feats is not None else len(self.frames)


def load_feature_clips(ds: data_mod.Dataset, classes: list[str], backbone, cfg: Config,
                       cache: FeatureCache, progress: bool = True, failures_file=None,
                       flip: bool = False) -> tuple[list[Clip], dict]:
    """Extract (or reuse) cached features for every clip; bad videos are skipped and returned.
    flip=True also caches the features of the mirrored frames (horizontal-flip augmentation)."""
    paths = [s.path for s in ds.samples]
    res = extract(paths, backbone, cfg.video, cache, progress, failures_file, views=cfg.views)
    flipped = extract([p for p in paths if p in res.keys], backbone, cfg.video, cache, progress,
                      flip=True, views=cfg.views) if flip else None
    index = {c: i for i, c in enumerate(classes)}
    clips = []
    for s in ds.samples:
        if s.path in res.keys:
            feats, _ = cache.load_streams(res.keys[s.path])  # (T, len(views.streams) * D), or trunk maps
            small = feats.ndim > 2  # trunk maps (train.finetune_blocks) stay float16 in memory: 2x less
            clip = Clip(s.path, index[s.label], feats=_tensor(feats, small))
            if flipped is not None and s.path in flipped.keys:
                clip.feats_flip = _tensor(cache.load_streams(flipped.keys[s.path])[0], small)
            clips.append(clip)
    return clips, res.failures


def _tensor(a: np.ndarray, half: bool) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float16) if half else a)


def load_frame_clips(ds, classes, cfg: Config, progress=True) -> tuple[list[Clip], dict]:
    """Decode every clip into memory as the backbone's input images of each stream (fine-tuning only):
    frames (T, len(views.streams), S, S, 3) uint8."""
    import cv2
    from tqdm import tqdm

    from .video import VideoError
    from .views import ViewRenderer

    index = {c: i for i, c in enumerate(classes)}
    size = cfg.backbone.input_size
    renderer = ViewRenderer(cfg.views.streams, cfg.views, size)
    clips, failures = [], {}
    for s in tqdm(ds.samples, desc="decode", unit="video", disable=not progress):
        try:
            frames, _ = load_frames(s.path, **video_kwargs(cfg.video))
        except VideoError as e:
            failures[s.path] = str(e)
            continue
        renderer.reset()
        views = renderer.render(frames)
        if "frame" in views:
            views["frame"] = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
        stacked = np.stack([views[k] for k in cfg.views.streams], 1)  # (T, streams, S, S, 3)
        clips.append(Clip(s.path, index[s.label], frames=torch.from_numpy(stacked)))
    return clips, failures


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


def eval_crops(T: int, max_len: int, n: int) -> list[np.ndarray]:
    """Multi-clip testing (as MMAction2's num_clips): n evenly spaced crops of max_len steps covering
    the clip; the whole clip when n == 1, max_len == 0 or the clip is no longer than max_len."""
    if n <= 1 or not max_len or T <= max_len:
        return [np.arange(T)]
    return [np.arange(s, s + max_len) for s in np.linspace(0, T - max_len, n).round().astype(int)]


def crop_average(head, x: torch.Tensor, lengths: torch.Tensor, max_len: int, n: int) -> torch.Tensor:
    """(B, C) log of the clip probabilities averaged over each clip's test crops (B, T, D) -> (B, C)."""
    seqs, owner = [], []
    for b in range(len(x)):
        for idx in eval_crops(int(lengths[b]), max_len, n):
            seqs.append(x[b, idx])
            owner.append(b)
    xs, ls = pad_batch(seqs)
    probs = torch.softmax(head(xs, ls.to(x.device)).clip.float(), -1)  # (crops, C)
    owner = torch.tensor(owner, device=probs.device)
    total = torch.zeros(len(x), probs.shape[1], device=probs.device).index_add_(0, owner, probs)
    count = torch.bincount(owner, minlength=len(x)).clamp(min=1)[:, None]
    return torch.log((total / count).clamp_min(1e-12))


def pad_batch(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, D) -> (B, T_max, D) zero-padded, lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = seqs[0].new_zeros((len(seqs), int(lengths.max()), *seqs[0].shape[1:]))
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


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
    from .views import mirror

    frames = torch.cat([mirror(c.frames[i], backbone.streams) if f else c.frames[i]
                        for c, i, f in zip(clips, idxs, flips)]).to(device)  # (sum T, streams, S, S, 3)
    feats = backbone.features(backbone.preprocess(frames.flatten(0, 1))).view(len(frames), -1)  # (sum T, streams*D)
    return (*[t.to(device) for t in pad_batch(list(feats.split([len(i) for i in idxs])))],)


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


def train_one_epoch(head, backbone, clips, optimizer, cfg: Config, rng, weight, device, sampler_w=None):
    head.train()
    if backbone is not None:
        backbone.train()
        for m in backbone.modules():  # small batches: keep the pretrained BatchNorm statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    if sampler_w is not None:
        order = rng.choice(len(clips), size=len(clips), replace=True, p=sampler_w)
    else:
        order = rng.permutation(len(clips))
    bs = cfg.train.batch_size
    total, correct, n = 0.0, 0, 0
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for start in range(0, len(order), bs):
        batch = [clips[i] for i in order[start:start + bs]]
        idxs = [temporal_indices(len(c), cfg.train.max_len, cfg.train.speed_min, cfg.train.speed_max, rng)
                for c in batch]
        flips = [bool(cfg.train.flip_aug and rng.random() < 0.5) for _ in batch]
        x, lengths = clip_inputs(batch, idxs, backbone, device, flips)
        targets = torch.tensor([c.target for c in batch], device=device)
        out = head(x, lengths)
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

def lr_lambda(cfg: Config):
    warm, total = cfg.train.warmup_epochs, cfg.train.epochs

    def f(epoch):  # linear warm-up, then cosine to zero (stepped once per epoch)
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - warm) / max(1, total - warm)))
    return f


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


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


def _setup_logging(out: Path) -> logging.Handler:
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("vap").addHandler(handler)
    logging.getLogger("vap").setLevel(logging.INFO)
    return handler


def end_epoch(out: Path, ckpt: dict, score: tuple, report: dict, val_loss: float, history: list[dict],
              best: dict | None, stale: int) -> tuple[dict, int]:
    """Model selection and the run directory after an epoch (both tasks): keep the best score (ties go
    to the earlier epoch), count stale epochs, write best.pt when it improved, last.pt and log.csv.
    ckpt holds this task's checkpoint fields; history, best and stale are added here."""
    epoch = ckpt["epoch"] + 1
    improved = best is None or score > tuple(best["score"])
    if improved:
        best = dict(score=list(score), epoch=epoch, report=report, val_loss=val_loss)
        stale = 0
    else:
        stale += 1
    ckpt.update(history=history, best=best, stale=stale)
    if improved:
        atomic_torch_save(ckpt, out / "best.pt")
    atomic_torch_save(ckpt, out / "last.pt")
    _write_log(out / "log.csv", history)
    return best, stale


def restore(state: dict, head, optimizer, scheduler, cfg: Config):
    """Load a last.pt's head, optimizer and scheduler; (history, best, start epoch, stale epochs, rng)."""
    head.load_state_dict(state["head_state"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    start = state["epoch"] + 1
    rng = np.random.default_rng([cfg.train.seed, start])  # a fresh, reproducible stream
    torch.manual_seed(cfg.train.seed + start)
    log.info("resumed from epoch %d", start)
    return state["history"], state["best"], start, state["stale"], rng


def main(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train a head (or backbone + head) on cfg.data.train; returns the metrics dict.
    train.task=next_event trains on segment annotations instead (train_next.py)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = None
    if resume:
        if not (out / "last.pt").is_file():
            raise TrainError(f"{out / 'last.pt'}: nothing to resume from")
        state = load_checkpoint(out / "last.pt")
    handler = _setup_logging(out)
    try:
        if cfg.train.task == "next_event":
            from .train_next import run

            return run(cfg, out, state, progress)
        return _run(cfg, out, state, progress)
    finally:
        logging.getLogger("vap").removeHandler(handler)
        handler.close()


def _run(cfg: Config, out: Path, state: dict | None, progress: bool) -> dict:
    t0 = time.time()
    save_config(cfg, out / "config.yaml")
    rng = seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    train_ds, val_ds = prepare_data(cfg, out)
    classes = train_ds.classes
    log.info("classes (%d): %s; train %d clips, val %d clips", len(classes), classes, len(train_ds), len(val_ds))

    finetune, blocks = cfg.train.finetune_backbone, cfg.train.finetune_blocks
    trains_backbone = finetune or blocks > 0
    backbone = backbone_from_config(cfg.backbone, cfg.train.device if trains_backbone else None,
                                    runtime=not trains_backbone)
    spec_fingerprint = backbone.fingerprint
    failures_file = out / "failures.txt"
    trainable = None  # what of the backbone trains: the whole of it, or its tail on cached trunk maps
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
            from .backbones import BackboneTail, TrunkEncoder

            encoder = TrunkEncoder(backbone.to(device), blocks)
            trainable = BackboneTail(backbone, blocks, len(cfg.views.streams))
        train_clips, f1 = load_feature_clips(train_ds, classes, encoder, cfg, cache, progress,
                                             flip=cfg.train.flip_aug)
        # refit trains on the validation clips too, with the same augmentation
        val_clips, f2 = load_feature_clips(val_ds, classes, encoder, cfg, cache, progress,
                                           flip=cfg.train.flip_aug and cfg.train.refit)
    if trainable is not None and state is not None and state.get("backbone_state"):
        backbone.load_state_dict(state["backbone_state"])
    failures = {**f1, **f2}
    if failures:
        atomic_write_text(failures_file, "".join(f"{e}\n" for e in failures.values()))
        log.warning("%d video(s) could not be read and were skipped; see %s", len(failures), failures_file)
    if not train_clips:
        raise TrainError(f"no training clip could be read ({len(failures)} failed; see {failures_file})")
    if not val_clips:
        raise TrainError(f"no validation clip could be read ({len(failures)} failed; see {failures_file})")

    feature_dim = len(cfg.views.streams) * backbone.dim  # streams side by side (views.py)
    head = build_head(cfg.head, feature_dim, len(classes), groups=len(cfg.views.streams)).to(device)
    groups = [{"params": head.parameters(), "lr": cfg.train.lr}]
    if trainable is not None:
        groups.append({"params": trainable.parameters(), "lr": cfg.train.backbone_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    targets = [c.target for c in train_clips]
    weight = class_weights(targets, len(classes)).to(device) if cfg.train.class_balance == "loss" else None
    sampler_w = None
    if cfg.train.class_balance == "sampler":
        w = class_weights(targets, len(classes))[targets].numpy().astype(np.float64)
        sampler_w = w / w.sum()

    history, best, start_epoch, stale = [], None, 0, 0
    if state is not None:
        history, best, start_epoch, stale, rng = restore(state, head, optimizer, scheduler, cfg)

    from tqdm import tqdm

    bar = tqdm(range(start_epoch, cfg.train.epochs), desc="train", unit="epoch", disable=not progress,
               dynamic_ncols=True, initial=start_epoch, total=cfg.train.epochs)
    for epoch in bar:
        te = time.time()
        tr_loss, tr_acc = train_one_epoch(head, trainable, train_clips, optimizer,
                                          cfg, rng, weight, device, sampler_w)
        scheduler.step()
        logits, vt, val_loss = evaluate(head, trainable, val_clips, cfg, device)
        rep = classification_report(logits, vt, classes)
        row = dict(epoch=epoch + 1, train_loss=round(tr_loss, 5), train_top1=round(tr_acc, 5),
                   val_loss=round(val_loss, 5), val_top1=round(rep["top1"], 5),
                   val_top5=round(rep["top5"], 5), val_mean_class_accuracy=round(rep["mean_class_accuracy"], 5),
                   lr=optimizer.param_groups[0]["lr"], seconds=round(time.time() - te, 3))
        history.append(row)
        ckpt = dict(format_version=FORMAT_VERSION, kind="classification", config=cfg.to_dict(),
                    classes=classes, feature_dim=feature_dim, head_state=head.state_dict(),
                    backbone=backbone_spec(cfg.backbone), backbone_fingerprint=spec_fingerprint,
                    backbone_state=backbone.state_dict() if trainable is not None else None,
                    metrics=dict(val_top1=rep["top1"], val_mean_class_accuracy=rep["mean_class_accuracy"],
                                 val_loss=val_loss, epoch=epoch + 1),
                    epoch=epoch, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
        # best = highest val top1; ties go to the lower val loss
        best, stale = end_epoch(out, ckpt, (rep["top1"], -val_loss), rep, val_loss, history, best, stale)
        bar.set_postfix(loss=f"{tr_loss:.3f}", val_top1=f"{rep['top1']:.3f}", best=f"{best['report']['top1']:.3f}")
        log.info("epoch %d: %s", epoch + 1, row)
        if cfg.train.patience and stale >= cfg.train.patience:
            log.info("early stop: no better val top1 for %d epochs", stale)
            break

    if cfg.train.refit and trainable is None:
        _refit(cfg, out, train_clips + val_clips, classes, backbone, spec_fingerprint, best, weight, device)

    plot_curves(history, out / "curves.png")
    rep = best["report"]
    plot_confusion(rep["confusion_matrix"], classes, out / "confusion_val.png",
                   title=f"validation, epoch {best['epoch']}, top1 {rep['top1']:.3f}")
    metrics = dict(
        best_epoch=best["epoch"], epochs_run=len(history),
        val_top1=rep["top1"], val_top5=rep["top5"], val_mean_class_accuracy=rep["mean_class_accuracy"],
        val_loss=best["val_loss"], val_per_class_accuracy=rep["per_class_accuracy"],
        val_confusion_matrix=rep["confusion_matrix"], classes=classes,
        train_clips=len(train_clips), val_clips=len(val_clips), failed_videos=len(failures),
        refit=bool(cfg.train.refit and trainable is None),
        seconds=round(time.time() - t0, 2), run_dir=str(out),
        checkpoint=str(out / "best.pt"),
    )
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _refit(cfg: Config, out: Path, clips: list[Clip], classes, backbone, fingerprint, best, weight, device):
    """Model selection is done: train a fresh head on train + val for the selected number of epochs
    (same seed and schedule, compressed to those epochs) and make it best.pt. Small datasets gain
    the validation clips; the reported validation metrics stay those of the selection run."""
    import copy

    rcfg = copy.deepcopy(cfg)
    rcfg.train.epochs = best["epoch"]
    rcfg.train.warmup_epochs = min(cfg.train.warmup_epochs, max(0, best["epoch"] - 1))
    rng = seed_everything(cfg.train.seed)
    feature_dim = len(cfg.views.streams) * backbone.dim
    head = build_head(cfg.head, feature_dim, len(classes), groups=len(cfg.views.streams)).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(rcfg))
    if cfg.train.class_balance == "loss":
        weight = class_weights([c.target for c in clips], len(classes)).to(device)
    for _ in range(rcfg.train.epochs):
        train_one_epoch(head, None, clips, opt, rcfg, rng, weight, device)
        sched.step()
    ckpt = load_checkpoint(out / "best.pt")
    ckpt.update(head_state=head.state_dict(), refit=dict(epochs=rcfg.train.epochs, clips=len(clips)))
    atomic_torch_save(ckpt, out / "best.pt")
    log.info("refit on %d clips for %d epochs -> best.pt", len(clips), rcfg.train.epochs)


def _write_log(path: Path, history: list[dict]) -> None:
    atomic_write_csv(path, list(history[0]), [list(row.values()) for row in history])


def config_for_resume(out: str | Path, overrides=()) -> Config:
    """The run's own saved config, with overrides (e.g. train.epochs=100) on top."""
    from .checkpoint import config_of

    return config_of(load_checkpoint(Path(out) / "last.pt"), overrides)
