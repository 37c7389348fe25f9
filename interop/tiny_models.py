"""Tiny GGUF models with random weights that llama.cpp loads: what the captures are made
from when no real model is at hand (tests, the README's figures, ``graphc llama-check
--tiny``).

- :func:`write_qwen3`: a dense ``qwen3`` decoder (q/k norm, GQA, SwiGLU).
- :func:`write_llama`: a dense ``llama`` decoder (no q/k norm).
- :func:`write_gemma3`: a ``gemma3`` decoder, sliding-window attention layers and a
  full-attention layer, with the extra post-attention and post-FFN norms.
- :func:`write_qwen3moe`: ``qwen3`` attention with a mixture-of-experts FFN.
- :func:`write_deepseek2`: ``deepseek2`` multi-head latent attention (MLA, split
  ``attn_k_b`` / ``attn_v_b``), a leading dense block, then MoE blocks with a shared expert.
- :func:`write_qwen35_mtp`: a ``qwen35`` hybrid (a gated-delta-net block, a full-attention
  block) with one multi-token-prediction block (``nextn``).

:data:`TINY_ARCHS` maps each architecture name to its writer. Which host-read modes each
supports is found out by running it (``graphc llama-check --all-modes``), not listed here.

All tensors are F32; the vocabulary is the 256 bytes (``tokenizer.ggml.model = "llama"``
with ``<0x00>`` .. ``<0xFF>``), so any byte string is a prompt. Files are written
atomically; the same sizes and seed give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphc.errors import GraphError
from graphc.interop.ggml_abi import INSTALL
from graphc.interop.gguf_export import add_byte_tokenizer, write_atomically
from graphc.models.qwen import QwenConfig

VOCAB = 256


TINY = QwenConfig(vocab=VOCAB, max_ctx=256)
"""Default sizes of the tiny models (the ones ``../shared/notes/llama-cpp.md`` ran):
:class:`~graphc.models.qwen.QwenConfig`'s defaults, a byte vocabulary and a trained
context (``max_ctx``) of 256."""

KeyValue = bool | int | float | Sequence[int]
"""A metadata value: bool, uint32, float32 or an array of ints."""


def _check_sizes(s: QwenConfig) -> None:
    if s.vocab != VOCAB:
        raise GraphError(f"the tiny models use a byte vocabulary of {VOCAB}, got {s.vocab}",
                         fix=f"pass a QwenConfig with vocab={VOCAB}")


def _writer(path: Path, arch: str) -> tuple[Any, Any]:
    try:
        import gguf
    except ImportError:
        raise GraphError("writing GGUF files needs the gguf package", fix=INSTALL) from None
    return gguf, gguf.GGUFWriter(str(path), arch)


def _finish(gguf: Any, g: Any, tensors: dict[str, np.ndarray]) -> None:
    """File type, tokenizer and tensors, then write and close the file."""
    g.add_file_type(gguf.LlamaFileType.ALL_F32)
    add_byte_tokenizer(gguf, g)
    for name, arr in tensors.items():
        g.add_tensor(name, arr)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


class _Weights:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.out: dict[str, np.ndarray] = {}

    def mat(self, name: str, *shape: int) -> None:
        """A (..., out, in) matrix (a stack of them for experts), stored as ggml
        ne = [in, out, ...]."""
        self.out[name] = (self.rng.standard_normal(shape) / np.sqrt(shape[-1])
                          ).astype(np.float32)

    def vec(self, name: str, n: int, value: float | None = 1.0) -> None:
        self.out[name] = (np.full(n, value, np.float32) if value is not None
                          else (self.rng.standard_normal(n) * 0.1).astype(np.float32))

    def ends(self, d: int, output: bool = True) -> None:
        """Token embedding, final norm and (unless tied) output projection."""
        self.mat("token_embd.weight", VOCAB, d)
        self.vec("output_norm.weight", d)
        if output:
            self.mat("output.weight", VOCAB, d)


def _keys(s: QwenConfig, n_blocks: int, **over: KeyValue) -> dict[str, KeyValue]:
    """The hyperparameters every tiny model has (keys without the ``<arch>.`` prefix),
    updated and extended by ``over`` (dots spelled ``__``: ``attention__key_length``)."""
    keys: dict[str, KeyValue] = {
        "context_length": s.max_ctx, "embedding_length": s.d_model, "block_count": n_blocks,
        "feed_forward_length": s.d_ffn, "attention.head_count": s.n_heads,
        "attention.head_count_kv": s.n_kv_heads, "attention.key_length": s.head_dim,
        "attention.value_length": s.head_dim, "attention.layer_norm_rms_epsilon": s.eps,
        "rope.freq_base": s.rope_theta}
    keys.update({k.replace("__", "."): v for k, v in over.items()})
    return keys


def _save(path: str | Path, arch: str, w: _Weights, keys: Mapping[str, KeyValue]) -> Path:
    """Write ``w``'s tensors and ``keys`` (prefixed with ``arch``) to ``path`` atomically."""

    def write(tmp: Path) -> None:
        gguf, g = _writer(tmp, arch)
        known = {v.replace("{arch}", arch) for c in vars(gguf.Keys).values() if isinstance(c, type)
                 for v in vars(c).values() if isinstance(v, str) and v.startswith("{arch}.")}
        for k, v in keys.items():
            name = f"{arch}.{k}"
            if name not in known:
                raise GraphError(f"{name} is not a GGUF key the gguf package knows")
            if isinstance(v, bool):
                g.add_bool(name, v)
            elif isinstance(v, int):
                g.add_uint32(name, v)
            elif isinstance(v, float):
                g.add_float32(name, v)
            else:
                g.add_array(name, list(v))
        _finish(gguf, g, w.out)

    return write_atomically(path, write)


def _attention_block(w: _Weights, s: QwenConfig, i: int, qk_norm: bool = True,
                     q_gate: bool = False) -> None:
    d, hd = s.d_model, s.head_dim
    b = f"blk.{i}"
    w.vec(f"{b}.attn_norm.weight", d)
    w.mat(f"{b}.attn_q.weight", s.n_heads * hd * (2 if q_gate else 1), d)
    w.mat(f"{b}.attn_k.weight", s.n_kv_heads * hd, d)
    w.mat(f"{b}.attn_v.weight", s.n_kv_heads * hd, d)
    if qk_norm:
        w.vec(f"{b}.attn_q_norm.weight", hd)
        w.vec(f"{b}.attn_k_norm.weight", hd)
    w.mat(f"{b}.attn_output.weight", d, s.n_heads * hd)


def _mlp(w: _Weights, i: int, d: int, width: int, suffix: str = "",
         experts: int | None = None) -> None:
    """SwiGLU ``ffn_gate``/``ffn_up``/``ffn_down`` (+ ``suffix``), one per expert if
    ``experts``."""
    b, e = f"blk.{i}", () if experts is None else (experts,)
    w.mat(f"{b}.ffn_gate{suffix}.weight", *e, width, d)
    w.mat(f"{b}.ffn_up{suffix}.weight", *e, width, d)
    w.mat(f"{b}.ffn_down{suffix}.weight", *e, d, width)


def _ffn(w: _Weights, s: QwenConfig, i: int, norm: str = "ffn_norm") -> None:
    w.vec(f"blk.{i}.{norm}.weight", s.d_model)
    _mlp(w, i, s.d_model, s.d_ffn)


@dataclass(frozen=True)
class TinyMoe:
    """Mixture-of-experts sizes: ``experts`` routed experts of width ``d_ffn``, ``used``
    per token; ``deepseek2`` adds ``shared`` always-on experts and ``dense_lead`` dense
    blocks before the MoE ones."""

    experts: int = 4
    used: int = 2
    d_ffn: int = 32
    shared: int = 1
    dense_lead: int = 1

    def keys(self) -> dict[str, KeyValue]:
        return {"expert_count": self.experts, "expert_used_count": self.used,
                "expert_feed_forward_length": self.d_ffn}


def _moe(w: _Weights, s: QwenConfig, moe: TinyMoe, i: int, shared: int = 0) -> None:
    w.vec(f"blk.{i}.ffn_norm.weight", s.d_model)
    w.mat(f"blk.{i}.ffn_gate_inp.weight", moe.experts, s.d_model)
    _mlp(w, i, s.d_model, moe.d_ffn, "_exps", moe.experts)
    if shared:
        _mlp(w, i, s.d_model, moe.d_ffn * shared, "_shexp")


def _dense(path: str | Path, arch: str, s: QwenConfig, seed: int, qk_norm: bool) -> Path:
    _check_sizes(s)
    w = _Weights(seed)
    w.mat("token_embd.weight", VOCAB, s.d_model)
    for i in range(s.n_layers):
        _attention_block(w, s, i, qk_norm=qk_norm)
        _ffn(w, s, i)
    w.vec("output_norm.weight", s.d_model)
    w.mat("output.weight", VOCAB, s.d_model)
    return _save(path, arch, w, _keys(s, s.n_layers))


def write_qwen3(path: str | Path, sizes: QwenConfig = TINY, seed: int = 0) -> Path:
    """A random dense ``qwen3`` model at ``path`` (atomically); returns the path."""
    return _dense(path, "qwen3", sizes, seed, qk_norm=True)


def write_llama(path: str | Path, sizes: QwenConfig = TINY, seed: int = 0) -> Path:
    """A random dense ``llama`` model (no q/k norm) at ``path``; returns the path."""
    return _dense(path, "llama", sizes, seed, qk_norm=False)


def write_gemma3(path: str | Path, sizes: QwenConfig = TINY, seed: int = 0,
                 window: int = 4, swa_period: int = 2) -> Path:
    """A random ``gemma3`` model at ``path``: q/k norm, post-attention and post-FFN norms,
    GELU-gated FFN, output tied to the token embedding. Of every ``swa_period`` layers the
    last uses full attention and the others a sliding window of ``window`` tokens
    (``attention.sliding_window_pattern``; without it llama.cpp assumes a period of 6).
    Returns the path."""
    s = sizes
    _check_sizes(s)
    w = _Weights(seed)
    w.ends(s.d_model, output=False)
    for i in range(s.n_layers):
        _attention_block(w, s, i)
        w.vec(f"blk.{i}.post_attention_norm.weight", s.d_model)
        _ffn(w, s, i)
        w.vec(f"blk.{i}.post_ffw_norm.weight", s.d_model)
    return _save(path, "gemma3", w, _keys(s, s.n_layers, attention__sliding_window=window,
                                          attention__sliding_window_pattern=swa_period))


def write_qwen3moe(path: str | Path, sizes: QwenConfig = TINY, moe: TinyMoe = TinyMoe(),
                   seed: int = 0) -> Path:
    """A random ``qwen3moe`` model at ``path``: ``qwen3`` attention, every FFN a mixture
    of ``moe.experts`` experts (no shared expert). Returns the path."""
    s = sizes
    _check_sizes(s)
    w = _Weights(seed)
    w.ends(s.d_model)
    for i in range(s.n_layers):
        _attention_block(w, s, i)
        _moe(w, s, moe, i)
    return _save(path, "qwen3moe", w, _keys(s, s.n_layers, **moe.keys()))


@dataclass(frozen=True)
class TinyMla:
    """Multi-head latent attention sizes: query and key/value low ranks, the per-head
    RoPE'd and un-RoPE'd key widths and the value width."""

    q_lora: int = 32
    kv_lora: int = 32
    rope_dim: int = 8
    nope_dim: int = 16
    v_dim: int = 16


def write_deepseek2(path: str | Path, sizes: QwenConfig = TINY, moe: TinyMoe = TinyMoe(),
                    mla: TinyMla = TinyMla(), seed: int = 0) -> Path:
    """A random ``deepseek2`` model at ``path``: MLA attention in the split form
    (``attn_k_b`` / ``attn_v_b``, one latent KV head), ``moe.dense_lead`` dense FFN
    blocks, then MoE blocks with ``moe.shared`` shared experts. ``sizes.n_kv_heads`` and
    ``head_dim`` are unused. Returns the path."""
    s = sizes
    _check_sizes(s)
    w = _Weights(seed)
    d, h, m = s.d_model, s.n_heads, mla
    w.ends(d)
    for i in range(s.n_layers):
        b = f"blk.{i}"
        w.vec(f"{b}.attn_norm.weight", d)
        w.mat(f"{b}.attn_q_a.weight", m.q_lora, d)
        w.vec(f"{b}.attn_q_a_norm.weight", m.q_lora)
        w.mat(f"{b}.attn_q_b.weight", h * (m.nope_dim + m.rope_dim), m.q_lora)
        w.mat(f"{b}.attn_kv_a_mqa.weight", m.kv_lora + m.rope_dim, d)
        w.vec(f"{b}.attn_kv_a_norm.weight", m.kv_lora)
        w.mat(f"{b}.attn_k_b.weight", h, m.kv_lora, m.nope_dim)
        w.mat(f"{b}.attn_v_b.weight", h, m.v_dim, m.kv_lora)
        w.mat(f"{b}.attn_output.weight", d, h * m.v_dim)
        if i < moe.dense_lead:
            _ffn(w, s, i)
        else:
            _moe(w, s, moe, i, moe.shared)
    keys = _keys(s, s.n_layers, attention__head_count_kv=1,
                 attention__key_length=m.kv_lora + m.rope_dim,
                 attention__value_length=m.kv_lora,
                 attention__key_length_mla=m.nope_dim + m.rope_dim,
                 attention__value_length_mla=m.v_dim,
                 attention__q_lora_rank=m.q_lora, attention__kv_lora_rank=m.kv_lora,
                 rope__dimension_count=m.rope_dim, leading_dense_block_count=moe.dense_lead,
                 expert_shared_count=moe.shared, expert_weights_scale=1.0,
                 expert_weights_norm=False, expert_gating_func=1, **moe.keys())
    return _save(path, "deepseek2", w, keys)


@dataclass(frozen=True)
class TinySsm:
    """Gated-delta-net sizes of a tiny ``qwen35`` (key heads = groups, value heads =
    time-step rank; head size = state size)."""

    conv_kernel: int = 4
    state: int = 16
    groups: int = 2
    value_heads: int = 4

    @property
    def key_dim(self) -> int:
        return self.state * self.groups

    @property
    def value_dim(self) -> int:
        return self.state * self.value_heads


def write_qwen35_mtp(path: str | Path, sizes: QwenConfig = TINY, ssm: TinySsm = TinySsm(),
                     seed: int = 0) -> Path:
    """A random ``qwen35`` model at ``path``: ``sizes.n_layers`` trunk blocks alternating
    gated delta net and full attention (``full_attention_interval = 2``), then one MTP
    block (``nextn_predict_layers = 1``). Returns the path."""
    s = sizes
    _check_sizes(s)
    w = _Weights(seed)
    d, hd = s.d_model, s.head_dim
    w.ends(d)
    n_all = s.n_layers + 1
    for i in range(n_all):
        b = f"blk.{i}"
        w.vec(f"{b}.attn_norm.weight", d)
        w.vec(f"{b}.post_attention_norm.weight", d)
        if i < s.n_layers and (i + 1) % 2:  # gated delta net
            w.mat(f"{b}.attn_qkv.weight", 2 * ssm.key_dim + ssm.value_dim, d)
            w.mat(f"{b}.attn_gate.weight", ssm.value_dim, d)
            w.mat(f"{b}.ssm_conv1d.weight", 2 * ssm.key_dim + ssm.value_dim, ssm.conv_kernel)
            w.vec(f"{b}.ssm_dt.bias", ssm.value_heads, None)
            w.vec(f"{b}.ssm_a", ssm.value_heads, -1.0)
            w.mat(f"{b}.ssm_beta.weight", ssm.value_heads, d)
            w.mat(f"{b}.ssm_alpha.weight", ssm.value_heads, d)
            w.vec(f"{b}.ssm_norm.weight", ssm.state)
            w.mat(f"{b}.ssm_out.weight", d, ssm.value_dim)
        else:  # full attention with a gated query (the MTP block too)
            _attention_block(w, s, i, q_gate=True)
        _mlp(w, i, d, s.d_ffn)
        if i == s.n_layers:
            w.mat(f"{b}.nextn.eh_proj.weight", d, 2 * d)
            w.vec(f"{b}.nextn.enorm.weight", d)
            w.vec(f"{b}.nextn.hnorm.weight", d)
    sections = [hd // 4, hd // 4 - 1, 1, 0] if hd >= 8 else [hd // 2, 0, 0, 0]
    keys = _keys(s, n_all, rope__dimension_count=hd, rope__dimension_sections=sections,
                 ssm__conv_kernel=ssm.conv_kernel, ssm__inner_size=ssm.value_dim,
                 ssm__state_size=ssm.state, ssm__time_step_rank=ssm.value_heads,
                 ssm__group_count=ssm.groups, full_attention_interval=2,
                 nextn_predict_layers=1)
    return _save(path, "qwen35", w, keys)


TINY_ARCHS: dict[str, Callable[[str | Path], Path]] = {
    "qwen3": write_qwen3, "qwen35": write_qwen35_mtp, "llama": write_llama,
    "gemma3": write_gemma3, "qwen3moe": write_qwen3moe, "deepseek2": write_deepseek2}
"""Architecture name -> writer of its tiny model (default sizes, seed 0)."""

