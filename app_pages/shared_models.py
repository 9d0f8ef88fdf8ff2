"""Shared models (the owner's page): every published model, which one is the default, its serving
export, and deleting one."""

import streamlit as st

from app_pages.models import forget_selection, model_line, serving_download
from app_pages.session import policy
from core.app.access import Action
from core.model import registry

st.title(":material/folder_shared: Shared models")
if not policy().allows(Action.PUBLISH):  # navigation lists this page for the owner only; asked again here
    st.stop()
st.caption("Published models, for everyone. Publish one of your own from the Train page.")
default = registry.default_model_name()
for e in registry.list_models():
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    c1.markdown(model_line(e) + (" — **default**" if e.name == default else ""))
    with c4:
        serving_download(e, f"serving-shared-{e.name}")
    if e.name != default and c2.button("Make default", key=f"default-{e.name}"):
        registry.set_default_model(e.name)
        st.rerun()
    if e.name != default and c3.button("Delete", key=f"del-shared-{e.name}"):
        registry.delete_model(e.name)
        forget_selection(e)
        st.rerun()
