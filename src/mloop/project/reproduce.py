"""``mloop reproduce RUN``: run a past run again from its code commit and data version, and compare.

The run's commit is checked out into a temporary git worktree (the user's working copy is not
touched); its inputs are put there with the exact content the run read (``mloop.data.restore``); the
pipeline runs there in a separate process, untracked and without the cache (a reproduction that
reads the cache proves nothing), with the parameters the run recorded; and each step's metrics are
compared with the recorded ones. What may explain a difference is listed: a working copy with
uncommitted changes at the time of the run, other package versions, other parameters.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.config import ProjectConfig
from mloop.errors import DataVersionError, MloopError


@dataclass(frozen=True)
class MetricCheck:
    step: str
    name: str
    recorded: float | None  # None: not recorded by the run
    reproduced: float | None  # None: not produced by the reproduction

    def equal(self, tolerance: float) -> bool:
        if self.recorded is None or self.reproduced is None:
            return False
        if math.isnan(self.recorded) and math.isnan(self.reproduced):
            return True
        return math.isclose(self.recorded, self.reproduced, rel_tol=max(tolerance, 1e-12), abs_tol=1e-12)


@dataclass
class Reproduction:
    run_id: str
    commit: str
    inputs: list[tuple[str, str]]  # (path, where its recorded content was found)
    metrics: list[MetricCheck]
    tolerance: float
    reasons: list[str] = field(default_factory=list)  # what may explain a difference
    failed_steps: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    kept: str = ""  # the worktree's project folder, when kept (--keep)

    @property
    def differences(self) -> list[MetricCheck]:
        return [m for m in self.metrics if not m.equal(self.tolerance)]

    @property
    def identical(self) -> bool:
        return not self.differences and not self.failed_steps


def reproduce(cfg: ProjectConfig, run_prefix: str, *, tolerance: float = 0.0, keep: bool = False) -> Reproduction:
    """Reproduce the run ``run_prefix`` in a temporary worktree and compare its step metrics."""
    from mloop.data.repo import git
    from mloop.data.restore import RecordedInput, restore_inputs
    from mloop.tracking.lineage import package_versions
    from mloop.tracking.queries import find_run

    started = time.time()
    if not run_prefix.strip():
        raise DataVersionError("no run given", hint="list the runs with: mloop runs")
    run = find_run(cfg, run_prefix.strip())
    if not run.git_commit:
        raise DataVersionError(f"run {run.id[:8]} recorded no git commit: the project was not in a git repository then",
                               hint="only runs of a committed project can be reproduced (mloop data init, git commit)")
    top = Path(git(cfg.root, "rev-parse", "--show-toplevel"))
    if not git(top, "rev-parse", "--verify", "--quiet", f"{run.git_commit}^{{commit}}", check=False):
        raise DataVersionError(f"commit {run.git_commit[:12]} of run {run.id[:8]} is not in this repository",
                               hint="fetch it (git fetch --all) or reproduce from the clone that made the run")
    project = cfg.root.resolve().relative_to(top.resolve())
    reasons = []
    if run.git_dirty:
        reasons.append(f"the working copy had uncommitted changes when run {run.id[:8]} was recorded: the "
                       f"reproduction runs commit {run.git_commit[:12]} as committed")
    now = package_versions()
    changed = [f"{name} {then} -> {now.get(name, 'not installed')}" for name, then in sorted(run.environment.items())
               if name in now and now.get(name) != then]
    if changed:
        reasons.append("other package versions than the run's: " + ", ".join(changed))

    scratch = Path(tempfile.mkdtemp(prefix="reproduce-", dir=cfg.scratch()))
    worktree = scratch / "worktree"
    from mloop._proc import started_at

    (scratch / "owner.json").write_text(json.dumps({"pid": os.getpid(), "started": started_at()}), encoding="utf-8")
    try:
        git(top, "worktree", "add", "--detach", "--quiet", str(worktree), run.git_commit)
        where = worktree / project
        if not (where / "mloop.toml").is_file():
            raise DataVersionError(f"commit {run.git_commit[:12]} has no mloop.toml in {project}")
        recorded = []
        for item in run.inputs:
            dvc = item.dvc or {}
            recorded.append(RecordedInput(path=item.uri, sha256=item.sha256, md5=dvc.get("md5", "")))
        remote = next((i.dvc["remote"] for i in run.inputs if (i.dvc or {}).get("remote")), "")
        restored = restore_inputs(cfg.root, where, recorded, remote)
        lost = [r.path for r in restored if not r.found]
        if lost:
            raise DataVersionError(
                f"the data run {run.id[:8]} read is nowhere to be found: {', '.join(lost)} (not in the commit, the "
                f"DVC cache, the DVC remote nor the working copy with the content it had)",
                hint="track data with DVC and push it (mloop data add PATH; git commit; mloop data push) so runs "
                     "can be reproduced")
        recorded_params = {s.name: s.params for s in run.steps}
        outcome = _run_in(where, scratch / "outcome.json", recorded_params)
    finally:
        if keep:  # the user's now: mloop doctor removes it only once it is old
            (scratch / "owner.json").unlink(missing_ok=True)
        else:
            git(top, "worktree", "remove", "--force", str(worktree), check=False)
            git(top, "worktree", "prune", check=False)
            shutil.rmtree(scratch, ignore_errors=True)

    if outcome["overridden"]:
        reasons.append("parameters that differ from the commit's defaults (set with -p, or changed without a commit), "
                       "applied as the run recorded them: " + ", ".join(outcome["overridden"]))
    if outcome["unmatched"]:
        reasons.append("parameters that could not be set as recorded (shortened in the record): "
                       + ", ".join(outcome["unmatched"]))
    checks = []
    reproduced_steps: dict[str, Any] = outcome["steps"]
    for step in run.steps:
        new = reproduced_steps.get(step.name, {}).get("metrics", {})
        for name in sorted(set(step.metrics) | set(new)):
            checks.append(MetricCheck(step.name, name, step.metrics.get(name), new.get(name)))
    failed = {name: s["error"] for name, s in reproduced_steps.items() if s["state"] == "failed"}
    return Reproduction(run_id=run.id, commit=run.git_commit, inputs=[(r.path, r.source) for r in restored],
                        metrics=checks, tolerance=tolerance, reasons=reasons, failed_steps=failed,
                        seconds=time.time() - started, kept=str(where) if keep else "")


def _run_in(project: Path, out: Path, recorded_params: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Run the project at ``project`` in a child process (``main`` below) and read what it wrote."""
    args = [sys.executable, "-m", "mloop.project.reproduce", str(project), str(out)]
    spec = out.with_name("params.json")
    spec.write_text(json.dumps(recorded_params), encoding="utf-8")
    env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    from mloop._proc import die_with_parent

    child = subprocess.Popen([*args, str(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             cwd=project, preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl, before exec
    try:
        stdout, stderr = child.communicate()
    except BaseException:  # Ctrl-C or SIGTERM: the child stops its workers (its own handler), then the worktree goes
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    if child.returncode != 0 or not out.is_file():
        said = (stderr.strip() or stdout.strip()).splitlines()[-5:]
        raise MloopError("the reproduction could not run the pipeline: " + " | ".join(said),
                         hint="run it yourself with --keep to look at the worktree")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def _run_recorded(project: Path, out: Path, spec: Path) -> None:
    """In the child process: the pipeline with the recorded parameters, untracked and uncached."""
    from mloop.config import load_project
    from mloop.project.load import load_pipeline
    from mloop.project.run import merged_params, run_project
    from mloop.tracking.client import short

    recorded: dict[str, dict[str, str]] = json.loads(spec.read_text(encoding="utf-8"))
    cfg = load_project(project)
    pipe = load_pipeline(cfg)
    graph = pipe.build(merged_params(cfg, None))
    overrides: dict[str, dict[str, Any]] = {}
    overridden, unmatched = [], []
    for node in graph:
        for name, value in recorded.get(node.name, {}).items():
            if name not in node.params or short(node.params[name]) == value:
                continue
            if value.endswith("...") and len(value) >= 5997:
                unmatched.append(f"{node.name}.{name}")
                continue
            overrides.setdefault(node.name, {})[name] = value
            overridden.append(f"{node.name}.{name}={value}")
    result = run_project(cfg, pipe=pipe, params=overrides, track=False, use_cache=False).result
    steps = {name: {"state": r.state, "metrics": r.metrics, "error": r.error} for name, r in result.steps.items()}
    out.write_text(json.dumps({"steps": steps, "overridden": overridden, "unmatched": unmatched}), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    project, out, spec = (Path(a) for a in (argv or sys.argv[1:]))
    _run_recorded(project, out, spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
