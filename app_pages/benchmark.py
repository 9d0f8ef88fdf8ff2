"""Benchmark: configure a sweep, watch it run, and read the charts of saved runs."""

import json
from functools import partial

import pandas as pd
import streamlit as st

from app_pages.job_views import show_job_failure, show_progress, starting_job, watched_job
from app_pages.models import page_model, results_roots
from app_pages.session import current_workspace, policy, tensorflow_missing_notice
from core import settings
from core.measure import benchmark, run_charts, runs
from core.model import images
from core import variants
from core.app.access import Action
from core.errors import UserError
from core.app import launch
from core.app.jobs import RUNNER

st.title(":material/speed: Benchmark")
st.caption(
    "Every backend runs in its own process, one at a time, on the same decoded photos: import, load, compile "
    "and first inference are timed apart; then a warm-up and repeated timed runs (median, min, max). "
    "Memory is that process's resident set. Each row carries the settings it ran with."
)
entry = page_model()
no_tensorflow = tensorflow_missing_notice()
ws = current_workspace()
rules = policy()
caps = rules.limits

labels = {k: f"{k} — {spec.label}" for k, spec in settings.SETUPS.items()}
# A sweep makes missing peer files inside the model's folder: a visitor may do so only in their own.
available = benchmark.available_backends(entry.path, make_peers=rules.may_write(entry.private))
with st.container(border=True):
    st.subheader(f"New sweep on `{entry.name}`")
    preset = st.selectbox("Sweep preset", list(settings.SWEEP_PRESETS), key="preset",
                          help="Starting values for the settings below; change any of them.")
    defaults = settings.SWEEP_PRESETS[preset]
    chosen = st.multiselect("Backends", available, default=[k for k in defaults.backends if k in available],
                            format_func=labels.get, key=f"backends-{preset}")
    if variants.REMOTE_SETUP in chosen:
        st.caption("The remote server's times are what a client sees: the network, serialization and the "
                   "server's queue are in them, its memory is the server's own and not in this sweep's, and its "
                   "batches larger than the server's static batch go as several requests.")
    c1, c2, c3, c4 = st.columns(4)
    max_images = caps.bench_max_images or 1000
    sizes_text = c1.text_input("Test sizes (images)", ",".join(map(str, defaults.sizes)), key=f"sizes-{preset}",
                               help=f"Comma-separated; up to {max_images}.")
    batches = c2.multiselect("Batch sizes", settings.BATCH_CHOICES, default=defaults.batches, key=f"batches-{preset}")
    repeats = c3.number_input("Repeats", 1, caps.bench_max_repeats or 20, defaults.repeats, key=f"repeats-{preset}")
    warmup = c4.number_input("Warm-up runs", 0, 5, defaults.warmup, key=f"warmup-{preset}")
    if not rules.allows(Action.UNCAPPED_JOBS):
        st.caption(f"Visitor limits: up to {caps.bench_max_images} photos per test size, {caps.bench_max_repeats} "
                   f"repeats, {caps.bench_max_seconds:.0f} s per sweep.")
    source = st.radio("Photos", ["The model's validation photos", "Upload photos"], horizontal=True)
    uploads = None
    if source == "Upload photos":
        uploads = st.file_uploader("Photos to benchmark on", type=[s.lstrip(".") for s in images.IMAGE_SUFFIXES],
                                   accept_multiple_files=True, key=f"bench-photos-{st.session_state.get('uploads', 0)}")
    submitted = st.button("Run sweep", type="primary", key="run-sweep")

if submitted:
    with starting_job("benchmark"):
        sizes = settings.parse_int_list(sizes_text, "test sizes")
        if sizes and max(sizes) > max_images:
            raise UserError(f"test sizes go up to {max_images} images here")
        image_dir = None
        if source == "Upload photos":
            if not uploads:
                raise UserError("upload at least one photo, or use the model's validation photos")
            for f in uploads:
                image_dir = ws.store_upload(f.name, f.getvalue()).parent
        cfg = settings.SweepConfig(str(entry.path), chosen, sizes, sorted(batches), int(repeats), int(warmup),
                                    str(image_dir) if image_dir else None)
        out_root = rules.output_root(results_roots()[0], ws.results)
        launch.start_sweep(RUNNER, cfg, out_root, owner=ws.key, time_limit_s=caps.bench_max_seconds,
                           on_end=ws.clear_data)
        st.session_state["uploads"] = st.session_state.get("uploads", 0) + 1


# Eight Plotly Express charts take the server 1.2-1.4 s of CPU to build (the example run, on the
# AVX2 machine): once per table, not on every rerun (any widget of the sweep above reruns the page).
# st.plotly_chart serialises a copy, so the cached figures are shared read-only.
@st.cache_resource(max_entries=16, show_spinner=False)
def figures(df: pd.DataFrame) -> dict:
    return run_charts.run_figures(df)


def show(figs: dict, key: str) -> None:
    for title, fig in figs.items():
        st.plotly_chart(fig, width="stretch", key=f"{key}-{title}")


@st.fragment(run_every=1.0)
def live() -> None:
    job = watched_job("benchmark")
    if job is None:
        return
    if job.running:
        show_progress(job, "benchmark", "Cancel sweep")
        if job.rows:
            # A light table while it runs: this fragment redraws every second, and eight Plotly
            # charts each time kept the server and the browser busy (the charts follow at the end).
            st.caption(f"{len(job.rows)} cells measured so far")
            st.dataframe(pd.DataFrame(job.rows)[runs.SUMMARY_COLUMNS], hide_index=True, width="stretch")
    show_job_failure(job, "The last sweep")


live()

st.divider()
st.subheader("Saved runs")
saved = {run_id: root for root in results_roots() for run_id in runs.list_runs(root)}
if not saved:
    if not (runs.EXAMPLE_RUN / "run.json").exists():
        st.info("No saved runs yet: start a sweep above, or run `python -m core benchmark`.")
        st.stop()
    st.info("No saved runs yet. Shown meanwhile: the reference run of docs/benchmarking.md, an example measured on another "
            "machine (named below); start a sweep above to measure this server.")
    saved = {runs.EXAMPLE_RUN.name: runs.EXAMPLE_RUN.parent}
ordered = sorted(saved, reverse=True)
picked = st.multiselect("Runs (pick one, or two to compare)", ordered, default=ordered[:1], max_selections=2,
                        format_func=lambda r: r + (" (yours)" if saved[r] == ws.results else
                                                   " (example)" if saved[r] == runs.EXAMPLE_RUN.parent else ""))
if not picked:
    st.stop()
loaded = [runs.load_run(r, saved[r]) for r in picked]
df = runs.compared(loaded)
if df.empty:
    st.warning("This run has no results.")
    st.stop()

for run in loaded:
    with st.container(border=True):
        st.markdown(runs.described(run))
        for line in runs.summary(run):
            st.markdown(f"- {line}")
        if run.get("benchmark_app"):
            st.dataframe(pd.DataFrame(run["benchmark_app"]), hide_index=True)

figs = figures(df)
show(figs, "saved-" + "-".join(picked))
st.dataframe(df, hide_index=True, width="stretch")
# Every download is built when clicked (callable data), not on each rerun of the page.
d1, d2, d3 = st.columns(3)
d1.download_button("Download CSV", partial(df.to_csv, index=False), "benchmark.csv", "text/csv")
d2.download_button("Download JSON", partial(json.dumps, loaded if len(loaded) > 1 else loaded[0], indent=2),
                   "benchmark.json", "application/json")
chart = d3.selectbox("Chart to download", list(figs))
d3.download_button("Download chart (HTML)", partial(figs[chart].to_html, include_plotlyjs="cdn"), f"{chart}.html",
                   "text/html")
if run_charts.png_export_available():
    d3.download_button("Download chart (PNG)", partial(run_charts.figure_png, figs[chart]), f"{chart}.png", "image/png",
                       help="Made with kaleido and the server's Chromium; the HTML works everywhere.")
else:
    d3.caption("PNG: this server has no Chrome or Chromium for kaleido; the HTML chart has Plotly's own "
               "\"Download plot as a png\" button.")
