"""Documents that describe the API rather than objects: version, discovery, OpenAPI, health checks.

Discovery and OpenAPI bodies depend only on a cluster's resource types, so they are encoded once per
set of types (`Registry.cache`) and shared by every cluster without CRDs.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from scaleagent.apiserver.kinds import Registry, ResourceType

OPENAPI_V2_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def version_info(version: str) -> dict[str, str]:
    """The `/version` body for a plain version such as `v1.32.4` (ValueError otherwise)."""
    m = _VERSION_RE.match(version)
    if not m:
        raise ValueError(f"not a plain Kubernetes version: {version!r}")
    major, minor = m.group(1), m.group(2)
    commit = hashlib.sha1(version.encode()).hexdigest()
    return {
        "major": major,
        "minor": minor,
        "gitVersion": version,
        "gitCommit": commit,
        "gitTreeState": "clean",
        "buildDate": "2025-04-22T16:03:18Z",
        "goVersion": "go1.23.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _cached(kinds: Registry, key: object, build) -> bytes:
    cache = kinds.cache
    body = cache.get(key)
    if body is None:
        body = cache[key] = build()
    return body  # type: ignore[return-value]


def api_versions(address: str) -> bytes:
    """`/api`: the core group's versions."""
    return _encode(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }
    )


def _group_doc(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(kinds: Registry) -> bytes:
    """`/apis`: every named group with its versions in preference order."""

    def build() -> bytes:
        groups = [_group_doc(g, vs) for g, vs in kinds.groups() if g]
        return _encode({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    return _cached(kinds, "apis", build)


def api_group(kinds: Registry, group: str) -> bytes | None:
    """`/apis/<group>`, or None when the group is not served."""
    versions = kinds.versions(group)
    if not group or not versions:
        return None
    return _cached(
        kinds,
        ("group", group),
        lambda: _encode({"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}),
    )


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    out = [entry]
    for sub in rt.subresources:
        sub_entry: dict[str, Any] = {
            "name": f"{rt.plural}/{sub.name}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": sub.kind,
            "verbs": list(sub.verbs),
        }
        if sub.group is not None:
            sub_entry["group"] = sub.group
            sub_entry["version"] = sub.version
        out.append(sub_entry)
    return out


def api_resource_list(kinds: Registry, group: str, version: str) -> bytes | None:
    """`/api/v1` or `/apis/<group>/<version>`, or None when that group-version is not served."""
    if version not in kinds.versions(group):
        return None

    def build() -> bytes:
        resources: list[dict[str, Any]] = []
        for rt in kinds.resources(group, version):
            resources.extend(_resource_entries(rt))
        gv = f"{group}/{version}" if group else version
        return _encode(
            {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
        )

    return _cached(kinds, ("resources", group, version), build)


# -- aggregated discovery (apidiscovery.k8s.io) ------------------------------------------------------

AGGREGATED_VERSIONS = ("v2", "v2beta1")


def aggregated_version(accept: str) -> str | None:
    """The apidiscovery version the Accept header asks for first ("v2"/"v2beta1"), or None for legacy."""
    for item in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in item.split(";")[1:] if "=" in p)
        if (
            params.get("g") == "apidiscovery.k8s.io"
            and params.get("as") == "APIGroupDiscoveryList"
            and params.get("v") in AGGREGATED_VERSIONS
        ):
            return params["v"]
        if item.split(";")[0].strip() in ("application/json", "*/*", "application/*") and "as" not in params:
            return None
    return None


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    if rt.subresources:
        entry["subresources"] = [
            {
                "subresource": sub.name,
                "responseKind": {
                    "group": rt.group if sub.group is None else sub.group,
                    "version": rt.version if sub.version is None else sub.version,
                    "kind": sub.kind,
                },
                "verbs": list(sub.verbs),
            }
            for sub in rt.subresources
        ]
    return entry


def aggregated(kinds: Registry, core: bool, version: str) -> bytes:
    """`/api` (core=True) or `/apis` as an APIGroupDiscoveryList: all resources in one document."""

    def build() -> bytes:
        items = []
        for group, versions in kinds.groups():
            if bool(group) == core:
                continue
            entries = [
                {
                    "version": v,
                    "resources": [_aggregated_resource(rt) for rt in kinds.resources(group, v)],
                    "freshness": "Current",
                }
                for v in versions
            ]
            items.append({"metadata": {"name": group} if group else {}, "versions": entries})
        return _encode(
            {
                "kind": "APIGroupDiscoveryList",
                "apiVersion": f"apidiscovery.k8s.io/{version}",
                "metadata": {},
                "items": items,
            }
        )

    return _cached(kinds, ("aggregated", core, version), build)


# -- OpenAPI ---------------------------------------------------------------------------------------


def _pb_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (payloads here are < 128 bytes or use a full varint)."""
    length = len(payload)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    return bytes([number << 3 | 2]) + bytes(varint) + payload


def openapi_v2(version: str) -> bytes:
    """A minimal gnostic `openapi_v2.Document` in protobuf: swagger, info, empty paths and definitions.

    Enough for steve's schema refresh and kubectl's validation fallback (k8s-api-surface.md §3.4).
    """
    info = _pb_field(1, b"Kubernetes") + _pb_field(2, version.encode())
    return _pb_field(1, b"2.0") + _pb_field(2, info) + _pb_field(8, b"") + _pb_field(9, b"")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _openapi_v3_gv(kinds: Registry, group: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3 document for one group-version: per resource, the operations and the GVK extension.

    kubectl looks for a PATCH operation with `x-kubernetes-group-version-kind` and a `fieldValidation`
    parameter to decide it may leave validation to the server.
    """
    paths: dict[str, Any] = {}
    base = "/" + _gv_path(group, version)
    for rt in kinds.resources(group, version):
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        prefix = f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
        params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
        if rt.namespaced:
            params.append({"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
        query = [
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        ]
        ok = {"200": {"description": "OK"}}
        item: dict[str, Any] = {"parameters": params}
        if "get" in rt.verbs:
            item["get"] = {
                "operationId": f"read{rt.kind}",
                "x-kubernetes-group-version-kind": gvk,
                "responses": ok,
            }
        if "update" in rt.verbs:
            item["put"] = {
                "operationId": f"replace{rt.kind}",
                "parameters": query,
                "requestBody": {"content": {"*/*": {"schema": {"type": "object"}}}},
                "x-kubernetes-group-version-kind": gvk,
                "responses": ok,
            }
        if "patch" in rt.verbs:
            patch_types = (
                _PATCH_TYPES if rt.crd is None else tuple(t for t in _PATCH_TYPES if "strategic" not in t)
            )
            item["patch"] = {
                "operationId": f"patch{rt.kind}",
                "parameters": [*query, {"name": "force", "in": "query", "schema": {"type": "boolean"}}],
                "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in patch_types}},
                "x-kubernetes-group-version-kind": gvk,
                "responses": ok,
            }
        if "delete" in rt.verbs:
            item["delete"] = {
                "operationId": f"delete{rt.kind}",
                "x-kubernetes-group-version-kind": gvk,
                "responses": ok,
            }
        paths[f"{prefix}/{{name}}"] = item
        collection: dict[str, Any] = {}
        if "list" in rt.verbs:
            collection["get"] = {
                "operationId": f"list{rt.kind}",
                "x-kubernetes-group-version-kind": gvk,
                "responses": ok,
            }
        if "create" in rt.verbs:
            collection["post"] = {
                "operationId": f"create{rt.kind}",
                "parameters": query,
                "requestBody": {"content": {"*/*": {"schema": {"type": "object"}}}},
                "x-kubernetes-group-version-kind": gvk,
                "responses": ok,
            }
        if collection:
            if rt.namespaced:
                collection["parameters"] = [params[1]]
            paths[prefix] = collection
    # kubectl's client-side apply reads patch metadata from components.schemas; an empty map makes it use
    # its compiled-in types without the "Components is nil" warning.
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def openapi_v3_gv(kinds: Registry, gv_path: str) -> bytes | None:
    """`/openapi/v3/<api/v1 | apis/g/v>`, or None when not served."""
    parts = gv_path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        group, version = "", parts[1]
    elif len(parts) == 3 and parts[0] == "apis":
        group, version = parts[1], parts[2]
    else:
        return None
    if version not in kinds.versions(group):
        return None
    return _cached(
        kinds, ("openapi3", group, version), lambda: _encode(_openapi_v3_gv(kinds, group, version))
    )


def openapi_v3_root(kinds: Registry) -> bytes:
    """`/openapi/v3`: one entry per group-version, its URL carrying a hash of that document."""

    def build() -> bytes:
        paths = {}
        for group, versions in kinds.groups():
            for version in versions:
                path = _gv_path(group, version)
                doc = openapi_v3_gv(kinds, path) or b""
                digest = hashlib.sha512(doc).hexdigest()[:64].upper()
                paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
        return _encode({"paths": paths})

    return _cached(kinds, "openapi3-root", build)


# -- health ----------------------------------------------------------------------------------------

_COMMON_CHECKS = (
    "ping",
    "log",
    "etcd",
    "poststarthook/start-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/start-apiextensions-informers",
    "poststarthook/start-apiextensions-controllers",
    "poststarthook/crd-informer-synced",
    "poststarthook/bootstrap-controller",
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
    "poststarthook/apiservice-registration-controller",
    "poststarthook/kube-apiserver-autoregistration",
    "autoregister-completion",
)
CHECKS = {
    "healthz": _COMMON_CHECKS,
    "livez": _COMMON_CHECKS,
    "readyz": ("ping", "log", "etcd", "etcd-readiness", "informer-sync", *_COMMON_CHECKS[3:], "shutdown"),
}


def health(endpoint: str, check: str | None, verbose: bool, exclude: list[str]) -> bytes | None:
    """The text body of `/healthz|/livez|/readyz[/<check>]`, or None for an unknown check."""
    checks = CHECKS[endpoint]
    if check:
        return b"ok" if check in checks else None
    if not verbose:
        return b"ok"
    lines = []
    for name in checks:
        lines.append(f"[+]{name} excluded: ok" if name in exclude else f"[+]{name} ok")
    lines.append(f"{endpoint} check passed")
    return ("\n".join(lines) + "\n").encode()
