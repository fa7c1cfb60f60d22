"""Splitting memory-bound NumPy work over the CPUs with threads.

NumPy's BLAS already uses every CPU for matrix products, but its elementwise ufuncs run on one
thread. They release the GIL over large arrays, so cutting such work into row ranges and running
the ranges on a small thread pool uses the other CPUs too. Every range does exactly the same
arithmetic as a single pass would, so results do not depend on the number of threads.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

_POOL: ThreadPoolExecutor | None = None
_MAX_THREADS = 8


def cpu_threads() -> int:
    """How many ranges to cut work into: the CPUs this process may run on (at most 8), or one
    when the machine is already oversubscribed (a 1-minute load average above the CPU count),
    where extra threads only queue behind other processes and slow every step down."""
    global _checked_at, _cached
    now = time.monotonic()
    if now - _checked_at > 1.0:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
        try:
            busy = os.getloadavg()[0] > n + 0.5
        except OSError:
            busy = False
        _cached = 1 if busy else max(1, min(n, _MAX_THREADS))
        _checked_at = now
    return _cached


_checked_at = -1e9
_cached = 1


def for_ranges(n: int, fn: Callable[[int, int], None], min_size: int = 1) -> None:
    """Call `fn(lo, hi)` over contiguous ranges covering [0, n), in parallel when worthwhile.

    `min_size` is the smallest range worth a thread (below it the hand-off costs more than it
    saves). The calling thread takes the first range; exceptions from any range propagate.
    """
    global _POOL
    parts = min(cpu_threads(), n // max(1, min_size))
    if parts <= 1:
        fn(0, n)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_MAX_THREADS - 1, thread_name_prefix="lm-parallel")
    bounds = [n * i // parts for i in range(parts + 1)]
    futures = [_POOL.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    try:
        fn(bounds[0], bounds[1])
    except BaseException:
        for f in futures:
            f.exception()  # wait: the ranges write into arrays the caller owns
        raise
    for f in futures:
        f.result()


def for_blocks(n: int, block: int, fn: Callable[[int, int], None], min_size: int = 1) -> None:
    """`for_ranges`, with each range walked in blocks of `block` rows so that a chain of passes
    over one block stays in cache: `fn(lo, hi)` is called once per block."""

    def walk(lo: int, hi: int) -> None:
        for s in range(lo, hi, block):
            fn(s, min(s + block, hi))

    for_ranges(n, walk, min_size)
