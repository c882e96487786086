"""forward_output=False: a worker's print and logging reach the terminal directly, each line prefixed."""

import logging

from localactors import Client, LocalCluster


class Talker:
    def talk(self):
        print("printed by the actor", flush=True)
        logging.getLogger("user.actor").warning("logged by the actor")
        return True


if __name__ == "__main__":
    with LocalCluster(n_workers=1, forward_output=False) as cluster, Client(cluster) as client:
        talker = client.submit(Talker, actor=True).result(timeout=30)
        assert talker.talk().result(timeout=30)
