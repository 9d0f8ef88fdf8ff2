import threading

import pytest

from core.jobs import JobBusy, JobRunner
from core.progress import Event


def test_a_job_reports_progress_and_result():
    runner = JobRunner()
    job = runner.start("demo", "adds", lambda j: (j.progress(Event("step", 1, 2, "half")), 42)[1])
    assert runner.wait(10).status == "done" and job.result == 42
    assert job.latest["step"].fraction == 0.5


def test_second_job_is_refused_while_one_runs():
    runner = JobRunner()
    release = threading.Event()
    runner.start("training", "first", lambda j: release.wait(10))
    with pytest.raises(JobBusy, match="a training job is already running \\(first"):
        runner.start("benchmark", "second", lambda j: None)
    release.set()
    runner.wait(10)
    assert runner.start("benchmark", "third", lambda j: "ok") is not None


def test_cancel_and_failure_are_reported():
    runner = JobRunner()

    def loop(job):
        while True:
            job.cancel_token.check()

    job = runner.start("demo", "loop", loop)
    job.cancel()
    assert runner.wait(10).status == "cancelled"

    job = runner.start("demo", "boom", lambda j: 1 / 0)
    runner.wait(10)
    assert job.status == "failed" and job.error == "ZeroDivisionError: division by zero"
