"""Runnable examples, importable as ``graphc.examples`` (the Qwen-style model lives here)."""
