"""Per-shard work on every core: shards are independent units (each written whole by the process
that computes it), so they run in worker processes while the parent keeps the lock and the
bookkeeping. Workers are spawned (no fork of a process holding zarr's event loop thread) and each
uses one BLAS thread: numpy's default threads spin on the small mel matmul."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def run_shards(task: Callable[[int], T], shards: list[int], workers: int) -> Iterator[tuple[int, T]]:
    """`(shard, task(shard))` for every shard, as each finishes. In this process when one worker
    (or one shard) would do; `task` must then be picklable (a module-level function or a partial)."""
    if min(workers, len(shards)) <= 1:
        for shard in shards:
            yield shard, task(shard)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(workers, len(shards)), mp_context=context, initializer=_one_blas_thread
    ) as pool:
        futures = {pool.submit(task, shard): shard for shard in shards}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _one_blas_thread() -> None:
    threadpool_limits(limits=1)
