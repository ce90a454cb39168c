"""An S3 remote, for real: moto's S3 API server on 127.0.0.1, `[data] remote = "s3://..."` with the
credentials and the endpoint in the environment only; push, a fresh clone that pulls, and a run in that
clone whose model, trained on the pulled data, is served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.servers import post, start_s3, start_server, stop
from tests.support.versioned import git, mloop, versioned_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    proc, url = start_s3(tmp_path_factory.mktemp("s3"))
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": url}
    import boto3

    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    client.create_bucket(Bucket="mloop-data")
    yield env, client
    stop(proc)


def test_push_to_s3_then_a_fresh_clone_pulls_trains_and_serves(tmp_path: Path, mlflow_db_template: Path, s3):
    env, client = s3
    root = versioned_project(tmp_path, "ons3", mlflow_db_template)
    (root / "mloop.toml").write_text((root / "mloop.toml").read_text() + '\n[data]\nremote = "s3://mloop-data/ons3"\n')
    status = mloop(root, "data", "status", env=env)
    assert "not pushed" in status.stdout and "s3://mloop-data/ons3" in status.stdout, status.stderr
    git(root, "commit", "-qam", "data on S3")  # .dvc/config names the remote; no credential in the repository
    pushed = mloop(root, "data", "push", env=env)
    assert pushed.returncode == 0 and "pushed 1 file" in pushed.stdout, pushed.stderr
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="mloop-data", Prefix="ons3/")["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("ons3/files/md5/")
    tracked = git(root, "ls-files")
    assert "testing" not in "".join((root / f).read_text(errors="ignore") for f in tracked.splitlines())

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    pulled = mloop(clone, "data", "pull", env=env)
    assert pulled.returncode == 0 and "data/data.csv" in pulled.stdout, pulled.stderr
    assert (clone / "data" / "data.csv").read_bytes() == (root / "data" / "data.csv").read_bytes()

    (clone / ".mloop").mkdir(exist_ok=True)
    (clone / ".mloop" / "mlflow.db").write_bytes(mlflow_db_template.read_bytes())
    ran = mloop(clone, "run", env=env)
    assert ran.returncode == 0, ran.stderr
    shown = mloop(clone, "runs", "show", ran.stdout.split("details: mloop runs show ")[1].split()[0])
    assert "s3://mloop-data/ons3/files/md5/" in shown.stdout  # the version's object on the S3 remote
    server, url = start_server(clone, "--name", "ons3-clone")
    try:
        row = {"x1": 0.1, "x2": -0.2, "x3": 0.3, "x4": 0.0}
        code, answer = post(f"{url}/predict", json.dumps({"instances": [row]}).encode())
        assert code == 200 and answer["predictions"][0]["label"] in (0, 1), answer
    finally:
        stop(server)


def test_a_missing_bucket_or_no_credentials_is_one_clear_error(tmp_path: Path, mlflow_db_template: Path, s3):
    env, _ = s3
    root = versioned_project(tmp_path, "nobucket", mlflow_db_template)
    (root / "mloop.toml").write_text((root / "mloop.toml").read_text() + '\n[data]\nremote = "s3://no-such-bucket/x"\n')
    pushed = mloop(root, "data", "push", env=env)
    assert pushed.returncode == 2, pushed.stdout + pushed.stderr
    assert "the bucket 'no-such-bucket' of the remote s3://no-such-bucket/x does not exist" in pushed.stderr
    assert "Traceback" not in pushed.stderr
    nocreds = mloop(root, "data", "push", env={**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert nocreds.returncode == 2 and "Traceback" not in nocreds.stderr, nocreds.stderr
