"""Running independent jobs (one per case) in worker processes or in this process."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

__all__ = ["map_unordered"]

J = TypeVar("J")
R = TypeVar("R")

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _one_thread_per_worker() -> None:
    """Pool initializer: torch single-threaded in the worker (BLAS/OpenMP are set by the environment)."""
    import torch

    torch.set_num_threads(1)


def map_unordered(fn: Callable[[J], R], jobs: Iterable[J], workers: int = 1) -> Iterator[R]:
    """Yield ``fn(job)`` for every job as it finishes; ``workers > 1`` uses a process pool.

    ``fn`` must be a picklable module-level function and should catch its own per-job errors,
    so one bad case never stops the others. Workers are fresh (spawned) processes started with
    one BLAS/OpenMP thread each, so N workers use N cores: forked workers inherit the parent's
    thread pools and, on 2 cores, ran 4× slower than one process.
    """
    jobs = list(jobs)
    if workers > 1 and len(jobs) > 1:
        saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        os.environ.update({k: "1" for k in _THREAD_VARS})
        try:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_one_thread_per_worker) as pool:
                for fut in as_completed([pool.submit(fn, j) for j in jobs]):
                    yield fut.result()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    else:
        for j in jobs:
            yield fn(j)
