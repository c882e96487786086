"""A bank of account actors: why the order of calls matters.

Run it: ``python examples/bank.py``. Shared API, with one guarantee that is
localactors' own (marked below).

1. Calls from one caller to one actor run in the order they were sent, even
   when the caller does not wait in between. So "deposit 50, then withdraw 50"
   can be sent in one go and the withdrawal always finds the money.
   localactors guarantees this order; dask.distributed does not promise it (a
   later call may overtake an earlier one there), so on Dask wait for the
   deposit before you withdraw.
2. An actor runs one call at a time. Money moved by many concurrent
   transfers is never lost or created: each ``withdraw`` checks and updates
   the balance in one step, inside the actor. (Reading the balance, deciding
   here, and writing it back with a second call would race.)
"""

import random

from localactors import Client


class Account:
    # declared on the class, so that ``account.balance`` reads work on Dask too
    # (Dask's proxy only knows class attributes; localactors also sees those set in __init__)
    owner = ""
    balance = 0

    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount):
        self.balance += amount
        return self.balance

    def withdraw(self, amount):
        """Take ``amount`` out if it is there; say whether it was."""
        if amount > self.balance:
            return False
        self.balance -= amount
        return True


def transfer(src, dst, amount):
    """A task: move money between two accounts (actor handles arrive as proxies)."""
    if not src.withdraw(amount).result():
        return 0  # refused: not enough money; nothing moved
    dst.deposit(amount).result()
    return amount


def main():
    with Client(n_workers=2) as client:
        names = ["alice", "bob", "carol"]
        accounts = [client.submit(Account, name, 100, actor=True).result() for name in names]
        bob = accounts[1]

        # 1. ordering (localactors-only guarantee): send both, wait once
        bob.deposit(50)
        accepted = bob.withdraw(150)  # only possible after the deposit of 50
        print("bob: deposit 50 then withdraw 150, sent together ->", "accepted" if accepted.result() else "refused")

        # 2. 200 transfers running at once, in tasks on both workers
        before = sum(acc.balance for acc in accounts)
        rng = random.Random(42)
        pairs = [rng.sample(range(3), 2) for _ in range(200)]
        moved = client.map(
            transfer,
            [accounts[a] for a, _ in pairs],
            [accounts[b] for _, b in pairs],
            [rng.randint(1, 60) for _ in pairs],
            pure=False,
        )
        total_moved = sum(client.gather(moved))
        balances = {acc.owner: acc.balance for acc in accounts}
        print("transfers done:", len(moved), "money moved:", total_moved > 0)
        print("balances:", balances)
        print("total before:", before, "after:", sum(balances.values()))  # the same: nothing lost, nothing made


if __name__ == "__main__":
    main()
