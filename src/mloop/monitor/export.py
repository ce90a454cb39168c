"""``mloop monitor export``: the same alert rules and metrics, for a team's own Prometheus, Alertmanager and Grafana.

Writes into one folder: ``prometheus.yml`` (scrapes the model server, loads the rules, sends alerts to
Alertmanager), ``mloop-rules.yml`` (each ``[monitor] alerts`` rule as PromQL), ``alertmanager.yml``
(routes every alert to mloop's authenticated webhook receiver, resolved ones too), the token files
they reference, and ``grafana-dashboard.json`` (importable; the data source is chosen on import).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from mloop._fs import atomic_write_text
from mloop.config import MonitorSection
from mloop.monitor.metrics import ALERT_METRICS, PREDICT_ROUTES, job_name

PREDICT = f'route=~"{"|".join(PREDICT_ROUTES)}"'


def alert_rules(model: str, settings: MonitorSection) -> dict[str, Any]:
    """Each rule as PromQL. A rule relative to the test score compares with the ``mloop_test_score`` the
    server exports, so it stays right when another version is served."""
    rules = []
    job = job_name(model)
    for rule in settings.alerts:
        value = ALERT_METRICS[rule.metric].promql(job, model, settings.rate_window)
        if rule.worse_than_test is not None:
            test = f'min(mloop_test_score{{job="{job}",model="{model}",metric="{rule.metric}"}})'
            op, sign = ("<", "-") if rule.higher_is_better else (">", "+")
            expr = f"{value} {op} ({test} {sign} {rule.worse_than_test:g} * abs({test}))"
            summary = rule.summary or f"live {rule.metric} is more than {rule.worse_than_test:.0%} worse than on the test set"
        else:
            expr = f"{value} {rule.op} {rule.threshold:g}"
            summary = rule.summary or f"{rule.metric} {rule.op} {rule.threshold:g}"
        rules.append({
            "alert": rule.name,
            "expr": expr,
            "for": rule.for_,
            "labels": {"severity": rule.severity, "model": model, "source": "prometheus"},
            "annotations": {"summary": summary, "value": "{{ $value }}"},
        })
    return {"groups": [{"name": f"mloop-{model}", "rules": rules}]}


def prometheus_config(model: str, target: str, alertmanager: str, interval: str, scrape_token: bool) -> dict[str, Any]:
    job: dict[str, Any] = {"job_name": job_name(model), "metrics_path": "/metrics",
                           "static_configs": [{"targets": [target]}]}
    if scrape_token:
        job["authorization"] = {"type": "Bearer", "credentials_file": "scrape-token"}
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": ["mloop-rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [job],
    }


def alertmanager_config(receiver_url: str, group_wait: str) -> dict[str, Any]:
    return {
        "route": {"receiver": "mloop", "group_by": ["alertname", "model"], "group_wait": group_wait,
                  "group_interval": group_wait, "repeat_interval": "4h"},
        "receivers": [{"name": "mloop", "webhook_configs": [{
            "url": receiver_url, "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": "alert-token"}}}]}],
    }


def _panel(panel_id: int, title: str, exprs: list[tuple[str, str]], x: int, y: int, *, unit: str = "short",
           kind: str = "timeseries", w: int = 12, h: int = 8, max_value: float | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if max_value is not None:
        defaults |= {"min": 0, "max": max_value}
    return {"id": panel_id, "type": kind, "title": title, "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": x, "y": y, "w": w, "h": h}, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {}, "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                                        "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                                       for i, (expr, legend) in enumerate(exprs)]}


def grafana_dashboard(model: str) -> dict[str, Any]:
    job = f'job="{job_name(model)}"'
    m = f'{job},model="{model}"'
    rate = "$__rate_interval"
    panels = [
        _panel(1, "Model version served", [(f"mloop_model_info{{{m}}}", "v{{version}}")], 0, 0, kind="stat", w=6, h=4),
        _panel(2, "Drifted features (share)", [(f"mloop_drifted_features_share{{{m}}}", "drifted share")],
               6, 0, kind="stat", unit="percentunit", w=6, h=4, max_value=1),
        _panel(3, "Live accuracy", [(f'mloop_live_score{{{m},metric="accuracy"}}', "accuracy")],
               12, 0, kind="stat", unit="percentunit", w=6, h=4, max_value=1),
        _panel(4, "Alerts firing (mloop rules)", [(f"sum(mloop_alerts_firing{{{m}}})", "firing")], 18, 0,
               kind="stat", w=6, h=4),
        _panel(5, "Request rate by route", [(f"sum by (route) (rate(mloop_requests_total{{{job}}}[{rate}]))",
                                             "{{route}}")], 0, 4, unit="reqps"),
        _panel(6, "Latency percentiles (predictions)", [
            (f"histogram_quantile({q}, sum by (le) (rate(mloop_request_duration_seconds_bucket"
             f"{{{job},{PREDICT}}}[{rate}])))", f"p{int(q * 100)}") for q in (0.5, 0.9, 0.99)],
               12, 4, unit="s"),
        _panel(7, "Errors (share of requests, 4xx and 5xx)", [
            (f'sum(rate(mloop_requests_total{{{job},code=~"5.."}}[{rate}])) / sum(rate(mloop_requests_total{{{job}}}[{rate}]))',
             "5xx"),
            (f'sum(rate(mloop_requests_total{{{job},code=~"4.."}}[{rate}])) / sum(rate(mloop_requests_total{{{job}}}[{rate}]))',
             "4xx")], 0, 12, unit="percentunit"),
        _panel(8, "Predictions by class", [(f"sum by (label) (rate(mloop_predictions_total{{{m}}}[{rate}]))",
                                            "{{label}}")], 12, 12, unit="reqps"),
        _panel(9, "Drift p-value per feature (KS / chi-square)", [
            (f"mloop_feature_drift_p_value{{{m}}}", "{{feature}}")], 0, 20, w=24),
        _panel(10, "PSI per feature", [(f"mloop_feature_drift_psi{{{m}}}", "{{feature}}")], 0, 28),
        _panel(11, "Drifted features and prediction drift", [
            (f"mloop_drifted_features_share{{{m}}}", "drifted share"),
            (f"mloop_prediction_drift_detected{{{m}}}", "prediction drift")], 12, 28, unit="percentunit"),
        _panel(12, "Outlier ratio", [(f"mloop_outlier_ratio{{{m}}}", "outliers")], 0, 36, unit="percentunit"),
        _panel(13, "Live scores", [(f"mloop_live_score{{{m}}}", "{{metric}} {{of}}"),
                                   (f"mloop_test_score{{{m}}}", "{{metric}} on the test set")], 12, 36),
        _panel(14, "Labelled predictions per second", [
            (f"rate(mloop_labelled_predictions_total{{{m}}}[{rate}])", "labelled")], 0, 44),
        _panel(15, "Monitoring window rows", [(f"mloop_monitor_window_rows{{{m}}}", "rows")], 12, 44),
    ]
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus"}],
        "title": f"mloop: {model}", "uid": f"mloop-{model}"[:40], "tags": ["mloop"], "schemaVersion": 39,
        "version": 1, "editable": True, "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": panels,
    }


def write_export(out: Path, model: str, settings: MonitorSection, *, target: str, alertmanager: str,
                 receiver_url: str, scrape_token: str = "", alert_token: str = "", interval: str = "15s",
                 group_wait: str = "30s") -> list[Path]:
    """Write every file; returns their paths.

    ``scrape_token`` is the server's token (Prometheus sends it when scraping); ``alert_token`` the one
    its alert receiver accepts (Alertmanager sends it); without one a new token is made and written.
    """
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    alert_token = alert_token or scrape_token or secrets.token_urlsafe(24)
    files = {
        "prometheus.yml": yaml.safe_dump(prometheus_config(model, target, alertmanager, interval, bool(scrape_token)),
                                         sort_keys=False),
        "mloop-rules.yml": yaml.safe_dump(alert_rules(model, settings), sort_keys=False, width=1000),
        "alertmanager.yml": yaml.safe_dump(alertmanager_config(receiver_url, group_wait), sort_keys=False),
        "grafana-dashboard.json": json.dumps(grafana_dashboard(model), indent=1),
        "alert-token": alert_token,
    }
    if scrape_token:
        files["scrape-token"] = scrape_token
    written = []
    for name, text in files.items():
        path = out / name
        atomic_write_text(path, text, mode=0o600 if name.endswith("token") else None)
        written.append(path)
    # The token files are secrets: a folder inside a git repository keeps them out of commits.
    atomic_write_text(out / ".gitignore", "# written by mloop monitor export: secrets\nalert-token\nscrape-token\n")
    return written
