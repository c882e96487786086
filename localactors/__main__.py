"""``localactors`` (or ``python -m localactors``): the demo, and a live view of your clusters.

Runs in: the user's process.
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Stateful actors and tasks on one machine, with the dask.distributed API.

  localactors demo          start a cluster on this machine and walk through an actor and some tasks
  localactors top           watch a running cluster: workers, actors, calls per second, latency, queues
  localactors top --list    list the clusters you are running (one per program that started one)

A cluster lives as long as the program that started it (LocalCluster or Client() in your code);
top attaches to it from another terminal.
"""


def _version() -> str:
    from . import __version__

    return f"localactors {__version__} (Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="localactors", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "demo",
        help="start a cluster and walk through an actor and some tasks",
        description="Start a LocalCluster on this machine, create a Counter actor, call it, run some tasks, "
        "and close it all. Takes a few seconds; prints what it does.",
    )
    top = sub.add_parser(
        "top",
        help="watch a running cluster (q to quit)",
        description="Watch a running cluster, refreshed every --interval seconds: one row per worker "
        "(CPU, memory, results held, actors) and one per actor (calls, calls/s, errors, latency, queue). "
        "Press q (or Ctrl-C) to quit. With several clusters running, choose one with --pid; --list shows them.",
    )
    top.add_argument("--list", action="store_true", help="list your running clusters and exit")
    top.add_argument("--pid", type=int, help="the cluster started by the program with this process id")
    top.add_argument("--dir", help="the cluster whose private directory this is (default: $LOCALACTORS_CLUSTER)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    top.add_argument("--once", action="store_true", help="print one screen and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._tools.demo import main as demo

        demo()
    elif args.command == "top":
        from ._tools.top import list_clusters, run

        if args.list:
            return list_clusters()
        return run(args.dir, args.interval, args.once, pid=args.pid)
    else:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
