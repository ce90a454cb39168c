"""`mloop doctor` on a project damaged in every way the issue names: it finds each, repairs what is safe
(moving damaged files aside, never deleting data), names the rest with the fix, and the project works after."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mloop.config import load_project
from tests.integration.test_concurrency import PIPELINE
from tests.support.projects import write_project
from tests.support.servers import MLOOP

pytestmark = pytest.mark.integration


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLOOP, *args], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_doctor_finds_and_repairs_a_damaged_project(tmp_path: Path, mlflow_db_template: Path):
    from mloop.tracking.client import experiment_id, mlflow_client

    root = write_project(tmp_path / "sick", "race", PIPELINE, toml='task = "binary"\n')
    (root / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    assert cli(root, "run").returncode == 0
    assert cli(root, "doctor").returncode == 0  # a healthy project: nothing to say but ok

    store = root / ".mloop"
    objects = sorted(p for p in (store / "objects").rglob("*") if p.is_file() and p.parent.name != "tmp")
    truncated, flipped = objects[0], objects[1]
    truncated.write_bytes(truncated.read_bytes()[:-3])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    next((store / "cache").rglob("*.json")).write_text("{torn")
    stale_tmp = store / "objects" / "tmp" / "leftover.pkl"
    stale_tmp.parent.mkdir(parents=True, exist_ok=True)
    stale_tmp.write_bytes(b"x" * 1000)
    os.utime(stale_tmp, (time.time() - 7200, time.time() - 7200))
    killed_step = store / "tmp" / "mloop-train-abc123"  # the work folder of a step whose run was killed
    killed_step.mkdir(parents=True)
    (killed_step / "figure.png").write_bytes(b"png")
    os.utime(killed_step, (time.time() - 7200, time.time() - 7200))
    cfg = load_project(root)
    client = mlflow_client(cfg)
    killed = client.create_run(experiment_id(client, cfg, create=False),
                               tags={"mloop.kind": "pipeline", "mloop.host": socket.gethostname(),
                                     "mloop.pid": str(dead_pid()), "mloop.pid_started": "0"})
    client.set_model_version_tag("race", "1", "mloop.decided", "false")
    damaged_state = store / "deployments" / "bad" / "state.json"
    damaged_state.parent.mkdir(parents=True)
    damaged_state.write_bytes(b"\xff\xfe not json")
    gone = store / "deployments" / "gone" / "state.json"
    gone.parent.mkdir(parents=True)
    gone.write_text(json.dumps({"name": "gone", "model": "race", "version": "1", "host": "127.0.0.1", "port": 1,
                                "pid": dead_pid(), "admin_token": "t", "started": time.time()}))
    predictions = store / "monitor" / "race" / "predictions"
    predictions.mkdir(parents=True)
    (predictions / "part-20260101T000000-1000001.parquet").write_bytes(b"PAR1 torn")
    (store / "monitor" / "race" / "alerts.jsonl").write_bytes(b'[1, 2]\n\xff\xfe\n')
    orphan = subprocess.Popen(["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(120)' "
                                           "multiprocessing.forkserver >/dev/null 2>&1 & echo $!"], cwd=root, stdout=subprocess.PIPE,
                              text=True)
    orphan_pid = int(orphan.communicate(timeout=30)[0])
    os.chmod(store, 0o755)

    try:
        checked = cli(root, "doctor", "--dry-run")
        assert checked.returncode == 2, checked.stdout + checked.stderr
        out = checked.stdout
        assert "2 of" in out and "did not match their digest" in out, out
        assert "unreadable cache entries" in out and "2 left by writes that died" in out
        assert "race v1 registered without a gate decision" in out and "1 runs RUNNING whose process is gone" in out
        assert f"{damaged_state} is unreadable" in out and "gone: its server" in out and "mloop deploy race/1 --name gone" in out
        assert "1 unreadable predictions files" in out and "2 lines are not alert events" in out
        assert f"{orphan_pid}" in out and "outlived their run" in out
        assert "dry run: nothing changed" in out and "Traceback" not in checked.stderr
        assert truncated.exists() and stale_tmp.exists() and damaged_state.exists() and psutil.pid_exists(orphan_pid)

        repaired = cli(root, "doctor")
        out = repaired.stdout
        assert repaired.returncode == 2, out  # the undecided version and the dead deployment need a command
        assert "moved to quarantine" in out and "recorded as FAILED" in out and "; stopped" in out, out
        assert not truncated.exists() and not flipped.exists() and not stale_tmp.exists() and not killed_step.exists()
        assert (store / "objects" / "quarantine" / truncated.name).exists()
        assert damaged_state.with_name("state.json.damaged").exists() and not damaged_state.exists()
        assert (store / "monitor" / "race" / "quarantine" / "predictions").is_dir()
        assert client.get_run(killed.info.run_id).info.status == "FAILED"
        deadline = time.time() + 10
        while psutil.pid_exists(orphan_pid) and psutil.Process(orphan_pid).status() != psutil.STATUS_ZOMBIE \
                and time.time() < deadline:
            time.sleep(0.05)
        assert not psutil.pid_exists(orphan_pid) or psutil.Process(orphan_pid).status() == psutil.STATUS_ZOMBIE
        assert store.stat().st_mode & 0o777 == 0o700

        # what was damaged is rebuilt by the next run, which also completes the undecided version
        again = cli(root, "run")
        assert again.returncode == 0, again.stdout + again.stderr
        assert cli(root, "undeploy", "gone").returncode == 0
        final = cli(root, "doctor")
        assert final.returncode == 0, final.stdout
        assert "0 problems" in final.stdout
    finally:
        try:
            psutil.Process(orphan_pid).kill()
        except psutil.Error:
            pass


def test_doctor_checks_the_agents_files(tmp_path: Path, mlflow_db_template: Path):
    from mloop.automation.audit import AuditLog
    from mloop.automation.journal import Journal

    root = write_project(tmp_path / "agent", "race", PIPELINE, toml='task = "binary"\n[automation]\n')
    (root / ".mloop").mkdir()
    shutil.copyfile(mlflow_db_template, root / ".mloop" / "mlflow.db")
    folder = root / ".mloop" / "automation"
    journal = Journal(folder / "journal.db")
    unfinished = journal.new_cycle("race", [{"kind": "manual", "reason": "by hand"}])
    journal.set_state(unfinished.id, "training")
    journal.close()
    holdouts = folder / "holdouts"
    holdouts.mkdir()
    (holdouts / f"{unfinished.id}.parquet").write_bytes(b"PAR1 kept")
    orphan = holdouts / "20260101-000000-abcdef.parquet"  # its cycle went with a journal moved aside
    orphan.write_bytes(b"PAR1 orphan")
    audit = AuditLog(folder / "audit.jsonl")
    for n in range(3):
        audit.append("agent", "race", f"record {n}")
    lines = audit.path.read_text().splitlines()
    lines[1] = lines[1].replace("record 1", "record one")  # changed after it was written
    audit.path.write_text("\n".join(lines) + "\n")
    infra = root / ".mloop" / "tmp" / "mloop-infra-k1ll3d"  # an infra check killed with its agent, minutes ago
    infra.mkdir(parents=True)
    (infra / "server.log").write_text("serving")
    (folder / "agent.json").write_text(json.dumps({"pid": dead_pid(), "started": time.time(), "host": "127.0.0.1",
                                                   "port": 1}))

    checked = cli(root, "doctor", "--dry-run")
    out = checked.stdout
    assert checked.returncode == 2, out + checked.stderr
    assert "1 frozen holdouts of cycles the journal does not have" in out and orphan.name in out, out
    assert "hash chain is broken" in out and "record 2: its content does not match its hash" in out
    assert "1 infra check folders left by an agent that is gone" in out and "names an agent that is gone" in out
    assert f"cycle {unfinished.id} is unfinished (training) and no agent runs" in out and "mloop agent start" in out
    assert orphan.exists() and infra.exists() and (folder / "agent.json").exists()

    repaired = cli(root, "doctor")
    out = repaired.stdout
    assert repaired.returncode == 2, out  # the audit chain and the unfinished cycle stay the user's to act on
    assert "holdouts of cycles the journal does not have (0.0 MB), removed" in out, out
    assert not orphan.exists() and (holdouts / f"{unfinished.id}.parquet").exists()
    assert not infra.exists() and not (folder / "agent.json").exists()

    (folder / "journal.db").write_bytes(b"not a database at all " * 500)
    damaged = cli(root, "doctor", "--dry-run")
    assert damaged.returncode == 2 and "journal" in damaged.stdout and "is damaged" in damaged.stdout, damaged.stdout
    assert (folder / "journal.db").exists() and not (folder / "quarantine").exists()  # a dry run moves nothing
    moved = cli(root, "doctor")
    assert "moved to" in moved.stdout and (folder / "quarantine" / "journal.db").exists(), moved.stdout
    assert not (folder / "journal.db").exists()
