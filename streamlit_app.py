"""Entry point: `streamlit run streamlit_app.py`."""

import streamlit as st

from core import registry
from pages.common import model_selector

st.set_page_config(page_title="Flowers: TensorFlow vs OpenVINO", page_icon="🌼", layout="wide")


@st.cache_resource
def _clean_models_folder() -> list:
    """Once per server: remove temp folders a killed job may have left."""
    return registry.remove_stale()


_clean_models_folder()
page = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/predict.py", title="Predict", icon="🔍"),
        st.Page("pages/benchmark.py", title="Benchmark", icon="⏱️"),
        st.Page("pages/train.py", title="Train & Optimize", icon="🏋️"),
    ]
)
model_selector()
page.run()
