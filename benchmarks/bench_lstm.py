"""LSTM training step on CPU: packed variable-length sequences vs audiotok's per-length reversal.

Both give outputs that ignore padding; prints seconds per forward+backward step and the ratio.
Usage: python benchmarks/bench_lstm.py [--batch 32] [--frames 431] [--hidden 128] [--layers 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from audiotok_cli.training.models.ids import N_SPECIAL
from audiotok_cli.training.models.lstm import LSTMClassifier


class PackedLSTM(nn.Module):
    def __init__(self, n_tokens: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_tokens + N_SPECIAL, hidden, padding_idx=0)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 527)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return self.head(torch.cat([hidden[-2], hidden[-1]], dim=-1))


def seconds_per_step(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor, repeats: int) -> float:
    model(ids, lengths).sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        model(ids, lengths).sum().backward()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=431)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    ids = torch.randint(N_SPECIAL, N_SPECIAL + 64, (args.batch, args.frames))
    lengths = torch.full((args.batch,), args.frames)
    lengths[-3:] = torch.tensor(
        [args.frames * 2 // 3, args.frames // 2, args.frames // 3]
    )  # ~10% short clips
    ours = seconds_per_step(
        LSTMClassifier(64, args.hidden, args.hidden, args.layers, 0.0, 527), ids, lengths, args.repeats
    )
    packed = seconds_per_step(PackedLSTM(64, args.hidden, args.layers), ids, lengths, args.repeats)
    print(f"packed sequences   {packed:8.3f} s/step")
    print(f"per-length reverse {ours:8.3f} s/step")
    print(f"speed-up           {packed / ours:8.1f}x")


if __name__ == "__main__":
    main()
