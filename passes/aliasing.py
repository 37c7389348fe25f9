"""The aliasing checker: proves a memory plan safe, or says exactly why it is not.

``check_aliasing(g, plan, reads)`` recomputes liveness from the graph itself (every
in-graph reader, the outputs, and what ``reads`` says the caller reads after the run) and
judges the plan as data, so plans made by hand or by other tools are checked the same
way. It proves that no two values whose bytes overlap are live at the same step, except a
view with its source or a legal in-place write into an operand whose last reader it is.

Each problem is a :class:`Violation` with a ``kind``, the ``tensor`` at risk, the op that
overwrites it (``clobbered_by``), the ``step`` and a one-line ``fix``.
"""

from __future__ import annotations

import bisect
import heapq
import time
from dataclasses import dataclass
from typing import Any, Literal

from graphc.passes.memory import MemoryPlan, external_reads, fingerprint, lifetimes

from graphc.graph import Graph
from graphc.ops import OP_TABLE, contiguous_strides, view_layout
from graphc.reads import ReadsArg
from graphc.tensor import Tensor

Kind = Literal["overlap", "clobbered-read", "unmarked-tap", "output-clobbered", "param-written",
               "input-written", "state-misassigned", "stale-plan", "bad-order",
               "missing-placement", "out-of-bounds", "bad-view", "bad-inplace"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


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
        from graphc.text import label

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


def _lbl(t: Tensor) -> str:
    from graphc.text import label

    return label(t)


def check_aliasing(g: Graph, plan: MemoryPlan, reads: ReadsArg = None) -> list[Violation]:
    """Every violation of ``plan`` for ``g`` (empty: proven safe).

    ``reads``: what the caller reads after the run (output names, or tensors -- a tensor
    that is not an output is a tap, judged as ``unmarked-tap``); default: every output.
    """
    if plan.fingerprint != fingerprint(g):
        return [Violation("stale-plan", None, None, None,
                          f"re-plan for this graph: graphc.passes.plan_memory(g); the plan was "
                          f"made for another graph or version of @{plan.graph_name}",
                          "the plan's fingerprint is not this graph's")]
    out: list[Violation] = []
    nodes = g._nodes
    pos: dict[Tensor, int] = {}
    for i, t in enumerate(plan.order):
        if t in pos or t.graph is not g:
            out.append(Violation("bad-order", t, None, i, "list every node of the graph once",
                                 "the order repeats a node or holds one of another graph"))
        pos[t] = i
    if len(pos) != len(nodes) or any(t not in pos for t in nodes):
        out.append(Violation("bad-order", None, None, None, "list every node of the graph once",
                             f"the order has {len(pos)} nodes, the graph {len(nodes)}"))
        return out
    for t in plan.order:
        for o in t.inputs:
            if pos[o] >= pos[t]:
                out.append(Violation("bad-order", t, None, pos[t],
                                     "order the nodes topologically",
                                     f"it runs before its operand {_lbl(o)}"))
    if out:
        return out
    missing = [t for t in nodes if t not in plan.placements]
    for t in missing:
        out.append(Violation("missing-placement", t, None, pos[t], "give every tensor a placement"))
    if missing:
        return out

    taps = external_reads(g, reads)
    outputs = set(g._outputs.values())
    keep = outputs | taps
    P = plan.placements
    view_src = {t: p.view_of for t, p in P.items() if p.view_of is not None}
    order = plan.order
    step, last = lifetimes(order, view_src, keep)
    # what each value's bytes must hold until: the in-graph readers only (taps and outputs
    # are judged on their own)
    _, last_in_graph = lifetimes(order, view_src, outputs)
    n = len(order)
    limits = {"arena": plan.arena_bytes, "state": plan.state_bytes, "param": plan.param_bytes}
    assigned_to = {v: s for s, v in g._assigns.items()}

    # placements: bounds, views, in-place pairs
    for t in order:
        p = P[t]
        if p.region not in limits:
            out.append(Violation("out-of-bounds", t, None, step[t], "use region arena, state "
                                 "or param", f"unknown region {p.region!r}"))
            continue
        if p.offset < 0 or p.offset + p.nbytes > limits[p.region] or \
                (p.view_of is None and p.nbytes < t.nbytes):
            out.append(Violation("out-of-bounds", t, None, step[t],
                                 f"keep it inside the {p.region} region of "
                                 f"{limits[p.region]:,} B",
                                 f"bytes {p.offset}..{p.offset + p.nbytes} of {t.nbytes} needed"))
        if (t.op == "param" and p.region != "param") or (t.op == "state" and p.region != "state"):
            out.append(Violation("out-of-bounds", t, None, step[t],
                                 f"place {t.op}s in the {t.op} region"))
        if p.view_of is not None:
            src = p.view_of
            sp = P[src]
            got = None
            if t.inputs[:1] == (src,) and OP_TABLE.get(t.op) and OP_TABLE[t.op].view:
                got = view_layout(t.op, src.shape, sp.strides or contiguous_strides(src.shape),
                                  t.attrs)
            if got is None or sp.region != p.region or \
                    p.offset != sp.offset + got[0] * t.itemsize or \
                    tuple(p.strides or ()) != tuple(got[1]):
                out.append(Violation("bad-view", t, None, step[t],
                                     "a view must sit exactly where its op maps its source",
                                     f"recorded as a view of {_lbl(src)}"))
        if p.inplace_of is not None:
            u = p.inplace_of
            up = P[u]
            op = OP_TABLE.get(t.op)
            if (op is None or not op.inplace or t.inputs[:1] != (u,) or up.offset != p.offset
                    or up.region != p.region or (u.shape, u.dtype) != (t.shape, t.dtype)):
                out.append(Violation("bad-inplace", t, None, step[t],
                                     "write in place only into operand 0, at its exact bytes, "
                                     "with an op that allows it",
                                     f"recorded as in place over {_lbl(u)}"))
            root = u
            while root in view_src:
                root = view_src[root]
            if root.op == "param":
                out.append(Violation("param-written", root, t, step[t],
                                     f"params are read-only: drop inplace=True on "
                                     f"{_lbl(t)} or copy the param first"))
            elif root.op == "input":
                out.append(Violation("input-written", root, t, step[t],
                                     f"inputs belong to the caller: drop inplace=True on "
                                     f"{_lbl(t)} or g.copy() the input first"))

    # state region: only states and their in-place updates, ending at the assigned value
    overwritten = {p.inplace_of for p in P.values() if p.inplace_of is not None}
    for t in order:
        p = P[t]
        if p.region == "state" and p.view_of is None and t.op != "state":
            chain = t
            while chain.op != "state" and P[chain].inplace_of is not None:
                chain = P[chain].inplace_of  # type: ignore[assignment]
            if chain.op != "state":
                out.append(Violation("state-misassigned", t, None, step[t],
                                     "only a state's own in-place update may use its bytes",
                                     "placed in the state region without being an update"))
            elif assigned_to.get(t) is not chain and t not in overwritten:
                out.append(Violation("state-misassigned", chain, t, step[t],
                                     f"write into state {chain.name!r} in place only its "
                                     f"assigned new value",
                                     "the state's bytes end up holding another value"))

    # the sweep: at each definition, the new value must not overlap a live one. Live values
    # sit per region in a list sorted by offset (expired through a heap on their last
    # step), so a query looks only at its byte neighbours.
    by_def = sorted((t for t in order if t not in view_src and P[t].region != "param"),
                    key=lambda t: step[t])
    live: dict[str, list[tuple[int, int, Tensor]]] = {}
    widest: dict[str, int] = {}
    expiry: list[tuple[int, int, Tensor]] = []
    reported: set[Tensor] = set()
    i = 0
    while i < len(by_def):
        d = step[by_def[i]]
        group = []
        while i < len(by_def) and step[by_def[i]] == d:
            group.append(by_def[i])
            i += 1
        while expiry and expiry[0][0] < d:
            _, _, u = heapq.heappop(expiry)
            pu = P[u]
            lst = live[pu.region]
            k = bisect.bisect_left(lst, (pu.offset, u.uid))
            del lst[k]
        for v in group:
            pv = P[v]
            lo, hi = pv.offset, pv.offset + pv.nbytes
            lst = live.setdefault(pv.region, [])
            if pv.nbytes:
                k = bisect.bisect_left(lst, (hi,))
                reach = widest.get(pv.region, 0)
                while k > 0:
                    k -= 1
                    off, _, u = lst[k]
                    if off + reach <= lo:
                        break  # nothing further left can reach lo
                    pu = P[u]
                    if off + pu.nbytes <= lo or not pu.nbytes:
                        continue
                    if step[u] == d:
                        out.append(Violation("overlap", u, v, d if d >= 0 else None,
                                             "give them disjoint bytes",
                                             f"{_lbl(u)} and {_lbl(v)} are written at the "
                                             f"same time"))
                        continue
                    if pv.inplace_of is u and last_in_graph[u] == d and u not in keep:
                        continue  # a legal in-place write: v is u's last reader
                    if u not in reported:  # each value at risk once, at its first clobbering
                        reported.add(u)
                        out.append(_clobber(u, v, d, pv.inplace_of is u, last, last_in_graph,
                                            outputs, taps, n))
            bisect.insort(lst, (pv.offset, v.uid, v))
            widest[pv.region] = max(widest.get(pv.region, 0), pv.nbytes)
            heapq.heappush(expiry, (last[v], v.uid, v))
    return out


def _clobber(u: Tensor, v: Tensor, d: int, in_place: bool, last: dict[Tensor, int],
             last_in_graph: dict[Tensor, int], outputs: set[Tensor], taps: set[Tensor],
             n: int) -> Violation:
    lu, lv = _lbl(u), _lbl(v)
    if u in outputs:
        return Violation("output-clobbered", u, v, d,
                         f"outputs live to the end of the run: give {lv} bytes of its own",
                         f"output {lu} is read after the run")
    if u in taps and (last_in_graph[u] < d or (in_place and last_in_graph[u] == d)):
        return Violation("unmarked-tap", u, v, d,
                         f'mark {lu} as an output, g.set_output(t, "{u.name or "name"}"), so '
                         f"its buffer lives to the end (or compile with taps='protect')",
                         f"{lu} is read after the run but is not an output")
    if u.op == "state":
        return Violation("clobbered-read", u, v, d,
                         f"update state {u.name!r} only after its last reader",
                         f"the old value of state {u.name!r} is still read at step "
                         f"{last_in_graph[u]}")
    when = "after the run" if last[u] >= n else f"at step {last[u]}"
    return Violation("clobbered-read", u, v, d,
                     f"give {lv} other bytes, or run it after {lu}'s last reader",
                     f"{lu} is still read {when}")


def assert_safe(g: Graph, plan: MemoryPlan, reads: ReadsArg = None) -> None:
    """Raise :class:`graphc.AliasError` listing the violations unless the plan is safe."""
    from graphc.errors import AliasError

    found = check_aliasing(g, plan, reads)
    if found:
        raise AliasError(found, f"memory plan for @{g.name} is not safe: {len(found)} "
                                f"violation(s)")


def plan_and_prove(g: Graph, reads: ReadsArg = None, *, plan: MemoryPlan | None = None,
                   schedule: str = "input", strategy: str = "greedy-by-size",
                   check: bool = True, report: Any = None) -> MemoryPlan:
    """What a backend does before it runs anything: plan ``g`` (unless ``plan`` is given)
    over the ``schedule`` order, prove the plan safe for ``reads`` (AliasError otherwise;
    ``check=False`` skips the proof), and record it in ``report`` (a CompileReport)."""
    t0 = time.perf_counter()
    if plan is None:
        from graphc.passes.memory import plan_memory
        from graphc.passes.schedule import schedule as make_order

        plan = plan_memory(g, order=make_order(g, schedule, reads=reads), reads=reads,
                           strategy=strategy)
    if check:
        assert_safe(g, plan, reads)
    if report is not None:
        report.record_plan(plan, time.perf_counter() - t0)
    return plan


__all__ = ["KINDS", "Violation", "assert_safe", "check_aliasing", "plan_and_prove"]
