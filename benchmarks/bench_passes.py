"""Pass pipeline scaling and the FLOPs dead-output elimination and row pruning save.

Run: python benchmarks/bench_passes.py [--quick]

1. Times the output-driven pipeline (dead-outputs, prune-rows, fold, CSE, DCE) on
   transformer-shaped graphs of about 1k, 10k and 100k nodes, with and without IR
   verification after every pass (the PassManager default). Prints the median of several
   runs, the fitted scaling exponent (time ~ nodes**k) and the 100k-node time.
2. For a prefill graph with a large vocabulary (d=512, vocab=32000, 4 layers, 512 tokens)
   prints the cost model's FLOPs before and after, for reads ``logits[-1]`` (sampling)
   and ``h_pre_norm`` only (MTP prompt processing).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from graphc.models.qwen import QwenConfig, build_main
from graphc.passes import PassManager, cost, optimize_for_reads
from graphc.passes.cost import human
from graphc.timing import interleaved_medians

PIPELINE = ("dead-outputs{reads=logits[-1]},prune-rows{reads=logits[-1]},fold,cse,dce")


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    return interleaved_medians([fn], repeats, warmup=0)[0]


def scaling(quick: bool) -> None:
    """Print pipeline times for growing graphs and the fitted exponent."""
    layers = [27, 270] if quick else [27, 270, 2700]
    print("pipeline time on transformer-shaped graphs (median of runs)")
    print(f"{'nodes':>8}  {'functions (s)':>13}  {'PassManager+verify (s)':>22}  {'us/node':>8}")
    sizes, plain, managed = [], [], []
    for n_layers in layers:
        cfg = QwenConfig(n_layers=n_layers, max_ctx=16)
        g = build_main(cfg, 8)
        repeats = 3 if len(g) > 50_000 else 7
        t_fn = _median_time(lambda g=g: optimize_for_reads(g, {"logits": [-1]}), repeats)
        pm = PassManager(PIPELINE)
        t_pm = _median_time(lambda g=g, pm=pm: pm.run(g), repeats)
        sizes.append(len(g))
        plain.append(t_fn)
        managed.append(t_pm)
        print(f"{len(g):>8}  {t_fn:>13.3f}  {t_pm:>22.3f}  {1e6 * t_pm / len(g):>8.1f}")
    for label, ts in (("functions", plain), ("PassManager+verify", managed)):
        k = np.polyfit(np.log(sizes), np.log(ts), 1)[0]
        print(f"fitted scaling exponent ({label}): {k:.3f}   (goal <= 1.15)")
    print(f"largest graph: {sizes[-1]} nodes in {managed[-1]:.2f} s with verification "
          f"(goal: under 5 s for 100k nodes)")


def flops(quick: bool) -> None:
    """Print FLOPs before and after for a large-vocabulary prefill graph."""
    cfg = QwenConfig(vocab=32000, d_model=512, n_layers=4, n_heads=8, n_kv_heads=2,
                     d_ffn=1536, max_ctx=512)
    g = build_main(cfg, 128 if quick else 512)
    base = cost(g).flops
    print(f"\nprefill, d=512, vocab=32000, 4 layers, {g.inputs['tokens'].shape[0]} tokens")
    print(f"{'reads':<28} {'FLOPs':>12} {'after/before':>13} {'speed-up':>9}")
    print(f"{'everything (no pass)':<28} {human(base):>12} {1.0:>13.4f} {1.0:>8.2f}x")
    for label, reads in [("logits[-1] (sampling)", {"logits": [-1]}),
                         ("h_pre_norm (MTP prefill)", {"h_pre_norm": "all"}),
                         ("logits[-1] + h_pre_norm", {"logits": [-1], "h_pre_norm": "all"})]:
        opt, _ = optimize_for_reads(g, reads)
        f = cost(opt).flops
        print(f"{label:<28} {human(f):>12} {f / base:>13.4f} {base / f:>8.2f}x")


def main() -> None:
    """Run both parts."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (seconds)")
    args = ap.parse_args()
    scaling(args.quick)
    flops(args.quick)


if __name__ == "__main__":
    main()
