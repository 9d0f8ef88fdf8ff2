"""Train & Optimize: train on flower_photos or your own photos, then convert, quantize and compare."""

import hashlib
import os
import time

import pandas as pd
import plotly.express as px
import streamlit as st
from PIL import Image

from core import data, paths, registry, training, workflow
from core.images import ImageError, for_display, open_image
from core.jobs import RUNNER
from pages.common import (MODEL_KEY, rerun_when_finished, show_job_failure, show_refusal, starting_job,
                          use_app_navigation)

use_app_navigation()


@st.cache_data(max_entries=64, show_spinner=False)
def sample_photo(path: str, mtime_ns: int) -> Image.Image:
    """A sample photo for the grid, decoded once: the page reruns on every widget change and
    users' own photos can be 12-megapixel originals. `mtime_ns` keys the cache to the file's version."""
    return for_display(open_image(path))


st.title(":material/model_training: Train & Optimize")

# ---------------------------------------------------------------- data source
kind = st.radio(
    "Data", ["Official flower_photos download", "Upload an archive of class folders", "Folder on the server"],
    key="data_kind", horizontal=True,
)
source: str | None = None
if kind.startswith("Official"):
    url = st.text_input("Archive URL", data.OFFICIAL_URL,
                        help="Downloaded once, then reused from the cache. file:// URLs and local .tgz paths work too.")
    if st.button("Fetch and inspect"):
        bar = st.progress(0.0, text="downloading")

        def show(ev):
            if ev.fraction is not None:
                bar.progress(ev.fraction, text=f"{ev.message} ({ev.step / 2**20:.0f} MB)" if ev.stage == "download"
                             else ev.message)

        try:
            st.session_state["official_root"] = str(data.resolve(url, progress=show))
        except data.DatasetError as exc:
            st.error(str(exc))
        bar.empty()
    source = st.session_state.get("official_root")
elif kind.startswith("Upload"):
    upload = st.file_uploader("Archive of class folders (e.g. my_photos/roses/*.jpg, my_photos/tulips/*.jpg)",
                              type=["zip", "tgz", "gz", "tar"])
    if upload is not None:
        suffix = next((x for x in data.ARCHIVE_SUFFIXES if upload.name.lower().endswith(x)), None)
        if suffix is None:
            st.error(f"{upload.name} is not a .zip, .tgz, .tar.gz or .tar archive")
        else:
            digest = hashlib.sha1(upload.getvalue()).hexdigest()[:12]
            archive = paths.cache_dir() / "uploads" / f"{digest}{suffix}"
            archive.parent.mkdir(parents=True, exist_ok=True)
            if not archive.exists():
                partial = archive.with_name(archive.name + ".part")
                partial.write_bytes(upload.getvalue())
                os.replace(partial, archive)  # a half-written upload is never taken for a whole one
            source = str(archive)
else:
    folder = st.text_input("Folder path", placeholder="/data/my_photos", key="folder")
    if folder:
        source = folder

info = None
if source:
    try:
        info = data.scan(data.resolve(source))
    except (data.DatasetError, OSError) as exc:
        st.error(f"This dataset cannot be used: {exc}")
if info is not None:
    st.subheader(f"{info.n_images} images in {len(info.classes)} classes")
    st.bar_chart(pd.Series(info.counts, name="images"))
    if info.skipped:
        st.caption(f"{len(info.skipped)} non-image files are ignored.")
    cols = st.columns(len(info.classes))
    for col, cls in zip(cols, info.classes):
        col.markdown(f"**{cls}**")
        for f in info.files[cls][:3]:
            try:
                col.image(sample_photo(str(f), f.stat().st_mtime_ns), width="stretch")
            except ImageError as exc:
                col.caption(f"{f.name}: {exc}")

# ---------------------------------------------------------------- settings and start
with st.container(border=True):
    st.subheader("Model")
    c1, c2, c3 = st.columns(3)
    arch = c1.selectbox("Architecture", ["mobilenet_v2", "tutorial_cnn"], key="arch",
                        help="MobileNetV2: ImageNet transfer learning. tutorial_cnn: the original study's network.")
    alpha = c2.selectbox("MobileNetV2 alpha", list(training.MOBILENET_ALPHAS), index=1)
    size = c3.number_input("Image size (px)", 32, 320, 224, step=16, key="image_size",
                           help="224 for MobileNetV2 (its weights' size); the tutorial used 180.")
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs (head / all for the CNN)", 1, 100, 5, key="epochs")
    ft_epochs = c2.number_input("Fine-tuning epochs", 0, 100, 5)
    ft_layers = c3.number_input("Fine-tuned backbone layers", 1, 160, 60)
    batch = c4.number_input("Batch size", 4, 256, 32)
    augment = st.checkbox("Augmentation (flip, rotate, zoom)", True)
    name = st.text_input("Model name", f"{arch}-{time.strftime('%Y%m%d-%H%M')}", key="name")
    start = st.button("Train, convert and validate", type="primary", disabled=info is None)

if arch == "mobilenet_v2" and not training.weights_available_offline(alpha):
    st.info(f"The ImageNet weights for alpha {alpha} are not cached; Keras will download them. "
            "If this server is offline that fails: choose `tutorial_cnn`, which needs no download.")

if start and info is not None:
    with starting_job("training"):
        cfg = training.TrainConfig(arch=arch, alpha=alpha, image_size=int(size), epochs=int(epochs),
                                   fine_tune_epochs=int(ft_epochs) if arch == "mobilenet_v2" else 0,
                                   fine_tune_layers=int(ft_layers), batch_size=int(batch), augment=augment)
        registry.check_name(name)

        def work(job, root=info.root):
            def progress(ev):
                job.progress(ev)
                if ev.stage == "epoch":
                    job.add_row(ev.metrics)

            return workflow.train_and_optimize(root, cfg, name, progress=progress, cancel=job.cancel_token)

        RUNNER.start("training", f"training {name}", work)


# ---------------------------------------------------------------- live progress and result
@st.fragment(run_every=1.0)
def live() -> None:
    show_refusal("training")
    job = RUNNER.current
    if job is None or job.kind != "training":
        return
    rerun_when_finished(job)
    st.subheader(job.title)
    if job.running:
        fit, batch_ev, last = job.latest.get("fit"), job.latest.get("batch"), job.last
        total_epochs = int(fit.total) if fit else None
        if batch_ev is not None and batch_ev.fraction is not None:
            done = len(job.rows)
            st.progress(batch_ev.fraction, text=f"epoch {done + 1}{f' of {total_epochs}' if total_epochs else ''} "
                        f"({batch_ev.message}): batch {int(batch_ev.step)}/{int(batch_ev.total)}")
        if last is not None:
            st.caption(f"{last.stage}: {last.message} — {job.elapsed:.0f} s elapsed")
        if st.button("Cancel training"):
            job.cancel()
    if job.rows:
        hist = pd.DataFrame(job.rows)
        metric_cols = [c for c in ("accuracy", "val_accuracy", "loss", "val_loss") if c in hist]
        long = hist.melt(id_vars=["epoch"], value_vars=metric_cols, var_name="metric")
        long["panel"] = long["metric"].str.replace("val_", "")
        fig = px.line(long, x="epoch", y="value", color="metric", facet_col="panel", markers=True)
        fig.update_yaxes(matches=None, showticklabels=True)
        st.plotly_chart(fig, width="stretch", key=f"curves-{len(job.rows)}")
    if job.status == "done":
        result = job.result
        st.success(f"`{result['path'].name}` is ready and selectable in the sidebar ({job.elapsed:.0f} s).")
        st.dataframe(result["table"], hide_index=True, width="stretch")
    show_job_failure(job, "Training")


live()

# ---------------------------------------------------------------- manage models
st.divider()
st.subheader("Your models")
entries = [e for e in registry.list_models() if e.name != registry.DEFAULT_MODEL]
if not entries:
    st.caption("Models you train appear here, with a download and a delete button.")
for e in entries:
    c1, c2, c3 = st.columns([3, 1, 1])
    acc = e.metadata.get("accuracy", {}).get("val", {})
    c1.markdown(f"**{e.name}** — {e.metadata['arch']}, {len(e.metadata['classes'])} classes, "
                f"variants: {', '.join(e.variants)}; val accuracy: "
                + ", ".join(f"{v} {a:.3f}" for v, a in acc.items() if v != "n_images"))
    c2.download_button("Download zip", registry.zip_model(e.path), f"{e.name}.zip", "application/zip",
                       key=f"zip-{e.name}")
    if c3.button("Delete", key=f"del-{e.name}"):
        registry.delete_model(e.name)
        if st.session_state.get(MODEL_KEY) == e.name:
            st.session_state.pop(MODEL_KEY)
        st.rerun()
