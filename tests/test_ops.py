"""Every op: its shape rule, and the reference backend's numbers against plain NumPy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import graphc as gc
from graphc.backends.reference import RULES

RNG = np.random.default_rng(0)


def _f32(*shape: int, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _run(g: gc.Graph, feeds: dict[str, np.ndarray], params: dict | None = None) -> np.ndarray:
    return gc.compile(g, params=params).run(feeds)["y"]


# (name, builder(g, inputs) -> tensor, input arrays, numpy oracle(*arrays), expected shape)
Case = tuple[str, Callable[..., gc.Tensor], list[np.ndarray], Callable[..., np.ndarray]]

A, B = _f32(3, 4), _f32(3, 4)
POS = _f32(3, 4, lo=0.5, hi=3.0)
ROW = _f32(1, 4)
IDX = np.array([2, 0, 2], dtype=np.int32)


def _rope_np(x: np.ndarray, pos: np.ndarray, theta: float = 10000.0) -> np.ndarray:
    d = x.shape[-1]
    half = d // 2
    freqs = 1.0 / theta ** (np.arange(half) * 2 / d)
    ang = pos[:, None, None] * freqs[None, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                           x2 * np.cos(ang) + x1 * np.sin(ang)], -1)


def _attention_np(q, k, v, pos):  # type: ignore[no-untyped-def]
    tq, h, d = q.shape
    group = h // k.shape[1]
    out = np.zeros((tq, h, v.shape[2]))
    for i in range(tq):
        for head in range(h):
            kh, vh = k[:, head // group], v[:, head // group]
            s = kh @ q[i, head] / math.sqrt(d)
            s[np.arange(k.shape[0]) > pos[i]] = -np.inf
            p = np.exp(s - s.max())
            out[i, head] = (p / p.sum()) @ vh
    return out


CASES: list[Case] = [
    ("add", lambda g, a, b: a + b, [A, B], np.add),
    ("add-broadcast", lambda g, a, r: g.add(a, r), [A, ROW], np.add),
    ("sub", lambda g, a, b: a - b, [A, B], np.subtract),
    ("mul", lambda g, a, b: a * b, [A, B], np.multiply),
    ("div", lambda g, a, b: a / b, [A, POS], np.divide),
    ("maximum", lambda g, a, b: g.maximum(a, b), [A, B], np.maximum),
    ("equal", lambda g, a, b: g.equal(a, g.maximum(a, b)), [A, B],
     lambda a, b: a == np.maximum(a, b)),
    ("equal-i32-broadcast", lambda g, i, j: g.equal(i, j), [IDX, np.array([2], np.int32)],
     lambda i, j: i == j),
    ("neg", lambda g, a: -a, [A], np.negative),
    ("exp", lambda g, a: g.exp(a), [A], np.exp),
    ("log", lambda g, a: g.log(a), [POS], np.log),
    ("sqrt", lambda g, a: g.sqrt(a), [POS], np.sqrt),
    ("rsqrt", lambda g, a: g.rsqrt(a), [POS], lambda x: 1 / np.sqrt(x)),
    ("tanh", lambda g, a: g.tanh(a), [A], np.tanh),
    ("sigmoid", lambda g, a: g.sigmoid(a), [A], _sig),
    ("relu", lambda g, a: g.relu(a), [A], lambda x: np.maximum(x, 0)),
    ("gelu", lambda g, a: g.gelu(a), [A],
     lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
    ("silu", lambda g, a: g.silu(a), [A], lambda x: x * _sig(x)),
    ("copy", lambda g, a: g.copy(a), [A], lambda x: x),
    ("scale", lambda g, a: g.scale(a, 0.25), [A], lambda x: x * 0.25),
    ("cast", lambda g, a: g.cast(a, "i32"), [A * 3], lambda x: x.astype(np.int32)),
    ("matmul", lambda g, a, b: a @ g.transpose(b), [A, B], lambda a, b: a @ b.T),
    ("matmul-batch", lambda g, a, b: g.matmul(a, b), [_f32(2, 3, 4), _f32(4, 5)], np.matmul),
    ("rms_norm", lambda g, a: g.rms_norm(a, eps=1e-5), [A],
     lambda x: x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)),
    ("layer_norm", lambda g, a: g.layer_norm(a), [A],
     lambda x: (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)),
    ("softmax", lambda g, a: g.softmax(a, axis=0), [A],
     lambda x: np.exp(x) / np.exp(x).sum(0, keepdims=True)),
    ("rope", lambda g, x, p: g.rope(x, p), [_f32(3, 2, 8), np.array([0, 5, 9], np.int32)],
     _rope_np),
    ("attention", lambda g, q, k, v, p: g.attention(q, k, v, p),
     [_f32(2, 4, 8), _f32(5, 2, 8), _f32(5, 2, 6), np.array([3, 4], np.int32)], _attention_np),
    ("attention-prefill", lambda g, q, k, v, p: g.attention(q, k, v, p),
     [_f32(4, 2, 4), _f32(4, 2, 4), _f32(4, 2, 4), np.arange(4, dtype=np.int32)],
     _attention_np),
    ("get_rows", lambda g, a, i: g.get_rows(a, i), [A, IDX], lambda a, i: a[i]),
    ("set_rows", lambda g, a, i, b: g.set_rows(a, g.slice(i, 0, 0, 2), g.slice(b, 0, 0, 2)),
     [A, np.array([2, 0, 1], np.int32), B],
     lambda a, i, b: np.concatenate([b[1:2], a[1:2], b[0:1]])),
    ("reshape", lambda g, a: g.reshape(a, (2, -1)), [A], lambda x: x.reshape(2, 6)),
    ("transpose", lambda g, a: g.transpose(a), [A], lambda x: x.T),
    ("slice", lambda g, a: g.slice(a, axis=1, start=1, stop=-1), [A], lambda x: x[:, 1:-1]),
    ("as_strided", lambda g, a: g.as_strided(a, (2, 3), (5, 2), offset=1), [A],
     lambda x: np.lib.stride_tricks.as_strided(np.ascontiguousarray(x).ravel()[1:], (2, 3),
                                               (5 * x.itemsize, 2 * x.itemsize))),
    ("as_strided-repeat", lambda g, a: g.as_strided(a, (3, 2), (0, 4)), [A],
     lambda x: np.stack([x.ravel()[[0, 4]]] * 3)),
    ("concat", lambda g, a, b: g.concat([a, b], axis=1), [A, B],
     lambda a, b: np.concatenate([a, b], 1)),
    ("sum", lambda g, a: g.sum(a, axis=0), [A], lambda x: x.sum(0)),
    ("mean", lambda g, a: g.mean(a, keepdims=True), [A], lambda x: x.mean(-1, keepdims=True)),
    ("max", lambda g, a: g.max(a, axis=1), [A], lambda x: x.max(1)),
    ("argmax", lambda g, a: g.argmax(a), [A], lambda x: x.argmax(-1)),
    ("full", lambda g, a: g.add(a, g.full((3, 4), 1.5)), [A], lambda x: x + 1.5),
    ("const", lambda g, a: g.mul(a, g.const([1, 2, 3, 4.5], (1, 4))), [A],
     lambda x: x * np.array([[1, 2, 3, 4.5]])),
]


PLAN_ONLY = {"opaque", "opaque_inplace"}  # no backend computes them (tested below)


def test_every_op_has_a_case_and_a_rule() -> None:
    covered = {name.split("-")[0] for name, *_ in CASES}
    assert covered == set(gc.OP_TABLE) - PLAN_ONLY
    assert set(RULES) == set(gc.OP_TABLE)


@pytest.mark.parametrize("backend", ["reference", "arena", "jax"])
def test_opaque_ops_are_refused_by_every_backend(backend: str) -> None:
    g = gc.Graph("foreign")
    x = g.input("x", (3, 4))
    g.set_output(g.opaque("ggml.MUL_MAT", [x, x], (4, 4), params=[7]), "y")
    with pytest.raises(gc.GraphError, match=r"ggml\.MUL_MAT is an opaque op"):
        gc.compile(g, backend=backend).run({"x": np.ones((3, 4), np.float32)})


def test_opaque_ops_check_their_type() -> None:
    g = gc.Graph("foreign")
    x = g.input("x", (3, 4))
    with pytest.raises(gc.GraphError, match="must produce operand 0's type"):
        g.opaque("ggml.ADD", [x], (4, 3), inplace=True)
    with pytest.raises(gc.GraphError, match="needs the name"):
        g.opaque("", [x], (4, 3))
    t = g.opaque("ggml.ADD", [x, x], (3, 4), may_write_operand=True)
    assert t.op == "opaque_inplace" and not t.inplace
    assert "ggml.ADD" in str(g)
    assert gc.parse_text(str(g)).nodes[-1].attrs == t.attrs  # the text format round-trips


def test_as_strided_errors_name_the_problem() -> None:
    g = gc.Graph("v")
    x = g.input("x", (3, 4))
    with pytest.raises(gc.GraphError, match="reaches element 12"):
        g.as_strided(x, (2, 2), (4, 8))
    with pytest.raises(gc.GraphError, match="must be >= 0"):
        g.as_strided(x, (2,), (-1,), offset=3)
    with pytest.raises(gc.GraphError, match="2 dimensions but 1 strides"):
        g.as_strided(x, (2, 2), (1,))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_numpy(case: Case) -> None:
    name, build, arrays, oracle = case
    g = gc.Graph(name)
    leaves = [g.input(f"a{i}", a.shape, "i32" if a.dtype == np.int32 else "f32")
              for i, a in enumerate(arrays)]
    y = build(g, *leaves)
    g.set_output(y, "y")
    gc.verify(g)
    got = _run(g, {f"a{i}": a for i, a in enumerate(arrays)})
    want = np.asarray(oracle(*[a.astype(np.float64) if a.dtype == np.float32 else a
                               for a in arrays]))
    assert got.shape == want.shape == y.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_low_precision_is_computed_in_f32_and_rounded() -> None:
    for dt, npdt in [("f16", np.float16), ("bf16", gc.dtypes.to_numpy("bf16"))]:
        g = gc.Graph()
        x = g.input("x", (4, 8), dt)
        g.set_output(g.softmax(g.rms_norm(x)), "y")
        xs = _f32(4, 8).astype(npdt)
        got = gc.compile(g).run({"x": xs})["y"]
        assert got.dtype == npdt
        x64 = xs.astype(np.float64)
        n = x64 / np.sqrt((x64**2).mean(-1, keepdims=True) + 1e-6)
        want = np.exp(n) / np.exp(n).sum(-1, keepdims=True)
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda g, x, i: g.matmul(x, x), "contraction mismatch"),
        (lambda g, x, i: g.add(x, i), "dtype mismatch"),
        (lambda g, x, i: g.exp(i), "needs one of ['bf16', 'f16', 'f32']"),
        (lambda g, x, i: g.reshape(x, (5, 5)), "cannot reshape"),
        (lambda g, x, i: g.transpose(x, (0, 0)), "not a permutation"),
        (lambda g, x, i: g.slice(x, 0, 2, 1), "out of bounds"),
        (lambda g, x, i: g.sum(x, axis=2), "axis 2 is out of range"),
        (lambda g, x, i: g.get_rows(x, x), "indices must be a 1-D i32"),
        (lambda g, x, i: g.rope(x, i), "rope needs x of shape"),
        (lambda g, x, i: g.concat([x, g.transpose(x)], axis=0), "differs from"),
        (lambda g, x, i: g.add(x, 2.0), "use g.scale"),
        (lambda g, x, i: g.full((-1,), 0.0), "negative dimension"),
        (lambda g, x, i: g.apply("matmul", (x, g.transpose(x)), {"inplace": True}),
         "matmul cannot write in place"),
        (lambda g, x, i: g.apply("argmax", (x,), {"axis": 0, "inplace": True}),
         "argmax cannot write in place"),
        (lambda g, x, i: g.apply("rms_norm", (x,), {"eps": True}), "expected a float"),
    ],
)
def test_shape_rules_reject(build: Callable[..., object], message: str) -> None:
    g = gc.Graph()
    x = g.input("x", (3, 4))
    i = g.input("i", (3,), "i32")
    with pytest.raises(gc.GraphError) as info:
        build(g, x, i)
    assert message in str(info.value)
    assert "test_ops.py" in str(info.value), "the error names the user's line"


def test_attributes_are_canonical() -> None:
    g = gc.Graph()
    x = g.input("x", (3, 4, 5))
    assert dict(g.softmax(x).attrs) == {"axis": 2}
    assert dict(g.sum(x, axis=-2).attrs) == {"axis": 1, "keepdims": False}
    assert dict(g.transpose(x).attrs) == {"perm": (2, 1, 0)}
    assert dict(g.slice(x, axis=-1, start=-2).attrs) == {"axis": 2, "start": 3, "stop": 5}
    assert g.reshape(x, (-1, 5)).shape == (12, 5)
    assert dict(g.rms_norm(x, eps=1).attrs) == {"eps": 1.0}
    assert g.exp(x, inplace=True).inplace and not g.exp(x).inplace
    assert "inplace" not in g.exp(x).attrs


def test_tensor_is_immutable_and_identity_compared() -> None:
    g = gc.Graph()
    x = g.input("x", (2,))
    a, b = g.neg(x), g.neg(x)
    assert a == a and a != b and len({a, b}) == 2
    with pytest.raises(AttributeError):
        a.op = "exp"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.attrs["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        bool(a)
    assert (a.ndim, a.size, a.nbytes, a.type_str) == (1, 2, 8, "f32[2]")


def test_graph_accessors() -> None:
    g = gc.Graph("acc")
    x = g.input("x", (2, 2))
    w = g.param("w", (2, 2))
    s = g.state("s", (2, 2))
    y = g.matmul(x, w) + s
    g.set_output(y, "y")
    g.assign(s, y)
    assert len(g) == 5 and g.nodes[-1] is y
    assert g.inputs == {"x": x} and g.params == {"w": w} and g.states == {"s": s}
    assert g.outputs == {"y": y} and g.assigns == {s: y}
    with pytest.raises(gc.GraphError, match="already used"):
        g.set_output(y, "y")
    with pytest.raises(gc.GraphError, match="already used by a input"):
        g.param("x", (1,))
    with pytest.raises(gc.GraphError, match="not a state"):
        g.assign(x, y)
    other = gc.Graph("other")
    with pytest.raises(gc.GraphError, match="belongs to graph @acc"):
        other.neg(x)


def test_equal_attributes_of_another_sign_or_type_are_kept() -> None:
    """The shape-rule memo once handed back 0.0 for -0.0 (they compare equal)."""
    a = gc.Graph("a")
    a.scale(a.input("x", (2,)), 0.0)
    g = gc.Graph("g")
    x = g.input("x", (2,))
    n = g.scale(x, -0.0)
    assert math.copysign(1.0, n.attrs["s"]) == -1.0 and "s = -0.0" in gc.to_text(g)
    m = g.scale(x, 0.0)
    g.set_output(g.div(g.full((2,), 1.0), n), "neg")
    g.set_output(g.div(g.full((2,), 1.0), m), "pos")
    from graphc.passes import cse

    out = gc.compile(cse(g)).run({"x": np.ones(2, np.float32)})
    assert np.all(out["neg"] == -np.inf) and np.all(out["pos"] == np.inf)
