"""Production data to train on: the prediction log joined with the feedback log, each row and label once."""

import shutil
import time

import numpy as np
import pandas as pd
import pytest

from mloop.errors import DataError
from mloop.monitor import queries
from mloop.monitor.predlog import PredictionLog, read_log
from mloop.monitor.production import PROVENANCE, join_labels

T0 = pd.Timestamp("2024-05-01 12:00:00", tz="UTC")


def predictions(*rows: tuple) -> pd.DataFrame:
    """Prediction-log rows: (seconds after T0, request id, row, version, a, b, prediction)."""
    frame = pd.DataFrame(rows, columns=["ts", "request_id", "row", "version", "a", "b", "prediction"])
    frame["ts"] = T0 + pd.to_timedelta(frame["ts"], unit="s")
    frame["row"] = frame["row"].astype("int32")
    return frame


def feedback(*rows: tuple) -> pd.DataFrame:
    """Feedback-log rows: (seconds after T0, request id, row, label)."""
    frame = pd.DataFrame(rows, columns=["ts", "request_id", "row", "label"])
    frame["ts"] = T0 + pd.to_timedelta(frame["ts"], unit="s")
    frame["row"] = frame["row"].astype("int32")
    return frame


SERVED = predictions(
    (3, "r3", 0, "2", 3.0, 30.0, 1),
    (1, "r1", 0, "1", 1.0, 10.0, 0),
    (1, "r1", 1, "1", 1.5, 15.0, 1),
    (2, "r2", 0, "2", 2.0, 20.0, 0),
    (1, "r1", 0, "1", 1.0, 10.0, 0),  # r1's first row logged twice (a rotation that crashed half-way)
    (2, "a2", 0, "2", 2.5, 25.0, 1),  # served in the same second as r2: ordered by request id
)
LABELS = feedback(
    (5, "r1", 0, 1),
    (5, "r1", 1, 0),
    (6, "r2", 0, 1),
    (7, "r2", 0, 0),  # r2 labelled again: the first label counts
    (8, "gone", 0, 1),  # a label for a prediction not read (rotated away)
    (6, "a2", 0, 1),
)


def test_labelled_rows_join_each_predicted_row_with_its_first_label_once():
    joined = join_labels(SERVED, LABELS, features=["a", "b"], target="y")
    frame = joined.frame
    assert list(frame.columns) == ["a", "b", "y", *PROVENANCE]
    assert list(PROVENANCE) == ["served_version", "request_id", "served_at"]
    assert frame[["request_id", "a", "y"]].values.tolist() == [["r1", 1.0, 1], ["r1", 1.5, 0], ["a2", 2.5, 1],
                                                               ["r2", 2.0, 1]]
    assert frame["served_version"].tolist() == ["1", "1", "2", "2"]
    assert frame["served_at"].tolist() == [T0 + pd.Timedelta(seconds=s) for s in (1, 1, 2, 2)]
    assert str(frame["served_at"].dt.tz) == "UTC" and frame["y"].dtype == np.int64
    assert (joined.predicted, joined.labelled, joined.unlabelled) == (5, 4, 1)
    assert (joined.repeated_predictions, joined.repeated_labels, joined.unmatched_labels) == (1, 1, 1)
    assert joined.versions == ["1", "2"] and joined.target == "y"


def test_unlabelled_rows_are_kept_only_when_asked_with_an_empty_label_and_whole_numbers_stay_whole():
    frame = join_labels(SERVED, LABELS, features=["a", "b"], target="y", include_unlabelled=True).frame
    assert frame["request_id"].tolist() == ["r1", "r1", "a2", "r2", "r3"]
    assert frame["y"].dtype == "Int64" and frame["y"].isna().tolist() == [False] * 4 + [True]
    nothing = join_labels(SERVED, LABELS.iloc[:0], features=["a", "b"], target="y")
    assert len(nothing.frame) == 0 and nothing.labelled == 0 and nothing.unlabelled == 5
    unlabelled = join_labels(SERVED, pd.DataFrame(), features=["a", "b"], target="y", include_unlabelled=True)
    assert len(unlabelled.frame) == 5 and unlabelled.frame["y"].isna().all()


def test_the_order_and_content_do_not_depend_on_how_the_logs_were_split():
    once = join_labels(SERVED, LABELS, features=["a", "b"], target="y", include_unlabelled=True).frame
    shuffled = SERVED.sample(frac=1.0, random_state=3)
    twice = pd.concat([shuffled, shuffled.iloc[:2]], ignore_index=True)
    again = join_labels(twice, pd.concat([LABELS.iloc[::-1], LABELS]), features=["a", "b"], target="y",
                        include_unlabelled=True).frame
    pd.testing.assert_frame_equal(once, again)


def test_the_model_features_are_the_columns_and_one_the_log_lacks_is_missing():
    frame = join_labels(SERVED, LABELS, features=["b", "c"], target="label_true").frame
    assert list(frame.columns)[:3] == ["b", "c", "label_true"] and frame["c"].isna().all()
    assert "prediction" not in frame.columns and "a" not in frame.columns


def test_categories_and_class_names_come_as_logged():
    served = predictions((1, "r1", 0, "1", 1.0, 1.0, "yes"), (2, "r2", 0, "1", 2.0, 2.0, "no"))
    served["colour"] = ["red", "blue"]
    labels = feedback((3, "r1", 0, "no"))
    frame = join_labels(served, labels, features=["a", "colour"], target="answer", include_unlabelled=True).frame
    assert frame["colour"].tolist() == ["red", "blue"] and frame["answer"].tolist()[0] == "no"
    assert pd.isna(frame["answer"].tolist()[1])


def test_rows_written_by_the_server_log_and_repeated_in_a_copied_file_join_the_same(tmp_path):
    folder = tmp_path / "served"
    log = PredictionLog(folder, ["a", "b"])
    log.record("r1", "1", np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]))
    log.record("r2", "1", np.array([[5.0, 6.0]]), np.array([1]))
    log.record_feedback("r1", [1, 1])
    log.flush()
    first = queries.served_log(folder, "toy")
    joined = join_labels(first.predictions, first.feedback, features=["a", "b"], target="y")
    for name in ("predictions", "feedback"):  # every file there twice
        for path in list((folder / name).iterdir()):
            shutil.copyfile(path, path.with_name(path.name.replace(".parquet", "9.parquet")))
    assert len(read_log(folder / "predictions")) == 6
    second = queries.served_log(folder, "toy")
    again = join_labels(second.predictions, second.feedback, features=["a", "b"], target="y")
    pd.testing.assert_frame_equal(joined.frame, again.frame)
    assert joined.frame["y"].tolist() == [1, 1] and again.repeated_predictions == 3 and again.repeated_labels == 2


def test_nothing_logged_and_an_empty_window_are_errors_that_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="no predictions of 'toy' were logged yet") as err:
        queries.served_log(tmp_path / "none", "toy")
    assert "mloop serve" in (err.value.hint or "")
    folder = tmp_path / "old"
    log = PredictionLog(folder, ["a"])
    log.record("r1", "1", np.array([[1.0]]), np.array([0]))
    log.flush()
    with pytest.raises(DataError, match="were served in the last 1h; the newest was served at") as err:
        queries.served_log(folder, "toy", since=time.time() + 3600, window="in the last 1h")
    assert "--since" in (err.value.hint or "")
