"""The `audiotok` command line: each command parses options, builds settings, calls one library
function and renders its result. Errors become one red line on stderr and an exit code (errors.py).

Stage modules are imported inside their command: torch, transformers and librosa take seconds to
import, and `audiotok info` or `--help` should not wait for them.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from audiotok_cli import __version__
from audiotok_cli.errors import AudiotokError, DataError
from audiotok_cli.settings import Settings, load_settings, setting_sources

console = Console()
err_console = Console(stderr=True)
app = typer.Typer(
    name="audiotok",
    help="Audio-token research on AudioSet: log-mel frames -> FAISS vocabulary -> token models -> mAP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by several commands -------------------------------------------------------------
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="Zarr store [default: DATA_DIR/audiotok.zarr].")
]
MirrorOpt = Annotated[
    Path | None, typer.Option("--mirror-dir", help="Hub mirror [default: DATA_DIR/mirror].")
]
AudioDirOpt = Annotated[
    Path | None, typer.Option("--audio-dir", help="Expanded audio [default: DATA_DIR/audio].")
]
RunsOpt = Annotated[Path | None, typer.Option("--runs-dir", help="Training runs [default: DATA_DIR/runs].")]
SourceOpt = Annotated[
    list[str] | None,
    typer.Option("--source", help="bal_train, unbal_train or eval; repeatable [default: all]."),
]
KOpt = Annotated[int | None, typer.Option("--k", help="Vocabulary size (vocab.n_clusters).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace this stage's existing output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(ctx: typer.Context, **groups: Any) -> Settings:
    """Settings with the root options and this command's flags on top of env and `.env`."""
    overrides = {**ctx.obj, **groups}
    ctx.meta["overrides"] = overrides
    return load_settings(overrides)


def _paths(
    store: Path | None = None,
    mirror: Path | None = None,
    audio: Path | None = None,
    runs: Path | None = None,
) -> dict:
    return {"mirror_dir": mirror, "audio_dir": audio, "store": store, "runs_dir": runs}


def _cli_errors(command: Callable) -> Callable:
    """Map library errors to one red line on stderr and the error's exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AudiotokError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print(
                "[bold red]interrupted[/]: finished work is kept; run the command again to resume"
            )
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        console.print(f"audiotok {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Root of default paths (env AUDIOTOK_DATA_DIR)."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for splits, k-means and training.")] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Set logging and global seeds once; commands add their own flags on top (torch is seeded
    locally by `train`, so importing it is left to the commands that need it)."""
    ctx.obj = {"data_dir": data_dir, "seed": seed, "log_level": log_level}
    settings = _cli_errors(load_settings)(ctx.obj)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )
    random.seed(settings.seed)
    np.random.seed(settings.seed)


def demo_data_cmd(
    ctx: typer.Context,
    layout: Annotated[
        str, typer.Option("--layout", help="parquet (revision main) or tar (legacy).")
    ] = "parquet",
    clips: Annotated[int, typer.Option("--clips", help="Clips with audio, across bal_train and eval.")] = 320,
    seconds: Annotated[float, typer.Option("--seconds", help="Length of a full clip.")] = 10.0,
    mirror_dir: MirrorOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write the synthetic demo dataset: a mirror of agkphysics/AudioSet in the hub's own layout."""
    settings = _settings(ctx, paths=_paths(mirror=mirror_dir))
    from audiotok_cli.demo import write_demo_mirror

    result = write_demo_mirror(
        settings.mirror_dir,
        layout=layout,
        clips=clips,
        seconds=seconds,
        seed=settings.seed,
        overwrite=overwrite,
    )
    counts = ", ".join(f"{len(v)} {k}" for k, v in result.labels.items())
    console.print(
        f"wrote a {layout} demo mirror to {result.mirror_dir}: {counts} clips in {len(result.files)} files"
    )


def expand_cmd(
    ctx: typer.Context,
    source: SourceOpt = None,
    layout: Annotated[
        str | None, typer.Option("--layout", help="parquet or tar [default: detected].")
    ] = None,
    mirror_dir: MirrorOpt = None,
    audio_dir: AudioDirOpt = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Hub mirror files -> {audio_dir}/{source}/{ytid[:2]}/{ytid}.flac, and clips + labels in the store."""
    settings = _settings(ctx, paths=_paths(store, mirror_dir, audio_dir))
    from audiotok_cli.expand import expand

    results = expand(settings, source, layout, overwrite)
    for r in results:
        console.print(
            f"{r.source} ({r.layout}): {r.files_done} files expanded, {r.files_skipped} files skipped; "
            f"{r.clips_added} clips added, {r.clips_skipped} already in the store, {r.unlabeled} unlabeled"
        )
    for r in results:
        if r.unknown_mids:
            err_console.print(
                f"[yellow]{r.source}: ignored labels outside the 527 classes: {sorted(r.unknown_mids)}"
            )


def split_cmd(
    ctx: typer.Context,
    val_ratio: Annotated[
        float | None, typer.Option("--val-ratio", help="Share of training clips held out.")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Deterministic train/val split (seeded hash of each ytid); the eval source is the test split."""
    settings = _settings(ctx, paths=_paths(store), split={"val_ratio": val_ratio})
    from audiotok_cli.split import split

    result = split(settings)
    console.print(
        f"split (val_ratio {result.val_ratio:.2f}, seed {result.seed}): "
        + ", ".join(f"{count} {name}" for name, count in result.counts.items())
    )


def featurize_cmd(
    ctx: typer.Context,
    source: SourceOpt = None,
    sample_rate: Annotated[
        int | None, typer.Option("--sample-rate", help="Resample to this rate (Hz).")
    ] = None,
    n_fft: Annotated[int | None, typer.Option("--n-fft")] = None,
    hop_length: Annotated[int | None, typer.Option("--hop-length")] = None,
    n_mels: Annotated[int | None, typer.Option("--n-mels")] = None,
    normalize: Annotated[
        bool | None, typer.Option("--normalize/--no-normalize", help="Per-clip [0, 1] scaling.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Features group name.")] = None,
    audio_dir: AudioDirOpt = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Audio files -> log-mel frames in the store, shard by shard; reruns do only pending clips."""
    audio = {
        "sample_rate": sample_rate,
        "n_fft": n_fft,
        "hop_length": hop_length,
        "n_mels": n_mels,
        "normalize": normalize,
        "features_name": name,
    }
    settings = _settings(ctx, paths=_paths(store, audio=audio_dir), audio=audio)
    from audiotok_cli.featurize import featurize

    result = featurize(settings, source, overwrite)
    console.print(
        f"features {result.name!r}: {result.clips_done} clips featurized, "
        f"{result.clips_already_done} already done, {result.shards_written} shards written"
    )
    if result.failures:
        err_console.print(
            f"[yellow]{len(result.failures)} clips failed and stay pending; "
            f"first: {escape(result.failures[0])}"
        )


def vocab_cmd(
    ctx: typer.Context,
    k: KOpt = None,
    niter: Annotated[int | None, typer.Option("--niter", help="k-means iterations.")] = None,
    init: Annotated[str | None, typer.Option("--init", help="kmeans++ or random.")] = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """FAISS k-means over train-split frames -> a vocabulary of k centroids."""
    settings = _settings(ctx, paths=_paths(store), vocab={"n_clusters": k, "niter": niter, "init": init})
    from audiotok_cli.vocab import build_vocab

    result = build_vocab(settings, overwrite)
    console.print(
        f"vocab {result.name!r}: {result.n_clusters} centroids from {result.n_frames} frames of "
        f"{result.n_train_clips} train clips, inertia {result.inertia:.4g}"
    )


def tokenize_cmd(
    ctx: typer.Context, k: KOpt = None, store: StoreOpt = None, overwrite: OverwriteOpt = False
) -> None:
    """Every featurized clip -> the sequence of its frames' nearest centroid ids."""
    settings = _settings(ctx, paths=_paths(store), vocab={"n_clusters": k})
    from audiotok_cli.tokenize import tokenize

    result = tokenize(settings, overwrite)
    console.print(
        f"tokens {result.name!r}: {result.clips_done} clips tokenized, "
        f"{result.clips_already_done} already done"
    )


def train_cmd(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", help="simple, lstm or bert.")] = None,
    k: KOpt = None,
    vocab_size: Annotated[int | None, typer.Option("--vocab-size", help="Must equal --k when given.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="AdamW learning rate.")] = None,
    embed_dim: Annotated[int | None, typer.Option("--embed-dim")] = None,
    hidden_size: Annotated[int | None, typer.Option("--hidden-size")] = None,
    num_layers: Annotated[int | None, typer.Option("--num-layers")] = None,
    num_heads: Annotated[int | None, typer.Option("--num-heads")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    run_name: Annotated[
        str | None, typer.Option("--run-name", help="Run folder [default: MODEL-kK].")
    ] = None,
    store: StoreOpt = None,
    runs_dir: RunsOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a token model (multi-label BCE over the 527 classes); keeps the best val-mAP epoch."""
    settings = _settings(
        ctx,
        paths=_paths(store, runs=runs_dir),
        vocab={"n_clusters": k},
        model={
            "kind": model,
            "vocab_size": vocab_size,
            "embed_dim": embed_dim,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
        },
        train={
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "device": device,
            "run_name": run_name,
        },
    )
    from audiotok_cli.train import train

    result = train(settings, overwrite)
    console.print(
        f"trained {result.run_dir}: best val mAP {result.best_val_map:.4f} at epoch {result.best_epoch}"
    )


def eval_cmd(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option("--run", help="Run folder name [default: MODEL-kK].")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Picks the default run name.")] = None,
    k: KOpt = None,
    store: StoreOpt = None,
    runs_dir: RunsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """mAP, F1 and Hamming loss on val and the official eval set, beside the label-prior baseline."""
    settings = _settings(
        ctx, paths=_paths(store, runs=runs_dir), vocab={"n_clusters": k}, model={"kind": model}
    )
    from audiotok_cli.evaluate import evaluate

    report = evaluate(settings, run)
    if as_json:
        console.print_json(json.dumps(report.splits))
        return
    table = Table(
        "split",
        "clips",
        "mAP",
        "prior mAP",
        "F1 micro",
        "F1 macro",
        "Hamming",
        title=str(report.run_dir),
    )
    for name, m in report.splits.items():
        table.add_row(
            name,
            str(m["n_clips"]),
            f"{m['mAP']:.4f}",
            f"{m['prior_mAP']:.4f}",
            f"{m['f1_micro']:.4f}",
            f"{m['f1_macro']:.4f}",
            f"{m['hamming_loss']:.5f}",
        )
    console.print(table)
    console.print(f"report: {report.report_path}")


def info_cmd(
    ctx: typer.Context, store: StoreOpt = None, mirror_dir: MirrorOpt = None, as_json: JsonOpt = False
) -> None:
    """What the mirror and the store hold: files and clips per source, splits, features, vocab, tokens."""
    from audiotok_cli.info import describe

    settings = _settings(ctx, paths=_paths(store, mirror_dir))
    info = describe(settings)
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    stored = info["store"]
    if info["mirror"]:
        mirror = info["mirror"]
        table = Table(
            "source",
            "files",
            "clips",
            "GB",
            "clips in store",
            title=f"mirror {mirror['path']} ({mirror['layout']})",
        )
        for source, m in mirror["sources"].items():
            in_store = sum((stored or {}).get("clips", {}).get(source, {}).values())
            table.add_row(source, str(m["files"]), str(m["clips"]), f"{m['bytes'] / 1e9:.3f}", str(in_store))
        console.print(table)
    if stored:
        _render_store(stored)


def _render_store(info: dict[str, Any]) -> None:
    console.print(f"[bold]{info['store']}[/] (format {info['format_version']}): {info['n_clips']} clips")
    table = Table("source", "unassigned", "train", "val", "test", title="clips")
    for source, counts in info["clips"].items():
        table.add_row(source, *(str(v) for v in counts.values()))
    console.print(table)
    groups = Table("kind", "name", "done", "pending", "made with", title="groups")
    for kind in ("features", "tokens"):
        for g in info[kind]:
            made = g["attrs"].get("settings") or {"vocab": g["attrs"].get("vocab")}
            groups.add_row(kind, g["name"], str(g["done"]), str(g["pending"]), json.dumps(made))
    for g in info["vocab"]:
        a = g["attrs"]
        groups.add_row(
            "vocab",
            g["name"],
            str(a["n_clusters"]),
            "",
            f"{a['n_frames']} frames, inertia {a['inertia']:.4g}",
        )
    console.print(groups)


def fetch_cmd(
    ctx: typer.Context,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", help="bal_train, unbal_train or eval; repeatable [default: bal_train, eval]."
        ),
    ] = None,
    shards: Annotated[
        str | None, typer.Option("--shards", help="File indices per source, e.g. 0-49 or 0-9,20.")
    ] = None,
    repo: Annotated[str, typer.Option("--repo", help="Hub dataset repo.")] = "agkphysics/AudioSet",
    revision: Annotated[
        str, typer.Option("--revision", help="Branch, tag or commit (legacy tar layout: 5a2fa42...).")
    ] = "main",
    workers: Annotated[int, typer.Option("--workers", help="Parallel downloads.")] = 4,
    max_gb: Annotated[
        float | None, typer.Option("--max-gb", help="Refuse to download more than this.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be downloaded, and free disk.")
    ] = False,
    mirror_dir: MirrorOpt = None,
) -> None:
    """Download AudioSet from the Hugging Face hub into the mirror: resumable, sha256-verified."""
    from audiotok_cli.fetch import fetch

    settings = _settings(ctx, paths=_paths(mirror=mirror_dir))
    result = fetch(
        settings,
        source or ["bal_train", "eval"],
        repo_id=repo,
        revision=revision,
        shards=shards,
        workers=workers,
        max_gb=max_gb,
        dry_run=dry_run,
    )
    plan = result.plan
    if dry_run:
        table = Table(
            "file", "GB", title=f"{repo}@{revision} ({plan.layout}): {len(plan.todo)} files to fetch"
        )
        for entry in plan.todo:
            table.add_row(entry.path, f"{entry.size / 1e9:.3f}")
        console.print(table)
        console.print(
            f"would fetch {len(plan.todo)} files, {plan.missing_bytes / 1e9:.3f} GB; "
            f"{len(plan.done)} already complete; {plan.free_bytes / 1e9:.1f} GB free in {settings.mirror_dir}"
        )
        return
    console.print(
        f"fetched {len(result.fetched)} files ({result.bytes_fetched / 1e9:.3f} GB), "
        f"skipped {len(plan.done)} complete, failed {len(result.failed)} "
        f"({plan.layout}, {settings.mirror_dir})"
    )
    if result.failed:
        raise DataError(
            f"{len(result.failed)} files failed sha256 verification twice and were deleted: "
            f"{', '.join(result.failed)}; run fetch again"
        )


def prune_cmd(
    ctx: typer.Context,
    source: SourceOpt = None,
    shards: Annotated[
        str | None, typer.Option("--shards", help="File indices, as numbered by fetch.")
    ] = None,
    with_audio: Annotated[
        bool, typer.Option("--with-audio", help="Also delete those clips' expanded audio.")
    ] = False,
    mirror_dir: MirrorOpt = None,
    audio_dir: AudioDirOpt = None,
    store: StoreOpt = None,
) -> None:
    """Delete mirror files whose clips are all featurized (and only those), to free disk."""
    from audiotok_cli.prune import prune

    settings = _settings(ctx, paths=_paths(store, mirror_dir, audio_dir))
    result = prune(settings, source or ["bal_train", "unbal_train", "eval"], shards, with_audio)
    console.print(
        f"pruned {len(result.deleted)} mirror files ({result.bytes_freed / 1e9:.3f} GB); "
        f"kept {len(result.kept)} with clips not yet featurized"
    )
    for path, pending in result.kept.items():
        console.print(f"  kept {path}: {pending} clips not featurized")


def config_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Effective settings and where each came from: cli, env, .env or default."""
    settings = _settings(ctx)
    rows = setting_sources(settings, ctx.meta["overrides"])
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table("setting", "value", "source", "environment variable")
    for row in rows:
        table.add_row(row["name"], str(row["value"]), row["source"], row["env"])
    console.print(table)


COMMANDS: dict[str, Callable] = {
    "fetch": fetch_cmd,
    "demo-data": demo_data_cmd,
    "expand": expand_cmd,
    "split": split_cmd,
    "featurize": featurize_cmd,
    "vocab": vocab_cmd,
    "tokenize": tokenize_cmd,
    "train": train_cmd,
    "eval": eval_cmd,
    "info": info_cmd,
    "config": config_cmd,
    "prune": prune_cmd,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_cli_errors(_command))


def main() -> None:
    app()
