"""steve's `count` resource: how many objects of each type, per state class and namespace.

`/v1/counts` answers a one-item collection whose object is
`{"id": "count", "counts": {<schema id>: {"summary": {...}, "namespaces": {<ns>: {...}}}}}`; each
summary holds `count`, `states` (only the "error" and "in-progress" classes), `errors` and
`transitioning`, every zero member left out (steve's `pkg/resources/counts`).  The Cluster Explorer
reads it for the side menu and the cluster dashboard's tiles.
"""

from __future__ import annotations

from typing import Any

from scaleagent.apiserver.store import Store
from scaleagent.steve.schemas import COUNT, Schema, SchemaSet
from scaleagent.steve.summary import Summary, summarize


def simple_state(s: Summary) -> str:
    if s.error:
        return "error"
    if s.transitioning:
        return "in-progress"
    return ""


def _add(counts: dict[str, Any], s: Summary) -> None:
    counts["count"] = counts.get("count", 0) + 1
    if s.transitioning:
        counts["transitioning"] = counts.get("transitioning", 0) + 1
    if s.error:
        counts["errors"] = counts.get("errors", 0) + 1
    state = simple_state(s)
    if state:
        states = counts.setdefault("states", {})
        states[state] = states.get(state, 0) + 1


def countable(schemas: SchemaSet) -> list[Schema]:
    """Types steve counts: every listed and watched Kubernetes type."""
    return [s for s in schemas.types() if s.rt is not None and s.rt.watchable]


def item_count(store: Store, schema: Schema) -> dict[str, Any]:
    assert schema.rt is not None
    summary: dict[str, Any] = {}
    namespaces: dict[str, dict[str, Any]] = {}
    for entry in store.list(schema.rt).items:
        s = summarize(entry.obj)
        _add(summary, s)
        ns = entry.obj.get("metadata", {}).get("namespace") or ""
        if ns:
            _add(namespaces.setdefault(ns, {}), s)
    out: dict[str, Any] = {"summary": summary}
    if namespaces:
        out["namespaces"] = namespaces
    return out


def counts(store: Store, schemas: SchemaSet, only: list[Schema] | None = None) -> dict[str, Any]:
    """The `count` object's body (without id/type/links)."""
    chosen = only if only is not None else countable(schemas)
    return {"counts": {s.id: item_count(store, s) for s in chosen}}


def count_schema(schemas: SchemaSet) -> Schema:
    found = schemas.lookup(COUNT)
    assert found is not None
    return found
