"""The Predict page."""

from __future__ import annotations

import streamlit as st

from mloop.ui.context import project


def page() -> None:
    cfg = project()
    st.title("Predict")
    st.info(f"This page of {cfg.name} is being built.")
