"""One timer for all of the driver's periodic work: thousands of clusters, one reactor DelayedCall.

Each periodic task gets a phase in its period (spread by the caller, e.g. random), so 10,000
clusters' 15-second health checks are spread over the 15 seconds instead of firing together. Tasks
live in a heap keyed by due time; the one reactor call is armed for the earliest. Firing never
happens early; after a stall each task runs once and keeps its phase.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from scaleagent.redact import logger

log = logger()


class Task:
    """A scheduled callable; `cancel()` is idempotent and safe from inside the callable."""

    __slots__ = ("due", "period", "fn", "cancelled", "_seq")

    def __init__(self, due: float, period: float | None, fn: Callable[[], Any], seq: int) -> None:
        self.due = due
        self.period = period
        self.fn = fn
        self.cancelled = False
        self._seq = seq

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Task) -> bool:
        return (self.due, self._seq) < (other.due, other._seq)


class Scheduler:
    """Periodic and one-shot callables on one reactor timer."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._heap: list[Task] = []
        self._seq = itertools.count()
        self._call: Any = None
        self._armed_for = 0.0
        self.runs = 0
        self.errors = 0

    def __len__(self) -> int:
        return sum(1 for t in self._heap if not t.cancelled)

    def every(self, period: float, fn: Callable[[], Any], *, first: float = 0.0) -> Task:
        """Run `fn` `first` seconds from now, then every `period` seconds."""
        if not period > 0:
            raise ValueError("period must be > 0")
        return self._push(Task(self._clock.seconds() + max(first, 0.0), period, fn, next(self._seq)))

    def after(self, delay: float, fn: Callable[[], Any]) -> Task:
        """Run `fn` once, `delay` seconds from now."""
        return self._push(Task(self._clock.seconds() + max(delay, 0.0), None, fn, next(self._seq)))

    def _push(self, task: Task) -> Task:
        heapq.heappush(self._heap, task)
        self._arm()
        return task

    def _arm(self) -> None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        if not self._heap:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
            return
        due = self._heap[0].due
        if self._call is not None and self._call.active():
            if self._armed_for <= due:
                return
            self._call.cancel()
        self._armed_for = due
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = None
        now = self._clock.seconds()
        due: list[Task] = []
        while self._heap and self._heap[0].due <= now:
            due.append(heapq.heappop(self._heap))
        for task in due:
            if task.cancelled:
                continue
            if task.period is not None:
                # Keep the phase: the next due time is on the task's own grid, past now.
                step = task.period
                task.due += step * max(1, int((now - task.due) // step) + 1)
                heapq.heappush(self._heap, task)
            self.runs += 1
            try:
                task.fn()
            except Exception:
                self.errors += 1
                log.failure("ranchersim driver: scheduled task failed")
        self._arm()

    def stop(self) -> None:
        """Cancel everything (service stop)."""
        for task in self._heap:
            task.cancelled = True
        self._heap.clear()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


__all__ = ["Scheduler", "Task"]
