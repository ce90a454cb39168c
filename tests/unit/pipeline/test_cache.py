from pathlib import Path

import pytest

from mloop.errors import DataError
from mloop.pipeline.artifacts import ArtifactStore
from mloop.pipeline.cache import (
    CacheEntry,
    StepCache,
    cache_key,
    code_digest,
    file_inputs,
)
from mloop.pipeline.dsl import step


def helper(x):
    return x + 1


@step
def uses_helper(x: int) -> int:
    return helper(x)


@step
def standalone(x: int) -> int:
    return x + 1


BASE = dict(code="c", params={"n": 5}, inputs={"data": "d1"}, files={}, outputs=("output",))


def key(**changes):
    return cache_key(**{**BASE, **changes})


def test_key_is_stable_for_the_same_code_params_and_inputs():
    assert key() == key()
    assert key(params={"n": 5}) == key()


@pytest.mark.parametrize("change", [
    {"code": "c2"},
    {"params": {"n": 6}},
    {"params": {"n": 5, "m": 1}},
    {"inputs": {"data": "d2"}},
    {"files": {"path": "f1"}},
    {"outputs": ("a", "b")},
])
def test_key_changes_with_any_ingredient(change):
    assert key(**change) != key()


def test_code_digest_covers_same_module_helpers(monkeypatch):
    before = code_digest(uses_helper)
    monkeypatch.setattr(helper, "__code__", (lambda x: x + 2).__code__)
    # getsource reads the file, which did not change; the digest of the code object would.
    assert code_digest(standalone) != before


def test_changed_input_file_changes_its_digest(tmp_path: Path):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    first = file_inputs({"path": Path("data.csv")}, {}, tmp_path, "load")
    data.write_text("a,b\n1,3\n")
    second = file_inputs({"path": Path("data.csv")}, {}, tmp_path, "load")
    assert first["path"] != second["path"]
    assert key(files=first) != key(files=second)


def test_path_annotated_string_parameter_is_a_file_input(tmp_path: Path):
    (tmp_path / "x.txt").write_text("x")
    assert "p" in file_inputs({"p": "x.txt"}, {"p": Path}, tmp_path, "s")
    assert file_inputs({"p": "x.txt"}, {"p": str}, tmp_path, "s") == {}


def test_missing_input_file_is_a_data_error_naming_step_and_override(tmp_path: Path):
    with pytest.raises(DataError, match=r"step 'load': input file data/none.csv does not exist") as info:
        file_inputs({"path": Path("data/none.csv")}, {}, tmp_path, "load")
    assert "-p load.path=PATH" in info.value.hint


def test_cache_entry_is_a_miss_when_an_output_object_is_gone(tmp_path: Path):
    store = ArtifactStore(tmp_path / "objects")
    cache = StepCache(tmp_path / "cache", store)
    ref = store.put({"a": 1})
    cache.put("k" * 64, CacheEntry("s", {"output": ref}, {"m": 1.0}))
    assert cache.get("k" * 64).metrics == {"m": 1.0}
    store.path(ref).unlink()
    assert cache.get("k" * 64) is None


def test_corrupt_cache_entry_is_a_miss(tmp_path: Path):
    cache = StepCache(tmp_path / "cache", ArtifactStore(tmp_path / "objects"))
    path = tmp_path / "cache" / "ab" / ("ab" + "0" * 62 + ".json")
    path.parent.mkdir(parents=True)
    path.write_text('{"step": "s", "outp')
    assert cache.get("ab" + "0" * 62) is None
