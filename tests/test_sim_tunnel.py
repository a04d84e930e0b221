"""The stand-in's tunnel endpoint with real WebSocket clients on loopback TLS.

Every authorisation outcome is shown twice: with the remotedialer client (autobahn), which sees the
HTTP status of a refusal, and with a raw upgrade request through treq, which also reads the body Rancher
sends (autobahn's client does not expose it reliably).
"""

from __future__ import annotations

import base64
import json

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from scaleagent.remotedialer.websocket import TunnelRefused, connect_tunnel
from scaleagent.sim import store as st
from scaleagent.sim.service import RancherSim, start_ranchersim
from tests.support import until
from tests.test_sim_service import PinnedCA

PARAMS = {"cluster": {"address": "10.43.0.1:443", "token": "sa-token", "caCert": "Y2EtcGVt"}}


def b64json(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


def wss(sim: RancherSim, path: str) -> str:
    return "wss" + sim.url[len("https") :] + path


def refuse_all(proto: str, address: str):
    return None


def open_tunnel(reactor, sim: RancherSim, path: str, headers: dict[str, str]):
    return connect_tunnel(
        reactor, wss(sim, path), headers, refuse_all, ca_pem=sim.ca_pem.encode(), name="test", open_timeout=10
    )


def main_headers(token: str, params=PARAMS) -> dict[str, str]:
    return {"X-API-Tunnel-Token": token, "X-API-Tunnel-Params": b64json(params)}


def steve_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer stv-cluster-{token}"}


async def raw_upgrade(reactor, sim: RancherSim, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A WebSocket upgrade request as plain HTTP, to read a refusal's status and body."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, contextFactory=PinnedCA(sim.ca_pem), pool=pool))
    all_headers = {
        "Connection": ["Upgrade"],
        "Upgrade": ["websocket"],
        "Sec-WebSocket-Version": ["13"],
        "Sec-WebSocket-Key": [base64.b64encode(b"0123456789abcdef").decode()],
        **{name: [value] for name, value in headers.items()},
    }
    try:
        response = await http.get(sim.url + path, headers=all_headers)
        return response.code, await response.content()
    finally:
        await pool.closeCachedConnections()


@pytest.fixture
def sim(reactor):
    started = pytest_twisted.blockon(defer.ensureDeferred(start_ranchersim(reactor, grace_period=0.5)))
    yield started
    pytest_twisted.blockon(defer.ensureDeferred(started.stop()))


def token_of(sim: RancherSim, cluster: st.Cluster) -> str:
    return sim.store.tokens(cluster.id)[0].token


@pytest_twisted.ensureDeferred
async def test_both_tunnels_make_a_cluster_active_and_losing_one_unavailable(reactor, sim):
    cluster = sim.store.create_cluster("sim-00000")
    token = token_of(sim, cluster)
    main = await open_tunnel(reactor, sim, "/v3/connect/register", main_headers(token))
    await until(reactor, lambda: cluster.connected(st.MAIN))
    assert cluster.state == st.PENDING
    assert cluster.driver == "imported" and cluster.api_endpoint == "https://10.43.0.1:443"
    assert [s.name for s in sim.tunnels.sessions(cluster.id, st.MAIN)] == [cluster.id]

    steve = await open_tunnel(reactor, sim, "/v3/connect", steve_headers(token))
    await until(reactor, lambda: cluster.state == st.ACTIVE)
    assert [s.name for s in sim.tunnels.sessions(cluster.id, st.STEVE)] == [f"stv-cluster-{cluster.id}"]
    summary = sim.summary()
    assert (summary["active"], summary["main_tunnels"], summary["steve_tunnels"]) == (1, 1, 1)
    assert (summary["tunnels_accepted"], summary["tunnels_refused"]) == (2, 0)

    steve.disconnect()
    await until(reactor, lambda: cluster.state == st.UNAVAILABLE)
    assert cluster.conditions["Ready"].message == "Cluster agent is not connected"
    steve = await open_tunnel(reactor, sim, "/v3/connect", steve_headers(token))
    await until(reactor, lambda: cluster.state == st.ACTIVE)

    # The main tunnel on /v3/connect (connected mode) is the same to Rancher.
    main.disconnect()
    await until(reactor, lambda: cluster.state == st.UNAVAILABLE)
    await open_tunnel(reactor, sim, "/v3/connect", main_headers(token))
    await until(reactor, lambda: cluster.state == st.ACTIVE)
    assert cluster.params_changes == 0


@pytest_twisted.ensureDeferred
async def test_delete_closes_both_tunnels_and_refuses_the_token(reactor, sim):
    cluster = sim.store.create_cluster("sim-00001")
    token = token_of(sim, cluster)
    main = await open_tunnel(reactor, sim, "/v3/connect/register", main_headers(token))
    steve = await open_tunnel(reactor, sim, "/v3/connect", steve_headers(token))
    await until(reactor, lambda: cluster.state == st.ACTIVE)
    sim.delete_cluster(cluster.id)
    ended = await defer.gatherResults([main.ended, steve.ended])
    assert all(e.opened for e in ended)
    await until(reactor, lambda: not sim.tunnels.server.client_keys())
    assert await raw_upgrade(reactor, sim, "/v3/connect", main_headers(token)) == (400, b"cluster not found")


@pytest_twisted.ensureDeferred
async def test_params_change_is_counted_and_disconnect_injects_a_fault(reactor, sim):
    cluster = sim.store.create_cluster("sim-00002")
    token = token_of(sim, cluster)
    first = await open_tunnel(reactor, sim, "/v3/connect", main_headers(token))
    changed = {"cluster": dict(PARAMS["cluster"], caCert="b3RoZXI=")}
    second = await open_tunnel(reactor, sim, "/v3/connect", main_headers(token, changed))
    assert cluster.params_changes == 1 and sim.store.params_changes_total == 1
    assert cluster.ca_cert == "b3RoZXI="
    await until(reactor, lambda: cluster.sessions[st.MAIN] == 2)
    assert sim.disconnect_cluster(cluster.id) == 2
    await defer.gatherResults([first.ended, second.ended])
    await until(reactor, lambda: cluster.sessions[st.MAIN] == 0)


@pytest_twisted.ensureDeferred
async def test_rotated_token_works_during_grace_only(reactor, sim):
    cluster = sim.store.create_cluster("sim-00003")
    old = token_of(sim, cluster)
    # A grace of its own, wide enough for two handshakes on a loaded machine (the fixture's is 0.5 s).
    sim.store.grace_period = 3.0
    try:
        crt = sim.store.rotate_token(cluster.id)
    finally:
        sim.store.grace_period = 0.5
    new = crt.token
    await open_tunnel(reactor, sim, "/v3/connect", main_headers(old))
    await open_tunnel(reactor, sim, "/v3/connect", steve_headers(new))
    await until(reactor, lambda: cluster.state == st.ACTIVE)
    await until(reactor, lambda: sim.store.now() > crt.previous_expires, 10, "the end of the grace period")
    assert await raw_upgrade(reactor, sim, "/v3/connect", main_headers(old)) == (400, b"cluster not found")
    assert await raw_upgrade(reactor, sim, "/v3/connect", steve_headers(old)) == (
        401,
        b"failed authentication",
    )


REFUSALS = [
    ("no credentials", "/v3/connect", lambda token: {}, 401, b"failed authentication"),
    (
        "API key is no tunnel credential",
        "/v3/connect",
        lambda token: {"Authorization": "Bearer token-abcde:x"},
        401,
        b"failed authentication",
    ),
    (
        "unknown steve token",
        "/v3/connect",
        lambda token: steve_headers("x" * 54),
        401,
        b"failed authentication",
    ),
    (
        "unknown registration token",
        "/v3/connect/register",
        lambda token: main_headers("x" * 54),
        400,
        b"cluster not found",
    ),
    (
        "params not base64",
        "/v3/connect/register",
        lambda token: {"X-API-Tunnel-Token": token, "X-API-Tunnel-Params": "e30*"},
        400,
        b"illegal base64 data at input byte 3",
    ),
    (
        "params not JSON",
        "/v3/connect",
        lambda token: main_headers(token, b"{cluster"),
        400,
        b"invalid character 'c' looking for beginning of object key string",
    ),
    (
        "no params at all",
        "/v3/connect",
        lambda token: {"X-API-Tunnel-Token": token},
        400,
        b"unexpected end of JSON input",
    ),
    (
        "neither node nor cluster",
        "/v3/connect",
        lambda token: main_headers(token, {"x": 1}),
        400,
        b"missing node or cluster registration info",
    ),
    (
        "address empty",
        "/v3/connect",
        lambda token: main_headers(token, {"cluster": {"token": "t", "caCert": "c"}}),
        400,
        b"invalid input, address empty",
    ),
    (
        "token empty",
        "/v3/connect",
        lambda token: main_headers(token, {"cluster": {"address": "a:1", "caCert": "c"}}),
        400,
        b"invalid input, token empty",
    ),
    (
        "caCert empty",
        "/v3/connect",
        lambda token: main_headers(token, {"cluster": {"address": "a:1", "token": "t"}}),
        400,
        b"invalid input, caCert empty",
    ),
    (
        "node params",
        "/v3/connect/register",
        lambda token: main_headers(token, {"node": {"requestedHostname": "n"}}),
        400,
        b"node agents are not simulated by the stand-in",
    ),
]


@pytest.mark.parametrize(
    ("case", "path", "headers", "status", "body"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
@pytest_twisted.ensureDeferred
async def test_refusals_with_status_and_body(reactor, sim, case, path, headers, status, body):
    cluster = sim.store.create_cluster("sim-00004")
    token = token_of(sim, cluster)
    with pytest.raises(TunnelRefused) as caught:
        await open_tunnel(reactor, sim, path, headers(token))
    assert caught.value.status == status
    assert await raw_upgrade(reactor, sim, path, headers(token)) == (status, body)
    assert cluster.params is None and cluster.sessions == {st.MAIN: 0, st.STEVE: 0}
    assert sim.tunnels.refused >= 2


@pytest_twisted.ensureDeferred
async def test_cluster_state_is_what_the_api_reports(reactor, sim):
    from tests.test_sim_service import client, request

    http, pool = client(reactor, sim)
    try:
        code, created = await request(
            http, "POST", sim.url + "/v3/clusters", sim.api_token, {"name": "via-api"}
        )
        cluster = sim.store.get_cluster(created["id"])
        token = token_of(sim, cluster)
        await open_tunnel(reactor, sim, "/v3/connect/register", main_headers(token))
        steve = await open_tunnel(reactor, sim, "/v3/connect", steve_headers(token))
        await until(reactor, lambda: cluster.state == st.ACTIVE)
        code, body = await request(http, "GET", f"{sim.url}/v3/clusters/{cluster.id}", sim.api_token)
        assert (body["state"], body["driver"], body["apiEndpoint"]) == (
            "active",
            "imported",
            "https://10.43.0.1:443",
        )
        steve.disconnect()
        await until(reactor, lambda: cluster.state == st.UNAVAILABLE)
        code, body = await request(http, "GET", f"{sim.url}/v3/clusters/{cluster.id}", sim.api_token)
        assert body["state"] == "unavailable"
        code, deleted = await request(http, "DELETE", f"{sim.url}/v3/clusters/{cluster.id}", sim.api_token)
        assert code == 200
        await until(reactor, lambda: not sim.tunnels.server.client_keys())
    finally:
        await pool.closeCachedConnections()


@pytest_twisted.ensureDeferred
async def test_on_delete_hook_runs_before_the_sessions_close(reactor, sim):
    cluster = sim.store.create_cluster("sim-00005")
    token = token_of(sim, cluster)
    main = await open_tunnel(reactor, sim, "/v3/connect", main_headers(token))
    await until(reactor, lambda: cluster.connected(st.MAIN))
    cleanup: defer.Deferred[None] = defer.Deferred()
    seen = []

    def on_delete(deleted):
        # The tunnel is still there to send Rancher's cleanup objects through.
        seen.append((deleted.id, len(sim.tunnels.sessions(deleted.id, st.MAIN))))
        return cleanup

    sim.on_delete = on_delete
    sim.delete_cluster(cluster.id)
    assert seen == [(cluster.id, 1)]
    await deferLater(reactor, 0.05, lambda: None)
    assert not main.ended.called
    cleanup.callback(None)
    assert (await main.ended).opened
