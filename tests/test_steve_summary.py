"""wrangler's summary rules (metadata.state) and relationships, checked against rules in its source
(rancher/wrangler pkg/summary summarizers.go, coretypes.go) and kstatus' messages (cli-utils)."""

from __future__ import annotations

from scaleagent.steve.summary import normalize_conditions, summarize


def cond(type_: str, status: str, message: str = "", reason: str = "") -> dict:
    return {"type": type_, "status": status, "message": message, "reason": reason}


def state(obj: dict) -> dict:
    return summarize(obj).state_dict()


def test_running_ready_pod_is_running_and_not_transitioning():
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {"serviceAccountName": "sa", "volumes": [{"name": "v", "configMap": {"name": "cm"}}],
                 "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]},
        "status": {"phase": "Running", "conditions": [cond("Ready", "True"), cond("PodScheduled", "True")]},
    }
    # checkPhase sets "Running" before kstatus is consulted, so no message (what the UI shows)
    assert state(pod) == {"name": "running", "error": False, "transitioning": False, "message": ""}
    rels = {(r.kind, r.name, r.type) for r in summarize(pod).relationships}
    assert rels == {("ConfigMap", "cm", "uses"), ("Secret", "s", "uses"), ("ServiceAccount", "sa", "uses")}


def test_pending_pod_unscheduled_is_transitioning_scheduling():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "status": {"phase": "Pending", "conditions": [cond("PodScheduled", "Unknown", "waiting")]}}
    assert state(pod) == {"name": "scheduling", "error": False, "transitioning": True, "message": "waiting"}


def test_node_ready_uses_kstatus_ready_message_and_pressure_is_an_error():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
            "status": {"conditions": [cond("MemoryPressure", "False"), cond("Ready", "True")]}}
    assert state(node) == {"name": "active", "error": False, "transitioning": False,
                           "message": "Resource is Ready"}
    node["status"]["conditions"][0] = cond("MemoryPressure", "True", "low memory")
    s = state(node)
    assert (s["name"], s["error"]) == ("error", True) and "low memory" in s["message"]
    node["status"]["conditions"] = [cond("Ready", "False", "kubelet stopped")]
    assert state(node) == {"name": "unavailable", "error": False, "transitioning": True,
                           "message": "kubelet stopped"}


def test_deployment_states_follow_kstatus_replica_rules():
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "generation": 2},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}}},
           "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
                      "availableReplicas": 3,
                      "conditions": [cond("Available", "True"),
                                     cond("Progressing", "True", reason="NewReplicaSetAvailable")]}}
    assert state(dep)["message"] == "Deployment is available. Replicas: 3"
    assert state(dep)["name"] == "active"
    dep["status"]["readyReplicas"] = 1
    dep["status"]["availableReplicas"] = 1
    assert state(dep) == {"name": "in-progress", "error": False, "transitioning": True,
                          "message": "Available: 1/3"}
    dep["status"]["conditions"][0] = cond("Available", "False", "min replicas")
    s = state(dep)  # TransitioningFalse: Available False → updating
    assert (s["name"], s["transitioning"]) == ("updating", True)
    creates = [r for r in summarize(dep).relationships if r.type == "creates"]
    assert creates and creates[0].selector == {"matchLabels": {"app": "d"}}


def test_namespace_phase_configmap_always_ready_and_terminating():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "status": {"phase": "Active"}}
    assert state(ns) == {"name": "active", "error": False, "transitioning": False, "message": ""}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert state(cm)["message"] == "Resource is always ready"
    cm["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert state(cm) == {"name": "removing", "error": False, "transitioning": True,
                         "message": "Resource scheduled for deletion"}


def test_load_balancer_without_ingress_is_pending_and_owner_is_inbound():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "controller": True}]},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "selector": {"app": "d"}}}
    s = summarize(svc)
    # kstatus said "Service is ready" first (clusterIP set); checkLoadBalancer then overrides the state
    assert (s.state, s.transitioning) == ("pending", True)
    assert s.message == ["Service is ready", "Load balancer is being provisioned"]
    owner = [r for r in s.relationships if r.type == "owner"][0]
    assert (owner.inbound, owner.controlled_by, owner.kind, owner.name) == (True, True, "Deployment", "d")
    selects = [r for r in s.relationships if r.type == "selects"][0]
    assert selects.selector == {"matchLabels": {"app": "d"}}


def test_status_display_wins_and_messages_are_deduplicated():
    obj = {"apiVersion": "x.cattle.io/v1", "kind": "Thing", "metadata": {"name": "t"},
           "status": {"display": {"state": "Waiting", "transitioning": True, "message": "m"},
                      "conditions": [cond("Ready", "False", " m ")]}}
    assert state(obj) == {"name": "waiting", "error": False, "transitioning": True, "message": "m"}


def test_normalize_conditions_adds_error_transitioning_and_update_time_without_mutating():
    conditions = [{"type": "Ready", "status": "False", "lastTransitionTime": "T"},
                  {"type": "DiskPressure", "status": "True", "lastTransitionTime": "U",
                   "lastUpdateTime": "V"}]
    stored = {"apiVersion": "v1", "kind": "Node", "status": {"conditions": conditions}}
    copy = dict(stored)
    normalize_conditions(copy)
    out = copy["status"]["conditions"]
    assert out[0] == {**conditions[0], "error": False, "transitioning": True, "lastUpdateTime": "T"}
    assert out[1] == {**conditions[1], "error": True, "transitioning": False}
    assert "error" not in stored["status"]["conditions"][0]  # the stored object is untouched
