"""`mloop deploy --target kubernetes`: artifacts written, validated, and the image's own command serves."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.servers import MLOOP, free_port, wait_for_http

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def written(first_run, tmp_path_factory) -> Path:
    root, _ = first_run
    out = tmp_path_factory.mktemp("k8s")
    done = subprocess.run([MLOOP, "deploy", "--target", "kubernetes", "--out", str(out), "--image", "reg/bc:1"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_writes_the_image_context_and_both_manifest_sets(written):
    assert (written / "image" / "Dockerfile").read_text().startswith("# The mloop model server")
    assert (written / "image" / "model" / "MLmodel").exists()
    assert (written / "image" / "model" / "mloop" / "profile.json").exists()
    assert not (written / "image" / "model" / "mloop" / "train_rows.npy").exists()  # the gates', not the server's
    assert (written / "image" / "mloop" / "serving" / "asgi.py").exists()
    assert "scikit-learn==" in (written / "image" / "requirements.txt").read_text()
    [isvc] = yaml.safe_load_all((written / "inferenceservice.yaml").read_text())
    assert isvc["kind"] == "InferenceService" and isvc["spec"]["predictor"]["containers"][0]["image"] == "reg/bc:1"
    kinds = [d["kind"] for d in yaml.safe_load_all((written / "deployment.yaml").read_text())]
    assert kinds == ["Deployment", "Service"]
    assert "token" not in (written / "deployment.yaml").read_text().replace("-token", "").replace("key: token", "")
    # The image runs as an unprivileged user: every file of the context is readable by others.
    unreadable = [p for p in (written / "image").rglob("*") if p.is_file() and not p.stat().st_mode & 0o004]
    assert unreadable == []


def test_the_image_command_serves_the_baked_in_model(written):
    """What the container runs (ENTRYPOINT + CMD) with the code and model it ships, minus Docker."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(written / "image"), "MLOOP_SERVING_TOKEN": "k8s-secret"}
    proc = subprocess.Popen([sys.executable, "-m", "mloop.cli.main", "serve", str(written / "image" / "model"),
                             "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                            cwd=written, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/health/ready", proc)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/breast_cancer/versions/1",
                                         headers={"authorization": "Bearer k8s-secret"})
        with urllib.request.urlopen(request) as response:
            assert response.status == 200, "served under its registered name and version"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_apply_runs_kubectl_only_when_asked(first_run, tmp_path):
    root, _ = first_run
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "kubectl-args"
    (fake / "kubectl").write_text(f"#!/bin/sh\necho \"$@\" > {record}\necho 'inferenceservice/breast-cancer created'\n")
    (fake / "kubectl").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = tmp_path / "k8s"
    done = subprocess.run([MLOOP, "deploy", "--target", "kubernetes", "--out", str(out)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not record.exists()
    done = subprocess.run([MLOOP, "deploy", "--target", "kubernetes", "--out", str(out), "--apply"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert record.read_text().split() == ["apply", "-f", str(out / "inferenceservice.yaml")]
    assert "created" in done.stdout


def test_apply_without_kubectl_is_a_clear_error(first_run, tmp_path):
    root, _ = first_run
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([MLOOP, "deploy", "--target", "kubernetes", "--out", str(tmp_path / "k"), "--apply"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "kubectl is not on PATH" in done.stderr
