"""The README quickstart as a script: build, print, round-trip, verify and run a graph.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np

import graphc as gc


def build_toy() -> gc.Graph:
    """The toy graph of DESIGN.md and the README."""
    g = gc.Graph("toy")
    x = g.input("x", (8, 64), "f32")
    w = g.param("w", (64, 64), "f32")
    h = g.add(g.matmul(x, w), x, name="h")
    n = g.rms_norm(h, eps=1e-6)
    g.set_output(g.matmul(n, w), "logits")
    g.set_output(h, "h_pre_norm")
    return g


def main() -> None:
    """Build the toy graph, check it, run it, and compare with NumPy."""
    g = build_toy()
    gc.verify(g)
    text = gc.to_text(g)
    print(text)
    assert gc.to_text(gc.parse_text(text)) == text
    assert gc.to_text(gc.from_json(gc.to_json(g))) == text

    rng = np.random.default_rng(0)
    W = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
    X = rng.standard_normal((8, 64)).astype(np.float32)
    exe = gc.compile(g, params={"w": W}, reads={"logits": [-1], "h_pre_norm": "all"})
    out = exe.run({"x": X})

    H = X @ W + X
    logits = (H / np.sqrt((H * H).mean(-1, keepdims=True) + 1e-6)) @ W
    np.testing.assert_allclose(out["logits"], logits[-1:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["h_pre_norm"], H, rtol=1e-6)
    print("logits", out["logits"].shape, "h_pre_norm", out["h_pre_norm"].shape, "match NumPy")


if __name__ == "__main__":
    main()
