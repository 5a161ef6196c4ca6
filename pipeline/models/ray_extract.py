"""`vap extract --engine ray`: the feature cache filled by a Ray Data actor pool.

The driver lists the videos whose entries are missing (cache.plan_extract, as the local engine does);
each `ExtractWorker` builds the backbone once and runs cache.extract_versions on its videos (a video's
views as they are and mirrored in one decode), writing into the same cache folder. Entries are written
to a temporary name and renamed (io.atomic_write_bytes), so two workers - or two runs - that race on one
entry leave one complete file, never a torn one; a rerun encodes only what is still missing. On a cluster
the cache folder must be one shared filesystem (NFS, a mounted bucket) at the same path on every node,
and vap installed on each.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from pipeline.cluster import pool_rows, pool_size, ray_session, stopped, worker_threads
from pipeline.models.cache import ExtractResult, FeatureCache, extract_versions, plan_extract


class ExtractWorker:
    """One actor of the pool: the backbone built once, then cache.extract_versions on each batch of videos."""

    def __init__(self, cfg, threads: int):
        from pipeline.models.runtime import backbone_from_config

        worker_threads(threads)  # before the backbone
        self.cfg = cfg
        self.backbone = backbone_from_config(cfg.backbone)
        self.cache = FeatureCache.from_config(cfg)

    def __call__(self, batch: dict) -> dict:
        """A video per input row (path, plain, mirrored: which of its versions to encode, in one decode) -> a row
        per (path, flip) encoded."""
        cols: dict[str, list] = dict(path=[], flip=[], error=[], frames=[], extracted=[], reused=[])
        for p, plain, mirrored in zip(batch["path"], batch["plain"], batch["mirrored"]):
            flips = [f for f, wanted in ((False, plain), (True, mirrored)) if wanted]
            results = extract_versions({f: [str(p)] for f in flips}, self.backbone, self.cfg.video, self.cache,
                                       progress=False, views=self.cfg.views, detector=self.cfg.detector)
            for flip, res in results.items():
                cols["path"].append(str(p))
                cols["flip"].append(flip)
                cols["error"].append(next(iter(res.failures.values()), ""))
                cols["frames"].append(res.frames)
                cols["extracted"].append(res.extracted)
                cols["reused"].append(res.reused)  # written meanwhile by another worker or another run
        return {k: np.array(v, dtype=object if k in ("path", "error") else None) for k, v in cols.items()}


def extract_ray(paths: list[str], cfg, flips=(False,), address: str | None = None, workers: int = 0,
                cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                progress: bool = True) -> tuple[dict[bool, ExtractResult], int, str]:
    """Fill cfg's feature cache for `paths` (and their mirrored frames when True is in flips) on a Ray
    pool: ({flip: the result as cache.extract gives it}, workers, the backbone's fingerprint). Nothing is
    scheduled when every entry exists."""
    from tqdm import tqdm

    from pipeline.models.runtime import backbone_from_config

    cfg = copy.deepcopy(cfg)
    cfg.cache.dir = str(Path(cfg.cache.dir).expanduser().resolve())  # the workers' cwd is not ours
    paths = [str(Path(p).resolve()) for p in paths]
    cache = FeatureCache.from_config(cfg)
    backbone = backbone_from_config(cfg.backbone)  # the cache keys: the backbone's fingerprint
    if gpus_per_worker <= 0:  # CPU workers take the runtime chosen here rather than each timing the paths
        cfg.backbone.runtime = getattr(backbone, "runtime", "torch")
        cfg.backbone.precision = getattr(backbone, "precision", "fp32")
        cfg.backbone.channels_last = bool(getattr(backbone, "channels_last", False))
    results: dict[bool, ExtractResult] = {}
    todo: dict[str, set] = {}  # video -> the versions (flip) it lacks: one item, one decode for both
    for flip in flips:
        results[flip], missing = plan_extract(paths, backbone, cfg.video, cache, cfg.views, flip, cfg.detector)
        for p in missing:
            todo.setdefault(p, set()).add(flip)
    items = [dict(path=p, plain=False in fs, mirrored=True in fs) for p, fs in todo.items()]
    entries = sum(len(fs) for fs in todo.values())  # rows to come: one per (video, version)
    n = 0
    if items:
        with ray_session(address) as ray:
            n = pool_size(ray, workers, cpus_per_worker, gpus_per_worker)
            rows = pool_rows(ray, items, ExtractWorker, n, cpus_per_worker, gpus_per_worker, cfg=cfg,
                             threads=max(1, int(cpus_per_worker)))
            bar = tqdm(total=entries, desc=f"extract (ray, {n} workers)", unit="video", disable=not progress,
                       dynamic_ncols=True)
            seen: set[tuple[str, bool]] = set()
            t0 = time.perf_counter()
            try:
                for r in rows:
                    key = (str(r["path"]), bool(r["flip"]))
                    if key in seen:  # the same video again after a retried task
                        continue
                    seen.add(key)
                    res = results[key[1]]
                    if r["error"]:
                        res.failures[key[0]] = str(r["error"])
                        res.keys.pop(key[0], None)
                    else:
                        res.extracted += int(r["extracted"])
                        res.reused += int(r["reused"])
                        res.frames += int(r["frames"])
                    bar.update(1)
                    bar.set_postfix(frames=res.frames, entries_per_s=f"{len(seen) / (time.perf_counter() - t0):.2f}")
            except ray.exceptions.RayError as e:
                raise stopped(e, len(seen), entries, "entries", cache.root) from None
            finally:
                bar.close()
    return results, n, backbone.fingerprint
