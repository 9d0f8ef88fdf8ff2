"""Home: what the app does and the active model's card."""

import pandas as pd
import streamlit as st

from app_pages.common import openvino_settings, page_model, serving_download, show_quality, tensorflow_missing_notice
from core.measure import charts
from core.model import evaluate, openset
from core.runtimes.backends import device_info
from core.model.variants import CATALOGUE, OPENVINO
from core.settings import OVSettings

st.title(":material/local_florist: Flower classifier: TensorFlow → OpenVINO")
st.markdown(
    """
Train a flower classifier, convert it to **OpenVINO IR** (FP32, FP16, INT8), check that every
variant still gives TensorFlow's answers, and measure the speed-up honestly.

- **Predict** — upload photos or use the camera; TensorFlow and OpenVINO answer side by side.
- **Benchmark** — sweeps over test and batch sizes, each backend in its own process.
- **Train** — train on `flower_photos` or on your own photos, then convert and quantize.
"""
)
tensorflow_missing_notice()

entry = page_model()

card = entry.card
st.header(f"Model: `{entry.name}`")
cols = st.columns(4)
cols[0].metric("Architecture", card.architecture)
cols[1].metric("Input", f"{card.image_size}×{card.image_size} RGB")
cols[2].metric("Classes", len(card.classes))
cols[3].metric("Training images", card.data.split.train if card.data else "?")
st.write("**Classes:** " + ", ".join(card.classes))
st.caption(f"Preprocessing: {card.preprocessing}")

st.subheader("Variants")
table = evaluate.variant_table(entry.path)
st.dataframe(table, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.4f") for c in table.columns
                            if "accuracy" in c or "agreement" in c})
serving_download(entry, f"serving-{entry.name}")
n_test = card.scores["test"].n_images if "test" in card.scores else None
held_out = f"a held-out split never used for training or model selection ({n_test} images)" if n_test else ""
if "val" in card.scores:
    st.caption(f"Accuracy on the model's validation split ({card.scores['val'].n_images} images)"
               + (f" and on {held_out}." if n_test else ".")
               + " Single-image latency: median of 20 warm calls in the training job's process.")
elif card.config is not None and card.config.fit_on_val and n_test:
    st.caption(f"A final fit: trained on the training and validation photos once its recipe was fixed on validation; "
               f"its accuracy is on {held_out}. Single-image latency: median of 20 warm calls.")

st.subheader("Accuracy per class")
show_quality(entry)

def show_evaluation(evaluated: dict) -> None:
    """The check on real photos of other things, per kind (`python -m core openset-eval --record`)."""
    report = evaluated["report"]
    used = next(s for s in report["scores"] if s["in_use"])
    at_95 = {r["kind"]: r["accepted"] for r in used["at_95"]}
    st.markdown(f"On real photos that are not these flowers ({evaluated['set']}): AUROC **{used['auroc']:.3f}**; at "
                f"the model's threshold it keeps {used['flowers_kept_at_model']:.1%} of the {report['flowers']} "
                "held-out flowers and takes these shares of other photos for a flower:")
    st.dataframe(pd.DataFrame([{"kind": r["kind"], "photos": r["photos"], "taken for a flower": r["accepted"],
                                "keeping 95% of flowers": at_95.get(r["kind"])} for r in used["at_model"]]),
                 hide_index=True, column_config={c: st.column_config.NumberColumn(format="percent")
                                                 for c in ("taken for a flower", "keeping 95% of flowers")})


if card.openset:
    calibration = openset.from_card(card.openset, entry.path)
    measured = calibration.measured
    tf = measured["variants"].get("tensorflow", {})
    st.subheader("Confidence and photos that are not flowers")
    rule = calibration.rule(imagenet_runs=True)  # what the card says; Predict says what runs there
    st.markdown(
        f"Temperature **{calibration.temperature:.2f}** (fitted on the validation split) brings the expected "
        f"calibration error on the held-out split from {tf.get('ece_before', 0):.3f} to "
        f"**{tf.get('ece_after', 0):.3f}**. A photo that {rule} is called not one of the classes: that rejects "
        f"{tf.get('flowers_rejected', 0)} of {measured['flowers']} held-out flowers and accepts "
        f"{len(tf.get('non_flowers_accepted', []))} of {measured['non_flowers']} pictures that are not flowers "
        f"(AUROC {tf.get('auroc', 0):.3f}; a small set: photos shipped with scikit-learn and scikit-image, noise, "
        "flat colours and charts)"
        + (f"; accepted: {', '.join(tf['non_flowers_accepted'])}." if tf.get("non_flowers_accepted") else "."))
    if measured.get("candidates"):
        st.dataframe(pd.DataFrame([{"score": openset.SCORE_NAMES[name], "AUROC": m["auroc"],
                                    "false positives at 95% true positives": m["fpr_at_95_tpr"],
                                    "held-out flowers rejected": m["flowers_rejected"],
                                    "non-flowers accepted": len(m["non_flowers_accepted"]),
                                    "used": name == calibration.in_use}
                                   for name, m in measured["candidates"].items()]),
                     hide_index=True, column_config={"AUROC": st.column_config.NumberColumn(format="%.3f")})
        st.caption("The candidate scores, measured with TensorFlow: the one with the higher AUROC of the two every "
                   "runtime can compute is used where the ImageNet check cannot run; where it can, the check decides (it was "
                   "chosen on a tuning set of real photos of other things, docs/model.md).")
    if calibration.evaluated:
        show_evaluation(calibration.evaluated)
    st.plotly_chart(charts.reliability_diagram(measured, calibration.temperature), width="stretch",
                    key=f"reliability-{entry.name}")

st.subheader("Runtime")
info = device_info()
settings = OVSettings()
ov_variants = [v for v in entry.variants if CATALOGUE[v].runtime is OPENVINO]
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
st.dataframe(pd.DataFrame([card.versions]), hide_index=True)
if card.training.command:
    st.caption(f"Trained in {card.training.seconds:.0f} s with `{card.training.command}`")
