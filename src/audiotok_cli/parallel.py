"""Per-shard work on every core: shards are independent units (each written whole by the process
that computes it), so they run in worker processes while the parent keeps the lock and the
bookkeeping. Workers are spawned (no fork of a process holding zarr's event loop thread) and each
uses one BLAS thread: numpy's default threads spin on the small mel matmul. Tasks whose work
releases the GIL (faiss, zarr's codecs) can run on threads instead: no start-up, one copy of their
inputs. The same tasks run on a Dask distributed cluster to scale past one machine."""

from __future__ import annotations

import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits

from audiotok_cli.errors import NetworkError, SettingsError, WorkerLostError

T = TypeVar("T")
DASK_CONNECT_SECONDS = 10
DASK_RETRIES = 2  # a task that failed with its worker runs again elsewhere
REPORT_SECONDS = 0.2  # how often the parent moves the bar while worker processes run


def available_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity (taskset, SLURM's cpuset), capped by a
    CPU quota (Docker's --cpus, Kubernetes' limits), which affinity does not show."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(root: Path) -> float | None:
    """CPUs a cgroup's quota allows (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), None if unlimited."""
    try:
        if (root / "cpu.max").exists():
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1") or float(period) <= 0:
        return None
    return float(quota) / float(period)


_reporting: dict[str, Any] = {"queue": None, "local": None}  # set per process by run_shards


def report(units: int = 1) -> None:
    """Called by a task as it finishes each unit of its shard (a clip): the parent's progress bar
    moves with it, from worker processes too (a no-op on Dask, whose bars move per shard)."""
    if _reporting["queue"] is not None:
        _reporting["queue"].put(units)
    elif _reporting["local"] is not None:
        _reporting["local"](units)


def run_shards(
    task: Callable[[int], T],
    shards: list[int],
    workers: int,
    dask: str | None = None,
    on_report: Callable[[int], None] | None = None,
    threads: bool = False,
) -> Iterator[tuple[int, T]]:
    """`(shard, task(shard))` for every shard, as each finishes: on `workers` local processes (or
    threads of this process, with `threads`), or on a Dask cluster (`dask`). In this process when
    one worker (or one shard) would do; `task` must otherwise be picklable (a module-level function
    or a partial). What tasks `report` goes to `on_report`, in this process."""
    if dask is not None:
        yield from _on_dask(task, shards, workers, dask)
        return
    workers = min(workers, len(shards))
    if workers > 1 and not threads:
        yield from _on_processes(task, shards, workers, on_report)
        return
    _reporting["local"] = on_report
    try:
        if workers > 1:
            yield from _on_threads(task, shards, workers)
        else:
            yield from ((shard, _on_one_thread(task, shard)) for shard in shards)
    finally:
        _reporting["local"] = None


def _on_one_thread(task: Callable[[int], T], shard: int) -> T:
    """A task in this process with one BLAS thread, as in a worker: numpy on several threads sums
    some values in another order, so a store made here would differ in the last bit from one made
    by workers (2 of 11 M float16 values of a 400-clip demo store did). The process's own thread
    count is back once the task returns."""
    with threadpool_limits(limits=1, user_api="blas"):
        return task(shard)


def _on_processes(
    task: Callable[[int], T], shards: list[int], workers: int, on_report: Callable[[int], None] | None
) -> Iterator[tuple[int, T]]:
    context = multiprocessing.get_context("spawn")
    reports = context.SimpleQueue()
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(reports,)
    ) as pool:
        futures = {pool.submit(task, shard): shard for shard in shards}
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=REPORT_SECONDS, return_when=FIRST_COMPLETED)
                _drain(reports, on_report)
                for future in finished:
                    yield futures[future], future.result()
            _drain(reports, on_report)  # a task reports before it returns: nothing is left behind
        except BrokenProcessPool:
            raise WorkerLostError(
                "a worker process died (killed, or out of memory: try fewer --workers); the shards it "
                "had not finished stay pending, the others are kept: run the same command again"
            ) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _on_threads(task: Callable[[int], T], shards: list[int], workers: int) -> Iterator[tuple[int, T]]:
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(task, shard): shard for shard in shards}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def read_ahead(read: Callable[[Any], T], items: Iterable[Any], workers: int) -> Iterator[T]:
    """`read(item)` for each item in order, `workers` reads at a time on threads (for reads that
    release the GIL, as zarr's codecs do): the consumer sees the same sequence for any count, and
    at most `workers` + 1 results wait in memory."""
    if workers <= 1:
        yield from map(read, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(read, item))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


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


def _drain(reports: Any, on_report: Callable[[int], None] | None) -> None:
    while not reports.empty():
        units = reports.get()
        if on_report is not None:
            on_report(units)


ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _start_worker(reports: Any) -> None:
    _reporting["queue"] = reports
    _one_blas_thread()


def _one_blas_thread() -> None:
    """One thread for every BLAS and OpenMP library: those loaded already (threadpoolctl), and those
    a task loads later (scipy's own OpenBLAS, imported lazily), which read these variables as they
    load: a worker that imported them after the limit summed on two threads and wrote a value 1 ulp
    off the in-process one (measured under pytest, whose workers import late)."""
    os.environ.update(dict.fromkeys(ONE_THREAD, "1"))
    threadpool_limits(limits=1)
