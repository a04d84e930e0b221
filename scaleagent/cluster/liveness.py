"""Node heartbeats on a kubelet's schedule, for every node of every cluster, from one timer.

A kubelet renews its node Lease every 10 s (a quarter of the 40 s lease duration) and, with leases on,
posts node status every 5 minutes.  Thousands of simulated clusters doing that with a LoopingCall
each would cost a timer per node and tick in lock-step after a restart.  Here one process-wide
scheduler keeps a calendar of buckets (one per `resolution` seconds) and one reactor timer armed for
the earliest non-empty bucket.  Each (cluster, node, beat) has a fixed phase within its period,
derived from the cluster index and node number by a low-discrepancy sequence, and aligned to the
clock rather than to when the cluster started: clusters ramped up together still tick spread out, and
the same cluster ticks at the same phase after a restart.

The scheduler only decides *when*; the callback (wired to the store by the cluster assembly) decides
what a beat writes.  Keep it cheap: it runs for every node of every cluster.
"""

from __future__ import annotations

import enum
import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from scaleagent.apiserver.store import timestamp
from scaleagent.redact import logger

log = logger()

LEASE_PERIOD = 10.0  # kubelet: renewInterval = 0.25 × leaseDurationSeconds (40)
STATUS_PERIOD = 300.0  # kubelet: nodeStatusReportFrequency with the lease in use
RESOLUTION = 0.5

_GOLDEN = (math.sqrt(5) - 1) / 2  # successive multiples spread evenly over [0, 1)
_SILVER = math.sqrt(2) - 1


class Beat(enum.Enum):
    """What is due: the node's Lease renewal or its status (conditions' heartbeat times)."""

    LEASE = "lease"
    STATUS = "status"


def phase(index: int, node: int, beat: Beat) -> float:
    """Fraction of the period, in [0, 1), at which node `node` of cluster `index` beats."""
    value = index * _GOLDEN + node * _SILVER
    if beat is Beat.STATUS:
        value += 0.5  # keep a node's status post away from its lease renewal
    return value % 1.0


BeatCallback = Callable[[str, Beat], Any]


class Registration:
    """One cluster's nodes in the scheduler; `cancel()` stops its beats (idempotent)."""

    __slots__ = ("index", "nodes", "callback", "active", "_scheduler")

    def __init__(
        self, scheduler: HeartbeatScheduler, index: int, nodes: tuple[str, ...], callback: BeatCallback
    ):
        self._scheduler = scheduler
        self.index = index
        self.nodes = nodes
        self.callback = callback
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            self._scheduler._registrations -= 1

    def __repr__(self) -> str:
        return f"<Registration cluster {self.index}, {len(self.nodes)} nodes, active={self.active}>"


class HeartbeatScheduler:
    """Calls `callback(node, beat)` for every registered node when its Lease or status beat is due.

    Periods of 0 turn that beat off.  One reactor timer serves the whole process, armed only while
    something is scheduled; work per beat is O(1).  Beats missed during a stall are not replayed: each
    entry fires once and resumes at its phase.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        lease_period: float = LEASE_PERIOD,
        status_period: float = STATUS_PERIOD,
        resolution: float = RESOLUTION,
    ) -> None:
        for name, value in (("lease_period", lease_period), ("status_period", status_period)):
            if not value >= 0 or math.isinf(value):
                raise ValueError(f"{name} {value!r}: expected seconds >= 0 (0 turns the beat off)")
        if not resolution > 0 or math.isinf(resolution):
            raise ValueError(f"resolution {resolution!r}: expected seconds > 0")
        for name, value in (("lease_period", lease_period), ("status_period", status_period)):
            if 0 < value < resolution:
                raise ValueError(f"{name} {value!r}: expected 0 or at least the resolution ({resolution} s)")
        self._clock = clock
        self._resolution = resolution
        self._periods = {Beat.LEASE: float(lease_period), Beat.STATUS: float(status_period)}
        self._buckets: dict[int, list[tuple[Registration, int, Beat, float]]] = {}
        self._heap: list[int] = []  # bucket numbers, each once, for the earliest-first timer
        self._timer: IDelayedCall | None = None
        self._timer_bucket: int | None = None
        self._registrations = 0
        self._running = False
        #: Beats delivered, and callbacks that raised (for metrics).
        self.beats = 0
        self.errors = 0

    # -- public ------------------------------------------------------------------------------------

    def add(self, index: int, nodes: Sequence[str], callback: BeatCallback) -> Registration:
        """Schedule the beats of cluster `index`'s `nodes`; cancel the returned registration to stop."""
        registration = Registration(self, index, tuple(nodes), callback)
        self._registrations += 1
        now = self._clock.seconds()
        for beat, period in self._periods.items():
            if not period:
                continue
            for number in range(len(registration.nodes)):
                self._push(
                    registration, number, beat, self._first_due(now, period, phase(index, number, beat))
                )
        self._arm()
        return registration

    @property
    def registrations(self) -> int:
        """Active registrations."""
        return self._registrations

    @property
    def pending(self) -> int:
        """Scheduled entries, including those of cancelled registrations not yet dropped."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def stop(self) -> None:
        """Cancel the timer and forget every entry (service shutdown)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._timer_bucket = None
        self._buckets.clear()
        self._heap.clear()

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _first_due(now: float, period: float, fraction: float) -> float:
        """The first time >= now whose position within the period is `fraction`."""
        offset = fraction * period
        return now + (offset - now) % period

    def _bucket_of(self, due: float) -> int:
        return math.ceil(due / self._resolution - 1e-9)

    def _push(self, registration: Registration, number: int, beat: Beat, due: float, after: int = -1) -> None:
        bucket = max(self._bucket_of(due), after + 1)  # never back into a bucket being drained
        entries = self._buckets.get(bucket)
        if entries is None:
            entries = self._buckets[bucket] = []
            heapq.heappush(self._heap, bucket)
        entries.append((registration, number, beat, due))

    def _arm(self) -> None:
        """Make sure the one timer fires at the earliest non-empty bucket."""
        if self._running:
            return  # _tick re-arms when it is done
        if not self._heap:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = self._timer_bucket = None
            return
        first = self._heap[0]
        if self._timer is not None and self._timer.active():
            if self._timer_bucket is not None and self._timer_bucket <= first:
                return
            self._timer.cancel()
        delay = max(0.0, first * self._resolution - self._clock.seconds())
        self._timer_bucket = first
        self._timer = self._clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = self._timer_bucket = None
        self._running = True
        try:
            now = self._clock.seconds()
            current = self._bucket_of(now)
            while self._heap and self._heap[0] <= current:
                bucket = heapq.heappop(self._heap)
                for entry in self._buckets.pop(bucket, ()):
                    self._fire(entry, now, current)
        finally:
            self._running = False
        self._arm()

    def _fire(self, entry: tuple[Registration, int, Beat, float], now: float, current: int) -> None:
        registration, number, beat, due = entry
        if not registration.active:
            return  # dropped: cancelled registrations cost nothing once their entries come round
        self.beats += 1
        try:
            registration.callback(registration.nodes[number], beat)
        except Exception:
            self.errors += 1
            log.failure(
                "heartbeat callback failed for cluster {index} node {node} ({beat})",
                index=registration.index,
                node=registration.nodes[number],
                beat=beat.value,
            )
        period = self._periods[beat]
        following = due + period
        if following <= now:  # a stall: skip what was missed, keep the phase
            following = self._first_due(now + self._resolution, period, (due % period) / period)
        if registration.active:  # the callback may have cancelled it
            self._push(registration, number, beat, following, current)


# -- what a beat writes (pure; inputs are never mutated, untouched parts are shared) ---------------


def micro_time(seconds: float) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC) as Lease `renewTime` uses."""
    whole = int(seconds)
    micros = int(round((seconds - whole) * 1_000_000))
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


def renew_lease(lease: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A copy of a node Lease renewed at `now`, as the kubelet's lease controller writes it."""
    return {**lease, "spec": {**lease.get("spec", {}), "renewTime": micro_time(now)}}


def heartbeat_node(node: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A copy of a Node whose conditions carry `now` as lastHeartbeatTime (transitions unchanged)."""
    stamp = timestamp(now)
    status = node.get("status", {})
    conditions = [{**c, "lastHeartbeatTime": stamp} for c in status.get("conditions", ())]
    return {**node, "status": {**status, "conditions": conditions}}
