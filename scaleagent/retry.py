"""Reconnect timing: per-tunnel stateful backoff and one process-wide limit on reconnect attempts.

Why stateful: `ClientService` resets its attempt counter on every TCP connect, so a handshake Rancher
refuses (TCP fine, HTTP 400/401) would be retried at the initial delay forever (twisted-notes §4.4).
Instead the tunnel tells its `Backoff` when the WebSocket opened; a connection that lived less than
`stable_after` seconds counts as one more failure, a longer one resets the count.

Why a process-wide limiter: when Rancher restarts, every tunnel of the process drops at once. Jitter
alone spreads 10,000 reconnects over a few seconds; `SlotLimiter` hands out attempt times at least
`1/rate` apart, and a tunnel that wants a later time never delays one that wants an earlier time.
Planned slots alone do not bound what really happens, though: a busy reactor runs timers late, several
at once, and an attempt that first waits for something (a token refresh) starts off its slot. So each
attempt also asks `admit()` at the moment it would connect; it checks the times attempts were really
made, so no 1-second window ever holds more than `reconnect_per_second` of them.

`reconnect = real-agent` reproduces Rancher's own agent (remotedialer sleeps 5 s, the agent loop another
5 s; no jitter, no limit), to reproduce the synchronized storms a real fleet makes.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any, Protocol

JITTERED = "jittered"
REAL_AGENT = "real-agent"
REAL_AGENT_DELAY = 5.0 + 5.0
INITIAL_DELAY = 1.0
FACTOR = 2.0
MAX_DELAY = 60.0
JITTER = 0.5  # a delay is drawn from [base * (1 - JITTER), base]
STABLE_AFTER = 30.0


class Clock(Protocol):
    def seconds(self) -> float: ...


class SlotLimiter:
    """Attempt times on a grid of `1/rate` seconds; each grid slot is given to at most one attempt.

    `reserve(earliest)` returns the first free slot at or after `earliest`.  Free-slot lookup is a
    union-find over slot indices (each taken slot points at the next), so a burst of thousands of
    reservations costs near-constant time each.

    `admit()` is the hard bound, checked when an attempt is about to be made: it keeps the times of the
    last `floor(rate)` admitted attempts and refuses one that would make a window of `window` seconds
    (1 s; `1/rate` when the rate is below one) hold more than that.
    """

    def __init__(self, clock: Clock, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self._clock = clock
        self.rate = float(rate)
        self._next: dict[int, int] = {}
        self._prune_at = 1024
        self.reserved = 0
        if self.rate >= 1.0:
            self.capacity, self.window = int(math.floor(self.rate)), 1.0
        else:
            self.capacity, self.window = 1, 1.0 / self.rate
        self._admitted: deque[float] = deque(maxlen=self.capacity)
        self._held_until = -math.inf
        self.admitted = 0
        self.refused = 0
        #: the most attempts admitted within one window, measured at each admission
        self.peak = 0

    def _find(self, index: int) -> int:
        path = []
        while index in self._next:
            path.append(index)
            index = self._next[index]
        for visited in path:
            self._next[visited] = index
        return index

    def reserve(self, earliest: float) -> float:
        """Take the first free slot at or after the absolute time `earliest`; returns its time."""
        now = self._clock.seconds()
        earliest = max(earliest, now)
        index = self._find(math.ceil(earliest * self.rate - 1e-9))
        self._next[index] = index + 1
        self.reserved += 1
        if len(self._next) >= self._prune_at:
            self._prune(math.floor(now * self.rate))
        return index / self.rate

    def delay(self, wanted: float) -> float:
        """Seconds from now until the slot for an attempt wanted `wanted` seconds from now."""
        now = self._clock.seconds()
        return max(0.0, self.reserve(now + wanted) - now)

    def free_at(self) -> float:
        """The earliest time `admit()` can say yes (now, when the last window has room)."""
        now = self._clock.seconds()
        if len(self._admitted) < self.capacity:
            return now
        return max(now, self._admitted[0] + self.window)

    def admit(self) -> bool:
        """An attempt is about to be made now: True (and it is recorded) if the window has room.

        Exact for every window: an attempt is admitted only when fewer than `capacity` admitted attempts
        lie in the `window` seconds before it (the window `(now - window, now]`)."""
        now = self._clock.seconds()
        if len(self._admitted) == self.capacity and self._admitted[0] > now - self.window:
            self.refused += 1
            return False
        self._admitted.append(now)
        self.admitted += 1
        inside = sum(1 for at in self._admitted if at > now - self.window)
        if inside > self.peak:
            self.peak = inside
        return True

    def retry_at(self) -> float:
        """For an attempt `admit()` just refused: the time to ask again (absolute).

        Usually a few milliseconds: a timer that ran a little late took the room of one due just
        after it. Refused attempts line up `1/rate` apart from when the window has room, so a burst
        of late timers does not come back all at once, and they keep their turn instead of going
        behind every slot already handed out."""
        at = self.free_at()
        if self._held_until >= self._clock.seconds():
            at = max(at, self._held_until + 1.0 / self.rate)
        self._held_until = at
        return at

    def _prune(self, below: int) -> None:
        # Slots in the past can never be asked for again; links only point forward, so dropping them is
        # safe.
        self._next = {index: target for index, target in self._next.items() if index >= below}
        self._prune_at = max(1024, 2 * len(self._next))

    @property
    def tracked(self) -> int:
        return len(self._next)


class Backoff:
    """The retry policy of one tunnel (or one cluster's API calls): a `ClientService` retryPolicy.

    Call `opened()` when the connection really opened (the WebSocket handshake succeeded); the policy
    ignores the attempt number ClientService passes in.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        mode: str = JITTERED,
        limiter: SlotLimiter | None = None,
        initial: float = INITIAL_DELAY,
        factor: float = FACTOR,
        cap: float = MAX_DELAY,
        jitter: float = JITTER,
        stable_after: float = STABLE_AFTER,
        rng: Any = None,
    ) -> None:
        if mode not in (JITTERED, REAL_AGENT):
            raise ValueError(f"reconnect mode must be {JITTERED} or {REAL_AGENT}, not {mode!r}")
        self._clock = clock
        self.mode = mode
        self._limiter = limiter
        self.initial = initial
        self.factor = factor
        self.cap = cap
        self.jitter = jitter
        self.stable_after = stable_after
        self._rng = rng if rng is not None else random.Random()
        self.failures = 0
        self._opened_at: float | None = None
        self.last_delay = 0.0

    def opened(self) -> None:
        """The connection is up; if it stays up `stable_after` seconds, the next failure starts afresh."""
        self._opened_at = self._clock.seconds()

    def reset(self) -> None:
        self.failures = 0
        self._opened_at = None

    def base_delay(self, failures: int) -> float:
        """The un-jittered delay after `failures` previous failures."""
        if self.mode == REAL_AGENT:
            return REAL_AGENT_DELAY
        return min(self.initial * self.factor ** min(failures, 64), self.cap)

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; counts one more failure."""
        now = self._clock.seconds()
        if self._opened_at is not None and now - self._opened_at >= self.stable_after:
            self.failures = 0
        self._opened_at = None
        base = self.base_delay(self.failures)
        self.failures += 1
        if self.mode == REAL_AGENT:
            delay = base
        else:
            delay = base * (1.0 - self.jitter * self._rng.random())
            if self._limiter is not None:
                delay = self._limiter.delay(delay)
        self.last_delay = delay
        return delay

    def __call__(self, attempt: int = 0) -> float:
        return self.next_delay()


__all__ = ["Backoff", "JITTERED", "REAL_AGENT", "REAL_AGENT_DELAY", "SlotLimiter"]
