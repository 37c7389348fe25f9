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

The search is :mod:`graphc.passes.canonical` (its docstring has the rules): a depth-first
search over *canonical* placements, where buffers are placed in increasing (offset, rank)
order, each on the highest top of the placed buffers live with it, after the ideas of
MiniMalloc (M. D. Moffitt, ASPLOS 2023: canonical solutions, section inference,
dominance, dynamic decomposition, restarts over branching orders), written anew, with two
rules of its own: buffers whose neighbours are all placed are settled at once, and failed
states are remembered. It is compiled by numba when that is installed (the ``exact``
extra) and runs as plain Python otherwise. Before it, a buffer live over the whole of its
group goes to the bottom and the rest splits where no buffer crosses a time.

A call runs six branching orders (by lifetime, peak live total over the lifetime, size,
area) in turn with node budgets that double every round, keeping the failed states
across them: a run that ends within its budget is a proof.

``method="cp-sat"`` solves the same problem with OR-tools' CP-SAT (a no-overlap-2D model)
when ``ortools`` is installed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from graphc.errors import GraphError
from graphc.passes.canonical import (
    C_NODES,
    C_STOP,
    C_TRAIL,
    FOUND,
    NOT_FOUND,
    STOPPED,
    _parts,
    new_memo,
    search,
    set_clock,
)
from graphc.passes.intervals import Buffer, height, max_live

Status = Literal["optimal", "fits", "best-found"]
Method = Literal["search", "cp-sat"]
_Outcome = Literal["found", "infeasible", "timeout"]

@dataclass(frozen=True)
class Solution:
    """A valid placement and what is known about it.

    ``buffers`` are the input buffers in input order with ``offset`` set; ``height`` is
    the highest ``offset + size``; ``lower_bound`` a proven lower bound on any placement's
    height (never above ``height``); ``seconds`` the wall time of :func:`solve`;
    ``nodes`` the search nodes visited; ``infeasible`` is True when a capacity was given
    and the search proved no placement fits in it; ``interrupted`` that Ctrl-C stopped the
    search (the placement is the best found before).
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
    interrupted: bool = False

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


_ORDERS: tuple[str, ...] = ("life-area", "press-area", "press-life", "press", "size", "area")
"""Branching orders (ranks) tried in turn, with restarts: by the peak total live over a
buffer's lifetime, its size, its lifetime or its area, ties broken by the others."""

_INT64_ROOM = 1 << 62
"""The kernel's keys are ``floor * n + rank`` in int64: the search is not tried when
``(capacity + largest size) * (n + 1)`` could reach this."""


def _ranks(kind: str, life: list[int], size: list[int], press: list[int]) -> list[int]:
    """The buffers in the branching order ``kind`` (first is tried first)."""
    keys: dict[str, Callable[[int], tuple[int, ...]]] = {
        "life-area": lambda i: (-life[i], -size[i] * life[i], -press[i], i),
        "press-area": lambda i: (-press[i], -size[i] * life[i], -life[i], i),
        "press-life": lambda i: (-press[i], -life[i], -size[i] * life[i], i),
        "press": lambda i: (-press[i], -size[i], -life[i], i),
        "size": lambda i: (-size[i], -life[i], i),
        "life": lambda i: (-life[i], -size[i], i),
        "area": lambda i: (-size[i] * life[i], -size[i], i),
        "pressl": lambda i: (-press[i], -life[i], -size[i], i),
        "sizep": lambda i: (-size[i], -press[i], -life[i], i),
    }
    return sorted(range(len(size)), key=keys[kind])


class _Search:
    """The canonical search (:mod:`graphc.passes.canonical`) over one group of buffers,
    indices local to the group.

    ``size`` is the size used for packing (padded to ``alignment``), ``real`` the size that
    must end within the capacity. :meth:`run` finds offsets (multiples of ``alignment``)
    with every ``offset + real <= cap`` and the padded extents of buffers live together
    disjoint, or proves there are none.
    """

    def __init__(self, lower: Sequence[int], upper: Sequence[int], size: Sequence[int],
                 real: Sequence[int], alignment: int = 1) -> None:
        n = self.n = len(size)
        self.alignment = alignment
        times = np.unique(np.asarray([*lower, *upper], dtype=np.int64))
        a = np.searchsorted(times, np.asarray(lower, dtype=np.int64)).astype(np.int64)
        b = np.searchsorted(times, np.asarray(upper, dtype=np.int64)).astype(np.int64)
        nsec = self.nsec = max(len(times) - 1, 1)
        self.a, self.b = a, b
        self.size = np.asarray(size, dtype=np.int64)
        self.real = np.asarray(real, dtype=np.int64)
        total = np.zeros(nsec + 1, dtype=np.int64)
        cuts = np.zeros(nsec + 1, dtype=np.int64)
        for i in range(n):
            total[a[i]:b[i]] += size[i]
            cuts[a[i]:b[i] - 1] += 1
        self.total0, self.cuts0 = total, cuts
        press = [int(total[a[i]:b[i]].max()) for i in range(n)]
        life = [int(upper[i] - lower[i]) for i in range(n)]
        live = (a[:, None] < b[None, :]) & (a[None, :] < b[:, None])
        np.fill_diagonal(live, False)
        self.degree = live.sum(axis=1).astype(np.int64)
        self.nb_ptr = np.concatenate(([0], np.cumsum(self.degree))).astype(np.int64)
        self.nb_idx = np.nonzero(live)[1].astype(np.int64)
        sec_of = np.concatenate([np.arange(a[i], b[i]) for i in range(n)]).astype(np.int64)
        buf_of = np.repeat(np.arange(n, dtype=np.int64), b - a)
        by_sec = np.argsort(sec_of, kind="stable")
        self.sl_idx = buf_of[by_sec]
        self.sl_ptr = np.searchsorted(sec_of[by_sec], np.arange(nsec + 1)).astype(np.int64)
        self.by_a = np.argsort(a, kind="stable").astype(np.int64)
        self.first_a = np.searchsorted(a[self.by_a], np.arange(nsec + 1)).astype(np.int64)
        self.orders = [np.asarray(_ranks(k, life, list(size), press), dtype=np.int64)
                       for k in _ORDERS]
        cells = int((b - a).sum())
        room = n + cells + int(self.degree.sum()) + n * (nsec + 1) + 16
        self.trail = (np.zeros(room, dtype=np.int64), np.zeros(room, dtype=np.int64),
                      np.zeros(room, dtype=np.int64))
        self.stamp = np.zeros(nsec + 1, dtype=np.int64)
        self.memo = new_memo(20 if n > 64 else 12)
        self.ctr = np.zeros(4, dtype=np.int64)
        self.hook: Callable[[int], None] | None = None  # called at every look at the clock
        self.fits_int64 = (int(self.size.max(initial=0)) + int(total.max(initial=0))
                           + alignment) * (n + 1) < _INT64_ROOM

    @property
    def nodes(self) -> int:
        return int(self.ctr[C_NODES])

    def run(self, cap: int, deadline: float, first_budget: int = 0
            ) -> tuple[_Outcome, list[int] | None]:
        """Search for offsets within ``cap``: ("found", offsets), ("infeasible", None)
        when no placement exists, or ("timeout", None) when ``deadline`` (a
        ``time.monotonic()`` value) passed first.

        Runs the branching orders in turn with a node budget that doubles every round
        (from ``first_budget``, default twice the buffers); failed states are kept across
        the runs of one call, and any run that ends within its budget is a proof.
        """
        n = self.n
        if n == 0:
            return "found", []
        cap_pad = _round_up(cap, self.alignment)
        if int(self.total0.max()) > cap_pad or int(self.real.max()) > cap:
            return "infeasible", None
        if (cap_pad + int(self.size.max())) * (n + 1) >= _INT64_ROOM:
            return "timeout", None
        for table in self.memo:
            table[:] = 0
        self.memo[1][:] = 1
        set_clock(deadline, self.hook)
        budget = first_budget or 2 * n
        while True:
            for k, order in enumerate(self.orders):
                rank = np.empty(n, dtype=np.int64)
                rank[order] = np.arange(n)
                par = np.asarray([n, self.nsec, cap, cap_pad, self.alignment,
                                  k * 0x9E3779B97F4A7C1 + 1, self.nodes + budget],
                                 dtype=np.int64)
                minoff = np.zeros(n, dtype=np.int64)
                unn = self.degree.copy()
                off = np.zeros(n, dtype=np.int64)
                placed = np.zeros(n, dtype=np.int64)
                ftop = np.zeros(self.nsec + 1, dtype=np.int64)
                total = self.total0.copy()
                cuts = self.cuts0.copy()
                self.ctr[C_TRAIL] = 0
                self.ctr[C_STOP] = 0
                status = FOUND
                parts = _parts(0, self.nsec, total, cuts)
                for q in range(0, len(parts), 2):
                    status = search(parts[q], parts[q + 1], -1, self.a, self.b, self.size,
                                    self.real, rank, order, self.nb_ptr, self.nb_idx,
                                    self.sl_ptr, self.sl_idx, self.by_a, self.first_a, par,
                                    minoff, unn, off, placed, ftop, total, cuts, self.stamp,
                                    *self.trail, self.ctr, *self.memo)
                    if status != FOUND:
                        break
                if status == FOUND:
                    return "found", [int(x) for x in off]
                if status == NOT_FOUND:
                    return "infeasible", None
                if status == STOPPED or time.monotonic() > deadline:
                    return "timeout", None
            budget *= 2


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


@dataclass(frozen=True)
class Progress:
    """Where a running :func:`solve` stands: wall ``seconds`` so far, search ``nodes``,
    the best ``height`` found (greedy's at first), the proven ``lower_bound`` and the
    ``target`` height being searched for."""

    seconds: float
    nodes: int
    height: int
    lower_bound: int
    target: int


def solve(buffers: Sequence[Buffer], capacity: int | None = None, time_limit: float = 30.0,
          alignment: int = 1, method: Method = "search",
          progress: Callable[[Progress], None] | None = None) -> Solution:
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

    ``progress`` is called every few thousand search nodes with a :class:`Progress`.
    Ctrl-C (``KeyboardInterrupt``) during the search ends it: the best placement so far is
    returned, with ``interrupted`` set.
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
               infeasible: bool = False, interrupted: bool = False) -> Solution:
        top = height(placed)
        lower_bound = min(max(lower_bound, bound), top)
        return Solution(tuple(placed), top, lower_bound, _status(top, lower_bound, capacity),
                        time.monotonic() - start, capacity, nodes, infeasible, "search",
                        interrupted)

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
    state: dict[str, Any] = {"best": greedy, "hi": greedy_height, "lo": lo,
                             "target": capacity or lo}

    def hook(_nodes: int) -> None:
        if progress is not None:
            progress(Progress(time.monotonic() - start, planner.nodes, int(state["hi"]),
                              int(state["lo"]), int(state["target"])))

    for g in planner.groups:
        g.search.hook = hook
    try:
        return _probe_all(planner, capacity, deadline, state, result)
    except KeyboardInterrupt:
        best = state["best"]
        assert isinstance(best, list)
        return result(best, int(state["lo"]), planner.nodes, interrupted=True)


def _probe_all(planner: _Planner, capacity: int | None, deadline: float,
               state: dict[str, Any], result: Callable[..., Solution]) -> Solution:
    """The search part of :func:`solve`; ``state`` holds the best placement, its height,
    the proven bound and the current target as they improve (for progress and Ctrl-C)."""
    lo, greedy = state["lo"], state["best"]
    assert isinstance(lo, int) and isinstance(greedy, list)
    if capacity is not None:
        outcome = planner.probe(capacity, deadline)
        if outcome == "found":
            return result(planner.placement(), lo, planner.nodes)
        proven = max([lo] + [g.proven for g in planner.groups])
        return result(greedy, proven, planner.nodes, infeasible=outcome == "infeasible")
    best, hi = greedy, height(greedy)
    hard = lo - 1  # the highest target whose probe ran out of time
    while lo < hi:
        now = time.monotonic()
        if now >= deadline:
            break
        target = lo if hard < lo else (max(hard, lo) + hi) // 2 // planner.step * planner.step
        if target >= hi or target <= hard:
            break
        state["target"] = target
        # The bound itself first, briefly (it is often reached); then halve the interval
        # between the highest target that ran out of time and the best height.
        share = 0.2 if target == lo and hard < lo else 1 / 3
        outcome = planner.probe(target, min(deadline, now + (deadline - now) * share))
        if outcome == "found":
            best = planner.placement()
            hi = height(best)
            state["best"], state["hi"] = best, hi
        elif outcome == "infeasible":
            lo = max([target + 1] + [g.proven for g in planner.groups])
            lo = _round_up(lo, planner.step)
            state["lo"] = lo
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
