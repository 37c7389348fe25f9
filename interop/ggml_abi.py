"""The ggml C library as llama-cpp-python ships it, read through ctypes.

llama-cpp-python builds llama.cpp and ggml and installs the shared libraries next to its
Python bindings; it has no binding for ``struct ggml_tensor``, so this module mirrors the
struct of the ggml version it was built with (0.25.x) and checks the mirror against the
library (``ggml_tensor_overhead``) before anything reads memory through it. It also mirrors
``struct ggml_backend_buffer`` (its function table), which :mod:`graphc.interop.host_reads`
needs to watch the copies the host makes out of a buffer.

:func:`lib` loads the libraries once and declares every function graphc calls. They are the
very copies llama.cpp runs on: after ``import llama_cpp`` (which honours
``LLAMA_CPP_LIB_PATH``), the ggml libraries mapped into this process are found in
``/proc/self/maps`` and opened by that path, so a pointer from a llama context is read with
the library that made it, and the struct check runs against that library. Only this module
knows C types; the rest of :mod:`graphc.interop` works on plain Python values.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from graphc.errors import GraphError

INSTALL = 'pip install "graphc[llama]"'
"""The one line that installs what :mod:`graphc.interop` needs."""

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10
GGML_MAX_NAME = 64
GGML_MAX_OP_PARAMS = 64

FLAG_INPUT, FLAG_OUTPUT, FLAG_PARAM, FLAG_LOSS, FLAG_COMPUTE = 1, 2, 4, 8, 16
FLAG_NAMES = {FLAG_INPUT: "INPUT", FLAG_OUTPUT: "OUTPUT", FLAG_PARAM: "PARAM",
              FLAG_LOSS: "LOSS", FLAG_COMPUTE: "COMPUTE"}

USAGE_NAMES = {0: "any", 1: "weights", 2: "compute"}
"""``enum ggml_backend_buffer_usage``."""

TYPE_F32, TYPE_F16, TYPE_I32, TYPE_I64, TYPE_BF16 = 0, 1, 26, 27, 30

VIEW_OPS = frozenset({"VIEW", "RESHAPE", "PERMUTE", "TRANSPOSE"})
"""ggml ops that compute nothing: the node is a window onto its ``view_src``."""


class GgmlTensor(ctypes.Structure):
    """``struct ggml_tensor`` of ggml 0.25 (336 bytes; checked by :func:`lib`)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


BUFFER_IFACE_SLOTS = ("free_buffer", "get_base", "init_tensor", "memset_tensor", "set_tensor",
                      "get_tensor", "set_tensor_2d", "get_tensor_2d", "cpy_tensor", "clear",
                      "reset")
"""``struct ggml_backend_buffer_i`` of ggml 0.25 (ggml-backend-impl.h), in order."""


class BackendBuffer(ctypes.Structure):
    """The head of ``struct ggml_backend_buffer``: its function table ``iface`` (one
    pointer per :data:`BUFFER_IFACE_SLOTS` entry), then ``buft``, ``context``, ``size``,
    ``usage``. ``size`` is checked against ``ggml_backend_buffer_get_size`` before the
    table is touched."""

    _fields_ = [
        *[(slot, ctypes.c_void_p) for slot in BUFFER_IFACE_SLOTS],
        ("buft", ctypes.c_void_p),
        ("context", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("usage", ctypes.c_int),
    ]


GetTensorFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_size_t, ctypes.c_size_t)
"""``void (*get_tensor)(ggml_backend_buffer_t, const struct ggml_tensor *, void * data,
size_t offset, size_t size)``: copies ``size`` bytes from ``offset`` of the tensor's data
to the host's ``data``."""

class BufferAddress(ctypes.Structure):
    """``struct buffer_address`` (ggml-alloc.c): a chunk of a virtual buffer, an offset."""

    _fields_ = [("chunk", ctypes.c_int), ("offset", ctypes.c_size_t)]


class TensorAlloc(ctypes.Structure):
    """``struct tensor_alloc`` (ggml-alloc.c): where the allocator planned one tensor;
    ``buffer_id`` -1 and ``size_max`` 0 for a view or a tensor it did not place."""

    _fields_ = [("buffer_id", ctypes.c_int), ("addr", BufferAddress),
                ("size_max", ctypes.c_size_t)]


class NodeAlloc(ctypes.Structure):
    """``struct node_alloc``: the plan of one graph position, its result and its sources."""

    _fields_ = [("dst", TensorAlloc), ("src", TensorAlloc * GGML_MAX_SRC)]


class GallocrHead(ctypes.Structure):
    """``struct ggml_gallocr`` of ggml 0.25 (ggml-alloc.c), up to its leaf plan: what
    :func:`graphc.interop.capture.capture_cgraph` reads to tell which graph a placement
    was planned for (checked against the graph's own offsets before it is believed)."""

    _fields_ = [("bufts", ctypes.c_void_p), ("buffers", ctypes.c_void_p),
                ("buf_tallocs", ctypes.c_void_p), ("n_buffers", ctypes.c_int),
                ("hash_size", ctypes.c_size_t), ("hash_used", ctypes.c_void_p),
                ("hash_keys", ctypes.c_void_p), ("hash_values", ctypes.c_void_p),
                ("node_allocs", ctypes.c_void_p), ("n_nodes", ctypes.c_int),
                ("leaf_allocs", ctypes.c_void_p), ("n_leafs", ctypes.c_int)]


SCHED_MAX_BACKENDS = 16
SCHED_GALLOC_OFFSET = 8 + 2 * 8 * SCHED_MAX_BACKENDS
"""Byte offset of ``galloc`` in ``struct ggml_backend_sched`` (ggml-backend.cpp: two bools
and an int, then backends and buffer types, ``GGML_SCHED_MAX_BACKENDS`` = 16 each)."""

NO_OFFSET = 2**64 - 1
"""``SIZE_MAX``: the offset ggml records for a tensor it did not place."""

OBJECT_HEADER = 32
"""Bytes of ggml's object header in front of each tensor in a context."""


class InitParams(ctypes.Structure):
    """``struct ggml_init_params``."""

    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                ("no_alloc", ctypes.c_bool)]


@dataclass(frozen=True)
class Ggml:
    """The loaded libraries: ``base`` (graphs, tensors, buffers, the allocator) and ``cpu``
    (the CPU backend)."""

    base: ctypes.CDLL
    cpu: ctypes.CDLL
    lib_dir: Path

    def op_name(self, op: int) -> str:
        """``ggml_op_name``: ``ADD``, ``MUL_MAT``, ..."""
        return str(self.base.ggml_op_name(op).decode())

    def type_name(self, type_: int) -> str:
        """``ggml_type_name``: ``f32``, ``f16``, ``q4_0``, ..."""
        return str(self.base.ggml_type_name(type_).decode())

    def can_inplace(self, op: int) -> bool:
        """Whether ggml's graph allocator may put this op's result over an operand."""
        return bool(self.base.ggml_op_can_inplace(op))


def available() -> bool:
    """Whether llama-cpp-python (and so ggml) is installed."""
    return importlib.util.find_spec("llama_cpp") is not None


def need_llama() -> None:
    """GraphError with the one-line install command when llama-cpp-python is missing."""
    if not available():
        raise GraphError("this needs llama.cpp's Python bindings (llama-cpp-python)",
                         fix=INSTALL)


_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    # names, sizes
    "ggml_op_name": (ctypes.c_char_p, [ctypes.c_int]),
    "ggml_op_desc": (ctypes.c_char_p, [ctypes.c_void_p]),
    "ggml_type_name": (ctypes.c_char_p, [ctypes.c_int]),
    "ggml_nbytes": (ctypes.c_size_t, [ctypes.c_void_p]),
    "ggml_tensor_overhead": (ctypes.c_size_t, []),
    "ggml_op_can_inplace": (ctypes.c_bool, [ctypes.c_int]),
    # buffers
    "ggml_backend_buffer_get_base": (ctypes.c_void_p, [ctypes.c_void_p]),
    "ggml_backend_buffer_get_size": (ctypes.c_size_t, [ctypes.c_void_p]),
    "ggml_backend_buffer_get_alignment": (ctypes.c_size_t, [ctypes.c_void_p]),
    "ggml_backend_buffer_name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "ggml_backend_buffer_get_usage": (ctypes.c_int, [ctypes.c_void_p]),
    "ggml_backend_buffer_is_host": (ctypes.c_bool, [ctypes.c_void_p]),
    # contexts, tensors, ops (what the tests and examples build graphs with)
    "ggml_init": (ctypes.c_void_p, [InitParams]),
    "ggml_free": (None, [ctypes.c_void_p]),
    "ggml_new_tensor_1d": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64]),
    "ggml_new_tensor_2d": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64,
                                             ctypes.c_int64]),
    "ggml_set_name": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
    "ggml_set_input": (None, [ctypes.c_void_p]),
    "ggml_set_output": (None, [ctypes.c_void_p]),
    "ggml_add": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_mul": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_mul_mat": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_rms_norm": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]),
    "ggml_silu": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_scale": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]),
    "ggml_view_2d": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                       ctypes.c_int64, ctypes.c_size_t, ctypes.c_size_t]),
    "ggml_cpy": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]),
    # graphs, the allocator, the CPU backend
    "ggml_new_graph": (ctypes.c_void_p, [ctypes.c_void_p]),
    "ggml_build_forward_expand": (None, [ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_graph_n_nodes": (ctypes.c_int, [ctypes.c_void_p]),
    "ggml_graph_node": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]),
    "ggml_gallocr_new": (ctypes.c_void_p, [ctypes.c_void_p]),
    "ggml_gallocr_free": (None, [ctypes.c_void_p]),
    "ggml_gallocr_alloc_graph": (ctypes.c_bool, [ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_gallocr_get_buffer_size": (ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_int]),
    "ggml_backend_get_default_buffer_type": (ctypes.c_void_p, [ctypes.c_void_p]),
    "ggml_backend_graph_compute": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_backend_tensor_set": (None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                       ctypes.c_size_t]),
    "ggml_backend_tensor_get": (None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                       ctypes.c_size_t]),
    "ggml_backend_free": (None, [ctypes.c_void_p]),
    "ggml_graph_overhead": (ctypes.c_size_t, []),
    "ggml_clamp": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float,
                                     ctypes.c_float]),
    "ggml_backend_alloc_ctx_tensors": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_backend_buffer_free": (None, [ctypes.c_void_p]),
    "ggml_backend_buffer_set_usage": (None, [ctypes.c_void_p, ctypes.c_int]),
    "ggml_backend_sched_new": (ctypes.c_void_p, [ctypes.POINTER(ctypes.c_void_p),
                                                 ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                                 ctypes.c_size_t, ctypes.c_bool, ctypes.c_bool]),
    "ggml_backend_sched_free": (None, [ctypes.c_void_p]),
    "ggml_backend_sched_reset": (None, [ctypes.c_void_p]),
    "ggml_backend_sched_set_eval_callback": (None, [ctypes.c_void_p, ctypes.c_void_p,
                                                    ctypes.c_void_p]),
    "ggml_backend_sched_alloc_graph": (ctypes.c_bool, [ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_backend_sched_reserve": (ctypes.c_bool, [ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_gallocr_reserve": (ctypes.c_bool, [ctypes.c_void_p, ctypes.c_void_p]),
    "ggml_backend_sched_graph_compute": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
}
_CPU_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "ggml_backend_cpu_init": (ctypes.c_void_p, []),
    "ggml_backend_cpu_set_n_threads": (None, [ctypes.c_void_p, ctypes.c_int]),
}


def mapped_library(stem: str, maps: str = "/proc/self/maps") -> Path | None:
    """The file of the shared library ``stem`` (``libggml-base``) mapped into this process,
    read from ``maps``; None when none is (or the file cannot be read). When several
    copies are mapped, the last one listed."""
    found: Path | None = None
    try:
        with open(maps) as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) < 6:
                    continue
                path = Path(parts[5].strip())
                if path.name == f"{stem}.so" or path.name.startswith(f"{stem}.so."):
                    found = path
    except OSError:
        return None
    return found


def library_paths() -> dict[str, Path]:
    """Where ``libggml-base`` and ``libggml-cpu`` come from for this process: the copies
    llama.cpp loaded (mapped after ``import llama_cpp``), else the folder
    ``LLAMA_CPP_LIB_PATH`` names, else llama-cpp-python's own ``lib`` folder."""
    import llama_cpp  # loads libllama and the ggml libraries it links

    env = os.environ.get("LLAMA_CPP_LIB_PATH")
    default = Path(env) if env else Path(llama_cpp.__file__).parent / "lib"
    out = {}
    for stem in ("libggml-base", "libggml-cpu"):
        out[stem] = mapped_library(stem) or default / f"{stem}.so"
    return out


PLACED_BY: dict[int, tuple[str, int]] = {}
"""Graph address -> (``"gallocr"`` or ``"sched"``, the allocator's address) for every graph
placed through this module's handle (:data:`_PLACING`): what
:func:`graphc.interop.capture.capture_cgraph` reads the allocator's record from when it is
not given one."""

PLAN_HOOKS: list[Callable[[int, int], None]] = []
"""Called as ``hook(gallocr, graph)`` whenever a graph allocator plans (its record of the
last plan changes, or it is reserved) for a graph, through this module's handle."""

_PLACING = {"ggml_gallocr_alloc_graph": ("gallocr", False),
            "ggml_gallocr_reserve": ("gallocr", True),
            "ggml_backend_sched_alloc_graph": ("sched", False),
            "ggml_backend_sched_graph_compute": ("sched", False),
            "ggml_backend_sched_reserve": ("sched", True)}
"""The entry points that place or plan a graph, ``(allocator, graph) -> success``: the kind
of allocator, and whether the call always plans (a reserve)."""


def gallocr_of(kind: str, allocator: int) -> int:
    """The ``ggml_gallocr`` of a gallocr (itself) or of a scheduler (its ``galloc``)."""
    if kind == "gallocr":
        return allocator
    return int(ctypes.c_void_p.from_address(allocator + SCHED_GALLOC_OFFSET).value or 0)


def plan_record(gallocr: int) -> bytes:
    """The raw bytes of a gallocr's record of its last plan (node count and node plans)."""
    if not gallocr:
        return b""
    head = GallocrHead.from_address(gallocr)
    if head.n_nodes <= 0 or not head.node_allocs:
        return b""
    return bytes(head.n_nodes.to_bytes(4, "little")) + ctypes.string_at(
        head.node_allocs, head.n_nodes * ctypes.sizeof(NodeAlloc))


class _Placing:
    """One of :data:`_PLACING` on the handle :func:`lib` returns: calls ggml, then
    remembers which allocator placed the graph and, when the allocator planned, tells
    :data:`PLAN_HOOKS`. Attributes (``restype``, ``argtypes``) are ggml's function's own."""

    _fn: Callable[[int, int], object]
    _kind: str
    _plans: bool

    def __init__(self, fn: Callable[[int, int], object], kind: str, plans: bool) -> None:
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_plans", plans)

    def __call__(self, allocator: int, graph: int) -> object:
        before = b"" if self._plans or not allocator else plan_record(
            gallocr_of(self._kind, allocator))
        result = self._fn(allocator, graph)
        ok = result is True or (result == 0 and result is not False)
        if ok and allocator and graph:
            if not self._plans:
                PLACED_BY[int(graph)] = (self._kind, int(allocator))
            galloc = gallocr_of(self._kind, allocator)
            if galloc and (self._plans or plan_record(galloc) != before):
                for hook in PLAN_HOOKS:
                    hook(galloc, int(graph))
        return result

    def __getattr__(self, name: str) -> object:
        return getattr(self._fn, name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self._fn, name, value)


@functools.cache
def lib() -> Ggml:
    """Load ggml: the copy llama.cpp runs on (:func:`library_paths`). GraphError with the
    install command when it is missing, or naming the mismatch when its ``struct
    ggml_tensor`` is not the one mirrored here."""
    need_llama()
    paths = library_paths()
    lib_dir = paths["libggml-base"].parent
    try:
        base = ctypes.CDLL(str(paths["libggml-base"]))
        cpu = ctypes.CDLL(str(paths["libggml-cpu"]))
    except OSError as e:
        raise GraphError(f"cannot load ggml from {lib_dir}: {e}",
                         fix=f"reinstall llama-cpp-python ({INSTALL}), or point "
                             "LLAMA_CPP_LIB_PATH at a folder holding libllama and ggml") from None
    for target, table in ((base, _SIGNATURES), (cpu, _CPU_SIGNATURES)):
        for name, (restype, argtypes) in table.items():
            fn = getattr(target, name)
            fn.restype = restype
            fn.argtypes = argtypes
    for name, (kind, plans) in _PLACING.items():
        setattr(base, name, _Placing(getattr(base, name), kind, plans))
    overhead = int(base.ggml_tensor_overhead())
    if overhead != ctypes.sizeof(GgmlTensor) + OBJECT_HEADER:
        raise GraphError(f"this ggml's struct ggml_tensor takes {overhead - OBJECT_HEADER} "
                         f"bytes, graphc mirrors the {ctypes.sizeof(GgmlTensor)}-byte struct "
                         f"of ggml 0.25 (library {paths['libggml-base']})",
                         fix='pip install "llama-cpp-python==0.3.36"')
    return Ggml(base, cpu, lib_dir)


def tensor_at(address: int) -> GgmlTensor:
    """The ``struct ggml_tensor`` at ``address`` (a view of live memory, not a copy)."""
    return GgmlTensor.from_address(address)
