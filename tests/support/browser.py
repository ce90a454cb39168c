"""A real browser on the real app: ``mloop ui`` started on a free port of 127.0.0.1, driven by Playwright through
Debian's Chromium (installed by the test setup when missing; Playwright never downloads a browser)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.servers import MLOOP, free_port, system_binary, wait_for_http

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "ui"  # kept after the run, to be looked at (git ignores it)


@contextmanager
def running_app(root: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``mloop ui`` for the project at ``root``; yields its URL and stops it (and Streamlit) after."""
    port = free_port()
    proc = subprocess.Popen([MLOOP, "ui", "--port", str(port)], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/_stcore/health", proc)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium (Debian's package) under Playwright; yields the Browser."""
    from playwright.sync_api import sync_playwright

    executable = system_binary("chromium", "chromium")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def wait_until_idle(page: object, timeout: float = 30.0) -> float:
    """Wait until Streamlit has finished running the page's script (the app's ``data-test-script-state`` is
    ``notRunning``, with elements in the main block); returns the seconds waited. Call it once the run to wait
    for has begun (e.g. once the new page's title shows)."""
    started = time.perf_counter()
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"] '  # type: ignore[attr-defined]
                           '[data-testid="stMain"] [data-testid="stElementContainer"]', timeout=timeout * 1000)
    return time.perf_counter() - started


def screenshot(page: object, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def open_page(page: Any, title: str) -> float:
    """Click a page in the sidebar; the seconds until Streamlit finished drawing it."""
    started = time.perf_counter()
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.wait_for_function(f"() => document.querySelector('h1') && document.querySelector('h1').innerText"
                           f".startsWith({json.dumps(title)})", timeout=30_000)
    wait_until_idle(page)
    return time.perf_counter() - started
