"""The commonest first mistake: a cluster started at the top level, without the main guard."""

from localactors import Client


class Counter:
    def increment(self):
        return 1


client = Client(n_workers=2)
print(client.submit(Counter, actor=True).result().increment().result())
