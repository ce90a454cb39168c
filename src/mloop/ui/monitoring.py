"""The Monitoring page: per deployment (or served model), request rate, latency percentiles and errors, drift per
feature now and over time, the training vs served histogram of a chosen feature, the outlier ratio, live scores
from feedback and the alert history, refreshed every ``[ui] refresh`` seconds while the page is open.

Everything comes through ``mloop.monitor.queries`` as ``mloop monitor status|alerts|report`` reads it: the
server's ``status.json`` (``MonitorStatus``), its prediction and feedback logs, its alert log; the training side
of the histograms from the served version's bundle (``registry.fetch.fetch_bundle``, as the report reads it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from mloop.errors import MloopError
from mloop.ui.context import project

if TYPE_CHECKING:
    from mloop.config import ProjectConfig
    from mloop.monitor.model import Reference
    from mloop.monitor.status import MonitorStatus

WINDOWS: dict[str, float | None] = {"last hour": 3600.0, "last 6 hours": 6 * 3600.0, "last day": 86400.0,
                                    "last 7 days": 7 * 86400.0, "everything logged": None}
SERIES = "monitoring_series"  # session state: the status snapshots seen while the page is open, per folder


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
    is the deployment (its monitor folder), ``model`` the model it serves."""
    from mloop.monitor import queries

    folder = cfg.monitor_dir(name)
    since = None if window_s is None else time.time() - window_s
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
        _feedback(status)
        if status.rollout is not None:
            from mloop.ui.deployments import show_rollout

            show_rollout(status.rollout)
        _drift_now(status)
    _served(cfg, name, status.model if status is not None else model, folder, since)
    _alerts(folder, since)


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
    cells[0].metric("Request rate", f"{rate:.2f}/s", help=f"{ops.requests} requests in the last {ops.window_s:.0f} s")
    cells[1].metric("Requests", f"{ops.requests}", help=f"in the last {ops.window_s:.0f} s ([monitor] rate_window)")
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
    _series(str(folder), status)


def _series(key: str, status: MonitorStatus) -> None:
    """Request rate and latency over the snapshots seen since the page opened (status.json keeps the last only)."""
    import pandas as pd

    series: dict[str, list[dict[str, Any]]] = st.session_state.setdefault(SERIES, {})
    points = series.setdefault(key, [])
    ops = status.operations
    if not points or points[-1]["updated"] != status.updated:
        points.append({"updated": status.updated, "requests/s": ops.requests / ops.window_s if ops.window_s else 0.0,
                       "p50 ms": ops.p50_latency_ms, "p90 ms": ops.p90_latency_ms, "p99 ms": ops.p99_latency_ms})
        del points[:-360]
    if len(points) < 2:
        return
    frame = pd.DataFrame(points)
    frame["time"] = pd.to_datetime(frame["updated"], unit="s")
    with st.expander("Request rate and latency since this page opened"):
        rate, latency = st.columns(2)
        rate.line_chart(frame, x="time", y="requests/s")
        latency.line_chart(frame, x="time", y=["p50 ms", "p90 ms", "p99 ms"])


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
        st.info(f"No drift verdict yet: {drift.note or 'no data'} (min {drift.min_samples} values per feature).")
        return
    st.markdown(f"{len(drift.drifted)} of {len(drift.features)} features drifted ({drift.share:.0%}) in the last "
                f"{drift.rows} rows" + (f": {', '.join(drift.drifted[:8])}" if drift.drifted else ""))
    rows = [{"feature": name, "verdict": "no verdict" if f.drifted is None else ("drift" if f.drifted else "stable"),
             "PSI": f.psi, "p-value": f.p_value, "reason": f.reason}
            for name, f in sorted(drift.features.items(), key=lambda kv: (not kv[1].drifted, kv[0]))]
    st.dataframe(rows, hide_index=True, width="stretch", height=240)
    predictions = drift.predictions
    if predictions is not None and predictions.drifted is not None:
        st.caption(f"predictions: {'drifted' if predictions.drifted else 'stable'} (now {predictions.current}, "
                   f"training {predictions.training})")


@st.cache_resource(show_spinner="Reading the model's training profile...", max_entries=16)
def _reference(root: str, model: str, version: str) -> tuple[Reference, str]:
    """The training profile and the target of a registered version (cached: the bundle is downloaded once)."""
    from mloop.config import load_project
    from mloop.registry.fetch import fetch_bundle

    bundle = fetch_bundle(load_project(Path(root)), f"models:/{model}/{version}")
    return bundle.profile, bundle.info.target


def _served(cfg: ProjectConfig, name: str, model: str, folder: Path, since: float | None) -> None:
    """What the prediction log holds over the window: traffic, drift over time, a feature's histogram, accuracy."""
    from mloop.monitor import queries
    from mloop.monitor.predlog import VERSION
    from mloop.monitor.report import accuracy_over_time

    st.subheader("Served over time")
    try:
        log = queries.served_log(folder, name, since=since, window="in this window")
    except MloopError as err:
        st.info(f"{err.message}.")
        return
    predictions = log.predictions
    _traffic_chart(queries.traffic_over_time(predictions))
    version = str(predictions[VERSION].astype(str).iloc[-1])  # the version served last, as monitor report takes
    rows = predictions[predictions[VERSION].astype(str) == version]
    try:
        reference, target = _reference(str(cfg.root), model, version)
    except MloopError as err:
        st.warning(f"The training data of {model} v{version} cannot be read: {err.message}")
        return
    try:
        over_time = queries.drift_over_time(reference, rows, cfg.settings.monitor, exclude=(target,))
    except MloopError as err:
        st.warning(err.message)
        return
    _drift_chart(over_time, version, cfg.settings.monitor.min_samples)
    _histogram(reference, rows, version, over_time)
    if len(log.feedback):
        accuracy = accuracy_over_time(rows, log.feedback)
        if accuracy is not None and len(accuracy):
            st.markdown(f"**Accuracy over time** of v{version}'s labelled predictions")
            st.line_chart(_utc(accuracy, "start", "end"), x="start", y="accuracy")


def _utc(frame: Any, *columns: str) -> Any:
    """``frame`` with its time ``columns`` as naive UTC (the charts' data travels as Arrow, which keeps no zone)."""
    return frame.assign(**{c: frame[c].dt.tz_convert(None) for c in columns if getattr(frame[c].dt, "tz", None)})


def _traffic_chart(traffic: Any) -> None:
    import altair as alt

    if not len(traffic):
        return
    traffic = _utc(traffic, "start", "end")
    requests = alt.Chart(traffic, title="Requests per time bucket").mark_line(point=True).encode(
        x=alt.X("start:T", title="time (UTC)"), y=alt.Y("requests:Q", title="requests"), color=alt.Color("version:N"),
        tooltip=["start:T", "end:T", "version:N", "requests:Q", "rows:Q", "outlier_ratio:Q"])
    outliers = alt.Chart(traffic, title="Outlier ratio").mark_line(point=True).encode(
        x=alt.X("start:T", title="time (UTC)"), y=alt.Y("outlier_ratio:Q", title="outliers", axis=alt.Axis(format="%")),
        color=alt.Color("version:N"), tooltip=["start:T", "version:N", "outlier_ratio:Q"])
    left, right = st.columns(2)
    left.altair_chart(requests, width="stretch")
    right.altair_chart(outliers, width="stretch")


def _drift_chart(over_time: Any, version: str, min_samples: int) -> None:
    import altair as alt

    if not len(over_time):
        return
    verdicts = over_time["drifted"].map({True: "drift", False: "stable"}).fillna("no verdict")
    frame = _utc(over_time, "start", "end").assign(verdict=verdicts)
    chart = alt.Chart(frame, title=f"Drift per feature over time (v{version}; PSI, drifted buckets outlined)").mark_rect(
        ).encode(x=alt.X("start:T", title="time (UTC)"), x2="end:T", y=alt.Y("feature:N", title=None),
                 color=alt.Color("psi:Q", title="PSI", scale=alt.Scale(scheme="orangered")),
                 stroke=alt.condition(alt.datum.verdict == "drift", alt.value("black"), alt.value(None)),
                 tooltip=["feature:N", "start:T", "end:T", "rows:Q", "psi:Q", "p_value:Q", "verdict:N"])
    st.altair_chart(chart, width="stretch")
    st.caption(f"Equal time buckets, no more of them than give each {min_samples} rows on average ([monitor] "
               "min_samples), each compared with the training data as the server compares its window; a bucket with "
               "fewer values than that gets no verdict.")


def _histogram(reference: Reference, rows: Any, version: str, over_time: Any) -> None:
    import altair as alt
    import pandas as pd

    from mloop.monitor.predlog import feature_columns
    from mloop.monitor.report import histogram_counts

    features = [c for c in feature_columns(rows) if c in reference.features_]
    if not features:
        return
    drifted = over_time.sort_values("psi", ascending=False, na_position="last")["feature"].tolist() \
        if len(over_time) else []
    default = features.index(drifted[0]) if drifted and drifted[0] in features else 0
    feature = st.selectbox("Feature", features, index=default, key="monitor_feature",
                           help="its training distribution (the model's reference profile) against the served rows")
    profile = reference.features_[feature]
    counts = histogram_counts(feature, profile, rows)
    if counts is None:
        st.info(f"{feature}: the training profile has no bins for it.")
        return
    training, served = counts
    labels = bin_labels(profile)
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


def bin_labels(feature: Any) -> list[str]:
    """The names of a feature's histogram bins: ranges of the reference's quantile bins (the outer two open), or its
    categories."""
    if feature.kind != "numeric":
        return [str(c) for c in feature.counts]
    edges = list(feature.edges)
    inner = [f"{a:.3g} to {b:.3g}" for a, b in zip(edges[1:-2], edges[2:-1], strict=True)]
    return ([f"< {edges[1]:.3g}"] if len(edges) > 2 else []) + inner + [f">= {edges[-2]:.3g}" if len(edges) > 2
                                                                        else "all"]


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
