"""steve's response shapes: URLs, formatted objects, collections and errors.

What rancher/apiserver's JSON writer and steve's default formatter produce:

- URLs are absolute, built from the request's scheme and host (`X-Forwarded-Proto`, `X-API-Host`,
  `X-Forwarded-Host`, `Host`) plus `X-API-URL-Prefix`, the prefix Rancher's proxy announces
  (`/k8s/clusters/<id>`); collection URLs use the schema's plural name.
- An object is `{"id": "<ns>/<name>" | "<name>", "type": <schema id>, "links": {self, update, remove,
  patch, view}}` merged with the Kubernetes object, whose `metadata` gains `state`, `relationships`
  and `fields` (the Table cells of its type) and whose conditions gain `error`/`transitioning`.
- A collection is `{"type": "collection", "links": {"self"}, "createTypes", "actions": {},
  "resourceType", "revision", "continue", "pagination", "pages", "count", "data"}`, empty
  optional members left out as Go's `omitempty` does.
- An error is `{"type": "error", "links": {}, "status", "code", "message"}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from scaleagent.apiserver import tables
from scaleagent.apiserver.kinds import ResourceType
from scaleagent.apiserver.selectors import format_label_selector as selector_text
from scaleagent.apiserver.store import Store
from scaleagent.steve.schemas import Schema, SchemaSet, schema_id
from scaleagent.steve.summary import Relationship, normalize_conditions, summarize

Obj = dict[str, Any]
#: top-level fields of steve's envelope; an object's own ones travel as `_<name>` (rancher/apiserver
#: ReservedFields, steve's proxy store moveToUnderscore / moveFromUnderscore)
RESERVED = ("id", "type", "links", "actions")


class Urls:
    """rancher/apiserver's URL builder for one request."""

    __slots__ = ("base", "current", "query")

    def __init__(self, headers: Mapping[str, str], path: str, query: Sequence[tuple[str, str]] = ()) -> None:
        scheme = headers.get("x-forwarded-proto") or "http"
        host = headers.get("x-api-host") or headers.get("x-forwarded-host") or headers.get("host")
        host = host or "localhost"
        port = headers.get("x-forwarded-port")
        if port and ":" not in host and (scheme, port) not in (("http", "80"), ("https", "443")):
            host = f"{host}:{port}"
        prefix = (headers.get("x-api-url-prefix") or "").rstrip("/")
        #: everything links are relative to: scheme://host + prefix
        self.base = f"{scheme}://{host}{prefix}"
        self.current = self.base + path
        self.query = list(query)

    def collection(self, schema: Schema) -> str:
        return f"{self.base}/v1/{schema.plural}"

    def resource(self, schema: Schema, id_: str) -> str:
        return f"{self.collection(schema)}/{id_}"

    def schema(self, id_: str) -> str:
        return f"{self.base}/v1/schemas/{id_}"

    def root(self, path: str) -> str:
        return self.base + (path if path.startswith("/") else "/" + path)

    def marker(self, token: str) -> str:
        """This URL with `continue` replaced (the `pagination.next` link)."""
        pairs = [(k, v) for k, v in self.query if k != "continue"] + [("continue", token)]
        return self.current + "?" + urlencode(sorted(pairs, key=lambda kv: kv[0]))


def object_id(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    name = meta.get("name") or ""
    return f"{ns}/{name}" if ns else name


def _kube_path(rt: ResourceType, namespace: str, name: str) -> str:
    """steve's selfLink: the object's path on the Kubernetes API (the `view` link)."""
    base = "/api/v1/" if not rt.group else f"/apis/{rt.group}/{rt.version}/"
    middle = f"namespaces/{namespace}/" if namespace else ""
    path = f"{base}{middle}{rt.plural}"
    return f"{path}/{name}" if name else path


class Formatter:
    """Formats objects of one cluster for one request."""

    __slots__ = ("schemas", "urls", "store", "now", "exclude", "_summaries")

    def __init__(
        self,
        schemas: SchemaSet,
        urls: Urls,
        store: Store,
        now: float,
        exclude: Sequence[str] = (),
    ) -> None:
        self.schemas = schemas
        self.urls = urls
        self.store = store
        self.now = now
        self.exclude = [tuple(e.split(".")) for e in exclude if e]
        self._summaries: dict[int, Any] = {}

    # -- one object --------------------------------------------------------------------------------

    def links(self, schema: Schema, obj: Mapping[str, Any]) -> dict[str, str]:
        id_ = object_id(obj)
        self_link = self.urls.resource(schema, id_)
        links = {"self": self_link}
        if "PUT" in schema.resource_methods:
            links["update"] = self_link
        if "DELETE" in schema.resource_methods:
            links["remove"] = self_link
        if "PATCH" in schema.resource_methods:
            links["patch"] = self_link
        if schema.rt is not None:
            meta = obj.get("metadata") or {}
            path = _kube_path(schema.rt, meta.get("namespace") or "", meta.get("name", ""))
            links["view"] = self.urls.root(path)
        return links

    def summary(self, obj: Mapping[str, Any]) -> Any:
        key = id(obj)
        found = self._summaries.get(key)
        if found is None or found[0] is not obj:
            found = (obj, summarize(obj))
            self._summaries[key] = found
        return found[1]

    def object(self, schema: Schema, obj: Mapping[str, Any]) -> Obj:
        """`obj` (a stored dict, never mutated) as steve sends it."""
        out: Obj = {"id": object_id(obj), "type": schema.id, "links": self.links(schema, obj)}
        body = dict(obj)
        for key in RESERVED:  # steve's moveToUnderscore: an Event's or Secret's `type` becomes `_type`
            if key in body:
                body["_" + key] = body.pop(key)
        meta = dict(body.get("metadata") or {})
        s = self.summary(obj)
        meta["state"] = s.state_dict()
        meta["relationships"] = self.relationships(obj, s.relationships)
        if schema.rt is not None and "list" in schema.rt.verbs:
            _columns, row_of = tables.printer(schema.rt)
            meta["fields"] = row_of(obj, self.now)
        body["metadata"] = meta
        normalize_conditions(body)
        for path in self.exclude:
            _remove(body, path)
        out.update(body)
        return out

    # -- relationships (steve's summarycache.toRel / reverseRel) ------------------------------------

    def _target(self, api_version: str, kind: str) -> Schema | None:
        return self.schemas.for_kind(api_version, kind)

    def _with_state(self, rel: Obj, schema: Schema | None, namespace: str, name: str) -> Obj:
        if schema is None or schema.rt is None or not name:
            return rel
        target = self.store.lookup(schema.rt, namespace or None, name)
        if target is None:
            return rel
        s = self.summary(target)
        rel["state"] = s.state
        if s.error:
            rel["error"] = True
        if s.message:
            rel["message"] = "; ".join(s.message)
        if s.transitioning:
            rel["transitioning"] = True
        return rel

    def relationships(self, obj: Mapping[str, Any], rels: Sequence[Relationship]) -> list[Obj]:
        meta = obj.get("metadata") or {}
        own_ns = meta.get("namespace") or ""
        out: list[Obj] = []
        selectors: set[str] = set()
        for rel in rels:
            if rel.selector is not None:
                selectors.add(f"{rel.api_version}/{rel.kind}")
            target = self._target(rel.api_version, rel.kind)
            ns = rel.namespace
            if not ns and target is not None and target.rt is not None and target.rt.namespaced:
                ns = own_ns
            id_ = f"{ns}/{rel.name}" if rel.name and ns else rel.name
            group = rel.api_version.rsplit("/", 1)[0] if "/" in rel.api_version else ""
            type_ = schema_id(group, rel.kind)
            if rel.inbound:
                item: Obj = {"fromId": id_, "fromType": type_, "rel": rel.type} if id_ else {
                    "fromType": type_,
                    "rel": rel.type,
                }
            else:
                item = {"toId": id_} if id_ else {}
                item["toType"] = type_
                if rel.selector is not None and ns:
                    item["toNamespace"] = ns
                item["rel"] = rel.type
                if rel.selector is not None:
                    text = selector_text(rel.selector)
                    if text:
                        item["selector"] = text
            out.append(self._with_state(item, target, ns, rel.name))
        uid = meta.get("uid")
        if uid:
            own_kind = f"{obj.get('apiVersion', '')}/{obj.get('kind', '')}"
            for (group, plural), (ns, name) in self.store.dependents(uid, own_ns or None):
                rt = self.store.kinds.preferred(group, plural)
                schema = self.schemas.for_type(rt) if rt is not None else None
                if schema is None or own_kind in selectors:
                    continue
                id_ = f"{ns}/{name}" if ns else name
                item = {"toId": id_, "toType": schema.id, "rel": "owner"}
                out.append(self._with_state(item, schema, ns, name))
        return out


def _remove(body: Obj, path: Sequence[str]) -> None:
    """Drop a dotted field, copying the dicts on the way (the stored object stays intact)."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if head not in body:
        return
    if not rest:
        del body[head]
        return
    child = body[head]
    if isinstance(child, Mapping):
        child = dict(child)
        _remove(child, rest)
        body[head] = child


def collection(
    urls: Urls,
    resource_type: str,
    data: list[Obj],
    *,
    create_url: str = "",
    create_type: str = "",
    revision: str = "",
    continue_token: str = "",
    partial: bool = False,
    pages: int = 0,
    count: int = 0,
) -> Obj:
    out: Obj = {"type": "collection", "links": {"self": urls.current}}
    if create_url:
        out["createTypes"] = {create_type: create_url}
    out["actions"] = {}
    out["resourceType"] = resource_type
    if partial or continue_token:
        pagination: Obj = {"first": urls.current, "partial": True}
        if continue_token:
            pagination["next"] = urls.marker(continue_token)
        out["pagination"] = pagination
    if revision:
        out["revision"] = revision
    if continue_token:
        out["continue"] = continue_token
    if pages:
        out["pages"] = pages
    if count:
        out["count"] = count
    out["data"] = data
    return out


#: Kubernetes Status reasons → rancher/apiserver error codes (steve's proxy error wrapper)
_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "PermissionDenied",
    404: "NotFound",
    405: "MethodNotAllow",
    409: "Conflict",
    410: "Gone",
    413: "MaxLimitExceeded",
    415: "InvalidBodyContent",
    422: "InvalidBodyContent",
    500: "ServerError",
    503: "ServiceUnavailable",
}


def error(status: int, message: str, code: str = "") -> Obj:
    return {
        "type": "error",
        "links": {},
        "status": status,
        "code": code or _CODES.get(status, "ServerError"),
        "message": message,
    }
