"""Our own admission limits (grpcio's maximum_concurrent_rpcs has been unreliable) and drain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from server import metrics
from server.errors import Draining, Overloaded


class Admission:
    def __init__(self, max_sessions: int, max_pending_evaluations: int,
                 queue_depth: Callable[[], int]):
        self.max_sessions = max_sessions
        self.max_pending_evaluations = max_pending_evaluations
        self._queue_depth = queue_depth
        self.sessions = 0
        self.draining = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def drain(self) -> None:
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Waits until no admitted work runs; False when `timeout_s` passed first."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self._idle.is_set()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Holds one Optimize slot, or refuses at once: the client retries elsewhere."""
        self._check_draining()
        if self.sessions >= self.max_sessions:
            raise Overloaded(f"{self.sessions} sessions running, the limit is "
                             f"{self.max_sessions}; retry later")
        self.sessions += 1
        metrics.SESSIONS_IN_FLIGHT.inc()
        try:
            with self._work():
                yield
        finally:
            self.sessions -= 1
            metrics.SESSIONS_IN_FLIGHT.dec()

    @contextmanager
    def evaluations(self, count: int) -> Iterator[None]:
        """Admits `count` evaluations unless the evaluator's queue would pass its limit."""
        self._check_draining()
        pending = self._queue_depth()
        if pending + count > self.max_pending_evaluations:
            raise Overloaded(f"{pending} evaluations are waiting and {count} more would pass "
                             f"the limit of {self.max_pending_evaluations}; retry later")
        with self._work():
            yield

    @contextmanager
    def _work(self) -> Iterator[None]:
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    def _check_draining(self) -> None:
        if self.draining:
            raise Draining("the server is shutting down; retry on another replica")
