"""`twistd scaleagent`: command-line options and the service tree they build."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.python import usage

from scaleagent.config import AgentConfig, ConfigError, load_config, parse_shard
from scaleagent.redact import logger

log = logger()


class Options(usage.Options):
    """Options of `twistd scaleagent`; the API token is deliberately not one of them."""

    optParameters = [
        ["config", "c", "etc/agent.ini", "Path to the agent's INI configuration."],
        ["shard", None, None, "This process's shard i/n; overrides [clusters] shard."],
        ["duration", None, None, "Stop by itself after this many seconds."],
    ]

    def postOptions(self) -> None:
        if self["shard"] is not None:
            try:
                parse_shard(self["shard"])
            except ValueError as error:
                raise usage.UsageError(f"--shard {self['shard']!r}: expected {error}") from None
        if self["duration"] is not None:
            try:
                self["duration"] = float(self["duration"])
            except ValueError:
                raise usage.UsageError(f"--duration {self['duration']!r}: expected seconds") from None
            if not self["duration"] > 0:
                raise usage.UsageError(f"--duration {self['duration']!r}: expected seconds > 0")


class StopAfter(Service):
    """Stop the reactor `seconds` after start: bounded runs for demos and benchmarks."""

    def __init__(self, reactor: Any, seconds: float) -> None:
        self._reactor = reactor
        self._seconds = seconds
        self._call = None

    def startService(self) -> None:
        super().startService()
        self._call = self._reactor.callLater(self._seconds, self._stop)

    def _stop(self) -> None:
        self._call = None
        log.info("--duration {seconds}s reached, stopping", seconds=self._seconds)
        self._reactor.stop()

    def stopService(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return super().stopService()


def load_or_exit(options: Options) -> AgentConfig:
    """Load the config, or end the process with one line: no traceback, no usage text."""
    try:
        return load_config(options["config"], shard_override=options["shard"])
    except ConfigError as error:
        raise SystemExit(f"scaleagent: {error}") from None


def makeService(options: Options) -> IService:
    from twisted.internet import reactor  # noqa: TID251 -- twistd has installed it by now

    config = load_or_exit(options)
    return build_service(config, reactor, options["duration"])


class AgentRoot(MultiService):
    """The top of one agent process's service tree; says when it is up, once signals are handled."""

    def __init__(self, config: AgentConfig, reactor: Any) -> None:
        super().__init__()
        self.setName("scaleagent")
        self.config = config
        self._reactor = reactor

    def startService(self) -> None:
        super().startService()
        # twistd starts services before the reactor runs; say "started" once signals are handled.
        self._reactor.callWhenRunning(self._announce)

    def _announce(self) -> None:
        log.info(
            "scaleagent started: {count} clusters in all, shard {shard}, Rancher {url}, config {source}",
            count=self.config.clusters.count,
            shard=str(self.config.clusters.shard),
            url=self.config.rancher.url,
            source=str(self.config.source),
        )


def add_agent(top: MultiService, config: AgentConfig, reactor: Any) -> Any:
    """The agent (clusters + tunnels) and its admin API, as children of `top`."""
    from scaleagent.admin import AdminService
    from scaleagent.agent import AgentService
    from scaleagent.gcpacing import GcPacer

    agent = AgentService(config, reactor)
    agent.setServiceParent(top)
    GcPacer(reactor, churn=lambda: agent.reconnects).setServiceParent(top)
    admin = AdminService(reactor, agent, config.admin.listen, config.admin.token)
    agent.api_observer = admin.apiserver_metrics.observe
    admin.setServiceParent(top)
    return agent


def build_service(config: AgentConfig, reactor: Any, duration: float | None = None) -> MultiService:
    """The service tree of one agent process."""
    top = AgentRoot(config, reactor)
    if config.rancher.embedded:
        # The stand-in (with the [rancher] embedded_profile traffic) on loopback; the agent and its
        # admin API are added once it listens, wired to its URL, API token and CA.
        from scaleagent.embedded import EmbeddedRancher

        EmbeddedRancher(config, reactor, attach=add_agent).setServiceParent(top)
    else:
        add_agent(top, config, reactor)
    if duration is not None:
        StopAfter(reactor, duration).setServiceParent(top)
    return top
