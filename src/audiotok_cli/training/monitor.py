"""What a run shows while it trains, in its folder: `metrics.jsonl` (a line per optimizer step and
per epoch), `curves.png` (loss, val mAP and learning rate, redrawn after every epoch, the history
also in its PNG text under "audiotok") and, when asked, TensorBoard event files in `tensorboard/`
(`eval` adds the run's settings and scores there as an HParams session).

A resumed run first drops what the interrupted one logged after its last finished epoch, so the
logs never hold a step twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from audiotok_cli.atomic import write_atomic
from audiotok_cli.errors import SettingsError

METRICS, CURVES, TENSORBOARD = "metrics.jsonl", "curves.png", "tensorboard"
HPARAMS = "hparams"  # under tensorboard/: the run's one HParams session


class RunMonitor:
    """Writes nothing unless `enabled` (only rank 0 of a DDP run writes)."""

    def __init__(
        self, directory: Path, epochs_done: int, first_step: int, tensorboard: bool, enabled: bool = True
    ) -> None:
        self.path = directory / METRICS
        self.curves = directory / CURVES
        self.enabled = enabled
        kept = _keep_epochs(self.path, epochs_done) if enabled else []
        # (step, loss, learning rate) of every step so far, for the curves: the file is not read again
        self._steps = [
            (line["step"], line["loss"], line["learning_rate"]) for line in kept if line["kind"] == "step"
        ]
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
        self._steps.append((step, loss, lr))
        if self._board is not None:
            self._board.add_scalar("train/loss", loss, step)
            self._board.add_scalar("train/learning_rate", lr, step)

    def epoch(self, entry: dict[str, float], history: list[dict[str, float]]) -> None:
        """The epoch's line, flushed with its steps, then the curves of the whole history."""
        self._write({"kind": "epoch", **entry})
        self._file.flush()
        if self._board is not None:
            for key, value in entry.items():
                if key not in ("epoch", "step"):
                    self._board.add_scalar(f"epoch/{key}", value, int(entry["step"]))
            self._board.flush()
        write_atomic(self.curves, _curves_png(self._steps, history))

    def _write(self, line: dict[str, Any]) -> None:
        self._file.write(json.dumps(line) + "\n")


def _keep_epochs(path: Path, epochs_done: int) -> list[dict[str, Any]]:
    """Drop the lines of epochs after `epochs_done` (all of them for a fresh run) and of a line
    torn by a crash; returns the lines kept."""
    if not path.exists():
        return []
    kept = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and line.get("epoch", float("inf")) <= epochs_done:
            kept.append(line)
    write_atomic(path, "".join(json.dumps(line) + "\n" for line in kept).encode())
    return kept


def board_from_log(directory: Path) -> Path:
    """TensorBoard event files of a finished run, written from the steps and epochs it logged in
    metrics.jsonl (the scalars training would have written): asking for TensorBoard after training
    never trains again. Returns the folder."""
    folder = directory / TENSORBOARD
    lines = [json.loads(text) for text in (directory / METRICS).read_text().splitlines() if text.strip()]
    shutil.rmtree(folder, ignore_errors=True)  # whole again, never doubled; hparams come with `eval`
    with _board(folder) as board:
        for line in lines:
            if line["kind"] == "step":
                board.add_scalar("train/loss", line["loss"], line["step"])
                board.add_scalar("train/learning_rate", line["learning_rate"], line["step"])
            else:
                for key, value in line.items():
                    if key not in ("kind", "epoch", "step"):
                        board.add_scalar(f"epoch/{key}", value, int(line["step"]))
    return folder


def has_board(directory: Path) -> bool:
    """Whether the run keeps TensorBoard event files (`eval` then adds its HParams session)."""
    return (directory / TENSORBOARD).is_dir()


def write_hparams(directory: Path, settings: dict[str, Any], metrics: dict[str, float]) -> None:
    """The run's settings and final scores as one TensorBoard HParams session (`tensorboard/hparams`),
    so the HParams dashboard compares runs; written whole again by every `eval` (one session a run).
    Settings are flattened to the scalars TensorBoard takes (lists joined by commas).

    The session's start and end alone, never an experiment summary (torch's `add_hparams` writes one
    per run, and TensorBoard then takes one run's as the whole experiment, every setting marked as
    not differing): without one, the dashboard builds the experiment from all sessions and shows
    first the settings that differ between them."""
    from torch.utils.tensorboard.summary import hparams

    folder = directory / TENSORBOARD / HPARAMS
    shutil.rmtree(folder, ignore_errors=True)
    flat = {name: _scalar(value) for name, value in settings.items() if _scalar(value) is not None}
    scores = {f"hparam/{name}": value for name, value in metrics.items()}
    _, start, end = hparams(flat, scores)
    with _board(folder) as board:  # one writer, one event file: nothing to sort out of order
        board.file_writer.add_summary(start)
        board.file_writer.add_summary(end)
        for name, value in scores.items():
            board.add_scalar(name, value)


def _scalar(value: Any) -> int | float | str | bool | None:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return None


def _board(folder: Path, first_step: int | None = None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SettingsError(
            "--tensorboard needs the tensorboard package; pip install 'audiotok-cli[tensorboard]'"
        ) from None
    return SummaryWriter(str(folder), purge_step=first_step)  # drops a killed epoch's events


def _curves_png(steps: list[tuple[int, float, float]], history: list[dict[str, float]]) -> bytes:
    import io

    buffer = io.BytesIO()
    figure = curves_figure(steps, history)
    figure.savefig(buffer, format="png", dpi=80, metadata={"audiotok": json.dumps(history)})
    return buffer.getvalue()


def curves_figure(steps: list[tuple[int, float, float]], history: list[dict[str, float]]) -> Any:
    """Train loss by step with the learning rate on a second axis (a constant rate is a flat line,
    not worth a panel of its own), and validation by epoch (whole-epoch ticks, the kept epoch marked)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 3.6), layout="constrained")
    loss, score = figure.subplots(1, 2)
    epochs = [entry["epoch"] for entry in history]
    numbers, losses, rates = zip(*steps, strict=True) if steps else ((), (), ())
    loss.plot(numbers, losses, alpha=0.3, label="step")
    ends = [entry["step"] for entry in history]
    loss.plot(ends, [entry["train_loss"] for entry in history], marker="o", label="epoch mean")
    loss.set(title="train loss (learning rate dotted, right axis)", xlabel="optimizer step")
    loss.legend()
    rate = loss.twinx()
    rate.plot(numbers, rates, color="tab:purple", linestyle=":", linewidth=1)
    rate.set_ylabel("learning rate", color="tab:purple")
    for key in [key for key in history[-1] if key.startswith("val_")]:  # val_mAP, or MLM loss and accuracy
        score.plot(epochs, [entry[key] for entry in history], marker="o", label=key.removeprefix("val_"))
    best = _best_epoch(history)
    score.axvline(best, color="grey", linestyle="--", label=f"best epoch {best}")
    score.xaxis.set_major_locator(MaxNLocator(integer=True))
    score.set(title="validation", xlabel="epoch")
    score.legend()
    return figure


def _best_epoch(history: list[dict[str, float]]) -> int:
    """The epoch training keeps: the best val mAP, or the lowest val MLM loss when pretraining."""
    if "val_mAP" in history[0]:
        return int(max(history, key=lambda entry: entry["val_mAP"])["epoch"])
    return int(min(history, key=lambda entry: entry["val_loss"])["epoch"])
