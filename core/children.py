"""Child processes, one protocol for all of them: a job, a benchmark worker, the model server.

A child is `python -m <module>`, started with `start`. It may get one JSON request on stdin
(`read_request` on its side) and answers with JSON lines on stdout, each with a `type`
(`emit`); the parent reads them with `messages`. Anything else a child prints is ignored.
A child leads its own process group unless told otherwise, so `stop` (SIGTERM, then SIGKILL)
and `kill` end it with every process it started, and it ends itself when its parent dies
(`read_request` arranges that), so a stopped server leaves no orphans.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Iterator

from core import paths


def env(**extra: str) -> dict[str, str]:
    """The environment of every child: this process's, with the project importable and TensorFlow's
    C++ logging quiet, plus `extra`."""
    return os.environ | {"PYTHONPATH": str(paths.PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"} | extra


def start(module: str, request: dict[str, Any] | None = None, args: tuple[str, ...] = (), python: str | None = None,
          own_group: bool = True, stdout: int | IO | None = subprocess.PIPE, stderr: int | IO | None = subprocess.PIPE,
          **env_extra: str) -> subprocess.Popen:
    """Start `python -m module *args`; write `request` (if any) on its stdin and close it. With
    `own_group` it leads a new process group (a job, the model server); without, it stays in ours
    (a benchmark worker, ended with the job that started it)."""
    proc = subprocess.Popen([python or sys.executable, "-m", module, *args], cwd=paths.PROJECT_ROOT,
                            stdin=subprocess.PIPE if request is not None else subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr, text=True, env=env(**env_extra),
                            start_new_session=own_group)
    if request is not None:
        proc.stdin.write(json.dumps(request))
        proc.stdin.close()
    return proc


def messages(proc: subprocess.Popen) -> Iterator[dict[str, Any]]:
    """The child's JSON lines, as they come, until it closes stdout."""
    for line in proc.stdout:
        if line.startswith("{"):
            yield json.loads(line)


def stop(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM to the child's process group (a server shuts down cleanly), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        kill(proc)
        proc.wait()
    except ProcessLookupError:
        pass


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL to the child's process group: the child and anything it started (cancel, time limit)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- the child's side

def read_request() -> dict[str, Any]:
    """The request on stdin; from now on this process ends when its parent dies (a server stopped
    or killed mid-job), with its process group if it leads one (the workers a job started)."""
    request = json.loads(sys.stdin.read())
    _exit_with_parent(kill_group=os.getpgid(0) == os.getpid())
    return request


def emit(type: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"type": type} | fields, default=str) + "\n")
    sys.stdout.flush()


def _exit_with_parent(kill_group: bool) -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        if kill_group:
            os.killpg(0, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
