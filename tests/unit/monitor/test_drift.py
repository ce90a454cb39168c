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


def test_chi_square_agrees_with_scipy(detector):
    window = pd.DataFrame({"c": ["a"] * 300 + ["b"] * 100 + ["c"] * 100})
    ours = detector.compare(window).features["c"]
    counts = detector.profile_.features_["c"].counts
    total = sum(counts.values())
    expected = [counts[k] / total * 500 for k in ("a", "b", "c")]
    reference = stats.chisquare([300, 100, 100], expected)
    assert ours.statistic == pytest.approx(reference.statistic) and ours.p_value == pytest.approx(reference.pvalue)


def test_an_unseen_category_is_drift(detector):
    window = pd.DataFrame({"c": ["a"] * 250 + ["b"] * 150 + ["c"] * 95 + ["zz"] * 5})
    feature = detector.compare(window).features["c"]
    assert feature.drifted and "never seen in training" in feature.reason


def test_a_small_window_gets_no_verdict_and_says_why(detector):
    report = detector.compare(pd.DataFrame({"x": np.zeros(10)}))
    assert report.features["x"].drifted is None and "min_samples" in report.features["x"].reason
    assert report.drifted_share is None


def test_missing_values_are_counted_not_compared(detector):
    window = np.random.default_rng(11).normal(size=300)
    window[:40] = np.nan
    feature = detector.compare(pd.DataFrame({"x": window})).features["x"]
    assert feature.missing == 40 and feature.n == 260 and feature.drifted is False


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
