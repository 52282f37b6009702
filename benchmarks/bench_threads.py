"""Training on a busy machine: samples/s of a model's training steps with torch on 1 .. all the
cores' threads, on a quiet machine and beside `--load` busy processes (what a shared machine does:
LSTM epochs went from 3.6 s quiet to 32-96 s under load). `train --threads N` sets the threads;
the default is the cores available to the process (`parallel.available_cores`: affinity, capped by
a cgroup CPU quota). Each configuration runs in a fresh process, after two warm-up steps; the figure
is the median of `--repeat` timings of `--steps` optimizer steps.

Usage: python benchmarks/bench_threads.py [--store PATH] [--clips 128] [--model lstm]
                                          [--steps 20] [--repeat 3] [--load N]
Without --store it builds a demo store first (as bench_train.py does).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from audiotok_cli.parallel import available_cores
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.store import Pick, Store
from audiotok_cli.training.data import BatchReader
from audiotok_cli.training.inputs import inputs_for_training
from audiotok_cli.training.models import build_model
from bench_train import build_demo_store

SPAWN = multiprocessing.get_context("spawn")


def _busy(stop) -> None:
    """One core's worth of someone else's work."""
    while not stop.is_set():
        sum(range(10_000))


def measure(store_path: Path, kind: str, threads: int, steps: int, repeat: int, batch: int = 32) -> float:
    """Median samples/s of `steps` CPU training steps of `kind` with torch on `threads` threads."""
    torch.set_num_threads(threads)
    store = Store.open(store_path)
    settings = ModelSettings(kind=kind)
    chosen = inputs_for_training(store, settings, Pick())
    with BatchReader(store, chosen.model_inputs, 0) as reader:
        batches = list(reader.batches(reader.lengths > 0, batch))
    batches = (batches * (1 + (steps + 2) // len(batches)))[: steps + 2]
    torch.manual_seed(0)
    model = build_model(chosen.spec(settings)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=TrainSettings().learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(batch) -> None:
        optimizer.zero_grad()
        loss_fn(model(batch.inputs, batch.lengths), batch.labels).backward()
        optimizer.step()

    for batch in batches[:2]:
        step(batch)
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        for batch in batches[2:]:
            step(batch)
        rates.append(sum(len(b.rows) for b in batches[2:]) / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, help="A store with features and tokens (default: build one).")
    parser.add_argument("--clips", type=int, default=128, help="Demo clips when building a store.")
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load", type=int, help="Busy processes beside training (default: one per core).")
    args = parser.parse_args()
    cores = available_cores()
    load = args.load if args.load is not None else cores
    thread_counts = sorted({1, max(1, cores // 2), cores})
    with tempfile.TemporaryDirectory() as scratch:
        store = args.store or build_demo_store(Path(scratch), args.clips)
        timing = f"median of {args.repeat} x {args.steps} steps"
        print(f"{args.model}: {cores} cores available; training samples/s ({timing})")
        print(f"{'threads':>8} {'quiet':>10} {f'load {load}':>10} {'load/quiet':>11}")
        for threads in thread_counts:
            quiet = _in_fresh_process(store, args, threads)
            stop = SPAWN.Event()
            busy = [SPAWN.Process(target=_busy, args=(stop,), daemon=True) for _ in range(load)]
            for process in busy:
                process.start()
            try:
                loaded = _in_fresh_process(store, args, threads)
            finally:
                stop.set()
                for process in busy:
                    process.join()
            print(f"{threads:>8} {quiet:>10.1f} {loaded:>10.1f} {loaded / quiet:>10.2f}x")


def _in_fresh_process(store: Path, args: argparse.Namespace, threads: int) -> float:
    with ProcessPoolExecutor(1, mp_context=SPAWN) as fresh:
        return fresh.submit(measure, store, args.model, threads, args.steps, args.repeat).result()


if __name__ == "__main__":
    main()
