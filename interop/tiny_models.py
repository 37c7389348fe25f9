"""Tiny GGUF models with random weights that llama.cpp loads: what the captures are made
from when no real model is at hand (tests, the README's figures, ``graphc llama-check
--tiny``).

- :func:`write_qwen3`: a dense ``qwen3`` decoder (q/k norm, GQA, SwiGLU).
- :func:`write_qwen35_mtp`: a ``qwen35`` hybrid (a gated-delta-net block, a full-attention
  block) with one multi-token-prediction block (``nextn``).

All tensors are F32; the vocabulary is the 256 bytes (``tokenizer.ggml.model = "llama"``
with ``<0x00>`` .. ``<0xFF>``), so any byte string is a prompt. Files are written
atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from graphc.examples.qwen import QwenConfig
from graphc.interop.ggml_abi import INSTALL
from graphc.interop.gguf_export import add_byte_tokenizer, write_atomically

from graphc.errors import GraphError

VOCAB = 256


TINY = QwenConfig(vocab=VOCAB, max_ctx=256)
"""Default sizes of the tiny models (the ones ``../shared/notes/llama-cpp.md`` ran):
:class:`~graphc.examples.qwen.QwenConfig`'s defaults, a byte vocabulary and a trained
context (``max_ctx``) of 256."""


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

    def mat(self, name: str, n_out: int, n_in: int) -> None:
        """A (out, in) matrix, stored as ggml ne = [in, out]."""
        self.out[name] = (self.rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
                          ).astype(np.float32)

    def vec(self, name: str, n: int, value: float | None = 1.0) -> None:
        self.out[name] = (np.full(n, value, np.float32) if value is not None
                          else (self.rng.standard_normal(n) * 0.1).astype(np.float32))


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


def _ffn(w: _Weights, s: QwenConfig, i: int, norm: str = "ffn_norm") -> None:
    b = f"blk.{i}"
    w.vec(f"{b}.{norm}.weight", s.d_model)
    w.mat(f"{b}.ffn_gate.weight", s.d_ffn, s.d_model)
    w.mat(f"{b}.ffn_up.weight", s.d_ffn, s.d_model)
    w.mat(f"{b}.ffn_down.weight", s.d_model, s.d_ffn)


def write_qwen3(path: str | Path, sizes: QwenConfig = TINY, seed: int = 0) -> Path:
    """A random dense ``qwen3`` model at ``path`` (atomically); returns the path."""
    s = sizes
    _check_sizes(s)
    w = _Weights(seed)
    w.mat("token_embd.weight", VOCAB, s.d_model)
    for i in range(s.n_layers):
        _attention_block(w, s, i)
        _ffn(w, s, i)
    w.vec("output_norm.weight", s.d_model)
    w.mat("output.weight", VOCAB, s.d_model)

    def write(tmp: Path) -> None:
        gguf, g = _writer(tmp, "qwen3")
        g.add_context_length(s.max_ctx)
        g.add_embedding_length(s.d_model)
        g.add_block_count(s.n_layers)
        g.add_feed_forward_length(s.d_ffn)
        g.add_head_count(s.n_heads)
        g.add_head_count_kv(s.n_kv_heads)
        g.add_key_length(s.head_dim)
        g.add_value_length(s.head_dim)
        g.add_layer_norm_rms_eps(s.eps)
        g.add_rope_freq_base(s.rope_theta)
        _finish(gguf, g, w.out)

    return write_atomically(path, write)


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
    w.mat("token_embd.weight", VOCAB, d)
    w.vec("output_norm.weight", d)
    w.mat("output.weight", VOCAB, d)
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
        w.mat(f"{b}.ffn_gate.weight", s.d_ffn, d)
        w.mat(f"{b}.ffn_up.weight", s.d_ffn, d)
        w.mat(f"{b}.ffn_down.weight", d, s.d_ffn)
        if i == s.n_layers:
            w.mat(f"{b}.nextn.eh_proj.weight", d, 2 * d)
            w.vec(f"{b}.nextn.enorm.weight", d)
            w.vec(f"{b}.nextn.hnorm.weight", d)

    def write(tmp: Path) -> None:
        gguf, g = _writer(tmp, "qwen35")
        arch = "qwen35"
        g.add_context_length(s.max_ctx)
        g.add_embedding_length(d)
        g.add_block_count(n_all)
        g.add_feed_forward_length(s.d_ffn)
        g.add_head_count(s.n_heads)
        g.add_head_count_kv(s.n_kv_heads)
        g.add_key_length(hd)
        g.add_value_length(hd)
        g.add_layer_norm_rms_eps(s.eps)
        g.add_rope_freq_base(s.rope_theta)
        g.add_uint32(f"{arch}.rope.dimension_count", hd)
        g.add_array(f"{arch}.rope.dimension_sections", [hd // 4, hd // 4 - 1, 1, 0][:4]
                    if hd >= 8 else [hd // 2, 0, 0, 0])
        g.add_uint32(f"{arch}.ssm.conv_kernel", ssm.conv_kernel)
        g.add_uint32(f"{arch}.ssm.inner_size", ssm.value_dim)
        g.add_uint32(f"{arch}.ssm.state_size", ssm.state)
        g.add_uint32(f"{arch}.ssm.time_step_rank", ssm.value_heads)
        g.add_uint32(f"{arch}.ssm.group_count", ssm.groups)
        g.add_uint32(f"{arch}.full_attention_interval", 2)
        g.add_uint32(f"{arch}.nextn_predict_layers", 1)
        _finish(gguf, g, w.out)

    return write_atomically(path, write)
