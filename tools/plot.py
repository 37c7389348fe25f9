"""A picture of a memory plan: each arena value as a box over its lifetime (x: steps)
and its bytes (y: offset), violations in red."""

from __future__ import annotations

from collections.abc import Sequence

from graphc.graph import Graph
from graphc.naming import label
from graphc.passes.aliasing import Violation
from graphc.passes.memory import MemoryPlan, lifetimes
from graphc.tensor import Tensor


def plot_plan(g: Graph, plan: MemoryPlan, path: str, violations: Sequence[Violation] = (),
              title: str | None = None, peak_step: int | None = None) -> None:
    """Write a PNG of the arena of ``plan`` to ``path`` (matplotlib, no display needed);
    ``peak_step`` draws a line at the step where the arena peaks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    view_src = {t: p.view_of for t, p in plan.placements.items() if p.view_of is not None}
    step, last = lifetimes(plan.order, view_src, set(plan.kept))
    bad = {v.tensor for v in violations} | {v.clobbered_by for v in violations}
    n = len(plan.order)
    chains: dict[Tensor, list[Tensor]] = {}  # first value of an in-place chain -> its writes
    for t in plan.order:
        u = plan.placements[t].inplace_of
        if u is not None:
            while (w := plan.placements[u].inplace_of) is not None:
                u = w
            chains.setdefault(u, []).append(t)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for t in plan.order:
        p = plan.placements[t]
        if p.region != "arena" or p.view_of is not None or p.inplace_of is not None:
            continue
        chain = chains.get(t, [])
        end = max([last[t]] + [last[r] for r in chain])  # the chain shares the buffer
        x0, x1 = step[t] - 0.45, min(end, n) + 0.45
        red = t in bad or any(r in bad for r in chain)
        ax.add_patch(Rectangle((x0, p.offset), x1 - x0, max(p.nbytes, 1),
                               facecolor="#e74c3c" if red else "#7fb3d5",
                               edgecolor="#922b21" if red else "#1f4e79", linewidth=0.6,
                               alpha=0.85))
        if len(plan.order) <= 80:
            ax.text((x0 + x1) / 2, p.offset + p.nbytes / 2,
                    "\u2192".join(label(r) for r in [t, *chain]), fontsize=6,
                    ha="center", va="center")
    ax.axhline(plan.lower_bound_bytes, color="#27ae60", linestyle="--", linewidth=1,
               label=f"lower bound {plan.lower_bound_bytes:,} B")
    ax.axhline(plan.arena_bytes, color="#34495e", linewidth=1,
               label=f"arena {plan.arena_bytes:,} B")
    ax.set_xlim(-1.5, n + 1)
    ax.set_ylim(0, max(plan.arena_bytes, plan.lower_bound_bytes, 1) * 1.08)
    if peak_step is not None:
        ax.axvline(peak_step + 0.5, color="tab:orange", linestyle="--", linewidth=1.2,
                   label=f"peak (step {peak_step})")
        ax.legend(loc="upper right")
    ax.set_xlabel("step")
    ax.set_ylabel("arena offset (bytes)")
    ax.set_title(title or f"@{g.name}: {plan.strategy}, ratio {plan.ratio:.3f}"
                 + (f", {len(violations)} violation(s) in red" if violations else ""))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
