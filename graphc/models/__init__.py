"""The model library: the Qwen-style decoder with its MTP heads, speculative decoding,
the pre-norm / post-norm study, the trainer of the tiny checkpoint and the shipped
weights (``tiny_mtp.npz``, ``tiny_mtp_6l.npz``).

The command line (``graphc demo``), ``graphc.interop`` (tiny GGUF models, the llama.cpp
comparison), the benchmarks and the tests use it from here. ``examples/`` holds only
scripts a user reads and copies; nothing in the package imports them.
"""

from pathlib import Path

CHECKPOINT = Path(__file__).with_name("tiny_mtp.npz")
"""The shipped trained tiny checkpoint (4 layers, byte vocabulary, MTP heads)."""

DEEPER_CHECKPOINT = Path(__file__).with_name("tiny_mtp_6l.npz")
"""The same recipe with a 6-layer main model."""
