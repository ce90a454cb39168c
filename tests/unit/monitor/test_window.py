import numpy as np

from mloop.monitor.window import PredictionWindow


def test_window_keeps_the_last_rows_in_order_across_wrap_around():
    window = PredictionWindow(capacity=5, n_features=2)
    for start in (0, 3, 6):
        rows = np.arange(start, start + 3, dtype=float).repeat(2).reshape(3, 2)
        window.append(rows, np.arange(start, start + 3))
    rows, labels = window.snapshot()
    assert rows[:, 0].tolist() == [4, 5, 6, 7, 8] and labels.tolist() == [4, 5, 6, 7, 8]


def test_a_batch_bigger_than_the_window_keeps_its_tail():
    window = PredictionWindow(capacity=3, n_features=1)
    window.append(np.arange(10, dtype=float).reshape(10, 1), np.arange(10))
    assert window.snapshot()[0][:, 0].tolist() == [7, 8, 9]


def test_snapshot_is_a_copy_and_clear_empties():
    window = PredictionWindow(capacity=4, n_features=1)
    window.append(np.ones((2, 1)), np.ones(2))
    rows, _ = window.snapshot()
    rows[:] = 5
    assert window.snapshot()[0][:, 0].tolist() == [1, 1]
    window.clear()
    assert window.snapshot()[0].shape == (0, 1)
