"""Folding simple patterns away: one rewrite pattern per rule, applied by
:func:`graphc.passes.rewrite.apply_patterns`."""

from __future__ import annotations

from collections.abc import Sequence

from graphc.graph import Graph
from graphc.passes.base import function_pass
from graphc.passes.rewrite import Rebuilder, RewritePattern, apply_patterns, rewrite_pattern
from graphc.tensor import Tensor

# Each pattern sees a node whose operands are already folded, and returns the tensor to use
# instead (an existing one, or one it built in ``rw.dst``), or None to keep the node.


def _is_const(t: Tensor, value: float) -> bool:
    if t.op == "full":
        return float(t.attrs["value"]) == value
    if t.op == "const":
        return all(float(v) == value for v in t.attrs["values"])
    return False


def _same_type(a: Tensor, b: Tensor) -> bool:
    return (a.shape, a.dtype) == (b.shape, b.dtype)


def _identity_operand(op: str, value: float, commutes: bool) -> RewritePattern:
    """The pattern ``op(x, c) -> x`` (and ``op(c, x) -> x`` when ``commutes``) for a
    constant ``c`` of all ``value``, when broadcasting does not change x's type."""

    def rule(node: Tensor, rw: Rebuilder) -> Tensor | None:
        a, b = node.inputs
        if _is_const(b, value) and _same_type(a, node):
            return a
        if commutes and _is_const(a, value) and _same_type(b, node):
            return b
        return None

    return rewrite_pattern(op, name=f"{op}-identity")(rule)


@rewrite_pattern("scale")
def scale_by_one(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """scale(x, 1) -> x"""
    return node.inputs[0] if node.attrs["s"] == 1.0 else None


@rewrite_pattern("scale")
def scale_of_scale(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """scale(scale(x, a), b) -> scale(x, a*b), and -> x when a*b == 1"""
    (x,) = node.inputs
    if x.op != "scale" or node.inplace:
        return None
    s = x.attrs["s"] * node.attrs["s"]
    src = x.inputs[0]
    return src if s == 1.0 else rw.dst.scale(src, s, name=node.name)


@rewrite_pattern("neg")
def neg_of_neg(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """neg(neg(x)) -> x"""
    (x,) = node.inputs
    return x.inputs[0] if x.op == "neg" else None


@rewrite_pattern("transpose")
def transpose_identity(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """transpose(x, identity) -> x"""
    perm = node.attrs["perm"]
    return node.inputs[0] if list(perm) == list(range(len(perm))) else None


@rewrite_pattern("transpose")
def transpose_of_transpose(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """transpose(transpose(x, p), q) -> transpose(x, p[q]), and -> x when that is the
    identity"""
    (x,) = node.inputs
    if x.op != "transpose":
        return None
    inner, perm = x.attrs["perm"], node.attrs["perm"]
    composed = tuple(inner[p] for p in perm)
    src = x.inputs[0]
    if list(composed) == list(range(len(composed))):
        return src
    return rw.dst.transpose(src, composed, name=node.name)


@rewrite_pattern("reshape")
def reshape_to_same(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """reshape(x, x.shape) -> x"""
    (x,) = node.inputs
    return x if x.shape == node.shape else None


@rewrite_pattern("reshape")
def reshape_of_reshape(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """reshape(reshape(x, a), b) -> reshape(x, b), and -> x when b is x's shape"""
    (x,) = node.inputs
    if x.op != "reshape":
        return None
    src = x.inputs[0]
    return src if src.shape == node.shape else rw.dst.reshape(src, node.shape, name=node.name)


@rewrite_pattern("slice")
def slice_whole(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """slice(x, whole axis) -> x"""
    (x,) = node.inputs
    return x if x.shape == node.shape else None


@rewrite_pattern("cast")
def cast_to_same(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """cast(x, x.dtype) -> x"""
    (x,) = node.inputs
    return x if x.dtype == node.dtype else None


PATTERNS: tuple[RewritePattern, ...] = (
    _identity_operand("add", 0.0, commutes=True),  # x + 0 -> x, 0 + x -> x
    _identity_operand("sub", 0.0, commutes=False),  # x - 0 -> x
    _identity_operand("mul", 1.0, commutes=True),  # x * 1 -> x, 1 * x -> x
    _identity_operand("div", 1.0, commutes=False),  # x / 1 -> x
    scale_by_one,  # scale(x, 1) -> x
    scale_of_scale,  # scale(scale(x, a), b) -> scale(x, a*b)
    neg_of_neg,  # neg(neg(x)) -> x
    transpose_identity,  # transpose(x, identity) -> x
    transpose_of_transpose,  # transpose(transpose(x, p), q) -> transpose(x, p[q])
    reshape_to_same,  # reshape(x, x.shape) -> x
    reshape_of_reshape,  # reshape(reshape(x, a), b) -> reshape(x, b)
    slice_whole,  # slice(x, whole axis) -> x
    cast_to_same,  # cast(x, x.dtype) -> x
)
"""The folding rules, in the order they are tried for a node."""


def fold(g: Graph, patterns: Sequence[RewritePattern] = PATTERNS) -> Graph:
    """Fold the identities of ``patterns`` (default :data:`PATTERNS`) to a fixpoint:
    operands are folded before their users, so chains fold completely and a second run
    changes nothing. Nodes made dead by folding are left for DCE. Returns a new graph.

    The pass manager verifies the result (as after every pass), so this skips the
    driver's own verification to keep ``fold`` one linear sweep.
    """
    return apply_patterns(g, patterns, dce=False, verify=False)


function_pass("fold", "fold identities: scale by 1, add of zeros, double transpose, "
                      "reshape chains")(fold)
