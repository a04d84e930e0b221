"""Rancher's v3 management API, the subset scaleagent uses, with Rancher's shapes, codes and auth.

Routes (rancher-protocol.md §6; Rancher's `pkg/multiclustermanager/routes.go` for which are public):

    GET  /ping                                   "pong", public
    GET  /v3/settings/cacerts                    public
    GET  /v3/settings/server-version
    GET  /v3/clusters[?name=&id=&state=&driver=&uuid=]   POST /v3/clusters (422 NotUnique on a name clash)
    GET  /v3/clusters/<id>                       DELETE /v3/clusters/<id> (`local`: 400, as Rancher's webhook)
    GET  /v3/clusters/<id>/clusterregistrationtokens
    GET  /v3/clusterregistrationtokens[?clusterId=&name=]   POST /v3/clusterregistrationtokens
    GET  /v3/clusterregistrationtokens/<clusterId>:<name>
    GET  /v3/import/<token>_<clusterId>.yaml     public
    /sim/...                                     stand-in controls that Rancher does not have (see below)

Everything else under /v3 needs `Authorization: Bearer token-xxxxx:<secret>` (or Basic with the same
pair, or the `R_SESS` cookie), else 401 `must authenticate`. Errors are norman's JSON errors
(`{"baseType":"error","type":"error","status":422,"code":"NotUnique",...}`); JSON keys are sorted, as Go
marshals maps. Collections page like norman's (`limit` 1000 by default, 3000 at most, `pagination.next`).

Stand-in controls, authenticated like /v3: `GET /sim/clusters` (tunnels, params changes),
`POST /sim/clusters/<id>/rotate-token`, `POST /sim/clusters/<id>/disconnect`, `GET /sim/status` (counts,
the traffic driver's summary and raw latency histograms per request kind), `POST /sim/tunnels/cut`
(drop every tunnel without a close handshake).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any, Protocol
from urllib.parse import unquote, urlencode

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from scaleagent.redact import logger
from scaleagent.sim import manifest
from scaleagent.sim.store import (
    ACTIVE,
    MAIN,
    PENDING,
    STEVE,
    Cluster,
    NotFound,
    NotUnique,
    Protected,
    RegistrationToken,
    SimStore,
)

log = logger()

JSON = b"application/json"
NOT_FOUND_TEXT = b"404 page not found\n"  # Go's http.NotFound
MUST_AUTHENTICATE = {"type": "error", "status": "401", "message": "must authenticate"}
LOCAL_NOT_DELETABLE = (
    'admission webhook "rancher.cattle.io.clusters.management.cattle.io" denied the request: '
    "local cluster may not be deleted"
)
MAX_BODY = 1024 * 1024
DEFAULT_LIMIT = 1000  # norman's page size
MAX_LIMIT = 3000  # Rancher's default public API body limit


class Backend(Protocol):
    """What the API needs from the stand-in service (`scaleagent.sim.service.RancherSim`)."""

    store: SimStore
    cacerts: str
    server_version: str
    creator_id: str

    @property
    def server_url(self) -> str: ...

    def check_api_token(self, credential: str) -> bool: ...

    def delete_cluster(self, cluster_id: str) -> Cluster: ...

    def disconnect_cluster(self, cluster_id: str) -> int: ...

    def status(self) -> dict[str, Any]: ...

    def cut_all_tunnels(self) -> int: ...


class APIError(Exception):
    """A norman API error: HTTP status, norman code, message, optional field name."""

    def __init__(self, status: int, code: str, message: str = "", field: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "baseType": "error",
            "type": "error",
            "status": self.status,
            "code": self.code,
            "message": self.message,
        }
        if self.field:
            body["fieldName"] = self.field
        return body


def not_found(kind: str, name: str) -> APIError:
    return APIError(404, "NotFound", f'{kind}.management.cattle.io "{name}" not found')


def _with_query(url: str, query: list[tuple[bytes, list[bytes]]]) -> str:
    pairs = [(key.decode("latin-1"), value.decode("latin-1")) for key, values in query for value in values]
    return url + ("?" + urlencode(pairs) if pairs else "")


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class ManagementAPI(Resource):
    """One leaf that routes on the whole path, so every error has Rancher's shape."""

    isLeaf = True

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self._backend = backend
        self.requests = 0

    # -- plumbing ------------------------------------------------------------------------------------

    def render(self, request: Request) -> bytes:
        self.requests += 1
        segments = [unquote(part) for part in request.path.decode("latin-1").split("/")[1:]]
        if len(segments) > 1 and segments[-1] == "":
            segments.pop()
        method = request.method.decode("latin-1")
        try:
            return self._route(request, method, segments)
        except APIError as error:
            return self._json(request, error.status, error.body())
        except Exception:
            log.failure("stand-in API: {method} {path} failed", method=method, path=request.path)
            return self._json(request, 500, APIError(500, "ServerError", "internal error").body())

    def _json(self, request: Request, status: int, value: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", JSON)
        return dumps(value)

    def _text(self, request: Request, status: int, text: bytes, content_type: bytes = b"text/plain") -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type)
        return text

    def _base(self, request: Request) -> str:
        url = self._backend.server_url
        if url:
            return url.rstrip("/")
        scheme = "https" if request.isSecure() else "http"
        host = (request.getHeader(b"host") or b"localhost").decode("latin-1")
        return f"{scheme}://{host}"

    def _authenticated(self, request: Request) -> bool:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1").strip()
        credential = ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            credential = value.strip()
        elif scheme.lower() == "basic":
            try:
                credential = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                credential = ""
        if not credential:
            cookie = request.getCookie(b"R_SESS")
            credential = cookie.decode("latin-1") if cookie else ""
        return bool(credential) and self._backend.check_api_token(credential)

    def _body(self, request: Request) -> dict[str, Any]:
        raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(raw) > MAX_BODY:
            raise APIError(413, "RequestEntityTooLarge", "request body too large")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise APIError(422, "InvalidBodyContent", f"Failed to parse body: {error}") from None
        except RecursionError:
            raise APIError(422, "InvalidBodyContent", "Failed to parse body: exceeded max depth") from None
        if not isinstance(body, dict):
            raise APIError(422, "InvalidBodyContent", "Failed to parse body: expected a JSON object")
        return body

    @staticmethod
    def _method_not_allowed(method: str) -> APIError:
        return APIError(405, "MethodNotAllow", f"Method {method} not supported")

    # -- routing -------------------------------------------------------------------------------------

    def _route(self, request: Request, method: str, segments: list[str]) -> bytes:
        if segments == ["ping"] and method in ("GET", "HEAD"):
            return self._text(request, 200, b"pong")
        if segments[:1] == ["v3"]:
            rest = segments[1:]
            if rest == ["settings", "cacerts"] and method in ("GET", "HEAD"):
                return self._json(request, 200, self._setting(request, "cacerts", self._backend.cacerts))
            if rest[:1] == ["import"] and len(rest) == 2:
                return self._import(request, method, rest[1])
            if not self._authenticated(request):
                return self._json(request, 401, MUST_AUTHENTICATE)
            return self._v3(request, method, rest)
        if segments[:1] == ["sim"]:
            if not self._authenticated(request):
                return self._json(request, 401, MUST_AUTHENTICATE)
            return self._sim(request, method, segments[1:])
        return self._text(request, 404, NOT_FOUND_TEXT, b"text/plain; charset=utf-8")

    def _v3(self, request: Request, method: str, rest: list[str]) -> bytes:
        if rest[:1] == ["settings"] and len(rest) == 2:
            if method != "GET":
                raise self._method_not_allowed(method)
            name = rest[1]
            if name == "cacerts":
                return self._json(request, 200, self._setting(request, name, self._backend.cacerts))
            if name == "server-version":
                return self._json(request, 200, self._setting(request, name, self._backend.server_version))
            raise not_found("settings", name)
        if rest == ["clusters"]:
            if method == "GET":
                return self._json(request, 200, self._list_clusters(request))
            if method == "POST":
                return self._json(request, 201, self._create_cluster(request))
            raise self._method_not_allowed(method)
        if rest[:1] == ["clusters"] and len(rest) == 2:
            if method == "GET":
                return self._json(request, 200, self.cluster_json(request, self._cluster(rest[1])))
            if method == "DELETE":
                cluster = self._cluster(rest[1])
                body = self.cluster_json(request, cluster)
                try:
                    self._backend.delete_cluster(cluster.id)
                except Protected:
                    raise APIError(400, "BadRequest", LOCAL_NOT_DELETABLE) from None
                body.update(state="removing", transitioning="yes", transitioningMessage="")
                return self._json(request, 200, body)
            raise self._method_not_allowed(method)
        if rest[:1] == ["clusters"] and len(rest) == 3 and rest[2] == "clusterregistrationtokens":
            if method != "GET":
                raise self._method_not_allowed(method)
            cluster = self._cluster(rest[1])
            return self._json(request, 200, self._list_tokens(request, cluster.id))
        if rest == ["clusterregistrationtokens"]:
            if method == "GET":
                return self._json(request, 200, self._list_tokens(request, None))
            if method == "POST":
                return self._json(request, 201, self._create_token(request))
            raise self._method_not_allowed(method)
        if rest[:1] == ["clusterregistrationtokens"] and len(rest) == 2:
            if method != "GET":
                raise self._method_not_allowed(method)
            try:
                crt = self._backend.store.get_token(rest[1])
            except NotFound:
                raise not_found("clusterregistrationtokens", rest[1]) from None
            return self._json(request, 200, self.token_json(request, crt))
        raise APIError(404, "NotFound", "/v3/" + "/".join(rest) + " not found")

    def _cluster(self, cluster_id: str) -> Cluster:
        try:
            return self._backend.store.get_cluster(cluster_id)
        except NotFound:
            raise not_found("clusters", cluster_id) from None

    # -- settings ------------------------------------------------------------------------------------

    def _setting(self, request: Request, name: str, value: str) -> dict[str, Any]:
        url = f"{self._base(request)}/v3/settings/{name}"
        return {
            "baseType": "setting",
            "created": rfc3339(0),
            "createdTS": 0,
            "creatorId": None,
            "customized": False,
            "default": "",
            "id": name,
            "labels": {},
            "annotations": {},
            "links": {"self": url, "update": url, "remove": url},
            "name": name,
            "source": "",
            "type": "setting",
            "uuid": "",
            "value": value,
        }

    # -- clusters ------------------------------------------------------------------------------------

    def cluster_json(self, request: Request, cluster: Cluster) -> dict[str, Any]:
        """A cluster as Rancher's v3 API shows it."""
        url = f"{self._base(request)}/v3/clusters/{cluster.id}"
        transitioning, message = "no", ""
        if cluster.state == PENDING:
            transitioning = "yes"
        elif cluster.state != ACTIVE:
            transitioning = "error"
            ready = cluster.conditions.get("Ready")
            message = ready.message if ready else ""
        conditions = []
        for condition in cluster.conditions.values():
            entry = {
                "type": condition.type,
                "status": condition.status,
                "lastUpdateTime": rfc3339(condition.last_update),
            }
            if condition.reason:
                entry["reason"] = condition.reason
            if condition.message:
                entry["message"] = condition.message
            conditions.append(entry)
        return {
            "actions": {},
            "agentImageOverride": "",
            "annotations": dict(cluster.annotations),
            "apiEndpoint": cluster.api_endpoint,
            "baseType": "cluster",
            "caCert": cluster.ca_cert,
            "conditions": conditions,
            "created": rfc3339(cluster.created),
            "createdTS": int(cluster.created * 1000),
            "creatorId": self._backend.creator_id,
            "description": cluster.description,
            "driver": cluster.driver,
            "id": cluster.id,
            "internal": cluster.internal,
            "labels": dict(cluster.labels),
            "links": {
                "self": url,
                "update": url,
                "remove": url,
                "clusterRegistrationTokens": url + "/clusterregistrationtokens",
            },
            "name": cluster.name,
            "state": cluster.state,
            "transitioning": transitioning,
            "transitioningMessage": message,
            "type": "cluster",
            "uuid": cluster.uuid,
        }

    def _collection(
        self,
        request: Request,
        path: str,
        resource_type: str,
        items: list[Any],
        filters: dict[str, Any],
        render: Any,
    ) -> dict[str, Any]:
        """A norman collection of `items` (already filtered), one page of it rendered.

        Norman pages with `limit` (default 1000, at most 3000) and an opaque `marker`; `pagination.next`
        is the URL of the next page and `partial` says there is one. Our markers are `m<offset>`.
        """
        base = self._base(request)
        url = f"{base}{path}"
        limit = DEFAULT_LIMIT
        raw_limit = request.args.get(b"limit", [b""])[0].decode("latin-1")
        if raw_limit:
            try:
                limit = min(max(int(raw_limit), 0), MAX_LIMIT)
            except ValueError:
                limit = DEFAULT_LIMIT
        marker = request.args.get(b"marker", [b""])[0].decode("latin-1")
        start = 0
        if marker.startswith("m") and marker[1:].isdigit():
            start = min(int(marker[1:]), len(items))
        else:
            marker = ""
        page = items[start : start + limit]
        pagination: dict[str, Any] = {"limit": limit, "total": len(items)}
        if marker:
            pagination["marker"] = marker
        query = [(k, v) for k, v in request.args.items() if k not in (b"marker",)]
        if start + limit < len(items):
            pagination["partial"] = True
            pagination["next"] = _with_query(url, query + [(b"marker", [f"m{start + limit}".encode()])])
        if start > 0:
            pagination["first"] = _with_query(url, query)
        return {
            "type": "collection",
            "resourceType": resource_type,
            "links": {"self": url},
            "createTypes": {resource_type: url},
            "actions": {},
            "pagination": pagination,
            "sort": {"order": "asc", "reverse": url + "?order=desc", "links": {}},
            "filters": filters,
            "data": [render(request, item) for item in page],
        }

    @staticmethod
    def _filters(request: Request, names: tuple[str, ...]) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        for name in names:
            values = request.args.get(name.encode())
            filters[name] = (
                [{"modifier": "eq", "value": v.decode("utf-8", "replace")} for v in values]
                if values
                else None
            )
        return filters

    @staticmethod
    def _matches(values: dict[str, Any], filters: dict[str, Any]) -> bool:
        for name, conditions in filters.items():
            if conditions and not any(str(values.get(name)) == c["value"] for c in conditions):
                return False
        return True

    def _list_clusters(self, request: Request) -> dict[str, Any]:
        filters = self._filters(request, ("id", "name", "state", "driver", "uuid"))
        store = self._backend.store
        # Narrow by name or id first: agents look their clusters up one by one, by name.
        if filters["name"]:
            found = (store.find_cluster(c["value"]) for c in filters["name"])
            candidates = list({id(c): c for c in found if c is not None}.values())
        elif filters["id"]:
            wanted = {f["value"] for f in filters["id"]}
            candidates = [c for c in store.clusters(internal=True) if c.id in wanted]
        else:
            candidates = store.clusters(internal=True)
        items = [
            c
            for c in candidates
            if self._matches(
                {"id": c.id, "name": c.name, "state": c.state, "driver": c.driver, "uuid": c.uuid}, filters
            )
        ]
        return self._collection(request, "/v3/clusters", "cluster", items, filters, self.cluster_json)

    def _create_cluster(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        name = body.get("name")
        if name is None or name == "":
            raise APIError(422, "MissingRequired", "", "name")
        if not isinstance(name, str):
            raise APIError(422, "InvalidFormat", "expected a string", "name")
        description = body.get("description") or ""
        labels = body.get("labels") or {}
        annotations = body.get("annotations") or {}
        if not isinstance(description, str):
            raise APIError(422, "InvalidFormat", "expected a string", "description")
        for field, value in (("labels", labels), ("annotations", annotations)):
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise APIError(422, "InvalidFormat", "expected a map of strings", field)
        try:
            cluster = self._backend.store.create_cluster(
                name, description=description, labels=labels, annotations=annotations
            )
        except NotUnique:
            raise APIError(422, "NotUnique", "", "Cluster name") from None
        return self.cluster_json(request, cluster)

    # -- registration tokens -------------------------------------------------------------------------

    def token_json(self, request: Request, crt: RegistrationToken) -> dict[str, Any]:
        """A ClusterRegistrationToken as Rancher's v3 API shows it, token and commands filled in."""
        base = self._base(request)
        url = f"{base}/v3/clusterregistrationtokens/{crt.id}"
        server = self._backend.server_url or base
        manifest_url = f"{server}/v3/import/{crt.token}_{crt.cluster_id}.yaml"
        checksum = manifest.ca_checksum(self._backend.cacerts)
        node_command = (
            "sudo docker run -d --privileged --restart=unless-stopped --net=host"
            " -v /etc/kubernetes:/etc/kubernetes"
            f" -v /var/run:/var/run rancher/rancher-agent:{self._backend.server_version} --server {server}"
            f" --token {crt.token}" + (f" --ca-checksum {checksum}" if checksum else "")
        )
        return {
            "annotations": {},
            "baseType": "clusterRegistrationToken",
            "clusterId": crt.cluster_id,
            "command": f"kubectl apply -f {manifest_url}",
            "created": rfc3339(crt.created),
            "createdTS": int(crt.created * 1000),
            "creatorId": self._backend.creator_id,
            "id": crt.id,
            "insecureCommand": f"curl --insecure -sfL {manifest_url} | kubectl apply -f -",
            "insecureNodeCommand": "",
            "insecureWindowsNodeCommand": "",
            "labels": {"cattle.io/creator": "norman"},
            "links": {"self": url, "update": url, "remove": url},
            "manifestUrl": manifest_url,
            "name": crt.name,
            "namespaceId": None,
            "nodeCommand": node_command,
            "state": "active",
            "token": crt.token,
            "transitioning": "no",
            "transitioningMessage": "",
            "type": "clusterRegistrationToken",
            "uuid": crt.uuid,
            "windowsNodeCommand": "",
        }

    def _list_tokens(self, request: Request, cluster_id: str | None) -> dict[str, Any]:
        filters = self._filters(request, ("clusterId", "id", "name", "uuid"))
        if cluster_id is not None:
            filters["clusterId"] = [{"modifier": "eq", "value": cluster_id}]
        store = self._backend.store
        if filters["clusterId"]:
            wanted = dict.fromkeys(f["value"] for f in filters["clusterId"])
            candidates = [crt for cid in wanted for crt in store.tokens(cid)]
        else:
            candidates = store.tokens()
        items = [
            crt
            for crt in candidates
            if self._matches(
                {"clusterId": crt.cluster_id, "id": crt.id, "name": crt.name, "uuid": crt.uuid}, filters
            )
        ]
        return self._collection(
            request,
            "/v3/clusterregistrationtokens",
            "clusterRegistrationToken",
            items,
            filters,
            self.token_json,
        )

    def _create_token(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        cluster_id = body.get("clusterId")
        if not cluster_id:
            raise APIError(422, "MissingRequired", "", "clusterId")
        if not isinstance(cluster_id, str):
            raise APIError(422, "InvalidFormat", "expected a string", "clusterId")
        try:
            crt = self._backend.store.create_token(cluster_id, body.get("name") or None)
        except NotFound:
            raise APIError(422, "InvalidReference", "", "clusterId") from None
        except NotUnique:
            raise APIError(
                409, "AlreadyExists", f'clusterregistrationtokens "{body.get("name")}" already exists'
            ) from None
        return self.token_json(request, crt)

    # -- the import manifest -------------------------------------------------------------------------

    def _import(self, request: Request, method: str, filename: str) -> bytes:
        if method not in ("GET", "HEAD") or "_" not in filename or not filename.endswith(".yaml"):
            return self._text(request, 404, NOT_FOUND_TEXT, b"text/plain; charset=utf-8")
        token, _, cluster_id = filename[: -len(".yaml")].partition("_")
        crt = self._backend.store.lookup_token(token)
        if crt is None or crt.cluster_id != cluster_id:
            return self._text(request, 400, b"cluster not found or invalid token")
        body = manifest.import_manifest(
            server_url=self._backend.server_url or self._base(request),
            token=token,
            cacerts=self._backend.cacerts,
            server_version=self._backend.server_version,
        )
        return self._text(request, 200, body)

    # -- stand-in controls ---------------------------------------------------------------------------

    def sim_cluster_json(self, cluster: Cluster) -> dict[str, Any]:
        return {
            "id": cluster.id,
            "name": cluster.name,
            "state": cluster.state,
            "tunnels": {MAIN: cluster.sessions.get(MAIN, 0), STEVE: cluster.sessions.get(STEVE, 0)},
            "paramsChanges": cluster.params_changes,
            "driver": cluster.driver,
        }

    def _sim(self, request: Request, method: str, rest: list[str]) -> bytes:
        store = self._backend.store
        if rest == ["clusters"] and method == "GET":
            return self._json(
                request,
                200,
                {
                    "clusters": [self.sim_cluster_json(c) for c in store.clusters()],
                    "counts": store.counts(),
                    "paramsChangesTotal": store.params_changes_total,
                },
            )
        if rest == ["status"] and method == "GET":
            return self._json(request, 200, self._backend.status())
        if rest == ["tunnels", "cut"] and method == "POST":
            return self._json(request, 200, {"cut": self._backend.cut_all_tunnels()})
        if rest[:1] == ["clusters"] and len(rest) == 3 and method == "POST":
            cluster = self._cluster(rest[1])
            if rest[2] == "rotate-token":
                crt = store.rotate_token(cluster.id)
                return self._json(request, 200, self.token_json(request, crt))
            if rest[2] == "disconnect":
                closed = self._backend.disconnect_cluster(cluster.id)
                return self._json(request, 200, {"id": cluster.id, "closed": closed})
        raise APIError(404, "NotFound", "/sim/" + "/".join(rest) + " not found")


class Root(Resource):
    """`/v3/connect` and `/v3/connect/register` go to the tunnel endpoint; everything else to the API."""

    def __init__(self, api: IResource, connect: IResource | None) -> None:
        super().__init__()
        self._api = api
        self._connect = connect

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        if self._connect is not None and request.path in (b"/v3/connect", b"/v3/connect/register"):
            return self._connect
        return self._api

    def render(self, request: Request) -> bytes:
        return self._api.render(request)


__all__ = ["APIError", "Backend", "ManagementAPI", "Root"]
