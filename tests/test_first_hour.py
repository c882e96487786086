"""The first hour of a real user (issue 10), reproduced with real processes.

Each test runs a child script from tests/scripts/ (or a real terminal under
tmux) the way a user would, with ``TMPDIR`` pointed at a directory of the
test's own so that what the script leaves in the temp directory is seen, and
only that.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "scripts"
TIMEOUT = 60


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONUNBUFFERED")}
    env["PYTHONPATH"] = str(ROOT)  # this tree, not whatever copy is installed
    env["TMPDIR"] = str(tmp)
    return env


def _tmp(tmp_path: Path) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return tmp


def _run(script: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        env=_env(tmp),
        cwd=str(tmp),
        timeout=TIMEOUT,
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _field(out: str, name: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(name + " ")]


# --------------------------------------------------------- 1. forgetting close()


@pytest.mark.parametrize("mode", ["client", "cluster", "raise"])
def test_a_script_that_never_closes_exits_promptly_and_leaves_nothing(tmp_path: Path, mode: str) -> None:
    tmp = _tmp(tmp_path)
    proc = _run("forget_close.py", tmp, mode)
    finished = time.time()
    assert "result 1" in proc.stdout, proc.stderr
    exit_time = finished - float(_field(proc.stdout, "end")[0])
    assert exit_time < 5.0, f"took {exit_time:.1f} s to exit after its last line"
    if mode == "raise":
        assert proc.returncode == 1
        assert proc.stderr.rstrip().endswith("ValueError: the user's own bug"), proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
    pids = [int(p) for p in _field(proc.stdout, "manager") + _field(proc.stdout, "worker")]
    assert len(pids) == 3
    wait_until(lambda: all(_gone(p) for p in pids), 5.0, "the cluster's processes are gone")
    assert not os.path.exists(_field(proc.stdout, "dir")[0])
    assert os.listdir(tmp) == []


# --------------------------------------------------------- 2. Ctrl-C


def test_ctrl_c_interrupts_the_wait_only(tmp_path: Path) -> None:
    """SIGINT to the script's whole process group, as a terminal sends it, during a long result()."""
    tmp = _tmp(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "interrupt.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp),
        cwd=str(tmp),
        start_new_session=True,  # its own process group: ours must not get the signal
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # each line as the script prints it (it flushes)
            lines.append(line.rstrip("\n"))
            if line.startswith("waiting"):
                os.killpg(proc.pid, signal.SIGINT)
        proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(TIMEOUT)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert lines == ["before 1", "waiting", "interrupted", "after 2", "long True", "workers 2", "closed"], stderr
    assert proc.returncode == 0
    assert "KeyboardInterrupt" not in stderr  # no manager or worker died of it
    assert os.listdir(tmp) == []


def test_ctrl_c_storm_never_breaks_the_client(tmp_path: Path) -> None:
    """Hundreds of SIGINTs while the main thread reads and dispatches replies: each is a KeyboardInterrupt
    in the caller, and the client goes on working (no message half read, no link closed)."""
    proc = _run("interrupt_storm.py", _tmp(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "ok"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux): no terminal")
def test_ctrl_c_in_a_real_terminal(tmp_path: Path) -> None:
    """A real pseudo-terminal: tmux types Ctrl-C while the script waits; the terminal signals its foreground
    process group (the script, and the manager and workers unless they have a group of their own)."""
    tmp = _tmp(tmp_path)
    session = f"localactors-test-{os.getpid()}"
    env = " ".join(f"{k}={v}" for k, v in (("PYTHONPATH", ROOT), ("TMPDIR", tmp)))
    command = f"env {env} {sys.executable} {SCRIPTS / 'interrupt.py'}; echo EXIT=$?"
    tmux = ["tmux", "-L", session]  # a server of our own: no user's tmux is touched

    def screen() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-J", "-S", "-100", "-t", session],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        ).stdout

    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command], check=True, timeout=TIMEOUT
    )
    try:
        subprocess.run([*tmux, "set-option", "-t", session, "remain-on-exit", "on"], timeout=TIMEOUT)
        wait_until(lambda: "waiting" in screen(), TIMEOUT, "the script is blocked in result()", interval=0.05)
        subprocess.run([*tmux, "send-keys", "-t", session, "C-c"], check=True, timeout=TIMEOUT)
        wait_until(lambda: "EXIT=" in screen(), TIMEOUT, "the script ended", interval=0.05)
        text = screen()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=TIMEOUT)
    for expected in ("interrupted", "after 2", "long True", "workers 2", "closed", "EXIT=0"):
        assert expected in text, text
    assert "KeyboardInterrupt" not in text
    assert os.listdir(tmp) == []


# --------------------------------------------------------- 5. the main guard


def test_a_script_without_the_main_guard_gets_one_clear_line(tmp_path: Path) -> None:
    tmp = _tmp(tmp_path)
    proc = _run("no_guard.py", tmp)
    assert proc.returncode == 1
    last = proc.stderr.rstrip().splitlines()[-1]
    assert 'no_guard.py:11: start the cluster under `if __name__ == "__main__":`' in last, proc.stderr
    assert "start_method=" in last
    assert len(proc.stderr.splitlines()) < 10  # the user's line and ours, nothing of our internals
    assert "AssertionError" not in proc.stderr and "ClusterBrokenError" not in proc.stderr
    assert os.listdir(tmp) == []  # nothing started, no private directory made


# --------------------------------------------------------- 7. the user's process SIGKILLed


def test_a_sigkilled_script_leaves_no_process_and_no_key(tmp_path: Path) -> None:
    tmp = _tmp(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "sigkilled.py")],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(tmp),
        cwd=str(tmp),
    )
    out = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.startswith("ready"):
                break
        directory = _field("".join(out), "dir")[0]
        assert os.path.exists(os.path.join(directory, "cluster.json"))
        proc.kill()
        proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
    pids = [int(p) for p in _field("".join(out), "manager") + _field("".join(out), "worker")]
    assert len(pids) == 3
    wait_until(lambda: all(_gone(p) for p in pids), 10.0, "the manager and workers left")
    wait_until(lambda: not os.path.exists(directory), 5.0, "the private directory (with the key) is removed")
    assert os.listdir(tmp) == []


# --------------------------------------------------------- 4. a real notebook kernel


def test_a_notebook_in_a_real_kernel(tmp_path: Path) -> None:
    """tests/notebooks/first_hour.ipynb in a real ipykernel: an actor class defined in a cell, a sync client,
    a worker's print, progress (blocking, drawn as a display), the HTML reprs, an interrupt (the kernel's
    SIGINT to its process group) during a long result() after which the next cell's call works, and an async
    client whose progress is awaited."""
    nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")
    pytest.importorskip("ipykernel", reason="the test extra installs ipykernel")
    import threading

    tmp = _tmp(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(str(ROOT / "tests" / "notebooks" / "first_hour.ipynb"), as_version=4)
    runner = nbclient.NotebookClient(
        nb, timeout=TIMEOUT, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(work)}}
    )
    env = {**_env(tmp), "WORKDIR": str(work)}
    started = work / "started"
    interrupter_done = threading.Event()

    def interrupt_once_started() -> None:
        try:
            wait_until(started.exists, TIMEOUT, "the long cell started")
            done = runner.km.interrupt_kernel()  # what Jupyter's "Interrupt kernel" does
            if inspect.isawaitable(done):  # nbclient's kernel manager is the asynchronous one
                asyncio.run(done)
        finally:
            interrupter_done.set()

    with runner.setup_kernel(env=env):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if "started" in cell.source:
                threading.Thread(target=interrupt_once_started, daemon=True).start()
                runner.execute_cell(cell, index)
                assert interrupter_done.wait(TIMEOUT)
            else:
                runner.execute_cell(cell, index)

    def text(cell: object) -> str:
        parts: list[str] = []
        stream = None  # the stream the last part came from, if it came from one
        for out in cell.outputs:  # type: ignore[attr-defined]
            if out.output_type == "stream":
                if out.name == stream:
                    parts[-1] += out.text  # one print the kernel sent in pieces (it does, under load)
                else:
                    parts.append(out.text)
                stream = out.name
                continue
            stream = None
            for kind in ("text/plain", "text/html"):
                parts.append(out.get("data", {}).get(kind, ""))
            if out.output_type == "error":
                parts.append(f"{out.ename}: {out.evalue}")
        return "\n".join(parts)

    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [text(c) for c in code]
    everything = "\n".join(outputs)
    assert "first 1" in outputs[2], outputs[2]
    assert "hello from a worker" in everything  # the worker's print, forwarded into the notebook
    progress_cell = code[4]
    assert any(o.output_type == "display_data" for o in progress_cell.outputs), progress_cell.outputs
    assert "square" in outputs[4] and "100%" in outputs[4] and "20/20" in outputs[4]
    assert "progress returned, all done: True 2470" in outputs[4]
    assert "Client" in outputs[5] and "<table>" in outputs[5] and "actors:</strong> 1" in outputs[5]
    assert "Actor: Counter" in outputs[6]
    assert "KeyboardInterrupt" in outputs[7], outputs[7]
    assert "after 2" in outputs[8] and "long True" in outputs[8], outputs[8]
    assert "async [1, 2, 3, 4, 5]" in outputs[9], outputs[9]
    assert "closed" in outputs[10]
    assert "Traceback" not in everything.replace(outputs[7], "")  # only the interrupted cell has one
    assert os.listdir(tmp) == []


# --------------------------------------------------------- 7. small things


def test_forward_output_false_prefixes_logging_lines_too(tmp_path: Path) -> None:
    proc = _run("quiet_worker.py", _tmp(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "printed by the actor" in proc.stdout  # the worker's own fd 1, line-buffered in a plain env
    line = next(line for line in proc.stderr.splitlines() if "logged by the actor" in line)
    assert re.match(r"\(worker-0 pid=\d+\) WARNING user\.actor: logged by the actor$", line), line


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localactors", *args], capture_output=True, text=True, env=_env(tmp), timeout=TIMEOUT
    )


def test_version_and_help_speak_to_users(tmp_path: Path) -> None:
    tmp = _tmp(tmp_path)
    version = _cli(tmp, "--version")
    assert version.returncode == 0 and re.match(r"localactors \d+\.\d+\.\d+ \(Python 3\.\d+", version.stdout)
    helped = _cli(tmp, "--help")
    assert helped.returncode == 0
    for text in ("localactors demo", "localactors top", "--list", "Stateful actors and tasks on one machine"):
        assert text in helped.stdout
    top_help = _cli(tmp, "top", "--help").stdout
    assert "--pid" in top_help and "q" in top_help and "--list" in top_help
    nothing = _cli(tmp, "top", "--once")
    assert nothing.returncode == 1 and "no running localactors cluster of yours" in nothing.stderr


def test_console_command_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.scripts]\nlocalactors = "localactors.__main__:main"' in text


def test_tox_fails_on_a_missing_interpreter() -> None:
    text = (ROOT / "tox.ini").read_text()
    assert re.search(r"^skip_missing_interpreters = false$", text, re.M)
    assert "py310" in text and "py313" in text


def _start(script: str, tmp: Path) -> tuple[subprocess.Popen[str], dict[str, list[str]]]:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / script)], stdout=subprocess.PIPE, text=True, env=_env(tmp), cwd=str(tmp)
    )
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.startswith("ready"):
            break
    text = "".join(out)
    return proc, {name: _field(text, name) for name in ("dir", "manager", "worker")}


def test_top_lists_clusters_and_chooses_by_pid(tmp_path: Path) -> None:
    """Two programs each running a cluster: top does not guess, --list shows both, --pid picks one."""
    tmp = _tmp(tmp_path)
    first, first_fields = _start("sigkilled.py", tmp)
    second, _ = _start("sigkilled.py", tmp)
    try:
        listed = _cli(tmp, "top", "--list")
        assert listed.returncode == 0
        assert str(first.pid) in listed.stdout and str(second.pid) in listed.stdout
        ambiguous = _cli(tmp, "top", "--once")
        assert ambiguous.returncode == 1 and "choose one with --pid" in ambiguous.stderr
        chosen = _cli(tmp, "top", "--once", "--pid", str(first.pid))
        assert chosen.returncode == 0, chosen.stderr
        assert chosen.stdout.startswith(f"localactors top - {first_fields['dir'][0]} (started by pid {first.pid})")
        wrong = _cli(tmp, "top", "--once", "--pid", "1")
        assert wrong.returncode == 1 and "no running cluster was started by pid 1" in wrong.stderr
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait(TIMEOUT)
    wait_until(lambda: os.listdir(tmp) == [], 10.0, "both clusters cleaned up after their programs died")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux): no terminal")
def test_top_in_a_terminal_quits_on_q(tmp_path: Path) -> None:
    tmp = _tmp(tmp_path)
    proc, _ = _start("sigkilled.py", tmp)
    session = f"localactors-top-{os.getpid()}"
    tmux = ["tmux", "-L", session]
    command = f"env PYTHONPATH={ROOT} TMPDIR={tmp} {sys.executable} -m localactors top --interval 0.2; echo EXIT=$?"

    def screen() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True, timeout=TIMEOUT
        ).stdout

    try:
        subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command], timeout=TIMEOUT)
        subprocess.run([*tmux, "set-option", "-t", session, "remain-on-exit", "on"], timeout=TIMEOUT)
        wait_until(lambda: "WORKER" in screen(), TIMEOUT, "top drew its screen", interval=0.05)
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True, timeout=TIMEOUT)
        wait_until(lambda: "EXIT=0" in screen(), TIMEOUT, "q quit top", interval=0.05)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=TIMEOUT)
        proc.kill()
        proc.wait(TIMEOUT)
    wait_until(lambda: os.listdir(tmp) == [], 10.0, "the cluster cleaned up after its program died")


def test_the_guard_check_spares_runners_whose_main_children_do_not_rerun(tmp_path: Path) -> None:
    """`python -m unittest` runs its own unguarded __main__; spawn's children skip it, and so does the check."""
    tmp = _tmp(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "test_unit.py").write_text(
        "import unittest\n"
        "from localactors import Client\n\n"
        "class T(unittest.TestCase):\n"
        "    def test_sum(self):\n"
        "        with Client(n_workers=1) as client:\n"
        "            self.assertEqual(client.submit(sum, [1, 2]).result(timeout=30), 3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "unittest", "test_unit"],
        capture_output=True,
        text=True,
        env=_env(tmp),
        cwd=str(work),
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp) == []


# --------------------------------------------------------- 7. remote tracebacks of __main__ code


def test_remote_tracebacks_of_main_and_notebook_code_show_their_source_lines(tmp_path: Path) -> None:
    done = _run("remote_traceback.py", _tmp(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "<dynamic-code>" not in out
    script = str(SCRIPTS / "remote_traceback.py")
    # the script's own file and lines, for an actor method and a task
    assert f'File "{script}", line 15, in withdraw' in out
    assert 'raise ValueError(f"cannot withdraw {amount} from {balance}")' in out
    assert f'File "{script}", line 19, in boom' in out
    assert 'raise RuntimeError(f"boom {x}")' in out
    # a notebook cell's lines travel with its code: the worker has no file to read
    assert 'File "<notebook-cell-7>", line 2, in from_a_cell' in out
    assert "raise KeyError(f'cell says {x}')" in out
