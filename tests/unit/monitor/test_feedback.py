import pytest

from mloop.monitor.feedback import AlreadyLabelled, FeedbackJoiner, UnknownRequest
from mloop.registry.metrics import live_metrics


def test_feedback_is_joined_by_request_id_and_scored():
    joiner = FeedbackJoiner()
    joiner.record("r1", [1, 1, 0])
    joiner.record("r2", [0])
    assert joiner.add("r1", [1, 0, 0]) == (3, "")
    assert joiner.add("r2", [1]) == (1, "")
    scores = joiner.scores(live_metrics([0, 1]))
    assert scores == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert joiner.labelled_total == 4


def test_unknown_expired_and_repeated_ids_are_refused():
    joiner = FeedbackJoiner(capacity=2)
    for rid in ("a", "b", "c"):
        joiner.record(rid, [1])
    with pytest.raises(UnknownRequest):
        joiner.add("a", [1])  # evicted
    joiner.add("b", [1])
    with pytest.raises(AlreadyLabelled):
        joiner.add("b", [0])  # labels are final: a second answer is refused, not counted


def test_a_wrong_number_of_labels_keeps_the_prediction_for_a_retry():
    joiner = FeedbackJoiner()
    joiner.record("r", [1, 0])
    with pytest.raises(ValueError, match="had 2 rows; 1 labels"):
        joiner.add("r", [1])
    joiner.check("r", 2)
    with pytest.raises(ValueError):
        joiner.check("r", 3)
    assert joiner.add("r", [1, 0]) == (2, "")


def test_the_score_window_is_bounded():
    joiner = FeedbackJoiner(window=3)
    for i in range(5):
        joiner.record(str(i), [1])
        joiner.add(str(i), [1 if i >= 2 else 0])
    assert joiner.scores(live_metrics([0, 1]))["accuracy"] == 1.0


def test_scores_are_the_served_versions_and_an_earlier_versions_labels_are_accepted_not_scored():
    joiner = FeedbackJoiner(version="1")
    joiner.record("old", [1, 1])
    joiner.add("old", [1, 1])
    joiner.record("late", [0])  # answered by version 1, labelled after the swap
    joiner.start_version("2")
    assert joiner.scores(live_metrics([0, 1])) == {} and joiner.labelled_total == 0
    joiner.record("new", [1], "2")
    assert joiner.add("late", [1]) == (1, "1")  # accepted (it is logged), not scored as version 2's
    assert joiner.add("new", [0]) == (1, "2")
    assert joiner.scores(live_metrics([0, 1]))["accuracy"] == 0.0 and joiner.labelled_total == 1
    with pytest.raises(AlreadyLabelled):
        joiner.check("late", 1)
    with pytest.raises(UnknownRequest):
        joiner.check("never", 1)
