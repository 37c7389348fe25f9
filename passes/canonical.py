"""The compiled kernel of the exact planner: a depth-first search over canonical placements.

Used by :mod:`graphc.passes.exact` (read its docstring for the contract); compiled with
numba when it is installed (``pip install graphc[exact]``), run as plain Python otherwise
(the same code, about a hundred times slower).

A buffer's *floor* (``minoff``) is the highest top of the placed buffers live with it: in
a canonical placement every buffer sits on its floor at the time it is placed, and
buffers are placed in increasing (offset, rank) order, so each placement is met once.
The state of a node is the set of unplaced buffers and their floors; it decides the
whole subtree, which makes the rules below sound:

* a node takes, in (floor, rank) order, every unplaced buffer whose key is above the
  last placement's (*canonical order*) and whose floor is below the lowest top any
  unplaced buffer could reach (*no gap*: else that one could be lowered into the gap);
* a buffer whose every neighbour is placed has a final floor and touches nothing left:
  it is placed at once, outside the order (*settled buffers*);
* after each placement, every section of time must hold what is left there above
  ``max(latest top there, the offset just placed)`` (*section inference*), and every
  unplaced buffer must fit under the capacity on its floor;
* a section boundary no unplaced buffer crosses splits the rest into parts solved one by
  one; a part that fails fails the node (*decomposition*);
* a state whose subtree was searched to the end without a placement is remembered (two
  64-bit hashes and the lowest key it failed under) and not searched again (*memo*).

Node budgets make restarts possible: the driver runs several branching orders (ranks)
with budgets that double, as MiniMalloc does; only a run that ends within its budget
proves anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

F = TypeVar("F", bound=Callable[..., Any])

try:
    import numba as _numba  # type: ignore[import-not-found,unused-ignore]

    COMPILED = True

    def _jit(f: F) -> F:
        return cast(F, _numba.njit(cache=True)(f))

    objmode = _numba.objmode
except ImportError:  # pragma: no cover - exercised where numba is absent
    COMPILED = False

    def _jit(f: F) -> F:
        return f

    class objmode:  # type: ignore[no-redef]  # numba's spelling
        """Stands in for ``numba.objmode`` when the code runs as Python."""

        def __init__(self, **_types: str) -> None:
            pass

        def __enter__(self) -> None:
            return None

        def __exit__(self, *_exc: object) -> None:
            return None


FOUND, NOT_FOUND, BUDGET, STOPPED = 1, 0, -1, -2
"""What :func:`search` returns."""

# par: the run's parameters, an int64 array
P_N, P_NSEC, P_CAP, P_CAP_PAD, P_ALIGN, P_SALT, P_BUDGET = range(7)
# ctr: counters, an int64 array
C_TRAIL, C_NODES, C_STOP, C_STAMP = range(4)
# trail kinds
T_FLOOR, T_PLACED, T_TOP = 0, 1, 2

_MASK = (1 << 64) - 1
TICK_EVERY = 2048
"""Nodes between two looks at the clock (and at Ctrl-C)."""

_deadline = [0.0]
_hook: list[Callable[[int], None] | None] = [None]


def set_clock(deadline: float, hook: Callable[[int], None] | None = None) -> None:
    """Set the ``time.monotonic()`` deadline of the searches to come, and a function
    called with the node count at every look at the clock (for progress)."""
    _deadline[0] = deadline
    _hook[0] = hook


def _tick(nodes: int) -> int:
    """1 when the deadline has passed. Runs as Python, so a pending Ctrl-C raises here."""
    hook = _hook[0]
    if hook is not None:
        hook(nodes)
    return 1 if time.monotonic() > _deadline[0] else 0


@_jit
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64's finaliser."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@_jit
def _place(u: int, m: int, a: Any, b: Any, size: Any, real: Any, nb_ptr: Any, nb_idx: Any,
           sl_ptr: Any, sl_idx: Any, par: Any, minoff: Any, unn: Any, off: Any, placed: Any,
           ftop: Any, total: Any, cuts: Any, stamp: Any, tr_kind: Any, tr_idx: Any,
           tr_old: Any, ctr: Any) -> bool:
    """Place ``u`` at ``m``, settle the neighbours left without unplaced neighbours, and
    bring the section floors (``ftop``: the lowest floor of an unplaced buffer there) up to
    date. Every change goes on the trail. False when some buffer can no longer fit."""
    ok = True
    mark = ctr[C_TRAIL]
    cap, align = par[P_CAP], par[P_ALIGN]
    stack = [u]
    offs = [m]
    while stack:
        v = stack.pop()
        mv = offs.pop()
        placed[v] = 1
        off[v] = mv
        if mv + real[v] > cap:
            ok = False
        t = ctr[C_TRAIL]
        tr_kind[t], tr_idx[t], tr_old[t] = T_PLACED, v, 0
        t += 1
        top = mv + size[v]
        for s in range(a[v], b[v]):
            total[s] -= size[v]
        for s in range(a[v], b[v] - 1):
            cuts[s] -= 1
        raised = -(-top // align) * align
        for k in range(nb_ptr[v], nb_ptr[v + 1]):
            w = nb_idx[k]
            if placed[w]:
                continue
            unn[w] -= 1
            if minoff[w] < raised:
                tr_kind[t], tr_idx[t], tr_old[t] = T_FLOOR, w, minoff[w]
                t += 1
                minoff[w] = raised
                if raised + real[w] > cap:
                    ok = False
            if unn[w] == 0:
                stack.append(w)
                offs.append(minoff[w])
                placed[w] = 1  # claimed: its trail entry follows when it is popped
        ctr[C_TRAIL] = t
    # The floors of the sections of every buffer placed or raised, recomputed once each.
    ctr[C_STAMP] += 1
    st = ctr[C_STAMP]
    t = ctr[C_TRAIL]
    big = par[P_CAP_PAD] + 1
    for e in range(mark, ctr[C_TRAIL]):
        v = tr_idx[e]
        was = tr_old[e] if tr_kind[e] == T_FLOOR else off[v]
        for s in range(a[v], b[v]):
            if stamp[s] == st or ftop[s] != was:  # v was not the lowest there
                continue
            stamp[s] = st
            low = big
            for k in range(sl_ptr[s], sl_ptr[s + 1]):
                w = sl_idx[k]
                if not placed[w] and minoff[w] < low:
                    low = minoff[w]
            if low != ftop[s]:
                tr_kind[t], tr_idx[t], tr_old[t] = T_TOP, s, ftop[s]
                t += 1
                ftop[s] = low
    ctr[C_TRAIL] = t
    return ok


@_jit
def _undo(mark: int, a: Any, b: Any, size: Any, nb_ptr: Any, nb_idx: Any, minoff: Any,
          unn: Any, placed: Any, ftop: Any, total: Any, cuts: Any, tr_kind: Any, tr_idx: Any,
          tr_old: Any, ctr: Any) -> None:
    """Undo the trail back to ``mark``."""
    t = ctr[C_TRAIL]
    while t > mark:
        t -= 1
        kind, i = tr_kind[t], tr_idx[t]
        if kind == T_FLOOR:
            minoff[i] = tr_old[t]
        elif kind == T_TOP:
            ftop[i] = tr_old[t]
        else:
            placed[i] = 0
            for s in range(a[i], b[i]):
                total[s] += size[i]
            for s in range(a[i], b[i] - 1):
                cuts[s] += 1
            for k in range(nb_ptr[i], nb_ptr[i + 1]):
                w = nb_idx[k]
                if not placed[w]:
                    unn[w] += 1
    ctr[C_TRAIL] = t


@_jit
def _parts(lo: int, hi: int, total: Any, cuts: Any) -> Any:
    """The independent section ranges with unplaced buffers within [lo, hi), as a flat
    list of (start, end) pairs."""
    out = []
    s = lo
    while s < hi:
        if total[s] == 0:
            s += 1
            continue
        e = s + 1
        while e < hi and cuts[e - 1] > 0:
            e += 1
        out.append(s)
        out.append(e)
        s = e
    return out


@_jit
def search(lo: int, hi: int, key0: int, a: Any, b: Any, size: Any, real: Any, rank: Any,
           order: Any, nb_ptr: Any, nb_idx: Any, sl_ptr: Any, sl_idx: Any, by_a: Any,
           first_a: Any, par: Any, minoff: Any, unn: Any, off: Any, placed: Any, ftop: Any,
           total: Any, cuts: Any, stamp: Any, tr_kind: Any, tr_idx: Any, tr_old: Any,
           ctr: Any, mk1: Any, mk2: Any, mval: Any) -> int:
    """Place every unplaced buffer of the part [lo, hi) with keys above ``key0``.

    FOUND leaves them placed (``off``); NOT_FOUND, BUDGET and STOPPED leave the state as
    on entry."""
    n = par[P_N]
    ctr[C_NODES] += 1
    if ctr[C_NODES] >= par[P_BUDGET]:
        return BUDGET
    if ctr[C_NODES] % TICK_EVERY == 0:
        nodes = ctr[C_NODES]
        with objmode(stop="int64"):
            stop = _tick(nodes)
        if stop:
            ctr[C_STOP] = 1
            return STOPPED
    cap_pad = par[P_CAP_PAD]
    keys = np.empty(first_a[hi] - first_a[lo], dtype=np.int64)
    cnt = 0
    h1 = np.uint64(par[P_SALT])
    h2 = np.uint64(par[P_SALT]) ^ np.uint64(0x5851F42D4C957F2D)
    gap = cap_pad + 1  # the lowest top an unplaced buffer can reach
    for p in range(first_a[lo], first_a[hi]):
        u = by_a[p]
        if placed[u]:
            continue
        keys[cnt] = minoff[u] * n + rank[u]
        cnt += 1
        x = np.uint64(u) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(minoff[u])
        h1 ^= _mix(x)
        h2 ^= _mix(x ^ np.uint64(0xD6E8FEB86659FD93))
        gap = min(gap, minoff[u] + size[u])
    if cnt == 0:
        return FOUND
    slot = np.int64(h1 & np.uint64(len(mk1) - 1))
    if mk1[slot] == h1 and mk2[slot] == h2 and mval[slot] <= key0:
        return NOT_FOUND
    ks = np.sort(keys[:cnt])
    for j in range(cnt):
        k = ks[j]
        if k <= key0:
            continue
        m = k // n
        if m >= gap:
            break
        u = order[k - m * n]
        mark = ctr[C_TRAIL]
        ok = _place(u, m, a, b, size, real, nb_ptr, nb_idx, sl_ptr, sl_idx, par, minoff,
                    unn, off, placed, ftop, total, cuts, stamp, tr_kind, tr_idx, tr_old, ctr)
        if ok:
            for s in range(lo, hi):
                if total[s] > 0 and max(ftop[s], m) + total[s] > cap_pad:
                    ok = False
                    break
        r = NOT_FOUND
        if ok:
            parts = _parts(lo, hi, total, cuts)
            r = FOUND
            for q in range(0, len(parts), 2):
                r = search(parts[q], parts[q + 1], k, a, b, size, real, rank, order,
                           nb_ptr, nb_idx, sl_ptr, sl_idx, by_a, first_a, par, minoff, unn,
                           off, placed, ftop, total, cuts, stamp, tr_kind, tr_idx, tr_old,
                           ctr, mk1, mk2, mval)
                if r != FOUND:
                    break
        if r == FOUND:
            return FOUND
        _undo(mark, a, b, size, nb_ptr, nb_idx, minoff, unn, placed, ftop, total, cuts,
              tr_kind, tr_idx, tr_old, ctr)
        if r < 0:
            return r
    if mk1[slot] == h1 and mk2[slot] == h2:
        mval[slot] = min(mval[slot], key0)
    else:
        mk1[slot], mk2[slot], mval[slot] = h1, h2, key0
    return NOT_FOUND


def new_memo(bits: int = 20) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64],
                                      npt.NDArray[np.int64]]:
    """An empty failed-state table of ``2**bits`` slots (24 bytes each)."""
    size = 1 << bits
    return (np.zeros(size, dtype=np.uint64), np.ones(size, dtype=np.uint64),
            np.zeros(size, dtype=np.int64))
