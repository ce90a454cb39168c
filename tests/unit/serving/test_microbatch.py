import asyncio

import numpy as np

from mloop.serving.microbatch import Batcher


def recording_predict(calls):
    def predict(rows):
        calls.append(rows.shape[0])
        return rows[:, 0] * 10, None
    return predict


def test_requests_in_the_same_loop_turn_share_one_predict_call():
    calls = []

    async def main():
        predict = recording_predict(calls)
        batcher = Batcher(max_rows=1024)
        parts = [np.full((n, 2), float(n)) for n in (1, 2, 3)]
        results = await asyncio.gather(*(batcher.submit(p, predict) for p in parts))
        return results

    results = asyncio.run(main())
    assert calls == [6], "three requests should have been one predict call of 6 rows"
    assert [r[0].tolist() for r in results] == [[10.0], [20.0, 20.0], [30.0, 30.0, 30.0]]


def test_a_lone_request_is_predicted_without_waiting_for_company():
    calls = []

    async def main():
        batcher = Batcher(max_rows=1024, max_wait_s=0.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(np.ones((1, 2)), recording_predict(calls))
        return loop.time() - start

    asyncio.run(main())
    assert calls == [1]


def test_a_full_batch_is_flushed_at_once():
    calls = []

    async def main():
        batcher, predict = Batcher(max_rows=4), recording_predict(calls)
        await asyncio.gather(*(batcher.submit(np.ones((2, 2)), predict) for _ in range(4)))

    asyncio.run(main())
    assert calls == [4, 4]


def test_a_failing_predict_fails_every_request_of_its_batch_only():
    def predict(rows):
        if rows.shape[0] > 1:
            raise ValueError("model broke")
        return rows[:, 0], None

    async def main():
        batcher = Batcher(max_rows=1024)
        together = await asyncio.gather(batcher.submit(np.ones((1, 2)), predict),
                                        batcher.submit(np.ones((1, 2)), predict), return_exceptions=True)
        alone = await batcher.submit(np.ones((1, 2)), predict)
        return together, alone

    together, alone = asyncio.run(main())
    assert all(isinstance(r, ValueError) for r in together)
    assert alone[0].tolist() == [1.0]


def test_rows_for_different_models_never_share_a_batch():
    old_calls, new_calls = [], []

    async def main():
        batcher = Batcher(max_rows=1024)
        old, new = recording_predict(old_calls), recording_predict(new_calls)
        await asyncio.gather(batcher.submit(np.ones((1, 2)), old), batcher.submit(np.ones((2, 2)), old),
                             batcher.submit(np.ones((3, 2)), new))

    asyncio.run(main())
    assert old_calls == [3] and new_calls == [3]


def test_bound_methods_of_one_model_share_a_batch():
    """``model.predict`` is a new bound-method object on each access; it is still the same model."""

    class Model:
        def __init__(self):
            self.calls = []

        def predict(self, rows):
            self.calls.append(rows.shape[0])
            return rows[:, 0], None

    model = Model()

    async def main():
        batcher = Batcher(max_rows=1024)
        await asyncio.gather(*(batcher.submit(np.ones((1, 2)), model.predict) for _ in range(5)))

    asyncio.run(main())
    assert model.calls == [5]
