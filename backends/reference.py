"""The NumPy reference backend: value semantics, no aliasing; the oracle for every test.

Each op has one rule in ``RULES``: ``rule(operands, attrs, node) -> array``. ``RULES`` is a
:class:`graphc.ops.RuleTable` keyed by the op table: importing this module fails naming any
op without a rule, and a rule for a name that is not an op is refused. f16 and bf16
operands are computed in f32 and the result cast back, so the reference is as exact as
the result type allows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from graphc.dtypes import to_numpy
from graphc.errors import GraphError
from graphc.executable import Executable
from graphc.graph import Graph
from graphc.naming import describe
from graphc.ops import RuleTable, opaque_cannot_run, strided_index
from graphc.tensor import Tensor

Rule = Callable[[list[np.ndarray], Mapping[str, Any], Tensor], np.ndarray]

_LOW_PRECISION = {np.dtype(np.float16), to_numpy("bf16")}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _opaque(t: Tensor) -> np.ndarray:
    e = opaque_cannot_run(t)
    raise GraphError(f"{describe(t)}: {e.message}", fix=e.fix)


def _rms_norm(x: np.ndarray, eps: float) -> np.ndarray:
    return np.asarray(x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def _layer_norm(x: np.ndarray, eps: float) -> np.ndarray:
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return np.asarray((x - mu) / np.sqrt(var + eps))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - np.where(np.isfinite(m), m, 0))
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True))


def rope_tables(pos: np.ndarray, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of shape [tokens, 1, head_dim // 2] for NeoX rotary embedding."""
    half = head_dim // 2
    inv_freq = theta ** (-np.arange(half, dtype=np.float64) * 2.0 / head_dim)
    ang = pos.astype(np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]


def _rope(x: np.ndarray, pos: np.ndarray, theta: float) -> np.ndarray:
    half = x.shape[-1] // 2
    cos, sin = rope_tables(pos, x.shape[-1], theta)
    x1, x2 = x[..., :half], x[..., half:]
    out = np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def attention_mask(pos: np.ndarray, n_keys: int, causal: bool) -> np.ndarray:
    """Boolean [queries, keys] mask: query i sees key j when j <= pos[i] (or always)."""
    if not causal:
        return np.ones((pos.shape[0], n_keys), dtype=bool)
    return np.arange(n_keys)[None, :] <= pos[:, None]


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, pos: np.ndarray, scale: float,
               causal: bool) -> np.ndarray:
    group = q.shape[1] // k.shape[1]
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    scores = np.einsum("qhd,khd->hqk", q, k) * scale
    mask = attention_mask(pos, k.shape[0], causal)[None]
    scores = np.where(mask, scores, -np.inf)
    m = np.max(scores, axis=-1, keepdims=True)
    e = np.where(mask, np.exp(scores - np.where(np.isfinite(m), m, 0)), 0.0)
    denom = np.sum(e, axis=-1, keepdims=True)
    p = e / np.where(denom == 0, 1, denom)  # a query that sees no key gets zeros
    return np.asarray(np.einsum("hqk,khd->qhd", p, v), dtype=q.dtype)


def _set_rows(dst: np.ndarray, idx: np.ndarray, src: np.ndarray) -> np.ndarray:
    out = dst.copy()
    out[idx] = src
    return out


def _reduce(fn: Callable[..., np.ndarray]) -> Rule:
    return lambda x, a, t: np.asarray(fn(x[0], axis=a["axis"], keepdims=a["keepdims"]))


RULES: RuleTable[Rule] = RuleTable("the reference backend", {
    # elementwise
    "add": lambda x, a, t: x[0] + x[1],
    "sub": lambda x, a, t: x[0] - x[1],
    "mul": lambda x, a, t: x[0] * x[1],
    "div": lambda x, a, t: x[0] / x[1],
    "maximum": lambda x, a, t: np.maximum(x[0], x[1]),
    "equal": lambda x, a, t: np.equal(x[0], x[1]),
    "neg": lambda x, a, t: -x[0],
    "exp": lambda x, a, t: np.exp(x[0]),
    "log": lambda x, a, t: np.log(x[0]),
    "sqrt": lambda x, a, t: np.sqrt(x[0]),
    "rsqrt": lambda x, a, t: 1.0 / np.sqrt(x[0]),
    "tanh": lambda x, a, t: np.tanh(x[0]),
    "sigmoid": lambda x, a, t: _sigmoid(x[0]),
    "relu": lambda x, a, t: np.maximum(x[0], 0),
    "gelu": lambda x, a, t: _gelu(x[0]),
    "silu": lambda x, a, t: x[0] * _sigmoid(x[0]),
    "copy": lambda x, a, t: x[0].copy(),
    "scale": lambda x, a, t: x[0] * np.asarray(a["s"], dtype=x[0].dtype),
    "cast": lambda x, a, t: x[0].astype(to_numpy(a["dtype"])),
    # contractions, row-wise
    "matmul": lambda x, a, t: np.matmul(x[0], x[1]),
    "rms_norm": lambda x, a, t: _rms_norm(x[0], a["eps"]),
    "layer_norm": lambda x, a, t: _layer_norm(x[0], a["eps"]),
    "softmax": lambda x, a, t: _softmax(x[0], a["axis"]),
    "rope": lambda x, a, t: _rope(x[0], x[1], a["theta"]),
    "attention": lambda x, a, t: _attention(x[0], x[1], x[2], x[3], a["scale"], a["causal"]),
    # rows, views, shapes
    "get_rows": lambda x, a, t: x[0][x[1]],
    "set_rows": lambda x, a, t: _set_rows(*x),
    "reshape": lambda x, a, t: x[0].reshape(a["shape"]),
    "transpose": lambda x, a, t: np.transpose(x[0], a["perm"]),
    "slice": lambda x, a, t: np.take(x[0], np.arange(a["start"], a["stop"]), axis=a["axis"]),
    "concat": lambda x, a, t: np.concatenate(x, axis=a["axis"]),
    "as_strided": lambda x, a, t: np.ravel(x[0])[strided_index(a)],
    "opaque": lambda x, a, t: _opaque(t),
    "opaque_inplace": lambda x, a, t: _opaque(t),
    "full": lambda x, a, t: np.full(a["shape"], a["value"], dtype=to_numpy(a["dtype"])),
    "const": lambda x, a, t: np.asarray(a["values"], dtype=np.float64).reshape(a["shape"]),
    # reductions
    "sum": _reduce(np.sum),
    "mean": _reduce(np.mean),
    "max": _reduce(np.max),
    "argmax": lambda x, a, t: _argmax(x[0], a["axis"], a["keepdims"]),
})


def _argmax(x: np.ndarray, axis: int, keepdims: bool) -> np.ndarray:
    out = np.argmax(x, axis=axis, keepdims=keepdims)
    return np.asarray(out, dtype=np.int32)


def rule_for(op: str) -> Rule:
    """The reference rule of ``op``; a GraphError naming the op when there is none."""
    try:
        return RULES[op]
    except KeyError:
        raise GraphError(f"the reference backend has no rule for op {op!r}",
                         fix="add one to graphc.backends.reference.RULES "
                             "(RULES[op] = rule)") from None


def evaluate_node(t: Tensor, operands: list[np.ndarray]) -> np.ndarray:
    """Compute one node from its operand values (f16/bf16 computed in f32).

    Operands are made dense first, so the arithmetic (the order of a sum's terms) does
    not depend on how an operand is laid out: a strided window in an arena gives the
    reference backend's bits exactly."""
    rule = rule_for(t.op)
    wide = [o.astype(np.float32) if o.dtype in _LOW_PRECISION else np.ascontiguousarray(o)
            for o in operands]
    try:
        with np.errstate(all="ignore"):
            value = rule(wide, t.attrs, t)
    except IndexError as e:
        raise GraphError(f"{t.op} failed at run time: {e}", node=t, ir_line=describe(t),
                         fix="check the index values fed to the graph") from None
    return np.asarray(value).astype(to_numpy(t.dtype), copy=False)


def evaluate(
    g: Graph,
    inputs: Mapping[str, np.ndarray],
    params: Mapping[str, np.ndarray],
    state: Mapping[str, np.ndarray],
) -> dict[Tensor, np.ndarray]:
    """Value of every node of ``g`` (leaves from the three feeds)."""
    env: dict[Tensor, np.ndarray] = {}
    leaf_values = {"input": inputs, "param": params, "state": state}
    for t in g.nodes:
        if t.is_leaf:
            env[t] = np.asarray(leaf_values[t.op][t.leaf_name])
        else:
            env[t] = evaluate_node(t, [env[i] for i in t.inputs])
    return env


class ReferenceExecutable(Executable):
    """Runs a graph node by node with NumPy."""

    backend = "reference"

    def _execute(
        self, inputs: dict[str, Any], state: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        env = evaluate(self.graph, inputs, self.params, state)
        outputs = {n: env[t] for n, t in self.graph.outputs.items() if n in self.reads}
        new_state = {s.leaf_name: env[v].copy() for s, v in self.graph.assigns.items()}
        return outputs, new_state


def build(graph: Graph, params: Any, reads: Any, states: Any = None, *,
          report: Any = None, **options: Any) -> ReferenceExecutable:
    """Backend entry point used by ``graphc.compile``."""
    if options:
        raise GraphError(f"the reference backend takes no option {sorted(options)[0]!r}")
    return ReferenceExecutable(graph, params, reads, states)
