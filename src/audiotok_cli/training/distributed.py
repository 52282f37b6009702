"""torchrun / DistributedDataParallel, for `train` and `pretrain`:

    torchrun --nproc-per-node 4 -m audiotok_cli train --model bert ...

Under torchrun (WORLD_SIZE > 1) every rank reads its own part of each epoch's shard plan, the
model is wrapped in DDP (NCCL on GPUs, gloo on CPUs and for CPU values), validation runs once on
rank 0 over every val clip (no padded duplicates) and its scores are broadcast, and only rank 0
writes the run folder (weights without DDP's `module.` prefix) and prints. Multi-node runs use torchrun's own
rendezvous flags (`--nnodes`, `--node-rank`, `--rdzv-endpoint`); the runs folder must be on a
filesystem every node sees."""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from audiotok_cli.progress import show_bars


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # ranks on this machine

    @property
    def main(self) -> bool:
        """Whether this process writes the run and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


@contextmanager
def ranks(device: torch.device) -> Iterator[Ranks]:
    """This process's place under torchrun (one process alone otherwise); the process group
    lives for the block. Ranks other than 0 show no progress bars.

    Nothing that holds the group (a DDP wrapper's reducer) may outlive the block: freed after
    `destroy_process_group`, it frees the group itself while holding the GIL, and gloo's worker
    thread, freeing the last collective's tensors, waits for that GIL: both hang (a CI run did,
    at the end of a finished run). Freed by Python, as `destroy_process_group` leaves it, the
    group lets the GIL go first. So the caller keeps such objects in a frame that returns inside
    the block, and an error's traceback lets go of them before the group goes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Ranks()
        return
    here = Ranks(
        int(os.environ["RANK"]),
        world,
        int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )
    # gradients go over NCCL; the epoch's loss sums and val scores are CPU values, which NCCL
    # alone cannot reduce: gloo carries those
    dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    if not here.main:
        show_bars(False)
    try:
        yield here
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)  # the finished frames' locals: the DDP wrapper
        raise
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, here: Ranks) -> torch.device:
    """Each rank's own GPU (its local rank) when training on CUDA."""
    if here.distributed and device.type == "cuda":
        torch.cuda.set_device(here.local_rank)
        return torch.device("cuda", here.local_rank)
    return device


def wrap(model: torch.nn.Module, device: torch.device, here: Ranks) -> torch.nn.Module:
    """The model as the training step calls it: DDP-wrapped under torchrun."""
    if not here.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def mean_over_ranks(total: float, count: int, here: Ranks) -> float:
    """Sum of `total` over every rank divided by the summed `count`."""
    if not here.distributed:
        return total / max(count, 1)
    both = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(both)
    return float(both[0] / max(both[1], 1))


def from_main(values: dict[str, float] | None, here: Ranks) -> dict[str, float]:
    """Rank 0's `values` on every rank (each rank then decides the same: best epoch, stopping)."""
    if not here.distributed:
        return values or {}
    box = [values]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(here: Ranks) -> None:
    if here.distributed:
        dist.barrier()
