"""Train the tiny checkpoint that ``graphc demo`` loads, through graphc itself.

Run: python examples/train_tiny.py [--steps 1600] [--out graphc/models/tiny_mtp.npz] [--quick]
     python examples/train_tiny.py --light-head-on graphc/models/tiny_mtp.npz [--steps 4000]
     python examples/train_tiny.py --mlp-head-on graphc/models/tiny_mtp.npz [--steps 4000]
                                   [--mlp-width N]

- **Model:** the Qwen-style model of ``qwen.py`` (byte vocabulary of 256, d_model 128,
  2 layers, 4 heads / 2 KV heads, SwiGLU 256) and two MTP heads. ``mtp.*`` is trained on
  the pre-norm hidden state (as in DeepSeek-style MTP, its loss also trains the main
  model). ``mtp_post.*`` is trained on the post-norm hidden state with the main model held
  fixed (stop-gradient), for the pre-norm/post-norm study.
- **Through graphc:** the graphs are built with the graphc API, lowered by the JAX
  backend's ``lower`` into pure functions of the params, batched with ``jax.vmap`` and
  differentiated with ``jax.grad``. AdamW and a cosine schedule are written out below.
- **Loss:** next-token cross-entropy, plus 0.5 times each head's next-next-token
  cross-entropy.
- **Corpus:** the Python standard library's own source files (the top-level ``*.py``
  of the running Python's ``Lib`` folder), read as bytes, so every machine has it and
  nothing is downloaded. Every 10th file, by sorted name, is held out for evaluation.
  The corpus digest is stored in the checkpoint; the same Python version reproduces the
  checkpoint exactly (a deterministic seed on the CPU).
- **Light head** (``--light-head-on CHECKPOINT``): trains only the light MTP head
  (``mtpl.*``, :class:`graphc.models.qwen.LightMtpHead`) on an existing checkpoint's
  frozen main model (its pre-norm hidden state, stop-gradient; the shared embedding and
  lm_head frozen too), with the same corpus, windows, next-next-token cross-entropy, AdamW
  and schedule, and writes the checkpoint back with the ``mtpl.*`` arrays added (every
  other array unchanged) and ``__info__["light_head"]`` recording the run.
- **MLP head** (``--mlp-head-on CHECKPOINT``): the same for the MLP MTP head (``mtpm.*``,
  :class:`graphc.models.qwen.MlpMtpHead`), fed the frozen main model's post-norm hidden
  state and distilled from it: at chain depths 1..3 (teacher forcing), the cross-entropy
  of the head's logits against the main model's own next-token distribution, so its
  drafts are the tokens verification accepts. Recorded as ``__info__["mlp_head"]`` with
  the held-out agreement per depth.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from graphc.backends.jax_lowering import lower
from graphc.models.qwen import (
    QwenConfig,
    build_light_mtp,
    build_main,
    build_mlp_mtp,
    build_mtp,
    init_params,
    load_info,
    load_weights,
    save_weights,
)

CONFIG = QwenConfig(vocab=256, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=256,
                    rope_theta=10000.0, max_ctx=256)
DEFAULT_OUT = str(Path(__file__).with_name("tiny_mtp.npz"))
LIGHT_STEPS = 4000
"""Default steps of ``--light-head-on`` (a few minutes on two CPU cores)."""

MLP_STEPS = 4000
"""Default steps of ``--mlp-head-on``."""

MLP_DEPTH = 3
"""Chain depths the MLP head is distilled at (drafts 1..3 of a round)."""


Tree = dict[str, jax.Array]  # weights, moments or gradients by param name

def corpus() -> tuple[np.ndarray, np.ndarray, str, int]:
    """(train bytes, held-out bytes, sha256 of the whole corpus, number of files)."""
    lib = Path(os.__file__).parent
    files = sorted(p for p in lib.glob("*.py") if p.is_file())
    train: list[bytes] = []
    held: list[bytes] = []
    h = hashlib.sha256()
    for k, p in enumerate(files):
        data = p.read_bytes()
        h.update(p.name.encode() + b"\0" + data)
        (held if k % 10 == 0 else train).append(data)
    join = b"\n\n".join
    return (np.frombuffer(join(train), np.uint8).astype(np.int32),
            np.frombuffer(join(held), np.uint8).astype(np.int32), h.hexdigest(), len(files))


def windows(data: np.ndarray, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random windows of ``length`` bytes."""
    starts = rng.integers(0, len(data) - length, size=n)
    return np.stack([data[s:s + length] for s in starts])


def _ce(logits: jax.Array, y: jax.Array) -> jax.Array:
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def make_loss(cfg: QwenConfig, seq: int) -> Callable[..., Any]:
    """``loss(params, batch) -> (total, (main CE, pre-norm head CE, post-norm head CE))``
    for ``batch`` i32[B, seq + 1], built from graphc graphs lowered to JAX."""
    main_g = build_main(cfg, seq, kv_cache=False)
    mtp_g = build_mtp(cfg, seq - 1, kv_cache=False)
    main_fn = lower(main_g, ["logits", "h_pre_norm", "h_post_norm"])
    mtp_fn = lower(mtp_g, ["logits"])
    main_names = list(main_g.params)
    mtp_names = [n for n in mtp_g.params if n.startswith("mtp.")]
    pos = jnp.arange(seq, dtype=jnp.int32)

    def head(params: dict[str, jax.Array], prefix: str) -> dict[str, jax.Array]:
        own = {n: params[prefix + n[len("mtp."):]] for n in mtp_names}
        return {**own, "embed": params["embed"], "lm_head": params["lm_head"]}

    def one(params: dict[str, jax.Array], s: jax.Array) -> tuple[jax.Array, ...]:
        x, y = s[:-1], s[1:]
        out, _ = main_fn({n: params[n] for n in main_names}, {}, {"tokens": x, "pos": pos})
        pre, _ = mtp_fn(head(params, "mtp."), {}, {"hidden": out["h_pre_norm"][:-1],
                                                   "tokens": x[1:], "pos": pos[:-1]})
        post_h = jax.lax.stop_gradient(out["h_post_norm"][:-1])
        frozen = {k: jax.lax.stop_gradient(v) if k in ("embed", "lm_head") else v
                  for k, v in head(params, "mtp_post.").items()}
        post, _ = mtp_fn(frozen, {}, {"hidden": post_h, "tokens": x[1:], "pos": pos[:-1]})
        return _ce(out["logits"], y), _ce(pre["logits"], y[1:]), _ce(post["logits"], y[1:])

    def loss(params: dict[str, jax.Array], batch: jax.Array) -> tuple[jax.Array, Any]:
        m, a, b = jax.vmap(lambda s: one(params, s))(batch)
        parts = (m.mean(), a.mean(), b.mean())
        return parts[0] + 0.5 * parts[1] + 0.5 * parts[2], parts

    return loss


def init_all(cfg: QwenConfig, seed: int) -> dict[str, jax.Array]:
    """Main model, pre-norm head ``mtp.*`` and post-norm head ``mtp_post.*``."""
    p = init_params(cfg, seed=seed, mtp=True)
    post = init_params(cfg, seed=seed + 1, mtp=True)
    p |= {"mtp_post." + k[len("mtp."):]: v for k, v in post.items() if k.startswith("mtp.")}
    return {k: jnp.asarray(v) for k, v in p.items()}


def schedule(step: int, steps: int) -> float:
    """The learning-rate factor at ``step`` (1-based) of ``steps``: linear warm-up over the
    first 5%, then a cosine decay to 0.1."""
    warm = max(1, steps // 20)
    return step / warm if step <= warm else 0.1 + 0.9 * 0.5 * (
        1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def adamw(weight_decay: float) -> Callable[..., tuple[Tree, Tree, Tree]]:
    """The jitted AdamW step ``update(params, m, v, grads, step, rate) -> (params, m, v)``
    (betas 0.9 / 0.95, the gradient norm clipped at 1, decay on matrices only)."""
    b1, b2, eps = 0.9, 0.95, 1e-8

    @jax.jit
    def update(params: Tree, m: Tree, v: Tree, g: Tree, step: jax.Array, rate: jax.Array
               ) -> tuple[Tree, Tree, Tree]:
        norm = jnp.sqrt(sum(jnp.sum(x * x) for x in g.values()))
        clip = jnp.minimum(1.0, 1.0 / (norm + 1e-6))  # clip the gradient norm at 1
        new_p, new_m, new_v = {}, {}, {}
        for k in params:
            gk = g[k] * clip
            new_m[k] = b1 * m[k] + (1 - b1) * gk
            new_v[k] = b2 * v[k] + (1 - b2) * gk * gk
            mh = new_m[k] / (1 - b1 ** step)
            vh = new_v[k] / (1 - b2 ** step)
            decay = weight_decay if params[k].ndim >= 2 else 0.0
            new_p[k] = params[k] - rate * (mh / (jnp.sqrt(vh) + eps) + decay * params[k])
        return new_p, new_m, new_v

    return update


def train(steps: int = 1600, batch: int = 16, seq: int = 128, seed: int = 0,
          lr: float = 3e-3, weight_decay: float = 0.01, log: Callable[[str], None] = print,
          cfg: QwenConfig = CONFIG) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train from scratch; return (params, info with held-out losses)."""
    train_data, held, digest, n_files = corpus()
    rng = np.random.default_rng(seed)
    params = init_all(cfg, seed)
    loss = make_loss(cfg, seq)
    grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    m = {k: jnp.zeros_like(v) for k, v in params.items()}
    v = {k: jnp.zeros_like(x) for k, x in params.items()}
    update = adamw(weight_decay)

    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        frac = schedule(step, steps)
        xb = jnp.asarray(windows(train_data, batch, seq + 1, rng))
        (total, parts), g = grad(params, xb)
        params, m, v = update(params, m, v, g, jnp.float32(step), jnp.float32(lr * frac))
        if step % max(1, steps // 20) == 0 or step == 1:
            log(f"step {step:5d}/{steps}  loss {float(total):.3f}  main {float(parts[0]):.3f}"
                f"  mtp(pre) {float(parts[1]):.3f}  mtp(post) {float(parts[2]):.3f}"
                f"  ({time.perf_counter() - t0:.0f} s)")
    ev = evaluate(params, held, seq, seed, cfg=cfg)
    info = {"steps": steps, "batch": batch, "seq": seq, "seed": seed, "lr": lr,
            "train_seconds": round(time.perf_counter() - t0, 1), "corpus_sha256": digest,
            "corpus_files": n_files, "python": sys.version.split()[0],
            "jax": jax.__version__, **ev}
    log("held-out loss (nats/byte): " + ", ".join(f"{k} {v}" for k, v in ev.items()))
    return {k: np.asarray(x) for k, x in params.items()}, info


def evaluate(params: dict[str, Any], held: np.ndarray, seq: int = 128, seed: int = 0,
             n: int = 64, cfg: QwenConfig = CONFIG) -> dict[str, float]:
    """Mean held-out cross-entropy of the main model and both heads on ``n`` windows."""
    loss = jax.jit(make_loss(cfg, seq))
    xb = jnp.asarray(windows(held, n, seq + 1, np.random.default_rng(seed + 12345)))
    _, (m, a, b) = loss({k: jnp.asarray(x) for k, x in params.items()}, xb)
    return {"held_out_main": round(float(m), 4), "held_out_mtp_pre": round(float(a), 4),
            "held_out_mtp_post": round(float(b), 4)}


def make_light_loss(cfg: QwenConfig, seq: int) -> Callable[..., Any]:
    """``loss(light, frozen, batch) -> (CE, CE)``: the light head's mean next-next-token
    cross-entropy over ``batch`` i32[B, seq + 1], where ``light`` holds the ``mtpl.*``
    weights and ``frozen`` the main model's (its pre-norm hidden state, the embedding
    and the lm_head are stop-gradient: only ``light`` gets gradients)."""
    main_fn = lower(build_main(cfg, seq, kv_cache=False), ["h_pre_norm"])
    head_fn = lower(build_light_mtp(cfg, seq - 1), ["logits"])
    pos = jnp.arange(seq, dtype=jnp.int32)

    def one(light: Tree, frozen: Tree, s: jax.Array) -> jax.Array:
        x, y = s[:-1], s[1:]
        out, _ = main_fn(frozen, {}, {"tokens": x, "pos": pos})
        hidden = jax.lax.stop_gradient(out["h_pre_norm"][:-1])
        shared = {k: jax.lax.stop_gradient(frozen[k]) for k in ("embed", "lm_head")}
        head, _ = head_fn({**light, **shared}, {}, {"hidden": hidden, "tokens": x[1:]})
        return _ce(head["logits"], y[1:])

    def loss(light: Tree, frozen: Tree, batch: jax.Array) -> tuple[jax.Array, jax.Array]:
        ce = jax.vmap(lambda s: one(light, frozen, s))(batch).mean()
        return ce, ce

    return loss


def make_mlp_loss(cfg: QwenConfig, seq: int, depth: int = MLP_DEPTH) -> Callable[..., Any]:
    """``loss(mlp, frozen, batch) -> (loss, agreement[depth])``: distillation of the MLP
    head (``mtpm.*``) from the frozen main model over ``batch`` i32[B, seq + 1]. For each
    pair t and chain depth j = 1..depth (teacher forcing: the head is fed the true tokens
    t+1..t+j), the cross-entropy of the head's logits against the main model's own
    next-token distribution at t+j -- what verification will compare the draft with --
    averaged over depths; ``agreement[j-1]``: how often the two argmaxes agree (the
    acceptance rate a draft at depth j would have if every earlier draft were right)."""
    main_fn = lower(build_main(cfg, seq, kv_cache=False), ["logits", "h_post_norm"])
    n = seq - depth
    head_fn = lower(build_mlp_mtp(cfg, n, depth), [f"logits_{j}" for j in range(1, depth + 1)])
    pos = jnp.arange(seq, dtype=jnp.int32)

    def one(mlp: Tree, frozen: Tree, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = s[:-1]
        out, _ = main_fn(frozen, {}, {"tokens": x, "pos": pos})
        main = jax.lax.stop_gradient(out["logits"])
        hidden = jax.lax.stop_gradient(out["h_post_norm"][:n])
        toks = jnp.stack([x[1 + j:1 + j + n] for j in range(depth)])
        head, _ = head_fn(mlp, {}, {"hidden": hidden, "tokens": toks})
        losses, agree = [], []
        for j in range(depth):
            target, got = main[1 + j:1 + j + n], head[f"logits_{j + 1}"]
            losses.append(-jnp.mean(jnp.sum(jax.nn.softmax(target) * jax.nn.log_softmax(got),
                                            axis=-1)))
            agree.append(jnp.mean(jnp.argmax(got, -1) == jnp.argmax(target, -1)))
        return jnp.mean(jnp.stack(losses)), jnp.stack(agree)

    def loss(mlp: Tree, frozen: Tree, batch: jax.Array) -> tuple[jax.Array, jax.Array]:
        kd, agree = jax.vmap(lambda s: one(mlp, frozen, s))(batch)
        return kd.mean(), agree.mean(axis=0)

    return loss


@dataclasses.dataclass(frozen=True)
class HeadRecipe:
    """How to train one kind of MTP head on a frozen main model: its params' prefix, the
    checkpoint info key it records under, the :func:`init_params` flag that draws it, and
    its loss (``make_loss(cfg, seq) -> loss(head, frozen, batch) -> (loss, metric)``)."""

    kind: str
    prefix: str
    info_key: str
    init_flag: str
    make_loss: Callable[[QwenConfig, int], Callable[..., Any]]
    steps: int


RECIPES = {
    "light": HeadRecipe("light", "mtpl.", "light_head", "light", make_light_loss, LIGHT_STEPS),
    "mlp": HeadRecipe("mlp", "mtpm.", "mlp_head", "mlp", make_mlp_loss, MLP_STEPS),
}
"""The heads ``--light-head-on`` and ``--mlp-head-on`` train."""


def evaluate_head(kind: str, params: dict[str, Any], held: np.ndarray, seq: int = 128,
                  seed: int = 0, n: int = 64, cfg: QwenConfig = CONFIG
                  ) -> tuple[float, list[float]]:
    """(held-out loss, metric as a list) of the ``kind`` head (``params`` holds the main
    model's weights and the head's) on the same ``n`` windows :func:`evaluate` uses."""
    recipe = RECIPES[kind]
    loss = jax.jit(recipe.make_loss(cfg, seq))
    xb = jnp.asarray(windows(held, n, seq + 1, np.random.default_rng(seed + 12345)))
    head = {k: jnp.asarray(x) for k, x in params.items() if k.startswith(recipe.prefix)}
    frozen = {k: jnp.asarray(x) for k, x in params.items() if not k.startswith("mtp")}
    value, metric = loss(head, frozen, xb)
    return round(float(value), 4), [round(float(m), 4) for m in np.atleast_1d(metric)]


def train_head(kind: str, params: dict[str, np.ndarray], cfg: QwenConfig,
               steps: int | None = None, batch: int = 16, seq: int = 128, seed: int = 0,
               lr: float = 3e-3, weight_decay: float = 0.01,
               log: Callable[[str], None] = print
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train a fresh ``kind`` head (a key of :data:`RECIPES`; seeded) on the frozen main
    model in ``params``; return (the head's weights only, info: steps, seconds, held-out
    loss before and after, and for the MLP head its held-out agreement with the main
    model per chain depth). ``params`` is not modified."""
    recipe = RECIPES[kind]
    steps = steps or recipe.steps
    train_data, held, digest, _ = corpus()
    rng = np.random.default_rng(seed)
    init = init_params(cfg, seed=seed + 2, **{recipe.init_flag: True})
    head = {k: jnp.asarray(v) for k, v in init.items() if k.startswith(recipe.prefix)}
    frozen = {k: jnp.asarray(v) for k, v in params.items() if not k.startswith("mtp")}
    before, _ = evaluate_head(kind, {**params, **init}, held, seq, seed, cfg=cfg)
    grad = jax.jit(jax.value_and_grad(recipe.make_loss(cfg, seq), has_aux=True))
    m = {k: jnp.zeros_like(v) for k, v in head.items()}
    v = {k: jnp.zeros_like(x) for k, x in head.items()}
    update = adamw(weight_decay)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        xb = jnp.asarray(windows(train_data, batch, seq + 1, rng))
        (value, _), g = grad(head, frozen, xb)
        head, m, v = update(head, m, v, g, jnp.float32(step),
                            jnp.float32(lr * schedule(step, steps)))
        if step % max(1, steps // 10) == 0 or step == 1:
            log(f"step {step:5d}/{steps}  {kind} head {float(value):.3f}"
                f"  ({time.perf_counter() - t0:.0f} s)")
    seconds = round(time.perf_counter() - t0, 1)
    out = {k: np.asarray(x) for k, x in head.items()}
    after, metric = evaluate_head(kind, {**params, **out}, held, seq, seed, cfg=cfg)
    name = "held_out_mtp_" + kind
    info: dict[str, Any] = {"steps": steps, "batch": batch, "seq": seq, "seed": seed,
                            "lr": lr, "train_seconds": seconds, "corpus_sha256": digest,
                            name + "_init": before, name: after}
    if kind == "mlp":
        info["held_out_agreement"] = metric
    log(f"{kind} head held-out loss (nats/byte): {before} at init -> {after}"
        + (f"; agreement with the main model by depth {metric}" if kind == "mlp" else ""))
    return out, info


def add_head(kind: str, path: str, steps: int | None = None, batch: int = 16,
             seq: int = 128, seed: int = 0, lr: float = 3e-3,
             log: Callable[[str], None] = print, mlp_width: int | None = None
             ) -> dict[str, Any]:
    """Train a ``kind`` head on the checkpoint at ``path`` (:func:`train_head`) and write
    the checkpoint back atomically with the head's arrays added (replaced, if it had
    them), every other array unchanged, and the run recorded under the recipe's info key
    (the other info keys kept). The config is unchanged, except that ``mlp_width`` (MLP
    head only) sets its hidden width. Returns that record."""
    recipe = RECIPES[kind]
    params, cfg = load_weights(path)
    if cfg is None:
        raise SystemExit(f"{path}: no config stored with the weights")
    if mlp_width is not None:
        if kind != "mlp":
            raise SystemExit("--mlp-width applies to the MLP head only")
        cfg = dataclasses.replace(cfg, mlp_width=mlp_width)
    info = load_info(path)
    head, record = train_head(kind, params, cfg, steps, batch, seq, seed, lr, log=log)
    kept = {k: v for k, v in params.items() if not k.startswith(recipe.prefix)}
    save_weights(path, {**kept, **head}, cfg, {**info, recipe.info_key: record})
    written, _ = load_weights(path)
    changed = [k for k, v in kept.items()
               if written[k].dtype != v.dtype or not np.array_equal(written[k], v)]
    if changed:
        raise SystemExit(f"{path}: arrays changed on writing: {changed}")
    return record


def main() -> None:
    """Train and write the checkpoint."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=None,
                    help=f"default 1600 (with --light-head-on, {LIGHT_STEPS}; with "
                         f"--mlp-head-on, {MLP_STEPS})")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--layers", type=int, default=CONFIG.n_layers,
                    help=f"main-model layers (default {CONFIG.n_layers}; the MTP head has one)")
    ap.add_argument("--quick", action="store_true", help="50 steps, to try the script out")
    ap.add_argument("--light-head-on", metavar="CHECKPOINT",
                    help="train only a light MTP head (mtpl.*) on CHECKPOINT's frozen main "
                         "model and add it to CHECKPOINT (every other array unchanged)")
    ap.add_argument("--mlp-head-on", metavar="CHECKPOINT",
                    help="distill only an MLP MTP head (mtpm.*) from CHECKPOINT's frozen "
                         "main model and add it to CHECKPOINT (every other array unchanged)")
    ap.add_argument("--mlp-width", type=int, default=None,
                    help="with --mlp-head-on: the head's hidden width (default 2 d_model; "
                         "stored in the checkpoint's config)")
    args = ap.parse_args()
    if args.mlp_width is not None and not args.mlp_head_on:
        raise SystemExit("--mlp-width needs --mlp-head-on")
    for kind, path in (("light", args.light_head_on), ("mlp", args.mlp_head_on)):
        if path:
            steps = 50 if args.quick else args.steps or RECIPES[kind].steps
            add_head(kind, path, steps, args.batch, args.seq, args.seed, args.lr,
                     mlp_width=args.mlp_width if kind == "mlp" else None)
            print(f"added the {kind} head to {path}")
            return
    steps = 50 if args.quick else args.steps or 1600
    cfg = dataclasses.replace(CONFIG, n_layers=args.layers)
    params, info = train(steps, args.batch, args.seq, args.seed, args.lr, cfg=cfg)
    save_weights(args.out, params, cfg, info)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
