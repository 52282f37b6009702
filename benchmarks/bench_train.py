"""Training throughput of every model at its default size, beside its batch reader alone.

Each model runs in a fresh process: samples/s of `--steps` optimizer steps (forward, backward, AdamW;
after two warm-up steps) and the peak memory they took (GPU: torch's peak allocation; CPU: peak
resident memory above the start), and samples/s of the store's batch reader alone (shuffled passes
over every clip for 2 s, with the reader processes `train` would use, or `--loader-workers`). The
reader must be at least 5x faster than the model, or the GPU (or CPU) waits on the store.

Usage: python benchmarks/bench_train.py [--store PATH] [--clips 256] [--device auto] [--steps 10]
                                        [--loader-workers N]
Without --store it builds a demo store first (demo-data, expand, split, featurize, vocab, tokenize).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from audiotok_cli.settings import ModelSettings, TrainSettings, load_settings
from audiotok_cli.store import Pick, Store
from audiotok_cli.training.data import BatchReader, reader_workers
from audiotok_cli.training.inputs import inputs_for_training
from audiotok_cli.training.models import build_model
from audiotok_cli.training.runs import pick_device

MODELS = [("simple", "tokens"), ("lstm", "tokens"), ("bert", "tokens"), ("baseline", "frames"),
          ("cnn", "frames"), ("bert", "frames")]  # fmt: skip


def build_demo_store(folder: Path, clips: int) -> Path:
    """The demo pipeline up to tokens, through the library (CPU: librosa and faiss)."""
    from audiotok_cli.audioset.demo import write_demo_mirror
    from audiotok_cli.stages.expand import expand
    from audiotok_cli.stages.featurize import featurize
    from audiotok_cli.stages.split import split
    from audiotok_cli.stages.tokenize import tokenize
    from audiotok_cli.stages.vocab import build_vocab

    settings = load_settings({"data_dir": folder})
    write_demo_mirror(settings.mirror_dir, clips=clips, seconds=10.0)
    expand(settings.resolved_paths)
    split(settings.store_path, settings.split, settings.seed)
    featurize(settings.store_path, settings.audio_dir, settings.audio, settings.features)
    build_vocab(settings.store_path, settings.vocab, settings.seed)
    tokenize(settings.store_path)
    return settings.store_path


class PeakMemory:
    """Peak GPU allocation, or peak resident memory above the start sampled every 5 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.start = _resident_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _resident_bytes() - self.start)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(
    store_path: Path,
    kind: str,
    source: str,
    device_name: str,
    batch_size: int,
    steps: int,
    workers: int | None,
) -> dict:
    store, device = Store.open(store_path), pick_device(device_name)
    model_settings = ModelSettings(kind=kind, input=source)
    chosen = inputs_for_training(store, model_settings, Pick())
    workers = reader_workers(workers, device)
    with BatchReader(store, chosen.model_inputs, workers) as reader:
        rows = reader.lengths > 0
        batches = list(reader.batches(rows, batch_size))[: steps + 2]  # also starts the workers
        read = _reader_rate(reader, rows, batch_size)

    spec = chosen.spec(model_settings)
    torch.manual_seed(0)
    model = build_model(spec).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=TrainSettings().learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(batch) -> None:
        optimizer.zero_grad()
        logits = model(batch.inputs.to(device), batch.lengths.to(device))
        loss_fn(logits, batch.labels.to(device)).backward()
        optimizer.step()

    with PeakMemory(device) as memory:
        for batch in batches[:2]:
            step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for batch in batches[2:]:
            step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        trained = sum(len(b.rows) for b in batches[2:]) / (time.perf_counter() - started)
    return {"model": f"{kind} ({source})", "train": trained, "read": read, "peak_mb": memory.peak / 2**20,
            "params": sum(p.numel() for p in model.parameters()), "workers": workers}  # fmt: skip


def _reader_rate(reader: BatchReader, rows, batch_size: int, seconds: float = 2.0) -> float:
    """Samples/s of whole shuffled passes over every clip, for at least `seconds`."""
    samples, started, epoch = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        for batch in reader.batches(rows, batch_size, np.random.default_rng(epoch)):
            samples += len(batch.rows)
        epoch += 1
    return samples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, help="A store with features and tokens (default: build one).")
    parser.add_argument("--clips", type=int, default=256, help="Demo clips when building a store.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="Timed optimizer steps per model.")
    parser.add_argument("--loader-workers", type=int, help="Reader processes (default: train's default).")
    args = parser.parse_args()
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        store = args.store or build_demo_store(Path(scratch), args.clips)
        name = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads"
        )
        print(f"device: {name}; batch {args.batch_size}, {args.steps} timed steps per model\n")
        header = ("model", "params", "train/s", "read/s", "workers", "read/train", "peak MB")
        print(f"{header[0]:18} " + " ".join(f"{h:>10}" for h in header[1:]))
        for kind, source in MODELS:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
                job = fresh.submit(
                    measure,
                    store,
                    kind,
                    source,
                    args.device,
                    args.batch_size,
                    args.steps,
                    args.loader_workers,
                )
                r = job.result()
            ratio = r["read"] / r["train"]
            flag = "" if ratio >= 5 else "  <- reader too slow"
            figures = f"{r['params']:>10,} {r['train']:>10.1f} {r['read']:>10.1f} {r['workers']:>10}"
            print(f"{r['model']:18} {figures} {ratio:>9.1f}x {r['peak_mb']:>10.1f}{flag}")


if __name__ == "__main__":
    main()
