"""A Qwen-style decoder-only transformer written with the graphc API.

Token embedding (``get_rows``), RMSNorm with weight, grouped-query attention with RoPE over
a KV cache held in ``state`` tensors (written with ``set_rows``, read by ``attention``),
SwiGLU MLP, final norm, lm_head. One graph builder serves prompt processing (n tokens)
and decode (1 to k+1 tokens): the query positions come in as an input, and the causal
mask of ``attention`` hides cache slots past each query's position.

The main graph marks three outputs: ``logits``, ``h_pre_norm`` (the residual stream
before the final norm) and ``h_post_norm`` (after it). A caller states per call which
it reads, and dead-output elimination drops the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import graphc as gc


@dataclass(frozen=True)
class QwenConfig:
    """Model sizes. ``max_ctx`` is the KV-cache length."""

    vocab: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    d_ffn: int = 128
    rope_theta: float = 10000.0
    max_ctx: int = 128
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError("d_model must divide by n_heads, n_heads by n_kv_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for RoPE")


def param_shapes(cfg: QwenConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every weight of the main model."""
    d, hd, f = cfg.d_model, cfg.head_dim, cfg.d_ffn
    shapes: dict[str, tuple[int, ...]] = {"embed": (cfg.vocab, d)}
    for i in range(cfg.n_layers):
        shapes |= {
            f"l{i}.attn_norm": (d,), f"l{i}.wq": (d, cfg.n_heads * hd),
            f"l{i}.wk": (d, cfg.n_kv_heads * hd), f"l{i}.wv": (d, cfg.n_kv_heads * hd),
            f"l{i}.wo": (cfg.n_heads * hd, d), f"l{i}.ffn_norm": (d,),
            f"l{i}.w_gate": (d, f), f"l{i}.w_up": (d, f), f"l{i}.w_down": (f, d),
        }
    shapes |= {"final_norm": (d,), "lm_head": (d, cfg.vocab)}
    return shapes


def init_params(cfg: QwenConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random weights (norm weights 1, matrices scaled by 1/sqrt(fan-in))."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in param_shapes(cfg).items():
        if len(shape) == 1:
            out[name] = np.ones(shape, np.float32)
        else:
            scale = 1.0 if name == "embed" else 1.0 / np.sqrt(shape[0])
            out[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out


def block(g: gc.Graph, cfg: QwenConfig, x: gc.Tensor, pos: gc.Tensor, prefix: str,
          cache: tuple[gc.Tensor, gc.Tensor] | None) -> gc.Tensor:
    """One transformer block over ``x`` [n, d] at positions ``pos``; params are looked up
    (or created) under ``prefix``. With ``cache`` = (k_cache, v_cache) states, the new
    keys and values are written at ``pos`` and attention reads the whole cache."""
    n = x.shape[0]
    hd, h, kvh = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads

    def p(name: str, shape: tuple[int, ...]) -> gc.Tensor:
        full = f"{prefix}.{name}"
        found = g.leaf(full)
        return found if found is not None else g.param(full, shape)

    d, f = cfg.d_model, cfg.d_ffn
    xn = g.mul(g.rms_norm(x, cfg.eps), p("attn_norm", (d,)))
    q = g.rope(g.reshape(xn @ p("wq", (d, h * hd)), (n, h, hd)), pos, cfg.rope_theta)
    k = g.rope(g.reshape(xn @ p("wk", (d, kvh * hd)), (n, kvh, hd)), pos, cfg.rope_theta)
    v = g.reshape(xn @ p("wv", (d, kvh * hd)), (n, kvh, hd))
    if cache is not None:
        k_cache, v_cache = cache
        k = g.set_rows(k_cache, pos, k, name=f"{prefix}.k_cache_new")
        v = g.set_rows(v_cache, pos, v, name=f"{prefix}.v_cache_new")
        g.assign(k_cache, k)
        g.assign(v_cache, v)
    att = g.attention(q, k, v, pos)
    x = g.add(x, g.reshape(att, (n, h * hd)) @ p("wo", (h * hd, d)), name=f"{prefix}.h_attn")
    xn = g.mul(g.rms_norm(x, cfg.eps), p("ffn_norm", (d,)))
    gate = g.mul(g.silu(xn @ p("w_gate", (d, f))), xn @ p("w_up", (d, f)))
    return g.add(x, gate @ p("w_down", (f, d)), name=f"{prefix}.h_out")


def build_main(cfg: QwenConfig, n_tokens: int, name: str = "qwen", kv_cache: bool = True
               ) -> gc.Graph:
    """The main model over ``n_tokens`` tokens (prompt processing or decode).

    Inputs: ``tokens`` i32[n], ``pos`` i32[n] (absolute positions). States (with
    ``kv_cache``): ``l{i}.k_cache`` / ``l{i}.v_cache`` [max_ctx, kv_heads, head_dim].
    Outputs: ``logits`` [n, vocab], ``h_pre_norm`` and ``h_post_norm`` [n, d].
    """
    g = gc.Graph(name)
    tokens = g.input("tokens", (n_tokens,), "i32")
    pos = g.input("pos", (n_tokens,), "i32")
    for sname, shape in param_shapes(cfg).items():
        g.param(sname, shape)
    x = g.get_rows(g.leaf("embed"), tokens, name="h_embed")
    kv_shape = (cfg.max_ctx, cfg.n_kv_heads, cfg.head_dim)
    for i in range(cfg.n_layers):
        cache = (g.state(f"l{i}.k_cache", kv_shape), g.state(f"l{i}.v_cache", kv_shape)) \
            if kv_cache else None
        x = block(g, cfg, x, pos, f"l{i}", cache)
    h_pre = x
    h_post = g.mul(g.rms_norm(h_pre, cfg.eps), g.leaf("final_norm"), name="h_post")
    g.set_output(h_post @ g.leaf("lm_head"), "logits")
    g.set_output(h_pre, "h_pre_norm")
    g.set_output(h_post, "h_post_norm")
    return g
