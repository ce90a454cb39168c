"""A snapshot table written twice gives the same bytes: the same DVC version."""

import hashlib

import pandas as pd

from mloop.data.snapshot import write_table


def test_the_same_rows_give_the_same_file_and_md5_and_no_temporary_is_left(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.5], "colour": ["red", "blue"], "y": pd.array([1, None], dtype="Int64"),
                          "served_at": pd.to_datetime(["2024-05-01 12:00", "2024-05-01 12:01"], utc=True)})
    first = write_table(frame, tmp_path / "one.parquet")
    second = write_table(frame.copy(), tmp_path / "two.parquet")
    assert first == second == hashlib.md5((tmp_path / "two.parquet").read_bytes()).hexdigest()
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
    back = pd.read_parquet(tmp_path / "one.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.parquet", "two.parquet"]
