"""Small-buffer TLS: every byte arrives, in order, and OpenSSL never gets more than a piece at once."""

from __future__ import annotations

import datetime
import os
import socket
import ssl

import pytest
import pytest_twisted
from cryptography.hazmat.primitives import serialization
from twisted.internet import protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThreadPool
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from scaleagent import certs
from scaleagent.tlsbuffers import PIECE, SmallBufferTLSFactory

NOW = datetime.datetime.now(datetime.UTC)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def pki():
    ca, ca_key = certs.new_ca("tlsbuffers-ca", NOW, 10 * HOUR, backdate=HOUR)
    names = [certs.general_name("127.0.0.1"), certs.general_name("localhost")]
    cert, key = certs.issue_serving(ca, ca_key, "server", names, NOW, NOW + HOUR, backdate=HOUR)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    server = PrivateCertificate.loadPEM(pem(cert) + key_pem).options()
    client = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(pem(ca)))
    return server, client, pem(ca), pem(cert), key_pem


class Collect(protocol.Protocol):
    def __init__(self) -> None:
        self.received = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class Largest:
    """Wraps an OpenSSL connection and remembers the largest piece put into it either way."""

    def __init__(self, connection) -> None:
        self._connection = connection
        self.bio_write = 0
        self.send = 0

    def wrap(self) -> None:
        real_write, real_send = self._connection.bio_write, self._connection.send

        def bio_write(data):
            self.bio_write = max(self.bio_write, len(data))
            return real_write(data)

        def send(data):
            self.send = max(self.send, len(data))
            return real_send(data)

        self._connection.bio_write, self._connection.send = bio_write, send


def tls_pair(pki, factory_class):
    server_options, client_options = pki[0], pki[1]
    clock = Clock()
    server_app, client_app = Collect(), Collect()
    server_factory = factory_class(
        server_options, False, protocol.Factory.forProtocol(lambda: server_app), clock=clock
    )
    client_factory = factory_class(
        client_options, True, protocol.Factory.forProtocol(lambda: client_app), clock=clock
    )
    client, server, pump = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None)
    )

    def flush() -> None:
        for _ in range(200):  # bounded: each round moves at most one batch each way
            clock.advance(0)
            if not pump.pump():
                clock.advance(0)
                if not pump.pump():
                    return

    return server, client, server_app, client_app, flush


def test_bulk_and_small_writes_arrive_whole_and_in_order(pki):
    server, client, server_app, client_app, flush = tls_pair(pki, SmallBufferTLSFactory)
    early = b"written before the handshake finished"
    client.write(early)  # buffered until the handshake is done
    flush()
    bulk = os.urandom(300_000)
    smalls = [os.urandom(n) for n in (1, 100, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 7)]
    client.write(bulk)
    for piece in smalls:
        client.write(piece)
    server.write(bulk[::-1])
    server.writeSequence(smalls)
    flush()
    assert bytes(server_app.received) == early + bulk + b"".join(smalls)
    assert bytes(client_app.received) == bulk[::-1] + b"".join(smalls)


@pytest.mark.parametrize(
    ("factory_class", "small"), [(SmallBufferTLSFactory, True), (TLSMemoryBIOFactory, False)]
)
def test_openssl_gets_at_most_a_piece_at_once(pki, factory_class, small):
    server, client, server_app, client_app, flush = tls_pair(pki, factory_class)
    flush()
    watched = {side: Largest(side._tlsConnection) for side in (server, client)}
    for largest in watched.values():
        largest.wrap()
    client.write(os.urandom(200_000))
    server.write(os.urandom(200_000))
    flush()
    assert len(server_app.received) == len(client_app.received) == 200_000
    largest_write = max(w.bio_write for w in watched.values())
    largest_send = max(w.send for w in watched.values())
    if small:
        assert largest_write <= PIECE and largest_send <= PIECE
    else:  # what the small pieces avoid: Twisted hands OpenSSL whole reads and 16 KiB records
        assert largest_write > PIECE and largest_send > PIECE


@pytest_twisted.inlineCallbacks
def test_a_python_ssl_client_talks_to_a_small_buffer_server(pki, reactor, tmp_path):
    """A peer nobody here wrote: the standard library's TLS client, in a thread, over loopback."""
    server_options, _, ca_pem, _, _ = pki

    class Echo(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

    factory = SmallBufferTLSFactory(server_options, False, protocol.Factory.forProtocol(Echo))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    payload = os.urandom(500_000)
    context = ssl.create_default_context(cadata=ca_pem.decode())
    result: dict[str, object] = {}

    def client() -> None:
        raw = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=20)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            # One thread per SSL socket: OpenSSL connections must not be read and written at once.
            # The echo keeps reading while its answers queue in its transport, so sending it all first
            # cannot deadlock.
            sock.sendall(payload)
            got = bytearray()
            while len(got) < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            result["got"] = bytes(got)
            result["version"] = sock.version()

    try:
        yield deferToThreadPool(reactor, reactor.getThreadPool(), client)
    finally:
        yield port.stopListening()
    assert result["got"] == payload
    assert result["version"] in ("TLSv1.2", "TLSv1.3")
