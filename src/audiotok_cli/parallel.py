"""Per-shard work on every core: shards are independent units (each written whole by the process
that computes it), so they run in worker processes while the parent keeps the lock and the
bookkeeping. Workers are spawned (no fork of a process holding zarr's event loop thread) and each
uses one BLAS thread: numpy's default threads spin on the small mel matmul. The same tasks run on a
Dask distributed cluster to scale past one machine."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from types import ModuleType
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits

from audiotok_cli.errors import NetworkError, SettingsError, WorkerLostError

T = TypeVar("T")
DASK_CONNECT_SECONDS = 10
DASK_RETRIES = 2  # a task that failed with its worker runs again elsewhere


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def run_shards(
    task: Callable[[int], T], shards: list[int], workers: int, dask: str | None = None
) -> Iterator[tuple[int, T]]:
    """`(shard, task(shard))` for every shard, as each finishes: on `workers` local processes, or
    on a Dask cluster (`dask`). In this process when one worker (or one shard) would do; `task`
    must otherwise be picklable (a module-level function or a partial)."""
    if dask is not None:
        yield from _on_dask(task, shards, workers, dask)
        return
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
        except BrokenProcessPool:
            raise WorkerLostError(
                "a worker process died (killed, or out of memory: try fewer --workers); the shards it "
                "had not finished stay pending, the others are kept: run the same command again"
            ) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def check_dask(address: str | None) -> None:
    """Refuse a `--dask` that cannot work before a stage touches the store: the package is
    missing, or no scheduler answers at `address`."""
    if address is None:
        return
    _distributed()
    if address != "local":
        _client(address).close()


def _distributed() -> ModuleType:
    try:
        import distributed
    except ImportError:
        raise SettingsError(
            "--dask needs dask's distributed package; pip install 'audiotok-cli[dask]'"
        ) from None
    return distributed


def _client(target: object) -> Any:  # a distributed.Client
    try:
        return _distributed().Client(target, timeout=DASK_CONNECT_SECONDS)
    except (OSError, TimeoutError) as exc:
        raise NetworkError(
            f"cannot reach the Dask scheduler at {target} ({exc}); start one (`dask scheduler`) "
            "or use --dask local"
        ) from None


def _on_dask(
    task: Callable[[int], T], shards: list[int], workers: int, address: str
) -> Iterator[tuple[int, T]]:
    """The same tasks on a Dask cluster: `address` of a running scheduler (every worker must see
    the store's path), or "local" for a LocalCluster of `workers` processes on 127.0.0.1. A task
    lost with its worker runs again elsewhere; shards are written whole, so none is left half-done."""
    distributed = _distributed()
    cluster = (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        if address == "local"
        else None
    )
    try:
        with _client(cluster or address) as client:
            client.run(_one_blas_thread)
            futures = client.map(task, shards, pure=False, retries=DASK_RETRIES)
            shard_of = {future.key: shard for future, shard in zip(futures, shards, strict=True)}
            for future in distributed.as_completed(futures):
                yield shard_of[future.key], future.result()
    finally:
        if cluster is not None:
            cluster.close()


def _one_blas_thread() -> None:
    threadpool_limits(limits=1)
