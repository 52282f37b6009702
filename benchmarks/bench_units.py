"""Units audiotok learns itself (HuBERT's recipe, no download), iteration by iteration, on one split
of real recordings, through the commands a user types:

  iteration 0  k-means (k) over log-mel frames with the recipe's transforms: the first targets
  iteration 1  `pretrain --objective masked-units --targets IT0` -> `featurize --encoder RUN --layer L`
               -> k-means (or `--units-quantizer pq:M`: several codebooks over the units)
  iteration 2  `vocab --k K2` over iteration 1's units -> `pretrain --features logmel --targets` those
               (log-mel read with iteration 1's transforms: audiotok's default) -> `featurize
               --encoder` again (`--layer2`) -> k-means (k)

Printed for each iteration: the masked-prediction accuracy on val (1 / k is chance), `inspect`'s
I(token; class) / H(class) on train and val (HuBERT's PNMI, with classes for phones), and the
bag-of-tokens model's test accuracy and mAP over `--seeds` seeds (mean and 95% interval); beside them
the frame MLP with the recipe's transforms, the best log-mel recipe's tokens (`--recipe`, product
quantization after the transforms) and the units encoder fine-tuned whole (`train --init`), the
continuous row every token paper prints. Iteration 2 is pretrained under `--pretrain-seeds` seeds (an
encoder's seed moves its units more than the classifier's seed does): a row each, then one over
them (interval over pretraining seeds). Last, the claims, each pretraining seed paired with the same
test clips by `audiotok compare`: units against the frame MLP and against the log-mel recipe
(accuracy difference, 95% interval over clips, p), and the information ratio against raw k-means
at the same k. `--json FILE` keeps the rows and claims, and the headline rows (the last iteration's
units, the frame MLP, the recipe) that `units_across_splits.py` sets side by side over splits.

The defaults are the recipe measured best on unseen speakers (README, "Units the tool learns").

Usage (a store already imported, split and featurized, e.g. the spoken digits of real_audio.py):
  python benchmarks/bench_units.py --data-dir DIR [--k 256] [--k2 256] [--layer 2] [--layer2 1]
                                   [--pretrain-epochs 20] [--pretrain-seeds 3] [--recipe pq:3]
                                   [--epochs 30] [--tune-epochs 10] [--iterations 2] [--seeds 3]
                                   [--transforms clip-mean,deltas] [--units-quantizer pq:8] [--json FILE]

For sound (issue 36: one codebook of units lost to log-mel pq:8 on street sounds), the candidates are
`--recipe pq:8 --units-quantizer pq:8` with `--layer 2` or `--layer 2,4` (layers side by side), and
`--iterations 2`; each prints its rows beside the frame MLP and the log-mel recipe, with the claims.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from audiotok_cli.results.runs import spread

ENCODER = ["--hidden-size", "128", "--num-layers", "4", "--num-heads", "4", "--batch-size", "32"]


def audiotok(data_dir: Path, *args: str) -> str:
    """Run one command as a user would; its stdout, or the run stops naming the command. A training
    run that an earlier pass finished with these very settings is kept (its stdout: "")."""
    started = time.monotonic()
    env = {**os.environ, "AUDIOTOK_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "audiotok_cli", *args], capture_output=True, text=True, env=env, check=False
    )
    kept = done.returncode != 0 and "already trained with these settings" in done.stderr
    print(f"  {time.monotonic() - started:7.1f} s  audiotok {' '.join(args)}{' (kept)' * kept}", flush=True)
    if done.returncode != 0 and not kept:
        sys.exit(f"audiotok {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return done.stdout


def vocabulary(
    data_dir: Path, features: str, k: int, transforms: list[str], quantizer: str | None = None
) -> str:
    """k-means (or `quantizer`) over `features` after `transforms`, and its tokens; the vocabulary's
    name."""
    flags = [flag for name in transforms for flag in ("--transform", name)]
    flags += ["--quantizer", quantizer] if quantizer else []
    command = ["vocab", "--features", features, "--k", str(k), *flags, "--overwrite", "--json"]
    made = json.loads(audiotok(data_dir, *command))  # again: the same centroids (seeded), its tokens kept
    audiotok(data_dir, "tokenize", "--vocab", made["name"], "-q")
    return made["name"]


def information(data_dir: Path, vocab: str) -> dict[str, float]:
    report = json.loads(audiotok(data_dir, "inspect", "--vocab", vocab, "--json"))
    return {split: use["label_information_share"] for split, use in report["splits"].items()}


def pretrain(
    data_dir: Path, targets: str, epochs: int, seeds: int, features: str | None = None
) -> dict[str, float]:
    """Units runs predicting `targets` at masked spans (`units-{targets}`, or `-seedS` a seed under
    `pretrain --seeds`), their frames read with the targets' transforms (audiotok's default; for units
    targets, the first iteration's); each run's best val masked accuracy. A run an earlier pass
    finished with the same settings is kept; one of other settings is refused, naming them."""
    name = f"units-{targets}"
    where = ["--features", features] if features else []
    command = [
        "pretrain",
        "--objective",
        "masked-units",
        "--targets",
        targets,
        *where,
        "--epochs",
        str(epochs),
        *ENCODER,
    ]
    if seeds > 1:
        made = audiotok(data_dir, *command, "--seeds", str(seeds), "--run-name", name, "--json")
        return json.loads(made)["masked_accuracy"]
    audiotok(data_dir, *command, "--run-name", name, "-q")
    history = json.loads((data_dir / "runs" / name / "run.json").read_text())["history"]
    return {name: max(epoch["val_accuracy"] for epoch in history)}


def scored(data_dir: Path, name: str, args: list[str], epochs: int, seeds: int) -> dict[str, float]:
    """Train `args` under `seeds` seeds as run set `name`; its test accuracy and mAP, mean and 95%."""
    repeats = ["--epochs", str(epochs), "--seeds", str(seeds), "--run-name", name, "-q"]
    audiotok(data_dir, "train", *args, *repeats)
    rows = json.loads(audiotok(data_dir, "runs", "--only", f"{name}-seed*", "--json"))
    row = next(r for r in rows if r.get("seeds"))
    return {key: row.get(key) for key in ("test_accuracy", "test_accuracy_ci95", "test_mAP", "test_mAP_ci95")}


def shown(figures: dict[str, float]) -> str:
    if figures.get("test_accuracy") is None:  # a multi-label set: mAP alone
        return f"{figures['test_mAP']:.3f} ± {figures['test_mAP_ci95'] or 0.0:.3f} mAP"
    accuracy, interval = figures["test_accuracy"], figures["test_accuracy_ci95"] or 0.0
    return f"{accuracy:.3f} ± {interval:.3f} acc, {figures['test_mAP']:.3f} mAP"


def over_pretraining_seeds(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each pretraining seed's mean over its classifier seeds, then their mean and 95% interval."""
    figures = {}
    for metric in ("test_accuracy", "test_mAP"):
        values = [row[metric] for row in rows]
        if None in values:
            continue
        between = spread(values)
        figures[metric] = between.mean if between else values[0]
        figures[f"{metric}_ci95"] = between.ci95 if between else None
    return figures


def paired(data_dir: Path, a: str, b: str) -> dict[str, float]:
    """`audiotok compare A B` on test accuracy (mAP for a multi-label set): the metric, the
    difference, its interval over clips, p (2,000 resamples: 10,000 take 1.5 minutes a pair on 1,000
    clips and 2 cores)."""
    report = json.loads(audiotok(data_dir, "compare", a, b, "--resamples", "2000", "--json"))
    found = {d["metric"]: d for d in report["differences"]}
    metric = "accuracy" if "accuracy" in found else "mAP"
    return {"metric": metric} | {
        key: found[metric][key] for key in ("difference", "clips_ci95", "clips_p_value")
    }


def claims(data_dir: Path, units: list[str], mlp: str, recipe: str) -> list[str]:
    """The issue's claims in words: each pretraining seed's units against the frame MLP and the
    log-mel recipe, paired over the test clips."""
    lines = []
    for name in units:
        for other in (mlp, recipe):
            found = paired(data_dir, name, other)
            low, high = found["clips_ci95"]
            lines.append(
                f"{name} - {other}: {found['metric']} {found['difference']:+.3f}, 95% over clips "
                f"[{low:+.3f}, {high:+.3f}], p {found['clips_p_value']:.3g}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--features", default="logmel")
    parser.add_argument("--k", type=int, default=256, help="k of every iteration's tokens")
    parser.add_argument("--k2", type=int, default=256, help="k of iteration 2's targets (HuBERT: 500)")
    parser.add_argument(
        "--layer", default="2", help="the units run's layer (HuBERT base: 6 of 12); 2,4: side by side"
    )
    parser.add_argument("--layer2", default="1", help="iteration 2's layer made into units")
    parser.add_argument(
        "--units-quantizer", help="how units are quantized (default k-means; pq:8: a codebook per eighth)"
    )
    parser.add_argument("--transforms", default="clip-mean,deltas", help="the log-mel recipe's")
    parser.add_argument("--recipe", default="pq:3", help="the log-mel recipe's quantizer (speech: pq:3)")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--pretrain-seeds", type=int, default=3, help="iteration 2's encoders")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tune-epochs", type=int, default=10, help="fine-tuning the encoder whole; 0: not")
    parser.add_argument("--iterations", type=int, default=2, choices=(1, 2))
    parser.add_argument("--json", type=Path, help="also write the rows and claims to this file")
    args = parser.parse_args()
    data, transforms = args.data_dir, [t for t in args.transforms.split(",") if t]
    frame_flags = [flag for name in transforms for flag in ("--frame-transform", name)]
    rows = {}

    def bag(row: str, vocab: str) -> str:
        """The bag-of-tokens model over `vocab`, 3 seeds, as `row`; the set's name."""
        name = f"bag-{vocab}"
        rows[row] = rows.get(row, {}) | scored(
            data, name, ["--model", "simple", "--vocab", vocab], args.epochs, args.seeds
        )
        return name

    print("iteration 0: k-means over log-mel frames", flush=True)
    raw = vocabulary(data, args.features, args.k, [])
    it0 = vocabulary(data, args.features, args.k, transforms)
    rows["log-mel k-means, raw"] = {"information": information(data, raw)}
    rows[f"log-mel k-means, {args.transforms}"] = {"information": information(data, it0)}
    bag(f"log-mel k-means, {args.transforms}", it0)
    recipe_row = f"log-mel, {args.transforms}, {args.recipe} (the recipe)"
    recipe = bag(recipe_row, vocabulary(data, args.features, args.k, transforms, args.recipe))
    mlp, mlp_row = "mlp-units-bench", f"frame MLP, {args.transforms}"
    rows[mlp_row] = scored(
        data, mlp, ["--model", "baseline", "--features", args.features, *frame_flags], args.epochs, args.seeds
    )

    print("iteration 1: units of a model predicting iteration 0's ids", flush=True)
    ((run1, masked1),) = pretrain(data, it0, args.pretrain_epochs, 1).items()
    audiotok(data, "featurize", "--encoder", run1, "--layer", args.layer, "--name", "it1", "-q")
    it1 = vocabulary(data, "it1", args.k, [], args.units_quantizer)
    units1 = f"iteration 1 units, layer {args.layer}" + (
        f", {args.units_quantizer}" * bool(args.units_quantizer)
    )
    rows[units1] = {"masked": masked1, "information": information(data, it1)}
    units, final = [bag(units1, it1)], units1
    if args.tune_epochs:
        tuned = ["--model", "bert", "--input", "frames", "--features", args.features, "--init", run1]
        rows["iteration 1 encoder fine-tuned"] = scored(
            data, "tuned-it1", [*tuned, *frame_flags], args.tune_epochs, args.seeds
        )
    if args.iterations == 2:
        print("iteration 2: units of models predicting iteration 1's units", flush=True)
        targets2 = vocabulary(data, "it1", args.k2, [])
        runs2 = pretrain(data, targets2, args.pretrain_epochs, args.pretrain_seeds, features=args.features)
        units, seeded = [], []
        for run2, masked2 in runs2.items():
            name = f"it2s{run2.rsplit('-seed', 1)[1]}" if "-seed" in run2 else "it2"
            audiotok(data, "featurize", "--encoder", run2, "--layer", args.layer2, "--name", name, "-q")
            it2 = vocabulary(data, name, args.k, [], args.units_quantizer)
            row = f"iteration 2 units, layer {args.layer2}" + (
                f", pretraining seed {name[4:]}" if name[4:] else ""
            )
            rows[row] = {"masked": masked2, "information": information(data, it2)}
            units.append(bag(row, it2))
            seeded.append(rows[row])
            final = row
        if len(seeded) > 1:
            final = f"iteration 2, {len(seeded)} pretraining x {args.seeds} seeds"
            rows[final] = over_pretraining_seeds(seeded)

    print(f"\n{'row':48} {'masked acc':>10} {'I/H train':>9} {'I/H val':>8}  test ({args.seeds} seeds)")
    for name, row in rows.items():
        info = row.get("information", {})
        masked = f"{row['masked']:.3f}" if "masked" in row else "-"
        test = shown(row) if "test_mAP" in row else "-"
        train, val = (f"{info[s]:.3f}" if s in info else "-" for s in ("train", "val"))
        print(f"{name:48} {masked:>10} {train:>9} {val:>8}  {test}")

    said = claims(data, units, mlp, recipe)
    baseline = rows["log-mel k-means, raw"]["information"]
    for name, row in rows.items():
        if name.startswith("iteration") and "information" in row:
            ratios = {split: row["information"][split] / baseline[split] for split in ("train", "val")}
            said.append(
                f"{name}: information {ratios['train']:.2f}x / {ratios['val']:.2f}x raw k-means (train / val)"
            )
    print("\n" + "\n".join(said))
    if args.json:
        headline = {"units": rows[final], "frame_mlp": rows[mlp_row], "recipe": rows[recipe_row]}
        kept = {"data_dir": str(data), "headline": headline, "rows": rows, "claims": said}
        args.json.write_text(json.dumps(kept, indent=2))


if __name__ == "__main__":
    main()
