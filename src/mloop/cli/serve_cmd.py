"""``mloop serve``: serve a registered model (default: the project's champion) or a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop.cli.output import err_console


def serve(model: str | None, *, project: Path | None, monitor_interval: float | None = None,
          **options: Any) -> None:
    """``options`` are ``[serving]`` settings given on the command line (None: not given)."""
    from pydantic import SecretStr

    from mloop.bundle.loaded import LoadedModel, load_model_dir
    from mloop.config import MonitorSection, ProjectConfig, check_renamed_variables, load_project, serving_settings
    from mloop.errors import ProjectNotFound
    from mloop.registry.fetch import load_registered
    from mloop.serving.server import check_binding, serve as run_server

    check_renamed_variables()
    given = {k: SecretStr(v) if k == "token" else v for k, v in options.items() if v is not None}
    cfg: ProjectConfig | None
    try:
        cfg = load_project(project)
    except ProjectNotFound:
        if model is None or model.startswith("models:/"):
            raise
        cfg = None  # a model folder served on its own
    settings = cfg.settings.serving.model_copy(update=given) if cfg is not None else serving_settings(**given)
    check_binding(settings.host, settings.token.get_secret_value())  # before the slow model load
    loaded: LoadedModel
    loader = None
    if model and not model.startswith("models:/"):
        loaded = load_model_dir(Path(model))
    else:
        assert cfg is not None
        project_cfg = cfg
        loaded = load_registered(project_cfg, model or f"models:/{project_cfg.model_name}@champion")

        def loader(uri: str) -> LoadedModel:
            return load_registered(project_cfg, uri)
    monitor = cfg.settings.monitor.model_copy() if cfg is not None else MonitorSection()
    if monitor_interval is not None:
        monitor.interval = monitor_interval
    # Monitoring off (interval 0): nothing would write the prediction log, alerts or status, so keep none.
    monitor_dir = cfg.monitor_dir(loaded.name) if cfg is not None and monitor.interval > 0 else None
    err_console.print(
        f"serving {loaded.name} v{loaded.version} on http://{settings.host}:{settings.port}  "
        f"(V2: POST /v2/models/{loaded.name}/infer, JSON: POST /predict, metrics: /metrics; Ctrl-C stops)",
        soft_wrap=True, markup=False)
    run_server(loaded, settings, monitor=monitor, monitor_dir=monitor_dir, loader=loader)
