"""``mloop ui``: the MLflow UI on the project's store, bound to 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mloop.cli.output import console


def ui_command(tracking_uri: str, artifact_root: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
            "--default-artifact-root", artifact_root, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def ui(*, port: int, project: Path | None) -> None:
    from mloop.config import load_project

    cfg = load_project(project)
    cfg.store.mkdir(parents=True, exist_ok=True)
    console.print(f"MLflow UI for {cfg.name}: http://127.0.0.1:{port}  (Ctrl-C stops it)")
    proc = subprocess.Popen(ui_command(cfg.tracking_uri, cfg.artifact_location, port))
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    if code not in (0, -15):
        from mloop.errors import MloopError

        raise MloopError(f"the MLflow UI exited with code {code}", hint=f"is port {port} free? try --port {port + 1}")
