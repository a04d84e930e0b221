"""The scale benchmark's statistics: percentiles, the stand-in's histograms, peak rates, windows."""

import math

import pytest

from benchmarks.scalelib import latency
from benchmarks.scalelib.stats import LogHistogram, first_reach, peak_rate, percentile, summarize
from scaleagent.sim.records import Histogram


def test_percentile_interpolates_between_ranks_like_numpy():
    values = [10.0, 1.0, 4.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 10.0
    assert percentile(values, 90) == pytest.approx(4 + 0.6 * 6)  # rank 3.6
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summarize_reports_count_and_tail():
    figures = summarize([float(i) for i in range(1, 101)])
    assert figures["count"] == 100
    assert figures["p50"] == pytest.approx(50.5)
    assert figures["p99"] == pytest.approx(99.01)
    assert figures["max"] == 100.0
    assert summarize([]) == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}


def buckets_of(histogram: Histogram) -> dict:
    return histogram.to_json()  # what GET /sim/status carries per kind


def test_log_histogram_reads_the_stand_ins_buckets_to_the_same_quantiles():
    """Same bucket scale and rank rule as scaleagent.sim.records, so shards merge exactly."""
    theirs = Histogram()
    for i in range(1, 1001):
        theirs.add(i / 10000)  # 0.1 ms .. 100 ms
    ours = LogHistogram.from_json(buckets_of(theirs))
    assert ours.count == 1000
    for q in (0.5, 0.95, 0.99):
        assert ours.quantile(q) == pytest.approx(theirs.quantile(q))
        assert ours.quantile(q) == pytest.approx(q * 0.1, rel=0.04)
    assert ours.summary_ms()["max_ms"] == 100.0
    cdf = ours.cdf()
    assert cdf[-1][1] == 1.0 and all(a[0] < b[0] and a[1] <= b[1] for a, b in zip(cdf, cdf[1:]))


def test_histograms_merge_over_shards_and_refuse_other_scales():
    a, b = Histogram(), Histogram()
    for _ in range(99):
        a.add(0.001)
    b.add(2.0)
    merged = LogHistogram.from_json(buckets_of(a))
    merged.merge(LogHistogram.from_json(buckets_of(b)))
    assert merged.count == 100 and merged.maximum == 2.0
    assert merged.quantile(0.5) == pytest.approx(0.001, rel=0.03)
    assert merged.quantile(1.0) == pytest.approx(2.0, rel=0.03)
    with pytest.raises(ValueError):
        merged.merge(LogHistogram(base=1e-6))
    assert LogHistogram().quantile(0.5) is None


def status_with(kinds: dict) -> dict:
    histograms = {k: buckets_of(h) for k, h in kinds.items()}
    return {"histogram": {"base": 1e-5, "ratio": 1.03}, "latency": histograms}


def test_latency_window_is_the_difference_of_two_snapshots():
    readyz = Histogram()
    for _ in range(100):
        readyz.add(0.5)  # slow during the ramp
    before = latency.snapshot([status_with({"health readyz": readyz})])
    for _ in range(1000):
        readyz.add(0.002)  # fast at steady state
    after = latency.snapshot([status_with({"health readyz": readyz}), None])
    steady = latency.figures(latency.window(before, after))
    assert steady["kinds"]["health readyz"]["count"] == 1000
    assert steady["readyz_p99_ms"] == pytest.approx(2.0, rel=0.03)
    whole = latency.figures(after)
    assert whole["readyz_p99_ms"] == pytest.approx(500, rel=0.03)
    assert latency.snapshot([None, {"sim": {}}]) is None
    assert latency.figures(None) is None


def test_single_object_gets_are_merged_into_one_figure():
    fast, slow = Histogram(), Histogram()
    for _ in range(98):
        fast.add(0.001)
    slow.add(0.3)
    slow.add(0.3)
    figures = latency.figures(latency.snapshot([status_with({"version": fast, "agent check": slow})]))
    assert figures["single_get_kinds"] == ["version", "agent check"]
    assert figures["single_get_p99_ms"] == pytest.approx(300, rel=0.03)
    assert figures["readyz_p99_ms"] is None


def test_peak_rate_of_a_counter_handles_windows_and_restarts():
    samples = [(0.0, 0), (1.0, 10), (2.0, 60), (3.0, 70), (4.0, 5), (5.0, 25)]
    assert peak_rate(samples, window=1.0) == 50.0
    assert peak_rate(samples, window=2.0) == 30.0  # (70-10)/2
    # Sparse samples: never a rate over less than two consecutive samples.
    assert peak_rate([(0.0, 0), (5.0, 100)], window=1.0) == 20.0
    assert peak_rate([], window=1.0) == 0.0
    assert math.isclose(peak_rate([(0, 0), (0.5, 10), (1.0, 20), (1.5, 30)], window=1.0), 20.0)


def test_first_reach():
    assert first_reach([(0, 1), (2, 5), (3, 9)], 5) == 2
    assert first_reach([(0, 1)], 5) is None


def test_the_stand_ins_summary_line_is_read_back():
    """The fallback source of latency while /sim/status is missing: the driver's own log line."""
    log = (
        "2026-11-26T12:21:27+0000 [scaleagent.sim.driver#info] ranchersim driver (idle): 153791 requests "
        "(0 failures, 2 transport errors), p50 249.32 ms, p99 3262.78 ms; 2961 setups done, 0 watches open\n"
        "2026-11-26T12:21:37+0000 [scaleagent.sim.driver#info] ranchersim driver (rancher-2.14): 161137 "
        "requests (1 failures, 0 transport errors), p50 264.5 ms, p99 3461.49 ms; 3013 setups done, "
        "11 watches open\n"
    )
    line = latency.last_driver_line(log)
    assert line["profile"] == "rancher-2.14" and line["requests"] == "161137" and line["failures"] == "1"
    assert float(line["p99_ms"]) == 3461.49 and line["watches_open"] == "11"
    assert latency.last_driver_line("nothing here") is None
