"""The stand-in's management API in memory (StubTreq): Rancher's shapes, codes and auth."""

from __future__ import annotations

import base64
import json
import random
import re

import pytest
import yaml
from treq.testing import StubTreq
from twisted.internet.task import Clock

from scaleagent.sim import manifest
from scaleagent.sim.api import ManagementAPI, Root
from scaleagent.sim.store import MAIN, STEVE, Cluster, SimStore

TOKEN = "token-abcde:" + "x" * 54
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
URL = "https://rancher.test:8443"


class FakeBackend:
    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = SimStore(self.clock, rng=random.Random(1), grace_period=30)
        self.cacerts = CA
        self.server_version = "v2.14.0"
        self.creator_id = "user-abcde"
        self.server_url = URL
        self.deleted: list[str] = []
        self.disconnected: list[str] = []

    def check_api_token(self, credential: str) -> bool:
        return credential == TOKEN

    def delete_cluster(self, cluster_id: str) -> Cluster:
        self.deleted.append(cluster_id)
        return self.store.delete_cluster(cluster_id)

    def disconnect_cluster(self, cluster_id: str) -> int:
        self.disconnected.append(cluster_id)
        return 2


AUTH = {"Authorization": [f"Bearer {TOKEN}"]}


@pytest.fixture
def api():
    backend = FakeBackend()
    stub = StubTreq(Root(ManagementAPI(backend), None))
    return backend, stub


def call(stub: StubTreq, method: str, path: str, *, headers=AUTH, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    d = stub.request(method, URL + path, headers=headers, data=data)
    stub.flush()
    response = [None]
    d.addCallback(lambda r: response.__setitem__(0, r))
    stub.flush()
    r = response[0]
    assert r is not None
    content = [None]
    stub.flush()
    r.content().addCallback(lambda c: content.__setitem__(0, c))
    stub.flush()
    return r.code, r.headers.getRawHeaders("content-type", [""])[0], content[0]


def jcall(stub, method, path, **kwargs):
    code, ctype, content = call(stub, method, path, **kwargs)
    assert ctype == "application/json", (code, content)
    return code, json.loads(content)


def test_ping_and_cacerts_are_public(api):
    _, stub = api
    assert call(stub, "GET", "/ping", headers={}) == (200, "text/plain", b"pong")
    code, body = jcall(stub, "GET", "/v3/settings/cacerts", headers={})
    assert code == 200
    assert body["id"] == "cacerts" and body["type"] == "setting" and body["value"] == CA
    assert body["links"]["self"] == URL + "/v3/settings/cacerts"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ["Bearer token-abcde:wrong"]},
        {"Authorization": ["Bearer"]},
        {"Authorization": ["Basic !!!"]},
    ],
)
def test_everything_else_needs_the_api_token(api, headers):
    _, stub = api
    for method, path in [
        ("GET", "/v3/settings/server-version"),
        ("GET", "/v3/clusters"),
        ("POST", "/v3/clusters"),
        ("GET", "/v3/clusterregistrationtokens"),
        ("GET", "/sim/clusters"),
    ]:
        code, body = jcall(stub, method, path, headers=headers)
        assert (code, body) == (401, {"type": "error", "status": "401", "message": "must authenticate"})


def test_basic_auth_and_cookie_also_work(api):
    _, stub = api
    basic = base64.b64encode(TOKEN.encode()).decode()
    assert jcall(stub, "GET", "/v3/clusters", headers={"Authorization": [f"Basic {basic}"]})[0] == 200
    assert jcall(stub, "GET", "/v3/clusters", headers={"Cookie": [f"R_SESS={TOKEN}"]})[0] == 200


def test_server_version_and_unknown_setting(api):
    _, stub = api
    code, body = jcall(stub, "GET", "/v3/settings/server-version")
    assert (code, body["value"], body["baseType"]) == (200, "v2.14.0", "setting")
    code, body = jcall(stub, "GET", "/v3/settings/nope")
    assert code == 404
    assert body == {
        "baseType": "error",
        "type": "error",
        "status": 404,
        "code": "NotFound",
        "message": 'settings.management.cattle.io "nope" not found',
    }


def test_create_list_get_delete_cluster(api):
    backend, stub = api
    code, cluster = jcall(stub, "POST", "/v3/clusters", body={"type": "cluster", "name": "sim-00001"})
    assert code == 201
    assert re.fullmatch(r"c-[bcdfghjklmnpqrstvwxz2456789]{5}", cluster["id"])
    assert cluster["name"] == "sim-00001"
    assert cluster["type"] == "cluster" and cluster["baseType"] == "cluster"
    assert cluster["state"] == "pending" and cluster["transitioning"] == "yes"
    assert cluster["driver"] == ""
    assert cluster["links"]["self"] == f"{URL}/v3/clusters/{cluster['id']}"
    assert cluster["creatorId"] == "user-abcde"
    jcall(stub, "POST", "/v3/clusters", body={"type": "cluster", "name": "sim-00002"})

    code, listing = jcall(stub, "GET", "/v3/clusters")
    assert code == 200 and listing["type"] == "collection" and listing["resourceType"] == "cluster"
    assert [c["name"] for c in listing["data"]] == ["sim-00001", "sim-00002"]
    assert listing["pagination"]["total"] == 2
    code, listing = jcall(stub, "GET", "/v3/clusters?name=sim-00002")
    assert [c["name"] for c in listing["data"]] == ["sim-00002"]
    assert listing["filters"]["name"] == [{"modifier": "eq", "value": "sim-00002"}]
    assert jcall(stub, "GET", "/v3/clusters?name=missing")[1]["data"] == []

    code, got = jcall(stub, "GET", f"/v3/clusters/{cluster['id']}")
    assert code == 200 and got["id"] == cluster["id"]

    code, gone = jcall(stub, "DELETE", f"/v3/clusters/{cluster['id']}")
    assert code == 200 and gone["state"] == "removing"
    assert backend.deleted == [cluster["id"]]
    code, body = jcall(stub, "GET", f"/v3/clusters/{cluster['id']}")
    assert code == 404 and body["code"] == "NotFound"
    assert body["message"] == f'clusters.management.cattle.io "{cluster["id"]}" not found'
    assert jcall(stub, "DELETE", f"/v3/clusters/{cluster['id']}")[0] == 404


def test_cluster_errors(api):
    _, stub = api
    jcall(stub, "POST", "/v3/clusters", body={"type": "cluster", "name": "Dup"})
    code, body = jcall(stub, "POST", "/v3/clusters", body={"type": "cluster", "name": "dup"})
    assert code == 422
    assert body == {
        "baseType": "error",
        "type": "error",
        "status": 422,
        "code": "NotUnique",
        "message": "",
        "fieldName": "Cluster name",
    }
    code, body = jcall(stub, "POST", "/v3/clusters", body={"type": "cluster"})
    assert (code, body["code"], body["fieldName"]) == (422, "MissingRequired", "name")
    code, body = jcall(stub, "POST", "/v3/clusters", raw=b"{not json")
    assert (code, body["code"]) == (422, "InvalidBodyContent")
    assert body["message"].startswith("Failed to parse body: ")
    code, body = jcall(stub, "POST", "/v3/clusters", raw=b"[" * 100_000)
    assert (code, body["code"]) == (422, "InvalidBodyContent")
    code, body = jcall(stub, "POST", "/v3/clusters", body=["a"])
    assert (code, body["code"]) == (422, "InvalidBodyContent")
    code, body = jcall(stub, "POST", "/v3/clusters", body={"name": 5})
    assert (code, body["code"], body["fieldName"]) == (422, "InvalidFormat", "name")
    code, body = jcall(stub, "PUT", "/v3/clusters")
    assert (code, body["code"]) == (405, "MethodNotAllow")
    code, body = jcall(stub, "GET", "/v3/nothing")
    assert (code, body["code"]) == (404, "NotFound")


def test_state_conditions_and_params_show_in_the_cluster(api):
    backend, stub = api
    _, created = jcall(stub, "POST", "/v3/clusters", body={"name": "a"})
    cluster = backend.store.get_cluster(created["id"])
    from scaleagent.sim.store import ClusterParams

    backend.store.record_params(cluster, ClusterParams("10.43.0.1:443", "t", "Y2E="))
    backend.store.tunnel_opened(cluster, MAIN)
    backend.store.tunnel_opened(cluster, STEVE)
    _, body = jcall(stub, "GET", f"/v3/clusters/{cluster.id}")
    assert body["state"] == "active" and body["transitioning"] == "no"
    assert body["driver"] == "imported"
    assert body["apiEndpoint"] == "https://10.43.0.1:443" and body["caCert"] == "Y2E="
    conditions = {c["type"]: c["status"] for c in body["conditions"]}
    assert conditions["Ready"] == "True" and conditions["Connected"] == "True"
    backend.store.tunnel_closed(cluster, STEVE)
    _, body = jcall(stub, "GET", f"/v3/clusters/{cluster.id}")
    assert body["state"] == "unavailable" and body["transitioning"] == "error"
    assert body["transitioningMessage"] == "Cluster agent is not connected"


def test_registration_tokens(api):
    backend, stub = api
    _, c1 = jcall(stub, "POST", "/v3/clusters", body={"name": "a"})
    _, c2 = jcall(stub, "POST", "/v3/clusters", body={"name": "b"})
    code, listing = jcall(stub, "GET", f"/v3/clusterregistrationtokens?clusterId={c1['id']}")
    assert code == 200 and listing["resourceType"] == "clusterRegistrationToken"
    [crt] = listing["data"]
    assert crt["name"] == "default-token" and crt["clusterId"] == c1["id"]
    assert crt["id"] == f"{c1['id']}:default-token"
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{54}", crt["token"])
    manifest_url = f"{URL}/v3/import/{crt['token']}_{c1['id']}.yaml"
    assert crt["manifestUrl"] == manifest_url
    assert crt["command"] == f"kubectl apply -f {manifest_url}"
    assert crt["insecureCommand"] == f"curl --insecure -sfL {manifest_url} | kubectl apply -f -"
    assert len(jcall(stub, "GET", "/v3/clusterregistrationtokens")[1]["data"]) == 2
    same = jcall(stub, "GET", f"/v3/clusters/{c1['id']}/clusterregistrationtokens")[1]["data"]
    assert [t["id"] for t in same] == [crt["id"]]
    code, one = jcall(stub, "GET", f"/v3/clusterregistrationtokens/{crt['id']}")
    assert code == 200 and one["token"] == crt["token"]

    code, new = jcall(
        stub,
        "POST",
        "/v3/clusterregistrationtokens",
        body={"type": "clusterRegistrationToken", "clusterId": c2["id"]},
    )
    assert code == 201 and new["clusterId"] == c2["id"] and new["name"].startswith("crt-")
    assert backend.store.cluster_for_token(new["token"]).id == c2["id"]

    code, body = jcall(stub, "POST", "/v3/clusterregistrationtokens", body={"clusterId": "c-zzzzz"})
    assert (code, body["code"], body["fieldName"]) == (422, "InvalidReference", "clusterId")
    code, body = jcall(stub, "POST", "/v3/clusterregistrationtokens", body={})
    assert (code, body["code"], body["fieldName"]) == (422, "MissingRequired", "clusterId")
    assert jcall(stub, "GET", "/v3/clusterregistrationtokens/c-zzzzz:default-token")[0] == 404
    assert jcall(stub, "GET", "/v3/clusters/c-zzzzz/clusterregistrationtokens")[0] == 404


def test_rotation_through_the_sim_route(api):
    backend, stub = api
    _, c1 = jcall(stub, "POST", "/v3/clusters", body={"name": "a"})
    old = backend.store.tokens(c1["id"])[0].token
    code, rotated = jcall(stub, "POST", f"/sim/clusters/{c1['id']}/rotate-token")
    assert code == 200 and rotated["token"] != old
    listed = jcall(stub, "GET", f"/v3/clusterregistrationtokens?clusterId={c1['id']}")[1]["data"]
    assert [t["token"] for t in listed] == [rotated["token"]]
    assert backend.store.cluster_for_token(old) is not None  # still in its grace period
    backend.clock.advance(31)
    assert backend.store.cluster_for_token(old) is None
    code, body = jcall(stub, "POST", f"/sim/clusters/{c1['id']}/disconnect")
    assert (code, body) == (200, {"id": c1["id"], "closed": 2})
    code, status = jcall(stub, "GET", "/sim/clusters")
    assert status["clusters"][0]["tunnels"] == {"main": 0, "steve": 0}
    assert status["counts"]["pending"] == 1
    assert jcall(stub, "POST", "/sim/clusters/c-zzzzz/rotate-token")[0] == 404


def test_import_manifest(api):
    backend, stub = api
    _, c1 = jcall(stub, "POST", "/v3/clusters", body={"name": "a"})
    token = backend.store.tokens(c1["id"])[0].token
    code, ctype, body = call(stub, "GET", f"/v3/import/{token}_{c1['id']}.yaml", headers={})
    assert (code, ctype) == (200, "text/plain")
    docs = list(yaml.safe_load_all(body))
    kinds = [d["kind"] for d in docs]
    assert kinds[:3] == ["ClusterRole", "ClusterRoleBinding", "Namespace"]
    assert "Deployment" in kinds and "Service" in kinds
    [secret] = [d for d in docs if d["kind"] == "Secret"]
    assert secret["metadata"]["name"] == manifest.credential_name(URL, token)
    assert re.fullmatch(r"cattle-credentials-[0-9a-f]{10}", secret["metadata"]["name"])
    assert base64.b64decode(secret["data"]["token"]).decode() == token
    assert base64.b64decode(secret["data"]["url"]).decode() == URL
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CATTLE_CA_CHECKSUM"] == manifest.ca_checksum(CA)
    assert env["CATTLE_SERVER"] == URL and env["CATTLE_CREDENTIAL_NAME"] == secret["metadata"]["name"]

    other = backend.store.create_cluster("b")
    assert call(stub, "GET", f"/v3/import/{token}_{other.id}.yaml", headers={}) == (
        400,
        "text/plain",
        b"cluster not found or invalid token",
    )
    assert call(stub, "GET", f"/v3/import/nope_{c1['id']}.yaml", headers={})[0] == 400
    assert call(stub, "GET", "/v3/import/nounderscore.yaml", headers={})[0] == 404
    assert call(stub, "GET", f"/v3/import/{token}_{c1['id']}.json", headers={})[0] == 404


def test_ca_checksum_matches_ranchers_rule():
    import hashlib

    assert manifest.ca_checksum("") == ""
    assert manifest.ca_checksum("abc") == hashlib.sha256(b"abc\n").hexdigest()
    assert manifest.ca_checksum("abc\n") == hashlib.sha256(b"abc\n").hexdigest()


def test_unknown_paths_get_gos_404(api):
    _, stub = api
    assert call(stub, "GET", "/nothing", headers={}) == (
        404,
        "text/plain; charset=utf-8",
        b"404 page not found\n",
    )


def test_ranchers_local_cluster_is_listed_active_and_undeletable():
    backend = FakeBackend()
    backend.store = SimStore(backend.clock, rng=random.Random(2), with_local=True)
    stub = StubTreq(Root(ManagementAPI(backend), None))
    _, listing = jcall(stub, "GET", "/v3/clusters")
    [local] = listing["data"]
    assert (local["id"], local["name"], local["state"], local["internal"]) == (
        "local",
        "local",
        "active",
        True,
    )
    code, body = jcall(stub, "POST", "/v3/clusters", body={"name": "local"})
    assert (code, body["code"]) == (422, "NotUnique")
    code, body = jcall(stub, "DELETE", "/v3/clusters/local")
    assert (code, body["code"]) == (400, "BadRequest")
    assert body["message"].endswith("denied the request: local cluster may not be deleted")
    _, created = jcall(stub, "POST", "/v3/clusters", body={"name": "sim-00001"})
    assert [c["name"] for c in jcall(stub, "GET", "/v3/clusters")[1]["data"]] == ["local", "sim-00001"]
    _, status = jcall(stub, "GET", "/sim/clusters")
    assert [c["name"] for c in status["clusters"]] == ["sim-00001"]
    assert status["counts"] == {"pending": 1, "active": 0, "unavailable": 0}


def test_collections_page_like_norman(api):
    backend, stub = api
    names = [f"p-{i}" for i in range(5)]
    for name in names:
        backend.store.create_cluster(name)
    _, first = jcall(stub, "GET", "/v3/clusters")
    assert first["pagination"] == {"limit": 1000, "total": 5}
    seen, url, pages = [], "/v3/clusters?limit=2", 0
    while url and pages < 10:
        _, page = jcall(stub, "GET", url)
        seen += [c["name"] for c in page["data"]]
        url = page["pagination"].get("next", "").replace(URL, "")
        pages += 1
        assert page["pagination"]["total"] == 5 and page["pagination"]["limit"] == 2
        assert page["pagination"].get("partial", False) == bool(url)
    assert (seen, pages) == (names, 3)
    _, page = jcall(stub, "GET", "/v3/clusters?limit=2&marker=m2")
    assert page["pagination"]["first"] == f"{URL}/v3/clusters?limit=2"
    assert page["pagination"]["next"] == f"{URL}/v3/clusters?limit=2&marker=m4"
    assert jcall(stub, "GET", "/v3/clusters?limit=99999")[1]["pagination"]["limit"] == 3000
    assert jcall(stub, "GET", "/v3/clusters?limit=x")[1]["pagination"]["limit"] == 1000
    assert len(jcall(stub, "GET", "/v3/clusters?marker=bogus")[1]["data"]) == 5
    _, tokens = jcall(stub, "GET", "/v3/clusterregistrationtokens?limit=4")
    assert len(tokens["data"]) == 4 and tokens["pagination"]["partial"] is True


MANIFEST_MODELS = {
    "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding",
    "Namespace": "V1Namespace",
    "ServiceAccount": "V1ServiceAccount",
    "Secret": "V1Secret",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
}


def _paths(value, prefix=""):
    """Every leaf path of a JSON value (an empty map or list counts as a leaf)."""
    if isinstance(value, dict):
        if not value:
            yield prefix
        for key, item in value.items():
            yield from _paths(item, f"{prefix}/{key}")
    elif isinstance(value, list):
        if not value:
            yield prefix
        for index, item in enumerate(value):
            yield from _paths(item, f"{prefix}/{index}")
    elif value is not None:
        yield prefix


def test_manifest_objects_are_valid_kubernetes_objects():
    """The official Kubernetes client's models drop what they do not know: nothing may get lost."""
    kubernetes = pytest.importorskip("kubernetes")
    client = kubernetes.client.ApiClient()
    docs = list(
        yaml.safe_load_all(
            manifest.import_manifest(server_url=URL, token="t" * 54, cacerts=CA, server_version="v2.14.0")
        )
    )
    assert {d["kind"] for d in docs} == set(MANIFEST_MODELS)
    for doc in docs:
        model = client.deserialize(json.dumps(doc), MANIFEST_MODELS[doc["kind"]], "application/json")
        back = client.sanitize_for_serialization(model)
        assert set(_paths(doc)) == set(_paths(back)), doc["kind"]
