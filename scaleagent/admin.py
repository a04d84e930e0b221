"""The admin HTTP API of one agent process: cluster status, run-time resize, health, Prometheus metrics.

    GET  /healthz               200 {"status": "ok", "ready": bool, "rancher_error": str|null}
    GET  /clusters              {"clusters": [{name, index, rancher_id, tunnels, rancher_state, last_error,
                                 ...}], "counts": {...}}
    GET  /clusters/<name>       one cluster, 404 if this process does not run it
    POST /clusters              {"count": N}: grow or shrink the total count (all shards) → what changed
    GET  /metrics               Prometheus text format, names prefixed scaleagent_
    GET  /, /status, /churn     status page, its JSON, churn and faults (`scaleagent.status_page`)

Reads are open; requests that change anything need `Authorization: Bearer <token>` when
`[admin] token_file` is set (compared in constant time), and the listener refuses a non-loopback address
without one. Metrics are computed at scrape time from the agent's counters by a custom collector and
rendered with `generate_latest` in the reactor thread (no WSGI thread pool); apiserver request
metrics are fed through `ApiserverMetrics.observe`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from scaleagent.redact import Secret, logger

log = logger()

JSON = b"application/json"
MAX_BODY = 64 * 1024
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, indent=None, separators=(",", ":")).encode() + b"\n"


def json_response(request: Request, code: int, value: Any) -> bytes:
    """`value` as the admin API's JSON answer (never cached) with status `code`."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", JSON)
    request.setHeader(b"cache-control", b"no-store")
    return dumps(value)


class ApiserverMetrics:
    """Request counters and latency of every simulated apiserver of the process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "scaleagent_apiserver_requests",
            "Requests served by the simulated apiservers.",
            ["verb", "resource", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "scaleagent_apiserver_request_duration_seconds",
            "Time to answer a simulated apiserver request (watches: until the stream starts).",
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        self.requests.labels(verb, resource, str(code)).inc()
        self.latency.labels(verb).observe(seconds)


class AgentCollector:
    """Reads the agent's state at scrape time."""

    def __init__(self, agent: Any) -> None:
        self._agent = agent

    def describe(self) -> list[Any]:
        return []  # computed per scrape; nothing to pre-register

    def collect(self) -> Any:
        agent = self._agent
        counts = agent.counts()
        clusters = GaugeMetricFamily(
            "scaleagent_clusters", "Clusters of this process by Rancher's state.", labels=["rancher_state"]
        )
        for state, n in sorted(counts["rancher_state"].items()):
            clusters.add_metric([state], n)
        yield clusters
        owned = GaugeMetricFamily("scaleagent_clusters_owned", "Clusters this shard should run.")
        owned.add_metric([], counts["owned"])
        yield owned
        tunnels = GaugeMetricFamily(
            "scaleagent_tunnels_connected", "Open tunnels by kind.", labels=["tunnel"]
        )
        tunnels.add_metric(["main"], counts["connected_main"])
        tunnels.add_metric(["steve"], counts["connected_steve"])
        yield tunnels
        peak = GaugeMetricFamily(
            "scaleagent_reconnect_window_peak",
            "Most tunnel attempts after the first admitted within one limiter window (1 s when "
            "reconnect_per_second >= 1) since the start; the limit is reconnect_per_second.",
        )
        peak.add_metric([], agent.limiter.peak)
        yield peak
        for name, value, text in (
            ("scaleagent_reconnects", agent.reconnects, "Tunnel connection attempts after the first."),
            ("scaleagent_registrations", agent.registered, "Clusters registered with Rancher."),
            ("scaleagent_adoptions", agent.adopted, "Same-name clusters adopted instead of created."),
            ("scaleagent_reimports", agent.reimported, "Clusters imported again after Rancher lost them."),
            ("scaleagent_deletions", agent.deleted, "Clusters deleted in Rancher."),
            ("scaleagent_token_refreshes", agent.token_refreshes, "Registration tokens re-read."),
            ("scaleagent_errors", agent.errors.total, "Per-cluster errors (API calls, refused tunnels)."),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], value)
            yield counter
        traffic = agent.traffic_totals()
        frames = CounterMetricFamily(
            "scaleagent_tunnel_frames", "Remotedialer messages over all tunnels.", labels=["direction"]
        )
        frames.add_metric(["in"], traffic.get("frames_in", 0))
        frames.add_metric(["out"], traffic.get("frames_out", 0))
        yield frames
        octets = CounterMetricFamily(
            "scaleagent_tunnel_bytes", "WebSocket bytes on the wire over all tunnels.", labels=["direction"]
        )
        octets.add_metric(["in"], traffic.get("bytes_in", 0))
        octets.add_metric(["out"], traffic.get("bytes_out", 0))
        yield octets
        virtual = GaugeMetricFamily(
            "scaleagent_virtual_connections_open", "Connections Rancher has open inside the tunnels."
        )
        virtual.add_metric([], agent.virtual_connections())
        yield virtual
        watches = GaugeMetricFamily(
            "scaleagent_watches_open", "Watch streams open on the simulated apiservers."
        )
        watches.add_metric([], watches_open(agent.clusters))
        yield watches


def watches_open(clusters: Any) -> int:
    """Open watches over every materialized cluster (clusters never asked for hold none)."""
    if clusters is None:
        return 0
    total = 0
    try:
        for cluster in clusters:
            if getattr(cluster, "materialized", False):
                total += cluster.store.watcher_count()
    except TypeError:
        return 0
    return total


def metrics_registry(agent: Any) -> tuple[CollectorRegistry, ApiserverMetrics]:
    """A registry of this agent's metrics only (not the process-global default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    return registry, ApiserverMetrics(registry)


class AdminResource(Resource):
    """One leaf routing every admin path, so every answer is JSON with a clear error."""

    isLeaf = True

    def __init__(self, agent: Any, token: Secret | None, registry: CollectorRegistry) -> None:
        super().__init__()
        self._agent = agent
        self._token = token
        self._registry = registry

    def render(self, request: Request) -> bytes | int:
        path = request.path.decode("utf-8", "replace").rstrip("/") or "/"
        method = request.method.decode("ascii", "replace")
        try:
            return self._route(request, method, path)
        except Exception:
            log.failure("admin: {method} {path} failed", method=method, path=path)
            return self._json(request, 500, {"error": "internal error"})

    def _json(self, request: Request, code: int, value: Any) -> bytes:
        return json_response(request, code, value)

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self._token.reveal().encode())

    def _route(self, request: Request, method: str, path: str) -> bytes | int:
        agent = self._agent
        if path == "/healthz" and method in ("GET", "HEAD"):
            return self._json(
                request,
                200,
                {"status": "ok", "ready": bool(agent.ready), "rancher_error": agent.server_error or None},
            )
        if path == "/metrics" and method in ("GET", "HEAD"):
            request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
            return generate_latest(self._registry)
        if path == "/clusters":
            if method in ("GET", "HEAD"):
                runners = sorted(agent.runners.values(), key=lambda r: r.index)
                return self._json(
                    request, 200, {"clusters": [r.to_json() for r in runners], "counts": agent.counts()}
                )
            if method == "POST":
                return self._resize(request)
            return self._json(request, 405, {"error": f"method {method} not allowed on /clusters"})
        if path.startswith("/clusters/") and method in ("GET", "HEAD"):
            runner = agent.runner_by_name(path[len("/clusters/") :])
            if runner is None:
                return self._json(request, 404, {"error": "no such cluster in this process"})
            return self._json(request, 200, runner.to_json())
        return self._json(request, 404, {"error": f"not found: {method} {path}"})

    def _resize(self, request: Request) -> bytes | int:
        if not self._authorized(request):
            request.setHeader(b"www-authenticate", b'Bearer realm="scaleagent"')
            return self._json(
                request, 401, {"error": "this change needs the admin token (Authorization: Bearer)"}
            )
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            return self._json(request, 413, {"error": "body too large"})
        try:
            body = json.loads(raw)
            count = body["count"]
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._json(request, 400, {"error": 'expected a JSON body {"count": <whole number>}'})
        try:
            d = defer.ensureDeferred(self._agent.resize(count))
        except ValueError as error:
            return self._json(request, 400, {"error": str(error)})

        def done(result: Any) -> None:
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(self._json(request, 200, result))
                request.finish()

        def failed(failure: Any) -> None:
            code = 400 if failure.check(ValueError) else 500
            if code == 500:
                log.failure("admin: resize failed", failure)
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(self._json(request, code, {"error": str(failure.value)}))
                request.finish()

        d.addCallbacks(done, failed)
        return NOT_DONE_YET


def admin_site(agent: Any, token: Secret | None) -> tuple[Site, ApiserverMetrics]:
    from scaleagent.status_page import extend_admin  # GET /, /status, /churn (issue 12)

    registry, apiserver = metrics_registry(agent)
    site = Site(extend_admin(AdminResource(agent, token, registry), agent, registry))
    site.displayTracebacks = False
    site.noisy = False
    return site, apiserver


def is_loopback_listen(description: str) -> bool:
    """Whether a Twisted endpoint string listens on loopback only (or a unix socket)."""
    if description.startswith("unix:"):
        return True
    for part in description.replace("\\:", "\0").split(":")[1:]:
        if part.startswith("interface="):
            host = part[len("interface=") :].replace("\0", ":")
            try:
                return ipaddress.ip_address(host).is_loopback
            except ValueError:
                return host == "localhost"
    return False


class AdminService(Service):
    """Listens on `[admin] listen`; refuses a non-loopback address without a token."""

    def __init__(self, reactor: Any, agent: Any, listen: str, token: Secret | None) -> None:
        if token is None and not is_loopback_listen(listen):
            raise ValueError(f"[admin] listen = {listen!r}: not loopback, so [admin] token_file is required")
        self._reactor = reactor
        self.listen = listen
        self.site, self.apiserver_metrics = admin_site(agent, token)
        self.port: Any = None
        self._listening: defer.Deferred[Any] | None = None

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        super().startService()
        self._listening = serverFromString(self._reactor, self.listen).listen(self.site)
        self._listening.addCallback(self._listened)
        self._listening.addErrback(self._listen_failed)

    def _listen_failed(self, failure: Any) -> None:
        log.error("admin: cannot listen on {listen}: {error}", listen=self.listen, error=str(failure.value))

    def _listened(self, port: Any) -> None:
        self.port = port
        log.info("admin API on {address}", address=port.getHost())

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return defer.maybeDeferred(port.stopListening)
        return defer.succeed(None)


__all__ = ["AdminResource", "AdminService", "ApiserverMetrics", "admin_site", "metrics_registry"]
