"""``mloop serve``: serve a registered model (default: the project's champion) or a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop.cli.output import err_console


def serve(model: str | None, *, project: Path | None, monitor_interval: float | None = None, name: str | None = None,
          **options: Any) -> None:
    """``options`` are ``[serving]`` settings given on the command line (None: not given)."""
    from pydantic import SecretStr

    from mloop.config import ProjectConfig, check_renamed_variables, load_project, serving_settings
    from mloop.errors import ProjectNotFound
    from mloop.serving.server import serve_model

    check_renamed_variables()
    given = {k: SecretStr(v) if k == "token" else v for k, v in options.items() if v is not None}
    cfg: ProjectConfig | None
    try:
        cfg = load_project(project)
    except ProjectNotFound:
        if model is None or model.startswith("models:/"):
            raise
        cfg = None  # a model folder served on its own
    settings = cfg.settings.serving.updated(**given) if cfg is not None else serving_settings(**given)
    if name is not None:
        from mloop.deploy.local import check_name

        check_name(name)
    serve_model(model, cfg, settings, monitor_interval=monitor_interval, name=name,
                announce=lambda text: err_console.print(text, soft_wrap=True, markup=False))
