"""Large data through shared memory: segments, who creates and who unlinks them.

Runs in: every process (senders create segments, receivers open them).

A payload that carries large buffers (``bytes``, ``bytearray``, ``memoryview``,
NumPy arrays: anything of 1 MiB or more) is a :class:`Shared`: the small
in-band pickle stream, plus the buffers. The sender writes the buffers once
into a *segment*, a plain file in the shared-memory directory (``/dev/shm``,
or ``$LOCALACTORS_SHM_DIR``), and the message carries only its name. The
receiver opens the segment when it decodes the message (inside
``pickle.loads`` of the envelope, see :func:`_claim`) and unlinks it at once;
its open file (and, for NumPy arrays and ``memoryview`` objects, a mapping
of it) owns the memory for as long as the payload or any object built on the
mapping lives. Large ``bytes`` may still be being written when the message
goes, and the receiver copies them as they land (:mod:`.shm_stream`). A
segment whose every buffer the receiver copies out (``bytes``,
``bytearray``, the pickle stream) is one of its sender's *pooled* segments
instead, written again for later messages once the receiver lets go of it
(:mod:`.shm_pool`); its receiver does not unlink it.

Lifetime, with nobody's cooperation assumed:

* the receiver unlinks right after opening, in its link's reader, so a
  segment exists while its message is in flight (in a socket buffer) only;
  a pooled one lives while its sender uses it, and a few seconds more;
* each process remembers the names it created and unlinks those still there
  when it exits (:func:`release_created`: ``atexit``, and the worker's own
  ``os._exit`` path), which covers messages its receiver never read and the
  pooled segments;
* the manager unlinks a dead worker's segments (:func:`sweep` with its pid),
  and sweeps the cluster's prefix when it exits (also when it exits because
  the user's process was SIGKILLed); ``LocalCluster.close`` sweeps it too.

Names are ``la-<16 hex>-<pid>-<seq>-<8 hex>`` (``p<seq>`` when pooled, see
:mod:`.shm_files`): the prefix is a keyed hash of
the cluster's authkey (:func:`prefix_for`), so every process of a cluster
knows it and nothing else about the key is revealed. A receiver opens only a
name that matches this form exactly, under a prefix of a cluster whose link
it authenticated (:func:`trust`), in its own shared-memory directory (never a
path from the message), with ``O_NOFOLLOW``, checks that it is a regular file
of its own uid, mode 0600, of the announced size, and that the spans fit it.

Plain files with :mod:`os` and :mod:`mmap`, not :mod:`multiprocessing.shared_memory`:
its resource tracker unlinks every segment a process opens when that process
exits, wrong for a sender and a receiver alike, and it offers no
``O_EXCL``/``O_NOFOLLOW``/mode control. The sender fills a new segment with
``pwrite(2)``, not through a mapping: on tmpfs it is about twice as fast, and
a full directory fails with ``ENOSPC`` instead of a ``SIGBUS`` (a pooled
segment whose pages all exist is written through a mapping: no room is
needed then, see :func:`.shm_stream.put`). When the
directory lacks room (a 64 MB ``/dev/shm``) or is missing, the payload falls
back to the socket: its buffers become out-of-band frames, with one log line.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import pickle
import stat
import threading
from typing import Any

from . import shm_pool, shm_stream
from .shm_files import _NAME, fall_back, name_for, pooled, remember, unlink
from .shm_files import directory as directory
from .shm_files import release_created as release_created
from .shm_files import sweep as sweep
from .shm_stream import SegmentError as SegmentError

#: buffers at least this large travel out of band (a segment, or a frame)
THRESHOLD = 1 << 20
#: each buffer starts on a multiple of this in its segment (NumPy's alignment)
ALIGN = 64

# span kinds: how the receiver turns a buffer into an object
PICKLE_BUFFER = 0  #: an out-of-band buffer pickle handed out (NumPy): zero-copy
BYTES = 1  #: a ``bytes``: copied once, the receiver owns it
BYTEARRAY = 2  #: a ``bytearray``: copied once
VIEW = 3  #: a ``memoryview``: zero-copy
STREAM = 4  #: the pickle stream itself (large in-band data: long lists, strings)

#: the kinds written behind the message (immutable, and copied by the receiver anyway)
STREAMED = frozenset({BYTES, STREAM})
#: the kinds the receiver copies out: a segment of only these may be pooled (written again)
COPIED = frozenset({BYTES, BYTEARRAY, STREAM})
#: a segment whose streamed kinds hold fewer bytes is written whole before its message goes
STREAM_MIN = 4 << 20

_lock = threading.Lock()
_trusted: set[str] = set()  # prefixes of the clusters whose links this process authenticated


def prefix_for(authkey: bytes) -> str:
    """The name prefix of a cluster's segments: a keyed hash of its authkey."""
    digest = hashlib.blake2b(b"localactors-shm", key=authkey[:64], digest_size=8).hexdigest()
    return f"la-{digest}"


def trust(authkey: bytes) -> None:
    """Accept segments of this cluster: called once a link with its authkey is authenticated."""
    prefix = prefix_for(authkey)
    if prefix not in _trusted:
        with _lock:
            _trusted.add(prefix)


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


# ---------------------------------------------------------------- the payload


class Shared(bytes):
    """A payload whose large buffers travel beside it: its value is the in-band pickle.

    On the sender it holds the buffers and, once they are written, the
    segment's name; pickled inside a message it becomes the segment's name
    (or, without a segment, out-of-band frames). On the receiver it holds the
    segment's mapping (or the frames) and ``spans``, which
    :func:`~localactors._base.serialize.loads` turns into objects.
    """

    segment: str
    size: int
    spans: tuple[tuple[int, int, int], ...]  #: (kind, offset, length); offsets into the segment
    chunk: int  #: the streamed kinds are being written in chunks of this size (0: all written)
    buffers: list[Any]  #: the sender's buffers (kept only when they go as frames)
    views: list[memoryview | None]  #: the receiver's buffers, one per span (None: read from ``reader``)
    reader: shm_stream.Reader | None  #: the receiver's open segment
    mapping: mmap.mmap | None  #: the receiver's mapping, when a span is zero-copy
    error: str
    loaded: bool  #: unpickled once already (a second time copies, so that objects never alias)

    def __reduce__(self) -> tuple[Any, ...]:
        if self.segment:
            return (_claim, (bytes(self), self.segment, self.size, self.spans, self.chunk))
        frames = [pickle.PickleBuffer(b) for b in self.buffers]
        return (_inline, (bytes(self), self.spans, *frames))

    def take(self, index: int, again: bool = False) -> Any:
        """The receiver's object for span ``index``: ``bytes`` (for BYTES and STREAM),
        ``bytearray``, or a ``memoryview`` (a copy when ``again``: never shared twice).

        Raises :class:`SegmentError` when the sender died or failed part-way.
        """
        kind, offset, length = self.spans[index]
        view = self.views[index]
        if view is None:
            assert self.reader is not None
            return self.reader.read(index, offset, length, bytearray if kind == BYTEARRAY else bytes)
        if kind == BYTES:
            return bytes(view)
        if kind == BYTEARRAY:
            return bytearray(view)
        if again and kind != STREAM:
            return memoryview(bytearray(view))
        return view


def _blank(inband: bytes) -> Shared:
    payload = Shared(inband)
    payload.segment, payload.size, payload.spans, payload.chunk = "", 0, (), 0
    payload.buffers, payload.views, payload.reader, payload.mapping = [], [], None, None
    payload.error, payload.loaded = "", False
    return payload


def share(inband: bytes, kinds: list[int], buffers: list[Any], prefix: str) -> Shared:
    """A payload of ``inband`` plus ``buffers``: in a segment if there is room, else as frames.

    Large ``bytes`` (and a large pickle stream) may still be being written
    when this returns: see :mod:`~localactors._wire.shm_stream`.
    """
    payload = _blank(inband)
    views = [memoryview(b).cast("B") if not isinstance(b, pickle.PickleBuffer) else b.raw() for b in buffers]
    streamed = sum(view.nbytes for kind, view in zip(kinds, views) if kind in STREAMED)
    chunk = shm_stream.CHUNK if streamed >= STREAM_MIN and shm_stream.AVAILABLE else 0
    # the header: the pool's byte, then (streaming) one status byte per chunk
    chunks = sum(len(shm_stream.cuts(v.nbytes, chunk)) for k, v in zip(kinds, views) if k in STREAMED) if chunk else 0
    offset = _align(shm_stream.STATUS + chunks)
    spans = []
    for kind, view in zip(kinds, views):
        spans.append((kind, offset, view.nbytes))
        offset = _align(offset + view.nbytes)
    payload.spans = tuple(spans)
    size = spans[-1][1] + spans[-1][2] if spans else 0
    pool = all(kind in COPIED for kind in kinds)
    written = write_segment(prefix, views, payload.spans, size, chunk, pool) if size else None
    if written is None:
        payload.buffers = views
    else:
        payload.segment, payload.chunk, payload.size = written
    return payload


def write_segment(
    prefix: str,
    views: list[memoryview],
    spans: tuple[tuple[int, int, int], ...],
    size: int,
    chunk: int = 0,
    pool: bool = False,
) -> tuple[str, int, int] | None:
    """Write ``views`` at their offsets into a segment: its name, its chunk size
    (0: all written) and its size (at least ``size``), or None (no room).

    With ``chunk``, the spans of the :data:`STREAMED` kinds are written by a
    writer thread after this returns, if the file system takes the lock. With
    ``pool`` (the receiver copies every span out), the segment is one of the
    sender's pool when it has one free or room for one (:mod:`.shm_pool`).
    """
    folder = directory()
    taken = shm_pool.take(folder, prefix, size) if pool else None
    mapped, idle = None, None
    if taken is not None:
        name, fd, size, mapped, idle = taken
    else:
        name = name_for(prefix, pool)
        try:
            st = os.statvfs(folder)
            if st.f_bavail * st.f_frsize < size:
                raise OSError(errno.ENOSPC, f"{size:,} bytes needed, {st.f_bavail * st.f_frsize:,} free")
            new = shm_pool.new(folder, prefix, name, size) if pool else None
            if new is None:
                name = name_for(prefix, False)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(os.path.join(folder, name), flags, 0o600)
            else:
                fd, idle = new
        except OSError as err:
            fall_back(folder, size, err)
            return None
    is_pooled = pooled(name)
    remember(name)
    later: list[tuple[memoryview, int]] = []
    try:
        try:
            os.ftruncate(fd, size)  # the announced size at once (a hole until written)
            header = spans[0][1] if spans else 0
            if chunk and not shm_stream.lock(fd, header, size - header):
                chunk = 0
            if chunk or is_pooled:  # the header's page taken now, not part-way; chunks PENDING
                os.pwrite(fd, bytes([shm_pool.BUSY if is_pooled else 0]) + bytes(header - 1), 0)
            for (kind, offset, length), view in zip(spans, views):
                if chunk and kind in STREAMED:  # chunk k's status byte is at STATUS + k
                    done = 0
                    for n in shm_stream.cuts(length, chunk):
                        later.append((view[done : done + n], offset + done))
                        done += n
                else:
                    shm_stream.put(fd, view, offset, mapped)
        except BaseException:
            os.close(fd)
            if is_pooled:
                shm_pool.drop(name)  # (never named in a message: unlinked)
            raise
    except OSError as err:  # ENOSPC part-way: another process took the room
        unlink(name)
        fall_back(folder, size, err)
        return None
    if chunk:
        shm_stream.start_writer(fd, name, later, mapped, idle)
    else:
        os.close(fd)
        if idle is not None:
            idle.set()
    return name, chunk, size


# ---------------------------------------------------------------- receiving


def _claim(inband: bytes, name: str, size: int, spans: tuple[tuple[int, int, int], ...], chunk: int = 0) -> Shared:
    """Open a segment named in a message, and unlink it unless it is pooled
    (runs inside the envelope's unpickling).

    Only opens: the copies into the receiver's objects happen in
    :meth:`Shared.take`, in the thread that unpickles the payload (waiting,
    when the sender is still writing, there and not in the link's reader).
    Failing here must not break the link (it would take every other call on
    it along): the payload carries the error, and unpickling it raises.
    """
    payload = _blank(inband)
    try:
        first = shm_stream.check(size, spans, chunk, STREAMED)
        payload.spans, payload.chunk = spans, chunk
        is_pooled = pooled(name)
        fd = _open(name, size, is_pooled)
    except (OSError, ValueError) as err:
        payload.error = f"shared-memory segment {name!r}: {err}"
        return payload
    path = os.path.join(directory(), name) if is_pooled else ""
    immutable = len(spans) if is_pooled and all(kind in (BYTES, STREAM) for kind, _, _ in spans) else 0
    payload.reader = shm_stream.Reader(fd, name, size, chunk, first, path, immutable)  # (frees a pooled one)
    views: list[memoryview | None] = [None] * len(spans)
    if any(kind in (PICKLE_BUFFER, VIEW) for kind, _, _ in spans):  # zero-copy: a mapping
        if is_pooled:  # (its sender writes it again: never a view)
            payload.error = f"shared-memory segment {name!r}: pooled, but holds buffers to map"
            return payload
        try:
            # private and writable: a NumPy array built on it is writable, as one
            # unpickled from bytes would be, and a write copies only its page
            payload.mapping = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as err:
            payload.error = f"shared-memory segment {name!r}: {err}"
            return payload
        whole = memoryview(payload.mapping)
        for i, (kind, offset, length) in enumerate(spans):
            if kind in (PICKLE_BUFFER, VIEW):  # (never streamed: complete when named)
                views[i] = whole[offset : offset + length]
    payload.views = views
    return payload


def _open(name: str, size: int, pooled: bool = False) -> int:
    """The segment's descriptor, once it is known to be one of ours; unlinked
    (a pooled one: read-write, and left for its sender to write again)."""
    if type(name) is not str or not _NAME.fullmatch(name) or name[:19] not in _trusted:
        raise ValueError("not a segment name of a cluster this process belongs to")
    path = os.path.join(directory(), name)
    fd = os.open(path, (os.O_RDWR if pooled else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise ValueError("not a private regular file of this user")
            if st.st_size != size:
                raise ValueError(f"holds {st.st_size:,} bytes, {size:,} announced")
        finally:
            if not pooled:
                os.unlink(path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _inline(inband: bytes, spans: tuple[tuple[int, int, int], ...], *frames: Any) -> Shared:
    """The payload of a message whose buffers came as out-of-band frames (no segment)."""
    payload = _blank(inband)
    payload.spans = spans
    views: list[memoryview | None] = []
    for frame in frames:
        view = memoryview(frame)
        owner = view.obj
        if view.readonly and isinstance(owner, bytearray) and len(owner) == view.nbytes:
            view = memoryview(owner)  # the link's own buffer: let NumPy arrays be writable
        views.append(view.cast("B") if view.format != "B" or view.ndim != 1 else view)
    payload.views = views
    return payload
