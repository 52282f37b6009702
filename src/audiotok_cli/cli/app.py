"""The Typer app and the one place where every command is wrapped: options that work before or
after the command (`--data-dir`, `--seed`, `--log-level`), `--json` and `--quiet`, logging and
seeding, and the mapping of library errors to one red line on stderr and an exit code (errors.py).

A command module declares a function that parses its options, builds settings with
`command_settings`, calls one library function and returns its result; `@command` renders it.
Library modules are imported inside commands: torch, transformers and librosa take seconds to
import, and `audiotok info` or `--help` should not wait for them.
"""

import contextlib
import dataclasses
import errno
import functools
import inspect
import json
import logging
import random
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from audiotok_cli import __version__
from audiotok_cli.cli.help import CommandList, GroupedOptions
from audiotok_cli.cli.options import OptionGroup, option
from audiotok_cli.errors import AudiotokError, DiskFullError, NotWritableError
from audiotok_cli.progress import show_bars, stderr_console
from audiotok_cli.settings import LOG_LEVELS, Settings, load_settings

# piped output is never hard-wrapped: lines soft-wrap, tables keep their natural width
console = Console(soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 10_000)
err_console = stderr_console  # the progress bars' console: lines print above a live bar
app = typer.Typer(
    name="audiotok",
    cls=CommandList,
    help="Audio-token research on AudioSet: log-mel frames -> FAISS vocabulary -> token models -> mAP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no `<bool>` on flags, brackets in help text stay text
    context_settings={"help_option_names": ["--help", "-h"]},
)
COMMANDS: dict[str, Callable[..., Any]] = {}
GLOBAL = "Output and global options"

DataDirOpt = Annotated[
    Path | None,
    option(
        "--data-dir", help="Root of every default path (env AUDIOTOK_DATA_DIR).", default="data", panel=GLOBAL
    ),
]
SeedOpt = Annotated[
    int | None, option("--seed", help="Seed for splits, k-means and training.", default="0", panel=GLOBAL)
]
LogLevelOpt = Annotated[
    str | None,
    option("--log-level", help=f"Logging level: {', '.join(LOG_LEVELS)}.", default="WARNING", panel=GLOBAL),
]
DebugOpt = Annotated[
    bool,
    typer.Option(
        "--debug", help="Show the full traceback of an error (for bug reports).", rich_help_panel=GLOBAL
    ),
]
_GLOBAL_OPTIONS = {"data_dir": DataDirOpt, "seed": SeedOpt, "log_level": LogLevelOpt}
_OUTPUT_OPTIONS = {
    "debug": DebugOpt,
    "as_json": Annotated[
        bool, typer.Option("--json", help="Print the result as JSON alone on stdout.", rich_help_panel=GLOBAL)
    ],
    "quiet": Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Print nothing but errors; no progress bars.", rich_help_panel=GLOBAL
        ),
    ],
}


def _version(value: bool) -> None:
    if value:
        console.print(f"audiotok {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    seed: SeedOpt = None,
    log_level: LogLevelOpt = None,
    debug: DebugOpt = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Keep the root options; the command's own copies of them, if given, win (see `command`)."""
    ctx.obj = {"data_dir": data_dir, "seed": seed, "log_level": log_level}
    ctx.meta["audiotok.debug"] = debug


_running: ContextVar[typer.Context] = ContextVar("audiotok_command")


def command_settings(**groups: Any) -> Settings:
    """Settings with the root options and this command's flags on top of env and `.env`."""
    ctx = _running.get()
    overrides = {**ctx.find_root().obj, **groups}
    ctx.meta["overrides"] = overrides
    return load_settings(overrides)


def cli_overrides() -> dict[str, Any]:
    """The flags the running command passed to `command_settings` (for `config`)."""
    return _running.get().meta.get("overrides", {})


def counted(n: int, noun: str) -> str:
    """`1 file`, `2 files`: a count and its noun, agreeing."""
    return f"{n:,} {noun}" + ("" if n == 1 else "es" if noun.endswith("s") else "s")


def quiet_or_json() -> bool:
    """Whether the running command prints nothing but its result's JSON or nothing at all."""
    return _running.get().meta["audiotok.silent"]


def command(
    name: str, render: Callable[[Any], None] | None = None, seeded: bool = False
) -> Callable[[Callable], Callable]:
    """Register `function` as command `name`: its return value is rendered with `render`, or
    printed as JSON with `--json`, or not at all with `--quiet`; a result whose `problem()` returns
    an error (some files or clips failed) then exits with that error's code. `seeded`
    commands (the ones whose results depend on it) take `--seed` after the command too."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(function, eval_str=True)
        globals_here = {key: kind for key, kind in _GLOBAL_OPTIONS.items() if seeded or key != "seed"}
        extra = {**globals_here, **_OUTPUT_OPTIONS}
        defaults = {"as_json": False, "quiet": False, "debug": False}
        groups = {
            p.name: p.default for p in signature.parameters.values() if isinstance(p.default, OptionGroup)
        }
        parameters = [
            inspect.Parameter("_ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
            *(
                shared
                for p in signature.parameters.values()
                for shared in (groups[p.name].parameters() if p.name in groups else [p])
            ),
            *(
                inspect.Parameter(
                    key, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(key), annotation=kind
                )
                for key, kind in extra.items()
            ),
        ]

        @functools.wraps(function)
        def wrapper(_ctx: typer.Context, **kwargs: Any) -> None:
            root_options = {key: kwargs.pop(key) for key in globals_here}
            for group, options in groups.items():  # a shared group's options, as the one dict it names
                kwargs[group] = {key: kwargs.pop(key) for key in options.options}
            as_json, quiet = kwargs.pop("as_json"), kwargs.pop("quiet")
            debug = kwargs.pop("debug") or _ctx.meta.get("audiotok.debug", False)
            ctx = _ctx
            _running.set(ctx)
            ctx.meta["audiotok.silent"] = as_json or quiet
            show_bars(not quiet)
            obj = ctx.find_root().obj
            obj.update({key: value for key, value in root_options.items() if value is not None})
            try:
                _configure(load_settings(obj))
                with _signals_as_interrupt() as caught:
                    result = function(**kwargs)
                    if caught:  # swallowed on its way up (a weakref callback): the command did not finish
                        raise caught[0]
                if as_json:
                    sys.stdout.write(json.dumps(result, indent=2, default=_jsonable) + "\n")
                elif not quiet and render is not None:
                    render(result)
                problem = getattr(result, "problem", None)
                if problem and problem():  # partial failure: the result is shown, the exit code says so
                    raise problem()
            except KeyboardInterrupt as stop:  # Ctrl-C, or the SIGTERM a scheduler sends before its kill
                what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
                # a signal that lands as zarr starts a read leaves its coroutine never awaited:
                # Python would warn of it on the way out, two lines under this one (a CI run did)
                warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
                err_console.print(
                    f"[bold red]{what}[/]: finished work is kept; run the command again to resume"
                )
                raise typer.Exit(143 if isinstance(stop, Terminated) else 130) from None
            except Exception as exc:  # one red line and a documented exit code, whatever went wrong
                if debug:
                    err_console.print(traceback.format_exc(), markup=False, highlight=False)
                error = _as_audiotok_error(exc)
                err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
                raise typer.Exit(error.exit_code) from None

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        app.command(name, cls=GroupedOptions)(wrapper)
        COMMANDS[name] = function
        return function

    return register


class Terminated(KeyboardInterrupt):
    """SIGTERM (SLURM at a walltime, Kubernetes before a kill) as a Ctrl-C: every cleanup that
    keeps finished work on Ctrl-C runs for it too; the exit code says which (143, not 130)."""


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[list[KeyboardInterrupt]]:
    """Ctrl-C and SIGTERM raised as KeyboardInterrupt (Terminated), and kept: one that lands where
    Python cannot pass it on (a weakref callback or `__del__` of a library's object) is not printed
    as "Exception ignored" but raised once the command returns, so it is never swallowed."""
    caught: list[KeyboardInterrupt] = []

    def stop(signum: int, frame: Any) -> None:
        caught.append(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())
        raise caught[-1]

    def unraisable(hook: Any) -> None:
        if not isinstance(hook.exc_value, KeyboardInterrupt):  # ours is in `caught`
            before_hook(hook)

    if threading.current_thread() is not threading.main_thread():
        yield caught  # signal handlers belong to the main thread
        return
    before = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    before_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield caught
    finally:
        sys.unraisablehook = before_hook
        for number, handler in before.items():
            signal.signal(number, handler)


def _as_audiotok_error(exc: Exception) -> AudiotokError:
    """Library errors as they are; a full disk as DiskFullError, a read-only file as
    NotWritableError; anything else is a bug (exit 1)."""
    if isinstance(exc, AudiotokError):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = exc.filename or "the store, audio or runs directory"
        return NotWritableError(
            f"cannot write {where} ({exc.strerror}); make it writable, or point audiotok elsewhere "
            "(--store, --runs-dir, --data-dir), and run again: finished work is kept"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a write we do not wrap
        where = exc.filename or "the store, audio or runs directory"
        return DiskFullError(
            f"disk full writing {where}; free space and run the command again: finished work is kept"
        )
    return AudiotokError(
        f"unexpected {type(exc).__name__}: {exc} (a bug: run again with --debug and report the traceback)"
    )


def _configure(settings: Settings) -> None:
    """Logging and global seeds, once per command (torch is seeded locally by `train`)."""
    # --log-level is audiotok's own; libraries (numba, numcodecs, ...) say only their warnings
    logging.basicConfig(level=logging.WARNING, handlers=[_LineHandler()], force=True)
    logging.getLogger("audiotok_cli").setLevel(settings.log_level)
    random.seed(settings.seed)
    np.random.seed(settings.seed)


class _LineHandler(logging.Handler):
    """Each log record as one whole line on stderr (never wrapped, so a path stays greppable)."""

    def emit(self, record: logging.LogRecord) -> None:
        style = "dim" if record.levelno < logging.WARNING else "yellow"
        if record.levelno > logging.WARNING:
            style = "red"
        level = (
            f"[{style}]{record.levelname.lower()}:[/]"  # the level once: not the default LEVEL:name: prefix
        )
        err_console.print(f"{level} {escape(record.getMessage())}", highlight=False)


def _jsonable(value: Any) -> Any:
    """JSON for what results hold: dataclasses, pydantic records, paths, sets."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def main() -> None:
    app()
