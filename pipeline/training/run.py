"""Training entry point (`vap train`): the run directory, its log, resuming, and the task that trains."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch

from pipeline.config import Config
from pipeline.errors import TrainError
from pipeline.models.checkpoint import config_of, load_checkpoint
from pipeline.training import classify, distributed, next_event
from pipeline.training.loop import setup_logging


def main(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train a head (or backbone + head) on cfg.data.train into the run directory `out`; returns the
    metrics dict. train.task=next_event trains on segment annotations (next_event.py), else on
    trimmed clips (classify.py). resume=True continues from out/last.pt.

    Under torchrun (WORLD_SIZE > 1) every process calls this: they join one process group and train
    with DistributedDataParallel (distributed.py); rank 0 writes `out`, the others the same files
    into a scratch folder removed at the end, and rank 0's metrics are returned everywhere."""
    out = Path(out)
    dist = distributed.setup(cfg.train.device)
    try:
        state = None
        if resume:
            if not (out / "last.pt").is_file():
                raise TrainError(f"{out / 'last.pt'}: nothing to resume from")
            state = load_checkpoint(out / "last.pt")  # every process resumes from the same epoch
        if not dist.main:
            scratch = Path(tempfile.mkdtemp(prefix=f"vap-train-rank{dist.rank}-"))
            if state is not None and (out / "best.pt").is_file():  # the refit starts from the run's best.pt
                shutil.copy(out / "best.pt", scratch / "best.pt")
            try:
                metrics = _run(cfg, scratch, state, False, dist)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return dict(metrics, run_dir=str(out), checkpoint=str(out / "best.pt"))
        out.mkdir(parents=True, exist_ok=True)
        handler = setup_logging(out)
        try:
            if dist.enabled:
                logging.getLogger("vap.train").info("distributed: %d processes (%s)", dist.world,
                                                    torch.distributed.get_backend())
            return _run(cfg, out, state, progress, dist)
        finally:
            logging.getLogger("vap").removeHandler(handler)
            handler.close()
    finally:
        distributed.cleanup(dist)


def _run(cfg: Config, out: Path, state: dict | None, progress: bool, dist: distributed.Dist) -> dict:
    task = next_event if cfg.train.task == "next_event" else classify
    return task.run(cfg, out, state, progress, dist)


def config_for_resume(out: str | Path, overrides=()) -> Config:
    """The run's own saved config, with overrides (e.g. train.epochs=100) on top."""
    return config_of(load_checkpoint(Path(out) / "last.pt"), overrides)
