"""``graphc demo``: the main job, on a small Qwen-style model with an MTP head.

1. builds the model (embedded defaults, or ``--weights``);
2. compiles prompt processing with and without dead-output elimination, and prints the
   FLOPs and measured time of both (median after warm-up) and their ratio;
3. prints the memory plan (arena bytes vs lower bound) and proves it safe;
4. a labelled demonstration: leave out ``set_output`` on the pre-norm hidden state the
   MTP head reads, and watch the checker catch it and the arena executor produce the
   post-norm values a ggml-style runtime would have handed over;
5. runs speculative decoding with an MTP head (``--head``; by default the distilled MLP
   head when the weights have one), one compiled graph per round (its memory plan proven
   safe, arena, bound and gap printed), checks the output against plain greedy decoding,
   and prints calls per token and tokens/s of both, measured in turn, for the whole
   generation and for decoding alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import graphc as gc
from graphc.backends.arena import ArenaExecutable
from graphc.models.qwen import (
    QwenConfig,
    build_main,
    check_params,
    init_params,
    light_param_shapes,
    load_weights,
    mlp_param_shapes,
    mtp_param_shapes,
)
from graphc.models.speculative import (
    HEAD_SOURCES,
    HEADS,
    SOURCES,
    Runner,
    greedy_generate,
    head_source,
    speculative_generate,
)
from graphc.models.study import (
    CASES,
    head_params,
    held_out_prompts,
    input_similarity,
    run_study,
)
from graphc.passes import check_aliasing, cost, plan_memory
from graphc.passes.cost import human
from graphc.timing import interleaved_medians

PROMPT = (b"class Counter:\n    def __init__(self, name, start=0):\n        self.name = name\n"
          b"        self.count = start\n\n    def increment(self):\n        self.")


def _shipped() -> Path | None:
    path = Path(__file__).with_name("tiny_mtp.npz")
    return path if path.exists() else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's command-line options."""
    p.add_argument("--weights", help="a .npz/.safetensors checkpoint (default: the shipped "
                   "tiny checkpoint, else seeded random weights)")
    p.add_argument("--random", action="store_true", help="use seeded random weights")
    p.add_argument("--study", action="store_true",
                   help="run the pre-norm/post-norm acceptance study (trained checkpoint)")
    p.add_argument("--prompt", help="prompt text (trained byte-level checkpoint)")
    p.add_argument("--layers", type=int, default=2,
                   help="model size (--layers, --d-model, --heads, --kv-heads, --vocab) "
                        "applies with --random or when no checkpoint is shipped")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=48)
    p.add_argument("--new-tokens", type=int, default=40)
    p.add_argument("--draft", type=int, default=4, help="draft length k")
    p.add_argument("--backend", default="jax", choices=["jax", "reference", "arena"])
    p.add_argument("--device", default=None, help="JAX platform: cpu or gpu (default: JAX's)")
    p.add_argument("--head", default=None, choices=list(HEADS),
                   help="the MTP head speculative decoding drafts with (default: mlp when "
                        "the weights have one, else block)")
    p.add_argument("--mtp-source", default=None, choices=sorted(SOURCES),
                   help="the hidden state the head reads (default: the one it was trained "
                        "on; the mlp head takes post_norm only, the light head pre_norm)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per measurement")
    p.add_argument("--seed", type=int, default=0)


def _check_args(args: argparse.Namespace) -> None:
    """GraphError for options that cannot make a demo, before any work starts."""
    for name, least in (("new_tokens", 1), ("draft", 1), ("prompt_len", 1), ("layers", 1),
                        ("repeats", 1), ("d_model", 2), ("heads", 1), ("kv_heads", 1),
                        ("vocab", 2)):
        if getattr(args, name) < least:
            flag = "--" + name.replace("_", "-")
            raise gc.GraphError(f"{flag} must be at least {least}, got {getattr(args, name)}")


def _model(args: argparse.Namespace) -> tuple[QwenConfig, dict[str, np.ndarray], str]:
    weights = args.weights or (None if args.random else _shipped())
    if weights is not None and not args.random:
        params, cfg = load_weights(str(weights))
        if cfg is None:
            raise gc.GraphError(f"{weights} has no stored config")
        check_params(cfg, params, mtp=False)  # the main model; the head is checked later
        return cfg, params, str(weights)
    cfg = QwenConfig(vocab=args.vocab, d_model=args.d_model, n_layers=args.layers,
                     n_heads=args.heads, n_kv_heads=args.kv_heads, d_ffn=2 * args.d_model,
                     max_ctx=max(128, args.prompt_len + args.new_tokens + 2 * args.draft))
    return (cfg, init_params(cfg, seed=args.seed, mtp=True, light=True, mlp=True),
            f"random (seed {args.seed})")


HEAD_PARAMS = {"block": mtp_param_shapes, "light": light_param_shapes, "mlp": mlp_param_shapes}
"""Each MTP head kind -> its params' shapes."""

HEAD_TRAINING = {
    "block": "python examples/train_tiny.py (it trains the main model with the head)",
    "light": "python examples/train_tiny.py --light-head-on CHECKPOINT",
    "mlp": "python examples/train_tiny.py --mlp-head-on CHECKPOINT",
}
"""How to get each head kind's weights into a checkpoint."""


def pick_head(args: argparse.Namespace, cfg: QwenConfig, params: dict[str, np.ndarray]
              ) -> tuple[str, str]:
    """(head kind, hidden state it reads) for the demo's options: ``--head``, else the MLP
    head when the weights have one and ``--mtp-source`` (if given) suits it, else the
    block head. A GraphError, naming the options to change, when the head's weights are
    missing or it was not trained on the source asked for."""
    head = args.head
    if head is None:
        suits = args.mtp_source in (None, *HEAD_SOURCES["mlp"])
        head = "mlp" if suits and set(mlp_param_shapes(cfg)) <= set(params) else "block"
    try:
        source = head_source(head, args.mtp_source)
    except gc.GraphError as e:
        raise gc.GraphError(e.message, fix=f"pass --mtp-source {HEAD_SOURCES[head][0]} or "
                            "leave it out, or --head block (trained on either)") from None
    missing = [n for n in HEAD_PARAMS[head](cfg) if n not in params]
    if missing:
        raise gc.GraphError(f"the weights have no {head} MTP head (no {missing[0]!r})",
                            fix=f"add one with {HEAD_TRAINING[head]}, or pick another --head")
    check_params(cfg, params, mtp=head == "block", light=head == "light", mlp=head == "mlp")
    return head, source


def run_demo(args: argparse.Namespace) -> int:
    """Run every section; return 0 when every check holds, 1 otherwise."""
    _check_args(args)
    console = console_for(args)
    ok = True
    options: dict[str, Any] = {}
    if args.device and args.backend == "jax":
        import jax

        try:
            options["devices"] = [jax.devices(args.device)[0]]
        except RuntimeError:
            raise gc.GraphError(
                f"JAX sees no {args.device!r} device here (it sees "
                f"{[str(d) for d in jax.devices()]})",
                fix="drop --device, or install a JAX build for that device (e.g. jax[cuda12])",
            ) from None
    cfg, params, source = _model(args)
    if args.prompt_len + args.new_tokens + max(2 * args.draft - 2, 0) > cfg.max_ctx:
        raise gc.GraphError(f"prompt + new tokens + the drafts' slots exceed the model's "
                            f"context of {cfg.max_ctx}", fix="lower --prompt-len or --new-tokens")
    trained = not source.startswith("random")
    if args.study:
        if not trained:
            raise gc.GraphError("the study needs a trained checkpoint",
                                fix="drop --random, or pass --weights")
        check_params(cfg, params, mtp=True)  # the study compares block heads
        return _study(console_for(args), cfg, params, args)
    head, mtp_source = pick_head(args, cfg, params)
    h_src = SOURCES[mtp_source]
    rng = np.random.default_rng(args.seed)
    if trained and cfg.vocab == 256:
        text = args.prompt.encode() if args.prompt else PROMPT
        prompt = list(text)
    else:
        prompt = [int(t) for t in rng.integers(0, cfg.vocab, size=args.prompt_len)]
    args.prompt_len = len(prompt)

    console.rule("[bold]graphc demo: a Qwen-style model with a multi-token-prediction head")
    console.print(f"model: vocab {cfg.vocab}, d_model {cfg.d_model}, {cfg.n_layers} layers, "
                  f"{cfg.n_heads} heads / {cfg.n_kv_heads} KV heads, KV cache {cfg.max_ctx}; "
                  f"weights: {source}; backend: {args.backend}")

    # -- 1. prompt processing with and without dead-output elimination
    console.rule("1. prompt processing: what the caller reads decides what is computed")
    g = build_main(cfg, args.prompt_len)
    main_params = {k: v for k, v in params.items() if k in g.params}
    feeds = {"tokens": np.asarray(prompt, np.int32),
             "pos": np.arange(args.prompt_len, dtype=np.int32)}
    reads = {"logits": [-1], h_src: "all"}
    with console.status("compiling prompt processing twice..."):
        full = gc.compile(g, params=main_params, backend=args.backend, pipeline="none",
                          **options)
        lean = gc.compile(g, params=main_params, reads=reads, backend=args.backend,
                          pipeline="default", **options)
    def run(exe: gc.Executable) -> Callable[[], Any]:
        def call() -> Any:
            exe.reset_state()
            return exe.run(feeds)
        return call

    import jax

    with console.status(f"timing both, {args.repeats} runs each after warm-up..."):
        t_full, t_lean = interleaved_medians([run(full), run(lean)], args.repeats,
                                             sync=jax.block_until_ready)
    f_full, f_lean = cost(g).flops, cost(lean.graph).flops
    table = Table()
    for col in ("compiled for", "FLOPs (model)", "median time", "outputs returned"):
        table.add_column(col, justify="right")
    table.add_row("every output (no dead-output elimination)", human(f_full),
                  f"{1e3 * t_full:.2f} ms", escape("logits [all rows], h_pre_norm, h_post_norm"))
    table.add_row(f"logits[-1] + {h_src} (dead outputs dropped, rows pruned)", human(f_lean),
                  f"{1e3 * t_lean:.2f} ms", escape(f"logits [1 row], {h_src}"))
    console.print(table)
    console.print(f"FLOPs ratio {f_lean / f_full:.3f} (predicted speed-up "
                  f"{f_full / f_lean:.2f}x); measured time ratio {t_lean / t_full:.3f} "
                  f"(speed-up {t_full / t_lean:.2f}x)")
    same = np.allclose(np.asarray(run(full)()["logits"])[-1:],
                       np.asarray(run(lean)()["logits"]), rtol=1e-4, atol=1e-4)
    console.print(f"last-row logits agree between the two: {same}")
    ok &= bool(same)

    # -- 2. the memory plan
    console.rule("2. memory plan of the optimized prompt graph")
    opt = lean.graph
    plan = plan_memory(opt, reads={n: "all" for n in opt.outputs})
    found = check_aliasing(opt, plan)
    console.print(plan.summary())
    console.print("aliasing check: " + ("[green]proven safe[/green]: no tensor that is still "
                                        "read shares memory with a later write"
                                        if not found else f"[red]{len(found)} violations"))
    ok &= not found

    # -- 3. the forgotten set_output, demonstrated
    console.rule("3. DEMONSTRATION: the MTP head reads h_pre_norm, but nobody marked it")
    ok &= _tap_demo(console, cfg, main_params, feeds)

    # -- 4. speculative decoding, one compiled graph per round
    console.rule(f"4. speculative decoding with the {head} MTP head ({mtp_source} hidden "
                 f"state, k={args.draft}) on {args.backend}: one compiled graph per round")
    runner = Runner(cfg, params, backend=args.backend, mtp_source=mtp_source, head=head,
                    compile_options=options)
    with console.status("compiling greedy decoding and the speculative round..."):
        runner.prepare(len(prompt), args.draft)
    ok &= _round_plan(console, runner.speculative(len(prompt), args.draft)[1].graph)
    plain, gstats = greedy_generate(runner, prompt, args.new_tokens)
    spec, sstats = speculative_generate(runner, prompt, args.new_tokens, args.draft)
    with console.status(f"timing {args.new_tokens} tokens, greedy and speculative in turn, "
                        f"{args.repeats} runs each..."):
        decode: tuple[list[float], list[float]] = ([], [])

        def timed(i: int, run: Callable[[], tuple[list[int], Any]]) -> Callable[[], None]:
            return lambda: decode[i].append(run()[1].decode_tokens_per_second)

        t_greedy, t_spec = interleaved_medians(
            [timed(0, lambda: greedy_generate(runner, prompt, args.new_tokens)),
             timed(1, lambda: speculative_generate(runner, prompt, args.new_tokens,
                                                   args.draft))],
            args.repeats)
    table = Table(title=f"{args.new_tokens} new tokens; tokens/s: median of {args.repeats} "
                        "runs, greedy and speculative measured alternately (decode: after "
                        f"the prompt call); accepted: of {sstats.drafted} drafts")
    for col in ("", "calls", "calls/tok", "tok/call", "accepted", "tok/s", "speed-up",
                "decode tok/s", "speed-up"):
        table.add_column(col, justify="right")
    g_rate, s_rate = gstats.tokens / t_greedy, sstats.tokens / t_spec
    g_dec, s_dec = (float(np.median(d)) for d in decode)  # 0 with a single new token

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b > 0 else "-"

    table.add_row("greedy", str(gstats.calls), f"{gstats.calls_per_token:.2f}",
                  f"{gstats.tokens_per_call:.2f}", "-", f"{g_rate:.0f}", "1.00x",
                  f"{g_dec:.0f}", ratio(g_dec, g_dec))
    table.add_row(f"spec. k={args.draft}", str(sstats.calls),
                  f"{sstats.calls_per_token:.2f}", f"{sstats.tokens_per_call:.2f}",
                  f"{100 * sstats.acceptance_rate:.1f}%", f"{s_rate:.0f}",
                  f"{s_rate / g_rate:.2f}x", f"{s_dec:.0f}", ratio(s_dec, g_dec))
    console.print(table)
    print(f"speculative: {sstats.calls} calls for {sstats.tokens} tokens "
          f"({sstats.tokens_per_call:.2f} tokens per call), acceptance "
          f"{100 * sstats.acceptance_rate:.1f}%, {s_rate:.0f} tokens/s against greedy's "
          f"{g_rate:.0f} ({s_rate / g_rate:.2f}x); decoding alone {s_dec:.0f} against "
          f"{g_dec:.0f} ({ratio(s_dec, g_dec)})")
    equal = plain == spec
    console.print(f"speculative output equals greedy decoding token for token: {equal}")
    if trained and cfg.vocab == 256:
        shown = bytes(prompt).decode("utf-8", "replace") + "\u2502" + bytes(
            spec).decode("utf-8", "replace")
        console.print("prompt \u2502 continuation (bytes as text):")
        console.print(shown, markup=False, highlight=False)
    if not trained:
        console.print("(random weights: the MTP head's drafts are rarely accepted; pass "
                      "--weights for a trained checkpoint)")
    ok &= equal
    console.rule("[green]demo ok" if ok else "[red]demo found a problem")
    return 0 if ok else 1


def console_for(args: argparse.Namespace) -> Console:
    """The console the demo prints to."""
    return Console()


def _study(console: Console, cfg: QwenConfig, params: dict[str, np.ndarray],
           args: argparse.Namespace) -> int:
    """The pre-norm/post-norm study (see graphc.models.study); 0 when every speculative
    output equalled greedy decoding."""
    console.rule("[bold]the pre-norm / post-norm study: what the aliasing bug cost")
    prompts = held_out_prompts(8, 64, args.seed)
    with console.status("running...") as status:
        rows = run_study(cfg, params, prompts, n_new=48, backend=args.backend,
                         on_step=lambda s: status.update(f"running {s}"))
    table = Table(title="held-out Python source, 8 prompts x 48 new bytes, greedy")
    for col in ("case", "k", "acceptance", "tokens / main call", "= greedy"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"({r.case}) {CASES[r.case][0]}", str(r.k), f"{100 * r.acceptance:.1f}%",
                      f"{r.tokens_per_call:.2f}", "yes" if r.identical else "NO")
    console.print(table)
    for r in rows:
        print(f"study ({r.case}) k={r.k}: acceptance {100 * r.acceptance:.1f}%, "
              f"tokens/main call {r.tokens_per_call:.2f}, identical to greedy {r.identical}")
    sim = input_similarity(cfg, head_params(params, "mtp."), prompts)
    w = params["final_norm"]
    print(f"what the head sees in (a) vs (b): mean cosine {sim:.4f} between the normalized "
          f"pre-norm and post-norm states (final-norm weights {w.mean():.2f} +- {w.std():.2f}):"
          f" the head's own RMSNorm undoes most of the final norm here, so the bug costs "
          f"little in this model; where final-norm weights vary widely it costs more")
    return 0 if all(r.identical for r in rows) else 1


def _round_plan(console: Console, g: gc.Graph) -> bool:
    """Plan the round graph's memory, prove it safe, and print its arena, bound and gap;
    True when the plan is proven safe and every KV cache is updated in its own bytes."""
    plan = plan_memory(g, reads={n: "all" for n in g.outputs})
    found = check_aliasing(g, plan)
    in_place = 0
    for state, value in g.assigns.items():
        t: gc.Tensor | None = value
        while t is not None and t is not state:
            t = plan.placements[t].inplace_of
        in_place += t is state
    gap = plan.arena_bytes - plan.lower_bound_bytes
    console.print(f"round graph @{g.name}: {len(g.nodes)} nodes; arena {plan.arena_bytes:,} B, "
                  f"lower bound {plan.lower_bound_bytes:,} B, gap {gap:,} B (ratio "
                  f"{plan.ratio:.3f}); {in_place} of {len(g.states)} KV-cache states "
                  f"updated in place ({plan.state_bytes:,} B)")
    console.print("aliasing check of the round graph: " + (
        "[green]proven safe[/green], the in-place cache writes included" if not found
        else f"[red]{len(found)} violations"))
    return not found and in_place == len(g.states)


def _tap_demo(console: Console, cfg: QwenConfig, params: dict[str, np.ndarray],
              feeds: dict[str, np.ndarray]) -> bool:
    """The MTP pre-norm bug: caught by the checker, reproduced by the arena executor."""
    truth = gc.compile(build_main(cfg, len(feeds["tokens"])), params=params).run(feeds)
    g = build_main(cfg, len(feeds["tokens"]))
    g.unset_output("h_pre_norm")
    g.unset_output("h_post_norm")
    tap = next(t for t in g.nodes if t.name == f"l{cfg.n_layers - 1}.h_out")
    plan = plan_memory(g, strategy="best-fit-in-order")
    reads: dict[str | gc.Tensor, object] = {"logits": "all", tap: "all"}
    found = check_aliasing(g, plan, reads=reads)
    console.print("a ggml-style allocator (best-fit-in-order, knows only output flags) "
                  "planned the graph; the checker, told that the MTP head reads the tap:")
    for v in found:
        console.print(f"  [red]{escape(str(v))}[/red]", highlight=False)
    exe = gc.compile(g, params=params, backend="arena", plan=plan, check=False)
    assert isinstance(exe, ArenaExecutable)  # what the arena backend builds
    exe.run(feeds)
    got = exe.read_buffer(tap)
    off_pre = float(np.max(np.abs(got - truth["h_pre_norm"])))
    off_post = float(np.max(np.abs(got - truth["h_post_norm"])))
    console.print(f"running that plan anyway (arena executor), the tap's buffer holds: "
                  f"max |tap - true pre-norm| = {off_pre:.3f}, max |tap - post-norm| = "
                  f"{off_post:.2e}  -> the head would silently read the post-norm state")
    g.set_output(tap, "h_pre_norm")  # the one-line fix
    fixed = plan_memory(g, strategy="best-fit-in-order")
    clean = check_aliasing(g, fixed)
    exe = gc.compile(g, params=params, backend="arena", plan=fixed)
    right = np.allclose(exe.run(feeds)["h_pre_norm"], truth["h_pre_norm"], rtol=1e-5, atol=1e-5)
    console.print(f"with g.set_output(tap, \"h_pre_norm\"): violations {len(clean)}, arena "
                  f"result equals the true pre-norm state: {right}")
    return bool(found) and found[0].kind == "unmarked-tap" and off_post < 1e-4 and \
        not clean and right
