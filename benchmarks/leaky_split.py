"""A published split that leaks copies, measured as a user meets it: a Hugging Face audiofolder with
`train/` and `test/` folders drawn at random clip by clip, as many hub uploads are, from a collection
in which some recordings appear twice (a re-upload, two scrapes merged). Some test clips then have a
byte-identical copy in train.

The script writes that audiofolder from the free spoken digit dataset (Jakobovski/free-spoken-digit-
dataset `recordings/`, `{digit}_{speaker}_{take}.wav`), runs `import` -> `split` (the published split,
by default) -> `featurize` -> `vocab` -> `tokenize` -> `train --seeds N` for a token model and the
frame MLP with the same frames -> `compare` -> `report`, and prints each side's test accuracy over all
test clips and leak-free (without the clips whose copy was trained on), with `compare`'s paired
interval and p over each.

Usage:
  python benchmarks/leaky_split.py RECORDINGS_DIR [--work DIR] [--copies 0.15] [--test 0.2]
                                   [--seeds 3] [--k 64] [--epochs 20] [--resamples 2000]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKENS = ["--model", "simple", "--k"]  # + k
FRAMES = ["--model", "baseline"]


def audiofolder(recordings: Path, root: Path, copies: float, test: float, seed: int) -> dict[str, int]:
    """The leaky upload: every recording, a share of them twice (`-copy` beside), each file drawn
    into train/ or test/ on its own (`test` of them), with a metadata.csv a split."""
    rng = random.Random(seed)
    files = sorted(recordings.glob("*.wav"))
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for path in files:
        label = path.name.split("_")[0]
        names = [path.name] + [path.stem + "-copy.wav"] * (rng.random() < copies)
        for name in names:
            split = "test" if rng.random() < test else "train"
            target = root / split / label / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            rows[split].append((f"{label}/{name}", label))
    for split, listed in rows.items():
        with (root / split / "metadata.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([("file_name", "label"), *listed])
    return {split: len(listed) for split, listed in rows.items()}


def audiotok(work: Path, *arguments: str) -> str:
    started = time.perf_counter()
    done = subprocess.run(
        ["audiotok", "--data-dir", str(work / "data"), *arguments], capture_output=True, text=True
    )
    print(f"  audiotok {' '.join(arguments)}: {time.perf_counter() - started:.1f} s", flush=True)
    if done.returncode:
        sys.exit(f"audiotok {' '.join(arguments)} failed ({done.returncode}):\n{done.stderr}")
    for line in done.stderr.splitlines():
        if line.startswith("warning:"):
            print(f"    {line}")
    return done.stdout


def leaked_accuracy(runs: Path, name: str, seeds: int) -> float:
    """The set's mean test accuracy over the leaked clips alone (from each run's predictions)."""
    from audiotok_cli.results.evaluate import read_predictions

    values = []
    for seed in range(seeds):
        scored = read_predictions(runs / f"{name}-seed{seed}")
        labels, scores = scored.labels[scored.leaked], scored.scores[scored.leaked]
        values.append(float((labels.argmax(axis=1) == scores.argmax(axis=1)).mean()))
    return sum(values) / len(values)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("recordings", type=Path)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--copies", type=float, default=0.15, help="Share of recordings uploaded twice.")
    parser.add_argument("--test", type=float, default=0.2, help="Share of files in the published test/.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="leaky-"))
    root = work / "digits"
    if not root.exists():
        print(f"published split: {audiofolder(args.recordings, root, args.copies, args.test, 0)} files")
    audiotok(work, "import", str(root))
    print(audiotok(work, "split").strip())
    audiotok(work, "featurize", "--clip-seconds", "1")
    audiotok(work, "vocab", "--k", str(args.k))
    audiotok(work, "tokenize", "--k", str(args.k))
    seeds, epochs = ["--seeds", str(args.seeds)], ["--epochs", str(args.epochs)]
    audiotok(work, "train", *TOKENS, str(args.k), *epochs, *seeds, "--run-name", "tokens")
    audiotok(work, "train", *FRAMES, *epochs, *seeds, "--run-name", "frames")
    rows = {row["name"]: row for row in json.loads(audiotok(work, "runs", "--json"))}
    compared = json.loads(
        audiotok(work, "compare", "tokens", "frames", "--resamples", str(args.resamples), "--json")
    )
    print(f"\nTest accuracy, {args.seeds} seeds a side (mean ± 95% interval over seeds):")
    for name in ("tokens", "frames"):
        row = rows[f"{name} (seeds)"]
        print(
            f"  {name:7} all {row['test_accuracy']:.3f} ± {row['test_accuracy_ci95']:.3f}   "
            f"leak-free {row['test_accuracy_leak_free']:.3f}   on the {row['leaked_clips']} leaked clips "
            f"alone {leaked_accuracy(work / 'data' / 'runs', name, args.seeds):.3f}"
        )
    for title, differences, clips in (
        ("all", compared["differences"], compared["n_clips"]),
        ("leak-free", compared["leak_free"], compared["n_clips"] - compared["leaked_clips"]),
    ):
        for d in differences:
            low, high = d["clips_ci95"]
            print(
                f"  tokens - frames, {title} ({clips} clips), {d['metric']}: {d['difference']:+.3f} "
                f"[{low:+.3f}, {high:+.3f}], p {d['clips_p_value']:.3f}"
            )
    audiotok(work, "report", str(work / "report"), "--resamples", str(args.resamples))
    print(f"report: {work / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
