"""The training rows' fingerprints: the same values hash the same whatever dtype a later frame gives them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mloop.bundle.rows import TrainingRows, fingerprints, read_training_rows, trained_by_one

COLUMNS = ["x", "city", "flag", "target"]


def frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1, 2, 3, 4], "city": ["a", "b", None, "a"], "flag": [True, False, True, False],
                         "target": [0, 1, 0, 1]})


def test_the_same_values_under_other_dtypes_have_the_same_fingerprints():
    written = frame()
    read_back = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "city": pd.Categorical(["a", "b", None, "a"]),
                              "flag": [1.0, 0.0, 1.0, 0.0], "target": pd.array([0, 1, 0, 1], dtype="Int64")})
    as_strings = written.assign(city=written.city.astype("string"))
    assert (fingerprints(written, COLUMNS) == fingerprints(read_back, COLUMNS)).all()
    assert (fingerprints(written, COLUMNS) == fingerprints(as_strings, COLUMNS)).all()
    assert (fingerprints(pd.DataFrame({"x": [-0.0, np.nan]}), ["x"])
            == fingerprints(pd.DataFrame({"x": [0.0, float("nan")]}), ["x"])).all()


def test_a_changed_value_missing_value_or_column_order_changes_the_fingerprint():
    base = fingerprints(frame(), COLUMNS)
    assert len(set(base.tolist())) == 4
    assert fingerprints(frame().assign(x=[1, 2, 3, 5]), COLUMNS)[3] != base[3]
    assert fingerprints(frame().assign(city=["a", "b", "nan", "a"]), COLUMNS)[2] != base[2]  # the text "nan" is not missing
    assert (fingerprints(frame(), COLUMNS[::-1]) != base).all()


def test_rows_seen_and_rows_only_one_model_trained_on():
    rows = frame()
    first = TrainingRows.of_frame(rows.iloc[:2], COLUMNS)
    second = TrainingRows.of_frame(rows.iloc[1:3], COLUMNS)
    assert first.seen(rows).tolist() == [True, True, False, False]
    assert trained_by_one(rows, first, second).tolist() == [True, False, True, False]  # row 1: both; row 3: neither
    assert trained_by_one(rows, first, None) is None
    assert first.seen(rows.drop(columns=["flag"])) is None
    assert trained_by_one(rows.drop(columns=["flag"]), first, second) is None


def test_saved_rows_are_read_back_with_the_bundles_columns_and_a_damaged_file_reads_as_unknown(tmp_path):
    folder = tmp_path / "mloop"
    folder.mkdir()
    (folder / "bundle.json").write_text(json.dumps({"target": "target", "features": COLUMNS[:3]}))
    assert read_training_rows(tmp_path) is None  # a bundle from before the rows were kept
    TrainingRows.of_frame(frame(), COLUMNS).save(folder)
    read = read_training_rows(tmp_path)
    assert read is not None and read.columns == COLUMNS and read.seen(frame()).all()
    (folder / "train_rows.npy").write_bytes(b"\x93NUMPY damaged")
    assert read_training_rows(tmp_path) is None
    np.save(folder / "train_rows.npy", np.array([1.5, 2.5]))
    assert read_training_rows(tmp_path) is None


@pytest.mark.parametrize("rows", [0, 1])
def test_a_frame_of_no_or_one_row_has_as_many_fingerprints(rows):
    assert fingerprints(frame().iloc[:rows], COLUMNS).shape == (rows,)


def test_columns_of_any_dtype_get_fingerprints_without_a_warning():
    import warnings

    columns = {"when": pd.to_datetime(["2020-01-01", None]), "took": pd.to_timedelta([1, None], unit="s"),
               "z": np.array([1 + 2j, 1 + 3j]), "items": pd.Series([[1, 2], None], dtype=object),
               "mixed": pd.Series([1, "a"], dtype=object), "flag": pd.array([True, None], dtype="boolean"),
               "count": pd.array([1, None], dtype="Int64"), "month": pd.period_range("2020-01", periods=2, freq="M")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = fingerprints(pd.DataFrame(columns), list(columns))
    assert found.shape == (2,) and found[0] != found[1]
    assert fingerprints(pd.DataFrame({"z": np.array([1 + 2j])}), ["z"]) != fingerprints(
        pd.DataFrame({"z": np.array([1 + 3j])}), ["z"])  # the imaginary part counts


def test_a_bool_column_that_a_missing_value_made_of_objects_keeps_its_rows_fingerprints():
    rows = pd.DataFrame({"member": [True, False], "n": [1, 2]})
    grown = pd.concat([rows, pd.DataFrame({"member": [None], "n": [3]})], ignore_index=True)
    assert grown["member"].dtype == object and grown["n"].dtype == np.int64
    assert (fingerprints(grown, ["member", "n"])[:2] == fingerprints(rows, ["member", "n"])).all()
    mixed = pd.Series([1, "1", None], dtype=object)  # the number 1 and the text "1" are different values
    assert len(set(fingerprints(pd.DataFrame({"m": mixed}), ["m"]).tolist())) == 3


def test_dates_read_back_from_a_csv_file_match_the_training_dates(tmp_path):
    trained = pd.DataFrame({"signup": pd.to_datetime(["2024-02-26 00:00", "2024-03-01 10:30"]), "target": [0, 1]})
    zoned = trained.assign(signup=trained.signup.dt.tz_localize("Europe/Paris"))
    for frame in (trained, zoned):
        frame.to_csv(tmp_path / "holdout.csv", index=False)
        back = pd.read_csv(tmp_path / "holdout.csv")
        assert not pd.api.types.is_datetime64_any_dtype(back["signup"])  # text
        rows = TrainingRows.of_frame(frame, ["signup", "target"])
        assert rows.coerce == {"signup": "datetime"} and rows.seen(back).all()
        assert not fingerprints(back, ["signup", "target"]).tolist() == fingerprints(frame, ["signup", "target"]).tolist()


def test_float32_training_values_dates_as_objects_and_integer_column_labels_match(tmp_path):
    trained = pd.DataFrame({"x": np.array([0.1, 2.7], dtype=np.float32), "target": [0, 1]})
    trained.to_csv(tmp_path / "holdout.csv", index=False)
    back = pd.read_csv(tmp_path / "holdout.csv")  # "0.1" read as the float64 0.1, not float32's 0.10000000149
    rows = TrainingRows.of_frame(trained, ["x", "target"])
    assert rows.coerce == {"x": "float32"} and rows.seen(back).all()
    from datetime import date

    as_dates = pd.DataFrame({"d": pd.to_datetime(["2024-01-02"])})
    as_objects = pd.DataFrame({"d": pd.Series([date(2024, 1, 2)], dtype=object)})
    assert (fingerprints(as_dates, ["d"]) == fingerprints(as_objects, ["d"])).all()
    numbered = pd.DataFrame(np.arange(6.0).reshape(3, 2)).assign(target=[0, 1, 0])  # columns 0, 1, "target"
    rows = TrainingRows.of_frame(numbered, ["0", "1", "target"])  # as a bundle names them
    assert rows.seen(numbered).all() and not rows.seen(numbered.assign(target=[1, 1, 1])).all()
