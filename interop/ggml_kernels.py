"""A few ggml ops recomputed with NumPy from raw bytes: the dynamic check inside a node.

The :class:`~graphc.interop.capture.Recorder` copies a node's operands just before ggml
runs it and, once it has run, asks :func:`recompute` what the node should have written.
When ggml placed a node over an operand it still reads (llama.cpp issue #28448: a matmul
written over its own input), the damage happens inside the node and no later read sees it;
comparing the node's bytes with this recomputation does.

Written here from ggml's documented semantics (``ne[0]`` innermost; ``src1`` repeated over
``src0`` in binary ops; ``mul_mat(a, b)`` is ``b @ a^T`` per batch), in float64, sharing no
code with graphc's backends. An op, type or layout not covered returns None: not checked.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from graphc.interop.capture import TensorRecord

_TYPES = {"f32": np.float32, "f16": np.float16, "i32": np.int32}


def as_array(rec: TensorRecord, data: bytes) -> np.ndarray | None:
    """``data`` (the tensor's bytes from its first element) as a row-major array of
    ``rec``'s shape and strides; None for types this module does not read."""
    dt = _TYPES.get(rec.type)
    if dt is None or any(n < 0 for n in rec.ne):
        return None
    shape = tuple(reversed(rec.ne))
    strides = tuple(reversed(rec.nb))
    need = sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + np.dtype(dt).itemsize
    if 0 in shape or len(data) < need:
        return None
    return np.ndarray(shape, dt, buffer=data, strides=strides).astype(np.float64)


def _f32(word: int) -> float:
    return float(struct.unpack("<f", struct.pack("<i", word))[0])


def _tile(b: np.ndarray, like: np.ndarray) -> np.ndarray | None:
    """ggml's repeat of ``b`` over ``like`` (each dimension of ``like`` a multiple)."""
    if any(x % y for x, y in zip(like.shape, b.shape, strict=True)):
        return None
    return np.tile(b, [x // y for x, y in zip(like.shape, b.shape, strict=True)])


def _binary(f: Callable[[np.ndarray, np.ndarray], np.ndarray]
            ) -> Callable[[TensorRecord, list[np.ndarray]], np.ndarray | None]:
    def run(rec: TensorRecord, x: list[np.ndarray]) -> np.ndarray | None:
        if len(x) != 2:
            return None
        b = _tile(x[1], x[0])
        return None if b is None else f(x[0], b)
    return run


def _mul_mat(rec: TensorRecord, x: list[np.ndarray]) -> np.ndarray | None:
    a, b = x  # a: [a3, a2, M, K], b: [b3, b2, N, K] -> [b3, b2, N, M]
    if a.shape[-1] != b.shape[-1] or b.shape[0] % a.shape[0] or b.shape[1] % a.shape[1]:
        return None
    a = np.repeat(np.repeat(a, b.shape[0] // a.shape[0], axis=0), b.shape[1] // a.shape[1],
                  axis=1)
    return np.asarray(b @ np.swapaxes(a, -1, -2))


def _rms_norm(rec: TensorRecord, x: list[np.ndarray]) -> np.ndarray:
    v = x[0]
    return np.asarray(v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + _f32(rec.params[0])))


def _get_rows(rec: TensorRecord, x: list[np.ndarray]) -> np.ndarray | None:
    src, idx = x
    if src.shape[:2] != (1, 1) or idx.shape[:3] != (1, 1, 1):
        return None
    return np.asarray(src[0, 0][idx[0, 0, 0].astype(np.int64)])[None, None]


KERNELS: dict[str, Callable[[TensorRecord, list[np.ndarray]], np.ndarray | None]] = {
    "ADD": _binary(np.add),
    "SUB": _binary(np.subtract),
    "MUL": _binary(np.multiply),
    "DIV": _binary(np.divide),
    "SCALE": lambda r, x: x[0] * _f32(r.params[0]) + _f32(r.params[1]),
    "RMS_NORM": _rms_norm,
    "SILU": lambda r, x: x[0] / (1.0 + np.exp(-x[0])),
    "MUL_MAT": _mul_mat,
    "GET_ROWS": _get_rows,
    "CONT": lambda r, x: x[0].reshape(tuple(reversed(r.ne))) if x[0].size == np.prod(r.ne)
    else None,
}
"""ggml op (``UNARY`` / ``GLU`` by sub-op) -> NumPy semantics over float64 operands in ggml's
row-major shapes; None where a node's form is not covered."""


def recompute(rec: TensorRecord, operands: Sequence[np.ndarray]) -> np.ndarray | None:
    """What node ``rec`` should hold, from its operands as they were before it ran (in
    ``rec.src`` order); None when the op or its form is not covered."""
    key = rec.desc if rec.op in ("UNARY", "GLU") else rec.op
    fn = KERNELS.get(key)
    if fn is None:
        return None
    try:
        with np.errstate(all="ignore"):
            out = fn(rec, list(operands))
    except (ValueError, IndexError):
        return None
    if out is None or out.shape != tuple(reversed(rec.ne)):
        return None
    return out


def max_error(got: np.ndarray, want: np.ndarray) -> float:
    """The largest absolute difference; equal infinities and NaN against NaN count as
    equal, any other non-finite difference as infinite."""
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        d = np.where(same, 0.0, np.abs(got - want))
    return float(np.inf) if np.isnan(d).any() else float(d.max(initial=0.0))


def tolerance(want: np.ndarray, rec: TensorRecord) -> float:
    """How far ggml's result may be from float64, relative to its largest finite value
    (looser for f16 and for contractions, which ggml may sum in another order or in
    f16)."""
    finite = np.abs(want[np.isfinite(want)])
    scale = 1.0 + float(finite.max(initial=0.0))
    eps = 1e-3 if rec.type == "f16" or rec.op == "MUL_MAT" else 1e-4
    return eps * scale
