"""steve's /v1 served in memory by a cluster's steve-tunnel factory: list parameters, writes going to
the apiserver's store, counts, schemas shared between clusters, error shapes."""

from __future__ import annotations

import json

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from scaleagent.cluster.cluster import ClusterConfig, ClusterSet
from scaleagent.steve.schemas import schemas_for

HEADERS = {"X-API-URL-Prefix": "/k8s/clusters/c-9", "Impersonate-User": "u-1", "Host": "rancher.test"}
BASE = "http://rancher.test/k8s/clusters/c-9"


@pytest.fixture(scope="module")
def shared():
    return ClusterSet(task.Clock(), ClusterConfig(save_interval=0, lease_period=0, status_period=0))


def call(cluster, method: str, path: str, body=None, content_type: str = "application/json"):
    factory = cluster.steve_resolver("tcp", "127.0.0.1:6080")
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    if data:
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
    protocol.dataReceived(head.encode() + b"\r\n" + data)
    raw = transport.value()
    status_line, _, rest = raw.partition(b"\r\n")
    _headers, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


def ids(body: dict) -> list[str]:
    return [item["id"] for item in body["data"]]


def test_filter_sort_and_pages(shared):
    c = shared.cluster(1, "scale-00001")
    code, everything = call(c, "GET", "/v1/pods")
    assert code == 200 and everything["count"] == len(everything["data"]) > 4
    _, web = call(c, "GET", "/v1/pods?filter=metadata.labels.app=web")
    assert web["count"] == len(web["data"]) > 0
    assert all(p["metadata"]["labels"]["app"] == "web" for p in web["data"])
    _, not_web = call(c, "GET", "/v1/pods?filter=metadata.labels.app!=web")
    assert web["count"] + not_web["count"] == everything["count"]
    # substring by default, exact in single quotes; alternatives ORed, repeated filters ANDed
    _, sub = call(c, "GET", "/v1/pods?filter=metadata.name=web-")
    assert sub["count"] == web["count"]
    _, exact = call(c, "GET", "/v1/pods?filter=metadata.name='web-'")
    assert exact["data"] == [] and "count" not in exact  # zero is left out (omitempty)
    first = web["data"][0]["metadata"]["name"]
    _, either = call(c, "GET", f"/v1/pods?filter=metadata.name='{first}',metadata.namespace=kube-system")
    system = {i for i in ids(everything) if i.startswith("kube-system/")}
    assert set(ids(either)) == {web["data"][0]["id"]} | system
    _, both = call(c, "GET", f"/v1/pods?filter=metadata.name='{first}'&filter=metadata.namespace=kube-system")
    assert both["data"] == []
    # array search: any container image matches
    _, nginx = call(c, "GET", "/v1/pods?filter=spec.containers.image=nginx")
    assert nginx["count"] == web["count"]
    _, by_name_desc = call(c, "GET", "/v1/pods?sort=-metadata.name")
    names = [p["metadata"]["name"] for p in by_name_desc["data"]]
    assert names == sorted(names, reverse=True)
    _, by_ns_then_name = call(c, "GET", "/v1/pods?sort=metadata.namespace,-metadata.name")
    keys = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in by_ns_then_name["data"]]
    assert keys == sorted(keys, key=lambda k: (k[0], [-ord(ch) for ch in k[1]]))
    _, page1 = call(c, "GET", "/v1/pods?pagesize=3&sort=metadata.name")
    _, page2 = call(c, "GET", "/v1/pods?pagesize=3&page=2&sort=metadata.name")
    _, beyond = call(c, "GET", "/v1/pods?pagesize=3&page=999")
    total = everything["count"]
    assert page1["pages"] == page2["pages"] == -(-total // 3) and page1["count"] == total
    assert len(page1["data"]) == 3 and not set(ids(page1)) & set(ids(page2))
    assert ids(page1) + ids(page2) == sorted(ids(everything), key=lambda i: i.split("/")[1])[:6]
    assert beyond["data"] == [] and beyond["count"] == total


def test_limit_continue_label_selector_and_namespace_scopes(shared):
    c = shared.cluster(2, "scale-00002")
    _, everything = call(c, "GET", "/v1/pods")
    _, chunk = call(c, "GET", "/v1/pods?limit=2")
    assert len(chunk["data"]) == 2 and chunk["continue"]
    assert chunk["pagination"] == {"first": f"{BASE}/v1/pods", "partial": True,
                                   "next": f"{BASE}/v1/pods?continue={chunk['continue']}&limit=2"}
    seen = ids(chunk)
    token = chunk["continue"]
    for _ in range(100):
        _, more = call(c, "GET", f"/v1/pods?limit=2&continue={token}")
        seen += ids(more)
        assert more["pagination"]["partial"] is True
        token = more.get("continue", "")
        if not token:
            break
    assert seen == ids(everything)
    _, labelled = call(c, "GET", "/v1/pods?labelSelector=app%3Dweb")
    assert labelled["count"] > 0 and all(p["metadata"]["labels"]["app"] == "web" for p in labelled["data"])
    _, in_ns = call(c, "GET", "/v1/pods/kube-system")
    assert in_ns["count"] > 0 and all(i.startswith("kube-system/") for i in ids(in_ns))
    assert in_ns["links"]["self"] == f"{BASE}/v1/pods/kube-system"


def test_projectsornamespaces_by_namespace_and_by_project_label(shared):
    c = shared.cluster(3, "scale-00003")
    code, _ = call(c, "PATCH", "/v1/namespaces/app-1",
                   {"metadata": {"labels": {"field.cattle.io/projectId": "p-abcde"}}},
                   content_type="application/merge-patch+json")
    assert code == 200
    _, everything = call(c, "GET", "/v1/pods")
    _, project = call(c, "GET", "/v1/pods?projectsornamespaces=p-abcde")
    assert project["count"] > 0 and all(i.startswith("app-1/") for i in ids(project))
    _, mixed = call(c, "GET", "/v1/pods?projectsornamespaces=p-abcde,kube-system")
    assert {i.split("/")[0] for i in ids(mixed)} == {"app-1", "kube-system"}
    _, negated = call(c, "GET", "/v1/pods?projectsornamespaces!=p-abcde")
    assert negated["count"] == everything["count"] - project["count"]
    _, namespaces = call(c, "GET", "/v1/namespaces?projectsornamespaces=p-abcde")
    assert ids(namespaces) == ["app-1"]


def test_writes_reach_the_apiserver_store_and_come_back_formatted(shared):
    c = shared.cluster(4, "scale-00004")
    configmaps = c.store.kinds.preferred("", "configmaps")
    code, created = call(c, "POST", "/v1/configmaps",
                         {"type": "configmap", "metadata": {"name": "ui", "namespace": "default"},
                          "data": {"a": "1"}})
    assert code == 201 and created["id"] == "default/ui" and created["type"] == "configmap"
    assert created["links"]["self"] == f"{BASE}/v1/configmaps/default/ui"
    stored = c.store.get(configmaps, "default", "ui")
    assert stored["data"] == {"a": "1"} and "state" not in stored["metadata"]
    # PUT what the UI got back (envelope and computed metadata are stripped before storing)
    created["data"] = {"a": "2"}
    code, updated = call(c, "PUT", "/v1/configmaps/default/ui", created)
    assert code == 200 and updated["data"] == {"a": "2"}
    stored = c.store.get(configmaps, "default", "ui")
    assert "relationships" not in stored["metadata"] and "id" not in stored and "links" not in stored
    code, stale = call(c, "PUT", "/v1/configmaps/default/ui", created)  # old resourceVersion
    assert code == 409 and stale["type"] == "error" and stale["code"] == "Conflict"
    code, patched = call(c, "PATCH", "/v1/configmaps/default/ui", {"data": {"b": "3"}},
                         content_type="application/merge-patch+json")
    assert code == 200 and patched["data"] == {"a": "2", "b": "3"}
    # a Secret's own `type` travels as `_type` both ways
    code, secret = call(c, "POST", "/v1/secrets/default",
                        {"type": "secret", "_type": "kubernetes.io/tls",
                         "metadata": {"name": "tls"}, "data": {"tls.crt": "", "tls.key": ""}})
    assert code == 201 and secret["type"] == "secret" and secret["_type"] == "kubernetes.io/tls"
    stored_secret = c.store.get(c.store.kinds.preferred("", "secrets"), "default", "tls")
    assert stored_secret["type"] == "kubernetes.io/tls"
    code, gone = call(c, "DELETE", "/v1/configmaps/default/ui")
    assert code == 200 and gone["id"] == "default/ui"
    assert c.store.lookup(configmaps, "default", "ui") is None


def test_errors_and_method_checks(shared):
    c = shared.cluster(5, "scale-00005")
    code, body = call(c, "GET", "/v1/pods/default/missing")
    assert code == 404
    assert body == {"type": "error", "links": {}, "status": 404, "code": "NotFound",
                    "message": 'pods "missing" not found'}
    assert call(c, "GET", "/v1/no.such.things")[0] == 404
    assert call(c, "GET", "/v1/schemas/nothing")[1]["message"] == "no such schema"
    code, body = call(c, "POST", "/v1/schemas", {})
    assert code == 405 and body["code"] == "MethodNotAllow"
    code, body = call(c, "GET", "/v1/pods?pagesize=x")
    assert code == 400 and body["type"] == "error"
    code, body = call(c, "GET", "/v1/pods?filter=nonsense")
    assert code == 400
    code, body = call(c, "POST", "/v1/configmaps/default", b"{not json")
    assert code == 422
    code, body = call(c, "GET", "/v1/subscribe")  # not a WebSocket upgrade
    assert code == 400 and body["type"] == "error"


def test_counts_states_and_schemas_shared_between_clusters(shared):
    a, b = shared.cluster(6, "scale-00006"), shared.cluster(7, "scale-00007")
    _, counts = call(a, "GET", "/v1/counts/count")
    pods = a.store.list(a.store.kinds.preferred("", "pods")).items
    assert counts["counts"]["pod"]["summary"] == {"count": len(pods)}
    pod = dict(pods[0].obj)
    pod["status"] = {**pod["status"], "conditions": [{"type": "Ready", "status": "False"}]}
    a.store.put(a.store.kinds.preferred("", "pods"), pod)
    _, counts = call(a, "GET", "/v1/counts/count")
    summary = counts["counts"]["pod"]["summary"]
    assert summary == {"count": len(pods), "transitioning": 1, "states": {"in-progress": 1}}
    ns = pod["metadata"]["namespace"]
    assert counts["counts"]["pod"]["namespaces"][ns]["states"] == {"in-progress": 1}
    call(b, "GET", "/v1/schemas")
    assert schemas_for(a.api.kinds) is schemas_for(b.api.kinds)  # one schema set for equal discovery
