"""Masked unit pretraining's speed, the paths before and after in one run:

1. The encoder alone (README's: 128 hidden, 4 layers, 4 heads; batch 32 of `--frames` frames), one
   forward and backward a step: attention through `eager` (what BERT ran before) and `sdpa`
   (torch's fused kernels, audiotok's now), in fp32 and under bf16 autocast; clips/s and the
   FLOP rate (forward + backward = 3x the forward's matmul FLOPs).
2. `pretrain --input frames --targets VOCAB --epochs 1` on a store whose clips vary in length (the
   spoken digits: 0.3 to 2 s), without and with `--bucket-by-length`: clips/s of the epoch and of
   its reader, and the padded steps computed, from the run's record.

Usage (the store of bench_units_featurize.py, or any store with tokens to predict):
  python benchmarks/bench_pretrain.py --work DIR [--targets logmel-k64] [--frames 173] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from audiotok_cli.training.models.bert import FrameMaskedUnits
from audiotok_cli.training.models.spec import ModelSpec

ENCODER = {"hidden_size": 128, "num_layers": 4, "num_heads": 4}
BATCH = 32


def encoder_step_rate(frames: int, steps: int, attention: str, bf16: bool) -> tuple[float, float]:
    """Clips/s and GFLOP/s of forward + backward steps of the README's encoder."""
    spec = ModelSpec(
        input="frames", n_mels=64, max_frames=frames, n_classes=10, target_k=64, target_codebooks=1,
        kind="bert", embed_dim=8, dropout=0.1, **ENCODER,
    )  # fmt: skip
    model = FrameMaskedUnits(spec)
    model.bert.set_attn_implementation(attention)
    inputs, lengths = torch.randn(BATCH, frames, 64), torch.full((BATCH,), frames)
    masked = torch.rand(BATCH, frames) < 0.5
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(inputs, lengths, masked).float().logsumexp(-1).mean()
        loss.backward()
    seconds = time.perf_counter() - started
    h, t, layers = ENCODER["hidden_size"], frames + 1, ENCODER["num_layers"]
    forward = BATCH * layers * (2 * t * 12 * h * h + 4 * t * t * h)  # projections + MLP, scores + mix
    return BATCH * steps / seconds, 3 * forward * steps / seconds / 1e9


def pretrain_rate(work: Path, targets: str, bucket: bool) -> dict[str, float]:
    """One epoch of `pretrain` as a user runs it: the run record's throughput figures."""
    name = f"bench-{'bucketed' if bucket else 'plain'}"
    flags = ["--hidden-size", "128", "--num-layers", "4", "--num-heads", "4", "--batch-size", str(BATCH)]
    command = [sys.executable, "-m", "audiotok_cli", "pretrain", "--input", "frames", "--targets", targets,
               "--epochs", "1", "--run-name", name, "--overwrite", *flags]  # fmt: skip
    command += ["--bucket-by-length"] * bucket
    env = {**os.environ, "AUDIOTOK_DATA_DIR": str(work)}
    subprocess.run(command, env=env, check=True, capture_output=True)
    epoch = json.loads((work / "runs" / name / "run.json").read_text())["history"][0]
    return {"clips/s": epoch["samples_per_s"], "reader clips/s": epoch["reader_samples_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="Data directory holding the store.")
    parser.add_argument("--targets", default="logmel-k64")
    parser.add_argument("--frames", type=int, default=173, help="Frames a clip for the encoder alone.")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"encoder alone: batch {BATCH} x {args.frames} frames, {torch.get_num_threads()} threads")
    rates = {}
    for attention in ("eager", "sdpa"):
        for bf16 in (False, True):
            rates[attention, bf16] = encoder_step_rate(args.frames, args.steps, attention, bf16)
            clips, gflops = rates[attention, bf16]
            ratio = clips / rates["eager", False][0]
            print(f"  {attention:<6} {'bf16' if bf16 else 'fp32'}  {clips:7.1f} clips/s  {gflops:6.1f} "
                  f"GFLOP/s  {ratio:4.2f}x eager fp32")  # fmt: skip
    print(f"\npretrain --input frames --targets {args.targets}, 1 epoch (clips of varied length)")
    plain = pretrain_rate(args.work, args.targets, bucket=False)
    bucketed = pretrain_rate(args.work, args.targets, bucket=True)
    for name, figures in (("plain", plain), ("bucketed", bucketed)):
        shown = ", ".join(f"{value:.0f} {key}" for key, value in figures.items())
        print(f"  {name:<9} {shown}  ({figures['clips/s'] / plain['clips/s']:.2f}x plain)")


if __name__ == "__main__":
    main()
