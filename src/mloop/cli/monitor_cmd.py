"""``mloop monitor``: report, status, alerts and export. Reads through ``mloop.monitor.queries``; prints."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from mloop.cli.output import console, seconds, styled
from mloop.errors import DataError, DriftFound

if TYPE_CHECKING:
    from mloop.monitor.status import RolloutStatus


def _duration(text: str, option: str) -> float:
    from mloop.config import duration_s

    try:
        return duration_s(text)
    except ValueError as err:
        raise DataError(f"{option} {text!r}: {err}", hint="e.g. 30m, 1h or 2d") from err


def report(source: Path | None, *, since: str | None, model: str | None, out: Path | None, project: Path | None,
           alpha: float | None, min_samples: int | None, fail_on_drift: float | None) -> None:
    from mloop.config import load_project
    from mloop.monitor.report import number, render
    from mloop.project import drift_report

    cfg = load_project(project)
    overrides = {k: v for k, v in (("alpha", alpha), ("min_samples", min_samples)) if v is not None}
    settings = type(cfg.settings.monitor).model_validate(cfg.settings.monitor.model_dump() | overrides)
    found = drift_report(cfg, model=model, source=source, since=since, settings=settings)
    drift = found.comparison.report
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("feature", "verdict", "PSI", "KS D / chi2", "p-value", "values", "missing"):
        table.add_column(column)
    for fname, f in sorted(drift.features.items(), key=lambda kv: (not kv[1].drifted, kv[0])):
        verdict = "no verdict" if f.drifted is None else (styled(("drift", "bold red")) if f.drifted else "stable")
        table.add_row(fname, verdict, number(f.psi), number(f.statistic), number(f.p_value), str(f.n), str(f.missing))
    console.print(table)
    share, rows = drift.drifted_share, len(found.frame)
    if share is None:
        console.print(f"{rows} rows: not enough data for a verdict (min {settings.min_samples} per feature)")
    else:
        console.print(f"{found.model} v{found.version}: {sum(bool(f.drifted) for f in drift.evaluated)} of "
                      f"{len(drift.evaluated)} features drifted ({share:.0%}) in {rows} rows of {found.what}")
    if found.comparison.ignored:
        console.print(f"not in the training data, not compared: {', '.join(found.comparison.ignored[:8])}",
                      soft_wrap=True)
    if found.comparison.excluded:
        console.print(f"the model's target, not compared: {', '.join(found.comparison.excluded)}", soft_wrap=True)
    if out is not None:
        from mloop._fs import atomic_write_text

        atomic_write_text(out, render(f"Drift of {found.what} against {found.model} v{found.version}", found.profile,
                                      found.frame, drift, scores=found.scores))
        console.print(f"report: {out}")
    if fail_on_drift is not None and share is not None and share > fail_on_drift:
        raise DriftFound(f"{share:.0%} of features drifted, above --fail-on-drift {fail_on_drift:.0%}",
                         hint="retrain on recent data, or inspect the report")


def _model_name(model: str | None, project: Path | None) -> tuple[Any, str]:
    from mloop.config import load_project

    cfg = load_project(project)
    return cfg, model or cfg.model_name


def _ago(ts: float) -> str:
    return f"{seconds(max(time.time() - ts, 0.0))} ago"


def _print_rollout(rollout: RolloutStatus) -> None:
    """A roll-out in progress: both versions' figures since it started (a ``RolloutStatus``)."""
    share = f" answering {rollout.weight:.0%} of requests" if rollout.strategy == "canary" else ""
    console.print(styled(("roll-out: ", "bold"), f"{rollout.strategy} of v{rollout.candidate.version}{share}, "
                         f"started {_ago(rollout.started_at)}"))
    for version in (rollout.champion, rollout.candidate):
        p99 = "-" if version.p99_latency_ms is None else f"{version.p99_latency_ms:.1f} ms"
        scores = ", ".join(f"{k} {v:.3f}" for k, v in version.scores.items())
        console.print(f"  v{version.version} ({version.role}): {version.requests} requests, {version.rows} rows, "
                      f"{version.server_errors} server errors, p99 {p99}"
                      + (f"; live {scores} over {version.labelled} labelled rows" if scores else ""), soft_wrap=True)
    shadow = rollout.shadow
    if shadow is not None:
        rate = "-" if shadow.disagreement_rate is None else f"{shadow.disagreement_rate:.1%}"
        difference = ("" if shadow.mean_abs_difference is None else
                      f", mean absolute difference {shadow.mean_abs_difference:.4g} (tolerance {shadow.tolerance:g})")
        console.print(f"  shadow: disagreed on {shadow.disagreed_rows} of {shadow.compared_rows} rows ({rate}){difference}"
                      + (f"; {shadow.dropped_rows} rows dropped, {shadow.failed_rows} failed"
                         if shadow.dropped_rows or shadow.failed_rows else ""), soft_wrap=True)


def status(model: str | None, *, as_json: bool, project: Path | None) -> None:
    from mloop._proc import process_alive
    from mloop.monitor import queries

    cfg, name = _model_name(model, project)
    folder = cfg.monitor_dir(name)
    data = queries.status(folder)
    if data is None:
        raise DataError(f"no monitoring status for {name!r} yet ({folder / 'status.json'} does not exist)",
                        hint="deploy or serve the model (mloop deploy); its status appears after the first "
                             "monitoring interval")
    if as_json:
        print(json.dumps(asdict(data), indent=1, default=str))
        return
    running = process_alive(data.pid, started_by=data.updated)  # the process that wrote it, not a recycled pid
    console.print(styled((data.model, "bold"), f" v{data.version}: updated {_ago(data.updated)}",
                         ("" if running else (f" (the server, pid {data.pid}, is not running: last status)", "yellow"))))
    drift = data.drift
    if drift.share is None:
        console.print(f"drift: no verdict - {drift.note or 'no data'}")
    else:
        console.print(f"drift: {drift.headline()}", soft_wrap=True)
    predictions = drift.predictions
    if predictions is not None and predictions.drifted is not None:
        console.print(styled("predicted classes: " if predictions.current and "mean" not in predictions.current
                             else "predictions: ", ("drifted", "bold red") if predictions.drifted else "stable",
                             f" (now {predictions.current}, training {predictions.training})"), soft_wrap=True)
    if data.outliers.ratio is not None:
        console.print(f"outliers: {data.outliers.ratio:.1%} of {data.outliers.rows} rows")
    feedback = data.feedback
    if feedback.labelled_total:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in feedback.scores.items())
        console.print(f"live: {scores} over {feedback.labelled_total} labelled predictions")
        for metric, definition in feedback.definitions.items():
            if metric in feedback.scores and metric != "accuracy":
                console.print(f"  {metric}: {definition}", soft_wrap=True)
    else:
        console.print("live accuracy: no labelled predictions yet (POST /feedback)")
    ops = data.operations
    p99, ratio = ops.p99_latency_ms, ops.error_ratio
    console.print(f"last {ops.window_s:.0f} s: {ops.requests} requests, "
                  f"p99 {'-' if p99 is None else f'{p99:.1f} ms'}, "
                  f"server errors {'-' if ratio is None else f'{ratio:.2%}'}")
    if data.rollout is not None:
        _print_rollout(data.rollout)
    log = data.prediction_log
    if log is not None and (log.rows_waiting or log.rows_dropped or log.error):
        console.print(styled(("prediction log: ", "bold red"), f"{log.rows_waiting:,} rows waiting to be written",
                             f": {log.error}" if log.error else "",
                             f"; {log.rows_dropped:,} rows dropped since the server started" if log.rows_dropped
                             else ""), soft_wrap=True)
    alerts = data.alerts
    console.print(styled("alerts: ", (f"firing {', '.join(alerts.firing)}", "bold red") if alerts.firing else "none firing",
                         f"; pending {', '.join(f'{k} ({v:.0f} s)' for k, v in alerts.pending.items())}"
                         if alerts.pending else ""))


def alerts(model: str | None, *, since: str | None, limit: int, as_json: bool, project: Path | None) -> None:
    from mloop.monitor import queries
    from mloop.monitor.alerts import iso

    cfg, name = _model_name(model, project)
    start = time.time() - _duration(since, "--since") if since is not None else None
    history = queries.alert_history(cfg.monitor_dir(name), since=start, limit=limit)
    if as_json:
        for event in history.events:
            print(event.to_json())
        return
    if history.firing:
        console.print(styled(("firing:", "bold red"), " " + ", ".join(
            f"{alert} ({source}, since {iso(e.started or e.ts)})" for (source, alert), e in history.firing.items())),
            soft_wrap=True)
    else:
        console.print(f"no alert of {name} is firing")
    if not history.events:
        console.print("no alert events" + (f" in the last {since}" if since else " yet"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("time (UTC)", "alert", "status", "source", "value", "summary"):
        table.add_column(column)
    for event in history.events:
        table.add_row(iso(event.ts)[:19].replace("T", " "), event.alert,
                      styled(("firing", "red") if event.status == "firing" else ("resolved", "green")), event.source,
                      "-" if event.value is None else f"{event.value:.4g}", event.summary)
    console.print(table)


def export(out: Path, *, target: str | None, alertmanager: str, receiver: str | None, model: str | None,
           project: Path | None, interval: str = "15s", group_wait: str = "30s") -> None:
    from mloop.config import check_renamed_variables
    from mloop.deploy.local import running_address
    from mloop.monitor.export import write_export

    check_renamed_variables()
    cfg, name = _model_name(model, project)
    if target is None:
        target = running_address(cfg, name) or f"{cfg.settings.serving.host}:{cfg.settings.serving.port}"
    for option, value in (("--target", target), ("--alertmanager", alertmanager)):
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise DataError(f"{option} {value!r} is not host:port", hint=f"e.g. {option} 127.0.0.1:8080")
    serving = cfg.settings.serving
    written = write_export(out, name, cfg.settings.monitor, target=target, alertmanager=alertmanager,
                           receiver_url=receiver or f"http://{target}/alerts/webhook",
                           scrape_token=serving.token.get_secret_value(), alert_token=serving.receiver_token,
                           interval=interval, group_wait=group_wait)
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"start the model server with MLOOP_SERVING_ALERT_TOKEN=$(cat {out / 'alert-token'}) so it accepts "
                  f"Alertmanager's webhooks; then: prometheus --config.file={out / 'prometheus.yml'}, "
                  f"alertmanager --config.file={out / 'alertmanager.yml'}", soft_wrap=True, markup=False)
