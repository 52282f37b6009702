"""featurize end to end (decode, resample, mel, compress, write whole shards) on 1 and 2 worker
processes, from expanded FLAC files and straight from the Parquet mirror, against the research
code's path (`librosa.load(sr=22050)` + `melspectrogram` + `power_to_db`, one file at a time) in one
process and in a `multiprocessing.Pool` of 2 with one BLAS thread each, on the same demo clips in
the same run.

Every measurement runs in a fresh process, as a command would, once on N clips and once on 4N: the
difference gives the steady-state rate (3N clips in T(4N) - T(N)) and the fixed start-up cost
(T(N) - N / rate: imports, librosa's compilation, spawning workers), and the peak RSS of each
process for N and 4N shows memory does not grow with the clips. The 4N clips are the N generated
ones four times over under other YouTube IDs (generating audio is slower than featurizing it).

Usage: python benchmarks/bench_featurize_scale.py [--clips 512] [--shard 64]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import shutil
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from audiotok_cli.settings import AudioSettings, Settings, load_settings
from audiotok_cli.stages.expand import expand
from audiotok_cli.stages.featurize import featurize

COPIES = 4  # the larger run has this many times the clips of the smaller
RSS_SAMPLE_SECONDS = 0.05


def research_clip(path: Path) -> None:
    settings = AudioSettings()
    y, sr = librosa.load(path, sr=settings.sample_rate, mono=True)
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=settings.n_fft, hop_length=settings.hop_length, n_mels=settings.n_mels
    )
    librosa.power_to_db(mel)


def _one_blas_thread() -> None:
    threadpool_limits(limits=1)


def research(settings: Settings, processes: int) -> int:
    paths = sorted(settings.audio_dir.rglob("*.flac"))
    if processes == 1:
        for path in paths:
            research_clip(path)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes, initializer=_one_blas_thread) as pool:
            pool.map(research_clip, paths, chunksize=8)
    return len(paths)


def audiotok(settings: Settings, workers: int, from_mirror: bool) -> int:
    layout = settings.features.model_copy(update={"name": f"w{workers}{'-parquet' if from_mirror else ''}"})
    result = featurize(
        settings.store_path, settings.audio_dir, settings.audio, layout,
        workers=workers, mirror_dir=settings.mirror_dir, from_mirror=from_mirror,
    )  # fmt: skip
    return result.clips_done


def _measured(function, *args) -> tuple[int, float, float, float]:
    """Clips, seconds, and the peak RSS (MB) of this process and of its largest child, sampled."""
    peaks, done = [0.0, 0.0], threading.Event()

    def sample() -> None:
        me = psutil.Process()
        while not done.wait(RSS_SAMPLE_SECONDS):
            with contextlib.suppress(psutil.Error):
                children = [child.memory_info().rss for child in me.children(recursive=True)]
                peaks[0] = max(peaks[0], me.memory_info().rss / 2**20)
                peaks[1] = max(peaks[1], max(children, default=0) / 2**20)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    clips = function(*args)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return clips, seconds, *peaks


def _fresh(function, *args) -> tuple[int, float, float, float]:
    """`function(*args)` in a new process, as a command would run it."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        return process.submit(_measured, function, *args).result()


def _replicate(mirror_dir: Path, target: Path, copies: int) -> None:
    """A mirror holding every clip of `mirror_dir` `copies` times, each copy under other IDs."""
    shutil.copytree(mirror_dir, target, ignore=shutil.ignore_patterns("*.parquet"))
    for path in sorted(mirror_dir.rglob("*.parquet")):
        table = pq.read_table(path)
        for copy in range(copies):
            ids = [f"{'abcd'[copy]}{ytid[1:]}" for ytid in table.column("video_id").to_pylist()]
            renamed = table.set_column(0, "video_id", pa.array(ids))
            pq.write_table(
                renamed, target / path.relative_to(mirror_dir).with_name(f"{path.stem}-{copy}.parquet")
            )


def _data(root: Path, mirror: Path, shard: int) -> Settings:
    settings = load_settings(
        {"data_dir": root, "paths": {"mirror_dir": mirror}, "features": {"clips_per_shard": shard}}
    )
    expand(settings.resolved_paths)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=512, help="N: the smaller run's clips.")
    parser.add_argument(
        "--shard", type=int, default=64, help="Clips per shard (the demo's Parquet files hold 64)."
    )
    args = parser.parse_args()
    from audiotok_cli.audioset.demo import write_demo_mirror

    with tempfile.TemporaryDirectory() as scratch:
        small = Path(scratch, "small")
        write_demo_mirror(small / "mirror", clips=args.clips, seconds=10.0)
        _replicate(small / "mirror", Path(scratch, "large-mirror"), COPIES)
        sizes = [
            _data(small, small / "mirror", args.shard),
            _data(Path(scratch, "large"), Path(scratch, "large-mirror"), args.shard),
        ]
        runs = {
            "research path, 1 process": (research, 1),
            "research path, Pool(2)": (research, 2),
            "audiotok, 1 worker, files": (audiotok, 1, False),
            "audiotok, 2 workers, files": (audiotok, 2, False),
            "audiotok, 2 workers, Parquet": (audiotok, 2, True),
        }
        rows = {
            name: [_fresh(function, settings, *rest) for settings in sizes]
            for name, (function, *rest) in runs.items()
        }
    (n, _, _, _), (four_n, _, _, _) = rows["audiotok, 1 worker, files"]
    print(f"ten-second demo clips (44.1/48 kHz FLAC), N={n} and {four_n}, shards of {args.shard}, 2 cores")
    print(f"{'':30} {'end to end':>10} {'steady':>8} {'start-up':>8}   peak RSS MB N -> 4N: process | worker")
    steady = {}
    for name, ((clips, seconds, own, child), (more, more_seconds, more_own, more_child)) in rows.items():
        steady[name] = (more - clips) / (more_seconds - seconds)
        start_up = seconds - clips / steady[name]
        print(
            f"{name:30} {more / more_seconds:10.1f} {steady[name]:8.1f} {start_up:7.1f}s   "
            f"{own:5.0f} -> {more_own:5.0f} | {child:5.0f} -> {more_child:5.0f}"
        )
    print("clips/s; steady = the 3N extra clips over the extra time")
    two, one = steady["audiotok, 2 workers, files"], steady["audiotok, 1 worker, files"]
    pool, alone = steady["research path, Pool(2)"], steady["research path, 1 process"]
    print(f"steady 2 workers / 1 worker: {two / one:.2f}x; research Pool(2) / 1 process: {pool / alone:.2f}x")
    print(f"steady audiotok / research, same cores: 1 worker {one / alone:.2f}x, 2 workers {two / pool:.2f}x")
    print(f"steady from Parquet / from files, 2 workers: {steady['audiotok, 2 workers, Parquet'] / two:.2f}x")


if __name__ == "__main__":
    main()
