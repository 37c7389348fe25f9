"""Lowering graphc ops to JAX: one rule per op, and a graph-to-function lowering.

``LOWERINGS[op](operands, attrs, node) -> jax.Array``; ``LOWERINGS`` is a
:class:`graphc.ops.RuleTable` keyed by the op table (importing this module fails naming
any op without a lowering; a lowering for a name that is not an op is refused). f16/bf16
norms, softmax, rope and attention compute in f32 and round to the result type; matmuls
accumulate in f32. The
lowered function is pure (params and states are arguments), so ``jax.jit``,
``jax.grad`` and ``jax.vmap`` all apply to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from graphc.dtypes import to_numpy
from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.ops import RuleTable, opaque_cannot_run, strided_index
from graphc.tensor import Tensor

Lowering = Callable[[list[jax.Array], Mapping[str, Any], Tensor], jax.Array]
_LOW = (jnp.float16, jnp.bfloat16)


def _wide(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32) if x.dtype in _LOW else x


def _f32(fn: Callable[..., jax.Array]) -> Lowering:
    """Compute in f32 when the operands are f16/bf16, then round to the node's dtype."""
    def rule(x: list[jax.Array], a: Mapping[str, Any], t: Tensor) -> jax.Array:
        return fn(*[_wide(v) for v in x], a).astype(to_numpy(t.dtype))

    return rule


def _rms_norm(x: jax.Array, a: Mapping[str, Any]) -> jax.Array:
    return x * lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + a["eps"])


def _layer_norm(x: jax.Array, a: Mapping[str, Any]) -> jax.Array:
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
    return (x - mu) * lax.rsqrt(var + a["eps"])


def _rope(x: jax.Array, pos: jax.Array, a: Mapping[str, Any]) -> jax.Array:
    d = x.shape[-1]
    half = d // 2
    inv_freq = a["theta"] ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / d)
    ang = pos.astype(jnp.float32)[:, None] * inv_freq[None, :]
    cos, sin = jnp.cos(ang)[:, None, :], jnp.sin(ang)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _attention(q: jax.Array, k: jax.Array, v: jax.Array, pos: jax.Array,
               a: Mapping[str, Any]) -> jax.Array:
    n_keys = k.shape[0]
    if a["causal"]:
        mask = jnp.arange(n_keys)[None, :] <= pos[:, None]
    else:
        mask = jnp.ones((q.shape[0], n_keys), dtype=bool)
    if k.shape[-1] == v.shape[-1]:  # JAX's fused attention (cuDNN flash attention on GPUs)
        out = jax.nn.dot_product_attention(q[None], k[None], v[None], mask=mask[None, None],
                                           scale=a["scale"])
        return out[0]
    group = q.shape[1] // k.shape[1]
    k = jnp.repeat(k, group, axis=1)
    v = jnp.repeat(v, group, axis=1)
    s = jnp.einsum("qhd,khd->hqk", q, k) * a["scale"]
    s = jnp.where(mask[None], s, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1)
    return jnp.einsum("hqk,khd->qhd", p, v)


def _matmul(x: list[jax.Array], a: Mapping[str, Any], t: Tensor) -> jax.Array:
    lhs, rhs = x
    if lhs.dtype in _LOW:
        return jnp.matmul(lhs, rhs, preferred_element_type=jnp.float32).astype(lhs.dtype)
    return jnp.matmul(lhs, rhs)


def _reduce(fn: Callable[..., jax.Array]) -> Lowering:
    return lambda x, a, t: fn(_wide(x[0]), axis=a["axis"], keepdims=a["keepdims"]).astype(
        to_numpy(t.dtype))


def _slice(x: list[jax.Array], a: Mapping[str, Any], t: Tensor) -> jax.Array:
    return lax.slice_in_dim(x[0], a["start"], a["stop"], axis=a["axis"])


def _scale(x: list[jax.Array], a: Mapping[str, Any], t: Tensor) -> jax.Array:
    return x[0] * jnp.asarray(a["s"], dtype=x[0].dtype)


def _opaque(x: list[jax.Array], a: Mapping[str, Any], t: Tensor) -> jax.Array:
    e = opaque_cannot_run(t)
    raise GraphError(f"{t.op} {a['op']}: {e.message}", fix=e.fix)


LOWERINGS: RuleTable[Lowering] = RuleTable("the jax backend", {
    "add": lambda x, a, t: x[0] + x[1],
    "sub": lambda x, a, t: x[0] - x[1],
    "mul": lambda x, a, t: x[0] * x[1],
    "div": lambda x, a, t: x[0] / x[1],
    "maximum": lambda x, a, t: jnp.maximum(x[0], x[1]),
    "equal": lambda x, a, t: jnp.equal(x[0], x[1]),
    "neg": lambda x, a, t: -x[0],
    "exp": lambda x, a, t: jnp.exp(x[0]),
    "log": lambda x, a, t: jnp.log(x[0]),
    "sqrt": lambda x, a, t: jnp.sqrt(x[0]),
    "rsqrt": lambda x, a, t: lax.rsqrt(x[0]),
    "tanh": lambda x, a, t: jnp.tanh(x[0]),
    "sigmoid": lambda x, a, t: jax.nn.sigmoid(x[0]),
    "relu": lambda x, a, t: jnp.maximum(x[0], jnp.zeros((), x[0].dtype)),
    "gelu": lambda x, a, t: jax.nn.gelu(x[0], approximate=True),
    "silu": lambda x, a, t: jax.nn.silu(x[0]),
    "copy": lambda x, a, t: x[0],
    "scale": _scale,
    "cast": lambda x, a, t: x[0].astype(to_numpy(a["dtype"])),
    "matmul": _matmul,
    "rms_norm": _f32(_rms_norm),
    "layer_norm": _f32(_layer_norm),
    "softmax": _f32(lambda x, a: jax.nn.softmax(x, axis=a["axis"])),
    "rope": _f32(_rope),
    "attention": _f32(_attention),
    "get_rows": lambda x, a, t: jnp.take(x[0], x[1], axis=0),
    "set_rows": lambda x, a, t: x[0].at[x[1]].set(x[2]),
    "reshape": lambda x, a, t: jnp.reshape(x[0], a["shape"]),
    "transpose": lambda x, a, t: jnp.transpose(x[0], a["perm"]),
    "slice": _slice,
    "concat": lambda x, a, t: jnp.concatenate(x, axis=a["axis"]),
    "as_strided": lambda x, a, t: jnp.ravel(x[0])[jnp.asarray(strided_index(a))],
    "opaque": _opaque,
    "opaque_inplace": _opaque,
    "full": lambda x, a, t: jnp.full(a["shape"], a["value"], dtype=to_numpy(a["dtype"])),
    "const": lambda x, a, t: jnp.asarray(a["values"], dtype=to_numpy(a["dtype"])).reshape(
        a["shape"]),
    "sum": _reduce(jnp.sum),
    "mean": _reduce(jnp.mean),
    "max": _reduce(jnp.max),
    "argmax": lambda x, a, t: jnp.argmax(x[0], axis=a["axis"], keepdims=a["keepdims"]
                                         ).astype(jnp.int32),
})


def lowering_for(op: str) -> Lowering:
    """The JAX lowering of ``op``; a GraphError naming the op when there is none."""
    try:
        return LOWERINGS[op]
    except KeyError:
        raise GraphError(f"the jax backend has no lowering for op {op!r}",
                         fix="add one to graphc.backends.jax_lowering.LOWERINGS "
                             "(LOWERINGS[op] = lowering)") from None


def lower_nodes(nodes: Sequence[Tensor], env: dict[Tensor, jax.Array]) -> dict[Tensor, jax.Array]:
    """Evaluate ``nodes`` (a topological run of non-leaf nodes) into ``env`` with JAX."""
    for t in nodes:
        env[t] = lowering_for(t.op)([env[i] for i in t.inputs], t.attrs, t)
    return env


GraphFn = Callable[[Mapping[str, jax.Array], Mapping[str, jax.Array], Mapping[str, jax.Array]],
                   tuple[dict[str, jax.Array], dict[str, jax.Array]]]


def lower(g: Graph, outputs: Sequence[str] | None = None,
          order: Sequence[Tensor] | None = None) -> GraphFn:
    """``g`` as a pure function ``(params, states, inputs) -> (outputs, new states)``; the
    new states hold every state (an unassigned one unchanged).

    ``outputs``: the output names to return (default: all). ``order``: the schedule to
    trace in (default: the graph's). Every op must have a lowering; that is checked now,
    not at the first call.
    """
    names = list(g.outputs) if outputs is None else list(outputs)
    nodes = [t for t in (order if order is not None else g.nodes) if not t.is_leaf]
    for t in nodes:
        lowering_for(t.op)
    out_t = {n: g.outputs[n] for n in names}
    # every state comes back: an unassigned one as itself, since its buffer is donated too
    assigns = [(s.leaf_name, g.assigns.get(s, s)) for s in g.states.values()]
    leaves = [t for t in g.nodes if t.is_leaf]

    def fn(params: Mapping[str, jax.Array], states: Mapping[str, jax.Array],
           inputs: Mapping[str, jax.Array]) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
        feeds = {"param": params, "state": states, "input": inputs}
        env: dict[Tensor, jax.Array] = {t: feeds[t.op][t.leaf_name] for t in leaves}
        lower_nodes(nodes, env)
        return ({n: env[t] for n, t in out_t.items()},
                {name: env[v] for name, v in assigns})

    fn.__name__ = f"graphc_{g.name}".replace(" ", "_")
    return fn

