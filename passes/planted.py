"""Hard buffer-placement instances with a planted perfect packing, to test the exact
planner on what it was not tuned on.

:func:`planted` packs rectangles into the capacity first and derives the lifetimes from
the packing, so a placement of height ``capacity`` is known (``Instance.planted``) and the
max-live bound equals the capacity (at time 0 the whole arena is in use): the optimum is
exactly the bound, as in MiniMalloc's "challenging" set, where the capacity is the bound.

The packing is made by a sweep over time. At time 0 the arena ``[0, capacity)`` is cut
into a few buffers; whenever buffers end, their bytes become free, free neighbours merge,
and each free segment is either cut into new buffers that start then (probability
``fill``) or left free until the next end, when it may have merged with the bytes beside
it. So the packing is not a guillotine cut of the time x offset rectangle, sizes are
multiples of ``quantum`` bytes (the last piece takes the rest), lifetimes are drawn
log-uniformly between 1 and ``max_life`` steps and the arena is not full at most times.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from dataclasses import dataclass

from graphc.errors import GraphError
from graphc.passes.intervals import Buffer


@dataclass(frozen=True)
class Instance:
    """A planted instance: ``buffers`` (no offsets, ids ``0..n-1`` in a random order), the
    ``capacity`` that is also their max-live bound and the optimum, the ``planted``
    placement that proves it (the same buffers with offsets), and the ``seed``."""

    buffers: tuple[Buffer, ...]
    capacity: int
    planted: tuple[Buffer, ...]
    seed: int


def planted(n: int, seed: int, capacity: int = 1 << 20, quantum: int = 512,
            fill: float = 0.5, piece: tuple[float, float] = (0.02, 0.2),
            max_life: int = 16, long_life: float = 0.1) -> Instance:
    """Draw an instance of ``n`` buffers with a perfect packing into ``capacity`` bytes.

    Deterministic in all its arguments. Raises :class:`GraphError` for ``n < 1``, a
    capacity below ``quantum`` or a ``fill`` outside ``(0, 1]``.
    """
    if n < 1:
        raise GraphError(f"a planted instance needs at least one buffer, not {n}")
    if quantum < 1 or capacity < quantum:
        raise GraphError(f"capacity {capacity} must be at least the quantum {quantum} >= 1")
    if not 0.0 < fill <= 1.0:
        raise GraphError(f"fill must be in (0, 1], not {fill}")
    rng = random.Random(seed)
    rects: list[tuple[int, int, int, int]] = []  # lower, upper, offset, size
    live: list[tuple[int, int, int, int]] = []  # heap of (end, offset, size, index)
    free: list[tuple[int, int]] = []  # sorted disjoint (offset, end) byte ranges

    def cut(t: int, lo: int, hi: int) -> None:
        """Cut the free bytes [lo, hi) into new buffers starting at time t."""
        units = (hi - lo) // quantum
        share = math.exp(rng.uniform(math.log(piece[0]), math.log(piece[1])))
        pieces = max(1, round((hi - lo) / (share * capacity)))
        pieces = min(pieces, max(units, 1), n - len(rects))
        points = sorted(rng.sample(range(1, units), pieces - 1)) if pieces > 1 else []
        edges = [lo, *(lo + p * quantum for p in points), hi]
        for x, y in itertools.pairwise(edges):
            life = max(1, int(math.exp(rng.uniform(0.0, math.log(max_life)))))
            if rng.random() < long_life:
                life = rng.randint(max_life, max_life * max(1, n // 20))
            heapq.heappush(live, (t + life, x, y - x, len(rects)))
            rects.append((t, t + life, x, y - x))

    cut(0, 0, capacity)
    t = 0
    while len(rects) < n:
        t = live[0][0] if live else t + 1
        while live and live[0][0] == t:
            _, x, size, _ = heapq.heappop(live)
            k = bisect.bisect(free, (x, x))
            lo, hi = x, x + size
            if k > 0 and free[k - 1][1] == lo:  # merge with the free bytes below
                k -= 1
                lo = free.pop(k)[0]
            if k < len(free) and free[k][0] == hi:  # and above
                hi = free.pop(k)[1]
            free.insert(k, (lo, hi))
        keep: list[tuple[int, int]] = []
        for lo, hi in free:
            if len(rects) < n and (rng.random() < fill or not live):
                cut(t, lo, hi)
            else:
                keep.append((lo, hi))
        free = keep
    end = t + 1  # the last buffer starts at t: nothing outlives the sweep by more than that
    rects = [(lo, min(hi, end), x, size) for lo, hi, x, size in rects]
    perm = list(range(len(rects)))
    rng.shuffle(perm)
    placed = tuple(Buffer(i, rects[j][0], rects[j][1], rects[j][3], rects[j][2])
                   for i, j in enumerate(perm))
    bare = tuple(Buffer(b.id, b.lower, b.upper, b.size) for b in placed)
    return Instance(bare, capacity, placed, seed)
