"""Commands of the per-clip pipeline: split, featurize, vocab, tokenize, inspect, export-tokens."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from audiotok_cli.audio import transforms
from audiotok_cli.cli.app import command, command_settings, console, counted, err_console
from audiotok_cli.cli.options import (
    AudioDirOpt,
    DaskOpt,
    FeaturesOpt,
    MirrorOpt,
    OverwriteOpt,
    PickKOpt,
    RunsOpt,
    SourceOpt,
    StoreOpt,
    VocabOpt,
    WorkersOpt,
    option,
    setting,
)
from audiotok_cli.errors import SettingsError
from audiotok_cli.parallel import available_cores
from audiotok_cli.settings import AudioSettings, FeaturesSettings, SplitSettings, VocabSettings
from audiotok_cli.tokenizer import quantizers


def _render_split(r) -> None:
    how = " by group" * r.val_by_group + ", stratified by class" * r.stratified
    console.print(
        f"split (val_ratio {r.val_ratio:.2f}{how}, seed {r.seed}; test: {r.test_rule}): "
        + ", ".join(
            f"{count} {name}" + f" ({counted(r.classes[name], 'class')})" * bool(count and r.classes)
            for name, count in r.counts.items()
        )
        + f"; {r.unlabeled_left_out} clips without labels left out"
        + (f", {r.other_sources_left_out} of other sources unassigned" if r.other_sources_left_out else "")
    )
    if r.published_test:
        console.print("test is the collection's published test split; --test-ratio R draws one instead")
    if r.dropped_leaked:
        console.print(
            f"{counted(r.dropped_leaked, 'clip')} with an identical copy on a training side left out of "
            "test and val (--drop-leaked)"
        )


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """Repeatable and comma-separated option values as one tuple (None when not given)."""
    if not values:
        return None
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


@command("split", render=_render_split, seeded=True)
def split_cmd(
    val_ratio: Annotated[float | None, setting(SplitSettings, "val_ratio", "--val-ratio")] = None,
    keep_unlabeled: Annotated[
        bool | None, setting(SplitSettings, "keep_unlabeled", "--keep-unlabeled/--no-keep-unlabeled")
    ] = None,
    train_source: Annotated[
        list[str] | None,
        option(
            "--train-source",
            help="Split only this source's clips into train and val; repeatable.",
            default="every source not tested",
        ),
    ] = None,
    test_fold: Annotated[int | None, setting(SplitSettings, "test_fold", "--test-fold")] = None,
    test_group: Annotated[
        list[str] | None,
        option("--test-group", help="Clips of these groups are test; repeatable or A,B.", default="none"),
    ] = None,
    test_source: Annotated[
        list[str] | None,
        option("--test-source", help="Clips of this source are test; repeatable.", default="eval only"),
    ] = None,
    test_ratio: Annotated[float | None, setting(SplitSettings, "test_ratio", "--test-ratio")] = None,
    val_by_group: Annotated[
        bool | None, setting(SplitSettings, "val_by_group", "--val-by-group/--no-val-by-group")
    ] = None,
    stratify: Annotated[bool | None, setting(SplitSettings, "stratify", "--stratify/--no-stratify")] = None,
    drop_leaked: Annotated[
        bool | None, setting(SplitSettings, "drop_leaked", "--drop-leaked/--keep-leaked")
    ] = None,
    store: StoreOpt = None,
):
    """Test by the eval source, a fold, groups or sources (else a seeded draw); val by a seeded draw
    of each clip, or of its group (stratified by class for single-label collections)."""
    from audiotok_cli.stages.split import split

    settings = command_settings(
        paths={"store": store},
        split={
            "val_ratio": val_ratio,
            "keep_unlabeled": keep_unlabeled,
            "train_sources": _names(train_source),
            "test_fold": test_fold,
            "test_groups": _names(test_group),
            "test_sources": _names(test_source),
            "test_ratio": test_ratio,
            "val_by_group": val_by_group,
            "stratify": stratify,
            "drop_leaked": drop_leaked,
        },
    )
    return split(settings.store_path, settings.split, settings.seed)


def _render_featurize(result) -> None:
    damaged = f"; {counted(len(result.warned), 'file')} decoded past damage (warnings above)"
    console.print(
        f"features {result.name!r}: {counted(result.clips_done, 'clip')} featurized, "
        f"{result.clips_already_done} already done, {counted(result.shards_written, 'shard')} written "
        f"({result.front_end})" + (damaged if result.warned else "")
    )


@command("featurize", render=_render_featurize)
def featurize_cmd(
    source: SourceOpt = None,
    sample_rate: Annotated[int | None, setting(AudioSettings, "sample_rate", "--sample-rate")] = None,
    n_fft: Annotated[int | None, setting(AudioSettings, "n_fft", "--n-fft")] = None,
    hop_length: Annotated[int | None, setting(AudioSettings, "hop_length", "--hop-length")] = None,
    n_mels: Annotated[int | None, setting(AudioSettings, "n_mels", "--n-mels")] = None,
    clip_seconds: Annotated[float | None, setting(AudioSettings, "clip_seconds", "--clip-seconds")] = None,
    normalize: Annotated[
        bool | None, setting(AudioSettings, "normalize", "--normalize/--no-normalize")
    ] = None,
    encoder: Annotated[str | None, setting(AudioSettings, "encoder", "--encoder")] = None,
    layer: Annotated[list[int] | None, setting(AudioSettings, "layer", "--layer")] = None,
    name: Annotated[str | None, setting(FeaturesSettings, "name", "--name")] = None,
    workers: WorkersOpt = None,
    dask: DaskOpt = None,
    from_mirror: Annotated[
        bool,
        typer.Option(
            "--from-mirror", help="Read every clip's audio from the mirror files, not the expanded files."
        ),
    ] = False,
    mirror_dir: MirrorOpt = None,
    audio_dir: AudioDirOpt = None,
    store: StoreOpt = None,
    runs_dir: RunsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Audio files -> log-mel frames in the store (or an encoder's states: a transformers audio
    encoder, or a units run of `pretrain --objective masked-units`), shard by shard; reruns do only
    pending clips."""
    from audiotok_cli.stages.featurize import featurize

    audio = {
        "sample_rate": sample_rate,
        "n_fft": n_fft,
        "hop_length": hop_length,
        "n_mels": n_mels,
        "clip_seconds": clip_seconds,
        "normalize": normalize,
        "encoder": encoder,
        "layer": layer,
    }
    settings = command_settings(
        paths={"store": store, "audio_dir": audio_dir, "mirror_dir": mirror_dir, "runs_dir": runs_dir},
        audio=audio,
        features={"name": name},
    )
    return featurize(
        settings.store_path,
        settings.audio_dir,
        settings.audio,
        settings.features,
        sources=source,
        overwrite=overwrite,
        workers=workers or available_cores(),
        dask=dask,
        mirror_dir=settings.mirror_dir,
        from_mirror=from_mirror,
        runs_dir=settings.runs_dir,
    )


def _render_vocab(r) -> None:
    space = f"transformed by {', '.join(r.transforms)}" if r.transforms else "untransformed"
    console.print(
        f"vocab {r.name!r}: {r.n_clusters} centroids"
        + ("" if r.quantizer == "kmeans" else f" a codebook ({r.quantizer})")
        + f" from {r.n_frames} frames of {r.n_train_clips} train clips of {r.features!r}; held-out "
        f"inertia {r.heldout_inertia:.4g} (mean squared distance: comparable only between vocabularies "
        f"of {r.features!r} frames {space}; transforms change the space it is measured in)"
    )


@command("vocab", render=_render_vocab, seeded=True)
def vocab_cmd(
    k: Annotated[int | None, setting(VocabSettings, "n_clusters", "--k")] = None,
    niter: Annotated[int | None, setting(VocabSettings, "niter", "--niter")] = None,
    init: Annotated[str | None, setting(VocabSettings, "init", "--init")] = None,
    sample_frames: Annotated[int | None, setting(VocabSettings, "sample_frames", "--sample-frames")] = None,
    transform: Annotated[
        list[str] | None,
        option(
            "--transform",
            help="Transform each clip's frames before k-means (and tokenize, predict), in order; "
            f"repeatable: {transforms.PER_CLIP}; then, fitted on the train frames and kept with the "
            f"vocabulary: {transforms.FITTED}. Recommended recipes: README, 'Which tokenizer'.",
            default="none",
        ),
    ] = None,
    quantizer: Annotated[
        str | None,
        setting(
            VocabSettings,
            "quantizer",
            "--quantizer",
            help=f"How a frame becomes ids: {quantizers.DESCRIBED}.",
        ),
    ] = None,
    features: FeaturesOpt = None,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
):
    """FAISS k-means over train-split frames -> a vocabulary of k centroids named FEATURES-kK
    (FEATURES-TRANSFORMS-kK with --transform; FEATURES-pqMxK with --quantizer pq:M)."""
    from audiotok_cli.stages.vocab import build_vocab

    settings = command_settings(
        paths={"store": store},
        vocab={
            "n_clusters": k,
            "niter": niter,
            "init": init,
            "sample_frames": sample_frames,
            "transforms": _names(transform),
            "quantizer": quantizer,
        },
    )
    return build_vocab(
        settings.store_path, settings.vocab, settings.seed, features, overwrite, workers or available_cores()
    )


def _render_tokenize(r) -> None:
    console.print(
        f"tokens {r.name!r}: {counted(r.clips_done, 'clip')} tokenized, {r.clips_already_done} already done"
    )
    m = r.merged
    if m:
        console.print(
            f"tokens {m.name!r}: {counted(m.clips_done, 'clip')} merged; {m.n_tokens} ids; train clips' "
            f"sequences {m.mean_length:.1f} -> {m.mean_merged_length:.1f} ids on average"
        )


@command("tokenize", render=_render_tokenize)
def tokenize_cmd(
    vocab: VocabOpt = None,
    k: PickKOpt = None,
    features: FeaturesOpt = None,
    merges: Annotated[
        int,
        typer.Option(
            "--merges",
            help="Also merge the tokens: byte-pair merges learned from the train split's sequences (Hugging "
            "Face tokenizers) -> tokens VOCAB-bpeN, with up to N more ids and shorter sequences.",
            min=0,
        ),
    ] = 0,
    workers: WorkersOpt = None,
    dask: DaskOpt = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Every featurized clip -> the sequence of its frames' nearest centroid ids."""
    from audiotok_cli.stages.tokenize import tokenize
    from audiotok_cli.store import Pick

    settings = command_settings(paths={"store": store})
    pick = Pick(vocab, k, features)
    return tokenize(settings.store_path, pick, overwrite, workers or available_cores(), dask, merges)


def _render_inspect(r) -> None:
    from rich import box
    from rich.table import Table

    transforms = f", transforms {', '.join(r.transforms)}" if r.transforms else ""
    heldout = "" if r.heldout_inertia is None else f", held-out inertia {r.heldout_inertia:.4g}"
    console.print(f"vocab {r.name!r}: k={r.n_clusters}{transforms}{heldout}")
    console.print(f"on train: {r.dead} clusters dead, {r.tiny} tiny")
    table = Table(
        "split", "code", "clips", "tok/clip", "H bits", "perpl.", "I bits", "I/H(class)",
        box=box.SIMPLE_HEAD, show_edge=False,
    )  # fmt: skip
    codes = r.codes or {"": r.splits}  # pq/rvq: each codebook, then their joint code
    for split in r.splits:
        for code, uses in codes.items():
            u = uses[split]
            table.add_row(
                split,
                code or "-",
                str(u.clips),
                f"{u.tokens_per_clip:.1f}",
                f"{u.entropy_bits:.2f}",
                f"{u.perplexity:.1f}" if u.perplexity < 100 else f"{u.perplexity:.0f}",
                "n/a" if u.thin else f"{u.label_information_bits:.3f}",
                "n/a" if u.thin else f"{u.label_information_share:.1%}",
            )
    console.print(table)
    console.print("H: entropy of token use; I: information a token carries about its clip's class")
    if any(uses[split].thin for uses in codes.values() for split in r.splits):
        console.print("n/a (too few clips): too few tokens a (code, class) cell; I would read high")
    for why in r.small.values():
        err_console.print(f"[yellow]warning: {escape(why)}")
    if r.plot:
        console.print(f"plot: {r.plot}")


@command("inspect", render=_render_inspect)
def inspect_cmd(
    vocab: VocabOpt = None,
    k: PickKOpt = None,
    features: FeaturesOpt = None,
    plot: Annotated[
        Path | None, option("--plot", help="Also draw the codebook and its use (PNG).", default="no plot")
    ] = None,
    codebook: Annotated[
        int | None,
        option("--codebook", help="Which codebook of pq:M or rvq:R tokens (0 first).", default="0"),
    ] = None,
    store: StoreOpt = None,
):
    """What a vocabulary's tokens hold: cluster use, perplexity, and what a token says of the classes."""
    from audiotok_cli.stages.inspect_vocab import inspect_vocab
    from audiotok_cli.store import Pick

    settings = command_settings(paths={"store": store})
    return inspect_vocab(settings.store_path, Pick(vocab, k, features), plot, codebook)


@command(
    "export-tokens",
    render=lambda r: console.print(f"wrote {counted(r.clips, 'clip')} of tokens {r.tokens!r} to {r.path}"),
)
def export_tokens_cmd(
    output: Annotated[Path, typer.Argument(help="The Parquet file (or, with --format datasets, folder).")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="parquet: one table with a split column; datasets: a DatasetDict (save_to_disk), "
            "the store's splits as its splits.",
        ),
    ] = "parquet",
    vocab: VocabOpt = None,
    k: PickKOpt = None,
    features: FeaturesOpt = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Tokens as Parquet (clip id, source, split, labels, token ids) for any text-model toolchain, or
    as a `datasets` DatasetDict; either loads in Hugging Face `datasets` with the store's class names
    (ClassLabel)."""
    from audiotok_cli.stages.export_tokens import FORMATS, export_datasets, export_tokens
    from audiotok_cli.store import Pick

    if format not in FORMATS:
        raise SettingsError(f"--format {format!r}: choose {' or '.join(FORMATS)}")
    settings = command_settings(paths={"store": store})
    export = export_datasets if format == "datasets" else export_tokens
    return export(settings.store_path, output, Pick(vocab, k, features), overwrite)
