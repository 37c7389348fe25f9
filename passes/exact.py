"""Exact buffer placement: the lowest arena for buffers with fixed lifetimes, certified.

:func:`solve` places :class:`~graphc.passes.intervals.Buffer` s (``size`` bytes live on
``[lower, upper)``) at offsets so that buffers live at the same time never overlap, either
within a given capacity or as low as it can prove. It always returns a valid placement
(greedy by size when nothing better is found in time) with a status:

* ``"optimal"``: the height equals ``lower_bound``. The lower bound is the max-live bound
  (checkable by anyone with :func:`~graphc.passes.intervals.max_live`), raised only when
  the search exhausted every placement below it;
* ``"fits"``: a capacity was given and the placement is within it, not proven lowest;
* ``"best-found"``: the best placement found in time; ``gap`` says how far from the bound.
  With a capacity, this status means no placement within it was found (``fits`` is False);
  ``infeasible`` tells whether the search proved that none exists.

The search (after MiniMalloc, M. D. Moffitt, ASPLOS 2023, learnt from the paper's
description) works over *canonical* placements: every buffer rests on 0 or on top of a
buffer live with it (any placement compacts to one, no higher). Time is cut into sections
at the buffers' endpoints; each section has a *floor*, below which no unplaced buffer live
there may go. A node takes the lowest floor (of the sections at it, the one with the
fewest choices, then the least slack) and branches on which unplaced buffer starts right
there (one live there whose sections all sit at that floor), or on none doing so, which
raises that section to the lowest offset a buffer live there could still take (its
highest floor, or the top of an unplaced buffer beside it). Branches are disjoint, so each
placement is met at most once. Pruning:

* spatial inference: a section's floor is raised to the lowest of the highest floors
  under its unplaced buffers (nothing can start lower), to a fixpoint; then in every
  section the floor plus the sizes of the unplaced buffers live there must fit under the
  capacity;
* dominance: identical buffers (same lifetime and size) go in a fixed order; every failed
  state (unplaced buffers and floors of a component) is remembered and never searched
  again, which covers siblings and orders that leave the same floors;
* decomposition: a buffer live over the whole of its group goes to its bottom and the rest
  splits where no buffer crosses a time, before the search; during it, unplaced buffers
  that fall into independent section ranges are solved range by range, and a range that
  fails fails the node without trying other placements of the ranges beside it.

Branching order matters a great deal on hard instances, so a call runs 16 orders (by
size, lifetime or peak live total; least slack first or not; buffers that fill the lowest
segment first or not) in turn with node budgets that double every round, keeping the
failed states across them: any run that ends within its budget is a proof.

``method="cp-sat"`` solves the same problem with OR-tools' CP-SAT (a no-overlap-2D model)
when ``ortools`` is installed; the search needs only numpy.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
from graphc.passes.intervals import Buffer, height, max_live

from graphc.errors import GraphError

Status = Literal["optimal", "fits", "best-found"]
Method = Literal["search", "cp-sat"]
_Outcome = Literal["found", "infeasible", "timeout"]

_TABLE_LIMIT = 1_500_000
"""Failed states remembered at most (about 100 bytes each); beyond, the table is reset."""


@dataclass(frozen=True)
class Solution:
    """A valid placement and what is known about it.

    ``buffers`` are the input buffers in input order with ``offset`` set; ``height`` is
    the highest ``offset + size``; ``lower_bound`` a proven lower bound on any placement's
    height (never above ``height``); ``seconds`` the wall time of :func:`solve`;
    ``nodes`` the search nodes visited; ``infeasible`` is True when a capacity was given
    and the search proved no placement fits in it.
    """

    buffers: tuple[Buffer, ...]
    height: int
    lower_bound: int
    status: Status
    seconds: float
    capacity: int | None = None
    nodes: int = 0
    infeasible: bool = False
    method: Method = "search"

    @property
    def gap(self) -> float:
        """``height / lower_bound - 1`` (0.0 when the bound is 0)."""
        return self.height / self.lower_bound - 1.0 if self.lower_bound else 0.0

    @property
    def fits(self) -> bool:
        """Whether the placement is within the capacity (True when none was given)."""
        return self.capacity is None or self.height <= self.capacity


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


def greedy_by_size(buffers: Sequence[Buffer], alignment: int = 1) -> list[Buffer]:
    """Place buffers largest first (then longest-lived), each at the lowest offset (a
    multiple of ``alignment``) where it overlaps no placed buffer live at the same time.

    Returns the buffers in input order with offsets; always valid, not optimal.
    """
    n = len(buffers)
    order = sorted(range(n), key=lambda i: (-buffers[i].size, buffers[i].lower
                                            - buffers[i].upper, buffers[i].lower, i))
    lows = np.zeros(n, dtype=np.int64)
    ups = np.zeros(n, dtype=np.int64)
    offs = np.zeros(n, dtype=np.int64)
    tops = np.zeros(n, dtype=np.int64)
    offsets = [0] * n
    k = 0
    for i in order:
        b = buffers[i]
        if b.size == 0:
            continue
        near = np.flatnonzero((lows[:k] < b.upper) & (ups[:k] > b.lower))
        at = 0
        if len(near):
            by_offset = near[np.argsort(offs[near], kind="stable")]
            start = offs[by_offset]
            # Lowest candidate before the j-th busy range: above all busy ranges before it.
            reach = np.maximum.accumulate(tops[by_offset])
            cand = np.concatenate(([0], -(-reach // alignment) * alignment))
            ok = np.flatnonzero(cand[:-1] + b.size <= start)
            at = int(cand[ok[0]]) if len(ok) else int(cand[-1])
        offsets[i] = at
        lows[k], ups[k], offs[k], tops[k] = b.lower, b.upper, at, at + b.size
        k += 1
    return [replace(b, offset=o) for b, o in zip(buffers, offsets, strict=True)]


class _Stop(Exception):
    """The deadline (or a run's node budget) passed during a search."""


_STRATEGIES: tuple[tuple[str, bool, bool], ...] = tuple(
    (kind, slack_first, fill_first)
    for slack_first in (False, True)
    for kind in ("size", "life", "press", "pressl")
    for fill_first in (False, True))
"""Branching orders tried in turn, with restarts: a static order of the buffers that fit at
the lowest point (by size, lifetime, or the peak total live over their lifetime), whether
the least slack over a buffer's lifetime comes first, and whether buffers that fill the
lowest segment to its ends (and whose tops meet a neighbouring floor) come first."""


def _static_rank(kind: str, lower: Sequence[int], upper: Sequence[int],
                 size: Sequence[int], press: Sequence[int]) -> list[int]:
    n = len(size)
    life = [upper[i] - lower[i] for i in range(n)]
    keys = {
        "size": lambda i: (-size[i], -life[i], lower[i], i),
        "life": lambda i: (-life[i], -size[i], lower[i], i),
        "press": lambda i: (-press[i], -size[i], -life[i], i),
        "pressl": lambda i: (-press[i], -life[i], -size[i], i),
    }
    return sorted(range(n), key=keys[kind])


class _Frame:
    """A search node: ``choices`` (u >= 0 places buffer u at offset ``m``; -1 raises section
    ``s`` from ``m`` to ``h``), the next one to try, the failed-state ``key``, and the
    floors of sections ``[clo, chi)`` before and after the node's inference."""

    __slots__ = ("before", "chi", "choices", "clo", "h", "key", "m", "pos", "raised", "s")

    def __init__(self, key: bytes, choices: list[int], m: int, s: int, h: int, clo: int,
                 chi: int, before: npt.NDArray[np.int64], raised: npt.NDArray[np.int64]
                 ) -> None:
        self.key, self.choices, self.pos, self.m, self.s, self.h = key, choices, 0, m, s, h
        self.clo, self.chi, self.before, self.raised = clo, chi, before, raised


class _Search:
    """The canonical search over one group of buffers (indices local to the group).

    ``size`` is the size used for packing (padded to ``alignment``), ``real`` the size that
    must end within the capacity. :meth:`run` finds offsets (multiples of ``alignment``)
    with every ``offset + real <= cap`` and the padded extents of buffers live together
    disjoint, or proves there are none.
    """

    def __init__(self, lower: Sequence[int], upper: Sequence[int], size: Sequence[int],
                 real: Sequence[int], alignment: int = 1) -> None:
        n = self.n = len(size)
        self.alignment = alignment
        times = sorted(set(lower) | set(upper))
        where = {t: k for k, t in enumerate(times)}
        nsec = self.nsec = max(len(times) - 1, 0)
        a = self.a = [where[t] for t in lower]
        b = self.b = [where[t] for t in upper]
        self.size = list(size)
        self.real = list(real)
        self.check_real = any(r != s for r, s in zip(real, size, strict=True))
        self.size_np = np.asarray(size, dtype=np.int64)
        total = np.zeros(nsec, dtype=np.int64)
        cross = np.zeros(nsec, dtype=np.int64)
        for i in range(n):
            total[a[i]:b[i]] += size[i]
            cross[a[i]:b[i] - 1] += 1
        self.total_live, self.total_cross = total, cross
        press = [int(total[a[i]:b[i]].max()) for i in range(n)]
        a_np = np.asarray(a, dtype=np.int64)
        b_np = np.asarray(b, dtype=np.int64)
        # Per strategy, per section: the buffers live there in the strategy's static order.
        by_kind: dict[str, list[npt.NDArray[np.int64]]] = {}
        for kind, _, _ in _STRATEGIES:
            if kind not in by_kind:
                live: list[list[int]] = [[] for _ in range(nsec)]
                for i in _static_rank(kind, lower, upper, size, press):
                    for s in range(a[i], b[i]):
                        live[s].append(i)
                by_kind[kind] = [np.asarray(v, dtype=np.int64) for v in live]
        self.orders = [by_kind[kind] for kind, _, _ in _STRATEGIES]
        # Identical buffers are placed in index order: prev[i] is the previous identical one
        # (n, an always-placed sentinel, when there is none).
        prev = [n] * n
        last: dict[tuple[int, int, int, int], int] = {}
        for i in range(n):
            k = (lower[i], upper[i], size[i], real[i])
            if k in last:
                prev[i] = last[k]
            last[k] = i
        self.prev = np.asarray(prev, dtype=np.int64)
        # Buffers by first section, so that the buffers of a section range are a slice.
        by_a = sorted(range(n), key=lambda i: (a[i], i))
        self.pos_a = [0] * n
        for p, i in enumerate(by_a):
            self.pos_a[i] = p
        self.pos_a_np = np.asarray(self.pos_a, dtype=np.int64)
        starts = sorted(a)
        self.first_a = [int(np.searchsorted(starts, s)) for s in range(nsec + 1)]
        self.idx_a = np.asarray([x for i in by_a for x in (a[i], b[i])], dtype=np.int64)
        self.a_by_a = a_np[by_a]
        self.b_by_a = b_np[by_a]
        self.size_by_a = self.size_np[by_a]
        self.live_mat = np.zeros((nsec, n), dtype=bool)
        for p, i in enumerate(by_a):
            self.live_mat[a[i]:b[i], p] = True
        self.nodes = 0
        self.budget = 0
        self.deadline = 0.0
        self.cap = 0
        self.cap_pad = 0
        self.failed: set[bytes] = set()
        self.floor = np.zeros(nsec + 1, dtype=np.int64)
        self.rem = np.zeros(nsec, dtype=np.int64)
        self.cross = np.zeros(nsec, dtype=np.int64)
        self.unplaced = np.ones(n + 1, dtype=bool)
        self.un_a = np.ones(n, dtype=bool)
        self.offsets = [0] * n
        self.strategy = 0

    def run(self, cap: int, deadline: float, first_budget: int = 256
            ) -> tuple[_Outcome, list[int] | None]:
        """Search for offsets within ``cap``: ("found", offsets), ("infeasible", None)
        when no placement exists, or ("timeout", None) when ``deadline`` (a
        ``time.monotonic()`` value) passed first.

        Runs the strategies in turn with a node budget that doubles every round; failed
        states are kept across runs (a state is recorded only when its whole subtree was
        searched, so the record holds whatever the order), and any run that ends without
        hitting its budget is a proof.
        """
        n = self.n
        if n == 0:
            return "found", []
        self.cap = cap
        self.cap_pad = _round_up(cap, self.alignment)
        if int(self.total_live.max()) > self.cap_pad or max(self.real) > cap:
            return "infeasible", None
        self.deadline = deadline
        self.failed = set()
        budget = first_budget
        while True:
            for k in range(len(_STRATEGIES)):
                self.strategy = k
                self.budget = self.nodes + budget
                self.floor[:] = 0
                self.rem[:] = self.total_live
                self.cross[:] = self.total_cross
                self.unplaced[:n] = True
                self.unplaced[n] = False
                self.un_a[:] = True
                try:
                    ok = self._solve_range(0, self.nsec)
                except _Stop:
                    if time.monotonic() > deadline:
                        return "timeout", None
                    continue
                return ("found", list(self.offsets)) if ok else ("infeasible", None)
            budget *= 2

    def _components(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The independent section ranges of the unplaced buffers within ``[lo, hi)``:
        maximal runs of sections with unplaced buffers, joined where one crosses."""
        act = self.rem[lo:hi] > 0
        conn = self.cross[lo:hi - 1] > 0
        starts = act.copy()
        starts[1:] &= ~conn
        ends = act.copy()
        ends[:-1] &= ~conn
        st = np.flatnonzero(starts)
        en = np.flatnonzero(ends)
        return [(lo + int(x), lo + int(y) + 1) for x, y in zip(st, en, strict=True)]

    def _solve_range(self, lo: int, hi: int) -> bool:
        """Place every unplaced buffer within sections ``[lo, hi)`` (one component on entry)
        above the floors. True: placed, state advanced. False: impossible, state as on
        entry. Raises :class:`_Stop` past the deadline or the node budget."""
        floor, rem, cross = self.floor, self.rem, self.cross
        unplaced, un_a = self.unplaced, self.un_a
        a, b, size, pos_a = self.a, self.b, self.size, self.pos_a
        cap_pad, failed, nsec = self.cap_pad, self.failed, self.nsec
        big = np.int64(np.iinfo(np.int64).max // 4)
        work = np.zeros(nsec + 1, dtype=np.int64)
        frames: list[_Frame] = []
        descend = True
        while True:
            if descend:
                descend = False
                self.nodes += 1
                if self.nodes >= self.budget or time.monotonic() > self.deadline:
                    raise _Stop
                comps = self._components(lo, hi)
                if not comps:
                    return True
                if len(comps) > 1:
                    # Independent parts: all must be placed; a failure of one is final.
                    snap = (floor[lo:hi].copy(), rem[lo:hi].copy(), cross[lo:hi].copy(),
                            unplaced.copy(), un_a.copy())
                    slack = [int((cap_pad - floor[x:y] - rem[x:y]).min()) for x, y in comps]
                    order = sorted(range(len(comps)), key=lambda k: slack[k])
                    if all(self._solve_range(*comps[k]) for k in order):
                        return True
                    floor[lo:hi], rem[lo:hi], cross[lo:hi] = snap[0], snap[1], snap[2]
                    unplaced[:], un_a[:] = snap[3], snap[4]
                else:
                    frame = self._expand(comps[0], work, big)
                    if frame is not None:
                        frames.append(frame)
            if not frames:
                return False
            fr = frames[-1]
            choices, pos, m = fr.choices, fr.pos, fr.m
            if pos > 0:  # undo the previous choice
                u = choices[pos - 1]
                if u >= 0:
                    rem[a[u]:b[u]] += size[u]
                    cross[a[u]:b[u] - 1] += 1
                    unplaced[u] = True
                    un_a[pos_a[u]] = True
                floor[fr.clo:fr.chi] = fr.before
            if pos < len(choices):
                u = choices[pos]
                fr.pos = pos + 1
                floor[fr.clo:fr.chi] = fr.raised
                if u >= 0:
                    floor[a[u]:b[u]] = m + size[u]
                    rem[a[u]:b[u]] -= size[u]
                    cross[a[u]:b[u] - 1] -= 1
                    unplaced[u] = False
                    un_a[pos_a[u]] = False
                    self.offsets[u] = m
                else:
                    floor[fr.s] = fr.h
                descend = True
            else:
                if len(failed) >= _TABLE_LIMIT:
                    failed.clear()
                failed.add(fr.key)
                frames.pop()

    def _filling(self, wl: npt.NDArray[np.int64], lowest: list[int], k: int, m: int,
                 clo: int) -> Callable[[int], tuple[int, int]]:
        """A sort key preferring buffers that reach the ends of the lowest segment (the run
        of sections at floor ``m`` around section ``k``, relative to ``clo``) and whose
        tops meet the floor beyond such an end."""
        at = lowest.index(k)
        lo_k = hi_k = at
        while lo_k > 0 and lowest[lo_k - 1] == lowest[lo_k] - 1:
            lo_k -= 1
        while hi_k + 1 < len(lowest) and lowest[hi_k + 1] == lowest[hi_k] + 1:
            hi_k += 1
        first, end = lowest[lo_k], lowest[hi_k] + 1
        left = int(wl[first - 1]) if first > 0 else -1
        right = int(wl[end]) if end < len(wl) else -1
        a, b, size = self.a, self.b, self.size

        def key(u: int) -> tuple[int, int]:
            at_left, at_right = a[u] - clo == first, b[u] - clo == end
            top = m + size[u]
            return (-(at_left + at_right),
                    -((at_left and top == left) + (at_right and top == right)))
        return key

    def _expand(self, comp: tuple[int, int], work: npt.NDArray[np.int64],
                big: np.int64) -> _Frame | None:
        """The frame of the node whose unplaced buffers are the component ``comp``, or
        None when inference or the failed-state table prunes it."""
        clo, chi = comp
        floor, rem, unplaced = self.floor, self.rem, self.unplaced
        a, b, real = self.a, self.b, self.real
        p0, p1 = self.first_a[clo], self.first_a[chi]
        cap_pad = self.cap_pad
        orig = floor[clo:chi].copy()
        work[:] = floor
        wl = work[clo:chi]
        idx = self.idx_a[2 * p0:2 * p1]
        live_m = self.live_mat[clo:chi, p0:p1]
        un_c = self.un_a[p0:p1]
        # Unallocated floors: no unplaced buffer can start in a section below the lowest
        # offset any buffer live there may take (the highest floor under it); to a fixpoint.
        while True:
            lb = np.where(un_c, np.maximum.reduceat(work, idx)[::2], big)
            lbmin = np.where(live_m, lb, big).min(axis=1)
            if (lbmin <= wl).all():
                break
            np.maximum(wl, lbmin, out=wl)
        # Spatial inference: what is still to be placed in a section fits above its floor.
        slack = cap_pad - wl - rem[clo:chi]
        if (slack < 0).any():
            return None
        key = hashlib.blake2b(
            clo.to_bytes(4, "little") + chi.to_bytes(4, "little") + wl.tobytes()
            + np.packbits(un_c).tobytes(), digest_size=16).digest()
        if key in self.failed:
            return None
        m = int(wl.min())
        lowest = np.flatnonzero(wl == m)
        size_c = self.size_by_a[p0:p1]
        if len(lowest) > 1:
            # The lowest section with the fewest choices, then the least slack.
            count = live_m[lowest][:, un_c & (lb == m)].sum(axis=1)
            count += slack[lowest] >= int(size_c[un_c].min())
            s = clo + int(lowest[int(np.lexsort((slack[lowest], count))[0])])
        else:
            s = clo + int(lowest[0])
        cands = self.orders[self.strategy][s]
        cu = cands[unplaced[cands]]
        pu = self.pos_a_np[cu] - p0
        flat = lb[pu] == m
        fit = cu[flat]
        choices: list[int] = fit[~unplaced[self.prev[fit]]].tolist()
        if self.check_real:
            choices = [u for u in choices if m + real[u] <= self.cap]
        _, slack_first, fill_first = _STRATEGIES[self.strategy]
        if slack_first and len(choices) > 1:
            choices.sort(key=lambda u: int(slack[a[u] - clo:b[u] - clo].min()))
        if fill_first and len(choices) > 1:
            choices.sort(key=self._filling(wl, lowest.tolist(), s - clo, m, clo))
        # If no buffer starts at m in s, the lowest one there rests on its floors or on an
        # unplaced buffer that overlaps it but is not live in s: raise s to that.
        h = int(big)
        if not flat.all():
            h = int(lb[pu[~flat]].min())
        if len(fit):
            lo_t = min(a[u] for u in fit.tolist())
            hi_t = max(b[u] for u in fit.tolist())
            under = (un_c & ~self.live_mat[s, p0:p1] & (self.a_by_a[p0:p1] < hi_t)
                     & (self.b_by_a[p0:p1] > lo_t))
            if under.any():
                h = min(h, int((np.maximum(lb[under], m) + size_c[under]).min()))
        if h + int(rem[s]) <= cap_pad:
            choices.append(-1)
        return _Frame(key, choices, m, s, h, clo, chi, orig, wl.copy())


@dataclass
class _Group:
    """Buffers (input indices) searched together above a stack of ``base`` bytes."""

    base: int
    members: list[int]
    search: _Search
    best: list[int]  # absolute offsets of the members in the best placement known
    best_height: int  # highest offset + real size of that placement (base when empty)
    proven: int  # no placement of the group has a height below this


def _decompose(lower: Sequence[int], upper: Sequence[int], size: Sequence[int],
               movable: Sequence[bool], idx: list[int]
               ) -> tuple[dict[int, int], list[tuple[int, list[int]]]]:
    """Fix every movable buffer live over the whole time span of its group at the bottom
    of the group, and split the rest where no buffer crosses a time, recursively.

    Returns the fixed offsets and the (base, members) groups left to search. Sound: any
    placement can be rearranged so without growing (a buffer live throughout moves to the
    bottom and everything that was below it moves up by its size; ``movable`` says that
    size keeps the alignment and the top), and groups that share no time interact only
    through their common base.
    """
    fixed: dict[int, int] = {}
    groups: list[tuple[int, list[int]]] = []
    todo: list[tuple[int, list[int], bool]] = [(0, idx, True)]
    while todo:
        base, members, first = todo.pop()
        if not members:
            continue
        tmin = min(lower[i] for i in members)
        tmax = max(upper[i] for i in members)
        span = sorted((i for i in members
                       if lower[i] == tmin and upper[i] == tmax and movable[i]),
                      key=lambda i: (-size[i], i))
        for i in span:
            fixed[i] = base
            base += size[i]
        spanning = set(span)
        rest = sorted((i for i in members if i not in spanning),
                      key=lambda i: (lower[i], upper[i], i))
        parts: list[list[int]] = []
        end = tmin
        for i in rest:
            if not parts or lower[i] >= end:
                parts.append([])
                end = upper[i]
            parts[-1].append(i)
            end = max(end, upper[i])
        if len(parts) == 1 and not span and not first:
            groups.append((base, parts[0]))
            continue
        todo.extend((base, p, False) for p in parts)
    return fixed, groups


_MAX_CELLS = 20_000_000
"""The search is not tried on a group with more buffers x sections than this, or ..."""
_MAX_LIVE_CELLS = 2_000_000
"""... more (buffer, section where it is live) pairs than this (memory and set-up time)."""


def _small_enough(lower: Sequence[int], upper: Sequence[int]) -> bool:
    times = sorted(set(lower) | set(upper))
    if len(lower) * len(times) > _MAX_CELLS:
        return False
    starts = np.searchsorted(times, lower)
    ends = np.searchsorted(times, upper)
    return int((ends - starts).sum()) <= _MAX_LIVE_CELLS


class _Planner:
    """Greedy, decomposition and the groups' searches for one call of :func:`solve`."""

    def __init__(self, buffers: Sequence[Buffer], alignment: int) -> None:
        self.buffers = buffers
        self.alignment = alignment
        lower = [b.lower for b in buffers]
        upper = [b.upper for b in buffers]
        real = [b.size for b in buffers]
        pad = [_round_up(s, alignment) for s in real]
        self.real = real
        nonzero = [i for i, s in enumerate(real) if s > 0]
        movable = [p == r for p, r in zip(pad, real, strict=True)]
        self.fixed, parts = _decompose(lower, upper, pad, movable, nonzero)
        self.groups: list[_Group] = []
        self.searchable = True
        for base, members in parts:
            if not _small_enough([lower[i] for i in members], [upper[i] for i in members]):
                self.searchable = False
                return
            search = _Search([lower[i] for i in members], [upper[i] for i in members],
                             [pad[i] for i in members], [real[i] for i in members],
                             alignment)
            self.groups.append(_Group(base, members, search, [], 0, 0))
        self.fixed_top = max((self.fixed[i] + real[i] for i in self.fixed), default=0)
        # Heights of compact placements are sums of sizes (alignment 1): step by their gcd.
        self.step = 1
        if alignment == 1 and nonzero:
            self.step = math.gcd(*(real[i] for i in nonzero))

    @property
    def nodes(self) -> int:
        return sum(g.search.nodes for g in self.groups)

    def probe(self, target: int, deadline: float) -> _Outcome:
        """Look for a placement of height at most ``target``; on "found" every group's
        ``best`` is within it."""
        if self.fixed_top > target:
            return "infeasible"
        order = sorted(self.groups, key=lambda g: g.best_height - g.proven, reverse=True)
        for g in order:
            if g.best and g.best_height <= target:
                continue
            if g.proven > target:
                return "infeasible"
            outcome, offsets = g.search.run(target - g.base, deadline)
            if outcome == "timeout":
                return "timeout"
            if outcome == "infeasible" or offsets is None:
                g.proven = max(g.proven, _round_up(target + 1, self.step))
                return "infeasible"
            g.best = [g.base + o for o in offsets]
            g.best_height = max((o + self.real[i] for o, i in zip(g.best, g.members,
                                                                  strict=True)),
                                default=g.base)
        return "found"

    def placement(self) -> list[Buffer]:
        """The buffers with the fixed offsets and every group's best placement."""
        offsets = [0] * len(self.buffers)
        for i, o in self.fixed.items():
            offsets[i] = o
        for g in self.groups:
            for i, o in zip(g.members, g.best, strict=True):
                offsets[i] = o
        return [replace(b, offset=o) for b, o in zip(self.buffers, offsets, strict=True)]


def _validate(buffers: Sequence[Buffer], capacity: int | None, time_limit: float,
              alignment: int) -> None:
    if not isinstance(alignment, int) or alignment < 1:
        raise GraphError(f"alignment must be a positive integer, not {alignment!r}")
    if capacity is not None and capacity < 0:
        raise GraphError(f"capacity must be at least 0, not {capacity}")
    if time_limit < 0:
        raise GraphError(f"time limit must be at least 0 seconds, not {time_limit}")
    for b in buffers:
        if b.upper <= b.lower:
            raise GraphError(f"buffer {b.id} has upper {b.upper} <= lower {b.lower}")
        if b.size < 0:
            raise GraphError(f"buffer {b.id} has a negative size {b.size}")


def _status(top: int, lower_bound: int, capacity: int | None) -> Status:
    if capacity is not None and top > capacity:
        return "best-found"
    if top == lower_bound:
        return "optimal"
    return "best-found" if capacity is None else "fits"


def solve(buffers: Sequence[Buffer], capacity: int | None = None, time_limit: float = 30.0,
          alignment: int = 1, method: Method = "search") -> Solution:
    """Place ``buffers`` (offsets ignored) exactly, within ``time_limit`` seconds.

    With ``capacity``: a placement whose every ``offset + size`` is at most ``capacity``
    (status "fits", or "optimal" when its height is the lower bound); when none is found
    in time, or none exists (``infeasible``), the greedy placement with "best-found".
    Without: the lowest placement it can find, starting from greedy by size; the search
    is asked for a placement within a target height, the bound itself first, then halfway
    between the highest target that ran out of time and the best height (a placement found
    lowers the height, an exhausted search raises the bound); "optimal" when the height
    meets the lower bound, else "best-found".

    Offsets are multiples of ``alignment``. The result is always a valid placement
    (:func:`~graphc.passes.intervals.check_solution` finds nothing) and its height is
    never below ``lower_bound``. ``method="cp-sat"`` uses OR-tools instead of the search
    (raises :class:`GraphError` when ``ortools`` is not installed). Raises
    :class:`GraphError` for a bad buffer, capacity, time limit or alignment.
    """
    start = time.monotonic()
    deadline = start + time_limit
    _validate(buffers, capacity, time_limit, alignment)
    bound = max_live(buffers)
    greedy = greedy_by_size(buffers, alignment)
    if method == "cp-sat":
        return _solve_cp_sat(buffers, capacity, alignment, greedy, bound, start, deadline)
    if method != "search":
        raise GraphError(f"unknown method {method!r}", fix="use 'search' or 'cp-sat'")

    def result(placed: Sequence[Buffer], lower_bound: int, nodes: int,
               infeasible: bool = False) -> Solution:
        top = height(placed)
        lower_bound = min(max(lower_bound, bound), top)
        return Solution(tuple(placed), top, lower_bound, _status(top, lower_bound, capacity),
                        time.monotonic() - start, capacity, nodes, infeasible, "search")

    greedy_height = height(greedy)
    if capacity is not None and (greedy_height <= capacity or bound > capacity):
        return result(greedy, bound, 0, infeasible=bound > capacity)
    if greedy_height == bound:
        return result(greedy, bound, 0)
    planner = _Planner(buffers, alignment)
    if not planner.searchable:
        return result(greedy, bound, 0)
    lo = _round_up(bound, planner.step)
    lo = max([lo, planner.fixed_top] + [g.proven for g in planner.groups])
    if capacity is not None:
        outcome = planner.probe(capacity, deadline)
        if outcome == "found":
            return result(planner.placement(), lo, planner.nodes)
        proven = max([lo] + [g.proven for g in planner.groups])
        return result(greedy, proven, planner.nodes, infeasible=outcome == "infeasible")
    best, hi = greedy, greedy_height
    hard = lo - 1  # the highest target whose probe ran out of time
    while lo < hi:
        now = time.monotonic()
        if now >= deadline:
            break
        target = lo if hard < lo else (max(hard, lo) + hi) // 2 // planner.step * planner.step
        if target >= hi or target <= hard:
            break
        # The bound itself first, briefly (it is often reached); then halve the interval
        # between the highest target that ran out of time and the best height.
        share = 0.2 if target == lo and hard < lo else 1 / 3
        outcome = planner.probe(target, min(deadline, now + (deadline - now) * share))
        if outcome == "found":
            best = planner.placement()
            hi = height(best)
        elif outcome == "infeasible":
            lo = max([target + 1] + [g.proven for g in planner.groups])
            lo = _round_up(lo, planner.step)
        else:
            hard = target
    return result(best, lo, planner.nodes)


def _solve_cp_sat(buffers: Sequence[Buffer], capacity: int | None, alignment: int,
                  greedy: list[Buffer], bound: int, start: float, deadline: float
                  ) -> Solution:
    """The same problem as a CP-SAT model (no-overlap in 2-D), hinted with greedy."""
    try:
        from ortools.sat.python import cp_model  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise GraphError("method 'cp-sat' needs OR-tools, which is not installed",
                         fix="pip install ortools, or use method='search'") from None
    greedy_height = height(greedy)
    limit = greedy_height if capacity is None else min(capacity, greedy_height)
    model = cp_model.CpModel()
    xs, ys, tops = [], [], []
    for b, g in zip(buffers, greedy, strict=True):
        slot = model.new_int_var(0, max(limit - b.size, 0) // alignment, f"k{b.id}")
        offset = model.new_int_var(0, max(limit - b.size, 0), f"o{b.id}")
        model.add(offset == alignment * slot)
        assert g.offset is not None
        if capacity is None or greedy_height <= capacity:
            model.add_hint(slot, g.offset // alignment)
        ys.append(model.new_interval_var(offset, b.size, offset + b.size, f"y{b.id}"))
        xs.append(model.new_fixed_size_interval_var(b.lower, b.upper - b.lower, f"x{b.id}"))
        tops.append(offset + b.size)
    model.add_no_overlap_2d(xs, ys)
    top = model.new_int_var(bound, limit, "height")
    for t in tops:
        model.add(top >= t)
    if capacity is None:
        model.minimize(top)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(deadline - time.monotonic(), 0.01)
    solver.parameters.num_workers = 2
    code = solver.solve(model)
    placed = greedy
    proven = bound
    if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        placed = [replace(b, offset=int(solver.value(o))) for b, o in
                  zip(buffers, [t - b.size for t, b in zip(tops, buffers, strict=True)],
                      strict=True)]
        if code == cp_model.OPTIMAL and capacity is None:
            proven = height(placed)
        proven = max(proven, int(solver.best_objective_bound) if capacity is None else 0)
    if height(placed) > greedy_height:
        placed = greedy
    top_h = height(placed)
    lower_bound = min(max(proven, bound), top_h)
    return Solution(tuple(placed), top_h, lower_bound, _status(top_h, lower_bound, capacity),
                    time.monotonic() - start,
                    capacity, 0, code == cp_model.INFEASIBLE, "cp-sat")
