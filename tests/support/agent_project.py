"""A small project for the continuous-training agent: data whose rule can shift, a model whose quality a
parameter sets, traffic and feedback sent to its deployment while the agent works."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from tests.support.projects import write_project

PIPELINE = '''
from pathlib import Path
from typing import Any

from mloop import ModelCandidate, pipeline, step

TARGET = "target"


@step
def load_data(folder: Path = Path("data")) -> Any:
    import pandas as pd

    frame = pd.read_csv(folder / "data.csv")
    production = folder / "production.parquet"
    if production.exists():  # labelled production rows, snapshot by the agent
        served = pd.read_parquet(production)[list(frame.columns)]
        frame = pd.concat([frame, served.astype(frame.dtypes.to_dict())], ignore_index=True)
    return frame


@step(outputs=("train", "test"))
def split(data: Any) -> tuple[Any, Any]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(data, test_size=0.4, random_state=0, stratify=data[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)


@step
def train(train: Any, quality: str = "good") -> Any:
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier

    model = (RandomForestClassifier(n_estimators=40, min_samples_leaf=3, random_state=0, n_jobs=1)
             if quality == "good" else DummyClassifier(strategy="most_frequent"))
    return model.fit(train.drop(columns=[TARGET]), train[TARGET])


@pipeline
def training() -> ModelCandidate:
    train_set, test_set = split(load_data())
    return ModelCandidate(model=train(train_set), train=train_set, test=test_set, target=TARGET)
'''

FEATURES = ["x1", "x2", "x3"]


def data(rows: int, *, shifted: bool, seed: int) -> pd.DataFrame:
    """Three features; the label is x1 + x2 > 0, or, once the world shifted, x1 - x2 > 0 (the old model is
    then right about half the time) and x3 moved (a drift the monitor sees in the requests)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=FEATURES)
    if shifted:
        frame["x3"] += 3.0
    rule = frame.x1 - frame.x2 if shifted else frame.x1 + frame.x2
    frame["target"] = (rule > 0).astype(int)
    return frame


def agent_project(root: Path, db_template: Path, automation: str) -> Path:
    import shutil

    write_project(root, "shifty", PIPELINE, toml=f'[registry]\nmodel_name = "shifty"\n\n{automation}\n')
    (root / "data").mkdir(exist_ok=True)
    data(1000, shifted=False, seed=1).to_csv(root / "data" / "data.csv", index=False)
    (root / ".mloop").mkdir(exist_ok=True)
    shutil.copyfile(db_template, root / ".mloop" / "mlflow.db")
    return root


class Traffic:
    """``clients`` threads on keep-alive connections POSTing one row each until stopped; every outcome and
    the version that answered are counted; answers are kept for feedback."""

    def __init__(self, url: str, rows: pd.DataFrame, clients: int = 4, pause: float = 0.0) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.bodies = [json.dumps({"instances": [row]}).encode() for row in rows[FEATURES].to_dict("records")]
        self.truth = rows["target"].tolist()
        self.pause = pause
        self.stop = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.answered: list[tuple[str, str, int, int]] = []  # (request id, version, predicted, true label)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def _client(self, n: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        deadline = time.time() + 600
        i = n
        while not self.stop.is_set() and time.time() < deadline:
            index = i % len(self.bodies)
            i += len(self.threads)
            try:
                conn.request("POST", "/predict", self.bodies[index], {"content-type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                outcome = str(response.status)
                answer = json.loads(payload) if response.status == 200 else {}
                version = str(answer.get("version", "-"))
                request_id = response.getheader("x-request-id") or ""
            except (OSError, http.client.HTTPException) as err:
                outcome, version, answer, request_id = f"error:{type(err).__name__}", "-", {}, ""
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            with self.lock:
                self.outcomes[outcome] += 1
                self.versions[version] += 1
                if answer:
                    predicted = (answer.get("predictions") or [{}])[0].get("label")
                    self.answered.append((request_id, version, predicted, self.truth[index]))
            if self.pause:
                time.sleep(self.pause)
        conn.close()

    @property
    def failed(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "200")

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
