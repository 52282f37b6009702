from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from audio_helpers import flac_bytes
from audiotok_cli.atomic import write_atomic
from audiotok_cli.audio.logmel import LogMel, audio_path, decode
from audiotok_cli.audioset.classes import N_CLASSES
from audiotok_cli.errors import DataError, MismatchError
from audiotok_cli.settings import AudioSettings, load_settings
from audiotok_cli.stages.featurize import featurize
from audiotok_cli.store import PENDING, Store
from store_helpers import new_store


def _tone(seconds: float, rate: int, channels: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono, mono], axis=1)


def _featurize(settings, **kwargs):
    return featurize(settings.store_path, settings.audio_dir, settings.audio, settings.features, **kwargs)


def _store_with_clips(settings, clips: dict[str, bytes]) -> Store:
    store = new_store(settings.store_path)
    for ytid, payload in clips.items():
        write_atomic(audio_path(settings.audio_dir, "bal_train", ytid), payload)
    store.append_clips(list(clips), "bal_train", np.zeros((len(clips), N_CLASSES), dtype=bool))
    return store


def test_decode_mixes_stereo_and_resamples_odd_rates():
    for rate in (48000, 44100, 16000):
        for channels in (1, 2):
            samples = decode(flac_bytes(_tone(1.0, rate, channels), rate), 22050)
            assert abs(len(samples) - 22050) <= 1
            assert 0.25 < np.abs(samples).max() < 0.35


def test_decode_rejects_corrupt_and_empty_audio():
    with pytest.raises(DataError, match=r"cannot decode clip\.flac \(Format not recognised"):
        decode(b"not a flac file at all" * 10, 22050, name="clip.flac")
    empty = io.BytesIO()
    sf.write(empty, np.zeros(0, dtype=np.float32), 48000, format="WAV")
    with pytest.raises(DataError, match=r"empty\.wav holds no audio samples"):
        decode(empty.getvalue(), 22050, name="empty.wav")


def test_log_mel_frame_count_and_tone_band():
    settings = AudioSettings()
    frames = LogMel(settings)(decode(flac_bytes(_tone(10.0, 48000, 2, 1000.0), 48000), 22050))
    assert frames.shape == (431, 64)
    loudest_band = int(np.median(frames.argmax(axis=1)))
    assert 15 <= loudest_band <= 30  # 1 kHz sits in the lower-middle mel bands


def test_featurize_pads_short_clips_records_lengths_and_resumes(tmp_path):
    settings = load_settings({"features": {"clips_per_shard": 4, "clips_per_chunk": 2}})
    clips = {
        f"clip{i:07d}": flac_bytes(_tone(10.0 if i % 3 else 4.0, 48000, 1 + i % 2), 48000) for i in range(6)
    }
    clips["broken00000"] = b"garbage" * 100
    _store_with_clips(settings, clips)
    first = _featurize(settings)
    assert first.clips_done == 6
    assert len(first.failures) == 1 and "broken00000.flac" in first.failures[0]
    features = Store.open(settings.store_path).features("logmel")
    lengths = features.all_lengths()
    assert list(lengths) == [1 + 4 * 22050 // 512, 431, 431, 1 + 4 * 22050 // 512, 431, 431, PENDING]
    data = features.data[0]
    assert np.all(data[lengths[0] :] == 0) and np.any(data[: lengths[0]] != 0)

    fixed = flac_bytes(_tone(10.0, 44100, 1), 44100)
    write_atomic(audio_path(settings.audio_dir, "bal_train", "broken00000"), fixed)
    second = _featurize(settings)
    assert second.clips_done == 1 and second.clips_already_done == 6 and not second.failures
    assert second.shards_written == 1  # only the shard that held the pending clip
    assert Store.open(settings.store_path).features("logmel").all_lengths()[6] == 431


def test_featurize_refuses_features_made_with_other_settings(tmp_path, cli):
    settings = load_settings()
    _store_with_clips(settings, {"clip0000000": flac_bytes(_tone(2.0, 48000, 1), 48000)})
    _featurize(settings)
    with pytest.raises(MismatchError, match="n_mels 64 \\(wanted 32\\)"):
        _featurize(load_settings({"audio": {"n_mels": 32}}))
    result = cli("featurize", "--n-mels", "32")
    assert result.exit_code == 6
    assert "features 'logmel' was made with n_mels 64 (wanted 32)" in result.stderr
    assert cli("featurize", "--n-mels", "32", "--overwrite").exit_code == 0
    assert Store.open(settings.store_path).features("logmel").data.shape[2] == 32


def test_cli_names_the_undecodable_file_and_keeps_going(cli):
    settings = load_settings()
    _store_with_clips(
        settings, {"good0000000": flac_bytes(_tone(2.0, 48000, 1), 48000), "bad00000000": b"x" * 500}
    )
    result = cli("featurize")
    assert result.exit_code == 0
    assert "1 clips featurized" in result.stdout
    assert "1 clips failed and stay pending" in result.stderr and "bad00000000.flac" in result.stderr
