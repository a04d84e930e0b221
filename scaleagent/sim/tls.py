"""A throw-away CA and serving certificate for the stand-in, generated at start, kept in memory.

The CA's PEM is what the stand-in publishes as its `cacerts` setting, so an agent verifies the stand-in
exactly as a real agent verifies Rancher: CATTLE_CA_CHECKSUM against `/v3/settings/cacerts`, then that
CA as the trust root (rancher-protocol.md §1.2).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import ssl

from scaleagent import certs

LIFETIME = datetime.timedelta(days=365)
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class ServerTLS:
    ca_pem: str
    cert_pem: str
    key_pem: str = field(repr=False)
    ca_key_pem: str = field(default="", repr=False)

    def options(self) -> ssl.CertificateOptions:
        """Server-side TLS options presenting the serving certificate (HTTP/1.1 only)."""
        # cryptography objects: pyOpenSSL's X509/PKey are deprecated there.
        return ssl.CertificateOptions(
            privateKey=serialization.load_pem_private_key(self.key_pem.encode(), password=None),  # type: ignore[arg-type]
            certificate=x509.load_pem_x509_certificate(self.cert_pem.encode()),  # type: ignore[arg-type]
        )


def generate(hosts: list[str], ca: tuple[str, str] | None = None) -> ServerTLS:
    """A certificate for `hosts` (DNS names or IP addresses), signed by `ca` (cert PEM, key PEM) or by a
    new CA."""
    now = datetime.datetime.now(datetime.UTC)
    if ca is None:
        ca_cert, ca_key = certs.new_ca(
            "scaleagent-ranchersim-ca", now, LIFETIME, backdate=_BACKDATE, path_length=0
        )
    else:
        ca_cert = x509.load_pem_x509_certificate(ca[0].encode())
        loaded = serialization.load_pem_private_key(ca[1].encode(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError("the stand-in's CA key must be an EC key")
        ca_key = loaded
    names = [certs.general_name(host) for host in dict.fromkeys(hosts)]
    common_name = hosts[0] if hosts else "localhost"
    cert, key = certs.issue_serving(
        ca_cert, ca_key, common_name, names, now, now + LIFETIME, backdate=_BACKDATE
    )
    return ServerTLS(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=_key_pem(key),
        ca_key_pem=_key_pem(ca_key),
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


CA_CERT = "ca.pem"
CA_KEY = "ca.key"


def load_or_generate(hosts: list[str], directory: str | Path | None) -> ServerTLS:
    """Keep the CA in `directory` (reused across restarts, so agents keep trusting the stand-in);
    the serving certificate is new at every start. Without a directory everything is fresh."""
    if directory is None:
        return generate(hosts)
    from scaleagent.state import PRIVATE, PUBLIC, atomic_write

    path = Path(directory)
    cert_path, key_path = path / CA_CERT, path / CA_KEY
    if cert_path.exists() and key_path.exists():
        try:
            return generate(hosts, (cert_path.read_text(), key_path.read_text()))
        except ValueError as error:
            raise ValueError(f"{path}: cannot use the stand-in's CA: {error}") from None
    result = generate(hosts)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(key_path, result.ca_key_pem.encode(), mode=PRIVATE)
    atomic_write(cert_path, result.ca_pem.encode(), mode=PUBLIC)
    return result
