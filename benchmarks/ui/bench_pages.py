"""How fast the web app's pages load at size, in a real browser, beside the MLflow UI on the same store.

    .venv/bin/python benchmarks/ui/bench_pages.py [--repeat 5]

The reference project with 200 runs (two real ones, 198 copies of the latest logged through MLflow's
client) and 10,000 prediction-log rows sent through a managed deployment; `mloop ui` and `mloop mlflow-ui`
on 127.0.0.1; Debian's Chromium, headless, under Playwright.

- The first page after ``mloop ui`` starts (its Predict page, by URL in a new tab): the app started afresh for
  each of ``--repeat`` loads, timed from the request to Streamlit's script having finished.
- Each page of the app opened from the sidebar (the way a user moves between pages), timed from the click
  to Streamlit's script having finished (the app's ``data-test-script-state`` back to ``notRunning``).
- A cold load of a whole page by URL: the app's Runs page (its table of runs) against the MLflow UI's
  experiment page (its table of runs), each until the first run's row is drawn.
Medians of ``--repeat``. Writes benchmarks/ui/results.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

PAGES = ["Predict", "Models", "Runs", "Deployments", "Monitoring", "Continuous training"]
RUNS, ROWS = 200, 10_000


def project(work: Path) -> Path:
    import pandas as pd
    from mlflow import MlflowClient

    from mloop.config import load_project
    from mloop.deploy import local
    from mloop.monitor.predlog import read_log
    from mloop.project import run_project
    from tests.support.projects import EXAMPLE, copy_project
    from tests.support.ui import clone_runs, send_predictions

    db = work / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    root = copy_project(EXAMPLE, work / "breast_cancer", db)
    (root / "data").mkdir(exist_ok=True)
    subprocess.run([sys.executable, str(EXAMPLE / "write_data.py"), str(root / "data" / "breast_cancer.csv")],
                   check=True, capture_output=True)
    text = (root / "mloop.toml").read_text()
    (root / "mloop.toml").write_text(text.replace("interval = 10 ", "interval = 1 ", 1))
    cfg = load_project(root)
    run_project(cfg)
    run_project(cfg, params={"logreg": {"C": "0.0005"}})
    clone_runs(root, RUNS - 2)
    deployed = local.deploy(cfg, f"models:/{cfg.model_name}/1")
    rows = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"]).head(500).to_dict("records")
    send_predictions(deployed.url, rows, ROWS)
    deadline = time.time() + 60
    while time.time() < deadline and len(read_log(cfg.monitor_dir(cfg.model_name) / "predictions")) < ROWS:
        time.sleep(0.5)
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from mloop.config import load_project
    from mloop.deploy import local
    from mloop.tracking.client import mlflow_client
    from tests.support.browser import chromium, open_page, running_app, wait_until_idle
    from tests.support.servers import MLOOP, free_port, wait_for_http

    work = Path(tempfile.mkdtemp(prefix="mloop-bench-ui-"))
    root = project(work)
    cfg = load_project(root)
    experiment = mlflow_client(cfg).get_experiment_by_name(cfg.experiment).experiment_id
    port = free_port()
    mlflow_ui = subprocess.Popen([MLOOP, "mlflow-ui", "--port", str(port)], cwd=root, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    clicks: dict[str, list[float]] = {title: [] for title in PAGES}
    first: list[float] = []
    cold: dict[str, list[float]] = {"mloop ui: Runs page": [], "MLflow UI: experiment page": []}
    try:
        mlflow_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{mlflow_url}/health", mlflow_ui)
        with chromium() as browser:
            for _ in range(args.repeat):
                with running_app(root) as url:
                    fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
                    started = time.perf_counter()
                    fresh.goto(url)
                    fresh.wait_for_function("() => document.querySelector('h1')", timeout=60_000)
                    wait_until_idle(fresh, timeout=60)
                    first.append(time.perf_counter() - started)
                    fresh.close()
        with running_app(root) as url, chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            wait_until_idle(page, timeout=60)
            for title in PAGES:  # warm-up: each page once (imports, caches)
                open_page(page, title)
            for _ in range(args.repeat):
                for title in PAGES:
                    clicks[title].append(open_page(page, title))
            for _ in range(args.repeat + 1):  # the first of each is a warm-up, dropped below
                fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
                started = time.perf_counter()
                fresh.goto(f"{url}/runs")
                fresh.get_by_test_id("stDataFrame").first.wait_for(timeout=60_000)
                wait_until_idle(fresh, timeout=60)
                cold["mloop ui: Runs page"].append(time.perf_counter() - started)
                fresh.close()
                fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
                started = time.perf_counter()
                fresh.goto(f"{mlflow_url}/#/experiments/{experiment}/runs")
                fresh.get_by_text("copy-0", exact=True).first.wait_for(timeout=60_000)
                cold["MLflow UI: experiment page"].append(time.perf_counter() - started)
                fresh.close()
    finally:
        os.killpg(mlflow_ui.pid, 15)
        mlflow_ui.wait(timeout=30)
        local.undeploy(cfg, cfg.model_name)
    for key in cold:
        cold[key] = cold[key][1:]
    lines = [f"# The web app's pages at size ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, {platform.machine()})", "",
             f"`.venv/bin/python benchmarks/ui/bench_pages.py --repeat {args.repeat}` — {RUNS} runs, {ROWS:,} "
             f"logged predictions, headless Chromium; medians of {args.repeat}. The issue's bound: under 2 s.", "",
             "## The first page after `mloop ui` starts (request to drawn, the app started afresh each time)", "",
             "| page | median s | min s | max s |", "|---|---:|---:|---:|",
             f"| Predict | {statistics.median(first):.2f} | {min(first):.2f} | {max(first):.2f} |", "",
             "## A page opened from the sidebar (click to drawn)", "", "| page | median s | min s | max s |",
             "|---|---:|---:|---:|"]
    for title, values in clicks.items():
        lines.append(f"| {title} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    lines += ["", "## A whole page loaded by URL, its table of runs drawn (same store, same browser)", "",
              "| page | median s | min s | max s |", "|---|---:|---:|---:|"]
    for key, values in cold.items():
        lines.append(f"| {key} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    out = REPO / "benchmarks" / "ui" / "results.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
