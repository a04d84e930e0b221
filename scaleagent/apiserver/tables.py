"""Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).

kubectl prints the columns a server sends, and steve copies the cells positionally into the Rancher UI,
so the column sets follow upstream kube-apiserver's printers for the kinds people look at; every other
type gets the generic Name / Created At table, as a real server gives types without a printer.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterable
from typing import Any

from scaleagent.apiserver.kinds import ResourceType
from scaleagent.apiserver.selectors import format_label_selector

Obj = dict[str, Any]
Cell = Any
TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def _col(name: str, type_: str = "string", description: str = "", priority: int = 0, fmt: str = "") -> Obj:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
AGE = _col("Age", description="CreationTimestamp is when this object was created, as a duration until now.")


def human_duration(seconds: float) -> str:
    """kubectl's human-readable age ("5m", "3h20m", "12d", "2y10d")."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // (24 * 365)}y" if days == 0 else f"{hours // (24 * 365)}y{days}d"
    return f"{hours // (24 * 365)}y"


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.split(".")[0].rstrip("Z")
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def _age(value: Any, now: float) -> str:
    when = _parse_time(value)
    return "<unknown>" if when is None else human_duration(now - when)


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _created(obj: Obj, now: float) -> str:
    return _age(_meta(obj).get("creationTimestamp"), now)


def _selector_text(selector: Any) -> str:
    """A LabelSelector (or a plain map) the way kubectl prints it, "<none>" when empty."""
    if not isinstance(selector, dict) or not selector:
        return "<none>"
    return format_label_selector(selector) or "<none>"


def _containers(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    names = ",".join(c.get("name", "") for c in containers)
    images = ",".join(c.get("image", "") for c in containers)
    return names, images


def _template_spec(obj: Obj) -> Obj:
    return (_spec(obj).get("template") or {}).get("spec") or {}


# -- per-kind printers --------------------------------------------------------------------------------


def _pod_row(obj: Obj, now: float) -> list[Cell]:
    spec, st = _spec(obj), _status(obj)
    containers = spec.get("containers") or []
    statuses = st.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = st.get("reason") or st.get("phase") or "Pending"
    for c in statuses:
        state = c.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
    if _meta(obj).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    if gates:
        conditions = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        passed = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
        gates_text = f"{passed}/{len(gates)}"
    else:
        gates_text = "<none>"
    return [
        _meta(obj).get("name", ""),
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        _created(obj, now),
        st.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


def _node_row(obj: Obj, now: float) -> list[Cell]:
    st, info = _status(obj), _status(obj).get("nodeInfo") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else ("NotReady" if ready else "Unknown")
    if _spec(obj).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = _meta(obj).get("labels") or {}
    roles = sorted(
        {k[len("node-role.kubernetes.io/") :] for k in labels if k.startswith("node-role.kubernetes.io/")}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    addresses = st.get("addresses") or []

    def address(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "") or "<none>"

    return [
        _meta(obj).get("name", ""),
        state,
        ",".join(r for r in roles if r) or "<none>",
        _created(obj, now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _service_row(obj: Obj, now: float) -> list[Cell]:
    spec = _spec(obj)
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        external = spec.get("externalName") or "<none>"
    elif kind == "LoadBalancer":
        ingress = (_status(obj).get("loadBalancer") or {}).get("ingress") or []
        ips = [i.get("ip") or i.get("hostname") for i in ingress] + list(spec.get("externalIPs") or [])
        external = ",".join(i for i in ips if i) or "<pending>"
    else:
        external = ",".join(spec.get("externalIPs") or []) or "<none>"
    ports = []
    for p in spec.get("ports") or []:
        text = str(p.get("port", ""))
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        ports.append(f"{text}/{p.get('protocol') or 'TCP'}")
    return [
        _meta(obj).get("name", ""),
        kind,
        spec.get("clusterIP") or "<none>",
        external,
        ",".join(ports) or "<none>",
        _created(obj, now),
        _selector_text(spec.get("selector")),
    ]


def _deployment_row(obj: Obj, now: float) -> list[Cell]:
    spec, st = _spec(obj), _status(obj)
    names, images = _containers(_template_spec(obj))
    return [
        _meta(obj).get("name", ""),
        f"{int(st.get('readyReplicas') or 0)}/{int(spec.get('replicas', 1) or 0)}",
        int(st.get("updatedReplicas") or 0),
        int(st.get("availableReplicas") or 0),
        _created(obj, now),
        names,
        images,
        _selector_text(spec.get("selector")),
    ]


def _replicaset_row(obj: Obj, now: float) -> list[Cell]:
    spec, st = _spec(obj), _status(obj)
    names, images = _containers(_template_spec(obj))
    return [
        _meta(obj).get("name", ""),
        int(spec.get("replicas", 1) or 0),
        int(st.get("replicas") or 0),
        int(st.get("readyReplicas") or 0),
        _created(obj, now),
        names,
        images,
        _selector_text(spec.get("selector")),
    ]


def _statefulset_row(obj: Obj, now: float) -> list[Cell]:
    spec, st = _spec(obj), _status(obj)
    names, images = _containers(_template_spec(obj))
    ready = f"{int(st.get('readyReplicas') or 0)}/{int(spec.get('replicas', 1) or 0)}"
    return [_meta(obj).get("name", ""), ready, _created(obj, now), names, images]


def _daemonset_row(obj: Obj, now: float) -> list[Cell]:
    st = _status(obj)
    names, images = _containers(_template_spec(obj))
    node_selector = _template_spec(obj).get("nodeSelector")
    return [
        _meta(obj).get("name", ""),
        int(st.get("desiredNumberScheduled") or 0),
        int(st.get("currentNumberScheduled") or 0),
        int(st.get("numberReady") or 0),
        int(st.get("updatedNumberScheduled") or 0),
        int(st.get("numberAvailable") or 0),
        _selector_text(node_selector),
        _created(obj, now),
        names,
        images,
        _selector_text(_spec(obj).get("selector")),
    ]


def _namespace_row(obj: Obj, now: float) -> list[Cell]:
    return [_meta(obj).get("name", ""), _status(obj).get("phase") or "Active", _created(obj, now)]


def _secret_row(obj: Obj, now: float) -> list[Cell]:
    data = len(obj.get("data") or {}) + len(obj.get("stringData") or {})
    return [_meta(obj).get("name", ""), obj.get("type") or "Opaque", data, _created(obj, now)]


def _configmap_row(obj: Obj, now: float) -> list[Cell]:
    data = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_meta(obj).get("name", ""), data, _created(obj, now)]


def _serviceaccount_row(obj: Obj, now: float) -> list[Cell]:
    return [_meta(obj).get("name", ""), len(obj.get("secrets") or []), _created(obj, now)]


def _event_row(obj: Obj, now: float) -> list[Cell]:
    involved = obj.get("involvedObject") or {}
    source = obj.get("source") or {}
    source_text = source.get("component", "")
    if source.get("host"):
        source_text = f"{source_text}, {source['host']}"
    last = obj.get("lastTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    first = obj.get("firstTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    return [
        _age(last, now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        source_text,
        (obj.get("message") or "").strip(),
        _age(first, now),
        str(obj.get("count") or 1),
        _meta(obj).get("name", ""),
    ]


def _generic_row(obj: Obj, now: float) -> list[Cell]:
    return [_meta(obj).get("name", ""), _meta(obj).get("creationTimestamp", "")]


_TEMPLATE_COLS = (
    _col("Containers", description="Names of each container in the template.", priority=1),
    _col("Images", description="Images referenced by each container in the template.", priority=1),
)
_SELECTOR = _col("Selector", description="Label selector for pods.", priority=1)

Printer = tuple[tuple[Obj, ...], Callable[[Obj, float], list[Cell]]]

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "pods"): (
        (
            NAME,
            _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
            _col("Status", description="The aggregate status of the containers in this pod."),
            _col(
                "Restarts", description="The number of times the containers in this pod have been restarted."
            ),
            AGE,
            _col("IP", description="IP address allocated to the pod.", priority=1),
            _col("Node", description="The node the pod is scheduled onto.", priority=1),
            _col("Nominated Node", description="The node the scheduler nominated for this pod.", priority=1),
            _col("Readiness Gates", description="Pod readiness gates that passed.", priority=1),
        ),
        _pod_row,
    ),
    ("", "nodes"): (
        (
            NAME,
            _col("Status", description="The status of the node"),
            _col("Roles", description="The roles of the node"),
            AGE,
            _col("Version", description="Kubelet Version reported by the node."),
            _col("Internal-IP", description="The node's internal address.", priority=1),
            _col("External-IP", description="The node's external address.", priority=1),
            _col("OS-Image", description="OS Image reported by the node.", priority=1),
            _col("Kernel-Version", description="Kernel Version reported by the node.", priority=1),
            _col(
                "Container-Runtime", description="Container runtime version reported by the node.", priority=1
            ),
        ),
        _node_row,
    ),
    ("", "services"): (
        (
            NAME,
            _col("Type", description="How the service is exposed."),
            _col("Cluster-IP", description="The IP address of the service."),
            _col("External-IP", description="External addresses of the service."),
            _col("Port(s)", description="The ports the service exposes."),
            AGE,
            _SELECTOR,
        ),
        _service_row,
    ),
    ("apps", "deployments"): (
        (
            NAME,
            _col("Ready", description="Number of the pod with ready state"),
            _col("Up-to-date", "integer", "Total number of non-terminated pods with the desired template."),
            _col("Available", "integer", "Total number of available pods."),
            AGE,
            *_TEMPLATE_COLS,
            _SELECTOR,
        ),
        _deployment_row,
    ),
    ("apps", "replicasets"): (
        (
            NAME,
            _col("Desired", "integer", "Number of desired pods."),
            _col("Current", "integer", "The most recently observed number of replicas."),
            _col("Ready", "integer", "The number of ready replicas."),
            AGE,
            *_TEMPLATE_COLS,
            _SELECTOR,
        ),
        _replicaset_row,
    ),
    ("apps", "statefulsets"): (
        (NAME, _col("Ready", description="Number of the pod with ready state"), AGE, *_TEMPLATE_COLS),
        _statefulset_row,
    ),
    ("apps", "daemonsets"): (
        (
            NAME,
            _col("Desired", "integer", "The number of nodes that should run the daemon pod."),
            _col("Current", "integer", "The number of nodes running at least one daemon pod."),
            _col("Ready", "integer", "The number of nodes with a ready daemon pod."),
            _col("Up-to-date", "integer", "The number of nodes running the updated daemon pod."),
            _col("Available", "integer", "The number of nodes with an available daemon pod."),
            _col("Node Selector", description="The pods' node selector."),
            AGE,
            *_TEMPLATE_COLS,
            _SELECTOR,
        ),
        _daemonset_row,
    ),
    ("", "namespaces"): (
        (NAME, _col("Status", description="The status of the namespace"), AGE),
        _namespace_row,
    ),
    ("", "secrets"): (
        (
            NAME,
            _col("Type", description="Used to facilitate programmatic handling of secret data."),
            _col("Data", description="The number of data entries."),
            AGE,
        ),
        _secret_row,
    ),
    ("", "configmaps"): (
        (NAME, _col("Data", description="The number of data entries."), AGE),
        _configmap_row,
    ),
    ("", "serviceaccounts"): (
        (NAME, _col("Secrets", description="The number of secrets listed."), AGE),
        _serviceaccount_row,
    ),
    ("", "events"): (
        (
            _col("Last Seen", description="The time at which the most recent occurrence was recorded."),
            _col("Type", description="Type of this event (Normal, Warning)."),
            _col("Reason", description="Why the action was taken."),
            _col("Object", description="The object this event is about."),
            _col("Subobject", description="The part of the object the event is about.", priority=1),
            _col("Source", description="The component reporting this event.", priority=1),
            _col("Message", description="A human-readable description."),
            _col("First Seen", description="The time at which the event was first recorded.", priority=1),
            _col("Count", description="The number of times this event has occurred.", priority=1),
            _col("Name", fmt="name", description="Name must be unique within a namespace.", priority=1),
        ),
        _event_row,
    ),
}

GENERIC: Printer = (
    (NAME, _col("Created At", "date", "CreationTimestamp is when this object was created.")),
    _generic_row,
)


def printer(rt: ResourceType) -> Printer:
    """The columns and row function for a type (the generic Name / Created At for the rest)."""
    return PRINTERS.get(rt.storage_key, GENERIC)


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    rt: ResourceType,
    objects: Iterable[Obj],
    *,
    now: float,
    include_object: str = "Metadata",
    resource_version: str = "",
    continue_token: str = "",
    remaining: int | None = None,
    with_columns: bool = True,
) -> Obj:
    """A `meta.k8s.io/v1` Table of `objects`; `include_object` is Metadata (default), Object or None."""
    columns, row_of = printer(rt)
    rows = []
    for obj in objects:
        row: Obj = {"cells": row_of(obj, now)}
        inner = _row_object(obj, include_object)
        if inner is not None:
            row["object"] = inner
        rows.append(row)
    meta: Obj = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    out: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    out["columnDefinitions"] = list(columns) if with_columns else []
    out["rows"] = rows
    return out
