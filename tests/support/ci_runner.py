"""Run a generated CI workflow's jobs locally, as the provider would: each job in a fresh clone of the
repository at one fixed path (MLflow's SQLite store records absolute paths, and a CI provider checks out
every job at the same place), artifacts and caches carried between jobs by their declared paths only.

What needs the cloud (docker, the GitHub or GitLab API, a cluster) is not run: it is recorded, for the
test to check its command line. So are the ``pip install`` commands (the venv is already there).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CLOUD = ("gh api", "kubectl", "docker ", "curl ", "KUBECONFIG")


def is_cloud(command: str) -> bool:
    return any(word in command for word in CLOUD)


def is_install(command: str) -> bool:
    return command.lstrip().startswith("python -m pip install")


def missing_commands(env: dict[str, str]) -> list[str]:
    """The mloop commands the workflow uses that this mloop does not have yet."""
    missing = []
    for command in (["data", "pull"], ["models", "report"]):
        done = subprocess.run([str(BIN / "mloop"), *command, "--help"], capture_output=True, text=True, env=env,
                              timeout=120)
        if done.returncode != 0:
            missing.append("mloop " + " ".join(command))
    return missing


def topological(jobs: dict[str, Any], names: list[str]) -> list[str]:
    """``names`` in an order where every job comes after the jobs it needs."""
    order: list[str] = []

    def needs(name: str) -> list[str]:
        found = jobs[name].get("needs", [])
        return [n if isinstance(n, str) else n["job"] for n in ([found] if isinstance(found, str) else found)]

    def visit(name: str) -> None:
        if name in order:
            return
        for needed in needs(name):
            visit(needed)
        order.append(name)

    for name in names:
        visit(name)
    return order


@dataclass
class Simulation:
    origin: Path  # the repository the workflow is in (committed)
    workspace: Path  # where every job is checked out
    env: dict[str, str]
    missing: list[str]
    artifacts: dict[str, Path] = field(default_factory=dict)
    caches: dict[str, Path] = field(default_factory=dict)
    ran: list[tuple[str, str]] = field(default_factory=list)  # (job, command)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (job, command): install, cloud, missing
    output: dict[str, str] = field(default_factory=dict)  # job -> what its commands printed
    current: str = ""  # the job checked out at the workspace

    def after(self, job: str) -> Path:
        """The workspace as ``job`` left it."""
        return self.workspace if job == self.current else self.workspace.parent / f"after-{job}"

    @property
    def store(self) -> Path:
        return self.workspace.parent / "store"

    def checkout(self, job: str) -> None:
        """A fresh clone at the workspace; the previous job's workspace is kept beside it for the test."""
        if self.workspace.exists():
            kept = self.workspace.parent / f"after-{self.current}"
            if kept.exists():
                shutil.rmtree(kept)
            self.workspace.rename(kept)
        self.current = job
        subprocess.run(["git", "clone", "--quiet", str(self.origin), str(self.workspace)], check=True, timeout=60)

    def bash(self, job: str, script: str, cwd: Path, env: dict[str, str]) -> None:
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                              capture_output=True, text=True, env={**self.env, **env}, timeout=600)
        self.output[job] = self.output.get(job, "") + done.stdout + done.stderr
        assert done.returncode == 0, f"job {job}: {script!r} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    def run_or_skip(self, job: str, command: str) -> bool:
        """Whether ``command`` is to be run here (else it is recorded as skipped)."""
        if is_install(command) or is_cloud(command) or any(command.strip().startswith(m) for m in self.missing):
            self.skipped.append((job, command))
            return False
        self.ran.append((job, command))
        return True

    # --- files carried between jobs ---

    def save(self, name: str, root: Path, include: list[str], exclude: list[str], *, hidden: bool = True,
             required: bool = True) -> None:
        """Copy the files under ``root`` (workspace-relative patterns ``include`` minus ``exclude``) to ``name``."""
        target = self.store / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        count = 0
        for path in sorted(self.workspace.rglob("*")):
            relative = path.relative_to(self.workspace).as_posix()
            if not path.is_file() or relative.startswith(".git/"):
                continue
            if not any(_matches(relative, p) for p in include) or any(_matches(relative, p) for p in exclude):
                continue
            if not hidden and any(part.startswith(".") for part in Path(relative).parts):
                continue
            copy = target / path.relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            count += 1
        self.artifacts[name] = target
        assert count or not required, f"{name}: no file matched {include}"

    def restore(self, name: str, into: Path) -> None:
        assert name in self.artifacts, f"{name} was never saved"
        shutil.copytree(self.artifacts[name], into, dirs_exist_ok=True)


def _matches(relative: str, pattern: str) -> bool:
    pattern = pattern.rstrip("/")
    return (relative == pattern or relative.startswith(pattern + "/") or fnmatch.fnmatch(relative, pattern)
            or fnmatch.fnmatch(relative, pattern.replace("/**/*", "/*")))


def _lca(paths: list[str]) -> str:
    """The deepest folder holding every path (what upload-artifact makes the artifact's root): a folder
    uploaded alone is the root itself."""
    folders = [Path(p).parent.parts if "*" in p else Path(p).parts for p in paths]
    common: list[str] = []
    for level in zip(*folders):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common) or "."


def run_github(sim: Simulation, workflow: dict[str, Any], jobs: list[str]) -> None:
    """Run ``jobs`` of a GitHub Actions workflow (and the jobs they need) in order, as a pull request would."""
    all_jobs = workflow["jobs"]
    top_env = {k: "" for k in workflow.get("env", {})}  # secrets not set: the expressions are empty
    for name in topological(all_jobs, jobs):
        job = all_jobs[name]
        sim.checkout(name)
        defaults = {**workflow.get("defaults", {}).get("run", {}), **job.get("defaults", {}).get("run", {})}
        job_env: dict[str, str] = {**top_env, "GITHUB_REPOSITORY": "Owner/Repo", "GITHUB_SHA": "0123abc",
                                   "RUNNER_TEMP": str(sim.workspace.parent / "runner-temp")}
        caches: list[tuple[str, list[str]]] = []
        for step in job["steps"]:
            uses = step.get("uses", "")
            inputs = step.get("with", {})
            if uses.startswith(("actions/checkout@", "actions/setup-python@")):
                continue  # checked out above; the venv is this Python
            if uses.startswith("actions/cache@"):
                paths = inputs["path"].splitlines()
                key = inputs["key"]
                hit = key if key in sim.caches else next((k for k in sim.caches if k.startswith(inputs["restore-keys"])), None)
                if hit:
                    shutil.copytree(sim.caches[hit], sim.workspace, dirs_exist_ok=True)
                caches.append((key, paths))
            elif uses.startswith("actions/upload-artifact@"):
                lines = inputs["path"].splitlines()
                include = [p for p in lines if not p.startswith("!")]
                exclude = [p[1:] for p in lines if p.startswith("!")]
                sim.save(inputs["name"], sim.workspace / _lca(include), include, exclude,
                         hidden=bool(inputs.get("include-hidden-files")),
                         required=inputs.get("if-no-files-found") == "error")
            elif uses.startswith("actions/download-artifact@"):
                sim.restore(inputs["name"], sim.workspace / inputs.get("path", "."))
            elif uses:
                sim.skipped.append((name, uses))  # docker login, build and push: the cloud's
            else:
                command = step["run"]
                if not sim.run_or_skip(name, command):
                    continue
                cwd = sim.workspace / step.get("working-directory", defaults.get("working-directory", "."))
                env_file = sim.workspace.parent / "github-env"
                env_file.write_text("")
                sim.bash(name, command, cwd, {**job_env, **{k: "" for k in step.get("env", {})},
                                              "GITHUB_ENV": str(env_file)})
                for line in env_file.read_text().splitlines():  # what a step set for the next ones
                    key, _, value = line.partition("=")
                    job_env[key] = value
        for key, paths in caches:  # actions/cache saves in its post step, unless its key was a hit (immutable)
            if key in sim.caches:
                continue
            target = sim.store / f"cache-{len(sim.caches)}"
            target.mkdir(parents=True)
            for path in paths:
                if (sim.workspace / path).exists():
                    shutil.copytree(sim.workspace / path, target / path)
            sim.caches[key] = target


def _gitlab_job(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    return {**workflow.get("default", {}), **workflow[name]}


def run_gitlab(sim: Simulation, workflow: dict[str, Any], jobs: list[str]) -> None:
    """Run ``jobs`` of a GitLab CI pipeline (and the jobs they need) in order, as a merge request would."""
    variables = {"CI_PROJECT_DIR": str(sim.workspace), "CI_REGISTRY_IMAGE": "registry.example.com/group/repo",
                 "CI_COMMIT_SHA": "0123abc"}
    all_jobs = {name: _gitlab_job(workflow, name) for name in workflow if name not in
                ("workflow", "stages", "variables", "default", "include")}
    for name in topological(all_jobs, jobs):
        job = all_jobs[name]
        sim.checkout(name)
        for needed in job.get("needs", []):
            needed_name, wanted = (needed, True) if isinstance(needed, str) else (needed["job"], needed.get("artifacts", True))
            if wanted and f"job-{needed_name}" in sim.artifacts:
                sim.restore(f"job-{needed_name}", sim.workspace)
        caches = job.get("cache", [])
        for cache in caches:
            key = repr(cache["key"])
            if key in sim.caches:
                shutil.copytree(sim.caches[key], sim.workspace, dirs_exist_ok=True)
        kept = [c for c in [*job.get("before_script", []), *job["script"]]
                if c.startswith("cd ") or sim.run_or_skip(name, c)]
        env = {**{k: re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), ""), v)
                  for k, v in {**workflow.get("variables", {}), **job.get("variables", {})}.items()}, **variables}
        if any(not c.startswith("cd ") for c in kept):
            sim.bash(name, "\n".join(kept), sim.workspace, env)
        artifacts = job.get("artifacts")
        if artifacts:
            # GitLab warns, and goes on, when no file matches
            sim.save(f"job-{name}", sim.workspace, artifacts["paths"], artifacts.get("exclude", []), required=False)
        for cache in caches:  # GitLab uploads a job's caches every time (policy pull-push)
            key = repr(cache["key"])
            target = sim.caches.get(key, sim.store / f"cache-{len(sim.caches)}")
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for path in cache["paths"]:
                if (sim.workspace / path).exists():
                    shutil.copytree(sim.workspace / path, target / path)
            sim.caches[key] = target


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The jobs' environment: this venv first on PATH, this checkout of mloop importable, no MLOOP_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOOP_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")  # this checkout's mloop
    return {**env, **(extra or {})}
