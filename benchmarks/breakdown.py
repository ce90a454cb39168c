"""Phases of a fully cached `mloop run` of a project, timed in one process (argv[1]: project folder)."""

import subprocess
import sys
import time
from pathlib import Path

root = Path(sys.argv[1])
phases: list[tuple[str, float]] = []


def phase(name, fn):
    start = time.perf_counter()
    value = fn()
    phases.append((name, time.perf_counter() - start))
    return value


start = time.perf_counter()
subprocess.run([sys.executable, "-c", "pass"], check=True)
interpreter = time.perf_counter() - start

phase("import the CLI (typer, rich, mloop)", lambda: __import__("mloop.cli.main"))
from mloop.config import load_project  # noqa: E402
from mloop.project import load_pipeline  # noqa: E402

cfg = phase("read mloop.toml (pydantic)", lambda: load_project(root))
pipe = phase("import pipeline.py and build the graph", lambda: load_pipeline(cfg))
graph = phase("trace and check the graph", lambda: pipe.build(cfg.settings.params))

from mloop.pipeline.executors.local import LocalExecutor  # noqa: E402
from mloop.pipeline.runner import Runner  # noqa: E402

result = phase("cache look-ups of every step (no tracking)", lambda: Runner(
    graph, store_root=cfg.store, project_root=cfg.root, executor=LocalExecutor()).run())
assert all(r.cached for r in result.steps.values())
phase("import mlflow", lambda: __import__("mlflow"))
phase("import MLflow's SQL store (SQLAlchemy, Alembic)", lambda: __import__("mlflow.store.tracking.sqlalchemy_store"))
from mloop.tracking.client import experiment_id, mlflow_client  # noqa: E402
from mloop.tracking.mlflow_tracker import MlflowTracker  # noqa: E402

phase("open the store (engine, schema check, experiment)", lambda: experiment_id(mlflow_client(cfg), cfg))
tracker = MlflowTracker(cfg)
phase("start the run (tags, params, inputs, environment.json)", lambda: setattr(result, "tracking_id", tracker.start(result)))


def log_steps():
    for record in result.steps.values():
        tracker.log_step(result, record)
    tracker.finish(result)


phase(f"record {len(result.steps)} nested step runs and finish", log_steps)
from mloop.registry.register import register_candidate  # noqa: E402

phase("registry: find the already-registered version", lambda: register_candidate(cfg, result))
print(f"| phase | seconds |\n|---|---:|\n| start the Python interpreter | {interpreter:.3f} |")
for name, took in phases:
    print(f"| {name} | {took:.3f} |")
print(f"| **total** | **{interpreter + sum(t for _, t in phases):.3f}** |")
