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
   included. After the run the caller reads every output and every tap, and the state
   updates read every assigned value (all before any state is written); params are
   needed forever, and a state that is not assigned must still hold its value after the
   run. Writing a value over bytes of a value still needed later is a violation
   (``clobbered-read``, ``output-clobbered``, ``unmarked-tap``, ``param-written``,
   ``state-misassigned``); so is overwriting an operand of the same op, except an exact
   in-place write into operand 0 by an op that allows it (``bad-inplace``); two leaves on
   the same bytes, one of them read, are an ``overlap`` (the plan does not say which is
   written last).

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
from typing import Literal

from graphc.passes.memory import MemoryPlan, Placement, fingerprint

from graphc.graph import Graph
from graphc.ops import OP_TABLE, contiguous_strides, view_layout
from graphc.reads import ReadsArg, parse_reads
from graphc.tensor import Tensor
from graphc.text import label

Kind = Literal["overlap", "clobbered-read", "unmarked-tap", "output-clobbered", "param-written",
               "input-written", "state-misassigned", "stale-plan", "bad-order",
               "missing-placement", "out-of-bounds", "bad-view", "bad-inplace", "bad-region",
               "bad-layout", "bad-label", "misaligned"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]

CONSERVATIVE_KINDS: frozenset[str] = frozenset({
    "stale-plan",    # a plan for another graph (version) is refused even where it would fit
    "bad-label",     # an inplace_of label that does not describe the write
    "bad-view",      # a view layout the op table does not give (harmless while unread)
    "bad-layout",    # nbytes or strides of a dense value that do not match its type
    "bad-region",    # a leaf outside its own region
    "misaligned",    # an owned buffer off the plan's declared alignment
    "input-written",  # an in-place write into an input, which belongs to the caller
    "overlap",       # leaves on shared bytes: which one is written last is not in the plan
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
            found.add(k)
        elif k in outputs:
            found.add(outputs[k])
        elif k in named:
            found.add(named[k])
        else:
            from graphc.errors import GraphError

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


class _Check:
    """One run of the checker: the plan, the graph and the violations found so far."""

    def __init__(self, g: Graph, plan: MemoryPlan, reads: ReadsArg) -> None:
        self.g = g
        self.plan = plan
        self.reads = reads
        self.found: list[Violation] = []
        self.P: dict[Tensor, Placement] = {}
        self.pos: dict[Tensor, int] = {}

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
                self.add("bad-order", t, None, i, "list every node of the graph once",
                         "the order lists it twice")
            self.pos.setdefault(t, i)
        missing = [t for t in nodes if t not in self.pos]
        if missing:
            self.add("bad-order", missing[0], None, None, "list every node of the graph once",
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

    def layout(self) -> dict[Tensor, Tensor]:
        """Check every placement; return the view edges that hold (view -> source)."""
        plan, P = self.plan, self.P
        limit = {"arena": plan.arena_bytes, "state": plan.state_bytes,
                 "param": plan.param_bytes}
        views: dict[Tensor, Tensor] = {}
        for t in plan.order:
            p, step = P[t], self.pos[t]
            if p.region not in REGIONS:
                self.add("out-of-bounds", t, None, step, "use region arena, state or param",
                         f"unknown region {p.region!r}")
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
                if p.offset % max(plan.alignment, 1) and t.nbytes:
                    self.add("misaligned", t, None, step,
                             f"start owned buffers at multiples of {plan.alignment} B",
                             f"offset {p.offset}")
            if p.offset % t.itemsize:
                self.add("misaligned", t, None, step,
                         f"start it at a multiple of its element size {t.itemsize} B",
                         f"offset {p.offset}")
            lo, hi = _span(t.shape, self.strides_of(t), t.itemsize)
            if hi > lo and (p.offset + lo < 0 or p.offset + hi > limit[p.region]):
                self.add("out-of-bounds", t, None, step,
                         f"keep it inside the {p.region} region of {limit[p.region]:,} B",
                         f"it covers bytes {p.offset + lo}..{p.offset + hi}")
            self.region(t)
            if p.inplace_of is not None:
                self.inplace_label(t)
        return views

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
        g, P, pos = self.g, self.P, self.pos
        n = len(self.plan.order)

        def root(t: Tensor) -> Tensor:
            while t in views:
                t = views[t]
            return t

        owners = [t for t in self.plan.order if P[t].view_of is None and P[t].region in REGIONS]
        born = {t: -1 if t.is_leaf else pos[t] for t in owners}
        last_read = dict.fromkeys(owners, -1)  # the last step an op reads it
        for t in self.plan.order:
            if t in views:
                continue  # a view reads nothing itself: its readers read its root
            for o in t.inputs:
                r = root(o)
                if r in last_read:
                    last_read[r] = max(last_read[r], pos[t])
        outputs = {root(t) for t in g.outputs.values()}
        taps = {root(t) for t in _caller_reads(g, self.reads)} - outputs
        assigned = {root(v): s for s, v in g.assigns.items()}
        forever = n + 1  # params: the next run reads them too
        need = dict(last_read)
        for t in owners:
            if t in outputs or t in taps or t in assigned:
                need[t] = n
            if t.op == "state" and t not in g.assigns:
                need[t] = n  # an unassigned state keeps its value to the next run
            if t.op == "param":
                need[t] = forever

        # the sweep: values by definition step; at each definition the new value's bytes
        # must not cover a value still needed. Live values sit per region in a list sorted
        # by offset, expired through a heap on their last needed step.
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
                        if span[u][1] <= lo or span[u][0] == span[u][1] or u in reported:
                            continue
                        if born[u] == d:
                            if need[u] < 0 and need[v] < 0:
                                continue  # leaves nobody reads may share bytes
                            self.add("overlap", u, v, None, "give them disjoint bytes",
                                     f"{label(u)} and {label(v)} are both written before "
                                     f"the run")
                            reported.add(u)
                        elif need[u] > d or (last_read[u] == d
                                             and self.reads_overlap(v, u, views)
                                             and not self.exact_inplace(v, u, views)):
                            self.add(*self.clobber(u, v, d, need, last_read, outputs, taps,
                                                   assigned, n))
                            reported.add(u)
                        elif last_read[u] == d and u.op == "input":
                            self.add("input-written", u, v, d,
                                     f"inputs belong to the caller: drop inplace=True on "
                                     f"{label(v)} or g.copy() the input first",
                                     f"{label(v)} is written in place over input {u.name!r}")
                            reported.add(u)
                bisect.insort(lst, (lo, v.uid, v))
                widest[region] = max(widest.get(region, 0), hi - lo)
                heapq.heappush(expiry, (need[v], v.uid, v))

    def reads_overlap(self, v: Tensor, u: Tensor, views: dict[Tensor, Tensor],
                      operands: tuple[Tensor, ...] | None = None) -> bool:
        """True when one of ``operands`` (default: all of ``v``'s) reads ``u``'s bytes
        and its window (taken as its byte extent) meets the bytes ``v`` writes."""
        pv = self.P[v]
        lo, hi = pv.offset, pv.offset + v.nbytes
        for o in v.inputs if operands is None else operands:
            r = o
            while r in views:
                r = views[r]
            if r is u:
                po = self.P[o]
                olo, ohi = _span(o.shape, self.strides_of(o), o.itemsize)
                if ohi > olo and po.offset + olo < hi and lo < po.offset + ohi:
                    return True
        return False

    def exact_inplace(self, v: Tensor, u: Tensor, views: dict[Tensor, Tensor]) -> bool:
        """True when ``v`` may overwrite ``u`` while reading it: an op that allows in-place
        writes reads ``u`` as operand 0 through a window with exactly ``v``'s bytes, and
        any other operand that reads those bytes is an elementwise operand with exactly
        the same window (``add(a, a)`` in place over ``a``)."""
        op = OP_TABLE.get(v.op)
        if op is None or not op.inplace or not v.inputs:
            return False
        a = v.inputs[0]
        r = a
        while r in views:
            r = views[r]
        if r is not u or not self.same_window(a, v):
            return False
        others = tuple(o for o in v.inputs[1:]
                       if not (op.kind == "elementwise" and self.same_window(o, v)))
        return not self.reads_overlap(v, u, views, others)

    def same_window(self, o: Tensor, v: Tensor) -> bool:
        """True when operand ``o`` is read from exactly the bytes ``v`` is written to, in
        the same element order."""
        po, pv = self.P[o], self.P[v]
        return ((o.shape, o.dtype) == (v.shape, v.dtype)
                and (po.region, po.offset) == (pv.region, pv.offset)
                and _same_layout(v.shape, self.strides_of(o), contiguous_strides(v.shape)))

    def clobber(self, u: Tensor, v: Tensor, d: int, need: dict[Tensor, int],
                last_read: dict[Tensor, int], outputs: set[Tensor], taps: set[Tensor],
                assigned: dict[Tensor, Tensor], n: int
                ) -> tuple[Kind, Tensor, Tensor, int, str, str]:
        """The violation for ``v`` (defined at ``d``) overwriting ``u``, still needed."""
        lu, lv = label(u), label(v)
        if u.op == "param":
            return ("param-written", u, v, d, f"params are read-only: give {lv} other bytes",
                    f"{lv} is written over param {u.name!r}")
        if last_read[u] == d and need[u] <= d:
            return ("bad-inplace", u, v, d,
                    f"give {lv} bytes of its own, or make it an exact in-place write into "
                    f"operand 0 with an op that allows it",
                    f"{lv} overwrites its operand {lu} while reading it")
        if last_read[u] > d:
            if u.op == "state":
                return ("clobbered-read", u, v, d,
                        f"update state {u.name!r} only after its last reader",
                        f"the old value of state {u.name!r} is still read at step "
                        f"{last_read[u]}")
            return ("clobbered-read", u, v, d,
                    f"give {lv} other bytes, or run it after {lu}'s last reader",
                    f"{lu} is still read at step {last_read[u]}")
        if u in outputs:
            return ("output-clobbered", u, v, d,
                    f"outputs live to the end of the run: give {lv} bytes of its own",
                    f"output {lu} is read {AFTER_RUN}")
        if u in taps:
            return ("unmarked-tap", u, v, d,
                    f'mark {lu} as an output, g.set_output(t, "{u.name or "name"}"), so its '
                    f"buffer lives to the end (or compile with taps='protect')",
                    f"{lu} is read {AFTER_RUN} but is not an output")
        if u in assigned:
            s = assigned[u]
            return ("clobbered-read", u, v, d,
                    f"keep {lu} live to the end of the run, or compute it in place into "
                    f"state {s.name!r}",
                    f"{lu} is the new value of state {s.name!r}, read {AFTER_RUN}")
        return ("state-misassigned", u, v, d,
                f"give {lv} bytes outside state {u.name!r}: a state that is not assigned "
                f"keeps its value to the next run",
                f"state {u.name!r} would hold {lv} {AFTER_RUN}")


def check_aliasing(g: Graph, plan: MemoryPlan, reads: ReadsArg = None) -> list[Violation]:
    """Every violation of ``plan`` for ``g`` (empty: proven safe).

    ``reads``: what the caller reads after the run besides the outputs, which are always
    readable (output names, tensors, or names of tensors; a tensor that is not an output
    is a tap, and a tap that is overwritten is reported as ``unmarked-tap``).
    """
    c = _Check(g, plan, reads)
    if c.provenance():
        views = c.layout()
        c.liveness(views)
    return c.found


def assert_safe(g: Graph, plan: MemoryPlan, reads: ReadsArg = None) -> None:
    """Raise :class:`graphc.AliasError` listing the violations unless the plan is safe."""
    from graphc.errors import AliasError

    found = check_aliasing(g, plan, reads)
    if found:
        raise AliasError(found, f"memory plan for @{g.name} is not safe: {len(found)} "
                                f"violation(s)")


__all__ = ["CONSERVATIVE_KINDS", "KINDS", "Violation", "assert_safe", "check_aliasing"]
