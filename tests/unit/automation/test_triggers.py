"""The agent's triggers: coalescing with an injected clock, cron in a time zone, webhook payloads, and the
watchers that need no tracking store (the registry and DVC ones are in tests/integration/test_agent_triggers.py)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from mloop.automation.triggers import (
    DAY_S,
    Coalescer,
    Schedule,
    Trigger,
    alert_triggers,
    data_key,
    manual_trigger,
    version_key,
)
from mloop.automation.watchers import DataWatcher, ScheduleWatcher
from mloop.config import ProjectConfig, TriggerSection, parse_settings
from mloop.errors import ConfigError
from mloop.monitor.alerts import AlertEvent, webhook_payload

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()  # a Monday, 13:00 in Paris


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def trigger(key: str, at: float, kind: str = "data") -> Trigger:
    return Trigger(kind, f"{kind} {key}", at, key, {"n": key})  # type: ignore[arg-type]


def alertmanager_payload(alerts: list[dict], status: str = "firing") -> dict:
    """Alertmanager's webhook body (version 4) as its documentation gives it."""
    return {
        "version": "4", "groupKey": "{}:{alertname=\"DataDrift\"}", "truncatedAlerts": 0, "status": status,
        "receiver": "mloop-agent", "groupLabels": {"alertname": "DataDrift"},
        "commonLabels": {"alertname": "DataDrift", "model": "breast_cancer"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts,
    }


def am_alert(name: str, fingerprint: str, starts: str = "2026-03-02T11:59:00Z", status: str = "firing",
             model: str = "breast_cancer") -> dict:
    return {"status": status, "labels": {"alertname": name, "model": model, "severity": "warning",
                                         "instance": "127.0.0.1:8080", "job": "mloop"},
            "annotations": {"summary": f"{name} on {model}"}, "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-02T12:10:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=...", "fingerprint": fingerprint}


# --------------------------------------------------------------------------------------- coalescing


def test_a_burst_of_100_alerts_in_10_seconds_is_one_cycle_listing_them_all_due_10_s_after_the_last():
    coalescer = Coalescer(debounce_s=10)
    outcomes = []
    for batch in range(10):  # ten webhook deliveries of ten distinct alerts, one a second
        now = T0 + batch
        payload = alertmanager_payload([am_alert("DataDrift", f"fp{batch:02d}{i}") for i in range(10)])
        outcomes += [coalescer.offer(t, now).outcome for t in alert_triggers(payload, None, now=now)]
    last = T0 + 9
    assert outcomes == ["new"] + ["merged"] * 99
    pending = coalescer.pending
    assert pending is not None and len(pending.triggers) == 100 and len({t.key for t in pending.triggers}) == 100
    assert coalescer.next_due(last) == last + 10
    assert coalescer.take(last + 9.9) is None and "debounce 1 s left" in coalescer.why_waiting(last + 9.5)
    taken = coalescer.take(last + 10)
    assert taken is not None and len(taken) == 100 and coalescer.pending is None
    assert coalescer.take(last + 11) is None  # one cycle, not two


def test_each_trigger_absorbed_restarts_the_debounce_and_duplicates_do_not():
    coalescer = Coalescer(debounce_s=10)
    coalescer.offer(trigger("a", T0), T0)
    coalescer.offer(trigger("b", T0 + 8), T0 + 8)
    assert coalescer.next_due(T0 + 8) == T0 + 18
    again = coalescer.offer(trigger("b", T0 + 9), T0 + 9)  # Alertmanager's repeat of the same alert
    assert again.outcome == "duplicate" and "pending" in again.why
    assert coalescer.next_due(T0 + 9) == T0 + 18


def test_the_newest_trigger_is_the_primary_and_comes_first():
    coalescer = Coalescer(debounce_s=0)
    coalescer.offer(trigger("old", T0), T0)
    coalescer.offer(trigger("new", T0 + 5, "alert"), T0 + 5)
    coalescer.offer(trigger("late-arriving", T0 + 3, "registry"), T0 + 6)  # seen last, happened before "new"
    pending = coalescer.pending
    assert pending is not None and pending.primary.key == "new"
    assert [t.key for t in coalescer.take(T0 + 6) or []] == ["new", "old", "late-arriving"]


def test_at_most_one_running_and_one_pending_cycle():
    coalescer = Coalescer(debounce_s=2)
    coalescer.offer(trigger("a", T0), T0)
    assert [t.key for t in coalescer.take(T0 + 2) or []] == ["a"]
    coalescer.started("c1", T0 + 2)
    for i in range(5):  # triggers while c1 runs all join one pending cycle
        offer = coalescer.offer(trigger(f"b{i}", T0 + 3 + i), T0 + 3 + i)
        assert offer.outcome == ("new" if i == 0 else "merged")
    assert coalescer.offer(trigger("a", T0 + 9), T0 + 9).why == "already in the running cycle c1"
    assert coalescer.take(T0 + 100) is None and coalescer.next_due(T0 + 100) is None  # c1 still runs
    assert coalescer.why_waiting(T0 + 100).startswith("cycle c1 running since 12:00:02 UTC; 5 trigger(s) wait")
    with pytest.raises(ValueError, match="one at a time"):
        coalescer.started("c2", T0 + 100)
    coalescer.finished("c1", T0 + 100)
    taken = coalescer.take(T0 + 100)
    assert taken is not None and sorted(t.key for t in taken) == [f"b{i}" for i in range(5)]
    coalescer.started("c2", T0 + 100)
    assert coalescer.running is not None and coalescer.running.cycle_id == "c2"
    with pytest.raises(ValueError, match="running cycle is 'c2'"):
        coalescer.finished("c1", T0 + 101)


def test_started_needs_a_taken_cycle():
    with pytest.raises(ValueError, match="call take"):
        Coalescer().started("c1", T0)


def test_cooldown_counts_from_the_end_of_the_last_cycle():
    coalescer = Coalescer(debounce_s=1, cooldown_s=600, timezone="Europe/Paris")
    coalescer.offer(trigger("a", T0), T0)
    coalescer.take(T0 + 1)
    coalescer.started("c1", T0 + 1)
    coalescer.finished("c1", T0 + 120)
    coalescer.offer(trigger("b", T0 + 130), T0 + 130)
    assert coalescer.next_due(T0 + 131) == T0 + 720
    assert coalescer.why_waiting(T0 + 131) == "cooldown until 13:12:00 CET"
    assert coalescer.take(T0 + 719) is None
    assert [t.key for t in coalescer.take(T0 + 720) or []] == ["b"]


def test_daily_cap_holds_the_next_cycle_until_24_hours_after_the_oldest_and_says_so():
    coalescer = Coalescer(debounce_s=0, max_cycles_per_day=2)
    for i, now in enumerate((T0, T0 + 3600)):
        coalescer.offer(trigger(f"k{i}", now), now)
        coalescer.take(now)
        coalescer.started(f"c{i}", now)
        coalescer.finished(f"c{i}", now + 60)
    coalescer.offer(trigger("k2", T0 + 7200), T0 + 7200)
    assert coalescer.take(T0 + 7200) is None
    assert coalescer.next_due(T0 + 7200) == T0 + DAY_S
    assert coalescer.why_waiting(T0 + 7200) == "daily cap 2 reached, next at 2026-03-03 12:00:00 UTC"
    assert coalescer.take(T0 + DAY_S - 1) is None
    assert coalescer.take(T0 + DAY_S) is not None  # a rolling 24 hours: the first start has left the window


def test_a_manual_trigger_skips_debounce_cooldown_and_cap_but_waits_for_the_running_cycle():
    coalescer = Coalescer(debounce_s=60, cooldown_s=3600, max_cycles_per_day=1)
    coalescer.offer(trigger("a", T0), T0)
    coalescer.take(T0 + 60)
    coalescer.started("c1", T0 + 60)
    coalescer.offer(manual_trigger("retrain now", T0 + 70, by="ana"), T0 + 70)
    assert coalescer.take(T0 + 70) is None  # c1 runs
    coalescer.finished("c1", T0 + 80)
    coalescer.offer(trigger("b", T0 + 80), T0 + 80)  # automatic triggers ride along with the manual one
    assert coalescer.why_waiting(T0 + 80) == "due now (manual)" and coalescer.next_due(T0 + 80) == T0 + 80
    taken = coalescer.take(T0 + 80)  # no debounce, no cooldown, and the cap of 1 is used up
    assert taken is not None and [t.kind for t in taken] == ["data", "manual"]  # the newest is the primary
    assert taken[1].detail == {"by": "ana"}
    coalescer.started("c2", T0 + 80)
    coalescer.finished("c2", T0 + 90)
    coalescer.offer(trigger("c", T0 + 4000), T0 + 4000)  # the manual cycle did not count against the cap:
    assert coalescer.next_due(T0 + 4000) == T0 + DAY_S + 60  # only c1 did


def test_the_agents_own_keys_never_start_a_cycle_and_are_withdrawn_when_seen_first():
    coalescer = Coalescer(debounce_s=5)
    coalescer.own(version_key("m", 7))
    offer = coalescer.offer(trigger(version_key("m", 7), T0, "registry"), T0)
    assert offer.outcome == "own" and not offer.accepted and coalescer.pending is None
    coalescer.offer(trigger(data_key("abc"), T0, "data"), T0)  # the watcher saw the snapshot first
    coalescer.offer(trigger("alert:x", T0 + 1, "alert"), T0 + 1)
    coalescer.own(data_key("abc"))
    pending = coalescer.pending
    assert pending is not None and [t.key for t in pending.triggers] == ["alert:x"]
    coalescer.own("alert:x")
    assert coalescer.pending is None and coalescer.is_own("alert:x")


def test_a_key_handled_by_a_cycle_is_a_duplicate_for_24_hours():
    coalescer = Coalescer(debounce_s=0)
    coalescer.offer(trigger("alert:fp@t", T0, "alert"), T0)
    coalescer.take(T0)
    coalescer.started("c1", T0)
    coalescer.finished("c1", T0 + 10)
    repeat = coalescer.offer(trigger("alert:fp@t", T0 + 4 * 3600, "alert"), T0 + 4 * 3600)
    assert repeat.outcome == "duplicate" and repeat.why.startswith("already handled by cycle c1 (ended 12:00:10")
    assert coalescer.offer(trigger("alert:fp@t", T0 + DAY_S + 11, "alert"), T0 + DAY_S + 11).outcome == "new"


def test_state_survives_a_restart_mid_debounce_as_json():
    section = TriggerSection(debounce="10s", cooldown="1m", max_cycles_per_day=3)
    coalescer = Coalescer.from_section(section)
    coalescer.offer(trigger("a", T0), T0)
    coalescer.take(T0 + 10)
    coalescer.started("c1", T0 + 10)
    coalescer.finished("c1", T0 + 20)
    coalescer.own(data_key("mine"))
    coalescer.offer(trigger("b", T0 + 30), T0 + 30)
    coalescer.offer(trigger("c", T0 + 34), T0 + 34)
    saved = json.loads(json.dumps(coalescer.to_dict()))
    back = Coalescer.from_dict(copy.deepcopy(saved), section)
    assert back.to_dict() == saved
    assert back.pending == coalescer.pending and back.next_due(T0 + 35) == coalescer.next_due(T0 + 35) == T0 + 80
    assert back.why_waiting(T0 + 36) == "debounce 8 s left; cooldown until 12:01:20 UTC"
    assert back.offer(trigger("a", T0 + 36), T0 + 36).outcome == "duplicate"  # handled by c1
    assert back.offer(trigger(data_key("mine"), T0 + 36), T0 + 36).outcome == "own"
    assert [t.key for t in back.take(T0 + 80) or []] == ["c", "b"]
    back.started("c2", T0 + 80)
    running = Coalescer.from_dict(json.loads(json.dumps(back.to_dict())), section)
    assert running.running == back.running and running.running is not None
    with pytest.raises(ValueError, match="version"):
        Coalescer.from_dict({"version": 99}, section)
    with pytest.raises(ValueError, match="malformed"):
        Coalescer.from_dict({"version": 1, "pending": []}, section)


def test_a_trigger_round_trips_and_a_wrong_kind_is_named():
    made = Trigger("alert", "alert DataDrift firing", T0, "alert:1@x", {"alert": "DataDrift"})
    assert Trigger.from_dict(json.loads(json.dumps(made.to_dict()))) == made
    with pytest.raises(ValueError, match="'retrain' is not one of alert, schedule, data, registry, manual"):
        Trigger.from_dict({**made.to_dict(), "kind": "retrain"})
    with pytest.raises(ValueError, match="'key' is missing"):
        Trigger.from_dict({"kind": "data", "reason": "", "at": 0})


# ----------------------------------------------------------------------------------------- schedule


def test_cron_in_paris_gives_the_right_utc_instants_across_both_changes_of_the_clocks():
    morning = Schedule("0 9 * * *", "Europe/Paris")
    start = datetime(2026, 3, 27, 12, tzinfo=UTC).timestamp()
    runs = [start := morning.next_after(start) for _ in range(4)]
    assert [utc(t) for t in runs] == ["2026-03-28 08:00", "2026-03-29 07:00", "2026-03-30 07:00", "2026-03-31 07:00"]
    start = datetime(2026, 10, 24, 12, tzinfo=UTC).timestamp()
    assert utc(morning.next_after(start)) == "2026-10-25 08:00"

    night = Schedule("30 2 * * *", "Europe/Paris")  # 02:30 does not exist on 29 March, happens twice on 25 October
    start = datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp()
    assert utc(night.next_after(start)) == "2026-03-29 01:00"  # as the clocks jump to 03:00 CEST
    start = datetime(2026, 10, 24, 12, tzinfo=UTC).timestamp()
    runs = [start := night.next_after(start) for _ in range(2)]
    assert [utc(t) for t in runs] == ["2026-10-25 00:30", "2026-10-26 01:30"]  # once on the long night

    every_half_hour = Schedule("*/30 * * * *", "Europe/Paris")  # runs by the real clock, both passes of 02:xx
    start = datetime(2026, 10, 25, 0, 15, tzinfo=UTC).timestamp()
    runs = [start := every_half_hour.next_after(start) for _ in range(3)]
    assert [utc(t) for t in runs] == ["2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30"]
    assert night.latest_at_or_before(datetime(2026, 10, 25, 3, tzinfo=UTC).timestamp()) == runs[0]


def test_missed_runs_are_one_catch_up_at_the_latest_and_none_when_nothing_was_due():
    hourly = Schedule("0 * * * *", "UTC")
    assert hourly.due_between(T0 + 1, T0 + 3599) == []
    assert hourly.due_between(T0 - 1, T0) == [T0]  # an instant at the end of the interval counts
    assert hourly.due_between(T0, T0 + 1) == []  # ... at the start it does not (it was handled then)
    assert hourly.due_between(T0, T0 + 30 * DAY_S + 10) == [T0 + 30 * DAY_S]  # a month down: one catch-up


def test_schedule_watcher_records_first_then_reports_due_runs_and_one_catch_up():
    watcher = ScheduleWatcher(Schedule("0 3 * * *", "Europe/Paris"))
    assert watcher.poll(T0) == [] and watcher.next_at(T0) == datetime(2026, 3, 3, 2, tzinfo=UTC).timestamp()
    due = watcher.next_at(T0)
    assert watcher.poll(due - 1) == []
    [on_time] = watcher.poll(due + 2)
    assert on_time.kind == "schedule" and on_time.key == "schedule:2026-03-03T02:00:00Z"
    assert on_time.detail["due_local"] == "2026-03-03T03:00:00+01:00" and on_time.detail["late"] == "false"
    restarted = ScheduleWatcher(Schedule("0 3 * * *", "Europe/Paris"), state=watcher.to_dict())
    [late] = restarted.poll(due + 5 * DAY_S + 3600)  # down five days
    assert late.key == "schedule:2026-03-08T02:00:00Z" and "caught up" in late.reason


@pytest.mark.parametrize(("expr", "tz", "message"), [
    ("61 * * * *", "UTC", "is not a cron schedule (.*out of range.*): write minute hour day-of-month month day-of-week"),
    ("0 3 * *", "UTC", "has 4 field\\(s\\): a cron schedule has five"),
    ("0 3 * * * *", "UTC", "has 6 field\\(s\\)"),
    ("0 0 30 2 *", "UTC", "never comes"),
    ("@reboot", "UTC", "one of @hourly, @daily"),
    ("0 3 * * *", "Europe/Pari", "'Europe/Pari' is not a time zone; did you mean 'Europe/Paris'"),
])
def test_an_invalid_cron_or_zone_is_a_config_error_with_the_fix(expr, tz, message):
    with pytest.raises(ConfigError, match=message) as raised:
        Schedule(expr, tz)
    assert raised.value.hint == "fix schedule or timezone in [automation] of mloop.toml"
    with pytest.raises(ValidationError, match=message):
        TriggerSection(schedule=expr, timezone=tz)


def test_trigger_settings_defaults_and_a_schedule_needs_an_explicit_zone():
    section = TriggerSection()
    assert (section.alerts, section.schedule, section.timezone, section.data, section.registry) == (None, "", "UTC",
                                                                                                    True, True)
    assert (section.debounce_s, section.cooldown_s, section.max_cycles_per_day) == (10, 0, 24)
    assert TriggerSection(schedule=" 0  3 * * mon-fri ", timezone="UTC").schedule == "0 3 * * mon-fri"
    with pytest.raises(ValidationError, match='needs an explicit time zone: add timezone = "UTC"'):
        TriggerSection(schedule="0 3 * * *")
    for bad, message in [({"debounce": "10"}, "expected a duration"), ({"max_cycles_per_day": 0}, "greater than"),
                         ({"alerts": [""]}, "must not be empty"), ({"cron": "x"}, "Extra inputs")]:
        with pytest.raises(ValidationError, match=message):
            TriggerSection(**bad)


# ------------------------------------------------------------------------------------------- alerts


def test_alertmanager_payload_firing_alerts_become_triggers_resolved_are_ignored():
    payload = alertmanager_payload([am_alert("DataDrift", "5f1a2b"), am_alert("HighLatency", "9c8d", status="resolved")])
    [made] = alert_triggers(payload, None, now=T0)
    assert made.kind == "alert" and made.at == T0 and made.key == "alert:5f1a2b@2026-03-02T11:59:00Z"
    assert made.reason == "alert DataDrift firing on breast_cancer: DataDrift on breast_cancer"
    assert made.detail["source"] == "alertmanager" and made.detail["severity"] == "warning"
    assert alert_triggers(payload, None, now=T0 + 60)[0].key == made.key  # a repeat delivery: the same key
    refired = alertmanager_payload([am_alert("DataDrift", "5f1a2b", starts="2026-03-02T15:00:00Z")])
    assert alert_triggers(refired, None, now=T0)[0].key != made.key  # fired again later: a new trigger


def test_names_filter_and_model_filter():
    payload = alertmanager_payload([am_alert("DataDrift", "a"), am_alert("LowAccuracy", "b"),
                                    am_alert("DataDrift", "c", model="other")])
    assert len(alert_triggers(payload, None, now=T0)) == 3
    assert [t.detail["fingerprint"] for t in alert_triggers(payload, ["LowAccuracy"], now=T0)] == ["b"]
    assert alert_triggers(payload, [], now=T0) == []
    assert [t.detail["fingerprint"] for t in alert_triggers(payload, None, model="breast_cancer", now=T0)] == ["a", "b"]


def test_mloops_own_webhook_payload_and_alert_events_are_understood():
    event = AlertEvent(ts=T0, alert="DataDrift", status="firing", model="breast_cancer", severity="warning",
                       summary="more than 30% of the features drifted", started=T0 - 300,
                       metric="drifted_features_share", value=0.45, op=">", threshold=0.3)
    posted = json.loads(json.dumps(webhook_payload([event]), default=str))  # what mloop's webhooks POST
    [made] = alert_triggers(posted, ["DataDrift"], model="breast_cancer", now=T0)
    assert made.detail["source"] == "mloop" and made.key.endswith("@2026-03-02T11:55:00Z")
    assert made.reason == "alert DataDrift firing on breast_cancer: more than 30% of the features drifted"
    [from_log] = alert_triggers(json.loads(event.to_json()), None, now=T0)  # a line of alerts.jsonl
    assert from_log.detail["value"] == "0.45" and from_log.detail["threshold"] == ">0.3"
    assert from_log.key.endswith("@2026-03-02T11:55:00Z")
    resolved = AlertEvent(ts=T0, alert="DataDrift", status="resolved", model="breast_cancer", started=T0 - 300)
    assert alert_triggers(webhook_payload([resolved]), None, now=T0) == []
    assert alert_triggers(json.loads(resolved.to_json()), None, now=T0) == []


@pytest.mark.parametrize(("payload", "message"), [
    ({"receiver": "x", "status": "firing"}, ("not an alert payload \\(an object with keys receiver, status\\): "
                                             "expected Alertmanager's webhook JSON, version 4")),
    ([1, 2], "not an alert payload \\(a list\\)"),
    ({"version": "3", "alerts": []}, "version '3': only version 4"),
    ({"alerts": [{"status": "firing", "labels": {}}]}, "alerts\\[0\\].labels.alertname"),
    ({"alert": "X", "status": "burning", "model": "m", "ts": 0}, "not an mloop alert event: status"),
])
def test_a_payload_of_neither_shape_is_a_value_error_naming_the_problem(payload, message):
    with pytest.raises(ValueError, match=message):
        alert_triggers(payload, None, now=T0)


# -------------------------------------------------------------------------------------- data (files)


def plain_project(root: Path) -> ProjectConfig:
    root.mkdir(parents=True, exist_ok=True)
    return ProjectConfig(root, parse_settings({"project": {"name": "p"}}))


def test_data_watcher_records_first_then_reports_each_new_content_once(tmp_path: Path):
    cfg = plain_project(tmp_path / "p")
    train, extra = cfg.root / "train.csv", cfg.root / "extra.csv"
    train.write_text("a,b\n1,2\n")
    watcher = DataWatcher(cfg, inputs=lambda: [train, extra])
    assert watcher.poll(T0) == [] and watcher.problem == ""  # first poll: records; extra.csv does not exist
    train.write_text("a,b\n1,2\n3,4\n")
    [made] = watcher.poll(T0 + 10)
    assert made.kind == "data" and made.detail["path"] == "train.csv" and made.detail["source"] == "file"
    assert made.key == data_key(made.detail["md5"]) and made.detail["previous"] != made.detail["md5"]
    assert watcher.poll(T0 + 20) == []  # seen once
    extra.write_text("x\n")  # a file that appears is recorded, not news
    assert watcher.poll(T0 + 30) == []
    train.unlink()  # gone: not news, and its last version is kept ...
    assert watcher.poll(T0 + 40) == []
    train.write_text("a,b\n1,2\n3,4\n")  # ... so the same content back is not news either
    assert watcher.poll(T0 + 50) == []
    restarted = DataWatcher(cfg, inputs=lambda: [train, extra], state=json.loads(json.dumps(watcher.to_dict())))
    extra.write_text("y\n")
    assert [t.detail["path"] for t in restarted.poll(T0 + 60)] == ["extra.csv"]


def test_data_watcher_reads_the_pipelines_path_parameters_and_reports_a_pipeline_it_cannot_load(tmp_path: Path):
    from tests.support.projects import write_project

    root = write_project(tmp_path / "p", "p", '''
        from pathlib import Path
        from mloop import pipeline, step

        @step
        def load(path: Path = Path("data/train.csv"), other: str = "x") -> int:
            return 1

        @step
        def more(rows: int, extra: Path = Path("/nowhere/extra.csv")) -> int:
            return rows

        @pipeline
        def training():
            more(load())
    ''', toml='[params.load]\npath = "data/override.csv"\n')
    from mloop.config import load_project

    cfg = load_project(root)
    watcher = DataWatcher(cfg)
    assert watcher.inputs() == [root / "data/override.csv", Path("/nowhere/extra.csv")]
    (root / "pipeline.py").write_text("this is not python\n")
    assert watcher.poll(T0) == [] and watcher.problem.startswith("the pipeline's input files cannot be listed")
