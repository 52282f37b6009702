from __future__ import annotations

import pytest

from audiotok_cli.cli import COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_text(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    summary = COMMANDS[command].__doc__.strip().splitlines()[0]
    assert summary.split()[0] in result.output
    assert len(summary) > 20


def test_root_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


def test_missing_store_is_one_red_line_and_exit_4(cli, tmp_path):
    result = cli("info")
    assert result.exit_code == 4
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "no audiotok store at" in lines[0] and "audiotok expand" in lines[0]
    assert "Traceback" not in result.output


def test_missing_mirror_names_the_fix(cli):
    result = cli("expand")
    assert result.exit_code == 4
    assert "audiotok fetch" in result.stderr


@pytest.mark.parametrize("command", ["expand", "featurize", "fetch", "prune"])
def test_unknown_source_is_refused_with_the_choices(cli, command):
    result = cli(command, "--source", "bal-train")
    assert result.exit_code == 3
    assert "unknown source 'bal-train'; choose from bal_train, unbal_train, eval" in result.stderr


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("audiotok ")
