"""The JAX backend: parity with the reference backend, KV-cache decode with donated
state, reads, errors, the compile report, and multi-device splits (in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.backends import jax_lowering
from graphc.dtypes import to_numpy
from graphc.models.qwen import QwenConfig, build_main, init_params
from graphc.testing.data import random_feeds
from graphc.testing.strategies import graphs
from tests.test_ops import CASES

# Tolerances of the JAX backend against the reference backend, per dtype (documented in
# the README): the reference computes f16/bf16 in f32 and rounds once; JAX may round
# intermediate results, so low precision is compared at a few units in the last place.
TOLERANCE = {"f32": 2e-5, "f16": 1e-2, "bf16": 5e-2, "i32": 0, "bool": 0}

CFG = QwenConfig(vocab=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=64,
                 max_ctx=16)


def _assert_close(got: object, want: np.ndarray, dtype: str, what: str) -> None:
    got = np.asarray(got)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol,
                               atol=tol, err_msg=what)


def test_every_op_has_a_lowering() -> None:
    assert set(jax_lowering.LOWERINGS) == set(gc.OP_TABLE)


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_parity(case: tuple, dtype: str) -> None:
    name, build, arrays, _ = case
    g = gc.Graph(name)
    leaves = [g.input(f"a{i}", a.shape, "i32" if a.dtype == np.int32 else dtype)
              for i, a in enumerate(arrays)]
    try:
        g.set_output(build(g, *leaves), "y")
    except gc.GraphError:
        pytest.skip(f"{name} does not take {dtype}")
    feeds = {f"a{i}": a if a.dtype == np.int32 else a.astype(to_numpy(dtype))
             for i, a in enumerate(arrays)}
    want = gc.compile(g).run(feeds)["y"]
    got = gc.compile(g, backend="jax").run(feeds)["y"]
    _assert_close(got, want, g.outputs["y"].dtype, f"{name} in {dtype}")


# what a forced in-place write can break (passes.aliasing names each violation's kind);
# bad-label: inplace=True over a view that is not dense, which no write can honour exactly
FORCED_INPLACE_KINDS = {"bad-inplace", "clobbered-read", "param-written", "input-written",
                        "output-clobbered", "unmarked-tap", "state-misassigned", "bad-label"}


def _assert_refused_for_a_forced_inplace(g: gc.Graph, err: gc.AliasError) -> None:
    """The JAX backend may refuse a graph only for a user's unsafe ``inplace=True``: the
    graph has one, and every violation is that write (it overwrites the value at risk)
    or is about that node itself."""
    assert any(t.inplace for t in g.nodes), f"refused a graph with no forced in-place:\n{err}"
    assert err.violations, str(err)
    for v in err.violations:
        assert v.kind in FORCED_INPLACE_KINDS, str(v)
        writer = v.clobbered_by if v.clobbered_by is not None else v.tensor
        assert writer is not None and writer.inplace, f"not a forced in-place write: {v}"


@given(g=st.booleans().flatmap(lambda forced: graphs(inplace=forced)),
       seed=st.integers(0, 10_000))
def _generated_graph_agrees(g: gc.Graph, seed: int, ran: list[str]) -> None:
    note(gc.to_text(g))
    inputs, params, states = random_feeds(g, seed)
    want = gc.compile(g, params=params, states=states).run(inputs)
    try:
        exe = gc.compile(g, params=params, states=states, backend="jax")
    except gc.AliasError as err:
        _assert_refused_for_a_forced_inplace(g, err)
        ran.append("refused")
        assume(False)  # rightly refused: not an example of agreement
    got = exe.run(inputs)
    assert set(got) == set(want)
    for name in want:
        _assert_close(got[name], want[name], "f32", name)
    ran.append("jax")


def test_generated_graphs_agree_with_the_reference() -> None:
    ran: list[str] = []
    _generated_graph_agrees(ran=ran)
    # half the graphs are drawn without inplace=True, so most examples reach JAX
    need = min(20, settings.default.max_examples // 2)
    assert ran.count("jax") >= need and ran.count("jax") > 2 * ran.count("refused"), \
        f"{ran.count('jax')} examples ran the JAX path, {ran.count('refused')} refused"


def test_reads_restrict_outputs_and_rows() -> None:
    params = init_params(CFG, seed=3)
    g = build_main(CFG, 6)
    feeds = {"tokens": np.array([3, 1, 4, 1, 5, 9], np.int32), "pos": np.arange(6, dtype=np.int32)}
    full = gc.compile(g, params=params).run(feeds)
    exe = gc.compile(g, params=params, reads={"logits": [-1, 2], "h_pre_norm": "all"},
                     backend="jax")
    out = exe.run(feeds)
    assert set(out) == {"logits", "h_pre_norm"} and isinstance(out["logits"], jax.Array)
    _assert_close(out["logits"], full["logits"][[5, 2]], "f32", "logits rows")
    _assert_close(out["h_pre_norm"], full["h_pre_norm"], "f32", "hidden")
    report = exe.report()
    assert report.flops_after < report.flops_before
    assert "prune-rows" in report.passes and report.arena_bytes >= report.lower_bound_bytes
    assert report.trace_seconds is not None and report.compile_seconds is not None
    assert "FLOPs" in str(report)
    lm = [t for t in exe.graph.nodes if t.op == "matmul" and t.inputs[1].name == "lm_head"]
    assert [t.shape[0] for t in lm] == [2], "the lm_head runs on the two rows read"
    none = gc.compile(g, params=params, reads={"logits": [-1]}, backend="jax", pipeline="none")
    _assert_close(none.run(feeds)["logits"], full["logits"][[5]], "f32", "no passes")


def test_kv_cache_decode_with_donated_state() -> None:
    params = init_params(CFG, seed=4)
    prompt = np.array([7, 3, 9, 2], np.int32)
    ref = gc.compile(build_main(CFG, 4), params=params)
    exe = gc.compile(build_main(CFG, 4), params=params, reads={"logits": [-1]}, backend="jax")
    feeds = {"tokens": prompt, "pos": np.arange(4, dtype=np.int32)}
    _assert_close(exe.run(feeds)["logits"], ref.run(feeds)["logits"][[-1]], "f32", "prefill")
    rdec = gc.compile(build_main(CFG, 1), params=params, states=ref.state)
    jdec = gc.compile(build_main(CFG, 1), params=params, states=exe.state, backend="jax")
    assert jdec.report().memory_analysis is None or \
        jdec.report().memory_analysis.get("alias", 0) > 0
    for step in range(4, 10):
        before = dict(jdec.state)
        f = {"tokens": np.array([step % CFG.vocab], np.int32), "pos": np.array([step], np.int32)}
        _assert_close(jdec.run(f)["logits"], rdec.run(f)["logits"], "f32", f"step {step}")
        assert all(v.is_deleted() for v in before.values()), "states are donated"
    for name in rdec.state:
        _assert_close(jdec.state[name], rdec.state[name], "f32", name)
    assert not any(v.is_deleted() for v in exe.state.values()), "the seed was copied"


def test_gradients_flow_through_the_lowered_function() -> None:
    g = gc.Graph("grad")
    x = g.input("x", (4, 8))
    w = g.param("w", (8, 8))
    g.set_output(g.sum(g.sum(g.tanh(g.rms_norm(x @ w)), axis=1), axis=0), "loss")
    exe = gc.compile(g, params={"w": np.eye(8, dtype=np.float32)}, backend="jax")
    fn = exe.function()
    X = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)

    def loss(wv: jax.Array) -> jax.Array:
        return fn({"w": wv}, {}, {"x": X})[0]["loss"]

    def by_hand(wv: jax.Array) -> jax.Array:
        h = X @ wv
        h = h * jax.lax.rsqrt(jnp.mean(h * h, -1, keepdims=True) + 1e-6)
        return jnp.sum(jnp.tanh(h))

    w0 = jnp.asarray(np.random.default_rng(1).standard_normal((8, 8)), jnp.float32)
    np.testing.assert_allclose(jax.grad(loss)(w0), jax.grad(by_hand)(w0), rtol=1e-5, atol=1e-5)


def test_errors() -> None:
    g = gc.Graph()
    x = g.input("x", (2, 2))
    g.set_output(g.exp(x), "y")
    exe = gc.compile(g, backend="jax")
    with pytest.raises(gc.GraphError, match="missing input 'x'"):
        exe.run({})
    with pytest.raises(gc.GraphError, match="input 'x' has dtype float64, expected f32"):
        exe.run({"x": np.zeros((2, 2))})
    with pytest.raises(gc.GraphError, match="input 'x' has dtype i32, expected f32"):
        exe.run({"x": jnp.zeros((2, 2), jnp.int32)})
    with pytest.raises(gc.GraphError, match="takes no option 'fast'"):
        gc.compile(g, backend="jax", fast=True)
    with pytest.raises(gc.GraphError, match="needs devices"):
        gc.compile(g, backend="jax", split="layer")
    with pytest.raises(gc.GraphError, match="unknown split"):
        gc.compile(g, backend="jax", split="diagonal", devices=jax.devices())
    saved = jax_lowering.LOWERINGS.pop("exp")
    try:
        with pytest.raises(gc.GraphError, match="no lowering for op 'exp'"):
            gc.compile(g, backend="jax")
    finally:
        jax_lowering.LOWERINGS["exp"] = saved
    h = gc.Graph()
    a = h.input("a", (2, 2))
    h.set_output(h.relu(a, inplace=True), "y")
    with pytest.raises(gc.AliasError, match="input-written"):
        gc.compile(h, backend="jax")


MULTI = Path(__file__).parent / "multi_device_check.py"


def test_multi_device_splits_in_a_subprocess() -> None:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.run([sys.executable, str(MULTI)], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "layer ok" in proc.stdout and "tensor ok" in proc.stdout


def test_an_unassigned_state_survives_donation() -> None:
    """States are donated at every run; one that is never assigned must come back as
    itself, or the second run reads a deleted buffer (found by graphc fuzz)."""
    g = gc.Graph("keep")
    s = g.state("s", (1, 2))
    g.set_output(g.neg(s), "y")
    exe = gc.compile(g, states={"s": np.ones((1, 2), np.float32)}, backend="jax")
    for _ in range(3):
        np.testing.assert_array_equal(np.asarray(exe.run({})["y"]), -1.0)
