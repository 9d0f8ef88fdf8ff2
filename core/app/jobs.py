"""Long jobs (training, conversion, benchmark sweeps) in a child process, one at a time per server.

The server keeps one runner: a job survives page switches and reloads, and a second job is
refused. The work itself runs in `python -m core.app.job_worker`, its own process group, so the
server stays responsive (the child is also `nice`d), its memory is returned when it exits,
and cancel, a time limit or the OOM killer end the whole tree without touching the server.
The child reports progress, result rows and the result as JSON lines on stdout.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

from core import children
from core.progress import Event

JOB_NICENESS = 5  # interactive requests of the server go first; an idle server lends the job every core


class JobBusy(RuntimeError):
    """Another job is running; `.job` is that job. The message names no visitor's data."""

    def __init__(self, job: "Job") -> None:
        super().__init__(f"the server is busy with another {job.kind} job (started {job.elapsed:.0f} s ago); "
                         "try again when it has finished")
        self.job = job


@dataclass
class Job:
    kind: str
    title: str
    owner: str = ""  # the workspace key of the session that started it
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    status: str = "running"  # running | done | failed | cancelled
    started: float = field(default_factory=time.time)
    finished: float | None = None
    by_stage: dict[str, Event] = field(default_factory=dict)  # the newest event of each stage
    last_event: Event | None = None  # the newest event of any stage
    rows: list[dict[str, Any]] = field(default_factory=list)  # partial results: epochs or benchmark cells
    result: Any = None
    error: str | None = None
    peak_rss_mb: float = 0.0  # the job's whole process tree
    cancel_requested: bool = False

    def progress(self, event: Event) -> None:
        self.by_stage[event.stage] = event
        self.last_event = event

    def add_row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def cancel(self) -> None:
        self.cancel_requested = True

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started


def _tree_rss_mb(proc: psutil.Process) -> float:
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in members:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


class JobRunner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: Job | None = None

    def start(self, kind: str, title: str, target: Callable[..., Any], kwargs: dict[str, Any], owner: str = "",
              time_limit_s: float | None = None, on_end: Callable[[], None] | None = None) -> Job:
        """Run `target(ctx, **kwargs)` in a child process: a module-level function, which the child imports
        by name, with JSON-able keyword arguments. The pages start jobs through `core.app.launch`."""
        with self._lock:
            if self.current is not None and self.current.running:
                raise JobBusy(self.current)
            job = Job(kind, title, owner)
            self.current = job
        request = {"target": f"{target.__module__}:{target.__qualname__}", "kwargs": kwargs, "niceness": JOB_NICENESS}
        threading.Thread(target=self._run, args=(job, request, time_limit_s, on_end), name=f"job-{kind}-{job.id}",
                         daemon=True).start()
        return job

    def _run(self, job: Job, request: dict[str, Any], time_limit_s: float | None, on_end: Callable[[], None] | None) -> None:
        log = tempfile.TemporaryFile(mode="w+")
        stopped_for: str | None = None
        outcome: dict[str, Any] = {}
        status, error = "failed", None
        try:
            # glibc's default of 8 malloc arenas per core lets TensorFlow's many threads hold
            # freed memory apart; two keep the job's resident peak lower under Cloud's limit.
            # numpy's OpenBLAS (an eigh in calibration, NNCF's statistics) once spun for minutes
            # in exec_blas beside TensorFlow's threads on a busy machine; it needs no threads here.
            proc = children.start("core.app.job_worker", request, stderr=log, MALLOC_ARENA_MAX="2",
                                  OPENBLAS_NUM_THREADS="1")

            def watch() -> None:
                nonlocal stopped_for
                ps = psutil.Process(proc.pid)
                while proc.poll() is None:
                    job.peak_rss_mb = max(job.peak_rss_mb, _tree_rss_mb(ps))
                    over_time = time_limit_s is not None and job.elapsed > time_limit_s
                    if job.cancel_requested or over_time:
                        stopped_for = "cancel" if job.cancel_requested else "time"
                        children.kill(proc)  # the child and any worker it started
                        return
                    time.sleep(0.5)  # psutil walks every process of the machine to find the tree: not too often

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            for msg in children.messages(proc):
                self._handle(job, msg, outcome)
            rc = proc.wait()
            watcher.join()
            status, error = self._outcome(rc, outcome, stopped_for, time_limit_s, log)
        except Exception as exc:  # the runner itself failed; the server keeps running
            error = f"the job could not run: {exc}"
        finally:
            log.close()
            if on_end is not None:  # before the job counts as ended, so the next one finds a clean state
                try:
                    on_end()
                except Exception as exc:  # clean-up must never take the server down
                    print(f"job {job.id} clean-up failed: {exc}", file=sys.stderr)
            job.error, job.finished = error, time.time()
            job.status = status

    @staticmethod
    def _handle(job: Job, msg: dict[str, Any], outcome: dict[str, Any]) -> None:
        kind = msg.pop("type")
        if kind == "progress":
            job.progress(Event(**msg))
        elif kind == "row":
            job.add_row(msg["row"])
        elif kind == "result":
            job.result = msg["result"]
            outcome["result"] = True
        elif kind == "error":
            outcome["error"] = msg["message"]

    @staticmethod
    def _outcome(rc: int, outcome: dict[str, Any], stopped_for: str | None, time_limit_s: float | None,
                 log) -> tuple[str, str | None]:
        if stopped_for == "cancel":
            return "cancelled", None
        if stopped_for == "time":
            return "failed", (f"stopped at the {time_limit_s:.0f} s time limit for this role; nothing was saved "
                              "(the owner can run longer jobs)")
        if rc == 0 and outcome.get("result"):
            return "done", None
        if "error" in outcome:
            return "failed", outcome["error"]
        if rc < 0:
            name = signal.Signals(-rc).name
            hint = " — most likely it ran out of memory" if -rc == signal.SIGKILL else ""
            return "failed", f"the job's process was killed by {name}{hint}; nothing was saved"
        log.seek(0)
        lines = [ln for ln in log.read().splitlines() if ln.strip()]
        print("\n".join(lines[-40:]), file=sys.stderr)  # the full story goes to the server log
        return "failed", f"internal error (exit code {rc}); the server log has the details"

    def wait(self, timeout: float | None = None) -> Job | None:
        """Block until the current job ends (for tests and scripts)."""
        deadline = None if timeout is None else time.time() + timeout
        while self.current is not None and self.current.running:
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"{self.current.title} still running after {timeout} s")
            time.sleep(0.1)
        return self.current


RUNNER = JobRunner()

