"""The one timing loop of the benchmarks: the median wall time of repeated calls."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, *, before=None, warmup: bool = False) -> float:
    """Median seconds of `repeats` calls of `fn`; `before()` runs untimed ahead of each call."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
