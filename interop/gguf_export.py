"""graphc's Qwen example model as a GGUF file that llama.cpp loads and runs.

:func:`export_gguf` writes the main model of :mod:`graphc.models.qwen` (the MTP head's
weights, if present, are left out) as llama.cpp architecture ``qwen2``, every tensor F32.
The two models compute the same function:

- token embedding, then per block: RMSNorm times weight, q/k/v projections, RoPE in the
  rotate-halves (NeoX) layout with base ``rope_theta`` on q and k, grouped-query
  attention where query head ``h`` reads KV head ``h // (n_heads // n_kv_heads)`` with
  scale ``1/sqrt(head_dim)``, output projection, residual; RMSNorm times weight, SwiGLU
  MLP ``(silu(x @ w_gate) * (x @ w_up)) @ w_down``, residual; final RMSNorm, lm_head.
- RMSNorm is ``x / sqrt(mean(x**2) + eps)`` in both (eps written as
  ``qwen2.attention.layer_norm_rms_epsilon``).
- ``qwen2`` adds biases to q, k and v; graphc's model has none, so they are written as
  zeros. graphc's model has no q/k norm, which is why ``qwen3`` (which has one) is not an
  equivalent target and is refused.

Layout: graphc multiplies ``x @ W`` with ``W`` of shape ``(d_in, d_out)``; ggml stores a
weight as ``ne = [d_in, d_out]``, which the ``gguf`` package writes from a NumPy array of
shape ``(d_out, d_in)``. So every matrix is written as ``W.T`` (made contiguous), and
``lm_head`` ``(d, vocab)`` becomes ``output.weight`` = ``lm_head.T``. ``embed``
``(vocab, d)`` is already a row per token and is written as ``token_embd.weight`` as is.

Vocabulary: llama.cpp needs tokenizer metadata even when it is fed token ids. For
``vocab == 256`` (graphc's byte-level checkpoints) the file carries a byte vocabulary:
``tokenizer.ggml.model = "llama"`` with tokens ``<0x00>``..``<0xFF>`` of type BYTE, so id
``i`` is byte ``i`` and llama.cpp detokenizes ids to the right bytes (nothing adds a
BOS/EOS or a space prefix). Feed llama.cpp ids, not text: its SentencePiece-style
tokenizer writes a space as U+2581 (the bytes e2 96 81), not as byte 0x20. Any other
size gets ``tokenizer.ggml.model = "none"`` with ``qwen2.vocab_size``: the ids are
opaque, and llama.cpp runs them but has no text for them.

Needs the ``gguf`` package (``pip install "graphc[llama]"``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import graphc as gc
from graphc.models.qwen import QwenConfig, param_shapes

__all__ = ["BYTE_VOCAB", "SPECIAL_IDS", "export_gguf", "gguf_tensors"]

BYTE_VOCAB = 256
"""The vocabulary size written as a byte vocabulary (id ``i`` is byte ``i``)."""

SPECIAL_IDS = {"unk": 0, "bos": 1, "eos": 2}
"""Special-token ids declared in a byte vocabulary. llama.cpp needs them declared; graphc's
byte-level models have no special tokens, so these are the control bytes 0, 1, 2, and
nothing adds them to a prompt."""

_SUPPORTED_ARCHES = ("qwen2",)

# graphc per-block weight -> (GGUF per-block name, transposed?)
_BLOCK_TENSORS: dict[str, tuple[str, bool]] = {
    "attn_norm": ("attn_norm.weight", False),
    "wq": ("attn_q.weight", True),
    "wk": ("attn_k.weight", True),
    "wv": ("attn_v.weight", True),
    "wo": ("attn_output.weight", True),
    "ffn_norm": ("ffn_norm.weight", False),
    "w_gate": ("ffn_gate.weight", True),
    "w_up": ("ffn_up.weight", True),
    "w_down": ("ffn_down.weight", True),
}
# zero biases qwen2 requires: GGUF per-block name -> the graphc weight whose width it has
_ZERO_BIASES = {"attn_q.bias": "wq", "attn_k.bias": "wk", "attn_v.bias": "wv"}

_FIX_INSTALL = 'pip install "graphc[llama]"'


def _import_gguf() -> Any:
    """The ``gguf`` module, or a GraphError saying how to install it."""
    try:
        import gguf
    except ImportError:
        raise gc.GraphError("exporting to GGUF needs the gguf package, which is not installed",
                            fix=_FIX_INSTALL) from None
    return gguf


def _check_arch(arch: str) -> None:
    if arch not in _SUPPORTED_ARCHES:
        why = (" (qwen3 applies an RMSNorm to every query and key head, which graphc's "
               "model does not have, so its logits would differ)" if arch == "qwen3" else "")
        raise gc.GraphError(f"cannot export graphc's Qwen model as architecture {arch!r}{why}",
                            fix='use arch="qwen2"')


def _check_config(cfg: QwenConfig) -> None:
    if cfg.n_layers < 1:
        raise gc.GraphError(f"cannot export a model with {cfg.n_layers} layers: llama.cpp's "
                            "qwen2 needs at least one block", fix="use n_layers >= 1")


def _weight(params: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...]
            ) -> np.ndarray:
    """``params[name]`` as F32, or a GraphError naming the weight and the fix."""
    if name not in params:
        raise gc.GraphError(f"weight {name!r} {list(shape)} is missing",
                            fix="pass every weight param_shapes(cfg) names (e.g. from "
                                "init_params(cfg) or load_weights(path))")
    arr = np.asarray(params[name])
    # real numbers: NumPy's own, or ml_dtypes' (bfloat16, float8...: kind "V", no fields)
    real = arr.dtype.kind in "fiu" or (arr.dtype.kind == "V" and arr.dtype.names is None)
    if not real:
        raise gc.GraphError(f"weight {name!r} has dtype {arr.dtype}, not a real number type",
                            fix="pass a float32 array")
    if tuple(arr.shape) != shape:
        hint = ("; it looks transposed: graphc stores a matrix as (d_in, d_out)"
                if len(shape) == 2 and tuple(arr.shape) == shape[::-1] else "")
        raise gc.GraphError(f"weight {name!r} has shape {list(arr.shape)}, the config needs "
                            f"{list(shape)}{hint}",
                            fix=f"pass {name!r} with shape {list(shape)}, or the config the "
                                "weights were made with")
    try:
        return arr.astype(np.float32, copy=False)
    except (TypeError, ValueError):
        raise gc.GraphError(f"weight {name!r} of dtype {arr.dtype} cannot be converted to "
                            "float32", fix="pass a float32 array") from None


def gguf_tensors(params: Mapping[str, np.ndarray], cfg: QwenConfig, *, arch: str = "qwen2"
                 ) -> dict[str, np.ndarray]:
    """GGUF tensor name -> contiguous F32 array (NumPy shape ``(d_out, d_in)`` for a
    matrix), in the order they are written; every main-model weight of
    :func:`~graphc.models.qwen.param_shapes` is checked first (weights it does not name,
    such as the MTP head's, are ignored).

    Raises GraphError naming the first missing, misshapen or non-numeric weight, or an
    architecture or config llama.cpp cannot run as graphc's model.
    """
    _check_arch(arch)
    _check_config(cfg)
    shapes = param_shapes(cfg)
    w = {name: _weight(params, name, shape) for name, shape in shapes.items()}

    def c(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32)

    out: dict[str, np.ndarray] = {"token_embd.weight": c(w["embed"])}
    for i in range(cfg.n_layers):
        for name, (gguf_name, transposed) in _BLOCK_TENSORS.items():
            a = w[f"l{i}.{name}"]
            out[f"blk.{i}.{gguf_name}"] = c(a.T if transposed else a)
        for gguf_name, like in _ZERO_BIASES.items():
            out[f"blk.{i}.{gguf_name}"] = np.zeros(w[f"l{i}.{like}"].shape[1], np.float32)
    out["output_norm.weight"] = c(w["final_norm"])
    out["output.weight"] = c(w["lm_head"].T)
    return out


def add_byte_tokenizer(gguf: Any, writer: Any) -> None:
    """Tokenizer metadata for the 256-byte vocabulary (``"llama"`` with ``<0x00>`` ..
    ``<0xFF>`` of type BYTE, the special ids of :data:`SPECIAL_IDS`, nothing added to a
    prompt) on a ``gguf.GGUFWriter``."""
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"<0x{i:02X}>".encode() for i in range(BYTE_VOCAB)])
    writer.add_token_scores([0.0] * BYTE_VOCAB)
    writer.add_token_types([int(gguf.TokenType.BYTE)] * BYTE_VOCAB)
    writer.add_unk_token_id(SPECIAL_IDS["unk"])
    writer.add_bos_token_id(SPECIAL_IDS["bos"])
    writer.add_eos_token_id(SPECIAL_IDS["eos"])
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary file in ``path``'s folder and move it to ``path``
    only when it succeeded: a failure leaves an earlier file at ``path`` as it was and no
    temporary file behind. GraphError for a missing folder or an OSError while writing."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise gc.GraphError(f"cannot write {target}: folder {folder} does not exist",
                            fix="create the folder first")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise gc.GraphError(f"cannot write {target}: {e}",
                            fix="choose a folder you can write to") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise gc.GraphError(f"cannot write {target}: {e}",
                                fix="check the disk space and the folder's permissions"
                                ) from None
        raise
    return target


def _write(gguf: Any, path: str, tensors: Mapping[str, np.ndarray], cfg: QwenConfig,
           arch: str, name: str) -> None:
    """Write the GGUF file at ``path`` (no atomicity here)."""
    writer = gguf.GGUFWriter(path, arch)
    try:
        writer.add_name(name)
        writer.add_context_length(cfg.max_ctx)
        writer.add_embedding_length(cfg.d_model)
        writer.add_block_count(cfg.n_layers)
        writer.add_feed_forward_length(cfg.d_ffn)
        writer.add_head_count(cfg.n_heads)
        writer.add_head_count_kv(cfg.n_kv_heads)
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
        writer.add_rope_dimension_count(cfg.head_dim)
        writer.add_rope_freq_base(float(cfg.rope_theta))
        writer.add_layer_norm_rms_eps(float(cfg.eps))
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_vocab_size(cfg.vocab)
        if cfg.vocab == BYTE_VOCAB:
            add_byte_tokenizer(gguf, writer)
        else:
            writer.add_tokenizer_model("none")
        for tname, arr in tensors.items():
            writer.add_tensor(tname, arr)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def export_gguf(params: Mapping[str, np.ndarray], cfg: QwenConfig, path: str | os.PathLike[str],
                *, arch: str = "qwen2", name: str = "graphc-qwen") -> Path:
    """Write graphc's Qwen main model (``params`` for ``cfg``) to ``path`` as an all-F32
    GGUF file of llama.cpp architecture ``arch``; return the path.

    Contract: llama.cpp run on the file with an F32 KV cache computes the same logits as
    :func:`~graphc.models.qwen.build_main` on the same token ids, up to float rounding
    (see the module docstring for the mapping). Every weight is checked before anything
    is written. The file is written to a temporary file in the same folder and moved into
    place with ``os.replace``: a failed export leaves an earlier file at ``path`` as it was
    and no temporary file behind.

    Raises GraphError naming the weight for a missing, misshapen or non-numeric weight;
    for an architecture other than ``qwen2``; when the file cannot be written; and, with a
    ``pip install "graphc[llama]"`` fix, when the ``gguf`` package is not installed.
    """
    tensors = gguf_tensors(params, cfg, arch=arch)
    gguf = _import_gguf()
    return write_atomically(path, lambda tmp: _write(gguf, str(tmp), tensors, cfg, arch, name))
