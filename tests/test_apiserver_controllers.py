"""Token controller, TokenRequest and the review endpoints, against a real Store and the write handler."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from scaleagent.apiserver import controllers, writes
from scaleagent.apiserver import protobuf as pb
from scaleagent.apiserver.auth import ADMIN, impersonate
from scaleagent.apiserver.request import ApiContext, ApiRequest
from scaleagent.apiserver.status import ApiError
from scaleagent.apiserver.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"
PROTOBUF = "application/vnd.kubernetes.protobuf"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
NOW = 1_800_000_000


class Cluster:
    """One store + context + started token controller, driven through the real write handler."""

    def __init__(self, store: Store | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = store or Store(now=self.clock.seconds)
        self.api = ApiContext(self.store, self.clock, ca_pem=CA)
        if store is None:
            for ns in ("default", "ns1", "cattle-impersonation-system"):
                self.store.put(self.rt("", "v1", "namespaces"), {"metadata": {"name": ns}})
        self.controller = controllers.start(self.api)

    def rt(self, group: str, version: str, plural: str):
        rt = self.store.kinds.by_resource(group, version, plural)
        assert rt is not None, plural
        return rt

    def request(
        self,
        method: str,
        rt,
        namespace: str | None = None,
        name: str | None = None,
        body: Any = None,
        *,
        sub: str | None = None,
        ctype: str = "application/json",
        headers: dict[str, list[str]] | None = None,
    ) -> ApiRequest:
        if isinstance(body, bytes):
            raw = body
        else:
            raw = b"" if body is None else json.dumps(body).encode()
        all_headers = {"content-type": [ctype]}
        all_headers.update(headers or {})
        user = impersonate(ADMIN, all_headers)
        return ApiRequest(method, self.api, rt, namespace, name, sub, {}, all_headers, raw, user)

    def call(self, *args, **kwargs) -> tuple[int, dict[str, Any]]:
        req = self.request(*args, **kwargs)
        handler = controllers.handler_for(req)
        if handler is not None:
            return handler(req)
        return writes.handle(req)


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _token_secret(sa: str, *, name: str | None = None, generate: str | None = None) -> dict:
    meta: dict[str, Any] = {"annotations": {controllers.SA_NAME_ANNOTATION: sa}}
    if name:
        meta["name"] = name
    if generate:
        meta["generateName"] = generate
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": controllers.SA_TOKEN_TYPE}


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


def test_token_secret_is_filled_with_one_modified_event_and_authenticates(cluster):
    secrets, sas = cluster.rt("", "v1", "secrets"), cluster.rt("", "v1", "serviceaccounts")
    cluster.call("POST", sas, "ns1", body={"metadata": {"name": "robot"}})
    events: list[tuple[str, int, bool]] = []
    cluster.store.watch(
        secrets,
        lambda kind, entry: events.append(
            (kind, int(entry.obj["metadata"]["resourceVersion"]), "token" in (entry.obj.get("data") or {}))
        ),
        resource_version=str(cluster.store.resource_version),
    )
    code, created = cluster.call("POST", secrets, "ns1", body=_token_secret("robot", name="robot-token"))
    assert code == 201 and "token" not in created.get("data", {})
    cluster.clock.advance(0)
    stored = cluster.store.get(secrets, "ns1", "robot-token")
    data = stored["data"]
    assert base64.b64decode(data["ca.crt"]) == CA
    assert base64.b64decode(data["namespace"]) == b"ns1"
    token = base64.b64decode(data["token"]).decode()
    assert token.startswith("eyJ") and token.count(".") == 2
    sa_uid = cluster.store.get(sas, "ns1", "robot")["metadata"]["uid"]
    assert stored["metadata"]["annotations"][controllers.SA_UID_ANNOTATION] == sa_uid
    # The watcher sees ADDED (empty) then exactly one MODIFIED (filled), in resourceVersion order.
    assert [(k, filled) for k, _, filled in events] == [("ADDED", False), ("MODIFIED", True)]
    assert events[0][1] < events[1][1]
    user = cluster.api.auth.authenticate(f"Bearer {token}")
    assert user.name == "system:serviceaccount:ns1:robot"
    assert "system:serviceaccounts:ns1" in user.groups
    assert user.uid == sa_uid


def test_other_secrets_are_left_alone(cluster):
    secrets = cluster.rt("", "v1", "secrets")
    cluster.call("POST", cluster.rt("", "v1", "serviceaccounts"), "ns1", body={"metadata": {"name": "sa"}})
    plain = {"metadata": {"name": "plain", "annotations": {controllers.SA_NAME_ANNOTATION: "sa"}}}
    cluster.call("POST", secrets, "ns1", body=plain)
    no_annotation = {"metadata": {"name": "bare"}, "type": controllers.SA_TOKEN_TYPE}
    cluster.call("POST", secrets, "ns1", body=no_annotation)
    rv = cluster.store.resource_version
    cluster.clock.advance(0)
    assert cluster.store.resource_version == rv
    assert "data" not in cluster.store.get(secrets, "ns1", "bare")


def test_secret_before_its_service_account_is_filled_when_the_account_appears(cluster):
    secrets, sas = cluster.rt("", "v1", "secrets"), cluster.rt("", "v1", "serviceaccounts")
    cluster.call("POST", secrets, "ns1", body=_token_secret("late", name="late-token"))
    cluster.clock.advance(0)
    assert "data" not in cluster.store.get(secrets, "ns1", "late-token")
    cluster.call("POST", sas, "ns1", body={"metadata": {"name": "late"}})
    cluster.clock.advance(0)
    assert cluster.store.get(secrets, "ns1", "late-token")["data"]["token"]


def test_deleting_the_secret_revokes_its_token(cluster):
    secrets, sas = cluster.rt("", "v1", "secrets"), cluster.rt("", "v1", "serviceaccounts")
    cluster.call("POST", sas, "ns1", body={"metadata": {"name": "sa"}})
    cluster.call("POST", secrets, "ns1", body=_token_secret("sa", name="t"))
    cluster.clock.advance(0)
    token = base64.b64decode(cluster.store.get(secrets, "ns1", "t")["data"]["token"]).decode()
    assert cluster.api.auth.user(token) is not None
    cluster.call("DELETE", secrets, "ns1", "t")
    assert cluster.api.auth.user(token) is None
    with pytest.raises(ApiError) as info:
        cluster.api.auth.authenticate(f"Bearer {token}")
    assert info.value.code == 401


def test_tokens_in_stored_secrets_are_accepted_after_a_restart(cluster):
    secrets, sas = cluster.rt("", "v1", "secrets"), cluster.rt("", "v1", "serviceaccounts")
    cluster.call("POST", sas, "ns1", body={"metadata": {"name": "sa"}})
    cluster.call("POST", secrets, "ns1", body=_token_secret("sa", name="t"))
    cluster.clock.advance(0)
    token = base64.b64decode(cluster.store.get(secrets, "ns1", "t")["data"]["token"]).decode()
    # Same objects, fresh context and authenticator: the controller re-accepts the stored token.
    again = Cluster(store=cluster.store)
    assert again.api.auth.user(token).name == "system:serviceaccount:ns1:sa"


def test_stop_cancels_the_watches_and_pending_work(cluster):
    secrets, sas = cluster.rt("", "v1", "secrets"), cluster.rt("", "v1", "serviceaccounts")
    cluster.call("POST", sas, "ns1", body={"metadata": {"name": "sa"}})
    cluster.call("POST", secrets, "ns1", body=_token_secret("sa", name="t"))
    cluster.controller.stop()
    cluster.clock.advance(0)
    assert "data" not in cluster.store.get(secrets, "ns1", "t")
    assert not cluster.clock.getDelayedCalls()


# --- TokenRequest -------------------------------------------------------------------------------


def test_create_token_from_kubectls_protobuf_body(cluster):
    sas = cluster.rt("", "v1", "serviceaccounts")
    cluster.call("POST", sas, "ns1", body={"metadata": {"name": "sa1"}})
    body = (FIXTURES / "tokenrequest.pb").read_bytes()
    code, out = cluster.call("POST", sas, "ns1", "sa1", body, sub="token", ctype=PROTOBUF)
    assert code == 201
    assert out["kind"] == "TokenRequest" and out["apiVersion"] == "authentication.k8s.io/v1"
    assert out["metadata"]["name"] == "sa1" and out["metadata"]["namespace"] == "ns1"
    assert out["spec"]["audiences"] == ["aud1"] and out["spec"]["expirationSeconds"] == 600
    assert out["status"]["expirationTimestamp"] == "2027-01-15T08:10:00Z"  # NOW + 600 s
    claims = json.loads(base64.urlsafe_b64decode(out["status"]["token"].split(".")[1] + "=="))
    assert claims["aud"] == ["aud1"] and claims["exp"] == NOW + 600
    assert claims["sub"] == "system:serviceaccount:ns1:sa1"
    user = cluster.api.auth.authenticate("Bearer " + out["status"]["token"])
    assert user.name == "system:serviceaccount:ns1:sa1"


def test_token_request_errors(cluster):
    sas = cluster.rt("", "v1", "serviceaccounts")
    with pytest.raises(ApiError) as info:
        cluster.call("POST", sas, "ns1", "ghost", {}, sub="token")
    assert info.value.code == 404
    cluster.call("POST", sas, "ns1", body={"metadata": {"name": "sa"}})
    with pytest.raises(ApiError) as info:
        cluster.call("POST", sas, "ns1", "sa", {"spec": {"expirationSeconds": 60}}, sub="token")
    assert info.value.code == 422
    with pytest.raises(ApiError) as info:
        cluster.call("POST", sas, "ns1", "sa", {"kind": "Secret", "apiVersion": "v1"}, sub="token")
    assert info.value.code == 400
    code, out = cluster.call("POST", sas, "ns1", "sa", {}, sub="token")
    assert code == 201 and out["spec"]["expirationSeconds"] == 3600
    assert out["spec"]["audiences"] == [controllers.DEFAULT_AUDIENCE]


# --- reviews ------------------------------------------------------------------------------------


def _review(cluster, plural, fixture, group="authorization.k8s.io", headers=None):
    rt = cluster.rt(group, "v1", plural)
    body = (FIXTURES / f"{fixture}.pb").read_bytes()
    return cluster.call("POST", rt, None, None, body, ctype=PROTOBUF, headers=headers)


def test_self_subject_access_reviews_are_allowed(cluster):
    for fixture in ("ssar-resource", "ssar-nonresource"):
        code, out = _review(cluster, "selfsubjectaccessreviews", fixture)
        assert code == 201 and out["status"]["allowed"] is True
        assert out["spec"] == pb.decode((FIXTURES / f"{fixture}.pb").read_bytes())["spec"]
    rt = cluster.rt("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
    with pytest.raises(ApiError) as info:
        cluster.call("POST", rt, body={"spec": {}})
    assert info.value.code == 422


def test_self_subject_rules_review_lists_everything(cluster):
    code, out = _review(cluster, "selfsubjectrulesreviews", "ssrr")
    assert code == 201
    assert out["status"]["resourceRules"] == [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
    assert out["status"]["incomplete"] is False


def test_self_subject_review_reports_the_impersonated_caller(cluster):
    code, out = _review(cluster, "selfsubjectreviews", "selfsubjectreview", group="authentication.k8s.io")
    assert code == 201 and out["status"]["userInfo"]["username"] == ADMIN.name
    headers = {
        "impersonate-user": ["alice"],
        "impersonate-group": ["devs", "ops"],
        "impersonate-extra-scopes": ["view", "edit"],
    }
    code, out = _review(
        cluster, "selfsubjectreviews", "selfsubjectreview", group="authentication.k8s.io", headers=headers
    )
    assert out["status"]["userInfo"] == {
        "username": "alice",
        "groups": ["devs", "ops", "system:authenticated"],
        "extra": {"scopes": ["view", "edit"]},
    }


def test_subject_access_reviews_protobuf_and_json(cluster):
    sar = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}, "user": "bob"},
    }
    rt = cluster.rt("authorization.k8s.io", "v1", "subjectaccessreviews")
    code, out = cluster.call("POST", rt, body=pb.encode(sar), ctype=PROTOBUF)
    assert code == 201 and out["status"]["allowed"] is True and out["spec"]["user"] == "bob"
    with pytest.raises(ApiError) as info:
        cluster.call("POST", rt, body={"spec": {"resourceAttributes": {"verb": "get"}}})
    assert info.value.code == 422
    local = cluster.rt("authorization.k8s.io", "v1", "localsubjectaccessreviews")
    lsar = {"spec": {"resourceAttributes": {"verb": "get", "namespace": "ns1"}, "user": "bob"}}
    code, out = cluster.call("POST", local, "ns1", body=lsar)
    assert out["status"]["allowed"] is True and out["metadata"]["namespace"] == "ns1"


def test_token_review_accepts_only_tokens_this_cluster_issued(cluster):
    sas = cluster.rt("", "v1", "serviceaccounts")
    cluster.call("POST", sas, "ns1", body={"metadata": {"name": "sa"}})
    _, issued = cluster.call("POST", sas, "ns1", "sa", {}, sub="token")
    rt = cluster.rt("authentication.k8s.io", "v1", "tokenreviews")
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}}
    review["spec"]["token"] = issued["status"]["token"]
    code, out = cluster.call("POST", rt, body=pb.encode(review), ctype=PROTOBUF)
    assert code == 201 and out["status"]["authenticated"] is True
    assert out["status"]["user"]["username"] == "system:serviceaccount:ns1:sa"
    review["spec"]["token"] = "not-a-token"
    _, out = cluster.call("POST", rt, body=review)
    assert "authenticated" not in out["status"] and out["status"]["error"]


def test_handler_for_routes_only_posts_to_virtual_resources(cluster):
    sas = cluster.rt("", "v1", "serviceaccounts")
    assert controllers.handler_for(cluster.request("POST", sas, "ns1", "sa", sub="token"))
    assert controllers.handler_for(cluster.request("POST", sas, "ns1")) is None
    assert controllers.handler_for(cluster.request("GET", sas, "ns1", "sa", sub="token")) is None
    ssar = cluster.rt("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
    assert controllers.handler_for(cluster.request("POST", ssar)) is controllers.self_subject_access_review
    assert controllers.handler_for(cluster.request("POST", cluster.rt("", "v1", "secrets"), "ns1")) is None
    with pytest.raises(ApiError):
        controllers.handle(cluster.request("PUT", sas, "ns1", "sa"))


# --- Rancher's impersonation sequence, replayed with protobuf bodies ----------------------------


def test_rancher_impersonation_sequence_with_protobuf_bodies(cluster):
    ns = "cattle-impersonation-system"
    account = "cattle-impersonation-u-b4qkhsnliz"
    rbac = "rbac.authorization.k8s.io"

    def post(rt, namespace, obj):
        return cluster.call("POST", rt, namespace, body=pb.encode(obj), ctype=PROTOBUF)

    cluster.call("DELETE", cluster.rt("", "v1", "namespaces"), None, ns)
    assert (
        post(
            cluster.rt("", "v1", "namespaces"),
            None,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns},
            },
        )[0]
        == 201
    )
    post(
        cluster.rt(rbac, "v1", "clusterroles"),
        None,
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
    post(
        cluster.rt("", "v1", "serviceaccounts"),
        ns,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": ns},
        },
    )
    post(
        cluster.rt(rbac, "v1", "clusterrolebindings"),
        None,
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": account},
        },
    )
    secret = _token_secret(account, generate=f"{account}-token-")
    secret["metadata"]["namespace"] = ns
    secret["metadata"]["labels"] = {"cattle.io/service-account.name": account}
    code, created = post(cluster.rt("", "v1", "secrets"), ns, secret)
    assert code == 201
    name = created["metadata"]["name"]
    assert name.startswith(f"{account}-token-") and len(name) == len(account) + len("-token-") + 5
    cluster.clock.advance(0)
    found = cluster.store.get(cluster.rt("", "v1", "secrets"), ns, name)
    token = base64.b64decode(found["data"]["token"]).decode()
    user = cluster.api.auth.authenticate(f"Bearer {token}")
    assert user.name == f"system:serviceaccount:{ns}:{account}"


def test_typed_client_update_and_delete_with_protobuf_bodies(cluster):
    """Rancher's typed client PUTs what it read (uid, resourceVersion, times, managedFields) and
    DELETEs with a protobuf DeleteOptions body."""
    rbac = "rbac.authorization.k8s.io"
    roles = cluster.rt(rbac, "v1", "clusterroles")
    role = {
        "apiVersion": f"{rbac}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "cattle-x"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
    }
    _, created = cluster.call("POST", roles, body=pb.encode(role), ctype=PROTOBUF)
    updated = json.loads(json.dumps(created))
    updated["rules"][0]["verbs"].append("list")
    body = pb.encode(updated)
    assert pb.decode(body)["metadata"] == created["metadata"]
    code, out = cluster.call("PUT", roles, None, "cattle-x", body, ctype=PROTOBUF)
    assert code == 200 and out["rules"][0]["verbs"] == ["get", "list"]
    assert int(out["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    stale = pb.encode(created)
    with pytest.raises(ApiError) as info:
        cluster.call("PUT", roles, None, "cattle-x", stale, ctype=PROTOBUF)
    assert info.value.code == 409
    options = {"apiVersion": f"{rbac}/v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    code, _ = cluster.call("DELETE", roles, None, "cattle-x", pb.encode(options), ctype=PROTOBUF)
    assert code == 200
    assert cluster.store.lookup(roles, None, "cattle-x") is None
