"""The cluster's subscription to its workers' output.

Runs in: the user's process (see :mod:`localactors._base.output` for the whole path).
"""

from __future__ import annotations

from .._base.output import write_local
from .._wire import protocol as P
from .._wire.connection import Link, connect


class OutputSink:
    """The cluster's subscription: writes forwarded lines to this process's streams."""

    def __init__(self, manager_address: str, authkey: bytes, name: str) -> None:
        self._link = connect(manager_address, authkey, name)
        self._link.start_reader(self._on_message, lambda link, err: None)
        self._link.send(P.WatchOutput())

    def _on_message(self, link: Link, msg: P.Message) -> None:
        if isinstance(msg, P.Output):
            write_local(msg)

    def close(self, timeout: float = 1.0) -> None:
        """Let the reader finish the last lines (the manager's exit ends it), then close."""
        self._link.join_reader(timeout)
        self._link.close()
        self._link.join_reader(timeout)
