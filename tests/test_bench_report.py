"""The scale benchmark's threshold file, its evaluation, and the Markdown summary."""

from pathlib import Path

import pytest

from benchmarks.scalelib import report, thresholds

ROOT = Path(__file__).resolve().parent.parent

TABLE = thresholds.parse(
    {
        "count": {
            "200": {"any": {"ramp.all_active_s": {"max": 90}, "ramp.active_fraction": {"min": 1.0}},
                    "idle": {"steady.rss": {"max": 256}}},
            "5000": {"any": {"ramp.all_active_s": {"max": 600}}, "idle": {"ramp.all_active_s": {"max": 300}}},
        }
    }
)


def test_the_shipped_file_loads_and_has_a_200_cluster_entry():
    table = thresholds.load(ROOT / "benchmarks" / "thresholds.toml")
    assert 200 in table and 5000 in table and 10000 in table
    assert table[5000]["idle"]["steady.agent_rss_kib_per_cluster"] == {"max": 256.0}
    assert table[5000]["rancher-2.14"]["steady.agent_rss_kib_per_cluster"] == {"max": 1024.0}


def test_entry_is_the_largest_count_not_above_the_run():
    assert thresholds.select(TABLE, 200) == 200
    assert thresholds.select(TABLE, 4999) == 200
    assert thresholds.select(TABLE, 10000) == 5000
    assert thresholds.select(TABLE, 50) == 200  # below all: the smallest


def test_evaluate_passes_fails_and_reports_unmeasured_figures():
    result = {"ramp": {"all_active_s": 120.0, "active_fraction": 1.0}, "steady": {"rss": None}}
    entry, checks = thresholds.evaluate(TABLE, 300, "idle", result)
    assert entry == 200
    by = {c.figure: c for c in checks}
    assert by["ramp.all_active_s"].status == thresholds.FAIL
    assert by["ramp.active_fraction"].status == thresholds.PASS
    assert by["steady.rss"].status == thresholds.MISSING
    assert not thresholds.passed(checks)
    # A profile's own table overrides `any`; other profiles do not see it.
    _, checks = thresholds.evaluate(TABLE, 5000, "idle", {"ramp": {"all_active_s": 400}})
    assert [c.status for c in checks] == [thresholds.FAIL]
    _, checks = thresholds.evaluate(TABLE, 5000, "rancher-2.14", {"ramp": {"all_active_s": 400}})
    assert thresholds.passed(checks) and checks[0].limit == 600
    # Unmeasured figures alone never fail a run.
    _, checks = thresholds.evaluate(TABLE, 200, "rancher-2.14", {})
    assert thresholds.passed(checks) and {c.status for c in checks} == {thresholds.MISSING}


def test_figure_reads_numbers_only():
    result = {"a": {"b": 3, "flag": True, "text": "x"}}
    assert thresholds.figure(result, "a.b") == 3.0
    assert thresholds.figure(result, "a.flag") is None
    assert thresholds.figure(result, "a.text") is None
    assert thresholds.figure(result, "a.b.c") is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({}, "expected [count."),
        ({"count": {"many": {}}}, "count.many: expected a cluster count"),
        ({"count": {"0": {}}}, "positive count"),
        ({"count": {"200": {"idle": {"x": 5}}}}, "count.200.idle.x: expected { max = X }"),
        ({"count": {"200": {"idle": {"x": {"below": 5}}}}}, "count.200.idle.x"),
        ({"count": {"200": {"idle": {"x": {"max": "5"}}}}}, "count.200.idle.x.max: expected a number"),
    ],
)
def test_bad_threshold_files_name_the_entry(data, message):
    with pytest.raises(thresholds.ThresholdError, match=message.replace("[", r"\[").replace("{", r"\{")):
        thresholds.parse(data, "t.toml")


def test_unreadable_file_is_a_threshold_error(tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text("[count.200\n")
    with pytest.raises(thresholds.ThresholdError, match=str(bad)):
        thresholds.load(bad)


def sample_result():
    return {
        "run": {"clusters": 200, "profile": "idle", "shards": 1, "command": "python benchmarks/scale.py",
                "machine": {"cpus": 2, "loadavg_start": [1.0, 1.0, 1.0]}},
        "ramp": {"all_active_s": 12.5, "registered": {"count": 200, "p50": 2.0, "p95": 3.0, "p99": 3.5,
                                                      "max": 4.0}},
        "steady": {"agent_rss_kib_per_cluster": 210.4},
        "latency": {"kinds": {"health readyz": {"count": 800, "p50_ms": 1.2, "p95_ms": 3.0, "p99_ms": 7.5,
                                                 "max_ms": 20.0}}},
        "latency_run": None,
        "storm": {"mode": "restart", "all_active_again_s": 30.0, "peak_reconnects_per_s": 95.0},
        "thresholds": {"file": "benchmarks/thresholds.toml", "entry": 200, "passed": False,
                       "checks": [{"figure": "ramp.all_active_s", "value": 12.5, "max": 10.0,
                                   "status": "FAIL"}]},
        "notes": ["a note"],
    }


def test_markdown_summary_shows_figures_thresholds_and_what_is_missing():
    text = report.render_markdown(sample_result())
    assert text.startswith("# Scale run: 200 clusters, profile idle")
    assert "| registered | 200 | 2 s | 3 s | 3.5 s | 4 s |" in text
    assert "**210.4 KiB per cluster**" in text
    assert "| health readyz | 800 | 1.2 | 3 | 7.5 | 20.0 |" in text
    assert "Not available: the stand-in did not report its records" in text  # latency_run is None
    assert "All Active again after **30.0 s**" in text
    assert "**FAILED**" in text and "| ramp.all_active_s | 12.5 | ≤ 10.0 | FAIL |" in text
    assert "- a note" in text


def test_markdown_summary_of_an_empty_result_does_not_crash():
    text = report.render_markdown({})
    assert "# Scale run" in text and "**passed**" in text


def test_plots_are_written_when_matplotlib_is_there(tmp_path):
    pytest.importorskip("matplotlib")
    result = sample_result()
    result["timeline"] = [{"t": 0.0, "registered": 0, "connected": 0, "active": 0},
                          {"t": 5.0, "registered": 200, "connected": 200, "active": 200}]
    names = report.write_plots(result, tmp_path, {"health readyz": [(0.001, 0.5), (0.01, 1.0)]})
    assert names == ["scale-active.png", "scale-latency-cdf.png"]
    assert all((tmp_path / n).read_bytes().startswith(b"\x89PNG") for n in names)


def test_storm_reconnect_peaks_are_shown_per_agent_process_when_sharded():
    result = sample_result()
    result["storm"]["peak_reconnects_per_s_by_process"] = [98.5, 99.25]
    text = report.render_markdown(result)
    assert "per agent process: 98.5 /s, 99.2" in text
    result["storm"]["peak_reconnects_per_s_by_process"] = [98.5]
    result["storm"]["agent_window_peak_by_process"] = [100.0]
    text = report.render_markdown(result)
    assert "per agent process" not in text
    assert "the agents' own limiters admitted at most 100.0 attempts in any 1 s window" in text
