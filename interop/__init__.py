"""Interoperation with llama.cpp and ggml (the ``graphc[llama]`` extra).

- :mod:`graphc.interop.ggml_abi`: the ggml C library, read through ctypes (tensor struct,
  op and type names, buffers).
- :mod:`graphc.interop.host_reads`: every copy the host makes out of a ggml buffer,
  observed at the buffer's ``get_tensor``.
- :mod:`graphc.interop.capture`: a ggml compute graph as plain data (every node and leaf
  with its op, layout, sources, flags, buffer and offset, the host's copies after it, the
  allocator's record of its last plan), captured from a ``ggml_cgraph`` or from a
  llama.cpp decode, and checked dynamically while it runs (inside each node too:
  :mod:`graphc.interop.ggml_kernels` recomputes a few ops from their operands' bytes).
- :mod:`graphc.interop.ggml_import`: a capture as a graphc ``Graph`` plus the
  ``MemoryPlan`` ggml really used, for the aliasing checker.
- :mod:`graphc.interop.llama_check`: a capture judged: ggml's plan under the checker,
  graphc's plans of the same graph, the dynamic check's findings (the CLI's report);
  :func:`~graphc.interop.llama_check.check_cgraph` for a graph built with ggml's API.
- :mod:`graphc.interop.llama_run`: drive llama.cpp on a GGUF file in each way it hands
  results to the host, and capture every graph it runs.
- :mod:`graphc.interop.tiny_models`: tiny random GGUF files of six architectures.
- :mod:`graphc.interop.seed`: the seed bug on ggml's own allocator.
- :mod:`graphc.interop.ggml_oracle`: real memory as the oracle for the checker.
- :mod:`graphc.interop.gguf_export` and :mod:`graphc.interop.llama_compare`: graphc's Qwen
  example as a GGUF file llama.cpp runs, and the two compared logit by logit.

Nothing in the core, the passes or the backends imports this package; its heavy
dependencies (llama-cpp-python, gguf) are imported only here.
"""
