"""steve's `/v1/schemas`: one schema per resource type of a cluster's discovery.

Schema ids follow steve's converter: the lower-cased kind, prefixed by the group for non-core types
(`pod`, `apps.deployment`); `pluralName` is the resource, group-prefixed the same way (`pods`,
`apps.deployments`) and is what collection URLs use.  Methods are what an admin gets from steve's
schema factory (GET for list/get, DELETE, PUT+PATCH for update, POST for create).

A `SchemaSet` depends only on the cluster's types, so it is built once per type table and kept in
`Registry.cache`: clusters whose registries share tables (same seed CRDs) share one set, and a cluster
nobody browses never builds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scaleagent.apiserver import tables
from scaleagent.apiserver.kinds import Registry, ResourceType

_CACHE_KEY = "steve.schemas"

#: steve's own schemas (not Kubernetes types) that the UI asks for
COUNT = "count"
SCHEMA = "schema"
SUBSCRIBE = "subscribe"


def schema_id(group: str, kind: str) -> str:
    """steve's GVKToSchemaID."""
    return (f"{group}.{kind}" if group else kind).lower()


def plural_name(group: str, plural: str) -> str:
    """steve's GVRToPluralName."""
    return f"{group}.{plural}" if group else plural


@dataclass(frozen=True, slots=True)
class Schema:
    """One schema: its id, plural, methods and attributes; `rt` for Kubernetes types."""

    id: str
    plural: str
    resource_methods: tuple[str, ...]
    collection_methods: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict)
    rt: ResourceType | None = None
    resource_fields: dict[str, Any] | None = None

    def can(self, method: str) -> bool:
        return method in self.resource_methods or method in self.collection_methods

    def body(self) -> dict[str, Any]:
        """The schema's fields as steve encodes them (without id/type/links)."""
        out: dict[str, Any] = {"pluralName": self.plural}
        if self.resource_methods:
            out["resourceMethods"] = list(self.resource_methods)
        out["resourceFields"] = self.resource_fields
        if self.collection_methods:
            out["collectionMethods"] = list(self.collection_methods)
        if self.attributes:
            out["attributes"] = self.attributes
        return out


def _methods(rt: ResourceType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    verbs = set(rt.verbs)
    resource: list[str] = []
    collection: list[str] = []
    if verbs & {"list", "get"}:
        resource.append("GET")
        collection.append("GET")
    if "delete" in verbs:
        resource.append("DELETE")
    if "update" in verbs:
        resource += ["PUT", "PATCH"]
    if "create" in verbs:
        collection.append("POST")
    return tuple(resource), tuple(collection)


def _columns(rt: ResourceType) -> list[dict[str, Any]]:
    columns, _row = tables.printer(rt)
    return [
        {
            "name": col["name"],
            "field": f"$.metadata.fields[{i}]",
            "type": col.get("type", "string"),
            "format": col.get("format", ""),
            "description": col.get("description", ""),
            "priority": col.get("priority", 0),
        }
        for i, col in enumerate(columns)
    ]


def _type_schema(rt: ResourceType, preferred_version: str) -> Schema:
    resource, collection = _methods(rt)
    attributes: dict[str, Any] = {
        "group": rt.group,
        "version": rt.version,
        "kind": rt.kind,
        "resource": rt.plural,
        "verbs": list(rt.verbs),
        "namespaced": rt.namespaced,
    }
    if preferred_version and preferred_version != rt.version:
        attributes["preferredVersion"] = preferred_version
    if rt.crd is not None:
        attributes["crd"] = True
    if "list" in rt.verbs:
        attributes["columns"] = _columns(rt)
    return Schema(
        id=schema_id(rt.group, rt.kind),
        plural=plural_name(rt.group, rt.plural),
        resource_methods=resource,
        collection_methods=collection,
        attributes=attributes,
        rt=rt,
    )


_BUILTIN = (
    Schema(
        id=SCHEMA,
        plural="schemas",
        resource_methods=("GET",),
        collection_methods=("GET",),
        resource_fields={
            "collectionActions": {"type": "map[json]"},
            "collectionFields": {"type": "map[json]"},
            "collectionFilters": {"type": "map[json]"},
            "collectionMethods": {"type": "array[string]"},
            "pluralName": {"type": "string"},
            "resourceActions": {"type": "map[json]"},
            "attributes": {"type": "map[json]"},
            "resourceFields": {"type": "map[json]"},
            "resourceMethods": {"type": "array[string]"},
            "version": {"type": "map[json]"},
        },
    ),
    Schema(
        id=COUNT,
        plural="counts",
        resource_methods=("GET",),
        collection_methods=("GET",),
        resource_fields={"counts": {"type": "map[json]"}},
    ),
    Schema(id=SUBSCRIBE, plural="subscribe", resource_methods=(), collection_methods=("GET",)),
)


class SchemaSet:
    """All schemas of one type table, with lookups by id and plural (case-insensitive, as steve)."""

    __slots__ = ("schemas", "_lookup", "_by_storage")

    def __init__(self, schemas: list[Schema]) -> None:
        self.schemas = sorted(schemas, key=lambda s: s.id)
        self._lookup: dict[str, Schema] = {}
        self._by_storage: dict[tuple[str, str], Schema] = {}
        for s in self.schemas:
            self._lookup.setdefault(s.id.lower(), s)
        for s in self.schemas:
            self._lookup.setdefault(s.plural.lower(), s)
            if s.rt is not None:
                self._by_storage[s.rt.storage_key] = s

    def lookup(self, name: str) -> Schema | None:
        """The schema a URL segment names: by id or by plural name."""
        return self._lookup.get(name.lower())

    def for_type(self, rt: ResourceType) -> Schema | None:
        return self._by_storage.get(rt.storage_key)

    def for_kind(self, api_version: str, kind: str) -> Schema | None:
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        return self._lookup.get(schema_id(group, kind))

    def types(self) -> list[Schema]:
        return [s for s in self.schemas if s.rt is not None]

    @classmethod
    def build(cls, registry: Registry) -> SchemaSet:
        out = list(_BUILTIN)
        seen: set[tuple[str, str]] = set()
        for group, versions in registry.groups():
            preferred = versions[0] if versions else ""
            for version in versions:
                for rt in registry.resources(group, version):
                    if rt.storage_key in seen or "/" in rt.plural:
                        continue
                    seen.add(rt.storage_key)
                    out.append(_type_schema(rt, preferred))
        return cls(out)


def schemas_for(registry: Registry) -> SchemaSet:
    """The registry's schema set, built on first use and shared by every registry with its tables."""
    cache = registry.cache
    found = cache.get(_CACHE_KEY)
    if isinstance(found, SchemaSet):
        return found
    built = SchemaSet.build(registry)
    cache[_CACHE_KEY] = built
    return built
