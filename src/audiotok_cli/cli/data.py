"""Commands that bring audio in and clear it out: fetch, demo-data, expand, import, prune."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from audiotok_cli import corpora
from audiotok_cli.audioset.mirror import LAYOUTS
from audiotok_cli.cli.app import command, command_settings, console, counted, err_console
from audiotok_cli.cli.options import (
    AudioDirOpt,
    FeaturesOpt,
    MirrorOpt,
    OverwriteOpt,
    SourceOpt,
    StoreOpt,
    option,
)

LayoutChoice = f"One of {', '.join(LAYOUTS)}."
SHOWN_FILES = 5


def _render_fetch(result) -> None:
    plan = result.plan
    if result.dry_run:
        table = Table(
            "file",
            "GB",
            title=f"{result.repo_id}@{result.revision} ({plan.layout}): "
            f"{counted(len(plan.todo), 'file')} to fetch",
        )
        for entry in plan.todo:
            table.add_row(entry.path, f"{entry.size / 1e9:.3f}")
        console.print(table)
        console.print(
            f"would fetch {counted(len(plan.todo), 'file')}, {plan.missing_bytes / 1e9:.3f} GB; "
            f"{len(plan.done)} already complete; {plan.free_bytes / 1e9:.1f} GB free in {result.mirror_dir}"
        )
        return
    console.print(
        f"fetched {counted(len(result.fetched), 'file')} ({result.bytes_fetched / 1e9:.3f} GB), "
        f"skipped {len(plan.done)} complete, failed {len(result.failed)} ({plan.layout}, {result.mirror_dir})"
    )


@command("fetch", render=_render_fetch)
def fetch_cmd(
    source: Annotated[
        list[str] | None,
        option("--source", help="bal_train, unbal_train or eval; repeatable.", default="bal_train, eval"),
    ] = None,
    shards: Annotated[
        str | None,
        option("--shards", help="File indices per source, e.g. 0-49 or 0-9,20.", default="all"),
    ] = None,
    repo: Annotated[str, typer.Option("--repo", help="Hub dataset repo.")] = "agkphysics/AudioSet",
    revision: Annotated[
        str, typer.Option("--revision", help="Branch, tag or commit (legacy tar layout: 5a2fa42...).")
    ] = "main",
    workers: Annotated[int, typer.Option("--workers", help="Parallel downloads.", min=1)] = 4,
    max_gb: Annotated[
        float | None,
        option("--max-gb", help="Refuse to download more than this.", default="no limit"),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for any answer from the hub.", min=1)
    ] = 60.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be downloaded, and free disk.")
    ] = False,
    mirror_dir: MirrorOpt = None,
):
    """Download AudioSet from the Hugging Face hub into the mirror: resumable, sha256-verified."""
    from audiotok_cli.audioset.fetch import fetch

    settings = command_settings(paths={"mirror_dir": mirror_dir})
    result = fetch(
        settings.mirror_dir,
        source or ["bal_train", "eval"],
        repo_id=repo,
        revision=revision,
        shards=shards,
        workers=workers,
        max_gb=max_gb,
        dry_run=dry_run,
        timeout=timeout,
    )
    return result


@command(
    "demo-data",
    render=lambda r: console.print(
        f"wrote a {r.layout} demo mirror to {r.mirror_dir}: "
        + ", ".join(f"{len(v)} {k}" for k, v in r.labels.items())
        + f" clips in {counted(len(r.files), 'file')}"
    ),
    seeded=True,
)
def demo_data_cmd(
    layout: Annotated[str, typer.Option("--layout", help=LayoutChoice)] = "parquet",
    clips: Annotated[int, typer.Option("--clips", help="Clips with audio, across bal_train and eval.")] = 320,
    seconds: Annotated[float, typer.Option("--seconds", help="Length of a full clip.")] = 10.0,
    mirror_dir: MirrorOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Write the synthetic demo dataset: a mirror of agkphysics/AudioSet in the hub's own layout."""
    from audiotok_cli.audioset.demo import write_demo_mirror

    settings = command_settings(paths={"mirror_dir": mirror_dir})
    return write_demo_mirror(
        settings.mirror_dir,
        layout=layout,
        clips=clips,
        seconds=seconds,
        seed=settings.seed,
        overwrite=overwrite,
    )


def _render_expand(report) -> None:
    for r in report.sources:
        if report.repair:
            console.print(f"{r.source}: extracted the audio of {r.repaired} failed clips again")
            continue
        console.print(
            f"{r.source} ({r.layout}): {counted(r.files_done, 'file')} expanded, {r.files_skipped} skipped; "
            f"{counted(r.clips_added, 'clip')} added, {r.clips_skipped} already in the store, "
            f"{r.unlabeled} unlabeled, {len(r.skipped)} entries without usable audio skipped, "
            f"{counted(len(r.bad_files), 'file')} unreadable"
        )
    for r in report.sources:
        if r.unknown_mids:
            err_console.print(
                f"[yellow]{r.source}: ignored labels outside the 527 classes: {sorted(r.unknown_mids)}"
            )


@command("expand", render=_render_expand)
def expand_cmd(
    source: SourceOpt = None,
    layout: Annotated[str | None, option("--layout", help=LayoutChoice, default="detected")] = None,
    mirror_dir: MirrorOpt = None,
    audio_dir: AudioDirOpt = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Only extract again the audio of clips that featurize could not read."),
    ] = False,
    no_audio: Annotated[
        bool,
        typer.Option("--no-audio", help="Record clips and labels only; featurize reads the mirror's audio."),
    ] = False,
):
    """Hub mirror files -> {audio_dir}/{source}/{ytid[:2]}/{ytid}.flac, and clips + labels in the store."""
    from audiotok_cli.stages.expand import expand

    settings = command_settings(paths={"mirror_dir": mirror_dir, "audio_dir": audio_dir, "store": store})
    return expand(settings.resolved_paths, source, layout, overwrite, repair, audio=not no_audio)


def _render_prune(result) -> None:
    console.print(
        f"pruned {len(result.deleted)} mirror files ({result.bytes_freed / 1e9:.3f} GB); "
        f"kept {len(result.kept)} with clips not yet featurized"
    )
    for path, pending in result.kept.items():
        console.print(f"  kept {escape(str(path))}: {counted(pending, 'clip')} not featurized")
    for path, why in result.damaged.items():
        console.print(
            f"  [yellow]kept {escape(str(path))}: its clips' features do not read back ({escape(why)})"
        )


def _render_import(r) -> None:
    classes = "AudioSet's 527 classes" if r.audioset_classes else f"its own {r.n_classes} classes"
    protocol = [f"folds {', '.join(map(str, r.folds))}"] * bool(r.folds) + [f"{r.groups} groups"] * bool(
        r.groups
    )
    console.print(
        f"{r.name} ({r.layout}, {r.root}): {counted(r.clips_added, 'clip')} added, "
        f"{r.clips_known} already in the store, {r.unlabeled} unlabeled, "
        f"{counted(len(r.unreadable), 'unreadable file')} skipped; {classes}"
        + "".join(f"; {part}" for part in protocol)
    )
    for path, why in list(r.unreadable.items())[:SHOWN_FILES]:
        console.print(f"  unreadable {escape(path)}: {escape(why)}")
    if len(r.unreadable) > SHOWN_FILES:
        console.print(f"  ... and {len(r.unreadable) - SHOWN_FILES} more (`--json` lists all)")
    if r.files_gone:
        console.print(
            f"[yellow]{counted(len(r.files_gone), 'file')} imported before are gone from {escape(r.root)} "
            f"(their clips stay, with what was made from them): {escape(_first(r.files_gone))}"
        )
    if r.files_changed:
        console.print(
            f"[yellow]{counted(len(r.files_changed), 'file')} changed since imported: "
            f"{escape(_first(r.files_changed))}; {r.rows_pending} rows of their features and tokens are "
            "pending again: run `audiotok featurize`, then `audiotok tokenize`"
        )
    if r.relabeled:
        console.print(
            f"[yellow]{counted(len(r.relabeled), 'clip')} relabeled as the collection now labels them: "
            f"{escape(_first(r.relabeled))}; the split and the runs were made with the old labels: run "
            "`audiotok split`, then train again"
        )
    if r.moved:
        console.print(
            f"[yellow]{counted(len(r.moved), 'clip')} moved to the fold or group the collection now gives "
            f"them: {escape(_first(r.moved))}; the split and the runs were made with the old ones: run "
            "`audiotok split`, then train again"
        )
    if r.duplicate_files:
        console.print(
            f"{counted(r.duplicate_files, 'clip')} of the store have an identical copy ({r.dedupe}: "
            f"{counted(r.duplicate_sets, 'set')}); each set is one group, so no split separates it"
            + f" ({counted(r.regrouped, 'clip')} regrouped)"
            * bool(r.regrouped)
        )
    if r.copies_across_folds:
        err_console.print(
            f"[yellow]warning: the collection's own folds put the copies of "
            f"{counted(r.copies_across_folds, 'set')} in different folds; `split --test-fold` and "
            "`train --cv` keep its folds as published"
        )


def _first(paths: list[str]) -> str:
    return ", ".join(paths[:SHOWN_FILES]) + (
        f", ... (`--json` lists all {len(paths)})" if len(paths) > SHOWN_FILES else ""
    )


@command("import", render=_render_import)
def import_cmd(
    root: Annotated[
        Path,
        typer.Argument(
            help="The collection's root folder, or a Hugging Face datasets export (.parquet, .arrow, or a "
            "folder of them) with an audio column.",
            show_default=False,
        ),
    ],
    manifest: Annotated[
        Path | None,
        option(
            "--manifest",
            help="CSV with columns path (relative to ROOT) and labels (';'-separated), optional fold, "
            "group, source.",
            default="none: a published layout, an audiofolder or class folders",
        ),
    ] = None,
    layout: Annotated[
        str | None,
        option("--layout", help=f"One of {', '.join(corpora.LAYOUTS)}.", default="detected"),
    ] = None,
    label_column: Annotated[
        str | None,
        option(
            "--label-column",
            help="The label column of a Hugging Face audiofolder's metadata.csv or metadata.jsonl.",
            default="label",
        ),
    ] = None,
    name: Annotated[
        str | None,
        option(
            "--name", help="The collection's name, the first part of its clip ids.", default="ROOT's name"
        ),
    ] = None,
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy the files under --audio-dir/NAME and read them there.")
    ] = False,
    dedupe: Annotated[
        str,
        typer.Option(
            "--dedupe",
            help="How identical files are found (and kept in one group): exact (the same bytes) or near "
            "(the same decoded samples, in any container).",
        ),
    ] = "exact",
    audio_dir: AudioDirOpt = None,
    store: StoreOpt = None,
):
    """Local labelled audio (a manifest, class folders, a Hugging Face audiofolder or datasets export,
    ESC-50, UrbanSound8K) -> clips in the store."""
    from audiotok_cli.stages.import_audio import import_collection

    settings = command_settings(paths={"store": store, "audio_dir": audio_dir})
    copy_to = settings.audio_dir if copy else None
    return import_collection(
        settings.store_path, root, name, layout, manifest, copy_to, dedupe, label_column, settings.audio_dir
    )


@command("prune", render=_render_prune)
def prune_cmd(
    source: SourceOpt = None,
    shards: Annotated[
        str | None, option("--shards", help="File indices, as numbered by fetch.", default="all")
    ] = None,
    with_audio: Annotated[
        bool, typer.Option("--with-audio", help="Also delete those clips' expanded audio.")
    ] = False,
    features: FeaturesOpt = None,
    mirror_dir: MirrorOpt = None,
    audio_dir: AudioDirOpt = None,
    store: StoreOpt = None,
):
    """Delete mirror files whose clips are all featurized (and only those), to free disk."""
    from audiotok_cli.stages.prune import prune

    settings = command_settings(paths={"mirror_dir": mirror_dir, "audio_dir": audio_dir, "store": store})
    return prune(
        settings.resolved_paths, source or ["bal_train", "unbal_train", "eval"], shards, with_audio, features
    )
