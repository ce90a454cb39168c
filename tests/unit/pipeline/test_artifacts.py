from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mloop.errors import MaterializerError, StoreError
from mloop.pipeline.artifacts import (
    ArtifactStore,
    materializer_for,
    register_materializer,
)


class Point:
    def __init__(self, x):
        self.x = x


def test_dataframe_roundtrips_through_parquet(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=[10, 11])
    ref = store.put(frame)
    assert ref.materializer == "parquet" and store.path(ref).suffix == ".parquet"
    pd.testing.assert_frame_equal(store.get(ref), frame)


def test_series_comes_back_as_series(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    series = pd.Series([1.5, 2.5], name="s")
    pd.testing.assert_series_equal(store.get(store.put(series)), series)


def test_numpy_array_roundtrips_without_pickle(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    ref = store.put(array)
    assert ref.materializer == "numpy"
    np.testing.assert_array_equal(store.get(ref), array)


def test_estimator_is_pickled_and_predicts_after_loading(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    ref = store.put(model)
    assert ref.materializer == "pickle"
    assert list(store.get(ref).predict([[0.0], [3.0]])) == [0, 1]


def test_plain_values_are_json_and_other_objects_pickle(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    assert materializer_for({"a": [1, 2.5, None, "x"]}).name == "json"
    assert materializer_for((1, 2)).name == "pickle"  # a tuple would come back a list through JSON
    assert store.get(store.put(Point(3))).x == 3


def test_same_content_is_stored_once_under_the_same_digest(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    first, second = store.put({"a": 1}), store.put({"a": 1})
    assert first == second
    assert len([p for p in tmp_path.rglob("*") if p.is_file() and "tmp" not in p.relative_to(tmp_path).parts]) == 1


def test_unstorable_value_raises_and_leaves_no_object(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(MaterializerError, match="cannot store a generator"):
        store.put(x for x in range(3))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_missing_object_is_a_store_error_with_a_fix(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    ref = store.put([1, 2])
    store.path(ref).unlink()
    with pytest.raises(StoreError, match="is missing") as info:
        store.get(ref)
    assert "runs anew" in info.value.hint


def test_a_truncated_object_is_no_longer_there_and_the_next_put_rewrites_it(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    frame = pd.DataFrame({"a": range(1000)})
    ref = store.put(frame)
    path = store.path(ref)
    path.write_bytes(path.read_bytes()[: ref.size // 2])  # a full disk, a crash of the machine
    assert not store.exists(ref)  # a cache lookup misses: the step runs again
    assert store.put(frame) == ref
    assert store.exists(ref) and store.intact(path)
    pd.testing.assert_frame_equal(store.get(ref), frame)


def test_an_object_damaged_in_place_is_quarantined_on_load_and_rewritten_by_put(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    ref = store.put(model)
    path = store.path(ref)
    data = bytearray(path.read_bytes())
    data[10:30] = b"\xff" * 20  # same size, other bytes: a bad sector
    path.write_bytes(bytes(data))
    assert store.exists(ref) and not store.intact(path)
    with pytest.raises(StoreError, match="damaged on disk") as info:
        store.get(ref)
    assert "runs anew" in info.value.hint
    assert not path.exists() and (tmp_path / "quarantine" / path.name).exists()
    assert not store.exists(ref)
    store.put(model)
    assert store.intact(path) and list(store.get(ref).predict([[0.0], [3.0]])) == [0, 1]


def test_a_same_size_damaged_object_is_rewritten_by_put(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    ref = store.put({"a": 1})
    path = store.path(ref)
    path.write_bytes(b"x" * ref.size)
    store.put({"a": 1})  # what --no-cache does: the writer checks the copy there, not only its name
    assert store.get(ref) == {"a": 1}


def test_a_damaged_file_artifact_is_rewritten(tmp_path: Path):
    store = ArtifactStore(tmp_path / "objects")
    source = tmp_path / "figure.png"
    source.write_bytes(b"png" * 100)
    ref = store.put_file(source)
    store.file_path(ref).write_bytes(b"png" * 99)
    assert not store.exists(ref)
    store.put_file(source)
    assert store.file_path(ref).read_bytes() == source.read_bytes()


def test_custom_materializer_is_found_along_the_mro(tmp_path: Path):
    class PointMaterializer:
        name = "point"
        suffix = ".pt"

        def save(self, value, path):
            path.write_text(str(value.x))

        def load(self, path):
            return Point(int(path.read_text()))

    class SubPoint(Point):
        pass

    register_materializer(PointMaterializer(), f"{Point.__module__}.{Point.__qualname__}")
    store = ArtifactStore(tmp_path)
    ref = store.put(SubPoint(7))
    assert ref.materializer == "point" and store.get(ref).x == 7


def test_a_full_disk_is_a_store_error_naming_the_store_and_the_fix(tmp_path: Path, monkeypatch):
    import errno

    from mloop.pipeline import artifacts

    store = ArtifactStore(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts, "commit", full)
    with pytest.raises(StoreError, match="the disk holding the store .* is full") as info:
        store.put({"a": 1})
    assert "df -h" in info.value.hint and "from the cache" in info.value.hint
    source = tmp_path / "f.txt"
    source.write_text("x")
    with pytest.raises(StoreError, match="is full"):
        store.put_file(source)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != "" and p != source
                and "tmp" not in p.parts]
