"""The Models and Runs pages (Streamlit's AppTest) on the reference project after two runs: versions and aliases,
the metric chart, the gate's decision, lineage links into the MLflow UI, the runs table with its pages, a run's
steps as a timeline, two runs compared; and what an empty project says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mloop.config import load_project
from mloop.project import run_project
from tests.support.projects import EXAMPLE, copy_project
from tests.support.ui import app_test, texts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_runs(first_run, tmp_path_factory) -> tuple[Path, Any, Any]:
    """A copy of the reference project run again with other ``logreg.C`` and ``knn.n_neighbors`` (its other steps from
    the cache), registering v2, which the agent gated (its gate report recorded as the agent records it):
    (root, first run, second run)."""
    from mloop.automation.cycle import AGENT_GATE, AGENT_VERDICT
    from mloop.automation.gate import GateReport, HoldoutInfo, MetricCheck, SignificanceTest
    from mloop.registry.aliases import set_version_tags

    root, first = first_run
    copy = Path(shutil.copytree(root, tmp_path_factory.mktemp("ui") / "breast_cancer",
                                ignore=shutil.ignore_patterns("__pycache__", "deployments", "monitor")))
    cfg = load_project(copy)
    second = run_project(cfg, params={"logreg": {"C": "0.05"}, "knn": {"n_neighbors": "40"}})
    version = second.registration.version
    assert version == "2"
    report = GateReport("FAIL", version, "1", HoldoutInfo(143, "ab" * 32, "the run's test set"), [MetricCheck(
        "accuracy", "maximize", 0.965, 0.986, -0.021, -0.0213, None, 0.0, 0.25, False,
        "accuracy 0.9650 is not higher than the champion's 0.9860",
        SignificanceTest("mcnemar", 1.0, 0.25, 4, 1, 3))], "mcnemar", 0.05, "hold")
    set_version_tags(cfg, "breast_cancer", version, {AGENT_VERDICT: "FAIL", AGENT_GATE: json.dumps(report.to_dict())})
    return copy, first, second


def chart_data(at) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each Altair chart of the page: its Vega-Lite spec and the rows of its data."""
    found = []
    for chart in at.get("vega_lite_chart"):
        rows = [row for dataset in chart.proto.datasets
                for row in pa.ipc.open_stream(dataset.data.data).read_all().to_pylist()]
        found.append((json.loads(chart.proto.spec), rows))
    return found


def test_models_page_shows_versions_with_aliases_and_their_metrics_as_a_chart_and_a_table(two_runs):
    root, _, second = two_runs
    at = app_test(root, "models").run()
    assert not at.exception, at.exception
    newer = second.registration.version
    versions = at.dataframe[0].value
    aliases = dict(zip(versions["version"], versions["aliases"]))
    assert aliases["v1"] == "champion" and "challenger" in aliases[f"v{newer}"]
    assert dict(zip(versions["version"], versions["agent's gate"]))[f"v{newer}"] == "FAIL"
    [(spec, rows)] = chart_data(at)
    assert spec["mark"]["type"] == "point" and spec["encoding"]["xOffset"]["field"] == "version"
    charted = {(row["version"], row["metric"]) for row in rows}
    assert {("v1", "accuracy"), (f"v{newer}", "accuracy")} <= charted
    scale = spec["encoding"]["y"]["scale"]  # the axis spans the values, so close versions stand apart
    values = [row["value"] for row in rows]
    assert scale["zero"] is False and min(values) > scale["domain"][0] > min(values) - (max(values) - min(values))
    assert max(values) < scale["domain"][1] < max(values) + (max(values) - min(values))
    table = at.dataframe[1].value
    assert list(table.columns) == ["metric", "scored by", f"v{newer}", "v1"]
    # each metric once: the pipeline's accuracy, roc_auc, ... are mloop's test-set scores of the same values
    assert table["metric"].is_unique and "test_accuracy" not in set(table["metric"])
    scored = dict(zip(table["metric"], table["scored by"]))
    assert scored["accuracy"] == "mloop, on the test set (the pipeline logged the same)"
    assert scored["selected_logreg"] == "the pipeline"
    from mloop.registry.fetch import fetch_bundle_info

    scores = fetch_bundle_info(load_project(root), "models:/breast_cancer/1").test_scores
    assert table.set_index("metric").loc["accuracy", "v1"] == pytest.approx(scores["accuracy"])


def test_models_page_shows_each_versions_promotion_decision_in_full(two_runs):
    from mloop.registry.queries import registered_models

    root, _, second = two_runs
    at = app_test(root, "models").run()
    [model] = registered_models(load_project(root))
    decisions = {v.version: v.promotion for v in model.versions}
    assert "not promoted (needs to be higher)" in decisions[second.registration.version]  # cut off in its cell
    [expander] = [e for e in at.expander if e.label == "The promotion decisions in full"]
    listed = "\n".join(str(m.value) for m in expander.markdown)
    for version, decision in decisions.items():
        assert f"**v{version}**" in listed and decision in listed


def test_models_page_shows_the_gate_decision_and_lineage_linked_into_the_mlflow_ui(two_runs):
    root, first, second = two_runs
    cfg = load_project(root)
    at = app_test(root, "models").run()
    shown = texts(at)  # the champion first
    assert "passed: v1 is the champion (there was no champion before)" in shown
    gate = at.dataframe[2].value
    assert list(gate.columns) == ["metric", "scored by", "v1 (champion)"]  # the champion's column says so
    assert gate["metric"].tolist()[0] == "accuracy ★" and "test_f1" not in set(gate["metric"])
    assert gate["metric"].is_unique
    assert "no champion yet; accuracy = " in shown
    run_id = first.tracking_id
    from mloop.tracking.queries import project_experiment

    url = cfg.settings.ui.mlflow_url
    assert f"]({url}/#/experiments/{project_experiment(cfg)}/runs/{run_id})" in shown
    assert f"]({url}/#/models/breast_cancer/versions/1)" in shown
    assert "data/breast_cancer.csv" in shown and "did not gate this version" in shown

    newer = second.registration.version
    at.selectbox(key="models_version_breast_cancer").select(newer).run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert f"breast_cancer v{newer} vs champion v1" in shown and "kept the champion v1" in shown
    gate = at.dataframe[2].value
    assert list(gate.columns)[2:4] == [f"v{newer} (candidate)", "v1 (champion)"]
    assert "The agent's gate: FAIL" in shown and "on 143 holdout rows" in shown
    checks = at.dataframe[-1].value
    assert checks["verdict"].tolist() == ["FAIL"] and checks["p-value"].tolist() == [0.25]
    assert f"/runs/{second.tracking_id})" in shown


def test_runs_page_lists_the_runs_and_draws_one_bar_per_step_with_the_cached_ones_marked(two_runs):
    root, first, second = two_runs
    at = app_test(root, "runs").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table["run"].tolist() == [second.tracking_id[:8], first.tracking_id[:8]]
    assert table["param knn.n_neighbors"].tolist() == ["40", "5"] and table["status"].tolist() == ["FINISHED"] * 2
    [(spec, rows)] = chart_data(at)  # the newest run's
    bars, marks = spec["layer"]
    assert bars["mark"]["type"] == "bar" and bars["encoding"]["x2"]["field"] == "end (s)"
    steps = second.result.steps
    assert sorted(row["step"] for row in rows) == sorted(steps)
    cached = {name for name, record in steps.items() if record.state == "cached"}
    assert cached and {row["step"] for row in rows if row["how"] == "from cache"} == cached
    assert {row["step"] for row in rows if row["how"] == "ran"} == set(steps) - cached
    assert marks["mark"]["shape"] == "diamond" and "cached" in json.dumps(marks["transform"])
    for row in rows:
        assert row["end (s)"] >= row["start (s)"] >= 0
    ran = [row for row in rows if row["how"] == "ran"]
    assert any(row["end (s)"] > row["start (s)"] for row in ran)

    at.selectbox(key="runs_timeline").select(at.selectbox(key="runs_timeline").options[1]).run()
    [(_, rows)] = chart_data(at)  # the first run: everything ran
    assert {row["how"] for row in rows} == {"ran"}


def test_runs_page_compares_two_runs_and_marks_the_changed_parameter(two_runs):
    root, first, second = two_runs
    at = app_test(root, "runs").run()
    compared = at.dataframe[-1].value
    assert list(compared.columns)[3:] == [f"{first.tracking_id[:8]} (v1)",
                                          f"{second.tracking_id[:8]} (v{second.registration.version})"]
    params = compared[compared["kind"] == "param"]
    assert params["name"].tolist() == ["knn.n_neighbors", "logreg.C"]
    assert params.iloc[0, 3:].tolist() == ["5", "40"] and params.iloc[1, 3:].tolist() == ["1.0", "0.05"]
    assert set(compared[""]) == {"≠"}  # only what differs
    at.checkbox(key="runs_compare_all").check().run()
    every = at.dataframe[-1].value
    assert len(every) > len(compared) and "" in set(every[""]) and "split.seed" in every["name"].tolist()


def test_runs_page_pages_the_list(tmp_path: Path, mlflow_db_template: Path):
    """Thirty tracked runs (written as the tracker writes a pipeline run): 25 on the first page, 5 on the second."""
    from mloop.tracking.client import experiment_id, mlflow_client

    root = copy_project(EXAMPLE, tmp_path / "p", mlflow_db_template)
    cfg = load_project(root)
    client = mlflow_client(cfg)
    experiment = experiment_id(client, cfg)
    for i in range(30):
        run = client.create_run(experiment, start_time=1_700_000_000_000 + i * 60_000, run_name=f"training-{i}",
                                tags={"mloop.kind": "pipeline", "mloop.pipeline": "training"})
        client.log_param(run.info.run_id, "knn.n_neighbors", str(i))
        client.set_terminated(run.info.run_id, "FINISHED", end_time=1_700_000_000_000 + i * 60_000 + 5_000)
    at = app_test(root, "runs").run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["param knn.n_neighbors"].tolist() == [str(i) for i in range(29, 4, -1)]
    assert "older ones on the next page" in texts(at)
    at.number_input(key="runs_page").increment().run()
    assert at.dataframe[0].value["param knn.n_neighbors"].tolist() == ["4", "3", "2", "1", "0"]
    assert "Runs 26–30" in texts(at)


@pytest.mark.parametrize("store", ["none", "empty"])
def test_an_empty_project_says_to_run_the_pipeline(tmp_path: Path, mlflow_db_template: Path, store: str):
    if store == "none":  # never run: the pages create no store to say so
        root = tmp_path / "p"
        root.mkdir()
        (root / "mloop.toml").write_text('[project]\nname = "p"\n')
    else:  # a store, no run in it
        root = copy_project(EXAMPLE, tmp_path / "p", mlflow_db_template)
    for page, said in (("runs", "No runs yet in this project: start one with `mloop run`."),
                       ("models", "No registered model yet: `mloop run`")):
        at = app_test(root, page).run()
        assert not at.exception, at.exception
        assert said in texts(at)
    assert (root / ".mloop" / "mlflow.db").exists() == (store == "empty")


def test_a_versions_bundle_info_alone_is_what_its_whole_bundle_holds(first_run):
    from mloop.registry.fetch import fetch_bundle, fetch_bundle_info

    cfg = load_project(first_run[0])
    assert fetch_bundle_info(cfg, "models:/breast_cancer/1") == fetch_bundle(cfg, "models:/breast_cancer/1").info
