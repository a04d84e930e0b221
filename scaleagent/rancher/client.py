"""A treq client of Rancher's v3 management API: what an importing agent needs, nothing more.

    rancher = RancherClient(reactor, "https://rancher.example", Secret("token-abcde:..."),
                            ca_checksum="<CATTLE_CA_CHECKSUM>")
    info = await rancher.check_server()           # /ping, cacerts vs checksum, server-version
    cluster = await rancher.import_cluster("scale-00000")   # adopts a same-name cluster
    token = await rancher.registration_token(cluster.id)    # waits, creates one if none
    status = await rancher.get_cluster(cluster.id)          # state + conditions, None if gone
    await rancher.delete_cluster(cluster.id)

Trust follows the real agent (rancher-protocol.md §1.2): `/ping` and `/v3/settings/cacerts` are fetched
without verification, the cacerts value is checked against the configured checksum
(sha256 of the value with a trailing newline), and from then on the value is the CA bundle (system roots
when Rancher's cacerts is empty). `insecure = true` skips every check.

Every failure is a `RancherError` whose `kind` says what went wrong (auth, unreachable, tls, checksum,
server, timeout, request, protocol) and whose text is one line fit for a log; nothing here retries —
callers decide (see `call_with_retry`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import treq
from OpenSSL import SSL
from treq.client import HTTPClient
from twisted.internet import defer, error, ssl
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from scaleagent.redact import Secret, logger

log = logger()

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
MAX_BODY = 64 * 1024 * 1024
MAX_PAGES = 1000

# RancherError kinds
AUTH = "auth"
UNREACHABLE = "unreachable"
TLS = "tls"
CHECKSUM = "checksum"
SERVER = "server"
TIMEOUT = "timeout"
REQUEST = "request"
PROTOCOL = "protocol"
NOT_FOUND = "not-found"


class RancherError(Exception):
    """One Rancher API failure, described in one line; `kind` is one of the module's constants."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status

    @property
    def summary(self) -> str:
        """A short text that is the same for the same failure on every cluster (for aggregation)."""
        return f"{self.kind}" + (f" (HTTP {self.status})" if self.status else "")

    def __str__(self) -> str:
        return self.message


def ca_checksum(cacerts: str) -> str:
    """sha256 hex of `cacerts` with a trailing newline, as Rancher computes CATTLE_CA_CHECKSUM
    (and as the agent's `jq -r .value | sha256sum` sees it); "" for an empty value."""
    if not cacerts:
        return ""
    if not cacerts.endswith("\n"):
        cacerts += "\n"
    return hashlib.sha256(cacerts.encode()).hexdigest()


def pem_certificates(bundle: str) -> list[ssl.Certificate]:
    """The certificates in a PEM bundle; ValueError if there are none or one is unreadable."""
    marker = "-----END CERTIFICATE-----"
    certs = []
    for piece in bundle.split(marker)[:-1]:
        start = piece.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            certs.append(ssl.Certificate.loadPEM((piece[start:] + marker + "\n").encode()))
    if not certs:
        raise ValueError("no PEM certificate in the bundle")
    return certs


@implementer(IPolicyForHTTPS)
class TrustPolicy:
    """How treq trusts Rancher: not at all (insecure), a CA bundle, or the system roots."""

    def __init__(self, ca_pem: str = "", insecure: bool = False) -> None:
        self.insecure = insecure
        self.ca_pem = ca_pem
        self._trust: Any = None
        if ca_pem and not insecure:
            certs = pem_certificates(ca_pem)
            self._trust = certs[0] if len(certs) == 1 else ssl.trustRootFromCertificates(certs)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:  # noqa: N802 (Twisted's name)
        if self.insecure:
            return ssl.CertificateOptions(verify=False)
        host = hostname.decode("ascii")
        if self._trust is not None:
            return ssl.optionsForClientTLS(host, trustRoot=self._trust)
        return ssl.optionsForClientTLS(host)


@dataclass(frozen=True)
class ServerInfo:
    """What `check_server` learnt: Rancher's version and the CA bundle used from then on."""

    version: str
    cacerts: str
    checksum: str


@dataclass(frozen=True)
class ClusterInfo:
    """A management cluster as the v3 API shows it (the fields the agent uses)."""

    id: str
    name: str
    state: str = ""
    transitioning_message: str = ""
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    driver: str = ""

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ClusterInfo:
        if not isinstance(body.get("id"), str) or not isinstance(body.get("name"), str):
            raise RancherError(PROTOCOL, "Rancher returned a cluster without id or name")
        conditions = {}
        for condition in body.get("conditions") or []:
            if isinstance(condition, dict) and isinstance(condition.get("type"), str):
                conditions[condition["type"]] = condition
        return cls(
            id=body["id"],
            name=body["name"],
            state=str(body.get("state") or ""),
            transitioning_message=str(body.get("transitioningMessage") or ""),
            conditions=conditions,
            driver=str(body.get("driver") or ""),
        )

    def condition(self, type_: str) -> str:
        """The status ("True", "False", "Unknown") of a condition, "" if absent."""
        return str(self.conditions.get(type_, {}).get("status", ""))


def _describe_failure(url: str, failure_value: BaseException) -> RancherError:
    """Map a connection-level exception to a RancherError with one clear line."""
    reasons: list[BaseException] = [failure_value]
    for attr in ("reasons",):
        for reason in getattr(failure_value, attr, []) or []:
            reasons.append(getattr(reason, "value", reason))
    for reason in reasons:
        if isinstance(reason, (defer.CancelledError, defer.TimeoutError, error.TimeoutError)):
            return RancherError(TIMEOUT, f"Rancher {url}: no answer in time (timeout)")
        if isinstance(reason, SSL.Error):
            return RancherError(
                TLS,
                f"Rancher {url}: TLS failed ({_ssl_text(reason)}); check [rancher] ca_checksum, or "
                "insecure = true for a test rig",
            )
        if isinstance(reason, error.DNSLookupError):
            return RancherError(UNREACHABLE, f"Rancher {url}: host name not found (DNS)")
        if isinstance(
            reason,
            (error.ConnectionRefusedError, error.NoRouteError, error.ConnectError, error.ConnectionLost),
        ):
            return RancherError(UNREACHABLE, f"Rancher {url}: cannot connect ({type(reason).__name__})")
    return RancherError(UNREACHABLE, f"Rancher {url}: request failed ({type(failure_value).__name__})")


def _ssl_text(reason: BaseException) -> str:
    try:
        parts = [item[2] for item in reason.args[0] if len(item) > 2 and item[2]]
    except (IndexError, TypeError):
        parts = []
    return ", ".join(parts) or "handshake error"


def _error_message(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return body[:120].decode("utf-8", "replace").strip()
    if isinstance(value, dict):
        return str(value.get("code") or "") + (
            (": " + str(value["message"])) if value.get("message") else ""
        )
    return ""


class RancherClient:
    """Rancher's management API over treq. One instance per process; requests may run concurrently."""

    def __init__(
        self,
        reactor: Any,
        url: str,
        token: Secret,
        *,
        ca_checksum: str = "",
        insecure: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        http: Any = None,
        max_connections: int = 16,
    ) -> None:
        self._reactor = reactor
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"Rancher URL must be https://host[:port], not {url!r}")
        self.host = parts.hostname
        self._token = token
        self.ca_checksum = ca_checksum
        self.insecure = insecure
        self.timeout = timeout
        self.cacerts = ""
        self.version = ""
        self._max_connections = max_connections
        self._pools: list[HTTPConnectionPool] = []
        self._stub = http
        # Until the server is checked, only the public /ping and cacerts are asked, without verification.
        self._probe = http if http is not None else self._http(TrustPolicy(insecure=True))
        self._api = http if http is not None else self._http(TrustPolicy(insecure=insecure))
        self.requests = 0

    # -- plumbing ------------------------------------------------------------------------------------

    def _http(self, policy: TrustPolicy) -> HTTPClient:
        pool = HTTPConnectionPool(self._reactor, persistent=True)
        pool.maxPersistentPerHost = self._max_connections
        pool.retryAutomatically = False
        self._pools.append(pool)
        return HTTPClient(Agent(self._reactor, contextFactory=policy, pool=pool, connectTimeout=10))

    def trust(self, cacerts: str) -> None:
        """Use `cacerts` (PEM, "" for system roots) as the CA bundle of every later API call."""
        self.cacerts = cacerts
        if self._stub is None:
            old = self._api
            self._api = self._http(TrustPolicy(cacerts, insecure=self.insecure))
            del old

    async def close(self) -> None:
        """Close pooled connections (on stop)."""
        pools, self._pools = self._pools, []
        for pool in pools:
            await pool.closeCachedConnections()

    def _headers(self, authenticated: bool) -> dict[str, list[str]]:
        headers = {"Accept": ["application/json"]}
        if authenticated:
            headers["Authorization"] = ["Bearer " + self._token.reveal()]
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        authenticated: bool = True,
        probe: bool = False,
    ) -> tuple[int, bytes]:
        url = self.url + path if path.startswith("/") else path
        http = self._probe if probe else self._api
        self.requests += 1

        async def go() -> tuple[int, bytes]:
            kwargs: dict[str, Any] = {"headers": self._headers(authenticated)}
            if body is not None:
                kwargs["json"] = body
            response = await http.request(method, url, **kwargs)
            content = await treq.content(response)
            return response.code, content

        d = defer.ensureDeferred(go())
        d.addTimeout(self.timeout, self._reactor)
        try:
            code, content = await d
        except RancherError:
            raise
        except Exception as failure:  # connection-level: classify into one line
            raise _describe_failure(self.url, failure) from None
        if code in (401, 403):
            raise RancherError(
                AUTH,
                f"Rancher {self.url}: the API token was refused (HTTP {code} {_error_message(content)}); "
                "check [rancher] token_file / $SCALEAGENT_RANCHER_TOKEN",
                code,
            )
        if code >= 500:
            raise RancherError(
                SERVER, f"Rancher {self.url}: server error on {method} {path} (HTTP {code})", code
            )
        return code, content

    async def _json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        code, content = await self._request(method, path, **kwargs)
        try:
            return code, json.loads(content) if content.strip() else None
        except ValueError:
            raise RancherError(
                PROTOCOL, f"Rancher {self.url}: {method} {path} answered HTTP {code} with non-JSON"
            ) from None

    def _unexpected(self, method: str, path: str, code: int, value: Any) -> RancherError:
        detail = ""
        if isinstance(value, dict):
            detail = str(value.get("code") or "")
            if value.get("message"):
                detail += ": " + str(value["message"])
        kind = NOT_FOUND if code == 404 else REQUEST
        return RancherError(kind, f"Rancher {self.url}: {method} {path}: HTTP {code} {detail}".rstrip(), code)

    # -- the server ----------------------------------------------------------------------------------

    async def ping(self) -> None:
        """GET /ping without verification, as the real agent's `curl --insecure` does."""
        code, content = await self._request("GET", "/ping", authenticated=False, probe=True)
        if code != 200:
            raise RancherError(PROTOCOL, f"Rancher {self.url}: /ping answered HTTP {code}", code)

    async def fetch_cacerts(self) -> str:
        """The `cacerts` setting (public), fetched without verification; "" when Rancher has none."""
        code, value = await self._json("GET", "/v3/settings/cacerts", authenticated=False, probe=True)
        if code != 200 or not isinstance(value, dict) or not isinstance(value.get("value", ""), str):
            raise RancherError(
                PROTOCOL, f"Rancher {self.url}: /v3/settings/cacerts answered HTTP {code}", code
            )
        return value.get("value") or ""

    async def check_server(self) -> ServerInfo:
        """Ping, check cacerts against the configured checksum, trust it, read and log the version."""
        await self.ping()
        cacerts = await self.fetch_cacerts()
        checksum = ca_checksum(cacerts)
        if self.ca_checksum and not self.insecure:
            if checksum != self.ca_checksum:
                raise RancherError(
                    CHECKSUM,
                    f"Rancher {self.url}: CA checksum mismatch: [rancher] ca_checksum is "
                    f"{self.ca_checksum[:12]}…, Rancher's cacerts hash to {checksum[:12] or '(empty)'}…; "
                    "copy CATTLE_CA_CHECKSUM from Rancher's import manifest",
                )
        if cacerts and not self.insecure:
            try:
                pem_certificates(cacerts)
            except Exception:
                raise RancherError(
                    TLS, f"Rancher {self.url}: the cacerts setting holds no readable PEM certificate"
                ) from None
        self.trust(cacerts if not self.insecure else "")
        code, value = await self._json("GET", "/v3/settings/server-version")
        if code != 200 or not isinstance(value, dict):
            raise self._unexpected("GET", "/v3/settings/server-version", code, value)
        self.version = str(value.get("value") or "unknown")
        log.info(
            "Rancher {url}: version {version}, CA {ca}",
            url=self.url,
            version=self.version,
            ca=("not verified (insecure = true)" if self.insecure else
                f"from cacerts, sha256 {checksum[:12]}…" if cacerts else "system roots"),
        )
        return ServerInfo(version=self.version, cacerts=cacerts, checksum=checksum)

    # -- clusters ------------------------------------------------------------------------------------

    async def _collection(self, path: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """Every item of a v3 collection, following `pagination.next` (bounded)."""
        url = path + ("?" + urlencode(query) if query else "")
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            code, value = await self._json("GET", url)
            if code != 200 or not isinstance(value, dict) or not isinstance(value.get("data"), list):
                raise self._unexpected("GET", path, code, value)
            items.extend(item for item in value["data"] if isinstance(item, dict))
            following = (value.get("pagination") or {}).get("next")
            if not following:
                return items
            url = following
        return items

    async def find_cluster(self, name: str) -> ClusterInfo | None:
        """The cluster of exactly this name, or None."""
        for item in await self._collection("/v3/clusters", {"name": name}):
            if item.get("name") == name:
                return ClusterInfo.from_json(item)
        return None

    async def list_clusters(self, prefix: str = "") -> list[ClusterInfo]:
        """Every cluster whose name starts with `prefix`."""
        items = await self._collection("/v3/clusters", {})
        return [ClusterInfo.from_json(item) for item in items if str(item.get("name", "")).startswith(prefix)]

    async def get_cluster(self, cluster_id: str) -> ClusterInfo | None:
        """The cluster's state and conditions; None when Rancher no longer has it."""
        path = f"/v3/clusters/{cluster_id}"
        code, value = await self._json("GET", path)
        if code == 404:
            return None
        if code != 200 or not isinstance(value, dict):
            raise self._unexpected("GET", path, code, value)
        return ClusterInfo.from_json(value)

    async def import_cluster(self, name: str) -> tuple[ClusterInfo, bool]:
        """Create an imported cluster named `name`; if Rancher has one of that name already, adopt it.

        Returns (cluster, adopted)."""
        code, value = await self._json("POST", "/v3/clusters", body={"type": "cluster", "name": name})
        if code in (200, 201) and isinstance(value, dict):
            return ClusterInfo.from_json(value), False
        clash = isinstance(value, dict) and value.get("code") in ("NotUnique", "AlreadyExists")
        if code in (409, 422) and clash:
            existing = await self.find_cluster(name)
            if existing is not None:
                return existing, True
            raise RancherError(
                REQUEST, f"Rancher {self.url}: cluster {name} exists (NotUnique) but cannot be found by name"
            )
        raise self._unexpected("POST", "/v3/clusters", code, value)

    async def delete_cluster(self, cluster_id: str) -> bool:
        """Delete a cluster; False when it was already gone."""
        path = f"/v3/clusters/{cluster_id}"
        code, value = await self._json("DELETE", path)
        if code == 404:
            return False
        if code not in (200, 202, 204):
            raise self._unexpected("DELETE", path, code, value)
        return True

    # -- registration tokens -------------------------------------------------------------------------

    async def find_registration_token(self, cluster_id: str) -> Secret | None:
        """A usable registration token of the cluster (default-token first), or None yet."""
        items = await self._collection("/v3/clusterregistrationtokens", {"clusterId": cluster_id})
        items = [i for i in items if i.get("clusterId") == cluster_id and isinstance(i.get("token"), str)]
        items.sort(key=lambda item: (item.get("name") != "default-token", str(item.get("created", ""))))
        for item in items:
            if item["token"]:
                return Secret(item["token"])
        return None

    async def create_registration_token(self, cluster_id: str) -> None:
        code, value = await self._json(
            "POST",
            "/v3/clusterregistrationtokens",
            body={"type": "clusterRegistrationToken", "clusterId": cluster_id},
        )
        if code not in (200, 201):
            raise self._unexpected("POST", "/v3/clusterregistrationtokens", code, value)

    async def registration_token(
        self, cluster_id: str, *, attempts: int = 30, interval: float = 1.0, create_after: int = 5
    ) -> Secret:
        """The cluster's registration token, waiting for Rancher to make one (it does, as
        `default-token`, shortly after the cluster is created); after `create_after` empty looks one is
        created."""
        created = False
        for attempt in range(attempts):
            token = await self.find_registration_token(cluster_id)
            if token is not None:
                return token
            if attempt + 1 >= create_after and not created:
                await self.create_registration_token(cluster_id)
                created = True
                continue
            await sleep(self._reactor, interval)
        raise RancherError(
            TIMEOUT, f"Rancher {self.url}: no registration token for {cluster_id} after {attempts} looks"
        )


def sleep(clock: Any, seconds: float) -> defer.Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(clock, seconds, lambda: None)


async def call_with_retry(
    clock: Any,
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    delays: Callable[[], float],
    attempts: int | None = None,
    on_error: Callable[[RancherError], None] | None = None,
) -> T:
    """Run `operation` until it succeeds; each RancherError is reported (`on_error`, else one log line)
    and followed by `delays()` seconds of waiting. `attempts` bounds the tries (None: forever)."""
    tried = 0
    while True:
        try:
            return await operation()
        except RancherError as failure:
            tried += 1
            delay = delays()
            if on_error is not None:
                on_error(failure)
            else:
                log.warn(
                    "{what}: {error}; retrying in {delay:.1f}s", what=what, error=str(failure), delay=delay
                )
            if attempts is not None and tried >= attempts:
                raise
            await sleep(clock, delay)


__all__ = [
    "RancherClient",
    "RancherError",
    "ServerInfo",
    "ClusterInfo",
    "TrustPolicy",
    "ca_checksum",
    "call_with_retry",
]
