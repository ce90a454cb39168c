"""``mloop ci init``: a CI/CD workflow for the project (``mloop.automation.ci.write_workflow``)."""

from __future__ import annotations

from pathlib import Path

from mloop.cli.output import console


def init(provider: str, *, force: bool, default_branch: str | None, project: Path | None,
         mloop_requirement: str = "") -> None:
    from mloop.automation.ci import write_workflow
    from mloop.config import load_project

    written = write_workflow(load_project(project), provider, force=force, default_branch=default_branch,
                             mloop_requirement=mloop_requirement)
    plan = written.project
    relative = written.path.relative_to(plan.repo_root)
    console.print(f"wrote {written.path}: test -> train -> gate -> report on pull/merge requests; publish -> deploy "
                  f"on {plan.default_branch}", soft_wrap=True)
    for note in written.notes:
        console.print(f"  note: {note}", soft_wrap=True)
    if not plan.requirements:
        console.print(f"  the jobs install with: {plan.install()} (--install SPEC, or a requirements.txt in the "
                      "project, replaces it)", soft_wrap=True)
        if not mloop_requirement and _installed_from_a_folder():
            console.print("  note: this mloop was installed from a folder, not from a package index: give CI a "
                          "requirement it can install, e.g. --install 'mloop @ git+https://github.com/ORG/mloop@REF'",
                          soft_wrap=True)
    console.print("set these secrets (CI/CD variables) in the repository's settings:")
    for secret in written.secrets:
        console.print(f"  {secret.name}{'' if secret.required else ' (optional)'}: {secret.what}", soft_wrap=True)
    console.print(f"then: git add {relative} && git commit -m 'mloop CI' && git push", soft_wrap=True)


def _installed_from_a_folder() -> bool:
    """Whether the running mloop was installed from a local folder or file (PEP 610's direct_url.json)."""
    import json
    from importlib import metadata

    try:
        text = metadata.distribution("mloop").read_text("direct_url.json")
        return bool(text) and str(json.loads(text or "{}").get("url", "")).startswith("file:")
    except (metadata.PackageNotFoundError, ValueError):
        return False
