"""Ctrl-C in a caller's wait: a KeyboardInterrupt there, never a link left half read.

Runs in: every process that waits for replies (in practice: the user's main thread).

A thread waiting for a reply may read and dispatch the link's messages itself
(see ``_wire.shared_read``). In the main thread a Ctrl-C raises
KeyboardInterrupt wherever the interpreter happens to be: in the middle of
reading a message, or of handing it to its future, that would lose the
message or break the link for every caller. :func:`read_until` lets the
interrupt through at once while the thread sleeps in ``poll`` (the usual
case: a long ``.result()``), and holds it back while the thread is between
reading a message and handing it over, raising it as soon as that is done.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from .._wire.shared_read import in_reader_thread

#: how long a held-back Ctrl-C may wait before it is raised (the wait is read in slices this long)
SLICE = 0.05


def read_until(link: Any, comp: Any, timeout: float | None) -> bool | None:
    """``link.read_until(comp, timeout)``, safe from Ctrl-C in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return link.read_until(comp, timeout)  # type: ignore[no-any-return]
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return link.read_until(comp, timeout)  # type: ignore[no-any-return]  # the user's own handler
    held = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal held
        if in_reader_thread():  # between reading a message and handing it over: not now
            held = True
            return
        raise KeyboardInterrupt

    deadline = None if timeout is None else time.monotonic() + timeout
    signal.signal(signal.SIGINT, on_sigint)
    try:
        while True:
            step = SLICE if deadline is None else min(SLICE, max(0.0, deadline - time.monotonic()))
            done = link.read_until(comp, step)
            if done is None or done or held or (deadline is not None and time.monotonic() >= deadline):
                break
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt
    return done  # type: ignore[no-any-return]
