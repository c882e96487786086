"""Segment files: their names, and unlinking those nobody will read.

Runs in: every process (senders name and remember segments; the manager and
the cluster sweep them).

Names are ``la-<16 hex>-<pid>-<seq>-<8 hex>``, ``p<seq>`` for a segment of
its sender's pool (:mod:`.shm_pool`). Each process remembers the names it
created and unlinks those still there when it exits (:func:`release_created`:
``atexit``, and the worker's own ``os._exit`` path); :func:`sweep` unlinks a
cluster's (or one dead process's) by prefix.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import re
import threading

logger = logging.getLogger("localactors.shm")

#: where segments live; ``LOCALACTORS_SHM_DIR`` (inherited by every child) changes it
DEFAULT_DIR = "/dev/shm"

_NAME = re.compile(r"la-[0-9a-f]{16}-[0-9]{1,10}-(p?)[0-9]{1,20}-[0-9a-f]{8}")

_lock = threading.Lock()
_created: set[str] = set()  # names this process created (some already unlinked by their receiver)
_seq = itertools.count()
_warned = False
_atexit = False


def directory() -> str:
    return os.environ.get("LOCALACTORS_SHM_DIR") or DEFAULT_DIR


def name_for(prefix: str, pooled: bool) -> str:
    """A new segment name of this process under a cluster's ``prefix``."""
    return f"{prefix}-{os.getpid()}-{'p' if pooled else ''}{next(_seq)}-{os.urandom(4).hex()}"


def pooled(name: str) -> bool:
    """Is ``name`` one of a sender's pooled segments (see :mod:`.shm_pool`)?"""
    match = _NAME.fullmatch(name)
    return match is not None and match.group(1) == "p"


def fall_back(folder: str, size: int, err: OSError) -> None:
    """Say once per process that large data goes through the socket."""
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "shared memory in %s has no room for %s bytes (%s): large data goes through the socket instead",
            folder,
            f"{size:,}",
            err.strerror or err,
        )


def remember(name: str) -> None:
    global _atexit
    with _lock:
        if len(_created) >= 1024:  # forget the ones their receivers unlinked
            folder = directory()
            _created.difference_update([n for n in _created if not os.path.exists(os.path.join(folder, n))])
        _created.add(name)
        if not _atexit:
            _atexit = True
            atexit.register(release_created)


def unlink(name: str) -> None:
    try:
        os.unlink(os.path.join(directory(), name))
    except OSError:
        pass
    with _lock:
        _created.discard(name)


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
    """Unlink what this process created and no receiver took (its pooled ones too): at exit."""
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
