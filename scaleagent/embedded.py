"""`[rancher] url = embedded`: the Rancher stand-in in this process, on loopback, wired to the agent.

The stand-in (with its traffic driver, profile `[rancher] embedded_profile`) starts first on a free
loopback port; once it listens, the agent is built with the stand-in's URL, API token and CA checksum,
so `token_file` and `ca_checksum` are not needed. Stopping stops the agent first (its tunnels close
cleanly), then the stand-in.

    service = agent_service(config, reactor)   # EmbeddedRancher for url = embedded, else AgentService
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet import defer
from twisted.python.failure import Failure

from scaleagent.config import AgentConfig
from scaleagent.redact import Secret, logger

log = logger()

LISTEN = "tcp:0:interface=127.0.0.1"


def embedded_config(config: AgentConfig, sim: Any) -> AgentConfig:
    """The agent's configuration pointed at a listening stand-in: its URL, API token and CA."""
    rancher = replace(
        config.rancher,
        url=sim.url,
        token=Secret(sim.api_token),
        ca_checksum=sim.ca_checksum,
        insecure=False,
    )
    return replace(config, rancher=rancher)


class EmbeddedRancher(MultiService):
    """The stand-in and the agent in one service: the agent starts once the stand-in listens."""

    def __init__(
        self,
        config: AgentConfig,
        reactor: Any,
        *,
        listen: str = LISTEN,
        sim_options: dict[str, Any] | None = None,
        agent_options: dict[str, Any] | None = None,
        agent_factory: Callable[..., Any] | None = None,
        attach: Callable[[MultiService, AgentConfig, Any], Any] | None = None,
    ) -> None:
        """`attach(self, wired_config, reactor)`, when given, adds the agent (and e.g. its admin API)
        as children of this service and returns the agent; by default the agent alone is added."""
        super().__init__()
        from scaleagent.sim.service import RancherSim

        self.setName("embedded")
        self.config = config
        self.reactor = reactor
        self.sim = RancherSim(
            reactor, listen=listen, profile=config.rancher.embedded_profile, **(sim_options or {})
        )
        self.agent: Any = None
        self._agent_options = agent_options or {}
        self._agent_factory = agent_factory
        self._attach = attach
        self._agent_ready: list[defer.Deferred[Any]] = []
        self._starting: defer.Deferred[Any] | None = None

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        super().startService()
        self.sim.startService()
        self._starting = self.sim.when_listening()
        self._starting.addCallback(self._start_agent)
        self._starting.addErrback(self._failed)

    def _start_agent(self, url: str) -> None:
        if not self.running:
            return
        log.info(
            "embedded Rancher stand-in on {url}, traffic profile {profile}",
            url=url,
            profile=self.config.rancher.embedded_profile,
        )
        wired = embedded_config(self.config, self.sim)
        if self._attach is not None:
            self.agent = self._attach(self, wired, self.reactor)  # children start: this one runs
        else:
            self.agent = self._default_agent(wired)
        waiters, self._agent_ready = self._agent_ready, []
        for waiter in waiters:
            waiter.callback(self.agent)

    def _default_agent(self, wired: AgentConfig) -> Any:
        factory = self._agent_factory
        if factory is None:
            from scaleagent.agent import AgentService

            factory = AgentService
        agent = factory(wired, self.reactor, **self._agent_options)
        agent.setServiceParent(self)  # starts it: this service is running
        return agent

    def _failed(self, failure: Failure) -> None:
        if failure.check(defer.CancelledError):
            return
        log.failure("embedded Rancher stand-in could not start", failure)
        if self.reactor.running:
            self.reactor.stop()

    def when_agent(self) -> defer.Deferred[Any]:
        """Fires with the AgentService once the stand-in listens and the agent is built."""
        if self.agent is not None:
            return defer.succeed(self.agent)
        waiter: defer.Deferred[Any] = defer.Deferred()
        self._agent_ready.append(waiter)
        return waiter

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        # Children (the agent) first: their tunnels close while the stand-in still answers.
        await defer.maybeDeferred(super().stopService)
        await self.sim.stopService()


def agent_service(config: AgentConfig, reactor: Any, **agent_options: Any) -> IService:
    """The agent for this configuration: with `url = embedded`, the stand-in in-process as well."""
    if config.rancher.embedded:
        return EmbeddedRancher(config, reactor, agent_options=agent_options)
    from scaleagent.agent import AgentService

    return AgentService(config, reactor, **agent_options)


__all__ = ["EmbeddedRancher", "agent_service", "embedded_config"]
