"""Percentiles, the stand-in's log-scale latency histograms, and peak rates from counter samples."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks; None when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q!r}: expected 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """count, p50, p95, p99, max of a sample (None figures when empty), rounded."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "count": len(values),
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values)) if values else None,
    }


@dataclass
class LogHistogram:
    """The stand-in's latency histogram (scaleagent.sim.records): bucket b holds seconds in
    [base * ratio**b, base * ratio**(b+1)). Mergeable over shards; quantiles within one bucket (~3 %)."""

    base: float = 1e-5
    ratio: float = 1.03
    buckets: dict[int, int] = field(default_factory=dict)
    maximum: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any], base: float = 1e-5, ratio: float = 1.03) -> LogHistogram:
        buckets = {int(k): int(v) for k, v in (data.get("buckets") or {}).items() if int(v) > 0}
        maximum = float(data.get("max_ms", 0.0)) / 1000
        return cls(base, ratio, buckets, maximum)

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def merge(self, other: LogHistogram) -> None:
        if (other.base, other.ratio) != (self.base, self.ratio):
            raise ValueError("histograms of different bucket scales cannot be merged")
        for bucket, n in other.buckets.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + n
        self.maximum = max(self.maximum, other.maximum)

    def _middle(self, bucket: int) -> float:
        value = self.base * self.ratio ** (bucket + 0.5)
        return min(value, self.maximum) if self.maximum > 0 else value

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1) in seconds, None when empty (same rank rule as the stand-in's)."""
        total = self.count
        if not total:
            return None
        rank = q * (total - 1)
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen > rank:
                return self._middle(bucket)
        return self.maximum

    def cdf(self) -> list[tuple[float, float]]:
        """(seconds, fraction of requests at or below) at each bucket's upper edge."""
        total = self.count
        points: list[tuple[float, float]] = []
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            points.append((self.base * self.ratio ** (bucket + 1), seen / total))
        return points

    def summary_ms(self) -> dict[str, Any]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 2)

        return {
            "count": self.count,
            "p50_ms": ms(self.quantile(0.50)),
            "p95_ms": ms(self.quantile(0.95)),
            "p99_ms": ms(self.quantile(0.99)),
            "max_ms": ms(self.maximum) if self.count else None,
        }


def peak_rate(samples: Iterable[tuple[float, float]], window: float = 1.0) -> float:
    """Highest increase per second of a cumulative counter over any `window` seconds.

    `samples` are (time, counter value) in time order. A drop of the counter (the process restarted)
    starts a new segment. The window is at least the sampling interval: rates are never read off a
    span shorter than two consecutive samples.
    """
    points = list(samples)
    best = 0.0
    start = 0
    for end in range(1, len(points)):
        t_end, v_end = points[end]
        if v_end < points[end - 1][1]:  # counter reset
            start = end
            continue
        while start < end - 1 and t_end - points[start + 1][0] >= window:
            start += 1
        t0, v0 = points[start]
        span = t_end - t0
        if span > 0:
            best = max(best, (v_end - v0) / span)
    return best


def first_reach(samples: Iterable[tuple[float, float]], target: float) -> float | None:
    """The first time a sampled value is at least `target`; None if never."""
    for t, value in samples:
        if value >= target:
            return t
    return None


__all__ = ["LogHistogram", "first_reach", "peak_rate", "percentile", "summarize"]
