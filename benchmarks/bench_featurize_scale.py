"""featurize end to end (decode, resample, mel, compress, write whole shards) on 1 and 2 worker
processes, from expanded FLAC files and straight from the Parquet mirror, against the research
code's path (`librosa.load(sr=22050)` + `melspectrogram` + `power_to_db`, one file at a time) in one
process and in a `multiprocessing.Pool` of 2 with one BLAS thread each, on the same demo clips in
the same run. Each measurement runs in a fresh process, so every wall time includes the same
start-up (imports, librosa's compilation) a command pays.

Usage: python benchmarks/bench_featurize_scale.py [--clips 256]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
from threadpoolctl import threadpool_limits

from audiotok_cli.settings import AudioSettings, load_settings
from audiotok_cli.stages.expand import expand
from audiotok_cli.stages.featurize import featurize


def research_clip(path: Path) -> None:
    settings = AudioSettings()
    y, sr = librosa.load(path, sr=settings.sample_rate, mono=True)
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=settings.n_fft, hop_length=settings.hop_length, n_mels=settings.n_mels
    )
    librosa.power_to_db(mel)


def _one_blas_thread() -> None:
    threadpool_limits(limits=1)


def research(paths: list[Path], processes: int) -> float:
    started = time.perf_counter()
    if processes == 1:
        for path in paths:
            research_clip(path)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes, initializer=_one_blas_thread) as pool:
            pool.map(research_clip, paths, chunksize=8)
    return len(paths) / (time.perf_counter() - started)


def audiotok(settings, name: str, workers: int, from_mirror: bool) -> float:
    layout = settings.features.model_copy(update={"name": name})
    started = time.perf_counter()
    result = featurize(
        settings.store_path, settings.audio_dir, settings.audio, layout,
        workers=workers, mirror_dir=settings.mirror_dir, from_mirror=from_mirror,
    )  # fmt: skip
    return result.clips_done / (time.perf_counter() - started)


def _fresh(function, *args) -> float:
    """`function(*args)` in a new process, as a command would run it."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        return process.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=256)
    args = parser.parse_args()
    from audiotok_cli.audioset.demo import write_demo_mirror

    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings({"data_dir": Path(scratch), "features": {"clips_per_shard": 32}})
        write_demo_mirror(settings.mirror_dir, clips=args.clips, seconds=10.0)
        expand(settings.resolved_paths)
        files = sorted(settings.audio_dir.rglob("*.flac"))
        runs = {
            "research path, 1 process": (research, files, 1),
            "research path, Pool(2)": (research, files, 2),
            "audiotok, 1 worker, files": (audiotok, settings, "w1", 1, False),
            "audiotok, 2 workers, files": (audiotok, settings, "w2", 2, False),
            "audiotok, 2 workers, Parquet": (audiotok, settings, "w2p", 2, True),
        }
        rows = {name: _fresh(*run) for name, run in runs.items()}
    print(f"{len(files)} ten-second demo clips (44.1/48 kHz FLAC), shards of 32, 2 cores")
    base = rows["research path, 1 process"]
    for name, rate in rows.items():
        print(f"{name:30} {rate:7.1f} clips/s   {rate / base:5.2f}x the research path on 1 process")


if __name__ == "__main__":
    main()
