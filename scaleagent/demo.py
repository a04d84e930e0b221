"""`python -m scaleagent.demo`: the agent with the embedded Rancher stand-in, progress, then a summary.

    python -m scaleagent.demo --config etc/agent.ini --duration 90

Runs the configuration's clusters against the in-process stand-in (whatever `[rancher] url` says,
the demo always uses the embedded one), prints a progress line every few seconds while clusters
register, connect and turn Active, and a summary at the end: time until all were Active, requests
Rancher's traffic sent and how many failed, latency p50/p99. Ends after `--duration` or on Ctrl-C.
The full log goes to `--log` (default: `demo.log` in the state directory), not to the terminal.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from scaleagent.config import EMBEDDED, PROFILES, ConfigError, load_config
from scaleagent.sim.records import Histogram

QUIET_PROGRESS = 15.0  # seconds between progress lines while nothing changes


class Demo:
    """Watches the embedded stand-in and the agent; prints progress and the summary."""

    def __init__(self, service: Any, count: int, out: TextIO, clock: Any) -> None:
        self.service = service
        self.count = count
        self.out = out
        self.clock = clock
        self.started = clock.seconds()
        self.all_active_at: float | None = None
        self.all_connected_at: float | None = None
        self._last_key: tuple[int, ...] = ()
        self._last_print = 0.0
        self._active: set[str] = set()
        from scaleagent.sim.store import ACTIVE, STATE

        def on_state(event: str, cluster: Any) -> None:
            # Exact time of the moment the last cluster turned Active (not the next progress tick).
            if event != STATE:
                return
            if cluster.state == ACTIVE:
                self._active.add(cluster.id)
            else:
                self._active.discard(cluster.id)
            if self.all_active_at is None and self.count and len(self._active) >= self.count:
                self.all_active_at = self.clock.seconds() - self.started

        service.sim.store.add_listener(on_state)

    def counts(self) -> dict[str, Any]:
        sim = self.service.sim
        summary = sim.summary()
        driver = sim.driver_summary() or {}
        agent = self.service.agent
        registered = agent.counts()["registered"] if agent is not None else 0
        return {"registered": registered, **summary, "driver": driver}

    def tick(self) -> None:
        c = self.counts()
        now = self.clock.seconds() - self.started
        both = min(c["main_tunnels"], c["steve_tunnels"])
        if self.all_connected_at is None and self.count and both >= self.count:
            self.all_connected_at = now
        if self.all_active_at is None and self.count and c["active"] >= self.count:
            self.all_active_at = now
        d = c["driver"]
        key = (c["registered"], both, c["active"], d.get("failures", 0))
        if key == self._last_key and now - self._last_print < QUIET_PROGRESS:
            return
        self.out.write(
            f"[{now:6.1f}s] registered {c['registered']}/{self.count}, tunnels {both}/{self.count}, "
            f"active {c['active']}/{self.count}; Rancher's traffic: {d.get('requests', 0)} requests, "
            f"{d.get('failures', 0)} failures\n"
        )
        self.out.flush()
        self._last_key, self._last_print = key, now

    def periodic_latency(self) -> str:
        """p50/p99 of the steady checks alone (health, ping): the ramp's TLS handshakes excluded."""
        driver = self.service.sim.driver
        if driver is None:
            return "n/a"
        merged = Histogram()
        for kind, histogram in driver.records.latency.items():
            if kind.startswith(("health ", "steve ping")):
                merged.merge(histogram)
        if not merged.count:
            return "none yet"
        return f"p50 {merged.quantile(0.5) * 1000:.2f} ms, p99 {merged.quantile(0.99) * 1000:.2f} ms"

    def summary(self) -> str:
        c = self.counts()
        d = c["driver"]
        active = (
            f"{self.all_active_at:.1f} s"
            if self.all_active_at is not None
            else f"not reached ({c['active']} active)"
        )
        connected = f"{self.all_connected_at:.1f} s" if self.all_connected_at is not None else "not reached"
        lines = [
            "",
            "scaleagent demo summary",
            f"  clusters:                 {self.count} ({d.get('profile', '?')} traffic profile)",
            f"  all tunnels connected in: {connected}",
            f"  all clusters Active in:   {active}",
            f"  active now:               {c['active']} "
            f"(pending {c['pending']}, unavailable {c['unavailable']})",
            f"  requests served:          {d.get('requests', 0)} through the tunnels "
            f"({d.get('watch_events', 0)} watch events), statuses {d.get('statuses', {})}",
            f"  latency, all requests:    p50 {d.get('p50_ms', 0)} ms, p99 {d.get('p99_ms', 0)} ms "
            "(includes the ramp's TLS handshakes)",
            f"  latency, health and ping: {self.periodic_latency()}",
            f"  failures:                 {d.get('failures', 0)} unexpected answers, "
            f"{d.get('transport_errors', 0)} transport errors (0 expected)",
            f"  stand-in API requests:    {c['api_requests']}; params changes {c['params_changes']}",
            f"  ran for:                  {self.clock.seconds() - self.started:.1f} s",
        ]
        return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scaleagent.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="etc/agent.ini", help="agent INI (default etc/agent.ini)")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds to run (default 90)")
    parser.add_argument("--count", type=int, default=None, help="clusters (default: the config's count)")
    parser.add_argument("--profile", choices=PROFILES, default=None, help="traffic profile (default: config)")
    parser.add_argument("--state-dir", default=None, help="state directory (default: the config's)")
    parser.add_argument("--log", default=None, help="log file (default: demo.log in the state directory)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between progress lines")
    args = parser.parse_args(argv)
    if not args.duration > 0:
        parser.error("--duration: expected seconds > 0")
    if args.count is not None and not 0 < args.count <= 100000:
        parser.error("--count: expected 1..100000")
    return args


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"scaleagent demo: {error}", file=sys.stderr)
        return 2
    clusters = config.clusters
    if args.count is not None:
        clusters = replace(clusters, count=args.count)
    rancher = replace(config.rancher, url=EMBEDDED, cleanup_on_stop=False)
    if args.profile:
        rancher = replace(rancher, embedded_profile=args.profile)
    state = replace(config.state, dir=Path(args.state_dir)) if args.state_dir else config.state
    config = replace(config, rancher=rancher, clusters=clusters, state=state)

    from twisted.internet import reactor, task  # noqa: TID251 -- the demo's own process
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from scaleagent.embedded import EmbeddedRancher
    from scaleagent.redact import RedactingObserver

    state.dir.mkdir(parents=True, exist_ok=True)
    log_path = (Path(args.log) if args.log else state.dir / "demo.log").resolve()
    log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 -- open for the whole run
    globalLogBeginner.beginLoggingTo(
        [RedactingObserver(textFileLogObserver(log_file))], redirectStandardIO=False
    )

    count = len(range(clusters.shard.index, clusters.count, clusters.shard.count))
    out.write(
        f"scaleagent demo: {count} simulated clusters, embedded Rancher stand-in ({rancher.embedded_profile} "
        f"traffic), {args.duration:.0f} s; log in {log_path}\n"
    )
    out.flush()
    service = EmbeddedRancher(config, reactor)
    demo = Demo(service, count, out, reactor)
    progress = task.LoopingCall(demo.tick)
    figures: dict[str, str] = {}

    def start() -> None:
        service.startService()
        progress.start(args.interval, now=False)

    def before_stop() -> Any:
        if progress.running:
            progress.stop()
        figures["summary"] = demo.summary()
        return service.stopService()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", before_stop)
    reactor.callLater(args.duration, reactor.stop)
    reactor.run()
    out.write(figures.get("summary", "scaleagent demo: stopped before it started\n"))
    out.flush()
    log_file.close()
    failures = (service.sim.driver_summary() or {}).get("failures", 0)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
