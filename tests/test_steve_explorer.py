"""The Cluster Explorer's requests, replayed through a real steve tunnel on loopback.

Rancher's side is our TunnelServer on a loopback wss:// listener; the simulated cluster holds the
steve tunnel (`Authorization: Bearer stv-cluster-…`) and its main tunnel.  Every request goes, as
Rancher's steve proxy sends it (rancher `pkg/api/steve/proxy/proxy.go`), as plain HTTP through
`dial()` with the `/k8s/clusters/<id>` prefix stripped, `X-API-URL-Prefix: /k8s/clusters/c-1` and
`Impersonate-*` headers instead of the browser's credentials.

The sequence (rancher/dashboard):
- open a cluster (`shell/store/index.js`, `loadCluster`): GET /v1/schemas, the /v1/subscribe socket
  (`?sockId=N`), GET /v1/counts and /v1/namespaces (`cluster/findAll`, which adds
  `exclude=metadata.managedFields`), then watches for `count` and `namespace` from the list revision;
- the cluster dashboard: GET /v1/nodes and /v1/events;
- its nodes (`shell/list/node.vue`): GET /v1/nodes and /v1/pods, watch `node`;
- a node (`shell/models/node.js` `fetchRunningPods`, seen in `shell/models/__tests__/node.test.ts`):
  GET /v1/nodes/<name>, GET /v1/pods?exclude=metadata.managedFields&filter=spec.nodeName=<name>;
- its pods: GET /v1/pods, watch `pod`;
- a pod: GET /v1/pods/<ns>/<name>, GET /v1/events.
Shapes checked against rancher/apiserver `pkg/types` (Collection, RawResource, APIEvent), its JSON
writer (links self/update/remove/patch, createTypes), steve `pkg/resources/common/formatter.go`
(links.view, metadata.state/relationships/fields), `pkg/summarycache` (relationship records),
`pkg/schema` and `pkg/attributes` (schema ids, pluralName, methods, attributes) and
`pkg/resources/counts` (the count object).
"""

from __future__ import annotations

import base64
import json

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from scaleagent.cluster.cluster import ClusterConfig, ClusterSet
from scaleagent.remotedialer.server import TunnelAgentEndpoints
from tests.test_cluster_tunnel import API, Body, Rancher

pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")

KEY = "stv-cluster-c-1"
PREFIX = "/k8s/clusters/c-1"
BASE = f"https://rancher.example{PREFIX}"
RANCHER_HEADERS = {
    "host": "rancher.example",
    "x-forwarded-proto": "https",
    "x-api-url-prefix": PREFIX,
    "impersonate-user": "u-b4qkhsnliz",
    "impersonate-group": "system:authenticated",
    "impersonate-extra-username": "admin",
    "impersonate-extra-principalid": "local://u-b4qkhsnliz",
    "accept": "application/json",
}
EXCLUDE = "exclude=metadata.managedFields"


@pytest.fixture
def clusters(reactor, tmp_path):
    return ClusterSet(reactor, ClusterConfig(state_dir=tmp_path / "state", save_interval=0))


class Steve:
    """Rancher's steve proxy for one cluster: plain HTTP through the stv-cluster session."""

    def __init__(self, reactor, rancher: Rancher) -> None:
        self.reactor = reactor
        self.rancher = rancher
        self.agent = Agent.usingEndpointFactory(reactor, TunnelAgentEndpoints(rancher.server, KEY))
        self.log: list[tuple[str, str, int]] = []

    async def call(self, method: str, path: str, body: dict | None = None, content_type: str = "") -> tuple:
        headers = Headers({k: [v] for k, v in RANCHER_HEADERS.items()})
        if content_type:
            headers.setRawHeaders("content-type", [content_type])
        data = json.dumps(body).encode() if body is not None else None
        response = await self.agent.request(
            method.encode(), f"http://127.0.0.1:6080{path}".encode(), headers, Body(data) if data else None
        )
        raw = await readBody(response)
        self.log.append((method, path, response.code))
        assert response.headers.getRawHeaders("content-type") == ["application/json"]
        return response.code, json.loads(raw)

    async def get(self, path: str) -> dict:
        code, body = await self.call("GET", path)
        assert code == 200, (path, body)
        return body


class Socket(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        assert not isBinary
        self.factory.events.append(json.loads(payload))
        waiting, self.factory.waiting = self.factory.waiting, []
        for d in waiting:
            d.callback(None)

    def onClose(self, wasClean, code, reason) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(RuntimeError(f"closed: {code} {reason}"))

    def send(self, message: dict) -> None:
        self.sendMessage(json.dumps(message).encode())


async def subscribe(reactor, rancher: Rancher):
    """The browser's /v1/subscribe socket, proxied as Rancher proxies upgrades (same path, headers)."""
    headers = {k: v for k, v in RANCHER_HEADERS.items() if k != "host"}
    factory = WebSocketClientFactory(
        "ws://rancher.example/v1/subscribe?sockId=1", headers=headers, reactor=reactor
    )
    factory.protocol = Socket
    factory.events, factory.waiting, factory.opened = [], [], defer.Deferred()
    await rancher.server.endpoint(KEY, "tcp", "127.0.0.1:6080").connect(factory)
    socket = await factory.opened
    return socket, factory


async def next_event(reactor, factory, predicate, timeout: float = 10.0) -> dict:
    """The first event matching `predicate` (bounded wait)."""
    deadline = reactor.seconds() + timeout
    while True:
        for event in factory.events:
            if predicate(event):
                factory.events.remove(event)
                return event
        remaining = deadline - reactor.seconds()
        assert remaining > 0, f"no matching event in {timeout}s; got {factory.events}"
        d = defer.Deferred()
        factory.waiting.append(d)
        d.addTimeout(remaining, reactor)
        try:
            await d
        except defer.TimeoutError:
            pass


async def wait_for(reactor, factory, condition, timeout: float = 10.0) -> None:
    """Until `condition()` holds for the events received so far (bounded wait)."""
    deadline = reactor.seconds() + timeout
    while not condition():
        remaining = deadline - reactor.seconds()
        assert remaining > 0, f"condition not met in {timeout}s; got {factory.events}"
        d = defer.Deferred()
        factory.waiting.append(d)
        d.addTimeout(remaining, reactor)
        try:
            await d
        except defer.TimeoutError:
            pass


def check_collection(body: dict, resource_type: str, url: str, *, create: bool) -> None:
    assert body["type"] == "collection"
    assert body["resourceType"] == resource_type
    assert body["links"] == {"self": url}
    assert body["actions"] == {}
    if create:
        assert body["createTypes"] == {resource_type: body["createTypes"][resource_type]}
    else:
        assert "createTypes" not in body
    assert isinstance(body["data"], list)


def check_object(obj: dict, schema_id: str, plural: str, kube_path: str) -> None:
    """One object as steve formats it."""
    ns, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
    assert obj["id"] == (f"{ns}/{name}" if ns else name)
    assert obj["type"] == schema_id
    self_link = f"{BASE}/v1/{plural}/{obj['id']}"
    assert obj["links"] == {
        "self": self_link,
        "update": self_link,
        "remove": self_link,
        "patch": self_link,
        "view": f"{BASE}{kube_path}",
    }
    state = obj["metadata"]["state"]
    assert set(state) == {"name", "error", "transitioning", "message"}
    assert isinstance(state["error"], bool) and isinstance(state["transitioning"], bool)
    assert isinstance(obj["metadata"]["relationships"], list)
    assert isinstance(obj["metadata"]["fields"], list)
    assert "managedFields" not in obj["metadata"]
    for condition in obj.get("status", {}).get("conditions", []):
        assert {"error", "transitioning", "lastUpdateTime"} <= set(condition)


@pytest_twisted.ensureDeferred
async def test_explorer_opens_a_cluster_its_nodes_its_pods_and_a_pod(reactor, clusters):
    cluster = clusters.cluster(3, "scale-00003")
    rancher = await Rancher(reactor).start()
    client = await rancher.connect(cluster, steve=True)
    socket = None
    try:
        steve = Steve(reactor, rancher)
        assert not cluster.materialized

        # -- open the cluster ------------------------------------------------------------------------
        schemas = await steve.get("/v1/schemas")
        check_collection(schemas, "schema", f"{BASE}/v1/schemas", create=False)
        by_id = {s["id"]: s for s in schemas["data"]}
        pod_schema = by_id["pod"]
        assert pod_schema["type"] == "schema"
        assert pod_schema["links"] == {"self": f"{BASE}/v1/schemas/pod", "collection": f"{BASE}/v1/pods"}
        assert pod_schema["pluralName"] == "pods"
        assert pod_schema["resourceMethods"] == ["GET", "DELETE", "PUT", "PATCH"]
        assert pod_schema["collectionMethods"] == ["GET", "POST"]
        attrs = pod_schema["attributes"]
        gvkr = (attrs["group"], attrs["version"], attrs["kind"], attrs["resource"])
        assert gvkr == ("", "v1", "Pod", "pods")
        assert attrs["namespaced"] is True and "list" in attrs["verbs"] and "watch" in attrs["verbs"]
        assert attrs["columns"][0] == {
            "name": "Name", "field": "$.metadata.fields[0]", "type": "string", "format": "name",
            "description": attrs["columns"][0]["description"], "priority": 0,
        }
        deployment = by_id["apps.deployment"]
        assert deployment["pluralName"] == "apps.deployments"
        assert deployment["links"]["collection"] == f"{BASE}/v1/apps.deployments"
        assert by_id["node"]["attributes"]["namespaced"] is False
        assert by_id["count"]["links"]["collection"] == f"{BASE}/v1/counts"
        for s in schemas["data"]:
            assert s["links"]["self"] == f"{BASE}/v1/schemas/{s['id']}"
        one = await steve.get("/v1/schemas/apps.deployment")
        assert one == deployment

        socket, events = await subscribe(reactor, rancher)

        counts = await steve.get("/v1/counts")
        check_collection(counts, "count", f"{BASE}/v1/counts", create=False)
        (count,) = counts["data"]
        assert (count["id"], count["type"]) == ("count", "count")
        assert count["links"] == {"self": f"{BASE}/v1/counts/count"}
        pods_total = len(cluster.store.list(cluster.store.kinds.preferred("", "pods")).items)
        assert count["counts"]["pod"]["summary"]["count"] == pods_total
        assert sum(n["count"] for n in count["counts"]["pod"]["namespaces"].values()) == pods_total
        assert count["counts"]["node"] == {"summary": {"count": 2}}  # cluster-scoped: no namespaces

        namespaces = await steve.get(f"/v1/namespaces?{EXCLUDE}")
        check_collection(namespaces, "namespace", f"{BASE}/v1/namespaces", create=True)
        assert namespaces["createTypes"] == {"namespace": f"{BASE}/v1/namespaces"}
        assert int(namespaces["revision"]) == cluster.store.resource_version
        assert namespaces["count"] == len(namespaces["data"]) >= 5
        for ns in namespaces["data"]:
            check_object(ns, "namespace", "namespaces", f"/api/v1/namespaces/{ns['id']}")
            assert ns["metadata"]["state"] == {"name": "active", "error": False, "transitioning": False,
                                                "message": ""}
        socket.send({"resourceType": "count"})
        socket.send({"resourceType": "namespace", "resourceVersion": namespaces["revision"]})
        for type_ in ("count", "namespace"):
            start = await next_event(reactor, events, lambda e, t=type_: e["name"] == "resource.start"
                                     and e["resourceType"] == t)
            assert start == {"name": "resource.start", "resourceType": type_}

        # -- the cluster dashboard ---------------------------------------------------------------------
        nodes = await steve.get(f"/v1/nodes?{EXCLUDE}")
        events_list = await steve.get(f"/v1/events?{EXCLUDE}")
        check_collection(events_list, "event", f"{BASE}/v1/events", create=True)
        for ev in events_list["data"]:
            check_object(ev, "event", "events",
                         f"/api/v1/namespaces/{ev['metadata']['namespace']}/events/{ev['metadata']['name']}")

        # -- its nodes ---------------------------------------------------------------------------------
        check_collection(nodes, "node", f"{BASE}/v1/nodes", create=True)
        assert [n["id"] for n in nodes["data"]] == ["scale-00003-node-0", "scale-00003-node-1"]
        for node in nodes["data"]:
            check_object(node, "node", "nodes", f"/api/v1/nodes/{node['id']}")
            assert node["metadata"]["state"] == {"name": "active", "error": False, "transitioning": False,
                                                  "message": "Resource is Ready"}
            assert node["metadata"]["fields"][0] == node["id"]
            assert node["metadata"]["fields"][1] == "Ready"
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
            assert (ready["error"], ready["transitioning"]) == (False, False)
            pressure = [c for c in node["status"]["conditions"] if c["type"] == "MemoryPressure"][0]
            assert pressure["status"] == "False" and pressure["error"] is False
        all_pods = await steve.get(f"/v1/pods?{EXCLUDE}")
        assert all_pods["count"] == pods_total
        socket.send({"resourceType": "node", "resourceVersion": nodes["revision"]})
        await next_event(reactor, events, lambda e: e == {"name": "resource.start", "resourceType": "node"})

        # -- a node ------------------------------------------------------------------------------------
        name = "scale-00003-node-1"
        node = await steve.get(f"/v1/nodes/{name}?{EXCLUDE}")
        assert node == [n for n in nodes["data"] if n["id"] == name][0]
        running = await steve.get(f"/v1/pods?{EXCLUDE}&filter=spec.nodeName={name}")
        on_node = [p for p in all_pods["data"] if p["spec"].get("nodeName") == name]
        assert running["count"] == len(on_node) > 0
        assert [p["id"] for p in running["data"]] == [p["id"] for p in on_node]

        # -- its pods ----------------------------------------------------------------------------------
        pods = await steve.get(f"/v1/pods?{EXCLUDE}")
        check_collection(pods, "pod", f"{BASE}/v1/pods", create=True)
        for pod in pods["data"]:
            ns, pname = pod["metadata"]["namespace"], pod["metadata"]["name"]
            check_object(pod, "pod", "pods", f"/api/v1/namespaces/{ns}/pods/{pname}")
            assert pod["metadata"]["state"] == {"name": "running", "error": False, "transitioning": False,
                                                 "message": ""}
            assert pod["metadata"]["fields"][:3] == [pname, pod["metadata"]["fields"][1], "Running"]
        socket.send({"resourceType": "pod", "resourceVersion": pods["revision"]})
        await next_event(reactor, events, lambda e: e == {"name": "resource.start", "resourceType": "pod"})

        # -- a pod -------------------------------------------------------------------------------------
        web = [p for p in pods["data"] if p["metadata"]["namespace"] == "app-1"][0]
        pod = await steve.get(f"/v1/pods/{web['id']}?{EXCLUDE}")
        assert pod == web
        rels = pod["metadata"]["relationships"]
        owner = [r for r in rels if r.get("rel") == "owner"][0]
        replicaset = pod["metadata"]["ownerReferences"][0]["name"]
        assert owner == {"fromId": f"app-1/{replicaset}", "fromType": "apps.replicaset", "rel": "owner",
                         "state": "active", "message": owner["message"]}
        assert owner["message"].startswith("ReplicaSet is available. Replicas:")
        uses = [r for r in rels if r.get("rel") == "uses"]
        assert {"toId": "app-1/default", "toType": "serviceaccount", "rel": "uses", "state": "active",
                "message": "Resource is current"} in uses
        pod_events = await steve.get(f"/v1/events?{EXCLUDE}")
        assert pod_events["revision"]

        # the replica set points back at its pods (steve's reverse owner relationship)
        rs = await steve.get(f"/v1/apps.replicasets/app-1/{replicaset}")
        back = [r for r in rs["metadata"]["relationships"] if r.get("rel") == "owner" and "toId" in r]
        assert web["id"] in [r["toId"] for r in back]
        creates = [r for r in rs["metadata"]["relationships"] if r.get("rel") == "creates"][0]
        assert creates["toType"] == "pod" and creates["toNamespace"] == "app-1"
        assert "app=web" in creates["selector"]

        expected = [
            ("GET", "/v1/schemas"), ("GET", "/v1/schemas/apps.deployment"), ("GET", "/v1/counts"),
            ("GET", f"/v1/namespaces?{EXCLUDE}"), ("GET", f"/v1/nodes?{EXCLUDE}"),
            ("GET", f"/v1/events?{EXCLUDE}"), ("GET", f"/v1/pods?{EXCLUDE}"),
        ]
        assert [(m, p) for m, p, _ in steve.log][: len(expected)] == expected
        assert all(code == 200 for _, _, code in steve.log)
    finally:
        if socket is not None:
            socket.dropConnection(abort=True)
        await rancher.stop(client)


@pytest_twisted.ensureDeferred
async def test_subscribe_delivers_a_change_made_through_the_apiserver(reactor, clusters):
    """A label patched through the main tunnel's apiserver reaches the browser's socket."""
    cluster = clusters.cluster(4, "scale-00004")
    rancher = await Rancher(reactor).start()
    main = await rancher.connect(cluster)
    stv = await rancher.connect(cluster, steve=True)
    socket = None
    try:
        steve = Steve(reactor, rancher)
        pods = await steve.get(f"/v1/pods/app-1?{EXCLUDE}")
        assert pods["data"] and all(p["metadata"]["namespace"] == "app-1" for p in pods["data"])
        socket, events = await subscribe(reactor, rancher)
        socket.send({"resourceType": "pod", "namespace": "app-1", "resourceVersion": pods["revision"]})
        socket.send({"resourceType": "count"})
        for type_ in ("pod", "count"):
            started_event = {"name": "resource.start", "resourceType": type_}
            await next_event(reactor, events, lambda e, want=started_event: e == want)

        params = rancher.params["c-1"]
        api = rancher.agent(base64.b64decode(params["cluster"]["caCert"]))
        target = pods["data"][0]
        headers = Headers({
            "authorization": [f"Bearer {params['cluster']['token']}"],
            "content-type": ["application/merge-patch+json"],
        })
        path = f"/api/v1/namespaces/app-1/pods/{target['metadata']['name']}"
        patch = json.dumps({"metadata": {"labels": {"browsed": "yes"}}}).encode()
        response = await api.request(b"PATCH", (API + path).encode(), headers, Body(patch))
        assert response.code == 200, await readBody(response)
        patched = json.loads(await readBody(response))
        change = await next_event(reactor, events, lambda e: e["name"] == "resource.change")
        assert change["resourceType"] == "pod"
        assert change["revision"] == patched["metadata"]["resourceVersion"]
        assert change["data"]["id"] == target["id"]
        assert change["data"]["metadata"]["labels"]["browsed"] == "yes"
        # (autobahn's client puts the port into Host; a browser would not)
        assert change["data"]["links"]["self"].endswith(f"{PREFIX}/v1/pods/{target['id']}")
        assert change["data"]["metadata"]["state"]["name"] == "running"

        # a watch from the list's (older) revision replays the change, after its resource.start
        replay = {"resourceType": "pod", "namespace": "app-1", "selector": "app=web",
                  "resourceVersion": pods["revision"]}
        socket.send(replay)
        await wait_for(reactor, events, lambda: len([e for e in events.events if e.get("selector")]) >= 2)
        first, second = [e for e in events.events if e.get("selector")][:2]
        assert first == {"name": "resource.start", "resourceType": "pod", "selector": "app=web"}
        assert (second["name"], second["selector"], second["data"]["id"]) == (
            "resource.change", "app=web", target["id"])
        socket.send({**replay, "stop": True})
        await next_event(reactor, events, lambda e: e["name"] == "resource.stop" and e.get("selector"))
        events.events[:] = [e for e in events.events if not e.get("selector")]

        # a create through steve itself goes to the same store and comes back as resource.create
        code, created = await steve.call(
            "POST", "/v1/pods/app-1",
            {"type": "pod", "metadata": {"name": "made-by-ui", "namespace": "app-1"},
             "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
            content_type="application/json",
        )
        assert code == 201, created
        assert created["id"] == "app-1/made-by-ui" and created["type"] == "pod"
        create = await next_event(reactor, events, lambda e: e["name"] == "resource.create")
        assert create["data"]["id"] == "app-1/made-by-ui"
        assert cluster.store.lookup(cluster.store.kinds.preferred("", "pods"), "app-1", "made-by-ui")
        counted = await next_event(reactor, events, lambda e: e["resourceType"] == "count"
                                   and e["name"] == "resource.change")
        assert counted["data"]["counts"]["pod"]["summary"]["count"] == len(
            cluster.store.list(cluster.store.kinds.preferred("", "pods")).items)
        # newer dashboards ask for debounced "something changed" notices instead of objects
        socket.send({"resourceType": "configmap", "mode": "resource.changes", "debounceMs": 50})
        await next_event(reactor, events, lambda e: e["name"] == "resource.start"
                         and e["resourceType"] == "configmap")
        configmaps = cluster.store.kinds.preferred("", "configmaps")
        for n in range(3):  # three writes in one reactor turn (as a controller would make them)
            cluster.store.create(configmaps, {"metadata": {"name": f"cm-{n}"}}, namespace="app-1")
        notice = await next_event(reactor, events, lambda e: e["name"] == "resource.changes")
        assert notice["resourceType"] == "configmap" and notice["data"]["type"] == "configmap"
        assert int(notice["data"]["revision"]) == cluster.store.resource_version
        assert not [e for e in events.events if e["name"] == "resource.changes"]  # three writes, one notice

        code, gone = await steve.call("DELETE", "/v1/pods/app-1/made-by-ui")
        assert code == 200 and gone["id"] == "app-1/made-by-ui"
        remove = await next_event(reactor, events, lambda e: e["name"] == "resource.remove")
        assert remove["data"]["id"] == "app-1/made-by-ui"
        socket.send({"resourceType": "pod", "namespace": "app-1", "resourceVersion": pods["revision"],
                     "stop": True})
        stop = await next_event(reactor, events, lambda e: e["name"] == "resource.stop")
        assert stop == {"name": "resource.stop", "resourceType": "pod", "namespace": "app-1"}
        # a browser that goes away leaves no watch behind (count and configmap watches were open)
        pods_rt = cluster.store.kinds.preferred("", "pods")
        assert cluster.store.watching(pods_rt)  # the count subscription still watches pods
        socket.dropConnection(abort=True)
        socket = None
        for _ in range(100):
            if not cluster.store.watching(pods_rt):
                break
            await deferLater(reactor, 0.05)
        assert not cluster.store.watching(pods_rt)
        assert not cluster.store.watching(cluster.store.kinds.preferred("", "configmaps"))
    finally:
        if socket is not None:
            socket.dropConnection(abort=True)
        await rancher.stop(main, stv)
