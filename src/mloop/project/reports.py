"""Project-level questions that need the registry and monitoring together."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.bundle.profile import ReferenceProfile
from mloop.config import MonitorSection, ProjectConfig, duration_s
from mloop.errors import DataError
from mloop.monitor import queries
from mloop.monitor.queries import DriftComparison
from mloop.registry.fetch import fetch_bundle, model_uri, parse_model_uri, resolve_version


@dataclass
class DriftReport:
    """A batch (or what was served) compared with a registered version's training data."""

    model: str
    version: str
    what: str  # the file's name, or "predictions of the last 1h"
    frame: Any  # the rows compared (a DataFrame of the compared columns)
    profile: ReferenceProfile
    comparison: DriftComparison
    scores: Any = None  # served traffic with feedback: accuracy (classifier) or mean absolute error over time


def drift_report(cfg: ProjectConfig, *, model: str | None = None, source: Path | None = None,
                 since: str | None = None, settings: MonitorSection | None = None) -> DriftReport:
    """Drift of a data file (``source``) or of the rows served over the last ``since`` (``1h``) against the
    training data of ``model`` (``models:/NAME@ALIAS`` or ``/VERSION``; default: the champion), judged with
    ``settings`` (default: the project's ``[monitor]``, as the live server judges)."""
    if (source is None) == (since is None):
        raise DataError("pass either --from FILE (a data file) or --since DURATION (the served predictions)",
                        hint="e.g. mloop monitor report --since 1h --out report.html")
    settings = settings or cfg.settings.monitor
    uri = model_uri(model or cfg.model_name)
    name, _, _ = parse_model_uri(uri)
    served = None
    if since is not None:
        try:
            window = duration_s(since)
        except ValueError as err:
            raise DataError(f"--since {since!r}: {err}", hint="e.g. 30m, 1h or 2d") from err
        served = queries.served_rows(cfg.monitor_dir(name), name, since=time.time() - window,
                                     version=None if model is None else resolve_version(cfg, uri))
        frame, version, what = served.features, served.version, f"predictions of the last {since}"
    else:
        assert source is not None
        version, frame, what = resolve_version(cfg, uri), queries.read_frame(source), source.name
    bundle = fetch_bundle(cfg, f"models:/{name}/{version}")
    profile = bundle.profile
    try:
        comparison = queries.compare(profile, frame, settings, exclude=(bundle.info.target,))
    except DataError as err:
        raise DataError(f"{what}: {err.message} ({name} v{version})", hint=err.hint) from err
    scores = served.labelled_over_time(regression=bundle.info.regression) if served is not None else None
    return DriftReport(name, version, what, frame[comparison.compared], profile, comparison, scores)
