"""Hypothesis strategies that generate valid graphs, reads, data and memory plans.

``graphs()`` builds graphs step by step from a pool of existing tensors, so every
generated graph is valid by construction and shrinks toward few, small nodes (print a
failing one with ``graphc.to_text``: it pastes straight into a golden test). Each step
draws a *family* (see :data:`FAMILY_OPS`); with ``states=True`` some steps also draw a
*state pattern* (KV-cache writes in place or not, values assigned early, swaps,
self-derived updates, states read by outputs, views of states).

Values stay finite under :func:`graphc.testing.data.random_feeds` (floats in [-2, 2),
states carried over any number of runs): the generator tracks a bound on every tensor's
magnitude (and a positive lower bound where one is known) and only feeds ``exp`` small
values, ``log`` / ``sqrt`` / ``rsqrt`` positive ones and ``div`` denominators bounded
away from zero; a state is only ever assigned values below :data:`STATE_MAG`.

``reads_for(g)`` draws what a caller reads (outputs, row subsets, and optionally taps,
views of reassigned states among them, which the caller reads after the state updates);
``inputs_for`` / ``params_for`` / ``states_for`` draw leaf values (index inputs in range,
see :func:`graphc.testing.data.index_bounds`); ``plans(g)`` draws a plan from any planner
strategy and order (to edit one, see :func:`graphc.testing.mutations.mutate_plan`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.ops import OP_TABLE
from graphc.passes.memory import STRATEGIES, plan_memory
from graphc.passes.schedule import SCHEDULES, schedule
from graphc.tensor import Tensor
from graphc.testing.data import index_bounds, random_array

DEFAULT_FAMILIES = ("unary", "binary", "scale", "rowwise", "matmul", "reduce", "view",
                    "concat", "get_rows", "set_rows")
"""The families drawn by default: the exp/log/div-free set earlier tests were written for."""

ALL_FAMILIES = (*DEFAULT_FAMILIES, "transcendental", "div", "cast", "argmax", "compare",
                "const", "copy", "rope", "attention")
"""Every family ``graphs()`` draws graphs that every backend runs from (one ``_Builder``
method each)."""

PLAN_ONLY_FAMILIES = ("opaque",)
"""Families whose ops no backend computes (``opaque``: ops imported from another system):
their graphs can be planned and checked, not run. Every non-leaf op of the op table names
one family of :data:`ALL_FAMILIES` or of these as its ``OpDef.family``."""


def family_ops(family: str) -> tuple[str, ...]:
    """The ops whose ``OpDef.family`` is ``family``, in op-table order (the order a family
    draws them in). Read from the op table on every call, so a newly registered op is drawn
    by its family without other edits."""
    return tuple(n for n, o in OP_TABLE.items() if o.family == family)


class _FamilyOps(Mapping[str, frozenset[str]]):
    """Family name -> the ops whose ``OpDef`` names that family, read live from the op
    table. A family's builder may add helper ops of other families too (``binary`` slices
    a broadcast row, ``transcendental`` and ``div`` build positive operands with exp,
    sigmoid, add and full, ``const`` combines with a binary op, ``rope`` may reshape)."""

    def __getitem__(self, family: str) -> frozenset[str]:
        if family not in ALL_FAMILIES and family not in PLAN_ONLY_FAMILIES:
            raise KeyError(family)
        return frozenset(family_ops(family))

    def __iter__(self) -> Iterator[str]:
        return iter((*ALL_FAMILIES, *PLAN_ONLY_FAMILIES))

    def __len__(self) -> int:
        return len(ALL_FAMILIES) + len(PLAN_ONLY_FAMILIES)


FAMILY_OPS: Mapping[str, frozenset[str]] = _FamilyOps()
"""Family name -> the ops drawn by that family (those whose ``OpDef.family`` names it)."""

STATE_PATTERNS = ("kv-write", "early", "swap", "derived", "view")
"""What a state step does with ``states=True`` (see :func:`graphs`)."""

STATE_OPS = frozenset({"set_rows", "exp", "add", "neg", "tanh", "scale", "copy", "slice",
                       "concat", "attention", "sum"})
"""The ops the state patterns may add."""

LEAF_MAG = 2.0
"""Inputs and params are drawn from [-2, 2) (see :func:`graphc.testing.data.random_array`)."""
STATE_MAG = 16.0
"""Every state stays below this magnitude: only values bounded by it are assigned."""
TAME = 1e4
"""Only tensors bounded by this magnitude are operands of further ops."""
EXP_MAX = 8.0
"""exp is only applied to values bounded by this."""
POS_MIN = 1e-4
"""log, sqrt and rsqrt are only applied to values at least this large."""
DIV_MIN = 0.1
"""Denominators are at least this large."""


def _bound(t: Tensor, mag: Mapping[Tensor, float], low: Mapping[Tensor, float]
           ) -> tuple[float, float | None]:
    """(bound on |t|, positive lower bound on t or None) from the bounds of its operands."""
    op, a = t.op, t.attrs
    if op in ("input", "param"):
        return LEAF_MAG, None
    if op == "state":
        return STATE_MAG, None
    if op == "full":
        v = float(a["value"])
        return abs(v), v if v > 0 else None
    if op == "const":
        vals = [float(v) for v in a["values"]] or [0.0]
        return max(abs(v) for v in vals), min(vals) if min(vals) > 0 else None
    ms = [mag.get(i, math.inf) for i in t.inputs]
    ls = [low.get(i) for i in t.inputs]
    lo0 = ls[0] if ls else None
    known_low = [v for v in ls if v is not None]
    every_low = known_low if len(known_low) == len(ls) else None
    if op in ("copy", "cast", "reshape", "transpose", "slice", "get_rows", "max", "mean",
              "relu"):
        return ms[0], lo0
    if op in ("neg", "gelu", "silu"):
        return ms[0], None
    if op in ("set_rows", "concat"):
        kept = [m for i, m in zip(t.inputs, ms, strict=True) if i.dtype != "i32"]
        kept_low = [v for i, v in zip(t.inputs, ls, strict=True) if i.dtype != "i32"]
        lows = [v for v in kept_low if v is not None]
        return max(kept), min(lows) if lows and len(lows) == len(kept_low) else None
    if op == "maximum":
        return max(ms), max(known_low) if known_low else None
    if op == "add":
        return ms[0] + ms[1], sum(every_low) if every_low else None
    if op == "sub":
        return ms[0] + ms[1], None
    if op == "mul":
        return ms[0] * ms[1], every_low[0] * every_low[1] if every_low else None
    if op == "div":
        if ls[1] is None:
            return math.inf, None
        return ms[0] / ls[1], lo0 / ms[1] if lo0 is not None and ms[1] > 0 else None
    if op == "exp":
        return math.exp(min(ms[0], 700.0)), math.exp(-min(ms[0], 700.0))
    if op == "log":
        if lo0 is None:
            return math.inf, None
        return max(abs(math.log(lo0)), abs(math.log(max(ms[0], lo0)))), None
    if op == "sqrt":
        return math.sqrt(ms[0]), math.sqrt(lo0) if lo0 is not None else None
    if op == "rsqrt":
        if lo0 is None:
            return math.inf, None
        return 1.0 / math.sqrt(lo0), 1.0 / math.sqrt(ms[0]) if ms[0] > 0 else None
    if op == "tanh":
        return min(1.0, ms[0]), None
    if op == "sigmoid":
        return 1.0, 1.0 / (1.0 + math.exp(min(ms[0], 700.0)))
    if op == "scale":
        s = float(a["s"])
        return abs(s) * ms[0], s * lo0 if lo0 is not None and s > 0 else None
    if op == "matmul":
        return ms[0] * ms[1] * t.inputs[0].shape[-1], None
    if op in ("rms_norm", "layer_norm"):
        return math.sqrt(max(t.shape[-1], 1)) + 1.0, None
    if op == "softmax":
        return 1.0, None
    if op == "rope":
        return 1.5 * ms[0], None
    if op == "attention":
        return ms[2], None
    if op == "sum":
        n = t.inputs[0].shape[a["axis"]]
        return ms[0] * n, lo0 * n if lo0 is not None and n else None
    if op == "argmax":
        return float(t.inputs[0].shape[a["axis"]]), None
    if op == "equal":
        return 1.0, None
    return math.inf, None


def aim_families(ops: Iterable[str]) -> dict[str, str]:
    """op -> the family that builds it, for each op ``graphs(ops=...)`` may aim at: every
    non-leaf op of the op table whose family every backend runs (ValueError otherwise,
    naming the ops that can be aimed at)."""
    out: dict[str, str] = {}
    for op in ops:
        d = OP_TABLE.get(op)
        if d is None or d.family not in ALL_FAMILIES:
            can = sorted(n for n, o in OP_TABLE.items() if o.family in ALL_FAMILIES)
            raise ValueError(f"cannot aim at op {op!r}; ops that can be aimed at: "
                             f"{', '.join(can)}")
        out[op] = d.family
    return out


def _float_pool(pool: list[Tensor], min_rank: int = 1) -> list[Tensor]:
    return [t for t in pool if t.dtype == "f32" and t.ndim >= min_rank]


def _reshape_targets(shape: tuple[int, ...], max_rank: int) -> list[tuple[int, ...]]:
    """Shapes with as many elements as ``shape``: flattened first (shrinks there), then
    adjacent axes merged, an axis split in two, a unit axis inserted, and a leading 1."""
    n = math.prod(shape)
    out: list[tuple[int, ...]] = [(n,)]
    nd = len(shape)
    for i in range(nd - 1):
        out.append((*shape[:i], shape[i] * shape[i + 1], *shape[i + 2:]))
    if nd < max_rank:
        for i, d in enumerate(shape):
            out.extend((*shape[:i], f, d // f, *shape[i + 1:]) for f in range(2, d) if d % f == 0)
        out.extend((*shape[:i], 1, *shape[i:]) for i in range(nd + 1))
    out.append((1, n))
    seen: list[tuple[int, ...]] = []
    for s in out:
        if s not in seen and len(s) <= max(max_rank, 2):
            seen.append(s)
    return seen


class _Builder:
    """One graph under construction: the pool of tensors later steps read, their bounds,
    the index inputs and their uses, and one method per family and state pattern."""

    def __init__(self, draw: st.DrawFn, max_rank: int, max_dim: int, inplace: bool) -> None:
        self.draw = draw
        self.g = Graph("gen")
        self.max_rank = max_rank
        self.max_dim = max_dim
        self.inplace = inplace
        self.pool: list[Tensor] = []
        self.made: list[Tensor] = []
        self.mag: dict[Tensor, float] = {}
        self.low: dict[Tensor, float] = {}
        self.seen = 0
        self.counts: dict[str, int] = {}
        # index input -> (tightest bound of its uses or None, used by a set_rows)
        self.index_uses: dict[Tensor, tuple[int | None, bool]] = {}
        self.states: list[Tensor] = []
        # aimed generation (see graphs(ops=...)): the ops aimed at, the ones a focus step
        # may draw now, and the tensor a chain of focus steps continues from
        self.aimed = False
        self.only: frozenset[str] = frozenset()
        self.chain_to: Tensor | None = None

    # ------------------------------------------------------------------ bookkeeping
    def sync(self) -> None:
        """Record bounds of the nodes added since the last call; pool them."""
        nodes = self.g.nodes
        for t in nodes[self.seen:]:
            m, lo = _bound(t, self.mag, self.low)
            self.mag[t] = m
            if lo is not None and lo > 0:
                self.low[t] = lo
            if t.dtype != "i32":
                self.pool.append(t)
            if not t.is_leaf:
                self.made.append(t)
        self.seen = len(nodes)

    def leaf(self, kind: str, shape: tuple[int, ...], dtype: str = "f32") -> Tensor:
        """A new input (``x*``, ``i*``), param (``w*``) or state (``s*``)."""
        prefix = {"input": "i" if dtype == "i32" else "x", "param": "w", "state": "s"}[kind]
        k = self.counts.get(prefix, 0)
        self.counts[prefix] = k + 1
        make: Callable[[str, tuple[int, ...], str], Tensor] = getattr(self.g, kind)
        t = make(f"{prefix}{k}", shape, dtype)
        self.sync()
        return t

    def pick(self, cands: Sequence[Tensor]) -> Tensor:
        if self.chain_to is not None and self.chain_to in cands and self.draw(st.booleans()):
            return self.chain_to  # a chain of the op aimed at: its operand is the last one
        return self.draw(st.sampled_from(list(cands)))

    def op_of(self, family: str) -> str:
        """An op of ``family``: one of the ops aimed at during a focus step, else any."""
        ops = family_ops(family)
        aimed = [o for o in ops if o in self.only]
        return self.draw(st.sampled_from(aimed or list(ops)))

    def edgy(self) -> bool:
        """In aimed generation, whether to take the case rewrites get wrong (a repeated
        operand, a square matrix, a negative axis, an unguarded domain); never otherwise."""
        return self.aimed and self.draw(st.booleans())

    def flag(self) -> bool:
        """A drawn ``inplace`` flag when in-place nodes were asked for, else False."""
        return self.inplace and self.draw(st.booleans())

    def dim(self, hi: int | None = None) -> int:
        return self.draw(st.integers(1, max(1, min(self.max_dim, hi or self.max_dim))))

    def floats(self, min_rank: int = 0, limit: float = TAME) -> list[Tensor]:
        """f32 tensors of rank >= ``min_rank`` bounded by ``limit``."""
        return [t for t in _float_pool(self.pool, min_rank) if self.mag[t] <= limit]

    def fresh(self) -> bool:
        """Whether to make a new leaf rather than reuse the pool (shrinks to reuse)."""
        return self.draw(st.booleans())

    def index(self, n: int, bound: int | None, scatter: bool) -> Tensor:
        """An i32 index input of length ``n`` for a use whose values must stay below
        ``bound`` (None: any small int). Reuses one when that keeps every set_rows index
        distinct (its length within the tightest bound of its uses)."""

        def merged(i: Tensor) -> tuple[int | None, bool]:
            b, sc = self.index_uses[i]
            nb = b if bound is None else bound if b is None else min(b, bound)
            return nb, sc or scatter

        ok = [i for i in self.index_uses if i.shape == (n,)
              and (not merged(i)[1] or n <= (merged(i)[0] or n))]
        if ok and not self.fresh():
            i = self.pick(ok)
        else:
            i = self.leaf("input", (n,), "i32")
            self.index_uses[i] = (None, False)
        self.index_uses[i] = merged(i)
        return i

    # ------------------------------------------------------------------ families
    def unary(self) -> Tensor:
        x = self.pick(self.floats())
        op = self.op_of("unary")
        return self.g.apply(op, (x,), {"inplace": self.flag()})

    def binary(self) -> Tensor:
        a = self.pick(self.floats())
        if self.only & set(family_ops("binary")) and self.edgy():  # an identity-like
            c = self.g.full(a.shape if self.draw(st.booleans()) else (1,) * a.ndim,  # constant
                            self.draw(st.sampled_from([0.0, 1.0, 0.0, 1.0, -1.0, 2.0])))
            self.sync()
            pair = (c, a) if self.draw(st.booleans()) else (a, c)
            return self.g.apply(self.op_of("binary"), pair, {})
        same = self.edgy() or (bool(self.only) and self.edgy())  # x op x: often when aimed
        b = a if same else self.pick([t for t in self.floats() if t.shape == a.shape])
        if self.draw(st.booleans()) and b.ndim >= 2:
            b = self.g.slice(b, 0, 0, 1)  # a broadcast partner: one row
            if self.edgy():
                a, b = b, a  # the broadcast operand first
        flag = b.shape == a.shape and self.flag()
        op = self.op_of("binary")
        return self.g.apply(op, (a, b), {"inplace": flag})

    def scale(self) -> Tensor:
        s = self.draw(st.sampled_from([0.5, 1.0, 2.0, -1.0]))
        return self.g.scale(self.pick(self.floats()), s, inplace=self.flag())

    def rowwise(self) -> Tensor:
        x = self.pick(self.floats(1))
        op = self.op_of("rowwise")
        attrs: dict[str, Any] = {"inplace": self.flag()}
        if op == "softmax":
            attrs["axis"] = self.draw(st.sampled_from([-1, *range(x.ndim - 1)]))
        return self.g.apply(op, (x,), attrs)

    def matmul(self) -> Tensor:
        a = self.pick(self.floats(2))
        k = a.shape[-1]
        if self.edgy():  # a square matrix (from the pool when one fits)
            sq = [t for t in self.floats(2) if t.ndim == 2 and t.shape == (k, k)]
            reuse: bool = self.draw(st.booleans())
            return self.g.matmul(a, self.pick(sq) if sq and reuse else self.leaf("param", (k, k)))
        return self.g.matmul(a, self.leaf("param", (k, self.dim())))

    def reduce(self) -> Tensor:
        x = self.pick(self.floats(1))
        axis = self.draw(st.integers(-x.ndim if self.aimed else 0, x.ndim - 1))
        return self.g.apply(self.op_of("reduce"), (x,),
                            {"axis": axis, "keepdims": self.draw(st.booleans())})

    def argmax(self) -> Tensor:
        x = self.pick(self.floats(1))
        return self.g.argmax(x, self.draw(st.integers(-x.ndim if self.aimed else 0,
                                                      x.ndim - 1)), self.draw(st.booleans()))

    def compare(self) -> Tensor:
        """``equal(a, b)`` of two f32 tensors of one shape; half the time b is
        ``maximum(a, c)``, so both outcomes occur. Cast to f32 half the time, so later
        steps compute with it."""
        a = self.pick(self.floats())
        b = self.pick([t for t in self.floats() if t.shape == a.shape])
        if self.draw(st.booleans()):
            b = self.g.maximum(a, b)
        eq = self.g.apply(self.op_of("compare"), (a, b), {})
        return self.g.cast(eq, "f32") if self.draw(st.booleans()) else eq

    def view_step(self, x: Tensor) -> Tensor:
        """One view of ``x``: a transpose (any permutation of its axes), a reshape or a slice."""
        # as_strided takes half of the slices' share, so transposes keep theirs
        kinds = [k for k in family_ops("view") if k != "as_strided"]
        if self.only & set(family_ops("view")):
            kinds = [k for k in family_ops("view") if k in self.only]
        kind = self.draw(st.sampled_from(kinds))
        if kind == "slice" and "as_strided" in family_ops("view") and (
                not self.only or "as_strided" in self.only) and self.draw(st.booleans()):
            kind = "as_strided"
        if kind == "transpose" and x.ndim >= 2:
            perm = self.draw(st.permutations(list(range(x.ndim))))
            if self.aimed and perm == sorted(perm):  # aimed: never the identity
                perm = [*perm[1:], perm[0]]
            return self.g.transpose(x, perm)
        if kind == "reshape":
            return self.g.reshape(x, self.draw(st.sampled_from(
                _reshape_targets(x.shape, self.max_rank))))
        if kind == "as_strided":
            return self.as_strided(x)
        axis = self.draw(st.integers(0, x.ndim - 1))
        start = self.draw(st.integers(0, x.shape[axis] - 1))
        stop = self.draw(st.integers(start + 1, x.shape[axis]))
        return self.g.slice(x, axis, start, stop)

    def as_strided(self, x: Tensor) -> Tensor:
        """A window onto ``x``'s flattened elements: rank 1 to 3, strides 0 (repeats) to
        a few elements (overlapping, gapped or dense), kept inside ``x``."""
        n = x.size
        rank = self.draw(st.integers(1, 3))
        shape = [self.draw(st.integers(1, 3)) for _ in range(rank)]
        strides = [self.draw(st.integers(0, max(1, n // 2))) for _ in range(rank)]
        reach = sum((d - 1) * s for d, s in zip(shape, strides, strict=True))
        while reach >= n:  # shrink the widest step until the window fits
            k = max(range(rank), key=lambda i: (shape[i] - 1) * strides[i])
            strides[k] //= 2
            reach = sum((d - 1) * s for d, s in zip(shape, strides, strict=True))
        offset = self.draw(st.integers(0, n - 1 - reach))
        return self.g.as_strided(x, shape, strides, offset)

    def opaque(self) -> Tensor:
        """A foreign op (plan-only): one to three operands, a fresh result of any shape,
        or (in place) a result over operand 0's bytes."""
        xs = [self.pick(self.pool) for _ in range(self.draw(st.integers(1, 3)))]
        if self.draw(st.booleans()):
            x = xs[0]
            return self.g.opaque("test.update", xs, x.shape, x.dtype, inplace=self.flag(),
                                 may_write_operand=True)
        shape = tuple(self.dim() for _ in range(self.draw(st.integers(1, 2))))
        return self.g.opaque("test.op", xs, shape, "f32")

    def view(self) -> Tensor:
        """A chain of one to three views (views of views)."""
        x = self.pick(self.floats(1))
        for _ in range(self.draw(st.integers(1, 3))):
            x = self.view_step(x)
            self.sync()
        return x

    def concat(self) -> Tensor:
        x = self.pick(self.floats(1))
        axis = self.draw(st.integers(0, x.ndim - 1))
        partners = [t for t in self.floats(1) if t.ndim == x.ndim and all(
            a == b for j, (a, b) in enumerate(zip(t.shape, x.shape, strict=True)) if j != axis)]
        rest = [self.pick(partners) for _ in range(self.draw(st.integers(1, 2)))]
        return self.g.concat([x, *rest], axis=axis)

    def get_rows(self) -> Tensor:
        x = self.pick(self.floats(1))
        n = self.draw(st.integers(1, 3))
        return self.g.get_rows(x, self.index(n, x.shape[0], scatter=False))

    def set_rows(self) -> Tensor:
        dst = self.pick(self.floats(1))
        n = self.draw(st.integers(1, min(3, dst.shape[0])))
        idx = self.index(n, dst.shape[0], scatter=True)
        want = (n, *dst.shape[1:])
        srcs = [t for t in self.floats(1) if t.shape == want]
        src = self.pick(srcs) if srcs and not self.fresh() else self.leaf("input", want)
        return self.g.set_rows(dst, idx, src, inplace=self.flag())

    def positive(self, like: Tensor, min_low: float) -> Tensor:
        """A tensor of ``like``'s shape bounded below by ``min_low`` > 0: one from the pool,
        or exp / sigmoid of a pool tensor, or sigmoid(x) + full(1.0), or a positive full."""
        cands = [t for t in self.floats() if t.shape == like.shape
                 and self.low.get(t, 0.0) >= min_low]
        if cands and not self.fresh():
            return self.pick(cands)
        x = self.pick([t for t in self.floats() if t.shape == like.shape])
        m = self.mag[x]
        makers = ["sigmoid+1", "full"]
        if m <= EXP_MAX and math.exp(-m) >= min_low:
            makers.append("exp")
        if m <= EXP_MAX and 1.0 / (1.0 + math.exp(m)) >= min_low:
            makers.append("sigmoid")
        kind = self.draw(st.sampled_from(makers))
        if kind == "exp":
            return self.g.exp(x)
        if kind == "sigmoid":
            return self.g.sigmoid(x)
        if kind == "full":
            return self.g.full(x.shape, self.draw(st.sampled_from([1.0, 0.5, 2.0])))
        return self.g.add(self.g.sigmoid(x), self.g.full(x.shape, 1.0))

    def transcendental(self) -> Tensor:
        op = self.op_of("transcendental")
        if op == "exp":
            return self.g.exp(self.pick(self.floats(0, EXP_MAX)), inplace=self.flag())
        if op in self.only and (self.chain_to is not None or self.edgy()):  # outside the
            # domain (over a chain's last value, or any): log(-x) is nan, as it
            return self.g.apply(op, (self.pick(self.floats()),), {})  # is before a pass
        y = self.positive(self.pick(self.floats()), POS_MIN)
        self.sync()
        return self.g.apply(op, (y,), {"inplace": self.flag()})

    def div(self) -> Tensor:
        a = self.pick(self.floats())
        if "div" in self.only and self.edgy():  # any denominator (zeros under domain data)
            if self.draw(st.booleans()):  # or a constant one
                c = self.g.full((1,) * a.ndim, self.draw(st.sampled_from([1.0, 0.5, 2.0, -1.0])))
                self.sync()
                return self.g.div(a, c)
            return self.g.div(a, self.pick([t for t in self.floats() if t.shape == a.shape]))
        b = self.positive(a, DIV_MIN)
        self.sync()
        return self.g.div(a, b, inplace=self.flag())

    def cast(self) -> Tensor:
        x = self.pick(self.floats())
        dt = self.draw(st.sampled_from(["f16", "bf16", "f32"]))
        y = self.g.cast(x, dt)
        return y if dt == "f32" else self.g.cast(y, "f32")

    def const(self) -> Tensor:
        x = self.pick(self.floats(1))
        value = st.sampled_from([1.0, 0.5, -1.0, 2.0, 0.0])
        if self.draw(st.booleans()):
            c = self.g.full(x.shape, self.draw(value))
        else:
            d = x.shape[-1]
            c = self.g.const([self.draw(value) for _ in range(d)], (d,))
        if not self.draw(st.booleans()):
            return c
        self.sync()
        op = self.op_of("binary")
        if self.edgy():  # the constant first (0 - x, 1 * x), or broadcast over a row of x
            if x.ndim >= 2 and self.draw(st.booleans()):
                x = self.g.slice(x, 0, 0, 1)
                self.sync()
            return self.g.apply(op, (c, x), {})
        return self.g.apply(op, (x, c), {})

    def copy(self) -> Tensor:
        return self.g.copy(self.pick(self.floats()))

    def rope(self) -> Tensor:
        cands = [t for t in self.floats(3) if t.ndim == 3 and t.shape[2] % 2 == 0]
        flat = [t for t in self.floats(2) if t.ndim == 2 and t.shape[1] % 2 == 0]
        how = self.draw(st.sampled_from(["pool", "reshape", "new"]))
        if how == "pool" and cands:
            x = self.pick(cands)
        elif how == "reshape" and flat:
            f = self.pick(flat)
            x = self.g.reshape(f, (f.shape[0], 1, f.shape[1]))
            self.sync()
        else:
            x = self.leaf("input", (self.dim(4), self.dim(2), 2 * self.dim(2)))
        pos = self.index(x.shape[0], None, scatter=False)
        theta = self.draw(st.sampled_from([10000.0, 100.0]))
        return self.g.rope(x, pos, theta, inplace=self.flag())

    def attention(self) -> Tensor:
        ks = [t for t in self.floats(3) if t.ndim == 3]
        k = self.pick(ks) if ks and not self.fresh() else self.leaf(
            "input", (self.dim(4), self.dim(2), self.dim(4)))
        tk, kvh, d = k.shape
        v = self.pick([t for t in self.floats(3) if t.ndim == 3 and t.shape[:2] == (tk, kvh)])
        h = kvh * self.draw(st.integers(1, 2))
        qs = [t for t in self.floats(3) if t.ndim == 3 and t.shape[1:] == (h, d)]
        q = self.pick(qs) if qs and not self.fresh() else self.leaf("input", (self.dim(3), h, d))
        pos = self.index(q.shape[0], tk, scatter=False)
        return self.g.attention(q, k, v, pos, causal=not self.draw(st.booleans()))

    def twin(self) -> Tensor | None:
        """A node like an earlier one: the same op over the same operands, with the same
        attributes (a duplicate CSE merges) or one redrawn (one it must not merge), never
        in place."""
        cands = [t for t in self.made if (t.op in OP_TABLE and not OP_TABLE[t.op].is_view)
                 or t.op in ("transpose", "slice")]
        cands = [t for t in cands if t.op not in ("state", "full", "const")]
        if not cands:
            return None
        t = self.pick(cands)
        attrs = {k: v for k, v in t.attrs.items() if k != "inplace"}
        redraw: bool = self.draw(st.booleans())
        if attrs and redraw:
            key = self.draw(st.sampled_from(sorted(attrs)))
            v = attrs[key]
            if key == "perm":
                attrs[key] = self.draw(st.permutations(list(v)))
            elif key == "axis":
                attrs[key] = self.draw(st.integers(0, max(0, t.inputs[0].ndim - 1)))
            elif isinstance(v, bool):
                attrs[key] = not v
            elif key == "s":
                attrs[key] = self.draw(st.sampled_from([0.5, 2.0, -1.0]))
        try:
            twin = self.g.apply(t.op, t.inputs, attrs)
        except GraphError:
            twin = self.g.apply(t.op, t.inputs, {k: v for k, v in t.attrs.items()
                                                 if k != "inplace"})
        self.sync()
        if (twin.shape, twin.dtype) == (t.shape, t.dtype) == (t.shape, "f32") and \
                self.mag[t] <= TAME and self.mag[twin] <= TAME and self.draw(st.booleans()):
            return self.g.sub(t, twin)  # both read, so both stay live
        return twin

    # ------------------------------------------------------------------ states
    def make_states(self, n: int) -> None:
        """``n`` state leaves of rank 2 or 3; later ones often share an earlier shape (so
        swaps apply)."""
        for _ in range(n):
            if self.states and not self.fresh():
                shape = self.pick(self.states).shape
            elif self.draw(st.booleans()):
                shape = (self.dim(), self.dim(2), self.dim(4))
            else:
                shape = (self.dim(), self.dim())
            self.states.append(self.leaf("state", shape))

    def state_view(self) -> Tensor:
        """A chain of one or two views of a state, an assigned one when there is one and
        the draw says so: what a tap on a state looks like."""
        assigned = [s for s in self.states if s in self.g.assigns]
        x = self.pick(assigned if assigned and not self.fresh() else self.states)
        for _ in range(self.draw(st.integers(1, 2))):
            x = self.view_step(x)
            self.sync()
        return x

    def state(self) -> Tensor | None:
        """One state pattern on states not yet assigned (None when none applies):

        - ``kv-write``: ``upd = set_rows(s, idx, src, inplace=<drawn>)``, ``assign s <- upd``,
          then maybe a node reading ``s`` (the old value), or ``upd``, or (rank 3) attention
          over ``upd`` at positions ``idx`` (a KV-cache decode step);
        - ``early``: ``assign s <- exp(x) + x`` (or an earlier pool value) while later steps
          keep working;
        - ``swap``: ``assign a <- b`` and ``assign b <- a`` for two states of one shape;
        - ``derived``: ``s`` assigned ``neg/tanh/scale`` of itself (in place or not), itself,
          or itself rolled by one row (``concat`` of two slices);
        - ``view``: a chain of one or two views of a state, assigned already or not (a tap
          :func:`reads_for` may draw, which the caller reads after the state updates).
        """
        g = self.g
        free = [s for s in self.states if s not in g.assigns]
        pattern = self.draw(st.sampled_from(STATE_PATTERNS))
        if pattern == "view":
            return self.state_view()
        if not free:
            return None
        if pattern == "swap":
            pairs = [(a, b) for a in free for b in free if a is not b and a.shape == b.shape]
            if not pairs:
                return None
            a, b = self.draw(st.sampled_from(pairs))
            g.assign(a, b)
            g.assign(b, a)
            return None
        s = self.pick(free)
        if pattern == "kv-write":
            n = self.draw(st.integers(1, min(3, s.shape[0])))
            idx = self.index(n, s.shape[0], scatter=True)
            want = (n, *s.shape[1:])
            srcs = [t for t in self.floats(1, STATE_MAG) if t.shape == want]
            src = self.pick(srcs) if srcs and not self.fresh() else self.leaf("input", want)
            upd = g.set_rows(s, idx, src, inplace=self.flag())
            g.assign(s, upd)
            self.sync()
            follow = self.draw(st.sampled_from(["none", "read-old", "read-new", "attend"]))
            if follow == "attend" and s.ndim == 3:
                q = self.leaf("input", (n, s.shape[1] * self.draw(st.integers(1, 2)),
                                        s.shape[2]))
                return g.attention(q, upd, upd, idx)
            if follow in ("read-old", "read-new", "attend"):
                target = s if follow == "read-old" else upd
                return g.apply(self.draw(st.sampled_from(["neg", "copy", "sum"])), (target,))
            return upd
        if pattern == "early":
            existing = [t for t in self.made if t.shape == s.shape and t.dtype == s.dtype
                        and self.mag[t] <= STATE_MAG]
            coin: bool = self.draw(st.booleans())
            if existing and coin:
                value = self.pick(existing)
            else:
                xs = [t for t in self.floats(0, 2.5) if t.shape == s.shape]
                x = self.pick(xs) if xs and not self.fresh() else self.leaf("input", s.shape)
                value = g.add(g.exp(x), x)
            g.assign(s, value)
            return value
        kind = self.draw(st.sampled_from(["neg", "tanh", "scale", "self", "roll"]))
        if kind == "self":
            g.assign(s, s)
            return None
        if kind == "roll" and s.shape[0] >= 2:
            value = g.concat([g.slice(s, 0, 1, s.shape[0]), g.slice(s, 0, 0, 1)], axis=0)
        elif kind == "scale":
            value = g.scale(s, 0.5, inplace=self.flag())
        else:
            op = "tanh" if kind == "tanh" else "neg"
            value = g.apply(op, (s,), {"inplace": self.flag()})
        g.assign(s, value)
        return value


@st.composite
def graphs(
    draw: st.DrawFn,
    max_nodes: int = 10,
    families: Sequence[str] = DEFAULT_FAMILIES,
    max_outputs: int = 3,
    inplace: bool = False,
    max_rank: int = 2,
    max_dim: int = 5,
    *,
    states: bool = False,
    max_states: int = 3,
    ops: Sequence[str] = (),
    rows: bool = False,
    twins: bool = False,
) -> Graph:
    """A valid graph built in up to ``max_nodes`` steps, each drawn from ``families``
    (names of :data:`FAMILY_OPS`; :data:`ALL_FAMILIES` draws every op) and adding one to a
    few nodes.

    Leaves: one to three f32 inputs of rank 2 to ``max_rank`` (up to 4; reshapes reach
    that rank too) with dimensions up to ``max_dim``, params for matmuls, i32 index and
    position inputs for gathers, scatters, rope and attention (kept in range by
    :func:`graphc.testing.data.index_bounds`), and new inputs where a family needs a shape
    the pool lacks. With ``inplace=True`` nodes of in-place ops sometimes carry
    ``inplace=True``. With ``states=True`` the graph has one to ``max_states`` states and
    some steps are state patterns (see ``_Builder.state``; their set_rows / unary in-place
    flags drawn only with ``inplace=True``); each state is assigned at most once, some
    never, and some states are marked outputs themselves; half the graphs end with a
    view of a state (an assigned one when the draw allows, after a last state pattern
    when no state is
    assigned yet), which :func:`reads_for` may read as a tap. At least one node is an
    output. Every value is finite under :func:`graphc.testing.data.random_feeds` over any
    number of runs.

    ``ops`` aims the graph at those ops (say, the ops a pass's rewrite patterns are
    registered on; see :func:`aim_families`): about half the steps are *focus* steps that
    build one of them, over operands any family made, sometimes in a chain (the op over
    its own result), with the shapes and attributes rewrites get wrong: square and size-1
    dimensions, a repeated operand, a constant first or broadcast, a square matmul
    operand, never an identity transpose, negative axes, and (for ``log``, ``sqrt``,
    ``rsqrt`` and ``div`` aimed at) operands outside the domain, whose nan and inf the
    reference computes too. With ``rows`` some outputs record the rows read in the IR
    (``set_output(t, name, rows=...)``). With ``twins`` some steps repeat an earlier
    node's op over its operands, with its attributes or one redrawn (what CSE-like passes
    merge, or must not).
    """
    unknown = [f for f in families if f not in FAMILY_OPS]
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {list(FAMILY_OPS)}")
    focus = aim_families(ops)
    b = _Builder(draw, max(2, min(max_rank, 4)), max_dim, inplace)
    b.aimed = bool(focus)
    rank = draw(st.integers(2, b.max_rank))
    if b.aimed and draw(st.booleans()):  # square, with a size-1 axis, or repeated
        n = b.dim()
        base = draw(st.sampled_from([(n,) * rank, (1, *(n,) * (rank - 1)),
                                     (*(n,) * (rank - 1), 1)]))
    else:
        base = tuple(b.dim() for _ in range(rank))
    for i in range(draw(st.integers(1, 3))):
        b.leaf("input", base if i == 0 or draw(st.booleans()) else tuple(
            b.dim() for _ in range(rank)))
    if states:
        b.make_states(draw(st.integers(1, max(1, max_states))))
    steps: list[str] = list(families)
    if states:
        steps += ["state"] * max(1, len(families) // 3)
    if twins:
        steps += ["twin"] * max(1, len(steps) // 4)
    if focus:
        steps += ["focus"] * len(steps)
    for k in range(max(1, max_nodes)):
        # "one more step?" drawn before each step after the first, so the shrinker can delete
        # any one step (its flag and draws together); continues with probability 7/8
        if k and not draw(st.integers(0, 7)):
            break
        fam = "focus" if focus and k == 0 else draw(st.sampled_from(steps))
        if fam == "focus":
            for _ in range(draw(st.integers(1, 3))):  # 2 or 3: a chain (op over op)
                op = draw(st.sampled_from(sorted(focus)))
                b.only = frozenset({op})
                made = getattr(b, focus[op])()
                b.sync()
                b.chain_to = made if isinstance(made, Tensor) else None
            b.only, b.chain_to = frozenset(), None
            continue
        getattr(b, fam)()
        b.sync()
    if not b.made:
        b.g.neg(b.pool[0])
        b.sync()
    made = b.made
    outs = {made[-1]} | set(draw(st.lists(st.sampled_from(made), max_size=max_outputs - 1)))
    for k, t in enumerate(sorted(outs, key=made.index)):
        sel = None
        if rows and t.ndim and draw(st.booleans()):
            sel = draw(st.lists(st.integers(-t.shape[0], t.shape[0] - 1), min_size=1,
                                max_size=3))
        b.g.set_output(t, f"out{k}", sel)
    for k, s in enumerate(b.states):
        if draw(st.booleans()):
            b.g.set_output(s, f"state_out{k}")
    if states and draw(st.booleans()):  # last, not an output: a view a tap may read,
        if not b.g.assigns:  # of a state the run reassigns when the draw allows
            b.state()
            b.sync()
        b.state_view()
    return b.g


@st.composite
def inputs_for(draw: st.DrawFn, g: Graph) -> dict[str, Any]:
    """Arrays for every input of ``g``; i32 index inputs stay in range of every source."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bounds = index_bounds(g)
    return {n: random_array(t, rng, bounds.get(n)) for n, t in g.inputs.items()}


@st.composite
def params_for(draw: st.DrawFn, g: Graph) -> dict[str, Any]:
    """Arrays for every param of ``g``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return {n: random_array(t, rng) for n, t in g.params.items()}


@st.composite
def states_for(draw: st.DrawFn, g: Graph) -> dict[str, Any]:
    """Arrays for every state of ``g`` (initial contents, floats in [-2, 2))."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return {n: random_array(t, rng) for n, t in g.states.items()}


def _late_tap(g: Graph, t: Tensor) -> bool:
    """True when ``t`` is a view (of views) of a state the run assigns a new value: a tap
    on it is read after that state's update."""
    while t.inputs and t.op in OP_TABLE and OP_TABLE[t.op].is_view:
        t = t.inputs[0]
    return t.op == "state" and t in g.assigns and g.assigns[t] is not t


@st.composite
def reads_for(draw: st.DrawFn, g: Graph, taps: bool = False) -> dict[Any, object]:
    """What a caller reads from ``g``: some outputs, each whole or a few rows (negative
    indices included); with ``taps``, sometimes also one or two tensors that are not
    outputs (never leaves), views of reassigned states first (shrinking goes there)."""
    names = draw(st.lists(st.sampled_from(sorted(g.outputs)), min_size=1, unique=True))
    reads: dict[Any, object] = {}
    for n in names:
        t = g.outputs[n]
        if t.ndim and draw(st.booleans()):
            reads[n] = draw(st.lists(st.integers(-t.shape[0], t.shape[0] - 1), min_size=1,
                                     max_size=3))
        else:
            reads[n] = "all"
    if taps:
        marked = set(g.outputs.values())
        others = [t for t in g.nodes if not t.is_leaf and t not in marked]
        late = [t for t in others if _late_tap(g, t)]
        others = late + [t for t in others if t not in late]
        coin: bool = draw(st.booleans())
        if others and coin:
            chosen: list[Tensor] = draw(st.lists(st.sampled_from(others), min_size=1,
                                                 max_size=2, unique=True))
            for t in chosen:
                reads[t] = "all"
        more: bool = draw(st.booleans())
        if late and more:  # the case a tap is easiest to get wrong in
            reads[draw(st.sampled_from(late))] = "all"
    return reads


@st.composite
def plans(draw: st.DrawFn, g: Graph, reads: Any = None) -> Any:
    """A memory plan of ``g`` from any planner strategy over any scheduling order."""
    order = schedule(g, draw(st.sampled_from(SCHEDULES)), reads=reads)
    return plan_memory(g, order=order, reads=reads, strategy=draw(st.sampled_from(STRATEGIES)),
                       inplace=draw(st.booleans()))
