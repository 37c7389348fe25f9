"""A ggml compute graph as plain data, what the host read after it, and a dynamic check of
what it really read.

A :class:`Capture` holds every tensor a ggml graph touches -- the nodes in graph order and
the leaves they read (inputs, weights, KV-cache roots) -- with its op, type, shape ``ne``
and byte strides ``nb``, op parameters, flags, sources, view source and offset, and the
buffer and byte offset it lives at; the buffers themselves (name, usage, size,
alignment); and the copies the host made out of them after the graph ran
(:class:`HostRead`), observed, not listed: see :mod:`graphc.interop.host_reads`. It is what
:mod:`graphc.interop.ggml_import` turns into a graphc graph and the memory plan ggml used;
it saves to and loads from JSON, so a capture made on one machine can be checked on another
(``graphc check capture.json``).

Ways to make one:

- :func:`capture_cgraph` reads an allocated ``ggml_cgraph`` (built with ggml's own API);
  with ``watch=`` (a :func:`watch_cgraph` block around the compute and the host's reads)
  it records what the host copied out.
- :class:`Recorder` is a ggml scheduler eval callback (llama.cpp's ``cb_eval``): it sees
  every node just before it runs and just after, records it, and checks, as the graph runs,
  that each node reads the bytes its sources held when they were last written; it watches
  every copy the host makes out of the graph's buffers, maps it to the node whose bytes it
  copies and checks that the host got what that node wrote. One decode may run several
  graphs (one per ubatch): each is its own capture, with the copies made after it.
  That dynamic check is ggml's own memory, observed; it shares nothing with graphc's
  static checker and is the oracle that checker is tested against.
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ValidationError, model_validator

from graphc.errors import GraphError
from graphc.interop.ggml_abi import (
    FLAG_NAMES,
    FLAG_OUTPUT,
    GGML_MAX_DIMS,
    GGML_MAX_OP_PARAMS,
    NO_OFFSET,
    PLACED_BY,
    PLAN_HOOKS,
    SCHED_GALLOC_OFFSET,
    USAGE_NAMES,
    VIEW_OPS,
    GallocrHead,
    Ggml,
    NodeAlloc,
    lib,
    tensor_at,
)
from graphc.interop.ggml_kernels import as_array, max_error, recompute, tolerance
from graphc.interop.host_reads import HostCopy, HostReadWatch
from graphc.passes.memory import Region


class TensorRecord(BaseModel):
    """One ggml tensor. ``src`` and ``view_src`` are indices into ``Capture.tensors``
    (``None`` for an empty source slot); ``buffer`` indexes ``Capture.buffers`` and
    ``offset`` is the byte offset of its data inside that buffer."""

    id: int
    name: str
    op: str
    desc: str
    type: str
    type_id: int
    ne: list[int]
    nb: list[int]
    params: list[int]
    flags: int
    src: list[int | None]
    view_src: int | None
    view_offs: int
    buffer: int | None
    offset: int | None
    nbytes: int
    inplace_ok: bool = False  # ggml_op_can_inplace: its allocator may reuse an operand

    @property
    def is_view(self) -> bool:
        """A window onto ``view_src`` that computes nothing (VIEW, RESHAPE, ...)."""
        return self.view_src is not None and self.op in VIEW_OPS

    @property
    def writes_view(self) -> bool:
        """An op that computes into its view source's bytes (SET_ROWS, CPY, in-place ops)."""
        return self.view_src is not None and self.op not in VIEW_OPS and self.op != "NONE"

    @property
    def flag_names(self) -> list[str]:
        """The ggml flags set, by name (``OUTPUT``, ``INPUT``, ...)."""
        return [n for bit, n in FLAG_NAMES.items() if self.flags & bit]

    def describe(self) -> str:
        """``name (OP type[ne])``, as a ggml user reads it."""
        op = self.desc if self.op in ("UNARY", "GLU") else self.op
        ne = ",".join(map(str, self.ne))
        return f"{self.name or '<unnamed>'} ({op} {self.type}[{ne}])"


class BufferRecord(BaseModel):
    """One ggml backend buffer: ``usage`` is ggml's (compute, weights, any)."""

    id: int
    name: str
    usage: str
    size: int
    alignment: int
    is_host: bool

    @property
    def region(self) -> Region:
        """The graphc region it maps to: compute -> arena, weights -> param, else state."""
        return "arena" if self.usage == "compute" else "param" if self.usage == "weights" \
            else "state"


class Finding(BaseModel):
    """A read the dynamic check saw go wrong: ``tensor`` (an index) no longer held the
    bytes written to it when ``reader`` read it (``reader`` None: the caller, after the
    run)."""

    tensor: int
    reader: int | None
    changed_bytes: int
    detail: str


class HostRead(BaseModel):
    """A copy the host made out of ggml's memory after the graph ran, as observed:
    ``size`` bytes from byte ``offset`` of the data of tensor ``tensor`` (an index)."""

    tensor: int
    offset: int
    size: int


class PlannedNode(BaseModel):
    """What ggml's graph allocator recorded for one graph position when it last planned:
    the byte offset it planned the result at and each source's (None: a view, or a
    tensor it did not place), in the order of the node's sources; and, where graphc saw
    the allocator plan (through :func:`~graphc.interop.ggml_abi.lib`'s handle), the op
    and the sources (:func:`structure`) of the graph it planned for."""

    dst: int | None
    src: list[int | None]
    op: str | None = None
    src_ref: list[str] | None = None


def structure(records: list[TensorRecord], order: list[int]) -> list[tuple[str, list[str]]]:
    """Each node's op and what each of its sources is, by position: ``node k`` (ggml's
    node index), ``leaf k`` (leaves numbered by first use), ``itself`` or ``""`` (an empty
    slot). Sizes are left out: two graphs of one structure at other sizes compare equal."""
    pos = {rid: k for k, rid in enumerate(order)}
    leaves: dict[int, int] = {}
    out = []
    for rid in order:
        rec = records[rid]
        refs = []
        for s in rec.src:
            if s is None:
                refs.append("")
            elif s == rid:
                refs.append("itself")
            elif s in pos:
                refs.append(f"node {pos[s]}")
            else:
                refs.append(f"leaf {leaves.setdefault(s, len(leaves))}")
        out.append((rec.desc if rec.op in ("UNARY", "GLU") else rec.op, refs))
    return out


class Capture(BaseModel):
    """A ggml graph as it ran (see the module doc). ``order``: node indices in graph order;
    ``host_reads``: the copies the host made after the run, observed (``watched`` says
    whether they were watched at all); ``reads``: names of tensors a user declares read
    after the run besides those (taps); ``planned``: per node, what ggml's allocator
    recorded when it last planned (None: not read); ``findings``: what the dynamic check
    saw (``checked`` says whether it ran; ``recomputed``: how many nodes it recomputed from
    their operands' bytes)."""

    source: str
    tensors: list[TensorRecord]
    order: list[int]
    buffers: list[BufferRecord]
    reads: list[str] = []
    host_reads: list[HostRead] = []
    watched: bool = False
    planned: list[PlannedNode] | None = None
    recomputed: int = 0
    checked: bool = False
    findings: list[Finding] = []

    @model_validator(mode="after")
    def _consistent(self) -> Capture:
        """Every index points into the capture; views point at tensors that own bytes."""
        n, nbuf = len(self.tensors), len(self.buffers)

        def bad(rec: TensorRecord, what: str) -> ValueError:
            return ValueError(f"tensor {rec.id} ({rec.name!r}): {what}")

        for i, rec in enumerate(self.tensors):
            if rec.id != i:
                raise bad(rec, f"its id must be its position, {i}")
            if len(rec.ne) != GGML_MAX_DIMS or len(rec.nb) != GGML_MAX_DIMS:
                raise bad(rec, f"ne and nb need {GGML_MAX_DIMS} entries")
            if len(rec.params) != GGML_MAX_OP_PARAMS // 4:
                raise bad(rec, f"params needs {GGML_MAX_OP_PARAMS // 4} entries")
            for s in rec.src:
                if s is not None and not 0 <= s < n:
                    raise bad(rec, f"source {s} is not a tensor of the capture")
            if rec.view_src is not None:
                if not 0 <= rec.view_src < n or rec.view_src == i:
                    raise bad(rec, f"view_src {rec.view_src} is not another tensor")
                if self.tensors[rec.view_src].view_src is not None:
                    raise bad(rec, "view_src must own its bytes (ggml points views at the "
                                   "owner)")
            if rec.buffer is not None and not 0 <= rec.buffer < nbuf:
                raise bad(rec, f"buffer {rec.buffer} is not a buffer of the capture")
            if (rec.offset is not None and rec.offset < 0) or rec.view_offs < 0 \
                    or rec.nbytes < 0:
                raise bad(rec, "offsets and sizes must be >= 0")
        for k in self.order:
            if not 0 <= k < n:
                raise ValueError(f"order entry {k} is not a tensor of the capture")
        for r in self.host_reads:
            if not 0 <= r.tensor < n:
                raise ValueError(f"host read of tensor {r.tensor}: not a tensor of the "
                                 "capture")
            rec = self.tensors[r.tensor]
            if r.offset < 0 or r.size < 0 or r.offset + r.size > rec.nbytes:
                raise bad(rec, f"host read of bytes {r.offset}..{r.offset + r.size} lies "
                               f"outside its {rec.nbytes} bytes")
        return self

    def by_name(self, name: str) -> TensorRecord:
        """The last tensor named ``name`` (ggml names need not be unique)."""
        for t in reversed(self.tensors):
            if t.name == name:
                return t
        raise GraphError(f"the capture has no tensor named {name!r}",
                         fix="names: " + ", ".join(sorted({t.name for t in self.tensors
                                                           if t.name})[:20]))

    def compute_bytes(self) -> int:
        """Total size of the compute buffers (ggml's compute-buffer size)."""
        return sum(b.size for b in self.buffers if b.usage == "compute")

    def to_json(self) -> str:
        """The capture as JSON text."""
        return self.model_dump_json(indent=1)

    def save(self, path: str | Path) -> None:
        """Write it as JSON, atomically (a failed write leaves an earlier file intact)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                                   suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Capture:
        """Read a capture written by :meth:`save`; GraphError naming the file and the
        first bad entry otherwise (nothing in the file is evaluated)."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise GraphError(f"{path}: cannot read: {e.strerror}") from None
        try:
            return cls.model_validate(json.loads(text))
        except json.JSONDecodeError as e:
            raise GraphError(f"{path}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(map(str, err["loc"]))
            raise GraphError(f"{path}: not a ggml capture: "
                             + (f"{where}: " if where else "") + str(err["msg"]),
                             fix="write captures with graphc (Capture.save)") from None


class _Walker:
    """Reads tensors out of live ggml memory into records, following sources and views."""

    def __init__(self, ggml: Ggml) -> None:
        self.ggml = ggml
        self.ids: dict[int, int] = {}
        self.records: list[TensorRecord] = []
        self.buffer_ids: dict[int, int] = {}
        self.buffers: list[BufferRecord] = []
        self.bases: dict[int, int] = {}

    def buffer(self, address: int | None) -> int | None:
        if not address:
            return None
        if address not in self.buffer_ids:
            b = self.ggml.base
            self.buffer_ids[address] = len(self.buffers)
            self.bases[address] = int(b.ggml_backend_buffer_get_base(address) or 0)
            self.buffers.append(BufferRecord(
                id=len(self.buffers), name=b.ggml_backend_buffer_name(address).decode(),
                usage=USAGE_NAMES.get(b.ggml_backend_buffer_get_usage(address), "any"),
                size=int(b.ggml_backend_buffer_get_size(address)),
                alignment=int(b.ggml_backend_buffer_get_alignment(address)),
                is_host=bool(b.ggml_backend_buffer_is_host(address))))
        return self.buffer_ids[address]

    def tensor(self, address: int) -> int:
        """The record index of the tensor at ``address`` (recorded on first sight, with its
        sources and view source)."""
        if address in self.ids:
            return self.ids[address]
        t = tensor_at(address)
        srcs = [int(s) if s else None for s in t.src]
        while srcs and srcs[-1] is None:
            srcs.pop()
        # a source may be the tensor itself (ggml_cast copies into its own result)
        src_ids = [self.tensor(s) if s is not None and s != address else None for s in srcs]
        view_src = self.tensor(int(t.view_src)) if t.view_src else None
        buf = self.buffer(int(t.buffer) if t.buffer else None)
        offset = None
        if buf is not None and t.data:
            offset = int(t.data) - self.bases[int(t.buffer)]
        g = self.ggml
        rec = TensorRecord(
            id=len(self.records), name=t.name.decode(errors="replace"),
            op=g.op_name(t.op), desc=g.base.ggml_op_desc(address).decode(),
            type=g.type_name(t.type), type_id=int(t.type), ne=[int(x) for x in t.ne],
            nb=[int(x) for x in t.nb], params=[int(x) for x in t.op_params],
            flags=int(t.flags), src=src_ids, view_src=view_src, view_offs=int(t.view_offs),
            buffer=buf, offset=offset, nbytes=int(g.base.ggml_nbytes(address)),
            inplace_ok=g.can_inplace(t.op))
        rec.src = [rec.id if s == address else i for s, i in zip(srcs, src_ids, strict=True)]
        self.ids[address] = rec.id
        self.records.append(rec)
        return rec.id


def _graph_walker(ggml: Ggml, cgraph: int) -> tuple[_Walker, list[int]]:
    w = _Walker(ggml)
    order = [w.tensor(int(ggml.base.ggml_graph_node(cgraph, i)))
             for i in range(ggml.base.ggml_graph_n_nodes(cgraph))]
    return w, order


@contextmanager
def watch_cgraph(cgraph: int) -> Iterator[HostReadWatch]:
    """Watch what the host copies out of an allocated ``ggml_cgraph``'s buffers while the
    block runs (compute the graph and read its results inside it); pass the watch to
    :func:`capture_cgraph` afterwards. Only copies made inside the block are recorded."""
    ggml = lib()
    w, _ = _graph_walker(ggml, cgraph)
    watch = HostReadWatch(ggml)
    for address in w.buffer_ids:
        watch.watch(address)
    with watch:
        yield watch
    if watch.errors:
        raise GraphError(f"watching the host's reads failed: {watch.errors[0]}")


def capture_cgraph(cgraph: int, source: str = "ggml graph", reads: Iterable[str] = (),
                   watch: HostReadWatch | None = None, gallocr: int | None = None,
                   sched: int | None = None) -> Capture:
    """The capture of an allocated ``ggml_cgraph`` (its address): every node in graph
    order and every tensor it reaches. ``watch``: a :func:`watch_cgraph` block that ran
    the graph; every copy the host made in it becomes a :class:`HostRead` of the tensor it
    copied. ``reads``: names of tensors you declare read after the run besides those.
    ``gallocr`` (or ``sched``, whose allocator is read): the allocator that placed the
    graph; what it recorded when it last planned is kept (:class:`PlannedNode`), so that
    the check can tell a placement planned for another graph (``stale-plan``). Without
    them, the allocator that placed the graph through :func:`~graphc.interop.ggml_abi.lib`'s
    handle is used, when there is one."""
    ggml = lib()
    w, order = _graph_walker(ggml, cgraph)
    host = [HostRead(tensor=w.tensor(c.tensor), offset=c.offset, size=c.size)
            for c in (watch.copies if watch is not None else [])]
    given = gallocr is not None or sched is not None
    if not given and int(cgraph) in PLACED_BY:  # placed through graphc's handle: observed
        kind, allocator = PLACED_BY[int(cgraph)]
        gallocr, sched = (allocator, None) if kind == "gallocr" else (None, allocator)
    if sched is not None and gallocr is None:
        gallocr = ctypes.c_void_p.from_address(sched + SCHED_GALLOC_OFFSET).value
    try:
        planned = _planned(gallocr, w, order) if gallocr else None
    except GraphError:
        if given:
            raise
        planned = None  # a remembered allocator that has placed other graphs since
    return Capture(source=source, tensors=w.records, order=order, buffers=w.buffers,
                   reads=list(reads), host_reads=host, watched=watch is not None,
                   planned=planned)


PLANNED_FOR: dict[int, list[tuple[str, list[str]]]] = {}
"""gallocr address -> the :func:`structure` of the graph it last planned for, seen through
:data:`~graphc.interop.ggml_abi.PLAN_HOOKS`."""


def _remember_plan(gallocr: int, graph: int) -> None:
    try:
        w, order = _graph_walker(lib(), graph)
        PLANNED_FOR[gallocr] = structure(w.records, order)
    except Exception:  # called from inside a ggml call: never raise there
        PLANNED_FOR.pop(gallocr, None)


PLAN_HOOKS.append(_remember_plan)


def _readable(address: int, size: int) -> bool:
    """Whether ``size`` bytes at ``address`` lie in one readable mapping of this process."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                span, perms = line.split()[:2]
                lo, hi = (int(x, 16) for x in span.split("-"))
                if lo <= address and address + size <= hi:
                    return perms.startswith("r")
    except OSError:
        return True  # no maps to ask: trust the caller
    return False


def _planned(gallocr: int, w: _Walker, order: list[int]) -> list[PlannedNode]:
    """The allocator's record of its last plan, per node, with the structure it was
    planned for where graphc saw it. GraphError when ``gallocr`` cannot be the allocator
    that placed this graph: not readable memory, a record for another node count, or one
    that puts this graph's results elsewhere than they lie."""
    fix = "pass the gallocr (or sched) that allocated this graph"
    if not _readable(gallocr, ctypes.sizeof(GallocrHead)):
        raise GraphError(f"{gallocr:#x} is not readable memory: not a gallocr", fix=fix)
    head = GallocrHead.from_address(gallocr)
    size = head.n_nodes * ctypes.sizeof(NodeAlloc)
    if head.n_nodes != len(order) or not head.node_allocs or not _readable(
            head.node_allocs, size):
        raise GraphError(f"the allocator at {gallocr:#x} last planned {head.n_nodes} nodes, "
                         f"this graph has {len(order)}: it did not place this graph",
                         fix=fix)
    allocs = (NodeAlloc * head.n_nodes).from_address(head.node_allocs)
    seen = PLANNED_FOR.get(gallocr)
    if seen is not None and len(seen) != len(order):
        seen = None
    out: list[PlannedNode] = []
    agree = placed = 0
    for k, rid in enumerate(order):
        rec = w.records[rid]
        na = allocs[k]

        def where(ta: object) -> int | None:
            size_max = ta.size_max  # type: ignore[attr-defined]
            offset = int(ta.addr.offset)  # type: ignore[attr-defined]
            return None if size_max == 0 or offset == NO_OFFSET else offset

        dst = where(na.dst)
        if dst is not None and rec.view_src is None and rec.offset is not None:
            placed += 1
            agree += dst == rec.offset
        op, refs = seen[k] if seen is not None else (None, None)
        out.append(PlannedNode(dst=dst, src=[where(na.src[j]) for j in range(len(rec.src))],
                               op=op, src_ref=refs))
    if placed and agree < placed:
        raise GraphError(f"the allocator's record places {placed - agree} of {placed} nodes "
                         "elsewhere than they lie: it is not the gallocr of this graph, or "
                         "not ggml 0.25's struct", fix=fix)
    return out


EvalCallback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p)
"""``ggml_backend_sched_eval_callback``: ``bool (*)(struct ggml_tensor *, bool ask, void *)``."""


class Recorder:
    """A scheduler eval callback that captures the graphs it watches run, checks every
    read against the bytes last written, and records and checks every copy the host makes
    out of their buffers (see the module doc).

    Use :attr:`callback` (or :meth:`on_eval` wrapped in the binding's callback type) as
    the scheduler's eval callback and run inside ``with recorder:`` (the host's copies are
    watched only there); call :meth:`reset` before a decode and :meth:`finish` after it.
    A new graph starts when a node is asked for a second time, or when the host copied
    something out of or into a buffer since the last node (llama.cpp sets the next
    ubatch's inputs before its graph runs). Asks ggml to stop after each node (so each is
    observed), which is slow but exact; meant for small models.
    """

    def __init__(self, check: bool = True) -> None:
        self.ggml = lib()
        self.check = check
        self.callback = EvalCallback(self.on_eval)
        self.watch = HostReadWatch(self.ggml, self._on_copy)
        self.errors: list[str] = []
        self.reset()

    def __enter__(self) -> Recorder:
        self.watch.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watch.__exit__(*exc)

    def reset(self) -> None:
        """Forget the previous run."""
        self.done: list[Capture] = []
        self.errors = []
        self.watch.errors.clear()
        self._new_graph()

    def _new_graph(self) -> None:
        self.walker = _Walker(self.ggml)
        self.order: list[int] = []
        self.seen: set[int] = set()
        self.snapshot: dict[int, bytes] = {}  # root record id -> bytes last written
        self.before: dict[int, bytes] = {}  # buffer id -> its bytes when first seen
        self.findings: list[Finding] = []
        self.host_reads: list[HostRead] = []
        self.host_wrote = False
        self.outputs_checked = False
        self.operands: dict[int, list[bytes | None]] = {}  # node -> its operands' bytes
        self.recomputed = 0  # nodes checked against a recomputation from their operands

    # -------------------------------------------------------------- memory
    def _root(self, rid: int) -> int:
        rec = self.walker.records[rid]
        return rec.view_src if rec.view_src is not None else rid

    def _address(self, rid: int) -> int | None:
        rec = self.walker.records[rid]
        if rec.buffer is None or rec.offset is None:
            return None
        base = next(a for a, i in self.walker.buffer_ids.items() if i == rec.buffer)
        return self.walker.bases[base] + rec.offset

    def _bytes(self, rid: int) -> bytes | None:
        rec = self.walker.records[rid]
        buf = self.walker.buffers[rec.buffer] if rec.buffer is not None else None
        address = self._address(rid)
        if address is None or buf is None or not buf.is_host or rec.nbytes <= 0:
            return None
        return ctypes.string_at(address, rec.nbytes)

    def _watch_buffers(self) -> None:
        """Copy every newly seen host buffer (weights excepted: nothing in a graph writes
        them) before the node that revealed it runs: no earlier node wrote into it, or the
        buffer would have been seen then. Leaves are later checked against this copy.
        Every buffer seen is also watched for the host's copies."""
        for address, bid in self.walker.buffer_ids.items():
            if bid in self.before:
                continue
            buf = self.walker.buffers[bid]
            self.watch.watch(address)
            keep = self.check and buf.is_host and buf.usage != "weights"
            self.before[bid] = (ctypes.string_at(self.walker.bases[address], buf.size)
                                if keep else b"")

    def _first_read(self, root: int, reader: int) -> None:
        """A leaf read for the first time: it must hold what it held before the run."""
        rec = self.walker.records[root]
        got = self._bytes(root)
        if got is None:
            return
        before = self.before.get(rec.buffer) if rec.buffer is not None else None
        if before and rec.offset is not None:
            want = before[rec.offset:rec.offset + rec.nbytes]
            if len(want) == len(got):
                self.snapshot[root] = want
                self._verify(root, reader)
                return
        self.snapshot[root] = got

    def _remember(self, rid: int) -> None:
        data = self._bytes(rid)
        if data is not None:
            self.snapshot[rid] = data

    def _verify(self, root: int, reader: int | None) -> None:
        want = self.snapshot.get(root)
        if want is None:
            return
        got = self._bytes(root)
        if got is not None and got != want:
            changed = sum(a != b for a, b in zip(got, want, strict=True))
            who = self._name(reader) if reader is not None else "the caller after the run"
            self.findings.append(Finding(
                tensor=root, reader=reader, changed_bytes=changed,
                detail=f"{self._name(root)} changed in {changed} of {len(want)} bytes since "
                       f"it was written, before {who} read it"))
            self.snapshot[root] = got  # report each clobber once

    def _check_outputs(self) -> None:
        """Every OUTPUT-flagged node still holds what was last written to it (checked
        once per graph, when the graph is over and before the host writes anything: at the
        first copy out, or at :meth:`finish` for the last graph)."""
        if self.outputs_checked or not self.check:
            return
        self.outputs_checked = True
        for rid in self.order:
            if self.walker.records[rid].flags & FLAG_OUTPUT:
                self._verify(self._root(rid), None)

    # -------------------------------------------------------------- inside a node
    def _name(self, rid: int) -> str:
        """A tensor as a ggml user reads it, with its ggml node index when it is a node."""
        rec = self.walker.records[rid]
        return (f"node {self.order.index(rid)}, {rec.describe()}" if rid in self.order
                else f"leaf {rec.describe()}")

    def _span(self, rid: int) -> tuple[int, int] | None:
        rec = self.walker.records[rid]
        start = self._address(rid)
        return None if start is None or rec.nbytes <= 0 else (start, start + rec.nbytes)

    def _before_node(self, rid: int) -> None:
        """Just before node ``rid`` runs: keep its operands' bytes for the recomputation, and
        report every operand its own bytes overlap where ggml may not write over it (any
        partial overlap; a full one unless the op may run in place over that operand)."""
        rec = self.walker.records[rid]
        if rec.is_view:
            return
        out = self._span(rid)
        self.operands[rid] = [self._bytes(s) if s is not None and s != rid else None
                              for s in rec.src]
        if out is None:
            return
        for s in rec.src:
            if s is None or s == rid or self._root(s) == self._root(rid):
                continue  # the node's own destination (CPY, SET_ROWS, *_inplace)
            span = self._span(s)
            if span is None or span[1] <= out[0] or out[1] <= span[0]:
                continue
            same = span == out and rec.inplace_ok
            if not same:
                src = self.walker.records[s]
                self.findings.append(Finding(
                    tensor=self._root(s), reader=rid, changed_bytes=0,
                    detail=f"{self._name(rid)} is placed over its operand {self._name(s)} "
                           f"(bytes {out[0] - span[0]:+d} from its start), which a "
                           f"{rec.op} may not overwrite while it reads it"
                           + ("" if src.nbytes == rec.nbytes else
                              f" ({src.nbytes} B operand, {rec.nbytes} B result)")))

    def _after_node(self, rid: int) -> None:
        """Node ``rid`` has run: recompute it from its operands' bytes as they were before
        (ops :mod:`graphc.interop.ggml_kernels` covers) and report a difference."""
        rec = self.walker.records[rid]
        before = self.operands.pop(rid, None)
        if before is None or rec.writes_view or any(b is None for b in before):
            return
        xs = []
        for s, data in zip(rec.src, before, strict=True):
            a = as_array(self.walker.records[s], data) if s is not None and data else None
            if a is None:
                return
            xs.append(a)
        want = recompute(rec, xs)
        got_bytes = self._bytes(rid)
        got = as_array(rec, got_bytes) if got_bytes is not None and want is not None else None
        if want is None or got is None:
            return
        self.recomputed += 1
        err = max_error(got, want)
        if err > tolerance(want, rec):
            self.findings.append(Finding(
                tensor=rid, reader=rid, changed_bytes=0,
                detail=f"{self._name(rid)} holds other values than its operands give "
                       f"(max error {err:.3g}): ggml wrote it over bytes it was still "
                       "reading"))

    # -------------------------------------------------------------- the host's copies
    def _on_copy(self, copy: HostCopy) -> None:
        """A copy out of a watched buffer: map it to the tensor it copies (walking it if
        this graph has not seen it) and check the host got what was last written there."""
        if not self.order:
            return  # nothing ran since the last graph: not a read after this graph
        if copy.write:
            # the next graph's inputs: this graph is over. Its outputs are not checked now
            # (an input may lie over an output nobody read); what the host did read was
            # checked at each copy.
            self.host_wrote = True
            self.outputs_checked = True
            return
        self._check_outputs()
        rid = self.walker.tensor(copy.tensor)
        self.host_reads.append(HostRead(tensor=rid, offset=copy.offset, size=copy.size))
        if not self.check:
            return
        root = self._root(rid)
        want, start, base = self.snapshot.get(root), self._address(rid), self._address(root)
        if want is None or start is None or base is None:
            return
        lo = start - base + copy.offset
        expected = want[lo:lo + copy.size]
        if len(expected) == copy.size and expected != copy.data:
            changed = sum(a != b for a, b in zip(expected, copy.data, strict=True))
            rec = self.walker.records[rid]
            self.findings.append(Finding(
                tensor=root, reader=None, changed_bytes=changed,
                detail=f"the host copied bytes {copy.offset}..{copy.offset + copy.size} of "
                       f"{rec.describe()} after the graph and got {changed} byte(s) other "
                       "than the graph wrote there"))

    def _close_graph(self) -> None:
        if not self.order:
            return
        self._check_outputs()  # a no-op unless this is the last graph (finish)
        self.done.append(Capture(
            source="", tensors=list(self.walker.records), order=list(self.order),
            buffers=list(self.walker.buffers), host_reads=list(self.host_reads),
            watched=True, checked=self.check, findings=list(self.findings),
            recomputed=self.recomputed))
        self._new_graph()

    # -------------------------------------------------------------- the callback
    def on_eval(self, address: int | None, ask: bool, _user: int | None) -> bool:
        """The eval callback itself (wrap it in the caller's callback type when a C struct
        field needs its own ctypes type, as llama.cpp's ``cb_eval`` does)."""
        try:
            if address is None:
                return True
            if ask and (self.host_reads or self.host_wrote
                        or self.walker.ids.get(int(address)) in self.seen):
                self.outputs_checked = True  # only the host's own copies are judged now
                self._close_graph()  # a new graph (the next ubatch) begins
            rid = self.walker.tensor(int(address))
            rec = self.walker.records[rid]
            self._watch_buffers()
            if ask:
                if rid not in self.seen:
                    self.seen.add(rid)
                    self.order.append(rid)
                if self.check:
                    self._before_node(rid)
                    for s in [*rec.src, rec.view_src]:
                        if s is None or s == rid:
                            continue  # no source, or the node's own result (ggml_cast)
                        root = self._root(s)
                        if root not in self.snapshot and self.walker.records[root].op == "NONE":
                            self._first_read(root, rid)  # a leaf, against the run's start
                        else:
                            self._verify(root, rid)
                return True  # observe every node
            if self.check:
                self._after_node(rid)
                self._remember(self._root(rid) if rec.writes_view else rid)
            return True
        except Exception as e:  # never let an exception cross into C
            self.errors.append(f"{type(e).__name__}: {e}")
            return True

    def finish(self, source: str) -> list[Capture]:
        """The captures of the graphs run since :meth:`reset`, in order (one per graph: a
        decode split into ubatches runs several), each with the host's copies made after
        it, named ``source`` (``source, graph i of n`` when there are several)."""
        errors = self.errors + self.watch.errors
        if errors:
            raise GraphError(f"capturing the graph failed: {errors[0]}")
        self._close_graph()
        done = self.done
        self.reset()
        n = len(done)
        return [c.model_copy(update={"source": source if n == 1
                                     else f"{source}, graph {i + 1} of {n}"})
                for i, c in enumerate(done)]


def element_shape(ne: Iterable[int]) -> list[int]:
    """ggml's ``ne`` (innermost first, padded with 1s) as a row-major shape: trailing 1s
    dropped (at least one dimension), then reversed."""
    ne = list(ne)[:GGML_MAX_DIMS]
    n = max([i + 1 for i, d in enumerate(ne) if d != 1] or [1])
    return list(reversed(ne[:n]))
