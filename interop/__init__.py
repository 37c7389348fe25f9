"""Interoperation with llama.cpp and ggml (the ``graphc[llama]`` extra).

- :mod:`graphc.interop.ggml_abi`: the ggml C library, read through ctypes (tensor struct,
  op and type names, buffers).
- :mod:`graphc.interop.capture`: a ggml compute graph as plain data (every node and leaf
  with its op, layout, sources, flags, buffer and offset), captured from a ``ggml_cgraph``
  or from a llama.cpp decode, and checked dynamically while it runs.
- :mod:`graphc.interop.ggml_import`: a capture as a graphc ``Graph`` plus the
  ``MemoryPlan`` ggml really used, for the aliasing checker.
- :mod:`graphc.interop.llama_run`: drive llama.cpp on a GGUF file and capture its decode.
- :mod:`graphc.interop.gguf_export`: graphc's Qwen example as a GGUF file llama.cpp runs.

Nothing in the core, the passes or the backends imports this package; its heavy
dependencies (llama-cpp-python, gguf) are imported only here.
"""
