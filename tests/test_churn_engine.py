"""The churn engine's own logic, synchronously: rates turned into actions per tick, tunnel drops every
interval, pod lifetimes, leftovers of an earlier run swept, pending pods deleted on stop.

Fakes stand in for the agent and its runners; each cluster has a real apiserver `Store`.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from twisted.application.service import MultiService
from twisted.internet.task import Clock

from scaleagent.apiserver.request import ApiContext
from scaleagent.apiserver.store import Store
from scaleagent.churn import CHURN_LABEL, ChurnEngine, ChurnError, churn_pod
from scaleagent.config import ChurnConfig


class FakeProtocol:
    def __init__(self) -> None:
        self.dropped = 0

    def dropConnection(self, abort: bool = False) -> None:  # noqa: N802 (autobahn's name)
        assert abort
        self.dropped += 1


class FakeAgent(MultiService):
    def __init__(self, n: int, clock: Clock) -> None:
        super().__init__()
        self.stopping = False
        self.count = n
        self.runners = {}
        for i in range(n):
            store = Store()
            self.runners[i] = SimpleNamespace(
                index=i,
                name=f"e-{i:05d}",
                phase="connected",
                cluster=SimpleNamespace(store=store, api=ApiContext(store, clock), materialized=True),
                tunnels={"main": SimpleNamespace(protocol=FakeProtocol()),
                         "steve": SimpleNamespace(protocol=FakeProtocol())},
            )

    def runner_by_name(self, name):
        return next((r for r in self.runners.values() if r.name == name), None)


def pods_of(runner) -> list[str]:
    store = runner.cluster.store
    rt = store.kinds.by_resource("", "v1", "pods")
    return [o["metadata"]["name"] for o in store.list(rt, namespace="default").objects()]


def engine_for(n: int, **rates) -> tuple[ChurnEngine, FakeAgent, Clock]:
    clock = Clock()
    agent = FakeAgent(n, clock)
    engine = ChurnEngine(agent, clock, ChurnConfig(**rates), rng=random.Random(7))
    engine.setServiceParent(agent)
    agent.startService()
    return engine, agent, clock


def test_pod_rate_is_spread_over_ticks_and_pods_expire():
    engine, agent, clock = engine_for(4, pods_per_minute=30.0, pod_lifetime=5.0)
    for _ in range(10):
        clock.advance(1.0)
    assert engine.actions["pods"] == 5  # 30/min over 10 s
    clock.advance(5.0)  # every pod older than 5 s is gone again
    live = sum(len(pods_of(r)) for r in agent.runners.values())
    assert live == engine.fault_counts()["churn_pods"] <= 3
    assert engine.actions["pod-delete"] == engine.actions["pods"] - live


def test_drop_runs_every_interval_on_that_fraction():
    engine, agent, clock = engine_for(10, drop_fraction=0.3, drop_interval=10.0)
    clock.advance(9.0)
    assert engine.actions["drop"] == 0
    clock.advance(1.0)
    assert engine.actions["drop"] == 3
    dropped = [r for r in agent.runners.values() if r.tunnels["main"].protocol.dropped]
    assert len(dropped) == 3 and all(r.tunnels["steve"].protocol.dropped == 1 for r in dropped)
    clock.advance(10.0)
    assert engine.actions["drop"] == 6


def test_unhealthy_and_slow_rates_switch_faults_on_that_expire():
    engine, agent, clock = engine_for(3, unhealthy_per_minute=60.0, unhealthy_for=2.0)
    clock.advance(1.0)
    assert engine.actions["unhealthy"] == 1 and engine.fault_counts()["unhealthy"] == 1
    engine.set_rates(unhealthy_per_minute=0.0)
    clock.advance(2.0)
    assert engine.fault_counts()["unhealthy"] == 0
    engine.slow(list(agent.runners.values())[:2], seconds=3.0, latency=0.5)
    assert engine.fault_counts()["slow"] == 2
    clock.advance(3.0)
    assert engine.fault_counts()["slow"] == 0


def test_leftover_churn_pods_are_swept_and_stop_deletes_pending_ones():
    engine, agent, clock = engine_for(1)
    runner = agent.runners[0]
    store = runner.cluster.store
    rt = store.kinds.by_resource("", "v1", "pods")
    leftover = store.create(rt, churn_pod(runner.name), namespace="default")["metadata"]["name"]
    other = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    store.create(rt, other, namespace="default")
    (created,) = engine.pods([runner], per_cluster=1, lifetime=60.0)
    names = pods_of(runner)
    assert leftover not in names and "web" in names and created.split("/")[1] in names
    obj = store.get(rt, "default", created.split("/")[1])
    assert obj["metadata"]["labels"][CHURN_LABEL] == "true" and obj["status"]["phase"] == "Running"
    agent.stopService()
    assert pods_of(runner) == ["web"]  # the pending churn pod went with the engine
    assert clock.getDelayedCalls() == []


def test_bad_requests_are_clear_errors():
    engine, agent, clock = engine_for(2)
    with pytest.raises(ChurnError, match="no cluster 'nope'"):
        engine.targets(["nope"])
    with pytest.raises(ChurnError, match="count"):
        engine.targets(count=-1)
    with pytest.raises(ChurnError, match="fraction"):
        engine.targets(fraction=1.5)
    with pytest.raises(ChurnError, match="per_cluster"):
        engine.pods(list(agent.runners.values()), per_cluster=0)
    with pytest.raises(ChurnError, match="drop_interval: expected a number > 0"):
        engine.set_rates(drop_interval=0)
    with pytest.raises(ChurnError, match="expected a number >= 0"):
        engine.set_rates(pods_per_minute="many")
