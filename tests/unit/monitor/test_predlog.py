"""The durable prediction log: batched Parquet writes, hourly folding, size budget, mixed schemas, a full disk."""

import errno
import json
import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from mloop.monitor.predlog import PredictionLog, RotatingParquetLog, read_log

FEATURES = ["a", "b"]


def test_flush_writes_one_parquet_file_pandas_reads_with_ids_rows_and_outlier_scores(tmp_path):
    log = PredictionLog(tmp_path, FEATURES)
    empty = log.flush()
    assert empty.predictions is None and empty.feedback is None and not (tmp_path / "predictions").exists()
    log.record("r1", "3", np.array([[1.0, 2.0], [3.0, np.nan]]), np.array([0, 1]))
    log.record("r2", "3", np.array([[5.0, 6.0]]), np.array([1]))
    log.record_feedback("r1", [0, 0])

    def scorer(rows, text):
        return -rows[:, 0], rows[:, 0] > 4

    log.flush(scorer)
    frame = pd.read_parquet(tmp_path / "predictions")  # plain pandas reads the folder
    assert list(frame.columns) == ["ts", "request_id", "row", "version", "a", "b", "prediction", "outlier_score", "outlier"]
    assert frame["request_id"].tolist() == ["r1", "r1", "r2"] and frame["row"].tolist() == [0, 1, 0]
    assert frame["prediction"].tolist() == [0, 1, 1] and frame["version"].tolist() == ["3"] * 3
    assert frame["outlier_score"].iloc[0] == -1.0 and np.isnan(frame["outlier_score"].iloc[1])  # NaN row: no score
    assert frame["outlier"].tolist() == [False, None, True]  # the row with a NaN is not scored: null
    assert str(frame["ts"].dtype).startswith("datetime64") and frame["ts"].iloc[0].tzinfo is not None
    labels = pd.read_parquet(tmp_path / "feedback")
    assert labels[["request_id", "row", "label"]].values.tolist() == [["r1", 0, 0], ["r1", 1, 0]]
    assert not [p for p in (tmp_path / "predictions").iterdir() if p.name.startswith(".")]  # no temporary left


def _stamps(seconds):
    return pa.array((np.asarray(seconds) * 1e6).astype(np.int64), type=pa.timestamp("us", tz="UTC"))


def _part(log, hour_offset_s, rows):
    return log.write(pa.table({"ts": _stamps([time.time()] * rows), "x": np.arange(rows)}), now=time.time() + hour_offset_s)


def test_rotation_folds_finished_hours_and_keeps_the_current_hours_parts(tmp_path):
    log = RotatingParquetLog(tmp_path)
    for _ in range(3):
        _part(log, -7200, 10)
    _part(log, -3600 * 5, 4)
    current = _part(log, 0, 5)
    log.rotate()
    names = [p.name for p in log.files()]
    assert sum(n.startswith("hour-") for n in names) == 2 and current.name in names and len(names) == 3
    assert len(read_log(tmp_path)) == 39  # nothing lost, nothing doubled
    _part(log, -7200, 1)  # a late part of an hour already folded is folded into the same file
    log.rotate()
    assert len(log.files()) == 3 and len(read_log(tmp_path)) == 40


def test_the_size_budget_deletes_the_oldest_files_never_the_newest(tmp_path):
    log = RotatingParquetLog(tmp_path, max_bytes=1)
    for offset in (-10, -5, 0):
        _part(log, offset, 100)
    log.rotate()
    assert len(log.files()) == 1 and os.path.getsize(log.files()[0]) > 1


def test_read_log_aligns_files_with_other_columns_and_keeps_rows_since_a_time(tmp_path):
    log = RotatingParquetLog(tmp_path)
    old = time.time() - 600
    log.write(pa.table({"ts": _stamps([old]), "a": [1.0]}))
    log.write(pa.table({"ts": _stamps([time.time()]), "z": [2.0]}))
    both = read_log(tmp_path)
    assert set(both.columns) == {"ts", "a", "z"} and len(both) == 2
    recent = read_log(tmp_path, since=time.time() - 60)
    assert recent["z"].tolist() == [2.0]
    log.rotate(now=time.time() + 7200)  # both folded into one hour file: the columns are aligned there too
    assert len(log.files()) == 1 and set(read_log(tmp_path).columns) == {"ts", "a", "z"}
    assert read_log(tmp_path / "missing").empty


def test_a_write_cut_short_leaves_the_log_readable(tmp_path):
    log = PredictionLog(tmp_path, FEATURES)
    log.record("r1", "1", np.array([[1.0, 2.0]]), np.array([0]))
    log.flush()
    torn = tmp_path / "predictions" / ".part-20261122T000000-1.parquet.999.tmp"
    torn.write_bytes(b"PAR1 half a file")  # what a crash in the middle of a write leaves behind
    assert len(pd.read_parquet(tmp_path / "predictions")) == 1
    assert len(read_log(tmp_path / "predictions")) == 1


def test_read_newest_stops_once_it_has_enough_and_keeps_time_order(tmp_path):
    from mloop.monitor.predlog import read_newest

    log = RotatingParquetLog(tmp_path)
    for i in range(5):  # five files of two requests each, oldest first
        log.write(pa.table({"request_id": [f"r{i}a", f"r{i}a", f"r{i}b"], "row": [0, 1, 0], "x": [i] * 3}),
                  now=time.time() + i)
    newest = read_newest(log, ["request_id", "x"], 3, distinct="request_id")
    assert newest["x"].tolist() == [3, 3, 3, 4, 4, 4]  # two files hold 4 requests >= 3: no third file read
    assert list(newest.columns) == ["request_id", "x"]
    assert len(read_newest(log, ["row"], None)) == 15
    assert read_newest(RotatingParquetLog(tmp_path / "none"), ["x"], 10).empty


def test_over_the_budget_a_uniform_sample_of_rows_is_scored(tmp_path):
    log = PredictionLog(tmp_path, FEATURES)
    for i in range(1000):
        log.record(f"r{i}", "1", np.array([[float(i), 1.0], [float(i), 2.0]]), np.array([0, 1]))
    calls = []

    def scorer(rows, text):
        calls.append(len(rows))
        return -rows[:, 0], rows[:, 0] > 1500

    frame = log.flush(scorer, max_scored=500).predictions.to_pandas()
    scored = frame["outlier_score"].notna()
    assert len(frame) == 2000 and 350 < scored.sum() < 650 and sum(calls) == scored.sum()
    assert frame.loc[~scored, "outlier"].isna().all() and frame.loc[scored, "outlier"].notna().all()
    assert 200 < frame.loc[scored, "a"].median() < 800  # spread over the whole flush, not its start


class _FullDisk:
    """Stands in for ``_write_parquet`` while the disk is full: raises ENOSPC, as pyarrow does, until ``free``."""

    def __init__(self, monkeypatch):
        from mloop.monitor import predlog

        self.write, self.full, self.attempts = predlog._write_parquet, True, 0
        monkeypatch.setattr(predlog, "_write_parquet", self)

    def __call__(self, table, path):
        self.attempts += 1
        if self.full:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        self.write(table, path)


def _request(log, request_id, n):
    log.record(request_id, "1", np.arange(2.0 * n).reshape(n, 2), np.zeros(n, dtype=int))


def test_rows_a_full_disk_could_not_take_are_written_once_in_order_when_space_returns(tmp_path, monkeypatch, capsys):
    disk = _FullDisk(monkeypatch)
    log = PredictionLog(tmp_path, FEATURES)
    _request(log, "r1", 2)
    log.record_feedback("r1", [0, 1])
    first = log.flush()
    assert first.predictions.num_rows == 2 and first.rows_written == 0  # taken in, not written
    _request(log, "r2", 3)
    assert log.flush().rows_written == 0 and log.flush().rows_written == 0  # retried every flush, nothing new needed
    assert log.predictions.waiting_rows == 5 and log.feedback.waiting_rows == 2 and log.predictions.failed_writes == 3
    assert f"cannot write the prediction log {tmp_path / 'predictions'}: no space left on the device" in \
        log.predictions.error
    said = capsys.readouterr().err.splitlines()  # once per log, not once per flush
    assert len(said) == 2 and json.loads(said[0])["error"].endswith("retried every monitoring update; free space there)")
    disk.full = False
    _request(log, "r3", 1)
    assert log.flush().rows_written == 6
    frame = read_log(tmp_path / "predictions")
    assert frame["request_id"].tolist() == ["r1"] * 2 + ["r2"] * 3 + ["r3"] and frame["row"].tolist() == [0, 1, 0, 1, 2, 0]
    assert read_log(tmp_path / "feedback")["label"].tolist() == [0, 1]
    assert log.predictions.waiting_rows == 0 and log.predictions.error == "" and log.predictions.dropped_rows == 0
    recovered = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["path"] for line in recovered] == [str(tmp_path / "predictions"), str(tmp_path / "feedback")]
    assert "is written again (the 5 rows kept in memory are written; 0 were dropped)" in recovered[0]["recovered"]
    assert log.flush().rows_written == 0 and len(read_log(tmp_path / "predictions")) == 6  # nothing twice


def test_beyond_the_bound_the_oldest_waiting_rows_are_dropped_and_counted(tmp_path, monkeypatch):
    disk = _FullDisk(monkeypatch)
    log = PredictionLog(tmp_path, FEATURES, max_waiting_rows=5)
    _request(log, "a", 3)
    log.flush()
    _request(log, "b", 4)
    log.flush()
    assert log.predictions.waiting_rows == 5 and log.predictions.dropped_rows == 2  # a's first two rows
    _request(log, "c", 9)  # more than the bound in one flush: only its newest rows stay
    log.flush()
    assert log.predictions.waiting_rows == 5 and log.predictions.dropped_rows == 11
    disk.full = False
    _request(log, "d", 1)
    log.flush()
    frame = read_log(tmp_path / "predictions")
    assert list(zip(frame["request_id"], frame["row"], strict=True)) == [("c", 4), ("c", 5), ("c", 6), ("c", 7),
                                                                         ("c", 8), ("d", 0)]
    none_kept = PredictionLog(tmp_path / "zero", FEATURES, max_waiting_rows=0)
    disk.full = True
    _request(none_kept, "x", 2)
    none_kept.flush()
    assert none_kept.predictions.waiting_rows == 0 and none_kept.predictions.dropped_rows == 2


def test_a_fold_a_full_disk_refuses_keeps_every_part_and_still_enforces_the_budget(tmp_path, monkeypatch, capsys):
    log = RotatingParquetLog(tmp_path, what="the prediction log")
    parts = [_part(log, -7200, 10) for _ in range(3)]
    disk = _FullDisk(monkeypatch)
    log.rotate()
    assert log.files() == parts and len(read_log(tmp_path)) == 30  # nothing folded, nothing lost
    assert "cannot write the hourly files of the prediction log" in log.error
    assert "part files stay as they are" in capsys.readouterr().err
    log.max_bytes = 1
    log.rotate()  # the budget still deletes the oldest files, which may be what frees the disk
    assert log.files() == parts[-1:]
    disk.full, log.max_bytes = False, 1 << 30
    log.rotate()
    assert [p.name[:5] for p in log.files()] == ["hour-"] and len(read_log(tmp_path)) == 10 and log.error == ""
