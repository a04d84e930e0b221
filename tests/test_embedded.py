"""`[rancher] url = embedded`: the stand-in in-process on loopback, wired to the agent."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest_twisted

from scaleagent.agent import AgentService
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig, load_config
from scaleagent.embedded import EmbeddedRancher, agent_service, embedded_config
from scaleagent.redact import Secret
from scaleagent.sim import store as st
from tests.support import until as support_until

ROOT = Path(__file__).resolve().parent.parent


#: the shared bounded poll (tests/support.py), with this file's patience
until = functools.partial(support_until, seconds=30.0, step=0.05)


def config(tmp_path, count: int = 3, profile: str = "rancher-2.14") -> AgentConfig:
    return AgentConfig(
        rancher=RancherConfig(url="embedded", embedded_profile=profile),
        clusters=ClustersConfig(count=count, name_prefix="e-", ramp_per_second=100.0),
        state=StateConfig(dir=tmp_path / "state"),
    )


@pytest_twisted.ensureDeferred
async def test_embedded_stand_in_and_agent_reach_active_and_stop_cleanly(reactor, tmp_path):
    service = EmbeddedRancher(
        config(tmp_path), reactor, agent_options={"raise_limit": False, "poll_interval": 0.3}
    )
    service.startService()
    try:
        agent = await service.when_agent()
        sim = service.sim
        assert isinstance(agent, AgentService) and agent.parent is service
        # Wired: the stand-in's URL, API token and CA; no token file or checksum configured.
        assert agent.config.rancher.url == sim.url and sim.url.startswith("https://127.0.0.1:")
        assert agent.config.rancher.token == Secret(sim.api_token)
        assert agent.config.rancher.ca_checksum == sim.ca_checksum
        assert sim.driver is not None and sim.driver.profile.name == "rancher-2.14"

        def active() -> bool:
            clusters = sim.store.clusters()
            return len(clusters) == 3 and all(c.state == st.ACTIVE for c in clusters)

        await until(reactor, active, what="3 clusters active")
        await until(
            reactor, lambda: agent.counts()["rancher_state"].get("active") == 3, what="agent sees active"
        )
        assert sim.driver.records.failures == 0
    finally:
        await service.stopService()
    # The agent closed its tunnels before the stand-in stopped; the stand-in no longer listens.
    assert sim.port is None
    assert all(c.sessions == {"main": 0, "steve": 0} for c in sim.store.clusters())
    assert not agent.running


@pytest_twisted.ensureDeferred
async def test_embedded_profile_and_early_stop(reactor, tmp_path):
    service = EmbeddedRancher(
        config(tmp_path, count=0, profile="idle"), reactor, agent_options={"raise_limit": False}
    )
    assert service.sim.driver.profile.name == "idle"
    service.startService()
    await service.stopService()  # before the stand-in listened or the agent existed: no error
    assert service.agent is None or not service.agent.running


def test_agent_service_picks_embedded_or_direct(reactor, tmp_path):
    assert isinstance(agent_service(config(tmp_path), reactor), EmbeddedRancher)
    direct = AgentConfig(
        rancher=RancherConfig(url="https://rancher.example", token=Secret("token-abcde:" + "x" * 54)),
        state=StateConfig(dir=tmp_path / "state"),
    )
    assert isinstance(agent_service(direct, reactor, raise_limit=False), AgentService)


def test_embedded_config_replaces_only_rancher_access(tmp_path):
    class FakeSim:
        url = "https://127.0.0.1:4443"
        api_token = "token-abcde:" + "y" * 54
        ca_checksum = "a" * 64

    base = config(tmp_path)
    wired = embedded_config(base, FakeSim())
    assert wired.rancher.url == FakeSim.url and wired.rancher.token.reveal() == FakeSim.api_token
    assert wired.rancher.ca_checksum == FakeSim.ca_checksum and wired.clusters == base.clusters
    assert wired.rancher.embedded_profile == "rancher-2.14"


def test_shipped_config_is_embedded_with_50_clusters_and_needs_no_token():
    shipped = load_config(ROOT / "etc" / "agent.ini", environ={})
    assert shipped.rancher.embedded and shipped.rancher.token is None
    assert shipped.rancher.embedded_profile == "rancher-2.14" and shipped.clusters.count == 50


@pytest_twisted.ensureDeferred
async def test_attach_adds_the_agent_and_its_companions(reactor, tmp_path):
    from twisted.application.service import Service

    added = {}

    def attach(parent, wired, clock):
        agent = AgentService(wired, clock, raise_limit=False)
        agent.setServiceParent(parent)
        companion = Service()
        companion.setServiceParent(parent)
        added.update(agent=agent, companion=companion, wired=wired)
        return agent

    service = EmbeddedRancher(config(tmp_path, count=1), reactor, attach=attach)
    service.startService()
    try:
        agent = await service.when_agent()
        assert agent is added["agent"] and agent.running and added["companion"].running
        assert added["wired"].rancher.url == service.sim.url
    finally:
        await service.stopService()
    assert not agent.running and not added["companion"].running and service.sim.port is None


@pytest_twisted.ensureDeferred
async def test_twistd_scaleagent_embedded_turns_active_under_rancher_traffic(reactor, tmp_path):
    import os
    import signal

    from tests.test_plugin import proto_pid, spawn, with_timeout

    (tmp_path / "agent.ini").write_text(
        "[rancher]\nurl = embedded\nembedded_profile = rancher-2.14\n"
        "[clusters]\ncount = 3\nname_prefix = tw-\nramp_per_second = 50\n"
        "[state]\ndir = state\n[admin]\nlisten = tcp:0:interface=127.0.0.1\n"
    )
    proto = spawn(
        reactor, tmp_path, "-n", "--pidfile=", "scaleagent", "--config", "agent.ini", "--duration", "60"
    )
    await with_timeout(reactor, proto.seen(b"ranchersim: 3 clusters: 3 active"), 60)
    os.kill(proto_pid(proto), signal.SIGTERM)
    code = await with_timeout(reactor, proto.ended)
    output = proto.out.decode()
    assert (code, proto.signal) in ((0, None), (None, signal.SIGTERM)), output
    assert "embedded Rancher stand-in on https://127.0.0.1:" in output
    assert "traffic profile rancher-2.14" in output
    assert "Traceback" not in output and "token-" not in output
