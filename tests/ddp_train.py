"""Run by torchrun in tests/test_distributed.py: one rank of a DDP `train` through the library (or,
for a run named `units-*`, of masked unit prediction), saving the rank's final weights to
`{out}/rank{RANK}.safetensors`, and how many DDP wrappers were still alive when the process group
went to `{out}/rank{RANK}.alive` (one left to free afterwards can hang the process: see
`distributed.ranks`); `die_in_epoch` makes every rank stop as a killed job would, before that
epoch trains."""

from __future__ import annotations

import faulthandler
import gc
import os
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel

import audiotok_cli.training.loop as loop
from audiotok_cli.settings import ModelSettings, TrainSettings, load_settings
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.units import pretrain_units


def main(data_dir: str, run_name: str, out: str, die_in_epoch: int) -> None:
    rank = os.environ["RANK"]
    faulthandler.dump_traceback_later(240, exit=True)  # a hang shows where, before the test's deadline
    real_epoch, real_epochs = loop._Fit._train_epoch, loop._Fit.epochs

    def train_epoch(self, epoch, monitor):
        if epoch == die_in_epoch:
            raise SystemExit(f"rank {rank} killed before epoch {epoch}")
        return real_epoch(self, epoch, monitor)

    def epochs(self, record, history):
        real_epochs(self, record, history)
        weights = {name: value.contiguous() for name, value in self.model.state_dict().items()}
        save_file(weights, str(Path(out) / f"rank{rank}.safetensors"))

    real_destroy = dist.destroy_process_group

    def destroy_process_group() -> None:
        alive = sum(isinstance(thing, DistributedDataParallel) for thing in gc.get_objects())
        (Path(out) / f"rank{rank}.alive").write_text(str(alive))
        real_destroy()

    loop._Fit._train_epoch, loop._Fit.epochs = train_epoch, epochs
    dist.destroy_process_group = destroy_process_group
    settings = load_settings({"data_dir": data_dir})
    if run_name.startswith("units"):
        model = ModelSettings(kind="bert", hidden_size=16, num_layers=1, num_heads=2)
        train = TrainSettings(epochs=2, batch_size=4, run_name=run_name)
        pretrain_units(RunRequest(settings.resolved_paths, model, train, seed=0), targets="logmel-k16")
        return
    model = ModelSettings(kind="simple", embed_dim=8, dropout=0.1)
    train = TrainSettings(
        epochs=3, batch_size=4, accumulate=64, run_name=run_name, schedule="cosine", mixup=0.3
    )  # one partial accumulation an epoch: DDP must sync its last micro-batch (no_sync before it)
    loop.train(RunRequest(settings.resolved_paths, model, train, seed=0))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
