import numpy as np
import pandas as pd

from mloop.monitor.profile import ReferenceProfile


def test_numeric_bins_cover_every_row_and_edges_increase():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=500), "const": np.ones(500)})
    profile = ReferenceProfile(n_bins=10).fit(frame)
    x = profile.features_["x"]
    assert sum(x["counts"]) == 500 and len(x["edges"]) == 11
    assert all(a < b for a, b in zip(x["edges"], x["edges"][1:]))
    assert sum(profile.features_["const"]["counts"]) == 500


def test_categorical_frequencies_and_missing_share():
    frame = pd.DataFrame({"c": ["a", "b", "a", None]})
    feature = ReferenceProfile().fit(frame).features_["c"]
    assert feature["kind"] == "categorical" and feature["counts"] == {"a": 2, "b": 1}
    assert feature["missing"] == 0.25


def test_roundtrip_through_dict(tmp_path):
    profile = ReferenceProfile().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    profile.save(tmp_path / "p.json")
    again = ReferenceProfile.load(tmp_path / "p.json")
    assert again.features_ == profile.features_ and again.n_rows_ == 3


def test_the_reference_sample_is_bounded_and_survives_a_roundtrip(tmp_path):
    frame = pd.DataFrame({"x": np.arange(1000, dtype=float), "c": ["a"] * 1000})
    profile = ReferenceProfile(max_sample=100).fit(frame)
    assert len(profile.sample_["x"]) == 100 and "c" not in profile.sample_
    profile.save(tmp_path / "p.json")
    assert ReferenceProfile.load(tmp_path / "p.json").sample_ == profile.sample_
