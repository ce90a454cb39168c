"""Streamlit's AppTest on mloop's app: a page (or the whole app) run in-process against a project folder."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from streamlit.testing.v1 import AppTest

from mloop.ui.context import PROJECT_KEY

UI = Path(__file__).resolve().parents[2] / "src" / "mloop" / "ui"


def app_test(root: Path, page: str | None = None, *, timeout: float = 60) -> AppTest:
    """An AppTest of the whole app (``page=None``) or of one page script (``"predict"``) for the project at
    ``root``; call ``.run()`` on it."""
    script = UI / "app.py" if page is None else UI / "page_scripts" / f"{page}.py"
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


def clone_runs(root: Path, count: int) -> None:
    """``count`` more pipeline runs in the project's store, copies of its one real run (params, metrics, tags)."""
    from mlflow.entities import Metric, Param, RunTag

    from mloop.config import load_project
    from mloop.tracking.client import mlflow_client
    from mloop.tracking.queries import recent_runs

    cfg = load_project(root)
    client = mlflow_client(cfg)
    [real] = recent_runs(cfg, limit=1)
    source = client.get_run(real.id)
    now = int(time.time() * 1000)
    for n in range(count):
        run = client.create_run(source.info.experiment_id, start_time=now - (n + 1) * 60_000,
                                run_name=f"copy-{n}")
        client.log_batch(run.info.run_id,
                         metrics=[Metric(k, v, now, 0) for k, v in source.data.metrics.items()],
                         params=[Param(k, v) for k, v in source.data.params.items()],
                         tags=[RunTag(k, v) for k, v in source.data.tags.items() if not k.startswith("mlflow.")])
        client.set_terminated(run.info.run_id, "FINISHED", end_time=now - (n + 1) * 60_000 + 2_000)


def send_predictions(url: str, rows: list[dict], total: int, batch: int = 100) -> None:
    for start in range(0, total, batch):
        chunk = [rows[(start + i) % len(rows)] for i in range(batch)]
        request = urllib.request.Request(f"{url}/predict", data=json.dumps({"instances": chunk}).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
