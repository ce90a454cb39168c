"""What every page needs: the project (read again on each rerun, so an edited ``mloop.toml`` is seen), the
access check when the app has a token, and the links into the MLflow UI."""

from __future__ import annotations

import hmac
from pathlib import Path
from urllib.parse import quote

import streamlit as st

from mloop.config import ProjectConfig
from mloop.errors import MloopError

PROJECT_KEY = "mloop_project"  # a test (AppTest) may name the project folder here instead of the working folder


def project() -> ProjectConfig:
    """The project the app runs for: the nearest ``mloop.toml`` at or above the working folder (``mloop ui`` starts
    Streamlit there). A project that cannot be read stops the page with the error and its fix."""
    from mloop.config import load_project

    root = st.session_state.get(PROJECT_KEY)
    try:
        return load_project(Path(root) if root else None)
    except MloopError as err:
        stop_with(err)
        raise AssertionError("unreachable") from err  # st.stop() raises


def stop_with(err: MloopError) -> None:
    """Show an mloop error as the CLI prints it (the message, then the fix) and stop the page."""
    st.error(f"{err}" + (f"\n\n**Fix:** {err.hint}" if getattr(err, "hint", None) else ""))
    st.stop()


def authorized(cfg: ProjectConfig) -> bool:
    """True when the app has no token, or this browser session typed the right one. Otherwise shows the form."""
    from mloop.serving.server import is_loopback

    expected = cfg.settings.ui.token.get_secret_value()
    if not expected and not is_loopback(cfg.settings.ui.host):
        # `mloop ui` hands the address it bound to the app (MLOOP_UI_HOST): a token removed from mloop.toml
        # while the app answers beyond loopback closes it rather than opening it to everyone
        st.error(f"This app answers on {cfg.settings.ui.host}, beyond loopback, and mloop.toml no longer sets "
                 "[ui] token.\n\n**Fix:** set [ui] token (or MLOOP_UI_TOKEN) again, or restart it on 127.0.0.1.")
        return False
    if not expected or st.session_state.get("mloop_authorized"):
        return True
    st.title("mloop")
    with st.form("token"):
        typed = st.text_input("Token", type="password", help="[ui] token in mloop.toml, or MLOOP_UI_TOKEN")
        sent = st.form_submit_button("Open")
    if sent:
        if hmac.compare_digest(typed.encode(), expected.encode()):
            st.session_state["mloop_authorized"] = True
            st.rerun()
        st.error("That is not the app's token.")
    return False


def mlflow_run_url(cfg: ProjectConfig, experiment_id: str, run_id: str) -> str:
    return f"{cfg.settings.ui.mlflow_url.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"


def mlflow_version_url(cfg: ProjectConfig, model: str, version: str) -> str:
    return f"{cfg.settings.ui.mlflow_url.rstrip('/')}/#/models/{quote(model)}/versions/{quote(version)}"
