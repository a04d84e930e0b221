"""Soak: N clusters under a traffic profile for a long time; RSS of both processes sampled to a CSV.

    python benchmarks/soak.py --clusters 200 --minutes 30 --profile rancher-2.14 --out soak.csv

Two child processes, like a real deployment: the Rancher stand-in (with its traffic driver) and the
agent (AgentService with the real ClusterSet), talking over loopback TLS. Every `--interval` seconds
(default 30) one CSV row: elapsed seconds, RSS of each process (MiB), the stand-in's cluster counts,
the driver's requests, failures and latency. At the end a summary (first/last/min/max RSS after the
warm-up, growth per hour) is printed and written next to the CSV as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# -- child roles ------------------------------------------------------------------------------------


def run_sim(workdir: Path, profile: str) -> None:
    from twisted.internet import reactor, task  # noqa: TID251 -- a benchmark process of its own
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from scaleagent.sim.service import RancherSim

    globalLogBeginner.beginLoggingTo([textFileLogObserver(open(workdir / "sim.log", "a"))])
    sim = RancherSim(
        reactor,
        profile=None if profile == "none" else profile,
        url_file=workdir / "url",
        token_file=workdir / "token",
        ca_file=workdir / "ca.pem",
        summary_interval=60.0,
    )

    def status() -> None:
        figures = {"sim": sim.summary(), "driver": sim.driver_summary()}
        tmp = workdir / "status.json.tmp"
        tmp.write_text(json.dumps(figures))
        tmp.replace(workdir / "status.json")

    loop = task.LoopingCall(status)
    reactor.callWhenRunning(sim.startService)
    reactor.callWhenRunning(loop.start, 5.0, now=False)
    reactor.addSystemEventTrigger("before", "shutdown", sim.stopService)
    reactor.run()


def run_agent(workdir: Path, clusters: int) -> None:
    from twisted.internet import reactor  # noqa: TID251 -- a benchmark process of its own
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from scaleagent.agent import AgentService
    from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig
    from scaleagent.redact import Secret
    from scaleagent.sim.manifest import ca_checksum

    globalLogBeginner.beginLoggingTo([textFileLogObserver(open(workdir / "agent.log", "a"))])
    config = AgentConfig(
        rancher=RancherConfig(
            url=(workdir / "url").read_text().strip(),
            token=Secret((workdir / "token").read_text().strip()),
            ca_checksum=ca_checksum((workdir / "ca.pem").read_text()),
        ),
        clusters=ClustersConfig(count=clusters, name_prefix="soak-", ramp_per_second=50.0),
        state=StateConfig(dir=workdir / "state"),
    )
    agent = AgentService(config, reactor)
    reactor.callWhenRunning(agent.startService)
    reactor.addSystemEventTrigger("before", "shutdown", agent.stopService)
    reactor.run()


# -- the sampler ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--profile", default="rancher-2.14")
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds excluded from the growth figure")
    parser.add_argument("--out", default="soak.csv")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--role", choices=("sim", "agent"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.role == "sim":
        run_sim(Path(args.workdir), args.profile)
        return
    if args.role == "agent":
        run_agent(Path(args.workdir), args.clusters)
        return

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve()), "--workdir", str(workdir)]
    sim = subprocess.Popen([*me, "--role", "sim", "--profile", args.profile], cwd=workdir)
    for _ in range(600):
        if (workdir / "url").exists() and (workdir / "url").read_text().strip():
            break
        time.sleep(0.1)
    else:
        sim.terminate()
        raise SystemExit("soak: the stand-in did not start (see sim.log)")
    agent = subprocess.Popen([*me, "--role", "agent", "--clusters", str(args.clusters)], cwd=workdir)
    print(f"soak: workdir {workdir}; stand-in pid {sim.pid}, agent pid {agent.pid}", flush=True)
    started = time.monotonic()
    rows = []
    fields = [
        "elapsed_s",
        "sim_rss_mib",
        "agent_rss_mib",
        "sim_cpu_s",
        "agent_cpu_s",
        "active",
        "pending",
        "unavailable",
        "main_tunnels",
        "steve_tunnels",
        "requests",
        "failures",
        "transport_errors",
        "p50_ms",
        "p99_ms",
        "watches_open",
    ]
    all_active_at = None
    try:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            deadline = started + args.minutes * 60
            while time.monotonic() < deadline:
                if sim.poll() is not None or agent.poll() is not None:
                    print("soak: a child process ended early", flush=True)
                    break
                try:
                    status = json.loads((workdir / "status.json").read_text())
                except (OSError, ValueError):
                    status = {"sim": {}, "driver": None}
                s, d = status.get("sim") or {}, status.get("driver") or {}
                elapsed = time.monotonic() - started
                if all_active_at is None and s.get("active") == args.clusters:
                    all_active_at = elapsed
                row = {
                    "elapsed_s": round(elapsed, 1),
                    "sim_rss_mib": round(rss_mib(sim.pid), 1),
                    "agent_rss_mib": round(rss_mib(agent.pid), 1),
                    "sim_cpu_s": round(cpu_seconds(sim.pid), 2),
                    "agent_cpu_s": round(cpu_seconds(agent.pid), 2),
                    **{
                        k: s.get(k, "")
                        for k in ("active", "pending", "unavailable", "main_tunnels", "steve_tunnels")
                    },
                    **{
                        k: d.get(k, "")
                        for k in (
                            "requests",
                            "failures",
                            "transport_errors",
                            "p50_ms",
                            "p99_ms",
                            "watches_open",
                        )
                    },
                }
                rows.append(row)
                writer.writerow(row)
                handle.flush()
                print("soak: " + ", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
                time.sleep(max(0.0, args.interval - (time.monotonic() - started - elapsed)))
    finally:
        for child in (agent, sim):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in (agent, sim):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    steady = [r for r in rows if r["elapsed_s"] >= args.warmup] or rows
    summary = {
        "clusters": args.clusters,
        "profile": args.profile,
        "minutes": args.minutes,
        "seconds_until_all_active": all_active_at,
        "samples": len(rows),
        "csv": str(Path(args.out).resolve()),
    }
    for who in ("sim", "agent"):
        values = [r[f"{who}_rss_mib"] for r in steady]
        if len(values) >= 2:
            hours = max((steady[-1]["elapsed_s"] - steady[0]["elapsed_s"]) / 3600, 1e-9)
            summary[who] = {
                "rss_first_mib": values[0],
                "rss_last_mib": values[-1],
                "rss_min_mib": min(values),
                "rss_max_mib": max(values),
                "growth_mib_per_hour": round((values[-1] - values[0]) / hours, 2),
                "cpu_ms_per_cluster_minute": round(
                    (steady[-1][f"{who}_cpu_s"] - steady[0][f"{who}_cpu_s"])
                    * 1000
                    / max(args.clusters, 1)
                    / max(hours * 60, 1e-9),
                    3,
                ),
            }
    if rows:
        summary["last"] = rows[-1]
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main()
