"""The light MTP head (``mtpl.*``: no attention, no KV cache): speculative decoding with it
equals greedy decoding, accepts every right draft in one call per round, plans safely
without MTP cache states, and ``train_tiny.py --light-head-on`` trains it alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from graphc.examples.qwen import (
    QwenConfig,
    build_light_mtp,
    check_params,
    init_params,
    light_param_shapes,
    load_info,
    load_weights,
    save_weights,
)
from graphc.examples.speculative import (
    Runner,
    build_prefill,
    build_round,
    greedy_generate,
    speculative_generate,
)
from graphc.passes import check_aliasing, plan_memory

import graphc as gc

SHIPPED = Path(__file__).parents[1] / "examples" / "tiny_mtp.npz"
CFG = QwenConfig(vocab=48, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=64,
                 max_ctx=48)


def test_light_head_graph_is_rowwise() -> None:
    """Each row of the head's output depends on its own pair only (no attention)."""
    params = init_params(CFG, seed=4, light=True)
    exe = gc.compile(build_light_mtp(CFG, 3), params={
        k: v for k, v in params.items() if k in build_light_mtp(CFG, 3).params},
        backend="reference")
    hidden = np.random.default_rng(0).standard_normal((3, CFG.d_model)).astype(np.float32)
    tokens = np.array([5, 9, 30], np.int32)
    out = exe.run({"hidden": hidden, "tokens": tokens})
    assert out["logits"].shape == (3, CFG.vocab) and out["mtp_hidden"].shape == (3, 32)
    one = gc.compile(build_light_mtp(CFG, 1), params={
        k: v for k, v in params.items() if k in build_light_mtp(CFG, 1).params},
        backend="reference")
    row = one.run({"hidden": hidden[1:2], "tokens": tokens[1:2]})
    np.testing.assert_allclose(row["logits"][0], out["logits"][1], rtol=1e-5, atol=1e-5)
    assert not build_light_mtp(CFG, 3).states


@pytest.mark.parametrize(("backend", "k"), [("reference", 2), ("arena", 3), ("jax", 1),
                                            ("jax", 4)])
def test_light_speculative_equals_greedy_with_random_weights(backend: str, k: int) -> None:
    params = init_params(CFG, seed=2, mtp=True, light=True)
    runner = Runner(CFG, params, backend=backend, head="light")
    prompt = [1, 7, 2, 40, 11]
    plain, _ = greedy_generate(runner, prompt, 14)
    spec, stats = speculative_generate(runner, prompt, 14, k)
    assert spec == plain and len(spec) == 14
    streamed, st = speculative_generate(runner, prompt, 14, k, stream=True)
    assert streamed == plain and st.calls == stats.calls
    assert stats.calls == 1 + len(stats.accepted_per_round)
    assert stats.drafted == k * len(stats.accepted_per_round)


def test_light_head_fills_the_context_it_is_allowed() -> None:
    """The light head needs k-1 slots past the last round, not the block head's 2k-2: a
    generation that fits exactly runs and equals greedy; one more token is refused."""
    cfg = QwenConfig(vocab=48, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ffn=32,
                     max_ctx=24)
    runner = Runner(cfg, init_params(cfg, seed=5, light=True), backend="reference",
                    head="light")
    prompt, k = [3, 1, 4, 1, 5], 3
    n_new = cfg.max_ctx - len(prompt) - (k - 1)
    assert speculative_generate(runner, prompt, n_new, k)[0] == \
        greedy_generate(runner, prompt, n_new)[0]
    with pytest.raises(gc.GraphError, match="exceed the KV cache"):
        speculative_generate(runner, prompt, n_new + 1, k)
    block = Runner(cfg, init_params(cfg, seed=5, mtp=True), backend="reference")
    with pytest.raises(gc.GraphError, match="exceed the KV cache"):
        speculative_generate(block, prompt, n_new, k)


@pytest.mark.parametrize("kind", ["prefill", "round"])
def test_light_graphs_have_no_mtp_cache_and_plan_safely(kind: str) -> None:
    k = 3
    g = (build_prefill(CFG, 5, k, head="light") if kind == "prefill"
         else build_round(CFG, k, head="light"))
    assert sorted(g.states) == sorted(
        f"l{i}.{c}_cache" for i in range(CFG.n_layers) for c in "kv")
    assert not any(p.startswith("mtp.") for p in g.params)
    assert set(light_param_shapes(CFG)) <= set(g.params)
    # one head application per draft: k rms-norm-weighted projections of the pair
    proj = g.leaf("mtpl.proj")
    assert proj is not None
    assert sum(1 for v in g.nodes if proj in v.inputs) == k
    plan = plan_memory(g, reads={n: "all" for n in g.outputs})
    assert check_aliasing(g, plan) == []
    for state, value in g.assigns.items():  # every cache is written in its own bytes
        chain = [value]
        while plan.placements[chain[-1]].inplace_of is not None:
            chain.append(plan.placements[chain[-1]].inplace_of)
        assert chain[-1] is state and plan.placements[value].region == "state", state.name


def test_unknown_head_is_refused() -> None:
    with pytest.raises(gc.GraphError, match="MTP head must be one of"):
        Runner(CFG, init_params(CFG), head="tiny")
    with pytest.raises(gc.GraphError, match="MTP head must be one of"):
        build_round(CFG, 2, head="tiny")


@pytest.mark.skipif(not SHIPPED.exists(), reason="the checkpoint is built by train_tiny.py")
def test_light_head_on_the_trained_checkpoint() -> None:
    params, cfg = load_weights(str(SHIPPED))
    assert cfg is not None
    check_params(cfg, params, mtp=True, light=True)
    info = load_info(str(SHIPPED))
    light = info["light_head"]
    assert isinstance(light, dict)
    assert light["held_out_mtp_light"] < light["held_out_mtp_light_init"] - 2.0
    assert "held_out_mtp_pre" in info and "held_out_main" in info  # the old keys stay
    from graphc.examples.train_tiny import corpus, evaluate_light

    _, held, digest, _ = corpus()
    if digest == light["corpus_sha256"]:  # the recorded loss is what evaluate_light gives
        got = evaluate_light(params, held, int(light["seq"]), int(light["seed"]), cfg=cfg)
        assert got == pytest.approx(light["held_out_mtp_light"], abs=2e-3)
    runner = Runner(cfg, params, backend="jax", head="light")
    prompt = list(b"def add(a, b):\n    return ")
    plain, _ = greedy_generate(runner, prompt, 16)
    for k in (1, 2, 4):
        spec, stats = speculative_generate(runner, prompt, 16, k)
        assert spec == plain, k
        assert stats.accepted > 0  # trained drafts are accepted: rounds emit several tokens
        assert stats.calls == 1 + len(stats.accepted_per_round) < 16


def test_training_option_trains_only_the_light_head(tmp_path: Path) -> None:
    from graphc.examples.train_tiny import add_light_head

    cfg = QwenConfig(vocab=256, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ffn=48,
                     max_ctx=16)
    params = init_params(cfg, seed=7, mtp=True)
    path = str(tmp_path / "ck.npz")
    save_weights(path, params, cfg, {"steps": 3, "held_out_main": 5.0})
    lines: list[str] = []
    record = add_light_head(path, steps=12, batch=4, seq=16, seed=1, log=lines.append)
    assert record["held_out_mtp_light"] < record["held_out_mtp_light_init"]
    first = float(lines[0].split("light head ")[1].split()[0])
    last = float(lines[-2].split("light head ")[1].split()[0])
    assert last < first
    written, wcfg = load_weights(path)
    assert wcfg == cfg
    assert set(written) == set(params) | set(light_param_shapes(cfg))
    for name, value in params.items():  # every existing array bit-identical
        assert written[name].dtype == value.dtype and written[name].tobytes() == \
            value.tobytes(), name
    check_params(cfg, written, mtp=True, light=True)
    info = load_info(path)
    assert info["steps"] == 3 and info["held_out_main"] == 5.0
    assert info["light_head"] == record and record["steps"] == 12
