"""Starting the runtime's own threads, with SIGINT blocked in them.

Runs in: every process (it matters in the user's: its main thread waits for replies).

A Ctrl-C is sent to the whole process, and the kernel hands it to one of its
threads. Python runs signal handlers in the main thread only, and a blocking
call there (a lock, a poll, a read) is cut short only when the signal was
handed to that very thread; handed to another, the KeyboardInterrupt waits
until the main thread's wait ends by itself. Threads started with
:func:`start` block SIGINT (a new thread inherits the mask it is started
under), so the kernel hands a Ctrl-C to a thread that can act on it: the
main thread, or one of the user's own.
"""

from __future__ import annotations

import signal
import threading

_MASK = {signal.SIGINT}
_CAN_MASK = hasattr(signal, "pthread_sigmask")


def start(thread: threading.Thread) -> None:
    """``thread.start()``, the new thread blocking SIGINT for its whole life."""
    if not _CAN_MASK:
        thread.start()
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _MASK)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
