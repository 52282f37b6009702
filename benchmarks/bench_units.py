"""Units audiotok learns itself (HuBERT's recipe, no download), iteration by iteration, on one split
of real recordings, through the commands a user types:

  iteration 0  k-means (k) over log-mel frames with the recipe's transforms: the first targets
  iteration 1  `pretrain --input frames --targets IT0` -> `featurize --encoder RUN --layer L` -> k-means
  iteration 2  `vocab --k K2` over iteration 1's units -> `pretrain --features logmel --targets` those
               (log-mel read with iteration 1's transforms: audiotok's default) -> `featurize
               --encoder` again (`--layer2`) -> k-means (k)

Printed for each iteration: the masked-prediction accuracy on val (1 / k is chance), `inspect`'s
I(token; class) / H(class) on train and val (HuBERT's PNMI, with classes for phones), and the
bag-of-tokens model's test accuracy and mAP over `--seeds` seeds (mean and 95% interval); beside them
the frame MLP with the recipe's transforms and the units encoder fine-tuned whole (`train --init`),
the continuous row every token paper prints.

The defaults are the recipe measured best on unseen speakers (README, "Units the tool learns").

Usage (a store already imported, split and featurized, e.g. the spoken digits of real_audio.py):
  python benchmarks/bench_units.py --data-dir DIR [--k 256] [--k2 256] [--layer 2] [--layer2 1]
                                   [--pretrain-epochs 20]
                                   [--epochs 30] [--tune-epochs 10] [--iterations 2] [--seeds 3]
                                   [--transforms clip-mean,deltas]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ENCODER = ["--hidden-size", "128", "--num-layers", "4", "--num-heads", "4", "--batch-size", "32"]


def audiotok(data_dir: Path, *args: str) -> str:
    """Run one command as a user would; its stdout, or the run stops naming the command."""
    started = time.monotonic()
    env = {**os.environ, "AUDIOTOK_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "audiotok_cli", *args], capture_output=True, text=True, env=env, check=False
    )
    print(f"  {time.monotonic() - started:7.1f} s  audiotok {' '.join(args)}", flush=True)
    if done.returncode != 0:
        sys.exit(f"audiotok {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return done.stdout


def vocabulary(data_dir: Path, features: str, k: int, transforms: list[str]) -> str:
    """k-means over `features` (after `transforms`) and its tokens; the vocabulary's name."""
    flags = [flag for name in transforms for flag in ("--transform", name)]
    command = ["vocab", "--features", features, "--k", str(k), *flags, "--overwrite", "--json"]
    made = json.loads(audiotok(data_dir, *command))  # again: the same centroids (seeded), its tokens kept
    audiotok(data_dir, "tokenize", "--vocab", made["name"], "-q")
    return made["name"]


def information(data_dir: Path, vocab: str) -> dict[str, float]:
    report = json.loads(audiotok(data_dir, "inspect", "--vocab", vocab, "--json"))
    return {split: use["label_information_share"] for split, use in report["splits"].items()}


def pretrain(
    data_dir: Path, targets: str, epochs: int, transforms: list[str], features: str | None = None
) -> tuple[str, float]:
    """A units run predicting `targets` at masked spans, its frames read with `transforms` (audiotok's
    default for both iterations: the recipe's); its name and best val masked accuracy."""
    where = ["--features", features] if features else []
    name = f"units-{targets}"
    done = data_dir / "runs" / name / "run.json"
    if done.exists() and json.loads(done.read_text()).get("complete"):  # from an earlier pass: kept
        record = json.loads(done.read_text())
        if record["inputs"]["transforms"] != transforms:
            sys.exit(
                f"{done.parent} read its frames with {record['inputs']['transforms']}, not {transforms}: "
                "move it aside, or use a fresh --data-dir"
            )
        return name, max(epoch["val_accuracy"] for epoch in record["history"])
    command = ["pretrain", "--input", "frames", "--targets", targets, *where, "--epochs", str(epochs)]
    result = json.loads(audiotok(data_dir, *command, *ENCODER, "--run-name", name, "--json"))
    return name, max(epoch["val_accuracy"] for epoch in result["history"])


def scored(data_dir: Path, name: str, args: list[str], epochs: int, seeds: int) -> dict[str, float]:
    """Train `args` under `seeds` seeds as run set `name`; its test accuracy and mAP, mean and 95%."""
    repeats = ["--epochs", str(epochs), "--seeds", str(seeds), "--run-name", name, "-q"]
    audiotok(data_dir, "train", *args, *repeats)
    rows = json.loads(audiotok(data_dir, "runs", "--only", f"{name}-seed*", "--json"))
    row = next(r for r in rows if r.get("seeds"))
    return {key: row.get(key) for key in ("test_accuracy", "test_accuracy_ci95", "test_mAP", "test_mAP_ci95")}


def shown(figures: dict[str, float]) -> str:
    accuracy, interval = figures["test_accuracy"], figures["test_accuracy_ci95"] or 0.0
    return f"{accuracy:.3f} ± {interval:.3f} acc, {figures['test_mAP']:.3f} mAP"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--features", default="logmel")
    parser.add_argument("--k", type=int, default=256, help="k of every iteration's tokens")
    parser.add_argument("--k2", type=int, default=256, help="k of iteration 2's targets (HuBERT: 500)")
    parser.add_argument("--layer", type=int, default=2, help="the units run's layer (HuBERT base: 6 of 12)")
    parser.add_argument("--layer2", type=int, default=1, help="iteration 2's layer made into units")
    parser.add_argument("--transforms", default="clip-mean,deltas", help="the log-mel recipe's")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tune-epochs", type=int, default=10, help="fine-tuning the encoder whole; 0: not")
    parser.add_argument("--iterations", type=int, default=2, choices=(1, 2))
    args = parser.parse_args()
    data, transforms = args.data_dir, [t for t in args.transforms.split(",") if t]
    frame_flags = [flag for name in transforms for flag in ("--frame-transform", name)]
    rows = {}

    print("iteration 0: k-means over log-mel frames", flush=True)
    raw = vocabulary(data, args.features, args.k, [])
    it0 = vocabulary(data, args.features, args.k, transforms)
    rows["log-mel k-means, raw"] = {"information": information(data, raw)}
    rows[f"log-mel k-means, {args.transforms}"] = {"information": information(data, it0)}
    rows[f"log-mel k-means, {args.transforms}"] |= scored(
        data, f"bag-{it0}", ["--model", "simple", "--vocab", it0], args.epochs, args.seeds
    )
    rows[f"frame MLP, {args.transforms}"] = scored(
        data,
        "mlp-units-bench",
        ["--model", "baseline", "--features", args.features, *frame_flags],
        args.epochs,
        args.seeds,
    )

    print("iteration 1: units of a model predicting iteration 0's ids", flush=True)
    run1, masked1 = pretrain(data, it0, args.pretrain_epochs, transforms)
    audiotok(data, "featurize", "--encoder", run1, "--layer", str(args.layer), "--name", "it1", "-q")
    it1 = vocabulary(data, "it1", args.k, [])
    units1 = f"iteration 1 units, layer {args.layer}"
    rows[units1] = {"masked": masked1, "information": information(data, it1)}
    rows[units1] |= scored(data, f"bag-{it1}", ["--model", "simple", "--vocab", it1], args.epochs, args.seeds)
    if args.tune_epochs:
        tuned = ["--model", "bert", "--input", "frames", "--features", args.features, "--init", run1]
        rows["iteration 1 encoder fine-tuned"] = scored(
            data, "tuned-it1", [*tuned, *frame_flags], args.tune_epochs, args.seeds
        )
    if args.iterations == 2:
        print("iteration 2: units of a model predicting iteration 1's units", flush=True)
        targets2 = vocabulary(data, "it1", args.k2, [])
        run2, masked2 = pretrain(data, targets2, args.pretrain_epochs, transforms, features=args.features)
        audiotok(data, "featurize", "--encoder", run2, "--layer", str(args.layer2), "--name", "it2", "-q")
        it2 = vocabulary(data, "it2", args.k, [])
        units2 = f"iteration 2 units, layer {args.layer2}"
        rows[units2] = {"masked": masked2, "information": information(data, it2)}
        bag = ["--model", "simple", "--vocab", it2]
        rows[units2] |= scored(data, f"bag-{it2}", bag, args.epochs, args.seeds)

    print(f"\n{'row':42} {'masked acc':>10} {'I/H train':>9} {'I/H val':>8}  test ({args.seeds} seeds)")
    for name, row in rows.items():
        info = row.get("information", {})
        masked = f"{row['masked']:.3f}" if "masked" in row else "-"
        test = shown(row) if "test_accuracy" in row else "-"
        train, val = (f"{info[s]:.3f}" if s in info else "-" for s in ("train", "val"))
        print(f"{name:42} {masked:>10} {train:>9} {val:>8}  {test}")


if __name__ == "__main__":
    main()
