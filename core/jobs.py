"""Long jobs (training, benchmarks) on a background thread, one at a time per process.

The Streamlit server imports this module once, so every browser session sees the same
runner: a job survives page switches and reloads, and a second job is refused with a
message naming the one that runs.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from core.progress import Cancelled, CancelToken, Event


class JobBusy(RuntimeError):
    """Another job is running; the message says which, and `.job` is that job."""

    def __init__(self, job: "Job") -> None:
        super().__init__(f"a {job.kind} job is already running ({job.title}, started {job.elapsed:.0f} s ago); "
                         "wait for it to finish or cancel it")
        self.job = job


@dataclass
class Job:
    kind: str
    title: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    status: str = "running"  # running | done | failed | cancelled
    started: float = field(default_factory=time.time)
    finished: float | None = None
    latest: dict[str, Event] = field(default_factory=dict)  # the last event of each stage
    last: Event | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # partial results, e.g. epochs or benchmark cells
    result: Any = None
    error: str | None = None
    cancel_token: CancelToken = field(default_factory=CancelToken)

    def progress(self, event: Event) -> None:
        self.latest[event.stage] = event
        self.last = event

    def add_row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def cancel(self) -> None:
        self.cancel_token.cancel()

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started


class JobRunner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: Job | None = None

    def start(self, kind: str, title: str, work: Callable[[Job], Any]) -> Job:
        with self._lock:
            if self.current is not None and self.current.running:
                raise JobBusy(self.current)
            job = Job(kind, title)
            self.current = job
        threading.Thread(target=self._run, args=(job, work), name=f"job-{kind}-{job.id}", daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, work: Callable[[Job], Any]) -> None:
        try:
            job.result = work(job)
            job.status = "done"
        except Cancelled:
            job.status = "cancelled"
        except Exception as exc:  # the job's owner sees the message; the server keeps running
            job.error = f"{type(exc).__name__}: {exc}"
            job.status = "failed"
            traceback.print_exc()
        finally:
            job.finished = time.time()

    def wait(self, timeout: float | None = None) -> Job | None:
        """Block until the current job ends (for tests and scripts)."""
        deadline = None if timeout is None else time.time() + timeout
        while self.current is not None and self.current.running:
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"{self.current.title} still running after {timeout} s")
            time.sleep(0.1)
        return self.current


RUNNER = JobRunner()
