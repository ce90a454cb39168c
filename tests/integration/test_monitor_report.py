"""`mloop monitor report --from FILE`: offline drift check against the registered model's training data."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration


def monitor(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, "monitor", "report", *args], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", **os.environ})


@pytest.fixture(scope="module")
def batches(first_run, tmp_path_factory):
    root, _ = first_run
    folder = tmp_path_factory.mktemp("batches")
    data = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"])
    same = folder / "same.parquet"
    data.to_parquet(same)
    shifted = data.copy()
    shifted["mean_radius"] *= 1.3
    shifted["worst_area"] *= 1.5
    shifted["batch_id"] = 7  # a column the model never saw: reported, not compared
    shifted.to_csv(folder / "shifted.csv", index=False)
    return root, same, folder / "shifted.csv"


def test_the_training_distribution_itself_does_not_drift(batches):
    root, same, _ = batches
    done = monitor(root, "--from", str(same), "--fail-on-drift", "0.1")
    assert done.returncode == 0, done.stderr
    assert "0 of 30 features drifted (0%)" in done.stdout


def test_shifted_features_are_found_and_reported_in_html(batches, tmp_path):
    root, _, shifted = batches
    out = tmp_path / "drift.html"
    done = monitor(root, "--from", str(shifted), "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "drift" in lines["mean_radius"] and "drift" in lines["worst_area"]
    assert "stable" in lines["mean_texture"]
    assert "not compared: batch_id" in done.stdout
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 30 and 'class="drift"' in page


def test_fail_on_drift_exits_3_for_ci(batches):
    root, _, shifted = batches
    done = monitor(root, "--from", str(shifted), "--fail-on-drift", "0.05")
    assert done.returncode == 3 and "above --fail-on-drift 5%" in done.stderr


def test_bad_input_exits_2_with_a_hint(batches, tmp_path):
    root, _, _ = batches
    missing = monitor(root, "--from", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    unrelated = tmp_path / "other.csv"
    unrelated.write_text("a,b\n1,2\n")
    done = monitor(root, "--from", str(unrelated))
    assert done.returncode == 2 and "shares no column" in done.stderr and "Traceback" not in done.stderr


def test_the_report_judges_with_the_monitor_settings_of_mloop_toml_as_the_server_does(batches, tmp_path):
    root, _, shifted = batches
    project = Path(shutil.copytree(root, tmp_path / "p", ignore=shutil.ignore_patterns("monitor", "deployments")))
    config = project / "mloop.toml"
    config.write_text(config.read_text().replace("alpha = 0.05", "alpha = 0.05\nthresholds = { mean_radius = 1e-300 }"))
    done = monitor(project, "--from", str(shifted))
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert done.returncode == 0, done.stderr
    assert "stable" in lines["mean_radius"] and "drift" in lines["worst_area"]
    overridden = monitor(project, "--from", str(shifted), "--min-samples", "100000")  # an option still wins
    assert overridden.returncode == 0 and "not enough data for a verdict (min 100000 per feature)" in overridden.stdout


def test_the_target_column_of_a_labelled_batch_is_not_compared(batches, tmp_path):
    root, _, _ = batches
    labelled = tmp_path / "labelled.csv"
    pd.read_csv(root / "data" / "breast_cancer.csv").to_csv(labelled, index=False)
    done = monitor(root, "--from", str(labelled))
    assert done.returncode == 0, done.stderr
    assert "0 of 30 features drifted" in done.stdout and "the model's target, not compared: target" in done.stdout
