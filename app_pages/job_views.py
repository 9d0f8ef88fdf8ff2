"""A page's view of the server's one job: whether this browser started it, its progress and cancel
button, a refusal while another runs, and its failure in words."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from app_pages.session import current_workspace
from core.app.jobs import RUNNER, Job, JobBusy
from core.errors import UserError

def my_job(kind: str) -> Job | None:
    """The server's current job if this browser started it and it is of `kind`."""
    job = RUNNER.current
    if job is None or job.kind != kind or job.owner != current_workspace().key:
        return None
    return job


def watched_job(kind: str) -> Job | None:
    """For a page's live fragment: this session's job of `kind` (None if it has none), after any
    refusal to start one and a word on another session's job; the page reruns when it ends."""
    show_refusal(kind)
    show_busy_elsewhere()
    job = my_job(kind)
    if job is not None:
        rerun_when_finished(job)
    return job


def show_busy_elsewhere() -> None:
    job = RUNNER.current
    if job is not None and job.running and job.owner != current_workspace().key:
        st.info(f"The server is running another {job.kind} job ({job.elapsed:.0f} s so far); "
                "a new job can start when it has finished.", icon=":material/hourglass_top:")


def _refusal_key(kind: str) -> str:
    return f"refusal-{kind}"


@contextmanager


def starting_job(kind: str) -> Iterator[None]:
    """Wrap the code that validates settings and starts a `kind` job. A refusal (another job
    runs, or a bad setting) is kept in session state and drawn by `show_refusal` inside the
    page's live fragment, not written once by this run: under load the fragment's next
    auto-rerun can clear elements of the full run that just ended (a Streamlit frontend race),
    which left a click on a busy server with no answer at all."""
    key = _refusal_key(kind)
    st.session_state.pop(key, None)
    try:
        yield
    except JobBusy as exc:
        st.session_state[key] = ("warning", f"Not started: {exc}.", exc.job.id)
    except UserError as exc:  # a bad setting, dataset, model or URL; anything else is a bug and shows as one
        st.session_state[key] = ("error", f"Not started: {exc}", None)


def show_refusal(kind: str) -> None:
    """The last refusal of a `kind` job; a "busy" one only while the blocking job runs."""
    notice = st.session_state.get(_refusal_key(kind))
    if notice is None:
        return
    level, text, blocker = notice
    job = RUNNER.current
    if blocker is not None and not (job is not None and job.id == blocker and job.running):
        del st.session_state[_refusal_key(kind)]
        return
    getattr(st, level)(text)


def rerun_when_finished(job: Job) -> None:
    """Called from a live fragment: once a job ends, rerun the whole page so lists outside the
    fragment (saved runs, models, the sidebar selector) show what it produced."""
    key = f"finished-{job.id}"
    if not job.running and not st.session_state.get(key):
        st.session_state[key] = True
        st.rerun(scope="app")


def show_progress(job: Job, stage: str, cancel_label: str) -> None:
    """A running job's progress bar (its newest `stage` event) and its cancel button."""
    ev = job.by_stage.get(stage) or job.last_event
    st.progress(ev.fraction or 0.0 if ev else 0.0, text=ev.message if ev else "starting")
    if st.button(cancel_label):
        job.cancel()


def show_job_failure(job: Job, what: str) -> None:
    """The end of a failed or cancelled job, in the same words on every page."""
    if job.status == "failed":
        st.error(f"{what} failed: {job.error}")
    elif job.status == "cancelled":
        st.info(f"{what} was cancelled; nothing was saved.")
