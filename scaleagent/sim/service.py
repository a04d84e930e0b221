"""`RancherSim`: the stand-in as a Twisted service, for `twistd ranchersim`, tests and embedded mode.

    sim = await start_ranchersim(reactor)          # loopback, port 0, TLS with a fresh CA
    sim.url, sim.api_token, sim.ca_pem, sim.ca_checksum, sim.store
    await sim.stop()

One HTTPS listener serves both the v3 management API subset and the tunnel endpoint, as Rancher does.
State lives in memory; with `state_dir` its durable part (clusters, registration tokens, the API token:
what Rancher keeps in its datastore) is loaded at start and saved every `save_interval` seconds when it
changed and on a clean stop, so a restart is a Rancher restart: agents reconnect with the tokens they
have. Without it, restarting the stand-in forgets every cluster (a harsher fault an agent must survive).
"""

from __future__ import annotations

import hmac
import ipaddress
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.server import Site

from scaleagent.redact import logger
from scaleagent.sim import manifest, persist, tls
from scaleagent.sim.api import ManagementAPI, Root
from scaleagent.sim.saver import DEFAULT_INTERVAL, StateSaver
from scaleagent.sim.store import (
    CREATED,
    DEFAULT_GRACE_PERIOD,
    DEFAULT_TOKEN_NAME,
    ID_SUFFIX_LENGTH,
    MAIN,
    STEVE,
    TOKEN_LENGTH,
    Cluster,
    Readiness,
    SimStore,
    always_ready,
    random_string,
)
from scaleagent.sim.tunnel import SimTunnels
from scaleagent.state import PRIVATE, PUBLIC, CorruptStateFile, StateDir, StateError, atomic_write

log = logger()

DEFAULT_LISTEN = "tcp:0:interface=127.0.0.1"
DEFAULT_SERVER_VERSION = "v2.14.0"
API_TOKEN = re.compile(r"token-[a-z0-9]{5}:[A-Za-z0-9]{20,}")


def generate_api_token(rng: Any) -> str:
    """A Rancher API key, `token-xxxxx:<54 characters>`."""
    return f"token-{random_string(ID_SUFFIX_LENGTH, rng)}:{random_string(TOKEN_LENGTH, rng)}"


def _reuse_token(path: str | Path | None) -> str | None:
    """The API token already in `path`, so a restarted stand-in accepts the token agents were given."""
    if path is None:
        return None
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return text if API_TOKEN.fullmatch(text) else None


def _url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


class RancherSim(Service):
    """The stand-in: management API + tunnel endpoint on one listener, all state in memory."""

    def __init__(
        self,
        reactor: Any,
        *,
        listen: str = DEFAULT_LISTEN,
        use_tls: bool = True,
        hostnames: tuple[str, ...] = (),
        server_url: str | None = None,
        server_version: str = DEFAULT_SERVER_VERSION,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        readiness: Readiness = always_ready,
        api_token: str | None = None,
        rng: Any = None,
        ca_file: str | Path | None = None,
        token_file: str | Path | None = None,
        url_file: str | Path | None = None,
        tls_dir: str | Path | None = None,
        token_ttl: float | None = None,
        summary_interval: float = 10.0,
        token_delay: float = 0.0,
        with_local: bool = True,
        profile: str | None = None,
        ui_browsing: bool = False,
        driver_options: dict[str, Any] | None = None,
        state_dir: str | Path | None = None,
        save_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.reactor = reactor
        self._rng = rng if rng is not None else random.SystemRandom()
        self.listen_description = listen
        self.server_version = server_version
        self.store = SimStore(
            reactor, rng=self._rng, grace_period=grace_period, readiness=readiness, with_local=with_local
        )
        self.api_token = api_token or _reuse_token(token_file) or generate_api_token(self._rng)
        self.creator_id = "user-" + random_string(ID_SUFFIX_LENGTH, self._rng)
        self._configured_url = server_url.rstrip("/") if server_url else None
        self._hostnames = tuple(hostnames)
        self._use_tls = use_tls
        # A restarted Rancher keeps its CA too: with a state directory the CA lives there by default.
        if tls_dir is None and state_dir is not None:
            tls_dir = Path(state_dir) / "tls"
        self._tls_dir = tls_dir
        self.tls: tls.ServerTLS | None = None
        self._files = {"ca": ca_file, "token": token_file, "url": url_file}
        self.url = ""
        self.port: IListeningPort | None = None
        self._listening: defer.Deferred[None] | None = None
        self._listen_result: str | Failure | None = None
        self._waiters: list[defer.Deferred[str]] = []
        self.token_ttl = token_ttl
        self._ttl_loop: task.LoopingCall | None = None
        self.summary_interval = summary_interval
        self.token_delay = token_delay
        self._pending_tokens: dict[str, Any] = {}
        if token_delay > 0:
            # Rancher's controller creates `default-token` a moment after the cluster: clients must wait.
            self.store.default_token = False
            self.store.add_listener(self._schedule_default_token)
        self._summary_loop: task.LoopingCall | None = None
        self._last_summary: tuple[Any, ...] | None = None
        # Called with a deleted cluster before its sessions close; may return a Deferred.
        self.on_delete: Callable[[Cluster], Any] | None = None
        # twistd sets this: a stand-in that cannot listen should end, not idle.
        self.exit_on_listen_failure = False
        self.state_dir: StateDir | None = None
        self.saver: StateSaver | None = None
        if state_dir is not None:
            explicit = api_token or _reuse_token(token_file)
            self._load_state(state_dir, save_interval, explicit_api_token=explicit)
        self.api = ManagementAPI(self)
        self.tunnels = SimTunnels(reactor, self.store)
        self.site = Site(Root(self.api, self.tunnels.resource))
        # Rancher's traffic through each cluster's tunnels and its Active rule (None: tunnels decide).
        self.driver: Any = None
        if profile is not None:
            from scaleagent.sim.driver import TrafficDriver
            from scaleagent.sim.profiles import get_profile

            self.driver = TrafficDriver(
                self, get_profile(profile, ui_browsing=ui_browsing), **(driver_options or {})
            ).attach()
        self.site.displayTracebacks = False
        self.site.log = lambda request: None  # no access log: a ramp of thousands of clusters floods it
        self.site.noisy = False

    # -- durable state (--state-dir) -----------------------------------------------------------------

    def _load_state(self, path: str | Path, save_interval: float, explicit_api_token: str | None) -> None:
        """Restore the saved clusters and tokens (if any) and set up the saver.

        A state directory that cannot be used raises `StateError` (the start fails with its message);
        a state file that cannot be read or parsed is moved aside and logged, and the stand-in starts
        empty, as the first start does.
        """
        self.state_dir = StateDir(path)
        self.state_dir.cleanup_temporaries()
        snapshot = None
        try:
            snapshot = persist.load(self.state_dir)
        except StateError as error:
            # CorruptStateFile has been logged by StateDir.corrupt; an unreadable file has not.
            if not isinstance(error, CorruptStateFile):
                log.error("ranchersim: {message}; starting with no clusters", message=str(error))
            else:
                log.error("ranchersim: starting with no clusters (see the error above)")
        if snapshot is not None:
            self.store.restore(
                snapshot.clusters, snapshot.tokens, params_changes_total=snapshot.params_changes_total
            )
            if snapshot.creator_id:
                self.creator_id = snapshot.creator_id
            if snapshot.api_token and not explicit_api_token:
                self.api_token = snapshot.api_token
            elif snapshot.api_token != self.api_token:
                self.store.touch()  # the file holds another API token: save this one
            for cluster in self.store.clusters():
                if not self.store.tokens(cluster.id):  # saved before its default-token existed
                    if self.token_delay > 0:
                        self._schedule_default_token(CREATED, cluster)
                    else:
                        self.store.create_token(cluster.id, DEFAULT_TOKEN_NAME)
            log.info(
                "ranchersim: state loaded from {path}: {clusters} clusters, {tokens} registration tokens",
                path=str(self.state_dir.file(persist.STATE_FILE)),
                clusters=len(self.store.clusters()),
                tokens=len(self.store.tokens()),
            )
        self._encoder = persist.Encoder()
        if snapshot is not None:
            # Fill the encoder's cache now, before serving: otherwise the first save after a restart
            # (in a reconnect storm) would encode every cluster in the reactor thread (~0.2 s at 10,000).
            self._encode_state()
        self.saver = StateSaver(
            self.reactor,
            self.state_dir,
            persist.STATE_FILE,
            self._encode_state,
            lambda: self.store.revision,
            interval=save_interval,
            # restore() reset the revision to 0: anything since (tokens created above) is unsaved.
            saved_revision=0 if snapshot is not None else None,
        )

    def _encode_state(self) -> bytes:
        return self._encoder.encode(
            self.store, api_token=self.api_token, creator_id=self.creator_id, saved=self.reactor.seconds()
        )

    # -- what the API needs --------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        """Rancher's `server-url` setting: the URL agents are told to use."""
        return self._configured_url or self.url

    @property
    def cacerts(self) -> str:
        """The `cacerts` setting: the PEM of the CA that signed the serving certificate ("" without TLS)."""
        return self.tls.ca_pem if self.tls else ""

    @property
    def ca_pem(self) -> str:
        return self.cacerts

    @property
    def ca_checksum(self) -> str:
        """`CATTLE_CA_CHECKSUM` for this stand-in."""
        return manifest.ca_checksum(self.cacerts)

    def check_api_token(self, credential: str) -> bool:
        return hmac.compare_digest(credential.encode(), self.api_token.encode())

    def delete_cluster(self, cluster_id: str) -> Cluster:
        """Delete a cluster: it leaves the API at once (its tokens stop working), then its tunnel
        sessions are closed, after `on_delete(cluster)` (and its Deferred) if that hook is set, so the
        traffic driver can send Rancher's cleanup objects through the still-open tunnel first."""
        cluster = self.store.delete_cluster(cluster_id)
        if self.on_delete is None:
            self.tunnels.close_cluster(cluster)
            return cluster
        done = defer.maybeDeferred(self.on_delete, cluster)
        done.addErrback(
            lambda failure: log.failure("ranchersim: on_delete failed for {id}", failure, id=cluster.id)
        )
        done.addBoth(lambda _: self.tunnels.close_cluster(cluster))
        return cluster

    def disconnect_cluster(self, cluster_id: str) -> int:
        """Close every tunnel session of a cluster (fault injection); returns how many were closed."""
        return self.tunnels.close_cluster(self.store.get_cluster(cluster_id))

    # -- lifecycle -----------------------------------------------------------------------------------

    def _hosts(self, bound_host: str) -> list[str]:
        hosts = list(self._hostnames)
        if self._configured_url:
            from urllib.parse import urlsplit

            configured = urlsplit(self._configured_url).hostname
            if configured:
                hosts.append(configured)
        if bound_host not in ("0.0.0.0", "::"):
            hosts.append(bound_host)
        hosts += ["localhost", "127.0.0.1", "::1"]
        return hosts

    async def listen(self) -> str:
        """Start listening; returns the URL (`https://127.0.0.1:<port>`)."""
        endpoint = serverFromString(self.reactor, self.listen_description)
        # The certificate must name the bound host, which is only known from the description; parse the
        # interface out of it before listening, so the listener starts with its final certificate.
        interface = "127.0.0.1"
        for part in self.listen_description.split(":")[1:]:
            if part.startswith("interface="):
                interface = part[len("interface=") :].replace("\\", "")
        factory: Any = self.site
        if self._use_tls:
            self.tls = tls.load_or_generate(self._hosts(interface), self._tls_dir)
            factory = TLSMemoryBIOFactory(self.tls.options(), False, self.site, clock=self.reactor)
        self.port = await endpoint.listen(factory)
        address = self.port.getHost()
        if not isinstance(address, (IPv4Address, IPv6Address)):
            port, self.port = self.port, None
            await port.stopListening()
            raise ValueError(f"--listen {self.listen_description!r}: expected a TCP endpoint")
        host = address.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        scheme = "https" if self._use_tls else "http"
        self.url = f"{scheme}://{_url_host(host)}:{address.port}"
        self._write_files()
        log.info(
            "ranchersim: serving Rancher's API and tunnel endpoint on {url} (server-url {server_url})",
            url=self.url,
            server_url=self.server_url,
        )
        return self.url

    def _write_files(self) -> None:
        if self._files["ca"]:
            atomic_write(Path(self._files["ca"]), self.cacerts.encode(), mode=PUBLIC)
        if self._files["token"]:
            atomic_write(Path(self._files["token"]), (self.api_token + "\n").encode(), mode=PRIVATE)
        if self._files["url"]:
            atomic_write(Path(self._files["url"]), (self.server_url + "\n").encode(), mode=PUBLIC)

    def _start_listening(self) -> None:
        if self._listening is None:
            self._listening = defer.ensureDeferred(self.listen())
            self._listening.addBoth(self._listen_done)

    def privilegedStartService(self) -> None:  # noqa: N802 (Twisted's name)
        """twistd calls this before the reactor runs: binding here lets a busy port end the start
        with one line and a non-zero exit instead of an idle process."""
        super().privilegedStartService()
        self._start_listening()
        if self.exit_on_listen_failure and isinstance(self._listen_result, Failure):
            error = self._listen_result.getErrorMessage()
            raise SystemExit(f"ranchersim: cannot listen on {self.listen_description}: {error}")

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        super().startService()
        self._start_listening()
        if self.saver is not None:
            self.saver.start()
        if self.summary_interval > 0:
            self._summary_loop = task.LoopingCall(self.log_summary)
            self._summary_loop.clock = self.reactor
            self._summary_loop.start(self.summary_interval, now=False)
        if self.token_ttl:
            # Rancher's CRT TTL rotation: each token gets a new value once it is older than the TTL.
            self._ttl_loop = task.LoopingCall(self._rotate_expired)
            self._ttl_loop.clock = self.reactor
            self._ttl_loop.start(min(self.token_ttl / 4, 60.0), now=False)

    def _schedule_default_token(self, event: str, cluster: Cluster) -> None:
        if event == CREATED:
            call = self.reactor.callLater(self.token_delay, self._create_default_token, cluster)
            self._pending_tokens[cluster.id] = call

    def _create_default_token(self, cluster: Cluster) -> None:
        self._pending_tokens.pop(cluster.id, None)
        if not cluster.removed and not self.store.tokens(cluster.id):
            self.store.create_token(cluster.id, DEFAULT_TOKEN_NAME)

    def summary(self) -> dict[str, Any]:
        """Counts for logs and status: clusters per state, tunnels, refusals, params changes."""
        clusters = self.store.clusters()
        return {
            "clusters": len(clusters),
            **self.store.counts(),
            "main_tunnels": sum(1 for c in clusters if c.connected(MAIN)),
            "steve_tunnels": sum(1 for c in clusters if c.connected(STEVE)),
            "tunnels_accepted": self.tunnels.accepted,
            "tunnels_refused": self.tunnels.refused,
            "params_changes": self.store.params_changes_total,
            "api_requests": self.api.requests,
        }

    def status(self) -> dict[str, Any]:
        """`GET /sim/status`: counts, the driver's summary and its raw latency histograms per kind."""
        status: dict[str, Any] = {"sim": self.summary(), "driver": self.driver_summary()}
        if self.driver is not None:
            status.update(self.driver.records.status())
        return status

    def cut_all_tunnels(self) -> int:
        """Drop every tunnel WebSocket without a close handshake (a network failure); how many."""
        server = self.tunnels.server
        protocols = [p for key in server.client_keys() for p in server.protocols(key)]
        for protocol in protocols:
            protocol.cut()
        return len(protocols)

    def driver_summary(self) -> dict[str, Any] | None:
        """The traffic driver's figures (requests, failures, latency), or None without a driver."""
        return self.driver.summary() if self.driver is not None else None

    def log_summary(self, force: bool = False) -> None:
        """One line with the counts, when they changed (per-cluster events are debug-level)."""
        figures = self.summary()
        key = tuple(value for name, value in figures.items() if name != "api_requests")
        if self.driver is not None:
            key = (*key, self.driver.records.failures, self.driver.setups_done)
        if not force and key == self._last_summary:
            return
        self._last_summary = key
        log.info(
            "ranchersim: {clusters} clusters: {active} active, {pending} pending, {unavailable} unavailable; "
            "tunnels main {main_tunnels} steve {steve_tunnels}; accepted {tunnels_accepted}, refused "
            "{tunnels_refused}; params changes {params_changes}; API requests {api_requests}",
            **figures,
        )
        if self.driver is not None:
            self.driver.log_summary()

    def _rotate_expired(self) -> None:
        assert self.token_ttl is not None
        rotated = self.store.rotate_expired(self.token_ttl)
        if rotated:
            log.info(
                "ranchersim: {n} registration tokens rotated (TTL {ttl}s)", n=rotated, ttl=self.token_ttl
            )

    def _listen_done(self, result: Any) -> None:
        if isinstance(result, Failure) and not result.check(defer.CancelledError):
            if self.exit_on_listen_failure:
                # Reported by privilegedStartService when it fails at once; otherwise end the process.
                if self.reactor.running:
                    log.error(
                        "ranchersim: cannot listen on {listen}: {error}",
                        listen=self.listen_description,
                        error=result.getErrorMessage(),
                    )
                    self.reactor.stop()
            else:
                log.failure("ranchersim: cannot listen on {listen}", result, listen=self.listen_description)
        self._listen_result = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fire(waiter)

    def _fire(self, waiter: defer.Deferred[str]) -> None:
        if isinstance(self._listen_result, Failure):
            waiter.errback(self._listen_result)
        else:
            waiter.callback(self._listen_result)

    def when_listening(self) -> defer.Deferred[str]:
        """Fires with the URL once listening, or fails if listening failed (after `startService`)."""
        if self._listening is None:
            raise RuntimeError("RancherSim is not started")
        waiter: defer.Deferred[str] = defer.Deferred()
        if self._listen_result is None:
            self._waiters.append(waiter)
        else:
            self._fire(waiter)
        return waiter

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        super().stopService()
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._listen_result is not None and not isinstance(self._listen_result, Failure):
            self.log_summary(force=True)
        for call in self._pending_tokens.values():
            if call.active():
                call.cancel()
        self._pending_tokens.clear()
        for loop in (self._ttl_loop, self._summary_loop):
            if loop is not None and loop.running:
                loop.stop()
        if self._listening is not None and not self._listening.called:
            self._listening.cancel()
        if self.driver is not None:
            self.driver.stop()
        self.tunnels.close_all()
        if self.port is not None:
            port, self.port = self.port, None
            # None when the port is already closed (e.g. the reactor is shutting down).
            await defer.maybeDeferred(port.stopListening)
        await self.tunnels.wait_closed()
        if self.saver is not None:
            await self.saver.stop()

    async def stop(self) -> None:
        """Stop serving and close every tunnel (for code that started the stand-in itself)."""
        if self.running:
            await self.stopService()


async def start_ranchersim(reactor: Any, **kwargs: Any) -> RancherSim:
    """Create a `RancherSim` with `kwargs`, start it, and return it once it listens."""
    sim = RancherSim(reactor, **kwargs)
    sim.startService()
    try:
        await sim.when_listening()
    except BaseException:
        await sim.stopService()
        raise
    return sim
