"""A ggml compute graph as plain data, and a dynamic check of what it really read.

A :class:`Capture` holds every tensor a ggml graph touches -- the nodes in graph order and
the leaves they read (inputs, weights, KV-cache roots) -- with its op, type, shape ``ne``
and byte strides ``nb``, op parameters, flags, sources, view source and offset, and the
buffer and byte offset it lives at; and the buffers themselves (name, usage, size,
alignment). It is what :mod:`graphc.interop.ggml_import` turns into a graphc graph and
the memory plan ggml used; it saves to and loads from JSON, so a capture made on one
machine can be checked on another (``graphc check capture.json``).

Two ways to make one:

- :func:`capture_cgraph` reads an allocated ``ggml_cgraph`` (built with ggml's own API).
- :class:`Recorder` is a ggml scheduler eval callback (llama.cpp's ``cb_eval``): it sees
  every node just before it runs and just after, records it, and checks, as the graph runs,
  that each node reads the bytes its sources held when they were last written -- and, once
  the run is over, that every tensor the caller reads still holds them
  (:meth:`Recorder.finish`). That dynamic check is ggml's own memory, observed; it shares
  nothing with graphc's static checker and is the oracle that checker is tested against.
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from graphc.interop.ggml_abi import (
    FLAG_NAMES,
    FLAG_OUTPUT,
    GGML_MAX_DIMS,
    GGML_MAX_OP_PARAMS,
    USAGE_NAMES,
    VIEW_OPS,
    Ggml,
    lib,
    tensor_at,
)
from graphc.passes.memory import Region
from pydantic import BaseModel, ValidationError, model_validator

from graphc.errors import GraphError


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


class Capture(BaseModel):
    """A ggml graph as it ran (see the module doc). ``order``: node indices in graph order;
    ``reads``: names the caller reads after the run besides OUTPUT-flagged nodes (for
    llama.cpp, what its API copies out); ``findings``: what the dynamic check saw
    (``checked`` says whether it ran)."""

    source: str
    tensors: list[TensorRecord]
    order: list[int]
    buffers: list[BufferRecord]
    reads: list[str] = []
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
        src_ids = [self.tensor(s) if s is not None else None for s in srcs]
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
        self.ids[address] = rec.id
        self.records.append(rec)
        return rec.id


def capture_cgraph(cgraph: int, source: str = "ggml graph", reads: Iterable[str] = ()
                   ) -> Capture:
    """The capture of an allocated ``ggml_cgraph`` (its address): every node in graph
    order and every tensor it reaches. ``reads``: names of tensors the caller reads after
    the run without an OUTPUT flag (taps)."""
    ggml = lib()
    w = _Walker(ggml)
    order = [w.tensor(int(ggml.base.ggml_graph_node(cgraph, i)))
             for i in range(ggml.base.ggml_graph_n_nodes(cgraph))]
    return Capture(source=source, tensors=w.records, order=order, buffers=w.buffers,
                   reads=list(reads))


EvalCallback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p)
"""``ggml_backend_sched_eval_callback``: ``bool (*)(struct ggml_tensor *, bool ask, void *)``."""


class Recorder:
    """A scheduler eval callback that captures the graph it watches run and checks every
    read against the bytes last written (see the module doc).

    Use :attr:`callback` (or :meth:`on_eval` wrapped in the binding's callback type) as
    the scheduler's eval callback; call :meth:`reset` before a decode and
    :meth:`finish` after it. Asks ggml to stop after each node (so each is observed), which
    is slow but exact; meant for small models.
    """

    def __init__(self, check: bool = True) -> None:
        self.ggml = lib()
        self.check = check
        self.callback = EvalCallback(self.on_eval)
        self.reset()

    def reset(self) -> None:
        """Forget the previous run."""
        self.walker = _Walker(self.ggml)
        self.order: list[int] = []
        self.seen: set[int] = set()
        self.snapshot: dict[int, bytes] = {}  # root record id -> bytes last written
        self.before: dict[int, bytes] = {}  # buffer id -> its bytes when first seen
        self.findings: list[Finding] = []
        self.errors: list[str] = []

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

    def _snapshot_buffers(self) -> None:
        """Copy every newly seen host buffer (weights excepted: nothing in a graph writes
        them) before the node that revealed it runs: no earlier node wrote into it, or the
        buffer would have been seen then. Leaves are later checked against this copy."""
        for address, bid in self.walker.buffer_ids.items():
            buf = self.walker.buffers[bid]
            if bid not in self.before and buf.is_host and buf.usage != "weights":
                self.before[bid] = ctypes.string_at(self.walker.bases[address], buf.size)

    def _first_read(self, root: int, reader: int) -> None:
        """A leaf read for the first time: it must hold what it held before the run."""
        rec = self.walker.records[root]
        got = self._bytes(root)
        if got is None:
            return
        before = self.before.get(rec.buffer) if rec.buffer is not None else None
        if before is not None and rec.offset is not None:
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
            rec = self.walker.records[root]
            who = (self.walker.records[reader].describe() if reader is not None
                   else "the caller after the run")
            self.findings.append(Finding(
                tensor=root, reader=reader, changed_bytes=changed,
                detail=f"{rec.describe()} changed in {changed} of {len(want)} bytes since it "
                       f"was written, before {who} read it"))
            self.snapshot[root] = got  # report each clobber once

    # -------------------------------------------------------------- the callback
    def on_eval(self, address: int | None, ask: bool, _user: int | None) -> bool:
        """The eval callback itself (wrap it in the caller's callback type when a C struct
        field needs its own ctypes type, as llama.cpp's ``cb_eval`` does)."""
        try:
            if address is None:
                return True
            rid = self.walker.tensor(int(address))
            rec = self.walker.records[rid]
            if self.check:
                self._snapshot_buffers()
            if ask:
                if rid not in self.seen:
                    self.seen.add(rid)
                    self.order.append(rid)
                if self.check:
                    for s in [*rec.src, rec.view_src]:
                        if s is None:
                            continue
                        root = self._root(s)
                        if root not in self.snapshot and self.walker.records[root].op == "NONE":
                            self._first_read(root, rid)  # a leaf, against the run's start
                        else:
                            self._verify(root, rid)
                return True  # observe every node
            if self.check:
                self._remember(self._root(rid) if rec.writes_view else rid)
            return True
        except Exception as e:  # never let an exception cross into C
            self.errors.append(f"{type(e).__name__}: {e}")
            return True

    def finish(self, source: str, reads: Iterable[str] = ()) -> Capture:
        """The capture of the run since :meth:`reset`. With ``check``, first verifies that
        every OUTPUT-flagged node and every node named in ``reads`` still holds what was
        last written to it (the caller reads them now). Names in ``reads`` that no node of
        this run has are left out (an API result this graph does not build)."""
        if self.errors:
            raise GraphError(f"capturing the graph failed: {self.errors[0]}")
        records = self.walker.records
        present = {records[rid].name for rid in self.order}
        names = {n for n in reads if n in present}
        if self.check:
            for rid in self.order:
                rec = records[rid]
                if rec.flags & FLAG_OUTPUT or rec.name in names:
                    self._verify(self._root(rid), None)
        return Capture(source=source, tensors=list(records), order=list(self.order),
                       buffers=list(self.walker.buffers), reads=sorted(names),
                       checked=self.check, findings=list(self.findings))


def element_shape(ne: Iterable[int]) -> list[int]:
    """ggml's ``ne`` (innermost first, padded with 1s) as a row-major shape: trailing 1s
    dropped (at least one dimension), then reversed."""
    ne = list(ne)[:GGML_MAX_DIMS]
    n = max([i + 1 for i, d in enumerate(ne) if d != 1] or [1])
    return list(reversed(ne[:n]))
