"""Running independent jobs (one per case) in worker processes or in this process."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

__all__ = ["map_unordered"]

J = TypeVar("J")
R = TypeVar("R")


def _one_thread_per_worker() -> None:
    """Pool initializer: one intra-op thread per worker process, so N workers use N cores, not N × cores."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def map_unordered(fn: Callable[[J], R], jobs: Iterable[J], workers: int = 1) -> Iterator[R]:
    """Yield ``fn(job)`` for every job as it finishes; ``workers > 1`` uses a process pool.

    ``fn`` must be a picklable module-level function and should catch its own per-job errors,
    so one bad case never stops the others. Worker processes run torch single-threaded.
    """
    jobs = list(jobs)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread_per_worker) as pool:
            for fut in as_completed([pool.submit(fn, j) for j in jobs]):
                yield fut.result()
    else:
        for j in jobs:
            yield fn(j)
