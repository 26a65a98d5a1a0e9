"""Dynamic batching: concurrent requests for one model coalesced into one runtime call.

Each request puts its rows on the model's asyncio queue and awaits a future. One
task per model takes the first waiting request, then keeps taking requests until
the batch holds ``max_batch`` rows or ``max_delay`` seconds have passed since the
first arrived, runs the concatenated rows in a worker thread (the event loop keeps
accepting and answering meanwhile), and hands each request its own slice of every
output. Rows are independent in every tk model, so a request's answer is the one
it would get alone.

A lone request does not wait for the window: when nothing else is queued and the
previous batch was a single request too (clients one at a time), it runs at once,
since nobody is about to join it. As soon as requests overlap (a batch of several),
the batcher waits up to ``max_delay`` for more, but no longer than until the batch
holds as many requests as the previous one: clients that each wait for their answer
before sending again (a fixed number of connections) come back together, and once
the last round is all here, waiting for more only adds latency (with a fast model,
eight clients got half the requests per second of no batching at all). A model whose calls take
under INLINE_SECONDS runs on the loop itself, not in a thread (see ``Batcher._call``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from toolkit.serve.model import ServedModel


# A call cheaper than this runs on the event loop itself (see Batcher._call).
INLINE_SECONDS = 0.0005


class Batcher:
    """Coalesces ``submit`` calls for one model; ``on_batch(rows)`` sees every batch size."""

    def __init__(
        self,
        model: ServedModel,
        max_batch: int,
        max_delay: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.max_batch = max(1, max_batch)
        self.max_delay = max(0.0, max_delay)
        self.on_batch = on_batch
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Any]]] | None = None
        self.task: asyncio.Task[None] | None = None
        # Requests in the previous batch (0: none yet): 1 means clients come one at a time.
        self.last_requests = 0
        # Seconds a call takes on 1 row and on max_batch rows (measured by start()).
        self.cost = (float("inf"), float("inf"))

    def start(self) -> None:
        """Time the model on 1 and ``max_batch`` rows, then start the batching task."""
        self.cost = (self._time(1), self._time(self.max_batch))
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Cancel the batching task (the server is shutting down)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def submit(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output of the model on ``x``, computed in some batch with other requests."""
        assert self.queue is not None, "Batcher.start() was not called"
        future: asyncio.Future[list[np.ndarray]] = asyncio.get_running_loop().create_future()
        await self.queue.put((x, future))
        return await future

    async def _loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            batch = [first]
            rows = len(first[0])
            deadline = loop.time() + self.max_delay
            while rows < self.max_batch:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    if len(batch) == 1 and self.last_requests == 1:
                        break  # one client at a time: waiting would only add latency
                    if 1 < self.last_requests <= len(batch):
                        break  # as many requests as last time: that round is all here
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), left)
                    except TimeoutError:
                        break
                if rows + len(item[0]) > self.max_batch:
                    # It would overflow the batch: it starts the next one, first in line.
                    await self._run(batch, rows)
                    batch, rows = [item], len(item[0])
                    deadline = loop.time() + self.max_delay
                    continue
                batch.append(item)
                rows += len(item[0])
            await self._run(batch, rows)

    def _time(self, rows: int) -> float:
        """The best of two calls on ``rows`` rows of zeros (infinite if the model fails)."""
        import numpy as np

        x = np.zeros((rows, *self.model.sample_shape), dtype=self.model.input_dtype)
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            try:
                self.model.run(x)
            except Exception:  # an odd model: every call goes to a thread, as before
                return float("inf")
            best = min(best, time.perf_counter() - start)
        return best

    def inline(self, rows: int) -> bool:
        """Whether a call on ``rows`` rows is cheap enough to run on the event loop.

        Interpolated between the two calls timed at start, before any load: a call
        timed in the thread under load would count its wait for the GIL too.
        """
        one, full = self.cost
        share = (rows - 1) / (self.max_batch - 1) if self.max_batch > 1 else 1.0
        return one + (full - one) * min(1.0, share) < INLINE_SECONDS

    async def _call(self, x: np.ndarray) -> list[np.ndarray]:
        """The model on ``x``: in a thread, unless it is cheaper than INLINE_SECONDS.

        A thread lets the loop keep reading requests while the runtime works, but the
        hand-off costs the GIL twice, and a thread waiting for the GIL while the loop
        is busy waits up to the switch interval (5 ms): far more than a small model's
        whole call (circle: ~20 us). So cheap calls run inline.
        """
        if self.inline(len(x)):
            return self.model.run(x)
        return await asyncio.to_thread(self.model.run, x)

    async def _run(self, batch: list[tuple[np.ndarray, asyncio.Future[Any]]], rows: int) -> None:
        import numpy as np

        self.last_requests = len(batch)
        live = [(x, f) for x, f in batch if not f.done()]  # a client that went away
        if not live:
            return
        if self.on_batch is not None:
            self.on_batch(sum(len(x) for x, _ in live))
        x = live[0][0] if len(live) == 1 else np.concatenate([x for x, _ in live])
        try:
            ys = await self._call(x)
        except Exception as exc:  # one bad batch fails its requests, never the server
            for _, f in live:
                if not f.done():
                    f.set_exception(exc)
            return
        start = 0
        for xi, f in live:
            n = len(xi)
            if not f.done():
                f.set_result([y[start : start + n] for y in ys])
            start += n
