"""The stand-in over real loopback TLS: a treq client of every management endpoint, files, twistd."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest
import pytest_twisted
import yaml
from treq.client import HTTPClient
from twisted.internet import defer, protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from scaleagent.sim.service import RancherSim, start_ranchersim

ROOT = Path(__file__).resolve().parent.parent


@implementer(IPolicyForHTTPS)
class PinnedCA:
    """Trust exactly the stand-in's CA, as an agent does after checking CATTLE_CA_CHECKSUM."""

    def __init__(self, ca_pem: str) -> None:
        self._root = Certificate.loadPEM(ca_pem.encode())

    def creatorForNetloc(self, hostname, port):
        return optionsForClientTLS(hostname.decode(), trustRoot=self._root)


def client(reactor, sim: RancherSim) -> tuple[HTTPClient, HTTPConnectionPool]:
    pool = HTTPConnectionPool(reactor, persistent=False)
    return HTTPClient(Agent(reactor, contextFactory=PinnedCA(sim.ca_pem), pool=pool)), pool


async def request(http: HTTPClient, method: str, url: str, token: str | None, body=None):
    headers = {"Authorization": [f"Bearer {token}"]} if token else {}
    kwargs = {"json": body} if body is not None else {}
    response = await http.request(method, url, headers=headers, **kwargs)
    content = await response.content()
    ctype = (response.headers.getRawHeaders("content-type") or [""])[0]
    return response.code, (json.loads(content) if ctype == "application/json" else content)


@pytest_twisted.ensureDeferred
async def test_every_endpoint_and_error_over_tls(reactor, tmp_path):
    sim = await start_ranchersim(
        reactor, ca_file=tmp_path / "ca.pem", token_file=tmp_path / "api.token", url_file=tmp_path / "url"
    )
    http, pool = client(reactor, sim)
    url, token = sim.url, sim.api_token
    try:
        assert url.startswith("https://127.0.0.1:")
        assert (tmp_path / "url").read_text().strip() == url
        assert (tmp_path / "api.token").read_text().strip() == token
        assert stat.S_IMODE((tmp_path / "api.token").stat().st_mode) == 0o600
        assert (tmp_path / "ca.pem").read_text() == sim.ca_pem

        assert await request(http, "GET", url + "/ping", None) == (200, b"pong")
        code, cacerts = await request(http, "GET", url + "/v3/settings/cacerts", None)
        assert code == 200 and cacerts["value"] == sim.ca_pem
        # The agent's check: sha256 of the value (newline-terminated) equals CATTLE_CA_CHECKSUM.
        value = cacerts["value"] if cacerts["value"].endswith("\n") else cacerts["value"] + "\n"
        assert hashlib.sha256(value.encode()).hexdigest() == sim.ca_checksum
        code, version = await request(http, "GET", url + "/v3/settings/server-version", token)
        assert (code, version["value"]) == (200, "v2.14.0")
        code, body = await request(http, "GET", url + "/v3/settings/server-version", "token-wrong:x")
        assert (code, body["message"]) == (401, "must authenticate")
        assert (await request(http, "GET", url + "/v3/clusters", None))[0] == 401

        code, cluster = await request(
            http, "POST", url + "/v3/clusters", token, {"type": "cluster", "name": "s-1"}
        )
        assert code == 201 and cluster["id"].startswith("c-") and cluster["state"] == "pending"
        code, body = await request(
            http, "POST", url + "/v3/clusters", token, {"type": "cluster", "name": "s-1"}
        )
        assert (code, body["code"], body["status"]) == (422, "NotUnique", 422)
        code, listing = await request(http, "GET", url + "/v3/clusters?name=s-1", token)
        assert [c["id"] for c in listing["data"]] == [cluster["id"]]
        code, everything = await request(http, "GET", url + "/v3/clusters", token)
        assert [c["name"] for c in everything["data"]] == ["local", "s-1"]  # Rancher's own cluster is listed
        code, got = await request(http, "GET", f"{url}/v3/clusters/{cluster['id']}", token)
        assert code == 200 and got["name"] == "s-1"
        code, body = await request(http, "GET", url + "/v3/clusters/c-zzzzz", token)
        assert (code, body["code"]) == (404, "NotFound")

        code, tokens = await request(
            http, "GET", f"{url}/v3/clusterregistrationtokens?clusterId={cluster['id']}", token
        )
        [crt] = tokens["data"]
        assert crt["name"] == "default-token" and len(crt["token"]) == 54
        assert crt["manifestUrl"] == f"{url}/v3/import/{crt['token']}_{cluster['id']}.yaml"
        code, created = await request(
            http, "POST", url + "/v3/clusterregistrationtokens", token, {"clusterId": cluster["id"]}
        )
        assert code == 201 and created["token"] != crt["token"]
        code, body = await request(
            http, "POST", url + "/v3/clusterregistrationtokens", token, {"clusterId": "c-x"}
        )
        assert (code, body["code"]) == (422, "InvalidReference")

        code, text = await request(http, "GET", crt["manifestUrl"], None)
        assert code == 200
        docs = list(yaml.safe_load_all(text))
        [deployment] = [d for d in docs if d["kind"] == "Deployment"]
        env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["CATTLE_CA_CHECKSUM"] == sim.ca_checksum and env["CATTLE_SERVER"] == url
        code, text = await request(http, "GET", f"{url}/v3/import/wrong_{cluster['id']}.yaml", None)
        assert (code, text) == (400, b"cluster not found or invalid token")

        code, same = await request(
            http, "GET", f"{url}/v3/clusters/{cluster['id']}/clusterregistrationtokens", token
        )
        assert code == 200 and {t["id"] for t in same["data"]} == {crt["id"], created["id"]}
        code, one = await request(http, "GET", f"{url}/v3/clusterregistrationtokens/{crt['id']}", token)
        assert (code, one["token"]) == (200, crt["token"])
        code, body = await request(http, "POST", url + "/v3/clusters", token, {"type": "cluster"})
        assert (code, body["code"], body["fieldName"]) == (422, "MissingRequired", "name")
        response = await http.post(
            url + "/v3/clusters", data=b"{oops", headers={"Authorization": [f"Bearer {token}"]}
        )
        assert (response.code, (await response.json())["code"]) == (422, "InvalidBodyContent")
        code, body = await request(http, "PUT", url + "/v3/clusters", token, {})
        assert (code, body["code"]) == (405, "MethodNotAllow")
        code, body = await request(http, "GET", url + "/v3/settings/nope", token)
        assert (code, body["code"]) == (404, "NotFound")
        assert await request(http, "GET", url + "/nowhere", None) == (404, b"404 page not found\n")
        code, body = await request(http, "POST", f"{url}/sim/clusters/{cluster['id']}/disconnect", token)
        assert (code, body) == (200, {"id": cluster["id"], "closed": 0})

        code, rotated = await request(http, "POST", f"{url}/sim/clusters/{cluster['id']}/rotate-token", token)
        assert code == 200 and rotated["token"] != crt["token"]
        code, status = await request(http, "GET", url + "/sim/clusters", token)
        assert status["counts"] == {"pending": 1, "active": 0, "unavailable": 0}

        code, removed = await request(http, "DELETE", f"{url}/v3/clusters/{cluster['id']}", token)
        assert (code, removed["state"]) == (200, "removing")
        assert (await request(http, "GET", f"{url}/v3/clusters/{cluster['id']}", token))[0] == 404
    finally:
        await pool.closeCachedConnections()
        await sim.stop()
    assert not sim.running


@pytest_twisted.ensureDeferred
async def test_restart_keeps_token_and_ca_when_asked(reactor, tmp_path):
    kwargs = {"token_file": tmp_path / "api.token", "tls_dir": tmp_path / "tls"}
    first = await start_ranchersim(reactor, **kwargs)
    await first.stop()
    second = await start_ranchersim(reactor, **kwargs)
    try:
        assert second.api_token == first.api_token
        assert second.ca_pem == first.ca_pem
        assert second.store.clusters() == []  # clusters live in memory only
        assert stat.S_IMODE((tmp_path / "tls" / "ca.key").stat().st_mode) == 0o600
    finally:
        await second.stop()
    third = await start_ranchersim(reactor)
    try:
        assert third.api_token != first.api_token and third.ca_pem != first.ca_pem
    finally:
        await third.stop()


@pytest_twisted.ensureDeferred
async def test_listen_failure_is_reported(reactor):
    first = await start_ranchersim(reactor)
    port = first.port.getHost().port
    try:
        with pytest.raises(Exception, match="Address already in use|Couldn't listen"):
            await start_ranchersim(reactor, listen=f"tcp:{port}:interface=127.0.0.1")
    finally:
        await first.stop()


@pytest_twisted.ensureDeferred
async def test_token_ttl_rotates_registration_tokens(reactor):
    from twisted.internet.task import deferLater

    sim = await start_ranchersim(reactor, token_ttl=0.2, grace_period=0.1)
    try:
        cluster = sim.store.create_cluster("ttl")
        first = sim.store.tokens(cluster.id)[0].token
        for _ in range(200):
            if sim.store.tokens(cluster.id)[0].token != first:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert sim.store.tokens(cluster.id)[0].token != first
    finally:
        await sim.stop()
    assert not sim._ttl_loop.running


@pytest_twisted.ensureDeferred
async def test_summary_line_only_when_counts_change(reactor):
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observe(event):
        if event.get("log_namespace") == "scaleagent.sim.service":
            lines.append(formatEvent(event))

    sim = await start_ranchersim(reactor, summary_interval=0)
    globalLogPublisher.addObserver(observe)
    try:
        sim.store.create_cluster("one")
        sim.log_summary()
        sim.log_summary()
        assert len(lines) == 1
        assert "1 clusters: 0 active, 1 pending, 0 unavailable" in lines[0]
        sim.store.create_cluster("two")
        sim.log_summary()
        assert len(lines) == 2 and "2 clusters" in lines[1]
    finally:
        globalLogPublisher.removeObserver(observe)
        await sim.stop()


@pytest_twisted.ensureDeferred
async def test_listen_must_be_tcp(reactor, tmp_path):
    with pytest.raises(ValueError, match="expected a TCP endpoint"):
        await start_ranchersim(reactor, listen=f"unix:{tmp_path}/sock")


@pytest_twisted.ensureDeferred
async def test_default_token_can_appear_late_as_in_rancher(reactor):
    from twisted.internet.task import deferLater

    sim = await start_ranchersim(reactor, token_delay=0.1)
    http, pool = client(reactor, sim)
    try:
        code, cluster = await request(http, "POST", sim.url + "/v3/clusters", sim.api_token, {"name": "late"})
        query = f"{sim.url}/v3/clusterregistrationtokens?clusterId={cluster['id']}"
        assert (await request(http, "GET", query, sim.api_token))[1]["data"] == []
        await deferLater(reactor, 0.2, lambda: None)
        [crt] = (await request(http, "GET", query, sim.api_token))[1]["data"]
        assert crt["name"] == "default-token"
        # A cluster deleted before its token appears never gets one.
        gone = sim.store.create_cluster("gone")
        sim.delete_cluster(gone.id)
        await deferLater(reactor, 0.2, lambda: None)
        assert sim.store.tokens(gone.id) == []
    finally:
        await pool.closeCachedConnections()
        await sim.stop()


# -- twistd -n ranchersim -----------------------------------------------------------------------------

BOOTSTRAP = """
import sys
root = sys.argv.pop(1)
sys.path.insert(0, root)
import twisted.plugins
twisted.plugins.__path__.insert(0, root + "/twisted/plugins")
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
run()
"""


class Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self.signal = None

    def outReceived(self, data: bytes) -> None:
        self.out += data

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.signal = reason.value.signal
        self.ended.callback(reason.value.exitCode)


async def wait_for_file(reactor, path: Path, seconds: float = 30.0) -> str:
    from twisted.internet.task import deferLater

    for _ in range(int(seconds / 0.05)):
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"{path} never appeared")


@pytest_twisted.ensureDeferred
async def test_twistd_ranchersim_starts_serves_and_stops_on_sigterm(reactor, tmp_path):
    """`twistd -n ranchersim` from this checkout (its plugin file first on the plugin path)."""
    proto = Collect()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HOME"] = str(tmp_path)
    args = [
        sys.executable,
        "-c",
        BOOTSTRAP,
        str(ROOT),
        "-n",
        "--pidfile=",
        "ranchersim",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--url-file",
        "url",
    ]
    reactor.spawnProcess(proto, sys.executable, args, env=env, path=str(tmp_path))
    try:
        url = await wait_for_file(reactor, tmp_path / "url")
        token = (tmp_path / "ranchersim.token").read_text().strip()
        ca = (tmp_path / "ranchersim-ca.pem").read_text()
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = HTTPClient(Agent(reactor, contextFactory=PinnedCA(ca), pool=pool))
        assert await request(http, "GET", url + "/ping", None) == (200, b"pong")
        code, cluster = await request(http, "POST", url + "/v3/clusters", token, {"name": "from-twistd"})
        assert code == 201 and cluster["name"] == "from-twistd"
    finally:
        if proto.transport.pid:
            os.kill(proto.transport.pid, signal.SIGTERM)
    code = await proto.ended.addTimeout(30, reactor)
    output = proto.out.decode()
    assert (code, proto.signal) in ((0, None), (None, signal.SIGTERM)), output
    assert "Received SIGTERM, shutting down." in output
    assert "Traceback" not in output
    assert token not in output  # the API token never reaches the log


@pytest_twisted.ensureDeferred
async def test_twistd_ranchersim_on_a_busy_port_is_one_line_and_fails(reactor, tmp_path):
    busy = await start_ranchersim(reactor)
    port = busy.port.getHost().port
    proto = Collect()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HOME"] = str(tmp_path)
    listen = f"tcp:{port}:interface=127.0.0.1"
    args = [sys.executable, "-c", BOOTSTRAP, str(ROOT), "-n", "--pidfile=", "ranchersim", "--listen", listen]
    try:
        reactor.spawnProcess(proto, sys.executable, args, env=env, path=str(tmp_path))
        code = await proto.ended.addTimeout(30, reactor)
    finally:
        await busy.stop()
    output = proto.out.decode()
    last = output.strip().splitlines()[-1]
    assert code != 0
    # twistd logs its own start lines first; then ours ends the start, with no traceback.
    assert f"ranchersim: cannot listen on {listen}: " in last and "Address already in use" in last
    assert "Traceback" not in output


def test_tap_options():
    from twisted.python.usage import UsageError

    from scaleagent.sim.tap import Options

    options = Options()
    options.parseOptions(
        [
            "--listen",
            "tcp:0",
            "--hostname",
            "rancher.test, 10.0.0.5",
            "--token-grace",
            "5",
            "--token-ttl",
            "60",
        ]
    )
    assert options["hostnames"] == ("rancher.test", "10.0.0.5")
    assert options["token-grace"] == 5.0 and options["token-ttl"] == 60.0
    with pytest.raises(UsageError, match="--token-ttl"):
        Options().parseOptions(["--token-ttl", "0"])
    with pytest.raises(UsageError, match="--token-grace"):
        Options().parseOptions(["--token-grace", "soon"])
    with pytest.raises(UsageError, match="--server-url"):
        Options().parseOptions(["--server-url", "ftp://x"])


def test_plugin_lists_ranchersim_lazily():
    from twisted.application.service import IServiceMaker

    from twisted.plugins import scaleagent_plugin

    source = (ROOT / "twisted" / "plugins" / "scaleagent_plugin.py").read_text()
    assert '"scaleagent.sim.tap"' in source
    if hasattr(scaleagent_plugin, "ranchersim"):  # the installed copy may predate it
        assert IServiceMaker.providedBy(scaleagent_plugin.ranchersim)
        assert scaleagent_plugin.ranchersim.tapname == "ranchersim"


@pytest_twisted.ensureDeferred
async def test_failed_start_leaves_no_timers(reactor, tmp_path):
    def ours():
        return [call for call in reactor.getDelayedCalls() if "RancherSim" in repr(call)]

    assert ours() == []
    with pytest.raises(ValueError):
        await start_ranchersim(reactor, listen=f"unix:{tmp_path}/sock2", token_ttl=60)
    assert ours() == []
    running = await start_ranchersim(reactor, token_ttl=60)
    assert len(ours()) == 2  # the summary and TTL loops: the check above can see them
    await running.stop()
    assert ours() == []
