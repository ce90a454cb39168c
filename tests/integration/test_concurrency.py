"""Runs at once and runs cut short: one consistent store, a gate that holds under any interleaving,
no model registered twice, and a registration interrupted at any MLflow call completed by the next run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mloop.config import load_project
from mloop.project import run_project
from tests.support.projects import write_project
from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration

PIPELINE = '''
from typing import Any

from mloop import ModelCandidate, log_metric, pipeline, step


@step(outputs=("train", "test"))
def split(rows: int = 400) -> tuple[Any, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, 4, 5, -1]]
    train, test = train_test_split(data, test_size=0.3, random_state=0, stratify=data["target"])
    return train.head(rows).reset_index(drop=True), test.reset_index(drop=True)


@step
def train(train: Any, C: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C)).fit(train.drop(columns=["target"]), train["target"])


@step
def evaluate(model: Any, test: Any) -> dict:
    accuracy = float((model.predict(test.drop(columns=["target"])) == test["target"]).mean())
    log_metric("accuracy", accuracy)
    return {"accuracy": accuracy}


@pipeline
def training() -> ModelCandidate:
    train_set, test_set = split()
    model = train(train_set)
    return ModelCandidate(model=model, train=train_set, test=test_set, target="target", metrics=evaluate(model, test_set))
'''

# (rows, C): models of clearly different quality on the same test set
SETTINGS = [(20, 0.001), (40, 0.01), (120, 0.1), (398, 1.0)]


def project(root: Path) -> Path:
    return write_project(root, "race", PIPELINE, toml='task = "binary"\n')


def mloop_run(root: Path, rows: int, c: float) -> subprocess.Popen:
    return subprocess.Popen([MLOOP, "run", "-p", f"split.rows={rows}", "-p", f"train.C={c}"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def versions(root: Path) -> list:
    from mlflow import MlflowClient

    from mloop.tracking.client import mlflow_client

    client: MlflowClient = mlflow_client(load_project(root))
    found = [client.get_model_version("race", v.version) for v in client.search_model_versions("name = 'race'")]
    return sorted(found, key=lambda v: int(v.version))


def score_of(root: Path, version: str) -> float:
    from mloop.registry.fetch import fetch_bundle

    return fetch_bundle(load_project(root), f"models:/race/{version}").info.metrics["test_accuracy"]


def check_the_gate_held(root: Path) -> None:
    """The champion is the best version; every version got its decision; challenger is on one version."""
    found = versions(root)
    scores = {v.version: score_of(root, v.version) for v in found}
    champions = [v.version for v in found if "champion" in v.aliases]
    assert len(champions) == 1 and scores[champions[0]] == max(scores.values()), (champions, scores)
    assert all(v.tags.get("mloop.decided") == "true" for v in found), [v.tags for v in found]
    assert sum("challenger" in v.aliases for v in found) == 1
    digests = [(v.tags["mloop.model_digest"], v.tags["mloop.test_digest"]) for v in found]
    assert len(set(digests)) == len(digests), "a model was registered twice"


def test_four_runs_at_once_on_a_fresh_then_a_populated_store_keep_one_store_and_the_best_champion(tmp_path: Path):
    root = project(tmp_path / "fresh")  # no database yet: the first run creates and migrates it, the others wait
    procs = [mloop_run(root, rows, c) for rows, c in SETTINGS]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    listed = subprocess.run([MLOOP, "runs"], cwd=root, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and listed.stdout.count("FINISHED") == 4, listed.stdout + listed.stderr
    assert len(versions(root)) == 4
    check_the_gate_held(root)

    # again on the populated store, with a champion to beat: four new candidates at once
    procs = [mloop_run(root, rows, c) for rows, c in [(30, 0.001), (60, 0.01), (200, 0.1), (300, 1.0)]]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    assert len(versions(root)) == 8
    check_the_gate_held(root)


def test_identical_runs_at_once_register_the_model_once(tmp_path: Path, mlflow_db_template: Path):
    root = project(tmp_path / "same")
    (root / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    procs = [mloop_run(root, 120, 0.1) for _ in range(3)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert len(versions(root)) == 1
    said = [out for out, _ in outputs]
    assert sum("registered as challenger, champion" in out for out in said) == 1, said
    assert sum("unchanged, already registered" in out for out in said) == 2, said
    check_the_gate_held(root)


class Interrupted(BaseException):
    """What a kill looks like to the code that was running (nothing after the call happens)."""


CALLS = ("search_model_versions", "get_model_version", "get_model_version_by_alias", "create_logged_model",
         "log_model_artifacts", "finalize_logged_model", "create_registered_model", "create_model_version",
         "set_registered_model_alias", "set_model_version_tag", "set_tag")


def test_a_registration_cut_at_any_mlflow_call_is_completed_by_the_next_run(tmp_path: Path, mlflow_db_template: Path,
                                                                            monkeypatch):
    from mlflow import MlflowClient

    from mloop.registry import register

    base = project(tmp_path / "base")
    (base / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, base / ".mloop" / "mlflow.db")
    weak, strong = {"split": {"rows": 20}, "train": {"C": 0.001}}, {"split": {"rows": 398}, "train": {"C": 1.0}}
    assert run_project(load_project(base), params=weak).registration.version == "1"
    run_project(load_project(base), params=strong, register=False)  # its steps cached: the copies only register

    calls = {"n": 0, "cut_at": 0}
    originals = {name: getattr(MlflowClient, name) for name in CALLS}

    def counted(name):
        def call(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == calls["cut_at"]:
                raise Interrupted(f"cut at call {calls['n']}: {name}")
            return originals[name](self, *args, **kwargs)
        return call

    held, cut = 0, 0
    for cut_at in range(1, 60):
        root = Path(shutil.copytree(base, tmp_path / f"cut{cut_at}"))
        cfg = load_project(root)
        with monkeypatch.context() as patched:
            for name in CALLS:
                patched.setattr(MlflowClient, name, counted(name))
            calls.update(n=0, cut_at=cut_at)
            try:
                register.register_candidate(cfg, run_project(cfg, params=strong, register=False).result)
            except Interrupted:
                cut += 1
            else:
                break  # past the last call: nothing left to cut
        again = run_project(load_project(root), params=strong)
        assert again.registration is not None
        check_the_gate_held(root)
        assert {str(v.version) for v in versions(root) if "champion" in v.aliases} == {"2"}  # the better model won
        held += 1
    print(f"registration cut at {cut} points, {held} completed by the next run")
    assert cut >= 10 and held == cut, (cut, held)  # every cut tried, and each left a state the next run completed
