import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mloop.bundle.profile import ReferenceProfile
from mloop.monitor.drift import DriftDetector, psi

RNG = np.random.default_rng(42)
REFERENCE = pd.DataFrame({"x": RNG.normal(size=3000), "y": RNG.exponential(size=3000),
                          "c": RNG.choice(["a", "b", "c"], size=3000, p=[0.5, 0.3, 0.2])})


@pytest.fixture(scope="module")
def detector() -> DriftDetector:
    return DriftDetector(min_samples=50).fit(ReferenceProfile(max_sample=5000).fit(REFERENCE))


def test_same_distribution_is_not_drift(detector):
    rng = np.random.default_rng(4)  # a fixed draw; how often chance alone flags drift is tested below
    window = pd.DataFrame({"x": rng.normal(size=800), "y": rng.exponential(size=800),
                           "c": rng.choice(["a", "b", "c"], size=800, p=[0.5, 0.3, 0.2])})
    report = detector.compare(window)
    assert report.drifted_share == 0.0, {k: v.reason for k, v in report.features.items()}
    assert report.features["x"].psi < 0.05


def test_shifted_distribution_is_drift(detector):
    rng = np.random.default_rng(8)
    window = pd.DataFrame({"x": rng.normal(loc=0.8, size=800), "y": rng.exponential(size=800),
                           "c": rng.choice(["a", "b", "c"], size=800, p=[0.2, 0.3, 0.5])})
    report = detector.compare(window)
    assert report.features["x"].drifted and report.features["x"].psi > 0.2
    assert not report.features["y"].drifted
    assert report.features["c"].drifted
    assert report.drifted_share == pytest.approx(2 / 3)


def test_ks_agrees_with_scipy_exactly(detector):
    window = np.random.default_rng(9).normal(loc=0.1, size=500)
    ours = detector.compare(pd.DataFrame({"x": window})).features["x"]
    reference = stats.ks_2samp(REFERENCE["x"].to_numpy(dtype=np.float32).astype(np.float64), window)
    assert ours.statistic == pytest.approx(reference.statistic, abs=1e-12)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-9)


def test_psi_matches_the_textbook_formula(detector):
    window = np.random.default_rng(10).normal(loc=0.5, size=1000)
    spec = detector.profile_.features_["x"]
    edges = np.asarray(spec.edges)
    edges[0], edges[-1] = -np.inf, np.inf
    actual = np.histogram(window, bins=edges)[0] / 1000
    expected = np.asarray(spec.counts) / sum(spec.counts)
    textbook = float(np.sum((actual - expected) * np.log(actual / expected)))
    assert detector.compare(pd.DataFrame({"x": window})).features["x"].psi == pytest.approx(textbook, rel=1e-6)


def test_values_outside_the_training_range_land_in_the_outer_bins():
    assert psi(np.array([10.0, 10.0]), np.array([0.0, 20.0])) > 1.0


def test_chi_square_is_scipys_test_of_homogeneity_of_training_and_window_counts(detector):
    window = pd.DataFrame({"c": ["a"] * 300 + ["b"] * 100 + ["c"] * 100})
    ours = detector.compare(window).features["c"]
    counts = detector.profile_.features_["c"].counts
    table = [[counts[k] for k in ("a", "b", "c")], [300, 100, 100]]
    reference = stats.chi2_contingency(table, correction=False)
    assert ours.statistic == pytest.approx(reference.statistic) and ours.p_value == pytest.approx(reference.pvalue)


def test_an_unseen_category_is_drift(detector):
    window = pd.DataFrame({"c": ["a"] * 250 + ["b"] * 150 + ["c"] * 95 + ["zz"] * 5})
    feature = detector.compare(window).features["c"]
    assert feature.drifted and "never seen in training" in feature.reason


def test_a_small_window_gets_no_verdict_and_says_why(detector):
    report = detector.compare(pd.DataFrame({"x": np.zeros(10)}))
    assert report.features["x"].drifted is None and "min_samples" in report.features["x"].reason
    assert report.drifted_share is None


def test_missing_values_are_counted_not_compared_and_a_new_share_of_them_is_drift(detector):
    window = np.random.default_rng(11).normal(size=300)
    window[:40] = np.nan  # training had none
    feature = detector.compare(pd.DataFrame({"x": window})).features["x"]
    assert feature.missing == 40 and feature.n == 260 and feature.p_value > 0.05  # the values themselves: stable
    assert feature.drifted and "missing values 13.3% vs 0.0% in training" in feature.reason
    assert detector.compare(pd.DataFrame({"x": window}), missing_tested=()).features["x"].drifted is False


def test_a_jump_in_missing_values_is_found_and_the_same_share_is_not():
    rng = np.random.default_rng(21)
    reference = pd.DataFrame({"x": rng.normal(size=3000)})
    reference.loc[rng.random(3000) < 0.08, "x"] = np.nan
    detector = DriftDetector(min_samples=50).fit(ReferenceProfile().fit(reference))
    same = pd.Series(rng.normal(size=1000)).mask(rng.random(1000) < 0.08)
    jump = pd.Series(rng.normal(size=1000)).mask(rng.random(1000) < 0.64)
    assert detector.compare(pd.DataFrame({"x": same})).features["x"].drifted is False
    found = detector.compare(pd.DataFrame({"x": jump})).features["x"]
    assert found.drifted and found.missing_p_value < 1e-10 and "vs 7.7% in training" in found.reason


def test_per_feature_threshold(detector):
    window = pd.DataFrame({"x": np.random.default_rng(12).normal(loc=0.15, size=600)})
    strict = DriftDetector(min_samples=50, thresholds={"x": 1e-12}).fit(detector.profile_)
    assert detector.compare(window).features["x"].drifted is True
    assert strict.compare(window).features["x"].drifted is False


def test_arrays_with_feature_names_work_like_frames(detector):
    rows = np.random.default_rng(13).normal(size=(200, 1))
    assert detector.compare(rows, ["x"]).features["x"].n == 200


def test_false_alarm_rate_matches_alpha():
    """Windows from the reference's own distribution are flagged about alpha of the time, no more."""
    detector = DriftDetector(alpha=0.05, min_samples=50).fit(ReferenceProfile().fit(REFERENCE[["x"]]))
    rng = np.random.default_rng(100)
    flagged = [detector.compare(pd.DataFrame({"x": rng.normal(size=400)})).features["x"].drifted for _ in range(200)]
    assert 0.01 <= np.mean(flagged) <= 0.10


def test_a_profile_without_a_sample_is_judged_by_psi():
    profile = ReferenceProfile().fit(REFERENCE[["x"]])
    profile.features_["x"].sample = []  # as in bundles written before the sample existed
    detector = DriftDetector(min_samples=50).fit(profile)
    shifted = detector.compare(pd.DataFrame({"x": np.random.default_rng(5).normal(loc=1.0, size=500)})).features["x"]
    assert shifted.drifted and "no reference sample" in shifted.reason and shifted.p_value is None


def test_the_large_window_ks_equals_scipys_statistic_and_p_value_with_ties():
    from mloop.monitor.drift import ks_asymptotic_p, ks_statistic, sorted_bin_counts

    rng = np.random.default_rng(7)
    for trial in range(100):
        m, n = int(rng.integers(1, 400)), int(rng.integers(1, 4000))
        decimals = int(rng.integers(0, 3))  # rounding makes ties within and across the samples
        ref = np.round(rng.normal(size=m), decimals)
        cur = np.round(rng.normal(rng.uniform(-0.3, 0.3), size=n), decimals)
        values, counts = np.unique(ref, return_counts=True)
        d = ks_statistic(values, np.cumsum(counts) / m, np.sort(cur))
        expected = stats.ks_2samp(ref, cur, method="asymp")
        assert d == pytest.approx(expected.statistic, abs=1e-12), trial
        assert ks_asymptotic_p(d, m, n) == pytest.approx(expected.pvalue, abs=1e-12), trial
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
        if edges.size > 1:
            assert (sorted_bin_counts(np.sort(cur), edges) == np.histogram(cur, edges)[0]).all()


def test_windows_above_scipys_exact_limit_get_scipys_auto_result():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=3000)})
    detector = DriftDetector().fit(ReferenceProfile().fit(frame))
    window = pd.DataFrame({"x": rng.normal(0.02, 1, size=60_000)})
    result = detector.compare(window).features["x"]
    expected = stats.ks_2samp(np.asarray(detector.profile_.features_["x"].sample), window["x"])  # method="auto"
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_the_detector_the_settings_configure_is_the_one_the_server_and_report_use():
    from mloop.config import MonitorSection

    detector = DriftDetector.from_settings(MonitorSection(alpha=0.01, min_samples=7, thresholds={"x": 0.2}))
    assert (detector.alpha, detector.min_samples, detector.thresholds) == (0.01, 7, {"x": 0.2})


def _draw(kind: str, rng: np.random.Generator, n: int, shifted: bool = False) -> pd.Series:
    """One feature of each type, from the same distribution or a shifted one."""
    if kind == "continuous":
        return pd.Series(rng.normal(loc=0.3 if shifted else 0.0, size=n))
    if kind == "integer":
        return pd.Series(rng.poisson(4.0 if shifted else 3.0, size=n).astype(float))
    if kind == "discrete non-integer":
        values = np.array([-0.0507, -0.0253, 0.0, 0.0253, 0.0507, 0.1])
        p = np.array([0.1, 0.2, 0.3, 0.2, 0.1, 0.1]) if not shifted else np.array([0.25, 0.2, 0.2, 0.15, 0.1, 0.1])
        return pd.Series(rng.choice(values, size=n, p=p))
    if kind == "boolean":
        return pd.Series(rng.random(n) < (0.45 if shifted else 0.3))
    if kind == "categorical":
        p = [0.5, 0.3, 0.2] if not shifted else [0.35, 0.35, 0.3]
        return pd.Series(rng.choice(["red", "green", "blue"], size=n, p=p))
    if kind == "continuous with missing values":
        values = pd.Series(rng.normal(size=n))
        return values.mask(rng.random(n) < (0.25 if shifted else 0.1))
    raise AssertionError(kind)


KINDS = ["continuous", "integer", "discrete non-integer", "boolean", "categorical", "continuous with missing values"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_feature_type_is_flagged_at_about_alpha_when_unchanged_and_caught_when_shifted(kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))  # the same draws in every run
    reference = pd.DataFrame({"f": _draw(kind, rng, 3000)})
    detector = DriftDetector(alpha=0.05, min_samples=50).fit(ReferenceProfile().fit(reference))
    assert detector.compare(reference).features["f"].drifted is False, "the training data itself is not drift"
    same = [detector.compare(pd.DataFrame({"f": _draw(kind, rng, 400)})).features["f"].drifted for _ in range(300)]
    shifted = [detector.compare(pd.DataFrame({"f": _draw(kind, rng, 400, shifted=True)})).features["f"].drifted
               for _ in range(50)]
    assert np.mean(same) <= 0.09, f"{kind}: {np.mean(same):.3f} of unchanged windows flagged (alpha 0.05)"
    assert np.mean(shifted) >= 0.9, f"{kind}: only {np.mean(shifted):.2f} of shifted windows caught"


def test_an_unseen_category_is_reported_with_its_share_and_no_nan_statistics(detector):
    only_new = detector.compare(pd.DataFrame({"c": ["zz"] * 200})).features["c"]
    assert only_new.drifted and "200 of 200 values (100.0%) are categories never seen" in only_new.reason
    assert only_new.p_value is None and only_new.statistic is None
    some = detector.compare(pd.DataFrame({"c": ["a"] * 150 + ["b"] * 90 + ["c"] * 50 + ["new"] * 10})).features["c"]
    assert some.drifted and "10 of 300 values (3.3%)" in some.reason and some.p_value is not None


def test_a_boolean_feature_held_as_the_numbers_one_and_zero_is_compared_with_its_training_true_and_false():
    rng = np.random.default_rng(7)
    training = pd.DataFrame({"member": rng.random(3000) < 0.3})
    detector = DriftDetector(alpha=0.05, min_samples=50).fit(ReferenceProfile().fit(training))
    served = pd.DataFrame({"member": (rng.random(400) < 0.3).astype(float)})  # as the server's window holds it
    same = detector.compare(served).features["member"]
    assert same.drifted is False and "never seen" not in same.reason and same.psi < 0.05
    shifted = detector.compare(pd.DataFrame({"member": (rng.random(400) < 0.6).astype(float)})).features["member"]
    assert shifted.drifted is True and "never seen" not in shifted.reason
    odd = detector.compare(pd.DataFrame({"member": np.r_[np.zeros(390), np.full(10, 2.0)]})).features["member"]
    assert "never seen" in odd.reason  # a number that is neither is still a value training never had
    from mloop.monitor.report import histogram_counts

    trained, served_counts = histogram_counts("member", detector.profile_.features_["member"], served)
    assert served_counts.sum() == 400 and list(detector.profile_.features_["member"].counts) == ["False", "True"]
