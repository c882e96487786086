"""SIGINTs landing anywhere in a caller's waits: every one is a KeyboardInterrupt there, none breaks the client.

A thread of this script signals the process every few milliseconds while the
main thread makes calls and waits for their replies (so many signals land
while the main thread reads and dispatches replies itself). After the storm
the same actor answers, with every call that completed counted.
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
        stop = threading.Event()

        def storm():
            while not stop.wait(0.003):  # the interval between signals, not a synchronisation
                os.kill(os.getpid(), signal.SIGINT)

        interrupted = 0
        thread = threading.Thread(target=storm)
        thread.start()
        sent = 0
        try:
            while interrupted < 200:
                try:
                    futures = []
                    for _ in range(50):
                        futures.append(counter.increment())
                        sent += 1
                    for f in futures:
                        f.result(timeout=30)
                except KeyboardInterrupt:
                    interrupted += 1
        finally:
            stop.set()
            while True:  # a last signal may still be on its way
                try:
                    thread.join()
                    break
                except KeyboardInterrupt:
                    interrupted += 1
        final = counter.increment().result(timeout=30)
        print("interrupted", interrupted, "sent", sent, "final", final, flush=True)
        assert sent < final <= sent + 1 + interrupted, (final, sent)  # an interrupted send may have gone
    print("ok", flush=True)
