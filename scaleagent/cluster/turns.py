"""One reactor call per turn for the zero-delay flushes of every in-tunnel TLS connection.

Twisted's `BufferingTLSTransport` gathers a connection's small writes and flushes them with
`clock.callLater(0, flush)`. With thousands of clusters that is one timer per connection per burst,
each pushed into (and popped from) a reactor heap that already holds tens of thousands of timers (pings,
HTTP timeouts, watch bookmarks): at 5,000 clusters under Rancher's informers, 20 % of the agent's CPU.
`TurnBatcher` is the clock handed to the TLS factory instead: zero-delay calls join one list that a
single `callLater(0)` runs on the next turn; other delays go to the real clock unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scaleagent.redact import logger

log = logger()


class _Queued:
    """What `callLater(0, ...)` returns: enough of IDelayedCall for the TLS write aggregator."""

    __slots__ = ("_call", "_args", "_kwargs", "_state")

    def __init__(self, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._call, self._args, self._kwargs = call, args, kwargs
        self._state = "pending"

    def active(self) -> bool:
        return self._state == "pending"

    def cancel(self) -> None:
        if self._state != "pending":
            from twisted.internet.error import AlreadyCalled, AlreadyCancelled

            raise AlreadyCancelled() if self._state == "cancelled" else AlreadyCalled()
        self._state = "cancelled"

    def run(self) -> None:
        if self._state == "pending":
            self._state = "called"
            self._call(*self._args, **self._kwargs)


class TurnBatcher:
    """An IReactorTime whose zero-delay calls share one real reactor call per turn."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._queue: list[_Queued] = []
        self._scheduled = False

    def seconds(self) -> float:
        return self._clock.seconds()

    def getDelayedCalls(self) -> list[Any]:  # noqa: N802 (Twisted's name)
        return self._clock.getDelayedCalls()

    def callLater(self, delay: float, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        if delay > 0:
            return self._clock.callLater(delay, call, *args, **kwargs)
        queued = _Queued(call, args, kwargs)
        self._queue.append(queued)
        if not self._scheduled:
            self._scheduled = True
            self._clock.callLater(0, self._run)
        return queued

    def _run(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for queued in queue:
            try:
                queued.run()
            except Exception:  # one connection's failure must not strand the others' writes
                log.failure("flush on the reactor turn failed")


__all__ = ["TurnBatcher"]
