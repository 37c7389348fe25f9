"""Prefill with and without graphc's output-driven passes, at large vocabularies.

Run: python benchmarks/bench_prefill.py [--quick]

For each vocabulary size, compiles prompt processing of the example model (JAX backend)
for three kinds of caller: every output read; only ``h_pre_norm`` (MTP prompt
processing); ``logits[-1]`` and ``h_pre_norm`` (sampling plus MTP). Each way of reading is
compiled twice: with ``pipeline="none"`` (the jitted function returns only what is read,
so XLA's own dead-code elimination already drops unread outputs) and with the default
pipeline (graphc's dead-output elimination and row pruning into the last layer). It
prints the median time of each (alternating runs after warm-up), the speed-up of each
against "every output", the speed-up graphc's passes add over XLA alone, and the cost
model's predicted speed-up (FLOPs ratio).
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import graphc as gc
from graphc.models.qwen import QwenConfig, build_main, init_params
from graphc.passes import cost
from graphc.timing import interleaved_medians

CASES = [("every output", None), ("h_pre_norm only", {"h_pre_norm": "all"}),
         ("logits[-1] + h_pre_norm", {"logits": [-1], "h_pre_norm": "all"})]


def measure(vocab: int, d_model: int, layers: int, n_tokens: int, repeats: int) -> None:
    """Print one block of the table."""
    cfg = QwenConfig(vocab=vocab, d_model=d_model, n_layers=layers, n_heads=8, n_kv_heads=2,
                     d_ffn=3 * d_model, max_ctx=n_tokens)
    params = {k: v for k, v in init_params(cfg, seed=0, mtp=False).items()}
    g = build_main(cfg, n_tokens)
    feeds = {"tokens": jnp.asarray(np.arange(n_tokens) % vocab, jnp.int32),
             "pos": jnp.arange(n_tokens, dtype=jnp.int32)}
    exes: list[Any] = []
    for _, reads in CASES:
        for pipeline in ("none", "default"):
            exes.append(gc.compile(g, params=params, reads=reads, backend="jax",
                                   pipeline=pipeline))
    med = interleaved_medians([lambda exe=exe: exe.run(feeds) for exe in exes], repeats,
                              sync=jax.block_until_ready)
    base = med[0]
    print(f"\nvocab {vocab:,}, d={d_model}, {layers} layers, {n_tokens} tokens")
    print(f"  {'reads':<26} {'XLA alone':>10} {'graphc':>10} {'vs every output':>16} "
          f"{'passes over XLA':>16} {'predicted (FLOPs)':>18}")
    for k, (label, _) in enumerate(CASES):
        t_none, t_pass = med[2 * k], med[2 * k + 1]
        flops = cost(exes[2 * k + 1].graph).flops
        print(f"  {label:<26} {1e3 * t_none:7.2f} ms {1e3 * t_pass:7.2f} ms "
              f"{base / t_pass:15.2f}x {t_none / t_pass:15.2f}x "
              f"{cost(g).flops / flops:17.2f}x")


def main() -> None:
    """Run the table for each vocabulary size."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small vocabularies, few repeats")
    args = ap.parse_args()
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}")
    if args.quick:
        for vocab in (4096, 8192):
            measure(vocab, 128, 2, 64, 3)
        return
    for vocab in (32000, 151936):
        measure(vocab, 256, 4, 128, 7)


if __name__ == "__main__":
    main()
