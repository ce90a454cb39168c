"""A model of string categories and missing values, served by mloop and by ``mlflow models serve``,
side by side in one run with the same load generator (wrk) on the same machine.

The model: a churn table (two string categories, one with missing values; an integer; a float with
missing values; a boolean) through a ColumnTransformer (imputer + one-hot, imputer + scaler) and a
logistic regression with string class labels — the shape a typical tabular project has. Both servers
get the same rows: mloop as V2 per-feature tensors (BYTES for the strings, null for missing), MLflow
as ``dataframe_split``. Every response must be 2xx.

    python benchmarks/serving/bench_categorical.py [--seconds 5] [--repeat 3]   (see benchmarks/README.md)

Writes benchmarks/serving/results-categorical.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from bench_serving import VENV, WORK, free_port, stop, wait_ready, write_results, wrk

HERE = Path(__file__).resolve().parent
PROJECT = WORK / "churn"
POINTS = [("1 row", 1, 1), ("1 row", 64, 1), ("100 rows", 16, 100)]

PIPELINE = '''
from typing import Any

from mloop import ModelCandidate, log_metric, pipeline, step


@step
def load_data(n: int = 5000, seed: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    member = rng.random(n) < 0.4
    spend = rng.gamma(2.0, 50.0, n)
    age = rng.integers(18, 80, n)
    score = spend / 50 + (plan == "pro") * 2 + member - (age > 60) + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"plan": plan, "region": rng.choice(["north", "south", "east", "west"], n), "age": age,
                          "spend": spend, "member": member, "target": np.where(score > np.median(score), "churn", "stay")})
    frame.loc[rng.random(n) < 0.1, "region"] = None
    frame.loc[rng.random(n) < 0.1, "spend"] = np.nan
    return frame


@step(outputs=("train", "test"))
def split(data: Any) -> tuple[Any, Any]:
    from sklearn.model_selection import train_test_split

    return train_test_split(data, test_size=0.25, random_state=0, stratify=data["target"])


@step
def train(train: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    encode = ColumnTransformer([
        ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                                     OneHotEncoder(handle_unknown="ignore")), ["plan", "region"]),
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "spend", "member"])])
    return make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(train.drop(columns=["target"]), train["target"])


@step
def evaluate(model: Any, test: Any) -> dict:
    accuracy = float((model.predict(test.drop(columns=["target"])) == test["target"]).mean())
    log_metric("accuracy", accuracy)
    return {"accuracy": accuracy}


@pipeline
def training() -> ModelCandidate:
    train_set, test_set = split(load_data())
    model = train(train_set)
    return ModelCandidate(model=model, train=train_set, test=test_set, target="target", metrics=evaluate(model, test_set))
'''


def prepare() -> tuple[Path, list[dict[str, object]]]:
    """The churn project trained and registered; its champion as an MLflow model folder; 100 request rows."""
    if not (PROJECT / ".mloop" / "mlflow.db").exists():
        shutil.rmtree(PROJECT, ignore_errors=True)
        PROJECT.mkdir(parents=True)
        (PROJECT / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
        (PROJECT / "mloop.toml").write_text('[project]\nname = "churn"\ntask = "binary"\n')
        subprocess.run([str(VENV / "mloop"), "run"], cwd=PROJECT, check=True, capture_output=True)
    model_dir = WORK / "churn-model"
    if not model_dir.exists():
        code = ("import shutil; from pathlib import Path; from mloop.config import load_project; "
                "from mloop.registry.fetch import download_model; "
                f"p = download_model(load_project(Path('{PROJECT}')), 'models:/churn@champion'); "
                f"shutil.copytree(p, '{model_dir}')")
        subprocess.run([str(VENV / "python"), "-c", code], check=True)
    code = ("import json, sys; sys.path.insert(0, '.'); from pipeline import load_data; "
            "frame = load_data(n=100, seed=1).drop(columns=['target']); "
            "print(frame.to_json(orient='records'))")
    rows = json.loads(subprocess.run([str(VENV / "python"), "-c", code], cwd=PROJECT, check=True,
                                     capture_output=True, text=True).stdout)
    return model_dir, rows


def bodies(rows: list[dict[str, object]], n: int) -> dict[str, bytes]:
    part = rows[:n]
    columns = list(part[0])
    kinds = {"plan": "BYTES", "region": "BYTES", "age": "INT64", "spend": "FP64", "member": "BOOL"}
    v2 = {"inputs": [{"name": c, "shape": [n], "datatype": kinds[c], "data": [r[c] for r in part]} for c in columns]}
    mlflow = {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in part]}}
    return {"v2": json.dumps(v2).encode(), "mlflow": json.dumps(mlflow).encode()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results-categorical.md"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    WORK.mkdir(parents=True, exist_ok=True)
    model_dir, rows = prepare()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": f"{VENV}:{os.environ['PATH']}"}
    servers = [
        ("mloop serve", [str(VENV / "mloop"), "serve", "churn", "--no-access-log", "--port"], "/v2/health/ready",
         "/v2/models/churn/infer", "v2"),
        ("mlflow models serve", [str(VENV / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager",
                                 "local", "-h", "127.0.0.1", "-p"], "/ping", "/invocations", "mlflow"),
    ]
    results = []
    for label, command, ready, infer, kind in servers:
        port = free_port()
        proc = subprocess.Popen(command + [str(port)], cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}{ready}", proc)
            for point, connections, n in POINTS:
                url = f"http://127.0.0.1:{port}{infer}"
                body = bodies(rows, n)[kind]
                wrk(url, body, connections, 1)  # warm-up
                samples = [wrk(url, body, connections, args.seconds) for _ in range(args.repeat)]
                best = sorted(samples, key=lambda s: s["rps"])[len(samples) // 2]
                print(f"{label:22s} {point:8s} c={connections:<3d} {best['rps']:9.0f} req/s  p50 {best['p50']:8.2f} ms"
                      f"  p99 {best['p99']:8.2f} ms  non-2xx {best['errors']} {best['socket_errors']}", flush=True)
                results.append({"server": label, "point": point, "c": connections, **best})
        finally:
            stop(proc)
    by = {(r["server"], r["point"], r["c"]): r for r in results}
    table = []
    for r in results:
        peer = by.get(("mlflow models serve", r["point"], r["c"]))
        ratio = f"{r['rps'] / peer['rps']:.1f}x" if peer and peer["rps"] else "-"
        table.append([str(r["server"]), str(r["point"]), str(r["c"]), f"{r['rps']:.0f}", f"{r['p50']:.2f}",
                      f"{r['p99']:.2f}", str(r["errors"]), ratio])
    write_results(args.out, f"Categorical model (ColumnTransformer + LogisticRegression, string labels); wrk -t1, "
                  f"{args.seconds} s per run, median of {args.repeat} runs after a 1 s warm-up; {os.cpu_count()} cores "
                  f"shared by server and load generator; {time.strftime('%Y-%m-%d')}.",
                  ["server", "request", "connections", "req/s", "p50 ms", "p99 ms", "non-2xx", "req/s vs MLflow"], table)


if __name__ == "__main__":
    sys.exit(main())
