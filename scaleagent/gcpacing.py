"""Keep Python's full garbage collections from stalling thousands of tunnels.

A full (generation 2) collection walks every tracked object.  An agent with 2,000 clusters tracks about
1.1 million, and each full collection stalled its reactor for 0.7–0.9 s (5,000 clusters: ~2 s); CPython
starts one whenever a quarter as many objects as survived the last one have been promoted since.
During that pause no tunnel is read, so Rancher's health checks and pings all wait:
`benchmarks/scale.py --clusters 5000 --profile idle` saw `/readyz` p99 of 2 s at steady state.

Nearly everything the agent holds lives for hours (clusters, stores, tunnels), so `GcPacer` moves the
survivors out of the collector's way with `gc.freeze()` every `freeze_every` seconds: later collections
walk only what was made since (garbage not yet found is collected first, which is cheap then).  Frozen
objects are never collected, so cycles that die after being frozen (a watch that ends after minutes, a
tunnel's protocol objects after a reconnect: ~30 objects, ~6 KB per ended watch) wait for a full
collection.  The pacer runs one every `full_every` seconds, once `churn()` (e.g. reconnects) has moved
by `churn_limit`, or once the frozen population has grown by `growth` since the last full pass: the
same bound on uncollected garbage CPython's own full-collection rule gives, at far fewer pauses.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import task

from scaleagent.redact import logger

log = logger()

FREEZE_EVERY = 60.0
FULL_EVERY = 30 * 60.0
CHURN_LIMIT = 2000
GROWTH = 0.25


class GcPacer(Service):
    """Freezes long-lived objects periodically and runs full collections on a schedule of its own.

    A process-wide service (the collector is the process's): `twistd scaleagent` runs one.
    """

    def __init__(
        self,
        clock: Any,
        *,
        freeze_every: float = FREEZE_EVERY,
        full_every: float = FULL_EVERY,
        churn: Callable[[], int] = lambda: 0,
        churn_limit: int = CHURN_LIMIT,
        growth: float = GROWTH,
        collector: Any = gc,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._clock = clock
        self.freeze_every = freeze_every
        self.full_every = full_every
        self._churn = churn
        self.churn_limit = churn_limit
        self.growth = growth
        self._frozen_at_full = 0
        self._gc = collector
        self._timer = timer
        self._loop: task.LoopingCall | None = None
        self._last_full = 0.0
        self._churn_at_full = 0
        self.freezes = 0
        self.full_collections = 0
        self.last_full_seconds = 0.0

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        super().startService()
        self._last_full = self._clock.seconds()
        self._churn_at_full = self._churn()
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self._clock
        self._loop.start(self.freeze_every, now=False).addErrback(
            lambda failure: log.failure("garbage collection pacing failed", failure)
        )

    def stopService(self) -> None:  # noqa: N802 (Twisted's name)
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._gc.unfreeze()  # hand everything back to the collector

    def tick(self) -> None:
        """One period: a full collection when one is due, then freeze what survived."""
        try:
            now = self._clock.seconds()
            churned = self._churn() - self._churn_at_full
            grown = self.frozen - self._frozen_at_full
            if (
                now - self._last_full >= self.full_every
                or churned >= self.churn_limit
                or grown > self.growth * max(self._frozen_at_full, 1)
            ):
                self.collect_fully()
            else:
                self._gc.collect()  # only what is not frozen yet: garbage must not be frozen with the rest
            self._gc.freeze()
            self.freezes += 1
            if self._frozen_at_full == 0:
                self._frozen_at_full = self.frozen  # the first freeze sets the base to grow from
        except Exception:  # a failed tick must not stop the loop and leave everything frozen for good
            log.failure("garbage collection pacing: one period failed")

    def collect_fully(self) -> float:
        """Unfreeze and collect everything (one long pause, on our schedule); returns its seconds."""
        started = self._timer()
        self._gc.unfreeze()
        found = self._gc.collect()
        self.last_full_seconds = self._timer() - started
        self.full_collections += 1
        self._last_full = self._clock.seconds()
        self._churn_at_full = self._churn()
        self._frozen_at_full = 0  # set by the freeze that follows
        log.info(
            "garbage collection: full pass freed {found} objects in {seconds:.2f}s",
            found=found,
            seconds=self.last_full_seconds,
        )
        return self.last_full_seconds

    @property
    def frozen(self) -> int:
        return int(self._gc.get_freeze_count())


__all__ = ["GcPacer"]
