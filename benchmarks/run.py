"""Benchmark localactors beside a raw pipe, dask.distributed and Ray.

Runs in: the user's shell, as ``python benchmarks/run.py [--quick]``.

Each system is measured in a child process of its own (``--child NAME``),
one after the other, and this process prints the tables: latencies with
min / median / p99, throughputs, the same workloads side by side with the
ratios localactors / pipe and peer / localactors, how localactors scales,
and the performance targets, met or not. Peers are measured when installed
(``pip install -e '.[bench]'``). The full run takes about a minute and a half
on 2 cores; ``--quick`` takes a few seconds and is what CI runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PEERS = ("dask", "ray")
CHILD_TIMEOUT = 300

Results = dict[str, dict[str, Any]]

#: (result key, label) in the order the tables show them
LATENCIES = [
    ("pipe", "pipe echo round trip"),
    ("pipe_threaded", "pipe echo, threaded (reader threads + queue + Event)"),
    ("call", "sync method round trip"),
    ("async_call", "async method round trip"),
    ("attribute", "attribute read"),
    ("worker_to_worker", "worker-to-worker actor call"),
    ("task", "task submit to result"),
    ("call_many_alive", "sync call, 10,000 actors alive"),
    ("start", "cluster start to first call (2 workers)"),
    ("close", "cluster close"),
]
RATES = [
    ("pipe_one_at_a_time", "pipe echo, one at a time"),
    ("pipe_pipelined", "pipe echo, pipelined"),
    ("pipelined", "pipelined actor calls"),
    ("noop_tasks", "no-op tasks (map, then wait)"),
    ("noop_tasks_main", "no-op tasks, function defined in __main__"),
    ("big_argument", "100 MB bytes argument to an actor"),
    ("big_result", "100 MB bytes result from an actor"),
    ("numpy_argument", "100 MB NumPy argument to an actor"),
    ("numpy_result", "100 MB NumPy result from an actor"),
    ("memcpy", "100 MB copy into a fresh buffer"),
]
BIG = ("big_argument", "big_result", "numpy_argument", "numpy_result", "memcpy")
PIPE_KEYS = {"pipe", "pipe_threaded", "pipe_one_at_a_time", "pipe_pipelined"}
SIDE_BY_SIDE = [
    ("call", "sync call p50 (us)"),
    ("async_call", "async call p50 (us)"),
    ("attribute", "attribute read p50 (us)"),
    ("worker_to_worker", "worker-to-worker p50 (us)"),
    ("task", "task round trip p50 (us)"),
    ("pipelined", "pipelined calls/s"),
    ("noop_tasks", "no-op tasks/s"),
    ("noop_tasks_main", "no-op tasks/s, __main__ function"),
    ("big_argument", "100 MB bytes argument GB/s"),
    ("big_result", "100 MB bytes result GB/s"),
    ("numpy_argument", "100 MB NumPy argument GB/s"),
    ("numpy_result", "100 MB NumPy result GB/s"),
    ("start", "start to first call (s)"),
    ("worker_rss", "worker RSS (MB)"),
]


def noop_in_main(x: int) -> None:
    """A no-op task defined in ``__main__`` (the child runs this file): pickled by value."""
    return None


def child(name: str, quick: bool, out_path: str) -> None:
    """Measure one system and write its results to ``out_path``."""
    from benchmarks import suite, systems

    def log(step: str) -> None:
        print(f"  {name}: {step}", file=sys.stderr, flush=True)

    counts = suite.QUICK if quick else suite.FULL
    t0 = time.perf_counter()
    import_started = time.perf_counter()
    __import__({"localactors": "localactors", "dask": "distributed", "ray": "ray"}[name])
    imported = time.perf_counter() - import_started
    results = suite.measure(systems.SYSTEMS[name], counts, log, main_fn=noop_in_main)
    results["import"] = suite.value(imported, "s")
    results["elapsed"] = suite.value(time.perf_counter() - t0, "s")
    with open(out_path, "w") as f:
        json.dump(results, f)


def run_child(name: str, quick: bool) -> Results | None:
    fd, path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".json")
    os.close(fd)
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--out", path]
    if quick:
        cmd.append("--quick")
    try:
        proc = subprocess.run(cmd, env=env, timeout=CHILD_TIMEOUT, stdout=subprocess.DEVNULL)
        if proc.returncode != 0:
            print(f"{name}: benchmark child failed with exit code {proc.returncode}", file=sys.stderr)
            return None
        with open(path) as f:
            return dict(json.load(f))
    except subprocess.TimeoutExpired:
        print(f"{name}: benchmark child did not finish in {CHILD_TIMEOUT} s", file=sys.stderr)
        return None
    finally:
        os.unlink(path)


# ---------------------------------------------------------------- tables


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([f"\n## {title}", fmt(header), line, *(fmt(r) for r in rows)])


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def headline(entry: dict[str, Any] | None) -> float | None:
    """The one number a workload is compared by: p50, median rate, or value."""
    if entry is None:
        return None
    kind = entry["kind"]
    if kind == "latency":
        return float(entry["p50"])
    if kind == "rate":
        return float(entry["median"])
    return float(entry["value"])


def is_time(key: str) -> bool:
    return key in ("start", "close", "create_actors")


def render(all_results: dict[str, Results], quick: bool) -> str:
    parts = []
    systems = list(all_results)
    rows = []
    for system, res in all_results.items():
        for key, label in LATENCIES:
            e = res.get(key)
            if e is None:
                continue
            shown = "pipe" if key in PIPE_KEYS else system
            if is_time(key):
                rows.append(
                    [label, shown, num(e["min"]) + " s", num(e["p50"]) + " s", num(e["p99"]) + " s", str(e["n"])]
                )
            else:
                rows.append([label, shown, us(e["min"]), us(e["p50"]), us(e["p99"]), str(e["n"])])
    parts.append(table("Latency (microseconds unless marked)", ["workload", "system", "min", "p50", "p99", "n"], rows))

    rows = []
    for system, res in all_results.items():
        for key, label in RATES:
            e = res.get(key)
            if e is None:
                continue
            shown = "pipe" if key in PIPE_KEYS else system
            label = label.replace("100 MB", f"{e['n'] // (1 << 20)} MB") if key in BIG else label
            rows.append([label, shown, num(e["median"]), num(e["best"]), e["unit"], f"{e['n']:,}"])
        for key, label in (("worker_rss", "worker RSS after start"), ("worker_uss", "worker USS after start")):
            if key in res:
                rows.append([label, system, num(res[key]["value"]), "", "MB", ""])
        for key, label in (
            ("pycalls_pipe", "Python calls per pipe echo"),
            ("pycalls_call", "Python calls per sync call"),
        ):
            if key in res:
                shown = "pipe" if key == "pycalls_pipe" else system
                rows.append([label + " (calling thread, cProfile)", shown, num(res[key]["value"]), "", "calls", ""])
        for key, label in (
            ("syscalls_pipe", "system calls per pipe echo (busier side)"),
            ("syscalls_call_client", "system calls per sync call, client"),
            ("syscalls_call_worker", "system calls per sync call, worker"),
        ):
            if key in res:
                shown = "pipe" if key == "syscalls_pipe" else system
                rows.append([label + " (kernel count)", shown, num(res[key]["value"]), "", "calls", ""])
        if "import" in res:
            rows.append(["import time", system, num(res["import"]["value"]), "", "s", ""])
    parts.append(table("Throughput and size", ["workload", "system", "median", "best", "unit", "n"], rows))

    la = all_results.get("localactors", {})
    peers = [s for s in systems if s != "localactors"]
    header = ["workload", "pipe", "localactors", *peers, "localactors/pipe", *(f"{p}/localactors" for p in peers)]
    rows = []
    pipe_for = {"call": "pipe", "pipelined": "pipe_pipelined"}
    for key, label in SIDE_BY_SIDE:
        mine = headline(la.get(key))
        scale = 1e6 if la.get(key, {}).get("kind") == "latency" and not is_time(key) else 1.0
        pipe = headline(la.get(pipe_for[key])) if key in pipe_for else None
        cells = [label, num(pipe * scale) if pipe else "", num(mine * scale) if mine is not None else "n/a"]
        theirs = [headline(all_results[p].get(key)) for p in peers]
        cells += [num(t * scale) if t is not None else "n/a" for t in theirs]
        cells.append(f"{mine / pipe:.2f}x" if mine and pipe else "")
        cells += [f"{t / mine:.2f}x" if t and mine else "" for t in theirs]
        rows.append(cells)
    parts.append(table("Side by side (latency p50, rate median)", header, rows))

    if la:
        rows = []
        for key in sorted(k for k in la if k.startswith("scale_workers_")):
            rows.append(
                [f"pipelined calls/s, {key.rsplit('_', 1)[1]} workers (one actor each)", num(la[key]["median"])]
            )
        for key in sorted((k for k in la if k.startswith("scale_threads_")), key=lambda k: int(k.rsplit("_", 1)[1])):
            rows.append([f"pipelined calls/s, {key.rsplit('_', 1)[1]} calling threads", num(la[key]["median"])])
        if "create_actors" in la:
            n = la.get("call_many_alive", {}).get("n", 0)
            rows.append(["create actors (map, then wait)", num(la["create_actors"]["value"]) + " s"])
            rows.append(
                ["sync call p50 / p99 with those actors alive (us)", f"{us(la['call_many_alive']['p50'])} / "
                 f"{us(la['call_many_alive']['p99'])} (n={n})"]
            )  # fmt: skip
            rows.append(["largest worker RSS with those actors alive", num(la["worker_rss_many"]["value"]) + " MB"])
        parts.append(table("Scaling (localactors)", ["measure", "value"], rows))
        parts.append(targets(la, quick))
    return "\n".join(parts)


def targets(la: Results, quick: bool) -> str:
    """Each target of the performance issue beside its baseline from this same run, met or not."""
    rows = []

    def add(name: str, goal: str, shown: str | None, ok: bool | None, baseline: str = "") -> None:
        verdict = "n/a" if ok is None or shown is None else ("met" if ok else "NOT met")
        rows.append([name, goal, shown if shown is not None else "n/a", baseline, verdict])

    copy = headline(la.get("memcpy"))
    for key, what in (
        ("big_argument", "100 MB bytes argument"),
        ("big_result", "100 MB bytes result"),
        ("numpy_argument", "100 MB NumPy argument"),
        ("numpy_result", "100 MB NumPy result"),
    ):
        got = headline(la.get(key))
        if got is not None and copy:
            add(what, ">= 1x one copy", f"{got:.2f} GB/s ({got / copy:.2f}x)", got >= copy, f"copy {copy:.2f} GB/s")
    piped, pipe_piped = headline(la.get("pipelined")), headline(la.get("pipe_pipelined"))
    if piped and pipe_piped:
        add(
            "pipelined calls",
            ">= 1x pipelined pipe echo",
            f"{num(piped)}/s ({piped / pipe_piped:.2f}x)",
            piped >= pipe_piped,
            f"pipe {num(pipe_piped)}/s",
        )
    mine, theirs = headline(la.get("pycalls_call")), headline(la.get("pycalls_pipe"))
    if mine and theirs:
        add(
            "Python calls per sync call (calling thread)",
            "<= 1.5x pipe echo",
            f"{mine:.0f} ({mine / theirs:.2f}x)",
            mine <= 1.5 * theirs,
            f"pipe {theirs:.0f}",
        )
    client, worker, echo = (
        headline(la.get(k)) for k in ("syscalls_call_client", "syscalls_call_worker", "syscalls_pipe")
    )
    if client is not None and worker is not None and echo is not None:
        add(
            "system calls per sync call, each side",
            "<= 3",
            f"client {client:.2f}, worker {worker:.2f}",
            max(client, worker) <= 3.05,  # (a background wake-up now and then is not the call's)
            f"pipe {echo:.2f}",
        )
    else:
        add("system calls per sync call, each side", "<= 3", None, None)
    call, pipe = headline(la.get("call")), headline(la.get("pipe"))
    if call and pipe:
        r = call / pipe
        shown = f"{call * 1e6:.0f} us ({r:.2f}x" + (", stretch met)" if r <= 2 else ")")
        add("sync call p50", "<= 3x pipe echo (stretch 2x)", shown, r <= 3, f"pipe {pipe * 1e6:.0f} us")
    tasks, main_tasks = headline(la.get("noop_tasks")), headline(la.get("noop_tasks_main"))
    add("no-op tasks/s", ">= 30,000", None if tasks is None else num(tasks), None if tasks is None else tasks >= 30_000)
    if main_tasks is not None:
        add(
            "no-op tasks/s, __main__ function",
            ">= 30,000",
            num(main_tasks) + (f" ({main_tasks / tasks:.2f}x importable)" if tasks else ""),
            main_tasks >= 30_000,
        )
    start = headline(la.get("start"))
    if start is not None:
        add("start to first call, 2 workers", "<= 0.5 s (stretch 0.3 s)", f"{start:.3f} s", start <= 0.5)
    rss = headline(la.get("worker_rss"))
    add("idle worker RSS", "<= 30 MB", None if rss is None else f"{num(rss)} MB", None if rss is None else rss <= 30)
    if quick:
        rows = [[*r[:-1], "n/a"] for r in rows]
    title = "Targets" + (" (quick run: counts too small to judge)" if quick else "")
    return table(title, ["target", "goal", "measured", "baseline (same run)", "verdict"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny counts, no peers unless named: a smoke run")
    parser.add_argument(
        "--peers",
        default=None,
        help="comma-separated peers to measure (dask,ray), 'none', or 'auto' (installed ones; the default)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.quick, args.out)
        return 0

    from benchmarks.systems import installed

    peers_arg = args.peers or ("none" if args.quick else "auto")
    if peers_arg == "auto":
        peers = [p for p in PEERS if installed(p)]
        missing = [p for p in PEERS if p not in peers]
    elif peers_arg == "none":
        peers, missing = [], []
    else:
        wanted = [p.strip() for p in peers_arg.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in PEERS]
        if unknown:
            parser.error(f"unknown peer(s): {', '.join(unknown)}")
        peers = [p for p in wanted if installed(p)]
        missing = [p for p in wanted if p not in peers]

    started = time.perf_counter()
    load = os.getloadavg()
    print(
        f"# localactors benchmarks{' (quick)' if args.quick else ''}: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} at start"
    )
    if missing:
        print(f"# not installed, skipped: {', '.join(missing)} (pip install -e '.[bench]')")
    all_results: dict[str, Results] = {}
    failed = []
    for name in ["localactors", *peers]:
        print(f"# measuring {name} ...", file=sys.stderr, flush=True)
        res = run_child(name, args.quick)
        if res is None:
            failed.append(name)
        else:
            all_results[name] = res
    print(render(all_results, args.quick))
    spent = ", ".join(f"{name} {res['elapsed']['value']:.0f} s" for name, res in all_results.items())
    print(
        f"\n# took {time.perf_counter() - started:.1f} s ({spent}); load average {os.getloadavg()[0]:.2f} "
        "at the end (other work on these CPUs makes every figure noisier: compare the ratios)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_results, f, indent=1)
    if "localactors" in failed:
        return 1
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
