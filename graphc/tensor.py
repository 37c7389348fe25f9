"""`Tensor`: one node of a graph and the value it produces (the two are the same object)."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from graphc.dtypes import FLOAT_DTYPES, ITEMSIZE, NUMERIC_DTYPES
from graphc.errors import GraphError

if TYPE_CHECKING:
    from graphc.graph import Graph

Shape = tuple[int, ...]
AttrValue = Any  # int | float | bool | str | tuple[AttrValue, ...]

LEAF_OPS: frozenset[str] = frozenset({"input", "param", "state"})
_UIDS = itertools.count()


class Tensor:
    """An immutable node: ``op`` applied to ``inputs`` with literal ``attrs``.

    Compared and hashed by identity: two tensors with the same op and inputs are still two
    tensors (CSE is what merges them). ``name`` is for people and the text format; for the
    leaves ``input``/``param``/``state`` it is the key the caller feeds or binds. Build
    tensors through :class:`graphc.Graph` methods, which check them; the constructor
    itself checks nothing.

    Operators ``+ - * / @`` and unary ``-`` build nodes in the tensor's own graph. A
    Python number (int, float or NumPy scalar; never a bool) on either side of ``+ - * /``
    becomes ordinary IR, with ``c`` a ``full`` constant of x's dtype shaped
    ``[1] * x.ndim`` (it broadcasts without changing x's shape):

    ========================  ================================================
    ``x * 2``, ``2 * x``      ``scale(x) {s = 2.0}`` (i32 ``x``: ``mul(x, c)``)
    ``x / 4``                 ``scale(x) {s = 0.25}`` (a power of two: exact)
    ``x / 3``                 ``div(x, c)`` (any other number, zero included)
    ``x + 1``, ``1 + x``      ``add(x, c)``
    ``x - 1``                 ``sub(x, c)``
    ``1 - x``                 ``sub(c, x)``
    ``1 / x``                 ``div(c, x)``
    ========================  ================================================

    A number the op's dtype rule would reject is a GraphError up front: a float with an
    i32 tensor, any number with a bool tensor, ``/`` on an i32 tensor, a non-finite
    number.
    """

    __slots__ = ("attrs", "dtype", "graph", "inputs", "name", "op", "shape", "uid")

    op: str
    inputs: tuple[Tensor, ...]
    attrs: Mapping[str, AttrValue]
    shape: Shape
    dtype: str
    name: str | None
    graph: Graph
    uid: int  # a serial number unique in the process: identity that survives printing

    def __init__(
        self,
        graph: Graph,
        op: str,
        inputs: tuple[Tensor, ...],
        attrs: Mapping[str, AttrValue],
        shape: Shape,
        dtype: str,
        name: str | None = None,
    ) -> None:
        init = object.__setattr__
        init(self, "graph", graph)
        init(self, "op", op)
        init(self, "inputs", tuple(inputs))
        init(self, "attrs", MappingProxyType(dict(attrs)))
        init(self, "shape", tuple(shape))
        init(self, "dtype", dtype)
        init(self, "name", name)
        init(self, "uid", next(_UIDS))

    @classmethod
    def _trusted(
        cls, graph: Graph, op: str, inputs: tuple[Tensor, ...], attrs: Mapping[str, AttrValue],
        shape: Shape, dtype: str, name: str | None,
    ) -> Tensor:
        """Construct from parts that are already canonical (a tuple of inputs, a frozen
        attribute mapping, a tuple shape): the fast path passes use to copy valid nodes."""
        t = object.__new__(cls)
        init = object.__setattr__
        init(t, "graph", graph)
        init(t, "op", op)
        init(t, "inputs", inputs)
        init(t, "attrs", attrs)
        init(t, "shape", shape)
        init(t, "dtype", dtype)
        init(t, "name", name)
        init(t, "uid", next(_UIDS))
        return t

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"Tensor is immutable: cannot set {key!r}; build a new node instead")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"Tensor is immutable: cannot delete {key!r}")

    # Identity semantics, spelled out so that operator overloads below cannot change them.
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __bool__(self) -> bool:
        raise TypeError("a Tensor has no truth value; compare tensors with `is`")

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return ITEMSIZE[self.dtype]

    @property
    def nbytes(self) -> int:
        """Bytes of the whole (contiguous) tensor."""
        return self.size * self.itemsize

    @property
    def is_leaf(self) -> bool:
        """True for ``input``, ``param`` and ``state`` nodes."""
        return self.op in LEAF_OPS

    @property
    def leaf_name(self) -> str:
        """The name a leaf (input, param, state) is fed and bound by; every leaf has one."""
        if self.name is None or not self.is_leaf:
            raise ValueError(f"{self!r} is not a named leaf")
        return self.name

    @property
    def inplace(self) -> bool:
        """True when the node was asked to write into its first operand's buffer."""
        return bool(self.attrs.get("inplace", False))

    @property
    def type_str(self) -> str:
        """The type as the text format prints it, e.g. ``f32[8, 64]``."""
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    def __repr__(self) -> str:
        label = f"%{self.name}" if self.name else f"<{self.op}@{id(self):x}>"
        return f"Tensor({label} = {self.op} : {self.type_str})"

    # Operators build nodes in the tensor's own graph (lowerings: the class docstring).
    __array_ufunc__ = None  # ``np.float32(2) * x`` defers to Tensor.__rmul__

    def __add__(self, other: Tensor | float) -> Tensor:
        """``self + other``: ``add``; a number becomes a broadcast ``full`` constant."""
        if _is_number(other):
            return self.graph.add(self, _constant(self, other, f"{self._label()} + {other!r}"))
        return self.graph.add(self, _tensor(other))

    def __radd__(self, other: float) -> Tensor:
        """``number + self``: ``add(self, full)`` (tensor first, so CSE merges ``1 + x``
        with ``x + 1``)."""
        if not _is_number(other):
            return NotImplemented
        return self.graph.add(self, _constant(self, other, f"{other!r} + {self._label()}"))

    def __sub__(self, other: Tensor | float) -> Tensor:
        """``self - other``: ``sub``; a number becomes a broadcast ``full`` constant."""
        if _is_number(other):
            return self.graph.sub(self, _constant(self, other, f"{self._label()} - {other!r}"))
        return self.graph.sub(self, _tensor(other))

    def __rsub__(self, other: float) -> Tensor:
        """``number - self``: ``sub(full, self)``."""
        if not _is_number(other):
            return NotImplemented
        return self.graph.sub(_constant(self, other, f"{other!r} - {self._label()}"), self)

    def __mul__(self, other: Tensor | float) -> Tensor:
        """``self * other``: ``mul``; times a number it is ``scale(self, number)`` for a
        float tensor and ``mul(self, full)`` for an i32 tensor and an int."""
        if _is_number(other):
            return _times(self, other, f"{self._label()} * {other!r}")
        return self.graph.mul(self, _tensor(other))

    def __rmul__(self, other: float) -> Tensor:
        """``number * self``: the same IR as ``self * number``."""
        if not _is_number(other):
            return NotImplemented
        return _times(self, other, f"{other!r} * {self._label()}")

    def __truediv__(self, other: Tensor | float) -> Tensor:
        """``self / other``: ``div``. By a power of two it is ``scale(self, 1 / number)``
        (exact: the same values as dividing); by any other number, ``div`` by a broadcast
        ``full`` constant (zero included: inf and nan as in NumPy). Float tensors only, as
        for ``div``."""
        if _is_number(other):
            spelled = f"{self._label()} / {other!r}"
            _check_number(self, other, spelled, divides=True)
            if _is_power_of_two(float(other)):
                return self.graph.scale(self, 1.0 / float(other))
            return self.graph.div(self, _constant(self, other, spelled, divides=True))
        return self.graph.div(self, _tensor(other))

    def __rtruediv__(self, other: float) -> Tensor:
        """``number / self``: ``div(full, self)`` (float tensors only)."""
        if not _is_number(other):
            return NotImplemented
        return self.graph.div(
            _constant(self, other, f"{other!r} / {self._label()}", divides=True), self)

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.graph.matmul(self, other)

    def __neg__(self) -> Tensor:
        return self.graph.neg(self)

    def _label(self) -> str:
        """How error messages spell this tensor: ``%name`` or ``<op>``."""
        return f"%{self.name}" if self.name else f"<{self.op}>"


def _tensor(value: object) -> Tensor:
    """``value`` handed on to the graph builder, which names it in a GraphError ("operand
    1 is a str, not a Tensor") unless it is a Tensor."""
    return cast(Tensor, value)


def _is_number(value: object) -> TypeGuard[float]:
    """True for a real number an operator takes as a constant: int, float or a NumPy
    scalar, and bool too (so that :func:`_check_number` can refuse it by name)."""
    return isinstance(value, numbers.Real)


def _check_number(x: Tensor, value: float, spelled: str, divides: bool = False) -> None:
    """Raise GraphError unless ``value`` may meet tensor ``x`` in an arithmetic op:
    never a bool, never a bool tensor, no float with an i32 tensor, and no true division
    of an i32 tensor (the op table's dtype rules, said before anything is built)."""
    given = cast(object, value)  # typed float, it may be any numbers.Real (bool too)
    if isinstance(given, bool):
        raise GraphError(f"{spelled}: a bool is not a number here",
                         fix="write 1 or 0, or build a constant with g.full(...)")
    if x.dtype not in NUMERIC_DTYPES:
        raise GraphError(f"{spelled}: arithmetic on a {x.dtype} tensor",
                         fix="cast it first: g.cast(x, 'f32')")
    if x.dtype not in FLOAT_DTYPES:
        if divides:
            raise GraphError(f"{spelled}: true division of an {x.dtype} tensor",
                             fix="cast it to a float dtype first: g.cast(x, 'f32')")
        if not isinstance(given, numbers.Integral):
            raise GraphError(f"{spelled}: a float number with an {x.dtype} tensor",
                             fix="use an int, or cast the tensor first: g.cast(x, 'f32')")
    if not math.isfinite(float(value)):
        raise GraphError(f"{spelled}: the number is not finite",
                         fix="build the constant with g.full(...) if you mean it")


def _is_power_of_two(value: float) -> bool:
    """True when ``value`` is plus or minus a power of two whose inverse is a finite
    float, so that multiplying by the inverse is exactly dividing."""
    return value != 0 and abs(math.frexp(value)[0]) == 0.5 and math.isfinite(1.0 / value)


def _constant(x: Tensor, value: float, spelled: str, divides: bool = False) -> Tensor:
    """A ``full`` of ``value`` with x's dtype and shape ``[1] * x.ndim`` (broadcasts
    against ``x`` without changing its shape), after :func:`_check_number`."""
    _check_number(x, value, spelled, divides)
    number = int(value) if x.dtype not in FLOAT_DTYPES else float(value)
    return x.graph.full((1,) * x.ndim, number, x.dtype)


def _times(x: Tensor, value: float, spelled: str) -> Tensor:
    """``x * value``: ``scale`` for float tensors, ``mul`` by a constant for i32."""
    _check_number(x, value, spelled)
    if x.dtype in FLOAT_DTYPES:
        return x.graph.scale(x, float(value))
    return x.graph.mul(x, _constant(x, value, spelled))
