"""The resource tree over real HTTP/1.1 bytes (HTTPChannel on a StringTransport, time from task.Clock)."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from scaleagent.apiserver.auth import TokenAuthenticator
from scaleagent.apiserver.discovery import OPENAPI_V2_CONTENT_TYPE
from scaleagent.apiserver.request import ApiContext
from scaleagent.apiserver.resource import OBSERVE, make_site
from scaleagent.apiserver.store import INITIAL_EVENTS_END, Seed, Store
from scaleagent.apiserver.tables import TABLE_CONTENT_TYPE

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


class Response:
    def __init__(self, raw: bytes):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.code = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.headers.get("transfer-encoding") == "chunked":
            body, self.complete = b"", False
            while rest:
                size_text, _, rest = rest.partition(b"\r\n")
                size = int(size_text, 16)
                if size == 0:
                    self.complete = True
                    break
                body, rest = body + rest[:size], rest[size + 2 :]
            self.body = body
        else:
            self.body, self.complete = rest, True

    def json(self):
        return json.loads(self.body)

    def events(self):
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


class Client:
    def __init__(self, api: ApiContext, token: str | None):
        self.site = make_site(api)
        self.token = token

    def open(self, method, path, accept="application/json", body=b"", headers=()):
        proto = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        proto.makeConnection(transport)
        lines = [f"{method} {path} HTTP/1.1", "Host: 10.43.0.1", f"Accept: {accept}"]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        lines += list(headers)
        lines.append(f"Content-Length: {len(body)}")
        proto.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return proto, transport

    def get(self, path, **kw) -> Response:
        _, transport = self.open("GET", path, **kw)
        return Response(transport.value())


def pod(name, ns="default", labels=None):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": "Running"},
    }


@pytest.fixture
def api():
    seed = Seed.from_objects(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "default"},
                "status": {"phase": "Active"},
            },
            pod("web-1", labels={"app": "web"}),
            pod("web-2", labels={"app": "web"}),
            pod("db-1", labels={"app": "db"}),
        ],
        now=1000.0,
    )
    clock = Clock()
    clock.advance(1000.0 + 300)
    return ApiContext(Store(seed), clock, bookmark_interval=60.0)


@pytest.fixture
def client(api):
    return Client(api, api.issue_admin_token())


PODS = "/api/v1/namespaces/default/pods"


def test_public_endpoints_need_no_token(api):
    anon = Client(api, None)
    version = anon.get("/version/")
    assert (
        version.code == 200 and version.json()["gitVersion"] == "v1.32.4" and version.json()["minor"] == "32"
    )
    ready = anon.get("/readyz")
    assert (ready.code, ready.body, ready.headers["content-type"]) == (
        200,
        b"ok",
        "text/plain; charset=utf-8",
    )
    verbose = anon.get("/livez?verbose=")
    assert b"[+]ping ok" in verbose.body and verbose.body.endswith(b"livez check passed\n")
    assert anon.get("/readyz?verbose&exclude=etcd").body.count(b"[+]etcd excluded: ok") == 1
    assert anon.get("/healthz/ping").body == b"ok"
    assert anon.get("/healthz/nonsense").code == 404


def test_everything_else_needs_a_token_this_cluster_issued(api):
    for token in (None, "not-ours"):
        response = Client(api, token).get("/api/v1/pods")
        assert response.code == 401
        assert response.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }


def test_anonymous_cluster_accepts_anyone():
    api = ApiContext(Store(), Clock(), auth=TokenAuthenticator(anonymous=True))
    assert Client(api, "whatever").get("/api/v1/namespaces").code == 200


def test_discovery_documents(client):
    apis = client.get("/apis").json()
    groups = {g["name"]: g for g in apis["groups"]}
    assert apis["kind"] == "APIGroupList" and "" not in groups
    assert groups["autoscaling"]["preferredVersion"] == {"groupVersion": "autoscaling/v2", "version": "v2"}
    assert client.get("/api").json()["versions"] == ["v1"]
    core = client.get("/api/v1").json()
    byname = {r["name"]: r for r in core["resources"]}
    assert len([r for r in core["resources"] if "/" not in r["name"]]) == 17
    assert byname["pods"]["shortNames"] == ["po"] and byname["pods"]["categories"] == ["all"]
    assert byname["namespaces"]["namespaced"] is False
    assert byname["serviceaccounts/token"]["group"] == "authentication.k8s.io"
    apps = {r["name"]: r for r in client.get("/apis/apps/v1").json()["resources"]}
    assert (
        apps["deployments/scale"]["kind"] == "Scale" and apps["deployments/scale"]["group"] == "autoscaling"
    )
    assert client.get("/apis/apps").json()["kind"] == "APIGroup"
    assert client.get("/apis/nope/v1").code == 404


def test_openapi(client):
    v2 = client.get("/openapi/v2", accept="application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert v2.headers["content-type"] == OPENAPI_V2_CONTENT_TYPE
    assert v2.body.startswith(b"\x0a\x032.0\x12") and b"v1.32.4" in v2.body
    root = client.get("/openapi/v3").json()["paths"]
    url = root["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    doc = client.get(url).json()
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])


def test_get_and_not_found(client):
    obj = client.get(f"{PODS}/web-1").json()
    assert obj["kind"] == "Pod" and obj["metadata"]["name"] == "web-1"
    missing = client.get(f"{PODS}/nope")
    assert missing.code == 404 and missing.json()["message"] == 'pods "nope" not found'
    missing = client.get("/apis/apps/v1/namespaces/default/deployments/web")
    assert missing.json()["message"] == 'deployments.apps "web" not found'
    assert (
        client.get("/api/v1/nonsense").json()["message"] == "the server could not find the requested resource"
    )
    assert client.get(f"{PODS}/web-1/status").json()["metadata"]["name"] == "web-1"


def test_list_json_shape_paging_and_selectors(client, api):
    page = client.get(f"{PODS}?limit=2").json()
    assert page["kind"] == "PodList" and page["apiVersion"] == "v1"
    assert [p["metadata"]["name"] for p in page["items"]] == ["db-1", "web-1"]
    assert page["metadata"]["remainingItemCount"] == 1
    rest = client.get(f"{PODS}?limit=2&continue={page['metadata']['continue']}").json()
    assert [p["metadata"]["name"] for p in rest["items"]] == ["web-2"] and "continue" not in rest["metadata"]
    web = client.get("/api/v1/pods?labelSelector=app%3Dweb").json()
    assert [p["metadata"]["name"] for p in web["items"]] == ["web-1", "web-2"]
    assert client.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-9").json()["items"] == []
    bad = client.get("/api/v1/pods?fieldSelector=spec.bogus%3Dx")
    assert (bad.code, bad.json()["reason"]) == (400, "BadRequest")
    assert page["metadata"]["resourceVersion"] == str(api.store.resource_version)


def test_table_list_get_and_include_object(client):
    table = client.get(f"{PODS}?limit=1", accept=TABLE_ACCEPT)
    assert table.headers["content-type"] == TABLE_CONTENT_TYPE
    doc = table.json()
    assert [c["name"] for c in doc["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert doc["rows"][0]["cells"][:5] == ["db-1", "0/1", "Running", "0", "5m"]
    assert doc["rows"][0]["object"]["kind"] == "PartialObjectMetadata" and doc["metadata"]["continue"]
    full = client.get(f"{PODS}/web-1?includeObject=Object", accept=TABLE_ACCEPT).json()
    assert full["rows"][0]["object"]["kind"] == "Pod"
    bare = client.get(f"{PODS}?includeObject=None", accept=TABLE_ACCEPT).json()
    assert all("object" not in row for row in bare["rows"])
    partial = client.get(
        PODS, accept="application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    ).json()
    assert partial["kind"] == "PartialObjectMetadataList" and "spec" not in partial["items"][0]


def test_watch_streams_chunked_events_until_timeout(client, api):
    rv = api.store.resource_version
    proto, transport = client.open("GET", f"{PODS}?watch=true&resourceVersion={rv}&timeoutSeconds=30")
    assert Response(transport.value()).headers["transfer-encoding"] == "chunked"
    api.store.create(api.kinds.by_resource("", "v1", "pods"), pod("web-3", labels={"app": "web"}))
    api.store.delete(api.kinds.by_resource("", "v1", "pods"), "default", "db-1")
    response = Response(transport.value())
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in response.events()] == [
        ("ADDED", "web-3"),
        ("DELETED", "db-1"),
    ]
    assert response.events()[0]["object"]["kind"] == "Pod" and not response.complete
    api.clock.advance(30)
    assert Response(transport.value()).complete and api.store.watcher_count() == 0


def test_watch_too_old_is_an_error_event_in_a_200_stream(client, api):
    api.store._compacted = api.store.resource_version  # pretend history was trimmed
    _, transport = client.open("GET", f"{PODS}?watch=1&resourceVersion=1")
    response = Response(transport.value())
    assert response.code == 200 and response.complete
    [event] = response.events()
    assert (
        event["type"] == "ERROR" and event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    )


def test_watch_list_initial_events_and_bookmarks(client, api):
    path = (
        f"{PODS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&allowWatchBookmarks=true&timeoutSeconds=300"
    )
    _, transport = client.open("GET", path)
    events = Response(transport.value()).events()
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "ADDED", "BOOKMARK"]
    assert events[-1]["object"]["metadata"]["annotations"] == {INITIAL_EVENTS_END: "true"}
    api.clock.advance(61)
    events = Response(transport.value()).events()
    assert events[-1]["type"] == "BOOKMARK" and "annotations" not in events[-1]["object"]["metadata"]
    assert events[-1]["object"]["kind"] == "Pod"


def test_watch_list_without_bookmarks_is_rejected_with_422(client):
    response = client.get(f"{PODS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan")
    assert (response.code, response.json()["reason"]) == (422, "Invalid")


def test_watch_with_table_accept_sends_one_row_tables(client, api):
    rv = api.store.resource_version
    _, transport = client.open("GET", f"{PODS}?watch=true&resourceVersion={rv}", accept=TABLE_ACCEPT)
    pods = api.kinds.by_resource("", "v1", "pods")
    api.store.create(pods, pod("t1"))
    api.store.create(pods, pod("t2"))
    first, second = Response(transport.value()).events()
    assert first["object"]["kind"] == "Table" and first["object"]["rows"][0]["cells"][0] == "t1"
    assert first["object"]["columnDefinitions"] and second["object"]["columnDefinitions"] == []


def test_client_going_away_releases_the_watch(client, api):
    proto, _ = client.open("GET", f"{PODS}?watch=true")
    assert api.store.watcher_count() == 1
    proto.connectionLost(Failure(ConnectionDone()))
    assert api.store.watcher_count() == 0
    api.clock.advance(3600)  # no timer left behind to fire on a dead request


def test_writes_are_routed_to_the_writes_module(client, api):
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}).encode()
    _, transport = client.open(
        "POST", "/api/v1/namespaces/default/configmaps", body=body, headers=["Content-Type: application/json"]
    )
    assert Response(transport.value()).code == 201
    assert api.store.lookup(api.kinds.by_resource("", "v1", "configmaps"), "default", "cm") is not None


AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def test_aggregated_discovery_when_asked_for(client):
    core = client.get("/api", accept=AGGREGATED_ACCEPT)
    assert core.headers["content-type"] == AGGREGATED_ACCEPT.split(",")[0]
    [item] = core.json()["items"]
    pods = next(r for r in item["versions"][0]["resources"] if r["resource"] == "pods")
    assert pods["scope"] == "Namespaced" and pods["shortNames"] == ["po"]
    assert pods["responseKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    groups = client.get("/apis", accept=AGGREGATED_ACCEPT).json()
    apps = next(i for i in groups["items"] if i["metadata"]["name"] == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    scale = next(s for s in deploy["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    autoscaling = next(i for i in groups["items"] if i["metadata"]["name"] == "autoscaling")
    assert [v["version"] for v in autoscaling["versions"]] == ["v2", "v1"]
    old = client.get("/apis", accept=AGGREGATED_ACCEPT.split(",")[1])
    assert old.json()["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    assert client.get("/apis").json()["kind"] == "APIGroupList"  # plain JSON: legacy discovery


def test_a_watch_that_cannot_keep_up_is_closed(client, api):
    from scaleagent.apiserver import resource

    proto, transport = client.open("GET", f"{PODS}?watch=true&resourceVersion={api.store.resource_version}")
    pods = api.kinds.by_resource("", "v1", "pods")
    transport.producer.pauseProducing()  # what a full socket buffer does: the client is not reading
    big = "x" * 65536
    for i in range(resource.MAX_PAUSED_BYTES // len(big) + 2):
        meta = {"name": f"big-{i}", "annotations": {"a": big}}
        api.store.create(pods, dict(pod(f"big-{i}"), metadata=meta), namespace="default")
        if not api.store.watching(pods):
            break
    assert not api.store.watching(pods)
    assert Response(transport.value()).complete  # ended cleanly: the client re-watches from its last RV


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pods?limit=abc",
        "/api/v1/pods?limit=-5",
        "/api/v1/pods?continue=%00%01",
        "/api/v1/pods?resourceVersion=-1",
        "/api/v1/pods?watch=true&timeoutSeconds=x",
        "/api/v1/pods?watch=true&resourceVersion=abc",
        "/api/v1/pods?labelSelector=%28%28%28",
        "/api/v1/pods?fieldSelector=%3D%3D%3D",
        "/api/v1/namespaces/default/pods/web-1/nonsense",
        "/api/v1/namespaces/default/pods/web-1/log",
        "/api/v1/namespaces//pods",
        "/api/v2/pods",
        "/apis/apps",
        "/apis/apps/v1/namespaces/default",
        "/api/v1/namespaces/default/bindings",
        "/openapi/v3/apis/nope/v1",
        "/%ff%fe/..",
        "/api/v1/pods?sendInitialEvents=true",
    ],
)
def test_odd_requests_get_a_status_never_a_crash(client, path):
    response = client.get(path)
    assert response.code < 500, response.body
    if response.code >= 400:
        assert response.json()["kind"] == "Status" and response.json()["code"] == response.code


def test_every_request_is_reported_to_the_observer_with_verb_resource_and_code(api, client):
    seen = []
    api.extras[OBSERVE] = lambda verb, resource, code, seconds: seen.append((verb, resource, code, seconds))
    client.get("/api/v1/namespaces/default/pods")
    client.get("/api/v1/namespaces/default/pods/nope")
    client.get("/api/v1/nodes?watch=true")
    client.get("/version")
    client.open("DELETE", "/api/v1/namespaces/default/pods/db-1")
    client.open("POST", "/apis/apps/v1/namespaces/default/deployments", body=b"{not json")
    assert [entry[:3] for entry in seen] == [
        ("list", "pods", 200),
        ("get", "pods", 404),
        ("watch", "nodes", 200),
        ("get", "", 200),
        ("delete", "pods", 200),
        ("create", "deployments", 400),
    ]
    assert all(seconds >= 0 for *_, seconds in seen)


def test_a_failing_observer_does_not_fail_the_request(api, client):
    def broken(*args):
        raise RuntimeError("observer bug")

    api.extras[OBSERVE] = broken
    assert client.get("/api/v1/namespaces/default/pods").code == 200


def test_a_chunked_request_body_is_read_in_memory_not_spooled_to_disk(client, api, monkeypatch):
    """Clients that stream bodies send them chunked; Twisted would put each in a temporary file."""
    import tempfile

    def no_disk(*args, **kwargs):
        raise AssertionError("a request body was spooled to disk")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    body = json.dumps(pod("chunked-1")).encode()
    proto = client.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    proto.makeConnection(transport)
    head = (
        f"POST {PODS} HTTP/1.1\r\nHost: 10.43.0.1\r\nAccept: application/json\r\n"
        f"Authorization: Bearer {client.token}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    proto.dataReceived(head + chunks + b"0\r\n\r\n")
    response = Response(transport.value())
    assert response.code == 201, response.body
    assert response.json()["metadata"]["name"] == "chunked-1"
    pods = api.store.kinds.by_resource("", "v1", "pods")
    assert api.store.get(pods, "default", "chunked-1")["spec"]["nodeName"] == "node-1"


def test_post_bodies_are_never_parsed_as_html_forms(client, monkeypatch):
    """The apiserver reads its bodies itself: Twisted's form parsing (and its Content-Type parse with
    the email package) never runs; a form-encoded body is just one it refuses (415)."""
    from twisted.web import http

    def no_form_parsing(line):
        raise AssertionError("Content-Type parsed for form submission")

    monkeypatch.setattr(http, "_parseContentType", no_form_parsing)
    proto, transport = client.open(
        "POST", PODS, body=b"a=1&b=2", headers=["Content-Type: application/x-www-form-urlencoded"]
    )
    assert Response(transport.value()).code == 415
    _, transport = client.open("POST", PODS, body=json.dumps(pod("form-less")).encode(),
                               headers=["Content-Type: application/json"])
    assert Response(transport.value()).code == 201
