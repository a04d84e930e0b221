"""The stand-in's durable state as one versioned JSON document: what Rancher keeps in its datastore.

A real Rancher keeps its clusters and registration tokens in etcd, so after a restart every agent just
reconnects with the token it has. `twistd ranchersim --state-dir` gets the same by saving this document
(`scaleagent.sim.saver`) and loading it at start:

    {"kind": "ranchersim-state", "version": 1, "saved": <unix time>, "apiToken": ..., "creatorId": ...,
     "paramsChangesTotal": n, "clusters": [{..., "tokens": [{...}]}]}

Per cluster: id, name, uuid, creation time, description, labels, annotations, driver, whether it was
ever active, the tunnel params it announced (address, service-account token, CA), params changes, the
agent image Rancher applied, and its registration tokens: name, uuid, creation time, value, issue time
and the previous value with its expiry (rotation in grace). Runtime state (sessions, conditions,
Active) is left out: it is what a restart loses. The document holds secrets, so it is written 0600 and
never logged. Pure functions: no reactor, no I/O except `load`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scaleagent.sim.store import Cluster, ClusterParams, RegistrationToken, SimStore
from scaleagent.state import StateDir

KIND = "ranchersim-state"
VERSION = 1
STATE_FILE = "ranchersim-state.json"

_CLUSTER_ID = re.compile(r"^(c-[a-z0-9]{5}|local)$")


class PersistError(ValueError):
    """The document is not a stand-in state this version understands; the message says where."""


@dataclass
class Snapshot:
    """What a saved document restores."""

    clusters: list[Cluster] = field(default_factory=list)
    tokens: list[RegistrationToken] = field(default_factory=list)
    api_token: str = ""
    creator_id: str = ""
    params_changes_total: int = 0
    saved: float = 0.0


# -- encoding ----------------------------------------------------------------------------------------


def _token(crt: RegistrationToken) -> dict[str, Any]:
    value: dict[str, Any] = {
        "name": crt.name,
        "uuid": crt.uuid,
        "created": crt.created,
        "token": crt.token,
        "issued": crt.issued,
    }
    if crt.previous_token:
        value["previousToken"] = crt.previous_token
        value["previousExpires"] = crt.previous_expires
    return value


def cluster_value(store: SimStore, cluster: Cluster) -> dict[str, Any]:
    """One cluster with its registration tokens, as saved."""
    value: dict[str, Any] = {
        "id": cluster.id,
        "name": cluster.name,
        "uuid": cluster.uuid,
        "created": cluster.created,
        "description": cluster.description,
        "labels": dict(cluster.labels),
        "annotations": dict(cluster.annotations),
        "driver": cluster.driver,
        "everActive": cluster.ever_active,
        "internal": cluster.internal,
        "paramsChanges": cluster.params_changes,
        "agentImage": cluster.agent_image,
        "tokens": [_token(crt) for crt in store.tokens(cluster.id)],
    }
    if cluster.params is not None:
        value["params"] = {
            "address": cluster.params.address,
            "token": cluster.params.token,
            "caCert": cluster.params.ca_cert,
        }
    return value


def snapshot(store: SimStore, *, api_token: str, creator_id: str, saved: float) -> dict[str, Any]:
    """The document for the store's current durable state (plain JSON values)."""
    return {
        "kind": KIND,
        "version": VERSION,
        "saved": saved,
        "apiToken": api_token,
        "creatorId": creator_id,
        "paramsChangesTotal": store.params_changes_total,
        "clusters": [cluster_value(store, c) for c in store.clusters(internal=True)],
    }


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class Encoder:
    """`snapshot` as bytes, re-encoding only the clusters whose `revision` moved since the last call.

    At 10,000 clusters a full encode takes ~0.2 s of the reactor thread; after the first save only
    what changed (a ramp: tens of clusters per save) is encoded and the rest is joined from the cache.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.encoded_last = 0  # clusters encoded afresh by the last call

    def encode(self, store: SimStore, *, api_token: str, creator_id: str, saved: float) -> bytes:
        cache: dict[tuple[str, str], tuple[int, bytes]] = {}
        parts = []
        fresh = 0
        for cluster in store.clusters(internal=True):
            key = (cluster.id, cluster.uuid)  # an id may come again after a delete; a uuid does not
            held = self._cache.get(key)
            if held is None or held[0] != cluster.revision:
                held = (cluster.revision, _dumps(cluster_value(store, cluster)))
                fresh += 1
            cache[key] = held
            parts.append(held[1])
        self._cache = cache
        self.encoded_last = fresh
        # The same bytes as `_dumps(snapshot(...))` plus a newline: keys in sorted order.
        return b"".join(
            (
                b'{"apiToken":',
                _dumps(api_token),
                b',"clusters":[',
                b",".join(parts),
                b'],"creatorId":',
                _dumps(creator_id),
                b',"kind":',
                _dumps(KIND),
                b',"paramsChangesTotal":',
                _dumps(store.params_changes_total),
                b',"saved":',
                _dumps(saved),
                b',"version":',
                _dumps(VERSION),
                b"}\n",
            )
        )


def encode(store: SimStore, *, api_token: str, creator_id: str, saved: float) -> bytes:
    """The bytes written to the state file (compact, sorted keys), encoded in full."""
    return Encoder().encode(store, api_token=api_token, creator_id=creator_id, saved=saved)


# -- decoding ----------------------------------------------------------------------------------------


def _get(
    obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None
) -> Any:
    if key not in obj:
        if default is not None:
            return default
        raise PersistError(f"{where}: missing {key!r}")
    value = obj[key]
    if kind is float:
        kind = (int, float)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise PersistError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise PersistError(f"{where}: {key!r} is not a finite number")
    return value


def _strings(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = _get(obj, key, dict, where, default={})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PersistError(f"{where}: {key!r} must map strings to strings")
    return dict(value)


def _decode_cluster(raw: Any, index: int) -> tuple[Cluster, list[RegistrationToken]]:
    where = f"clusters[{index}]"
    if not isinstance(raw, dict):
        raise PersistError(f"{where}: expected an object")
    cluster_id = _get(raw, "id", str, where)
    if not _CLUSTER_ID.match(cluster_id):
        raise PersistError(f"{where}: id {cluster_id!r} is not a cluster id (c-xxxxx)")
    where = f"cluster {cluster_id}"
    name = _get(raw, "name", str, where)
    if not name:
        raise PersistError(f"{where}: empty name")
    params = None
    if raw.get("params") is not None:
        p = _get(raw, "params", dict, where)
        params = ClusterParams(
            _get(p, "address", str, where + " params"),
            _get(p, "token", str, where + " params"),
            _get(p, "caCert", str, where + " params"),
        )
    tokens = [_decode_token(t, i, cluster_id) for i, t in enumerate(_get(raw, "tokens", list, where))]
    cluster = Cluster(
        id=cluster_id,
        name=name,
        uuid=_get(raw, "uuid", str, where),
        created=float(_get(raw, "created", float, where)),
        description=_get(raw, "description", str, where, default=""),
        labels=_strings(raw, "labels", where),
        annotations=_strings(raw, "annotations", where),
        driver=_get(raw, "driver", str, where, default=""),
        ever_active=_get(raw, "everActive", bool, where, default=False),
        internal=_get(raw, "internal", bool, where, default=False),
        params=params,
        params_changes=_get(raw, "paramsChanges", int, where, default=0),
        agent_image=_get(raw, "agentImage", str, where, default=""),
    )
    return cluster, tokens


def _decode_token(raw: Any, index: int, cluster_id: str) -> RegistrationToken:
    where = f"cluster {cluster_id} tokens[{index}]"
    if not isinstance(raw, dict):
        raise PersistError(f"{where}: expected an object")
    name = _get(raw, "name", str, where)
    if not name:
        raise PersistError(f"{where}: empty name")
    where = f"registration token {cluster_id}:{name}"
    token = _get(raw, "token", str, where)
    if not token:
        raise PersistError(f"{where}: empty token")
    created = float(_get(raw, "created", float, where))
    return RegistrationToken(
        name=name,
        cluster_id=cluster_id,
        uuid=_get(raw, "uuid", str, where),
        created=created,
        token=token,
        previous_token=_get(raw, "previousToken", str, where, default=""),
        previous_expires=float(_get(raw, "previousExpires", float, where, default=0.0)),
        issued=float(_get(raw, "issued", float, where, default=created)),
    )


def decode(value: Any) -> Snapshot:
    """A loaded JSON value back into clusters and tokens; `PersistError` says what is wrong."""
    if not isinstance(value, dict):
        raise PersistError("expected a JSON object")
    if value.get("kind") != KIND:
        raise PersistError(f"kind {value.get('kind')!r}: expected {KIND!r} (not a ranchersim state file)")
    version = value.get("version")
    if version != VERSION:
        raise PersistError(f"unknown version {version!r}: this ranchersim reads version {VERSION}")
    decoded = [_decode_cluster(raw, i) for i, raw in enumerate(_get(value, "clusters", list, "document"))]
    clusters = [cluster for cluster, _ in decoded]
    tokens = [crt for _, crts in decoded for crt in crts]
    ids: set[str] = set()
    names: set[str] = set()
    for cluster in clusters:
        if cluster.id in ids:
            raise PersistError(f"cluster {cluster.id}: listed twice")
        if cluster.name.lower() in names:
            raise PersistError(f"cluster {cluster.id}: name {cluster.name!r} used twice")
        ids.add(cluster.id)
        names.add(cluster.name.lower())
    seen: set[tuple[str, str]] = set()
    values: set[str] = set()
    for crt in tokens:
        if (crt.cluster_id, crt.name) in seen:
            raise PersistError(f"registration token {crt.id}: listed twice")
        if crt.token in values:
            raise PersistError(f"registration token {crt.id}: its value is another token's too")
        seen.add((crt.cluster_id, crt.name))
        values.add(crt.token)
    return Snapshot(
        clusters=clusters,
        tokens=tokens,
        api_token=_get(value, "apiToken", str, "document", default=""),
        creator_id=_get(value, "creatorId", str, "document", default=""),
        params_changes_total=_get(value, "paramsChangesTotal", int, "document", default=0),
        saved=float(_get(value, "saved", float, "document", default=0.0)),
    )


def load(state_dir: StateDir, name: str = STATE_FILE) -> Snapshot | None:
    """The snapshot saved in `state_dir`, or None when there is none yet.

    A file that is not valid JSON, or not a state this version reads, is moved aside and
    `scaleagent.state.CorruptStateFile` (naming the file and the problem) is raised.
    """
    value = state_dir.read_json(name)
    if value is None:
        return None
    try:
        return decode(value)
    except PersistError as error:
        state_dir.corrupt(name, str(error))


__all__ = [
    "KIND", "STATE_FILE", "VERSION", "PersistError", "Snapshot", "decode", "encode", "load", "snapshot"
]  # fmt: skip
