"""Finding a running cluster to attach to: the private ``cluster.json``.

Runs in: the user's process (writing it when a cluster starts) and
``python -m localactors top`` (reading it).

Attaching needs the manager's socket and the cluster's authkey. A cluster
writes both to ``cluster.json`` in its private directory: the directory is
0700 and the file 0600, so only the user who started the cluster (who could
read the key out of the process's memory anyway) can attach. The reader
refuses a directory or file that is a symlink, belongs to someone else, or is
open to group or others.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass

CLUSTER_FILE = "cluster.json"
ENV_VAR = "LOCALACTORS_CLUSTER"


def write_cluster_file(directory: str, address: str, authkey: bytes) -> str:
    """Record how to attach to this cluster, readable by this user only."""
    path = os.path.join(directory, CLUSTER_FILE)
    record = {"address": address, "authkey": authkey.hex(), "pid": os.getpid(), "started": time.time()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    return path


@dataclass(frozen=True)
class ClusterRecord:
    directory: str
    address: str
    authkey: bytes
    pid: int
    started: float


def _check_private(path: str, is_dir: bool) -> None:
    st = os.lstat(path)
    kind_ok = stat.S_ISDIR(st.st_mode) if is_dir else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        raise PermissionError(f"{path} is not a plain {'directory' if is_dir else 'file'} (a symlink?)")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user")
    if st.st_mode & 0o077:
        raise PermissionError(f"{path} is open to group or others (mode {stat.S_IMODE(st.st_mode):o})")


def read_cluster_file(directory: str) -> ClusterRecord:
    """The record a cluster wrote in ``directory``, after checking it is private."""
    directory = os.path.abspath(directory)
    path = os.path.join(directory, CLUSTER_FILE)
    _check_private(directory, is_dir=True)
    _check_private(path, is_dir=False)
    with open(path) as f:
        data = json.load(f)
    return ClusterRecord(directory, data["address"], bytes.fromhex(data["authkey"]), data["pid"], data["started"])


def find_clusters(root: str | None = None) -> list[ClusterRecord]:
    """This user's running clusters under ``root`` (the temp dir), newest first."""
    import psutil

    root = root or tempfile.gettempdir()
    found = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        if not name.startswith("localactors-"):
            continue
        try:
            record = read_cluster_file(os.path.join(root, name))
        except (OSError, ValueError, KeyError):
            continue  # not a cluster directory, not ours, or half written
        if psutil.pid_exists(record.pid) and os.path.exists(record.address):
            found.append(record)
    return sorted(found, key=lambda r: r.started, reverse=True)


def locate(directory: str | None = None) -> ClusterRecord:
    """The cluster to attach to: ``directory``, else ``$LOCALACTORS_CLUSTER``, else the newest found.

    Raises ``LookupError`` when there is none.
    """
    directory = directory or os.environ.get(ENV_VAR) or None
    if directory:
        return read_cluster_file(directory)
    found = find_clusters()
    if not found:
        raise LookupError(f"no running localactors cluster of yours found in {tempfile.gettempdir()}")
    return found[0]
