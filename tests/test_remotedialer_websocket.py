"""Both tunnel ends over a real wss:// WebSocket on loopback: refusals, pings, dialling, endings."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, endpoints, task
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource
from twisted.web.server import Site

from scaleagent.remotedialer.server import NoTunnel, Refusal, TunnelServer
from scaleagent.remotedialer.websocket import TunnelClientFactory, TunnelRefused, connect_tunnel
from tests.support import until

from .test_remotedialer_transport import make_pki

PKI = make_pki()
TOKEN = "t0ken-value"


SEEN_REQUESTS: list = []


def rancher_like_authorizer(request):
    """Like Rancher: no credential 401, unknown credential 400 with the error text."""
    SEEN_REQUESTS.append(request)
    token = request.getHeader("x-api-tunnel-token")
    if token is None:
        return Refusal(401, "failed authentication")
    if token != TOKEN:
        return Refusal(400, "cluster not found")
    return request.getHeader("x-test-key") or "c-test"


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def echo_resolver(proto: str, address: str):
    return Factory.forProtocol(Echo) if (proto, address) == ("tcp", "echo:7") else None


class Collect(Protocol):
    """Sends `greeting`, collects the answer, remembers how it ended."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.received = b""
        self.lost: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        if self.greeting:
            self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.lost.callback(reason.value)  # the exception: a Failure would errback


@defer.inlineCallbacks
def start_server(reactor, path: bytes = b"connect", **kwargs):
    """A TunnelServer under /v3/<path> on a loopback TLS port; returns (server, port, url)."""
    server = TunnelServer(reactor, kwargs.pop("authorizer", rancher_like_authorizer), **kwargs)
    root = Resource()
    v3 = Resource()
    root.putChild(b"v3", v3)
    v3.putChild(path, server.resource)
    site = Site(root)
    site.noisy = False
    endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, PKI.server_options(), interface="127.0.0.1")
    port = yield endpoint.listen(site)
    url = f"wss://127.0.0.1:{port.getHost().port}/v3/{path.decode()}"
    return server, port, url


@defer.inlineCallbacks
def shutdown(server, port, *clients):
    for client in clients:
        if client.session is not None and not client.session.closed:
            client.dropConnection(abort=True)
            yield client.ended
    server.stop()
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_refusals_carry_http_status_and_body(reactor):
    server, port, url = yield start_server(reactor)
    ended = []
    try:
        for headers, status, body in (({}, 401, b"failed authentication"),
                                      ({"X-API-Tunnel-Token": "nope"}, 400, b"cluster not found")):
            d = connect_tunnel(reactor, url, headers, echo_resolver, ca_pem=PKI.ca_pem,
                               on_close=lambda proto, end: ended.append(end))
            try:
                yield d
            except TunnelRefused as refused:
                assert refused.status == status
                assert refused.body == body
            else:
                raise AssertionError("the handshake should have been refused")
        assert [(e.opened, e.status, e.body) for e in ended] == [
            (False, 401, b"failed authentication"), (False, 400, b"cluster not found")]
        assert server.client_keys() == []
    finally:
        yield shutdown(server, port)


@pytest_twisted.inlineCallbacks
def test_dial_echo_pings_and_clean_end(reactor):
    server, port, url = yield start_server(reactor)
    headers = {"X-API-Tunnel-Token": TOKEN, "X-API-Tunnel-Params": "e30="}
    client = yield connect_tunnel(reactor, url, headers, echo_resolver, ca_pem=PKI.ca_pem, ping_interval=0.1)
    try:
        assert client.autoPingInterval == 0  # autobahn's auto-ping stays off
        assert client.websocket_extensions_in_use == []  # no permessage-deflate
        session = yield server.when_connected("c-test")
        upgrade = SEEN_REQUESTS[-1]
        assert upgrade.getHeader("x-api-tunnel-params") == "e30="
        assert upgrade.getHeader("sec-websocket-extensions") is None  # permessage-deflate not even offered
        ping_payloads = []
        server_protocol = server.protocols("c-test")[0]
        original_on_ping = server_protocol.onPing
        server_protocol.onPing = lambda payload: (ping_payloads.append(payload), original_on_ping(payload))
        talker = Collect(b"hello through the tunnel")
        server.dial("c-test", "tcp", "echo:7", Factory.forProtocol(lambda: talker))
        yield until(reactor, lambda: talker.received == b"hello through the tunnel")
        yield until(reactor, lambda: session.stats.keepalives_received >= 3)
        # pongs come back for our empty pings (the third may still be on its way: wait, bounded)
        yield until(reactor, lambda: client.session.stats.keepalives_received >= 3, what="three pongs")
        assert ping_payloads and set(ping_payloads) <= {b"", None}
        talker.transport.loseConnection()
        reason = yield talker.lost
        assert isinstance(reason, ConnectionDone)
        yield until(reactor, lambda: client.session.connection_ids() == [])
        with_refusal = Collect()
        server.dial("c-test", "tcp", "10.0.0.1:22", Factory.forProtocol(lambda: with_refusal))
        reason = yield with_refusal.lost
        assert "connection refused" in str(reason)
        assert not session.closed  # a refusal never ends the tunnel
        client.disconnect()
        ended = yield client.ended
        assert ended.opened and ended.was_clean and ended.status is None
        yield until(reactor, lambda: server.client_keys() == [])
        assert pytest_raises(NoTunnel, server.dial, "c-test", "tcp", "echo:7", Factory.forProtocol(Collect))
    finally:
        yield shutdown(server, port, client)


def pytest_raises(kind, fn, *args) -> bool:
    try:
        fn(*args)
    except kind:
        return True
    return False


@pytest_twisted.inlineCallbacks
def test_sessions_per_key_oldest_first(reactor):
    server, port, url = yield start_server(reactor)
    headers = {"X-API-Tunnel-Token": TOKEN}
    first = yield connect_tunnel(reactor, url, headers, echo_resolver, ca_pem=PKI.ca_pem)
    second = yield connect_tunnel(reactor, url, headers, echo_resolver, ca_pem=PKI.ca_pem)
    try:
        yield until(reactor, lambda: len(server.sessions("c-test")) == 2)
        talker = Collect(b"x")
        server.dial("c-test", "tcp", "echo:7", Factory.forProtocol(lambda: talker))
        yield until(reactor, lambda: talker.received == b"x")
        assert first.session.stats.connects_accepted == 1
        assert second.session.stats.connects_accepted == 0
        first.dropConnection(abort=True)
        yield first.ended
        yield until(reactor, lambda: len(server.sessions("c-test")) == 1)
        talker2 = Collect(b"y")
        server.dial("c-test", "tcp", "echo:7", Factory.forProtocol(lambda: talker2))
        yield until(reactor, lambda: talker2.received == b"y")
        assert second.session.stats.connects_accepted == 1
    finally:
        yield shutdown(server, port, first, second)


@pytest_twisted.inlineCallbacks
def test_text_message_ends_the_session(reactor):
    server, port, url = yield start_server(reactor)
    client = yield connect_tunnel(reactor, url, {"X-API-Tunnel-Token": TOKEN}, echo_resolver,
                                  ca_pem=PKI.ca_pem)
    try:
        yield server.when_connected("c-test")
        talker = Collect()
        server.dial("c-test", "tcp", "echo:7", Factory.forProtocol(lambda: talker))
        yield until(reactor, lambda: client.session.connection_ids() == [2])
        server.protocols("c-test")[0].sendMessage(b"not binary", isBinary=False)
        ended = yield client.ended
        assert ended.opened
        assert client.session.closed
        reason = yield talker.lost
        assert isinstance(reason, ConnectionLost)
    finally:
        yield shutdown(server, port, client)


@pytest_twisted.inlineCallbacks
def test_server_ends_a_session_without_pings(reactor):
    server, port, url = yield start_server(reactor, keepalive_timeout=0.3)
    client = yield connect_tunnel(reactor, url, {"X-API-Tunnel-Token": TOKEN}, echo_resolver,
                                  ca_pem=PKI.ca_pem, ping_interval=60)
    try:
        ended = yield client.ended
        assert ended.opened and not ended.was_clean
        assert server.client_keys() == []
    finally:
        yield shutdown(server, port, client)


@pytest_twisted.inlineCallbacks
def test_async_authorizer_and_bad_ca(reactor):
    def slow(request):
        return task.deferLater(reactor, 0.05, rancher_like_authorizer, request)

    server, port, url = yield start_server(reactor, authorizer=slow)
    try:
        try:
            yield connect_tunnel(reactor, url, {}, echo_resolver, ca_pem=PKI.ca_pem)
        except TunnelRefused as refused:
            assert (refused.status, refused.body) == (401, b"failed authentication")
        else:
            raise AssertionError("the slow authorizer must refuse a handshake without credentials")
        client = yield connect_tunnel(reactor, url, {"X-API-Tunnel-Token": TOKEN}, echo_resolver,
                                      ca_pem=PKI.ca_pem)
        yield server.when_connected("c-test")
        client.dropConnection(abort=True)
        yield client.ended
        other = make_pki()
        ended = []
        try:
            yield connect_tunnel(reactor, url, {"X-API-Tunnel-Token": TOKEN}, echo_resolver,
                                 ca_pem=other.ca_pem, on_close=lambda p, e: ended.append(e))
        except TunnelRefused:
            raise AssertionError("a TLS failure is not a refusal") from None
        except Exception:
            pass
        else:
            raise AssertionError("a server certificate from another CA must fail verification")
        assert ended and not ended[0].opened and ended[0].status is None
        insecure = yield connect_tunnel(reactor, url, {"X-API-Tunnel-Token": TOKEN}, echo_resolver,
                                        insecure=True)
        insecure.dropConnection(abort=True)
        yield insecure.ended
    finally:
        yield shutdown(server, port)


def test_factory_rejects_non_websocket_urls(reactor):
    for url in ("https://rancher.example/v3/connect", "wss:///v3/connect"):
        try:
            TunnelClientFactory(reactor, url, {}, echo_resolver)
        except ValueError as exc:
            assert "ws://" in str(exc)
        else:
            raise AssertionError(url)


def test_chunked_refusal_bodies_are_unchunked():
    from scaleagent.remotedialer.websocket import _unchunk

    assert _unchunk(b"15\r\nfailed authentication\r\n0\r\n\r\n") == b"failed authentication"
    assert _unchunk(b"5\r\nab") == b"ab"  # as far as it arrived


@pytest_twisted.inlineCallbacks
def test_writes_while_the_websocket_closes_are_dropped_quietly(reactor):
    server, port, url = yield start_server(reactor)
    client = yield connect_tunnel(reactor, url, {"X-API-Tunnel-Token": TOKEN}, echo_resolver,
                                  ca_pem=PKI.ca_pem)
    try:
        yield server.when_connected("c-test")
        talker = Collect()
        server.dial("c-test", "tcp", "echo:7", Factory.forProtocol(lambda: talker))
        yield until(reactor, lambda: client.session.connection_ids() == [2])
        echo = client.session.connections[2].protocol
        client.sendClose(code=1000, reason="bye")  # autobahn refuses to send from now on
        echo.transport.write(b"too late")  # must not raise into the protocol
        ended = yield client.ended
        assert ended.was_clean
        reason = yield talker.lost
        assert isinstance(reason, ConnectionLost)
        assert talker.received == b""
    finally:
        yield shutdown(server, port, client)


@pytest_twisted.inlineCallbacks
def test_plain_ws_and_the_register_path(reactor):
    """ws:// (no TLS) works too, and a leaf resource serves sub-paths such as /v3/connect/register."""
    server = TunnelServer(reactor, rancher_like_authorizer)
    root = Resource()
    v3 = Resource()
    root.putChild(b"v3", v3)
    v3.putChild(b"connect", server.resource)
    site = Site(root)
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    url = f"ws://127.0.0.1:{port.getHost().port}/v3/connect/register"
    client = yield connect_tunnel(reactor, url, {"X-API-Tunnel-Token": TOKEN}, echo_resolver)
    try:
        yield server.when_connected("c-test")
        talker = Collect(b"plain " * 50000)  # big enough to fill the socket buffers
        server.dial("c-test", "tcp", "echo:7", Factory.forProtocol(lambda: talker))
        yield until(reactor, lambda: len(talker.received) == len(talker.greeting))
        assert talker.received == talker.greeting
    finally:
        yield shutdown(server, port, client)


@pytest_twisted.inlineCallbacks
def test_async_authorizer_answering_after_the_client_left(reactor):
    pending = []

    def later(request):
        d = defer.Deferred()
        pending.append(d)
        return d

    server = TunnelServer(reactor, later)
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(server.resource))
    try:
        raw = yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collect(
                b"GET /v3/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
        yield until(reactor, lambda: len(pending) == 1)
        raw.transport.loseConnection()
        yield raw.lost
        yield task.deferLater(reactor, 0.05, lambda: None)
        pending[0].callback("c-test")  # nothing left to answer: no error, no session
        pending[0].addErrback(lambda f: f)  # surface a failure as a result, checked below
        assert pending[0].result is None
        assert server.client_keys() == []
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_live_connections_survive_sync_connections(reactor):
    # A SYNC_CONNECTIONS the client wrote before our CONNECTs reached it may arrive after we dialled;
    # the grace covers that race (on a loaded machine it is wide), and we count only the syncs after it.
    grace = 1.0
    server, port, url = yield start_server(reactor, sync_grace=grace)
    client = yield connect_tunnel(reactor, url, {"X-API-Tunnel-Token": TOKEN}, echo_resolver,
                                  ca_pem=PKI.ca_pem, sync_interval=0.1)
    try:
        session = yield server.when_connected("c-test")
        talkers = [Collect(b"%d" % i) for i in range(12)]  # ids 2..13: sorting matters past 9
        for talker in talkers:
            server.dial("c-test", "tcp", "echo:7", Factory.forProtocol(lambda t=talker: t))
        past_grace = reactor.seconds() + grace
        yield until(reactor, lambda: reactor.seconds() > past_grace)
        syncs_before = session.stats.syncs_received
        yield until(reactor, lambda: session.stats.syncs_received >= syncs_before + 3)
        assert client.session.stats.syncs_sent >= 3
        assert session.stats.synced_away == 0
        assert session.connection_ids() == list(range(2, 14))
        assert all(not t.lost.called for t in talkers)
    finally:
        yield shutdown(server, port, client)


class CountingClock:
    """The reactor's time, counting the zero-delay calls the TLS layer schedules through it."""

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        self.zero_delay_calls = 0

    def seconds(self) -> float:
        return self._reactor.seconds()

    def callLater(self, delay, call, *args, **kwargs):  # noqa: N802 (Twisted's name)
        if delay == 0:
            self.zero_delay_calls += 1
        return self._reactor.callLater(delay, call, *args, **kwargs)


@pytest_twisted.inlineCallbacks
def test_tls_flushes_use_the_given_clock_and_the_handshake_texts_are_dropped(reactor):
    server, port, url = yield start_server(reactor)
    headers = {"X-API-Tunnel-Token": TOKEN, "X-API-Tunnel-Params": "e30="}
    clock = CountingClock(reactor)
    client = yield connect_tunnel(reactor, url, headers, echo_resolver, ca_pem=PKI.ca_pem, tls_clock=clock)
    try:
        assert client.http_request_data == b"" and client.http_response_data == b""
        assert client.http_headers == {}
        yield server.when_connected("c-test")
        before = clock.zero_delay_calls
        talker = Collect(b"through the batching clock")
        server.dial("c-test", "tcp", "echo:7", Factory.forProtocol(lambda: talker))
        yield until(reactor, lambda: talker.received == b"through the batching clock")
        assert clock.zero_delay_calls > before  # the client's TLS writes were flushed through it
    finally:
        yield shutdown(server, port, client)
