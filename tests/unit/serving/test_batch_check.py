"""``check_file``: every value the server would refuse in a file, each with its row and column, found by the
server's own checks before anything is scored; notes for what it takes but training never saw."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mloop.serving.batch_scoring import check_file, score_file
from mloop.serving.protocol import RequestError


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rows.csv"
    path.write_text(text)
    return path


def test_each_refused_value_is_listed_with_its_row_and_column(small_model, tmp_path: Path):
    path = _csv(tmp_path, "id,a,b,c\n"
                          "r0,0.1,0.2,0.3\n"
                          "r1,x,0.2,0.3\n"     # not a number
                          "r2,0.1,0.2,0.3\n"
                          "r3,0.1,,0.3\n"      # missing where the model takes none
                          "r4,0.1,0.2,inf\n"   # infinite
                          "r5,0.2,y,0.4\n")    # not a number, in another column
    check = check_file(small_model, path, "csv")
    assert [(p.row, p.column) for p in check.problems] == [(1, "a"), (3, "b"), (4, "c"), (5, "b")]  # by row
    assert "feature 'b' in row 3 is missing" in check.problems[1].message
    assert not check.ok and check.complete and check.rows == 6
    assert [(n.column, n.row) for n in check.notes] == [("id", None)]  # passes through to the scored file


def test_a_file_the_server_takes_has_no_problems_and_notes_numbers_beyond_the_training_range(small_model, tmp_path):
    from mloop.bundle.schema import describe

    small_model.info.schema = describe(pd.DataFrame({"a": [-3.0, 3.0], "b": [-3.0, 3.0], "c": [-3.0, 3.0]}))
    try:
        path = _csv(tmp_path, "a,b,c\n0.1,0.2,0.3\n50,0.2,0.3\n0.1,0.2,-7\n")
        check = check_file(small_model, path, "csv")
        assert check.ok and check.rows == 3
        assert [(n.column, n.row) for n in check.notes] == [("a", 1), ("c", 2)]
        assert "outside the training range -3 to 3, first 50.0 in row 1" in check.notes[0].message
        with io.BytesIO() as out:  # and the server scores it
            assert score_file(small_model, path, "csv", out) == 3
    finally:
        small_model.info.schema = []


def test_a_missing_feature_column_is_the_one_problem_named(small_model, tmp_path: Path):
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"a": [0.1], "c": [0.3]}).to_parquet(path)
    check = check_file(small_model, path, "parquet")
    assert [(p.column, p.row) for p in check.problems] == [("b", None)]
    assert "column 'b' is missing" in check.problems[0].message


def test_it_stops_after_the_limit_and_says_there_may_be_more(small_model, tmp_path: Path):
    path = _csv(tmp_path, "a,b,c\n" + "x,0.2,0.3\n" * 50)
    check = check_file(small_model, path, "csv", limit=10)
    assert len(check.problems) == 10 and not check.complete
    assert [p.row for p in check.problems] == list(range(10))


def test_a_file_that_does_not_read_is_one_problem_of_the_file(small_model, tmp_path: Path):
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"not parquet at all")
    [problem] = check_file(small_model, path, "parquet").problems
    assert problem.column == "" and "cannot be read" in problem.message


def test_the_server_refuses_the_first_of_them_naming_its_row(small_model, tmp_path: Path):
    path = _csv(tmp_path, "a,b,c\n0.1,0.2,0.3\n0.1,oops,0.3\n")
    with pytest.raises(RequestError) as caught, io.BytesIO() as out:
        score_file(small_model, path, "csv", out)
    assert (caught.value.field, caught.value.row) == ("b", 1)
    assert "row 1" in caught.value.message


def test_a_csv_column_of_numbers_with_one_word_refuses_only_the_word(tmp_path: Path):
    """pandas reads such a column as text; the numbers in it are still numbers (and booleans, booleans)."""
    from mloop.bundle.format import BundleInfo
    from mloop.bundle.loaded import Feature, LoadedModel
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"n": np.arange(20), "flag": np.arange(20) % 3 == 0})
    estimator = LogisticRegression().fit(frame, np.arange(20) % 2)
    model = LoadedModel("m", "1", estimator, BundleInfo(target="t", features=["n", "flag"], classes=[0, 1]),
                        [Feature("n", "integer", False), Feature("flag", "boolean", False)])
    path = _csv(tmp_path, "n,flag\n1,true\n2,False\nthree,True\n4,maybe\n")
    check = check_file(model, path, "csv")
    assert [(p.row, p.column) for p in check.problems] == [(2, "n"), (3, "flag")]
    assert 'got "three"' in check.problems[0].message and 'got "maybe"' in check.problems[1].message


def test_a_chunk_with_faults_is_checked_again_block_by_block_not_whole_per_fault(small_model, tmp_path, monkeypatch):
    from mloop.serving import batch_scoring

    rows = 5000
    frame = pd.DataFrame({"a": np.full(rows, 0.1).astype(object), "b": 0.2, "c": 0.3})
    faults = list(range(0, rows, 250))  # 20 faults, one per 250 rows
    frame.loc[faults, "a"] = "x"
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    checked = []
    validated = batch_scoring._validated

    def counting(model, chunk, *, first_row):
        checked.append(len(chunk))
        return validated(model, chunk, first_row=first_row)

    monkeypatch.setattr(batch_scoring, "_validated", counting)
    check = check_file(small_model, path, "csv")
    assert [p.row for p in check.problems] == faults and check.complete
    assert sum(checked) <= 2 * rows + len(faults) * batch_scoring.BLOCK_ROWS  # (was (faults + 1) * rows)


def test_a_column_at_fault_as_a_whole_is_listed_once_not_once_per_chunk(small_model, tmp_path, monkeypatch):
    from mloop.serving import batch_scoring

    monkeypatch.setattr(batch_scoring, "CHUNK_ROWS", 10)
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"a": [True, False] * 20, "b": 0.2, "c": 0.3}).to_parquet(path)
    check = check_file(small_model, path, "parquet")
    assert [(p.column, p.row) for p in check.problems] == [("a", None)] and check.rows == 40


def test_a_semicolon_separated_file_is_one_problem_of_the_file_saying_so(small_model, tmp_path: Path):
    path = _csv(tmp_path, "id;a;b;c\nr0;0,1;0,2;0,3\nr1;0,4;0,5;0,6\n")  # as a spreadsheet saves it in many locales
    check = check_file(small_model, path, "csv")
    [problem] = check.problems
    assert problem.column == "" and problem.row is None and not check.notes
    assert "the file looks ';'-separated" in problem.message and "save it comma-separated" in problem.message
    with pytest.raises(RequestError) as caught, io.BytesIO() as out:  # the server says the same
        score_file(small_model, path, "csv", out)
    assert caught.value.field == "file" and caught.value.status == 400
    assert caught.value.message == problem.message


def test_a_tab_separated_file_is_named_so_and_a_comma_file_with_semicolons_in_a_column_is_taken(small_model, tmp_path):
    path = _csv(tmp_path, "a\tb\tc\n0.1\t0.2\t0.3\n")
    [problem] = check_file(small_model, path, "csv").problems
    assert "looks tab-separated" in problem.message
    path = _csv(tmp_path, "note;x,a,b,c\nx;y,0.1,0.2,0.3\n")  # every feature among the comma-separated names
    check = check_file(small_model, path, "csv")
    assert check.ok and [n.column for n in check.notes] == ["note;x"]
