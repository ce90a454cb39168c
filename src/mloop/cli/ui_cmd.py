"""``mloop ui``: the mloop web app (Streamlit); ``mloop mlflow-ui``: the MLflow UI on the project's store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from mloop.cli.output import console

# The app's script, found by path: the CLI and the app are sibling leaves and do not import each other.
APP = Path(__file__).resolve().parents[1] / "ui" / "app.py"


def streamlit_command(host: str, port: int) -> list[str]:
    """The command that serves the app (``mloop.ui.launch``: the pages' modules imported before Streamlit serves);
    run it in the project's folder (the app reads the nearest mloop.toml)."""
    return [sys.executable, "-m", "mloop.ui.launch", "run", str(APP),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal", "--theme.base", "light", "--runner.postScriptGC", "false"]


def ui(*, host: str | None, port: int | None, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.errors import ConfigError
    from mloop.serving.server import is_loopback
    from mloop.tracking.client import mlflow_client

    cfg = load_project(project)
    settings = cfg.settings.ui
    host = host or settings.host
    port = port or settings.port
    if not is_loopback(host) and not settings.token.get_secret_value():
        raise ConfigError(f"the app would answer anyone who reaches {host}, and it has no token",
                          hint="set [ui] token in mloop.toml or MLOOP_UI_TOKEN, or bind 127.0.0.1")
    mlflow_client(cfg)  # the store is created (migrated) under the project's lock, not by a page
    console.print(f"mloop app for {cfg.name}: http://{host}:{port}  (Ctrl-C stops it; "
                  f"the MLflow UI it links to: mloop mlflow-ui)")
    # The app reads [ui] host as the address it answers on: a later edit of mloop.toml cannot make it forget that
    # it is reachable beyond loopback (and so needs its token).
    _foreground(streamlit_command(host, port), cwd=cfg.root, what="the mloop app", port=port,
                env={**os.environ, "MLOOP_UI_HOST": host})


def mlflow_ui(*, port: int, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.tracking.client import mlflow_client, ui_command

    cfg = load_project(project)
    mlflow_client(cfg)  # the store is created (migrated) under the project's lock, not by the UI server
    console.print(f"MLflow UI for {cfg.name}: http://127.0.0.1:{port}  (Ctrl-C stops it)")
    _foreground(ui_command(cfg, port), cwd=cfg.root, what="the MLflow UI", port=port)


def _foreground(command: list[str], *, cwd: Path, what: str, port: int, env: dict[str, str] | None = None) -> None:
    """Run a server until it exits or this command is stopped. It gets its own process group, so that stopping
    it (Ctrl-C or SIGTERM) stops the workers it starts too, instead of leaving them running."""
    proc = subprocess.Popen(command, cwd=cwd, start_new_session=True, env=env)

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

        raise MloopError(f"{what} exited with code {code}", hint=f"is port {port} free? try --port {port + 1}")
