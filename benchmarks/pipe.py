"""The limit: a plain ``multiprocessing.Pipe`` echo between two processes.

Runs in: the benchmark process (client end) and one spawned echo process.

Two flavours:

* ``direct``: each end reads and writes in one thread -- the floor for any
  request/reply over a pipe with pickled messages;
* ``threaded``: the same echo with the thread hops of a runtime that keeps a
  reader thread on every link (caller -> peer's reader -> a queue -> an
  executing thread -> reply -> caller's reader -> an Event -> caller). It
  shows what the hops alone cost, apart from any runtime logic.
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection
from queue import SimpleQueue
from typing import Any

#: about the size and shape of an encoded actor call
MESSAGE = (24, 12345, "Counter-0123456789abcdef0123456789abcdef", "increment", 0, b"\x80\x05\x95\x06")


def _echo_direct(conn: Connection) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(msg)


def _echo_threaded(conn: Connection) -> None:
    queue: SimpleQueue[Any] = SimpleQueue()

    def executor() -> None:
        while True:
            msg = queue.get()
            if msg is None:
                return
            conn.send(msg)

    runner = threading.Thread(target=executor, daemon=True)
    runner.start()
    while True:
        msg = conn.recv()
        queue.put(msg)
        if msg is None:
            runner.join()
            return


def echo_main(conn: Connection, threaded: bool) -> None:
    """Entry point of the echo process."""
    (_echo_threaded if threaded else _echo_direct)(conn)


class PipeEcho:
    """The client end of an echo process."""

    def __init__(self, threaded: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=echo_main, args=(theirs, threaded), name="bench-pipe-echo")
        self.process.start()
        theirs.close()
        self.threaded = threaded
        self._reply: SimpleQueue[Any] = SimpleQueue()
        self._waiting: list[threading.Event] = []
        self._reader: threading.Thread | None = None
        if threaded:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        self.round_trip()

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            self._reply.put(msg)
            event = self._waiting.pop(0)
            event.set()

    def round_trip(self) -> None:
        """One message there and back."""
        if not self.threaded:
            self.conn.send(MESSAGE)
            self.conn.recv()
            return
        event = threading.Event()
        self._waiting.append(event)
        self.conn.send(MESSAGE)
        event.wait()
        self._reply.get()

    def pipelined(self, n: int) -> float:
        """Seconds to push ``n`` messages through while reading the echoes."""
        import time

        if self.threaded:
            raise ValueError("pipelined runs on the direct echo only")

        def send_all() -> None:
            for _ in range(n):
                self.conn.send(MESSAGE)

        sender = threading.Thread(target=send_all)
        t0 = time.perf_counter()
        sender.start()
        for _ in range(n):
            self.conn.recv()
        elapsed = time.perf_counter() - t0
        sender.join()
        return elapsed

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()
        if self._reader is not None:
            self._reader.join(5)
