"""`predict`'s peak memory on a long file against a 1-minute one: files of noise and tones at 8 kHz
and 22.05 kHz, 1 minute and `--minutes` long, each predicted by a fresh process with a frame-MLP run;
its peak resident memory (VmHWM, which a fork's exec does not inherit) and the ratio.

Usage (any data directory whose store is featurized; a `baseline` run is trained there if missing):
  python benchmarks/bench_predict_memory.py --work DIR [--features logmel] [--minutes 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

PEAK = (
    "import re, sys\n"
    "from audiotok_cli.cli.app import app\n"
    "try:\n"
    "    app(['predict', sys.argv[1], sys.argv[2], '--json'])\n"
    "except SystemExit as done:\n"
    "    assert not done.code, done.code\n"
    "status = open('/proc/self/status').read()\n"
    "print(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) / 1024)\n"
)


def peak_mb(run: Path, path: Path) -> float:
    done = subprocess.run([sys.executable, "-c", PEAK, str(run), str(path)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-600:])
    return float(done.stdout.strip().splitlines()[-1])


def recording(path: Path, rate: int, minutes: float) -> Path:
    """Noise with a tone every few seconds, written a minute at a time (the writer's memory stays flat)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as out:
        for minute in range(int(np.ceil(minutes))):
            seconds = min(60.0, minutes * 60 - minute * 60)
            t = np.arange(int(seconds * rate)) / rate
            out.write(0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t) * (t % 5 < 1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--features", default="logmel", help="The log-mel features the run reads.")
    args = parser.parse_args()
    run = args.work / "runs" / "bench-memory"
    if not run.exists():
        env = {**os.environ, "AUDIOTOK_DATA_DIR": str(args.work)}
        command = ["train", "--model", "baseline", "--features", args.features, "--epochs", "1"]
        command += ["--run-name", "bench-memory"]
        subprocess.run(
            [sys.executable, "-m", "audiotok_cli", *command], env=env, check=True, capture_output=True
        )
    folder = Path(tempfile.mkdtemp(prefix="audiotok-predict-memory-"))
    for rate in (8000, 22050):
        short = peak_mb(run, recording(folder / f"short-{rate}.wav", rate, 1))
        long = peak_mb(run, recording(folder / f"long-{rate}.wav", rate, args.minutes))
        print(
            f"{rate:>6} Hz: 1 min {short:6.0f} MB, {args.minutes:g} min {long:6.0f} MB: {long / short:.3f}x"
        )


if __name__ == "__main__":
    main()
