"""`predict`: a trained run applied to audio files, with nothing but the run folder: each file is
decoded and featurized with the run's own audio settings, tokenized with its own centroids (token
models) or standardised with its own statistics (frame models), and scored.

A file longer than the run's clip length (`clip_seconds`, 10 s for AudioSet) is cut into windows of
that length, as the model saw clips in training; it is read, resampled and scored a block at a time,
so memory stays flat however long the file (a 10-hour recording takes what a minute takes). A
multi-label (BCE) run scores each class by its maximum over the windows (the usual pooling for
"does this sound occur anywhere in the file"); a single-label (softmax) run by the mean of the
windows' probabilities, which still sum to 1. A last window shorter than one second is dropped
unless it is the only one.

A set of runs (`train --seeds N`, `--cv`) predicts as one: each file is decoded and featurized once,
each run scores it as above, and the set's scores are the mean of its runs' (an ensemble, as a set's
figure is the mean of its runs').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from audiotok_cli.audio.front_ends import FrameMaker, frames_maker
from audiotok_cli.audio.logmel import Windows
from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.errors import AudiotokError, DataError, MismatchError, MissingInputError
from audiotok_cli.store import SPLITS, Store
from audiotok_cli.tokenizer.tokenizer import Tokenizer
from audiotok_cli.training.data import probabilities
from audiotok_cli.training.models.ids import to_model_ids
from audiotok_cli.training.run_sets import set_members
from audiotok_cli.training.runs import Run, load_run, pick_device, run_folder

UNREADABLE = "give a FLAC, WAV, MP3 or OGG file"


@dataclass
class FilePrediction:
    path: str
    windows: int
    seconds: float
    top: list[tuple[str, float]]  # (display name, probability), best first
    split: str | None = None  # the run's split that holds this very file, where its store says so


@dataclass
class Predictions:
    run: str
    pooling: str
    files: list[FilePrediction] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # path -> why

    missing: list[str] = field(default_factory=list)  # paths that are not there at all

    def problem(self) -> DataError | MissingInputError | None:
        if not self.failed:
            return None
        files = f"{len(self.failed)} file{'s' * (len(self.failed) > 1)}"
        error = MissingInputError if self.missing else DataError  # a wrong path is not bad audio
        return error(f"{files} could not be scored; first: {next(iter(self.failed.values()))}")


def predict_with(runs_dir: Path, name: str, paths: list[Path], top: int, device: str) -> Predictions:
    """`predict`: the run `name` (a name under `runs_dir` or a folder), or the set of that name, on
    `device`."""
    if (runs_dir / name).is_dir() or Path(name).is_dir():
        folders, shown = [run_folder(runs_dir, name)], None
    else:
        _, members = set_members(runs_dir, name)
        folders, shown = [members[key] for key in sorted(members)], f"{name} ({len(members)} runs)"
    target = pick_device(device)
    runs = [load_run(folder) for folder in folders]
    for run in runs:
        run.model.to(target)
    return predict_files(runs, paths, top, shown)


def predict_files(
    runs: Run | list[Run], paths: list[Path], top: int = 5, name: str | None = None
) -> Predictions:
    """Score every file with a run, or a set of runs (their scores' mean); one file that cannot be
    read is recorded and the others are still scored."""
    runs = [runs] if isinstance(runs, Run) else runs
    run = runs[0]
    _require_one_front_end(runs)
    audio = run.record.inputs.audio
    frames_of = frames_maker(audio)  # log-mel, a transformers encoder or a units run
    for member in runs:
        _require_same_encoder(member, frames_of)
    single = run.record.loss == "ce"
    pooling = f"{'mean' if single else 'max'} over {audio.clip_seconds:g} s windows"
    pooling += f", then the mean over the set's {len(runs)} runs" * (len(runs) > 1)
    result = Predictions(name or str(run.directory), pooling + " (softmax: sums to 1)" * single)
    tokenizers = [_tokenizer(member) for member in runs]  # built once, not per window
    splits = _store_splits(run)
    for member in runs:
        member.model.eval()
    for path in paths:
        try:
            if not path.is_file():
                result.missing.append(str(path))
                raise DataError(f"{path} does not exist or is not a file")
            windows = Windows(path, frames_of.sample_rate, frames_of.max_samples, UNREADABLE)
            scores = _window_scores(runs, tokenizers, frames_of, windows)
        except DataError as exc:
            result.failed[str(path)] = str(exc)
            continue
        pooled = np.mean([_pooled(kept, single) for kept in scores], axis=0)
        best = np.argsort(-pooled)[:top]
        names = run.classes.names
        top_labels = [(names[c], float(pooled[c])) for c in best]
        result.files.append(
            FilePrediction(
                str(path), len(scores[0]), round(windows.seconds, 2), top_labels, splits(path.resolve())
            )
        )
    return result


def _window_scores(
    runs: list[Run], tokenizers: list[Tokenizer | None], frames_of: FrameMaker, windows: Windows
) -> list[list[np.ndarray]]:
    """Each run's scores of each window, windows featurized `frames_of.batch` at a time as the file
    streams by: only the scores are kept, never the file's samples or frames."""
    scores: list[list[np.ndarray]] = [[] for _ in runs]
    batch: list[np.ndarray] = []
    for samples in chain(windows, [None]):
        if samples is not None:
            batch.append(samples)
        if batch and (samples is None or len(batch) == frames_of.batch):
            for frames in frames_of.many(batch, [str(windows.path)] * len(batch)):
                frames = _or_raise(frames)
                for member, tokenizer, kept in zip(runs, tokenizers, scores, strict=True):
                    kept.append(_score(member, frames, tokenizer))
            batch = []
    return scores


def _pooled(scores: list[np.ndarray], single: bool) -> np.ndarray:
    """One run's scores of a file: its windows' mean (softmax) or maximum (sigmoids)."""
    stacked = np.stack(scores)
    return stacked.mean(axis=0) if single else stacked.max(axis=0)


def _tokenizer(run: Run) -> Tokenizer | None:
    """A token run's tokenizer, from its preprocessing (None for a frame run): built once a file set."""
    if run.record.inputs.input != "tokens":
        return None
    transforms = FrameTransforms(tuple(run.record.inputs.transforms))
    return Tokenizer.from_arrays(run.record.inputs.quantizer, transforms, run.preprocessing)


def _require_one_front_end(runs: list[Run]) -> None:
    """A set's runs read one front end (the same audio settings, loss and classes): each file is
    featurized once for all of them, and their scores average class by class."""
    first = runs[0]
    for run in runs[1:]:
        same = (run.record.inputs.audio, run.record.loss, run.classes.mids) == (
            first.record.inputs.audio, first.record.loss, first.classes.mids,
        )  # fmt: skip
        if not same:
            raise MismatchError(
                f"runs {first.directory.name} and {run.directory.name} read other audio settings, losses "
                "or classes; predict with one run at a time"
            )


def _store_splits(run: Run) -> Callable[[Path], str | None]:
    """Which split of the run's store holds a file (imported clips are `{collection}/{path}`), so a
    score on a training clip is never read as a held-out one; nothing where the store is gone or
    was split otherwise since."""
    try:
        store = Store.open(Path(run.record.inputs.store), mode="r")
        if store.split != run.record.inputs.split:
            return lambda path: None
        roots = {name: Path(record.root) for name, record in store.collections.items()}
        codes, row_of = store.splits(), store.row_of
    except AudiotokError:
        return lambda path: None

    def split_of(path: Path) -> str | None:
        for name, root in roots.items():
            if path.is_relative_to(root):
                row = row_of.get(f"{name}/{path.relative_to(root).as_posix()}")
                return None if row is None else SPLITS[codes[row]]
        return None

    return split_of


def _require_same_encoder(run: Run, frames_of: FrameMaker) -> None:
    """An encoder run's encoder must be the one that made its features (same weights, not only name)."""
    recorded = run.record.inputs.encoder
    if recorded is not None and recorded.digest != getattr(frames_of, "digest", None):
        raise MismatchError(
            f"encoder {run.record.inputs.audio.encoder!r} is not the one run {run.directory} was trained "
            f"on (weights digest {frames_of.digest}, the run's {recorded.digest}); put that one back there"
        )


def _or_raise(frames: np.ndarray | DataError) -> np.ndarray:
    if isinstance(frames, DataError):
        raise frames
    return frames


@torch.no_grad()
def _score(run: Run, frames: np.ndarray, tokenizer: Tokenizer | None = None) -> np.ndarray:
    """Class probabilities of one window's frames, prepared as the run's model reads them: a token
    run's through its tokenizer (`tokenizer`, else built from the run), as tokenize made the store's."""
    if run.record.inputs.input == "tokens":
        tokenizer = tokenizer or _tokenizer(run)
        ids = tokenizer.encode(frames)
        k = tokenizer.quantizer.codebooks.shape[-2]
        inputs = to_model_ids(torch.from_numpy(ids[None].astype(np.int64)), k)
    else:
        vectors = FrameTransforms(tuple(run.record.inputs.transforms))(frames)  # per clip, as in training
        inputs = torch.from_numpy(((vectors - run.preprocessing["mean"]) / run.preprocessing["std"])[None])
    device = next(run.model.parameters()).device
    logits = run.model(inputs.to(device), torch.tensor([inputs.shape[1]], device=device))  # merged: fewer
    return probabilities(logits, run.record.loss)[0].cpu().numpy()
