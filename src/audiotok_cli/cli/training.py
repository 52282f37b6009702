"""Commands that train and score models: train, eval."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from audiotok_cli.cli.app import command, command_settings, console, err_console, quiet_or_json
from audiotok_cli.cli.options import (
    FeaturesOpt,
    OverwriteOpt,
    PickKOpt,
    RunsOpt,
    StoreOpt,
    VocabOpt,
    option,
    setting,
)
from audiotok_cli.settings import ModelSettings, TrainSettings

ModelOpt = Annotated[str | None, setting(ModelSettings, "kind", "--model")]
DeviceOpt = Annotated[str | None, setting(TrainSettings, "device", "--device")]
BatchOpt = Annotated[int | None, setting(TrainSettings, "batch_size", "--batch-size")]


def _epoch_line(entry: dict, total: int) -> None:
    console.print(
        f"epoch {int(entry['epoch'])}/{total}: loss {entry['train_loss']:.4f}, "
        f"val mAP {entry['val_mAP']:.4f}, lr {entry['learning_rate']:.3g}, "
        f"{entry['samples_per_s']:.0f} samples/s (reader {entry['reader_samples_per_s']:.0f}/s), "
        f"{entry['seconds']:.1f} s"
    )


@command(
    "train",
    render=lambda r: console.print(
        f"trained {r.run_dir}: best val mAP {r.best_val_map:.4f} at epoch {r.best_epoch}"
        + (
            f"; model = mean of epochs {r.averaged.epochs[0]}-{r.averaged.epochs[-1]}, "
            f"val mAP {r.averaged.val_mAP:.4f}"
            if r.averaged
            else ""
        )
    ),
)
def train_cmd(
    model: ModelOpt = None,
    vocab: VocabOpt = None,
    k: PickKOpt = None,
    features: FeaturesOpt = None,
    vocab_size: Annotated[int | None, setting(ModelSettings, "vocab_size", "--vocab-size")] = None,
    epochs: Annotated[int | None, setting(TrainSettings, "epochs", "--epochs")] = None,
    batch_size: BatchOpt = None,
    learning_rate: Annotated[float | None, setting(TrainSettings, "learning_rate", "--lr")] = None,
    weight_decay: Annotated[float | None, setting(TrainSettings, "weight_decay", "--weight-decay")] = None,
    schedule: Annotated[str | None, setting(TrainSettings, "schedule", "--schedule")] = None,
    warmup_steps: Annotated[int | None, setting(TrainSettings, "warmup_steps", "--warmup-steps")] = None,
    warmup_ratio: Annotated[float | None, setting(TrainSettings, "warmup_ratio", "--warmup-ratio")] = None,
    patience: Annotated[int | None, setting(TrainSettings, "patience", "--patience")] = None,
    accumulate: Annotated[int | None, setting(TrainSettings, "accumulate", "--accumulate")] = None,
    clip_grad_norm: Annotated[
        float | None, setting(TrainSettings, "clip_grad_norm", "--clip-grad-norm")
    ] = None,
    precision: Annotated[str | None, setting(TrainSettings, "precision", "--precision")] = None,
    sampler: Annotated[str | None, setting(TrainSettings, "sampler", "--sampler")] = None,
    mixup: Annotated[float | None, setting(TrainSettings, "mixup", "--mixup")] = None,
    time_mask: Annotated[int | None, setting(TrainSettings, "time_mask", "--time-mask")] = None,
    freq_mask: Annotated[int | None, setting(TrainSettings, "freq_mask", "--freq-mask")] = None,
    token_mask: Annotated[float | None, setting(TrainSettings, "token_mask", "--token-mask")] = None,
    mask_span: Annotated[int | None, setting(TrainSettings, "mask_span", "--mask-span")] = None,
    average_last: Annotated[int | None, setting(TrainSettings, "average_last", "--average-last")] = None,
    tensorboard: Annotated[
        bool | None, setting(TrainSettings, "tensorboard", "--tensorboard/--no-tensorboard")
    ] = None,
    embed_dim: Annotated[int | None, setting(ModelSettings, "embed_dim", "--embed-dim")] = None,
    hidden_size: Annotated[int | None, setting(ModelSettings, "hidden_size", "--hidden-size")] = None,
    num_layers: Annotated[int | None, setting(ModelSettings, "num_layers", "--num-layers")] = None,
    num_heads: Annotated[int | None, setting(ModelSettings, "num_heads", "--num-heads")] = None,
    dropout: Annotated[float | None, setting(ModelSettings, "dropout", "--dropout")] = None,
    input: Annotated[str | None, setting(ModelSettings, "input", "--input")] = None,
    cnn_channels: Annotated[str | None, setting(ModelSettings, "cnn_channels", "--cnn-channels")] = None,
    conv_kernels: Annotated[int | None, setting(ModelSettings, "conv_kernels", "--conv-kernels")] = None,
    conv_size: Annotated[int | None, setting(ModelSettings, "conv_size", "--conv-size")] = None,
    device: DeviceOpt = None,
    loader_workers: Annotated[
        int | None, setting(TrainSettings, "loader_workers", "--loader-workers")
    ] = None,
    run_name: Annotated[
        str | None, option("--run-name", help="Run folder name.", default="MODEL-VOCAB")
    ] = None,
    store: StoreOpt = None,
    runs_dir: RunsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Train a token or frame model (multi-label BCE over the 527 classes); keeps the best val-mAP epoch."""
    settings = command_settings(
        paths={"store": store, "runs_dir": runs_dir},
        vocab={"n_clusters": k},
        model={
            "kind": model,
            "vocab_size": vocab_size,
            "embed_dim": embed_dim,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "dropout": dropout,
            "input": input,
            "cnn_channels": cnn_channels,
            "conv_kernels": conv_kernels,
            "conv_size": conv_size,
        },
        train={
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "weight_decay": weight_decay,
            "schedule": schedule,
            "warmup_steps": warmup_steps,
            "warmup_ratio": warmup_ratio,
            "patience": patience,
            "accumulate": accumulate,
            "clip_grad_norm": clip_grad_norm,
            "precision": precision,
            "sampler": sampler,
            "mixup": mixup,
            "time_mask": time_mask,
            "freq_mask": freq_mask,
            "token_mask": token_mask,
            "mask_span": mask_span,
            "average_last": average_last,
            "tensorboard": tensorboard,
            "device": device,
            "loader_workers": loader_workers,
            "run_name": run_name,
        },
    )
    from audiotok_cli.store import Pick
    from audiotok_cli.training.loop import train

    return train(
        settings.resolved_paths,
        settings.model,
        settings.train,
        settings.seed,
        Pick(vocab, k, features),
        overwrite,
        on_epoch=None if quiet_or_json() else _epoch_line,
    )


def _render_eval(report) -> None:
    table = Table(
        "split",
        "clips",
        "mAP",
        "prior mAP",
        "AUC",
        "d'",
        "F1 micro@0.5",
        "F1 macro@0.5",
        "F1 micro tuned",
        "F1 macro tuned",
        "Hamming",
        title=str(report.run_dir),
    )
    for name, m in report.splits.items():
        table.add_row(
            "test (official eval)" if name == "test" else name,
            str(m["n_clips"]),
            f"{m['mAP']:.4f}",
            f"{m['prior_mAP']:.4f}",
            f"{m['AUC']:.4f}",
            f"{m['d_prime']:.3f}",
            f"{m['f1_micro_0.5']:.4f}",
            f"{m['f1_macro_0.5']:.4f}",
            f"{m.get('f1_micro_tuned', float('nan')):.4f}",
            f"{m.get('f1_macro_tuned', float('nan')):.4f}",
            f"{m['hamming_loss']:.5f}",
        )
    console.print(table)
    test = report.splits.get("test")
    if test:
        aps = test["per_class_AP"]
        for title, classes in (("best", test["best_classes"]), ("worst", test["worst_classes"])):
            shown = ", ".join(f"{name} {aps[name]:.3f}" for name in classes)
            console.print(f"{title} classes on test (AP): {escape(shown)}")
    console.print(f"report: {report.report_path}")


@command("eval", render=_render_eval)
def eval_cmd(
    run: Annotated[str | None, option("--run", help="Run folder name.", default="the only match")] = None,
    model: Annotated[
        str | None, option("--model", help="Choose the run of this model family.", default="any")
    ] = None,
    vocab: VocabOpt = None,
    k: PickKOpt = None,
    features: FeaturesOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchOpt = None,
    store: StoreOpt = None,
    runs_dir: RunsOpt = None,
):
    """mAP, AUC, d', F1 and per-class AP on val and the official eval set, beside the label prior."""
    settings = command_settings(
        paths={"store": store, "runs_dir": runs_dir},
        model={"kind": model},
        train={"device": device, "batch_size": batch_size},
    )
    from audiotok_cli.store import Pick
    from audiotok_cli.training.evaluate import evaluate

    return evaluate(
        settings.resolved_paths,
        run,
        model,
        Pick(vocab, k, features),
        settings.train.device,
        settings.train.batch_size,
    )


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _render_runs(rows) -> None:
    table = Table(
        "run",
        "model",
        "input",
        "parameters",
        "epochs",
        "train s",
        "val mAP",
        "test mAP",
        "prior mAP",
        "vs best frames",
        title="runs (test: the official eval set)",
    )
    for r in rows:
        gap = "-" if r.gap_to_best_frames is None else f"{r.gap_to_best_frames:+.4f}"
        table.add_row(
            r.name,
            r.model,
            r.input,
            f"{r.parameters:,}",
            str(r.epochs),
            f"{r.train_seconds:.0f}",
            _score(r.val_mAP),
            _score(r.test_mAP),
            _score(r.prior_mAP),
            gap,
        )
    console.print(table)


@command("runs", render=_render_runs)
def runs_cmd(
    sort: Annotated[
        str,
        typer.Option("--sort", help="Sort by name, test_mAP, val_mAP, parameters or train_seconds."),
    ] = "test_mAP",
    plot: Annotated[
        Path | None,
        option("--plot", help="Also draw the runs as a bar chart (PNG).", default="no chart"),
    ] = None,
    runs_dir: RunsOpt = None,
):
    """Every run in one table: tokens against spectrogram frames, beside the label prior."""
    from audiotok_cli.training.compare import compare_runs, plot_runs

    settings = command_settings(paths={"runs_dir": runs_dir})
    rows = compare_runs(settings.runs_dir, sort)
    if plot is not None:
        plot_runs(rows, plot)
    return rows


def _render_predictions(result) -> None:
    for f in result.files:
        labels = ", ".join(f"{name} {p:.3f}" for name, p in f.top)
        console.print(f"{escape(f.path)} ({f.seconds:g} s, {f.windows} windows): {escape(labels)}")
    for path, why in result.failed.items():
        err_console.print(f"[yellow]not scored: {escape(path)}: {escape(why)}")


@command("predict", render=_render_predictions)
def predict_cmd(
    run: Annotated[str, typer.Argument(help="A run name under the runs directory, or a run folder's path.")],
    files: Annotated[list[Path], typer.Argument(help="Audio files: FLAC, WAV, MP3, OGG, any rate.")],
    top: Annotated[int, typer.Option("--top", help="Labels shown per file.", min=1)] = 5,
    device: DeviceOpt = None,
    runs_dir: RunsOpt = None,
):
    """Top labels of audio files from a trained run; the run folder alone is enough (no store)."""
    from audiotok_cli.training.predict import predict_files
    from audiotok_cli.training.runs import load_run, pick_device

    settings = command_settings(paths={"runs_dir": runs_dir}, train={"device": device})
    folder = Path(run) if Path(run).is_dir() else settings.runs_dir / run
    loaded = load_run(folder)
    loaded.model.to(pick_device(settings.train.device))
    return predict_files(loaded, files, top)


@command(
    "export", render=lambda r: console.print(f"exported {r.run_dir} to {r.output}: {', '.join(r.files)}")
)
def export_cmd(
    run: Annotated[str, typer.Argument(help="A bert run's name under the runs directory, or its path.")],
    output: Annotated[Path, typer.Argument(help="Folder for `BertModel.from_pretrained`.")],
    runs_dir: RunsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """A trained BERT as a transformers folder (config.json + safetensors), its head beside it."""
    from audiotok_cli.training.export import export_run

    settings = command_settings(paths={"runs_dir": runs_dir})
    return export_run(Path(run) if Path(run).is_dir() else settings.runs_dir / run, output, overwrite)
