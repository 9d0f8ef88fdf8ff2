"""Entry point: `streamlit run streamlit_app.py`."""

from pathlib import Path

import streamlit as st

from core import paths, registry
from pages.common import model_selector

st.set_page_config(page_title="Flowers: TensorFlow vs OpenVINO", page_icon="🌼", layout="wide")


@st.cache_resource
def _clean_models_folder(root: str) -> list:
    """Once per server and models folder: remove temp folders a killed job may have left."""
    return registry.remove_stale(Path(root))


_clean_models_folder(str(paths.models_dir()))
page = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/predict.py", title="Predict", icon=":material/image_search:"),
        st.Page("pages/benchmark.py", title="Benchmark", icon=":material/speed:"),
        st.Page("pages/train.py", title="Train & Optimize", icon=":material/model_training:"),
    ]
)
model_selector()
page.run()
