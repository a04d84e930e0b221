"""Keep secrets out of logs: one redaction function and the logger that applies it.

Rancher API tokens, registration tokens, bearer and service-account tokens (JWTs) and PEM private keys
are replaced before any event reaches an observer.  Code logs through `logger()` so no call site can
forget; values that are secrets travel as `Secret`, whose str and repr are a mask.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from twisted.logger import ILogObserver, Logger, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

MASK = "<redacted>"

_PATTERNS = [
    # PEM private keys of any kind, whole block.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), MASK),
    # Rancher API tokens: keep the public access-key part, hide the secret.
    (re.compile(r"\b(token-[a-z0-9]+):[A-Za-z0-9]+"), r"\1:" + MASK),
    # HTTP credentials in header form, whatever the token looks like.
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+"), r"\1 " + MASK),
    (re.compile(r"(?i)(x-api-tunnel-token[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), r"\1" + MASK),
    (re.compile(r"(?i)(\btoken[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), r"\1" + MASK),
    # The steve tunnel's credential "stv-cluster-<registration token>" (a client key such as
    # stv-cluster-c-58jmv is not a secret), and JWTs (service-account tokens) anywhere.
    (re.compile(r"\bstv-cluster-[A-Za-z0-9]{20,}"), "stv-cluster-" + MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    # Rancher registration tokens: 54 characters of Rancher's token alphabet.
    (re.compile(r"\b[bcdfghjklmnpqrstvwxz2456789]{54}\b"), MASK),
]


def redact(text: str) -> str:
    """Return `text` with every recognisable secret replaced by a mask."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Secret:
    """A secret string that prints as a mask; call `reveal()` where the real value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(item) for item in value)
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return value


@implementer(ILogObserver)
class RedactingObserver:
    """Forward each event to `observer` with its format and string fields redacted."""

    def __init__(self, observer: ILogObserver) -> None:
        self._observer = observer

    def __call__(self, event: dict[str, Any]) -> None:
        cleaned = {}
        for key, value in event.items():
            if key.startswith("log_") and key not in ("log_format", "log_text"):
                cleaned[key] = value
            else:
                cleaned[key] = _clean(value)
        failure = event.get("log_failure")
        if failure is not None:
            cleaned["log_failure"] = _clean_failure(failure)
        self._observer(cleaned)


def _clean_failure(failure: Failure) -> Failure:
    """`failure` with its exception's args redacted, as a copy: the code that logged it may still raise
    or read the original exception, which must keep its real args."""
    value = failure.value
    args = getattr(value, "args", ())
    cleaned = tuple(_clean(arg) for arg in args)
    if cleaned == args:
        return failure  # nothing secret: no copy
    try:
        copied = type(value).__new__(type(value))  # no __init__: any constructor signature
        copied.__dict__.update(getattr(value, "__dict__", {}))
        copied.args = cleaned
        result = Failure.__new__(Failure)
        result.__dict__.update(failure.__dict__)
        result.value = copied
        return result
    except Exception:
        value.args = cleaned  # cannot copy it: better a changed exception than a leaked secret
        return failure


_PUBLISHER = RedactingObserver(globalLogPublisher)


def logger(namespace: str | None = None, source: object = None) -> Logger:
    """A `twisted.logger.Logger` whose events are redacted before anyone observes them.

    The namespace defaults to the calling module's name, as `Logger()` itself would do.
    """
    if namespace is None:
        namespace = sys._getframe(1).f_globals.get("__name__", "scaleagent")
    return Logger(namespace=namespace, source=source, observer=_PUBLISHER)
