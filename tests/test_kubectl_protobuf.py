"""Real kubectl 1.32 and a Rancher-like typed client send protobuf bodies to `python -m scaleagent.cluster`.

kubectl's `create <kind>`, `create token` and `auth …` use typed clients, which send
`application/vnd.kubernetes.protobuf` bodies and never fall back to JSON.  The server is started with
`--trace-requests`, so its log shows the Content-Type every request arrived with; each object read
back with `get -o json` must hold exactly the fields kubectl sent (what kubectl itself prints for the
same command with `--dry-run=client -o json`), plus server-owned metadata and status.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
import pytest_twisted
import treq
import yaml
from twisted.internet import defer, task
from twisted.internet.ssl import Certificate
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from scaleagent.apiserver import protobuf as pb
from tests.support import ClusterProcess, Collect, run

KUBECTL = next(
    (p for p in ("/usr/lib/google-cloud-sdk/bin/kubectl.1.32", "/usr/bin/kubectl") if os.path.exists(p)), None
)
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

PROTOBUF = "application/vnd.kubernetes.protobuf"
FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"
SA_TOKEN = "kubernetes.io/service-account-token"
SERVER_OWNED = {"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"}
_TRACE = re.compile(r"request (\w+) (\S+) content-type=(\S*) -> (\d+)")


class Served:
    """`python -m scaleagent.cluster --trace-requests` and kubectl runs against it (private HOME)."""

    def __init__(self, reactor, tmp_path: Path) -> None:
        self.reactor = reactor
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.process = ClusterProcess(reactor, tmp_path)
        self.kubeconfig = self.process.kubeconfig

    @property
    def server(self) -> Collect:
        return self.process.proto

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }

    def start(self):
        return self.process.start("--trace-requests", env=self.env())

    def stop(self):
        return self.process.stop()

    @defer.inlineCallbacks
    def kubectl(self, *args: str, ok: bool = True):
        code, out, err = yield run(self.reactor, KUBECTL, list(args), env=self.env(), path=str(self.tmp))
        if ok:
            assert code == 0, f"kubectl {' '.join(args)} exited {code}\n{out}\n{err}"
        return code, out, err

    def trace(self) -> list[tuple[str, str, str, int]]:
        """(method, path, content type, code) of every request the server logged."""
        text = (self.server.out + self.server.err).decode(errors="replace")
        return [(m, p, ct, int(code)) for m, p, ct, code in _TRACE.findall(text)]


@pytest.fixture
def served(reactor, tmp_path):
    s = Served(reactor, tmp_path)
    pytest_twisted.blockon(s.start())
    yield s
    pytest_twisted.blockon(s.stop())


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _added(sent, got, path: str = "") -> list[tuple[str, object]]:
    """(path, value) of what `got` has beyond `sent`; fails if anything sent is missing or changed."""
    if isinstance(sent, dict) and isinstance(got, dict):
        added = []
        for key, value in sent.items():
            assert key in got, f"{path}.{key} was sent but is not read back"
            added += _added(value, got[key], f"{path}.{key}")
        return added + [(f"{path}.{key}", got[key]) for key in got if key not in sent]
    assert sent == got, f"{path}: sent {sent!r}, read back {got!r}"
    return []


# What a real apiserver adds to a new Namespace (defaulting); nothing else may appear.
DEFAULTS = {
    "namespace": {
        ".metadata.labels": {"kubernetes.io/metadata.name": "ns1"},
        ".spec.finalizers": ["kubernetes"],
    }
}


def _assert_holds_exactly(sent: dict, got: dict, what: str) -> None:
    """`got` has every field of `sent` with the same value; beyond that only server-owned metadata,
    status and the server's documented defaults."""
    defaults = DEFAULTS.get(what, {})
    for path, value in _added(_without_nulls(sent), got):
        owned = path.startswith(".status") or path in {f".metadata.{key}" for key in SERVER_OWNED}
        assert owned or defaults.get(path, ...) == value, f"{what}: the server added {path} = {value!r}"


# (label, `kubectl create` arguments, `kubectl get` arguments, path the create POSTs to)
CREATES = [
    ("namespace", ["namespace", "ns1"], ["namespace", "ns1"], "/api/v1/namespaces"),
    (
        "configmap",
        ["configmap", "cm1", "-n", "ns1", "--from-literal=a=1", "--from-literal=b=two"],
        ["configmap", "cm1", "-n", "ns1"],
        "/api/v1/namespaces/ns1/configmaps",
    ),
    (
        "secret",
        ["secret", "generic", "s1", "-n", "ns1", "--from-literal=user=admin", "--from-literal=pass=p@ss"],
        ["secret", "s1", "-n", "ns1"],
        "/api/v1/namespaces/ns1/secrets",
    ),
    (
        "serviceaccount",
        ["serviceaccount", "sa1", "-n", "ns1"],
        ["serviceaccount", "sa1", "-n", "ns1"],
        "/api/v1/namespaces/ns1/serviceaccounts",
    ),
    (
        "role",
        ["role", "r1", "-n", "ns1", "--verb=get,list", "--resource=pods,configmaps", "--resource-name=x"],
        ["role", "r1", "-n", "ns1"],
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/roles",
    ),
    (
        "rolebinding",
        ["rolebinding", "rb1", "-n", "ns1", "--role=r1", "--serviceaccount=ns1:sa1", "--user=bob"],
        ["rolebinding", "rb1", "-n", "ns1"],
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/rolebindings",
    ),
    (
        "clusterrole",
        ["clusterrole", "cr1", "--verb=get", "--resource=nodes", "--non-resource-url=/healthz"],
        ["clusterrole", "cr1"],
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ),
    (
        "clusterrolebinding",
        ["clusterrolebinding", "crb1", "--clusterrole=cr1", "--user=alice", "--group=devs"],
        ["clusterrolebinding", "crb1"],
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    ),
    (
        "deployment",
        ["deployment", "web", "-n", "ns1", "--image=nginx:1.27", "--replicas=3", "--port=8080"],
        ["deployment", "web", "-n", "ns1"],
        "/apis/apps/v1/namespaces/ns1/deployments",
    ),
    (
        "job",
        ["job", "j1", "-n", "ns1", "--image=busybox", "--", "echo", "hi"],
        ["job", "j1", "-n", "ns1"],
        "/apis/batch/v1/namespaces/ns1/jobs",
    ),
]


def _with_dry_run(args: list[str]) -> list[str]:
    if "--" in args:
        i = args.index("--")
        return [*args[:i], "--dry-run=client", "-o", "json", *args[i:]]
    return [*args, "--dry-run=client", "-o", "json"]


@pytest_twisted.inlineCallbacks
def test_kubectl_typed_writes_arrive_as_protobuf_and_read_back_as_sent(served):
    for label, create, get, path in CREATES:
        _, sent, _ = yield served.kubectl("create", *_with_dry_run(create))
        _, out, _ = yield served.kubectl("create", *create)
        assert "created" in out, (label, out)
        _, got, _ = yield served.kubectl("get", *get, "-o", "json")
        _assert_holds_exactly(json.loads(sent), json.loads(got), label)
        posts = [t for t in served.trace() if t[0] == "POST" and t[1] == path]
        assert posts == [("POST", path, PROTOBUF, 201)], (label, served.trace())

    # create token: TokenRequest on the serviceaccount's token subresource; the token works.
    _, token, _ = yield served.kubectl("create", "token", "sa1", "-n", "ns1", "--duration=15m")
    token = token.strip()
    assert token.count(".") == 2
    _, out, _ = yield served.kubectl("--token", token, "auth", "whoami", "-o", "json")
    assert json.loads(out)["status"]["userInfo"]["username"] == "system:serviceaccount:ns1:sa1"

    _, out, _ = yield served.kubectl("auth", "can-i", "list", "pods", "-n", "ns1")
    assert out.strip() == "yes"
    _, out, _ = yield served.kubectl("auth", "can-i", "get", "/healthz")
    assert out.strip() == "yes"
    _, out, _ = yield served.kubectl("auth", "whoami")
    assert re.search(r"Username\s+kubernetes-admin", out), out
    assert "system:masters" in out

    trace = served.trace()
    for path in (
        "/api/v1/namespaces/ns1/serviceaccounts/sa1/token",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    ):
        seen = {(ct, code) for m, p, ct, code in trace if m == "POST" and p == path}
        assert seen == {(PROTOBUF, 201)}, (path, trace)


@pytest_twisted.inlineCallbacks
def test_kubectl_token_secret_is_filled_by_the_token_controller(served):
    yield served.kubectl("create", "namespace", "ns1")
    yield served.kubectl("create", "serviceaccount", "robot", "-n", "ns1")
    yield served.kubectl(
        "create", "secret", "generic", "robot-token", "-n", "ns1", "--type", SA_TOKEN
    )
    yield served.kubectl(
        "annotate", "secret", "robot-token", "-n", "ns1", "kubernetes.io/service-account.name=robot"
    )
    token = ""
    for _ in range(50):
        _, out, _ = yield served.kubectl("get", "secret", "robot-token", "-n", "ns1", "-o", "json")
        data = json.loads(out).get("data") or {}
        if data.get("token"):
            token = base64.b64decode(data["token"]).decode()
            break
        yield task.deferLater(served.reactor, 0.1, lambda: None)
    assert token, "data.token was never filled"
    assert set(data) == {"token", "ca.crt", "namespace"}
    assert base64.b64decode(data["namespace"]) == b"ns1"
    assert b"BEGIN CERTIFICATE" in base64.b64decode(data["ca.crt"])
    _, out, _ = yield served.kubectl("--token", token, "get", "namespace", "ns1", "-o", "name")
    assert out.strip() == "namespace/ns1"
    code, _, err = yield served.kubectl("--token", "not-a-token", "get", "namespaces", ok=False)
    assert code != 0 and "Unauthorized" in err


# --- Rancher's impersonation setup, as its typed client sends it --------------------------------


def _client(reactor, served: Served):
    config = yaml.safe_load(served.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    admin = config["users"][0]["user"]["token"]
    ca = Certificate.loadPEM(base64.b64decode(cluster["certificate-authority-data"]))
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=ca))
    return treq.client.HTTPClient(agent), cluster["server"], admin


@pytest_twisted.inlineCallbacks
def test_rancher_impersonation_sequence_with_protobuf_bodies(reactor, served):
    http, server, admin = _client(reactor, served)
    ns = "cattle-impersonation-system"
    account = "cattle-impersonation-u-b4qkhsnliz"
    rbac = "rbac.authorization.k8s.io"
    headers = {
        "Authorization": [f"Bearer {admin}"],
        "Content-Type": [PROTOBUF],
        "Accept": ["application/vnd.kubernetes.protobuf, application/json"],
    }

    @defer.inlineCallbacks
    def post(path, obj):
        response = yield http.post(server + path, data=pb.encode(obj), headers=headers)
        body = yield response.json()
        assert response.code == 201, (path, response.code, body)
        return body

    yield post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    yield post(
        f"/apis/{rbac}/v1/clusterroles",
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": account},
            "rules": [
                {
                    "verbs": ["impersonate"],
                    "apiGroups": [""],
                    "resources": ["users"],
                    "resourceNames": ["u-1"],
                }
            ],
        },
    )
    yield post(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": ns}},
    )
    yield post(
        f"/apis/{rbac}/v1/clusterrolebindings",
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": account},
        },
    )
    secret = yield post(
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "generateName": f"{account}-token-",
                "namespace": ns,
                "labels": {"cattle.io/service-account.name": account},
                "annotations": {"kubernetes.io/service-account.name": account},
            },
            "type": SA_TOKEN,
        },
    )
    name = secret["metadata"]["name"]
    assert name.startswith(f"{account}-token-")
    # Rancher polls (50 steps, ≤100 ms apart) until data.token is filled.
    token = ""
    for _ in range(50):
        response = yield http.get(f"{server}/api/v1/namespaces/{ns}/secrets/{name}", headers=headers)
        found = yield response.json()
        if (found.get("data") or {}).get("token"):
            token = base64.b64decode(found["data"]["token"]).decode()
            break
        yield task.deferLater(reactor, 0.1, lambda: None)
    assert token, "the token Secret was never filled"
    # A proxied request: the impersonator account's token plus impersonation headers.
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}}
    response = yield http.post(
        server + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=pb.encode(review),
        headers={
            "Authorization": [f"Bearer {token}"],
            "Content-Type": [PROTOBUF],
            "Impersonate-User": ["u-1"],
            "Impersonate-Group": ["system:authenticated"],
            "Impersonate-Extra-Principalid": ["local://u-1"],
        },
    )
    body = yield response.json()
    assert response.code == 201, body
    assert body["status"]["userInfo"]["username"] == "u-1"
    assert body["status"]["userInfo"]["extra"] == {"principalid": ["local://u-1"]}
    as_account = {"Authorization": [f"Bearer {token}"]}
    response = yield http.get(f"{server}/api/v1/namespaces/{ns}", headers=as_account)
    assert response.code == 200
    yield response.text()


@pytest_twisted.inlineCallbacks
def test_bad_protobuf_bodies_are_400_and_415_statuses_over_http(reactor, served):
    http, server, admin = _client(reactor, served)
    headers = {"Authorization": [f"Bearer {admin}"], "Content-Type": [PROTOBUF]}
    namespace = (FIXTURES / "namespace.pb").read_bytes()
    cases = [
        ("/api/v1/namespaces", b"k8s\x00\x0a\x05junk", 400, None),
        ("/api/v1/namespaces", namespace[:-9], 400, None),
        ("/api/v1/namespaces", b'{"kind": "Namespace"}', 400, None),
        ("/apis/example.com/v1/widgets", pb.encode_envelope("example.com/v1", "Widget", b""), 404, None),
        ("/api/v1/namespaces", pb.encode_envelope("example.com/v1", "Widget", b""), 415, "Widget"),
        (
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            pb.encode_envelope("authorization.k8s.io/v1", "NoSuchReview", b""),
            415,
            "NoSuchReview",
        ),
    ]
    for path, body, code, kind in cases:
        response = yield http.post(server + path, data=body, headers=headers)
        status = yield response.json()
        assert response.code == code, (path, code, status)
        assert status["kind"] == "Status" and status["code"] == code
        if kind:
            assert kind in status["message"] and status["details"]["kind"] == kind
    # The server is still serving.
    response = yield http.get(server + "/api/v1/namespaces/default", headers=headers)
    assert response.code == 200
    yield response.text()
