from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from audio_helpers import flac_bytes
from audiotok_cli.atomic import write_atomic
from audiotok_cli.audio.logmel import LogMel, audio_path, decode
from audiotok_cli.class_lists import AUDIOSET_N_CLASSES
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
    store.append_clips(list(clips), "bal_train", np.zeros((len(clips), AUDIOSET_N_CLASSES), dtype=bool))
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
    assert list(first.failures) == ["broken00000"] and "broken00000.flac" in first.failures["broken00000"]
    assert Store.open(settings.store_path).features().record.failures == first.failures  # stored
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
    features = Store.open(settings.store_path).features("logmel")
    assert features.all_lengths()[6] == 431 and features.record.failures == {}


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
    again = cli("featurize", "--n-mels", "32")  # nothing left to do: said, with no empty bar
    assert again.exit_code == 0 and "0 clips featurized, 1 already done" in again.stdout
    assert "0/0" not in again.stderr


def _wav(samples: np.ndarray, rate: int = 48000) -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format="WAV", subtype="FLOAT")
    return out.getvalue()


def test_bad_clips_fail_alone_are_stored_and_listed_and_the_command_exits_5(cli):
    settings = load_settings()
    nan = _tone(2.0, 48000, 1)
    nan[1000] = np.nan
    clips = {
        "good0000000": flac_bytes(_tone(2.0, 48000, 1), 48000),
        "bad00000000": b"x" * 500,
        "nan00000000": _wav(nan),  # a float payload can hold NaN: librosa would refuse the whole shard
        "inf00000000": _wav(np.full(48000, np.inf, dtype=np.float32)),
        "tiny0000000": _wav(np.zeros(100, dtype=np.float32)),  # 2 ms: shorter than one STFT window
        "good0000001": flac_bytes(_tone(3.0, 44100, 2), 44100),
    }
    _store_with_clips(settings, clips)
    result = cli("featurize")
    assert result.exit_code == 5
    assert "2 clips featurized" in result.stdout
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "4 clips could not be featurized and stay pending" in error[0]
    assert "`audiotok info` lists them" in error[0]
    features = Store.open(settings.store_path).features()
    failures = features.record.failures
    assert sorted(failures) == ["bad00000000", "inf00000000", "nan00000000", "tiny0000000"]
    assert "non-finite samples (NaN or inf)" in failures["nan00000000"]
    assert "nan00000000.flac" in failures["nan00000000"] and "expand --repair" in failures["nan00000000"]
    assert "fewer than one STFT window" in failures["tiny0000000"]
    lengths = features.all_lengths()
    assert (lengths[[0, 5]] > 0).all() and (lengths[1:5] == PENDING).all()  # the good clips were kept
    info = cli("info")
    assert "(Zarr v3; audiotok store format 2)" in info.stdout  # the README says Zarr v3: both named
    assert "4 clips of features 'logmel' failed and stay pending:" in info.stdout
    assert "nan00000000: " in info.stdout and "non-finite samples" in info.stdout


def test_what_a_decoder_prints_names_its_file_in_workers_and_in_process(cli, tmp_path, capfd):
    """mpg123 writes straight to descriptor 2: a WAV holding MP3 data with a `fact` chunk in the
    middle made featurize print "Note: Illegal Audio-MPEG-Header ..." naming no file."""
    import subprocess
    import sys

    from collections_kit import folders, mp3_in_wav, tone

    root = folders(tmp_path / "animals", classes=("cat", "dog"), per_class=2)
    bad = mp3_in_wav(root / "dog" / "odd.wav", tone(1), fact_inside=True)
    assert cli("import", str(root)).exit_code == 0

    def told(stderr: str) -> None:
        lines = stderr.splitlines()
        assert not [line for line in lines if line.startswith(("Note:", "Warning:", "[src/"))], stderr
        named = [line for line in lines if "Illegal Audio-MPEG-Header" in line]
        assert len(named) == 1 and str(bad) in named[0] and "re-encode the file" in named[0], stderr

    worked = subprocess.run(
        [sys.executable, "-m", "audiotok_cli", "featurize", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worked.returncode == 0, worked.stderr
    assert "5 clips featurized" in worked.stdout and "1 file decoded past damage" in worked.stdout
    told(worked.stderr)

    capfd.readouterr()
    again = cli("featurize", "--name", "again")
    assert again.exit_code == 0, again.output
    assert "5 clips featurized" in again.stdout and "1 file decoded past damage" in again.stdout
    told(again.stderr + capfd.readouterr().err)
    store = Store.open(load_settings().store_path)
    assert (store.features("again").all_lengths() > 0).all()
