"""Running independent jobs (one per case) in worker processes or in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

__all__ = ["map_unordered"]

J = TypeVar("J")
R = TypeVar("R")


def map_unordered(fn: Callable[[J], R], jobs: Iterable[J], workers: int = 1) -> Iterator[R]:
    """Yield ``fn(job)`` for every job as it finishes; ``workers > 1`` uses a process pool.

    ``fn`` must be a picklable module-level function and should catch its own per-job errors,
    so one bad case never stops the others.
    """
    jobs = list(jobs)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for fut in as_completed([pool.submit(fn, j) for j in jobs]):
                yield fut.result()
    else:
        for j in jobs:
            yield fn(j)
