"""Simulated clusters: one apiserver per cluster, reachable through the cluster's two tunnels.

`ClusterSet` holds what every cluster of the process shares: the CA and serving certificate (pki), the
parsed template and its `SeedBuilder`, the seed objects identical across clusters (one `Entry`, hence one
JSON encoding, for all), the key that makes each cluster's `cattle` token stable, and the periodic save.
`SimulatedCluster` is one cluster: its name and index, the tunnel parameters Rancher must see unchanged
on every reconnect and restart, and the two resolvers the remotedialer session asks what a CONNECT
reaches:

* main tunnel: the configured apiserver address → TLS, server side and in memory, around this
  cluster's apiserver `Site`; anything else → refused for that connection alone;
* steve tunnel: any target → a plain-HTTP `Site` answering `GET /ping` with `pong` (steve's /v1 API is
  mounted on `steve_root` by its own layer).

Memory is what limits the number of clusters, so a cluster builds nothing heavy (seed objects, store,
Sites, TLS factory) until something first needs its apiserver; its saved changes are restored then.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.web.http import HTTPChannel
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from scaleagent.apiserver import controllers
from scaleagent.apiserver.auth import TokenAuthenticator
from scaleagent.apiserver.discovery import version_info
from scaleagent.apiserver.kinds import Registry
from scaleagent.apiserver.packed import pack
from scaleagent.apiserver.request import DEFAULT_VERSION, ApiContext
from scaleagent.apiserver.resource import make_site, request_body_file
from scaleagent.apiserver.store import CachedEntry, Entry, Seed, Store, timestamp
from scaleagent.cluster import liveness, persist
from scaleagent.cluster.pki import ClusterPKI, load_or_create, normalise_host
from scaleagent.cluster.template import ClusterSeed, ClusterTemplate, RancherInfo, SeedBuilder
from scaleagent.cluster.turns import TurnBatcher
from scaleagent.redact import logger
from scaleagent.state import CorruptStateFile, StateDir, StateError, encode_json
from scaleagent.tlsbuffers import SmallBufferTLSFactory

log = logger()

DEFAULT_ADDRESS = "10.43.0.1:443"
SET_FILE = "cluster-set.json"
SET_LOCK = ".cluster-set.lock"
TOKEN_KEY_FILE = "cluster-token.key"
SAVE_BATCH = 25  # cluster files written per reactor turn by the periodic save
SAVE_PAUSE = 0.01  # seconds between those turns, so tunnel I/O runs in between
CATTLE_NAMESPACE = "cattle-system"
CATTLE_ACCOUNT = "cattle"
#: own seed kinds kept as dicts: the heartbeats read and rewrite them (the rest is packed)
LIVE_KINDS = frozenset({"Node", "Lease"})
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_UID_NAMESPACE = uuid.UUID("0b6f3f2e-4a7c-4f57-8a0e-6c1d2b3a4f5e")

StorageKey = tuple[str, str]
Key = tuple[str, str]


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) → (normalised host, port); ValueError naming the problem."""
    text = address.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or (":" in host and not (host.startswith("[") and host.endswith("]"))):
        raise ValueError(f"apiserver address {address!r}: expected host:port, e.g. 10.43.0.1:443")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"apiserver address {address!r}: port must be 1-65535")
    return normalise_host(host), port


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def params_header(params: dict[str, Any]) -> str:
    """The `X-API-Tunnel-Params` value: base64 of compact JSON (the same bytes for the same params)."""
    text = json.dumps(params, separators=(",", ":"), sort_keys=True)
    return base64.b64encode(text.encode()).decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _suffix(digest: bytes, length: int = 5) -> str:
    number = int.from_bytes(digest[:12], "big")
    out = []
    for _ in range(length):
        number, digit = divmod(number, len(_NAME_ALPHABET))
        out.append(_NAME_ALPHABET[digit])
    return "".join(out)


@dataclass(frozen=True)
class ClusterConfig:
    """What every cluster of a process is built from (the `[apiserver]`, `[clusters]` and `[state]` parts)."""

    address: str = DEFAULT_ADDRESS
    version: str = DEFAULT_VERSION
    anonymous: bool = False
    template: Path | str | None = None
    state_dir: Path | str | StateDir | None = None
    #: seconds between saves of changed clusters; 0 = save only on stop
    save_interval: float = 300.0
    rancher: RancherInfo | None = None
    #: kubelet periods for node Lease renewals and node status posts; 0 turns a beat off
    lease_period: float = liveness.LEASE_PERIOD
    status_period: float = liveness.STATUS_PERIOD
    #: watch events a cluster keeps for watches resuming from an older resourceVersion (older → 410,
    #: the client relists); every kept event may hold a superseded object, so this bounds memory
    watch_history: int = 200
    #: ...and for at most this long, like the apiserver's watch cache (which keeps at least 75 s), so
    #: a long run's node heartbeats do not pin `watch_history` old Node copies per cluster
    watch_history_seconds: float = 150.0


class _PingResource(Resource):
    """`GET /ping` → 200 `pong`, as the real agent's health handler answers Rancher."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"pong"

    render_HEAD = render_GET


class _OneRequestChannel(HTTPChannel):
    """HTTP/1.1 without keep-alive: `Connection: close` on every response, then the connection ends."""

    def checkPersistence(self, request: Request, version: bytes) -> bool:
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return False


class QuietSite(Site):
    """A `Site` without access log or its per-second date timer (thousands exist in one process).

    `keep_alive=False` closes every connection after one response, as steve's aggregation server does
    (`SetKeepAlivesEnabled(false)`): a peer that opens a connection per request and never reuses it
    leaves nothing behind.
    """

    def __init__(self, resource: Resource, clock: Any, *, keep_alive: bool = True) -> None:
        super().__init__(resource, reactor=clock, parsePOSTFormSubmission=False)  # no forms in steve
        self.displayTracebacks = False
        self.noisy = False
        if not keep_alive:
            self.protocol = _OneRequestChannel

    def startFactory(self) -> None:
        self._logFile = None

    def log(self, request: Request) -> None:
        return None

    def getContentFile(self, length: int | None) -> IO[bytes]:  # noqa: N802 (Twisted's hook)
        return request_body_file(length)


class _SteveRoot(Resource):
    """The steve Site's root: children mounted with putChild; anything else a plain 404."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render(self, request: Request) -> bytes:
        return notFound().render(request)


def steve_root_resource() -> Resource:
    """A fresh root for a steve-tunnel Site: `/ping` now, steve's `/v1` later."""
    root = _SteveRoot()
    root.putChild(b"ping", _PingResource())
    return root


@implementer(IProtocolFactory)
class _SteveConnections:
    """The shared steve Site for one CONNECT, each channel tagged with its cluster (`steve_cluster`,
    read by steve's `/v1`).  Made per connection and dropped with it: no per-cluster object."""

    __slots__ = ("site", "cluster")

    def __init__(self, site: QuietSite, cluster: Any) -> None:
        self.site = site
        self.cluster = cluster

    def buildProtocol(self, addr: Any) -> Any:
        channel = self.site.buildProtocol(addr)
        channel.steve_cluster = self.cluster
        return channel

    def doStart(self) -> None:
        return None

    def doStop(self) -> None:
        return None


@dataclass
class _SharedPart:
    """The seed objects one knob combination shares, as stored entries, plus its type registry."""

    buckets: dict[StorageKey, dict[Key, Entry]]
    sorted_keys: dict[StorageKey, list[Key]]
    resource_version: int
    registry: Registry


class ClusterSet:
    """Everything the clusters of one process share, and the clusters themselves (by index)."""

    def __init__(self, clock: Any, config: ClusterConfig | None = None, **overrides: Any) -> None:
        config = config or ClusterConfig()
        if overrides:
            config = replace(config, **overrides)
        self.clock = clock
        self.config = config
        #: copied into every cluster's ApiContext.extras when its apiserver is built (e.g. the
        #: process-wide request observer of the admin metrics)
        self.api_extras: dict[str, Any] = {}
        version_info(config.version)  # ValueError for anything but a plain version
        host, port = split_address(config.address)
        self.address = _join(host, port)
        state = config.state_dir
        self.state: StateDir | None = (
            state if isinstance(state, StateDir) or state is None else StateDir(state)
        )
        self.pki: ClusterPKI = load_or_create(self.state, host)
        self.template = ClusterTemplate.load(config.template)
        if self.state is not None:
            # shards of one host may share the directory: the first to start creates, the rest read
            with self.state.lock(SET_LOCK):
                self.created = self._created()
                self._token_key = self._load_token_key()
        else:
            self.created = self._created()
            self._token_key = self._load_token_key()
        self.builder = SeedBuilder(
            self.template,
            ca_pem=self.pki.ca_cert_pem,
            kubernetes_version=config.version,
            api_host=host,
            api_port=port,
            rancher=config.rancher,
            created=self.created,
        )
        self._ca_b64 = base64.b64encode(self.pki.ca_cert_pem).decode("ascii")
        self._cattle_uid = self._find_cattle_uid()
        self._clusters: dict[int, SimulatedCluster] = {}
        self._entries: dict[int, tuple[Entry, StorageKey, Key]] = {}
        self._parts: dict[int, _SharedPart] = {}
        self._registries: dict[tuple[str, ...], Registry] = {}
        self._shared_rv = 1
        self._server_tls: Any = None
        self._ping_site: QuietSite | None = None
        self._saver: LoopingCall | None = None
        self._saving: Iterator[SimulatedCluster] | None = None
        self._save_call: Any = None
        # Periodic saves write (and fsync) in the reactor's thread pool; this lock orders them with
        # the inline saves of stop()/forget(), and `_written_rv` keeps an older snapshot from landing
        # over a newer one.
        self.write_lock = threading.Lock()
        # The clock of every in-tunnel TLS connection: their zero-delay write flushes share one
        # reactor call per turn instead of one timer each (see scaleagent.cluster.turns).
        self.turns = TurnBatcher(clock)
        self._writing: defer.Deferred[Any] | None = None
        self.liveness = liveness.HeartbeatScheduler(
            clock, lease_period=config.lease_period, status_period=config.status_period
        )
        self.started = False

    # -- process-wide identity -------------------------------------------------------------------------

    def _created(self) -> float:
        """When this state directory's clusters were first created: every seed object's creation time."""
        now = float(self.clock.seconds()) if hasattr(self.clock, "seconds") else time.time()
        if self.state is None:
            return now
        try:
            doc = self.state.read_json(SET_FILE)
        except CorruptStateFile:
            doc = None
        created = doc.get("created") if isinstance(doc, dict) else None
        if isinstance(created, int | float) and not isinstance(created, bool) and created > 0:
            return float(created)
        self.state.write_json(SET_FILE, {"format": 1, "created": now})
        return now

    def _load_token_key(self) -> bytes:
        """The secret from which each cluster's `cattle` token is derived (kept in the state directory)."""
        if self.state is None:
            return secrets.token_bytes(32)
        data = self.state.read_bytes(TOKEN_KEY_FILE)
        if data is not None:
            try:
                key = bytes.fromhex(data.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                key = b""
            if len(key) == 32:
                return key
            try:
                self.state.corrupt(TOKEN_KEY_FILE, "expected 64 hex digits; every cluster gets a new token")
            except CorruptStateFile:
                pass
        key = secrets.token_bytes(32)
        self.state.write_bytes(TOKEN_KEY_FILE, key.hex().encode() + b"\n", private=True)
        return key

    def _find_cattle_uid(self) -> str:
        probe = self.builder.seed(0, "probe")
        for obj in probe.shared:
            meta = obj["metadata"]
            if obj["kind"] == "ServiceAccount" and (meta.get("namespace"), meta["name"]) == (
                CATTLE_NAMESPACE,
                CATTLE_ACCOUNT,
            ):
                return meta["uid"]
        return str(uuid.uuid5(_UID_NAMESPACE, "cattle"))

    def _mac(self, *parts: str) -> bytes:
        return hmac.new(self._token_key, "/".join(parts).encode(), hashlib.sha512).digest()

    # -- the clusters ------------------------------------------------------------------------------------

    def cluster(self, index: int, name: str, *, rancher_token: str = "") -> SimulatedCluster:
        """Cluster `index` (the same object for the same index); `name` is fixed for the index."""
        found = self._clusters.get(index)
        if found is not None:
            if found.name != name:
                raise ValueError(f"cluster {index} is {found.name!r}, not {name!r}")
            if rancher_token and not found.materialized:
                found.rancher_token = rancher_token
            return found
        if index < 0:
            raise ValueError(f"cluster index {index}: expected >= 0")
        persist.file_name(name)  # ValueError for names that cannot be file names
        cluster = self._clusters[index] = SimulatedCluster(self, index, name, rancher_token)
        if self.started:
            cluster.start()
        return cluster

    def get(self, index: int) -> SimulatedCluster | None:
        return self._clusters.get(index)

    def forget(self, index: int, *, remove_state: bool = False) -> None:
        """Stop and drop cluster `index` (saved first).  Its state file stays, unless `remove_state`:
        a cluster deleted from Rancher for good must not hand its old writes to a new one of that name."""
        cluster = self._clusters.pop(index, None)
        if cluster is None:
            return
        cluster.stop(save=not remove_state)
        if remove_state and self.state is not None:
            try:
                self.state.remove(persist.file_name(cluster.name))
            except (StateError, OSError) as error:
                log.error("cluster {name}: state not removed: {error}", name=cluster.name, error=str(error))

    def __iter__(self) -> Iterator[SimulatedCluster]:
        return iter(list(self._clusters.values()))

    def __len__(self) -> int:
        return len(self._clusters)

    def start(self) -> None:
        """Periodic saves and liveness on for every cluster (and each one added later)."""
        if self.started:
            return
        self.started = True
        for cluster in self:
            cluster.start()
        if self.state is not None and self.config.save_interval > 0:
            self._saver = LoopingCall(self._save_pass)
            self._saver.clock = self.clock
            self._saver.start(self.config.save_interval, now=False).addErrback(
                lambda f: log.failure("periodic cluster save stopped", f)
            )

    def stop(self) -> None:
        """Liveness off, periodic saves off, then every changed cluster saved."""
        if self._saver is not None and self._saver.running:
            self._saver.stop()
        self._saver = None
        if self._save_call is not None and self._save_call.active():
            self._save_call.cancel()
        self._save_call = self._saving = None
        self.started = False
        for cluster in self:
            cluster.stop()
        self.liveness.stop()

    def save(self) -> int:
        """Save every cluster changed since its last save, now; returns how many were written."""
        return sum(1 for cluster in self if cluster.save())

    def _save_pass(self) -> None:
        """The periodic save: changed clusters, `SAVE_BATCH` per reactor turn (each write fsyncs, and
        thousands in one turn would stall every tunnel's pings)."""
        if self._saving is not None or self._writing is not None:
            return  # the previous pass is still going
        self._saving = iter([c for c in self._clusters.values() if c.dirty])
        self._save_slice()

    def _thread_pool(self) -> Any:
        """The reactor's thread pool, or None when the clock is not a reactor (tests: inline saves)."""
        get_pool = getattr(self.clock, "getThreadPool", None)
        if get_pool is None or not hasattr(self.clock, "callFromThread"):
            return None
        return get_pool()

    def _save_slice(self) -> None:
        self._save_call = None
        if self._saving is None:
            return
        pool = self._thread_pool()
        if pool is None:
            for _ in range(SAVE_BATCH):
                cluster = next(self._saving, None)
                if cluster is None:
                    self._saving = None
                    return
                cluster.save()
            self._save_call = self.clock.callLater(SAVE_PAUSE, self._save_slice)
            return
        # Each write fsyncs the file and its directory (12 ms each on a plain local disk): done in the
        # reactor's thread, a batch of 25 stalled every tunnel for 300 ms, and thousands of clusters
        # changed by Rancher's setup stalled the agent for a minute. Encode here, write in a thread.
        jobs = []
        for _ in range(SAVE_BATCH):
            cluster = next(self._saving, None)
            if cluster is None:
                self._saving = None
                break
            job = cluster.save_job()
            if job is not None:
                jobs.append(job)
        if not jobs:
            if self._saving is not None:
                self._save_call = self.clock.callLater(SAVE_PAUSE, self._save_slice)
            return
        self._writing = deferToThreadPool(self.clock, pool, self._write_jobs, jobs)
        self._writing.addCallback(self._jobs_written, jobs)
        self._writing.addErrback(lambda f: log.failure("periodic cluster save failed", f))
        self._writing.addBoth(self._next_slice)

    def _write_jobs(self, jobs: list[tuple[SimulatedCluster, str, bytes, int]]) -> list[str | None]:
        """In a worker thread: write each snapshot unless a newer one is already on disk."""
        assert self.state is not None
        errors: list[str | None] = []
        with self.write_lock:
            for cluster, file_name, data, rv in jobs:
                if rv <= cluster._written_rv:
                    errors.append(None)
                    continue
                try:
                    self.state.write_bytes(file_name, data)
                except (StateError, OSError) as error:
                    errors.append(str(error))
                    continue
                cluster._written_rv = rv
                errors.append(None)
        return errors

    def _jobs_written(self, errors: list[str | None], jobs: list[tuple[Any, str, bytes, int]]) -> None:
        for (cluster, _, _, rv), error in zip(jobs, errors, strict=True):
            if error is None:
                cluster._saved_rv = max(cluster._saved_rv, rv)
            else:
                log.error("cluster {name}: changes not saved: {error}", name=cluster.name, error=error)

    def _next_slice(self, _: Any) -> None:
        self._writing = None
        if self._saving is not None and self.started:
            self._save_call = self.clock.callLater(SAVE_PAUSE, self._save_slice)

    # -- shared building blocks ----------------------------------------------------------------------------

    def server_tls(self) -> Any:
        if self._server_tls is None:
            self._server_tls = self.pki.server_context_factory()
        return self._server_tls

    def ping_site(self) -> QuietSite:
        """One steve Site for every cluster (`/ping`, and steve's `/v1` for the cluster each
        connection is tagged with): nothing per cluster until someone browses it."""
        if self._ping_site is None:
            from scaleagent.steve import V1Resource

            root = steve_root_resource()
            root.putChild(b"v1", V1Resource(self.clock))
            self._ping_site = QuietSite(root, self.clock, keep_alive=False)
        return self._ping_site

    def _entry(
        self, registry: Registry, obj: dict[str, Any], rv: int, *, shared: bool = False
    ) -> tuple[Entry, StorageKey, Key]:
        """A stored entry for a seed object; a shared one keeps its JSON, encoded once for all clusters."""
        skey, key = self._storage(registry, obj)
        out = dict(obj)
        out["metadata"] = new_meta = dict(obj["metadata"])
        new_meta["resourceVersion"] = str(rv)
        return (CachedEntry(out) if shared else Entry(out)), skey, key

    def _storage(self, registry: Registry, obj: dict[str, Any]) -> tuple[StorageKey, Key]:
        """Where a seed object is stored: its type's storage key and (namespace or "", name)."""
        rt = registry.by_api_version_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise ValueError(f"seed object of unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
        meta = obj["metadata"]
        return rt.storage_key, (meta.get("namespace", "") if rt.namespaced else "", meta["name"])

    def _registry_for(self, crds: list[dict[str, Any]]) -> Registry:
        names = tuple(sorted(c["metadata"]["name"] for c in crds))
        found = self._registries.get(names)
        if found is None:
            from scaleagent.apiserver.writes import register_crd

            found = Registry()
            holder = Store(kinds=found)
            for crd in crds:
                register_crd(holder, crd)
            self._registries[names] = found
        return found

    def _shared_part(self, shared: tuple[dict[str, Any], ...]) -> _SharedPart:
        found = self._parts.get(id(shared))
        if found is not None:
            return found
        builtin = Registry()
        buckets: dict[StorageKey, dict[Key, Entry]] = {}
        top = 0
        crds = []
        for obj in shared:
            made = self._entries.get(id(obj))
            if made is None:
                self._shared_rv += 1
                made = self._entries[id(obj)] = self._entry(builtin, obj, self._shared_rv, shared=True)
            entry, skey, key = made
            buckets.setdefault(skey, {})[key] = entry
            top = max(top, int(entry.obj["metadata"]["resourceVersion"]))
            if skey == persist.CRD_KEY:
                crds.append(obj)
        part = _SharedPart(
            buckets,
            {skey: sorted(bucket) for skey, bucket in buckets.items()},
            top,
            self._registry_for(crds),
        )
        self._parts[id(shared)] = part  # `shared` is kept alive by the builder, so its id stays unique
        return part

    def seed(self, cluster: SimulatedCluster) -> tuple[Seed, Registry]:
        """Cluster's seed: shared entries by reference, its own objects (and cattle token) on top."""
        shared = self.builder.shared_part(cluster.index)
        part = self._shared_part(shared)
        made: ClusterSeed = self.builder.seed(
            cluster.index,
            cluster.name,
            rancher_token=cluster.rancher_token,
            resource_version=part.resource_version,
        )
        own: dict[StorageKey, dict[Key, Entry]] = {}
        # Complete as built (resourceVersion stamped) and this cluster's alone. What the heartbeats
        # rewrite stays a dict; the rest is packed (read rarely: see scaleagent.apiserver.packed).
        kept = [obj for obj in made.own if obj["kind"] in LIVE_KINDS]
        packed = [obj for obj in made.own if obj["kind"] not in LIVE_KINDS]
        entries: list[Entry] = [Entry(obj) for obj in kept]
        entries += pack(packed)
        for obj, entry in zip(kept + packed, entries, strict=True):
            skey, key = self._storage(part.registry, obj)
            own.setdefault(skey, {})[key] = entry
        rv = part.resource_version + len(made.own) + 1
        entry, skey, key = self._entry(part.registry, cluster.token_secret(), rv)
        own.setdefault(skey, {})[key] = entry
        buckets = dict(part.buckets)
        sorted_keys = dict(part.sorted_keys)
        for skey, bucket in own.items():
            base = part.buckets.get(skey)
            merged = {**base, **bucket} if base else bucket
            buckets[skey] = merged
            sorted_keys[skey] = sorted(merged)
        seed = Seed.__new__(Seed)  # Seed() would re-sort the shared buckets into per-cluster lists
        seed.buckets = buckets
        seed.sorted_keys = sorted_keys
        seed.resource_version = rv
        return seed, part.registry.derive()


class SimulatedCluster:
    """One simulated cluster; see the module docstring.  Build through `ClusterSet.cluster()`."""

    __slots__ = (
        "clusters",
        "index",
        "name",
        "rancher_token",
        "restore_error",
        "started",
        "_token",
        "_api",
        "_main_factory",
        "_steve_root",
        "_steve_site",
        "_saved_rv",
        "_written_rv",
        "_liveness",
    )

    def __init__(self, clusters: ClusterSet, index: int, name: str, rancher_token: str = "") -> None:
        self.clusters = clusters
        self.index = index
        self.name = name
        self.rancher_token = rancher_token
        self.restore_error: CorruptStateFile | None = None
        self.started = False
        self._token: str | None = None
        self._api: ApiContext | None = None
        self._main_factory: IProtocolFactory | None = None
        self._steve_root: Resource | None = None
        self._steve_site: QuietSite | None = None
        self._saved_rv = -1
        self._written_rv = -1
        self._liveness: Any = None

    def __repr__(self) -> str:
        return f"SimulatedCluster({self.index}, {self.name!r})"

    # -- identity --------------------------------------------------------------------------------------

    def _secret_name(self) -> str:
        return f"cattle-token-{_suffix(self.clusters._mac('secret-name', self.name))}"

    @property
    def token(self) -> str:
        """The `cattle` service-account token: derived from the state directory's key, so stable."""
        if self._token is None:
            claims = {
                "iss": "kubernetes/serviceaccount",
                "kubernetes.io/serviceaccount/namespace": CATTLE_NAMESPACE,
                "kubernetes.io/serviceaccount/secret.name": self._secret_name(),
                "kubernetes.io/serviceaccount/service-account.name": CATTLE_ACCOUNT,
                "kubernetes.io/serviceaccount/service-account.uid": self.clusters._cattle_uid,
                "sub": f"system:serviceaccount:{CATTLE_NAMESPACE}:{CATTLE_ACCOUNT}",
            }
            mac = self.clusters._mac("token", self.name)
            header = {"alg": "RS256", "kid": _b64url(self.clusters._mac("kid")[:32])}
            self._token = ".".join(
                (
                    _b64url(json.dumps(header, separators=(",", ":")).encode()),
                    _b64url(json.dumps(claims, separators=(",", ":")).encode()),
                    _b64url(mac),
                )
            )
        return self._token

    def tunnel_params(self) -> dict[str, Any]:
        """What the main tunnel announces (`X-API-Tunnel-Params`, decoded): stable across restarts."""
        return {
            "cluster": {
                "address": self.clusters.address,
                "token": self.token,
                "caCert": self.clusters._ca_b64,
            }
        }

    def params_header(self) -> str:
        return params_header(self.tunnel_params())

    def token_secret(self) -> dict[str, Any]:
        """The `cattle-token-*` Secret the agent keeps for its service account, holding `token`."""
        c = self.clusters
        name = self._secret_name()
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "generateName": "cattle-token-",
                "namespace": CATTLE_NAMESPACE,
                "uid": str(uuid.uuid5(_UID_NAMESPACE, f"{self.name}/{name}")),
                "creationTimestamp": timestamp(c.created),
                "labels": {"cattle.io/service-account.name": CATTLE_ACCOUNT},
                "annotations": {
                    controllers.SA_NAME_ANNOTATION: CATTLE_ACCOUNT,
                    controllers.SA_UID_ANNOTATION: c._cattle_uid,
                },
            },
            "type": controllers.SA_TOKEN_TYPE,
            "data": {
                "ca.crt": c._ca_b64,
                "namespace": base64.b64encode(CATTLE_NAMESPACE.encode()).decode(),
                "token": base64.b64encode(self.token.encode()).decode(),
            },
        }

    # -- the apiserver ---------------------------------------------------------------------------------

    @property
    def materialized(self) -> bool:
        """Whether the store (seed objects, saved changes) has been built."""
        return self._api is not None

    @property
    def api(self) -> ApiContext:
        """This cluster's apiserver context, built (and its saved changes restored) on first use."""
        if self._api is None:
            self._build()
            assert self._api is not None
        return self._api

    @property
    def store(self) -> Store:
        return self.api.store

    def _build(self) -> ApiContext:
        c = self.clusters
        seed, registry = c.seed(self)
        clock = c.clock
        store = Store(
            seed, kinds=registry, history=c.config.watch_history,
            history_seconds=c.config.watch_history_seconds, now=lambda: float(clock.seconds())
        )
        if c.state is not None:
            try:
                saved = persist.read(c.state, self.name)
            except CorruptStateFile as error:
                self.restore_error = error
                log.error(
                    "cluster {name}: saved changes lost, starting from the seed: {error}",
                    name=self.name,
                    error=str(error),
                )
                saved = None
            except StateError as error:  # unreadable (permissions, I/O): keep the file, report
                log.error("cluster {name}: {error}", name=self.name, error=str(error))
                saved = None
            if saved is not None:
                persist.restore(store, saved)
        api = ApiContext(
            store,
            clock,
            auth=TokenAuthenticator(anonymous=c.config.anonymous),
            version=c.config.version,
            address=c.address,
            ca_pem=c.pki.ca_cert_pem,
        )
        api.extras.update(c.api_extras)
        controllers.start(api)
        if controllers.EXTRA_KEY not in api.extras or api.auth.user(self.token) is None:
            api.auth.issue(controllers.service_account_user(CATTLE_NAMESPACE, CATTLE_ACCOUNT), self.token)
        self._saved_rv = store.resource_version
        self._api = api
        if self.started:
            self._start_beats()
        return api

    # -- resolvers (remotedialer `Resolver`s) --------------------------------------------------------

    def main_resolver(self, proto: str, address: str) -> IProtocolFactory | None:
        """The configured apiserver address → TLS around the apiserver Site; anything else → refused."""
        if proto != "tcp" or not self._is_api_address(address):
            return None
        if self._main_factory is None:
            c = self.clusters
            site = make_site(self.api)
            self._main_factory = SmallBufferTLSFactory(c.server_tls(), False, site, clock=c.turns)
        return self._main_factory

    def _is_api_address(self, address: str) -> bool:
        if address == self.clusters.address:
            return True
        try:
            return _join(*split_address(address)) == self.clusters.address
        except ValueError:
            return False

    def steve_resolver(self, proto: str, address: str) -> IProtocolFactory:
        """Any target → the plain-HTTP steve Site (steve ignores the address, as the real agent does)."""
        if self._steve_site is not None:
            return self._steve_site
        return _SteveConnections(self.clusters.ping_site(), self)

    @property
    def steve_root(self) -> Resource:
        """This cluster's steve root (`/ping` already there); mount steve's `/v1` on it."""
        if self._steve_root is None:
            from scaleagent.steve import V1Resource

            self._steve_root = steve_root_resource()
            self._steve_root.putChild(b"v1", V1Resource(self.clusters.clock, lambda _request: self.api))
            self._steve_site = QuietSite(self._steve_root, self.clusters.clock, keep_alive=False)
        return self._steve_root

    # -- lifecycle and persistence ---------------------------------------------------------------------

    def start(self) -> None:
        """Node liveness on: its nodes beat from when its store exists (nothing to renew before)."""
        if self.started:
            return
        self.started = True
        if self._api is not None:
            self._start_beats()

    def stop(self, *, save: bool = True) -> None:
        """Liveness off, then save what changed (unless `save` is False)."""
        if self._liveness is not None:
            self._liveness.cancel()
            self._liveness = None
        self.started = False
        if save:
            self.save()

    def _start_beats(self) -> None:
        if self._liveness is not None:
            return
        api = self.api
        nodes = api.kinds.by_resource("", "v1", "nodes")
        if nodes is None:
            return
        names = [obj["metadata"]["name"] for obj in api.store.list(nodes).objects()]
        self._liveness = self.clusters.liveness.add(self.index, names, self._beat)

    def _beat(self, node: str, beat: liveness.Beat) -> None:
        """One kubelet heartbeat: written only while someone watches that type (else nobody could see
        it change, and every write would hold a superseded copy in the watch history)."""
        api = self._api
        if api is None:
            return
        if beat is liveness.Beat.LEASE:
            rt = api.kinds.by_resource("coordination.k8s.io", "v1", "leases")
            namespace: str | None = "kube-node-lease"
            change = liveness.renew_lease
        else:
            rt = api.kinds.by_resource("", "v1", "nodes")
            namespace = None
            change = liveness.heartbeat_node
        if rt is None or not api.store.watching(rt):
            return
        current = api.store.lookup(rt, namespace, node)
        if current is None:
            return
        now = float(self.clusters.clock.seconds())
        store = api.store
        clean = store.resource_version == self._saved_rv
        store.replace(rt, change(current, now), namespace=namespace, check_resource_version=False)
        if clean:
            # A heartbeat alone is not worth a save (a restart renews it anyway): with Rancher watching
            # Nodes every cluster would otherwise be rewritten every status period.
            self._saved_rv = store.resource_version

    @property
    def dirty(self) -> bool:
        return self._api is not None and self._api.store.resource_version != self._saved_rv

    def save(self) -> bool:
        """Write this cluster's changes if any since the last save; True when a file was written."""
        state = self.clusters.state
        if state is None or not self.dirty:
            return False
        store = self.api.store
        rv = store.resource_version
        try:
            with self.clusters.write_lock:  # after a periodic write in flight, never before it
                persist.save(state, self.name, self.index, store)
                self._written_rv = max(self._written_rv, rv)
        except (StateError, OSError) as error:
            log.error("cluster {name}: changes not saved: {error}", name=self.name, error=str(error))
            return False
        self._saved_rv = rv
        return True

    def save_job(self) -> tuple[SimulatedCluster, str, bytes, int] | None:
        """This cluster's changes encoded for a write in a worker thread; None when nothing changed."""
        if self.clusters.state is None or not self.dirty:
            return None
        store = self.api.store
        rv = store.resource_version
        data = encode_json(persist.dump(self.name, self.index, store))
        return self, persist.file_name(self.name), data, rv


#: The name the agent layer uses for the process-wide set.
ClusterFactory = ClusterSet

__all__ = [
    "ClusterConfig",
    "ClusterFactory",
    "ClusterSet",
    "QuietSite",
    "SimulatedCluster",
    "params_header",
    "split_address",
    "steve_root_resource",
]
