"""`--encoder` means one thing everywhere: `audio/front_ends.py` resolves it (nothing: log-mel; a
units run's folder, as given or under the runs directory; anything else: a transformers encoder), and
a new front end is a class and one `FRONT_ENDS` line that featurize then uses by its name."""

from __future__ import annotations

import hashlib

import numpy as np

from audiotok_cli.audio import front_ends
from audiotok_cli.audio.front_ends import FRONT_ENDS, FrontEnd, front_end_of, resolve_encoder
from audiotok_cli.errors import DataError
from audiotok_cli.settings import AudioSettings
from audiotok_cli.store import Store


def test_an_encoder_value_is_resolved_in_one_place(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "units-k16").mkdir(parents=True)
    (runs / "units-k16" / "run.json").write_text("{}")
    monkeypatch.chdir(tmp_path)

    assert resolve_encoder(None, runs) is None
    assert resolve_encoder("units-k16", runs) == str((runs / "units-k16").resolve())  # a run by its name
    assert resolve_encoder("runs/units-k16", None) == str((runs / "units-k16").resolve())  # by its folder
    assert resolve_encoder("facebook/hubert-base-ls960", runs) == "facebook/hubert-base-ls960"
    assert resolve_encoder("units-k16", None) == "units-k16"  # no runs directory: a hub name, as given

    chosen = [front_end_of(value).name for value in (None, str(runs / "units-k16"), "some/encoder")]
    assert chosen == ["log-mel", "units", "transformers"]


class LoudnessFrames:
    """A front end written for the test: one frame of 2 values (mean, peak of |x|) per 1,000 samples."""

    model_type, layers, n_layers, frames_per_second, batch, device, dim = (
        "loudness",
        (1,),
        1,
        16.0,
        1,
        "cpu",
        2,
    )

    def __init__(self, audio: AudioSettings) -> None:
        self.settings = audio.model_copy(update={"sample_rate": 16000})
        self.sample_rate = self.settings.sample_rate
        self.max_frames = round(audio.clip_seconds * self.frames_per_second)
        self.digest = hashlib.sha256(b"loudness").hexdigest()

    def many(self, clips: list[np.ndarray], names: list[str]) -> list[np.ndarray | DataError]:
        out: list[np.ndarray | DataError] = []
        for samples in clips:
            blocks = np.abs(samples[: len(samples) // 1000 * 1000]).reshape(-1, 1000)[: self.max_frames]
            out.append(np.stack([blocks.mean(axis=1), blocks.max(axis=1)], axis=1).astype(np.float32))
        return out


def test_a_new_front_end_is_one_registry_line_that_featurize_uses(cli, featurized, monkeypatch):
    loudness = FrontEnd("loudness", lambda encoder: encoder == "loudness", __name__, "LoudnessFrames")
    monkeypatch.setattr(front_ends, "FRONT_ENDS", {"loudness": loudness, **FRONT_ENDS})

    done = cli("featurize", "--encoder", "loudness", "--name", "loud", "--workers", "1")
    assert done.exit_code == 0, done.output
    features = Store.open(featurized.store_path).features("loud")
    assert features.record.encoder.model_type == "loudness" and features.record.audio.sample_rate == 16000
    lengths = features.all_lengths()
    assert lengths.max() == 64 and (lengths > 0).all()  # clips of up to 4 s at 16 frames a second
    first = features.data[0, : lengths[0]].astype(np.float32)
    assert first.shape[1] == 2 and (first[:, 1] >= first[:, 0]).all() and first[:, 1].max() > 0
