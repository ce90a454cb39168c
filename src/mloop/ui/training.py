"""The Continuous training page."""

from __future__ import annotations

import streamlit as st

from mloop.ui.context import project


def page() -> None:
    cfg = project()
    st.title("Continuous training")
    st.info(f"This page of {cfg.name} is being built.")
