"""Speculative decoding (one compiled graph per round) against greedy decoding, in wall time.

Run: python benchmarks/bench_speculative.py [--quick] [--json] [--stream] [--held-out]

For each model and draft length k, on the JAX backend: greedy decoding (one call per
token) and speculative decoding with the MTP head (one call for the prompt, one per
round) generate the same tokens (checked), timed alternately, medians of the runs:
tokens/s of the whole generation (the prompt call included) and, under ``decode``, the
speed-up of decoding alone (tokens after the first, per second after the prompt call;
medians over the same runs). Both
loops feed each call's results straight into the next call and read the tokens at the
end (the strongest greedy baseline: no call waits for the host); ``--stream`` reads each
call's tokens before the next call instead, as streaming output or a stop token needs.
Models:

- ``demo checkpoint``: the shipped trained tiny model (``graphc/models/tiny_mtp.npz``) on the
  demo's prompt: real acceptance, but the MTP head is half as large as the 2-layer main
  model, so every draft costs half a greedy step;
- ``demo checkpoint, light head``: the same model drafting with its light MTP head
  (``mtpl.*``: no attention, no KV cache, one SwiGLU FFN; ``python examples/train_tiny.py
  --light-head-on graphc/models/tiny_mtp.npz``), applied once to the last accepted pair and
  k-1 more times to chain drafts;
- ``demo checkpoint, MLP head``: the same model drafting with its MLP head (``mtpm.*``:
  one hidden layer on the post-norm hidden state, distilled from the main model;
  ``python examples/train_tiny.py --mlp-head-on graphc/models/tiny_mtp.npz``): two matmuls,
  a gather and an argmax per draft;
- ``trained, 6 layers``: the same training recipe with a 6-layer main model
  (``graphc/models/tiny_mtp_6l.npz``; not in ``--quick``): real acceptance where the head is
  a sixth of the main model's layers, with its block head and (when the checkpoint has
  one) its MLP head;
- ``larger, random``: 8 layers, d_model 512 (``--quick``: 4 layers, 256), seeded random
  weights: the main model dominates, but untrained drafts are rarely accepted;
- ``larger, rigged``: the same sizes with weights under which every draft is right
  (:func:`graphc.models.speculative.rigged_params`): the ceiling at those sizes.

``--held-out`` instead runs the demo checkpoint's three heads at k = 1 and 4 on 8
held-out prompts (:func:`held_out`), so the figures do not rest on the demo prompt alone.

Two predictions of the decoding speed-up stand beside each measurement. The FLOP and
call-count model: a call costs a fixed ``t_call`` (measured: a compiled call that does no
arithmetic) plus its FLOPs (:func:`graphc.passes.cost`) at the rate a greedy decode step
achieves. The op-count model: ``t_call`` plus the call's ops (nodes that are not leaves or
views) at the time per op a greedy step takes -- on a CPU, calls this small cost per op,
not per FLOP. A predicted speed-up is (tokens per round) x (greedy step time) /
(predicted round time). The step and round times are the decoding loops' own (a step:
1 / greedy's decoding tokens/s; a round: tokens per round / speculative's), and their
measured ratio is printed too. ``--json`` prints the rows as a JSON
list instead (keys ``model``, ``k``, ``greedy_tokens_per_s``,
``speculative_tokens_per_s``, ``speedup``, ``greedy_decode_tokens_per_s``,
``speculative_decode_tokens_per_s``, ``decode_speedup``, ``tokens_per_call``, ``acceptance``,
``predicted_speedup``, ``round_over_step_measured``, ``round_over_step_predicted``,
``predicted_speedup_ops``, ``round_over_step_predicted_ops``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

import graphc as gc
from graphc.models.demo import PROMPT
from graphc.models.qwen import QwenConfig, init_params, load_weights, mlp_param_shapes
from graphc.models.speculative import (
    HEADS,
    Runner,
    greedy_generate,
    rigged_params,
    speculative_generate,
)
from graphc.passes import cost
from graphc.timing import interleaved_medians

CHECKPOINT = Path(__file__).parent.parent / "graphc" / "models" / "tiny_mtp.npz"
DEEPER = Path(__file__).parent.parent / "graphc" / "models" / "tiny_mtp_6l.npz"
"""The same recipe with a 6-layer main model (``python examples/train_tiny.py --layers 6
--out graphc/models/tiny_mtp_6l.npz``): trained drafts on a main model that costs more than
its one-layer head."""


def call_overhead(repeats: int) -> float:
    """Median seconds of one compiled JAX call that does no arithmetic worth counting
    (the per-call cost of the FLOP and call-count model)."""
    g = gc.Graph("nothing")
    x = g.input("tokens", (1,), "i32")
    g.set_output(g.add(x, x), "y")
    exe = gc.compile(g, backend="jax")
    feed = {"tokens": np.zeros(1, np.int32)}
    (t,) = interleaved_medians([lambda: np.asarray(exe.run(feed)["y"])], 50 * repeats)
    return t


def ops(g: gc.Graph) -> int:
    """Ops a call computes: the nodes that are neither leaves nor views (the op-count
    model's unit: on a CPU, small calls cost per op, not per FLOP)."""
    return sum(1 for t in g.node_view
               if not t.is_leaf and not (t.op in gc.OP_TABLE and gc.OP_TABLE[t.op].is_view))


def timed_pair(runner: Runner, prompt: list[int], n_new: int, k: int, repeats: int,
               stream: bool = False) -> tuple[float, float, float, float]:
    """Greedy and speculative decoding of ``prompt`` timed alternately: (median seconds of
    a greedy generation, of a speculative one, and the median decoding tokens/s of each,
    over the same runs)."""
    g_decode: list[float] = []
    s_decode: list[float] = []

    def greedy() -> None:
        g_decode.append(greedy_generate(runner, prompt, n_new, stream=stream)[1]
                        .decode_tokens_per_second)

    def speculative() -> None:
        s_decode.append(speculative_generate(runner, prompt, n_new, k, stream=stream)[1]
                        .decode_tokens_per_second)

    t_greedy, t_spec = interleaved_medians([greedy, speculative], repeats)
    return t_greedy, t_spec, float(np.median(g_decode)), float(np.median(s_decode))


def measure(model: str, cfg: QwenConfig, params: dict[str, np.ndarray], prompt: list[int],
            n_new: int, ks: list[int], repeats: int, t_call: float, stream: bool = False,
            head: str = "block") -> list[dict[str, Any]]:
    """One row per draft length k for one model drafting with its ``head`` (``stream``:
    both loops read every call's tokens before the next call)."""
    runner = Runner(cfg, params, backend="jax", head=head)
    runner.prepare(len(prompt), None)
    plain, _ = greedy_generate(runner, prompt, n_new)
    _, step = runner.greedy(len(prompt))
    rows = []
    for k in ks:
        runner.prepare(len(prompt), k, greedy=False)
        spec, stats = speculative_generate(runner, prompt, n_new, k)
        if spec != plain:
            raise SystemExit(f"{model}, k={k}: speculative output differs from greedy")
        _, rnd = runner.speculative(len(prompt), k)
        t_greedy, t_spec, g_dec, s_dec = timed_pair(runner, prompt, n_new, k, repeats,
                                                    stream)
        per_round = (stats.tokens - 1) / max(stats.calls - 1, 1)
        # a step's and a round's time as the decoding loops see them
        t_step, t_round = 1.0 / g_dec, per_round / s_dec
        f_step, f_round = cost(step.graph).flops, cost(rnd.graph).flops
        rate = f_step / max(t_step - t_call, 1e-9)  # FLOPs per second of a greedy step
        predicted_round = t_call + f_round / rate
        o_step, o_round = ops(step.graph), ops(rnd.graph)
        per_op = (t_step - t_call) / o_step  # seconds per op of a greedy step
        predicted_round_ops = t_call + o_round * per_op
        rows.append({
            "model": model, "k": k,
            "greedy_tokens_per_s": n_new / t_greedy,
            "speculative_tokens_per_s": n_new / t_spec,
            "speedup": t_greedy / t_spec,
            "greedy_decode_tokens_per_s": g_dec,
            "speculative_decode_tokens_per_s": s_dec,
            "decode_speedup": s_dec / g_dec,
            "tokens_per_call": stats.tokens_per_call,
            "acceptance": stats.acceptance_rate,
            "round_over_step_measured": t_round / t_step,
            "round_over_step_predicted": predicted_round / t_step,
            "predicted_speedup": per_round * t_step / predicted_round,
            "round_over_step_predicted_ops": predicted_round_ops / t_step,
            "predicted_speedup_ops": per_round * t_step / predicted_round_ops,
        })
    return rows


Model = tuple[str, QwenConfig, dict[str, np.ndarray], list[int], str]


def models(quick: bool) -> list[Model]:
    """(name, config, weights, prompt, MTP head) of each model, the demo checkpoint first
    (with its block head, then with its light head)."""
    params, cfg = load_weights(str(CHECKPOINT))
    assert cfg is not None
    out: list[Model] = [("demo checkpoint", cfg, params, list(PROMPT), "block"),
                        ("demo checkpoint, light head", cfg, params, list(PROMPT), "light"),
                        ("demo checkpoint, MLP head", cfg, params, list(PROMPT), "mlp")]
    if not quick and DEEPER.exists():
        deep, deep_cfg = load_weights(str(DEEPER))
        assert deep_cfg is not None
        out.append((f"trained, {deep_cfg.n_layers} layers", deep_cfg, deep, list(PROMPT),
                    "block"))
        if set(mlp_param_shapes(deep_cfg)) <= set(deep):
            out.append((f"trained, {deep_cfg.n_layers} layers, MLP head", deep_cfg, deep,
                        list(PROMPT), "mlp"))
    d, layers = (256, 4) if quick else (512, 8)
    big = QwenConfig(vocab=256, d_model=d, n_layers=layers, n_heads=8, n_kv_heads=2,
                     d_ffn=2 * d, max_ctx=128)
    prompt = [int(t) for t in np.random.default_rng(0).integers(0, big.vocab, 32)]
    out.append((f"larger ({layers} layers, d {d}), random", big,
                init_params(big, seed=0, mtp=True), prompt, "block"))
    out.append((f"larger ({layers} layers, d {d}), rigged", big, rigged_params(big), prompt,
                "block"))
    return out


def held_out(quick: bool) -> None:
    """The demo checkpoint's heads on held-out prompts (8 prompts of 64 bytes from the
    held-out files, 48 new tokens; ``--quick``: 2 prompts, 16 tokens): per head and k,
    the median, lowest and highest speed-up over the prompts (each prompt's own median of
    alternating runs), the median decoding speed-up and the mean acceptance."""
    from graphc.models.study import held_out_prompts

    params, cfg = load_weights(str(CHECKPOINT))
    assert cfg is not None
    n, n_new, repeats = (2, 16, 3) if quick else (8, 48, 5)
    prompts = held_out_prompts(n, 64, 0)
    print(f"held-out prompts: {n} of 64 bytes, {n_new} new tokens, medians of {repeats} "
          "alternating runs per prompt")
    print(f"{'head':<6} {'k':>2} {'speed-up':>9} {'lowest':>7} {'highest':>8} {'decode':>7} "
          f"{'accept':>7}")
    for head in HEADS:
        runner = Runner(cfg, params, backend="jax", head=head)
        for k in (1, 4):
            ups, decs, acc = [], [], []
            for prompt in prompts:
                runner.prepare(len(prompt), k)
                plain, _ = greedy_generate(runner, prompt, n_new)
                spec, stats = speculative_generate(runner, prompt, n_new, k)
                if spec != plain:
                    raise SystemExit(f"held-out, {head} head, k={k}: output differs")
                t_g, t_s, g_dec, s_dec = timed_pair(runner, prompt, n_new, k, repeats)
                ups.append(t_g / t_s)
                decs.append(s_dec / g_dec)
                acc.append(stats.acceptance_rate)
            print(f"{head:<6} {k:>2} {np.median(ups):8.2f}x {min(ups):6.2f}x {max(ups):7.2f}x "
                  f"{np.median(decs):6.2f}x {100 * np.mean(acc):6.1f}%")


def main() -> None:
    """Measure every model at every k; print a table, or JSON with ``--json``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="k = 1, 2; smaller larger model; "
                    "fewer tokens and repeats")
    ap.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    ap.add_argument("--stream", action="store_true",
                    help="read every call's tokens before the next call (streaming output, "
                         "stop tokens), in greedy and speculative decoding alike")
    ap.add_argument("--held-out", action="store_true",
                    help="instead: the demo checkpoint's heads on held-out prompts")
    args = ap.parse_args()
    if args.held_out:
        held_out(args.quick)
        return
    ks, n_new, repeats = ([1, 2], 16, 3) if args.quick else ([1, 2, 3, 4], 40, 7)
    t_call = call_overhead(repeats)
    rows: list[dict[str, Any]] = []
    for name, cfg, params, prompt, head in models(args.quick):
        rows += measure(name, cfg, params, prompt, n_new, ks, repeats, t_call, args.stream,
                        head)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    loops = ("streamed: every call's tokens read before the next call" if args.stream
             else "device-resident: tokens read at the end")
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}; {n_new} new tokens, "
          f"medians of {repeats} alternating runs; t_call {1e6 * t_call:.1f} us; loops "
          f"{loops}")
    head = (f"{'model':<34} {'k':>2} {'greedy tok/s':>12} {'spec tok/s':>10} {'speed-up':>8} "
            f"{'decode':>8} "
            f"{'tok/call':>8} {'accept':>7} {'round/step':>10} {'predicted':>9} "
            f"{'pred. speed-up':>14} {'ops: round/step':>15} {'speed-up':>8}")
    print(head)
    for r in rows:
        print(f"{r['model']:<34} {r['k']:>2} {r['greedy_tokens_per_s']:12.0f} "
              f"{r['speculative_tokens_per_s']:10.0f} {r['speedup']:7.2f}x "
              f"{r['decode_speedup']:7.2f}x "
              f"{r['tokens_per_call']:8.2f} {100 * r['acceptance']:6.1f}% "
              f"{r['round_over_step_measured']:10.2f} {r['round_over_step_predicted']:9.2f} "
              f"{r['predicted_speedup']:13.2f}x {r['round_over_step_predicted_ops']:15.2f} "
              f"{r['predicted_speedup_ops']:7.2f}x")
    for model in dict.fromkeys(r["model"] for r in rows):
        best = max((r for r in rows if r["model"] == model), key=lambda r: r["speedup"])
        print(f"best k for {model}: {best['k']} ({best['speedup']:.2f}x greedy's tokens/s; "
              f"decoding alone {best['decode_speedup']:.2f}x)")


if __name__ == "__main__":
    main()
