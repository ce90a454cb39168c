"""What a generated CI workflow runs, whatever the provider: the project as CI sees it (``CIProject``)
and the shell commands of each job. The providers only turn this plan into their own YAML."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mloop._version import __version__
from mloop.config import ProjectConfig
from mloop.data.repo import dvc_root, git_root
from mloop.errors import ConfigError

DATA_SUFFIXES = (".csv", ".parquet", ".pq")
SKIPPED_FOLDERS = {"tests", "build", "report", "node_modules", "venv"}  # besides hidden folders
DRIFT_THRESHOLD = 0.3  # the share of drifted features above which the gate job fails
REPORT_MARKER = "<!-- mloop-report:"  # first line of every `mloop models report --markdown` file
REPORT_DIR = "report"
KUBERNETES_OUT = "build/kubernetes"  # `mloop deploy --target kubernetes --out`, relative to the project
STEP_CACHE = (".mloop/cache", ".mloop/objects")  # the step cache index and the outputs it points to
STORE = ".mloop"  # the MLflow store (SQLite + artifacts) and run logs the later jobs read
STORE_EXCLUDED = (*STEP_CACHE, ".mloop/tmp", ".mloop/locks")  # not passed on: cached separately, or scratch


@dataclass(frozen=True)
class CIProject:
    """A project as its CI sees it. Paths are POSIX strings: ``folder`` relative to the git repository's
    root ("" when the project is the root), every other path relative to the project."""

    repo_root: Path
    folder: str
    model: str  # the registered model's name
    label: str  # its Kubernetes name (the deployment and the image)
    pipeline_file: str
    data_files: tuple[str, ...]  # compared with the champion's training data by the gate
    dvc_files: tuple[str, ...]  # data versioned with DVC (`X.dvc` for `X`)
    has_tests: bool
    dvc: bool  # the project is in a DVC repository: jobs that read the data pull it first
    data_remote: str  # [data] remote ("" : a folder on the developer's machine, out of CI's reach)
    requirements: str | None  # the project's requirements file, if it has one
    python: str
    default_branch: str
    tracking_uri_in_file: bool  # mloop.toml names a tracking server: CI must not override it
    in_git: frozenset[str] = frozenset()  # the project's files git tracks (project-relative)
    mloop_requirement: str = ""  # how the jobs install mloop (pip's requirement syntax); "" : mloop==VERSION

    def at(self, path: str) -> str:
        """``path`` (relative to the project) relative to the repository's root."""
        return str(PurePosixPath(self.folder) / path) if self.folder else path

    # --- the shell commands of each job (run in the project's folder) ---

    def install(self, *, tests: bool = False) -> str:
        """The packages of a job (pip's own cache is the provider's); ``tests``: the test job's, with pytest."""
        packages = f"-r {self.requirements}" if self.requirements else f'"{self.mloop_requirement or f"mloop=={__version__}"}"'
        return f"python -m pip install {packages}" + (" pytest" if tests and self.has_tests else "")

    def checks(self) -> list[str]:
        """The test job: the pipeline and mloop.toml load and validate (steps, inputs, parameters), then the
        project's own tests."""
        commands = ["mloop run --list"]
        if self.has_tests:
            commands += [*self._pull(), "python -m pytest tests"]  # tests may read the data
        return commands

    def train(self) -> list[str]:
        return [*self._pull(), "mloop run"]

    def gate(self) -> list[str]:
        commands = [*(self._pull() if self.gate_needs_data_pull else []), "mloop models gate"]
        commands += [f"mloop monitor report --from {path} --fail-on-drift {DRIFT_THRESHOLD}" for path in self.data_files]
        return commands

    def _pull(self) -> list[str]:
        return ["mloop data pull"] if self.dvc else []

    @property
    def remote_credentials(self) -> tuple[str, ...]:
        """The environment variables DVC reads the remote's credentials from (secrets in CI)."""
        return ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if self.data_remote.startswith("s3://") else ()

    @property
    def gate_needs_data_pull(self) -> bool:
        """Whether a data file the gate reads is versioned with DVC (not in git)."""
        return any(f"{path}.dvc" in self.dvc_files for path in self.data_files)

    def report(self) -> str:
        return f"mloop models report --markdown --out {REPORT_DIR}/"

    def package(self, image: str) -> str:
        """The serving image's build context and the manifests, for the champion, naming ``image``."""
        return f'mloop deploy --target kubernetes --out {KUBERNETES_OUT} --image "{image}"'

    @property
    def cache_key_files(self) -> list[str]:
        """What the step cache's key hashes (repository-relative): the pipeline, its settings, the data's
        versions (its .dvc files, or the data itself when git has it; files git ignores are not in CI)."""
        return [self.at(p) for p in (self.pipeline_file, "mloop.toml", *self.dvc_files, *self._data_in_git)
                if not self.in_git or p in self.in_git]

    @property
    def _data_in_git(self) -> list[str]:
        return [p for p in self.data_files if f"{p}.dvc" not in self.dvc_files]


def describe_project(cfg: ProjectConfig, *, default_branch: str | None = None, mloop_requirement: str = "") -> CIProject:
    """The project as CI sees it; ConfigError when it is not inside a git repository."""
    root = cfg.root.resolve()
    repo_root = git_root(root)
    if repo_root is None:
        raise ConfigError(f"{root} is not in a git repository: a CI workflow lives in one",
                          hint=f"create one: git init {root} (or start a new project in one with mloop init NAME)")
    folder = root.relative_to(repo_root).as_posix()
    module = cfg.settings.project.pipeline.partition(":")[0]
    data = sorted({p for p in _files(root) if p.endswith(DATA_SUFFIXES)}
                  | {p.removesuffix(".dvc") for p in _files(root) if p.endswith(tuple(s + ".dvc" for s in DATA_SUFFIXES))})
    dvc = sorted(p for p in _files(root) if p.endswith(".dvc"))
    requirements = next((name for name in ("requirements.txt", "requirements-ci.txt") if (root / name).is_file()), None)
    from mloop.deploy.kubernetes import k8s_name

    return CIProject(
        repo_root=repo_root, folder="" if folder == "." else folder, model=cfg.model_name, label=k8s_name(cfg.model_name),
        pipeline_file=module.replace(".", "/") + ".py", data_files=tuple(data), dvc_files=tuple(dvc),
        has_tests=(root / "tests").is_dir(), dvc=dvc_root(root) is not None, data_remote=cfg.settings.data.remote,
        requirements=requirements,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        default_branch=default_branch or _default_branch(repo_root),
        tracking_uri_in_file=bool(cfg.settings.tracking.uri), in_git=_git_files(root),
        mloop_requirement=mloop_requirement,
    )


def _git_files(root: Path) -> frozenset[str]:
    """The files under ``root`` git tracks or has staged, relative to ``root``."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--", "."], capture_output=True, text=True,
                         timeout=60)
    return frozenset(out.stdout.split("\n")) - {""} if out.returncode == 0 else frozenset()


def _files(root: Path) -> list[str]:
    """The project's files (POSIX, relative), hidden folders and SKIPPED_FOLDERS left out (not walked)."""
    import os

    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in SKIPPED_FOLDERS)
        relative = Path(folder).relative_to(root)
        found += [(relative / name).as_posix() for name in files]
    return sorted(found)


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def _default_branch(repo: Path) -> str:
    """origin's default branch, else main or master if one exists, else the current branch, else main."""
    remote = _git(repo, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if remote:
        return remote.split("/", 1)[-1]
    for name in ("main", "master"):
        if _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"):
            return name
    return _git(repo, "symbolic-ref", "--quiet", "--short", "HEAD") or "main"
