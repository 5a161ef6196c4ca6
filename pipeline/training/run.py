"""Training entry point (`vap train`): the run directory, its log, resuming, and the task that trains."""
from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import TrainError
from pipeline.models.checkpoint import config_of, load_checkpoint
from pipeline.training import classify, next_event
from pipeline.training.loop import setup_logging


def main(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train a head (or backbone + head) on cfg.data.train into the run directory `out`; returns the
    metrics dict. train.task=next_event trains on segment annotations (next_event.py), else on
    trimmed clips (classify.py). resume=True continues from out/last.pt."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = None
    if resume:
        if not (out / "last.pt").is_file():
            raise TrainError(f"{out / 'last.pt'}: nothing to resume from")
        state = load_checkpoint(out / "last.pt")
    handler = setup_logging(out)
    try:
        task = next_event if cfg.train.task == "next_event" else classify
        return task.run(cfg, out, state, progress)
    finally:
        logging.getLogger("vap").removeHandler(handler)
        handler.close()


def config_for_resume(out: str | Path, overrides=()) -> Config:
    """The run's own saved config, with overrides (e.g. train.epochs=100) on top."""
    return config_of(load_checkpoint(Path(out) / "last.pt"), overrides)
