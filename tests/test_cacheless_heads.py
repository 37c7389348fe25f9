"""The cacheless MTP heads, light (``mtpl.*``: a SwiGLU FFN over the projected pair) and
MLP (``mtpm.*``: one hidden layer on the post-norm hidden state, distilled from the main
model): speculative decoding with either equals greedy decoding on every backend and
accepts every right draft in one call per round; their prompt graph is written row by
row and row-pruned like greedy decoding's prompt call; their graphs have no MTP cache
state and plan safely; each refuses the hidden state it was not trained on; and
``train_tiny.py --light-head-on`` / ``--mlp-head-on`` trains one alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.models.qwen import (
    MlpMtpHead,
    QwenConfig,
    build_light_mtp,
    build_mlp_mtp,
    check_params,
    init_params,
    light_param_shapes,
    load_info,
    load_weights,
    mlp_param_shapes,
    mlp_width,
    save_weights,
)
from graphc.models.speculative import (
    Runner,
    build_greedy,
    build_prefill,
    build_round,
    greedy_generate,
    head_source,
    prefill_reads,
    speculative_generate,
)
from graphc.passes import check_aliasing, plan_memory

SHIPPED = Path(__file__).parents[1] / "graphc" / "models" / "tiny_mtp.npz"
CFG = QwenConfig(vocab=48, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=64,
                 max_ctx=48)
HEAD_SHAPES: dict[str, Callable[[QwenConfig], dict[str, tuple[int, ...]]]] = {
    "light": light_param_shapes, "mlp": mlp_param_shapes}
HEADS = list(HEAD_SHAPES)


def _params(cfg: QwenConfig, seed: int) -> dict[str, np.ndarray]:
    return init_params(cfg, seed=seed, mtp=True, light=True, mlp=True)


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


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


def test_mlp_head_graph_matches_numpy() -> None:
    """The chained head graph against a NumPy transcription of its docstring, row by row."""
    params = init_params(CFG, seed=4, mlp=True)
    g = build_mlp_mtp(CFG, 3, depth=2)
    exe = gc.compile(g, params={k: v for k, v in params.items() if k in g.params},
                     backend="reference")
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((3, CFG.d_model)).astype(np.float32)
    tokens = np.array([[5, 9, 30], [1, 2, 47]], np.int32)
    out = exe.run({"hidden": hidden, "tokens": tokens})
    a, b, c, w = (params[f"mtpm.{n}"].astype(np.float64) for n in "abcw")
    z1 = _silu(hidden @ a + b[tokens[0]])
    z2 = _silu(z1 @ c + b[tokens[1]])
    np.testing.assert_allclose(out["logits_1"], z1 @ w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits_2"], z2 @ w, rtol=1e-4, atol=1e-4)
    assert not g.states and set(g.params) == set(mlp_param_shapes(CFG))
    with pytest.raises(gc.GraphError, match="depth must be at least 1"):
        build_mlp_mtp(CFG, 3, depth=0)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize(("backend", "k"), [("reference", 2), ("arena", 3), ("jax", 1),
                                            ("jax", 4)])
def test_speculative_equals_greedy_with_random_weights(head: str, backend: str, k: int
                                                       ) -> None:
    runner = Runner(CFG, _params(CFG, 2), backend=backend, head=head)
    prompt = [1, 7, 2, 40, 11]
    plain, gstats = greedy_generate(runner, prompt, 14)
    spec, stats = speculative_generate(runner, prompt, 14, k)
    assert spec == plain and len(spec) == 14
    streamed, st = speculative_generate(runner, prompt, 14, k, stream=True)
    assert streamed == plain and st.calls == stats.calls
    assert stats.calls == 1 + len(stats.accepted_per_round)
    assert stats.drafted == k * len(stats.accepted_per_round)
    for s in (stats, gstats):  # the prompt call timed apart
        assert 0 < s.prompt_seconds < s.seconds
        assert s.decode_tokens_per_second == pytest.approx(
            (s.tokens - 1) / (s.seconds - s.prompt_seconds))


@pytest.mark.parametrize("head", HEADS)
def test_cacheless_head_fills_the_context_it_is_allowed(head: str) -> None:
    """A cacheless head needs k-1 slots past the last round, not the block head's 2k-2: a
    generation that fits exactly runs and equals greedy; one more token is refused."""
    cfg = QwenConfig(vocab=48, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ffn=32,
                     max_ctx=24)
    runner = Runner(cfg, _params(cfg, 5), backend="reference", head=head)
    prompt, k = [3, 1, 4, 1, 5], 3
    n_new = cfg.max_ctx - len(prompt) - (k - 1)
    assert speculative_generate(runner, prompt, n_new, k)[0] == \
        greedy_generate(runner, prompt, n_new)[0]
    with pytest.raises(gc.GraphError, match="exceed the KV cache"):
        speculative_generate(runner, prompt, n_new + 1, k)
    block = Runner(cfg, _params(cfg, 5), backend="reference")
    with pytest.raises(gc.GraphError, match="exceed the KV cache"):
        speculative_generate(block, prompt, n_new, k)


@pytest.mark.parametrize("head", HEADS)
def test_prefill_rows_match_shorter_prompts(head: str) -> None:
    """Row i of the row-by-row prompt graph is what a prompt of the first i+1 tokens
    gives, so reading the last row is the prompt's answer."""
    params = _params(CFG, 3)
    prompt = np.array([4, 8, 15, 16, 23], np.int32)
    full = build_prefill(CFG, 5, 2, head=head)
    exe = gc.compile(full, params={k: v for k, v in params.items() if k in full.params},
                     reads={"first": "all", "next_tokens": "all"}, backend="reference")
    out = exe.run({"tokens": prompt, "pos": np.arange(5, dtype=np.int32)})
    assert out["first"].shape == (5,) and out["next_tokens"].shape == (5, 3)
    for n in (1, 3, 5):
        g = build_prefill(CFG, n, 2, head=head)
        one = gc.compile(g, params={k: v for k, v in params.items() if k in g.params},
                         reads=prefill_reads(head), backend="reference")
        got = one.run({"tokens": prompt[:n], "pos": np.arange(n, dtype=np.int32)})
        assert got["first"].tolist() == [out["first"][n - 1]]
        assert got["next_tokens"].tolist() == [out["next_tokens"][n - 1].tolist()]


@pytest.mark.parametrize("head", HEADS)
def test_cacheless_prefill_is_row_pruned_like_greedy(head: str) -> None:
    """Read at its last row, the prompt graph computes the main model's last layer past
    the KV-cache writes, the lm_head and the head on one row, as greedy's prompt call
    does: the compiled FLOPs (the JAX backend's default pipeline) exceed greedy's by
    one row of the head only."""
    n, k = 24, 2
    params = init_params(CFG, seed=1, mtp=True, light=True, mlp=True)
    spec_g = build_prefill(CFG, n, k, head=head)
    spec = gc.compile(spec_g, params={p: v for p, v in params.items() if p in spec_g.params},
                      reads=prefill_reads(head), backend="reference", pipeline="default")
    greedy_g = build_greedy(CFG, n)
    greedy = gc.compile(greedy_g, params={p: v for p, v in params.items()
                                          if p in greedy_g.params},
                        reads={"choice": [-1]}, backend="reference", pipeline="default")
    unpruned = gc.compile(spec_g, params={p: v for p, v in params.items()
                                          if p in spec_g.params},
                          reads={"first": "all", "next_tokens": "all"}, backend="reference",
                          pipeline="default")
    f_spec = spec.report().flops_after
    f_greedy = greedy.report().flops_after
    f_full = unpruned.report().flops_after
    assert f_greedy < f_spec < f_full
    d, v, f = CFG.d_model, CFG.vocab, CFG.d_ffn
    if head == "mlp":  # one row: k applications, the first from the hidden state
        w = mlp_width(CFG)
        head_flops = 2 * (d * w + (k - 1) * w * w + k * w * v)
    else:  # one row: k applications of proj, gate, up, down and the lm_head
        head_flops = 2 * k * (2 * d * d + 3 * d * f + d * v)
    assert head_flops <= f_spec - f_greedy < 1.25 * head_flops


def test_heads_refuse_the_state_they_were_not_trained_on() -> None:
    """Fed the state it was not trained on, the head would draft silently worse: refused,
    in the runner and in the graph builders; the default is the trained one."""
    assert head_source("mlp") == MlpMtpHead.SOURCE == "post_norm"
    assert head_source("light") == "pre_norm" and head_source("block") == "pre_norm"
    assert head_source("block", "post_norm") == "post_norm"
    params = init_params(CFG, seed=2, mlp=True)
    for make in (lambda: Runner(CFG, params, head="mlp", mtp_source="pre_norm"),
                 lambda: build_round(CFG, 2, "pre_norm", head="mlp"),
                 lambda: build_prefill(CFG, 4, 2, "pre_norm", head="mlp"),
                 lambda: Runner(CFG, params, head="light", mtp_source="post_norm")):
        with pytest.raises(gc.GraphError, match="was trained on the") as info:
            make()
        assert info.value.fix is not None and "mtp_source" in info.value.fix
    with pytest.raises(gc.GraphError, match="mtp_source must be one of"):
        Runner(CFG, params, head="mlp", mtp_source="middle")


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("kind", ["prefill", "round"])
def test_graphs_have_no_mtp_cache_and_plan_safely(head: str, kind: str) -> None:
    k = 3
    g = (build_prefill(CFG, 5, k, head=head) if kind == "prefill"
         else build_round(CFG, k, head=head))
    assert sorted(g.states) == sorted(
        f"l{i}.{c}_cache" for i in range(CFG.n_layers) for c in "kv")
    own = {p for p in g.params if p.startswith("mtp")}
    assert own == set(HEAD_SHAPES[head](CFG))
    if head == "light":  # one application per draft: k projections of the pair
        proj = g.leaf("mtpl.proj")
        assert proj is not None
        assert sum(1 for v in g.nodes if proj in v.inputs) == k
    else:  # the first from the hidden state, k-1 chained from the head's own state
        a, c = g.leaf("mtpm.a"), g.leaf("mtpm.c")
        assert a is not None and c is not None
        assert sum(1 for v in g.nodes if a in v.inputs) == 1
        assert sum(1 for v in g.nodes if c in v.inputs) == k - 1
    reads = prefill_reads(head) if kind == "prefill" else {n: "all" for n in g.outputs}
    plan = plan_memory(g, reads=reads)
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
@pytest.mark.parametrize("head", HEADS)
def test_head_on_the_trained_checkpoint(head: str) -> None:
    params, cfg = load_weights(str(SHIPPED))
    assert cfg is not None
    check_params(cfg, params, mtp=True, light=True, mlp=True)
    info = load_info(str(SHIPPED))
    record = info[f"{head}_head"]
    assert isinstance(record, dict)
    loss = f"held_out_mtp_{head}"
    assert record[loss] < record[loss + "_init"] - 2.0
    assert "held_out_mtp_pre" in info and "held_out_main" in info  # the old keys stay
    from graphc.models.train_tiny import corpus, evaluate_head

    _, held, digest, _ = corpus()
    if digest == record["corpus_sha256"]:  # the recorded figures are what evaluation gives
        got, metric = evaluate_head(head, params, held, int(record["seq"]),
                                    int(record["seed"]), cfg=cfg)
        assert got == pytest.approx(record[loss], abs=2e-3)
        if head == "mlp":
            assert metric == pytest.approx(record["held_out_agreement"], abs=2e-3)
    if head == "mlp":  # distilled drafts agree with the main model's choices
        agreement = record["held_out_agreement"]
        assert isinstance(agreement, list) and len(agreement) == 3 and min(agreement) > 0.6
    runner = Runner(cfg, params, backend="jax", head=head)
    prompt = list(b"def add(a, b):\n    return ")
    plain, _ = greedy_generate(runner, prompt, 16)
    for k in (1, 2, 4):
        spec, stats = speculative_generate(runner, prompt, 16, k)
        assert spec == plain, k
        assert stats.accepted > 0  # trained drafts are accepted: rounds emit several tokens
        assert stats.calls == 1 + len(stats.accepted_per_round) < 16


@pytest.mark.parametrize("head", HEADS)
def test_training_option_trains_only_that_head(head: str, tmp_path: Path) -> None:
    from graphc.models.train_tiny import add_head

    cfg = QwenConfig(vocab=256, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ffn=48,
                     max_ctx=16)
    params = init_params(cfg, seed=7, mtp=True)
    path = str(tmp_path / "ck.npz")
    save_weights(path, params, cfg, {"steps": 3, "held_out_main": 5.0})
    lines: list[str] = []
    record = add_head(head, path, steps=12, batch=4, seq=16, seed=1, log=lines.append)
    loss = f"held_out_mtp_{head}"
    assert record[loss] < record[loss + "_init"]
    first = float(lines[0].split(f"{head} head ")[1].split()[0])
    last = float(lines[-2].split(f"{head} head ")[1].split()[0])
    assert last < first
    assert ("held_out_agreement" in record) == (head == "mlp")
    written, wcfg = load_weights(path)
    assert wcfg == cfg
    assert set(written) == set(params) | set(HEAD_SHAPES[head](cfg))
    for name, value in params.items():  # every existing array bit-identical
        assert written[name].dtype == value.dtype and written[name].tobytes() == \
            value.tobytes(), name
    check_params(cfg, written, mtp=True, light=head == "light", mlp=head == "mlp")
    info = load_info(path)
    assert info["steps"] == 3 and info["held_out_main"] == 5.0
    assert info[f"{head}_head"] == record and record["steps"] == 12


def test_demo_picks_and_checks_the_head() -> None:
    """``graphc demo`` drafts with the MLP head when the weights have one and the asked
    source suits it, else with the block head; a head it cannot use is refused naming
    the demo's own options."""
    from argparse import Namespace

    from graphc.models.demo import pick_head

    with_mlp = init_params(CFG, seed=2, mtp=True, mlp=True)
    without = init_params(CFG, seed=2, mtp=True)
    assert pick_head(Namespace(head=None, mtp_source=None), CFG, with_mlp) == \
        ("mlp", "post_norm")
    assert pick_head(Namespace(head=None, mtp_source="pre_norm"), CFG, with_mlp) == \
        ("block", "pre_norm")
    assert pick_head(Namespace(head=None, mtp_source=None), CFG, without) == \
        ("block", "pre_norm")
    with pytest.raises(gc.GraphError, match="trained on the post_norm") as info:
        pick_head(Namespace(head="mlp", mtp_source="pre_norm"), CFG, with_mlp)
    assert info.value.fix is not None and "--mtp-source post_norm" in info.value.fix
    with pytest.raises(gc.GraphError, match="no mlp MTP head") as info:
        pick_head(Namespace(head="mlp", mtp_source=None), CFG, without)
    assert info.value.fix is not None and "--mlp-head-on" in info.value.fix
    with pytest.raises(gc.GraphError, match="no light MTP head"):
        pick_head(Namespace(head="light", mtp_source=None), CFG, with_mlp)


def test_demo_with_a_single_new_token(capsys: pytest.CaptureFixture[str]) -> None:
    """One new token: no decoding after the prompt call, so no decoding rate to compare."""
    from graphc.cli import main

    assert main(["demo", "--random", "--d-model", "32", "--vocab", "48", "--layers", "1",
                 "--heads", "2", "--kv-heads", "1", "--prompt-len", "4", "--new-tokens", "1",
                 "--draft", "2", "--repeats", "1", "--backend", "arena"]) == 0
    out = capsys.readouterr().out
    assert "demo ok" in out and "decoding alone 0 against 0 (-)" in out


def test_mlp_width_is_chosen_at_training_and_stored(tmp_path: Path) -> None:
    """``--mlp-width``: the MLP head's hidden width goes into the checkpoint's config, so
    the graphs built from that config fit the trained arrays."""
    from graphc.models.train_tiny import add_head

    cfg = QwenConfig(vocab=256, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ffn=48,
                     max_ctx=32)
    assert mlp_width(cfg) == 64 and mlp_width(QwenConfig(mlp_width=8)) == 8
    with pytest.raises(gc.GraphError, match="must be positive"):
        QwenConfig(mlp_width=0)
    path = str(tmp_path / "ck.npz")
    save_weights(path, init_params(cfg, seed=7), cfg)
    add_head("mlp", path, steps=2, batch=2, seq=16, seed=1, log=lambda _: None,
             mlp_width=24)
    written, wcfg = load_weights(path)
    assert wcfg is not None and wcfg.mlp_width == 24
    assert written["mtpm.a"].shape == (32, 24) and written["mtpm.c"].shape == (24, 24)
    runner = Runner(wcfg, written, backend="reference", head="mlp")
    prompt = list(b"def f(")
    assert speculative_generate(runner, prompt, 6, 2)[0] == \
        greedy_generate(runner, prompt, 6)[0]
    with pytest.raises(SystemExit, match="MLP head only"):
        add_head("light", path, steps=1, mlp_width=24)


def test_distillation_targets_against_a_pair_by_pair_oracle() -> None:
    """``make_mlp_loss`` (batched JAX, slices of the main model's outputs) against an
    oracle that shares none of its indexing: the main model on the reference backend,
    then for every pair t and depth j the head computed pair by pair in NumPy from the
    true tokens t+1..t+j, compared with the main model's distribution at position t+j."""
    import jax.numpy as jnp

    from graphc.models.qwen import build_main
    from graphc.models.train_tiny import make_mlp_loss

    seq, depth = 12, 3
    params = init_params(CFG, seed=9, mlp=True)
    rng = np.random.default_rng(3)
    batch = rng.integers(0, CFG.vocab, size=(2, seq + 1)).astype(np.int32)
    mlp = {k: jnp.asarray(v) for k, v in params.items() if k.startswith("mtpm.")}
    frozen = {k: jnp.asarray(v) for k, v in params.items() if not k.startswith("mtp")}
    loss, agree = make_mlp_loss(CFG, seq, depth)(mlp, frozen, jnp.asarray(batch))

    g = build_main(CFG, seq, kv_cache=False)
    main = gc.compile(g, params={k: v for k, v in params.items() if k in g.params},
                      reads={"logits": "all", "h_post_norm": "all"}, backend="reference")
    a, b, c, w = (params[f"mtpm.{n}"].astype(np.float64) for n in "abcw")
    ces: list[list[float]] = [[] for _ in range(depth)]
    hits: list[list[bool]] = [[] for _ in range(depth)]
    for s in batch:
        out = main.run({"tokens": s[:-1], "pos": np.arange(seq, dtype=np.int32)})
        logits, hidden = out["logits"].astype(np.float64), out["h_post_norm"]
        for t in range(seq - depth):
            z = _silu(hidden[t] @ a + b[s[t + 1]])
            for j in range(1, depth + 1):
                if j > 1:
                    z = _silu(z @ c + b[s[t + j]])
                draft = z @ w
                target = logits[t + j]  # the main model's distribution over token t+j+1
                p = np.exp(target - target.max())
                p /= p.sum()
                log_q = draft - draft.max() - np.log(np.exp(draft - draft.max()).sum())
                ces[j - 1].append(float(-(p * log_q).sum()))
                hits[j - 1].append(bool(np.argmax(draft) == np.argmax(target)))
    assert float(loss) == pytest.approx(np.mean([np.mean(x) for x in ces]), rel=1e-4)
    np.testing.assert_allclose(np.asarray(agree), [np.mean(h) for h in hits], atol=1e-6)
