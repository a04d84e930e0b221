"""One cluster's changes relative to its seed, kept in the state directory across restarts.

Rancher writes into every cluster it manages (its agent Deployment, RBAC, impersonation accounts and
their token Secrets) and later compares what it reads back with what it wrote: a restart that forgot
those writes would make Rancher redeploy its agent on every cluster at once.  So each cluster's
differences from its seed (objects created, changed or deleted) and its resourceVersion counter are saved
as one JSON file, `clusters/<name>.json`, written atomically (`StateDir.write_json`).

The seed itself is never saved: it is rebuilt from the template on start, and the saved differences are
laid over it.  A file that cannot be read back (truncated mid-write, garbage, wrong shape) is reported
and moved aside by `StateDir` (`CorruptStateFile`); the cluster then starts from its seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from scaleagent.apiserver.store import Store
from scaleagent.redact import logger
from scaleagent.state import StateDir

log = logger()

FORMAT = 1
SUBDIR = "clusters"
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")

StorageKey = tuple[str, str]
Key = tuple[str, str]
Change = tuple[StorageKey, Key, dict[str, Any] | None]


def file_name(cluster_name: str) -> str:
    """The state-directory name of a cluster's file (`clusters/<name>.json`)."""
    if not cluster_name or "/" in cluster_name or cluster_name.startswith("."):
        raise ValueError(f"cluster name {cluster_name!r}: expected a plain name")
    return f"{SUBDIR}/{cluster_name}.json"


@dataclass
class Saved:
    """What a cluster file holds: the counter and the differences from the seed."""

    name: str
    index: int
    resource_version: int
    changes: list[Change] = field(default_factory=list)


def dump(name: str, index: int, store: Store) -> dict[str, Any]:
    """The JSON document for `store`'s current differences from its seed."""
    changes = []
    for (group, plural), (namespace, obj_name), obj in sorted(store.changes(), key=_order):
        changes.append(
            {"group": group, "resource": plural, "namespace": namespace, "name": obj_name, "object": obj}
        )
    return {
        "format": FORMAT,
        "name": name,
        "index": index,
        "resourceVersion": store.resource_version,
        "changes": changes,
    }


def _order(change: Change) -> tuple[StorageKey, Key]:
    return change[0], change[1]


def parse(doc: dict[str, Any]) -> Saved:
    """A `Saved` from a document `dump` wrote; ValueError naming what is wrong otherwise."""
    if doc.get("format") != FORMAT:
        raise ValueError(f"format: expected {FORMAT}, found {doc.get('format')!r}")
    name, index, rv = doc.get("name"), doc.get("index"), doc.get("resourceVersion")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a cluster name, found {name!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index: expected a whole number >= 0, found {index!r}")
    if isinstance(rv, bool) or not isinstance(rv, int) or rv < 0:
        raise ValueError(f"resourceVersion: expected a whole number >= 0, found {rv!r}")
    raw = doc.get("changes")
    if not isinstance(raw, list):
        raise ValueError("changes: expected a list")
    changes: list[Change] = []
    for position, item in enumerate(raw):
        where = f"changes[{position}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object")
        parts = [item.get(k) for k in ("group", "resource", "namespace", "name")]
        if not all(isinstance(p, str) for p in parts) or not parts[1] or not parts[3]:
            raise ValueError(f"{where}: expected group, resource, namespace and name strings")
        obj = item.get("object")
        if obj is not None:
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            if not isinstance(meta, dict) or meta.get("name") != parts[3]:
                raise ValueError(f"{where}.object: expected an object named {parts[3]!r}")
            if not isinstance(meta.get("resourceVersion"), str):
                raise ValueError(f"{where}.object: metadata.resourceVersion missing")
        changes.append(((parts[0], parts[1]), (parts[2], parts[3]), obj))
    return Saved(name, index, rv, changes)


def save(state: StateDir, name: str, index: int, store: Store) -> None:
    """Write the cluster's file atomically (raises `StateWriteError` on I/O failure)."""
    state.write_json(file_name(name), dump(name, index, store))


def read(state: StateDir, name: str) -> Saved | None:
    """The saved state of cluster `name`, or None when there is none.

    Raises `CorruptStateFile` (after moving the file aside and logging it) when the file is not valid
    JSON (e.g. truncated mid-write) or does not have the shape `dump` writes.
    """
    fname = file_name(name)
    doc = state.read_json(fname)
    if doc is None:
        return None
    try:
        saved = parse(doc)
    except ValueError as error:
        state.corrupt(fname, str(error))
    if saved.name != name:
        state.corrupt(fname, f"name: expected {name!r}, found {saved.name!r}")
    return saved


def restore(store: Store, saved: Saved) -> None:
    """Lay the saved differences over `store` (fresh from its seed): no watch events are sent.

    CustomResourceDefinitions among them are served again (and seed CRDs saved as deleted stop being
    served), so the custom objects saved alongside are reachable.
    """
    store.restore(saved.changes, saved.resource_version)
    _serve_crds(store, saved.changes)


def _serve_crds(store: Store, changes: Iterable[Change]) -> None:
    from scaleagent.apiserver.writes import register_crd

    for skey, (_namespace, name), obj in changes:
        if skey != CRD_KEY:
            continue
        if obj is not None:
            try:
                register_crd(store, obj)
            except Exception:  # a CRD we cannot serve must not stop the cluster
                log.failure("restored CRD {name} cannot be served", name=name)
        else:
            for rt in list(store.kinds):
                if rt.crd == name:
                    store.kinds.unregister(rt.group, rt.version, rt.plural)


def saved_names(state: StateDir) -> Iterator[str]:
    """Names of the clusters that have a state file."""
    for fname in state.names(SUBDIR, ".json"):
        yield fname[len(SUBDIR) + 1 : -len(".json")]
