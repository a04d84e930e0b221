"""VirtualTransport under the real stack: TLSMemoryBIOProtocol + Site on one end of a session pair, a TLS
client verifying the certificate for IP 10.43.0.1 on the other; everything driven by task.Clock."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from twisted.internet import ssl
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from scaleagent.remotedialer.session import Session
from scaleagent.sim.tls import ServerTLS, generate

# ---------------------------------------------------------------------------- throwaway PKI (tests only)


@dataclass(frozen=True)
class ThrowawayPKI:
    """A fresh CA and serving certificate (the stand-in's generator), as server and client TLS options."""

    tls: ServerTLS

    @property
    def ca_pem(self) -> bytes:
        return self.tls.ca_pem.encode()

    def server_options(self) -> ssl.CertificateOptions:
        return self.tls.options()

    def client_options(self, host: str) -> object:
        return ssl.optionsForClientTLS(host, trustRoot=ssl.Certificate.loadPEM(self.ca_pem))


def make_pki(ips: tuple[str, ...] = ("10.43.0.1", "127.0.0.1")) -> ThrowawayPKI:
    """A new CA and a serving certificate for `ips` and DNS localhost."""
    return ThrowawayPKI(generate([*ips, "localhost"]))


class Version(Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return b'{"gitVersion":"v1.32.4"}'


def version_site(clock=None) -> Site:
    """A Site answering /version, standing in for whatever a tunnel carries."""
    root = Resource()
    root.putChild(b"version", Version())
    return Site(root, reactor=clock) if clock is not None else Site(root)


# ---------------------------------------------------------------------------- a session pair on a Clock


class Pair:
    """Client and server sessions whose messages travel through the clock (never re-entrantly)."""

    def __init__(self, resolver) -> None:
        self.clock = Clock()
        self.queue: deque = deque()
        self.client = Session(client=True, send=lambda d: self._post(self.server, d), clock=self.clock,
                              resolver=resolver, name="client")
        self.server = Session(client=False, send=lambda d: self._post(self.client, d), clock=self.clock,
                              name="c-test")

    def _post(self, target: Session, data: bytes) -> None:
        self.queue.append((target, data))

    def pump(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            self.clock.advance(0)
            if not self.queue:
                self.clock.advance(0)
                if not self.queue:
                    return
            while self.queue:
                target, data = self.queue.popleft()
                target.message_received(data)
        raise AssertionError("the pair did not go quiet")


class Getter(Protocol):
    def __init__(self) -> None:
        self.response = b""
        self.lost = None

    def connectionMade(self) -> None:
        self.transport.write(b"GET /version HTTP/1.1\r\nHost: 10.43.0.1\r\nConnection: close\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.response += data

    def connectionLost(self, reason) -> None:
        self.lost = reason


class TLSOverTunnelTests(SynchronousTestCase):
    pki = make_pki()

    def setUp(self) -> None:
        self.site = version_site()
        self.pair = Pair(resolver=lambda proto, address: self.targets.get(address))
        clock = self.pair.clock
        self.site.reactor = clock
        self.tls_site = TLSMemoryBIOFactory(self.pki.server_options(), False, self.site, clock=clock)
        self.targets = {"10.43.0.1:443": self.tls_site}

    def dial_get(self, verify_host: str) -> Getter:
        getter = Getter()
        tls_client = TLSMemoryBIOFactory(self.pki.client_options(verify_host), True,
                                         Factory.forProtocol(lambda: getter), clock=self.pair.clock)
        self.pair.server.dial("tcp", "10.43.0.1:443", tls_client)
        self.pair.pump()
        return getter

    def test_https_get_verified_for_the_ip(self):
        getter = self.dial_get("10.43.0.1")
        self.assertIn(b"HTTP/1.1 200 OK", getter.response)
        self.assertTrue(getter.response.endswith(b'{"gitVersion":"v1.32.4"}'))
        self.assertIsInstance(getter.lost.value, ConnectionDone)
        self.assertEqual(self.pair.client.connection_ids(), [])
        self.assertEqual(self.pair.server.connection_ids(), [])
        self.assertEqual(len(self.tls_site.protocols), 0)  # every server protocol saw connectionLost

    def test_wrong_ip_fails_verification_and_the_tunnel_lives(self):
        getter = self.dial_get("10.43.0.2")
        self.assertEqual(getter.response, b"")
        self.assertIn("10.43.0.2", str(getter.lost.value))  # service_identity's IP mismatch
        self.assertEqual(self.pair.client.connection_ids(), [])
        self.assertEqual(len(self.tls_site.protocols), 0)
        again = self.dial_get("10.43.0.1")
        self.assertIn(b"200 OK", again.response)

    def test_plaintext_bytes_never_cross_the_tunnel(self):
        seen: list[bytes] = []
        original = self.pair._post

        def spy(target, data):
            seen.append(data)
            original(target, data)

        self.pair._post = spy
        self.dial_get("10.43.0.1")
        wire = b"".join(seen)
        self.assertNotIn(b"gitVersion", wire)
        self.assertNotIn(b"GET /version", wire)

    def test_tunnel_end_loses_tls_connections(self):
        getter_factory = Factory.forProtocol(Protocol)
        tls_client = TLSMemoryBIOFactory(self.pki.client_options("10.43.0.1"), True, getter_factory,
                                         clock=self.pair.clock)
        for _ in range(5):
            self.pair.server.dial("tcp", "10.43.0.1:443", tls_client)
        self.pair.pump()
        self.assertEqual(len(self.tls_site.protocols), 5)
        self.pair.client.close("websocket closed")
        self.pair.server.close("websocket closed")
        self.pair.clock.advance(0)
        self.assertEqual(len(self.tls_site.protocols), 0)
        self.assertEqual(len(tls_client.protocols), 0)
