"""The generated CI workflows' properties: least privilege, concurrency, secrets only named; the provider
registry; what `write_workflow` refuses."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mloop.automation.ci import PROVIDERS, CIProvider, get_provider, write_workflow
from mloop.automation.ci.plan import describe_project
from mloop.config import load_project
from mloop.errors import ConfigError
from mloop.project import create_project


@pytest.fixture
def cfg(tmp_path: Path):
    root = create_project("churn", tmp_path)
    subprocess.run(["git", "init", "--quiet", "--initial-branch", "trunk", str(tmp_path)], check=True)
    return load_project(root)


def generated(cfg, provider: str) -> tuple[str, dict]:
    chosen = get_provider(provider)
    text = chosen.render(describe_project(cfg))
    return text, yaml.safe_load(text)


def test_providers_are_found_by_name_and_an_unknown_one_lists_the_known():
    assert all(isinstance(get_provider(name), CIProvider) for name in PROVIDERS)
    with pytest.raises(ConfigError, match="unknown CI provider 'gitlub'; did you mean 'gitlab'") as info:
        get_provider("gitlub")
    assert info.value.hint == "use --provider github or --provider gitlab"
    with pytest.raises(ConfigError, match="known: 'github', 'gitlab'"):
        get_provider("jenkins")


def test_the_project_is_described_from_its_files(cfg):
    project = describe_project(cfg)
    assert project.folder == "churn" and project.repo_root == cfg.root.parent.resolve()
    assert project.data_files == ("data/data.csv",) and project.dvc_files == ()
    assert project.pipeline_file == "pipeline.py" and project.has_tests and project.default_branch == "trunk"
    assert project.cache_key_files == ["churn/pipeline.py", "churn/mloop.toml", "churn/data/data.csv"]
    (cfg.root / "data" / "extra.parquet.dvc").write_text("outs:\n- path: extra.parquet\n")
    described = describe_project(cfg, default_branch="release")
    assert described.data_files == ("data/data.csv", "data/extra.parquet") and described.gate_needs_data_pull
    assert described.default_branch == "release"


def test_github_token_reads_only_except_where_a_job_needs_more(cfg):
    _, workflow = generated(cfg, "github")
    assert workflow["permissions"] == {"contents": "read"}
    extra = {name: job["permissions"] for name, job in workflow["jobs"].items() if "permissions" in job}
    assert extra == {"report": {"contents": "read", "pull-requests": "write"},
                     "publish": {"contents": "read", "packages": "write"}}


def test_github_runs_one_per_branch_and_a_newer_push_cancels_the_older_but_on_the_default_branch(cfg):
    _, workflow = generated(cfg, "github")
    # a pull request's newer push cancels the run in progress; on the default branch a publish or deploy is
    # never cut in half: it finishes and the newest run waits
    assert workflow["concurrency"] == {"group": "mloop-${{ github.ref }}",
                                       "cancel-in-progress": "${{ github.ref != 'refs/heads/trunk' }}"}
    assert workflow["on"]["push"]["branches"] == ["trunk"] and "pull_request" in workflow["on"]
    assert workflow["jobs"]["deploy"]["environment"] == "production"


def test_gitlab_jobs_are_interruptible_but_publish_and_deploy(cfg):
    _, workflow = generated(cfg, "gitlab")
    assert workflow["workflow"]["auto_cancel"] == {"on_new_commit": "interruptible"}
    assert workflow["default"]["interruptible"] is True
    assert workflow["publish"]["interruptible"] is False and workflow["deploy"]["interruptible"] is False
    assert workflow["deploy"]["environment"] == {"name": "production"}
    assert [r["if"] for r in workflow["workflow"]["rules"]] == [
        '$CI_PIPELINE_SOURCE == "merge_request_event"', "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"]


def test_job_order_is_test_train_gate_report_publish_deploy(cfg):
    _, github = generated(cfg, "github")
    needs = {name: job.get("needs", []) for name, job in github["jobs"].items()}
    assert needs == {"test": [], "train": ["test"], "gate": ["train"], "report": ["train", "gate"],
                     "publish": ["gate"], "deploy": ["publish"]}
    _, gitlab = generated(cfg, "gitlab")
    assert gitlab["stages"] == ["test", "train", "gate", "report", "publish", "deploy"]


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_secrets_are_only_named_never_written(cfg, provider, monkeypatch):
    monkeypatch.setenv("MLOOP_KUBECONFIG", "apiVersion: v1  # a real kubeconfig")
    monkeypatch.setenv("MLOOP_GITLAB_TOKEN", "glpat-not-to-be-written")
    text, _ = generated(cfg, provider)
    assert "glpat-" not in text and "apiVersion" not in text
    names = {s.name for s in get_provider(provider).secrets(describe_project(cfg))}
    for name in names:
        assert name in text
    if provider == "github":
        assert re.findall(r"secrets\.(\w+)", text) and set(re.findall(r"secrets\.(\w+)", text)) <= names | {"GITHUB_TOKEN"}
        assert "${{ secrets.MLOOP_KUBECONFIG }}" in text
    else:
        assert '$MLOOP_GITLAB_TOKEN' in text and '"$MLOOP_KUBECONFIG"' in text and "$CI_REGISTRY_PASSWORD" in text


def test_a_tracking_server_named_in_mloop_toml_is_not_overridden(cfg):
    _, workflow = generated(cfg, "github")
    assert workflow["env"] == {"MLOOP_TRACKING_URI": "${{ secrets.MLOOP_TRACKING_URI }}"}
    toml = cfg.root / "mloop.toml"
    toml.write_text(toml.read_text().replace('uri = ""', 'uri = "http://mlflow.internal:5000"'))
    _, workflow = generated(load_project(cfg.root), "github")
    assert "env" not in workflow


def test_an_existing_workflow_is_kept_unless_forced(cfg):
    written = write_workflow(cfg, "gitlab")
    assert written.path == cfg.root.parent.resolve() / ".gitlab-ci.yml"
    written.path.write_text("# mine\n")
    with pytest.raises(ConfigError, match="exists; mloop leaves it as it is") as info:
        write_workflow(cfg, "gitlab")
    assert info.value.hint == "replace it with: mloop ci init --provider gitlab --force"
    assert written.path.read_text() == "# mine\n"
    write_workflow(cfg, "gitlab", force=True)
    assert written.path.read_text().startswith("# mloop's CI/CD")


def test_outside_a_git_repository_nothing_is_written(tmp_path: Path):
    cfg = load_project(create_project("loose", tmp_path))
    with pytest.raises(ConfigError, match="is not in a git repository") as info:
        write_workflow(cfg, "github")
    assert "git init" in (info.value.hint or "") and "mloop init" in (info.value.hint or "")
    assert not (tmp_path / ".github").exists() and not (cfg.root / ".github").exists()


def test_jobs_pull_the_data_only_from_dvc_and_only_the_pull_gets_the_remote_credentials(cfg):
    from dataclasses import replace

    from mloop.automation.ci import notes

    plain = describe_project(cfg)
    assert not plain.dvc and "mloop data pull" not in get_provider("github").render(plain)
    versioned = replace(plain, dvc=True, data_remote="s3://bucket/churn", dvc_files=("data/data.csv.dvc",))
    workflow = yaml.safe_load(get_provider("github").render(versioned))
    pulls = {name: [s for s in job["steps"] if s.get("run") == "mloop data pull"]
             for name, job in workflow["jobs"].items()}
    assert {name for name, steps in pulls.items() if steps} == {"test", "train", "gate"}
    assert all(s["env"] == {"AWS_ACCESS_KEY_ID": "${{ secrets.AWS_ACCESS_KEY_ID }}",
                            "AWS_SECRET_ACCESS_KEY": "${{ secrets.AWS_SECRET_ACCESS_KEY }}"}
               for steps in pulls.values() for s in steps)
    assert "AWS_" not in yaml.safe_dump({k: v for k, v in workflow.items() if k != "jobs"})
    gitlab = yaml.safe_load(get_provider("gitlab").render(versioned))
    assert [gitlab[job]["script"][0] for job in ("train", "gate")] == ["mloop data pull", "mloop data pull"]
    assert notes(versioned) == []
    assert "[data] remote is empty" in notes(replace(versioned, data_remote=""))[0]


def test_gitlab_cache_key_names_two_files_at_most_and_only_files_git_has(cfg):
    """GitLab refuses a cache:key:files of more than two; a file git ignores is not in CI's checkout."""
    subprocess.run(["git", "-C", str(cfg.root), "add", "."], check=True)
    (cfg.root / "data" / "more.csv").write_text("x1,x2,x3,x4,target\n")  # not in git
    _, workflow = generated(cfg, "gitlab")
    files = workflow["train"]["cache"][1]["key"]["files"]
    assert len(files) <= 2 and all("more.csv" not in f for f in files)
    _, github = generated(cfg, "github")
    restore = next(s for s in github["jobs"]["train"]["steps"] if s.get("name") == "Restore the step cache")
    assert "more.csv" not in restore["with"]["key"]


def test_the_jobs_install_mloop_as_told(cfg):
    from mloop.automation.ci import describe_project

    project = describe_project(load_project(cfg.root), mloop_requirement="mloop @ git+https://example.org/mloop@v1")
    assert project.install() == 'python -m pip install "mloop @ git+https://example.org/mloop@v1"'
