"""The shared X.509 helpers: what the CA and the serving certificates carry."""

import datetime
import ipaddress

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from scaleagent import certs

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


def test_general_name_distinguishes_addresses_from_names():
    assert certs.general_name("10.43.0.1") == x509.IPAddress(ipaddress.ip_address("10.43.0.1"))
    assert certs.general_name("::1") == x509.IPAddress(ipaddress.ip_address("::1"))
    assert certs.general_name("kubernetes.default.svc") == x509.DNSName("kubernetes.default.svc")


def test_serving_certificate_is_signed_by_the_ca_and_never_outlives_it():
    ca, ca_key = certs.new_ca("test-ca", NOW, 10 * HOUR, backdate=HOUR, path_length=0)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = [certs.general_name("10.43.0.1"), certs.general_name("localhost")]
    later = NOW + 100 * HOUR
    cert, _key = certs.issue_serving(ca, ca_key, "kube-apiserver", names, NOW, later, backdate=HOUR)
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_before_utc == NOW - HOUR
    assert cert.not_valid_after_utc == ca.not_valid_after_utc  # capped at the CA's end
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(sans) == names
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
