"""Ask the running deployment of the reference model for two predictions (used by `make demo`)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pandas as pd

from mloop.config import load_project
from mloop.deploy.local import list_deployments

HERE = Path(__file__).resolve().parent


def main() -> None:
    [status] = [s for s in list_deployments(load_project(HERE)) if s.deployment.name == "breast_cancer"]
    rows = pd.read_csv(HERE / "data" / "breast_cancer.csv").drop(columns=["target"]).iloc[[0, 19]]
    body = json.dumps({"instances": rows.to_dict("records")}).encode()
    request = urllib.request.Request(f"{status.deployment.url}/predict", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    print(f"POST {status.deployment.url}/predict with 2 patients ->")
    for prediction in answer["predictions"]:
        label = "benign" if prediction["label"] == 1 else "malignant"
        print(f"  {label:9s} p(benign) = {prediction['probabilities']['1']:.3f}   (model v{answer['version']})")


if __name__ == "__main__":
    main()
