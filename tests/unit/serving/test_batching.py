import asyncio

import numpy as np
import pytest

from mloop.serving.batching import Batcher


def recording_predict(calls):
    def predict(rows):
        calls.append(rows.shape[0])
        return rows[:, 0] * 10, None
    return predict


def test_requests_in_the_same_loop_turn_share_one_predict_call():
    calls = []

    async def main():
        batcher = Batcher(recording_predict(calls))
        parts = [np.full((n, 2), float(n)) for n in (1, 2, 3)]
        results = await asyncio.gather(*(batcher.submit(p) for p in parts))
        return results

    results = asyncio.run(main())
    assert calls == [6], "three requests should have been one predict call of 6 rows"
    assert [r[0].tolist() for r in results] == [[10.0], [20.0, 20.0], [30.0, 30.0, 30.0]]


def test_a_lone_request_is_predicted_without_waiting_for_company():
    calls = []

    async def main():
        batcher = Batcher(recording_predict(calls), max_wait_s=0.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(np.ones((1, 2)))
        return loop.time() - start

    asyncio.run(main())
    assert calls == [1]


def test_a_full_batch_is_flushed_at_once():
    calls = []

    async def main():
        batcher = Batcher(recording_predict(calls), max_rows=4)
        await asyncio.gather(*(batcher.submit(np.ones((2, 2))) for _ in range(4)))

    asyncio.run(main())
    assert calls == [4, 4]


def test_a_failing_predict_fails_every_request_of_its_batch_only():
    def predict(rows):
        if rows.shape[0] > 1:
            raise ValueError("model broke")
        return rows[:, 0], None

    async def main():
        batcher = Batcher(predict)
        together = await asyncio.gather(batcher.submit(np.ones((1, 2))), batcher.submit(np.ones((1, 2))),
                                        return_exceptions=True)
        alone = await batcher.submit(np.ones((1, 2)))
        return together, alone

    together, alone = asyncio.run(main())
    assert all(isinstance(r, ValueError) for r in together)
    assert alone[0].tolist() == [1.0]
