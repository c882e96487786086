"""A pipeline of actors with backpressure: producer -> transformer -> sink.

Run it: ``python examples/pipeline.py``. Shared API (runs on
dask.distributed with the import changed).

Each stage is an actor that calls the next one. Backpressure comes from
replies: the transformer answers only once the sink has taken the item, and
the producer keeps at most ``window`` items unanswered. A slow sink therefore
slows the producer down instead of letting items pile up in memory.

The stages use ``async def`` methods, so a stage awaiting the next one does
not hold its worker's actor thread (see examples/async_waiter.py).
"""

import asyncio
import time

from localactors import Client


class Sink:
    def __init__(self, delay):
        self.delay = delay  # the slow part of the pipeline
        self.items = []

    def put(self, item):
        time.sleep(self.delay)
        self.items.append(item)
        return len(self.items)

    def summary(self):
        return len(self.items), sum(self.items)


class Transformer:
    def __init__(self, sink):
        self.sink = sink  # an actor handle: calls go straight to the sink's worker

    async def process(self, item):
        result = item * item
        await self.sink.put(result)  # reply only once the sink has it
        return result


class Producer:
    def __init__(self, transformer, window):
        self.transformer = transformer
        self.window = window

    async def run(self, n):
        in_flight = set()
        most = 0
        for i in range(n):
            if len(in_flight) >= self.window:  # backpressure: wait for room
                _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            in_flight.add(asyncio.ensure_future(self.transformer.process(i)))
            most = max(most, len(in_flight))
        await asyncio.wait(in_flight)
        return most


def main():
    with Client(n_workers=2) as client:
        sink = client.submit(Sink, 0.001, actor=True).result()
        transformer = client.submit(Transformer, sink, actor=True).result()
        producer = client.submit(Producer, transformer, 8, actor=True).result()

        most_in_flight = producer.run(200).result()
        count, total = sink.summary().result()
        print("sink received:", count, "items, sum of squares:", total)  # 200, 2646700
        print("most items in flight:", most_in_flight, "(window 8)")


if __name__ == "__main__":
    main()
