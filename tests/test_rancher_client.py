"""The Rancher API client against the stand-in on loopback TLS, and its failure modes.

Real TLS and the stand-in's real API for the happy paths and for trust (checksum, verification on by
default); StubTreq over the stand-in's own API resource where a failure must be injected (a token that
is not there yet, a 5xx, a hang) with a Clock.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from scaleagent.rancher.client import (
    AUTH,
    CHECKSUM,
    SERVER,
    TIMEOUT,
    TLS,
    UNREACHABLE,
    RancherClient,
    RancherError,
    ca_checksum,
    call_with_retry,
)
from scaleagent.redact import Secret
from scaleagent.sim.service import start_ranchersim


@pytest.fixture
def sim(reactor):
    sim = pytest_twisted.blockon(defer.ensureDeferred(start_ranchersim(reactor)))
    yield sim
    pytest_twisted.blockon(defer.ensureDeferred(sim.stop()))


def client(reactor, sim, **kwargs) -> RancherClient:
    kwargs.setdefault("ca_checksum", sim.ca_checksum)
    token = kwargs.pop("token", sim.api_token)
    return RancherClient(reactor, sim.url, Secret(token), timeout=10, **kwargs)


def test_checksum_is_rancher_s_rule():
    assert ca_checksum("") == ""
    assert ca_checksum("abc") == ca_checksum("abc\n")
    # sha256("abc\n")
    assert ca_checksum("abc") == "edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb"


@pytest_twisted.ensureDeferred
async def test_check_import_adopt_token_state_delete(reactor, sim):
    rancher = client(reactor, sim)
    try:
        info = await rancher.check_server()
        assert info.version == "v2.14.0" and info.cacerts == sim.ca_pem
        assert info.checksum == sim.ca_checksum

        cluster, adopted = await rancher.import_cluster("t-00000")
        assert not adopted and cluster.id.startswith("c-") and cluster.state == "pending"
        again, adopted = await rancher.import_cluster("t-00000")
        assert adopted and again.id == cluster.id
        assert [c.name for c in sim.store.clusters()] == ["t-00000"]  # no duplicate

        token = await rancher.registration_token(cluster.id)
        [crt] = sim.store.tokens(cluster.id)
        assert token.reveal() == crt.token and "default-token" == crt.name

        status = await rancher.get_cluster(cluster.id)
        assert status.state == "pending" and status.condition("Ready") == "Unknown"
        other, _ = await rancher.import_cluster("u-00001")
        assert [c.name for c in await rancher.list_clusters("t-")] == ["t-00000"]

        assert await rancher.delete_cluster(cluster.id) is True
        assert await rancher.delete_cluster(cluster.id) is False
        assert await rancher.get_cluster(cluster.id) is None
        assert [c.name for c in sim.store.clusters()] == ["u-00001"]
    finally:
        await rancher.close()


@pytest_twisted.ensureDeferred
async def test_wrong_api_token_is_an_auth_error(reactor, sim):
    rancher = client(reactor, sim, token="token-wrong:abcdef")
    try:
        with pytest.raises(RancherError) as caught:
            await rancher.check_server()
        assert caught.value.kind == AUTH and caught.value.status == 401
        assert "API token was refused" in str(caught.value) and "abcdef" not in str(caught.value)
        with pytest.raises(RancherError) as caught:
            await rancher.import_cluster("t-00000")
        assert caught.value.kind == AUTH
        assert sim.store.clusters() == []
    finally:
        await rancher.close()


@pytest_twisted.ensureDeferred
async def test_checksum_mismatch_stops_before_any_authenticated_call(reactor, sim):
    rancher = client(reactor, sim, ca_checksum="0" * 64)
    requests_before = sim.api.requests
    try:
        with pytest.raises(RancherError) as caught:
            await rancher.check_server()
        assert caught.value.kind == CHECKSUM
        assert "CA checksum mismatch" in str(caught.value)
        # /ping and cacerts only: the API token was never sent to a server we could not verify.
        assert sim.api.requests - requests_before == 2
    finally:
        await rancher.close()


@pytest_twisted.ensureDeferred
async def test_verification_is_on_by_default_and_insecure_skips_it(reactor, sim):
    # No checksum: the stand-in's private CA is not in the system roots, so the API call fails TLS.
    rancher = client(reactor, sim, ca_checksum="")
    try:
        with pytest.raises(RancherError) as caught:
            await rancher.import_cluster("t-00000")
        assert caught.value.kind == TLS
    finally:
        await rancher.close()
    insecure = client(reactor, sim, ca_checksum="", insecure=True)
    try:
        info = await insecure.check_server()
        assert info.version == "v2.14.0"
        cluster, _ = await insecure.import_cluster("t-00000")
        assert cluster.name == "t-00000"
    finally:
        await insecure.close()


@pytest_twisted.ensureDeferred
async def test_no_route_is_unreachable(reactor):
    # A port that was listening and is now closed: connection refused.
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    rancher = RancherClient(reactor, f"https://127.0.0.1:{number}", Secret("token-a:b"), timeout=5)
    try:
        with pytest.raises(RancherError) as caught:
            await rancher.check_server()
        assert caught.value.kind == UNREACHABLE and "cannot connect" in str(caught.value)
    finally:
        await rancher.close()


# -- injected failures with StubTreq over the stand-in's API resource --------------------------------


class Gate(Resource):
    """Wraps the stand-in's API: hides registration tokens from the first `hide` listings, or answers
    every request with `status`, or never answers."""

    isLeaf = True

    def __init__(self, api, *, hide: int = 0, status: int = 0, hang: bool = False, hide_forever=False):
        super().__init__()
        self.api = api
        self.hide = hide
        self.hide_forever = hide_forever
        self.status = status
        self.hang = hang
        self.token_posts = 0

    def render(self, request):
        if self.hang:
            return NOT_DONE_YET
        if self.status:
            request.setResponseCode(self.status)
            return b'{"type":"error"}'
        if request.method == b"POST" and request.path == b"/v3/clusterregistrationtokens":
            self.token_posts += 1
            self.hide_forever = False
        body = self.api.render(request)
        if request.path == b"/v3/clusterregistrationtokens" and request.method == b"GET":
            if self.hide > 0 or self.hide_forever:
                self.hide -= 1
                value = json.loads(body)
                value["data"] = []
                return json.dumps(value).encode()
        return body


def stub_client(sim, gate, clock) -> RancherClient:
    return RancherClient(clock, "https://rancher.test", Secret(sim.api_token), http=StubTreq(gate), timeout=5)


@pytest_twisted.ensureDeferred
async def test_token_wait_then_found(reactor, sim):
    clock = task.Clock()
    gate = Gate(sim.api, hide=2)
    rancher = stub_client(sim, gate, clock)
    cluster, _ = await rancher.import_cluster("t-00000")
    d = defer.ensureDeferred(rancher.registration_token(cluster.id, interval=1.0))
    assert not d.called
    clock.advance(1.0)
    assert not d.called
    clock.advance(1.0)
    token = await d
    assert token.reveal() == sim.store.tokens(cluster.id)[0].token
    assert gate.token_posts == 0


@pytest_twisted.ensureDeferred
async def test_token_created_when_none_appears(reactor, sim):
    clock = task.Clock()
    gate = Gate(sim.api, hide_forever=True)
    rancher = stub_client(sim, gate, clock)
    cluster, _ = await rancher.import_cluster("t-00000")
    d = defer.ensureDeferred(rancher.registration_token(cluster.id, interval=1.0, create_after=3))
    for _ in range(5):
        clock.advance(1.0)
    token = await d
    assert gate.token_posts == 1
    assert token.reveal() in [crt.token for crt in sim.store.tokens(cluster.id)]
    assert len(sim.store.tokens(cluster.id)) == 2


@pytest_twisted.ensureDeferred
async def test_server_error_and_timeout_then_retry_recovers(reactor, sim):
    clock = task.Clock()
    gate = Gate(sim.api, status=503)
    rancher = stub_client(sim, gate, clock)
    with pytest.raises(RancherError) as caught:
        await rancher.import_cluster("t-00000")
    assert caught.value.kind == SERVER and caught.value.status == 503

    gate.status, gate.hang = 0, True
    d = defer.ensureDeferred(rancher.import_cluster("t-00000"))
    clock.advance(5.0)
    with pytest.raises(RancherError) as caught:
        await d
    assert caught.value.kind == TIMEOUT

    # call_with_retry: two 503s, each reported once, then success.
    gate.hang, gate.status = False, 503
    errors: list[RancherError] = []

    def on_error(error):
        errors.append(error)
        if len(errors) == 2:
            gate.status = 0

    d = defer.ensureDeferred(
        call_with_retry(
            clock,
            lambda: rancher.import_cluster("t-00000"),
            what="import",
            delays=lambda: 2.0,
            on_error=on_error,
        )
    )
    clock.advance(2.0)
    clock.advance(2.0)
    cluster, adopted = await d
    assert [e.kind for e in errors] == [SERVER, SERVER] and cluster.name == "t-00000" and not adopted
