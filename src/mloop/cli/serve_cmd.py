"""``mloop serve``: serve a registered model (default: the project's champion) on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

from mloop.cli.output import err_console


def serve(model: str | None, *, host: str, port: int, token: str | None, project: Path | None,
          max_batch_rows: int, max_wait_ms: float, max_body_mb: float, access_log: bool,
          monitor_interval: float | None = None) -> None:
    from mloop.models.loaded import LoadedModel, load_model_dir, load_registered
    from mloop.serving.server import check_binding, serve as run_server

    check_binding(host, token or _env_token())
    from mloop.config import MonitorSection, ProjectConfig, load_project
    from mloop.errors import ProjectNotFound

    loaded: LoadedModel
    loader = None
    cfg: ProjectConfig | None = None
    if model and not model.startswith("models:/"):
        loaded = load_model_dir(Path(model))
        try:  # a model folder served inside a project is monitored with the project's settings
            cfg = load_project(project)
        except ProjectNotFound:
            cfg = None
    else:
        cfg = load_project(project)
        loaded = load_registered(cfg, model or f"models:/{cfg.model_name}@champion")

        def loader(uri: str) -> LoadedModel:
            assert cfg is not None
            return load_registered(cfg, uri)
    monitor = cfg.settings.monitor.model_copy() if cfg is not None else MonitorSection()
    if monitor_interval is not None:
        monitor.interval = monitor_interval
    # Monitoring off (interval 0): nothing would write the prediction log, alerts or status, so keep none.
    monitor_dir = cfg.monitor_dir(loaded.name) if cfg is not None and monitor.interval > 0 else None
    err_console.print(
        f"serving {loaded.name} v{loaded.version} on http://{host}:{port}  "
        f"(V2: POST /v2/models/{loaded.name}/infer, JSON: POST /predict, metrics: /metrics; Ctrl-C stops)",
        soft_wrap=True, markup=False)
    run_server(loaded, host=host, port=port, token=token, max_body_bytes=int(max_body_mb * 1024 * 1024),
               max_batch_rows=max_batch_rows, max_wait_ms=max_wait_ms, access_log=sys.stderr if access_log else None,
               loader=loader, monitor=monitor, monitor_dir=monitor_dir)


def _env_token() -> str | None:
    import os

    return os.environ.get("MLOOP_TOKEN") or None
