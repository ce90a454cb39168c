"""The candidate report: a registered version next to the champion the promotion gate compared it with.

What a CI job posts on a pull request and what ``mloop models report`` prints: the gate's decision and
its rule, the metrics of both versions side by side (with which way is better), the candidate's lineage
and the plots its run's steps logged. Gathered here as a ``CandidateReport``; rendered by
``mloop.registry.report_render`` (Markdown) and the CLI (terminal), saved with its plots by ``save_report``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.errors import RegistryError, TrackingError
from mloop.registry.metrics import direction
from mloop.registry.aliases import PROMOTED_AT
from mloop.registry.register import (CANDIDATE_SCORE, CHAMPION, CHAMPION_SCORE, COMPARED_WITH, PROMOTION,
                                     RULE_PASSED)
from mloop.tracking.client import mlflow_client, tracking_error

if TYPE_CHECKING:
    from mloop.bundle.format import BundleInfo
    from mloop.config import ProjectConfig
    from mloop.tracking.queries import InputFile, LoggedFile

_VS_CHAMPION = re.compile(r"vs champion v(\d+)")  # in the reasons of versions registered before the tags


@dataclass(frozen=True)
class MetricRow:
    """One metric of both versions. ``champion`` is None when there is no champion to compare with."""

    name: str
    candidate: float
    champion: float | None = None
    direction: str | None = None  # maximize, minimize, or None for a metric mloop does not know
    promotion: bool = False  # the [promotion] metric, both scored by the gate on the candidate's test set

    @property
    def delta(self) -> float | None:
        """Candidate minus champion."""
        return None if self.champion is None else self.candidate - self.champion

    @property
    def better(self) -> str | None:
        """``candidate``, ``champion`` or ``same``; None without a champion, a direction or a defined score."""
        delta = self.delta
        if delta is None or self.direction is None or math.isnan(delta):
            return None
        if delta == 0:
            return "same"
        return "candidate" if (delta > 0) == (self.direction == "maximize") else "champion"


@dataclass(frozen=True)
class ReportLineage:
    """Where the candidate came from."""

    run_id: str
    pipeline: str = ""
    git_commit: str = ""
    git_dirty: bool | None = None
    inputs: list[InputFile] = field(default_factory=list)  # the run's input files with their sha256
    data_sha256: list[str] = field(default_factory=list)  # as the bundle records them (also without inputs)


@dataclass(frozen=True)
class ReportPlot:
    """An image a step of the candidate's run logged; ``file`` is where ``save_report`` puts it (relative)."""

    step: str
    name: str
    file: str
    logged: LoggedFile


@dataclass
class CandidateReport:
    model: str
    candidate: str  # its version
    champion: str | None  # the version the gate compared it with (None: there was no champion)
    current_champion: str | None  # the champion now
    passed: bool  # the gate's rule passed at registration (recorded on the version; not whether it is champion now)
    reason: str  # the gate's decision, in words
    metric: str  # the [promotion] rule as configured now
    direction: str
    min_improvement: float
    metrics: list[MetricRow]
    lineage: ReportLineage
    plots: list[ReportPlot] = field(default_factory=list)
    champion_missing: bool = False  # the compared champion is no longer in the registry
    promoted: bool = True  # it became the champion (at registration, or later by the agent or by hand)

    @property
    def first(self) -> bool:
        """No champion before: the first version put to the gate."""
        return self.champion is None


def candidate_report(cfg: ProjectConfig, model: str | None = None) -> CandidateReport:
    """The report of the latest tracked run's candidate (``model`` None, or the project's model name), or of
    the version ``NAME/VERSION``.

    Raises RegistryError (with the command to run) when there is no such candidate.
    """
    from mloop.registry.fetch import fetch_bundle_info, model_uri, parse_model_uri, resolve_version
    from mloop.registry.queries import latest_candidate, registered_models

    plain = model is None or not re.search(r"[/@]", model.removeprefix("models:/"))
    if plain:
        name = (model or cfg.model_name).removeprefix("models:/")
        if name != cfg.model_name:
            raise RegistryError(f"the project's runs register {cfg.model_name!r}, not {name!r}",
                                hint=f"name a version: mloop models report {name}/VERSION")
        latest = latest_candidate(cfg)
        summary, run_id = latest.version, latest.run.id
    else:
        uri = model_uri(str(model))
        name, _, _ = parse_model_uri(uri)
        version = resolve_version(cfg, uri)  # RegistryError if it does not exist
        found = [v for m in registered_models(cfg) if m.name == name for v in m.versions if v.version == version]
        if not found:
            raise RegistryError(f"{name} v{version} is not in the registry", hint="list the versions: mloop models")
        summary, run_id = found[0], found[0].run_id
    tags = _version_tags(cfg, name, summary.version)
    compared = tags.get(COMPARED_WITH) or _parsed_champion(summary.promotion)
    info = fetch_bundle_info(cfg, f"models:/{name}/{summary.version}")
    champion_info, missing = None, False
    if compared is not None:
        try:
            champion_info = fetch_bundle_info(cfg, f"models:/{name}/{compared}")
        except RegistryError:
            missing = True  # deleted since: the decision still says what it was compared with
    promotion = cfg.settings.promotion
    current = [v.version for m in registered_models(cfg) if m.name == name for v in m.versions if CHAMPION in v.aliases]
    return CandidateReport(
        model=name, candidate=summary.version, champion=compared, current_champion=current[0] if current else None,
        passed=_rule_passed(tags, summary.aliases), reason=summary.promotion or "no decision recorded",
        metric=promotion.metric, direction=promotion.better, min_improvement=promotion.min_improvement,
        metrics=metric_rows(info, champion_info, promotion.metric, _score(tags.get(CANDIDATE_SCORE)),
                            _score(tags.get(CHAMPION_SCORE))),
        lineage=_lineage(cfg, run_id or info.lineage.run_id, info), plots=_plots(cfg, run_id or info.lineage.run_id),
        champion_missing=missing, promoted=PROMOTED_AT in tags or CHAMPION in summary.aliases)


def rule_outcome(tags: dict[str, str]) -> tuple[bool | None, str]:
    """What a version's tags record of the registration's rule: whether it passed (None: nothing recorded, a
    version registered before the outcome was) and the reason in words ("" when none)."""
    passed = tags.get(RULE_PASSED)
    return (None if passed is None else passed.lower() == "true"), tags.get(PROMOTION, "")


def _rule_passed(tags: dict[str, str], aliases: list[str] | tuple[str, ...]) -> bool:
    """Whether the version passed the gate when it was registered: its recorded outcome (a version registered
    before that was recorded: whether it holds the champion alias)."""
    passed, _ = rule_outcome(tags)
    return CHAMPION in aliases if passed is None else passed


def metric_rows(candidate: BundleInfo, champion: BundleInfo | None, metric: str, gate_candidate: float | None = None,
                gate_champion: float | None = None) -> list[MetricRow]:
    """The metrics both versions have (all the candidate's without a champion): the promotion metric first
    (the gate's scores when recorded: both on the rows of the candidate's test set its decision names; no
    champion score when the champion could not be compared), then mloop's test-set scores
    (``test_*``), then the pipeline's own metrics."""
    ours = version_metrics(candidate)
    theirs = version_metrics(champion) if champion is not None else None
    key = f"test_{metric}"
    rows = []
    if key in ours or gate_candidate is not None:
        value = gate_candidate if gate_candidate is not None else ours[key]
        # the gate's pair, or none: the champion's own test score is on another test set (an incomparable
        # champion's score is not recorded)
        other = gate_champion if gate_candidate is not None else (theirs or {}).get(key)
        rows.append(MetricRow(key, value, other, direction(metric), promotion=True))
    names = sorted((n for n in ours if n != key and (theirs is None or n in theirs)),
                   key=lambda n: (not n.startswith("test_"), n))
    rows += [MetricRow(n, ours[n], None if theirs is None else theirs[n], direction(n)) for n in names]
    return rows


def version_metrics(info: BundleInfo) -> dict[str, float]:
    """A version's metrics as the report compares them: mloop's test-set scores (``test_*``) and the pipeline's own."""
    return {f"test_{k}": float(v) for k, v in info.test_scores.items()} | {k: float(v) for k, v in info.metrics.items()}


def _score(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "None") else None
    except ValueError:
        return None


def _parsed_champion(reason: str) -> str | None:
    match = _VS_CHAMPION.search(reason)
    return match[1] if match else None


def _version_tags(cfg: ProjectConfig, name: str, version: str) -> dict[str, str]:
    client = mlflow_client(cfg)
    try:
        return dict(client.get_model_version(name, version).tags or {})
    except Exception as err:
        raise tracking_error(cfg, err) from err


def _lineage(cfg: ProjectConfig, run_id: str, info: BundleInfo) -> ReportLineage:
    from mloop.tracking.queries import find_run

    recorded = info.lineage
    if not run_id:
        return ReportLineage("", recorded.pipeline, recorded.git_commit, recorded.git_dirty, [], recorded.data_sha256)
    try:
        run = find_run(cfg, run_id)
    except TrackingError:  # the run was deleted: what the bundle recorded
        return ReportLineage(run_id, recorded.pipeline, recorded.git_commit, recorded.git_dirty, [], recorded.data_sha256)
    return ReportLineage(run_id, run.pipeline or recorded.pipeline, run.git_commit or recorded.git_commit,
                         run.git_dirty if run.git_commit else recorded.git_dirty, run.inputs, recorded.data_sha256)


def _plots(cfg: ProjectConfig, run_id: str) -> list[ReportPlot]:
    from mloop.tracking.queries import step_images

    if not run_id:
        return []
    return [ReportPlot(image.step, image.name, f"plots/{_safe(image.step)}/{image.name}", image)
            for image in step_images(cfg, run_id)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "step"


def save_report(cfg: ProjectConfig, report: CandidateReport, folder: Path, filename: str, text: str) -> Path:
    """Write ``text`` as ``folder/filename`` and the report's plots under ``folder`` (at ``ReportPlot.file``,
    where the Markdown links them); the report's path."""
    from mloop._fs import atomic_write_text
    from mloop.tracking.queries import download_logged_file

    folder.mkdir(parents=True, exist_ok=True)
    for plot in report.plots:
        download_logged_file(cfg, plot.logged, folder / plot.file.removesuffix(plot.logged.name))
    path = folder / filename
    atomic_write_text(path, text)
    return path
