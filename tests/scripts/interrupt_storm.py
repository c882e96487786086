"""SIGINTs landing anywhere in a caller's waits: every one is a KeyboardInterrupt there, none breaks the client.

A thread of this script signals the process every few milliseconds while the
main thread makes calls and waits for their replies (so many signals land
while the main thread reads and dispatches replies itself). The storm sends
only while the main thread is inside its ``try``, one signal at a time: a
signal landing in this script's own bookkeeping between two rounds would be
the script's bug, not the library's. After the storm the same actor answers, with every call that
completed counted.
"""

import os
import signal
import threading

from localactors import Client


class Counter:
    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n


if __name__ == "__main__":
    with Client(n_workers=1) as client:
        counter = client.submit(Counter, actor=True).result()
        blowing = threading.Event()  # set by the main thread inside its try: signals may come
        sending = threading.Lock()  # held by the storm from its look at ``blowing`` to its kill()
        caught = threading.Event()  # set by the main thread once it caught the signal sent
        stop = threading.Event()

        def storm():
            while not stop.wait(0.003):  # the interval between signals, not a synchronisation
                with sending:
                    if not blowing.is_set():
                        continue
                    os.kill(os.getpid(), signal.SIGINT)
                caught.wait(30)  # one signal at a time: none lands while the last is handled
                caught.clear()

        thread = threading.Thread(target=storm)
        thread.start()
        interrupted = sent = 0
        while interrupted < 200:
            try:
                blowing.set()
                futures = []
                for _ in range(50):
                    futures.append(counter.increment())
                    sent += 1
                for f in futures:
                    f.result(timeout=30)
                blowing.clear()
                with sending:  # a signal sent before the clear is raised in here at the latest
                    pass
            except KeyboardInterrupt:
                interrupted += 1
                blowing.clear()
                caught.set()
        stop.set()
        thread.join(30)
        final = counter.increment().result(timeout=30)
        print("interrupted", interrupted, "sent", sent, "final", final, flush=True)
        assert sent < final <= sent + 1 + interrupted, (final, sent)  # an interrupted send may have gone
    print("ok", flush=True)
