"""One adapter per system, so that every workload is written once.

Runs in: a benchmark child process (one system per process, so that no
system's threads, imports or signal handlers disturb another's figures).

Each adapter offers the same verbs: start a cluster of ``n`` workers, put an
actor on a worker, call a method (returning that system's future), wait for
futures, read an attribute, run a task and wait, map a function and wait.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from typing import Any

TIMEOUT = 300.0


class System:
    """The verbs a workload may use; each peer implements them its own way."""

    name = ""
    ping_style = "proxy"  #: how a Pinger calls another actor from inside a worker
    has_attributes = True
    places_actors = True  #: False when every actor gets its own process (Ray)

    def start(self, n_workers: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def actor(self, cls: type, *args: Any, worker: int | None = None) -> Any:
        raise NotImplementedError

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method)(*args)

    def result(self, future: Any) -> Any:
        return future.result(timeout=TIMEOUT)

    def results(self, futures: list[Any]) -> list[Any]:
        return [f.result(timeout=TIMEOUT) for f in futures]

    def attr(self, actor: Any, name: str) -> Any:
        return getattr(actor, name)

    def run(self, fn: Any, *args: Any) -> Any:
        raise NotImplementedError

    def map_wait(self, fn: Any, items: Iterable[Any]) -> None:
        raise NotImplementedError

    def many_actors(self, cls: type, n: int) -> list[Any]:
        raise NotImplementedError

    def worker_pids(self) -> list[int]:
        return []


class _SharedApiSystem(System):
    """localactors and dask.distributed: the same client verbs serve both."""

    client: Any
    cluster: Any
    workers: list[str]

    def close(self) -> None:
        self.client.close()
        self.cluster.close()

    def actor(self, cls: type, *args: Any, worker: int | None = None) -> Any:
        where: dict[str, Any] = {} if worker is None else {"workers": [self.workers[worker % len(self.workers)]]}
        return self.client.submit(cls, *args, actor=True, **where).result(timeout=TIMEOUT)

    def run(self, fn: Any, *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False).result(timeout=TIMEOUT)


class LocalActorsSystem(_SharedApiSystem):
    name = "localactors"

    def start(self, n_workers: int) -> None:
        import localactors

        self.cluster = localactors.LocalCluster(n_workers=n_workers)
        self.client = localactors.Client(self.cluster)
        self.workers = [w.name for w in self.cluster.workers]

    def map_wait(self, fn: Any, items: Iterable[Any]) -> None:
        from localactors import wait

        futures = self.client.map(fn, list(items))
        wait(futures, timeout=TIMEOUT)

    def many_actors(self, cls: type, n: int) -> list[Any]:
        from localactors import wait

        futures = self.client.map(cls, range(n), actor=True)
        wait(futures, timeout=TIMEOUT)
        return futures

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.cluster.workers]


class DaskSystem(_SharedApiSystem):
    name = "dask"

    def start(self, n_workers: int) -> None:
        self.dd: Any = importlib.import_module("distributed")  # untyped: keep it Any
        self.cluster = self.dd.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        self.client = self.dd.Client(self.cluster)
        self.workers = list(self.client.scheduler_info()["workers"])

    def map_wait(self, fn: Any, items: Iterable[Any]) -> None:
        futures = self.client.map(fn, list(items))
        self.dd.wait(futures, timeout=TIMEOUT)

    def many_actors(self, cls: type, n: int) -> list[Any]:
        futures = self.client.map(cls, range(n), actor=True)
        self.dd.wait(futures, timeout=TIMEOUT)
        return list(futures)

    def worker_pids(self) -> list[int]:
        return list(self.client.run(os.getpid).values())


class RaySystem(System):
    name = "ray"
    ping_style = "ray"
    has_attributes = False  # Ray actors expose methods only
    places_actors = False

    def start(self, n_workers: int) -> None:
        import cloudpickle
        import ray

        from . import workloads

        # Ray's workers do not share our sys.path: ship the workload classes by value
        cloudpickle.register_pickle_by_value(workloads)
        ray.init(
            num_cpus=n_workers,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
        self.ray = ray
        self._remote: dict[Any, Any] = {}

    def close(self) -> None:
        self.ray.shutdown()

    def _remote_of(self, obj: Any, **options: Any) -> Any:
        if obj not in self._remote:
            self._remote[obj] = self.ray.remote(obj).options(**options) if options else self.ray.remote(obj)
        return self._remote[obj]

    def actor(self, cls: type, *args: Any, worker: int | None = None) -> Any:
        handle = self._remote_of(cls, num_cpus=0).remote(*args)
        return handle

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        return getattr(actor, method).remote(*args)

    def result(self, future: Any) -> Any:
        return self.ray.get(future, timeout=TIMEOUT)

    def results(self, futures: list[Any]) -> list[Any]:
        return list(self.ray.get(futures, timeout=TIMEOUT))

    def attr(self, actor: Any, name: str) -> Any:
        raise NotImplementedError("Ray actors have no attribute access")

    def run(self, fn: Any, *args: Any) -> Any:
        return self.ray.get(self._remote_of(fn).remote(*args), timeout=TIMEOUT)

    def map_wait(self, fn: Any, items: Iterable[Any]) -> None:
        remote = self._remote_of(fn)
        self.ray.get([remote.remote(x) for x in items], timeout=TIMEOUT)


SYSTEMS: dict[str, type[System]] = {
    "localactors": LocalActorsSystem,
    "dask": DaskSystem,
    "ray": RaySystem,
}


def installed(name: str) -> bool:
    """Whether the peer's package can be imported here."""
    import importlib.util

    module = {"localactors": "localactors", "dask": "distributed", "ray": "ray"}[name]
    return importlib.util.find_spec(module) is not None
