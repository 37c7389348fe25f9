"""Memory planning figures: arena vs lower bound per strategy, scheduler gains, and the
planner + checker time on a 100k-node graph.

Run: python benchmarks/bench_memory.py [--quick]

Prints, side by side in one run:
1. for transformer prefill and decode graphs and for random branchy DAGs (UNet-like skip
   connections): arena bytes, lower bound and their ratio for greedy-by-size and for
   best-fit-in-order (the ggml-style allocator) on the same order;
2. the memory scheduler's peak against the input, breadth-first and depth-first (ggml's)
   order on random branchy DAGs;
3. the exact planner's arena against greedy-by-size's and the lower bound, on transformer
   graphs, the Qwen example (prefill and decode) and branchy DAGs;
4. plan + check time on a ~100k-node transformer graph (median of 3).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from graphc.models.qwen import QwenConfig, build_main
from graphc.passes.aliasing import check_aliasing
from graphc.passes.memory import plan_memory
from graphc.passes.schedule import peak_bytes, schedule
from graphc.testing.dags import random_branchy, unet_like


def strategies_table(quick: bool) -> None:
    """Arena/lower bound per strategy on several graph families."""
    cfg = QwenConfig(vocab=2048, d_model=256, n_layers=4, n_heads=8, n_kv_heads=2,
                     d_ffn=768, max_ctx=256)
    cases = [("transformer prefill 128 tok", build_main(cfg, 128)),
             ("transformer decode 1 tok", build_main(cfg, 1)),
             ("transformer verify 5 tok", build_main(cfg, 5))]
    seeds = range(3 if quick else 10)
    cases += [(f"branchy DAG seed {s}", random_branchy(80, seed=s)) for s in seeds]
    cases += [(f"UNet-like seed {s}", unet_like(depth=4, seed=s)) for s in seeds]
    print(f"{'graph':<28} {'nodes':>6} {'lower bound':>12} {'greedy':>10} {'ratio':>6} "
          f"{'best-fit':>10} {'ratio':>6} {'greedy/bf':>9} {'safe':>5}")
    fam: dict[str, list[float]] = {"transformer": [], "branchy": [], "UNet-like": []}
    for name, g in cases:
        greedy = plan_memory(g)
        bf = plan_memory(g, strategy="best-fit-in-order")
        safe = not check_aliasing(g, greedy) and not check_aliasing(g, bf)
        fam[name.split()[0]].append(greedy.ratio)
        print(f"{name:<28} {len(g):>6} {greedy.lower_bound_bytes:>12,} "
              f"{greedy.arena_bytes:>10,} {greedy.ratio:>6.3f} {bf.arena_bytes:>10,} "
              f"{bf.ratio:>6.3f} {greedy.arena_bytes / bf.arena_bytes:>9.3f} {safe!s:>5}")
    for k, v in fam.items():
        print(f"greedy-by-size / lower bound, {k}: max {max(v):.3f}, mean {np.mean(v):.3f}")


def scheduler_table(quick: bool) -> None:
    """Peak bytes of the memory schedule vs the input, breadth-first and depth-first
    (ggml's build order) orders."""
    seeds = range(5 if quick else 20)
    vs: dict[str, list[float]] = {"breadth-first": [], "depth-first": [], "input": []}
    for s in seeds:
        g = random_branchy(60, seed=s)
        mem = peak_bytes(g, schedule(g, "memory"))
        for base in vs:
            vs[base].append(peak_bytes(g, schedule(g, base)) / mem)
    print(f"\nmemory scheduler on {len(seeds)} random branchy DAGs (peak of the other order / "
          f"peak of the memory order; never below 1.0: every baseline is a candidate):")
    for base, r in vs.items():
        print(f"  vs {base + ':':<14} mean {np.mean(r):.3f}x, min {min(r):.3f}x, "
              f"max {max(r):.3f}x")
    cfg = QwenConfig(n_layers=4)
    g = build_main(cfg, 32)
    print(f"  transformer prefill: input {peak_bytes(g, g.nodes):,} B, memory "
          f"{peak_bytes(g, schedule(g, 'memory')):,} B")


def timing(quick: bool) -> None:
    """Plan + check time on a ~100k-node graph."""
    layers = 270 if quick else 2700
    g = build_main(QwenConfig(n_layers=layers, max_ctx=16), 8)
    times_p, times_c = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        plan = plan_memory(g)
        t1 = time.perf_counter()
        found = check_aliasing(g, plan)
        t2 = time.perf_counter()
        times_p.append(t1 - t0)
        times_c.append(t2 - t1)
    assert not found
    p, c = statistics.median(times_p), statistics.median(times_c)
    print(f"\nplan + check on {len(g):,} nodes: plan {p:.2f} s + check {c:.2f} s = "
          f"{p + c:.2f} s (goal: under 5 s), ratio {plan.ratio:.3f}")


def exact_table(quick: bool) -> None:
    """The exact planner against greedy-by-size and the lower bound."""
    cfg = QwenConfig(vocab=2048, d_model=256, n_layers=4, n_heads=8, n_kv_heads=2,
                     d_ffn=768, max_ctx=256)
    demo = QwenConfig()
    cases = [("transformer prefill 128 tok", build_main(cfg, 128)),
             ("transformer decode 1 tok", build_main(cfg, 1)),
             ("Qwen example prefill 32 tok", build_main(demo, 32)),
             ("Qwen example decode 1 tok", build_main(demo, 1))]
    cases += [(f"branchy DAG seed {s}", random_branchy(80, seed=s))
              for s in range(3 if quick else 10)]
    print("\nexact planner (strategy exact, 10 s limit) against greedy-by-size, per lower bound:")
    for name, g in cases:
        greedy = plan_memory(g)
        t0 = time.perf_counter()
        exact = plan_memory(g, strategy="exact", time_limit=10.0)
        seconds = time.perf_counter() - t0
        assert not check_aliasing(g, exact)
        print(f"  {name:<28} greedy {greedy.ratio:.3f}  exact {exact.ratio:.3f}  "
              f"({exact.certificate}; {seconds:.2f} s)")


def main() -> None:
    """Run all four parts."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer graphs, 10k nodes")
    args = ap.parse_args()
    strategies_table(args.quick)
    scheduler_table(args.quick)
    exact_table(args.quick)
    timing(args.quick)


if __name__ == "__main__":
    main()
