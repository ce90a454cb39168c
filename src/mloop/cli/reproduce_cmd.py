"""``mloop reproduce RUN``: a past run again from its commit and data version (``mloop.project.reproduce``)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from mloop.cli.output import console, seconds, styled


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def reproduce(run: str, *, tolerance: float, keep: bool, project: Path | None) -> None:
    from mloop.config import load_project
    from mloop.errors import ReproductionDiffers
    from mloop.project.reproduce import reproduce as run_again

    cfg = load_project(project)
    console.print(f"reproducing run {run} from its commit and data in a temporary worktree ...")
    done = run_again(cfg, run, tolerance=tolerance, keep=keep)
    console.print(f"run {done.run_id[:8]} at commit {done.commit[:12]}, reproduced in {seconds(done.seconds)}")
    for path, source in done.inputs:
        console.print(f"  data {path}: the recorded version, from {source}", soft_wrap=True)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("step", "metric", "recorded", "reproduced", ""):
        table.add_column(column)
    for check in done.metrics:
        same = check.equal(done.tolerance)
        table.add_row(check.step, check.name, _value(check.recorded), _value(check.reproduced),
                      styled(("equal", "green") if same else ("DIFFERS", "bold red")))
    if done.metrics:
        console.print(table)
    else:
        console.print("  the run recorded no step metrics: nothing to compare beyond the steps running")
    for step, error in done.failed_steps.items():
        console.print(styled((f"  step {step} failed: {error}", "red")), soft_wrap=True)
    if done.kept:
        console.print(f"  the worktree is kept: {done.kept}  (remove it with git worktree remove --force, or let "
                      "mloop doctor do it once it is an hour old)", soft_wrap=True)
    for reason in done.reasons:
        console.print(f"  note: {reason}", soft_wrap=True)
    if not done.identical:
        n = len(done.differences)
        what = (f"{n} metric{'s differ' if n != 1 else ' differs'}" if n else "a step failed")
        raise ReproductionDiffers(f"run {done.run_id[:8]} did not reproduce: {what}",
                                  hint=("; ".join(done.reasons) if done.reasons else
                                        "the pipeline is not deterministic: fix its random seeds"))
    console.print(styled(("reproduced: every metric equal", "green")))
