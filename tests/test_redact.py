"""Secrets never reach a log observer."""

from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from scaleagent.redact import MASK, Secret, logger, redact

REGISTRATION_TOKEN = "bcdfghjklmnpqrstvwxz2456789bcdfghjklmnpqrstvwxz2456789"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl"
PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB0secretkeymaterial\n-----END EC PRIVATE KEY-----"


def test_rancher_api_token_keeps_its_public_part():
    assert redact("auth token-ab12c:supersecretvalue failed") == f"auth token-ab12c:{MASK} failed"


def test_bearer_and_headers():
    assert redact("Authorization: Bearer abc.def-ghi") == f"Authorization: Bearer {MASK}"
    assert redact("X-API-Tunnel-Token: qwerty123") == f"X-API-Tunnel-Token: {MASK}"
    assert redact('{"token": "s3cr3t", "address": "10.43.0.1:443"}') == (
        f'{{"token": "{MASK}", "address": "10.43.0.1:443"}}'
    )


def test_steve_credential_jwt_registration_token_and_key():
    assert redact(f"Bearer-less stv-cluster-{REGISTRATION_TOKEN}") == f"Bearer-less stv-cluster-{MASK}"
    assert redact("client key stv-cluster-c-58jmv") == "client key stv-cluster-c-58jmv"
    assert redact(f"sa token {JWT} here") == f"sa token {MASK} here"
    assert redact(f"crt={REGISTRATION_TOKEN}") == f"crt={MASK}"
    assert redact(f"key:\n{PEM}\nend") == f"key:\n{MASK}\nend"


def test_harmless_text_is_untouched():
    text = "cluster scale-00042 connected to https://rancher.example:443 in 12 ms"
    assert redact(text) == text


def test_secret_value_prints_as_mask():
    secret = Secret("token-x:y")
    assert MASK in repr(secret) and "token-x:y" not in f"{secret}"
    assert secret.reveal() == "token-x:y"
    assert secret == Secret("token-x:y") and secret != Secret("other")


def test_logger_redacts_fields_format_and_failures():
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        log = logger("scaleagent.test")
        log.info("connecting with {header}", header=f"Bearer {JWT}")
        log.info(f"inline token-abc12:{'x' * 20}")
        try:
            raise ValueError(f"refused {REGISTRATION_TOKEN}")
        except ValueError:
            log.failure("tunnel failed", Failure(), level=LogLevel.error)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    texts = [formatEvent(event) for event in seen if event.get("log_namespace") == "scaleagent.test"]
    assert texts[0] == f"connecting with Bearer {MASK}"
    assert texts[1] == f"inline token-abc12:{MASK}"
    failure_event = [e for e in seen if "log_failure" in e][0]
    assert REGISTRATION_TOKEN not in str(failure_event["log_failure"].value)
    assert all(JWT not in repr(event) for event in seen)


def test_logger_namespace_defaults_to_calling_module():
    assert logger().namespace == __name__


def test_logging_a_failure_leaves_the_original_exception_intact():
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        log = logger("scaleagent.test")
        error = ValueError(f"refused {REGISTRATION_TOKEN}", 7)
        try:
            raise error
        except ValueError:
            failure = Failure()
            log.failure("tunnel failed", failure)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    logged = [e for e in seen if e.get("log_namespace") == "scaleagent.test"][0]["log_failure"]
    assert REGISTRATION_TOKEN not in logged.getTraceback() and MASK in str(logged.value)
    assert logged.value.args[1] == 7 and isinstance(logged.value, ValueError)
    assert error.args == (f"refused {REGISTRATION_TOKEN}", 7)  # the caller's exception is untouched
    assert failure.value is error
