"""The server (Rancher) end of tunnels: a Twisted Web resource that authorises the upgrade request and
hands it to autobahn, sessions per client key, and `dial` into a client's tunnel.

Refusals come from a plain Twisted Web answer in front of autobahn's WebSocketResource (autobahn's
`ConnectionDeny` sends no body, Rancher sends one): the authorizer returns a client key, or a
`Refusal(code, body)` that goes out as that HTTP status with the text body (Rancher: 400 with the
error text, 401 "failed authentication").  Like Go's session manager, a client key may hold several
sessions; dials use the oldest.  The server never pings, answers pings, ends a session after 60 s
without one, and drops connections the client leaves out of SYNC_CONNECTIONS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import URI
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from scaleagent.redact import logger
from scaleagent.remotedialer.session import KEEPALIVE_TIMEOUT, SYNC_GRACE, Resolver, Session
from scaleagent.remotedialer.websocket import register_write_producer
from scaleagent.tlsbuffers import wrap_client_tls

__all__ = [
    "Authorizer",
    "NoTunnel",
    "Refusal",
    "TunnelAgentEndpoints",
    "TunnelEndpoint",
    "TunnelResource",
    "TunnelServer",
    "TunnelServerProtocol",
]

log = logger()


@dataclass(frozen=True)
class Refusal:
    """An HTTP answer instead of an upgrade: Rancher uses 400 (authorizer error text) and 401."""

    code: int
    body: str


Authorizer = Callable[[Request], "str | Refusal | defer.Deferred[str | Refusal]"]
"""Upgrade request -> the client key of the new session, or a Refusal (may be a Deferred)."""


class NoTunnel(ConnectionError):
    """No session is open for that client key."""


class TunnelServerProtocol(WebSocketServerProtocol):
    """One client's WebSocket; `session` exists once it is open."""

    factory: _TunnelServerFactory

    def __init__(self, client_key: str) -> None:
        super().__init__()
        self.client_key = client_key
        self.session: Session | None = None

    def onOpen(self) -> None:
        server = self.factory.server
        self.session = Session(
            client=False,
            send=self._send_message,
            clock=server.reactor,
            resolver=server.resolver,
            disconnect=self._drop,
            name=self.client_key,
            local_address=self.transport.getHost(),
            remote_address=self.transport.getPeer(),
            keepalive_timeout=server.keepalive_timeout,
            sync_grace=server.sync_grace,
        )
        register_write_producer(self, self.session)
        self.session.start()
        server._added(self)

    def _send_message(self, data: bytes) -> None:
        # Between a close frame and onClose autobahn refuses to send; the session ends right after.
        if self.state == self.STATE_OPEN:
            self.sendMessage(data, isBinary=True)

    def _drop(self, why: str) -> None:
        self.dropConnection(abort=True)

    def onPing(self, payload: bytes) -> None:
        super().onPing(payload)  # the pong
        if self.session is not None:
            self.session.keepalive_received()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None:
            return
        if not isBinary:
            log.error("tunnel {key}: text message, wrong websocket message type; ending the session",
                      key=self.client_key)
            self.session.close("wrong websocket message type")
            self.dropConnection(abort=True)
            return
        self.session.message_received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:
            self.session.close(Failure(ConnectionLost(f"tunnel closed: {reason or 'connection closed'}")))
            self.factory.server._removed(self)

    def cut(self) -> None:
        """Drop the WebSocket at once (no close handshake): what a network failure looks like."""
        self.dropConnection(abort=True)


class _TunnelServerFactory(WebSocketServerFactory):
    def __init__(self, server: TunnelServer) -> None:
        super().__init__(reactor=server.reactor)
        self.server = server
        self.next_client_key: str | None = None
        self.setProtocolOptions(
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            openHandshakeTimeout=server.open_handshake_timeout,
            closeHandshakeTimeout=2,
            autoPingInterval=0,
            perMessageCompressionAccept=lambda offers: None,
            failByDrop=True,
        )

    def buildProtocol(self, addr: Any) -> TunnelServerProtocol:
        key, self.next_client_key = self.next_client_key, None
        protocol = TunnelServerProtocol(key or "")
        protocol.factory = self
        return protocol


class TunnelResource(Resource):
    """Mount where the tunnel URL lives (a leaf: Rancher's /v3/connect also serves /v3/connect/register)."""

    isLeaf = True

    def __init__(self, server: TunnelServer) -> None:
        super().__init__()
        self._server = server
        self._ws = WebSocketResource(server._factory)

    def render(self, request: Request) -> Any:
        try:
            verdict = self._server.authorizer(request)
        except Exception:
            log.failure("tunnel authorizer failed")
            return self._refuse(request, Refusal(500, "internal error"))
        if isinstance(verdict, defer.Deferred):
            verdict.addCallbacks(
                lambda result: self._finish_later(request, result),
                lambda failure: self._authorizer_failed(request, failure),
            )
            return NOT_DONE_YET
        return self._decide(request, verdict)

    def _decide(self, request: Request, verdict: Any) -> Any:
        if isinstance(verdict, Refusal):
            return self._refuse(request, verdict)
        if not isinstance(verdict, str) or not verdict:
            log.error("tunnel authorizer returned {verdict!r}, neither a client key nor a Refusal",
                      verdict=verdict)
            return self._refuse(request, Refusal(500, "internal error"))
        self._server._factory.next_client_key = verdict
        return self._ws.render(request)

    def _finish_later(self, request: Request, verdict: Any) -> None:
        if request.finished or request.channel is None or getattr(request, "_disconnected", False):
            return  # the client went away while the authorizer was deciding
        body = self._decide(request, verdict)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _authorizer_failed(self, request: Request, failure: Failure) -> None:
        log.failure("tunnel authorizer failed", failure)
        self._finish_later(request, Refusal(500, "internal error"))

    @staticmethod
    def _refuse(request: Request, refusal: Refusal) -> bytes:
        log.info("tunnel request from {peer} refused: {code} {body}", peer=request.getClientAddress(),
                 code=refusal.code, body=refusal.body)
        body = refusal.body.encode("utf-8")
        request.setResponseCode(refusal.code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", str(len(body)).encode())
        return body


class TunnelServer:
    """All tunnels of one server: `resource` to mount, sessions by client key, `dial`."""

    def __init__(
        self,
        reactor: Any,
        authorizer: Authorizer,
        *,
        resolver: Resolver | None = None,
        on_session_added: Callable[[str, Session], None] | None = None,
        on_session_removed: Callable[[str, Session], None] | None = None,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        sync_grace: float = SYNC_GRACE,
        open_handshake_timeout: float = 5.0,
    ) -> None:
        """`resolver` answers CONNECTs a client sends us (None refuses them, each with its own ERROR)."""
        self.reactor = reactor
        self.authorizer = authorizer
        self.resolver = resolver
        self.on_session_added = on_session_added
        self.on_session_removed = on_session_removed
        self.keepalive_timeout = keepalive_timeout
        self.sync_grace = sync_grace
        self.open_handshake_timeout = open_handshake_timeout
        self._factory = _TunnelServerFactory(self)
        self._protocols: dict[str, list[TunnelServerProtocol]] = {}
        self._waiters: dict[str, list[defer.Deferred[Session]]] = {}
        self.resource = TunnelResource(self)

    # -- the session table

    def _added(self, protocol: TunnelServerProtocol) -> None:
        key = protocol.client_key
        self._protocols.setdefault(key, []).append(protocol)
        log.info("tunnel {key}: session open ({n} for this key)", key=key, n=len(self._protocols[key]))
        session = protocol.session
        assert session is not None
        if self.on_session_added is not None:
            try:
                self.on_session_added(key, session)
            except Exception:
                log.failure("on_session_added failed for {key}", key=key)
        for waiter in self._waiters.pop(key, []):
            waiter.callback(session)

    def _removed(self, protocol: TunnelServerProtocol) -> None:
        key = protocol.client_key
        remaining = [p for p in self._protocols.get(key, []) if p is not protocol]
        if remaining:
            self._protocols[key] = remaining
        else:
            self._protocols.pop(key, None)
        log.info("tunnel {key}: session closed", key=key)
        if self.on_session_removed is not None and protocol.session is not None:
            try:
                self.on_session_removed(key, protocol.session)
            except Exception:
                log.failure("on_session_removed failed for {key}", key=key)

    def client_keys(self) -> list[str]:
        return sorted(self._protocols)

    def sessions(self, client_key: str) -> list[Session]:
        """Open sessions of `client_key`, oldest first."""
        return [p.session for p in self._protocols.get(client_key, []) if p.session is not None]

    def protocols(self, client_key: str) -> list[TunnelServerProtocol]:
        """The WebSocket protocols of `client_key`, oldest first (to `cut()` one in tests)."""
        return list(self._protocols.get(client_key, []))

    def when_connected(self, client_key: str) -> defer.Deferred[Session]:
        """Fires with the oldest session of `client_key`, now or when one opens."""
        sessions = self.sessions(client_key)
        if sessions:
            return defer.succeed(sessions[0])
        d: defer.Deferred[Session] = defer.Deferred()
        self._waiters.setdefault(client_key, []).append(d)
        return d

    def disconnect(self, client_key: str) -> None:
        """Close every session of `client_key` (a clean WebSocket close)."""
        for protocol in self.protocols(client_key):
            protocol.sendClose(code=1000, reason="closed by server")

    def stop(self) -> None:
        """Drop every session (for service shutdown)."""
        for key in list(self._protocols):
            for protocol in self.protocols(key):
                protocol.cut()

    # -- dialling

    def dial(self, client_key: str, proto: str, address: str, factory: IProtocolFactory) -> IProtocol:
        """Open `proto/address` through the oldest session of `client_key` and connect a protocol from
        `factory` to it.  Raises `NoTunnel` when the key has no session.  A refusal by the client comes
        later, as `connectionLost` carrying its error text."""
        sessions = self.sessions(client_key)
        if not sessions:
            raise NoTunnel(f"failed to find Session for client {client_key}")
        return sessions[0].dial(proto, address, factory)

    def endpoint(self, client_key: str, proto: str, address: str) -> TunnelEndpoint:
        return TunnelEndpoint(self, client_key, proto, address)


@implementer(IStreamClientEndpoint)
class TunnelEndpoint:
    """A client endpoint that dials through a tunnel, so Agent/treq (and wrapClientTLS) can use it."""

    def __init__(self, server: TunnelServer, client_key: str, proto: str, address: str) -> None:
        self._server = server
        self._key = client_key
        self._proto = proto
        self._address = address

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        return defer.maybeDeferred(self._server.dial, self._key, self._proto, self._address, protocolFactory)


@implementer(IAgentEndpointFactory)
class TunnelAgentEndpoints:
    """For `Agent.usingEndpointFactory`: every URL's host:port is dialled through `client_key`'s tunnel;
    https:// is wrapped in TLS from `tls_for_host(host)` (e.g. `optionsForClientTLS(host, trustRoot=ca)`)."""

    def __init__(
        self,
        server: TunnelServer,
        client_key: str,
        tls_for_host: Callable[[str], Any] | None = None,
    ) -> None:
        self._server = server
        self._key = client_key
        self._tls_for_host = tls_for_host

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        address = f"[{host}]:{uri.port}" if ":" in host else f"{host}:{uri.port}"
        endpoint: IStreamClientEndpoint = TunnelEndpoint(self._server, self._key, "tcp", address)
        if uri.scheme == b"https":
            if self._tls_for_host is None:
                raise ValueError("https through the tunnel needs tls_for_host")
            endpoint = wrap_client_tls(self._tls_for_host(host), endpoint)
        return endpoint
