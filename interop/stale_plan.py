"""llama.cpp issue #28448 on ggml's real allocator: a stale plan, judged with and without
graphc.

``ggml_gallocr_alloc_graph`` plans a graph afresh only when ``ggml_gallocr_needs_realloc``
says it no longer fits: another node or leaf count, or a result or source, position by
position, larger than what the last plan made room for. A graph B with the same counts and
sizes that fit is placed at the offsets the allocator planned for the last graph A, node
``i`` where A's node ``i`` was, whatever B's nodes read. When B's dependencies differ, a
node can land over a tensor B still reads, and B computes wrong numbers with no error.

:data:`PAIRS` holds the seven pairs of the issue text (four that corrupt B, three that
reuse the stale plan and stay correct), :func:`random_pair` draws more: random DAGs of ADD,
MUL, MUL_MAT, RMS_NORM, SCALE and SILU over a few inputs, B being A with edges rewired or
nodes reordered so that the counts stay and every size fits. :func:`run_pair` builds both
with ggml's own API, computes A then B on one allocator -- a bare ``ggml_gallocr`` or
``ggml_backend_sched``, llama.cpp's path -- and judges B twice:

- **without graphc**: B's outputs against NumPy (float64) and against B allocated on a
  fresh gallocr, which must agree with NumPy (else the harness is broken and it raises);
- **by graphc**: the static verdict, :func:`~graphc.interop.llama_check.judge` of
  :func:`~graphc.interop.capture.capture_cgraph` of B with the host's reads watched; and
  through the scheduler the dynamic one, the findings of a
  :class:`~graphc.interop.capture.Recorder` set as its eval callback.

Weights live in their own buffer (usage WEIGHTS), as llama.cpp's do, so the compute buffer
holds only the inputs and the activations that the allocator places. Every ggml object made
here (contexts, buffers, gallocrs, backend, scheduler) is freed before a call returns, also
on error.
"""

from __future__ import annotations

import ctypes
import zlib
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from graphc.errors import GraphError
from graphc.interop.capture import Capture, Finding, Recorder, capture_cgraph, watch_cgraph
from graphc.interop.ggml_abi import TYPE_F32, InitParams, lib
from graphc.interop.ggml_import import check_import
from graphc.interop.llama_check import Verdict, judge
from graphc.passes.aliasing import CONSERVATIVE_KINDS

Via = Literal["gallocr", "sched"]
EPS = 1e-6
SCALE = 0.5
TOL = 1e-5
"""Agreement required, relative to the largest value (at least 1), between NumPy and B on
a fresh gallocr; a stale B further than this from NumPy is corrupted."""
JUDGE_SECONDS = 0.2
"""Time limit for graphc's own plan of each graph inside ``judge`` (it does not change the
verdict on ggml's plan, only how hard graphc looks for a smaller plan of its own)."""

_P = ctypes.c_void_p
USAGE_WEIGHTS = 1


# ---------------------------------------------------------------------------- the graphs
@dataclass(frozen=True)
class Leaf:
    """A leaf of ``cols`` x ``rows`` f32 (ggml ``ne = [cols, rows]``, NumPy shape
    ``(rows, cols)``): an input the host sets in the compute buffer (``weight`` False,
    flagged INPUT) or a weight in a buffer of its own."""

    name: str
    cols: int
    rows: int
    weight: bool = False


@dataclass(frozen=True)
class Node:
    """One ggml node: ``op`` (a key of :data:`OPS`) of the tensors named ``args``, in
    ggml's source order."""

    name: str
    op: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class GraphSpec:
    """A graph as ggml gets it: the leaves, expanded into the ``ggml_cgraph`` first and in
    this order (so leaf ``i`` is ``leaves[i]``), then the nodes in this order (node ``i``
    is ``nodes[i]``); ``outputs`` are flagged OUTPUT and are what the host reads after the
    run, in this order."""

    leaves: tuple[Leaf, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]

    def shapes(self) -> dict[str, tuple[int, int]]:
        """Every tensor's NumPy shape; GraphError for an op of mismatched operands."""
        out = {leaf.name: (leaf.rows, leaf.cols) for leaf in self.leaves}
        for n in self.nodes:
            out[n.name] = OPS[n.op].shape([out[a] for a in n.args], n)
        return out

    def is_weight(self, name: str) -> bool:
        """Whether ``name`` is a weight leaf (not placed by the graph allocator)."""
        return any(leaf.name == name and leaf.weight for leaf in self.leaves)

    def evaluate(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs computed with NumPy in float64 from the leaves' ``values``."""
        env = {k: v.astype(np.float64) for k, v in values.items()}
        for n in self.nodes:
            env[n.name] = OPS[n.op].numpy([env[a] for a in n.args])
        return {o: env[o] for o in self.outputs}


@dataclass(frozen=True)
class OpDef:
    """What this module knows of one ggml op: its operand count, whether operand 0 is a
    weight (MUL_MAT), how to make it with ggml's API, and its NumPy meaning."""

    arity: int
    weight_first: bool
    build: Callable[[Any, int, list[int]], int]
    numpy: Callable[[list[np.ndarray]], np.ndarray]

    def shape(self, shapes: list[tuple[int, int]], node: Node) -> tuple[int, int]:
        """The result's NumPy shape; GraphError when the operands do not fit the op."""
        if len(shapes) != self.arity:
            raise GraphError(f"node {node.name}: {node.op} takes {self.arity} operand(s)")
        if self.weight_first:
            (m, k), (n, k2) = shapes
            if k != k2:
                raise GraphError(f"node {node.name}: mul_mat of {shapes[0]} and {shapes[1]}")
            return (n, m)
        if self.arity == 2 and shapes[0] != shapes[1]:
            raise GraphError(f"node {node.name}: {node.op} of {shapes[0]} and {shapes[1]}")
        return shapes[0]


def _rms_norm(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS)
    return out


OPS: dict[str, OpDef] = {
    "add": OpDef(2, False, lambda b, c, s: int(b.ggml_add(c, *s)), lambda x: x[0] + x[1]),
    "mul": OpDef(2, False, lambda b, c, s: int(b.ggml_mul(c, *s)), lambda x: x[0] * x[1]),
    # ggml_mul_mat(a, b) = b a^T: a is (M, K), b is (N, K), the result (N, M)
    "mul_mat": OpDef(2, True, lambda b, c, s: int(b.ggml_mul_mat(c, *s)),
                     lambda x: x[1] @ x[0].T),
    "rms_norm": OpDef(1, False, lambda b, c, s: int(b.ggml_rms_norm(c, s[0], ctypes.c_float(EPS))),
                      lambda x: _rms_norm(x[0])),
    "scale": OpDef(1, False, lambda b, c, s: int(b.ggml_scale(c, s[0], ctypes.c_float(SCALE))),
                   lambda x: SCALE * x[0]),
    "silu": OpDef(1, False, lambda b, c, s: int(b.ggml_silu(c, s[0])),
                  lambda x: x[0] / (1.0 + np.exp(-x[0]))),
}
"""The ops the pairs and the generator use, by name."""


@dataclass(frozen=True)
class PairSpec:
    """Graph A, then graph B on the same allocator. ``corrupts``: whether the stale plan
    corrupts B (the issue's measurement; None for a drawn pair, found by running it);
    ``restructured``: whether B's nodes or sources differ from A's position by position
    (a stale plan by structure; False where only sizes shrink, llama.cpp's intended reuse
    of a worst-case plan)."""

    name: str
    doc: str
    a: GraphSpec
    b: GraphSpec
    corrupts: bool | None
    restructured: bool


def fits(a: GraphSpec, b: GraphSpec) -> bool:
    """Whether ggml's allocator, having planned ``a``, places ``b`` with that plan
    (``ggml_gallocr_needs_realloc`` is false): the same node and leaf counts, and position
    by position a result and every source slot no larger than ``a``'s, where a source the
    allocator does not place (a weight) always fits and one it places needs a slot ``a``
    had placed."""
    if len(a.nodes) != len(b.nodes) or len(a.leaves) != len(b.leaves):
        return False
    sa, sb = a.shapes(), b.shapes()

    def size(s: tuple[int, int]) -> int:
        return s[0] * s[1]

    for na, nb in zip(a.nodes, b.nodes, strict=True):
        if size(sb[nb.name]) > size(sa[na.name]):
            return False
        for j, arg in enumerate(nb.args):
            if b.is_weight(arg):
                continue
            if j >= len(na.args) or a.is_weight(na.args[j]) \
                    or size(sb[arg]) > size(sa[na.args[j]]):
                return False
    return True


def restructured(a: GraphSpec, b: GraphSpec) -> bool:
    """Whether some position of ``b`` has another op, or reads another position (a node
    by index, a leaf by index), than ``a``'s."""
    def form(g: GraphSpec) -> list[tuple[str, tuple[tuple[str, int], ...]]]:
        pos = {leaf.name: ("leaf", i) for i, leaf in enumerate(g.leaves)}
        pos |= {n.name: ("node", i) for i, n in enumerate(g.nodes)}
        return [(n.op, tuple(pos[x] for x in n.args)) for n in g.nodes]
    return form(a) != form(b)


def _pair(name: str, doc: str, a: GraphSpec, b: GraphSpec, corrupts: bool) -> PairSpec:
    if not fits(a, b):
        raise GraphError(f"pair {name}: B does not fit A's plan (ggml would re-plan)")
    return PairSpec(name, doc, a, b, corrupts, restructured(a, b))


def _g(leaves: Iterable[Leaf], nodes: Iterable[tuple[str, str, tuple[str, ...]]],
       outputs: Iterable[str]) -> GraphSpec:
    return GraphSpec(tuple(leaves), tuple(Node(*n) for n in nodes), tuple(outputs))


def _named_pairs(d: int = 16, t: int = 8) -> dict[str, PairSpec]:
    def act(*names: str, tokens: int = t) -> list[Leaf]:
        return [Leaf(n, d, tokens) for n in names]

    def w(*names: str) -> list[Leaf]:
        return [Leaf(n, d, d, weight=True) for n in names]

    chain = [("n0", "add", ("x", "y")), ("n1", "mul", ("n0", "y")), ("n2", "add", ("n1", "y"))]
    fan = [*chain[:2], ("n2", "add", ("n1", "n0"))]
    p1, p2 = ("p1", "mul_mat", ("w1", "x")), ("p2", "mul_mat", ("w2", "p1"))
    q1, q2 = ("q1", "mul_mat", ("w3", "y")), ("q2", "mul_mat", ("w4", "q1"))
    e1, e2 = ("e1", "mul_mat", ("w_e1", "x")), ("e2", "mul_mat", ("w_e2", "x"))
    router_a = [e1, e2, ("g", "mul", ("e1", "r")), ("out", "add", ("g", "e2"))]
    router_b = [e1, e2, ("g", "mul", ("e2", "r")), ("out", "add", ("g", "e1"))]
    other = [("e1", "mul_mat", ("w_e3", "x")), ("e2", "mul_mat", ("w_e4", "x")),
             *router_a[2:]]
    k1, k2 = ("e1", "mul", ("x", "u1")), ("e2", "mul", ("x", "u2"))
    h1, h2 = ("g1", "mul", ("e1", "r1")), ("g2", "mul", ("e2", "r2"))
    top2 = act("x", "u1", "u2", "r1", "r2")
    sum2 = ("out", "add", ("g1", "g2"))
    mm, mm_swapped = (("p", "mul_mat", ("w1", "x")), ("q", "mul_mat", ("w2", "x"))), \
        (("q", "mul_mat", ("w2", "x")), ("p", "mul_mat", ("w1", "x")))
    block = [("h", "rms_norm", ("x",)), ("m", "mul_mat", ("w1", "h")), ("s", "silu", ("m",)),
             ("o", "mul_mat", ("w2", "s")), ("out", "add", ("o", "x"))]
    pairs = [
        _pair("chain-to-fan",
              "an in-place elementwise chain becomes a fan (the last node also reads the "
              "first): the second node is written over the first while it is still to be "
              "read",
              _g(act("x", "y"), chain, ["n2"]), _g(act("x", "y"), fan, ["n2"]), True),
        _pair("interleaved-matmuls",
              "two matmul chains p1 p2 q1 q2 run interleaved p1 q1 p2 q2: p2's matmul is "
              "placed over its own operand p1",
              _g([*act("x", "y"), *w("w1", "w2", "w3", "w4")], [p1, p2, q1, q2], ["p2", "q2"]),
              _g([*act("x", "y"), *w("w1", "w2", "w3", "w4")], [p1, q1, p2, q2], ["p2", "q2"]),
              True),
        _pair("router-other-expert",
              "a two-expert router gates the other expert: the gated product is written "
              "over the expert output still to be read",
              _g([*act("x", "r"), *w("w_e1", "w_e2")], router_a, ["out"]),
              _g([*act("x", "r"), *w("w_e1", "w_e2")], router_b, ["out"]), True),
        _pair("top2-gated-early",
              "top-2 elementwise experts, each gated right after it is computed (every "
              "tensor the same size): a gate is written over the input, the next over the "
              "first gate",
              _g(top2, [k1, k2, h1, h2, sum2], ["out"]),
              _g(top2, [k1, h1, k2, h2, sum2], ["out"]), True),
        _pair("other-experts",
              "the router picks other experts with the same structure: the stale plan is "
              "the plan B would get",
              _g([*act("x", "r"), *w("w_e1", "w_e2")], router_a, ["out"]),
              _g([*act("x", "r"), *w("w_e3", "w_e4")], other, ["out"]), False),
        _pair("swapped-matmuls",
              "two independent matmuls of one input run in the other order: each lands "
              "where the other was, which nothing still reads (correct by accident)",
              _g([*act("x"), *w("w1", "w2")], [*mm, ("out", "add", ("p", "q"))], ["out"]),
              _g([*act("x"), *w("w1", "w2")], [*mm_swapped, ("out", "add", ("p", "q"))],
                 ["out"]), False),
        _pair("fewer-tokens",
              "the same block on fewer tokens: llama.cpp's intended reuse of a worst-case "
              "plan",
              _g([*act("x"), *w("w1", "w2")], block, ["out"]),
              _g([*act("x", tokens=t // 2), *w("w1", "w2")], block, ["out"]), False),
    ]
    return {p.name: p for p in pairs}


PAIRS: dict[str, PairSpec] = _named_pairs()
"""The seven pairs of the issue text, by name: four whose B the stale plan corrupts, then
three it leaves correct."""


# ---------------------------------------------------------------------------- a generator
_GEN_OPS = ("add", "mul", "mul_mat", "rms_norm", "scale", "silu")


def random_pair(seed: int, d: int = 8, t: int = 4) -> PairSpec:
    """A drawn pair (deterministic in ``seed``): A a random DAG of 4 to 7 nodes of
    :data:`_GEN_OPS` over 2 or 3 inputs ``d`` x ``t`` and 1 or 2 weights ``d`` x ``d``, each
    node reading the latest node more often than not; B the same leaves and node names with
    the nodes in another topological order and/or one or two operands rewired to another
    earlier tensor, drawn until B :func:`fits` A's plan and differs from A. The outputs of
    each are its nodes no other node reads."""
    rng = np.random.default_rng(seed)
    inputs = [Leaf(f"x{i}", d, t) for i in range(int(rng.integers(2, 4)))]
    weights = [Leaf(f"w{i}", d, d, weight=True) for i in range(int(rng.integers(1, 3)))]
    leaves = (*inputs, *weights)
    nodes: list[Node] = []
    for i in range(int(rng.integers(4, 8))):
        op = str(rng.choice(_GEN_OPS))
        acts = [x.name for x in inputs] + [n.name for n in nodes]

        def pick(acts: list[str] = acts) -> str:
            if nodes and rng.random() < 0.6:
                return nodes[-1].name
            return acts[int(rng.integers(len(acts)))]

        spec = OPS[op]
        args = (str(rng.choice([w.name for w in weights])), pick()) if spec.weight_first \
            else tuple(pick() for _ in range(spec.arity))
        nodes.append(Node(f"n{i}", op, args))
    a = _with_sinks(leaves, nodes)
    for _ in range(200):
        b = _mutate(a, rng)
        if b.nodes != a.nodes and fits(a, b):
            return PairSpec(f"random-{seed}", f"drawn pair {seed}: {_summary(a)} -> "
                            f"{_summary(b)}", a, b, None, restructured(a, b))
    raise GraphError(f"random_pair({seed}): no B that fits A's plan in 200 draws")


def _with_sinks(leaves: tuple[Leaf, ...], nodes: Iterable[Node]) -> GraphSpec:
    nodes = tuple(nodes)
    read = {a for n in nodes for a in n.args}
    return GraphSpec(leaves, nodes, tuple(n.name for n in nodes if n.name not in read))


def _mutate(a: GraphSpec, rng: np.random.Generator) -> GraphSpec:
    nodes = list(a.nodes)
    if rng.random() < 0.6:  # another topological order
        done: set[str] = {leaf.name for leaf in a.leaves}
        left, order = list(nodes), []
        while left:
            ready = [n for n in left if all(x in done for x in n.args)]
            n = ready[int(rng.integers(len(ready)))]
            order.append(n)
            done.add(n.name)
            left.remove(n)
        nodes = order
    for _ in range(int(rng.integers(0 if nodes != list(a.nodes) else 1, 3))):
        i = int(rng.integers(len(nodes)))
        n = nodes[i]
        slots = [j for j, x in enumerate(n.args) if not a.is_weight(x)]
        earlier = [leaf.name for leaf in a.leaves if not leaf.weight] \
            + [m.name for m in nodes[:i]]
        j = slots[int(rng.integers(len(slots)))]
        choices = [x for x in earlier if x != n.args[j]]
        if choices:
            args = list(n.args)
            args[j] = choices[int(rng.integers(len(choices)))]
            nodes[i] = replace(n, args=tuple(args))
    return _with_sinks(a.leaves, nodes)


def _summary(g: GraphSpec) -> str:
    return "; ".join(f"{n.name}={n.op}({','.join(n.args)})" for n in g.nodes)


# ---------------------------------------------------------------------------- ggml
def leaf_values(spec: GraphSpec, seed: int) -> dict[str, np.ndarray]:
    """The leaves' values (f32): standard normal inputs, weights scaled by 1/sqrt(cols);
    each drawn from ``seed`` and the leaf's name, so the same leaf gets the same values in
    every graph."""
    out = {}
    for leaf in spec.leaves:
        rng = np.random.default_rng([seed, zlib.crc32(leaf.name.encode())])
        a = rng.standard_normal((leaf.rows, leaf.cols))
        out[leaf.name] = (a / np.sqrt(leaf.cols) if leaf.weight else a).astype(np.float32)
    return out


@dataclass
class _Built:
    """One graph made in its own ggml context, its weights in their own buffer."""

    spec: GraphSpec
    graph: int
    tensors: dict[str, int]
    values: dict[str, np.ndarray]

    def set_inputs(self, b: Any) -> None:
        """Copy the inputs' values in (after the graph is allocated)."""
        for leaf in self.spec.leaves:
            if not leaf.weight:
                a = self.values[leaf.name]
                b.ggml_backend_tensor_set(self.tensors[leaf.name], a.ctypes.data, 0, a.nbytes)

    def read_outputs(self, b: Any) -> dict[str, np.ndarray]:
        """Copy the outputs out with ``ggml_backend_tensor_get``, as a host does."""
        shapes = self.spec.shapes()
        out = {}
        for name in self.spec.outputs:
            a = np.empty(shapes[name], np.float32)
            b.ggml_backend_tensor_get(self.tensors[name], a.ctypes.data, 0, a.nbytes)
            out[name] = a
        return out


def _build(stack: ExitStack, b: Any, backend: int, spec: GraphSpec, seed: int) -> _Built:
    """Make ``spec`` with ggml's API: the weights in a context of their own allocated in a
    WEIGHTS buffer (values set), the inputs and nodes in a no-alloc context, the graph with
    the leaves expanded first, then the nodes, in the spec's order. Everything is freed when
    ``stack`` closes."""
    values = leaf_values(spec, seed)
    over = int(b.ggml_tensor_overhead())
    weights = [leaf for leaf in spec.leaves if leaf.weight]
    tensors: dict[str, int] = {}

    def context(n: int, graph: bool) -> int:
        size = n * over + (int(b.ggml_graph_overhead()) if graph else 0) + 1024
        ctx = int(b.ggml_init(InitParams(size, None, True)) or 0)
        if not ctx:
            raise GraphError("ggml_init failed")
        stack.callback(b.ggml_free, ctx)
        return ctx

    def leaf(ctx: int, lf: Leaf) -> int:
        t = int(b.ggml_new_tensor_2d(ctx, TYPE_F32, lf.cols, lf.rows))
        b.ggml_set_name(t, lf.name.encode())
        return t

    if weights:
        wctx = context(len(weights), graph=False)
        for lf in weights:
            tensors[lf.name] = leaf(wctx, lf)
        buf = int(b.ggml_backend_alloc_ctx_tensors(wctx, backend) or 0)
        if not buf:
            raise GraphError("ggml_backend_alloc_ctx_tensors failed for the weights")
        stack.callback(b.ggml_backend_buffer_free, buf)
        b.ggml_backend_buffer_set_usage(buf, USAGE_WEIGHTS)
        for lf in weights:
            a = values[lf.name]
            b.ggml_backend_tensor_set(tensors[lf.name], a.ctypes.data, 0, a.nbytes)
    ctx = context(len(spec.leaves) + len(spec.nodes), graph=True)
    for lf in spec.leaves:
        if not lf.weight:
            tensors[lf.name] = leaf(ctx, lf)
            b.ggml_set_input(tensors[lf.name])
    for n in spec.nodes:
        t = OPS[n.op].build(b, ctx, [tensors[a] for a in n.args])
        b.ggml_set_name(t, n.name.encode())
        tensors[n.name] = t
    for name in spec.outputs:
        b.ggml_set_output(tensors[name])
    graph = int(b.ggml_new_graph(ctx))
    for lf in spec.leaves:
        b.ggml_build_forward_expand(graph, tensors[lf.name])
    for n in spec.nodes:
        b.ggml_build_forward_expand(graph, tensors[n.name])
    if int(b.ggml_graph_n_nodes(graph)) != len(spec.nodes):
        raise GraphError(f"ggml made {b.ggml_graph_n_nodes(graph)} nodes of "
                         f"{len(spec.nodes)}")
    return _Built(spec, graph, tensors, values)


def _error(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> tuple[float, float]:
    """(max absolute difference, scale) over the outputs; scale is the largest |want|, at
    least 1."""
    err = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    scale = max([1.0, *(float(np.max(np.abs(v))) for v in want.values())])
    return err, scale


# ---------------------------------------------------------------------------- a run
@dataclass
class PairRun:
    """One pair run one way. Judged without graphc: ``corrupted`` (B's outputs further than
    :data:`TOL` from NumPy) and ``max_error`` (the largest absolute difference from NumPy);
    ``plan_reused``: every node of B lies where A's node at its position lay (the stale plan
    was used). By graphc: ``capture`` and ``verdict`` (static) of B, and of A
    (``verdict_a``) and of B on a fresh gallocr (``verdict_fresh``); through the scheduler
    the dynamic check's ``findings`` on B (and ``findings_a`` on A); None via a bare
    gallocr."""

    name: str
    via: Via
    corrupted: bool
    max_error: float
    capture: Capture
    verdict: Verdict
    findings: list[Finding] | None
    plan_reused: bool
    verdict_a: Verdict
    verdict_fresh: Verdict
    findings_a: list[Finding] | None = None
    kinds: list[str] = field(default_factory=list)

    @property
    def hazards(self) -> list[str]:
        """Kinds of the static findings on B that are real hazards (not
        :data:`~graphc.passes.aliasing.CONSERVATIVE_KINDS`, so not ``stale-plan``)."""
        return [k for k in self.kinds if k not in CONSERVATIVE_KINDS]

    @property
    def stale_flagged(self) -> bool:
        """Whether graphc reported B's placement as planned for another graph."""
        return "stale-plan" in self.kinds

    def static_text(self) -> str:
        """graphc's static verdict on B in a few words."""
        if self.verdict.safe:
            return "proven safe"
        shown = list(dict.fromkeys(self.kinds)) or ["dynamic"]
        if not self.hazards and self.stale_flagged and not self.capture.findings:
            return "stale plan, correct this run (stale-plan)"
        return "UNSAFE (" + ", ".join(shown) + ")"

    def dynamic_text(self) -> str:
        """The dynamic check's verdict on B in a few words (``-``: not run)."""
        if self.findings is None:
            return "-"
        return f"{len(self.findings)} finding(s)" if self.findings else "nothing seen"

    def to_dict(self) -> dict[str, object]:
        """The row as JSON-ready data."""
        return {
            "pair": self.name, "via": self.via, "corrupted": self.corrupted,
            "max_error": self.max_error, "plan_reused": self.plan_reused,
            "static": self.static_text(), "static_kinds": self.kinds,
            "static_lines": self.verdict.violations,
            "dynamic": self.dynamic_text(),
            "dynamic_findings": None if self.findings is None
            else [f.detail for f in self.findings],
            "a_safe": self.verdict_a.safe, "fresh_safe": self.verdict_fresh.safe,
        }


def run_pair(name: str | PairSpec, via: Via = "gallocr", seed: int = 0) -> PairRun:
    """Run pair ``name`` (a key of :data:`PAIRS`, or a :class:`PairSpec`) on ggml's CPU
    backend, one thread: A allocated and computed, then B on the same allocator (``via``
    ``"gallocr"``: one ``ggml_gallocr``; ``"sched"``: ``ggml_backend_sched``, reserve A,
    compute, reset, alloc B, compute, a :class:`Recorder` as its eval callback), then B on
    a fresh gallocr. Leaf values come from ``seed``. GraphError for an unknown ``via``,
    when ggml fails, or when the fresh B and NumPy disagree (the harness, not the plan, is
    wrong)."""
    spec = PAIRS[name] if isinstance(name, str) else name
    if via not in ("gallocr", "sched"):
        raise GraphError(f"via must be 'gallocr' or 'sched', not {via!r}")
    with _Session(spec, via) as s:
        ga = s.build(spec.a, seed)
        gb = s.build(spec.b, seed)
        if via == "gallocr":
            (_, cap_a, findings_a), (got_b, cap_b, findings_b) = s.on_gallocr(ga, gb)
        else:
            (_, cap_a, findings_a), (got_b, cap_b, findings_b) = s.on_sched(ga, gb)
        gf = s.build(spec.b, seed)
        ((got_f, cap_f, _),) = s.on_gallocr(gf, label="B on a fresh gallocr")
    want = spec.b.evaluate(gb.values)
    err_f, scale = _error(got_f, want)
    if err_f > TOL * scale:
        raise GraphError(f"{spec.name}: B on a fresh gallocr differs from NumPy by {err_f:.3g}"
                         ": the harness is wrong")
    err, _ = _error(got_b, want)
    err_fresh, _ = _error(got_b, {k: v.astype(np.float64) for k, v in got_f.items()})
    verdict = judge(cap_b, "B", time_limit=JUDGE_SECONDS)
    return PairRun(
        name=spec.name, via=via, corrupted=max(err, err_fresh) > TOL * scale, max_error=err,
        capture=cap_b, verdict=verdict, findings=findings_b,
        plan_reused=_same_offsets(cap_a, cap_b),
        verdict_a=judge(cap_a, "A", time_limit=JUDGE_SECONDS),
        verdict_fresh=judge(cap_f, "B fresh", time_limit=JUDGE_SECONDS),
        findings_a=findings_a,
        kinds=[v.kind for v in check_import(verdict.imported)])


_Ran = tuple[dict[str, np.ndarray], Capture, list[Finding] | None]
"""One graph run: the outputs the host read, the capture, the dynamic findings (None:
the dynamic check did not run)."""


class _Session:
    """The CPU backend (one thread) and every ggml object made for one :func:`run_pair`,
    all freed when the ``with`` block ends, also on error."""

    def __init__(self, spec: PairSpec, via: Via) -> None:
        self.spec, self.via = spec, via
        self.b = lib().base
        self.stack = ExitStack()
        self.keep: list[Recorder] = []

    def __enter__(self) -> _Session:
        try:
            cpu = lib().cpu
            self.backend = int(cpu.ggml_backend_cpu_init() or 0)
            if not self.backend:
                raise GraphError("ggml_backend_cpu_init failed")
            self.stack.callback(self.b.ggml_backend_free, self.backend)
            cpu.ggml_backend_cpu_set_n_threads(self.backend, 1)
            self.buft = self.b.ggml_backend_get_default_buffer_type(self.backend)
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def build(self, spec: GraphSpec, seed: int) -> _Built:
        """``spec`` made in this session (see :func:`_build`)."""
        return _build(self.stack, self.b, self.backend, spec, seed)

    def gallocr(self) -> int:
        """A new ``ggml_gallocr`` for the CPU buffer type."""
        g = int(self.b.ggml_gallocr_new(self.buft) or 0)
        if not g:
            raise GraphError("ggml_gallocr_new failed")
        self.stack.callback(self.b.ggml_gallocr_free, g)
        return g

    def watched(self, built: _Built, compute: Callable[[int], int], label: str,
                **alloc: int) -> tuple[dict[str, np.ndarray], Capture]:
        """Compute ``built`` (``compute`` of its graph, 0 on success) and read its
        outputs inside :func:`watch_cgraph`, then capture it (with the allocator, where
        its record of the last plan)."""
        with watch_cgraph(built.graph) as w:
            if compute(built.graph) != 0:
                raise GraphError(f"{self.spec.name}: computing {label} failed")
            got = built.read_outputs(self.b)
        cap = capture_cgraph(built.graph, f"{self.spec.name} {label} via {self.via}",
                             watch=w, gallocr=alloc.get("gallocr"), sched=alloc.get("sched"))
        return got, cap

    def on_gallocr(self, *graphs: _Built, label: str = "") -> list[_Ran]:
        """Each of ``graphs`` in turn allocated on one new gallocr, computed, read."""
        galloc = self.gallocr()
        out: list[_Ran] = []
        for k, built in enumerate(graphs):
            what = label or "AB"[k]
            if not self.b.ggml_gallocr_alloc_graph(galloc, built.graph):
                raise GraphError(f"{self.spec.name}: ggml_gallocr_alloc_graph of {what} failed")
            built.set_inputs(self.b)
            got, cap = self.watched(built, lambda g: int(
                self.b.ggml_backend_graph_compute(self.backend, g)), what, gallocr=galloc)
            out.append((got, cap, None))
        return out

    def on_sched(self, ga: _Built, gb: _Built) -> list[_Ran]:
        """llama.cpp's path: a scheduler with a :class:`Recorder` as its eval callback;
        reserve A, alloc and compute it, reset, alloc and compute B."""
        b = self.b
        rec = Recorder()
        backends = (_P * 1)(self.backend)
        sched = int(b.ggml_backend_sched_new(backends, None, 1, 256, False, False) or 0)
        if not sched:
            raise GraphError("ggml_backend_sched_new failed")
        self.stack.callback(b.ggml_backend_sched_free, sched)
        self.keep.append(rec)  # its C callback must outlive the scheduler
        b.ggml_backend_sched_set_eval_callback(sched, ctypes.cast(rec.callback, _P), None)
        if not b.ggml_backend_sched_reserve(sched, ga.graph):
            raise GraphError(f"{self.spec.name}: ggml_backend_sched_reserve failed")
        out: list[_Ran] = []
        for built, label in ((ga, "A"), (gb, "B")):
            if built is gb:
                b.ggml_backend_sched_reset(sched)
            if not b.ggml_backend_sched_alloc_graph(sched, built.graph):
                raise GraphError(f"{self.spec.name}: ggml_backend_sched_alloc_graph of "
                                 f"{label} failed")
            built.set_inputs(b)
            with rec:
                rec.reset()
                got, cap = self.watched(built, lambda g: int(
                    b.ggml_backend_sched_graph_compute(sched, g)), label, sched=sched)
                (dyn,) = rec.finish(label)
            out.append((got, cap, list(dyn.findings)))
        return out


def _same_offsets(a: Capture, b: Capture) -> bool:
    """Whether each node of ``b`` lies at the offset of ``a``'s node at its position."""
    def offsets(c: Capture) -> list[int | None]:
        return [c.tensors[k].offset for k in c.order]
    return offsets(a) == offsets(b)


# ---------------------------------------------------------------------------- summaries
@dataclass
class RandomSummary:
    """Drawn pairs judged one way: how many B the stale plan corrupted, ``misses`` (a
    corrupted B with no hazard found: graphc wrong), ``false_alarms`` (a hazard found on a
    correct B), ``latent`` (a correct B graphc reports only as a stale plan)."""

    via: Via
    seeds: list[int]
    corrupted: list[int] = field(default_factory=list)
    misses: list[int] = field(default_factory=list)
    false_alarms: list[int] = field(default_factory=list)
    latent: list[int] = field(default_factory=list)
    dynamic_seen: list[int] = field(default_factory=list)
    runs: list[PairRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The figures as JSON-ready data."""
        return {"via": self.via, "seeds": len(self.seeds), "corrupted": len(self.corrupted),
                "misses": self.misses, "false_alarms": self.false_alarms,
                "latent_stale_plans": self.latent,
                "dynamic_caught": None if self.via == "gallocr" else len(self.dynamic_seen)}


def judge_random(seeds: Iterable[int], via: Via = "gallocr") -> RandomSummary:
    """:func:`run_pair` on :func:`random_pair` of each seed, tallied."""
    s = RandomSummary(via, list(seeds))
    for seed in s.seeds:
        r = run_pair(random_pair(seed), via, seed)
        s.runs.append(r)
        if r.corrupted:
            s.corrupted.append(seed)
            if not r.hazards:
                s.misses.append(seed)
            if r.findings:
                s.dynamic_seen.append(seed)
        elif r.hazards:
            s.false_alarms.append(seed)
        elif r.stale_flagged:
            s.latent.append(seed)
    return s
