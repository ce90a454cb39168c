"""The Deployments, Monitoring and Continuous training pages with Streamlit's AppTest, against a real deployment
(``mloop serve`` started by ``mloop.deploy.local``) that served traffic, and a project whose agent ran a cycle.

The deployment tests share one module-scoped deployment and run in file order: the monitoring test sends the
first feedback, the roll-out test leaves v1 promoted, the rollback test moves back to v2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from mloop.automation import manual
from mloop.automation.agent import open_audit
from mloop.config import load_project
from mloop.deploy import local
from mloop.errors import DeployError
from mloop.monitor import queries
from mloop.project import run_project
from tests.support.projects import with_monitor
from tests.support.servers import post
from tests.support.ui import app_test, texts

pytestmark = pytest.mark.integration

NAME = "breast_cancer"
MONITOR = "[monitor]\ninterval = 1\nmin_samples = 30\n"


@contextmanager
def plain_main() -> Iterator[None]:
    """A bare ``__main__`` while a pipeline runs in this process: Streamlit's AppTest leaves the page script it ran
    as ``__main__``, and multiprocessing would run that script again in each new executor worker."""
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


@pytest.fixture(scope="module")
def served(first_run, tmp_path_factory):
    """A copy of the reference project with a second version, deployed as v1 then swapped to v2 (so it can roll
    back), after 30 requests of 10 rows each; the features and labels it was sent, by request id."""
    root, _ = first_run
    copy = Path(shutil.copytree(root, tmp_path_factory.mktemp("ui-ops") / NAME,
                                ignore=shutil.ignore_patterns("__pycache__", "deployments", "monitor")))
    with_monitor(copy, MONITOR)
    cfg = load_project(copy)
    with plain_main():
        second = run_project(cfg, params={"logreg": {"C": "0.0005"}, "knn": {"n_neighbors": "150"}})
    assert second.registration is not None and second.registration.version == "2"
    local.deploy(cfg, f"models:/{NAME}/1")
    try:
        swapped = local.deploy(cfg, f"models:/{NAME}/2")
        assert (swapped.action, swapped.version) == ("swapped", "2")
        data = pd.read_csv(copy / "data" / "breast_cancer.csv")
        features, labels = data.drop(columns=["target"]), {}
        for i in range(30):
            part = features.iloc[i * 10:(i + 1) * 10]
            status, _ = post(f"{swapped.url}/predict", json.dumps({"instances": part.to_dict("records")}).encode(),
                             {"x-request-id": f"r{i}"})
            assert status == 200
            labels[f"r{i}"] = data["target"].iloc[i * 10:(i + 1) * 10].tolist()
        folder = cfg.monitor_dir(NAME)
        deadline = time.time() + 30
        while time.time() < deadline:
            found = queries.status(folder)
            if found is not None and found.operations.requests >= 30 and _logged(folder) >= 300:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the monitor did not see the traffic: {found}")
        yield cfg, swapped.url, labels, features
    finally:
        local.undeploy(cfg, NAME)


def _logged(folder: Path) -> int:
    from mloop.errors import DataError

    try:
        return len(queries.served_log(folder, NAME).predictions)
    except DataError:
        return 0


def _served_version(cfg) -> str | None:
    deployment = local.load_state(cfg, NAME)
    assert deployment is not None
    return local.status(deployment).served_version


def _charts(at) -> dict[str, list[pd.DataFrame]]:
    """The page's Altair charts: title -> the data of each of its datasets."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    found = {}
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        found[str(spec.get("title"))] = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets]
    return found


def _specs(at) -> dict[str, dict]:
    """The page's Altair charts: title -> its Vega-Lite spec."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    return {str(spec.get("title")): spec for spec in specs}


def _mark(spec: dict) -> str:
    mark = spec["mark"]
    return mark if isinstance(mark, str) else mark["type"]


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ------------------------------------------------------------------------------------------ no data yet


def test_each_page_says_plainly_what_is_not_there_yet_and_writes_nothing(first_run, tmp_path):
    # a copy without what other tests may have left beside the shared run (a server's monitoring folder)
    root = Path(shutil.copytree(first_run[0], tmp_path / "breast_cancer", ignore=shutil.ignore_patterns(
        "__pycache__", "deployments", "monitor", "automation")))
    before = sorted(p.relative_to(root) for p in (root / ".mloop").rglob("*"))
    for page, said in (("deployments", "No deployment runs: start one with `mloop deploy`"),
                       ("monitoring", "Nothing is monitored yet"),
                       ("training", "No continuous-training agent here")):
        at = app_test(root, page).run()
        assert not at.exception, at.exception
        assert said in texts(at), texts(at)
    assert "mloop agent start" in texts(at)
    assert sorted(p.relative_to(root) for p in (root / ".mloop").rglob("*")) == before


# ------------------------------------------------------------------------------------------- deployments


def test_the_deployment_is_shown_healthy_with_the_version_it_serves_and_its_url(served):
    cfg, url, _, _ = served
    at = app_test(cfg.root, "deployments").run()
    assert not at.exception, at.exception
    assert NAME in [h.value for h in at.subheader]
    metrics = _metrics(at)
    assert (metrics["State"], metrics["Serves"], metrics["Served before"]) == ("healthy", "v2", "v1")
    assert f"URL: {url}" in texts(at) and "alive: **yes** · ready: **yes**" in texts(at)
    assert not at.button(key=f"rollback-{NAME}").disabled
    assert "Roll-out" not in texts(at)  # none in progress: no split, no promote or abort
    assert [b.key for b in at.button] == [f"rollback-{NAME}"]


# -------------------------------------------------------------------------------------------- monitoring


def test_monitoring_shows_traffic_latency_drift_and_a_chosen_features_histogram_then_live_scores(served):
    cfg, url, labels, _ = served
    at = app_test(cfg.root, "monitoring").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="monitor_deployment").value == NAME
    metrics = _metrics(at)
    assert int(metrics["Requests"]) >= 30 and metrics["Request rate"].endswith("/s")
    assert metrics["p50 latency"].endswith(" ms") and metrics["p99 latency"].endswith(" ms")
    assert metrics["Server errors"] == "0.00%" and metrics["Outliers"].endswith("%")
    assert "No feedback yet: send labels to POST /feedback" in texts(at)
    charts = _charts(at)
    [requests] = charts["Requests per time bucket"]
    assert requests["requests"].sum() == 30 and set(requests["version"]) == {"2"}
    assert len(requests) == 20 and _mark(_specs(at)["Requests per time bucket"]) == "bar"  # every bucket, as bars
    assert "Outlier ratio" in charts and _mark(_specs(at)["Outlier ratio"]) == "rule"
    now, predicted = (frame.value for frame in at.dataframe)  # drift now, the predicted classes now and in training
    # at most three significant digits: "< 1e-6", "4.2e-05", "0.00123", "0.748", "1" (no run of 30 zeros)
    assert now["p-value"].str.fullmatch(r"< 1e-6|\d\.\de-0[4-6]|0\.0{0,2}[1-9]\d{0,2}|1|-").all(), now["p-value"]
    assert len(now) == 30
    assert predicted["predictions"].tolist() == ["now (last 300 rows)", "training"]
    assert set(predicted.columns) == {"predictions", "0", "1"} and predicted["1"].str.endswith("%").all()
    assert "**Predictions: " in texts(at) and "{'" not in texts(at)
    [drift] = [frames[0] for title, frames in charts.items() if title.startswith("Drift per feature over time (v2")]
    assert drift["feature"].nunique() == 30 and drift["rows"].groupby(drift["start"]).first().sum() == 300
    at.selectbox(key="monitor_feature").select("mean_texture").run()
    assert not at.exception, at.exception
    [histogram] = _charts(at)["mean_texture: training vs served"]
    served_counts = histogram[histogram["data"] == "served (v2)"]["count"]
    assert served_counts.sum() == 300  # every row v2 served, in the reference's bins
    assert "mean_texture: " in texts(at) and "against 300 rows served by v2" in texts(at)
    assert "No alert is firing." in texts(at)
    from mloop.monitor.status import read_operations

    deadline = time.time() + 20  # the server's history: an interval per monitoring update, 30 requests among them
    while time.time() < deadline and sum(p.requests for p in read_operations(cfg.monitor_dir(NAME))) < 30:
        time.sleep(0.3)
    at.run()
    charts, specs = _charts(at), _specs(at)
    [rate] = charts["Requests per second"]
    [latency] = charts["Latency (ms)"]
    assert rate["requests"].sum() >= 30 and _mark(specs["Requests per second"]) == "bar"
    assert set(latency["percentile"]) == {"p50", "p90", "p99"} and (latency["ms"] > 0).all()
    assert specs["Latency (ms)"]["encoding"]["detail"]["field"] == "segment"  # no line across a gap
    assert latency["segment"].nunique() == 1  # the server ran throughout: one line, not a dot per update

    for request_id in ("r0", "r1", "r2"):  # labels for 30 of the rows
        status, _ = post(f"{url}/feedback", json.dumps({"id": request_id, "labels": labels[request_id]}).encode())
        assert status == 200
    deadline = time.time() + 20
    while time.time() < deadline:
        found = queries.status(cfg.monitor_dir(NAME))
        if found is not None and found.feedback.labelled_total >= 30:
            break
        time.sleep(0.3)
    at.run()
    assert not at.exception, at.exception
    assert "No feedback yet" not in texts(at) and "over 30 labelled predictions" in texts(at)
    assert 0.0 <= float(_metrics(at)["accuracy"]) <= 1.0


def test_a_rerun_with_an_unchanged_log_does_not_read_it_again(served, monkeypatch):
    cfg, _, _, _ = served
    at = app_test(cfg.root, "monitoring").run()
    assert not at.exception, at.exception
    reads = []
    read_log = queries.read_log

    def counting(folder, since=None):
        reads.append(folder)
        return read_log(folder, since=since)

    monkeypatch.setattr(queries, "read_log", counting)
    before = queries.log_state(cfg.monitor_dir(NAME))
    at.run()
    assert not at.exception, at.exception
    assert "Requests per time bucket" in _charts(at)
    assert queries.log_state(cfg.monitor_dir(NAME)) == before  # (no request came: the server wrote no log)
    assert reads == []


def _few_rows_without_outlier_scores(root: Path) -> None:
    """A monitor folder as a server of v1 without an outlier detector leaves it after little, bursty traffic: 10
    rows, nothing for 9 minutes, 30 rows within a second (fewer than min_samples, 100), and its last status."""
    import os

    import pyarrow as pa

    from mloop.monitor.predlog import RotatingParquetLog
    from mloop.monitor.status import (
        AlertStatus,
        DriftStatus,
        FeatureDriftStatus,
        FeedbackStatus,
        MonitorStatus,
        OperationsStatus,
        OutlierStatus,
        PredictionDriftStatus,
        write_status,
    )

    folder = load_project(root).monitor_dir(NAME)
    features = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"]).head(40)
    now = time.time()
    stamps = [now - 600 + i for i in range(10)] + [now - 60 + i / 40 for i in range(30)]
    log = pd.DataFrame({"request_id": [f"q{i}" for i in range(40)], "row": 0, "version": "1"})
    log = pd.concat([log, features, pd.DataFrame({"prediction": [1] * 40})], axis=1)
    table = pa.Table.from_pandas(log, preserve_index=False).add_column(
        0, "ts", pa.array([int(t * 1e6) for t in stamps], type=pa.timestamp("us", tz="UTC")))
    RotatingParquetLog(folder / "predictions").write(table)
    drift = DriftStatus(rows=400, min_samples=100, share=0.5, features={
        "mean_radius": FeatureDriftStatus(True, 1.4, 6.06e-36, "KS p=6.06e-36 < 0.05"),
        "mean_texture": FeatureDriftStatus(False, 0.0247, 0.7536, "KS p=0.754 >= 0.05")},
        predictions=PredictionDriftStatus(True, 0.001, "chi-square p=0.001 < 0.05", {"0": 0.55, "1": 0.45},
                                          {"0": 0.37, "1": 0.63}))
    write_status(folder, MonitorStatus(NAME, "1", now, os.getpid(), drift,
                                       OutlierStatus(note="the model has no outlier detector"),
                                       OperationsStatus(window_s=300, requests=40), FeedbackStatus(), AlertStatus()))


def test_monitoring_of_sparse_traffic_without_outlier_scores_draws_no_empty_chart_and_says_why(first_run, tmp_path):
    root = Path(shutil.copytree(first_run[0], tmp_path / NAME, ignore=shutil.ignore_patterns(
        "__pycache__", "deployments", "monitor", "automation")))
    _few_rows_without_outlier_scores(root)
    at = app_test(root, "monitoring").run()
    assert not at.exception, at.exception
    said = texts(at)
    specs = _specs(at)
    # requests as bars over every bucket, zero where none came: no line across the 9 quiet minutes
    assert _mark(specs["Requests per time bucket"]) == "bar"
    assert specs["Requests per time bucket"]["encoding"]["x"]["axis"]["format"] == "%H:%M:%S"  # over 10 minutes
    [requests] = _charts(at)["Requests per time bucket"]
    assert requests["requests"].sum() == 40 and (requests["requests"] == 0).sum() >= 15
    # no outlier detector: a sentence, no chart with an empty percent axis
    assert "Outlier ratio" not in specs
    assert "No outlier ratio to chart: the model has no outlier detector." in said
    # 40 rows < min_samples: why drift over time is empty and what fills it, no empty plot
    assert not [title for title in specs if title.startswith("Drift per feature over time")]
    assert ("v1 served 40 rows in this window, fewer than [monitor] min_samples (100)" in said
            and "It fills once v1 has served 100 rows in the window" in said), said
    # the drift-now table: readable p-values; the prediction drift as a table, not a dict
    now, predicted = (frame.value for frame in at.dataframe)
    assert now["p-value"].tolist() == ["< 1e-6", "0.754"] and now["feature"].tolist() == ["mean_radius",
                                                                                          "mean_texture"]
    assert predicted.to_dict("records") == [{"predictions": "now (last 400 rows)", "0": "55.0%", "1": "45.0%"},
                                            {"predictions": "training", "0": "37.0%", "1": "63.0%"}]
    assert "**Predictions: drifted** (chi-square p=0.001 < 0.05)" in said and "{'" not in said


# ---------------------------------------------------------------------------------------------- roll-outs


def test_a_rollouts_split_is_shown_abort_and_promote_go_through_a_confirmation(served):
    cfg, url, _, features = served
    local.start_rollout(cfg, NAME, f"models:/{NAME}/1", "canary", 0.5)
    for row in features.head(20).to_dict("records"):
        assert post(f"{url}/predict", json.dumps({"instances": [row]}).encode())[0] == 200
    at = app_test(cfg.root, "deployments").run()
    assert not at.exception, at.exception
    assert "**Roll-out:** canary of v1, answering 50% of requests" in texts(at)
    [split] = [frame.value for frame in at.dataframe]
    assert split["version"].tolist() == ["v2", "v1"] and split["share of requests"].tolist() == ["50%", "50%"]
    assert split["role"].tolist() == ["champion", "candidate"]

    toml = cfg.root / "mloop.toml"  # with [automation], the agent owns this deployment's roll-outs
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text + "\n[automation]\n", encoding="utf-8")
    try:
        owned = app_test(cfg.root, "deployments").run()
        assert owned.button(key=f"promote-{NAME}").disabled and owned.button(key=f"abort-{NAME}").disabled
        assert "mloop models promote VERSION" in texts(owned) and "mloop agent stop" in texts(owned)
        rollback = owned.button(key=f"rollback-{NAME}")  # nor a rollback under the agent's watch
        assert rollback.disabled and "the agent is rolling out v1 here" in rollback.help
        assert "mloop agent stop" in rollback.help
        with pytest.raises(DeployError, match="the agent is rolling out a candidate on deployment") as refused:
            manual.rollback(load_project(cfg.root), NAME)  # the CLI's mloop rollback: refused the same way
        assert "mloop agent stop" in refused.value.hint and local.rollout_state(cfg, NAME)["active"]
        assert _served_version(cfg) == "2"
    finally:
        toml.write_text(text, encoding="utf-8")

    at.button(key=f"abort-{NAME}").click().run()
    assert "Abort the roll-out of v1: v2 answers every request again?" in texts(at)
    assert local.rollout_state(cfg, NAME)["active"]  # nothing happens before the confirmation
    at.button(key=f"confirm-abort-{NAME}").click().run()
    assert not at.exception, at.exception
    assert not local.rollout_state(cfg, NAME)["active"] and _served_version(cfg) == "2"
    assert "the canary of v1 is aborted" in texts(at) and "Roll-out" not in texts(at)

    local.start_rollout(cfg, NAME, f"models:/{NAME}/1", "canary", 0.2)
    at.run()
    at.button(key=f"promote-{NAME}").click().run()
    # the question says what the registry recorded of the version's gate (v1: the champion, it passed)
    assert f"Promote v1: {NAME} serves it alone from now on? It passed the gate at registration." in texts(at)
    at.button(key=f"confirm-promote-{NAME}").click().run()
    assert not at.exception, at.exception
    assert _served_version(cfg) == "1" and local.load_state(cfg, NAME).history == ["1", "2"]
    assert "promoted v1 (v2 before)" in texts(at)
    summaries = [r.summary for r in open_audit(cfg).records(model=NAME)]
    assert f"mloop ui: {NAME} roll-out of v1 aborted, v2 serves everything" in summaries
    assert f"mloop ui: {NAME} promoted v1" in summaries


def test_a_rollback_through_the_page_changes_the_served_version_after_the_confirmation(served):
    cfg, _, _, _ = served
    assert _served_version(cfg) == "1"
    at = app_test(cfg.root, "deployments").run()
    at.button(key=f"rollback-{NAME}").click().run()
    assert f"Roll back {NAME} from v1 to v2?" in texts(at)
    at.button(key=f"cancel-{NAME}").click().run()  # cancelled: nothing changes, the question is gone
    assert _served_version(cfg) == "1" and "Roll back" not in [w.value for w in at.warning]
    at.button(key=f"rollback-{NAME}").click().run()
    at.button(key=f"confirm-rollback-{NAME}").click().run()
    assert not at.exception, at.exception
    assert _served_version(cfg) == "2"
    assert f"{NAME}: rolled back from v1 to v2" in texts(at)
    assert _metrics(at)["Serves"] == "v2"
    [last] = open_audit(cfg).records(model=NAME)[-1:]
    assert (last.kind, last.version, last.summary) == ("traffic", "2", f"mloop ui: {NAME} rolled back v2")
    assert open_audit(cfg).verify() == []


def test_a_confirmation_acts_only_on_the_state_it_asked_about(served):
    cfg, _, _, _ = served
    assert _served_version(cfg) == "2" and local.load_state(cfg, NAME).history == ["1"]
    at = app_test(cfg.root, "deployments").run()
    at.button(key=f"rollback-{NAME}").click().run()
    assert f"Roll back {NAME} from v2 to v1?" in texts(at)
    local.deploy(cfg, f"models:/{NAME}/1")  # meanwhile someone else serves v1 (v2 is what a rollback gives now)
    records = len(open_audit(cfg).records(model=NAME))
    at.button(key=f"confirm-rollback-{NAME}").click().run()
    assert not at.exception, at.exception
    assert f"{NAME}: the deployment changed since you asked (it serves v1 now); nothing was done. Ask again." \
        in texts(at)
    assert _served_version(cfg) == "1" and len(open_audit(cfg).records(model=NAME)) == records


def test_a_deployment_that_fails_its_health_probe_is_not_asked_its_rollout(served):
    import os
    import signal

    cfg, _, _, _ = served
    deployment = local.load_state(cfg, NAME)
    other = "1" if _served_version(cfg) == "2" else "2"
    local.start_rollout(cfg, NAME, f"models:/{NAME}/{other}", "canary", 0.1)
    os.kill(deployment.pid, signal.SIGSTOP)  # a hung server: it accepts connections and never answers
    try:
        started = time.monotonic()
        at = app_test(cfg.root, "deployments", timeout=60).run()
        took = time.monotonic() - started
    finally:
        os.kill(deployment.pid, signal.SIGCONT)
        local.abort_rollout(cfg, NAME)
    assert not at.exception, at.exception
    assert "ready: **no**" in texts(at) and "Roll-out" not in texts(at)
    assert took < 20, took  # the 2 s health probes, not the roll-out call's 30 s


# ------------------------------------------------------------------------------------- continuous training

def test_a_damaged_or_locked_journal_is_said_plainly_and_left_untouched(first_run, tmp_path):
    from mloop.automation.journal import Journal
    from tests.support.journal import exclusively_locked

    root = Path(shutil.copytree(first_run[0], tmp_path / "breast_cancer", ignore=shutil.ignore_patterns(
        "__pycache__", "deployments", "monitor", "automation")))
    folder = root / ".mloop" / "automation"
    folder.mkdir()
    journal = folder / "journal.db"
    journal.write_bytes(b"not a database " * 300)
    at = app_test(root, "training").run()
    assert not at.exception, at.exception
    [error] = at.error
    assert "the agent's journal" in error.value and "cannot be read: file is not a database" in error.value
    assert "**Fix:** mloop doctor" in error.value
    assert journal.read_bytes() == b"not a database " * 300 and not (folder / "quarantine").exists()

    journal.unlink()
    Journal(journal).close()  # a sound journal, held by a writer in the middle of a transaction
    before = journal.read_bytes()
    with exclusively_locked(journal):
        started = time.monotonic()
        at = app_test(root, "training", timeout=20).run()
        waited = time.monotonic() - started
    assert not at.exception, at.exception
    [error] = at.error
    assert "is locked by another process" in error.value and "try again in a moment" in error.value
    assert waited < 15, waited  # not sqlite's 30 s
    assert journal.read_bytes() == before and not (folder / "quarantine").exists()


AUTOMATION = """
[automation]
poll = "200ms"

[automation.triggers]
data = false
registry = false
debounce = "0s"

[automation.gate]
rules = [{metric = "accuracy", floor = 0.5}]
alpha = 0.5
"""


def test_the_training_page_shows_a_cycle_as_steps_with_its_audit_records(tmp_path, mlflow_db_template):
    from mloop.automation import service
    from tests.support.agent_project import agent_project, data

    root = agent_project(tmp_path / "shifty", mlflow_db_template, AUTOMATION)
    cfg = load_project(root)
    with plain_main():
        run_project(cfg)  # v1, the champion
    at = app_test(root, "training").run()  # [automation], no agent ran yet
    assert not at.exception, at.exception
    assert "No agent runs; start it with `mloop agent start`" in texts(at) and "No cycle yet" in texts(at)
    assert "No audit records yet" in texts(at) and "verified" not in texts(at)

    data(1200, shifted=True, seed=3).to_csv(root / "data" / "data.csv", index=False)  # the world shifted
    assert service.trigger(service.AgentHome(cfg.root, cfg), "ui test").startswith("queued")
    at.run()
    assert "1 trigger(s) queued, the newest: manual: ui test" in texts(at)
    agent = subprocess.run([sys.executable, "-m", "mloop.cli.main", "agent", "run", "--once", "--project", str(root)],
                           capture_output=True, text=True, timeout=180)
    assert agent.returncode == 0, agent.stdout[-2000:] + agent.stderr[-2000:]

    at.run()
    assert not at.exception, at.exception
    assert "Audit log verified: its hash chain is intact" in texts(at) and "queued" not in texts(at)
    [expander] = [e for e in at.expander if "cycle " in e.label]
    assert expander.label.endswith(": promoted · candidate v2 · champion before v1")
    assert expander.icon == ":material/check_circle:"
    steps, records = (frame.value for frame in expander.dataframe)
    assert steps["step"].tolist() == ["trigger", "train", "gate", "outcome"]
    assert steps["state"].tolist() == ["taken", "done", "done", "promoted"]
    assert "manual: ui test" in steps["what"].iloc[0] and steps["what"].iloc[1].startswith("v2")
    assert {"run", "gate", "promote", "cycle"} <= set(records["kind"])
    [gantt] = _charts(at)["The agent's cycles"]
    assert gantt["phase"].tolist() == ["trigger", "train", "gate", "outcome"]
    steps, outcome = _specs(at)["The agent's cycles"]["layer"]  # the outcome's colour says what it means
    assert steps["encoding"]["x"]["axis"]["format"] in ("%H:%M:%S.%L", "%H:%M:%S")
    assert outcome["mark"]["type"] == "point" and outcome["mark"]["shape"] == "diamond"  # an instant, still seen
    assert outcome["encoding"]["x"]["field"] == "end"
    scale = outcome["encoding"]["color"]["scale"]
    colours = dict(zip(scale["domain"], scale["range"], strict=True))
    assert colours["promoted"] == "#2e7d32" and colours["unchanged"] == "#9e9e9e" and colours["failed"] == "#b71c1c"
    assert set(colours) >= {"promoted", "rejected", "held", "rolled_back", "unchanged", "failed", "abandoned"}
    assert steps["encoding"]["color"]["scale"]["domain"][:3] == ["trigger", "snapshot", "train"]
