"""The Monitoring page: per deployment (or served model), request rate, latency percentiles and errors, drift per
feature now and over time, the training vs served histogram of a chosen feature, the outlier ratio, live scores
from feedback and the alert history, refreshed every ``[ui] refresh`` seconds while the page is open.

Everything comes through ``mloop.monitor.queries`` as ``mloop monitor status|alerts|report`` reads it: the
server's ``status.json`` (``MonitorStatus``), its prediction and feedback logs, its alert log; the training side
of the histograms from the served version's bundle (``registry.fetch.fetch_bundle``, as the report reads it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from mloop.errors import MloopError
from mloop.monitor.report import SCORES
from mloop.ui.charts import time_x
from mloop.ui.context import project
from mloop.ui.predict import registered_at

if TYPE_CHECKING:
    from mloop.config import MonitorSection, ProjectConfig
    from mloop.monitor.model import Reference
    from mloop.monitor.status import MonitorStatus, PredictionDriftStatus

PSI_COLOURS = ([0.0, 0.1, 0.25], ["#f5f5f5", "#fdae61", "#d7191c"])  # PSI at which each colour is reached
WINDOWS: dict[str, float | None] = {"last hour": 3600.0, "last 6 hours": 6 * 3600.0, "last day": 86400.0,
                                    "last 7 days": 7 * 86400.0, "everything logged": None}


def page() -> None:
    from mloop.deploy.local import list_deployments
    from mloop.monitor.queries import monitored

    cfg = project()
    st.title("Monitoring")
    models = {s.deployment.name: s.deployment.model for s in list_deployments(cfg)}  # deployment -> its model
    names = list(models) + [name for name in monitored(cfg.store / "monitor") if name not in models]
    if not names:
        st.info("Nothing is monitored yet: no deployment and no monitoring data. Deploy the model (`mloop deploy`) "
                "and send it requests; its status appears after the first monitoring interval.")
        return
    left, right = st.columns([2, 1])
    name = left.selectbox("Deployment", names, key="monitor_deployment",
                          help="a local deployment, or a model served with monitoring (its monitor folder)")
    window = right.selectbox("Over", list(WINDOWS), index=2, key="monitor_window",
                             help="the time span of the charts, the drift over time and the alert history")
    refresh = cfg.settings.ui.refresh
    st.caption(f"Refreshed every {refresh:g} s while this page is open ([ui] refresh).")
    st.fragment(_live, run_every=refresh)(cfg, name, models.get(name, name), WINDOWS[window])


def _live(cfg: ProjectConfig, name: str, model: str, window_s: float | None) -> None:
    """Everything that changes while the page is open (a fragment rerun every ``[ui] refresh`` seconds): ``name``
    is the deployment (its monitor folder), ``model`` the model it serves. The status (one small file) is read on
    every rerun; what comes from the prediction log is worked out again only when the log changed (``_from_log``)."""
    from mloop.monitor import queries

    folder = cfg.monitor_dir(name)
    try:
        status = queries.status(folder)
    except MloopError as err:
        st.error(f"{err.message}\n\n**Fix:** {err.hint}")
        status = None
    if status is None:
        st.info(f"No monitoring status for {name} yet: the server writes it every [monitor] interval "
                f"({cfg.settings.monitor.interval:g} s) once it runs (`mloop deploy`).")
    else:
        _operations(name, folder, status)
        _history(folder, window_s, cfg.settings.ui.refresh)
        _feedback(status)
        if status.rollout is not None:
            from mloop.ui.deployments import show_rollout

            show_rollout(status.rollout)
        _drift_now(status)
    _served(cfg, name, status.model if status is not None else model, folder, window_s,
            status.outliers.note if status is not None else "")
    _alerts(folder, None if window_s is None else time.time() - window_s)


def _operations(name: str, folder: Path, status: MonitorStatus) -> None:
    from mloop._proc import process_alive

    ago = max(time.time() - status.updated, 0.0)
    running = process_alive(status.pid, started_by=status.updated)
    st.markdown(f"**{status.model} v{status.version}** · status updated {ago:.0f} s ago")
    if not running:
        st.warning(f"The server that wrote this status (pid {status.pid}) is not running: this is its last status.")
    ops = status.operations
    rate = ops.requests / ops.window_s if ops.window_s else 0.0
    cells = st.columns(6)
    counted = "predictions, batch files and feedback (what the server-error ratio is over)"
    cells[0].metric("Request rate", f"{rate:.2f}/s",
                    help=f"{ops.requests} requests in the last {ops.window_s:.0f} s ([monitor] rate_window): {counted}")
    cells[1].metric("Requests", f"{ops.requests}",
                    help=f"in the last {ops.window_s:.0f} s ([monitor] rate_window, not the window above): {counted}")
    for cell, label, value in zip(cells[2:5], ("p50 latency", "p90 latency", "p99 latency"),
                                  (ops.p50_latency_ms, ops.p90_latency_ms, ops.p99_latency_ms), strict=True):
        cell.metric(label, "-" if value is None else f"{value:.1f} ms")
    cells[5].metric("Server errors", "-" if ops.error_ratio is None else f"{ops.error_ratio:.2%}",
                    help=f"{ops.errors} requests answered 5xx")
    outliers, drift = st.columns(2)
    outliers.metric("Outliers", "-" if status.outliers.ratio is None else f"{status.outliers.ratio:.1%}",
                    help=f"of the last {status.outliers.rows} rows" + (f"; {status.outliers.note}"
                                                                          if status.outliers.note else ""))
    share = status.drift.share
    drift.metric("Drifted features", "no verdict" if share is None else f"{share:.0%}",
                 help=status.drift.note or f"in the last {status.drift.rows} rows")
    log = status.prediction_log
    if log is not None and (log.rows_waiting or log.rows_dropped or log.error):
        st.error(f"Prediction log: {log.rows_waiting:,} rows waiting to be written"
                 + (f": {log.error}" if log.error else "")
                 + (f"; {log.rows_dropped:,} rows dropped since the server started" if log.rows_dropped else ""))


@st.cache_data(show_spinner=False, max_entries=16)
def _operations_history(folder: str, files: tuple[tuple[str, int, int], ...], since: float | None) -> Any:
    """``queries.operations_over_time`` of ``folder`` from ``since``, worked out again only when its history files
    change (``files``: their names, sizes and times) or the window moves on."""
    from mloop.monitor.queries import operations_over_time

    return operations_over_time(Path(folder), since=since)


def _history(folder: Path, window_s: float | None, refresh: float) -> None:
    """Request rate, server errors and p50/p90/p99 latency over the window, from the server's operations history
    (``queries.operations_over_time``: an interval per monitoring update, kept across restarts)."""
    import altair as alt

    from mloop.monitor.status import OPERATIONS_FILE

    files = []
    for path in (folder / OPERATIONS_FILE, folder / f"{OPERATIONS_FILE}.1"):
        try:
            stat = path.stat()
        except OSError:
            continue
        files.append((path.name, stat.st_size, stat.st_mtime_ns))
    step = max(refresh, (window_s or 0.0) / 100)  # the window's start moves on in steps, as log_key's
    since = None if window_s is None else (time.time() // step) * step - window_s
    history = _operations_history(str(folder), tuple(files), since)
    if history.empty:
        st.caption("Latency over time appears after the next monitoring update: the server keeps each interval's "
                   "requests and latency (operations.jsonl).")
        return
    history = _utc(history, "start", "end")
    with st.expander("Request rate and latency over time", expanded=True):
        rate = alt.Chart(history, title="Requests per second").mark_bar(orient="vertical").encode(  # as the tiles
            x=time_x(history), x2="end:T", y=alt.Y("rate:Q", title="requests/s"),
            tooltip=["start:T", "end:T", alt.Tooltip("rate:Q", format=".2f"), "requests:Q", "errors:Q"])
        latency = history.melt(id_vars=["start", "end", "segment"], value_vars=["p50_ms", "p90_ms", "p99_ms"],
                               var_name="percentile", value_name="ms").dropna(subset=["ms"])
        latency["percentile"] = latency["percentile"].str.removesuffix("_ms")
        lines = alt.Chart(latency, title="Latency (ms)").mark_line(point=True).encode(
            x=time_x(history), y=alt.Y("ms:Q", title="ms"),
            color=alt.Color("percentile:N", sort=["p50", "p90", "p99"]),
            detail="segment:N",  # one line per run of updates: not drawn across a time no server reported
            tooltip=["start:T", "end:T", "percentile:N", alt.Tooltip("ms:Q", format=".1f")])
        left, right = st.columns(2)
        left.altair_chart(rate, width="stretch")
        if latency.empty:
            right.info("No prediction was requested in this window: no latency to draw.")
        else:
            right.altair_chart(lines, width="stretch")


def _feedback(status: MonitorStatus) -> None:
    st.subheader("Live metrics from feedback")
    feedback = status.feedback
    if not feedback.labelled_total:
        st.info("No feedback yet: send labels to POST /feedback (the request id and the true label of each row); "
                "live scores appear once labelled predictions arrive.")
        return
    cells = st.columns(max(len(feedback.scores), 1))
    for cell, (metric, value) in zip(cells, feedback.scores.items(), strict=False):
        cell.metric(metric, f"{value:.3f}", help=feedback.definitions.get(metric))
    st.caption(f"over {feedback.labelled_total} labelled predictions")


def _drift_now(status: MonitorStatus) -> None:
    st.subheader("Drift now")
    drift = status.drift
    if drift.share is None:
        st.info(f"No drift verdict yet: {drift.note or 'no data'} (a verdict needs {drift.min_samples} values of a "
                "feature in the window, [monitor] min_samples).")
        return
    st.markdown(drift.headline())
    rows = [{"feature": name, "verdict": "no verdict" if f.drifted is None else ("drift" if f.drifted else "stable"),
             "PSI": None if f.psi is None else round(f.psi, 4), "p-value": p_value_text(f.p_value), "reason": f.reason}
            for name, f in sorted(drift.features.items(), key=lambda kv: (not kv[1].drifted, kv[0]))]
    st.dataframe(rows, hide_index=True, width="stretch")  # as high as its rows, up to ten (a fixed height drew blank rows)
    predictions = drift.predictions
    if predictions is not None and predictions.drifted is not None:
        _prediction_drift(predictions, drift.rows)


def p_value_text(p_value: float | None) -> str:
    """A p-value as people read it: "< 1e-6" below that, two significant digits in scientific form below 0.001,
    three significant digits otherwise; "-" for none."""
    if p_value is None or math.isnan(p_value):
        return "-"
    if p_value < 1e-6:
        return "< 1e-6"
    return f"{p_value:.1e}" if p_value < 1e-3 else f"{p_value:.3g}"


def _prediction_drift(predictions: PredictionDriftStatus, rows: int) -> None:
    """The predictions now against training: a classifier's share of each class, a regressor's mean and quartiles
    (told apart as ``mloop monitor status`` tells them, by the "mean" a regressor's summary has)."""
    regression = "mean" in predictions.current
    verdict = "drifted" if predictions.drifted else "stable"
    what = "predicted values (mean and quartiles)" if regression else "share of each predicted class"
    st.markdown(f"**Predictions: {verdict}** ({predictions.reason}); {what}, now against training:")
    keys = list(dict.fromkeys([*predictions.training, *predictions.current]))

    def shown(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if regression else f"{value:.1%}"

    st.dataframe([{"predictions": label, **{key: shown(values.get(key)) for key in keys}}
                  for label, values in ((f"now (last {rows} rows)", predictions.current),
                                        ("training", predictions.training))], hide_index=True)


@dataclass(frozen=True)
class Trained:
    """What the page needs of a registered version's bundle."""

    reference: Reference  # the training profile
    target: str
    regression: bool


@st.cache_resource(show_spinner="Reading the model's training profile...", max_entries=16)
def _reference(root: str, model: str, version: str, created: int) -> Trained:
    """The training profile, the target and the task of a registered version (registered at ``created``, ms; the
    bundle is downloaded once)."""
    from mloop.config import load_project
    from mloop.registry.fetch import fetch_bundle

    bundle = fetch_bundle(load_project(Path(root)), f"models:/{model}/{version}")
    return Trained(bundle.profile, bundle.info.target, bundle.info.regression)


@dataclass
class FromLog:
    """What the page charts from the prediction and feedback logs over a window (worked out once per log state)."""

    version: str  # the version served last, whose rows are charted
    traffic: Any  # queries.traffic_over_time of every version
    trained: Trained | None = None  # None: the version's bundle cannot be read (``problem`` says why)
    drift: Any = None  # queries.drift_over_time of the version's rows
    features: list[str] = field(default_factory=list)  # the features with a histogram
    histograms: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # feature -> (training, served) counts
    scores: Any = None  # report.labelled_over_time of the version's rows (None without labels)
    problem: str = ""


def log_key(folder: Path, window_s: float | None, refresh: float, now: float | None = None) -> tuple[Any, ...]:
    """The cache key of ``_from_log``: the folder, the state of its logs (names, sizes, times of their files), the
    window and the time rounded to a step (so rows age out of the window; at least ``refresh``, and a hundredth of
    the window): an unchanged log within a step is read once."""
    from mloop.monitor.queries import log_state

    if window_s is None:
        return str(folder), log_state(folder), None, None
    step = max(refresh, window_s / 100)
    return str(folder), log_state(folder), window_s, int((time.time() if now is None else now) // step)


@st.cache_data(show_spinner=False, max_entries=32)
def _from_log(root: str, name: str, model: str, key: tuple[Any, ...], _settings: MonitorSection) -> FromLog:
    """The charts' data from the logs of the folder named in ``key`` (see ``log_key``); DataError when nothing
    was served in the window. ``_settings`` ([monitor]) is the project's, the same for one ``root``."""
    from mloop.errors import MloopError
    from mloop.monitor import queries
    from mloop.monitor.predlog import feature_columns
    from mloop.monitor.report import histogram_counts

    folder, _, window_s, _ = key
    log = queries.served_log(Path(folder), name, since=None if window_s is None else time.time() - window_s,
                             window="in this window")
    served = log.rows(window="in this window")
    found = FromLog(served.version, queries.traffic_over_time(log.predictions))
    try:
        found.trained = _reference(root, model, served.version, registered_at(root, model, served.version))
    except MloopError as err:
        found.problem = f"The training data of {model} v{served.version} cannot be read: {err.message}"
        return found
    reference, rows = found.trained.reference, served.predictions
    try:
        found.drift = queries.drift_over_time(reference, rows, _settings, exclude=(found.trained.target,))
    except MloopError as err:
        found.problem = err.message
        return found
    found.features = [c for c in feature_columns(rows) if c in reference.features_]
    for feature in found.features:
        counts = histogram_counts(feature, reference.features_[feature], rows)
        if counts is not None:
            found.histograms[feature] = counts
    found.scores = served.labelled_over_time(regression=found.trained.regression)
    return found


def _served(cfg: ProjectConfig, name: str, model: str, folder: Path, window_s: float | None,
            outliers_note: str) -> None:
    """What the prediction log holds over the window: traffic, drift over time, a feature's histogram, and how the
    labelled predictions scored (accuracy of a classifier, mean absolute error of a regressor). ``outliers_note``
    is the status's word on the outlier ratio (e.g. that the model has no outlier detector)."""
    st.subheader("Served over time")
    try:
        found = _from_log(str(cfg.root), name, model, log_key(folder, window_s, cfg.settings.ui.refresh),
                          cfg.settings.monitor)
    except MloopError as err:
        st.info(f"{err.message}.")
        return
    _traffic_chart(found.traffic, outliers_note)
    if found.problem:
        st.warning(found.problem)
        return
    version = found.version
    _drift_chart(found.drift, version, cfg.settings.monitor.min_samples)
    _histogram(found, version)
    scores = found.scores
    if scores is not None and len(scores):
        column = "mae" if "mae" in scores else "accuracy"
        title = SCORES[column]
        import altair as alt

        frame = _utc(scores, "start", "end")
        chart = alt.Chart(frame, title=f"{title} over time of v{version}'s labelled predictions").mark_line(
            point=True).encode(x=time_x(frame), y=alt.Y(f"{column}:Q", title=title.lower()),
                               tooltip=["start:T", "end:T", alt.Tooltip(f"{column}:Q", format=".3f")])
        st.altair_chart(chart, width="stretch")


def _utc(frame: Any, *columns: str) -> Any:
    """``frame`` with its time ``columns`` as naive UTC (the charts' data travels as Arrow, which keeps no zone)."""
    return frame.assign(**{c: frame[c].dt.tz_convert(None) for c in columns if getattr(frame[c].dt, "tz", None)})


def _traffic_chart(traffic: Any, outliers_note: str) -> None:
    """Requests per time bucket as bars (stacked by version; a bucket without requests is a gap, not a line drawn
    across it), and the outlier ratio of each bucket whose rows were scored: a sentence when none was."""
    import altair as alt

    if not len(traffic):
        return
    traffic = _utc(traffic, "start", "end")
    # bars from 0 up, stacked by version (a ranged x alone would make Vega-Lite draw them as horizontal strokes);
    # an empty bucket is drawn as nothing, not as a bar of height 0 that reads as a line
    requests = alt.Chart(traffic, title="Requests per time bucket").mark_bar(orient="vertical").transform_filter(
        alt.datum.requests > 0).encode(
        x=time_x(traffic), x2="end:T",
        y=alt.Y("requests:Q", title="requests", stack="zero", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("version:N"), tooltip=["start:T", "end:T", "version:N", "requests:Q", "rows:Q"])
    scored = traffic.dropna(subset=["outlier_ratio"])
    if not len(scored):
        st.altair_chart(requests, width="stretch")
        why = outliers_note or "no row served in this window has an outlier score"
        st.info(f"No outlier ratio to chart: {why}.")
        return
    outliers = alt.Chart(scored, title="Outlier ratio").mark_rule(strokeWidth=3).encode(  # a stroke across each bucket
        x=time_x(traffic), x2="end:T",
        y=alt.Y("outlier_ratio:Q", title="outliers", axis=alt.Axis(format=".1~%")),
        color=alt.Color("version:N"),
        tooltip=["start:T", "end:T", "version:N", "rows:Q", alt.Tooltip("outlier_ratio:Q", format=".1%")])
    left, right = st.columns(2)
    left.altair_chart(requests, width="stretch")
    right.altair_chart(outliers, width="stretch")


def _drift_chart(over_time: Any, version: str, min_samples: int) -> None:
    import altair as alt

    if not len(over_time):
        return
    if over_time["psi"].isna().all():  # no bucket had min_samples values of any feature: an empty plot says nothing
        rows = int(over_time.groupby("start")["rows"].first().sum())
        why = (f"v{version} served {rows} rows in this window, fewer than [monitor] min_samples ({min_samples}), "
               f"so no time bucket gets a drift score. It fills once v{version} has served {min_samples} rows in "
               "the window (or over a longer window)." if rows < min_samples else
               f"no time bucket of v{version}'s {rows} rows holds {min_samples} values ([monitor] min_samples) of "
               "any feature (are most values missing?), so none gets a drift score.")
        st.info(f"No drift per feature over time to chart: {why}")
        return
    verdicts = over_time["drifted"].map({True: "drift", False: "stable"}).fillna("no verdict")
    frame = _utc(over_time, "start", "end").assign(verdict=verdicts)
    chart = alt.Chart(frame, title=f"Drift per feature over time (v{version}; PSI, drifted buckets outlined)").mark_rect(
        ).encode(x=time_x(frame), x2="end:T", y=alt.Y("feature:N", title=None),
                 # fixed at the usual reading of PSI (under 0.1 small, 0.1-0.25 moderate, above large), not at the
                 # window's own range, which would paint a stable feature red when every feature is stable
                 color=alt.Color("psi:Q", title="PSI", scale=alt.Scale(domain=PSI_COLOURS[0], range=PSI_COLOURS[1],
                                                                       clamp=True)),
                 stroke=alt.condition(alt.datum.verdict == "drift", alt.value("black"), alt.value(None)),
                 tooltip=["feature:N", "start:T", "end:T", "rows:Q", alt.Tooltip("psi:Q", format=".3g"),
                          alt.Tooltip("p_value:Q", format=".2g"), "verdict:N"])
    st.altair_chart(chart, width="stretch")
    st.caption(f"Equal time buckets, no more of them than give each {min_samples} rows on average ([monitor] "
               "min_samples), each compared with the training data as the server compares its window; a bucket with "
               "fewer values than that gets no verdict.")


def _histogram(found: FromLog, version: str) -> None:
    import altair as alt
    import pandas as pd

    from mloop.monitor.report import bin_labels

    features = [f for f in found.features if f in found.histograms]
    if not features or found.trained is None:
        return
    over_time = found.drift
    drifted = over_time.sort_values("psi", ascending=False, na_position="last")["feature"].tolist() \
        if len(over_time) else []
    default = features.index(drifted[0]) if drifted and drifted[0] in features else 0
    feature = st.selectbox("Feature", features, index=default, key="monitor_feature",
                           help="its training distribution (the model's reference profile) against the served rows")
    training, served = found.histograms[feature]
    labels = bin_labels(found.trained.reference.features_[feature])
    frame = pd.DataFrame({"bin": labels * 2, "order": list(range(len(labels))) * 2,
                          "data": ["training"] * len(labels) + [f"served (v{version})"] * len(labels),
                          "count": list(training) + list(served),
                          "share": list(training / max(training.sum(), 1)) + list(served / max(served.sum(), 1))})
    chart = alt.Chart(frame, title=f"{feature}: training vs served").mark_bar().encode(
        x=alt.X("bin:N", sort=labels, title=feature), xOffset="data:N",
        y=alt.Y("share:Q", title="share of rows", axis=alt.Axis(format="%")), color=alt.Color("data:N", title=None),
        tooltip=["bin:N", "data:N", "count:Q", alt.Tooltip("share:Q", format=".1%")])
    st.altair_chart(chart, width="stretch")
    st.caption(f"{feature}: {int(training.sum())} training rows against {int(served.sum())} rows served by "
               f"v{version} in this window")


def _alerts(folder: Path, since: float | None) -> None:
    from mloop.monitor.alerts import iso
    from mloop.monitor.queries import alert_history

    st.subheader("Alerts")
    history = alert_history(folder, since=since, limit=200)
    if history.firing:
        st.error("Firing: " + ", ".join(f"{alert} ({source}, since {iso(e.started or e.ts)[:19]})"
                                        for (source, alert), e in history.firing.items()))
    else:
        st.success("No alert is firing.")
    if not history.events:
        st.caption("No alert events in this window.")
        return
    st.dataframe([{"time (UTC)": iso(e.ts)[:19].replace("T", " "), "alert": e.alert, "status": e.status,
                   "source": e.source, "value": e.value, "summary": e.summary} for e in reversed(history.events)],
                 hide_index=True, width="stretch")
