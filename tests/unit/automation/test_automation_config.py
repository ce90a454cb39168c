"""``[automation]`` in mloop.toml: read whole, and each mistake one line that names the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop.automation.history import parse_moment
from mloop.config import load_project
from mloop.errors import ConfigError


def write(root: Path, text: str) -> Path:
    (root / "mloop.toml").write_text('[project]\nname = "p"\n' + text)
    return root


def test_a_whole_automation_section_is_read(tmp_path: Path):
    cfg = load_project(write(tmp_path, """
[automation]
strategy = "shadow"
canary_steps = [0.05, 0.25, 0.5]
[automation.triggers]
schedule = "0 3 * * *"
timezone = "Europe/Paris"
alerts = ["DataDrift"]
debounce = "30s"
[automation.gate]
alpha = 0.01
inconclusive = "shadow"
rules = [{metric = "accuracy", floor = 0.9, min_improvement = 0.01}]
[automation.infra]
p99_ms = 100
[automation.watch]
interval = "10s"
count = 12
metrics = [{metric = "accuracy", below = 0.9, min_samples = 50}]
"""))
    automation = cfg.settings.automation
    assert automation.strategy == "shadow" and automation.canary_steps == [0.05, 0.25, 0.5]
    assert automation.triggers.schedule == "0 3 * * *" and automation.triggers.debounce_s == 30
    assert automation.gate.effective_rules(cfg.settings.promotion)[0].floor == 0.9
    assert automation.infra.p99_ms == 100 and automation.watch.interval_s == 10
    assert automation.watch.metrics[0].condition == "accuracy < 0.9"


def test_without_a_section_the_gate_is_the_promotion_metric(tmp_path: Path):
    cfg = load_project(write(tmp_path, "[promotion]\nmetric = \"f1\"\nmin_improvement = 0.02\n"))
    [rule] = cfg.settings.automation.gate.effective_rules(cfg.settings.promotion)
    assert (rule.metric, rule.min_improvement) == ("f1", 0.02)


@pytest.mark.parametrize(("text", "said"), [
    ("[automation.gate]\nrules = []\n", "rules"),
    ("[automation]\ncanary_steps = [0.5, 0.1]\n", "rising shares"),
    ("[automation]\nstrategy = \"blue-green\"\n", "strategy"),
    ("[automation.watch]\nmetrics = [{metric = \"accuracy\"}]\n", "exactly one of 'above' or 'below'"),
    ("[automation.triggers]\nschedule = \"61 * * * *\"\ntimezone = \"UTC\"\n", "schedule"),
    ("[automation.triggers]\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Pariss\"\n", "Europe/Paris"),
    ("[automation]\nstartegy = \"swap\"\n", "startegy"),
    ("[automation]\ncanary_steps = [0.1, 0.1]\n", "rising shares"),
    ("[automation]\npoll = \"0s\"\n", "poll such as 5s"),
    ("[automation.watch]\ninterval = \"0s\"\n", "interval such as 10s"),
    ("[automation]\nsnapshot_to = \"../elsewhere.parquet\"\n", "inside the project"),
])
def test_mistakes_are_config_errors_naming_the_key(tmp_path: Path, text: str, said: str):
    with pytest.raises(ConfigError) as caught:
        load_project(write(tmp_path, text))
    assert said in caught.value.message + (caught.value.hint or "")


def test_moments_read_as_iso_times_or_a_while_ago():
    assert parse_moment("now", now=1000.0) == 1000.0
    assert parse_moment("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_moment("2h ago", now=10_000.0) == 10_000.0 - 7200
    assert parse_moment("2026-11-27T10:00:00Z") == 1795773600.0
    with pytest.raises(ConfigError, match="not a moment"):
        parse_moment("yesterday-ish")


@pytest.mark.parametrize(("text", "said"), [
    ("[automation.gate]\nrules = [{metric = \"mae\"}]\n", "'mae' does not fit a binary task"),
    ("[automation.watch]\nmetrics = [{metric = \"rmse\", above = 1}]\n", "'rmse' is not a live score of a binary"),
    ("[automation.gate]\ntest = \"wilcoxon\"\n", "'wilcoxon' does not fit a binary task"),
])
def test_automation_metrics_are_checked_against_the_declared_task(tmp_path: Path, text: str, said: str):
    (tmp_path / "mloop.toml").write_text('[project]\nname = "p"\ntask = "binary"\n' + text)
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert said in caught.value.message


def test_alert_names_no_rule_defines_are_a_warning_with_the_closest_name(tmp_path: Path):
    from mloop.errors import ConfigWarning

    with pytest.warns(ConfigWarning, match=r"no \[\[monitor.alerts\]\] rule is named 'DataDrfit' \(did you mean "
                                           r"'DataDrift'\?\)"):
        cfg = load_project(write(tmp_path, '[automation.triggers]\nalerts = ["DataDrfit"]\n'))
    assert cfg.settings.automation.triggers.alerts == ["DataDrfit"]  # kept: Alertmanager rules may use any name
    with pytest.warns(ConfigWarning, match=r"'NoSuchAlert' \(known: 'Slow'\)"):
        load_project(write(tmp_path, '[[monitor.alerts]]\nname = "Slow"\nmetric = "p99_latency_ms"\nabove = 100\n'
                                     '[automation.triggers]\nalerts = ["NoSuchAlert", "Slow"]\n'))
    load_project(write(tmp_path, '[automation.triggers]\nalerts = ["DataDrift", "HighLatency"]\n'))  # no warning (-W error)


def test_the_cli_prints_a_config_warning_as_one_line(tmp_path: Path):
    import subprocess
    import sys

    write(tmp_path, '[automation.triggers]\nalerts = ["DataDrfit"]\n')
    shown = subprocess.run([sys.executable, "-m", "mloop.cli.main", "agent", "status"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stderr.splitlines() if "DataDrfit" in line]
    assert line.startswith("warning: [automation.triggers] alerts: no [[monitor.alerts]] rule is named 'DataDrfit'")
    assert "ConfigWarning" not in shown.stderr and "config.py" not in shown.stderr
