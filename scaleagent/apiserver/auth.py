"""Who is calling: bearer tokens this cluster issued, impersonation headers, anonymous access.

A real apiserver answers an unknown token with 401; so do we, unless the cluster is configured
`anonymous`.  Tokens are per cluster (its admin token, later one per service account).  Nothing here
logs a token.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from scaleagent.apiserver import status

ANONYMOUS_NAME = "system:anonymous"


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated identity, as SelfSubjectReview and TokenReview report it."""

    name: str
    groups: tuple[str, ...] = ("system:authenticated",)
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The `userInfo` shape of TokenReview/SelfSubjectReview."""
        out: dict = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {key: list(values) for key, values in self.extra.items()}
        return out


ANONYMOUS = User(ANONYMOUS_NAME, ("system:unauthenticated",))
ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"))


def new_token() -> str:
    """A fresh random bearer token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


class TokenAuthenticator:
    """The bearer tokens one cluster accepts."""

    __slots__ = ("_tokens", "anonymous")

    def __init__(self, *, anonymous: bool = False) -> None:
        self._tokens: dict[str, User] = {}
        self.anonymous = anonymous

    def issue(self, user: User, token: str | None = None) -> str:
        """Accept `token` (a new random one if None) as `user` from now on; returns the token."""
        token = token or new_token()
        self._tokens[token] = user
        return token

    def revoke(self, token: str) -> None:
        self._tokens.pop(token, None)

    def user(self, token: str) -> User | None:
        """The user of a token this cluster issued, else None (TokenReview uses this)."""
        return self._tokens.get(token)

    def authenticate(self, authorization: str | None) -> User:
        """The caller for an `Authorization` header value; 401 Unauthorized ApiError otherwise."""
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                found = self._tokens.get(token.strip())
                if found is not None:
                    return found
        if self.anonymous:
            return ANONYMOUS
        raise status.unauthorized()


def impersonate(user: User, headers: Mapping[str, list[str]]) -> User:
    """The user a request acts as, honouring `Impersonate-User`, `-Group`, `-Uid` and `-Extra-*`.

    `headers` maps lower-case header names to all their values.  Every caller may impersonate (the
    simulated cluster authorises everything).
    """
    names = headers.get("impersonate-user")
    if not names:
        return user
    groups = tuple(headers.get("impersonate-group", ()))
    extra: dict[str, tuple[str, ...]] = {}
    for header, values in headers.items():
        if header.startswith("impersonate-extra-"):
            extra[header[len("impersonate-extra-") :]] = tuple(values)
    if "system:authenticated" not in groups:
        groups = (*groups, "system:authenticated")
    uid = (headers.get("impersonate-uid") or [""])[0]
    return User(names[0], groups, uid, extra)
