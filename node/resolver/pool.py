"""One way to run per-subject work in parallel, shared by the resolver and the dataset cache.

Subjects are independent and reading DICOM is CPU-bound (decoding, resampling), so a process
pool scales where threads would not. Results come back in input order, so what is written does
not depend on the number of workers. Progress is a callback: the libraries print nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int, int], None]


def parallel_map(
    fn: Callable[[T], R], items: Sequence[T], workers: int, progress: Progress | None = None
) -> list[R]:
    """``[fn(item) for item in items]``, in a pool of ``workers`` processes when > 1."""
    total = len(items)
    if progress:
        progress(0, total)
    results: list[R] = []
    if workers <= 1 or total <= 1:
        for item in items:
            results.append(fn(item))
            if progress:
                progress(len(results), total)
        return results
    with ProcessPoolExecutor(max_workers=min(workers, total)) as pool:
        for result in pool.map(fn, items):
            results.append(result)
            if progress:
                progress(len(results), total)
    return results
