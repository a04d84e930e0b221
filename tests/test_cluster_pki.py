"""The process CA and apiserver serving certificate: SANs, persistence, reissue, real TLS handshakes."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import stat
from types import SimpleNamespace

import pytest
from cryptography import x509
from OpenSSL import SSL
from twisted.internet import task
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from scaleagent.cluster import pki
from scaleagent.state import StateDir

NOW = 1_790_000_000.0  # a fixed wall time, 2026-09


def clock(value: float = NOW):
    return lambda: value


def _cert(p: pki.ClusterPKI) -> x509.Certificate:
    return x509.load_pem_x509_certificate(p.cert_pem)


def _handshake(p: pki.ClusterPKI, server_hostname: str, alpn=("h2", "http/1.1")) -> str | None:
    """A TLS handshake in memory: our server context against Python's verifying client.

    The client trusts only the CA PEM and checks `server_hostname` as Go's crypto/tls does for
    Rancher; returns the negotiated ALPN protocol.
    """
    server = SSL.Connection(p.server_context_factory().getContext(), None)
    # Twisted's ALPN callback looks up the TLSMemoryBIOProtocol's factory in the app data.
    server.set_app_data(SimpleNamespace(factory=SimpleNamespace(wrappedFactory=object())))
    server.set_accept_state()
    client_ctx = ssl.create_default_context(cadata=p.ca_cert_pem.decode())
    client_ctx.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    for _ in range(20):
        try:
            client.do_handshake()
            return client.selected_alpn_protocol()
        except ssl.SSLWantReadError:
            pass
        data = outgoing.read()
        if data:
            server.bio_write(data)
        try:
            server.do_handshake()
        except SSL.WantReadError:
            pass
        try:
            incoming.write(server.bio_read(65536))
        except SSL.WantReadError:
            pass
    raise AssertionError("handshake did not finish")


def test_in_memory_pki_has_every_required_san():
    p = pki.load_or_create(None)
    assert p.host == "10.43.0.1"
    cert = _cert(p)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.43.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("::1") in san.get_values_for_type(x509.IPAddress)
    assert set(san.get_values_for_type(x509.DNSName)) == set(pki.SERVICE_DNS_NAMES)
    # 10.43.0.1 is an IP SAN, never a DNS name (Go would not match it)
    assert "10.43.0.1" not in san.get_values_for_type(x509.DNSName)
    ca = x509.load_pem_x509_certificate(p.ca_cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.public_key().curve.name == "secp256r1"
    assert cert.public_key().curve.name == "secp256r1"
    cert.verify_directly_issued_by(ca)


def test_dns_host_gets_a_dns_san():
    p = pki.load_or_create(None, "API.Example.test")
    san = _cert(p).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "api.example.test" in san.get_values_for_type(x509.DNSName)
    assert p.covers("api.example.test") and not p.covers("10.43.0.1")


def test_bracketed_ipv6_host():
    p = pki.load_or_create(None, "[fd00::1]")
    assert p.host == "fd00::1"
    assert p.covers("fd00:0::1")


@pytest.mark.parametrize("host", ["", "bad host", "-x.example", "a..b", "x" * 64 + ".example"])
def test_bad_host_is_a_clear_error(host):
    with pytest.raises(pki.PKIError, match="expected an IP address or a DNS name"):
        pki.load_or_create(None, host)


def test_ca_b64_is_the_pem():
    import base64

    p = pki.load_or_create(None)
    assert base64.b64decode(p.ca_cert_b64) == p.ca_cert_pem
    assert p.ca_cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert "PRIVATE" not in repr(p)


def test_tls_handshake_verifies_ip_and_service_names_and_offers_only_http11():
    p = pki.load_or_create(None)
    assert _handshake(p, "10.43.0.1") == "http/1.1"
    assert _handshake(p, "kubernetes.default.svc") == "http/1.1"
    assert _handshake(p, "127.0.0.1") == "http/1.1"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(p, "10.43.0.2")


def test_other_ca_is_rejected():
    p, other = pki.load_or_create(None), pki.load_or_create(None)
    mixed = pki.ClusterPKI(host=p.host, ca_cert_pem=other.ca_cert_pem, cert_pem=p.cert_pem, key_pem=p.key_pem)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(mixed, "10.43.0.1")


def test_server_context_factory_is_shared():
    p = pki.load_or_create(None)
    assert p.server_context_factory() is p.server_context_factory()


def test_created_once_and_reloaded(tmp_path):
    first = pki.load_or_create(tmp_path, clock=clock())
    second = pki.load_or_create(StateDir(tmp_path), clock=clock(NOW + 86400))
    assert second.ca_cert_pem == first.ca_cert_pem
    assert second.cert_pem == first.cert_pem
    assert second.key_pem == first.key_pem
    assert second.recovered == ()
    for name in (pki.CA_KEY, pki.SERVING_KEY):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    for name in (pki.CA_CERT, pki.SERVING_CERT):
        assert (tmp_path / name).exists()
    assert _handshake(second, "10.43.0.1") == "http/1.1"


def test_changed_host_reissues_serving_cert_under_same_ca(tmp_path):
    first = pki.load_or_create(tmp_path, clock=clock())
    moved = pki.load_or_create(tmp_path, "apiserver.sim.test", clock=clock())
    assert moved.ca_cert_pem == first.ca_cert_pem
    assert moved.cert_pem != first.cert_pem
    assert moved.covers("apiserver.sim.test")
    assert _handshake(moved, "apiserver.sim.test") == "http/1.1"
    # and it is kept: the next load with that host changes nothing
    again = pki.load_or_create(tmp_path, "apiserver.sim.test", clock=clock())
    assert again.cert_pem == moved.cert_pem


def test_serving_cert_near_expiry_is_reissued(tmp_path):
    first = pki.load_or_create(tmp_path, clock=clock())
    late = NOW + (pki.SERVING_LIFETIME - datetime.timedelta(days=10)).total_seconds()
    renewed = pki.load_or_create(tmp_path, clock=clock(late))
    assert renewed.ca_cert_pem == first.ca_cert_pem
    assert renewed.cert_pem != first.cert_pem
    assert _cert(renewed).not_valid_after_utc > _cert(first).not_valid_after_utc


def test_truncated_ca_key_is_reported_moved_aside_and_replaced(tmp_path):
    first = pki.load_or_create(tmp_path, clock=clock())
    key = tmp_path / pki.CA_KEY
    key.write_bytes(key.read_bytes()[:40])
    second = pki.load_or_create(tmp_path, clock=clock())
    assert second.ca_cert_pem != first.ca_cert_pem
    assert {os.path.basename(e.path) for e in second.recovered} == {"ca.crt", "ca.key"}
    aside = sorted(p.name for p in (tmp_path / "pki").iterdir() if ".corrupt-" in p.name)
    assert len(aside) == 2
    assert aside[0].startswith("ca.crt.corrupt-") and aside[1].startswith("ca.key.corrupt-")
    assert "ca.key" in str(second.recovered[0]) or "ca.key" in str(second.recovered[1])
    # the new serving cert is issued by the new CA
    _cert(second).verify_directly_issued_by(x509.load_pem_x509_certificate(second.ca_cert_pem))


def test_serving_key_not_matching_cert_is_reissued(tmp_path):
    first = pki.load_or_create(tmp_path, clock=clock())
    other = pki.load_or_create(None)
    (tmp_path / pki.SERVING_KEY).write_bytes(other.key_pem)
    second = pki.load_or_create(tmp_path, clock=clock())
    assert second.ca_cert_pem == first.ca_cert_pem
    assert second.cert_pem != first.cert_pem
    assert any("does not match" in str(e) for e in second.recovered)
    assert _handshake(second, "10.43.0.1") == "http/1.1"


def test_serving_cert_from_a_foreign_ca_is_reissued(tmp_path):
    first = pki.load_or_create(tmp_path, clock=clock())
    other = pki.load_or_create(None)
    (tmp_path / pki.SERVING_KEY).write_bytes(other.key_pem)
    (tmp_path / pki.SERVING_CERT).write_bytes(other.cert_pem)
    second = pki.load_or_create(tmp_path, clock=clock())
    assert second.ca_cert_pem == first.ca_cert_pem
    assert second.cert_pem != other.cert_pem
    assert _handshake(second, "10.43.0.1") == "http/1.1"


class _Collect(Protocol):
    def __init__(self):
        self.received = b""
        self.lost = None

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost = reason


def _twisted_pair(server_pki: pki.ClusterPKI, client_pki: pki.ClusterPKI, hostname: str | None = None):
    """Server and client TLS over an in-memory pump, the way the cluster assembly wraps its Site."""
    server_app, client_app = _Collect(), _Collect()
    clock = task.Clock()  # TLSMemoryBIOFactory aggregates small writes until the clock's next turn
    server_factory = TLSMemoryBIOFactory(
        server_pki.server_context_factory(), False, Factory.forProtocol(lambda: server_app), clock=clock
    )
    client_options = client_pki.client_context_factory(hostname)
    client_factory = TLSMemoryBIOFactory(
        client_options, True, Factory.forProtocol(lambda: client_app), clock=clock
    )
    client, server, pump = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None), clock=clock
    )
    if client_app.transport is not None:
        client_app.transport.write(b"GET /version HTTP/1.1\r\n\r\n")
    pump.flush()
    return client, server, pump, server_app, client_app


def test_twisted_tls_memory_bio_round_trip_with_ip_verification():
    p = pki.load_or_create(None)
    client, server, pump, server_app, client_app = _twisted_pair(p, p)
    assert server_app.received == b"GET /version HTTP/1.1\r\n\r\n"
    assert server.negotiatedProtocol == b"http/1.1"
    server_app.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    pump.flush(advanceClock=True)
    assert client_app.received == b"HTTP/1.1 200 OK\r\n\r\n"


def test_twisted_client_refuses_wrong_ip():
    p = pki.load_or_create(None)
    client, server, pump, server_app, client_app = _twisted_pair(p, p, "10.43.0.9")
    assert server_app.received == b""
    assert client_app.lost is not None
