"""A simulated cluster through both tunnels, end to end on loopback, seen from Rancher's side.

Rancher's side is our remotedialer server end on a loopback wss:// listener.  It reads the tunnel
params the cluster announces, trusts only their `caCert`, verifies the certificate for IP 10.43.0.1 and
talks HTTP/1.1 over TLS through `dial()`, as Rancher does.  Real kubectl goes through the same tunnel via
a small HTTP CONNECT proxy (`proxy-url` in its kubeconfig) that forwards each connection over `dial()`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import pytest_twisted
import yaml
from twisted.internet import defer, endpoints, utils
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.web.client import Agent, ResponseNeverReceived, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from scaleagent.cluster.cluster import ClusterConfig, ClusterSet
from scaleagent.cluster.pki import load_or_create
from scaleagent.remotedialer.server import Refusal, TunnelAgentEndpoints, TunnelServer
from scaleagent.remotedialer.websocket import connect_tunnel

# Twisted's own HTTP client response transport (TransportProxyProducer) has no abortConnection.
pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
REGISTRATION = "reg-token"
API = "https://10.43.0.1:443"


class Rancher:
    """The Rancher end: a TunnelServer under /v3/connect that records the params each cluster sends."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.params: dict[str, dict] = {}
        self.server = TunnelServer(reactor, self.authorize)
        self.pki = load_or_create(None, "127.0.0.1")  # Rancher's own (unrelated) TLS identity
        self.port = None
        self.url = ""

    def authorize(self, request):
        auth = request.getHeader("authorization") or ""
        if auth.startswith("Bearer stv-cluster-"):
            return "stv-cluster-c-1"
        if request.getHeader("x-api-tunnel-token") != REGISTRATION:
            return Refusal(401, "failed authentication")
        raw = request.getHeader("x-api-tunnel-params") or ""
        self.params["c-1"] = json.loads(base64.b64decode(raw))
        return "c-1"

    async def start(self) -> Rancher:
        root, v3 = Resource(), Resource()
        root.putChild(b"v3", v3)
        v3.putChild(b"connect", self.server.resource)
        site = Site(root)
        site.noisy = False
        endpoint = endpoints.SSL4ServerEndpoint(
            self.reactor, 0, self.pki.server_context_factory(), interface="127.0.0.1"
        )
        self.port = await endpoint.listen(site)
        self.url = f"wss://127.0.0.1:{self.port.getHost().port}/v3/connect"
        return self

    async def connect(self, cluster, *, steve: bool = False):
        if steve:
            headers = {"Authorization": "Bearer stv-cluster-sometoken"}
            resolver = cluster.steve_resolver
        else:
            headers = {"X-API-Tunnel-Token": REGISTRATION, "X-API-Tunnel-Params": cluster.params_header()}
            resolver = cluster.main_resolver
        return await connect_tunnel(
            self.reactor, self.url, headers, resolver, ca_pem=self.pki.ca_cert_pem, name=cluster.name
        )

    def agent(self, ca_pem: bytes, key: str = "c-1") -> Agent:
        """An HTTP client dialling through the tunnel, trusting only `ca_pem` (as Rancher's REST config)."""
        trust = Certificate.loadPEM(ca_pem)
        return Agent.usingEndpointFactory(
            self.reactor,
            TunnelAgentEndpoints(self.server, key, lambda host: optionsForClientTLS(host, trustRoot=trust)),
        )

    async def stop(self, *clients) -> None:
        for client in clients:
            if client.session is not None and not client.session.closed:
                client.dropConnection(abort=True)
                await client.ended
        self.server.stop()
        await self.port.stopListening()


@implementer(IBodyProducer)
class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def stopProducing(self):
        pass


class Collect(Protocol):
    def __init__(self) -> None:
        self.lost: defer.Deferred = defer.Deferred()

    def connectionLost(self, reason) -> None:
        self.lost.callback(reason.value)


def bearer(params: dict, **more: str) -> Headers:
    headers = Headers({"authorization": [f"Bearer {params['cluster']['token']}"]})
    for name, value in more.items():
        headers.setRawHeaders(name.replace("_", "-"), [value])
    return headers


async def request(agent: Agent, method: str, path: str, headers: Headers, body: bytes | None = None):
    response = await agent.request(
        method.encode(), (API + path).encode(), headers, Body(body) if body is not None else None
    )
    data = await readBody(response)
    return response.code, data


@pytest.fixture
def clusters(reactor, tmp_path):
    return ClusterSet(reactor, ClusterConfig(state_dir=tmp_path / "state", save_interval=0))


@pytest_twisted.ensureDeferred
async def test_rancher_lists_watches_and_writes_through_the_main_tunnel(reactor, clusters):
    cluster = clusters.cluster(1, "scale-00001")
    rancher = await Rancher(reactor).start()
    client = await rancher.connect(cluster)
    try:
        params = rancher.params["c-1"]
        assert params == cluster.tunnel_params()
        assert params["cluster"]["address"] == "10.43.0.1:443"
        ca_pem = base64.b64decode(params["cluster"]["caCert"])
        agent = rancher.agent(ca_pem)
        auth = bearer(params)

        code, body = await request(agent, "GET", "/version", auth)
        assert code == 200 and json.loads(body)["gitVersion"] == "v1.32.4"

        code, body = await request(agent, "GET", "/api/v1/nodes", auth)
        nodes = json.loads(body)
        assert code == 200 and nodes["kind"] == "NodeList" and len(nodes["items"]) >= 2
        list_rv = nodes["metadata"]["resourceVersion"]

        # a watch from the list's resourceVersion sees a ConfigMap created meanwhile, then times out
        watch = agent.request(
            b"GET",
            f"{API}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={list_rv}"
            f"&timeoutSeconds=2".encode(),
            auth,
        )
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-rancher"}}
        code, body = await request(
            agent,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            bearer(params, content_type="application/json"),
            json.dumps(cm).encode(),
        )
        assert code == 201, body
        response = await watch
        assert response.code == 200
        events = [json.loads(line) for line in (await readBody(response)).splitlines() if line.strip()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "from-rancher")]

        # a strategic-merge patch, read back
        patch = {"metadata": {"labels": {"patched": "yes"}}}
        code, body = await request(
            agent,
            "PATCH",
            "/apis/apps/v1/namespaces/cattle-system/deployments/cattle-cluster-agent",
            bearer(params, content_type="application/strategic-merge-patch+json"),
            json.dumps(patch).encode(),
        )
        assert code == 200, body
        deployments = cluster.api.kinds.by_resource("apps", "v1", "deployments")
        stored = cluster.store.lookup(deployments, "cattle-system", "cattle-cluster-agent")
        assert stored["metadata"]["labels"]["patched"] == "yes"

        # another token is refused; the params token authenticates as the cattle service account
        code, _ = await request(agent, "GET", "/api/v1/nodes", Headers({"authorization": ["Bearer nope"]}))
        assert code == 401
        user = cluster.api.auth.user(params["cluster"]["token"])
        assert user is not None and user.name == "system:serviceaccount:cattle-system:cattle"

        # any other target: that connection alone is refused, the tunnel stays up
        session = rancher.server.sessions("c-1")[0]
        refused = rancher.server.dial("c-1", "tcp", "10.43.0.2:443", Factory.forProtocol(Collect))
        reason = await refused.lost
        assert "connection refused" in str(reason)
        assert rancher.server.sessions("c-1") == [session] and not session.closed
        code, _ = await request(agent, "GET", "/readyz", auth)
        assert code == 200
    finally:
        await rancher.stop(client)


@pytest_twisted.ensureDeferred
async def test_the_certificate_is_checked_against_the_params_ca_for_the_ip(reactor, clusters):
    cluster = clusters.cluster(2, "scale-00002")
    rancher = await Rancher(reactor).start()
    client = await rancher.connect(cluster)
    try:
        params = rancher.params["c-1"]
        ca_pem = base64.b64decode(params["cluster"]["caCert"])
        other_ca = load_or_create(None).ca_cert_pem
        with pytest.raises(ResponseNeverReceived) as failure:
            await request(rancher.agent(other_ca), "GET", "/version", bearer(params))
        assert "certificate verify failed" in str(failure.value.reasons[0].value)
        # the certificate is checked for the IP: the right CA but another IP fails too
        trust = Certificate.loadPEM(ca_pem)
        wrong_ip = Agent.usingEndpointFactory(
            reactor,
            TunnelAgentEndpoints(
                rancher.server, "c-1", lambda host: optionsForClientTLS("10.43.0.99", trustRoot=trust)
            ),
        )
        with pytest.raises(ResponseNeverReceived) as failure:
            await request(wrong_ip, "GET", "/version", bearer(params))
        assert "IPAddressMismatch" in repr(failure.value.reasons[0].value)
        # the tunnel survives a failed handshake and a right CA still works
        code, _ = await request(rancher.agent(ca_pem), "GET", "/version", bearer(params))
        assert code == 200
    finally:
        await rancher.stop(client)


@pytest_twisted.ensureDeferred
async def test_steve_tunnel_answers_ping_on_any_target(reactor, clusters):
    cluster = clusters.cluster(3, "scale-00003")
    rancher = await Rancher(reactor).start()
    client = await rancher.connect(cluster, steve=True)
    try:
        agent = Agent.usingEndpointFactory(reactor, TunnelAgentEndpoints(rancher.server, "stv-cluster-c-1"))
        for url in (b"http://127.0.0.1:6080/ping", b"http://not-used/ping"):
            response = await agent.request(b"GET", url)
            assert (response.code, await readBody(response)) == (200, b"pong")
        assert not cluster.materialized  # /ping needs no store
        response = await agent.request(b"GET", b"http://127.0.0.1:6080/v1/schemas")
        assert response.code == 200  # steve's /v1 (issue 13) builds the store on first browse
        assert json.loads(await readBody(response))["resourceType"] == "schema"
        assert cluster.materialized
        response = await agent.request(b"GET", b"http://127.0.0.1:6080/nothing-here")
        assert response.code == 404
        await readBody(response)
    finally:
        await rancher.stop(client)


# -- real kubectl ---------------------------------------------------------------------------------------


class _Relay(Protocol):
    def __init__(self, proxy: ConnectProxy) -> None:
        self.proxy = proxy

    def connectionMade(self) -> None:
        self.proxy.relay_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.proxy.transport.write(data)

    def connectionLost(self, reason) -> None:
        self.proxy.transport.loseConnection()


class ConnectProxy(Protocol):
    """HTTP CONNECT proxy: every tunnel request becomes a `dial()` through the Rancher-side session."""

    def __init__(self, server: TunnelServer, key: str) -> None:
        self.server = server
        self.key = key
        self.buffer = b""
        self.peer: _Relay | None = None
        self.pending = b""

    def dataReceived(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.transport.write(data)
            return
        if self.buffer is None:  # dialled, waiting for the relay to connect
            self.pending += data
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > 65536:
                self.transport.loseConnection()
            return
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        method, target, _version = head.split(b"\r\n")[0].split(b" ", 2)
        if method != b"CONNECT":
            self.transport.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            self.transport.loseConnection()
            return
        self.buffer = None
        self.pending = rest
        self.server.dial(self.key, "tcp", target.decode(), Factory.forProtocol(lambda: _Relay(self)))

    def relay_ready(self, relay: _Relay) -> None:
        self.peer = relay
        self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if self.pending:
            relay.transport.write(self.pending)
            self.pending = b""

    def connectionLost(self, reason) -> None:
        if self.peer is not None:
            self.peer.transport.loseConnection()


def kubeconfig(path: Path, params: dict, proxy_port: int) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sim",
                "cluster": {
                    "server": API,
                    "certificate-authority-data": params["cluster"]["caCert"],
                    "proxy-url": f"http://127.0.0.1:{proxy_port}",
                },
            }
        ],
        "users": [{"name": "cattle", "user": {"token": params["cluster"]["token"]}}],
        "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "cattle"}}],
        "current-context": "sim",
    }
    path.write_text(yaml.safe_dump(doc))


async def kubectl(reactor, home: Path, *args: str) -> str:
    out, err, code = await utils.getProcessOutputAndValue(
        KUBECTL,
        ["--kubeconfig", str(home / "kubeconfig"), "--request-timeout=30s", *args],
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        reactor=reactor,
    )
    assert code == 0, f"kubectl {' '.join(args)} failed ({code}): {err.decode()}"
    return out.decode()


async def serve_proxy(reactor, server: TunnelServer, key: str):
    factory = Factory.forProtocol(lambda: ConnectProxy(server, key))
    factory.noisy = False
    return await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl not installed")
@pytest_twisted.ensureDeferred
async def test_kubectl_through_the_tunnel_and_a_restart(reactor, tmp_path):
    state = tmp_path / "state"
    home = tmp_path / "home"
    home.mkdir()
    clusters = ClusterSet(reactor, ClusterConfig(state_dir=state, save_interval=0))
    cluster = clusters.cluster(7, "scale-00007")
    rancher = await Rancher(reactor).start()
    client = await rancher.connect(cluster)
    proxy = await serve_proxy(reactor, rancher.server, "c-1")
    try:
        params = rancher.params["c-1"]
        kubeconfig(home / "kubeconfig", params, proxy.getHost().port)

        nodes = json.loads(await kubectl(reactor, home, "get", "nodes", "-o", "json"))["items"]
        assert len(nodes) >= 2
        names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True"
            assert {"cpu", "memory", "pods"} <= set(node["status"]["capacity"])
        table = await kubectl(reactor, home, "get", "nodes")
        assert table.count(" Ready ") == len(nodes), table

        pods = json.loads(await kubectl(reactor, home, "get", "pods", "-A", "-o", "json"))["items"]
        assert pods and all(p["status"]["phase"] == "Running" for p in pods)
        assert {p["spec"]["nodeName"] for p in pods} <= names
        assert "Running" in await kubectl(reactor, home, "get", "pods", "-A")

        first = sorted(names)[0]
        described = await kubectl(reactor, home, "describe", "node", first)
        assert "Allocated resources:" in described and "Non-terminated Pods:" in described, described
        on_node = [p for p in pods if p["spec"]["nodeName"] == first]
        assert f"Non-terminated Pods:          ({len(on_node)} in total)" in described, described
        # the CPU requests kubectl adds up from the pods are what the node's Rancher annotation says
        node = next(n for n in nodes if n["metadata"]["name"] == first)
        wanted = json.loads(node["metadata"]["annotations"]["management.cattle.io/pod-requests"])["cpu"]
        allocated = described.split("Allocated resources:", 1)[1]
        assert re.search(rf"\n\s+cpu\s+{re.escape(wanted)} \(\d+%\)", allocated), (wanted, allocated)

        # Rancher's import manifest objects are there
        await kubectl(reactor, home, "get", "serviceaccount", "cattle", "-n", "cattle-system")
        await kubectl(reactor, home, "get", "clusterrole", "cattle-admin")
        await kubectl(reactor, home, "get", "clusterrolebinding", "cattle-admin-binding")
        await kubectl(reactor, home, "get", "service", "cattle-cluster-agent", "-n", "cattle-system")
        secrets = await kubectl(reactor, home, "get", "secrets", "-n", "cattle-system", "-o", "name")
        assert "secret/cattle-credentials-" in secrets
        image = "rancher/rancher-agent:v9.9.9-patched"
        await kubectl(
            reactor,
            home,
            "set",
            "image",
            "-n",
            "cattle-system",
            "deployment/cattle-cluster-agent",
            f"cluster-register={image}",
        )
    finally:
        await proxy.stopListening()
        await rancher.stop(client)
    clusters.stop()

    # a restart: same CA, certificate, token and params; the patched Deployment stays patched
    again = ClusterSet(reactor, ClusterConfig(state_dir=state, save_interval=0))
    assert again.pki.cert_pem == clusters.pki.cert_pem
    cluster2 = again.cluster(7, "scale-00007")
    assert cluster2.params_header() == cluster.params_header()
    rancher2 = await Rancher(reactor).start()
    client2 = await rancher2.connect(cluster2)
    proxy2 = await serve_proxy(reactor, rancher2.server, "c-1")
    try:
        assert rancher2.params["c-1"] == params
        kubeconfig(home / "kubeconfig", rancher2.params["c-1"], proxy2.getHost().port)
        got = await kubectl(
            reactor,
            home,
            "get",
            "deployment",
            "cattle-cluster-agent",
            "-n",
            "cattle-system",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        )
        assert got == image
    finally:
        await proxy2.stopListening()
        await rancher2.stop(client2)
        again.stop()
