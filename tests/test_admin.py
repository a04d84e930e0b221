"""The admin API with StubTreq over a stand-in agent: status, resize and its token, metrics."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import defer, task

from scaleagent.admin import AdminService, admin_site, is_loopback_listen
from scaleagent.agent import ErrorTally
from scaleagent.redact import Secret
from scaleagent.retry import SlotLimiter


class FakeRunner:
    def __init__(self, index, state):
        self.index = index
        self.name = f"t-{index:05d}"
        self.state = state

    def to_json(self):
        return {"name": self.name, "index": self.index, "rancher_id": f"c-{self.index}", "tunnels": 2,
                "rancher_state": self.state, "last_error": None}


class FakeStore:
    def watcher_count(self):
        return 3


class FakeCluster:
    materialized = True
    store = FakeStore()


class FakeAgent:
    def __init__(self):
        self.runners = {0: FakeRunner(0, "active"), 1: FakeRunner(1, "active"), 2: FakeRunner(2, "pending")}
        self.ready = True
        self.server_error = ""
        self.reconnects = 7
        self.registered = 3
        self.adopted = 1
        self.reimported = 0
        self.deleted = 0
        self.token_refreshes = 2
        self.errors = ErrorTally()
        self.clusters = [FakeCluster(), FakeCluster()]
        self.resized: list[int] = []
        self.limiter = SlotLimiter(task.Clock(), 100)

    def counts(self):
        return {"owned": 3, "total": 3, "connected_main": 3, "connected_steve": 2,
                "rancher_state": dict(Counter(r.state for r in self.runners.values()))}

    def runner_by_name(self, name):
        return next((r for r in self.runners.values() if r.name == name), None)

    async def resize(self, count):
        if count < 0:
            raise ValueError("count must be between 0 and 100000")
        self.resized.append(count)
        return {"count": count, "added": 0, "removed": []}

    def traffic_totals(self):
        return Counter(frames_in=10, frames_out=12, bytes_in=1000, bytes_out=2000)

    def virtual_connections(self):
        return 4


def stub(agent, token=None):
    site, apiserver = admin_site(agent, Secret(token) if token else None)
    return StubTreq(site.resource), apiserver


async def call(http, method, path, body=None, token=None):
    headers = {"Authorization": [f"Bearer {token}"]} if token else {}
    kwargs = {}
    if body is not None:
        kwargs["data"] = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await http.request(method, "http://admin.test" + path, headers=headers, **kwargs)
    content = await response.content()
    ctype = (response.headers.getRawHeaders("content-type") or [""])[0]
    return response.code, (json.loads(content) if ctype == "application/json" else content)


@pytest_twisted.ensureDeferred
async def test_status_endpoints():
    http, _ = stub(FakeAgent())
    health = {"status": "ok", "ready": True, "rancher_error": None}
    assert await call(http, "GET", "/healthz") == (200, health)
    code, body = await call(http, "GET", "/clusters")
    assert code == 200 and [c["name"] for c in body["clusters"]] == ["t-00000", "t-00001", "t-00002"]
    assert body["counts"]["rancher_state"] == {"active": 2, "pending": 1}
    code, one = await call(http, "GET", "/clusters/t-00002")
    assert code == 200 and one["rancher_state"] == "pending"
    assert (await call(http, "GET", "/clusters/t-99999"))[0] == 404
    assert (await call(http, "GET", "/nothing"))[0] == 404
    assert (await call(http, "DELETE", "/clusters"))[0] == 405


@pytest_twisted.ensureDeferred
async def test_changes_need_the_admin_token_when_one_is_set():
    agent = FakeAgent()
    http, _ = stub(agent, token="s3cret")
    code, body = await call(http, "POST", "/clusters", {"count": 5})
    assert code == 401 and "admin token" in body["error"]
    assert (await call(http, "POST", "/clusters", {"count": 5}, token="wrong"))[0] == 401
    assert agent.resized == []
    code, body = await call(http, "POST", "/clusters", {"count": 5}, token="s3cret")
    assert (code, body["count"], agent.resized) == (200, 5, [5])
    # Reads stay open.
    assert (await call(http, "GET", "/clusters"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_resize_input_errors_without_token_configured():
    agent = FakeAgent()
    http, _ = stub(agent)
    assert (await call(http, "POST", "/clusters", {"count": 2}))[0] == 200
    for bad in (b"not json", {"count": "7"}, {"count": True}, {"number": 1}, [1]):
        code, body = await call(http, "POST", "/clusters", bad)
        assert code == 400 and "count" in body["error"]
    code, body = await call(http, "POST", "/clusters", {"count": -1})
    assert code == 400 and "between" in body["error"]
    assert (await call(http, "POST", "/clusters", b"x" * 70000))[0] == 413
    assert agent.resized == [2]


@pytest_twisted.ensureDeferred
async def test_metrics_in_prometheus_text_format():
    from prometheus_client.parser import text_string_to_metric_families

    agent = FakeAgent()
    http, apiserver = stub(agent)
    apiserver.observe("list", "pods", 200, 0.004)
    apiserver.observe("watch", "secrets", 200, 0.002)
    response = await http.get("http://admin.test/metrics")
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    text = (await response.content()).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("scaleagent_clusters", (("rancher_state", "active"),))] == 2
    assert samples[("scaleagent_tunnels_connected", (("tunnel", "main"),))] == 3
    assert samples[("scaleagent_tunnels_connected", (("tunnel", "steve"),))] == 2
    assert samples[("scaleagent_reconnects_total", ())] == 7
    assert samples[("scaleagent_reconnect_window_peak", ())] == 0
    assert samples[("scaleagent_tunnel_frames_total", (("direction", "out"),))] == 12
    assert samples[("scaleagent_tunnel_bytes_total", (("direction", "in"),))] == 1000
    assert samples[("scaleagent_virtual_connections_open", ())] == 4
    assert samples[("scaleagent_watches_open", ())] == 6
    key = ("scaleagent_apiserver_requests_total", (("code", "200"), ("resource", "pods"), ("verb", "list")))
    assert samples[key] == 1
    assert samples[("scaleagent_apiserver_request_duration_seconds_count", (("verb", "list"),))] == 1
    # The agent changes; the next scrape shows it.
    agent.reconnects = 9
    agent.limiter.admit()
    agent.limiter.admit()
    text = (await (await http.get("http://admin.test/metrics")).content()).decode()
    assert "scaleagent_reconnects_total 9.0" in text
    assert "scaleagent_reconnect_window_peak 2.0" in text


def test_listener_off_loopback_needs_a_token():
    assert is_loopback_listen("tcp:8180:interface=127.0.0.1")
    assert is_loopback_listen("tcp:8180:interface=\\:\\:1")
    assert is_loopback_listen("unix:/run/scaleagent.sock")
    assert not is_loopback_listen("tcp:8180")
    assert not is_loopback_listen("tcp:8180:interface=0.0.0.0")
    clock = task.Clock()
    with pytest.raises(ValueError, match="token_file"):
        AdminService(clock, FakeAgent(), "tcp:8180:interface=0.0.0.0", None)
    AdminService(clock, FakeAgent(), "tcp:8180:interface=0.0.0.0", Secret("t"))


@pytest_twisted.ensureDeferred
async def test_admin_service_listens_on_loopback(reactor):
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    service = AdminService(reactor, FakeAgent(), "tcp:0:interface=127.0.0.1", None)
    service.startService()
    for _ in range(100):
        if service.port is not None:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    try:
        response = await http.get(f"http://127.0.0.1:{service.port.getHost().port}/healthz")
        assert response.code == 200 and json.loads(await response.content())["status"] == "ok"
    finally:
        await pool.closeCachedConnections()
        await defer.maybeDeferred(service.stopService)
