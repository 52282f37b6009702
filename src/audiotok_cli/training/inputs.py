"""Which store group a model reads, and how: tokens with their vocabulary, or frames with the train
split's per-mel statistics. Training chooses and records them; scoring reopens what was recorded and
refuses a store that changed since."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.class_lists import ClassIndex
from audiotok_cli.errors import MismatchError, SettingsError
from audiotok_cli.settings import ModelSettings
from audiotok_cli.store import FeatureSet, Pick, Store
from audiotok_cli.training.data import ModelInputs, frame_statistics
from audiotok_cli.training.models.spec import ModelSpec
from audiotok_cli.training.runs import Run, RunInputs


@dataclass
class TrainingInputs:
    model_inputs: ModelInputs
    record: RunInputs
    preprocessing: dict[str, np.ndarray]  # saved with the run: centroids, or mean and std
    classes: ClassIndex  # the store's, which the model's outputs follow
    n_tokens: int = 0
    n_mels: int = 0

    def spec(self, model: ModelSettings) -> ModelSpec:
        """The model `model` builds on these inputs: their vocabulary or mel bands, and the padded
        set's width as the longest sequence."""
        return ModelSpec(
            n_tokens=self.n_tokens,
            n_mels=self.n_mels,
            max_frames=self.model_inputs.padded.data.shape[1],
            n_classes=len(self.classes),
            **model.model_dump(exclude={"vocab_size", "frame_transforms"}),  # those are the inputs' own
        )


def inputs_for_training(store: Store, model: ModelSettings, pick: Pick) -> TrainingInputs:
    """The tokens (or features, for frame models) `pick` chooses, and what the run must keep."""
    if model.input == "frames":
        return _frames(store, model, pick)
    tokens = store.tokens(pick)
    vocab = store.vocab(Pick(tokens.record.vocab))
    n_tokens = tokens.record.n_clusters
    if model.vocab_size not in (None, n_tokens):
        raise SettingsError(
            f"model.vocab_size {model.vocab_size} != {n_tokens}, the size of vocabulary {tokens.name!r}; "
            "unset it or choose a vocabulary of that size with --k"
        )
    record = RunInputs(
        store=str(store.path),
        input="tokens",
        features=tokens.record.features,
        audio=vocab.record.audio,
        split=store.split,
        tokens=tokens.name,
        vocab_fingerprint=tokens.record.vocab_fingerprint,
        transforms=vocab.record.transforms,
        quantizer=vocab.record.quantizer,
        encoder=vocab.record.encoder,
    )
    return TrainingInputs(
        ModelInputs(tokens, "tokens"),
        record,
        {"centroids": vocab.centroids, **vocab.fitted, **_merges(tokens.record.merges_json)},
        store.classes,
        n_tokens=n_tokens * tokens.record.codebooks,  # one embedding table for every codebook
    )


def _frames(store: Store, model: ModelSettings, pick: Pick) -> TrainingInputs:
    if pick.name is not None or pick.k is not None:
        raise SettingsError(
            f"--vocab and --k choose tokens, and model {model.kind!r} reads frames here; choose its "
            "features with --features"
        )
    features = store.features(pick.features)
    transforms = FrameTransforms(model.frame_transforms)
    mean, std = frame_statistics(features, store.split_rows(features.all_lengths(), "train"), transforms)
    record = frame_run_inputs(store, features, transforms)
    inputs = ModelInputs(features, "frames", mean, std, transforms)
    n_mels = transforms.dim(features.data.shape[2])
    return TrainingInputs(inputs, record, {"mean": mean, "std": std}, store.classes, n_mels=n_mels)


def frame_run_inputs(store: Store, features: FeatureSet, transforms: FrameTransforms) -> RunInputs:
    """What a run on frames records of them: the features, the audio and encoder that made them,
    the split, and the per-clip transforms it applies."""
    return RunInputs(
        store=str(store.path),
        input="frames",
        features=features.name,
        audio=features.record.audio,
        split=store.split,
        transforms=list(transforms.specs),
        encoder=features.record.encoder,
    )


def inputs_for_run(store: Store, run: Run) -> ModelInputs:
    """What a trained run reads from the store, checked against what it was trained on."""
    recorded = run.record.inputs
    if run.classes.mids != store.classes.mids:
        raise MismatchError(
            f"run {run.directory} was trained on {len(run.classes)} classes ({_first(run.classes)}), "
            f"the store {store.path} holds {len(store.classes)} ({_first(store.classes)}); score it on "
            "the store it was trained on (--store), or train it on this one"
        )
    store.require_split(f"run {run.directory}", recorded.split, "audiotok train --overwrite")
    if recorded.input == "frames":
        features = store.features(recorded.features)
        if features.record.audio != recorded.audio or features.record.encoder != recorded.encoder:
            raise MismatchError(
                f"run {run.directory} was trained on features {recorded.features!r} made with other audio "
                "settings than the store's; featurize them back or train the run again with --overwrite"
            )
        mean, std = run.preprocessing["mean"], run.preprocessing["std"]
        return ModelInputs(features, "frames", mean, std, FrameTransforms(tuple(recorded.transforms)))
    tokens = store.tokens(Pick(recorded.tokens))
    if tokens.record.vocab_fingerprint != recorded.vocab_fingerprint:
        raise MismatchError(
            f"run {run.directory} was trained on other tokens than {recorded.tokens!r} now holds; "
            "train it again with --overwrite"
        )
    return ModelInputs(tokens, "tokens")


def _merges(merges_json: str | None) -> dict[str, np.ndarray]:
    """Merged tokens' tokenizer, for a run's preprocessing: predict merges a new file's ids with it."""
    if not merges_json:
        return {}
    from audiotok_cli.tokenizer.merges import Merges

    return {"merges": Merges(merges_json).as_array()}


def _first(classes: ClassIndex, shown: int = 3) -> str:
    """The first few class names, for messages."""
    more = ", ..." if len(classes) > shown else ""
    return ", ".join(classes.names[:shown]) + more
