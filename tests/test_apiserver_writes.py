"""The write handler against a real Store: codes and Status bodies, finalizers, namespace cascade,
subresources, dry runs, CRDs, and the watch event every write must produce."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from scaleagent.apiserver import writes
from scaleagent.apiserver.auth import ADMIN
from scaleagent.apiserver.request import ApiContext, ApiRequest
from scaleagent.apiserver.status import ApiError
from scaleagent.apiserver.store import Store


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def seconds(self) -> float:
        return self.now


class Cluster:
    def __init__(self) -> None:
        self.store = Store()
        self.api = ApiContext(self.store, Clock())
        self.events: list[tuple[str, str, str]] = []
        for ns in ("default", "kube-system"):
            self.store.put(self.rt("", "v1", "namespaces"), {"metadata": {"name": ns}})

    def rt(self, group: str, version: str, plural: str):
        rt = self.store.kinds.by_resource(group, version, plural)
        assert rt is not None, plural
        return rt

    def watch(self, rt) -> None:
        def sink(kind, entry):
            self.events.append(
                (kind, entry.obj["metadata"].get("name"), entry.obj["metadata"].get("resourceVersion"))
            )

        self.store.watch(rt, sink, resource_version=str(self.store.resource_version))

    def call(
        self,
        method: str,
        rt,
        namespace: str | None = None,
        name: str | None = None,
        body: Any = None,
        *,
        sub: str | None = None,
        ctype: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        headers = {"content-type": [ctype], "user-agent": ["kubectl/v1.32.4 (linux/amd64)"]}
        req = ApiRequest(method, self.api, rt, namespace, name, sub, query or {}, headers, raw, ADMIN)
        return writes.handle(req)

    def error(self, *args, **kw) -> ApiError:
        with pytest.raises(ApiError) as info:
            self.call(*args, **kw)
        return info.value


@pytest.fixture
def c() -> Cluster:
    return Cluster()


def cm(name: str = "cfg", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def deployment(name: str = "web", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]},
            },
        },
    }


# -- create ------------------------------------------------------------------------------------------


def test_create_fills_server_fields_and_emits_added(c):
    cms = c.rt("", "v1", "configmaps")
    c.watch(cms)
    code, obj = c.call("POST", cms, "default", body=cm(a="1"), query={"fieldManager": "kubectl-create"})
    assert code == 201
    meta = obj["metadata"]
    assert meta["namespace"] == "default" and meta["uid"] and meta["creationTimestamp"]
    assert meta["managedFields"][0]["manager"] == "kubectl-create"
    assert c.events == [("ADDED", "cfg", meta["resourceVersion"])]


def test_generate_name_and_already_exists(c):
    cms = c.rt("", "v1", "configmaps")
    _, obj = c.call("POST", cms, "default", body={"metadata": {"generateName": "tok-"}, "data": {}})
    assert obj["metadata"]["name"].startswith("tok-") and len(obj["metadata"]["name"]) == 9
    c.call("POST", cms, "default", body=cm())
    err = c.error("POST", cms, "default", body=cm())
    assert (err.code, err.reason, err.message) == (409, "AlreadyExists", 'configmaps "cfg" already exists')


def test_create_in_missing_or_terminating_namespace(c):
    cms = c.rt("", "v1", "configmaps")
    err = c.error("POST", cms, "nowhere", body=cm())
    assert (err.code, err.message) == (404, 'namespaces "nowhere" not found')
    ns = c.rt("", "v1", "namespaces")
    c.call("POST", ns, body={"metadata": {"name": "busy"}})
    c.call("POST", cms, "busy", body={"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    c.call("DELETE", ns, name="busy")
    err = c.error("POST", cms, "busy", body=cm())
    assert err.code == 403 and "because it is being terminated" in err.message


@pytest.mark.parametrize(
    "body, code, text",
    [
        (b"{not json", 400, ""),
        (b"[1, 2]", 400, "must be a JSON or YAML object"),
        (
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}},
            400,
            "cannot be handled as a ConfigMap",
        ),
        (
            {"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
            400,
            "does not match the expected API version",
        ),
        ({"metadata": {"name": "x", "namespace": "kube-system"}}, 400, "does not match the namespace"),
        ({"metadata": {"name": "Not_Valid"}}, 422, "RFC 1123 subdomain"),
        ({"metadata": {}}, 422, "name or generateName is required"),
    ],
)
def test_create_rejects_bad_bodies(c, body, code, text):
    err = c.error("POST", c.rt("", "v1", "configmaps"), "default", body=body)
    assert err.code == code
    assert text in err.message
    assert err.status()["kind"] == "Status"


def test_yaml_bodies_are_accepted(c):
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n"
    code, obj = c.call("POST", c.rt("", "v1", "configmaps"), "default", body=body, ctype="application/yaml")
    assert code == 201 and obj["data"] == {"k": "v"}


def test_dry_run_create_stores_nothing(c):
    cms = c.rt("", "v1", "configmaps")
    c.watch(cms)
    code, obj = c.call("POST", cms, "default", body=cm(), query={"dryRun": "All"})
    assert code == 201 and obj["metadata"]["name"] == "cfg"
    assert c.store.lookup(cms, "default", "cfg") is None and c.events == []


# -- update and patch --------------------------------------------------------------------------------


def test_replace_conflict_and_server_fields_kept(c):
    cms = c.rt("", "v1", "configmaps")
    _, first = c.call("POST", cms, "default", body=cm(a="1"))
    stale = dict(cm(a="2"))
    stale["metadata"] = {"name": "cfg", "resourceVersion": "1", "uid": first["metadata"]["uid"]}
    err = c.error("PUT", cms, "default", "cfg", stale)
    assert err.code == 409 and "the object has been modified" in err.message
    fresh = cm(a="3")
    fresh["metadata"]["resourceVersion"] = first["metadata"]["resourceVersion"]
    code, out = c.call("PUT", cms, "default", "cfg", fresh)
    assert code == 200 and out["data"] == {"a": "3"}
    assert out["metadata"]["uid"] == first["metadata"]["uid"]
    assert int(out["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    err = c.error("PUT", cms, "default", "other", cm("cfg"))
    assert err.code == 400 and "does not match the name on the URL" in err.message
    assert c.error("PUT", cms, "default", "missing", cm("missing")).code == 404


def test_patch_types_and_events(c):
    deps = c.rt("apps", "v1", "deployments")
    c.call("POST", deps, "default", body=deployment())
    c.watch(deps)
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}}
    _, out = c.call("PATCH", deps, "default", "web", smp, ctype="application/strategic-merge-patch+json")
    names = [x["name"] for x in out["spec"]["template"]["spec"]["containers"]]
    assert sorted(names) == ["nginx", "sidecar"]
    assert out["metadata"]["generation"] == 2
    _, out = c.call(
        "PATCH",
        deps,
        "default",
        "web",
        {"metadata": {"labels": {"tier": "front"}}},
        ctype="application/merge-patch+json",
    )
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 5}]
    _, out = c.call("PATCH", deps, "default", "web", ops, ctype="application/json-patch+json")
    assert out["spec"]["replicas"] == 5 and out["status"]["readyReplicas"] == 5
    assert [e[0] for e in c.events] == ["MODIFIED", "MODIFIED", "MODIFIED"]
    err = c.error(
        "PATCH",
        deps,
        "default",
        "web",
        [{"op": "test", "path": "/spec/replicas", "value": 1}],
        ctype="application/json-patch+json",
    )
    assert err.code == 422
    err = c.error("PATCH", deps, "default", "web", {}, ctype="text/plain")
    assert err.code == 415
    err = c.error(
        "PATCH", deps, "default", "web", {"metadata": {"name": "other"}}, ctype="application/merge-patch+json"
    )
    assert err.code == 422
    assert c.error("PATCH", deps, "default", "nope", {}, ctype="application/merge-patch+json").code == 404


def test_server_side_apply_creates_then_updates(c):
    cms = c.rt("", "v1", "configmaps")
    c.watch(cms)
    q = {"fieldManager": "kubectl", "force": "false"}
    code, out = c.call(
        "PATCH", cms, "default", "cfg", cm(a="1", b="2"), ctype="application/apply-patch+yaml", query=q
    )
    assert code == 201 and out["metadata"]["managedFields"][0]["operation"] == "Apply"
    code, out = c.call(
        "PATCH", cms, "default", "cfg", cm(a="1"), ctype="application/apply-patch+yaml", query=q
    )
    assert code == 200 and out["data"] == {"a": "1"}
    err = c.error(
        "PATCH",
        cms,
        "default",
        "cfg",
        cm(a="9"),
        ctype="application/apply-patch+yaml",
        query={"fieldManager": "other"},
    )
    assert err.code == 409 and err.reason == "Conflict" and err.causes
    err = c.error("PATCH", cms, "default", "cfg", cm(a="9"), ctype="application/apply-patch+yaml")
    assert err.code == 400 and "fieldManager" in err.message
    assert [e[0] for e in c.events] == ["ADDED", "MODIFIED"]


def test_unchanged_update_makes_no_event(c):
    cms = c.rt("", "v1", "configmaps")
    _, first = c.call("POST", cms, "default", body=cm(a="1"))
    c.watch(cms)
    _, out = c.call(
        "PATCH", cms, "default", "cfg", {"data": {"a": "1"}}, ctype="application/merge-patch+json"
    )
    assert out["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert c.events == []


# -- delete ------------------------------------------------------------------------------------------


def test_delete_answers_status_or_object(c):
    cms, sas = c.rt("", "v1", "configmaps"), c.rt("", "v1", "serviceaccounts")
    c.call("POST", cms, "default", body=cm())
    c.call("POST", sas, "default", body={"metadata": {"name": "robot"}})
    code, out = c.call("DELETE", cms, "default", "cfg")
    assert code == 200 and out["kind"] == "Status" and out["status"] == "Success"
    assert out["details"] == {"name": "cfg", "group": "", "kind": "configmaps", "uid": out["details"]["uid"]}
    code, out = c.call(
        "DELETE",
        sas,
        "default",
        "robot",
        {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
    )
    assert code == 200 and out["kind"] == "ServiceAccount"
    assert c.error("DELETE", cms, "default", "cfg").code == 404


def test_delete_waits_for_finalizers(c):
    cms = c.rt("", "v1", "configmaps")
    c.call(
        "POST",
        cms,
        "default",
        body={"metadata": {"name": "held", "finalizers": ["example.com/a", "example.com/b"]}},
    )
    c.watch(cms)
    code, out = c.call("DELETE", cms, "default", "held")
    assert code == 200 and out["metadata"]["deletionTimestamp"] == "2027-01-15T08:00:00Z"
    assert c.store.lookup(cms, "default", "held") is not None
    err = c.error(
        "PATCH",
        cms,
        "default",
        "held",
        {"metadata": {"finalizers": ["example.com/a", "example.com/b", "new/one"]}},
        ctype="application/merge-patch+json",
    )
    assert err.code == 422 and "no new finalizers" in err.message
    c.call(
        "PATCH",
        cms,
        "default",
        "held",
        {"metadata": {"finalizers": ["example.com/b"]}},
        ctype="application/merge-patch+json",
    )
    assert c.store.lookup(cms, "default", "held") is not None
    ops = [{"op": "remove", "path": "/metadata/finalizers"}]
    c.call("PATCH", cms, "default", "held", ops, ctype="application/json-patch+json")
    assert c.store.lookup(cms, "default", "held") is None
    assert [e[0] for e in c.events] == ["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]


def test_delete_preconditions(c):
    cms = c.rt("", "v1", "configmaps")
    c.call("POST", cms, "default", body=cm())
    err = c.error("DELETE", cms, "default", "cfg", {"preconditions": {"uid": "nope"}})
    assert err.code == 409 and "Precondition failed" in err.message
    code, _ = c.call("DELETE", cms, "default", "cfg", {"dryRun": ["All"]})
    assert code == 200 and c.store.lookup(cms, "default", "cfg") is not None


def test_namespace_deletion_cascades(c):
    ns, cms, deps = (
        c.rt("", "v1", "namespaces"),
        c.rt("", "v1", "configmaps"),
        c.rt("apps", "v1", "deployments"),
    )
    c.call("POST", ns, body={"metadata": {"name": "team"}})
    c.call("POST", cms, "team", body=cm("a"))
    c.call("POST", deps, "team", body=deployment())
    c.call("POST", cms, "team", body={"metadata": {"name": "held", "finalizers": ["x/y"]}})
    c.call("POST", cms, "default", body=cm("outside"))
    code, out = c.call("DELETE", ns, name="team")
    assert code == 200 and out["kind"] == "Namespace" and out["status"]["phase"] == "Terminating"
    assert c.store.lookup(cms, "team", "a") is None and c.store.lookup(deps, "team", "web") is None
    assert c.store.lookup(ns, None, "team") is not None, "waits for the object with a finalizer"
    c.call(
        "PATCH", cms, "team", "held", {"metadata": {"finalizers": None}}, ctype="application/merge-patch+json"
    )
    assert c.store.lookup(ns, None, "team") is None
    assert c.store.lookup(cms, "default", "outside") is not None


def test_delete_collection_by_label(c):
    cms = c.rt("", "v1", "configmaps")
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        c.call("POST", cms, "default", body={"metadata": {"name": name, "labels": {"tier": tier}}})
    code, out = c.call("DELETE", cms, "default", query={"labelSelector": "tier=x"})
    assert code == 200 and out["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in out["items"]) == ["a", "b"]
    assert [o["metadata"]["name"] for o in c.store.list(cms, namespace="default").objects()] == ["c"]


# -- subresources ------------------------------------------------------------------------------------


def test_status_subresource_changes_only_status(c):
    deps = c.rt("apps", "v1", "deployments")
    c.call("POST", deps, "default", body=deployment())
    body = {"status": {"conditions": [{"type": "Available", "status": "True"}]}, "spec": {"replicas": 9}}
    _, out = c.call("PATCH", deps, "default", "web", body, sub="status", ctype="application/merge-patch+json")
    assert out["spec"]["replicas"] == 2 and out["status"]["conditions"][0]["type"] == "Available"
    # ... and the main resource ignores status.
    _, out = c.call(
        "PATCH", deps, "default", "web", {"status": {"conditions": []}}, ctype="application/merge-patch+json"
    )
    assert out["status"]["conditions"][0]["type"] == "Available"


def test_scale_subresource(c):
    deps = c.rt("apps", "v1", "deployments")
    c.call("POST", deps, "default", body=deployment())
    code, scale = c.call("GET", deps, "default", "web", sub="scale")
    assert code == 200
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 2, "selector": "app=web"}
    _, scale = c.call(
        "PATCH",
        deps,
        "default",
        "web",
        {"spec": {"replicas": 4}},
        sub="scale",
        ctype="application/merge-patch+json",
    )
    assert scale["spec"]["replicas"] == 4 and scale["status"]["replicas"] == 4
    assert c.store.get(deps, "default", "web")["spec"]["replicas"] == 4
    put = {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "web", "resourceVersion": "1"},
        "spec": {"replicas": 1},
    }
    assert c.error("PUT", deps, "default", "web", put, sub="scale").code == 409
    bad = {"spec": {"replicas": -1}}
    assert (
        c.error("PATCH", deps, "default", "web", bad, sub="scale", ctype="application/merge-patch+json").code
        == 422
    )
    assert c.error("GET", c.rt("", "v1", "configmaps"), "default", "x", sub="scale").code == 404


# -- CRDs --------------------------------------------------------------------------------------------

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def test_crd_lifecycle(c):
    crds = c.rt("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    generation = c.store.kinds.generation
    code, out = c.call("POST", crds, body=CRD)
    assert code == 201
    assert {cond["type"] for cond in out["status"]["conditions"]} == {"Established", "NamesAccepted"}
    assert c.store.kinds.generation > generation
    widgets = c.rt("example.com", "v1", "widgets")
    assert widgets.namespaced and widgets.short_names == ("wd",) and widgets.subresource("status")
    c.watch(widgets)
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 1},
    }
    code, _ = c.call("POST", widgets, "default", body=widget)
    assert code == 201
    _, out = c.call(
        "PATCH",
        widgets,
        "default",
        "w1",
        {"spec": {"size": 2}, "status": {"ok": True}},
        ctype="application/merge-patch+json",
    )
    assert out["spec"]["size"] == 2 and "status" not in out
    _, out = c.call("PUT", widgets, "default", "w1", {**widget, "status": {"ok": True}}, sub="status")
    assert out["status"] == {"ok": True}
    # strategic merge on a custom resource is treated as a merge patch
    _, out = c.call(
        "PATCH",
        widgets,
        "default",
        "w1",
        {"spec": {"color": "red"}},
        ctype="application/strategic-merge-patch+json",
    )
    assert out["spec"] == {"size": 2, "color": "red"}
    c.watch(crds)
    code, out = c.call("DELETE", crds, name="widgets.example.com")
    assert code == 200
    assert c.store.kinds.by_resource("example.com", "v1", "widgets") is None
    assert [e[:2] for e in c.events[-2:]] == [("DELETED", "w1"), ("DELETED", "widgets.example.com")]


def test_invalid_crd_is_422(c):
    crds = c.rt("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    bad = json.loads(json.dumps(CRD))
    bad["metadata"]["name"] = "wrong.example.com"
    bad["spec"]["scope"] = "Galaxy"
    err = c.error("POST", crds, body=bad)
    assert err.code == 422
    fields = {cause["field"] for cause in err.causes}
    assert fields == {"metadata.name", "spec.scope"}


def test_verbs_are_enforced(c):
    err = c.error("DELETE", c.rt("", "v1", "namespaces"), query={})
    assert err.code == 405
    # a namespaced type written through its all-namespaces path
    err = c.error("POST", c.rt("", "v1", "configmaps"), None, body=cm())
    assert err.code == 405


def test_repeated_patch_is_a_no_op_and_status_tracks_generation(c):
    deps = c.rt("apps", "v1", "deployments")
    c.call("POST", deps, "default", body=deployment(), query={"fieldManager": "kubectl-create"})
    q = {"fieldManager": "kubectl-patch"}
    _, first = c.call(
        "PATCH",
        deps,
        "default",
        "web",
        {"spec": {"replicas": 3}},
        ctype="application/merge-patch+json",
        query=q,
    )
    assert first["metadata"]["generation"] == 2 and first["status"]["observedGeneration"] == 2
    _, again = c.call(
        "PATCH",
        deps,
        "default",
        "web",
        {"spec": {"replicas": 3}},
        ctype="application/merge-patch+json",
        query=q,
    )
    assert again == first
    managers = {e["manager"]: e["fieldsV1"] for e in first["metadata"]["managedFields"]}
    assert managers["kubectl-patch"] == {"f:spec": {"f:replicas": {}}}
    assert "f:status" not in managers["kubectl-create"]


# -- garbage collection of dependents -----------------------------------------------------------------


def _owned_chain(c):
    """deployment web → replicaset web-1 → pod web-1-a, linked by ownerReferences (as the template seeds)."""
    deps, rss, pods = (
        c.rt("apps", "v1", "deployments"),
        c.rt("apps", "v1", "replicasets"),
        c.rt("", "v1", "pods"),
    )
    _, dep = c.call("POST", deps, "default", body=deployment())

    def ref(obj):
        meta = obj["metadata"]
        return {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            "uid": meta["uid"],
        }

    _, rs = c.call(
        "POST",
        rss,
        "default",
        body={"metadata": {"name": "web-1", "ownerReferences": [ref(dep)]}, "spec": {"replicas": 1}},
    )
    _, pod = c.call(
        "POST",
        pods,
        "default",
        body={"metadata": {"name": "web-1-a", "ownerReferences": [ref(rs)]}, "spec": {}},
    )
    return (deps, rss, pods), (dep, rs, pod), ref


@pytest.mark.parametrize("policy", [None, "Background", "Foreground"])
def test_deleting_an_owner_deletes_its_dependents(c, policy):
    (deps, rss, pods), _, _ = _owned_chain(c)
    c.watch(pods)
    c.watch(rss)
    c.watch(deps)
    body = {"propagationPolicy": policy} if policy else None
    c.call("DELETE", deps, "default", "web", body)
    assert (
        c.store.lookup(rss, "default", "web-1") is None and c.store.lookup(pods, "default", "web-1-a") is None
    )
    deleted = [name for kind, name, _ in c.events if kind == "DELETED"]
    if policy == "Foreground":
        assert deleted == ["web-1-a", "web-1", "web"]
    else:
        assert deleted == ["web", "web-1", "web-1-a"]


def test_orphan_and_surviving_owners_keep_dependents(c):
    (deps, rss, pods), (dep, rs, pod), ref = _owned_chain(c)
    c.call("DELETE", deps, "default", "web", {"propagationPolicy": "Orphan"})
    orphan = c.store.get(rss, "default", "web-1")
    assert "ownerReferences" not in orphan["metadata"]
    assert c.store.lookup(pods, "default", "web-1-a") is not None
    # a pod with two owners survives the deletion of one of them
    _, other = c.call("POST", rss, "default", body={"metadata": {"name": "other"}, "spec": {}})
    both = [ref(orphan), ref(other)]
    c.call(
        "PATCH",
        pods,
        "default",
        "web-1-a",
        {"metadata": {"ownerReferences": both}},
        ctype="application/merge-patch+json",
    )
    c.call("DELETE", rss, "default", "web-1")
    assert c.store.get(pods, "default", "web-1-a")["metadata"]["ownerReferences"] == [ref(other)]
    c.call("DELETE", rss, "default", "other", query={"orphanDependents": "false"})
    assert c.store.lookup(pods, "default", "web-1-a") is None


def test_bad_propagation_policy_is_422(c):
    c.call("POST", c.rt("", "v1", "configmaps"), "default", body=cm())
    err = c.error("DELETE", c.rt("", "v1", "configmaps"), "default", "cfg", {"propagationPolicy": "Sideways"})
    assert err.code == 422 and "propagationPolicy" in err.message


# -- defaults and refusals of a real apiserver ------------------------------------------------------


def test_defaults_on_create(c):
    ns, svcs, pods = c.rt("", "v1", "namespaces"), c.rt("", "v1", "services"), c.rt("", "v1", "pods")
    _, out = c.call("POST", ns, body={"metadata": {"name": "fresh"}})
    assert out["status"] == {"phase": "Active"} and out["spec"] == {"finalizers": ["kubernetes"]}
    assert out["metadata"]["labels"] == {"kubernetes.io/metadata.name": "fresh"}
    svc = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    _, a = c.call("POST", svcs, "default", body=svc)
    _, b = c.call("POST", svcs, "default", body={**svc, "metadata": {"name": "other"}})
    assert a["spec"]["type"] == "ClusterIP" and a["spec"]["ports"] == [
        {"port": 80, "protocol": "TCP", "targetPort": 80}
    ]
    assert a["spec"]["clusterIP"].startswith("10.43.") and a["spec"]["clusterIPs"] == [a["spec"]["clusterIP"]]
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    replaced = {**svc, "metadata": {"name": "web"}, "spec": {"ports": [{"port": 81}]}}
    _, again = c.call("PUT", svcs, "default", "web", replaced)
    assert again["spec"]["clusterIP"] == a["spec"]["clusterIP"], "an update keeps the allocated address"
    _, pod = c.call("POST", pods, "default", body={"metadata": {"name": "p"}, "spec": {"containers": []}})
    assert pod["status"] == {"phase": "Pending"}


def test_refusals(c):
    ns, cms = c.rt("", "v1", "namespaces"), c.rt("", "v1", "configmaps")
    err = c.error("DELETE", ns, name="kube-system")
    assert (err.code, err.message) == (
        403,
        'namespaces "kube-system" is forbidden: this namespace may not be deleted',
    )
    err = c.error("POST", cms, "default", body={"metadata": {"name": "x", "resourceVersion": "5"}})
    assert (err.code, err.message) == (400, "resourceVersion should not be set on objects to be created")
    err = c.error("POST", cms, "default", body=cm(), query={"dryRun": "Some"})
    assert err.code == 400 and "dryRun" in err.message


# -- POST-only resources ------------------------------------------------------------------------------


def test_eviction_and_binding(c):
    pods = c.rt("", "v1", "pods")
    c.call("POST", pods, "default", body={"metadata": {"name": "p"}, "spec": {"containers": []}})
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "node-1"},
    }
    code, out = c.call("POST", pods, "default", "p", binding, sub="binding")
    assert (code, out["status"]) == (201, "Success")
    assert c.store.get(pods, "default", "p")["spec"]["nodeName"] == "node-1"
    err = c.error("POST", c.rt("", "v1", "bindings"), "default", body=binding)
    assert err.code == 409 and 'already assigned to node "node-1"' in err.message
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "p", "namespace": "default"},
    }
    code, out = c.call("POST", pods, "default", "p", eviction, sub="eviction")
    assert (code, out["status"]) == (201, "Success")
    assert c.store.lookup(pods, "default", "p") is None


def test_reviews_are_answered_not_stored(c):
    reviews = c.rt("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
    body = {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}}
    code, out = c.call("POST", reviews, body=body)
    assert code == 201 and out["status"]["allowed"] is True
    assert c.store.list(reviews).items == []


def test_namespace_finalize_clears_a_stuck_namespace(c):
    ns, cms = c.rt("", "v1", "namespaces"), c.rt("", "v1", "configmaps")
    c.call("POST", ns, body={"metadata": {"name": "stuck"}})
    c.call("POST", cms, "stuck", body={"metadata": {"name": "held", "finalizers": ["gone.example.com/x"]}})
    c.call("DELETE", ns, name="stuck")
    live = c.store.get(ns, None, "stuck")
    assert live["status"]["phase"] == "Terminating" and live["spec"]["finalizers"] == ["kubernetes"]
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "stuck"},
        "spec": {"finalizers": []},
    }
    code, out = c.call("PUT", ns, name="stuck", body=body, sub="finalize")
    assert code == 200 and "finalizers" not in out["spec"]
    assert c.store.lookup(ns, None, "stuck") is None
    # on a live namespace it only edits spec.finalizers
    c.call("POST", ns, body={"metadata": {"name": "alive"}})
    code, out = c.call("PUT", ns, name="alive", body={**body, "metadata": {"name": "alive"}}, sub="finalize")
    assert code == 200 and c.store.get(ns, None, "alive")["status"]["phase"] == "Active"
