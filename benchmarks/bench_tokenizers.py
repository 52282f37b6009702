"""One row per tokenizer on a real collection already imported, split and featurized (for example
by `benchmarks/real_audio.py --work DIR`): its vocabulary (`vocab --transform ...`), its tokens, a
fast token model trained and scored on them, beside a frame model on the same split and frames.
What a tokenizer loses shows as the gap between its row and the frame row.

Usage:
  python benchmarks/bench_tokenizers.py --work DIR [--k 256] [--epochs 30] [--model simple]
                                  [--chains "none;clip-mean;clip-mean,deltas;clip-mean,deltas|pq:8"]
                                  [--frames baseline]

A chain is the vocabulary's transforms, comma-separated (`none`: raw frames), then optionally `|`
and its quantizer (`pq:8`, `rvq:4`; default kmeans).
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
from audiotok_cli.stages.vocab import vocab_name


def audiotok(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "audiotok_cli", *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"audiotok {' '.join(args)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return time.perf_counter() - started, done.stdout


def scores(work: Path, run: str) -> tuple[float, float | None]:
    test = json.loads((work / "runs" / run / "eval.json").read_text())["splits"]["test"]
    return test["mAP"], test.get("accuracy")


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
        "--chains", default="none;clip-mean;clip-norm;clip-mean,deltas;clip-mean,deltas,context:2"
    )
    args = parser.parse_args()
    env = {**os.environ, "AUDIOTOK_DATA_DIR": str(args.work)}
    rows = []
    frames_run = f"bench-frames-{args.frames}"
    train = ["--epochs", args.epochs, "--overwrite"]
    seconds, _ = audiotok(env, "train", "--model", args.frames, "--run-name", frames_run, *train)
    audiotok(env, "eval", "--run", frames_run)
    rows.append((f"frames ({args.frames})", *scores(args.work, frames_run), "-", seconds, 0.0))
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
        seconds, _ = audiotok(
            env, "train", "--model", args.model, "--vocab", vocab, "--run-name", run, *train
        )
        audiotok(env, "eval", "--run", run)
        rows.append(
            (f"tokens {tag}", *scores(args.work, run), vocab, seconds, vocab_seconds + tokenize_seconds)
        )
    frame_map = rows[0][1]
    header = f"{'tokenizer':<38} {'test mAP':>8} {'x frames':>8} {'test acc':>8} {'train s':>7}"
    print(f"\n{header} {'vocab+tok s':>11}")
    for name, test_map, accuracy, _, seconds, made in rows:
        shown = "-" if accuracy is None else f"{accuracy:.3f}"
        print(
            f"{name:<38} {test_map:8.3f} {test_map / frame_map:8.2f} {shown:>8} {seconds:7.1f} {made:11.1f}"
        )


if __name__ == "__main__":
    main()
