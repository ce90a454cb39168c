"""status.json is written and read only as a MonitorStatus."""

import json

import pytest

from mloop.errors import DataError
from mloop.monitor.status import (
    AlertStatus,
    DriftStatus,
    FeatureDriftStatus,
    FeedbackStatus,
    MonitorStatus,
    OperationsStatus,
    OutlierStatus,
    PredictionDriftStatus,
    read_status,
    write_status,
)


def status() -> MonitorStatus:
    drift = DriftStatus(400, 100, 0.5, {"a": FeatureDriftStatus(True, 0.4, 1e-9, "KS"),
                                        "b": FeatureDriftStatus(False, 0.01, 0.5, "KS")},
                        PredictionDriftStatus(False, 0.3, "chi-square", {"0": 0.5}, {"0": 0.4}))
    return MonitorStatus("m", "3", 1000.0, 42, drift, OutlierStatus(0.1, 400), OperationsStatus(300.0, 10, 1, 5.0, 0.1),
                         FeedbackStatus(5, {"accuracy": 0.8}, {"accuracy": "share of rows ..."}),
                         AlertStatus(["DataDrift"], {"LowAccuracy": 12.0}))


def test_a_status_comes_back_typed(tmp_path):
    write_status(tmp_path, status())
    again = read_status(tmp_path)
    assert again == status()
    assert again is not None and again.drift.drifted == ["a"] and again.drift.predictions.p_value == 0.3


def test_no_status_yet_is_none_and_an_unreadable_one_says_what_to_do(tmp_path):
    assert read_status(tmp_path) is None
    (tmp_path / "status.json").write_text(json.dumps({"model": "m"}))
    with pytest.raises(DataError, match="not a status this mloop can read") as info:
        read_status(tmp_path)
    assert "restart the model server" in info.value.hint


def test_the_drift_headline_counts_the_features_with_a_verdict_and_names_those_without():
    from mloop.monitor.status import DriftStatus, FeatureDriftStatus

    drift = DriftStatus(rows=100, min_samples=100, share=0.25, features={
        "a": FeatureDriftStatus(True, 0.4, 1e-6, "drifted"), "b": FeatureDriftStatus(False, 0.01, 0.7, ""),
        "c": FeatureDriftStatus(False, 0.02, 0.5, ""), "d": FeatureDriftStatus(False, 0.0, 0.9, ""),
        "city": FeatureDriftStatus(None, None, None, "90 values < min_samples 100: no verdict")})
    assert drift.headline() == ("1 of 4 features drifted (25%) in the last 100 rows: a; no verdict for city "
                                "(90 values < min_samples 100)")
