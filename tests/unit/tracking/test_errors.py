"""What a failing MLflow store is reported as: the database's own problem, named with its fix."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
from pathlib import Path

import pytest

from mloop.config import ProjectConfig, parse_settings
from mloop.tracking.client import tracking_error


def project(root: Path) -> ProjectConfig:
    return ProjectConfig(root, parse_settings({"project": {"name": "t", "pipeline": "pipeline:training"}}))


def wrapped(inner: BaseException) -> Exception:
    """As MLflow raises it: its own exception, from SQLAlchemy's, from sqlite3's."""
    try:
        try:
            raise inner
        except BaseException as err:
            raise RuntimeError("(sqlalchemy) wrapped") from err
    except RuntimeError as outer:
        try:
            raise Exception("MLflow: failed") from outer
        except Exception as mlflow_error:
            return mlflow_error


@pytest.mark.parametrize("inner,said,hint", [
    (sqlite3.OperationalError("database or disk is full"), "is full", "free space on it"),
    (OSError(errno.ENOSPC, "No space left on device"), "is full", "df -h"),
    (sqlite3.DatabaseError("file is not a database"), "is damaged", "mloop doctor"),
    (sqlite3.DatabaseError("database disk image is malformed"), "is damaged", "mv "),
    (sqlite3.OperationalError("database is locked"), "stayed locked", "run the command again"),
    (ValueError("something else"), "failed", "mloop doctor"),
])
def test_a_sqlite_store_failure_says_what_happened_to_the_database(tmp_path: Path, inner, said, hint):
    err = tracking_error(project(tmp_path), wrapped(inner))
    assert said in err.message and str(tmp_path / ".mloop" / "mlflow.db") in err.message
    assert hint in err.hint and "server" not in err.hint


def test_a_tracking_server_failure_still_points_at_the_server(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLOOP_TRACKING_URI", "http://127.0.0.1:9")
    cfg = ProjectConfig(tmp_path, parse_settings({"project": {"name": "t", "pipeline": "pipeline:training"}}))
    assert "server is up" in tracking_error(cfg, ConnectionError("refused")).hint


def test_commands_on_a_damaged_database_exit_2_with_the_file_and_the_fix(tmp_path: Path):
    from tests.support.servers import MLOOP

    (tmp_path / "mloop.toml").write_text('[project]\nname = "t"\npipeline = "pipeline:training"\n')
    (tmp_path / ".mloop").mkdir()
    (tmp_path / ".mloop" / "mlflow.db").write_bytes(b"\x13garbage" * 4000)
    for command in (["runs"], ["models"]):
        done = subprocess.run([MLOOP, *command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "mlflow.db is damaged" in done.stderr and "Traceback" not in done.stderr
        assert "internal error" not in done.stderr
