"""Framing: how a message's frames lie on a link's byte stream, and writing them.

Runs in: every process.

``multiprocessing``'s framing: each frame is its size (4 bytes, signed; ``-1``
then 8 bytes for a frame of 2 GiB or more) followed by its bytes. A message is
one *envelope* frame, which says (``codec``) how many out-of-band frames follow
it. Here: the header formats, the bounds a reader holds a header to, and
:func:`write_frames`, which writes frames with as few copies and writes as it can.
:class:`~localactors._wire.link.Link` reads and writes through these.
"""

from __future__ import annotations

import os
import struct
from typing import Any

SIZE = struct.Struct("!i")
BIG_SIZE = struct.Struct("!Q")
FRAME_HEAD = struct.Struct("!iI")  # a frame's size, then (codec) the count of out-of-band frames after it
CHUNK = 1 << 16  # read size: many small messages at once
DIRECT = 1 << 16  # frames this large are read, and written, without coalescing copies
#: a message's first frame (its envelope: bulk data travels in the frames after it)
#: claiming more than this is malformed framing: the link is dropped, and logged
MAX_ENVELOPE = 1 << 30
#: any one frame claiming more than this is malformed framing too (the default
#: of ``Link.max_frame_size``: the manager's links take ``LocalCluster(max_frame_size=...)``)
MAX_FRAME_SIZE = 1 << 40
#: a frame's buffer starts at most this large and grows as its data arrives:
#: a header is a claim, not data (a 1 GiB claim must not allocate 1 GiB at once)
FIRST_ALLOC = 1 << 27
#: out-of-band frames after one envelope, at most (a garbled count is not waited for)
MAX_EXTRA_FRAMES = 1 << 20


def write_all(fd: int, data: Any) -> None:
    """Write all of ``data`` to ``fd`` (which may take it in several writes)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def write_frames(fd: int, frames: list[Any]) -> None:
    """Write frames in multiprocessing's framing, small ones joined into one write."""
    if len(frames) == 1 and type(frames[0]) is bytes and len(frames[0]) < DIRECT:
        data = SIZE.pack(len(frames[0])) + frames[0]  # the usual case: one small message
        sent = os.write(fd, data)
        if sent < len(data):
            write_all(fd, memoryview(data)[sent:])
        return
    parts: list[Any] = []
    for frame in frames:
        n = len(frame) if type(frame) is bytes else memoryview(frame).nbytes
        if n > 0x7FFFFFFF:
            parts.append(SIZE.pack(-1) + BIG_SIZE.pack(n))
        else:
            parts.append(SIZE.pack(n))
        if n < DIRECT:
            parts.append(frame)
        else:  # large: written from where it lies, not copied into a joined buffer
            write_all(fd, b"".join(parts))
            parts = []
            write_all(fd, frame)
    if parts:
        write_all(fd, b"".join(parts))
