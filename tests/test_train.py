"""Training through graphc: gradients equal those of the hand-written JAX model, a short
run lowers the loss, and the shipped checkpoint and the study hold up."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import graphc as gc
from graphc.backends.jax_lowering import lower
from graphc.cli import main
from graphc.models.qwen import (
    QwenConfig,
    build_main,
    check_params,
    init_params,
    load_info,
    load_weights,
)
from graphc.models.qwen_jax import forward
from graphc.models.study import head_params, run_study
from graphc.models.train_tiny import (
    CONFIG,
    corpus,
    evaluate,
    init_all,
    make_loss,
    train,
    windows,
)

SMALL = QwenConfig(vocab=256, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=48,
                   max_ctx=16)
SHIPPED = Path(__file__).parent.parent / "graphc" / "models" / "tiny_mtp.npz"


def _ce(logits: jax.Array, y: jax.Array) -> jax.Array:
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def test_gradients_match_the_hand_written_model() -> None:
    seq = SMALL.max_ctx
    g = build_main(SMALL, seq, kv_cache=False)
    fn = lower(g, ["logits"])
    params = {k: jnp.asarray(v) for k, v in init_params(SMALL, seed=7).items()}
    s = jnp.asarray(np.random.default_rng(0).integers(0, 256, seq + 1), jnp.int32)
    x, y = s[:-1], s[1:]
    pos = jnp.arange(seq, dtype=jnp.int32)

    def through_graphc(p: dict) -> jax.Array:
        return _ce(fn(p, {}, {"tokens": x, "pos": pos})[0]["logits"], y)

    zeros = {f"l{i}.{kv}_cache": jnp.zeros((seq, SMALL.n_kv_heads, SMALL.head_dim))
             for i in range(SMALL.n_layers) for kv in ("k", "v")}

    def by_hand(p: dict) -> jax.Array:
        return _ce(forward(SMALL, p, zeros, x, pos)[0], y)

    np.testing.assert_allclose(through_graphc(params), by_hand(params), rtol=1e-5)
    ga, gb = jax.grad(through_graphc)(params), jax.grad(by_hand)(params)
    assert set(ga) == set(gb)
    for k in ga:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_a_short_run_lowers_the_loss() -> None:
    lines: list[str] = []
    params, info = train(steps=30, batch=4, seq=32, seed=1, log=lines.append, cfg=SMALL)
    first = float(lines[0].split("loss ")[1].split()[0])
    last = float(lines[-2].split("loss ")[1].split()[0])
    assert last < first - 1.0
    assert {"held_out_main", "held_out_mtp_pre", "held_out_mtp_post"} <= set(info)
    assert info["corpus_sha256"] == corpus()[2]
    assert any(k.startswith("mtp_post.") for k in params)


@pytest.mark.skipif(not SHIPPED.exists(), reason="the checkpoint is built by train_tiny.py")
def test_shipped_checkpoint() -> None:
    assert os.path.getsize(SHIPPED) <= 5 * 1024 * 1024
    params, cfg = load_weights(str(SHIPPED))
    assert cfg == CONFIG
    check_params(cfg, params, mtp=True)
    check_params(cfg, head_params(params, "mtp_post."), mtp=True)
    info = load_info(str(SHIPPED))
    assert info["held_out_main"] < 2.0, "the main model has learned something"
    assert info["held_out_mtp_pre"] < info["held_out_main"] + 1.0
    # Recompute, not trust the stored numbers: the training loss (make_loss, as train()
    # differentiates it) on training windows, for the shipped weights and for freshly
    # initialised ones (init_all, train()'s starting point; ln 256 = 5.5 nats a byte).
    seq, seed = int(info["seq"]), int(info["seed"])
    train_data, held, digest, _ = corpus()
    loss = jax.jit(make_loss(cfg, seq))
    xb = jnp.asarray(windows(train_data, 16, seq + 1, np.random.default_rng(seed + 1)))
    trained_total, trained = loss({k: jnp.asarray(v) for k, v in params.items()}, xb)
    fresh_total, fresh = loss(init_all(cfg, seed), xb)
    for name, t, f in zip(("main", "mtp(pre)", "mtp(post)"), trained, fresh, strict=True):
        assert np.isfinite(float(t)) and float(f) > 4.0, name
        assert float(t) < float(f) - 2.0, f"{name}: trained {float(t):.3f}, fresh {float(f):.3f}"
    assert float(trained_total) < float(fresh_total) - 4.0
    assert float(trained[0]) < 2.0, "the recomputed main loss is below 2 nats a byte"
    # the stored held-out figures are what evaluate() gives for these weights on the
    # held-out files -- reproducible only from the same corpus (the same Python's Lib/)
    if digest != info["corpus_sha256"]:
        pytest.skip("this Python's standard library is not the corpus the checkpoint used")
    ev = evaluate(params, held, seq, seed, cfg=cfg)
    assert set(ev) == {"held_out_main", "held_out_mtp_pre", "held_out_mtp_post"}
    for k, v in ev.items():
        assert v == pytest.approx(info[k], abs=2e-3), k


@pytest.mark.skipif(not SHIPPED.exists(), reason="the checkpoint is built by train_tiny.py")
def test_study_and_demo_with_the_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    params, cfg = load_weights(str(SHIPPED))
    prompt = list(b"    def __init__(self, name):\n        self.")
    rows = run_study(cfg, params, [prompt], n_new=16, ks=(2,), backend="jax")
    assert [r.case for r in rows] == ["a", "b", "c"]
    assert all(r.identical for r in rows)
    assert rows[0].acceptance > 0.2, "a trained head's drafts are often accepted"
    assert main(["demo", "--new-tokens", "16", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "tiny_mtp.npz" in out and "prompt" in out and "demo ok" in out


def test_study_needs_a_trained_checkpoint() -> None:
    assert main(["demo", "--random", "--study"]) == 2
    with pytest.raises(KeyError, match="no MTP head"):
        head_params({"embed": np.zeros(1)}, "mtp_post.")


def test_graph_error_for_a_bad_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "w.npz"
    np.savez(bad, embed=np.zeros((2, 2), np.float32))
    assert main(["demo", "--weights", str(bad)]) == 2
    with pytest.raises(gc.GraphError, match="no stored config"):
        from graphc.models.demo import _model

        class A:
            weights, random = str(bad), False
        _model(A())  # type: ignore[arg-type]
