"""The agent's watchers on real parts: a project under git and DVC whose input gets a new version, and a
real MLflow registry where `mloop run` registers a version and the agent registers its own."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from mloop.automation.triggers import AGENT_CYCLE_TAG, Coalescer, data_key, version_key
from mloop.automation.watchers import DataWatcher, RegistryWatcher
from mloop.config import load_project
from mloop.data.versions import md5_of
from tests.support.projects import write_project
from tests.support.versioned import mloop, versioned_project

pytestmark = pytest.mark.integration

PIPELINE = '''
from typing import Any

from mloop import ModelCandidate, log_metric, pipeline, step


@step(outputs=("train", "test"))
def split(rows: int = 200) -> tuple[Any, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, -1]]
    train, test = train_test_split(data, test_size=0.3, random_state=0, stratify=data["target"])
    return train.head(rows).reset_index(drop=True), test.reset_index(drop=True)


@step
def train(train: Any) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(train.drop(columns=["target"]), train["target"])


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


def test_data_watcher_sees_a_new_dvc_version_of_the_input_once_and_not_the_agents_own(
        tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "watched", mlflow_db_template)
    data = root / "data" / "data.csv"
    watcher = DataWatcher(load_project(root))  # the inputs come from the project's pipeline: data/data.csv
    assert watcher.poll(time.time()) == [] and watcher.problem == ""
    assert list(watcher.seen or {}) == ["data/data.csv"]

    with data.open("a") as fh:
        fh.write(data.read_text().splitlines()[1] + "\n")
    assert watcher.poll(time.time()) == []  # an edit is not a version until it is added
    added = mloop(root, "data", "add", "data/data.csv")
    assert added.returncode == 0, added.stderr
    [made] = watcher.poll(time.time())
    recorded = (root / "data" / "data.csv.dvc").read_text().split("md5: ")[1].split()[0]
    assert made.kind == "data" and made.detail["source"] == "dvc" and made.detail["md5"] == recorded == md5_of(data)
    assert made.key == data_key(recorded) and made.detail["path"] == "data/data.csv"
    assert watcher.poll(time.time()) == []  # seen once

    # a version the agent makes itself (its snapshot): marked own before it is added, it starts no cycle
    coalescer = Coalescer(debounce_s=0)
    with data.open("a") as fh:
        fh.write(data.read_text().splitlines()[2] + "\n")
    coalescer.own(data_key(md5_of(data)))
    assert mloop(root, "data", "add", "data/data.csv").returncode == 0
    restarted = DataWatcher(load_project(root), state=json.loads(json.dumps(watcher.to_dict())))
    [own] = restarted.poll(time.time())
    assert coalescer.offer(own, time.time()).outcome == "own" and coalescer.pending is None


def test_registry_watcher_sees_a_version_of_a_plain_run_but_not_the_agents_own(tmp_path: Path,
                                                                                 mlflow_db_template: Path):
    root = write_project(tmp_path / "reg", "reg", PIPELINE, toml='task = "binary"\n')
    (root / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    cfg = load_project(root)
    watcher = RegistryWatcher(cfg, "reg")
    assert watcher.poll(time.time()) == [] and watcher.last_version == 0 and watcher.problem == ""

    ran = mloop(root, "run")
    assert ran.returncode == 0, ran.stderr
    [made] = watcher.poll(time.time())
    assert made.kind == "registry" and made.key == version_key("reg", 1) == "registry:reg/1"
    assert made.detail["model"] == "reg" and made.detail["version"] == "1" and made.detail["run_id"]
    assert watcher.poll(time.time()) == []

    from mlflow import MlflowClient

    client = MlflowClient(cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    first = client.get_model_version("reg", "1")
    client.create_model_version("reg", source=first.source, run_id=first.run_id, tags={AGENT_CYCLE_TAG: "c-1"})
    untagged = client.create_model_version("reg", source=first.source, run_id=first.run_id)
    coalescer = Coalescer(debounce_s=0)
    coalescer.own(version_key("reg", untagged.version))  # the agent's, tagged too late: marked own instead
    seen = watcher.poll(time.time())
    assert [t.detail["version"] for t in seen] == ["3"]  # version 2 carries the agent's tag
    assert [coalescer.offer(t, time.time()).outcome for t in seen] == ["own"]

    restarted = RegistryWatcher(cfg, "reg", state=json.loads(json.dumps(watcher.to_dict())))
    assert restarted.poll(time.time()) == [] and restarted.last_version == 3


def test_a_registry_that_cannot_be_read_is_a_problem_not_a_crash(tmp_path: Path):
    root = write_project(tmp_path / "down", "down", PIPELINE, toml='[tracking]\nuri = "http://127.0.0.1:9"\n')
    watcher = RegistryWatcher(load_project(root), "down")
    assert watcher.poll(time.time()) == []
    assert watcher.problem.startswith("the model registry cannot be read:") and "127.0.0.1:9" in watcher.problem
    assert watcher.last_version is None  # nothing recorded: the first poll that reads the store records
