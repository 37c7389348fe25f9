"""graphc's Qwen example against llama.cpp on the same weights and token ids.

Run: python benchmarks/bench_llama_match.py [--quick] [--json]

For (a) seeded random weights of the default ``QwenConfig`` and (b) the trained checkpoint
``graphc/models/tiny_mtp.npz``, exports the model to GGUF (architecture qwen2, F32), runs
llama.cpp (F32 KV cache, no flash attention, one thread) and graphc's NumPy reference
backend on the same prompt, and prints per model: the prompt length, the largest
``|logit difference|`` over every prompt position, the same over the decode steps, whether
the greedy generations are identical and how many generated tokens were compared. A third
row covers another shape (vocab 1000, 8 query heads over 2 KV heads, 3 layers, eps 1e-5,
RoPE base 5e5, norm weights not 1).

``--quick``: short prompts and 8 generated tokens. ``--json``: a JSON list of rows instead
of the table. Exits 1 when a generation differs. Needs ``pip install "graphc[llama]"``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import graphc as gc
from graphc.interop.llama_compare import compare_with_llama
from graphc.models.qwen import QwenConfig, init_params, load_weights

CHECKPOINT = Path(__file__).resolve().parent.parent / "graphc" / "models" / "tiny_mtp.npz"
PROMPT = (b"class Counter:\n    def __init__(self, name, start=0):\n        self.name = name\n"
          b"        self.count = start\n\n    def increment(self):\n        self.")


def _cases(quick: bool) -> list[tuple[str, dict[str, np.ndarray], QwenConfig, list[int], int]]:
    """(label, params, config, prompt ids, tokens to generate) per model."""
    cfg = QwenConfig()
    rng = np.random.default_rng(0)
    n_random = 12 if quick else 64
    n_gen = 8 if quick else 48
    cases = [("random (default QwenConfig, seed 0)", init_params(cfg, seed=0), cfg,
              [int(t) for t in rng.integers(0, cfg.vocab, size=n_random)], n_gen)]
    params, trained_cfg = load_weights(str(CHECKPOINT))
    if trained_cfg is None:
        raise gc.GraphError(f"{CHECKPOINT} has no stored config")
    prompt = PROMPT[-16:] if quick else PROMPT
    cases.append(("trained (graphc/models/tiny_mtp.npz)", params, trained_cfg, list(prompt),
                  8 if quick else 64))
    # a shape the two above do not cover: vocab 1000 (no byte vocabulary), 4 query heads
    # per KV head, 3 layers, another eps and RoPE base, and norm weights that are not 1
    other = QwenConfig(vocab=1000, d_model=64, n_layers=3, n_heads=8, n_kv_heads=2,
                       d_ffn=96, rope_theta=500000.0, eps=1e-5)
    weights = init_params(other, seed=1)
    for name, w in weights.items():
        if w.ndim == 1:
            weights[name] = (1 + 0.5 * rng.standard_normal(w.shape)).astype(np.float32)
    cases.append(("random (vocab 1000, 8/2 heads, 3 layers)", weights, other,
                  [int(t) for t in rng.integers(0, other.vocab, size=n_random)], n_gen))
    return cases


def run(quick: bool) -> list[dict[str, Any]]:
    """Compare every case; one row (a dict of plain values) per model."""
    rows: list[dict[str, Any]] = []
    for label, params, cfg, prompt, n_gen in _cases(quick):
        t0 = time.perf_counter()
        r = compare_with_llama(params, cfg, prompt, n_gen)
        rows.append({
            "model": label, "d_model": cfg.d_model, "layers": cfg.n_layers,
            "heads": cfg.n_heads, "kv_heads": cfg.n_kv_heads, "vocab": cfg.vocab,
            "prompt_len": r.prompt_len, "max_logit_diff": r.max_logit_diff,
            "max_abs_logit": r.max_abs_logit,
            "max_decode_diff": None if math.isnan(r.max_decode_diff) else r.max_decode_diff,
            "prompt_argmax_match": r.prompt_argmax_match,
            "tokens_match": r.tokens_match, "tokens_compared": r.n_compared,
            "tokens_matching": r.n_matching, "graphc_tokens": r.graphc_tokens,
            "llama_tokens": r.llama_tokens, "seconds": time.perf_counter() - t0,
        })
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    print("graphc (reference backend, NumPy) vs llama.cpp (qwen2 GGUF, F32 weights and KV "
          "cache, no flash attention)")
    print(f"{'model':<42}{'prompt':>7}{'max |dlogit| prompt':>21}{'decode':>11}"
          f"{'max |logit|':>13}{'tokens match':>14}{'compared':>10}")
    for r in rows:
        decode = r["max_decode_diff"]
        print(f"{r['model']:<42}{r['prompt_len']:>7}{r['max_logit_diff']:>21.3e}"
              f"{'-' if decode is None else format(decode, '.3e'):>11}"
              f"{r['max_abs_logit']:>13.3f}{'yes' if r['tokens_match'] else 'no':>14}"
              f"{r['tokens_compared']:>10}")
    for r in rows:
        shown = (repr(bytes(r["graphc_tokens"])) if r["model"].startswith("trained")
                 else str(r["graphc_tokens"]))
        print(f"{r['model']}: graphc generated {shown}")
        if not r["tokens_match"]:
            print(f"{r['model']}: llama  {r['llama_tokens']} (first {r['tokens_matching']} "
                  "agree)")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it; 0 when every generation matched, else 1."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short prompts, 8 generated tokens")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    args = p.parse_args(argv)
    try:
        rows = run(args.quick)
    except gc.GraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        _print_table(rows)
    return 0 if all(r["tokens_match"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
