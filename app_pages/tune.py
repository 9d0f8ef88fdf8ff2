"""Tune: find the fastest OpenVINO setup of a model within the accuracy budget, beside the peers at theirs."""

import streamlit as st

from app_pages.job_views import show_job_failure, show_progress, starting_job, watched_job
from app_pages.models import page_model
from app_pages.session import current_workspace, policy, tensorflow_missing_notice
from core.app.access import Action
from core.app import launch
from core.app.jobs import RUNNER
from core.measure import run_charts
from core.model import tuned
from core.quality import evaluate

st.title(":material/tune: Tune")
entry = page_model()
no_tensorflow = tensorflow_missing_notice()
ws = current_workspace()
rules = policy()
caps = rules.limits

st.caption(
    "Searches the IR variant, inference precision (only those this CPU runs natively), hint, streams, batch, "
    "static or dynamic shape and CPU pinning by successive halving: every setup briefly, then the faster half "
    "again on more photos, within the time budget; ONNX Runtime and LiteRT (f32 and INT8) over their thread "
    "counts beside them, so OpenVINO is compared with each peer at its best. "
    f"A setup counts only if its held-out accuracy is within "
    f"{evaluate.ACCURACY_BUDGET:.0%} point of TensorFlow's and it agrees with TensorFlow on at least "
    f"{evaluate.MIN_AGREEMENT:.0%} of the photos. The winners are saved with the model; the Predict page offers "
    "the latency winner."
)
may_tune = rules.may_write(entry.private) and not no_tensorflow  # the accuracy guard runs TensorFlow
with st.container(border=True):
    t1, t2, t3 = st.columns(3)
    objective = t1.selectbox("Objective", tuned.OBJECTIVE_CHOICES, key="objective")
    budget = t2.number_input("Time budget (s)", 30, int(caps.bench_max_seconds or 600),
                             300 if rules.allows(Action.UNCAPPED_JOBS) else 240, step=30, key="budget")
    p99 = t3.number_input("p99 limit (ms; 0: none)", 0.0, 10_000.0, 0.0, key="p99")
    if no_tensorflow:
        st.caption("Tuning checks every setup's accuracy against TensorFlow's answers: it needs TensorFlow.")
    elif not may_tune:
        st.caption("Tuning writes into the model's folder: only the owner tunes a shared model. Train a model of "
                   "your own on the Train page to tune it.")
    if st.button("Find the best setup", disabled=not may_tune, key="tune"):
        with starting_job("tune"):
            launch.start_tuning(RUNNER, entry.path, objective, budget, p99, owner=ws.key,
                                search_cap_s=caps.bench_max_seconds)


@st.fragment(run_every=1.0)
def tuning() -> None:
    job = watched_job("tune")
    if job is None:
        return
    if job.running:
        show_progress(job, "tune", "Cancel tuning")
        st.caption(f"{len(job.rows)} setups measured, {job.elapsed:.0f} s")
    show_job_failure(job, "The last tuning")


tuning()
tuning = tuned.load(entry.path)
if tuning:
    with st.container(border=True):
        st.markdown(f"**Tuned** {tuning.created} on {tuning.describe_machine()} "
                    f"({', '.join(tuning.machine.get('capabilities', []))}): {len(tuning.candidates)} setups measured "
                    f"in {tuning.seconds:.0f} s, accuracy on {tuning.guard.n_images} held-out photos.")
        for line in tuned.summary(tuning):
            st.markdown(f"- {line}")
        st.plotly_chart(run_charts.tune_scatter(tuning), width="stretch", key=f"tune-{tuning.created}")
        st.dataframe(run_charts.tuned_frame(tuning), hide_index=True, width="stretch")
