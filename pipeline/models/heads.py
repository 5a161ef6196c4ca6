"""Temporal heads over per-frame features: LSTM, GRU and a mean-pool linear baseline (TSN-style), and an
ensemble of one of them trained from several seeds (EnsembleHead).

forward(x (B,T,D), lengths (B,)) -> HeadOutput(clip (B,C), steps (B,T,C)).
A causal head also has step(x_t (B,D), state) -> (HeadOutput(clip (B,C), steps (B,C)), state):
feeding a sequence one step at a time gives exactly the full pass (tests check it to 1e-5), which
is what streaming inference relies on. Clip logits come from the mean of the step states
(pool=mean) or the last valid one (pool=last); the running mean is part of the carried state.
A next-event RNN head (next_event=True, causal only) also reads, from the same step states, the
label of the segment that follows the current one and (time_head=True) the seconds until the
current segment ends: RULSTM's rolling LSTM reduced to one recurrent path.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class HeadOutput(NamedTuple):
    clip: torch.Tensor   # (B, C) logits for the whole (observed) clip
    steps: torch.Tensor  # (B, T, C) per-step logits, or (B, C) from step()
    next: torch.Tensor | None = None  # (B, T, C) next-event logits, or (B, C) (next_event heads)
    time: torch.Tensor | None = None  # (B, T) seconds until the current segment ends, or (B,)


class Dropout(nn.Module):
    """Inverted dropout drawn from torch.rand instead of bernoulli_: the same distribution, 2.4x
    faster on a CPU (bernoulli_ was 19% of a training epoch's time; bench/perf.py training)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True on valid steps."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


# ----------------------------------------------------------------------------- padding and test crops

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


def pad_batch(seqs: list[torch.Tensor], value=0) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, ...) -> (B, T_max, ...) padded with value, lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = seqs[0].new_full((len(seqs), int(lengths.max()), *seqs[0].shape[1:]), value)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


# ----------------------------------------------------------------------------- heads

class _InputBlock(nn.Module):
    """LayerNorm -> optional projection -> dropout. Normalising the frozen features matters: their
    scale differs wildly between backbones, and the LSTM's gates saturate on large inputs.
    groups > 1 (several views.streams side by side): each stream is normalised on its own, so a
    stream with large activations (the whole frame) cannot drown a quiet one (frame differences)."""

    def __init__(self, in_dim: int, norm: bool, proj_dim: int, dropout: float, groups: int = 1):
        super().__init__()
        if in_dim % groups:
            raise ValueError(f"feature size {in_dim} is not a multiple of the {groups} streams")
        self.groups = groups
        self.norm = nn.LayerNorm(in_dim // groups) if norm else nn.Identity()
        self.proj = nn.Sequential(nn.Linear(in_dim, proj_dim), nn.GELU()) if proj_dim > 0 else nn.Identity()
        self.drop = Dropout(dropout)
        self.out_dim = proj_dim if proj_dim > 0 else in_dim

    def forward(self, x):  # (..., D) with D = groups * per-stream size
        if self.groups > 1:
            x = self.norm(x.unflatten(-1, (self.groups, -1))).flatten(-2)
        else:
            x = self.norm(x)
        return self.drop(self.proj(x))


class RNNHead(nn.Module):
    """LSTM or GRU head. Unidirectional heads can stream with step()."""

    def __init__(self, in_dim: int, num_classes: int, rnn: str = "lstm", hidden_size: int = 256,
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.3,
                 input_dropout: float = 0.2, input_norm: bool = True, proj_dim: int = 256,
                 pool: str = "mean", next_event: bool = False, time_head: bool = False,
                 next_mode: str = "both", groups: int = 1, skip: bool = False):
        super().__init__()
        if next_event and bidirectional:
            raise ValueError("a next-event head must be causal: set head.bidirectional=false")
        self.inp = _InputBlock(in_dim, input_norm, proj_dim, input_dropout, groups)
        cls = nn.LSTM if rnn == "lstm" else nn.GRU
        self.rnn_type = rnn
        self.rnn = cls(self.inp.out_dim, hidden_size, num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        self.bidirectional = bidirectional
        self.pool = pool
        # skip: the read-outs see [state, input] - a residual path around the recurrence, so what a
        # single frame shows (a pose, a motion image) need not survive the LSTM's gates to be used
        self.skip = skip
        out = hidden_size * (2 if bidirectional else 1) + (self.inp.out_dim if skip else 0)
        self.readout_dim = out
        self.drop = Dropout(dropout)
        self.classifier = nn.Linear(out, num_classes)
        # next_mode: direct = a linear read-out of the state; transition = P(current | state) times a
        # learned transition matrix (a first-order grammar: it cannot memorise one video's order);
        # both = the transition term plus a direct correction that starts at zero
        self.next_mode = next_mode if next_event else ""
        self.next_classifier = nn.Linear(out, num_classes) if self.next_mode in ("direct", "both") else None
        if self.next_mode == "both":
            nn.init.zeros_(self.next_classifier.weight)
            nn.init.zeros_(self.next_classifier.bias)
        self.transition = nn.Parameter(torch.zeros(num_classes, num_classes)) if self.next_mode in (
            "transition", "both") else None
        # softplus keeps the predicted time >= 0
        self.time_regressor = nn.Sequential(nn.Linear(out, 1), nn.Softplus()) if next_event and time_head else None

    def _extras(self, hd: torch.Tensor, step_logits: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Next-event logits and time to the segment's end from the (dropped-out) step states
        hd (..., H) and the current-action logits of the same steps (..., C)."""
        nxt = None
        if self.transition is not None:  # log sum_a P(current=a) P(next | a)
            p = torch.softmax(step_logits, -1) @ torch.softmax(self.transition, -1)  # (..., C)
            nxt = torch.log(p.clamp_min(1e-8))
        if self.next_classifier is not None:
            nxt = self.next_classifier(hd) if nxt is None else nxt + self.next_classifier(hd)
        tte = self.time_regressor(hd).squeeze(-1) if self.time_regressor is not None else None
        return nxt, tte

    def transition_matrix(self) -> torch.Tensor | None:
        """(C, C) learned P(next = b | current = a) of a transition/both next-event head."""
        return None if self.transition is None else torch.softmax(self.transition.detach(), -1)

    @property
    def can_stream(self) -> bool:
        return not self.bidirectional

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> HeadOutput:
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
        z = self.inp(x)  # (B, T, P)
        if self.bidirectional and bool((lengths < T).any()):
            # the backward direction must start at each sequence's own end: pack
            packed = pack_padded_sequence(z, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = self.rnn(packed)
            h, _ = pad_packed_sequence(h, batch_first=True, total_length=T)
        else:
            # causal: padding after the end cannot change earlier outputs, so no packing is needed
            h, _ = self.rnn(z)  # (B, T, H)
        if self.skip:
            h = torch.cat([h, z], -1)  # (B, T, H + P)
        mask = length_mask(lengths, T)  # (B, T)
        hd = self.drop(h)  # one dropout mask for every read-out of the step states
        steps = self.classifier(hd)  # (B, T, C)
        if self.pool == "mean":
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)  # (B, H)
        else:
            last = (lengths - 1).clamp(min=0)
            pooled = h[torch.arange(B, device=x.device), last]  # (B, H)
            if self.bidirectional:  # backward direction's summary sits at step 0
                H = self.rnn.hidden_size
                # (with skip, the input part stays that of the last step)
                pooled = torch.cat([pooled[:, :H], h[:, 0, H:2 * H], pooled[:, 2 * H:]], -1)
        return HeadOutput(self.classifier(self.drop(pooled)), steps, *self._extras(hd, steps))

    def init_state(self, batch: int = 1, device=None):
        return None  # created lazily from the first input

    def step(self, x_t: torch.Tensor, state=None) -> tuple[HeadOutput, tuple]:
        """One causal step: x_t (B, D) -> logits of this step and of the clip so far, new state.

        state = (rnn_state, sum of step states (B,H), number of steps); None starts a sequence.
        """
        if not self.can_stream:
            raise RuntimeError("a bidirectional head cannot stream; train with head.bidirectional=false")
        z = self.inp(x_t).unsqueeze(1)  # (B, 1, P)
        rnn_state, h_sum, n = state if state is not None else (None, 0.0, 0)
        h, rnn_state = self.rnn(z, rnn_state)
        h = h[:, 0]  # (B, H)
        if self.skip:
            h = torch.cat([h, z[:, 0]], -1)  # (B, H + P)
        h_sum, n = h_sum + h, n + 1
        pooled = h_sum / n if self.pool == "mean" else h
        hd = self.drop(h)
        steps = self.classifier(hd)  # (B, C)
        return (HeadOutput(self.classifier(self.drop(pooled)), steps, *self._extras(hd, steps)),
                (rnn_state, h_sum, n))


class MeanPoolHead(nn.Module):
    """TSN-style baseline: average the (normalised, projected) frame features, then a linear layer.
    Per-step logits classify each frame on its own; step() keeps a running mean."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.3, input_dropout: float = 0.2,
                 input_norm: bool = True, proj_dim: int = 256, groups: int = 1, **_):
        super().__init__()
        self.inp = _InputBlock(in_dim, input_norm, proj_dim, input_dropout, groups)
        self.drop = Dropout(dropout)
        self.classifier = nn.Linear(self.inp.out_dim, num_classes)
        self.can_stream = True

    def forward(self, x, lengths=None) -> HeadOutput:
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
        z = self.inp(x)  # (B, T, P)
        m = length_mask(lengths, T).unsqueeze(-1).to(z.dtype)
        pooled = (z * m).sum(1) / m.sum(1).clamp(min=1)  # (B, P)
        return HeadOutput(self.classifier(self.drop(pooled)), self.classifier(self.drop(z)))

    def step(self, x_t, state=None):
        z = self.inp(x_t)  # (B, P)
        z_sum, n = state if state is not None else (0.0, 0)
        z_sum, n = z_sum + z, n + 1
        return HeadOutput(self.classifier(self.drop(z_sum / n)), self.classifier(self.drop(z))), (z_sum, n)


class EnsembleHead(nn.Module):
    """Heads of one architecture trained from different seeds (train.ensemble), read as one head: each output is
    the log of the members' mean probability (argmax, softmax and cross-entropy read it as they read logits), the
    time to a segment's end the members' mean; step() carries one state per member. A head trained on a few
    dozen clips lands a few points either way with its seed; the mean of several takes that spread out
    (docs/results.md, "Head ensembles")."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def can_stream(self) -> bool:
        return all(getattr(m, "can_stream", False) for m in self.members)

    @staticmethod
    def mean(outs: list[HeadOutput]) -> HeadOutput:
        """One HeadOutput from the members' (each field (B, C) or (B, T, C) logits; time (B,) or (B, T))."""
        def log_mean_prob(ts):
            return torch.log(torch.stack([torch.softmax(t.float(), -1) for t in ts]).mean(0).clamp_min(1e-12))

        first = outs[0]
        return HeadOutput(log_mean_prob([o.clip for o in outs]), log_mean_prob([o.steps for o in outs]),
                          None if first.next is None else log_mean_prob([o.next for o in outs]),
                          None if first.time is None else torch.stack([o.time for o in outs]).mean(0))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> HeadOutput:
        return self.mean([m(x, lengths) for m in self.members])

    def step(self, x_t: torch.Tensor, state=None) -> tuple[HeadOutput, list]:
        """state: a list of the members' states; None starts a sequence."""
        states = state if state is not None else [None] * len(self.members)
        outs, new = zip(*(m.step(x_t, s) for m, s in zip(self.members, states)))
        return self.mean(list(outs)), list(new)

    def transition_matrix(self) -> torch.Tensor | None:
        mats = [m.transition_matrix() for m in self.members]
        return None if mats[0] is None else torch.stack(mats).mean(0)


def head_members(head: nn.Module) -> list[nn.Module]:
    """The heads an EnsembleHead averages, or [head]."""
    return list(head.members) if isinstance(head, EnsembleHead) else [head]


def ensemble_members(head_state: dict) -> int:
    """How many heads a saved head_state holds: the members of an EnsembleHead's, else 1."""
    ids = {k.split(".")[1] for k in head_state if k.startswith("members.")}
    return len(ids) or 1


def build_head(hcfg, in_dim: int, num_classes: int, next_event: bool = False, groups: int = 1,
               members: int = 1) -> nn.Module:
    """Build a head from a HeadConfig; next_event adds the next-event (and time) outputs; groups is the
    number of streams side by side in the features (views.streams); members > 1: an EnsembleHead of that
    many (each initialised from the global generator in turn)."""
    if members > 1:
        return EnsembleHead([build_head(hcfg, in_dim, num_classes, next_event, groups) for _ in range(members)])
    common = dict(dropout=hcfg.dropout, input_dropout=hcfg.input_dropout, input_norm=hcfg.input_norm,
                  proj_dim=hcfg.proj_dim, groups=groups)
    if hcfg.type == "meanpool":
        if next_event:
            raise ValueError("the next_event task needs a recurrent head: head.type=lstm or gru")
        return MeanPoolHead(in_dim, num_classes, **common)
    if hcfg.type in ("lstm", "gru"):
        return RNNHead(in_dim, num_classes, rnn=hcfg.type, hidden_size=hcfg.hidden_size,
                       num_layers=hcfg.num_layers, bidirectional=hcfg.bidirectional, pool=hcfg.pool,
                       next_event=next_event, time_head=hcfg.time_head, next_mode=hcfg.next_mode,
                       skip=hcfg.skip, **common)
    raise ValueError(f"unknown head type '{hcfg.type}' (lstm | gru | meanpool)")
