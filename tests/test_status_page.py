"""The status page, /status and the churn admin routes, without a network: StubTreq and task.Clock.

The agent is a real `AgentService` that is never started (no Rancher is contacted); its counters and
runners are set by hand so the page's numbers can be compared with what the JSON reports.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.task import Clock

from scaleagent.admin import AdminResource, metrics_registry
from scaleagent.agent import AgentService
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig
from scaleagent.redact import Secret
from scaleagent.status_page import StatusHistory, chart, extend_admin, history_of, render_page, status_json

ADMIN_TOKEN = "admin-s3cret"


def make_agent(tmp_path, clock) -> AgentService:
    config = AgentConfig(
        rancher=RancherConfig(url="https://rancher.invalid", token=Secret("token-abcde:xyz")),
        clusters=ClustersConfig(count=4, name_prefix="sp-"),
        state=StateConfig(dir=tmp_path / "state"),
    )
    return AgentService(config, clock, rancher=SimpleNamespace(url="https://rancher.invalid"),
                        raise_limit=False)


def fake_runner(index: int, phase: str, state: str, tunnels: int, error: str = ""):
    names = ("main", "steve")
    return SimpleNamespace(
        index=index,
        name=f"sp-{index:05d}",
        phase=phase,
        rancher_state=state,
        last_error=error,
        cluster=None,
        tunnels={k: SimpleNamespace(connected=i < tunnels, protocol=None) for i, k in enumerate(names)},
    )


def populate(agent: AgentService) -> None:
    agent.runners = {
        0: fake_runner(0, "connected", "active", 2),
        1: fake_runner(1, "connected", "active", 2),
        2: fake_runner(2, "connecting", "unavailable", 1, "sp-00002: steve tunnel: connection refused"),
    }
    agent.connected = {"main": 3, "steve": 2}
    agent.ready = True


def test_history_rates_and_window():
    clock = Clock()
    agent = SimpleNamespace(registered=0, reconnects=0, counts=lambda: {
        "connected_main": 0, "connected_steve": 0, "rancher_state": {}})
    history = StatusHistory(agent, clock, interval=10.0, window=60.0)
    for step in range(10):
        agent.registered = step * 50  # 5 per second
        agent.reconnects = step * 10 if step < 5 else 40  # 1 per second, then none
        history.sample()
        clock.advance(10.0)
    assert len(history.samples) == 7  # 60 s window at 10 s: bounded
    rates = history.rates()
    assert all(r["registrations"] == 5.0 for r in rates)
    assert [r["reconnects"] for r in rates][-3:] == [0.0, 0.0, 0.0]
    assert history.per_minute("registered", minutes=1.0) == 300.0


def test_chart_is_inline_svg_with_both_lines():
    points = [{"t": float(t), "registrations": t / 10, "reconnects": 1.0, "tunnels": 0, "active": 0}
              for t in range(0, 120, 10)]
    svg = chart(points)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'id="line-registrations"' in svg and 'id="line-reconnects"' in svg
    assert "no samples yet" in chart([])


def test_page_shows_the_counts_and_has_no_external_assets(tmp_path):
    clock = Clock()
    agent = make_agent(tmp_path, clock)
    populate(agent)
    status = status_json(agent)
    page = render_page(status).decode()
    counts = status["counts"]

    def shown(key):
        return re.search(rf'id="{key}" data-value="([^"]*)"', page).group(1)

    assert shown("registered") == str(counts["registered"]) == "3"
    assert shown("fully-connected") == str(counts["fully_connected"]) == "2"
    assert shown("tunnels-up") == "5" and shown("active") == "2"
    assert 'id="rancher-unavailable">1<' in page and 'id="phase-connecting">1<' in page
    assert "connection refused" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: works offline
    assert "<script" not in page


@pytest_twisted.ensureDeferred
async def test_routes_status_churn_auth_and_metrics(tmp_path):
    clock = Clock()
    agent = make_agent(tmp_path, clock)
    populate(agent)
    registry, _ = metrics_registry(agent)
    admin = AdminResource(agent, Secret(ADMIN_TOKEN), registry)
    client = StubTreq(extend_admin(admin, agent, registry))
    history_of(agent).sample()

    page = await client.get("http://admin/")
    assert page.code == 200 and page.headers.getRawHeaders("content-type")[0].startswith("text/html")
    assert b"scaleagent, shard 0/1" in await page.content()
    status = await (await client.get("http://admin/status")).json()
    assert status["counts"]["registered"] == 3 and status["tunnels_up"] == 5
    assert status["errors"][0]["cluster"] == "sp-00002"
    churn = await (await client.get("http://admin/churn")).json()
    assert churn["rates"]["leave_per_minute"] == 0.0

    body = json.dumps({"pods_per_minute": 30}).encode()
    refused = await client.post("http://admin/churn", data=body)
    assert refused.code == 401
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    changed = await client.post("http://admin/churn", data=body, headers=auth)
    assert changed.code == 200 and (await changed.json())["rates"]["pods_per_minute"] == 30.0
    bad = await client.post("http://admin/churn", data=b'{"pods_per_hour": 1}', headers=auth)
    assert bad.code == 400 and "unknown churn setting" in (await bad.json())["error"]
    unknown = await client.post("http://admin/churn/explode", data=b"{}", headers=auth)
    assert unknown.code == 400 and "expected one of leave, drop" in (await unknown.json())["error"]
    missing = await client.post("http://admin/churn/drop", data=b'{"clusters": ["sp-99999"]}', headers=auth)
    assert missing.code == 400 and "no cluster" in (await missing.json())["error"]
    garbage = await client.post("http://admin/churn/drop", data=b"[1", headers=auth)
    assert garbage.code == 400

    # Everything else still reaches the admin API; churn metrics are in its registry.
    healthz = await (await client.get("http://admin/healthz")).json()
    assert healthz["status"] == "ok"
    metrics = await (await client.get("http://admin/metrics")).text()
    assert 'scaleagent_churn_actions_total{action="leave"} 0.0' in metrics
    assert 'scaleagent_churn_clusters{fault="away"} 0.0' in metrics


@pytest_twisted.ensureDeferred
async def test_embedded_target_is_resolved_once_its_agent_exists(tmp_path):
    from twisted.internet import defer

    clock = Clock()
    agent = make_agent(tmp_path, clock)
    ready: defer.Deferred = defer.Deferred()
    target = SimpleNamespace(agent=None, when_agent=lambda: ready)
    registry, _ = metrics_registry(agent)
    client = StubTreq(extend_admin(AdminResource(agent, None, registry), target, registry))
    page = await client.get("http://admin/")
    assert page.code == 200 and b"starting" in await page.content()
    assert (await client.get("http://admin/status")).code == 503
    metrics = await (await client.get("http://admin/metrics")).text()
    assert "scaleagent_churn_actions_total" not in metrics  # no engine yet, no error either
    target.agent = agent
    ready.callback(agent)
    assert agent.getServiceNamed("churn") and agent.getServiceNamed("status-history")
    status = await (await client.get("http://admin/status")).json()
    assert status["counts"]["owned"] == 4
