"""Workers' forwarded output: read each worker's pipes, pass whole lines to the watchers.

Runs in: the manager process (see :mod:`localactors._base.output` for the whole path).
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from collections import deque
from typing import Any

from .._base.output import write_local
from .._wire import protocol as P
from .._wire.connection import Link, LinkClosed

#: lines kept for a watcher that has not connected yet
BACKLOG_LINES = 10_000
_READ_SIZE = 65536


class OutputPump:
    """Reads every worker's pipes and hands whole lines to the watchers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: list[Link] = []
        self._backlog: deque[P.Output] = deque(maxlen=BACKLOG_LINES)
        self._threads: list[threading.Thread] = []

    def add_watcher(self, link: Link) -> None:
        with self._lock:
            self._watchers.append(link)
            backlog, self._backlog = list(self._backlog), deque(maxlen=BACKLOG_LINES)
            for msg in backlog:
                self._send(link, msg)

    def remove_watcher(self, link: Link) -> None:
        with self._lock:
            if link in self._watchers:
                self._watchers.remove(link)

    def watch(self, worker: str, pid: int, stdout: Any, stderr: Any) -> None:
        """Start pumping one worker's pipes (read ends) until both reach EOF."""
        t = threading.Thread(
            target=self._pump, args=(worker, pid, stdout, stderr), name=f"localactors-output-{worker}", daemon=True
        )
        t.start()
        self._threads.append(t)  # only once started: a thread not started cannot be joined

    def drain(self, timeout: float) -> None:
        """Wait (``timeout`` in all) for the pumps of exited workers to pass on their last lines."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]

    def close(self) -> None:
        """No more watchers will come: write what waits in the backlog here."""
        with self._lock:
            backlog, self._backlog = list(self._backlog), deque(maxlen=BACKLOG_LINES)
        for msg in backlog:
            write_local(msg)

    def _pump(self, worker: str, pid: int, stdout: Any, stderr: Any) -> None:
        sel = selectors.DefaultSelector()
        partial = {1: b"", 2: b""}
        for conn, stream in ((stdout, 1), (stderr, 2)):
            sel.register(conn.fileno(), selectors.EVENT_READ, (conn, stream))
        try:
            while sel.get_map():
                for key, _ in sel.select():
                    conn, stream = key.data
                    try:
                        chunk = os.read(conn.fileno(), _READ_SIZE)
                    except OSError:
                        chunk = b""
                    if not chunk:  # EOF: the worker (and its children) closed it
                        sel.unregister(conn.fileno())
                        conn.close()
                        if partial[stream]:
                            self._emit(P.Output(worker, pid, stream, _text(partial[stream] + b"\n")))
                        continue
                    data = partial[stream] + chunk
                    cut = data.rfind(b"\n") + 1
                    partial[stream] = data[cut:]
                    if cut:
                        self._emit(P.Output(worker, pid, stream, _text(data[:cut])))
        finally:
            sel.close()

    def _emit(self, msg: P.Output) -> None:
        with self._lock:
            if not self._watchers:
                self._backlog.append(msg)
                return
            for link in list(self._watchers):
                self._send(link, msg)

    def _send(self, link: Link, msg: P.Output) -> None:
        try:
            link.send(msg)
        except LinkClosed:
            pass  # the watcher went away; its reader tells the manager


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
