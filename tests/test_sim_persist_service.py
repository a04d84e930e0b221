"""A stand-in restarted on the same --state-dir is a Rancher restart: the same registration token
connects again, nothing is re-imported, the cluster gets back to Active. Loopback TLS, real tunnels,
the real agent, and `twistd -n ranchersim --state-dir` as a child process.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from scaleagent.sim import persist
from scaleagent.sim import store as st
from scaleagent.sim.service import start_ranchersim
from tests.support import until
from tests.test_sim_driver import no_failures, start_agent
from tests.test_sim_driver import start_sim as start_driven_sim
from tests.test_sim_service import BOOTSTRAP, ROOT, Collect, PinnedCA, client, request, wait_for_file
from tests.test_sim_tunnel import main_headers, open_tunnel, steve_headers


@pytest_twisted.ensureDeferred
async def test_restarted_stand_in_accepts_the_same_token_without_re_import(reactor, tmp_path):
    state = tmp_path / "state"
    first = await start_ranchersim(reactor, state_dir=state, summary_interval=0)
    http, pool = client(reactor, first)
    try:
        body = {"name": "d-00000"}
        code, body = await request(http, "POST", first.url + "/v3/clusters", first.api_token, body)
        assert code == 201
        cluster_id = body["id"]
        code, crts = await request(
            http, "GET", f"{first.url}/v3/clusterregistrationtokens?clusterId={cluster_id}", first.api_token
        )
        token = crts["data"][0]["token"]
    finally:
        await pool.closeCachedConnections()
    await open_tunnel(reactor, first, "/v3/connect/register", main_headers(token))
    await open_tunnel(reactor, first, "/v3/connect", steve_headers(token))
    cluster = first.store.get_cluster(cluster_id)
    await until(reactor, lambda: cluster.state == st.ACTIVE)
    first.store.rotate_token(cluster_id)  # rotation state must survive too: the old value is in grace
    rotated = first.store.tokens(cluster_id)[0].token
    await first.stop()  # a clean stop: every tunnel closed, the state saved
    assert not first.tunnels.server.client_keys()
    saved = state / persist.STATE_FILE
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["clusters"][1]["id"] == cluster_id

    second = await start_ranchersim(reactor, state_dir=state, summary_interval=0)
    try:
        # Same API token, same CA (kept in the state directory), same cluster, nobody connected.
        assert (second.api_token, second.ca_pem) == (first.api_token, first.ca_pem)
        again = second.store.get_cluster(cluster_id)
        assert (again.name, again.uuid, again.state) == ("d-00000", cluster.uuid, st.UNAVAILABLE)
        assert again.sessions == {st.MAIN: 0, st.STEVE: 0}
        # The token the agent holds (the pre-rotation one, still in grace) connects both tunnels.
        await open_tunnel(reactor, second, "/v3/connect", main_headers(token))
        await open_tunnel(reactor, second, "/v3/connect", steve_headers(token))
        await until(reactor, lambda: again.state == st.ACTIVE, what="active again")
        assert again.params_changes == 0 and second.store.params_changes_total == 0
        assert [c.id for c in second.store.clusters()] == [cluster_id]  # nothing re-imported
        assert second.store.cluster_for_token(rotated) is again
        http, pool = client(reactor, second)
        try:
            url = f"{second.url}/v3/clusters/{cluster_id}"
            code, body = await request(http, "GET", url, second.api_token)
        finally:
            await pool.closeCachedConnections()
        assert (code, body["state"], body["driver"]) == (200, "active", "imported")
    finally:
        await second.stop()


@pytest_twisted.ensureDeferred
async def test_agent_reconnects_after_a_restart_and_rancher_does_not_reapply_the_agent(reactor, tmp_path):
    """Under rancher-2.14: after the restart Rancher's per-process setup runs again (kube-system,
    discovery, version, nodes, informers, health, ping) and the agent deployment is read but not
    applied again, as Rancher keeps AgentDeployed and the applied image in the cluster's status."""
    n = 3
    state = tmp_path / "sim-state"
    first = await start_driven_sim(reactor, state_dir=state)
    port = first.port.getHost().port
    agent = start_agent(reactor, first, tmp_path, n)
    second = None
    try:
        await until(reactor, lambda: first.store.counts()[st.ACTIVE] == n, what="all active")
        ids = sorted(c.id for c in first.store.clusters())
        assert first.driver.summary()["kinds"]["kubectl apply"]["count"] >= n
        await first.stop()
        second = await start_driven_sim(reactor, state_dir=state, listen=f"tcp:{port}:interface=127.0.0.1")
        await until(reactor, lambda: second.store.counts()[st.ACTIVE] == n, seconds=60, what="active again")
        assert sorted(c.id for c in second.store.clusters()) == ids  # the agent re-imported nothing
        kinds = second.driver.summary()["kinds"]
        for kind in ("kube-system", "discovery", "version", "nodes", "agent check", "watch secrets"):
            assert kinds[kind]["count"] >= n, kind
        assert "kubectl apply" not in kinds and "impersonation" not in kinds
        assert second.driver.summary()["setups_done"] == n
        assert all(c.conditions["AgentDeployed"].status == "True" for c in second.store.clusters())
        assert second.store.params_changes_total == 0
        no_failures(second)
    finally:
        await agent.stopService()
        if second is not None:
            await second.stop()
        await first.stop()


@pytest_twisted.ensureDeferred
async def test_twistd_ranchersim_state_dir_survives_a_sigterm_restart(reactor, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HOME"] = str(tmp_path)

    async def run_once(step):
        proto = Collect()
        args = [
            sys.executable, "-c", BOOTSTRAP, str(ROOT), "-n", "--pidfile=", "ranchersim",
            "--listen", "tcp:0:interface=127.0.0.1", "--url-file", "url", "--profile", "none",
            "--state-dir", "state", "--save-interval", "0.5",
        ]  # fmt: skip
        (tmp_path / "url").unlink(missing_ok=True)
        reactor.spawnProcess(proto, sys.executable, args, env=env, path=str(tmp_path))
        try:
            url = await wait_for_file(reactor, tmp_path / "url")
            token = (tmp_path / "ranchersim.token").read_text().strip()
            ca = (tmp_path / "state" / "tls" / "ca.pem").read_text()
            pool = HTTPConnectionPool(reactor, persistent=False)
            http = HTTPClient(Agent(reactor, contextFactory=PinnedCA(ca), pool=pool))
            result = await step(http, url, token)
        finally:
            if proto.transport.pid:
                os.kill(proto.transport.pid, signal.SIGTERM)
        code = await proto.ended.addTimeout(30, reactor)
        output = proto.out.decode()
        assert (code, proto.signal) in ((0, None), (None, signal.SIGTERM)), output
        assert "Traceback" not in output and token not in output
        return result, output

    async def register(http, url, token):
        code, cluster = await request(http, "POST", url + "/v3/clusters", token, {"name": "from-twistd"})
        assert code == 201
        crts_url = f"{url}/v3/clusterregistrationtokens?clusterId={cluster['id']}"
        _, crts = await request(http, "GET", crts_url, token)
        return cluster["id"], crts["data"][0]["token"]

    (cluster_id, crt), _ = await run_once(register)

    async def look(http, url, token):
        code, clusters = await request(http, "GET", url + "/v3/clusters?name=from-twistd", token)
        assert code == 200
        crts_url = f"{url}/v3/clusterregistrationtokens?clusterId={cluster_id}"
        _, crts = await request(http, "GET", crts_url, token)
        return [c["id"] for c in clusters["data"]], crts["data"][0]["token"]

    (ids, crt_again), output = await run_once(look)
    assert ids == [cluster_id] and crt_again == crt
    assert "state loaded from" in output and "1 clusters" in output
    assert crt not in output  # registration tokens never reach the log
    assert stat.S_IMODE((tmp_path / "state" / persist.STATE_FILE).stat().st_mode) == 0o600


@pytest_twisted.ensureDeferred
async def test_periodic_saves_are_written_from_the_thread_pool(reactor, tmp_path):
    state = tmp_path / "state"
    sim = await start_ranchersim(reactor, state_dir=state, save_interval=0.2, summary_interval=0)
    path = state / persist.STATE_FILE

    def names() -> list[str]:
        try:
            return [c["name"] for c in json.loads(path.read_text())["clusters"]]
        except (OSError, ValueError):
            return []

    try:
        await until(reactor, lambda: names() == ["local"], what="first save")
        first = sim.saver.saves
        cluster = sim.store.create_cluster("d-00000")
        await until(reactor, lambda: "d-00000" in names(), what="the new cluster saved")
        assert sim.saver.saves == first + 1 and sim.saver.failures == 0
        sim.store.tunnel_opened(cluster, st.MAIN)  # runtime only: nothing more to write
        saves = sim.saver.saves
        await deferLater(reactor, 0.6, lambda: None)
        assert sim.saver.saves == saves
        sim.store.tunnel_closed(cluster, st.MAIN)
    finally:
        await sim.stop()
