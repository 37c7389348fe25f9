"""The Qwen-style model of ``qwen.py`` written directly in JAX (no graphc): the baseline
the benchmarks compare against, and the reference for gradients through graphc."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from graphc.models.qwen import QwenConfig


def _rms(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x: jax.Array, pos: jax.Array, theta: float) -> jax.Array:
    d = x.shape[-1]
    half = d // 2
    inv = theta ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / d)
    ang = pos.astype(jnp.float32)[:, None] * inv[None, :]
    cos, sin = jnp.cos(ang)[:, None, :], jnp.sin(ang)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def forward(cfg: QwenConfig, params: Mapping[str, jax.Array], cache: Mapping[str, jax.Array],
            tokens: jax.Array, pos: jax.Array, last_only: bool = False
            ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """(logits, pre-norm hidden state, new cache) for ``tokens`` at positions ``pos``.
    ``last_only``: compute the logits of the last token only."""
    n = tokens.shape[0]
    h, kvh, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    x = params["embed"][tokens]
    mask = (jnp.arange(cfg.max_ctx)[None, :] <= pos[:, None])[None, None]
    new_cache: dict[str, jax.Array] = {}
    for i in range(cfg.n_layers):
        p = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"l{i}.")}
        xn = _rms(x, p["attn_norm"], cfg.eps)
        q = _rope((xn @ p["wq"]).reshape(n, h, hd), pos, cfg.rope_theta)
        k = _rope((xn @ p["wk"]).reshape(n, kvh, hd), pos, cfg.rope_theta)
        v = (xn @ p["wv"]).reshape(n, kvh, hd)
        kc = cache[f"l{i}.k_cache"].at[pos].set(k)
        vc = cache[f"l{i}.v_cache"].at[pos].set(v)
        new_cache[f"l{i}.k_cache"], new_cache[f"l{i}.v_cache"] = kc, vc
        att = jax.nn.dot_product_attention(q[None], kc[None], vc[None], mask=mask,
                                           scale=1.0 / hd**0.5)[0]
        x = x + att.reshape(n, h * hd) @ p["wo"]
        xn = _rms(x, p["ffn_norm"], cfg.eps)
        x = x + (jax.nn.silu(xn @ p["w_gate"]) * (xn @ p["w_up"])) @ p["w_down"]
    h_pre = x
    last = x[-1:] if last_only else x
    logits = _rms(last, params["final_norm"], cfg.eps) @ params["lm_head"]
    return logits, h_pre, new_cache


def jitted_forward(cfg: QwenConfig, last_only: bool = False) -> Any:
    """``forward`` jitted with the cache donated (updated in place on the device)."""
    return jax.jit(lambda p, c, t, s: forward(cfg, p, c, t, s, last_only), donate_argnums=(1,))
