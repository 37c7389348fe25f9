"""Memory planning: liveness, in-place reuse, and offsets in one arena.

A :class:`MemoryPlan` is plain data -- an order, a placement per tensor, region sizes, the
fingerprint of the graph it was made for -- so the aliasing checker can judge a plan made
by graphc or by anyone else.

Regions: ``param`` (weights, read-only, laid out once), ``state`` (persistent buffers such
as a KV cache, reused by nothing else) and ``arena`` (inputs, intermediates and outputs,
whose bytes are reused once a value is dead).

What is read after the run stays live to the end (:func:`kept_after_run`): every output,
every tap the caller names, and every value assigned to a state -- the state updates read
it once the run is over, all at once -- unless that value is written in place into its
state's bytes. The planner, its lower bound and the scheduler's simulation all take this
set from here; the aliasing checker derives its own, on purpose.

Taps are read later still: the caller reads a tap (``exe.read_buffer(t)``) once ``run()``
has returned, *after* the state updates have written every assigned state. A tap that is
a view of a state that the run reassigns would then show the new value, not its own. The
planner therefore never places such a tap as a window onto the state: it gives it bytes of
its own in the arena, where the view op copies the elements out during the run
(:func:`late_taps`). Copying is chosen over refusing because the tap's value is well
defined and cheap to keep; only the planner knows the tap is read late, so no IR change
(a ``copy`` node) is needed and a plan made without the tap in ``reads`` stays as it was.
A tap that *is* a reassigned state has no op to copy it with: the planner refuses it.

Strategies:

- ``greedy-by-size`` (offline, the default): liveness knows every reader, including
  outputs and tensors read after the run (``reads``). Buffers are placed largest first at
  the lowest offset that no buffer live at the same time occupies.
- ``best-fit-in-order`` (the online allocator of ggml-style runtimes): walks the order,
  puts each result in the best-fitting free block, frees a buffer after its last in-graph
  reader, and computes in place when the parent has one reader and is not an output. Like
  ggml, it knows nothing about readers outside the graph except the output flag. It is
  here to compare against and to reproduce real-world bugs.
"""

from __future__ import annotations

import hashlib
import heapq
from bisect import insort
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Literal

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.naming import label, ssa_names
from graphc.ops import OP_TABLE, contiguous_strides, view_layout
from graphc.passes.exact import solve
from graphc.passes.intervals import Buffer
from graphc.reads import ReadsArg, parse_reads
from graphc.tensor import Tensor

Region = Literal["arena", "state", "param"]
STRATEGIES = ("greedy-by-size", "best-fit-in-order", "exact", "auto")


@dataclass(frozen=True)
class Placement:
    """Where one tensor's bytes are: ``region``, byte ``offset`` of its first element,
    ``nbytes`` spanned, element ``strides`` (None: dense row-major). ``view_of``: the
    tensor this one is a view of; ``inplace_of``: the operand whose bytes it overwrites."""

    region: Region
    offset: int
    nbytes: int
    view_of: Tensor | None = None
    inplace_of: Tensor | None = None
    strides: tuple[int, ...] | None = None


@dataclass
class MemoryPlan:
    """A memory plan for one graph (see the module doc)."""

    graph_name: str
    order: list[Tensor]
    placements: dict[Tensor, Placement]
    arena_bytes: int
    state_bytes: int
    param_bytes: int
    lower_bound_bytes: int
    fingerprint: str
    strategy: str = "custom"
    alignment: int = 64
    kept: frozenset[Tensor] = field(default_factory=frozenset)
    certificate: str = ""  # what the planner proved about arena_bytes, if anything

    @property
    def ratio(self) -> float:
        """Arena bytes over the lower bound (1.0 is optimal for this order)."""
        return self.arena_bytes / self.lower_bound_bytes if self.lower_bound_bytes else 1.0

    @property
    def inplace_pairs(self) -> list[tuple[Tensor, Tensor]]:
        """(result, operand) for every in-place write."""
        return [(t, p.inplace_of) for t, p in self.placements.items() if p.inplace_of is not None]

    def summary(self) -> str:
        """One line: strategy, arena, lower bound, ratio, in-place writes."""
        return (f"{self.strategy}: arena {self.arena_bytes:,} B, lower bound "
                f"{self.lower_bound_bytes:,} B (ratio {self.ratio:.3f}), "
                f"{len(self.inplace_pairs)} in-place writes, state {self.state_bytes:,} B"
                + (f"; {self.certificate}" if self.certificate else ""))


def fingerprint(g: Graph) -> str:
    """A digest of what ``g`` computes, by structure: each node's printed name, op,
    attributes, type and operands in graph order, the outputs and the state updates.

    It does not depend on object identity or on the process, so a plan saved to a file
    can be matched to the graph again; any change to a node, an output mark or a state
    update gives a new fingerprint. (A plan held in memory is also tied to its graph
    object: the checker refuses tensors of another graph.)
    """
    names = ssa_names(g)
    h = hashlib.blake2b(digest_size=16)
    h.update(g.name.encode())
    for t in g.node_view:
        attrs = ",".join(f"{k}={v!r}" for k, v in sorted(t.attrs.items()))
        operands = ",".join(names[i] for i in t.inputs)
        h.update(f"|{names[t]}={t.op}({operands}){{{attrs}}}:{t.dtype}{t.shape}".encode())
    for name, t in g.output_view.items():
        h.update(f"|out {name!r}={names[t]} rows {g.output_rows(name)}".encode())
    for s, v in g.assign_view.items():
        h.update(f"|assign {names[s]}={names[v]}".encode())
    return h.hexdigest()


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def check_order(g: Graph, order: Sequence[Tensor]) -> list[Tensor]:
    """``order`` as a list after checking it holds each node of ``g`` once, topologically."""
    order = list(order)
    seen: set[Tensor] = set()
    nodes = set(g.node_view)
    for t in order:
        if t not in nodes:
            raise GraphError(f"order contains {t!r}, which is not a node of @{g.name}")
        if t in seen:
            raise GraphError(f"order lists {t!r} twice")
        for i in t.inputs:
            if i not in seen:
                raise GraphError(f"order is not topological: {t!r} comes before its operand "
                                 f"{i!r}")
        seen.add(t)
    if len(order) != len(nodes):
        raise GraphError(f"order has {len(order)} nodes, the graph {len(nodes)}")
    return order


def external_reads(g: Graph, reads: ReadsArg) -> set[Tensor]:
    """Tensors the caller reads after the run: read outputs, and tensors named in
    ``reads`` that are not outputs (taps). Unlike compile(), taps are not refused here."""
    if reads is None:
        return set(g.outputs.values())
    if isinstance(reads, str):
        reads = parse_reads(reads)
    keys = reads.keys() if isinstance(reads, Mapping) else reads
    by_name = {t.name: t for t in g.node_view if t.name is not None}
    out: set[Tensor] = set()
    for k in keys:
        if isinstance(k, Tensor):
            if k.graph is not g:
                raise GraphError(f"read {k!r} is a tensor of another graph @{k.graph.name}",
                                 fix="name tensors of the graph being planned")
            out.add(k)
        elif k in g.output_view:
            out.add(g.output_view[k])
        elif k in by_name:
            out.add(by_name[k])
        else:
            raise GraphError(f"read {k!r} is neither an output nor a named tensor of @{g.name}")
    return out


def late_taps(g: Graph, reads: ReadsArg) -> set[Tensor]:
    """The taps of ``reads`` (tensors read after the run that are not outputs), which the
    caller reads once ``run()`` has returned: after the state updates. Raises GraphError
    for a tap that is itself a state the run reassigns (no op can copy it; see the module
    doc). A state assigned itself (``assign s <- s``) keeps its bytes and may be a tap.
    """
    outputs = set(g.output_view.values())
    taps = external_reads(g, reads) - outputs
    reassigned = {s for s, v in g.assign_view.items() if v is not s}
    bad = sorted(taps & reassigned, key=lambda t: t.uid)
    if bad:
        t = bad[0]
        raise GraphError(
            f"tap {label(t)} is state {t.name!r}, which the run assigns a new value: read "
            f"after the run, its bytes hold the new value, not the value the run read",
            node=t,
            fix=f"read exe.state[{t.name!r}] for the new value, or mark a copy for the value "
                f"the run read: g.set_output(g.copy(s), '{t.name}_old')")
    return taps


def kept_after_run(g: Graph, reads: ReadsArg = None, *, taps: bool = True) -> set[Tensor]:
    """What the planner keeps live to the end of the run: every output, every value
    assigned to a state (read by the state updates after the run) and, with ``taps``, the
    tensors ``reads`` names besides the outputs."""
    keep = set(g.output_view.values()) | set(g.assign_view.values())
    if taps:
        keep |= external_reads(g, reads)
    return keep


def lifetimes(order: Sequence[Tensor], view_src: Mapping[Tensor, Tensor], keep: set[Tensor]
              ) -> tuple[dict[Tensor, int], dict[Tensor, int]]:
    """(def step, last step) of every value in ``order``.

    Leaves are defined at step -1 (before the run). A value's last step is that of its last
    reader, or of the last reader of any view of it (views keep their source alive); values
    in ``keep`` live to ``len(order)`` (after the run).
    """
    step: dict[Tensor, int] = {}
    for i, t in enumerate(order):
        step[t] = -1 if t.is_leaf else i
    last = dict(step)
    for t in order:
        s = step[t]
        for o in t.inputs:
            if last[o] < s:
                last[o] = s
    end = len(order)
    for t in keep:
        last[t] = end
    for t in reversed(order):
        src = view_src.get(t)
        if src is not None and last[src] < last[t]:
            last[src] = last[t]
    return step, last


@dataclass
class _Buffer:
    region: Region
    size: int
    start: int
    end: int
    members: list[Tensor]
    offset: int = -1


Layout = tuple[int, tuple[int, ...]]  # (element offset, element strides) of a view


def _views(order: Sequence[Tensor], taps: Set[Tensor] = frozenset(),
           new_value: Mapping[Tensor, Tensor] | None = None
           ) -> tuple[dict[Tensor, Tensor], dict[Tensor, Layout]]:
    """Which view-op nodes can alias their source (and their element offset and strides).

    A tap among ``taps`` whose window would lie in the bytes of a state that the run
    reassigns (``new_value``: state -> its new value), without being a window onto that
    new value written there in place, is not one: it is read after the state updates, so
    it gets bytes of its own and its op copies it out (module doc)."""
    view_src: dict[Tensor, Tensor] = {}
    layout: dict[Tensor, Layout] = {}
    for t in order:
        if t.op in OP_TABLE and OP_TABLE[t.op].is_view:
            src = t.inputs[0]
            src_off, src_strides = layout.get(src, (0, contiguous_strides(src.shape)))
            got = view_layout(t.op, src.shape, src_strides, t.attrs)
            if got is not None and not (t in taps and new_value
                                        and _overwritten_by_update(src, view_src, new_value)):
                view_src[t] = src
                layout[t] = (src_off + got[0], got[1])
    return view_src, layout


def _overwritten_by_update(t: Tensor, view_src: Mapping[Tensor, Tensor],
                           new_value: Mapping[Tensor, Tensor]) -> bool:
    """True when a window onto ``t`` would lie in a reassigned state's bytes (``t`` is a
    view of the state, or of a value forced in place over it) and ``t``'s value is not the
    state's new value: after the update those bytes hold something else."""
    value = home = _view_root(t, view_src)
    while home.inplace and home.inputs and home.op in OP_TABLE and OP_TABLE[home.op].inplace:
        home = _view_root(home.inputs[0], view_src)  # forced in place: operand 0's bytes
    return home in new_value and new_value[home] is not value


def _view_root(t: Tensor, view_src: Mapping[Tensor, Tensor]) -> Tensor:
    """The tensor that owns ``t``'s bytes: ``t`` itself, or the source its views lead to."""
    while t in view_src:
        t = view_src[t]
    return t


def _buffers(
    g: Graph, order: list[Tensor], keep: set[Tensor], ggml: bool, inplace: bool,
    taps: Set[Tensor] = frozenset(),
) -> tuple[list[_Buffer], dict[Tensor, _Buffer], dict[Tensor, Tensor],
           dict[Tensor, tuple[int, tuple[int, ...]]], dict[Tensor, Tensor]]:
    """Group values into buffers: an in-place chain shares one buffer, views live in their
    source's (except ``taps`` that would be views of a reassigned state: see
    :func:`_views`). Returns (buffers, buffer of each tensor, view sources, view layouts,
    in-place operand of each in-place result)."""
    new_value = {s: v for s, v in g.assign_view.items() if v is not s}
    view_src, layout = _views(order, taps, new_value)
    step, last = lifetimes(order, view_src, keep)
    root: dict[Tensor, _Buffer] = {}
    n_readers: dict[Tensor, int] = {t: 0 for t in order}
    for t in order:
        for o in t.inputs:
            n_readers[o] += 1
    assigned = {v: s for s, v in g.assign_view.items()}

    def root_value(t: Tensor) -> Tensor:
        return _view_root(t, view_src)

    buffers: list[_Buffer] = []
    inplace_of: dict[Tensor, Tensor] = {}
    for t in order:
        if t in view_src:
            continue
        region: Region = "param" if t.op == "param" else "state" if t.op == "state" else "arena"
        u = t.inputs[0] if t.inputs else None
        join = False
        if u is not None and OP_TABLE.get(t.op) is not None and OP_TABLE[t.op].inplace:
            if t.inplace:
                join = True
            elif inplace and u not in view_src and (u.shape, u.dtype) == (t.shape, t.dtype):
                ub = root[u]
                # another operand reading these bytes: only an elementwise op may read
                # operand 0 itself a second time (add(u, u) in place is fine)
                elementwise = OP_TABLE[t.op].kind == "elementwise"
                others_alias = any(root.get(root_value(o)) is ub
                                   and not (o is u and elementwise) for o in t.inputs[1:])
                if ub.region == "state":
                    # a state updated in place: only by the value assigned to it
                    join = (assigned.get(t) is not None and ub.members[0] is assigned[t]
                            and last[u] == step[t] and not others_alias)
                elif ub.region == "arena" and u.op != "input" and u not in keep \
                        and not others_alias:
                    join = (n_readers[u] == 1) if ggml else (last[u] == step[t])
        if join and u is not None:
            b = root[root_value(u)]
            b.members.append(t)
            b.end = max(b.end, last[t])
            root[t] = b
            inplace_of[t] = u
            continue
        b = _Buffer(region, t.nbytes, step[t], last[t], [t])
        buffers.append(b)
        root[t] = b
    for t in order:  # views share their root's buffer and extend its life
        if t in view_src:
            b = root[root_value(t)]
            root[t] = b
            b.end = max(b.end, last[t])
    return buffers, root, view_src, layout, inplace_of


def arena_lower_bound(g: Graph, order: Sequence[Tensor], reads: ReadsArg = None,
                      inplace: bool = True) -> int:
    """The lower bound the greedy planner reports for ``order``, without placing anything."""
    order = list(order)
    buffers = _buffers(g, order, kept_after_run(g, reads), False, inplace,
                       late_taps(g, reads))[0]
    return lower_bound([b for b in buffers if b.region == "arena"], len(order))


@dataclass(frozen=True)
class PeakEntry:
    """One buffer live at the peak step: the value that owns it (``tensor``, with the
    values written in place over it in ``members``), its ``nbytes`` and ``why`` it is
    still live (its next in-graph reader, or what reads it after the run)."""

    tensor: Tensor
    nbytes: int
    why: str
    members: tuple[Tensor, ...] = ()


@dataclass(frozen=True)
class Peak:
    """Where an order's arena peaks: the ``step``, the live ``nbytes`` there and the
    buffers live then, largest first."""

    step: int
    nbytes: int
    entries: tuple[PeakEntry, ...]

    def to_dict(self, names: Mapping[Tensor, str]) -> dict[str, object]:
        """JSON-ready data, tensors by their text-format names."""
        return {"step": self.step, "bytes": self.nbytes, "buffers": [
            {"tensor": names[e.tensor], "op": e.tensor.op, "bytes": e.nbytes, "why": e.why,
             "members": [names[m] for m in e.members]} for e in self.entries]}


def peak(g: Graph, order: Sequence[Tensor] | None = None, reads: ReadsArg = None,
         inplace: bool = True) -> Peak:
    """The step at which ``order`` (default: the graph's) holds the most arena bytes, as
    the planner counts them (its lower bound), and every buffer live there with why."""
    order = check_order(g, order if order is not None else g.node_view)
    keep = kept_after_run(g, reads)
    buffers = [b for b in _buffers(g, order, keep, False, inplace, late_taps(g, reads))[0]
               if b.region == "arena"]
    delta: dict[int, int] = {}
    for b in buffers:
        delta[b.start] = delta.get(b.start, 0) + b.size
        delta[b.end + 1] = delta.get(b.end + 1, 0) - b.size
    best_step, best, live = -1, 0, 0
    for step in sorted(delta):
        live += delta[step]
        if live > best:
            best_step, best = step, live
    readers: dict[Tensor, list[int]] = {}
    for k, t in enumerate(order):
        for o in t.inputs:
            readers.setdefault(o, []).append(k)
    outputs = {t: n for n, t in g.output_view.items()}
    assigned = {v: s for s, v in g.assign_view.items()}
    entries = []
    for b in buffers:
        if not b.start <= best_step <= b.end:
            continue
        why = "read later"
        for t in reversed(b.members):  # the value the buffer holds now explains it
            later = [k for k in readers.get(t, []) if k >= best_step]
            if later:
                why = f"read by {order[later[0]].op} at step {later[0]}"
            elif t in outputs:
                why = f"output {outputs[t]!r}, read after the run"
            elif t in assigned:
                why = f"new value of state {assigned[t].name!r}, read after the run"
            elif t in keep:
                why = "a tap, read after the run"
            else:
                continue
            break
        entries.append(PeakEntry(b.members[0], b.size, why, tuple(b.members[1:])))
    entries.sort(key=lambda e: -e.nbytes)
    return Peak(best_step, max(best, 0), tuple(entries))


def plan_memory(
    g: Graph,
    order: Sequence[Tensor] | None = None,
    reads: ReadsArg = None,
    strategy: str = "greedy-by-size",
    inplace: bool = True,
    alignment: int = 64,
    time_limit: float = 10.0,
) -> MemoryPlan:
    """Plan every tensor of ``g`` (see the module doc).

    ``order``: a topological order (default: the graph's). ``reads``: what the caller reads
    after the run, outputs and taps alike (default: every output); a tap is read after
    the state updates, so one that would be a view of a state the run reassigns gets bytes
    of its own (and a tap that is such a state is a GraphError; see :func:`late_taps`;
    ``best-fit-in-order``, like ggml, knows no taps). ``inplace``: let the
    planner write results in place where that is legal (nodes marked ``inplace=True``
    always are). ``strategy="exact"`` places the arena with
    :func:`graphc.passes.exact.solve` (a search over canonical placements, at most
    ``time_limit`` seconds); ``"auto"`` keeps greedy-by-size when it meets the max-live
    bound and tries the exact planner otherwise, keeping the smaller arena. The plan's
    ``certificate`` says what was proven. Returns a :class:`MemoryPlan`.
    """
    if strategy not in STRATEGIES:
        raise GraphError(f"unknown planning strategy {strategy!r}", fix=f"use one of {STRATEGIES}")
    order = check_order(g, order if order is not None else g.node_view)
    ggml = strategy == "best-fit-in-order"
    # ggml's allocator knows the output flags and the state updates, never the taps
    keep = kept_after_run(g, reads, taps=not ggml)
    taps = set() if ggml else late_taps(g, reads)
    buffers, root, view_src, layout, inplace_of = _buffers(g, order, keep, ggml, inplace,
                                                           taps)

    def root_value(t: Tensor) -> Tensor:
        return _view_root(t, view_src)

    arena = [b for b in buffers if b.region == "arena"]
    certificate = ""
    if ggml:
        arena_bytes = _best_fit_in_order(arena, alignment)
    else:
        arena_bytes = _greedy_by_size(arena, alignment)
        if strategy == "auto" and arena_bytes <= _aligned_bound(arena, alignment):
            certificate = "optimal: greedy-by-size meets the max-live bound (in aligned units)"
        elif strategy in ("exact", "auto"):
            arena_bytes, certificate = _exact(arena, alignment, time_limit, arena_bytes)
    sizes = {"state": 0, "param": 0}
    for b in buffers:
        if b.region != "arena":
            b.offset = _align(sizes[b.region], alignment)
            sizes[b.region] = b.offset + b.size

    placements: dict[Tensor, Placement] = {}
    for t in order:
        b = root[t]
        if t in view_src:
            base = placements[root_value(t)]
            off, strides = layout[t]
            extent = 1 + sum((d - 1) * s for d, s in zip(t.shape, strides, strict=True))
            span = t.itemsize * extent if t.size else 0
            placements[t] = Placement(b.region, base.offset + off * t.itemsize, span,
                                      view_of=view_src[t], strides=strides)
        else:
            over = inplace_of.get(t)  # written in place: exactly over operand 0's bytes
            offset = b.offset if over is None else placements[over].offset
            placements[t] = Placement(b.region, offset, t.nbytes, inplace_of=over)
    return MemoryPlan(
        graph_name=g.name, order=order, placements=placements, arena_bytes=arena_bytes,
        state_bytes=sizes["state"], param_bytes=sizes["param"],
        lower_bound_bytes=lower_bound(arena, len(order)), fingerprint=fingerprint(g),
        strategy=strategy, alignment=alignment, kept=frozenset(keep), certificate=certificate,
    )


def plan_intervals(g: Graph, plan: MemoryPlan, reads: ReadsArg = None,
                   inplace: bool = True) -> list[Buffer]:
    """The arena of ``plan`` as bare buffers (MiniMalloc's form): one per arena buffer,
    live on ``[first step + 1, last step + 2)`` (leaves are written at step 0), with the
    plan's offset; ``reads`` and ``inplace`` as the plan was made with. The same solvers
    and validators then serve graphs and interval sets."""
    ggml = plan.strategy == "best-fit-in-order"
    keep = kept_after_run(g, reads, taps=not ggml)
    taps = set() if ggml else late_taps(g, reads)
    buffers = _buffers(g, list(plan.order), keep, ggml, inplace, taps)[0]
    arena = [b for b in buffers if b.region == "arena"]
    return [Buffer(k, b.start + 1, b.end + 2, b.size, plan.placements[b.members[0]].offset)
            for k, b in enumerate(arena)]


def _exact(arena: list[_Buffer], alignment: int, time_limit: float, greedy: int
           ) -> tuple[int, str]:
    """Place ``arena`` with the exact planner when it beats the greedy placement already
    set (``greedy`` bytes); return the arena size and the certificate."""
    # in units of the alignment: every offset is aligned, so each buffer takes whole units
    a = max(alignment, 1)
    problem = [Buffer(k, b.start + 1, b.end + 2, -(-b.size // a)) for k, b in enumerate(arena)]
    sol = solve(problem, None, time_limit=time_limit)
    height = sol.height * a
    if sol.status == "optimal":
        certificate = "optimal: equals the max-live bound (in aligned units)"
    else:
        certificate = (f"best found {height:,} B, bound {sol.lower_bound * a:,} B, gap "
                       f"{sol.gap:.1%} after {sol.seconds:.1f} s")
    if height >= greedy:
        return greedy, certificate.replace("best found", "greedy kept: best found")
    for b, placed in zip(arena, sol.buffers, strict=True):
        assert placed.offset is not None  # solve places every buffer
        b.offset = placed.offset * a
    return height, certificate


def _aligned_bound(arena: Sequence[_Buffer], alignment: int) -> int:
    """The max-live bound when every buffer takes whole units of ``alignment`` bytes."""
    a = max(alignment, 1)
    events: dict[int, int] = {}
    for b in arena:
        size = -(-b.size // a) * a
        events[b.start] = events.get(b.start, 0) + size
        events[b.end + 1] = events.get(b.end + 1, 0) - size
    best = live = 0
    for step in sorted(events):
        live += events[step]
        best = max(best, live)
    return best


def lower_bound(buffers: Sequence[_Buffer], n_steps: int) -> int:
    """The largest sum of bytes of buffers live at the same step."""
    events: list[tuple[int, int]] = []
    for b in buffers:
        events.append((b.start, b.size))
        events.append((b.end + 1, -b.size))
    events.sort()
    best = cur = 0
    i = 0
    while i < len(events):
        s = events[i][0]
        while i < len(events) and events[i][0] == s:
            cur += events[i][1]
            i += 1
        best = max(best, cur)
    return best


def _time_overlaps(bufs: Sequence[_Buffer]) -> list[list[int]]:
    """For each buffer, the indices of the buffers whose lifetimes intersect its own."""
    idx = sorted(range(len(bufs)), key=lambda i: bufs[i].start)
    active: list[tuple[int, int]] = []  # heap of (end, index)
    out: list[list[int]] = [[] for _ in bufs]
    for i in idx:
        b = bufs[i]
        while active and active[0][0] < b.start:
            heapq.heappop(active)
        for _, j in active:
            out[i].append(j)
            out[j].append(i)
        heapq.heappush(active, (b.end, i))
    return out


def _greedy_by_size(bufs: list[_Buffer], alignment: int) -> int:
    """Place buffers largest first at the lowest aligned offset free over their lifetime."""
    overlaps = _time_overlaps(bufs)
    order = sorted(range(len(bufs)), key=lambda i: (-bufs[i].size, bufs[i].start))
    top = 0
    for i in order:
        b = bufs[i]
        taken = sorted((bufs[j].offset, bufs[j].offset + bufs[j].size)
                       for j in overlaps[i] if bufs[j].offset >= 0)
        off = 0
        for lo, hi in taken:
            if lo >= off + b.size:
                break
            off = max(off, _align(hi, alignment))
        b.offset = off
        top = max(top, off + b.size)
    return _align(top, alignment) if top else 0


def _best_fit_in_order(bufs: list[_Buffer], alignment: int) -> int:
    """Online best fit: allocate at each buffer's first step, free after its last."""
    free: list[tuple[int, int]] = []  # (offset, size), sorted by offset
    top = 0
    starts: dict[int, list[_Buffer]] = {}
    ends: dict[int, list[_Buffer]] = {}
    for b in bufs:
        starts.setdefault(b.start, []).append(b)
        ends.setdefault(b.end, []).append(b)
    for s in sorted(set(starts) | set(ends)):
        for b in starts.get(s, []):
            need = _align(b.size, alignment) or alignment
            best = -1
            for k, (_, size) in enumerate(free):
                if size >= need and (best < 0 or size < free[best][1]):
                    best = k
            if best >= 0:
                off, size = free.pop(best)
                if size > need:
                    insort(free, (off + need, size - need))
            elif free and free[-1][0] + free[-1][1] == top:  # grow the last free block
                off = free.pop()[0]
                top = off + need
            else:
                off = top
                top += need
            b.offset = off
        for b in ends.get(s, []):
            need = _align(b.size, alignment) or alignment
            insort(free, (b.offset, need))
            merged: list[tuple[int, int]] = []
            for off, size in free:
                if merged and merged[-1][0] + merged[-1][1] == off:
                    merged[-1] = (merged[-1][0], merged[-1][1] + size)
                else:
                    merged.append((off, size))
            free = merged
    return top
