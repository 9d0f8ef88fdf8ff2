"""The job runner: work in a child process, progress and rows streamed back, one job at a time."""

import os
import signal
import time

import psutil
import pytest

from core.app.jobs import JobBusy, JobRunner
from tests import job_targets



def child_pid(job) -> int:
    """The pid the `wait_for` target reports once it runs in its child process."""
    deadline = time.time() + 60
    while "wait" not in job.by_stage:
        assert time.time() < deadline, "the job never started"
        time.sleep(0.05)
    return int(job.by_stage["wait"].message.rsplit(" ", 1)[1])


def test_a_job_reports_progress_rows_and_result_from_its_own_process():
    runner = JobRunner()
    job = runner.start("demo", "counts", job_targets.count, {"n": 4}, owner="a" * 32)
    assert runner.wait(60).status == "done", job.error
    assert job.result == 6 and [r["i"] for r in job.rows] == [0, 1, 2, 3]
    assert job.by_stage["step"].fraction == 1.0 and job.peak_rss_mb >= 0


def test_second_job_is_refused_while_one_runs_and_names_no_data(tmp_path):
    runner = JobRunner()
    release = tmp_path / "release"
    runner.start("training", "training secret-name", job_targets.wait_for, {"path": str(release)})
    with pytest.raises(JobBusy, match="busy with another training job") as refused:
        runner.start("benchmark", "second", job_targets.count, {"n": 1})
    assert "secret-name" not in str(refused.value)
    release.touch()
    assert runner.wait(60).result == "released"
    assert runner.start("benchmark", "third", job_targets.count, {"n": 1}) is not None
    runner.wait(60)


def test_cancel_kills_the_child_and_on_end_runs(tmp_path):
    runner = JobRunner()
    ended = []
    job = runner.start("demo", "waits", job_targets.wait_for, {"path": str(tmp_path / "never")},
                       on_end=lambda: ended.append(True))
    pid = child_pid(job)
    assert pid != os.getpid()
    job.cancel()
    assert runner.wait(30).status == "cancelled" and ended == [True]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_time_limit_stops_the_job_with_a_message(tmp_path):
    runner = JobRunner()
    job = runner.start("benchmark", "slow", job_targets.wait_for, {"path": str(tmp_path / "never")},
                       time_limit_s=1)
    assert runner.wait(30).status == "failed"
    assert "1 s time limit" in job.error


def test_user_errors_bugs_and_kills_are_told_apart(tmp_path):
    runner = JobRunner()
    job = runner.start("demo", "mistake", job_targets.user_mistake, {})
    runner.wait(60)
    assert job.status == "failed" and job.error == "every class needs at least 2 images"

    job = runner.start("demo", "bug", job_targets.bug, {})
    runner.wait(60)
    assert job.status == "failed" and job.error.startswith("internal error (exit code 3)")

    # What the OOM killer does: SIGKILL from outside.
    job = runner.start("demo", "killed", job_targets.wait_for, {"path": str(tmp_path / "never")})
    os.kill(child_pid(job), signal.SIGKILL)
    runner.wait(30)
    assert job.status == "failed" and "killed by SIGKILL" in job.error and "out of memory" in job.error


def test_a_job_does_not_outlive_its_server(tmp_path):
    """A server killed mid-job (SIGKILL, OOM, a redeploy) takes its job's process group with it."""
    import subprocess
    import sys

    from conftest import ROOT

    server = subprocess.run([sys.executable, "-c", f"""
import os, time
from core.app.jobs import JobRunner
from tests import job_targets
from tests.test_jobs import child_pid
job = JobRunner().start("demo", "orphan?", job_targets.wait_for, {{"path": {str(tmp_path / "never")!r}}})
print(child_pid(job), flush=True)
os._exit(0)  # the 'server' dies without any clean-up
"""], cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ | {"PYTHONPATH": str(ROOT)})
    pid = int(server.stdout.split()[-1])
    deadline = time.time() + 15
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.time() < deadline, "the job's process outlived its server"
        time.sleep(0.2)
