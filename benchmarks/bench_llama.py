"""graphc's checker on the graphs llama.cpp and ggml really run (the README's figures).

Prints, in one run:
- for tiny random ``qwen3`` and ``qwen35`` (with MTP) models: each captured graph's nodes,
  llama.cpp's compute-buffer bytes, the bytes ggml's placement of this graph reaches,
  graphc's plans of the same graph (greedy-by-size and the best it has) with the max-live
  bound, the checker's verdict and the stale reads the dynamic check saw;
- like for like: a prompt that fills the batch llama.cpp sized its buffer for;
- the seed bug on ggml's allocator, with and without the OUTPUT flag;
- real memory as the oracle: nodes moved across ggml's real buffer, computed by ggml.

``--json`` prints the rows as a JSON list; ``--quick`` skips the like-for-like prompt and
llama.cpp's default context (F16 KV cache, flash attention).
Needs the ``llama`` extra.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from graphc.interop.ggml_import import check_import, import_capture
from graphc.interop.ggml_oracle import move_every_node
from graphc.interop.llama_check import judge
from graphc.interop.llama_run import Mode, capture_llama
from graphc.interop.seed import seed_graph
from graphc.interop.tiny_models import write_qwen3, write_qwen35_mtp

PROMPT = list(b"graphc!!")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        q3 = write_qwen3(Path(tmp) / "tiny-qwen3.gguf")
        q35 = write_qwen35_mtp(Path(tmp) / "tiny-qwen35.gguf")
        runs = [("qwen3", capture_llama(q3, PROMPT)),
                ("qwen35", capture_llama(q35, PROMPT, Mode(mtp=True)))]
        if not args.quick:
            full = [10 + i % 200 for i in range(63)]  # n_ctx 64 = n_ubatch: a full batch
            runs.append(("qwen3 (63-token prompt)", capture_llama(q3, full)))
            runs.append(("qwen35 (f16 KV, flash attn)",
                         capture_llama(q35, PROMPT, Mode(mtp=True, kv_type="f16",
                                                         flash_attn=True))))
    for model, run in runs:
        for label, cap in run.captures.items():
            if model.startswith("qwen3 (") and label != "prompt":
                continue
            v = judge(cap, label)
            rows.append({"kind": "llama", "model": model, **v.to_dict()})
    for mark in (False, True):
        s = seed_graph(mark_tap=mark)
        found = check_import(import_capture(s.capture))
        rows.append({"kind": "seed", "tap_marked": mark,
                     "violations": [f"{v.kind}: {v.tensor.name if v.tensor is not None else '-'}"
                                    for v in found],
                     "tap_holds": "pre-norm" if np.allclose(s.tap_after_run, s.pre_norm)
                     else "post-norm" if np.allclose(s.tap_after_run, s.post_norm, atol=1e-5)
                     else "other"})
    c = move_every_node()
    rows.append({"kind": "oracle", "moves": c.moves, "broke": c.broke, "flagged": c.flagged,
                 "missed": c.missed, "flagged_harmless": c.flagged_harmless})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'graph':<40} {'nodes':>5} {'llama.cpp buf':>13} {'ggml reaches':>12} "
          f"{'graphc greedy':>13} {'graphc best':>11} {'max-live':>9}  verdict")
    for r in rows:
        if r["kind"] != "llama":
            continue
        print(f"{r['model'] + ', ' + str(r['graph']):<40} {r['nodes']:>5} "
              f"{r['compute_buffer_bytes']:>13,} {r['ggml_span_bytes']:>12,} "
              f"{r['graphc_greedy_bytes']:>13,} {r['graphc_best_bytes']:>11,} "
              f"{r['max_live_bound_bytes']:>9,}  {r['verdict']}, "
              f"{len(list(r['dynamic_findings']))} stale reads")
    for r in rows:
        if r["kind"] == "seed":
            state = "marked" if r["tap_marked"] else "unmarked"
            print(f"seed bug, tap {state}: violations {r['violations'] or 'none'}; "
                  f"the tap's bytes after ggml ran hold the {r['tap_holds']} values")
    o = rows[-1]
    print(f"real memory as the oracle: {o['moves']} moves, {o['broke']} broke an output, "
          f"{o['flagged']} flagged ({o['flagged_harmless']} where the outputs came out "
          f"equal), {o['missed']} missed")


if __name__ == "__main__":
    main()
