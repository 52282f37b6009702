"""`train --cv`: k-fold cross-validation as ESC-50 (5 folds) and UrbanSound8K (10 folds) are
reported: one run per held-out fold with the same options, then the mean and standard deviation of
the folds' test scores.

Each fold is a whole experiment on its own split: the store is split with that fold as test (val
drawn by group from the other folds), token models get a vocabulary clustered on that fold's train
clips alone (`{features}-k{k}-fold{N}`, tokens of the same name: a vocabulary that saw the test
fold's frames would flatter the tokenizer, which is what is being measured), then the run
`{name}-fold{N}` trains and is scored (with `--seeds S`, `{name}-fold{N}-seed{S}` for each seed, the
fold's figure the mean of its seeds', as the DASB protocol reports). A fold whose run is finished
with these very settings is not redone, so an interrupted `--cv` resumes; a set of fold runs of
another recipe is never taken over (the new set gets the next free name, `NAME-2-foldN`); the
store's split is put back at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.errors import MissingInputError, SettingsError
from audiotok_cli.experiments.repeats import RepeatedRuns, RepeatScore, finished, fold_mean, repeat_score
from audiotok_cli.results.evaluate import evaluate
from audiotok_cli.settings import SplitSettings, VocabSettings
from audiotok_cli.stages.split import split
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab, vocab_name
from audiotok_cli.store import Pick, SplitRecord, Store
from audiotok_cli.training.loop import Planned, default_run_name, plan_run, train
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.run_names import repeat_base
from audiotok_cli.training.runs import SetMember, read_record, recipe_key

log = logging.getLogger(__name__)


def cross_validate(
    request: RunRequest,
    split_settings: SplitSettings | None = None,
    vocab_settings: VocabSettings | None = None,
    seeds: int = 1,
) -> RepeatedRuns:
    """Train and score one run per fold of the store's clips (see the module's docstring); with
    `seeds` > 1, `NAME-foldN-seedS` per fold and seed, a fold scoring as the mean of its seeds."""
    paths, pick = request.paths, request.pick
    if request.init is not None:
        raise SettingsError("--cv with --init: a pretraining run saw every fold; fine-tune per fold by hand")
    if pick.name is not None:
        raise SettingsError(
            "--cv clusters a vocabulary per fold; choose its size and features with --k and --features"
        )
    split_settings = split_settings or SplitSettings()
    vocab_settings = vocab_settings or VocabSettings()
    store = Store.open(paths.store)
    folds = _folds(store)
    features = store.features(pick.features).name
    vocab_settings = vocab_settings.model_copy(update={"n_clusters": pick.k or vocab_settings.n_clusters})
    vocab = vocab_name(
        features,
        vocab_settings.n_clusters,
        FrameTransforms(vocab_settings.transforms),
        vocab_settings.quantizer,
    )
    default = default_run_name(request.model, vocab if request.model.input == "tokens" else features)
    plan = _Plan(request, features, vocab, split_settings, vocab_settings)
    original = store.clips_record.split_before_cv
    if original is not None:  # a cross-validation killed mid-fold: the store's own split is this one
        log.warning("an earlier --cv was interrupted; its folds resume, and the split before it is put back")
    else:
        original = store.split
        store.keep_split_for_cv(original)
    repeats: list[RepeatScore] = []
    base = None
    seeded = range(request.seed, request.seed + seeds)
    try:
        for fold in folds:
            pick, planned = _prepare_fold(plan, fold, seeded)
            if base is None:  # the set's name: one whose finished folds are of this recipe
                wanted = {
                    _suffix(number, each, seeds): planned[each].record for number in folds for each in seeded
                }
                base = repeat_base(
                    paths.runs_dir, request.train.run_name, default, wanted, recipe_key, request.overwrite
                )
            scores = [
                _fold_run(
                    plan,
                    f"{base}-{_suffix(fold, each, seeds)}",
                    SetMember(name=base, fold=fold, seed=each if seeds > 1 else None),
                    pick,
                    planned[each],
                )
                for each in seeded
            ]
            repeats.append(scores[0] if seeds == 1 else fold_mean(fold, f"{base}-fold{fold}", scores))
    finally:
        if original is not None:
            split(paths.store, _settings_of(original), original.seed)
        Store.open(paths.store).keep_split_for_cv(None)
    return RepeatedRuns(base or default, "fold", repeats)


@dataclass(frozen=True)
class _Plan:
    """What every fold shares: the options of the run and of its per-fold split and vocabulary."""

    request: RunRequest  # the run asked for; each fold's and seed's is a copy
    features: str
    vocab: str  # token models: vocabularies (and tokens) are `{vocab}-fold{N}`
    split_settings: SplitSettings
    vocab_settings: VocabSettings


def _suffix(fold: int, seed: int, seeds: int) -> str:
    """`fold3`, or with several seeds a fold `fold3-seed1`."""
    return f"fold{fold}" + (f"-seed{seed}" if seeds > 1 else "")


def _prepare_fold(plan: _Plan, fold: int, seeds: range) -> tuple[Pick, dict[int, Planned]]:
    """The store split with `fold` as test, the fold's vocabulary and tokens (one for every seed of
    the model: the tokenizer is the fold's), and the run each seed makes."""
    request = plan.request
    fold_split = plan.split_settings.model_copy(
        update={"test_fold": fold, "test_groups": (), "test_sources": ()}
    )
    split(request.paths.store, fold_split, request.seed)
    pick = Pick(features=plan.features)
    if request.model.input == "tokens":
        name = f"{plan.vocab}-fold{fold}"
        _fold_vocab(request.paths.store, plan.vocab_settings, request.seed, plan.features, name)
        pick = Pick(name=name)
    return pick, {seed: plan_run(replace(request, seed=seed, pick=pick)) for seed in seeds}


def _fold_run(plan: _Plan, run: str, member: SetMember, pick: Pick, planned: Planned) -> RepeatScore:
    """The fold's run: kept where it is finished with these very inputs, trained (or resumed) else;
    a run of this recipe on another split or vocabulary of the fold is trained again."""
    paths, fold, overwrite = plan.request.paths, member.fold, plan.request.overwrite
    if not overwrite and finished(paths, run, planned.record):
        log.info("fold %d: %s is trained with these settings; kept", fold, run)
        return repeat_score(fold, run, evaluate(paths, run))
    previous = read_record(paths.runs_dir / run)
    if previous is not None and previous.resume_key != planned.record.resume_key and not overwrite:
        log.warning("fold %d: %s was trained on another split or vocabulary; training it again", fold, run)
        overwrite = True
    fold_request = plan.request.as_member(planned.record.seed, run, member)
    train(replace(fold_request, pick=pick, overwrite=overwrite))
    return repeat_score(fold, run, evaluate(paths, run))


def _fold_vocab(store_path: Path, settings: VocabSettings, seed: int, features: str, name: str) -> None:
    """The fold's vocabulary and tokens: kept where it was clustered on this very split, else made."""
    store = Store.open(store_path)
    record = store.vocab_record(name) if name in store.names("vocab") else None
    current = (
        record is not None
        and record.split == store.split
        and (record.niter, record.init, record.seed) == (settings.niter, settings.init, seed)
    )
    if not current:
        build_vocab(store_path, settings, seed, features, overwrite=True, name=name)
    tokenize(store_path, Pick(name=name), overwrite=not current)


def _folds(store: Store) -> list[int]:
    folds = sorted({int(fold) for fold in store.folds()[store.labeled()] if fold >= 0})
    if len(folds) < 2:
        raise MissingInputError(
            f"--cv needs clips in 2 folds or more; {store.path} has {len(folds) or 'none'} "
            "(import ESC-50 or UrbanSound8K as they ship, or a manifest with a fold column)"
        )
    return folds


def _settings_of(record: SplitRecord) -> SplitSettings:
    """The split settings a record was made with, to put the store's split back."""
    fields = record.model_dump(include=set(SplitSettings.model_fields))
    if fields.get("test_ratio") is None:
        fields.pop("test_ratio", None)
    return SplitSettings(**fields)
