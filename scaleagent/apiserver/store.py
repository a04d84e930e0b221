"""One simulated cluster's objects: resourceVersions, LIST with selectors and paging, WATCH fan-out.

A process holds thousands of stores, so a store costs little beyond its own changes:

* A `Seed` holds objects shared by many stores (the cluster template).  It is never changed.
* A `Store` keeps only what differs from its seed (`_changes`, with `None` for a deleted seed object),
  a bounded event history for watches, and its watchers.

Objects live in `Entry` wrappers that cache their JSON encoding, so a seed object is encoded once for
every cluster that serves it.  Stored dicts are shared and must never be mutated: every write takes a
copy.  The store is pure (no reactor, no I/O); watch timeouts and bookmark timers belong to the caller.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from scaleagent.apiserver import status
from scaleagent.apiserver.kinds import Registry, ResourceType
from scaleagent.apiserver.selectors import matcher
from scaleagent.apiserver.status import ApiError
from scaleagent.redact import logger

log = logger()

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
BOOKMARK = "BOOKMARK"
ERROR = "ERROR"

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
DEFAULT_HISTORY = 1000

Key = tuple[str, str]  # (namespace or "", name)
StorageKey = tuple[str, str]  # (group, plural)


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Entry:
    """A stored object (never mutated).  `json()` encodes it on every call: most objects are encoded
    once or twice in their life, and keeping the bytes would cost more memory than the object."""

    __slots__ = ("obj",)

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def json(self) -> bytes:
        return _encode(self.obj)

    @property
    def resource_version(self) -> int:
        return int(self.obj["metadata"]["resourceVersion"])

    def __repr__(self) -> str:
        meta = self.obj.get("metadata", {})
        return f"{type(self).__name__}({self.obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')})"


class CachedEntry(Entry):
    """An entry that keeps its encoding: for seeds shared by many clusters, encoded once for all."""

    __slots__ = ("_json",)

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self._json: bytes | None = None

    def json(self) -> bytes:
        if self._json is None:
            self._json = _encode(self.obj)
        return self._json


def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with a `Z`, whole seconds, as Kubernetes writes metadata times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _key(rt: ResourceType, namespace: str | None, name: str) -> Key:
    return ((namespace or "") if rt.namespaced else "", name)


def _with_rv(obj: dict[str, Any], rv: int) -> dict[str, Any]:
    """A shallow copy of `obj` whose metadata carries resourceVersion `rv`."""
    out = dict(obj)
    out["metadata"] = dict(obj.get("metadata") or {})
    out["metadata"]["resourceVersion"] = str(rv)
    return out


def _as_type(entry: Entry, rt: ResourceType) -> Entry:
    """The entry as `rt`'s version serves it (only apiVersion differs: we do no conversion)."""
    if entry.obj.get("apiVersion") == rt.api_version:
        return entry
    obj = dict(entry.obj)
    obj["apiVersion"] = rt.api_version
    return Entry(obj)


def _complete(obj: dict[str, Any], meta: dict[str, Any], rt: ResourceType) -> bool:
    """Whether a seed object can be stored as given (nothing to fill in)."""
    rv = meta.get("resourceVersion")
    return (
        isinstance(rv, str)
        and rv.isdigit()
        and bool(meta.get("uid"))
        and bool(meta.get("creationTimestamp"))
        and obj.get("apiVersion") == rt.api_version
        and (rt.namespaced or "namespace" not in meta)
    )


class Seed:
    """Objects shared, read-only, by every store built from it (copy-on-write in the stores)."""

    __slots__ = ("buckets", "sorted_keys", "resource_version")

    def __init__(self, buckets: dict[StorageKey, dict[Key, Entry]], resource_version: int) -> None:
        self.buckets = buckets
        self.sorted_keys = {skey: sorted(bucket) for skey, bucket in buckets.items()}
        self.resource_version = resource_version

    @classmethod
    def from_objects(
        cls,
        objects: Iterable[dict[str, Any]],
        *,
        kinds: Registry | None = None,
        resource_version: int = 1,
        now: float | None = None,
        uid: Callable[[], str] | None = None,
        cache_json: bool = False,
    ) -> Seed:
        """Build a seed from plain objects (apiVersion, kind, metadata.name[, namespace]).

        Missing uid, creationTimestamp and resourceVersion are filled in; resourceVersions count up
        from `resource_version`.  Unknown kinds raise ValueError naming the object.  Only each object
        and its metadata are copied: the rest stays shared with `objects`, which must not change later.
        An object that already has uid, creationTimestamp and a decimal resourceVersion is stored
        as it is, without any copy (templates shared by many clusters can prepare them so).
        `cache_json=True` keeps each object's JSON once encoded: worth it when many stores share the seed.
        """
        kinds = kinds or Registry()
        created = timestamp(time.time() if now is None else now)
        make_uid = uid or (lambda: str(uuid.uuid4()))
        buckets: dict[StorageKey, dict[Key, Entry]] = {}
        rv = resource_version
        for raw in objects:
            rt = kinds.by_api_version_kind(raw.get("apiVersion", ""), raw.get("kind", ""))
            meta = raw.get("metadata") or {}
            if rt is None:
                raise ValueError(
                    f"unknown kind {raw.get('apiVersion')}/{raw.get('kind')} for {meta.get('name')!r}"
                )
            if not meta.get("name"):
                raise ValueError(f"a {rt.kind} without metadata.name")
            if rt.namespaced and not meta.get("namespace"):
                raise ValueError(f"{rt.kind} {meta['name']!r} needs metadata.namespace")
            if _complete(raw, meta, rt):
                # Already complete (uid, creationTimestamp, resourceVersion): kept as it is, no copy.
                obj = raw
                rv = max(rv, int(meta["resourceVersion"]))
            else:
                # Shallow copies: nested parts stay shared with the caller's objects (and between
                # clusters when a template shares them); stored objects are never mutated.
                obj = dict(raw)
                meta = obj["metadata"] = dict(meta)
                if not rt.namespaced:
                    meta.pop("namespace", None)
                meta.setdefault("uid", make_uid())
                meta.setdefault("creationTimestamp", created)
                rv += 1
                meta["resourceVersion"] = str(rv)
                if "spec" in obj:
                    meta.setdefault("generation", 1)
            entry = CachedEntry(obj) if cache_json else Entry(obj)
            buckets.setdefault(rt.storage_key, {})[_key(rt, meta.get("namespace"), meta["name"])] = entry
        return cls(buckets, rv)

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self.buckets.values())


EMPTY_SEED = Seed({}, 0)


@dataclass(slots=True)
class ListResult:
    """One page of a LIST: entries in (namespace, name) order, the list RV and the next token."""

    items: list[Entry]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None

    def objects(self) -> list[dict[str, Any]]:
        return [entry.obj for entry in self.items]


# A watch event as the store records it: (rv, storage key, type, new entry, previous entry or None).
_Event = tuple[int, StorageKey, str, Entry, Entry | None]
Sink = Callable[[str, Entry], None]


def _bad_rv(value: str) -> ApiError:
    return status.bad_request(f'invalid resource version "{value}"')


def parse_resource_version(value: str | None) -> int | None:
    """`""`/None → None; a decimal string → int; anything else → 400 BadRequest."""
    if value is None or value == "":
        return None
    try:
        rv = int(value)
    except ValueError:
        raise _bad_rv(value) from None
    if rv < 0:
        raise _bad_rv(value)
    return rv


def _invalid_options(field: str, kind: str, detail: str) -> ApiError:
    message = f'ListOptions.meta.k8s.io "" is invalid: {field}: {kind}: {detail}'
    reason = {"Forbidden": "FieldValueForbidden", "Unsupported value": "FieldValueNotSupported"}.get(
        kind, "FieldValueInvalid"
    )
    return ApiError(
        422,
        "Invalid",
        message,
        group="meta.k8s.io",
        kind="ListOptions",
        name="",
        causes=[{"reason": reason, "message": f"{kind}: {detail}", "field": field}],
    )


def validate_list_options(
    *,
    watch: bool,
    resource_version: str = "",
    resource_version_match: str = "",
    send_initial_events: bool | None = None,
    allow_bookmarks: bool = False,
) -> None:
    """Reject option combinations a real apiserver rejects (422 Invalid), before anything is served."""
    if resource_version_match not in ("", "Exact", "NotOlderThan"):
        raise _invalid_options(
            "resourceVersionMatch",
            "Unsupported value",
            f'"{resource_version_match}": supported values: "Exact", "NotOlderThan", ""',
        )
    if send_initial_events is not None:
        if not watch:
            raise _invalid_options(
                "sendInitialEvents", "Forbidden", "sendInitialEvents is forbidden for list"
            )
        if resource_version_match != "NotOlderThan":
            raise _invalid_options(
                "resourceVersionMatch",
                "Forbidden",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )
        if not allow_bookmarks:
            raise _invalid_options(
                "allowWatchBookmarks",
                "Forbidden",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            )
        return
    if watch and resource_version_match:
        raise _invalid_options(
            "resourceVersionMatch",
            "Forbidden",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        )
    if resource_version_match and resource_version == "":
        raise _invalid_options(
            "resourceVersionMatch",
            "Forbidden",
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )
    if resource_version_match == "Exact" and resource_version == "0":
        raise _invalid_options(
            "resourceVersionMatch",
            "Forbidden",
            'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
        )


def _encode_continue(rv: int, key: Key) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": rv, "start": f"{key[0]}/{key[1]}"}
    return base64.urlsafe_b64encode(_encode(token)).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, Key]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        namespace, _, name = data["start"].partition("/")
        return int(data["rv"]), (namespace, name)
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
        raise status.bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion"
        ) from None


def _uid_mismatch(sent: str, stored: str | None) -> str:
    return f"Precondition failed: UID in precondition: {sent}, UID in object meta: {stored}"


class Watch:
    """One watcher: filters events for one type (and namespace, selectors) and hands them to `sink`."""

    __slots__ = ("store", "rt", "namespace", "match", "sink", "allow_bookmarks", "active")

    def __init__(
        self,
        store: Store,
        rt: ResourceType,
        namespace: str | None,
        match: Callable[[dict[str, Any]], bool] | None,
        sink: Sink,
        allow_bookmarks: bool,
    ) -> None:
        self.store = store
        self.rt = rt
        self.namespace = namespace
        self.match = match
        self.sink = sink
        self.allow_bookmarks = allow_bookmarks
        self.active = True

    def _passes(self, entry: Entry) -> bool:
        if self.namespace is not None and entry.obj["metadata"].get("namespace", "") != self.namespace:
            return False
        return self.match is None or self.match(entry.obj)

    def _deliver(self, event: _Event) -> None:
        rv, _skey, kind, new, old = event
        now_ok = self._passes(new)
        if kind == MODIFIED and old is not None:
            was_ok = self._passes(old)
            if now_ok and not was_ok:
                kind = ADDED
            elif was_ok and not now_ok:
                kind, new, now_ok = DELETED, Entry(_with_rv(old.obj, rv)), True
        if now_ok:
            self.sink(kind, _as_type(new, self.rt))

    def bookmark(self) -> None:
        """Send a BOOKMARK with the store's current resourceVersion, if the client allowed them."""
        if self.active and self.allow_bookmarks:
            self.sink(BOOKMARK, Entry(self.store._bookmark_object(self.rt)))

    def cancel(self) -> None:
        """Stop delivering; safe to call more than once and from inside the sink."""
        if self.active:
            self.active = False
            self.store._unsubscribe(self)


class Store:
    """The objects of one cluster and the watch machinery over them."""

    __slots__ = (
        "kinds",
        "_seed",
        "_changes",
        "_sorted",
        "_rv",
        "_history",
        "_history_size",
        "_history_seconds",
        "_history_times",
        "_compacted",
        "_watchers",
        "_now",
        "_uid",
        "_owners",
    )

    def __init__(
        self,
        seed: Seed | None = None,
        *,
        kinds: Registry | None = None,
        resource_version: int = 0,
        history: int = DEFAULT_HISTORY,
        history_seconds: float | None = None,
        now: Callable[[], float] = time.time,
        uid: Callable[[], str] | None = None,
    ) -> None:
        self.kinds = kinds if kinds is not None else Registry()
        self._seed = seed or EMPTY_SEED
        self._changes: dict[StorageKey, dict[Key, Entry | None]] | None = None
        self._sorted: dict[StorageKey, list[Key]] | None = None
        self._rv = max(self._seed.resource_version, resource_version)
        self._history: deque[_Event] | None = None
        self._history_size = max(1, history)
        # Like the apiserver's watch cache, events may also age out: without that, a cluster whose
        # nodes heartbeat keeps `history` full copies of them forever (seen as slow growth in a soak).
        self._history_seconds = history_seconds
        self._history_times: deque[float] | None = None
        self._compacted = self._rv  # a watch may start at any RV >= this one
        self._watchers: dict[StorageKey, list[Watch]] | None = None
        self._now = now
        self._uid = uid
        self._owners: dict[str, set[tuple[StorageKey, Key]]] | None = None  # built on first use

    # -- reads ---------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The current resourceVersion of the whole cluster."""
        return self._rv

    def _entry(self, skey: StorageKey, key: Key) -> Entry | None:
        changes = self._changes.get(skey) if self._changes else None
        if changes is not None and key in changes:
            return changes[key]
        bucket = self._seed.buckets.get(skey)
        return bucket.get(key) if bucket else None

    def _keys(self, skey: StorageKey) -> list[Key]:
        """All live keys of a type, sorted; cached per type while its key set is unchanged."""
        changes = self._changes.get(skey) if self._changes else None
        if not changes:
            return self._seed.sorted_keys.get(skey, [])
        if self._sorted is None:
            self._sorted = {}
        keys = self._sorted.get(skey)
        if keys is None:
            base = self._seed.buckets.get(skey, {})
            live = {k for k in base if changes.get(k, base[k]) is not None}
            live.update(k for k, v in changes.items() if v is not None)
            keys = self._sorted[skey] = sorted(live)
        return keys

    def lookup(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (read-only!) or None."""
        entry = self.lookup_entry(rt, namespace, name)
        return entry.obj if entry is not None else None

    def lookup_entry(self, rt: ResourceType, namespace: str | None, name: str) -> Entry | None:
        entry = self._entry(rt.storage_key, _key(rt, namespace, name))
        return _as_type(entry, rt) if entry is not None else None

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """The stored object (read-only!); 404 NotFound ApiError when missing."""
        return self.get_entry(rt, namespace, name).obj

    def get_entry(self, rt: ResourceType, namespace: str | None, name: str) -> Entry:
        entry = self.lookup_entry(rt, namespace, name)
        if entry is None:
            raise status.not_found(rt.group, rt.plural, name)
        return entry

    def _iter(
        self, rt: ResourceType, namespace: str | None, after: Key | None = None
    ) -> Iterator[tuple[Key, Entry]]:
        skey = rt.storage_key
        keys = self._keys(skey)
        if namespace is not None and rt.namespaced:
            lo = bisect_left(keys, (namespace, ""))
            if after is not None:
                lo = max(lo, bisect_right(keys, after))
            for i in range(lo, len(keys)):
                key = keys[i]
                if key[0] != namespace:
                    return
                entry = self._entry(skey, key)
                if entry is not None:
                    yield key, entry
            return
        lo = bisect_right(keys, after) if after is not None else 0
        for i in range(lo, len(keys)):
            key = keys[i]
            entry = self._entry(skey, key)
            if entry is not None:
                yield key, entry

    def list(
        self,
        rt: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ListResult:
        """LIST with selectors, paging and resourceVersion semantics of a real apiserver.

        Raises ApiError: 400 for bad selectors/tokens, 422 for bad option combinations, 410 for an
        `Exact` version we no longer have, 504 for a version newer than ours.
        """
        validate_list_options(
            watch=False, resource_version=resource_version, resource_version_match=resource_version_match
        )
        match = matcher(label_selector, field_selector, rt.field_labels)
        list_rv = self._rv
        after: Key | None = None
        if continue_token:
            list_rv, after = _decode_continue(continue_token)
        else:
            wanted = parse_resource_version(resource_version)
            if wanted is not None and wanted > self._rv:
                raise status.too_large_resource_version()
            if resource_version_match == "Exact" and wanted is not None and wanted != self._rv:
                raise status.too_old(wanted, self._rv)
        if limit < 0:
            limit = 0
        items: list[Entry] = []
        last: Key | None = None
        more = False
        for key, entry in self._iter(rt, namespace, after):
            if match is not None and not match(entry.obj):
                continue
            if limit and len(items) >= limit:
                more = True
                break
            items.append(_as_type(entry, rt))
            last = key
        if not more or last is None:
            return ListResult(items, str(list_rv))
        token = _encode_continue(list_rv, last)
        remaining = None if match is not None else self._count_after(rt, namespace, last)
        return ListResult(items, str(list_rv), token, remaining)

    def _count_after(self, rt: ResourceType, namespace: str | None, last: Key) -> int:
        """How many objects follow `last` in a list (of one namespace): two bisections."""
        keys = self._keys(rt.storage_key)
        start = bisect_right(keys, last)
        if namespace is not None and rt.namespaced:
            return bisect_left(keys, (namespace + "\x00", "")) - start
        return len(keys) - start

    # -- writes --------------------------------------------------------------------------------------

    def _next_uid(self) -> str:
        return self._uid() if self._uid else str(uuid.uuid4())

    def _prepare(
        self, rt: ResourceType, obj: dict[str, Any], namespace: str | None
    ) -> tuple[dict[str, Any], Key]:
        if not isinstance(obj, dict):
            raise status.bad_request("the object must be a JSON object")
        new = copy.deepcopy(obj)
        meta = new.get("metadata")
        if meta is None:
            meta = new["metadata"] = {}
        elif not isinstance(meta, dict):
            raise status.bad_request("metadata must be an object")
        if namespace is not None and rt.namespaced:
            meta["namespace"] = namespace
        if rt.namespaced:
            if not meta.get("namespace"):
                raise status.bad_request("the namespace of the provided object is not set")
        else:
            meta.pop("namespace", None)
        new["apiVersion"] = rt.api_version
        new["kind"] = rt.kind
        name = meta.get("name") or ""
        if not name:
            prefix = meta.get("generateName") or ""
            if not prefix:
                raise status.invalid(
                    rt.group,
                    rt.kind,
                    "",
                    [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                )
            name = self._generate_name(rt, meta.get("namespace"), prefix)
            meta["name"] = name
        return new, _key(rt, meta.get("namespace"), name)

    def _generate_name(self, rt: ResourceType, namespace: str | None, prefix: str) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        prefix = prefix[: 63 - 5]
        for _ in range(16):
            suffix = "".join(alphabet[b % len(alphabet)] for b in uuid.uuid4().bytes[:5])
            if self._entry(rt.storage_key, _key(rt, namespace, prefix + suffix)) is None:
                return prefix + suffix
        raise status.ApiError(500, "AlreadyExists", "could not generate a unique name")

    def create(
        self, rt: ResourceType, obj: dict[str, Any], *, namespace: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Store a new object (copied); fills uid, creationTimestamp, resourceVersion, generation.

        `metadata.generateName` picks a free name.  409 AlreadyExists when the name is taken.
        """
        new, key = self._prepare(rt, obj, namespace)
        if self._entry(rt.storage_key, key) is not None:
            raise status.already_exists(rt.group, rt.plural, key[1])
        meta = new["metadata"]
        meta["uid"] = self._next_uid()
        meta["creationTimestamp"] = timestamp(self._now())
        meta.pop("deletionTimestamp", None)
        if "spec" in new:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if dry_run:
            meta.pop("resourceVersion", None)
            return new
        return self._commit(rt, key, new, ADDED, None)

    def replace(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        *,
        namespace: str | None = None,
        check_resource_version: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace an existing object (copied).  Keeps uid and creationTimestamp; bumps generation when
        `spec` changed.  409 Conflict on a stale `metadata.resourceVersion`; 404 when missing.

        An update that changes nothing returns the stored object without a new resourceVersion or
        event, as a real apiserver does.
        """
        new, key = self._prepare(rt, obj, namespace)
        old = self._entry(rt.storage_key, key)
        if old is None:
            raise status.not_found(rt.group, rt.plural, key[1])
        meta, old_meta = new["metadata"], old.obj["metadata"]
        sent_rv = meta.get("resourceVersion")
        if check_resource_version and sent_rv and sent_rv != old_meta.get("resourceVersion"):
            raise status.conflict(rt.group, rt.plural, key[1])
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            raise status.conflict(
                rt.group,
                rt.plural,
                key[1],
                _uid_mismatch(meta["uid"], old_meta.get("uid")),
            )
        meta["uid"] = old_meta.get("uid")
        meta["creationTimestamp"] = old_meta.get("creationTimestamp")
        if "generation" in old_meta:
            changed = new.get("spec") != old.obj.get("spec")
            meta["generation"] = old_meta["generation"] + (1 if changed else 0)
        else:
            meta.pop("generation", None)
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        if new == old.obj:
            return _as_type(old, rt).obj
        if dry_run:
            return new
        return self._commit(rt, key, new, MODIFIED, old)

    def put(self, rt: ResourceType, obj: dict[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create or replace without any precondition (bootstrap, controllers, tests)."""
        new, key = self._prepare(rt, obj, namespace)
        if self._entry(rt.storage_key, key) is None:
            return self.create(rt, new)
        new["metadata"].pop("resourceVersion", None)
        return self.replace(rt, new, check_resource_version=False)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Remove an object now; returns its last state with the deletion's resourceVersion.

        Finalizers and graceful deletion are the caller's policy (a replace that sets
        deletionTimestamp); this removes unconditionally.  `uid`/`resource_version` are preconditions
        (409 Conflict when they differ).
        """
        key = _key(rt, namespace, name)
        old = self._entry(rt.storage_key, key)
        if old is None:
            raise status.not_found(rt.group, rt.plural, name)
        old_meta = old.obj["metadata"]
        if uid and uid != old_meta.get("uid"):
            raise status.conflict(
                rt.group,
                rt.plural,
                name,
                _uid_mismatch(uid, old_meta.get("uid")),
            )
        if resource_version and resource_version != old_meta.get("resourceVersion"):
            raise status.conflict(
                rt.group,
                rt.plural,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{resource_version}, ResourceVersion in object meta: {old_meta.get('resourceVersion')}",
            )
        if dry_run:
            return _as_type(old, rt).obj
        return self._commit(rt, key, None, DELETED, old)

    def _commit(
        self, rt: ResourceType, key: Key, new: dict[str, Any] | None, kind: str, old: Entry | None
    ) -> dict[str, Any]:
        skey = rt.storage_key
        self._rv += 1
        rv = self._rv
        if new is not None:
            new["metadata"]["resourceVersion"] = str(rv)
            entry = Entry(new)
        else:
            assert old is not None
            entry = Entry(_with_rv(old.obj, rv))
        if self._changes is None:
            self._changes = {}
        changes = self._changes.setdefault(skey, {})
        base = self._seed.buckets.get(skey)
        if new is None and not (base and key in base):
            changes.pop(key, None)
        else:
            changes[key] = entry if new is not None else None
        if (old is None or new is None) and self._sorted:
            self._sorted.pop(skey, None)
        if self._owners is not None:
            self._index_owners(skey, key, old.obj if old is not None else None, remove=True)
            self._index_owners(skey, key, new, remove=False)
        self._record((rv, skey, kind, entry, old if kind == MODIFIED else None))
        return _as_type(entry, rt).obj

    # -- owner index (garbage collection) -------------------------------------------------------------

    def _index_owners(self, skey: StorageKey, key: Key, obj: dict[str, Any] | None, *, remove: bool) -> None:
        assert self._owners is not None
        for ref in (obj or {}).get("metadata", {}).get("ownerReferences") or ():
            uid = ref.get("uid") if isinstance(ref, dict) else None
            if not uid:
                continue
            if remove:
                owned = self._owners.get(uid)
                if owned is not None:
                    owned.discard((skey, key))
                    if not owned:
                        del self._owners[uid]
            else:
                self._owners.setdefault(uid, set()).add((skey, key))

    def dependents(self, uid: str, namespace: str | None = None) -> list[tuple[StorageKey, Key]]:
        """Objects whose ownerReferences name `uid` (in `namespace` when given), sorted.

        The index is built on first use (one pass over the cluster) and kept up to date by every
        write after that, so clusters that never delete pay nothing for it.
        """
        if self._owners is None:
            self._owners = {}
            for skey in set(self._seed.buckets) | set(self._changes or {}):
                for key in self._keys(skey):
                    entry = self._entry(skey, key)
                    if entry is not None:
                        self._index_owners(skey, key, entry.obj, remove=False)
        found = self._owners.get(uid, ())
        return sorted(item for item in found if namespace is None or item[1][0] == namespace)

    # -- watch ---------------------------------------------------------------------------------------

    def _record(self, event: _Event) -> None:
        if self._history is None:
            self._history = deque(maxlen=self._history_size)
        elif len(self._history) == self._history_size:
            self._compacted = self._history[0][0]
        self._history.append(event)
        if self._history_seconds is not None:
            self._age_out(self._now())
        watchers = self._watchers.get(event[1]) if self._watchers else None
        if watchers:
            for watcher in list(watchers):
                if watcher.active:
                    self._safe_deliver(watcher, event)

    def _age_out(self, now: float) -> None:
        """Drop history older than `history_seconds` (the newest event always stays)."""
        history = self._history
        if self._history_times is None:
            self._history_times = deque(maxlen=self._history_size)
        times = self._history_times
        times.append(now)
        horizon = now - self._history_seconds
        while len(history) > 1 and times[0] < horizon:
            self._compacted = history.popleft()[0]
            times.popleft()

    def _safe_deliver(self, watcher: Watch, event: _Event) -> None:
        try:
            watcher._deliver(event)
        except Exception:
            log.failure("watch sink failed; closing that watch")
            watcher.cancel()

    def _bookmark_object(self, rt: ResourceType, initial_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

    def _unsubscribe(self, watcher: Watch) -> None:
        watchers = self._watchers.get(watcher.rt.storage_key) if self._watchers else None
        if watchers and watcher in watchers:
            watchers.remove(watcher)
            if not watchers:
                del self._watchers[watcher.rt.storage_key]

    def watch(
        self,
        rt: ResourceType,
        sink: Sink,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
        send_initial_events: bool | None = None,
        allow_bookmarks: bool = False,
    ) -> Watch:
        """Start a watch; `sink(type, entry)` is called synchronously for every event, first for the
        initial/backlog events, then for each change until `Watch.cancel()`.

        Raises before any event: 400/422 for bad options (answer with an HTTP error), 410 Expired for a
        resourceVersion older than the history, 504 for one newer than ours (send those two as an ERROR
        event inside the stream, as a real apiserver does).
        """
        validate_list_options(
            watch=True,
            resource_version=resource_version,
            resource_version_match=resource_version_match,
            send_initial_events=send_initial_events,
            allow_bookmarks=allow_bookmarks,
        )
        match = matcher(label_selector, field_selector, rt.field_labels)
        wanted = parse_resource_version(resource_version)
        if wanted is not None and wanted > self._rv:
            raise status.too_large_resource_version()
        if namespace is not None and not rt.namespaced:
            namespace = None
        watcher = Watch(self, rt, namespace, match, sink, allow_bookmarks)
        initial = send_initial_events if send_initial_events is not None else (wanted is None or wanted == 0)
        if initial:
            for _, entry in self._iter(rt, namespace):
                if match is None or match(entry.obj):
                    sink(ADDED, _as_type(entry, rt))
            if send_initial_events:
                sink(BOOKMARK, Entry(self._bookmark_object(rt, initial_end=True)))
        elif wanted is not None:
            if wanted < self._compacted:
                raise status.too_old(wanted, self._compacted + 1)
            for event in self._history or ():
                if event[0] > wanted and event[1] == rt.storage_key:
                    watcher._deliver(event)
        if self._watchers is None:
            self._watchers = {}
        self._watchers.setdefault(rt.storage_key, []).append(watcher)
        return watcher

    def watcher_count(self) -> int:
        return sum(len(ws) for ws in self._watchers.values()) if self._watchers else 0

    def watching(self, rt: ResourceType) -> bool:
        """Whether any watch is open on `rt`'s objects (in any version)."""
        return bool(self._watchers and self._watchers.get(rt.storage_key))

    # -- what differs from the seed (for persistence) ------------------------------------------------

    def changes(self) -> Iterator[tuple[StorageKey, Key, dict[str, Any] | None]]:
        """Every (storage key, (namespace, name), object or None when deleted) that differs from the seed."""
        for skey, changes in (self._changes or {}).items():
            for key, entry in changes.items():
                yield skey, key, entry.obj if entry is not None else None

    def restore(
        self, changes: Iterable[tuple[StorageKey, Key, dict[str, Any] | None]], resource_version: int
    ) -> None:
        """Load differences from the seed saved with `changes()`, verbatim and without watch events.

        Objects keep their uid, resourceVersion and timestamps; None deletes that seed object.  The
        counter becomes at least `resource_version` and the history starts empty from there.
        """
        for skey, key, obj in changes:
            if self._changes is None:
                self._changes = {}
            bucket = self._changes.setdefault(tuple(skey), {})  # type: ignore[arg-type]
            key = (key[0], key[1])
            if obj is None:
                base = self._seed.buckets.get(tuple(skey))  # type: ignore[arg-type]
                if base and key in base:
                    bucket[key] = None
                else:
                    bucket.pop(key, None)
            else:
                bucket[key] = Entry(obj)
        self._sorted = None
        self._owners = None
        self._rv = max(self._rv, resource_version)
        self._history = None
        self._history_times = None
        self._compacted = self._rv

    def __len__(self) -> int:
        return sum(len(self._keys(skey)) for skey in set(self._seed.buckets) | set(self._changes or {}))
