"""Data versioning with real git and real DVC: `mloop init` sets both up, `mloop data add|status|push|pull|
versions`, the DVC version of every input recorded by a run (MLflow dataset input, `runs show`, the bundle's
lineage), a fresh clone that pulls its data from the remote, and `[data] remote` switching remotes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mloop.config import load_project
from tests.support.versioned import git, mloop, versioned_project

pytestmark = pytest.mark.integration


def run_id_of(ran) -> str:
    """The tracked run's id as `mloop run` prints it ("run ID: ...")."""
    return next(line.split()[1].rstrip(":") for line in ran.stdout.splitlines() if line.startswith("run "))


def test_init_makes_a_git_repository_with_dvc_and_the_sample_data_tracked(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "fresh", mlflow_db_template)
    assert (root / ".git").is_dir() and (root / ".dvc").is_dir()
    config = (root / ".dvc" / "config").read_text()
    assert "analytics = False" in config and "check_update = False" in config and "autostage = True" in config
    local = (root / ".dvc" / "config.local").read_text()  # the default remote: this machine's, not committed
    assert "dvc-remote" in local
    assert "config.local" not in git(root, "ls-files", ".dvc")
    assert git(root, "ls-files", "data") == "data/.gitignore\ndata/data.csv.dvc"  # the data itself is DVC's
    assert "data.csv" in (root / "data" / ".gitignore").read_text()
    assert ".mloop/" in (root / ".dvcignore").read_text().splitlines()  # DVC never walks the stores

    no_dvc = mloop(tmp_path, "init", "plain", "--no-data-versioning")
    assert no_dvc.returncode == 0 and not (tmp_path / "plain" / ".dvc").exists()
    outside = mloop(tmp_path / "plain", "data", "status")
    assert outside.returncode == 2 and "not under DVC" in outside.stderr and "mloop data init" in outside.stderr
    made = mloop(tmp_path / "plain", "data", "init")
    assert made.returncode == 0 and "a git repository and DVC" in made.stdout, made.stderr
    again = mloop(tmp_path / "plain", "data", "init")
    assert again.returncode == 0 and "already set up" in again.stdout


def test_init_inside_an_existing_repository_adds_dvc_to_the_project_folder(tmp_path: Path):
    git(tmp_path, "init", "-q")
    made = mloop(tmp_path, "init", "sub")
    assert made.returncode == 0, made.stderr
    assert "inside the git repository" in made.stdout
    assert (tmp_path / "sub" / ".dvc").is_dir() and not (tmp_path / ".dvc").exists()  # DVC in the subfolder
    assert not (tmp_path / "sub" / ".git").exists()
    assert "sub/data/data.csv.dvc" in git(tmp_path, "diff", "--cached", "--name-only")


def test_a_run_records_the_dvc_version_it_read_and_versions_lists_the_runs(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "tracked", mlflow_db_template)
    first = mloop(root, "run")
    assert first.returncode == 0, first.stderr
    commit = git(root, "rev-parse", "HEAD")
    run_id = run_id_of(first)

    shown = mloop(root, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    md5 = json.loads(git(root, "show", "HEAD:data/data.csv.dvc").replace("outs:\n- md5: ", '{"md5": "').split("\n")[0] + '"}')["md5"]
    assert f"DVC md5 {md5} (commit {commit[:12]})" in shown.stdout
    assert f"/files/md5/{md5[:2]}/{md5[2:]}" in shown.stdout  # the version's object on the remote

    from mlflow import MlflowClient

    cfg = load_project(root)
    run = MlflowClient(cfg.tracking_uri).get_run(run_id)
    dataset = run.inputs.dataset_inputs[0].dataset
    source = json.loads(dataset.source)
    assert dataset.source_type == "dvc" and source["dvc"]["md5"] == md5 and source["dvc"]["commit"] == commit
    assert source["dvc"]["state"] == "committed" and source["dvc"]["object_url"].endswith(md5[2:])
    version = MlflowClient(cfg.tracking_uri).get_model_version("tracked", "1")
    lineage = json.loads(version.description)
    assert lineage["data_versions"][0]["md5"] == md5 and lineage["data_versions"][0]["commit"] == commit

    # a changed file: status says so, add records it, push sends it, a run on it is listed by versions
    with (root / "data" / "data.csv").open("a") as fh:
        fh.write("0.1,0.2,0.3,0.4,1\n")
    status = mloop(root, "data", "status")
    assert "data/data.csv" in status.stdout and "modified since it was added" in status.stdout
    dirty_run = mloop(root, "run")  # a run on data not added: its version is "modified", with no commit
    assert dirty_run.returncode == 0, dirty_run.stderr
    dirty_id = run_id_of(dirty_run)
    assert "(modified)" in mloop(root, "runs", "show", dirty_id).stdout
    added = mloop(root, "data", "add", "data/data.csv")
    assert added.returncode == 0 and "data/data.csv.dvc" in added.stdout, added.stderr
    status = mloop(root, "data", "status")
    assert "added, not committed" in status.stdout and "not pushed" in status.stdout
    git(root, "commit", "-qm", "more data")
    second = mloop(root, "run")
    assert second.returncode == 0, second.stderr
    second_id = run_id_of(second)
    # the same bytes as the dirty run read, now committed: this run's record says so (MLflow keeps one dataset
    # per name and digest, so the digest covers the DVC state too)
    assert f"(commit {git(root, 'rev-parse', 'HEAD')[:12]})" in mloop(root, "runs", "show", second_id).stdout
    pushed = mloop(root, "data", "push")
    assert pushed.returncode == 0 and "pushed" in pushed.stdout, pushed.stderr
    assert "data up to date" in mloop(root, "data", "status").stdout

    listed = mloop(root, "data", "versions", "data/data.csv", "--json")
    assert listed.returncode == 0, listed.stderr
    versions = json.loads(listed.stdout)
    assert [v["message"] for v in versions] == ["more data", "new mloop project"]
    # the run on the modified file read the very content added next: that version's runs list it too
    assert versions[0]["runs"] == [second_id, dirty_id] and versions[1]["runs"] == [run_id]
    assert versions[1]["md5"] == md5 and versions[0]["commit"] == git(root, "rev-parse", "HEAD")
    table = mloop(root, "data", "versions", "data/data.csv")
    assert second_id[:8] in table.stdout and "(v" in table.stdout
    not_tracked = mloop(root, "data", "versions", "pipeline.py")
    assert not_tracked.returncode == 2 and "not tracked by DVC" in not_tracked.stderr


def test_a_fresh_clone_pulls_its_data_from_the_default_remote_and_runs(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "origin", mlflow_db_template)
    assert mloop(root, "data", "push").returncode == 0
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    assert not (clone / "data" / "data.csv").exists()
    status = mloop(clone, "data", "status")
    assert "not in the cache" in status.stdout and "mloop data pull" in status.stdout
    assert "modified" not in status.stdout  # not pulled yet is not changed
    early = mloop(clone, "run", "--no-track")
    assert early.returncode == 2 and "versioned with DVC: mloop data pull puts it back" in early.stderr
    pulled = mloop(clone, "data", "pull")
    assert pulled.returncode == 0 and "data/data.csv" in pulled.stdout, pulled.stderr
    assert (clone / "data" / "data.csv").read_bytes() == (root / "data" / "data.csv").read_bytes()
    assert "the working copy was up to date" in mloop(clone, "data", "pull").stdout
    ran = mloop(clone, "run", "--no-track")
    assert ran.returncode == 0, ran.stderr


def test_a_version_missing_from_the_remote_is_named_with_the_fix(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "unpushed", mlflow_db_template)
    (root / "mloop.toml").write_text((root / "mloop.toml").read_text() + f'\n[data]\nremote = "{tmp_path / "empty"}"\n')
    (tmp_path / "empty").mkdir()
    git(root, "commit", "-qam", "own remote")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    pulled = mloop(clone, "data", "pull")
    assert pulled.returncode == 2, pulled.stdout + pulled.stderr
    assert "mloop data push" in pulled.stderr and "Traceback" not in pulled.stderr
    missing = mloop(root, "data", "add", "nothing.csv")
    assert missing.returncode == 2 and "no such file or folder: nothing.csv" in missing.stderr


def test_the_remote_in_mloop_toml_replaces_the_default_one(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "moved", mlflow_db_template)
    text = (root / "mloop.toml").read_text()
    (root / "mloop.toml").write_text(text + '\n[data]\nremote = "../shared-remote"\n')
    pushed = mloop(root, "data", "push")
    assert pushed.returncode == 0, pushed.stderr
    objects = [p for p in (tmp_path / "shared-remote").rglob("*") if p.is_file()]
    assert len(objects) == 1  # the sample data's one version
    config = (root / ".dvc" / "config").read_text()
    assert "remote = mloop" in config and "../../shared-remote" in config  # committed, relative to .dvc/
    assert "remote" not in (root / ".dvc" / "config.local").read_text()  # the default folder is gone
    assert "shared-remote" in mloop(root, "data", "status").stdout


def test_concurrent_adds_take_turns_instead_of_failing_on_dvcs_lock(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "busy", mlflow_db_template)
    for i in range(4):
        folder = root / "data" / f"part{i}"
        folder.mkdir()
        for j in range(50):
            (folder / f"{j}.csv").write_text(f"x\n{i * 100 + j}\n")
    results: list = [None] * 4

    def add(i: int) -> None:
        results[i] = mloop(root, "data", "add", f"data/part{i}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert all((root / "data" / f"part{i}.dvc").is_file() for i in range(4))
    status = mloop(root, "data", "status", "--no-remote")
    assert "modified" not in status.stdout


def test_a_damaged_dvc_file_or_an_unusable_remote_url_is_named_and_repaired(tmp_path: Path, mlflow_db_template: Path):
    root = versioned_project(tmp_path, "damaged", mlflow_db_template)
    dvc_file = root / "data" / "data.csv.dvc"
    dvc_file.write_text("outs: []\n")  # DVC itself would skip it silently
    status = mloop(root, "data", "status")
    assert "data/data.csv.dvc" in status.stdout and "damaged .dvc file" in status.stdout, status.stdout
    dvc_file.write_text("garbage: [\n")
    pushed = mloop(root, "data", "push")
    assert pushed.returncode == 2 and "the DVC file data/data.csv.dvc is damaged" in pushed.stderr
    assert "mloop data add data/data.csv" in pushed.stderr and "Traceback" not in pushed.stderr
    ran = mloop(root, "run")  # a run still runs, its input recorded as not matching any version
    assert ran.returncode == 0, ran.stderr
    repaired = mloop(root, "data", "add", "data/data.csv")  # the fix the hint gives
    assert repaired.returncode == 0, repaired.stderr
    assert "md5:" in dvc_file.read_text() and (root / ".mloop" / "quarantine" / "data.csv.dvc.damaged").is_file()
    assert "damaged" not in mloop(root, "data", "status").stdout

    in_git = mloop(root, "data", "add", "pipeline.py")
    assert in_git.returncode == 2 and "pipeline.py is committed to git" in in_git.stderr
    assert "git rm -r --cached 'pipeline.py'" in in_git.stderr and len(in_git.stderr.strip().splitlines()) == 2
    unknown = mloop(root, "data", "push", "nothere")
    assert unknown.returncode == 2 and "nothere is not tracked by DVC" in unknown.stderr

    (root / "mloop.toml").write_text((root / "mloop.toml").read_text() + '\n[data]\nremote = "foo://bar/baz"\n')
    for command in (["data", "status"], ["data", "push"]):
        bad = mloop(root, *command)
        assert bad.returncode == 2 and "[data] remote = 'foo://bar/baz' is not a remote DVC can use" in bad.stderr
