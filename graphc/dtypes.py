"""The element types graphc knows, their sizes and their NumPy equivalents.

``u8`` is raw bytes: no arithmetic op takes it (it is in neither :data:`FLOAT_DTYPES` nor
:data:`NUMERIC_DTYPES`); views, copies and opaque ops carry it. The ggml import lays out
block-quantized tensors (q8_0, q4_0, ...) as ``u8``, so a view may start at any byte."""

from __future__ import annotations

from typing import Literal

import ml_dtypes
import numpy as np

DType = Literal["f32", "f16", "bf16", "i32", "bool", "u8"]

DTYPES: tuple[str, ...] = ("f32", "f16", "bf16", "i32", "bool", "u8")
FLOAT_DTYPES: frozenset[str] = frozenset({"f32", "f16", "bf16"})
NUMERIC_DTYPES: frozenset[str] = frozenset({"f32", "f16", "bf16", "i32"})

_NUMPY: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "i32": np.dtype(np.int32),
    "bool": np.dtype(np.bool_),
    "u8": np.dtype(np.uint8),
}
_FROM_NUMPY: dict[np.dtype, str] = {v: k for k, v in _NUMPY.items()}

ITEMSIZE: dict[str, int] = {k: v.itemsize for k, v in _NUMPY.items()}



def to_numpy(dtype: str) -> np.dtype:
    """The NumPy dtype of a graphc dtype name (bf16 comes from ml_dtypes)."""
    return _NUMPY[dtype]


def from_numpy(dtype: np.dtype) -> str | None:
    """The graphc dtype name of a NumPy dtype, or None when graphc has no such type."""
    return _FROM_NUMPY.get(np.dtype(dtype))
