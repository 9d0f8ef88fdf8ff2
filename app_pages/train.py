"""Train & Optimize: train on flower_photos or your own photos, then convert, quantize and compare."""

import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st
from PIL import Image

from app_pages.job_views import show_job_failure, starting_job, watched_job
from app_pages.models import forget_selection, model_line, show_quality
from app_pages.session import access_config, current_workspace, policy, tensorflow_missing_notice
from core import paths, system
from core.app import workspace
from core.model import architectures, data, recipes, registry, training
from core.app.access import Action
from core.errors import UserError
from core.model.images import ImageError, for_display, open_image
from core.app import launch
from core.app.jobs import RUNNER


@st.cache_data(max_entries=64, show_spinner=False)
def sample_photo(path: str, mtime_ns: int) -> Image.Image:
    """A sample photo for the grid, decoded once: the page reruns on every widget change and
    users' own photos can be 12-megapixel originals. `mtime_ns` keys the cache to the file's version."""
    return for_display(open_image(path))


st.title(":material/model_training: Train & Optimize")
if tensorflow_missing_notice():
    st.stop()
rules = policy()
cfg_access = access_config()
ws = current_workspace()
caps = rules.limits

# ---------------------------------------------------------------- data source
kinds = (["Official flower_photos", "Upload an archive of class folders"]
         + ["Archive URL (allow-listed)"] * rules.allows(Action.TRAIN_FROM_URL)
         + ["Folder on the server (data roots)"] * rules.allows(Action.TRAIN_FROM_DATA_ROOTS))
kind = st.radio("Data", kinds, key="data_kind", horizontal=True)
source: str | None = None
cache = None  # None: the shared cache (public data); a workspace for a visitor's own photos
if kind.startswith("Official"):
    st.caption(f"[flower_photos]({data.OFFICIAL_URL}) (CC-BY 2.0, 3670 photos, 5 classes): downloaded once, then "
               "reused from the cache and checked against its recorded size and sha256.")
    if st.button("Fetch and inspect"):
        bar = st.progress(0.0, text="fetching")

        def show(ev):
            if ev.fraction is not None:
                bar.progress(ev.fraction, text=f"{ev.message} ({ev.step / 2**20:.0f} MB)" if ev.stage == "download"
                             else ev.message)

        try:
            st.session_state["official_root"] = str(data.resolve(data.OFFICIAL_URL, progress=show))
        except UserError as exc:
            st.error(str(exc))
        bar.empty()
    source = st.session_state.get("official_root")
elif kind.startswith("Upload"):
    # A new key after each job start clears the uploader, so photos deleted at the job's end are not stored again.
    upload = st.file_uploader("Archive of class folders (e.g. my_photos/roses/*.jpg, my_photos/tulips/*.jpg)",
                              type=["zip", "tgz", "gz", "tar"], key=f"archive-{st.session_state.get('uploads', 0)}")
    if upload is not None:
        if not upload.name.lower().endswith(data.ARCHIVE_SUFFIXES):
            st.error(f"{upload.name} is not a .zip, .tgz, .tar.gz or .tar archive")
        else:
            source, cache = str(ws.store_upload(upload.name, upload.getvalue())), ws.datasets
elif kind.startswith("Archive URL"):
    st.caption("Allowed: " + ", ".join(cfg_access.allowed_urls) + " (https only; add more with `allowed_urls` in "
               "secrets or FLOWERS_ALLOWED_URLS).")
    url = st.text_input("Archive URL", key="url", placeholder="https://...")
    if url:
        source = url
else:
    roots = ", ".join(f"`{r}`" for r in cfg_access.data_roots) or "none configured (FLOWERS_DATA_ROOTS or `data_roots`)"
    st.caption(f"Data roots: {roots}. Paths are taken inside them; links out of them are refused.")
    folder = st.text_input("Folder path", placeholder="my_photos", key="folder")
    if folder:
        source = folder

info = None
if source:
    try:
        root = data.resolve(source, cache=cache, policy=data.DownloadPolicy(cfg_access.allowed_urls),
                            roots=None if kind.startswith(("Official", "Upload")) else cfg_access.data_roots)
        info = data.scan(root)
    except (UserError, OSError) as exc:
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

# ---------------------------------------------------------------- recipe, memory and start
with st.container(border=True):
    st.subheader("Model")
    recipe_name = st.selectbox("Recipe", list(recipes.RECIPES), key="recipe",
                               format_func=lambda r: f"{r} — {recipes.RECIPES[r].summary}")
    recipe = recipes.RECIPES[recipe_name].config
    c1, c2, c3 = st.columns(3)
    arch = c1.selectbox("Architecture", list(architectures.ARCHS), index=architectures.ARCHS.index(recipe.arch),
                        key=f"arch-{recipe_name}", format_func=architectures.describe,
                        help=" ".join(a.help for a in architectures.ARCHITECTURES.values()))
    alpha = c2.selectbox("MobileNetV2 alpha", list(architectures.MOBILENET_ALPHAS), disabled=arch != "mobilenet_v2",
                         index=architectures.MOBILENET_ALPHAS.index(recipe.alpha), key=f"alpha-{recipe_name}")
    size = c3.number_input("Image size (px)", 32, 320, recipe.image_size, step=16, key=f"size-{recipe_name}",
                           help="The backbones' ImageNet weights were trained at 224 to 260 px; larger photos "
                                "often help, at a quadratic cost in time and memory. The tutorial used 180.")
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs (head / all for the CNN)", 1, 100, recipe.epochs, key=f"epochs-{recipe_name}")
    ft_epochs = c2.number_input("Fine-tuning epochs", 0, 100, recipe.fine_tune_epochs, key=f"ft-{recipe_name}")
    ft_layers = c3.number_input("Fine-tuned backbone layers", 1, 200, recipe.fine_tune_layers,
                                key=f"ftl-{recipe_name}")
    batch = c4.number_input("Batch size", 4, 256, recipe.batch_size, key=f"batch-{recipe_name}")
    c1, c2, c3, c4 = st.columns(4)
    augment = c1.checkbox("Augmentation (flip, rotate, zoom)", recipe.augment, key=f"aug-{recipe_name}")
    strong = c2.checkbox("Stronger: random crops and colour jitter", recipe.strong_augment, key=f"strong-{recipe_name}",
                         disabled=not augment)
    mix = c2.selectbox("Mixing", list(recipes.MIXES), index=recipes.MIXES.index(recipe.mix), key=f"mix-{recipe_name}",
                       help="mixup blends two training photos and their labels; cutmix pastes a patch of one "
                            "photo into another, labels weighted by area")
    fit_on_val = c4.checkbox("Final fit on train + validation", recipe.fit_on_val, key=f"final-{recipe_name}",
                             help="Trains on the validation photos too, for exactly the epochs above (no early "
                                  "stopping), once a recipe is fixed. The held-out split stays untouched and is "
                                  "the model's accuracy; the calibration is fitted on photos it has seen.")
    schedule = c3.selectbox("Fine-tuning learning rate", list(recipes.SCHEDULES),
                            index=recipes.SCHEDULES.index(recipe.schedule), key=f"sched-{recipe_name}",
                            help="cosine: one epoch of warm-up, then a cosine decay to zero")
    # The default is set once per session: a default that changed every minute reset what was typed.
    st.session_state.setdefault("name", f"{arch}-{time.strftime('%Y%m%d-%H%M')}")
    name = st.text_input("Model name", key="name")
    cfg = None
    try:
        cfg = recipes.TrainConfig(**(asdict(recipe) | dict(
            arch=arch, alpha=alpha, image_size=int(size), epochs=int(epochs),
            fine_tune_epochs=int(ft_epochs) if architectures.get(arch).transfer else 0, fine_tune_layers=int(ft_layers),
            batch_size=int(batch), augment=augment, strong_augment=augment and strong, mix=mix,
            schedule=schedule, fit_on_val=fit_on_val)))
    except UserError as exc:
        st.error(str(exc))
    fits = True
    if cfg is not None and info is not None:
        n_train = cfg.training_photos(info.n_images)
        estimate = training.estimate_peak_mb(cfg, n_train)
        budget = caps.memory_budget_mb
        text = (f"Estimated peak memory of the app while this trains: **{estimate:.0f} MB** ({n_train} training "
                f"photos at {cfg.image_size} px, batch {cfg.batch_size})")
        if budget is not None and estimate > budget:
            fits = False
            closest = training.closest_fitting_recipe(n_train, budget)
            st.error(f"{text}: over this deployment's {budget:.0f} MB budget. Choose **{closest}**, a smaller image "
                     "size or batch, or fewer fine-tuned layers." if closest else f"{text}: over this deployment's "
                     f"{budget:.0f} MB budget.")
        else:
            st.caption(text + (f"; the budget is {budget:.0f} MB." if budget else "."))
    quota = system.cpu_quota_cores()
    if quota is not None and quota < 1:
        # Measured (docs/deploying.md): below one core a job's time grows as 1 / cores.
        st.caption(f"This server may use {quota:g} of a CPU core (its container's quota): expect the job to take "
                   f"about {1 / quota:.0f}× as long as with a full core"
                   + (f"; it is stopped after {caps.train_max_seconds / 60:.0f} min."
                      if caps.train_max_seconds else "."))
    blocked = cfg is None or architectures.weights_missing(cfg.arch, cfg.weights)
    start = st.button("Train, convert and validate", type="primary", key="start",
                      disabled=info is None or blocked or not fits)

if cfg is not None and (note := architectures.weights_note(cfg.arch, cfg.alpha, cfg.image_size, cfg.weights)):
    st.info(note)

if start and info is not None and cfg is not None:
    with starting_job("training"):
        launch.start_training(RUNNER, info.root, cfg, name, rules.output_root(paths.models_dir(), ws.models),
                              owner=ws.key, time_limit_s=caps.train_max_seconds, on_end=ws.clear_data)
        st.session_state["uploads"] = st.session_state.get("uploads", 0) + 1


# ---------------------------------------------------------------- live progress and result
@st.fragment(run_every=1.0)
def live() -> None:
    job = watched_job("training")
    if job is None:
        return
    st.subheader(job.title)
    if job.running:
        fit, batch_ev, last = job.by_stage.get("fit"), job.by_stage.get("batch"), job.last_event
        total_epochs = int(fit.total) if fit else None
        fitting = last is not None and last.stage in ("fit", "batch", "epoch")  # not converting or validating yet
        if fitting and batch_ev is not None and batch_ev.fraction is not None:
            epoch = len(job.rows) + 1 if total_epochs is None else min(len(job.rows) + 1, total_epochs)
            st.progress(batch_ev.fraction, text=f"epoch {epoch}{f' of {total_epochs}' if total_epochs else ''} "
                        f"({batch_ev.message}): batch {int(batch_ev.step)}/{int(batch_ev.total)}")
        if last is not None:
            st.caption(f"{last.stage}: {last.message} — {job.elapsed:.0f} s elapsed, "
                       f"job memory {job.peak_rss_mb:.0f} MB peak")
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
        st.success(f"`{Path(result['path']).name}` is ready and selectable in the "
                   f"sidebar ({job.elapsed:.0f} s, job memory {job.peak_rss_mb:.0f} MB peak).")
        st.dataframe(pd.DataFrame(result["table"]), hide_index=True, width="stretch")
        trained = Path(result["path"])
        if (trained / registry.METADATA_FILE).exists():
            show_quality(registry.ModelEntry(trained.name, trained, registry.read_card(trained), True))
    show_job_failure(job, "Training")


live()


# ---------------------------------------------------------------- manage models
st.divider()
st.subheader("Your models")
mine = registry.list_models(ws.models, private=True)
if not mine:
    st.caption("Models you train appear here, private to this browser, with a download and a delete button"
               + ("." if rules.allows(Action.PUBLISH) else f"; they are deleted after {workspace.MAX_AGE_S // 3600} h."))
for e in mine:
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    c1.markdown(model_line(e))
    # Zipped only when clicked: the page reruns on every widget change.
    c2.download_button("Download zip", partial(registry.zip_model, e.path), f"{e.name}.zip", "application/zip",
                       key=f"zip-{e.name}")
    if c3.button("Delete", key=f"del-{e.name}"):
        registry.delete_model(e.name, ws.models)
        forget_selection(e)
        st.rerun()
    if rules.allows(Action.PUBLISH) and c4.button("Publish", key=f"pub-{e.name}", help="Copy it to the shared models, for everyone"):
        try:
            registry.publish_copy(e.path)
            st.rerun()
        except UserError as exc:
            st.error(str(exc))
