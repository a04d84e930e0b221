"""A simulated cluster's seed objects, from a Kubernetes-style YAML template a user can edit.

The template (`etc/cluster.yaml`; the same values are built in as `DEFAULT_SPEC`) holds knobs, each a
range from which every cluster draws its own value deterministically from its index, and the shapes of
nodes and workloads.  `SeedBuilder.seed(index, name)` turns it into a realistic cluster named after the
simulated cluster: namespaces, Nodes with capacity and Rancher's pod-requests/pod-limits annotations,
system Deployments with ReplicaSets and Running Pods, Services with Endpoints and EndpointSlices,
ServiceAccounts, `kube-root-ca.crt` ConfigMaps, node Leases, Events, CRDs, ConfigMaps and Secrets, and
the objects of Rancher's import manifest (rancher-protocol.md §6.4).

Memory is what limits how many clusters a process holds, so the output is split: objects identical in
every cluster (or every cluster that has them) are built once per `SeedBuilder` and shared by
reference; per-cluster objects reuse shared nested parts (pod specs, containers).  Every dict returned
is therefore deeply immutable: copy before changing (the store does copy-on-write).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from scaleagent.apiserver.store import timestamp

API_VERSION = "scaleagent.rancher.io/v1"
KIND = "ClusterTemplate"
MIN_NODES = 2
MAX_RANGE = 100_000  # no knob asks for more objects than this per cluster (bounded memory, clear error)

#: The built-in template: what `etc/cluster.yaml` holds, used when no template file is configured.
DEFAULT_SPEC: dict[str, Any] = {
    "nodes": "2-3",
    "podsPerNode": "2-4",
    "extraNamespaces": "1-3",
    "configMapsPerNamespace": "2-4",
    "secretsPerNamespace": "2-4",
    "dataBytes": 128,
    "crds": "1-3",
    "node": {
        "cpu": "4",
        "memory": "16Gi",
        "pods": 110,
        "ephemeralStorage": "100Gi",
        "os": "linux",
        "arch": "amd64",
        "osImage": "Ubuntu 24.04.1 LTS",
        "kernelVersion": "6.8.0-45-generic",
        "containerRuntimeVersion": "containerd://1.7.22",
    },
    "appPods": {
        "image": "nginx:1.27.2",
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    },
    "systemWorkloads": [
        {
            "name": "coredns",
            "namespace": "kube-system",
            "replicas": 1,
            "labels": {"k8s-app": "kube-dns"},
            "serviceAccount": "coredns",
            "priorityClassName": "system-cluster-critical",
            "containers": [
                {
                    "name": "coredns",
                    "image": "rancher/mirrored-coredns-coredns:1.12.0",
                    "requests": {"cpu": "100m", "memory": "70Mi"},
                    "limits": {"memory": "170Mi"},
                    "ports": [
                        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                    ],
                }
            ],
        },
        {
            "name": "metrics-server",
            "namespace": "kube-system",
            "replicas": 1,
            "labels": {"k8s-app": "metrics-server"},
            "serviceAccount": "metrics-server",
            "priorityClassName": "system-node-critical",
            "containers": [
                {
                    "name": "metrics-server",
                    "image": "rancher/mirrored-metrics-server:v0.7.2",
                    "requests": {"cpu": "100m", "memory": "70Mi"},
                    "ports": [{"name": "https", "containerPort": 10250, "protocol": "TCP"}],
                }
            ],
        },
        {
            "name": "local-path-provisioner",
            "namespace": "kube-system",
            "replicas": 1,
            "labels": {"app": "local-path-provisioner"},
            "serviceAccount": "local-path-provisioner-service-account",
            "priorityClassName": "system-node-critical",
            "containers": [
                {"name": "local-path-provisioner", "image": "rancher/local-path-provisioner:v0.0.30"}
            ],
        },
    ],
}

#: Namespaces every Kubernetes cluster Rancher imports has.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "cattle-system")
APP_NAMESPACE_PREFIX = "app-"
SERVICE_IP_DEFAULT = "10.43.0.1"
KUBE_DNS_IP = "10.43.0.10"
#: 2026-01-01T00:00:00Z: the default creation time of seed objects (the assembly may pass its own).
DEFAULT_CREATED = 1_767_225_600.0
_UID_NAMESPACE = uuid.UUID("6f1c2d8e-55a1-4c1b-9d0e-2b7a3c4d5e6f")
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIX = {
    None: 1,
    "m": Fraction(1, 1000),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class TemplateError(ValueError):
    """A template problem, naming the file, the key and what was expected."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key


# -- quantities ------------------------------------------------------------------------------------


def parse_quantity(text: str | int | float) -> Fraction:
    """A Kubernetes quantity (the subset templates use: plain, m, k/M/G/T, Ki/Mi/Gi/Ti) as a number."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"a Kubernetes quantity such as 250m, 4, 512Mi or 16Gi, not {text!r}")
    return Fraction(match.group(1)) * _SUFFIX[match.group(2)]


def format_cpu(millis: int) -> str:
    """CPU in Kubernetes' canonical form: whole cores as "2", else millicores as "1500m"."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_bytes(value: int) -> str:
    """Bytes in Kubernetes' canonical binary form: the largest of Ti/Gi/Mi/Ki that divides exactly."""
    if value == 0:
        return "0"
    for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value % size == 0:
            return f"{value // size}{suffix}"
    return str(value)


def _resources_json(requests: Mapping[str, int], pods: int | None) -> str:
    """A ResourceList as Go's json.Marshal of map[ResourceName]Quantity writes it: sorted keys."""
    out: dict[str, str] = {}
    for name, amount in requests.items():
        out[name] = format_cpu(amount) if name == "cpu" else format_bytes(amount)
    if pods is not None:
        out["pods"] = str(pods)
    return json.dumps(dict(sorted(out.items())), separators=(",", ":"))


# -- the validated template ------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """An inclusive range of whole numbers a knob draws from."""

    low: int
    high: int

    def draw(self, salt: str, index: int) -> int:
        if self.low == self.high:
            return self.low
        digest = hashlib.sha256(f"{salt}/{index}".encode()).digest()
        return self.low + int.from_bytes(digest[:8], "big") % (self.high - self.low + 1)

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class Resources:
    """Container requests or limits: cpu in millicores, memory in bytes (absent = not set)."""

    cpu: int | None = None
    memory: int | None = None

    def as_list(self) -> dict[str, str]:
        out = {}
        if self.cpu is not None:
            out["cpu"] = format_cpu(self.cpu)
        if self.memory is not None:
            out["memory"] = format_bytes(self.memory)
        return out

    def items(self) -> Iterator[tuple[str, int]]:
        if self.cpu is not None:
            yield "cpu", self.cpu
        if self.memory is not None:
            yield "memory", self.memory


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    requests: Resources = Resources()
    limits: Resources = Resources()
    ports: tuple[tuple[str, int, str], ...] = ()  # (name, containerPort, protocol)


@dataclass(frozen=True)
class Workload:
    """A system Deployment; its Pods are placed on the nodes round-robin."""

    name: str
    namespace: str
    replicas: int
    labels: tuple[tuple[str, str], ...]
    service_account: str
    priority_class: str
    containers: tuple[Container, ...]


@dataclass(frozen=True)
class NodeShape:
    cpu_millis: int
    memory: int
    pods: int
    ephemeral_storage: int
    os: str
    arch: str
    os_image: str
    kernel_version: str
    container_runtime_version: str


@dataclass(frozen=True)
class Knobs:
    """The values one cluster drew from the template's ranges."""

    nodes: int
    pods_per_node: int
    extra_namespaces: int
    config_maps_per_namespace: int
    secrets_per_namespace: int
    crds: int


@dataclass(frozen=True)
class ClusterTemplate:
    """A validated template; `ClusterTemplate.load(path)` or `.parse(text, source)` build one."""

    source: str
    nodes: Range
    pods_per_node: Range
    extra_namespaces: Range
    config_maps_per_namespace: Range
    secrets_per_namespace: Range
    crds: Range
    data_bytes: int
    node: NodeShape
    app_image: str
    app_requests: Resources
    app_limits: Resources
    workloads: tuple[Workload, ...]

    @classmethod
    def default(cls) -> ClusterTemplate:
        return cls.from_spec(DEFAULT_SPEC, "<built-in cluster template>")

    @classmethod
    def load(cls, path: Path | str | None) -> ClusterTemplate:
        """The template in `path` (None: the built-in default). Raises TemplateError naming the file."""
        if path is None:
            return cls.default()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise TemplateError(str(path), "", f"cannot be read: {reason}") from error
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "<template>") -> ClusterTemplate:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            where = ""
            mark = getattr(error, "problem_mark", None)
            if mark is not None:
                where = f" at line {mark.line + 1}, column {mark.column + 1}"
            problem = getattr(error, "problem", None) or "syntax error"
            raise TemplateError(source, "", f"not valid YAML{where}: {problem}") from None
        if not isinstance(document, dict):
            raise TemplateError(
                source, "", f"expected a mapping with apiVersion: {API_VERSION} and kind: {KIND}"
            )
        if document.get("apiVersion") != API_VERSION:
            raise TemplateError(
                source, "apiVersion", f"expected {API_VERSION}, found {document.get('apiVersion')!r}"
            )
        if document.get("kind") != KIND:
            raise TemplateError(source, "kind", f"expected {KIND}, found {document.get('kind')!r}")
        unknown = set(document) - {"apiVersion", "kind", "metadata", "spec"}
        if unknown:
            raise TemplateError(
                source, sorted(unknown)[0], "unknown key; expected apiVersion, kind, metadata, spec"
            )
        spec = document.get("spec")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise TemplateError(source, "spec", "expected a mapping of knobs")
        merged = {**DEFAULT_SPEC, **spec}
        return cls.from_spec(merged, source, explicit=set(spec))

    @classmethod
    def from_spec(
        cls, spec: Mapping[str, Any], source: str, explicit: set[str] | None = None
    ) -> ClusterTemplate:
        v = _Validator(source)
        unknown = set(spec) - set(DEFAULT_SPEC)
        if unknown:
            key = sorted(unknown)[0]
            raise TemplateError(
                source, f"spec.{key}", f"unknown key; expected one of {', '.join(DEFAULT_SPEC)}"
            )
        nodes = v.range(spec, "nodes")
        if nodes.low < MIN_NODES:
            raise TemplateError(source, "spec.nodes", f"expected at least {MIN_NODES} nodes, found {nodes}")
        node_spec = v.mapping(spec, "node")
        node_defaults = DEFAULT_SPEC["node"]
        v.known(node_spec, "spec.node", node_defaults)
        node_spec = {**node_defaults, **node_spec}
        node = NodeShape(
            cpu_millis=v.cpu(node_spec, "spec.node.cpu", positive=True),
            memory=v.memory(node_spec, "spec.node.memory", positive=True),
            pods=v.integer(node_spec, "spec.node.pods", 1, 10_000),
            ephemeral_storage=v.memory(node_spec, "spec.node.ephemeralStorage", positive=True),
            os=v.text(node_spec, "spec.node.os", choices=("linux", "windows")),
            arch=v.text(node_spec, "spec.node.arch", choices=("amd64", "arm64")),
            os_image=v.text(node_spec, "spec.node.osImage"),
            kernel_version=v.text(node_spec, "spec.node.kernelVersion"),
            container_runtime_version=v.text(node_spec, "spec.node.containerRuntimeVersion"),
        )
        app = v.mapping(spec, "appPods")
        v.known(app, "spec.appPods", DEFAULT_SPEC["appPods"])
        app = {**DEFAULT_SPEC["appPods"], **app}
        workloads = v.workloads(spec.get("systemWorkloads"))
        return cls(
            source=source,
            nodes=nodes,
            pods_per_node=v.range(spec, "podsPerNode"),
            extra_namespaces=v.range(spec, "extraNamespaces"),
            config_maps_per_namespace=v.range(spec, "configMapsPerNamespace"),
            secrets_per_namespace=v.range(spec, "secretsPerNamespace"),
            crds=v.range(spec, "crds"),
            data_bytes=v.integer(spec, "spec.dataBytes", 0, 1 << 20),
            node=node,
            app_image=v.text(app, "spec.appPods.image"),
            app_requests=v.resources(app.get("requests"), "spec.appPods.requests"),
            app_limits=v.resources(app.get("limits"), "spec.appPods.limits"),
            workloads=workloads,
        )

    def knobs(self, index: int) -> Knobs:
        """The values cluster `index` draws; the same index always draws the same values."""
        return Knobs(
            nodes=self.nodes.draw("nodes", index),
            pods_per_node=self.pods_per_node.draw("podsPerNode", index),
            extra_namespaces=self.extra_namespaces.draw("extraNamespaces", index),
            config_maps_per_namespace=self.config_maps_per_namespace.draw("configMapsPerNamespace", index),
            secrets_per_namespace=self.secrets_per_namespace.draw("secretsPerNamespace", index),
            crds=self.crds.draw("crds", index),
        )


class _Validator:
    """Small typed readers; each error names the source, the dotted key and what was expected."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> TemplateError:
        return TemplateError(self.source, key, message)

    def range(self, spec: Mapping[str, Any], name: str) -> Range:
        raw = spec.get(name)
        key = f"spec.{name}"
        expected = 'expected a whole number or an inclusive range "min-max" (or {min: a, max: b})'
        if isinstance(raw, bool):
            raise self.fail(key, f"{expected}, found {raw!r}")
        if isinstance(raw, int):
            low = high = raw
        elif isinstance(raw, str) and (match := _RANGE.match(raw)):
            low = int(match.group(1))
            high = int(match.group(2)) if match.group(2) is not None else low
        elif (
            isinstance(raw, dict)
            and set(raw) == {"min", "max"}
            and all(isinstance(raw[k], int) and not isinstance(raw[k], bool) for k in ("min", "max"))
        ):
            low, high = raw["min"], raw["max"]
        else:
            raise self.fail(key, f"{expected}, found {raw!r}")
        if low < 0 or high < low:
            raise self.fail(key, f"expected 0 <= min <= max, found {raw!r}")
        if high > MAX_RANGE:
            raise self.fail(key, f"expected at most {MAX_RANGE}, found {raw!r}")
        return Range(low, high)

    def mapping(self, spec: Mapping[str, Any], name: str) -> dict[str, Any]:
        raw = spec.get(name)
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(f"spec.{name}", f"expected a mapping, found {raw!r}")
        return raw

    def known(self, raw: Mapping[str, Any], key: str, allowed: Mapping[str, Any] | tuple[str, ...]) -> None:
        unknown = set(raw) - set(allowed)
        if unknown:
            name = sorted(unknown)[0]
            raise self.fail(f"{key}.{name}", f"unknown key; expected one of {', '.join(allowed)}")

    def text(self, raw: Mapping[str, Any], key: str, choices: tuple[str, ...] = ()) -> str:
        value = raw.get(key.rsplit(".", 1)[-1])
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, found {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"expected one of {', '.join(choices)}, found {value!r}")
        return value

    def name(self, raw: Mapping[str, Any], key: str) -> str:
        value = self.text(raw, key)
        if len(value) > 63 or not _DNS1123.match(value):
            raise self.fail(key, f"expected a DNS label (lower-case letters, digits, '-'), found {value!r}")
        return value

    def integer(self, raw: Mapping[str, Any], key: str, low: int, high: int) -> int:
        value = raw.get(key.rsplit(".", 1)[-1])
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"expected a whole number from {low} to {high}, found {value!r}")
        return value

    def quantity(self, raw: Mapping[str, Any], key: str) -> Fraction:
        value = raw.get(key.rsplit(".", 1)[-1])
        if isinstance(value, bool) or value is None:
            raise self.fail(
                key, f"expected a Kubernetes quantity such as 250m, 4, 512Mi or 16Gi, found {value!r}"
            )
        try:
            return parse_quantity(value)
        except ValueError as error:
            raise self.fail(key, f"expected {error}") from None

    def cpu(self, raw: Mapping[str, Any], key: str, positive: bool = False) -> int:
        millis = self.quantity(raw, key) * 1000
        if millis.denominator != 1 or (positive and millis <= 0):
            raise self.fail(key, f"expected a whole number of millicores{' > 0' if positive else ''}")
        return int(millis)

    def memory(self, raw: Mapping[str, Any], key: str, positive: bool = False) -> int:
        amount = self.quantity(raw, key)
        if amount.denominator != 1 or (positive and amount <= 0):
            raise self.fail(key, f"expected a whole number of bytes{' > 0' if positive else ''}")
        return int(amount)

    def resources(self, raw: Any, key: str) -> Resources:
        if raw is None:
            return Resources()
        if not isinstance(raw, dict):
            raise self.fail(key, f"expected a mapping with cpu and/or memory, found {raw!r}")
        self.known(raw, key, ("cpu", "memory"))
        return Resources(
            cpu=self.cpu(raw, f"{key}.cpu") if "cpu" in raw else None,
            memory=self.memory(raw, f"{key}.memory") if "memory" in raw else None,
        )

    def workloads(self, raw: Any) -> tuple[Workload, ...]:
        key = "spec.systemWorkloads"
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail(key, f"expected a list of Deployments, found {raw!r}")
        seen: set[tuple[str, str]] = set()
        out = []
        allowed = (
            "name",
            "namespace",
            "replicas",
            "labels",
            "serviceAccount",
            "priorityClassName",
            "containers",
        )
        for position, item in enumerate(raw):
            where = f"{key}[{position}]"
            if not isinstance(item, dict):
                raise self.fail(where, f"expected a mapping, found {item!r}")
            self.known(item, where, allowed)
            name = self.name(item, f"{where}.name")
            namespace = self.name({"namespace": item.get("namespace", "kube-system")}, f"{where}.namespace")
            if (namespace, name) in seen or (namespace, name) == ("cattle-system", "cattle-cluster-agent"):
                raise self.fail(f"{where}.name", f"duplicate Deployment {namespace}/{name}")
            seen.add((namespace, name))
            replicas = self.integer({"replicas": item.get("replicas", 1)}, f"{where}.replicas", 0, 1000)
            labels = item.get("labels") or {"app": name}
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                raise self.fail(
                    f"{where}.labels", f"expected a mapping of strings to strings, found {labels!r}"
                )
            account = item.get("serviceAccount", "default")
            account = self.name({"serviceAccount": account}, f"{where}.serviceAccount")
            priority = item.get("priorityClassName", "")
            if not isinstance(priority, str):
                raise self.fail(f"{where}.priorityClassName", f"expected a string, found {priority!r}")
            containers = self.containers(item.get("containers"), f"{where}.containers")
            out.append(
                Workload(
                    name, namespace, replicas, tuple(sorted(labels.items())), account, priority, containers
                )
            )
        return tuple(out)

    def containers(self, raw: Any, key: str) -> tuple[Container, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail(key, f"expected a non-empty list of containers, found {raw!r}")
        out = []
        for position, item in enumerate(raw):
            where = f"{key}[{position}]"
            if not isinstance(item, dict):
                raise self.fail(where, f"expected a mapping, found {item!r}")
            self.known(item, where, ("name", "image", "requests", "limits", "ports"))
            ports = []
            for number, port in enumerate(item.get("ports") or ()):
                pkey = f"{where}.ports[{number}]"
                if not isinstance(port, dict):
                    raise self.fail(pkey, f"expected a mapping, found {port!r}")
                self.known(port, pkey, ("name", "containerPort", "protocol"))
                ports.append(
                    (
                        self.name(port, f"{pkey}.name"),
                        self.integer(port, f"{pkey}.containerPort", 1, 65535),
                        self.text(
                            {"protocol": port.get("protocol", "TCP")}, f"{pkey}.protocol", ("TCP", "UDP")
                        ),
                    )
                )
            out.append(
                Container(
                    name=self.name(item, f"{where}.name"),
                    image=self.text(item, f"{where}.image"),
                    requests=self.resources(item.get("requests"), f"{where}.requests"),
                    limits=self.resources(item.get("limits"), f"{where}.limits"),
                    ports=tuple(ports),
                )
            )
        return tuple(out)


# -- seed objects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RancherInfo:
    """What Rancher's import manifest carries that is the same for every cluster of the process."""

    server_url: str = "https://rancher.invalid"
    ca_checksum: str = ""
    agent_image: str = "rancher/rancher-agent:v2.14.0"
    server_version: str = "v2.14.0"


@dataclass(frozen=True)
class ClusterSeed:
    """One cluster's seed: `shared` objects are the same dict instances in every cluster that has them.

    All dicts are deeply immutable (copy before changing); `own` objects are this cluster's alone but
    may share nested parts with other clusters' objects.
    """

    name: str
    index: int
    knobs: Knobs
    shared: tuple[dict[str, Any], ...]
    own: tuple[dict[str, Any], ...]

    def objects(self) -> Iterator[dict[str, Any]]:
        yield from self.shared
        yield from self.own

    def __len__(self) -> int:
        return len(self.shared) + len(self.own)


def _hex(text: str, length: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _suffix(text: str, length: int) -> str:
    """A generated-name suffix in Kubernetes' alphabet, derived from `text` (deterministic)."""
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:12], "big")
    out = []
    for _ in range(length):
        number, digit = divmod(number, len(_NAME_ALPHABET))
        out.append(_NAME_ALPHABET[digit])
    return "".join(out)


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")


def credential_name(server_url: str, token: str, namespace: str = "") -> str:
    """Rancher's `cattle-credentials-<key>`: 10 hex digits of sha256("<url>.<token>.<namespace>")."""
    return (
        "cattle-credentials-" + hashlib.sha256(f"{server_url}.{token}.{namespace}".encode()).hexdigest()[:10]
    )


def _owner(obj: Mapping[str, Any], controller: bool = True) -> dict[str, Any]:
    ref = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
    }
    if controller:
        ref["controller"] = True
        ref["blockOwnerDeletion"] = True
    return ref


_EMPTY: dict[str, Any] = {}


def _image_id(image: str) -> str:
    """A plausible `imageID` (repository@sha256:digest) for an image reference."""
    return image.rsplit(":", 1)[0] + "@sha256:" + _hex(image, 64)


def _qos(containers: tuple[Container, ...]) -> str:
    if all(not c.requests.as_list() and not c.limits.as_list() for c in containers):
        return "BestEffort"
    guaranteed = all(
        c.limits.cpu is not None
        and c.limits.memory is not None
        and (c.requests.cpu in (None, c.limits.cpu))
        and (c.requests.memory in (None, c.limits.memory))
        for c in containers
    )
    return "Guaranteed" if guaranteed else "Burstable"


class SeedBuilder:
    """Builds clusters' seeds from one template, sharing what is identical between clusters.

    `ca_pem` fills every `kube-root-ca.crt`; `kubernetes_version` is each kubelet's version; `api_host`
    and `api_port` give the `kubernetes` Service its cluster IP (when the host is an IPv4 address) and
    port; `created` is the creation time of every seed object (the assembly passes its first start).
    """

    def __init__(
        self,
        template: ClusterTemplate,
        *,
        ca_pem: bytes | str,
        kubernetes_version: str = "v1.32.4",
        api_host: str = SERVICE_IP_DEFAULT,
        api_port: int = 443,
        rancher: RancherInfo | None = None,
        created: float = DEFAULT_CREATED,
    ) -> None:
        self.template = template
        self.ca_pem = ca_pem.decode("ascii") if isinstance(ca_pem, bytes) else ca_pem
        self.kubernetes_version = kubernetes_version
        self.api_port = api_port
        self.rancher = rancher or RancherInfo()
        self.created = created
        self._stamp = timestamp(created)
        try:
            address = ipaddress.ip_address(api_host.strip("[]"))
            self.service_ip = str(address) if address.version == 4 else SERVICE_IP_DEFAULT
        except ValueError:
            self.service_ip = SERVICE_IP_DEFAULT
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._sets: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}

    # -- helpers -----------------------------------------------------------------------------------

    def _shared(self, key: tuple[Any, ...], build: Any) -> Any:
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = build()
        return found

    @property
    def shared_objects(self) -> int:
        """How many distinct shared objects (and shared parts) this builder holds."""
        return len(self._cache)

    def _meta(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        scope: str = "",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        owners: list[dict[str, Any]] | None = None,
        generate_name: str | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if generate_name:
            meta["generateName"] = generate_name
        if namespace is not None:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid5(_UID_NAMESPACE, f"{scope}/{kind}/{namespace or ''}/{name}"))
        meta["creationTimestamp"] = self._stamp
        if labels:
            meta["labels"] = labels if isinstance(labels, dict) else dict(labels)  # immutable: shared
        if annotations:
            meta["annotations"] = dict(annotations)
        if owners:
            meta["ownerReferences"] = owners
        return meta

    # -- shared objects ----------------------------------------------------------------------------

    def _namespace(self, name: str) -> dict[str, Any]:
        return self._shared(
            ("ns", name),
            lambda: {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": self._meta("Namespace", name, labels={"kubernetes.io/metadata.name": name}),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )

    def _namespace_basics(self, namespace: str) -> list[dict[str, Any]]:
        root_ca = self._shared(
            ("root-ca", namespace),
            lambda: {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": self._meta(
                    "ConfigMap",
                    "kube-root-ca.crt",
                    namespace,
                    annotations={"kubernetes.io/description": _ROOT_CA_DESCRIPTION},
                ),
                "data": {"ca.crt": self.ca_pem},
            },
        )
        return [self._namespace(namespace), root_ca, self._service_account(namespace, "default")]

    def _service_account(self, namespace: str, name: str) -> dict[str, Any]:
        return self._shared(
            ("sa", namespace, name),
            lambda: {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": self._meta("ServiceAccount", name, namespace),
            },
        )

    def _static(self) -> tuple[dict[str, Any], ...]:
        """Objects every cluster has, whatever its knobs."""

        def build() -> tuple[dict[str, Any], ...]:
            out: list[dict[str, Any]] = []
            for namespace in SYSTEM_NAMESPACES:
                out += self._namespace_basics(namespace)
            for workload in self.template.workloads:
                if workload.service_account != "default":
                    out.append(self._service_account(workload.namespace, workload.service_account))
            out.append(self._service_account("cattle-system", "cattle"))
            out += self._rbac()
            out += self._cluster_scoped()
            out += self._services()
            for workload in self.template.workloads:
                deployment, replica_set = self._system_workload(workload)
                out += [deployment, replica_set]
            return tuple(out)

        return self._shared(("static",), build)

    def _rbac(self) -> list[dict[str, Any]]:
        rbac = "rbac.authorization.k8s.io/v1"
        norman = {"cattle.io/creator": "norman"}
        defaults = {"kubernetes.io/bootstrapping": "rbac-defaults"}
        everything = [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ]

        def role(name: str, rules: list[dict[str, Any]], labels: Mapping[str, str]) -> dict[str, Any]:
            return {
                "apiVersion": rbac,
                "kind": "ClusterRole",
                "metadata": self._meta("ClusterRole", name, labels=labels),
                "rules": rules,
            }

        def binding(
            name: str, role_name: str, subject: dict[str, Any], labels: Mapping[str, str]
        ) -> dict[str, Any]:
            return {
                "apiVersion": rbac,
                "kind": "ClusterRoleBinding",
                "metadata": self._meta("ClusterRoleBinding", name, labels=labels),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role_name,
                },
                "subjects": [subject],
            }

        read = ["get", "list", "watch"]
        write = [*read, "create", "update", "patch", "delete", "deletecollection"]
        return [
            role("cluster-admin", everything, defaults),
            role(
                "admin", [{"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": write}], defaults
            ),
            role(
                "edit", [{"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": write}], defaults
            ),
            role("view", [{"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": read}], defaults),
            binding(
                "cluster-admin",
                "cluster-admin",
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"},
                defaults,
            ),
            # Rancher's import manifest (pkg/systemtemplate): the objects every imported cluster holds.
            role(
                "proxy-clusterrole-kubeapiserver",
                [
                    {
                        "apiGroups": [""],
                        "resources": [
                            "nodes/metrics",
                            "nodes/proxy",
                            "nodes/stats",
                            "nodes/log",
                            "nodes/spec",
                        ],
                        "verbs": ["get", "list", "watch", "create"],
                    }
                ],
                {},
            ),
            binding(
                "proxy-role-binding-kubernetes-master",
                "proxy-clusterrole-kubeapiserver",
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kube-apiserver"},
                {},
            ),
            role("cattle-admin", everything, norman),
            binding(
                "cattle-admin-binding",
                "cattle-admin",
                {"kind": "ServiceAccount", "name": "cattle", "namespace": "cattle-system"},
                norman,
            ),
        ]

    def _cluster_scoped(self) -> list[dict[str, Any]]:
        out = []
        for name, value in (
            ("system-cluster-critical", 2_000_000_000),
            ("system-node-critical", 2_000_001_000),
        ):
            out.append(
                {
                    "apiVersion": "scheduling.k8s.io/v1",
                    "kind": "PriorityClass",
                    "metadata": self._meta("PriorityClass", name),
                    "value": value,
                    "globalDefault": False,
                    "preemptionPolicy": "PreemptLowerPriority",
                    "description": "Used for system critical pods that must not be moved from their node.",
                }
            )
        out.append(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": self._meta(
                    "StorageClass",
                    "local-path",
                    annotations={"storageclass.kubernetes.io/is-default-class": "true"},
                ),
                "provisioner": "rancher.io/local-path",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            }
        )
        return out

    def _service_ports(self, workload: Workload) -> list[dict[str, Any]]:
        return [
            {"name": name, "port": port, "protocol": protocol, "targetPort": port}
            for container in workload.containers
            for name, port, protocol in container.ports
        ]

    def _service_name(self, workload: Workload) -> str:
        return "kube-dns" if ("k8s-app", "kube-dns") in workload.labels else workload.name

    def _cluster_ip(self, namespace: str, name: str) -> str:
        if (namespace, name) == ("kube-system", "kube-dns"):
            return KUBE_DNS_IP
        number = int(_hex(f"{namespace}/{name}", 8), 16)
        return f"10.43.{(number >> 8) % 254 + 1}.{number % 250 + 2}"

    def _service(
        self,
        namespace: str,
        name: str,
        ports: list[dict[str, Any]],
        selector: Mapping[str, str] | None,
        labels: Mapping[str, str] | None = None,
        cluster_ip: str | None = None,
    ) -> dict[str, Any]:
        ip = cluster_ip or self._cluster_ip(namespace, name)
        spec: dict[str, Any] = {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": ports,
            "sessionAffinity": "None",
            "type": "ClusterIP",
        }
        if selector:
            spec["selector"] = dict(selector)
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self._meta("Service", name, namespace, labels=labels),
            "spec": spec,
            "status": {"loadBalancer": {}},
        }

    def _services(self) -> list[dict[str, Any]]:
        """The `kubernetes` Service, one per system workload with ports, and cattle-cluster-agent's."""
        out = [
            self._service(
                "default",
                "kubernetes",
                [{"name": "https", "port": self.api_port, "protocol": "TCP", "targetPort": 6443}],
                None,
                labels={"component": "apiserver", "provider": "kubernetes"},
                cluster_ip=self.service_ip,
            )
        ]
        for workload in self.template.workloads:
            ports = self._service_ports(workload)
            if ports:
                name = self._service_name(workload)
                labels = (
                    {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"} if name == "kube-dns" else None
                )
                out.append(self._service(workload.namespace, name, ports, dict(workload.labels), labels))
        out.append(
            self._service(
                "cattle-system",
                "cattle-cluster-agent",
                [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
                    {"name": "https-internal", "port": 443, "protocol": "TCP", "targetPort": 444},
                ],
                {"app": "cattle-cluster-agent"},
            )
        )
        return out

    def _container_spec(self, container: Container) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": container.name,
            "image": container.image,
            "imagePullPolicy": "IfNotPresent",
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }
        if container.requests.as_list():
            spec["resources"]["requests"] = container.requests.as_list()
        if container.limits.as_list():
            spec["resources"]["limits"] = container.limits.as_list()
        if container.ports:
            spec["ports"] = [{"name": n, "containerPort": p, "protocol": pr} for n, p, pr in container.ports]
        return spec

    def _pod_spec(
        self,
        containers: tuple[Container, ...],
        account: str,
        priority: str,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "containers": [self._container_spec(c) for c in containers],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": account,
            "serviceAccountName": account,
            "terminationGracePeriodSeconds": 30,
        }
        if priority:
            spec["priorityClassName"] = priority
        if extra:
            spec.update(extra)
        return spec

    def _deployment_pair(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str],
        replicas: int,
        pod_spec: dict[str, Any],
        scope: str = "",
        deployment_extra: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A Deployment and its one ReplicaSet, fully rolled out."""
        template = {"metadata": {"labels": dict(labels)}, "spec": pod_spec}
        template_hash = _suffix(json.dumps(template, sort_keys=True), 10)
        ready = {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        if not replicas:
            ready = {"observedGeneration": 1}
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                **self._meta("Deployment", name, namespace, scope=scope, labels=labels),
                "generation": 1,
                "annotations": {"deployment.kubernetes.io/revision": "1"},
            },
            "spec": {
                "progressDeadlineSeconds": 600,
                "replicas": replicas,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": dict(labels)},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
                "template": template,
                **(deployment_extra or {}),
            },
            "status": {
                **ready,
                "conditions": [
                    self._condition(
                        "Available", "MinimumReplicasAvailable", "Deployment has minimum availability."
                    ),
                    self._condition(
                        "Progressing",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{name}-{template_hash}" has successfully progressed.',
                    ),
                ],
            },
        }
        hashed = {**labels, "pod-template-hash": template_hash}
        rs_name = f"{name}-{template_hash}"
        replica_set = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                **self._meta(
                    "ReplicaSet",
                    rs_name,
                    namespace,
                    scope=scope,
                    labels=hashed,
                    owners=[_owner(deployment)],
                    annotations={
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                        "deployment.kubernetes.io/max-replicas": str(replicas + max(1, -(-replicas // 4))),
                        "deployment.kubernetes.io/revision": "1",
                    },
                ),
                "generation": 1,
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": hashed},
                "template": {"metadata": {"labels": hashed}, "spec": pod_spec},
            },
            "status": {
                "observedGeneration": 1,
                "replicas": replicas,
                "fullyLabeledReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            },
        }
        return deployment, replica_set

    def _condition(self, kind: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": self._stamp,
            "lastUpdateTime": self._stamp,
        }

    def _system_workload(self, workload: Workload) -> tuple[dict[str, Any], dict[str, Any]]:
        def build() -> tuple[dict[str, Any], dict[str, Any]]:
            spec = self._pod_spec(workload.containers, workload.service_account, workload.priority_class)
            return self._deployment_pair(
                workload.namespace, workload.name, dict(workload.labels), workload.replicas, spec
            )

        return self._shared(("workload", workload.namespace, workload.name), build)

    def _app_workload(self, namespace: str, replicas: int) -> tuple[dict[str, Any], dict[str, Any]]:
        t = self.template

        def build() -> tuple[dict[str, Any], dict[str, Any]]:
            container = Container("web", t.app_image, t.app_requests, t.app_limits, (("http", 80, "TCP"),))
            spec = self._shared(("app-pod-spec",), lambda: self._pod_spec((container,), "default", ""))
            return self._deployment_pair(namespace, "web", {"app": "web"}, replicas, spec)

        return self._shared(("app", namespace, replicas), build)

    def _payload(self, kind: str, number: int) -> str:
        size = self.template.data_bytes
        seed = _hex(f"{kind}/{number}", 64)
        return (seed * (size // len(seed) + 1))[:size]

    def _config_map(self, namespace: str, number: int) -> dict[str, Any]:
        return self._shared(
            ("cm", namespace, number),
            lambda: {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": self._meta("ConfigMap", f"config-{number}", namespace, labels={"app": "web"}),
                "data": {"settings.conf": self._payload("cm", number)},
            },
        )

    def _secret(self, namespace: str, number: int) -> dict[str, Any]:
        return self._shared(
            ("secret", namespace, number),
            lambda: {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": self._meta("Secret", f"secret-{number}", namespace, labels={"app": "web"}),
                "type": "Opaque",
                "data": {"password": _b64(self._payload("secret", number))},
            },
        )

    def _crd(self, number: int) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            base = _CRD_KINDS[(number - 1) % len(_CRD_KINDS)]
            kind = base if number <= len(_CRD_KINDS) else f"{base}{(number - 1) // len(_CRD_KINDS) + 1}"
            singular = kind.lower()
            plural = f"{singular}s"
            names = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": singular}
            return {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    **self._meta("CustomResourceDefinition", f"{plural}.{_CRD_GROUP}"),
                    "generation": 1,
                },
                "spec": {
                    "group": _CRD_GROUP,
                    "names": names,
                    "scope": "Namespaced",
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                    "conversion": {"strategy": "None"},
                },
                "status": {
                    "acceptedNames": names,
                    "conditions": [
                        {
                            "type": "NamesAccepted",
                            "status": "True",
                            "reason": "NoConflicts",
                            "message": "no conflicts found",
                            "lastTransitionTime": self._stamp,
                        },
                        {
                            "type": "Established",
                            "status": "True",
                            "reason": "InitialNamesAccepted",
                            "message": "the initial names have been accepted",
                            "lastTransitionTime": self._stamp,
                        },
                    ],
                    "storedVersions": ["v1"],
                },
            }

        return self._shared(("crd", number), build)

    def shared_part(self, index: int) -> tuple[dict[str, Any], ...]:
        """The shared part of cluster `index`'s seed (the same tuple `seed(index, …).shared` holds)."""
        return self._shared_set(self.template.knobs(index))

    def _shared_set(self, knobs: Knobs) -> tuple[dict[str, Any], ...]:
        """Every shared object of a cluster with these knobs; one tuple per distinct combination."""
        key = (
            knobs.extra_namespaces,
            knobs.config_maps_per_namespace,
            knobs.secrets_per_namespace,
            knobs.crds,
            self._app_replicas(knobs),
        )
        found = self._sets.get(key)
        if found is not None:
            return found
        out = list(self._static())
        app_namespaces = self._app_namespaces(knobs)
        for namespace in app_namespaces:
            if namespace not in SYSTEM_NAMESPACES:
                out += self._namespace_basics(namespace)
        for namespace, replicas in zip(app_namespaces, self._app_replicas(knobs)):
            out += self._app_workload(namespace, replicas)
        for namespace in dict.fromkeys(("default", *app_namespaces)):  # ConfigMaps and Secrets live here
            for number in range(1, knobs.config_maps_per_namespace + 1):
                out.append(self._config_map(namespace, number))
            for number in range(1, knobs.secrets_per_namespace + 1):
                out.append(self._secret(namespace, number))
        for number in range(1, knobs.crds + 1):
            out.append(self._crd(number))
        found = self._sets[key] = tuple(out)
        return found

    @staticmethod
    def _app_namespaces(knobs: Knobs) -> tuple[str, ...]:
        if not knobs.extra_namespaces:
            return ("default",)
        return tuple(f"{APP_NAMESPACE_PREFIX}{k}" for k in range(1, knobs.extra_namespaces + 1))

    def _app_replicas(self, knobs: Knobs) -> tuple[int, ...]:
        """Application pods (nodes × podsPerNode) spread over one `web` Deployment per app namespace."""
        namespaces = len(self._app_namespaces(knobs))
        total = knobs.nodes * knobs.pods_per_node
        return tuple(total // namespaces + (1 if k < total % namespaces else 0) for k in range(namespaces))

    # -- one cluster -------------------------------------------------------------------------------

    def seed(
        self, index: int, name: str, *, rancher_token: str = "", resource_version: int | None = None
    ) -> ClusterSeed:
        """Cluster `index` named `name`: the same arguments always give equal objects.

        `rancher_token` is the cluster's registration token, which the `cattle-credentials-*` Secret
        carries (as Rancher's manifest does); it only changes that Secret and the agent's env.
        With `resource_version`, the own objects carry `metadata.resourceVersion` counting up from
        `resource_version + 1`: complete as a store keeps them, so it need not copy them (that copy
        was most of a seeded cluster's memory).
        """
        if index < 0:
            raise ValueError(f"cluster index {index}: expected >= 0")
        knobs = self.template.knobs(index)
        own = _ClusterBuild(self, index, name, knobs, rancher_token).objects()
        if resource_version is not None:
            for rv, obj in enumerate(own, resource_version + 1):
                obj["metadata"]["resourceVersion"] = str(rv)  # each own object has a metadata of its own
        return ClusterSeed(
            name=name,
            index=index,
            knobs=knobs,
            shared=self._shared_set(knobs),
            own=tuple(own),
        )


class _ClusterBuild:
    """The per-cluster objects of one seed: nodes, pods and everything that names them."""

    def __init__(self, builder: SeedBuilder, index: int, name: str, knobs: Knobs, token: str) -> None:
        self.b = builder
        self.index = index
        self.name = name
        self.knobs = knobs
        self.token = token
        self.nodes = [f"{name}-node-{n}" for n in range(knobs.nodes)]
        self.node_ips = [f"10.{(index >> 8) & 255}.{index & 255}.{10 + n}" for n in range(knobs.nodes)]
        self.next_pod_ip = [2] * knobs.nodes
        self.requests: list[dict[str, int]] = [{} for _ in self.nodes]
        self.limits: list[dict[str, int]] = [{} for _ in self.nodes]
        self.pod_count = [0] * knobs.nodes
        self.pods_by_namespace: dict[str, list[dict[str, Any]]] = {}
        self.out: list[dict[str, Any]] = []
        self.local: dict[tuple[Any, ...], Any] = {}

    def meta(self, kind: str, name: str, namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.b._meta(kind, name, namespace, scope=self.name, **kwargs)

    def objects(self) -> list[dict[str, Any]]:
        slot = self.index  # system pods start on a node that depends on the cluster, like a scheduler would
        for workload in self.b.template.workloads:
            _, replica_set = self.b._system_workload(workload)
            for ordinal in range(workload.replicas):
                self.pod(replica_set, workload.containers, slot % len(self.nodes), ordinal)
                slot += 1
        app_pods = [(n, s) for n in range(len(self.nodes)) for s in range(self.knobs.pods_per_node)]
        cursor = 0
        container = self.b._shared(
            ("app-container",),
            lambda: Container(
                "web",
                self.b.template.app_image,
                self.b.template.app_requests,
                self.b.template.app_limits,
                (("http", 80, "TCP"),),
            ),
        )
        for namespace, replicas in zip(self.b._app_namespaces(self.knobs), self.b._app_replicas(self.knobs)):
            _, replica_set = self.b._app_workload(namespace, replicas)
            for ordinal in range(replicas):
                self.pod(replica_set, (container,), app_pods[cursor][0], ordinal)
                cursor += 1
        self.cattle_agent()
        self.endpoints()
        nodes = [self.node(n) for n in range(len(self.nodes))]
        leases = [self.lease(node) for node in nodes]
        events = [event for node in nodes for event in self.events(node)]
        return nodes + leases + self.out + events

    # -- pods --------------------------------------------------------------------------------------

    def pod(
        self,
        replica_set: dict[str, Any],
        containers: tuple[Container, ...],
        node: int,
        ordinal: int,
        shared: bool = True,
    ) -> None:
        rs_meta = replica_set["metadata"]
        namespace, rs_name = rs_meta["namespace"], rs_meta["name"]
        pod_name = f"{rs_name}-{_suffix(f'{self.name}/{namespace}/{rs_name}/{ordinal}', 5)}"
        node_name = self.nodes[node]
        pod_ip = f"10.42.{node}.{self.next_pod_ip[node]}"
        self.next_pod_ip[node] += 1
        template = replica_set["spec"]["template"]
        stamp = self.b._stamp
        running = self.b._shared(("running",), lambda: {"running": {"startedAt": stamp}})
        statuses = [
            {
                "containerID": "containerd://" + _hex(f"{self.name}/{pod_name}/{c.name}", 64),
                "image": c.image,
                "imageID": self.b._shared(("image-id", c.image), lambda c=c: _image_id(c.image)),
                "lastState": _EMPTY,
                "name": c.name,
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": running,
            }
            for c in containers
        ]
        # Parts every Pod of this ReplicaSet has in common, shared (across clusters too when the
        # ReplicaSet itself is shared; a per-cluster one is cached only for this cluster).
        parts_key = ("pod-parts", replica_set["metadata"]["uid"])
        cache = self.b._cache if shared else self.local
        parts = cache.get(parts_key)
        if parts is None:
            parts = cache[parts_key] = ([_owner(replica_set)], f"{rs_name}-", _qos(containers))
        owners, generate_name, qos = parts
        # Pods of one ReplicaSet on one node have the same spec; the node's host IPs are the same too.
        spec = self.local.get(("spec", parts_key, node))
        if spec is None:
            spec = self.local[("spec", parts_key, node)] = {**template["spec"], "nodeName": node_name}
        host_ips = self.local.get(("host-ips", node))
        if host_ips is None:
            host_ips = self.local[("host-ips", node)] = [{"ip": self.node_ips[node]}]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": self.meta(
                "Pod",
                pod_name,
                namespace,
                labels=template["metadata"]["labels"],
                owners=owners,
                generate_name=generate_name,
            ),
            "spec": spec,
            "status": {
                "phase": "Running",
                "conditions": self.b._shared(("pod-conditions",), self._pod_conditions),
                "hostIP": self.node_ips[node],
                "hostIPs": host_ips,
                "podIP": pod_ip,
                "podIPs": [{"ip": pod_ip}],
                "qosClass": qos,
                "startTime": stamp,
                "containerStatuses": statuses,
            },
        }
        self.out.append(pod)
        self.pods_by_namespace.setdefault(namespace, []).append(pod)
        self.pod_count[node] += 1
        for container in containers:
            for key, amount in container.requests.items():
                self.requests[node][key] = self.requests[node].get(key, 0) + amount
            for key, amount in container.limits.items():
                self.limits[node][key] = self.limits[node].get(key, 0) + amount

    def _pod_conditions(self) -> list[dict[str, Any]]:
        return [
            {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": self.b._stamp}
            for kind in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        ]

    def cattle_agent(self) -> None:
        """Rancher's import manifest: the credentials Secret and the cattle-cluster-agent Deployment."""
        rancher = self.b.rancher
        secret_name = credential_name(rancher.server_url, self.token)
        self.out.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": self.meta("Secret", secret_name, "cattle-system"),
                "type": "Opaque",
                "data": {"url": _b64(rancher.server_url), "token": _b64(self.token), "namespace": _b64("")},
            }
        )
        env = [
            ("CATTLE_SERVER", rancher.server_url),
            ("CATTLE_CA_CHECKSUM", rancher.ca_checksum),
            ("CATTLE_CLUSTER", "true"),
            ("CATTLE_K8S_MANAGED", "true"),
            ("CATTLE_CREDENTIAL_NAME", secret_name),
            ("CATTLE_SERVER_VERSION", rancher.server_version),
            ("STRICT_VERIFY", "true"),
        ]
        container = {
            "name": "cluster-register",
            "image": rancher.agent_image,
            "imagePullPolicy": "IfNotPresent",
            "env": [{"name": key, "value": value} for key, value in env],
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "volumeMounts": [
                {"name": "cattle-credentials", "mountPath": "/cattle-credentials", "readOnly": True}
            ],
        }
        extra = {
            "tolerations": [
                {"effect": "NoSchedule", "key": "node-role.kubernetes.io/controlplane", "value": "true"},
                {
                    "effect": "NoSchedule",
                    "key": "node-role.kubernetes.io/control-plane",
                    "operator": "Exists",
                },
            ],
            "volumes": [
                {"name": "cattle-credentials", "secret": {"secretName": secret_name, "defaultMode": 320}}
            ],
        }
        spec = self.b._pod_spec((), "cattle", "", extra)
        spec["containers"] = [container]
        labels = {"app": "cattle-cluster-agent"}
        deployment, replica_set = self.b._deployment_pair(
            "cattle-system",
            "cattle-cluster-agent",
            labels,
            1,
            spec,
            scope=self.name,
            deployment_extra={
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
            },
        )
        self.out += [deployment, replica_set]
        agent = Container("cluster-register", rancher.agent_image)
        self.pod(replica_set, (agent,), 1 % len(self.nodes), 0, shared=False)

    # -- service endpoints -------------------------------------------------------------------------

    def endpoints(self) -> None:
        b = self.b
        ports = [{"name": "https", "port": 6443, "protocol": "TCP"}]
        address = {"ip": self.node_ips[0]}
        self.add_endpoints("default", "kubernetes", [(address, None)], ports, managed=False)
        services = [
            (w.namespace, b._service_name(w), dict(w.labels), b._service_ports(w))
            for w in b.template.workloads
            if b._service_ports(w)
        ]
        services.append(
            (
                "cattle-system",
                "cattle-cluster-agent",
                {"app": "cattle-cluster-agent"},
                [
                    {"name": "http", "port": 80, "protocol": "TCP"},
                    {"name": "https-internal", "port": 444, "protocol": "TCP"},
                ],
            )
        )
        for namespace, name, selector, service_ports in services:
            found = []
            for pod in self.pods_by_namespace.get(namespace, ()):
                labels = pod["metadata"]["labels"]
                if all(labels.get(k) == v for k, v in selector.items()):
                    found.append(
                        (
                            {
                                "ip": pod["status"]["podIP"],
                                "nodeName": pod["spec"]["nodeName"],
                                "targetRef": {
                                    "kind": "Pod",
                                    "name": pod["metadata"]["name"],
                                    "namespace": namespace,
                                    "uid": pod["metadata"]["uid"],
                                },
                            },
                            pod,
                        )
                    )
            ports = [
                {"name": p["name"], "port": p.get("targetPort", p["port"]), "protocol": p["protocol"]}
                for p in service_ports
            ]
            self.add_endpoints(namespace, name, found, ports)

    def add_endpoints(
        self,
        namespace: str,
        name: str,
        found: list[tuple[dict[str, Any], Any]],
        ports: list[dict[str, Any]],
        managed: bool = True,
    ) -> None:
        subsets = [{"addresses": [address for address, _ in found], "ports": ports}] if found else []
        self.out.append(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": self.meta("Endpoints", name, namespace),
                "subsets": subsets,
            }
        )
        service_uid = str(uuid.uuid5(_UID_NAMESPACE, f"/Service/{namespace}/{name}"))
        labels = {"kubernetes.io/service-name": name}
        slice_name = name
        if managed:
            labels["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io"
            slice_name = f"{name}-{_suffix(f'{self.name}/{namespace}/{name}', 5)}"
        endpoints = []
        for address, _pod in found:
            endpoint: dict[str, Any] = {
                "addresses": [address["ip"]],
                "conditions": {"ready": True, "serving": True, "terminating": False},
            }
            if "nodeName" in address:
                endpoint["nodeName"] = address["nodeName"]
                endpoint["targetRef"] = address["targetRef"]
            endpoints.append(endpoint)
        owner = {"apiVersion": "v1", "kind": "Service", "name": name, "uid": service_uid}
        self.out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": self.meta(
                    "EndpointSlice",
                    slice_name,
                    namespace,
                    labels=labels,
                    owners=[{**owner, "controller": True, "blockOwnerDeletion": True}] if managed else None,
                    generate_name=f"{name}-" if managed else None,
                ),
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            }
        )

    # -- nodes -------------------------------------------------------------------------------------

    def node(self, n: int) -> dict[str, Any]:
        b, shape = self.b, self.b.template.node
        name = self.nodes[n]
        labels = {
            "beta.kubernetes.io/arch": shape.arch,
            "beta.kubernetes.io/os": shape.os,
            "kubernetes.io/arch": shape.arch,
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": shape.os,
        }
        if n == 0:
            labels["node-role.kubernetes.io/control-plane"] = "true"
            labels["node-role.kubernetes.io/etcd"] = "true"
        else:
            labels["node-role.kubernetes.io/worker"] = "true"
        pods = self.pod_count[n]
        annotations = {
            "management.cattle.io/pod-limits": _resources_json(self.limits[n], None),
            "management.cattle.io/pod-requests": _resources_json(self.requests[n], pods if pods else None),
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        }
        capacity, allocatable = b._shared(("node-resources",), self._node_resources)
        identity = _hex(f"{self.name}/{name}", 32)
        conditions = b._shared(("node-conditions",), self._node_conditions)
        pod_cidr = f"10.42.{n}.0/24"
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": self.meta("Node", name, labels=labels, annotations=annotations),
            "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
            "status": {
                "addresses": [
                    {"address": self.node_ips[n], "type": "InternalIP"},
                    {"address": name, "type": "Hostname"},
                ],
                "allocatable": allocatable,
                "capacity": capacity,
                "conditions": conditions,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": shape.arch,
                    "bootID": str(uuid.UUID(_hex(f"boot/{self.name}/{name}", 32))),
                    "containerRuntimeVersion": shape.container_runtime_version,
                    "kernelVersion": shape.kernel_version,
                    "kubeProxyVersion": b.kubernetes_version,
                    "kubeletVersion": b.kubernetes_version,
                    "machineID": identity,
                    "operatingSystem": shape.os,
                    "osImage": shape.os_image,
                    "systemUUID": str(uuid.UUID(_hex(f"system/{self.name}/{name}", 32))).upper(),
                },
            },
        }

    def _node_resources(self) -> tuple[dict[str, str], dict[str, str]]:
        shape = self.b.template.node
        memory_ki = shape.memory // 1024
        storage_ki = shape.ephemeral_storage // 1024
        capacity = {
            "cpu": format_cpu(shape.cpu_millis),
            "ephemeral-storage": f"{storage_ki}Ki",
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "memory": f"{memory_ki}Ki",
            "pods": str(shape.pods),
        }
        # kubelet's default hard eviction thresholds: memory.available<100Mi, nodefs.available<10%
        allocatable = {
            **capacity,
            "ephemeral-storage": str(shape.ephemeral_storage * 9 // 10),
            "memory": f"{max(memory_ki - 100 * 1024, 0)}Ki",
        }
        return capacity, allocatable

    def _node_conditions(self) -> list[dict[str, Any]]:
        stamp = self.b._stamp

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }

        return [
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition(
                "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
            ),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]

    def lease(self, node: dict[str, Any]) -> dict[str, Any]:
        name = node["metadata"]["name"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": self.meta("Lease", name, "kube-node-lease", owners=[_owner(node, controller=False)]),
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": 40,
                "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(self.b.created)),
            },
        }

    def events(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        name = node["metadata"]["name"]
        involved = {"kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
        kubelet = {"component": "kubelet", "host": name}
        controller = self.b._shared(("node-controller",), lambda: {"component": "node-controller"})
        out = []
        for reason, message, component in (
            ("Starting", "Starting kubelet.", "kubelet"),
            ("NodeReady", f"Node {name} status is now: NodeReady", "kubelet"),
            ("RegisteredNode", f"Node {name} event: Registered Node {name} in Controller", "node-controller"),
        ):
            event_name = f"{name}.{_hex(f'{self.name}/{name}/{reason}', 16)}"
            source = kubelet if component == "kubelet" else controller
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": self.meta("Event", event_name, "default"),
                    "involvedObject": involved,
                    "reason": reason,
                    "message": message,
                    "source": source,
                    "firstTimestamp": self.b._stamp,
                    "lastTimestamp": self.b._stamp,
                    "count": 1,
                    "type": "Normal",
                    "eventTime": None,
                    "reportingComponent": component,
                    "reportingInstance": name if component == "kubelet" else "",
                }
            )
        return out


_CRD_GROUP = "sim.scaleagent.io"
_CRD_KINDS = ("Widget", "Gadget", "Sprocket", "Gizmo", "Doohickey", "Contraption", "Thingamajig", "Whatsit")
_ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)
