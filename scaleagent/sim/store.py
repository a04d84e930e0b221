"""The stand-in's in-memory Rancher model: clusters, registration tokens, tunnel presence, state.

Pure logic: no reactor, no sockets. Time comes from an `IReactorTime` (`seconds()`), randomness from a
`random.Random`-like object, so tests drive both. Identifiers look like Rancher's so that code written
against the stand-in also works against a real Rancher: cluster ids `c-` + 5 characters and
registration tokens of 54 characters, both from Kubernetes' / wrangler's random alphabet.

State follows Rancher's summary of a management cluster (rancher-protocol.md §5.10, simplified until the
traffic driver lands): `pending` until both tunnels are connected and the readiness hook agrees, then
`active`; once it has been active, `unavailable` whenever a tunnel is missing or readiness fails.
"""

from __future__ import annotations

import random
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from scaleagent.redact import logger

log = logger()

# Kubernetes' `utilrand.String` alphabet (generateName suffixes) and wrangler's `randomtoken`: no vowels,
# no look-alikes.
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TOKEN_LENGTH = 54
ID_SUFFIX_LENGTH = 5

MAIN = "main"
STEVE = "steve"
TUNNEL_KINDS = (MAIN, STEVE)

PENDING = "pending"
ACTIVE = "active"
UNAVAILABLE = "unavailable"

DEFAULT_TOKEN_NAME = "default-token"
# Rancher's `crt-default-grace-period-minutes` (180).
DEFAULT_GRACE_PERIOD = 180 * 60.0

# Events given to listeners: (event, cluster).
CREATED = "created"
DELETED = "deleted"
STATE = "state"
TUNNEL_UP = "tunnel-up"
TUNNEL_DOWN = "tunnel-down"
PARAMS_CHANGED = "params-changed"
TOKEN_ROTATED = "token-rotated"


class Clock(Protocol):
    def seconds(self) -> float: ...


class NotUnique(Exception):
    """A cluster with this name exists already (Rancher: 422 NotUnique)."""


class NotFound(Exception):
    """No such cluster or token."""


class Protected(Exception):
    """The cluster may not be deleted (Rancher's webhook protects the `local` cluster)."""


def random_string(length: int, rng: Any) -> str:
    """`length` characters of Rancher's random alphabet."""
    return "".join(rng.choice(ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class ClusterParams:
    """What a main tunnel announces (X-API-Tunnel-Params, `cluster` part)."""

    address: str
    token: str
    ca_cert: str


@dataclass
class Condition:
    type: str
    status: str  # "True", "False", "Unknown"
    reason: str = ""
    message: str = ""
    last_update: float = 0.0


@dataclass(eq=False)
class Cluster:
    """One management cluster (`clusters.management.cattle.io`) as the stand-in keeps it."""

    id: str
    name: str
    uuid: str
    created: float
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    driver: str = ""
    state: str = PENDING
    ever_active: bool = False
    removed: bool = False
    internal: bool = False  # Rancher's own "local" cluster
    # Open sessions per tunnel kind; Rancher keeps a list of sessions per client key.
    sessions: dict[str, int] = field(default_factory=lambda: {MAIN: 0, STEVE: 0})
    params: ClusterParams | None = None
    params_changes: int = 0
    conditions: dict[str, Condition] = field(default_factory=dict)
    # The agent image Rancher last applied (its Status.AgentImage with AgentDeployed=True): a
    # restarted Rancher redeploys the agent only when the image it wants differs.
    agent_image: str = ""
    # Bumped with each change of this cluster's durable state or its tokens (a saver's cache key).
    revision: int = 0

    def connected(self, kind: str) -> bool:
        return self.sessions.get(kind, 0) > 0

    @property
    def api_endpoint(self) -> str:
        return "https://" + self.params.address if self.params else ""

    @property
    def ca_cert(self) -> str:
        return self.params.ca_cert if self.params else ""


@dataclass(eq=False)
class RegistrationToken:
    """A ClusterRegistrationToken: its current token and, during a grace period, the previous one."""

    name: str
    cluster_id: str
    uuid: str
    created: float
    token: str
    previous_token: str = ""
    previous_expires: float = 0.0
    issued: float = 0.0  # when `token` got its value (creation or last rotation)

    @property
    def id(self) -> str:
        # Norman ids of namespaced objects are "<namespace>:<name>"; a CRT lives in its cluster's
        # namespace.
        return f"{self.cluster_id}:{self.name}"


Readiness = Callable[[Cluster], bool]
Listener = Callable[[str, Cluster], None]


def always_ready(cluster: Cluster) -> bool:
    """Readiness until the traffic driver decides: both tunnels up is enough."""
    return True


class SimStore:
    """All clusters and registration tokens of one stand-in process."""

    def __init__(
        self,
        clock: Clock,
        *,
        rng: Any = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        readiness: Readiness = always_ready,
        with_local: bool = False,
    ) -> None:
        self._clock = clock
        self._rng = rng if rng is not None else random.SystemRandom()
        self.grace_period = grace_period
        self.readiness: Readiness = readiness
        self._clusters: dict[str, Cluster] = {}
        self._by_name: dict[str, str] = {}
        self._tokens: dict[str, list[RegistrationToken]] = {}
        self._by_token: dict[str, RegistrationToken] = {}
        self._by_previous: dict[str, RegistrationToken] = {}
        self._listeners: list[Listener] = []
        self.params_changes_total = 0
        # Bumped on every change of durable state (what Rancher keeps in its datastore), so a saver
        # knows when there is something to write; runtime state (sessions, conditions) does not bump it.
        self.revision = 0
        # Create each cluster's `default-token` with it; False leaves that to the caller (the service
        # delays it, as Rancher's controller does).
        self.default_token = True
        if with_local:
            self._add_local()

    # -- listeners -----------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(event, cluster)` on every change; events are the module's constants."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def touch(self, cluster: Cluster | None = None) -> None:
        """Note a change of durable state (see `revision`), of `cluster` or its tokens if given."""
        self.revision += 1
        if cluster is not None:
            cluster.revision += 1

    def _emit(self, event: str, cluster: Cluster) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, cluster)
            except Exception:
                log.failure(
                    "stand-in listener failed on {event} for {cluster}", event=event, cluster=cluster.id
                )

    # -- clusters ------------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock.seconds()

    def _new_uuid(self) -> str:
        return str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))

    def create_cluster(
        self,
        name: str,
        *,
        description: str = "",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Cluster:
        """Create a cluster and its `default-token`; `NotUnique` if the name is taken."""
        # Rancher compares display names case-insensitively (norman cluster store, `EqualFold`).
        if name.lower() in self._by_name:
            raise NotUnique(name)
        cluster_id = "c-" + random_string(ID_SUFFIX_LENGTH, self._rng)
        while cluster_id in self._clusters:
            cluster_id = "c-" + random_string(ID_SUFFIX_LENGTH, self._rng)
        cluster = Cluster(
            id=cluster_id,
            name=name,
            uuid=self._new_uuid(),
            created=self.now(),
            description=description,
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
        )
        self._set_condition(cluster, "Pending", "Unknown")
        self._set_condition(cluster, "Ready", "Unknown")
        self._clusters[cluster_id] = cluster
        self._by_name[name.lower()] = cluster_id
        self._tokens[cluster_id] = []
        self.touch(cluster)
        if self.default_token:
            self.create_token(cluster_id, DEFAULT_TOKEN_NAME)
        log.debug("stand-in: cluster {name} created as {id}", name=name, id=cluster_id)
        self._emit(CREATED, cluster)
        return cluster

    def _add_local(self) -> None:
        """Rancher's own cluster, always there and always active; it is not one of ours."""
        local = Cluster(
            id="local",
            name="local",
            uuid=self._new_uuid(),
            created=self.now(),
            driver="imported",
            state=ACTIVE,
            ever_active=True,
            internal=True,
        )
        for type_ in ("Provisioned", "Connected", "Ready"):
            self._set_condition(local, type_, "True")
        self._clusters[local.id] = local
        self._by_name[local.name] = local.id
        self._tokens[local.id] = []
        self.create_token(local.id, DEFAULT_TOKEN_NAME)

    def get_cluster(self, cluster_id: str) -> Cluster:
        try:
            return self._clusters[cluster_id]
        except KeyError:
            raise NotFound(cluster_id) from None

    def find_cluster(self, name: str) -> Cluster | None:
        """The cluster of exactly this name (the API's `?name=` filter is case-sensitive)."""
        cluster_id = self._by_name.get(name.lower())
        cluster = self._clusters.get(cluster_id) if cluster_id else None
        return cluster if cluster is not None and cluster.name == name else None

    def clusters(self, *, internal: bool = False) -> list[Cluster]:
        """Imported clusters, oldest first; with `internal`, Rancher's `local` cluster too (first)."""
        return [c for c in self._clusters.values() if internal or not c.internal]

    def delete_cluster(self, cluster_id: str) -> Cluster:
        """Remove a cluster and its tokens; listeners (the tunnel server) close its sessions."""
        cluster = self.get_cluster(cluster_id)
        if cluster.internal:
            raise Protected(cluster_id)
        del self._clusters[cluster_id]
        del self._by_name[cluster.name.lower()]
        for crt in self._tokens.pop(cluster_id, []):
            self._by_token.pop(crt.token, None)
            if crt.previous_token:
                self._by_previous.pop(crt.previous_token, None)
        cluster.removed = True
        self.touch()
        log.info("stand-in: cluster {name} ({id}) deleted", name=cluster.name, id=cluster_id)
        self._emit(DELETED, cluster)
        return cluster

    # -- registration tokens -------------------------------------------------------------------------

    def _new_token(self) -> str:
        token = random_string(TOKEN_LENGTH, self._rng)
        while token in self._by_token or token in self._by_previous:
            token = random_string(TOKEN_LENGTH, self._rng)
        return token

    def create_token(self, cluster_id: str, name: str | None = None) -> RegistrationToken:
        """A new ClusterRegistrationToken for the cluster (`crt-xxxxx` unless named)."""
        self.get_cluster(cluster_id)
        existing = {crt.name for crt in self._tokens[cluster_id]}
        if name is None:
            name = "crt-" + random_string(ID_SUFFIX_LENGTH, self._rng)
            while name in existing:
                name = "crt-" + random_string(ID_SUFFIX_LENGTH, self._rng)
        elif name in existing:
            raise NotUnique(name)
        now = self.now()
        crt = RegistrationToken(
            name=name,
            cluster_id=cluster_id,
            uuid=self._new_uuid(),
            created=now,
            token=self._new_token(),
            issued=now,
        )
        self._tokens[cluster_id].append(crt)
        self._by_token[crt.token] = crt
        self.touch(self._clusters[cluster_id])
        return crt

    def tokens(self, cluster_id: str | None = None) -> list[RegistrationToken]:
        """Tokens of one cluster, or of all clusters; oldest first."""
        if cluster_id is not None:
            return list(self._tokens.get(cluster_id, []))
        return [crt for crts in self._tokens.values() for crt in crts]

    def get_token(self, crt_id: str) -> RegistrationToken:
        cluster_id, _, name = crt_id.partition(":")
        for crt in self._tokens.get(cluster_id, []):
            if crt.name == name:
                return crt
        raise NotFound(crt_id)

    def rotate_token(self, cluster_id: str, name: str = DEFAULT_TOKEN_NAME) -> RegistrationToken:
        """Give the token a new value; the old one stays valid for `grace_period` seconds."""
        crt = self.get_token(f"{cluster_id}:{name}")
        if crt.previous_token:
            self._by_previous.pop(crt.previous_token, None)
        del self._by_token[crt.token]
        crt.previous_token = crt.token
        crt.previous_expires = self.now() + self.grace_period
        crt.token = self._new_token()
        crt.issued = self.now()
        self._by_token[crt.token] = crt
        self._by_previous[crt.previous_token] = crt
        self.touch(self._clusters[cluster_id])
        log.debug("stand-in: registration token {crt} rotated", crt=crt.id)
        self._emit(TOKEN_ROTATED, self.get_cluster(cluster_id))
        return crt

    def rotate_expired(self, ttl: float) -> int:
        """Rotate every token older than `ttl` seconds, as Rancher's CRT TTL rotation does; how many."""
        now = self.now()
        due = [crt for crt in self.tokens() if now - crt.issued >= ttl]
        for crt in due:
            self.rotate_token(crt.cluster_id, crt.name)
        return len(due)

    def lookup_token(self, token: str) -> RegistrationToken | None:
        """The CRT a registration token belongs to: its current value, or its previous one in grace."""
        crt = self._by_token.get(token)
        if crt is not None:
            return crt
        crt = self._by_previous.get(token)
        if crt is None:
            return None
        if self.now() < crt.previous_expires:
            return crt
        del self._by_previous[token]
        crt.previous_token = ""
        return None

    def cluster_for_token(self, token: str) -> Cluster | None:
        crt = self.lookup_token(token) if token else None
        return self._clusters.get(crt.cluster_id) if crt else None

    # -- tunnels, params and state -------------------------------------------------------------------

    def record_params(self, cluster: Cluster, params: ClusterParams) -> bool:
        """Store a main tunnel's params, as Rancher's authorizer does; True when they changed.

        The first params of a cluster set its driver to `imported`, as Rancher does; a later change is
        counted and logged, since Rancher then restarts every controller of that cluster.
        """
        if cluster.driver == "":
            cluster.driver = "imported"
            self.touch(cluster)
        previous = cluster.params
        if previous == params:
            return False
        cluster.params = params
        self.touch(cluster)
        if previous is not None:
            cluster.params_changes += 1
            self.params_changes_total += 1
            what = [
                label
                for label, before, after in (
                    ("address", previous.address, params.address),
                    ("token", previous.token, params.token),
                    ("caCert", previous.ca_cert, params.ca_cert),
                )
                if before != after
            ]
            log.warn(
                "stand-in: cluster {name} ({id}) changed its tunnel params ({what}); change #{count}: "
                "Rancher would restart all controllers of this cluster",
                name=cluster.name,
                id=cluster.id,
                what=", ".join(what),
                count=cluster.params_changes,
            )
            self._emit(PARAMS_CHANGED, cluster)
        return True

    def tunnel_opened(self, cluster: Cluster, kind: str) -> None:
        """A session of `kind` (MAIN or STEVE) for the cluster is open."""
        if cluster.removed:
            return
        cluster.sessions[kind] = cluster.sessions.get(kind, 0) + 1
        if cluster.sessions[kind] == 1:
            self._tunnel_conditions(cluster)
            self._emit(TUNNEL_UP, cluster)
        self.evaluate(cluster)

    def tunnel_closed(self, cluster: Cluster, kind: str) -> None:
        """A session of `kind` for the cluster has ended."""
        if cluster.sessions.get(kind, 0) <= 0:
            return
        cluster.sessions[kind] -= 1
        if cluster.removed:
            return
        if cluster.sessions[kind] == 0:
            self._tunnel_conditions(cluster)
            self._emit(TUNNEL_DOWN, cluster)
        self.evaluate(cluster)

    def _tunnel_conditions(self, cluster: Cluster) -> None:
        if cluster.connected(MAIN):
            self._set_condition(cluster, "Provisioned", "True")
        self._set_condition(cluster, "Connected", "True" if cluster.connected(STEVE) else "False")

    def set_condition(
        self, cluster: Cluster, type_: str, status: str, reason: str = "", message: str = ""
    ) -> None:
        """Set one of the cluster's conditions (the traffic driver reports what it sees through this)."""
        self._set_condition(cluster, type_, status, reason, message)

    def _set_condition(
        self, cluster: Cluster, type_: str, status: str, reason: str = "", message: str = ""
    ) -> None:
        current = cluster.conditions.get(type_)
        if current and (current.status, current.reason, current.message) == (status, reason, message):
            return
        cluster.conditions[type_] = Condition(type_, status, reason, message, self.now())

    def evaluate(self, cluster: Cluster) -> str:
        """Recompute the cluster's state from its tunnels and the readiness hook; returns the state."""
        if cluster.removed or cluster.internal:
            return cluster.state
        both = cluster.connected(MAIN) and cluster.connected(STEVE)
        ready = False
        if both:
            try:
                ready = bool(self.readiness(cluster))
            except Exception:
                log.failure("stand-in: readiness check failed for {id}", id=cluster.id)
        if ready:
            state = ACTIVE
            if not cluster.ever_active:
                cluster.ever_active = True
                self.touch(cluster)
            self._set_condition(cluster, "Ready", "True")
        elif cluster.ever_active:
            state = UNAVAILABLE
            if not both:
                self._set_condition(
                    cluster, "Ready", "False", "Disconnected", "Cluster agent is not connected"
                )
            else:
                self._set_condition(cluster, "Ready", "False")
        else:
            state = PENDING
        if state != cluster.state:
            old, cluster.state = cluster.state, state
            log.debug(
                "stand-in: cluster {name} ({id}) {old} -> {new}",
                name=cluster.name,
                id=cluster.id,
                old=old,
                new=state,
            )
            self._emit(STATE, cluster)
        return state

    def record_agent_image(self, cluster: Cluster, image: str) -> None:
        """The agent deployment with `image` was applied (Rancher records it with AgentDeployed)."""
        if cluster.agent_image != image:
            cluster.agent_image = image
            self.touch(cluster)

    def restore(
        self,
        clusters: Iterable[Cluster],
        tokens: Iterable[RegistrationToken],
        *,
        params_changes_total: int = 0,
    ) -> None:
        """Replace every cluster and token with saved ones (a restart), as nobody has connected yet.

        Clusters come back with no sessions and fresh conditions; one that was ever active shows
        `unavailable` until its agent reconnects, as a restarted Rancher shows it. A saved `local`
        cluster is kept only when this store has one (`with_local`).
        """
        with_local = "local" in self._clusters
        self._clusters, self._by_name, self._tokens = {}, {}, {}
        self._by_token, self._by_previous = {}, {}
        local_restored = False
        for cluster in clusters:
            if cluster.internal and not with_local:
                continue
            local_restored = local_restored or cluster.internal
            cluster.sessions = {MAIN: 0, STEVE: 0}
            cluster.removed = False
            cluster.conditions = {}
            if cluster.internal:
                cluster.state = ACTIVE
                for type_ in ("Provisioned", "Connected", "Ready"):
                    self._set_condition(cluster, type_, "True")
            else:
                cluster.state = UNAVAILABLE if cluster.ever_active else PENDING
                self._set_condition(cluster, "Pending", "Unknown")
                if cluster.ever_active:
                    self._set_condition(
                        cluster, "Ready", "False", "Disconnected", "Cluster agent is not connected"
                    )
                else:
                    self._set_condition(cluster, "Ready", "Unknown")
            self._clusters[cluster.id] = cluster
            self._by_name[cluster.name.lower()] = cluster.id
            self._tokens[cluster.id] = []
        now = self.now()
        for crt in tokens:
            if crt.cluster_id not in self._tokens:
                continue  # the local cluster's, when this store has none
            self._tokens[crt.cluster_id].append(crt)
            self._by_token[crt.token] = crt
            if crt.previous_token:
                if crt.previous_expires > now:
                    self._by_previous[crt.previous_token] = crt
                else:
                    crt.previous_token = ""
        if with_local and not local_restored:
            self._add_local()
        self.params_changes_total = params_changes_total
        self.revision = 0

    def evaluate_all(self, clusters: Iterable[Cluster] | None = None) -> None:
        for cluster in list(clusters if clusters is not None else self._clusters.values()):
            self.evaluate(cluster)

    def counts(self) -> dict[str, int]:
        """Clusters per state."""
        counts = {PENDING: 0, ACTIVE: 0, UNAVAILABLE: 0}
        for cluster in self._clusters.values():
            if cluster.internal:
                continue
            counts[cluster.state] = counts.get(cluster.state, 0) + 1
        return counts


class WallClock:
    """`seconds()` from the system clock, for code that has no reactor at hand."""

    def seconds(self) -> float:
        return time.time()
