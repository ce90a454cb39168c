"""The reference project run for real: a real MLflow store, real worker processes, a real registry."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from mloop.bundle.format import read_bundle
from mloop.config import load_project
from mloop.project import run_project
from mloop.registry.fetch import download_model, load_sklearn_model
from tests.support.servers import free_port, wait_for_http

pytestmark = pytest.mark.integration

STEPS = ["load_data", "validate", "split", "logreg", "knn", "outliers", "evaluate", "select"]


@pytest.fixture
def after_first_run(first_run, tmp_path: Path) -> Path:
    """A private copy of the project after its first run: store, cache and registry included."""
    root, _ = first_run
    return Path(shutil.copytree(root, tmp_path / "breast_cancer", ignore=shutil.ignore_patterns("__pycache__")))


def client_for(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=load_project(root).tracking_uri)


def aliases(client: MlflowClient, name: str = "breast_cancer") -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def states(outcome) -> dict[str, str]:
    return {name: record.state for name, record in outcome.result.steps.items()}


def test_all_steps_ran_and_the_three_trainers_overlapped(first_run):
    _, outcome = first_run
    assert outcome.result.ok and states(outcome) == dict.fromkeys(STEPS, "done")
    trainers = [outcome.result.steps[name] for name in ("logreg", "knn", "outliers")]
    assert max(t.started for t in trainers) < min(t.ended for t in trainers), (
        "the three trainers were not all running at one moment: "
        + ", ".join(f"{t.name} {t.started:.2f}-{t.ended:.2f}" for t in trainers))


def test_one_parent_run_with_a_nested_run_per_step(first_run):
    root, outcome = first_run
    client = client_for(root)
    parent = client.get_run(outcome.tracking_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mloop.kind"] == "pipeline"
    assert parent.data.tags["mloop.env.python"].startswith("3.")
    assert "mloop.env.scikit-learn" in parent.data.tags
    assert parent.data.params["knn.n_neighbors"] == "5"
    assert parent.data.params["split.test_size"] == "0.25"  # from mloop.toml
    assert parent.data.metrics["steps_done"] == len(STEPS)
    assert 0.9 < parent.data.metrics["evaluate.logreg.accuracy"] <= 1.0
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{outcome.tracking_id}'")
    by_step = {c.data.tags["mloop.step"]: c for c in children}
    assert sorted(by_step) == sorted(STEPS)
    knn = by_step["knn"]
    assert knn.data.params["n_neighbors"] == "5"
    assert knn.data.tags["mloop.cache_hit"] == "false"
    assert knn.data.metrics["duration_s"] > 0
    evaluate = by_step["evaluate"]
    assert {m for m in evaluate.data.metrics if m.endswith("roc_auc")} == {"logreg.roc_auc", "knn.roc_auc"}
    artifacts = {a.path for a in client.list_artifacts(evaluate.info.run_id)}
    assert {f"{model}_{plot}.png" for model in ("logreg", "knn") for plot in ("confusion_matrix", "roc_curve")} <= artifacts
    png = client.download_artifacts(evaluate.info.run_id, "knn_roc_curve.png")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "step.log" in {a.path for a in client.list_artifacts(by_step["select"].info.run_id)}


def test_input_dataset_digest_is_the_files_sha256(first_run):
    root, outcome = first_run
    run = client_for(root).get_run(outcome.tracking_id)
    sha = hashlib.sha256((root / "data" / "breast_cancer.csv").read_bytes()).hexdigest()
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.digest == sha[:32]
    assert json.loads(dataset.dataset.source)["sha256"] == sha
    assert run.data.tags["mloop.data.sha256"] == sha


def test_first_version_is_registered_as_champion_with_its_bundle(first_run, tmp_path):
    root, outcome = first_run
    reg = outcome.registration
    assert reg.version == "1" and sorted(reg.aliases) == ["challenger", "champion"]
    client = client_for(root)
    assert aliases(client) == {"champion": "1", "challenger": "1"}
    cfg = load_project(root)
    model_dir = download_model(cfg, "models:/breast_cancer@champion", tmp_path / "m")
    bundle = read_bundle(model_dir)
    info, profile, detector = bundle.info, bundle.profile, bundle.outlier_detector
    assert info.target == "target" and len(info.features) == 30 and info.classes == [0, 1]
    assert info.lineage.run_id == outcome.tracking_id
    assert info.lineage.data_sha256 == [hashlib.sha256((root / "data" / "breast_cancer.csv").read_bytes()).hexdigest()]
    assert info.metrics["accuracy"] > 0.9 and "test_accuracy" in info.metrics
    assert set(profile.features_) == set(info.features) | {"target"}
    assert sum(profile.features_["mean_radius"].counts) == profile.n_rows_
    data = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"])
    assert detector.score_samples(data.head(3)).shape == (3,)
    # The MLflow model itself: signature and input example, loadable as pyfunc.
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    assert len(pyfunc.metadata.get_input_schema().inputs) == 30
    assert set(pyfunc.predict(data.head(5))) <= {0, 1}
    assert (model_dir / "input_example.json").exists()
    assert load_sklearn_model(model_dir).predict_proba(data.head(2)).shape == (2, 2)


def test_rerun_with_nothing_changed_is_fully_cached_and_reuses_the_version(after_first_run):
    outcome = run_project(load_project(after_first_run))
    assert set(states(outcome).values()) == {"cached"}
    assert outcome.registration.reused and outcome.registration.version == "1"
    client = client_for(after_first_run)
    run = client.get_run(outcome.tracking_id)
    assert run.data.metrics["steps_cached"] == len(STEPS)
    assert run.data.metrics["evaluate.knn.accuracy"] > 0.9, "a cached step's metrics are recorded again"
    assert len(client.search_model_versions("name = 'breast_cancer'")) == 1


def test_changed_parameter_reruns_only_the_affected_steps(after_first_run):
    outcome = run_project(load_project(after_first_run), params={"knn": {"n_neighbors": "7"}})
    assert states(outcome) == {"load_data": "cached", "validate": "cached", "split": "cached", "logreg": "cached",
                               "knn": "done", "outliers": "cached", "evaluate": "done", "select": "done"}
    knn_run = client_for(after_first_run).search_runs(
        [client_for(after_first_run).get_run(outcome.tracking_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{outcome.tracking_id}' and tags.`mloop.step` = 'knn'")[0]
    assert knn_run.data.params["n_neighbors"] == "7"


def test_worse_model_is_registered_but_the_gate_keeps_the_champion(after_first_run):
    outcome = run_project(load_project(after_first_run),
                          params={"logreg": {"C": "0.0001"}, "knn": {"n_neighbors": "60"}})
    reg = outcome.registration
    assert reg.version == "2" and reg.aliases == ["challenger"]
    assert not reg.decision.promote and "not promoted" in reg.decision.reason
    assert reg.decision.champion_version == "1"
    client = client_for(after_first_run)
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    assert "not promoted" in client.get_model_version("breast_cancer", "2").tags["mloop.promotion"]


def test_minimum_improvement_rule_comes_from_the_config(after_first_run, monkeypatch):
    monkeypatch.setenv("MLOOP_PROMOTION_METRIC", "roc_auc")
    monkeypatch.setenv("MLOOP_PROMOTION_MIN_IMPROVEMENT", "0.5")
    outcome = run_project(load_project(after_first_run), params={"logreg": {"C": "0.5"}})
    assert "by at least 0.5" in outcome.registration.decision.reason
    assert "roc_auc" in outcome.registration.decision.reason


def test_edited_data_file_is_never_served_from_the_cache(after_first_run):
    csv = after_first_run / "data" / "breast_cancer.csv"
    frame = pd.read_csv(csv)
    frame.iloc[:-20].to_csv(csv, index=False)
    outcome = run_project(load_project(after_first_run))
    assert states(outcome)["load_data"] == "done"
    assert states(outcome)["split"] == "done"


def test_a_tracking_server_is_used_when_the_uri_says_so(after_first_run, mlflow_db_template, tmp_path, monkeypatch):
    server_db = tmp_path / "server.db"
    shutil.copyfile(mlflow_db_template, server_db)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{server_db}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_for_http(f"{uri}/health", proc, timeout=60)
        monkeypatch.setenv("MLOOP_TRACKING_URI", uri)
        before = (after_first_run / ".mloop" / "mlflow.db").read_bytes()
        outcome = run_project(load_project(after_first_run))
        remote = MlflowClient(tracking_uri=uri)
        assert remote.get_run(outcome.tracking_id).info.status == "FINISHED"
        assert aliases(remote)["champion"] == "1"
        assert (after_first_run / ".mloop" / "mlflow.db").read_bytes() == before, "the local store was written"
        evaluate = remote.search_runs([remote.get_run(outcome.tracking_id).info.experiment_id],
                                      filter_string="tags.`mloop.step` = 'evaluate'")[0]
        assert "knn_roc_curve.png" in {a.path for a in remote.list_artifacts(evaluate.info.run_id)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_notebook_api_runs_the_same_pipeline(after_first_run, monkeypatch):
    monkeypatch.syspath_prepend(str(after_first_run))  # as a notebook in the project folder would have it
    try:
        import pipeline as user_pipeline

        outcome = user_pipeline.training.run(project=after_first_run)
    finally:
        sys.modules.pop("pipeline", None)
    assert set(states(outcome).values()) == {"cached"}
    model = outcome.result.value(outcome.result.candidate.model)
    assert hasattr(model, "predict_proba")
    with open(outcome.result.store.path(outcome.result.steps["outliers"].outputs["output"]), "rb") as fh:
        assert hasattr(pickle.load(fh), "score_samples")


def test_git_commit_and_dirty_flag_are_recorded(after_first_run):
    def git(*args):
        return subprocess.run(["git", "-C", str(after_first_run), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "add", "mloop.toml", "pipeline.py", "write_data.py")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "reference project")
    head = git("rev-parse", "HEAD")
    clean = run_project(load_project(after_first_run))
    tags = client_for(after_first_run).get_run(clean.tracking_id).data.tags
    assert tags["mlflow.source.git.commit"] == head and tags["mloop.git.dirty"] == "false"

    with (after_first_run / "pipeline.py").open("a") as fh:
        fh.write("\n# an uncommitted edit\n")
    dirty = run_project(load_project(after_first_run))
    tags = client_for(after_first_run).get_run(dirty.tracking_id).data.tags
    assert tags["mloop.git.commit"] == head and tags["mloop.git.dirty"] == "true"
    assert set(states(dirty).values()) == {"cached"}, "a comment outside the steps changes no step's code"
