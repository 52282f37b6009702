"""The units recipe over several held-out splits, side by side: `bench_units.py --json` files, one a
split (e.g. each pair of speakers held out in turn, `split --test-group A,B`).

On the spoken digits, which two speakers are test moved every row by several points and the gap
between units and frames by 10: one split's table cannot carry a claim about unseen speakers. This
prints, per split, the last iteration's units (mean over its pretraining seeds), the frame MLP and
the log-mel recipe (test accuracy; mAP for a multi-label set), units / MLP and units - recipe; then,
over the splits, the means and a paired t-test a comparison (split by split, `scipy.stats.ttest_rel`)
with the 95% interval of the mean difference.

Usage:
  python benchmarks/units_across_splits.py SPLIT_A.json SPLIT_B.json SPLIT_C.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy.stats import ttest_rel


def headline(path: Path) -> tuple[str, dict[str, float]]:
    """A split's name (its data dir) and the headline figures of units, frame MLP and recipe."""
    kept = json.loads(path.read_text())
    rows = kept["headline"]
    metric = "test_accuracy" if rows["frame_mlp"].get("test_accuracy") is not None else "test_mAP"
    return Path(kept["data_dir"]).name, {who: rows[who][metric] for who in rows} | {"metric": metric}


def paired(a: list[float], b: list[float]) -> str:
    """Mean of a - b over the splits, its 95% interval and the paired t-test's p."""
    mean = statistics.fmean(x - y for x, y in zip(a, b, strict=True))
    if len(a) < 2:
        return f"{mean:+.3f} (one split: no interval)"
    test = ttest_rel(a, b)
    low, high = test.confidence_interval()
    return f"{mean:+.3f}, 95% over splits [{low:+.3f}, {high:+.3f}], paired t p {test.pvalue:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, nargs="+", help="bench_units.py --json files, one a split")
    splits = [headline(path) for path in parser.parse_args().results]
    metrics = {figures["metric"] for _, figures in splits}
    if len(metrics) > 1:
        raise SystemExit(f"the splits are scored by different metrics ({', '.join(sorted(metrics))})")
    print(f"test {metrics.pop().removeprefix('test_')}, each the mean over its seeds")
    print(f"{'split':16} {'units':>6} {'frame MLP':>9} {'recipe':>6} {'units/MLP':>9} {'units-recipe':>12}")
    for name, f in splits:
        scores = f"{f['units']:6.3f} {f['frame_mlp']:9.3f} {f['recipe']:6.3f}"
        print(f"{name:16} {scores} {f['units'] / f['frame_mlp']:8.2f}x {f['units'] - f['recipe']:+12.3f}")
    units, mlp, recipe = ([f[who] for _, f in splits] for who in ("units", "frame_mlp", "recipe"))
    means = [statistics.fmean(values) for values in (units, mlp, recipe)]
    print(f"{'mean':16} {means[0]:6.3f} {means[1]:9.3f} {means[2]:6.3f} {means[0] / means[1]:8.2f}x")
    print(f"\nunits - frame MLP: {paired(units, mlp)}")
    print(f"units - recipe:    {paired(units, recipe)}")


if __name__ == "__main__":
    main()
