"""Classification and next-event (anticipation) metrics, and their plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.io import atomic_savefig


def topk_accuracy(logits: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Share of rows whose target is among the k highest logits. logits (N,C), targets (N,)."""
    if len(targets) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    return float((topk == targets[:, None]).any(1).mean())


def confusion_matrix(preds: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts; rows are true classes, columns predicted ones."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (targets, preds), 1)
    return cm


def classification_report(logits: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """top1, top5, mean-class accuracy, per-class accuracy and support, confusion matrix."""
    preds = logits.argmax(1) if len(logits) else np.zeros(0, np.int64)
    cm = confusion_matrix(preds, targets, len(classes))
    support = cm.sum(1)
    present = support > 0
    per_class = {c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(classes)}
    return dict(
        num_clips=int(len(targets)),
        top1=topk_accuracy(logits, targets, 1),
        top5=topk_accuracy(logits, targets, 5),
        mean_class_accuracy=float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else float("nan"),
        per_class_accuracy=per_class,
        per_class_support={c: int(support[i]) for i, c in enumerate(classes)},
        classes=list(classes),
        confusion_matrix=cm.tolist(),
    )


ANTICIPATION_TIMES = (0.5, 1.0, 2.0)  # seconds before a segment starts (RULSTM's protocol uses 0.25-2 s)


def mean_class_accuracy(preds: np.ndarray, targets: np.ndarray) -> float:
    """Mean over the classes present in targets of their recall."""
    if len(targets) == 0:
        return float("nan")
    return float(np.mean([(preds[targets == c] == c).mean() for c in np.unique(targets)]))


def _scores(logits: np.ndarray, targets: np.ndarray) -> dict:
    preds = logits.argmax(1) if len(logits) else np.zeros(0, np.int64)
    return dict(top1=topk_accuracy(logits, targets, 1), top5=topk_accuracy(logits, targets, 5),
                mean_class_accuracy=mean_class_accuracy(preds, targets), n=int(len(targets)))


def anticipation_points(times: np.ndarray, boundaries: list[tuple[float, int]], tau: float) -> tuple[list, list]:
    """Step indices at tau seconds before each boundary (the last step at or before start - tau) and
    the labels to anticipate there; boundaries closer than tau to the start of the video are skipped."""
    idx, labels = [], []
    for start, label in boundaries:
        q = start - tau
        if len(times) == 0 or q < times[0] - 1e-9:
            continue
        idx.append(int(np.searchsorted(times, q + 1e-9, side="right")) - 1)
        labels.append(label)
    return idx, labels


def next_event_report(seqs: list[dict], classes: list[str], taus=ANTICIPATION_TIMES) -> dict:
    """Per-step current-action accuracy, next-action top-1/5 over the steps that have a next segment,
    next-action top-1/5 at tau seconds before each segment boundary, and their mean-class versions.

    Each seq: times (T,), cur_logits (T,C), next_logits (T,C), cur (T,), nxt (T,) (-1 = undefined),
    boundaries [(start s, label)], and optionally time_pred (T,) with tte (T,) (NaN = undefined).
    """
    cat = lambda key: np.concatenate([s[key] for s in seqs]) if seqs else np.zeros(0)  # noqa: E731
    cur, nxt = cat("cur").astype(np.int64), cat("nxt").astype(np.int64)
    cl, nl = cat("cur_logits"), cat("next_logits")
    cm, nm = cur >= 0, nxt >= 0
    current = _scores(cl[cm], cur[cm])
    nextr = _scores(nl[nm], nxt[nm])
    rep = dict(num_videos=len(seqs), num_steps=int(len(cur)),
               current_top1=current["top1"], current_mean_class_accuracy=current["mean_class_accuracy"],
               next_top1=nextr["top1"], next_top5=nextr["top5"],
               next_mean_class_accuracy=nextr["mean_class_accuracy"], next_steps=nextr["n"], anticipation={})
    for tau in taus:
        logits, labels = [], []
        for s in seqs:
            idx, lab = anticipation_points(s["times"], s["boundaries"], tau)
            logits += [s["next_logits"][i] for i in idx]
            labels += lab
        r = _scores(np.array(logits).reshape(-1, len(classes)), np.array(labels, np.int64))
        rep["anticipation"][f"{tau:g}s"] = r
    if seqs and seqs[0].get("time_pred") is not None:
        tp, tt = cat("time_pred"), cat("tte")
        ok = np.isfinite(tt)
        rep["time_to_end_mae_s"] = float(np.abs(tp[ok] - tt[ok]).mean()) if ok.any() else float("nan")
    rep["classes"] = list(classes)
    rep["current_confusion_matrix"] = confusion_matrix(cl[cm].argmax(1) if cm.any() else np.zeros(0, np.int64),
                                                       cur[cm], len(classes)).tolist()
    return rep


def plot_confusion(cm: np.ndarray | list, classes: list[str], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * n + 2), max(3.5, 0.5 * n + 1.5)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title or "confusion matrix (row-normalised colours, counts)")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)


def plot_curves(history: list[dict], path: str | Path,
                acc_keys=("train_top1", "val_top1", "val_mean_class_accuracy")) -> None:
    """Loss and accuracy per epoch from the training log rows (acc_keys: the accuracy columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], label="train")
    a.plot(ep, [h["val_loss"] for h in history], label="val")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend(), a.set_title("loss")
    for k in acc_keys:
        b.plot(ep, [h[k] for h in history], label=k.replace("_", " ").replace("mean class accuracy", "mean-class"))
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.set_ylim(0, 1.02), b.legend(), b.set_title("accuracy")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
