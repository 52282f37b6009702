"""Figures drawn from runs' records and scores (matplotlib, no display): the confusion matrix of a
single-label run, the validation curves of a set of runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    """Counts of true class (rows) by predicted class (columns), each row shaded by its share, so
    a small class's confusions show as plainly as a large one's."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4.0 + 0.45 * len(names), 24.0)
    figure = Figure(figsize=(size, size))
    axes = figure.add_subplot()
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(names))
    axes.set_xticks(ticks, names, rotation=90, fontsize=8)
    axes.set_yticks(ticks, names, fontsize=8)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title, fontsize=9)
    if len(names) <= 30:  # counts stay legible up to about thirty classes
        for row, column in zip(*np.nonzero(matrix), strict=True):
            colour = "white" if shares[row, column] > 0.5 else "black"
            axes.text(
                column, row, str(matrix[row, column]), ha="center", va="center", fontsize=7, color=colour
            )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def plot_validation(histories: dict[str, list[dict[str, float]]], path: Path, title: str) -> Path:
    """Val mAP (and accuracy, where there is one) by epoch, a line per run: how far a set's seeds or
    folds agree, and where each chose its epoch."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(7.0, 3.2), layout="constrained")
    axes = figure.add_subplot()
    for run, history in histories.items():
        epochs = [entry["epoch"] for entry in history]
        line = axes.plot(epochs, [entry.get("val_mAP") for entry in history], marker="o", ms=3, label=run)[0]
        if history and "val_accuracy" in history[0]:
            accuracy = [entry["val_accuracy"] for entry in history]
            axes.plot(epochs, accuracy, linestyle="--", color=line.get_color())
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="epoch", ylabel="val mAP (dashed: accuracy)", title=title)
    if len(histories) <= 12:
        axes.legend(fontsize=7)
    figure.savefig(path, dpi=100)
    return path
