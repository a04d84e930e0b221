"""`AgentService`: import this shard's clusters into Rancher and keep both tunnels of each one up.

Per cluster (`ClusterRunner`): find or import the Rancher cluster (adopting a same-name one), read its
registration token (waiting for Rancher to make it), then hold two tunnels as `ClientService`s:

* main: `wss://<rancher>/v3/connect/register` until the cluster has connected once (remembered in the
  state directory), then `/v3/connect`; headers `X-API-Tunnel-Token` and `X-API-Tunnel-Params`;
* steve: `wss://<rancher>/v3/connect` with `Authorization: Bearer stv-cluster-<registration token>`.

A handshake refused with 400/401 marks the token stale: the next attempt of either tunnel first asks
Rancher for the current token (and re-imports the cluster if Rancher no longer has it, e.g. after the
stand-in restarted). Reconnect delays come from `scaleagent.retry` (per-tunnel backoff, one
process-wide slot limiter). In `jittered` mode every connection attempt after a tunnel's first is also
admitted by that limiter at the moment it connects (`ClusterRunner._prepare`): one that waited for a
token refresh, or whose timer ran late, takes a fresh slot, so `reconnect_per_second` bounds the
attempts really made. First attempts are paced by the ramp and not counted.

Cluster records are written in the reactor's thread pool (`scaleagent.records.RecordWriter`): each
write fsyncs twice, and thousands of them in the reactor thread stalled every tunnel.

Registration runs at `ramp_per_second` with at most `concurrency` clusters talking to Rancher's API at
once; `resize(count)` grows or shrinks the fleet at run time (shrinking deletes the highest indices in
Rancher). Per-cluster errors are counted by kind and reported in the periodic progress line, never
logged once per cluster.

The clusters themselves (apiserver, PKI, resolvers) come from a `ClusterSet`-like object made by
`cluster_set_factory(rancher_info)` once the server is checked (`scaleagent.cluster.cluster`).
"""

from __future__ import annotations

import json
import resource as _resource
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from scaleagent.apiserver.resource import OBSERVE
from scaleagent.cluster.turns import TurnBatcher
from scaleagent.config import MAX_CLUSTERS, AgentConfig
from scaleagent.rancher.client import RancherClient, RancherError, ServerInfo
from scaleagent.records import RecordWriter, ThreadRunner, reactor_threads
from scaleagent.redact import Secret, logger
from scaleagent.remotedialer.websocket import TunnelClientFactory, TunnelEnded, client_tls_options
from scaleagent.retry import JITTERED, Backoff, SlotLimiter
from scaleagent.state import StateDir, StateError, encode_json

log = logger()

MAIN = "main"
STEVE = "steve"
TUNNELS = (MAIN, STEVE)
STATE_SUBDIR = "rancher"
DEFAULT_CONCURRENCY = 16
POLL_INTERVAL = 15.0
#: Rancher's whole cluster list is read at most every clusters × this many seconds (5,000: 50 s):
#: encoding and decoding 5,000 clusters held each side's reactor for 100-190 ms, and a real agent
#: fleet never asks Rancher for the list at all
POLL_SECONDS_PER_CLUSTER = 0.01
PROGRESS_INTERVAL = 5.0
STEADY_PROGRESS_INTERVAL = 60.0
FDS_RESERVED = 64  # listeners, logs, state files, Rancher API connections
STOP_DELETE_TIMEOUT = 120.0
DELETE_GRACE = 10.0  # Rancher's cleanup: 3 tries, 3 s apart, through the tunnel, then it closes
# Rancher wants the delete while the tunnels are up, so its cleanup objects reach the cluster
# (rancher-protocol.md §6.5: otherwise ~30 s of dial retries per try).
DELETE_WITH_TUNNELS_UP = True

# Phases of a cluster, in order.
WAITING = "waiting"
REGISTERING = "registering"
CONNECTING = "connecting"
CONNECTED = "connected"
REMOVING = "removing"


class SimulatedClusterLike(Protocol):
    """What the agent needs from one simulated cluster (`scaleagent.cluster.cluster.SimulatedCluster`)."""

    name: str
    index: int

    def params_header(self) -> str: ...

    def main_resolver(self, proto: str, address: str) -> Any: ...

    def steve_resolver(self, proto: str, address: str) -> Any: ...


class ClusterSetLike(Protocol):
    def cluster(self, index: int, name: str, *, rancher_token: str = "") -> SimulatedClusterLike: ...

    def start(self) -> None: ...

    def stop(self) -> Any: ...


ClusterSetFactory = Callable[[ServerInfo], ClusterSetLike]
#: The endpoint a tunnel connects through (default: `TunnelClientFactory.endpoint()`, TCP + TLS).
TunnelEndpointFactory = Callable[[TunnelClientFactory], IStreamClientEndpoint]


@dataclass
class ClusterRecord:
    """What the state directory keeps per cluster, so a restart shows Rancher the same clusters."""

    name: str
    index: int
    rancher_url: str = ""
    rancher_id: str = ""
    connected_once: bool = False


def raise_open_files_limit(resource_module: Any = _resource) -> tuple[int, int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (old soft, new soft, hard)."""
    soft, hard = resource_module.getrlimit(resource_module.RLIMIT_NOFILE)
    new = soft
    if hard == resource_module.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource_module.RLIM_INFINITY else max(soft, 1048576)
        try:
            resource_module.setrlimit(resource_module.RLIMIT_NOFILE, (target, hard))
            new = target
        except (ValueError, OSError):
            new = soft
    return soft, new, hard


def clusters_allowed(open_files: int) -> int:
    """How many clusters `open_files` descriptors hold: two tunnel sockets each, some reserved."""
    return max(0, (open_files - FDS_RESERVED) // 2)


class ErrorTally:
    """Per-cluster errors counted by kind between progress lines: 10,000 clusters, one line."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._examples: dict[str, str] = {}
        self.total = 0

    def note(self, kind: str, example: str) -> None:
        self._counts[kind] += 1
        self._examples.setdefault(kind, example)
        self.total += 1

    def drain(self) -> str:
        """"3× auth (HTTP 401): <first message>; ..." for the period, then start afresh."""
        if not self._counts:
            return ""
        parts = [f"{n}× {kind}: {self._examples[kind]}" for kind, n in self._counts.most_common(5)]
        more = len(self._counts) - 5
        self._counts.clear()
        self._examples.clear()
        return "; ".join(parts) + (f"; and {more} other kinds" if more > 0 else "")


@implementer(IStreamClientEndpoint)
class PreparedEndpoint:
    """An endpoint that runs `prepare()` (may return a Deferred) before each connection attempt.

    The agent uses it to re-read a rotated registration token before reconnecting, without
    ClientService's `prepareConnection` (which hangs on a refused WebSocket handshake)."""

    def __init__(self, endpoint: Any, prepare: Callable[[], Any]) -> None:
        self._endpoint = endpoint
        self._prepare = prepare

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        ready = self._prepare()
        if ready is None:
            return self._endpoint.connect(factory)
        return defer.ensureDeferred(self._after(ready, factory))

    async def _after(self, ready: Any, factory: Any) -> Any:
        await ready
        return await self._endpoint.connect(factory)


def _warnings_only(event: dict[str, Any]) -> None:
    level = event.get("log_level")
    if level is not None and level >= LogLevel.warn:
        log.observer(event)  # the redacting publisher


class QuietClientService(ClientService):
    """ClientService without its info line per retry ("Scheduling retry …"): 10,000 tunnels reconnecting
    would log 10,000 lines; the agent's progress line counts reconnects instead."""

    _log = Logger(namespace="scaleagent.agent.tunnel", observer=_warnings_only)


class Tunnel:
    """One of a cluster's two tunnels: its factory, ClientService and backoff."""

    def __init__(self, runner: ClusterRunner, kind: str) -> None:
        self.runner = runner
        self.kind = kind
        self.factory: TunnelClientFactory | None = None
        self.service: ClientService | None = None
        self.backoff: Backoff | None = None
        self.protocol: Any = None
        self.attempts = 0
        self.opens = 0
        self.last_end: TunnelEnded | None = None

    @property
    def connected(self) -> bool:
        return self.protocol is not None


class ClusterRunner:
    """One simulated cluster's life in Rancher: register, hold two tunnels, refresh the token, remove."""

    def __init__(self, agent: AgentService, index: int) -> None:
        self.agent = agent
        self.index = index
        self.name = agent.config.clusters.name(index)
        self.record = agent.load_record(index, self.name)
        self.phase = WAITING
        self.token: Secret | None = None
        self.token_stale = False
        self.rancher_state = ""
        self.last_error = ""
        self.cluster: SimulatedClusterLike | None = None
        self.tunnels = {kind: Tunnel(self, kind) for kind in TUNNELS}
        self.adopted = False
        self._registration: defer.Deferred[Any] | None = None
        self._refresh_waiters: list[tuple[Tunnel, defer.Deferred[None]]] | None = None
        self.removed = False
        self.api_backoff = Backoff(agent.clock, initial=2.0, cap=60.0, rng=agent.rng)

    # -- view ----------------------------------------------------------------------------------------

    @property
    def connected_tunnels(self) -> int:
        return sum(1 for t in self.tunnels.values() if t.connected)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "rancher_id": self.record.rancher_id or None,
            "phase": self.phase,
            "tunnels": self.connected_tunnels,
            "main": self.tunnels[MAIN].connected,
            "steve": self.tunnels[STEVE].connected,
            "connected_once": self.record.connected_once,
            "rancher_state": self.rancher_state or None,
            "last_error": self.last_error or None,
        }

    def error(self, kind: str, message: str) -> None:
        self.last_error = message
        self.agent.errors.note(kind, message)

    # -- registration --------------------------------------------------------------------------------

    def start(self) -> defer.Deferred[Any]:
        """Register (retrying until it works or the runner is removed), then start the tunnels."""
        self.phase = REGISTERING
        self._registration = defer.ensureDeferred(self._register_until_done())
        self._registration.addErrback(lambda f: f.trap(defer.CancelledError))
        return self._registration

    async def _register_until_done(self) -> None:
        while not self.removed:
            try:
                await self._register()
                break
            except RancherError as failure:
                self.error(failure.summary, str(failure))
                await task.deferLater(self.agent.clock, self.api_backoff(), lambda: None)
        else:
            return
        self.api_backoff.reset()
        self.last_error = ""
        self.agent.registered += 1
        self._start_tunnels()

    async def _register(self) -> None:
        rancher = self.agent.rancher
        record = self.record
        info = None
        if record.rancher_id and record.rancher_url == rancher.url:
            info = await rancher.get_cluster(record.rancher_id)
            if info is not None and info.name != self.name:
                info = None
        if info is None:
            info, self.adopted = await rancher.import_cluster(self.name)
            if self.adopted:
                self.agent.adopted += 1
        if info.id != record.rancher_id or record.rancher_url != rancher.url:
            record.rancher_id = info.id
            record.rancher_url = rancher.url
            record.connected_once = False
        self.agent.save_record(record)
        self.rancher_state = info.state
        self.token = await rancher.registration_token(info.id)
        self.token_stale = False

    # -- tunnels -------------------------------------------------------------------------------------

    def _headers(self, kind: str) -> dict[str, str]:
        assert self.token is not None and self.cluster is not None
        if kind == MAIN:
            return {
                "X-API-Tunnel-Token": self.token.reveal(),
                "X-API-Tunnel-Params": self.cluster.params_header(),
            }
        return {"Authorization": "Bearer stv-cluster-" + self.token.reveal()}

    def _url(self, kind: str) -> str:
        base = self.agent.tunnel_base
        if kind == MAIN and not self.record.connected_once:
            return base + "/v3/connect/register"
        return base + "/v3/connect"

    def _retarget(self, tunnel: Tunnel) -> None:
        """Point the tunnel's factory at the current URL and headers (used by the next handshake)."""
        factory = tunnel.factory
        if factory is None:
            return
        url = self._url(tunnel.kind)
        if factory.url != url:
            factory.url = url
            factory.resource = factory.path = urlsplit(url).path
        factory.headers = self._headers(tunnel.kind)

    def _start_tunnels(self) -> None:
        if self.removed:
            return
        agent = self.agent
        if self.cluster is None:
            self.cluster = agent.clusters.cluster(self.index, self.name, rancher_token=self.token.reveal())
        self.phase = CONNECTING
        for kind, tunnel in self.tunnels.items():
            resolver = self.cluster.main_resolver if kind == MAIN else self.cluster.steve_resolver
            tunnel.factory = TunnelClientFactory(
                agent.clock,
                self._url(kind),
                self._headers(kind),
                resolver,
                name=f"{self.name}/{kind}",
                tls_options=agent.tls_options,
                tls_clock=agent.tls_clock,
                on_open=lambda protocol, t=tunnel: self._opened(t, protocol),
                on_close=lambda protocol, ended, t=tunnel: self._closed(t, protocol, ended),
            )
            tunnel.backoff = agent.new_backoff()
            endpoint = PreparedEndpoint(
                agent.tunnel_endpoint(tunnel.factory), lambda t=tunnel: self._prepare(t)
            )
            tunnel.service = QuietClientService(
                endpoint, tunnel.factory, retryPolicy=tunnel.backoff, clock=agent.clock
            )
            tunnel.service.startService()

    def _prepare(self, tunnel: Tunnel) -> defer.Deferred[None] | None:
        """Before each connection attempt: re-read a stale token, take a limiter slot, set URL and headers.

        Every attempt after the tunnel's first is admitted by the process-wide limiter (jittered mode)
        right before it connects: ClientService's timer normally fires on the slot its backoff
        reserved, but a timer run late by a busy reactor, or an attempt that waited for a token
        refresh (a re-import takes seconds in a storm), would otherwise connect off its slot."""
        if self.removed:
            return defer.fail(ConnectionAbortedError(f"{self.name} is being removed"))
        limiter = self.agent.attempt_limiter if tunnel.attempts else None
        if not self.token_stale and (limiter is None or limiter.admit()):
            self._attempting(tunnel)
            return None
        return defer.ensureDeferred(self._prepare_slowly(tunnel, limiter))

    async def _prepare_slowly(self, tunnel: Tunnel, limiter: SlotLimiter | None) -> None:
        planned = True  # still at the time ClientService's timer fired (its reserved slot)
        if self.token_stale:
            await self._fresh_token(tunnel)
            planned = False
        if limiter is not None:
            await self._admitted(limiter, planned)
        if self.removed:
            raise ConnectionAbortedError(f"{self.name} is being removed")
        self._attempting(tunnel)

    async def _admitted(self, limiter: SlotLimiter, planned: bool) -> None:
        """Wait until the limiter admits this attempt: off its planned slot, it first takes a new one."""
        clock = self.agent.clock
        if not planned:
            await task.deferLater(clock, limiter.delay(0.0), lambda: None)
        while not limiter.admit():
            # The last second is full (timers ran late, together): wait for room, in line.
            await task.deferLater(clock, max(0.0, limiter.retry_at() - clock.seconds()), lambda: None)
            if self.removed:
                return

    def _attempting(self, tunnel: Tunnel) -> None:
        """The tunnel connects now: count it and point the factory at the current URL and headers."""
        tunnel.attempts += 1
        if tunnel.attempts > 1:
            self.agent.reconnects += 1
        self._retarget(tunnel)

    def _fresh_token(self, tunnel: Tunnel) -> defer.Deferred[None]:
        """Wait for the (one, shared) refresh of a stale token; fails as the refresh does."""
        if self._refresh_waiters is None:
            self._refresh_waiters = []
            refresh = defer.ensureDeferred(self._refresh_token())
            refresh.addBoth(self._refresh_finished)
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._refresh_waiters is not None:
            self._refresh_waiters.append((tunnel, waiter))
        elif self.token_stale:  # the refresh failed synchronously (and counted its error)
            waiter.errback(ConnectionAbortedError(f"{self.name}: the registration token was not re-read"))
        else:  # the refresh finished synchronously
            waiter.callback(None)
        return waiter

    def _refresh_finished(self, result: Any) -> None:
        waiters, self._refresh_waiters = self._refresh_waiters or [], None
        for _tunnel, waiter in waiters:
            if waiter.called:  # cancelled: the tunnel was stopped meanwhile
                continue
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)
        return None

    async def _refresh_token(self) -> None:
        """Re-read the registration token (Rancher rotates them); re-import if the cluster is gone."""
        rancher = self.agent.rancher
        try:
            info = await rancher.get_cluster(self.record.rancher_id) if self.record.rancher_id else None
            if info is None or info.name != self.name:
                await self._register()
                self.agent.reimported += 1
            else:
                self.token = await rancher.registration_token(info.id, attempts=3)
            self.token_stale = False
            self.agent.token_refreshes += 1
        except RancherError as failure:
            self.error(failure.summary, str(failure))
            raise

    def _opened(self, tunnel: Tunnel, protocol: Any) -> None:
        tunnel.protocol = protocol
        tunnel.opens += 1
        if tunnel.backoff is not None:
            tunnel.backoff.opened()
        self.agent.tunnel_opened(tunnel)
        if tunnel.kind == MAIN and not self.record.connected_once:
            self.record.connected_once = True
            self.agent.save_record(self.record)
            self._retarget(tunnel)
        if self.connected_tunnels == 2:
            self.phase = CONNECTED
            self.last_error = ""

    def _closed(self, tunnel: Tunnel, protocol: Any, ended: TunnelEnded) -> None:
        tunnel.last_end = ended
        if tunnel.protocol is protocol and protocol is not None:
            tunnel.protocol = None
            self.agent.tunnel_closed(tunnel, protocol)
        if self.removed or self.agent.stopping:
            return
        self.phase = CONNECTING
        if ended.status in (400, 401):
            self.token_stale = True
            self.error(
                f"{tunnel.kind} tunnel refused (HTTP {ended.status})",
                f"{self.name}: {tunnel.kind} tunnel refused with HTTP {ended.status}; "
                "re-reading the registration token",
            )
        elif not ended.opened:
            self.error(f"{tunnel.kind} tunnel failed", f"{self.name}: {tunnel.kind} tunnel: {ended.reason}")

    async def stop_tunnels(self) -> None:
        """Close both tunnels (a clean WebSocket close) and stop reconnecting."""
        if self._registration is not None and not self._registration.called:
            self._registration.cancel()
        waits = []
        for tunnel in self.tunnels.values():
            if tunnel.protocol is not None:
                try:
                    tunnel.protocol.disconnect("agent stopping")
                except Exception:
                    log.failure("{name}: closing the {kind} tunnel failed", name=self.name, kind=tunnel.kind)
            if tunnel.service is not None and tunnel.service.running:
                waits.append(tunnel.service.stopService())
        for wait in waits:
            try:
                await wait
            except Exception:
                pass

    async def remove(self, *, delete: bool) -> None:
        """Stop this cluster; with `delete`, also delete it in Rancher and forget its record.

        With `DELETE_WITH_TUNNELS_UP`, the Rancher delete goes first, tunnels still up: Rancher then
        sends its cleanup objects (ClusterRole, ServiceAccount, Job `cattle-cleanup-*`) through the
        tunnel and closes the sessions itself (rancher-protocol.md §6.5); the agent waits for that (at
        most `DELETE_GRACE` seconds), then closes what is left. Otherwise the tunnels close first."""
        self.removed = True
        self.phase = REMOVING
        if self._registration is not None and not self._registration.called:
            self._registration.cancel()
        if not DELETE_WITH_TUNNELS_UP:
            await self.stop_tunnels()
        deleted = not (delete and self.record.rancher_id)
        if not deleted:
            for attempt in range(3):
                try:
                    await self.agent.rancher.delete_cluster(self.record.rancher_id)
                    self.agent.deleted += 1
                    deleted = True
                    break
                except RancherError as failure:
                    self.error(failure.summary, str(failure))
                    if attempt < 2:
                        await task.deferLater(self.agent.clock, 1.0 + attempt, lambda: None)
            if deleted and DELETE_WITH_TUNNELS_UP:
                for _ in range(int(DELETE_GRACE / 0.1)):
                    if self.connected_tunnels == 0:
                        break
                    await task.deferLater(self.agent.clock, 0.1, lambda: None)
        await self.stop_tunnels()
        if not deleted:
            return
        if delete:
            self.agent.forget_record(self.name)
        clusters = self.agent.clusters
        if clusters is not None and hasattr(clusters, "forget"):
            clusters.forget(self.index)


class AgentService(MultiService):
    """Many simulated clusters, imported into one Rancher, kept connected."""

    def __init__(
        self,
        config: AgentConfig,
        clock: Any,
        *,
        rancher: RancherClient | None = None,
        cluster_set_factory: ClusterSetFactory | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        poll_interval: float = POLL_INTERVAL,
        progress_interval: float = PROGRESS_INTERVAL,
        rng: Any = None,
        raise_limit: bool = True,
        run_in_thread: ThreadRunner | None = None,
        tunnel_endpoint: TunnelEndpointFactory | None = None,
    ) -> None:
        """`run_in_thread(function, *args) -> Deferred` runs the state writes (default: the reactor's
        thread pool, or inline when `clock` is not a reactor); `tunnel_endpoint(factory)` gives the
        endpoint a tunnel connects through (tests put in-memory ones there)."""
        super().__init__()
        self.setName("agent")
        import random

        self.config = config
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        if rancher is None:
            if config.rancher.token is None:
                raise ValueError("no Rancher API token configured")
            rancher = RancherClient(
                clock,
                config.rancher.url,
                config.rancher.token,
                ca_checksum=config.rancher.ca_checksum,
                insecure=config.rancher.insecure,
                max_connections=concurrency,
            )
        self.rancher = rancher
        self._cluster_set_factory = cluster_set_factory or default_cluster_set_factory(config, clock)
        self.clusters: Any = None
        #: called as (verb, resource, code, seconds) for every simulated apiserver request
        self.api_observer: Callable[[str, str, int, float], None] | None = None
        self.count = config.clusters.count
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.raise_limit = raise_limit
        self.state = StateDir(config.state.dir)
        self.records = RecordWriter(
            self.state,
            lambda message: self.errors.note("state write", message),
            run_in_thread if run_in_thread is not None else reactor_threads(clock),
        )
        self.tunnel_endpoint: TunnelEndpointFactory = tunnel_endpoint or TunnelClientFactory.endpoint
        self.limiter = SlotLimiter(clock, config.clusters.reconnect_per_second)
        #: admits every tunnel attempt after the first (jittered mode); real-agent is uncapped on purpose
        self.attempt_limiter = self.limiter if config.clusters.reconnect == JITTERED else None
        self.runners: dict[int, ClusterRunner] = {}
        self._queue: list[int] = []
        self._semaphore = defer.DeferredSemaphore(max(1, concurrency))
        self.errors = ErrorTally()
        self.server: ServerInfo | None = None
        self.tls_options: Any = None
        #: every tunnel's TLS write flushes share one reactor call per turn (see cluster.turns)
        self.tls_clock = TurnBatcher(clock)
        host = urlsplit(config.rancher.url).netloc
        self.tunnel_base = f"wss://{host}"
        self.stopping = False
        self.ready = False
        self.started_at = 0.0
        self.all_connected_at: float | None = None
        self.all_active_at: float | None = None
        self._main: defer.Deferred[None] | None = None
        self._stopped: defer.Deferred[None] | None = None
        self._ramp: defer.Deferred[None] | None = None
        self._loops: list[task.LoopingCall] = []
        self._last_progress = 0.0
        self._last_poll = -float("inf")
        self._last_counts: tuple[int, ...] = ()
        # counters (monotonic)
        self.registered = 0
        self.adopted = 0
        self.reimported = 0
        self.deleted = 0
        self.reconnects = 0
        self.token_refreshes = 0
        self.tunnel_opens = {MAIN: 0, STEVE: 0}
        self.connected = {MAIN: 0, STEVE: 0}
        self.closed_traffic = Counter[str]()
        self.open_files = (0, 0, 0)
        self.server_error = ""

    # -- state records -------------------------------------------------------------------------------

    def _record_name(self, name: str) -> str:
        return f"{STATE_SUBDIR}/{name}.json"

    def load_record(self, index: int, name: str) -> ClusterRecord:
        """The saved record, or a fresh one; a write or removal still queued counts as done."""
        file_name = self._record_name(name)
        queued, data = self.records.pending(file_name)
        try:
            if queued:
                value = json.loads(data) if data is not None else None
            else:
                value = self.state.read_json(file_name)
        except (StateError, ValueError):
            value = None
        record = ClusterRecord(name=name, index=index)
        if value:
            record.rancher_url = str(value.get("rancher_url") or "")
            record.rancher_id = str(value.get("rancher_id") or "")
            record.connected_once = bool(value.get("connected_once"))
        return record

    def save_record(self, record: ClusterRecord) -> None:
        """Queue the record's current content for a write in a worker thread (encoded here, now).

        Failures are counted as "state write" errors in the progress line."""
        self.records.write(self._record_name(record.name), encode_json(asdict(record)))

    def forget_record(self, name: str) -> None:
        """Queue the record's removal, after any write of it still queued."""
        self.records.remove(self._record_name(name))

    # -- ownership -----------------------------------------------------------------------------------

    def owned(self, count: int | None = None) -> list[int]:
        shard = self.config.clusters.shard
        return list(range(shard.index, self.count if count is None else count, shard.count))

    def new_backoff(self) -> Backoff:
        mode = self.config.clusters.reconnect
        limiter = self.limiter if mode == JITTERED else None
        return Backoff(self.clock, mode=mode, limiter=limiter, rng=self.rng)

    # -- lifecycle -----------------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        super().startService()
        self.stopping = False
        self.started_at = self.clock.seconds()
        owned = self.owned()
        if self.raise_limit:
            self.open_files = raise_open_files_limit()
            old, new, hard = self.open_files
            allowed = clusters_allowed(new)
            log.info(
                "open files: soft limit {old} -> {new} (hard {hard}): room for about {allowed} clusters "
                "(two sockets each); this shard runs {owned}",
                old=old,
                new=new,
                hard=hard,
                allowed=allowed,
                owned=len(owned),
            )
            if allowed < len(owned):
                log.warn(
                    "open files: {owned} clusters need about {need} descriptors, the limit is {new}; raise "
                    "LimitNOFILE (systemd) or ulimit -n",
                    owned=len(owned),
                    need=2 * len(owned) + FDS_RESERVED,
                    new=new,
                )
        self._main = defer.ensureDeferred(self._run())
        self._main.addErrback(lambda f: f.trap(defer.CancelledError))
        self._main.addErrback(lambda f: log.failure("agent: startup failed", f))
        progress = task.LoopingCall(self._progress)
        progress.clock = self.clock
        progress.start(self.progress_interval, now=False).addErrback(
            lambda f: log.failure("agent: progress loop failed", f)
        )
        self._loops.append(progress)

    async def _run(self) -> None:
        backoff = Backoff(self.clock, initial=2.0, cap=60.0, rng=self.rng)
        while not self.stopping:
            try:
                self.server = await self.rancher.check_server()
                break
            except RancherError as failure:
                self.server_error = str(failure)
                delay = backoff()
                log.error("{error}; retrying in {delay:.0f}s", error=str(failure), delay=delay)
                await task.deferLater(self.clock, delay, lambda: None)
        if self.stopping:
            return
        self.server_error = ""
        insecure = self.config.rancher.insecure
        ca = self.server.cacerts.encode() if self.server.cacerts and not insecure else None
        host = urlsplit(self.config.rancher.url).hostname or ""
        self.tls_options = client_tls_options(host, ca_pem=ca, insecure=insecure)
        self.clusters = self._cluster_set_factory(self.server)
        if self.api_observer is not None and hasattr(self.clusters, "api_extras"):
            self.clusters.api_extras[OBSERVE] = self.api_observer
        self.clusters.start()
        self.ready = True
        poll = task.LoopingCall(self._poll)
        poll.clock = self.clock
        poll.start(self.poll_interval, now=False).addErrback(lambda f: log.failure("agent: poll failed", f))
        self._loops.append(poll)
        self._enqueue(self.owned())

    def _enqueue(self, indices: list[int]) -> None:
        fresh = [i for i in indices if i not in self.runners and i not in self._queue]
        self._queue.extend(fresh)
        if self._queue and (self._ramp is None or self._ramp.called):
            self._ramp = defer.ensureDeferred(self._ramp_up())
            self._ramp.addErrback(lambda f: f.trap(defer.CancelledError))
            self._ramp.addErrback(lambda f: log.failure("agent: ramp failed", f))

    async def _ramp_up(self) -> None:
        interval = 1.0 / self.config.clusters.ramp_per_second
        next_at = self.clock.seconds()
        while self._queue and not self.stopping:
            index = self._queue.pop(0)
            if index in self.runners or index >= self.count:
                continue
            await self._semaphore.acquire()
            if self.stopping or index >= self.count:
                self._semaphore.release()
                continue
            runner = ClusterRunner(self, index)
            self.runners[index] = runner
            registration = runner.start()
            registration.addBoth(self._release)
            next_at = max(next_at + interval, self.clock.seconds())
            wait = next_at - self.clock.seconds()
            if wait > 0:
                await task.deferLater(self.clock, wait, lambda: None)

    def _release(self, result: Any) -> Any:
        self._semaphore.release()
        return None

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        if self.stopping or not self.running:
            # A second stop (a parent stopping after an explicit stop) waits for the first one; never
            # hand out the same Deferred twice, a caller may chain it onto itself.
            waiter: defer.Deferred[None] = defer.Deferred()
            if self._stopped is None or self._stopped.called:
                waiter.callback(None)
            else:
                self._stopped.addBoth(lambda result: (waiter.callback(None), result)[1])
            return waiter
        self.stopping = True
        self._stopped = defer.ensureDeferred(self._stop())
        return self._stopped

    async def _stop(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        for pending in (self._ramp, self._main):
            if pending is not None and not pending.called:
                pending.cancel()
        self._queue.clear()
        runners = list(self.runners.values())
        if self.config.rancher.cleanup_on_stop and self.ready:
            await self._delete_all(runners)
        await defer.DeferredList(
            [defer.ensureDeferred(r.stop_tunnels()) for r in runners], consumeErrors=True
        )
        if self.clusters is not None:
            try:
                await defer.maybeDeferred(self.clusters.stop)
            except Exception:
                log.failure("agent: saving the clusters failed")
        if self.records.backlog:
            log.info("agent: writing {n} queued cluster records", n=self.records.backlog)
        await self.records.flush()
        await self.rancher.close()
        await defer.maybeDeferred(super().stopService)
        log.info("agent stopped: {n} clusters' tunnels closed", n=len(runners))

    async def _delete_all(self, runners: list[ClusterRunner]) -> None:
        """cleanup_on_stop: delete this process's clusters in Rancher, bounded in time."""
        semaphore = defer.DeferredSemaphore(self.concurrency)
        work = defer.DeferredList(
            [semaphore.run(lambda r=r: defer.ensureDeferred(r.remove(delete=True))) for r in runners],
            consumeErrors=True,
        )
        work.addTimeout(STOP_DELETE_TIMEOUT, self.clock)
        try:
            await work
        except defer.TimeoutError:
            log.warn("cleanup_on_stop: gave up deleting after {s}s", s=STOP_DELETE_TIMEOUT)
        log.info("cleanup_on_stop: {n} clusters deleted in Rancher", n=self.deleted)

    # -- run-time size -------------------------------------------------------------------------------

    async def resize(self, count: int) -> dict[str, Any]:
        """Grow or shrink the total cluster count (over all shards); returns what changed here."""
        if not 0 <= count <= MAX_CLUSTERS:
            raise ValueError(f"count must be between 0 and {MAX_CLUSTERS}")
        old, self.count = self.count, count
        added = [i for i in self.owned(count) if i not in self.runners]
        removed = sorted((i for i in self.runners if i >= count), reverse=True)
        self._queue = [i for i in self._queue if i < count]
        log.info("resize: count {old} -> {new}: {a} clusters to add, {r} to remove here",
                 old=old, new=count, a=len(added), r=len(removed))
        if self.ready:
            self._enqueue(added)
        runners = [self.runners.pop(i) for i in removed]
        await defer.DeferredList(
            [defer.ensureDeferred(r.remove(delete=True)) for r in runners], consumeErrors=True
        )
        return {"count": count, "added": len(added), "removed": [r.name for r in runners]}

    # -- tunnels bookkeeping -------------------------------------------------------------------------

    def tunnel_opened(self, tunnel: Tunnel) -> None:
        self.tunnel_opens[tunnel.kind] += 1
        self.connected[tunnel.kind] += 1

    def tunnel_closed(self, tunnel: Tunnel, protocol: Any) -> None:
        self.connected[tunnel.kind] -= 1
        for key, value in traffic(protocol).items():
            self.closed_traffic[key] += value

    def traffic_totals(self) -> Counter[str]:
        """Frames and bytes in and out over every tunnel ever (closed ones plus open ones).

        Plain sums in one pass: a scrape walks 10,000 tunnels, and a dict plus a Counter update per
        tunnel held the reactor for ~120 ms at 5,000 clusters."""
        sums = [0, 0, 0, 0]
        for runner in self.runners.values():
            for tunnel in runner.tunnels.values():
                if tunnel.protocol is not None:
                    for i, value in enumerate(_traffic_numbers(tunnel.protocol)):
                        sums[i] += value
        totals = Counter(self.closed_traffic)
        totals.update(dict(zip(TRAFFIC_KEYS, sums, strict=True)))
        return totals

    def virtual_connections(self) -> int:
        total = 0
        for runner in self.runners.values():
            for tunnel in runner.tunnels.values():
                session = getattr(tunnel.protocol, "session", None)
                if session is not None:
                    total += len(session.connections)
        return total

    # -- Rancher's view ------------------------------------------------------------------------------

    async def _poll_once(self) -> None:
        by_id = {r.record.rancher_id: r for r in self.runners.values() if r.record.rancher_id}
        if not by_id:
            return
        try:
            clusters = await self.rancher.list_clusters(self.config.clusters.name_prefix)
        except RancherError as failure:
            self.errors.note("state poll " + failure.summary, str(failure))
            return
        seen = set()
        for info in clusters:
            runner = by_id.get(info.id)
            if runner is not None:
                runner.rancher_state = info.state
                seen.add(info.id)
        for cluster_id, runner in by_id.items():
            if cluster_id not in seen:
                runner.rancher_state = "missing"

    def _poll(self) -> defer.Deferred[None]:
        now = self.clock.seconds()
        # Half a period of slack: ticks run a little late, and a poll due now must not wait a period.
        if now - self._last_poll < len(self.runners) * POLL_SECONDS_PER_CLUSTER - self.poll_interval / 2:
            return defer.succeed(None)
        self._last_poll = now
        d = defer.ensureDeferred(self._poll_once())
        d.addErrback(lambda f: log.failure("agent: state poll failed", f))
        return d

    # -- counts and progress -------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        states = Counter(r.rancher_state or "unknown" for r in self.runners.values())
        phases = Counter(r.phase for r in self.runners.values())
        return {
            "owned": len(self.owned()),
            "total": self.count,
            "shard": str(self.config.clusters.shard),
            "registered": sum(1 for r in self.runners.values() if r.phase in (CONNECTING, CONNECTED)),
            "connected_main": self.connected[MAIN],
            "connected_steve": self.connected[STEVE],
            "fully_connected": phases.get(CONNECTED, 0),
            "rancher_state": dict(states),
            "phase": dict(phases),
            "queued": len(self._queue),
        }

    def _progress(self) -> None:
        counts = self.counts()
        now = self.clock.seconds()
        owned = counts["owned"]
        active = counts["rancher_state"].get("active", 0)
        if owned and counts["fully_connected"] == owned and self.all_connected_at is None:
            self.all_connected_at = now
        if owned and active == owned and self.all_active_at is None:
            self.all_active_at = now
            log.info("all {n} clusters of this shard are active, {s:.1f}s after start",
                     n=owned, s=now - self.started_at)
        elif active < owned:
            self.all_active_at = None
        key = (
            counts["registered"], counts["connected_main"], counts["connected_steve"], active, self.reconnects
        )
        errors = self.errors.drain()
        steady = key == self._last_counts and not errors
        if steady and now - self._last_progress < STEADY_PROGRESS_INTERVAL:
            return
        elapsed = max(now - self.started_at, 1e-9)
        log.info(
            "progress: {registered}/{owned} registered, tunnels main {main} steve {steve}, {active} active "
            "in Rancher; {rate:.1f} registrations/s, {reconnects} reconnects{errors}",
            registered=counts["registered"],
            owned=owned,
            main=counts["connected_main"],
            steve=counts["connected_steve"],
            active=active,
            rate=self.registered / elapsed,
            reconnects=self.reconnects,
            errors=("; errors: " + errors) if errors else "",
        )
        if not self.ready and self.server_error:
            log.info("progress: waiting for Rancher: {error}", error=self.server_error)
        self._last_counts = key
        self._last_progress = now

    def runner_by_name(self, name: str) -> ClusterRunner | None:
        prefix = self.config.clusters.name_prefix
        if not name.startswith(prefix) or not name[len(prefix):].isdigit():
            return None
        return self.runners.get(int(name[len(prefix):]))


TRAFFIC_KEYS = ("bytes_in", "bytes_out", "frames_in", "frames_out")


def _traffic_numbers(protocol: Any) -> tuple[int, int, int, int]:
    """Wire bytes in and out, remotedialer messages in and out, of one tunnel protocol (0 if unknown)."""
    bytes_in = bytes_out = frames_in = frames_out = 0
    stats = getattr(protocol, "trafficStats", None)
    if stats is not None:
        bytes_in = stats.incomingOctetsWireLevel + stats.preopenIncomingOctetsWireLevel
        bytes_out = stats.outgoingOctetsWireLevel + stats.preopenOutgoingOctetsWireLevel
    session = getattr(protocol, "session", None)
    if session is not None:
        frames_in = session.stats.messages_received
        frames_out = session.stats.messages_sent
    return bytes_in, bytes_out, frames_in, frames_out


def traffic(protocol: Any) -> dict[str, int]:
    """Frames (remotedialer messages) and wire bytes of one tunnel protocol."""
    return dict(zip(TRAFFIC_KEYS, _traffic_numbers(protocol), strict=True))


def default_cluster_set_factory(config: AgentConfig, clock: Any) -> ClusterSetFactory:
    """A factory of the real `ClusterSet` (imported lazily: it builds apiservers)."""

    def make(server: ServerInfo) -> ClusterSetLike:
        from scaleagent.cluster.cluster import ClusterConfig, ClusterSet
        from scaleagent.cluster.template import RancherInfo

        rancher = RancherInfo(
            server_url=config.rancher.url,
            ca_checksum=server.checksum,
            agent_image=f"rancher/rancher-agent:{server.version}",
            server_version=server.version,
        )
        return ClusterSet(
            clock,
            ClusterConfig(
                address=config.apiserver.address,
                version=config.apiserver.version,
                anonymous=config.apiserver.anonymous,
                template=config.clusters.template,
                state_dir=config.state.dir,
                rancher=rancher,
            ),
        )

    return make


__all__ = [
    "AgentService",
    "ClusterRecord",
    "ClusterRunner",
    "ErrorTally",
    "PreparedEndpoint",
    "clusters_allowed",
    "raise_open_files_limit",
]
