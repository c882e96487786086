"""The teaching material holds together: links resolve, the API reference builds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "docs/tutorial.md", "docs/testing.md", "docs/differences-from-dask.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page: str) -> None:
    path = ROOT / page
    targets = [m.group(1) for m in LINK.finditer(path.read_text())]
    local = [t for t in targets if "://" not in t]
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{page} links to missing files: {missing}"


def test_tutorial_links_the_deeper_docs_and_every_example() -> None:
    text = (ROOT / "docs/tutorial.md").read_text()
    for doc in ("semantics.md", "failures.md", "performance.md", "testing.md", "differences-from-dask.md"):
        assert f"]({doc}" in text, doc
    for example in sorted((ROOT / "examples").glob("*.py")):
        assert f"examples/{example.name}" in text, example.name


def test_readme_links_tutorial_and_examples_and_keeps_the_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "](docs/tutorial.md)" in text and "](examples/)" in text
    assert "pip install . && python -m localactors demo" in text
    assert "pip install -e '.[test]' && pytest" in text


def test_api_reference_builds_offline(tmp_path: Path) -> None:
    pytest.importorskip("pdoc")
    out = tmp_path / "api"
    result = subprocess.run(
        [sys.executable, "-m", "pdoc", "-o", str(out), "localactors", "localactors.testing"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    main = (out / "localactors.html").read_text()
    for name in ("LocalCluster", "Client", "actor_stats", "progress", "ActorFuture", "processes"):
        assert name in main, name
    assert "localactors_async_client" in (out / "localactors" / "testing.html").read_text()
