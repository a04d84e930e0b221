"""AgentService against the Rancher stand-in on loopback: real TLS, real tunnels, real ClusterSet.

Import, adoption of a same-name cluster, token rotation on reconnect, restart without duplicates and
with identical params, grow and shrink, cleanup_on_stop, and the failures that must be one log line
and a retry (wrong API token, CA checksum mismatch).
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from scaleagent.admin import admin_site
from scaleagent.agent import MAIN, STEVE, AgentService
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig
from scaleagent.redact import Secret
from scaleagent.sim import store as st
from scaleagent.sim.service import start_ranchersim
from tests.support import until as support_until

#: the shared bounded poll (tests/support.py), with this file's patience
until = functools.partial(support_until, seconds=20.0, step=0.05)


async def settle(reactor, http: StubTreq, d: defer.Deferred):
    """The result of a StubTreq Deferred whose answer is written later: flush the in-memory pipe."""
    box: list = []
    d.addBoth(box.append)
    await until(reactor, lambda: (http.flush(), bool(box))[1], what="StubTreq answer")
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


@pytest.fixture
def sim(reactor):
    started = pytest_twisted.blockon(defer.ensureDeferred(start_ranchersim(reactor, grace_period=0.5)))
    yield started
    pytest_twisted.blockon(defer.ensureDeferred(started.stop()))


def make_config(sim, tmp_path, count: int = 3, **rancher) -> AgentConfig:
    rancher.setdefault("ca_checksum", sim.ca_checksum)
    return AgentConfig(
        rancher=RancherConfig(url=sim.url, token=Secret(rancher.pop("token", sim.api_token)), **rancher),
        clusters=ClustersConfig(
            count=count, name_prefix="t-", ramp_per_second=200.0, reconnect_per_second=200.0
        ),
        state=StateConfig(dir=tmp_path / "state"),
    )


def start_agent(reactor, config, **kwargs) -> AgentService:
    kwargs.setdefault("poll_interval", 0.3)
    kwargs.setdefault("progress_interval", 0.5)
    agent = AgentService(config, reactor, raise_limit=False, **kwargs)
    agent.startService()
    return agent


def all_active(sim, n: int):
    def check():
        clusters = sim.store.clusters()
        return len(clusters) == n and all(
            c.state == st.ACTIVE and c.connected(st.MAIN) and c.connected(st.STEVE) for c in clusters
        )

    return check


@pytest_twisted.ensureDeferred
async def test_import_adopt_and_both_tunnels_active(reactor, sim, tmp_path):
    clash = sim.store.create_cluster("t-00001")  # left over from an earlier run
    agent = start_agent(reactor, make_config(sim, tmp_path, count=3))
    try:
        await until(reactor, all_active(sim, 3), what="3 active clusters")
        assert sorted(c.name for c in sim.store.clusters()) == ["t-00000", "t-00001", "t-00002"]
        assert agent.runners[1].record.rancher_id == clash.id and agent.adopted == 1
        await until(reactor, lambda: agent.counts()["rancher_state"].get("active") == 3, what="polled state")
        counts = agent.counts()
        assert counts["connected_main"] == 3 and counts["connected_steve"] == 3
        assert counts["fully_connected"] == 3
        for runner in agent.runners.values():
            # Connected once: remembered in state, and the next main handshake goes to /v3/connect.
            saved = json.loads((tmp_path / "state" / "rancher" / f"{runner.name}.json").read_text())
            assert saved["connected_once"] is True and saved["rancher_id"] == runner.record.rancher_id
            assert runner.tunnels[MAIN].factory.url.endswith("/v3/connect")
            assert runner.tunnels[STEVE].factory.headers["Authorization"].startswith("Bearer stv-cluster-")
            cluster = sim.store.get_cluster(runner.record.rancher_id)
            assert cluster.params.address == "10.43.0.1:443" and cluster.driver == "imported"
    finally:
        await agent.stopService()
    await until(reactor, lambda: all(c.sessions == {"main": 0, "steve": 0} for c in sim.store.clusters()))


@pytest_twisted.ensureDeferred
async def test_token_rotation_is_handled_on_reconnect(reactor, sim, tmp_path, logs):
    agent = start_agent(reactor, make_config(sim, tmp_path, count=2))
    try:
        await until(reactor, all_active(sim, 2))
        runner = agent.runners[0]
        cluster = sim.store.get_cluster(runner.record.rancher_id)
        old = runner.token.reveal()
        sim.store.rotate_token(cluster.id)
        await deferLater(reactor, 0.6, lambda: None)  # past the grace period: the old token is dead
        sim.disconnect_cluster(cluster.id)
        await until(reactor, lambda: runner.token.reveal() != old and runner.connected_tunnels == 2,
                    what="reconnected with the rotated token")
        await until(reactor, all_active(sim, 2))
        assert runner.token.reveal() == sim.store.tokens(cluster.id)[0].token
        assert agent.token_refreshes >= 1
        assert cluster.params_changes == 0
        assert agent.runners[1].tunnels[MAIN].opens == 1  # the other cluster was not touched
        text = "\n".join(logs)
        assert "refused with HTTP 4" in text and old not in text
        assert "Scheduling retry" not in text  # ClientService's per-retry line is silenced
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_restart_adopts_state_without_duplicates_and_identical_params(reactor, sim, tmp_path):
    config = make_config(sim, tmp_path, count=3)
    first = start_agent(reactor, config)
    await until(reactor, all_active(sim, 3))
    ids = {r.name: r.record.rancher_id for r in first.runners.values()}
    params = {c.id: c.params for c in sim.store.clusters()}
    await first.stopService()
    await until(reactor, lambda: all(c.sessions == {"main": 0, "steve": 0} for c in sim.store.clusters()))

    second = start_agent(reactor, config)
    try:
        await until(reactor, all_active(sim, 3))
        assert {r.name: r.record.rancher_id for r in second.runners.values()} == ids
        assert len(sim.store.clusters()) == 3 and second.adopted == 0
        assert {c.id: c.params for c in sim.store.clusters()} == params
        assert sim.store.params_changes_total == 0
        for runner in second.runners.values():
            assert runner.record.connected_once and runner.tunnels[MAIN].factory.url.endswith("/v3/connect")
    finally:
        await second.stopService()


@pytest_twisted.ensureDeferred
async def test_grow_and_shrink_at_run_time(reactor, sim, tmp_path):
    agent = start_agent(reactor, make_config(sim, tmp_path, count=2))
    try:
        await until(reactor, all_active(sim, 2))
        kept = {i: agent.runners[i].tunnels[MAIN].opens for i in (0, 1)}
        result = await agent.resize(4)
        assert result["added"] == 2
        await until(reactor, all_active(sim, 4))
        # Shrink through the admin API, which wants its token for a change.
        http = StubTreq(admin_site(agent, Secret("admin-secret"))[0].resource)
        denied = await http.post("http://admin/clusters", data=b'{"count": 1}')
        assert denied.code == 401 and len(sim.store.clusters()) == 4
        pending = http.post(
            "http://admin/clusters", data=b'{"count": 1}', headers={"Authorization": ["Bearer admin-secret"]}
        )
        # The answer comes once the deletions are done (NOT_DONE_YET): pump StubTreq until then.
        response = await settle(reactor, http, pending)
        assert response.code == 200
        result = json.loads(await settle(reactor, http, response.content()))
        assert result["removed"] == ["t-00003", "t-00002", "t-00001"]
        listing = json.loads(await (await http.get("http://admin/clusters")).content())
        assert [(c["name"], c["tunnels"]) for c in listing["clusters"]] == [("t-00000", 2)]
        assert [c.name for c in sim.store.clusters()] == ["t-00000"]
        assert sorted(p.name for p in (tmp_path / "state" / "rancher").iterdir()) == ["t-00000.json"]
        assert agent.runners[0].tunnels[MAIN].opens == kept[0]  # untouched
        assert agent.runners[0].connected_tunnels == 2
        with pytest.raises(ValueError):
            await agent.resize(-1)
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_cleanup_on_stop_deletes_the_clusters(reactor, sim, tmp_path):
    config = make_config(sim, tmp_path, count=2, cleanup_on_stop=True)
    agent = start_agent(reactor, config)
    await until(reactor, all_active(sim, 2))
    other = sim.store.create_cluster("someone-else")
    await agent.stopService()
    assert [c.name for c in sim.store.clusters()] == [other.name]


@pytest_twisted.ensureDeferred
async def test_wrong_api_token_is_one_clear_line_and_a_retry(reactor, sim, tmp_path, logs):
    config = make_config(sim, tmp_path, count=2, token="token-wrong:abcdefgh")
    agent = start_agent(reactor, config)
    try:
        await until(reactor, lambda: sum("API token was refused" in line for line in logs) >= 2, seconds=15,
                    what="two refusals")
        assert sim.store.clusters() == [] and agent.running and not agent.ready
        refused = [line for line in logs if "API token was refused" in line]
        assert "retrying in" in refused[0] and "abcdefgh" not in "\n".join(logs)
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_checksum_mismatch_is_refused_before_any_cluster(reactor, sim, tmp_path, logs):
    config = make_config(sim, tmp_path, count=2, ca_checksum="f" * 64)
    agent = start_agent(reactor, config)
    try:
        await until(reactor, lambda: any("CA checksum mismatch" in line for line in logs), what="mismatch")
        assert sim.store.clusters() == [] and not agent.ready
    finally:
        await agent.stopService()


@pytest_twisted.ensureDeferred
async def test_twenty_clusters_active_with_both_tunnels_and_stand_in_restart(reactor, sim, tmp_path):
    config = make_config(sim, tmp_path, count=20)
    config = replace(config, clusters=replace(config.clusters, ramp_per_second=100.0))
    agent = start_agent(reactor, config)
    try:
        await until(reactor, all_active(sim, 20), seconds=60, what="20 active clusters")
        # The server side counts a session as soon as it sent 101; the agent once it has read it.
        await until(reactor, lambda: agent.counts()["fully_connected"] == 20, what="agent side")
        assert agent.counts()["connected_main"] == 20 and agent.counts()["connected_steve"] == 20
        # Rancher forgets everything (the stand-in's clusters are deleted): the agent re-imports.
        for cluster in sim.store.clusters()[:3]:
            sim.delete_cluster(cluster.id)
        await until(reactor, all_active(sim, 20), seconds=60, what="re-imported")
        assert agent.reimported == 3
    finally:
        await agent.stopService()
