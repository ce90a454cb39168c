"""Build and start the model server: the only place that changes process-wide state for serving.

``create_app`` assembles the parts (metrics, the live monitor, the dataplane, the ASGI app) for a
loaded model and touches nothing global, so a process may hold several. ``serve`` is the entrypoint
of ``mloop serve``: it configures the process (scikit-learn's finiteness check, warnings, the native thread
pools, the garbage collector), warms the model up and runs uvicorn (uvloop + httptools, with the connection
deadlines and limit of ``serving.connection``) until SIGINT/SIGTERM.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from mloop.bundle.loaded import FEATURE_NAMES_WARNING, LoadedModel
from mloop.config import MonitorSection, ProjectConfig, ServingSection
from mloop.errors import ConfigError
from mloop.serving.asgi import ServerApp
from mloop.serving.dataplane import DataPlane, Loader, warm_up


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str) -> None:
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to serve on {host} without a token: anyone on the network could call the model",
            hint="set MLOOP_SERVING_TOKEN (or --token), or bind to 127.0.0.1",
        )


def create_app(model: LoadedModel, settings: ServingSection | None = None, *, monitor: MonitorSection | None = None,
               monitor_dir: Path | None = None, loader: Loader | None = None,
               access_log: TextIO | None = sys.stderr) -> ServerApp:
    """The ASGI app serving ``model`` with its own metrics registry and live monitor.

    ``monitor`` configures live monitoring and alerting; ``monitor_dir`` is where the prediction log,
    alerts and status are kept (none: in memory only). With an admin token and a ``loader``,
    ``POST /admin/model`` swaps the served version in place.
    """
    from mloop.monitor.live import LiveMonitor
    from mloop.monitor.metrics import ServerMetrics
    from mloop.registry.metrics import live_metrics

    settings = settings or ServingSection()
    monitor = monitor or MonitorSection()
    metrics = ServerMetrics()
    live = LiveMonitor(model, metrics, monitor, monitor_dir, live_metrics=lambda served: live_metrics(served.classes))
    dataplane = DataPlane(model, metrics, live, max_batch_rows=settings.max_batch_rows,
                          max_wait_s=settings.max_wait_ms / 1000.0, loader=loader)
    return ServerApp(dataplane, token=settings.token.get_secret_value(), alert_token=settings.receiver_token,
                     admin_token=settings.admin_token.get_secret_value(), max_body_bytes=settings.max_body_bytes,
                     max_upload_bytes=settings.max_upload_bytes, access_log=access_log if settings.access_log else None,
                     monitor_interval=monitor.interval)


def serve_model(model: str | None, cfg: ProjectConfig | None, settings: ServingSection, *,
                monitor_interval: float | None = None, name: str | None = None,
                announce: Callable[[str], None] = print) -> None:
    """Serve ``model`` — ``models:/NAME@ALIAS`` or ``/VERSION`` of the project (default: its champion), or a model
    folder — with the project's ``[monitor]`` (or the defaults, for a folder served without a project).

    The server monitors into ``.mloop/monitor/<name>/`` (default: the model's name), and holds that folder
    while it runs: a second server of the same model in the project is refused unless it gets its own
    ``name``, so no two servers read each other's alerts and labels."""
    from mloop.bundle.loaded import load_model_dir
    from mloop.registry.fetch import is_model_name, load_registered, model_uri

    check_binding(settings.host, settings.token.get_secret_value())  # before the slow model load
    _configure_process(settings.compute_threads)  # before the load, which already predicts (the bundle's checks)
    loader: Loader | None = None
    if model and (Path(model).exists() or cfg is None or not is_model_name(model)):
        loaded = load_model_dir(Path(model))
    else:
        if cfg is None:
            raise ConfigError("serving a registered model needs its project",
                              hint="run inside the project folder, pass --project PATH, or serve a model folder")
        project = cfg
        loaded = load_registered(project, model_uri(model or project.model_name))

        def loader(uri: str) -> LoadedModel:
            return load_registered(project, uri)
    monitor = (cfg.settings.monitor if cfg is not None else MonitorSection()).model_copy()
    if monitor_interval is not None:
        monitor.interval = monitor_interval
    # Monitoring off (interval 0): nothing would write the prediction log, alerts or status, so keep none.
    monitor_dir = cfg.monitor_dir(name or loaded.name) if cfg is not None and monitor.interval > 0 else None
    held = None
    if monitor_dir is not None:
        try:
            held = _hold(monitor_dir, name or loaded.name)
        except OSError as err:  # a damaged folder: serving goes on, monitored in memory only, and says so
            announce(f"warning: the monitoring folder {monitor_dir} is unusable ({err.strerror}: {err.filename}); "
                     "serving without the prediction log, alert log and status file (mloop doctor repairs it)")
            monitor_dir = None
    announce(f"serving {loaded.name} v{loaded.version} on http://{settings.host}:{settings.port}  "
             f"(V2: POST /v2/models/{loaded.name}/infer, JSON: POST /predict, metrics: /metrics; Ctrl-C stops)")
    try:
        serve(loaded, settings, monitor=monitor, monitor_dir=monitor_dir, loader=loader)
    finally:
        if held is not None:
            os.close(held)


def _hold(folder: Path, name: str) -> int:
    """The lock on a monitoring folder, for as long as this server runs; ConfigError if another server has it."""
    from mloop._fs import hold_lock

    lock = folder / "server.lock"
    held = hold_lock(lock)
    if held is None:
        try:
            holder = f" (pid {int(lock.read_text(encoding='ascii'))})"
        except (OSError, ValueError):
            holder = ""
        raise ConfigError(f"another server{holder} of this project monitors into {folder}",
                          hint=f"give this one its own monitoring folder: --name {name}-2 (or stop the other)")
    return held


def serve(model: LoadedModel, settings: ServingSection, *, monitor: MonitorSection | None = None,
          monitor_dir: Path | None = None, loader: Loader | None = None) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests are answered before the process exits."""
    import uvicorn

    from mloop.serving.connection import http_protocol

    check_binding(settings.host, settings.token.get_secret_value())
    _configure_process(settings.compute_threads)
    warm_up(model)
    app = create_app(model, settings, monitor=monitor, monitor_dir=monitor_dir, loader=loader)
    # Everything loaded so far (MLflow, pandas, scikit-learn, the model) lives as long as the process:
    # moved out of the collector's sight, a full collection no longer pauses requests to scan it.
    import gc

    gc.collect()
    gc.freeze()
    # httptools with the header deadline, keep-alive timeout and connection limit of [serving]
    _allow_open_files(settings.max_connections)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, loop="uvloop", http=http_protocol(settings),
                            lifespan="on", access_log=False, log_level="warning", timeout_graceful_shutdown=30,
                            server_header=False, date_header=False, proxy_headers=False)
    uvicorn.Server(config).run()


def _allow_open_files(connections: int, spare: int = 256) -> None:
    """Raise this process's soft limit of open files (often 1024) toward the hard limit, so ``connections``
    clients plus the files the server keeps open fit: beyond it, accepting a connection would fail."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            print(f"warning: at most {target} open files (ulimit -Hn): fewer than [serving] max_connections "
                  f"{connections} clients can connect at once", file=sys.stderr)


def _configure_process(compute_threads: int) -> None:
    """What a serving process changes for itself (and only an entrypoint may)."""
    _limit_compute_threads(compute_threads)  # first: scikit-learn's OpenMP runtime reads it as it loads
    import warnings

    import sklearn

    # Models fitted on DataFrames warn on every array; the server has checked names itself.
    warnings.filterwarnings("ignore", message=FEATURE_NAMES_WARNING, category=UserWarning)
    # scipy falls back from its exact KS distribution to the asymptotic one for some window sizes, and
    # says so on every monitoring update; the p-value it returns is the documented one either way.
    warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful", category=RuntimeWarning)
    # Every request was checked for NaN and infinity already (RequestError names the feature); a second
    # scan inside scikit-learn on each predict call would only repeat it.
    sklearn.set_config(assume_finite=True)


def _limit_compute_threads(threads: int) -> None:
    """The native code of a prediction (OpenMP, BLAS) runs on at most ``threads`` threads.

    Requests are answered on the event loop, one micro-batch at a time. With a thread per core, an OpenMP
    region (a k-NN's distances, a gradient-boosted model's trees) waits at its barrier for a thread that the
    process's other work (a monitoring update, a version loading, a shadow scoring) or the machine has
    displaced, and every request behind it waits too: 0.1 s stalls measured on 2 cores, p99 ~50 ms instead of
    ~4 ms. Libraries loaded from now on read the variables (OpenMP's at load, for every thread); the ones
    loaded already are limited by threadpoolctl for this thread, the one that runs the loop."""
    from threadpoolctl import threadpool_limits

    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    threadpool_limits(limits=threads)
