"""The per-row outlier scorer gives exactly the detector's own scores and verdicts."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from mloop.monitor.outliers import make_scorer


@pytest.mark.parametrize("settings", [{}, {"max_features": 0.5}, {"n_estimators": 7, "max_samples": 50}])
def test_isolation_forest_scores_equal_scikit_learns(settings):
    rng = np.random.default_rng(0)
    forest = IsolationForest(random_state=0, **settings).fit(rng.normal(size=(300, 6)))
    rows = np.vstack([rng.normal(size=(500, 6)), rng.normal(size=(50, 6)) * 6])
    scores, flags = make_scorer(forest)(rows, None)
    np.testing.assert_array_equal(scores, forest.score_samples(rows))
    np.testing.assert_array_equal(flags, forest.predict(rows) == -1)
    assert flags[500:].mean() > 0.8 > flags[:500].mean()


def test_other_detectors_use_their_own_methods_and_none_means_no_scores():
    rng = np.random.default_rng(1)
    lof = LocalOutlierFactor(novelty=True).fit(rng.normal(size=(200, 3)))
    rows = rng.normal(size=(20, 3))
    scores, flags = make_scorer(lof)(rows, None)
    np.testing.assert_array_equal(scores, lof.score_samples(rows))
    np.testing.assert_array_equal(flags, lof.predict(rows) == -1)
    assert make_scorer(None) is None
