"""Micro-batching: concurrent ``embed`` calls share one encode call in a worker thread.

A transformer encodes 32 prompts in far less than 32 times the time of one, and running
it on the event loop would stall every request. So the first prompt to arrive waits up
to ``max_wait`` for company (or until ``max_batch`` prompts are queued), then the batch
goes to one worker thread. At most one batch runs at a time: prompts that arrive while
it runs queue up and leave together as soon as it finishes, so under load batches grow
by themselves instead of piling up in the executor. Identical texts in a batch are
encoded once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import Future as ThreadFuture

import numpy as np
from numpy.typing import NDArray

EncodeFn = Callable[[list[str]], NDArray[np.float32]]
Waiter = tuple[str, "asyncio.Future[NDArray[np.float32]]"]


class MicroBatcher:
    def __init__(
        self, encode: EncodeFn, executor: Executor, *, max_batch: int, max_wait_s: float
    ) -> None:
        self._encode = encode
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.calls = 0  # encode calls made: the number of batches
        self._pending: list[Waiter] = []
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, text: str) -> NDArray[np.float32]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._busy or self._pending:
                # Another loop (another thread) owns the queue: don't mix them.
                self.calls += 1
                rows = await loop.run_in_executor(self._executor, self._encode, [text])
                row: NDArray[np.float32] = rows[0]
                return row
            self._loop = loop
        future: asyncio.Future[NDArray[np.float32]] = loop.create_future()
        self._pending.append((text, future))
        if not self._busy:
            if len(self._pending) >= self.max_batch:
                self._start()
            elif self._timer is None:
                self._timer = loop.call_later(self.max_wait_s, self._start)
        return await future

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [w for w in self._pending[: self.max_batch] if not w[1].done()]
        del self._pending[: self.max_batch]
        if self._busy or not batch or self._loop is None:
            self._pending[:0] = batch
            return
        self._busy = True
        self.calls += 1
        unique = list(dict.fromkeys(text for text, _ in batch))
        loop = self._loop

        def finished(done: ThreadFuture[NDArray[np.float32]]) -> None:
            try:
                loop.call_soon_threadsafe(self._finish, batch, unique, done)
            except RuntimeError:  # the loop closed meanwhile: nobody is left waiting
                self._busy = False
                self._pending.clear()

        self._executor.submit(self._encode, unique).add_done_callback(finished)

    def _finish(
        self, batch: list[Waiter], unique: list[str], done: ThreadFuture[NDArray[np.float32]]
    ) -> None:
        self._busy = False
        error = done.exception()
        if error is None:
            vectors = done.result()
            row = {text: i for i, text in enumerate(unique)}
        for text, future in batch:
            if future.done():  # its caller gave up (cancelled)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(vectors[row[text]])
        if self._pending:
            # They already waited out a whole encode: no extra max_wait.
            self._start()
