"""`--help` a person reads: every command's first sentence whole in the command list (click cuts
them at ~45 characters), a command's options under headings (their `rich_help_panel`: `train` has
over fifty), and the value each option takes as click spells it (`--epochs INTEGER`), in plain text
(no rich markup, so brackets in help stay text)."""

import re
from typing import Any

from typer import Context
from typer.core import TyperCommand, TyperGroup

OPTIONS = "Options"
_METAVARS = {"int": "INTEGER", "float": "FLOAT", "path": "PATH", "str": "TEXT", "bool": "BOOLEAN"}


def first_sentence(text: str | None) -> str:
    paragraph = " ".join((text or "").split("\n\n")[0].split())
    return re.split(r"(?<=[.;])\s", paragraph)[0].rstrip(";")


class CommandList(TyperGroup):
    """The app's command list, each command with its first sentence, wrapped rather than cut."""

    def format_commands(self, ctx: Context, formatter: Any) -> None:
        rows = [
            (name, first_sentence(command.help))
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class GroupedOptions(TyperCommand):
    """A command whose options show under their panel's heading, in the order panels first appear."""

    def format_help(self, ctx: Context, formatter: Any) -> None:
        for param in self.get_params(ctx):  # before the usage line, which shows them too
            if param.metavar is None and param.param_type_name == "argument":
                param.metavar = param.name.upper()
            elif param.metavar is None and not getattr(param, "is_flag", True):
                param.metavar = _metavar(param.display_type(ctx) or "")
        super().format_help(ctx, formatter)

    def format_options(self, ctx: Context, formatter: Any) -> None:
        arguments, panels = [], {OPTIONS: []}
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                shown = (param.metavar or param.name.upper()) + ("..." if param.nargs != 1 else "")
                arguments.append((shown, param.help or ""))
            elif (record := param.get_help_record(ctx)) is not None:
                panels.setdefault(getattr(param, "rich_help_panel", None) or OPTIONS, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for title, records in panels.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def _metavar(shown: str) -> str:
    """`<int range>` -> INTEGER, `<list[Path]>` -> PATH (the option is repeatable: its help says so)."""
    inner = shown.strip("<>").removeprefix("list[").removesuffix("]").split()[0] if shown else "str"
    return _METAVARS.get(inner.lower(), inner.upper())
