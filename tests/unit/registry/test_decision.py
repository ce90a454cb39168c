"""The registration's rule on a candidate and a champion: the rows and columns each is scored on."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from mloop.bundle.rows import TrainingRows
from mloop.config import PromotionSection
from mloop.registry.register import _Champion, _decision

COLUMNS = ["a", "b", "target"]


def frame(seed: int, rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(rows, 2)).round(6), columns=["a", "b"])
    return data.assign(target=((data.a + rng.normal(scale=1.0, size=rows)) > 0).astype(int))


def fitted(train: pd.DataFrame, columns: list[str]) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0).fit(train[columns], train["target"])


def test_a_test_set_every_row_of_which_one_model_trained_on_is_no_comparison():
    train, test = frame(1), frame(2)
    champion = _Champion("4", fitted(test, ["a", "b"]), ["a", "b"], TrainingRows.of_frame(test, COLUMNS))
    decision = _decision(PromotionSection(metric="accuracy"), fitted(train, ["a", "b"]), test, "target", 0.7,
                         TrainingRows.of_frame(train, COLUMNS), champion)
    assert not decision.promote and decision.champion_score is None and decision.champion_version == "4"
    assert decision.reason.startswith("each of the 60 rows of this run's test set was trained on by exactly one")
    assert "cannot be compared on it: not promoted (if it should be: mloop models promote VERSION)" in decision.reason


def test_a_champion_that_cannot_be_scored_is_no_comparison_and_says_why():
    train, test = frame(1), frame(3)

    class Broken(DecisionTreeClassifier):
        def predict(self, X):  # noqa: N803
            raise ValueError("Input contains a value the champion's encoder never saw")

    champion = _Champion("2", Broken(random_state=0).fit(train[["a", "b"]], train["target"]), ["a", "b"], None)
    decision = _decision(PromotionSection(metric="accuracy"), fitted(train, ["a", "b"]), test, "target", 0.7,
                         TrainingRows.of_frame(train, COLUMNS), champion)
    assert not decision.promote and decision.champion_score is None
    assert ("the champion v2 cannot be scored on this run's test set (ValueError: Input contains a value the "
            "champion's encoder never saw)") in decision.reason


def test_each_model_is_scored_on_its_own_columns_and_a_column_the_test_set_lacks_is_said():
    train, test = frame(1), frame(4)
    wider = test.assign(c=1.0)  # this run added a column the champion never took
    champion = _Champion("1", fitted(train, ["a", "b"]), ["a", "b"], TrainingRows.of_frame(train, COLUMNS))
    mine = DecisionTreeClassifier(random_state=0).fit(train.assign(c=1.0)[["a", "b", "c"]], train["target"])
    decision = _decision(PromotionSection(metric="accuracy"), mine, wider, "target", 0.7,
                         TrainingRows.of_frame(train.assign(c=1.0), [*COLUMNS[:2], "c", "target"]), champion)
    expected = float(np.mean(champion.model.predict(test[["a", "b"]]) == test["target"]))
    assert decision.champion_score == expected and "vs champion v1" in decision.reason

    narrower = _Champion("1", fitted(train, ["a", "b"]), ["a", "b", "gone"], None)
    decision = _decision(PromotionSection(metric="accuracy"), mine, wider, "target", 0.7,
                         TrainingRows.of_frame(train, COLUMNS), narrower)
    assert not decision.promote and "takes columns this run's test set does not have (gone)" in decision.reason
