"""`Tensor`: one node of a graph and the value it produces (the two are the same object)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from graphc.dtypes import ITEMSIZE

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

    # Operators build nodes in the tensor's own graph.
    def __add__(self, other: Tensor) -> Tensor:
        return self.graph.add(self, other)

    def __sub__(self, other: Tensor) -> Tensor:
        return self.graph.sub(self, other)

    def __mul__(self, other: Tensor) -> Tensor:
        return self.graph.mul(self, other)

    def __truediv__(self, other: Tensor) -> Tensor:
        return self.graph.div(self, other)

    def __matmul__(self, other: Tensor) -> Tensor:
        return self.graph.matmul(self, other)

    def __neg__(self) -> Tensor:
        return self.graph.neg(self)
