"""A rehearsal of AudioSet's scale: every stage, as a user types it, on a synthetic AudioSet mirror of
N clips (the demo generator, 10 s clips, the hub's Parquet layout), at two sizes; for each stage its
seconds, clips/s and peak memory (the resident memory of its whole process tree, sampled every
0.1 s), and at the larger size how much more each stage took than the clips grew: a stage whose
ratio is well above the clips' ratio grows faster than the clips.

The audio stays in the mirror (`expand --no-audio`, `featurize --from-mirror`), as the 2.4 TB loop
runs it; `train` is one epoch of the bag-of-tokens model and one of the frame MLP.

Usage:
  python benchmarks/rehearsal.py --work DIR [--sizes 5000,20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

STAGES = [
    ("demo-data", ["demo-data", "--clips", "{n}"]),
    ("expand", ["expand", "--no-audio"]),
    ("split", ["split"]),
    ("featurize", ["featurize", "--from-mirror", "--workers", "{workers}"]),
    ("vocab", ["vocab", "--k", "256", "--workers", "{workers}"]),
    ("tokenize", ["tokenize", "--workers", "{workers}"]),
    ("train tokens", ["train", "--model", "simple", "--epochs", "1"]),
    ("train frames", ["train", "--model", "baseline", "--epochs", "1"]),
    ("runs", ["runs"]),
    ("verify", ["verify"]),
    ("info", ["info"]),
    ("report", ["report", "{work}/report", "--resamples", "200", "--overwrite"]),
]


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak resident MB of the command's process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def watch() -> None:
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, stderr = process.communicate()
    watcher.join()
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}): {stderr.strip()[-600:]}")
    return time.perf_counter() - started, peak[0]


def rehearse(work: Path, n: int, workers: int) -> dict[str, tuple[float, float]]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "AUDIOTOK_DATA_DIR": str(work)}
    figures = {}
    for name, args in STAGES:
        command = [a.format(n=n, workers=workers, work=work) for a in args]
        seconds, peak = measured([sys.executable, "-m", "audiotok_cli", *command, "--quiet"], env)
        figures[name] = (seconds, peak)
        print(
            f"  {n:>6} clips  {name:<13} {seconds:8.1f} s  {n / seconds:8.1f} clips/s  {peak:7.0f} MB",
            flush=True,
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = {n: rehearse(args.work / str(n), n, args.workers) for n in sizes}
    small, large = sizes[0], sizes[-1]
    grown = large / small
    print(f"\n{large} clips against {small} ({grown:.1f}x the clips): time and peak memory ratios")
    for name, _ in STAGES:
        (t0, m0), (t1, m1) = results[small][name], results[large][name]
        flag = "  <- grows faster than the clips" if t1 / t0 > 1.3 * grown else ""
        print(f"  {name:<13} time {t1 / t0:5.2f}x  memory {m1 / m0:5.2f}x{flag}")


if __name__ == "__main__":
    main()
