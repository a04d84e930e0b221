"""The Markdown summary and the PNG plots of one scale run (plots only when matplotlib is there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3g}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".rstrip()


def _percentiles_row(name: str, figures: dict[str, Any] | None, unit: str) -> str:
    f = figures or {}
    cells = [_fmt(f.get(k), unit) for k in ("p50", "p95", "p99", "max")]
    return f"| {name} | {_fmt(f.get('count'))} | " + " | ".join(cells) + " |"


def render_markdown(result: dict[str, Any]) -> str:
    """A human summary of the result JSON: machine, command, figures, thresholds."""
    run = result.get("run", {})
    machine = run.get("machine", {})
    ramp = result.get("ramp", {})
    steady = result.get("steady", {})
    storm = result.get("storm", {})
    lines = [
        f"# Scale run: {run.get('clusters')} clusters, profile {run.get('profile')}",
        "",
        f"- Run {run.get('uuid', '?')}, {run.get('started', '?')} → {run.get('finished', '?')}",
        f"- Command: `{run.get('command', '?')}`",
        f"- Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model', '?')}), "
        f"{_fmt(machine.get('mem_gib'), 'GiB')} RAM, Python {machine.get('python')}, "
        f"kernel {machine.get('kernel')}; load average at start {machine.get('loadavg_start')}, "
        f"at end {machine.get('loadavg_end')}",
        f"- Agent: {run.get('shards')} process(es), ramp {run.get('ramp_per_second')}/s, reconnect "
        f"{run.get('reconnect')} at most {run.get('reconnect_per_second')}/s per process",
        "",
        "## Ramp (seconds after the agent started)",
        "",
        f"All registered {_fmt(ramp.get('all_registered_s'), 's')}, all connected "
        f"{_fmt(ramp.get('all_connected_s'), 's')}, all Active {_fmt(ramp.get('all_active_s'), 's')}"
        f" ({_fmt(ramp.get('active_at_end'))} of {_fmt(run.get('clusters'))} Active at the end of the ramp"
        f"; 1,000 connected after {_fmt(ramp.get('connected_1000_s'), 's')}). "
        f"Per-cluster times are read from the stand-in every {_fmt(ramp.get('poll_interval_s'), 's')}.",
        "",
        "| per cluster | n | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|",
        _percentiles_row("registered", ramp.get("registered"), "s"),
        _percentiles_row("connected (both tunnels)", ramp.get("connected"), "s"),
        _percentiles_row("Active", ramp.get("active"), "s"),
        "",
        f"## Steady state ({_fmt(steady.get('seconds'), 's')}; {_fmt(steady.get('clusters_connected'))} "
        f"clusters connected, {_fmt(steady.get('clusters_active'))} Active at the end)",
        "",
        f"- Agent RSS {_fmt(steady.get('agent_rss_mib'), 'MiB')} = "
        f"**{_fmt(steady.get('agent_rss_kib_per_cluster'), 'KiB per cluster')}** "
        f"(a zero-cluster agent: {_fmt(steady.get('agent_rss_baseline_mib'), 'MiB')}; above it "
        f"**{_fmt(steady.get('agent_rss_kib_per_cluster_marginal'), 'KiB per cluster')}**)",
        f"- Agent CPU {_fmt(steady.get('agent_cpu_percent'), '% of one core')} = "
        f"**{_fmt(steady.get('agent_cpu_s_per_cluster_minute'), 'CPU s per cluster-minute')}**",
        f"- Stand-in RSS {_fmt(steady.get('sim_rss_mib'), 'MiB')}, CPU "
        f"{_fmt(steady.get('sim_cpu_percent'), '%')}; load average {steady.get('loadavg')}",
        "",
    ]
    for label, key in (("steady state", "latency"), ("whole run (setup included)", "latency_run")):
        latency = result.get(key)
        lines += [f"## Request latency through the tunnels, {label}", ""]
        if not latency:
            lines += ["Not available: the stand-in did not report its records (`GET /sim/status`).", ""]
            continue
        lines += [
            "| kind | requests | p50 ms | p95 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|",
        ]
        for kind, f in latency.get("kinds", {}).items():
            cells = " | ".join(_fmt(f.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
            lines.append(f"| {kind} | {_fmt(f.get('count'))} | {cells} |")
        lines.append("")
    lines += [
        f"## Reconnect storm ({storm.get('mode', 'none')})",
        "",
    ]
    if storm.get("mode", "none") != "none":
        by_process = storm.get("peak_reconnects_per_s_by_process") or []
        per_process = ""
        if len(by_process) > 1:
            per_process = "; per agent process: " + ", ".join(_fmt(p, "/s") for p in by_process)
        own = [p for p in storm.get("agent_window_peak_by_process") or [] if p is not None]
        if own:
            per_process += (
                "; the agents' own limiters admitted at most " + ", ".join(_fmt(p) for p in own)
                + " attempts in any 1 s window"
            )
        lines += [
            f"- All Active again after **{_fmt(storm.get('all_active_again_s'), 's')}** "
            f"({_fmt(storm.get('active_at_end'))} Active at the end)",
            f"- Peak reconnect attempts {_fmt(storm.get('peak_reconnects_per_s'), '/s')} over 5 s windows "
            f"({_fmt(storm.get('peak_reconnects_per_s_1s_window'), '/s')} over 1 s) "
            f"(configured at most {_fmt(storm.get('configured_reconnect_per_s'), '/s')} over all "
            f"processes; source: {storm.get('reconnect_source', '–')}){per_process}",
            f"- Peak agent CPU {_fmt(storm.get('peak_agent_cpu_percent'), '%')}",
            "",
        ]
    thresholds = result.get("thresholds") or {}
    lines += [
        f"## Thresholds ({thresholds.get('file', '–')}, entry for {thresholds.get('entry', '–')} clusters): "
        + ("**passed**" if thresholds.get("passed", True) else "**FAILED**"),
        "",
        "| figure | value | limit | result |",
        "|---|---|---|---|",
    ]
    for check in thresholds.get("checks", []):
        kind = "max" if "max" in check else "min"
        sign = "≤" if kind == "max" else "≥"
        limit = f"{sign} {_fmt(check[kind])}"
        lines.append(f"| {check['figure']} | {_fmt(check['value'])} | {limit} | {check['status']} |")
    notes = result.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_plots(
    result: dict[str, Any], out: Path, latency_cdfs: dict[str, list[tuple[float, float]]]
) -> list[str]:
    """Active clusters over time and the latency CDF per kind as PNGs; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    timeline = result.get("timeline") or []
    if timeline:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        t = [row["t"] for row in timeline]
        for key, label in (("registered", "registered"), ("connected", "both tunnels"), ("active", "Active")):
            ax.plot(t, [row.get(key, 0) for row in timeline], label=label)
        storm_at = (result.get("storm") or {}).get("started_t")
        if storm_at is not None:
            ax.axvline(storm_at, color="grey", linestyle="--", label="storm")
        ax.set_xlabel("seconds after the agent started")
        ax.set_ylabel("clusters")
        run = result.get("run", {})
        ax.set_title(f"{run.get('clusters')} clusters, {run.get('profile')}")
        ax.legend()
        ax.grid(alpha=0.3)
        path = out / "scale-active.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path.name)
    if latency_cdfs:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for kind, points in sorted(latency_cdfs.items()):
            if points:
                ax.step([p[0] * 1000 for p in points], [p[1] for p in points], where="post", label=kind)
        ax.set_xscale("log")
        ax.set_xlabel("latency through the tunnel (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_title("latency CDF by request kind (whole run)")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        path = out / "scale-latency-cdf.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path.name)
    return written


__all__ = ["render_markdown", "write_plots"]
