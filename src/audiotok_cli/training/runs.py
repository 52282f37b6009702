"""Run folders: everything it takes to apply a trained model to a new audio file, in safetensors
and JSON (never pickles), so copying the folder is enough to share it.

{runs_dir}/{name}/run.json                   format, model spec, inputs (audio settings, features,
                                             vocabulary, split), training settings, history, and the
                                             sha256 of the files below as training wrote them
{runs_dir}/{name}/model.safetensors          weights of the best val-mAP epoch (what `eval` scores)
{runs_dir}/{name}/last.safetensors           weights, optimizer state and the record after the last
                                             finished epoch (the record's copy that counts)
{runs_dir}/{name}/preprocessing.safetensors  the vocabulary's `centroids` (token models) or the
                                             train split's per-mel `mean` and `std` (frame models)
{runs_dir}/{name}/classes.csv                the class index the outputs follow (the store's)
{runs_dir}/{name}/eval.json                  the last `eval` report
{runs_dir}/{name}/recent/epoch-NNNN.safetensors  weights of the last epochs (`--average-last`)
{runs_dir}/{name}/metrics.jsonl, curves.png, tensorboard/   what training showed (training/monitor.py)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from audiotok_cli.atomic import write_atomic, write_json
from audiotok_cli.class_lists import ClassIndex, parse_class_csv
from audiotok_cli.errors import AudiotokError, DataError, MismatchError, MissingInputError, SettingsError
from audiotok_cli.settings import AudioSettings, ModelSettings
from audiotok_cli.store import EncoderRecord, SplitRecord, fingerprint
from audiotok_cli.training.models import build_model
from audiotok_cli.training.models.spec import ModelSpec
from audiotok_cli.training.objectives import recorded_objective

RUN_FORMAT = 3  # 2: four reserved token ids, self-contained folders; 3: frame models, preprocessing
RECORD, WEIGHTS, CHECKPOINT = "run.json", "model.safetensors", "last.safetensors"
ADDED_SETTINGS = {"bucket_by_length": False}  # training settings added since runs were first recorded
RETRAIN = "train the run again with --overwrite"
PREPROCESSING, CLASSES, REPORT = "preprocessing.safetensors", "classes.csv", "eval.json"


class RunInputs(BaseModel):
    """What the model was trained on: enough to featurize (and tokenize) a new file the same way."""

    store: str
    input: str = Field(description="tokens or frames.")
    features: str
    audio: AudioSettings
    split: SplitRecord
    tokens: str | None = None
    vocab_fingerprint: str | None = None
    transforms: list[str] = Field(default_factory=list, description="The vocabulary's frame transforms.")
    quantizer: str = Field("kmeans", description="The vocabulary's quantizer (quantizers.py).")
    encoder: EncoderRecord | None = Field(None, description="The encoder that made the features, if one did.")
    targets: str | None = Field(None, description="Masked unit prediction: the tokens it learned to predict.")
    targets_fingerprint: str | None = Field(None, description="Their vocabulary's fingerprint.")

    def front_end(self) -> str:
        """What made the frames, every setting named: a reviewer can make them again."""
        a, e = self.audio, self.encoder
        clips = f"{a.clip_seconds:g} s clips at {a.sample_rate} Hz"
        if e is None:
            scaled = ", each clip scaled to [0, 1]" * a.normalize
            return f"log-mel: n_fft {a.n_fft}, hop {a.hop_length}, {a.n_mels} mels, {clips}{scaled}"
        layers = ",".join(map(str, e.layer))
        return f"{e.model_type} encoder {a.encoder}, layer {layers} of {e.n_layers}, {clips}"

    def vocabulary(self, n_tokens: int) -> str:
        """The tokens' recipe (token runs; "" for frame runs): k, quantizer, frame transforms."""
        if self.input != "tokens":
            return ""
        transforms = f", transforms {','.join(self.transforms)}" if self.transforms else ""
        return f"{self.tokens}: k {n_tokens}, {self.quantizer} over {self.features}{transforms}"


class AveragedWeights(BaseModel):
    """The run's model is the mean of these epochs' weights (`--average-last`)."""

    epochs: list[int]
    score: float = Field(description="Its val score: val mAP, or val MLM loss for pretraining.")


class SetMember(BaseModel):
    """The set of runs a run was planned in (`train --seeds N`, `--cv`, `pretrain --seeds N`)."""

    name: str = Field(description="The set's name: what `compare`, `predict` and `report` call it.")
    fold: int | None = Field(None, description="Its fold, for a cross-validation's run.")
    seed: int | None = Field(None, description="Its seed, where the set repeats seeds.")


class RunRecord(BaseModel):
    format: int = RUN_FORMAT
    model: ModelSpec
    inputs: RunInputs
    train: dict[str, Any] = Field(description="Training settings that shape the weights.")
    seed: int
    task: Literal["classify", "pretrain"] = "classify"
    init: str | None = Field(None, description="The pretraining run whose encoder it started from.")
    resume_key: str = Field(description="A rerun resumes only a run whose key matches.")
    n_parameters: int = 0
    history: list[dict[str, float]] = Field(default_factory=list)
    best_epoch: int | None = None
    averaged: AveragedWeights | None = None
    complete: bool = False
    threads: int | None = Field(
        None, description="torch's threads on the CPU: BERT's and the CNN's last bits depend on them."
    )
    digests: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of the run's files as written (model, preprocessing, classes).",
    )
    member: SetMember | None = Field(
        None, description="The set it was planned in; None for a run of its own (see run_sets.py)."
    )
    objective: str | None = Field(
        None, description="What it learned: classification, or a pretraining objective (objectives.py)."
    )

    @property
    def loss(self) -> str:
        """`ce` (softmax) or `bce` (sigmoids); runs from before `--loss` trained with BCE."""
        return self.train.get("loss", "bce")


@dataclass
class Run:
    """A loaded run folder."""

    directory: Path
    record: RunRecord
    model: nn.Module
    preprocessing: dict[str, np.ndarray]  # centroids, or mean and std
    classes: ClassIndex


PER_FOLD_INPUTS = frozenset({"split", "tokens", "vocab_fingerprint"})  # what `--cv` changes fold by fold


def _identity(record: RunRecord, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Everything that made the run, as plain values (the store's path aside: a moved store is the same)."""
    return {
        "model": record.model.model_dump(mode="json"), "train": record.train, "task": record.task,
        "init": record.init, "seed": record.seed,
        **record.inputs.model_dump(mode="json", exclude={"store", *exclude}),
    }  # fmt: skip


def settings_key(record: RunRecord, with_seed: bool = False) -> str:
    """What made the run but its seed: runs that share it differ by luck alone. With the seed, the
    run's `resume_key`: a rerun resumes only a run of these very settings."""
    key = _identity(record)
    if not with_seed:
        del key["seed"]
    return fingerprint(key)


def recipe_key(record: RunRecord, with_seed: bool = True) -> str:
    """What made the run but what `--cv` changes per fold (its split, and the fold's vocabulary):
    the runs of one cross-validation share it (without the seed: those of `--cv --seeds N` too)."""
    key = _identity(record, PER_FOLD_INPUTS)
    if not with_seed:
        del key["seed"]
    return fingerprint(key)


def settings_differences(previous: RunRecord, wanted: RunRecord, shown: int = 4) -> str:
    """The settings that differ between an existing run and the one asked for, as one short phrase
    (`train.learning_rate 0.001 there, 0.003 asked`): what a refusal names."""
    old, new = _flat(_identity(previous)), _flat(_identity(wanted))
    differing = [key for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    phrases = [f"{key} {old.get(key)!r} there, {new.get(key)!r} asked" for key in differing[:shown]]
    more = len(differing) - shown
    return "; ".join(phrases) + (f"; and {more} more" if more > 0 else "") if phrases else "none"


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix: json.dumps(values) if isinstance(values, list) else values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat |= _flat(value, f"{prefix}.{key}" if prefix else key)
    return flat


def read_record(directory: Path) -> RunRecord | None:
    """The run's record, or None where no run was started. The checkpoint's copy wins over
    run.json: it is written with the weights, so the two can never disagree after a crash."""
    checkpoint = directory / CHECKPOINT
    if checkpoint.exists():
        return parse_record(checkpoint, _metadata(checkpoint).get("record"))
    path = directory / RECORD
    return parse_record(path, path.read_text()) if path.exists() else None


def parse_record(path: Path, text: str | None) -> RunRecord:
    """A run record from JSON text (None: a checkpoint from before records lived in checkpoints);
    damaged records and other run formats are refused in one line."""
    try:
        raw = json.loads(text) if text is not None else {}
    except json.JSONDecodeError:
        raise DataError(f"{path} is damaged (not JSON); {RETRAIN}") from None
    if not isinstance(raw, dict) or raw.get("format") != RUN_FORMAT:
        raise MismatchError(
            f"run {path.parent} was written by another audiotok (not run format {RUN_FORMAT}); {RETRAIN}"
        )
    try:
        record = RunRecord.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise DataError(f"{path} is damaged ({where}: {error['msg']}); {RETRAIN}") from None
    before = dict(record.train)
    record.train.pop(
        "tensorboard", None
    )  # recorded as a setting before it stopped being one (loop.NOT_IDENTITY)
    record.train = {**ADDED_SETTINGS, **record.train}  # trained as these say, before they were settings
    if record.train != before:
        record.resume_key = settings_key(record, with_seed=True)
    record.objective = record.objective or recorded_objective(record.task, record.inputs.input)
    return record


def write_record(directory: Path, record: RunRecord) -> None:
    write_json(directory / RECORD, record.model_dump(mode="json"))


def write_inputs(
    directory: Path, preprocessing: dict[str, np.ndarray], classes: ClassIndex
) -> dict[str, str]:
    """What a run needs besides its weights to stand alone: its preprocessing arrays, class index.
    Returns their digests, for the record."""
    tensors = {name: torch.from_numpy(np.asarray(array, np.float32)) for name, array in preprocessing.items()}
    csv = classes.to_csv().encode()
    write_atomic(directory / CLASSES, csv)
    return {PREPROCESSING: save_tensors(directory / PREPROCESSING, tensors), CLASSES: digest(csv)}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Serialized in memory and written atomically: a full disk raises OSError naming the file.
    Tensors are copied, since safetensors refuses tensors that share memory (a tied MLM decoder).
    Returns the file's digest."""
    payload = save({k: v.detach().cpu().clone() for k, v in tensors.items()}, metadata=metadata)
    write_atomic(path, payload)
    return digest(payload)


def save_best(directory: Path, model: nn.Module) -> str:
    return save_tensors(directory / WEIGHTS, model.state_dict())


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def seal_report(report: dict[str, Any], scored: dict[str, str]) -> dict[str, Any]:
    """eval.json as written: the report, the digests of the files `eval` wrote with it (`scored`:
    predictions.safetensors, what `compare` and `report` compute from) and its own digest, so a
    figure changed in either file after `eval` is found (restic's rule: every object under its hash)."""
    sealed = {**report, "digests": scored}
    return {**sealed, "digest": digest(_canonical(sealed))}


def read_report(directory: Path) -> dict[str, Any]:
    """The run's last `eval` report, refused where it is not as `eval` wrote it (reports from before
    digests were recorded are read as they are)."""
    path = directory / REPORT
    again = f"run `audiotok eval --run {directory.name}` again"
    if not path.exists():
        raise MissingInputError(f"{directory} is not scored yet; run `audiotok eval --run {directory.name}`")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path} is damaged (not JSON); {again}") from None
    if not isinstance(report, dict):
        raise DataError(f"{path} is damaged (not a report); {again}")
    recorded = report.pop("digest", None)
    if recorded is not None and digest(_canonical(report)) != recorded:
        raise DataError(f"{path} differs from its digest: changed or damaged since `eval` wrote it; {again}")
    return report


def scored_files_changed(directory: Path) -> dict[str, str]:
    """eval.json and the files scored with it that are not as `eval` wrote them (file -> why)."""
    if not (directory / REPORT).exists():
        return {}
    try:
        report = read_report(directory)
    except DataError as damaged:
        return {REPORT: str(damaged)}
    return _differing(directory, report.get("digests", {}), "eval.json")


def _canonical(report: dict[str, Any]) -> bytes:
    return json.dumps(report, sort_keys=True, separators=(",", ":")).encode()


def changed_files(directory: Path, record: RunRecord) -> dict[str, str]:
    """The run's files that are not as training wrote them (file -> why): edited, damaged, gone.
    Runs from before digests were recorded have none to check."""
    return _differing(directory, record.digests, "the run's record")


def _differing(directory: Path, digests: dict[str, str], kept_in: str) -> dict[str, str]:
    """The files of `directory` that differ from their `digests` (kept in `kept_in`) -> why."""
    changed = {}
    for name, wanted in digests.items():
        path = directory / name
        if not path.exists():
            changed[name] = "missing"
        elif digest(path.read_bytes()) != wanted:
            changed[name] = f"its content differs from the digest in {kept_in}: changed or damaged since"
    return changed


def save_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, record: RunRecord
) -> None:
    """Weights, optimizer state (flattened to named tensors, `optim.{param}.{key}`) and the run's
    record, in one file written at once: a resumed run restarts exactly where this one ended."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        tensors |= {f"optim.{index}.{key}": torch.as_tensor(value) for key, value in state.items()}
    save_tensors(directory / CHECKPOINT, tensors, metadata={"record": record.model_dump_json()})


def keep_recent_weights(directory: Path, model: nn.Module, epoch: int, keep: int) -> list[tuple[int, Path]]:
    """Save this epoch's weights under `recent/` and keep only the last `keep` epochs' (dropping
    any a killed run wrote after this epoch); returns them, oldest first."""
    folder = directory / "recent"
    folder.mkdir(exist_ok=True)
    save_tensors(folder / f"epoch-{epoch:04d}.safetensors", model.state_dict())
    saved = sorted(
        (int(path.stem.removeprefix("epoch-")), path) for path in folder.glob("epoch-*.safetensors")
    )
    kept = [(number, path) for number, path in saved if epoch - keep < number <= epoch]
    for number, path in saved:
        if (number, path) not in kept:
            path.unlink()
    return kept


def average_weights(recent: list[tuple[int, Path]]) -> dict[str, torch.Tensor]:
    """The mean of the saved weights (batch-norm statistics included); integer buffers (batch
    counts) are the last epoch's."""
    states = [_load_tensors(path) for _, path in recent]
    return {
        name: torch.stack([state[name] for state in states]).mean(dim=0) if last.is_floating_point() else last
        for name, last in states[-1].items()
    }


ENCODER_SHAPE = (
    "kind",
    "input",
    "n_tokens",
    "n_mels",
    "max_frames",
    "hidden_size",
    "num_layers",
    "num_heads",
)
SHARED_WITH_CLASSIFIER = ("bert", "project", "front")  # a pretraining model's parts a classifier starts from


SIZED_BY_INIT = ("hidden_size", "num_layers", "num_heads")


def sized_like_init(runs_dir: Path, init: str, model: ModelSettings) -> ModelSettings:
    """`model` with the encoder sizes of pretraining run `init` where they were not set: `--init RUN`
    alone fine-tunes RUN's encoder (sizes that were set must agree; `init_encoder` checks)."""
    pretrained = read_record(_init_directory(runs_dir, init))
    if pretrained is None:
        return model  # init_encoder names what is missing
    taken = {
        name: getattr(pretrained.model, name) for name in SIZED_BY_INIT if name not in model.model_fields_set
    }
    return model.model_copy(update=taken)


def _init_directory(runs_dir: Path, init: str) -> Path:
    return Path(init) if Path(init).is_dir() else runs_dir / init


def init_encoder(runs_dir: Path, init: str, record: RunRecord) -> dict[str, torch.Tensor]:
    """The encoder weights of pretraining run `init` (a folder, or a run name under `runs_dir`),
    checked against the run about to start them: the same encoder shape, on the same tokens."""
    directory = _init_directory(runs_dir, init)
    pretrained = read_record(directory)
    if pretrained is None or not (directory / WEIGHTS).exists():
        raise MissingInputError(f"no pretraining run at {directory}; run `audiotok pretrain` first")
    if pretrained.task != "pretrain":
        raise SettingsError(f"--init {init}: {directory} is a {pretrained.task} run, not a pretraining run")
    diffs = [
        f"{name} {getattr(pretrained.model, name)!r} (this run: {getattr(record.model, name)!r})"
        for name in ENCODER_SHAPE
        if getattr(pretrained.model, name) != getattr(record.model, name)
    ]
    if diffs:
        raise MismatchError(f"--init {init} has another encoder: {', '.join(diffs)}; train with its shape")
    if pretrained.inputs.vocab_fingerprint != record.inputs.vocab_fingerprint:
        raise MismatchError(f"--init {init} was pretrained on other tokens than {record.inputs.tokens!r}")
    frames = ("features", "audio", "transforms")  # what a frame encoder's inputs were made of
    if record.inputs.input == "frames" and any(
        getattr(pretrained.inputs, name) != getattr(record.inputs, name) for name in frames
    ):
        raise MismatchError(
            f"--init {init} was pretrained on frames of features {pretrained.inputs.features!r} with "
            f"transforms {pretrained.inputs.transforms}; train on those (--features, --frame-transform)"
        )
    weights = _load_tensors(directory / WEIGHTS)
    return {name: value for name, value in weights.items() if name.split(".")[0] in SHARED_WITH_CLASSIFIER}


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    path = directory / CHECKPOINT
    tensors = _load_tensors(path)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise DataError(f"{path} does not fit the run's model ({_first_line(exc)}); {RETRAIN}") from None


def load_pretraining(directory: Path) -> tuple[RunRecord, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """A finished pretraining run's record, weights and preprocessing (`featurize --encoder RUN`),
    its files checked against their digests."""
    record = read_record(directory)
    if record is None or record.task != "pretrain" or not (directory / WEIGHTS).exists():
        raise MissingInputError(
            f"no finished pretraining run at {directory}; run `audiotok pretrain --input frames "
            "--targets VOCAB`"
        )
    for name, why in changed_files(directory, record).items():
        raise DataError(f"{directory / name} is not the file pretraining wrote ({why}); {RETRAIN}")
    preprocessing = {key: value.numpy() for key, value in _load_tensors(directory / PREPROCESSING).items()}
    return record, _load_tensors(directory / WEIGHTS), preprocessing


def load_run(directory: Path) -> Run:
    """A run folder, wherever it was copied: no store needed."""
    record = read_record(directory)
    weights = directory / WEIGHTS
    if record is None or not weights.exists():
        raise MissingInputError(f"no trained run at {directory}; run `audiotok train` first or pass --run")
    if record.task == "pretrain":
        raise SettingsError(
            f"{directory} is a pretraining run, with no classifier; fine-tune it with "
            f"`audiotok train --model bert --init {directory.name}`"
        )
    for name, why in changed_files(directory, record).items():
        raise DataError(f"{directory / name} is not the file training wrote ({why}); {RETRAIN}")
    model = build_model(record.model)
    try:
        model.load_state_dict(_load_tensors(weights))
    except RuntimeError as exc:  # missing, unexpected or misshapen weights
        raise DataError(f"{weights} does not fit the run's model ({_first_line(exc)}); {RETRAIN}") from None
    try:
        preprocessing = {k: v.numpy() for k, v in _load_tensors(directory / PREPROCESSING).items()}
        classes = parse_class_csv((directory / CLASSES).read_text(), str(directory / CLASSES))
    except OSError as exc:
        raise DataError(f"run {directory} is incomplete ({exc}); {RETRAIN}") from None
    if len(classes) != record.model.n_classes:
        raise DataError(
            f"{directory / CLASSES} lists {len(classes)} classes, the model has {record.model.n_classes} "
            f"outputs; {RETRAIN}"
        )
    return Run(directory, record, model, preprocessing, classes)


def _metadata(path: Path) -> dict[str, str]:
    """A safetensors file's metadata, read from its header only."""
    try:
        with safe_open(path, framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{path} is damaged ({_first_line(exc)}); {RETRAIN}") from None


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:  # garbage, truncated
        raise DataError(f"{path} is damaged ({_first_line(exc)}); {RETRAIN}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_folder(runs_dir: Path, run: str) -> Path:
    """A run given by its folder's path or its name under `runs_dir`; neither is refused in one line
    that lists the runs there."""
    if Path(run).is_dir():
        return Path(run)
    if (runs_dir / run).is_dir():
        return runs_dir / run
    names = [directory.name for directory, _ in find_runs(runs_dir)]
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "none"
    raise MissingInputError(
        f"no run {run!r} in {runs_dir} (it holds: {shown}); give a run's name or its folder's path"
    )


def find_runs(runs_dir: Path, damaged: dict[Path, str] | None = None) -> list[tuple[Path, RunRecord]]:
    """Every finished-or-started run under `runs_dir` of the current format, by name; a run whose
    record is damaged is left out (and put in `damaged`, with why, when given)."""
    runs = []
    for directory in sorted(runs_dir.glob("*/")) if runs_dir.exists() else []:
        try:
            record = read_record(directory)
        except MismatchError:
            continue
        except AudiotokError as error:
            if damaged is not None:
                damaged[directory] = str(error)
            continue
        if record is not None:
            runs.append((directory, record))
    return runs


def damaged_runs(runs_dir: Path) -> dict[Path, str]:
    """Every run folder under `runs_dir` that is not as training left it (a record that cannot be
    read, or a file that differs from its digest) -> why."""
    damaged: dict[Path, str] = {}
    for directory, record in find_runs(runs_dir, damaged):
        for name, why in (changed_files(directory, record) | scored_files_changed(directory)).items():
            damaged.setdefault(directory / name, why)
    return damaged


def pick_device(name: str) -> torch.device:
    """The torch device for `--device`; asking for a GPU that is not there is a settings error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"--device {name}, but torch sees no CUDA GPU here; use --device auto or cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise SettingsError(f"--device {name}, but torch sees {torch.cuda.device_count()} GPUs")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SettingsError("--device mps, but torch sees no Apple GPU here; use --device auto or cpu")
    return torch.device(name)
