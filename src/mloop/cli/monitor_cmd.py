"""``mloop monitor report``: drift of a data file against a registered model's training reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from mloop.cli.output import console
from mloop.errors import DataError, MloopError

EXIT_DRIFT = 3  # --fail-on-drift was exceeded (distinct from 1, internal error, and 2, bad input)


class DriftFound(MloopError):
    exit_code = EXIT_DRIFT


def read_table(path: Path):  # type: ignore[no-untyped-def]
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


def report(source: Path | None, *, since: str | None, model: str | None, out: Path | None, project: Path | None,
           alpha: float, min_samples: int, fail_on_drift: float | None) -> None:
    from mloop.config import load_project
    from mloop.models.fetch import download_model, parse_model_uri, resolve_version
    from mloop.models.bundle import read_bundle
    from mloop.monitor.drift import DriftDetector
    from mloop.monitor.report import number, render

    if (source is None) == (since is None):
        raise DataError("pass either --from FILE (a data file) or --since DURATION (the served predictions)",
                        hint="e.g. mloop monitor report --since 1h --out report.html")
    cfg = load_project(project)
    uri = model or f"models:/{cfg.model_name}@champion"
    name, _, _ = parse_model_uri(uri)
    accuracy = None
    if since is not None:
        frame, version, accuracy = _served(cfg, name, since, None if model is None else resolve_version(cfg, uri))
        what = f"predictions of the last {since}"
    else:
        assert source is not None
        version = resolve_version(cfg, uri)
        frame = read_table(source)
        what = source.name
    _, profile, _ = read_bundle(download_model(cfg, f"models:/{name}/{version}"))
    known = [c for c in frame.columns if c in profile.features_]
    if not known:
        raise DataError(f"{source or what} shares no column with {name} v{version}'s training data",
                        hint=f"its columns are: {', '.join(list(profile.features_)[:6])}, ...")
    drift = DriftDetector(alpha=alpha, min_samples=min_samples).fit(profile).score(frame[known])
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("feature", "verdict", "PSI", "KS D / chi2", "p-value", "values", "missing"):
        table.add_column(column)
    for fname, f in sorted(drift.features.items(), key=lambda kv: (not kv[1].drifted, kv[0])):
        verdict = "no verdict" if f.drifted is None else ("[bold red]drift[/]" if f.drifted else "stable")
        table.add_row(fname, verdict, number(f.psi), number(f.statistic), number(f.p_value), str(f.n), str(f.missing))
    console.print(table)
    share = drift.drifted_share
    if share is None:
        console.print(f"{len(frame)} rows: not enough data for a verdict (min {min_samples} per feature)")
    else:
        console.print(f"{name} v{version}: {sum(bool(f.drifted) for f in drift.evaluated)} of {len(drift.evaluated)} "
                      f"features drifted ({share:.0%}) in {len(frame)} rows of {what}")
    ignored = [c for c in frame.columns if c not in profile.features_]
    if ignored:
        console.print(f"not in the training data, not compared: {', '.join(map(str, ignored[:8]))}", soft_wrap=True)
    if out is not None:
        from mloop.pipeline.artifacts import atomic_write_text

        atomic_write_text(out, render(f"Drift of {what} against {name} v{version}", profile, frame, drift,
                                      accuracy=accuracy))
        console.print(f"report: {out}")
    if fail_on_drift is not None and share is not None and share > fail_on_drift:
        raise DriftFound(f"{share:.0%} of features drifted, above --fail-on-drift {fail_on_drift:.0%}",
                         hint="retrain on recent data, or inspect the report")


def _duration(text: str, option: str) -> float:
    from mloop.config import duration_s

    try:
        return duration_s(text)
    except ValueError as err:
        raise DataError(f"{option} {text!r}: {err}", hint="e.g. 30m, 1h or 2d") from err


def _served(cfg: Any, name: str, since: str, version: str | None) -> tuple[Any, str, Any]:
    """Rows served in the last ``since`` (of ``version``, or of the latest one served) and accuracy over time."""
    import time

    from mloop.monitor.predlog import read_log

    folder = cfg.monitor_dir(name)
    start = time.time() - _duration(since, "--since")
    frame = read_log(folder / "predictions", since=start)
    if not len(frame):
        raise DataError(f"no predictions of {name} were logged in the last {since} (looked in {folder / 'predictions'})",
                        hint="serve or deploy the model and send it requests; or use --from FILE")
    version = version or str(frame["version"].iloc[-1])
    frame = frame[frame["version"] == version]
    if not len(frame):
        raise DataError(f"no predictions of {name} v{version} in the last {since}",
                        hint="leave out the version to use the one served last")
    feedback = read_log(folder / "feedback", since=start)
    accuracy = None
    if len(feedback):
        from mloop.monitor.report import accuracy_over_time

        accuracy = accuracy_over_time(frame, feedback)
    meta = {"ts", "request_id", "row", "version", "prediction", "outlier_score", "outlier"}
    return frame[[c for c in frame.columns if c not in meta]], version, accuracy


def _model_name(model: str | None, project: Path | None) -> tuple[Any, str]:
    from mloop.config import load_project

    cfg = load_project(project)
    return cfg, model or cfg.model_name


def _ago(ts: float) -> str:
    import time

    from mloop.cli.output import seconds

    return f"{seconds(max(time.time() - ts, 0.0))} ago"


def status(model: str | None, *, as_json: bool, project: Path | None) -> None:
    import json

    cfg, name = _model_name(model, project)
    path = cfg.monitor_dir(name) / "status.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"no monitoring status for {name!r} yet ({path} does not exist)",
                        hint="deploy or serve the model (mloop deploy); its status appears after the first "
                             "monitoring interval") from None
    if as_json:
        print(json.dumps(data, indent=1))
        return
    from mloop.deploy.local import process_alive

    pid = data.get("pid")
    running = isinstance(pid, int) and process_alive(pid)
    console.print(f"[bold]{data['model']}[/] v{data['version']}: updated {_ago(data['updated'])}"
                  + ("" if running else f" [yellow](the server, pid {data.get('pid')}, is not running: last status)[/]"))
    drift = data.get("drift", {})
    share = drift.get("share")
    if share is None:
        console.print(f"drift: no verdict - {drift.get('note', 'no data')}")
    else:
        drifted = sorted((f for f, v in drift.get("features", {}).items() if v.get("drifted")),
                         key=lambda f: drift["features"][f].get("p_value") or 0.0)
        console.print(f"drift: {len(drifted)} of {len(drift.get('features', {}))} features drifted ({share:.0%}) "
                      f"in the last {drift.get('rows')} rows" + (f": {', '.join(drifted[:8])}" if drifted else ""),
                      soft_wrap=True)
    predictions = drift.get("predictions")
    if predictions and predictions.get("drifted") is not None:
        console.print(f"predicted classes: {'[bold red]drifted[/]' if predictions['drifted'] else 'stable'} "
                      f"(now {predictions['current']}, training {predictions['training']})", soft_wrap=True)
    outliers = data.get("outliers", {})
    if outliers.get("ratio") is not None:
        console.print(f"outliers: {outliers['ratio']:.1%} of {outliers['rows']} rows")
    feedback = data.get("feedback", {})
    if feedback.get("labelled_total"):
        scores = ", ".join(f"{k} {feedback[k]:.3f}" for k in ("accuracy", "precision", "recall") if k in feedback)
        console.print(f"live: {scores} over {feedback['labelled_total']} labelled predictions")
    else:
        console.print("live accuracy: no labelled predictions yet (POST /feedback)")
    ops = data.get("operations", {})
    p99 = ops.get("p99_latency_ms")
    ratio = ops.get("error_ratio")
    console.print(f"last {ops.get('window_s', 0):.0f} s: {ops.get('requests', 0)} requests, "
                  f"p99 {'-' if p99 is None else f'{p99:.1f} ms'}, "
                  f"server errors {'-' if ratio is None else f'{ratio:.2%}'}")
    alerts = data.get("alerts", {})
    firing = alerts.get("firing", [])
    pending = alerts.get("pending", {})
    console.print("alerts: " + (f"[bold red]firing {', '.join(firing)}[/]" if firing else "none firing")
                  + (f"; pending {', '.join(f'{k} ({v:.0f} s)' for k, v in pending.items())}" if pending else ""))


def alerts(model: str | None, *, since: str | None, limit: int, as_json: bool, project: Path | None) -> None:
    import json
    import time

    from mloop.monitor.alerts import firing, iso, read_alert_log

    cfg, name = _model_name(model, project)
    events = read_alert_log(cfg.monitor_dir(name) / "alerts.jsonl")
    now_firing = firing(events)
    if since is not None:
        start = time.time() - _duration(since, "--since")
        events = [e for e in events if e.get("ts", 0) >= start]
    events = events[-limit:]
    if as_json:
        for event in events:
            print(json.dumps(event, default=str))
        return
    if now_firing:
        console.print("[bold red]firing:[/] " + ", ".join(
            f"{alert} ({source}, since {iso(e.get('started', e['ts']))})" for (source, alert), e in now_firing.items()),
            soft_wrap=True)
    else:
        console.print(f"no alert of {name} is firing")
    if not events:
        console.print("no alert events" + (f" in the last {since}" if since else " yet"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("time (UTC)", "alert", "status", "source", "value", "summary"):
        table.add_column(column)
    for event in events:
        value = event.get("value")
        table.add_row(iso(event["ts"])[:19].replace("T", " "), event.get("alert", ""),
                      "[red]firing[/]" if event.get("status") == "firing" else "[green]resolved[/]",
                      event.get("source", ""), "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value),
                      event.get("summary", ""))
    console.print(table)


def export(out: Path, *, target: str, alertmanager: str, receiver: str | None, model: str | None,
           project: Path | None, interval: str = "15s", group_wait: str = "30s") -> None:
    from mloop.monitor.export import write_export

    cfg, name = _model_name(model, project)
    for option, value in (("--target", target), ("--alertmanager", alertmanager)):
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise DataError(f"{option} {value!r} is not host:port", hint=f"e.g. {option} 127.0.0.1:8080")
    written = write_export(out, name, cfg.settings.monitor, target=target, alertmanager=alertmanager,
                           receiver_url=receiver or f"http://{target}/alerts/webhook", interval=interval,
                           group_wait=group_wait)
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"start the model server with MLOOP_ALERT_TOKEN=$(cat {out / 'alert-token'}) so it accepts "
                  f"Alertmanager's webhooks; then: prometheus --config.file={out / 'prometheus.yml'}, "
                  f"alertmanager --config.file={out / 'alertmanager.yml'}", soft_wrap=True, markup=False)
