"""The stand-in's Rancher traffic against the real agent, both ends in one process on loopback.

Real TLS (the agent verifies the stand-in; the driver verifies each cluster's apiserver against the CA
and the address host from the tunnel params), real tunnels, the real ClusterSet answering. Every test
also checks that the driver recorded no answer Rancher would not have accepted.
"""

from __future__ import annotations

import functools

import pytest
import pytest_twisted
from twisted.internet import defer

from scaleagent.agent import AgentService
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig
from scaleagent.redact import Secret
from scaleagent.sim import cleanup
from scaleagent.sim import store as st
from scaleagent.sim.service import start_ranchersim
from scaleagent.sim.tunnel import main_key, steve_key
from tests.support import until as support_until

#: the shared bounded poll (tests/support.py), with this file's patience
until = functools.partial(support_until, seconds=30.0, step=0.05)


async def start_sim(reactor, profile: str = "rancher-2.14", **kwargs):
    sim = await start_ranchersim(
        reactor, profile=profile, summary_interval=0, driver_options={"start_jitter": 0.2}, **kwargs
    )
    # Seconds instead of Rancher's 15 s, so health and ping come round within a test.
    sim.driver.profile = sim.driver.profile.with_options(health_interval=1.0, ping_interval=1.0)
    return sim


@pytest.fixture
def sim(reactor):
    started = pytest_twisted.blockon(defer.ensureDeferred(start_sim(reactor)))
    yield started
    pytest_twisted.blockon(defer.ensureDeferred(started.stop()))


def start_agent(reactor, sim, tmp_path, count: int, reconnect_per_second: float = 200.0) -> AgentService:
    config = AgentConfig(
        rancher=RancherConfig(url=sim.url, token=Secret(sim.api_token), ca_checksum=sim.ca_checksum),
        clusters=ClustersConfig(
            count=count, name_prefix="d-", ramp_per_second=200.0, reconnect_per_second=reconnect_per_second
        ),
        state=StateConfig(dir=tmp_path / "state"),
    )
    agent = AgentService(config, reactor, raise_limit=False, poll_interval=0.3, progress_interval=0.3)
    agent.startService()
    return agent


def all_active(sim, n: int):
    def check():
        clusters = sim.store.clusters()
        return len(clusters) == n and all(c.state == st.ACTIVE for c in clusters)

    return check


def stub(sim):
    from treq.testing import StubTreq

    return StubTreq(sim.site.resource)


def no_failures(sim) -> None:
    records = sim.driver.records
    assert records.failures == 0, [
        f"{f.kind} {f.method} {f.path} -> {f.status}: {f.detail}" for f in records.recent_failures
    ]


@pytest_twisted.ensureDeferred
async def test_twenty_clusters_turn_active_under_rancher_214(reactor, sim, tmp_path):
    agent = start_agent(reactor, sim, tmp_path, 20)
    try:
        await until(reactor, all_active(sim, 20), what="20 active clusters")
        for cluster in sim.store.clusters():
            conditions = {t: c.status for t, c in cluster.conditions.items()}
            for needed in (
                "Provisioned",
                "Connected",
                "Ready",
                "AgentDeployed",
                "Pending",
                "Updated",
                "Waiting",
            ):
                assert conditions.get(needed) == "True", (cluster.name, conditions)
            assert sim.driver.why_not_active(cluster.id) == []
        # What GET /v3/clusters/<id> reports (the agent's Rancher client reads it).
        one = sim.store.clusters()[0]
        info = await agent.rancher.get_cluster(one.id)
        assert info.state == "active"
        summary = sim.driver.summary()
        kinds = summary["kinds"]
        # Rancher's order of traffic happened for every cluster, informers in watch-list mode.
        for kind in (
            "kube-system",
            "discovery",
            "version",
            "nodes",
            "impersonation",
            "impersonation token",
            "agent check",
            "kubectl apply",
            "health readyz",
            "steve ping",
            "watch secrets",
        ):
            assert kinds[kind]["count"] >= 20, kind
        assert not any(k.startswith("list ") for k in kinds), "2.14 lists through watch-list, not LIST"
        await until(reactor, lambda: sim.driver.summary()["watches_open"] == 20 * 11, what="all watches open")
        assert summary["setups_done"] == 20
        # The agent's side kept what Rancher applied: the impersonation Secret got its token, the agent
        # Deployment carries kubectl's last-applied annotation.
        runner = agent.runners[0]
        store = runner.cluster.store
        rt = store.kinds.by_resource("apps", "v1", "deployments")
        deployment = store.get(rt, "cattle-system", "cattle-cluster-agent")
        assert "kubectl.kubernetes.io/last-applied-configuration" in deployment["metadata"]["annotations"]
        secrets = store.list(
            store.kinds.by_resource("", "v1", "secrets"), namespace="cattle-impersonation-system"
        )
        assert any((s.get("data") or {}).get("token") for s in secrets.objects())
        # Health keeps going every interval.
        before = sim.driver.records.statuses[("health readyz", 200)]
        await until(
            reactor,
            lambda: sim.driver.records.statuses[("health readyz", 200)] >= before + 20,
            what="another round of health checks",
        )
        no_failures(sim)
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_every_tunnel_dropped_at_once_recovers_without_a_burst(reactor, sim, tmp_path):
    n = 20
    agent = start_agent(reactor, sim, tmp_path, n, reconnect_per_second=20.0)
    try:
        await until(reactor, all_active(sim, n), what="all active")
        reopened: list[float] = []
        states: list[str] = []

        def listen(event, cluster):
            if event == st.TUNNEL_UP:
                reopened.append(reactor.seconds())
            elif event == st.STATE:
                states.append(cluster.state)

        sim.store.add_listener(listen)
        cut_at = reactor.seconds()
        answer = await stub(sim).post(
            "https://rancher/sim/tunnels/cut", headers={"Authorization": f"Bearer {sim.api_token}"}
        )
        assert answer.code == 200 and (await answer.json()) == {"cut": 2 * n}
        await until(reactor, lambda: sim.store.counts()[st.UNAVAILABLE] == n, seconds=10, what="unavailable")
        await until(reactor, all_active(sim, n), seconds=60, what="all active again")
        sim.store.remove_listener(listen)
        assert states.count(st.UNAVAILABLE) >= n
        # 2n tunnels came back spread out: the reconnect limiter (20/s) and jittered backoff, no burst.
        assert len(reopened) >= 2 * n
        spread = max(reopened) - min(reopened)
        assert spread >= 1.0, spread
        # Not one synchronized burst. The exact rate guarantee (never above reconnect_per_second) is
        # tested on a Clock in test_retry.py; here, on a loaded machine, completions bunch up when the
        # reactor lags, so the bound is deliberately loose: no 0.1 s window holds half the tunnels.
        busiest = max(sum(1 for t in reopened if s <= t < s + 0.1) for s in reopened)
        assert busiest < n, (busiest, sorted(round(t - cut_at, 2) for t in reopened))
        no_failures(sim)
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_wrong_registration_token_is_one_clear_log_line_and_others_stay_active(
    reactor, sim, tmp_path, logs
):
    n = 5
    agent = start_agent(reactor, sim, tmp_path, n)
    try:
        await until(reactor, all_active(sim, n), what="all active")
        victim = agent.runners[2]
        victim_id = victim.record.rancher_id
        left_active: list[str] = []

        def listen(event, cluster):
            if event == st.STATE and cluster.id != victim_id and cluster.state != st.ACTIVE:
                left_active.append(cluster.name)

        sim.store.add_listener(listen)
        victim.token = Secret("x" * 54)  # a registration token the stand-in never issued
        for key in (main_key(victim_id), steve_key(victim_id)):
            for protocol in sim.tunnels.server.protocols(key):
                protocol.cut()
        await until(
            reactor,
            lambda: any(victim.name in line and "refused with HTTP 40" in line for line in logs),
            what="the agent's log line about the refused tunnel",
        )
        # The agent re-reads the token from Rancher and comes back.
        await until(reactor, all_active(sim, n), what="the victim active again")
        sim.store.remove_listener(listen)
        assert left_active == []
        line = next(line for line in logs if victim.name in line and "refused with HTTP 40" in line)
        assert "x" * 20 not in line
        no_failures(sim)
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_deleted_cluster_receives_cleanup_objects_then_disconnects(reactor, sim, tmp_path):
    agent = start_agent(reactor, sim, tmp_path, 3)
    try:
        await until(reactor, all_active(sim, 3), what="all active")
        runner = agent.runners[1]
        cluster_id = runner.record.rancher_id
        simulated = runner.cluster
        closed: list[str] = []
        server = sim.tunnels.server
        original = server.on_session_removed

        def removed(key, session):
            if key in (main_key(cluster_id), steve_key(cluster_id)):
                # The cleanup objects were in the cluster before its session closed.
                closed.append(key if objects_present() else "closed-before-cleanup")
            original(key, session)

        def objects_present() -> bool:
            store = simulated.store
            job = store.lookup(store.kinds.by_resource("batch", "v1", "jobs"), "default", cleanup.JOB)
            return job is not None

        server.on_session_removed = removed
        try:
            gone_cluster = sim.delete_cluster(cluster_id)
            await until(reactor, lambda: len(closed) == 2, what="both sessions closed")
        finally:
            server.on_session_removed = original
        assert sorted(closed) == sorted([main_key(cluster_id), steve_key(cluster_id)])
        store = simulated.store
        job = store.get(store.kinds.by_resource("batch", "v1", "jobs"), "default", cleanup.JOB)
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "CLUSTER_CLEANUP", "value": "true"} in env
        for group, plural, namespace, name in (
            ("rbac.authorization.k8s.io", "clusterroles", None, cleanup.ROLE),
            ("", "serviceaccounts", "default", cleanup.ACCOUNT),
            ("rbac.authorization.k8s.io", "clusterrolebindings", None, cleanup.BINDING),
        ):
            obj = store.get(store.kinds.preferred(group, plural), namespace, name)
            assert obj["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
        assert sim.driver.cleanups == {"sent": 1, "failed": 0}
        # Sessions that ended after the deletion are counted down on the removed cluster too.
        assert gone_cluster.removed and gone_cluster.sessions == {"main": 0, "steve": 0}
        assert cluster_id not in sim.driver.clusters
        no_failures(sim)
    finally:
        await agent.stopService()


@pytest.mark.parametrize("profile", ["rancher-2.13", "idle"])
@pytest_twisted.ensureDeferred
async def test_other_profiles_also_turn_active(reactor, tmp_path, profile):
    sim = await start_sim(reactor, profile)
    agent = start_agent(reactor, sim, tmp_path, 3)
    try:
        await until(reactor, all_active(sim, 3), what="3 active clusters")
        kinds = sim.driver.summary()["kinds"]
        if profile == "idle":
            assert not any(k.startswith(("list ", "watch ")) for k in kinds)
            assert sim.driver.summary()["informers"] == 0
        else:
            assert kinds["list namespaces"]["count"] >= 3 and kinds["health kube-system"]["count"] >= 3
            await until(reactor, lambda: sim.driver.summary()["watches_open"] == 33, what="watches open")
        no_failures(sim)
    finally:
        await agent.stopService()
        await sim.stop()


@pytest_twisted.ensureDeferred
async def test_ui_browsing_lists_pods_and_events_impersonated(reactor, tmp_path):
    sim = await start_sim(reactor, "idle", ui_browsing=True)
    sim.driver.profile = sim.driver.profile.with_options(ui_interval=0.5)
    agent = start_agent(reactor, sim, tmp_path, 2)
    try:
        await until(reactor, all_active(sim, 2), what="2 active")
        await until(reactor, lambda: sim.driver.records.statuses[("ui pods", 200)] >= 4, what="UI lists")
        assert sim.driver.records.statuses[("ui events", 200)] >= 2
        no_failures(sim)
    finally:
        await agent.stopService()
        await sim.stop()


@pytest_twisted.ensureDeferred
async def test_failing_health_makes_one_cluster_unavailable_until_it_recovers(reactor, sim, tmp_path):
    from scaleagent.apiserver.faults import faults_of

    agent = start_agent(reactor, sim, tmp_path, 3)
    try:
        await until(reactor, all_active(sim, 3), what="all active")
        runner = agent.runners[0]
        sick = sim.store.get_cluster(runner.record.rancher_id)
        others_left: list[str] = []

        def listen(event, cluster):
            if event == st.STATE and cluster is not sick and cluster.state != st.ACTIVE:
                others_left.append(cluster.name)

        sim.store.add_listener(listen)
        faults_of(runner.cluster.api, create=True).make_unready(2.5)  # /readyz answers 500 for 2.5 s
        await until(reactor, lambda: sick.state == st.UNAVAILABLE, seconds=10, what="unavailable")
        assert "Ready is not True" in " ".join(sim.driver.why_not_active(sick.id))
        assert sick.connected(st.MAIN) and sick.connected(st.STEVE)  # tunnels fine: health alone
        await until(reactor, lambda: sick.state == st.ACTIVE, seconds=15, what="active again")
        sim.store.remove_listener(listen)
        assert others_left == []
        assert sim.driver.health_failures >= 1
        no_failures(sim)  # a failing health check is Rancher-visible, not a simulator failure
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_deletion_without_the_cleanup_hook_stops_that_cluster_s_traffic(reactor, sim, tmp_path):
    agent = start_agent(reactor, sim, tmp_path, 2)
    try:
        await until(reactor, all_active(sim, 2), what="all active")
        gone = sim.store.clusters()[0]
        sim.on_delete = None  # someone else owns deletion: the driver just stops
        tasks_before = len(sim.driver.scheduler)
        sim.store.delete_cluster(gone.id)
        assert gone.id not in sim.driver.clusters
        assert len(sim.driver.scheduler) < tasks_before  # its ping and health checks are gone
        assert sim.driver.readiness(gone) is False
        no_failures(sim)
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_sim_status_publishes_raw_histograms_per_kind(reactor, sim, tmp_path):
    from scaleagent.sim.records import Histogram

    agent = start_agent(reactor, sim, tmp_path, 2)
    try:
        await until(reactor, all_active(sim, 2), what="all active")
        answer = await stub(sim).get(
            "https://rancher/sim/status", headers={"Authorization": f"Bearer {sim.api_token}"}
        )
        assert answer.code == 200
        status = await answer.json()
        assert status["sim"]["active"] == 2 and status["driver"]["failures"] == 0
        assert status["histogram"] == {"base": 1e-05, "ratio": 1.03}
        readyz = status["latency"]["health readyz"]
        assert readyz["count"] == sum(readyz["buckets"].values()) >= 2
        # The buckets are the driver's own: same count and same quantile when rebuilt.
        own = sim.driver.records.latency["health readyz"]
        rebuilt = Histogram()
        for bucket, n in readyz["buckets"].items():
            rebuilt._buckets[int(bucket)] += n
        rebuilt.count, rebuilt.maximum = readyz["count"], own.maximum
        if own.count == readyz["count"]:  # no health check landed in between
            assert rebuilt.quantile(0.5) == own.quantile(0.5)
        assert status["statuses_by_kind"]["kube-system"] == {"200": 2}  # the seed has kube-system
        unauthenticated = await stub(sim).get("https://rancher/sim/status")
        assert unauthenticated.code == 401
    finally:
        await agent.stopService()
