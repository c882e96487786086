"""Framing: how a message's frames lie on a link's byte stream, writing and reading them.

Runs in: every process.

``multiprocessing``'s framing: each frame is its size (4 bytes, signed; ``-1``
then 8 bytes for a frame of 2 GiB or more) followed by its bytes. A message is
one *envelope* frame, which says (``codec``) how many out-of-band frames follow
it. Here: the header formats, the bounds a reader holds a header to, and
:func:`write_frames`, which writes frames with as few copies and writes as it can,
and :class:`FrameReader`, which reads them through a buffer (many small messages
per read). :class:`~localactors._wire.link.Link` reads and writes through these.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

from . import codec as W
from . import protocol as P

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


def frame_call(call_id: int, actor: str, name: str, kind: P.CallKind, payload: bytes) -> bytes:
    """An :class:`~localactors._wire.protocol.ActorCall` whose payload is small ``bytes``,
    framed whole: the bytes ``Link.send_call`` writes, and a caller's outbox defers."""
    head = pickle.dumps((W.CALL_TAG, call_id, actor, name, W.KIND_VALUE[kind], payload), 5)
    return FRAME_HEAD.pack(len(head) + 4, 0) + head


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


class FrameReader:
    """Reading a link's messages through a buffer: what :class:`~localactors._wire.link.Link`
    reads with (only ever one thread at a time: its reader, or the holder of its read token)."""

    max_frame_size: int = MAX_FRAME_SIZE  #: a larger frame header is malformed framing (set before reading)
    _fd: int  # the descriptor read
    _rbuf: bytes  # bytes read but not yet taken, from _rpos on
    _rpos: int

    def recv_frames(self) -> list[bytes]:
        """The frames of the next message (only ever called by one thread)."""
        limit = self.max_frame_size
        first = self._read_frame(MAX_ENVELOPE if limit > MAX_ENVELOPE else limit)
        extra = W.extra_frames(first)
        if not extra:
            return [first]
        if extra > MAX_EXTRA_FRAMES:
            raise ValueError(f"malformed framing: an envelope announces {extra} frames (at most {MAX_EXTRA_FRAMES})")
        return [first, *(self._read_frame(limit) for _ in range(extra))]

    def _read_frame(self, limit: int) -> bytes:
        # multiprocessing's framing, read through a buffer: one read() often
        # brings many small messages, where recv_bytes() makes two per message
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < 4:
            buf, pos = self._fill(buf, pos, 4)
        (n,) = SIZE.unpack_from(buf, pos)
        pos += 4
        if n < 0:  # a frame of 2 GiB or more: -1, then the size in 8 bytes
            if len(buf) - pos < 8:
                buf, pos = self._fill(buf, pos, 8)
            (n,) = BIG_SIZE.unpack_from(buf, pos)
            pos += 8
        if not 0 <= n <= limit:
            raise ValueError(f"malformed framing: a frame header claims {n} bytes (at most {limit})")
        if len(buf) - pos >= n:
            self._rbuf, self._rpos = buf, pos + n
            return buf[pos : pos + n]
        if n >= DIRECT:  # large: read straight into its own buffer, no copies on the way
            have = len(buf) - pos
            out = bytearray(max(have, min(n, FIRST_ALLOC)))  # grown below as data arrives
            out[:have] = buf[pos:]
            self._rbuf, self._rpos = b"", 0
            fd = self._fd
            while have < n:
                if have == len(out):  # the peer has sent what it claimed so far: believe more
                    out.extend(bytes(min(n, 2 * len(out)) - len(out)))
                with memoryview(out) as view:
                    got = os.readv(fd, [view[have:]])
                if not got:
                    raise EOFError
                have += got
            return out  # type: ignore[return-value]  # bytes-like: pickle takes it as a buffer
        buf, pos = self._fill(buf, pos, n)
        self._rbuf, self._rpos = buf, pos + n
        return buf[pos : pos + n]

    def _fill(self, buf: bytes, pos: int, need: int) -> tuple[bytes, int]:
        """Read until ``need`` bytes are buffered; return the new buffer at offset 0."""
        rest = buf[pos:]
        fd = self._fd
        while len(rest) < need:
            chunk = os.read(fd, max(CHUNK, need - len(rest)))
            if not chunk:
                raise EOFError
            rest = rest + chunk if rest else chunk
        self._rbuf, self._rpos = rest, 0
        return rest, 0

    def recv(self) -> P.Message:
        # the hot path: a small message with no out-of-band frames, whole in the
        # buffer or in what one read brings
        buf, pos = self._rbuf, self._rpos
        have = len(buf) - pos
        if have == 0:
            buf = os.read(self._fd, CHUNK)
            if not buf:
                raise EOFError
            self._rbuf, self._rpos = buf, pos = buf, 0
            have = len(buf)
        if have >= 8:
            n, extra = FRAME_HEAD.unpack_from(buf, pos)
            if extra == 0 and 4 <= n <= have - 4:
                self._rpos = end = pos + 4 + n
                return W.decode_small(buf[pos + 8 : end])
        frames = self.recv_frames()
        return W.decode(frames[0], frames[1:])

    def read_more(self) -> None:
        """Wait for more bytes (one read) and add them to the read buffer; ``EOFError`` at the end."""
        chunk = os.read(self._fd, CHUNK)
        if not chunk:
            raise EOFError
        buf, pos = self._rbuf, self._rpos
        self._rbuf, self._rpos = (buf[pos:] + chunk if pos < len(buf) else chunk), 0

    def recv_buffered(self) -> list[P.Message]:
        """The messages already whole in the read buffer (and with no out-of-band
        frames), decoded, in order; no read. A reader takes many at once this way."""
        out: list[P.Message] = []
        buf, pos = self._rbuf, self._rpos
        size = len(buf)
        decode = W.decode_small
        while size - pos >= 8:
            n, extra = FRAME_HEAD.unpack_from(buf, pos)
            if extra or not 4 <= n <= size - pos - 4:
                break  # not whole yet, or not small: recv() takes it
            end = pos + 4 + n
            msg = decode(buf[pos + 8 : end])
            self._rpos = pos = end
            out.append(msg)
        return out

    def frame_buffered(self) -> bool:
        """Is a whole frame in the read buffer? (``epoll`` cannot see it.)"""
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < 4:
            return False
        n: int = SIZE.unpack_from(buf, pos)[0]
        return 0 <= n <= len(buf) - pos - 4
