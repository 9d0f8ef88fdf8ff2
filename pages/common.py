"""UI helpers shared by the pages: the model selector and cached, warmed-up models."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st

from core import registry
from core.backends import OVSettings
from core.jobs import RUNNER, JobBusy
from core.predict import Predictor

MODEL_KEY = "model_name"


def use_app_navigation() -> None:
    """Called first by every page. Because the layout has a `pages/` folder, Streamlit runs a deep
    link (e.g. /predict) straight from that folder, skipping streamlit_app.py and its
    st.navigation, until some session has run the entry script. Switch to the app's own
    navigation once per process and rerun the same URL through it."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def models() -> list[registry.ModelEntry]:
    return registry.list_models()


def model_selector() -> registry.ModelEntry | None:
    """The sidebar model picker; its choice is kept in session state across pages."""
    entries = models()
    if not entries:
        st.sidebar.error("No model found in `models/`. Train one on the Train page or with `python -m core train`.")
        return None
    names = [e.name for e in entries]
    if st.session_state.get(MODEL_KEY) not in names:
        st.session_state[MODEL_KEY] = names[0]
    # A copy of the value under a non-widget key survives page switches (widget state does not).
    choice = st.sidebar.selectbox("Model", names, index=names.index(st.session_state[MODEL_KEY]),
                                  help="The shipped model, plus any you trained.")
    st.session_state[MODEL_KEY] = choice
    return entries[names.index(choice)]


def active_model() -> registry.ModelEntry | None:
    entries = {e.name: e for e in models()}
    return entries.get(st.session_state.get(MODEL_KEY)) or next(iter(entries.values()), None)


def _stamp(model_dir: Path) -> float:
    """Changes when a model is re-converted, so the cache reloads it."""
    return (model_dir / registry.METADATA_FILE).stat().st_mtime


@st.cache_resource(max_entries=8, show_spinner="Loading and compiling the model (once per server)...")
def _predictor(model_dir: str, variants: tuple[str, ...], settings: OVSettings, stamp: float) -> Predictor:
    return Predictor(Path(model_dir), list(variants), settings)


def predictor(entry: registry.ModelEntry, variants: list[str], settings: OVSettings) -> Predictor:
    return _predictor(str(entry.path), tuple(variants), settings, _stamp(entry.path))


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
    except ValueError as exc:  # DatasetError, ModelError and bad numbers are ValueErrors
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


def rerun_when_finished(job) -> None:
    """Called from a live fragment: once a job ends, rerun the whole page so lists outside the
    fragment (saved runs, models, the sidebar selector) show what it produced."""
    key = f"finished-{job.id}"
    if not job.running and not st.session_state.get(key):
        st.session_state[key] = True
        st.rerun(scope="app")


def show_job_failure(job, what: str) -> None:
    """The end of a failed or cancelled job, in the same words on every page."""
    if job.status == "failed":
        st.error(f"{what} failed: {job.error}")
    elif job.status == "cancelled":
        st.info(f"{what} was cancelled; nothing was saved.")
