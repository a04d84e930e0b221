"""One CA and one apiserver serving certificate per state directory, shared by every cluster.

Rancher trusts each cluster's apiserver through the `caCert` the tunnel params carry and checks the
host of the announced `address` against the serving certificate (rancher-protocol.md §4).  Those
params must never change for the life of a cluster (§1.3), so the CA is created once, kept in the state
directory and reloaded ever after.  The serving certificate may be reissued under that same CA (when the
configured address gains a host it lacks, or it nears expiry); Rancher does not see that, since it
only pins the CA.

Layout inside the state directory: `pki/ca.crt`, `pki/ca.key`, `pki/apiserver.crt`,
`pki/apiserver.key` (PEM; keys mode 0600).  With no state directory everything lives in memory.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from scaleagent import certs
from scaleagent.redact import logger
from scaleagent.state import CorruptStateFile, StateDir

if TYPE_CHECKING:
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from twisted.internet.ssl import CertificateOptions

log = logger()

DEFAULT_HOST = "10.43.0.1"
#: DNS names every in-cluster client may use for the apiserver, as kube-apiserver's own certificate has.
SERVICE_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)
LOOPBACK_IPS = ("127.0.0.1", "::1")

CA_CERT = "pki/ca.crt"
CA_KEY = "pki/ca.key"
SERVING_CERT = "pki/apiserver.crt"
SERVING_KEY = "pki/apiserver.key"
_LOCK = ".pki.lock"

CA_LIFETIME = datetime.timedelta(days=3650)
SERVING_LIFETIME = datetime.timedelta(days=825)
#: A serving certificate with less validity left than this is reissued when loaded.
RENEW_BEFORE = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(hours=1)  # tolerate clocks slightly behind ours

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class PKIError(ValueError):
    """Bad input to the PKI (an unusable host name)."""


def normalise_host(host: str) -> str:
    """The canonical form of an apiserver host: an IP address (brackets removed) or a lower-case DNS name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.lower().rstrip(".")
    if not name or len(name) > 253 or not all(_DNS_LABEL.match(label) for label in name.split(".")):
        raise PKIError(f"apiserver host {host!r}: expected an IP address or a DNS name such as api.example")
    return name


def required_names(host: str) -> frozenset[str]:
    """Every SAN (as text) a serving certificate for `host` must carry."""
    return frozenset((normalise_host(host), *SERVICE_DNS_NAMES, *LOOPBACK_IPS))


def _san_texts(cert: x509.Certificate) -> frozenset[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    names = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    names.update(name.lower() for name in san.get_values_for_type(x509.DNSName))
    return frozenset(names)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


def _new_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return certs.new_ca(f"scaleagent-ca@{int(now.timestamp())}", now, CA_LIFETIME, backdate=_BACKDATE)


def _new_serving(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, host: str, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    names = [certs.general_name(host)]
    names += [x509.DNSName(name) for name in SERVICE_DNS_NAMES if name != host]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in LOOPBACK_IPS if ip != host]
    return certs.issue_serving(
        ca_cert, ca_key, "kube-apiserver", names, now, now + SERVING_LIFETIME, backdate=_BACKDATE
    )


@dataclass(eq=False)
class ClusterPKI:
    """The CA and serving certificate of one process; immutable once built, shared by all clusters.

    `ca_cert_pem` is what the tunnel params' `caCert` carries (base64 of it: `ca_cert_b64`) and what
    `kube-root-ca.crt` ConfigMaps and service-account token Secrets hold.
    """

    host: str
    ca_cert_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    #: Files found corrupted and moved aside while loading (already logged).
    recovered: tuple[CorruptStateFile, ...] = ()
    _server_options: CertificateOptions | None = field(default=None, init=False, repr=False)

    @property
    def ca_cert_b64(self) -> str:
        """base64 of the CA PEM: the `caCert` value of `X-API-Tunnel-Params`."""
        return base64.b64encode(self.ca_cert_pem).decode("ascii")

    @property
    def ca_cert_sha256(self) -> str:
        """Hex sha256 of the CA PEM, for logs and status pages (public data)."""
        return hashlib.sha256(self.ca_cert_pem).hexdigest()

    @property
    def names(self) -> frozenset[str]:
        """The serving certificate's SANs as text (IPs in canonical form, DNS names lower case)."""
        return _san_texts(x509.load_pem_x509_certificate(self.cert_pem))

    def covers(self, host: str) -> bool:
        """Whether the serving certificate is valid for `host` (an IP or DNS name)."""
        return normalise_host(host) in self.names

    def server_context_factory(self) -> CertificateOptions:
        """The TLS server options for the in-tunnel apiserver: HTTP/1.1 only via ALPN, as Rancher asks.

        One instance for the process: its OpenSSL context is built once and shared by every connection.
        """
        if self._server_options is None:
            from twisted.internet.ssl import CertificateOptions

            # cryptography objects, not pyOpenSSL's X509/PKey (deprecated; pyOpenSSL takes both).
            self._server_options = CertificateOptions(
                privateKey=serialization.load_pem_private_key(self.key_pem, password=None),  # type: ignore[arg-type]
                certificate=x509.load_pem_x509_certificate(self.cert_pem),  # type: ignore[arg-type]
                acceptableProtocols=[b"http/1.1"],
            )
        return self._server_options

    def client_context_factory(self, hostname: str | None = None) -> IOpenSSLClientConnectionCreator:
        """Client TLS options trusting only this CA and checking `hostname` (default: `host`).

        What Rancher does with the params' caCert; used by the Rancher stand-in and by tests.
        """
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        return optionsForClientTLS(
            hostname or self.host,
            trustRoot=Certificate.loadPEM(self.ca_cert_pem),
            acceptableProtocols=[b"http/1.1"],
        )


def load_or_create(
    state: StateDir | Path | str | None,
    host: str = DEFAULT_HOST,
    *,
    clock: Callable[[], float] = time.time,
) -> ClusterPKI:
    """The process's PKI for apiserver `host`: loaded from `state`, created there the first time.

    With `state=None` a fresh CA and certificate are made in memory (the one-cluster CLI, tests).
    The CA is never replaced unless its files are unreadable, in which case they are moved aside and
    reported (a new CA changes every cluster's `caCert`, so Rancher restarts its controllers for them).
    The serving certificate is reissued under the same CA when it lacks `host`, does not match its key,
    was not issued by the CA, or expires within `RENEW_BEFORE`.
    """
    host = normalise_host(host)
    now = _utc(clock())
    if state is None:
        ca_cert, ca_key = _new_ca(now)
        cert, key = _new_serving(ca_cert, ca_key, host, now)
        return _build(host, ca_cert, ca_key, cert, key, ())
    if not isinstance(state, StateDir):
        state = StateDir(state)
    with state.lock(_LOCK):
        return _load_or_create_locked(state, host, now)


def _build(host, ca_cert, ca_key, cert, key, recovered) -> ClusterPKI:
    del ca_key  # the CA key stays on disk; nothing in the running process signs with it afterwards
    return ClusterPKI(
        host=host,
        ca_cert_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=_key_pem(key),
        recovered=tuple(recovered),
    )


def _load_pair(state: StateDir, cert_name: str, key_name: str, recovered: list[CorruptStateFile]):
    """(cert, key) from two PEM files; None if both are absent; a broken pair is moved aside → None."""
    cert_pem, key_pem = state.read_bytes(cert_name), state.read_bytes(key_name)
    if cert_pem is None and key_pem is None:
        return None
    problem = None
    cert = key = None
    if cert_pem is None or key_pem is None:
        problem = f"{cert_name if cert_pem is None else key_name} is missing"
    else:
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as error:
            problem = f"{cert_name} is not a PEM certificate ({error})"
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as error:
            problem = problem or f"{key_name} is not an unencrypted PEM private key ({error})"
        if problem is None and not isinstance(key, ec.EllipticCurvePrivateKey):
            problem = f"{key_name} is not an ECDSA key"
        if problem is None and not _same_key(cert, key):
            problem = f"{cert_name} does not match {key_name}"
    if problem is None:
        return cert, key
    for name in (cert_name, key_name):
        if state.exists(name):
            try:
                state.corrupt(name, problem)
            except CorruptStateFile as error:
                recovered.append(error)
    return None


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _load_or_create_locked(state: StateDir, host: str, now: datetime.datetime) -> ClusterPKI:
    recovered: list[CorruptStateFile] = []
    ca = _load_pair(state, CA_CERT, CA_KEY, recovered)
    if ca is None:
        ca_cert, ca_key = _new_ca(now)
        # Key first: a crash between the two writes leaves a key without a certificate, which the next
        # start reports and replaces, never a certificate whose key is lost.
        state.write_bytes(CA_KEY, _key_pem(ca_key), private=True)
        state.write_bytes(CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM))
        log.info("created a new cluster CA in {path}", path=str(state.file(CA_CERT)))
    else:
        ca_cert, ca_key = ca
    serving = _load_pair(state, SERVING_CERT, SERVING_KEY, recovered)
    reason = None
    if serving is None:
        reason = "none was found"
    else:
        cert, key = serving
        if not _issued_by(cert, ca_cert):
            reason = "it was not issued by the current CA"
        elif not required_names(host) <= _san_texts(cert):
            reason = f"it lacks the apiserver host {host}"
        elif cert.not_valid_after_utc - now < RENEW_BEFORE:
            reason = "it expires soon"
    if reason is not None:
        cert, key = _new_serving(ca_cert, ca_key, host, now)
        state.write_bytes(SERVING_KEY, _key_pem(key), private=True)
        state.write_bytes(SERVING_CERT, cert.public_bytes(serialization.Encoding.PEM))
        log.info("issued a new apiserver serving certificate for {host}: {reason}", host=host, reason=reason)
    return _build(host, ca_cert, ca_key, cert, key, recovered)
