"""A task and an actor method defined in this script fail on a worker; print their remote tracebacks."""

import linecache
import traceback

from localactors import Client

CELL = "<notebook-cell-7>"
CELL_SOURCE = "def from_a_cell(x):\n    raise KeyError(f'cell says {x}')\n"


class Account:
    def withdraw(self, amount):
        balance = 0
        raise ValueError(f"cannot withdraw {amount} from {balance}")


def boom(x):
    raise RuntimeError(f"boom {x}")


def remote_text(call):
    try:
        call()
    except Exception as err:
        return "".join(traceback.format_exception(err.__cause__))
    raise AssertionError("no error")


if __name__ == "__main__":
    # a function whose source is not on disk, as a notebook cell's is not: IPython keeps it in linecache
    linecache.cache[CELL] = (len(CELL_SOURCE), None, CELL_SOURCE.splitlines(True), CELL)
    namespace = {"__name__": "a_notebook_cell"}
    exec(compile(CELL_SOURCE, CELL, "exec"), namespace)
    with Client(n_workers=1) as client:
        account = client.submit(Account, actor=True).result(timeout=60)
        print(remote_text(lambda: account.withdraw(5).result(timeout=60)))
        print(remote_text(lambda: client.submit(boom, 1).result(timeout=60)))
        print(remote_text(lambda: client.submit(namespace["from_a_cell"], 2).result(timeout=60)))
