"""Worker stdout, stderr and logging, forwarded to the user's process with a prefix.

Runs in: all three roles, one class each.

* worker (:func:`redirect_worker_output`): at start, file descriptors 1 and 2
  are pointed at two pipes whose read ends the manager holds. Everything the
  worker writes arrives there: ``print``, logging, C extensions, child
  processes, and a crash's last words (the manager still reads the pipe after
  the worker died, which an in-worker reader thread could not).
* manager (:class:`OutputPump`): one thread per worker reads both pipes, cuts
  the bytes into whole lines and sends them as ``Output`` messages to every
  watcher (the cluster). Until the first watcher arrives, lines wait in a
  bounded backlog; with no watcher at all they go to the manager's own
  stdout/stderr, still prefixed.
* user's process (:class:`OutputSink`): the cluster's link to its manager;
  its reader writes each line to ``sys.stdout`` or ``sys.stderr`` as they
  are at that moment (so pytest's capture and notebooks see them), prefixed
  ``(worker-1 pid=123)``.

``LocalCluster(forward_output=False)`` leaves the workers' descriptors alone:
their output then goes straight to the terminal the user's process inherited,
unprefixed. In-process clusters never redirect: worker threads share this
process's streams.
"""

from __future__ import annotations

import logging
import os
import selectors
import sys
import threading
import time
from collections import deque
from typing import Any

from .._wire import protocol as P
from .._wire.connection import Link, LinkClosed, connect

logger = logging.getLogger("localactors.output")

#: lines kept for a watcher that has not connected yet
BACKLOG_LINES = 10_000
_READ_SIZE = 65536


def prefix(worker: str, pid: int) -> str:
    return f"({worker} pid={pid}) "


# ----------------------------------------------------------------- worker side


def redirect_worker_output(stdout: Any, stderr: Any) -> None:
    """Point fds 1 and 2 at the manager's pipes; line-buffer Python's streams.

    ``stdout`` and ``stderr`` are the write ends (``multiprocessing``
    connections) the manager passed to this worker.
    """
    for conn, fd in ((stdout, 1), (stderr, 2)):
        os.dup2(conn.fileno(), fd)
        conn.close()
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            # a pipe is block-buffered by default: a print would sit unseen
            reconfigure(line_buffering=True)


# ----------------------------------------------------------------- manager side


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
            _write_local(msg)

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


def _write_local(msg: P.Output) -> None:
    stream = sys.stdout if msg.stream == 1 else sys.stderr
    lead = prefix(msg.worker, msg.pid)
    try:
        stream.write("".join(lead + line for line in msg.text.splitlines(keepends=True)))
        stream.flush()
    except (OSError, ValueError):
        pass  # our own stream is closed: nowhere left to write


# ----------------------------------------------------------------- user's side


class OutputSink:
    """The cluster's subscription: writes forwarded lines to this process's streams."""

    def __init__(self, manager_address: str, authkey: bytes, name: str) -> None:
        self._link = connect(manager_address, authkey, name)
        self._link.start_reader(self._on_message, lambda link, err: None)
        self._link.send(P.WatchOutput())

    def _on_message(self, link: Link, msg: P.Message) -> None:
        if isinstance(msg, P.Output):
            _write_local(msg)

    def close(self, timeout: float = 1.0) -> None:
        """Let the reader finish the last lines (the manager's exit ends it), then close."""
        self._link.join_reader(timeout)
        self._link.close()
        self._link.join_reader(timeout)
