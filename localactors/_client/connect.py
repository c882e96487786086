"""Connecting a ``Client``: to the cluster it is given, to a new one it owns, or to a manager's address.

Runs in: the user's process (and in workers, under their ``get_client()``).

``Client()`` starts a :class:`LocalCluster` of its own (its keyword
arguments go there) and closes it with itself; ``Client(cluster)`` starts the
cluster if it was made asynchronous and not started yet; ``Client(address,
authkey=...)`` connects to a manager's socket. Either way the client's
:class:`ClientCore` then opens its link to the manager.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .cluster import LocalCluster
from .core import ClientCore


class Connection(NamedTuple):
    """What a client is connected to, and through what."""

    cluster: LocalCluster | None  #: ``None``: connected by address
    owns_cluster: bool  #: the client started it, and closes it
    core: ClientCore


def connect(
    client: object,
    address: LocalCluster | str | None,
    authkey: bytes | None,
    name: str,
    direct: bool,
    max_in_flight: int,
    cluster_kwargs: dict[str, Any],
) -> Connection:
    """Connect ``client`` (the facade its core points back to) as the module docstring says."""
    cluster = address if isinstance(address, LocalCluster) else None
    owns = address is None
    if address is None:
        cluster = address = LocalCluster(**cluster_kwargs)
    if isinstance(address, LocalCluster):
        if address.status == "created":
            address._start()
        authkey, manager = address.authkey, address.manager_address
    else:
        if authkey is None:
            raise ValueError("Client(address) needs authkey=")
        manager = address
    core = ClientCore(client, manager, authkey, name, direct)
    core.max_in_flight = max_in_flight
    return Connection(cluster, owns, core)
