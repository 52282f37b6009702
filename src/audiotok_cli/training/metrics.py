"""AudioSet's metrics: macro mAP over classes with positives, plus F1 and Hamming loss at 0.5."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, hamming_loss


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes that have at least one positive of the class's average precision."""
    present = labels.any(axis=0)
    if not present.any():
        return float("nan")
    return float(average_precision_score(labels[:, present], scores[:, present], average="macro"))


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    predicted = probabilities >= threshold
    present = labels.any(axis=0)
    return {
        "mAP": mean_average_precision(labels, probabilities),
        "f1_micro": float(f1_score(labels, predicted, average="micro", zero_division=0)),
        "f1_macro": float(
            f1_score(labels[:, present], predicted[:, present], average="macro", zero_division=0)
        ),
        "hamming_loss": float(hamming_loss(labels, predicted)),
        "n_clips": len(labels),
        "n_classes": int(present.sum()),
    }


def prior_scores(label_prior: np.ndarray, n_clips: int) -> np.ndarray:
    """The label-prior baseline: every clip scored with the train-split class frequencies."""
    return np.broadcast_to(label_prior, (n_clips, len(label_prior)))
