"""The teaching material holds together: links resolve, the API reference builds."""

from __future__ import annotations

import os
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


# ----------------------------------------------------------------- every code block runs as written

#: the pages whose ```python blocks must run as written (README and all of docs/)
CODE_PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>[^>]*?)\s*-->\s*$")
CONTINUES = re.compile(r"<!--\s*continues block (?P<n>\d+)\s*-->\s*$")


def code_blocks(page: str) -> list[tuple[str, int, str, str | None, int]]:
    """``(page, line, code, reason not run or None, n)`` per ```python block: it continues the page's
    ``n``-th block (1-based; 0: it stands alone)."""
    text = (ROOT / page).read_text()
    found = []
    for m in FENCE.finditer(text):
        if m.group("lang").strip() != "python":
            continue
        before = text[: m.start()].rstrip().splitlines()[-1:] or [""]
        skip = NOT_RUN.search(before[0])
        body = "\n".join(line[len(m.group("indent")) :] for line in m.group("body").splitlines())
        line = text[: m.start()].count("\n") + 1
        continues = CONTINUES.search(before[0])
        reason = skip.group("reason") if skip else None
        found.append((page, line, body, reason, int(continues["n"]) if continues else 0))
    return found


ALL_BLOCKS = [b for page in CODE_PAGES for b in code_blocks(page)]


def test_every_python_block_either_runs_or_says_why_not() -> None:
    assert len(ALL_BLOCKS) >= 15
    for page, line, _, reason, _ in ALL_BLOCKS:
        assert reason is None or len(reason) > 10, f"{page}:{line}: say why the block is not run"


def _script(index: int) -> str:
    """The block's code, after the code of the block it continues (``<!-- continues block N -->``)."""
    page, _, code, _, continues = ALL_BLOCKS[index]
    if continues:
        first = next(i for i, b in enumerate(ALL_BLOCKS) if b[0] == page)
        assert first + continues - 1 < index, "a block continues an earlier block of its page"
        return _script(first + continues - 1) + "\n\n" + code
    return code


@pytest.mark.parametrize(
    "index",
    [i for i, b in enumerate(ALL_BLOCKS) if b[3] is None],
    ids=lambda i: f"{ALL_BLOCKS[i][0]}:{ALL_BLOCKS[i][1]}",
)
def test_python_block_runs_as_written(index: int, tmp_path: Path) -> None:
    """Each block runs as a fresh script (a block with tests runs under pytest), in a plain environment."""
    page, line, *_ = ALL_BLOCKS[index]
    code = _script(index)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "PYTHONPATH": str(ROOT)}
    if re.search(r"^(async )?def test_", code, re.M):
        path = tmp_path / "test_block.py"
        path.write_text(code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    else:
        path = tmp_path / "block.py"
        path.write_text(code)
        command = [sys.executable, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, f"{page}:{line} does not run as written:\n{result.stdout}\n{result.stderr}"
