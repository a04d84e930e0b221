"""End to end on loopback through a real wss:// WebSocket, both ends ours (issue 3, "Must show").

The server end dials 1,000 concurrent virtual connections into an echo protocol and 1,000 into a
TLS-wrapped Site whose certificate is verified against its CA for IP 10.43.0.1; one connection carries
32 MiB with PAUSE/RESUME observed in both directions; then the WebSocket is cut and every virtual
connection, on both ends, sees connectionLost.
"""

from __future__ import annotations

import hashlib

import pytest_twisted
import treq
from twisted.internet import defer, task
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import implementer

from scaleagent.remotedialer.server import TunnelAgentEndpoints
from scaleagent.remotedialer.websocket import connect_tunnel
from tests.support import until

from .test_remotedialer_transport import version_site
from .test_remotedialer_websocket import PKI, TOKEN, start_server

CONNECTIONS = 1000
BULK = 32 * 1024 * 1024
CHUNK = 64 * 1024
VERSION_BODY = b'{"gitVersion":"v1.32.4"}'


class BackpressuredEcho(Protocol):
    """Echo that stops reading while its writes are held back (its transport is its own producer)."""

    def connectionMade(self) -> None:
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Tracked(Protocol):
    """Server-end protocol that records how it ended."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost_reason = None

    def connectionLost(self, reason) -> None:
        self.lost_reason = reason


class Greeter(Tracked):
    def __init__(self, greeting: bytes) -> None:
        super().__init__()
        self.greeting = greeting

    def connectionMade(self) -> None:
        self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class KeepAliveGet(Tracked):
    """One GET /version on a kept-alive connection (TLS underneath, verified by wrapClientTLS)."""

    def connectionMade(self) -> None:
        self.transport.write(b"GET /version HTTP/1.1\r\nHost: 10.43.0.1\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    @property
    def done(self) -> bool:
        return self.received.endswith(VERSION_BODY)


@implementer(IPushProducer)
class Bulk(Tracked):
    """Writes BULK bytes as a push producer, reads the echo back, and is a slow reader on purpose:
    every 8 MiB it stops reading until the far end has had to PAUSE too (bounded wait)."""

    def __init__(self, reactor, client_session) -> None:
        super().__init__()
        self.reactor = reactor
        self.client_session = client_session
        self.sent = 0
        self.got = 0
        self.paused = False
        self.scheduled = False
        self.out_hash = hashlib.sha256()
        self.in_hash = hashlib.sha256()
        self.next_stall = 8 * 1024 * 1024
        self.stalls = 0
        self.finished: defer.Deferred = defer.Deferred()

    def chunk(self, index: int) -> bytes:
        return index.to_bytes(8, "big") * (CHUNK // 8)

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self.schedule()

    def schedule(self) -> None:
        if not self.scheduled and not self.paused and self.sent < BULK:
            self.scheduled = True
            self.reactor.callLater(0, self.produce)

    def produce(self) -> None:
        self.scheduled = False
        for _ in range(16):
            if self.paused or self.sent >= BULK:
                break
            data = self.chunk(self.sent // CHUNK)
            self.out_hash.update(data)
            self.sent += len(data)
            self.transport.write(data)
        self.schedule()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.schedule()

    def stopProducing(self) -> None:
        self.paused = True

    def dataReceived(self, data: bytes) -> None:
        self.in_hash.update(data)
        self.got += len(data)
        if self.got >= BULK and not self.finished.called:
            self.finished.callback(None)
        elif self.got >= self.next_stall:
            self.next_stall += 8 * 1024 * 1024
            self.stall()

    @defer.inlineCallbacks
    def stall(self):
        self.stalls += 1
        self.transport.pauseProducing()
        before = self.client_session.stats.pauses_sent
        for _ in range(300):  # at most 3 s
            if self.client_session.stats.pauses_sent > before:
                break
            yield task.deferLater(self.reactor, 0.01, lambda: None)
        self.transport.resumeProducing()


@pytest_twisted.inlineCallbacks
def test_loopback_end_to_end(reactor):
    server, port, url = yield start_server(reactor)
    echo_factory = WrappingFactory(Factory.forProtocol(BackpressuredEcho))
    site = version_site()
    tls_site = TLSMemoryBIOFactory(PKI.server_options(), False, site, clock=reactor)
    targets = {"127.0.0.1:7": echo_factory, "10.43.0.1:443": tls_site}
    client = yield connect_tunnel(
        reactor, url, {"X-API-Tunnel-Token": TOKEN}, lambda proto, address: targets.get(address),
        ca_pem=PKI.ca_pem, name="e2e",
    )
    pool = HTTPConnectionPool(reactor, persistent=True)
    try:
        session = yield server.when_connected("c-test")

        # 1,000 concurrent echo connections, each with its own payload.
        echoes = []
        for i in range(CONNECTIONS):
            greeter = Greeter(b"echo %d;" % i)
            server.dial("c-test", "tcp", "127.0.0.1:7", Factory.forProtocol(lambda g=greeter: g))
            echoes.append(greeter)
        yield until(reactor, lambda: all(bytes(g.received) == g.greeting for g in echoes), 30)

        # 1,000 concurrent TLS connections into the Site, each verifying 10.43.0.1 against the CA.
        tls_endpoint = wrapClientTLS(PKI.client_options("10.43.0.1"),
                                     server.endpoint("c-test", "tcp", "10.43.0.1:443"))
        getters = []
        for _ in range(CONNECTIONS):
            getter = KeepAliveGet()
            getters.append(getter)
            yield tls_endpoint.connect(Factory.forProtocol(lambda g=getter: g))
        yield until(reactor, lambda: all(g.done for g in getters), 60)
        assert all(b"HTTP/1.1 200 OK" in g.received for g in getters)

        # The same Site through Agent/treq: the path a Rancher stand-in uses.
        agent = Agent.usingEndpointFactory(
            reactor, TunnelAgentEndpoints(server, "c-test", PKI.client_options), pool=pool)
        response = yield treq.get("https://10.43.0.1:443/version", agent=agent)
        assert response.code == 200
        assert (yield response.content()) == VERSION_BODY

        # All of them are open at once, on both ends.
        assert len(echo_factory.protocols) == CONNECTIONS
        assert len(tls_site.protocols) >= CONNECTIONS  # the getters (+ the pooled treq connection)
        assert len(client.session.connection_ids()) == len(session.connection_ids()) >= 2 * CONNECTIONS

        # 32 MiB through one connection; both ends have to PAUSE and RESUME.
        bulk = Bulk(reactor, client.session)
        server.dial("c-test", "tcp", "127.0.0.1:7", Factory.forProtocol(lambda: bulk))
        yield bulk.finished
        assert bulk.got == BULK == bulk.sent
        assert bulk.in_hash.digest() == bulk.out_hash.digest()
        assert bulk.stalls >= 1
        for stats in (session.stats, client.session.stats):
            assert stats.pauses_sent >= 1 and stats.resumes_sent >= 1
            assert stats.pauses_received >= 1 and stats.resumes_received >= 1
        assert session.stats.bad_messages == client.session.stats.bad_messages == 0

        # Cut the WebSocket: every virtual connection on both ends sees connectionLost.
        server_end = echoes + getters + [bulk]
        server.protocols("c-test")[0].cut()
        ended = yield client.ended
        assert ended.opened and not ended.was_clean
        yield until(reactor, lambda: all(p.lost_reason is not None for p in server_end), 10)
        assert all(p.lost_reason.check(ConnectionLost) for p in server_end)
        yield until(reactor, lambda: not echo_factory.protocols and not tls_site.protocols, 10)
        assert server.client_keys() == []
        assert client.session.connection_ids() == [] == session.connection_ids()
    finally:
        yield pool.closeCachedConnections()
        if not client.ended.called:
            client.dropConnection(abort=True)
            yield client.ended
        server.stop()
        yield port.stopListening()
