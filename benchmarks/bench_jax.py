"""graphc's JAX backend against the same model written directly in JAX.

Run: python benchmarks/bench_jax.py [--quick]

Both sides use the same weights and the same fused attention. Prints the median time
(after warm-up) of prefill and of one decode step for each, their ratio
graphc / hand-written (goal <= 1.05), and graphc's own compile-time work (passes and
memory planning) as a share of JAX's trace + compile time (goal <= 10%). Lowering
efficiency is the ratio where both sides do the same work (every logit; one decode step);
reading ``logits[-1]`` is measured with graphc's passes and without them
(``pipeline="none"``), so the passes' own benefit shows apart from the lowering.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import graphc as gc
from graphc.models.qwen import QwenConfig, build_main, init_params
from graphc.models.qwen_jax import jitted_forward
from graphc.timing import interleaved_medians


def _medians(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median times of ``a`` and ``b``, measured alternately after 3 warm-up rounds."""
    t_a, t_b = interleaved_medians([a, b], repeats, warmup=3, sync=jax.block_until_ready)
    return t_a, t_b


def _line(label: str, t_g: float, t_h: float, rep: Any) -> None:
    own = rep.passes_seconds + rep.plan_seconds
    print(f"{label:<22} graphc {1e3 * t_g:8.3f} ms   hand-written {1e3 * t_h:8.3f} ms   "
          f"ratio {t_g / t_h:6.3f}   graphc passes+planning {1e3 * own:7.2f} ms = "
          f"{100 * (rep.graphc_share or 0.0):5.2f}% of JAX trace+compile")


def run(cfg: QwenConfig, n_prompt: int, repeats: int) -> dict[str, float]:
    """Measure both sides; return the figures."""
    params = init_params(cfg, seed=0)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    zeros = {f"l{i}.{kv}_cache": jnp.zeros((cfg.max_ctx, cfg.n_kv_heads, cfg.head_dim))
             for i in range(cfg.n_layers) for kv in ("k", "v")}
    tokens = np.arange(n_prompt, dtype=np.int32) % cfg.vocab
    pos = np.arange(n_prompt, dtype=np.int32)
    out: dict[str, float] = {}

    last = {"logits": [-1], "h_pre_norm": "all"}
    for label, reads, last_only, pipeline in (
            ("prefill, all logits", {"logits": "all", "h_pre_norm": "all"}, False, "default"),
            ("prefill, logits[-1]", last, True, "default"),
            ("prefill, no passes", last, True, "none")):
        exe = gc.compile(build_main(cfg, n_prompt), params=params, reads=reads, backend="jax",
                         pipeline=pipeline)
        feeds = {"tokens": jnp.asarray(tokens), "pos": jnp.asarray(pos)}
        hand = jitted_forward(cfg, last_only)
        state = {"c": {k: jnp.array(v) for k, v in zeros.items()}}

        def hand_step(hand: Any = hand, state: dict = state) -> Any:
            logits, h, state["c"] = hand(jparams, state["c"], jnp.asarray(tokens),
                                         jnp.asarray(pos))
            return logits, h

        t_g, t_h = _medians(lambda exe=exe, feeds=feeds: exe.run(feeds), hand_step, repeats)
        out[label] = t_g / t_h
        out[label + " ms"] = t_g
        _line(label, t_g, t_h, exe.report())
        out[label + " share"] = exe.report().graphc_share or 0.0

    dec = gc.compile(build_main(cfg, 1), params=params, backend="jax",
                     reads={"logits": "all", "h_pre_norm": "all"})
    f = {"tokens": jnp.asarray([5], jnp.int32), "pos": jnp.asarray([n_prompt], jnp.int32)}
    hand = jitted_forward(cfg)
    state = {"c": {k: jnp.array(v) for k, v in zeros.items()}}

    def hand_dec() -> Any:
        logits, h, state["c"] = hand(jparams, state["c"], f["tokens"], f["pos"])
        return logits, h

    t_g, t_h = _medians(lambda: dec.run(f), hand_dec, repeats * 4)
    out["decode"] = t_g / t_h
    _line("decode, 1 token", t_g, t_h, dec.report())
    print(f"lowering efficiency (the same work on both sides): prefill "
          f"{out['prefill, all logits']:.3f}, decode {out['decode']:.3f}; the passes on "
          f"logits[-1]: {out['prefill, no passes'] / out['prefill, logits[-1]']:.2f}x the "
          f"speed of the same reads without them")
    return out


def main() -> None:
    """Parse options and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller model, fewer repeats")
    args = ap.parse_args()
    if args.quick:
        cfg, n, repeats = QwenConfig(vocab=512, d_model=64, n_layers=2, max_ctx=64), 32, 10
    else:
        cfg = QwenConfig(vocab=8192, d_model=256, n_layers=4, n_heads=8, n_kv_heads=2,
                         d_ffn=768, max_ctx=512)
        n, repeats = 256, 20
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}: d={cfg.d_model}, "
          f"{cfg.n_layers} layers, vocab {cfg.vocab}, prompt {n} tokens; medians")
    run(cfg, n, repeats)


if __name__ == "__main__":
    main()
