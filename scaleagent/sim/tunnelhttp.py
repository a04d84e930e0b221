"""HTTP through a cluster's tunnels, as Rancher's clients send it, with every request recorded.

Main tunnel: `https://<params address>` over `CONNECT tcp/<address>`, TLS verified against the CA the
cluster announced and the address host (Rancher's REST config), HTTP/1.1 keep-alive, bearer token =
the params token. Steve tunnel: plain `http://not-used/...`, one connection per request (steve
disables keep-alive).

One `TunnelHTTP` per stand-in holds what is shared: the TLS client options per (host, CA), the
records. Per cluster there is one small `ClusterHTTP` (two twisted.web Agents and a keep-alive pool).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, _HTTP11ClientFactory
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from scaleagent.remotedialer.server import TunnelAgentEndpoints, TunnelServer
from scaleagent.sim.records import TRANSPORT, Records
from scaleagent.sim.tunnel import main_key, steve_key

REQUEST_TIMEOUT = 45.0  # Rancher's REST config timeout
PING_TIMEOUT = 15.0
ACCEPT = b"application/vnd.kubernetes.protobuf, application/json"
MAX_LINE = 16 * 1024 * 1024


class _QuietFactory(_HTTP11ClientFactory):
    noisy = False  # no "Starting factory" line per connection: thousands of clusters


class QuietPool(HTTPConnectionPool):
    """A connection pool whose per-connection factories do not log."""

    _factory = _QuietFactory


@dataclass
class Answer:
    """An HTTP answer (status 0: none came; `error` says why)."""

    status: int
    body: bytes = b""
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class TunnelHTTP:
    """What every cluster's client shares: TLS options per (host, CA), records, user agent."""

    def __init__(
        self,
        reactor: Any,
        server: TunnelServer,
        records: Records,
        *,
        server_version: str,
        scheduler: Any = None,
    ) -> None:
        self.reactor = reactor
        # Long-lived timers (the guard of every open watch) go on the driver's one scheduler.
        self.scheduler = scheduler
        self.server = server
        self.records = records
        self.server_version = server_version
        self._tls: dict[tuple[str, str], Any] = {}

    def tls_for(self, host: str, ca_cert_b64: str) -> Any:
        """Client TLS trusting only the cluster's CA, verifying `host` (an IP or a name)."""
        key = (host, ca_cert_b64)
        options = self._tls.get(key)
        if options is None:
            if len(self._tls) > 64:  # bounded: one CA per agent process in practice
                self._tls.clear()
            pem = base64.b64decode(ca_cert_b64)
            options = optionsForClientTLS(
                host, trustRoot=Certificate.loadPEM(pem), acceptableProtocols=[b"http/1.1"]
            )
            self._tls[key] = options
        return options

    def user_agent(self, cluster_name: str) -> bytes:
        return f"rancher/{self.server_version} (linux/amd64) kubernetes/v1.32 cluster {cluster_name}".encode()


class _Lines(Protocol):
    """A watch body: one JSON event per line, handed to `on_event`; `done` fires when it ends."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        self._on_event = on_event
        self._buffer = b""
        self.done: defer.Deferred[str] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                self._event(line)
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
            self.stop()

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict):
            self._on_event(event)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        if self._buffer.strip():
            self._event(self._buffer)
        self._buffer = b""
        if not self.done.called:
            self.done.callback("closed" if reason.check(ResponseDone) else reason.getErrorMessage())

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class _Body(Protocol):
    """Collects a response body (readBody without its deprecation warning on virtual transports)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._parts.append(data)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(reason)


def read_body(response: Any) -> defer.Deferred[bytes]:
    body = _Body()
    response.deliverBody(body)
    return body.done


class Watch:
    """An open watch stream; `done` fires with "closed" (server ended it) or an error text."""

    def __init__(self, lines: _Lines) -> None:
        self._lines = lines
        self.done = lines.done

    def cancel(self) -> None:
        self._lines.stop()


class ClusterHTTP:
    """One cluster's clients: main tunnel (TLS, keep-alive) and steve tunnel (plain, one-shot)."""

    def __init__(
        self, shared: TunnelHTTP, cluster_id: str, cluster_name: str, address: str, token: str, ca_cert: str
    ) -> None:
        self.shared = shared
        self.cluster_id = cluster_id
        self.base = f"https://{address}".encode()
        self._auth = f"Bearer {token}".encode()
        self._ua = shared.user_agent(cluster_name)
        reactor = shared.reactor
        self.pool = QuietPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 4
        self.pool.retryAutomatically = False
        self._main: Agent | None = None
        if address:  # the main tunnel's client (the steve-only client of a cluster has none)
            host = address.rsplit(":", 1)[0].strip("[]")
            endpoints = TunnelAgentEndpoints(
                shared.server, main_key(cluster_id), lambda _: shared.tls_for(host, ca_cert)
            )
            self._main = Agent.usingEndpointFactory(reactor, endpoints, pool=self.pool)
        self._steve = Agent.usingEndpointFactory(
            reactor,
            TunnelAgentEndpoints(shared.server, steve_key(cluster_id)),
            pool=QuietPool(reactor, persistent=False),
        )

    def close(self) -> defer.Deferred[None]:
        return self.pool.closeCachedConnections()

    def _headers(self, extra: dict[str, str] | None, content_type: str | None, accept: bytes) -> Headers:
        headers = Headers({b"Authorization": [self._auth], b"User-Agent": [self._ua], b"Accept": [accept]})
        if content_type:
            headers.setRawHeaders(b"Content-Type", [content_type.encode()])
        for name, value in (extra or {}).items():
            headers.setRawHeaders(name.encode(), [value.encode()])
        return headers

    async def request(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        accept: bytes = ACCEPT,
        ok: tuple[int, ...] = (200,),
        steve: bool = False,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Answer:
        """Send one request through the tunnel; record it; an unexpected 4xx/5xx is a failure."""
        reactor = self.shared.reactor
        records = self.shared.records
        started = reactor.seconds()
        if steve:
            url = b"http://not-used" + path.encode()
            request_headers = Headers({b"User-Agent": [self._ua]})
            agent = self._steve
        else:
            url = self.base + path.encode()
            request_headers = self._headers(headers, content_type, accept)
            agent = self._main
        if agent is None:
            raise ValueError("this client has no main tunnel address")
        producer = _Bytes(body) if body is not None else None
        try:
            d = agent.request(method.encode(), url, request_headers, producer)
            d.addTimeout(timeout, reactor)
            response = await d
            rd = read_body(response)
            rd.addTimeout(timeout, reactor)
            data = await rd
        except Exception as error:  # tunnel gone, TLS failure, refused connect, timeout
            records.record(kind, TRANSPORT, reactor.seconds() - started)
            return Answer(TRANSPORT, error=_describe(error))
        status = response.code
        records.record(kind, status, reactor.seconds() - started)
        if status not in ok and status >= 400:
            records.failure(
                reactor.seconds(),
                self.cluster_id,
                kind,
                method,
                path,
                status,
                data.decode("utf-8", "replace"),
            )
        return Answer(status, data)

    async def watch(
        self, kind: str, path: str, on_event: Callable[[dict[str, Any]], None], *, timeout: float
    ) -> Watch | Answer:
        """Open a watch stream: a `Watch` when the server answered 200, else the `Answer`."""
        reactor = self.shared.reactor
        records = self.shared.records
        started = reactor.seconds()
        if self._main is None:
            raise ValueError("this client has no main tunnel address")
        try:
            d = self._main.request(b"GET", self.base + path.encode(), self._headers(None, None, ACCEPT))
            d.addTimeout(REQUEST_TIMEOUT, reactor)
            response = await d
        except Exception as error:
            records.record(kind, TRANSPORT, reactor.seconds() - started)
            return Answer(TRANSPORT, error=_describe(error))
        records.record(kind, response.code, reactor.seconds() - started)
        if response.code != 200:
            try:
                data = await read_body(response)
            except Exception:
                data = b""
            records.failure(
                reactor.seconds(),
                self.cluster_id,
                kind,
                "GET",
                path,
                response.code,
                data.decode("utf-8", "replace"),
            )
            return Answer(response.code, data)
        lines = _Lines(on_event)
        response.deliverBody(lines)
        watch = Watch(lines)
        # A stuck stream is cut a while after the server should have ended it.
        scheduler = self.shared.scheduler
        if scheduler is not None:
            guard = scheduler.after(timeout + 30.0, watch.cancel)
            lines.done.addBoth(lambda result: (guard.cancel(), result)[1])
        else:
            call = reactor.callLater(timeout + 30.0, watch.cancel)
            lines.done.addBoth(lambda result: (call.cancel() if call.active() else None, result)[1])
        return watch


@implementer(IBodyProducer)
class _Bytes:
    """A request body written at once (no Cooperator timer per request, unlike FileBodyProducer)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802
        consumer.write(self._data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


def _describe(error: BaseException) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() for r in reasons)
    return f"{type(error).__name__}: {error}"


__all__ = ["Answer", "ClusterHTTP", "TunnelHTTP", "Watch"]
