"""Commands that train and score models: train, pretrain, eval (runs and what uses them: results.py)."""

import os
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Column, Table

from audiotok_cli.cli.app import command, command_settings, console, counted, quiet_or_json
from audiotok_cli.cli.options import (
    FeaturesOpt,
    OptionGroup,
    OverwriteOpt,
    PickKOpt,
    RunsOpt,
    StoreOpt,
    VocabOpt,
    option,
    setting,
)
from audiotok_cli.cli.tables import print_fitting, score_cell
from audiotok_cli.errors import SettingsError
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.training.objectives import OBJECTIVES, chosen_objective

# `train --help` groups its fifty options under these headings (the rest under "Options")
MODEL, TRAINING, AUGMENTATION, RUNNING = "Model", "Optimisation", "Augmentation and sampling", "Running"
_PANELS = {ModelSettings: MODEL, TrainSettings: TRAINING}

ModelOpt = Annotated[str | None, setting(ModelSettings, "kind", "--model")]
DeviceOpt = Annotated[str | None, setting(TrainSettings, "device", "--device", panel=RUNNING)]
BatchOpt = Annotated[int | None, setting(TrainSettings, "batch_size", "--batch-size", panel=TRAINING)]


def _flag(group: type[BaseModel], field: str, kind: type, panel: str | None = None) -> Any:
    """An option setting `group.field`, named after it (`hidden_size` -> `--hidden-size`; a switch
    `--bucket-by-length/--no-bucket-by-length`), listed under `panel` (by default its group's)."""
    flag = "--" + field.replace("_", "-")
    if kind is bool:
        flag += "/--no-" + flag.removeprefix("--")
    return Annotated[kind | None, setting(group, field, flag, panel=panel or _PANELS.get(group))]


# the options train and pretrain share, declared once: what a run reads, the encoder's shape and the
# loop (`fitting`); where it runs and is written (`running`)
FITTING = OptionGroup(
    {
        "vocab": VocabOpt,
        "k": PickKOpt,
        "features": FeaturesOpt,
        "vocab_size": _flag(ModelSettings, "vocab_size", int),
        "hidden_size": _flag(ModelSettings, "hidden_size", int),
        "num_layers": _flag(ModelSettings, "num_layers", int),
        "num_heads": _flag(ModelSettings, "num_heads", int),
        "dropout": _flag(ModelSettings, "dropout", float),
        "frame_transforms": Annotated[
            list[str] | None, setting(ModelSettings, "frame_transforms", "--frame-transform", panel=MODEL)
        ],
        "epochs": _flag(TrainSettings, "epochs", int),
        "batch_size": BatchOpt,
        "learning_rate": Annotated[
            float | None, setting(TrainSettings, "learning_rate", "--lr", panel=TRAINING)
        ],
        "weight_decay": _flag(TrainSettings, "weight_decay", float),
        "schedule": _flag(TrainSettings, "schedule", str),
        "warmup_steps": _flag(TrainSettings, "warmup_steps", int),
        "warmup_ratio": _flag(TrainSettings, "warmup_ratio", float),
        "patience": _flag(TrainSettings, "patience", int),
        "accumulate": _flag(TrainSettings, "accumulate", int),
        "clip_grad_norm": _flag(TrainSettings, "clip_grad_norm", float),
        "precision": _flag(TrainSettings, "precision", str),
        "bucket_by_length": _flag(TrainSettings, "bucket_by_length", bool),
        "average_last": _flag(TrainSettings, "average_last", int),
    }
)
RUNNING_OPTIONS = OptionGroup(
    {
        "tensorboard": _flag(TrainSettings, "tensorboard", bool, RUNNING),
        "device": DeviceOpt,
        "loader_workers": _flag(TrainSettings, "loader_workers", int, RUNNING),
        "threads": _flag(TrainSettings, "threads", int, RUNNING),
        "run_name": Annotated[
            str | None,
            option(
                "--run-name", help="Run folder name.", default="MODEL-INPUT, then -2, -3, ...", panel=RUNNING
            ),
        ],
        "store": StoreOpt,
        "runs_dir": RunsOpt,
        "overwrite": OverwriteOpt,
    },
    defaults={"overwrite": False},
)


def _flags(parameters: dict[str, Any]) -> dict[str, Any]:
    """A run command's options in one dict, the shared groups' spread out (named after the fields
    they set); `--frame-transform`'s values as the comma list settings take."""
    flags = {**parameters, **parameters.pop("fitting"), **parameters.pop("running")}
    flags["frame_transforms"] = _joined(flags["frame_transforms"])
    return flags


def _joined(values: list[str] | None) -> str | None:
    """A repeatable option's values as the comma list settings take (None when not given)."""
    return ",".join(values) if values else None


def _fields(group: type[BaseModel], flags: dict[str, Any]) -> dict[str, Any]:
    """The flags that set fields of `group`: option parameters are named after their fields."""
    return {name: value for name, value in flags.items() if name in group.model_fields}


def _fit(
    stage: Callable[..., Any],
    flags: dict[str, Any],
    model: dict[str, Any],
    cv: bool = False,
    init: str | None = None,
    **extra: Any,
) -> Any:
    """`train` or `pretrain` with the command's flags as settings (its parameters are named after
    the fields they set, plus the pick: vocab, k, features), as one `RunRequest`; with `cv`, the
    stage also gets the split and vocab settings it applies per fold."""
    from audiotok_cli.store import Pick
    from audiotok_cli.training.request import RunRequest

    settings = command_settings(
        paths={"store": flags["store"], "runs_dir": flags["runs_dir"]},
        vocab={"n_clusters": flags["k"]},
        model={**_fields(ModelSettings, flags), **model},
        train=_fields(TrainSettings, flags),
    )
    if cv:
        extra |= {"split_settings": settings.split, "vocab_settings": settings.vocab}
    request = RunRequest(
        settings.resolved_paths,
        settings.model,
        settings.train,
        settings.seed,
        Pick(flags["vocab"], flags["k"], flags["features"]),
        flags["overwrite"],
        on_epoch=None if quiet_or_json() else _epoch_line,
        init=init,
    )
    return stage(request, **extra)


def _epoch_line(entry: dict, total: int) -> None:
    scores = (
        f"val mAP {entry['val_mAP']:.4f}"
        if "val_mAP" in entry
        else f"val masked loss {entry['val_loss']:.4f}, accuracy {entry['val_accuracy']:.4f}"
    )
    run = f"{entry['run']} " if "run" in entry else ""  # one of --seeds' runs
    console.print(
        f"{run}epoch {int(entry['epoch'])}/{total}: loss {entry['train_loss']:.4f}, {scores}, "
        f"lr {entry['learning_rate']:.3g}, "
        f"{entry['samples_per_s']:.0f} samples/s (reader {entry['reader_samples_per_s']:.0f}/s), "
        f"{entry['seconds']:.1f} s"
    )


def _render_repeats(r) -> None:
    unit = r.unit
    seeds = max((len(f.seeds) for f in r.repeats), default=0)
    title = f"{r.name}: {len(r.repeats)} {unit}s" + (f", each the mean of {seeds} seeds" if seeds else "")
    table = Table(unit, "run", "test accuracy", "test mAP", "val mAP", title=title)
    for f in r.repeats:
        table.add_row(
            str(f.index), f.run, score_cell(f.test_accuracy), score_cell(f.test_mAP), score_cell(f.val_mAP)
        )
    console.print(table)
    for key, label in (("test_accuracy", "test accuracy"), ("test_mAP", "test mAP")):
        _print_spread(r.name, label, r.summary(key), unit)


def _render_pretrained_seeds(r) -> None:
    table = Table("run", "val masked accuracy", title=f"{r.name}: {counted(len(r.masked_accuracy), 'seed')}")
    for run, accuracy in r.masked_accuracy.items():
        table.add_row(run, score_cell(accuracy))
    console.print(table)
    _print_spread(r.name, "val masked accuracy", r.summary(), "seed")


def _print_spread(name: str, label: str, s, unit: str) -> None:
    """One figure of a set of runs: its mean, 95% interval and deviation (nothing without one)."""
    if s:
        console.print(
            f"{name}: {label} {s.mean:.4f} ± {s.ci95:.4f} (95% interval of the mean; std {s.std:.4f}) "
            f"over {s.n} {unit}s"
        )


def _render_trained(r) -> None:
    if int(os.environ.get("RANK", "0")):  # under torchrun, rank 0 speaks for the run
        return
    if hasattr(r, "repeats"):
        _render_repeats(r)
        return
    if hasattr(r, "masked_accuracy"):
        _render_pretrained_seeds(r)
        return
    score = r.score.replace("_", " ")
    averaged = ""
    if r.averaged:
        first, last = r.averaged.epochs[0], r.averaged.epochs[-1]
        averaged = f"; model = mean of epochs {first}-{last}, {score} {r.averaged.score:.4f}"
    console.print(f"trained {r.run_dir}: best {score} {r.best_score:.4f} at epoch {r.best_epoch}{averaged}")
    if r.scores:  # scored as `eval` scores it
        shown = [
            f"{name.replace('_', ' ')} {value:.4f}"
            for name, value in r.scores.items()
            if name.startswith("test")
        ]
        console.print(f"scored: {', '.join(shown)} (`audiotok eval --run {r.run_dir.name}` for the rest)")


@command("train", render=_render_trained, seeded=True)
def train_cmd(
    model: ModelOpt = None,
    init: Annotated[
        str | None,
        option(
            "--init",
            help="Start BERT's encoder from this pretraining run (a name or a folder), with its sizes.",
            default="unset",
        ),
    ] = None,
    input: _flag(ModelSettings, "input", str, "Options") = None,
    embed_dim: _flag(ModelSettings, "embed_dim", int) = None,
    cnn_channels: _flag(ModelSettings, "cnn_channels", str) = None,
    conv_kernels: _flag(ModelSettings, "conv_kernels", int) = None,
    conv_size: _flag(ModelSettings, "conv_size", int) = None,
    loss: _flag(TrainSettings, "loss", str) = None,
    sampler: _flag(TrainSettings, "sampler", str, AUGMENTATION) = None,
    mixup: _flag(TrainSettings, "mixup", float, AUGMENTATION) = None,
    time_mask: _flag(TrainSettings, "time_mask", int, AUGMENTATION) = None,
    freq_mask: _flag(TrainSettings, "freq_mask", int, AUGMENTATION) = None,
    token_mask: _flag(TrainSettings, "token_mask", float, AUGMENTATION) = None,
    mask_span: _flag(TrainSettings, "mask_span", int, AUGMENTATION) = None,
    fitting: dict = FITTING,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            help="Train (and score) the run under this many seeds, NAME-seedS from --seed on; then the mean "
            "and its 95% interval. With --cv, every fold under this many seeds (NAME-foldN-seedS).",
            min=1,
        ),
    ] = 1,
    cv: Annotated[
        bool,
        typer.Option(
            "--cv",
            help="Cross-validate: one run NAME-foldN per fold of the clips (ESC-50, UrbanSound8K), each with "
            "that fold as test and, for token models, a vocabulary of its own; then mean and deviation "
            "(with --seeds N, N runs a fold).",
        ),
    ] = False,
    running: dict = RUNNING_OPTIONS,
):
    """Train a token or frame model (softmax cross-entropy where each clip has one class, multi-label
    BCE for AudioSet); keeps the best val-mAP epoch, then scores it as `eval` does. With --cv, one
    run per fold."""
    flags = _flags(locals())  # the options, before any import adds a name here
    if cv:
        from audiotok_cli.experiments.cv import cross_validate

        return _fit(cross_validate, flags, {"kind": model}, cv=True, init=init, seeds=seeds)
    if seeds > 1:
        from audiotok_cli.experiments.repeats import train_seeds

        return _fit(train_seeds, flags, {"kind": model}, init=init, seeds=seeds)
    from audiotok_cli.experiments.repeats import train_scored

    return _fit(train_scored, flags, {"kind": model}, init=init)


@command("pretrain", render=_render_trained, seeded=True)
def pretrain_cmd(
    objective: Annotated[
        str | None,
        typer.Option(
            "--objective",
            help="What the encoder learns: "
            + "; ".join(f"{o.name}: {o.summary}" for o in OBJECTIVES.values())
            + ". Default: the one that reads --input.",
        ),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="What the encoder reads: tokens (masked-tokens) or frames (masked-units); the older "
            "spelling of --objective.",
        ),
    ] = None,
    targets: Annotated[
        str | None,
        option(
            "--targets",
            help="With masked-units (--input frames): the tokens (a vocabulary's name) to predict; then "
            "`featurize --encoder RUN --layer L` makes units of the run's layer L.",
            default="none",
        ),
    ] = None,
    fitting: dict = FITTING,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            help="With masked-units: pretrain under this many seeds, NAME-seedS from --seed on; then "
            "the val masked accuracy's mean and 95% interval (an encoder's seed moves its units).",
            min=1,
        ),
    ] = 1,
    running: dict = RUNNING_OPTIONS,
):
    """Pretrain BERT, labels unused, on every clip outside val and test: masked-token modelling over
    tokens, or masked unit prediction over frames (--objective masked-units --targets VOCAB); then
    `train --model bert --init RUN` fine-tunes it."""
    flags = _flags(locals())
    chosen = chosen_objective(objective, input)
    if targets is not None and not chosen.targets:
        raise SettingsError(f"--targets names what masked-units predicts; {chosen.name} needs none")
    if seeds > 1 and not chosen.seeds:
        raise SettingsError(f"--seeds repeats masked-units pretraining only, not {chosen.name}")
    model = {"kind": "bert", "input": chosen.reads}
    extra = {"targets": targets} if chosen.targets else {}
    if seeds > 1:
        from audiotok_cli.experiments.repeats import pretrain_seeds
        from audiotok_cli.training.units import units_run_name  # masked-units: the one it repeats

        default = units_run_name(targets or "")  # no targets: pretrain_units refuses in one line
        repeated = {"pretraining": chosen.pretraining(), "seeds": seeds, "default": default}
        return _fit(pretrain_seeds, flags, model, **extra, **repeated)
    return _fit(chosen.pretraining(), flags, model, **extra)


_SINGLE_LABEL_HEADLINE = (("accuracy", "accuracy", 4), ("macro F1", "macro_f1", 4))
_EVAL_METRICS = (  # (column, key, digits)
    ("mAP", "mAP", 4),
    ("prior mAP", "prior_mAP", 4),
    ("AUC", "AUC", 4),
    ("d'", "d_prime", 3),
    ("F1 micro@0.5", "f1_micro_0.5", 4),
    ("F1 macro@0.5", "f1_macro_0.5", 4),
    ("F1 micro tuned", "f1_micro_tuned", 4),
    ("F1 macro tuned", "f1_macro_tuned", 4),
    ("Hamming", "hamming_loss", 5),
)


def _render_eval(report) -> None:
    single_label = any("accuracy" in m for m in report.splits.values())
    # single-label sets as the field publishes them (accuracy first); multi-label threshold figures
    # (tuned F1, Hamming, d') stay in the JSON report for them
    metrics = [*_SINGLE_LABEL_HEADLINE, *_EVAL_METRICS[:3]] if single_label else list(_EVAL_METRICS)
    official = "official eval" if report.test_rule == "the eval source" else report.test_rule
    shown: dict[str, dict] = {}  # row name -> its figures: each split, and beside it its leak-free clips
    for name, m in report.splits.items():
        shown[f"test ({official})" if name == "test" else name] = m
        if "leak_free" in m:
            shown[f"{name} leak-free"] = m["leak_free"]

    def cell(split: dict, key: str, digits: int) -> str:
        return f"{split.get(key, float('nan')):.{digits}f}"

    wide = Table("split", "clips", *[column for column, _, _ in metrics], title=str(report.run_dir))
    for name, m in shown.items():
        wide.add_row(name, str(m["n_clips"]), *[cell(m, key, digits) for _, key, digits in metrics])

    def on_its_side() -> Table:  # one row per metric: as narrow as the splits' names
        table = Table("", *[Column(name, overflow="fold") for name in shown])
        table.title = str(report.run_dir)
        table.add_row("clips", *[str(m["n_clips"]) for m in shown.values()])
        for column, key, digits in metrics:
            table.add_row(column, *[cell(m, key, digits) for m in shown.values()])
        return table

    print_fitting(console, wide, on_its_side)
    test = report.splits.get("test")
    if test:
        aps = test["per_class_AP"]
        for title, classes in (("best", test["best_classes"]), ("worst", test["worst_classes"])):
            shown = ", ".join(f"{name} {aps[name]:.3f}" for name in classes)
            console.print(f"{title} classes on test (AP): {escape(shown)}")
    for name, m in report.splits.items():
        if m["n_classes"] < m.get("n_classes_total", m["n_classes"]):
            console.print(
                f"{name}: mAP averages over the {m['n_classes']} of {m['n_classes_total']} classes "
                "with a clip there"
            )
    for name, m in report.splits.items():
        if "leaked_clips" in m:
            where = "train or val" if name == "test" else "train"
            console.print(
                f"{name}: {m['leaked_clips']} of {m['n_clips']} clips have an identical copy in {where} "
                f"(`split` warned); {name} leak-free scores the other {m['leak_free']['n_clips']}",
                style="yellow",
            )
    single = (test or {}).get("single_label")
    if single:
        weakest = sorted(single["per_class"].items(), key=lambda item: item[1]["f1-score"])[:3]
        shown = ", ".join(
            f"{name} {v['precision']:.2f}/{v['recall']:.2f}" for name, v in weakest if v["support"]
        )
        console.print(f"weakest classes on test (precision/recall): {escape(shown)}")
    if report.not_saved is None:
        console.print(
            f"report: {report.report_path}"
            + (f"; confusion matrix: {report.confusion}" if report.confusion else "")
        )


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
    from audiotok_cli.results.evaluate import evaluate
    from audiotok_cli.store import Pick

    return evaluate(
        settings.resolved_paths,
        run,
        model,
        Pick(vocab, k, features),
        settings.train.device,
        settings.train.batch_size,
        on_its_own=True,
    )
