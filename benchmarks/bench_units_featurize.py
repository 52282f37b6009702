"""Units features against log-mel features on the same clips, start-up included, through the
commands a user types: `featurize` (log-mel, decoding every clip) beside `featurize --encoder RUN
--layer L` (a units run's states, read from the store's log-mel frames, clips of one length a
forward) and the same units forced to decode the audio again (the path before the stored frames,
still taken for clips the store lacks).

The run is the README's encoder (128 hidden, 4 layers, 4 heads) pretrained briefly on the
collection: its weights move no time. Each path is timed `--rounds` times, interleaved, into a fresh
group; the median is printed with its ratio to log-mel's.

Usage (the free spoken digits: Jakobovski/free-spoken-digit-dataset `recordings/`, 3,000 clips):
  python benchmarks/bench_units_featurize.py --fsdd RECORDINGS_DIR [--work DIR] [--workers 2]
                                             [--layer 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from real_audio import fsdd_manifest

ENCODER = ["--hidden-size", "128", "--num-layers", "4", "--num-heads", "4", "--batch-size", "32"]
DECODING = (  # the units front end without the store's frames: every clip decoded again
    "import sys; from audiotok_cli.training.unit_frames import UnitFrames; "
    "UnitFrames.stored_frames = lambda self, store: None; "
    "from audiotok_cli.cli.app import app; app(sys.argv[1:])"
)


def run(env: dict[str, str], *args: str, decoding: bool = False) -> float:
    """One command as a user runs it (or with the stored frames hidden); its seconds."""
    started = time.perf_counter()
    head = ["-c", DECODING] if decoding else ["-m", "audiotok_cli"]
    done = subprocess.run([sys.executable, *head, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    print(f"  {seconds:7.1f} s  audiotok {' '.join(args)}{' (decoding)' * decoding}", flush=True)
    if done.returncode:
        sys.exit(f"failed (exit {done.returncode}): {done.stderr.strip()[-600:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fsdd", type=Path, required=True, help="The spoken digits' recordings/ folder.")
    parser.add_argument("--work", type=Path, help="Data directory (default: a temporary one).")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--layer", default="2")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="audiotok-units-featurize-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AUDIOTOK_DATA_DIR": str(work)}
    manifest = fsdd_manifest(args.fsdd, work / "digits.csv")
    if not (work / "audiotok.zarr").exists():
        run(env, "import", str(args.fsdd), "--manifest", str(manifest), "--name", "digits")
        run(env, "split")
        run(env, "featurize", "--clip-seconds", "1", "--name", "logmel", "--workers", args.workers)
        run(env, "vocab", "--features", "logmel", "--k", "64")
        run(env, "tokenize")
        run(env, "pretrain", "--input", "frames", "--targets", "logmel-k64", "--epochs", "1", *ENCODER)
    units = ["featurize", "--encoder", "units-logmel-k64", "--layer", args.layer, "--workers", args.workers]
    times: dict[str, list[float]] = {"log-mel": [], "units (stored frames)": [], "units (decoding)": []}
    for round_ in range(args.rounds):
        logmel = ["featurize", "--clip-seconds", "1", "--name", f"timed{round_}", "--workers", args.workers]
        times["log-mel"].append(run(env, *logmel))
        times["units (stored frames)"].append(run(env, *units, "--name", f"units{round_}"))
        times["units (decoding)"].append(run(env, *units, "--name", f"decoded{round_}", decoding=True))
    floor = statistics.median(_import_seconds() for _ in range(args.rounds))
    baseline = statistics.median(times["log-mel"])
    print(f"\n3,000 clips, --workers {args.workers}, layer {args.layer}; median of {args.rounds} rounds")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name:<22} {median:6.1f} s  {median / baseline:5.2f}x log-mel")
    print(f"  importing the units front end alone (torch, transformers' BERT): {floor:.1f} s")


def _import_seconds() -> float:
    """What a process pays before its first units forward: the start-up no store size changes."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import audiotok_cli.training.unit_frames"], check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
