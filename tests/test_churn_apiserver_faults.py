"""The apiserver's fault switches the churn engine flips: /readyz failing, requests held back.

Synchronous: a `task.Clock` drives expiry and the delay; the Site is fed bytes on a StringTransport.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from scaleagent.apiserver.faults import FAULTS, Faults, faults_of
from scaleagent.apiserver.request import ApiContext
from scaleagent.apiserver.resource import make_site
from scaleagent.apiserver.store import Store


def api_context() -> ApiContext:
    clock = Clock()
    clock.advance(1000.0)
    return ApiContext(Store(), clock)


def get(api: ApiContext, path: str, token: str | None = None) -> StringTransport:
    proto = make_site(api).buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    proto.makeConnection(transport)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    proto.dataReceived(f"GET {path} HTTP/1.1\r\nHost: 10.43.0.1\r\n{auth}\r\n".encode())
    return transport


def status_and_body(transport: StringTransport) -> tuple[int, bytes]:
    raw = transport.value()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_no_faults_entry_means_ready_and_immediate():
    api = api_context()
    assert faults_of(api) is None
    assert status_and_body(get(api, "/readyz")) == (200, b"ok")


def test_unready_for_a_while_then_ready_again():
    api = api_context()
    faults = faults_of(api, create=True)
    assert api.extras[FAULTS] is faults
    faults.make_unready(30.0)
    code, body = status_and_body(get(api, "/readyz"))
    assert code == 500
    lines = body.decode().splitlines()
    assert "[-]etcd failed: reason withheld" in lines and lines[-1] == "readyz check failed"
    assert "[+]ping ok" in lines
    assert status_and_body(get(api, "/readyz/etcd"))[0] == 500
    assert status_and_body(get(api, "/readyz/ping")) == (200, b"ok")
    assert status_and_body(get(api, "/livez"))[0] == 200  # alive, just not ready
    api.clock.advance(30.0)
    assert status_and_body(get(api, "/readyz")) == (200, b"ok")


def test_slow_holds_every_answer_back_until_the_window_ends():
    api = api_context()
    token = api.issue_admin_token()
    faults = faults_of(api, create=True)
    faults.make_slow(10.0, 2.5)
    transport = get(api, "/api/v1/namespaces", token)
    assert transport.value() == b""  # nothing yet
    api.clock.advance(2.4)
    assert transport.value() == b""
    api.clock.advance(0.1)
    code, body = status_and_body(transport)
    assert code == 200 and b'"NamespaceList"' in body
    api.clock.advance(8.0)  # window over: immediate again
    assert status_and_body(get(api, "/version"))[0] == 200


def test_a_client_that_leaves_cancels_the_held_answer():
    api = api_context()
    Faults.make_slow(faults_of(api, create=True), 5.0, 1.0)
    proto = make_site(api).buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
    held = [c for c in api.clock.getDelayedCalls() if c.getTime() == 1001.0]
    assert held
    proto.connectionLost(Failure(ConnectionDone()))
    assert not held[0].active()  # the held answer was cancelled
    api.clock.advance(1.0)  # and nothing is written to a gone connection
    assert transport.value() == b""
