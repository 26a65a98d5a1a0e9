"""``tk serve``'s dynamic batching, on a real event loop: each test kills mutants of
``toolkit/serve/batching.py`` (``make mutate MODULES=batching``). tests/test_serve.py
drives the real server from outside; its process imports the unmutated code, so the
batcher is also checked here in-process.

The served model is a real :class:`ServedModel` whose runtime is a numpy function
(two outputs, rows independent) that records every batch it is given; the expected
answer of a request is that function on the request's rows alone.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from toolkit.formats import Runner
from toolkit.serve.batching import INLINE_SECONDS, Batcher
from toolkit.serve.model import ServedModel


class Runtime:
    """Two outputs per row; remembers each batch it ran (and can be told to fail).

    ``start()`` times the model on zeros first; those calls are counted in ``timed``,
    and only the calls after ``arm()`` (the served batches) are recorded or fail.
    """

    def __init__(
        self,
        fail: int = 0,
        delay: float = 0.0,
        timing_delays: list[float] | None = None,
        fail_timing: bool = False,
    ):
        self.batches: list[np.ndarray] = []
        self.threads: list[int] = []  # the thread each served batch ran in
        self.fail = fail  # the first `fail` served calls raise
        self.delay = delay  # seconds each call takes
        self.armed = False
        self.timed: list[int] = []  # rows of each timing call start() made
        self.timed_inputs: list[np.ndarray] = []  # what each timing call was given
        self.timing_delays = timing_delays or []  # seconds of each timing call, in order
        self.fail_timing = fail_timing  # every timing call raises

    def arm(self) -> None:
        self.armed = True

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self.delay:
            time.sleep(self.delay)
        if not self.armed:
            if len(self.timed) < len(self.timing_delays) and self.timing_delays[len(self.timed)]:
                time.sleep(self.timing_delays[len(self.timed)])
            self.timed.append(len(x))
            self.timed_inputs.append(x)
            if self.fail_timing:
                raise RuntimeError("the model cannot be timed")
            return [x * 2.0, x.sum(axis=1, keepdims=True)]
        self.batches.append(x)
        self.threads.append(threading.get_ident())
        if len(self.batches) <= self.fail:
            raise RuntimeError("the runtime failed")
        return [x * 2.0, x.sum(axis=1, keepdims=True)]


def _model(runtime: Runtime) -> ServedModel:
    return ServedModel("m", "m.onnx", {"input": {"shape": ["batch", 2]}}, Runner("np", runtime))


def _rows(n: int, start: int) -> np.ndarray:
    return np.arange(start, start + 2 * n, dtype=np.float32).reshape(n, 2)


def _serve(runtime, max_batch, max_delay, body):
    """Run ``body(batcher)`` on a fresh loop with a started batcher; (result, sizes)."""
    sizes: list[int] = []

    async def main():
        batcher = Batcher(_model(runtime), max_batch, max_delay, on_batch=sizes.append)
        batcher.start()
        runtime.arm()
        try:  # a batcher that never answers fails the test, not hangs it
            return await asyncio.wait_for(body(batcher), 5.0)
        finally:
            await batcher.stop()

    return asyncio.run(main()), sizes


async def _later(b: Batcher, delay: float, x: np.ndarray) -> list[np.ndarray]:
    """``b.submit(x)`` after ``delay`` seconds."""
    await asyncio.sleep(delay)
    return await b.submit(x)


def _expect(x: np.ndarray, got: list[np.ndarray]) -> None:
    assert len(got) == 2
    np.testing.assert_array_equal(got[0], x * 2.0)
    np.testing.assert_array_equal(got[1], x.sum(axis=1, keepdims=True))


def test_waiting_requests_share_one_batch_and_each_gets_its_own_rows():
    runtime = Runtime()
    xs = [_rows(2, 0), _rows(3, 100), _rows(1, 200)]

    async def body(b):
        return await asyncio.gather(*(b.submit(x) for x in xs))

    answers, sizes = _serve(runtime, 8, 0.1, body)
    assert sizes == [6] and [len(x) for x in runtime.batches] == [6]
    for x, got in zip(xs, answers, strict=True):
        _expect(x, got)


def test_a_batch_as_large_as_the_last_one_runs_without_waiting_out_the_window():
    runtime = Runtime()

    async def body(b):
        async def timed(*xs):
            start = time.monotonic()
            await asyncio.gather(*(b.submit(x) for x in xs))
            return time.monotonic() - start

        first = await timed(_rows(1, 0), _rows(1, 5))  # nothing to go by: the window
        again = await timed(_rows(1, 9), _rows(1, 13))  # the round of two is all here
        fewer = await timed(_rows(1, 20))  # one of the two: the other may still come
        return first, again, fewer

    (first, again, fewer), sizes = _serve(runtime, 8, 0.5, body)
    assert sizes == [2, 2, 1]
    assert first >= 0.45 and again < 0.25 and fewer >= 0.45


def test_a_request_that_would_overflow_starts_the_next_batch():
    runtime = Runtime()
    xs = [_rows(3, 0), _rows(2, 10), _rows(2, 20), _rows(1, 30)]

    async def body(b):
        return await asyncio.gather(*(b.submit(x) for x in xs))

    answers, sizes = _serve(runtime, 4, 0.1, body)
    assert sizes == [3, 4, 1]
    np.testing.assert_array_equal(runtime.batches[1], np.concatenate(xs[1:3]))
    for x, got in zip(xs, answers, strict=True):
        _expect(x, got)


def test_a_full_batch_runs_at_once_and_a_lone_row_after_the_delay():
    runtime = Runtime()

    async def timed(b, x):
        start = time.monotonic()
        got = await b.submit(x)
        return got, time.monotonic() - start

    x = _rows(2, 0)
    (got, full), sizes = _serve(runtime, 2, 5.0, lambda b: timed(b, x))
    _expect(x, got)
    assert sizes == [2] and full < 2.0  # full: no waiting for the 5 s window
    assert runtime.batches[0] is x  # a lone request reaches the runtime uncopied
    (_, lone), _ = _serve(Runtime(), 8, 0.2, lambda b: timed(b, _rows(1, 0)))
    assert 0.18 <= lone < 3.0  # the window was waited for, once


def test_the_window_opens_at_the_first_request():
    runtime = Runtime()

    async def body(b):
        # 0.05 s after the first: inside its 0.25 s window; 0.75 s after: a new batch
        return await asyncio.gather(_later(b, 0, _rows(1, 0)), _later(b, 0.05, _rows(1, 5)),
                                    _later(b, 0.75, _rows(1, 9)))  # fmt: skip

    answers, sizes = _serve(runtime, 8, 0.25, body)
    assert sizes == [2, 1]
    _expect(_rows(1, 5), answers[1])


def test_limits_below_their_minimum_are_the_minimum():
    batcher = Batcher(_model(Runtime()), 0, -1.0)
    assert (batcher.max_batch, batcher.max_delay) == (1, 0.0)
    runtime = Runtime()

    async def body(b):
        start = time.monotonic()
        await asyncio.gather(b.submit(_rows(1, 0)), b.submit(_rows(1, 1)))
        return time.monotonic() - start

    elapsed, sizes = _serve(runtime, 1, -1.0, body)
    assert sizes == [1, 1] and elapsed < 0.9  # batches of one row, no window at all
    assert Batcher(_model(runtime), 3, 0.5).max_batch == 3


def test_a_failing_batch_fails_its_requests_and_the_next_batch_is_served():
    runtime = Runtime(fail=1)

    async def body(b):
        first = await asyncio.gather(b.submit(_rows(1, 0)), b.submit(_rows(2, 1)),
                                     return_exceptions=True)  # fmt: skip
        return first, await b.submit(_rows(1, 7))

    (first, after), sizes = _serve(runtime, 8, 0.1, body)
    assert [str(e) for e in first] == ["the runtime failed"] * 2
    assert all(isinstance(e, RuntimeError) for e in first)
    _expect(_rows(1, 7), after)
    assert sizes == [3, 1]


def test_a_request_whose_client_left_is_not_run():
    runtime = Runtime()

    async def body(b):
        gone = asyncio.ensure_future(b.submit(_rows(3, 0)))
        kept = asyncio.ensure_future(b.submit(_rows(1, 50)))
        await asyncio.sleep(0.05)  # both queued, inside the window
        gone.cancel()
        got = await kept
        only_gone = asyncio.ensure_future(b.submit(_rows(2, 0)))
        await asyncio.sleep(0.05)
        only_gone.cancel()
        await asyncio.sleep(0.3)  # past its window: nothing left to run
        return got

    got, sizes = _serve(runtime, 8, 0.15, body)
    _expect(_rows(1, 50), got)
    assert sizes == [1] and [len(x) for x in runtime.batches] == [1]


def test_stop_ends_the_batching_task_and_submit_needs_start():
    async def main():
        b = Batcher(_model(Runtime()), 4, 0.01)
        await b.stop()  # never started: nothing to stop
        b.start()
        task = b.task
        await b.stop()
        return task

    task = asyncio.run(main())
    assert task.cancelled()
    with pytest.raises(AssertionError, match=r"^Batcher\.start\(\) was not called$"):
        asyncio.run(Batcher(_model(Runtime()), 4, 0.01).submit(_rows(1, 0)))


def test_the_batch_an_overflow_starts_gets_its_own_window():
    runtime = Runtime()

    async def body(b):
        # 1 + 2 + 2 overflows 4: [1, 2] runs (two requests: clients overlap), [2] opens
        # a window of its own that the row 0.05 s later joins
        return await asyncio.gather(
            _later(b, 0, _rows(1, 0)), _later(b, 0, _rows(2, 10)),
            _later(b, 0, _rows(2, 20)), _later(b, 0.05, _rows(1, 30)),
        )  # fmt: skip

    answers, sizes = _serve(runtime, 4, 0.3, body)
    assert sizes == [3, 3]
    np.testing.assert_array_equal(runtime.batches[1], np.concatenate([_rows(2, 20), _rows(1, 30)]))
    _expect(_rows(1, 30), answers[3])


def test_clients_one_at_a_time_skip_the_window_until_requests_overlap():
    """The window is waited for by the first request ever and by a lone request after a
    batch of several; a lone request after a lone batch runs at once."""
    runtime = Runtime()
    window = 0.6

    async def body(b):
        async def timed(*xs):
            start = time.monotonic()
            got = await asyncio.gather(*(b.submit(x) for x in xs))
            return got, time.monotonic() - start

        waits = []
        for xs in ([_rows(1, 0)], [_rows(1, 2)], [_rows(2, 4)], [_rows(1, 8), _rows(1, 10)],
                   [_rows(1, 12)], [_rows(1, 14)]):  # fmt: skip
            got, wait = await timed(*xs)
            for x, y in zip(xs, got, strict=True):
                _expect(x, y)
            waits.append(wait)
        return waits

    waits, sizes = _serve(runtime, 8, window, body)
    assert sizes == [1, 1, 2, 2, 1, 1]
    waited = [w >= window - 0.02 for w in waits]
    # first ever: waits; lone after lone: at once (twice); two together: their batch
    # waits; lone after that batch of two: waits; lone after lone: at once
    assert waited == [True, False, False, True, True, False], waits
    assert max(w for w, wt in zip(waits, waited, strict=True) if not wt) < window / 2, waits


def test_cheap_calls_run_on_the_event_loop_and_slow_ones_in_a_thread():
    async def body(b):
        await b.submit(_rows(1, 0))
        return threading.get_ident(), b.cost

    fast = Runtime()
    (loop_thread, cost), _ = _serve(fast, 8, 0.0, body)
    assert fast.timed == [1, 1, 8, 8]  # start() timed 1 and max_batch rows, twice each
    for x, rows in zip(fast.timed_inputs, fast.timed, strict=True):  # zeros the model takes
        assert x.dtype == np.float32 and x.shape == (rows, 2) and not x.any()
    assert cost[0] < INLINE_SECONDS and cost[1] < INLINE_SECONDS
    assert fast.threads == [loop_thread]
    slow = Runtime(delay=0.003)
    (loop_thread, cost), _ = _serve(slow, 8, 0.0, body)
    assert cost[0] >= 0.003 and cost[1] >= 0.003
    assert len(slow.threads) == 1 and slow.threads[0] != loop_thread


def test_the_timing_keeps_the_best_of_two_calls_and_a_failing_model_goes_to_a_thread():
    runtime = Runtime(timing_delays=[0.02, 0.0, 0.0, 0.02])  # a slow first call each time

    async def body(b):
        await b.submit(_rows(1, 0))
        return threading.get_ident(), b.cost

    (loop_thread, cost), _ = _serve(runtime, 4, 0.0, body)
    assert runtime.timed == [1, 1, 4, 4]
    assert cost[0] < 0.01 and cost[1] < 0.01  # the fast call of each pair counts
    assert runtime.threads == [loop_thread]
    broken = Runtime(fail_timing=True)
    (loop_thread, cost), _ = _serve(broken, 4, 0.0, body)
    assert cost == (float("inf"), float("inf"))
    assert broken.timed == [1, 4]  # a failed call ends that timing at once
    assert len(broken.threads) == 1 and broken.threads[0] != loop_thread


def test_inline_interpolates_between_the_costs_of_one_row_and_a_full_batch():
    b = Batcher(_model(Runtime()), 9, 0.0)
    assert b.cost == (float("inf"), float("inf"))  # not timed yet: nothing runs inline
    assert not b.inline(1)
    k = 0.00014  # each row past the first adds k: 3k is under INLINE_SECONDS, 4k over
    b.cost = (0.0, 8 * k)
    assert [b.inline(r) for r in (1, 2, 3, 4, 5, 9)] == [True] * 4 + [False] * 2
    b.cost = (0.0001, 0.0004)
    assert b.inline(9) and b.inline(40)  # past max_batch: the full batch's cost, no more
    b.cost = (INLINE_SECONDS, INLINE_SECONDS)
    assert not b.inline(1)  # INLINE_SECONDS itself is not cheaper than INLINE_SECONDS
    b.cost = (INLINE_SECONDS * 0.99, INLINE_SECONDS * 0.99)
    assert b.inline(1) and b.inline(9)
    two = Batcher(_model(Runtime()), 2, 0.0)
    two.cost = (0.0001, 0.0009)  # max_batch 2: one row costs the one-row call
    assert two.inline(1) and not two.inline(2)
    one = Batcher(_model(Runtime()), 1, 0.0)
    one.cost = (0.0001, 0.0009)  # max_batch 1: the full batch's cost is the one
    assert not one.inline(1)
    one.cost = (0.0009, 0.0001)
    assert one.inline(1)


def test_without_a_window_each_request_runs_as_it_comes():
    runtime = Runtime()

    async def body(b):
        first = await b.submit(_rows(2, 0))
        return first, await b.submit(_rows(1, 5))

    (first, second), sizes = _serve(runtime, 8, 0.0, body)
    _expect(_rows(2, 0), first)
    _expect(_rows(1, 5), second)
    assert sizes == [2, 1]
