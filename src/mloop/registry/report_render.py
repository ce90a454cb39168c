"""The candidate report in words: the Markdown a CI job posts on a pull request, and the phrases the terminal
rendering (``mloop models report``) shares with it. Pure functions of a ``CandidateReport``: no MLflow."""

from __future__ import annotations

import math

from mloop.registry.report import CandidateReport, MetricRow

PROMOTION_MARK = "★"


def marker(model: str) -> str:
    """The hidden first line of the Markdown, the same for every report of ``model``: what a CI job looks
    for to update its previous comment instead of posting a new one."""
    return f"<!-- mloop-report: {model} -->"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "undefined"
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"


def signed(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "undefined"
    return "0" if value == 0 else f"{value:+.4f}" if abs(value) < 1e5 else f"{value:+.4g}"


def better_word(row: MetricRow) -> str:
    """Which version the metric favours, in a word; ``-`` where it cannot say (no direction known)."""
    return row.better or "-"


def direction_word(direction: str | None) -> str:
    return {"maximize": "higher is better", "minimize": "lower is better"}.get(direction or "", "")


def title(report: CandidateReport) -> str:
    name = f"{report.model} v{report.candidate}"
    if report.first:
        return f"{name}: the first version (no champion before)"
    return f"{name} vs champion v{report.champion}"


def verdict(report: CandidateReport) -> str:
    """The gate's outcome at registration in one sentence (without the recorded reason), and the champion now
    when another version holds it since."""
    now = report.current_champion
    later = "" if now is None or now == report.candidate else f"; the champion is v{now} now"
    if report.passed and report.promoted and report.first:
        became = "is" if now == report.candidate else "became"
        return f"passed: v{report.candidate} {became} the champion (there was no champion before){later}"
    if report.passed and report.promoted:
        return f"passed: v{report.candidate} replaced v{report.champion} as the champion{later}"
    if report.passed:
        return f"passed the rule; left to the continuous-training agent, which has not promoted it{later}"
    if report.first:
        return f"not promoted: v{report.candidate} is not the champion"
    now = now or report.champion
    kept = (f"kept the champion v{report.champion}" if now == report.champion
            else f"not promoted against v{report.champion} (the champion is v{now} now)")
    return kept


def rule(report: CandidateReport) -> str:
    """The [promotion] rule as configured."""
    margin = f", by at least {report.min_improvement:g}" if report.min_improvement > 0 else ", by any margin"
    return f"{report.metric} ({direction_word(report.direction)}{margin}; [promotion] in mloop.toml)"


def code_version(report: CandidateReport) -> str:
    lineage = report.lineage
    if not lineage.git_commit:
        return "not in a git repository"
    return lineage.git_commit[:12] + (" (dirty: uncommitted changes)" if lineage.git_dirty else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: CandidateReport, *, linked_plots: bool = False) -> str:
    """The report as Markdown, starting with ``marker(model)``. With ``linked_plots`` the plots are images at
    their ``ReportPlot.file`` (relative: as ``save_report`` writes them); otherwise listed by name."""
    out = [marker(report.model), f"## mloop model report: {title(report)}", ""]
    mark = "✅" if report.passed else "⛔"
    out += [f"{mark} **Promotion gate {verdict(report)}.**", "",
            f"> {_cell(report.reason)}", "",
            f"Rule: {rule(report)}."]
    if report.champion_missing:
        out.append(f"Champion v{report.champion} is no longer in the registry: its metrics are not shown.")
    out += ["", "### Metrics", ""]
    if not report.metrics:
        out.append("No metrics recorded.")
    elif report.first or report.champion_missing:
        out += [f"| metric | v{report.candidate} (candidate) | direction |", "|---|---:|---|"]
        out += [f"| {_name(r)} | {number(r.candidate)} | {direction_word(r.direction) or '-'} |" for r in report.metrics]
    else:
        out += [f"| metric | v{report.candidate} (candidate) | v{report.champion} (champion) | delta | better |",
                "|---|---:|---:|---:|---|"]
        out += [f"| {_name(r)} | {number(r.candidate)} | {number(r.champion)} | {signed(r.delta)} | {better_word(r)} |"
                for r in report.metrics]
    if any(r.promotion for r in report.metrics):
        out += ["", f"{PROMOTION_MARK} the promotion metric"
                + ("" if report.first else ", both scored by the gate on the candidate's test set, less rows only one of the two trained on")
                + "; `test_*` are scored by mloop on each version's test set, the others are the pipeline's own."]
    lineage = report.lineage
    out += ["", f"### Lineage of v{report.candidate}", "",
            f"- run: `{lineage.run_id or '-'}`" + (f" (pipeline `{lineage.pipeline}`)" if lineage.pipeline else ""),
            f"- code: {'git `' + code_version(report) + '`' if lineage.git_commit else code_version(report)}"]
    if lineage.inputs:
        out += [f"- data: `{_cell(f.uri)}` sha256 `{f.sha256[:16]}`{dvc_note(f.dvc)}" for f in lineage.inputs]
    elif lineage.data_sha256:
        out += [f"- data sha256: `{digest[:16]}`" for digest in lineage.data_sha256]
    else:
        out.append("- data: no input files recorded")
    if report.plots:
        out += ["", "### Plots", ""]
        if linked_plots:
            out += [f"![{_cell(p.step)}: {_cell(p.name)}]({p.file})" for p in report.plots]
        else:
            out += [f"- {_cell(p.step)}: `{_cell(p.name)}`" for p in report.plots]
            out += ["", "(write them beside the report with `mloop models report --markdown --out DIR`)"]
    return "\n".join(out) + "\n"


def _name(row: MetricRow) -> str:
    return f"**{_cell(row.name)}** {PROMOTION_MARK}" if row.promotion else _cell(row.name)


def dvc_note(version: dict[str, str]) -> str:
    """A data file's DVC version, as a run recorded it ('' when DVC did not track it)."""
    if not version.get("md5"):
        return ""
    where = f"commit {version['commit'][:12]}" if version.get("commit") else version.get("state", "")
    return f", DVC md5 {version['md5'][:12]} ({where})"
