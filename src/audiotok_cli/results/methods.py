"""The Methods section of `report`: what a reviewer needs to rebuild every figure, as the
reproducibility checklists of ML venues ask (code version, every setting, the data split): the
audiotok version and commit, and the command lines that make the split, the features, the
vocabularies, the tokens and each run or set again, paths relative to the data dir.

Each command is spelled from the records the store and the run folders keep (the ones `verify`'s
repairs are spelled from), never from a log: a report's test runs them in a fresh store and gets the
same figures.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from audiotok_cli import __version__
from audiotok_cli.results.runs import MODEL_SIZES, differs_from_default
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.store import FeaturesRecord, SplitRecord, Store, TokensRecord, VocabRecord, remake
from audiotok_cli.training.runs import RunRecord

FLAGS = {"learning_rate": "--lr", "frame_transforms": "--frame-transform"}  # others: --field-name


@dataclass
class Rebuilt:
    """A row of the report (a run, or a set of seeds or folds) and the record of its first run."""

    name: str  # the run's name, or the set's base name
    record: RunRecord
    seeds: list[int]  # the seeds of its runs
    cv: bool = False


def code_version() -> str:
    """audiotok's version, and its git commit when it runs from a checkout (`+` local changes)."""
    here = Path(__file__).parent
    try:
        commit = _git(here, "rev-parse", "--short=12", "HEAD")
        changed = _git(here, "status", "--porcelain", "--untracked-files=no", "--", str(here.parent))
    except (OSError, subprocess.SubprocessError):
        return f"audiotok {__version__}"
    return f"audiotok {__version__} (git commit {commit}{' + local changes' * bool(changed)})"


def _git(where: Path, *arguments: str) -> str:
    done = subprocess.run(["git", *arguments], cwd=where, capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise subprocess.SubprocessError(done.stderr)
    return done.stdout.strip()


def methods(store: Store, rebuilt: list[Rebuilt]) -> str:
    """The Methods section (see the module's docstring)."""
    lines = [
        "## Methods",
        "",
        f"Made with {code_version()}. The commands below make the data, the split and every run of this "
        "report again (run them from the data dir, `AUDIOTOK_DATA_DIR`); each seed is given, so their "
        "figures come out the same.",
        "",
        "```sh",
        *data_commands(store),
    ]
    if store.split is not None:
        lines.append(split_command(store.split))
    made: list[str] = []
    for row in rebuilt:
        for command in _input_commands(store, row):
            if command not in made:
                made.append(command)
    lines += made + [train_command(row) for row in rebuilt] + ["```"]
    return "\n".join(lines)


def data_commands(store: Store) -> list[str]:
    """How the clips came in: each imported collection (its root is the author's: a placeholder),
    or AudioSet's hub mirror."""
    if not store.collections:
        return ["audiotok fetch", "audiotok expand"]
    commands = []
    for name, collection in store.collections.items():
        dedupe = " --dedupe near" * (collection.dedupe == "near")
        commands.append(f"audiotok import PATH/TO/{name} --name {name}{dedupe}  # layout {collection.layout}")
    return commands


def split_command(split: SplitRecord) -> str:
    """`split` with the record's settings, each choice spelled out (defaults that depend on the clips,
    such as drawing val by group, included)."""
    flags = [f"--val-ratio {split.val_ratio:g}"]
    flags += [f"--train-source {source}" for source in split.train_sources or ()]
    if split.test_fold is not None:
        flags.append(f"--test-fold {split.test_fold}")
    flags += [f"--test-group {shlex.quote(group)}" for group in split.test_groups]
    flags += [f"--test-source {source}" for source in split.test_sources]
    if split.test_ratio is not None:
        flags.append(f"--test-ratio {split.test_ratio:g}")
    flags.append("--val-by-group" if split.val_by_group else "--no-val-by-group")
    flags.append("--stratify" if split.stratify else "--no-stratify")
    flags += ["--keep-unlabeled"] * split.keep_unlabeled + ["--drop-leaked"] * split.drop_leaked
    return f"audiotok --seed {split.seed} split {' '.join(flags)}"


def _input_commands(store: Store, row: Rebuilt) -> list[str]:
    """The featurize, vocab and tokenize commands a row's inputs were made with (a cross-validation
    makes its vocabularies and tokens itself, fold by fold)."""
    inputs = row.record.inputs
    features = store.record_of("features", inputs.features)
    commands = []
    if isinstance(features, FeaturesRecord):
        commands.append(remake("features", inputs.features, features))
    if inputs.input == "tokens" and not row.cv:
        vocab, tokens = store.record_of("vocab", inputs.tokens), store.record_of("tokens", inputs.tokens)
        if isinstance(vocab, VocabRecord) and isinstance(tokens, TokensRecord):
            commands.append(remake("vocab", inputs.tokens, vocab).removesuffix(" --overwrite"))
            commands.append(remake("tokens", inputs.tokens, tokens))
    return commands


def train_command(row: Rebuilt) -> str:
    """`train` with every model and training setting of the row's runs that is not the default."""
    record = row.record
    model, inputs = record.model, record.inputs
    flags = [f"--model {model.kind}"] + [f"--input {model.input}"] * (model.kind == "bert")
    if inputs.input == "tokens":
        flags.append(f"--k {model.n_tokens}" if row.cv else f"--vocab {inputs.tokens}")
    else:
        flags.append(f"--features {inputs.features}")
        flags += [f"--frame-transform {shlex.quote(name)}" for name in inputs.transforms]
    flags += [f"--init {record.init}"] * bool(record.init)
    sizes, defaults = model.model_dump(), ModelSettings().model_dump()
    flags += [
        _flag(key, sizes[key]) for key in MODEL_SIZES if differs_from_default(sizes[key], defaults[key])
    ]
    trained = TrainSettings().model_dump()
    flags += [
        _flag(key, value)
        for key, value in record.train.items()
        if key in trained and (key == "loss" or differs_from_default(value, trained[key]))
    ]
    flags += ["--cv"] * row.cv + [f"--seeds {len(row.seeds)}"] * (len(row.seeds) > 1)
    flags.append(f"--run-name {shlex.quote(row.name)}")
    return f"audiotok --seed {min(row.seeds)} train {' '.join(flags)}"


def _flag(key: str, value: object) -> str:
    flag = FLAGS.get(key, "--" + key.replace("_", "-"))
    if isinstance(value, bool):  # a switch: --bucket-by-length or --no-bucket-by-length
        return flag if value else "--no-" + flag.removeprefix("--")
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"{flag} {shlex.quote(str(value))}"
