"""Next-event training (train.task=next_event): untrimmed videos with segment annotations.

Reads top to bottom like classify.py (the epoch loop is loop.fit, shared): data (annotations ->
cached features -> per-step targets), windows, loss, evaluate, run. A causal LSTM reads random
windows of train.seq_len steps cut from the long videos' cached features and learns, at every step,
the current action, the next action (the label of the segment after the current one) and the
seconds until the current segment ends.
Evaluation runs the head over each whole video from its first frame, as streaming does.
Run directory: as for classification (best.pt, last.pt, metrics.json, config.yaml, split.csv,
log.csv, train.log, curves.png, confusion_val.png, failures.txt).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import Config
from pipeline.data import segments as seg
from pipeline.data.datasets import DataError, groups_of, hold_out
from pipeline.data.tracks import load_timelines
from pipeline.io import atomic_write_csv
from pipeline.models.cache import FeatureCache, extract_versions
from pipeline.models.checkpoint import make_checkpoint
from pipeline.models.heads import build_head, pad_batch
from pipeline.models.person_cache import extract_people_versions
from pipeline.models.runtime import backbone_from_config
from pipeline.training import loop
from pipeline.training.distributed import Dist
from pipeline.training.loop import Validation, fit, optimizer_for, start_run, write_failures, write_metrics
from pipeline.training.metrics import next_event_report, plot_confusion, plot_curves

log = logging.getLogger("vap.train")


# ----------------------------------------------------------------------------- data

@dataclass
class Sequence:
    path: str
    feats: torch.Tensor        # (T, D) cached features
    times: np.ndarray          # (T,) seconds
    cur: torch.Tensor          # (T,) current-action index, -1 = undefined
    nxt: torch.Tensor          # (T,) next-action index, -1 = undefined
    tte: torch.Tensor          # (T,) seconds to the end of the current segment, NaN = undefined
    boundaries: list           # [(start s, label index)] segment starts to anticipate
    feats_flip: torch.Tensor | None = None  # (T, D) features of the mirrored frames (train.flip_aug)

    def __len__(self):
        return len(self.feats)


def split_videos(ann: seg.Annotations, cfg: Config) -> tuple[list, list]:
    """Validation videos: by whole groups (data.group_by on file names) or a seeded share of videos."""
    vids = sorted(ann.videos, key=lambda v: v.path)
    keys = groups_of([v.path for v in vids], cfg.data.group_by, ann.source) if cfg.data.group_by else \
        [v.path for v in vids]
    if len(set(keys)) < 2:
        raise DataError(f"{ann.source}: need at least 2 videos (or groups) to carve a validation split; "
                        f"pass --val")
    held = hold_out(keys, cfg.data.val_fraction, cfg.data.split_seed)
    return [v for v, k in zip(vids, keys) if k not in held], [v for v, k in zip(vids, keys) if k in held]


def encode_videos(videos: list, backbone, cfg: Config, cache: FeatureCache, progress: bool,
                  source: str, flip: bool = False) -> tuple[dict, dict]:
    """Cached features of every video: {video key: (feats (T,D), times (T,))}, failures {key: error}.
    A person's timeline (per-person rows: AnnotatedVideo.person) gets the features of its person's views
    (models/person_cache.py). A segment that runs past a video's end is an error naming its row.
    flip=True: the features of the mirrored frames (train.flip_aug)."""
    feats, failures = encode_videos_versions({flip: videos}, backbone, cfg, cache, progress, source)
    return feats[flip], failures


def encode_videos_versions(wanted: dict[bool, list], backbone, cfg: Config, cache: FeatureCache, progress: bool,
                           source: str) -> tuple[dict[bool, dict], dict]:
    """encode_videos for videos as they are and mirrored at once: wanted {flip: videos} -> ({flip: {video key:
    (feats, times)}}, failures {key: error}); a video in both is decoded once (cache.extract_versions,
    person_cache.extract_people_versions)."""
    kw = dict(views=cfg.views, detector=cfg.detector)
    res = extract_versions({f: [v.path for v in vs if v.person is None] for f, vs in wanted.items()}, backbone,
                           cfg.video, cache, progress, **kw)
    people = {f: [v.sample for v in vs if v.person is not None] for f, vs in wanted.items()}
    if any(people.values()):
        for f, pres in extract_people_versions(people, backbone, cfg.video, cache, progress, **kw).items():
            res[f].keys.update(pres.keys)
            res[f].failures.update(pres.failures)
    feats: dict[bool, dict] = {f: {} for f in wanted}
    for f, vs in wanted.items():
        for v in vs:
            if v.key not in res[f].keys:
                continue
            x, ts = cache.load_streams(res[f].keys[v.key])
            step = 1.0 / cfg.video.fps if cfg.video.sampling == "fps" else (ts[-1] - ts[0]) / max(len(ts) - 1, 1)
            seg.check_duration(v, float(ts[-1] + step), source)
            feats[f][v.key] = (x, ts)
    return feats, {k: e for r in res.values() for k, e in r.failures.items()}


def make_classes(videos: list, feats: dict, background: str) -> list[str]:
    """Sorted action labels, then the background label if some sampled step falls in a gap."""
    labels = sorted({g.label for v in videos for g in v.segments})
    if background in labels:
        raise DataError(f"'{background}' is both an annotated label and data.background; rename one")
    gaps = background and any(seg.has_gap(v, feats[v.key][1]) for v in videos if v.key in feats)
    return labels + ([background] if gaps else [])


def build_sequences(videos: list, feats: dict, classes: list[str], background: str,
                    source: str = "", feats_flip: dict | None = None) -> list[Sequence]:
    """feats_flip: {video key: (feats, times)} of the mirrored frames, where flip augmentation reads them."""
    index = {c: i for i, c in enumerate(classes)}
    bg = background if background in index else ""
    out = []
    for v in videos:
        if v.key not in feats:
            continue
        unknown = sorted({g.label for g in v.segments} - set(index))
        if unknown:
            raise DataError(f"{source}: label(s) {unknown} of {Path(v.path).name} are not classes of this model "
                            f"{classes}")
        f, ts = feats[v.key]
        cur, nxt, tte = seg.step_targets(v, ts, index, bg)
        flipped = (feats_flip or {}).get(v.key)
        out.append(Sequence(v.key, torch.from_numpy(f), ts, torch.from_numpy(cur), torch.from_numpy(nxt),
                            torch.from_numpy(tte), seg.boundaries(v, index),
                            torch.from_numpy(flipped[0]) if flipped is not None and len(flipped[0]) == len(f)
                            else None))
    return out


# ----------------------------------------------------------------------------- windows and loss

def sample_windows(seqs: list[Sequence], n: int, seq_len: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """n (sequence, start) pairs; sequences drawn in proportion to their length."""
    lengths = np.array([len(s) for s in seqs], np.float64)
    which = rng.choice(len(seqs), size=n, p=lengths / lengths.sum())
    return [(int(i), int(rng.integers(0, max(1, len(seqs[i]) - seq_len + 1)))) for i in which]


def batch_of(pieces: list[tuple[Sequence, slice, bool]], device):
    """Features (B,T,D) (of the mirrored frames where a piece's flag says so), lengths (B,), targets
    cur/nxt (B,T) long (-1 pads), tte (B,T) (NaN pads). A mirrored window keeps its targets: flipping is
    asked for (train.flip_aug=true) where no label says a direction a mirror would swap."""
    x, lengths = pad_batch([(s.feats_flip if f else s.feats)[sl] for s, sl, f in pieces])
    cur = pad_batch([s.cur[sl] for s, sl, _ in pieces], -1)[0]
    nxt = pad_batch([s.nxt[sl] for s, sl, _ in pieces], -1)[0]
    tte = pad_batch([s.tte[sl] for s, sl, _ in pieces], float("nan"))[0]
    return x.to(device), lengths.to(device), cur.to(device), nxt.to(device), tte.to(device)


def next_loss(out, cur, nxt, tte, cfg: Config) -> torch.Tensor:
    """Current-action CE + w * next-action CE + w_t * smooth L1 of the time to the segment's end,
    each over the steps where its target is defined."""
    ls = cfg.train.label_smoothing
    m = cur >= 0
    loss = F.cross_entropy(out.steps[m], cur[m], label_smoothing=ls) if m.any() else out.steps.sum() * 0
    m = nxt >= 0
    if m.any() and cfg.train.next_loss_weight > 0:
        loss = loss + cfg.train.next_loss_weight * F.cross_entropy(out.next[m], nxt[m], label_smoothing=ls)
    if out.time is not None and cfg.train.time_loss_weight > 0:
        m = torch.isfinite(tte)
        if m.any():
            loss = loss + cfg.train.time_loss_weight * F.smooth_l1_loss(out.time[m], tte[m])
    return loss


def train_one_epoch(head, seqs, optimizer, cfg: Config, rng, device, dist: Dist | None = None,
                    model=None) -> tuple[float, float, float]:
    """Mean loss, current-action and next-action accuracy over the epoch's windows. Under torchrun
    (dist) every process draws the same windows (same seed) and trains on its share of them, with
    model = the head in DistributedDataParallel."""
    model = model if model is not None else head
    model.train()
    total_steps = sum(len(s) for s in seqs)
    n = cfg.train.windows_per_epoch or max(cfg.train.batch_size, math.ceil(2 * total_steps / cfg.train.seq_len))
    windows = sample_windows(seqs, n, cfg.train.seq_len, rng)
    if cfg.train.flip_aug == "true":  # half the windows read the mirrored frames' features (drawn before
        # sharding, so every process under torchrun agrees); a run without flips draws nothing more
        windows = [(i, st, bool(f) and seqs[i].feats_flip is not None)
                   for (i, st), f in zip(windows, rng.random(len(windows)) < 0.5)]
    else:
        windows = [(i, st, False) for i, st in windows]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    tot = ok_c = n_c = ok_n = n_n = 0.0
    bs = cfg.train.batch_size
    if dist is not None and dist.enabled:
        windows = dist.equal_shard(windows)
        bs = dist.batch_size(bs)
    for b in range(0, len(windows), bs):
        pieces = [(seqs[i], slice(st, st + cfg.train.seq_len), f) for i, st, f in windows[b:b + bs]]
        x, lengths, cur, nxt, tte = batch_of(pieces, device)
        out = model(x, lengths)
        loss = next_loss(out, cur, nxt, tte, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        tot += float(loss.detach()) * len(pieces)
        m = cur >= 0
        ok_c += float((out.steps.argmax(-1)[m] == cur[m]).sum())
        n_c += float(m.sum())
        m = nxt >= 0
        ok_n += float((out.next.argmax(-1)[m] == nxt[m]).sum())
        n_n += float(m.sum())
    return tot / len(windows), ok_c / max(n_c, 1), ok_n / max(n_n, 1)


@torch.no_grad()
def evaluate(head, seqs: list[Sequence], cfg: Config, classes: list[str], device,
             batch_size: int = 16) -> tuple[dict, float]:
    """next_event_report over whole videos (each read from its first step) and the mean loss."""
    head.eval()
    rows, losses = [], []
    for b in range(0, len(seqs), batch_size):
        chunk = seqs[b:b + batch_size]
        x, lengths, cur, nxt, tte = batch_of([(s, slice(None), False) for s in chunk], device)
        out = head(x, lengths)
        losses.append(float(next_loss(out, cur, nxt, tte, cfg)) * len(chunk))
        for i, s in enumerate(chunk):
            T = len(s)
            rows.append(dict(times=s.times, cur_logits=out.steps[i, :T].float().cpu().numpy(),
                             next_logits=out.next[i, :T].float().cpu().numpy(), cur=s.cur.numpy(),
                             nxt=s.nxt.numpy(), boundaries=s.boundaries, tte=s.tte.numpy(),
                             time_pred=None if out.time is None else out.time[i, :T].float().cpu().numpy()))
    return next_event_report(rows, classes), sum(losses) / max(len(seqs), 1)


# ----------------------------------------------------------------------------- run

def load_annotation_splits(cfg: Config) -> tuple[seg.Annotations, list, list]:
    ann = load_timelines(cfg.data.train)
    splits = {v.split for v in ann.videos}
    if cfg.data.val:
        val = load_timelines(cfg.data.val).videos
        train = ann.videos
    elif splits & {"val", "test"}:
        train = [v for v in ann.videos if v.split in ("train", "")]
        held = "val" if "val" in splits else "test"
        val = [v for v in ann.videos if v.split == held]
    else:
        if cfg.data.val_fraction <= 0:
            raise DataError("no validation data: pass --val, or set data.val_fraction > 0")
        train, val = split_videos(ann, cfg)
    return ann, train, val


def run(cfg: Config, out: Path, state: dict | None, progress: bool, dist: Dist | None = None) -> dict:
    """dist: this process's place under torchrun (distributed.py); None in one process."""
    dist = dist or Dist()
    t0 = time.time()
    rng, device = start_run(cfg, out)
    ann, train_v, val_v = load_annotation_splits(cfg)
    people = any(v.person is not None for v in train_v + val_v)  # per-person timelines: which person, too
    atomic_write_csv(out / "split.csv", ["video", "split"] + (["track"] if people else []),
                     [[v.path, sp] + ([v.person.track] if people else [])
                      for sp, vs in (("train", train_v), ("val", val_v)) for v in vs])
    backbone = backbone_from_config(cfg.backbone)
    cache = FeatureCache.from_config(cfg)
    # flip augmentation (train.flip_aug: loop.wants_flip); the validation videos are read mirrored too when
    # refit trains on them
    flip_train = loop.resolve_flip(cfg, sorted({g.label for v in train_v + val_v for g in v.segments}), out)
    flipped = train_v + (val_v if cfg.train.refit else []) if flip_train else []
    dist.prefill_cache([([v.sample for v in train_v], flip_train, 0),  # no rewritten copies (train.copies)
                        ([v.sample for v in val_v], flip_train and cfg.train.refit, 0)], backbone, cfg, cache)
    # one decode of each video for its views as they are and mirrored
    both, failures = encode_videos_versions({False: train_v + val_v, True: flipped} if flipped else
                                            {False: train_v + val_v}, backbone, cfg, cache, progress, ann.source)
    feats, feats_flip = both[False], both.get(True, {})
    write_failures(out, failures)
    classes = state["classes"] if state else make_classes(train_v + val_v, feats, cfg.data.background)
    train_s = build_sequences(train_v, feats, classes, cfg.data.background, ann.source, feats_flip)
    val_s = build_sequences(val_v, feats, classes, cfg.data.background, ann.source, feats_flip)
    if not train_s or not val_s:
        raise DataError(f"{ann.source}: no readable {'training' if not train_s else 'validation'} video "
                        f"({len(failures)} failed)")
    log.info("next_event: classes (%d) %s; train %d videos (%d steps), val %d videos", len(classes), classes,
             len(train_s), sum(len(s) for s in train_s), len(val_s))

    feature_dim = len(cfg.views.streams) * backbone.dim  # streams side by side (views.py)
    head = build_head(cfg.head, feature_dim, len(classes), next_event=True,
                      groups=len(cfg.views.streams)).to(device)
    optimizer, scheduler = optimizer_for(cfg, [{"params": head.parameters(), "lr": cfg.train.lr}])

    model = dist.wrap(head)  # DDP under torchrun: gradients averaged at backward

    def train_epoch(rng, epoch):
        loss, cur, nxt = dist.mean(*train_one_epoch(head, train_s, optimizer, cfg, rng, device, dist, model))
        return dict(train_loss=loss, train_current_top1=cur, train_next_top1=nxt)

    def validate() -> Validation:
        rep, val_loss = evaluate(head, val_s, cfg, classes, device)
        at1 = rep["anticipation"].get("1s", {}).get("top1", float("nan"))
        cols = dict(val_current_top1=rep["current_top1"], val_next_top1=rep["next_top1"], val_next_top1_at_1s=at1)
        return dist.broadcast(Validation(rep, val_loss, cols,
                          score=(rep["next_top1"], rep["current_top1"], -val_loss),  # next-action top-1, then current
                          metrics=dict(val_next_top1=rep["next_top1"], val_current_top1=rep["current_top1"],
                                       val_next_top1_at_1s=at1),
                          postfix=dict(next=rep["next_top1"], cur=rep["current_top1"])))

    def checkpoint(metrics):
        return make_checkpoint("next_event", cfg, classes, feature_dim, head, backbone.fingerprint, None, metrics)

    history, best = fit(cfg, out, state, head, optimizer, scheduler, rng, train_epoch, validate, checkpoint,
                        "train next_event", progress)
    if cfg.train.refit:
        refit(cfg, out, train_s + val_s, len(classes), feature_dim, best, device, progress, dist)
    plot_curves(history, out / "curves.png", ("train_current_top1", "train_next_top1", "val_current_top1",
                                              "val_next_top1", "val_next_top1_at_1s"))
    rep = best["report"]
    plot_confusion(rep["current_confusion_matrix"], classes, out / "confusion_val.png",
                   title=f"current action, validation, epoch {best['epoch']}, per-step top1 {rep['current_top1']:.3f}")
    return write_metrics(out, dict(
        task="next_event", best_epoch=best["epoch"], epochs_run=len(history),
        **{f"val_{k}": v for k, v in rep.items() if k not in ("classes", "current_confusion_matrix")},
        val_loss=best["val_loss"], classes=classes, train_videos=len(train_s), val_videos=len(val_s),
        refit=bool(cfg.train.refit), heads=cfg.train.ensemble if cfg.train.refit else 1,
        failed_videos=len(failures), processes=dist.world, seconds=round(time.time() - t0, 2), run_dir=str(out),
        checkpoint=str(out / "best.pt")))


def refit(cfg: Config, out: Path, seqs: list[Sequence], num_classes: int, feature_dim: int, best: dict, device,
          progress: bool = False, dist: Dist | None = None) -> None:
    """As classify.refit: a fresh head trains on the training and the validation videos for the epoch count
    validation picked and becomes best.pt (loop.refit)."""
    dist = dist or Dist()
    model = {}  # the head in DistributedDataParallel under torchrun, once built

    def build():
        head = build_head(cfg.head, feature_dim, num_classes, next_event=True, groups=len(cfg.views.streams))
        model["head"] = dist.wrap(head.to(device))
        return head

    def train_epoch(head, opt, rcfg, rng, epoch):
        train_one_epoch(head, seqs, opt, rcfg, rng, device, dist, model["head"])

    loop.refit(cfg, out, build, train_epoch, best, progress, videos=len(seqs))
