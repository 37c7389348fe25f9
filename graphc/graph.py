"""`Graph`: an ordered list of tensors plus its outputs and state assignments."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, overload

from graphc.dtypes import DTYPES
from graphc.errors import GraphError
from graphc.ops import OpError, check_shape, infer
from graphc.tensor import LEAF_OPS, Tensor

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _call_site() -> str:
    """`` (at file:line)`` of the innermost caller outside graphc, or ``""``."""
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        inside = path.startswith(_PACKAGE_DIR + os.sep) and os.sep.join(
            path[len(_PACKAGE_DIR) + 1:].split(os.sep)[:1]) in ("graphc", "passes", "backends")
        if not inside:
            return f" (at {os.path.relpath(path)}:{frame.f_lineno})"
        if frame.f_back is None:
            break
        frame = frame.f_back
    return ""


def valid_name(name: str) -> bool:
    """True for names the text format prints bare: letters, digits, ``_`` and ``.``,
    not starting with a digit."""
    return bool(_NAME_RE.match(name))


class _NodeView(Sequence[Tensor]):
    """A read-only window onto a graph's node list (no copy)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[Tensor]) -> None:
        self._items = items

    @overload
    def __getitem__(self, i: int) -> Tensor: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Tensor]: ...

    def __getitem__(self, i: int | slice) -> Tensor | Sequence[Tensor]:
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self._items)

    def __reversed__(self) -> Iterator[Tensor]:
        return reversed(self._items)

    def __contains__(self, t: object) -> bool:
        return isinstance(t, Tensor) and any(x is t for x in self._items)


class DeclaredTypeError(GraphError):
    """A node in a graph file declares a type its op does not give."""


def check_rows(name: str, t: Tensor, rows: Sequence[int]) -> tuple[int, ...]:
    """``rows`` of output ``name`` (tensor ``t``) as non-negative indices; GraphError for
    a scalar, an empty selection, a non-integer or a row out of range."""
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise GraphError(f"rows of output {name!r} must be a list of ints, got {rows!r}",
                         fix="pass rows=None to read the whole tensor")
    if t.ndim == 0:
        raise GraphError(f"output {name!r} is a scalar and has no rows to select",
                         fix="read it whole (rows=None)")
    if not rows:
        raise GraphError(f"output {name!r} selects no rows",
                         fix="unmark an output nobody reads instead (unset_output)")
    n = t.shape[0]
    out = []
    for r in rows:
        if isinstance(r, bool) or not isinstance(r, int):
            raise GraphError(f"row {r!r} of output {name!r} is not an integer")
        if not -n <= r < n:
            raise GraphError(f"row {r} of output {name!r} is out of range: it has {n} rows")
        out.append(r % n)
    return tuple(out)


class Graph:
    """A tensor program: nodes in topological order, marked outputs, state updates.

    Nodes are added through the builder methods (``g.input``, ``g.add``, ``g.matmul``,
    ...), each of which checks operands, attributes, shapes and dtypes at once and raises
    :class:`GraphError` naming the op and the operand at fault. Nothing is an output
    unless marked with :meth:`set_output`: a caller can read only outputs after a run.
    """

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self._nodes: list[Tensor] = []
        self._outputs: dict[str, Tensor] = {}
        self._rows: dict[str, tuple[int, ...]] = {}  # outputs read by rows: name -> rows
        self._assigns: dict[Tensor, Tensor] = {}
        self._leaves: dict[str, Tensor] = {}

    # --------------------------------------------------------------------- views of the graph
    @property
    def nodes(self) -> list[Tensor]:
        """All nodes in topological order (a copy; the graph is changed through methods)."""
        return list(self._nodes)

    @property
    def node_view(self) -> Sequence[Tensor]:
        """All nodes in topological order, read-only and without a copy: what passes
        iterate over (it follows the graph as nodes are added)."""
        return _NodeView(self._nodes)

    @property
    def output_view(self) -> Mapping[str, Tensor]:
        """Marked outputs, read-only and without a copy."""
        return MappingProxyType(self._outputs)

    @property
    def assign_view(self) -> Mapping[Tensor, Tensor]:
        """State updates, read-only and without a copy."""
        return MappingProxyType(self._assigns)

    @property
    def outputs(self) -> dict[str, Tensor]:
        """Marked outputs, name -> tensor, in marking order."""
        return dict(self._outputs)

    @property
    def assigns(self) -> dict[Tensor, Tensor]:
        """State updates, state -> new value, applied at the end of each run."""
        return dict(self._assigns)

    def _leaves_of(self, op: str) -> dict[str, Tensor]:
        return {t.name: t for t in self._nodes if t.op == op and t.name is not None}

    def leaf(self, name: str) -> Tensor | None:
        """The input, param or state called ``name``, or None (constant time)."""
        return self._leaves.get(name)

    @property
    def inputs(self) -> dict[str, Tensor]:
        """Inputs (fed at every run), name -> tensor."""
        return self._leaves_of("input")

    @property
    def params(self) -> dict[str, Tensor]:
        """Params (weights bound at compile time), name -> tensor."""
        return self._leaves_of("param")

    @property
    def states(self) -> dict[str, Tensor]:
        """States (persistent buffers), name -> tensor."""
        return self._leaves_of("state")

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(list(self._nodes))

    def __contains__(self, t: object) -> bool:
        return isinstance(t, Tensor) and t.graph is self

    def __repr__(self) -> str:
        return f"Graph(@{self.name}: {len(self._nodes)} nodes, outputs {list(self._outputs)})"

    def __str__(self) -> str:
        from graphc.text import to_text

        return to_text(self)

    def clone(self) -> Graph:
        """A copy of the graph: new tensors, the same names, outputs, rows and updates."""
        return self.clone_with_map()[0]

    def clone_with_map(self) -> tuple[Graph, dict[Tensor, Tensor]]:
        """A copy of the graph and the map from each of its tensors to the copy's."""
        g = Graph(self.name)
        m: dict[Tensor, Tensor] = {}
        for t in self._nodes:
            c = Tensor._trusted(g, t.op, tuple(m[i] for i in t.inputs), t.attrs, t.shape,
                                t.dtype, t.name)
            g._nodes.append(c)
            if t.is_leaf and t.name is not None:
                g._leaves[t.name] = c
            m[t] = c
        for name, t in self._outputs.items():
            g.set_output(m[t], name, self._rows.get(name))
        for s, v in self._assigns.items():
            g.assign(m[s], m[v])
        return g, m

    # --------------------------------------------------------------------- construction
    def _leaf(self, op: str, name: str, shape: Sequence[int], dtype: str) -> Tensor:
        if not isinstance(name, str) or not name:
            raise GraphError(f"{op} needs a non-empty string name, got {name!r}")
        if name in self._leaves:
            raise GraphError(
                f"{op} name {name!r} is already used by a {self._leaves[name].op}",
                fix="give every input, param and state its own name",
            )
        if dtype not in DTYPES:
            raise GraphError(f"{op} {name!r}: unknown dtype {dtype!r}",
                             fix=f"use one of {list(DTYPES)}")
        try:
            shp = check_shape(tuple(shape), f"{op} {name!r} shape")
        except OpError as e:
            raise GraphError(e.message, fix=e.fix) from None
        except TypeError:
            raise GraphError(f"{op} {name!r}: shape must be a sequence of ints, got {shape!r}"
                             ) from None
        t = Tensor(self, op, (), {}, shp, dtype, name)
        self._nodes.append(t)
        self._leaves[name] = t
        return t

    def input(self, name: str, shape: Sequence[int], dtype: str = "f32") -> Tensor:
        """A value fed by the caller at every run."""
        return self._leaf("input", name, shape, dtype)

    def param(self, name: str, shape: Sequence[int], dtype: str = "f32") -> Tensor:
        """A weight, bound once when the graph is compiled."""
        return self._leaf("param", name, shape, dtype)

    def state(self, name: str, shape: Sequence[int], dtype: str = "f32") -> Tensor:
        """A persistent buffer (e.g. a KV cache) that keeps its value between runs."""
        return self._leaf("state", name, shape, dtype)

    def _check_operand(self, op: str, i: int, t: object) -> Tensor:
        if not isinstance(t, Tensor):
            hint = " (to multiply by a number use g.scale)" if isinstance(t, int | float) else ""
            raise GraphError(f"{op}: operand {i} is a {type(t).__name__}, not a Tensor{hint}"
                             f"{_call_site()}")
        if t.graph is not self:
            raise GraphError(
                f"{op}: operand {i} {t!r} belongs to graph @{t.graph.name}, not @{self.name}"
                f"{_call_site()}",
                fix="build every node of a graph from tensors of that graph",
            )
        return t

    def apply(
        self,
        op: str,
        inputs: Sequence[Tensor],
        attrs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Tensor:
        """Append ``op(inputs){attrs}`` after checking it against the op table.

        The generic builder every op method calls; passes use it to rebuild graphs.
        Attributes are completed with defaults and made canonical. Raises GraphError.
        """
        if op in LEAF_OPS:
            raise GraphError(f"use g.{op}(name, shape, dtype) to make a {op}")
        ins = tuple(self._check_operand(op, i, t) for i, t in enumerate(inputs))
        try:
            full, shape, dtype = infer(op, [t.shape for t in ins], [t.dtype for t in ins],
                                       attrs or {})
        except OpError as e:
            operands = ", ".join(f"{t.name or '_'}: {t.type_str}" for t in ins)
            raise GraphError(f"{op}({operands}): {e.message}{_call_site()}", fix=e.fix
                             ) from None
        if name is not None and not isinstance(name, str):
            raise GraphError(f"{op}: name must be a string, got {name!r}")
        t = Tensor(self, op, ins, full, shape, dtype, name)
        self._nodes.append(t)
        return t

    def declare(self, op: str, inputs: Sequence[Tensor], attrs: Mapping[str, Any],
                name: str | None, shape: Sequence[int], dtype: str) -> Tensor:
        """Add a node as a graph file declares it: a leaf (``name`` is its feed name; no
        inputs or attributes) or an op (``name``: its name, or None), then check it has
        the declared ``shape`` and ``dtype``. GraphError otherwise -- a
        :class:`DeclaredTypeError` for a type that does not match; the readers add the
        place in the file."""
        if op in LEAF_OPS:
            if inputs or attrs:
                raise GraphError(f"a {op} takes no inputs or attributes")
            if name is None:
                raise GraphError(f"a {op} needs a name")
            t = self._leaf(op, name, shape, dtype)
        else:
            t = self.apply(op, inputs, attrs, name)
        if (t.shape, t.dtype) != (tuple(shape), dtype):
            declared = f"{dtype}[{', '.join(map(str, shape))}]"
            raise DeclaredTypeError(f"declared type {declared} does not match {op}'s result "
                                    f"{t.type_str}", fix=f"declare it as {t.type_str}")
        return t

    def set_output(self, t: Tensor, name: str, rows: Sequence[int] | None = None) -> Tensor:
        """Mark ``t`` as an output readable after a run under ``name``; returns ``t``.

        ``rows``: the rows (indices along axis 0, negative from the end) the caller reads,
        in the order read; None (the default) reads the whole tensor. Which rows are read
        is part of the graph, so passes such as row pruning act on it. A tensor may carry
        several output names; an output name is used once.
        """
        self._check_operand("set_output", 0, t)
        if not isinstance(name, str) or not name:
            raise GraphError(f"set_output needs a non-empty string name, got {name!r}")
        if name in self._outputs:
            raise GraphError(f"output name {name!r} is already used",
                             fix="give each output its own name")
        checked = None if rows is None else check_rows(name, t, rows)
        self._outputs[name] = t
        if checked is not None:
            self._rows[name] = checked
        return t

    def output_rows(self, name: str) -> tuple[int, ...] | None:
        """The rows of output ``name`` the caller reads (non-negative, in the order read),
        or None when it reads the whole tensor."""
        if name not in self._outputs:
            raise GraphError(f"no output named {name!r}; outputs: {list(self._outputs)}")
        return self._rows.get(name)

    def set_output_rows(self, name: str, rows: Sequence[int] | None) -> None:
        """Change which rows of output ``name`` are read (None: all of them)."""
        t = self._outputs.get(name)
        if t is None:
            raise GraphError(f"no output named {name!r}; outputs: {list(self._outputs)}")
        if rows is None:
            self._rows.pop(name, None)
        else:
            self._rows[name] = check_rows(name, t, rows)

    def unset_output(self, name: str) -> None:
        """Remove the output mark ``name`` (the tensor stays in the graph)."""
        if name not in self._outputs:
            raise GraphError(f"no output named {name!r}; outputs: {list(self._outputs)}")
        del self._outputs[name]
        self._rows.pop(name, None)

    def assign(self, state: Tensor, value: Tensor) -> None:
        """Declare ``value`` the new content of ``state`` at the end of each run."""
        self._check_operand("assign", 0, state)
        self._check_operand("assign", 1, value)
        if state.op != "state":
            raise GraphError(f"assign target {state!r} is a {state.op}, not a state",
                             fix="create the buffer with g.state(...)")
        if state in self._assigns:
            raise GraphError(f"state {state.name!r} is already assigned")
        if (state.shape, state.dtype) != (value.shape, value.dtype):
            raise GraphError(
                f"assign to state {state.name!r}: value is {value.type_str}, state is "
                f"{state.type_str}",
                fix="reshape or cast the value to the state's type",
            )
        self._assigns[state] = value

    # --------------------------------------------------------------------- elementwise
    def add(self, a: Tensor, b: Tensor, *, inplace: bool = False, name: str | None = None
            ) -> Tensor:
        """a + b (broadcasting)."""
        return self.apply("add", (a, b), {"inplace": inplace}, name)

    def sub(self, a: Tensor, b: Tensor, *, inplace: bool = False, name: str | None = None
            ) -> Tensor:
        """a - b (broadcasting)."""
        return self.apply("sub", (a, b), {"inplace": inplace}, name)

    def mul(self, a: Tensor, b: Tensor, *, inplace: bool = False, name: str | None = None
            ) -> Tensor:
        """a * b (broadcasting)."""
        return self.apply("mul", (a, b), {"inplace": inplace}, name)

    def div(self, a: Tensor, b: Tensor, *, inplace: bool = False, name: str | None = None
            ) -> Tensor:
        """a / b (broadcasting, floats)."""
        return self.apply("div", (a, b), {"inplace": inplace}, name)

    def maximum(self, a: Tensor, b: Tensor, *, inplace: bool = False,
                name: str | None = None) -> Tensor:
        """Elementwise max(a, b) (broadcasting)."""
        return self.apply("maximum", (a, b), {"inplace": inplace}, name)

    def equal(self, a: Tensor, b: Tensor, *, name: str | None = None) -> Tensor:
        """Elementwise a == b (broadcasting), as bool."""
        return self.apply("equal", (a, b), {}, name)

    def _unary(self, op: str, x: Tensor, inplace: bool, name: str | None) -> Tensor:
        return self.apply(op, (x,), {"inplace": inplace}, name)

    def neg(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """-x."""
        return self._unary("neg", x, inplace, name)

    def exp(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """e**x."""
        return self._unary("exp", x, inplace, name)

    def log(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """Natural log."""
        return self._unary("log", x, inplace, name)

    def sqrt(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """Square root."""
        return self._unary("sqrt", x, inplace, name)

    def rsqrt(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """1 / sqrt(x)."""
        return self._unary("rsqrt", x, inplace, name)

    def tanh(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """Hyperbolic tangent."""
        return self._unary("tanh", x, inplace, name)

    def sigmoid(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """1 / (1 + e**-x)."""
        return self._unary("sigmoid", x, inplace, name)

    def relu(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """max(x, 0)."""
        return self._unary("relu", x, inplace, name)

    def gelu(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """GELU, tanh approximation."""
        return self._unary("gelu", x, inplace, name)

    def silu(self, x: Tensor, *, inplace: bool = False, name: str | None = None) -> Tensor:
        """x * sigmoid(x)."""
        return self._unary("silu", x, inplace, name)

    def copy(self, x: Tensor, *, name: str | None = None) -> Tensor:
        """A fresh copy of x that never shares its buffer."""
        return self.apply("copy", (x,), {}, name)

    def scale(self, x: Tensor, s: float, *, inplace: bool = False, name: str | None = None
              ) -> Tensor:
        """x * s for a literal number s."""
        return self.apply("scale", (x,), {"s": s, "inplace": inplace}, name)

    def cast(self, x: Tensor, dtype: str, *, name: str | None = None) -> Tensor:
        """x converted to dtype."""
        return self.apply("cast", (x,), {"dtype": dtype}, name)

    # --------------------------------------------------------------------- contractions, norms
    def matmul(self, a: Tensor, b: Tensor, *, name: str | None = None) -> Tensor:
        """a @ b with batch broadcasting."""
        return self.apply("matmul", (a, b), {}, name)

    def rms_norm(self, x: Tensor, eps: float = 1e-6, *, inplace: bool = False,
                 name: str | None = None) -> Tensor:
        """RMS-normalize over the last axis (no weight: multiply by one after)."""
        return self.apply("rms_norm", (x,), {"eps": eps, "inplace": inplace}, name)

    def layer_norm(self, x: Tensor, eps: float = 1e-5, *, inplace: bool = False,
                   name: str | None = None) -> Tensor:
        """Normalize to zero mean and unit variance over the last axis."""
        return self.apply("layer_norm", (x,), {"eps": eps, "inplace": inplace}, name)

    def softmax(self, x: Tensor, axis: int = -1, *, inplace: bool = False,
                name: str | None = None) -> Tensor:
        """Softmax along axis."""
        return self.apply("softmax", (x,), {"axis": axis, "inplace": inplace}, name)

    def rope(self, x: Tensor, pos: Tensor, theta: float = 10000.0, *, inplace: bool = False,
             name: str | None = None) -> Tensor:
        """Rotary embedding (NeoX rotate-halves) of x [tokens, heads, dim] at i32 pos."""
        return self.apply("rope", (x, pos), {"theta": theta, "inplace": inplace}, name)

    def attention(self, q: Tensor, k: Tensor, v: Tensor, pos: Tensor, *,
                  scale: float | None = None, causal: bool = True,
                  name: str | None = None) -> Tensor:
        """Grouped-query attention; query i at position pos[i] sees keys 0..pos[i]."""
        return self.apply("attention", (q, k, v, pos), {"scale": scale, "causal": causal}, name)

    # --------------------------------------------------------------------- rows, views, shapes
    def get_rows(self, x: Tensor, idx: Tensor, *, name: str | None = None) -> Tensor:
        """x[idx] for an i32 index vector."""
        return self.apply("get_rows", (x, idx), {}, name)

    def set_rows(self, dst: Tensor, idx: Tensor, src: Tensor, *, inplace: bool = False,
                 name: str | None = None) -> Tensor:
        """dst with rows idx replaced by src (value semantics)."""
        return self.apply("set_rows", (dst, idx, src), {"inplace": inplace}, name)

    def reshape(self, x: Tensor, shape: Sequence[int], *, name: str | None = None) -> Tensor:
        """Same elements in a new shape (one -1 allowed)."""
        return self.apply("reshape", (x,), {"shape": tuple(shape)}, name)

    def transpose(self, x: Tensor, perm: Sequence[int] | None = None, *,
                  name: str | None = None) -> Tensor:
        """Permute axes (default: reverse)."""
        return self.apply("transpose", (x,), {"perm": None if perm is None else tuple(perm)},
                          name)

    def slice(self, x: Tensor, axis: int = 0, start: int = 0, stop: int | None = None, *,
              name: str | None = None) -> Tensor:
        """x[start:stop] along axis."""
        return self.apply("slice", (x,), {"axis": axis, "start": start, "stop": stop}, name)

    def as_strided(self, x: Tensor, shape: Sequence[int], strides: Sequence[int],
                   offset: int = 0, *, name: str | None = None) -> Tensor:
        """A view of ``x``'s elements in row-major order: element (i0, i1, ...) is element
        ``offset + sum(i_k * strides[k])`` of ``x`` flattened (strides in elements)."""
        return self.apply("as_strided", (x,), {"shape": tuple(shape), "strides": tuple(strides),
                                               "offset": offset}, name)

    def opaque(self, op: str, xs: Sequence[Tensor], shape: Sequence[int], dtype: str = "f32",
               *, params: Sequence[int] = (), may_write_operand: bool = False,
               inplace: bool = False, name: str | None = None) -> Tensor:
        """A node for an op graphc cannot compute (``op`` names it, e.g. ``"ggml.MUL_MAT"``):
        it reads every operand whole and writes a result of ``shape`` and ``dtype``. With
        ``may_write_operand`` (op ``opaque_inplace``) its result may be placed over operand
        0's bytes, which needs the result to have operand 0's type; ``inplace=True`` forces
        that. Planned and checked like any node; no backend runs it."""
        kind = "opaque_inplace" if may_write_operand or inplace else "opaque"
        return self.apply(kind, xs, {"op": op, "shape": tuple(shape), "dtype": dtype,
                                     "params": tuple(params), "inplace": inplace}, name)

    def concat(self, xs: Sequence[Tensor], axis: int = 0, *, name: str | None = None
               ) -> Tensor:
        """Join tensors along axis."""
        return self.apply("concat", tuple(xs), {"axis": axis}, name)

    def full(self, shape: Sequence[int], value: float, dtype: str = "f32", *,
             name: str | None = None) -> Tensor:
        """A constant tensor."""
        return self.apply("full", (), {"shape": tuple(shape), "value": value, "dtype": dtype},
                          name)

    def const(self, values: Sequence[float], shape: Sequence[int] | None = None,
              dtype: str = "f32", *, name: str | None = None) -> Tensor:
        """A small literal tensor (default shape: a vector of the values)."""
        vals = [v.item() if hasattr(v, "item") else v for v in values]
        return self.apply("const", (), {"values": tuple(vals),
                                        "shape": (len(vals),) if shape is None else tuple(shape),
                                        "dtype": dtype}, name)

    # --------------------------------------------------------------------- reductions
    def sum(self, x: Tensor, axis: int = -1, keepdims: bool = False, *,
            name: str | None = None) -> Tensor:
        """Sum over axis."""
        return self.apply("sum", (x,), {"axis": axis, "keepdims": keepdims}, name)

    def mean(self, x: Tensor, axis: int = -1, keepdims: bool = False, *,
             name: str | None = None) -> Tensor:
        """Mean over axis."""
        return self.apply("mean", (x,), {"axis": axis, "keepdims": keepdims}, name)

    def max(self, x: Tensor, axis: int = -1, keepdims: bool = False, *,
            name: str | None = None) -> Tensor:
        """Max over axis."""
        return self.apply("max", (x,), {"axis": axis, "keepdims": keepdims}, name)

    def argmax(self, x: Tensor, axis: int = -1, keepdims: bool = False, *,
               name: str | None = None) -> Tensor:
        """Index of the maximum over axis (i32)."""
        return self.apply("argmax", (x,), {"axis": axis, "keepdims": keepdims}, name)

