"""Read-side queries over a served model's monitoring data, typed: for the CLI, the UI and the automation agent.

A monitor folder (``.mloop/monitor/<model>/``) holds the prediction and feedback logs, ``alerts.jsonl``
and ``status.json``; only the modules of this package read them, and callers go through here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.config import MonitorSection
from mloop.errors import DataError
from mloop.monitor.alerts import ALERT_LOG, AlertEvent, firing, read_alert_log
from mloop.monitor.drift import DriftDetector, DriftReport
from mloop.monitor.model import Reference
from mloop.monitor.predlog import (
    OUTLIER,
    REQUEST_ID,
    TS,
    VERSION,
    RotatingParquetLog,
    feature_columns,
    read_log,
    read_newest,
)
from mloop.monitor.status import STATUS_FILE, MonitorStatus, read_operations, read_status


def monitored(root: Path) -> list[str]:
    """The names of the monitor folders under ``root`` (``.mloop/monitor``) that hold a status or a prediction
    log: every model or deployment that was served with monitoring, sorted."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if (p / STATUS_FILE).is_file() or RotatingParquetLog(p / "predictions").files())


def status(folder: Path) -> MonitorStatus | None:
    """The served model's last monitoring status (None before the first update)."""
    return read_status(folder)


@dataclass
class AlertHistory:
    firing: dict[tuple[str, str], AlertEvent]  # (source, alert) -> its firing event, now
    events: list[AlertEvent]  # oldest first


def alert_history(folder: Path, *, since: float | None = None, limit: int | None = None) -> AlertHistory:
    """The alerts firing now, and the events since ``since`` (the last ``limit`` of them)."""
    events = read_alert_log(folder / ALERT_LOG)
    now_firing = firing(events)
    if since is not None:
        events = [e for e in events if e.ts >= since]
    if limit is not None:
        events = events[-limit:]
    return AlertHistory(now_firing, events)


@dataclass
class ServedRows:
    """What one version of a model served over a while: its rows and the labels sent for them."""

    predictions: Any  # a DataFrame of the prediction log's rows of that version (``predlog`` columns)
    feedback: Any  # a DataFrame of the feedback log over the same while (empty when no label came)
    version: str

    @property
    def features(self) -> Any:
        """The feature columns of the rows (a DataFrame)."""
        return self.predictions[feature_columns(self.predictions)]

    def labelled_over_time(self, *, regression: bool) -> Any:
        """How the labelled rows scored in equal time buckets: the mean absolute error of a regressor, the accuracy
        of a classifier (``report.labelled_over_time``); None without labels."""
        from mloop.monitor.report import labelled_over_time

        if not len(self.feedback):
            return None
        return labelled_over_time(self.predictions, self.feedback, regression=regression)


def served_rows(folder: Path, name: str, *, since: float | None = None, version: str | None = None,
                window: str = "") -> ServedRows:
    """The rows served since ``since`` (all without it) by ``version``, or by the version served last, and the
    labels sent for them; DataError if none (``window`` says the while in words, e.g. "in this window")."""
    return served_log(folder, name, since=since, window=window or _since_words(since)).rows(
        version, window=window or _since_words(since))


def _since_words(since: float | None) -> str:
    return "ever" if since is None else f"since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}"


@dataclass
class ServedLog:
    """The prediction and feedback logs of a served model over a while, as read (repeats and all)."""

    predictions: Any  # a DataFrame of the prediction log (``predlog`` columns)
    feedback: Any  # a DataFrame of the feedback log (empty when no label came)
    name: str = ""  # the served model's (or deployment's) name

    @property
    def versions(self) -> list[str]:
        """The versions that served the predictions, in the order they first appear in the log."""
        return [str(v) for v in self.predictions[VERSION].astype(str).unique().tolist()]

    def rows(self, version: str | None = None, *, window: str = "in the window") -> ServedRows:
        """The rows ``version`` served, or the version served last (the last row's), and the labels; DataError
        when that version served none of them."""
        name = self.name
        version = version or str(self.predictions[VERSION].astype(str).iloc[-1])
        frame = self.predictions[self.predictions[VERSION].astype(str) == version]
        if not len(frame):
            raise DataError(f"no predictions of {name} v{version} {window}",
                            hint="leave out the version to use the one served last")
        return ServedRows(frame, self.feedback, version)


def served_log(folder: Path, name: str, *, since: float | None = None, window: str = "") -> ServedLog:
    """The predictions of the served model (its monitoring folder ``folder``) since ``since`` (all without it)
    and the labels sent for them; DataError when nothing was logged, or nothing in the window (``window``
    says it in words, e.g. "in the last 7d")."""
    log_folder = folder / "predictions"
    if not RotatingParquetLog(log_folder).files():
        where = f"{log_folder} does not exist" if not folder.is_dir() else f"nothing in {log_folder}"
        raise DataError(f"no predictions of {name!r} were logged yet ({where})",
                        hint="serve or deploy the model (mloop serve, mloop deploy) and send it requests; a server "
                             "writes its log every [monitor] interval and when it stops. A deployment's or server's "
                             "--name is its monitoring folder's name: mloop data snapshot NAME")
    predictions = read_log(log_folder, since=since)
    if not len(predictions):
        newest = read_newest(RotatingParquetLog(log_folder), [TS], 1)
        last = (f"; the newest was served at {newest[TS].max():%Y-%m-%d %H:%M:%S} UTC"
                if len(newest) else "")
        raise DataError(f"no predictions of {name!r} were served {window or 'in the window'}{last}",
                        hint="ask for a longer while with --since (e.g. 30d), or leave it out for the whole log")
    return ServedLog(predictions, read_log(folder / "feedback", since=since), name)


def log_state(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """The name, size and modification time (ns) of each file of the prediction and feedback logs of the monitor
    folder ``folder``: it changes whenever a log does, and costs no read of them."""
    found = []
    for log in ("predictions", "feedback"):
        for path in RotatingParquetLog(folder / log).files():
            try:
                stat = path.stat()
            except FileNotFoundError:  # rotated away while we listed
                continue
            found.append((f"{log}/{path.name}", stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def shadow_answers(folder: Path, *, since: float | None = None) -> Any:
    """What shadow candidates answered for the requests the served version answered, beside its answers (a
    DataFrame of the shadow log's columns, ``predlog``; empty when no shadow ran)."""
    return read_log(folder / "shadow", since=since)


def read_frame(path: Path) -> Any:
    """A CSV or Parquet file as a DataFrame; DataError naming the problem if it cannot be read."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path} does not exist", hint="pass a CSV or Parquet file with --from")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as err:  # pandas and pyarrow raise many types for unreadable files
        raise DataError(f"cannot read {path}: {str(err).splitlines()[0]}",
                        hint="CSV with a header row, or Parquet (.parquet)") from err


@dataclass
class DriftComparison:
    report: DriftReport
    compared: list[str]  # columns compared with the training data
    ignored: list[str]  # columns the training data did not have
    excluded: list[str]  # columns left out on purpose (the target)


def compare(reference: Reference, frame: Any, settings: MonitorSection, *,
            exclude: tuple[str, ...] = ()) -> DriftComparison:
    """Drift of ``frame`` from the training data, judged as the live server judges it (``[monitor]``); columns
    in ``exclude`` (the model's target, which a batch of labelled data may carry) are not compared."""
    excluded = [str(c) for c in frame.columns if str(c) in exclude]
    compared = [str(c) for c in frame.columns if str(c) in reference.features_ and str(c) not in exclude]
    ignored = [str(c) for c in frame.columns if str(c) not in reference.features_]
    if not compared:
        raise DataError("the data shares no column with the model's training data",
                        hint=f"its columns are: {', '.join(list(reference.features_)[:6])}, ...")
    report = DriftDetector.from_settings(settings).fit(reference).compare(frame[compared])
    return DriftComparison(report, compared, ignored, excluded)


def _time_buckets(frame: Any, buckets: int) -> Any:
    """Equal time buckets over ``frame``'s ``ts``: a Series of bucket numbers, and the edges (``buckets + 1``)."""
    import pandas as pd

    start, end = frame[TS].min(), frame[TS].max()
    edges = pd.date_range(start, end if end > start else start + pd.Timedelta(seconds=1), periods=buckets + 1)
    return pd.cut(frame[TS], edges, include_lowest=True, labels=False), edges


def traffic_over_time(predictions: Any, *, buckets: int = 20) -> Any:
    """Requests, rows and the outlier ratio of a prediction log (``served_log(...).predictions``) in equal time
    buckets, per version that answered: a DataFrame of start, end, version, requests, rows, outlier_ratio,
    oldest first. Every bucket has a row for every version, with 0 requests and 0 rows where that version
    answered none (a chart of it shows the gaps in the traffic); outlier_ratio is None where no row of the
    bucket was scored (and everywhere when the log has no outlier column). Empty for an empty log."""
    import pandas as pd

    columns = ["start", "end", "version", "requests", "rows", "outlier_ratio"]
    if not len(predictions):
        return pd.DataFrame(columns=columns)
    which, edges = _time_buckets(predictions, buckets)
    frame = pd.DataFrame({"bucket": which, "version": predictions[VERSION].astype(str),
                          "request": predictions[REQUEST_ID],
                          "outlier": predictions[OUTLIER].astype(float) if OUTLIER in predictions else float("nan")})
    grouped = frame.groupby(["bucket", "version"], sort=True).agg(
        requests=("request", "nunique"), rows=("request", "size"), outlier_ratio=("outlier", "mean"))
    every = pd.MultiIndex.from_product([range(buckets), sorted(frame["version"].unique())],
                                       names=["bucket", "version"])
    grouped = grouped.reindex(every).reset_index()
    grouped[["requests", "rows"]] = grouped[["requests", "rows"]].fillna(0).astype(int)
    grouped["start"] = edges[grouped["bucket"].astype(int)]
    grouped["end"] = edges[grouped["bucket"].astype(int) + 1]
    return grouped[columns]


def operations_over_time(folder: Path, *, since: float | None = None, buckets: int = 120) -> Any:
    """The server's requests, errors and latency over time, from its operations history (``operations.jsonl``, an
    interval per monitoring update): a DataFrame of start, end (UTC), requests, errors, rate (requests a second),
    error_ratio, p50_ms, p90_ms, p99_ms and segment, oldest first, in at most ``buckets`` equal time buckets (none
    narrower than a monitoring interval) from the first interval since ``since`` to the last. An interval counts
    in the bucket of its middle, for the version that served when it ended (one that spans a hot swap is the new
    version's). A bucket's percentiles come from the sum of its intervals' latency histograms, as Prometheus
    computes them over a range. Where the history has a gap (no server ran, or monitoring was off: an interval
    that starts more than two intervals after the one before ended) the next row starts a new ``segment``, so a
    line drawn per segment does not join across it. Empty without history."""
    import numpy as np
    import pandas as pd

    from mloop.monitor.metrics import LATENCY_BOUNDS, latency_percentiles_ms

    columns = ["start", "end", "requests", "errors", "rate", "error_ratio", "p50_ms", "p90_ms", "p99_ms", "segment"]
    points = read_operations(folder, since=since)
    if not points:
        return pd.DataFrame(columns=columns)
    ends = np.fromiter((p.time for p in points), float, len(points))
    seconds = np.fromiter((p.seconds for p in points), float, len(points))
    interval = float(np.median(seconds)) or 1.0
    first = ends[0] - seconds[0] if since is None else max(ends[0] - seconds[0], since)
    width = max((ends[-1] - first) / buckets, interval)
    index = np.maximum(((ends - seconds / 2 - first) // width).astype(int), 0)
    gap = np.r_[False, ends[1:] - seconds[1:] > ends[:-1] + 2 * interval]  # starts after a gap in the history
    segment = np.cumsum(gap)
    requests = np.fromiter((p.requests for p in points), float, len(points))
    errors = np.fromiter((p.errors for p in points), float, len(points))
    whole = np.array([len(p.latency_buckets) == len(LATENCY_BOUNDS) for p in points])
    histograms = np.array([p.latency_buckets if ok else [0] * len(LATENCY_BOUNDS)
                           for p, ok in zip(points, whole, strict=True)], dtype=float)
    used, at = np.unique(index, return_index=True)  # the buckets some interval ended in, and its first interval
    position = np.searchsorted(used, index)
    sums = {name: np.bincount(position, weights=values, minlength=len(used))
            for name, values in (("requests", requests), ("errors", errors), ("seconds", seconds))}
    merged = np.zeros((len(used), len(LATENCY_BOUNDS)))
    np.add.at(merged, position, histograms)
    counted = np.bincount(position, minlength=len(used))
    with_histogram = np.bincount(position, weights=whole.astype(float), minlength=len(used)) > 0
    rows = []
    for k, bucket in enumerate(used):
        if with_histogram[k]:
            p50, p90, p99 = latency_percentiles_ms(merged[k])
        elif counted[k] == 1:  # a line written without its histogram: the percentiles it kept
            kept = points[at[k]]
            p50, p90, p99 = kept.p50_latency_ms, kept.p90_latency_ms, kept.p99_latency_ms
        else:
            p50 = p90 = p99 = None
        n, e, s = sums["requests"][k], sums["errors"][k], sums["seconds"][k]
        rows.append({"start": first + bucket * width, "end": first + (bucket + 1) * width, "requests": int(n),
                     "errors": int(e), "rate": n / s if s > 0 else 0.0, "error_ratio": e / n if n else None,
                     "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "segment": int(segment[at[k]])})
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def drift_over_time(reference: Reference, predictions: Any, settings: MonitorSection, *, buckets: int = 8,
                    exclude: tuple[str, ...] = ()) -> Any:
    """Drift of each feature of a prediction log (``served_log(...).predictions``) from the training data, in
    equal time buckets, judged as the live server judges (``[monitor]``): a DataFrame of start, end, rows,
    feature, psi, p_value, drifted (None: too few values for a verdict), oldest first. The log is cut into at
    most ``buckets`` buckets and no more than give each ``min_samples`` rows on average, so each bucket can
    get a verdict; empty for an empty log. DataError when the log shares no feature with the training data."""
    import pandas as pd

    columns = ["start", "end", "rows", "feature", "psi", "p_value", "drifted"]
    if not len(predictions):
        return pd.DataFrame(columns=columns)
    features = [c for c in feature_columns(predictions) if c in reference.features_ and c not in exclude]
    if not features:
        raise DataError("the prediction log shares no feature with the model's training data",
                        hint=f"its features are: {', '.join(list(reference.features_)[:6])}, ...")
    count = max(1, min(buckets, len(predictions) // max(settings.min_samples, 1)))
    which, edges = _time_buckets(predictions, count)
    detector = DriftDetector.from_settings(settings).fit(reference)
    rows = []
    for bucket, part in predictions.groupby(which, sort=True):
        report = detector.compare(part[features])
        for name, found in report.features.items():
            rows.append((edges[int(bucket)], edges[int(bucket) + 1], len(part), name, found.psi, found.p_value,
                         found.drifted))
    return pd.DataFrame(rows, columns=columns)
