"""Training batches prepared ahead of the step that needs them.

A background thread calls `make_batch(step)` for the steps in order, up to `depth`
ahead of the loop, so that loading, collating and the copy to the devices overlap
the step in flight. Batches stay a function of the step (the thread only changes
when they are made), so a resumed run sees the same data. An error raised by
`make_batch(s)` reaches the loop when it asks for step s, as it would without the
thread. `depth=0` makes each batch on the caller's thread when asked for.

The loop reports the time it spent waiting (`wait_seconds`) as
perf/data_wait_fraction: near 0 when batches are ready before they are needed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_POLL_SECONDS = 0.05  # how often a blocked thread checks whether to stop


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Batches of steps start, start + 1, ..., stop - 1, asked for in that order."""

    def __init__(self, make_batch: Callable[[int], Any], start: int, stop: int, depth: int = 2):
        self._make_batch = make_batch
        self._next = start
        self._stop = stop
        self.depth = depth
        self.wait_seconds = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._closing = threading.Event()
        self._thread = None
        if depth > 0:
            self._thread = threading.Thread(
                target=self._fill, name='seqmodels-prefetch', daemon=True
            )
            self._thread.start()

    def _fill(self) -> None:
        for step in range(self._next, self._stop):
            try:
                item = (step, self._make_batch(step))
            except BaseException as error:  # handed to the loop, which raises it
                item = (step, _Failure(error))
            while not self._closing.is_set():
                try:
                    self._queue.put(item, timeout=_POLL_SECONDS)
                    break
                except queue.Full:
                    continue
            if self._closing.is_set() or isinstance(item[1], _Failure):
                return

    def get(self, step: int) -> Any:
        """The batch of `step`, which must be the next one; raises what making it raised."""
        if step != self._next:
            raise ValueError(
                f'batches are prefetched in order: asked for step {step}, '
                f'the next one is {self._next}'
            )
        self._next += 1
        start = time.perf_counter()
        try:
            if self._thread is None:
                return self._make_batch(step)
            made, batch = self._queue.get()
        finally:
            self.wait_seconds += time.perf_counter() - start
        assert made == step, (made, step)
        if isinstance(batch, _Failure):
            raise batch.error
        return batch

    def close(self) -> None:
        """Stops the thread (it finishes the batch it is making, unless that blocks)."""
        self._closing.set()
        if self._thread is not None:
            while True:  # unblock a put waiting for room
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._thread.join(timeout=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
