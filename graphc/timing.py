"""Timing helpers for the demo and the benchmarks: medians of calls measured in turn."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def interleaved_medians(fns: Sequence[Callable[[], Any]], repeats: int, warmup: int = 1,
                        sync: Callable[[Any], Any] | None = None) -> list[float]:
    """Median seconds of each function, timed in turn (``fns[0]``, ``fns[1]``, ...,
    ``repeats`` rounds) after ``warmup`` untimed rounds, so that drift in the machine's
    load hits every function alike. ``sync`` (e.g. ``jax.block_until_ready``) is applied
    to each result inside the timed region, so asynchronous work is counted."""
    def call(fn: Callable[[], Any]) -> None:
        out = fn()
        if sync is not None:
            sync(out)

    for _ in range(warmup):
        for fn in fns:
            call(fn)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            call(fn)
            acc.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]
