"""A units run's layers as frames (`featurize --encoder RUN --layer L`, and `predict` with a run
trained on them): the run's encoder, cut after the last layer asked for, over the log-mel frames it
was trained on. Kept apart from pretraining (training/units.py) so featurize's tasks import torch and
the encoder, not the training loop and its metrics (~1 s of scipy and scikit-learn a process).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiotok_cli.audio.encoder import chosen_layers
from audiotok_cli.audio.logmel import LogMel
from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.errors import DataError, SettingsError
from audiotok_cli.settings import AudioSettings
from audiotok_cli.store import FeatureSet, Store
from audiotok_cli.training.models.bert import FrameMaskedUnits
from audiotok_cli.training.models.spec import ModelSpec
from audiotok_cli.training.runs import WEIGHTS, load_pretraining

MODEL_TYPE = "audiotok-units"  # the features record's encoder type for a units run's states
DECODED_A_BATCH = 64  # clips decoded before their states are made (where the store lacks their frames)
FRAMES_A_FORWARD = 8192  # frames of equal-length clips in one forward: ~130 MB of attention at 1,000


def unit_frames(audio: AudioSettings) -> UnitFrames:
    """The units run `audio.encoder` names, built once a process (FRONT_ENDS' "units"); a run
    trained again since is loaded again."""
    return _units(audio.model_dump_json(), _weights_stamp(audio.encoder))


@lru_cache(maxsize=2)
def _units(audio_json: str, _stamp: tuple) -> UnitFrames:
    return UnitFrames(AudioSettings.model_validate_json(audio_json))


def _weights_stamp(folder: str) -> tuple:
    weights = Path(folder) / WEIGHTS
    return (weights.stat().st_mtime_ns, weights.stat().st_size) if weights.exists() else ()


class UnitFrames:
    """A units run's layer-L states `[frame, hidden]` of a clip (several layers: side by side) from
    its log-mel frames (float16, as the store keeps them), its transforms and statistics, and its
    encoder cut after the last layer asked for. `featurize` reads the frames the store already holds
    for the run (`stored_frames`) and decodes audio only for clips it lacks; clips of one length
    share a forward, which gave each the very values it gets alone (tested: neither the worker count
    nor `frames_a_forward` moves a bit; padded batches would move a few float16 values by one ulp).
    The states are rounded to float16 too, so a file predicted gives the store's values."""

    def __init__(self, audio: AudioSettings) -> None:
        directory = Path(audio.encoder)
        record, weights, preprocessing = load_pretraining(directory)
        if record.model.target_k == 0:
            raise SettingsError(
                f"{directory} pretrained on tokens, so it reads no audio; use a units run (`audiotok "
                "pretrain --input frames --targets VOCAB`)"
            )
        self.n_layers = record.model.num_layers
        self.layers = chosen_layers(
            audio.layer, self.n_layers, f"units run {directory} has states 0 (its projected frames)"
        )
        if record.inputs.encoder is not None:
            raise SettingsError(f"units run {directory} reads encoder features; featurize from log-mel runs")
        self.model = _encoder_up_to(record.model, weights, max(self.layers))
        self.mean, self.std = preprocessing["mean"], preprocessing["std"]
        self.transforms = FrameTransforms(tuple(record.inputs.transforms))
        inner = record.inputs.audio
        self.reads, self.logmel = (record.inputs.features, inner), LogMel(inner)
        self.settings = audio.model_copy(
            update={**inner.model_dump(exclude={"encoder", "layer"}), "layer": self.layers}
        )
        self.sample_rate, self.max_samples = self.logmel.sample_rate, self.logmel.max_samples
        self.max_frames, self.batch, self.device = self.logmel.max_frames, DECODED_A_BATCH, "cpu"
        self.frames_a_forward = FRAMES_A_FORWARD
        self.dim, self.model_type = record.model.hidden_size * len(self.layers), MODEL_TYPE
        self.frames_per_second = inner.sample_rate / inner.hop_length
        self.digest = record.digests.get(WEIGHTS, "")[:16]
        self.weights_file = str(directory / WEIGHTS)  # a retrained run makes these features stale

    def stored_frames(self, store: Store) -> FeatureSet | None:
        """The store's features group this run was trained on, where it still holds the frames as
        the run read them: read instead of decoding every clip's audio again."""
        name, audio = self.reads
        if name not in store.names("features"):
            return None
        features = store.features(name)
        same = features.record.encoder is None and features.record.audio == audio
        return features if same else None

    def many(self, clips: list[np.ndarray], names: list[str]) -> list[np.ndarray | DataError]:
        """Decoded clips' states (a clip too short for log-mel: why not)."""
        out = self.logmel.many(clips, names)
        made = [index for index, frames in enumerate(out) if not isinstance(frames, DataError)]
        for index, states in zip(made, self.from_frames([out[i] for i in made]), strict=True):
            out[index] = states
        return out

    @torch.no_grad()
    def from_frames(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Each clip's states of the chosen layers from its log-mel frames, as the store holds them."""
        inputs = [self.transforms(frames.astype(np.float16).astype(np.float32)) for frames in clips]
        by_length: dict[int, list[int]] = {}
        for index, frames in enumerate(inputs):
            by_length.setdefault(len(frames), []).append(index)
        out: list[np.ndarray] = [np.zeros(0)] * len(inputs)
        with _one_torch_thread():  # as numpy's BLAS in every featurize task
            for length, indices in sorted(by_length.items()):
                step = max(1, self.frames_a_forward // max(length, 1))
                for start in range(0, len(indices), step):
                    batch = indices[start : start + step]
                    frames = torch.from_numpy((np.stack([inputs[i] for i in batch]) - self.mean) / self.std)
                    hidden = self.model.hidden_states(frames, torch.full((len(batch),), length))
                    states = torch.cat([hidden[layer] for layer in self.layers], dim=-1)[:, 1:]
                    for row, index in enumerate(batch):
                        out[index] = states[row].numpy().astype(np.float16).astype(np.float32)
        return out


_torch_threads: dict[str, Any] = {"users": 0, "before": 1, "lock": threading.Lock()}


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch on one thread while any featurize task (a thread of this process, or the process
    itself) runs a forward; its own count back once the last one is done."""
    held = _torch_threads
    with held["lock"]:
        if held["users"] == 0:
            held["before"] = torch.get_num_threads()
            torch.set_num_threads(1)
        held["users"] += 1
    try:
        yield
    finally:
        with held["lock"]:
            held["users"] -= 1
            if held["users"] == 0:
                torch.set_num_threads(held["before"])


def _encoder_up_to(spec: ModelSpec, weights: dict[str, torch.Tensor], last: int) -> FrameMaskedUnits:
    """The run's encoder with its layers after `last` left out: they cost a forward's time and change
    no state below them."""
    kept = spec.model_copy(update={"num_layers": max(last, 1)})
    model = FrameMaskedUnits(kept).eval()
    above = tuple(f"bert.encoder.layer.{layer}." for layer in range(kept.num_layers, spec.num_layers))
    model.load_state_dict({name: value for name, value in weights.items() if not name.startswith(above)})
    return model
