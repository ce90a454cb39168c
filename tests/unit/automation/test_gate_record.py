"""The agent's gate report on a version as it was recorded: from the version's tag, or from the audit log when
the tag was cut short."""

from __future__ import annotations

import json
from pathlib import Path

from mloop.automation.agent import open_audit
from mloop.automation.cycle import AGENT_GATE, AGENT_VERDICT
from mloop.automation.gate import GateReport, HoldoutInfo, MetricCheck, recorded_report
from mloop.config import load_project


def report(version: str, verdict: str = "PASS") -> GateReport:
    return GateReport(verdict, version, "1", HoldoutInfo(100, "ab" * 32, "holdout.csv"),  # type: ignore[arg-type]
                      [MetricCheck("accuracy", "maximize", 0.9, 0.8, 0.1, passed=verdict == "PASS", reason="better")],
                      "mcnemar", 0.05, "hold")


def project(root: Path):
    root.mkdir()
    (root / "mloop.toml").write_text('[project]\nname = "p"\n')
    return load_project(root)


def test_the_report_comes_from_the_versions_tag(tmp_path: Path):
    cfg = project(tmp_path / "p")
    tags = {AGENT_VERDICT: "PASS", AGENT_GATE: json.dumps(report("2").to_dict())}
    assert recorded_report(cfg, "m", "2", tags) == report("2")


def test_a_tag_cut_at_5000_characters_is_read_from_the_audit_log(tmp_path: Path):
    cfg = project(tmp_path / "p")
    audit = open_audit(cfg)
    audit.append("gate", "m", "gate FAIL", version="2", report=report("2", "FAIL").to_dict())  # an earlier gate
    audit.append("gate", "m", "gate PASS", version="3", report=report("3").to_dict())
    audit.append("gate", "m", "gate PASS", version="2", report=report("2").to_dict())  # the latest of v2
    tags = {AGENT_VERDICT: "PASS", AGENT_GATE: json.dumps(report("2").to_dict())[:40]}
    assert recorded_report(cfg, "m", "2", tags) == report("2")
    assert recorded_report(cfg, "other", "2", tags) is None  # another model's records are not its


def test_a_version_the_agent_never_gated_has_no_report(tmp_path: Path):
    assert recorded_report(project(tmp_path / "p"), "m", "2", {"mloop.promotion": "no champion yet"}) is None
