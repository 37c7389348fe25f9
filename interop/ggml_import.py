"""A ggml capture as a graphc graph plus the memory plan ggml really used.

ggml works on memory; graphc on values. The import bridges them so that liveness is exact:

- **Leaves** become graphc leaves by the buffer they live in: the compute buffer's leaves
  (llama.cpp's ``inp_*`` tensors) are ``input`` s in the arena, weights buffers' are
  ``param`` s, every other buffer's (KV cache, recurrent state) are ``state`` s.
- **Views** (VIEW, RESHAPE, PERMUTE, TRANSPOSE) become ``as_strided`` windows with ggml's
  byte offset and strides, onto the *current value* of the tensor that owns the bytes --
  resolved when a node reads them, because ggml reads memory at that moment.
- **Writes into a view** (SET_ROWS and CPY into the KV cache, ggml's ``*_inplace`` ops)
  become an ``opaque_inplace`` node that takes the owner's current value as operand 0 and
  produces its next value in place over the same bytes; later reads see that value. A
  written state is assigned its last value, so the KV cache is read after the run.
- **Other nodes** become the graphc op of the same meaning where there is one (ADD, MUL,
  RMS_NORM, SCALE, SILU, GET_ROWS, CONT; checked by shape and type) and an ``opaque``
  node otherwise, which keeps ggml's op name, parameters, shape and type. Ops ggml's
  allocator may compute in place (``ggml_op_can_inplace``, recorded in the capture)
  become ``opaque_inplace``, with the operand ggml reused first.
- **Reads after the run**: every OUTPUT-flagged node is an output; every copy the host
  was seen making after the run (``Capture.host_reads``, observed, never listed by name)
  reads the bytes it copied -- the whole value it copies, or the window of its owner's
  bytes when it copies part of one -- and so does every name in ``Capture.reads`` (a tap
  you declare). A read of a tensor without the OUTPUT flag is a tap, which is how the
  seed bug looks.
- **The contract rule**: a tensor the host reads after the graph that carries no OUTPUT
  flag is reported (``unmarked-tap``) even where this placement happened to spare its
  bytes: ggml's allocator frees them after their last reader inside the graph, so another
  batch size, KV type or backend reuses them. When graphc's checker finds the same tap
  really overwritten, that finding (which names the writer) stands in for it.

The plan: every tensor at its buffer's region plus its byte offset (a region holds its
buffers one after another, each at an aligned start), views with their strides, in-place
labels where ggml put a result over an operand. ``check_import`` runs graphc's aliasing
checker on it. ggml's inputs are scratch the run may consume: an exact in-place write over
an input after its last read is ggml's normal practice, so ``input-written`` (a
conservative graphc rule) is not reported for imports.

A capture can also describe memory no allocator would produce (an edited file, a corrupted
plan): a view or a write into a view whose bytes are not its owner's at ``view_offs``
(``bad-view``), or a tensor that owns its bytes with strides that are not dense, so ggml's
kernels write past its size (``bad-layout``). The import reports those itself, next to
the checker's findings, rather than model bytes ggml would not read where it says.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.interop.capture import (
    BufferRecord,
    Capture,
    HostRead,
    TensorRecord,
    element_shape,
    structure,
)
from graphc.interop.ggml_abi import FLAG_OUTPUT
from graphc.ops import OpError, contiguous_strides, infer
from graphc.passes.aliasing import CONSERVATIVE_KINDS, Violation, check_aliasing
from graphc.passes.memory import MemoryPlan, Placement, Region, fingerprint
from graphc.tensor import Tensor

DTYPES = {"f32": "f32", "f16": "f16", "bf16": "bf16", "i32": "i32"}
"""ggml type name -> graphc dtype, where the element is the same."""

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.]+")


@dataclass
class Imported:
    """A capture as graphc sees it: ``graph`` and ``plan`` (ggml's placement), the reads
    after the run (``reads``: tensors, outputs included), and for every graphc tensor
    the ggml tensor it stands for (``record``)."""

    capture: Capture
    graph: Graph
    plan: MemoryPlan
    reads: list[Tensor]
    record: dict[Tensor, TensorRecord] = field(default_factory=dict)
    problems: list[Violation] = field(default_factory=list)  # found by the import itself
    host: list[tuple[TensorRecord, Tensor]] = field(default_factory=list)
    """Every observed host read: the ggml tensor copied and the graphc value read."""

    def ggml_name(self, t: Tensor | None) -> str:
        """The ggml name (with op and type) of the tensor ``t`` stands for."""
        if t is None:
            return "-"
        rec = self.record.get(t)
        if rec is None:
            return f"{t.name} ({t.op})"
        if rec.name:
            return rec.describe()
        order = self.capture.order
        where = f"node {order.index(rec.id)}" if rec.id in order else "a leaf"
        return f"{rec.describe()}, {where}"

    def explain(self, v: Violation) -> str:
        """One line for a violation, in ggml's names."""
        parts = [f"{v.kind}: {self.ggml_name(v.tensor)}"]
        if v.clobbered_by is not None:
            parts.append(f"overwritten by {self.ggml_name(v.clobbered_by)}")
            rec = self.record.get(v.clobbered_by)
            if rec is not None and rec.id in self.capture.order:
                parts.append(f"at node {self.capture.order.index(rec.id)} of ggml's graph")
        line = "; ".join(parts)
        line = f"{line}; {self.in_ggml_steps(v.detail)}" if v.detail else line
        fix = _GGML_FIX.get(v.kind)
        if fix is not None:
            return f"{line} -- fix: {fix(self.ggml_name(v.tensor))}"
        return f"{line} -- fix: {v.fix}" if v.fix else line


    def in_ggml_steps(self, text: str) -> str:
        """``text`` with graphc's step numbers (which count the leaves graphc put into its
        order) replaced by ggml's node index, or the leaf's name."""
        order = self.plan.order

        def node(m: re.Match[str]) -> str:
            i = int(m.group(1))
            rec = self.record.get(order[i]) if 0 <= i < len(order) else None
            if rec is None:
                return m.group(0)
            if rec.id in self.capture.order:
                return f"node {self.capture.order.index(rec.id)}"
            return f"leaf {rec.name or rec.id}"

        return re.sub(r"\bstep (\d+)", node, text)

    def report(self, found: Sequence[Violation]) -> list[str]:
        """The violations as lines, the cause first: real hazards, each followed (indented
        ``also:``) by the ``bad-inplace`` findings and the strict rules
        (``CONSERVATIVE_KINDS``) about the same writer or the same tensor, which follow from
        the same overlap; then the rest of those; the stale plan, which explains them all
        when there is one, last."""
        real = [v for v in found if v.kind not in CONSERVATIVE_KINDS and v.kind != "bad-inplace"]
        follow = [v for v in found if v.kind == "bad-inplace"
                  or (v.kind in CONSERVATIVE_KINDS and v.kind != "stale-plan")]
        strict = [v for v in found if v.kind == "stale-plan"]
        if not real:  # then the first bad-inplace is the cause the rest follow from
            real = [v for v in follow if v.kind == "bad-inplace"][:1]
            follow = [v for v in follow if v not in real]
        lines: list[str] = []
        used: set[int] = set()
        for v in real:
            lines.append(self.explain(v))
            for k, w in enumerate(follow):
                if k not in used and ({w.tensor, w.clobbered_by} & {v.tensor, v.clobbered_by}
                                      - {None}):
                    used.add(k)
                    lines.append(f"  also: {self.explain(w)}")
        lines += [self.explain(w) for k, w in enumerate(follow) if k not in used]
        lines += [self.explain(v) for v in strict]
        return lines


def _short(described: str) -> str:
    """A ggml tensor's name alone, or its whole description when it has no name."""
    return described if described.startswith("<unnamed>") else described.split(" (")[0]


_GGML_FIX: dict[str, Callable[[str], str]] = {
    "unmarked-tap": lambda n: f"call ggml_set_output on {_short(n)} before the graph "
                              "is allocated, so the allocator keeps its bytes to the end",
    "output-clobbered": lambda n: f"{_short(n)} is an output: this allocation is "
                                  "broken; reallocate the graph",
}
"""The fix in ggml's terms, for kinds whose graphc fix would name graphc's API."""


def _dense_nb(rec: TensorRecord, itemsize: int) -> list[int]:
    nb = [itemsize * (2 if rec.type == "i64" else 1)]
    for d in rec.ne[:-1]:
        nb.append(nb[-1] * d)
    return nb


def _row_bytes(rec: TensorRecord) -> int:
    """Bytes of one row (``ne[0]`` elements) of any ggml type, block-quantized included:
    what ``ggml_nbytes`` leaves after the outer dimensions' strides."""
    return rec.nbytes - sum((n - 1) * b for n, b in zip(rec.ne[1:], rec.nb[1:], strict=True)
                            if n > 0)


def _byte_dims(rec: TensorRecord) -> tuple[list[int], list[int]]:
    """(row-major shape, byte strides) of a tensor seen as ``u8`` rows of bytes."""
    dims = [_row_bytes(rec), *rec.ne[1:]]
    strides = [1, *rec.nb[1:]]
    n = max([i + 1 for i, d in enumerate(dims) if d != 1] or [1])
    return list(reversed(dims[:n])), list(reversed(strides[:n]))


def _dtype(rec: TensorRecord) -> tuple[str, list[int], int]:
    """(graphc dtype, row-major shape, element size) for a ggml tensor. I64 is imported as
    pairs of i32 (an extra innermost dimension of 2); block-quantized and other types as
    rows of raw bytes (``u8``: any byte may start a view; only opaque ops read them)."""
    shape = element_shape(rec.ne)
    if rec.type in DTYPES:
        return DTYPES[rec.type], shape, 2 if rec.type in ("f16", "bf16") else 4
    if rec.type == "i64":
        return "i32", [*shape, 2], 4
    return "u8", _byte_dims(rec)[0], 1


def _strides(rec: TensorRecord, itemsize: int) -> list[int]:
    """Element strides (row-major order) of a ggml tensor from its byte strides."""
    if rec.type not in DTYPES and rec.type != "i64":
        return _byte_dims(rec)[1]
    n = len(element_shape(rec.ne))
    nb = list(reversed(rec.nb[:n]))
    if any(b % itemsize for b in nb):
        raise GraphError(f"ggml tensor {rec.describe()} has byte strides {rec.nb} that are "
                         f"not multiples of its {itemsize}-byte element")
    out = [b // itemsize for b in nb]
    return [*out, 1] if rec.type == "i64" else out


def _unique(base: str, taken: set[str]) -> str:
    name = _NAME_BAD.sub("_", base).strip("_") or "t"
    if name[0].isdigit():
        name = "t" + name
    out, k = name, 1
    while out in taken:
        out, k = f"{name}.{k}", k + 1
    taken.add(out)
    return out


def _trim(params: Sequence[int]) -> list[int]:
    """ggml's op parameters without the unused zeros at the end."""
    out = list(params)
    while out and out[-1] == 0:
        out.pop()
    return out


def _f32(word: int) -> float:
    return float(struct.unpack("<f", struct.pack("<i", word))[0])


def _get_rows(r: TensorRecord, x: list[Tensor]) -> tuple[str, dict[str, object]] | None:
    return ("get_rows", {}) if len(x) == 2 and x[0].ndim == 2 and x[1].ndim == 1 else None


_MAPPED: dict[str, Callable[[TensorRecord, list[Tensor]], tuple[str, dict[str, object]] | None]]
_MAPPED = {
    "ADD": lambda r, x: ("add", {}) if len(x) == 2 else None,
    "MUL": lambda r, x: ("mul", {}) if len(x) == 2 else None,
    "RMS_NORM": lambda r, x: ("rms_norm", {"eps": _f32(r.params[0])}),
    "SCALE": lambda r, x: ("scale", {"s": _f32(r.params[0])}) if _f32(r.params[1]) == 0
    else None,
    "SILU": lambda r, x: ("silu", {}),
    "GET_ROWS": _get_rows,
    "CONT": lambda r, x: ("copy", {}),
}
"""ggml ops (UNARY by sub-op) with a graphc op of the same meaning: ggml record and
operands -> (graphc op, attributes), or None where this node's form differs. The result's
shape and type are checked against ggml's before a node is made."""


class _Importer:
    def __init__(self, cap: Capture, alignment: int | None) -> None:
        self.cap = cap
        self.g = Graph("ggml")
        self.names: set[str] = set()
        self.recs = cap.tensors
        nodes = set(cap.order)
        self.alignment = alignment or max([b.alignment for b in cap.buffers] or [32])
        self.base: dict[int, int] = {}
        self.size: dict[Region, int] = {"arena": 0, "state": 0, "param": 0}
        for b in cap.buffers:
            start = -(-self.size[b.region] // self.alignment) * self.alignment
            self.base[b.id] = start
            self.size[b.region] = start + b.size
        self.leaves: dict[int, Tensor] = {}
        self.current: dict[int, Tensor] = {}  # owner record id -> its current graphc value
        self.views: dict[tuple[int, Tensor], Tensor] = {}
        self.placements: dict[Tensor, Placement] = {}
        self.problems: list[Violation] = []
        self.reported: set[int] = set()
        self.record: dict[Tensor, TensorRecord] = {}
        self.is_node = nodes

    # ------------------------------------------------------------------ helpers
    def buffer(self, rec: TensorRecord) -> BufferRecord:
        if rec.buffer is None or rec.offset is None:
            raise GraphError(f"ggml tensor {rec.describe()} has no buffer: the graph was not "
                             "allocated when it was captured",
                             fix="capture after ggml_gallocr_alloc_graph (or during compute)")
        return self.cap.buffers[rec.buffer]

    def where(self, rec: TensorRecord) -> tuple[Region, int]:
        buf = self.buffer(rec)
        assert rec.offset is not None
        return buf.region, self.base[buf.id] + rec.offset

    def owner(self, rid: int) -> int:
        rec = self.recs[rid]
        return rec.view_src if rec.view_src is not None else rid

    def add(self, t: Tensor, rec: TensorRecord, p: Placement) -> Tensor:
        self.placements[t] = p
        self.record[t] = rec
        return t

    # ------------------------------------------------------------------ leaves and owners
    def leaf(self, rid: int) -> Tensor:
        rec = self.recs[rid]
        region, offset = self.where(rec)
        dtype, shape, _ = _dtype(rec)
        name = _unique(rec.name or f"leaf{rid}", self.names)
        kind = {"arena": "input", "param": "param", "state": "state"}[region]
        t = getattr(self.g, kind)(name, shape, dtype)
        self.leaves[rid] = t
        self.layout(rec, t)
        return self.add(t, rec, Placement(region, offset, t.nbytes))

    def value(self, rid: int) -> Tensor:
        """The graphc tensor a node reading ``rid`` now sees."""
        rec = self.recs[rid]
        if rec.view_src is None:
            if rid not in self.current:
                if rid in self.is_node:
                    raise GraphError(f"ggml node {rec.describe()} is read before it is "
                                     "computed in the captured order")
                self.current[rid] = self.leaf(rid)
            return self.current[rid]
        owner = self.value(rec.view_src)
        key = (rid, owner)
        if key not in self.views:
            self.views[key] = self.window(rec, owner)
        return self.views[key]

    def misplaced(self, rec: TensorRecord, t: Tensor) -> None:
        """Report ``rec`` (a view or a write into a view, imported as ``t``) when its bytes
        are not its owner's at ``view_offs``: ggml would read or write elsewhere."""
        assert rec.view_src is not None
        owner = self.recs[rec.view_src]
        if rec.id in self.reported:
            return
        if (rec.buffer, rec.offset) == (owner.buffer, None if owner.offset is None
                                        else owner.offset + rec.view_offs):
            return
        self.reported.add(rec.id)
        self.problems.append(Violation(
            "bad-view", t, None, None,
            f"point {rec.name or 'it'} at its owner's bytes plus view_offs (ggml_view_*)",
            f"ggml tensor {rec.describe()} is a view of {owner.describe()} at +"
            f"{rec.view_offs} B, but its data lies at {rec.offset} B of buffer {rec.buffer}"
            f" instead of {owner.offset} + {rec.view_offs} of buffer {owner.buffer}: ggml "
            "reads and writes it there"))

    def layout(self, rec: TensorRecord, t: Tensor) -> None:
        """Report a tensor that owns its bytes with strides that are not dense."""
        _, _, itemsize = _dtype(rec)
        if rec.type in DTYPES or rec.type == "i64":
            want = _dense_nb(rec, itemsize)
            if list(rec.nb) != want:
                self.problems.append(Violation(
                    "bad-layout", t, None, None,
                    f"allocate {rec.name or 'it'} dense (nb = {want})",
                    f"ggml tensor {rec.describe()} owns {rec.nbytes} B but has strides "
                    f"nb = {rec.nb}: ggml's kernels write it at those strides"))

    def window(self, rec: TensorRecord, owner: Tensor) -> Tensor:
        """``rec`` (a view of ``owner``'s bytes) as an ``as_strided`` view of ``owner``."""
        dtype, shape, itemsize = _dtype(rec)
        if dtype != owner.dtype:
            raise GraphError(f"ggml view {rec.describe()} reinterprets {owner.dtype} bytes as "
                             f"{rec.type}; graphc views keep the element type")
        if rec.view_offs % itemsize:
            raise GraphError(f"ggml view {rec.describe()} starts at byte {rec.view_offs}, "
                             f"inside a {itemsize}-byte element")
        strides = _strides(rec, itemsize)
        offset = rec.view_offs // itemsize
        if owner.shape == tuple(shape) and offset == 0 and \
                tuple(strides) == contiguous_strides(owner.shape):
            self.misplaced(rec, owner)
            return owner  # the whole owner, as it is
        name = _unique(rec.name or "view", self.names)
        t = self.g.as_strided(owner, shape, strides, offset, name=name)
        self.misplaced(rec, t)
        op = self.placements[owner]
        span = sum((d - 1) * s for d, s in zip(shape, strides, strict=True)) + 1 \
            if all(shape) else 0
        return self.add(t, rec, Placement(op.region, op.offset + offset * itemsize,
                                          span * itemsize, view_of=owner,
                                          strides=tuple(strides)))

    # ------------------------------------------------------------------ nodes
    def node(self, rid: int) -> None:
        rec = self.recs[rid]
        if rec.is_view:
            return  # resolved where it is read
        if rec.writes_view:
            self.write(rid)
            return
        # a source that is the node itself (ggml_cast) is where it writes, not an operand
        operands = [self.value(s) for s in rec.src if s is not None and s != rid]
        region, offset = self.where(rec)
        dtype, shape, _ = _dtype(rec)
        name = _unique(rec.name or rec.op.lower(), self.names)
        # which operand (if any) ggml computed this node over
        over = next((i for i, o in enumerate(operands)
                     if (self.placements[o].region, self.placements[o].offset)
                     == (region, offset) and (o.shape, o.dtype) == (tuple(shape), dtype)
                     and o.nbytes and self.placements[o].strides in
                     (None, contiguous_strides(o.shape))), None)
        t = self.mapped(rec, operands, over, name)
        if t is None:
            if over is not None:
                operands.insert(0, operands.pop(over))
            kind = rec.inplace_ok
            t = self.g.opaque(f"ggml.{rec.desc if rec.op in ('UNARY', 'GLU') else rec.op}",
                              operands, shape, dtype, params=_trim(rec.params),
                              may_write_operand=kind, name=name)
            over = 0 if over is not None else None
        u = t.inputs[0] if over == 0 and t.inputs else None
        self.layout(rec, t)
        self.current[rid] = self.add(t, rec, Placement(region, offset, t.nbytes, inplace_of=u))

    def mapped(self, rec: TensorRecord, ops: list[Tensor], over: int | None,
               name: str) -> Tensor | None:
        """The graphc op with ggml's meaning, or None: only where the result's shape and
        type come out exactly as ggml's and ggml's in-place choice is a write into operand
        0 (the operands of commutative ADD and MUL may swap for that)."""
        key = rec.desc if rec.op == "UNARY" else rec.op
        if key not in _MAPPED:
            return None
        order = list(range(len(ops)))
        if over not in (None, 0):
            if key not in ("ADD", "MUL") or len(ops) != 2:
                return None
            order = [1, 0]
        xs = [ops[i] for i in order]
        found = _MAPPED[key](rec, xs)
        if found is None:
            return None
        op, attrs = found
        dtype, shape, _ = _dtype(rec)
        try:
            _, got_shape, got_dtype = infer(op, [x.shape for x in xs], [x.dtype for x in xs],
                                            attrs)
        except OpError:
            return None
        if (got_shape, got_dtype) != (tuple(shape), dtype):
            return None  # e.g. a CONT that also reshapes: not the same op
        return self.g.apply(op, xs, attrs, name)

    def write(self, rid: int) -> None:
        """A node that computes into its view source's bytes: the owner's next value."""
        rec = self.recs[rid]
        assert rec.view_src is not None
        root = self.owner(rid)
        owner = self.value(root)
        others = [self.value(s) for s in rec.src
                  if s is not None and self.owner(s) != root]
        name = _unique(f"{rec.name or rec.op.lower()}.write", self.names)
        op = rec.desc if rec.op in ("UNARY", "GLU") else rec.op
        t = self.g.opaque(f"ggml.{op}", [owner, *others], owner.shape, owner.dtype,
                          params=_trim(rec.params), inplace=True, name=name)
        self.misplaced(rec, t)
        p = self.placements[owner]
        self.current[root] = self.add(
            t, rec, Placement(p.region, p.offset, t.nbytes, inplace_of=owner))

    # ------------------------------------------------------------------ all of it
    def run(self) -> Imported:
        for rid in self.cap.order:
            self.node(rid)
        wanted = set(self.cap.reads)
        missing = wanted - {self.recs[r].name for r in self.cap.order}
        if missing:
            raise GraphError(f"the capture has no node named {sorted(missing)[0]!r} to read",
                             fix="read a node of the graph (see graphc llama-check --nodes)")
        reads: list[Tensor] = []
        outs: set[str] = set()
        for rid in self.cap.order:
            rec = self.recs[rid]
            if rec.flags & FLAG_OUTPUT or rec.name in wanted:
                t = self.value(rid)
                if rec.flags & FLAG_OUTPUT:
                    name = _unique(rec.name or f"out{rid}", outs)
                    self.g.set_output(t, name)
                reads.append(t)
        host: list[tuple[TensorRecord, Tensor]] = []
        for hr in self.cap.host_reads:
            t = self.host_value(hr)
            host.append((self.recs[hr.tensor], t))
            reads.append(t)
        for rid, t in self.current.items():  # a written state keeps its last value
            leaf = self.leaves.get(rid)
            if leaf is not None and leaf.op == "state" and t is not leaf:
                self.g.assign(leaf, t)
        plan = MemoryPlan(
            graph_name=self.g.name, order=list(self.g.node_view), placements=dict(self.placements),
            arena_bytes=self.size["arena"], state_bytes=self.size["state"],
            param_bytes=self.size["param"], lower_bound_bytes=0,
            fingerprint=fingerprint(self.g), strategy="ggml", alignment=self.alignment,
            certificate="the placement ggml's allocator made")
        return Imported(self.cap, self.g, plan, list(dict.fromkeys(reads)), dict(self.record),
                        list(self.problems), host)

    def host_value(self, hr: HostRead) -> Tensor:
        """The graphc value a host copy reads: the tensor's value after the run, or, for a
        copy of part of it, a flat window of its owner's bytes (the whole value when the
        part does not fall on element boundaries)."""
        rec = self.recs[hr.tensor]
        t = self.value(hr.tensor)
        if hr.offset == 0 and hr.size == rec.nbytes:
            return t
        root = self.owner(hr.tensor)
        owner = self.value(root)
        _, _, itemsize = _dtype(self.recs[root])
        p, po = self.placements[t], self.placements[owner]
        start = p.offset - po.offset + hr.offset
        if start % itemsize or hr.size % itemsize or p.region != po.region:
            return t
        key = (-1 - start, owner)  # not a record id: a window made for a host read
        if key not in self.views:
            name = _unique(f"{rec.name or 'read'}.host", self.names)
            w = self.g.as_strided(owner, [hr.size // itemsize], [1], start // itemsize,
                                  name=name)
            self.views[key] = self.add(w, rec, Placement(po.region, po.offset + start,
                                                         hr.size, view_of=owner,
                                                         strides=(1,)))
        return self.views[key]


def import_capture(cap: Capture, alignment: int | None = None) -> Imported:
    """The graph and plan of a capture (see the module doc). ``alignment``: the plan's
    (default: the largest buffer alignment). GraphError naming the ggml tensor for what
    graphc cannot lay out."""
    return _Importer(cap, alignment).run()


def check_import(imp: Imported) -> list[Violation]:
    """What the import found wrong in the capture itself, then graphc's aliasing checker on
    ggml's plan with the caller's reads after the run (``input-written`` dropped, see the
    module doc), then the contract rule for every host read of an unflagged tensor that the
    checker did not already find overwritten."""
    found = [v for v in check_aliasing(imp.graph, imp.plan, reads=list(imp.reads))
             if v.kind != "input-written"]
    clobbered = {v.tensor for v in found if v.kind == "unmarked-tap"}
    return [*imp.problems, *found,
            *(v for v in unflagged_reads(imp) if v.tensor not in clobbered),
            *stale_plan(imp)]


def stale_plan(imp: Imported) -> list[Violation]:
    """llama.cpp #28448: ggml's allocator places a graph with the plan it last made when
    the node count and the sizes fit, even for a graph of other dependencies. With the
    allocator's record in the capture (``Capture.planned``): a node whose op or sources
    (by position) differ from the graph the plan was made for, where graphc saw it being
    made; and, from the record alone, a node whose source lies elsewhere than the plan put
    that position's source, or is placed by this allocator where the plan had none or the
    other way round. Smaller sizes alone (llama.cpp's reuse of a worst-case plan) change neither.
    One finding per graph, naming the first such node and counting the rest, also when
    this run happens to be safe."""
    cap = imp.capture
    if cap.planned is None:
        return []
    by_record = {rec.id: t for t, rec in imp.record.items() if rec.id in cap.order}
    here = structure(cap.tensors, cap.order)
    own = {cap.tensors[rid].buffer for rid, p in zip(cap.order, cap.planned, strict=True)
           if p.dst is not None}  # the buffers this allocator places results in
    changed: list[tuple[int, str]] = []
    for k, (rid, plan) in enumerate(zip(cap.order, cap.planned, strict=True)):
        rec = cap.tensors[rid]
        if plan.op is not None and plan.src_ref is not None:
            op, refs = here[k]
            if (op, refs) != (plan.op, plan.src_ref):
                changed.append((k, f"it is a {op} of ({', '.join(refs)}); the plan was made "
                                   f"for a {plan.op} of ({', '.join(plan.src_ref)})"))
                continue
        for j, sid in enumerate(rec.src):
            if sid is None or j >= len(plan.src) or sid == rid:
                continue
            src = cap.tensors[sid]
            placed = src.view_src is None and src.offset is not None and src.buffer in own
            real = src.offset if placed else None
            if real != plan.src[j]:
                changed.append((k, f"it reads source {j}, {src.describe()}, at "
                                   f"{_at(real)}, where the plan had {_at(plan.src[j])}"))
                break
    if not changed:
        return []
    k, why = changed[0]
    node = cap.tensors[cap.order[k]]
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return [Violation(
        "stale-plan", by_record.get(node.id), None, None,
        "ggml_gallocr_reserve the allocator with this graph before ggml_gallocr_alloc_graph "
        "(or give each graph shape its own gallocr)",
        f"ggml placed this graph with a plan made for another graph (llama.cpp #28448): "
        f"node {k}, {node.describe()}: {why}{more}")]


def _at(offset: int | None) -> str:
    return "a tensor it does not place" if offset is None else f"byte {offset}"


def unflagged_reads(imp: Imported) -> list[Violation]:
    """The contract rule: each tensor of a compute buffer that the host was seen copying
    after the graph without an OUTPUT flag (on it or on the tensor it views), once, with
    its last reader inside the graph -- after which ggml's allocator may reuse its bytes."""
    cap = imp.capture
    out: list[Violation] = []
    seen: set[int] = set()
    for rec, t in imp.host:
        root = cap.tensors[rec.view_src] if rec.view_src is not None else rec
        if rec.flags & FLAG_OUTPUT or root.flags & FLAG_OUTPUT or root.id in seen:
            continue
        if root.buffer is None or cap.buffers[root.buffer].usage != "compute":
            continue  # KV cache, weights: not placed by the graph allocator
        seen.add(root.id)
        readers = [k for k, rid in enumerate(cap.order) if rid != root.id and (
                   any(s is not None and (s == root.id or cap.tensors[s].view_src == root.id)
                       for s in cap.tensors[rid].src) or cap.tensors[rid].view_src == root.id)]
        name = root.name or "it"
        if readers:
            last = cap.tensors[cap.order[readers[-1]]]
            after = (f"its last reader inside the graph is node {readers[-1]}, "
                     f"{last.describe()}; any node after it may be placed over its bytes")
        else:
            after = "nothing inside the graph reads it, so any later node may be placed there"
        out.append(Violation(
            "unmarked-tap", t, None, None,
            f"call ggml_set_output on {name} when the graph is built, so the allocator "
            "keeps its bytes to the end",
            f"the host copies it after the graph, but it has no OUTPUT flag: {after} "
            "(this placement spared it by accident; another batch size, KV type or "
            "backend may not)"))
    return out
