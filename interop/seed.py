"""The bug graphc exists for, on ggml's real allocator.

A hidden state ``h_pre_norm`` is read by the caller after the graph (an MTP head's tap,
copied out with ``ggml_backend_tensor_get`` and observed there, whatever its name),
then ``rms_norm`` of it feeds the logits. Without ``ggml_set_output`` on the tap, ggml's
graph allocator (``ggml_gallocr``) computes the norm in place over the tap's bytes, so
after the run they hold the post-norm values and the head silently reads the wrong state.

:func:`seed_graph` builds that graph with ggml's own API, allocates it with ``ggml_gallocr``,
computes it with ggml's CPU backend and returns the capture with the tap's real bytes
after the run, next to the pre-norm and post-norm values computed with NumPy.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from graphc.interop.capture import Capture, capture_cgraph, watch_cgraph
from graphc.interop.ggml_abi import TYPE_F32, InitParams, lib

TAP = "h_pre_norm"
EPS = 1e-6


@dataclass
class SeedRun:
    """The capture (the tap named in its reads), the tap's bytes after ggml computed the
    graph, and what they should hold (``pre_norm``) or hold when clobbered
    (``post_norm``)."""

    capture: Capture
    tap_after_run: np.ndarray
    pre_norm: np.ndarray
    post_norm: np.ndarray


def seed_graph(mark_tap: bool, tokens: int = 4, d: int = 16, vocab: int = 8, seed: int = 0,
               tap_name: str = TAP) -> SeedRun:
    """Build, allocate (``ggml_gallocr``) and compute ``h = x + y; n = rms_norm(h);
    logits = W n`` with ggml, then read ``h`` (named ``tap_name``) and the logits with
    ``ggml_backend_tensor_get``, as a host does; ``mark_tap``: call ``ggml_set_output`` on
    ``h``. The capture knows what was read only from watching those copies."""
    g = lib()
    b = g.base
    ctx = b.ggml_init(InitParams(64 * int(b.ggml_tensor_overhead()) + (1 << 16), None, True))
    backend = gallocr = None
    try:
        def matrix(name: str, cols: int, rows: int) -> int:
            t = int(b.ggml_new_tensor_2d(ctx, TYPE_F32, cols, rows))
            b.ggml_set_name(t, name.encode())
            b.ggml_set_input(t)
            return t

        x, y, w = matrix("x", d, tokens), matrix("y", d, tokens), matrix("w_out", d, vocab)
        tap = int(b.ggml_add(ctx, x, y))
        b.ggml_set_name(tap, tap_name.encode())
        if mark_tap:
            b.ggml_set_output(tap)
        norm = int(b.ggml_rms_norm(ctx, tap, ctypes.c_float(EPS)))
        b.ggml_set_name(norm, b"h_post_norm")
        logits = int(b.ggml_mul_mat(ctx, w, norm))
        b.ggml_set_name(logits, b"result_output")
        b.ggml_set_output(logits)
        graph = b.ggml_new_graph(ctx)
        b.ggml_build_forward_expand(graph, logits)

        backend = g.cpu.ggml_backend_cpu_init()
        g.cpu.ggml_backend_cpu_set_n_threads(backend, 1)
        gallocr = b.ggml_gallocr_new(b.ggml_backend_get_default_buffer_type(backend))
        if not b.ggml_gallocr_alloc_graph(gallocr, graph):
            raise RuntimeError("ggml_gallocr_alloc_graph failed")
        rng = np.random.default_rng(seed)
        values = {}
        for name, t, shape in (("x", x, (tokens, d)), ("y", y, (tokens, d)),
                               ("w", w, (vocab, d))):
            a = np.ascontiguousarray(rng.standard_normal(shape), np.float32)
            values[name] = a
            b.ggml_backend_tensor_set(t, a.ctypes.data, 0, a.nbytes)
        after = np.empty((tokens, d), np.float32)
        out = np.empty((tokens, vocab), np.float32)
        with watch_cgraph(graph) as watch:
            if b.ggml_backend_graph_compute(backend, graph) != 0:
                raise RuntimeError("ggml_backend_graph_compute failed")
            b.ggml_backend_tensor_get(tap, after.ctypes.data, 0, after.nbytes)
            b.ggml_backend_tensor_get(logits, out.ctypes.data, 0, out.nbytes)
        marked = "marked" if mark_tap else "unmarked"
        capture = capture_cgraph(graph, f"ggml seed graph (tap {marked})", watch=watch)
    finally:
        if gallocr is not None:
            b.ggml_gallocr_free(gallocr)
        if backend is not None:
            b.ggml_backend_free(backend)
        b.ggml_free(ctx)
    pre = values["x"] + values["y"]
    post = pre / np.sqrt(np.mean(pre * pre, axis=-1, keepdims=True) + EPS)
    return SeedRun(capture, after, pre, post)
