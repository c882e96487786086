"""Large data through shared memory: segments, who creates and who unlinks them.

Runs in: every process (senders create segments, receivers map them).

A payload that carries large buffers (``bytes``, ``bytearray``, ``memoryview``,
NumPy arrays: anything of 1 MiB or more) is a :class:`Shared`: the small
in-band pickle stream, plus the buffers. The sender writes the buffers once
into a *segment*, a plain file in the shared-memory directory (``/dev/shm``,
or ``$LOCALACTORS_SHM_DIR``), and the message carries only its name. The
receiver maps the segment when it decodes the message (inside ``pickle.loads``
of the envelope, see :func:`_claim`) and unlinks it at once: the mapping
survives the unlink on Linux, and owns the memory for as long as any object
built on it lives (a NumPy array or ``memoryview`` keeps its ``mmap``).

Lifetime, with nobody's cooperation assumed:

* the receiver unlinks right after mapping, in its link's reader, so a
  segment exists while its message is in flight (in a socket buffer) only;
* each process remembers the names it created and unlinks those still there
  when it exits (:func:`release_created`: ``atexit``, and the worker's own
  ``os._exit`` path), which covers messages its receiver never read;
* the manager unlinks a dead worker's segments (:func:`sweep` with its pid),
  and sweeps the cluster's prefix when it exits (also when it exits because
  the user's process was SIGKILLed); ``LocalCluster.close`` sweeps it too.

Names are ``la-<16 hex>-<pid>-<seq>-<8 hex>``: the prefix is a keyed hash of
the cluster's authkey (:func:`prefix_for`), so every process of a cluster
knows it and nothing else about the key is revealed. A receiver opens only a
name that matches this form exactly, under a prefix of a cluster whose link
it authenticated (:func:`trust`), in its own shared-memory directory (never a
path from the message), with ``O_NOFOLLOW``, and checks that it is a regular
file of its own uid, mode 0600, of the announced size.

Plain files with :mod:`os` and :mod:`mmap`, not :mod:`multiprocessing.shared_memory`:
its resource tracker registers every segment a process opens and unlinks
them (with warnings) when that process exits, which is wrong both for a
sender (the receiver owns the segment by then) and for a receiver (it
unlinked it already); and it offers no ``O_EXCL``/``O_NOFOLLOW``/mode control.
The sender fills a segment with ``pwrite(2)``, not through a mapping: on tmpfs
it is about twice as fast (no page faults in user space), and a full
directory makes it fail with ``ENOSPC`` instead of a ``SIGBUS``. When the
directory lacks room (a 64 MB ``/dev/shm``) or is missing, the payload falls
back to the socket: its buffers become out-of-band frames, with one log line.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import itertools
import logging
import mmap
import os
import pickle
import re
import stat
import threading
from typing import Any

logger = logging.getLogger("localactors.shm")

#: buffers at least this large travel out of band (a segment, or a frame)
THRESHOLD = 1 << 20
#: where segments live; ``LOCALACTORS_SHM_DIR`` (inherited by every child) changes it
DEFAULT_DIR = "/dev/shm"
#: each buffer starts on a multiple of this in its segment (NumPy's alignment)
ALIGN = 64
#: the largest single ``pwrite(2)`` (Linux writes at most 0x7ffff000 bytes at once)
_CHUNK = 1 << 30

# span kinds: how the receiver turns a buffer into an object
PICKLE_BUFFER = 0  #: an out-of-band buffer pickle handed out (NumPy): zero-copy
BYTES = 1  #: a ``bytes``: copied once, the receiver owns it
BYTEARRAY = 2  #: a ``bytearray``: copied once
VIEW = 3  #: a ``memoryview``: zero-copy
STREAM = 4  #: the pickle stream itself (large in-band data: long lists, strings)

_NAME = re.compile(r"la-[0-9a-f]{16}-[0-9]{1,10}-[0-9]{1,20}-[0-9a-f]{8}")

_lock = threading.Lock()
_created: set[str] = set()  # names this process created (some already unlinked by their receiver)
_trusted: set[str] = set()  # prefixes of the clusters whose links this process authenticated
_seq = itertools.count()
_warned = False
_atexit = False


def directory() -> str:
    return os.environ.get("LOCALACTORS_SHM_DIR") or DEFAULT_DIR


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
    buffers: list[Any]  #: the sender's buffers (kept only when they go as frames)
    views: list[memoryview]  #: the receiver's buffers, one per span
    mapping: mmap.mmap | None
    error: str
    loaded: bool  #: unpickled once already (a second time copies, so that objects never alias)

    def __reduce__(self) -> tuple[Any, ...]:
        if self.segment:
            return (_claim, (bytes(self), self.segment, self.size, self.spans))
        frames = [pickle.PickleBuffer(b) for b in self.buffers]
        return (_inline, (bytes(self), self.spans, *frames))


def _blank(inband: bytes) -> Shared:
    payload = Shared(inband)
    payload.segment, payload.size, payload.spans = "", 0, ()
    payload.buffers, payload.views, payload.mapping, payload.error, payload.loaded = [], [], None, "", False
    return payload


def share(inband: bytes, kinds: list[int], buffers: list[Any], prefix: str) -> Shared:
    """A payload of ``inband`` plus ``buffers``: in a segment if there is room, else as frames."""
    payload = _blank(inband)
    views = [memoryview(b).cast("B") if not isinstance(b, pickle.PickleBuffer) else b.raw() for b in buffers]
    spans, offset = [], 0
    for kind, view in zip(kinds, views):
        spans.append((kind, offset, view.nbytes))
        offset = _align(offset + view.nbytes)
    payload.spans = tuple(spans)
    size = spans[-1][1] + spans[-1][2] if spans else 0
    name = write_segment(prefix, views, payload.spans, size) if size else None
    if name is None:
        payload.buffers = views
    else:
        payload.segment, payload.size = name, size
    return payload


def write_segment(
    prefix: str, views: list[memoryview], spans: tuple[tuple[int, int, int], ...], size: int
) -> str | None:
    """Write ``views`` at their offsets into a new segment; its name, or None (no room)."""
    folder = directory()
    name = f"{prefix}-{os.getpid()}-{next(_seq)}-{os.urandom(4).hex()}"
    path = os.path.join(folder, name)
    try:
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < size:
            raise OSError(errno.ENOSPC, f"{size:,} bytes needed, {st.f_bavail * st.f_frsize:,} free")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        _fall_back(folder, size, err)
        return None
    _remember(name)
    try:
        try:
            for (_, offset, length), view in zip(spans, views):
                done = 0
                while done < length:
                    done += os.pwrite(fd, view[done : done + _CHUNK], offset + done)
            if os.fstat(fd).st_size != size:  # (a zero-length last buffer)
                os.ftruncate(fd, size)
        finally:
            os.close(fd)
    except OSError as err:  # ENOSPC part-way: another process took the room
        _unlink(name)
        _fall_back(folder, size, err)
        return None
    return name


def _fall_back(folder: str, size: int, err: OSError) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "shared memory in %s has no room for %s bytes (%s): large data goes through the socket instead",
            folder,
            f"{size:,}",
            err.strerror or err,
        )


def _remember(name: str) -> None:
    global _atexit
    with _lock:
        if len(_created) >= 1024:  # forget the ones their receivers unlinked
            folder = directory()
            _created.difference_update([n for n in _created if not os.path.exists(os.path.join(folder, n))])
        _created.add(name)
        if not _atexit:
            _atexit = True
            atexit.register(release_created)


def _unlink(name: str) -> None:
    try:
        os.unlink(os.path.join(directory(), name))
    except OSError:
        pass
    with _lock:
        _created.discard(name)


# ---------------------------------------------------------------- receiving


def _claim(inband: bytes, name: str, size: int, spans: tuple[tuple[int, int, int], ...]) -> Shared:
    """Map a segment named in a message, and unlink it (runs inside the envelope's unpickling).

    Failing here must not break the link (it would take every other call on
    it along): the payload carries the error, and unpickling it raises.
    """
    payload = _blank(inband)
    payload.spans = spans
    try:
        payload.mapping = _open(name, size)
    except (OSError, ValueError) as err:
        payload.error = f"shared-memory segment {name!r}: {err}"
        return payload
    whole = memoryview(payload.mapping)
    payload.views = [whole[offset : offset + length] for _, offset, length in spans]
    return payload


def _open(name: str, size: int) -> mmap.mmap:
    if type(name) is not str or not _NAME.fullmatch(name) or name[:19] not in _trusted:
        raise ValueError("not a segment name of a cluster this process belongs to")
    if type(size) is not int or size <= 0:
        raise ValueError(f"bad size {size!r}")
    path = os.path.join(directory(), name)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise ValueError("not a private regular file of this user")
            if st.st_size != size:
                raise ValueError(f"holds {st.st_size:,} bytes, {size:,} announced")
            # private and writable: a NumPy array built on it is writable, as one
            # unpickled from bytes would be, and a write copies only its page
            return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.unlink(path)
    finally:
        os.close(fd)


def _inline(inband: bytes, spans: tuple[tuple[int, int, int], ...], *frames: Any) -> Shared:
    """The payload of a message whose buffers came as out-of-band frames (no segment)."""
    payload = _blank(inband)
    payload.spans = spans
    views = []
    for frame in frames:
        view = memoryview(frame)
        owner = view.obj
        if view.readonly and isinstance(owner, bytearray) and len(owner) == view.nbytes:
            view = memoryview(owner)  # the link's own buffer: let NumPy arrays be writable
        views.append(view.cast("B") if view.format != "B" or view.ndim != 1 else view)
    payload.views = views
    return payload


# ---------------------------------------------------------------- cleaning up


def sweep(prefix: str, pid: int | None = None) -> int:
    """Unlink the segments of a cluster (of one process of it, with ``pid``); how many."""
    folder = directory()
    start = f"{prefix}-" if pid is None else f"{prefix}-{pid}-"
    count = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if name.startswith(start) and _NAME.fullmatch(name):
            try:
                os.unlink(os.path.join(folder, name))
                count += 1
            except OSError:
                pass
    return count


def release_created() -> None:
    """Unlink what this process created and no receiver took: at exit."""
    with _lock:
        names = list(_created)
        _created.clear()
    folder = directory()
    mine = f"-{os.getpid()}-"  # a forked child inherits the set: never the parent's in-flight ones
    for name in names:
        if name[19 : 19 + len(mine)] != mine:
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass
