"""The example model: graph builders, KV-cache decoding, weights files, speculative
decoding (equal to greedy), and the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.cli import main
from graphc.models.qwen import (
    QwenConfig,
    build_main,
    build_mtp,
    check_params,
    init_params,
    load_weights,
    mtp_param_shapes,
    param_shapes,
    save_weights,
)
from graphc.models.speculative import (
    Runner,
    build_round,
    greedy_generate,
    rigged_params,
    speculative_generate,
)
from graphc.passes import check_aliasing, plan_memory

SHIPPED = Path(__file__).parents[1] / "graphc" / "models" / "tiny_mtp.npz"
CFG = QwenConfig(vocab=48, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=64,
                 max_ctx=48)


@pytest.mark.parametrize("n", [1, 4, 9])
def test_builders_verify(n: int) -> None:
    g = build_main(CFG, n)
    gc.verify(g)
    assert set(g.params) == set(param_shapes(CFG))
    assert set(g.outputs) == {"logits", "h_pre_norm", "h_post_norm"}
    assert len(g.assigns) == 2 * CFG.n_layers
    m = build_mtp(CFG, n)
    gc.verify(m)
    assert set(m.params) == set(mtp_param_shapes(CFG)) | {"embed", "lm_head"}
    assert set(m.outputs) == {"logits", "mtp_hidden"} and len(m.assigns) == 2


@pytest.mark.parametrize("backend", ["reference", "jax"])
def test_prefill_then_decode_equals_full_recompute(backend: str) -> None:
    params = {k: v for k, v in init_params(CFG, seed=1).items()}
    tokens = [3, 14, 15, 9, 26, 5]
    full = gc.compile(build_main(CFG, 6), params=params)
    want = full.run({"tokens": np.array(tokens, np.int32), "pos": np.arange(6, dtype=np.int32)})
    pre = gc.compile(build_main(CFG, 4), params=params, reads={"logits": "all"},
                     backend=backend)
    step = gc.compile(build_main(CFG, 1), params=params, reads={"logits": "all"},
                      backend=backend)
    pre.run({"tokens": np.array(tokens[:4], np.int32), "pos": np.arange(4, dtype=np.int32)})
    step.state = pre.state
    for i in (4, 5):
        got = step.run({"tokens": np.array([tokens[i]], np.int32),
                        "pos": np.array([i], np.int32)})
        np.testing.assert_allclose(got["logits"], want["logits"][[i]], rtol=1e-4, atol=1e-4)


def test_round_graph_verifies_and_holds_its_contract() -> None:
    k = 3
    g = build_round(CFG, k)
    gc.verify(g)
    assert set(g.inputs) == {"tokens", "start"}
    assert {n: t.shape for n, t in g.outputs.items()} == {
        "choices": (k + 1,), "accepted": (1,), "next_tokens": (k + 1,), "next_start": (1,)}
    assert set(g.states) == {f"l{i}.{c}_cache" for i in range(CFG.n_layers) for c in "kv"} | {
        "mtp.k_cache", "mtp.v_cache"}
    assert len(g.assigns) == len(g.states)
    assert {t.op for t in g.nodes} >= {"equal", "argmax", "get_rows", "set_rows"}


def test_round_counts_the_accepted_prefix() -> None:
    """``accepted`` is the length of the prefix of drafts equal to the main model's
    choices, checked against the reference on fed drafts that match 0..k of them."""
    k = 3
    params = init_params(CFG, seed=5, mtp=True)
    runner = Runner(CFG, params, backend="reference")
    _, rnd = runner.speculative(4, k)
    feed = np.array([5, 0, 0, 0], np.int32)
    for want in range(k + 1):
        rnd.reset_state()
        got = rnd.run({"tokens": feed, "start": np.array([4], np.int32)})
        choices = got["choices"]
        assert int(got["accepted"][0]) == want
        # the next round's inputs: the last emitted token first, at the next position
        assert int(got["next_tokens"][0]) == int(choices[want])
        assert int(got["next_start"][0]) == 4 + want + 1
        if want < k:  # make one more draft right, and the one after it wrong
            feed[1 + want] = choices[want]
            feed[2 + want:] = (choices[want + 1:k] + 1) % CFG.vocab


@pytest.mark.parametrize(("backend", "k"), [("jax", 1), ("jax", 3), ("reference", 2),
                                            ("arena", 2)])
def test_speculative_equals_greedy_with_random_weights(backend: str, k: int) -> None:
    params = init_params(CFG, seed=2, mtp=True)
    runner = Runner(CFG, params, backend=backend)
    prompt = [1, 7, 2, 40, 11]
    plain, gstats = greedy_generate(runner, prompt, 14)
    spec, sstats = speculative_generate(runner, prompt, 14, k)
    assert spec == plain and len(spec) == 14
    # reading every call's tokens before the next (streaming) changes nothing
    assert greedy_generate(runner, prompt, 14, stream=True)[0] == plain
    streamed, st = speculative_generate(runner, prompt, 14, k, stream=True)
    assert streamed == plain and st.calls == sstats.calls
    assert gstats.calls == 14 and gstats.tokens_per_call == 1.0
    assert sstats.drafted == k * len(sstats.accepted_per_round)
    assert sstats.calls == 1 + len(sstats.accepted_per_round)  # one call per round


@pytest.mark.parametrize("backend", ["reference", "arena", "jax"])
def test_speculative_equals_greedy_on_the_trained_checkpoint(backend: str) -> None:
    params, cfg = load_weights(str(SHIPPED))
    assert cfg is not None
    runner = Runner(cfg, params, backend=backend)
    prompt = list(b"def add(a, b):\n    return ")
    plain, _ = greedy_generate(runner, prompt, 12)
    spec, stats = speculative_generate(runner, prompt, 12, 2)
    assert spec == plain
    assert stats.accepted > 0  # trained drafts are accepted: rounds emit several tokens
    assert stats.calls == 1 + len(stats.accepted_per_round) < 12


@pytest.mark.parametrize(("head", "backend"), [
    ("block", "reference"), ("block", "jax"),
    ("light", "reference"), ("light", "arena"), ("light", "jax"),
    ("mlp", "reference"), ("mlp", "arena"), ("mlp", "jax")])
def test_speculative_accepts_good_drafts(head: str, backend: str) -> None:
    """Rigged weights (every draft right), every MTP head: k drafts accepted per round,
    exactly one call per round."""
    cfg = QwenConfig(vocab=16, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ffn=32,
                     max_ctx=64)
    runner = Runner(cfg, rigged_params(cfg), backend=backend, head=head)
    prompt = [3, 4, 5]
    plain, gstats = greedy_generate(runner, prompt, 20)
    assert plain == [(6 + i) % 16 for i in range(20)] and gstats.calls == 20
    for k in (1, 2, 4):
        spec, stats = speculative_generate(runner, prompt, 20, k)
        assert spec == plain
        assert stats.acceptance_rate == 1.0 and set(stats.accepted_per_round) == {k}
        # the prompt call gives 1 token; every round, one call, k accepted drafts + 1
        assert stats.calls == 1 + -(-19 // (k + 1))


@pytest.mark.parametrize("kind", ["prefill", "round"])
def test_speculative_graphs_memory_plans_are_proven_safe(kind: str) -> None:
    """The plan of each speculative graph passes the aliasing checker, with every KV cache
    (the MTP head's written several times over) updated in its state's own bytes."""
    runner = Runner(CFG, init_params(CFG, seed=2, mtp=True), backend="reference")
    pre, rnd = runner.speculative(5, 3)
    g = (pre if kind == "prefill" else rnd).graph
    plan = plan_memory(g, reads={n: "all" for n in g.outputs})
    assert check_aliasing(g, plan) == []
    assert plan.arena_bytes >= plan.lower_bound_bytes > 0
    for state, value in g.assigns.items():  # every cache is written in its own bytes
        chain = [value]
        while plan.placements[chain[-1]].inplace_of is not None:
            chain.append(plan.placements[chain[-1]].inplace_of)
        assert chain[-1] is state and plan.placements[value].region == "state", state.name
    assert sum(1 for v in g.nodes if v.op == "set_rows") > len(g.states)  # chained writes


def test_weights_round_trip(tmp_path: Path) -> None:
    params = init_params(CFG, seed=3, mtp=True)
    path = tmp_path / "w.npz"
    save_weights(str(path), params, CFG)
    back, cfg = load_weights(str(path))
    assert cfg == CFG and set(back) == set(params)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])
    check_params(cfg, back)
    del back["lm_head"]
    with pytest.raises(gc.GraphError, match="weights lack 'lm_head'"):
        check_params(CFG, back)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(gc.GraphError, match="cannot read weights"):
        load_weights(str(tmp_path / "bad.npz"))


def test_safetensors_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    params = init_params(CFG, seed=4, mtp=False)
    path = tmp_path / "w.safetensors"
    save_weights(str(path), params, CFG)
    back, cfg = load_weights(str(path))
    assert cfg == CFG
    np.testing.assert_array_equal(back["embed"], params["embed"])


def test_generation_errors() -> None:
    runner = Runner(CFG, init_params(CFG, mtp=True), backend="reference")
    with pytest.raises(gc.GraphError, match="exceed the KV cache"):
        greedy_generate(runner, [1, 2], CFG.max_ctx)
    with pytest.raises(gc.GraphError, match="outside the vocabulary"):
        speculative_generate(runner, [CFG.vocab], 3, 2)
    with pytest.raises(gc.GraphError, match="draft length must be at least 1"):
        speculative_generate(runner, [1], 3, 0)
    with pytest.raises(gc.GraphError, match="mtp_source"):
        Runner(CFG, init_params(CFG), mtp_source="middle")


@pytest.mark.parametrize(("argv", "message"), [
    (["--random", "--heads", "3"], "must divide by n_heads"),
    (["--new-tokens", "0"], "--new-tokens must be at least 1"),
    (["--random", "--prompt-len", "0"], "--prompt-len must be at least 1"),
    (["--layers", "0"], "--layers must be at least 1"),
    (["--draft", "0"], "--draft must be at least 1"),
    (["--weights", "/no/such.npz"], "cannot read weights"),
])
def test_demo_bad_options(argv: list[str], message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_demo_device_that_is_not_there(capsys: pytest.CaptureFixture[str]) -> None:
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("this machine has a GPU")
    assert main(["demo", "--random", "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "JAX sees no 'gpu' device" in err and "Traceback" not in err


def test_demo_runs_with_tiny_settings(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--random", "--layers", "1", "--d-model", "32", "--vocab", "64",
                 "--prompt-len", "12", "--new-tokens", "10", "--draft", "2", "--repeats", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    for text in ("1. prompt processing", "FLOPs ratio", "proven safe", "DEMONSTRATION",
                 "unmarked-tap", "max |tap - post-norm| = 0.00e+00", "equals greedy decoding "
                 "token for token: True", "demo ok"):
        assert text in out, text
