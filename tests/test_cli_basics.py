from __future__ import annotations

import json
import re

import pytest

from audiotok_cli.cli import COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_text(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    summary = COMMANDS[command].__doc__.strip().splitlines()[0]
    assert summary.split()[0] in result.output
    assert len(summary) > 20


def test_root_help_lists_every_command_with_its_first_sentence_whole(cli):
    result = cli("--help")
    assert result.exit_code == 0
    listed = " ".join(result.output.split())
    for command in COMMANDS:
        first = re.split(r"(?<=[.;])\s", " ".join(COMMANDS[command].__doc__.split("\n\n")[0].split()))[0]
        assert f"{command} {first.rstrip(';')}" in listed  # never cut at `expand Hub mirror files ->...`
    assert "..." not in result.output.split("Commands:")[1]


def test_train_help_groups_its_options_and_names_what_each_takes(cli):
    text = cli("train", "--help").output
    headings = [line for line in text.splitlines() if re.match(r"^[A-Z][\w ]+:$", line)]
    assert headings == [
        "Options:", "Model:", "Optimisation:", "Augmentation and sampling:", "Running:", "Paths:",
        "Output and global options:",
    ]  # fmt: skip
    section = text.split("Augmentation and sampling:")[1].split("Running:")[0]
    assert "--mixup FLOAT" in section and "--time-mask INTEGER" in section and "--lr" not in section
    assert re.search(r"<\w", text) is None  # no `<int>`, `<list[Path]>`
    predict = cli("predict", "--help").output
    assert "FILES..." in predict and "<list[Path]>" not in predict


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_seed_is_offered_only_where_it_changes_the_result(cli, command):
    seeded = {"demo-data", "split", "vocab", "train", "pretrain", "config", "compare", "report"}
    assert ("--seed INTEGER" in cli(command, "--help").output) == (command in seeded)


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


@pytest.mark.parametrize("command", ["expand", "fetch", "prune"])
def test_unknown_source_is_refused_with_the_choices(cli, command):
    result = cli(command, "--source", "bal-train")
    assert result.exit_code == 3
    assert "unknown source 'bal-train'; choose from bal_train, unbal_train, eval" in result.stderr


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("audiotok ")


def _option_help(text: str) -> dict[str, str]:
    """`--flag` -> its whole help entry, continuation lines joined."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^  (-\w, )?(--[\w-]+)", line)
        if match:
            current = match[2]
            entries[current] = line
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_every_default_and_no_bool_metavar(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0 and "<bool>" not in result.output
    for flag, entry in _option_help(result.output).items():
        takes_value = re.search(r"<[\w\[\]| ,]+>", entry.split("  ")[1] if "  " in entry else entry)
        if takes_value and flag != "--help":
            assert "[default:" in entry, f"{command} {flag} shows no default: {entry}"


@pytest.mark.parametrize(
    ("command", "flag", "shown"),
    [
        ("train", "--model", "simple, lstm, bert, baseline, cnn.  [default: lstm]"),
        ("train", "--device", "auto, cpu, cuda, cuda:N or mps.  [default: auto]"),
        ("eval", "--device", "auto, cpu, cuda, cuda:N or mps.  [default: auto]"),
        ("vocab", "--init", "kmeans++ or random.  [default: kmeans++]"),
        ("vocab", "--k", "[default: 64]"),
        ("expand", "--layout", "One of parquet, tar.  [default: detected]"),
        ("demo-data", "--layout", "One of parquet, tar.  [default: parquet]"),
        ("featurize", "--log-level", "DEBUG, INFO, WARNING, ERROR.  [default: WARNING]"),
        ("featurize", "--normalize", "[default: false]"),
        ("tokenize", "--vocab", "[default: the only one]"),
        ("vocab", "--workers", "tokenize and vocab's reads on threads.  [default: the cores available]"),
    ],
)
def test_help_names_the_choices(cli, command, flag, shown):
    entry = _option_help(cli(command, "--help").output)[flag]
    assert " ".join(shown.split()) in " ".join(entry.split()), entry


def test_help_lists_everything_the_registries_hold(cli):
    """Layouts, transforms, quantizers and pretraining objectives are spelled in the help from their
    registries: a line added to one is in the help with no other edit (a list written by hand would
    miss it, and this test with it)."""
    from audiotok_cli.audio.transforms import TRANSFORMS
    from audiotok_cli.corpora import LAYOUTS
    from audiotok_cli.tokenizer.quantizers import QUANTIZERS
    from audiotok_cli.training.objectives import OBJECTIVES

    helps = {name: _option_help(cli(name, "--help").output) for name in ("import", "vocab", "pretrain")}
    shown = {
        ("import", "--layout"): list(LAYOUTS),
        ("vocab", "--transform"): [f"{n}:{t.argument}" if t.argument else n for n, t in TRANSFORMS.items()],
        ("vocab", "--quantizer"): [f"{n}:{q.ARGUMENT}" if q.ARGUMENT else n for n, q in QUANTIZERS.items()],
        ("pretrain", "--objective"): [f"{o.name}: {o.summary}" for o in OBJECTIVES.values()],
    }
    for (command, flag), names in shown.items():
        text = " ".join(helps[command][flag].replace("- ", "-").split())
        assert all(name in text for name in names), (flag, names, text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--device", "gpu"], "unknown device 'gpu'; choose auto, cpu, cuda, cuda:N or mps"),
        (["train", "--device", "cuda"], "--device cuda, but torch sees no CUDA GPU here"),
        (["eval", "--device", "cuda:0"], "--device cuda:0, but torch sees no CUDA GPU here"),
        (["train", "--model", "gpt"], "unknown model 'gpt'; choose from simple, lstm, bert, baseline, cnn"),
        (
            ["info", "--log-level", "LOUD"],
            "unknown log level 'LOUD'; choose from DEBUG, INFO, WARNING, ERROR",
        ),
        (["--log-level", "LOUD", "config"], "unknown log level 'LOUD'"),
        (["split", "--seed", "-1"], "invalid setting seed: Input should be greater than or equal to 0"),
        (["vocab", "--init", "best"], "invalid setting vocab.init"),
        (["train", "--run-name", "a/b"], "invalid setting train.run_name"),
    ],
)
def test_bad_option_values_are_one_line_settings_errors(cli, args, message):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = cli(*args)
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_model_in_the_environment_is_refused_too(cli, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_MODEL__KIND", "transformer")
    result = cli("config")
    assert result.exit_code == 3 and "unknown model 'transformer'" in result.stderr


def test_root_options_work_after_the_command_and_win_there(cli):
    result = cli("--seed", "3", "config", "--json", "--seed", "5", "--data-dir", "elsewhere")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["seed"]["value"] == 5 and rows["seed"]["source"] == "cli"
    assert rows["data_dir"]["value"] == "elsewhere"


def test_json_is_alone_on_stdout_and_quiet_prints_nothing(cli):
    made = cli("demo-data", "--clips", "8", "--seconds", "1", "--json")
    assert made.exit_code == 0
    assert json.loads(made.stdout)["layout"] == "parquet"
    expanded = cli("expand", "--quiet")
    assert expanded.exit_code == 0 and expanded.stdout == "" and expanded.stderr == ""
    split = cli("split", "--json")
    assert json.loads(split.stdout)["counts"]["test"] == 2
    assert cli("split", "-q").stdout == ""


def test_training_on_a_vocabulary_that_does_not_exist_names_both_commands_to_run(cli, tokenized):
    result = cli("train", "--model", "simple", "--k", "32", "--epochs", "1")
    assert result.exit_code == 4
    assert "no tokens with k=32 in" in result.stderr and "(it holds logmel-k16)" in result.stderr
    assert "run `audiotok vocab --k 32` and then `audiotok tokenize --k 32` first" in result.stderr
