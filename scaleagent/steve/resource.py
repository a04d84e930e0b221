"""steve's `/v1` API as a Twisted Web resource, served on a cluster's steve tunnel.

Routes (as steve's router): `/v1/schemas[/<id>]`, `/v1/counts[/count]`, `/v1/subscribe` (WebSocket),
`/v1/<type>` (all), `/v1/<type>/<namespace>` (a namespace of a namespaced type),
`/v1/<type>/<name>` (cluster-scoped) and `/v1/<type>/<namespace>/<name>`; `<type>` is a schema id
or plural name.  GET reads the cluster's store; POST/PUT/PATCH/DELETE go through the apiserver's
own write path (`scaleagent.apiserver.writes`), so steve and kubectl see one store.

One `V1Resource` serves every cluster of a process: it finds the cluster from the request
(`cluster_of`), builds nothing per cluster, and the schema set it uses is shared per type table.
Authorisation is Rancher's: the caller (from `Impersonate-*`) is recorded on writes, never refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from twisted.web.resource import Resource
from twisted.web.server import Request

from scaleagent.apiserver import writes
from scaleagent.apiserver.auth import ADMIN, impersonate
from scaleagent.apiserver.request import ApiContext, ApiRequest
from scaleagent.apiserver.status import ApiError
from scaleagent.redact import logger
from scaleagent.steve import counts as counts_mod
from scaleagent.steve import subscribe
from scaleagent.steve.format import RESERVED, Formatter, Urls, collection, error, object_id
from scaleagent.steve.query import PROJECT_LABEL, ListOptions, QueryError, process
from scaleagent.steve.schemas import COUNT, SCHEMA, SUBSCRIBE, Schema, SchemaSet, schemas_for

log = logger()

JSON = b"application/json"
DEFAULT_LIMIT = 100000
#: what steve's unformatter strips from `metadata` in bodies the UI sends back
_FORMAT_META = ("state", "relationships", "fields")
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def cluster_api(request: Request) -> ApiContext | None:
    """The ApiContext of the cluster whose steve tunnel carried this request.

    The steve-tunnel factory tags each connection with its cluster (`channel.steve_cluster`, any
    object with an `api` property); the store is built on the first browse.
    """
    cluster = getattr(request.channel, "steve_cluster", None)
    return None if cluster is None else cluster.api


class _Http(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _headers(request: Request) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): b",".join(values).decode("latin-1")
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


def _all_headers(request: Request) -> dict[str, list[str]]:
    return {
        name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


class V1Resource(Resource):
    """`/v1` for every cluster; `api_of(request)` names the cluster's ApiContext (or None → 404)."""

    isLeaf = True

    def __init__(self, clock: Any, api_of: Callable[[Request], ApiContext | None] = cluster_api) -> None:
        super().__init__()
        self.clock = clock
        self.api_of = api_of

    def render(self, request: Request) -> bytes | int:
        headers = _headers(request)
        uri = urlsplit(request.uri.decode("latin-1"))
        path = "/v1" + "".join("/" + seg.decode("utf-8", "replace") for seg in request.postpath)
        path = path.rstrip("/") if path != "/v1/" else "/v1"
        pairs = parse_qsl(uri.query, keep_blank_values=True)
        urls = Urls(headers, path, pairs)
        try:
            api = self.api_of(request)
            if api is None:
                raise _Http(404, "no cluster behind this connection")
            parts = [seg.decode("utf-8", "replace") for seg in request.postpath if seg]
            method = request.method.decode("ascii", "replace").upper()
            return self._route(request, api, method, parts, urls, pairs, headers)
        except ApiError as err:
            return self._send(request, err.code, error(err.code, err.message))
        except _Http as err:
            return self._send(request, err.code, error(err.code, err.message))
        except QueryError as err:
            return self._send(request, 400, error(400, str(err), "InvalidFormat"))
        except Exception:
            log.failure("steve {method} {path} failed", method=request.method, path=path)
            return self._send(request, 500, error(500, "internal error"))

    def _send(self, request: Request, code: int, body: Any) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"x-content-type-options", b"nosniff")
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    # -- routing -------------------------------------------------------------------------------------

    def _route(
        self,
        request: Request,
        api: ApiContext,
        method: str,
        parts: list[str],
        urls: Urls,
        pairs: list[tuple[str, str]],
        headers: dict[str, str],
    ) -> bytes | int:
        schemas = schemas_for(api.kinds)
        if not parts:
            return self._send(request, 200, self._root(schemas, urls))
        schema = schemas.lookup(parts[0])
        if schema is None or len(parts) > 3:
            raise _Http(404, f"schema {parts[0]} not found" if schema is None else "not found")
        query: dict[str, list[str]] = {}
        for key, value in pairs:
            query.setdefault(key, []).append(value)
        if schema.id == SUBSCRIBE:
            return subscribe.upgrade(request, api, self.clock, headers)
        if method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            raise _Http(405, f"method {method} not allowed")
        formatter = Formatter(schemas, urls, api.store, float(self.clock.seconds()), query.get("exclude", ()))
        if schema.id == SCHEMA:
            return self._schemas(request, method, schemas, parts, urls)
        if schema.id == COUNT:
            return self._counts(request, method, api, schemas, schema, parts, urls)
        rt = schema.rt
        assert rt is not None
        namespace: str | None = None
        name: str | None = None
        if len(parts) == 3:
            if not rt.namespaced:
                raise _Http(404, "not found")
            namespace, name = parts[1], parts[2]
        elif len(parts) == 2:
            if rt.namespaced:
                namespace = parts[1]
            else:
                name = parts[1]
        if method in ("GET", "HEAD"):
            if name is None:
                if not schema.can("GET"):
                    raise _Http(405, f"method GET not allowed on {schema.id}")
                return self._send(request, 200, self._list(api, schema, namespace, query, urls, formatter))
            obj = api.store.get(rt, namespace, name)
            return self._send(request, 200, formatter.object(schema, obj))
        return self._write(request, api, method, schema, namespace, name, query, formatter)

    def _root(self, schemas: SchemaSet, urls: Urls) -> dict[str, Any]:
        data = [
            {
                "id": "v1",
                "type": "apiRoot",
                "links": {"self": urls.root("/v1"), "schemas": urls.root("/v1/schemas")},
                "apiVersion": {"group": "", "path": "/v1", "version": "v1"},
                "baseType": "apiRoot",
            }
        ]
        return collection(urls, "apiRoot", data)

    # -- schemas and counts ----------------------------------------------------------------------------

    def _schema_object(self, schema: Schema, urls: Urls) -> dict[str, Any]:
        links = {"self": urls.schema(schema.id)}
        if "GET" in schema.collection_methods or "POST" in schema.collection_methods:
            links["collection"] = urls.collection(schema)
        out: dict[str, Any] = {"id": schema.id, "type": SCHEMA, "links": links}
        out.update(schema.body())
        return out

    def _schemas(
        self, request: Request, method: str, schemas: SchemaSet, parts: list[str], urls: Urls
    ) -> bytes:
        if method not in ("GET", "HEAD"):
            raise _Http(405, f"method {method} not allowed on schemas")
        if len(parts) == 2:
            found = schemas.lookup(parts[1])
            if found is None:
                raise _Http(404, "no such schema")
            return self._send(request, 200, self._schema_object(found, urls))
        if len(parts) > 2:
            raise _Http(404, "not found")
        data = [self._schema_object(s, urls) for s in schemas.schemas]
        return self._send(request, 200, collection(urls, SCHEMA, data))

    def _counts(
        self,
        request: Request,
        method: str,
        api: ApiContext,
        schemas: SchemaSet,
        schema: Schema,
        parts: list[str],
        urls: Urls,
    ) -> bytes:
        if method not in ("GET", "HEAD"):
            raise _Http(405, f"method {method} not allowed on counts")
        links = {"self": urls.resource(schema, "count")}
        obj: dict[str, Any] = {"id": "count", "type": COUNT, "links": links}
        obj.update(counts_mod.counts(api.store, schemas))
        if len(parts) >= 2:
            return self._send(request, 200, obj)
        return self._send(request, 200, collection(urls, COUNT, [obj]))

    # -- lists -------------------------------------------------------------------------------------------

    def _list(
        self,
        api: ApiContext,
        schema: Schema,
        namespace: str | None,
        query: Mapping[str, list[str]],
        urls: Urls,
        formatter: Formatter,
    ) -> dict[str, Any]:
        rt = schema.rt
        assert rt is not None
        limit = DEFAULT_LIMIT
        if query.get("limit"):
            try:
                limit = int(query["limit"][0])
            except ValueError:
                raise QueryError(f"invalid limit {query['limit'][0]!r}") from None
        opts = ListOptions.parse(query)
        continue_token = (query.get("continue") or [""])[0]
        result = api.store.list(
            rt,
            namespace=namespace,
            label_selector=(query.get("labelSelector") or [""])[0],
            limit=max(limit, 0),
            continue_token=continue_token,
        )
        namespaces_rt = api.kinds.by_resource("", "v1", "namespaces")

        def project_of(ns: str) -> str:
            if namespaces_rt is None:
                return ""
            found = api.store.lookup(namespaces_rt, None, ns)
            labels = (found or {}).get("metadata", {}).get("labels") or {}
            return str(labels.get(PROJECT_LABEL, ""))

        page = process(result.objects(), opts, project_of)
        data = [formatter.object(schema, obj) for obj in page.items]
        create = urls.collection(schema) if "POST" in schema.collection_methods else ""
        return collection(
            urls,
            schema.id,
            data,
            create_url=create,
            create_type=schema.id,
            revision=result.resource_version,
            continue_token=result.continue_token,
            partial=bool(continue_token),
            pages=page.pages,
            count=page.count,
        )

    # -- writes ------------------------------------------------------------------------------------------

    def _write(
        self,
        request: Request,
        api: ApiContext,
        method: str,
        schema: Schema,
        namespace: str | None,
        name: str | None,
        query: Mapping[str, list[str]],
        formatter: Formatter,
    ) -> bytes:
        rt = schema.rt
        assert rt is not None
        allowed = schema.collection_methods if name is None else schema.resource_methods
        if method not in allowed:
            raise _Http(405, f"method {method} not allowed on {schema.id}")
        raw = request.content.read() if request.content is not None else b""
        headers = _all_headers(request)
        content_type = (headers.get("content-type") or ["application/json"])[0].split(";")[0].strip()
        body = raw
        if method in ("POST", "PUT"):
            body, namespace = self._unformat(raw, rt.namespaced, namespace)
            content_type = "application/json"
        elif method == "PATCH" and content_type not in _PATCH_TYPES:
            strategic = "application/strategic-merge-patch+json"
            content_type = "application/merge-patch+json" if rt.crd else strategic
        before = api.store.lookup(rt, namespace, name) if method == "DELETE" and name else None
        req = ApiRequest(
            method,
            api,
            rt,
            namespace,
            name,
            None,
            {k: v[0] for k, v in query.items() if k in ("dryRun", "fieldManager", "force")},
            {**headers, "content-type": [content_type]},
            body,
            impersonate(ADMIN, headers),
        )
        code, payload = writes.handle(req)[:2]
        if isinstance(payload, dict) and payload.get("kind") == rt.kind:
            return self._send(request, code, formatter.object(schema, payload))
        if method == "DELETE" and before is not None:
            return self._send(request, 200, formatter.object(schema, before))
        return self._send(request, code, payload)

    def _unformat(self, raw: bytes, namespaced: bool, namespace: str | None) -> tuple[bytes, str | None]:
        try:
            obj = json.loads(raw or b"{}")
        except ValueError as err:
            raise _Http(422, f"failed to parse body: {err}") from None
        if not isinstance(obj, dict):
            raise _Http(422, "failed to parse body: expected a JSON object")
        for key in RESERVED:  # steve's moveFromUnderscore
            value = obj.pop("_" + key, None)
            obj.pop(key, None)
            if value is not None:
                obj[key] = value
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta = {k: v for k, v in meta.items() if k not in _FORMAT_META}
            obj["metadata"] = meta
            if namespaced and namespace is None:
                namespace = meta.get("namespace") or None
        return json.dumps(obj).encode(), namespace


__all__ = ["V1Resource", "cluster_api", "object_id"]
