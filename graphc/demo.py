"""``graphc demo``: the quickstart graph from the README, built, checked and run."""

from __future__ import annotations

import argparse

import numpy as np
from rich.console import Console
from rich.syntax import Syntax

import graphc as gc


def build_toy() -> gc.Graph:
    """The toy graph of the README: a matmul with a residual, a norm and an lm_head,
    with the pre-norm hidden state marked as an output."""
    g = gc.Graph("toy")
    x = g.input("x", (8, 64), "f32")
    w = g.param("w", (64, 64), "f32")
    h = g.add(g.matmul(x, w), x, name="h")
    n = g.rms_norm(h, eps=1e-6)
    g.set_output(g.matmul(n, w), "logits")
    g.set_output(h, "h_pre_norm")
    return g


def run_demo(args: argparse.Namespace) -> int:
    """Print the toy graph, round-trip it, run it, compare with NumPy; 0 when all agree."""
    console = Console()
    rng = np.random.default_rng(args.seed)
    g = build_toy()
    gc.verify(g)
    text = gc.to_text(g)
    console.rule("[bold]graphc demo: the quickstart graph")
    console.print(Syntax(text, "text", theme="ansi_dark", background_color="default"))
    same_text = gc.to_text(gc.parse_text(text)) == text
    same_json = gc.to_text(gc.from_json(gc.to_json(g))) == text
    console.print(f"text round trip exact: {same_text}; JSON round trip exact: {same_json}")

    w = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    exe = gc.compile(g, params={"w": w}, reads={"logits": [-1], "h_pre_norm": "all"})
    out = exe.run({"x": x})
    h = x @ w + x
    logits = (h / np.sqrt(np.mean(h * h, axis=-1, keepdims=True) + 1e-6)) @ w
    err = max(float(np.max(np.abs(out["logits"] - logits[-1:]))),
              float(np.max(np.abs(out["h_pre_norm"] - h))))
    console.print(f"reference backend vs NumPy: logits{list(out['logits'].shape)} "
                  f"(last row only), h_pre_norm{list(out['h_pre_norm'].shape)}; "
                  f"max abs difference {err:.2e}")

    norm = next(t for t in g.nodes if t.op == "rms_norm")
    try:
        gc.compile(g, params={"w": w}, reads={norm: "all"})
        console.print("[red]reading a tensor that is not an output was accepted")
        return 1
    except gc.GraphError as e:
        console.print("[bold]reading a tensor that is not an output is refused:[/bold]")
        console.print(str(e), markup=False, highlight=False)
    ok = same_text and same_json and err < 1e-4
    console.print("[green]demo ok" if ok else "[red]demo found a mismatch")
    return 0 if ok else 1
