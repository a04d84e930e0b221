"""The client (agent) end of a tunnel: an autobahn WebSocket client bound to a client-role Session.

One `TunnelClientFactory` per tunnel carries the URL, the handshake headers, the resolver that says what
each CONNECT reaches, and how to trust the server's certificate; `factory.endpoint()` is the matching
Twisted endpoint, so a caller can hand both to `ClientService` (with its own retry policy) or use
`connect_tunnel` for one attempt.

Wire behaviour, as the Go agent: binary messages only (a text message ends the session), no
permessage-deflate, no autobahn auto-ping (remotedialer answers pings with an empty pong, which
autobahn's auto-ping treats as a timeout); instead the session pings with an empty payload every 5 s
and sends SYNC_CONNECTIONS every 60 s.  A refused handshake is reported with its HTTP status (autobahn
gives us the status line; the body is kept when it arrived with the headers).  When the WebSocket
closes, every virtual connection sees `connectionLost`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, ssl
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from scaleagent.redact import logger
from scaleagent.remotedialer.session import (
    KEEPALIVE_TIMEOUT,
    PING_INTERVAL,
    SYNC_INTERVAL,
    Resolver,
    Session,
)
from scaleagent.tlsbuffers import wrap_client_tls

__all__ = [
    "TunnelClientFactory",
    "TunnelClientProtocol",
    "TunnelEnded",
    "TunnelRefused",
    "client_tls_options",
    "connect_tunnel",
]

log = logger()


class TunnelRefused(Exception):
    """The server answered the WebSocket handshake with an HTTP error (Rancher: 400 or 401)."""

    def __init__(self, status: int | None, reason: str, body: bytes = b"") -> None:
        super().__init__(f"tunnel refused: HTTP {status}: {reason}" + (f" ({body[:200]!r})" if body else ""))
        self.status = status
        self.reason = reason
        self.body = body


@dataclass(frozen=True)
class TunnelEnded:
    """How a tunnel's WebSocket ended, for the caller's reconnect policy."""

    opened: bool
    """Whether the WebSocket had opened (False: TLS, handshake or refusal failure)."""
    status: int | None
    """HTTP status of a refused handshake (400, 401, ...), else None."""
    reason: str
    code: int | None
    """WebSocket close code (1006 when the connection just dropped)."""
    was_clean: bool
    body: bytes = b""
    """Body of a refused handshake, when it arrived with the headers."""


@implementer(IPushProducer)
class _WebSocketProducer:
    """Registered on the WebSocket's transport: its send buffer pauses and resumes every connection."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def pauseProducing(self) -> None:
        self._session.pause_writing()

    def resumeProducing(self) -> None:
        self._session.resume_writing()

    def stopProducing(self) -> None:
        """The WebSocket is closing; onClose ends the session."""


def register_write_producer(protocol: Any, session: Session) -> None:
    """Register the session's fan-out producer on a WebSocket protocol's transport.

    A server protocol inherits a transport on which the HTTP channel it replaced registered itself;
    that channel is gone, so it is unregistered first."""
    producer = _WebSocketProducer(session)
    transport = protocol.transport
    try:
        transport.registerProducer(producer, True)
    except RuntimeError:
        transport.unregisterProducer()
        transport.registerProducer(producer, True)


class TunnelClientProtocol(WebSocketClientProtocol):
    """One tunnel connection.  `opened` fires with the protocol once the WebSocket is open (or fails
    with `TunnelRefused` / the connection error); `ended` fires with a `TunnelEnded` when it is gone."""

    factory: TunnelClientFactory

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.opened: defer.Deferred[TunnelClientProtocol] = defer.Deferred()
        self.ended: defer.Deferred[TunnelEnded] = defer.Deferred()
        self._refusal: TunnelRefused | None = None

    # -- handshake

    def failHandshake(self, reason: str) -> None:
        status_line = getattr(self, "http_status_line", None)
        status: int | None = None
        body = b""
        if status_line:
            parts = status_line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                status = int(parts[1])
            end = self.data.find(b"\r\n\r\n")
            if end >= 0:
                body = bytes(self.data[end + 4 :])
                headers = getattr(self, "http_headers", {}) or {}
                if "chunked" in headers.get("transfer-encoding", ""):
                    body = _unchunk(body)
        if status is not None and status != 101:
            self._refusal = TunnelRefused(status, reason, body)
            log.warn(
                "tunnel {name}: handshake refused with HTTP {status}: {body}",
                name=self.factory.name,
                status=status,
                body=body[:200].decode("utf-8", "replace"),
            )
        super().failHandshake(reason)

    def onOpen(self) -> None:
        # The handshake's texts are of no use once open; a process holds thousands of tunnels for days.
        self.http_request_data = self.http_response_data = b""
        self.http_headers = {}
        factory = self.factory
        host = self.transport.getHost()
        peer = self.transport.getPeer()
        self.session = Session(
            client=True,
            send=self._send_message,
            clock=factory.reactor,
            resolver=factory.resolver,
            ping=self._send_ping,
            disconnect=self._drop,
            name=factory.name,
            local_address=host,
            remote_address=peer,
            ping_interval=factory.ping_interval,
            sync_interval=factory.sync_interval,
            keepalive_timeout=factory.keepalive_timeout,
        )
        register_write_producer(self, self.session)
        self.session.start()
        log.info("tunnel {name}: open to {url}", name=factory.name, url=factory.url)
        if factory.on_open is not None:
            try:
                factory.on_open(self)
            except Exception:
                log.failure("tunnel {name}: on_open callback failed", name=factory.name)
        self.opened.callback(self)

    # -- traffic

    def _send_message(self, data: bytes) -> None:
        # Between a close frame and onClose autobahn refuses to send; the session ends right after.
        if self.state == self.STATE_OPEN:
            self.sendMessage(data, isBinary=True)

    def _send_ping(self) -> None:
        self.sendPing(b"")

    def _drop(self, why: str) -> None:
        self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None:
            return
        if not isBinary:
            log.error(
                "tunnel {name}: text message from the server (remotedialer sends binary only): "
                "wrong websocket message type, ending the session",
                name=self.factory.name,
            )
            self.session.close("wrong websocket message type")
            self.dropConnection(abort=True)
            return
        self.session.message_received(payload)

    def onPong(self, payload: bytes) -> None:
        if self.session is not None:
            self.session.keepalive_received()

    def disconnect(self, reason: str = "tunnel disconnect") -> None:
        """Deliberately end the tunnel: each connection's peer gets ERROR "tunnel disconnect" first."""
        if self.session is not None:
            self.session.close(reason, notify_peer=True)
        self.sendClose(code=1000, reason=reason[:100])

    # -- the end

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        why = reason or "connection closed"
        opened = self.session is not None
        if self.session is not None:
            self.session.close(Failure(ConnectionLost(f"tunnel closed: {why}")))
        refusal = self._refusal
        ended = TunnelEnded(
            opened=opened,
            status=refusal.status if refusal else None,
            reason=why,
            code=code,
            was_clean=wasClean,
            body=refusal.body if refusal else b"",
        )
        if opened:
            log.info("tunnel {name}: closed ({why})", name=self.factory.name, why=why)
        if self.factory.on_close is not None:
            try:
                self.factory.on_close(self, ended)
            except Exception:
                log.failure("tunnel {name}: on_close callback failed", name=self.factory.name)
        if not self.opened.called:
            self.opened.errback(refusal or ConnectionLost(why))
            self.opened.addErrback(lambda _: None)  # the caller may not be listening
        self.ended.callback(ended)


def _unchunk(data: bytes) -> bytes:
    """The body of a chunked HTTP response, as far as it arrived."""
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        try:
            size = int(data[pos:eol].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += data[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2
    return bytes(out)


def client_tls_options(
    host: str,
    *,
    ca_pem: bytes | None = None,
    insecure: bool = False,
    tls_options: Any = None,
) -> Any:
    """How to trust the server: explicit `tls_options` (an IOpenSSLClientConnectionCreator) win; else
    `insecure` checks nothing; else verify `host` against `ca_pem` (PEM, may hold several certificates)
    or, without it, the system roots."""
    if tls_options is not None:
        return tls_options
    if insecure:
        return ssl.CertificateOptions(verify=False)
    if ca_pem:
        certs = [ssl.Certificate.loadPEM(block) for block in _pem_blocks(ca_pem)]
        if not certs:
            raise ValueError("the CA bundle holds no PEM certificate")
        trust = certs[0] if len(certs) == 1 else ssl.trustRootFromCertificates(certs)
        return ssl.optionsForClientTLS(host, trustRoot=trust)
    return ssl.optionsForClientTLS(host)


def _pem_blocks(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    blocks = []
    for piece in data.split(marker)[:-1]:
        start = piece.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(piece[start:] + marker + b"\n")
    return blocks


class TunnelClientFactory(WebSocketClientFactory):
    """Everything one tunnel needs; build one per tunnel (per cluster and tunnel kind)."""

    protocol = TunnelClientProtocol

    def __init__(
        self,
        reactor: Any,
        url: str,
        headers: Mapping[str, str],
        resolver: Resolver,
        *,
        name: str = "",
        ca_pem: bytes | None = None,
        insecure: bool = False,
        tls_options: Any = None,
        tls_clock: Any = None,
        on_open: Callable[[TunnelClientProtocol], None] | None = None,
        on_close: Callable[[TunnelClientProtocol, TunnelEnded], None] | None = None,
        ping_interval: float = PING_INTERVAL,
        sync_interval: float = SYNC_INTERVAL,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        open_timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"tunnel URL must be ws:// or wss:// with a host, not {url!r}")
        super().__init__(url, headers=dict(headers), reactor=reactor)
        self.noisy = False  # thousands of tunnels: no "Starting factory" per attempt
        self.setProtocolOptions(
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            openHandshakeTimeout=open_timeout,
            closeHandshakeTimeout=2,
            autoPingInterval=0,
            perMessageCompressionOffers=[],
            failByDrop=True,
        )
        self.resolver = resolver
        self.name = name or parts.hostname
        self.on_open = on_open
        self.on_close = on_close
        self.ping_interval = ping_interval
        self.sync_interval = sync_interval
        self.keepalive_timeout = keepalive_timeout
        self.open_timeout = open_timeout
        #: schedules the TLS layer's write flushes; thousands of tunnels share one batching clock
        self.tls_clock = tls_clock
        self._tls = None
        if parts.scheme == "wss":
            self._tls = client_tls_options(
                parts.hostname, ca_pem=ca_pem, insecure=insecure, tls_options=tls_options
            )

    def endpoint(self, bind_address: tuple[str, int] | None = None) -> IStreamClientEndpoint:
        """The TCP (+TLS for wss://) endpoint to reach this factory's URL."""
        endpoint = HostnameEndpoint(
            self.reactor, self.host, self.port, timeout=self.open_timeout, bindAddress=bind_address
        )
        if self._tls is not None:
            return wrap_client_tls(self._tls, endpoint, self.tls_clock)
        return endpoint


def connect_tunnel(
    reactor: Any,
    url: str,
    headers: Mapping[str, str],
    resolver: Resolver,
    **options: Any,
) -> defer.Deferred[TunnelClientProtocol]:
    """One connection attempt; fires with the open protocol, or fails with `TunnelRefused` (HTTP status
    in `.status`) or the connection error.  `options` are `TunnelClientFactory`'s keyword arguments."""
    factory = TunnelClientFactory(reactor, url, headers, resolver, **options)

    def connected(protocol: TunnelClientProtocol) -> defer.Deferred[TunnelClientProtocol]:
        return protocol.opened

    d = factory.endpoint().connect(factory)
    d.addCallback(connected)
    return d
