"""steve's `/v1/subscribe` WebSocket: live changes for the types a browser page shows.

The browser sends JSON text messages `{"resourceType", "namespace", "id", "selector",
"resourceVersion", "stop", "mode", "debounceMs"}`; each distinct (type, namespace, id, selector) is one
watch on the cluster's store.  Messages back are rancher/apiserver's `APIEvent`s:
`resource.start` when a watch begins, `resource.create` / `resource.change` / `resource.remove` with
`revision` and `data` (the object formatted exactly as a GET returns it), `resource.stop` when it
ends, `resource.error` with `data.error`, and `ping` every 30 s.  `{"resourceType": "count"}` streams
`resource.change` events whose data is a `count` object holding only the types that changed.
With `"mode": "resource.changes"` (newer dashboards) changes are announced, debounced, without data.

Watches are the store's own (`Store.watch`), so a change made through the apiserver reaches the
browser in the same reactor turn; nothing runs for a cluster without a subscriber.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.web.server import NOT_DONE_YET, Request

from scaleagent.apiserver.request import ApiContext
from scaleagent.apiserver.status import ApiError
from scaleagent.apiserver.store import ADDED, DELETED, MODIFIED, Entry, Watch
from scaleagent.redact import logger
from scaleagent.steve import counts as counts_mod
from scaleagent.steve.format import Formatter, Urls
from scaleagent.steve.schemas import COUNT, Schema, SchemaSet, schemas_for

log = logger()

PING_INTERVAL = 30.0
COUNT_FLUSH = 1.0
_NAMES = {ADDED: "resource.create", MODIFIED: "resource.change", DELETED: "resource.remove"}


def _key(sub: dict[str, Any]) -> str:
    return "/".join(str(sub.get(k) or "") for k in ("resourceType", "namespace", "id", "selector"))


def _event(name: str, sub: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An APIEvent with Go's omitempty: empty members left out."""
    out: dict[str, Any] = {"name": name}
    for field in ("namespace", "resourceType", "id", "selector"):
        value = extra.pop(field, sub.get(field))
        if value:
            out[field] = value
    out.update({k: v for k, v in extra.items() if v not in (None, "")})
    return out


class _Subscription:
    """One watch of one socket; `cancel()` stops it."""

    __slots__ = ("watches", "timer")

    def __init__(self) -> None:
        self.watches: list[Watch] = []
        self.timer: Any = None

    def cancel(self) -> None:
        for watch in self.watches:
            watch.cancel()
        self.watches = []
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class SubscribeProtocol(WebSocketServerProtocol):
    """One browser's subscribe socket on one cluster."""

    api: ApiContext
    headers: dict[str, str]
    clock: Any

    def onOpen(self) -> None:
        self._subs: dict[str, _Subscription] = {}
        self._closed = False
        self._ping = self.clock.callLater(PING_INTERVAL, self._send_ping)

    def _send_ping(self) -> None:
        self._ping = None
        if self._closed:
            return
        self._send({"name": "ping"})
        self._ping = self.clock.callLater(PING_INTERVAL, self._send_ping)

    def _send(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        self.sendMessage(json.dumps(event, separators=(",", ":")).encode() + b"\n", isBinary=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            sub = json.loads(payload)
            if not isinstance(sub, dict):
                raise ValueError("expected a JSON object")
        except ValueError as error:
            self._send({"name": "resource.error", "data": {"error": f"invalid subscribe message: {error}"}})
            return
        key = _key(sub)
        if sub.get("stop"):
            self._stop(key, sub)
        elif key not in self._subs:
            self._start(key, sub)

    def _stop(self, key: str, sub: dict[str, Any]) -> None:
        found = self._subs.pop(key, None)
        if found is not None:
            found.cancel()
            self._send(_event("resource.stop", sub))

    def _error(self, key: str, sub: dict[str, Any], message: str) -> None:
        self._send(_event("resource.error", sub, data={"error": message}))
        self._stop(key, sub)

    def _start(self, key: str, sub: dict[str, Any]) -> None:
        schemas = schemas_for(self.api.kinds)
        type_name = str(sub.get("resourceType") or "")
        schema = schemas.lookup(type_name)
        subscription = _Subscription()
        self._subs[key] = subscription
        if schema is None:
            self._error(key, sub, f"failed to find schema {type_name}")
            return
        # Events the store replays inside watch() (from an older resourceVersion) wait until
        # resource.start is out, the order steve's watch session sends them in.
        held: list[dict[str, Any]] | None = []
        send = self._send

        def deliver(event: dict[str, Any]) -> None:
            if held is None:
                send(event)
            else:
                held.append(event)

        try:
            if schema.id == COUNT:
                self._watch_counts(subscription, schemas, sub, deliver)
            elif schema.rt is None or not schema.rt.watchable:
                raise ApiError(405, "MethodNotAllowed", f"schema {type_name} does not support watching")
            else:
                self._watch_type(subscription, schemas, schema, sub, deliver)
        except ApiError as error:
            subscription.cancel()
            self._error(key, sub, error.message)
            return
        send(_event("resource.start", {k: v for k, v in sub.items() if k != "namespace"}))
        pending, held = held, None
        for event in pending:
            send(event)

    def _formatter(self, schemas: SchemaSet) -> Formatter:
        urls = Urls(self.headers, "/v1/subscribe")
        return Formatter(schemas, urls, self.api.store, float(self.clock.seconds()))

    def _watch_type(
        self,
        subscription: _Subscription,
        schemas: SchemaSet,
        schema: Schema,
        sub: dict,
        deliver: Callable[[dict[str, Any]], None],
    ) -> None:
        assert schema.rt is not None
        store = self.api.store
        namespace = str(sub.get("namespace") or "") or None
        id_ = str(sub.get("id") or "")
        field_selector = ""
        if id_:
            ns, _, name = id_.rpartition("/")
            namespace = ns or namespace
            field_selector = f"metadata.name={name}"
        revision = str(sub.get("resourceVersion") or "") or str(store.resource_version)
        mode = str(sub.get("mode") or "")
        debounce = sub.get("debounceMs")
        delay = (float(debounce) / 1000.0) if isinstance(debounce, (int, float)) and debounce > 0 else 4.0

        def changes_sink(kind: str, entry: Entry) -> None:
            if kind not in _NAMES or subscription.timer is not None:
                return

            def flush() -> None:
                subscription.timer = None
                deliver(
                    _event(
                        "resource.changes",
                        sub,
                        resourceType=schema.id,
                        data={"type": schema.id, "revision": str(store.resource_version)},
                    )
                )

            subscription.timer = self.clock.callLater(delay, flush)

        def sink(kind: str, entry: Entry) -> None:
            name = _NAMES.get(kind)
            if name is None:
                return
            try:
                data = self._formatter(schemas).object(schema, entry.obj)
                revision = entry.obj.get("metadata", {}).get("resourceVersion", "")
                deliver(_event(name, sub, resourceType=schema.id, revision=revision, data=data))
            except Exception:  # a broken object must not stop the writer that triggered the event
                log.failure("steve subscribe: formatting {type} failed", type=schema.id)

        watch = store.watch(
            schema.rt,
            changes_sink if mode == "resource.changes" else sink,
            namespace=namespace,
            label_selector=str(sub.get("selector") or ""),
            field_selector=field_selector,
            resource_version=revision,
        )
        subscription.watches.append(watch)

    def _watch_counts(
        self,
        subscription: _Subscription,
        schemas: SchemaSet,
        sub: dict,
        deliver: Callable[[dict[str, Any]], None],
    ) -> None:
        store = self.api.store
        watched = counts_mod.countable(schemas)
        last = counts_mod.counts(store, schemas, watched)["counts"]
        dirty: set[str] = set()
        by_id = {s.id: s for s in watched}

        def flush() -> None:
            subscription.timer = None
            changed = {}
            for schema_id in sorted(dirty):
                now = counts_mod.item_count(store, by_id[schema_id])
                if now != last.get(schema_id):
                    last[schema_id] = now
                    changed[schema_id] = now
            dirty.clear()
            if changed:
                urls = Urls(self.headers, "/v1/subscribe")
                count_schema = counts_mod.count_schema(schemas)
                data = {
                    "id": "count",
                    "type": COUNT,
                    "links": {"self": urls.resource(count_schema, "count")},
                    "counts": changed,
                }
                deliver(_event("resource.change", sub, resourceType=COUNT, data=data))

        def sink_for(schema_id: str) -> Callable[[str, Entry], None]:
            def sink(kind: str, entry: Entry) -> None:
                if kind not in _NAMES:
                    return
                dirty.add(schema_id)
                if subscription.timer is None:
                    subscription.timer = self.clock.callLater(COUNT_FLUSH, flush)

            return sink

        current = str(store.resource_version)
        for schema in watched:
            assert schema.rt is not None
            subscription.watches.append(store.watch(schema.rt, sink_for(schema.id), resource_version=current))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._closed = True
        for sub in getattr(self, "_subs", {}).values():
            sub.cancel()
        self._subs = {}
        ping = getattr(self, "_ping", None)
        if ping is not None and ping.active():
            ping.cancel()
        self._ping = None


_factories: dict[int, WebSocketServerFactory] = {}


def _factory(clock: Any) -> WebSocketServerFactory:
    """One autobahn factory per reactor (process-wide), built on the first subscribe."""
    found = _factories.get(id(clock))
    if found is None:
        found = WebSocketServerFactory(reactor=clock)
        found.protocol = SubscribeProtocol
        found.setProtocolOptions(openHandshakeTimeout=10, closeHandshakeTimeout=2, autoPingInterval=0)
        found.noisy = False
        _factories[id(clock)] = found
    return found


def upgrade(request: Request, api: ApiContext, clock: Any, headers: dict[str, str]) -> Any:
    """Hand this HTTP request's connection to a `SubscribeProtocol` (the WebSocket handshake is
    answered by autobahn from the replayed request)."""
    transport = request.channel.transport
    if transport is None or (headers.get("upgrade") or "").lower() != "websocket":
        request.setResponseCode(400)
        request.setHeader(b"content-type", b"application/json")
        body = {"type": "error", "links": {}, "status": 400, "code": "BadRequest",
                "message": "subscribe needs a WebSocket upgrade"}
        return json.dumps(body).encode()
    protocol = _factory(clock).buildProtocol(transport.getPeer())
    protocol.api = api
    protocol.headers = headers
    protocol.clock = clock
    request.channel.setTimeout(None)
    request.channel.transport = None
    transport.protocol = protocol
    protocol.makeConnection(transport)
    resume = getattr(transport, "resumeProducing", None)
    if resume is not None:
        resume()
    raw = request.method + b" " + request.uri + b" HTTP/1.1\r\n"
    for name, values in request.requestHeaders.getAllRawHeaders():
        raw += name + b": " + b",".join(values) + b"\r\n"
    raw += b"\r\n"
    protocol.dataReceived(raw)
    return NOT_DONE_YET
