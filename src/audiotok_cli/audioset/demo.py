"""The built-in demo dataset: a seeded, synthetic AudioSet mirror in the hub's own file layouts.

Ten classes of synthesized sounds, each with a real AudioSet MID, mixed 1-3 per clip over background
noise. Every class has its own spectral signature, so labels are learnable from the sound and the
demo shows the token method working end to end.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from audiotok_cli.audioset.mirror import LAYOUTS, SEGMENT_CSVS, data_dir
from audiotok_cli.class_lists import audioset_classes
from audiotok_cli.errors import OutputExistsError, SettingsError
from audiotok_cli.lock import WriterLock

Synth = Callable[[np.random.Generator, int, int], np.ndarray]
YTID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
CLIPS_PER_FILE = 64
EVAL_SHARE = 0.25
MISSING_AUDIO_SHARE = 0.16  # share of CSV rows whose audio the hub lacks, as in real AudioSet


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _sine(rng, sr, n):
    return np.sin(2 * np.pi * rng.uniform(900, 1100) * _time(n, sr))


def _chirp(rng, sr, n):
    period = rng.uniform(0.4, 0.6)
    phase_t = _time(n, sr) % period
    f0, f1 = 300.0, 3000.0
    return np.sin(2 * np.pi * (f0 * phase_t + (f1 - f0) * phase_t**2 / (2 * period)))


def _white_bursts(rng, sr, n):
    gate = (_time(n, sr) % rng.uniform(0.6, 0.9)) < 0.3
    return rng.standard_normal(n) * gate * 0.6


def _clicks(rng, sr, n):
    out = np.zeros(n)
    out[:: int(sr * rng.uniform(0.05, 0.1))] = 1.0
    return np.convolve(out, np.hanning(32), mode="same") * 2.0


def _beeps(rng, sr, n):
    gate = (_time(n, sr) % 0.4) < 0.15
    return np.sin(2 * np.pi * rng.uniform(2400, 2600) * _time(n, sr)) * gate


def _siren(rng, sr, n):
    t = _time(n, sr)
    freq = 1000 + 400 * np.sin(2 * np.pi * rng.uniform(1.5, 2.5) * t)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr)


def _hum(rng, sr, n):
    t = _time(n, sr)
    base = rng.choice([50.0, 60.0])
    return sum(np.sin(2 * np.pi * base * h * t) / h for h in range(1, 5)) * 1.5


def _drum(rng, sr, n):
    t = _time(n, sr)
    local = t % rng.uniform(0.45, 0.55)
    return np.sin(2 * np.pi * 80 * local) * np.exp(-local * 12) * 2.0


def _whistle(rng, sr, n):
    t = _time(n, sr)
    freq = rng.uniform(3200, 3800) + 60 * np.sin(2 * np.pi * 5 * t)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr)


def _buzz(rng, sr, n):
    t = _time(n, sr)
    f0 = rng.uniform(140, 160)
    return sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 20)) * 0.8


DEMO_CLASSES: dict[str, Synth] = {
    "/m/01v_m0": _sine,  # Sine wave
    "/m/0hdsk": _chirp,  # Chirp tone
    "/m/0chx_": _white_bursts,  # White noise
    "/m/07qc9xj": _clicks,  # Clicking
    "/m/02fs_r": _beeps,  # Beep, bleep
    "/m/03kmc9": _siren,  # Siren
    "/m/06xkwv": _hum,  # Mains hum
    "/m/026t6": _drum,  # Drum
    "/m/0l156k": _whistle,  # Whistle
    "/m/07pjwq1": _buzz,  # Buzz
}


@dataclass
class DemoResult:
    mirror_dir: Path
    layout: str
    labels: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # source -> ytid -> mids
    files: list[Path] = field(default_factory=list)

    @property
    def n_clips(self) -> int:
        return sum(len(clips) for clips in self.labels.values())


def synthesize_clip(
    rng: np.random.Generator, mids: tuple[str, ...], sr: int, seconds: float, channels: int
) -> np.ndarray:
    """One clip: each class sounds over a random span of at least a third of the clip, plus noise."""
    n = int(sr * seconds)
    mix = rng.standard_normal(n) * 0.01
    for mid in mids:
        start = rng.integers(0, n // 3)
        stop = rng.integers(start + n // 3, n + 1)
        mix[start:stop] += DEMO_CLASSES[mid](rng, sr, stop - start) * rng.uniform(0.08, 0.2)
    mix = np.clip(mix, -1.0, 1.0).astype(np.float32)
    if channels == 1:
        return mix
    return np.stack([mix, mix * rng.uniform(0.7, 1.0)], axis=1)


def write_demo_mirror(
    mirror_dir: Path,
    *,
    layout: str = "parquet",
    clips: int = 320,
    seconds: float = 10.0,
    seed: int = 0,
    clips_per_file: int = CLIPS_PER_FILE,
    overwrite: bool = False,
) -> DemoResult:
    """Write a synthetic mirror of `agkphysics/AudioSet` under `mirror_dir` (deterministic in seed)."""
    if layout not in LAYOUTS:
        raise SettingsError(f"invalid layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if clips < 8:
        raise SettingsError(f"--clips {clips} is too few; the demo needs at least 8")
    with WriterLock(mirror_dir, "demo-data"):
        return _write_mirror(mirror_dir, layout, clips, seconds, seed, clips_per_file, overwrite)


def _write_mirror(
    mirror_dir: Path, layout: str, clips: int, seconds: float, seed: int, clips_per_file: int, overwrite: bool
) -> DemoResult:
    root = data_dir(mirror_dir)
    if root.exists():
        if not overwrite:
            raise OutputExistsError(f"{root} already exists; pass --overwrite to replace it")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n_eval = max(2, int(clips * EVAL_SHARE))
    result = DemoResult(mirror_dir, layout)
    writer = _write_parquet if layout == "parquet" else _write_tar
    for source, count in (("bal_train", clips - n_eval), ("eval", n_eval)):
        written: list[dict] = []  # a file's rows at a time hold audio: memory is a file's, not the mirror's
        for index, start in enumerate(range(0, count, clips_per_file)):
            rows = [_demo_row(rng, seconds) for _ in range(min(clips_per_file, count - start))]
            result.files.append(writer(root, source, index, rows))
            written += [{key: value for key, value in row.items() if key != "flac"} for row in rows]
        result.labels[source] = {row["video_id"]: tuple(row["labels"]) for row in written}
        if layout == "tar":
            missing = [_demo_row(rng, seconds, audio=False) for _ in range(int(count * MISSING_AUDIO_SHARE))]
            _write_segments(root / SEGMENT_CSVS[source], written + missing)
    _write_ontology(root / "ontology.json" if layout == "tar" else mirror_dir / "ontology.json")
    return result


def _demo_row(rng: np.random.Generator, seconds: float, audio: bool = True) -> dict:
    ytid = "".join(rng.choice(YTID_ALPHABET, 11))
    mids = tuple(rng.choice(list(DEMO_CLASSES), size=rng.integers(1, 4), replace=False))
    row = {"video_id": ytid, "labels": list(mids), "start": float(rng.integers(0, 300))}
    if audio:
        sr = 44100 if rng.random() < 0.15 else 48000
        length = seconds if rng.random() < 0.9 else seconds * rng.uniform(0.5, 0.99)
        clip_rng = np.random.default_rng(rng.integers(2**63))
        samples = synthesize_clip(clip_rng, mids, sr, length, channels=int(rng.integers(1, 3)))
        buffer = io.BytesIO()
        sf.write(buffer, samples, sr, format="FLAC", subtype="PCM_24")
        row["flac"] = buffer.getvalue()
    return row


def _write_parquet(root: Path, source: str, index: int, rows: list[dict]) -> Path:
    names = audioset_classes().names
    lookup = audioset_classes().mid_to_index
    table = pa.table(
        {
            "video_id": [r["video_id"] for r in rows],
            "audio": [{"bytes": r["flac"], "path": f"{r['video_id']}.flac"} for r in rows],
            "labels": [r["labels"] for r in rows],
            "human_labels": [[names[lookup[m]] for m in r["labels"]] for r in rows],
        }
    )
    path = root / source / f"{index:02d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _write_tar(root: Path, source: str, index: int, rows: list[dict]) -> Path:
    digits = 3 if source == "unbal_train" else 2
    path = root / f"{source}{index:0{digits}d}.tar"
    with tarfile.open(path, "w") as archive:
        for row in rows:
            info = tarfile.TarInfo(f"audio/{source}/{row['video_id']}.flac")
            info.size = len(row["flac"])
            archive.addfile(info, io.BytesIO(row["flac"]))
    return path


def _write_segments(path: Path, rows: list[dict]) -> None:
    lines = [
        "# Segments csv created by audiotok demo-data",
        f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels={len(DEMO_CLASSES)}",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    for row in rows:
        start = row["start"]
        lines.append(f'{row["video_id"]}, {start:.3f}, {start + 10:.3f}, "{",".join(row["labels"])}"')
    path.write_text("\n".join(lines) + "\n")


def _write_ontology(path: Path) -> None:
    index = audioset_classes()
    nodes = [
        {
            "id": mid,
            "name": name,
            "description": "",
            "citation_uri": "",
            "positive_examples": [],
            "child_ids": [],
            "restrictions": [],
        }
        for mid, name in zip(index.mids, index.names, strict=True)
    ]
    path.write_text(json.dumps(nodes, indent=1))
