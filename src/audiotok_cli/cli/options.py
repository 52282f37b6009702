"""Options shared by several commands. Options bound to a setting default to None (so env and `.env`
still apply) and show the setting's own default and description in `--help`."""

import dataclasses
import inspect
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from audiotok_cli.audioset.classes import SOURCES

PATHS = "Paths"


def option(*flags: str, help: str, default: str, panel: str | None = None) -> Any:
    """A `typer.Option` whose value defaults to None (unset) and whose help shows what unset means;
    `--help` lists it under `panel`."""
    return typer.Option(
        *flags, help=f"{help}  [default: {default}]", show_default=False, rich_help_panel=panel
    )


def setting(
    group: type[BaseModel], field: str, *flags: str, panel: str | None = None, help: str | None = None
) -> Any:
    """An option for `group.field`: its help (unless given: a list a registry spells) and shown
    default come from the setting itself."""
    info = group.model_fields[field]
    default = info.default
    return option(*flags, help=help or info.description or field, default=_shown(default), panel=panel)


def _shown(default: Any) -> str:
    """A setting's default as a user would type it."""
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default)


def _path(flag: str, default: str, what: str) -> Any:
    return Annotated[Path | None, option(flag, help=what, default=default, panel=PATHS)]


StoreOpt = _path("--store", "DATA_DIR/audiotok.zarr", "The Zarr v3 store every stage talks through.")
MirrorOpt = _path("--mirror-dir", "DATA_DIR/mirror", "Local mirror of the hub dataset repo.")
AudioDirOpt = _path("--audio-dir", "DATA_DIR/audio", "Expanded audio files, one folder per source.")
RunsOpt = _path("--runs-dir", "DATA_DIR/runs", "Training runs: one folder each.")
SourceOpt = Annotated[
    list[str] | None,
    option(
        "--source",
        help=f"One of {', '.join(SOURCES)} (or an imported collection's); repeatable.",
        default="all",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help=(
            "Shards at a time: featurize on processes, tokenize and vocab's reads on threads.  "
            "[default: the cores available]"
        ),
        min=1,
        show_default=False,
    ),
]
DaskOpt = Annotated[
    str | None,
    typer.Option(
        "--dask",
        help="Run the shards on a Dask cluster: a scheduler address (tcp://HOST:8786), or 'local' for "
        "a LocalCluster of --workers processes here.  [default: no Dask]",
        show_default=False,
    ),
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace this stage's finished output.")]

# Which vocabulary (and so which tokens) a stage reads: by name, or by k and features.
VocabOpt = Annotated[
    str | None,
    option("--vocab", help="Vocabulary (and tokens) by name, e.g. logmel-k64.", default="the only one"),
]
PickKOpt = Annotated[int | None, option("--k", help="Choose the vocabulary of this size.", default="any")]
FeaturesOpt = Annotated[
    str | None, option("--features", help="Features group by name.", default="the only one")
]


@dataclasses.dataclass(frozen=True)
class OptionGroup:
    """Options several commands share, declared once: a command names the group as a parameter
    (`fitting: dict = FITTING`) where its options go in its help, and gets them as one dict. An
    option is unset (None) unless `defaults` gives it a value."""

    options: dict[str, Any]  # name -> its annotation
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)

    def parameters(self) -> list[inspect.Parameter]:
        return [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=self.defaults.get(name),
                annotation=kind,
            )
            for name, kind in self.options.items()
        ]
