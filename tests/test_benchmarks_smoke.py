"""The benchmark runs end to end: ``benchmarks/run.py --quick`` (never its timings).

CI runs this at tiny counts to keep the benchmark working; the figures
themselves are for ``python benchmarks/run.py`` on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import run, suite  # noqa: E402

#: every workload the localactors child must report
WORKLOADS = [
    "pipe",
    "pipe_threaded",
    "pipe_one_at_a_time",
    "pipe_pipelined",
    "call",
    "async_call",
    "attribute",
    "worker_to_worker",
    "pipelined",
    "task",
    "noop_tasks",
    "noop_tasks_main",
    "big_argument",
    "big_result",
    "numpy_argument",
    "numpy_result",
    "memcpy",
    "pycalls_pipe",
    "pycalls_call",
    "start",
    "worker_rss",
    "worker_uss",
    "scale_threads_1",
    "scale_threads_4",
    "scale_workers_1",
    "create_actors",
    "call_many_alive",
    "worker_rss_many",
    "import",
]


def test_quick_run_measures_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--peers", "none", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for title in ("## Latency", "## Throughput and size", "## Side by side", "## Scaling", "## Targets"):
        assert title in proc.stdout
    results = json.loads(out.read_text())
    assert list(results) == ["localactors"]
    la = results["localactors"]
    missing = [k for k in WORKLOADS if k not in la]
    assert not missing, f"not measured: {missing}"
    assert la["call"]["kind"] == "latency" and la["call"]["n"] == suite.QUICK.latency
    assert la["call"]["min"] <= la["call"]["p50"] <= la["call"]["p99"]
    assert la["pipelined"]["kind"] == "rate" and la["pipelined"]["median"] > 0
    assert la["worker_rss"]["value"] > 0


def _latency(p50: float) -> dict[str, Any]:
    return {"kind": "latency", "min": p50 / 2, "p50": p50, "p99": p50 * 3, "n": 10}


def _rate(median: float) -> dict[str, Any]:
    return {"kind": "rate", "median": median, "best": median, "n": 100, "unit": "/s"}


def test_tables_show_peers_and_ratios() -> None:
    la = {
        "pipe": _latency(20e-6),
        "pipe_one_at_a_time": _rate(40_000),
        "pipe_pipelined": _rate(45_000),
        "call": _latency(60e-6),
        "pipelined": _rate(50_000),
        "noop_tasks": _rate(35_000),
        "noop_tasks_main": _rate(34_000),
        "pycalls_pipe": {"kind": "value", "value": 31.0, "unit": "calls"},
        "pycalls_call": {"kind": "value", "value": 40.0, "unit": "calls"},
        "memcpy": {"kind": "rate", "median": 1.1, "best": 1.2, "n": 100 << 20, "unit": "GB/s"},
        "start": _latency(0.25),
        "worker_rss": {"kind": "value", "value": 25.0, "unit": "MB"},
        "big_argument": {"kind": "rate", "median": 1.2, "best": 1.3, "n": 100 << 20, "unit": "GB/s"},
    }
    peer = {"call": _latency(600e-6), "pipelined": _rate(5_000)}
    text = run.render({"localactors": la, "ray": peer}, quick=False)
    side = text.split("## Side by side")[1].split("##")[0]
    assert "ray/localactors" in side and "localactors/pipe" in side
    call_row = next(line for line in side.splitlines() if line.startswith("sync call p50"))
    assert "3.00x" in call_row  # localactors / pipe
    assert "10.00x" in call_row  # ray / localactors
    targets = text.split("## Targets")[1]
    assert "NOT met" not in targets
    assert targets.count(" met") >= 6
