"""Ctrl-C in a caller's wait: a KeyboardInterrupt there, never a link left half read.

Runs in: every process that waits for replies (in practice: the user's main thread).

A thread waiting for a reply may read and dispatch the link's messages itself
(see ``_wire.shared_read``). In the main thread a Ctrl-C raises
KeyboardInterrupt wherever the interpreter happens to be: in the middle of
reading a message, or of handing it to its future, that would lose the
message or break the link for every caller.

So the first wait that reads a link in the main thread, while Python's own
handler is in place, puts :func:`on_sigint` in its stead, and leaves it
there: it raises KeyboardInterrupt at once, as Python's does, except while
the main thread is between reading a message and handing it over (the read
path marks that stretch, ``shared_read.defer_interrupt``); then the read path
raises it as soon as the message is handed over. The common path costs one
look at the current handler per wait, and no system call. A handler of the
user's own is left alone (no protection then), and one put back later
(``signal.signal(SIGINT, signal.default_int_handler)``, as IPython does
around each cell) is replaced again at the next wait.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from .._wire.shared_read import defer_interrupt, mark_main_thread

try:  # the raw handler, without the enum conversions of signal.getsignal
    from _signal import getsignal as getsignal  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - not CPython
    getsignal = signal.getsignal

SIGINT = int(signal.SIGINT)
#: Python's own SIGINT handler: replaced by :func:`on_sigint` at the main thread's next wait
PYTHON_HANDLER = signal.default_int_handler


def on_sigint(signum: int, frame: Any) -> None:
    """Raise KeyboardInterrupt, unless a message is being handed over: then right after."""
    if defer_interrupt():
        return
    raise KeyboardInterrupt


def install() -> None:
    """Put :func:`on_sigint` in place of Python's handler (only from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    mark_main_thread()  # (its waits go in slices: a Ctrl-C just before one lands within a slice)
    if signal.getsignal(signal.SIGINT) is PYTHON_HANDLER:
        signal.signal(signal.SIGINT, on_sigint)
