"""The op table: every op graphc knows, described once.

Each :class:`OpDef` holds the arity, the attribute schema (with defaults, some computed
from the input shapes), the shape-and-dtype rule, the op's kind, whether it may write in
place into its first operand, and for views the map from the source's layout to the
view's layout (which bytes of the source the view covers). Backends keep their own tables
keyed by op name; nothing here computes values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from graphc.dtypes import DTYPES, FLOAT_DTYPES, NUMERIC_DTYPES
from graphc.tensor import Shape

Kind = Literal[
    "leaf", "elementwise", "rowwise", "reduction", "contraction", "view", "gather",
    "scatter", "attention", "other",
]
AttrKind = Literal["int", "float", "bool", "str", "ints", "numbers", "dtype"]

MAX_ELEMENTS = 2**40
"""No tensor may hold more elements than this: larger shapes are typos, not models."""


class OpError(Exception):
    """Raised by a shape rule; the builder turns it into a :class:`graphc.GraphError`."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class AttrSpec:
    """One attribute: its literal kind and its default (a value, REQUIRED, or a function
    of the input shapes that computes the default)."""

    kind: AttrKind
    default: Any = REQUIRED
    doc: str = ""


Attrs = dict[str, Any]
InferFn = Callable[[list[Shape], list[str], dict[str, Any]], tuple[Shape, str]]
CanonFn = Callable[[list[Shape], dict[str, Any]], dict[str, Any]]
ViewFn = Callable[[Shape, tuple[int, ...], dict[str, Any]], "tuple[int, tuple[int, ...]] | None"]


@dataclass(frozen=True)
class OpDef:
    """How one op behaves at the graph level.

    ``arity`` is the number of operands (``None``: any number, at least ``min_arity``).
    ``infer`` returns the output (shape, dtype) or raises :class:`OpError`. ``canon``
    rewrites attributes into canonical form (negative axes made positive). ``inplace``:
    the op may write its result into operand 0's buffer. ``view``: for view ops, maps the
    source's (shape, element strides) to the view's (element offset, element strides), or
    None when the source layout does not allow a view.
    """

    name: str
    arity: int | None
    infer: InferFn
    kind: Kind
    attrs: Mapping[str, AttrSpec] = field(default_factory=dict)
    inplace: bool = False
    view: ViewFn | None = None
    canon: CanonFn | None = None
    min_arity: int = 0
    doc: str = ""


OP_TABLE: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add an op to the table (names are unique)."""
    if op.name in OP_TABLE:
        raise ValueError(f"op {op.name!r} is already registered")
    OP_TABLE[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    """The op called ``name``; :class:`OpError` listing the known ops otherwise."""
    try:
        return OP_TABLE[name]
    except KeyError:
        raise OpError(
            f"unknown op {name!r}",
            fix="use one of: " + ", ".join(sorted(OP_TABLE)),
        ) from None


# ----------------------------------------------------------------------------- helpers


def contiguous_strides(shape: Shape) -> tuple[int, ...]:
    """Row-major element strides of a dense tensor of ``shape``."""
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * max(shape[i + 1], 1)
    return tuple(strides)


def check_shape(shape: Sequence[int], what: str = "shape") -> Shape:
    """Validate a shape: non-negative ints, at most MAX_ELEMENTS elements."""
    out: list[int] = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int | np.integer):
            raise OpError(f"{what} {list(shape)} has a non-integer dimension {d!r}")
        if d < 0:
            raise OpError(f"{what} {list(shape)} has a negative dimension {d}")
        out.append(int(d))
    n = math.prod(out)
    if n > MAX_ELEMENTS:
        raise OpError(
            f"{what} {out} has {n} elements, more than the limit 2**40",
            fix="check the dimensions for a typo",
        )
    return tuple(out)


def _axis(axis: int, ndim: int, what: str = "axis") -> int:
    if not -ndim <= axis < ndim:
        raise OpError(f"{what} {axis} is out of range for rank {ndim}")
    return axis % ndim


def _need(dtype: str, allowed: frozenset[str], what: str, i: int = 0) -> None:
    if dtype not in allowed:
        raise OpError(
            f"operand {i} has dtype {dtype}, but {what} needs one of {sorted(allowed)}",
            fix="insert a cast",
        )


def _same_dtypes(dtypes: list[str]) -> str:
    first = dtypes[0]
    for i, d in enumerate(dtypes[1:], 1):
        if d != first:
            raise OpError(
                f"dtype mismatch: operand 0 is {first} but operand {i} is {d}",
                fix=f"cast operand {i} to {first}",
            )
    return first


def _broadcast(shapes: list[Shape]) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise OpError(
            "shapes " + " and ".join(str(list(s)) for s in shapes) + " do not broadcast",
            fix="reshape an operand so trailing dimensions match or are 1",
        ) from None


# ----------------------------------------------------------------------------- families


def _binary(allowed: frozenset[str]) -> InferFn:
    def infer(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
        dt = _same_dtypes(dtypes)
        _need(dt, allowed, "this op")
        return _broadcast(shapes), dt

    return infer


def _unary(allowed: frozenset[str] | None) -> InferFn:
    def infer(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
        if allowed is not None:
            _need(dtypes[0], allowed, "this op")
        return shapes[0], dtypes[0]

    return infer


for _name, _allowed in [("add", NUMERIC_DTYPES), ("sub", NUMERIC_DTYPES), ("mul", NUMERIC_DTYPES),
                        ("div", FLOAT_DTYPES), ("maximum", NUMERIC_DTYPES)]:
    register(OpDef(_name, 2, _binary(_allowed), "elementwise", inplace=True,
                   doc=f"Elementwise {_name} with NumPy broadcasting; operands share a dtype."))

for _name in ["exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "gelu", "silu"]:
    register(OpDef(_name, 1, _unary(FLOAT_DTYPES), "elementwise", inplace=True,
                   doc=f"Elementwise {_name} of a float tensor (gelu: tanh approximation)."))

for _name in ["neg", "relu"]:
    register(OpDef(_name, 1, _unary(NUMERIC_DTYPES), "elementwise", inplace=True,
                   doc=f"Elementwise {_name}."))

register(OpDef("copy", 1, _unary(None), "elementwise", inplace=False,
               doc="A fresh copy of the operand (never aliases it)."))

register(OpDef("scale", 1, _unary(FLOAT_DTYPES), "elementwise", inplace=True,
               attrs={"s": AttrSpec("float", doc="the factor")},
               doc="Multiply by the literal factor s."))


def _infer_cast(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    return shapes[0], attrs["dtype"]


register(OpDef("cast", 1, _infer_cast, "elementwise",
               attrs={"dtype": AttrSpec("dtype", doc="the target dtype")},
               doc="Convert to another dtype (NumPy astype semantics)."))


def _infer_matmul(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    a, b = shapes
    dt = _same_dtypes(dtypes)
    _need(dt, NUMERIC_DTYPES, "matmul")
    if len(a) < 2 or len(b) < 2:
        raise OpError(
            f"matmul needs operands of rank >= 2, got {list(a)} and {list(b)}",
            fix="reshape the vector operand to a matrix",
        )
    if a[-1] != b[-2]:
        raise OpError(
            f"matmul contraction mismatch: {list(a)} @ {list(b)} ({a[-1]} != {b[-2]})",
            fix="transpose or reshape an operand so a[-1] == b[-2]",
        )
    batch = _broadcast([a[:-2], b[:-2]])
    return (*batch, a[-2], b[-1]), dt


register(OpDef("matmul", 2, _infer_matmul, "contraction",
               doc="a @ b with NumPy batch broadcasting (both operands rank >= 2)."))


def _infer_norm(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    _need(dtypes[0], FLOAT_DTYPES, "a norm")
    if len(shapes[0]) < 1:
        raise OpError("a norm needs an operand of rank >= 1")
    if attrs["eps"] < 0:
        raise OpError(f"eps must be >= 0, got {attrs['eps']}")
    return shapes[0], dtypes[0]


register(OpDef("rms_norm", 1, _infer_norm, "rowwise", inplace=True,
               attrs={"eps": AttrSpec("float", 1e-6)},
               doc="x / sqrt(mean(x**2, last axis) + eps); no weight (multiply after)."))
register(OpDef("layer_norm", 1, _infer_norm, "rowwise", inplace=True,
               attrs={"eps": AttrSpec("float", 1e-5)},
               doc="(x - mean) / sqrt(var + eps) over the last axis; no affine part."))


def _canon_axis(shapes: list[Shape], attrs: dict[str, Any]) -> dict[str, Any]:
    out = dict(attrs)
    out["axis"] = _axis(attrs["axis"], len(shapes[0]))
    return out


def _infer_softmax(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    _need(dtypes[0], FLOAT_DTYPES, "softmax")
    _axis(attrs["axis"], len(shapes[0]))
    return shapes[0], dtypes[0]


register(OpDef("softmax", 1, _infer_softmax, "rowwise", inplace=True, canon=_canon_axis,
               attrs={"axis": AttrSpec("int", -1)},
               doc="Numerically stable softmax along axis."))


def _infer_rope(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    x, pos = shapes
    _need(dtypes[0], FLOAT_DTYPES, "rope")
    if len(x) != 3:
        raise OpError(f"rope needs x of shape [n_tokens, n_heads, head_dim], got {list(x)}")
    if x[2] % 2:
        raise OpError(f"rope needs an even head_dim, got {x[2]}")
    if dtypes[1] != "i32" or pos != (x[0],):
        raise OpError(
            f"rope positions must be i32[{x[0]}] (one per token), got {dtypes[1]}{list(pos)}"
        )
    if attrs["theta"] <= 0:
        raise OpError(f"theta must be > 0, got {attrs['theta']}")
    return x, dtypes[0]


register(OpDef("rope", 2, _infer_rope, "rowwise", inplace=True,
               attrs={"theta": AttrSpec("float", 10000.0)},
               doc="Rotary embedding, rotate-halves (NeoX) layout, on [tokens, heads, dim] "
                   "with i32 positions [tokens]."))


def _default_scale(shapes: list[Shape]) -> float:
    return 1.0 / math.sqrt(shapes[0][-1]) if shapes and shapes[0] and shapes[0][-1] else 1.0


def _infer_attention(
    shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
) -> tuple[Shape, str]:
    q, k, v, pos = shapes
    dt = _same_dtypes(dtypes[:3])
    _need(dt, FLOAT_DTYPES, "attention")
    if len(q) != 3 or len(k) != 3 or len(v) != 3:
        raise OpError(
            "attention needs q [tq, heads, dim], k [tk, kv_heads, dim], v [tk, kv_heads, dv]; "
            f"got {list(q)}, {list(k)}, {list(v)}"
        )
    if k[0] != v[0] or k[1] != v[1]:
        raise OpError(f"attention k {list(k)} and v {list(v)} disagree on tokens or heads")
    if q[2] != k[2]:
        raise OpError(f"attention q head_dim {q[2]} != k head_dim {k[2]}")
    if k[1] == 0 or q[1] % k[1]:
        raise OpError(
            f"attention heads {q[1]} must be a multiple of kv_heads {k[1]} (grouped-query)"
        )
    if dtypes[3] != "i32" or pos != (q[0],):
        raise OpError(
            f"attention positions must be i32[{q[0]}] (one per query), got {dtypes[3]}{list(pos)}"
        )
    return (q[0], q[1], v[2]), dt


register(OpDef("attention", 4, _infer_attention, "attention",
               attrs={"scale": AttrSpec("float", _default_scale),
                      "causal": AttrSpec("bool", True)},
               doc="Grouped-query attention. Query i sits at position pos[i]; key j at position "
                   "j. Causal: query i sees keys j <= pos[i], which serves prefill "
                   "(pos = 0..n-1) and KV-cache decode (keys = the whole cache) alike."))


def _infer_get_rows(
    shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
) -> tuple[Shape, str]:
    x, idx = shapes
    if len(x) < 1:
        raise OpError("get_rows needs a source of rank >= 1")
    if dtypes[1] != "i32" or len(idx) != 1:
        raise OpError(f"get_rows indices must be a 1-D i32 vector, got {dtypes[1]}{list(idx)}")
    return (idx[0], *x[1:]), dtypes[0]


register(OpDef("get_rows", 2, _infer_get_rows, "gather", doc="x[idx] for an i32 index vector."))


def _infer_set_rows(
    shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
) -> tuple[Shape, str]:
    dst, idx, src = shapes
    if len(dst) < 1:
        raise OpError("set_rows needs a destination of rank >= 1")
    if dtypes[1] != "i32" or len(idx) != 1:
        raise OpError(f"set_rows indices must be a 1-D i32 vector, got {dtypes[1]}{list(idx)}")
    if src != (idx[0], *dst[1:]):
        raise OpError(
            f"set_rows source must have shape {[idx[0], *dst[1:]]}, got {list(src)}"
        )
    if dtypes[0] != dtypes[2]:
        raise OpError(f"set_rows dtype mismatch: destination {dtypes[0]}, source {dtypes[2]}",
                      fix="cast the source")
    return dst, dtypes[0]


register(OpDef("set_rows", 3, _infer_set_rows, "scatter", inplace=True,
               doc="dst with rows idx replaced by src (functional; planned in place)."))


def _canon_reshape(shapes: list[Shape], attrs: dict[str, Any]) -> dict[str, Any]:
    shape = list(attrs["shape"])
    n = math.prod(shapes[0])
    if shape.count(-1) > 1:
        raise OpError(f"reshape target {shape} has more than one -1")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or n % known:
            raise OpError(f"cannot reshape {list(shapes[0])} into {shape}")
        shape[shape.index(-1)] = n // known
    return {**attrs, "shape": tuple(shape)}


def _infer_reshape(
    shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
) -> tuple[Shape, str]:
    shape = check_shape(attrs["shape"], "reshape target")
    if math.prod(shape) != math.prod(shapes[0]):
        raise OpError(
            f"cannot reshape {list(shapes[0])} ({math.prod(shapes[0])} elements) into "
            f"{list(shape)} ({math.prod(shape)} elements)"
        )
    return shape, dtypes[0]


def _view_reshape(
    shape: Shape, strides: tuple[int, ...], attrs: dict[str, Any]
) -> tuple[int, tuple[int, ...]] | None:
    if strides != contiguous_strides(shape):
        return None
    return 0, contiguous_strides(tuple(attrs["shape"]))


register(OpDef("reshape", 1, _infer_reshape, "view", canon=_canon_reshape,
               view=_view_reshape, attrs={"shape": AttrSpec("ints")},
               doc="Same elements, new shape (one -1 allowed); a view of a contiguous source."))


def _canon_transpose(shapes: list[Shape], attrs: dict[str, Any]) -> dict[str, Any]:
    nd = len(shapes[0])
    perm = attrs.get("perm")
    perm = tuple(range(nd - 1, -1, -1)) if perm is None else tuple(_axis(p, nd, "perm axis")
                                                                    for p in perm)
    return {**attrs, "perm": perm}


def _infer_transpose(
    shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
) -> tuple[Shape, str]:
    perm = attrs["perm"]
    nd = len(shapes[0])
    if sorted(perm) != list(range(nd)):
        raise OpError(f"perm {list(perm)} is not a permutation of the {nd} axes")
    return tuple(shapes[0][p] for p in perm), dtypes[0]


def _view_transpose(
    shape: Shape, strides: tuple[int, ...], attrs: dict[str, Any]
) -> tuple[int, tuple[int, ...]] | None:
    return 0, tuple(strides[p] for p in attrs["perm"])


register(OpDef("transpose", 1, _infer_transpose, "view", canon=_canon_transpose,
               view=_view_transpose,
               attrs={"perm": AttrSpec("ints", lambda shapes: None)},
               doc="Permute axes (default: reverse them); a strided view."))


def _canon_slice(shapes: list[Shape], attrs: dict[str, Any]) -> dict[str, Any]:
    shape = shapes[0]
    axis = _axis(attrs["axis"], len(shape))
    dim = shape[axis]
    start, stop = attrs["start"], attrs.get("stop")
    stop = dim if stop is None else stop
    start = start + dim if start < 0 else start
    stop = stop + dim if stop < 0 else stop
    return {**attrs, "axis": axis, "start": start, "stop": stop}


def _infer_slice(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    shape = shapes[0]
    axis, start, stop = attrs["axis"], attrs["start"], attrs["stop"]
    _axis(axis, len(shape))
    if not 0 <= start <= stop <= shape[axis]:
        raise OpError(
            f"slice [{start}:{stop}] on axis {axis} is out of bounds for {list(shape)}",
            fix=f"keep 0 <= start <= stop <= {shape[axis]}",
        )
    out = list(shape)
    out[axis] = stop - start
    return tuple(out), dtypes[0]


def _view_slice(
    shape: Shape, strides: tuple[int, ...], attrs: dict[str, Any]
) -> tuple[int, tuple[int, ...]] | None:
    return attrs["start"] * strides[attrs["axis"]], strides


register(OpDef("slice", 1, _infer_slice, "view", canon=_canon_slice, view=_view_slice,
               attrs={"axis": AttrSpec("int", 0), "start": AttrSpec("int", 0),
                      "stop": AttrSpec("int", lambda shapes: None)},
               doc="x[start:stop] along axis (negative bounds count from the end); a view."))


def _infer_concat(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    dt = _same_dtypes(dtypes)
    nd = len(shapes[0])
    axis = _axis(attrs["axis"], nd)
    for i, s in enumerate(shapes[1:], 1):
        if len(s) != nd or any(a != b for j, (a, b) in enumerate(zip(s, shapes[0], strict=True))
                               if j != axis):
            raise OpError(
                f"concat operand {i} has shape {list(s)}, which differs from {list(shapes[0])} "
                f"off axis {axis}"
            )
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out), dt


register(OpDef("concat", None, _infer_concat, "other", min_arity=1, canon=_canon_axis,
               attrs={"axis": AttrSpec("int", 0)}, doc="Join operands along axis."))


def _reduce(allowed: frozenset[str], out_dtype: str | None = None) -> InferFn:
    def infer(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
        _need(dtypes[0], allowed, "this reduction")
        shape = shapes[0]
        axis = _axis(attrs["axis"], len(shape))
        if shape[axis] == 0 and out_dtype is not None:
            raise OpError(f"argmax over an empty axis {axis} of {list(shape)}")
        out = list(shape)
        if attrs.get("keepdims"):
            out[axis] = 1
        else:
            del out[axis]
        return tuple(out), out_dtype or dtypes[0]

    return infer


for _name, _allowed in [("sum", NUMERIC_DTYPES), ("mean", FLOAT_DTYPES), ("max", NUMERIC_DTYPES)]:
    register(OpDef(_name, 1, _reduce(_allowed), "reduction", canon=_canon_axis,
                   attrs={"axis": AttrSpec("int", -1), "keepdims": AttrSpec("bool", False)},
                   doc=f"{_name} over one axis."))

register(OpDef("argmax", 1, _reduce(NUMERIC_DTYPES, "i32"), "reduction", canon=_canon_axis,
               attrs={"axis": AttrSpec("int", -1), "keepdims": AttrSpec("bool", False)},
               doc="Index of the first maximum along axis, as i32."))


def _infer_full(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    shape = check_shape(attrs["shape"])
    dt = attrs["dtype"]
    value = attrs["value"]
    if dt == "bool" and value not in (0, 1):
        raise OpError(f"a bool constant must be 0 or 1, got {value}")
    if dt == "i32" and float(value) != int(value):
        raise OpError(f"an i32 constant must be a whole number, got {value}")
    return shape, dt


register(OpDef("full", 0, _infer_full, "other",
               attrs={"shape": AttrSpec("ints"), "value": AttrSpec("float"),
                      "dtype": AttrSpec("dtype", "f32")},
               doc="A constant tensor filled with value."))


def _infer_const(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    shape = check_shape(attrs["shape"])
    values = attrs["values"]
    if len(values) != math.prod(shape):
        raise OpError(f"const of shape {list(shape)} needs {math.prod(shape)} values, got "
                      f"{len(values)}")
    if attrs["dtype"] in ("i32", "bool") and any(float(v) != int(v) for v in values):
        raise OpError(f"a {attrs['dtype']} const needs whole numbers")
    return shape, attrs["dtype"]


register(OpDef("const", 0, _infer_const, "other",
               attrs={"values": AttrSpec("numbers"), "shape": AttrSpec("ints"),
                      "dtype": AttrSpec("dtype", "f32")},
               doc="A small constant given by its values in row-major order (row indices, "
                   "masks); large data belongs in params."))


# ----------------------------------------------------------------------------- attributes


def check_attr_value(kind: AttrKind, value: Any) -> Any:
    """Validate a literal against an attribute kind; return its canonical form.

    Raises :class:`OpError` naming the expected kind. Ints are accepted where floats are
    expected; bools are never accepted as numbers.
    """
    if kind == "bool":
        if isinstance(value, bool | np.bool_):
            return bool(value)
    elif kind == "int":
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            return int(value)
    elif kind == "float":
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool | np.bool_
        ):
            return float(value)
    elif kind == "str":
        if isinstance(value, str):
            return value
    elif kind == "dtype":
        if isinstance(value, str) and value in DTYPES:
            return value
        raise OpError(f"expected a dtype name (one of {list(DTYPES)}), got {value!r}")
    elif kind == "numbers":
        if isinstance(value, list | tuple) and all(
            isinstance(v, int | float | np.integer | np.floating)
            and not isinstance(v, bool | np.bool_) for v in value
        ):
            return tuple(v if isinstance(v, int) else float(v) for v in value)
        raise OpError(f"expected a list of numbers, got {value!r}")
    elif kind == "ints":
        if isinstance(value, list | tuple) and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in value
        ):
            return tuple(int(v) for v in value)
        raise OpError(f"expected a list of ints, got {value!r}")
    raise OpError(f"expected {'a' if kind != 'int' else 'an'} {kind}, got {value!r}")


def resolve_attrs(
    op: OpDef, shapes: list[Shape], attrs: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate ``attrs`` against the op's schema and return them complete and canonical:
    schema order, defaults filled in, values canonical; ``inplace`` kept only when true."""
    unknown = [k for k in attrs if k not in op.attrs and k != "inplace"]
    if unknown:
        known = ", ".join([*list(op.attrs), "inplace"])
        raise OpError(f"{op.name} has no attribute {unknown[0]!r}", fix=f"attributes: {known}")
    out: dict[str, Any] = {}
    for key, spec in op.attrs.items():
        if key in attrs and attrs[key] is not None:
            try:
                out[key] = check_attr_value(spec.kind, attrs[key])
            except OpError as e:
                raise OpError(f"attribute {key!r} of {op.name}: {e.message}") from None
        elif spec.default is REQUIRED:
            raise OpError(f"{op.name} needs the attribute {key!r} ({spec.kind})")
        else:
            out[key] = spec.default(shapes) if callable(spec.default) else spec.default
    if op.canon is not None:
        out = op.canon(shapes, out)
    if "inplace" in attrs:
        flag = check_attr_value("bool", attrs["inplace"]) if attrs["inplace"] is not None else False
        if flag:
            out["inplace"] = True
    return out


def infer(
    op_name: str, shapes: list[Shape], dtypes: list[str], attrs: Mapping[str, Any]
) -> tuple[dict[str, Any], Shape, str]:
    """Check an op application and compute (canonical attrs, shape, dtype); raises OpError.

    A pure function of its arguments, so results are memoized: models repeat the same
    (op, attributes, operand types) many times over.
    """
    try:
        key = (op_name, tuple(attrs.items()), tuple(shapes), tuple(dtypes))
        hash(key)
    except TypeError:  # an unhashable attribute value: nothing to memoize, check it as is
        return _infer(op_name, shapes, dtypes, attrs)
    full, shape, dtype = _infer_memo(key)
    return dict(full), shape, dtype


@functools.lru_cache(maxsize=1 << 16)
def _infer_memo(
    key: tuple[str, tuple[tuple[str, Any], ...], tuple[Shape, ...], tuple[str, ...]],
) -> tuple[dict[str, Any], Shape, str]:
    op_name, attr_items, shapes, dtypes = key
    return _infer(op_name, list(shapes), list(dtypes), dict(attr_items))


def _infer(
    op_name: str, shapes: list[Shape], dtypes: list[str], attrs: Mapping[str, Any]
) -> tuple[dict[str, Any], Shape, str]:
    op = get_op(op_name)
    if op.arity is not None and len(shapes) != op.arity:
        raise OpError(f"{op_name} takes {op.arity} operand(s), got {len(shapes)}")
    if op.arity is None and len(shapes) < op.min_arity:
        raise OpError(f"{op_name} takes at least {op.min_arity} operand(s), got {len(shapes)}")
    full = resolve_attrs(op, shapes, attrs)
    shape, dtype = op.infer(shapes, dtypes, full)
    shape = check_shape(shape, "result shape")
    if full.get("inplace"):
        if not op.inplace:
            raise OpError(f"{op_name} cannot write in place",
                          fix="drop inplace=True; in-place ops: "
                              + ", ".join(sorted(n for n, o in OP_TABLE.items() if o.inplace)))
        if (shapes[0], dtypes[0]) != (shape, dtype):
            raise OpError(f"{op_name} with inplace=True must produce operand 0's type, but "
                          f"operand 0 is {list(shapes[0])} {dtypes[0]} and the result "
                          f"{list(shape)} {dtype}", fix="drop inplace=True or swap the operands")
    return full, shape, dtype


def view_layout(
    op_name: str, src_shape: Shape, src_strides: tuple[int, ...], attrs: Mapping[str, Any]
) -> tuple[int, tuple[int, ...]] | None:
    """For a view op: (element offset, element strides) of the view over its source."""
    op = get_op(op_name)
    if op.view is None:
        raise OpError(f"{op_name} is not a view op")
    return op.view(src_shape, src_strides, dict(attrs))
