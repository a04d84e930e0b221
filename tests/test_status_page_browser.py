"""The status page in headless Chromium, during a real run against the stand-in.

Chromium (Debian's `chromium`; `.ci/run` installs it when missing) loads `GET /` from the admin
listener on loopback and dumps the DOM after layout; its console goes to stderr (`--enable-logging`),
where any console message ("CONSOLE" lines: script errors, failed loads) fails the test. A page with a
deliberate console error proves that detection works. The counts in the DOM must equal what the admin
API's JSON (`GET /clusters`) reports at the same moment.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, protocol
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from scaleagent.admin import admin_site
from scaleagent.agent import AgentService
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig
from scaleagent.redact import Secret
from scaleagent.sim import store as st
from scaleagent.sim.service import start_ranchersim
from tests.support import until as support_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="the chromium binary is not installed")
COUNT = 4
TIMEOUT = 90.0


class _Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.done: defer.Deferred[int] = defer.Deferred()
        self.ended = False

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self.err.append(data)

    def processEnded(self, reason) -> None:  # noqa: N802 (Twisted's name)
        self.ended = True
        self.done.callback(getattr(reason.value, "exitCode", None))


async def chromium(reactor, tmp_path, url: str, *extra: str) -> tuple[str, str]:
    """Run headless Chromium once; (stdout, stderr). Killed if it outlives TIMEOUT."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        url,
    ]
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    collect = _Collect()
    transport = reactor.spawnProcess(collect, CHROMIUM, args, env=env)
    killer = reactor.callLater(TIMEOUT, lambda: transport.signalProcess("KILL"))
    try:
        await collect.done
    finally:
        if killer.active():
            killer.cancel()
        if not collect.ended:
            transport.signalProcess("KILL")
    return b"".join(collect.out).decode("utf-8", "replace"), b"".join(collect.err).decode("utf-8", "replace")


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


#: the shared bounded poll (tests/support.py), with this file's patience
until = functools.partial(support_until, seconds=30.0, step=0.05)


@pytest.fixture
def sim(reactor):
    started = pytest_twisted.blockon(
        defer.ensureDeferred(start_ranchersim(reactor, profile="idle", summary_interval=0,
                                              driver_options={"start_jitter": 0.1}))
    )
    started.driver.profile = started.driver.profile.with_options(health_interval=0.5, ping_interval=0.5)
    yield started
    pytest_twisted.blockon(defer.ensureDeferred(started.stop()))


@pytest_twisted.ensureDeferred
async def test_detection_catches_a_console_error(reactor, tmp_path):
    class Bad(Resource):
        isLeaf = True

        def render_GET(self, request):  # noqa: N802 (Twisted's name)
            return b"<!DOCTYPE html><p>x</p><script>console.error('deliberate')</script>"

    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Site(Bad()))
    try:
        _, err = await chromium(reactor, tmp_path, f"http://127.0.0.1:{port.getHost().port}/", "--dump-dom")
    finally:
        await port.stopListening()
    assert any("deliberate" in line for line in console_lines(err)), err[-2000:]


@pytest_twisted.ensureDeferred
async def test_status_page_in_chromium_shows_what_the_json_reports(reactor, sim, tmp_path):
    config = AgentConfig(
        rancher=RancherConfig(url=sim.url, token=Secret(sim.api_token), ca_checksum=sim.ca_checksum),
        clusters=ClustersConfig(count=COUNT, name_prefix="sb-", ramp_per_second=200.0,
                                reconnect_per_second=200.0),
        state=StateConfig(dir=tmp_path / "state"),
    )
    agent = AgentService(config, reactor, raise_limit=False, poll_interval=0.3, progress_interval=0.5)
    site, _ = admin_site(agent, None)  # the admin API's own Site, as AdminService serves it
    agent.startService()
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        await until(reactor, lambda: len(sim.store.clusters()) == COUNT
                    and all(c.state == st.ACTIVE for c in sim.store.clusters()), what="all active")
        await until(reactor, lambda: agent.counts()["rancher_state"].get("active") == COUNT,
                    what="the agent polled Rancher's view")
        await agent.getServiceNamed("churn").request("unhealthy", {"clusters": ["sb-00001"], "seconds": 60})
        # Rancher's view settles (health check failed, the agent polled it) before the comparison.
        await until(reactor, lambda: agent.counts()["rancher_state"].get("unavailable") == 1,
                    what="the unhealthy cluster unavailable in Rancher's view")
        response = await treq.get(base + "/clusters")
        counts = json.loads(await response.content())["counts"]
        dom, err = await chromium(reactor, tmp_path, base + "/", "--dump-dom", "--window-size=1200,1000")
        assert console_lines(err) == [], console_lines(err)
        assert "<svg" in dom and 'id="chart"' in dom

        def shown(key: str) -> int:
            match = re.search(rf'id="{key}" data-value="(\d+)">(\d+)<', dom)
            assert match, f"{key} not on the page"
            assert match.group(1) == match.group(2)
            return int(match.group(1))

        assert shown("owned") == counts["owned"] == COUNT
        assert shown("registered") == counts["registered"] == COUNT
        assert shown("fully-connected") == counts["fully_connected"] == COUNT
        assert shown("connected-main") == counts["connected_main"] == COUNT
        assert shown("connected-steve") == counts["connected_steve"] == COUNT
        assert shown("tunnels-up") == 2 * COUNT
        assert shown("active") == counts["rancher_state"]["active"] == COUNT - 1
        for state, n in counts["rancher_state"].items():
            assert re.search(rf'id="rancher-{state}">{n}<', dom)
        assert re.search(r'id="churn-now-unhealthy">1<', dom)
        assert re.search(r'id="churn-unhealthy">1<', dom)
        assert "unhealthy: /readyz failing for 60s on 1 clusters: sb-00001" in dom
    finally:
        await port.stopListening()
        await agent.stopService()
