"""Table columns and cells follow kube-apiserver's printers (what kubectl and steve show)."""

from __future__ import annotations

import pytest

from scaleagent.apiserver.kinds import Registry
from scaleagent.apiserver.tables import human_duration, table

KINDS = Registry()
NOW = 1_000_000.0
CREATED = "1970-01-12T12:46:40Z"  # NOW - 3600 s


def rt(group, plural):
    return KINDS.preferred(group, plural)


def columns(doc, wide=False):
    return [c["name"] for c in doc["columnDefinitions"] if wide or c["priority"] == 0]


@pytest.mark.parametrize(
    "seconds, text",
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 600, "3h10m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (10 * 86400, "10d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def meta(name, **extra):
    return {"name": name, "namespace": "default", "creationTimestamp": CREATED, **extra}


def test_pod_columns_and_cells():
    pod = {
        "metadata": meta("web-1", deletionTimestamp=None),
        "spec": {"nodeName": "node-1", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.42.0.9",
            "containerStatuses": [
                {"name": "a", "ready": True, "restartCount": 2},
                {
                    "name": "b",
                    "ready": False,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
            ],
        },
    }
    doc = table(rt("", "pods"), [pod], now=NOW)
    assert columns(doc) == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert columns(doc, wide=True)[5:] == ["IP", "Node", "Nominated Node", "Readiness Gates"]
    assert doc["rows"][0]["cells"] == [
        "web-1",
        "1/2",
        "CrashLoopBackOff",
        "3",
        "60m",
        "10.42.0.9",
        "node-1",
        "<none>",
        "<none>",
    ]
    assert doc["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": pod["metadata"],
    }


def test_node_columns_and_cells():
    node = {
        "metadata": {
            "name": "n1",
            "creationTimestamp": CREATED,
            "labels": {"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": ""},
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "nodeInfo": {
                "kubeletVersion": "v1.32.4",
                "osImage": "Ubuntu",
                "kernelVersion": "6.1",
                "containerRuntimeVersion": "containerd://1.7",
            },
        },
    }
    doc = table(rt("", "nodes"), [node], now=NOW)
    assert columns(doc) == ["Name", "Status", "Roles", "Age", "Version"]
    assert columns(doc, True)[5:] == [
        "Internal-IP",
        "External-IP",
        "OS-Image",
        "Kernel-Version",
        "Container-Runtime",
    ]
    assert doc["rows"][0]["cells"] == [
        "n1",
        "Ready,SchedulingDisabled",
        "control-plane,etcd",
        "60m",
        "v1.32.4",
        "10.0.0.1",
        "<none>",
        "Ubuntu",
        "6.1",
        "containerd://1.7",
    ]


def test_service_deployment_replicaset_columns():
    svc = {
        "metadata": meta("web"),
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.43.0.10",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
        },
    }
    doc = table(rt("", "services"), [svc], now=NOW)
    assert columns(doc, True) == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert doc["rows"][0]["cells"] == [
        "web",
        "NodePort",
        "10.43.0.10",
        "<none>",
        "80:30080/TCP",
        "60m",
        "app=web",
    ]
    template = {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}
    deploy = {
        "metadata": meta("web"),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    doc = table(rt("apps", "deployments"), [deploy], now=NOW)
    assert columns(doc) == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert doc["rows"][0]["cells"] == ["web", "2/3", 3, 2, "60m", "nginx", "nginx:1.27", "app=web"]
    rs = dict(deploy, status={"replicas": 3, "readyReplicas": 1})
    doc = table(rt("apps", "replicasets"), [rs], now=NOW)
    assert columns(doc) == ["Name", "Desired", "Current", "Ready", "Age"]
    assert doc["rows"][0]["cells"][:5] == ["web", 3, 3, 1, "60m"]


def test_secret_configmap_namespace_event_columns():
    doc = table(
        rt("", "secrets"),
        [{"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"a": "", "b": ""}}],
        now=NOW,
    )
    assert columns(doc) == ["Name", "Type", "Data", "Age"] and doc["rows"][0]["cells"] == [
        "s",
        "kubernetes.io/tls",
        2,
        "60m",
    ]
    doc = table(rt("", "configmaps"), [{"metadata": meta("c"), "data": {"k": "v"}}], now=NOW)
    assert columns(doc) == ["Name", "Data", "Age"] and doc["rows"][0]["cells"] == ["c", 1, "60m"]
    doc = table(rt("", "namespaces"), [{"metadata": meta("ns"), "status": {"phase": "Terminating"}}], now=NOW)
    assert doc["rows"][0]["cells"] == ["ns", "Terminating", "60m"]
    event = {
        "metadata": meta("e1"),
        "type": "Warning",
        "reason": "BackOff",
        "message": "restarting ",
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{a}"},
        "source": {"component": "kubelet", "host": "node-1"},
        "count": 4,
        "firstTimestamp": CREATED,
        "lastTimestamp": CREATED,
    }
    doc = table(rt("", "events"), [event], now=NOW)
    assert columns(doc) == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert columns(doc, True) == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ]
    assert doc["rows"][0]["cells"] == [
        "60m",
        "Warning",
        "BackOff",
        "pod/web-1",
        "spec.containers{a}",
        "kubelet, node-1",
        "restarting",
        "60m",
        "4",
        "e1",
    ]


def test_types_without_a_printer_get_name_and_created_at():
    doc = table(
        rt("rbac.authorization.k8s.io", "clusterroles"),
        [{"metadata": meta("admin")}],
        now=NOW,
        include_object="Object",
        resource_version="7",
        continue_token="tok",
        remaining=3,
    )
    assert [(c["name"], c["type"]) for c in doc["columnDefinitions"]] == [
        ("Name", "string"),
        ("Created At", "date"),
    ]
    assert doc["rows"][0] == {"cells": ["admin", CREATED], "object": {"metadata": meta("admin")}}
    assert doc["metadata"] == {"resourceVersion": "7", "continue": "tok", "remainingItemCount": 3}
    assert doc["columnDefinitions"][0]["format"] == "name"
