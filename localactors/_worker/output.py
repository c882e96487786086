"""A worker process's stdout and stderr: into the manager's pipes, promptly.

Runs in: a worker process (see :mod:`localactors._base.output` for the whole path).
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection


def redirect_worker_output(stdout: Connection, stderr: Connection) -> None:
    """Point fds 1 and 2 at the manager's pipes; line-buffer Python's streams.

    ``stdout`` and ``stderr`` are the write ends (``multiprocessing``
    connections) the manager passed to this worker.
    """
    for conn, fd in ((stdout, 1), (stderr, 2)):
        os.dup2(conn.fileno(), fd)
        conn.close()
    line_buffer_streams()


def line_buffer_streams() -> None:
    """Flush Python's stdout and stderr at every line, as a terminal would.

    A worker's descriptors are pipes (forwarded output) or whatever the user's
    process had (``forward_output=False``: often a pipe or a file too), which
    Python block-buffers: a ``print`` would sit unseen until the worker exits.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
