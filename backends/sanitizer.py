"""The sanitizer: run a memory plan with shadow memory, the dynamic ground truth.

Like AddressSanitizer, :class:`SanitizedArenaExecutable` runs the graph inside the byte
regions of a :class:`~graphc.passes.memory.MemoryPlan` exactly as the arena backend does,
and keeps two shadow words per byte: ``owner`` (which write of which value last wrote the
byte: a fresh *version* per write, or ``NEVER``, or a poison id) and ``logical`` (which
byte of that value's dense row-major representation it holds). It shares nothing with the
planner or the static aliasing checker: what every read must see is derived from the graph
and the NumPy reference semantics alone (a view's expected elements come from applying the
view op's reference rule to an array of element indices), and the plan is judged as raw
data. The first violation stops the run (:class:`~graphc.errors.AliasError`).

A run poisons the whole ``arena`` region (bytes ``0xFF``, so stale floats read as NaN),
writes the inputs and states, then walks ``plan.order``. Before a node runs, every operand
window is checked byte by byte: it must hold the current version of the value it is a
window onto, element for element. After the node's last counted reader a value's bytes are
poisoned again. After the run every marked output, every tap and every assigned value is
read (all reads before any write), the state updates are written all at once, and params
and states are checked to still hold their own bytes. Taps are read last, as the caller
reads them once ``run()`` has returned: after the state updates, so a tap on bytes that a
state update wrote holds the state's new value, which is right only when the tap is that
new value, written in place.

Kinds reported (a :class:`~graphc.passes.aliasing.Violation` each):

- ``clobbered-read``: an op (or the state update after the run) reads a value whose bytes
  now hold another value, poison, or nothing (``clobbered_by`` names the writer, if any).
- ``output-clobbered`` / ``unmarked-tap``: the same, for a marked output / a tap read by
  the host after the run (a tap after the state updates: ``clobbered_by`` is then the new
  value of the state written over it).
- ``bad-view``: a view placement that is not a window onto its source (``view_of`` is not
  the view op's operand, it reaches outside its source's bytes, or it holds the wrong
  elements of it). ``bad-layout``: a value that is not dense row-major, or whose own bytes
  do not hold its elements (overlapping strides).
- ``bad-inplace``: a result overlaps an operand it is computed from, other than an exact
  in-place write into operand 0 of an op that may write in place.
- ``param-written``: a write into the read-only ``param`` region, or a param whose bytes
  no longer hold it after the run. ``state-misassigned``: a state whose bytes hold another
  value at the end of the run.
- ``missing-placement``, ``out-of-bounds`` (outside its region, or an unknown region),
  ``misaligned`` (offset not a multiple of the item size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from graphc.backends.arena import ArenaExecutable, bytes_used
from graphc.backends.reference import evaluate_node, rule_for
from graphc.errors import AliasError, GraphError
from graphc.executable import Executable
from graphc.graph import Graph
from graphc.naming import label
from graphc.ops import MAX_REGION_BYTES, OP_TABLE
from graphc.passes.aliasing import Violation
from graphc.passes.memory import MemoryPlan, Placement
from graphc.reads import Reads, ReadsArg, parse_reads
from graphc.tensor import Tensor

NEVER = -1  # owner of a byte never written
POISON = -2  # poison ids are POISON, POISON - 1, ...: each names the value that died
_REGIONS = ("arena", "state", "param")


def _dense_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


@dataclass
class _Window:
    """The bytes one tensor is read from (or written to): ``addr`` lists them in logical
    order (element-major, then byte); ``expect`` is the logical byte of ``root`` each
    must hold."""

    tensor: Tensor
    region: str
    addr: np.ndarray
    root: Tensor
    index: np.ndarray  # element index into root, shaped like tensor
    expect: np.ndarray
    is_view: bool
    lo: int = 0
    hi: int = -1

    def __post_init__(self) -> None:
        if self.addr.size:
            self.lo, self.hi = int(self.addr.min()), int(self.addr.max())


@dataclass(frozen=True)
class _Problem:
    kind: str
    tensor: Tensor | None
    detail: str
    fix: str


class _Fault(Exception):
    def __init__(self, violation: Violation) -> None:
        super().__init__(str(violation))
        self.violation = violation


def _violation(kind: str, tensor: Tensor | None, clobbered_by: Tensor | None, step: int | None,
               fix: str, detail: str = "") -> Violation:
    return Violation(cast(Any, kind), tensor, clobbered_by, step, fix, detail)


def _at(step: int | None) -> str:
    return "at the start of the run" if step is None else f"at step {step}"


class SanitizedArenaExecutable(ArenaExecutable):
    """An :class:`ArenaExecutable` with shadow memory: ``run`` raises AliasError at the
    first stale read or bad write of the plan (see the module doc). ``violation`` holds
    the last violation found; ``taps`` are tensors the host reads after each run without
    them being outputs."""

    backend = "arena"
    sanitized = True

    def __init__(self, graph: Graph, params: Mapping[str, Any] | None, reads: Reads,
                 states: Mapping[str, Any] | None, plan: MemoryPlan, *,
                 taps: Sequence[Tensor] = ()) -> None:
        Executable.__init__(self, graph, params, reads, states)
        self.plan = plan
        self.taps: list[Tensor] = [t for t in dict.fromkeys(taps)
                                   if t not in graph.outputs.values()]
        self.violation: Violation | None = None
        sizes = {"arena": plan.arena_bytes, "state": plan.state_bytes,
                 "param": plan.param_bytes}
        huge = [r for r, n in sizes.items() if n > MAX_REGION_BYTES]
        self._sizes = sizes  # what the plan claims; memory is held only for the bytes used
        used = bytes_used(plan, sizes)
        self.regions = {r: np.zeros(1 if r in huge else max(min(n, used[r]), 1), np.uint8)
                        for r, n in sizes.items()}
        self._owner = {r: np.full(b.size, NEVER, np.int64) for r, b in self.regions.items()}
        self._logical = {r: np.zeros(b.size, np.int64) for r, b in self.regions.items()}
        self._versions: list[tuple[Tensor, int, int | None]] = []  # id -> (value, run, step)
        self._poisons: list[tuple[Tensor | None, int, int | None]] = []
        self._current: dict[Tensor, int] = {}  # root value -> its version in this run
        self._run = 0
        self._windows: dict[Tensor, _Window | _Problem] = {}
        self._write_ok: dict[Tensor, _Problem | None] = {}
        self._counts: tuple[dict[Tensor, int], dict[int, list[Tensor]], set[Tensor]] | None
        self._counts = None
        self._pending: Violation | None = None
        if huge:  # no machine has that memory: refuse the plan instead of allocating
            self._pending = _violation(
                "out-of-bounds", None, None, None,
                f"keep each region under {MAX_REGION_BYTES:,} B",
                f"the {huge[0]} region claims {sizes[huge[0]]:,} B")
        try:  # params are written once, into (what should be) read-only memory
            for name, t in graph.params.items():
                self._store(t, self._root_window(t, None), np.asarray(self.params[name]), None)
        except _Fault as f:
            self._pending = f.violation

    # ------------------------------------------------------------------ geometry

    def _window(self, t: Tensor) -> _Window | _Problem:
        """``t``'s window (cached: the plan is fixed), or why it has none."""
        if t not in self._windows:
            self._windows[t] = self._make_window(t)
        return self._windows[t]

    def _make_window(self, t: Tensor) -> _Window | _Problem:
        p: Placement | None = self.plan.placements.get(t)
        lt = label(t)
        if p is None:
            return _Problem("missing-placement", t, f"{lt} has no placement in the plan",
                            f"add a placement for {lt} to plan.placements")
        if p.region not in self.regions:
            return _Problem("out-of-bounds", t, f"{lt} is placed in unknown region "
                            f"{p.region!r}", f"place {lt} in one of {_REGIONS}")
        size = self._sizes[p.region]
        itemsize = t.itemsize
        if p.offset % itemsize:
            return _Problem("misaligned", t, f"{lt} ({t.dtype}) starts at byte {p.offset} of "
                            f"the {p.region} region", f"make {lt}'s offset a multiple of "
                            f"{itemsize}")
        strides = tuple(p.strides) if p.strides is not None else _dense_strides(t.shape)
        if len(strides) != t.ndim:
            return _Problem("bad-layout", t, f"{lt} has shape {t.shape} but strides {strides}",
                            f"give {lt} one stride per dimension (or strides=None)")
        # an axis of extent 0 or 1 never moves: its stride touches no byte
        strides = tuple(x if n > 1 else 0 for x, n in zip(strides, t.shape, strict=True))
        if not 0 <= p.offset <= size or any(abs(x) * itemsize > max(size, itemsize)
                                            for x in strides):
            return _Problem("out-of-bounds", t, f"{lt} starts at byte {p.offset} with strides "
                            f"{strides} in the {p.region} region, which has {size} bytes",
                            f"keep {lt}'s bytes inside the {p.region} region")
        elem = np.full(t.shape, p.offset, np.int64)
        for k, (n, s) in enumerate(zip(t.shape, strides, strict=True)):
            shape = [1] * t.ndim
            shape[k] = n
            elem = elem + (np.arange(n, dtype=np.int64) * (s * itemsize)).reshape(shape)
        addr = (elem.reshape(-1, 1) + np.arange(itemsize, dtype=np.int64)).ravel()
        if (addr.size and (addr.min() < 0 or addr.max() >= size)) or not 0 <= p.offset <= size:
            lo, hi = (int(addr.min()), int(addr.max()) + 1) if addr.size else (p.offset,) * 2
            return _Problem("out-of-bounds", t, f"{lt} spans bytes [{lo}, {hi}) of the "
                            f"{p.region} region, which has {size} bytes",
                            f"keep {lt}'s bytes inside the {p.region} region (or grow "
                            f"plan.{p.region}_bytes)")
        if p.view_of is None:
            dense = p.offset + np.arange(t.size * itemsize, dtype=np.int64)
            if not np.array_equal(addr, dense):
                return _Problem("bad-layout", t, f"{lt} is not a view but has strides "
                                f"{strides}, not dense row-major", f"give {lt} dense "
                                "row-major bytes (strides=None), or make it a view")
            index = np.arange(t.size, dtype=np.int64).reshape(t.shape)
            return _Window(t, p.region, addr, t, index, np.arange(addr.size, dtype=np.int64),
                           False)
        src = p.view_of
        op = OP_TABLE.get(t.op)
        if op is None or op.view is None or t.inputs[:1] != (src,):
            what = f"{t.op}, not a view op" if op is None or op.view is None else \
                f"a {t.op} of {label(t.inputs[0])}"
            return _Problem("bad-view", t, f"{lt} is placed as a view of {label(src)}, but it "
                            f"is {what}", f"give {lt} bytes of its own (view_of=None)")
        sw = self._window(src)
        if isinstance(sw, _Problem):
            return sw
        rw = self._window(sw.root)
        assert isinstance(rw, _Window)  # sw resolved, so its root did
        if p.region != sw.region:
            return _Problem("bad-view", t, f"{lt} is a view of {label(src)} but lies in the "
                            f"{p.region} region, {label(sw.root)} in the {sw.region} region",
                            f"place {lt} inside {label(sw.root)}'s bytes")
        # what the view means, from the reference semantics alone: apply the op to indices
        index = np.asarray(rule_for(t.op)([sw.index], t.attrs, t))
        if index.shape != t.shape:
            return _Problem("bad-view", t, f"{t.op} of {label(src)} gives shape "
                            f"{index.shape}, not {t.shape}", f"give {lt} bytes of its own")
        if addr.size and (addr.min() < rw.lo or addr.max() > rw.hi
                          or not np.isin(addr, rw.addr).all()):
            return _Problem("bad-view", t, f"{lt} is a view of {label(src)} but reaches "
                            f"outside {label(sw.root)}'s bytes", f"recompute {lt}'s offset "
                            f"and strides from {label(src)}'s layout")
        expect = (index.reshape(-1, 1) * itemsize + np.arange(itemsize)).ravel()
        return _Window(t, p.region, addr, sw.root, index, expect.astype(np.int64), True)

    def _resolve(self, t: Tensor, step: int | None) -> _Window:
        w = self._window(t)
        if isinstance(w, _Problem):
            raise _Fault(_violation(w.kind, w.tensor, None, step, w.fix, w.detail))
        return w

    def _root_window(self, t: Tensor, step: int | None) -> _Window:
        """The window ``t`` is written through: its own bytes, never a view."""
        w = self._resolve(t, step)
        if w.is_view:
            lt = label(t)
            raise _Fault(_violation("bad-view", t, None, step, f"give {lt} bytes of its own "
                                    "(view_of=None)", f"{lt} ({t.op}) is written, so it "
                                    "cannot be placed as a view"))
        return w

    # ------------------------------------------------------------------ shadow memory

    def _describe(self, oid: int) -> tuple[Tensor | None, str]:
        if oid == NEVER:
            return None, "were never written"
        if oid <= POISON:
            who, run, step = self._poisons[POISON - oid]
            if who is None:
                return None, "hold poison: the arena is poisoned at the start of every run"
            when = _at(step) + ("" if run == self._run else " of an earlier run")
            # the value that died there wrote those bytes last: it is the clobberer
            return who, f"hold poison: {label(who)}'s bytes died {when}"
        who, run, step = self._versions[oid]
        if run == 0:
            when = "when the params were bound"
        else:
            when = _at(step) + ("" if run == self._run else " of an earlier run")
        return who, f"hold {label(who)} (written {when})"

    def _store(self, t: Tensor, w: _Window, value: np.ndarray, step: int | None) -> None:
        """Write ``value`` through ``t``'s own window ``w``: a new version of ``t``."""
        if w.region == "param" and t.op != "param":
            self._param_fault(t, w, step)
        self.view(t)[...] = value
        vid = len(self._versions)
        self._versions.append((t, self._run, step))
        self._owner[w.region][w.addr] = vid
        self._logical[w.region][w.addr] = w.expect
        self._current[t] = vid

    def _param_fault(self, t: Tensor, w: _Window, step: int | None) -> None:
        owners = self._owner[w.region][w.addr]
        victim = None
        for oid in np.unique(owners[owners >= 0]):
            who = self._versions[int(oid)][0]
            if who.op == "param":
                victim = who
                break
        lt = label(t)
        raise _Fault(_violation("param-written", victim, t, step,
                                f"params are read-only: give {lt} bytes outside the param "
                                "region", f"{lt} ({t.op}) is written into bytes "
                                f"[{w.lo}, {w.hi + 1}) of the param region {_at(step)}"))

    def _poison(self, t: Tensor | None, step: int | None) -> None:
        pid = POISON - len(self._poisons)
        self._poisons.append((t, self._run, step))
        if t is None:
            self.regions["arena"][:] = 0xFF
            self._owner["arena"][:] = pid
            return
        w = self._window(t)
        if isinstance(w, _Problem):
            return
        mine = w.addr[self._owner[w.region][w.addr] == self._current.get(t)]
        self.regions[w.region][mine] = 0xFF
        self._owner[w.region][mine] = pid

    def _check(self, o: Tensor, kind: str, what: str, step: int,
               fix: str | None = None, accept: Sequence[int] | None = None) -> _Window:
        """Check that ``o``'s window holds what it must; ``what`` says who reads it.
        ``accept``: the versions its bytes may hold (default: its root's current one)."""
        w = self._resolve(o, step)
        root, r = w.root, w.region
        vid = self._current.get(root)
        owners = self._owner[r][w.addr]
        if accept is not None:
            bad = ~np.isin(owners, np.asarray(accept, np.int64))
        else:
            bad = owners != vid if vid is not None else np.ones(owners.shape, bool)
        lr = label(root)
        through = f" (through {label(o)})" if o is not root else ""
        if bad.any():
            i = int(np.argmax(bad))
            who, holds = self._describe(int(owners[i]))
            detail = f"{lr}{through} {what}, but its bytes {holds}"
            if who is root:  # a version of an earlier run: not this run's value
                who = None
            if vid is None and root.op != "param":
                detail += f" ({lr} was not computed before this read)"
                fix = fix or f"compute {lr} before it is read: fix plan.order"
            elif who is not None:  # overwritten (and maybe dead since)
                fix = fix or (f"give {label(who)} bytes that do not overlap {lr} while {lr} "
                              "is still read")
            elif root.op == "param":
                fix = fix or f"place param {lr} in the param region, where nothing else writes"
            else:
                fix = fix or f"check {lr}'s placement: its bytes must be written before this read"
            raise _Fault(_violation(kind, root, who, step, fix, detail))
        logical = self._logical[r][w.addr]
        wrong = logical != w.expect
        if wrong.any():
            i = int(np.argmax(wrong))
            isz = o.itemsize
            got = np.unravel_index(int(logical[i]) // isz, root.shape) if root.size else ()
            want = np.unravel_index(int(w.expect[i]) // isz, root.shape) if root.size else ()
            at = np.unravel_index(i // isz, o.shape) if o.size else ()
            if w.is_view:
                raise _Fault(_violation(
                    "bad-view", o, None, step,
                    f"recompute {label(o)}'s offset and strides from {label(o.inputs[0])}'s "
                    "layout",
                    f"{label(o)} = {o.op}({label(o.inputs[0])}) {what}: its "
                    f"element {tuple(map(int, at))} holds {lr}{tuple(map(int, got))}, not "
                    f"{lr}{tuple(map(int, want))}"))
            raise _Fault(_violation(
                "bad-layout", o, None, step, f"give {label(o)} dense row-major bytes",
                f"{label(o)} {what}: its element {tuple(map(int, at))} holds "
                f"element {tuple(map(int, got))}"))
        return w

    def _check_tap(self, o: Tensor, vid: int | None,
                   updates: Mapping[int, tuple[int, Tensor, Tensor]], end: int) -> None:
        """Check tap ``o`` as the caller reads it, after the state updates: its bytes must
        hold version ``vid`` of its root, or a state's new version that is a copy of that
        very version (the tap is the new value, written in place). ``updates``: each new
        state version -> (the version it copies, the assigned value, the state)."""
        accept = [] if vid is None else [vid, *(k for k, u in updates.items() if u[0] == vid)]
        w = self._resolve(o, end)
        owners = self._owner[w.region][w.addr]
        hit = [int(x) for x in np.unique(owners) if int(x) in updates and int(x) not in accept]
        if vid is not None and hit:
            _, v, s = updates[hit[0]]
            lo = label(o)
            through = "" if o is w.root else f" (a view of {label(w.root)})"
            raise _Fault(_violation(
                "unmarked-tap", o, v, end,
                f"give {lo} bytes of its own, apart from state {s.name!r} (plan_memory with "
                f"the tap in reads= copies it out), or read it as an output, which run() "
                f"returns before the state updates",
                f"{lo}{through} (a tap) is read after the run returns, but the update of "
                f"state {s.name!r} wrote its new value {label(v)} over its bytes first"))
        self._check(o, "unmarked-tap", f"(a tap) is read after the run, once the state "
                    f"updates are written (step {end})", end, accept=accept)

    def _check_write(self, t: Tensor, w: _Window, step: int) -> None:
        """Kernels read operands while they write: ``t``'s bytes may overlap an operand's
        only as an exact in-place write into operand 0 (cached: geometry only)."""
        if t not in self._write_ok:
            self._write_ok[t] = self._write_problem(t, w)
        prob = self._write_ok[t]
        if prob is not None:
            raise _Fault(_violation(prob.kind, prob.tensor, t, step, prob.fix, prob.detail))

    def _write_problem(self, t: Tensor, w: _Window) -> _Problem | None:
        op = OP_TABLE.get(t.op)

        def exact(ow: _Window) -> bool:
            return (ow.region == w.region and ow.tensor.shape == t.shape
                    and ow.tensor.dtype == t.dtype and np.array_equal(ow.addr, w.addr))

        wins = [self._window(o) for o in t.inputs]
        first_exact = bool(wins) and isinstance(wins[0], _Window) and exact(wins[0])
        for k, (o, ow) in enumerate(zip(t.inputs, wins, strict=True)):
            if isinstance(ow, _Problem) or ow.region != w.region or not ow.addr.size:
                continue
            if ow.hi < w.lo or ow.lo > w.hi or not np.isin(ow.addr, w.addr).any():
                continue
            legal = (op is not None and op.inplace and first_exact and exact(ow)
                     and (k == 0 or op.kind == "elementwise"))
            if not legal:
                lt, lo = label(t), label(o)
                why = ("not the same bytes in the same order" if op is not None and op.inplace
                       else f"{t.op} may not write in place")
                return _Problem("bad-inplace", o, f"{lt} = {t.op}(...) is written over the bytes "
                                f"of its operand {k} {lo} while reading it ({why})",
                                f"give {lt} bytes that do not overlap {lo}")
        return None

    # ------------------------------------------------------------------ liveness, from the graph

    def _root_of(self, t: Tensor) -> Tensor | None:
        w = self._window(t)
        return None if isinstance(w, _Problem) else w.root

    def _liveness(self) -> tuple[dict[Tensor, int], dict[int, list[Tensor]], set[Tensor]]:
        """Reads per root value in a run, the roots read at each step, and the roots
        read after the run (never poisoned during it)."""
        if self._counts is None:
            g, placements = self.graph, self.plan.placements
            count: dict[Tensor, int] = {}
            uses: dict[int, list[Tensor]] = {}
            for d, t in enumerate(self.plan.order):
                p = placements.get(t)
                if t.is_leaf or p is None or p.view_of is not None:
                    continue
                count.setdefault(t, 0)
                for o in t.inputs:
                    r = self._root_of(o)
                    if r is not None:
                        count[r] = count.get(r, 0) + 1
                        uses.setdefault(d, []).append(r)
            after = [*g.outputs.values(), *self.taps, *g.assigns.values(), *g.params.values()]
            after += [s for s in g.states.values() if s not in g.assigns]
            keep = {r for r in map(self._root_of, after) if r is not None}
            self._counts = (count, uses, keep)
        return self._counts

    # ------------------------------------------------------------------ a run

    def _execute(self, inputs: dict[str, Any], state: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        self._run += 1
        try:
            if self._pending is not None:
                raise _Fault(self._pending)
            return self._run_once(inputs, state)
        except _Fault as f:
            v = self.violation = f.violation
            raise AliasError([v], f"sanitizer: run {self._run} of @{self.graph.name} "
                                  f"reached a {v.kind} violation") from None

    def _run_once(self, inputs: dict[str, Any], state: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
        g, order = self.graph, self.plan.order
        self._current = {t: v for t, v in self._current.items() if t.op == "param"}
        self._poison(None, None)
        for name, t in g.inputs.items():
            self._store(t, self._root_window(t, None), np.asarray(inputs[name]), None)
        for name, t in g.states.items():  # exe.state is the truth: a caller may replace it
            self._store(t, self._root_window(t, None), np.asarray(state[name]), None)
        count, uses, keep = self._liveness()
        left = dict(count)
        for t in g.nodes:
            if t.is_leaf and t.op != "param" and t not in keep and not left.get(t, 0):
                self._poison(t, None)
        for d, t in enumerate(order):
            if t.is_leaf:
                continue
            p = self.plan.placements.get(t)
            if p is None:
                self._resolve(t, d)  # missing-placement
            if p is not None and p.view_of is not None:
                self._resolve(t, d)  # a view is only a window: check it is one
                continue
            what = f"is read by {label(t)} at step {d}"
            for o in t.inputs:
                self._check(o, "clobbered-read", what, d)
            w = self._root_window(t, d)
            self._check_write(t, w, d)
            value = evaluate_node(t, [self.view(o) for o in t.inputs])
            self._store(t, w, value, d)
            for r in uses.get(d, ()):
                left[r] -= 1
                if left[r] == 0 and r not in keep:
                    self._poison(r, d)
            if left.get(t, 0) == 0 and t not in keep:
                self._poison(t, d)
        return self._after_run(len(order))

    def _after_run(self, end: int) -> tuple[dict[str, Any], dict[str, Any]]:
        g = self.graph
        # every read first: the host reads any marked output, the state updates the values
        for name, o in g.outputs.items():
            self._check(o, "output-clobbered",
                        f"(output {name!r}) is read after the run (step {end})", end)
        for s, v in g.assigns.items():
            self._check(v, "clobbered-read", f"(the new value of state {s.name!r}) is read "
                        f"after the run (step {end})", end)
        # what each tap must still hold when the caller reads it, after the state updates
        tap_version = {o: self._current.get(self._resolve(o, end).root) for o in self.taps}
        outputs = {n: self.view(t).copy() for n, t in g.outputs.items() if n in self.reads}
        new_values = {s: self.view(v).copy() for s, v in g.assigns.items()}
        copied: dict[Tensor, tuple[int, Tensor]] = {}  # state -> (its new value's version,
        # that value), when the new value owns its bytes: what the state then holds a copy of
        for s, v in g.assigns.items():
            vw = self._resolve(v, end)
            if not vw.is_view and v in self._current:
                copied[s] = (self._current[v], v)
        updates: dict[int, tuple[int, Tensor, Tensor]] = {}  # new state version -> its source
        for s, value in new_values.items():  # then all state writes, at once
            self._store(s, self._root_window(s, end), value, end)
            if s in copied:
                updates[self._current[s]] = (*copied[s], s)
            else:
                updates[self._current[s]] = (NEVER, g.assigns[s], s)
        for o in self.taps:  # the caller reads the taps once run() has returned
            self._check_tap(o, tap_version[o], updates, end)
        for p in g.params.values():
            self._check(p, "param-written",
                        f"(a param) must keep its bytes to the end of the run (step {end})", end)
        for s in g.states.values():
            ls = label(s)
            self._check(s, "state-misassigned", f"(state {s.name!r}) must hold its value at "
                        f"the end of the run (step {end})", end,
                        fix=f"give state {ls} bytes that nothing else writes")
        return outputs, {s.leaf_name: value for s, value in new_values.items()}


@dataclass
class SanitizeResult:
    """What :func:`sanitize` saw: the first ``violation`` (None: every run was clean), and
    per completed run every marked output (whole), every state after the run and what
    ``read_buffer`` shows for every tap once the run has returned."""

    violation: Violation | None
    outputs: list[dict[str, np.ndarray]] = field(default_factory=list)
    states: list[dict[str, np.ndarray]] = field(default_factory=list)
    taps: list[dict[Tensor, np.ndarray]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no violation was found."""
        return self.violation is None


def _taps(g: Graph, reads: ReadsArg) -> list[Tensor]:
    """Tensors named in ``reads`` that are not outputs (output names and tensors only)."""
    if reads is None:
        return []
    if isinstance(reads, str):
        reads = parse_reads(reads)
    keys = reads.keys() if isinstance(reads, Mapping) else reads
    outs = set(g.outputs.values())
    by_name = {t.name: t for t in g.nodes if t.name is not None}
    taps: list[Tensor] = []
    for k in keys:
        if isinstance(k, Tensor):
            t = k
        elif k in g.outputs:
            continue
        elif k in by_name:
            t = by_name[k]
        else:
            raise GraphError(f"reads names {k!r}, which is neither an output nor a node of "
                             f"@{g.name}", fix=f"read one of {sorted(g.outputs)}")
        if t not in outs:
            taps.append(t)
    return taps


def sanitize(g: Graph, plan: MemoryPlan, params: Mapping[str, Any] | None,
             inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
             states: Mapping[str, Any] | None = None, reads: ReadsArg = None,
             runs: int = 2) -> SanitizeResult:
    """Run ``g`` ``runs`` times under ``plan`` with shadow memory; no static check first.

    ``inputs``: one mapping fed to every run, or a sequence of mappings, one per run (its
    length is then the number of runs). ``reads``: what the host reads after each run
    beyond the marked outputs (always all read): output names or tensors; a tensor that is
    not an output is a tap. A bad plan never raises: it becomes ``result.violation``.
    """
    feeds = [inputs] * runs if isinstance(inputs, Mapping) else list(inputs)
    exe = SanitizedArenaExecutable(g, params, Reads({n: "all" for n in g.outputs}), states,
                                   plan, taps=_taps(g, reads))
    result = SanitizeResult(None)
    for feed in feeds:
        try:
            out = exe.run(feed)
        except AliasError:
            if exe.violation is None:
                raise
            result.violation = exe.violation
            break
        result.outputs.append(out)
        result.states.append({k: np.array(v, copy=True) for k, v in exe.state.items()})
        result.taps.append({t: exe.read_buffer(t) for t in exe.taps})
    return result


__all__ = ["NEVER", "POISON", "SanitizeResult", "SanitizedArenaExecutable", "sanitize"]
