"""The Twisted Web resource tree of one simulated kube-apiserver.

`ApiResource` routes every path of a real apiserver: public endpoints (`/version`, health), discovery
and OpenAPI, then resource paths (`/api/v1/...`, `/apis/<g>/<v>/...`) for GET/LIST/WATCH.  Writes
(POST/PUT/PATCH/DELETE and subresources beyond status/log) go to `scaleagent.apiserver.writes.handle`.
Every failure is a Kubernetes `Status`.

The tree keeps no per-request state outside the request, so one tree (one `ApiSite`) serves one cluster
over any number of connections.  Time comes from the injected clock (watch timeouts, bookmarks).
"""

from __future__ import annotations

import io
import json
import tempfile
from typing import IO, Any
from urllib.parse import parse_qsl, unquote

from twisted.internet.interfaces import IPushProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from scaleagent.apiserver import controllers, discovery, status, tables, writes
from scaleagent.apiserver.auth import impersonate
from scaleagent.apiserver.bodies import media_type
from scaleagent.apiserver.faults import FAILING_CHECKS, FAULTS, failing_health
from scaleagent.apiserver.kinds import ResourceType
from scaleagent.apiserver.request import ApiContext, ApiRequest
from scaleagent.apiserver.selectors import matcher
from scaleagent.apiserver.status import ApiError
from scaleagent.apiserver.store import BOOKMARK, ERROR, Entry, ListResult, Watch, validate_list_options
from scaleagent.redact import logger

log = logger()

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
PARTIAL_LIST_CONTENT_TYPE = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
PARTIAL_CONTENT_TYPE = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
HEALTH = ("healthz", "livez", "readyz")
#: `api.extras[TRACE_REQUESTS] = True` logs one line per request (the CLI's --trace-requests)
TRACE_REQUESTS = "trace_requests"
#: `api.extras[OBSERVE] = fn` calls `fn(verb, resource, code, seconds)` once per request (watches: when
#: the stream starts), so the process can count requests without the apiserver knowing who counts
OBSERVE = "observe"

_WRITE_VERBS = {b"POST": "create", b"PUT": "update", b"PATCH": "patch"}


def request_verb_and_resource(request: Request) -> tuple[str, str]:
    """The Kubernetes verb and plural resource of a request ("" for discovery, version, health)."""
    parts = [p for p in request.path.decode("utf-8", "replace").split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        rest = []
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    resource = rest[0] if rest else ""
    named = len(rest) > 1
    method = request.method
    if method in _WRITE_VERBS:
        return _WRITE_VERBS[method], resource
    if method == b"DELETE":
        return ("delete" if named else "deletecollection"), resource
    watch = (request.args.get(b"watch") or [b""])[0] in (b"true", b"1")
    if watch:
        return "watch", resource
    return ("get" if named or not resource else "list"), resource
#: a watch whose client has not read this much while the connection is paused is closed
MAX_PAUSED_BYTES = 4 * 1024 * 1024

def _encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _is_true(value: str) -> bool:
    return value.lower() in ("true", "1")


def _int_param(query: dict[str, str], name: str) -> int | None:
    value = query.get(name, "")
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise status.bad_request(f"invalid {name} {value!r}: not an integer") from None


# -- content negotiation -------------------------------------------------------------------------------


def _wanted_form(accept: str) -> str:
    """ "table", "partial" or "json": the first representation in the Accept header we can serve."""
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        values = dict(p.split("=", 1) for p in params if "=" in p)
        as_ = values.get("as", "")
        if as_ == "Table" and values.get("g") == "meta.k8s.io":
            return "table"
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList") and values.get("g") == "meta.k8s.io":
            return "partial"
        if not as_ and media in (
            "application/json",
            "application/*",
            "*/*",
            "",
            "application/vnd.kubernetes.protobuf",
        ):
            return "json"
    return "json"


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


# -- watch streams ----------------------------------------------------------------------------------------


@implementer(IPushProducer)
class _WatchStream:
    """One watch response: encodes events, holds the timers, and cleans up when either side ends it.

    It is the response's push producer: while the connection says "pause" (the client reads slower
    than events come), writes are counted, and past `MAX_PAUSED_BYTES` the watch is closed, as a real
    apiserver drops a watcher that cannot keep up; the client then re-watches from its last RV.
    """

    __slots__ = (
        "paused",
        "pending",
        "request",
        "api",
        "rt",
        "form",
        "include",
        "started",
        "buffer",
        "watch",
        "timers",
        "done",
        "first",
    )

    def __init__(self, request: Request, api: ApiContext, rt: ResourceType, form: str, include: str) -> None:
        self.request = request
        self.api = api
        self.rt = rt
        self.form = form
        self.include = include
        self.started = False
        self.buffer: list[bytes] = []
        self.watch: Watch | None = None
        self.timers: list[Any] = []
        self.done = False
        self.first = True
        self.paused = False
        self.pending = 0

    def _object_bytes(self, kind: str, entry: Entry) -> bytes:
        if kind in (BOOKMARK, ERROR) or self.form == "json":
            return entry.json()
        if self.form == "partial":
            return _encode(_partial(entry.obj))
        doc = tables.table(
            self.rt,
            [entry.obj],
            now=self.api.clock.seconds(),
            include_object=self.include,
            with_columns=self.first,
        )
        self.first = False
        return _encode(doc)

    def sink(self, kind: str, entry: Entry) -> None:
        line = b'{"type":"' + kind.encode() + b'","object":' + self._object_bytes(kind, entry) + b"}\n"
        if not self.started:
            self.buffer.append(line)
        elif not self.done:
            self.request.write(line)
            if self.paused:
                self.pending += len(line)
                if self.pending > MAX_PAUSED_BYTES:
                    self.close()

    # IPushProducer, driven by the connection
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.pending = 0

    def stopProducing(self) -> None:
        self.stop()

    def start(self) -> None:
        self.request.setResponseCode(200)
        self.request.setHeader(b"content-type", JSON)
        self.request.setHeader(b"cache-control", b"no-cache, private")
        self.started = True
        self.request.registerProducer(self, True)
        # Write now even when empty: clients wait for the headers before they consider a watch open.
        self.request.write(b"".join(self.buffer))
        self.buffer = []

    def error(self, err: ApiError) -> None:
        self.sink(ERROR, Entry(err.status()))

    def schedule(self, timeout: float, bookmarks: bool) -> None:
        clock = self.api.clock
        self.timers.append(clock.callLater(timeout, self.close))
        if bookmarks and self.api.bookmark_interval > 0:
            self._schedule_bookmark()

    def _schedule_bookmark(self) -> None:
        def tick() -> None:
            if self.done or self.watch is None:
                return
            self.watch.bookmark()
            self._schedule_bookmark()

        self.timers = [t for t in self.timers if t.active()]
        self.timers.append(self.api.clock.callLater(self.api.bookmark_interval, tick))

    def stop(self, _reason: object = None) -> None:
        """Release the watch and timers (the client went away, or we are closing)."""
        if self.done:
            return
        self.done = True
        if self.watch is not None:
            self.watch.cancel()
        for timer in self.timers:
            if timer.active():
                timer.cancel()
        self.timers = []

    def close(self) -> None:
        """End the stream cleanly (timeoutSeconds reached): clients re-watch from their last RV."""
        if self.done:
            return
        self.stop()
        self.request.unregisterProducer()
        self.request.finish()


# -- the tree ---------------------------------------------------------------------------------------------


class ApiResource(Resource):
    """Every path of one cluster's apiserver; see the module docstring."""

    isLeaf = True

    def __init__(self, api: ApiContext) -> None:
        super().__init__()
        self.api = api

    # entry point: one method for every HTTP verb
    def render(self, request: Request) -> bytes | int:
        faults = self.api.extras.get(FAULTS)
        if faults is not None and faults.latency > 0:
            return self._render_later(request, faults.latency)
        return self._render_now(request)

    def _render_later(self, request: Request, delay: float) -> int:
        """A slow apiserver (fault injection): answer after `delay` seconds, unless the client left."""

        def answer() -> None:
            if request.finished or getattr(request, "_disconnected", False):
                return
            body = self._render_now(request)
            if body is NOT_DONE_YET:
                return
            request.setHeader(b"content-length", str(len(body)).encode())
            if request.method != b"HEAD":
                request.write(body)
            request.finish()

        call = self.api.clock.callLater(delay, answer)
        request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)
        return NOT_DONE_YET

    def _render_now(self, request: Request) -> bytes | int:
        started = self.api.clock.seconds()
        try:
            result = self._route(request)
        except ApiError as e:
            result = self._status(request, e)
        except Exception:
            log.failure("apiserver request failed: {method} {path}", method=request.method, path=request.path)
            result = self._status(request, status.internal_error())
        if self.api.extras.get(TRACE_REQUESTS):
            self._trace(request)
        observe = self.api.extras.get(OBSERVE)
        if observe is not None:
            verb, resource = request_verb_and_resource(request)
            try:
                observe(verb, resource, request.code, self.api.clock.seconds() - started)
            except Exception:
                log.failure("apiserver: request observer failed")
        return result

    @staticmethod
    def _trace(request: Request) -> None:
        """One line per request (method, path, request media type, code): never headers or bodies."""
        content_type = request.getHeader(b"content-type") or b""
        log.info(
            "request {method} {path} content-type={content_type} -> {code}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
            content_type=media_type(content_type) or "-",
            code=request.code,
        )

    # -- helpers --------------------------------------------------------------------------------------

    def _status(self, request: Request, err: ApiError) -> bytes:
        request.setResponseCode(err.code)
        request.setHeader(b"content-type", JSON)
        if err.code == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="kubernetes"')
        return _encode(err.status())

    def _send(
        self, request: Request, body: bytes, content_type: bytes | str = JSON, code: int = 200
    ) -> bytes:
        request.setResponseCode(code)
        request.setHeader(
            b"content-type", content_type.encode() if isinstance(content_type, str) else content_type
        )
        return body

    @staticmethod
    def _query(request: Request) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, values in (request.args or {}).items():
            if values:
                out[key.decode("utf-8", "replace")] = values[0].decode("utf-8", "replace")
        return out

    @staticmethod
    def _headers(request: Request) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            key = name.decode("latin-1").lower()
            out.setdefault(key, []).extend(v.decode("latin-1") for v in values)
        return out

    # -- routing --------------------------------------------------------------------------------------

    def _route(self, request: Request) -> bytes | int:
        path = request.path.decode("utf-8", "replace").split("?", 1)[0]
        parts = [unquote(p) for p in path.split("/") if p]
        method = request.method.decode("ascii", "replace").upper()
        reading = method in ("GET", "HEAD")
        head = parts[0] if parts else ""

        if head == "version" and len(parts) == 1:
            self._only_get(reading)
            return self._send(request, _encode(discovery.version_info(self.api.version)))
        if head in HEALTH:
            self._only_get(reading)
            return self._health(request, head, "/".join(parts[1:]))

        headers = self._headers(request)
        user = self.api.auth.authenticate((headers.get("authorization") or [""])[0])
        user = impersonate(user, headers)

        kinds = self.api.kinds
        if not parts:
            self._only_get(reading)
            return self._send(request, _encode({"paths": self._root_paths()}))
        if head in ("api", "apis") and len(parts) == 1:
            self._only_get(reading)
            wanted = discovery.aggregated_version((headers.get("accept") or [""])[0])
            if wanted is not None:
                body = discovery.aggregated(kinds, head == "api", wanted)
                return self._send(request, body, discovery.aggregated_content_type(wanted))
        if head == "api":
            if len(parts) == 1:
                return self._send(request, discovery.api_versions(self.api.address))
            if len(parts) == 2:
                self._only_get(reading)
                return self._found(request, discovery.api_resource_list(kinds, "", parts[1]))
            return self._resource(request, method, "", parts[1], parts[2:], headers, user)
        if head == "apis":
            if len(parts) == 1:
                return self._send(request, discovery.api_group_list(kinds))
            if len(parts) == 2:
                self._only_get(reading)
                return self._found(request, discovery.api_group(kinds, parts[1]))
            if len(parts) == 3:
                self._only_get(reading)
                return self._found(request, discovery.api_resource_list(kinds, parts[1], parts[2]))
            return self._resource(request, method, parts[1], parts[2], parts[3:], headers, user)
        if head == "openapi":
            self._only_get(reading)
            if parts[1:] == ["v2"]:
                body = discovery.openapi_v2(self.api.version)
                return self._send(request, body, discovery.OPENAPI_V2_CONTENT_TYPE)
            if parts[1:] == ["v3"]:
                return self._send(request, discovery.openapi_v3_root(kinds))
            if len(parts) > 2 and parts[1] == "v3":
                return self._found(request, discovery.openapi_v3_gv(kinds, "/".join(parts[2:])))
        raise status.path_not_found()

    @staticmethod
    def _only_get(reading: bool) -> None:
        if not reading:
            raise status.method_not_allowed()

    def _found(self, request: Request, body: bytes | None) -> bytes:
        if body is None:
            raise status.path_not_found()
        return self._send(request, body)

    def _root_paths(self) -> list[str]:
        paths = [
            "/api",
            "/api/v1",
            "/apis",
            "/healthz",
            "/livez",
            "/openapi/v2",
            "/openapi/v3",
            "/readyz",
            "/version",
        ]
        for group, versions in self.api.kinds.groups():
            if group:
                paths.append(f"/apis/{group}")
                paths.extend(f"/apis/{group}/{v}" for v in versions)
        return sorted(paths)

    def _health(self, request: Request, endpoint: str, check: str) -> bytes:
        # `?verbose` may come without a value, which Twisted's args drop: read the raw query.
        pairs = parse_qsl(request.uri.decode("utf-8", "replace").partition("?")[2], keep_blank_values=True)
        exclude = [value for key, value in pairs if key == "exclude"]
        verbose = any(key == "verbose" for key, _ in pairs)
        body = discovery.health(endpoint, check or None, verbose, exclude)
        if body is None:
            raise status.path_not_found()
        faults = self.api.extras.get(FAULTS)
        if endpoint == "readyz" and faults is not None and faults.unready:
            if not check or check in FAILING_CHECKS:  # a readiness fault: etcd "unreachable"
                request.setHeader(b"x-content-type-options", b"nosniff")
                body = failing_health(endpoint, discovery.CHECKS[endpoint], check or None)
                return self._send(request, body, TEXT, 500)
        request.setHeader(b"x-content-type-options", b"nosniff")
        return self._send(request, body, TEXT)

    # -- resources ------------------------------------------------------------------------------------

    def _resource(
        self,
        request: Request,
        method: str,
        group: str,
        version: str,
        rest: list[str],
        headers: dict[str, list[str]],
        user: Any,
    ) -> bytes | int:
        kinds = self.api.kinds
        legacy_watch = False
        if rest and rest[0] == "watch":
            legacy_watch, rest = True, rest[1:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = kinds.by_resource(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest:
            raise status.path_not_found()
        rt = kinds.by_resource(group, version, rest[0])
        if rt is None:
            raise status.path_not_found()
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource is not None and rt.subresource(subresource) is None:
            raise status.path_not_found()
        if name is not None and rt.namespaced and namespace is None:
            raise status.path_not_found()
        query = self._query(request)

        if method in ("GET", "HEAD") and subresource in (None, "status", "log"):
            if name is None:
                if legacy_watch or _is_true(query.get("watch", "")):
                    return self._watch(request, rt, namespace, query, headers)
                return self._list(request, rt, namespace, query, headers)
            if subresource == "log":
                if rt.storage_key != ("", "pods"):
                    raise status.path_not_found()
                self.api.store.get(rt, namespace, name)
                return self._send(request, b"", TEXT)
            return self._get(request, rt, namespace, name, headers)

        body = request.content.read() if request.content is not None else b""
        req = ApiRequest(method, self.api, rt, namespace, name, subresource, query, headers, body, user)
        # Reviews and TokenRequests are answered (never stored) by the controllers, writes or not.
        handler = controllers.handler_for(req)
        if handler is None:
            handler = writes.handle
        result = handler(req)
        code, payload = result[0], result[1]
        content_type = result[2] if len(result) > 2 else JSON
        if not isinstance(payload, bytes):
            payload = _encode(payload)
        return self._send(request, payload, content_type, code)

    def _verb(self, rt: ResourceType, verb: str) -> None:
        if verb not in rt.verbs:
            raise status.method_not_allowed()

    def _get(self, request: Request, rt: ResourceType, namespace: str | None, name: str, headers) -> bytes:
        self._verb(rt, "get")
        entry = self.api.store.get_entry(rt, namespace, name)
        query = self._query(request)
        form = _wanted_form((headers.get("accept") or [""])[0])
        if form == "table":
            doc = tables.table(
                rt,
                [entry.obj],
                now=self.api.clock.seconds(),
                include_object=query.get("includeObject", "Metadata"),
                resource_version=entry.obj["metadata"].get("resourceVersion", ""),
            )
            return self._send(request, _encode(doc), tables.TABLE_CONTENT_TYPE)
        if form == "partial":
            return self._send(request, _encode(_partial(entry.obj)), PARTIAL_CONTENT_TYPE)
        return self._send(request, entry.json())

    def _list(
        self, request: Request, rt: ResourceType, namespace: str | None, query: dict[str, str], headers
    ) -> bytes:
        self._verb(rt, "list")
        if "sendInitialEvents" in query:
            validate_list_options(watch=False, send_initial_events=_is_true(query["sendInitialEvents"]))
        result = self.api.store.list(
            rt,
            namespace=namespace,
            label_selector=query.get("labelSelector", ""),
            field_selector=query.get("fieldSelector", ""),
            limit=_int_param(query, "limit") or 0,
            continue_token=query.get("continue", ""),
            resource_version=query.get("resourceVersion", ""),
            resource_version_match=query.get("resourceVersionMatch", ""),
        )
        form = _wanted_form((headers.get("accept") or [""])[0])
        if form == "table":
            doc = tables.table(
                rt,
                result.objects(),
                now=self.api.clock.seconds(),
                include_object=query.get("includeObject", "Metadata"),
                resource_version=result.resource_version,
                continue_token=result.continue_token,
                remaining=result.remaining,
            )
            return self._send(request, _encode(doc), tables.TABLE_CONTENT_TYPE)
        if form == "partial":
            doc = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": self._list_meta(result),
                "items": [_partial(obj) for obj in result.objects()],
            }
            return self._send(request, _encode(doc), PARTIAL_LIST_CONTENT_TYPE)
        head = {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": self._list_meta(result)}
        prefix = _encode(head)[:-1] + b',"items":['
        return self._send(request, prefix + b",".join(e.json() for e in result.items) + b"]}")

    @staticmethod
    def _list_meta(result: ListResult) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": result.resource_version}
        if result.continue_token:
            meta["continue"] = result.continue_token
        if result.remaining is not None:
            meta["remainingItemCount"] = result.remaining
        return meta

    def _watch(
        self, request: Request, rt: ResourceType, namespace: str | None, query: dict[str, str], headers
    ) -> int:
        self._verb(rt, "watch")
        timeout = _int_param(query, "timeoutSeconds")
        seconds = float(timeout) if timeout is not None and timeout > 0 else self.api.max_watch_seconds
        seconds = min(seconds, self.api.max_watch_seconds)
        send_initial = query.get("sendInitialEvents")
        allow_bookmarks = _is_true(query.get("allowWatchBookmarks", ""))
        form = _wanted_form((headers.get("accept") or [""])[0])
        # Bad selectors and option combinations are HTTP errors, raised before the stream starts.
        matcher(query.get("labelSelector", ""), query.get("fieldSelector", ""), rt.field_labels)
        stream = _WatchStream(request, self.api, rt, form, query.get("includeObject", "Metadata"))
        try:
            stream.watch = self.api.store.watch(
                rt,
                stream.sink,
                namespace=namespace,
                label_selector=query.get("labelSelector", ""),
                field_selector=query.get("fieldSelector", ""),
                resource_version=query.get("resourceVersion", ""),
                resource_version_match=query.get("resourceVersionMatch", ""),
                send_initial_events=None if send_initial is None else _is_true(send_initial),
                allow_bookmarks=allow_bookmarks,
            )
        except ApiError as e:
            if e.code not in (410, 504):
                raise
            stream.buffer = []
            stream.start()
            stream.error(e)
            stream.close()
            return NOT_DONE_YET
        stream.start()
        stream.schedule(seconds, allow_bookmarks)
        request.notifyFinish().addBoth(stream.stop)
        return NOT_DONE_YET


#: request bodies up to this size are read into memory, as the apiserver does (its limit is 3 MiB)
BODY_IN_MEMORY = 3 * 1024 * 1024


def request_body_file(length: int | None) -> IO[bytes]:
    """Where a request body goes while it arrives: memory, unless it announces more than `BODY_IN_MEMORY`.

    Twisted spools every body of unannounced length (chunked) to a temporary file on disk: with
    Rancher-like clients that stream their bodies, a file was created and deleted per request
    (22 % of the agent's CPU in a 5,000-cluster ramp)."""
    if length is not None and length >= BODY_IN_MEMORY:
        return tempfile.TemporaryFile()
    return io.BytesIO()


class ApiSite(Site):
    """A `Site` for one cluster's tree without access logging or the per-second log-clock timer.

    With thousands of clusters per process, Twisted's default per-factory access log (and the timer
    that refreshes its date every second) would cost more than the requests themselves.
    """

    def __init__(self, api: ApiContext, *, timeout: float | None = 60 * 60) -> None:
        # The apiserver has no HTML forms: Twisted would parse every POST's Content-Type with the
        # email package to look for one (3 % of the agent's CPU under Rancher's traffic).
        super().__init__(ApiResource(api), timeout=timeout, reactor=api.clock, parsePOSTFormSubmission=False)
        self.displayTracebacks = False
        self.api = api

    def startFactory(self) -> None:
        self._logFile = None

    def log(self, request: Request) -> None:
        return None

    def getContentFile(self, length: int | None) -> IO[bytes]:  # noqa: N802 (Twisted's hook)
        return request_body_file(length)


def make_site(api: ApiContext) -> ApiSite:
    """The HTTP site serving `api` (wrap it in TLS to serve it as a real apiserver does)."""
    return ApiSite(api)


__all__ = ["ApiResource", "ApiSite", "make_site", "request_body_file"]
