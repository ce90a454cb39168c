"""``mloop ui``: the MLflow UI on the project's store, bound to 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from types import FrameType

from mloop.cli.output import console


def ui(*, port: int, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.tracking.client import mlflow_client, ui_command

    cfg = load_project(project)
    mlflow_client(cfg)  # the store is created (migrated) under the project's lock, not by the UI server
    console.print(f"MLflow UI for {cfg.name}: http://127.0.0.1:{port}  (Ctrl-C stops it)")
    # Its own process group, so that stopping `mloop ui` (Ctrl-C or SIGTERM) stops the MLflow server and
    # the web workers it starts too, instead of leaving them running.
    proc = subprocess.Popen(ui_command(cfg, port), start_new_session=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        from mloop.errors import MloopError

        raise MloopError(f"the MLflow UI exited with code {code}", hint=f"is port {port} free? try --port {port + 1}")
