"""Classification metrics and their plots."""
from __future__ import annotations

from pathlib import Path

import numpy as np


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


def plot_confusion(cm: np.ndarray | list, classes: list[str], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_savefig

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


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss and accuracy per epoch from the training log rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_savefig

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], label="train (clip + per-step)")
    a.plot(ep, [h["val_loss"] for h in history], label="val (clip)")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend(), a.set_title("loss")
    b.plot(ep, [h["train_top1"] for h in history], label="train top1")
    b.plot(ep, [h["val_top1"] for h in history], label="val top1")
    b.plot(ep, [h["val_mean_class_accuracy"] for h in history], label="val mean-class")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.set_ylim(0, 1.02), b.legend(), b.set_title("accuracy")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
