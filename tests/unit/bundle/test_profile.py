import numpy as np
import pandas as pd
import pytest

from mloop.bundle.profile import CategoricalProfile, NumericProfile, ReferenceProfile


def test_numeric_bins_cover_every_row_and_edges_increase():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=500), "const": np.ones(500)})
    profile = ReferenceProfile(n_bins=10).fit(frame)
    x = profile.features_["x"]
    assert isinstance(x, NumericProfile)
    assert sum(x.counts) == 500 and len(x.edges) == 11
    assert all(a < b for a, b in zip(x.edges, x.edges[1:]))
    assert sum(profile.features_["const"].counts) == 500  # type: ignore[arg-type]
    assert profile.typical("x") == x.mean and profile.typical("nope") == 0.0


def test_categorical_frequencies_and_missing_share():
    frame = pd.DataFrame({"c": ["a", "b", "a", None]})
    profile = ReferenceProfile().fit(frame)
    feature = profile.features_["c"]
    assert isinstance(feature, CategoricalProfile) and feature.counts == {"a": 2, "b": 1}
    assert feature.missing == 0.25 == profile.missing_rate("c")


def test_roundtrip_through_the_file(tmp_path):
    profile = ReferenceProfile().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "b"]}))
    profile.save(tmp_path / "p.json")
    again = ReferenceProfile.load(tmp_path / "p.json")
    assert again.features_ == profile.features_ and again.n_rows_ == 3


def test_the_reference_sample_is_bounded_and_survives_a_roundtrip(tmp_path):
    frame = pd.DataFrame({"x": np.arange(1000, dtype=float), "c": ["a"] * 1000})
    profile = ReferenceProfile(max_sample=100).fit(frame)
    x = profile.features_["x"]
    assert isinstance(x, NumericProfile) and len(x.sample) == 100
    profile.save(tmp_path / "p.json")
    assert ReferenceProfile.load(tmp_path / "p.json").features_["x"] == x


def test_a_profile_file_of_the_earlier_layout_still_loads(tmp_path):
    """The file keeps its layout (features, then the samples apart): bundles registered before still load."""
    old = {"n_bins": 10, "n_rows": 2, "features": {
        "x": {"kind": "numeric", "missing": 0.0, "dtype": "float64", "edges": [0.0, 1.0], "counts": [2],
              "mean": 0.5, "std": 0.5, "min": 0.0, "max": 1.0},
        "c": {"kind": "categorical", "missing": 0.0, "dtype": "object", "counts": {"a": 2}, "other": 0}},
        "sample": {"x": [0.0, 1.0]}}
    profile = ReferenceProfile.from_dict(old)
    assert profile.features_["x"] == NumericProfile(0.0, [0.0, 1.0], [2], "float64", 0.5, 0.5, 0.0, 1.0, [0.0, 1.0])
    assert profile.to_dict() == old


def test_the_median_is_the_training_median_from_the_sample_or_else_read_off_the_bins():
    frame = pd.DataFrame({"x": np.r_[np.arange(100.0), 1e6], "c": ["a"] * 101})
    profile = ReferenceProfile().fit(frame)
    assert profile.median("x") == 50.0 and profile.median("c") is None and profile.median("nope") is None
    profile.features_["x"].sample = []  # a profile that kept no sample: the bins' counts, interpolated
    assert profile.median("x") == pytest.approx(50.0, abs=1.0)
