"""Every example runs as ``python examples/NAME.py`` and prints what it promises.

The checks live here, keyed by example, so that tests/test_dask_compat.py can
run the same examples on dask.distributed and hold them to the same output
(minus what only localactors guarantees: ``strict``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
TIMEOUT = 60  # generous for a loaded CI machine; each example takes 1-2 s here


def check_counter(out: str, strict: bool) -> None:
    assert re.search(r"^<Actor: Counter, key=Counter-\S+>$", out, re.M)
    assert "increment() -> 1\n" in out
    assert "add(10) -> 11\n" in out
    assert "counter.n -> 11\n" in out
    assert "after 100 more increments -> 111\n" in out


def check_async_waiter(out: str, strict: bool) -> None:
    assert out.splitlines() == [
        "waiting: 3",
        "any released yet? False",
        "results: ['released', 'released', 'released']",
        "waiting: 0",
    ]


def check_bank(out: str, strict: bool) -> None:
    if strict:  # per-caller order is localactors' guarantee, not Dask's
        assert "sent together -> accepted\n" in out
    assert "transfers done: 200 money moved: True\n" in out
    before, after = map(int, re.search(r"total before: (\d+) after: (\d+)", out).groups())  # type: ignore[union-attr]
    assert before == after == 200
    balances = re.search(r"balances: (\{.*\})", out).group(1)  # type: ignore[union-attr]
    assert all(int(v) >= 0 for v in re.findall(r": (-?\d+)", balances))


def check_parameter_server(out: str, strict: bool) -> None:
    assert "updates applied: 800\n" in out
    w, b = map(float, re.search(r"learned: y = (\S+)x \+ (\S+)", out).groups())  # type: ignore[union-attr]
    assert abs(w - 3) < 0.05 and abs(b - 2) < 0.05


def check_pipeline(out: str, strict: bool) -> None:
    assert "sink received: 200 items, sum of squares: 2646700\n" in out
    most = int(re.search(r"most items in flight: (\d+) \(window 8\)", out).group(1))  # type: ignore[union-attr]
    assert 1 <= most <= 8  # backpressure: never more than the window


def check_monte_carlo(out: str, strict: bool) -> None:
    estimates = [float(x) for x in re.findall(r"pi ~ (\d\.\d+)", out)]
    assert len(estimates) == 5  # four running estimates, then the final one
    assert "from 400000 darts\n" in out
    assert abs(estimates[-1] - 3.1433) < 1e-4  # seeded: the same darts every run
    # and the example's own comment says so
    assert "3.1433 from 400000 darts" in (EXAMPLES_DIR / "monte_carlo.py").read_text()


#: example name -> check of its output; all of them are written to the shared API
EXAMPLES: dict[str, Callable[[str, bool], None]] = {
    "counter": check_counter,
    "async_waiter": check_async_waiter,
    "bank": check_bank,
    "parameter_server": check_parameter_server,
    "pipeline": check_pipeline,
    "monte_carlo": check_monte_carlo,
}


def run_example(path: Path) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, env=env
    )
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_example_is_tested() -> None:
    assert {p.stem for p in EXAMPLES_DIR.glob("*.py")} == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example(name: str) -> None:
    out = run_example(EXAMPLES_DIR / f"{name}.py")
    EXAMPLES[name](out, True)
