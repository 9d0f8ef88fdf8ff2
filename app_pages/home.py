"""Home: what this is, the result it exists for, an invitation to try it, then the model's card."""

import streamlit as st
from tabulate import tabulate

from app_pages.models import page_model, results_roots, serving_download, show_quality
from app_pages.predictors import openvino_settings
from app_pages.session import tensorflow_missing_notice
from core.app import examples
from core.measure import charts, headline
from core.model import openset, registry
from core.quality import evaluate
from core.runtimes.backends import device_info
from core.variants import CATALOGUE, OPENVINO
from core.settings import OVSettings
from core.system import describe_cpu, machine_summary

st.title(":material/local_florist: Flowers: TensorFlow → OpenVINO")
st.markdown("A flower-photo classifier trained with TensorFlow and converted to OpenVINO: show it a photo, and see "
            "both answer side by side, and how much faster OpenVINO does.")
tensorflow_missing_notice()
entry = page_model()

catalogue = examples.load()
offered, _ = catalogue.for_model(entry.card) if catalogue else ([], False)
if st.button("Try it on a photo", type="primary", icon=":material/photo_camera:"):
    if offered:  # Predict opens with its first example already answered
        st.session_state["example"] = offered[0].label
    st.switch_page("app_pages/predict.py")

result = headline.find(entry, results_roots())
if result is not None:
    st.markdown(result.sentence())
    # Filled last: the browser loads plotly.js (4.7 MB) for a page's first chart, and holds back every
    # element sent after one until then; sent last, it delays only itself.
    chart_slot = st.empty()
    here = describe_cpu(machine_summary())
    st.caption(result.how() + ("" if here == result.machine else
                               f" This server is {here}: its own numbers differ; the Benchmark page measures them."))
else:
    st.info("No speed measurement of this model yet: the Benchmark page measures TensorFlow against OpenVINO on "
            "this server.", icon=":material/speed:")

card = entry.card
st.divider()
st.header(f"The model: {entry.name}")
cols = st.columns(4)
cols[0].metric("Architecture", card.architecture)
cols[1].metric("Input", f"{card.image_size}×{card.image_size} RGB")
cols[2].metric("Classes", len(card.classes))
cols[3].metric("Training images", card.data.split.train if card.data else "?")
st.write("**Classes:** " + ", ".join(card.classes))
st.caption(f"Preprocessing: {card.preprocessing}")

st.subheader("Variants")
# A text table: an interactive grid would load two more script bundles (1.2 MB) into a first visit's
# browser, which beside plotly.js's held Home's first screen back by about a second (docs/results.md).
st.markdown(tabulate(evaluate.variant_rows(entry.path, latency=False), headers="keys", tablefmt="pipe"))
serving_download(entry, f"serving-{entry.name}")
n_test = card.scores["test"].n_images if "test" in card.scores else None
held_out = f"a held-out split never used for training or model selection ({n_test} images)" if n_test else ""
if "val" in card.scores:
    st.caption(f"Accuracy, with its 95% interval, on the model's validation split ({card.scores['val'].n_images} "
               "images)" + (f" and on {held_out}." if n_test else "."))
elif card.config is not None and card.config.fit_on_val and n_test:
    st.caption(f"A final fit: trained on the training and validation photos once its recipe was fixed on validation; "
               f"its accuracy is on {held_out}, with its 95% interval.")

calibration = openset.from_card(card.openset, entry.path) if card.openset else None
if calibration is not None:
    st.markdown(calibration.scope(card.classes))

# The details are drawn only when asked for: a first visit (often a cold server) stays light.
whole_card = st.toggle("Show the whole card: accuracy per class, confidence, the runtime, library versions",
                       key="whole-card")
if result is not None:
    chart_slot.plotly_chart(charts.headline(result), width="stretch", config=charts.STATIC_CHART,
                            key=f"headline-{entry.name}")
if not whole_card:
    st.stop()

st.subheader("Accuracy per class")
show_quality(entry)

if calibration is not None:
    st.subheader("Confidence and photos that are not flowers")
    st.markdown(calibration.confidence_summary())  # what the card says; Predict says what runs there
    if rows := calibration.candidate_rows():
        st.dataframe(rows, hide_index=True,
                     column_config={"AUROC": st.column_config.NumberColumn(format="%.3f")})
        st.caption("The candidate scores, measured with TensorFlow: the one with the higher AUROC of the two every "
                   "runtime can compute is used where the ImageNet check cannot run; where it can, the check decides (it was "
                   "chosen on a tuning set of real photos of other things, docs/lab-log.md).")
    if calibration.evaluated is not None:  # `python -m core openset-eval --record`
        st.markdown(calibration.evaluated.summary())
        st.dataframe(calibration.evaluated.rows(), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="percent")
                                    for c in ("taken for a flower", "keeping 95% of flowers")})
    st.plotly_chart(charts.reliability_diagram(calibration.measured, calibration.temperature), width="stretch",
                    key=f"reliability-{entry.name}")

st.subheader("Runtime")
info = device_info()
settings = OVSettings()
# A file that is there: asking which precision OpenVINO runs in must not wait for a remade FP32 IR.
ov_variants = [v for v in registry.ready_variants(entry.path) if CATALOGUE[v].runtime is OPENVINO]
used = openvino_settings(entry, ov_variants[0], settings) if ov_variants else {}
st.markdown(
    f"- OpenVINO device: **{info['device']}** — {info['name']}\n"
    f"- Precision the CPU plugin picks by default: **{info['default_precision']}**"
    f" (capabilities: {', '.join(info['capabilities'])})\n"
    + (f"- Precision this app runs OpenVINO in: **{used['precision']}** (hint {used['hint']}, "
       f"{used['streams']} stream(s), {used['threads']} threads, CPU pinning {used['pinning']}); "
       "bf16 is one switch away on the Predict page.\n" if used else "")
)
st.subheader("Library versions")
st.dataframe([card.versions], hide_index=True)
if card.training.command:
    st.caption(f"Trained in {card.training.seconds:.0f} s with `{card.training.command}`")
