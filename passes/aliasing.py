"""The aliasing checker: proves a memory plan safe, or says exactly why it is not.

``check_aliasing(g, plan, reads)`` judges a plan as plain data, so plans made by hand, by
another tool or loaded from a file are checked the same way as graphc's own. It trusts
nothing in the plan and shares no code with the planner: it derives which bytes each
tensor covers and how long each value is needed from the graph itself, in this module.

What it proves, in order (a failing stage stops the later ones):

1. *Provenance*: the plan holds tensors of this graph object and its fingerprint is this
   graph's (``stale-plan``); the order lists each node once, every op after the ops that
   write what it reads (``bad-order``; leaves are written before the run and views run
   nothing, wherever they are listed);
   every tensor has a placement (``missing-placement``).
2. *Layout*, per tensor: a known region that fits its kind (params only in ``param``,
   states only in ``state``, nothing else written into ``param``; ``bad-region``,
   ``param-written``); a non-view is dense with ``nbytes`` equal to its size
   (``bad-layout``); a view sits exactly where the op table maps its source, in the
   source's region (``bad-view``); every byte inside its region (``out-of-bounds``);
   offsets aligned to the element size, and owned buffers to the plan's alignment
   (``misaligned``); an ``inplace_of`` label names operand 0 of an op that may write in
   place, at the same bytes (``bad-label``).
3. *Liveness*: each value (a tensor that owns bytes, not a view) is defined at its step
   (leaves before the run) and needed until its last reader, reads through views
   included. At the end of the run the caller's outputs are read and the state updates
   read every assigned value, all before any state is written; then every assigned state
   takes its new value. The caller reads taps after that, once ``run()`` has returned, so
   a tap with a byte where a state update writes must be that state's new value itself,
   written in place (``unmarked-tap`` otherwise: a view of a reassigned state reads the
   new value). Params are needed forever, and a state that is not assigned must still
   hold its value after the run. Writing a value over bytes of a value still needed later
   is a violation (``clobbered-read``, ``output-clobbered``, ``unmarked-tap``,
   ``param-written``, ``state-misassigned``); so is overwriting an operand of the same op,
   except an exact in-place write into operand 0 by an op that allows it
   (``bad-inplace``); two leaves on the same bytes, one of them read, are an ``overlap``
   (the plan does not say which is written last).

Some rules are stricter than any run can show, on purpose (:data:`CONSERVATIVE_KINDS`): a
plan must describe itself truthfully (fingerprint, labels, sizes, alignment, regions) even
where a lie does no harm today, and inputs, which belong to the caller, are never written.
The dynamic sanitizer (``gc.compile(..., backend="arena", sanitize=True)``) is the ground
truth this checker is tested against.

Each problem is a :class:`Violation` with a ``kind``, the ``tensor`` at risk, the op that
overwrites it (``clobbered_by``), the ``step`` and a one-line ``fix``.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from graphc.errors import AliasError, GraphError
from graphc.graph import Graph
from graphc.naming import label
from graphc.ops import MAX_REGION_BYTES, OP_TABLE, contiguous_strides, view_layout
from graphc.passes.memory import MemoryPlan, Placement, fingerprint
from graphc.reads import ReadsArg, parse_reads
from graphc.tensor import Tensor

Kind = Literal["overlap", "clobbered-read", "unmarked-tap", "output-clobbered", "param-written",
               "input-written", "state-misassigned", "stale-plan", "bad-order",
               "missing-placement", "out-of-bounds", "bad-view", "bad-inplace", "bad-region",
               "bad-layout", "bad-label", "misaligned", "order-mismatch"]
KINDS: tuple[str, ...] = get_args(Kind)

CONSERVATIVE_KINDS: frozenset[str] = frozenset({
    "stale-plan",    # a plan for another graph (version) is refused even where it would fit
    "bad-label",     # an inplace_of label that does not describe the write
    "bad-view",      # a view layout the op table does not give (harmless while unread)
    "bad-layout",    # nbytes or strides of a dense value that do not match its type
    "bad-region",    # a leaf outside its own region
    "misaligned",    # an owned buffer off the plan's declared alignment
    "input-written",  # an in-place write into an input, which belongs to the caller
    "overlap",       # leaves on shared bytes: which one is written last is not in the plan
    "order-mismatch",  # the order leaves out or repeats a node (harmless for one not needed)
})
"""Kinds that may be reported for a plan that still runs correctly: rules about the plan
describing itself truthfully, kept on purpose. Every other kind is a real hazard."""

REGIONS = ("arena", "state", "param")
AFTER_RUN = "after the run"


@dataclass(frozen=True)
class Violation:
    """One reason a plan is not safe."""

    kind: Kind
    tensor: Tensor | None
    clobbered_by: Tensor | None
    step: int | None
    fix: str
    detail: str = ""

    def __str__(self) -> str:
        parts = [f"{self.kind}:"]
        if self.tensor is not None:
            parts.append(f"{label(self.tensor)} ({self.tensor.op})")
        if self.clobbered_by is not None:
            parts.append(f"overwritten by {label(self.clobbered_by)} ({self.clobbered_by.op})")
        if self.step is not None:
            parts.append(f"at step {self.step}")
        head = " ".join(parts)
        sep = " " if len(parts) == 1 else "; "
        return f"{head}{sep + self.detail if self.detail else ''} -- fix: {self.fix}"


def _caller_reads(g: Graph, reads: ReadsArg) -> set[Tensor]:
    """The tensors ``reads`` names (outputs by name, any tensor by object or name)."""
    if reads is None:
        return set()
    if isinstance(reads, str):
        reads = parse_reads(reads)
    keys = reads.keys() if isinstance(reads, Mapping) else reads
    named = {t.name: t for t in g.nodes if t.name is not None}
    outputs = g.outputs
    found: set[Tensor] = set()
    for k in keys:
        if isinstance(k, Tensor):
            if k.graph is not g:
                raise GraphError(f"read {k!r} is a tensor of another graph @{k.graph.name}",
                                 fix="name tensors of the graph the plan is checked for")
            found.add(k)
        elif k in outputs:
            found.add(outputs[k])
        elif k in named:
            found.add(named[k])
        else:
            raise GraphError(f"read {k!r} is neither an output nor a named tensor of @{g.name}",
                             fix=f"outputs are {sorted(outputs)}")
    return found


def _span(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> tuple[int, int]:
    """(lowest, highest + 1) byte, relative to the first element, that a strided window of
    ``shape`` touches; (0, 0) when it has no element."""
    if math.prod(shape) == 0:
        return 0, 0
    lo = sum((d - 1) * s for d, s in zip(shape, strides, strict=True) if s < 0)
    hi = sum((d - 1) * s for d, s in zip(shape, strides, strict=True) if s > 0)
    return lo * itemsize, (hi + 1) * itemsize


def _same_layout(shape: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """True when strides ``a`` and ``b`` put every element of ``shape`` at the same place
    (strides of axes of extent 1 or less never matter)."""
    return len(a) == len(b) == len(shape) and all(
        x == y for d, x, y in zip(shape, a, b, strict=True) if d > 1)


def _compact(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """True when the elements of a strided window fill its span with no gap and no
    repeat (a dense layout, in any axis order)."""
    dims = sorted((abs(s), d) for d, s in zip(shape, strides, strict=True) if d > 1)
    want = 1
    for stride, dim in dims:
        if stride != want:
            return False
        want *= dim
    return True


Read = tuple[int, str, Tensor]  # (step, why, the tensor read: a value or a view of it)
WHY_ORDER = ("op", "output", "tap", "assigned", "state", "param")


class _Check:
    """One run of the checker: the plan, the graph and the violations found so far."""

    def __init__(self, g: Graph, plan: MemoryPlan, reads: ReadsArg) -> None:
        self.g = g
        self.plan = plan
        self.reads = reads
        self.found: list[Violation] = []
        self.P: dict[Tensor, Placement] = {}
        self.pos: dict[Tensor, int] = {}
        self.views: dict[Tensor, Tensor] = {}
        self.assigned: dict[Tensor, Tensor] = {}
        self.taps: set[Tensor] = set()  # tensors the caller reads that are not outputs
        self.starts: dict[Tensor, np.ndarray] = {}  # element byte offsets of strided windows

    def add(self, kind: Kind, t: Tensor | None, by: Tensor | None, step: int | None, fix: str,
            detail: str = "") -> None:
        self.found.append(Violation(kind, t, by, step, fix, detail))

    # ------------------------------------------------------------------ 1. provenance
    def provenance(self) -> bool:
        g, plan = self.g, self.plan
        foreign = next((t for t in [*plan.order, *plan.placements] if t.graph is not g), None)
        if foreign is not None or plan.fingerprint != fingerprint(g):
            why = (f"it holds {label(foreign)} of graph @{foreign.graph.name}, another graph "
                   f"object" if foreign is not None else
                   f"the plan's fingerprint is not this graph's (made for @{plan.graph_name})")
            self.add("stale-plan", None, None, None,
                     "re-plan for this graph (graphc.passes.plan_memory(g)), or load a saved "
                     "plan against it (graphc.passes.load_plan(path, g))", why)
            return False
        nodes = g.nodes
        for i, t in enumerate(plan.order):
            if t in self.pos:
                self.add("order-mismatch", t, None, i, "list every node of the graph once",
                         "the order lists it twice")
            self.pos.setdefault(t, i)
        missing = [t for t in nodes if t not in self.pos]
        if missing:
            self.add("order-mismatch", missing[0], None, None,
                     "list every node of the graph once",
                     f"the order leaves out {len(missing)} node(s)")
        if self.found:
            return False
        for t in plan.order:
            if self.is_window(t):
                continue  # a view runs nothing: where it is listed does not matter
            for o in t.inputs:
                src = o  # what writes the bytes t reads: o, or the source its views lead to
                while self.is_window(src):
                    src = src.inputs[0]
                if not src.is_leaf and self.pos[src] >= self.pos[t]:
                    self.add("bad-order", t, None, self.pos[t], "order the nodes topologically",
                             f"it runs before {label(src)}, which writes what it reads")
        if self.found:
            return False
        for t in nodes:
            if t not in plan.placements:
                self.add("missing-placement", t, None, self.pos[t],
                         "give every tensor a placement")
        if self.found:
            return False
        self.P = dict(plan.placements)
        return True

    def is_window(self, t: Tensor) -> bool:
        """True when the plan places ``t`` as a view (a window that nothing writes)."""
        p = self.plan.placements.get(t)
        return p is not None and p.view_of is not None and bool(t.inputs)

    # ------------------------------------------------------------------ 2. layout
    def strides_of(self, t: Tensor) -> tuple[int, ...]:
        p = self.P[t]
        return tuple(p.strides) if p.strides is not None else contiguous_strides(t.shape)

    def layout(self) -> tuple[dict[Tensor, Tensor], bool]:
        """Check every placement; return the view edges that hold (view -> source), and
        whether the layouts can be read at all (False: stop before liveness)."""
        plan, P = self.plan, self.P
        limit = {"arena": plan.arena_bytes, "state": plan.state_bytes,
                 "param": plan.param_bytes}
        for region, size in limit.items():
            if size > MAX_REGION_BYTES:
                self.add("out-of-bounds", None, None, None,
                         f"keep each region under {MAX_REGION_BYTES:,} B",
                         f"the {region} region claims {size:,} B")
        readable = not self.found
        views: dict[Tensor, Tensor] = {}
        for t in plan.order:
            p, step = P[t], self.pos[t]
            if p.region not in REGIONS:
                self.add("out-of-bounds", t, None, step, "use region arena, state or param",
                         f"unknown region {p.region!r}")
                readable = False
                continue
            if p.strides is not None and (
                    len(p.strides) != t.ndim
                    or any(abs(x) * t.itemsize > max(limit[p.region], t.itemsize)
                           for x in p.strides)):
                self.add("bad-layout", t, None, step,
                         f"give strides, one per axis of {t.type_str}, that stay inside the "
                         f"region", f"strides {p.strides}")
                readable = False
                continue
            if p.view_of is not None:
                self.view(t, views)
            else:
                dense = contiguous_strides(t.shape)
                if not _same_layout(t.shape, self.strides_of(t), dense) \
                        or p.nbytes != t.nbytes:
                    self.add("bad-layout", t, None, step,
                             "give a value that owns its bytes dense row-major strides and "
                             "nbytes equal to its size",
                             f"strides {p.strides}, nbytes {p.nbytes}; its type needs "
                             f"{dense} and {t.nbytes}")
                if p.offset % max(plan.alignment, 1) and t.nbytes and p.inplace_of is None:
                    # (a write in place sits where its operand is: bad-label checks that)
                    self.add("misaligned", t, None, step,
                             f"start owned buffers at multiples of {plan.alignment} B",
                             f"offset {p.offset}")
            if p.offset % t.itemsize:
                self.add("misaligned", t, None, step,
                         f"start it at a multiple of its element size {t.itemsize} B",
                         f"offset {p.offset}")
            lo, hi = _span(t.shape, self.strides_of(t), t.itemsize)
            lo, hi = (lo, hi) if hi > lo else (0, 0)  # an empty tensor still sits somewhere
            if p.offset + lo < 0 or p.offset + hi > limit[p.region]:
                self.add("out-of-bounds", t, None, step,
                         f"keep it inside the {p.region} region of {limit[p.region]:,} B",
                         f"it covers bytes {p.offset + lo}..{p.offset + hi}")
            self.region(t)
            if p.inplace_of is not None:
                self.inplace_label(t)
        return views, readable

    def view(self, t: Tensor, views: dict[Tensor, Tensor]) -> None:
        p, src = self.P[t], self.P[t].view_of
        assert src is not None
        sp = self.P.get(src)
        op = OP_TABLE.get(t.op)
        why = ""
        if op is None or op.view is None or t.inputs[:1] != (src,) or sp is None:
            why = f"{t.op} is not a view of {label(src)}"
        else:
            got = view_layout(t.op, src.shape, self.strides_of(src), t.attrs)
            strides = self.strides_of(t)
            lo, hi = _span(t.shape, strides, t.itemsize)
            if got is None:
                why = f"{t.op} cannot view {label(src)} as laid out"
            elif sp.region != p.region or p.offset != sp.offset + got[0] * t.itemsize \
                    or not _same_layout(t.shape, strides, tuple(got[1])):
                why = (f"it is at {p.region}+{p.offset} strides {strides}; the op puts it at "
                       f"{sp.region}+{sp.offset + got[0] * t.itemsize} strides {got[1]}")
            elif p.nbytes != hi - lo:
                why = f"nbytes {p.nbytes}, but the window spans {hi - lo}"
        if why:
            self.add("bad-view", t, None, self.pos[t],
                     "a view must sit exactly where its op maps its source", why)
        else:
            views[t] = src

    def region(self, t: Tensor) -> None:
        p, step = self.P[t], self.pos[t]
        home = {"param": "param", "state": "state"}.get(t.op)
        if home is not None and p.region != home:
            self.add("bad-region", t, None, step, f"place {t.op}s in the {home} region",
                     f"it is in the {p.region} region")
        elif t.op == "input" and p.region != "arena":
            self.add("bad-region", t, None, step, "place inputs in the arena",
                     f"it is in the {p.region} region")
        elif p.region == "param" and p.view_of is None and t.op != "param":
            self.add("param-written", None, t, step,
                     "params are read-only: place values in the arena",
                     f"{label(t)} is written into the param region")

    def inplace_label(self, t: Tensor) -> None:
        p, u = self.P[t], self.P[t].inplace_of
        assert u is not None
        up = self.P.get(u)
        op = OP_TABLE.get(t.op)
        if (op is None or not op.inplace or t.inputs[:1] != (u,) or up is None
                or (up.region, up.offset) != (p.region, p.offset)
                or (u.shape, u.dtype) != (t.shape, t.dtype)
                or not _same_layout(t.shape, self.strides_of(u), self.strides_of(t))):
            self.add("bad-label", t, None, self.pos[t],
                     "label a write in place only when it is into operand 0, at its exact "
                     "bytes, with an op that allows it (or drop the inplace_of label)",
                     f"labelled as in place over {label(u)}")

    # ------------------------------------------------------------------ 3. liveness
    def liveness(self, views: dict[Tensor, Tensor]) -> None:
        """Sweep the values in the order they are written; each write must not meet a
        byte that a later read of another value still needs (see the module doc)."""
        g, P, pos = self.g, self.P, self.pos
        n = len(self.plan.order)
        self.views = views
        owners = [t for t in self.plan.order if P[t].view_of is None and P[t].region in REGIONS]
        born = {t: -1 if t.is_leaf else pos[t] for t in owners}
        # every read of each value: (step, why, the tensor read: the value or a view of it)
        reads: dict[Tensor, list[Read]] = {t: [] for t in owners}

        def read(t: Tensor, step: int, why: str) -> None:
            r = self.root(t)
            if r in reads:
                reads[r].append((step, why, t))

        for t in self.plan.order:
            if t not in views:  # a view reads nothing itself: its readers read its root
                for o in t.inputs:
                    read(o, pos[t], "op")
        outputs = set(g.outputs.values())
        for t in outputs:
            read(t, n, "output")
        for t in _caller_reads(g, self.reads) - outputs:
            read(t, n, "tap")  # read to the end here; after the state updates too (below)
        self.assigned = {v: s for s, v in g.assigns.items()}
        for v in self.assigned:
            read(v, n, "assigned")
        for t in owners:
            if t.op == "param":
                read(t, n + 1, "param")  # the next run reads it too
            elif t.op == "state" and t not in g.assigns:
                read(t, n, "state")  # an unassigned state keeps its value to the next run
        self.taps = _caller_reads(g, self.reads) - outputs
        need = {t: max((r[0] for r in reads[t]), default=-1) for t in owners}

        # Live values sit per region in a list sorted by offset, expired through a heap
        # on their last needed step, so a write looks only at its byte neighbours.
        span = {t: (P[t].offset, P[t].offset + t.nbytes) for t in owners}
        live: dict[str, list[tuple[int, int, Tensor]]] = {}
        widest: dict[str, int] = {}
        expiry: list[tuple[int, int, Tensor]] = []
        reported: set[Tensor] = set()
        by_step = sorted(owners, key=lambda t: born[t])
        i = 0
        while i < len(by_step):
            d = born[by_step[i]]
            group = []
            while i < len(by_step) and born[by_step[i]] == d:
                group.append(by_step[i])
                i += 1
            while expiry and expiry[0][0] < d:
                _, _, u = heapq.heappop(expiry)
                lst = live[P[u].region]
                del lst[bisect.bisect_left(lst, (span[u][0], u.uid))]
            for v in group:
                region = P[v].region
                lo, hi = span[v]
                lst = live.setdefault(region, [])
                if hi > lo:
                    k = bisect.bisect_left(lst, (hi,))
                    reach = widest.get(region, 0)
                    while k > 0:
                        k -= 1
                        off, _, u = lst[k]
                        if off + reach <= lo:
                            break  # nothing further left reaches lo
                        if span[u][1] > lo and span[u][0] < span[u][1] \
                                and u not in reported and self.judge_write(u, v, d, reads, lo, hi):
                            reported.add(u)
                bisect.insort(lst, (lo, v.uid, v))
                widest[region] = max(widest.get(region, 0), hi - lo)
                heapq.heappush(expiry, (need[v], v.uid, v))
        self.state_updates(owners)
        self.taps_after_updates()

    def root(self, t: Tensor) -> Tensor:
        """The value whose bytes ``t`` reads: ``t``, or the source its views lead to."""
        while t in self.views:
            t = self.views[t]
        return t

    def judge_write(self, u: Tensor, v: Tensor, d: int, reads: dict[Tensor, list[Read]],
                    lo: int, hi: int) -> bool:
        """Report (and return True) when writing ``v`` at step ``d`` over bytes
        ``lo..hi`` breaks a read of ``u``, written before."""
        if d < 0:  # two leaves, both written before the run in an order the plan omits
            ulo, uhi = self.P[u].offset, self.P[u].offset + u.nbytes
            if any(self.meets(o, lo, hi) for _, _, o in reads[u]) or any(
                    self.meets(o, ulo, uhi) for _, _, o in reads[v]):
                self.add("overlap", u, v, None, "give them disjoint bytes",
                         f"{label(u)} and {label(v)} are both written before the run, and "
                         f"one is read where the other lies")
                return True
            return False
        hits = sorted((r for r in reads[u] if r[0] >= d and self.meets(r[2], lo, hi)),
                      key=lambda r: (r[0], WHY_ORDER.index(r[1])))
        if not hits:
            return False
        if hits[-1][0] > d:
            self.add(*self.clobber(u, v, d, next(r for r in hits if r[0] > d)))
            return True
        if not self.exact_inplace(v, u, lo, hi):
            self.add("bad-inplace", u, v, d,
                     f"give {label(v)} bytes of its own, or make it an exact in-place write "
                     f"into operand 0 with an op that allows it",
                     f"{label(v)} overwrites its operand {label(u)} while reading it")
            return True
        if u.op == "input":
            self.add("input-written", u, v, d,
                     f"inputs belong to the caller: drop inplace=True on {label(v)} or "
                     f"g.copy() the input first",
                     f"{label(v)} is written in place over input {u.name!r}")
            return True
        return False

    def meets(self, o: Tensor, lo: int, hi: int) -> bool:
        """True when a byte of ``o``'s window (its elements at its placement) lies in
        ``lo..hi``: exact, also for strided windows with gaps."""
        p = self.P[o]
        strides = self.strides_of(o)
        a, b = _span(o.shape, strides, o.itemsize)
        if b <= a or p.offset + a >= hi or p.offset + b <= lo:
            return False
        if _compact(o.shape, strides):
            return True
        starts = self.starts.get(o)
        if starts is None:
            starts = p.offset + np.zeros((), np.int64)
            for dim, stride in zip(o.shape, strides, strict=True):
                starts = starts[..., None] + np.arange(dim, dtype=np.int64) * (
                    stride * o.itemsize)
            starts = self.starts[o] = starts.ravel()
        return bool(np.any((starts < hi) & (starts + o.itemsize > lo)))

    def exact_inplace(self, v: Tensor, u: Tensor, lo: int, hi: int) -> bool:
        """True when ``v`` may overwrite ``u`` while reading it: an op that allows in-place
        writes reads ``u`` as operand 0 through a window with exactly ``v``'s bytes, and
        any other operand that reads those bytes is an elementwise operand with exactly
        the same window (``add(a, a)`` in place over ``a``)."""
        op = OP_TABLE.get(v.op)
        if op is None or not op.inplace or not v.inputs:
            return False
        a = v.inputs[0]
        if self.root(a) is not u or not self.same_window(a, v):
            return False
        return not any(self.root(o) is u and self.meets(o, lo, hi)
                       and not (op.kind == "elementwise" and self.same_window(o, v))
                       for o in v.inputs[1:])

    def same_window(self, o: Tensor, v: Tensor) -> bool:
        """True when operand ``o`` is read from exactly the bytes ``v`` is written to, in
        the same element order."""
        po, pv = self.P[o], self.P[v]
        return ((o.shape, o.dtype) == (v.shape, v.dtype)
                and (po.region, po.offset) == (pv.region, pv.offset)
                and _same_layout(v.shape, self.strides_of(o), contiguous_strides(v.shape)))

    def clobber(self, u: Tensor, v: Tensor, d: int, hit: Read
                ) -> tuple[Kind, Tensor, Tensor, int, str, str]:
        """The violation for ``v`` (written at ``d``) overwriting bytes of ``u`` that
        ``hit`` (step, why, tensor read) still reads."""
        lu, lv = label(u), label(v)
        step, why, o = hit
        if why == "param":
            return ("param-written", u, v, d, f"params are read-only: give {lv} other bytes",
                    f"{lv} is written over param {u.name!r}")
        if why == "op":
            through = "" if o is u else f" through {label(o)}"
            if u.op == "state":
                return ("clobbered-read", u, v, d,
                        f"update state {u.name!r} only after its last reader",
                        f"the old value of state {u.name!r} is still read{through} at step "
                        f"{step}")
            return ("clobbered-read", u, v, d,
                    f"give {lv} other bytes, or run it after {lu}'s last reader",
                    f"{lu} is still read{through} at step {step}")
        if why == "output":
            return ("output-clobbered", u, v, d,
                    f"outputs live to the end of the run: give {lv} bytes of its own",
                    f"output {label(o)} is read {AFTER_RUN}")
        if why == "tap":
            return ("unmarked-tap", u, v, d,
                    f'mark {label(o)} as an output, g.set_output(t, "{o.name or "name"}"), '
                    f"so its buffer lives to the end (or compile with taps='protect')",
                    f"{label(o)} is read {AFTER_RUN} but is not an output")
        if why == "assigned":
            s = self.assigned[o]
            return ("clobbered-read", u, v, d,
                    f"keep {label(o)} live to the end of the run, or compute it in place "
                    f"into state {s.name!r}",
                    f"{label(o)} is the new value of state {s.name!r}, read {AFTER_RUN}")
        return ("state-misassigned", u, v, d,
                f"give {lv} bytes outside state {u.name!r}: a state that is not assigned "
                f"keeps its value to the next run",
                f"state {u.name!r} would hold {lv} {AFTER_RUN}")

    def state_updates(self, owners: list[Tensor]) -> None:
        """After the run every assigned state takes its new value: no two states may
        share a byte when one of them is written then (unassigned ones already may not)."""
        states = sorted((t for t in owners if t.op == "state" and t.nbytes),
                        key=lambda t: (self.P[t].region, self.P[t].offset))
        for k, a in enumerate(states):
            pa = self.P[a]
            for b in states[k + 1:]:
                pb = self.P[b]
                if pb.region != pa.region or pb.offset >= pa.offset + a.nbytes:
                    break
                if a in self.g.assigns or b in self.g.assigns:
                    written = a if a in self.g.assigns else b
                    self.add("state-misassigned", b if written is a else a, written, None,
                             "give every state bytes of its own",
                             f"states {a.name!r} and {b.name!r} share bytes, and the new "
                             f"value of {written.name!r} is written there {AFTER_RUN}")

    def taps_after_updates(self) -> None:
        """The caller reads a tap once the run has returned, after every state update: a
        tap with a byte where an assigned state takes its new value reads that new value,
        which is its own only when the tap is (a view of) the new value itself, written
        in place into the state's bytes."""
        g, P, end = self.g, self.P, len(self.plan.order)
        for o in sorted(self.taps, key=lambda t: self.pos.get(t, -1)):
            root = self.root(o)
            for s, v in g.assigns.items():
                ps, pv = P[s], P[v]
                if P[o].region != ps.region or not s.nbytes \
                        or not self.meets(o, ps.offset, ps.offset + s.nbytes):
                    continue
                if root is v and pv.view_of is None \
                        and (pv.region, pv.offset) == (ps.region, ps.offset):
                    continue  # the tap reads the state's new value, which is its own
                lo = label(o)
                fix = (f"read exe.state[{s.name!r}] for the new value, or mark a copy, "
                       f"g.set_output(g.copy(s), ...), for the value the run read"
                       if o.op == "state" else
                       f"give {lo} bytes of its own, apart from state {s.name!r} (the "
                       f"planner does when reads= names the tap: its view op then copies "
                       f"it out), or read it as an output, which run() returns before the "
                       f"state updates")
                self.add("unmarked-tap", o, v, end, fix,
                         f"{lo} is read after the run returns, but by then the update of "
                         f"state {s.name!r} has written its new value {label(v)} over "
                         f"{lo}'s bytes")
                break


def check_aliasing(g: Graph, plan: MemoryPlan, reads: ReadsArg = None) -> list[Violation]:
    """Every violation of ``plan`` for ``g`` (empty: proven safe).

    ``reads``: what the caller reads after the run besides the outputs, which are always
    readable (output names, tensors, or names of tensors; a tensor that is not an output
    is a tap, read after the state updates, and a tap that is overwritten -- during the
    run, or by a state update -- is reported as ``unmarked-tap``).
    """
    c = _Check(g, plan, reads)
    if c.provenance():
        views, readable = c.layout()
        if readable:
            c.liveness(views)
    return c.found


def assert_safe(g: Graph, plan: MemoryPlan, reads: ReadsArg = None) -> None:
    """Raise :class:`graphc.AliasError` listing the violations unless the plan is safe."""
    found = check_aliasing(g, plan, reads)
    if found:
        raise AliasError(found, f"memory plan for @{g.name} is not safe: {len(found)} "
                                f"violation(s)")


__all__ = ["CONSERVATIVE_KINDS", "KINDS", "Violation", "assert_safe", "check_aliasing"]
