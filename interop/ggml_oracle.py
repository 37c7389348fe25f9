"""Real memory as the oracle: move nodes of a real ggml allocation, compute with ggml,
and see whether graphc's checker agrees with what the bytes did.

:func:`move_every_node` builds a small ggml graph (adds, a product, a norm, SiLU, a
strided view read by a matmul, a scale, a tap read after the run without the OUTPUT
flag), allocates it with ``ggml_gallocr`` and computes it once cleanly. Then, for every
node that owns its bytes and has no views, and every 32-byte-aligned start inside the
compute buffer, it moves the node there, computes again with ggml's CPU backend, captures
the moved plan and runs the checker on it. A move *broke* the run when an output differs
from the clean run; the checker must flag every such move. The tap's own (deliberate,
always reported) violation is left out of the judgement.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from graphc.interop.capture import capture_cgraph
from graphc.interop.ggml_abi import TYPE_F32, InitParams, lib, tensor_at
from graphc.interop.ggml_import import check_import, import_capture

TAP = "tap"


@dataclass
class MoveCounts:
    """``moves`` tried; ``broke``: an output changed; ``flagged``: the checker reported a
    violation; ``missed``: broke but not flagged (must be 0); ``tap_reported``: the
    unmarked tap was reported in the clean plan."""

    moves: int = 0
    broke: int = 0
    flagged: int = 0
    missed: int = 0
    tap_reported: bool = False

    @property
    def flagged_harmless(self) -> int:
        """Moves the checker flagged whose outputs happened to come out equal."""
        return self.flagged - (self.broke - self.missed)


@dataclass
class _Graph:
    ctx: int
    graph: int
    backend: int
    gallocr: int
    inputs: dict[int, np.ndarray]
    outputs: list[int]

    def free(self) -> None:
        b = lib().base
        b.ggml_gallocr_free(self.gallocr)
        b.ggml_backend_free(self.backend)
        b.ggml_free(self.ctx)


def _build(seed: int, d: int = 16, n: int = 4) -> _Graph:
    g = lib()
    b = g.base
    ctx = int(b.ggml_init(InitParams(128 * int(b.ggml_tensor_overhead()) + (1 << 16), None,
                                     True)))

    def leaf(name: str, cols: int, rows: int) -> int:
        t = int(b.ggml_new_tensor_2d(ctx, TYPE_F32, cols, rows))
        b.ggml_set_name(t, name.encode())
        b.ggml_set_input(t)
        return t

    def named(t: int, name: str) -> int:
        b.ggml_set_name(t, name.encode())
        return t

    x, y, w, w2 = leaf("x", d, n), leaf("y", d, n), leaf("w", d, d), leaf("w2", d // 2, d)
    h = named(int(b.ggml_add(ctx, x, y)), "h")
    tap = named(int(b.ggml_mul(ctx, h, y)), TAP)
    nrm = named(int(b.ggml_rms_norm(ctx, tap, ctypes.c_float(1e-6))), "norm")
    act = named(int(b.ggml_silu(ctx, nrm)), "act")
    proj = named(int(b.ggml_mul_mat(ctx, w, act)), "proj")
    half = named(int(b.ggml_view_2d(ctx, proj, d // 2, n, d * 4, 0)), "half")
    small = named(int(b.ggml_mul_mat(ctx, w2, half)), "small")
    scaled = named(int(b.ggml_scale(ctx, small, ctypes.c_float(0.5))), "scaled")
    out = named(int(b.ggml_add(ctx, proj, h)), "result")
    b.ggml_set_output(out)
    b.ggml_set_output(scaled)
    graph = int(b.ggml_new_graph(ctx))
    b.ggml_build_forward_expand(graph, scaled)
    b.ggml_build_forward_expand(graph, out)
    backend = int(g.cpu.ggml_backend_cpu_init())
    g.cpu.ggml_backend_cpu_set_n_threads(backend, 1)
    gallocr = int(b.ggml_gallocr_new(b.ggml_backend_get_default_buffer_type(backend)))
    if not b.ggml_gallocr_alloc_graph(gallocr, graph):
        raise RuntimeError("ggml_gallocr_alloc_graph failed")
    rng = np.random.default_rng(seed)
    inputs = {t: np.ascontiguousarray(rng.standard_normal(shape), np.float32)
              for t, shape in ((x, (n, d)), (y, (n, d)), (w, (d, d)), (w2, (d, d // 2)))}
    return _Graph(ctx, graph, backend, gallocr, inputs, [out, scaled])


def _compute(gr: _Graph) -> list[np.ndarray]:
    b = lib().base
    for t, a in gr.inputs.items():
        b.ggml_backend_tensor_set(t, a.ctypes.data, 0, a.nbytes)
    if b.ggml_backend_graph_compute(gr.backend, gr.graph) != 0:
        raise RuntimeError("ggml_backend_graph_compute failed")
    out = []
    for t in gr.outputs:
        a = np.empty(int(b.ggml_nbytes(t)) // 4, np.float32)
        b.ggml_backend_tensor_get(t, a.ctypes.data, 0, a.nbytes)
        out.append(a)
    return out


def _movable(gr: _Graph) -> Iterator[int]:
    """Computed nodes that own their bytes and have no views (moving one of them moves
    everything that refers to its bytes)."""
    b = lib().base
    nodes = [int(b.ggml_graph_node(gr.graph, i)) for i in range(b.ggml_graph_n_nodes(gr.graph))]
    viewed = {int(tensor_at(t).view_src) for t in nodes if tensor_at(t).view_src}
    return (t for t in nodes if not tensor_at(t).view_src and t not in viewed)


def _judged(cap_violations: list[object]) -> list[object]:
    """The violations other than the tap's own (it is unmarked in every plan)."""
    return [v for v in cap_violations
            if not (getattr(v, "kind", "") == "unmarked-tap"
                    and getattr(getattr(v, "tensor", None), "name", None) == TAP)]


def move_every_node(seed: int = 3, stride: int = 32) -> MoveCounts:
    """Run the experiment of the module doc; ``stride``: bytes between tried starts."""
    b = lib().base
    gr = _build(seed)
    counts = MoveCounts()
    try:
        clean = _compute(gr)
        counts.tap_reported = any(
            getattr(v.tensor, "name", None) == TAP
            for v in check_import(import_capture(capture_cgraph(gr.graph, reads=[TAP]))))
        buf = int(tensor_at(gr.outputs[0]).buffer)
        base = int(b.ggml_backend_buffer_get_base(buf))
        size = int(b.ggml_backend_buffer_get_size(buf))
        for node in list(_movable(gr)):
            t = tensor_at(node)
            home = int(t.data)
            for target in range(base, base + size - int(b.ggml_nbytes(node)) + 1, stride):
                if target == home:
                    continue
                t.data = target
                try:
                    got = _compute(gr)
                    moved = capture_cgraph(gr.graph, reads=[TAP])
                finally:
                    t.data = home
                found = _judged(list(check_import(import_capture(moved))))
                broke = any(not np.array_equal(a, c) for a, c in zip(got, clean, strict=True))
                counts.moves += 1
                counts.broke += broke
                counts.flagged += bool(found)
                counts.missed += broke and not found
    finally:
        gr.free()
    return counts
