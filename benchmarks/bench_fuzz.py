"""How well ``graphc fuzz`` finds wrong passes: per seeded bug (``graphc.testing.
wrong_passes``), the share of runs (one per seed) that catch it at the default settings
(200 examples, generation aimed at the pass's patterns, half swarm), the median examples
and seconds to the first failure; and the correct passes as controls, which must never
fail (a failure there is a false alarm).

    python benchmarks/bench_fuzz.py [--seeds 5] [--examples 200] [--backends reference,arena]
                                    [--only NAME,...] [--no-aim]

The backends default to reference and arena (a pass bug shows on any backend; add jax to
time a run as ``graphc fuzz`` does by default).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from graphc.testing import wrong_passes
from graphc.testing.fuzz import run_fuzz


def main(argv: list[str] | None = None) -> int:
    """Run the table; exit 1 unless every bug was caught in every run and no control
    failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--backends", default="reference,arena")
    ap.add_argument("--only", default="", help="comma-separated pass names")
    ap.add_argument("--no-aim", action="store_true", help="do not aim at the patterns' ops")
    args = ap.parse_args(argv)
    backends = tuple(b for b in args.backends.split(",") if b)
    only = [n for n in args.only.split(",") if n]
    rows = [(n, d, True) for n, d in wrong_passes.WRONG.items()] + [
        (n, d, False) for n, d in wrong_passes.CONTROLS.items()]
    if only:
        rows = [r for r in rows if r[0] in only]
    print(f"graphc fuzz against seeded wrong passes: {args.seeds} seeds, {args.examples} "
          f"examples a run, backends {','.join(backends)}, aim {'off' if args.no_aim else 'on'}")
    print(f"{'pipeline':<24} {'caught':>7} {'median ex':>9} {'median s':>9} {'changed':>8}  bug")
    missed = false_alarms = 0
    total_ex = total_s = aimed_ex = aimed_s = 0.0
    with tempfile.TemporaryDirectory() as out:
        for name, desc, wrong in rows:
            caught, exs, secs, changed = 0, [], [], []
            for seed in range(args.seeds):
                r = run_fuzz(examples=args.examples, seed=seed, pipeline=name,
                             backends=backends, out_dir=out, aim=not args.no_aim)
                total_ex += r.examples
                total_s += r.seconds
                if r.failed:
                    caught += 1
                    exs.append(r.first_failure_examples or r.examples)
                    secs.append(r.first_failure_seconds or r.seconds)
                elif r.aim_ops:
                    aimed_ex += r.examples
                    aimed_s += r.seconds
                changed.append(r.changed / r.examples if r.examples else 0.0)
            share = f"{caught}/{args.seeds}"
            med_ex = f"{statistics.median(exs):.0f}" if exs else "-"
            med_s = f"{statistics.median(secs):.2f}" if secs else "-"
            ch = f"{100 * statistics.median(changed):.0f}%"
            tag = desc if wrong else f"control: {desc}"
            print(f"{name:<24} {share:>7} {med_ex:>9} {med_s:>9} {ch:>8}  {tag}", flush=True)
            if wrong:
                missed += args.seeds - caught
            else:
                false_alarms += caught
    n_wrong = sum(1 for r in rows if r[2])
    print(f"missed runs {missed} of {n_wrong * args.seeds}; false alarms {false_alarms}; "
          f"{total_ex / total_s if total_s else 0:.1f} examples/s overall"
          + (f", {aimed_ex / aimed_s:.1f}/s in clean runs with aiming" if aimed_s else ""))
    return 1 if missed or false_alarms else 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - t0:.0f} s")
    sys.exit(code)
