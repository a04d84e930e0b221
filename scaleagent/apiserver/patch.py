"""Patch semantics of a kube-apiserver as pure functions on JSON-like dicts.

Four kinds of PATCH body, dispatched on Content-Type by the write path:

* `application/json-patch+json`: RFC 6902 operations (the `jsonpatch` library does this part);
* `application/merge-patch+json`: RFC 7386 (null deletes, lists replaced);
* `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.  Lists that the API types
  tag with a patch merge key (containers by `name`, ports by `containerPort` …) are merged item by item,
  finalizers are merged as a set, everything else behaves like a merge patch.  The directives kubectl
  sends are honoured: `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<field>` and
  `$deleteFromPrimitiveList/<field>`;
* `application/apply-patch+yaml`: server-side apply.  The applied configuration is merged into the live
  object, the applier's fields are recorded in `metadata.managedFields` (FieldsV1), and fields it applied
  before but no longer does are removed unless another manager owns them.

No reactor, no store: functions take and return dicts and never modify their arguments.  A bad patch
raises `PatchError` carrying the HTTP code a real apiserver answers with (400 or 422).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)


class PatchError(ValueError):
    """A patch that cannot be applied; `code` is 400 (malformed) or 422 (does not fit the object)."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --------------------------------------------------------------------------------------------------
# RFC 6902 JSON patch and RFC 7386 merge patch


def json_patch(obj: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply an RFC 6902 operation list; a malformed list is 400, an inapplicable one 422."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations", 400)
    try:
        patch = jsonpatch.JsonPatch(operations)
        result = patch.apply(obj, in_place=False)
    except jsonpatch.InvalidJsonPatch as exc:
        raise PatchError(f"invalid json patch: {exc}", 400) from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchError(f"the json patch could not be applied: {exc}", 422) from None
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
        raise PatchError(f"invalid json patch: {exc}", 400) from None
    if not isinstance(result, dict):
        raise PatchError("the json patch replaced the object with a non-object", 422)
    return result


def merge_patch(obj: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null removes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------------------------------
# Patch metadata of the Kubernetes API types (what `patchStrategy`/`patchMergeKey` tags say)


@dataclass(frozen=True)
class Struct:
    """An object type: the fields whose patch behaviour differs from "merge maps, replace lists"."""

    fields: dict[str, Any] = field(default_factory=dict)

    def child(self, name: str) -> Any:
        return self.fields.get(name)


@dataclass(frozen=True)
class MergeList:
    """`patchStrategy:"merge"` on a list of objects: items are matched by `key`.

    `apply_keys` are the list-map keys server-side apply identifies items by (`listMapKey`), which
    for a few lists are more than the strategic merge key (ports: port and protocol).
    """

    key: str
    item: Struct = field(default_factory=Struct)
    apply_keys: tuple[str, ...] = ()

    @property
    def identity(self) -> tuple[str, ...]:
        return self.apply_keys or (self.key,)


@dataclass(frozen=True)
class SetList:
    """`patchStrategy:"merge"` on a list of scalars (finalizers, podCIDRs): a union, in order."""


EMPTY = Struct()

_CONTAINER = Struct(
    {
        "ports": MergeList("containerPort", apply_keys=("containerPort", "protocol")),
        "env": MergeList("name"),
        "volumeMounts": MergeList("mountPath"),
        "volumeDevices": MergeList("devicePath"),
    }
)

_POD_SPEC = Struct(
    {
        "volumes": MergeList("name"),
        "initContainers": MergeList("name", _CONTAINER),
        "containers": MergeList("name", _CONTAINER),
        "ephemeralContainers": MergeList("name", _CONTAINER),
        "imagePullSecrets": MergeList("name"),
        "hostAliases": MergeList("ip"),
        "topologySpreadConstraints": MergeList(
            "topologyKey", apply_keys=("topologyKey", "whenUnsatisfiable")
        ),
        "resourceClaims": MergeList("name"),
        "schedulingGates": MergeList("name"),
    }
)

_CONDITIONS = MergeList("type")

_POD_STATUS = Struct(
    {
        "conditions": _CONDITIONS,
        "podIPs": MergeList("ip"),
        "hostIPs": MergeList("ip"),
        "resourceClaimStatuses": MergeList("name"),
    }
)

OBJECT_META = Struct({"finalizers": SetList(), "ownerReferences": MergeList("uid")})

_TEMPLATE = Struct({"metadata": OBJECT_META, "spec": _POD_SPEC})
_CONDITIONED_STATUS = Struct({"conditions": _CONDITIONS})


def _workload(extra: dict[str, Any] | None = None) -> Struct:
    return Struct(
        {
            "metadata": OBJECT_META,
            "spec": Struct({"template": _TEMPLATE, **(extra or {})}),
            "status": _CONDITIONED_STATUS,
        }
    )


def _with_meta(fields: dict[str, Any]) -> Struct:
    return Struct({"metadata": OBJECT_META, **fields})


# (group, kind) → patch metadata.  Kinds not listed merge like a JSON merge patch with `$patch`
# directives still honoured (a real server refuses strategic merge on custom resources with 415; a
# lenient merge serves clients such as steve that send it anyway).
SCHEMAS: dict[tuple[str, str], Struct] = {
    ("", "Pod"): _with_meta({"spec": _POD_SPEC, "status": _POD_STATUS}),
    ("", "PodTemplate"): _with_meta({"template": _TEMPLATE}),
    ("", "ReplicationController"): _workload(),
    ("apps", "Deployment"): _workload(),
    ("apps", "ReplicaSet"): _workload(),
    ("apps", "StatefulSet"): _workload(),
    ("apps", "DaemonSet"): _workload(),
    ("batch", "Job"): _workload(),
    ("batch", "CronJob"): _with_meta(
        {"spec": Struct({"jobTemplate": _with_meta({"spec": Struct({"template": _TEMPLATE})})})}
    ),
    ("", "Service"): _with_meta(
        {
            "spec": Struct({"ports": MergeList("port", apply_keys=("port", "protocol"))}),
            "status": _CONDITIONED_STATUS,
        }
    ),
    ("", "Node"): _with_meta(
        {
            "spec": Struct({"podCIDRs": SetList()}),
            "status": Struct({"conditions": _CONDITIONS, "addresses": MergeList("type")}),
        }
    ),
    ("", "Namespace"): _with_meta({"status": _CONDITIONED_STATUS}),
    ("", "ServiceAccount"): _with_meta({"secrets": MergeList("name"), "imagePullSecrets": MergeList("name")}),
    ("", "PersistentVolumeClaim"): _with_meta({"status": _CONDITIONED_STATUS}),
    ("autoscaling", "HorizontalPodAutoscaler"): _with_meta({"status": _CONDITIONED_STATUS}),
}

_GENERIC = Struct({"metadata": OBJECT_META})


def schema_for(group: str, kind: str) -> Struct:
    """The patch metadata for a kind; unknown kinds get only the ObjectMeta rules."""
    return SCHEMAS.get((group, kind), _GENERIC)


# --------------------------------------------------------------------------------------------------
# Strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge_patch(obj: dict[str, Any], patch: Any, schema: Struct = EMPTY) -> dict[str, Any]:
    """Apply a strategic merge patch to `obj` following the patch metadata in `schema`."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object", 400)
    result = _merge_map(copy.deepcopy(obj), copy.deepcopy(patch), schema)
    if result is None:
        raise PatchError("a strategic merge patch cannot delete the whole object", 422)
    return result


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any], schema: Any) -> dict[str, Any]:
    """Merge `patch` into `original` (both already private copies)."""
    struct = schema if isinstance(schema, Struct) else EMPTY
    directive = patch.pop(_DIRECTIVE, None)
    if directive is not None:
        if directive == "replace":
            return _strip(patch, struct)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise PatchError(f"unknown patch type: {directive} in map: {patch}", 400)
    if original is None:
        original = {}

    retain = patch.pop(_RETAIN_KEYS, None)
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise PatchError("invalid patch: $retainKeys must be a list of strings", 400)
        for key, value in patch.items():
            # a null is a deletion (kubectl sends `rollingUpdate: null` beside `$retainKeys: [type]`)
            if value is not None and not key.startswith("$") and key not in retain:
                raise PatchError(f"patch content doesn't match retainKeys list: {key} not in {retain}", 422)
        for key in list(original):
            if key not in retain:
                del original[key]

    orders = {k[len(_SET_ORDER) :]: patch.pop(k) for k in list(patch) if k.startswith(_SET_ORDER)}
    deletions = {
        k[len(_DELETE_PRIMITIVE) :]: patch.pop(k) for k in list(patch) if k.startswith(_DELETE_PRIMITIVE)
    }
    before: dict[str, list[Any]] = {}
    for key, order in orders.items():
        if not isinstance(order, list):
            raise PatchError(f"invalid patch: $setElementOrder/{key} must be a list", 400)
        sub = struct.child(key)
        merge_key = sub.key if isinstance(sub, MergeList) else None
        _check_order(patch.get(key), order, merge_key, key)
        current = original.get(key)
        before[key] = list(current) if isinstance(current, list) else []

    for key, value in patch.items():
        if key.startswith("$"):
            raise PatchError(f"unknown directive {key!r} in strategic merge patch", 400)
        sub = struct.child(key)
        if value is None:
            original.pop(key, None)
        elif isinstance(value, dict) and isinstance(original.get(key), dict):
            original[key] = _merge_map(original[key], value, sub)
        elif isinstance(value, list) and isinstance(original.get(key), list):
            original[key] = _merge_list(original[key], value, sub, key)
        else:
            original[key] = _strip(value, sub)

    for key, values in deletions.items():
        if not isinstance(values, list):
            raise PatchError(f"invalid patch: $deleteFromPrimitiveList/{key} must be a list", 400)
        current = original.get(key)
        if isinstance(current, list):
            original[key] = [v for v in current if v not in values]

    for key, order in orders.items():
        current = original.get(key)
        if isinstance(current, list):
            sub = struct.child(key)
            merge_key = sub.key if isinstance(sub, MergeList) else None
            original[key] = _order_by(current, order, before[key], merge_key)
    return original


def _strip(value: Any, schema: Any) -> Any:
    """A patch value that lands where nothing was: apply it to emptiness so directives vanish."""
    if isinstance(value, dict):
        return _merge_map({}, value, schema)
    if isinstance(value, list):
        return _merge_list([], value, schema, "")
    return value


def _item_key(item: Any, merge_key: str, field_name: str) -> Any:
    if not isinstance(item, dict):
        raise PatchError(f"{field_name}: list item {item!r} is not a map", 400)
    if merge_key not in item:
        raise PatchError(f"map: {item} does not contain declared merge key: {merge_key}", 422)
    return item[merge_key]


def _merge_list(original: list[Any], patch: list[Any], schema: Any, field_name: str) -> list[Any]:
    if isinstance(schema, SetList):
        merged = list(original)
        for value in patch:
            if value not in merged:
                merged.append(value)
        return _order_by(merged, patch, original, None)
    if not isinstance(schema, MergeList):
        return [_strip(v, None) for v in patch]

    key = schema.key
    replace = False
    kept: list[Any] = []
    for item in patch:
        if isinstance(item, dict) and _DIRECTIVE in item:
            directive = item[_DIRECTIVE]
            if directive == "delete":
                value = _item_key(item, key, field_name)
                original = [o for o in original if not (isinstance(o, dict) and o.get(key) == value)]
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                raise PatchError("merging lists cannot yet be specified in the patch", 422)
            else:
                raise PatchError(f"unknown patch type: {directive} in map: {item}", 400)
        else:
            _item_key(item, key, field_name)
            kept.append(item)
    if replace:
        return [_strip(item, schema.item) for item in kept]

    merged = list(original)
    for item in kept:
        value = item[key]
        for index, existing in enumerate(merged):
            if isinstance(existing, dict) and existing.get(key) == value:
                merged[index] = _merge_map(existing, item, schema.item)
                break
        else:
            merged.append(_strip(item, schema.item))
    return _order_by(merged, kept, original, key)


def _identity(item: Any, merge_key: str | None) -> Any:
    if merge_key is None:
        return json.dumps(item, sort_keys=True)
    return json.dumps(item.get(merge_key) if isinstance(item, dict) else item, sort_keys=True)


def _order_by(merged: list[Any], order: list[Any], server: list[Any], merge_key: str | None) -> list[Any]:
    """Put the items named in `order` in that order, weaving the server-only items in between.

    Server-only items keep their relative order; one goes before a patch item when the server list had
    it before that item (the rule of apimachinery's strategic merge, which the preserve-order design
    describes for `$setElementOrder`).
    """
    rank = {_identity(item, merge_key): i for i, item in enumerate(order)}
    server_rank = {_identity(item, merge_key): i for i, item in enumerate(server)}
    named = [item for item in merged if _identity(item, merge_key) in rank]
    named.sort(key=lambda item: rank[_identity(item, merge_key)])
    others = [item for item in merged if _identity(item, merge_key) not in rank]
    result: list[Any] = []
    i = j = 0
    while i < len(others) or j < len(named):
        if j >= len(named):
            result.append(others[i])
            i += 1
        elif i >= len(others):
            result.append(named[j])
            j += 1
        else:
            left = server_rank.get(_identity(others[i], merge_key))
            right = server_rank.get(_identity(named[j], merge_key))
            if left is not None and right is not None and left < right:
                result.append(others[i])
                i += 1
            else:
                result.append(named[j])
                j += 1
    return result


def _check_order(patch_list: Any, order: list[Any], merge_key: str | None, field_name: str) -> None:
    """The patch list's items must appear in `$setElementOrder`, in the same relative order."""
    if merge_key is not None:
        for entry in order:
            _item_key(entry, merge_key, field_name)
    if not isinstance(patch_list, list):
        return
    wanted = [_identity(item, merge_key) for item in order]
    position = -1
    for item in patch_list:
        if isinstance(item, dict) and _DIRECTIVE in item:
            continue
        ident = _identity(item, merge_key)
        if ident not in wanted or wanted.index(ident) < position:
            raise PatchError(
                f"The order in patch list:\n{patch_list}\n doesn't match $setElementOrder list:\n{order}", 422
            )
        position = wanted.index(ident)


# --------------------------------------------------------------------------------------------------
# Managed fields (FieldsV1) and server-side apply

Path = tuple[str, ...]

# What an applier never owns: identity and server-set metadata.
_UNOWNED_TOP = frozenset({"apiVersion", "kind"})
_UNOWNED_META = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def _key_element(item: dict[str, Any], schema: MergeList) -> str:
    key = {k: item[k] for k in schema.identity if k in item}
    return "k:" + json.dumps(key, sort_keys=True, separators=(",", ":"))


def field_paths(obj: dict[str, Any], schema: Struct = EMPTY) -> set[Path]:
    """The set of field paths an object sets, in FieldsV1 element syntax (`f:`, `k:`, `v:`, `.`)."""
    paths: set[Path] = set()
    for key, value in obj.items():
        if key in _UNOWNED_TOP:
            continue
        if key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _UNOWNED_META}
            if meta:
                _walk(meta, ("f:metadata",), schema.child("metadata"), paths)
            continue
        _walk(value, ("f:" + key,), schema.child(key), paths)
    return paths


def _walk(value: Any, prefix: Path, schema: Any, out: set[Path]) -> None:
    if isinstance(value, dict):
        if not value:
            out.add(prefix)
        struct = schema if isinstance(schema, Struct) else EMPTY
        for key, sub in value.items():
            _walk(sub, (*prefix, "f:" + key), struct.child(key), out)
    elif isinstance(value, list) and isinstance(schema, MergeList):
        if not value:
            out.add(prefix)
        for item in value:
            if isinstance(item, dict):
                element = (*prefix, _key_element(item, schema))
                out.add((*element, "."))
                for key, sub in item.items():
                    _walk(sub, (*element, "f:" + key), schema.item.child(key), out)
    elif isinstance(value, list) and isinstance(schema, SetList):
        if not value:
            out.add(prefix)
        for item in value:
            out.add((*prefix, "v:" + json.dumps(item, separators=(",", ":"))))
    else:
        out.add(prefix)


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Nest a path set into the FieldsV1 JSON shape stored in `managedFields`."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for element in path:
            child = node.get(element)
            if child is None:  # (setdefault would build a dict per element only to drop it)
                child = node[element] = {}
            node = child
    return root


def from_fields_v1(fields: Any) -> set[Path]:
    """Flatten a FieldsV1 dict back into a path set (malformed input yields what can be read)."""
    paths: set[Path] = set()

    def walk(node: Any, prefix: Path) -> None:
        if not isinstance(node, dict):
            return
        for key, child in node.items():
            if isinstance(child, dict) and child:
                walk(child, (*prefix, key))
            else:
                paths.add((*prefix, key))

    walk(fields, ())
    return paths


def _step(node: Any, element: str, schema: Any) -> tuple[Any, Any]:
    """One path element down from `node`: (child value or None, child schema)."""
    if element.startswith("f:") and isinstance(node, dict):
        struct = schema if isinstance(schema, Struct) else EMPTY
        return node.get(element[2:]), struct.child(element[2:])
    if element.startswith("k:") and isinstance(node, list) and isinstance(schema, MergeList):
        wanted = json.loads(element[2:])
        for item in node:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                return item, schema.item
    return None, None


def _lookup(obj: Any, path: Path, schema: Any) -> Any:
    node: Any = obj
    for element in path:
        if element == ".":
            return node
        if element.startswith("v:"):
            value = json.loads(element[2:])
            return value if isinstance(node, list) and value in node else None
        node, schema = _step(node, element, schema)
        if node is None:
            return None
    return node


def _remove(obj: dict[str, Any], path: Path, schema: Any) -> None:
    """Remove the field (or list item, or set member) a path names; missing parents are fine."""
    parent: Any = obj
    parent_schema: Any = schema
    for element in path[:-2]:
        parent, parent_schema = _step(parent, element, parent_schema)
        if parent is None:
            return
    if len(path) >= 2:
        holder = parent
        parent, parent_schema = _step(parent, path[-2], parent_schema)
        if parent is None:
            return
    else:
        holder = None
    last = path[-1]
    if last == ".":
        if isinstance(holder, list):
            holder.remove(parent)
        return
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("v:") and isinstance(parent, list):
        value = json.loads(last[2:])
        while value in parent:
            parent.remove(value)
    elif last.startswith("k:") and isinstance(parent, list):
        item, _ = _step(parent, last, parent_schema)
        if item is not None:
            parent.remove(item)


def _under(path: Path, prefix: Path) -> bool:
    return path[: len(prefix)] == prefix


@dataclass
class ApplyConflict:
    """A field the applier sets to a different value than another manager's."""

    manager: str
    path: Path
    api_version: str = ""

    @property
    def field(self) -> str:
        """The path as the apiserver prints it: `.spec.containers[name="c"].image`."""
        out = ""
        for element in self.path:
            if element.startswith("f:"):
                out += "." + element[2:]
            elif element.startswith("k:"):
                try:
                    key = json.loads(element[2:])
                except ValueError:
                    key = {}
                out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
            elif element.startswith("v:"):
                out += "[" + element[2:] + "]"
        return out

    @property
    def owner(self) -> str:
        using = f" using {self.api_version}" if self.api_version else ""
        return f'"{self.manager}"{using}'

    def describe(self) -> str:
        return f"conflict with {self.owner}: {self.field}"


class ApplyConflictError(PatchError):
    """Server-side apply found conflicts and `force` was not set (409 Conflict with causes)."""

    def __init__(self, conflicts: list[ApplyConflict]) -> None:
        self.conflicts = conflicts
        if len(conflicts) == 1:
            message = f"Apply failed with 1 conflict: {conflicts[0].describe()}"
        else:
            groups: dict[str, list[str]] = {}
            for c in conflicts:
                groups.setdefault(c.owner, []).append(c.field)
            parts = []
            for owner, fields in groups.items():
                if len(fields) == 1:
                    parts.append(f"conflict with {owner}: {fields[0]}")
                else:
                    parts.append(f"conflicts with {owner}:\n" + "\n".join("- " + f for f in fields))
            message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(parts)
        super().__init__(message, 409)


def _entries(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not obj:
        return []
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    return [dict(e) for e in entries if isinstance(e, dict)]


def _merge_applied(live: Any, applied: Any, schema: Any) -> Any:
    """Merge an applied configuration into the live value: maps by key, keyed lists by identity."""
    if isinstance(applied, dict) and isinstance(live, dict):
        struct = schema if isinstance(schema, Struct) else EMPTY
        result = dict(live)
        for key, value in applied.items():
            result[key] = _merge_applied(live.get(key), value, struct.child(key))
        return result
    if isinstance(applied, list) and isinstance(live, list):
        if isinstance(schema, SetList):
            return list(live) + [v for v in applied if v not in live]
        if isinstance(schema, MergeList):
            result_list = list(live)
            for item in applied:
                if not isinstance(item, dict):
                    raise PatchError(f"list item {item!r} is not a map", 422)
                element = _key_element(item, schema)
                for index, existing in enumerate(result_list):
                    if isinstance(existing, dict) and _key_element(existing, schema) == element:
                        result_list[index] = _merge_applied(existing, item, schema.item)
                        break
                else:
                    result_list.append(copy.deepcopy(item))
            return result_list
    return copy.deepcopy(applied)


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    *,
    schema: Struct = EMPTY,
    api_version: str,
    now: str,
    force: bool = False,
) -> dict[str, Any]:
    """Apply `applied` as `manager`: the object to store (create it when `live` is None).

    Fields this manager applied last time and no longer applies are removed unless another manager
    owns them.  A field another manager owns with a different value is a conflict (`ApplyConflictError`,
    409) unless `force`, which moves the ownership to this manager.
    """
    if not isinstance(applied, dict):
        raise PatchError("the applied configuration must be an object", 400)
    if not manager:
        raise PatchError("PATCH with apply requires a fieldManager", 400)
    applied = copy.deepcopy(applied)
    meta = applied.get("metadata")
    if isinstance(meta, dict):
        for key in ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"):
            meta.pop(key, None)
    new_paths = field_paths(applied, schema)

    entries = _entries(live)
    mine: dict[str, Any] | None = None
    others: list[tuple[dict[str, Any], set[Path]]] = []
    for entry in entries:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            mine = entry
        else:
            others.append((entry, from_fields_v1(entry.get("fieldsV1"))))
    old_paths = from_fields_v1(mine.get("fieldsV1")) if mine else set()

    if live is not None:
        conflicts: list[ApplyConflict] = []
        for entry, owned in others:
            for path in sorted(new_paths & owned):
                if path[-1] == ".":
                    continue
                if _lookup(live, path, schema) != _lookup(applied, path, schema):
                    owner, version = str(entry.get("manager", "")), str(entry.get("apiVersion", ""))
                    conflicts.append(ApplyConflict(owner, path, version))
        if conflicts and not force:
            raise ApplyConflictError(conflicts)
        if conflicts:
            taken = {c.path for c in conflicts}
            for entry, owned in others:
                owned -= taken
                entry["fieldsV1"] = to_fields_v1(owned)

    result = copy.deepcopy(live) if live is not None else {}
    owned_by_others: set[Path] = set().union(*(owned for _, owned in others)) if others else set()
    keep = new_paths | owned_by_others
    # Whole list items first: their fields then have nothing left to remove.
    for path in sorted(old_paths - keep, key=lambda q: len(q) - (q[-1] == ".")):
        if any(_under(kept, path[:-1] if path[-1] == "." else path) for kept in keep):
            continue
        _remove(result, path, schema)

    result = _merge_applied(result, applied, schema)
    entry = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(new_paths),
    }
    kept_entries = [e for e, owned in others if owned]
    result.setdefault("metadata", {})["managedFields"] = _ordered(kept_entries, entry, entries)
    if live is not None and _without_times(result) == _without_times(live):
        return copy.deepcopy(live)  # a no-op apply changes nothing, not even the manager's timestamp
    return result


def _without_times(obj: dict[str, Any]) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta["managedFields"] = [
        {k: v for k, v in e.items() if k != "time"}
        for e in meta.get("managedFields") or ()
        if isinstance(e, dict)
    ]
    return {**obj, "metadata": meta}


def _ordered(
    others: list[dict[str, Any]], entry: dict[str, Any], before: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Keep the manager's entry where it was; a new manager goes last, as the apiserver lists them."""
    names = [(e.get("manager"), e.get("operation")) for e in before]
    wanted = (entry["manager"], entry["operation"])
    result = list(others)
    if wanted in names:
        position = sum(1 for e in before[: names.index(wanted)] if any(e is o or e == o for o in others))
        result.insert(position, entry)
    else:
        result.append(entry)
    return result


def _differs(old: dict[str, Any], new: dict[str, Any], path: Path, schema: Struct) -> bool:
    """Whether a write changed the field at `path`; a list item's `.` changes only when it is new."""
    if path[-1] == ".":
        return _lookup(old, path, schema) is None
    return _lookup(old, path, schema) != _lookup(new, path, schema)


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    *,
    schema: Struct = EMPTY,
    api_version: str,
    now: str,
    subresource: str | None = None,
) -> dict[str, Any]:
    """Record a non-apply write by `manager` in `new`'s managedFields; returns the updated object.

    The manager takes ownership of every field the write set or changed; other managers lose those
    fields.  Unchanged fields keep their owners, as the apiserver's field manager does.
    """
    new = copy.deepcopy(new)
    meta = new.setdefault("metadata", {})
    entries = _entries(old)
    old_values = old or {}

    def relevant(paths: set[Path]) -> set[Path]:
        # status belongs to whoever writes the status subresource, everything else to the main resource
        want_status = subresource == "status"
        return {q for q in paths if (q[0] == "f:status") == want_status}

    new_paths = relevant(field_paths(new, schema))
    changed = {path for path in new_paths if old is None or _differs(old_values, new, path, schema)}
    gone = relevant(field_paths(old_values, schema)) - new_paths if old is not None else set()
    result: list[dict[str, Any]] = []
    mine: dict[str, Any] | None = None
    for entry in entries:
        owned = from_fields_v1(entry.get("fieldsV1")) - gone
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Update"
            and (entry.get("subresource") == subresource)
        ):
            mine = entry
            owned |= changed
        else:
            owned -= changed
        if owned:
            entry["fieldsV1"] = to_fields_v1(owned)
            result.append(entry)
        elif entry is mine:
            mine = None
    if mine is not None and changed:
        mine["time"] = now
        mine["apiVersion"] = api_version
    elif changed and manager:
        entry = {
            "manager": manager,
            "operation": "Update",
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(changed),
        }
        if subresource:
            entry["subresource"] = subresource
        result.append(entry)
    if result:
        meta["managedFields"] = result
    else:
        meta.pop("managedFields", None)
    return new
