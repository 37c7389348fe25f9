"""What the host copies out of ggml's memory, observed as it happens.

Nothing here knows what a program *should* read. Every copy a ggml backend buffer makes to
the host passes through one function pointer of that buffer, ``iface.get_tensor``
(``ggml_backend_tensor_get``, and on the CPU backend ``ggml_backend_tensor_get_async``,
end there; llama.cpp copies its logits, embeddings, next-token hidden rows, layer inputs
and sampler results out that way). :class:`HostReadWatch` replaces that pointer in each
buffer it is given with a wrapper that calls the original and then records the copy: the
tensor, the byte range, and the bytes the host received. It wraps ``iface.set_tensor`` the
same way, so that a watcher also learns when the host writes into a buffer (llama.cpp sets
each ubatch's inputs that way before the ubatch's graph runs): those are reported with
``write=True`` and no bytes.

The wrapper is installed once per buffer and never taken out again: a buffer may be freed
at any time by its owner, and writing into a freed struct is worse than leaving a
pass-through in place. While no watch is active the wrapper only calls the original. A
wrapper is recognised by its own address in the slot, so a buffer that was freed and
another allocated at the same address (llama.cpp reallocates its compute buffer when a graph
grows) is wrapped again.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass

from graphc.errors import GraphError
from graphc.interop.ggml_abi import BackendBuffer, GetTensorFn, Ggml


@dataclass(frozen=True)
class HostCopy:
    """One copy out of ggml's memory: ``size`` bytes from ``offset`` of the data of the
    tensor at ``tensor`` (an address), in ``buffer``; ``data`` is what the host received.
    With ``write``, a copy the other way (host to tensor), kept without its bytes."""

    buffer: int
    tensor: int
    offset: int
    size: int
    data: bytes
    write: bool = False


class _Wrapper:
    """The pass-through installed in one buffer's ``get_tensor`` (or ``set_tensor``) slot;
    both have the same C signature."""

    def __init__(self, original: int, write: bool) -> None:
        self.write = write
        self.original = GetTensorFn(original)
        self.fn = GetTensorFn(self.__call__)
        self.address = ctypes.cast(self.fn, ctypes.c_void_p).value or 0

    def __call__(self, buffer: int | None, tensor: int | None, data: int | None,
                 offset: int, size: int) -> None:
        self.original(buffer, tensor, data, offset, size)
        if not _ACTIVE or not data or not tensor:
            return
        try:
            copy = HostCopy(int(buffer or 0), int(tensor), int(offset), int(size),
                            b"" if self.write else ctypes.string_at(data, size), self.write)
            for watch in list(_ACTIVE):
                watch.record(copy)
        except Exception as e:  # never let an exception cross into C
            for watch in _ACTIVE:
                watch.errors.append(f"{type(e).__name__}: {e}")


_WRAPPERS: dict[tuple[int, str], _Wrapper] = {}
"""(buffer address, slot) -> the wrapper last installed there (kept alive for the
process)."""
_ACTIVE: list[HostReadWatch] = []


class HostReadWatch:
    """Records every copy the host makes out of the buffers it watches while it is active
    (``with watch:``). ``on_copy`` (if given) is called with each copy as it is made, from
    inside ggml's call, the host's writes included; ``copies`` keeps the reads in order.
    Exceptions raised while recording are kept in ``errors`` (none may cross into C)."""

    def __init__(self, ggml: Ggml, on_copy: Callable[[HostCopy], None] | None = None) -> None:
        self.ggml = ggml
        self.on_copy = on_copy
        self.copies: list[HostCopy] = []
        self.errors: list[str] = []

    def watch(self, buffer: int) -> None:
        """Route ``buffer``'s copies to the host through a recording wrapper (once per
        buffer). GraphError when the struct does not look like ggml 0.25's (its ``size``
        field disagrees with ``ggml_backend_buffer_get_size``)."""
        if not buffer:
            return
        head = BackendBuffer.from_address(buffer)
        size = int(self.ggml.base.ggml_backend_buffer_get_size(buffer))
        if int(head.size) != size:
            raise GraphError(f"ggml buffer at {buffer:#x} does not have the layout graphc "
                             f"mirrors (size field {head.size}, ggml says {size})",
                             fix='pip install "llama-cpp-python==0.3.36"')
        for slot in ("get_tensor", "set_tensor"):
            current = getattr(head, slot)
            known = _WRAPPERS.get((buffer, slot))
            if not current or (known is not None and current == known.address):
                continue  # already wrapped, or a buffer without that function
            wrapper = _Wrapper(int(current), write=slot == "set_tensor")
            _WRAPPERS[(buffer, slot)] = wrapper
            setattr(head, slot, wrapper.address)

    def record(self, copy: HostCopy) -> None:
        """Keep ``copy`` (a read) and pass it to ``on_copy``."""
        if not copy.write:
            self.copies.append(copy)
        if self.on_copy is not None:
            try:
                self.on_copy(copy)
            except Exception as e:  # never let an exception cross into C
                self.errors.append(f"{type(e).__name__}: {e}")

    def __enter__(self) -> HostReadWatch:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
