"""The script ``mloop ui`` runs with Streamlit: the access check, then the pages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mloop.ui.context import authorized, project

# Not "pages/": Streamlit lists a folder of that name by itself on a first load, before st.navigation runs.
PAGES = Path(__file__).parent / "page_scripts"

st.set_page_config(page_title="mloop", layout="wide")
cfg = project()
if authorized(cfg):
    pages = [
        st.Page(PAGES / "predict.py", title="Predict", default=True),
        st.Page(PAGES / "models.py", title="Models"),
        st.Page(PAGES / "runs.py", title="Runs"),
        st.Page(PAGES / "deployments.py", title="Deployments"),
        st.Page(PAGES / "monitoring.py", title="Monitoring"),
        st.Page(PAGES / "training.py", title="Continuous training"),
    ]
    st.sidebar.markdown(f"**{cfg.name}**  \n`{cfg.root}`")
    st.sidebar.link_button("MLflow UI", cfg.settings.ui.mlflow_url, help="started with: mloop mlflow-ui")
    st.navigation(pages).run()
