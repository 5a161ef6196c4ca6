"""Action grammars: a first-order Markov chain over actions with random segment durations.

Used to write synthetic sequences (synthetic.make_sequences) and to compose sequences from trimmed
clips (compose.py). Because the chain is known, so is the best next-action accuracy any model can
reach: given the current action a, predict argmax_b P(b | a), right with probability
max_b P(b | a) (the Bayes limit; tests and benchmarks compare the model with it).

YAML:
    actions: [wave, clap, jump, squat]
    start: {wave: 1.0}                 # optional; default uniform
    transitions:                       # every action needs a row; rows sum to 1
      wave: {clap: 0.8, jump: 0.2}
      ...
    duration: [2.0, 4.0]               # seconds, uniform per segment; or `clip` (compose only): each
                                       # segment is one whole trimmed clip, played once from its start
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import GrammarError  # (importable from here as before)
from pipeline.io import read_yaml


@dataclass
class Grammar:
    actions: list[str]
    transitions: np.ndarray      # (A, A) rows sum to 1: P(next = b | current = a)
    start: np.ndarray            # (A,) P(first action)
    # (min, max) seconds, uniform per segment; None = "clip": a composed segment lasts as long as the clip
    # drawn for it (non-periodic actions - a punch, a handshake - happen once somewhere in their clip: a
    # slice or a loop of it would label steps that do not show the action, or show it twice)
    duration: tuple[float, float] | None

    @property
    def index(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.actions)}

    def walk(self, rng: np.random.Generator):
        """Actions following the chain, without end (segments of clip duration: compose.py)."""
        a = int(rng.choice(len(self.actions), p=self.start))
        while True:
            yield self.actions[a]
            a = int(rng.choice(len(self.actions), p=self.transitions[a]))

    def sample(self, rng: np.random.Generator, total: float) -> list[tuple[str, float]]:
        """(action, duration) segments until `total` seconds are covered (the last one is cut)."""
        if self.duration is None:
            raise GrammarError("duration: clip - segment lengths come from the clips; compose from trimmed "
                               "clips (vap compose), or give duration: [min, max] seconds")
        out, t = [], 0.0
        a = int(rng.choice(len(self.actions), p=self.start))
        while t < total - 1e-9:
            d = min(float(rng.uniform(*self.duration)), total - t)
            out.append((self.actions[a], d))
            t += d
            a = int(rng.choice(len(self.actions), p=self.transitions[a]))
        return out

    def stationary(self) -> np.ndarray:
        """(A,) long-run share of segments of each action."""
        w, v = np.linalg.eig(self.transitions.T)
        p = np.real(v[:, np.argmin(np.abs(w - 1))])
        return p / p.sum()

    def bayes_next(self, current: list[str] | np.ndarray) -> float:
        """Expected accuracy of the best possible next-action guess, averaged over the given current
        actions (one per scored step): mean of max_b P(b | a)."""
        idx = self.index
        best = self.transitions.max(1)
        cur = [idx[c] if isinstance(c, str) else int(c) for c in current]
        return float(np.mean(best[cur])) if cur else float("nan")

    def bayes_limit(self) -> float:
        """Long-run best next-action accuracy: stationary share of each action times its best guess
        (segment durations do not depend on the action, so the share of steps follows the chain)."""
        return float(self.stationary() @ self.transitions.max(1))

    def to_dict(self) -> dict:
        idx = range(len(self.actions))
        return dict(actions=list(self.actions),
                    start={self.actions[i]: round(float(self.start[i]), 6) for i in idx if self.start[i] > 0},
                    transitions={self.actions[i]: {self.actions[j]: round(float(self.transitions[i, j]), 6)
                                                   for j in idx if self.transitions[i, j] > 0} for i in idx},
                    duration="clip" if self.duration is None else list(self.duration))


def grammar_from_dict(d: dict, source: str = "grammar") -> Grammar:
    if not isinstance(d, dict) or "actions" not in d or "transitions" not in d:
        raise GrammarError(f"{source}: needs 'actions' and 'transitions' (see pipeline/data/grammar.py)")
    actions = [str(a) for a in d["actions"]]
    if len(set(actions)) != len(actions) or len(actions) < 2:
        raise GrammarError(f"{source}: 'actions' must list at least 2 distinct actions")
    idx = {a: i for i, a in enumerate(actions)}

    def row(mapping, what) -> np.ndarray:
        if not isinstance(mapping, dict):
            raise GrammarError(f"{source}: {what} must be a mapping action -> probability")
        r = np.zeros(len(actions))
        for b, p in mapping.items():
            if b not in idx:
                raise GrammarError(f"{source}: {what} names unknown action '{b}'; actions: {actions}")
            if not isinstance(p, (int, float)) or p < 0:
                raise GrammarError(f"{source}: {what} -> {b}: probability must be a number >= 0")
            r[idx[b]] = p
        if abs(r.sum() - 1) > 1e-3:
            raise GrammarError(f"{source}: {what}: probabilities sum to {r.sum():g}, not 1")
        return r / r.sum()

    trans = d["transitions"]
    if not isinstance(trans, dict):
        raise GrammarError(f"{source}: 'transitions' must map each action to its next-action probabilities")
    missing = [a for a in actions if a not in trans]
    if missing:
        raise GrammarError(f"{source}: no transitions for {missing}")
    extra = [a for a in trans if a not in idx]
    if extra:
        raise GrammarError(f"{source}: transitions for unknown action(s) {extra}; actions: {actions}")
    T = np.stack([row(trans[a], f"transitions.{a}") for a in actions])
    start = row(d["start"], "start") if d.get("start") else np.full(len(actions), 1 / len(actions))
    dur = d.get("duration", [2.0, 4.0])
    if dur == "clip":
        return Grammar(actions, T, start, None)
    if (not isinstance(dur, (list, tuple)) or len(dur) != 2 or not all(isinstance(x, (int, float)) for x in dur)
            or not 0 < dur[0] <= dur[1]):
        raise GrammarError(f"{source}: 'duration' must be [min, max] seconds with 0 < min <= max, or clip")
    return Grammar(actions, T, start, (float(dur[0]), float(dur[1])))


def load_grammar(path: str | Path) -> Grammar:
    return grammar_from_dict(read_yaml(path, GrammarError, "grammar file"), str(Path(path)))


def cycle_grammar(actions: list[str], p_next: float = 0.8, duration=(2.0, 4.0)) -> Grammar:
    """Each action is followed by the next one in the list with p_next, else by the one after it:
    a simple grammar whose Bayes limit is p_next and whose class-frequency baseline is ~1/len."""
    A = len(actions)
    T = np.zeros((A, A))
    for i in range(A):
        T[i, (i + 1) % A] += p_next
        T[i, (i + 2) % A] += 1 - p_next
    return Grammar(list(actions), T, np.full(A, 1 / A), tuple(duration))
