"""Latency and status of every request the traffic driver sends, kept in constant memory.

A soak of thousands of clusters sends millions of requests, so nothing is kept per request: each one
lands in a counter per (kind, status) and in a log-scale latency histogram per kind (about 3 %
resolution), from which p50/p99 are read. Unexpected answers (a 4xx/5xx Rancher would not have
accepted) are failures: counted, logged with the request, and the last few kept for inspection.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from scaleagent.redact import logger

log = logger()

# Histogram buckets: bucket b covers [BASE * RATIO**b, BASE * RATIO**(b+1)) seconds.
_BASE = 1e-5
_RATIO = 1.03
_LOG_RATIO = math.log(_RATIO)
TRANSPORT = 0  # the status recorded when no HTTP answer came (tunnel gone, TLS failure, timeout)
MAX_LOGGED_PER_KIND = 20  # failure log lines per kind; afterwards only counted


class Histogram:
    """A log-scale histogram of seconds: O(1) add, quantiles within ~3 %."""

    __slots__ = ("_buckets", "count", "total", "maximum")

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0

    def add(self, seconds: float) -> None:
        seconds = max(seconds, _BASE)
        self._buckets[int(math.log(seconds / _BASE) / _LOG_RATIO)] += 1
        self.count += 1
        self.total += seconds
        self.maximum = max(self.maximum, seconds)

    def merge(self, other: Histogram) -> None:
        self._buckets.update(other._buckets)
        self.count += other.count
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)

    def to_json(self) -> dict[str, Any]:
        """Raw buckets (string keys), so readers can merge shards and subtract snapshots."""
        return {
            "count": self.count,
            "max_ms": round(self.maximum * 1000, 3),
            "buckets": {str(bucket): n for bucket, n in sorted(self._buckets.items())},
        }

    def quantile(self, q: float) -> float:
        """The q-quantile (0..1) in seconds (the bucket's geometric middle); 0.0 when empty."""
        if not self.count:
            return 0.0
        rank = q * (self.count - 1)
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen > rank:
                return min(_BASE * _RATIO ** (bucket + 0.5), self.maximum)
        return self.maximum


@dataclass(frozen=True)
class Failure:
    """One unexpected answer, as kept for the summary and the log."""

    at: float
    cluster: str
    kind: str
    method: str
    path: str
    status: int
    detail: str


class Records:
    """Every request's kind, status and latency, aggregated; failures counted and logged."""

    def __init__(self, *, keep_failures: int = 50) -> None:
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.requests = 0
        self.failures = 0
        self.transport_errors = 0
        self.watch_events = 0
        self.recent_failures: deque[Failure] = deque(maxlen=keep_failures)
        self._logged: Counter[str] = Counter()

    def record(self, kind: str, status: int, seconds: float) -> None:
        """One answered (or failed, status 0) request of `kind` that took `seconds`."""
        self.requests += 1
        self.statuses[(kind, status)] += 1
        if status != TRANSPORT:
            histogram = self.latency.get(kind)
            if histogram is None:
                histogram = self.latency[kind] = Histogram()
            histogram.add(seconds)
        else:
            self.transport_errors += 1

    def failure(
        self, at: float, cluster: str, kind: str, method: str, path: str, status: int, detail: str
    ) -> None:
        """An answer Rancher would not have accepted: counted, kept, logged (bounded per kind)."""
        self.failures += 1
        self.recent_failures.append(Failure(at, cluster, kind, method, path, status, detail[:300]))
        self._logged[kind] += 1
        if self._logged[kind] <= MAX_LOGGED_PER_KIND:
            log.warn(
                "ranchersim driver: unexpected HTTP {status} from {cluster}: {method} {path} ({kind}): "
                "{detail}",
                status=status,
                cluster=cluster,
                method=method,
                path=path,
                kind=kind,
                detail=detail[:300],
            )
            if self._logged[kind] == MAX_LOGGED_PER_KIND:
                log.warn("ranchersim driver: further {kind} failures are only counted", kind=kind)

    def statuses_by_kind(self) -> dict[str, dict[str, int]]:
        """{kind: {"200": n, ...}} for every request kind."""
        result: dict[str, dict[str, int]] = {}
        for (kind, status), n in sorted(self.statuses.items()):
            result.setdefault(kind, {})[str(status)] = n
        return result

    def status(self) -> dict[str, Any]:
        """Everything a harness needs to compute quantiles itself: the histogram scale and buckets."""
        return {
            "histogram": {"base": _BASE, "ratio": _RATIO},
            "latency": {kind: h.to_json() for kind, h in sorted(self.latency.items())},
            "statuses_by_kind": self.statuses_by_kind(),
        }

    def overall(self) -> Histogram:
        total = Histogram()
        for histogram in self.latency.values():
            total.merge(histogram)
        return total

    def summary(self) -> dict[str, Any]:
        """Figures for logs, tests and the demo: counts, failures, latency quantiles in ms."""
        overall = self.overall()
        by_status: Counter[int] = Counter()
        for (_, status), n in self.statuses.items():
            by_status[status] += n
        return {
            "requests": self.requests,
            "answered": self.requests - self.transport_errors,
            "failures": self.failures,
            "transport_errors": self.transport_errors,
            "watch_events": self.watch_events,
            "statuses": {str(k): v for k, v in sorted(by_status.items())},
            "p50_ms": round(overall.quantile(0.50) * 1000, 2),
            "p99_ms": round(overall.quantile(0.99) * 1000, 2),
            "max_ms": round(overall.maximum * 1000, 2),
            "kinds": {
                kind: {
                    "count": h.count,
                    "p50_ms": round(h.quantile(0.5) * 1000, 2),
                    "p99_ms": round(h.quantile(0.99) * 1000, 2),
                }
                for kind, h in sorted(self.latency.items())
            },
        }


__all__ = ["TRANSPORT", "Failure", "Histogram", "Records"]
