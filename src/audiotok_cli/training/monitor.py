"""What a run shows while it trains, in its folder: `metrics.jsonl` (a line per optimizer step and
per epoch), `curves.png` (loss, val mAP and learning rate, redrawn after every epoch, the history
also in its PNG text under "audiotok") and, when asked, TensorBoard event files in `tensorboard/`.

A resumed run first drops what the interrupted one logged after its last finished epoch, so the
logs never hold a step twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audiotok_cli.atomic import write_atomic
from audiotok_cli.errors import SettingsError

METRICS, CURVES, TENSORBOARD = "metrics.jsonl", "curves.png", "tensorboard"


class RunMonitor:
    """Writes nothing unless `enabled` (only rank 0 of a DDP run writes)."""

    def __init__(
        self, directory: Path, epochs_done: int, first_step: int, tensorboard: bool, enabled: bool = True
    ) -> None:
        self.path = directory / METRICS
        self.curves = directory / CURVES
        self.enabled = enabled
        if enabled:
            _keep_epochs(self.path, epochs_done)
        self._file = self.path.open("a") if enabled else None
        self._board = _board(directory / TENSORBOARD, first_step) if tensorboard and enabled else None

    def __enter__(self) -> RunMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
        if self._board is not None:
            self._board.close()

    def step(self, epoch: int, step: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        self._write({"kind": "step", "epoch": epoch, "step": step, "loss": loss, "learning_rate": lr})
        if self._board is not None:
            self._board.add_scalar("train/loss", loss, step)
            self._board.add_scalar("train/learning_rate", lr, step)

    def epoch(self, entry: dict[str, float], history: list[dict[str, float]], step: int) -> None:
        """The epoch's line, flushed with its steps, then the curves of the whole history."""
        self._write({"kind": "epoch", **entry})
        self._file.flush()
        if self._board is not None:
            for key, value in entry.items():
                if key not in ("epoch", "step"):
                    self._board.add_scalar(f"epoch/{key}", value, step)
            self._board.flush()
        write_atomic(self.curves, _curves_png(_steps(self.path), history))

    def _write(self, line: dict[str, Any]) -> None:
        self._file.write(json.dumps(line) + "\n")


def _keep_epochs(path: Path, epochs_done: int) -> None:
    """Drop the lines of epochs after `epochs_done` (all of them for a fresh run)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if _epoch_of(line) <= epochs_done]
    write_atomic(path, "".join(line + "\n" for line in kept).encode())


def _epoch_of(line: str) -> float:
    try:
        return json.loads(line)["epoch"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")  # a line torn by a crash


def _steps(path: Path) -> list[dict[str, float]]:
    lines = (json.loads(line) for line in path.read_text().splitlines())
    return [line for line in lines if line["kind"] == "step"]


def _board(folder: Path, first_step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SettingsError(
            "--tensorboard needs the tensorboard package; pip install 'audiotok-cli[tensorboard]'"
        ) from None
    return SummaryWriter(str(folder), purge_step=first_step)  # drops a killed epoch's events


def _curves_png(steps: list[dict[str, float]], history: list[dict[str, float]]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 3.6), layout="constrained")
    loss, score, rate = figure.subplots(1, 3)
    epochs = [entry["epoch"] for entry in history]
    loss.plot([s["step"] for s in steps], [s["loss"] for s in steps], alpha=0.3, label="step")
    ends = [entry["step"] for entry in history]
    loss.plot(ends, [entry["train_loss"] for entry in history], marker="o", label="epoch mean")
    loss.set(title="train loss", xlabel="optimizer step")
    loss.legend()
    for key in [key for key in history[-1] if key.startswith("val_")]:  # val_mAP, or MLM loss and accuracy
        score.plot(epochs, [entry[key] for entry in history], marker="o", label=key.removeprefix("val_"))
    score.set(title="validation", xlabel="epoch")
    score.legend()
    rate.plot([s["step"] for s in steps], [s["learning_rate"] for s in steps], color="tab:purple")
    rate.set(title="learning rate", xlabel="optimizer step")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"audiotok": json.dumps(history)})
    return buffer.getvalue()
