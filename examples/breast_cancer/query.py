"""Ask the running deployment of the reference model for predictions, then send true labels (`make demo`).

Two patients are printed; then 200 more rows are sent in requests of 20, and the true labels of those
are posted to /feedback by request id, so `mloop monitor status` has drift, outliers and live
accuracy to show once the server's next monitoring update (every 10 s) has run.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pandas as pd

from mloop.config import load_project
from mloop.deploy.local import list_deployments

HERE = Path(__file__).resolve().parent


def post(url: str, payload: object, request_id: str | None = None) -> dict:
    headers = {"content-type": "application/json", **({"x-request-id": request_id} if request_id else {})}
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def main() -> None:
    cfg = load_project(HERE)
    [status] = [s for s in list_deployments(cfg) if s.deployment.name == "breast_cancer"]
    url = status.deployment.url
    data = pd.read_csv(HERE / "data" / "breast_cancer.csv")
    rows = data.drop(columns=["target"]).iloc[[0, 19]]
    answer = post(f"{url}/predict", {"instances": rows.to_dict("records")})
    print(f"POST {url}/predict with 2 patients ->")
    for prediction in answer["predictions"]:
        label = "benign" if prediction["label"] == 1 else "malignant"
        print(f"  {label:9s} p(benign) = {prediction['probabilities']['1']:.3f}   (model v{answer['version']})")

    started = time.time()
    sample = data.sample(200, random_state=1)
    for start in range(0, len(sample), 20):
        part = sample.iloc[start:start + 20]
        request_id = f"demo-{started:.0f}-{start // 20}"  # new each run: the server takes an id once
        post(f"{url}/predict", {"instances": part.drop(columns=["target"]).to_dict("records")}, request_id)
        scores = post(f"{url}/feedback", {"id": request_id, "labels": part["target"].tolist()})
    print(f"sent 200 more rows and their true labels: live accuracy {scores['accuracy']:.3f} "
          f"over {scores['total_labelled']} labelled predictions")
    status_file = cfg.monitor_dir("breast_cancer") / "status.json"
    print("waiting for the server's next monitoring update (every 10 s) ...", flush=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        if status_file.exists() and json.loads(status_file.read_text())["updated"] > started:
            return
        time.sleep(0.5)


if __name__ == "__main__":
    main()
