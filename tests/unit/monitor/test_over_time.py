"""The prediction log over time: traffic and drift per time bucket, the histogram of one feature, a roll-out typed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mloop.bundle.profile import ReferenceProfile
from mloop.config import MonitorSection
from mloop.errors import DataError
from mloop.monitor.queries import drift_over_time, traffic_over_time
from mloop.monitor.report import histogram_counts
from mloop.monitor.status import parse_rollout

RNG = np.random.default_rng(7)
TRAINING = pd.DataFrame({"x": RNG.normal(size=2000), "c": RNG.choice(["a", "b"], size=2000)})


def log(rows: int, *, start: str = "2026-01-01 10:00", minutes: int = 60, shift_after: int | None = None,
        versions: tuple[str, ...] = ("1",)) -> pd.DataFrame:
    """A prediction log of ``rows`` rows, one per request, evenly over ``minutes``; x shifted from row
    ``shift_after`` on."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=rows)
    if shift_after is not None:
        x[shift_after:] += 3.0
    return pd.DataFrame({
        "ts": pd.date_range(start, periods=rows, freq=pd.Timedelta(minutes=minutes) / rows, tz="UTC"),
        "request_id": [f"r{i}" for i in range(rows)], "row": 0,
        "version": [versions[i * len(versions) // rows] for i in range(rows)],
        "x": x, "c": rng.choice(["a", "b"], size=rows), "prediction": 1, "outlier_score": 0.0,
        "outlier": (np.arange(rows) % 10 == 0)})


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    return ReferenceProfile(max_sample=2000).fit(TRAINING)


def test_traffic_is_counted_per_time_bucket_and_version():
    frame = traffic_over_time(log(400, versions=("1", "2")), buckets=4)
    assert frame["requests"].sum() == 400 and frame["rows"].sum() == 400
    assert set(frame["version"]) == {"1", "2"}
    assert frame.groupby("version")["requests"].sum().to_dict() == {"1": 200, "2": 200}
    assert frame[frame["rows"] > 0]["outlier_ratio"].between(0.0, 0.2).all()
    assert (frame["end"] > frame["start"]).all()
    assert traffic_over_time(log(400).iloc[:0]).empty


def test_traffic_has_every_bucket_with_zero_where_no_request_came():
    # 10 requests, then nothing for 50 minutes, then 40 requests within a few seconds (of v2)
    quiet = log(10, minutes=1)
    burst = log(40, start="2026-01-01 10:51", minutes=0.05, versions=("2",)).assign(
        request_id=[f"b{i}" for i in range(40)])
    frame = traffic_over_time(pd.concat([quiet, burst], ignore_index=True), buckets=10)
    assert len(frame) == 20 and frame.groupby("version").size().to_dict() == {"1": 10, "2": 10}
    assert frame["start"].is_monotonic_increasing and (frame["end"] > frame["start"]).all()
    by_version = {v: part["requests"].tolist() for v, part in frame.groupby("version")}
    assert by_version["1"] == [10] + [0] * 9 and by_version["2"] == [0] * 9 + [40]
    assert frame["rows"].sum() == 50 and frame["requests"].dtype.kind == "i"
    empty = frame[frame["requests"] == 0]
    assert empty["outlier_ratio"].isna().all() and frame[frame["requests"] > 0]["outlier_ratio"].notna().all()
    unscored = traffic_over_time(quiet.drop(columns=["outlier", "outlier_score"]), buckets=3)
    assert unscored["requests"].sum() == 10 and unscored["outlier_ratio"].isna().all()


def test_drift_over_time_finds_the_bucket_where_a_feature_moved(reference):
    settings = MonitorSection(min_samples=100)
    frame = drift_over_time(reference, log(800, shift_after=400), settings, buckets=4)
    x = frame[frame["feature"] == "x"].sort_values("start")
    assert x["drifted"].tolist() == [False, False, True, True]
    assert x["psi"].iloc[-1] > 1.0 > x["psi"].iloc[0]
    assert not frame[frame["feature"] == "c"]["drifted"].any()
    assert frame.groupby("start")["rows"].first().sum() == 800


def test_drift_over_time_makes_no_bucket_smaller_than_min_samples_on_average(reference):
    frame = drift_over_time(reference, log(250), MonitorSection(min_samples=100), buckets=8)
    assert frame["start"].nunique() == 2  # 250 rows: two buckets, each with a verdict possible
    small = drift_over_time(reference, log(40), MonitorSection(min_samples=100), buckets=8)
    assert small["start"].nunique() == 1 and small["drifted"].isna().all()  # too few for a verdict


def test_drift_over_time_of_a_log_without_the_training_features_says_so(reference):
    with pytest.raises(DataError, match="shares no feature"):
        drift_over_time(reference, log(200).rename(columns={"x": "z", "c": "d"}), MonitorSection())


def test_histogram_counts_are_over_the_reference_bins_or_categories(reference):
    served = log(300, shift_after=0)
    training, current = histogram_counts("x", reference.features_["x"], served)
    assert training.sum() == 2000 and current.sum() == 300 and len(training) == len(current)
    assert current[-1] > 250  # shifted by 3 standard deviations: mostly in the top bin
    training, current = histogram_counts("c", reference.features_["c"], served)
    assert len(training) == 2 and current.sum() == 300
    assert histogram_counts("missing", reference.features_["x"], served) is None


def test_a_rollout_answer_is_typed_and_no_rollout_is_none():
    version = {"version": "2", "role": "candidate", "requests": 5, "p99_latency_ms": 3.5}
    state = {"active": True, "strategy": "canary", "weight": 0.3, "started_at": 10.0,
             "champion": {**version, "version": "1", "role": "champion"}, "candidate": version, "shadow": None}
    rollout = parse_rollout(state)
    assert rollout is not None and (rollout.candidate.version, rollout.candidate.requests, rollout.weight) == (
        "2", 5, 0.3)
    assert parse_rollout({"active": False, "serving_version": "1"}) is None
    with pytest.raises(DataError, match="roll-out state"):
        parse_rollout({**state, "champion": {"role": "champion"}})


def _labelled_log(rows: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A regressor's log (predictions 10.0) and labels off by 1 in the first half, by 3 in the second."""
    predictions = log(rows).assign(prediction=10.0)
    feedback = predictions[["ts", "request_id", "row"]].assign(
        label=[11.0 if i < rows // 2 else 7.0 for i in range(rows)])
    return predictions, feedback


def test_a_regressors_labelled_predictions_are_scored_by_mean_absolute_error_per_time_bucket():
    from mloop.monitor.report import labelled_over_time

    predictions, feedback = _labelled_log()
    scores = labelled_over_time(predictions, feedback, regression=True, buckets=2)
    assert scores["mae"].tolist() == pytest.approx([1.0, 3.0]) and scores["labelled"].sum() == 40
    accuracy = labelled_over_time(predictions.assign(prediction="a"), feedback.assign(label="a"), regression=False)
    assert "accuracy" in accuracy and (accuracy["accuracy"] == 1.0).all()


def test_the_html_report_of_a_regressor_charts_its_error_not_an_accuracy(reference):
    from mloop.monitor.drift import DriftDetector
    from mloop.monitor.report import labelled_over_time, render

    predictions, feedback = _labelled_log()
    frame = predictions[["x", "c"]]
    report = DriftDetector.from_settings(MonitorSection(min_samples=10)).fit(reference).compare(frame)
    page = render("t", reference, frame, report, scores=labelled_over_time(predictions, feedback, regression=True))
    assert "Mean absolute error over time" in page and "Accuracy" not in page and "<th>mean absolute error</th>" in page


def test_bin_labels_name_the_bins_histogram_counts_counts(reference):
    from mloop.monitor.report import bin_labels

    for name in ("x", "c"):
        training, _ = histogram_counts(name, reference.features_[name], log(50))
        assert len(bin_labels(reference.features_[name])) == len(training)


def test_operations_over_time_merges_intervals_by_their_histograms_and_breaks_at_gaps(tmp_path):
    from mloop.monitor.queries import operations_over_time
    from mloop.monitor.status import OperationsPoint, append_operations

    def point(t, fast, slow, errors=0):  # `fast` requests of ~1 ms and `slow` of ~0.3 s in the 10 s before t
        cumulative = [0, fast, fast, fast, fast, fast, fast, fast, fast, fast + slow, fast + slow, fast + slow,
                      fast + slow, fast + slow]
        return OperationsPoint(float(t), "1", 10.0, fast + slow, errors, latency_buckets=cumulative)

    for t in (10, 20, 30, 40):  # then nothing from 40 to 100: the server was down
        append_operations(tmp_path, point(t, 99, 1))
    for t in (110, 120):
        append_operations(tmp_path, point(t, 40, 60, errors=5))
    frame = operations_over_time(tmp_path, buckets=12)
    assert list(frame["segment"].unique()) == [0, 1]  # two runs of buckets, not one line over the gap
    before, after = frame[frame["segment"] == 0], frame[frame["segment"] == 1]
    assert before["requests"].sum() == 400 and after["requests"].sum() == 200 and after["errors"].sum() == 10
    assert (before["rate"] == 10.0).all() and (before["p50_ms"] < 1.0).all()
    # 60 % of the requests slow: the median is one of them, in (0.25, 0.5] s
    assert (after["p50_ms"] > 250).all() and (after["error_ratio"] == 0.05).all()
    assert operations_over_time(tmp_path, since=105.0)["requests"].sum() == 200
    assert operations_over_time(tmp_path / "none").empty


def test_one_bucket_over_many_intervals_is_the_percentile_of_all_their_requests(tmp_path):
    from mloop.monitor.queries import operations_over_time
    from mloop.monitor.status import OperationsPoint, append_operations

    fast = [0, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]  # 10 requests under 1 ms
    slow = [0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 10, 10, 10, 10]  # 10 requests of 0.25-0.5 s
    append_operations(tmp_path, OperationsPoint(10.0, "1", 10.0, 10, 0, latency_buckets=fast))
    append_operations(tmp_path, OperationsPoint(20.0, "1", 10.0, 10, 0, latency_buckets=slow))
    (row,) = operations_over_time(tmp_path, buckets=1).itertuples()
    assert row.requests == 20 and row.rate == 1.0
    assert row.p50_ms == pytest.approx(1.0) and row.p90_ms > 250  # not the mean of the two intervals' p50s


def test_a_short_continuous_history_is_one_line_and_only_a_real_gap_breaks_it(tmp_path):
    from mloop.monitor.queries import operations_over_time
    from mloop.monitor.status import OperationsPoint, append_operations

    times = [10.0 * i + jitter for i, jitter in enumerate([0, 0.3, -0.2, 1.9, 0, 0.4, 0, 0, -0.1, 0.2], start=1)]
    for t in times:  # 10 updates 10 s apart, some late: a young server, far fewer intervals than buckets
        append_operations(tmp_path, OperationsPoint(t, "1", 10.0, 5, 0, 1.0, 2.0, 3.0))
    frame = operations_over_time(tmp_path)
    assert set(frame["segment"]) == {0} and frame["requests"].sum() == 50  # one line, not ten dots
    assert frame["start"].dt.tz is not None  # UTC, as the other queries over time
    for t in (300.0, 310.0):  # the server was down from 100 s to 290 s
        append_operations(tmp_path, OperationsPoint(t, "1", 10.0, 5, 0, 1.0, 2.0, 3.0))
    frame = operations_over_time(tmp_path)
    assert list(frame.groupby("segment")["requests"].sum()) == [50, 10]
    assert frame["p99_ms"].tolist()[-1] == 3.0  # a line without a histogram: the percentiles it kept


def test_damaged_operations_lines_and_files_are_skipped_not_raised(tmp_path):
    from mloop.monitor.queries import operations_over_time
    from mloop.monitor.status import OPERATIONS_FILE, OperationsPoint, append_operations, read_operations

    good = OperationsPoint(10.0, "1", 10.0, 5, 0, latency_buckets=[0] + [5] * 13)
    append_operations(tmp_path, good)
    with open(tmp_path / OPERATIONS_FILE, "a") as file:
        for line in ('{"time": "soon", "version": "1", "seconds": 10, "requests": 1, "errors": 0}',
                     '{"time": NaN, "version": "1", "seconds": 10, "requests": 1, "errors": 0}',
                     '{"time": 20, "version": "1", "seconds": 10, "requests": "many", "errors": 0}',
                     '{"time": 20, "version": "1", "seconds": 10, "requests": 1, "errors": 0, "latency_buckets": 7}',
                     '[1, 2, 3]', '\x00\x01 torn', '{"time": 20, "vers'):
            file.write(line + "\n")
    append_operations(tmp_path, OperationsPoint(30.0, "1", 10.0, 7, 1))
    assert [p.time for p in read_operations(tmp_path)] == [10.0, 30.0]
    assert operations_over_time(tmp_path)["requests"].sum() == 12
    (tmp_path / f"{OPERATIONS_FILE}.1").mkdir()  # not a file: read around it
    assert [p.time for p in read_operations(tmp_path)] == [10.0, 30.0]


def test_an_interval_in_both_files_after_a_rotation_between_reads_counts_once(tmp_path):
    import shutil

    from mloop.monitor.status import OPERATIONS_FILE, OperationsPoint, append_operations, read_operations

    for t in (10.0, 20.0):
        append_operations(tmp_path, OperationsPoint(t, "1", 10.0, 5, 0))
    shutil.copy(tmp_path / OPERATIONS_FILE, tmp_path / f"{OPERATIONS_FILE}.1")  # what a reader sees mid-rotation
    assert [p.time for p in read_operations(tmp_path)] == [10.0, 20.0]
