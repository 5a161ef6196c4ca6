"""What every training task shares: seeding, the optimiser and its schedule, resuming, the epoch
loop with model selection and early stopping, and the run directory's files (config.yaml, best.pt,
last.pt, log.csv, train.log, failures.txt, metrics.json). A task (classify.py, next_event.py)
brings its data, its train_one_epoch and its evaluation, and calls fit()."""
from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.config import Config, save_config
from pipeline.io import atomic_torch_save, atomic_write_csv, atomic_write_text
from pipeline.models.backbones import resolve_device

log = logging.getLogger("vap.train")


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def start_run(cfg: Config, out: Path) -> tuple[np.random.Generator, torch.device]:
    """config.yaml into the run directory, every seed set; (rng, training device)."""
    save_config(cfg, out / "config.yaml")
    return seed_everything(cfg.train.seed), resolve_device(cfg.train.device)


# class names that a mirror image would swap: walk_left <-> walk_right, a clockwise turn <-> anticlockwise
DIRECTION_WORDS = re.compile(r"left|right|clockwise", re.IGNORECASE)


def directional(classes: list[str]) -> list[str]:
    """The class names that say a horizontal direction (train.flip_aug=auto turns flipping off for them)."""
    return [c for c in classes if DIRECTION_WORDS.search(c)]


def wants_flip(flip_aug: str, classes: list[str]) -> bool:
    """Whether training reads mirrored features (train.flip_aug): true, false, or auto - on unless a class
    name says a direction, for both tasks (next events too since 2026-11-30: +5 points on UT-Interaction's
    composed sequences, +1 on Weizmann's, validation agreeing; docs/results.md). vap train and vap extract
    both ask this."""
    if flip_aug != "auto":
        return flip_aug == "true"
    return not directional(classes)


def resolve_flip(cfg: Config, classes: list[str], out: Path) -> bool:
    """train.flip_aug=auto decided once the classes are known (wants_flip), recorded in the run's
    config.yaml; True when training reads mirrored features."""
    if cfg.train.flip_aug == "auto":
        cfg.train.flip_aug = "true" if wants_flip("auto", classes) else "false"
        named = directional(classes)
        log.info("train.flip_aug=auto -> %s%s", cfg.train.flip_aug,
                 f" (class names with a direction: {named})" if named else "")
        save_config(cfg, out / "config.yaml")
    return cfg.train.flip_aug == "true"


def lr_lambda(cfg: Config):
    warm, total = cfg.train.warmup_epochs, cfg.train.epochs

    def f(epoch):  # linear warm-up, then cosine to zero (stepped once per epoch)
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - warm) / max(1, total - warm)))
    return f


def optimizer_for(cfg: Config, param_groups: list[dict]):
    """AdamW over the groups (each with its own lr) and the warm-up + cosine schedule of cfg.train."""
    optimizer = torch.optim.AdamW(param_groups, weight_decay=cfg.train.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))


def write_failures(out: Path, failures: dict) -> None:
    """failures.txt: one line per video that could not be read (path: problem)."""
    if failures:
        atomic_write_text(out / "failures.txt", "".join(f"{e}\n" for e in failures.values()))
        log.warning("%d video(s) could not be read and were skipped; see %s", len(failures), out / "failures.txt")


def write_metrics(out: Path, metrics: dict) -> dict:
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def setup_logging(out: Path) -> logging.Handler:
    """The run's INFO log into out/train.log (remove the handler when the run ends)."""
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("vap").addHandler(handler)
    logging.getLogger("vap").setLevel(logging.INFO)
    return handler


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


def end_epoch(out: Path, ckpt: dict, score: tuple, report: dict, val_loss: float, history: list[dict],
              best: dict | None, stale: int) -> tuple[dict, int]:
    """Model selection and the run directory after an epoch: keep the best score (ties go to the
    earlier epoch), count stale epochs, write best.pt when it improved, last.pt and log.csv.
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
    atomic_write_csv(out / "log.csv", list(history[0]), [list(row.values()) for row in history])
    return best, stale


@dataclass
class Validation:
    """What a task's validation gives the loop after an epoch."""
    report: dict            # the task's report (kept with the best epoch; its metrics.json comes from it)
    loss: float             # mean validation loss
    columns: dict           # val_* columns of log.csv, after val_loss
    score: tuple            # model selection: higher is better, compared as a tuple
    metrics: dict           # what the checkpoint's "metrics" holds (val_loss and epoch are added)
    postfix: dict = field(default_factory=dict)  # the progress bar's extra fields


def fit(cfg: Config, out: Path, state: dict | None, head, optimizer, scheduler, rng: np.random.Generator,
        train_epoch: Callable[[np.random.Generator, int], dict], validate: Callable[[], Validation],
        checkpoint: Callable[[dict], dict], desc: str = "train", progress: bool = True) -> tuple[list[dict], dict]:
    """The epoch loop: train_epoch(rng, epoch) -> train_* columns; validate(); checkpoint(metrics) -> the
    task's checkpoint dict (make_checkpoint). Resumes from `state` (a last.pt); stops early after
    cfg.train.patience epochs without a better score. Returns (history, best)."""
    from tqdm import tqdm

    history, best, start_epoch, stale = [], None, 0, 0
    if state is not None:
        history, best, start_epoch, stale, rng = restore(state, head, optimizer, scheduler, cfg)
    bar = tqdm(range(start_epoch, cfg.train.epochs), desc=desc, unit="epoch", disable=not progress,
               dynamic_ncols=True, initial=start_epoch, total=cfg.train.epochs)
    for epoch in bar:
        te = time.time()
        train_cols = train_epoch(rng, epoch)
        scheduler.step()
        v = validate()
        row = dict(epoch=epoch + 1, **{k: round(x, 5) for k, x in train_cols.items()}, val_loss=round(v.loss, 5),
                   **{k: round(x, 5) for k, x in v.columns.items()}, lr=optimizer.param_groups[0]["lr"],
                   seconds=round(time.time() - te, 3))
        history.append(row)
        ckpt = checkpoint(dict(v.metrics, val_loss=v.loss, epoch=epoch + 1))
        ckpt.update(epoch=epoch, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
        best, stale = end_epoch(out, ckpt, v.score, v.report, v.loss, history, best, stale)
        bar.set_postfix(loss=f"{train_cols['train_loss']:.3f}", **{k: f"{x:.3f}" for k, x in v.postfix.items()})
        log.info("epoch %d: %s", epoch + 1, row)
        if cfg.train.patience and stale >= cfg.train.patience:
            log.info("early stop: no better validation score for %d epochs", stale)
            break
    return history, best


def refit(cfg: Config, out: Path, build: Callable[[], torch.nn.Module], train_epoch: Callable, best: dict,
          progress: bool, **record) -> None:
    """Validation has picked the epoch count (best["epoch"]): a fresh head (build(), after the run's seed is set
    again) trains for that many epochs (schedule compressed to them) with train_epoch(head, optimizer, cfg, rng,
    epoch) on the training and validation data, and becomes best.pt's head; record (e.g. clips=N) goes into its
    "refit" entry. With train.ensemble = n > 1, n heads train so, from seeds seed, seed + 1, ... (the first is
    the one head of ensemble = 1), and best.pt holds them as one EnsembleHead. The validation figures in
    metrics.json stay those of the selection run."""
    import copy

    from tqdm import tqdm

    from pipeline.models.checkpoint import load_checkpoint
    from pipeline.models.heads import EnsembleHead

    rcfg = copy.deepcopy(cfg)
    rcfg.train.epochs = best["epoch"]
    rcfg.train.warmup_epochs = min(cfg.train.warmup_epochs, max(0, best["epoch"] - 1))
    n = cfg.train.ensemble
    members = []
    for i in range(n):
        rng = seed_everything(cfg.train.seed + i)
        head = build()
        opt, sched = optimizer_for(rcfg, [{"params": head.parameters(), "lr": cfg.train.lr}])
        for epoch in tqdm(range(rcfg.train.epochs), desc="refit" if n == 1 else f"refit {i + 1}/{n}", unit="epoch",
                          disable=not progress, dynamic_ncols=True):
            train_epoch(head, opt, rcfg, rng, epoch)
            sched.step()
        members.append(head.eval())
    head = members[0] if n == 1 else EnsembleHead(members)
    ckpt = load_checkpoint(out / "best.pt")
    ckpt.update(head_state=head.state_dict(), refit=dict(epochs=rcfg.train.epochs, heads=n, **record))
    atomic_torch_save(ckpt, out / "best.pt")
    log.info("refit %s on %s for %d epochs -> best.pt", "one head" if n == 1 else f"{n} heads",
             ", ".join(f"{v} {k}" for k, v in record.items()), rcfg.train.epochs)
