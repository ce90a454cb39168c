"""``mloop ci init``: a CI/CD workflow for the project (``mloop.automation.ci.write_workflow``)."""

from __future__ import annotations

from pathlib import Path

from mloop.cli.output import console


def init(provider: str, *, force: bool, default_branch: str | None, project: Path | None) -> None:
    from mloop.automation.ci import write_workflow
    from mloop.config import load_project

    written = write_workflow(load_project(project), provider, force=force, default_branch=default_branch)
    plan = written.project
    relative = written.path.relative_to(plan.repo_root)
    console.print(f"wrote {written.path}: test -> train -> gate -> report on pull/merge requests; publish -> deploy "
                  f"on {plan.default_branch}", soft_wrap=True)
    for note in written.notes:
        console.print(f"  note: {note}", soft_wrap=True)
    if not plan.requirements:
        console.print(f"  the jobs install with: {plan.install()} (a requirements.txt in the project replaces it)",
                      soft_wrap=True)
    console.print("set these secrets (CI/CD variables) in the repository's settings:")
    for secret in written.secrets:
        console.print(f"  {secret.name}{'' if secret.required else ' (optional)'}: {secret.what}", soft_wrap=True)
    console.print(f"then: git add {relative} && git commit -m 'mloop CI' && git push", soft_wrap=True)
