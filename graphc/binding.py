"""Checking the arrays a caller feeds (inputs), binds (params) or seeds (states)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from graphc.dtypes import from_numpy, to_numpy
from graphc.errors import GraphError
from graphc.tensor import Tensor


def check_array(kind: str, name: str, t: Tensor, value: Any) -> np.ndarray:
    """Return ``value`` as a NumPy array of ``t``'s shape and dtype, or raise GraphError.

    Arrays (NumPy or JAX) must already have the exact dtype; plain Python numbers and
    lists are converted to it.
    """
    want = to_numpy(t.dtype)
    if type(value).__module__.startswith(("jax", "jaxlib")):
        # a device array: check it without copying it to the host
        if np.dtype(value.dtype) != want:
            raise GraphError(f"{kind} {name!r} has dtype {from_numpy(value.dtype) or value.dtype}"
                             f", expected {t.dtype}",
                             fix=f"convert it, e.g. x.astype(jnp.{want.name})")
        if tuple(value.shape) != t.shape:
            raise GraphError(f"{kind} {name!r} has shape {list(value.shape)}, expected "
                             f"{list(t.shape)}", fix=f"pass an array of shape {list(t.shape)}")
        return value  # type: ignore[no-any-return]  # an array, checked just above
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        arr = np.asarray(value)
        if arr.dtype != want:
            raise GraphError(
                f"{kind} {name!r} has dtype {from_numpy(arr.dtype) or arr.dtype}, "
                f"expected {t.dtype}",
                fix=f"convert it, e.g. np.asarray(x, dtype=np.{want.name})",
            )
    else:
        try:
            arr = np.asarray(value, dtype=want)
        except (TypeError, ValueError) as e:
            raise GraphError(f"{kind} {name!r} cannot be converted to {t.dtype}: {e}") from None
    if arr.shape != t.shape:
        raise GraphError(
            f"{kind} {name!r} has shape {list(arr.shape)}, expected {list(t.shape)}",
            fix=f"pass an array of shape {list(t.shape)}",
        )
    return arr


def check_feeds(
    kind: str, expected: Mapping[str, Tensor], given: Mapping[str, Any] | None,
    *, allow_missing: bool = False,
) -> dict[str, np.ndarray]:
    """Check a whole feed: every expected name present (unless ``allow_missing``), no
    extra names, each array of the right shape and dtype."""
    given = dict(given or {})
    extra = sorted(set(given) - set(expected))
    if extra:
        raise GraphError(f"unknown {kind} {extra[0]!r}",
                         fix=f"the graph's {kind}s are {sorted(expected)}")
    missing = sorted(set(expected) - set(given))
    if missing and not allow_missing:
        t = expected[missing[0]]
        raise GraphError(f"missing {kind} {missing[0]!r} ({t.type_str})",
                         fix=f"pass every {kind}: {sorted(expected)}")
    return {n: check_array(kind, n, expected[n], v) for n, v in given.items()}
