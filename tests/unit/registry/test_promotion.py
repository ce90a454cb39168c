import pytest
from sklearn.dummy import DummyClassifier

from mloop.errors import ConfigError
from mloop.registry.metrics import check_metric, score
from mloop.registry.promotion import decide


def test_first_version_is_promoted():
    decision = decide("accuracy", "maximize", 0.0, 0.9, None)
    assert decision.promote and "no champion yet" in decision.reason


@pytest.mark.parametrize(("direction", "minimum", "candidate", "champion", "promote"), [
    ("maximize", 0.0, 0.95, 0.94, True),
    ("maximize", 0.0, 0.94, 0.94, False),  # a tie keeps the champion
    ("maximize", 0.02, 0.95, 0.94, False),
    ("maximize", 0.01, 0.96, 0.94, True),
    ("minimize", 0.0, 0.10, 0.12, True),
    ("minimize", 0.0, 0.12, 0.10, False),
])
def test_rule_direction_and_minimum_improvement(direction, minimum, candidate, champion, promote):
    decision = decide("m", direction, minimum, candidate, champion, "3")
    assert decision.promote is promote
    assert "champion v3" in decision.reason


def test_reason_says_what_was_needed():
    decision = decide("accuracy", "maximize", 0.05, 0.95, 0.94, "1")
    assert "not promoted (needs to be higher by at least 0.05)" in decision.reason


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"'acuracy'.*did you mean 'accuracy'"):
        check_metric("acuracy")


def test_score_uses_probabilities_where_the_metric_needs_them():
    x, y = [[0], [1], [2], [3]], [0, 1, 0, 1]
    model = DummyClassifier(strategy="prior").fit(x, y)
    assert score("accuracy", model, x, y) == 0.5
    assert score("roc_auc", model, x, y) == 0.5


def test_an_undefined_score_never_wins():
    assert not decide("precision", "maximize", 0.0, float("nan"), 0.5, "2").promote
    replaced = decide("precision", "maximize", 0.0, 0.4, float("nan"), "2")
    assert replaced.promote and "undefined" in replaced.reason
