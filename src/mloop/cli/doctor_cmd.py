"""``mloop doctor``: the findings of ``project/doctor.py`` as a table; exit 2 while problems remain."""

from __future__ import annotations

from pathlib import Path

from mloop.cli.output import console, styled

STYLE = {"ok": "green", "repaired": "yellow", "problem": "bold red"}


def doctor(*, project: Path | None, repair: bool) -> None:
    import typer

    from mloop.automation.doctor import check_agent
    from mloop.config import load_project
    from mloop.project.doctor import diagnose

    cfg = load_project(project)
    findings = diagnose(cfg, repair=repair, more=(check_agent,))
    for finding in findings:
        console.print(styled((f"{finding.state:<9}", STYLE[finding.state]), f"{finding.check:<16}", finding.detail),
                      soft_wrap=True)
        if finding.fix:
            console.print(f"{'':<25}fix: {finding.fix}", soft_wrap=True)
    problems = sum(f.state == "problem" for f in findings)
    repaired = sum(f.state == "repaired" for f in findings)
    console.print(f"\n{problems} problems" + (f", {repaired} repaired" if repaired else "")
                  + (" (dry run: nothing changed)" if not repair else ""))
    if problems:
        raise typer.Exit(2)
