"""The Batch tab's joining of scored chunks."""

from __future__ import annotations

import pytest

from mloop.errors import DataError
from mloop.ui.predict_batch import joined


def test_csv_chunks_with_one_header_are_joined_with_it_once():
    parts = [b"x,prediction\n1,a\n2,b\n", b"x,prediction\n3,a\n"]
    assert joined(parts, "csv", ["2", "2"]) == b"x,prediction\n1,a\n2,b\n3,a\n"


def test_csv_chunks_with_other_columns_are_refused_naming_both_headers_and_versions():
    parts = [b"x,prediction,probability_a\n1,a,0.9\n", b"x,prediction,probability_c\n3,c,0.8\n"]
    with pytest.raises(DataError, match="do not have the same columns") as err:
        joined(parts, "csv", ["2", "3"])
    assert "chunk 1 (scored by v2) has x,prediction,probability_a" in err.value.message
    assert "chunk 2 (scored by v3) has x,prediction,probability_c" in err.value.message
    assert "Parquet" in err.value.hint
