"""`metadata.state` and `metadata.relationships` the way steve computes them for the Rancher UI.

steve runs every object through wrangler's summary rules (`pkg/summary`: a fixed chain of summarizers
over the object's conditions, phase and kind, falling back to kstatus' readiness rules) and turns the
relationships they find into `{toId, toType, rel, ...}` / `{fromId, fromType, rel, ...}` records
(`pkg/summarycache`).  This module is that chain, pure and stateless: objects in, small values out.
The UI colours list rows and detail pages from `state.name`, `state.error` and `state.transitioning`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]

# Condition types whose "Unknown" means transitioning and "False" an error (wrangler's
# TransitioningUnknown), with the state they give.
UNKNOWN_TRANSITIONING = {
    "Active": "activating",
    "AddonDeploy": "provisioning",
    "AgentDeployed": "provisioning",
    "BackingNamespaceCreated": "configuring",
    "Built": "building",
    "CertsGenerated": "provisioning",
    "ConfigOK": "configuring",
    "Created": "creating",
    "CreatorMadeOwner": "configuring",
    "DefaultNamespaceAssigned": "configuring",
    "DefaultNetworkPolicyCreated": "configuring",
    "DefaultProjectCreated": "configuring",
    "DockerProvisioned": "provisioning",
    "Deployed": "deploying",
    "Drained": "draining",
    "Downloaded": "downloading",
    "etcd": "provisioning",
    "Inactive": "deactivating",
    "Initialized": "initializing",
    "Installed": "installing",
    "NodesCreated": "provisioning",
    "Pending": "pending",
    "PodScheduled": "scheduling",
    "Provisioned": "provisioning",
    "Reconciled": "reconciling",
    "Refreshed": "refreshed",
    "Registered": "registering",
    "Removed": "removing",
    "Saved": "saving",
    "Updated": "updating",
    "Updating": "updating",
    "Upgraded": "upgrading",
    "Waiting": "waiting",
    "InitialRolesPopulated": "activating",
    "ScalingActive": "pending",
    "AbleToScale": "pending",
    "RunCompleted": "running",
    "Processed": "processed",
}
_REASON = "%REASON%"
# "False" means transitioning, "Unknown" an error (TransitioningFalse).
FALSE_TRANSITIONING = {
    "Completed": "activating",
    "Ready": "unavailable",
    "Available": "updating",
    "BootstrapReady": _REASON,
    "InfrastructureReady": _REASON,
    "NodeHealthy": _REASON,
}
# "True" means transitioning (TransitioningTrue).
TRUE_TRANSITIONING = {"Reconciling": "reconciling"}

# Which condition statuses are errors, per kind, with a fallback for every other kind.
_ERROR_BY_KIND: dict[tuple[str, str], dict[str, frozenset[str]]] = {
    ("helm.cattle.io/v1", "HelmChart"): {"JobCreated": frozenset(), "Failed": frozenset({"True"})},
    ("v1", "Node"): {
        "MemoryPressure": frozenset({"True"}),
        "DiskPressure": frozenset({"True"}),
        "NetworkUnavailable": frozenset({"True"}),
    },
    ("apps/v1", "Deployment"): {
        "ReplicaFailure": frozenset({"True"}),
        "Stalled": frozenset({"True"}),
        "Progressing": frozenset({"False"}),
    },
}
_ERROR_FALLBACK = {
    name: frozenset({"True"})
    for name in (
        "OutOfDisk",
        "MemoryPressure",
        "DiskPressure",
        "NetworkUnavailable",
        "Unschedulable",
        "ReplicaFailure",
        "Stalled",
        "Failed",
    )
}


@dataclass(slots=True)
class Relationship:
    """One edge wrangler finds on an object (before steve resolves ids)."""

    kind: str
    api_version: str
    type: str
    name: str = ""
    namespace: str = ""
    inbound: bool = False
    controlled_by: bool = False
    selector: Mapping[str, Any] | None = None


@dataclass(slots=True)
class Summary:
    state: str = ""
    error: bool = False
    transitioning: bool = False
    message: list[str] = field(default_factory=list)
    relationships: list[Relationship] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        """`metadata.state` as steve writes it (messages joined with ":")."""
        return {
            "name": self.state,
            "error": self.error,
            "transitioning": self.transitioning,
            "message": ":".join(self.message),
        }


def _map(obj: Any, *path: str) -> Mapping[str, Any]:
    for key in path:
        if not isinstance(obj, Mapping):
            return {}
        obj = obj.get(key)
    return obj if isinstance(obj, Mapping) else {}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _str(obj: Any, *path: str) -> str:
    value = _get(obj, *path)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _list(obj: Any, *path: str) -> list[Any]:
    value = _get(obj, *path)
    return value if isinstance(value, list) else []


def _int(obj: Any, path: tuple[str, ...], default: int) -> int:
    value = _get(obj, *path)
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


def conditions(obj: Obj) -> list[Condition]:
    """`status.conditions` as (type, status, reason, message); malformed entries skipped."""
    out = []
    for item in _list(obj, "status", "conditions"):
        if isinstance(item, Mapping):
            out.append(_condition(item))
    return out


def _condition(item: Mapping[str, Any]) -> Condition:
    return Condition(_str(item, "type"), _str(item, "status"), _str(item, "reason"), _str(item, "message"))


# -- the summarizer chain (order matters: each sees what the previous ones decided) ------------------

Step = Callable[[Obj, list[Condition], Summary], None]


def _status_summary(obj: Obj, _c: list[Condition], s: Summary) -> None:
    display = _map(obj, "status", "display") or _map(obj, "status", "summary")
    if not display:
        return
    if "state" in display:
        s.state = _str(display, "state")
    if "transitioning" in display:
        s.transitioning = display.get("transitioning") is True
    if "error" in display:
        s.error = display.get("error") is True
    if "message" in display:
        s.message.append(_str(display, "message"))


def _errors(obj: Obj, conds: list[Condition], s: Summary) -> None:
    if not conds:
        return
    mapping = _ERROR_BY_KIND.get((_str(obj, "apiVersion"), _str(obj, "kind")), _ERROR_FALLBACK)
    for c in conds:
        statuses = mapping.get(c.type)
        if statuses is not None and c.status in statuses:
            s.error = True
            s.message.append(c.message)
            if s.state in ("active", ""):
                s.state = "error"


def _transitioning(_obj: Obj, conds: list[Condition], s: Summary) -> None:
    for c in conds:
        new = UNKNOWN_TRANSITIONING.get(c.type)
        if new is None:
            continue
        if c.status == "False":
            s.error, s.state = True, new
            s.message.append(c.message)
        elif c.status == "Unknown" and s.state == "":
            s.transitioning, s.state = True, new
            s.message.append(c.message)
    for c in conds:
        if s.state:
            break
        new = TRUE_TRANSITIONING.get(c.type)
        if new is not None and c.status == "True":
            s.transitioning, s.state = True, new
            s.message.append(c.message)
    ready, ready_message = True, ""
    for c in conds:
        if s.state:
            break
        if c.type == "Ready" and c.status == "False":
            ready, ready_message = False, c.message
            continue
        new = FALSE_TRANSITIONING.get(c.type)
        if new is None:
            continue
        if new == _REASON:
            new = c.reason
        if c.status == "False":
            s.transitioning, s.state = True, new
            s.message.append(c.message)
        elif c.status == "Unknown":
            s.error, s.state = True, new
            s.message.append(c.message)
    if not s.state and not ready:
        s.transitioning, s.state = True, "unavailable"
        s.message.append(ready_message)


def _active(obj: Obj, _c: list[Condition], s: Summary) -> None:
    if s.state:
        return
    value = _get(obj, "spec", "active")
    if value is True or value == "true":
        s.state = "active"
    elif value is False or value == "false":
        s.state = "inactive"


def _phase(obj: Obj, _c: list[Condition], s: Summary) -> None:
    phase = _str(obj, "status", "phase")
    if phase == "Succeeded":
        s.state, s.transitioning = "succeeded", False
    elif phase == "Bound":
        s.state, s.transitioning = "bound", False
    elif phase and not s.state:
        s.state = phase


def _removing(obj: Obj, conds: list[Condition], s: Summary) -> None:
    # wrangler reads norman's metadata.removed, which Kubernetes objects never carry; kstatus
    # (in _standard) reports deletionTimestamp instead.
    if not _str(obj, "metadata", "removed"):
        return
    s.state, s.transitioning = "removing", True


def _standard(obj: Obj, conds: list[Condition], s: Summary) -> None:
    if s.state:
        return
    if _str(obj, "type").startswith("/"):
        return
    status, message = kstatus(obj, conds)
    if status == "InProgress":
        s.state, s.transitioning = "in-progress", True
    elif status == "Failed":
        s.state, s.error = "failed", True
    elif status == "Current":
        s.state = "active"
    elif status == "Terminating":
        s.state, s.transitioning = "removing", True
    else:
        return
    s.message.append(message)


def _load_balancer(obj: Obj, _c: list[Condition], s: Summary) -> None:
    if s.state not in ("active", "") or _str(obj, "kind") != "Service":
        return
    if "LoadBalancer" in (_str(obj, "spec", "serviceKind"), _str(obj, "spec", "type")):
        if not _list(obj, "status", "loadBalancer", "ingress"):
            s.state, s.transitioning = "pending", True
            s.message.append("Load balancer is being provisioned")


def _is_kind(obj: Obj, kind: str, *groups: str) -> bool:
    """wrangler's isKind: core when no groups; "apps/" style prefixes match apiVersion."""
    if _str(obj, "kind") != kind:
        return False
    api_version = _str(obj, "apiVersion")
    if not groups:
        return api_version == "v1"
    return any(api_version.startswith(g) for g in groups if g.endswith("/"))


_WORKLOADS = (
    ("ReplicaSet", ("apps/", "extension/")),
    ("DaemonSet", ("apps/", "extension/")),
    ("StatefulSet", ("apps/", "extension/")),
    ("Deployment", ("apps/", "extension/")),
    ("Job", ("batch/",)),
)


def _is_workload_or_service(obj: Obj) -> bool:
    return any(_is_kind(obj, kind, *groups) for kind, groups in _WORKLOADS) or _is_kind(obj, "Service")


def _uses(s: Summary, kind: str, name: str) -> None:
    s.relationships.append(Relationship(kind=kind, api_version="v1", type="uses", name=name))


def _pod_template(pod: Obj, s: Summary) -> None:
    """ConfigMaps, Secrets, service account, projected volumes and pull secrets a pod spec uses."""
    for kind, ref, volume_path in (
        ("ConfigMap", "configMap", ("configMap", "name")),
        ("Secret", "secret", ("secret", "secretName")),
    ):
        seen: set[str] = set()
        for vol in _list(pod, "spec", "volumes"):
            name = _str(vol, *volume_path)
            if name and name not in seen:
                seen.add(name)
                _uses(s, kind, name)
        for container in _list(pod, "spec", "containers"):
            for env in _list(container, "envFrom"):
                name = _str(env, ref + "Ref", "name")
                if name and name not in seen:
                    seen.add(name)
                    _uses(s, kind, name)
            for env in _list(container, "env"):
                name = _str(env, "valueFrom", ref + "KeyRef", "name")
                if name and name not in seen:
                    seen.add(name)
                    _uses(s, kind, name)
    _uses(s, "ServiceAccount", _str(pod, "spec", "serviceAccountName"))
    for vol in _list(pod, "spec", "volumes"):
        for source in _list(vol, "projected", "sources"):
            if name := _str(source, "secret", "name"):
                _uses(s, "Secret", name)
            if name := _str(source, "configMap", "name"):
                _uses(s, "ConfigMap", name)
    for secret in _list(pod, "imagePullSecrets"):
        if name := _str(secret, "name"):
            _uses(s, "Secret", name)


def _pod(obj: Obj, _c: list[Condition], s: Summary) -> None:
    if _is_kind(obj, "Pod"):
        _pod_template(obj, s)


def _pod_selector(obj: Obj, _c: list[Condition], s: Summary) -> None:
    selector = _map(obj, "spec", "selector")
    if not selector or not _is_workload_or_service(obj):
        return
    if "matchLabels" in selector or "matchExpressions" in selector:
        sel: Mapping[str, Any] = selector
    else:
        sel = {"matchLabels": {k: _str(selector, k) for k in selector}}
    rel = "selects" if obj.get("kind") == "Service" else "creates"
    s.relationships.append(Relationship(kind="Pod", api_version="v1", type=rel, selector=sel))


def _pod_template_owner(obj: Obj, _c: list[Condition], s: Summary) -> None:
    template = _map(obj, "spec", "template")
    if template and _is_workload_or_service(obj):
        _pod_template(template, s)


def _owner(obj: Obj, _c: list[Condition], s: Summary) -> None:
    for ref in _list(obj, "metadata", "ownerReferences"):
        if not isinstance(ref, Mapping):
            continue
        s.relationships.append(
            Relationship(
                kind=_str(ref, "kind"),
                api_version=_str(ref, "apiVersion"),
                type="owner",
                name=_str(ref, "name"),
                inbound=True,
                controlled_by=ref.get("controller") is True,
            )
        )


def _apply_owned(obj: Obj, _c: list[Condition], s: Summary) -> None:
    if _list(obj, "metadata", "ownerReferences"):
        return
    annotations = _map(obj, "metadata", "annotations")
    gvk = _str(annotations, "objectset.rio.cattle.io/owner-gvk")
    sep = ", Kind="
    i = gvk.find(sep)
    if i <= 0:
        return
    s.relationships.append(
        Relationship(
            kind=gvk[i + len(sep) :],
            api_version=gvk[:i],
            type="applies",
            name=_str(annotations, "objectset.rio.cattle.io/owner-name"),
            namespace=_str(annotations, "objectset.rio.cattle.io/owner-namespace"),
            inbound=True,
        )
    )


CHAIN: tuple[Step, ...] = (
    _status_summary,
    _errors,
    _transitioning,
    _active,
    _phase,
    _removing,
    _standard,
    _load_balancer,
    _pod,
    _pod_selector,
    _pod_template_owner,
    _owner,
    _apply_owned,
)


def summarize(obj: Obj) -> Summary:
    """wrangler's `summary.Summarize` for one object: state lower-cased, messages trimmed and deduped."""
    conds = conditions(obj)
    s = Summary()
    for step in CHAIN:
        step(obj, conds, s)
    s.state = (s.state or "active").lower()
    seen: set[str] = set()
    messages = []
    for message in s.message:
        message = message.strip()
        if message and message not in seen:
            seen.add(message)
            messages.append(message)
    s.message = messages
    return s


def normalize_conditions(obj: dict[str, Any]) -> None:
    """steve's NormalizeConditions: each condition gains `error`, `transitioning` and a
    `lastUpdateTime` (copied from lastTransitionTime).  `obj` must be the caller's own copy; the
    conditions list and its items are replaced, never mutated."""
    status = obj.get("status")
    if not isinstance(status, Mapping) or not isinstance(status.get("conditions"), list):
        return
    out = []
    for item in status["conditions"]:
        if not isinstance(item, Mapping):
            out.append(item)
            continue
        c = _condition(item)
        s = Summary()
        _errors(obj, [c], s)
        _transitioning(obj, [c], s)
        new = dict(item)
        new["error"] = s.error
        new["transitioning"] = s.transitioning
        if not _str(item, "lastUpdateTime"):
            new["lastUpdateTime"] = _str(item, "lastTransitionTime")
        out.append(new)
    obj["status"] = {**status, "conditions": out}


# -- kstatus (sigs.k8s.io/cli-utils), the part wrangler's checkStandard consults ----------------------


def kstatus(obj: Obj, conds: list[Condition]) -> tuple[str, str]:
    """(Current | InProgress | Failed | Terminating, message) as kstatus.Compute decides them."""
    if _get(obj, "metadata", "deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    generation = _get(obj, "metadata", "generation")
    observed = _get(obj, "status", "observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed != generation:
        kind = _str(obj, "kind")
        message = f"{kind} generation is {generation}, but latest observed generation is {observed}"
        return "InProgress", message
    for c in conds:
        if c.type == "Reconciling" and c.status == "True":
            return "InProgress", c.message
        if c.type == "Stalled" and c.status == "True":
            return "Failed", c.message
    api_version = _str(obj, "apiVersion")
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    legacy = _LEGACY.get((group, _str(obj, "kind")))
    if legacy is not None:
        return legacy(obj, conds)
    for c in conds:
        if c.type == "Ready":
            if c.status == "True":
                return "Current", "Resource is Ready"
            return "InProgress", "Resource not Ready"
    return "Current", "Resource is current"


def _always_ready(_obj: Obj, _c: list[Condition]) -> tuple[str, str]:
    return "Current", "Resource is always ready"


def _replicas(obj: Obj, path: str, default: int = 0) -> int:
    return _int(obj, tuple(path.split(".")), default)


def _deployment(obj: Obj, conds: list[Condition]) -> tuple[str, str]:
    progressing = _get(obj, "spec", "progressDeadlineSeconds") is None
    available = False
    for c in conds:
        if c.type == "Progressing":
            if c.reason == "ProgressDeadlineExceeded":
                return "Failed", "Progress deadline exceeded"
            if c.status == "True" and c.reason == "NewReplicaSetAvailable":
                progressing = True
        elif c.type == "Available" and c.status == "True":
            available = True
    spec = _replicas(obj, "spec.replicas", 1)
    current = _replicas(obj, "status.replicas")
    updated = _replicas(obj, "status.updatedReplicas")
    ready = _replicas(obj, "status.readyReplicas")
    avail = _replicas(obj, "status.availableReplicas")
    if spec > current:
        return "InProgress", f"Replicas: {current}/{spec}"
    if spec > updated:
        return "InProgress", f"Updated: {updated}/{spec}"
    if current > spec:
        return "InProgress", f"Pending termination: {current - spec}"
    if updated > avail:
        return "InProgress", f"Available: {avail}/{updated}"
    if spec > ready:
        return "InProgress", f"Ready: {ready}/{spec}"
    if not progressing:
        return "InProgress", "ReplicaSet not Available"
    if not available:
        return "InProgress", "Deployment not Available"
    return "Current", f"Deployment is available. Replicas: {current}"


def _replicaset(obj: Obj, conds: list[Condition]) -> tuple[str, str]:
    for c in conds:
        if c.type == "ReplicaFailure" and c.status == "True":
            return "InProgress", "Replica Failure condition. Check Pods"
    spec = _replicas(obj, "spec.replicas", 1)
    current = _replicas(obj, "status.replicas")
    ready = _replicas(obj, "status.readyReplicas")
    avail = _replicas(obj, "status.availableReplicas")
    labelled = _replicas(obj, "status.fullyLabeledReplicas")
    if spec > labelled:
        return "InProgress", f"Labelled: {labelled}/{spec}"
    if spec > avail:
        return "InProgress", f"Available: {avail}/{spec}"
    if spec > ready:
        return "InProgress", f"Ready: {ready}/{spec}"
    if current > spec:
        return "InProgress", f"Pending termination: {current - spec}"
    return "Current", f"ReplicaSet is available. Replicas: {current}"


def _daemonset(obj: Obj, _c: list[Condition]) -> tuple[str, str]:
    kind = _str(obj, "kind")
    if not isinstance(_get(obj, "metadata", "generation"), int):
        return "InProgress", f"{kind} metadata.generation not found"
    if not isinstance(_get(obj, "status", "observedGeneration"), int):
        return "InProgress", f"{kind} status.observedGeneration not found"
    desired = _replicas(obj, "status.desiredNumberScheduled", -1)
    if desired == -1:
        return "InProgress", "Missing .status.desiredNumberScheduled"
    for field_name, label in (
        ("currentNumberScheduled", "Current"),
        ("updatedNumberScheduled", "Updated"),
        ("numberAvailable", "Available"),
        ("numberReady", "Ready"),
    ):
        have = _replicas(obj, "status." + field_name)
        if desired > have:
            return "InProgress", f"{label}: {have}/{desired}"
    return "Current", f"All replicas scheduled as expected. Replicas: {desired}"


def _statefulset(obj: Obj, _c: list[Condition]) -> tuple[str, str]:
    if _str(obj, "spec", "updateStrategy", "type") == "OnDelete":
        return "Current", "StatefulSet is using the ondelete update strategy"
    spec = _replicas(obj, "spec.replicas", 1)
    ready = _replicas(obj, "status.readyReplicas")
    current_replicas = _replicas(obj, "status.currentReplicas")
    current = _replicas(obj, "status.replicas")
    if spec > current:
        return "InProgress", f"Replicas: {current}/{spec}"
    if spec > ready:
        return "InProgress", f"Ready: {ready}/{spec}"
    if current > spec:
        return "InProgress", f"Pending termination: {current - spec}"
    if spec > current_replicas:
        return "InProgress", f"current: {current_replicas}/{spec}"
    if _str(obj, "status", "currentRevision") != _str(obj, "status", "updateRevision"):
        return "InProgress", "Waiting for updated revision to match current"
    return "Current", f"All replicas scheduled as expected. Replicas: {current}"


def _pod_status(obj: Obj, conds: list[Condition]) -> tuple[str, str]:
    phase = _str(obj, "status", "phase")
    if phase == "Succeeded":
        return "Current", "Pod has completed successfully"
    if phase == "Failed":
        return "Current", "Pod has completed, but not successfully"
    if phase == "Running":
        if any(c.type == "Ready" and c.status == "True" for c in conds):
            return "Current", "Pod is Ready"
        return "InProgress", "Pod is running but is not Ready"
    if phase == "Pending":
        return "InProgress", "Pod is in the Pending phase"
    return "InProgress", f"Pod phase not available: {phase}" if phase else "Pod phase not available"


def _service(obj: Obj, _c: list[Condition]) -> tuple[str, str]:
    if _str(obj, "spec", "type") == "LoadBalancer" and not _str(obj, "spec", "clusterIP"):
        return "InProgress", "ClusterIP not set"
    return "Current", "Service is ready"


def _pvc(obj: Obj, _c: list[Condition]) -> tuple[str, str]:
    phase = _str(obj, "status", "phase") or "unknown"
    if phase != "Bound":
        return "InProgress", f"PVC is not Bound. phase: {phase}"
    return "Current", "PVC is Bound"


def _job(obj: Obj, conds: list[Condition]) -> tuple[str, str]:
    for c in conds:
        if c.type == "Complete" and c.status == "True":
            done, want = _replicas(obj, "status.succeeded"), _replicas(obj, "spec.completions", 1)
            return "Current", f"Job Completed. succeeded: {done}/{want}"
        if c.type == "Failed" and c.status == "True":
            failed, limit = _replicas(obj, "status.failed"), _replicas(obj, "spec.backoffLimit", 6)
            return "Failed", f"Job Failed. failed: {failed}/{limit}"
    return "InProgress", "Job in progress"


def _crd(_obj: Obj, conds: list[Condition]) -> tuple[str, str]:
    for c in conds:
        if c.type == "NamesAccepted" and c.status == "False":
            return "Failed", c.message
        if c.type == "Established":
            if c.status == "True":
                return "Current", "CRD is established"
            return "InProgress", "CRD is not established"
    return "InProgress", "Install in progress"


def _pdb(_obj: Obj, _c: list[Condition]) -> tuple[str, str]:
    return "Current", "AllowedDisruptions has been computed."


_LEGACY: dict[tuple[str, str], Callable[[Obj, list[Condition]], tuple[str, str]]] = {
    ("", "Service"): _service,
    ("", "Pod"): _pod_status,
    ("", "Secret"): _always_ready,
    ("", "ConfigMap"): _always_ready,
    ("", "PersistentVolumeClaim"): _pvc,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("extensions", "DaemonSet"): _daemonset,
    ("apps", "Deployment"): _deployment,
    ("extensions", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replicaset,
    ("extensions", "ReplicaSet"): _replicaset,
    ("policy", "PodDisruptionBudget"): _pdb,
    ("batch", "CronJob"): _always_ready,
    ("batch", "Job"): _job,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
}


