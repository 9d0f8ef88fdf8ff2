"""Entry point: `streamlit run streamlit_app.py` (add `-- --owner` for a trusted local run)."""

from pathlib import Path

import streamlit as st

from app_pages.common import access_panel, model_selector, predict_defaults, start_loading
from core import paths
from core.app import workspace
from core.model import registry

st.set_page_config(page_title="Flowers: TensorFlow vs OpenVINO", page_icon="🌼", layout="wide")


@st.cache_resource(ttl=3600)
def _housekeeping(root: str) -> dict:
    """At start and hourly: remove temp folders a killed job left, and visitors' expired workspaces."""
    return {"stale": registry.remove_stale(Path(root)), "expired": workspace.expire()}


_housekeeping(str(paths.models_dir()))
page = st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/predict.py", title="Predict", icon=":material/image_search:"),
        st.Page("app_pages/benchmark.py", title="Benchmark", icon=":material/speed:"),
        st.Page("app_pages/train.py", title="Train & Optimize", icon=":material/model_training:"),
    ]
)
entry = model_selector()
access_panel()
try:
    page.run()
finally:
    # Once the page is drawn (a page may end early with st.stop), Predict's models load in the
    # background: a first visitor reading Home finds them ready.
    if entry is not None:
        start_loading(entry, *predict_defaults(entry))
