"""Which model a page works on: the sidebar picker (kept across pages), the shared models and this
browser's own in lists, the card's accuracy views and the model-server download."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.session import current_workspace
from core import paths
from core.model import registry
from core.model.tuned import TUNED_FILE

MODEL_KEY = "model_path"


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


def model_stamp(model_dir: Path) -> float:
    """Changes when a model is re-converted or re-tuned, so the cache reloads it."""
    files = [model_dir / registry.METADATA_FILE, model_dir / TUNED_FILE]
    return max(f.stat().st_mtime for f in files if f.exists())


def results_roots() -> list[Path]:
    """Where this session's benchmark runs are listed from: the shared runs, then its own."""
    return [paths.results_dir(), current_workspace().results]


def model_line(e: registry.ModelEntry) -> str:
    val = e.card.scores.get("val")
    return (f"**{e.name}** — {e.card.architecture}, {len(e.card.classes)} classes, "
            f"variants: {', '.join(e.variants)}"
            + ("; val accuracy: " + ", ".join(f"{v} {a:.3f}" for v, a in val.accuracy.items()) if val else ""))


def forget_selection(e: registry.ModelEntry) -> None:
    if st.session_state.get(MODEL_KEY) == str(e.path):
        st.session_state.pop(MODEL_KEY)


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
    from core.measure import run_charts  # pandas and Plotly Express: kept off Home's first screen

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
    c1.dataframe({"class": list(per_class), "accuracy": list(per_class.values()),
                  "photos": [sum(r) for r in scores.confusion[variant]]},
                 hide_index=True, column_config={"accuracy": st.column_config.NumberColumn(format="%.3f")})
    c2.plotly_chart(run_charts.confusion_matrix(scores.confusion[variant], card.classes, f"{variant}, {subset} split"),
                    width="stretch", key=f"confusion-{entry.name}-{variant}-{subset}")
    wrong = [(m, photo) for m in scores.misclassified if (photo := card.local_photo(m["file"])) is not None]
    if wrong:
        st.caption(f"Some of TensorFlow's {len(scores.misclassified)} wrong answers on this split:")
        cols = st.columns(6)
        for col, (m, photo) in zip(cols, wrong[:6]):
            col.image(str(photo), caption=f"{m['true']} → {m['predicted']} ({m['probability']:.0%})")
