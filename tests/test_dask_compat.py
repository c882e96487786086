"""The road to many machines: the examples run on dask.distributed unchanged.

Skipped when dask.distributed is not installed (``tox -e dask`` and ``.ci/dask``
install it); an error instead when ``LOCALACTORS_ENGINES`` names dask, so CI
never skips it silently.
Each example is copied with one change -- ``from localactors import`` becomes
``from dask.distributed import`` -- and held to the same output checks as in
tests/test_examples.py, except for what only localactors guarantees.
Every difference found on the way is in docs/differences-from-dask.md.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from test_examples import EXAMPLES, EXAMPLES_DIR, run_example

if "dask" in os.environ.get("LOCALACTORS_ENGINES", ""):
    import distributed  # asked for by name: an ImportError fails the run
else:
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")

IMPORT = "from localactors import"


def imported_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "localactors":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import) and any(a.name.startswith("localactors") for a in node.names):
            raise AssertionError("examples import names from localactors, never the module itself")
    return names


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_uses_only_the_shared_api(name: str) -> None:
    source = (EXAMPLES_DIR / f"{name}.py").read_text()
    assert source.count(IMPORT) == 1, "one import line to change, and only one"
    missing = [n for n in imported_names(source) if not hasattr(distributed, n)]
    assert not missing, f"{name} imports {missing}, which dask.distributed lacks"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_on_dask(name: str, tmp_path: Path) -> None:
    source = (EXAMPLES_DIR / f"{name}.py").read_text()
    ported = tmp_path / f"{name}.py"
    ported.write_text(source.replace(IMPORT, "from dask.distributed import"))
    out = run_example(ported)
    EXAMPLES[name](out, False)
