"""Each churn and fault action against the Rancher stand-in, checked in the stand-in's view.

The real agent and the stand-in (with its traffic driver: health check `/readyz` and steve `/ping`
every 0.3 s instead of 15 s) in one process on loopback. leave: the cluster is gone from Rancher and
comes back under its name with a new id. drop: unavailable, then active again. unhealthy: the
driver's `/readyz` fails, unavailable, then active. slow: the stand-in's requests through the tunnel
take the added latency, and only for the window. pods: a watch opened from the stand-in's side sees
ADDED then DELETED.
"""

from __future__ import annotations

import functools
import time

import pytest
import pytest_twisted
from prometheus_client.exposition import generate_latest
from twisted.internet import defer

from scaleagent.admin import metrics_registry
from scaleagent.agent import AgentService
from scaleagent.churn import CHURN_LABEL, ChurnCollector, ChurnError, churn_of
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig
from scaleagent.redact import Secret
from scaleagent.sim import store as st
from scaleagent.sim.service import start_ranchersim
from scaleagent.sim.tunnel import main_key, steve_key
from scaleagent.sim.tunnelhttp import ClusterHTTP, Watch
from tests.support import until as support_until

COUNT = 3


#: the shared bounded poll (tests/support.py), with this file's patience
until = functools.partial(support_until, seconds=30.0, step=0.05)


@pytest.fixture
def sim(reactor):
    started = pytest_twisted.blockon(
        defer.ensureDeferred(
            start_ranchersim(
                reactor, profile="idle", summary_interval=0, driver_options={"start_jitter": 0.1}
            )
        )
    )
    started.driver.profile = started.driver.profile.with_options(health_interval=0.3, ping_interval=0.3)
    yield started
    pytest_twisted.blockon(defer.ensureDeferred(started.stop()))


@pytest.fixture
def agent(reactor, sim, tmp_path):
    config = AgentConfig(
        rancher=RancherConfig(url=sim.url, token=Secret(sim.api_token), ca_checksum=sim.ca_checksum),
        clusters=ClustersConfig(count=COUNT, name_prefix="ch-", ramp_per_second=200.0,
                                reconnect_per_second=200.0),
        state=StateConfig(dir=tmp_path / "state"),
    )
    service = AgentService(config, reactor, raise_limit=False, poll_interval=0.3, progress_interval=0.5)
    service.startService()
    pytest_twisted.blockon(defer.ensureDeferred(until(reactor, all_active(sim), what="all active")))
    yield service
    pytest_twisted.blockon(defer.ensureDeferred(service.stopService()))


def all_active(sim, n: int = COUNT):
    def check():
        clusters = sim.store.clusters()
        return len(clusters) == n and all(c.state == st.ACTIVE for c in clusters)

    return check


def state_log(sim, name: str) -> list[str]:
    """Every state the stand-in gives the named cluster from now on (one entry per change)."""
    seen: list[str] = []

    def listen(event, cluster):
        if cluster.name == name and (not seen or seen[-1] != f"{event}:{cluster.state}"):
            seen.append(f"{event}:{cluster.state}")

    sim.store.add_listener(listen)
    return seen


def metric(agent, action: str) -> float:
    registry, _ = metrics_registry(agent)
    registry.register(ChurnCollector(agent))
    text = generate_latest(registry).decode()
    line = f'scaleagent_churn_actions_total{{action="{action}"}} '
    return float(next(x for x in text.splitlines() if x.startswith(line))[len(line) :])


@pytest_twisted.ensureDeferred
async def test_leave_deletes_in_rancher_and_reimports_under_the_same_name(reactor, sim, agent):
    engine = churn_of(agent, reactor)
    name = "ch-00001"
    old = sim.store.find_cluster(name)
    others = {c.name: c.id for c in sim.store.clusters() if c.name != name}
    result = await engine.request("leave", {"clusters": [name], "rejoin_after": 1.0})
    assert result == {"action": "leave", "clusters": [name]}
    # Gone from Rancher: the stand-in no longer lists it, its tunnels are closed.
    assert sim.store.find_cluster(name) is None
    assert old.removed
    assert engine.fault_counts()["away"] == 1
    server = sim.tunnels.server
    keys = (main_key(old.id), steve_key(old.id))
    await until(reactor, lambda: not any(server.protocols(k) for k in keys), what="its tunnels closed")
    await until(reactor, lambda: sim.store.find_cluster(name) is not None, what="re-imported")
    await until(reactor, all_active(sim), what="active again")
    back = sim.store.find_cluster(name)
    assert back.id != old.id and back.driver == "imported"
    assert back.params.token == old.params.token and back.params.ca_cert == old.params.ca_cert
    assert {c.name: c.id for c in sim.store.clusters() if c.name != name} == others  # nobody else touched
    assert engine.actions["leave"] == 1 and engine.actions["rejoin"] == 1
    assert metric(agent, "leave") == 1.0 and metric(agent, "rejoin") == 1.0
    assert engine.fault_counts()["away"] == 0


@pytest_twisted.ensureDeferred
async def test_drop_makes_the_cluster_unavailable_then_active_again(reactor, sim, agent):
    engine = churn_of(agent, reactor)
    name = "ch-00002"
    states = state_log(sim, name)
    reconnects = agent.reconnects
    result = await engine.request("drop", {"clusters": [name]})
    assert result == {"action": "drop", "clusters": [name]}
    await until(reactor, lambda: f"{st.STATE}:{st.UNAVAILABLE}" in states, what="unavailable")
    await until(reactor, lambda: states[-1] == f"{st.STATE}:{st.ACTIVE}", what="active again")
    await until(reactor, all_active(sim))
    assert agent.reconnects >= reconnects + 2  # both tunnels came back by the reconnect policy
    cluster = sim.store.find_cluster(name)
    assert cluster.params_changes == 0  # same identity on reconnect
    assert metric(agent, "drop") == 1.0


@pytest_twisted.ensureDeferred
async def test_fraction_drop_hits_that_share_of_connected_clusters(reactor, sim, agent):
    engine = churn_of(agent, reactor)
    result = await engine.request("drop", {"fraction": 0.67, "tunnels": "steve"})
    assert len(result["clusters"]) == 2
    await until(reactor, all_active(sim), what="active again")
    with pytest.raises(ChurnError, match="expected main or steve"):
        await engine.request("drop", {"count": 1, "tunnels": "both-ish"})


@pytest_twisted.ensureDeferred
async def test_unhealthy_readyz_makes_rancher_mark_it_unavailable_for_a_while(reactor, sim, agent):
    engine = churn_of(agent, reactor)
    name = "ch-00000"
    states = state_log(sim, name)
    result = await engine.request("unhealthy", {"clusters": [name], "seconds": 3.0})
    assert result["clusters"] == [name]
    assert engine.fault_counts()["unhealthy"] == 1
    await until(reactor, lambda: f"{st.STATE}:{st.UNAVAILABLE}" in states, what="unavailable")
    cluster = sim.store.find_cluster(name)
    assert cluster.connected(st.MAIN) and cluster.connected(st.STEVE)  # tunnels stayed up
    assert [c.state for c in sim.store.clusters() if c.name != name] == [st.ACTIVE, st.ACTIVE]
    await until(reactor, lambda: states[-1] == f"{st.STATE}:{st.ACTIVE}", what="active again")
    assert engine.fault_counts()["unhealthy"] == 0
    assert metric(agent, "unhealthy") == 1.0


async def timed_get(reactor, sim, cluster, path: str = "/version") -> tuple[int, float]:
    params = cluster.params
    http = ClusterHTTP(sim.driver.http, cluster.id, cluster.name, params.address, params.token,
                       params.ca_cert)
    try:
        await http.request("warm-up", "GET", "/livez", accept=b"*/*")  # TLS handshake out of the timing
        started = time.monotonic()
        answer = await http.request("timed", "GET", path)
        return answer.status, time.monotonic() - started
    finally:
        await http.close()


@pytest_twisted.ensureDeferred
async def test_slow_adds_latency_seen_through_the_tunnel_only_during_the_window(reactor, sim, agent):
    engine = churn_of(agent, reactor)
    slow, fast = sim.store.find_cluster("ch-00001"), sim.store.find_cluster("ch-00002")
    # A generous latency, so a loaded machine's own delays cannot be mistaken for it (or hide it).
    result = await engine.request("slow", {"clusters": ["ch-00001"], "seconds": 10.0, "latency": 3.0})
    assert result["clusters"] == ["ch-00001"]
    status, took = await timed_get(reactor, sim, slow)
    assert status == 200 and took >= 3.0
    status, took_fast = await timed_get(reactor, sim, fast)
    assert status == 200 and took_fast < 3.0
    assert engine.fault_counts()["slow"] == 1
    await until(reactor, lambda: engine.fault_counts()["slow"] == 0, seconds=30, what="window over")
    status, took = await timed_get(reactor, sim, slow)
    assert status == 200 and took < 3.0
    assert metric(agent, "slow") == 1.0


@pytest_twisted.ensureDeferred
async def test_pod_churn_reaches_a_watch_opened_by_the_stand_in(reactor, sim, agent):
    engine = churn_of(agent, reactor)
    cluster = sim.store.find_cluster("ch-00002")
    params = cluster.params
    http = ClusterHTTP(sim.driver.http, cluster.id, cluster.name, params.address, params.token,
                       params.ca_cert)
    events: list[tuple[str, str]] = []
    path = f"/api/v1/namespaces/default/pods?watch=true&labelSelector={CHURN_LABEL}%3Dtrue"
    watch = await http.watch("churn watch", path, lambda e: events.append(
        (e["type"], e["object"]["metadata"]["name"])), timeout=60.0)
    assert isinstance(watch, Watch)
    try:
        result = await engine.request("pods", {"clusters": ["ch-00002"], "per_cluster": 2, "lifetime": 0.5})
        created = [p.split("/", 1)[1] for p in result["pods"]]
        assert len(created) == 2 and all(p.startswith("churn-") for p in created)
        await until(reactor, lambda: len(events) == 4, what="2 ADDED + 2 DELETED")
        assert sorted(events) == sorted([("ADDED", p) for p in created] + [("DELETED", p) for p in created])
        assert engine.actions["pods"] == 2 and engine.actions["pod-delete"] == 2
        assert metric(agent, "pods") == 2.0
    finally:
        watch.cancel()
        await http.close()


@pytest_twisted.ensureDeferred
async def test_configured_rates_run_by_themselves(reactor, sim, agent):
    engine = churn_of(agent, reactor)
    engine.set_rates(pods_per_minute=240.0, pod_lifetime=0.5, unhealthy_per_minute=60.0, unhealthy_for=0.5)
    await until(reactor, lambda: engine.actions["pods"] >= 3 and engine.actions["unhealthy"] >= 1,
                what="scheduled actions", seconds=10.0)
    engine.set_rates(pods_per_minute=0.0, unhealthy_per_minute=0.0)
    await until(reactor, lambda: engine.fault_counts()["churn_pods"] == 0, what="pods expired")
    await until(reactor, all_active(sim), what="all active after the faults")
    with pytest.raises(ChurnError, match="unknown churn setting"):
        engine.set_rates(leave_per_hour=1)
    with pytest.raises(ChurnError, match="fraction between 0 and 1"):
        engine.set_rates(drop_fraction=2)
