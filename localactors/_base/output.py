"""Worker stdout, stderr and logging, forwarded to the user's process with a prefix.

Runs in: every process; each role's part lives with that role.

* worker (:mod:`localactors._worker.output`): at start, file descriptors 1 and
  2 are pointed at two pipes whose read ends the manager holds. Everything the
  worker writes arrives there: ``print``, logging, C extensions, child
  processes, and a crash's last words (the manager still reads the pipe after
  the worker died, which an in-worker reader thread could not).
* manager (:mod:`localactors._manager.output`): one thread per worker reads
  both pipes, cuts the bytes into whole lines and sends them as ``Output``
  messages to every watcher (the cluster). Until the first watcher arrives,
  lines wait in a bounded backlog; with no watcher at all they go to the
  manager's own stdout/stderr, still prefixed.
* user's process (:mod:`localactors._client.output`): the cluster's link to
  its manager; its reader writes each line to ``sys.stdout`` or ``sys.stderr``
  as they are at that moment (so pytest's capture and notebooks see them),
  prefixed ``(worker-1 pid=123)``.

``LocalCluster(forward_output=False)`` leaves the workers' descriptors alone:
their output then goes straight to the terminal the user's process inherited,
unprefixed. In-process clusters never redirect: worker threads share this
process's streams.

This module holds what more than one role needs: the prefix and the writer.
"""

from __future__ import annotations

import sys

from .._wire import protocol as P


def prefix(worker: str, pid: int) -> str:
    return f"({worker} pid={pid}) "


def write_local(msg: P.Output) -> None:
    """Write a forwarded line to this process's stream of the same number, prefixed."""
    stream = sys.stdout if msg.stream == 1 else sys.stderr
    lead = prefix(msg.worker, msg.pid)
    try:
        stream.write("".join(lead + line for line in msg.text.splitlines(keepends=True)))
        stream.flush()
    except (OSError, ValueError):
        pass  # our own stream is closed: nowhere left to write
