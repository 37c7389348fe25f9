"""Run by tests/test_jax.py in a subprocess with 4 forced CPU devices: both splits must
give the single-device results within tolerance, and repeated runs must be bit-identical.
Exits non-zero on any mismatch."""

from __future__ import annotations

import jax
import numpy as np

import graphc as gc
from graphc.models.qwen import QwenConfig, build_main, init_params


def main() -> None:
    """Compare layer and tensor splits with one device, prefill and decode."""
    devices = jax.devices()
    assert len(devices) >= 4, f"expected 4 devices, got {devices}"
    cfg = QwenConfig(vocab=64, d_model=32, n_layers=4, n_heads=4, n_kv_heads=2, d_ffn=64,
                     max_ctx=16)
    params = init_params(cfg, seed=5)
    g = build_main(cfg, 6)
    feeds = {"tokens": np.array([1, 2, 3, 4, 5, 6], np.int32), "pos": np.arange(6, dtype=np.int32)}
    one = gc.compile(g, params=params, backend="jax")
    base = one.run(feeds)
    step = {"tokens": np.array([7], np.int32), "pos": np.array([6], np.int32)}
    base_dec = gc.compile(build_main(cfg, 1), params=params, states=one.state,
                          backend="jax").run(step)
    for split in ("layer", "tensor"):
        runs = []
        for _ in range(2):
            exe = gc.compile(g, params=params, backend="jax", devices=devices[:4], split=split)
            runs.append(exe.run(feeds))
        for name, want in base.items():
            np.testing.assert_allclose(np.asarray(runs[0][name]), np.asarray(want), rtol=2e-5,
                                       atol=2e-5, err_msg=f"{split} {name}")
            assert np.array_equal(np.asarray(runs[0][name]), np.asarray(runs[1][name])), \
                f"{split}: repeated runs differ on {name}"
        dec = gc.compile(build_main(cfg, 1), params=params, states=exe.state, backend="jax",
                         devices=devices[:4], split=split)
        np.testing.assert_allclose(np.asarray(dec.run(step)["logits"]),
                                   np.asarray(base_dec["logits"]), rtol=2e-5, atol=2e-5)
        print(f"{split} ok: {exe.report().placement}")
    # outputs that are leaves (an input, a state) are no stage's export (found in review)
    leaf = gc.Graph("leaf_outputs")
    x = leaf.input("x", (2, 4))
    s = leaf.state("s", (2, 4))
    leaf.set_output(leaf.neg(leaf.exp(x)), "y")
    leaf.set_output(leaf.scale(x, 1.0), "x1")  # the default pipeline folds it to x itself
    leaf.set_output(s, "s_out")
    ones = {"x": np.ones((2, 4), np.float32)}
    for split in ("layer", "tensor"):
        out = gc.compile(leaf, backend="jax", devices=devices[:2], split=split).run(ones)
        assert np.array_equal(np.asarray(out["x1"]), ones["x"]), split
        assert np.array_equal(np.asarray(out["s_out"]), np.zeros((2, 4), np.float32)), split
    print("leaf outputs ok")


if __name__ == "__main__":
    main()
