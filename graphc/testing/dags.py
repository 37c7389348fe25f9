"""Deterministic generators of branchy graphs (UNet-like skip connections) for tests and
benchmarks of the scheduler and the planner."""

from __future__ import annotations

import numpy as np

from graphc.graph import Graph
from graphc.tensor import Tensor


def unet_like(depth: int = 4, width: int = 3, seed: int = 0, base: int = 64,
              name: str = "unet") -> Graph:
    """A UNet-shaped graph: an encoder path whose stages each run ``width`` random
    elementwise/matmul ops and halve the rows, a decoder that doubles them back and adds
    the encoder's skip tensor of the same size, and random side branches. Sizes vary by
    stage, so the order in which branches run changes the peak memory a lot."""
    rng = np.random.default_rng(seed)
    g = Graph(name)
    rows = base * 2**depth
    x = g.input("x", (rows, 32))
    skips: list[Tensor] = []
    h = x
    k = 0

    def stage(t: Tensor) -> Tensor:
        nonlocal k
        for _ in range(width):
            choice = rng.integers(0, 4)
            if choice == 0:
                w = g.param(f"w{k}", (t.shape[1], t.shape[1]))
                k += 1
                t = g.matmul(t, w)
            elif choice == 1:
                t = g.silu(t)
            elif choice == 2:
                side = g.tanh(g.scale(t, float(rng.uniform(0.5, 1.5))))
                t = g.add(t, side)
            else:
                t = g.rms_norm(t)
        return t

    for _ in range(depth):
        h = stage(h)
        skips.append(h)
        n = h.shape[0]
        h = g.add(g.slice(h, 0, 0, n // 2), g.slice(h, 0, n // 2, n))  # downsample
    h = stage(h)
    for skip in reversed(skips):
        h = g.concat([h, h], axis=0)  # upsample
        h = stage(g.add(h, skip))
    g.set_output(h, "y")
    return g


def random_branchy(n_nodes: int = 60, seed: int = 0, rows: int = 32,
                   widths: tuple[int, ...] = (8, 32, 128, 512), name: str = "branchy") -> Graph:
    """A random DAG with fan-out and skip connections: each new node reads one or two
    earlier nodes chosen at random (widening or narrowing them with matmuls, or merging
    two of equal shape). Every node left unread is folded into the single output, so no
    order gets a free ride from outputs kept alive."""
    rng = np.random.default_rng(seed)
    g = Graph(name)
    pool = [g.input("x", (rows, widths[1]))]
    k = 0
    for _ in range(n_nodes):
        a = pool[int(rng.integers(0, len(pool)))]
        kind = rng.integers(0, 3)
        if kind == 0:  # widen or narrow
            w = int(rng.choice(widths))
            p = g.param(f"w{k}", (a.shape[1], w))
            k += 1
            t = g.matmul(a, p)
        elif kind == 1:
            t = g.silu(a) if rng.random() < 0.5 else g.tanh(a)
        else:
            same = [t for t in pool if t.shape == a.shape and t is not a]
            t = g.add(a, same[int(rng.integers(0, len(same)))]) if same else g.relu(a)
        pool.append(t)
    read = {i for t in g.nodes for i in t.inputs}
    sinks = [t for t in pool if t not in read]
    total = None
    for s in sinks:
        p = g.param(f"w{k}", (s.shape[1], widths[0]))
        k += 1
        r = g.matmul(s, p)
        total = r if total is None else g.add(total, r)
    assert total is not None
    g.set_output(total, "y")
    return g
