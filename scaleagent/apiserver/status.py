"""Kubernetes `Status` errors: the one way anything in the apiserver tree reports a failure.

client-go maps `reason` and `code` to `IsNotFound`, `IsConflict`, `IsExpired` …, so every error carries
the reason and details a real apiserver would send.  Raise an `ApiError`; the resource tree turns it into
an HTTP response (or, inside a watch stream, an ERROR event).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An API failure with the HTTP code, Kubernetes reason, message and details of a `Status`."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        group: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        uid: str | None = None,
        causes: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.group = group
        self.kind = kind
        self.name = name
        self.uid = uid
        self.causes = causes
        self.retry_after = retry_after

    def details(self) -> dict[str, Any] | None:
        """The `details` of the Status, or None when the error names nothing."""
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group is not None:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.uid is not None:
            details["uid"] = self.uid
        if self.causes:
            details["causes"] = list(self.causes)
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        return details or None

    def status(self) -> dict[str, Any]:
        """The `Status` object for this error, as the JSON dict a real apiserver sends."""
        return status_dict(self.code, self.reason, self.message, self.details())

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def status_dict(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A failure `Status` dict (`status: Failure`)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        body["details"] = details
    body["code"] = code
    return body


def success_status(
    *, name: str | None = None, group: str | None = None, kind: str | None = None, uid: str | None = None
) -> dict[str, Any]:
    """A `status: Success` Status, as DELETE answers for most kinds (details.kind is the plural)."""
    details: dict[str, Any] = {}
    if name is not None:
        details["name"] = name
    if group is not None:
        details["group"] = group
    if kind is not None:
        details["kind"] = kind
    if uid is not None:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


# Constructors for the errors real clients recognise.  `plural` and `group` are the resource's, as in
# `deployments.apps "web" not found`.


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(group, plural)} "{name}" not found',
        group=group,
        kind=plural,
        name=name,
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(group, plural)} "{name}" already exists',
        group=group,
        kind=plural,
        name=name,
    )


def conflict(group: str, plural: str, name: str, reason: str | None = None) -> ApiError:
    detail = reason or (
        "the object has been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {detail}',
        group=group,
        kind=plural,
        name=name,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(group: str, kind: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid; each cause is {"reason": "FieldValueInvalid", "message": …, "field": …}."""
    what = f"{kind}.{group}" if group else kind
    parts = ", ".join(f"{c.get('field', '')}: {c.get('message', '')}".lstrip(": ") for c in causes)
    message = f'{what} "{name}" is invalid: {parts}' if parts else f'{what} "{name}" is invalid'
    return ApiError(422, "Invalid", message, group=group, kind=kind, name=name, causes=causes)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_old(requested: int, oldest: int) -> ApiError:
    return expired(f"too old resource version: {requested} ({oldest})")


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media_type(accepted: list[str]) -> ApiError:
    message = "the body of the request was in an unknown format"
    if accepted:
        message += " - accepted media types include: " + ", ".join(accepted)
    return ApiError(415, "UnsupportedMediaType", message)


def not_acceptable(accepted: list[str]) -> ApiError:
    message = "only the following media types are accepted: " + ", ".join(accepted)
    return ApiError(406, "NotAcceptable", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(
    message: str, *, group: str | None = None, kind: str | None = None, name: str | None = None
) -> ApiError:
    return ApiError(403, "Forbidden", message, group=group, kind=kind, name=name)


def too_large_resource_version() -> ApiError:
    """What a real server sends (504 Timeout) for a resourceVersion newer than it has: clients relist."""
    return ApiError(
        504,
        "Timeout",
        "Too large resource version",
        causes=[{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        retry_after=1,
    )


_INTERNAL = "an error on the server has prevented the request from succeeding"


def internal_error(message: str = _INTERNAL) -> ApiError:
    return ApiError(500, "InternalError", message)
