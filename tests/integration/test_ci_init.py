"""`mloop ci init`: the generated workflows pass the providers' schemas and actionlint, and their jobs run
(test -> train -> gate -> report, then what publish and deploy run locally) in a clean clone of a project
made with `mloop init`, in order, each job in a fresh checkout with only the declared artifacts and caches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.ci_runner import Simulation, environment, is_install, missing_commands, run_github, run_gitlab
from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
FILES = {"github": ".github/workflows/mloop.yml", "gitlab": ".gitlab-ci.yml"}
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def run(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=240,
                          env=environment(GIT_ENV), **kwargs)  # type: ignore[call-overload]


def new_repository(tmp_path: Path, layout: str) -> tuple[Path, Path]:
    """A git repository (branch main) with a project made by `mloop init` (data versioned with DVC): the
    repository `mloop init` makes, or an existing one with the project in a subfolder."""
    if layout == "root":
        done = run([MLOOP, "init", "churn"], tmp_path)
        assert done.returncode == 0, done.stderr
        repo = project = tmp_path / "churn"
        run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], repo)  # before the first commit
    else:
        repo = tmp_path / "monorepo"
        repo.mkdir()
        run(["git", "init", "--quiet", "--initial-branch", "main"], repo)
        (repo / "README.md").write_text("other things live here too\n")
        done = run([MLOOP, "init", "churn", "--dir", "models"], repo)
        assert done.returncode == 0, done.stderr
        project = repo / "models" / "churn"
    assert (project / "data" / "data.csv.dvc").is_file()
    return repo, project


def commit(repo: Path) -> None:
    assert run(["git", "add", "-A"], repo).returncode == 0
    done = run(["git", "commit", "--quiet", "-m", "project and its CI"], repo)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("provider", ["github", "gitlab"])
@pytest.mark.parametrize("layout", ["root", "subfolder"])
def test_generated_workflows_pass_the_provider_schemas_and_actionlint(tmp_path: Path, provider: str, layout: str):
    repo, project = new_repository(tmp_path, layout)
    done = run([MLOOP, "ci", "init", "--provider", provider], project)
    assert done.returncode == 0, done.stderr
    path = repo / FILES[provider]
    assert f"wrote {path}" in done.stdout and "MLOOP_KUBECONFIG" in done.stdout
    schema = "vendor.github-workflows" if provider == "github" else "vendor.gitlab-ci"
    checked = run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)], repo)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    if provider == "github":
        linted = run([str(BIN / "actionlint"), "-no-color", str(path)], repo)
        assert linted.returncode == 0, linted.stdout + linted.stderr
    workflow = yaml.safe_load(path.read_text())
    text = path.read_text()
    if layout == "subfolder":  # jobs work in the project's folder and run for changes to it only
        assert "models/churn" in text
        if provider == "github":
            assert workflow["defaults"]["run"]["working-directory"] == "models/churn"
            assert workflow["on"]["push"]["paths"] == ["models/churn/**", ".github/workflows/mloop.yml"]
        else:
            assert workflow["default"]["before_script"][0] == "cd models/churn"
            assert workflow["workflow"]["rules"][0]["changes"] == ["models/churn/**/*", ".gitlab-ci.yml"]
    else:
        assert "models/churn" not in text and "paths" not in str(workflow.get("on", {}))


def _check_cloud_commands(provider: str, workflow: dict, skipped: list[tuple[str, str]]) -> None:
    """What was not run: its command lines."""
    by_job: dict[str, str] = {}
    for job, command in skipped:
        by_job[job] = by_job.get(job, "") + "\n" + command
    installs = [c for _, c in skipped if is_install(c)]
    assert installs and all(c.startswith('python -m pip install "mloop==') for c in installs), installs
    assert any(c.endswith(" pytest") for c in installs), "the test job installs pytest"
    comment = by_job["report"]
    assert "<!-- mloop-report:" in comment and "head -n 1" in comment, "the comment is found again by its marker"
    if provider == "github":
        assert "--method PATCH" in comment and "--method POST" in comment and "issues/comments/$id" in comment
        assert "docker/build-push-action@v7" in by_job["publish"] and "docker/login-action@v4" in by_job["publish"]
        assert "kubectl apply -f manifests/deployment.yaml" in by_job["deploy"]
        for job in ("publish", "deploy"):
            assert workflow["jobs"][job]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    else:
        assert "--request PUT" in comment and "--request POST" in comment and "$MLOOP_GITLAB_TOKEN" in comment
        assert "docker push" in by_job["publish"] and "$CI_REGISTRY_PASSWORD" in by_job["publish"]
        assert "kubectl apply -f models/churn/build/kubernetes/deployment.yaml" in by_job["deploy"]
        for job in ("package", "publish", "deploy"):
            assert workflow[job]["rules"] == [
                {"if": '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE == "push"'}]


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_the_jobs_run_in_order_in_a_clean_clone(tmp_path: Path, provider: str):
    repo, project = new_repository(tmp_path, "subfolder")
    assert run([MLOOP, "ci", "init", "--provider", provider], project).returncode == 0
    commit(repo)
    pushed = run([MLOOP, "data", "push"], project)  # to the default remote, a folder shared by this machine's clones
    assert pushed.returncode == 0, pushed.stderr
    workflow = yaml.safe_load((repo / FILES[provider]).read_text())
    env = environment()
    sim = Simulation(origin=repo, workspace=tmp_path / "ci" / "workspace", env=env, missing=missing_commands(env))
    runner = run_github if provider == "github" else run_gitlab
    runner(sim, workflow, ["report", "deploy"])  # and every job they need, in order

    ran = [command for _, command in sim.ran]
    expected = ["mloop run --list", "python -m pytest tests", "mloop run", "mloop models gate",
                "mloop monitor report --from data/data.csv --fail-on-drift 0.3"]
    expected += [c for c in ("mloop data pull", "mloop models report --markdown --out report/")
                 if not any(c.startswith(m) for m in sim.missing)]
    assert set(expected) <= set(ran), ran
    order = [c for c in ran if c in expected]
    assert order.index("python -m pytest tests") < order.index("mloop run") < order.index("mloop models gate")
    if "mloop data pull" not in sim.missing:  # the data is in DVC, not in git: every job that reads it pulls it
        assert [job for job, c in sim.ran if c == "mloop data pull"] == ["test", "train", "gate"]
        assert order.index("mloop data pull") < order.index("python -m pytest tests")
    assert "passed the promotion gate" in sim.output["gate"]
    if "mloop models report" not in sim.missing:
        reports = list((sim.after("report") / "models" / "churn" / "report").glob("*.md"))
        assert reports and reports[0].read_text().startswith("<!-- mloop-report: churn -->")
    # publish: the build context and the manifests were written where the image build and kubectl look
    assert any("mloop deploy --target kubernetes" in c for c in ran)
    _check_cloud_commands(provider, workflow, sim.skipped)
    manifests = sim.after("deploy") / ("manifests" if provider == "github" else "models/churn/build/kubernetes")
    deployment = yaml.safe_load_all((manifests / "deployment.yaml").read_text())
    image = next(iter(deployment))["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == ("ghcr.io/owner/repo/churn:0123abc" if provider == "github"
                     else "registry.example.com/group/repo/churn:0123abc")
    print(f"mloop commands not on this branch yet, not run: {sim.missing or 'none'}")

    # a second run restores the step cache: every step is cached
    first = sim.output.pop("train")
    assert first.count("cached") == 0, first
    runner(sim, workflow, ["train"])
    assert sim.output["train"].count("cached") >= 4, sim.output["train"]


def test_outside_a_git_repository_it_says_so(tmp_path: Path):
    assert run([MLOOP, "init", "loose", "--no-data-versioning"], tmp_path).returncode == 0
    done = run([MLOOP, "ci", "init", "--provider", "github"], tmp_path / "loose")
    assert done.returncode == 2
    assert "is not in a git repository" in done.stderr and "git init" in done.stderr
    assert not (tmp_path / "loose" / ".github").exists()
    unknown = run([MLOOP, "ci", "init", "--provider", "jenkins"], tmp_path / "loose")
    assert unknown.returncode == 2 and "unknown CI provider 'jenkins'; known: 'github', 'gitlab'" in unknown.stderr
