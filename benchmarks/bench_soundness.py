"""Soundness figures: the static aliasing checker against the sanitizer, and what the
sanitizer costs.

Run: python benchmarks/bench_soundness.py [--quick] [--graphs N] [--seed S]

Prints, from one run:
1. over generated graphs (states, swaps, in-place cache updates, every op family, views
   of views, rank-3+ permutations) with generated reads (taps among them: tensors read
   after the run that are not outputs, views of reassigned states included, judged as
   ``read_buffer`` shows them once the run has returned, after the state updates) x
   every planner plan (each strategy told the reads, two orders, with and without
   planner-chosen in-place writes) x one mutant per mutation kind
   (chosen without any liveness), the outcome of each (graph, plan, mutation) triple:
   ``safe``, ``caught``, ``missed`` (static safe, the run is not: the goal is 0),
   ``conservative`` (refused by a deliberate rule, runs correctly) and ``false-alarm``
   (refused, runs correctly, no conservative rule: the goal is 0);
2. the catch rate per mutation kind, judged by the sanitizer: of the mutants whose run
   shows a stale read or a wrong value, the share the static checker refused;
3. the sanitizer's cost against the plain arena executor on the demo model (prefill and
   one decode step), median of alternating calls.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

import graphc as gc
from graphc.models.qwen import QwenConfig, build_main, init_params
from graphc.ops import OP_TABLE
from graphc.testing.soundness import OUTCOMES, Tally, differential
from graphc.testing.strategies import ALL_FAMILIES, graphs, reads_for


def soundness_table(n_graphs: int, seed: int) -> Tally:
    """Judge every planner plan and mutant of ``n_graphs`` generated graphs."""
    tally = Tally()
    count = [0, 0, 0]  # graphs, graphs read with taps, ... with a tap on a reassigned state

    @settings(max_examples=n_graphs, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(g=graphs(max_nodes=10, inplace=True, max_rank=4, states=True,
                    families=ALL_FAMILIES), data=st.data(), data_seed=st.integers(0, 2**16))
    def one(g: gc.Graph, data: st.DataObject, data_seed: int) -> None:
        reads = data.draw(reads_for(g, taps=True))
        taps = [t for t in reads if isinstance(t, gc.Tensor)]
        count[0] += 1
        count[1] += bool(taps)
        count[2] += any(_on_reassigned_state(g, t) for t in taps)
        differential(g, tally, seed=data_seed, reads=reads)

    t0 = time.perf_counter()
    hseed(seed)(one)()
    seconds = time.perf_counter() - t0
    rows = sorted(tally.counts)
    print(f"{count[0]} generated graphs, {tally.total:,} (graph, plan, mutation) triples in "
          f"{seconds:.0f} s")
    print(f"taps: {count[1]} graphs read with taps, {count[2]} with a tap on a view of a "
          f"state the run reassigns (read after the state updates)")
    print(f"{'mutation':<16} " + " ".join(f"{o:>12}" for o in OUTCOMES)
          + f" {'unsafe runs':>11} {'catch rate':>10}")
    for name in rows:
        c = tally.counts[name]
        unsafe = c["caught"] + c["missed"]
        rate = f"{100 * c['caught'] / unsafe:.1f}%" if unsafe else "-"
        print(f"{name:<16} " + " ".join(f"{c[o]:>12,}" for o in OUTCOMES)
              + f" {unsafe:>11,} {rate:>10}")
    totals = {o: tally.outcome_total(o) for o in OUTCOMES}
    unsafe = totals["caught"] + totals["missed"]
    print(f"{'all':<16} " + " ".join(f"{totals[o]:>12,}" for o in OUTCOMES)
          + f" {unsafe:>11,} {100 * totals['caught'] / max(unsafe, 1):>9.1f}%")
    print(f"disagreements: missed unsafe plans {totals['missed']}, unexplained false alarms "
          f"{totals['false-alarm']}; conservative refusals {totals['conservative']:,} "
          f"(kinds: {dict(tally.conservative_kinds.most_common())})")
    for text in tally.failures[:5]:
        print("DISAGREEMENT", text)
    return tally


def _on_reassigned_state(g: gc.Graph, t: gc.Tensor) -> bool:
    """True when ``t`` is a view (of views) of a state the run assigns a new value."""
    while t.inputs and t.op in OP_TABLE and OP_TABLE[t.op].is_view:
        t = t.inputs[0]
    return t.op == "state" and t in g.assigns and g.assigns[t] is not t


def _ms(exe: gc.Executable, feeds: dict[str, np.ndarray]) -> float:
    """One run's wall time in milliseconds, from an empty cache."""
    exe.reset_state()
    t0 = time.perf_counter()
    exe.run(feeds)
    return 1000 * (time.perf_counter() - t0)


def sanitizer_cost(quick: bool) -> None:
    """Sanitized arena run time over plain arena run time on the demo model's shape."""
    cfg = QwenConfig()  # the demo's default model
    params = init_params(cfg, seed=0)
    repeat = 5 if quick else 15
    print(f"{'graph':<22} {'arena ms':>9} {'sanitized ms':>13} {'ratio':>7}")
    for name, n_tokens in (("demo prefill 32 tok", 32), ("demo decode 1 tok", 1)):
        g = build_main(cfg, n_tokens)
        feeds = {"tokens": (np.arange(n_tokens) % cfg.vocab).astype(np.int32),
                 "pos": np.arange(n_tokens, dtype=np.int32)}
        plain = gc.compile(g, params=params, backend="arena")
        checked = gc.compile(g, params=params, backend="arena", sanitize=True)
        plain.run(feeds)
        checked.run(feeds)
        a: list[float] = []
        b: list[float] = []
        for _ in range(repeat):  # alternate, so drift hits both alike
            a.append(_ms(plain, feeds))
            b.append(_ms(checked, feeds))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{name:<22} {ma:>9.2f} {mb:>13.2f} {mb / ma:>6.2f}x")


def main() -> None:
    """Print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few graphs, for a smoke test")
    ap.add_argument("--graphs", type=int, default=None, help="generated graphs (default 500)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = args.graphs if args.graphs is not None else (8 if args.quick else 500)
    print("== static checker vs sanitizer ==")
    soundness_table(n, args.seed)
    print("\n== sanitizer cost on the demo model ==")
    sanitizer_cost(args.quick)


if __name__ == "__main__":
    main()
