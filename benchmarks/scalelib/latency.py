"""Latency by request kind from the stand-in's records (`GET /sim/status`), merged over shards.

The stand-in keeps one log-scale histogram per request kind, cumulative since it started. A window
(the steady phase) is the difference of two snapshots, bucket by bucket; shards merge by addition.
"""

from __future__ import annotations

import re
from typing import Any

from benchmarks.scalelib.stats import LogHistogram

READYZ = "health readyz"
# Single-object GETs the driver sends (setup and, under rancher-2.13, the health check).
SINGLE_GETS = ("kube-system", "health kube-system", "version", "agent check", "impersonation token")

Snapshot = dict[str, LogHistogram]


def snapshot(statuses: list[dict[str, Any] | None]) -> Snapshot | None:
    """Histograms per kind over every shard's `/sim/status`; None when no shard reports them."""
    merged: Snapshot = {}
    seen = False
    for status in statuses:
        if not status or "latency" not in status:
            continue
        seen = True
        scale = status.get("histogram") or {}
        base, ratio = float(scale.get("base", 1e-5)), float(scale.get("ratio", 1.03))
        for kind, data in (status.get("latency") or {}).items():
            histogram = LogHistogram.from_json(data, base, ratio)
            if kind in merged:
                merged[kind].merge(histogram)
            else:
                merged[kind] = histogram
    return merged if seen else None


def window(before: Snapshot | None, after: Snapshot | None) -> Snapshot | None:
    """What was recorded between two snapshots (bucket counts subtracted; max = top bucket's edge)."""
    if after is None:
        return None
    if before is None:
        return after
    result: Snapshot = {}
    for kind, late in after.items():
        early = before.get(kind)
        buckets = {b: n - (early.buckets.get(b, 0) if early else 0) for b, n in late.buckets.items()}
        buckets = {b: n for b, n in buckets.items() if n > 0}
        if not buckets:
            continue
        top = late.base * late.ratio ** (max(buckets) + 1)
        result[kind] = LogHistogram(late.base, late.ratio, buckets, min(top, late.maximum) or top)
    return result


def figures(histograms: Snapshot | None) -> dict[str, Any] | None:
    """Per-kind p50/p95/p99/max, plus the figures the targets name (readyz, single-object GETs)."""
    if histograms is None:
        return None
    kinds = {kind: h.summary_ms() for kind, h in sorted(histograms.items())}
    singles: LogHistogram | None = None
    for kind in SINGLE_GETS:
        if kind in histograms:
            if singles is None:
                first = histograms[kind]
                singles = LogHistogram(first.base, first.ratio)
            singles.merge(histograms[kind])
    overall: LogHistogram | None = None
    for histogram in histograms.values():
        if overall is None:
            overall = LogHistogram(histogram.base, histogram.ratio)
        overall.merge(histogram)
    readyz = kinds.get(READYZ) or {}
    single = singles.summary_ms() if singles is not None else {}
    return {
        "kinds": kinds,
        "overall": overall.summary_ms() if overall is not None else None,
        "readyz_p99_ms": readyz.get("p99_ms"),
        "single_get_p99_ms": single.get("p99_ms"),
        "single_get_kinds": [k for k in SINGLE_GETS if k in histograms],
    }


# The stand-in's periodic summary line (scaleagent.sim.driver.TrafficDriver.log_summary).
DRIVER_LINE_RE = re.compile(
    r"ranchersim driver \((?P<profile>[^)]*)\): (?P<requests>\d+) requests \((?P<failures>\d+) failures, "
    r"(?P<transport_errors>\d+) transport errors\), p50 (?P<p50_ms>[0-9.]+) ms, p99 (?P<p99_ms>[0-9.]+) ms; "
    r"(?P<setups_done>\d+) setups done, (?P<watches_open>\d+) watches open"
)


def last_driver_line(log_text: str) -> dict[str, str] | None:
    """The fields of the last driver summary line in a stand-in log; None when there is none."""
    found = None
    for found in DRIVER_LINE_RE.finditer(log_text):  # noqa: B007 -- the last one is wanted
        pass
    return found.groupdict() if found else None


__all__ = ["DRIVER_LINE_RE", "READYZ", "SINGLE_GETS", "figures", "last_driver_line", "snapshot", "window"]
