"""AudioSet's metrics, as its papers report them: mAP (macro over classes with positives), ROC AUC
and d-prime, micro/macro F1 at 0.5 and at per-class thresholds tuned on val, Hamming loss; and for
single-label collections (ESC-50, UrbanSound8K), accuracy of the top class, as their papers report."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_curve,
    roc_auc_score,
)


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes that have at least one positive of the class's average precision."""
    present = labels.any(axis=0)
    if not present.any():
        return float("nan")
    return float(average_precision_score(labels[:, present], scores[:, present], average="macro"))


def accuracy(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Share of clips whose top-scored class is their label, where every clip has exactly one
    label (None otherwise: top-1 accuracy means nothing for multi-label clips)."""
    if len(labels) == 0 or not (labels.sum(axis=1) == 1).all():
        return None
    return float((labels[np.arange(len(labels)), scores.argmax(axis=1)]).mean())


def per_class_ap(labels: np.ndarray, scores: np.ndarray) -> dict[int, float]:
    """Average precision of every class with a positive, by class index."""
    present = np.flatnonzero(labels.any(axis=0))
    values = average_precision_score(labels[:, present], scores[:, present], average=None)
    return {int(c): float(ap) for c, ap in zip(present, np.atleast_1d(values), strict=True)}


def d_prime(auc: float) -> float:
    """The AudioSet papers' d': the separation of two unit normals that gives this ROC AUC."""
    return float(np.sqrt(2.0) * norm.ppf(auc))


def tune_thresholds(labels: np.ndarray, scores: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per class, the score threshold with the best F1 on these (validation) clips; `default` for
    classes without a positive here."""
    thresholds = np.full(labels.shape[1], default)
    for c in np.flatnonzero(labels.any(axis=0)):
        precision, recall, cuts = precision_recall_curve(labels[:, c], scores[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        thresholds[c] = cuts[int(np.argmax(f1))]
    return thresholds


def classification_metrics(
    labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | None = None
) -> dict[str, float | int]:
    """Every metric on one split; F1 at `thresholds` (per class) too when given."""
    present = labels.any(axis=0)
    both = present & ~labels.all(axis=0)  # AUC needs a positive and a negative
    auc = (
        float(roc_auc_score(labels[:, both], scores[:, both], average="macro"))
        if both.any()
        else float("nan")
    )
    metrics: dict[str, float | int] = {
        "mAP": mean_average_precision(labels, scores),
        "AUC": auc,
        "d_prime": d_prime(auc) if np.isfinite(auc) else float("nan"),
        **_f1(labels, scores >= 0.5, present, "0.5"),
        "hamming_loss": float(hamming_loss(labels, scores >= 0.5)),
        "n_clips": len(labels),
        "n_classes": int(present.sum()),
    }
    top = accuracy(labels, scores)
    if top is not None:
        metrics["accuracy"] = top
    if thresholds is not None:
        metrics |= _f1(labels, scores >= thresholds, present, "tuned")
    return metrics


def _f1(labels: np.ndarray, predicted: np.ndarray, present: np.ndarray, tag: str) -> dict[str, float]:
    return {
        f"f1_micro_{tag}": float(f1_score(labels, predicted, average="micro", zero_division=0)),
        f"f1_macro_{tag}": float(
            f1_score(labels[:, present], predicted[:, present], average="macro", zero_division=0)
        ),
    }


def prior_scores(label_prior: np.ndarray, n_clips: int) -> np.ndarray:
    """The label-prior baseline: every clip scored with the train-split class frequencies."""
    return np.broadcast_to(label_prior, (n_clips, len(label_prior)))
