"""Data-parallel training over processes: `vap train --nproc N` (which runs torchrun) or torchrun itself.

torchrun starts N copies of `vap train`, each with RANK, WORLD_SIZE and LOCAL_RANK in its environment;
`setup` joins them into one process group (gloo on CPU, nccl on GPU, one GPU per process). What changes
against one process, and why:

- Extraction: each process encodes its share of the videos into the shared feature cache, then all wait
  (a barrier: Dist.prefill_cache) and every process reads all the features (cached features are small).
- The epoch: a DistributedSampler gives each process its share of the clips, in batches of
  ceil(train.batch_size / N), so that one step still sees train.batch_size clips in all; DDP averages
  the gradients, so the step is the single-process step (up to the augmentation draws).
- Validation runs in every process on the same weights; rank 0's result is broadcast so that every
  process takes the same decisions (best epoch, early stop, refit length) and none waits for the others
  forever.
- Only rank 0 writes the run directory (the others run the same code into a scratch folder that is
  removed at the end); resuming reads last.pt in every process.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch

from pipeline.errors import ClusterError
from pipeline.models.cache import extract_versions, versions

# a barrier waits for the slowest process's share of the extraction: generous, but not forever
BARRIER_TIMEOUT = timedelta(hours=4)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def broadcast(self, obj):
        """Rank 0's obj in every process (any picklable object)."""
        if not self.enabled:
            return obj
        box = [obj if self.main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, *values: float) -> list[float]:
        """The mean of each value over the processes (the epoch's training loss and accuracy of all shares)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return (t / self.world).tolist()

    def shard(self, items: list) -> list:
        """This process's share of items (every world-th, from its rank)."""
        return items[self.rank::self.world] if self.enabled else items

    def equal_shard(self, items) -> list:
        """This process's share of items padded by wrapping around to a multiple of the processes, as
        DistributedSampler pads: every process gets as many, so their steps line up."""
        per = math.ceil(len(items) / self.world)
        return self.shard([items[i % len(items)] for i in range(per * self.world)])

    def prefill_cache(self, jobs: list[tuple], encoder, cfg, cache) -> None:
        """Each process encodes its share of the videos of jobs ([(samples, with their mirrored frames, how
        many rewritten copies)]: data.samples.Sample, train.copies) into the shared cache, then all wait until
        every share is there (each then reads all of it; a clip's copies are written by the process that owns
        the clip, so no two write one file). A per-person sample's video goes to one process with all its
        people, rendered in one decode (models/person_cache.py). Nothing in one process: the task's own
        extraction does it all."""
        if not self.enabled:
            return
        from pipeline.data.copies import copies_root, write_copies
        from pipeline.models.person_cache import extract_people_versions

        kw = dict(views=cfg.views, detector=cfg.detector)
        for items, flip, copies in jobs:
            paths = [s.path for s in items if s.person is None]
            people = [s for s in items if s.person is not None]
            if paths:
                mine = self.shard(paths)
                if copies:
                    made = write_copies(mine, copies, copies_root(cfg), cfg.video.decoder)
                    mine = mine + [c for cs in made.values() for c in cs]
                extract_versions(versions(mine, flip), encoder, cfg.video, cache, progress=False, **kw)  # one decode
            if people:
                mine = set(self.shard(sorted({s.path for s in people})))
                share = [s for s in people if s.path in mine]
                extract_people_versions(versions(share, flip), encoder, cfg.video, cache, progress=False, **kw)
        self.barrier()

    def batch_size(self, batch_size: int) -> int:
        """Per-process batch of a global batch_size."""
        return max(1, math.ceil(batch_size / self.world))

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """module in DistributedDataParallel (gradients averaged across the processes at backward).
        find_unused_parameters: a head's outputs that a task's loss does not use (the per-step
        classifier with train.step_loss_weight=0) get no gradient, which DDP must be told to expect."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, find_unused_parameters=True)

    def epoch_order(self, n: int, epoch: int, seed: int, sampler_w: np.ndarray | None) -> np.ndarray:
        """This process's clip indices for an epoch: a DistributedSampler over the n clips (every process
        the same count, so the steps line up), or with train.class_balance=sampler the same weighted draw
        in every process (seeded by seed and epoch), split the same way."""
        if sampler_w is not None:
            g = np.random.default_rng([seed, epoch])
            return np.array(self.equal_shard(list(g.choice(n, size=n, replace=True, p=sampler_w))), np.int64)
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64)


def from_env() -> Dist:
    """The process's place in a torchrun launch (RANK, WORLD_SIZE, LOCAL_RANK); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: str = "auto") -> Dist:
    """Join the process group of a torchrun launch (a no-op in one process): nccl with one GPU per
    process (cuda:LOCAL_RANK) when training on CUDA, else gloo; CPU threads split between the
    processes of this machine."""
    d = from_env()
    if not d.enabled or torch.distributed.is_initialized():
        return d
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(d.local_rank)  # "cuda" means this process's GPU from here on
    local = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    try:
        torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)
    except (RuntimeError, ValueError) as e:
        raise ClusterError(f"cannot join the training processes (rank {d.rank} of {d.world}): "
                           f"{str(e).splitlines()[0]}") from None
    return d


def cleanup(d: Dist) -> None:
    if d.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
