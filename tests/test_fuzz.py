"""Property-based tests: whatever bytes reach the decoder and whatever values reach the settings,
the outcome is a valid result or an AudiotokError, never another exception."""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audio_helpers import flac_bytes
from audiotok_cli.audio.logmel import decode
from audiotok_cli.errors import AudiotokError
from audiotok_cli.settings import Settings, flatten, load_settings


def _valid_wav() -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(480, dtype=np.float32), 48000, format="WAV")
    return out.getvalue()


SEEDS = [flac_bytes(np.zeros(4800, dtype=np.float32), 48000), _valid_wav()]


@st.composite
def audio_like_bytes(draw: st.DrawFn) -> bytes:
    """Random bytes, or a real audio file with random bytes flipped, cut or appended."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=4096))
    payload = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(payload)))
    return bytes(payload[:cut]) + draw(st.binary(max_size=64))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(audio_like_bytes())
@example(  # found by this test: one sample at 48 kHz resamples to none at 22.05 kHz
    b"RIFF\xe4\x03\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\xbb\x00\x00\x00w\x01\x00"
    b"\x02\x00\x10\x00data\xc0\x03\x00\x00\x00\x00"
)
def test_the_decoder_returns_finite_audio_or_an_audiotok_error(payload):
    try:
        samples = decode(payload, 22050, name="fuzz.flac")
    except AudiotokError as exc:
        assert "fuzz.flac" in str(exc)
        return
    assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
    assert np.isfinite(samples).all()


SETTING_NAMES = sorted(name.replace(".", "__").upper() for name in flatten(Settings().model_dump()))
GROUPS = ["PATHS", "AUDIO", "FEATURES", "SPLIT", "VOCAB", "MODEL", "TRAIN"]
VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "true", "false", "null", "{}", "[]", '{"n_mels": 0}', "inf", "-0", "1e400"]),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(SETTING_NAMES + GROUPS), VALUES, max_size=4))
@example({"SPLIT__TRAIN_SOURCES": "0"})  # found by this test: JSON 0 reached a validator as an int
def test_any_environment_gives_settings_or_one_settings_error(environment):
    names = ["AUDIOTOK_" + name for name in environment]
    saved = {name: os.environ.get(name) for name in names}
    try:
        os.environ.update({"AUDIOTOK_" + name: value for name, value in environment.items()})
        try:
            result = load_settings()
        except AudiotokError as exc:
            assert exc.exit_code == 3 and "\n" not in str(exc)
            return
        assert isinstance(result, Settings)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
