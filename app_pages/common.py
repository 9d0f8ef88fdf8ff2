"""UI helpers shared by the pages: who this session is, its private workspace, the model
selector, cached warmed-up models and the job notices."""

from __future__ import annotations

import gc
import hashlib
import sys
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import streamlit as st

from core import paths
from core.app import access, workspace
from core.model import registry
from core.runtimes import availability
from core.app.access import AccessConfig, Role
from core.errors import UserError
from core.app.jobs import RUNNER, Job, JobBusy
from core.runtimes.backends import load_backend
from core.runtimes.predict import ImageResult, Predictor, default_setups
from core.settings import OVSettings
from core.measure.tuned import TUNED_FILE

MODEL_KEY = "model_path"
_OWNER_PASSWORD_KEY = "owner-password-ok"
_WORKSPACE_KEY = "workspace-key"
TF_MISSING_KEY = "tensorflow-missing"  # the notice's container: the browser test finds it by this key


# ---------------------------------------------------------------- who is this session

def _secrets() -> dict:
    """`.streamlit/secrets.toml` as a dict; none at all is the normal, safe default."""
    try:
        return st.secrets.to_dict()
    except Exception:  # Streamlit raises FileNotFoundError or its own error when there is no file
        return {}


def access_config() -> AccessConfig:
    return AccessConfig.from_sources(_secrets(), argv=sys.argv)


def _signed_in_email(cfg: AccessConfig) -> str | None:
    if not cfg.oidc_configured or not st.user.get("is_logged_in", False):
        return None
    return st.user.get("email")


def role() -> Role:
    cfg = access_config()
    return cfg.role_for(_signed_in_email(cfg), bool(st.session_state.get(_OWNER_PASSWORD_KEY)))


def policy() -> access.Policy:
    """What this session may do (core.app.access): pages ask it before offering an action."""
    return access.Policy(role())


def current_workspace() -> workspace.Workspace:
    """This browser's private workspace: keyed by Streamlit's per-browser XSRF cookie, so that a
    reload finds it again and a shared link does not; a random key where there is no cookie."""
    if _WORKSPACE_KEY not in st.session_state:
        cookie = st.context.cookies.get("_streamlit_xsrf")
        st.session_state[_WORKSPACE_KEY] = (workspace.key_from_xsrf_cookie(cookie) if cookie
                                            else workspace.new_key())
    return workspace.Workspace(st.session_state[_WORKSPACE_KEY])


def access_panel() -> None:
    """The sidebar's role badge, what the owner could do more, and the owner's sign-in."""
    cfg = access_config()
    current = role()
    with st.sidebar:
        if current is Role.OWNER:
            how = ("trusted local run" if cfg.owner_everyone else
                   f"signed in as {_signed_in_email(cfg)}" if _signed_in_email(cfg) else "owner password")
            st.success(f"Role: **owner** ({how})", icon=":material/admin_panel_settings:")
            for note in cfg.notes:
                st.warning(note)
            if st.session_state.get(_OWNER_PASSWORD_KEY) and st.button("Sign out"):
                st.session_state.pop(_OWNER_PASSWORD_KEY)
                st.rerun()
            elif _signed_in_email(cfg) and st.button("Sign out"):
                st.logout()
            return
        st.info("Role: **visitor**. Your uploads and models are private to this browser; "
                f"models you train are deleted after {workspace.MAX_AGE_S // 3600} h.", icon=":material/person:")
        with st.expander("Only the owner can"):
            st.markdown("\n".join(f"- {line}" for line in access.OWNER_ONLY))
            if cfg.oidc_configured and cfg.owner_emails:
                if st.button("Owner sign-in"):
                    st.login()
            if cfg.owner_password_sha256:
                given = st.text_input("Owner password", type="password", key="owner-password")
                if given and cfg.password_matches(given):
                    st.session_state[_OWNER_PASSWORD_KEY] = True
                    st.session_state.pop("owner-password")
                    st.rerun()
                elif given:
                    st.error("Wrong password.")
            if not cfg.can_sign_in:
                st.caption("No owner sign-in is configured on this deployment.")


# ---------------------------------------------------------------- what this server lacks

def tensorflow_missing_notice() -> bool:
    """Where TensorFlow is not installed (Cloud's Python 3.14): what is missing, why, and the fix.
    True when it is missing."""
    why = availability.tensorflow_missing()
    if why is not None:
        st.container(key=TF_MISSING_KEY).warning(why, icon=":material/warning:")
    return why is not None


# ---------------------------------------------------------------- models

def models() -> list[registry.ModelEntry]:
    """The shared models, then this browser's own."""
    return registry.list_models() + registry.list_models(current_workspace().models, private=True)


def model_selector() -> registry.ModelEntry | None:
    """The sidebar model picker; its choice is kept in session state across pages."""
    entries = models()
    if not entries:
        st.sidebar.error("No model found in `models/`. Train one on the Train page or with `python -m core train`.")
        return None
    keys = [str(e.path) for e in entries]
    if st.session_state.get(MODEL_KEY) not in keys:
        st.session_state[MODEL_KEY] = keys[0]
    labels = {str(e.path): e.name + (" (yours)" if e.private else "") for e in entries}
    # A copy of the value under a non-widget key survives page switches (widget state does not).
    choice = st.sidebar.selectbox("Model", keys, index=keys.index(st.session_state[MODEL_KEY]),
                                  format_func=labels.get, help="The shared models, plus any you trained.",
                                  key="model-selector")
    st.session_state[MODEL_KEY] = choice
    return entries[keys.index(choice)]


def active_model() -> registry.ModelEntry | None:
    entries = {str(e.path): e for e in models()}
    return entries.get(st.session_state.get(MODEL_KEY)) or next(iter(entries.values()), None)


def page_model() -> registry.ModelEntry:
    """The model a page works on; without any, the page says so and ends."""
    entry = active_model()
    if entry is None:
        st.warning("No model yet: train one on the Train page or with `python -m core train`.")
        st.stop()
    return entry


def _stamp(model_dir: Path) -> float:
    """Changes when a model is re-converted or re-tuned, so the cache reloads it."""
    files = [model_dir / registry.METADATA_FILE, model_dir / TUNED_FILE]
    return max(f.stat().st_mtime for f in files if f.exists())


def _load_predictor(model_dir: str, variants: tuple[str, ...], settings: OVSettings) -> Predictor:
    # Importing TensorFlow makes millions of objects, and the collector's passes meanwhile scanned
    # the whole heap again and again: paused during the load, it took 0.6 s less (2.0 → 1.4 s).
    gc.disable()
    try:
        predictor = Predictor(Path(model_dir), list(variants), settings, background=True)
    finally:
        gc.enable()
    # (TensorFlow's own objects are made in the Predictor's loading thread after this returns: it
    # freezes them itself once they are loaded.)
    # Streamlit runs a full garbage collection after every script run (twice once Keras is
    # imported: its clear_session collects too). With TensorFlow's object graph in the process
    # each took long enough to stall every session; frozen objects are skipped by the collector.
    gc.freeze()
    return predictor


# One loader thread per server: models load in the background, one configuration at a time.
_LOADER = ThreadPoolExecutor(1, thread_name_prefix="predictor-loader")


@st.cache_resource(max_entries=8, show_spinner=False)
def _loading(model_dir: str, variants: tuple[str, ...], settings: OVSettings, stamp: float) -> Future[Predictor]:
    return _LOADER.submit(_load_predictor, model_dir, variants, settings)


def start_loading(entry: registry.ModelEntry, variants: list[str], settings: OVSettings) -> None:
    """Begin loading and warming these backends in the background (once per server and setting),
    so that a first visitor's first photo does not wait for TensorFlow's import."""
    _loading(str(entry.path), tuple(variants), settings, _stamp(entry.path))


def predict_defaults(entry: registry.ModelEntry) -> tuple[list[str], OVSettings]:
    """What the Predict page runs until a visitor changes it: every backend offered whose file is
    there (`predict.default_setups`), in f32."""
    return default_setups(entry.path), OVSettings(precision="f32")


@st.cache_resource(max_entries=8, show_spinner=False)
def _openvino_settings(model_dir: str, variant: str, settings: OVSettings, stamp: float) -> Future[dict]:
    return _LOADER.submit(lambda: load_backend(Path(model_dir), variant, settings).settings())


def _settled(loader, *key):
    """The result of the loader's future for `key`; a failure is not kept: the next run tries again."""
    future = loader(*key)
    wait([future])
    if future.exception() is not None:
        loader.clear(*key)
    return future.result()


def openvino_settings(entry: registry.ModelEntry, variant: str, settings: OVSettings) -> dict:
    """What OpenVINO's CPU plugin chose for one of the model's IRs under `settings` (precision,
    streams, threads): compiled once per server on the loader thread, without a whole Predictor."""
    return _settled(_openvino_settings, str(entry.path), variant, settings, _stamp(entry.path))


def predictor(entry: registry.ModelEntry, variants: list[str], settings: OVSettings) -> Predictor:
    """The loaded backends, shared by every session (waiting for the background load if it runs)."""
    key = (str(entry.path), tuple(variants), settings, _stamp(entry.path))
    if _loading(*key).done():
        return _settled(_loading, *key)
    with st.spinner("Loading and compiling the model (once per server)..."):
        return _settled(_loading, *key)


_PREDICTIONS_KEY = "predictions"


def classify_all(model: Predictor, files: list[tuple[str, bytes]], again: bool = False) -> list[ImageResult]:
    """Every photo's result, measured once per photo, model and settings and then kept in this
    session: a widget change that does not change the prediction (top-k, say) only redraws.
    Only the current photos' results are kept; `again` measures them anew."""
    model_key = (str(model.model_dir), _stamp(model.model_dir), tuple(model.backends), model.ov_settings)
    cache = {} if again else st.session_state.get(_PREDICTIONS_KEY, {})
    keys = [(name, hashlib.sha256(data).hexdigest(), model_key) for name, data in files]
    results = {k: cache[k] if k in cache else model.classify(name, data) for k, (name, data) in zip(keys, files)}
    st.session_state[_PREDICTIONS_KEY] = results
    return list(results.values())


def results_roots() -> list[Path]:
    """Where this session's benchmark runs are listed from: the shared runs, then its own."""
    return [paths.results_dir(), current_workspace().results]


# ---------------------------------------------------------------- jobs

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


def serving_download(entry: registry.ModelEntry, key: str) -> None:
    """The model as an OpenVINO Model Server repository (zipped only when clicked)."""
    from functools import partial

    from core.serve import serving

    variant = serving.default_variant(entry.path)
    if variant is None:
        return
    st.download_button(
        "Download for OpenVINO Model Server", partial(serving.export_zip, entry.path, variant),
        f"{entry.name}-serving.zip", "application/zip", key=key, icon=":material/dns:",
        help=f"The {variant} IR as an OVMS model repository: config.json ({'tuned' if variant == 'tuned' else 'default'}"
             " settings), docker-compose.yml, a KServe InferenceService and a README with the request format.")


def show_quality(entry: registry.ModelEntry, variant: str = registry.TF_VARIANT) -> None:
    """Per-class accuracy and the confusion matrix on the held-out split (else validation), with
    the interval, and a few of TensorFlow's wrong answers where the server still has the photos."""
    from core.measure import charts

    card = entry.card
    subset = "test" if "test" in card.scores else "val" if "val" in card.scores else None
    scores = card.scores.get(subset) if subset else None
    if scores is None or variant not in scores.confusion:
        return
    split = "held-out split, never used for model selection" if subset == "test" else "validation split"
    low, high = scores.accuracy_ci95[variant]
    st.markdown(f"**{variant}: {scores.accuracy[variant]:.1%}** on the {split} ({scores.n_images} photos; "
                f"95% Wilson interval {low:.1%}–{high:.1%}).")
    c1, c2 = st.columns([1, 2])
    per_class = scores.per_class_accuracy(variant, card.classes)
    c1.dataframe(pd.DataFrame({"class": list(per_class), "accuracy": list(per_class.values()),
                               "photos": [sum(r) for r in scores.confusion[variant]]}),
                 hide_index=True, column_config={"accuracy": st.column_config.NumberColumn(format="%.3f")})
    c2.plotly_chart(charts.confusion_matrix(scores.confusion[variant], card.classes, f"{variant}, {subset} split"),
                    width="stretch", key=f"confusion-{entry.name}-{variant}-{subset}")
    wrong = [(m, photo) for m in scores.misclassified if (photo := card.local_photo(m["file"])) is not None]
    if wrong:
        st.caption(f"Some of TensorFlow's {len(scores.misclassified)} wrong answers on this split:")
        cols = st.columns(6)
        for col, (m, photo) in zip(cols, wrong[:6]):
            col.image(str(photo), caption=f"{m['true']} → {m['predicted']} ({m['probability']:.0%})")


# ---------------------------------------------------------------- models in lists

def model_line(e: registry.ModelEntry) -> str:
    val = e.card.scores.get("val")
    return (f"**{e.name}** — {e.card.architecture}, {len(e.card.classes)} classes, "
            f"variants: {', '.join(e.variants)}"
            + ("; val accuracy: " + ", ".join(f"{v} {a:.3f}" for v, a in val.accuracy.items()) if val else ""))


def forget_selection(e: registry.ModelEntry) -> None:
    if st.session_state.get(MODEL_KEY) == str(e.path):
        st.session_state.pop(MODEL_KEY)
