"""``mloop init``: a new project that ``mloop run`` runs straight away, for a binary, multiclass or
regression task: its pipeline, sample data, promotion metric and alert rules fit the task."""

from __future__ import annotations

import random
from pathlib import Path

from mloop._fs import atomic_write_text
from mloop.config import TASKS, metrics_for
from mloop.errors import ConfigError

METRIC = {"binary": "accuracy", "multiclass": "f1_macro", "regression": "rmse"}

_CLASSIFICATION_ALERTS = """# Default alert rules: drifted-feature share > 0.3 for 5m; live accuracy more than 10% below the
# served version's own test accuracy; p99 latency > 200 ms for 5m; server-error ratio > 1% for 5m.
# Replace them with your own:
# [[monitor.alerts]]
# name = "LowRecall"
# metric = "recall"                   # or drifted_features_share, outlier_ratio, accuracy, precision, f1, p99_latency_ms, error_ratio
# worse_than_test = 0.05              # or above = ... / below = ... (a number)
# for = "5m"
"""

_REGRESSION_ALERTS = """# Alert rules (accuracy means nothing for a regressor: the live scores are mae, rmse and r2).
[[monitor.alerts]]
name = "DataDrift"
metric = "drifted_features_share"
above = 0.3
for = "5m"
summary = "more than 30% of the features drifted from the training data"

[[monitor.alerts]]
name = "HighLatency"
metric = "p99_latency_ms"
above = 200
for = "5m"

[[monitor.alerts]]
name = "HighErrorRatio"
metric = "error_ratio"
above = 0.01
for = "5m"
severity = "critical"

[[monitor.alerts]]
name = "HighError"
metric = "rmse"                       # or mae, r2
worse_than_test = 0.25                # live RMSE above 125% of the served version's test RMSE (or above = a number)
severity = "critical"
"""


def sample_data(task: str = "binary", rows: int = 300, seed: int = 0) -> str:
    """A small CSV with an answer the features explain, so a new project has something real to train on."""
    rng = random.Random(seed)
    lines = ["x1,x2,x3,x4,target"]
    for _ in range(rows):
        x = [rng.gauss(0, 1) for _ in range(4)]
        signal = 1.5 * x[0] - x[1] + 0.5 * x[2]
        if task == "regression":
            target = f"{signal + rng.gauss(0, 0.3):.5f}"
        elif task == "multiclass":
            noisy = signal + rng.gauss(0, 0.5)
            target = str(0 if noisy < -0.7 else (1 if noisy < 0.7 else 2))
        else:
            target = str(int(signal + rng.gauss(0, 0.5) > 0))
        lines.append(",".join(f"{v:.5f}" for v in x) + f",{target}")
    return "\n".join(lines) + "\n"


def create_project(name: str, parent: Path, *, task: str = "binary") -> Path:
    """A new project folder ``parent/name`` that ``mloop run`` runs straight away; returns its root."""
    import re
    from importlib import resources
    from string import Template

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise ConfigError(f"project name {name!r} must start with a letter and use only letters, digits, _ and -",
                          hint="for example: mloop init churn_model")
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not one mloop knows", hint="use --task " + ", ".join(TASKS))
    root = parent / name
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not empty", hint="pick another name or remove the folder")
    templates = resources.files("mloop") / "templates" / "project"
    values = {"name": name, "task": task, "metric": METRIC[task],
              "metric_choices": "or " + ", ".join(m for m in metrics_for(task) if m != METRIC[task]),
              "alerts": _REGRESSION_ALERTS if task == "regression" else _CLASSIFICATION_ALERTS}
    files = {"mloop.toml.tmpl": "mloop.toml", f"pipeline.{task}.py.tmpl": "pipeline.py",
             f"test_pipeline.{task}.py.tmpl": "tests/test_pipeline.py", "gitignore.tmpl": ".gitignore",
             "README.md.tmpl": "README.md"}
    for source, target in files.items():
        text = Template(templates.joinpath(source).read_text(encoding="utf-8")).safe_substitute(values)
        atomic_write_text(root / target, text)
    atomic_write_text(root / "data" / "data.csv", sample_data(task))
    return root
