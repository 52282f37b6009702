"""Small labelled collections written by the tests, in the layouts `audiotok import` reads: real
audio files (each class its own pitch, each group its own timbre) and real metadata files."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def tone(label: int, group: int = 0, seconds: float = 1.0, rate: int = RATE, channels: int = 1) -> np.ndarray:
    """A class's pitch with a group's harmonics and a little noise: classes differ, groups vary."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 220.0 * 2 ** (label / 3)
    wave = np.sin(2 * np.pi * pitch * t) + 0.3 * (group % 3) * np.sin(2 * np.pi * 2 * pitch * t)
    noise = np.random.default_rng(label * 100 + group).normal(0, 0.02, len(t))
    mono = (0.3 * wave / (1 + 0.3 * (group % 3)) + noise).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


def write(path: Path, samples: np.ndarray, rate: int = RATE, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, **kwargs)
    return path


def esc50(
    root: Path,
    classes: tuple[str, ...] = ("crackling_fire", "dog", "rain"),
    folds: int = 5,
    per_fold: int = 2,
) -> Path:
    """ESC-50 as it ships: `meta/esc50.csv` and `audio/{fold}-{src}-{take}-{target}.wav`."""
    rows = []
    for fold in range(1, folds + 1):
        for target, category in enumerate(classes):
            for take in range(per_fold):
                src = f"{fold}{target}{take // 2}"
                name = f"{fold}-{src}-{'AB'[take % 2]}-{target}.wav"
                write(root / "audio" / name, tone(target, group=10 * fold + take))
                rows.append([name, fold, target, category, "False", src, "AB"[take % 2]])
    _csv(
        root / "meta/esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows
    )
    return root


def urbansound8k(root: Path, classes: tuple[str, ...] = ("dog_bark", "siren"), folds: int = 3) -> Path:
    """UrbanSound8K as it ships: `metadata/UrbanSound8K.csv`, audio under `audio/fold{N}/`."""
    rows = []
    for fold in range(1, folds + 1):
        for class_id, name in enumerate(classes):
            for part in range(2):
                fs_id = 1000 * fold + 10 * class_id
                file_name = f"{fs_id}-{class_id}-0-{part}.wav"
                write(root / f"audio/fold{fold}/{file_name}", tone(class_id, group=fold))
                rows.append([file_name, fs_id, part, part + 1, 1, fold, class_id, name])
    columns = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    _csv(root / "metadata/UrbanSound8K.csv", columns, rows)
    return root


def folders(
    root: Path, classes: tuple[str, ...] = ("bell", "kalimba", "ocarina"), per_class: int = 6
) -> Path:
    """`root/<class>/<file>.wav`."""
    for label, name in enumerate(classes):
        for take in range(per_class):
            write(root / name / f"take{take}.wav", tone(label, group=take))
    return root


def mp3_in_wav(path: Path, samples: np.ndarray, rate: int = RATE, fact_inside: bool = False) -> Path:
    """A WAV container (format tag 0x55) holding an MP3 stream, as some recorders write; with
    `fact_inside`, a `fact` chunk sits in the middle of the MP3 data (the decoder resyncs past it
    and says so on descriptor 2)."""
    mp3 = write(path.with_suffix(".tmp.mp3"), samples, rate, format="MP3")
    stream = mp3.read_bytes()
    mp3.unlink()
    if fact_inside:
        half = len(stream) // 2
        stream = stream[:half] + b"fact" + struct.pack("<II", 4, len(samples)) + stream[half:]
    fmt = struct.pack("<HHIIHHH", 0x55, 1, rate, 4000, 1, 0, 12) + bytes(12)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(stream))
        + stream
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
