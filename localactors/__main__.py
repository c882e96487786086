"""``python -m localactors demo|top``: the command-line entry point.

Runs in: the user's process.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localactors", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="walk through the Counter actor and some tasks on a default LocalCluster")
    top = sub.add_parser("top", help="a live view of a running cluster: workers, actors, calls, latency, queues")
    top.add_argument("--dir", help="the cluster's directory (default: $LOCALACTORS_CLUSTER, else the newest cluster)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between screens (default 1)")
    top.add_argument("--once", action="store_true", help="print one screen and exit")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._tools.demo import main as demo

        demo()
    elif args.command == "top":
        from ._tools.top import run

        return run(args.dir, args.interval, args.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
