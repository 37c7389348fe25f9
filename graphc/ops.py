"""The op table: every op graphc knows, described once.

Each :class:`OpDef` holds everything graphc knows about an op: the arity, the attribute
schema (with defaults, some computed from the input shapes), the shape-and-dtype rule, the
op's kind, whether it may write in place into its first operand, for views the map from
the source's layout to the view's layout (which bytes of the source the view covers), how
a row selection passes through it (row pruning), what it costs (FLOPs and bytes moved),
and which family of the graph generator draws it. Backends keep their per-op rules (the
NumPy reference, the JAX lowering) in :class:`RuleTable` s, keyed by this table; nothing
here computes values. Adding an op is one :func:`register` call plus its backend rules.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from graphc.dtypes import DTYPES, FLOAT_DTYPES, NUMERIC_DTYPES
from graphc.tensor import Shape, Tensor

Kind = Literal[
    "leaf", "elementwise", "rowwise", "reduction", "contraction", "view", "gather",
    "scatter", "attention", "other",
]
AttrKind = Literal["int", "float", "bool", "str", "ints", "numbers", "dtype"]

MAX_ELEMENTS = 2**40
"""No tensor may hold more elements than this: larger shapes are typos, not models."""
MAX_REGION_BYTES = 2**44
"""No memory plan's region may be larger than this (16 TiB): larger is a corrupt plan."""


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

Mode = Literal["rows", "all"]
"""How an operand is needed when rows S of a node are wanted: its rows S, or all of it."""
RowRule = Callable[[Tensor], list[Mode] | None]
"""For a node whose rows S are wanted: one :data:`Mode` per operand, or None when this node
mixes rows (then it is computed whole and the rows are selected after it)."""
FlopsFn = Callable[[Tensor], int]
BytesFn = Callable[[Tensor], tuple[int, int]]


def moved_once(t: Tensor) -> tuple[int, int]:
    """(bytes read, bytes written) of a node that reads each operand once and writes its
    result once: the cost model's default."""
    return sum(i.nbytes for i in t.inputs), t.nbytes


def _no_flops(t: Tensor) -> int:
    return 0


def _no_bytes(t: Tensor) -> tuple[int, int]:
    return 0, 0


@dataclass(frozen=True)
class PerElement:
    """A FLOP rule: ``n`` FLOPs per element of the result (a multiply-add counts 2)."""

    n: int

    def __call__(self, t: Tensor) -> int:
        return self.n * t.size


@dataclass(frozen=True)
class Cost:
    """How the cost model (:mod:`graphc.passes.cost`) prices one node of an op.

    ``flops(t)``: modelled FLOPs. ``moved(t)``: modelled (bytes read, bytes written);
    by default each operand is read once and the result written once.
    """

    flops: FlopsFn
    moved: BytesFn = moved_once

    @classmethod
    def per_element(cls, n: int) -> Cost:
        """``n`` FLOPs per result element; operands read once, the result written once."""
        return cls(PerElement(n))


FREE = Cost(_no_flops, _no_bytes)
"""The cost of a view: it aliases its source, so it computes and moves nothing."""


@dataclass(frozen=True)
class OpDef:
    """How one op behaves at the graph level: the one place graphc describes it.

    ``arity`` is the number of operands (``None``: any number, at least ``min_arity``).
    ``infer`` returns the output (shape, dtype) or raises :class:`OpError`. ``canon``
    rewrites attributes into canonical form (negative axes made positive). ``inplace``:
    the op may write its result into operand 0's buffer. ``view``: for view ops, maps the
    source's (shape, element strides) to the view's (element offset, element strides), or
    None when the source layout does not allow a view.

    Keyword-only and required, so every op decides them explicitly:

    - ``rows``: the row rule (:data:`RowRule`) row pruning uses to move a row selection
      through a node of this op; ``None`` when the op has none (its rows are selected
      after it is computed whole).
    - ``cost``: its :class:`Cost` (views: :data:`FREE`).
    - ``family``: the name of the :func:`graphc.testing.strategies.graphs` family that
      draws it (one of ``graphc.testing.strategies.ALL_FAMILIES``).
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
    _: KW_ONLY
    rows: RowRule | None
    cost: Cost
    family: str

    @property
    def is_view(self) -> bool:
        """Whether nodes of this op are views: they alias their source's buffer."""
        return self.view is not None


OP_TABLE: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add an op to the table (names are unique); ValueError for a definition whose parts
    disagree (kind ``view`` without a view layout or the other way round, a view that is
    not :data:`FREE`, a missing family)."""
    if op.name in OP_TABLE:
        raise ValueError(f"op {op.name!r} is already registered")
    if (op.kind == "view") != op.is_view:
        raise ValueError(f"op {op.name!r}: kind {op.kind!r} needs view= exactly when the "
                         "kind is 'view'")
    if op.is_view and op.cost is not FREE:
        raise ValueError(f"op {op.name!r} is a view, so its cost must be FREE")
    if not isinstance(op.cost, Cost):
        raise ValueError(f"op {op.name!r}: cost must be a Cost, got {op.cost!r}")
    if op.rows is not None and not callable(op.rows):
        raise ValueError(f"op {op.name!r}: rows must be a row rule or None, got {op.rows!r}")
    if not isinstance(op.family, str) or not op.family:
        raise ValueError(f"op {op.name!r} needs a generator family")
    OP_TABLE[op.name] = op  # nothing to forget: inference of an unknown op is never cached
    return op


def unregister(name: str) -> OpDef:
    """Remove an op from the table and its rules from every backend :class:`RuleTable`
    (for tests that register a throwaway op); KeyError when there is no such op."""
    op = OP_TABLE.pop(name)
    for table in _RULE_TABLES:
        dict.pop(table, name, None)
    _infer_memo.cache_clear()
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


def ops_needing_rules() -> list[str]:
    """The ops every backend needs a rule for: the non-leaf ops of the table, in order."""
    return [n for n, o in OP_TABLE.items() if o.kind != "leaf"]


R = TypeVar("R")
_RULE_TABLES: list[RuleTable[Any]] = []


class RuleTable(dict[str, R]):
    """A backend's per-op rules (reference implementation, JAX lowering), keyed by the op
    table.

    Built complete: construction raises ValueError naming every op of :data:`OP_TABLE`
    that has no rule. Setting a rule for a name that is not an op raises ValueError, so a
    typo or a rule for an unregistered op fails at once. :func:`unregister` drops an op's
    rule from every table. Looking up a missing rule stays the backend's business (each
    raises a GraphError naming the op).
    """

    def __init__(self, owner: str, rules: Mapping[str, R]) -> None:
        super().__init__()
        self.owner = owner
        for op, rule in rules.items():
            self[op] = rule
        missing = self.missing()
        if missing:
            raise ValueError(f"{owner} has no rule for op(s) {', '.join(missing)}")
        _RULE_TABLES.append(self)

    def __setitem__(self, op: str, rule: R) -> None:
        if op not in OP_TABLE or OP_TABLE[op].kind == "leaf":
            raise ValueError(f"{self.owner}: {op!r} is not an op of the op table; "
                             "register its OpDef with graphc.ops.register first")
        super().__setitem__(op, rule)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several rules, each checked like ``table[op] = rule``."""
        for op, rule in dict(*args, **kwargs).items():
            self[op] = rule

    def setdefault(self, op: str, rule: R) -> R:
        """``table[op]`` when set, else set it to ``rule`` (checked) and return it."""
        if op not in self:
            self[op] = rule
        return self[op]

    def missing(self) -> list[str]:
        """The ops of the table this backend has no rule for."""
        return [n for n in ops_needing_rules() if n not in self]


# ----------------------------------------------------------------------------- helpers


def contiguous_strides(shape: Shape) -> tuple[int, ...]:
    """Row-major element strides of a dense tensor of ``shape``."""
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * max(shape[i + 1], 1)
    return tuple(strides)


def is_dense(shape: Shape, strides: Sequence[int]) -> bool:
    """Whether element strides lay ``shape`` out in row-major order with no gaps: equal to
    the contiguous strides on every dimension longer than 1 (a dimension of size 0 or 1
    never steps, so its stride does not matter)."""
    return all(s == c for d, s, c in zip(shape, strides, contiguous_strides(shape), strict=True)
               if d > 1)


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


# ----------------------------------------------------------------------------- row rules
# How a row selection passes through a node (see graphc.passes.row_pruning): given that
# rows S of node t are wanted, which operands are needed on rows S and which whole.


def elementwise_rows(t: Tensor) -> list[Mode] | None:
    """Row rule of an elementwise op: an operand with t's rows gives rows S; one broadcast
    along axis 0 (lower rank, or a leading 1) is needed whole."""
    if t.ndim == 0:
        return None
    modes: list[Mode] = []
    for o in t.inputs:
        if o.ndim == t.ndim and o.shape[0] == t.shape[0]:
            modes.append("rows")
        else:  # broadcast along axis 0 (lower rank, or a leading 1)
            modes.append("all")
    return modes


def _rows_last_axis(t: Tensor) -> list[Mode] | None:
    return ["rows"] if t.ndim >= 2 else None  # normalizes each row along the last axis


def _rows_off_axis0(t: Tensor) -> list[Mode] | None:
    return ["rows"] * len(t.inputs) if t.ndim >= 1 and t.attrs["axis"] != 0 else None


def _rows_reduction(t: Tensor) -> list[Mode] | None:
    return ["rows"] if t.attrs["axis"] != 0 and t.ndim >= 1 else None


def _rows_matmul(t: Tensor) -> list[Mode] | None:
    a, b = t.inputs
    if b.ndim == 2:  # per-row product by a weight: row i of a @ b needs row i of a
        return ["rows", "all"]
    modes: list[Mode] = []
    for o in (a, b):  # batched: axis 0 is a batch axis of one or both operands
        if o.ndim == t.ndim and o.shape[0] == t.shape[0]:
            modes.append("rows")
        elif o.ndim < t.ndim or o.shape[0] == 1:
            modes.append("all")
        else:
            return None
    return modes


def _rows_reshape(t: Tensor) -> list[Mode] | None:
    x = t.inputs[0]
    return ["rows"] if t.ndim >= 1 and x.ndim >= 1 and x.shape[0] == t.shape[0] else None


def _rows_transpose(t: Tensor) -> list[Mode] | None:
    return ["rows"] if t.attrs["perm"][0] == 0 else None


def _rows_rope(t: Tensor) -> list[Mode] | None:
    return ["rows", "rows"]  # token i rotated by position i


def _rows_attention(t: Tensor) -> list[Mode] | None:
    return ["rows", "all", "all", "rows"]  # queries and their positions


def _rows_get_rows(t: Tensor) -> list[Mode] | None:
    return ["all", "rows"]  # (x[idx])[S] == x[idx[S]]


# ----------------------------------------------------------------------------- costs


def _flops_matmul(t: Tensor) -> int:
    return 2 * t.size * t.inputs[0].shape[-1]  # a multiply-add per (element, k)


def _flops_attention(t: Tensor) -> int:
    q, k, v, _ = t.inputs
    tq, h, d = q.shape
    tk, dv = k.shape[0], v.shape[2]
    return 2 * tq * h * tk * (d + dv) + 6 * tq * h * tk  # two contractions and a softmax


def _flops_reduction(t: Tensor) -> int:
    return t.inputs[0].size  # one op per input element


def _bytes_get_rows(t: Tensor) -> tuple[int, int]:
    return t.nbytes + t.inputs[1].nbytes, t.nbytes  # only the gathered rows are read


def _bytes_set_rows(t: Tensor) -> tuple[int, int]:
    dst, idx, src = t.inputs
    if t.inplace:  # only the written rows move
        return idx.nbytes + src.nbytes, src.nbytes
    return dst.nbytes + idx.nbytes + src.nbytes, t.nbytes


# ----------------------------------------------------------------------------- ops


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


# (name, dtypes, FLOPs per element, generator family); within a family, table order is the
# order the generator draws in
for _name, _allowed, _flops, _family in [
    ("add", NUMERIC_DTYPES, 1, "binary"), ("sub", NUMERIC_DTYPES, 1, "binary"),
    ("mul", NUMERIC_DTYPES, 1, "binary"), ("div", FLOAT_DTYPES, 1, "div"),
    ("maximum", NUMERIC_DTYPES, 1, "binary"),
]:
    register(OpDef(_name, 2, _binary(_allowed), "elementwise", inplace=True,
                   doc=f"Elementwise {_name} with NumPy broadcasting; operands share a dtype.",
                   rows=elementwise_rows, cost=Cost.per_element(_flops), family=_family))

for _name, _allowed, _flops, _family in [
    ("neg", NUMERIC_DTYPES, 1, "unary"), ("relu", NUMERIC_DTYPES, 1, "unary"),
    ("exp", FLOAT_DTYPES, 4, "transcendental"), ("log", FLOAT_DTYPES, 4, "transcendental"),
    ("sqrt", FLOAT_DTYPES, 4, "transcendental"), ("rsqrt", FLOAT_DTYPES, 4, "transcendental"),
    ("tanh", FLOAT_DTYPES, 6, "unary"), ("sigmoid", FLOAT_DTYPES, 6, "unary"),
    ("silu", FLOAT_DTYPES, 7, "unary"), ("gelu", FLOAT_DTYPES, 10, "unary"),
]:
    register(OpDef(_name, 1, _unary(_allowed), "elementwise", inplace=True,
                   doc=f"Elementwise {_name}" + (" of a float tensor (gelu: tanh approximation)."
                                                 if _allowed is FLOAT_DTYPES else "."),
                   rows=elementwise_rows, cost=Cost.per_element(_flops), family=_family))

def _infer_equal(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    _same_dtypes(dtypes)
    return _broadcast(shapes), "bool"


register(OpDef("equal", 2, _infer_equal, "elementwise",
               doc="Elementwise a == b with NumPy broadcasting, as bool; operands share a "
                   "dtype. Never in place (the result's dtype differs from the operands').",
               rows=elementwise_rows, cost=Cost.per_element(1), family="compare"))

register(OpDef("copy", 1, _unary(None), "elementwise", inplace=False,
               doc="A fresh copy of the operand (never aliases it).",
               rows=elementwise_rows, cost=Cost.per_element(0), family="copy"))

register(OpDef("scale", 1, _unary(FLOAT_DTYPES), "elementwise", inplace=True,
               attrs={"s": AttrSpec("float", doc="the factor")},
               doc="Multiply by the literal factor s.",
               rows=elementwise_rows, cost=Cost.per_element(1), family="scale"))


def _infer_cast(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    return shapes[0], attrs["dtype"]


register(OpDef("cast", 1, _infer_cast, "elementwise",
               attrs={"dtype": AttrSpec("dtype", doc="the target dtype")},
               doc="Convert to another dtype (NumPy astype semantics).",
               rows=elementwise_rows, cost=Cost.per_element(0), family="cast"))


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
               doc="a @ b with NumPy batch broadcasting (both operands rank >= 2).",
               rows=_rows_matmul, cost=Cost(_flops_matmul), family="matmul"))


def _infer_norm(shapes: list[Shape], dtypes: list[str], attrs: Attrs) -> tuple[Shape, str]:
    _need(dtypes[0], FLOAT_DTYPES, "a norm")
    if len(shapes[0]) < 1:
        raise OpError("a norm needs an operand of rank >= 1")
    if attrs["eps"] < 0:
        raise OpError(f"eps must be >= 0, got {attrs['eps']}")
    return shapes[0], dtypes[0]


register(OpDef("rms_norm", 1, _infer_norm, "rowwise", inplace=True,
               attrs={"eps": AttrSpec("float", 1e-6)},
               doc="x / sqrt(mean(x**2, last axis) + eps); no weight (multiply after).",
               rows=_rows_last_axis, cost=Cost.per_element(4), family="rowwise"))
register(OpDef("layer_norm", 1, _infer_norm, "rowwise", inplace=True,
               attrs={"eps": AttrSpec("float", 1e-5)},
               doc="(x - mean) / sqrt(var + eps) over the last axis; no affine part.",
               rows=_rows_last_axis, cost=Cost.per_element(7), family="rowwise"))


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
               doc="Numerically stable softmax along axis.",
               rows=_rows_off_axis0, cost=Cost.per_element(6), family="rowwise"))


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
                   "with i32 positions [tokens].",
               rows=_rows_rope, cost=Cost.per_element(6), family="rope"))


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
                   "(pos = 0..n-1) and KV-cache decode (keys = the whole cache) alike.",
               rows=_rows_attention, cost=Cost(_flops_attention), family="attention"))


def _infer_get_rows(
    shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
) -> tuple[Shape, str]:
    x, idx = shapes
    if len(x) < 1:
        raise OpError("get_rows needs a source of rank >= 1")
    if dtypes[1] != "i32" or len(idx) != 1:
        raise OpError(f"get_rows indices must be a 1-D i32 vector, got {dtypes[1]}{list(idx)}")
    return (idx[0], *x[1:]), dtypes[0]


register(OpDef("get_rows", 2, _infer_get_rows, "gather", doc="x[idx] for an i32 index vector.",
               rows=_rows_get_rows, cost=Cost(_no_flops, _bytes_get_rows), family="get_rows"))


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
               doc="dst with rows idx replaced by src (functional; planned in place).",
               rows=None,  # no rule: the rows of a scatter are selected after it
               cost=Cost(_no_flops, _bytes_set_rows), family="set_rows"))


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
               doc="Permute axes (default: reverse them); a strided view.",
               rows=_rows_transpose, cost=FREE, family="view"))


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
    if not is_dense(shape, strides):
        return None
    return 0, contiguous_strides(tuple(attrs["shape"]))


register(OpDef("reshape", 1, _infer_reshape, "view", canon=_canon_reshape,
               view=_view_reshape, attrs={"shape": AttrSpec("ints")},
               doc="Same elements, new shape (one -1 allowed); a view of a contiguous source.",
               rows=_rows_reshape, cost=FREE, family="view"))


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
               doc="x[start:stop] along axis (negative bounds count from the end); a view.",
               rows=_rows_off_axis0, cost=FREE, family="view"))


def _infer_as_strided(
    shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
) -> tuple[Shape, str]:
    shape = check_shape(attrs["shape"], "as_strided shape")
    strides, offset = attrs["strides"], attrs["offset"]
    if len(strides) != len(shape):
        raise OpError(f"as_strided has {len(shape)} dimensions but {len(strides)} strides")
    if offset < 0 or any(s < 0 for s in strides):
        raise OpError(f"as_strided offset {offset} and strides {list(strides)} must be >= 0")
    n = math.prod(shapes[0])
    if math.prod(shape):
        last = offset + sum((d - 1) * s for d, s in zip(shape, strides, strict=True))
        if last >= n:
            raise OpError(f"as_strided reaches element {last} of a source with {n} elements",
                          fix="shrink the shape, the strides or the offset")
    return shape, dtypes[0]


def _view_as_strided(
    shape: Shape, strides: tuple[int, ...], attrs: dict[str, Any]
) -> tuple[int, tuple[int, ...]] | None:
    if not is_dense(shape, strides):
        return None  # defined on the source's row-major order: a strided source is copied
    return attrs["offset"], tuple(attrs["strides"])


def strided_index(attrs: Mapping[str, Any]) -> np.ndarray:
    """The flat source element index of every element of an ``as_strided`` view (int64,
    shaped like the view)."""
    idx = np.full((), attrs["offset"], np.int64)
    for d, st in zip(attrs["shape"], attrs["strides"], strict=True):
        idx = idx[..., None] + np.arange(d, dtype=np.int64) * st
    return idx


def opaque_cannot_run(t: Tensor) -> OpError:
    """The error a backend raises for an opaque node: graphc has no semantics for it."""
    return OpError(f"{t.attrs['op']} is an opaque op: graphc can plan and check it but not "
                   "compute it", fix="run the imported graph in the system it came from; "
                                     "graphc imports it for planning and checking")


register(OpDef("as_strided", 1, _infer_as_strided, "view", view=_view_as_strided,
               attrs={"shape": AttrSpec("ints"), "strides": AttrSpec("ints"),
                      "offset": AttrSpec("int", 0)},
               doc="A window onto the source's elements in row-major order: element "
                   "(i0, i1, ...) is element offset + sum(i_k * strides[k]) of the flattened "
                   "source (strides in elements, >= 0; 0 repeats). A view of a dense source; "
                   "how foreign graphs (ggml) with arbitrary views are imported.",
               rows=None, cost=FREE, family="view"))


def _infer_opaque(
    shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
) -> tuple[Shape, str]:
    if not attrs["op"]:
        raise OpError("an opaque op needs the name of the op it stands for", fix='op="ggml.ADD"')
    return check_shape(attrs["shape"], "opaque result shape"), attrs["dtype"]


_OPAQUE_ATTRS = {
    "op": AttrSpec("str", doc="the foreign op it stands for, e.g. ggml.MUL_MAT"),
    "shape": AttrSpec("ints", doc="the result's shape"),
    "dtype": AttrSpec("dtype", doc="the result's dtype"),
    "params": AttrSpec("ints", (), doc="the foreign op's parameters, kept for display"),
}
for _name, _inplace in (("opaque", False), ("opaque_inplace", True)):
    register(OpDef(_name, None, _infer_opaque, "other", min_arity=0, inplace=_inplace,
                   attrs=_OPAQUE_ATTRS,
                   doc="An op graphc cannot compute (imported from another system) that reads "
                       "every operand whole and writes a result of the given shape and dtype"
                       + (", possibly over operand 0's bytes (in place)" if _inplace else "")
                       + ". Planned and checked like any op; no backend runs it.",
                   rows=None, cost=Cost(_no_flops), family="opaque"))


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
               attrs={"axis": AttrSpec("int", 0)}, doc="Join operands along axis.",
               rows=_rows_off_axis0, cost=Cost.per_element(0), family="concat"))


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
                   doc=f"{_name} over one axis.",
                   rows=_rows_reduction, cost=Cost(_flops_reduction), family="reduce"))

register(OpDef("argmax", 1, _reduce(NUMERIC_DTYPES, "i32"), "reduction", canon=_canon_axis,
               attrs={"axis": AttrSpec("int", -1), "keepdims": AttrSpec("bool", False)},
               doc="Index of the first maximum along axis, as i32.",
               rows=_rows_reduction, cost=Cost(_flops_reduction), family="argmax"))


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
               doc="A constant tensor filled with value.",
               rows=None,  # no operands: a selection of its rows is made after it
               cost=Cost.per_element(0), family="const"))


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
                   "masks); large data belongs in params.",
               rows=None,  # no operands: a selection of its rows is made after it
               cost=Cost.per_element(0), family="const"))


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
        items = tuple(attrs.items())
        # repr tells apart what == merges (-0.0 and 0.0, 1 and 1.0 and True), so a value
        # is never swapped for an equal one canonicalized earlier
        key = (op_name, items, repr(items), tuple(shapes), tuple(dtypes))
        hash(key)
    except TypeError:  # an unhashable attribute value: nothing to memoize, check it as is
        return _infer(op_name, shapes, dtypes, attrs)
    full, shape, dtype = _infer_memo(key)
    return dict(full), shape, dtype


@functools.lru_cache(maxsize=1 << 16)
def _infer_memo(
    key: tuple[str, tuple[tuple[str, Any], ...], str, tuple[Shape, ...], tuple[str, ...]],
) -> tuple[dict[str, Any], Shape, str]:
    op_name, attr_items, _, shapes, dtypes = key
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
