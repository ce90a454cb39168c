"""Start the model server: load the model once, warm it up, serve it with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import ipaddress
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mloop.errors import ConfigError
from mloop.models.loaded import LoadedModel

if TYPE_CHECKING:
    from mloop.config import MonitorSection


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to serve on {host} without a token: anyone on the network could call the model",
            hint="set MLOOP_TOKEN (or --token), or bind to 127.0.0.1",
        )


def warm_up(model: LoadedModel) -> None:
    """Predict once on a typical row, so a model that cannot predict fails now, not on the first request."""
    import numpy as np

    means = [(model.profile.features_.get(f.name, {}).get("mean", 0.0) if model.profile else 0.0)
             for f in model.features]
    model.predict(np.asarray([means], dtype=np.float64))


def serve(model: LoadedModel, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          max_body_bytes: int = 10 * 1024 * 1024, max_batch_rows: int = 1024, max_wait_ms: float = 0.0,
          access_log: TextIO | None = sys.stderr, loader: Callable[[str], LoadedModel] | None = None,
          monitor: MonitorSection | None = None, monitor_dir: Path | None = None) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests are answered before the process exits.

    With ``MLOOP_ADMIN_TOKEN`` set (managed deployments) and a ``loader``, ``POST /admin/model`` swaps
    the served version in place. ``monitor`` configures live monitoring and alerting; ``monitor_dir``
    is where the prediction log, alerts and status are kept (none: in memory only).
    """
    import uvicorn

    from mloop.serving.app import ModelServer

    token = token or os.environ.get("MLOOP_TOKEN") or None
    check_binding(host, token)
    # Models fitted on DataFrames warn on every array; the server has checked names itself.
    warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
    # scipy falls back from its exact KS distribution to the asymptotic one for some window sizes, and
    # says so on every monitoring update; the p-value it returns is the documented one either way.
    warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful", category=RuntimeWarning)
    # Every request was checked for NaN and infinity already (RequestError names the feature); a second
    # scan inside scikit-learn on each predict call would only repeat it.
    import sklearn

    sklearn.set_config(assume_finite=True)
    warm_up(model)
    # Everything loaded so far (MLflow, pandas, scikit-learn, the model) lives as long as the process:
    # moved out of the collector's sight, a full collection no longer pauses requests to scan it.
    import gc

    gc.collect()
    gc.freeze()
    app = ModelServer(model, token=token, max_body_bytes=max_body_bytes, max_batch_rows=max_batch_rows,
                      max_wait_s=max_wait_ms / 1000.0, access_log=access_log,
                      admin_token=os.environ.get("MLOOP_ADMIN_TOKEN") or None, loader=loader,
                      monitor=monitor, monitor_dir=monitor_dir, alert_token=os.environ.get("MLOOP_ALERT_TOKEN") or None)
    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_level="warning", timeout_graceful_shutdown=30,
                            server_header=False, date_header=False, proxy_headers=False)
    uvicorn.Server(config).run()
