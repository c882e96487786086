"""Segments a sender writes again: copied-out data goes into pages that already exist.

Runs in: every process (a sender keeps its pool; a receiver frees a pooled
segment when it is done with it).

Writing into a new segment costs the sender the tmpfs pages too (allocating
and zeroing each 4 KiB page), which makes its ``pwrite`` about as slow as
one copy into fresh memory. So a segment whose every span the receiver
copies into objects of its own (``bytes``, ``bytearray``, the pickle
stream: never a NumPy array or a ``memoryview``, which would stay views of
it) comes from a small pool of the sender's own segments when one is free,
and joins it when new. Once all its pages exist, the pool keeps it mapped
(:class:`Mapped`, its page table filled at once), and the sender copies
into the mapping (:func:`~localactors._wire.shm_stream.put`): about 8 GB/s
here, against 5 GB/s for ``pwrite`` into existing pages and 1.4 GB/s into
new ones.

A pooled segment's name has a ``p`` before its sequence number, and its
first byte says who has it: ``BUSY`` (the sender set it before naming the
segment in a message) or ``FREE`` (the receiver set it when it let go of
the segment, see :class:`~localactors._wire.shm_stream.Reader`). The
receiver does not unlink a pooled segment (unless its sender failed or died
part-way: then nobody writes it again). The sender writes a segment again
only after reading ``FREE`` there and once its own writer thread is done
with it (a receiver may let go early, unread); one receiver at a time has
it, so the byte has one writer at a time and needs no lock.

What the pool holds, per sending process: at most :data:`SEGMENTS`
segments and :data:`BYTES` bytes (and at most an eighth of the directory's
size; a larger payload gets a segment of its own, as without the pool). A
segment leaves the pool :data:`IDLE` seconds after the last message that
named it: unlinked if ``FREE``; if still ``BUSY`` (its receiver keeps the
payload, or died) it is unlinked by a later send that finds it ``FREE``. A
*keeper* thread (``localactors-shm-pool``) makes these rounds while the pool
is not empty, and ends with it. Every pooled segment is also an ordinary
segment of its sender (see :mod:`~localactors._wire.shm`): unlinked when the
sender exits, by the manager's sweep when the sender is killed, and by the
cluster's sweep when it closes; a swept segment simply leaves the pool.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from typing import Any

from . import shm_raw, threads

#: a pooled segment's first byte
FREE = 0
BUSY = 1

#: at most this many pooled segments per sending process
SEGMENTS = 4
#: and at most this many bytes in them (and an eighth of the directory's size)
BYTES = 256 << 20
#: a segment leaves the pool this long (seconds) after the last message that named it
IDLE = 2.0
#: how long a send waits for a free segment's writer thread to end (its last steps, usually)
WAIT = 0.05
#: how often the keeper looks (seconds)
ROUND = 0.25
#: a segment that left the pool busy and stays busy this long is left to the exit and the sweeps
FORGET = 600.0

#: what the pool did in this process (tests and benchmarks read it)
stats = {"created": 0, "reused": 0, "grown": 0, "mapped": 0, "unlinked": 0}


class Mapped:
    """A pooled segment mapped in its sender, every page of it there: the writer
    copies into it (no ``SIGBUS``: a page that exists needs no room)."""

    __slots__ = ("address", "anchor", "mapping", "size")

    def __init__(self, fd: int, size: int) -> None:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # (its page table filled in one call)
        self.mapping = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.size = size
        # unmapped when the last reference goes (the pool's, or a writer's still writing)
        self.address, self.anchor = shm_raw.address(self.mapping)


class _Entry:
    __slots__ = ("capacity", "folder", "idle", "mapped", "name", "prefix", "used")

    def __init__(self, folder: str, prefix: str, name: str, capacity: int) -> None:
        self.folder = folder
        self.prefix = prefix
        self.name = name
        self.capacity = capacity
        self.used = time.monotonic()  #: when it was last named in a message
        self.mapped: Mapped | None = None
        self.idle = threading.Event()  #: set: this process's writer is done with it

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.name)


_lock = threading.Lock()
_pool: list[_Entry] = []
_draining: list[_Entry] = []  # left the pool busy: unlinked once found free
_keeper = threading.Event()  # set: the keeper thread runs


def _state(entry: _Entry) -> int | None:
    """The segment's first byte; None when it is gone (swept) or unreadable."""
    try:
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        first = os.pread(fd, 1, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return first[0] if first else None


def _room(folder: str) -> tuple[int, int]:
    """The most the pool may hold in ``folder``, and the bytes free there."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return 0, 0
    return min(BYTES, st.f_blocks * st.f_frsize // 8), st.f_bavail * st.f_frsize


def take(folder: str, prefix: str, size: int) -> tuple[str, int, int, Mapped | None, threading.Event] | None:
    """A free pooled segment for ``size`` bytes: its name, a descriptor (read-write,
    the first byte already ``BUSY``), its size (at least ``size``: grown here if it
    was smaller), its mapping when all its pages are there, and the event its
    writer sets when done with it. None: none is free (see :func:`new`)."""
    with _lock:
        _trim(time.monotonic())
        free: list[_Entry] = []
        for entry in list(_pool):
            if entry.folder != folder or entry.prefix != prefix:
                continue
            state = _state(entry)
            if state is None:
                _pool.remove(entry)  # swept
            elif state == FREE:
                free.append(entry)
        ready = [e for e in free if e.idle.is_set()]
        chosen = _fit(ready, size)
        if chosen is None:  # one whose receiver is done while its writer is not (its last steps, usually)
            late = _fit(free, size)
            if late is not None and late.idle.wait(WAIT):
                chosen = late
        largest = max(ready, key=lambda e: e.capacity, default=None)
        if chosen is None and largest is not None:  # grown, if the pool and the directory have room
            limit, room = _room(folder)
            held = sum(e.capacity for e in _pool)
            if held - largest.capacity + size <= limit and size - largest.capacity <= room:
                chosen = largest
        if chosen is None:
            return None
        try:
            fd = os.open(chosen.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            _pool.remove(chosen)
            return None
        try:
            if chosen.capacity < size:
                chosen.mapped = None
                os.ftruncate(fd, size)
                chosen.capacity = size
                stats["grown"] += 1
            elif chosen.mapped is None and shm_raw.available() and _whole(fd):
                chosen.mapped = _map(fd, chosen.capacity)
            os.pwrite(fd, bytes([BUSY]), 0)
        except OSError:
            os.close(fd)
            _pool.remove(chosen)
            _unlink(chosen)
            return None
        chosen.used = time.monotonic()
        chosen.idle.clear()
        stats["reused"] += 1
        return chosen.name, fd, chosen.capacity, chosen.mapped, chosen.idle


def _fit(entries: list[_Entry], size: int) -> _Entry | None:
    """The smallest of ``entries`` that holds ``size`` bytes."""
    return min((e for e in entries if e.capacity >= size), key=lambda e: e.capacity, default=None)


def _map(fd: int, size: int) -> Mapped | None:
    try:
        mapped = Mapped(fd, size)
    except (OSError, ValueError, TypeError):  # (no room for a mapping: pwrite it is)
        return None
    stats["mapped"] += 1
    return mapped


def _whole(fd: int) -> bool:
    """Does every page of the file exist (tmpfs counts the pages it holds)?"""
    st = os.fstat(fd)
    blocks: Any = getattr(st, "st_blocks", 0)
    return bool(blocks * 512 >= st.st_size)


def new(folder: str, prefix: str, name: str, size: int) -> tuple[int, threading.Event] | None:
    """A new segment ``name`` in the pool, if it has room for ``size`` bytes: its
    descriptor (read-write, empty: the caller sizes it and writes ``BUSY`` first,
    or :func:`drop` s it), and the event to set when done writing it. None: no
    room in the pool. ``OSError``: not created."""
    with _lock:
        held = sum(e.capacity for e in _pool)
        if len(_pool) >= SEGMENTS or held + size > _room(folder)[0]:
            return None
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(folder, name), flags, 0o600)
        entry = _Entry(folder, prefix, name, size)
        _pool.append(entry)
        stats["created"] += 1
        start = not _keeper.is_set()
        _keeper.set()
    if start:
        try:
            threads.start(threading.Thread(target=_keep, name="localactors-shm-pool", daemon=True))
        except RuntimeError:  # (no new threads at exit: the exit unlinks them)
            _keeper.clear()
    return fd, entry.idle


def drop(name: str, unlink: bool = True) -> None:
    """Forget a pooled segment that could not be written, and unlink it (not when
    its message went: its receiver does, once it sees the failure)."""
    with _lock:
        for entry in _pool:
            if entry.name == name:
                _pool.remove(entry)
                if unlink:
                    _unlink(entry)
                return


def names() -> list[str]:
    """The names of this process's pooled segments (the pool and those leaving it)."""
    with _lock:
        return [e.name for e in _pool + _draining]


def _unlink(entry: _Entry) -> None:
    try:
        os.unlink(entry.path)
        stats["unlinked"] += 1
    except OSError:
        pass


def _trim(now: float) -> None:
    """(Under the lock) Idle segments leave the pool: unlinked if free, else left to
    drain; drained ones found free are unlinked; swept ones forgotten."""
    for entry in list(_pool):
        state = _state(entry) if now - entry.used >= IDLE else -1
        if state == -1:
            continue
        _pool.remove(entry)
        if state == FREE:
            _unlink(entry)
        elif state is not None:
            _draining.append(entry)
    for entry in list(_draining):
        state = _state(entry)
        if state == FREE:
            _unlink(entry)
        if state != BUSY or now - entry.used >= FORGET:
            _draining.remove(entry)


def _keep() -> None:
    """The keeper: a round every :data:`ROUND` seconds while the pool is not empty."""
    while True:
        time.sleep(ROUND)  # (a timer: nothing to wait for)
        with _lock:
            for entry in list(_pool):
                if not os.path.exists(entry.path):  # swept (the cluster closed)
                    _pool.remove(entry)
            _trim(time.monotonic())
            if not _pool:
                _keeper.clear()
                return


def _after_fork() -> None:
    """In a forked child: the pool is the parent's, and no keeper runs here."""
    global _lock, _keeper
    _lock = threading.Lock()
    _keeper = threading.Event()
    _pool.clear()
    _draining.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
