"""Commands that look at what is there: info (what the mirror and store hold), verify (read all of
it, say what is damaged) and config (effective settings)."""

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from audiotok_cli.cli.app import cli_overrides, command, command_settings, console, err_console
from audiotok_cli.cli.options import MirrorOpt, RunsOpt, StoreOpt
from audiotok_cli.settings import setting_sources

SHOWN_FAILURES = 10


def _render_info(info: dict[str, Any]) -> None:
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
        for m in mirror["sources"].values():
            for path, problem in m["damaged"].items():
                console.print(f"[yellow]damaged mirror file {escape(path)}: {escape(problem)}")
    if stored:
        _render_store(stored)


def _render_store(info: dict[str, Any]) -> None:
    console.print(
        f"[bold]{info['store']}[/] (Zarr v3; audiotok store format {info['format_version']}): "
        f"{info['n_clips']} clips"
    )
    own = info.get("classes")
    shown = ", ".join(own[:8]) + (", ..." if own and len(own) > 8 else "") if own else ""
    console.print(f"classes: its own {len(own)} ({escape(shown)})" if own else "classes: AudioSet's 527")
    for name, c in info.get("collections", {}).items():
        skipped = f", {len(c['unreadable'])} unreadable file(s) skipped" if c["unreadable"] else ""
        skipped += f", {len(c['gone'])} file(s) gone since imported" if c.get("gone") else ""
        skipped += (
            f", {len(c['changed'])} file(s) changed at the last import (their clips pending again)"
            if c.get("changed")
            else ""
        )
        console.print(f"collection {name} ({c['layout']}): {escape(c['root'])}{skipped}")
    if info["writer"]:
        w = info["writer"]
        console.print(
            f"being written by pid {w['pid']} on {w['host']} (`{w['command']}`, since {w['started']})"
        )
    table = Table("source", "unassigned", "train", "val", "test", title="clips")
    for source, counts in info["clips"].items():
        table.add_row(source, *(str(v) for v in counts.values()))
    console.print(table)
    groups = Table("kind", "name", "done", "pending", "made from", title="features, vocabularies and tokens")
    for g in info["features"]:
        made = escape(g["front_end"]) + (" [red](stale)" if g["stale"] else "")
        groups.add_row("features", g["name"], str(g["done"]), str(g["pending"]), made)
    for g in info["vocab"]:
        r = g["record"]
        heldout = r.get("heldout_inertia")
        made = f"features {r['features']!r}: {r['n_frames']} frames" + (
            f", held-out inertia {heldout:.4g}" if heldout is not None else ""
        )
        groups.add_row("vocab", g["name"], str(r["n_clusters"]), "", made)
    for g in info["tokens"]:
        made = f"vocab {g['record']['vocab']!r}" + (" [red](stale)" if g["stale"] else "")
        groups.add_row("tokens", g["name"], str(g["done"]), str(g["pending"]), made)
    console.print(groups)
    for kind in ("features", "tokens"):  # problems print as whole lines: a table cell would wrap the fix
        for g in info[kind]:
            if g["stale"]:
                console.print(f"[red]stale {kind} {g['name']!r}:[/] {escape(g['stale'])}")
    for g in info["damaged"]:
        console.print(f"[red]damaged {g['kind']} {g['name']!r}:[/] {escape(g['problem'])}")
    _render_last_verify(info.get("last_verify"))
    for g in info["features"]:
        failures = g["record"]["failures"]
        if failures:
            console.print(f"[yellow]{len(failures)} clips of features {g['name']!r} failed and stay pending:")
            for ytid, reason in list(failures.items())[:SHOWN_FAILURES]:
                console.print(f"  {ytid}: {escape(reason)}")
            if len(failures) > SHOWN_FAILURES:
                console.print(
                    f"  ... and {len(failures) - SHOWN_FAILURES} more (`audiotok info --json` lists all)"
                )


@command("info", render=_render_info)
def info_cmd(store: StoreOpt = None, mirror_dir: MirrorOpt = None):
    """What the mirror and the store hold: files and clips per source, splits, features, vocab, tokens."""
    from audiotok_cli.stages.info import describe

    settings = command_settings(paths={"store": store, "mirror_dir": mirror_dir})
    return describe(settings.store_path, settings.mirror_dir)


def _render_config(rows: list[dict[str, Any]]) -> None:
    table = Table("setting", "value", "source", "environment variable")
    for row in rows:
        table.add_row(row["name"], str(row["value"]), row["source"], row["env"])
    console.print(table)


@command("config", render=_render_config, seeded=True)
def config_cmd():
    """Effective settings and where each came from: cli, env, .env or default."""
    settings = command_settings()
    return setting_sources(settings, cli_overrides())


def _render_last_verify(last: dict[str, Any] | None) -> None:
    if last is None:
        console.print("never verified: `audiotok verify` reads every shard and says what is damaged")
        return
    if not last["damaged"]:
        console.print(f"last verify ({last['at']}): nothing damaged")
        return
    pending = f"; {len(last['repaired'])} marked for their stage to redo" if last["repaired"] else ""
    console.print(f"[yellow]last verify ({last['at']}): {len(last['damaged'])} damaged{pending}")
    for problem in last["damaged"]:
        console.print(f"  {escape(problem)}")


def _render_verify(r) -> None:
    read = f"read {r.shards} shards and {r.arrays} clip columns and vocabularies"
    read += f", hashed {r.mirror_files} mirror files" if r.mirror is not None else ""
    read += f", checked {r.runs} run folders" if r.runs else ""
    if not r.damaged:
        console.print(f"{r.store}: nothing damaged ({read})")
    else:
        table = Table("damaged", "why", "repaired", title=f"{r.store}: {len(r.damaged)} damaged ({read})")
        for d in r.damaged:
            table.add_row(escape(d.what), escape(d.why), "marked pending" if d.repaired else "-")
        console.print(table)
        for fix in dict.fromkeys(d.fix for d in r.damaged):  # each command once, in order
            same = [d for d in r.damaged if d.fix == fix]
            done = all(d.repaired for d in same)
            console.print(
                f"{'to redo what --repair marked' if done else 'to repair'}: {escape(same[0].shown_fix)}"
            )
    if r.mirror_empty:
        err_console.print(f"[yellow]warning: {escape(r.mirror_empty)}")
    if r.rewritten:
        console.print(
            f"rewrote {len(r.rewritten)} arrays with a checksum on every chunk: {', '.join(r.rewritten)}"
        )
    if r.unchecked:
        console.print(
            f"[yellow]{len(r.unchecked)} arrays carry no checksum (written by an older audiotok), so damage "
            f"there may read as data: {', '.join(r.unchecked)}; rewrite them with one: "
            "`audiotok verify --rewrite-unchecked`"
        )
    if r.read_only:
        console.print("the store is read-only: read without its writer lock, and this verify is not recorded")


@command("verify", render=_render_verify)
def verify_cmd(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Mark damaged shards pending (their stage then redoes exactly those) and forget damaged "
            "mirror files (fetch then downloads them again).",
        ),
    ] = False,
    mirror: Annotated[
        bool, typer.Option("--mirror", help="Also hash every fetched mirror file against fetch's record.")
    ] = False,
    runs: Annotated[
        bool,
        typer.Option("--runs", help="Also check every run folder's files against their recorded digests."),
    ] = False,
    rewrite_unchecked: Annotated[
        bool,
        typer.Option(
            "--rewrite-unchecked",
            help="Rewrite arrays an older audiotok wrote without checksums with a CRC32C on every chunk.",
        ),
    ] = False,
    store: StoreOpt = None,
    mirror_dir: MirrorOpt = None,
    runs_dir: RunsOpt = None,
):
    """Read every shard, clip column and vocabulary of the store (every chunk is checksummed) and say
    what is damaged, with the command that repairs it; exit 5 while anything is left damaged."""
    from audiotok_cli.experiments.verify import verify_all

    settings = command_settings(paths={"store": store, "mirror_dir": mirror_dir, "runs_dir": runs_dir})
    return verify_all(
        settings.store_path,
        repair,
        settings.mirror_dir if mirror else None,
        settings.runs_dir if runs else None,
        rewrite_unchecked,
    )
