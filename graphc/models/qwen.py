"""A Qwen-style decoder-only transformer written with the graphc API.

Token embedding (``get_rows``), RMSNorm with weight, grouped-query attention with RoPE over
a KV cache held in ``state`` tensors (written with ``set_rows``, read by ``attention``),
SwiGLU MLP, final norm, lm_head. One graph builder serves prompt processing (n tokens)
and decode (1 to k+1 tokens): the query positions come in as an input, and the causal
mask of ``attention`` hides cache slots past each query's position.

The main graph marks three outputs: ``logits``, ``h_pre_norm`` (the residual stream
before the final norm) and ``h_post_norm`` (after it). A caller states per call which
it reads, and dead-output elimination drops the rest.

The multi-token-prediction (MTP) head is a second graph (:func:`build_mtp`): it takes the
main model's hidden state for position t and the embedding of token t+1, normalizes
both, concatenates, projects, runs one transformer block with a KV cache of its own, and
shares the embedding and the lm_head, giving draft logits for token t+2. It also outputs
its own hidden state, so drafts can be chained. Which main-model hidden state it reads
(``"pre_norm"`` or ``"post_norm"``) is the caller's choice: the silent aliasing bug this
project exists for made a head trained on one read the other.

A second, lighter MTP head (:class:`LightMtpHead`, params ``mtpl.*``) has no attention and
no KV cache: the same normalize-concatenate-project input, one residual SwiGLU FFN, then
the shared lm_head. It costs a fraction of the block head's ops per application, and
sees only the one (hidden state, token) pair it is given.

The third, the MLP head (:class:`MlpMtpHead`, params ``mtpm.*``), is one hidden layer on
the post-norm hidden state and a per-token input, distilled from the main model: two
matmuls, one gather and one argmax per draft.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

import graphc as gc


@dataclass(frozen=True)
class QwenConfig:
    """Model sizes. ``max_ctx`` is the KV-cache length; ``mlp_width`` the MLP MTP head's
    hidden width (None: the default of :func:`mlp_width`)."""

    vocab: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    d_ffn: int = 128
    rope_theta: float = 10000.0
    max_ctx: int = 128
    eps: float = 1e-6
    mlp_width: int | None = None

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    def __post_init__(self) -> None:
        if min(self.vocab, self.d_model, self.n_heads, self.n_kv_heads, self.d_ffn,
               self.max_ctx, 1 if self.mlp_width is None else self.mlp_width) < 1 \
                or self.n_layers < 0:
            raise gc.GraphError(f"every size of {self} must be positive")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise gc.GraphError(f"d_model ({self.d_model}) must divide by n_heads "
                                f"({self.n_heads}), and n_heads by n_kv_heads "
                                f"({self.n_kv_heads})")
        if self.head_dim % 2:
            raise gc.GraphError(f"head_dim ({self.head_dim}) must be even for RoPE")


def param_shapes(cfg: QwenConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every weight of the main model."""
    d = cfg.d_model
    shapes: dict[str, tuple[int, ...]] = {"embed": (cfg.vocab, d)}
    for i in range(cfg.n_layers):
        shapes |= _block_shapes(cfg, f"l{i}")
    shapes |= {"final_norm": (d,), "lm_head": (d, cfg.vocab)}
    return shapes


def _block_shapes(cfg: QwenConfig, prefix: str) -> dict[str, tuple[int, ...]]:
    d, hd, f = cfg.d_model, cfg.head_dim, cfg.d_ffn
    return {
        f"{prefix}.attn_norm": (d,), f"{prefix}.wq": (d, cfg.n_heads * hd),
        f"{prefix}.wk": (d, cfg.n_kv_heads * hd), f"{prefix}.wv": (d, cfg.n_kv_heads * hd),
        f"{prefix}.wo": (cfg.n_heads * hd, d), f"{prefix}.ffn_norm": (d,),
        f"{prefix}.w_gate": (d, f), f"{prefix}.w_up": (d, f), f"{prefix}.w_down": (f, d),
    }


def mtp_param_shapes(cfg: QwenConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the MTP head's own weights (it shares ``embed`` and ``lm_head``)."""
    d = cfg.d_model
    return {"mtp.hnorm": (d,), "mtp.enorm": (d,), "mtp.proj": (2 * d, d),
            **_block_shapes(cfg, "mtp"), "mtp.final_norm": (d,)}


def light_param_shapes(cfg: QwenConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the light MTP head's own weights (:class:`LightMtpHead`; it shares
    ``embed`` and ``lm_head``)."""
    d, f = cfg.d_model, cfg.d_ffn
    return {"mtpl.hnorm": (d,), "mtpl.enorm": (d,), "mtpl.proj": (2 * d, d),
            "mtpl.ffn_norm": (d,), "mtpl.w_gate": (d, f), "mtpl.w_up": (d, f),
            "mtpl.w_down": (f, d), "mtpl.final_norm": (d,)}


def mlp_width(cfg: QwenConfig) -> int:
    """Width of the MLP head's hidden layer (:class:`MlpMtpHead`): ``cfg.mlp_width``, by
    default 2 d_model. (On the demo checkpoint, d_model and 4 d_model were tried too: the
    narrower head drafted worse, the wider one cost more per draft than its better drafts
    saved.)"""
    return 2 * cfg.d_model if cfg.mlp_width is None else cfg.mlp_width


def mlp_param_shapes(cfg: QwenConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the MLP MTP head's weights (:class:`MlpMtpHead`; it shares none)."""
    d, f, v = cfg.d_model, mlp_width(cfg), cfg.vocab
    return {"mtpm.a": (d, f), "mtpm.b": (v, f), "mtpm.c": (f, f), "mtpm.w": (f, v)}


def init_params(cfg: QwenConfig, seed: int = 0, mtp: bool = False, light: bool = False,
                mlp: bool = False) -> dict[str, np.ndarray]:
    """Seeded random weights for the main model (with ``mtp``, the MTP head's too; with
    ``light`` and ``mlp``, the light and MLP heads', drawn after everything else in that
    order so the other weights do not depend on them): norm weights 1, matrices scaled by
    1/sqrt(fan-in)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    shapes = (param_shapes(cfg) | (mtp_param_shapes(cfg) if mtp else {})
              | (light_param_shapes(cfg) if light else {})
              | (mlp_param_shapes(cfg) if mlp else {}))
    for name, shape in shapes.items():
        if len(shape) == 1:
            out[name] = np.ones(shape, np.float32)
        else:
            scale = 1.0 if name == "embed" else 1.0 / np.sqrt(shape[0])
            out[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out


def block(g: gc.Graph, cfg: QwenConfig, x: gc.Tensor, pos: gc.Tensor, prefix: str,
          cache: tuple[gc.Tensor, gc.Tensor] | None, inplace: bool = False
          ) -> tuple[gc.Tensor, tuple[gc.Tensor, gc.Tensor] | None]:
    """One transformer block over ``x`` [n, d] at positions ``pos``; params are looked up
    (or created) under ``prefix``. With ``cache`` = (k_cache, v_cache), the new keys and
    values are written at ``pos`` (``set_rows``, with ``inplace`` asked to write into the
    cache's own bytes) and attention reads the whole cache.

    Returns (the block's output, the written caches or None). The caller assigns the
    written caches to the states, so blocks can be chained over one cache in one graph.
    """
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
    written: tuple[gc.Tensor, gc.Tensor] | None = None
    if cache is not None:
        k_cache, v_cache = cache
        k = g.set_rows(k_cache, pos, k, inplace=inplace, name=f"{prefix}.k_cache_new")
        v = g.set_rows(v_cache, pos, v, inplace=inplace, name=f"{prefix}.v_cache_new")
        written = (k, v)
    att = g.attention(q, k, v, pos)
    x = g.add(x, g.reshape(att, (n, h * hd)) @ p("wo", (h * hd, d)), name=f"{prefix}.h_attn")
    xn = g.mul(g.rms_norm(x, cfg.eps), p("ffn_norm", (d,)))
    gate = g.mul(g.silu(xn @ p("w_gate", (d, f))), xn @ p("w_up", (d, f)))
    return g.add(x, gate @ p("w_down", (f, d)), name=f"{prefix}.h_out"), written


def _w(g: gc.Graph, name: str) -> gc.Tensor:
    """The param ``name`` of ``g`` (declared by :func:`param_shapes`)."""
    t = g.leaf(name)
    if t is None:
        raise gc.GraphError(f"@{g.name} has no param {name!r}")
    return t


def _cache_states(g: gc.Graph, cfg: QwenConfig, prefix: str) -> tuple[gc.Tensor, gc.Tensor]:
    """The KV-cache states ``{prefix}.k_cache`` / ``{prefix}.v_cache`` of ``g`` (declared on
    first use) [max_ctx, kv_heads, head_dim]."""
    shape = (cfg.max_ctx, cfg.n_kv_heads, cfg.head_dim)
    found = g.states.get(f"{prefix}.k_cache"), g.states.get(f"{prefix}.v_cache")
    if found[0] is not None and found[1] is not None:
        return found[0], found[1]
    return g.state(f"{prefix}.k_cache", shape), g.state(f"{prefix}.v_cache", shape)


def main_forward(g: gc.Graph, cfg: QwenConfig, tokens: gc.Tensor, pos: gc.Tensor,
                 kv_cache: bool = True) -> tuple[gc.Tensor, gc.Tensor]:
    """The main model's body in ``g`` over ``tokens`` i32[n] at ``pos`` i32[n]: returns
    (h_pre_norm, h_post_norm) [n, d]; the lm_head is the caller's (``h_post @ lm_head``),
    so it can be applied to the rows it needs. Declares the main model's params, and with
    ``kv_cache`` its cache states, which it writes at ``pos`` and assigns."""
    for sname, shape in param_shapes(cfg).items():
        if g.leaf(sname) is None:
            g.param(sname, shape)
    x = g.get_rows(_w(g, "embed"), tokens, name="h_embed")
    for i in range(cfg.n_layers):
        cache = _cache_states(g, cfg, f"l{i}") if kv_cache else None
        x, written = block(g, cfg, x, pos, f"l{i}", cache)
        if cache is not None and written is not None:
            g.assign(cache[0], written[0])
            g.assign(cache[1], written[1])
    h_post = g.mul(g.rms_norm(x, cfg.eps), _w(g, "final_norm"), name="h_post")
    return x, h_post


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
    h_pre, h_post = main_forward(g, cfg, tokens, pos, kv_cache)
    g.set_output(h_post @ _w(g, "lm_head"), "logits")
    g.set_output(h_pre, "h_pre_norm")
    g.set_output(h_post, "h_post_norm")
    return g


class MtpHead:
    """The MTP head's layers inside one graph ``g``: declares its params (and the shared
    ``embed`` and ``lm_head``) on construction; :meth:`step` runs the head over (hidden
    state, next token) pairs, chaining writes over one KV cache; :meth:`finish` assigns
    the last written cache to the states. The cache writes are asked in place
    (``inplace=True``), so a chain of steps updates the state's own bytes; the aliasing
    checker proves each compiled plan safe."""

    def __init__(self, g: gc.Graph, cfg: QwenConfig, kv_cache: bool = True) -> None:
        self.g, self.cfg = g, cfg
        for pname, shape in {"embed": (cfg.vocab, cfg.d_model),
                             "lm_head": (cfg.d_model, cfg.vocab),
                             **mtp_param_shapes(cfg)}.items():
            if g.leaf(pname) is None:
                g.param(pname, shape)
        self.states = _cache_states(g, cfg, "mtp") if kv_cache else None
        self.cache = self.states

    def step(self, hidden: gc.Tensor, tokens: gc.Tensor, pos: gc.Tensor) -> gc.Tensor:
        """The head's hidden state [n, d] (``mtp_hidden``) for pairs (``hidden`` [n, d],
        ``tokens`` i32[n]) at cache slots ``pos`` i32[n]; writes the slots after every
        earlier step's writes."""
        g, cfg = self.g, self.cfg
        h = g.mul(g.rms_norm(hidden, cfg.eps), _w(g, "mtp.hnorm"))
        e = g.mul(g.rms_norm(g.get_rows(_w(g, "embed"), tokens), cfg.eps), _w(g, "mtp.enorm"))
        x = g.concat([h, e], axis=1) @ _w(g, "mtp.proj")
        x, written = block(g, cfg, x, pos, "mtp", self.cache, inplace=True)
        self.cache = written
        return x

    def logits(self, mtp_hidden: gc.Tensor) -> gc.Tensor:
        """Draft logits [n, vocab] from the head's hidden state rows ``mtp_hidden``."""
        g = self.g
        return g.mul(g.rms_norm(mtp_hidden, self.cfg.eps),
                     _w(g, "mtp.final_norm")) @ _w(g, "lm_head")

    def finish(self) -> None:
        """Assign the cache as written by the last step to the head's states."""
        if self.states is not None and self.cache is not None:
            self.g.assign(self.states[0], self.cache[0])
            self.g.assign(self.states[1], self.cache[1])


def build_mtp(cfg: QwenConfig, n_tokens: int, name: str = "mtp", kv_cache: bool = True
              ) -> gc.Graph:
    """The MTP head over ``n_tokens`` (hidden state, next token) pairs.

    Inputs: ``hidden`` f32[n, d] (the main model's hidden state at positions t),
    ``tokens`` i32[n] (the tokens at t+1), ``pos`` i32[n] (t, the head's own KV-cache
    slots, as in training). States (with ``kv_cache``): ``mtp.k_cache``, ``mtp.v_cache``;
    without, the pairs attend to each other causally (for training, ``pos`` = 0..n-1).
    Outputs: ``logits`` [n, vocab] (drafts for t+2) and ``mtp_hidden`` [n, d] (the
    block's output, to chain drafts).
    """
    g = gc.Graph(name)
    hidden = g.input("hidden", (n_tokens, cfg.d_model))
    tokens = g.input("tokens", (n_tokens,), "i32")
    pos = g.input("pos", (n_tokens,), "i32")
    head = MtpHead(g, cfg, kv_cache)
    x = head.step(hidden, tokens, pos)
    head.finish()
    g.set_output(head.logits(x), "logits")
    g.set_output(x, "mtp_hidden")
    return g


class LightMtpHead:
    """The light MTP head's layers inside one graph ``g``: declares its params (and the
    shared ``embed`` and ``lm_head``) on construction. No attention and no KV cache, so
    each (hidden state, next token) pair is computed on its own, and the head has no
    states: for hidden state ``h_t`` and token ``x_{t+1}``,
    ``x = concat(rms_norm(h_t) * hnorm, rms_norm(embed[x_{t+1}]) * enorm) @ proj``, then
    ``x + w_down(silu(n @ w_gate) * (n @ w_up))`` with ``n = rms_norm(x) * ffn_norm`` is
    the head's hidden state; ``rms_norm(.) * final_norm @ lm_head`` its draft logits for
    ``x_{t+2}``."""

    def __init__(self, g: gc.Graph, cfg: QwenConfig) -> None:
        self.g, self.cfg = g, cfg
        for pname, shape in {"embed": (cfg.vocab, cfg.d_model),
                             "lm_head": (cfg.d_model, cfg.vocab),
                             **light_param_shapes(cfg)}.items():
            if g.leaf(pname) is None:
                g.param(pname, shape)

    def step(self, hidden: gc.Tensor, tokens: gc.Tensor) -> gc.Tensor:
        """The head's hidden state [n, d] for pairs (``hidden`` [n, d], ``tokens`` i32[n]);
        row i depends on row i of each input only."""
        g, eps = self.g, self.cfg.eps
        h = g.mul(g.rms_norm(hidden, eps), _w(g, "mtpl.hnorm"))
        e = g.mul(g.rms_norm(g.get_rows(_w(g, "embed"), tokens), eps), _w(g, "mtpl.enorm"))
        x = g.concat([h, e], axis=1) @ _w(g, "mtpl.proj")
        n = g.mul(g.rms_norm(x, eps), _w(g, "mtpl.ffn_norm"))
        gate = g.mul(g.silu(n @ _w(g, "mtpl.w_gate")), n @ _w(g, "mtpl.w_up"))
        return g.add(x, gate @ _w(g, "mtpl.w_down"), name="mtpl.h_out")

    def logits(self, hidden: gc.Tensor) -> gc.Tensor:
        """Draft logits [n, vocab] from the head's hidden state rows ``hidden``."""
        g = self.g
        return g.mul(g.rms_norm(hidden, self.cfg.eps),
                     _w(g, "mtpl.final_norm")) @ _w(g, "lm_head")


def build_light_mtp(cfg: QwenConfig, n_tokens: int, name: str = "mtp_light") -> gc.Graph:
    """The light MTP head over ``n_tokens`` (hidden state, next token) pairs.

    Inputs: ``hidden`` f32[n, d] (the main model's hidden state at positions t),
    ``tokens`` i32[n] (the tokens at t+1). No states. Outputs: ``logits`` [n, vocab]
    (drafts for t+2) and ``mtp_hidden`` [n, d] (the head's hidden state, to chain drafts).
    """
    g = gc.Graph(name)
    hidden = g.input("hidden", (n_tokens, cfg.d_model))
    tokens = g.input("tokens", (n_tokens,), "i32")
    head = LightMtpHead(g, cfg)
    x = head.step(hidden, tokens)
    g.set_output(head.logits(x), "logits")
    g.set_output(x, "mtp_hidden")
    return g


class MlpMtpHead:
    """The MLP MTP head's layers inside one graph ``g``: declares its params on
    construction. One hidden layer, no norm, no attention, no KV cache, no shared weights:
    for the main model's **post-norm** hidden state ``h_t`` (the lm_head's input, so the
    head needs no norm of its own) and token ``x_{t+1}``,
    ``z = silu(h_t @ a + b[x_{t+1}])`` is the head's state and ``z @ w`` its draft logits
    for ``x_{t+2}``; a chained draft feeds the head its own state,
    ``z' = silu(z @ c + b[draft])``. It is trained by distillation: its logits are fitted
    to the main model's next-position distribution (``examples/train_tiny.py
    --mlp-head-on``), so its argmax is what verification accepts. Every application is
    two matmuls, one gather and one argmax: on a CPU, where small calls cost per op, it
    is the cheapest head that still sees the (hidden state, token) pair."""

    SOURCE = "post_norm"
    """The main-model hidden state it was trained on (and must be fed)."""

    def __init__(self, g: gc.Graph, cfg: QwenConfig) -> None:
        self.g, self.cfg = g, cfg
        for pname, shape in mlp_param_shapes(cfg).items():
            if g.leaf(pname) is None:
                g.param(pname, shape)

    def first(self, hidden: gc.Tensor, tokens: gc.Tensor) -> gc.Tensor:
        """The head's state [n, F] for pairs (post-norm ``hidden`` [n, d], ``tokens``
        i32[n]); row i depends on row i of each input only."""
        g = self.g
        return g.silu(g.add(hidden @ _w(g, "mtpm.a"), g.get_rows(_w(g, "mtpm.b"), tokens)))

    def chain(self, state: gc.Tensor, tokens: gc.Tensor) -> gc.Tensor:
        """The next state [n, F] from the head's own ``state`` [n, F] and the draft it made
        from it (``tokens`` i32[n])."""
        g = self.g
        return g.silu(g.add(state @ _w(g, "mtpm.c"), g.get_rows(_w(g, "mtpm.b"), tokens)))

    def logits(self, state: gc.Tensor) -> gc.Tensor:
        """Draft logits [n, vocab] from the head's state rows."""
        return state @ _w(self.g, "mtpm.w")


def build_mlp_mtp(cfg: QwenConfig, n_tokens: int, depth: int = 1, name: str = "mtp_mlp"
                  ) -> gc.Graph:
    """The MLP MTP head over ``n_tokens`` pairs, chained ``depth`` times (for training:
    every depth is fed the true next token, teacher forcing).

    Inputs: ``hidden`` f32[n, d] (the main model's post-norm hidden state at positions t),
    ``tokens`` i32[depth, n] (row j: the tokens at t+1+j). No states. Outputs
    ``logits_j`` [n, vocab] for j = 1..depth (drafts for t+1+j).
    """
    if depth < 1:
        raise gc.GraphError(f"the chain depth must be at least 1, got {depth}")
    g = gc.Graph(name)
    hidden = g.input("hidden", (n_tokens, cfg.d_model))
    tokens = g.input("tokens", (depth, n_tokens), "i32")
    head = MlpMtpHead(g, cfg)

    def row(j: int) -> gc.Tensor:
        return g.reshape(g.slice(tokens, 0, j, j + 1), (n_tokens,))

    z = head.first(hidden, row(0))
    g.set_output(head.logits(z), "logits_1")
    for j in range(1, depth):
        z = head.chain(z, row(j))
        g.set_output(head.logits(z), f"logits_{j + 1}")
    return g


def save_weights(path: str, params: dict[str, np.ndarray], config: QwenConfig | None = None,
                 info: dict[str, object] | None = None) -> None:
    """Write named weights to ``.npz`` (with the config under ``__config__`` and free-form
    ``info`` under ``__info__``, as JSON bytes) or ``.safetensors`` (needs the
    ``safetensors`` package), atomically."""
    def blob(obj: object) -> np.ndarray:
        return np.frombuffer(json.dumps(obj).encode(), np.uint8)

    meta = {"__config__": blob(config.__dict__)} if config is not None else {}
    if info is not None:
        meta["__info__"] = blob(info)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import save_file

            save_file(params, tmp, metadata={"config": json.dumps(config.__dict__)}
                      if config is not None else None)
        else:
            np.savez_compressed(tmp, allow_pickle=False, **{**params, **meta})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_weights(path: str) -> tuple[dict[str, np.ndarray], QwenConfig | None]:
    """Read named weights (and the config, when stored) from ``.npz`` or ``.safetensors``.

    Only arrays are read (``allow_pickle=False``): nothing in the file is executed.
    Raises GraphError naming the file for anything unreadable.
    """
    try:
        if path.endswith(".safetensors"):
            try:
                from safetensors import safe_open
            except ImportError:
                raise gc.GraphError(f"{path}: reading .safetensors needs the safetensors "
                                    "package", fix="pip install safetensors, or use .npz") from None
            with safe_open(path, framework="numpy") as f:
                params = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
                meta = f.metadata() or {}
            cfg = QwenConfig(**json.loads(meta["config"])) if "config" in meta else None
            return params, cfg
        with np.load(path, allow_pickle=False) as z:
            params = {k: z[k] for k in z.files if not k.startswith("__")}
            cfg = (QwenConfig(**json.loads(bytes(z["__config__"]).decode()))
                   if "__config__" in z.files else None)
        return params, cfg
    except gc.GraphError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise gc.GraphError(f"{path}: cannot read weights: {e}") from None


def load_info(path: str) -> dict[str, object]:
    """The ``__info__`` stored with an ``.npz`` checkpoint (empty when there is none)."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(bytes(z["__info__"]).decode()) if "__info__" in z.files else {}


def check_params(cfg: QwenConfig, params: dict[str, np.ndarray], mtp: bool = True,
                 light: bool = False, mlp: bool = False) -> None:
    """GraphError naming the first missing or misshapen weight (of the main model, with
    ``mtp`` the MTP head's, with ``light`` and ``mlp`` the light and MLP heads')."""
    shapes = (param_shapes(cfg) | (mtp_param_shapes(cfg) if mtp else {})
              | (light_param_shapes(cfg) if light else {})
              | (mlp_param_shapes(cfg) if mlp else {}))
    for name, shape in shapes.items():
        if name not in params:
            raise gc.GraphError(f"weights lack {name!r} {list(shape)}")
        if tuple(params[name].shape) != shape:
            raise gc.GraphError(f"weight {name!r} has shape {list(params[name].shape)}, "
                                f"the config needs {list(shape)}")
