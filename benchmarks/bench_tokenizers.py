"""One row per tokenizer on a real collection already imported, split and featurized (for example
by `benchmarks/real_audio.py --work DIR`): its vocabulary (`vocab --transform ...`), its tokens, a
fast token model trained and scored on them, beside a frame model on the same split and frames.
What a tokenizer loses shows as the gap between its row and the frame row.

Usage:
  python benchmarks/bench_tokenizers.py --work DIR [--k 256] [--epochs 30] [--model simple]
                                  [--chains "none;clip-mean;clip-mean,deltas;clip-mean,deltas|pq:8"]
                                  [--frames baseline] [--frame-transform clip-mean,deltas] [--seeds 3]

A chain is the vocabulary's transforms, comma-separated (`none`: raw frames), then optionally `|`
and its quantizer (`pq:8`, `rvq:4`; default kmeans). `--frame-transform` gives the frame row the
same per-clip transforms (the fair comparison); `--seeds N` trains every row under N seeds
(`train --seeds`) and prints the mean test mAP and its 95% interval: one split's differences of a
few hundredths are often one seed's luck.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.results.runs import spread
from audiotok_cli.stages.vocab import vocab_name


def audiotok(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "audiotok_cli", *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"audiotok {' '.join(args)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return time.perf_counter() - started, done.stdout


def scores(work: Path, run: str, seeds: int) -> tuple[float, float, float | None]:
    """Test mAP (the mean over seeds), its 95% half-interval (0 for one seed), and mean accuracy."""
    names = [run] if seeds == 1 else [f"{run}-seed{seed}" for seed in range(seeds)]
    tests = [json.loads((work / "runs" / name / "eval.json").read_text())["splits"]["test"] for name in names]
    maps = [test["mAP"] for test in tests]
    accuracies = [test.get("accuracy") for test in tests]
    summary = spread(maps)
    accuracy = None if None in accuracies else sum(accuracies) / len(accuracies)
    return sum(maps) / len(maps), summary.ci95 if summary else 0.0, accuracy


def trained(env: dict[str, str], seeds: int, *args: str) -> float:
    """Seconds to train (and with several seeds, score) a run; one seed's run is scored here."""
    seconds, _ = audiotok(env, "train", *args, *(["--seeds", str(seeds)] if seeds > 1 else []))
    if seeds == 1:
        audiotok(env, "eval", "--run", args[args.index("--run-name") + 1])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="The data directory of a featurized store.")
    parser.add_argument("--k", default="256")
    parser.add_argument("--epochs", default="30")
    parser.add_argument("--model", default="simple", help="The token model (a fast one: simple).")
    parser.add_argument("--frames", default="baseline", help="The frame model scored beside them.")
    parser.add_argument(
        "--frame-transform", default="", help="Its per-clip transforms, e.g. clip-mean,deltas."
    )
    parser.add_argument("--seeds", type=int, default=1, help="Seeds a row (seed 0 up).")
    parser.add_argument(
        "--chains", default="none;clip-mean;clip-norm;clip-mean,deltas;clip-mean,deltas,context:2"
    )
    args = parser.parse_args()
    env = {**os.environ, "AUDIOTOK_DATA_DIR": str(args.work)}
    rows = []
    fair = [
        part for spec in filter(None, args.frame_transform.split(",")) for part in ("--frame-transform", spec)
    ]
    frames_run = f"bench-frames-{args.frames}" + (
        f"-{args.frame_transform.replace(',', '.')}" if fair else ""
    )
    train = ["--epochs", args.epochs, "--overwrite"]
    seconds = trained(env, args.seeds, "--model", args.frames, *fair, "--run-name", frames_run, *train)
    shown = f"frames ({args.frames}{', ' + args.frame_transform if fair else ''})"
    rows.append((shown, *scores(args.work, frames_run, args.seeds), seconds, 0.0))
    for chain in args.chains.split(";"):
        transforms_part, _, quantizer = chain.partition("|")
        quantizer = quantizer or "kmeans"
        specs = () if transforms_part == "none" else tuple(transforms_part.split(","))
        vocab = vocab_name("logmel", int(args.k), FrameTransforms(specs), quantizer)
        tag = vocab.removeprefix("logmel-")
        transforms = [part for spec in specs for part in ("--transform", spec)]
        vocab_seconds, _ = audiotok(
            env, "vocab", "--k", args.k, *transforms, "--quantizer", quantizer, "--overwrite"
        )
        tokenize_seconds, _ = audiotok(env, "tokenize", "--vocab", vocab, "--overwrite")
        run = f"bench-{args.model}-{tag}"
        seconds = trained(env, args.seeds, "--model", args.model, "--vocab", vocab, "--run-name", run, *train)
        rows.append(
            (f"tokens {tag}", *scores(args.work, run, args.seeds), seconds, vocab_seconds + tokenize_seconds)
        )
    frame_map = rows[0][1]
    header = f"{'tokenizer':<38} {'test mAP':>8} {'95% +-':>6} {'x frames':>8} {'test acc':>8} {'train s':>7}"
    print(f"\n{header} {'vocab+tok s':>11}  ({args.seeds} seed{'s' * (args.seeds > 1)} a row)")
    for name, test_map, interval, accuracy, seconds, made in rows:
        shown = "-" if accuracy is None else f"{accuracy:.3f}"
        print(
            f"{name:<38} {test_map:8.3f} {interval:6.3f} {test_map / frame_map:8.2f} {shown:>8} "
            f"{seconds:7.1f} {made:11.1f}"
        )


if __name__ == "__main__":
    main()
