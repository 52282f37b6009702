"""Frames from a pretrained audio encoder of `transformers` (`featurize --encoder NAME_OR_PATH
--layer L`): each clip resampled to the encoder's own rate, through its feature extractor and model,
and the hidden states of layer L kept as its frames (`--layer` repeated: several layers side by side,
one pq codebook each with `vocab --quantizer pq:L`, DASB's multi-layer recipe). k-means over them
gives HuBERT-style units (fairseq's `examples/hubert/simple_kmeans` does the same, one utterance per forward).

Any encoder whose hidden states run along time works: HuBERT, wav2vec 2.0, WavLM (their states at
~50 a second), and an encoder-decoder's encoder (Whisper's; its 30 s padding is cut back to the clip).
On a GPU (used when there is one) equal-length clips go through the model `GPU_BATCH` at a time
(AudioSet's are nearly all 10 s); a batch depends on the shard alone, so the values do not depend on
the worker count. On the CPU one clip a forward, on one thread as every featurize task runs:
`benchmarks/bench_encoder.py` measured batches there at 0.88-1.05x one clip a forward, with the
very same values.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from audiotok_cli.errors import DataError, SettingsError
from audiotok_cli.settings import AudioSettings

GPU_BATCH = 8  # clips a forward on a GPU, at most: part of what makes the values there, so fixed
KNOWN = "HuBERT, wav2vec 2.0, WavLM or Whisper"
WHERE_FROM = {"_name_or_path", "transformers_version"}  # not what the encoder is


def encoder_frames(audio: AudioSettings) -> EncoderFrames:
    """The encoder `audio` names, built once a process (its probes and digest cost forwards); a
    local folder whose files changed since is loaded again. The sample rate is the encoder's own,
    so settings that differ only there share one."""
    any_rate = audio.model_copy(update={"sample_rate": 1}).model_dump_json()
    return _cached(any_rate, _folder_stamp(audio.encoder))


@lru_cache(maxsize=2)
def _cached(audio_json: str, _stamp: tuple) -> EncoderFrames:
    return EncoderFrames(AudioSettings.model_validate_json(audio_json))


def _folder_stamp(name: str) -> tuple:
    folder = Path(name)
    if not folder.is_dir():
        return ()
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.iterdir()))


def chosen_layers(layers: tuple[int, ...], n_layers: int, states: str) -> tuple[int, ...]:
    """The layers asked for, -1 read as the last; one the encoder lacks is refused naming its range
    (`states`: "encoder X has hidden states 0 (its input embeddings)")."""
    for layer in layers:
        if layer > n_layers:
            raise SettingsError(
                f"layer {layer}: {states} to {n_layers}; choose among those, or -1 for the last"
            )
    chosen = tuple(n_layers if layer == -1 else layer for layer in layers)
    if len(set(chosen)) < len(chosen):
        raise SettingsError(f"layers {list(layers)} name layer {n_layers} twice (-1 is the last)")
    return chosen


class EncoderFrames:
    """Hidden states `[frame, hidden]` of one layer of a transformers audio encoder, or of several
    side by side (`[frame, hidden x layers]`: DASB's multi-layer units, a pq codebook a layer)."""

    def __init__(self, audio: AudioSettings) -> None:
        self.model, self.extractor, self.device = _load(audio.encoder)
        config = self.model.config
        self.n_layers = config.num_hidden_layers
        self.layers = chosen_layers(
            audio.layer,
            self.n_layers,
            f"encoder {audio.encoder!r} has hidden states 0 (its input embeddings)",
        )
        self.sample_rate = int(self.extractor.sampling_rate)
        self.settings = audio.model_copy(update={"sample_rate": self.sample_rate})
        self.padded_samples = getattr(self.extractor, "n_samples", None)  # Whisper pads to 30 s
        if self.padded_samples and audio.clip_seconds * self.sample_rate > self.padded_samples:
            raise SettingsError(
                f"encoder {audio.encoder!r} reads at most {self.padded_samples / self.sample_rate:g} s "
                f"at a time; lower --clip-seconds to that"
            )
        self.max_samples = round(audio.clip_seconds * self.sample_rate)
        self.dim = config.hidden_size * len(self.layers)
        self.model_type = config.model_type
        self.frames_per_second = self._frames_per_second(audio.encoder)
        self.max_frames = math.ceil(audio.clip_seconds * self.frames_per_second) + 1
        self.batch = 1 if self.device == "cpu" else GPU_BATCH
        self.digest = _digest(self.model)

    def __call__(self, samples: np.ndarray, name: str = "the clip") -> np.ndarray:
        frames = self.many([samples], [name])[0]
        if isinstance(frames, DataError):
            raise frames
        return frames

    def many(self, clips: list[np.ndarray], names: list[str]) -> list[np.ndarray | DataError]:
        """Each clip's frames (cut to `clip_seconds`), or why it has none; equal lengths share a forward."""
        clips = [samples[: self.max_samples] for samples in clips]
        out: list[np.ndarray | DataError] = [DataError("not computed")] * len(clips)
        by_length: dict[int, list[int]] = {}
        for index, samples in enumerate(clips):
            by_length.setdefault(len(samples), []).append(index)
        for indices in by_length.values():
            for start in range(0, len(indices), self.batch):
                batch = indices[start : start + self.batch]
                try:
                    states = self._states([clips[i] for i in batch])
                except RuntimeError as exc:  # e.g. shorter than its first convolution
                    reason = str(exc).splitlines()[0]
                    for i in batch:
                        out[i] = DataError(
                            f"{names[i]} ({len(clips[i])} samples at {self.sample_rate} Hz) cannot go "
                            f"through the encoder ({reason}): too short to featurize"
                        )
                    continue
                for row, i in enumerate(batch):
                    out[i] = states[row, : self._valid_frames(len(clips[i]), states.shape[1])]
        return out

    def _states(self, clips: list[np.ndarray]) -> np.ndarray:
        """The chosen layers' hidden states of equal-length clips, side by side, float32
        `[clip, frame, hidden x layers]`."""
        import torch

        inputs = self.extractor(clips, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {key: value.to(self.device) for key, value in inputs.items() if key != "attention_mask"}
        threads = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(1)  # as numpy's BLAS in every featurize task
        try:
            with torch.no_grad():
                hidden = self.model(**inputs, output_hidden_states=True).hidden_states
                states = torch.cat([hidden[layer] for layer in self.layers], dim=-1)
        finally:
            torch.set_num_threads(threads)
        return states.float().cpu().numpy()

    def _valid_frames(self, n_samples: int, n_frames: int) -> int:
        """Frames that cover the clip: all of them, but for an encoder that pads every input."""
        if not self.padded_samples:
            return min(n_frames, self.max_frames)
        return min(n_frames, math.ceil(n_samples * n_frames / self.padded_samples))

    def _frames_per_second(self, encoder: str) -> float:
        """Measured: frames of 2 s of silence less frames of 1 s (or, padding to a fixed length, frames
        over that length); an encoder whose count does not follow time is refused."""
        one, two = (self._states([np.zeros(s * self.sample_rate, np.float32)]).shape[1] for s in (1, 2))
        if self.padded_samples:
            return one * self.sample_rate / self.padded_samples
        if two <= one:
            raise SettingsError(
                f"encoder {encoder!r} gives {one} states for 1 s and for 2 s of audio: they do not run "
                f"along time, so they cannot be frames; choose an encoder such as {KNOWN}"
            )
        return float(two - one)


def _load(name: str):
    """The encoder (an encoder-decoder's encoder), its feature extractor and its device."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # featurize draws its own
    try:
        extractor = AutoFeatureExtractor.from_pretrained(name)
        model = AutoModel.from_pretrained(name)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0]
        raise SettingsError(
            f"cannot load encoder {name!r} ({reason}); give a transformers audio encoder's hub name or a "
            f"local folder saved with save_pretrained (its model and feature extractor), e.g. {KNOWN}"
        ) from None
    if model.config.is_encoder_decoder:
        model = model.get_encoder()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), extractor, device


def _digest(model) -> str:
    """sha256 of the encoder's configuration and weights: the same name or folder with other
    weights is another encoder, and the features record says which one made them."""
    config = {k: v for k, v in model.config.to_dict().items() if k not in WHERE_FROM}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
