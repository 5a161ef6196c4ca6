"""`vap predict --engine ray`: the batch of batch.py on a Ray Data actor pool.

The driver does what the local engine does before any work - expand the sources, hash each file, skip
what --out already holds (batch.plan) - then Ray Data reads the list of videos still to do and a pool of
`PredictWorker` actors (each loads the checkpoint once) runs batch.predict_rows on them, the very code of
the local engine, so the rows are the same. The driver alone writes --out, one durable row at a time, as
rows stream back in completion order: a killed driver loses at most the rows in flight and a rerun
resumes. A killed worker is restarted by Ray and its video tried again (cluster.pool_rows); a row that
arrives twice after such a retry is written once.

On a cluster every node needs vap installed (the same version) and the videos and the checkpoint at the
same paths (a shared filesystem); only the driver writes --out.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.cluster import pool_rows, pool_size, ray_session, stopped, worker_threads
from pipeline.inference.batch import BatchSummary, RowWriter, RunProgress, expand_sources, plan, predict_rows
from pipeline.models.checkpoint import config_of, load_checkpoint


class PredictWorker:
    """One actor of the pool: a Predictor built once, then predict_rows over each batch of videos.
    Returns the rows as JSON strings (nested fields stay exactly as the local engine writes them)."""

    def __init__(self, checkpoint: str, device: str, window: float, stride: float, topk: int, overrides: list,
                 timeline: bool, render_dir: str | None, strict: bool, threads: int, per_person: bool = False):
        from pipeline.inference.predict import Predictor

        worker_threads(threads)  # before the backbone
        self.pred = Predictor.from_checkpoint(checkpoint, device, window=window, stride=stride, topk=topk,
                                              overrides=overrides, per_person=per_person)
        self.pred.topk = min(topk, len(self.pred.classes))
        self.timeline, self.render_dir, self.strict = timeline, render_dir, strict

    def __call__(self, batch: dict) -> dict:
        paths = [str(p) for p in batch["path"]]
        fingerprints = dict(zip(paths, (str(f) for f in batch["fingerprint"])))
        rows, frames = [], []
        for video_rows, n in predict_rows(self.pred, paths, fingerprints, self.timeline, self.render_dir,
                                          self.strict):
            rows.append(json.dumps(video_rows))
            frames.append(n)
        return {"row": np.array(rows, dtype=object), "frames": np.array(frames, dtype=np.int64)}


def run_batch_ray(checkpoint: str | Path, sources: list[str], out: str | Path, address: str | None = None,
                  workers: int = 0, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                  device: str = "auto", window: float = 2.0, stride: float = 0.5, topk: int = 5,
                  overrides=(), timeline: bool = False, render_dir: str | Path | None = None,
                  progress: bool = True, retry: bool = True, strict: bool = False,
                  per_person: bool = False) -> BatchSummary:
    """run_batch's job on Ray: same arguments (the checkpoint's path instead of a Predictor), same rows.
    address: a Ray cluster to join (None: $RAY_ADDRESS, else a local instance on this machine's CPUs);
    workers: actors in the pool (0: as many as the cluster's CPUs hold at cpus_per_worker each)."""
    checkpoint = str(Path(checkpoint).resolve())
    ckpt = load_checkpoint(checkpoint)  # a bad checkpoint is one clear error here, not one per worker
    cfg = config_of(ckpt)
    out = Path(out)
    paths = expand_sources(sources, tuple(cfg.data.extensions))
    topk = min(topk, len(ckpt["classes"]))
    summary = BatchSummary(videos=len(paths))
    todo, fingerprints = plan(paths, out, retry, summary)
    writer = RowWriter(out, topk, ckpt.get("kind") == "next_event", per_person)  # a CSV of other columns fails before Ray
    if not todo:
        writer.close()
        return summary
    try:
        with ray_session(address) as ray:  # a local instance finds this machine's GPUs itself
            n = pool_size(ray, workers, cpus_per_worker, gpus_per_worker)
            rows = pool_rows(
                ray, [dict(path=p, fingerprint=fingerprints[p]) for p in todo], PredictWorker, n, cpus_per_worker,
                gpus_per_worker, checkpoint=checkpoint, device=device, window=window, stride=stride, topk=topk,
                overrides=list(overrides), timeline=timeline,
                render_dir=None if render_dir is None else str(Path(render_dir).resolve()), strict=strict,
                threads=max(1, int(cpus_per_worker)), per_person=per_person)
            run = RunProgress(writer, summary, len(todo), progress, desc=f"predict (ray, {n} workers)")
            written: set[str] = set()
            try:
                for r in rows:
                    video_rows = json.loads(r["row"])  # the rows of one video
                    if video_rows[0]["path"] in written:  # the same video again after a retried task
                        continue
                    written.add(video_rows[0]["path"])
                    run.add(video_rows, int(r["frames"]))
            except ray.exceptions.RayError as e:
                raise stopped(e, len(written), len(todo), "videos", out) from None
            finally:
                run.close()
    finally:
        writer.close()  # also when Ray could not start (RunProgress closed it otherwise; closing twice is fine)
    summary.engine, summary.workers = "ray", n
    return summary

