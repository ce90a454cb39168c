"""The read-side queries over a monitor folder: the rows one version served, the state of the logs."""

from __future__ import annotations

import pandas as pd
import pytest

from mloop.errors import DataError
from mloop.monitor import queries


def _write(folder, name: str, frame: pd.DataFrame) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / name / "part-20260101T100000-1.parquet")


def _log(versions: list[str]) -> pd.DataFrame:
    n = len(versions)
    return pd.DataFrame({"ts": pd.date_range("2026-01-01 10:00", periods=n, freq="1s", tz="UTC"),
                         "request_id": [f"r{i}" for i in range(n)], "row": 0, "version": versions,
                         "x": range(n), "prediction": 1.0})


def test_served_rows_without_since_takes_the_whole_log_of_the_version_served_last(tmp_path):
    _write(tmp_path, "predictions", _log(["1", "1", "2", "2", "2"]))
    served = queries.served_rows(tmp_path, "toy")
    assert served.version == "2" and len(served.predictions) == 3 and served.features.columns.tolist() == ["x"]
    assert served.labelled_over_time(regression=True) is None  # no feedback
    assert len(queries.served_rows(tmp_path, "toy", version="1").predictions) == 2
    with pytest.raises(DataError, match="no predictions of toy v9"):
        queries.served_rows(tmp_path, "toy", version="9")


def test_the_log_state_changes_with_the_logs_and_reads_none_of_them(tmp_path):
    assert queries.log_state(tmp_path) == ()
    _write(tmp_path, "predictions", _log(["1"]))
    first = queries.log_state(tmp_path)
    assert [name for name, _, _ in first] == ["predictions/part-20260101T100000-1.parquet"]
    _write(tmp_path, "feedback", _log(["1"])[["ts", "request_id", "row"]].assign(label=1.0))
    assert len(queries.log_state(tmp_path)) == 2
