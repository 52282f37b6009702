"""Featurizing throughput: audiotok's decode path (soundfile + soxr + a precomputed mel matrix)
against the naive `librosa.load` + `librosa.feature.melspectrogram`, on the same demo clips.

Prints clips/s for each and the ratio (one core each; run on a quiet machine and repeat).
Usage: python benchmarks/bench_featurize.py [--clips 40]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from audiotok_cli.audio.logmel import LogMel, decode
from audiotok_cli.audioset.demo import DEMO_CLASSES, synthesize_clip
from audiotok_cli.settings import AudioSettings


def write_clips(folder: Path, count: int) -> list[Path]:
    """Demo-like clips: 10 s, 48 kHz, 24-bit FLAC, half of them stereo."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        mids = tuple(rng.choice(list(DEMO_CLASSES), size=2, replace=False))
        samples = synthesize_clip(rng, mids, 48000, 10.0, channels=1 + i % 2)
        buffer = io.BytesIO()
        sf.write(buffer, samples, 48000, format="FLAC", subtype="PCM_24")
        path = folder / f"{i:04d}.flac"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def audiotok_path(paths: list[Path], settings: AudioSettings) -> None:
    log_mel = LogMel(settings)
    for path in paths:
        log_mel(decode(path, settings.sample_rate))


def naive_path(paths: list[Path], settings: AudioSettings) -> None:
    for path in paths:
        y, sr = librosa.load(path, sr=settings.sample_rate, mono=True)
        mel = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=settings.n_fft, hop_length=settings.hop_length, n_mels=settings.n_mels
        )
        librosa.power_to_db(mel)


def clips_per_second(run, paths: list[Path], settings: AudioSettings) -> float:
    run(paths[:2], settings)  # warm-up: imports, FFT plans
    start = time.perf_counter()
    run(paths, settings)
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args()
    settings = AudioSettings()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_clips(Path(folder), args.clips)
        naive = clips_per_second(naive_path, paths, settings)
        ours = clips_per_second(audiotok_path, paths, settings)
    print(f"librosa.load + melspectrogram {naive:7.1f} clips/s")
    print(f"soundfile + soxr + mel matrix {ours:7.1f} clips/s")
    print(f"speed-up                      {ours / naive:7.2f}x")


if __name__ == "__main__":
    main()
