"""Raw memory through :mod:`ctypes`: new objects to copy into, and copies without the GIL.

Runs in: every process (a receiver's copies into new objects; a sender's
copies into its pooled segments' mappings).

* :func:`fresh`: a ``bytes`` made by ``PyBytes_FromStringAndSize(NULL, n)``
  (the documented C way to fill a new ``bytes`` before anyone sees it), a
  ``bytearray`` by ``PyByteArray_FromStringAndSize(NULL, n)`` (no zero-fill
  first), both advised to use transparent huge pages (``MADV_HUGEPAGE``: 512
  times fewer page faults on the fresh memory), and a writable view of its
  storage for ``preadv(2)`` to fill;
* :func:`copy`: ``memmove`` from any buffer (read-only ones included, through
  ``PyObject_GetBuffer``) to an address, the GIL released meanwhile.

Without :mod:`ctypes` (:data:`AVAILABLE` false) the callers fall back:
``os.pread`` makes the ``bytes``, ``pwrite`` writes the segment.
"""

from __future__ import annotations

import sys
from typing import Any

_api: Any = None  # an _Api, or False: no ctypes here
_HUGE = 2 << 20
_MADV_HUGEPAGE = 14
_PYBUF_WRITE = 0x200


class _Api:
    def __init__(self) -> None:
        import ctypes

        py = ctypes.pythonapi
        sized = (ctypes.c_void_p, ctypes.c_ssize_t)
        self.new_bytes = py.PyBytes_FromStringAndSize
        self.new_bytes.restype, self.new_bytes.argtypes = ctypes.py_object, sized
        self.bytes_at = py.PyBytes_AsString
        self.bytes_at.restype, self.bytes_at.argtypes = ctypes.c_void_p, (ctypes.py_object,)
        self.new_bytearray = py.PyByteArray_FromStringAndSize
        self.new_bytearray.restype, self.new_bytearray.argtypes = ctypes.py_object, sized
        self.bytearray_at = py.PyByteArray_AsString
        self.bytearray_at.restype, self.bytearray_at.argtypes = ctypes.c_void_p, (ctypes.py_object,)
        # a memoryview of raw memory: no ctypes array type per length (ctypes caches those for ever)
        self.view_of = py.PyMemoryView_FromMemory
        self.view_of.restype = ctypes.py_object
        self.view_of.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)

        class Buffer(ctypes.Structure):  # Py_buffer (part of the stable ABI)
            _fields_ = [
                ("buf", ctypes.c_void_p),
                ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int),
                ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p),
                ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p),
            ]

        self.Buffer = Buffer
        self.byref = ctypes.byref
        self.get_buffer = py.PyObject_GetBuffer
        self.get_buffer.restype = ctypes.c_int
        self.get_buffer.argtypes = (ctypes.py_object, ctypes.POINTER(Buffer), ctypes.c_int)
        self.release_buffer = py.PyBuffer_Release
        self.release_buffer.restype, self.release_buffer.argtypes = None, (ctypes.POINTER(Buffer),)
        self.memmove = ctypes.memmove  # (a foreign call: the GIL is released during it)
        self.anchor = ctypes.c_char.from_buffer
        self.addressof = ctypes.addressof
        self.madvise = None
        if sys.platform == "linux":
            self.madvise = ctypes.CDLL(None).madvise
            self.madvise.restype = ctypes.c_int
            self.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def _setup() -> Any:
    global _api
    try:
        _api = _Api()
    except (ImportError, AttributeError, OSError):
        _api = False
    return _api


def available() -> bool:
    """Is :mod:`ctypes` here (and the C API it needs)?"""
    return bool(_api if _api is not None else _setup())


def fresh(kind: type[bytes] | type[bytearray], length: int) -> tuple[Any, memoryview | None]:
    """A new, uninitialised ``kind`` of ``length`` bytes and a writable view of its storage.

    The view is None where :mod:`ctypes` is missing and ``kind`` is ``bytes``
    (its storage cannot be written then). The caller keeps the object alive
    while it uses the view.
    """
    api = _api if _api is not None else _setup()
    if not api:
        if kind is bytes:
            return None, None
        obj = bytearray(length)
        return obj, memoryview(obj)
    if kind is bytes:
        obj = api.new_bytes(None, length)  # contents undefined until the copy fills them
        start = api.bytes_at(obj)
    else:
        obj = api.new_bytearray(None, length)  # (``bytearray(n)`` would zero-fill it first)
        start = api.bytearray_at(obj)
    if api.madvise is not None and length >= 2 * _HUGE:
        low, high = (start + _HUGE - 1) & ~(_HUGE - 1), (start + length) & ~(_HUGE - 1)
        api.madvise(low, high - low, _MADV_HUGEPAGE)  # (an error: small pages)
    view: memoryview = api.view_of(start, length, _PYBUF_WRITE)
    return obj, view


def address(writable: Any) -> tuple[int, Any]:
    """The address of a writable buffer's memory (an ``mmap``), and the object that
    pins it (while it lives, the buffer cannot be closed or resized)."""
    api = _api if _api is not None else _setup()
    anchor = api.anchor(writable)
    return api.addressof(anchor), anchor


def copy(target: int, view: memoryview) -> bool:
    """Copy ``view`` (contiguous bytes) to the memory at ``target``, without the GIL;
    False: no :mod:`ctypes` here. The caller keeps ``view`` alive, and knows that
    ``target`` has room."""
    api = _api if _api is not None else _setup()
    if not api:
        return False
    buffer = api.Buffer()
    api.get_buffer(view, api.byref(buffer), 0)
    try:
        source, length = buffer.buf, buffer.len
    finally:
        api.release_buffer(api.byref(buffer))  # (``view`` still holds the memory)
    api.memmove(target, source, length)
    return True
