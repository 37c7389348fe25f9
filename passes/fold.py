"""Folding simple patterns away (a table of rules, one per op)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from graphc.passes.base import function_pass
from graphc.passes.rewrite import Rebuilder

from graphc.graph import Graph
from graphc.tensor import Tensor

# A rule sees the node being copied and its already-folded operands. It returns the tensor
# to use instead (an existing one, or one it built in ``rb.dst``), or None to keep the
# node as it is.
Rule = Callable[[Rebuilder, Tensor, tuple[Tensor, ...]], Tensor | None]


def _is_const(t: Tensor, value: float) -> bool:
    if t.op == "full":
        return float(t.attrs["value"]) == value
    if t.op == "const":
        return all(float(v) == value for v in t.attrs["values"])
    return False


def _same_type(a: Tensor, b: Tensor) -> bool:
    return (a.shape, a.dtype) == (b.shape, b.dtype)


def _identity_operand(value: float, commutes: bool) -> Rule:
    def rule(rb: Rebuilder, t: Tensor, ins: tuple[Tensor, ...]) -> Tensor | None:
        a, b = ins
        if _is_const(b, value) and _same_type(a, t):
            return a
        if commutes and _is_const(a, value) and _same_type(b, t):
            return b
        return None

    return rule


def _scale(rb: Rebuilder, t: Tensor, ins: tuple[Tensor, ...]) -> Tensor | None:
    (x,) = ins
    if t.attrs["s"] == 1.0:  # scale(x, 1) -> x
        return x
    if x.op == "scale" and not t.inplace:  # scale(scale(x, a), b) -> scale(x, a*b)
        s = x.attrs["s"] * t.attrs["s"]
        src = x.inputs[0]
        return src if s == 1.0 else rb.dst.scale(src, s, name=t.name)
    return None


def _neg(rb: Rebuilder, t: Tensor, ins: tuple[Tensor, ...]) -> Tensor | None:
    (x,) = ins
    return x.inputs[0] if x.op == "neg" else None  # neg(neg(x)) -> x


def _transpose(rb: Rebuilder, t: Tensor, ins: tuple[Tensor, ...]) -> Tensor | None:
    (x,) = ins
    perm = t.attrs["perm"]
    if list(perm) == list(range(len(perm))):  # transpose(x, identity) -> x
        return x
    if x.op == "transpose":  # transpose(transpose(x, p), q) -> transpose(x, p[q])
        inner = x.attrs["perm"]
        composed = tuple(inner[p] for p in perm)
        src = x.inputs[0]
        if list(composed) == list(range(len(composed))):
            return src
        return rb.dst.transpose(src, composed, name=t.name)
    return None


def _reshape(rb: Rebuilder, t: Tensor, ins: tuple[Tensor, ...]) -> Tensor | None:
    (x,) = ins
    if x.shape == t.shape:  # reshape(x, x.shape) -> x
        return x
    if x.op == "reshape":  # reshape(reshape(x, a), b) -> reshape(x, b)
        src = x.inputs[0]
        return src if src.shape == t.shape else rb.dst.reshape(src, t.shape, name=t.name)
    return None


def _slice(rb: Rebuilder, t: Tensor, ins: tuple[Tensor, ...]) -> Tensor | None:
    (x,) = ins
    return x if x.shape == t.shape else None  # slice(x, whole axis) -> x


def _copyless(rb: Rebuilder, t: Tensor, ins: tuple[Tensor, ...]) -> Tensor | None:
    (x,) = ins
    return x if x.dtype == t.dtype else None  # cast(x, x.dtype) -> x


RULES: Mapping[str, Rule] = {
    "add": _identity_operand(0.0, commutes=True),  # x + 0 -> x, 0 + x -> x
    "sub": _identity_operand(0.0, commutes=False),  # x - 0 -> x
    "mul": _identity_operand(1.0, commutes=True),  # x * 1 -> x, 1 * x -> x
    "div": _identity_operand(1.0, commutes=False),  # x / 1 -> x
    "scale": _scale,
    "neg": _neg,
    "transpose": _transpose,
    "reshape": _reshape,
    "slice": _slice,
    "cast": _copyless,
}


def fold(g: Graph, rules: Mapping[str, Rule] = RULES) -> Graph:
    """Apply the folding rules in one forward sweep (operands are folded before their
    users, so chains fold completely and a second run changes nothing). Nodes made dead
    by folding are left for DCE. Returns a new graph."""
    rb = Rebuilder(g)
    for t in g.nodes:
        if t.is_leaf:
            continue
        ins = tuple(rb.map[i] for i in t.inputs)
        rule = rules.get(t.op)
        replacement: Any = rule(rb, t, ins) if rule is not None else None
        rb.map[t] = replacement if replacement is not None else rb.copy(t, ins)
    return rb.finish()


function_pass("fold", "fold identities: scale by 1, add of zeros, double transpose, "
                      "reshape chains")(fold)
