"""Moving the bytes of a segment: the sender writes behind its message, the receiver copies as chunks land.

Runs in: every process (a sender's writer thread; a receiver's thread that
unpickles a payload).

A large ``bytes`` costs two copies through shared memory: the sender's
``pwrite(2)`` into the segment, and the receiver's copy into the ``bytes`` it
must own. Done one after the other they take twice as long as one copy; here
they overlap. The sender names the segment in its message before the
immutable buffers (``bytes``, the pickle stream) are in it, and a *writer
thread* writes them in chunks (1 MiB, then larger: :func:`cuts`; the GIL is
released while each is written: :func:`put`), keeping them alive until written; the receiver copies each chunk as soon
as it is there. Mutable buffers (``bytearray``, ``memoryview``) and NumPy
arrays are written before the message goes: the sender's caller
may change them once the call returns, and a NumPy array is a view of the
segment that must be complete when the receiver sees it.

How the receiver knows that a chunk is there, with no polling and no hang:

* after its first byte (see :mod:`.shm_pool`), the segment holds one status
  byte per chunk (``PENDING``, ``WRITTEN``, ``NO_ROOM``, ``FAILED``); the
  writer sets a chunk's byte after writing its data;
* before the message goes, the sender takes an open-file-description lock
  (``F_OFD_SETLK``, write) over the data; the writer releases each chunk's
  range after setting its byte. The receiver waits for a read lock on the
  chunk's range (``F_OFD_SETLKW``: the kernel wakes it), then reads the byte;
* the kernel drops the lock when the sender's file is closed, also when the
  sender dies (SIGKILL included), so the wait always ends: a byte still
  ``PENDING`` then means the sender died part-way, ``NO_ROOM`` that the
  directory filled up part-way (``ENOSPC``), and the receiver raises
  :class:`SegmentError` instead of returning partial data.

The receiver copies with ``preadv(2)`` straight into the storage of the
object it returns, new and on huge pages (:func:`.shm_raw.fresh`). Without
:mod:`ctypes` it waits for the whole buffer and ``os.pread`` makes the
``bytes`` (one copy, no overlap).

The sender writes with ``pwrite(2)``, or, into a pooled segment whose pages
all exist (:mod:`.shm_pool`), with a memory copy into its mapping
(:func:`put`): on tmpfs, ``pwrite`` costs a file-page lookup and lock per 4
KiB, which with a receiver copying beside it makes it about half as fast as
the receiver; the copy into mapped pages is as fast as the receiver's.

Linux only (``F_OFD_*`` locks, a 64-bit ``struct flock``); elsewhere, or when
the directory's file system refuses the lock, every buffer is written before
the message goes.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import sys
import threading

from . import shm_closer, shm_pool, shm_raw, threads
from .shm_closer import close as _close

try:
    import fcntl
except ImportError:  # (not on Windows)
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("localactors.shm")

#: the first chunk of a streamed buffer: small, so that the receiver starts soon;
#: each next chunk is twice as large, up to :data:`GROWTH` times this one (few
#: chunks: each costs the writer thread a few GIL hand-overs, 5 ms apiece when
#: another thread of its process runs Python code)
CHUNK = 1 << 20
GROWTH = 16


def cuts(length: int, chunk: int) -> list[int]:
    """The sizes of the chunks a streamed span of ``length`` bytes is cut in (sender and receiver agree)."""
    sizes, done, size, top = [], 0, chunk, chunk * GROWTH
    while done < length:
        n = min(size, length - done)
        sizes.append(n)
        done += n
        size = min(size * 2, top)
    return sizes


#: where the status bytes start: chunk k's is at ``STATUS + k`` (byte 0 is the pool's)
STATUS = 1

# a chunk's status byte
PENDING = 0  #: not written (yet, or ever: the sender died)
WRITTEN = 1
NO_ROOM = 2  #: the directory filled up part-way
FAILED = 3  #: another error part-way

_REASONS = {
    PENDING: "its sender died part-way through writing it",
    NO_ROOM: "its sender ran out of room in the shared-memory directory part-way through writing it",
    FAILED: "its sender failed part-way through writing it",
}

#: Linux reads and writes at most this many bytes in one call
_MAX_IO = 0x7FFFF000
#: struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid (and padding)
_FLOCK = struct.Struct("hhqqi4x")

AVAILABLE = (
    sys.platform == "linux"
    and fcntl is not None
    and hasattr(fcntl, "F_OFD_SETLKW")
    and struct.calcsize("P") == 8
    and _FLOCK.size == 32
)


class SegmentError(ValueError):
    """A segment that cannot be read whole: its sender died or failed part-way."""


def _lock(fd: int, kind: int, start: int, length: int, wait: bool = False) -> None:
    command = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
    fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))


def lock(fd: int, start: int, length: int) -> bool:
    """Hold ``start:start+length`` of a new segment until written; False: no streaming here."""
    if not AVAILABLE:
        return False
    try:
        _lock(fd, fcntl.F_WRLCK, start, length)
    except OSError:  # (a file system without OFD locks)
        return False
    return True


def check(size: int, spans: tuple[tuple[int, int, int], ...], chunk: int, streamed: frozenset[int]) -> dict[int, int]:
    """Received spans that fit the segment (``ValueError`` if not): for a streamed
    segment, the index of each streamed span's first chunk (its status byte)."""
    if type(size) is not int or size <= 0:
        raise ValueError(f"bad size {size!r}")
    if type(chunk) is not int or chunk < 0 or 0 < chunk < 1 << 16:
        raise ValueError(f"bad chunk size {chunk!r}")
    if type(spans) is not tuple:
        raise ValueError("bad spans")
    first: dict[int, int] = {}
    k = 0
    for i, span in enumerate(spans):
        if type(span) is not tuple or len(span) != 3 or any(type(x) is not int for x in span):
            raise ValueError("bad spans")
        kind, offset, length = span
        if not 0 <= kind <= 4 or offset < 0 or length < 0 or offset + length > size:
            raise ValueError(f"span {span!r} does not fit {size:,} bytes")
        if chunk and kind in streamed:
            first[i] = k
            k += len(cuts(length, chunk))
    if spans and min(offset for _, offset, _ in spans) < STATUS + k:
        raise ValueError("no room for the segment's header")
    return first


def write_all(fd: int, view: memoryview, offset: int) -> None:
    done, length = 0, view.nbytes
    while done < length:
        done += os.pwrite(fd, view[done : done + _MAX_IO], offset + done)


def put(fd: int, view: memoryview, offset: int, mapped: shm_pool.Mapped | None = None) -> None:
    """Write ``view`` at ``offset``: a copy into ``mapped`` (the segment's mapping,
    every page of it there: no ``SIGBUS``) when given and it has room, else ``pwrite``."""
    if mapped is None or offset + view.nbytes > mapped.size or not shm_raw.copy(mapped.address + offset, view):
        write_all(fd, view, offset)


# ---------------------------------------------------------------- the sender


_writing: set[int] = set()  # descriptors the writer threads of this process hold


def start_writer(
    fd: int,
    name: str,
    chunks: list[tuple[memoryview, int]],
    mapped: shm_pool.Mapped | None = None,
    idle: threading.Event | None = None,
) -> None:
    """Write ``(data, offset)`` chunks in a thread of their own (see :func:`put`), then
    close ``fd`` and set ``idle`` (a pooled segment's: it may be written again).

    Not a daemon: a process that exits normally finishes what it promised
    first; one that dies drops its locks and the receiver fails the call.
    """
    _writing.add(fd)
    try:
        args = (fd, name, chunks, mapped, idle)
        threads.start(threading.Thread(target=_write, args=args, name="localactors-shm-writer"))
    except RuntimeError:  # (no new threads: the interpreter is shutting down) here, then
        _write(fd, name, chunks, mapped, idle)


def _write(
    fd: int,
    name: str,
    chunks: list[tuple[memoryview, int]],
    mapped: shm_pool.Mapped | None,
    idle: threading.Event | None,
) -> None:
    k = 0
    try:
        for k, (view, offset) in enumerate(chunks):
            put(fd, view, offset, mapped)
            os.pwrite(fd, b"\x01", STATUS + k)  # WRITTEN, then let the receiver in
            _lock(fd, fcntl.F_UNLCK, offset, view.nbytes)
    except OSError as err:
        status = NO_ROOM if err.errno in (errno.ENOSPC, errno.EDQUOT) else FAILED
        try:  # (the status bytes' page was written before the message went: no ENOSPC here)
            os.pwrite(fd, bytes([status]) * (len(chunks) - k), STATUS + k)
        except OSError:
            pass
        logger.warning("shared-memory segment %s: writing failed part-way (%s): its receiver fails", name, err)
        shm_pool.drop(name, unlink=False)  # (if pooled: never written again; its receiver unlinks it)
    finally:
        _writing.discard(fd)
        os.close(fd)  # drops the remaining locks
        chunks.clear()  # (the buffers may go now)
        if idle is not None:
            idle.set()


# ---------------------------------------------------------------- the receiver


class Reader:
    """A received segment's open file: copies its spans out, waiting for chunks still being written.

    When it goes (with the payload that holds it), a pooled segment is freed
    for its sender (:func:`_free`), an unlinked one closed. A pooled segment of
    ``immutable`` spans only (``bytes``: a second unpickling may return the
    same objects) is freed sooner, once each span has been read: the objects
    are kept, and its sender may write it again while the payload lives on
    (an actor still running the call).
    """

    __slots__ = ("chunk", "fd", "first", "immutable", "kept", "lock", "name", "pooled", "size")

    def __init__(
        self, fd: int, name: str, size: int, chunk: int, first: dict[int, int], pooled: str = "", immutable: int = 0
    ) -> None:
        self.fd = fd  #: -1 once freed
        self.name = name
        self.size = size
        self.chunk = chunk  #: 0: the segment was complete when named
        self.first = first  #: span index -> index of its first chunk (streamed spans only)
        self.pooled = pooled  #: a pooled segment's path: its sender's to write again once this lets go
        self.immutable = immutable  #: pooled, its spans all ``bytes``: how many (else 0)
        self.kept: dict[int, bytes | bytearray] = {}
        self.lock = threading.Lock()
        if size >= shm_closer.CLOSE_LATER and not pooled:
            shm_closer.start()

    def __del__(self) -> None:
        if self.fd < 0:
            return
        if self.pooled:
            _free(self.fd, locked=bool(self.chunk))
        # an unlinked segment's memory goes with its last descriptor: giving back
        # 100 MB of tmpfs pages takes 10-20 ms, not to be spent on the way to the caller
        elif self.size < shm_closer.CLOSE_LATER or not shm_closer.later(self.fd):
            _close(self.fd)

    def read(self, index: int, offset: int, length: int, kind: type[bytes] | type[bytearray]) -> bytes | bytearray:
        """Span ``index`` (at ``offset``, ``length`` bytes) as a new ``bytes`` or ``bytearray``
        (or, :attr:`immutable`, the one read before)."""
        if not self.immutable:
            return self._read(index, offset, length, kind)
        with self.lock:  # (two threads unpickling one payload: one copies, the other takes its objects)
            obj = self.kept.get(index)
            if obj is None:
                obj = self.kept[index] = self._read(index, offset, length, kind)
                if len(self.kept) == self.immutable:  # all copied out: the sender's again
                    fd, self.fd = self.fd, -1
                    _free(fd, locked=bool(self.chunk))
            return obj

    def _read(self, index: int, offset: int, length: int, kind: type[bytes] | type[bytearray]) -> bytes | bytearray:
        first = self.first.get(index)  # None: written before the message went
        obj, view = shm_raw.fresh(kind, length)
        sizes = [length] if first is None else cuts(length, self.chunk)
        done = 0
        for n in sizes:
            if first is not None:
                self._wait(first, offset + done, n)
                first += 1
            if view is not None:  # (else: no ctypes; one pread once all is there)
                self._copy(view[done : done + n], offset + done)
            done += n
        return obj if view is not None else _pread_bytes(self.fd, length, offset)

    def _wait(self, k: int, start: int, length: int) -> None:
        _lock(self.fd, fcntl.F_RDLCK, start, length, wait=True)  # the writer let go of it (or died)
        status = os.pread(self.fd, 1, STATUS + k)
        if status != b"\x01":
            code = status[0] if status else PENDING
            if self.pooled:  # its sender died or dropped it: nobody writes it again
                try:
                    os.unlink(self.pooled)
                except OSError:
                    pass
            raise SegmentError(f"shared-memory segment {self.name!r}: {_REASONS.get(code, _REASONS[FAILED])}")

    def _copy(self, view: memoryview, offset: int) -> None:
        done, length = 0, view.nbytes
        while done < length:
            n = os.preadv(self.fd, [view[done : done + _MAX_IO]], offset + done)
            if n <= 0:
                raise SegmentError(f"shared-memory segment {self.name!r}: shorter than announced")
            done += n


def _free(fd: int, locked: bool) -> None:
    """Hand a pooled segment back to its sender: drop this file's locks (the
    sender's next lock must not wait for them), set its first byte ``FREE``, close."""
    try:
        if locked:
            _lock(fd, fcntl.F_UNLCK, 0, 0)  # (length 0: the whole file)
        os.pwrite(fd, b"\x00", 0)
    except (OSError, TypeError, AttributeError):  # (Type/AttributeError: torn down at exit)
        pass
    _close(fd)


def _after_fork() -> None:
    """In a forked child: no writer thread runs here. Its copies of the writers'
    descriptors go (the parent's keep their locks, and a parent that dies
    releases them: the child must not hold them for it)."""
    for fd in list(_writing):
        _close(fd)
    _writing.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _pread_bytes(fd: int, length: int, offset: int) -> bytes:
    parts, done = [], 0
    while done < length:  # (more than one pread only past _MAX_IO: rare, and an extra copy)
        part = os.pread(fd, min(length - done, _MAX_IO), offset + done)
        if not part:
            raise SegmentError("shared-memory segment: shorter than announced")
        parts.append(part)
        done += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)
