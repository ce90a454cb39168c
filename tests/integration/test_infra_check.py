"""The infra check for real: a registered candidate started in its own ``mloop serve``, sent its input example and
a deployment's recorded requests, judged on its answers, p99 latency and memory — and nothing left behind."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import psutil
import pytest

from mloop.automation import infra
from mloop.automation.infra import InfraReport, check_can_serve
from mloop.config import InfraSection, MonitorSection, ProjectConfig, load_project
from mloop.project import run_project
from tests.support.projects import write_project
from tests.support.servers import post, start_server, stop

pytestmark = pytest.mark.integration

GENEROUS = InfraSection(p99_ms=10_000, max_memory_mb=16_384, timeout="120s")


@pytest.fixture(scope="module")
def cfg(first_run, tmp_path_factory) -> ProjectConfig:
    """A copy of the trained reference project (breast_cancer v1), shared by the module."""
    root, _ = first_run
    copy = Path(shutil.copytree(root, tmp_path_factory.mktemp("infra") / "breast_cancer",
                                ignore=shutil.ignore_patterns("__pycache__", "deployments", "monitor")))
    return load_project(copy)


def _candidate_servers() -> list[str]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            line = child.cmdline()
        except psutil.Error:
            continue
        if "serve" in line and "mloop.cli.main" in line and any(a.startswith("infra-check-") for a in line):
            found.append(" ".join(line))
    return found


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    yield
    assert _candidate_servers() == []
    if "cfg" in request.fixturenames:
        scratch = request.getfixturevalue("cfg").store / "tmp"
        assert not list(scratch.glob("mloop-infra-*"))
        monitor = request.getfixturevalue("cfg").store / "monitor"
        assert not list(monitor.glob("infra-check-*"))  # the candidate had no monitoring folder


def test_a_registered_model_passes_with_generous_limits_and_the_numbers_are_sane(cfg: ProjectConfig):
    report = check_can_serve(cfg, "models:/breast_cancer@champion", GENEROUS)
    assert report.ok, report.reason
    assert report.version == "1" and report.uri == "models:/breast_cancer@champion"
    # the input example (5 rows) whole, then row by row
    assert report.requests == 6 and report.rows == 10 and report.production_rows == 0 and report.failures == []
    assert report.p99_ms is not None and report.p50_ms is not None and 0 < report.p50_ms <= report.p99_ms
    assert report.max_rss_mb is not None and report.max_rss_mb > 50
    assert report.reason.startswith("answered 6 requests, p99 ") and "MB" in report.reason
    assert "no deployment named" in report.notes[0] and "no deployment named" in report.reason
    assert InfraReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    assert not (cfg.store / "monitor").exists()


def test_a_p99_over_the_limit_fails_naming_the_limit(cfg: ProjectConfig):
    report = check_can_serve(cfg, "models:/breast_cancer/1", InfraSection(p99_ms=0.001))
    assert not report.ok and report.failures == [] and report.requests == 6
    assert "p99 latency" in report.reason and "p99_ms = 0.001 ms" in report.reason and "memory" not in report.reason


def test_memory_over_the_limit_fails_naming_it(cfg: ProjectConfig):
    report = check_can_serve(cfg, "models:/breast_cancer/1", InfraSection(max_memory_mb=1))
    assert not report.ok and report.max_rss_mb is not None and report.max_rss_mb > 50
    assert "memory" in report.reason and "max_memory_mb = 1 MB" in report.reason and "p99" not in report.reason


def test_a_deployments_recorded_requests_are_sent_while_it_serves_undisturbed(cfg: ProjectConfig, first_run):
    import pandas as pd

    data = pd.read_csv(first_run[0] / "data" / "breast_cancer.csv").drop(columns=["target"])
    proc, url = start_server(cfg.root, "models:/breast_cancer/1", "--name", "prod", "--monitor-interval", "1")
    try:
        for i in range(3):
            status, _ = post(f"{url}/predict", json.dumps(
                {"instances": data.iloc[i * 20:(i + 1) * 20].to_dict(orient="records")}).encode())
            assert status == 200
        predictions = cfg.monitor_dir("prod") / "predictions"
        deadline = time.time() + 20
        while time.time() < deadline and not list(predictions.glob("*.parquet")):
            time.sleep(0.2)
        report = check_can_serve(cfg, "models:/breast_cancer/1", GENEROUS.model_copy(update={"sample": 25}),
                                 deployment="prod")
        still_serving, _ = post(f"{url}/predict", json.dumps({"instances": data.iloc[:1].to_dict(orient="records")}).encode())
    finally:
        err = stop(proc)
    assert report.ok, report.reason
    # the example (1 + 5 requests, 10 rows), 25 of the 60 recorded rows 5 at a time (5) and in one batch (1)
    assert report.production_rows == 25 and report.rows == 10 + 25 + 25 and report.requests == 6 + 5 + 1
    assert report.notes == [] and "recorded" not in report.reason
    assert still_serving == 200 and "Traceback" not in err
    assert sorted(p.name for p in (cfg.store / "monitor").iterdir()) == ["prod"]

    # the same log named by its folder; and a sample of 0 sends only the example
    by_folder = check_can_serve(cfg, "models:/breast_cancer/1", GENEROUS.model_copy(update={"sample": 7}),
                                production_log=cfg.monitor_dir("prod"))
    assert by_folder.ok and by_folder.production_rows == 7 and by_folder.requests == 6 + 2 + 1


def test_a_deployment_without_a_log_sends_only_the_example_and_says_so(cfg: ProjectConfig):
    report = check_can_serve(cfg, "models:/breast_cancer/1", GENEROUS, deployment="nobody")
    assert report.ok and report.production_rows == 0 and report.requests == 6
    assert "no prediction log of deployment 'nobody'" in report.notes[0]


def test_a_version_that_does_not_exist_is_a_failed_report_not_an_exception(cfg: ProjectConfig):
    report = check_can_serve(cfg, "models:/breast_cancer/99", GENEROUS)
    assert not report.ok and report.requests == 0 and report.version == ""
    assert "models:/breast_cancer/99" in report.reason and "not found" in report.reason
    bad = check_can_serve(cfg, "breast_cancer", GENEROUS)
    assert not bad.ok and "is not a model URI" in bad.reason


def test_a_server_that_exits_at_start_is_reported_with_what_it_said(cfg: ProjectConfig, monkeypatch):
    monkeypatch.setenv("MLOOP_TOKEN", "old")  # a renamed variable: every server refuses to start
    report = check_can_serve(cfg, "models:/breast_cancer/1", GENEROUS)
    assert not report.ok and report.requests == 0
    assert "exited with code" in report.reason and "MLOOP_SERVING_TOKEN" in report.reason


def test_a_server_not_ready_in_time_is_stopped_and_reported(cfg: ProjectConfig):
    report = check_can_serve(cfg, "models:/breast_cancer/1", GENEROUS.model_copy(update={"timeout": "1s"}))
    assert not report.ok and "not ready within timeout = 1 s" in report.reason and report.requests == 0


def test_ctrl_c_during_the_check_stops_the_server_and_removes_its_folder(cfg: ProjectConfig, monkeypatch):
    def interrupted(*args, **kwargs):
        time.sleep(0.5)  # the server is starting
        raise KeyboardInterrupt

    monkeypatch.setattr(infra, "_input_example", interrupted)
    with pytest.raises(KeyboardInterrupt):
        check_can_serve(cfg, "models:/breast_cancer/1", GENEROUS)
    # nothing_left_behind checks the process and the folder


def test_the_check_is_skipped_when_off(cfg: ProjectConfig):
    report = check_can_serve(cfg, "models:/breast_cancer/1", InfraSection(enabled=False))
    assert report.ok and report.skipped and report.requests == 0 and "off" in report.reason


# ------------------------------------------------------------------ categories, booleans and missing values

SHOP = '''
from typing import Any

from mloop import ModelCandidate, pipeline, step


@step
def load_data(n: int = 400) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    plan = rng.choice(["basic", "plus", "pro"], n)
    region = rng.choice(["north", "south", "east"], n).astype(object)
    spend = rng.gamma(2.0, 50.0, n)
    frame = pd.DataFrame({"plan": plan, "region": region, "age": rng.integers(18, 80, n), "spend": spend,
                          "member": rng.random(n) < 0.4})
    frame.loc[rng.random(n) < 0.1, "region"] = None
    frame.loc[rng.random(n) < 0.1, "spend"] = np.nan
    frame["outcome"] = np.where(spend / 50 + (plan == "pro") * 2 > 2.5, "churn", "stay")
    return frame


@step(outputs=("train", "test"))
def split(data: Any) -> tuple[Any, Any]:
    return data.iloc[:300].reset_index(drop=True), data.iloc[300:].reset_index(drop=True)


@step
def train(train: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer([
        ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                                     OneHotEncoder(handle_unknown="ignore")), ["plan", "region"]),
        ("numbers", SimpleImputer(), ["age", "spend", "member"]),
    ])
    return make_pipeline(encode, LogisticRegression(max_iter=500)).fit(train.drop(columns=["outcome"]), train["outcome"])


@pipeline
def training() -> ModelCandidate:
    train_set, test_set = split(load_data())
    return ModelCandidate(model=train(train_set), train=train_set, test=test_set, target="outcome")
'''


def test_recorded_categories_booleans_and_missing_values_are_sent_as_a_client_sends_them(
        tmp_path: Path, mlflow_db_template: Path):
    from mloop.registry.fetch import load_registered
    from tests.support.asgi import app_for, call

    root = write_project(tmp_path / "shop", "shop", SHOP)
    (root / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    shop = load_project(root)
    run_project(shop)
    # a deployment's log, written by the server's own monitor (in memory here): strings, booleans, nulls
    model = load_registered(shop, "models:/shop/1")
    app = app_for(model, monitor=MonitorSection(interval=10), monitor_dir=shop.monitor_dir("web"))
    instances = [{"plan": ["basic", "plus", "pro"][i % 3], "region": [None, "north", "east", "south"][i % 4],
                  "age": 20 + i, "spend": None if i % 5 == 0 else 10.0 * i, "member": i % 2 == 0} for i in range(40)]
    for start in range(0, 40, 10):
        assert call(app, "POST", "/predict", json={"instances": instances[start:start + 10]}).status_code == 200
    app.dataplane.update_monitoring()
    app.dataplane.close()
    assert list((shop.monitor_dir("web") / "predictions").glob("*.parquet"))

    report = check_can_serve(shop, "models:/shop/1", GENEROUS.model_copy(update={"sample": 40}), deployment="web")
    assert report.ok, report.reason + " | " + "; ".join(report.failures)
    assert report.production_rows == 40 and report.rows == 10 + 40 + 40 and report.failures == []
    assert not list(shop.scratch().glob("mloop-infra-*"))
    assert [p.name for p in (shop.store / "monitor").iterdir()] == ["web"]
