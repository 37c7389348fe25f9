"""llama.cpp issue #28448 on ggml's real allocator: the table of pairs.

For each pair of :data:`graphc.interop.stale_plan.PAIRS`, run on one bare ``ggml_gallocr``
and through ``ggml_backend_sched``: whether B was corrupted (judged without graphc, against
NumPy and a fresh gallocr, with the largest error), graphc's static verdict on B, and the
dynamic check's (scheduler only). Then the drawn pairs: seeds, how many B were corrupted,
misses (a corrupted B graphc found no hazard in), false alarms (a hazard on a correct B;
each checked against the same pair run node by node through the scheduler), latent stale
plans (a correct B reported only as ``stale-plan``), and how many corruptions the dynamic
check saw.

``--json`` prints the figures as JSON; ``--seeds N`` (default 30) drawn pairs;
``--quick`` 5 seeds. Needs the ``llama`` extra.
"""

from __future__ import annotations

import argparse
import json

from graphc.interop.stale_plan import PAIRS, judge_random, random_pair, run_pair


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=30)
    args = ap.parse_args()
    seeds = range(5 if args.quick else args.seeds)
    rows = [run_pair(name, via) for name in PAIRS for via in ("gallocr", "sched")]
    summaries = [judge_random(seeds, "gallocr"), judge_random(seeds, "sched")]
    node_by_node = {s: run_pair(random_pair(s), "sched", s).corrupted
                    for s in summaries[0].false_alarms}
    if args.json:
        print(json.dumps({
            "pairs": [r.to_dict() for r in rows],
            "random": [{**s.to_dict(), "false_alarms_corrupted_node_by_node":
                        {str(k): node_by_node[k] for k in s.false_alarms}
                        if s.via == "gallocr" else {}} for s in summaries],
        }, indent=1))
        return
    head = f"{'pair':22} {'via':8} {'corrupted (max error)':24} {'graphc static':44} dynamic"
    print(head)
    print("-" * len(head))
    for r in rows:
        bad = f"yes ({r.max_error:.3g})" if r.corrupted else f"no ({r.max_error:.1e})"
        print(f"{r.name:22} {r.via:8} {bad:24} {r.static_text():44} {r.dynamic_text()}")
    print()
    print(f"{'drawn pairs':12} {'seeds':>5} {'corrupted':>9} {'misses':>6} "
          f"{'false alarms':>12} {'latent stale':>12} {'dynamic saw':>11}")
    for s in summaries:
        dyn = "-" if s.via == "gallocr" else f"{len(s.dynamic_seen)}/{len(s.corrupted)}"
        print(f"{s.via:12} {len(s.seeds):5} {len(s.corrupted):9} {len(s.misses):6} "
              f"{len(s.false_alarms):12} {len(s.latent):12} {dyn:>11}")
    for seed, bad in node_by_node.items():
        print(f"  false alarm on seed {seed} (gallocr): run node by node through the scheduler "
              f"B is {'corrupted: a real latent hazard' if bad else 'still correct'}")


if __name__ == "__main__":
    main()
