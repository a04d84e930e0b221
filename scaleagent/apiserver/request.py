"""The per-cluster context a resource tree serves from, and one parsed API request.

`ApiContext` is everything one cluster's tree needs (store, tokens, version, clock); it is shared by
every connection to that cluster.  `ApiRequest` is what the tree hands to the write handlers
(`scaleagent.apiserver.writes.handle`): the resolved type, namespace, name, subresource, query, headers,
raw body and the caller.  Neither holds anything from Twisted, so handlers stay pure and testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scaleagent.apiserver.auth import ADMIN, TokenAuthenticator, User
from scaleagent.apiserver.bodies import decode_body, media_type
from scaleagent.apiserver.kinds import Registry, ResourceType
from scaleagent.apiserver.store import Store

DEFAULT_VERSION = "v1.32.4"


@dataclass(slots=True)
class ApiContext:
    """One cluster's API: its store (and, through it, its resource types), tokens and settings.

    `clock` is an `IReactorTime` (the reactor, or `task.Clock` in tests) used for watch timeouts and
    bookmarks.  `extras` is room for other layers' per-cluster state (e.g. a token controller).
    """

    store: Store
    clock: Any
    auth: TokenAuthenticator = field(default_factory=TokenAuthenticator)
    version: str = DEFAULT_VERSION
    #: host:port clients reach this apiserver at (discovery's serverAddressByClientCIDRs)
    address: str = "10.43.0.1:443"
    #: PEM of the CA that signed the serving certificate (token Secrets' ca.crt)
    ca_pem: bytes = b""
    #: seconds between BOOKMARK events on a watch that allowed them
    bookmark_interval: float = 60.0
    #: a watch without timeoutSeconds ends after this long (real servers: 30-60 min)
    max_watch_seconds: float = 1800.0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def kinds(self) -> Registry:
        return self.store.kinds

    def issue_admin_token(self, token: str | None = None) -> str:
        """A bearer token for the cluster admin (system:masters)."""
        return self.auth.issue(ADMIN, token)


@dataclass(slots=True)
class ApiRequest:
    """One request on a resource path, resolved against the cluster's types."""

    method: str
    api: ApiContext
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    #: first value of each query parameter
    query: Mapping[str, str]
    #: lower-case header name → all values
    headers: Mapping[str, list[str]]
    body: bytes
    user: User

    @property
    def store(self) -> Store:
        return self.api.store

    @property
    def content_type(self) -> str:
        """The request's media type without parameters ("" when absent)."""
        values = self.headers.get("content-type")
        return media_type(values[0]) if values else ""

    def param(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun", "") == "All"

    def decode_body(self) -> Any:
        """The body as a Python value (JSON, YAML, protobuf via the protobuf hook); ApiError 400/415."""
        values = self.headers.get("content-type")
        return decode_body(values[0] if values else "", self.body)
