"""SimulatedCluster and ClusterSet: stable identity, lazy building, shared seed, resolvers, liveness."""

from __future__ import annotations

import base64
import calendar
import json
import shutil
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource

from scaleagent.apiserver.packed import PackedEntry
from scaleagent.apiserver.resource import ApiSite
from scaleagent.apiserver.writes import register_crd
from scaleagent.cluster.cluster import LIVE_KINDS, ClusterSet, params_header, split_address

NOW = 1_780_000_000.0
TEMPLATE = Path(__file__).resolve().parent.parent / "etc" / "cluster.yaml"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def clock_at(seconds: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


@pytest.fixture(scope="module")
def shared():
    """One set for the read-only tests (building a CA takes a moment)."""
    return ClusterSet(clock_at())


def http_get(factory, path: str, transports: list | None = None) -> bytes:
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6080))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(f"GET {path} HTTP/1.1\r\nHost: not-used\r\n\r\n".encode())
    if transports is not None:
        transports.append(transport)
    return transport.value()


class Schemas(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b'{"data":[]}'


def rt(cluster, group: str, plural: str):
    return cluster.api.kinds.by_resource(group, "v1", plural)


def test_params_shape_encoding_and_stability(shared):
    a = shared.cluster(1, "scale-00001")
    assert shared.cluster(1, "scale-00001") is a
    params = a.tunnel_params()
    assert set(params) == {"cluster"} and set(params["cluster"]) == {"address", "token", "caCert"}
    assert params["cluster"]["address"] == "10.43.0.1:443"
    assert base64.b64decode(params["cluster"]["caCert"]) == shared.pki.ca_cert_pem
    assert a.tunnel_params() == params and a.params_header() == a.params_header()
    assert json.loads(base64.b64decode(a.params_header())) == params
    assert params_header(params) == a.params_header()
    header, claims, signature = a.token.split(".")
    assert json.loads(base64.urlsafe_b64decode(claims + "==")) ["sub"] == (
        "system:serviceaccount:cattle-system:cattle"
    )
    b = shared.cluster(2, "scale-00002")
    assert b.token != a.token and b.tunnel_params()["cluster"]["caCert"] == params["cluster"]["caCert"]
    with pytest.raises(ValueError, match="scale-00001"):
        shared.cluster(1, "other-name")


def test_identity_survives_a_restart_and_differs_between_state_dirs(tmp_path):
    first = ClusterSet(clock_at(), state_dir=tmp_path / "one")
    header = first.cluster(4, "scale-00004").params_header()
    again = ClusterSet(clock_at(NOW + 3600), state_dir=tmp_path / "one")
    assert again.cluster(4, "scale-00004").params_header() == header
    assert again.pki.cert_pem == first.pki.cert_pem and again.created == first.created
    other = ClusterSet(clock_at(), state_dir=tmp_path / "two")
    assert other.cluster(4, "scale-00004").tunnel_params() != first.cluster(4, "scale-00004").tunnel_params()
    assert oct((tmp_path / "one" / "cluster-token.key").stat().st_mode & 0o777) == "0o600"


def test_a_corrupt_token_key_is_reported_and_replaced(tmp_path):
    first = ClusterSet(clock_at(), state_dir=tmp_path)
    token = first.cluster(0, "c0").token
    (tmp_path / "cluster-token.key").write_text("not hex\n")
    again = ClusterSet(clock_at(), state_dir=tmp_path)
    assert again.cluster(0, "c0").token != token  # a new key, so new tokens (Rancher sees new params)
    assert list(tmp_path.glob("cluster-token.key.corrupt-*"))
    assert oct((tmp_path / "cluster-token.key").stat().st_mode & 0o777) == "0o600"
    assert ClusterSet(clock_at(), state_dir=tmp_path).cluster(0, "c0").token == again.cluster(0, "c0").token


def test_nothing_heavy_is_built_before_the_apiserver_is_needed(shared):
    cluster = shared.cluster(5, "scale-00005")
    cluster.tunnel_params()
    cluster.steve_resolver("tcp", "127.0.0.1:6080")
    assert cluster.main_resolver("tcp", "10.43.0.2:443") is None
    assert not cluster.materialized
    factory = cluster.main_resolver("tcp", "10.43.0.1:443")
    assert cluster.materialized
    assert isinstance(factory, TLSMemoryBIOFactory) and isinstance(factory.wrappedFactory, ApiSite)
    assert cluster.main_resolver("tcp", "10.43.0.1:443") is factory


@pytest.mark.parametrize(
    "proto,address",
    [("tcp", "10.43.0.1:6443"), ("udp", "10.43.0.1:443"), ("tcp", "127.0.0.1:6080"), ("tcp", "nonsense")],
)
def test_main_resolver_refuses_every_other_target(shared, proto, address):
    assert shared.cluster(6, "scale-00006").main_resolver(proto, address) is None


def test_ipv6_and_dns_addresses(tmp_path):
    v6 = ClusterSet(clock_at(), address="[FD00::1]:443")
    cluster = v6.cluster(0, "v6")
    assert cluster.tunnel_params()["cluster"]["address"] == "[fd00::1]:443"
    assert v6.pki.covers("fd00::1")
    assert cluster.main_resolver("tcp", "[fd00::1]:443") is not None
    assert split_address("API.Example:6443") == ("api.example", 6443)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"address": "10.43.0.1"}, "host:port"),
        ({"address": "10.43.0.1:0"}, "port"),
        ({"version": "v1.32.4+k3s1"}, "plain Kubernetes version"),
        ({"template": "/nonexistent/cluster.yaml"}, "/nonexistent/cluster.yaml"),
    ],
)
def test_bad_configuration_is_one_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        ClusterSet(clock_at(), **overrides)


def test_steve_site_answers_ping_and_takes_mounts(shared):
    a, b = shared.cluster(7, "scale-00007"), shared.cluster(8, "scale-00008")
    used: list = []
    reply = http_get(a.steve_resolver("tcp", "127.0.0.1:6080"), "/ping", used)
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\npong")
    # one request per connection, as steve's server: nothing lingers for peers that never reuse one
    assert b"connection: close" in reply.lower() and used[0].disconnecting
    assert http_get(a.steve_resolver("tcp", "anything:1"), "/nothing").startswith(b"HTTP/1.1 404")
    # one shared steve site; each connection is tagged with its cluster for steve's /v1 (issue 13)
    assert a.steve_resolver("tcp", "x:1").site is b.steve_resolver("tcp", "y:2").site
    v1 = Resource()
    v1.putChild(b"schemas", Schemas())
    a.steve_root.putChild(b"v1", v1)
    assert http_get(a.steve_resolver("tcp", "127.0.0.1:6080"), "/v1/schemas").endswith(b'{"data":[]}')
    assert http_get(a.steve_resolver("tcp", "127.0.0.1:6080"), "/ping").endswith(b"pong")
    other = http_get(b.steve_resolver("tcp", "127.0.0.1:6080"), "/v1/schemas")
    assert other.startswith(b"HTTP/1.1 200") and b'"resourceType":"schema"' in other  # steve's own /v1
    assert not a.materialized and b.materialized  # browsing builds that cluster's store only


def test_seed_contents_token_secret_and_sharing(shared):
    a, b = shared.cluster(10, "scale-00010"), shared.cluster(11, "scale-00011")
    nodes = a.store.list(rt(a, "", "nodes")).objects()
    assert len(nodes) >= 2 and all(n["metadata"]["name"].startswith("scale-00010-") for n in nodes)
    secrets = a.store.list(rt(a, "", "secrets"), namespace="cattle-system").objects()
    tokens = [s for s in secrets if s["type"] == "kubernetes.io/service-account-token"]
    assert len(tokens) == 1 and tokens[0]["metadata"]["name"].startswith("cattle-token-")
    assert base64.b64decode(tokens[0]["data"]["token"]).decode() == a.token
    assert base64.b64decode(tokens[0]["data"]["ca.crt"]) == shared.pki.ca_cert_pem
    user = a.api.auth.user(a.token)
    assert user is not None and user.name == "system:serviceaccount:cattle-system:cattle"
    assert a.api.auth.user(b.token) is None  # each cluster accepts its own token only
    ns = rt(a, "", "namespaces")
    assert a.store.get_entry(ns, None, "kube-system") is b.store.get_entry(ns, None, "kube-system")
    deployments = rt(a, "apps", "deployments")
    agent_a = a.store.get(deployments, "cattle-system", "cattle-cluster-agent")
    agent_b = b.store.get(deployments, "cattle-system", "cattle-cluster-agent")
    assert agent_a["metadata"]["uid"] != agent_b["metadata"]["uid"]
    rvs = [int(o["metadata"]["resourceVersion"]) for o in a.store.list(rt(a, "", "pods")).objects()]
    assert max(rvs) <= a.store.resource_version


def test_own_seed_objects_are_served_as_built_packed_except_what_heartbeats_rewrite(shared):
    cluster = shared.cluster(12, "scale-00012")
    built = shared.builder.seed(12, "scale-00012", rancher_token=cluster.rancher_token)
    kinds = {o["kind"] for o in built.own}
    assert {"Pod", "Node", "Lease", "Event"} <= kinds
    for obj in built.own:
        rt_ = cluster.api.kinds.by_api_version_kind(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        entry = cluster.store.get_entry(rt_, meta.get("namespace"), meta["name"])
        meta_served = {k: v for k, v in entry.obj["metadata"].items() if k != "resourceVersion"}
        served = dict(entry.obj, metadata=meta_served)
        assert served == obj, (obj["kind"], meta["name"])
        assert isinstance(entry, PackedEntry) == (obj["kind"] not in LIVE_KINDS)
    pods = cluster.store.list(rt(cluster, "", "pods")).objects()
    rvs = sorted(int(o["metadata"]["resourceVersion"]) for o in pods)
    assert len(set(rvs)) == len(rvs) and rvs[-1] < cluster.store.resource_version


def test_seed_crds_are_served_and_registries_copy_on_write(shared):
    crd_rt = lambda c: c.api.kinds.by_resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")  # noqa: E731
    clusters = [shared.cluster(i, f"scale-{i:05d}") for i in range(20, 40)]
    with_crds = [c for c in clusters if c.store.list(crd_rt(c)).objects()]
    assert with_crds
    for cluster in with_crds:
        for crd in cluster.store.list(crd_rt(cluster)).objects():
            plural = crd["spec"]["names"]["plural"]
            assert cluster.api.kinds.by_resource(crd["spec"]["group"], "v1", plural) is not None
    a, b = with_crds[0], next(c for c in with_crds[1:] if len(c.store.list(crd_rt(c)).objects()) == len(
        with_crds[0].store.list(crd_rt(with_crds[0])).objects()))
    new = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.io"},
        "spec": {
            "group": "example.io",
            "names": {"kind": "Thing", "plural": "things", "singular": "thing", "listKind": "ThingList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    register_crd(a.store, a.store.create(crd_rt(a), new))
    assert a.api.kinds.by_resource("example.io", "v1", "things") is not None
    assert b.api.kinds.by_resource("example.io", "v1", "things") is None


def test_liveness_beats_only_while_watched_and_stops():
    clock = clock_at()
    clusters = ClusterSet(clock, lease_period=10.0, status_period=300.0, save_interval=0)
    cluster = clusters.cluster(3, "scale-00003")
    clusters.start()
    store = cluster.store
    leases, nodes = rt(cluster, "coordination.k8s.io", "leases"), rt(cluster, "", "nodes")
    first_node = store.list(nodes).objects()[0]["metadata"]["name"]
    before = store.resource_version
    clock.advance(30)
    assert store.resource_version == before  # nobody watches: no writes
    events = []
    watch = store.watch(
        leases, lambda kind, entry: events.append((kind, entry.obj)), resource_version=str(before)
    )
    clock.advance(10.5)
    renewed = {obj["metadata"]["name"] for kind, obj in events if kind == "MODIFIED"}
    assert first_node in renewed
    assert not cluster.dirty  # heartbeats alone are not worth a save
    lease = store.get(leases, "kube-node-lease", first_node)
    renew = calendar.timegm(time.strptime(lease["spec"]["renewTime"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert clock.seconds() - 11 <= renew <= clock.seconds()
    seed_beat = store.get(nodes, None, first_node)["status"]["conditions"][0]["lastHeartbeatTime"]
    status = []
    rv = str(store.resource_version)
    store.watch(nodes, lambda kind, entry: status.append(entry.obj), resource_version=rv)
    clock.advance(300)
    beats = [o for o in status if o["metadata"]["name"] == first_node]
    stamp = beats[-1]["status"]["conditions"][0]["lastHeartbeatTime"] if beats else ""
    assert stamp > seed_beat and calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) > NOW + 40
    watch.cancel()
    cluster.stop()
    count = len(events)
    clock.advance(60)
    assert len(events) == count
    clusters.stop()


# -- python -m scaleagent.cluster with a template, an index and a state directory ----------------------


@pytest_twisted.ensureDeferred
async def test_cli_serves_cluster_n_of_a_template_and_keeps_its_changes(reactor, tmp_path):
    from twisted.internet import utils

    from scaleagent.cluster.__main__ import parse_args, serve

    home = tmp_path / "home"
    home.mkdir()
    kubeconfig = tmp_path / "kubeconfig"
    argv = [
        "--kubeconfig", str(kubeconfig), "--name", "scale-00003", "--template", str(TEMPLATE),
        "--cluster-index", "3", "--state-dir", str(tmp_path / "state"),
    ]

    async def kubectl(*args: str) -> str:
        out, err, code = await utils.getProcessOutputAndValue(
            KUBECTL, ["--kubeconfig", str(kubeconfig), "--request-timeout=20s", *args],
            env={"HOME": str(home)}, reactor=reactor,
        )
        assert code == 0, err.decode()
        return out.decode()

    served = await serve(reactor, parse_args(argv))
    try:
        nodes = (await kubectl("get", "nodes", "-o", "name")).split()
        assert len(nodes) >= 2 and all(n.startswith("node/scale-00003-node-") for n in nodes)
        await kubectl("label", "namespace", "default", "touched=yes")
        ca = served.pki.ca_cert_pem
    finally:
        await served.stop()
    again = await serve(reactor, parse_args(argv))
    try:
        assert again.pki.ca_cert_pem == ca
        labels = await kubectl("get", "namespace", "default", "-o", "jsonpath={.metadata.labels.touched}")
        assert labels == "yes"
    finally:
        await again.stop()


def test_steve_sites_keep_streamed_request_bodies_in_memory(shared):
    import io

    site = shared.ping_site()
    assert isinstance(site.getContentFile(None), io.BytesIO)  # chunked: no temporary file per request
    assert isinstance(site.getContentFile(1000), io.BytesIO)
