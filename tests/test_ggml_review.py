"""Review of the ggml interop claim: every test here was a case that broke it, found by
an independent review and fixed since (each docstring says what was wrong).

The claim: graphc's aliasing checker, pointed at a real ggml / llama.cpp graph, proves
ggml's memory plan safe or reports each violation by its ggml tensor name; it never calls
a plan safe when ggml really reads wrong bytes (no misses), does not flag plans ggml's
allocator makes correctly (no false alarms beyond ``CONSERVATIVE_KINDS``), and refuses bad
captures with a clear GraphError. The dynamic check in ``Recorder`` checks that every read
sees the bytes last written.

As in ``test_ggml_interop.py``, real memory is the oracle: graphs are built with ggml's
API through ctypes, allocated with ``ggml_gallocr``, computed with ggml's CPU backend, and
(where a plan is faked) a tensor's ``data`` or ``nb`` is changed after allocation and the
result compared with a clean run.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

import graphc as gc
from graphc.cli import main
from graphc.interop.capture import Capture, Recorder, capture_cgraph
from graphc.interop.ggml_abi import TYPE_F32, InitParams, lib, tensor_at
from graphc.interop.ggml_import import check_import, import_capture
from graphc.interop.seed import seed_graph

P, F = ctypes.c_void_p, ctypes.c_float
D, N = 8, 4


def _base() -> ctypes.CDLL:
    """ggml-base, every function these tests call declared (by :mod:`ggml_abi`)."""
    return lib().base


class _Graph:
    """A small ggml graph: f32 leaves, named nodes, gallocr on the CPU backend."""

    def __init__(self) -> None:
        self.b = _base()
        self.ctx = int(self.b.ggml_init(InitParams(
            128 * int(self.b.ggml_tensor_overhead()) + (1 << 16), None, True)))
        self.backend = int(lib().cpu.ggml_backend_cpu_init())
        lib().cpu.ggml_backend_cpu_set_n_threads(self.backend, 1)
        self.gallocr = 0
        self.sched = 0
        self.inputs: dict[int, np.ndarray] = {}
        self.rng = np.random.default_rng(0)

    def leaf(self, name: str, cols: int = D, rows: int = N) -> int:
        t = int(self.b.ggml_new_tensor_2d(self.ctx, TYPE_F32, cols, rows))
        self.b.ggml_set_name(t, name.encode())
        self.b.ggml_set_input(t)
        self.inputs[t] = self.rng.standard_normal((rows, cols)).astype(np.float32)
        return t

    def name(self, t: int, name: str, output: bool = False) -> int:
        self.b.ggml_set_name(int(t), name.encode())
        if output:
            self.b.ggml_set_output(int(t))
        return int(t)

    def expand(self, *outs: int) -> None:
        self.graph = int(self.b.ggml_new_graph(self.ctx))
        for o in outs:
            self.b.ggml_build_forward_expand(self.graph, o)

    def alloc(self, *outs: int) -> None:
        self.expand(*outs)
        b = self.b
        self.gallocr = int(b.ggml_gallocr_new(b.ggml_backend_get_default_buffer_type(
            self.backend)))
        assert b.ggml_gallocr_alloc_graph(self.gallocr, self.graph)

    def compute(self, *reads: int) -> list[np.ndarray]:
        b = self.b
        for t, a in self.inputs.items():
            b.ggml_backend_tensor_set(t, a.ctypes.data, 0, a.nbytes)
        if self.sched:
            assert b.ggml_backend_sched_graph_compute(self.sched, self.graph) == 0
        else:
            assert b.ggml_backend_graph_compute(self.backend, self.graph) == 0
        out = []
        for t in reads:
            a = np.empty(int(b.ggml_nbytes(t)), np.uint8)
            b.ggml_backend_tensor_get(t, a.ctypes.data, 0, a.nbytes)
            out.append(a)
        return out

    def hazards(self) -> list[str]:
        """Everything graphc reports on the plan as it is now (a report of any kind makes
        the verdict unsafe)."""
        imp = import_capture(capture_cgraph(self.graph))
        return [imp.explain(v) for v in check_import(imp)]

    def tampering_changes_and_is_flagged(self, out: int, tamper: Callable[[], None]) -> None:
        """Assert that the plan of ``out`` is clean, then that after ``tamper`` (moving a
        pointer, bending strides) ggml really computes a different ``out`` and graphc
        reports a hazard."""
        clean = self.compute(out)
        assert self.hazards() == []
        tamper()
        (got,) = self.compute(out)
        assert not np.array_equal(got, clean[0])  # ggml really read or wrote wrong bytes
        assert self.hazards() != []

    def free(self) -> None:
        b = self.b
        if self.sched:
            b.ggml_backend_sched_free(self.sched)
        if self.gallocr:
            b.ggml_gallocr_free(self.gallocr)
        b.ggml_backend_free(self.backend)
        b.ggml_free(self.ctx)


@pytest.fixture
def gg() -> Iterator[_Graph]:
    g = _Graph()
    try:
        yield g
    finally:
        g.free()


def _offset(t: int) -> int:
    tt = tensor_at(t)
    return int(tt.data) - int(lib().base.ggml_backend_buffer_get_base(tt.buffer))


# ---------------------------------------------------------------- false alarm
def test_clamp_that_ggml_computes_in_place_is_not_a_hazard(gg: _Graph) -> None:
    """FALSE ALARM. ``ggml_op_can_inplace(GGML_OP_CLAMP)`` is true in the ggml 0.25.3 that
    ships here (so are FILL and RMS_NORM_BACK), and gallocr computes ``clamp(h)`` over
    ``h``'s bytes -- ggml's own, correct plan. ``ggml_import.CAN_INPLACE`` lacks CLAMP,
    so the node is imported as a plain ``opaque`` that may not write in place, and the
    checker reports ``bad-inplace`` (a real-hazard kind, not a conservative one).
    Fix guess: build CAN_INPLACE from ``Ggml.can_inplace`` (the library) at capture time,
    or at least add CLAMP, FILL and RMS_NORM_BACK."""
    b = gg.b
    x, y, w = gg.leaf("x"), gg.leaf("y"), gg.leaf("w")
    h = gg.name(b.ggml_add(gg.ctx, x, y), "h")
    c = gg.name(b.ggml_clamp(gg.ctx, h, F(-0.5), F(0.5)), "clamped")
    o = gg.name(b.ggml_mul_mat(gg.ctx, w, c), "out", output=True)
    gg.alloc(o)
    assert _offset(c) == _offset(h)  # ggml's allocator put the clamp in place
    assert lib().can_inplace(tensor_at(c).op)
    assert gg.hazards() == []


# ---------------------------------------------------------------- misses
def test_moved_view_data_pointer_is_not_missed(gg: _Graph) -> None:
    """MISS. ggml computes with a view's own ``data`` pointer. Here the view ``h_half``
    (read by a matmul) is pointed at the bytes of ``z`` (a live value): ggml's result
    really changes, yet the import places every view at ``owner offset + view_offs`` and
    never looks at the view's recorded ``offset`` -- the checker proves the plan safe.
    Fix guess: in ``_Importer.window`` compare ``rec.offset`` (same buffer) with the
    owner's offset + ``view_offs`` and place the window where the data really is (or
    report a hazard / refuse the capture when they differ)."""
    b = gg.b
    x, y, w = gg.leaf("x"), gg.leaf("y"), gg.leaf("w", D // 2, D)
    h = gg.name(b.ggml_add(gg.ctx, x, y), "h")
    z = gg.name(b.ggml_mul(gg.ctx, x, y), "z")
    hv = gg.name(b.ggml_view_2d(gg.ctx, h, D // 2, N, D * 4, 0), "h_half")
    o = gg.name(b.ggml_mul_mat(gg.ctx, w, hv), "out", output=True)
    o2 = gg.name(b.ggml_add(gg.ctx, z, z), "out2", output=True)
    gg.alloc(o, o2)

    def move() -> None:
        tensor_at(hv).data = tensor_at(z).data

    gg.tampering_changes_and_is_flagged(o, move)


def test_moved_cpy_destination_pointer_is_not_missed(gg: _Graph) -> None:
    """MISS. ``ggml_cpy(h_rows, dst_rows)`` writes through the CPY node's own ``data``
    (a view of ``dst``). Pointed at the bytes of ``keep`` (still read by ``final``), ggml
    really overwrites them and ``final`` changes, but ``ggml_import.write`` places every
    write-into-a-view over the whole owner's placement and ignores the node's recorded
    offset: proven safe. Fix guess: same as for views -- use (or verify) the writing
    node's own offset; a write whose bytes are not ``owner + view_offs`` is a write at
    that address."""
    b = gg.b
    x, y = gg.leaf("x"), gg.leaf("y")
    h = gg.name(b.ggml_add(gg.ctx, x, y), "h")
    keep = gg.name(b.ggml_mul(gg.ctx, x, y), "keep")
    dst = gg.name(b.ggml_scale(gg.ctx, keep, F(1.0)), "dst")
    dv = gg.name(b.ggml_view_2d(gg.ctx, dst, D, 2, D * 4, D * 4), "dst_rows")
    hv = gg.name(b.ggml_view_2d(gg.ctx, h, D, 2, D * 4, 0), "h_rows")
    cp = gg.name(b.ggml_cpy(gg.ctx, hv, dv), "cpy")
    fin = gg.name(b.ggml_add(gg.ctx, dst, keep), "final", output=True)
    gg.alloc(cp, fin)

    def move() -> None:
        tensor_at(cp).data = tensor_at(keep).data

    gg.tampering_changes_and_is_flagged(fin, move)


def test_node_with_strided_nb_that_writes_past_its_size_is_not_missed(gg: _Graph) -> None:
    """MISS. ggml's kernels write a node's rows at its byte strides ``nb``. Giving ``h``
    (4 rows of 32 B) a row stride of 64 B makes ADD write 32..352 B past its start, over
    ``z``, which ``k`` reads next: ggml's result really changes. The capture records the
    ``nb`` and ``nbytes``, but the import treats every non-view node as dense with its
    type's size, so the checker proves the plan safe. Fix guess: refuse (or place as
    written, with its strides and true span) any owning tensor whose ``nb`` is not the
    contiguous one for its ``ne``."""
    b = gg.b
    x, y, z = gg.leaf("x"), gg.leaf("y"), gg.leaf("z")
    h = gg.name(b.ggml_add(gg.ctx, x, y), "h")
    k = gg.name(b.ggml_mul(gg.ctx, x, z), "k")
    s = gg.name(b.ggml_add(gg.ctx, h, h), "s")
    o = gg.name(b.ggml_add(gg.ctx, s, k), "o", output=True)
    gg.alloc(o)
    assert _offset(h) < _offset(z) < _offset(h) + 2 * D * 4 * N  # inside the strided span

    def stride() -> None:
        th = tensor_at(h)
        th.nb[1] = 2 * D * 4
        th.nb[2] = th.nb[3] = 2 * D * 4 * N

    gg.tampering_changes_and_is_flagged(o, stride)


# ---------------------------------------------------------------- the dynamic check
def test_recorder_sees_a_leaf_clobbered_before_its_first_read(gg: _Graph) -> None:
    """BLIND SPOT of the dynamic check. ``Recorder`` snapshots a leaf only when its first
    reader is about to run ("its bytes as the run found them"). Here node ``a`` is moved
    onto input ``z``'s bytes and runs before ``o``, the first reader of ``z``: ggml
    really reads garbage (the output changes; graphc's static checker even reports
    ``clobbered-read``), but the Recorder -- the oracle the static checker is tested
    against -- has no finding. Fix guess: snapshot every leaf's bytes before the first
    node runs (e.g. copy the host buffers at the first ``ask`` of a run and compare each
    leaf's first read with that copy)."""
    b = gg.b
    x, y, z = gg.leaf("x"), gg.leaf("y"), gg.leaf("z")
    a = gg.name(b.ggml_add(gg.ctx, x, y), "a")
    s = gg.name(b.ggml_mul(gg.ctx, a, a), "s")
    o = gg.name(b.ggml_add(gg.ctx, s, z), "o", output=True)
    gg.expand(o)
    backends = (P * 1)(gg.backend)
    gg.sched = int(b.ggml_backend_sched_new(backends, None, 1, 256, False, False))
    rec = Recorder()
    b.ggml_backend_sched_set_eval_callback(gg.sched, ctypes.cast(rec.callback, P), None)
    assert b.ggml_backend_sched_alloc_graph(gg.sched, gg.graph)
    rec.reset()
    clean = gg.compute(o)
    (clean_cap,) = rec.finish("clean")
    assert clean_cap.findings == []
    tensor_at(a).data = tensor_at(z).data
    rec.reset()
    (got,) = gg.compute(o)
    (cap,) = rec.finish("moved")
    assert not np.array_equal(got, clean[0])
    assert [v.kind for v in check_import(import_capture(cap))] == ["clobbered-read"]
    assert cap.findings != []


# ---------------------------------------------------------------- reports
def test_report_names_the_ggml_node_index() -> None:
    """WRONG LOCATION IN THE REPORT. ``Imported.explain`` says "at node N" with graphc's
    step, which counts the leaves graphc inserted into its order. In the seed graph
    ``h_post_norm`` is ggml node 1 (of 3: ``cap.order``), but the report says
    "at node 3" -- a node index ggml's graph does not even have. Fix guess: map the step
    back through ``imp.record`` to the record's position in ``cap.order`` (or say "graphc
    step")."""
    run = seed_graph(mark_tap=False)
    cap = run.capture
    imp = import_capture(cap)
    (v,) = check_import(imp)
    node = cap.order.index(cap.by_name("h_post_norm").id)
    assert node == 1
    assert f"at node {node}" in imp.explain(v)


# ---------------------------------------------------------------- bad captures
def _seed_json() -> dict[str, object]:
    return json.loads(seed_graph(mark_tap=True).capture.to_json())  # type: ignore[no-any-return]


def _tensor(data: dict[str, object], name: str) -> dict[str, object]:
    return next(t for t in data["tensors"] if t["name"] == name)  # type: ignore[attr-defined,index]


@pytest.mark.parametrize("edit", [
    "src-out-of-range", "order-out-of-range", "buffer-out-of-range", "view-cycle",
    "params-empty"])
def test_a_broken_capture_is_a_graph_error_not_a_traceback(
        edit: str, tmp_path: Path) -> None:
    """CRASH. Captures that pass ``Capture.load``'s schema but index outside the capture
    (a ``src``, ``order`` or ``buffer`` index past the end), make a tensor its own
    ``view_src``, or drop the op parameters an op reads, escape ``graphc check`` as
    IndexError / RecursionError tracebacks instead of a GraphError (exit code 2).
    Fix guess: validate indices, ``view_src`` (must be a non-view, non-self tensor) and
    ``params`` length in ``Capture.load`` (a pydantic model validator)."""
    data = _seed_json()
    if edit == "src-out-of-range":
        _tensor(data, "h_post_norm")["src"] = [99]
    elif edit == "order-out-of-range":
        data["order"].append(99)  # type: ignore[attr-defined]
    elif edit == "buffer-out-of-range":
        _tensor(data, "x")["buffer"] = 7
    elif edit == "view-cycle":
        _tensor(data, "x")["view_src"] = _tensor(data, "x")["id"]
    else:
        for t in data["tensors"]:  # type: ignore[attr-defined]
            t["params"] = []
    path = tmp_path / "capture.json"
    path.write_text(json.dumps(data))
    with pytest.raises(gc.GraphError, match=r"capture\.json: not a ggml capture"):
        import_capture(Capture.load(path))
    assert main(["check", str(path)]) == 2


def test_a_negative_source_index_is_refused(tmp_path: Path) -> None:
    """SILENT ACCEPTANCE. A ``src`` of -1 is not a tensor of the capture, but Python
    indexing reads it as the last tensor (here ``result_output``, computed later), and
    ``graphc check`` calls the nonsense graph "proven safe" (exit 0). Fix guess: reject
    negative (and out-of-range) indices when loading."""
    data = _seed_json()
    _tensor(data, "h_post_norm")["src"] = [-1]
    path = tmp_path / "capture.json"
    path.write_text(json.dumps(data))
    with pytest.raises(gc.GraphError, match="source -1 is not a tensor of the capture"):
        import_capture(Capture.load(path))
