"""`eval`: score a trained run on the val split and the official eval set (test), beside the
label-prior baseline, and write the report as JSON next to the run, with every clip's scores
(`predictions.safetensors`, what `compare` pairs runs on) and, for single-label collections, the
confusion matrix (`confusion.png`, its counts in the report)."""

from __future__ import annotations

import errno
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from audiotok_cli.atomic import write_json
from audiotok_cli.errors import DataError, MissingInputError, NotWritableError
from audiotok_cli.results.figures import plot_confusion
from audiotok_cli.settings import Paths
from audiotok_cli.store import Pick, Store, only_candidate
from audiotok_cli.training.data import BatchReader, reader_workers, score_rows
from audiotok_cli.training.inputs import inputs_for_run
from audiotok_cli.training.metrics import (
    classification_metrics,
    mean_average_precision,
    per_class_ap,
    prior_scores,
    single_label_report,
    tune_thresholds,
)
from audiotok_cli.training.monitor import has_board, write_hparams
from audiotok_cli.training.runs import (
    REPORT,
    RunRecord,
    find_runs,
    load_run,
    pick_device,
    save_tensors,
    scored_files_changed,
    seal_report,
)

log = logging.getLogger(__name__)
SHOWN_CLASSES = 10
PREDICTIONS, CONFUSION = "predictions.safetensors", "confusion.png"


@dataclass
class EvalReport:
    run_dir: Path
    report_path: Path
    splits: dict[str, dict]  # split -> metrics, with "prior_mAP" and "per_class_AP"
    test_rule: str  # how the store chose its test clips: "the eval source", "fold 1", ...
    not_saved: str | None = None  # why the report could not be written (the scores still count)
    confusion: Path | None = None  # single-label runs: the test split's confusion matrix, drawn

    def problem(self) -> NotWritableError | None:
        """The scores are shown first; then the exit code says the report was not saved."""
        if self.not_saved is None:
            return None
        return NotWritableError(
            f"the scores above were not saved: cannot write {self.report_path} ({self.not_saved}); "
            "make the run folder writable and run `eval` again"
        )


def choose_run(runs_dir: Path, name: str | None, model: str | None, pick: Pick) -> Path:
    """The run folder `name`, or else the only run of `model` on tokens `pick` accepts."""
    if name is not None:
        return runs_dir / name

    def accepts(record: RunRecord) -> bool:
        inputs = record.inputs
        return (
            record.task == "classify"
            and model in (None, record.model.kind)
            and pick.matches(inputs.tokens, record.model.n_tokens or None, inputs.features)
        )

    damaged: dict[Path, str] = {}
    runs = [directory.name for directory, record in find_runs(runs_dir, damaged) if accepts(record)]
    if not runs and damaged:  # the run meant may be the damaged one: say so, not "no runs"
        raise DataError(next(iter(damaged.values())))
    missing = "; run `audiotok train` first"
    chosen = only_candidate(
        runs, f"trained run{pick.describe()}", f"runs{pick.describe()}", runs_dir, missing, "--run"
    )
    return runs_dir / chosen


def evaluate(
    paths: Paths,
    run: str | None = None,
    model: str | None = None,
    pick: Pick | None = None,
    device: str = "auto",
    batch_size: int = 32,
    on_its_own: bool = False,
) -> EvalReport:
    """Score the chosen run (see `choose_run`) on what it reads from the store. F1 is reported at 0.5
    and at per-class thresholds tuned on val; per-class AP names the best and worst classes.
    `on_its_own`: the `eval` command, not a step of `--cv`, so a split a killed `--cv` left is said."""
    target = pick_device(device)
    directory = choose_run(paths.runs_dir, run, model, pick or Pick())
    loaded = load_run(directory)
    record = loaded.record
    store = Store.open(paths.store)
    if on_its_own:
        warn_of_fold_split(store)
    inputs = inputs_for_run(store, loaded)
    loaded.model.to(target)
    lengths = inputs.padded.all_lengths()
    train_prior = store.label_prior(store.split_rows(lengths, "train"))
    results, thresholds, predictions = {}, None, {}
    names = loaded.classes.names
    clip_ids = store.ytids()
    leaks = store.leaks()
    reader = BatchReader(store, inputs, reader_workers(None, target))
    for split in ("val", "test"):
        rows = store.split_rows(lengths, split)
        if not rows.any():
            continue
        labels, scores = score_rows(loaded.model, reader, rows, batch_size, target, record.loss)
        leaked = (leaks.test if split == "test" else leaks.val)[rows]
        predictions[split] = SplitPredictions(clip_ids[rows].tolist(), labels, scores, leaked)
        if split == "val":
            thresholds = tune_thresholds(labels, scores)
        metrics = classification_metrics(labels, scores, thresholds)
        if leaked.any():  # copies of these clips were trained on: the figures without them, beside
            metrics["leaked_clips"] = int(leaked.sum())
            clean = ~leaked
            metrics["leak_free"] = classification_metrics(labels[clean], scores[clean], thresholds)
            metrics["leak_free"]["prior_mAP"] = mean_average_precision(
                labels[clean], prior_scores(train_prior, int(clean.sum()))
            )
        metrics["prior_mAP"] = mean_average_precision(labels, prior_scores(train_prior, len(labels)))
        ranked = sorted(per_class_ap(labels, scores).items(), key=lambda item: -item[1])
        shown = max(1, min(SHOWN_CLASSES, len(ranked) // 2))  # best and worst never the same classes
        metrics["per_class_AP"] = {names[c]: ap for c, ap in ranked}
        metrics["best_classes"] = [names[c] for c, _ in ranked[:shown]]
        metrics["worst_classes"] = [names[c] for c, _ in ranked[-shown:][::-1]]
        single = single_label_report(labels, scores, list(names))
        if single is not None:
            metrics["single_label"] = single
        results[split] = metrics
    reader.close()
    report = {
        "run": str(directory),
        "model": record.model.model_dump(),
        "best_epoch": record.best_epoch,
        "test_rule": store.split.test_rule,
        "splits": results,
    }
    result = EvalReport(directory, directory / REPORT, results, store.split.test_rule)
    try:
        scored = {PREDICTIONS: write_predictions(directory, predictions)}
        if "single_label" in results.get("test", {}):
            matrix = results["test"]["single_label"]["confusion"]
            accuracy = results["test"]["accuracy"]
            title = f"{directory.name}: test ({store.split.test_rule}), accuracy {accuracy:.3f}"
            result.confusion = plot_confusion(matrix, list(names), directory / CONFUSION, title)
        write_json(directory / REPORT, seal_report(report, scored))  # last: it vouches for the others
        if has_board(directory):
            write_hparams(directory, hparams_of(record), headline_scores(results))
    except OSError as denied:  # a read-only run folder or mount: the scores are still worth showing
        if denied.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        result.not_saved = denied.strerror
    return result


def warn_of_fold_split(store: Store) -> None:
    """Say so where the store's split is a fold's, left by a `train --cv` that was interrupted: a run
    trained or scored now would be on that fold, not on the split the user made."""
    if store.clips_record.split_before_cv is not None and store.split is not None:
        log.warning(
            "the store's split is one fold's (test: %s), left by an interrupted `train --cv`: run that "
            "`train --cv` again to finish it and put the store's split back, or `audiotok split`",
            store.split.test_rule,
        )


def hparams_of(record: RunRecord) -> dict[str, object]:
    """What made a run, as the HParams dashboard's columns: its inputs, model and training settings."""
    inputs = record.inputs
    made = {
        "input": inputs.input,
        "reads": inputs.tokens or inputs.features,
        "transforms": inputs.transforms,
        "quantizer": inputs.quantizer if inputs.input == "tokens" else "",
        "seed": record.seed,
        "init": record.init or "",
    }
    made |= {f"model.{name}": value for name, value in record.model.model_dump().items()}
    return made | {f"train.{name}": value for name, value in record.train.items()}


def headline_scores(results: dict[str, dict]) -> dict[str, float]:
    """Each split's accuracy (single-label sets), mAP and AUC: the dashboard's metric columns."""
    return {
        f"{split}_{metric}": float(scores[metric])
        for split, scores in results.items()
        for metric in ("accuracy", "mAP", "AUC")
        if isinstance(scores.get(metric), int | float)
    }


@dataclass
class SplitPredictions:
    """A run's scores on one split, by clip: what `compare` pairs two runs on."""

    clips: list[str]
    labels: np.ndarray  # [clips, classes] bool
    scores: np.ndarray  # [clips, classes] probabilities
    leaked: np.ndarray  # [clips] bool: a copy of the clip is on a training side (store/leaks.py)

    @property
    def leaked_clips(self) -> set[str]:
        return {clip for clip, leaked in zip(self.clips, self.leaked, strict=True) if leaked}

    def without(self, left_out: set[str]) -> SplitPredictions:
        """The predictions of the clips not in `left_out` (the leak-free ones, say)."""
        kept = np.array([clip not in left_out for clip in self.clips], dtype=bool)
        clips = [clip for clip, keep in zip(self.clips, kept, strict=True) if keep]
        return SplitPredictions(clips, self.labels[kept], self.scores[kept], self.leaked[kept])


def write_predictions(directory: Path, predictions: dict[str, SplitPredictions]) -> str:
    """`predictions.safetensors`: per split its labels and scores, the clip ids in the metadata;
    returns its digest (eval.json keeps it)."""
    tensors, metadata = {}, {}
    for split, scored in predictions.items():
        tensors[f"{split}.labels"] = torch.from_numpy(scored.labels.astype(np.uint8))
        tensors[f"{split}.scores"] = torch.from_numpy(np.ascontiguousarray(scored.scores, dtype=np.float32))
        tensors[f"{split}.leaked"] = torch.from_numpy(scored.leaked.astype(np.uint8))
        metadata[f"{split}.clips"] = json.dumps(scored.clips)
    return save_tensors(directory / PREDICTIONS, tensors, metadata)


def read_predictions(directory: Path, split: str = "test") -> SplitPredictions:
    """The scores the run's last `eval` wrote for `split`; none, or a file not as `eval` wrote it,
    is refused naming the fix."""
    path = directory / PREDICTIONS
    if not path.exists():
        raise MissingInputError(
            f"{directory} has no scored clips; run `audiotok eval --run {directory.name}`"
        )
    again = f"run `audiotok eval --run {directory.name}` again"
    changed = scored_files_changed(directory)
    if REPORT in changed:
        raise DataError(changed[REPORT])
    if PREDICTIONS in changed:
        raise DataError(f"{path}: {changed[PREDICTIONS]}; {again}")
    if not (directory / REPORT).exists():
        raise DataError(f"{path} has no eval.json beside it to vouch for its scores; {again}")
    try:
        with safe_open(path, framework="np") as handle:
            metadata = handle.metadata() or {}
            if f"{split}.clips" not in metadata:
                raise MissingInputError(f"{path} holds no {split} clips; the store has no {split} split")
            labels = handle.get_tensor(f"{split}.labels").astype(bool)
            leaked = (  # files from before leaks were counted: none known
                handle.get_tensor(f"{split}.leaked").astype(bool)
                if f"{split}.leaked" in handle.keys()  # noqa: SIM118 (a safetensors handle is no dict)
                else np.zeros(len(labels), dtype=bool)
            )
            return SplitPredictions(
                json.loads(metadata[f"{split}.clips"]), labels, handle.get_tensor(f"{split}.scores"), leaked
            )
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(
            f"{path} is damaged ({exc}); run `audiotok eval --run {directory.name}` again"
        ) from None
