"""The resource types a Kubernetes 1.32 apiserver serves, and a per-cluster registry of them.

Discovery, routing, Tables and the store all look types up here.  The built-in list is one shared,
immutable table; a cluster's `Registry` only allocates its own maps once a CustomResourceDefinition
registers a type (copy-on-write), so thousands of clusters share one set of built-ins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True, slots=True)
class Subresource:
    """A subresource such as `pods/status`; `group`/`version` set only when its kind lives elsewhere."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One resource in one group-version, with what discovery announces for it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    singular: str = ""
    #: field selectors this type supports beyond metadata.name/metadata.namespace
    field_labels: tuple[str, ...] = ()
    #: the CRD that defined this type, None for built-ins
    crd: str | None = None

    def __post_init__(self) -> None:
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())

    @property
    def api_version(self) -> str:
        """`v1` for core, else `group/version`."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are stored per (group, plural): every version of a type shares them."""
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """`deployments.apps`, or `pods` for core: how messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def watchable(self) -> bool:
        return "watch" in self.verbs and "list" in self.verbs

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None


def _st(kind: str) -> Subresource:
    return Subresource("status", kind, STATUS_VERBS)


def _scale() -> Subresource:
    return Subresource("scale", "Scale", STATUS_VERBS, group="autoscaling", version="v1")


_PROXY = ("create", "delete", "get", "patch", "update")
_CONNECT = ("create", "get")

_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


def _core(kind: str, plural: str, namespaced: bool = True, **kw) -> ResourceType:
    return ResourceType("", "v1", kind, plural, namespaced, **kw)


def _g(group: str, version: str, kind: str, plural: str, namespaced: bool = True, **kw) -> ResourceType:
    return ResourceType(group, version, kind, plural, namespaced, **kw)


_ADMISSION = "admissionregistration.k8s.io"
_RBAC = "rbac.authorization.k8s.io"
_EXT = ("api-extensions",)

#: Every built-in type of a 1.32 apiserver, in discovery order (groups in preference order).
BUILTIN_TYPES: tuple[ResourceType, ...] = (
    # core/v1
    _core("Binding", "bindings", verbs=CREATE_ONLY),
    _core("ComponentStatus", "componentstatuses", False, verbs=("get", "list"), short_names=("cs",)),
    _core("ConfigMap", "configmaps", short_names=("cm",)),
    _core("Endpoints", "endpoints", short_names=("ep",), singular="endpoints"),
    _core("Event", "events", short_names=("ev",), field_labels=_EVENT_FIELDS),
    _core("LimitRange", "limitranges", short_names=("limits",)),
    _core(
        "Namespace",
        "namespaces",
        False,
        verbs=NO_COLLECTION_DELETE,
        short_names=("ns",),
        subresources=(Subresource("finalize", "Namespace", ("update",)), _st("Namespace")),
        field_labels=("status.phase",),
    ),
    _core(
        "Node",
        "nodes",
        False,
        short_names=("no",),
        subresources=(Subresource("proxy", "NodeProxyOptions", _PROXY), _st("Node")),
        field_labels=("spec.unschedulable",),
    ),
    _core(
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        short_names=("pvc",),
        subresources=(_st("PersistentVolumeClaim"),),
    ),
    _core(
        "PersistentVolume",
        "persistentvolumes",
        False,
        short_names=("pv",),
        subresources=(_st("PersistentVolume"),),
    ),
    _core(
        "Pod",
        "pods",
        short_names=("po",),
        categories=("all",),
        subresources=(
            Subresource("attach", "PodAttachOptions", _CONNECT),
            Subresource("binding", "Binding", CREATE_ONLY),
            Subresource("ephemeralcontainers", "Pod", STATUS_VERBS),
            Subresource("eviction", "Eviction", CREATE_ONLY, group="policy", version="v1"),
            Subresource("exec", "PodExecOptions", _CONNECT),
            Subresource("log", "Pod", ("get",)),
            Subresource("portforward", "PodPortForwardOptions", _CONNECT),
            Subresource("proxy", "PodProxyOptions", _PROXY),
            _st("Pod"),
        ),
        field_labels=_POD_FIELDS,
    ),
    _core("PodTemplate", "podtemplates"),
    _core(
        "ReplicationController",
        "replicationcontrollers",
        short_names=("rc",),
        categories=("all",),
        subresources=(_scale(), _st("ReplicationController")),
        field_labels=("status.replicas",),
    ),
    _core("ResourceQuota", "resourcequotas", short_names=("quota",), subresources=(_st("ResourceQuota"),)),
    _core("Secret", "secrets", field_labels=("type",)),
    _core(
        "ServiceAccount",
        "serviceaccounts",
        short_names=("sa",),
        subresources=(
            Subresource("token", "TokenRequest", CREATE_ONLY, group="authentication.k8s.io", version="v1"),
        ),
    ),
    _core(
        "Service",
        "services",
        short_names=("svc",),
        categories=("all",),
        subresources=(Subresource("proxy", "ServiceProxyOptions", _PROXY), _st("Service")),
    ),
    # apiregistration.k8s.io/v1
    _g(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        False,
        categories=_EXT,
        subresources=(_st("APIService"),),
    ),
    # apps/v1
    _g("apps", "v1", "ControllerRevision", "controllerrevisions"),
    _g(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        short_names=("ds",),
        categories=("all",),
        subresources=(_st("DaemonSet"),),
    ),
    _g(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short_names=("deploy",),
        categories=("all",),
        subresources=(_scale(), _st("Deployment")),
    ),
    _g(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        short_names=("rs",),
        categories=("all",),
        subresources=(_scale(), _st("ReplicaSet")),
        field_labels=("status.replicas",),
    ),
    _g(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        short_names=("sts",),
        categories=("all",),
        subresources=(_scale(), _st("StatefulSet")),
    ),
    # events.k8s.io/v1
    _g("events.k8s.io", "v1", "Event", "events", short_names=("ev",), field_labels=_EVENT_FIELDS),
    # authentication.k8s.io/v1
    _g("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False, verbs=CREATE_ONLY),
    _g("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=CREATE_ONLY),
    # authorization.k8s.io/v1
    _g(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        verbs=CREATE_ONLY,
    ),
    _g(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=CREATE_ONLY,
    ),
    _g(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        False,
        verbs=CREATE_ONLY,
    ),
    _g("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False, verbs=CREATE_ONLY),
    # autoscaling/v2 (preferred) and v1
    _g(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=("hpa",),
        categories=("all",),
        subresources=(_st("HorizontalPodAutoscaler"),),
    ),
    _g(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=("hpa",),
        categories=("all",),
        subresources=(_st("HorizontalPodAutoscaler"),),
    ),
    # batch/v1
    _g(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        short_names=("cj",),
        categories=("all",),
        subresources=(_st("CronJob"),),
    ),
    _g(
        "batch",
        "v1",
        "Job",
        "jobs",
        categories=("all",),
        subresources=(_st("Job"),),
        field_labels=("status.successful",),
    ),
    # certificates.k8s.io/v1
    _g(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        False,
        short_names=("csr",),
        subresources=(
            Subresource("approval", "CertificateSigningRequest", STATUS_VERBS),
            _st("CertificateSigningRequest"),
        ),
        field_labels=("spec.signerName",),
    ),
    # networking.k8s.io/v1
    _g("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _g(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        short_names=("ing",),
        subresources=(_st("Ingress"),),
    ),
    _g("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",)),
    # policy/v1
    _g(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short_names=("pdb",),
        subresources=(_st("PodDisruptionBudget"),),
    ),
    # rbac.authorization.k8s.io/v1
    _g(_RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _g(_RBAC, "v1", "ClusterRole", "clusterroles", False),
    _g(_RBAC, "v1", "RoleBinding", "rolebindings"),
    _g(_RBAC, "v1", "Role", "roles"),
    # storage.k8s.io/v1
    _g("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False),
    _g("storage.k8s.io", "v1", "CSINode", "csinodes", False),
    _g("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities"),
    _g("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, short_names=("sc",)),
    _g(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        False,
        subresources=(_st("VolumeAttachment"),),
    ),
    # admissionregistration.k8s.io/v1
    _g(
        _ADMISSION,
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
        categories=_EXT,
    ),
    _g(
        _ADMISSION,
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        False,
        categories=_EXT,
        subresources=(_st("ValidatingAdmissionPolicy"),),
    ),
    _g(
        _ADMISSION,
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        False,
        categories=_EXT,
    ),
    _g(
        _ADMISSION,
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
        categories=_EXT,
    ),
    # apiextensions.k8s.io/v1
    _g(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        short_names=("crd", "crds"),
        categories=_EXT,
        subresources=(_st("CustomResourceDefinition"),),
    ),
    # scheduling.k8s.io/v1
    _g("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, short_names=("pc",)),
    # coordination.k8s.io/v1
    _g("coordination.k8s.io", "v1", "Lease", "leases"),
    # node.k8s.io/v1
    _g("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False),
    # discovery.k8s.io/v1
    _g("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    # flowcontrol.apiserver.k8s.io/v1
    _g(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "FlowSchema",
        "flowschemas",
        False,
        subresources=(_st("FlowSchema"),),
    ),
    _g(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        False,
        subresources=(_st("PriorityLevelConfiguration"),),
    ),
)


@dataclass(slots=True)
class _Tables:
    """The lookup maps of a set of types; shared between registries until one of them changes."""

    types: list[ResourceType] = field(default_factory=list)
    by_resource: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    by_kind: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    versions: dict[str, list[str]] = field(default_factory=dict)
    #: documents derived from these types (discovery, OpenAPI), shared by every registry using them
    cache: dict[object, object] = field(default_factory=dict)

    @classmethod
    def build(cls, types: Iterable[ResourceType]) -> _Tables:
        tables = cls()
        for rt in types:
            tables.add(rt)
        return tables

    def add(self, rt: ResourceType) -> None:
        self.cache.clear()
        self.types.append(rt)
        self.by_resource[(rt.group, rt.version, rt.plural)] = rt
        self.by_kind[(rt.group, rt.version, rt.kind)] = rt
        versions = self.versions.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)


_BUILTIN = _Tables.build(BUILTIN_TYPES)


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` → ("apps", "v1"); `v1` → ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


class Registry:
    """The types one cluster serves: the shared built-ins plus the CRD-defined types it registered.

    `generation` increases on every change, so discovery and OpenAPI documents can be cached per value.
    """

    __slots__ = ("_tables", "_own", "generation")

    def __init__(self) -> None:
        self._tables = _BUILTIN
        self._own = False
        self.generation = 0

    # -- lookups -------------------------------------------------------------------------------------

    def by_resource(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at `/apis/<group>/<version>/<plural>`, or None."""
        return self._tables.by_resource.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        return self._tables.by_kind.get((group, version, kind))

    def by_api_version_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The type of an object with this `apiVersion` and `kind`, or None."""
        group, version = split_api_version(api_version)
        return self.by_kind(group, version, kind)

    def preferred(self, group: str, plural: str) -> ResourceType | None:
        """The type for (group, plural) in the group's preferred version."""
        for version in self._tables.versions.get(group, ()):
            rt = self.by_resource(group, version, plural)
            if rt is not None:
                return rt
        return None

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions in preference order) with core ("") first, in discovery order."""
        return [(group, list(versions)) for group, versions in self._tables.versions.items()]

    @property
    def cache(self) -> dict[object, object]:
        """A cache for documents derived from this set of types; emptied by any change."""
        return self._tables.cache

    def versions(self, group: str) -> list[str]:
        return list(self._tables.versions.get(group, ()))

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._tables.types if rt.group == group and rt.version == version]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._tables.types))

    # -- changes (CRDs) ------------------------------------------------------------------------------

    def derive(self) -> Registry:
        """A new registry serving the same types, sharing the tables until either side changes."""
        other = Registry()
        other._tables = self._tables
        other.generation = self.generation
        self._own = False
        return other

    def _own_tables(self) -> _Tables:
        if not self._own:
            self._tables = _Tables.build(self._tables.types)
            self._own = True
        return self._tables

    def register(self, rt: ResourceType) -> None:
        """Serve `rt` from now on (replacing a type at the same group/version/plural)."""
        existing = self.by_resource(rt.group, rt.version, rt.plural)
        if existing is not None:
            self.unregister(rt.group, rt.version, rt.plural)
        self._own_tables().add(rt)
        self.generation += 1

    def unregister(self, group: str, version: str, plural: str) -> ResourceType | None:
        """Stop serving a type; returns it, or None when it was not served."""
        rt = self.by_resource(group, version, plural)
        if rt is None:
            return None
        remaining = [t for t in self._tables.types if t is not rt]
        self._tables = _Tables.build(remaining)
        self._own = True
        self.generation += 1
        return rt
