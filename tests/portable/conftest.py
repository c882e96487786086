"""The portable API tests: one test body, run on localactors and on dask.distributed.

See engines.py: a test asks for ``eng`` (the engine's names), ``cluster`` and
``client`` (a module-wide 2-worker LocalCluster of that engine and a Client
on it). ``LOCALACTORS_ENGINES=dask`` (or ``localactors``) picks the engines;
``-k dask`` / ``-k localactors`` select by parameter id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .engines import Engine, _dask, _localactors, chosen_engines, dask_required


@pytest.fixture(scope="module", params=chosen_engines())
def eng(request: pytest.FixtureRequest) -> Engine:
    if request.param == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            if dask_required():
                pytest.fail("LOCALACTORS_ENGINES asks for dask, but dask.distributed is not installed")
            pytest.skip("dask.distributed not installed")
        return _dask()
    return _localactors()


@pytest.fixture(scope="module")
def cluster(eng: Engine) -> Iterator[Any]:
    """One small cluster of the engine, shared by the tests of a module."""
    with eng.make_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def client(eng: Engine, cluster: Any) -> Iterator[Any]:
    with eng.Client(cluster) as c:
        yield c


@pytest.fixture
def gate(tmp_path: Any) -> Iterator[str]:
    """A path a ``gated`` task waits for; opened after the test whatever happened,
    so a failing test never leaves a worker busy."""
    path = str(tmp_path / "gate")
    yield path
    with open(path, "w"):
        pass
