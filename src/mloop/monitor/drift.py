"""Data drift of a window of requests against the training reference, per feature.

For each numeric feature: the Population Stability Index over the reference's quantile bins (the
outer bins open to infinity, so values outside the training range count), and the exact two-sample
Kolmogorov-Smirnov test against the reference sample (scipy). For each categorical feature: the
chi-square test of the window's category counts against the reference frequencies. Missing values are
counted, never compared. A window smaller than ``min_samples`` gets no verdict, and says so.

``DriftDetector`` follows scikit-learn's contract: settings in ``__init__``, ``fit(profile)`` returns
self, learned state in trailing-underscore attributes; ``compare(window)`` returns a ``DriftReport``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mloop.monitor.model import CategoricalReference, NumericReference, Reference

if TYPE_CHECKING:
    from mloop.config import MonitorSection

EPSILON = 1e-4  # floor for empty bins in PSI, so a bin seen on one side only is finite


@dataclass
class FeatureDrift:
    feature: str
    kind: str  # numeric, discrete (a numeric feature of few values) or categorical
    n: int
    missing: int
    statistic: float | None = None  # KS D or chi-square
    p_value: float | None = None
    psi: float | None = None
    drifted: bool | None = None  # None: not enough data for a verdict
    reason: str = ""
    missing_p_value: float | None = None  # the share of missing values against training's


@dataclass
class DriftReport:
    features: dict[str, FeatureDrift] = field(default_factory=dict)
    n_rows: int = 0

    @property
    def evaluated(self) -> list[FeatureDrift]:
        return [f for f in self.features.values() if f.drifted is not None]

    @property
    def drifted_share(self) -> float | None:
        """The share of evaluated features that drifted, or None if none could be evaluated."""
        evaluated = self.evaluated
        return sum(bool(f.drifted) for f in evaluated) / len(evaluated) if evaluated else None


def open_edges(edges: Any) -> np.ndarray:
    """The profile's bin edges with the outer two opened to infinity (out-of-range values still count)."""
    edges = np.asarray(edges, dtype=np.float64)
    return np.concatenate([[-np.inf], edges[1:-1], [np.inf]])


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population Stability Index of two count vectors over the same bins."""
    e = np.maximum(expected / max(expected.sum(), 1), EPSILON)
    a = np.maximum(actual / max(actual.sum(), 1), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


SCIPY_EXACT_MAX_N = 10_000  # scipy.stats.ks_2samp's own limit for its exact method (method="auto")
DISCRETE_MAX_VALUES = 20  # a numeric feature with at most this many distinct values is tested as discrete


def sorted_bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` for already sorted ``values``: a binary search per edge."""
    below = np.searchsorted(values, edges[:-1], side="left")  # values < each edge
    return np.diff(np.append(below, np.searchsorted(values, edges[-1], side="right")))  # last bin closed, as numpy


def ks_statistic(ref_values: np.ndarray, ref_cdf: np.ndarray, current: np.ndarray) -> float:
    """The exact two-sample KS statistic D from the reference's distinct sorted values, its ECDF at each,
    and the current sample sorted.

    Between two consecutive reference values the reference ECDF is flat and the current one can only
    rise, so the largest gap is at an interval's ends: the current ECDF at a reference value, or just
    before the next one. Both come from a binary search of each reference value in the current sample
    (O(m log n) after the sort; the sort of the window is shared by all features, see ``score``).
    """
    n = current.size
    at_or_below = np.searchsorted(current, ref_values, side="right") / n  # F_cur(r_k), right-continuous
    below = np.searchsorted(current, ref_values, side="left") / n  # F_cur just before r_k
    previous = np.concatenate([[0.0], ref_cdf[:-1]])  # F_ref just before r_k
    return float(max(np.abs(ref_cdf - at_or_below).max(initial=0.0), np.abs(previous - below).max(initial=0.0)))


def ks_asymptotic_p(statistic: float, m: int, n: int) -> float:
    """Two-sided p-value of D as scipy's ``ks_2samp`` computes it for large samples (method="asymp")."""
    from scipy.stats import kstwo

    big, small = sorted((float(m), float(n)), reverse=True)
    return float(np.clip(kstwo.sf(statistic, np.round(big * small / (big + small))), 0.0, 1.0))


@dataclass(frozen=True)
class Categories:
    """Reference counts of categories that are not a feature of the profile (e.g. the training labels)."""

    counts: Mapping[str, int]
    other: int = 0
    missing: float = 0.0
    kind: Literal["categorical"] = "categorical"


def category_values(reference: CategoricalReference, column: Any) -> Any:
    """A Series' values that are not missing, as text named as ``reference`` names its categories: a boolean
    feature ("True", "False" in training) held as the numbers 1.0 and 0.0, as a server's window and its
    prediction log hold it, is named "True" and "False" too."""
    import pandas as pd

    values = column.dropna()
    if not reference.counts or not set(reference.counts) <= {"True", "False"} \
            or not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.astype(str)
    numbers = values.to_numpy(dtype=np.float64)
    text = np.where(numbers == 1.0, "True", np.where(numbers == 0.0, "False", values.astype(str).to_numpy()))
    return pd.Series(text, index=values.index)


def _pool(expected: np.ndarray, ordered: bool, minimum: float = 5.0) -> list[list[int]]:
    """Groups of bins, each expected at least ``minimum`` times: neighbours for ordered values, else the
    rarest together (a short remainder joins the last group)."""
    order = np.arange(expected.size) if ordered else np.argsort(expected)
    groups: list[list[int]] = []
    current: list[int] = []
    for index in order.tolist():
        current.append(index)
        if expected[current].sum() >= minimum:
            groups.append(current)
            current = []
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


class DriftDetector:
    def __init__(self, alpha: float = 0.05, psi_threshold: float = 0.2, min_samples: int = 100,
                 thresholds: dict[str, float] | None = None) -> None:
        self.alpha = alpha
        self.psi_threshold = psi_threshold
        self.min_samples = min_samples
        self.thresholds = thresholds or {}

    @classmethod
    def from_settings(cls, settings: MonitorSection) -> DriftDetector:
        """The detector ``[monitor]`` configures (the live server and ``mloop monitor report`` alike)."""
        return cls(alpha=settings.alpha, min_samples=settings.min_samples, thresholds=dict(settings.thresholds))

    def fit(self, profile: Reference) -> DriftDetector:
        self.profile_ = profile
        self.numeric_: dict[str, NumericReference] = {}
        self.categorical_: dict[str, CategoricalReference] = {}
        for name, feature in profile.features_.items():
            if feature.kind == "numeric":
                self.numeric_[name] = feature
            else:
                self.categorical_[name] = feature
        self.sorted_sample_ = {name: np.sort(np.asarray(f.sample, dtype=np.float64))
                               for name, f in self.numeric_.items() if len(f.sample)}
        # For the KS statistic of large windows: the reference's distinct values and its ECDF at each; a
        # feature of few distinct values is tested as discrete (chi-square over them) instead.
        self.reference_cdf_: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.discrete_: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, ref in self.sorted_sample_.items():
            values, counts = np.unique(ref, return_counts=True)
            self.reference_cdf_[name] = (values, np.cumsum(counts) / max(ref.size, 1))
            if values.size <= DISCRETE_MAX_VALUES:
                self.discrete_[name] = (values, counts.astype(np.float64))
        self.open_edges_ = {name: open_edges(f.edges) for name, f in self.numeric_.items() if len(f.edges)}
        return self

    def compare(self, window: Any, features: list[str] | None = None, *,
                missing_tested: Collection[str] | None = None) -> DriftReport:
        """Drift of ``window`` (a DataFrame, or a 2-D array with ``features`` naming its columns) from the reference.

        The share of missing values is tested for the features in ``missing_tested`` (default: all); a server
        that refuses missing values for a feature leaves it out, as its requests cannot have any.
        """
        import pandas as pd

        frame = window if isinstance(window, pd.DataFrame) else pd.DataFrame(np.asarray(window), columns=features)
        report = DriftReport(n_rows=len(frame))
        known = [str(c) for c in frame.columns if str(c) in self.profile_.features_]
        numeric = [name for name in known if name in self.numeric_]
        if numeric:
            # All numeric features at once: one (features x rows) array, each row sorted in place (NaN last).
            values = np.empty((len(numeric), len(frame)), dtype=np.float64)
            for row, name in enumerate(numeric):
                values[row] = frame[name].to_numpy(dtype=np.float64)
            missing = np.isnan(values).sum(axis=1)
            values.sort(axis=1)
            for row, name in enumerate(numeric):
                present = values[row, : len(frame) - int(missing[row])]
                report.features[name] = self._numeric(name, self.numeric_[name], present, int(missing[row]))
        for name in known:
            if name in self.categorical_:
                report.features[name] = self.categorical(name, self.categorical_[name], frame[name])
        for name in known:
            if missing_tested is None or name in missing_tested:
                self._missing(report.features[name], self.profile_.features_[name].missing)
        report.features = {name: report.features[name] for name in known}  # in the window's column order
        return report

    def _missing(self, result: FeatureDrift, reference_share: float) -> None:
        """Test the window's share of missing values against training's (a 2x2 table: Fisher's exact test for
        small counts, chi-square otherwise); a change there is drift too, and says so."""
        from scipy import stats

        total = result.n + result.missing
        if total < self.min_samples:
            return
        reference_rows = max(int(self.profile_.n_rows_), 1)
        reference_missing = int(round(reference_share * reference_rows))
        table = np.asarray([[result.missing, result.n], [reference_missing, reference_rows - reference_missing]])
        if table.sum(axis=0).min() == 0:  # no value missing on either side (or none present): nothing to test
            return
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
        if expected.min() < 5:
            p_value = float(stats.fisher_exact(table).pvalue)
        else:
            p_value = float(stats.chi2_contingency(table).pvalue)
        result.missing_p_value = p_value
        alpha = self.thresholds.get(result.feature, self.alpha)
        if p_value < alpha:
            share = result.missing / total
            why = (f"missing values {share:.1%} vs {reference_share:.1%} in training (p={p_value:.3g} < {alpha})")
            result.reason = why + (f"; {result.reason}" if result.reason else "")
            result.drifted = True

    def _numeric(self, name: str, reference: NumericReference, present: np.ndarray, missing: int) -> FeatureDrift:
        """KS (or, for few distinct values, chi-square) and PSI of one feature's values, ``present`` sorted
        and without NaN."""
        from scipy import stats

        result = FeatureDrift(name, "numeric", int(present.size), missing)
        if present.size < self.min_samples:
            result.reason = f"{present.size} values < min_samples {self.min_samples}: no verdict"
            return result
        edges = self.open_edges_.get(name)
        if edges is not None:
            current = sorted_bin_counts(present, edges)
            result.psi = psi(np.asarray(reference.counts, dtype=np.float64), current.astype(np.float64))
        sample = self.sorted_sample_.get(name)
        if name in self.discrete_:
            values, counts = self.discrete_[name]
            # Each value counts for the nearest value training had (a value beyond them is not "unseen": it is
            # a numeric feature), so the window's counts are over training's distinct values.
            nearest = np.clip(np.searchsorted(values, present), 1, max(values.size - 1, 1))
            if values.size > 1:
                nearest -= (present - values[nearest - 1]) <= (values[nearest] - present)
            else:
                nearest[:] = 0
            seen = np.bincount(nearest, minlength=values.size).astype(np.float64)
            self._chi_square(result, counts, seen, 0.0, "values", ordered=True)
            result.kind = "discrete"
        elif sample is not None:
            if max(present.size, sample.size) <= SCIPY_EXACT_MAX_N:
                test = stats.ks_2samp(sample, present)  # scipy's exact distribution for small samples
                result.statistic, result.p_value = float(test.statistic), float(test.pvalue)
            else:
                result.statistic = ks_statistic(*self.reference_cdf_[name], present)  # present is sorted
                result.p_value = ks_asymptotic_p(result.statistic, sample.size, present.size)
        if result.p_value is not None:
            alpha = self.thresholds.get(name, self.alpha)
            result.drifted = result.p_value < alpha
            result.reason = f"KS p={result.p_value:.3g} {'<' if result.drifted else '>='} {alpha}"
        elif result.psi is not None:  # a profile without a sample (older bundles): judge by PSI
            limit = self.thresholds.get(name, self.psi_threshold)
            result.drifted = result.psi > limit
            result.reason = f"PSI {result.psi:.3g} {'>' if result.drifted else '<='} {limit} (no reference sample for KS)"
        else:
            result.reason = "the reference has no bins or sample for this feature: no verdict"
        return result

    def categorical(self, name: str, reference: CategoricalReference, column: Any) -> FeatureDrift:
        """Chi-square of a Series' category counts against the reference's (a profile's feature, or ``Categories``)."""
        from scipy import stats

        present = category_values(reference, column)
        result = FeatureDrift(name, "categorical", int(present.size), int(column.size - present.size))
        if present.size < self.min_samples:
            result.reason = f"{present.size} values < min_samples {self.min_samples}: no verdict"
            return result
        categories = list(reference.counts)
        expected_counts = np.asarray([reference.counts[c] for c in categories], dtype=np.float64)
        counts = present.value_counts()
        observed = np.asarray([counts.get(c, 0) for c in categories], dtype=np.float64)
        other = float(present.size - observed.sum())  # beyond the listed categories
        if reference.other > 0:  # the profile kept only the most frequent: the rest is one more category
            expected_counts, observed, other = np.append(expected_counts, reference.other), np.append(observed, other), 0.0
        self._chi_square(result, expected_counts, observed, other, "categories")
        result.psi = psi(np.append(expected_counts, 0.0), np.append(observed, other))
        return result

    def _chi_square(self, result: FeatureDrift, reference: np.ndarray, observed: np.ndarray, unseen: float,
                    what: str, *, ordered: bool = False) -> None:
        """Chi-square test that ``observed`` counts and training's ``reference`` counts of the same values come
        from one distribution (a two-sample test of homogeneity: training's counts are a sample too, so a
        goodness-of-fit test against them as exact would flag too often); ``unseen`` values (never in
        training) are drift on their own, reported with their share.

        Values expected fewer than 5 times in the window are pooled (neighbours, for ``ordered`` values; the
        rarest together, otherwise), as the chi-square approximation needs: a rare value seen once more than
        expected is not drift.
        """
        from scipy import stats

        alpha = self.thresholds.get(result.feature, self.alpha)
        total = observed.sum() + unseen
        if observed.sum() > 0:
            keep = reference > 0
            expected = reference[keep] / reference[keep].sum() * observed[keep].sum()
            groups = _pool(expected, ordered)
            table = np.asarray([[reference[keep][g].sum() for g in groups], [observed[keep][g].sum() for g in groups]])
            test = stats.chi2_contingency(table, correction=False) if len(groups) > 1 else None
            if test is not None:
                result.statistic, result.p_value = float(test.statistic), float(test.pvalue)
                result.drifted = bool(result.p_value < alpha)
                result.reason = f"chi-square p={result.p_value:.3g} {'<' if result.drifted else '>='} {alpha}"
            else:
                result.drifted, result.reason = False, "one value expected: nothing to compare"
        if unseen > 0:
            result.drifted = True
            never = f"{int(unseen)} of {int(total)} values ({unseen / total:.1%}) are {what} never seen in training"
            result.reason = never + (f"; {result.reason}" if result.reason else "")
