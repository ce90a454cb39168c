"""Streamlit's AppTest on mloop's app: a page (or the whole app) run in-process against a project folder."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

UI = Path(__file__).resolve().parents[2] / "src" / "mloop" / "ui"
PROJECT_KEY = "mloop_project"  # mloop.ui.context.PROJECT_KEY


def app_test(root: Path, page: str | None = None, *, timeout: float = 60) -> AppTest:
    """An AppTest of the whole app (``page=None``) or of one page script (``"predict"``) for the project at
    ``root``; call ``.run()`` on it."""
    script = UI / "app.py" if page is None else UI / "pages" / f"{page}.py"
    at = AppTest.from_file(str(script), default_timeout=timeout)
    at.session_state[PROJECT_KEY] = str(root)
    return at


def texts(at: AppTest) -> str:
    """Everything the page wrote as text (markdown, captions, alerts, titles), one line each, to search in."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success",
                 "text", "code"):
        parts.extend(str(element.value) for element in getattr(at, kind))
    return "\n".join(parts)
