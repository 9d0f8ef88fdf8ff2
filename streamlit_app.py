"""Entry point: `streamlit run streamlit_app.py` (add `-- --owner` for a trusted local run)."""

from pathlib import Path

import streamlit as st

from app_pages.models import model_selector
from app_pages.predictors import predict_defaults, start_loading
from app_pages.session import access_panel, policy
from core import paths
from core.app import workspace
from core.app.access import Page
from core.model import registry

st.set_page_config(page_title="Flowers: TensorFlow vs OpenVINO", page_icon=":material/local_florist:", layout="wide")


@st.cache_resource(ttl=3600)
def _housekeeping(root: str) -> dict:
    """At start and hourly: remove temp folders a killed job left, and visitors' expired workspaces."""
    return {"stale": registry.remove_stale(Path(root)), "expired": workspace.expire()}


_housekeeping(str(paths.models_dir()))
# A markdown table wider than its column (Predict's top k with four backends: about 500 px on a
# 390 px phone) scrolls inside its own box, instead of pushing the whole page sideways.
st.html("<style>[data-testid='stMarkdownContainer'] table "
        "{ display: block; width: max-content; max-width: 100%; overflow-x: auto; }</style>")
PAGES = {  # title and icon of each page of core.app.access.Page
    Page.HOME: ("Home", ":material/home:"),
    Page.PREDICT: ("Predict", ":material/image_search:"),
    Page.BENCHMARK: ("Benchmark", ":material/speed:"),
    Page.TUNE: ("Tune", ":material/tune:"),
    Page.TRAIN: ("Train & Optimize", ":material/model_training:"),
    Page.SHARED_MODELS: ("Shared models", ":material/folder_shared:"),
}
# Built per role: a page the policy does not list for this session is not registered, so not reachable.
page = st.navigation([st.Page(f"app_pages/{p.value}.py", title=PAGES[p][0], icon=PAGES[p][1], default=p is Page.HOME)
                      for p in policy().pages()])
entry = model_selector()
access_panel()
# Predict's models load in the background from the first visit on, while its page imports and draws
# (before: once it was drawn): a first visitor going to Predict got an answer about 0.6 s sooner,
# Home the same (docs/deploying.md).
if entry is not None:
    start_loading(entry, *predict_defaults(entry))
page.run()
