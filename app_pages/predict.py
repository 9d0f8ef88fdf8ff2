"""Predict: upload photos (or use the camera) and compare TensorFlow and OpenVINO."""

from functools import partial

import pandas as pd
import streamlit as st

from app_pages.models import page_model
from app_pages.predictors import classify_all, predict_defaults, predictor, start_loading
from app_pages.session import tensorflow_missing_notice
from core.app import examples
from core.model import images
from core.runtimes.predict import REPEATS, offered_setups, setup_label
from core.settings import PRECISIONS, OVSettings

EXAMPLE_KEY = "example"  # Home's "Try it" sets it before switching here

st.title(":material/image_search: Predict")
tensorflow_missing_notice()
entry = page_model()

offered = offered_setups(entry.path)
chosen, default_settings = predict_defaults(entry)
start_loading(entry, chosen, default_settings)  # while the page draws, unless already loaded
with st.sidebar:
    setups = st.multiselect("Backends", offered, default=chosen, key="backends", format_func=setup_label,
                              help="'OpenVINO, tuned for latency' is the setup `python -m core tune` (or the Tune "
                                   "page) found fastest within the accuracy budget; it keeps its own "
                                   "precision, whatever is chosen below. 'OpenVINO (remote server)' is this "
                                   "model on the owner's model server (KServe v2 protocol): its times include the "
                                   "network and serialization, and its precision is the server's.")
    precision = st.selectbox(
        "OpenVINO precision", PRECISIONS, index=PRECISIONS.index(default_settings.precision),
        help="f32 matches TensorFlow exactly; 'default' lets the CPU plugin choose (bf16 on CPUs that have it).",
    )
    top_k = st.slider("Top-k", 1, len(entry.card.classes), min(3, len(entry.card.classes)), key="top-k")

# A visitor from a shared link has no photo at hand: one tap on an example gives a verdict.
catalogue = examples.load()
offered_examples, held_out = catalogue.for_model(entry.card) if catalogue else ([], False)
example = None
if offered_examples:
    picked = st.pills("Try an example", [e.label for e in offered_examples], key=EXAMPLE_KEY,
                      help="One photo of each kind, " + ("held out of this model's training: it never saw them, as "
                                                         "it never saw yours." if held_out else
                                                         "from flower_photos; this model may have trained on them.")
                      + " And one that is not a flower.")
    example = catalogue.by_label(picked) if picked else None
uploads = st.file_uploader(
    "Photos", key="photos", type=[s.lstrip(".") for s in images.IMAGE_SUFFIXES], accept_multiple_files=True,
    help="jpg, png, webp, bmp, gif (first frame). EXIF orientation is honoured.",
)
use_camera = st.toggle("Use the camera")
shot = st.camera_input("Take a photo") if use_camera else None
files = ([(example.path.name, example.path.read_bytes())] if example else []) + [
    (f.name, f.getvalue()) for f in uploads or []] + ([("camera.jpg", shot.getvalue())] if shot else [])

if not setups:
    st.info("Choose at least one backend in the sidebar.")
    st.stop()
model = predictor(entry, setups, OVSettings(precision=precision))
model.retry_unavailable()
for setup, message in (model.unavailable | model.failed).items():
    st.warning(f"{setup_label(setup)} is left out: {message}")


DRAWN_WITH = "predict-drawn-with"  # what this page's last full run showed: loaded, failed, still loading


def loading_state() -> tuple:
    return tuple(model.backends), tuple(model.failed), tuple(sorted(model.pending))


st.session_state[DRAWN_WITH] = loading_state()


# Called on every full run: with run_every=None (nothing pending) its timed reruns stop.
@st.fragment(run_every=1.0 if model.pending else None)
def still_loading() -> None:
    """After a server starts, TensorFlow loads for seconds more: the others answer meanwhile, and the
    whole page runs again once (timing every backend anew) when it has joined."""
    if loading_state() != st.session_state[DRAWN_WITH]:
        st.rerun(scope="app")
    if model.pending:
        st.info(f"{', '.join(map(setup_label, sorted(model.pending)))}: still loading (once per server); its answer "
                "joins here when ready, and every backend is timed again then.", icon=":material/hourglass_top:")


still_loading()


def how_to_read() -> None:
    """Below the answers: what the numbers mean, and the one-time costs."""
    with st.expander("How to read these results"):
        if model.calibration is not None:
            rule = model.calibration.rule(imagenet_runs=model.judge is not None)
            if model.judge is not None:
                rule += ": the same verdict whichever backend answers"
            st.markdown(f"Probabilities are calibrated: temperature {model.calibration.temperature:.2f}, fitted on "
                        "the model's validation split, so that a stated 80% is right about 80% of the time. A photo "
                        f"that {rule} is called not one of the classes. It tells the training photos' kind of thing "
                        "from other things, not from others of the same kind: for the flower models, a lotus or a "
                        "water lily passes for one of the five (measured in docs/lab-log.md).")
            if model.judge_missing:
                st.markdown(f"The ImageNet check does not run on this server ({model.judge_missing}): the distance "
                            "decides alone.")
        st.markdown(f"Times: the median of {REPEATS} warm calls per photo and backend, after one first call shown "
                    "apart, in this server process (the Benchmark page runs each backend alone in its own). The "
                    "first call is cold after every run of this page: Streamlit clears Keras's session after each "
                    "run, and with it TensorFlow's kernel cache.")
    with st.expander("Load and first-call times (once per server process)"):
        st.markdown(pd.DataFrame(model.load_times()).T.rename(
            index=setup_label, columns={"load_s": "load + compile (s)", "first_inference_ms": "first inference (ms)"},
        ).to_markdown(floatfmt=".2f"))


def openset_message(r, classes: list[str]) -> str:
    if r.looks_like is not None:
        return (f"This looks like **{r.looks_like.label}** ({r.looks_like.probability:.0%} by an ImageNet "
                f"classifier), not one of: {', '.join(classes)}.")
    return f"This does not look like one of: {', '.join(classes)}."


if not files:
    st.info("Tap an example, or upload flower photos, to see every backend's answer.")
    how_to_read()
    st.stop()

# The answers come first (a stranger on a phone sees the photo and the verdict on the first screen);
# the button that measures again, and how to read the numbers, follow them.
results = classify_all(model, files, bool(st.session_state.get("measure-again")))
for r in results:
    with st.container(border=True):
        if r.error:
            st.error(f"**{r.name}**: {r.error}")
            continue
        for setup, message in r.failed.items():
            st.warning(f"{setup_label(setup)} did not answer: {message}")
        first = next(iter(r.results.values()))
        if r.known is False:
            # No confident wrong answer on a photo that is not one of the classes.
            scores = {setup_label(v): x.known_score for v, x in r.results.items() if x.known_score is not None}
            # Where the ImageNet check decides, every backend has the same score: say it once.
            said = (f"Score {next(iter(scores.values())):.0%} for every backend" if len(set(scores.values())) == 1
                    else " · ".join(f"{name}: {score:.0%}" for name, score in scores.items()))
            st.warning(f"{openset_message(r, entry.card.classes)} {said} (a flower scores at least {model.threshold:.0%})")
        elif r.agree:
            confidence = f", calibrated confidence {first.calibrated[first.top_class]:.0%}" if first.calibrated else ""
            st.success(f"**{first.top_class}**, one of the {len(entry.card.classes)} kinds this model knows — "
                       f"all {len(r.results)} backends agree{confidence}")
        else:
            st.warning("Backends disagree: " + ", ".join(f"{setup_label(v)}: {x.top_class}"
                                                          for v, x in r.results.items()))
        left, right = st.columns([1, 2])
        left.image(images.for_display(r.image), caption=r.name, width="stretch")
        if example is not None and r.name == example.path.name:
            left.caption(example.credit_line)
        with right:
            # Behind an expander where the photo is not one of the classes: no confident wrong answer.
            with st.expander("Show the probabilities anyway") if r.known is False else st.container():
                st.markdown(r.top_k_table(top_k))
            st.caption(" · ".join(f"{setup_label(v)}: {x.latency_ms:.1f} ms ({x.timing.min_ms:.1f}–"
                                  f"{x.timing.max_ms:.1f}; first call {x.first_call_ms:.0f} ms)"
                                  for v, x in r.results.items())
                       + (f" · ImageNet check: {r.imagenet_ms:.1f} ms, once per photo" if r.imagenet_ms else ""))

if model.calibration is not None:
    st.caption(model.calibration.scope(entry.card.classes))
if len(results) > 1:
    st.subheader("All results")
    table = pd.DataFrame([r.table_row() for r in results])
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button("Download CSV", partial(table.to_csv, index=False), "predictions.csv", "text/csv")
st.button("Measure again", key="measure-again",
          help="Results are kept per photo and setting; this times every photo anew.")
how_to_read()
